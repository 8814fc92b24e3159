//! JoinGroup (v0-v9): joins the group and waits until the rebalance completes; see
//! [`groups`](super::groups) for the rules.

use super::authorize::access;
use crate::security::acl::Operation;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::{JoinGroupRequest, JoinGroupResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::groups::{JoinRequest, JoinResponse};
use super::{await_pending, decode, respond, Broker, Outcome};
use crate::protocol::header::RequestFrame;

pub async fn handle(broker: &Broker, request: &RequestFrame) -> Outcome {
    let body: JoinGroupRequest = match decode(request) {
        Ok(body) => body,
        Err(outcome) => return outcome,
    };
    let version = request.version();
    if let Err(denied) = access(broker).await.check_group(Operation::Read, &body.group_id) {
        let refused =
            JoinResponse { error: Some(denied), generation: -1, member_id: body.member_id.to_string(), ..JoinResponse::default() };
        return respond(request, &response(refused, version));
    }
    let join = JoinRequest {
        group_id: body.group_id.to_string(),
        member_id: body.member_id.to_string(),
        instance_id: body.group_instance_id.as_ref().map(ToString::to_string),
        client_id: request.header.client_id.as_ref().map(ToString::to_string).unwrap_or_default(),
        client_host: request.client_host.clone(),
        protocol_type: body.protocol_type.to_string(),
        protocols: body.protocols.iter().map(|p| (p.name.to_string(), p.metadata.clone())).collect(),
        session_timeout_ms: body.session_timeout_ms,
        // v0 has no rebalance timeout: the session timeout bounds the join.
        rebalance_timeout_ms: if version >= 1 { body.rebalance_timeout_ms } else { body.session_timeout_ms },
        require_member_id: version >= 4,
    };
    let member_id = join.member_id.clone();
    let pending = broker.groups.join(join);
    let joined = await_pending(broker, pending, || JoinResponse {
        error: Some(ResponseError::CoordinatorNotAvailable),
        generation: -1,
        member_id,
        ..JoinResponse::default()
    })
    .await;
    respond(request, &response(joined, version))
}

fn response(joined: JoinResponse, version: i16) -> JoinGroupResponse {
    let text = |s: String| StrBytes::from_string(s);
    let members = joined
        .members
        .into_iter()
        .map(|m| {
            JoinGroupResponseMember::default()
                .with_member_id(text(m.member_id))
                .with_group_instance_id(m.instance_id.map(text))
                .with_metadata(m.metadata)
        })
        .collect();
    JoinGroupResponse::default()
        .with_error_code(joined.error.map_or(0, |e| e.code()))
        .with_generation_id(joined.generation)
        .with_protocol_type(joined.protocol_type.map(text))
        // Nullable only from v7: older clients (the Java one among them) reject a null.
        .with_protocol_name(joined.protocol_name.map(text).or_else(|| (version < 7).then(StrBytes::default)))
        .with_leader(text(joined.leader))
        .with_member_id(text(joined.member_id))
        .with_members(members)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::testing::{broker, round_trip};
    use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
    use kafka_protocol::messages::{ApiKey, GroupId};

    #[tokio::test]
    async fn error_answers_decode_at_every_version() {
        let broker = broker();
        for version in 0..=9 {
            let protocol = JoinGroupRequestProtocol::default().with_name(StrBytes::from_static_str("range"));
            let request = JoinGroupRequest::default()
                .with_group_id(GroupId(StrBytes::from_static_str("g")))
                .with_session_timeout_ms(10) // below the minimum: refused at once
                .with_protocol_type(StrBytes::from_static_str("consumer"))
                .with_protocols(vec![protocol]);
            let response: JoinGroupResponse = round_trip(&broker, ApiKey::JoinGroup, version, &request).await;
            assert_eq!(response.error_code, ResponseError::InvalidSessionTimeout.code(), "v{version}");
            assert_eq!(response.protocol_name.is_none(), version >= 7, "v{version}");
        }
    }
}
