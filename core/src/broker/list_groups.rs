//! ListGroups (v0-v5): groups with members, and groups known only by their committed
//! offsets (listed as "Empty" consumer groups). Filters by state (v4+) and type (v5+;
//! every group here is "classic").

use super::authorize::access;
use crate::security::acl::Operation;
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::{GroupId, ListGroupsRequest, ListGroupsResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::groups::{GroupState, OFFSETS_ONLY_PROTOCOL_TYPE};
use super::{decode, offset_groups, respond, Broker, Outcome};
use crate::protocol::header::RequestFrame;

pub async fn handle(broker: &Broker, request: &RequestFrame) -> Outcome {
    let body: ListGroupsRequest = match decode(request) {
        Ok(body) => body,
        Err(outcome) => return outcome,
    };
    let mut groups = broker.groups.list();
    let stored = offset_groups(broker).await;
    if let Ok(stored) = &stored {
        for group_id in stored {
            if !groups.iter().any(|(id, _, _)| id == group_id) {
                groups.push((group_id.clone(), OFFSETS_ONLY_PROTOCOL_TYPE.into(), GroupState::Empty));
            }
        }
    }
    groups.sort_by(|a, b| a.0.cmp(&b.0));
    let wanted_state =
        |state: GroupState| body.states_filter.is_empty() || body.states_filter.iter().any(|s| s.eq_ignore_ascii_case(state.name()));
    let classic_wanted = body.types_filter.is_empty() || body.types_filter.iter().any(|t| t.eq_ignore_ascii_case("classic"));
    // Without DESCRIBE on the cluster, only the groups the principal may describe.
    let access = access(broker).await;
    let everything = access.allows_cluster(Operation::Describe);
    let listed = groups
        .into_iter()
        .filter(|(id, _, _)| everything || access.allows_group(Operation::Describe, id))
        .filter(|(_, _, state)| classic_wanted && wanted_state(*state))
        .map(|(id, protocol_type, state)| {
            ListedGroup::default()
                .with_group_id(GroupId(StrBytes::from_string(id)))
                .with_protocol_type(StrBytes::from_string(protocol_type))
                .with_group_state(StrBytes::from_static_str(state.name()))
                .with_group_type(StrBytes::from_static_str("classic"))
        })
        .collect();
    let code = stored.err().map_or(0, |_| ResponseError::CoordinatorNotAvailable.code());
    respond(request, &ListGroupsResponse::default().with_groups(listed).with_error_code(code))
}
