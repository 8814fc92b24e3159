//! Storage, in Kafka terms.
//!
//! [`Storage`] is what handlers need from the database. [`postgres::PgStorage`] is the only
//! code in the crate that calls SPI; [`memory::MemoryStorage`] stands in for it in tests that
//! run without Postgres. Handlers never hold a `Storage`: they reach it through
//! [`bridge::StorageClient`], which runs a closure on the thread that owns the storage (the
//! worker's main thread, in production) and awaits its result.

pub mod bridge;
pub mod copy_in;
pub mod memory;
pub mod postgres;
pub mod watermarks;

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
}

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum StorageError {
    #[error("topic \"{0}\" already exists")]
    TopicExists(String),
    #[error("invalid topic name \"{0}\"")]
    InvalidTopicName(String),
    #[error("timestamp {0} ms is outside the range Postgres can store")]
    TimestampOutOfRange(i64),
    #[error("database error: {0}")]
    Database(String),
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
}

impl MessageRows {
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
}

/// What a message costs against Fetch byte limits: its payload plus the per-record framing.
pub fn record_bytes(record: &StoredRecord) -> usize {
    let len = |b: &Option<Bytes>| b.as_ref().map_or(0, Bytes::len);
    len(&record.key) + len(&record.value) + len(&record.headers) + RECORD_OVERHEAD_BYTES
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
    /// Creates a topic; fails with [`StorageError::TopicExists`] if the name is taken.
    fn create_topic(&mut self, name: &str, partitions: i32) -> Result<Topic, StorageError>;
    /// The offset after the last message of a partition (0 when empty), read from the table.
    /// The writer calls this once per partition and counts in memory afterwards.
    fn next_offset(&mut self, topic_id: i32, partition: i32) -> Result<i64, StorageError>;
    /// Inserts the rows, all in the caller's transaction.
    fn append(&mut self, rows: &MessageRows) -> Result<(), StorageError>;
    /// Messages in offset order within `limit` (one index range scan).
    fn read(&mut self, topic_id: i32, partition: i32, limit: ReadLimit) -> Result<Vec<StoredRecord>, StorageError>;
    /// The first offset still stored, or `None` when the partition is empty.
    fn first_offset(&mut self, topic_id: i32, partition: i32) -> Result<Option<i64>, StorageError>;
    /// The first message whose timestamp is at or after `timestamp_ms`: (offset, timestamp).
    fn offset_for_timestamp(&mut self, topic_id: i32, partition: i32, timestamp_ms: i64) -> Result<Option<(i64, i64)>, StorageError>;
    /// The message with the largest timestamp (the earliest such on ties): (offset, timestamp).
    fn max_timestamp(&mut self, topic_id: i32, partition: i32) -> Result<Option<(i64, i64)>, StorageError>;
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
    ms.checked_sub(POSTGRES_EPOCH_MS)
        .and_then(|ms| ms.checked_mul(1000))
        .filter(|us| (MIN_TIMESTAMP_US..END_TIMESTAMP_US).contains(us))
}

/// Kafka's topic name rule: 1-249 characters of `[a-zA-Z0-9._-]`, and not `.` or `..`.
pub fn is_valid_topic_name(name: &str) -> bool {
    (1..=249).contains(&name.len())
        && name != "."
        && name != ".."
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
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
