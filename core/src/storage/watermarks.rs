//! Partition bounds in memory: what Fetch and ListOffsets may read, without asking the
//! database.
//!
//! For each partition a consumer has touched, the log start offset (first stored offset)
//! and the high watermark (offset after the last committed message). Entries are created
//! and changed only on the worker's main thread, between transactions: by a storage job
//! that loads a partition on first use ([`Watermarks::load`]), by the group-commit writer
//! after each commit ([`Watermarks::advance`]), and by the periodic refresh that notices
//! rows written by SQL ([`Watermarks::set`]). So an entry never shows a state older than one
//! already published. Fetch reads them from any thread; an empty poll costs no database work.
//!
//! A partition may be *held* at an offset ([`Watermarks::hold`]): rows the writer committed
//! there that its synchronous standbys have not confirmed yet (writer/standby_acks.rs). No
//! high watermark passes a hold, whoever moves it (a commit, a refresh, a first load), as
//! Kafka's high watermark never passes what every in-sync replica has.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::RwLock;
use tokio::sync::Notify;

use super::{Storage, StorageError};

/// (topic id, partition).
pub type PartitionKey = (i32, i32);

/// A partition's readable range: offsets `log_start..high`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bounds {
    pub log_start: i64,
    pub high: i64,
}

#[derive(Clone, Default)]
pub struct Watermarks {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    /// (topic id, partition) → bounds.
    bounds: RwLock<HashMap<(i32, i32), Bounds>>,
    /// (topic id, partition) → the offset no high watermark passes for now. Written (and
    /// read by writers of `bounds`) on the main thread only.
    holds: RwLock<HashMap<(i32, i32), i64>>,
    changed: Notify,
}

impl Watermarks {
    pub fn get(&self, topic_id: i32, partition: i32) -> Option<Bounds> {
        self.inner.bounds.read().get(&(topic_id, partition)).copied()
    }

    /// Whether any of `partitions` is known.
    pub fn knows_any(&self, partitions: &[PartitionKey]) -> bool {
        let bounds = self.inner.bounds.read();
        partitions.iter().any(|key| bounds.contains_key(key))
    }

    /// Every known partition's bounds.
    pub fn all(&self) -> Vec<(PartitionKey, Bounds)> {
        self.inner.bounds.read().iter().map(|(k, b)| (*k, *b)).collect()
    }

    /// Reads the bounds of each partition not yet known from storage and records them.
    /// Runs on the thread that owns storage.
    pub fn load(&self, storage: &mut dyn Storage, partitions: &[(i32, i32)]) -> Result<(), StorageError> {
        for &(topic_id, partition) in partitions {
            if self.get(topic_id, partition).is_none() {
                let mut bounds = read_bounds(storage, topic_id, partition)?;
                bounds.high = self.held((topic_id, partition), bounds.high);
                bounds.log_start = bounds.log_start.min(bounds.high);
                self.inner.bounds.write().entry((topic_id, partition)).or_insert(bounds);
            }
        }
        Ok(())
    }

    /// Raises a known partition's high watermark after a commit. Partitions nobody reads
    /// yet stay unknown (they are loaded from the table when first read). Does not wake
    /// waiters: call [`notify`](Self::notify) once per commit.
    pub fn advance(&self, topic_id: i32, partition: i32, high: i64) {
        let high = self.held((topic_id, partition), high);
        if let Some(bounds) = self.inner.bounds.write().get_mut(&(topic_id, partition)) {
            bounds.high = bounds.high.max(high);
        }
    }

    /// Keeps the partition's high watermark at `offset` at most until [`unhold`](Self::unhold)
    /// or a later `hold` moves it; an earlier (lower) hold stays unless `replace`.
    pub fn hold(&self, key: PartitionKey, offset: i64, replace: bool) {
        let mut holds = self.inner.holds.write();
        let held = holds.entry(key).or_insert(offset);
        if replace {
            *held = offset;
        }
    }

    /// Lets the partition's high watermark move freely again.
    pub fn unhold(&self, key: PartitionKey) {
        self.inner.holds.write().remove(&key);
    }

    /// `high`, or the partition's hold if that is lower.
    fn held(&self, key: PartitionKey, high: i64) -> i64 {
        self.inner.holds.read().get(&key).map_or(high, |&hold| high.min(hold))
    }

    /// Re-reads every known partition from storage (rows written or deleted by SQL).
    /// Returns the partitions whose high watermark moved, with their new value.
    pub fn refresh(&self, storage: &mut dyn Storage) -> Result<Vec<(PartitionKey, i64)>, StorageError> {
        let known: Vec<(i32, i32)> = self.inner.bounds.read().keys().copied().collect();
        self.reread_known(storage, &known)
    }

    /// Re-reads those of `partitions` that are known (a SQL session wrote them). Returns
    /// whether any high watermark moved.
    pub fn reread(&self, storage: &mut dyn Storage, partitions: &[PartitionKey]) -> Result<bool, StorageError> {
        let known: Vec<PartitionKey> = {
            let bounds = self.inner.bounds.read();
            let mut known: Vec<PartitionKey> = partitions.iter().copied().filter(|key| bounds.contains_key(key)).collect();
            known.sort_unstable();
            known.dedup();
            known
        };
        Ok(!self.reread_known(storage, &known)?.is_empty())
    }

    fn reread_known(&self, storage: &mut dyn Storage, known: &[PartitionKey]) -> Result<Vec<(PartitionKey, i64)>, StorageError> {
        let mut moved = Vec::new();
        for &key in known {
            let mut fresh = read_bounds(storage, key.0, key.1)?;
            fresh.high = self.held(key, fresh.high);
            let mut map = self.inner.bounds.write();
            let Some(bounds) = map.get_mut(&key) else { continue };
            if fresh.high > bounds.high {
                moved.push((key, fresh.high));
            }
            bounds.high = bounds.high.max(fresh.high);
            bounds.log_start = fresh.log_start.min(bounds.high);
        }
        Ok(moved)
    }

    /// Moves a known partition's log start up to `log_start` (DeleteRecords, retention).
    pub fn raise_log_start(&self, topic_id: i32, partition: i32, log_start: i64) {
        if let Some(bounds) = self.inner.bounds.write().get_mut(&(topic_id, partition)) {
            bounds.log_start = bounds.log_start.max(log_start);
            bounds.high = bounds.high.max(log_start);
        }
    }

    /// Forgets a topic's partitions (the topic went away).
    pub fn forget_topic(&self, topic_id: i32) {
        self.inner.bounds.write().retain(|&(id, _), _| id != topic_id);
    }

    /// Wakes every Fetch waiting for new data.
    pub fn notify(&self) {
        self.inner.changed.notify_waiters();
    }

    /// A future that completes at the next [`notify`](Self::notify). Enable it *before*
    /// checking bounds, so that a commit in between is not missed.
    pub fn changed(&self) -> tokio::sync::futures::Notified<'_> {
        self.inner.changed.notified()
    }
}

/// A partition's bounds as stored. An empty partition starts where the next message will.
fn read_bounds(storage: &mut dyn Storage, topic_id: i32, partition: i32) -> Result<Bounds, StorageError> {
    if topic_id == super::offsets_topic::TOPIC_ID {
        return super::offsets_topic::bounds(storage);
    }
    let high = storage.next_offset(topic_id, partition)?;
    let log_start = storage.first_offset(topic_id, partition)?.unwrap_or(high);
    Ok(Bounds { log_start, high })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::memory::MemoryStorage;
    use crate::storage::MessageRows;
    use std::time::Duration;

    /// Rows of topic 1, partition 0, at `offsets`.
    fn rows_at(offsets: &[i64]) -> MessageRows {
        crate::storage::empty_rows(1, 0, offsets)
    }

    fn storage_with_rows(offsets: &[i64]) -> MemoryStorage {
        let mut storage = MemoryStorage::default();
        assert_eq!(storage.create_topic("t", 1).unwrap().id, 1);
        storage.append(&rows_at(offsets)).unwrap();
        storage
    }

    #[test]
    fn loads_once_then_only_moves_forward() {
        let mut storage = storage_with_rows(&[3, 4, 5]);
        let w = Watermarks::default();
        w.advance(1, 0, 100); // unknown partitions are not created by the writer
        assert_eq!(w.get(1, 0), None);
        w.load(&mut storage, &[(1, 0)]).unwrap();
        assert_eq!(w.get(1, 0), Some(Bounds { log_start: 3, high: 6 }));
        w.advance(1, 0, 10);
        w.advance(1, 0, 7);
        w.load(&mut storage, &[(1, 0)]).unwrap();
        assert_eq!(w.get(1, 0), Some(Bounds { log_start: 3, high: 10 }));
    }

    #[test]
    fn refresh_sees_rows_written_behind_the_writers_back() {
        let mut storage = storage_with_rows(&[0]);
        let w = Watermarks::default();
        w.load(&mut storage, &[(1, 0)]).unwrap();
        assert!(w.refresh(&mut storage).unwrap().is_empty());
        storage.append(&rows_at(&[1, 2])).unwrap();
        assert_eq!(w.refresh(&mut storage).unwrap(), vec![((1, 0), 3)]);
        assert_eq!(w.get(1, 0), Some(Bounds { log_start: 0, high: 3 }));
    }

    #[test]
    fn a_hold_keeps_every_way_of_moving_the_high_watermark_below_it() {
        let mut storage = storage_with_rows(&[0, 1, 2, 3, 4]);
        let w = Watermarks::default();
        w.hold((1, 0), 2, false);
        w.hold((1, 0), 4, false); // the earlier, lower hold stays
        w.load(&mut storage, &[(1, 0)]).unwrap();
        assert_eq!(w.get(1, 0), Some(Bounds { log_start: 0, high: 2 }));
        w.advance(1, 0, 5);
        assert!(w.refresh(&mut storage).unwrap().is_empty());
        assert_eq!(w.get(1, 0).unwrap().high, 2);
        w.hold((1, 0), 4, true);
        w.advance(1, 0, 5);
        assert_eq!(w.get(1, 0).unwrap().high, 4);
        w.unhold((1, 0));
        w.advance(1, 0, 5);
        assert_eq!(w.get(1, 0).unwrap().high, 5);
    }

    #[tokio::test]
    async fn waiters_registered_before_a_notify_are_woken() {
        let w = Watermarks::default();
        let changed = w.changed();
        tokio::pin!(changed);
        changed.as_mut().enable();
        w.notify();
        tokio::time::timeout(Duration::from_secs(1), changed).await.expect("woken");
    }
}
