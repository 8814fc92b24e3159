//! Shadow topics (BENCH_ONLY=shadow): how fast `pg_kafka_shadow` forwards a pg_kafka topic
//! to Apache Kafka (one node on this machine, scripts/kafka-broker.sh), against producing
//! the same messages into pg_kafka with rdkafka_performance. A round fills a topic, starts
//! the forwarder on it with a fresh transactional id, and times it from its session being
//! up to the last message committed on Kafka (its own metrics say both).

use std::io::{Read, Write};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use crate::perf_tool::{self, ProduceShape};
use crate::report::Report;
use crate::{Env, Row};

/// Where Kafka listens for this case (its controller on the next port), and the forwarder's
/// metrics.
const KAFKA_PORT: u16 = 59194;
const KAFKA_DIR: &str = "target/kafka-bench-shadow";
const METRICS: &str = "127.0.0.1:59196";
const TIMEOUT: Duration = Duration::from_secs(600);

pub fn run(env: &Env, report: &mut Report, size: usize) {
    let one = ProduceShape::plain(size, 1);
    let produce_rate = report.case(|r| env.round(None, || perf_tool::produce(env, one, &format!("bench-shadow-produce-{size}-r{r}"))));
    kafka_broker(&["start", KAFKA_DIR, &KAFKA_PORT.to_string()]);
    report.case(|r| {
        let topic = format!("bench-shadow-{size}-r{r}");
        env.round(None, || forward(env, size, &topic).against(produce_rate))
    });
    kafka_broker(&["stop", KAFKA_DIR]);
}

fn kafka_broker(args: &[&str]) {
    let status = Command::new("scripts/kafka-broker.sh").args(args).status().expect("scripts/kafka-broker.sh");
    assert!(status.success(), "kafka-broker.sh {args:?}");
}

/// Fills `topic`, creates it on Kafka, shadows it and times the forwarding.
fn forward(env: &Env, size: usize, topic: &str) -> Row {
    perf_tool::produce(env, ProduceShape::plain(size, 1), topic);
    let kafka = format!("127.0.0.1:{KAFKA_PORT}");
    let classpath = std::fs::read_to_string("target/kafka-classpath.txt").expect("the classpath kafka-broker.sh resolved");
    let created = Command::new("java")
        .args(["-cp", classpath.trim(), "org.apache.kafka.tools.TopicCommand", "--bootstrap-server", &kafka])
        .args(["--create", "--topic", topic, "--partitions", "1", "--replication-factor", "1"])
        .stdout(std::process::Stdio::null())
        .status();
    assert!(created.is_ok_and(|s| s.success()), "kafka-topics --create {topic}");
    let mut sql = env.sql();
    sql.execute("SELECT kafka.shadow_topic($1, $2)", &[&topic, &kafka]).expect("kafka.shadow_topic");
    let forwarder = Forwarder::start(env);
    let up = wait_for(|| metric("pg_kafka_shadow_up{").is_some_and(|up| up == 1));
    let started = Instant::now();
    wait_for(|| metric("pg_kafka_shadow_messages_total{").is_some_and(|n| n >= env.messages as i64));
    let seconds = started.elapsed().as_secs_f64();
    drop(forwarder);
    sql.execute("SELECT kafka.unshadow_topic($1)", &[&topic]).expect("kafka.unshadow_topic");
    println!("shadow: the forwarder's session was up {up:?} after its start");
    Row::new(
        "shadow",
        format!("pg_kafka_shadow to Apache Kafka, transactions of up to 50,000, {size} B"),
        env.messages,
        env.messages * size,
        seconds,
    )
}

/// The release forwarder on the bench cluster, killed when dropped.
struct Forwarder(Child);

impl Forwarder {
    fn start(env: &Env) -> Forwarder {
        let binary = std::env::var("PGKAFKA_BENCH_SHADOW_BIN").expect("PGKAFKA_BENCH_SHADOW_BIN (make bench sets it)");
        let postgres = format!("host=127.0.0.1 port={} user=postgres dbname=postgres", env.pg_port);
        let child = Command::new(binary)
            .args(["--postgres", &postgres, "--source", &env.bootstrap, "--metrics", METRICS, "--refresh-ms", "200"])
            .spawn()
            .expect("pg_kafka_shadow starts");
        Forwarder(child)
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Polls `done` every 10 ms; returns how long it took.
fn wait_for(mut done: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < TIMEOUT, "the forwarder did not get there within {TIMEOUT:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
    start.elapsed()
}

/// A metric of the forwarder (summed over the lines that start with `prefix`).
fn metric(prefix: &str) -> Option<i64> {
    let mut page = String::new();
    let mut stream = std::net::TcpStream::connect(METRICS).ok()?;
    stream.write_all(b"GET /metrics HTTP/1.1\r\n\r\n").ok()?;
    stream.read_to_string(&mut page).ok()?;
    let values: Vec<i64> = page.lines().filter(|l| l.starts_with(prefix)).filter_map(|l| l.rsplit(' ').next()?.parse().ok()).collect();
    (!values.is_empty()).then(|| values.iter().sum())
}
