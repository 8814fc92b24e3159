//! ListPartitionReassignments (v0): a one-broker cluster never moves a replica, so no
//! reassignment is ever in progress; the answer is the empty list Kafka gives when none is.

use kafka_protocol::messages::{ListPartitionReassignmentsRequest, ListPartitionReassignmentsResponse};
use kafka_protocol::protocol::StrBytes;

use super::authorize::access;
use super::{decode, respond, Broker, Outcome};
use crate::protocol::header::RequestFrame;
use crate::security::acl::Operation;

pub async fn handle(broker: &Broker, request: &RequestFrame) -> Outcome {
    if let Err(outcome) = decode::<ListPartitionReassignmentsRequest>(request) {
        return outcome;
    }
    let response = ListPartitionReassignmentsResponse::default();
    match access(broker).await.check_cluster(Operation::Describe) {
        Ok(()) => respond(request, &response),
        Err(denied) => respond(
            request,
            &response
                .with_error_code(denied.code())
                .with_error_message(Some(StrBytes::from_static_str("DESCRIBE on the cluster is needed"))),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::testing::{broker, round_trip};
    use kafka_protocol::messages::ApiKey;

    #[tokio::test]
    async fn no_reassignment_is_ever_in_progress() {
        let response: ListPartitionReassignmentsResponse =
            round_trip(&broker(), ApiKey::ListPartitionReassignments, 0, &ListPartitionReassignmentsRequest::default()).await;
        assert_eq!((response.error_code, response.topics.len()), (0, 0));
    }
}
