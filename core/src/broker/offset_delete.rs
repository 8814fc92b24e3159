//! OffsetDelete (v0): deletes a group's committed offsets of some partitions (`kafka-
//! consumer-groups --delete-offsets`, Admin `deleteConsumerGroupOffsets`). As Kafka: DELETE
//! on the group, READ on each topic; a group with neither members nor offsets is
//! GROUP_ID_NOT_FOUND; a partition of a topic an active consumer member subscribes to is
//! GROUP_SUBSCRIBED_TO_TOPIC and keeps its offset; a group of another protocol type with
//! members is NON_EMPTY_GROUP. Subscriptions are read by [`assignment`], which trusts
//! no length they claim.

use kafka_protocol::messages::offset_delete_response::{OffsetDeleteResponsePartition, OffsetDeleteResponseTopic};
use kafka_protocol::messages::{OffsetDeleteRequest, OffsetDeleteResponse};
use kafka_protocol::ResponseError;

use super::authorize::access;
use super::groups::{assignment, check_group_id, GroupDescription};
use super::{decode, respond, storage_call, Broker, Outcome};
use crate::logging;
use crate::protocol::header::RequestFrame;
use crate::security::acl::Operation;
use crate::storage::topics::TopicRef;

pub async fn handle(broker: &Broker, request: &RequestFrame) -> Outcome {
    let body: OffsetDeleteRequest = match decode(request) {
        Ok(body) => body,
        Err(outcome) => return outcome,
    };
    let refuse = |error: ResponseError| respond(request, &OffsetDeleteResponse::default().with_error_code(error.code()));
    let group_id = body.group_id.to_string();
    let access = access(broker).await;
    if let Err(error) = check_group_id(&group_id).and_then(|()| access.check_group(Operation::Delete, &group_id)) {
        return refuse(error);
    }
    let members = broker.groups.describe(&group_id).filter(|g| !g.members.is_empty());
    if members.as_ref().is_some_and(|g| g.protocol_type != "consumer") {
        return refuse(ResponseError::NonEmptyGroup);
    }
    let refs: Vec<(TopicRef, i32)> = body
        .topics
        .iter()
        .flat_map(|t| t.partitions.iter().map(move |p| (TopicRef::Name(t.name.0.to_string()), p.partition_index)))
        .collect();
    let Ok(found) = broker.topics.resolve(&broker.storage, &refs).await else { return refuse(ResponseError::CoordinatorNotAvailable) };
    // Each requested partition's answer, and the (topic id, partition)s to delete.
    let mut deletions = Vec::new();
    let topics: Vec<OffsetDeleteResponseTopic> = body
        .topics
        .iter()
        .map(|t| {
            let topic = found.get(&TopicRef::Name(t.name.0.to_string())).cloned().flatten();
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let error = match &topic {
                        Some(topic) if (0..topic.partitions).contains(&p.partition_index) => {
                            match access.check_topic(Operation::Read, &topic.name) {
                                Err(denied) => Some(denied),
                                Ok(()) if members.as_ref().is_some_and(|g| subscribed(g, &topic.name)) => {
                                    Some(ResponseError::GroupSubscribedToTopic)
                                }
                                Ok(()) => {
                                    deletions.push((topic.id, p.partition_index));
                                    None
                                }
                            }
                        }
                        _ => Some(ResponseError::UnknownTopicOrPartition),
                    };
                    OffsetDeleteResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(error.map_or(0, |e| e.code()))
                })
                .collect();
            OffsetDeleteResponseTopic::default().with_name(t.name.clone()).with_partitions(partitions)
        })
        .collect();
    let has_members = members.is_some();
    let deleted = storage_call(broker, move |s| {
        let known = has_members || !s.committed_offsets(&group_id)?.is_empty();
        if known && !deletions.is_empty() {
            s.delete_partition_offsets(&group_id, &deletions)?;
        }
        Ok(known)
    })
    .await;
    match deleted {
        Ok(true) => respond(request, &OffsetDeleteResponse::default().with_topics(topics)),
        Ok(false) => refuse(ResponseError::GroupIdNotFound),
        Err(e) => {
            logging::warning(format!("pg_kafka: deleting committed offsets failed: {e}"));
            refuse(ResponseError::CoordinatorNotAvailable)
        }
    }
}

/// Whether a member of the group subscribes to `topic`.
fn subscribed(group: &GroupDescription, topic: &str) -> bool {
    group.members.iter().any(|m| assignment::subscribes_to(&m.metadata, topic))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::testing::{broker_with_writer, round_trip, with_storage};
    use crate::storage::OffsetCommit;
    use kafka_protocol::messages::offset_delete_request::{OffsetDeleteRequestPartition, OffsetDeleteRequestTopic};
    use kafka_protocol::messages::{ApiKey, GroupId, TopicName};
    use kafka_protocol::protocol::StrBytes;

    fn request(group: &'static str, topic: &'static str, partitions: &[i32]) -> OffsetDeleteRequest {
        let partitions = partitions.iter().map(|&p| OffsetDeleteRequestPartition::default().with_partition_index(p)).collect();
        OffsetDeleteRequest::default().with_group_id(GroupId(StrBytes::from_static_str(group))).with_topics(vec![
            OffsetDeleteRequestTopic::default().with_name(TopicName(StrBytes::from_static_str(topic))).with_partitions(partitions),
        ])
    }

    #[tokio::test]
    async fn deletes_the_named_partitions_offsets_only() {
        let broker = broker_with_writer(2);
        with_storage(&broker, |s| {
            let topic = s.topic("t").unwrap().unwrap();
            let commit = |partition| OffsetCommit { topic_id: topic.id, partition, offset: 5, leader_epoch: -1, metadata: None };
            s.commit_offsets("g", &[commit(0), commit(1)]).unwrap();
        })
        .await;
        let response: OffsetDeleteResponse = round_trip(&broker, ApiKey::OffsetDelete, 0, &request("g", "t", &[0, 7])).await;
        assert_eq!(response.error_code, 0);
        let codes: Vec<i16> = response.topics[0].partitions.iter().map(|p| p.error_code).collect();
        assert_eq!(codes, vec![0, 3]);
        let left = with_storage(&broker, |s| s.committed_offsets("g").unwrap()).await;
        assert_eq!(left.iter().map(|c| c.partition).collect::<Vec<_>>(), vec![1]);

        let unknown: OffsetDeleteResponse = round_trip(&broker, ApiKey::OffsetDelete, 0, &request("nobody", "t", &[0])).await;
        assert_eq!(unknown.error_code, ResponseError::GroupIdNotFound.code());
    }
}
