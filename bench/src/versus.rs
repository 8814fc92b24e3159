//! pg_kafka beside Apache Kafka on the same machine, with the same clients, in one run:
//! what users choosing between them compare.
//!
//! ```text
//!  for each message size:
//!    Kafka 4.x (KRaft, one node, defaults)            ─┐ scripts/kafka-broker.sh, from the
//!    Kafka with log.flush.interval.messages=1         ─┘ Maven jars of bench/kafka/pom.xml
//!    pg_kafka, row layout · pg_kafka, batch layout       (the bench cluster, synchronous_commit on)
//!  each: rdkafka_performance and Kafka's ProducerPerformance (1 partition, idempotent,
//!        8 partitions; acks=all), a paced 5,000 msg/s run (p99 ack latency), and a replay
//!        from offset 0 by rdkafka_performance and ConsumerPerformance (its fetch rate)
//! ```
//!
//! pg_kafka's produce rows are compared with Kafka's fsync'd ones (equal durability: an
//! acknowledged message is on disk), its consume rows with Kafka's defaults. Kafka runs
//! only while it is measured, so the two never share the machine's two cores.

use std::collections::HashMap;
use std::process::{Command, Stdio};

use crate::perf_tool::{self, ProduceShape};
use crate::{Env, Report, Row};

/// Where Apache Kafka listens while it is measured (its controller on the next port).
const KAFKA_PORT: u16 = 59190;
const KAFKA_DIR: &str = "target/kafka-bench";

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum Broker {
    Kafka,
    KafkaFsync,
    PgKafka(&'static str),
}

impl Broker {
    fn name(self) -> String {
        match self {
            Broker::Kafka => "Kafka".into(),
            Broker::KafkaFsync => "Kafka, fsync per append".into(),
            Broker::PgKafka(layout) => format!("pg_kafka, {layout} layout"),
        }
    }

    /// For topic names: "kafka", "kafka-fsync", "rows", "batches".
    fn slug(self) -> &'static str {
        match self {
            Broker::Kafka => "kafka",
            Broker::KafkaFsync => "kafka-fsync",
            Broker::PgKafka(layout) => layout,
        }
    }

    fn bootstrap(self, env: &Env) -> String {
        match self {
            Broker::PgKafka(_) => env.bootstrap.clone(),
            _ => format!("127.0.0.1:{KAFKA_PORT}"),
        }
    }

    fn create_topic(self, env: &Env, name: &str, partitions: i32) {
        match self {
            Broker::PgKafka(layout) => {
                env.create_topic_in(name, partitions, layout);
            }
            _ => kafka_topics(&["--create", "--topic", name, "--partitions", &partitions.to_string()]),
        }
    }

    /// Deletes what a round wrote.
    fn reset(self, env: &Env, topic: &str) {
        match self {
            Broker::PgKafka(_) => env.reset(None),
            _ => kafka_topics(&["--delete", "--topic", topic]),
        }
    }
}

/// A case of one broker: what it measures, as a key shared by the brokers.
type Case = String;

/// Every broker's rows for each size, pg_kafka's against Kafka's.
pub fn run(env: &Env, report: &mut Report, sizes: &[usize]) {
    std::fs::create_dir_all("target/bench").expect("target/bench");
    for &size in sizes {
        let mut rates: HashMap<(Broker, Case), f64> = HashMap::new();
        for broker in [Broker::Kafka, Broker::KafkaFsync, Broker::PgKafka("rows"), Broker::PgKafka("batches")] {
            if broker != Broker::Kafka && broker != Broker::KafkaFsync {
                stop_kafka();
            } else {
                start_kafka(broker == Broker::KafkaFsync);
            }
            let baseline = |case: &Case, consume: bool| match broker {
                Broker::PgKafka(_) => rates.get(&(if consume { Broker::Kafka } else { Broker::KafkaFsync }, case.clone())).copied(),
                _ => None,
            };
            let mut measured = Vec::new();
            for (case, row) in cases(env, report, broker, size, &baseline) {
                measured.push(((broker, case), row));
            }
            rates.extend(measured);
        }
        stop_kafka();
    }
}

/// Runs every case on `broker`; returns each case's median rate.
fn cases(env: &Env, report: &mut Report, broker: Broker, size: usize, baseline: &dyn Fn(&Case, bool) -> Option<f64>) -> Vec<(Case, f64)> {
    let bootstrap = broker.bootstrap(env);
    let one = ProduceShape::plain(size, 1);
    let shapes = [one, ProduceShape { idempotent: true, ..one }, ProduceShape::plain(size, 8)];
    let mut rates = Vec::new();
    let compare = |row: Row, case: &Case, consume: bool| match baseline(case, consume) {
        Some(rate) => row.against(rate),
        None => row,
    };
    for shape in shapes {
        for tool in ["rdkafka_performance", "ProducerPerformance"] {
            let case = format!("{tool} {}", shape.label());
            let rate = report.case(|r| {
                let topic = format!(
                    "bench-versus-{}-{size}-{}-p{}-{}-r{r}",
                    broker.slug(),
                    tool.to_lowercase(),
                    shape.partitions,
                    shape.idempotent
                );
                broker.create_topic(env, &topic, shape.partitions);
                let row = match tool {
                    "rdkafka_performance" => perf_tool::produce_to(env, &bootstrap, shape, &topic),
                    _ => java_produce(env, &bootstrap, shape, &topic),
                };
                broker.reset(env, &topic);
                compare(named(row, broker), &case, false)
            });
            rates.push((case, rate));
        }
    }
    let paced = ProduceShape { rate: Some(5000), ..one };
    report.case(|r| {
        let topic = format!("bench-versus-{}-{size}-paced-r{r}", broker.slug());
        broker.create_topic(env, &topic, 1);
        let row = perf_tool::produce_to(env, &bootstrap, paced, &topic);
        broker.reset(env, &topic);
        named(row, broker)
    });
    let filled = format!("bench-versus-{}-{size}-filled", broker.slug());
    broker.create_topic(env, &filled, 1);
    perf_tool::produce_to(env, &bootstrap, one, &filled);
    for tool in ["rdkafka_performance", "ConsumerPerformance"] {
        let case = format!("{tool} consume {size} B");
        let rate = report.case(|_| {
            let row = match tool {
                "rdkafka_performance" => {
                    let consumer = perf_tool::start_consumer_on(&bootstrap, &filled, 1, "beginning", Some(env.messages));
                    perf_tool::consumed(consumer, size, "rdkafka_performance consume from offset 0")
                }
                _ => java_consume(env, &bootstrap, size, &filled),
            };
            compare(named(row, broker), &case, true)
        });
        rates.push((case, rate));
    }
    broker.reset(env, &filled);
    rates
}

/// The row, named after the broker it measured, in the section of this comparison.
fn named(row: Row, broker: Broker) -> Row {
    Row { section: "versus Kafka", method: format!("{}: {}", broker.name(), row.method), ..row }
}

fn kafka_classpath() -> String {
    std::fs::read_to_string("target/kafka-classpath.txt")
        .expect("target/kafka-classpath.txt (scripts/kafka-broker.sh writes it)")
        .trim()
        .into()
}

fn java(main_class: &str) -> Command {
    let mut command = Command::new("java");
    command.args(["-Xmx1g", "-cp", &kafka_classpath(), main_class]).stdin(Stdio::null()).stderr(Stdio::inherit());
    command
}

fn kafka_topics(args: &[&str]) {
    let bootstrap = format!("127.0.0.1:{KAFKA_PORT}");
    let status =
        java("org.apache.kafka.tools.TopicCommand").args(["--bootstrap-server", &bootstrap]).args(args).stdout(Stdio::null()).status();
    assert!(status.is_ok_and(|s| s.success()), "kafka-topics {args:?}");
}

fn start_kafka(fsync: bool) {
    let port = KAFKA_PORT.to_string();
    let mut args = vec!["start", KAFKA_DIR, &port];
    if fsync {
        args.push("fsync");
    }
    let status = Command::new("scripts/kafka-broker.sh").args(&args).status().expect("scripts/kafka-broker.sh");
    assert!(status.success(), "Apache Kafka did not start");
}

fn stop_kafka() {
    let _ = Command::new("scripts/kafka-broker.sh").args(["stop", KAFKA_DIR]).status();
}

/// Kafka's own ProducerPerformance with the settings of the rdkafka_performance rows
/// (acks=all, linger.ms=5, 1 MB batches); idempotence off unless the shape says so (the
/// Java producer turns it on by default).
fn java_produce(env: &Env, bootstrap: &str, shape: ProduceShape, topic: &str) -> Row {
    let output = java("org.apache.kafka.tools.ProducerPerformance")
        .args(["--topic", topic, "--num-records", &env.messages.to_string(), "--record-size", &shape.size.to_string()])
        .args(["--throughput", "-1", "--producer-props", &format!("bootstrap.servers={bootstrap}"), "acks=all", "linger.ms=5"])
        .args(["batch.size=1000000", &format!("enable.idempotence={}", shape.idempotent)])
        .output()
        .expect("run ProducerPerformance");
    let stdout = String::from_utf8_lossy(&output.stdout);
    // "1000000 records sent, 180000.1 records/sec (17.17 MB/sec), 45.2 ms avg latency, 400.0 ms max
    //  latency, 30 ms 50th, 90 ms 95th, 120 ms 99th, 150 ms 99.9th."
    let summary = stdout.lines().rev().find(|l| l.contains("records sent")).unwrap_or_else(|| panic!("ProducerPerformance: {stdout}"));
    let numbers: Vec<f64> = summary.split([' ', '(', ',']).filter_map(|w| w.parse().ok()).collect();
    let (sent, rate) = (numbers[0] as usize, numbers[1]);
    let latency = [numbers[5], numbers[7], numbers[8]];
    let label = shape.label().replace("rdkafka_performance produce", "ProducerPerformance");
    Row::new("versus Kafka", label, sent, sent * shape.size, sent as f64 / rate).with_latency(latency)
}

/// Kafka's own ConsumerPerformance reading the topic from offset 0; its fetch rate (time
/// spent fetching, without the group join), as the issue's table reports it.
fn java_consume(env: &Env, bootstrap: &str, size: usize, topic: &str) -> Row {
    let output = java("org.apache.kafka.tools.ConsumerPerformance")
        .args(["--bootstrap-server", bootstrap, "--topic", topic, "--messages", &env.messages.to_string(), "--timeout", "60000"])
        .output()
        .expect("run ConsumerPerformance");
    let stdout = String::from_utf8_lossy(&output.stdout);
    // start.time, end.time, data.consumed.in.MB, MB.sec, data.consumed.in.nMsg, nMsg.sec,
    // rebalance.time.ms, fetch.time.ms, fetch.MB.sec, fetch.nMsg.sec
    let line = stdout.lines().last().unwrap_or_default();
    let fields: Vec<&str> = line.split(", ").collect();
    let messages: usize = fields.get(4).and_then(|f| f.trim().parse().ok()).unwrap_or_else(|| panic!("ConsumerPerformance: {stdout}"));
    let fetch_ms: f64 = fields.get(7).and_then(|f| f.trim().parse().ok()).unwrap_or(f64::NAN);
    Row::new(
        "versus Kafka",
        format!("ConsumerPerformance from offset 0 (fetch rate), {size} B"),
        messages,
        messages * size,
        fetch_ms / 1000.0,
    )
}
