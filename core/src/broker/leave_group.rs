//! LeaveGroup (v0-v5): one member (v0-v2) or a batch of members (v3+) leave; the rest
//! of the group rebalances.

use super::authorize::access;
use crate::security::acl::Operation;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::{LeaveGroupRequest, LeaveGroupResponse};

use super::groups::MemberRef;
use super::{decode, respond, Broker, Outcome};
use crate::protocol::header::RequestFrame;

pub async fn handle(broker: &Broker, request: &RequestFrame) -> Outcome {
    let body: LeaveGroupRequest = match decode(request) {
        Ok(body) => body,
        Err(outcome) => return outcome,
    };
    let batched = request.version() >= 3;
    let members: Vec<MemberRef> = if batched {
        body.members
            .iter()
            .map(|m| MemberRef { member_id: m.member_id.to_string(), instance_id: m.group_instance_id.as_ref().map(ToString::to_string) })
            .collect()
    } else {
        vec![MemberRef { member_id: body.member_id.to_string(), instance_id: None }]
    };
    let results = match access(broker).await.check_group(Operation::Read, &body.group_id) {
        Ok(()) => broker.groups.leave(&body.group_id, &members),
        Err(denied) => members.iter().map(|_| Err(denied)).collect(),
    };
    let code = |r: &Result<(), kafka_protocol::ResponseError>| r.err().map_or(0, |e| e.code());
    let response = if batched {
        let answers = members
            .iter()
            .zip(&results)
            .map(|(m, r)| {
                MemberResponse::default()
                    .with_member_id(m.member_id.clone().into())
                    .with_group_instance_id(m.instance_id.clone().map(Into::into))
                    .with_error_code(code(r))
            })
            .collect();
        LeaveGroupResponse::default().with_members(answers)
    } else {
        LeaveGroupResponse::default().with_error_code(results.first().map_or(0, code))
    };
    respond(request, &response)
}
