//! SyncGroup (v0-v5): the leader hands out assignments; followers wait for theirs.

use super::authorize::access;
use crate::security::acl::Operation;
use kafka_protocol::messages::{SyncGroupRequest, SyncGroupResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::groups::{SyncRequest, SyncResponse};
use super::{await_pending, decode, respond, Broker, Outcome};
use crate::protocol::header::RequestFrame;

pub async fn handle(broker: &Broker, request: &RequestFrame) -> Outcome {
    let body: SyncGroupRequest = match decode(request) {
        Ok(body) => body,
        Err(outcome) => return outcome,
    };
    if let Err(denied) = access(broker).await.check_group(Operation::Read, &body.group_id) {
        return respond(request, &SyncGroupResponse::default().with_error_code(denied.code()));
    }
    let sync = SyncRequest {
        group_id: body.group_id.to_string(),
        generation: body.generation_id,
        member_id: body.member_id.to_string(),
        instance_id: body.group_instance_id.as_ref().map(ToString::to_string),
        protocol_type: body.protocol_type.as_ref().map(ToString::to_string),
        protocol_name: body.protocol_name.as_ref().map(ToString::to_string),
        assignments: body.assignments.iter().map(|a| (a.member_id.to_string(), a.assignment.clone())).collect(),
    };
    let pending = broker.groups.sync(sync);
    let synced =
        await_pending(broker, pending, || SyncResponse { error: Some(ResponseError::CoordinatorNotAvailable), ..SyncResponse::default() })
            .await;
    let text = |s: String| StrBytes::from_string(s);
    let response = SyncGroupResponse::default()
        .with_error_code(synced.error.map_or(0, |e| e.code()))
        .with_protocol_type(synced.protocol_type.map(text))
        .with_protocol_name(synced.protocol_name.map(text))
        .with_assignment(synced.assignment);
    respond(request, &response)
}
