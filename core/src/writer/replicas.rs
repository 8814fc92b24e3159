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
//! - n in sync: the commit's producers wait for them, as configured (writer/standby_acks.rs:
//!   the commit itself is local, the answers wait); n + 1 copies;
//! - a commit of acks=1 (and acks=0) Produce requests alone is local whatever the count:
//!   Kafka answers acks=1 once the leader has the records. Group commits of the two kinds
//!   never mix (the committer ends a group where the kind changes), so an acks=1 producer
//!   never waits for a standby behind an acks=all one, and an acks=all producer always does.
//!
//! With a count, acks=all appends to a topic whose `min.insync.replicas` exceeds the copies
//! are refused NOT_ENOUGH_REPLICAS, nothing written. A standby that stops answering but
//! is still connected holds acks=all answers until `wal_sender_timeout` ends its connection
//! (Kafka's `replica.lag.time.max.ms`). A commit waiting can also be let go without its standbys
//! (a failover manager clears `synchronous_standby_names`): writer/standby_acks.rs counts
//! its copies again, and answers NOT_ENOUGH_REPLICAS_AFTER_APPEND where too few are left.
//!
//! The same standbys are the in-sync replicas Metadata names: [`InSyncWatch`] maps their
//! `application_name`s to node ids (`pg_kafka.cluster_nodes`), publishes them to the
//! network side, and records them in `kafka.cluster_in_sync` when they change, for the
//! standbys to replay and name too.

use std::sync::Arc;
use std::time::{Duration, Instant};

use kafka_protocol::ResponseError;
use parking_lot::Mutex;

use crate::config::nodes::{self, NodeAddress};
use crate::storage::bridge::{in_transaction, JobRunner};
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

/// The copies this commit will have (`None`: synchronous replication is off). The commit
/// itself is local then: its producers, if they asked for the standbys in sync, wait for
/// them apart from it (writer/standby_acks.rs).
pub fn copies_now(storage: &mut dyn Storage, durability: Durability) -> Result<Option<i64>, StorageError> {
    let copies = match (copies_in_sync(storage)?, durability) {
        (None, _) => return Ok(None),
        (Some(_), Durability::Local) => 1,
        (Some(copies), Durability::Replicated) => copies,
    };
    storage.commit_locally()?;
    Ok(Some(copies))
}

/// The leader's copy and one per standby in sync now; `None` without synchronous
/// replication.
fn copies_in_sync(storage: &mut dyn Storage) -> Result<Option<i64>, StorageError> {
    let standbys = storage.in_sync_standbys()?;
    Ok(standbys.map(|names| 1 + i64::try_from(names.len()).unwrap_or(i64::MAX - 1)))
}

/// Why an append to `topic` is refused with `copies`, if it is.
pub fn too_few(acks_all: bool, topic: &Topic, copies: Option<i64>) -> Option<ResponseError> {
    let copies = copies.filter(|_| acks_all)?;
    (topic.settings.min_insync_replicas > copies).then_some(ResponseError::NotEnoughReplicas)
}

/// Why an acks=all append to a topic that wants `min_insync` copies, made with the copies a
/// commit waited for, is answered an error once only `copies_after` are left.
pub fn too_few_after(acks_all: bool, min_insync: i64, copies_after: i64) -> Option<ResponseError> {
    (acks_all && min_insync > copies_after).then_some(ResponseError::NotEnoughReplicasAfterAppend)
}

/// The standbys (node ids) in sync now, as the network side names them in Metadata:
/// written by the primary's [`InSyncWatch`], or by a standby's read of what the primary
/// recorded (broker/cluster.rs).
#[derive(Clone, Debug, Default)]
pub struct InSyncStandbys(Arc<Mutex<Vec<i32>>>);

impl InSyncStandbys {
    pub fn get(&self) -> Vec<i32> {
        self.0.lock().clone()
    }

    pub fn set(&self, node_ids: Vec<i32>) {
        *self.0.lock() = node_ids;
    }
}

/// The primary's look at its synchronous standbys, every `interval`.
pub struct InSyncWatch {
    shared: InSyncStandbys,
    /// What `kafka.cluster_in_sync` holds, as this worker last wrote or found it.
    recorded: Option<Vec<i32>>,
    interval: Duration,
    next: Instant,
}

impl InSyncWatch {
    pub fn new(shared: InSyncStandbys, interval: Duration) -> InSyncWatch {
        InSyncWatch { shared, recorded: None, interval, next: Instant::now() }
    }

    /// Looks if a look is due; returns the time until the next one. Without
    /// `pg_kafka.cluster_nodes` no standby is a broker, and there is nothing to look at.
    pub fn run_if_due(&mut self, runner: &mut dyn JobRunner, nodes: &[NodeAddress], this: i32) -> Duration {
        let now = Instant::now();
        if now < self.next {
            return self.next - now;
        }
        self.next = now + self.interval;
        if nodes.is_empty() {
            return self.interval;
        }
        let recorded = self.recorded.clone();
        let looked = in_transaction(runner, |storage| {
            let names = storage.in_sync_standbys()?.unwrap_or_default();
            let ids = standby_ids(nodes, this, &names);
            if recorded.as_ref() != Some(&ids) {
                storage.record_in_sync(&ids)?;
            }
            Ok(ids)
        });
        if let Ok(ids) = looked {
            self.shared.set(ids.clone());
            self.recorded = Some(ids);
        }
        self.interval
    }
}

/// The nodes of the standbys named, ascending, each once; names of no node, and this
/// node's own, are left out.
fn standby_ids(nodes: &[NodeAddress], this: i32, application_names: &[String]) -> Vec<i32> {
    let mut ids: Vec<i32> = application_names.iter().filter_map(|n| nodes::id_named(nodes, n)).filter(|id| *id != this).collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::topic::TopicSettings;
    use crate::storage::bridge::DirectRunner;
    use crate::storage::memory::MemoryStorage;

    fn standbys(n: usize) -> Option<Vec<String>> {
        Some((0..n).map(|i| format!("standby{i}")).collect())
    }

    fn topic(min_insync: &str) -> Topic {
        let mut storage = MemoryStorage::default();
        let mut topic = storage.create_topic("t", 1).unwrap();
        topic.settings = TopicSettings::from_stored(&[("min.insync.replicas".into(), min_insync.into())]);
        topic
    }

    #[test]
    fn an_acks_one_commit_is_local_with_standbys_in_sync_and_has_one_copy() {
        let mut storage = MemoryStorage::default();
        storage.in_sync = standbys(2);
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
        storage.in_sync = standbys(0);
        let copies = copies_now(&mut storage, Durability::Replicated).unwrap();
        assert_eq!((copies, storage.local_commits), (Some(1), 1));
        assert_eq!(too_few(true, &topic("2"), copies), Some(ResponseError::NotEnoughReplicas));
        assert_eq!(too_few(true, &topic("1"), copies), None);
        assert_eq!(too_few(false, &topic("2"), copies), None, "acks=1 is not held to it");
    }

    #[test]
    fn standbys_in_sync_count_and_the_commit_is_local_all_the_same() {
        let mut storage = MemoryStorage::default();
        storage.in_sync = standbys(1);
        let copies = copies_now(&mut storage, Durability::Replicated).unwrap();
        assert_eq!((copies, storage.local_commits), (Some(2), 1));
        assert_eq!(too_few(true, &topic("2"), copies), None);
        assert_eq!(too_few(true, &topic("3"), copies), Some(ResponseError::NotEnoughReplicas));
    }

    #[test]
    fn an_append_left_with_too_few_copies_is_answered_after_append() {
        assert_eq!(too_few_after(true, 2, 1), Some(ResponseError::NotEnoughReplicasAfterAppend));
        assert_eq!(too_few_after(true, 1, 1), None);
        assert_eq!(too_few_after(false, 2, 1), None, "acks=1 is not held to it");
    }

    #[test]
    fn the_watch_names_the_synchronous_standbys_by_node_and_records_them_when_they_change() {
        let nodes = nodes::parse("1/node1@h:1,2/node2@h:2,3@h:3").unwrap();
        let shared = InSyncStandbys::default();
        let mut watch = InSyncWatch::new(shared.clone(), Duration::ZERO);
        let mut runner = DirectRunner(MemoryStorage::default());
        runner.0.in_sync = Some(vec!["node2".into(), "3".into(), "node1".into(), "walreceiver".into()]);
        watch.run_if_due(&mut runner, &nodes, 1);
        assert_eq!((shared.get(), runner.0.recorded_in_sync.clone(), runner.0.in_sync_records), (vec![2, 3], vec![2, 3], 1));
        watch.run_if_due(&mut runner, &nodes, 1);
        assert_eq!(runner.0.in_sync_records, 1, "unchanged: not written again");
        runner.0.in_sync = None;
        watch.run_if_due(&mut runner, &nodes, 1);
        assert_eq!((shared.get(), runner.0.recorded_in_sync.clone(), runner.0.in_sync_records), (vec![], vec![], 2));
        let mut alone = InSyncWatch::new(shared.clone(), Duration::ZERO);
        runner.0.in_sync = standbys(1);
        alone.run_if_due(&mut runner, &[], 1);
        assert_eq!(runner.0.in_sync_records, 2, "a node alone looks at nothing");
    }
}
