//! Produce throughput through pg_kafka with rdkafka, and the latency of each acknowledgement.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientConfig, ClientContext};

use crate::copy::value;
use crate::report::percentiles_ms;
use crate::{Env, Row};

pub fn topic_name(size: usize, partitions: i32, producers: usize, idempotent: bool, round: usize) -> String {
    format!("bench-produce-{size}-p{partitions}-c{producers}{}-r{round}", if idempotent { "-idempotent" } else { "" })
}

/// Counts deliveries and records send-to-acknowledgement latency (µs).
#[derive(Clone)]
pub struct Acks {
    pub ok: Arc<AtomicUsize>,
    pub failed: Arc<AtomicUsize>,
    pub latency_us: Arc<Mutex<Histogram<u64>>>,
}

impl Acks {
    pub fn new() -> Acks {
        Acks {
            ok: Arc::default(),
            failed: Arc::default(),
            latency_us: Arc::new(Mutex::new(Histogram::new_with_bounds(1, 600_000_000, 3).unwrap())),
        }
    }
}

impl ClientContext for Acks {}

impl ProducerContext for Acks {
    type DeliveryOpaque = Box<Instant>;
    fn delivery(&self, result: &DeliveryResult<'_>, sent: Box<Instant>) {
        if result.is_ok() {
            self.ok.fetch_add(1, Ordering::Relaxed);
            let _ = self.latency_us.lock().unwrap().record(sent.elapsed().as_micros().max(1) as u64);
        } else {
            self.failed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

pub fn producer(env: &Env, acks: Acks, linger_ms: &str, idempotent: bool) -> ThreadedProducer<Acks> {
    producer_on(&[("bootstrap.servers".into(), env.bootstrap.clone())], acks, linger_ms, idempotent)
}

/// A producer with `connection` settings (bootstrap servers, security).
pub fn producer_on(connection: &[(String, String)], acks: Acks, linger_ms: &str, idempotent: bool) -> ThreadedProducer<Acks> {
    let mut config = ClientConfig::new();
    for (key, value) in connection {
        config.set(key, value);
    }
    config
        .set("enable.idempotence", if idempotent { "true" } else { "false" })
        .set("acks", "all")
        .set("linger.ms", linger_ms)
        .set("queue.buffering.max.messages", "500000")
        .create_with_context(acks)
        .expect("producer")
}

/// Sends one message, waiting while the client's queue is full.
pub fn send(producer: &ThreadedProducer<Acks>, topic: &str, partition: i32, payload: &[u8]) {
    let mut record: BaseRecord<'_, [u8], [u8], Box<Instant>> =
        BaseRecord::with_opaque_to(topic, Box::new(Instant::now())).partition(partition).payload(payload);
    loop {
        match producer.send(record) {
            Ok(()) => return,
            Err((e, back)) if e.rdkafka_error_code() == Some(RDKafkaErrorCode::QueueFull) => {
                producer.poll(Duration::from_millis(1));
                record = back;
            }
            Err((e, _)) => panic!("send: {e}"),
        }
    }
}

/// Produces `env.messages` of `size` bytes over `partitions` from `producers` clients
/// (idempotent ones: sequence checks and state upserts on every group commit).
pub fn throughput(env: &Env, size: usize, partitions: i32, producers: usize, idempotent: bool, round: usize) -> Row {
    let connection = [("bootstrap.servers".to_string(), env.bootstrap.clone())];
    let topic = topic_name(size, partitions, producers, idempotent, round);
    throughput_on(env, &connection, "", &topic, (size, partitions, producers, idempotent))
}

/// [`throughput`] over SASL_SSL (SCRAM-SHA-256 with a role's Postgres password, TLS), to
/// set beside the PLAINTEXT row of the same shape: the cost of authentication and TLS.
pub fn throughput_sasl_ssl(env: &Env, size: usize, round: usize) -> Option<Row> {
    let sasl_ssl = env.sasl_ssl.as_ref()?;
    let mut sql = env.sql();
    sql.batch_execute("DROP ROLE IF EXISTS bench_client; CREATE ROLE bench_client LOGIN SUPERUSER PASSWORD 'bench-pw'")
        .expect("bench role");
    let connection: Vec<(String, String)> = [
        ("bootstrap.servers", sasl_ssl.bootstrap.as_str()),
        ("security.protocol", "SASL_SSL"),
        ("sasl.mechanisms", "SCRAM-SHA-256"),
        ("sasl.username", "bench_client"),
        ("sasl.password", "bench-pw"),
        ("ssl.ca.location", sasl_ssl.ca_file.as_str()),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let topic = format!("{}-sasl-ssl", topic_name(size, 1, 1, false, round));
    Some(throughput_on(env, &connection, ", SASL_SSL (SCRAM-SHA-256)", &topic, (size, 1, 1, false)))
}

/// Produces through `connection`: (size, partitions, producers, idempotent).
fn throughput_on(
    env: &Env,
    connection: &[(String, String)],
    label: &str,
    topic: &str,
    (size, partitions, producers, idempotent): (usize, i32, usize, bool),
) -> Row {
    let topic = topic.to_owned();
    env.create_topic(&topic, partitions);
    let acks = Acks::new();
    let per_producer = env.messages / producers;
    let started = Instant::now();
    let threads: Vec<_> = (0..producers)
        .map(|p| {
            let producer = producer_on(connection, acks.clone(), "5", idempotent);
            let topic = topic.clone();
            std::thread::spawn(move || {
                let payloads: Vec<Vec<u8>> = (0..26).map(|i| value(size, i)).collect();
                for i in 0..per_producer {
                    let n = p * per_producer + i;
                    send(&producer, &topic, (n % partitions as usize) as i32, &payloads[n % 26]);
                }
                producer.flush(Duration::from_secs(600)).expect("flush");
            })
        })
        .collect();
    let method = format!(
        "Kafka produce, {size} B, {partitions} partition(s), {producers} producer(s){}{label}",
        if idempotent { ", idempotent" } else { "" }
    );
    delivered(threads, &acks, started, per_producer * producers, size, method)
}

/// Waits for the producer threads, checks that all `sent` messages were acknowledged,
/// and makes the row: rate from `started`, acknowledgement latency percentiles.
fn delivered(threads: Vec<std::thread::JoinHandle<()>>, acks: &Acks, started: Instant, sent: usize, size: usize, method: String) -> Row {
    for thread in threads {
        thread.join().expect("producer thread");
    }
    let seconds = started.elapsed().as_secs_f64();
    assert_eq!(acks.failed.load(Ordering::Relaxed), 0, "failed deliveries");
    assert_eq!(acks.ok.load(Ordering::Relaxed), sent);
    let latency = percentiles_ms(&acks.latency_us.lock().unwrap());
    Row::new("produce", method, sent, sent * size, seconds).with_latency(latency)
}

/// 1,000 partitions (100 topics of 10) written by 50 producer connections, each sending
/// its share of `env.messages` round robin over every partition: many small batches per
/// request, and a group commit that appends to 1,000 places of the index.
pub fn many_partitions(env: &Env, size: usize, round: usize) -> Row {
    const TOPICS: usize = 100;
    const PARTITIONS: i32 = 10;
    const PRODUCERS: usize = 50;
    let topics: Vec<String> = (0..TOPICS).map(|t| format!("bench-many-{size}-t{t}-r{round}")).collect();
    for topic in &topics {
        env.create_topic(topic, PARTITIONS);
    }
    let acks = Acks::new();
    let per_producer = env.messages / PRODUCERS;
    let connection = [("bootstrap.servers".to_string(), env.bootstrap.clone())];
    let producers: Vec<_> = (0..PRODUCERS).map(|_| producer_on(&connection, acks.clone(), "5", false)).collect();
    let started = Instant::now();
    let threads: Vec<_> = producers
        .into_iter()
        .enumerate()
        .map(|(p, producer)| {
            let topics = topics.clone();
            std::thread::spawn(move || {
                let payload = value(size, p);
                for i in 0..per_producer {
                    let n = p * per_producer + i;
                    let (topic, partition) = (&topics[n % TOPICS], ((n / TOPICS) % PARTITIONS as usize) as i32);
                    send(&producer, topic, partition, &payload);
                }
                producer.flush(Duration::from_secs(600)).expect("flush");
            })
        })
        .collect();
    let method = format!("Kafka produce, {size} B, 1,000 partitions (100 topics), {PRODUCERS} producers");
    delivered(threads, &acks, started, per_producer * PRODUCERS, size, method)
}
