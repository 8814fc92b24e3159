//! How many copies a group commit can have now, with Postgres's synchronous replication.
//!
//! Kafka keeps an in-sync replica set: a follower that falls behind leaves it, acks=all
//! waits for those that remain, and a topic's `min.insync.replicas` says how few are too
//! few (NOT_ENOUGH_REPLICAS). Postgres instead makes every commit wait for the standbys
//! `synchronous_standby_names` names, even while none is connected: the writer, and every
//! producer behind it, would wait with it. So before each group commit the writer counts
//! the standbys in sync now (`pg_stat_replication.sync_state`):
//!
//! - synchronous replication off (no names, or the writer's `synchronous_commit` does not
//!   wait for standbys): nothing changes; there is one copy and no topic is refused;
//! - none in sync: the commit is local (`synchronous_commit = local` for this
//!   transaction), as Kafka's ISR shrunk to the leader; one copy;
//! - n in sync: the commit waits for them, as configured; n + 1 copies;
//! - a commit of acks=1 (and acks=0) Produce requests alone is local whatever the count:
//!   Kafka answers acks=1 once the leader has the records. Group commits of the two kinds
//!   never mix (the committer ends a group where the kind changes), so an acks=1 producer
//!   never waits for a standby behind an acks=all one, and an acks=all producer always does.
//!
//! With a count, acks=all appends to a topic whose `min.insync.replicas` exceeds the copies
//! are refused NOT_ENOUGH_REPLICAS, nothing written. A standby that stops answering but
//! is still connected holds commits until `wal_sender_timeout` ends its connection (Kafka's
//! `replica.lag.time.max.ms`).

use kafka_protocol::ResponseError;

use crate::storage::{Storage, StorageError, Topic};

/// What a group commit's producers asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// Produce with acks=1 or 0: answered once the commit is flushed here.
    Local,
    /// Produce with acks=all, and everything else the writer commits (transaction ends,
    /// SQL-side work): answered once the synchronous standbys have it too.
    Replicated,
}

/// The copies this commit will have (`None`: synchronous replication is off), after
/// making it local when no standby is in sync or its producers asked for no more.
pub fn copies_now(storage: &mut dyn Storage, durability: Durability) -> Result<Option<i64>, StorageError> {
    Ok(match (storage.in_sync_standbys()?, durability) {
        (None, _) => None,
        (Some(0), _) | (Some(_), Durability::Local) => {
            storage.commit_locally()?;
            Some(1)
        }
        (Some(standbys), Durability::Replicated) => Some(1 + standbys),
    })
}

/// Why an append to `topic` is refused with `copies`, if it is.
pub fn too_few(acks_all: bool, topic: &Topic, copies: Option<i64>) -> Option<ResponseError> {
    let copies = copies.filter(|_| acks_all)?;
    (topic.settings.min_insync_replicas > copies).then_some(ResponseError::NotEnoughReplicas)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::topic::TopicSettings;
    use crate::storage::memory::MemoryStorage;

    fn topic(min_insync: &str) -> Topic {
        let mut storage = MemoryStorage::default();
        let mut topic = storage.create_topic("t", 1).unwrap();
        topic.settings = TopicSettings::from_stored(&[("min.insync.replicas".into(), min_insync.into())]);
        topic
    }

    #[test]
    fn an_acks_one_commit_is_local_with_standbys_in_sync_and_has_one_copy() {
        let mut storage = MemoryStorage::default();
        storage.in_sync = Some(2);
        assert_eq!(copies_now(&mut storage, Durability::Local).unwrap(), Some(1));
        assert_eq!(storage.local_commits, 1);
        storage.in_sync = None;
        assert_eq!(copies_now(&mut storage, Durability::Local).unwrap(), None, "no synchronous replication: nothing to change");
        assert_eq!(storage.local_commits, 1);
    }

    #[test]
    fn without_synchronous_replication_nothing_changes() {
        let mut storage = MemoryStorage::default();
        assert_eq!(copies_now(&mut storage, Durability::Replicated).unwrap(), None);
        assert_eq!(storage.local_commits, 0);
        assert_eq!(too_few(true, &topic("3"), None), None);
    }

    #[test]
    fn with_no_standby_in_sync_the_commit_is_local_and_one_copy_is_too_few_for_two() {
        let mut storage = MemoryStorage::default();
        storage.in_sync = Some(0);
        let copies = copies_now(&mut storage, Durability::Replicated).unwrap();
        assert_eq!((copies, storage.local_commits), (Some(1), 1));
        assert_eq!(too_few(true, &topic("2"), copies), Some(ResponseError::NotEnoughReplicas));
        assert_eq!(too_few(true, &topic("1"), copies), None);
        assert_eq!(too_few(false, &topic("2"), copies), None, "acks=1 is not held to it");
    }

    #[test]
    fn standbys_in_sync_count_and_the_commit_waits_for_them() {
        let mut storage = MemoryStorage::default();
        storage.in_sync = Some(1);
        let copies = copies_now(&mut storage, Durability::Replicated).unwrap();
        assert_eq!((copies, storage.local_commits), (Some(2), 0));
        assert_eq!(too_few(true, &topic("2"), copies), None);
        assert_eq!(too_few(true, &topic("3"), copies), Some(ResponseError::NotEnoughReplicas));
    }
}
