//! KIP-368: with `pg_kafka.connections_max_reauth_ms` set, an authenticated session lasts
//! that long. librdkafka re-authenticates on its own and keeps producing; a client that
//! does not is disconnected at its next request after the lifetime. Its own binary: the
//! setting is cluster-wide.

use pg_kafka_e2e::secure::*;
use pg_kafka_e2e::*;

fn set_reauth(value: &str) {
    psql(&format!("ALTER SYSTEM SET pg_kafka.connections_max_reauth_ms = {value}"));
    psql(&format!("ALTER SYSTEM SET pg_kafka.log_connections = {}", if value == "0" { "off" } else { "on" }));
    reload_and_wait();
}

#[test]
fn sessions_last_the_reauth_interval_and_clients_reauthenticate() {
    login_role("reauth_gina", "gina-pw");
    psql("SELECT kafka.grant_acl('reauth_gina', 'all', 'topic', 'reauth-', 'prefixed')");
    psql("SELECT kafka.grant_acl('reauth_gina', 'create', 'cluster', '')");
    set_reauth("2000");
    let result = std::panic::catch_unwind(|| {
        // A raw client that never re-authenticates is cut off after its 2 s lifetime.
        let raw = python(
            "raw-scram-expire",
            &sasl_settings("SASL_PLAINTEXT", "SCRAM-SHA-256", "reauth_gina", "gina-pw"),
            &["reauth_gina", "gina-pw"],
        );
        assert_eq!(raw["lifetime"], 2000, "{raw}");
        assert_eq!(raw["answered_before"], true, "{raw}");
        assert_eq!(raw["closed_after"], true, "{raw}");
        assert!(wait_for_log("expired (pg_kafka.connections_max_reauth_ms)"));
        // librdkafka produces for 7 s on one connection, re-authenticating as it goes.
        let settings = sasl_settings("SASL_SSL", "SCRAM-SHA-256", "reauth_gina", "gina-pw");
        let produced = python("ck-produce", &settings, &["reauth-topic", "35", "7"]);
        assert_eq!(produced["delivered"], 35, "{produced}");
        // The same connection authenticated again and again (log_connections is on here).
        let log = server_log();
        let mut logins_per_peer = std::collections::HashMap::<&str, usize>::new();
        for line in log.lines().filter(|l| l.contains("authenticated as role \"reauth_gina\"")) {
            let peer = line.split("pg_kafka: ").nth(1).and_then(|rest| rest.split(' ').next()).unwrap_or_default();
            *logins_per_peer.entry(peer).or_default() += 1;
        }
        assert!(logins_per_peer.values().any(|n| *n >= 3), "re-authenticated on one connection: {logins_per_peer:?}");
    });
    set_reauth("0");
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}
