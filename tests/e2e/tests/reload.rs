//! Settings read per request take effect on `pg_reload_conf()`, as Postgres users expect
//! of a reloadable setting. Alone in its own test binary because it changes the shared
//! cluster's settings for a while.

use std::time::{Duration, Instant};

use kafka_protocol::messages::{ApiKey, FetchResponse};
use pg_kafka_e2e::*;

/// How long an empty long poll asking to wait 10 s is held now.
fn empty_poll_takes(topic: &str) -> Duration {
    let request = fetch_from_start(topic, 10_000, 1 << 20);
    let mut client = RawClient::connect();
    let started = Instant::now();
    client.send_message(ApiKey::Fetch, 11, &request);
    let response: FetchResponse = client.read_response(ApiKey::Fetch, 11);
    assert_eq!(response.responses[0].partitions[0].error_code, 0);
    started.elapsed()
}

#[test]
fn max_wait_ms_changes_on_reload_without_a_restart() {
    let topic = "e2e-reload";
    create_topic(topic, 1);
    let before = worker_identity();
    psql("ALTER SYSTEM SET pg_kafka.max_wait_ms = 300");
    reload_and_wait();
    let held = empty_poll_takes(topic);
    psql("ALTER SYSTEM RESET pg_kafka.max_wait_ms");
    reload_and_wait();
    assert!(held < Duration::from_secs(3), "an empty poll was held {held:?} after max_wait_ms became 300");
    assert_eq!(worker_identity(), before, "reloaded, not restarted");
}
