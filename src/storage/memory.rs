//! An in-memory [`Storage`], for tests of handlers and of the bridge without Postgres.

use super::{is_valid_topic_name, record_bytes, MessageRows, ReadLimit, Storage, StorageError, StoredRecord, Topic};
use uuid::Uuid;

#[derive(Default)]
pub struct MemoryStorage {
    topics: Vec<Topic>,
    /// Every appended row, in insertion order.
    pub messages: MessageRows,
    /// When set, `append` fails: lets tests exercise the writer's failure path.
    pub fail_appends: bool,
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

    fn next_offset(&mut self, topic_id: i32, partition: i32) -> Result<i64, StorageError> {
        let m = &self.messages;
        let last = (0..m.len())
            .filter(|&i| m.topic_ids[i] == topic_id && m.partitions[i] == partition)
            .map(|i| m.offsets[i])
            .max();
        Ok(last.map_or(0, |offset| offset + 1))
    }

    fn append(&mut self, rows: &MessageRows) -> Result<(), StorageError> {
        if self.fail_appends {
            return Err(StorageError::Database("appends are failing (test)".into()));
        }
        let m = &mut self.messages;
        for i in 0..rows.len() {
            let duplicate = (0..m.len()).any(|j| {
                (m.topic_ids[j], m.partitions[j], m.offsets[j]) == (rows.topic_ids[i], rows.partitions[i], rows.offsets[i])
            });
            if duplicate {
                return Err(StorageError::Database("duplicate key (topic_id, partition, offset)".into()));
            }
        }
        m.topic_ids.extend_from_slice(&rows.topic_ids);
        m.partitions.extend_from_slice(&rows.partitions);
        m.offsets.extend_from_slice(&rows.offsets);
        m.timestamps_ms.extend_from_slice(&rows.timestamps_ms);
        m.keys.extend(rows.keys.iter().cloned());
        m.values.extend(rows.values.iter().cloned());
        m.headers.extend(rows.headers.iter().cloned());
        Ok(())
    }

    fn read(&mut self, topic_id: i32, partition: i32, limit: ReadLimit) -> Result<Vec<StoredRecord>, StorageError> {
        let mut candidates: Vec<StoredRecord> =
            self.rows_of(topic_id, partition).filter(|r| (limit.from..limit.below).contains(&r.offset)).collect();
        candidates.sort_by_key(|r| r.offset);
        let mut records = Vec::new();
        let mut bytes = 0;
        for record in candidates {
            bytes += record_bytes(&record);
            if !limit.admits(records.len(), bytes) {
                break;
            }
            records.push(record);
        }
        Ok(records)
    }

    fn first_offset(&mut self, topic_id: i32, partition: i32) -> Result<Option<i64>, StorageError> {
        Ok(self.rows_of(topic_id, partition).map(|r| r.offset).min())
    }

    fn offset_for_timestamp(&mut self, topic_id: i32, partition: i32, timestamp_ms: i64) -> Result<Option<(i64, i64)>, StorageError> {
        Ok(self
            .rows_of(topic_id, partition)
            .filter(|r| r.timestamp_ms >= timestamp_ms)
            .map(|r| (r.offset, r.timestamp_ms))
            .min())
    }

    fn max_timestamp(&mut self, topic_id: i32, partition: i32) -> Result<Option<(i64, i64)>, StorageError> {
        Ok(self
            .rows_of(topic_id, partition)
            .map(|r| (r.timestamp_ms, -r.offset))
            .max()
            .map(|(timestamp, negated)| (-negated, timestamp)))
    }
}

impl MemoryStorage {
    fn rows_of(&self, topic_id: i32, partition: i32) -> impl Iterator<Item = StoredRecord> + '_ {
        let m = &self.messages;
        (0..m.len()).filter(move |&i| m.topic_ids[i] == topic_id && m.partitions[i] == partition).map(move |i| StoredRecord {
            offset: m.offsets[i],
            timestamp_ms: m.timestamps_ms[i],
            key: m.keys[i].clone(),
            value: m.values[i].clone(),
            headers: m.headers[i].clone(),
        })
    }
}
