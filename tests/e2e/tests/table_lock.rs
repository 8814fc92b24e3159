//! A user's session that locks `kafka.messages` must not freeze the broker: the worker's
//! transactions give up after `pg_kafka.lock_timeout_ms` (producers get a retriable error
//! and retry), and requests that need the database keep being answered. Alone in its own
//! test binary because it blocks every produce while the lock is held.

use std::time::{Duration, Instant};

use kafka_protocol::messages::{ApiKey, MetadataRequest, MetadataResponse};
use pg_kafka_e2e::produce::{produce, Message};
use pg_kafka_e2e::*;

#[test]
fn a_locked_messages_table_delays_producers_but_freezes_nobody() {
    let topic = "e2e-table-lock";
    create_row_topic(topic, 1);
    let mut locker = HeldSession::open();
    locker.run("BEGIN; LOCK TABLE kafka.messages IN ACCESS EXCLUSIVE MODE;");
    let locked_at = Instant::now();
    let producer = std::thread::spawn(move || {
        let message = Message { value: b"after the lock".to_vec(), ..Message::default() };
        produce(topic, &[("message.timeout.ms", "30000")], [message])
    });
    // While the producer's batch fails and is retried, Metadata (a storage job on the same
    // thread as the writer) is still answered.
    std::thread::sleep(Duration::from_millis(1500));
    let asked = Instant::now();
    let mut client = RawClient::connect();
    client.send_message(ApiKey::Metadata, 4, &MetadataRequest::default().with_topics(None));
    let metadata: MetadataResponse = client.read_response(ApiKey::Metadata, 4);
    let answered_in = asked.elapsed();
    assert!(metadata.topics.iter().any(|t| t.name.as_ref().is_some_and(|n| n.0.as_str() == topic)));
    assert!(answered_in < Duration::from_secs(3), "Metadata took {answered_in:?} behind a table lock");
    std::thread::sleep(Duration::from_secs(8).saturating_sub(locked_at.elapsed()));
    locker.run("COMMIT;");
    assert_eq!(producer.join().unwrap(), (1, 0), "delivered once the lock was released");
    assert_eq!(psql(&format!("SELECT count(*) FROM kafka.topic_messages m WHERE m.topic = '{topic}'")), "1");
    assert!(wait_for_log("55P03"), "the lock timeout is logged with its SQLSTATE");
    report_worker_peak_rss("a table lock");
    locker.assert_survived();
}
