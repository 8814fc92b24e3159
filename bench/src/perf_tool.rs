//! librdkafka's own benchmark tool, `rdkafka_performance` (built by
//! `scripts/build-rdkafka-performance.sh` from the librdkafka source the rdkafka-sys crate
//! ships): the numbers Kafka users compare brokers with. Each run is a child process; its
//! summary lines give messages and time, and `-l -A <file>` every message's
//! acknowledgement latency.
//!
//! A producer's rate is taken from its first acknowledgement to its last (from the
//! summary it prints every 100 ms), not from its start: an idempotent librdkafka producer
//! spends its first ~0.5 s waiting on a timer for its producer id (the bootstrap
//! connection is replaced by the advertised one; it does the same against Kafka), which
//! says nothing about the broker. A consumer's rate starts at its first message.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use hdrhistogram::Histogram;

use crate::report::percentiles_ms;
use crate::{Env, Row};

/// How one produce run is shaped.
#[derive(Clone, Copy)]
pub struct ProduceShape {
    pub size: usize,
    pub partitions: i32,
    pub idempotent: bool,
    /// `max.in.flight.requests.per.connection=1`, as strictly ordered Java producers run.
    pub one_in_flight: bool,
    /// Messages per second, or as fast as possible.
    pub rate: Option<usize>,
    /// The topic's storage layout: "rows" or "batches".
    pub layout: &'static str,
}

impl ProduceShape {
    pub fn plain(size: usize, partitions: i32) -> ProduceShape {
        ProduceShape { size, partitions, idempotent: false, one_in_flight: false, rate: None, layout: "rows" }
    }

    pub fn label(&self) -> String {
        let mut label = format!("rdkafka_performance produce, {} B, {} partition(s)", self.size, self.partitions);
        for (on, what) in [(self.idempotent, ", idempotent"), (self.one_in_flight, ", max.in.flight=1")] {
            if on {
                label.push_str(what);
            }
        }
        if let Some(rate) = self.rate {
            label.push_str(&format!(", at {rate} msg/s"));
        }
        if self.layout != "rows" {
            label.push_str(&format!(", {} layout", self.layout));
        }
        label
    }
}

fn tool() -> Command {
    let path = std::env::var("PGKAFKA_BENCH_RDKAFKA_PERFORMANCE").expect("PGKAFKA_BENCH_RDKAFKA_PERFORMANCE: run through `make bench`");
    let mut command = Command::new(path);
    command.stdin(Stdio::null()).stderr(Stdio::inherit());
    command
}

/// The producer settings the issue's measurements use: acks=all, linger.ms=5, 1 MB batches.
fn produce_command(bootstrap: &str, topic: &str, shape: ProduceShape, messages: usize, latency_file: Option<&str>) -> Command {
    let mut command = tool();
    command.args(["-P", "-t", topic, "-b", bootstrap, "-a", "-1", "-i", "100"]);
    command.args(["-s", &shape.size.to_string(), "-c", &messages.to_string()]);
    command.args(["-X", "linger.ms=5", "-X", "batch.size=1000000", "-X", "queue.buffering.max.messages=500000"]);
    if let Some(file) = latency_file {
        command.args(["-l", "-A", file]);
    }
    if shape.partitions == 1 {
        command.args(["-p", "0"]);
    }
    if shape.idempotent {
        command.args(["-X", "enable.idempotence=true"]);
    }
    if shape.one_in_flight {
        command.args(["-X", "max.in.flight.requests.per.connection=1"]);
    }
    if let Some(rate) = shape.rate {
        command.args(["-r", &rate.to_string()]);
    }
    command
}

/// Produces `env.messages` (or what `rate` sends in 10 s) into a new topic.
pub fn produce(env: &Env, shape: ProduceShape, topic: &str) -> Row {
    env.create_topic_in(topic, shape.partitions, shape.layout);
    produce_to(env, &env.bootstrap, shape, topic)
}

/// Produces `env.messages` (or what `rate` sends in 10 s) into an existing topic of the
/// broker at `bootstrap` (pg_kafka's, or Apache Kafka's beside it).
pub fn produce_to(env: &Env, bootstrap: &str, shape: ProduceShape, topic: &str) -> Row {
    let messages = shape.rate.map_or(env.messages, |rate| rate * 10);
    std::fs::create_dir_all("target/bench").expect("target/bench");
    let latency_file = format!("target/bench/latency-{topic}.txt");
    let output = produce_command(bootstrap, topic, shape, messages, Some(&latency_file)).output().expect("run rdkafka_performance");
    let summary = produced(&output.stdout, messages);
    let section = if shape.rate.is_some() { "latency" } else { "produce" };
    let row = Row::new(section, shape.label(), summary.messages, summary.messages * shape.size, summary.seconds);
    row.with_latency(latency_percentiles(&latency_file))
}

/// A long run: `messages` into one partition of a topic whose `retention.ms` makes the
/// worker delete old rows while it is written. The rate over the last 10M messages
/// against the first 10M (from each line's delivered count and time).
pub fn sustained(env: &Env, messages: usize, retention_ms: i64, topic: &str) -> Row {
    let topic_id = env.create_topic(topic, 1);
    env.sql()
        .execute(
            "INSERT INTO kafka.topic_configs (topic_id, name, value) VALUES ($1, 'retention.ms', $2)",
            &[&topic_id, &retention_ms.to_string()],
        )
        .expect("set retention.ms");
    let shape = ProduceShape::plain(100, 1);
    let output = produce_command(&env.bootstrap, topic, shape, messages, None).output().expect("run rdkafka_performance");
    produced(&output.stdout, messages);
    let lines = summary_lines(&output.stdout, "produced");
    let tenth = (messages / 5).min(10_000_000);
    // The first line at or past `count` delivered messages: (messages, ms).
    let at = |count: usize| lines.iter().find(|l| l.messages >= count).map(|l| (l.messages, l.millis)).expect("a summary line");
    let start = at(1);
    let first = at(start.0 + tenth);
    let late = at(messages - tenth);
    let end = at(messages);
    let first_rate = (first.0 - start.0) as f64 / ((first.1 - start.1) / 1000.0).max(0.001);
    let last = Row::new(
        "sustained",
        format!(
            "rdkafka_performance {}M messages, 100 B, retention.ms={retention_ms} deleting behind: last {}M vs first {}M",
            messages / 1_000_000,
            tenth / 1_000_000,
            tenth / 1_000_000
        ),
        end.0 - late.0,
        (end.0 - late.0) * 100,
        ((end.1 - late.1) / 1000.0).max(0.001),
    );
    last.against(first_rate)
}

/// Starts a consumer of partitions `0..partitions` of `topic` from `offset` ("beginning",
/// "end"), stopping after `messages` (or when killed).
pub fn start_consumer(env: &Env, topic: &str, partitions: i32, offset: &str, messages: Option<usize>) -> Child {
    start_consumer_on(&env.bootstrap, topic, partitions, offset, messages)
}

/// A consumer of partition 0 of `topic` from `offset` with client `settings` (`-X`),
/// stopping after `messages`.
pub fn start_consumer_with(bootstrap: &str, topic: &str, offset: &str, messages: usize, settings: &[(&str, &str)]) -> Child {
    let mut command = consumer_command(bootstrap, topic, 1, offset, Some(messages));
    for (key, value) in settings {
        command.args(["-X", &format!("{key}={value}")]);
    }
    command.stdout(Stdio::piped()).spawn().expect("start rdkafka_performance")
}

/// [`start_consumer`] on the broker at `bootstrap`.
pub fn start_consumer_on(bootstrap: &str, topic: &str, partitions: i32, offset: &str, messages: Option<usize>) -> Child {
    consumer_command(bootstrap, topic, partitions, offset, messages).stdout(Stdio::piped()).spawn().expect("start rdkafka_performance")
}

fn consumer_command(bootstrap: &str, topic: &str, partitions: i32, offset: &str, messages: Option<usize>) -> Command {
    let mut command = tool();
    command.args(["-C", "-t", topic, "-b", bootstrap, "-o", offset]);
    for partition in 0..partitions {
        command.args(["-p", &partition.to_string()]);
    }
    if let Some(messages) = messages {
        command.args(["-c", &messages.to_string()]);
    }
    command
}

/// Reads partition 0 of `topic` from offset 0 with the tool's consumer.
pub fn consume(env: &Env, size: usize, topic: &str) -> Row {
    let consumer = start_consumer(env, topic, 1, "beginning", Some(env.messages));
    consumed(consumer, size, "rdkafka_performance consume from offset 0")
}

/// The row of a consumer started with a message count, once it has read them all.
pub fn consumed(consumer: Child, size: usize, label: &str) -> Row {
    let output = consumer.wait_with_output().expect("rdkafka_performance consumer");
    let summary = summary(&output.stdout, "consumed");
    Row::new("consume", format!("{label}, {size} B"), summary.messages, summary.messages * size, summary.seconds)
}

struct Summary {
    messages: usize,
    seconds: f64,
}

/// A summary line: "% 1000000 messages produced (..), 1000000 delivered (..) in 2048ms:
/// ..." or "% 1000000 messages (..) consumed in 1500ms: ...".
struct SummaryLine {
    /// Delivered (producer) or consumed (consumer) messages so far.
    messages: usize,
    millis: f64,
}

fn summary_lines(stdout: &[u8], verb: &str) -> Vec<SummaryLine> {
    String::from_utf8_lossy(stdout)
        .lines()
        .filter(|l| l.starts_with("% ") && l.contains(verb) && l.contains("ms: "))
        .filter_map(|line| {
            let words: Vec<&str> = line.split_whitespace().collect();
            let count_word = if verb == "produced" { "delivered" } else { "messages" };
            let at = words.iter().position(|w| *w == count_word)?;
            let messages = words[at - 1].parse().ok()?;
            let millis = words.iter().find_map(|w| w.strip_suffix("ms:")).and_then(|ms| ms.parse().ok())?;
            Some(SummaryLine { messages, millis })
        })
        .collect()
}

/// A consumer's total, from its last summary line.
fn summary(stdout: &[u8], verb: &str) -> Summary {
    let lines = summary_lines(stdout, verb);
    let last = lines.last().unwrap_or_else(|| panic!("no summary in rdkafka_performance's output:\n{}", String::from_utf8_lossy(stdout)));
    Summary { messages: last.messages, seconds: (last.millis / 1000.0).max(0.001) }
}

/// A producer's rate from its first acknowledgement to its last, once all `expected`
/// messages were delivered.
fn produced(stdout: &[u8], expected: usize) -> Summary {
    let lines = summary_lines(stdout, "produced");
    let last = lines.last().unwrap_or_else(|| panic!("no summary in rdkafka_performance's output:\n{}", String::from_utf8_lossy(stdout)));
    assert_eq!(last.messages, expected, "every message delivered");
    let first = lines.iter().find(|l| l.messages > 0).expect("a line with deliveries");
    if first.millis >= last.millis {
        return Summary { messages: last.messages, seconds: (last.millis / 1000.0).max(0.001) };
    }
    Summary { messages: last.messages - first.messages, seconds: (last.millis - first.millis) / 1000.0 }
}

/// p50/p99/p99.9 of the per-message latencies (µs, one per line) the tool wrote.
fn latency_percentiles(file: &str) -> [f64; 3] {
    let text = std::fs::read_to_string(file).unwrap_or_default();
    let mut histogram = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3).expect("histogram");
    for value in text.lines().filter_map(|l| l.trim().parse::<u64>().ok()) {
        let _ = histogram.record(value.max(1));
    }
    let _ = std::fs::remove_file(file);
    percentiles_ms(&histogram)
}

/// Produces while one consumer replays `replay_topic` from offset 0 and four consumers
/// tail the topic being written: the producer's row and the replaying consumer's row.
pub fn produce_beside_reads(env: &Env, size: usize, replay_topic: &str, topic: &str) -> (Row, Row) {
    env.create_topic(topic, 1);
    let tails: Vec<Child> = (0..4).map(|_| start_consumer(env, topic, 1, "end", None)).collect();
    std::thread::sleep(Duration::from_secs(1)); // the tails are polling
    let replay = start_consumer(env, replay_topic, 1, "beginning", Some(env.messages));
    let shape = ProduceShape::plain(size, 1);
    let latency_file = format!("target/bench/latency-{topic}.txt");
    let output =
        produce_command(&env.bootstrap, topic, shape, env.messages, Some(&latency_file)).output().expect("run rdkafka_performance");
    let replayed = consumed(replay, size, "rdkafka_performance replay from 0 while a producer writes");
    for mut tail in tails {
        let _ = tail.kill();
        let _ = tail.wait();
    }
    let summary = produced(&output.stdout, env.messages);
    let label = "rdkafka_performance produce beside 1 replaying and 4 tailing consumers, 1 partition".to_string();
    let producer = Row::new("mixed", format!("{label}, {size} B"), summary.messages, summary.messages * size, summary.seconds)
        .with_latency(latency_percentiles(&latency_file));
    (producer, Row { section: "mixed", ..replayed })
}
