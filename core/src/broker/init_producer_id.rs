//! InitProducerId (v0-v5): a new producer id, epoch 0, for an idempotent producer.
//!
//! Ids come from the `kafka.producer_ids` sequence, so none is handed out twice, even
//! after a crash. As in Kafka, a request without a transactional id always gets a fresh
//! id (also when it names its current id and epoch to bump them, KIP-360). Transactions
//! are not served: a transactional id is refused with TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
//! the same answer transactional Produce requests get.

use super::authorize::access;
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
        Some(_) => return respond(request, &refused(ResponseError::TransactionalIdAuthorizationFailed)),
    }
    // Idempotence needs IDEMPOTENT_WRITE on the cluster, or WRITE on some topic (KIP-679).
    let access = access(broker).await;
    if !access.allows_cluster(Operation::IdempotentWrite) && !access.allows_writing_somewhere() {
        let denied = access.check_cluster(Operation::IdempotentWrite).err().unwrap_or(ResponseError::ClusterAuthorizationFailed);
        return respond(request, &refused(denied));
    }
    let response = match storage_call(broker, |s| s.next_producer_id()).await {
        Ok(id) => InitProducerIdResponse::default().with_producer_id(ProducerId(id)).with_producer_epoch(0),
        Err(reason) => {
            logging::warning(format!("pg_kafka: cannot allocate a producer id: {reason}"));
            refused(ResponseError::CoordinatorNotAvailable)
        }
    };
    respond(request, &response)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::testing::{broker, round_trip};
    use kafka_protocol::messages::ApiKey;

    #[tokio::test]
    async fn every_call_gets_a_new_id_and_transactions_are_refused() {
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
        assert_eq!(r.error_code, ResponseError::TransactionalIdAuthorizationFailed.code());
    }
}
