//! What acks=all means when the whole of Postgres dies: the postmaster is killed with
//! SIGKILL while an idempotent producer sends (its backends and the worker exit on
//! postmaster death), the cluster is started again (crash recovery from the WAL), and
//! every message the producer was told is stored is there, exactly once. Alone in its own
//! test binary because it kills the shared test cluster.

use std::time::{Duration, Instant};

use pg_kafka_e2e::produce::{produce, Message};
use pg_kafka_e2e::*;

const MESSAGES: usize = 300_000;

fn postmaster_pid() -> String {
    let pid_file = format!("{}/postmaster.pid", std::env::var("PGKAFKA_E2E_DATA").unwrap());
    std::fs::read_to_string(pid_file).unwrap().lines().next().unwrap().trim().to_owned()
}

fn stored(topic: &str) -> String {
    psql(&format!("SELECT count(*) || ' ' || count(DISTINCT value) FROM kafka.topic_messages m WHERE m.topic = '{topic}'"))
}

#[test]
fn every_acknowledged_message_survives_a_sigkill_of_the_postmaster() {
    let topic: &'static str = format!("e2e-pm-crash-{}", std::process::id()).leak();
    create_topic(topic, 1);
    let producer = std::thread::spawn(move || {
        let messages = (0..MESSAGES).map(|i| Message { value: format!("p{i}").into_bytes(), ..Message::default() });
        let settings = [("enable.idempotence", "true"), ("message.timeout.ms", "180000"), ("linger.ms", "2")];
        produce(topic, &settings, messages)
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    while stored(topic).split(' ').next().unwrap().parse::<usize>().unwrap() < 10_000 {
        assert!(Instant::now() < deadline, "nothing stored after 30 s");
        std::thread::sleep(Duration::from_millis(10));
    }
    let killed = std::process::Command::new("kill").args(["-9", &postmaster_pid()]).status().unwrap();
    assert!(killed.success());
    // Backends notice the postmaster's death and exit; then start the cluster again.
    std::thread::sleep(Duration::from_secs(1));
    let restarted = Instant::now();
    restart_postgres();
    let back_after = restarted.elapsed();
    let (delivered, failed) = producer.join().unwrap();
    let at_end = stored(topic);
    println!("postmaster killed mid-stream; cluster back after {back_after:?}; {delivered} delivered, {failed} failed; stored (rows, distinct): {at_end}");
    assert_eq!((delivered, failed), (MESSAGES, 0), "the producer's retries went through");
    assert_eq!(at_end, format!("{MESSAGES} {MESSAGES}"), "every acknowledged message stored, exactly once");
    assert_gap_free(topic);
}
