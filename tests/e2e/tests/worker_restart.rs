//! The worker comes back by itself after it is terminated, as a DBA would expect of any
//! Postgres background process. Alone in its own test binary because it replaces the
//! worker every other test checks the identity of.

use std::time::{Duration, Instant};

use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, ApiVersionsResponse};
use pg_kafka_e2e::*;

fn listener_answers() -> bool {
    let Ok(stream) = std::net::TcpStream::connect(bootstrap()) else { return false };
    drop(stream);
    let mut client = RawClient::connect();
    client.send_message(ApiKey::ApiVersions, 0, &ApiVersionsRequest::default());
    let response: ApiVersionsResponse = client.read_response(ApiKey::ApiVersions, 0);
    response.error_code == 0
}

#[test]
fn pg_terminate_backend_is_followed_by_a_new_worker_on_the_same_port() {
    let session = HeldSession::open();
    let pid = psql("SELECT pid FROM pg_stat_activity WHERE backend_type = 'pg_kafka'");
    assert!(listener_answers());
    assert_eq!(psql(&format!("SELECT pg_terminate_backend({pid})")), "t");
    let deadline = Instant::now() + Duration::from_secs(30);
    let new_pid = loop {
        let now = psql("SELECT coalesce(max(pid), 0) FROM pg_stat_activity WHERE backend_type = 'pg_kafka'");
        if now != "0" && now != pid && listener_answers() {
            break now;
        }
        assert!(Instant::now() < deadline, "no worker listening 30 s after pg_terminate_backend");
        std::thread::sleep(Duration::from_millis(250));
    };
    assert_ne!(new_pid, pid);
    assert!(wait_for_log("pg_kafka: stopped"));
    session.assert_survived();
}
