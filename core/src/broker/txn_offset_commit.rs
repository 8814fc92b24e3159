//! TxnOffsetCommit: a consumer group's offsets, committed when the producer's
//! transaction commits (consume-transform-produce). v5+ (Transactions V2) adds the group
//! to the transaction itself, with no AddOffsetsToTxn before it. The group's generation and member
//! are checked as OffsetCommit checks them (v3+ sends them); the offsets wait in the
//! transaction's record until EndTxn.

use kafka_protocol::messages::txn_offset_commit_response::{TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic};
use kafka_protocol::messages::{TxnOffsetCommitRequest, TxnOffsetCommitResponse};
use kafka_protocol::ResponseError;

use super::authorize::access;
use super::groups::{check_group_id, MemberRef};
use super::offset_commit::{checked_commits, WantedTopic};
use super::transactions::{FencedAs, TRANSACTIONS_V2};
use super::{decode, respond, Broker, Outcome};
use crate::protocol::header::RequestFrame;
use crate::security::acl::Operation;

pub async fn handle(broker: &Broker, request: &RequestFrame) -> Outcome {
    let body: TxnOffsetCommitRequest = match decode(request) {
        Ok(body) => body,
        Err(outcome) => return outcome,
    };
    let (id, group) = (body.transactional_id.as_str(), body.group_id.to_string());
    let member = MemberRef { member_id: body.member_id.to_string(), instance_id: body.group_instance_id.as_ref().map(ToString::to_string) };
    let access = access(broker).await;
    let checked = access
        .check_transactional_id(Operation::Write, id)
        .and_then(|()| check_group_id(&group))
        .and_then(|()| access.check_group(Operation::Read, &group))
        .and_then(|()| broker.groups.check_commit(&group, body.generation_id, &member));
    if let Err(error) = checked {
        return respond(request, &response(&body, |_, _| Some(error.for_version(request.version(), 3))));
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
    let producer = (body.producer_id.0, body.producer_epoch);
    let stored = if refusals.is_empty() {
        let v2 = request.version() >= TRANSACTIONS_V2;
        broker.txns.commit_offsets(broker, id, producer, &group, commits.into_values().collect(), v2).await
    } else {
        // Kafka stores none of a request with a refused partition.
        Err(ResponseError::OperationNotAttempted)
    };
    let stored = stored.map_err(|e| e.for_version(request.version(), 3));
    respond(request, &response(&body, |topic, partition| refusals.get(&(topic.to_owned(), partition)).copied().or(stored.err())))
}

/// One entry per requested partition, with the error `error_of(topic, partition)` gives.
fn response(body: &TxnOffsetCommitRequest, error_of: impl Fn(&str, i32) -> Option<ResponseError>) -> TxnOffsetCommitResponse {
    let topics = body
        .topics
        .iter()
        .map(|t| {
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let code = error_of(&t.name, p.partition_index).map_or(0, |e| e.code());
                    TxnOffsetCommitResponsePartition::default().with_partition_index(p.partition_index).with_error_code(code)
                })
                .collect();
            TxnOffsetCommitResponseTopic::default().with_name(t.name.clone()).with_partitions(partitions)
        })
        .collect();
    TxnOffsetCommitResponse::default().with_topics(topics)
}
