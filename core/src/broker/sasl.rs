//! One connection's SASL exchange: which mechanism was chosen, and how far it got.
//!
//! Owned by the connection's reader, which runs SASL requests one at a time, in order (the
//! next token only means something after the previous answer). SaslHandshake picks the
//! mechanism ([`sasl_handshake`](super::sasl_handshake)); SaslAuthenticate, or after a v0
//! handshake the raw size-prefixed tokens, carry the mechanism's messages
//! ([`sasl_authenticate`](super::sasl_authenticate)).
//!
//! Every refusal looks the same to the client, whatever was wrong (unknown role, wrong
//! password, NOLOGIN, expired, no password): an unknown role even runs SCRAM with a stand-in
//! verifier and fails at the proof, as Postgres does. The server log says what was wrong.

use std::time::Duration;

use super::{storage_call, Broker};
use crate::security::acl::Principal;
use crate::security::scram::{self, ClientFirst, ServerFirst, Verifier};
use crate::storage::{now_ms, LoginRole};

pub const SCRAM_SHA_256: &str = "SCRAM-SHA-256";
pub const PLAIN: &str = "PLAIN";

/// What clients are told on any refusal (Kafka's own wording).
pub fn refusal_message(mechanism: &str) -> String {
    format!("Authentication failed during authentication due to invalid credentials with SASL mechanism {mechanism}")
}

/// How long a refusal is held back: slows password guessing.
pub const REFUSAL_DELAY: Duration = Duration::from_millis(250);

#[derive(Default)]
enum Stage {
    #[default]
    AwaitingHandshake,
    Handshaken(&'static str),
    ScramChallenged {
        server: Box<ServerFirst>,
        user: String,
        login: Result<LoginRole, String>,
    },
}

/// The state of one connection's SASL exchange.
#[derive(Default)]
pub struct SaslExchange {
    stage: Stage,
    /// A v0 handshake: tokens follow as raw frames, not SaslAuthenticate requests.
    pub raw_tokens: bool,
}

/// What one SASL token led to.
pub enum Step {
    /// Send these bytes and wait for the next token.
    Challenge(Vec<u8>),
    /// Authenticated as `principal`; send `final_bytes`. `valid_until_ms` caps the session.
    Authenticated { final_bytes: Vec<u8>, principal: Principal, valid_until_ms: Option<i64> },
    /// Refused: the mechanism (for the client's message) and what was wrong (for the log).
    Refused { mechanism: &'static str, reason: String },
}

#[derive(Debug, PartialEq, Eq)]
pub enum HandshakeError {
    /// Not offered on this listener.
    Unsupported,
    /// A handshake in the middle of an exchange.
    IllegalState,
}

impl SaslExchange {
    /// Whether the next frame is a raw token (after a v0 handshake).
    pub fn expects_raw_token(&self) -> bool {
        self.raw_tokens && !matches!(self.stage, Stage::AwaitingHandshake)
    }

    /// Chooses `mechanism` among `offered`. A new handshake after success starts a
    /// re-authentication (KIP-368).
    pub fn handshake(&mut self, mechanism: &str, offered: &[&'static str], version: i16) -> Result<(), HandshakeError> {
        if !matches!(self.stage, Stage::AwaitingHandshake) {
            return Err(HandshakeError::IllegalState);
        }
        let chosen = offered.iter().find(|m| **m == mechanism).ok_or(HandshakeError::Unsupported)?;
        self.stage = Stage::Handshaken(chosen);
        self.raw_tokens = version == 0;
        Ok(())
    }

    /// Runs one token of the exchange. Any outcome but a challenge ends the exchange (a
    /// later handshake starts a new one).
    pub async fn authenticate(&mut self, broker: &Broker, token: &[u8]) -> Step {
        let step = match std::mem::take(&mut self.stage) {
            Stage::AwaitingHandshake => Step::Refused { mechanism: "(none)", reason: "SaslAuthenticate before SaslHandshake".into() },
            Stage::Handshaken(PLAIN) => plain(broker, token).await,
            Stage::Handshaken(_) => match scram_first(broker, token).await {
                Ok((challenge, stage)) => {
                    self.stage = stage;
                    Step::Challenge(challenge)
                }
                Err(reason) => Step::Refused { mechanism: SCRAM_SHA_256, reason },
            },
            Stage::ScramChallenged { server, user, login } => scram_final(&server, &user, login, token),
        };
        if !matches!(step, Step::Challenge(_)) {
            self.raw_tokens = false;
        }
        step
    }
}

/// Longest role name Postgres can hold (NAMEDATALEN - 1 bytes).
const MAX_ROLE_NAME_BYTES: usize = 63;

/// A client-chosen name as the log shows it: escaped, at most 64 characters.
fn shown(name: &str) -> String {
    let cut: String = name.chars().take(64).collect();
    let more = if cut.len() < name.len() { "…" } else { "" };
    format!("{cut:?}{more}")
}

/// The role `name`, or why it may not log in (never shown to the client). Names Postgres
/// cannot hold are refused without a lookup.
async fn login_role(broker: &Broker, name: &str) -> Result<LoginRole, String> {
    if name.len() > MAX_ROLE_NAME_BYTES || name.contains('\0') {
        return Err(format!("role {} does not exist (not a possible role name)", shown(name)));
    }
    let lookup = name.to_owned();
    let role =
        storage_call(broker, move |s| s.login_role(&lookup)).await.map_err(|e| format!("cannot look up role {}: {e}", shown(name)))?;
    let role = role.ok_or_else(|| format!("role {} does not exist", shown(name)))?;
    if !role.can_login {
        return Err(format!("role \"{name}\" is not permitted to log in"));
    }
    if role.valid_until_ms.is_some_and(|until| until <= now_ms()) {
        return Err(format!("password of role \"{name}\" has expired (rolvaliduntil)"));
    }
    if role.password.is_none() {
        return Err(format!("role \"{name}\" has no password"));
    }
    Ok(role)
}

async fn scram_first(broker: &Broker, token: &[u8]) -> Result<(Vec<u8>, Stage), String> {
    let first = ClientFirst::parse(token).map_err(|e| e.to_string())?;
    let user = first.user.clone();
    let login = login_role(broker, &user).await;
    let verifier = match &login {
        Ok(role) => match role.password.as_deref().and_then(Verifier::parse) {
            Some(verifier) => verifier.refusal(&user).map_or(Ok(verifier), Err),
            None => Err(format!("role \"{user}\" has an md5 password; SCRAM-SHA-256 needs a SCRAM verifier (use PLAIN, or reset the password with password_encryption = 'scram-sha-256')")),
        },
        Err(reason) => Err(reason.clone()),
    };
    let (verifier, login) = match verifier {
        Ok(verifier) => (verifier, login),
        Err(reason) => (Verifier::mock(&user, broker.mock_secret()), Err(reason)),
    };
    let server = ServerFirst::new(first, verifier, &random_nonce());
    let challenge = server.message.clone().into_bytes();
    Ok((challenge, Stage::ScramChallenged { server: Box::new(server), user, login }))
}

fn scram_final(server: &ServerFirst, user: &str, login: Result<LoginRole, String>, token: &[u8]) -> Step {
    let refused = |reason: String| Step::Refused { mechanism: SCRAM_SHA_256, reason };
    let checked = server.finish(token);
    match (login, checked) {
        (Err(reason), _) => refused(reason),
        (Ok(_), Err(e)) => refused(format!("role \"{user}\": {e}")),
        (Ok(role), Ok(server_final)) => {
            Step::Authenticated { final_bytes: server_final.into_bytes(), principal: role.principal, valid_until_ms: role.valid_until_ms }
        }
    }
}

/// PBKDF2 computations (PLAIN logins against SCRAM verifiers) running at once: a flood of
/// wrong passwords costs at most these cores' worth of hashing, and waits in line.
const HASHING_AT_ONCE: usize = 2;
static HASHING: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(HASHING_AT_ONCE);

/// PLAIN: `authzid NUL authcid NUL password`, checked against the role's verifier (SCRAM
/// or md5). PBKDF2 runs on the blocking pool: it takes milliseconds per attempt.
async fn plain(broker: &Broker, token: &[u8]) -> Step {
    let refused = |reason: String| Step::Refused { mechanism: PLAIN, reason };
    let Ok(text) = std::str::from_utf8(token) else { return refused("PLAIN message is not UTF-8".into()) };
    let parts: Vec<&str> = text.split('\0').collect();
    let [authzid, user, password] = parts[..] else { return refused("malformed PLAIN message".into()) };
    if !authzid.is_empty() && authzid != user {
        return refused(format!("role {} may not act as {}", shown(user), shown(authzid)));
    }
    let role = match login_role(broker, user).await {
        Ok(role) => role,
        Err(reason) => return refused(reason),
    };
    let verifier = role.password.clone().unwrap_or_default();
    let scram = Verifier::parse(&verifier);
    if let Some(reason) = scram.as_ref().and_then(|v| v.refusal(user)) {
        return refused(reason);
    }
    let (user_owned, password) = (user.to_owned(), password.to_owned());
    // At most HASHING_AT_ONCE hashes run at once, whoever asks.
    let Ok(_turn) = HASHING.acquire().await else { return refused("the broker is shutting down".into()) };
    let matches = tokio::task::spawn_blocking(move || match scram {
        Some(scram) => scram.matches_password(&password),
        None => scram::md5_matches(&verifier, &user_owned, &password),
    })
    .await
    .unwrap_or(false);
    if !matches {
        return refused(format!("password authentication failed for role \"{user}\""));
    }
    Step::Authenticated { final_bytes: vec![], principal: role.principal, valid_until_ms: role.valid_until_ms }
}

fn random_nonce() -> [u8; 18] {
    let mut nonce = [0u8; 18];
    getrandom::getrandom(&mut nonce).expect("the OS random source works");
    nonce
}
