//! OffsetCommit (v2-v9): checks the member's generation with the coordinator, then stores
//! the offsets in `kafka.consumer_offsets` (one statement, one transaction) before
//! answering.

use std::collections::BTreeMap;

use kafka_protocol::messages::offset_commit_response::{OffsetCommitResponsePartition, OffsetCommitResponseTopic};
use kafka_protocol::messages::{OffsetCommitRequest, OffsetCommitResponse};
use kafka_protocol::ResponseError;

use super::groups::MemberRef;
use super::{decode, respond, storage_call, Broker, Outcome};
use crate::logging;
use crate::protocol::header::RequestFrame;
use crate::storage::topics::TopicRef;
use crate::storage::OffsetCommit;

/// Kafka's `offset.metadata.max.bytes`.
const MAX_METADATA_BYTES: usize = 4096;

pub async fn handle(broker: &Broker, request: &RequestFrame) -> Outcome {
    let body: OffsetCommitRequest = match decode(request) {
        Ok(body) => body,
        Err(outcome) => return outcome,
    };
    let member = MemberRef { member_id: body.member_id.to_string(), instance_id: body.group_instance_id.as_ref().map(ToString::to_string) };
    let group_id = body.group_id.to_string();
    let checked = if group_id.is_empty() {
        Err(ResponseError::InvalidGroupId)
    } else {
        broker.groups.check_commit(&group_id, body.generation_id_or_member_epoch, &member)
    };
    if let Err(error) = checked {
        return respond(request, &response(&body, |_, _| Some(error)));
    }

    let wanted: Vec<(TopicRef, i32)> = body
        .topics
        .iter()
        .map(|t| (TopicRef::Name(t.name.to_string()), t.partitions.iter().map(|p| p.partition_index).max().unwrap_or(0)))
        .collect();
    let found = match broker.topics.resolve(&broker.storage, &wanted).await {
        Ok(found) => found,
        Err(e) => {
            logging::warning(format!("pg_kafka: offset commit failed: {e}"));
            return respond(request, &response(&body, |_, _| Some(ResponseError::CoordinatorNotAvailable)));
        }
    };
    // Per (topic, partition): a refusal, or the commit to store (the last one wins when a
    // request names a partition twice).
    let mut refusals = BTreeMap::new();
    let mut commits = BTreeMap::new();
    for topic in &body.topics {
        let resolved = found.get(&TopicRef::Name(topic.name.to_string())).cloned().flatten();
        for p in &topic.partitions {
            let key = (topic.name.to_string(), p.partition_index);
            let metadata = p.committed_metadata.as_ref().map(ToString::to_string);
            let refusal = match &resolved {
                Some(t) if (0..t.partitions).contains(&p.partition_index) => None,
                _ => Some(ResponseError::UnknownTopicOrPartition),
            }
            .or_else(|| metadata.as_ref().filter(|m| m.len() > MAX_METADATA_BYTES).map(|_| ResponseError::OffsetMetadataTooLarge));
            match (refusal, &resolved) {
                (Some(error), _) => {
                    refusals.insert(key, error);
                }
                (None, Some(t)) => {
                    let commit = OffsetCommit {
                        topic_id: t.id,
                        partition: p.partition_index,
                        offset: p.committed_offset,
                        leader_epoch: p.committed_leader_epoch,
                        metadata,
                    };
                    commits.insert(key, commit);
                }
                (None, None) => unreachable!("a partition without a topic is refused"),
            }
        }
    }
    let rows: Vec<OffsetCommit> = commits.into_values().collect();
    let stored = if rows.is_empty() {
        Ok(())
    } else {
        let group = group_id.clone();
        storage_call(broker, move |s| s.commit_offsets(&group, &rows)).await
    };
    if let Err(e) = &stored {
        logging::warning(format!("pg_kafka: storing offsets of group \"{group_id}\" failed: {e}"));
    }
    respond(
        request,
        &response(&body, |topic, partition| {
            refusals.get(&(topic.to_owned(), partition)).copied().or_else(|| stored.is_err().then_some(ResponseError::KafkaStorageError))
        }),
    )
}

/// One entry per requested partition, with the error `error_of(topic, partition)` gives.
fn response(body: &OffsetCommitRequest, error_of: impl Fn(&str, i32) -> Option<ResponseError>) -> OffsetCommitResponse {
    let topics = body
        .topics
        .iter()
        .map(|t| {
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let code = error_of(&t.name, p.partition_index).map_or(0, |e| e.code());
                    OffsetCommitResponsePartition::default().with_partition_index(p.partition_index).with_error_code(code)
                })
                .collect();
            OffsetCommitResponseTopic::default().with_name(t.name.clone()).with_partitions(partitions)
        })
        .collect();
    OffsetCommitResponse::default().with_topics(topics)
}
