//! Storage, in Kafka terms.
//!
//! [`Storage`] is what handlers need from the database. [`postgres::PgStorage`] is the only
//! code in the crate that calls SPI; [`memory::MemoryStorage`] stands in for it in tests that
//! run without Postgres. Handlers never hold a `Storage`: they reach it through
//! [`bridge::StorageClient`], which runs a closure on the thread that owns the storage (the
//! worker's main thread, in production) and awaits its result.

pub mod bridge;
pub mod memory;
pub mod postgres;

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
    #[error("database error: {0}")]
    Database(String),
}

/// The database, as the broker uses it. Implementations run on one thread only.
pub trait Storage {
    /// Every topic, sorted by name.
    fn all_topics(&mut self) -> Result<Vec<Topic>, StorageError>;
    /// The topic called `name`, if it exists.
    fn topic(&mut self, name: &str) -> Result<Option<Topic>, StorageError>;
    /// Creates a topic; fails with [`StorageError::TopicExists`] if the name is taken.
    fn create_topic(&mut self, name: &str, partitions: i32) -> Result<Topic, StorageError>;
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
    fn topic_names_follow_kafka_rules() {
        for ok in ["a", "demo", "my.topic_1-x", &"x".repeat(249)] {
            assert!(is_valid_topic_name(ok), "{ok}");
        }
        for bad in ["", ".", "..", "a b", "é", "a/b", &"x".repeat(250)] {
            assert!(!is_valid_topic_name(bad), "{bad}");
        }
    }
}
