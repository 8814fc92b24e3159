//! OffsetFetch (v1-v9): committed offsets from `kafka.consumer_offsets`, for one group
//! (v1-v7) or many (v8+). A partition without a commit reads -1; no topic list means
//! every partition the group has committed.

use super::authorize::access;
use crate::security::acl::Operation;
use std::collections::HashMap;

use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions, OffsetFetchResponseTopic,
    OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{GroupId, OffsetFetchRequest, OffsetFetchResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::{decode, respond, storage_call, Broker, Outcome};
use crate::logging;
use crate::protocol::header::RequestFrame;
use crate::storage::is_storable_text;
use crate::storage::CommittedOffset;

/// One group's question: `None` asks for everything it committed.
struct Asked {
    group_id: GroupId,
    topics: Option<Vec<(TopicName, Vec<i32>)>>,
}

/// A group's answer: per topic, per partition (offset, leader epoch, metadata).
type Answer = Vec<(TopicName, Vec<(i32, Option<CommittedOffset>)>)>;

pub async fn handle(broker: &Broker, request: &RequestFrame) -> Outcome {
    let body: OffsetFetchRequest = match decode(request) {
        Ok(body) => body,
        Err(outcome) => return outcome,
    };
    let asked: Vec<Asked> = if request.version() >= 8 {
        body.groups
            .iter()
            .map(|g| Asked {
                group_id: g.group_id.clone(),
                topics: g.topics.as_ref().map(|ts| ts.iter().map(|t| (t.name.clone(), t.partition_indexes.clone())).collect()),
            })
            .collect()
    } else {
        vec![Asked {
            group_id: body.group_id.clone(),
            topics: body.topics.as_ref().map(|ts| ts.iter().map(|t| (t.name.clone(), t.partition_indexes.clone())).collect()),
        }]
    };
    // DESCRIBE on the group to read its offsets, and on each topic to see it.
    let access = access(broker).await;
    let denied: Vec<Option<ResponseError>> = asked.iter().map(|a| access.check_group(Operation::Describe, &a.group_id).err()).collect();
    // A group id Postgres cannot store has no offsets: it is not looked up (nor a denied one).
    let groups: Vec<Option<String>> = asked.iter().zip(&denied).map(|(a, d)| d.is_none().then(|| a.group_id.to_string())).collect();
    let stored = storage_call(broker, move |s| {
        groups
            .iter()
            .map(|g| match g {
                Some(g) if is_storable_text(g) => s.committed_offsets(g),
                _ => Ok(Vec::new()),
            })
            .collect::<Result<Vec<_>, _>>()
    })
    .await;
    let (answers, error): (Vec<Answer>, _) = match stored {
        Ok(stored) => (asked.iter().zip(stored).map(|(a, s)| answer(a, s)).collect(), None),
        Err(e) => {
            logging::warning(format!("pg_kafka: offset fetch failed: {e}"));
            (asked.iter().map(|a| answer(a, Vec::new())).collect(), Some(ResponseError::CoordinatorNotAvailable))
        }
    };
    let answers: Vec<Answer> =
        answers.into_iter().map(|a| a.into_iter().filter(|(name, _)| access.allows_topic(Operation::Describe, name)).collect()).collect();
    let code_of = |denied: &Option<ResponseError>| denied.or(error).map_or(0, |e| e.code());
    let response = if request.version() >= 8 {
        let groups = asked.iter().zip(answers).zip(&denied).map(|((a, answer), d)| group_response(a.group_id.clone(), answer, code_of(d)));
        OffsetFetchResponse::default().with_groups(groups.collect())
    } else {
        let answer: Answer = answers.into_iter().next().unwrap_or_default();
        let topics = answer
            .into_iter()
            .map(|(name, partitions)| {
                let partitions = partitions
                    .into_iter()
                    .map(|(index, c)| {
                        OffsetFetchResponsePartition::default()
                            .with_partition_index(index)
                            .with_committed_offset(c.as_ref().map_or(-1, |c| c.offset))
                            .with_committed_leader_epoch(c.as_ref().map_or(-1, |c| c.leader_epoch))
                            .with_metadata(Some(metadata(&c)))
                    })
                    .collect();
                OffsetFetchResponseTopic::default().with_name(name).with_partitions(partitions)
            })
            .collect();
        // Before v8 one group is asked (`asked` has exactly one entry).
        let code = denied.first().map_or(0, code_of);
        OffsetFetchResponse::default().with_topics(topics).with_error_code(code)
    };
    respond(request, &response)
}

fn metadata(commit: &Option<CommittedOffset>) -> StrBytes {
    StrBytes::from_string(commit.as_ref().and_then(|c| c.metadata.clone()).unwrap_or_default())
}

/// The requested partitions (or all stored ones) with their commits.
fn answer(asked: &Asked, stored: Vec<CommittedOffset>) -> Answer {
    match &asked.topics {
        Some(topics) => {
            let by_key: HashMap<(String, i32), CommittedOffset> = stored.into_iter().map(|c| ((c.topic.clone(), c.partition), c)).collect();
            topics
                .iter()
                .map(|(name, partitions)| {
                    let found = partitions.iter().map(|&p| (p, by_key.get(&(name.to_string(), p)).cloned())).collect();
                    (name.clone(), found)
                })
                .collect()
        }
        None => {
            let mut answer: Answer = Vec::new();
            for commit in stored {
                let name = TopicName(StrBytes::from_string(commit.topic.clone()));
                if answer.last().is_none_or(|(last, _)| *last != name) {
                    answer.push((name, Vec::new()));
                }
                let partition = commit.partition;
                answer.last_mut().expect("pushed above").1.push((partition, Some(commit)));
            }
            answer
        }
    }
}

fn group_response(group_id: GroupId, answer: Answer, code: i16) -> OffsetFetchResponseGroup {
    let topics = answer
        .into_iter()
        .map(|(name, partitions)| {
            let partitions = partitions
                .into_iter()
                .map(|(index, c)| {
                    OffsetFetchResponsePartitions::default()
                        .with_partition_index(index)
                        .with_committed_offset(c.as_ref().map_or(-1, |c| c.offset))
                        .with_committed_leader_epoch(c.as_ref().map_or(-1, |c| c.leader_epoch))
                        .with_metadata(Some(metadata(&c)))
                })
                .collect();
            OffsetFetchResponseTopics::default().with_name(name).with_partitions(partitions)
        })
        .collect();
    OffsetFetchResponseGroup::default().with_group_id(group_id).with_topics(topics).with_error_code(code)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::testing::{broker_with_writer, round_trip};
    use kafka_protocol::messages::offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic};
    use kafka_protocol::messages::offset_fetch_request::{OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics};
    use kafka_protocol::messages::{ApiKey, OffsetCommitRequest, OffsetCommitResponse};

    fn name(s: &'static str) -> TopicName {
        TopicName(StrBytes::from_static_str(s))
    }

    #[tokio::test]
    async fn commits_from_outside_a_group_are_stored_and_fetched_in_both_forms() {
        let broker = broker_with_writer(2);
        let partition = |index, offset| OffsetCommitRequestPartition::default().with_partition_index(index).with_committed_offset(offset);
        let commit = OffsetCommitRequest::default()
            .with_group_id(GroupId(StrBytes::from_static_str("g")))
            .with_generation_id_or_member_epoch(-1)
            .with_topics(vec![
                OffsetCommitRequestTopic::default().with_name(name("t")).with_partitions(vec![partition(0, 5), partition(7, 1)]),
                OffsetCommitRequestTopic::default().with_name(name("nope")).with_partitions(vec![partition(0, 1)]),
            ]);
        let committed: OffsetCommitResponse = round_trip(&broker, ApiKey::OffsetCommit, 8, &commit).await;
        let codes: Vec<i16> = committed.topics.iter().flat_map(|t| t.partitions.iter().map(|p| p.error_code)).collect();
        assert_eq!(codes, vec![0, 3, 3], "unknown partitions and topics are refused, the rest stored");

        let asked = OffsetFetchRequestTopic::default().with_name(name("t")).with_partition_indexes(vec![0, 1]);
        let single = OffsetFetchRequest::default().with_group_id(GroupId(StrBytes::from_static_str("g"))).with_topics(Some(vec![asked]));
        let fetched: OffsetFetchResponse = round_trip(&broker, ApiKey::OffsetFetch, 5, &single).await;
        let offsets: Vec<(i32, i64)> = fetched.topics[0].partitions.iter().map(|p| (p.partition_index, p.committed_offset)).collect();
        assert_eq!(offsets, vec![(0, 5), (1, -1)]);

        let group = |id: &'static str, topics| {
            OffsetFetchRequestGroup::default().with_group_id(GroupId(StrBytes::from_static_str(id))).with_topics(topics)
        };
        let all = OffsetFetchRequest::default().with_groups(vec![
            group("g", None),
            group("other", Some(vec![OffsetFetchRequestTopics::default().with_name(name("t")).with_partition_indexes(vec![0])])),
        ]);
        let fetched: OffsetFetchResponse = round_trip(&broker, ApiKey::OffsetFetch, 8, &all).await;
        let per_group: Vec<Vec<(i32, i64)>> = fetched
            .groups
            .iter()
            .map(|g| g.topics.iter().flat_map(|t| t.partitions.iter().map(|p| (p.partition_index, p.committed_offset))).collect())
            .collect();
        assert_eq!(per_group, vec![vec![(0, 5)], vec![(0, -1)]]);
    }

    /// A v8+ request with no groups asks nothing: Kafka answers an empty groups array.
    /// (The handler used to index the first group's answer and panicked.)
    #[tokio::test]
    async fn no_groups_is_answered_with_none() {
        let broker = broker_with_writer(1);
        let fetched: OffsetFetchResponse = round_trip(&broker, ApiKey::OffsetFetch, 8, &OffsetFetchRequest::default()).await;
        assert!(fetched.groups.is_empty());
        assert_eq!(fetched.error_code, 0);
    }
}
