//! Messages that SQL sessions produced (`kafka.produce()`), as the worker learns of them.
//!
//! A SQL session appends to `kafka.messages` in its own transaction, holding the
//! partition's append lock (the one the group-commit writer also takes) until it ends. At
//! commit, before that lock is released, it records which partitions it wrote in an
//! [`AppendRing`] in shared memory and wakes the worker. The worker reads the ring from
//! where it last stopped: the writer forgets its offset counters for those partitions (and
//! re-reads them under the lock), and Fetch's watermarks move up at once, waking long polls.
//!
//! The ring has a fixed size: a reader that fell more than [`RING_SLOTS`] entries behind
//! (or a transaction that wrote more partitions than it records) learns only that
//! "something changed", and re-reads every partition it knows.

use std::sync::Arc;

use super::watermarks::PartitionKey;

/// Entries the ring keeps.
pub const RING_SLOTS: usize = 1024;
/// Partitions one transaction records one by one; more are recorded as "everything".
pub const MAX_PARTITIONS_PER_TRANSACTION: usize = 64;
/// The entry that stands for "every partition".
const EVERYTHING: PartitionKey = (-1, -1);

/// What changed since a reader's last look.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SqlAppends {
    /// Pass this back next time.
    pub generation: u64,
    /// The partitions written since, or `None` for "any of them".
    pub partitions: Option<Vec<PartitionKey>>,
}

impl SqlAppends {
    pub fn moved_since(&self, seen: u64) -> bool {
        self.generation != seen
    }
}

/// How the worker reads the ring: given the generation it saw last, what changed since.
pub type SqlAppendLog = Arc<dyn Fn(u64) -> SqlAppends + Send + Sync>;

/// A fixed ring of partitions written by committed SQL transactions. Plain data, so that
/// it can live in shared memory.
#[derive(Clone, Copy)]
pub struct AppendRing {
    /// Entries ever pushed.
    generation: u64,
    entries: [PartitionKey; RING_SLOTS],
}

impl Default for AppendRing {
    fn default() -> Self {
        AppendRing { generation: 0, entries: [EVERYTHING; RING_SLOTS] }
    }
}

impl AppendRing {
    /// Records one committed transaction's partitions.
    pub fn push(&mut self, partitions: &[PartitionKey]) {
        if partitions.len() > MAX_PARTITIONS_PER_TRANSACTION {
            self.push_one(EVERYTHING);
        } else {
            partitions.iter().for_each(|&key| self.push_one(key));
        }
    }

    fn push_one(&mut self, key: PartitionKey) {
        self.entries[(self.generation % RING_SLOTS as u64) as usize] = key;
        self.generation += 1;
    }

    /// What was pushed after generation `seen`.
    pub fn since(&self, seen: u64) -> SqlAppends {
        let generation = self.generation;
        if seen == generation {
            return SqlAppends { generation, partitions: Some(Vec::new()) };
        }
        if seen > generation || generation - seen > RING_SLOTS as u64 {
            return SqlAppends { generation, partitions: None };
        }
        let keys: Vec<PartitionKey> = (seen..generation).map(|g| self.entries[(g % RING_SLOTS as u64) as usize]).collect();
        let partitions = (!keys.contains(&EVERYTHING)).then_some(keys);
        SqlAppends { generation, partitions }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readers_get_what_was_pushed_since_their_last_look() {
        let mut ring = AppendRing::default();
        assert_eq!(ring.since(0), SqlAppends { generation: 0, partitions: Some(vec![]) });
        ring.push(&[(1, 0), (1, 1)]);
        ring.push(&[(2, 3)]);
        assert_eq!(ring.since(0), SqlAppends { generation: 3, partitions: Some(vec![(1, 0), (1, 1), (2, 3)]) });
        assert_eq!(ring.since(2).partitions, Some(vec![(2, 3)]));
        assert!(!ring.since(3).moved_since(3));
    }

    #[test]
    fn a_reader_too_far_behind_or_a_wide_transaction_means_everything() {
        let mut ring = AppendRing::default();
        for i in 0..RING_SLOTS as i32 + 1 {
            ring.push(&[(1, i)]);
        }
        assert_eq!(ring.since(0).partitions, None, "overwritten entries");
        assert_eq!(ring.since(1).partitions.map(|p| p.len()), Some(RING_SLOTS));
        let seen = ring.since(0).generation;
        let wide: Vec<PartitionKey> = (0..MAX_PARTITIONS_PER_TRANSACTION as i32 + 1).map(|p| (7, p)).collect();
        ring.push(&wide);
        assert_eq!(ring.since(seen), SqlAppends { generation: seen + 1, partitions: None });
        assert_eq!(ring.since(seen + 5).partitions, None, "a generation from before a restart");
    }
}
