//! Transactions (BENCH_ONLY=transactions): a transactional producer committing every
//! 1,000 messages against an idempotent one (same client, same settings, batch layout),
//! and a read_committed consumer against a read_uncommitted one over the same
//! transactional log.

use std::time::{Duration, Instant};

use rdkafka::consumer::Consumer;
use rdkafka::producer::{Producer, ThreadedProducer};
use rdkafka::{ClientConfig, Offset};

use crate::copy::value;
use crate::produce::{send, Acks};
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

fn producer(env: &Env, acks: Acks, transactional_id: Option<&str>) -> ThreadedProducer<Acks> {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &env.bootstrap)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("queue.buffering.max.messages", "500000");
    if let Some(id) = transactional_id {
        config.set("transactional.id", id);
    }
    config.create_with_context(acks).expect("producer")
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
            producer.commit_transaction(TIMEOUT).expect("commit_transaction");
        }
    }
    producer.flush(TIMEOUT).expect("flush");
    let seconds = started.elapsed().as_secs_f64();
    let delivered = acks.ok.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(delivered, env.messages, "every message acknowledged");
    let method = match transactional_id {
        Some(_) => format!("rdkafka transactional, a commit every {PER_TRANSACTION}, {size} B, batch layout"),
        None => format!("rdkafka idempotent, {size} B, batch layout"),
    };
    Row::new("transactions", method, delivered, delivered * size, seconds)
}

/// Reads the `env.messages` records of `topic` at `isolation`.
fn consume(env: &Env, size: usize, topic: &str, isolation: &str) -> Row {
    let consumer = consume::consumer(env, topic, 1, Offset::Beginning, &[("isolation.level", isolation)]);
    let started = Instant::now();
    let (mut count, mut bytes) = (0, 0);
    while count < env.messages {
        match consumer.poll(Duration::from_secs(10)) {
            Some(Ok(message)) => {
                count += 1;
                bytes += message.payload_len();
            }
            Some(Err(e)) => panic!("consume: {e}"),
            None => panic!("no message for 10 s after {count}"),
        }
    }
    consumer.unassign().ok();
    Row::new("transactions", format!("Kafka fetch (rdkafka) {isolation}, {size} B"), count, bytes, started.elapsed().as_secs_f64())
}
