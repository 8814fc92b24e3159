//! Harness for the end-to-end tests. `make e2e-test` starts a cluster with pg_kafka
//! preloaded and passes its coordinates in the environment:
//! `PGKAFKA_E2E_BOOTSTRAP` (host:port of the Kafka listener), `PGKAFKA_E2E_PG_PORT`,
//! `PGKAFKA_E2E_DATA` (the data directory, whose `server.log` tests may read).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set: run these tests through `make e2e-test`"))
}

pub fn bootstrap() -> String {
    env("PGKAFKA_E2E_BOOTSTRAP")
}

/// psql running `sql` against the test cluster: unaligned, tuples only, stopping at an error.
fn psql_output(sql: &str) -> std::process::Output {
    Command::new("psql")
        .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-U", "postgres", "-d", "postgres"])
        .args(["-p", &env("PGKAFKA_E2E_PG_PORT"), "-c", sql])
        .output()
        .expect("psql runs")
}

/// Runs SQL through psql against the test cluster; returns trimmed, unaligned output.
pub fn psql(sql: &str) -> String {
    let output = psql_output(sql);
    assert!(output.status.success(), "psql failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

/// Like [`psql`], but `None` when psql fails: for the seconds after a crash, while
/// Postgres reinitializes and refuses connections.
pub fn try_psql(sql: &str) -> Option<String> {
    let output = psql_output(sql);
    output.status.success().then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// The pg_kafka worker's pid and the postmaster's start time: unchanged means the worker
/// neither crashed nor took the cluster down with it.
pub fn worker_identity() -> String {
    psql("SELECT pid || ' ' || pg_postmaster_start_time() FROM pg_stat_activity WHERE backend_type = 'pg_kafka'")
}

/// A psql session held open across an attack. A crash of the worker makes Postgres
/// terminate every session and reinitialize (while `pg_postmaster_start_time()` stays the
/// same), so [`HeldSession::assert_survived`] failing is the one symptom a DBA would see.
pub struct HeldSession {
    child: std::process::Child,
    output: std::io::BufReader<std::process::ChildStdout>,
    pid: String,
}

impl HeldSession {
    pub fn open() -> HeldSession {
        let mut child = Command::new("psql")
            .args(["-X", "-q", "-A", "-t", "-h", "127.0.0.1", "-U", "postgres", "-d", "postgres"])
            .args(["-p", &env("PGKAFKA_E2E_PG_PORT")])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("psql runs");
        let output = std::io::BufReader::new(child.stdout.take().expect("piped"));
        let mut session = HeldSession { child, output, pid: String::new() };
        session.pid = session.backend_pid();
        session
    }

    /// Sends `sql` (statements ending in `;`) and waits until psql has run them.
    pub fn run(&mut self, sql: &str) {
        let stdin = self.child.stdin.as_mut().expect("piped");
        stdin.write_all(sql.as_bytes()).and_then(|_| stdin.write_all(b"\n")).expect("psql reads");
        let pid = self.backend_pid();
        assert_eq!(pid, self.pid, "the session was lost running {sql}");
    }

    fn backend_pid(&mut self) -> String {
        use std::io::BufRead;
        let stdin = self.child.stdin.as_mut().expect("piped");
        stdin.write_all(b"SELECT 'pid ' || pg_backend_pid();\n").expect("psql reads");
        stdin.flush().expect("psql reads");
        let mut line = String::new();
        while !line.starts_with("pid ") {
            line.clear();
            if self.output.read_line(&mut line).expect("psql answers") == 0 {
                return "session lost".into();
            }
        }
        line.trim().to_owned()
    }

    /// The same backend still answers: Postgres did not reinitialize during the attack.
    pub fn assert_survived(mut self) {
        let now = self.backend_pid();
        assert_eq!(now, self.pid, "the psql session held across the attack was lost");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `attack` as a hostile client would, and checks what a DBA cares about: a psql
/// session held across it survives (a worker crash would make Postgres reinitialize and
/// end it), the worker keeps its pid and the postmaster its start time, other clients
/// are still served, and the worker's peak memory stays under the target (printed).
pub fn assert_survives(attack: &str, run: impl FnOnce()) {
    let session = HeldSession::open();
    let before = worker_identity();
    run();
    assert_eq!(worker_identity(), before, "the worker was replaced during {attack}");
    assert_listener_answers();
    report_worker_peak_rss(attack);
    session.assert_survived();
}

/// A new client's ApiVersions is answered.
pub fn assert_listener_answers() {
    let mut client = RawClient::connect();
    client.send_message(ApiKey::ApiVersions, 0, &kafka_protocol::messages::ApiVersionsRequest::default());
    let response: kafka_protocol::messages::ApiVersionsResponse = client.read_response(ApiKey::ApiVersions, 0);
    assert_eq!(response.error_code, 0);
}

/// The memory target under attack: the worker's peak resident set stays below this.
pub const WORKER_PEAK_RSS_LIMIT_MB: u64 = 1024;

/// Prints the worker's peak resident set so far (VmHWM) after `attack`, and checks it
/// stays under [`WORKER_PEAK_RSS_LIMIT_MB`]. The line is part of the test output.
pub fn report_worker_peak_rss(attack: &str) {
    let pid = psql("SELECT pid FROM pg_stat_activity WHERE backend_type = 'pg_kafka'");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("the worker's /proc status");
    let kb: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM");
    println!("worker peak RSS after {attack}: {} MB", kb / 1024);
    assert!(kb / 1024 < WORKER_PEAK_RSS_LIMIT_MB, "worker peak RSS {} MB after {attack}", kb / 1024);
}

pub fn server_log() -> String {
    std::fs::read_to_string(format!("{}/server.log", env("PGKAFKA_E2E_DATA"))).unwrap_or_default()
}

/// Waits up to 5 s for `needle` to appear in the server log.
pub fn wait_for_log(needle: &str) -> bool {
    for _ in 0..50 {
        if server_log().contains(needle) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

/// `pg_reload_conf()`, returning once the worker has applied it (its "settings reloaded"
/// line appears once more than before).
/// The metrics listener's address (`pg_kafka.metrics_listener` on the make e2e cluster).
pub fn metrics_address() -> String {
    std::env::var("PGKAFKA_E2E_METRICS").expect("PGKAFKA_E2E_METRICS is set by make e2e-test")
}

/// The metrics listener's answer to a GET of `path`, or "" when it dropped the connection
/// (all its slots busy).
pub fn http_get(path: &str) -> String {
    use std::io::{Read, Write};
    let mut response = String::new();
    if let Ok(mut stream) = std::net::TcpStream::connect(metrics_address()) {
        if write!(stream, "GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").is_ok() {
            let _ = stream.read_to_string(&mut response);
        }
    }
    response
}

pub fn reload_and_wait() {
    const RELOADED: &str = "pg_kafka: settings reloaded";
    let before = server_log().matches(RELOADED).count();
    psql("SELECT pg_reload_conf()");
    for _ in 0..100 {
        if server_log().matches(RELOADED).count() > before {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("the worker did not reload within 10 s");
}

/// Writes `value` as Kafka's records do: a zigzag varint.
pub fn zigzag_varint(out: &mut impl BufMut, value: i64) {
    let mut raw = ((value << 1) ^ (value >> 63)) as u64;
    while raw >= 0x80 {
        out.put_u8((raw as u8) | 0x80);
        raw >>= 7;
    }
    out.put_u8(raw as u8);
}

/// A Fetch of partition 0 of `topic` from offset 0, waiting up to `max_wait_ms` for a
/// byte and taking at most `max_bytes` (for the partition and the response).
/// The in-sync replicas the broker at `address` names for `topic`'s first partition (none
/// when it does not list the topic).
pub fn in_sync_replicas(address: &str, topic: &str) -> Vec<i32> {
    use kafka_protocol::messages::{MetadataRequest, MetadataResponse};
    let mut raw = RawClient::connect_to(address);
    raw.send_message(ApiKey::Metadata, 9, &MetadataRequest::default().with_topics(None));
    let metadata: MetadataResponse = raw.read_response(ApiKey::Metadata, 9);
    let topic = metadata.topics.iter().find(|t| t.name.as_ref().is_some_and(|n| n.as_str() == topic));
    topic.map(|t| t.partitions[0].isr_nodes.iter().map(|b| b.0).collect()).unwrap_or_default()
}

pub fn fetch_from_start(topic: &str, max_wait_ms: i32, max_bytes: i32) -> kafka_protocol::messages::FetchRequest {
    use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
    let partition = FetchPartition::default().with_partition(0).with_fetch_offset(0).with_partition_max_bytes(max_bytes);
    let topic =
        FetchTopic::default().with_topic(kafka_protocol::messages::TopicName(topic.to_owned().into())).with_partitions(vec![partition]);
    kafka_protocol::messages::FetchRequest::default()
        .with_max_wait_ms(max_wait_ms)
        .with_min_bytes(1)
        .with_max_bytes(max_bytes)
        .with_topics(vec![topic])
}

/// How many reader processes are running now.
pub fn readers_running() -> usize {
    psql("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pg_kafka reader'").parse().unwrap()
}

/// Waits (at most 20 s) until `count` reader processes run.
pub fn wait_for_readers(count: usize) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while readers_running() != count {
        assert!(std::time::Instant::now() < deadline, "{} reader processes, not {count}", readers_running());
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Makes each row written to `topic` (in the row layout: [`create_row_topic`]) sleep
/// `seconds` in a trigger named `name`: a group commit that holds the worker's main
/// thread. Undo with [`restore_inserts`].
pub fn slow_down_inserts(topic: &str, name: &str, seconds: u32) {
    let topic_id = psql(&format!("SELECT id FROM kafka.topics WHERE name = '{topic}'"));
    psql(&format!(
        "CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_sleep({seconds}); RETURN NEW; END $$; \
         CREATE TRIGGER {name} BEFORE INSERT ON kafka.messages FOR EACH ROW \
         WHEN (NEW.topic_id = {topic_id}) EXECUTE FUNCTION {name}()"
    ));
}

pub fn restore_inserts(name: &str) {
    psql(&format!("DROP TRIGGER {name} ON kafka.messages; DROP FUNCTION {name}()"));
}

/// One uncompressed RecordBatch v2 holding one record with `value` (for raw Produce
/// requests).
pub fn one_record_batch(value: &'static [u8]) -> Bytes {
    use kafka_protocol::records::{Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType};
    let record = Record {
        transactional: false,
        control: false,
        delete_horizon: false,
        partition_leader_epoch: 0,
        producer_id: -1,
        producer_epoch: -1,
        timestamp_type: TimestampType::Creation,
        offset: 0,
        sequence: -1,
        timestamp: 1_700_000_000_000,
        key: None,
        value: Some(Bytes::from_static(value)),
        headers: Default::default(),
    };
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(&mut buf, &[record], &RecordEncodeOptions { version: 2, compression: Compression::None }).unwrap();
    buf.freeze()
}

pub fn kcat(args: &[&str]) -> String {
    let output = Command::new("kcat").arg("-b").arg(bootstrap()).args(args).output().expect("kcat runs");
    assert!(output.status.success(), "kcat {args:?} failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A raw Kafka connection, for requests no well-behaved client would send.
pub struct RawClient {
    stream: TcpStream,
}

impl RawClient {
    pub fn connect() -> RawClient {
        RawClient::connect_to(&bootstrap())
    }

    /// A raw connection to another listener (`host:port`).
    pub fn connect_to(address: &str) -> RawClient {
        let stream = TcpStream::connect(address).expect("connect to pg_kafka");
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        RawClient { stream }
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    /// Sends a request frame with a proper header for `key`/`version` and the given body bytes.
    pub fn send(&mut self, key: ApiKey, version: i16, body: &[u8]) {
        let header = RequestHeader::default()
            .with_request_api_key(key as i16)
            .with_request_api_version(version)
            .with_correlation_id(77)
            .with_client_id(Some(StrBytes::from_static_str("e2e-raw")));
        let mut frame = BytesMut::new();
        header.encode(&mut frame, key.request_header_version(version)).unwrap();
        frame.put_slice(body);
        let mut out = (frame.len() as i32).to_be_bytes().to_vec();
        out.extend_from_slice(&frame);
        self.send_raw(&out);
    }

    pub fn send_message<M: Encodable>(&mut self, key: ApiKey, version: i16, body: &M) {
        let mut buf = BytesMut::new();
        body.encode(&mut buf, version).unwrap();
        self.send(key, version, &buf);
    }

    /// Reads one response frame; `None` if the server closed the connection.
    pub fn read_frame(&mut self) -> Option<Bytes> {
        let mut size = [0u8; 4];
        self.stream.read_exact(&mut size).ok()?;
        let mut body = vec![0u8; i32::from_be_bytes(size) as usize];
        self.stream.read_exact(&mut body).ok()?;
        Some(Bytes::from(body))
    }

    /// Reads a response, checks its correlation id, decodes the body at `version`.
    pub fn read_response<M: Decodable>(&mut self, key: ApiKey, version: i16) -> M {
        let mut frame = self.read_frame().expect("a response, not a closed connection");
        let header_version = if key == ApiKey::ApiVersions { 0 } else { key.response_header_version(version) };
        let header = ResponseHeader::decode(&mut frame, header_version).unwrap();
        assert_eq!(header.correlation_id, 77);
        let body = M::decode(&mut frame, version).unwrap();
        assert_eq!(frame.remaining(), 0, "response has trailing bytes");
        body
    }

    /// True if the server closes the connection (within the read timeout) instead of answering.
    pub fn is_closed_by_server(&mut self) -> bool {
        let mut byte = [0u8; 1];
        let closed = |read: std::io::Result<usize>| match read {
            Ok(0) => Some(true),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => Some(true),
            Ok(_) => None,
            Err(_) => Some(false),
        };
        // A byte may come first (an alert, say); then the close must follow.
        closed(self.stream.read(&mut byte)).or_else(|| closed(self.stream.read(&mut byte))).unwrap_or(false)
    }
}

pub mod produce {
    //! Producing through rdkafka with every delivery report counted.

    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    use rdkafka::message::{Header, OwnedHeaders};
    use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
    use rdkafka::{ClientConfig, ClientContext};

    #[derive(Clone, Default)]
    pub struct Deliveries {
        pub ok: Arc<AtomicUsize>,
        pub failed: Arc<AtomicUsize>,
    }

    impl ClientContext for Deliveries {}

    impl ProducerContext for Deliveries {
        type DeliveryOpaque = ();
        fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
            match result {
                Ok(_) => self.ok.fetch_add(1, Ordering::Relaxed),
                Err((e, _)) => {
                    eprintln!("delivery failed: {e}");
                    self.failed.fetch_add(1, Ordering::Relaxed)
                }
            };
        }
    }

    /// One message to send (or as received: `consume` fills `offset` and `timestamp`).
    #[derive(Clone, Debug, PartialEq, Eq, Default)]
    pub struct Message {
        pub partition: i32,
        pub key: Option<Vec<u8>>,
        pub value: Vec<u8>,
        pub headers: Vec<(String, Vec<u8>)>,
        /// CreateTime in ms; `None` lets the client stamp it.
        pub timestamp: Option<i64>,
        pub offset: i64,
    }

    /// Produces every message and waits for all delivery reports; returns (delivered, failed).
    pub fn produce(topic: &str, settings: &[(&str, &str)], messages: impl IntoIterator<Item = Message>) -> (usize, usize) {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", super::bootstrap()).set("linger.ms", "5").set("acks", "all");
        for (key, value) in settings {
            config.set(*key, *value);
        }
        let deliveries = Deliveries::default();
        let producer: ThreadedProducer<Deliveries> = config.create_with_context(deliveries.clone()).expect("producer");
        for message in messages {
            let mut headers = OwnedHeaders::new();
            for (key, value) in &message.headers {
                headers = headers.insert(Header { key, value: Some(value) });
            }
            let mut record = BaseRecord::to(topic).partition(message.partition).payload(&message.value).headers(headers);
            if let Some(key) = &message.key {
                record = record.key(key);
            }
            if let Some(timestamp) = message.timestamp {
                record = record.timestamp(timestamp);
            }
            let mut record = record;
            loop {
                match producer.send(record) {
                    Ok(()) => break,
                    Err((e, returned)) if e.rdkafka_error_code() == Some(rdkafka::types::RDKafkaErrorCode::QueueFull) => {
                        std::thread::sleep(Duration::from_millis(5));
                        record = returned;
                    }
                    Err((e, _)) => panic!("send failed: {e}"),
                }
            }
        }
        producer.flush(Duration::from_secs(120)).expect("flush");
        (deliveries.ok.load(Ordering::Relaxed), deliveries.failed.load(Ordering::Relaxed))
    }

    /// Headers as Kafka encodes them in a record, i.e. as `kafka.messages.headers` stores them.
    pub fn encoded_headers(headers: &[(String, Vec<u8>)]) -> Vec<u8> {
        use super::zigzag_varint as varint;
        let mut out = Vec::new();
        varint(&mut out, headers.len() as i64);
        for (key, value) in headers {
            varint(&mut out, key.len() as i64);
            out.extend_from_slice(key.as_bytes());
            varint(&mut out, value.len() as i64);
            out.extend_from_slice(value);
        }
        out
    }
}

pub mod consume {
    //! Consuming through rdkafka without a group: partitions assigned at given offsets.

    use std::time::{Duration, Instant};

    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::{Headers, Message as _};
    use rdkafka::{ClientConfig, Offset, TopicPartitionList};

    use super::produce::Message;

    /// A consumer of `topic`'s `partitions` from `from`, with extra client `settings`.
    pub fn consumer(topic: &str, partitions: &[i32], from: Offset, settings: &[(&str, &str)]) -> BaseConsumer {
        let mut config = ClientConfig::new();
        // librdkafka wants a group id even for assign(); nothing is committed to it.
        config
            .set("bootstrap.servers", super::bootstrap())
            .set("group.id", "pg-kafka-e2e-assign")
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "false");
        for (key, value) in settings {
            config.set(*key, *value);
        }
        let consumer: BaseConsumer = config.create().expect("consumer");
        let mut assignment = TopicPartitionList::new();
        for &partition in partitions {
            assignment.add_partition_offset(topic, partition, from).unwrap();
        }
        consumer.assign(&assignment).expect("assign");
        consumer
    }

    /// Reads messages until `count` arrived or `timeout` passed; panics on a consumer error.
    pub fn receive(consumer: &BaseConsumer, count: usize, timeout: Duration) -> Vec<Message> {
        let deadline = Instant::now() + timeout;
        let mut received = Vec::new();
        while received.len() < count && Instant::now() < deadline {
            let Some(result) = consumer.poll(Duration::from_millis(100)) else { continue };
            let message = result.expect("no consumer errors");
            let headers = message
                .headers()
                .map(|h| h.iter().map(|h| (h.key.to_owned(), h.value.unwrap_or_default().to_vec())).collect())
                .unwrap_or_default();
            received.push(Message {
                partition: message.partition(),
                key: message.key().map(<[u8]>::to_vec),
                value: message.payload().unwrap_or_default().to_vec(),
                headers,
                timestamp: message.timestamp().to_millis(),
                offset: message.offset(),
            });
        }
        received
    }

    /// Every message of the given partitions from `from` on, `count` expected.
    pub fn consume(topic: &str, partitions: &[i32], from: Offset, count: usize) -> Vec<Message> {
        let consumer = consumer(topic, partitions, from, &[]);
        let received = receive(&consumer, count, Duration::from_secs(60));
        assert_eq!(received.len(), count, "messages consumed from {topic}");
        received
    }
}

/// Creates a topic through SQL (tests that need a fixed partition count), in the
/// cluster's default layout (`pg_kafka.default_topic_storage`: CI runs both).
pub fn create_topic(name: &str, partitions: i32) {
    psql(&format!("INSERT INTO kafka.topics (name, partitions) VALUES ('{name}', {partitions}) ON CONFLICT DO NOTHING"));
}

/// Creates a topic in the row layout: for tests of `kafka.messages` itself (its triggers,
/// its locks), whatever the cluster's default.
pub fn create_row_topic(name: &str, partitions: i32) {
    psql(&format!("INSERT INTO kafka.topics (name, partitions, storage) VALUES ('{name}', {partitions}, 'rows') ON CONFLICT DO NOTHING"));
}

/// A topic's messages in either layout (rows of `kafka.messages` or records of
/// `kafka.batches`), as a FROM item `m` with `kafka.messages`'s columns.
pub fn messages_of(topic: &str) -> String {
    format!(
        "(SELECT * FROM kafka.messages WHERE topic_id = (SELECT id FROM kafka.topics WHERE name = '{topic}') \
          UNION ALL \
          SELECT * FROM kafka.batch_messages WHERE topic_id = (SELECT id FROM kafka.topics WHERE name = '{topic}')) m"
    )
}

/// Per partition of a topic: (partition, row count, min offset, max offset, distinct offsets).
pub fn partition_summary(topic: &str) -> Vec<(i32, i64, i64, i64, i64)> {
    psql(&format!(
        "SELECT partition, count(*), min(\"offset\"), max(\"offset\"), count(DISTINCT \"offset\") \
         FROM {} GROUP BY partition ORDER BY partition",
        messages_of(topic)
    ))
    .lines()
    .map(|line| {
        let f: Vec<i64> = line.split('|').map(|v| v.parse().unwrap()).collect();
        (f[0] as i32, f[1], f[2], f[3], f[4])
    })
    .collect()
}

/// Asserts every partition's offsets run 0..count without a gap or a duplicate.
pub fn assert_gap_free(topic: &str) -> i64 {
    let mut total = 0;
    for (partition, count, min, max, distinct) in partition_summary(topic) {
        assert_eq!((min, max, distinct), (0, count - 1, count), "partition {partition} of {topic}");
        total += count;
    }
    total
}

/// Runs a future to completion (rdkafka's admin calls are futures).
pub fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime").block_on(future)
}

/// Restarts the test cluster (fast shutdown, start, wait for the Kafka port).
pub fn restart_postgres() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/cluster.sh");
    let data = env("PGKAFKA_E2E_DATA");
    let kafka_port = bootstrap().rsplit(':').next().unwrap().to_owned();
    for args in [vec!["stop", &data], vec!["start", &data, &env("PGKAFKA_E2E_PG_PORT"), &kafka_port]] {
        // The listeners and certificates `make e2e-test` started the cluster with.
        let extra_conf = std::env::var("PGKAFKA_E2E_EXTRA_CONF").unwrap_or_default();
        let status = Command::new("bash").arg(script).args(&args).env("PGKAFKA_EXTRA_CONF", extra_conf).status().expect("cluster.sh runs");
        assert!(status.success(), "cluster.sh {args:?} failed");
    }
}

pub mod groups {
    //! Consumers in a consumer group (subscribe, commit), through rdkafka.

    use std::collections::BTreeSet;
    use std::time::{Duration, Instant};

    use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
    use rdkafka::message::Message as _;
    use rdkafka::ClientConfig;

    /// A member of `group` subscribed to `topic`, committing by hand.
    pub fn member(group: &str, topic: &str) -> BaseConsumer {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", super::bootstrap())
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", "6000")
            .set("heartbeat.interval.ms", "500")
            .set("enable.partition.eof", "false")
            .create()
            .expect("consumer");
        consumer.subscribe(&[topic]).expect("subscribe");
        consumer
    }

    /// The partitions a member holds now.
    pub fn assigned(consumer: &BaseConsumer) -> BTreeSet<i32> {
        consumer.assignment().map(|a| a.elements().iter().map(|e| e.partition()).collect()).unwrap_or_default()
    }

    /// What a set of members consumed: (partition, offset, value) of every message whose
    /// offset commit succeeded, in order.
    #[derive(Default)]
    pub struct Ledger {
        pub committed: Vec<(i32, i64, Vec<u8>)>,
    }

    impl Ledger {
        /// Polls each member once; every message received must not be one already
        /// committed (that would be a message consumed twice after its commit), and is
        /// committed synchronously before the next.
        pub fn poll_all(&mut self, members: &[&BaseConsumer]) {
            for consumer in members {
                let Some(result) = consumer.poll(Duration::from_millis(50)) else { continue };
                let Ok(message) = result else { continue };
                let key = (message.partition(), message.offset());
                assert!(
                    !self.committed.iter().any(|(p, o, _)| (*p, *o) == key),
                    "partition {} offset {} consumed again after its commit",
                    key.0,
                    key.1
                );
                if consumer.commit_message(&message, CommitMode::Sync).is_ok() {
                    self.committed.push((key.0, key.1, message.payload().unwrap_or_default().to_vec()));
                }
            }
        }

        /// Polls until `done` holds (checked between rounds) or `timeout` passes.
        pub fn poll_until(&mut self, members: &[&BaseConsumer], timeout: Duration, mut done: impl FnMut(&Ledger) -> bool) -> bool {
            let deadline = Instant::now() + timeout;
            while Instant::now() < deadline {
                self.poll_all(members);
                if done(self) {
                    return true;
                }
            }
            false
        }
    }
}

pub mod secure {
    //! Clients of the SASL and TLS listeners `make e2e-test` configures beside PLAINTEXT:
    //! `PGKAFKA_E2E_SASL_PLAINTEXT`, `PGKAFKA_E2E_SASL_SSL`, `PGKAFKA_E2E_SSL` (host:port)
    //! and `PGKAFKA_E2E_CERTS` (the test CA, server and client certificates).

    use std::process::Command;

    use super::{env, psql};

    pub fn sasl_plaintext() -> String {
        env("PGKAFKA_E2E_SASL_PLAINTEXT")
    }

    pub fn sasl_ssl() -> String {
        env("PGKAFKA_E2E_SASL_SSL")
    }

    pub fn ssl() -> String {
        env("PGKAFKA_E2E_SSL")
    }

    pub fn cert(file: &str) -> String {
        format!("{}/{file}", env("PGKAFKA_E2E_CERTS"))
    }

    /// (Re)creates role `name` that may log in with `password` (scram-sha-256, the default).
    pub fn login_role(name: &str, password: &str) {
        psql(&format!("DROP ROLE IF EXISTS {name}; CREATE ROLE {name} LOGIN PASSWORD '{password}'"));
    }

    /// librdkafka settings for a SASL login over `protocol` (SASL_PLAINTEXT or SASL_SSL).
    pub fn sasl_settings(protocol: &str, mechanism: &str, user: &str, password: &str) -> Vec<(String, String)> {
        let bootstrap = if protocol == "SASL_SSL" { sasl_ssl() } else { sasl_plaintext() };
        let mut settings = vec![
            ("bootstrap.servers".to_string(), bootstrap),
            ("security.protocol".to_string(), protocol.to_string()),
            ("sasl.mechanisms".to_string(), mechanism.to_string()),
            ("sasl.username".to_string(), user.to_string()),
            ("sasl.password".to_string(), password.to_string()),
        ];
        if protocol == "SASL_SSL" {
            settings.push(("ssl.ca.location".into(), cert("ca.crt")));
        }
        settings
    }

    /// kcat with `settings` as `-X` options; returns (success, stdout, stderr).
    pub fn kcat_with(settings: &[(String, String)], args: &[&str]) -> (bool, String, String) {
        let mut command = Command::new("timeout");
        command.arg("30").arg("kcat");
        for (key, value) in settings {
            if key == "bootstrap.servers" {
                command.arg("-b").arg(value);
            } else {
                command.arg("-X").arg(format!("{key}={value}"));
            }
        }
        let output = command.args(args).output().expect("kcat runs");
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    }

    /// Runs `tests/e2e/clients/secure.py COMMAND` with `config` as JSON; returns its answer.
    pub fn python(command: &str, config: &[(String, String)], args: &[&str]) -> serde_json::Value {
        let config: serde_json::Map<String, serde_json::Value> =
            config.iter().map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone()))).collect();
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/clients/secure.py");
        let output = Command::new("timeout")
            .args(["90", "python3", script, command, &serde_json::Value::Object(config).to_string()])
            .args(args)
            .output()
            .expect("python3 runs");
        let stdout = String::from_utf8_lossy(&output.stdout);
        let last = stdout.lines().last().unwrap_or_default();
        serde_json::from_str(last)
            .unwrap_or_else(|_| panic!("{command}: no answer (stdout {stdout:?}, stderr {})", String::from_utf8_lossy(&output.stderr)))
    }

    /// kafka-python keyword arguments for a SCRAM-SHA-256 login over SASL_PLAINTEXT.
    pub fn kafka_python_scram(user: &str, password: &str) -> Vec<(String, String)> {
        vec![
            ("bootstrap_servers".into(), sasl_plaintext()),
            ("security_protocol".into(), "SASL_PLAINTEXT".into()),
            ("sasl_mechanism".into(), "SCRAM-SHA-256".into()),
            ("sasl_plain_username".into(), user.into()),
            ("sasl_plain_password".into(), password.into()),
        ]
    }
}

pub mod transactions {
    //! Transactional producers through rdkafka (librdkafka speaks transactions V1).

    use std::time::Duration;

    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    use rdkafka::ClientConfig;

    use super::consume::{consumer, receive};

    /// Creates a topic in the batch layout.
    pub fn create_batch_topic(name: &str, partitions: i32) {
        create_topic_in(name, partitions, "batches");
    }

    /// Creates a topic in `layout` (`rows` or `batches`).
    pub fn create_topic_in(name: &str, partitions: i32, layout: &str) {
        super::psql(&format!(
            "INSERT INTO kafka.topics (name, partitions, storage) VALUES ('{name}', {partitions}, '{layout}') ON CONFLICT DO NOTHING"
        ));
    }

    /// A transactional producer of `id`, its transactions initialised.
    pub fn producer(id: &str, settings: &[(&str, &str)]) -> BaseProducer {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", super::bootstrap()).set("transactional.id", id).set("linger.ms", "1");
        for (key, value) in settings {
            config.set(*key, *value);
        }
        let producer: BaseProducer = config.create().expect("producer");
        producer.init_transactions(Duration::from_secs(30)).expect("init_transactions");
        producer
    }

    /// Sends `values` to partition 0 of `topic` in the open transaction and flushes.
    pub fn send(producer: &BaseProducer, topic: &str, values: &[String]) {
        for value in values {
            producer.send(BaseRecord::<(), _>::to(topic).partition(0).payload(value.as_bytes())).expect("send");
        }
        producer.flush(Duration::from_secs(30)).expect("flush");
    }

    /// The values of partition 0 of `topic` from the start at `isolation`, reading until
    /// `quiet` passes without a new one.
    pub fn values(topic: &str, isolation: &str, quiet: Duration) -> Vec<String> {
        let consumer = consumer(topic, &[0], rdkafka::Offset::Beginning, &[("isolation.level", isolation)]);
        let mut values = Vec::new();
        loop {
            let got = receive(&consumer, usize::MAX, quiet);
            if got.is_empty() {
                return values;
            }
            values.extend(got.into_iter().map(|m| String::from_utf8(m.value).unwrap()));
        }
    }

    /// `prefix0`, `prefix1`, … `prefix{n-1}`.
    pub fn numbered(prefix: &str, n: usize) -> Vec<String> {
        (0..n).map(|i| format!("{prefix}{i}")).collect()
    }
}
