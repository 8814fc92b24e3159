//! DescribeGroups (v0-v5): state, protocol and members of groups. A group known only by
//! its committed offsets (no members since the last restart) is "Empty"; an unknown group
//! is "Dead", as in Kafka.

use super::authorize::access;
use crate::security::acl::{Operation, ResourceType};
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::{DescribeGroupsRequest, DescribeGroupsResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::groups::OFFSETS_ONLY_PROTOCOL_TYPE;
use super::{decode, offset_groups, respond, Broker, Outcome};
use crate::protocol::header::RequestFrame;

/// Kafka's "no operations known" value for authorized_operations.
const OPERATIONS_OMITTED: i32 = i32::MIN;

pub async fn handle(broker: &Broker, request: &RequestFrame) -> Outcome {
    let body: DescribeGroupsRequest = match decode(request) {
        Ok(body) => body,
        Err(outcome) => return outcome,
    };
    let access = access(broker).await;
    let described: Vec<_> = body.groups.iter().map(|g| broker.groups.describe(g)).collect();
    let with_offsets = if described.iter().any(Option::is_none) { offset_groups(broker).await } else { Ok(Vec::new()) };
    let text = |s: String| StrBytes::from_string(s);
    let groups = body
        .groups
        .iter()
        .zip(described)
        .map(|(group_id, description)| {
            let operations =
                if body.include_authorized_operations { access.operations(ResourceType::Group, group_id) } else { OPERATIONS_OMITTED };
            let group = DescribedGroup::default().with_group_id(group_id.clone()).with_authorized_operations(operations);
            if let Err(denied) = access.check_group(Operation::Describe, group_id) {
                return group.with_error_code(denied.code());
            }
            match (description, &with_offsets) {
                (Some(d), _) => {
                    let members = d
                        .members
                        .into_iter()
                        .map(|m| {
                            DescribedGroupMember::default()
                                .with_member_id(text(m.member_id))
                                .with_group_instance_id(m.instance_id.map(text))
                                .with_client_id(text(m.client_id))
                                .with_client_host(text(m.client_host))
                                .with_member_metadata(m.metadata)
                                .with_member_assignment(m.assignment)
                        })
                        .collect();
                    group
                        .with_group_state(StrBytes::from_static_str(d.state.name()))
                        .with_protocol_type(text(d.protocol_type))
                        .with_protocol_data(text(d.protocol))
                        .with_members(members)
                }
                (None, Ok(known)) if known.iter().any(|g| g.as_str() == group_id.as_str()) => group
                    .with_group_state(StrBytes::from_static_str("Empty"))
                    .with_protocol_type(StrBytes::from_static_str(OFFSETS_ONLY_PROTOCOL_TYPE)),
                (None, Ok(_)) => group.with_group_state(StrBytes::from_static_str("Dead")),
                (None, Err(_)) => group.with_error_code(ResponseError::CoordinatorNotAvailable.code()),
            }
        })
        .collect();
    respond(request, &DescribeGroupsResponse::default().with_groups(groups))
}
