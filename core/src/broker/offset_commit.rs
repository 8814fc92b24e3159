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

    let wanted: Vec<WantedTopic> = body
        .topics
        .iter()
        .map(|t| {
            let partitions = t.partitions.iter().map(|p| {
                (p.partition_index, p.committed_offset, p.committed_leader_epoch, p.committed_metadata.as_ref().map(ToString::to_string))
            });
            (t.name.to_string(), partitions.collect())
        })
        .collect();
    let (refusals, commits) = match checked_commits(broker, &access, &wanted).await {
        Ok(checked) => checked,
        Err(error) => return respond(request, &response(&body, |_, _| Some(error))),
    };
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

/// One topic's offsets as a commit request names them: partitions with offset, leader
/// epoch and metadata.
pub(super) type WantedTopic = (String, Vec<(i32, i64, i32, Option<String>)>);

/// Per (topic, partition): refusals, and the commits to store (the last one wins when a
/// request names a partition twice). READ on each topic, partitions that exist, metadata
/// within `offset.metadata.max.bytes`; shared by OffsetCommit and TxnOffsetCommit.
pub(super) async fn checked_commits(
    broker: &Broker,
    access: &super::authorize::Access,
    wanted: &[WantedTopic],
) -> Result<(BTreeMap<(String, i32), ResponseError>, BTreeMap<(String, i32), OffsetCommit>), ResponseError> {
    let refs: Vec<(TopicRef, i32)> =
        wanted.iter().map(|(name, partitions)| (TopicRef::Name(name.clone()), partitions.iter().map(|p| p.0).max().unwrap_or(0))).collect();
    let found = broker.topics.resolve(&broker.storage, &refs).await.map_err(|e| {
        logging::warning(format!("pg_kafka: offset commit failed: {e}"));
        ResponseError::CoordinatorNotAvailable
    })?;
    let mut refusals = BTreeMap::new();
    let mut commits = BTreeMap::new();
    for (name, partitions) in wanted {
        let resolved = found.get(&TopicRef::Name(name.clone())).cloned().flatten();
        for (partition, offset, leader_epoch, metadata) in partitions {
            let key = (name.clone(), *partition);
            let refusal = match &resolved {
                // Offsets of `__consumer_offsets` itself are not stored (its id is no topic row).
                Some(t) if (0..t.partitions).contains(partition) => {
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
                        partition: *partition,
                        offset: *offset,
                        leader_epoch: *leader_epoch,
                        metadata: metadata.clone(),
                    };
                    commits.insert(key, commit);
                }
                (None, None) => unreachable!("a partition without a topic is refused"),
            }
        }
    }
    Ok((refusals, commits))
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
