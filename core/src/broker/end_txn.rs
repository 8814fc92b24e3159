//! EndTxn (v0-v4): commits or aborts the producer's open transaction. The answer comes
//! once the markers, the coordinator's state and the offsets are committed together
//! (see [`super::transactions`]).

use kafka_protocol::messages::{EndTxnRequest, EndTxnResponse};

use super::authorize::access;
use super::transactions::FencedAs;
use super::{decode, respond, Broker, Outcome};
use crate::protocol::header::RequestFrame;
use crate::security::acl::Operation;

pub async fn handle(broker: &Broker, request: &RequestFrame) -> Outcome {
    let body: EndTxnRequest = match decode(request) {
        Ok(body) => body,
        Err(outcome) => return outcome,
    };
    let id = body.transactional_id.as_str();
    let ended = match access(broker).await.check_transactional_id(Operation::Write, id) {
        Ok(()) => broker.txns.end(broker, id, (body.producer_id.0, body.producer_epoch), body.committed).await,
        Err(error) => Err(error),
    };
    let code = ended.err().map_or(0, |e| e.for_version(request.version(), 2).code());
    respond(request, &EndTxnResponse::default().with_error_code(code))
}
