//! Logins checked against Postgres roles, TLS, and Kafka ACLs that follow role membership,
//! through real clients (kcat, confluent-kafka, kafka-python) on the SASL_PLAINTEXT,
//! SASL_SSL and SSL listeners `make e2e-test` configures beside PLAINTEXT.

use std::process::Command;
use std::time::Duration;

use kafka_protocol::messages::{
    ApiKey, MetadataRequest, SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest, SaslHandshakeResponse,
};
use kafka_protocol::protocol::StrBytes;
use pg_kafka_e2e::secure::*;
use pg_kafka_e2e::*;

/// What every refused login shows the client, whatever was wrong.
const REFUSAL: &str = "Authentication failed during authentication due to invalid credentials with SASL mechanism SCRAM-SHA-256";

fn scram(user: &str, password: &str) -> Vec<(String, String)> {
    sasl_settings("SASL_PLAINTEXT", "SCRAM-SHA-256", user, password)
}

/// Lets `role` do everything on topics and groups named `prefix*`, and create topics.
fn grant_prefix(role: &str, prefix: &str) {
    psql(&format!(
        "SELECT kafka.grant_acl('{role}', 'all', 'topic', '{prefix}', 'prefixed');
         SELECT kafka.grant_acl('{role}', 'all', 'group', '{prefix}', 'prefixed');
         SELECT kafka.grant_acl('{role}', 'create', 'cluster', '')"
    ));
}

#[test]
fn scram_and_plain_log_in_with_the_roles_postgres_password_on_every_client() {
    login_role("sec_alice", "alice-pw");
    grant_prefix("sec_alice", "sec-alice-");
    // kcat (librdkafka 2.0, which repeats its SCRAM nonce) over SASL_PLAINTEXT.
    let (ok, _, stderr) = kcat_with(&scram("sec_alice", "alice-pw"), &["-P", "-t", "sec-alice-kcat", "-l", "/dev/stdin"]);
    assert!(ok, "{stderr}");
    let (ok, out, stderr) = kcat_with(&scram("sec_alice", "alice-pw"), &["-L", "-t", "sec-alice-kcat"]);
    assert!(ok && out.contains("sec-alice-kcat"), "{out} {stderr}");
    // confluent-kafka (librdkafka 2.16): SCRAM over SASL_PLAINTEXT, PLAIN over SASL_SSL.
    let produced = python("ck-produce", &scram("sec_alice", "alice-pw"), &["sec-alice-ck", "20"]);
    assert_eq!(produced["delivered"], 20, "{produced}");
    let mut plain = sasl_settings("SASL_SSL", "PLAIN", "sec_alice", "alice-pw");
    plain.push(("group.id".into(), "sec-alice-group".into()));
    let consumed = python("ck-consume", &plain, &["sec-alice-ck", "20"]);
    assert_eq!(consumed["values"].as_array().map(Vec::len), Some(20), "{consumed}");
    let metadata = python("ck-metadata", &sasl_settings("SASL_SSL", "SCRAM-SHA-256", "sec_alice", "alice-pw"), &[]);
    assert_eq!(metadata["brokers"][0], serde_json::json!(sasl_ssl()), "each listener advertises itself: {metadata}");
    // kafka-python, SCRAM-SHA-256.
    let produced = python("kp-produce", &kafka_python_scram("sec_alice", "alice-pw"), &["sec-alice-kp", "5"]);
    assert_eq!(produced["delivered"], 5, "{produced}");
    assert_eq!(psql("SELECT count(*) FROM kafka.topic_messages WHERE topic = 'sec-alice-kp'"), "5");
}

#[test]
fn wrong_password_nologin_expired_and_unknown_roles_are_refused_alike() {
    login_role("sec_bob", "bob-pw");
    psql("DROP ROLE IF EXISTS sec_nologin; CREATE ROLE sec_nologin NOLOGIN PASSWORD 'pw'");
    psql("DROP ROLE IF EXISTS sec_expired; CREATE ROLE sec_expired LOGIN PASSWORD 'pw' VALID UNTIL '2001-01-01'");
    for (user, password, logged) in [
        ("sec_bob", "not-bob-pw", "role \"sec_bob\": wrong password"),
        ("sec_nologin", "pw", "role \"sec_nologin\" is not permitted to log in"),
        ("sec_expired", "pw", "password of role \"sec_expired\" has expired"),
        ("sec_nobody", "pw", "role \"sec_nobody\" does not exist"),
    ] {
        let answer = python("ck-metadata", &scram(user, password), &[]);
        let error = answer["error"].as_str().unwrap_or_default();
        assert!(error.contains("SASL authentication error") && error.contains(REFUSAL), "{user}: {answer}");
        assert!(wait_for_log(logged), "the server log says what was wrong for {user}: {logged}");
    }
    // The same password works, and so does PLAIN with it.
    assert!(python("ck-metadata", &scram("sec_bob", "bob-pw"), &[]).get("error").is_none());
    let answer = python("ck-metadata", &sasl_settings("SASL_SSL", "PLAIN", "sec_nologin", "pw"), &[]);
    assert!(answer["error"].as_str().unwrap_or_default().contains("SASL authentication error"), "{answer}");
}

#[test]
fn alter_role_password_takes_effect_for_new_connections() {
    login_role("sec_carol", "old-pw");
    assert!(python("ck-metadata", &scram("sec_carol", "old-pw"), &[]).get("error").is_none());
    psql("ALTER ROLE sec_carol PASSWORD 'new-pw'");
    assert!(python("ck-metadata", &scram("sec_carol", "old-pw"), &[]).get("error").is_some(), "the old password is refused");
    assert!(python("ck-metadata", &scram("sec_carol", "new-pw"), &[]).get("error").is_none(), "the new one works");
    // md5 verifiers work for PLAIN (SCRAM needs a SCRAM verifier).
    psql("SET password_encryption = 'md5'; ALTER ROLE sec_carol PASSWORD 'md5-pw'");
    assert!(python("ck-metadata", &sasl_settings("SASL_SSL", "PLAIN", "sec_carol", "md5-pw"), &[]).get("error").is_none());
}

#[test]
fn a_role_without_acls_is_denied_and_an_acl_on_its_group_role_lets_it_in() {
    create_topic("sec-team-orders", 1);
    login_role("sec_dave", "dave-pw");
    psql("DROP ROLE IF EXISTS sec_team; CREATE ROLE sec_team NOLOGIN");
    let dave = scram("sec_dave", "dave-pw");
    let produced = python("ck-produce", &dave, &["sec-team-orders", "3"]);
    assert_eq!(produced["delivered"], 0, "{produced}");
    assert!(
        produced["errors"].to_string().contains("TOPIC_AUTHORIZATION_FAILED") || produced["errors"].to_string().contains("authorization"),
        "{produced}"
    );
    let mut consumer = dave.clone();
    consumer.push(("group.id".into(), "sec-team-group".into()));
    let consumed = python("ck-consume", &consumer, &["sec-team-orders", "1"]);
    assert!(consumed["errors"].to_string().contains("AUTHORIZATION_FAILED"), "{consumed}");
    let deleted = python("ck-delete-topic", &dave, &["sec-team-orders"]);
    assert!(deleted["error"].to_string().contains("AUTHORIZATION_FAILED"), "{deleted}");
    assert!(!python("ck-metadata", &dave, &[])["topics"].to_string().contains("sec-team-orders"), "hidden from Metadata");
    assert!(wait_for_log("denied Describe on Topic \"sec-team-orders\" to User:sec_dave"));

    // Grants on the group role, then membership: dave can produce, consume and commit.
    grant_prefix("sec_team", "sec-team-");
    psql("GRANT sec_team TO sec_dave");
    let produced = python("ck-produce", &dave, &["sec-team-orders", "3"]);
    assert_eq!(produced["delivered"], 3, "{produced}");
    let consumed = python("ck-consume", &consumer, &["sec-team-orders", "3"]);
    assert_eq!(consumed["values"].as_array().map(Vec::len), Some(3), "{consumed}");
    assert_eq!(psql("SELECT committed_offset FROM kafka.consumer_offsets WHERE group_id = 'sec-team-group'"), "3");
    // Prefixed: another topic under the prefix is allowed, one outside it is not.
    assert_eq!(python("ck-produce", &dave, &["sec-team-other", "1"])["delivered"], 1);
    assert_eq!(python("ck-produce", &dave, &["sec-elsewhere", "1"])["delivered"], 0);
    // A deny beats the allow; revoking membership takes it all away again.
    psql("SELECT kafka.grant_acl('sec_dave', 'write', 'topic', 'sec-team-other', 'literal', 'deny')");
    assert_eq!(python("ck-produce", &dave, &["sec-team-other", "1"])["delivered"], 0);
    psql("REVOKE sec_team FROM sec_dave");
    assert_eq!(python("ck-produce", &dave, &["sec-team-orders", "1"])["delivered"], 0);
    assert!(python("ck-delete-topic", &dave, &["sec-team-orders"])["error"].is_string());
}

#[test]
fn admin_clients_create_describe_and_delete_acls() {
    login_role("sec_admin", "admin-pw");
    psql("ALTER ROLE sec_admin SUPERUSER");
    login_role("sec_erin", "erin-pw");
    let answer = python("ck-acls", &scram("sec_admin", "admin-pw"), &["User:sec_erin", "sec-erin-"]);
    assert_eq!(answer["described"], serde_json::json!(["GROUP:sec-erin-group:LITERAL:READ", "TOPIC:sec-erin-:PREFIXED:WRITE"]), "{answer}");
    assert_eq!(answer["deleted"], answer["described"]);
    assert_eq!(answer["after"], serde_json::json!([]));
    // Without ALTER on the cluster, a login cannot manage ACLs.
    let refused = python("ck-acls", &scram("sec_erin", "erin-pw"), &["User:sec_erin", "sec-erin-"]);
    assert!(refused["error"].to_string().contains("AUTHORIZATION_FAILED"), "{refused}");
    assert_eq!(psql("SELECT count(*) FROM kafka.acls WHERE principal = 'User:sec_erin'"), "0");
}

#[test]
fn requests_before_authentication_close_the_connection() {
    assert_survives("requests before SASL authentication", || {
        let mut client = RawClient::connect_to(&sasl_plaintext());
        client.send_message(ApiKey::Metadata, 9, &MetadataRequest::default());
        assert!(client.is_closed_by_server(), "Metadata before authentication closes the connection");
        // ApiVersions is allowed first (clients need it to choose versions).
        let mut client = RawClient::connect_to(&sasl_plaintext());
        client.send_message(ApiKey::ApiVersions, 0, &kafka_protocol::messages::ApiVersionsRequest::default());
        let versions: kafka_protocol::messages::ApiVersionsResponse = client.read_response(ApiKey::ApiVersions, 0);
        assert!(versions.api_keys.iter().any(|k| k.api_key == ApiKey::SaslAuthenticate as i16));
        // A 100 MB frame announced before authentication is refused unread.
        let mut client = RawClient::connect_to(&sasl_plaintext());
        client.send_raw(&(100_000_000i32).to_be_bytes());
        assert!(client.is_closed_by_server());
    });
    assert!(wait_for_log("Metadata request before SASL authentication"));
}

#[test]
fn plaintext_to_a_tls_listener_fails_cleanly_and_client_certificates_name_a_role() {
    assert_survives("plaintext Kafka requests to TLS listeners", || {
        for address in [ssl(), sasl_ssl()] {
            let mut client = RawClient::connect_to(&address);
            client.send_message(ApiKey::Metadata, 9, &MetadataRequest::default());
            assert!(client.is_closed_by_server(), "{address}");
        }
    });
    assert!(wait_for_log("TLS handshake failed"));
    // SSL with the client certificate of CN=cert_user: that role, checked against ACLs.
    psql("DROP ROLE IF EXISTS cert_user; CREATE ROLE cert_user LOGIN");
    grant_prefix("cert_user", "sec-cert-");
    let tls = |with_cert: bool| {
        let mut settings = vec![
            ("bootstrap.servers".to_string(), ssl()),
            ("security.protocol".to_string(), "SSL".to_string()),
            ("ssl.ca.location".to_string(), cert("ca.crt")),
        ];
        if with_cert {
            settings.push(("ssl.certificate.location".into(), cert("client.crt")));
            settings.push(("ssl.key.location".into(), cert("client.key")));
        }
        settings
    };
    let produced = python("ck-produce", &tls(true), &["sec-cert-topic", "4"]);
    assert_eq!(produced["delivered"], 4, "{produced}");
    assert_eq!(python("ck-produce", &tls(true), &["sec-other", "1"])["delivered"], 0, "ACLs apply to the certificate's role");
    // Without a certificate (requested, not required): unauthenticated, as on PLAINTEXT.
    let (ok, _, stderr) = kcat_with(&tls(false), &["-L"]);
    assert!(ok, "{stderr}");
}

/// A listener reachable from other hosts that authenticates nobody does not start unless
/// pg_kafka.allow_unauthenticated_remote is on; the log names that setting.
#[test]
fn a_remote_unauthenticated_listener_refuses_to_start() {
    let data = std::env::temp_dir().join("pg_kafka_e2e_open_listener");
    let data = data.to_string_lossy().into_owned();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/cluster.sh");
    let _ = Command::new("bash").args([script, "stop", &data]).status();
    let _ = std::fs::remove_dir_all(&data);
    let conf = std::env::temp_dir().join("pg_kafka_e2e_open_listener.conf");
    std::fs::write(&conf, "pg_kafka.listeners = 'PLAINTEXT://0.0.0.0:30101'\n").unwrap();
    // cluster.sh waits for the Kafka port, which never opens: give it up quickly.
    let started = Command::new("timeout")
        .args(["20", "bash", script, "start", &data, "26441", "30101"])
        .env("PGKAFKA_EXTRA_CONF", &conf)
        .output()
        .expect("cluster.sh runs");
    let log = std::fs::read_to_string(format!("{data}/server.log")).unwrap_or_default();
    let _ = Command::new("bash").args([script, "stop", &data]).status();
    assert!(!started.status.success(), "the Kafka port must not open");
    assert!(
        log.contains("accepts clients from other hosts without authenticating them")
            && log.contains("pg_kafka.allow_unauthenticated_remote"),
        "{log}"
    );
    std::thread::sleep(Duration::from_millis(10));
}

#[test]
fn operators_see_who_is_connected_on_which_listener() {
    login_role("sec_frank", "frank-pw");
    let settings = sasl_settings("SASL_SSL", "SCRAM-SHA-256", "sec_frank", "frank-pw");
    let config: serde_json::Map<String, serde_json::Value> =
        settings.iter().map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone()))).collect();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/clients/secure.py");
    let mut holder = Command::new("python3")
        .args([script, "ck-hold", &serde_json::Value::Object(config).to_string(), "20"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("python3 runs");
    let query = "SELECT listener || ' ' || coalesce(principal, '-') || ' ' || coalesce(client_id, '-') FROM kafka.connections WHERE principal = 'sec_frank'";
    let mut seen = String::new();
    for _ in 0..100 {
        seen = psql(query);
        if !seen.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = holder.kill();
    let _ = holder.wait();
    assert!(seen.lines().any(|l| l == "SASL_SSL sec_frank sec-holder"), "{seen:?}");
    // Closed connections leave the view.
    let mut gone = false;
    for _ in 0..100 {
        if psql(query).is_empty() {
            gone = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(gone, "the connection left kafka.connections");
    // Only roles granted it (pg_monitor) may look.
    psql("DROP ROLE IF EXISTS sec_nosy; CREATE ROLE sec_nosy LOGIN");
    let denied = Command::new("psql")
        .args(["-X", "-q", "-h", "127.0.0.1", "-U", "sec_nosy", "-d", "postgres", "-p", &std::env::var("PGKAFKA_E2E_PG_PORT").unwrap()])
        .args(["-c", "SELECT * FROM kafka.connections"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&denied.stderr).contains("permission denied"), "{denied:?}");
}

/// Hostile SASL clients: many connections that start SCRAM with odd or huge user names and
/// never finish, garbage final messages, tokens near the pre-authentication frame limit.
/// Each costs at most one role lookup; the worker survives and keeps serving.
#[test]
fn a_storm_of_unfinished_and_garbage_sasl_exchanges_is_survived() {
    assert_survives("unfinished and garbage SASL exchanges", || {
        let mut open = Vec::new();
        for i in 0..200 {
            let mut client = RawClient::connect_to(&sasl_plaintext());
            client.send_message(
                ApiKey::SaslHandshake,
                1,
                &SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str("SCRAM-SHA-256")),
            );
            let handshake: SaslHandshakeResponse = client.read_response(ApiKey::SaslHandshake, 1);
            assert_eq!(handshake.error_code, 0);
            let user = match i % 4 {
                0 => "x".repeat(100_000),
                1 => "=2C=3D".repeat(1000),
                2 => "no\u{0}body".to_string(),
                _ => format!("storm{i}"),
            };
            let first = format!("n,,n={user},r=nonce{i}");
            client.send_message(
                ApiKey::SaslAuthenticate,
                1,
                &SaslAuthenticateRequest::default().with_auth_bytes(first.into_bytes().into()),
            );
            if i % 2 == 0 {
                // Half answer with garbage, which is refused and closes.
                if let Some(_challenge) = client.read_frame() {
                    client.send_message(
                        ApiKey::SaslAuthenticate,
                        1,
                        &SaslAuthenticateRequest::default().with_auth_bytes(vec![0xff; 1000].into()),
                    );
                    if let Some(mut frame) = client.read_frame() {
                        use kafka_protocol::protocol::Decodable;
                        let _ = kafka_protocol::messages::ResponseHeader::decode(&mut frame, 0);
                        let refused = SaslAuthenticateResponse::decode(&mut frame, 1).unwrap();
                        assert_eq!(refused.error_code, 58);
                    }
                    assert!(client.is_closed_by_server());
                }
            } else {
                open.push(client); // the other half never finishes
            }
        }
        // A PLAINTEXT producer is served in the middle of it all.
        assert_eq!(pg_kafka_e2e::produce::produce("sec-storm", &[], [pg_kafka_e2e::produce::Message::default()]), (1, 0));
        drop(open);
        // A token just under the 512 KiB pre-authentication limit, and one just over it.
        let mut client = RawClient::connect_to(&sasl_plaintext());
        client.send_message(ApiKey::SaslHandshake, 1, &SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str("PLAIN")));
        let _: SaslHandshakeResponse = client.read_response(ApiKey::SaslHandshake, 1);
        client.send_message(ApiKey::SaslAuthenticate, 1, &SaslAuthenticateRequest::default().with_auth_bytes(vec![b'a'; 500_000].into()));
        let _ = client.read_frame();
        assert!(client.is_closed_by_server(), "a malformed PLAIN message is refused and closes");
        let mut client = RawClient::connect_to(&sasl_plaintext());
        client.send_raw(&600_000i32.to_be_bytes());
        assert!(client.is_closed_by_server(), "a frame over 512 KiB before authentication is refused unread");
    });
    // Client-chosen names reach the log cut short and escaped.
    assert!(wait_for_log("(not a possible role name)"));
    assert!(!server_log().contains(&"x".repeat(1000)), "a 100,000-byte user name was logged whole");
}
