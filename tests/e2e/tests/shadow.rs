//! Shadow and mirrored topics (docs/shadow.md): `pg_kafka_shadow` forwards a pg_kafka topic
//! to a real Apache Kafka (4.x, KRaft, from Maven's jars: scripts/kafka-broker.sh), and a
//! topic of that Kafka into pg_kafka, exactly once, across a kill -9 of the forwarder in
//! the middle of a transaction, a kill -9 of pg_kafka's worker and (export) an outage of
//! the external cluster, while producers keep writing.
//!
//! Ignored in `make e2e-test` (it needs Java and a Kafka broker); `make shadow-test` runs it
//! with `PGKAFKA_SHADOW_BIN` (the forwarder) and `PGKAFKA_SHADOW_KAFKA_PORT` set.

use std::collections::BTreeMap;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use pg_kafka_e2e::{block_on, bootstrap, create_topic, psql, try_psql};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

const TOPIC: &str = "e2e-shadow-orders";
const EXTERNAL_TOPIC: &str = "shadowed-orders";
const MIRRORED_TOPIC: &str = "e2e-mirrored-payments";
const EXTERNAL_SOURCE: &str = "payments";
const PARTITIONS: i32 = 3;
const KAFKA_DIR: &str = "target/shadow-kafka";
const METRICS: &str = "127.0.0.1:30204";

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set: run this test through `make shadow-test`"))
}

fn external_bootstrap() -> String {
    format!("127.0.0.1:{}", env("PGKAFKA_SHADOW_KAFKA_PORT"))
}

fn kafka_broker(args: &[&str]) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/kafka-broker.sh");
    let status = Command::new("bash").arg(script).args(args).env("KAFKA_HEAP", "512m").status().expect("kafka-broker.sh runs");
    assert!(status.success(), "kafka-broker.sh {args:?} failed");
}

/// The forwarder process, killed with SIGKILL when dropped (a failed test leaves none).
struct Forwarder(Child);

impl Forwarder {
    /// Starts it on the e2e cluster; each transaction gathers for a second, so that a kill
    /// can land in one.
    fn start() -> Forwarder {
        let postgres = format!("host=127.0.0.1 port={} user=postgres dbname=postgres", env("PGKAFKA_E2E_PG_PORT"));
        let child = Command::new(env("PGKAFKA_SHADOW_BIN"))
            .args(["--postgres", &postgres, "--source", &bootstrap(), "--metrics", METRICS])
            .args(["--batch-messages", "100000", "--batch-ms", "1000", "--refresh-ms", "500"])
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

fn metrics_page() -> String {
    use std::io::{Read, Write};
    let mut page = String::new();
    if let Ok(mut stream) = std::net::TcpStream::connect(METRICS) {
        let _ = stream.write_all(b"GET /metrics HTTP/1.1\r\n\r\n").and_then(|_| stream.read_to_string(&mut page).map(|_| ()));
    }
    page
}

/// The value of a metric line that starts with `prefix`, summed over matching lines.
fn metric(prefix: &str) -> Option<i64> {
    let page = metrics_page();
    let values: Vec<i64> =
        page.lines().filter(|line| line.starts_with(prefix)).filter_map(|line| line.rsplit(' ').next()?.parse().ok()).collect();
    (!values.is_empty()).then(|| values.iter().sum())
}

fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    start.elapsed()
}

/// Produces `count` messages to `topic` at `bootstrap` (idempotent, acks=all), partition by
/// number, with keys, headers (one with a null value), explicit timestamps, some null keys
/// and values. Returns how many were sent.
fn produce(bootstrap: &str, topic: &str, first: u64, count: u64) -> u64 {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .set("message.timeout.ms", "30000")
        .create()
        .expect("producer");
    for n in first..first + count {
        let (key, value) = (format!("key-{n}"), format!("value-{n}"));
        let mut pending = record(topic, n, &key, &value);
        loop {
            match producer.send(pending) {
                Ok(()) => break,
                Err((_, returned)) => {
                    pending = returned;
                    producer.poll(Duration::from_millis(10));
                }
            }
        }
        producer.poll(Duration::ZERO);
    }
    producer.flush(Duration::from_secs(60)).expect("every message acknowledged");
    count
}

/// Message number `n`: partition by number, a key (null every 7th), a value (null every
/// 11th), two headers (one null-valued) and an explicit timestamp.
fn record<'a>(topic: &'a str, n: u64, key: &'a str, value: &'a str) -> BaseRecord<'a, str, str> {
    let headers = OwnedHeaders::new()
        .insert(Header { key: "n", value: Some(n.to_string().as_bytes()) })
        .insert(Header { key: "empty", value: None::<&[u8]> });
    let mut record: BaseRecord<'_, str, str> =
        BaseRecord::to(topic).partition((n % PARTITIONS as u64) as i32).headers(headers).timestamp(1_700_000_000_000 + n as i64);
    if !n.is_multiple_of(7) {
        record = record.key(key);
    }
    if !n.is_multiple_of(11) {
        record = record.payload(value);
    }
    record
}

/// A transaction of `count` messages on the external cluster, aborted: a mirror must not
/// carry them.
fn produce_aborted(topic: &str, first: u64, count: u64) {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", external_bootstrap())
        .set("transactional.id", "e2e-aborting")
        .create()
        .expect("producer");
    producer.init_transactions(Duration::from_secs(30)).expect("initTransactions");
    producer.begin_transaction().unwrap();
    for n in first..first + count {
        let (key, value) = (format!("key-{n}"), format!("aborted-{n}"));
        producer.send(record(topic, n, &key, &value)).map_err(|(e, _)| e).expect("send");
        producer.poll(Duration::ZERO);
    }
    producer.flush(Duration::from_secs(30)).expect("flushed");
    producer.abort_transaction(Duration::from_secs(30)).expect("aborted");
}

/// One record as a consumer sees it: everything forwarding must keep.
type Record = (Option<Vec<u8>>, Option<Vec<u8>>, Vec<(String, Option<Vec<u8>>)>, Option<i64>);

/// Every record of every partition of `topic`, in offset order, as a consumer at
/// `isolation` reads it, waiting until `expected` (per partition) arrived and 3 s passed without a record.
fn read_all(bootstrap: &str, topic: &str, isolation: &str, expected: &BTreeMap<i32, usize>) -> BTreeMap<i32, Vec<Record>> {
    let starts = (0..PARTITIONS).map(|p| (p, Offset::Beginning)).collect();
    read_from(bootstrap, topic, isolation, &starts, expected)
}

/// Like [`read_all`], each partition from its offset in `starts`.
fn read_from(
    bootstrap: &str,
    topic: &str,
    isolation: &str,
    starts: &BTreeMap<i32, Offset>,
    expected: &BTreeMap<i32, usize>,
) -> BTreeMap<i32, Vec<Record>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "e2e-shadow-reader")
        .set("enable.auto.commit", "false")
        .set("isolation.level", isolation)
        .create()
        .expect("consumer");
    let mut assignment = TopicPartitionList::new();
    for (&partition, &start) in starts {
        assignment.add_partition_offset(topic, partition, start).unwrap();
    }
    consumer.assign(&assignment).unwrap();
    let mut read: BTreeMap<i32, Vec<Record>> = (0..PARTITIONS).map(|p| (p, Vec::new())).collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut quiet_since = Instant::now();
    while Instant::now() < deadline {
        let complete = expected.iter().all(|(p, n)| read[p].len() >= *n);
        if complete && quiet_since.elapsed() > Duration::from_secs(3) {
            break;
        }
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(message)) => {
                let headers = message
                    .headers()
                    .map(|h| h.iter().map(|h| (h.key.to_owned(), h.value.map(<[u8]>::to_vec))).collect())
                    .unwrap_or_default();
                read.get_mut(&message.partition()).unwrap().push((
                    message.key().map(<[u8]>::to_vec),
                    message.payload().map(<[u8]>::to_vec),
                    headers,
                    message.timestamp().to_millis(),
                ));
                quiet_since = Instant::now();
            }
            Some(Err(error)) => eprintln!("reading {topic}: {error}"),
            None => {}
        }
    }
    read
}

/// Messages per partition of a pg_kafka topic, as SQL reads them (committed records).
fn stored_per_partition(topic: &str) -> BTreeMap<i32, usize> {
    psql(&format!("SELECT partition, count(*) FROM kafka.topic_messages WHERE topic = '{topic}' GROUP BY 1 ORDER BY 1"))
        .lines()
        .map(|line| {
            let (p, n) = line.split_once('|').unwrap();
            (p.parse().unwrap(), n.parse().unwrap())
        })
        .collect()
}

/// The lag `kafka.shadow_lag` shows for a pg_kafka topic, summed (-1: none recorded).
fn lag_in_sql(topic: &str) -> i64 {
    psql(&format!("SELECT coalesce(sum(lag), -1) FROM kafka.shadow_lag WHERE topic = '{topic}'")).parse().unwrap()
}

/// Whether a partition of `topic` holds records of a transaction still open: its high
/// watermark (read_uncommitted) above its last stable offset (read_committed).
fn open_transaction_in_log(topic: &str, (uncommitted, committed): &(BaseConsumer, BaseConsumer)) -> bool {
    (0..PARTITIONS).any(|partition| {
        let timeout = Duration::from_secs(5);
        match (uncommitted.fetch_watermarks(topic, partition, timeout), committed.fetch_watermarks(topic, partition, timeout)) {
            (Ok((_, high)), Ok((_, stable))) => high > stable,
            _ => false,
        }
    })
}

/// Readers of the watermarks at `bootstrap`: read_uncommitted (high watermark) and
/// read_committed (last stable offset).
fn watermark_readers(bootstrap: &str) -> (BaseConsumer, BaseConsumer) {
    (watermark_reader(bootstrap, "read_uncommitted"), watermark_reader(bootstrap, "read_committed"))
}

fn watermark_reader(bootstrap: &str, isolation: &str) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "e2e-shadow-watermarks")
        .set("isolation.level", isolation)
        .create()
        .expect("consumer")
}

/// Commits `offsets` of `topic` for `group` (not joined: no generation), as a consumer
/// that read that far would.
fn commit_group(bootstrap: &str, topic: &str, group: &str, offsets: &BTreeMap<i32, i64>) {
    let consumer: BaseConsumer = ClientConfig::new().set("bootstrap.servers", bootstrap).set("group.id", group).create().expect("consumer");
    let mut list = TopicPartitionList::new();
    for (&partition, &offset) in offsets {
        list.add_partition_offset(topic, partition, Offset::Offset(offset)).unwrap();
    }
    consumer.commit(&list, rdkafka::consumer::CommitMode::Sync).expect("OffsetCommit");
}

/// The offsets `group` has committed for the partitions of `topic` that have one.
fn committed_offsets(bootstrap: &str, topic: &str, group: &str) -> BTreeMap<i32, i64> {
    let consumer: BaseConsumer = ClientConfig::new().set("bootstrap.servers", bootstrap).set("group.id", group).create().expect("consumer");
    let mut wanted = TopicPartitionList::new();
    for partition in 0..PARTITIONS {
        wanted.add_partition(topic, partition);
    }
    let Ok(committed) = consumer.committed_offsets(wanted, Duration::from_secs(10)) else { return BTreeMap::new() };
    committed
        .elements()
        .iter()
        .filter_map(|e| match e.offset() {
            Offset::Offset(offset) => Some((e.partition(), offset)),
            _ => None,
        })
        .collect()
}

/// A fresh Apache Kafka with `topics` created, each with PARTITIONS partitions.
fn start_kafka(topics: &[&str]) {
    kafka_broker(&["start", KAFKA_DIR, &env("PGKAFKA_SHADOW_KAFKA_PORT")]);
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", external_bootstrap()).create().expect("admin client");
    let new: Vec<NewTopic> = topics.iter().map(|t| NewTopic::new(t, PARTITIONS, TopicReplication::Fixed(1))).collect();
    let created =
        block_on(admin.create_topics(&new, &AdminOptions::new().operation_timeout(Some(Duration::from_secs(30))))).expect("CreateTopics");
    assert!(created.iter().all(Result::is_ok), "{created:?}");
}

/// Kills pg_kafka's worker with SIGKILL (Postgres reinitializes and starts it again), and
/// waits until Postgres takes connections again.
fn kill_the_worker() {
    let worker = psql("SELECT pid FROM pg_stat_activity WHERE backend_type = 'pg_kafka'");
    assert!(Command::new("kill").args(["-9", &worker]).status().unwrap().success(), "kill -9 {worker}");
    wait_until("Postgres back after the worker's kill", Duration::from_secs(60), || {
        try_psql("SELECT pg_is_in_recovery()").as_deref() == Some("f")
    });
}

/// No shadow rows but the test's own (a failed earlier test may have left some).
fn forget_other_shadows() {
    psql("DELETE FROM kafka.shadow_topics");
}

/// Both sides read read_committed, partition by partition, record by record, are equal;
/// returns how many records of aborted transactions the target's log holds.
fn assert_forwarded_exactly(source: (&str, &str), target: (&str, &str), expected: &BTreeMap<i32, usize>) -> usize {
    let from = read_all(source.0, source.1, "read_committed", expected);
    let to = read_all(target.0, target.1, "read_committed", expected);
    for partition in 0..PARTITIONS {
        assert_eq!(from[&partition].len(), expected[&partition], "partition {partition} of {} read back", source.1);
        assert_eq!(to[&partition].len(), from[&partition].len(), "partition {partition}: forwarded count");
        assert!(to[&partition] == from[&partition], "partition {partition}: forwarded records differ from the source's");
    }
    let in_log = read_all(target.0, target.1, "read_uncommitted", expected);
    (0..PARTITIONS).map(|p| in_log[&p].len() - to[&p].len()).sum()
}

#[test]
#[ignore = "needs Apache Kafka: make shadow-test"]
fn a_shadowed_topic_reaches_kafka_exactly_once_through_crashes_and_an_outage() {
    forget_other_shadows();
    start_kafka(&[EXTERNAL_TOPIC]);
    create_topic(TOPIC, PARTITIONS);
    let transactional_id = psql(&format!(
        "SELECT kafka.shadow_topic('{TOPIC}', '{}', '{EXTERNAL_TOPIC}', '{{\"client.rack\": \"e2e\"}}')",
        external_bootstrap()
    ));
    assert_eq!(transactional_id, format!("pg_kafka-shadow-postgres-{TOPIC}"));
    // A property pg_kafka sets itself is refused.
    let refused = std::panic::catch_unwind(|| {
        psql(&format!("SELECT kafka.shadow_topic('{TOPIC}', 'x:1', NULL, '{{\"transactional.id\": \"mine\"}}')"))
    });
    assert!(refused.is_err(), "a transactional.id property was accepted");
    let pg_kafka = bootstrap();

    // 1. Messages written before the forwarder starts, then a kill -9 of the forwarder
    //    while a transaction of it is open with records in the external log.
    let mut produced = produce(&pg_kafka, TOPIC, 0, 3_000);
    let forwarder = Forwarder::start();
    wait_until("the first forwarded messages", Duration::from_secs(60), || metric("pg_kafka_shadow_messages_total{").unwrap_or(0) > 0);
    let writer = std::thread::spawn(|| produce(&bootstrap(), TOPIC, 3_000, 3_000));
    let readers = watermark_readers(&external_bootstrap());
    wait_until("an open transaction in the external log", Duration::from_secs(60), || open_transaction_in_log(EXTERNAL_TOPIC, &readers));
    drop(forwarder); // SIGKILL, mid-transaction
    produced += writer.join().unwrap();
    let forwarder = Forwarder::start();

    // 2. A kill -9 of pg_kafka's worker while messages are written and forwarded.
    let writer = std::thread::spawn(|| produce(&bootstrap(), TOPIC, 6_000, 2_000));
    std::thread::sleep(Duration::from_millis(500));
    kill_the_worker();
    produced += writer.join().unwrap();

    // 3. The external cluster goes away: producing to pg_kafka is not slowed, messages wait
    //    (the lag shows them), and forwarding resumes by itself once it is back.
    wait_until("the forwarder caught up before the outage", Duration::from_secs(120), || lag_in_sql(TOPIC) == 0);
    kafka_broker(&["stop", KAFKA_DIR]);
    let outage_writes = Instant::now();
    produced += produce(&pg_kafka, TOPIC, 8_000, 2_000);
    let written_in = outage_writes.elapsed();
    assert!(written_in < Duration::from_secs(30), "producing to pg_kafka took {written_in:?} with the external cluster down");
    std::thread::sleep(Duration::from_secs(3));
    assert!(lag_in_sql(TOPIC) > 0, "the messages written during the outage are not shown as lag");
    kafka_broker(&["resume", KAFKA_DIR]);
    let caught_up = wait_until("forwarding after the outage", Duration::from_secs(180), || lag_in_sql(TOPIC) == 0);
    wait_until("the metrics' lag", Duration::from_secs(30), || metric("pg_kafka_shadow_lag_messages{") == Some(0));

    // Everything pg_kafka holds is in the external topic once, in order, as it was. What
    // pg_kafka holds is the reference (a write cut by the worker's kill may or may not be
    // there: crash.rs tests that).
    let stored = stored_per_partition(TOPIC);
    assert_eq!(stored.len(), PARTITIONS as usize, "{stored:?}");
    let aborted = assert_forwarded_exactly((&pg_kafka, TOPIC), (&external_bootstrap(), EXTERNAL_TOPIC), &stored);
    assert!(aborted > 0, "the forwarder was killed mid-transaction, yet the external log holds no aborted record");
    let sessions = metric("pg_kafka_shadow_sessions_total{").unwrap_or(0);
    eprintln!(
        "shadow: {} messages stored ({produced} sent), forwarded exactly once; {aborted} records of the transaction the kill \
         aborted in the external log (a read_uncommitted consumer sees them); caught up {caught_up:?} after the outage; \
         {sessions} sessions since the kill",
        stored.values().sum::<usize>()
    );

    // A consumer group of pg_kafka, translated: caught up on partition 0, in the middle of a
    // transaction's records on 1, near the end on 2. On Kafka it resumes from where it was
    // (or a little before: from the last checkpoint at or below it), never after.
    let committed: BTreeMap<i32, i64> =
        BTreeMap::from([(0, stored[&0] as i64), (1, stored[&1] as i64 - 1_050), (2, stored[&2] as i64 - 10)]);
    commit_group(&pg_kafka, TOPIC, "e2e-shadow-app", &committed);
    let translated = wait_until("the group's offsets on Kafka", Duration::from_secs(60), || {
        committed_offsets(&external_bootstrap(), EXTERNAL_TOPIC, "e2e-shadow-app").len() == PARTITIONS as usize
    });
    let resumed = committed_offsets(&external_bootstrap(), EXTERNAL_TOPIC, "e2e-shadow-app");
    let source = read_all(&pg_kafka, TOPIC, "read_committed", &stored);
    let starts = resumed.iter().map(|(&p, &offset)| (p, Offset::Offset(offset))).collect();
    let quiet: BTreeMap<i32, usize> = (0..PARTITIONS).map(|p| (p, 0)).collect();
    let after = read_from(&external_bootstrap(), EXTERNAL_TOPIC, "read_committed", &starts, &quiet);
    for partition in 0..PARTITIONS {
        let rest = &source[&partition][committed[&partition] as usize..];
        let again = after[&partition].len() - rest.len().min(after[&partition].len());
        assert!(after[&partition].ends_with(rest), "partition {partition}: the group would miss records on Kafka");
        eprintln!(
            "shadow: group partition {partition}: committed {} on pg_kafka, {} on Kafka, {again} records read again",
            committed[&partition], resumed[&partition]
        );
    }
    assert!(after[&0].is_empty(), "a group that had caught up resumes at the end: {} records again", after[&0].len());
    eprintln!("shadow: the group's offsets were on Kafka {translated:?} after its commit");

    // Unshadowing stops the forwarder and drops the progress record.
    assert_eq!(psql(&format!("SELECT kafka.unshadow_topic('{TOPIC}')")), "t");
    wait_until("the forwarder to stop", Duration::from_secs(30), || metric("pg_kafka_shadow_up{").is_none());
    assert_eq!(psql("SELECT count(*) FROM kafka.shadow_progress"), "0");
    drop(forwarder);
    kafka_broker(&["stop", KAFKA_DIR]);
}

#[test]
#[ignore = "needs Apache Kafka: make shadow-test"]
fn a_mirrored_topic_reaches_pg_kafka_exactly_once_through_crashes() {
    forget_other_shadows();
    start_kafka(&[EXTERNAL_SOURCE]);
    create_topic(MIRRORED_TOPIC, PARTITIONS);
    let external = external_bootstrap();
    // Committed messages around a transaction that aborted: the mirror carries the former.
    let mut produced = produce(&external, EXTERNAL_SOURCE, 0, 2_000);
    produce_aborted(EXTERNAL_SOURCE, 2_000, 500);
    produced += produce(&external, EXTERNAL_SOURCE, 2_500, 1_500);
    assert_eq!(
        psql(&format!("SELECT kafka.mirror_topic('{EXTERNAL_SOURCE}', '{external}', '{MIRRORED_TOPIC}')")),
        format!("pg_kafka-mirror-postgres-{MIRRORED_TOPIC}")
    );
    assert_eq!(psql(&format!("SELECT direction FROM kafka.shadow_lag WHERE topic = '{MIRRORED_TOPIC}' LIMIT 1")), "import");

    // A kill -9 of the forwarder while its transaction on pg_kafka holds records.
    let forwarder = Forwarder::start();
    wait_until("the first mirrored messages", Duration::from_secs(60), || metric("pg_kafka_shadow_messages_total{").unwrap_or(0) > 0);
    let writer = std::thread::spawn(|| produce(&external_bootstrap(), EXTERNAL_SOURCE, 4_000, 3_000));
    let readers = watermark_readers(&bootstrap());
    wait_until("an open transaction in pg_kafka", Duration::from_secs(60), || open_transaction_in_log(MIRRORED_TOPIC, &readers));
    drop(forwarder);
    produced += writer.join().unwrap();
    let forwarder = Forwarder::start();

    // A kill -9 of pg_kafka's worker, the side written to, while it mirrors.
    let writer = std::thread::spawn(|| produce(&external_bootstrap(), EXTERNAL_SOURCE, 7_000, 2_000));
    std::thread::sleep(Duration::from_millis(500));
    kill_the_worker();
    produced += writer.join().unwrap();

    // The external topic's committed records, then pg_kafka's as SQL reads them (committed
    // only) until they are as many, then both read as consumers, record by record.
    let expected: BTreeMap<i32, usize> = (0..PARTITIONS).map(|p| (p, 0)).collect();
    let source = read_all(&external, EXTERNAL_SOURCE, "read_committed", &expected);
    let counts: BTreeMap<i32, usize> = source.iter().map(|(p, records)| (*p, records.len())).collect();
    assert_eq!(counts.values().sum::<usize>() as u64, produced, "the external topic's committed records");
    let caught_up = wait_until("mirroring to catch up", Duration::from_secs(180), || stored_per_partition(MIRRORED_TOPIC) == counts);
    let aborted = assert_forwarded_exactly((&external, EXTERNAL_SOURCE), (&bootstrap(), MIRRORED_TOPIC), &counts);
    assert!(aborted > 0, "the forwarder was killed mid-transaction, yet pg_kafka's log holds no aborted record");
    wait_until("the lag of the import in SQL", Duration::from_secs(30), || lag_in_sql(MIRRORED_TOPIC) == 0);
    eprintln!(
        "mirror: {produced} committed messages mirrored exactly once (500 aborted left out); {aborted} records of the \
               transaction the kill aborted in pg_kafka's log; caught up {caught_up:?} after the last write was read"
    );

    assert_eq!(psql(&format!("SELECT kafka.unshadow_topic('{MIRRORED_TOPIC}')")), "t");
    drop(forwarder);
    kafka_broker(&["stop", KAFKA_DIR]);
}
