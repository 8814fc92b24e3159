//! DescribeProducers (v0): the idempotent producers whose state a partition keeps
//! (`kafka.producer_state`), for `kafka-transactions describe-producers` and Admin's
//! describeProducers. A producer with a transaction open on the partition shows its first
//! offset there (`current_txn_start_offset`, else -1); there is no coordinator epoch; the
//! last timestamp is when the partition last stored a batch of it. Needs READ on each topic, as in Kafka; a
//! partition that does not exist answers UNKNOWN_TOPIC_OR_PARTITION.

use std::collections::HashMap;

use kafka_protocol::messages::describe_producers_response::{PartitionResponse, ProducerState, TopicResponse};
use kafka_protocol::messages::{DescribeProducersRequest, DescribeProducersResponse, ProducerId};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::authorize::access;
use super::{decode, respond, Broker, Outcome};
use crate::protocol::header::RequestFrame;
use crate::security::acl::Operation;
use crate::storage::topics::TopicRef;
use crate::storage::ActiveProducer;

pub async fn handle(broker: &Broker, request: &RequestFrame) -> Outcome {
    let body: DescribeProducersRequest = match decode(request) {
        Ok(body) => body,
        Err(outcome) => return outcome,
    };
    let access = access(broker).await;
    let refs: Vec<(TopicRef, i32)> =
        body.topics.iter().flat_map(|t| t.partition_indexes.iter().map(move |p| (TopicRef::Name(t.name.0.to_string()), *p))).collect();
    let Ok(found) = broker.topics.resolve(&broker.storage, &refs).await else {
        return storage_failure(request, &body);
    };
    // Each asked partition: its (topic id, partition) once it exists and may be read, or the error.
    let answers: Vec<Vec<Result<(i32, i32), ResponseError>>> = body
        .topics
        .iter()
        .map(|t| {
            let topic = found.get(&TopicRef::Name(t.name.0.to_string())).cloned().flatten();
            t.partition_indexes
                .iter()
                .map(|&p| match &topic {
                    Some(topic) if (0..topic.partitions).contains(&p) => {
                        access.check_topic(Operation::Read, &topic.name).map(|()| (topic.id, p))
                    }
                    _ => Err(ResponseError::UnknownTopicOrPartition),
                })
                .collect()
        })
        .collect();
    let keys: Vec<(i32, i32)> = answers.iter().flatten().filter_map(|a| a.as_ref().ok().copied()).collect();
    let producers = match broker.storage.try_call(move |storage| storage.active_producers(&keys)).await {
        Ok(producers) => producers,
        Err(_) => return storage_failure(request, &body),
    };
    let mut by_partition: HashMap<(i32, i32), Vec<ProducerState>> = HashMap::new();
    for producer in producers {
        by_partition.entry(producer.partition).or_default().push(described(&producer, broker.txns.log()));
    }
    let topics = body
        .topics
        .iter()
        .zip(answers)
        .map(|(t, answers)| {
            let partitions = t
                .partition_indexes
                .iter()
                .zip(answers)
                .map(|(&p, answer)| match answer {
                    Ok(key) => PartitionResponse::default()
                        .with_partition_index(p)
                        .with_active_producers(by_partition.remove(&key).unwrap_or_default()),
                    Err(error) => failed(p, error),
                })
                .collect();
            TopicResponse::default().with_name(t.name.clone()).with_partitions(partitions)
        })
        .collect();
    respond(request, &DescribeProducersResponse::default().with_topics(topics))
}

fn described(producer: &ActiveProducer, txns: &crate::storage::transactions::TxnLog) -> ProducerState {
    ProducerState::default()
        .with_producer_id(ProducerId(producer.producer_id))
        .with_producer_epoch(i32::from(producer.epoch))
        .with_last_sequence(producer.last_sequence)
        .with_last_timestamp(producer.last_timestamp_ms)
        .with_coordinator_epoch(-1)
        .with_current_txn_start_offset(txns.open_at(producer.partition, producer.producer_id).unwrap_or(-1))
}

fn failed(partition: i32, error: ResponseError) -> PartitionResponse {
    PartitionResponse::default()
        .with_partition_index(partition)
        .with_error_code(error.code())
        .with_error_message(Some(StrBytes::from_string(error.to_string())))
}

/// Every asked partition answers KAFKA_STORAGE_ERROR (the database could not be read).
fn storage_failure(request: &RequestFrame, body: &DescribeProducersRequest) -> Outcome {
    let topics = body
        .topics
        .iter()
        .map(|t| {
            let partitions = t.partition_indexes.iter().map(|&p| failed(p, ResponseError::KafkaStorageError)).collect();
            TopicResponse::default().with_name(t.name.clone()).with_partitions(partitions)
        })
        .collect();
    respond(request, &DescribeProducersResponse::default().with_topics(topics))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::testing::{broker_with_writer, round_trip, with_storage};
    use crate::storage::{ProducerState as Stored, SequencedBatch};
    use kafka_protocol::messages::describe_producers_request::TopicRequest;
    use kafka_protocol::messages::{ApiKey, TopicName};

    #[tokio::test]
    async fn a_partitions_producers_are_listed_with_their_last_sequence() {
        let broker = broker_with_writer(2);
        let topic_id = with_storage(&broker, |s| s.topic("t")).await.unwrap().unwrap().id;
        let batch = |first, last| SequencedBatch { first_sequence: first, last_sequence: last, base_offset: 0 };
        let states = vec![
            ((7, topic_id, 0), Stored { epoch: 2, batches: [batch(0, 4), batch(5, 9)].into() }),
            ((3, topic_id, 0), Stored { epoch: 0, batches: [batch(0, 0)].into() }),
            ((7, topic_id, 1), Stored { epoch: 2, batches: [batch(0, 1)].into() }),
        ];
        with_storage(&broker, move |s| s.save_producer_states(&states)).await.unwrap();
        let request = DescribeProducersRequest::default().with_topics(vec![
            TopicRequest::default().with_name(TopicName(StrBytes::from_static_str("t"))).with_partition_indexes(vec![0, 5]),
            TopicRequest::default().with_name(TopicName(StrBytes::from_static_str("nope"))).with_partition_indexes(vec![0]),
        ]);
        let response: DescribeProducersResponse = round_trip(&broker, ApiKey::DescribeProducers, 0, &request).await;
        let zero = &response.topics[0].partitions[0];
        let seen: Vec<(i64, i32, i32, i64)> = zero
            .active_producers
            .iter()
            .map(|p| (p.producer_id.0, p.producer_epoch, p.last_sequence, p.current_txn_start_offset))
            .collect();
        assert_eq!(seen, vec![(3, 0, 0, -1), (7, 2, 9, -1)], "partition 1's producer is not partition 0's");
        assert_eq!(response.topics[0].partitions[1].error_code, ResponseError::UnknownTopicOrPartition.code());
        assert_eq!(response.topics[1].partitions[0].error_code, ResponseError::UnknownTopicOrPartition.code());
    }
}
