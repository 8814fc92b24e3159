//! One shadowed topic, forwarded exactly once: pg_kafka to the external cluster
//! (`export`, `kafka.shadow_topic()`) or the external cluster to pg_kafka (`import`,
//! `kafka.mirror_topic()`). The two directions are one algorithm with the ends swapped;
//! below, the source is where records are read and the target where they are written.
//!
//! The forward cursor lives on the target, in the transaction that carries the
//! messages: each batch read from the source is produced inside a target transaction
//! (`transactional.id` of the topic's shadow row) together with the cursor past it,
//! committed as the offsets of the shadow's consumer group (`sendOffsetsToTransaction`,
//! what Kafka's consume-transform-produce does). Either both become visible or neither.
//!
//! A session starts with `initTransactions`, which fences any earlier instance and aborts
//! the transaction it left open (a kill -9 mid-batch), then reads the cursor back with
//! read_committed semantics, and goes on from there. Every error ends the session: the next
//! one starts over from the cursor after a pause that doubles up to 30 s. Nothing is kept
//! in between, so a crash anywhere (this process, pg_kafka's worker, Postgres, the external
//! cluster) costs a redo of at most one uncommitted batch, never a duplicate a
//! read_committed consumer of the target topic sees. On pg_kafka's side that transaction
//! is pg_kafka's own (EndTxn commits the records, their markers and the cursor in one
//! Postgres transaction).

use std::cell::Cell;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use crate::catalog::{Direction, ShadowSpec};
use crate::log_line;
use crate::metrics::Stats;
use crate::offsets::{committed_offsets, Checkpoints, Delivered, GroupSync};
use crate::options::Options;

/// How long a call to either cluster may take before the session is given up.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest pause between sessions.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// The external transaction's timeout: an abandoned one is aborted by the external
/// coordinator after this long even if no new session fences it.
const TRANSACTION_TIMEOUT_MS: &str = "60000";
/// How often pg_kafka's high watermarks are asked for (lag), and how long each may take.
const WATERMARK_INTERVAL: Duration = Duration::from_secs(1);
const WATERMARK_TIMEOUT: Duration = Duration::from_millis(500);
/// How often consumer groups' offsets are translated to the target.
const GROUP_SYNC_INTERVAL: Duration = Duration::from_secs(5);

/// The target's producer, whose context keeps the offsets its records were given.
type TargetProducer = BaseProducer<Delivered>;

#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    #[error("{step}: {source}")]
    Kafka {
        step: &'static str,
        #[source]
        source: KafkaError,
    },
    #[error("{0} has no topic {1}: create it with as many partitions as the topic it mirrors")]
    NoTopic(&'static str, String),
    #[error("{source_topic} has {source_partitions} partitions in {source_side} and {target_topic} {target_partitions} in {target_side}: forwarding keeps each message's partition, so the counts must be the same")]
    PartitionCounts {
        source_side: &'static str,
        source_topic: String,
        source_partitions: usize,
        target_side: &'static str,
        target_topic: String,
        target_partitions: usize,
    },
    #[error("the reader has no group metadata to commit the cursor under")]
    NoGroupMetadata,
}

/// `step` as the context of an rdkafka error.
fn at(step: &'static str) -> impl FnOnce(KafkaError) -> ForwardError {
    move |source| ForwardError::Kafka { step, source }
}

/// One side of a forwarding: a cluster, how to reach it, and the topic there.
#[derive(Clone, Debug)]
struct End {
    /// "pg_kafka" or "the external cluster", for messages.
    side: &'static str,
    bootstrap: String,
    properties: Vec<(String, String)>,
    topic: String,
}

impl End {
    fn config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        for (name, value) in &self.properties {
            config.set(name, value);
        }
        config.set("bootstrap.servers", &self.bootstrap);
        config
    }
}

pub struct Forwarding {
    spec: ShadowSpec,
    source: End,
    target: End,
    batch_messages: usize,
    batch_wait: Duration,
    stats: Arc<Stats>,
    stop: Arc<AtomicBool>,
    /// When the source's high watermarks were last asked for (this thread only).
    watermarks_asked: Cell<Option<Instant>>,
}

impl Forwarding {
    pub fn new(spec: ShadowSpec, options: &Options, stats: Arc<Stats>, stop: Arc<AtomicBool>) -> Forwarding {
        let pg_kafka = End {
            side: "pg_kafka",
            bootstrap: options.source_bootstrap.clone(),
            properties: options.source_properties.clone(),
            topic: spec.topic.clone(),
        };
        let external = End {
            side: "the external cluster",
            bootstrap: spec.bootstrap_servers.clone(),
            properties: spec.properties.clone(),
            topic: spec.external_topic.clone(),
        };
        let (source, target) = match spec.direction {
            Direction::Export => (pg_kafka, external),
            Direction::Import => (external, pg_kafka),
        };
        Forwarding {
            spec,
            source,
            target,
            batch_messages: options.batch_messages,
            batch_wait: options.batch_wait,
            stats,
            stop,
            watermarks_asked: Cell::new(None),
        }
    }

    /// Sessions, one after another, until stopped.
    pub fn run(self) {
        let mut backoff = Duration::from_secs(1);
        while !self.stopped() {
            let started = Instant::now();
            let result = self.session();
            self.stats.session(&self.spec.topic, false);
            match result {
                Ok(()) => return,
                Err(error) => log_line!("forwarding {} stopped, starting again in {backoff:?}: {error}", self.spec.topic),
            }
            if started.elapsed() > MAX_BACKOFF {
                backoff = Duration::from_secs(1);
            }
            self.pause(backoff);
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    fn pause(&self, length: Duration) {
        let until = Instant::now() + length;
        while !self.stopped() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// One session: fence, read the cursor, forward until stopped or an error; translate
    /// the source's groups every few seconds.
    fn session(&self) -> Result<(), ForwardError> {
        let producer: TargetProducer = self
            .target
            .config()
            .set("transactional.id", &self.spec.transactional_id)
            .set("enable.idempotence", "true")
            .set("transaction.timeout.ms", TRANSACTION_TIMEOUT_MS)
            .set("linger.ms", "5")
            .set("client.id", "pg_kafka_shadow")
            .create_with_context(Delivered::default())
            .map_err(at("creating the target's producer"))?;
        producer.init_transactions(CALL_TIMEOUT).map_err(at("initTransactions on the target"))?;
        let partitions = self.partition_count(&producer)?;
        let cursor = self.read_cursor(partitions)?;
        let source = self.source_reader(&cursor)?;
        let mut checkpoints = self.first_checkpoints(&producer, &cursor)?;
        self.stats.started_at(&self.spec.topic, self.spec.topic_id, &cursor);
        self.stats.session(&self.spec.topic, true);
        log_line!("forwarding {} from {:?}", self.spec.topic, cursor);
        let groups = GroupSync {
            source: self.source.config(),
            source_topic: &self.source.topic,
            target: self.target.config(),
            target_topic: &self.target.topic,
            partitions: partitions as i32,
            own_group: &self.spec.transactional_id,
        };
        let mut synced = Instant::now();
        while !self.stopped() {
            self.forward_one_batch(&source, &producer, &mut checkpoints)?;
            if synced.elapsed() >= GROUP_SYNC_INTERVAL {
                groups.run(&checkpoints, &source, |problem| log_line!("{}: {problem}", self.spec.topic));
                synced = Instant::now();
            }
        }
        Ok(())
    }

    /// The one exact pair a session knows at its start: the cursor, and the target's end
    /// (after `initTransactions`, nothing of an earlier instance is still open there).
    fn first_checkpoints(&self, producer: &TargetProducer, cursor: &BTreeMap<i32, i64>) -> Result<Checkpoints, ForwardError> {
        let mut checkpoints = Checkpoints::default();
        for (&partition, &next) in cursor {
            let (_, end) =
                producer.client().fetch_watermarks(&self.target.topic, partition, CALL_TIMEOUT).map_err(at("the target's end offsets"))?;
            checkpoints.note(partition, next, end);
        }
        Ok(checkpoints)
    }

    /// The partitions both sides have (they must agree).
    fn partition_count(&self, producer: &TargetProducer) -> Result<usize, ForwardError> {
        let target_partitions = partitions_of(producer.client(), &self.target)?;
        let reader: BaseConsumer = self.source.config().create().map_err(at("creating the source's reader"))?;
        let source_partitions = partitions_of(reader.client(), &self.source)?;
        if source_partitions != target_partitions {
            return Err(ForwardError::PartitionCounts {
                source_side: self.source.side,
                source_topic: self.source.topic.clone(),
                source_partitions,
                target_side: self.target.side,
                target_topic: self.target.topic.clone(),
                target_partitions,
            });
        }
        Ok(source_partitions)
    }

    /// The next offset to forward of every partition, as the last committed target
    /// transaction left it (0 where none did: the partition's log start).
    fn read_cursor(&self, partitions: usize) -> Result<BTreeMap<i32, i64>, ForwardError> {
        let mut reader = self.target.config();
        reader.set("group.id", &self.spec.transactional_id).set("enable.auto.commit", "false").set("isolation.level", "read_committed");
        let committed = committed_offsets(&reader, &self.target.topic, partitions as i32, CALL_TIMEOUT)
            .map_err(at("reading the cursor from the target"))?;
        Ok((0..partitions as i32).map(|partition| (partition, committed.get(&partition).copied().unwrap_or(0))).collect())
    }

    /// A reader of every partition of the source topic from the cursor on, committed
    /// records only. It carries the shadow's group id, which `sendOffsetsToTransaction`
    /// names; it never joins the group nor commits on the source.
    fn source_reader(&self, cursor: &BTreeMap<i32, i64>) -> Result<BaseConsumer, ForwardError> {
        let reader: BaseConsumer = self
            .source
            .config()
            .set("group.id", &self.spec.transactional_id)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("isolation.level", "read_committed")
            // A cursor below the log start (retention removed what was never forwarded):
            // start from what is there; docs/shadow.md says to keep retention above outages.
            .set("auto.offset.reset", "earliest")
            .set("enable.partition.eof", "false")
            // Fetch ahead without pause: librdkafka fetches again only below
            // queued.min.messages (100,000 by default), so the next fetch was sent when a
            // large one was nearly used up, and forwarding waited for it (measured: a third
            // of the time idle, forwarding at a third of produce's rate).
            .set("queued.min.messages", "1000000")
            .set("queued.max.messages.kbytes", "262144")
            .set("max.partition.fetch.bytes", "4194304")
            .set("fetch.max.bytes", "67108864")
            .set("client.id", "pg_kafka_shadow")
            .create()
            .map_err(at("creating the source's reader"))?;
        let mut assignment = TopicPartitionList::new();
        for (&partition, &next) in cursor {
            assignment
                .add_partition_offset(&self.source.topic, partition, Offset::Offset(next))
                .map_err(at("assigning the source's partitions"))?;
        }
        reader.assign(&assignment).map_err(at("assigning the source's partitions"))?;
        Ok(reader)
    }

    /// Reads up to a batch's worth from the source and commits it to the target in one
    /// transaction with the cursor past it. Returns with nothing done when nothing came.
    fn forward_one_batch(
        &self,
        source: &BaseConsumer,
        producer: &TargetProducer,
        checkpoints: &mut Checkpoints,
    ) -> Result<(), ForwardError> {
        let Some(first) = self.next_message(source, Duration::from_millis(200)) else {
            self.note_high_watermarks(source);
            return Ok(());
        };
        producer.begin_transaction().map_err(at("beginning a transaction on the target"))?;
        let mut cursor: BTreeMap<i32, i64> = BTreeMap::new();
        let mut count = 0u64;
        let deadline = Instant::now() + self.batch_wait;
        let mut next = Some(first);
        while let Some(message) = next {
            self.send(producer, &message)?;
            cursor.insert(message.partition(), message.offset() + 1);
            count += 1;
            if count as usize >= self.batch_messages {
                break;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            next = self.next_message(source, left);
        }
        let mut offsets = TopicPartitionList::new();
        for (&partition, &next_offset) in &cursor {
            offsets.add_partition_offset(&self.target.topic, partition, Offset::Offset(next_offset)).map_err(at("the cursor's offsets"))?;
        }
        let group = source.group_metadata().ok_or(ForwardError::NoGroupMetadata)?;
        drain(producer)?;
        producer
            .send_offsets_to_transaction(&offsets, &group, CALL_TIMEOUT)
            .map_err(at("adding the cursor to the target's transaction"))?;
        producer.commit_transaction(CALL_TIMEOUT).map_err(at("committing the target's transaction"))?;
        let delivered = producer.context().take();
        for (&partition, &next) in &cursor {
            if let Some(&target_next) = delivered.get(&partition) {
                checkpoints.note(partition, next, target_next);
            }
        }
        self.stats.committed(&self.spec.topic, self.spec.topic_id, count, &cursor);
        self.note_high_watermarks(source);
        Ok(())
    }

    /// The next record from the source within `wait`; transient read errors (a restarting
    /// worker, a failover) are librdkafka's to retry and are logged, not fatal.
    fn next_message<'a>(&self, source: &'a BaseConsumer, wait: Duration) -> Option<BorrowedMessage<'a>> {
        let deadline = Instant::now() + wait;
        loop {
            match source.poll(deadline.saturating_duration_since(Instant::now())) {
                Some(Ok(message)) => return Some(message),
                Some(Err(error)) => log_line!("reading {} from {}: {error} (retrying)", self.source.topic, self.source.side),
                None => return None,
            }
            if Instant::now() >= deadline || self.stopped() {
                return None;
            }
        }
    }

    /// Produces one record to the same partition of the target topic, key, value,
    /// headers and timestamp as they were; waits for room when the producer's queue is full.
    fn send(&self, producer: &TargetProducer, message: &BorrowedMessage<'_>) -> Result<(), ForwardError> {
        let headers = message.headers().map(|stored| {
            stored.iter().fold(OwnedHeaders::new_with_capacity(stored.count()), |all, header| {
                all.insert(Header { key: header.key, value: header.value })
            })
        });
        let mut record: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(&self.target.topic).partition(message.partition());
        if let Some(key) = message.key() {
            record = record.key(key);
        }
        if let Some(value) = message.payload() {
            record = record.payload(value);
        }
        if let Some(headers) = headers {
            record = record.headers(headers);
        }
        if let Some(timestamp) = message.timestamp().to_millis() {
            record = record.timestamp(timestamp);
        }
        loop {
            match producer.send(record) {
                // Delivery reports wait for drain() (or a full queue): polling per record
                // costs a queue operation each.
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned)) => {
                    record = returned;
                    producer.poll(Duration::from_millis(10));
                }
                Err((error, _)) => return Err(ForwardError::Kafka { step: "producing to the target topic", source: error }),
            }
        }
    }

    /// The source's high watermarks, for lag: asked for at most once a second.
    fn note_high_watermarks(&self, source: &BaseConsumer) {
        if self.watermarks_asked.get().is_some_and(|at| at.elapsed() < WATERMARK_INTERVAL) {
            return;
        }
        self.watermarks_asked.set(Some(Instant::now()));
        let Ok(assignment) = source.assignment() else { return };
        for element in assignment.elements() {
            if let Ok((_, high)) = source.fetch_watermarks(&self.source.topic, element.partition(), WATERMARK_TIMEOUT) {
                self.stats.high_watermark(&self.spec.topic, element.partition(), high);
            }
        }
    }
}

/// How many partitions `end`'s topic has, as its cluster says.
fn partitions_of<C: rdkafka::client::ClientContext>(client: &rdkafka::client::Client<C>, end: &End) -> Result<usize, ForwardError> {
    let metadata = client.fetch_metadata(Some(&end.topic), CALL_TIMEOUT).map_err(at("metadata of a forwarded topic"))?;
    match metadata.topics().first() {
        Some(topic) if topic.error().is_none() && !topic.partitions().is_empty() => Ok(topic.partitions().len()),
        _ => Err(ForwardError::NoTopic(end.side, end.topic.clone())),
    }
}

/// Waits until the target acknowledged every record sent, serving delivery reports as they
/// come (their offsets make the checkpoints). rust-rdkafka's flush, which
/// `commit_transaction` runs first, polls in slices of 100 ms that each last their whole
/// length: a pause per transaction that cut forwarding to a quarter of its rate.
fn drain(producer: &TargetProducer) -> Result<(), ForwardError> {
    let deadline = Instant::now() + CALL_TIMEOUT;
    while producer.in_flight_count() > 0 {
        if Instant::now() >= deadline {
            return Err(ForwardError::Kafka {
                step: "waiting for the target's acknowledgements",
                source: KafkaError::Flush(RDKafkaErrorCode::OperationTimedOut),
            });
        }
        producer.poll(Duration::from_millis(1));
    }
    Ok(())
}
