//! ListOffsets (v1-v10): where a partition starts and ends, and which offset a timestamp
//! falls at.
//!
//! Earliest (-2, and -4 "earliest local": all of our log is local) and latest (-1) come
//! from the in-memory partition bounds; max timestamp (-3, v7+) and a timestamp search
//! (target >= 0: the first offset whose timestamp is at or after it) read the table, all
//! partitions of a request in one storage job. Latest under read_committed (isolation
//! level 1, v2+) is the last stable offset: the first offset of the oldest open
//! transaction on the partition, else the high watermark. -5 ("latest
//! tiered", v9+) has no tiered storage to point into and answers offset -1.

use kafka_protocol::messages::list_offsets_response::{ListOffsetsPartitionResponse, ListOffsetsTopicResponse};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};
use kafka_protocol::ResponseError;

use super::authorize::access;
use super::{decode, respond, Broker, Outcome};
use crate::logging;
use crate::protocol::header::RequestFrame;
use crate::security::acl::Operation;
use crate::storage::bridge::{StorageCallError, Unavailable};
use crate::storage::topics::TopicRef;
use crate::storage::watermarks::Bounds;
use crate::storage::{Storage, StorageError};

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;
const EARLIEST_LOCAL: i64 = -4;
const LATEST_TIERED: i64 = -5;

/// An answer: (offset, timestamp), or an error code.
type Answer = Result<(i64, i64), ResponseError>;

pub async fn handle(broker: &Broker, request: &RequestFrame) -> Outcome {
    let body: ListOffsetsRequest = match decode(request) {
        Ok(body) => body,
        Err(outcome) => return outcome,
    };
    let answers = match answer_all(broker, &body).await {
        Ok(answers) => answers,
        Err(reason) => {
            logging::warning(format!("pg_kafka: list offsets failed: {reason}"));
            vec![Err(ResponseError::KafkaStorageError); body.topics.iter().map(|t| t.partitions.len()).sum()]
        }
    };
    let mut answers = answers.into_iter();
    let topics = body
        .topics
        .iter()
        .map(|t| {
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let answer = ListOffsetsPartitionResponse::default().with_partition_index(p.partition_index).with_leader_epoch(-1);
                    match answers.next().expect("one answer per partition") {
                        Ok((offset, timestamp)) => answer.with_offset(offset).with_timestamp(timestamp),
                        Err(error) => answer.with_error_code(error.code()).with_offset(-1).with_timestamp(-1),
                    }
                })
                .collect();
            ListOffsetsTopicResponse::default().with_name(t.name.clone()).with_partitions(partitions)
        })
        .collect();
    respond(request, &ListOffsetsResponse::default().with_topics(topics))
}

/// A partition whose answer needs the table: (index in the request, topic id, partition, target).
type Search = (usize, i32, i32, i64);

async fn answer_all(broker: &Broker, body: &ListOffsetsRequest) -> Result<Vec<Answer>, StorageCallError> {
    let requested: Vec<(TopicRef, i32, i64)> = body
        .topics
        .iter()
        .flat_map(|t| t.partitions.iter().map(move |p| (TopicRef::Name(t.name.0.to_string()), p.partition_index, p.timestamp)))
        .collect();
    let refs: Vec<(TopicRef, i32)> = requested.iter().map(|(t, p, _)| (t.clone(), *p)).collect();
    let found = broker.topics.resolve(&broker.storage, &refs).await?;
    let access = access(broker).await;

    let mut answers: Vec<Answer> = Vec::with_capacity(requested.len());
    let mut known = Vec::new();
    let mut searches: Vec<Search> = Vec::new();
    for (index, (topic, partition, target)) in requested.iter().enumerate() {
        let topic = found.get(topic).cloned().flatten().filter(|t| (0..t.partitions).contains(partition));
        let Some(topic) = topic else {
            answers.push(Err(ResponseError::UnknownTopicOrPartition));
            continue;
        };
        if let Err(denied) = access.check_topic(Operation::Describe, &topic.name) {
            answers.push(Err(denied));
            continue;
        }
        answers.push(Ok((-1, -1)));
        match *target {
            LATEST | EARLIEST | EARLIEST_LOCAL => known.push((index, topic.id, *partition, *target)),
            LATEST_TIERED => {}
            _ => searches.push((index, topic.id, *partition, *target)),
        }
    }
    if !known.is_empty() || !searches.is_empty() {
        let watermarks = broker.watermarks.clone();
        let partitions: Vec<(i32, i32)> = known.iter().map(|&(_, t, p, _)| (t, p)).collect();
        let found = broker
            .storage
            .try_call(move |storage| {
                watermarks.load(storage, &partitions)?;
                search(storage, searches)
            })
            .await?;
        for (index, answer) in found {
            answers[index] = Ok(answer);
        }
    }
    let read_committed = body.isolation_level == super::fetch::READ_COMMITTED;
    if read_committed && !known.is_empty() {
        broker.txns.ready(broker).await.map_err(|_| StorageCallError::Unavailable(Unavailable("transaction state not loaded")))?;
    }
    for (index, topic_id, partition, target) in known {
        // Bounds vanish only when the topic was deleted meanwhile.
        answers[index] = match broker.watermarks.get(topic_id, partition) {
            Some(bounds) if target == LATEST && read_committed => {
                Ok((broker.txns.log().stable_offset((topic_id, partition), bounds.high), -1))
            }
            Some(bounds) => Ok((bound_for(target, bounds), -1)),
            None => Err(ResponseError::UnknownTopicOrPartition),
        };
    }
    Ok(answers)
}

fn bound_for(target: i64, bounds: Bounds) -> i64 {
    if target == LATEST {
        bounds.high
    } else {
        bounds.log_start
    }
}

/// A search's answer: its index among the answers, and (offset, timestamp).
type Found = (usize, (i64, i64));

/// Answers the partitions that need the table; (-1, -1) when no message qualifies.
fn search(storage: &mut dyn Storage, searches: Vec<Search>) -> Result<Vec<Found>, StorageError> {
    searches
        .into_iter()
        .map(|(index, topic_id, partition, target)| {
            let found = if target == MAX_TIMESTAMP {
                storage.max_timestamp(topic_id, partition)?
            } else {
                storage.offset_for_timestamp(topic_id, partition, target)?
            };
            Ok((index, found.unwrap_or((-1, -1))))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::testing::{append_values, broker_with_writer, round_trip};
    use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
    use kafka_protocol::messages::{ApiKey, TopicName};
    use kafka_protocol::protocol::StrBytes;

    async fn list(broker: &Broker, version: i16, topic: &'static str, targets: &[(i32, i64)]) -> Vec<(i16, i64, i64)> {
        let partitions =
            targets.iter().map(|&(p, ts)| ListOffsetsPartition::default().with_partition_index(p).with_timestamp(ts)).collect();
        let request = ListOffsetsRequest::default().with_replica_id((-1).into()).with_topics(vec![ListOffsetsTopic::default()
            .with_name(TopicName(StrBytes::from_static_str(topic)))
            .with_partitions(partitions)]);
        let response: ListOffsetsResponse = round_trip(broker, ApiKey::ListOffsets, version, &request).await;
        response.topics[0].partitions.iter().map(|p| (p.error_code, p.offset, p.timestamp)).collect()
    }

    #[tokio::test]
    async fn answers_earliest_latest_and_timestamps_at_every_version() {
        let broker = broker_with_writer(2);
        // Timestamps 1_700_000_000_000 + 0, 1, 2.
        append_values(&broker, 0, &[b"a", b"b", b"c"]).await;
        let t0 = 1_700_000_000_000;
        for version in 1..=10 {
            let answers = list(&broker, version, "t", &[(0, EARLIEST), (0, LATEST), (0, t0 + 1), (0, t0 + 9), (1, LATEST)]).await;
            assert_eq!(answers, vec![(0, 0, -1), (0, 3, -1), (0, 1, t0 + 1), (0, -1, -1), (0, 0, -1)], "v{version}");
        }
        assert_eq!(list(&broker, 7, "t", &[(0, MAX_TIMESTAMP)]).await, vec![(0, 2, t0 + 2)]);
    }

    #[tokio::test]
    async fn unknown_topics_and_partitions_get_their_code() {
        let broker = broker_with_writer(1);
        let unknown = ResponseError::UnknownTopicOrPartition.code();
        assert_eq!(list(&broker, 5, "t", &[(9, LATEST)]).await, vec![(unknown, -1, -1)]);
        assert_eq!(list(&broker, 5, "nope", &[(0, LATEST)]).await, vec![(unknown, -1, -1)]);
    }
}
