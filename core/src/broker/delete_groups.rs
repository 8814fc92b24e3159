//! DeleteGroups (v0-v2): forgets groups without members and deletes their committed
//! offsets. A group with members is NON_EMPTY_GROUP; one never seen is GROUP_ID_NOT_FOUND.

use super::authorize::access;
use crate::security::acl::Operation;
use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::{DeleteGroupsRequest, DeleteGroupsResponse};
use kafka_protocol::ResponseError;

use super::groups::check_group_id;
use super::{decode, respond, storage_call, Broker, Outcome};
use crate::logging;
use crate::protocol::header::RequestFrame;

pub async fn handle(broker: &Broker, request: &RequestFrame) -> Outcome {
    let body: DeleteGroupsRequest = match decode(request) {
        Ok(body) => body,
        Err(outcome) => return outcome,
    };
    let access = access(broker).await;
    let in_memory: Vec<Result<bool, ResponseError>> = body
        .groups_names
        .iter()
        .map(|g| check_group_id(g).and_then(|()| access.check_group(Operation::Delete, g)).and_then(|()| broker.groups.delete(g)))
        .collect();
    let deletable: Vec<String> = body.groups_names.iter().zip(&in_memory).filter(|(_, r)| r.is_ok()).map(|(g, _)| g.to_string()).collect();
    let had_offsets = storage_call(broker, move |s| s.delete_group_offsets(&deletable)).await;
    if let Err(e) = &had_offsets {
        logging::warning(format!("pg_kafka: deleting group offsets failed: {e}"));
    }
    let results = body
        .groups_names
        .iter()
        .zip(in_memory)
        .map(|(group_id, known)| {
            let error = match (known, &had_offsets) {
                (Err(e), _) => Some(e),
                (Ok(_), Err(_)) => Some(ResponseError::CoordinatorNotAvailable),
                (Ok(true), Ok(_)) => None,
                (Ok(false), Ok(deleted)) if deleted.iter().any(|d| d.as_str() == group_id.as_str()) => None,
                (Ok(false), Ok(_)) => Some(ResponseError::GroupIdNotFound),
            };
            DeletableGroupResult::default().with_group_id(group_id.clone()).with_error_code(error.map_or(0, |e| e.code()))
        })
        .collect();
    respond(request, &DeleteGroupsResponse::default().with_results(results))
}
