//! Heartbeat (v0-v4): keeps a member's session alive and tells it when to rejoin.

use super::authorize::access;
use crate::security::acl::Operation;
use kafka_protocol::messages::{HeartbeatRequest, HeartbeatResponse};

use super::groups::MemberRef;
use super::{decode, respond, Broker, Outcome};
use crate::protocol::header::RequestFrame;

pub async fn handle(broker: &Broker, request: &RequestFrame) -> Outcome {
    let body: HeartbeatRequest = match decode(request) {
        Ok(body) => body,
        Err(outcome) => return outcome,
    };
    if let Err(denied) = access(broker).await.check_group(Operation::Read, &body.group_id) {
        return respond(request, &HeartbeatResponse::default().with_error_code(denied.code()));
    }
    let member = MemberRef { member_id: body.member_id.to_string(), instance_id: body.group_instance_id.as_ref().map(ToString::to_string) };
    let result = broker.groups.heartbeat(&body.group_id, body.generation_id, &member);
    respond(request, &HeartbeatResponse::default().with_error_code(result.err().map_or(0, |e| e.code())))
}
