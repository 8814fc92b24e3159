//! Listener specifications, Kafka-style: `PLAINTEXT://127.0.0.1:9092,SASL_SSL://0.0.0.0:9093`.
//!
//! A listener is named by its security protocol (so at most one per protocol). Each
//! advertises its own address in Metadata, FindCoordinator and DescribeCluster, taken from
//! `pg_kafka.advertised_listeners` by the same name; a wildcard bind address with nothing
//! advertised answers with the address the client connected to. A listener that is
//! reachable from other hosts and authenticates nobody is refused unless
//! `pg_kafka.allow_unauthenticated_remote` is on: secure by default.

use std::net::IpAddr;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SecurityProtocol {
    Plaintext,
    Ssl,
    SaslPlaintext,
    SaslSsl,
}

impl SecurityProtocol {
    pub fn name(self) -> &'static str {
        match self {
            SecurityProtocol::Plaintext => "PLAINTEXT",
            SecurityProtocol::Ssl => "SSL",
            SecurityProtocol::SaslPlaintext => "SASL_PLAINTEXT",
            SecurityProtocol::SaslSsl => "SASL_SSL",
        }
    }

    fn parse(name: &str) -> Option<SecurityProtocol> {
        [SecurityProtocol::Plaintext, SecurityProtocol::Ssl, SecurityProtocol::SaslPlaintext, SecurityProtocol::SaslSsl]
            .into_iter()
            .find(|p| p.name().eq_ignore_ascii_case(name))
    }

    pub fn uses_tls(self) -> bool {
        matches!(self, SecurityProtocol::Ssl | SecurityProtocol::SaslSsl)
    }

    pub fn uses_sasl(self) -> bool {
        matches!(self, SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl)
    }
}

/// One listener to bind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListenerSpec {
    pub protocol: SecurityProtocol,
    pub host: String,
    /// 0 picks a free port.
    pub port: u16,
    /// Host and port clients are told to use; `None` for the listener's own.
    pub advertised: Option<(String, u16)>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ListenerError {
    #[error("\"{0}\" is not PROTOCOL://host:port (PROTOCOL one of PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL)")]
    Syntax(String),
    #[error("listener {0} is given twice")]
    Duplicate(&'static str),
    #[error("pg_kafka.advertised_listeners names {0}, which pg_kafka.listeners does not have")]
    UnknownAdvertised(String),
    #[error(
        "listener {protocol}://{host}:{port} accepts clients from other hosts without authenticating them; \
         use SASL_PLAINTEXT, SASL_SSL or SSL with pg_kafka.ssl_client_auth = required, bind it to a loopback \
         address, or set pg_kafka.allow_unauthenticated_remote = on"
    )]
    UnauthenticatedRemote { protocol: &'static str, host: String, port: u16 },
}

/// Splits `PROTOCOL://host:port`; `[v6]` hosts keep their brackets off.
pub(crate) fn parse_address(entry: &str) -> Result<(SecurityProtocol, String, u16), ListenerError> {
    let syntax = || ListenerError::Syntax(entry.to_owned());
    let (scheme, address) = entry.split_once("://").ok_or_else(syntax)?;
    let protocol = SecurityProtocol::parse(scheme.trim()).ok_or_else(syntax)?;
    let (host, port) = address.rsplit_once(':').ok_or_else(syntax)?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port = port.parse().map_err(|_| syntax())?;
    Ok((protocol, host.to_owned(), port))
}

fn entries(list: &str) -> impl Iterator<Item = &str> {
    list.split(',').map(str::trim).filter(|e| !e.is_empty())
}

/// Parses `listeners` and `advertised_listeners`.
pub fn parse(listeners: &str, advertised: &str) -> Result<Vec<ListenerSpec>, ListenerError> {
    let mut specs: Vec<ListenerSpec> = Vec::new();
    for entry in entries(listeners) {
        let (protocol, host, port) = parse_address(entry)?;
        if specs.iter().any(|s| s.protocol == protocol) {
            return Err(ListenerError::Duplicate(protocol.name()));
        }
        specs.push(ListenerSpec { protocol, host, port, advertised: None });
    }
    for entry in entries(advertised) {
        let (protocol, host, port) = parse_address(entry)?;
        let spec = specs.iter_mut().find(|s| s.protocol == protocol).ok_or_else(|| ListenerError::UnknownAdvertised(entry.to_owned()))?;
        spec.advertised = Some((host, port));
    }
    Ok(specs)
}

/// Whether binding `host` accepts only connections from this machine.
pub fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost") || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Refuses a listener reachable from other hosts that authenticates nobody.
/// `client_certs_required`: SSL listeners authenticate by client certificate.
pub fn check_secure(spec: &ListenerSpec, client_certs_required: bool, allow_unauthenticated_remote: bool) -> Result<(), ListenerError> {
    let authenticates = spec.protocol.uses_sasl() || (spec.protocol == SecurityProtocol::Ssl && client_certs_required);
    if authenticates || allow_unauthenticated_remote || is_loopback(&spec.host) {
        return Ok(());
    }
    Err(ListenerError::UnauthenticatedRemote { protocol: spec.protocol.name(), host: spec.host.clone(), port: spec.port })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kafka_style_lists_parse_with_their_advertised_addresses() {
        let specs = parse("PLAINTEXT://127.0.0.1:9092, sasl_ssl://0.0.0.0:9093", "SASL_SSL://kafka.example.com:19093").unwrap();
        assert_eq!(specs.len(), 2);
        assert_eq!(
            specs[0],
            ListenerSpec { protocol: SecurityProtocol::Plaintext, host: "127.0.0.1".into(), port: 9092, advertised: None }
        );
        assert_eq!(specs[1].protocol, SecurityProtocol::SaslSsl);
        assert_eq!(specs[1].advertised, Some(("kafka.example.com".into(), 19093)));
        assert_eq!(parse("SSL://[::1]:9094", "").unwrap()[0].host, "::1");
    }

    #[test]
    fn bad_lists_are_refused_with_what_is_wrong() {
        assert!(matches!(parse("127.0.0.1:9092", ""), Err(ListenerError::Syntax(_))));
        assert!(matches!(parse("HTTP://127.0.0.1:80", ""), Err(ListenerError::Syntax(_))));
        assert!(matches!(parse("PLAINTEXT://h:99999", ""), Err(ListenerError::Syntax(_))));
        assert_eq!(parse("PLAINTEXT://a:1,PLAINTEXT://b:2", ""), Err(ListenerError::Duplicate("PLAINTEXT")));
        assert!(matches!(parse("PLAINTEXT://a:1", "SSL://b:2"), Err(ListenerError::UnknownAdvertised(_))));
    }

    #[test]
    fn remote_listeners_must_authenticate_unless_allowed() {
        let spec = |protocol, host: &str| ListenerSpec { protocol, host: host.into(), port: 1, advertised: None };
        assert!(check_secure(&spec(SecurityProtocol::Plaintext, "127.0.0.1"), false, false).is_ok());
        assert!(check_secure(&spec(SecurityProtocol::Plaintext, "localhost"), false, false).is_ok());
        assert!(check_secure(&spec(SecurityProtocol::Plaintext, "::1"), false, false).is_ok());
        let open = check_secure(&spec(SecurityProtocol::Plaintext, "0.0.0.0"), false, false).unwrap_err();
        assert!(open.to_string().contains("pg_kafka.allow_unauthenticated_remote"), "{open}");
        assert!(check_secure(&spec(SecurityProtocol::Plaintext, "0.0.0.0"), false, true).is_ok());
        assert!(check_secure(&spec(SecurityProtocol::SaslPlaintext, "0.0.0.0"), false, false).is_ok());
        assert!(check_secure(&spec(SecurityProtocol::Ssl, "0.0.0.0"), false, false).is_err());
        assert!(check_secure(&spec(SecurityProtocol::Ssl, "0.0.0.0"), true, false).is_ok());
    }
}
