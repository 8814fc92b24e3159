//! OffsetCommit (v2-v9): checks the member's generation with the coordinator, then stores
//! the offsets in `kafka.consumer_offsets` (one statement, one transaction) before
//! answering.

use super::authorize::access;
use crate::security::acl::Operation;
use std::collections::BTreeMap;

use kafka_protocol::messages::offset_commit_response::{OffsetCommitResponsePartition, OffsetCommitResponseTopic};
use kafka_protocol::messages::{OffsetCommitRequest, OffsetCommitResponse};
use kafka_protocol::ResponseError;

use super::groups::{check_group_id, MemberRef};
use super::{decode, respond, storage_call, Broker, Outcome};
use crate::logging;
use crate::protocol::header::RequestFrame;
use crate::storage::topics::TopicRef;
use crate::storage::{offsets_topic, OffsetCommit};

/// Kafka's `offset.metadata.max.bytes`.
const MAX_METADATA_BYTES: usize = 4096;

pub async fn handle(broker: &Broker, request: &RequestFrame) -> Outcome {
    let body: OffsetCommitRequest = match decode(request) {
        Ok(body) => body,
        Err(outcome) => return outcome,
    };
    let member = MemberRef { member_id: body.member_id.to_string(), instance_id: body.group_instance_id.as_ref().map(ToString::to_string) };
    let group_id = body.group_id.to_string();
    let access = access(broker).await;
    let checked = check_group_id(&group_id)
        .and_then(|()| access.check_group(Operation::Read, &group_id))
        .and_then(|()| broker.groups.check_commit(&group_id, body.generation_id_or_member_epoch, &member));
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
                // Offsets of `__consumer_offsets` itself are not stored (its id is no topic row).
                Some(t) if (0..t.partitions).contains(&p.partition_index) => {
                    access.check_topic(Operation::Read, &t.name).and_then(|()| offsets_topic::refuse_change(t.id)).err()
                }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::in_order::Chain;
    use crate::broker::testing::{broker_with_writer, request_frame, with_storage};
    use kafka_protocol::messages::offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic};
    use kafka_protocol::messages::{ApiKey, GroupId, TopicName};
    use kafka_protocol::protocol::StrBytes;

    fn commit(offset: i64) -> RequestFrame {
        commit_from("g", offset, None)
    }

    fn commit_from(group: &'static str, offset: i64, metadata: Option<&'static str>) -> RequestFrame {
        let partition = OffsetCommitRequestPartition::default()
            .with_partition_index(0)
            .with_committed_offset(offset)
            .with_committed_metadata(metadata.map(StrBytes::from_static_str));
        let body = OffsetCommitRequest::default()
            .with_group_id(GroupId(StrBytes::from_static_str(group)))
            .with_generation_id_or_member_epoch(-1)
            .with_topics(vec![OffsetCommitRequestTopic::default()
                .with_name(TopicName(StrBytes::from_static_str("t")))
                .with_partitions(vec![partition])]);
        request_frame(ApiKey::OffsetCommit, 8, &body)
    }

    /// Postgres text cannot hold NUL bytes, which Kafka strings may: such a group id is
    /// INVALID_GROUP_ID (stored nowhere); such metadata is stored and read back byte-exact
    /// (librdkafka's tests 0099 and 0130 commit it).
    #[tokio::test]
    async fn strings_with_nul_round_trip_or_get_kafka_errors() {
        let broker = broker_with_writer(1);
        let code = |outcome: Outcome| -> i16 {
            let response: OffsetCommitResponse = crate::broker::testing::decode_response(outcome, ApiKey::OffsetCommit, 8);
            response.topics[0].partitions[0].error_code
        };
        assert_eq!(code(broker.handle(commit_from("g\0x", 5, None)).await), ResponseError::InvalidGroupId.code());
        assert_eq!(with_storage(&broker, |s| s.offset_groups()).await.unwrap(), Vec::<String>::new());
        assert_eq!(code(broker.handle(commit_from("g", 5, Some("m\0x"))).await), 0);
        let stored = with_storage(&broker, |s| s.committed_offsets("g")).await.unwrap();
        assert_eq!(stored[0].metadata.as_deref(), Some("m\0x"));
    }

    /// Two commits pipelined on one connection take effect in request order, whichever
    /// task gets to run first: the committed offset never goes backwards.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_connections_commits_apply_in_request_order() {
        for _ in 0..20 {
            let broker = broker_with_writer(1);
            let mut chain = Chain::default();
            let (first, second) = (chain.next_link(), chain.next_link());
            let later = {
                let broker = broker.clone();
                tokio::spawn(async move { broker.handle_in_order(commit(50), second, crate::broker::session::Session::loopback()).await })
            };
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            broker.handle_in_order(commit(49), first, crate::broker::session::Session::loopback()).await;
            later.await.unwrap();
            let stored = with_storage(&broker, |s| s.committed_offsets("g")).await.unwrap();
            assert_eq!(stored.iter().map(|c| c.offset).collect::<Vec<_>>(), vec![50]);
        }
    }
}
