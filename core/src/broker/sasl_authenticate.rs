//! SaslAuthenticate (v0-v2), and the raw tokens that follow a v0 SaslHandshake: one step
//! of the connection's SASL exchange each.
//!
//! On success the session gets its login role; with `pg_kafka.connections_max_reauth_ms`
//! set, v1+ clients are told the session's lifetime (capped by the role's `VALID UNTIL`)
//! and re-authenticate before it ends (KIP-368); a re-authentication must keep the same
//! role. A refusal is answered SASL_AUTHENTICATION_FAILED after a short delay, and the
//! connection is closed, as Kafka does.

use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{SaslAuthenticateRequest, SaslAuthenticateResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::sasl::{self, SaslExchange, Step};
use super::session::{log_in, Session};
use super::{decode, respond, Broker, Outcome};
use crate::logging;
use crate::protocol::header::RequestFrame;

pub async fn handle(broker: &Broker, exchange: &mut SaslExchange, session: &Session, request: &RequestFrame) -> Outcome {
    let body: SaslAuthenticateRequest = match decode(request) {
        Ok(body) => body,
        Err(outcome) => return outcome,
    };
    let response = SaslAuthenticateResponse::default();
    match step(broker, exchange, session, &body.auth_bytes).await {
        Ok((bytes, lifetime_ms)) => {
            let lifetime_ms = if request.version() >= 1 { lifetime_ms } else { 0 };
            respond(request, &response.with_auth_bytes(Bytes::from(bytes)).with_session_lifetime_ms(lifetime_ms))
        }
        Err((mechanism, reason)) => {
            let refused = response
                .with_error_code(ResponseError::SaslAuthenticationFailed.code())
                .with_error_message(Some(StrBytes::from_string(sasl::refusal_message(mechanism))));
            match respond(request, &refused) {
                Outcome::Respond(frame) => Outcome::RespondThenClose(frame, reason),
                other => other,
            }
        }
    }
}

/// A raw token after a v0 handshake: the answer is the raw challenge, size-prefixed. A
/// refusal closes the connection (v0 has no way to say why).
pub async fn handle_raw(broker: &Broker, exchange: &mut SaslExchange, session: &Session, token: &[u8]) -> Outcome {
    match step(broker, exchange, session, token).await {
        Ok((bytes, _)) => {
            let mut frame = BytesMut::with_capacity(4 + bytes.len());
            frame.put_i32(bytes.len() as i32);
            frame.put_slice(&bytes);
            Outcome::Respond(frame.freeze())
        }
        Err((_, reason)) => Outcome::Close(reason),
    }
}

/// Runs the token; on success returns what to send and the session lifetime (0: none).
/// A refusal is logged and delayed here, whichever way it is answered.
async fn step(
    broker: &Broker,
    exchange: &mut SaslExchange,
    session: &Session,
    token: &[u8],
) -> Result<(Vec<u8>, i64), (&'static str, String)> {
    let refuse = |mechanism: &'static str, reason: String| async move {
        tokio::time::sleep(sasl::REFUSAL_DELAY).await;
        let reason = format!("SASL authentication failed: {reason}");
        logging::log(format!("pg_kafka: {} from {}: {reason}", session.listener.protocol.name(), session.peer));
        Err((mechanism, reason))
    };
    match exchange.authenticate(broker, token).await {
        Step::Challenge(bytes) => Ok((bytes, 0)),
        Step::Refused { mechanism, reason } => refuse(mechanism, reason).await,
        Step::Authenticated { final_bytes, principal, valid_until_ms } => {
            if let Some(previous) = session.login().filter(|previous| *previous != principal.name) {
                return refuse("re-authentication", format!("re-authentication as \"{}\" on a session of \"{previous}\"", principal.name))
                    .await;
            }
            let lifetime_ms = session_lifetime_ms(broker.config().connections_max_reauth_ms, valid_until_ms, crate::storage::now_ms());
            let expires_at = (lifetime_ms > 0).then(|| Instant::now() + Duration::from_millis(lifetime_ms as u64));
            if broker.config().log_connections {
                logging::log(format!("pg_kafka: {} authenticated as role \"{}\"", session.peer, principal.name));
            }
            log_in(broker, session, principal, expires_at);
            Ok((final_bytes, lifetime_ms))
        }
    }
}

/// KIP-368: with re-authentication on, the session lasts `max_reauth_ms`, or until the
/// role's `VALID UNTIL` if sooner; 0 when re-authentication is off.
fn session_lifetime_ms(max_reauth_ms: u64, valid_until_ms: Option<i64>, now_ms: i64) -> i64 {
    if max_reauth_ms == 0 {
        return 0;
    }
    let until_expiry = valid_until_ms.map_or(i64::MAX, |until| (until - now_ms).max(1));
    (max_reauth_ms as i64).min(until_expiry)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lifetime_is_the_reauth_interval_capped_by_valid_until() {
        assert_eq!(session_lifetime_ms(0, Some(5), 0), 0);
        assert_eq!(session_lifetime_ms(60_000, None, 0), 60_000);
        assert_eq!(session_lifetime_ms(60_000, Some(1_000 + 30_000), 1_000), 30_000);
    }
}
