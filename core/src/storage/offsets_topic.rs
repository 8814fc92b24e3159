//! `__consumer_offsets`, served read-only from `kafka.consumer_offsets`, so that lag
//! monitors that read Kafka's offsets topic (Burrow, and clients listing internal topics)
//! work against pg_kafka. It is one partition (Kafka's `offsets.topic.num.partitions`
//! reported as 1) whose records are the committed offsets: key version 1 (group, topic,
//! partition), value version 3 (offset, leader epoch, metadata, commit time), as Kafka's
//! group coordinator writes them. Every commit gets the next number of one sequence
//! (`kafka.offset_commit_numbers`), its offset in the topic; as in Kafka's compacted log,
//! a group's partition keeps only its latest commit, so offsets have gaps, and the high
//! watermark (the sequence's next number) never goes back. Deleted offsets leave no
//! tombstone: they are gone, as after Kafka's compaction.
//!
//! The storage engines list it among the topics (with the reserved id [`TOPIC_ID`], which
//! no row of `kafka.topics` has) and give its commits through
//! [`Storage::offset_commit_records`]; [`read`] and [`bounds`] turn them into a partition
//! that Fetch and ListOffsets read like any other. Handlers refuse to change it.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::ResponseError;
use uuid::Uuid;

use super::watermarks::Bounds;
use super::{ReadLimit, Storage, StorageError, StoredRecord, Topic};

pub const NAME: &str = "__consumer_offsets";
/// The topic's internal id: `kafka.topics` ids start at 1.
pub const TOPIC_ID: i32 = -1;
/// Its Kafka topic id, the same on every pg_kafka.
pub const TOPIC_UUID: Uuid = Uuid::from_u128(0x7067_6b61_666b_615f_5f63_6f6e_7375_6d72);
/// Commits read at most per Fetch of the topic.
pub const RECORDS_PER_READ: usize = 10_000;

/// The topic as Metadata lists it.
pub fn topic() -> Topic {
    Topic {
        id: TOPIC_ID,
        name: NAME.to_owned(),
        uuid: TOPIC_UUID,
        partitions: 1,
        settings: super::TopicSettings::default(),
        layout: super::StorageLayout::Rows,
    }
}

/// `topics` (sorted by name) with this topic in its place.
pub fn with_internal(mut topics: Vec<Topic>) -> Vec<Topic> {
    let at = topics.partition_point(|t| t.name.as_str() < NAME);
    topics.insert(at, topic());
    topics
}

/// The error a request changing the topic gets (Produce, DeleteRecords, DeleteTopics,
/// CreatePartitions, configs, commits of its own offsets): it is Kafka's, kept by the broker.
pub fn refuse_change(topic_id: i32) -> Result<(), ResponseError> {
    if topic_id == TOPIC_ID {
        Err(ResponseError::InvalidTopicException)
    } else {
        Ok(())
    }
}

/// One committed offset, numbered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OffsetCommitRecord {
    /// Its commit number: the record's offset in the topic.
    pub number: i64,
    pub group: String,
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub leader_epoch: i32,
    /// The commit's metadata, as UTF-8 bytes (empty when none).
    pub metadata: Bytes,
    pub commit_time_ms: i64,
}

/// The record Kafka's coordinator writes for a commit; `None` for a string longer than
/// the format's 16-bit lengths hold (no Kafka client can commit one).
pub fn stored(commit: &OffsetCommitRecord) -> Option<StoredRecord> {
    let mut key = BytesMut::new();
    key.put_i16(1);
    put_string(&mut key, commit.group.as_bytes())?;
    put_string(&mut key, commit.topic.as_bytes())?;
    key.put_i32(commit.partition);
    let mut value = BytesMut::new();
    value.put_i16(3);
    value.put_i64(commit.offset);
    value.put_i32(commit.leader_epoch);
    put_string(&mut value, &commit.metadata)?;
    value.put_i64(commit.commit_time_ms);
    Some(StoredRecord {
        offset: commit.number,
        timestamp_ms: commit.commit_time_ms,
        key: Some(key.freeze()),
        value: Some(value.freeze()),
        headers: None,
        txn: None,
    })
}

fn put_string(out: &mut BytesMut, bytes: &[u8]) -> Option<()> {
    out.put_i16(i16::try_from(bytes.len()).ok()?);
    out.put_slice(bytes);
    Some(())
}

/// The topic's records within `limit`, as [`Storage::read`] gives a partition's. A batch
/// holds offsets within 2^31 of its first: a read stops before a larger gap.
pub fn read(storage: &mut dyn Storage, limit: ReadLimit) -> Result<Vec<StoredRecord>, StorageError> {
    let commits = storage.offset_commit_records(limit.from, limit.below, RECORDS_PER_READ)?;
    let first = commits.first().map_or(0, |c| c.number);
    Ok(limit.take(commits.iter().filter_map(stored).take_while(|r| r.offset - first <= i64::from(i32::MAX))))
}

/// The partition's bounds: the oldest commit kept, and the next commit number.
pub fn bounds(storage: &mut dyn Storage) -> Result<Bounds, StorageError> {
    let (oldest, next) = storage.offset_commit_range()?;
    Ok(Bounds { log_start: oldest.unwrap_or(next).min(next), high: next })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn commit(number: i64, metadata: &'static [u8]) -> OffsetCommitRecord {
        OffsetCommitRecord {
            number,
            group: "g".into(),
            topic: "t".into(),
            partition: 2,
            offset: 42,
            leader_epoch: -1,
            metadata: Bytes::from_static(metadata),
            commit_time_ms: 1_700_000_000_000,
        }
    }

    #[test]
    fn records_are_in_kafkas_offset_commit_format() {
        let record = stored(&commit(7, b"m\0")).unwrap();
        assert_eq!(record.offset, 7);
        assert_eq!(record.key.unwrap().as_ref(), b"\x00\x01\x00\x01g\x00\x01t\x00\x00\x00\x02");
        let mut value = vec![0, 3, 0, 0, 0, 0, 0, 0, 0, 42, 0xff, 0xff, 0xff, 0xff, 0, 2, b'm', 0];
        value.extend_from_slice(&1_700_000_000_000i64.to_be_bytes());
        assert_eq!(record.value.unwrap().as_ref(), value.as_slice());
    }

    #[test]
    fn strings_too_long_for_the_format_are_left_out() {
        let long = OffsetCommitRecord { group: "g".repeat(40_000), ..commit(1, b"") };
        assert_eq!(stored(&long), None);
    }

    #[test]
    fn the_topic_takes_its_place_among_the_others() {
        let named = |name: &str| Topic { name: name.into(), ..topic() };
        let names: Vec<String> = with_internal(vec![named("A"), named("a"), named("z")]).into_iter().map(|t| t.name).collect();
        assert_eq!(names, ["A", NAME, "a", "z"]);
        assert_eq!(refuse_change(TOPIC_ID), Err(ResponseError::InvalidTopicException));
        assert_eq!(refuse_change(1), Ok(()));
    }

    #[test]
    fn commits_read_as_a_partition_with_gaps_and_a_high_watermark_that_never_goes_back() {
        use crate::storage::memory::MemoryStorage;
        use crate::storage::OffsetCommit;
        let mut storage = MemoryStorage::default();
        let t = storage.create_topic("t", 2).unwrap();
        let at = |partition, offset| OffsetCommit { topic_id: t.id, partition, offset, leader_epoch: -1, metadata: None };
        storage.commit_offsets("a", &[at(0, 5), at(1, 6)]).unwrap();
        storage.commit_offsets("b", &[at(0, 9)]).unwrap();
        storage.commit_offsets("a", &[at(0, 7)]).unwrap();
        let all = ReadLimit { from: 0, below: 100, max_bytes: 1 << 20, at_least_one: true };
        let offsets = |storage: &mut MemoryStorage| -> Vec<i64> { read(storage, all).unwrap().iter().map(|r| r.offset).collect() };
        assert_eq!(offsets(&mut storage), vec![1, 2, 3], "a/t/0's first commit (0) was replaced by 3");
        assert_eq!(bounds(&mut storage).unwrap(), Bounds { log_start: 1, high: 4 });
        storage.delete_group_offsets(&["a".to_string()]).unwrap();
        assert_eq!(offsets(&mut storage), vec![2]);
        assert_eq!(bounds(&mut storage).unwrap(), Bounds { log_start: 2, high: 4 }, "deleting the newest keeps the watermark");
        let one = ReadLimit { max_bytes: 1, at_least_one: false, ..all };
        assert!(read(&mut storage, one).unwrap().is_empty(), "byte limits hold as for any partition");
    }
}
