//! DescribeTransactions (v0): each transactional id's producer, state, timeout, start and
//! partitions, as Kafka's `kafka-transactions describe` shows them. An id the principal
//! may not DESCRIBE answers TRANSACTIONAL_ID_AUTHORIZATION_FAILED, an unknown one
//! TRANSACTIONAL_ID_NOT_FOUND.

use std::collections::{BTreeMap, HashMap};

use kafka_protocol::messages::describe_transactions_response::{TopicData, TransactionState as Described};
use kafka_protocol::messages::{DescribeTransactionsRequest, DescribeTransactionsResponse, ProducerId, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::authorize::access;
use super::{decode, respond, storage_call, Broker, Outcome};
use crate::protocol::header::RequestFrame;
use crate::security::acl::Operation;
use crate::storage::transactions::TxnRecord;

pub async fn handle(broker: &Broker, request: &RequestFrame) -> Outcome {
    let body: DescribeTransactionsRequest = match decode(request) {
        Ok(body) => body,
        Err(outcome) => return outcome,
    };
    let access = access(broker).await;
    let records = broker.txns.records(broker).await;
    let by_id: HashMap<&str, &TxnRecord> = records.iter().flatten().map(|r| (r.transactional_id.as_str(), r)).collect();
    let names = topic_names(broker, by_id.values().any(|r| !r.partitions.is_empty())).await;
    let described = body
        .transactional_ids
        .iter()
        .map(|id| {
            let answer = Described::default().with_transactional_id(id.clone());
            let error = match (&records, by_id.get(id.as_str())) {
                _ if access.check_transactional_id(Operation::Describe, id.as_str()).is_err() => {
                    ResponseError::TransactionalIdAuthorizationFailed
                }
                (Err(error), _) => *error,
                (Ok(_), None) => ResponseError::TransactionalIdNotFound,
                (Ok(_), Some(record)) => return described(answer, record, &names),
            };
            answer.with_error_code(error.code()).with_producer_id(ProducerId(-1)).with_producer_epoch(-1)
        })
        .collect();
    respond(request, &DescribeTransactionsResponse::default().with_transaction_states(described))
}

/// Topic names by id, read only when some transaction has partitions.
async fn topic_names(broker: &Broker, needed: bool) -> HashMap<i32, String> {
    if !needed {
        return HashMap::new();
    }
    let topics = storage_call(broker, |s| s.all_topics()).await.unwrap_or_default();
    topics.into_iter().map(|t| (t.id, t.name)).collect()
}

fn described(answer: Described, record: &TxnRecord, names: &HashMap<i32, String>) -> Described {
    let mut topics: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for (topic_id, partition) in &record.partitions {
        if let Some(name) = names.get(topic_id) {
            topics.entry(name).or_default().push(*partition);
        }
    }
    let topics = topics
        .into_iter()
        .map(|(name, partitions)| {
            TopicData::default().with_topic(TopicName(StrBytes::from_string(name.to_owned()))).with_partitions(partitions)
        })
        .collect();
    answer
        .with_transaction_state(StrBytes::from_static_str(record.state.as_str()))
        .with_transaction_timeout_ms(record.timeout_ms)
        .with_transaction_start_time_ms(record.started_ms.filter(|_| record.state.is_open()).unwrap_or(-1))
        .with_producer_id(ProducerId(record.producer_id))
        .with_producer_epoch(record.producer_epoch)
        .with_topics(topics)
}
