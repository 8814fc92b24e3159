//! SaslHandshake (v0-v1): picks the SASL mechanism for the connection's exchange.
//!
//! v1 is followed by SaslAuthenticate requests; v0 by raw size-prefixed tokens (the flow
//! before KIP-152). On a listener without SASL there is nothing to pick: ILLEGAL_SASL_STATE.
//! A refused handshake closes the connection once answered.

use kafka_protocol::messages::{SaslHandshakeRequest, SaslHandshakeResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::sasl::{HandshakeError, SaslExchange};
use super::session::Session;
use super::{decode, respond, Outcome};
use crate::protocol::header::RequestFrame;

pub fn handle(exchange: &mut SaslExchange, session: &Session, request: &RequestFrame) -> Outcome {
    let body: SaslHandshakeRequest = match decode(request) {
        Ok(body) => body,
        Err(outcome) => return outcome,
    };
    let offered = &session.listener.mechanisms;
    let mechanisms = offered.iter().map(|m| StrBytes::from_static_str(m)).collect();
    let error = match exchange.handshake(body.mechanism.as_str(), offered, request.version()) {
        Ok(()) => None,
        Err(_) if offered.is_empty() => Some(ResponseError::IllegalSaslState),
        Err(HandshakeError::Unsupported) => Some(ResponseError::UnsupportedSaslMechanism),
        Err(HandshakeError::IllegalState) => Some(ResponseError::IllegalSaslState),
    };
    let response = SaslHandshakeResponse::default().with_mechanisms(mechanisms).with_error_code(error.map_or(0, |e| e.code()));
    // A refused handshake is answered, then the connection is closed (as Kafka does).
    match (respond(request, &response), error) {
        (Outcome::Respond(frame), Some(error)) => {
            Outcome::RespondThenClose(frame, format!("SaslHandshake for \"{}\" refused: {error:?}", body.mechanism.as_str()))
        }
        (outcome, _) => outcome,
    }
}
