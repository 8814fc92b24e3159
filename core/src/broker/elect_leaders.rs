//! ElectLeaders (v0-v2): the one broker leads every partition and is every partition's
//! preferred (and only) replica, so no election is ever needed. Named partitions that exist
//! answer ELECTION_NOT_NEEDED, unknown ones UNKNOWN_TOPIC_OR_PARTITION; a request for all
//! partitions (null) answers an empty list, as Kafka leaves out the partitions that needed
//! no election.

use kafka_protocol::messages::elect_leaders_response::{PartitionResult, ReplicaElectionResult};
use kafka_protocol::messages::{ElectLeadersRequest, ElectLeadersResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::authorize::access;
use super::{decode, respond, Broker, Outcome};
use crate::protocol::header::RequestFrame;
use crate::security::acl::Operation;
use crate::storage::topics::TopicRef;

pub async fn handle(broker: &Broker, request: &RequestFrame) -> Outcome {
    let body: ElectLeadersRequest = match decode(request) {
        Ok(body) => body,
        Err(outcome) => return outcome,
    };
    if let Err(denied) = access(broker).await.check_cluster(Operation::Alter) {
        return respond(request, &ElectLeadersResponse::default().with_error_code(denied.code()));
    }
    let wanted = body.topic_partitions.unwrap_or_default();
    let refs: Vec<(TopicRef, i32)> =
        wanted.iter().flat_map(|t| t.partitions.iter().map(move |p| (TopicRef::Name(t.topic.0.to_string()), *p))).collect();
    let found = match broker.topics.resolve(&broker.storage, &refs).await {
        Ok(found) => found,
        Err(_) => return respond(request, &ElectLeadersResponse::default().with_error_code(ResponseError::KafkaStorageError.code())),
    };
    let results = wanted
        .iter()
        .map(|t| {
            let topic = found.get(&TopicRef::Name(t.topic.0.to_string())).cloned().flatten();
            let partitions = t
                .partitions
                .iter()
                .map(|&p| {
                    let exists = topic.as_ref().is_some_and(|topic| (0..topic.partitions).contains(&p));
                    let (error, message) = if exists {
                        (ResponseError::ElectionNotNeeded, "the only replica already leads the partition")
                    } else {
                        (ResponseError::UnknownTopicOrPartition, "no such topic or partition")
                    };
                    PartitionResult::default()
                        .with_partition_id(p)
                        .with_error_code(error.code())
                        .with_error_message(Some(StrBytes::from_static_str(message)))
                })
                .collect();
            ReplicaElectionResult::default().with_topic(t.topic.clone()).with_partition_result(partitions)
        })
        .collect();
    respond(request, &ElectLeadersResponse::default().with_replica_election_results(results))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::testing::{broker_with_writer, round_trip};
    use kafka_protocol::messages::elect_leaders_request::TopicPartitions;
    use kafka_protocol::messages::{ApiKey, TopicName};

    #[tokio::test]
    async fn existing_partitions_need_no_election_and_unknown_ones_are_unknown() {
        let broker = broker_with_writer(2);
        let named = |name: &'static str, partitions: Vec<i32>| {
            TopicPartitions::default().with_topic(TopicName(StrBytes::from_static_str(name))).with_partitions(partitions)
        };
        for version in 0..=2 {
            let request =
                ElectLeadersRequest::default().with_topic_partitions(Some(vec![named("t", vec![0, 1, 2]), named("nope", vec![0])]));
            let response: ElectLeadersResponse = round_trip(&broker, ApiKey::ElectLeaders, version, &request).await;
            let codes: Vec<Vec<i16>> =
                response.replica_election_results.iter().map(|t| t.partition_result.iter().map(|p| p.error_code).collect()).collect();
            assert_eq!(codes, vec![vec![84, 84, 3], vec![3]], "v{version}");
            let all: ElectLeadersResponse =
                round_trip(&broker, ApiKey::ElectLeaders, version, &ElectLeadersRequest::default().with_topic_partitions(None)).await;
            assert!(all.replica_election_results.is_empty());
        }
    }
}
