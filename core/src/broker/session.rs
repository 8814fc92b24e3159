//! A connection's identity: the listener it came in on, its addresses, and, once it has
//! authenticated, its login role.
//!
//! The connection creates one [`Session`] and runs every handler of its requests inside
//! [`Session::scope`], so a handler asks [`current`] who it is serving without each
//! handler's signature carrying it. Outside any scope there is no session, and
//! authorization then refuses everything (fail closed).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Weak};
use std::time::Instant;

use kafka_protocol::messages::ApiKey;
use parking_lot::Mutex;

use crate::security::listeners::SecurityProtocol;

tokio::task_local! {
    static SESSION: Arc<Session>;
}

/// What a listener offers, fixed when it is bound.
#[derive(Clone, Debug)]
pub struct ListenerInfo {
    pub protocol: SecurityProtocol,
    /// Host clients are told to use; `None` for the address each connected to.
    pub advertised_host: Option<String>,
    pub advertised_port: u16,
    /// SASL mechanisms offered (empty on listeners without SASL).
    pub mechanisms: Vec<&'static str>,
}

impl ListenerInfo {
    /// A PLAINTEXT listener advertising `host:port` (tests, and the legacy settings).
    pub fn plaintext(host: &str, port: u16) -> ListenerInfo {
        ListenerInfo {
            protocol: SecurityProtocol::Plaintext,
            advertised_host: Some(host.to_owned()),
            advertised_port: port,
            mechanisms: vec![],
        }
    }
}

/// Who is connected, for the connection's lifetime.
#[derive(Debug)]
pub struct Session {
    pub listener: Arc<ListenerInfo>,
    pub peer: SocketAddr,
    pub local: SocketAddr,
    /// Unix milliseconds when the connection was accepted.
    pub connected_at_ms: i64,
    /// `peer` as text, formatted once.
    peer_text: String,
    state: Mutex<Identity>,
    /// Requests read and not yet answered (written).
    in_flight: std::sync::atomic::AtomicUsize,
}

#[derive(Debug, Default)]
struct Identity {
    /// The authenticated login role (SASL or client certificate).
    login: Option<String>,
    /// When the authentication lapses (KIP-368 session lifetime).
    expires_at: Option<Instant>,
    /// The client id of the connection's first request that named one.
    client_id: Option<String>,
    /// The client library's name and version (ApiVersions v3+, KIP-511).
    software: Option<(String, String)>,
}

/// What the connection may do with a request, given who the session is.
#[derive(Debug, PartialEq, Eq)]
pub enum Gate {
    /// Handle it as usual.
    Proceed,
    /// A SASL request: run it through the connection's exchange.
    Sasl,
    /// Close the connection; the reason goes to the log.
    Refuse(String),
}

impl Session {
    pub fn new(listener: Arc<ListenerInfo>, peer: SocketAddr, local: SocketAddr) -> Session {
        Session {
            listener,
            peer,
            local,
            connected_at_ms: crate::storage::now_ms(),
            peer_text: peer.to_string(),
            state: Mutex::new(Identity::default()),
            in_flight: Default::default(),
        }
    }

    /// A PLAINTEXT session from 127.0.0.1 (unit tests, and `Broker::handle`).
    pub fn loopback() -> Arc<Session> {
        let here: SocketAddr = ([127, 0, 0, 1], 9092).into();
        Arc::new(Session::new(Arc::new(ListenerInfo::plaintext("127.0.0.1", 9092)), here, here))
    }

    /// Runs `work` with this session as [`current`].
    pub async fn scope<F: std::future::Future>(self: Arc<Self>, work: F) -> F::Output {
        SESSION.scope(self, work).await
    }

    /// The address this session's clients are told to connect to.
    pub fn advertised(&self) -> (String, u16) {
        let host = self.listener.advertised_host.clone().unwrap_or_else(|| self.local.ip().to_string());
        (host, self.listener.advertised_port)
    }

    /// The client's IP address, as ACL hosts name it.
    pub fn host(&self) -> String {
        self.peer.ip().to_string()
    }

    /// The login role, once authenticated.
    pub fn login(&self) -> Option<String> {
        self.state.lock().login.clone()
    }

    pub fn authenticated(&self, login: String, expires_at: Option<Instant>) {
        let mut state = self.state.lock();
        state.login = Some(login);
        state.expires_at = expires_at;
    }

    /// Records the client id requests carry (the first one seen is kept), escaped.
    pub fn saw_client_id(&self, client_id: Option<&str>) {
        let mut state = self.state.lock();
        if state.client_id.is_none() {
            state.client_id = client_id.filter(|id| !id.is_empty()).map(displayable);
        }
    }

    /// Records the client software ApiVersions named (cut to a display length).
    pub fn saw_software(&self, name: &str, version: &str) {
        let cut = displayable;
        if !name.is_empty() {
            self.state.lock().software = Some((cut(name), cut(version)));
        }
    }

    /// Counts a request as in flight until the returned guard is dropped (its response
    /// written, or the connection gone).
    pub fn request_in_flight(self: &Arc<Self>) -> InFlightRequest {
        self.in_flight.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        InFlightRequest(self.clone())
    }

    /// What operators see of this connection.
    pub fn describe(&self, id: u64) -> ConnectionInfo {
        let state = self.state.lock();
        ConnectionInfo {
            id,
            listener: self.listener.protocol.name(),
            client_address: self.peer_text.clone(),
            principal: state.login.clone(),
            client_id: state.client_id.clone(),
            software_name: state.software.as_ref().map(|s| s.0.clone()),
            software_version: state.software.as_ref().map(|s| s.1.clone()),
            requests_in_flight: self.in_flight.load(std::sync::atomic::Ordering::Relaxed),
            connected_at_ms: self.connected_at_ms,
        }
    }

    /// Decides what to do with a request of `api_key` arriving now.
    pub fn gate(&self, api_key: ApiKey, now: Instant) -> Gate {
        if matches!(api_key, ApiKey::SaslHandshake | ApiKey::SaslAuthenticate) {
            return Gate::Sasl;
        }
        if api_key == ApiKey::ApiVersions {
            return Gate::Proceed;
        }
        let identity = self.state.lock();
        if !self.listener.protocol.uses_sasl() {
            return Gate::Proceed;
        }
        match (&identity.login, identity.expires_at) {
            (None, _) => Gate::Refuse(format!("{api_key:?} request before SASL authentication")),
            (Some(login), Some(expiry)) if now >= expiry => {
                Gate::Refuse(format!("{api_key:?} request after the session of {login} expired (pg_kafka.connections_max_reauth_ms)"))
            }
            _ => Gate::Proceed,
        }
    }
}

/// Client ids longer than this are cut for display.
const MAX_CLIENT_ID_CHARS: usize = 128;

/// One open connection, as `kafka.connections` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectionInfo {
    pub id: u64,
    pub listener: &'static str,
    pub client_address: String,
    /// The login role, once authenticated.
    pub principal: Option<String>,
    pub client_id: Option<String>,
    pub software_name: Option<String>,
    pub software_version: Option<String>,
    pub requests_in_flight: usize,
    pub connected_at_ms: i64,
}

/// One request of a session counted as in flight; dropping it ends that.
pub struct InFlightRequest(Arc<Session>);

impl Drop for InFlightRequest {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// The open connections, for operators: each connection registers its session while it
/// is open; a snapshot lists them.
#[derive(Clone, Default)]
pub struct Registry {
    inner: Arc<Mutex<Listed>>,
}

/// The last id handed out, and the sessions by id.
type Listed = (u64, BTreeMap<u64, Weak<Session>>);

/// Keeps a session listed in the registry until dropped.
pub struct Registered {
    registry: Registry,
    id: u64,
}

impl Registry {
    pub fn register(&self, session: &Arc<Session>) -> Registered {
        let mut inner = self.inner.lock();
        inner.0 += 1;
        let id = inner.0;
        inner.1.insert(id, Arc::downgrade(session));
        Registered { registry: self.clone(), id }
    }

    /// Every open connection, oldest first.
    pub fn snapshot(&self) -> Vec<ConnectionInfo> {
        self.first(usize::MAX)
    }

    /// The `limit` oldest open connections (operators' tables have a fixed size: thousands
    /// of idle consumers must not cost a description each, several times a second).
    pub fn first(&self, limit: usize) -> Vec<ConnectionInfo> {
        let inner = self.inner.lock();
        inner.1.iter().filter_map(|(id, session)| session.upgrade().map(|s| s.describe(*id))).take(limit).collect()
    }

    /// How many connections are open.
    pub fn count(&self) -> usize {
        self.inner.lock().1.len()
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.registry.inner.lock().1.remove(&self.id);
    }
}

/// Logs in the role a verified client certificate names (its subject CN), on SSL
/// listeners. The role must exist and may log in, as for Postgres's own `cert`
/// authentication; otherwise the connection is refused (the reason is for the log).
pub async fn login_by_certificate(broker: &super::Broker, session: &Session, role: String) -> Result<(), String> {
    let name = role.clone();
    let found =
        super::storage_call(broker, move |s| s.login_role(&name)).await.map_err(|e| format!("cannot look up role \"{role}\": {e}"))?;
    match found {
        None => Err(format!("client certificate names role \"{role}\", which does not exist")),
        Some(login) if !login.can_login => Err(format!("client certificate names role \"{role}\", which is not permitted to log in")),
        Some(login) => {
            log_in(broker, session, login.principal, None);
            Ok(())
        }
    }
}

/// Makes `principal` the session's login, until `expires_at` if given. The ACL cache learns
/// the principal and reloads: a new login sees the ACLs and role grants of the moment; open
/// sessions see changes within pg_kafka.refresh_interval_ms.
pub fn log_in(broker: &super::Broker, session: &Session, principal: crate::security::acl::Principal, expires_at: Option<Instant>) {
    session.authenticated(principal.name.clone(), expires_at);
    broker.acls().remember(principal);
    broker.acls().invalidate();
}

/// The session of the request being handled, if any.
pub fn current() -> Option<Arc<Session>> {
    SESSION.try_with(Arc::clone).ok()
}

/// A client-chosen string as `kafka.connections` shows it: control characters (NUL
/// included, which would cut the text in shared memory and in Postgres) and backslashes
/// escaped (`\0`, `\u{1b}`, `\\`), at most [`MAX_CLIENT_ID_CHARS`] characters.
pub fn displayable(text: &str) -> String {
    let mut shown = String::with_capacity(text.len().min(MAX_CLIENT_ID_CHARS));
    for c in text.chars().take(MAX_CLIENT_ID_CHARS) {
        match c {
            '\\' => shown.push_str("\\\\"),
            '\0' => shown.push_str("\\0"),
            c if c.is_control() => shown.push_str(&format!("\\u{{{:x}}}", u32::from(c))),
            c => shown.push(c),
        }
    }
    shown
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn sasl_session() -> Session {
        let listener =
            ListenerInfo { protocol: SecurityProtocol::SaslPlaintext, advertised_host: None, advertised_port: 9093, mechanisms: vec![] };
        let addr: SocketAddr = ([10, 0, 0, 1], 5555).into();
        Session::new(Arc::new(listener), addr, ([10, 0, 0, 2], 9093).into())
    }

    /// A client id with a NUL byte used to show cut (`cli`): it is stored escaped.
    #[test]
    fn client_ids_are_kept_escaped_and_whole() {
        let session = sasl_session();
        session.saw_client_id(Some("cli\0ent\\x\u{1b}"));
        assert_eq!(session.describe(1).client_id.as_deref(), Some("cli\\0ent\\\\x\\u{1b}"));
        assert_eq!(displayable(&"é".repeat(500)).chars().count(), MAX_CLIENT_ID_CHARS);
    }

    #[test]
    fn before_authentication_only_api_versions_and_sasl_pass() {
        let session = sasl_session();
        let now = Instant::now();
        assert_eq!(session.gate(ApiKey::ApiVersions, now), Gate::Proceed);
        assert_eq!(session.gate(ApiKey::SaslHandshake, now), Gate::Sasl);
        assert!(matches!(session.gate(ApiKey::Metadata, now), Gate::Refuse(_)));
        session.authenticated("alice".into(), Some(now + Duration::from_secs(1)));
        assert_eq!(session.gate(ApiKey::Metadata, now), Gate::Proceed);
        assert!(matches!(session.gate(ApiKey::Metadata, now + Duration::from_secs(2)), Gate::Refuse(_)), "expired");
        assert_eq!(session.advertised(), ("10.0.0.2".to_string(), 9093), "a wildcard listener advertises the address used");
    }

    #[test]
    fn the_registry_lists_open_connections_with_who_they_are() {
        let registry = Registry::default();
        let session = Arc::new(sasl_session());
        let other = Session::loopback();
        let first = registry.register(&session);
        let _second = registry.register(&other);
        session.saw_client_id(Some("app-1"));
        session.saw_client_id(Some("app-2"));
        session.authenticated("alice".into(), None);
        let listed = registry.snapshot();
        assert_eq!(listed.len(), 2);
        assert_eq!(listed[0].listener, "SASL_PLAINTEXT");
        assert_eq!((listed[0].principal.as_deref(), listed[0].client_id.as_deref()), (Some("alice"), Some("app-1")));
        assert_eq!(listed[1].principal, None);
        drop(first);
        assert_eq!(registry.snapshot().len(), 1, "a closed connection leaves the list");
    }

    #[test]
    fn plaintext_sessions_pass_and_are_not_checked_against_acls() {
        let session = Session::loopback();
        assert_eq!(session.gate(ApiKey::DeleteTopics, Instant::now()), Gate::Proceed);
        assert_eq!(session.login(), None, "not logged in: not checked against ACLs");
    }
}
