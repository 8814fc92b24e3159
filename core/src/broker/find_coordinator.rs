//! FindCoordinator (v0-v6): this broker coordinates every group and every transactional
//! id. v4+ asks for many keys at once.

use super::authorize::access;
use crate::security::acl::Operation;
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::{cluster, decode, respond, Broker, Outcome};
use crate::protocol::header::RequestFrame;

/// Key types: 0 a consumer group, 1 a transactional id.
fn known_key_type(key_type: i8) -> bool {
    matches!(key_type, 0 | 1)
}

pub async fn handle(broker: &Broker, request: &RequestFrame) -> Outcome {
    let body: FindCoordinatorRequest = match decode(request) {
        Ok(body) => body,
        Err(outcome) => return outcome,
    };
    let access = access(broker).await;
    let keys: Vec<&str> =
        if request.version() >= 4 { body.coordinator_keys.iter().map(|k| k.as_str()).collect() } else { vec![body.key.as_str()] };
    // Groups (key type 0) need DESCRIBE on the group, transactional ids (1) DESCRIBE on
    // the id.
    let denied = keys.iter().find_map(|key| match body.key_type {
        0 => access.check_group(Operation::Describe, key).err(),
        1 => access.check_transactional_id(Operation::Describe, key).err(),
        _ => None,
    });
    // The primary coordinates every group and transactional id; a standby names it (or,
    // not knowing it yet, says COORDINATOR_NOT_AVAILABLE and the client asks again).
    let coordinator = cluster::view(broker).await.leader_address();
    let error = if !known_key_type(body.key_type) {
        Some(ResponseError::InvalidRequest)
    } else {
        denied.or(coordinator.is_none().then_some(ResponseError::CoordinatorNotAvailable))
    };
    let code = error.map_or(0, |e| e.code());
    let found = match (error, coordinator) {
        (None, Some((node, host, port))) => (node, StrBytes::from_string(host), port),
        _ => (-1, StrBytes::default(), -1),
    };
    let response = response(request.version(), &body, code, found);
    respond(request, &response)
}

/// The answer for every key asked, in the version's shape: from v4 one entry per key,
/// before it one at the top. `code` 0 with the coordinator's (node, host, port), or the
/// error with (-1, "", -1).
fn response(version: i16, body: &FindCoordinatorRequest, code: i16, (node, host, port): (i32, StrBytes, i32)) -> FindCoordinatorResponse {
    if version >= 4 {
        let coordinators = body
            .coordinator_keys
            .iter()
            .map(|key| {
                Coordinator::default()
                    .with_key(key.clone())
                    .with_node_id(BrokerId(node))
                    .with_host(host.clone())
                    .with_port(port)
                    .with_error_code(code)
            })
            .collect();
        FindCoordinatorResponse::default().with_coordinators(coordinators)
    } else {
        FindCoordinatorResponse::default().with_error_code(code).with_node_id(BrokerId(node)).with_host(host).with_port(port)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::testing::{broker, round_trip};
    use kafka_protocol::messages::ApiKey;

    #[tokio::test]
    async fn answers_with_this_broker_for_single_and_batched_keys() {
        let broker = broker();
        for version in 0..=3 {
            let r: FindCoordinatorResponse =
                round_trip(&broker, ApiKey::FindCoordinator, version, &FindCoordinatorRequest::default().with_key("g".into())).await;
            assert_eq!((r.error_code, r.node_id, r.port), (0, BrokerId(crate::config::defaults::NODE_ID), 9092), "v{version}");
        }
        let batched = FindCoordinatorRequest::default().with_key_type(1).with_coordinator_keys(vec!["a".into(), "b".into()]);
        let r: FindCoordinatorResponse = round_trip(&broker, ApiKey::FindCoordinator, 4, &batched).await;
        let keys: Vec<(&str, i32, i16)> = r.coordinators.iter().map(|c| (c.key.as_str(), c.node_id.0, c.error_code)).collect();
        assert_eq!(keys, vec![("a", crate::config::defaults::NODE_ID, 0), ("b", crate::config::defaults::NODE_ID, 0)]);
        let bad = FindCoordinatorRequest::default().with_key_type(7).with_key("g".into());
        let r: FindCoordinatorResponse = round_trip(&broker, ApiKey::FindCoordinator, 3, &bad).await;
        assert_eq!(r.error_code, ResponseError::InvalidRequest.code());
    }
}
