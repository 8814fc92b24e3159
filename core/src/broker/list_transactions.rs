//! ListTransactions (v0-v1): the transactional ids the coordinator knows, filtered by
//! state, producer id and (v1) how long their transaction has been open, as Kafka's
//! `kafka-transactions list` asks. Ids the principal may not DESCRIBE are left out.

use kafka_protocol::messages::list_transactions_response::TransactionState as Listed;
use kafka_protocol::messages::{ListTransactionsRequest, ListTransactionsResponse, ProducerId, TransactionalId};
use kafka_protocol::protocol::StrBytes;

use super::authorize::access;
use super::{decode, respond, Broker, Outcome};
use crate::protocol::header::RequestFrame;
use crate::security::acl::Operation;
use crate::storage::now_ms;
use crate::storage::transactions::{TxnRecord, TxnState};

pub async fn handle(broker: &Broker, request: &RequestFrame) -> Outcome {
    let body: ListTransactionsRequest = match decode(request) {
        Ok(body) => body,
        Err(outcome) => return outcome,
    };
    let records = match broker.txns.records(broker).await {
        Ok(records) => records,
        Err(error) => return respond(request, &ListTransactionsResponse::default().with_error_code(error.code())),
    };
    let states: Vec<Option<TxnState>> = body.state_filters.iter().map(|s| TxnState::parse(s)).collect();
    let unknown: Vec<StrBytes> =
        body.state_filters.iter().zip(&states).filter(|(_, s)| s.is_none()).map(|(name, _)| name.clone()).collect();
    let access = access(broker).await;
    let now = now_ms();
    let listed = records
        .iter()
        .filter(|r| body.state_filters.is_empty() || states.contains(&Some(r.state)))
        .filter(|r| body.producer_id_filters.is_empty() || body.producer_id_filters.contains(&ProducerId(r.producer_id)))
        .filter(|r| body.duration_filter < 0 || open_for(r, now).is_some_and(|ms| ms >= body.duration_filter))
        .filter(|r| access.allows(Operation::Describe, crate::security::acl::ResourceType::TransactionalId, &r.transactional_id))
        .map(|r| {
            Listed::default()
                .with_transactional_id(TransactionalId(StrBytes::from_string(r.transactional_id.clone())))
                .with_producer_id(ProducerId(r.producer_id))
                .with_transaction_state(StrBytes::from_static_str(r.state.as_str()))
        })
        .collect();
    respond(request, &ListTransactionsResponse::default().with_unknown_state_filters(unknown).with_transaction_states(listed))
}

/// How long `record`'s transaction has been open (`None`: none is).
fn open_for(record: &TxnRecord, now_ms: i64) -> Option<i64> {
    record.started_ms.filter(|_| record.state.is_open()).map(|started| now_ms - started)
}
