//! Retention: messages older than `retention.ms` go and the log start moves; the pass
//! runs in a reader process, so a slow one holds up no producer.
//! Alone in its own test binary: it slows down deletes from kafka.messages.

use std::time::{Duration, Instant};

use pg_kafka_e2e::produce::{produce, Message};
use pg_kafka_e2e::*;

fn message(i: usize) -> Message {
    Message { partition: 0, key: None, value: format!("old {i}").into_bytes(), headers: vec![], timestamp: None, offset: 0 }
}

/// Polls `sql` (every 50 ms, at most `within`) until it returns `wanted`.
fn wait_for(sql: &str, wanted: &str, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while psql(sql) != wanted {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    true
}

#[test]
fn a_slow_retention_pass_runs_in_a_reader_and_producers_are_answered_meanwhile() {
    wait_for_readers(2);
    let (topic, other) = ("e2e-retention", "e2e-retention-writes");
    create_row_topic(topic, 1);
    create_topic(other, 1);
    assert_eq!(produce(topic, &[], (0..5).map(message)), (5, 0));
    let topic_id = psql(&format!("SELECT id FROM kafka.topics WHERE name = '{topic}'"));
    // Each deleted row of the topic sleeps 0.6 s: a pass of 3 s.
    psql(&format!(
        "CREATE FUNCTION e2e_slow_delete() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_sleep(0.6); RETURN OLD; END $$; \
         CREATE TRIGGER e2e_slow_delete BEFORE DELETE ON kafka.messages FOR EACH ROW \
         WHEN (OLD.topic_id = {topic_id}) EXECUTE FUNCTION e2e_slow_delete()"
    ));
    let held = HeldSession::open();
    psql(&format!("INSERT INTO kafka.topic_configs (topic_id, name, value) VALUES ({topic_id}, 'retention.ms', '1')"));

    // The make e2e cluster checks retention every second.
    let sleeper = "SELECT string_agg(backend_type, ',') FROM pg_stat_activity WHERE wait_event = 'PgSleep'";
    assert!(wait_for(sleeper, "pg_kafka reader", Duration::from_secs(10)), "the pass runs in: {:?}", psql(sleeper));
    let asked = Instant::now();
    assert_eq!(produce(other, &[], [message(0)]), (1, 0));
    let waited = asked.elapsed();
    assert!(waited < Duration::from_millis(1500), "a produce waited {waited:?} behind the retention pass");

    let rows = format!("SELECT count(*) FROM kafka.messages WHERE topic_id = {topic_id}");
    assert!(wait_for(&rows, "0", Duration::from_secs(15)), "rows left: {}", psql(&rows));
    let start = format!("SELECT log_start_offset FROM kafka.partition_starts WHERE topic_id = {topic_id} AND partition = 0");
    assert_eq!(psql(&start), "5");
    held.assert_survived();
    psql("DROP TRIGGER e2e_slow_delete ON kafka.messages; DROP FUNCTION e2e_slow_delete()");
    psql(&format!("DELETE FROM kafka.topic_configs WHERE topic_id = {topic_id}"));
}
