//! EndTxn: commits or aborts the producer's open transaction. The answer comes once the
//! markers, the coordinator's state and the offsets are committed together (see
//! [`super::transactions`]). v5+ is Transactions V2 (KIP-890): every end bumps the
//! producer's epoch, and the answer carries the producer id and epoch to go on with.

use kafka_protocol::messages::{EndTxnRequest, EndTxnResponse, ProducerId};

use super::authorize::access;
use super::transactions::{FencedAs, TRANSACTIONS_V2};
use super::{decode, respond, Broker, Outcome};
use crate::protocol::header::RequestFrame;
use crate::security::acl::Operation;

pub async fn handle(broker: &Broker, request: &RequestFrame) -> Outcome {
    let body: EndTxnRequest = match decode(request) {
        Ok(body) => body,
        Err(outcome) => return outcome,
    };
    let id = body.transactional_id.as_str();
    let producer = (body.producer_id.0, body.producer_epoch);
    let v2 = request.version() >= TRANSACTIONS_V2;
    let ended = match access(broker).await.check_transactional_id(Operation::Write, id) {
        Ok(()) => broker.txns.end(broker, id, producer, body.committed, v2).await,
        Err(error) => Err(error),
    };
    let response = match ended {
        Ok((producer_id, epoch)) => EndTxnResponse::default().with_producer_id(ProducerId(producer_id)).with_producer_epoch(epoch),
        Err(error) => EndTxnResponse::default()
            .with_error_code(error.for_version(request.version(), 2).code())
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1),
    };
    respond(request, &response)
}
