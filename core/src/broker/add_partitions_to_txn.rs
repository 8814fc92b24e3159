//! AddPartitionsToTxn (v0-v3, as clients send it; v4+ is Kafka's broker-to-coordinator
//! form): partitions join a producer's open transaction before it produces to them.
//!
//! As Kafka: WRITE on the transactional id (else every partition fails with
//! TRANSACTIONAL_ID_AUTHORIZATION_FAILED), WRITE on each topic; one refused or unknown
//! partition fails the request, the others answer OPERATION_NOT_ATTEMPTED. Topics of
//! either layout take part (a row-layout partition keeps the producer on its rows).

use kafka_protocol::messages::add_partitions_to_txn_response::{AddPartitionsToTxnPartitionResult, AddPartitionsToTxnTopicResult};
use kafka_protocol::messages::{AddPartitionsToTxnRequest, AddPartitionsToTxnResponse};
use kafka_protocol::ResponseError;

use super::authorize::access;
use super::transactions::FencedAs;
use super::{decode, respond, Broker, Outcome};
use crate::logging;
use crate::protocol::header::RequestFrame;
use crate::security::acl::Operation;
use crate::storage::topics::TopicRef;
use crate::storage::Topic;

pub async fn handle(broker: &Broker, request: &RequestFrame) -> Outcome {
    let body: AddPartitionsToTxnRequest = match decode(request) {
        Ok(body) => body,
        Err(outcome) => return outcome,
    };
    let id = body.v3_and_below_transactional_id.as_str();
    let producer = (body.v3_and_below_producer_id.0, body.v3_and_below_producer_epoch);
    let errors = match checked_partitions(broker, &body).await {
        Ok(partitions) => {
            let added = broker.txns.add_partitions(broker, id, producer, &partitions).await;
            let error = added.err().map(|e| e.for_version(request.version(), 2));
            body.v3_and_below_topics.iter().map(|t| t.partitions.iter().map(|_| error).collect()).collect()
        }
        Err(errors) => errors,
    };
    respond(request, &response(&body, errors))
}

/// Per topic, per partition of the request: its error (`None`: added).
type Errors = Vec<Vec<Option<ResponseError>>>;

/// The partitions to add, or why the request fails, per partition.
async fn checked_partitions(broker: &Broker, body: &AddPartitionsToTxnRequest) -> Result<Vec<(Topic, i32)>, Errors> {
    let everywhere = |error: ResponseError| -> Errors {
        body.v3_and_below_topics.iter().map(|t| t.partitions.iter().map(|_| Some(error)).collect()).collect()
    };
    let access = access(broker).await;
    access.check_transactional_id(Operation::Write, body.v3_and_below_transactional_id.as_str()).map_err(everywhere)?;
    let wanted: Vec<(TopicRef, i32)> = body
        .v3_and_below_topics
        .iter()
        .map(|t| (TopicRef::Name(t.name.to_string()), t.partitions.iter().copied().max().unwrap_or(0)))
        .collect();
    let found = broker.topics.resolve(&broker.storage, &wanted).await.map_err(|e| {
        logging::warning(format!("pg_kafka: AddPartitionsToTxn failed: {e}"));
        everywhere(ResponseError::CoordinatorNotAvailable)
    })?;
    let mut partitions = Vec::new();
    let mut errors: Errors = Vec::new();
    for t in &body.v3_and_below_topics {
        let topic = found.get(&TopicRef::Name(t.name.to_string())).cloned().flatten();
        let checked = match access.check_topic(Operation::Write, t.name.as_str()) {
            Err(denied) => Err(denied),
            Ok(()) => topic.ok_or(ResponseError::UnknownTopicOrPartition),
        };
        errors.push(
            t.partitions
                .iter()
                .map(|&p| match &checked {
                    Err(error) => Some(*error),
                    Ok(topic) if !(0..topic.partitions).contains(&p) => Some(ResponseError::UnknownTopicOrPartition),
                    Ok(topic) => {
                        partitions.push((topic.clone(), p));
                        None
                    }
                })
                .collect(),
        );
    }
    if errors.iter().flatten().any(Option::is_some) {
        let not_attempted = |e: &Option<ResponseError>| Some(e.unwrap_or(ResponseError::OperationNotAttempted));
        return Err(errors.iter().map(|t| t.iter().map(not_attempted).collect()).collect());
    }
    Ok(partitions)
}

fn response(body: &AddPartitionsToTxnRequest, errors: Errors) -> AddPartitionsToTxnResponse {
    let results = body
        .v3_and_below_topics
        .iter()
        .zip(errors)
        .map(|(t, errors)| {
            let partitions = t
                .partitions
                .iter()
                .zip(errors)
                .map(|(&p, e)| {
                    AddPartitionsToTxnPartitionResult::default()
                        .with_partition_index(p)
                        .with_partition_error_code(e.map_or(0, |e| e.code()))
                })
                .collect();
            AddPartitionsToTxnTopicResult::default().with_name(t.name.clone()).with_results_by_partition(partitions)
        })
        .collect();
    AddPartitionsToTxnResponse::default().with_results_by_topic_v3_and_below(results)
}
