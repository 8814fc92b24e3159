//! InitProducerId (v0-v5): a producer id and epoch, for an idempotent or a transactional
//! producer.
//!
//! Ids come from the `kafka.producer_ids` sequence, so none is handed out twice, even
//! after a crash; a hot standby hands out ids of a range of its own (standby.rs). As in
//! Kafka, a request without a transactional id always gets a fresh
//! id (also when it names its current id and epoch to bump them, KIP-360). With a
//! transactional id the [transaction coordinator](super::transactions) answers: the id's
//! producer id with its epoch bumped (an open transaction of the previous producer is
//! aborted and that producer fenced).

use super::authorize::access;
use super::transactions::FencedAs;
use crate::security::acl::Operation;
use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};
use kafka_protocol::ResponseError;

use super::{decode, respond, storage_call, Broker, Outcome};
use crate::logging;
use crate::protocol::header::RequestFrame;

pub async fn handle(broker: &Broker, request: &RequestFrame) -> Outcome {
    let body: InitProducerIdRequest = match decode(request) {
        Ok(body) => body,
        Err(outcome) => return outcome,
    };
    let refused = |error: ResponseError| {
        InitProducerIdResponse::default().with_error_code(error.code()).with_producer_id(ProducerId(-1)).with_producer_epoch(-1)
    };
    match &body.transactional_id {
        None => {}
        Some(id) if id.is_empty() => return respond(request, &refused(ResponseError::InvalidRequest)),
        Some(id) => {
            let response = match transactional(broker, id.as_str(), &body).await {
                Ok((producer_id, epoch)) => {
                    InitProducerIdResponse::default().with_producer_id(ProducerId(producer_id)).with_producer_epoch(epoch)
                }
                Err(error) => refused(error.for_version(request.version(), 4)),
            };
            return respond(request, &response);
        }
    }
    // Idempotence needs IDEMPOTENT_WRITE on the cluster, or WRITE on some topic (KIP-679).
    let access = access(broker).await;
    if !access.allows_cluster(Operation::IdempotentWrite) && !access.allows_writing_somewhere() {
        let denied = access.check_cluster(Operation::IdempotentWrite).err().unwrap_or(ResponseError::ClusterAuthorizationFailed);
        return respond(request, &refused(denied));
    }
    // A standby cannot write the sequence: it hands out ids of its own (broker/standby.rs).
    let id = if broker.config().standby {
        Ok(broker.standby_producer_ids.next(broker.config().node_id))
    } else {
        storage_call(broker, |s| s.next_producer_id()).await
    };
    let response = match id {
        Ok(id) => InitProducerIdResponse::default().with_producer_id(ProducerId(id)).with_producer_epoch(0),
        Err(reason) => {
            logging::warning(format!("pg_kafka: cannot allocate a producer id: {reason}"));
            refused(ResponseError::CoordinatorNotAvailable)
        }
    };
    respond(request, &response)
}

/// A transactional producer's id and epoch, after the checks Kafka makes: WRITE on the
/// transactional id, a timeout within `transaction.max.timeout.ms`.
async fn transactional(broker: &Broker, id: &str, body: &InitProducerIdRequest) -> Result<(i64, i16), ResponseError> {
    access(broker).await.check_transactional_id(Operation::Write, id)?;
    let max = broker.config().transaction_max_timeout_ms;
    if body.transaction_timeout_ms <= 0 || i64::from(body.transaction_timeout_ms) > max {
        return Err(ResponseError::InvalidTransactionTimeout);
    }
    let expected = (body.producer_id.0 >= 0).then_some((body.producer_id.0, body.producer_epoch));
    broker.txns.init_producer(broker, id, body.transaction_timeout_ms, expected).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::testing::{broker, round_trip};
    use kafka_protocol::messages::ApiKey;

    #[tokio::test]
    async fn idempotent_calls_get_new_ids_and_transactional_ids_keep_theirs() {
        let broker = broker();
        let mut ids = Vec::new();
        for version in 0..=5 {
            let r: InitProducerIdResponse =
                round_trip(&broker, ApiKey::InitProducerId, version, &InitProducerIdRequest::default().with_transactional_id(None)).await;
            assert_eq!((r.error_code, r.producer_epoch), (0, 0));
            ids.push(r.producer_id.0);
        }
        assert_eq!(ids, vec![1, 2, 3, 4, 5, 6]);
        let transactional = InitProducerIdRequest::default().with_transactional_id(Some(kafka_protocol::messages::TransactionalId(
            kafka_protocol::protocol::StrBytes::from_static_str("tx"),
        )));
        let r: InitProducerIdResponse = round_trip(&broker, ApiKey::InitProducerId, 4, &transactional).await;
        assert_eq!(r.error_code, ResponseError::InvalidTransactionTimeout.code(), "a timeout of 0 is refused");
        let transactional = transactional.with_transaction_timeout_ms(60_000);
        let first: InitProducerIdResponse = round_trip(&broker, ApiKey::InitProducerId, 4, &transactional).await;
        let second: InitProducerIdResponse = round_trip(&broker, ApiKey::InitProducerId, 4, &transactional).await;
        assert_eq!((first.error_code, second.error_code), (0, 0));
        assert_eq!(first.producer_id, second.producer_id, "a transactional id keeps its producer id");
        assert_eq!(second.producer_epoch, first.producer_epoch + 1, "and bumps its epoch");
        let stale = transactional.with_producer_id(first.producer_id).with_producer_epoch(first.producer_epoch);
        let r: InitProducerIdResponse = round_trip(&broker, ApiKey::InitProducerId, 4, &stale).await;
        assert_eq!(r.error_code, ResponseError::ProducerFenced.code());
        let r: InitProducerIdResponse = round_trip(&broker, ApiKey::InitProducerId, 3, &stale).await;
        assert_eq!(r.error_code, ResponseError::InvalidProducerEpoch.code(), "v3 knows no PRODUCER_FENCED");
    }
}
