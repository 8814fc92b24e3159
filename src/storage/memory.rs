//! An in-memory [`Storage`], for tests of handlers and of the bridge without Postgres.

use super::{is_valid_topic_name, Storage, StorageError, Topic};
use uuid::Uuid;

#[derive(Default)]
pub struct MemoryStorage {
    topics: Vec<Topic>,
}

impl Storage for MemoryStorage {
    fn all_topics(&mut self) -> Result<Vec<Topic>, StorageError> {
        let mut topics = self.topics.clone();
        topics.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(topics)
    }

    fn topic(&mut self, name: &str) -> Result<Option<Topic>, StorageError> {
        Ok(self.topics.iter().find(|t| t.name == name).cloned())
    }

    fn create_topic(&mut self, name: &str, partitions: i32) -> Result<Topic, StorageError> {
        if !is_valid_topic_name(name) {
            return Err(StorageError::InvalidTopicName(name.to_owned()));
        }
        if self.topic(name)?.is_some() {
            return Err(StorageError::TopicExists(name.to_owned()));
        }
        let topic = Topic {
            id: self.topics.len() as i32 + 1,
            name: name.to_owned(),
            uuid: Uuid::new_v4(),
            partitions,
        };
        self.topics.push(topic.clone());
        Ok(topic)
    }
}
