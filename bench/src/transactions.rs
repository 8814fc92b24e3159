//! Transactions (BENCH_ONLY=transactions): a transactional producer committing every
//! 1,000 messages against an idempotent one (same client, same settings, batch layout),
//! and a read_committed consumer against a read_uncommitted one over the same
//! transactional log.

use std::time::{Duration, Instant};

use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientConfig;

use crate::copy::value;
use crate::produce::Acks;
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

/// A producer polled by the sending thread itself, which waits for its deliveries with
/// short polls ([`drain`]): rust-rdkafka's `flush` (which its `commit_transaction` runs
/// first) polls 100 ms after the first check whatever arrives, a pause per transaction
/// that librdkafka's own flush (C, Python) does not have.
fn producer(env: &Env, acks: Acks, transactional_id: Option<&str>) -> BaseProducer<Acks> {
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
            send(&producer, topic, &payload);
        }
        if transactional_id.is_some() {
            drain(&producer);
            producer.commit_transaction(TIMEOUT).expect("commit_transaction");
        }
    }
    drain(&producer);
    let seconds = started.elapsed().as_secs_f64();
    let delivered = acks.ok.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(delivered, env.messages, "every message acknowledged");
    let method = match transactional_id {
        Some(_) => format!("rdkafka transactional, a commit every {PER_TRANSACTION}, {size} B, batch layout"),
        None => format!("rdkafka idempotent, {size} B, batch layout"),
    };
    Row::new("transactions", method, delivered, delivered * size, seconds)
}

/// Waits until every message sent was acknowledged.
fn drain(producer: &BaseProducer<Acks>) {
    let deadline = Instant::now() + TIMEOUT;
    while producer.in_flight_count() > 0 {
        assert!(Instant::now() < deadline, "messages unacknowledged after {TIMEOUT:?}");
        producer.poll(Duration::from_millis(1));
    }
}

/// Sends one message to partition 0, serving delivery reports while the queue is full.
fn send(producer: &BaseProducer<Acks>, topic: &str, payload: &[u8]) {
    let mut record: BaseRecord<'_, [u8], [u8], Box<Instant>> =
        BaseRecord::with_opaque_to(topic, Box::new(Instant::now())).partition(0).payload(payload);
    loop {
        match producer.send(record) {
            Ok(()) => {
                producer.poll(Duration::ZERO);
                return;
            }
            Err((e, back)) if e.rdkafka_error_code() == Some(RDKafkaErrorCode::QueueFull) => {
                producer.poll(Duration::from_millis(1));
                record = back;
            }
            Err((e, _)) => panic!("send: {e}"),
        }
    }
}

/// Reads the `env.messages` records of `topic` at `isolation`.
fn consume(env: &Env, size: usize, topic: &str, isolation: &str) -> Row {
    let (count, bytes, seconds) = consume::read(env, topic, &[("isolation.level", isolation)]);
    Row::new("transactions", format!("Kafka fetch (rdkafka) {isolation}, {size} B"), count, bytes, seconds)
}
