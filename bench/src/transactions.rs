//! Transactions (BENCH_ONLY=transactions): a transactional producer committing every
//! 1,000 messages against an idempotent one (same client, same settings, batch layout),
//! and a read_committed consumer against a read_uncommitted one over the same
//! transactional log.

use std::time::{Duration, Instant};

use rdkafka::producer::{Producer, ThreadedProducer};

use crate::copy::value;
use crate::produce::{producer_on, send, Acks};
use crate::report::Report;
use crate::{consume, Env, Row};

/// Messages per transaction.
const PER_TRANSACTION: usize = 1_000;
const TIMEOUT: Duration = Duration::from_secs(60);

pub fn run(env: &Env, report: &mut Report, size: usize) {
    let idempotent = report.case(|r| env.round(None, || produce(env, size, None, &format!("bench-txn-{size}-idempotent-r{r}"))));
    report.case(|r| {
        let topic = format!("bench-txn-{size}-transactional-r{r}");
        env.round(None, || produce(env, size, Some(&format!("bench-txn-r{r}")), &topic).against(idempotent))
    });
    let filled = format!("bench-txn-fill-{size}");
    produce(env, size, Some("bench-txn-fill"), &filled);
    let uncommitted = report.case(|_| env.round(Some(&filled), || consume(env, size, &filled, "read_uncommitted")));
    report.case(|_| env.round(Some(&filled), || consume(env, size, &filled, "read_committed").against(uncommitted)));
}

/// The bench's producer (idempotent, acks=all, linger.ms=5), with `transactional_id` a
/// transactional one. Its own thread serves delivery reports, so [`flush`] can block in
/// librdkafka as a C or Python application's commit does.
fn producer(env: &Env, acks: Acks, transactional_id: Option<&str>) -> ThreadedProducer<Acks> {
    let mut connection = vec![("bootstrap.servers".to_string(), env.bootstrap.clone())];
    if let Some(id) = transactional_id {
        connection.push(("transactional.id".to_string(), id.to_string()));
    }
    producer_on(&connection, acks, "5", true)
}

/// Produces `env.messages` to a new batch-layout topic; with a transactional id, in
/// transactions of [`PER_TRANSACTION`] messages each.
fn produce(env: &Env, size: usize, transactional_id: Option<&str>, topic: &str) -> Row {
    env.create_topic_in(topic, 1, "batches");
    let acks = Acks::new();
    let producer = producer(env, acks.clone(), transactional_id);
    let payload = value(size, 0);
    let started = Instant::now();
    if transactional_id.is_some() {
        producer.init_transactions(TIMEOUT).expect("init_transactions");
    }
    for chunk_start in (0..env.messages).step_by(PER_TRANSACTION) {
        if transactional_id.is_some() {
            producer.begin_transaction().expect("begin_transaction");
        }
        for _ in chunk_start..(chunk_start + PER_TRANSACTION).min(env.messages) {
            send(&producer, topic, 0, &payload);
        }
        if transactional_id.is_some() {
            flush(&producer);
            producer.commit_transaction(TIMEOUT).expect("commit_transaction");
        }
    }
    flush(&producer);
    let seconds = started.elapsed().as_secs_f64();
    let delivered = acks.ok.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(delivered, env.messages, "every message acknowledged");
    let method = match transactional_id {
        Some(_) => format!("rdkafka transactional, a commit every {PER_TRANSACTION}, {size} B, batch layout"),
        None => format!("rdkafka idempotent, {size} B, batch layout"),
    };
    Row::new("transactions", method, delivered, delivered * size, seconds)
}

/// Waits until every message sent was acknowledged, in librdkafka's `rd_kafka_flush`, which
/// sends what lingers at once, as librdkafka's own commit does first. rust-rdkafka's
/// `flush` (which its `commit_transaction` runs first) only peeks at it and then polls up
/// to 100 ms: a pause per transaction that C and Python applications do not have, and a
/// plain wait for deliveries would add the 5 ms linger instead.
fn flush(producer: &ThreadedProducer<Acks>) {
    let timeout_ms = TIMEOUT.as_millis() as i32;
    // SAFETY: the handle is the live producer's; librdkafka's flush is thread-safe and
    // only waits (delivery reports are served by the producer's own thread).
    let err = unsafe { rdkafka::bindings::rd_kafka_flush(producer.client().native_ptr(), timeout_ms) };
    assert_eq!(err, rdkafka::bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR, "flush");
}

/// Reads the `env.messages` records of `topic` at `isolation`.
fn consume(env: &Env, size: usize, topic: &str, isolation: &str) -> Row {
    let (count, bytes, seconds) = consume::read(env, topic, &[("isolation.level", isolation)]);
    Row::new("transactions", format!("Kafka fetch (rdkafka) {isolation}, {size} B"), count, bytes, seconds)
}
