//! What acks=all means here, measured: the worker is killed with SIGKILL while an
//! idempotent producer sends. Postgres then reinitializes (every session ends, crash
//! recovery runs), the worker comes back by itself, the producer retries, and every
//! message it was told is stored is stored, exactly once. Alone in its own test binary
//! because it crashes the shared test cluster on purpose.

use std::time::{Duration, Instant};

use pg_kafka_e2e::produce::{produce, Message};
use pg_kafka_e2e::*;

const MESSAGES: usize = 300_000;

fn wait_for_worker(old_pid: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let pid = try_psql("SELECT pid FROM pg_stat_activity WHERE backend_type = 'pg_kafka'").unwrap_or_default();
        if !pid.is_empty() && pid != old_pid {
            return pid;
        }
        assert!(Instant::now() < deadline, "no worker 60 s after the crash");
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Rows of `topic` once Postgres accepts connections again after the crash.
fn stored_count_after_recovery(topic: &str) -> usize {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let sql = format!("SELECT count(*) FROM kafka.topic_messages m WHERE m.topic = '{topic}'");
        if let Some(count) = try_psql(&sql).and_then(|out| out.parse().ok()) {
            return count;
        }
        assert!(Instant::now() < deadline, "Postgres not back 60 s after the crash");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn every_acknowledged_message_survives_a_sigkill_of_the_worker() {
    // A new topic each run, so a rerun on the same cluster starts from nothing.
    let topic: &'static str = format!("e2e-crash-{}", std::process::id()).leak();
    create_topic(topic, 1);
    let pid = psql("SELECT pid FROM pg_stat_activity WHERE backend_type = 'pg_kafka'");
    let producer = std::thread::spawn(move || {
        let messages = (0..MESSAGES).map(|i| Message { value: format!("c{i}").into_bytes(), ..Message::default() });
        let settings = [("enable.idempotence", "true"), ("message.timeout.ms", "120000"), ("linger.ms", "2")];
        produce(topic, &settings, messages)
    });
    // Kill once part of the stream is stored, so the crash lands mid-stream.
    let stored_count = || psql(&format!("SELECT count(*) FROM kafka.topic_messages m WHERE m.topic = '{topic}'")).parse::<usize>().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while stored_count() < 10_000 {
        assert!(Instant::now() < deadline, "nothing stored after 30 s");
        std::thread::sleep(Duration::from_millis(10));
    }
    let killed = std::process::Command::new("kill").args(["-9", &pid]).status().unwrap();
    assert!(killed.success());
    let crashed_at = Instant::now();
    std::thread::sleep(Duration::from_millis(100));
    let at_crash = stored_count_after_recovery(topic);
    assert!(at_crash < MESSAGES, "the producer was done before the crash: raise MESSAGES");
    let new_pid = wait_for_worker(&pid);
    let back_after = crashed_at.elapsed();
    let (delivered, failed) = producer.join().unwrap();
    eprintln!(
        "worker {pid} killed with {at_crash} of {MESSAGES} stored; worker {new_pid} serving again after {back_after:?}; {delivered} delivered, {failed} failed"
    );
    assert_eq!((delivered, failed), (MESSAGES, 0), "the producer's retries went through");
    let stored = psql(&format!("SELECT count(*) || ' ' || count(DISTINCT value) FROM kafka.topic_messages m WHERE m.topic = '{topic}'"));
    assert_eq!(stored, format!("{MESSAGES} {MESSAGES}"), "every acknowledged message stored, exactly once");
    assert_gap_free(topic);
    assert!(server_log().contains("terminated by signal 9"), "it was a crash, with crash recovery");
}
