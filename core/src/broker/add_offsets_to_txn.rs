//! AddOffsetsToTxn (v0-v4): a consumer group's offsets will be committed with the
//! producer's open transaction (TxnOffsetCommit follows). WRITE on the transactional id
//! and READ on the group, as Kafka checks.

use kafka_protocol::messages::{AddOffsetsToTxnRequest, AddOffsetsToTxnResponse};

use super::authorize::access;
use super::groups::check_group_id;
use super::transactions::FencedAs;
use super::{decode, respond, Broker, Outcome};
use crate::protocol::header::RequestFrame;
use crate::security::acl::Operation;

pub async fn handle(broker: &Broker, request: &RequestFrame) -> Outcome {
    let body: AddOffsetsToTxnRequest = match decode(request) {
        Ok(body) => body,
        Err(outcome) => return outcome,
    };
    let (id, group) = (body.transactional_id.as_str(), body.group_id.as_str());
    let access = access(broker).await;
    let checked = access
        .check_transactional_id(Operation::Write, id)
        .and_then(|()| check_group_id(group))
        .and_then(|()| access.check_group(Operation::Read, group));
    let added = match checked {
        Ok(()) => broker.txns.add_group(broker, id, (body.producer_id.0, body.producer_epoch), group).await,
        Err(error) => Err(error),
    };
    let code = added.err().map_or(0, |e| e.for_version(request.version(), 2).code());
    respond(request, &AddOffsetsToTxnResponse::default().with_error_code(code))
}
