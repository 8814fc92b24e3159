//! Storage, in Kafka terms.
//!
//! [`Storage`] is what handlers need from the database. The Postgres engine (SPI and COPY)
//! lives in the glue crate, the only code that links pgrx; `memory::MemoryStorage` (feature
//! `testing`) stands in for it in tests that run without Postgres. Handlers never hold a
//! `Storage`: they reach it through [`bridge::StorageClient`], which runs a closure on the
//! thread that owns the storage (the worker's main thread, in production) and awaits its
//! result.
//!
//! - [`bridge`]: jobs to the storage thread, answered after their commit.
//! - [`topics`]: the one cache of topics, with its invalidation.
//! - [`watermarks`]: partition bounds in memory, for Fetch.
//! - [`headers_json`]: stored record headers as SQL shows and takes them (JSON).
//! - [`copy_binary`]: rows in COPY's binary format, as the Postgres engine inserts them.
//! - [`reads`]: one Fetch's reads as a plan, run here or in a reader process.
//! - [`readers`]: the reader processes' connections, for reads beside the group commit.
//! - [`sql_appends`]: what SQL sessions produced, for the writer's counters and Fetch.
//! - [`offsets_topic`]: `__consumer_offsets`, read-only, from the committed offsets.
//! - [`batches`]: the batch layout, a row per produced record batch.

pub mod batches;
pub mod bridge;
pub mod copy_binary;
pub mod headers_json;
#[cfg(any(test, feature = "testing"))]
pub mod memory;
pub mod offsets_topic;
pub mod readers;
pub mod reads;
pub mod sql_appends;
pub mod topics;
pub mod transactions;
pub mod watermarks;

use crate::security::acl::{AclBinding, AclFilter, Principal};
pub use batches::{BatchRow, StorageLayout};
use bytes::Bytes;
use uuid::Uuid;

/// A topic as clients see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Topic {
    /// Internal id: `kafka.topics.id`, the key `kafka.messages` rows refer to.
    pub id: i32,
    pub name: String,
    /// The Kafka topic id (Metadata v10+).
    pub uuid: Uuid,
    pub partitions: i32,
    /// What its configs make Produce, Fetch and the cleaner do (`max.message.bytes`, ...).
    pub settings: TopicSettings,
    /// How its messages are stored (`kafka.topics.storage`).
    pub layout: StorageLayout,
}

pub use crate::config::topic::{TopicSettings, DEFAULT_MAX_MESSAGE_BYTES};

/// An offset a consumer group commits, for a topic already resolved to its id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OffsetCommit {
    pub topic_id: i32,
    pub partition: i32,
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: Option<String>,
}

/// An offset a consumer group has committed, as OffsetFetch returns it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommittedOffset {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: Option<String>,
}

/// (producer id, topic id, partition): whose sequence numbers a [`ProducerState`] tracks.
pub type ProducerKey = (i64, i32, i32);

/// An idempotent producer's state on one partition: its epoch and its last batches.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProducerState {
    pub epoch: i16,
    /// The most recent batches appended, oldest first (at most [`RECENT_BATCHES`]).
    pub batches: std::collections::VecDeque<SequencedBatch>,
}

/// An idempotent producer as DescribeProducers shows it on one partition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ActiveProducer {
    /// The partition: (topic id, partition).
    pub partition: (i32, i32),
    pub producer_id: i64,
    pub epoch: i16,
    /// The last sequence number of its latest batch on the partition.
    pub last_sequence: i32,
    /// When the partition last stored a batch of it, in Unix milliseconds.
    pub last_timestamp_ms: i64,
}

/// At most this many producers per DescribeProducers request are read (a partition keeps
/// the state of every producer that ever wrote to it).
pub const DESCRIBED_PRODUCERS_LIMIT: usize = 10_000;

/// The database as Kafka's one log directory (DescribeLogDirs).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogDirUsage {
    /// The data directory of the cluster.
    pub path: String,
    /// `kafka.messages` with its indexes and TOAST, in bytes.
    pub table_bytes: i64,
    /// Rows `kafka.messages` holds, as the catalog estimates them (or counts them, bounded,
    /// before the first ANALYZE).
    pub table_rows: i64,
    /// Size and free space of the volume the data directory is on; -1 when unknown.
    pub volume_bytes: i64,
    pub usable_bytes: i64,
}

impl LogDirUsage {
    /// A partition's share of the table's bytes, by its share of the rows.
    pub fn estimate_bytes(&self, rows: i64) -> i64 {
        if rows <= 0 || self.table_rows <= 0 {
            return 0;
        }
        let per_row = self.table_bytes as f64 / self.table_rows as f64;
        (per_row * rows as f64).round() as i64
    }
}

/// How many recent batches per producer and partition are remembered for deduplication
/// (Kafka's `max.in.flight.requests.per.connection` limit for idempotence).
pub const RECENT_BATCHES: usize = 5;

/// One appended batch of an idempotent producer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SequencedBatch {
    pub first_sequence: i32,
    pub last_sequence: i32,
    pub base_offset: i64,
}

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum StorageError {
    #[error("topic \"{0}\" already exists")]
    TopicExists(String),
    #[error("invalid topic name \"{0}\"")]
    InvalidTopicName(String),
    #[error("timestamp {0} ms is outside the range Postgres can store")]
    TimestampOutOfRange(i64),
    /// A database error, with Postgres's SQLSTATE when it came from an ERROR.
    #[error("database error{}: {message}", sqlstate.as_ref().map(|code| format!(" (SQLSTATE {code})")).unwrap_or_default())]
    Database { sqlstate: Option<String>, message: String },
    #[error("a stored record batch cannot be read: {0}")]
    CorruptBatch(String),
}

/// Rows for `kafka.messages`, column by column, offsets already assigned: the shape of
/// the group-commit writer's single multi-row insert.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MessageRows {
    pub topic_ids: Vec<i32>,
    pub partitions: Vec<i32>,
    pub offsets: Vec<i64>,
    /// Milliseconds since the Unix epoch.
    pub timestamps_ms: Vec<i64>,
    pub keys: Vec<Option<Bytes>>,
    pub values: Vec<Option<Bytes>>,
    pub headers: Vec<Option<Bytes>>,
    /// Per row, its transaction (`kafka.messages`' producer_id, producer_epoch and
    /// control columns); empty when no row of the write has one.
    pub txns: Vec<Option<RowTxn>>,
}

/// A row-layout message's place in a transaction: written by a transactional producer
/// (held from read_committed consumers until its transaction ends), or, with `control`,
/// the transaction's end marker (its key and value those of Kafka's control record).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RowTxn {
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub control: bool,
}

impl MessageRows {
    /// Row `i`'s transaction.
    pub fn txn(&self, i: usize) -> Option<RowTxn> {
        self.txns.get(i).copied().flatten()
    }

    /// Gives the last row pushed its transaction (`txns` stays empty while no row has one).
    pub fn set_last_txn(&mut self, txn: Option<RowTxn>) {
        if txn.is_some() || !self.txns.is_empty() {
            self.txns.resize(self.len().saturating_sub(1), None);
            self.txns.push(txn);
        }
    }

    /// Appends row `i` of `other`.
    pub fn push_from(&mut self, other: &MessageRows, i: usize) {
        self.topic_ids.push(other.topic_ids[i]);
        self.partitions.push(other.partitions[i]);
        self.offsets.push(other.offsets[i]);
        self.timestamps_ms.push(other.timestamps_ms[i]);
        self.keys.push(other.keys[i].clone());
        self.values.push(other.values[i].clone());
        self.headers.push(other.headers[i].clone());
        self.set_last_txn(other.txn(i));
    }

    pub fn len(&self) -> usize {
        self.offsets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.offsets.is_empty()
    }

    pub fn clear(&mut self) {
        *self = MessageRows::default();
    }
}

/// A stored message, as Fetch reads it back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredRecord {
    pub offset: i64,
    pub timestamp_ms: i64,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Option<Bytes>,
    /// Its transaction, if a transactional producer wrote it.
    pub txn: Option<RowTxn>,
}

/// Which messages a read returns: offsets in `from..below`, in order, while their
/// [`record_bytes`] add up to at most `max_bytes`, except that with `at_least_one` the first
/// message is returned whatever its size (so a consumer can get past a large message).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadLimit {
    pub from: i64,
    pub below: i64,
    pub max_bytes: usize,
    pub at_least_one: bool,
}

impl ReadLimit {
    /// Whether a message may join `count` messages already taken, making `bytes` in all.
    pub fn admits(&self, count: usize, bytes: usize) -> bool {
        bytes <= self.max_bytes || (count == 0 && self.at_least_one)
    }

    /// The leading `records` (in offset order) this limit admits.
    pub fn take(&self, records: impl IntoIterator<Item = StoredRecord>) -> Vec<StoredRecord> {
        self.take_by(records, record_bytes)
    }

    /// The leading `items` (in offset order) this limit admits, each costing `size` bytes
    /// (records, or whole stored batches).
    pub fn take_by<T>(&self, items: impl IntoIterator<Item = T>, size: impl Fn(&T) -> usize) -> Vec<T> {
        let mut taken = Vec::new();
        let mut bytes = 0;
        for item in items {
            bytes += size(&item);
            if !self.admits(taken.len(), bytes) {
                break;
            }
            taken.push(item);
        }
        taken
    }
}

/// What a message costs against Fetch byte limits: its payload plus the per-record framing.
pub fn record_bytes(record: &StoredRecord) -> usize {
    payload_bytes(record) + RECORD_OVERHEAD_BYTES
}

/// A message's payload: key, value and headers (what retention.bytes, segment.bytes and
/// compaction's dirty ratio count).
pub fn payload_bytes(record: &StoredRecord) -> usize {
    let len = |b: &Option<Bytes>| b.as_ref().map_or(0, Bytes::len);
    len(&record.key) + len(&record.value) + len(&record.headers)
}

/// Where compaction stands on a partition (`kafka.partition_cleaning`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PartitionCleaning {
    /// Below this offset the partition is compacted: the first dirty offset.
    pub cleaned_to: i64,
    /// Payload bytes the compacted part kept after the last pass (the dirty ratio's base).
    pub clean_bytes: i64,
    /// `(offset, ms)`: a pass reached every offset below `offset` at `ms`; oldest first,
    /// a few entries (what a tombstone's `delete.retention.ms` counts from).
    pub reached: Vec<(i64, i64)>,
    pub last_pass_ms: i64,
    pub last_removed: i64,
    pub removed_total: i64,
    /// A round of cleaning in progress (0: none): its dirty part ends here, and its walk
    /// from the log start reached `walked_to` (a pass stops at its time budget; the next
    /// one goes on from there).
    pub round_end: i64,
    pub walked_to: i64,
}

/// An upper bound for a record's varint framing inside a batch (length, attributes,
/// timestamp and offset deltas, key and value lengths).
pub const RECORD_OVERHEAD_BYTES: usize = 21;

/// The database, as the broker uses it. Implementations run on one thread only.
pub trait Storage {
    /// Every topic, sorted by name.
    fn all_topics(&mut self) -> Result<Vec<Topic>, StorageError>;
    /// The topic called `name`, if it exists.
    fn topic(&mut self, name: &str) -> Result<Option<Topic>, StorageError>;
    /// Creates a topic stored in `layout`; fails with [`StorageError::TopicExists`] if the
    /// name is taken.
    fn create_topic_as(&mut self, name: &str, partitions: i32, layout: StorageLayout) -> Result<Topic, StorageError>;
    /// Creates a topic in the row layout (tests, mostly).
    fn create_topic(&mut self, name: &str, partitions: i32) -> Result<Topic, StorageError> {
        self.create_topic_as(name, partitions, StorageLayout::Rows)
    }
    /// The offset after the last message of a partition (0 when empty), read from the table.
    /// The writer calls this once per partition and counts in memory afterwards.
    fn next_offset(&mut self, topic_id: i32, partition: i32) -> Result<i64, StorageError>;
    /// Takes the append lock of a partition for the rest of the caller's transaction, if
    /// nobody else holds it; never waits. Whoever holds it decides the partition's next
    /// offsets: the group-commit writer for one commit, or a SQL session that called
    /// `kafka.produce()` until its transaction ends.
    fn try_lock_partition(&mut self, topic_id: i32, partition: i32) -> Result<bool, StorageError>;
    /// Makes what follows in this transaction see every commit made before now: called
    /// once the append locks are taken, so that offsets read under them see the rows of
    /// whoever held a lock before (a SQL session that committed after this transaction's
    /// snapshot was taken, but before its lock was granted).
    fn see_latest_commits(&mut self) -> Result<(), StorageError> {
        Ok(())
    }
    /// Inserts the rows, all in the caller's transaction.
    fn append(&mut self, rows: &MessageRows) -> Result<(), StorageError>;
    /// Inserts record batches (topics in the batch layout), in the caller's transaction.
    fn append_batches(&mut self, batches: &[BatchRow]) -> Result<(), StorageError>;
    /// Messages in offset order within `limit` (one index range scan).
    fn read(&mut self, topic_id: i32, partition: i32, limit: ReadLimit) -> Result<Vec<StoredRecord>, StorageError>;
    /// Stored batches (bytes as stored) whose last offset is in `limit.from..limit.below`,
    /// in offset order, while their sizes add up to at most `limit.max_bytes` (the first
    /// whatever its size with `at_least_one`).
    fn read_batches(&mut self, topic_id: i32, partition: i32, limit: ReadLimit) -> Result<Vec<Bytes>, StorageError>;
    /// The first offset still stored, or `None` when the partition is empty.
    fn first_offset(&mut self, topic_id: i32, partition: i32) -> Result<Option<i64>, StorageError>;
    /// The first message whose timestamp is at or after `timestamp_ms`: (offset, timestamp).
    fn offset_for_timestamp(&mut self, topic_id: i32, partition: i32, timestamp_ms: i64) -> Result<Option<(i64, i64)>, StorageError>;
    /// The message with the largest timestamp (the earliest such on ties): (offset, timestamp).
    fn max_timestamp(&mut self, topic_id: i32, partition: i32) -> Result<Option<(i64, i64)>, StorageError>;

    /// Deletes a topic, its messages, configs, committed offsets and producer state.
    fn delete_topic(&mut self, topic_id: i32) -> Result<(), StorageError>;
    /// Sets a topic's partition count (CreatePartitions only ever raises it).
    fn set_partition_count(&mut self, topic_id: i32, partitions: i32) -> Result<(), StorageError>;
    /// The configs set on a topic, sorted by name.
    fn topic_configs(&mut self, topic_id: i32) -> Result<Vec<(String, String)>, StorageError>;
    /// Replaces every config set on a topic.
    fn replace_topic_configs(&mut self, topic_id: i32, configs: &[(String, String)]) -> Result<(), StorageError>;
    /// Moves a partition's log start offset up to `offset` (never down) and deletes the
    /// messages below it.
    fn delete_records_before(&mut self, topic_id: i32, partition: i32, offset: i64) -> Result<(), StorageError>;

    /// Stores a group's committed offsets (one per partition), replacing earlier ones.
    fn commit_offsets(&mut self, group: &str, offsets: &[OffsetCommit]) -> Result<(), StorageError>;
    /// Every offset a group has committed, sorted by topic and partition.
    fn committed_offsets(&mut self, group: &str) -> Result<Vec<CommittedOffset>, StorageError>;
    /// The groups that have committed offsets, sorted.
    fn offset_groups(&mut self) -> Result<Vec<String>, StorageError>;
    /// Deletes the committed offsets of `groups`; returns the groups that had any.
    fn delete_group_offsets(&mut self, groups: &[String]) -> Result<Vec<String>, StorageError>;
    /// Deletes a group's committed offsets of the given `(topic id, partition)`s.
    fn delete_partition_offsets(&mut self, group: &str, partitions: &[(i32, i32)]) -> Result<(), StorageError>;
    /// Committed offsets whose commit numbers are in `from..below`, by number, at most
    /// `limit`: the records of `__consumer_offsets` ([`offsets_topic`]).
    fn offset_commit_records(
        &mut self,
        from: i64,
        below: i64,
        limit: usize,
    ) -> Result<Vec<offsets_topic::OffsetCommitRecord>, StorageError>;
    /// The oldest commit number still stored (None: none is), and the next number to be
    /// given (never decreasing).
    fn offset_commit_range(&mut self) -> Result<(Option<i64>, i64), StorageError>;

    /// Where each partition with `retention.ms` or `retention.bytes` set should start now
    /// (`now_ms` is the current Kafka time): `(topic id, partition, offset)` for the
    /// partitions that have messages to delete.
    fn retention_starts(&mut self, now_ms: i64) -> Result<Vec<(i32, i32, i64)>, StorageError>;

    /// The first offset of the newest messages that hold at most `bytes` payload bytes
    /// together, counting only those at or after `from` (`None`: all of those do): where
    /// retention.bytes starts a partition and compaction's head starts. Reads at most the
    /// messages after `from`.
    fn first_offset_within_bytes(&mut self, topic_id: i32, partition: i32, bytes: i64, from: i64) -> Result<Option<i64>, StorageError>;
    /// A compacted partition's cleaner state (`None` before its first pass).
    fn cleaning_state(&mut self, topic_id: i32, partition: i32) -> Result<Option<PartitionCleaning>, StorageError>;
    /// Stores a partition's cleaner state, in the caller's transaction.
    fn save_cleaning_state(&mut self, topic_id: i32, partition: i32, state: &PartitionCleaning) -> Result<(), StorageError>;
    /// Deletes the messages at `offsets` of a row-layout partition (compaction).
    fn delete_messages(&mut self, topic_id: i32, partition: i32, offsets: &[i64]) -> Result<(), StorageError>;
    /// Replaces batch-layout batches, each named by its last offset, with what compaction
    /// left of them, or deletes them (`None`).
    fn replace_batches(&mut self, topic_id: i32, partition: i32, changes: &[(i64, Option<BatchRow>)]) -> Result<(), StorageError>;

    /// A producer id never handed out before, even across restarts.
    fn next_producer_id(&mut self) -> Result<i64, StorageError>;
    /// The stored state of an idempotent producer on a partition.
    fn producer_state(&mut self, key: ProducerKey) -> Result<Option<ProducerState>, StorageError>;
    /// Stores producer states, in the caller's transaction (the writer's, with the rows
    /// they describe).
    fn save_producer_states(&mut self, states: &[(ProducerKey, ProducerState)]) -> Result<(), StorageError>;
    /// The idempotent producers that wrote to `partitions` (`(topic id, partition)`), at
    /// most [`DESCRIBED_PRODUCERS_LIMIT`], sorted by partition and producer id.
    fn active_producers(&mut self, partitions: &[(i32, i32)]) -> Result<Vec<ActiveProducer>, StorageError>;
    /// Every transactional id's record, sorted by id.
    fn transactions(&mut self) -> Result<Vec<transactions::TxnRecord>, StorageError>;
    /// Stores a transactional id's record (replacing the one stored), in the caller's
    /// transaction, which commits as `durability` says.
    fn save_transaction(&mut self, record: &transactions::TxnRecord, durability: transactions::Durability) -> Result<(), StorageError>;
    /// What compaction must know of a partition's transactions: the first offset of its
    /// oldest open one, and the aborted ranges that reach into `from..below`.
    fn partition_transactions(
        &mut self,
        key: (i32, i32),
        from: i64,
        below: i64,
    ) -> Result<transactions::PartitionTransactions, StorageError>;
    /// Forgets a transactional id that expired as `record` (no longer stored if a newer
    /// record of the id replaced it meanwhile).
    fn expire_transaction(&mut self, record: &transactions::TxnRecord) -> Result<(), StorageError>;
    /// The log's transaction state: the open transactions on each partition and the
    /// aborted ranges.
    fn txn_log_state(&mut self) -> Result<(Vec<transactions::OpenTxn>, Vec<transactions::AbortedTxn>), StorageError>;
    /// Stores what a write changed in the log's transaction state, in the caller's
    /// transaction (the writer's, with the records and markers it describes).
    fn save_txn_log(&mut self, changes: &transactions::TxnLogChanges) -> Result<(), StorageError>;
    /// What the log directory holds and where it is.
    fn log_dir_usage(&mut self) -> Result<LogDirUsage, StorageError>;
    /// Stored bytes per record of a batch-layout partition, from a bounded sample of its
    /// newest batches; `None` when it has none.
    fn batch_bytes_per_record(&mut self, topic_id: i32, partition: i32) -> Result<Option<f64>, StorageError>;

    /// What authentication needs to know of role `name`; `None` if there is no such role.
    fn login_role(&mut self, name: &str) -> Result<Option<LoginRole>, StorageError>;
    /// Superuser flag and memberships of each named role that still exists (principals are
    /// refreshed with the ACLs, so `GRANT`/`REVOKE` of a role reach open connections).
    fn principals(&mut self, names: &[String]) -> Result<Vec<Principal>, StorageError>;
    /// Every stored ACL.
    fn acls(&mut self) -> Result<Vec<AclBinding>, StorageError>;
    /// Stores ACLs (one already stored is not stored twice).
    fn create_acls(&mut self, acls: &[AclBinding]) -> Result<(), StorageError>;
    /// Deletes the ACLs each filter matches; returns them, per filter.
    fn delete_acls(&mut self, filters: &[AclFilter]) -> Result<Vec<Vec<AclBinding>>, StorageError>;

    /// The node whose Postgres is the primary, as it last said (`kafka.cluster_leader`,
    /// replayed on standbys); `None` before any did.
    fn cluster_leader(&mut self) -> Result<Option<i32>, StorageError>;
    /// Records that `node_id` leads now (the primary's worker, when it starts).
    fn claim_leadership(&mut self, node_id: i32) -> Result<(), StorageError>;
    /// The `application_name`s of the standbys in sync now (`pg_stat_replication.sync_state`
    /// sync or quorum), or `None` when commits do not wait for standbys (writer/replicas.rs).
    fn in_sync_standbys(&mut self) -> Result<Option<Vec<String>>, StorageError>;
    /// The copies a commit that ended at WAL position `commit_end` has now: this node's,
    /// and one per standby that has it as `synchronous_commit` asks
    /// (writer/standby_acks.rs).
    fn copies_of_commit(&mut self, commit_end: u64) -> Result<i64, StorageError>;
    /// The standbys (node ids) the primary last recorded in sync (`kafka.cluster_in_sync`,
    /// replayed on standbys); none in a database whose extension predates 0.11.0.
    fn recorded_in_sync(&mut self) -> Result<Vec<i32>, StorageError>;
    /// Records the standbys in sync now (the primary, when they changed); this
    /// transaction commits without waiting for them.
    fn record_in_sync(&mut self, node_ids: &[i32]) -> Result<(), StorageError>;
    /// Makes this transaction's commit wait for no standby (`synchronous_commit = local`).
    fn commit_locally(&mut self) -> Result<(), StorageError>;
}

/// A role as authentication sees it: `pg_authid`'s columns, and its memberships.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoginRole {
    /// `rolpassword`: a `SCRAM-SHA-256$...` or `md5...` verifier, or none.
    pub password: Option<String>,
    pub can_login: bool,
    /// `rolvaliduntil` as Unix milliseconds; `None` for no expiry.
    pub valid_until_ms: Option<i64>,
    /// The role as a principal: superuser flag and every role it is a member of.
    pub principal: Principal,
}

/// Rows of one partition at `offsets`, with no key, value or headers and timestamp 0:
/// what tests write behind the writer's back.
#[cfg(any(test, feature = "testing"))]
pub fn empty_rows(topic_id: i32, partition: i32, offsets: &[i64]) -> MessageRows {
    let n = offsets.len();
    MessageRows {
        topic_ids: vec![topic_id; n],
        partitions: vec![partition; n],
        offsets: offsets.to_vec(),
        timestamps_ms: vec![0; n],
        keys: vec![None; n],
        values: vec![None; n],
        headers: vec![None; n],
        txns: Vec::new(),
    }
}

/// The retention scenario both engines are tested with: topic `topic_id`, partition 0 has
/// ten 10-byte messages a minute apart (the newest at `now_ms`), partition 1 ten at `now_ms`.
#[cfg(any(test, feature = "testing"))]
pub fn retention_scenario_rows(topic_id: i32, now_ms: i64) -> MessageRows {
    let n = 10;
    MessageRows {
        topic_ids: vec![topic_id; 2 * n],
        partitions: [vec![0; n], vec![1; n]].concat(),
        offsets: [(0..n as i64).collect::<Vec<_>>(), (0..n as i64).collect()].concat(),
        timestamps_ms: [(0..n as i64).map(|i| now_ms - (n as i64 - 1 - i) * 60_000).collect::<Vec<_>>(), vec![now_ms; n]].concat(),
        keys: vec![None; 2 * n],
        values: vec![Some(Bytes::from_static(b"0123456789")); 2 * n],
        headers: vec![None; 2 * n],
        txns: Vec::new(),
    }
}

/// The current time as Kafka counts it: milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// A Postgres timestamptz value (µs since 2000-01-01) as Kafka milliseconds since the Unix
/// epoch, rounding towards the past; infinities saturate.
pub fn kafka_timestamp_ms(us: i64) -> i64 {
    us.div_euclid(1000).saturating_add(POSTGRES_EPOCH_MS)
}

/// Milliseconds between the Unix epoch and Postgres's epoch (2000-01-01).
const POSTGRES_EPOCH_MS: i64 = 946_684_800_000;
/// Postgres's timestamptz range, in microseconds since its epoch (4714 BC to 294276 AD).
const MIN_TIMESTAMP_US: i64 = -211_813_488_000_000_000;
const END_TIMESTAMP_US: i64 = 9_223_371_331_200_000_000;

/// A Kafka timestamp (ms since the Unix epoch) as a Postgres timestamptz value
/// (µs since 2000-01-01), or `None` if Postgres cannot store it. Exact both ways.
pub fn postgres_timestamp_us(ms: i64) -> Option<i64> {
    ms.checked_sub(POSTGRES_EPOCH_MS).and_then(|ms| ms.checked_mul(1000)).filter(|us| (MIN_TIMESTAMP_US..END_TIMESTAMP_US).contains(us))
}

/// Whether Postgres can store `text` in a `text` column: it cannot hold NUL bytes, which
/// the Kafka protocol allows in strings. Such strings get a Kafka error, never a datum.
pub fn is_storable_text(text: &str) -> bool {
    !text.contains('\0')
}

/// Kafka's topic name rule: 1-249 characters of `[a-zA-Z0-9._-]`, and not `.` or `..`.
pub fn is_valid_topic_name(name: &str) -> bool {
    (1..=249).contains(&name.len())
        && name != "."
        && name != ".."
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Kafka's internal topics: never created by a client (auto-creation or CreateTopics).
pub const INTERNAL_TOPICS: [&str; 3] = ["__consumer_offsets", "__transaction_state", "__share_group_state"];

pub fn is_internal_topic(name: &str) -> bool {
    INTERNAL_TOPICS.contains(&name)
}

#[cfg(test)]
mod tests {
    use super::is_valid_topic_name;

    #[test]
    fn kafka_timestamps_map_exactly_into_postgres_range() {
        use super::postgres_timestamp_us;
        assert_eq!(postgres_timestamp_us(946_684_800_000), Some(0));
        assert_eq!(postgres_timestamp_us(-1), Some(-946_684_800_001_000));
        assert_eq!(postgres_timestamp_us(i64::MAX), None);
        assert_eq!(postgres_timestamp_us(i64::MIN), None);
    }

    #[test]
    fn topic_names_follow_kafka_rules() {
        for ok in ["a", "demo", "my.topic_1-x", &"x".repeat(249)] {
            assert!(is_valid_topic_name(ok), "{ok}");
        }
        for bad in ["", ".", "..", "a b", "é", "a/b", &"x".repeat(250)] {
            assert!(!is_valid_topic_name(bad), "{bad}");
        }
    }
}
