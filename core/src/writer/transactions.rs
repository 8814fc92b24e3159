//! What the group-commit writer records of transactions as it places batches: the first
//! offset a transaction writes on a partition (which holds the partition's last stable
//! offset back), and, when the coordinator's marker is placed, the end of it there (an
//! aborted range if it aborted).
//!
//! As with producer sequences, changes are kept aside while a write is placed, stored in
//! the write's transaction ([`TxnWrites::save`]), and reach the shared [`TxnLog`] only
//! after that transaction committed ([`TxnWrites::committed`]); a rolled-back write leaves
//! no trace.

use kafka_protocol::ResponseError;

use crate::storage::transactions::{AbortedTxn, OpenTxn, TxnLog, TxnLogChanges};
use crate::storage::watermarks::PartitionKey;
use crate::storage::{Storage, StorageError};

#[derive(Default)]
pub struct TxnWrites {
    log: TxnLog,
    pending: TxnLogChanges,
}

impl TxnWrites {
    pub fn new(log: TxnLog) -> TxnWrites {
        TxnWrites { log, pending: TxnLogChanges::default() }
    }

    /// The first offset of `producer_id`'s open transaction on `partition`, counting what
    /// this write placed so far.
    fn open_at(&self, partition: PartitionKey, producer_id: i64) -> Option<i64> {
        let ended_here = self.pending.ended.contains(&(partition, producer_id));
        let begun_here = self.pending.begun.iter().rev().find(|t| t.partition == partition && t.producer_id == producer_id);
        match begun_here {
            Some(txn) => Some(txn.first_offset),
            None if ended_here => None,
            None => self.log.open_at(partition, producer_id),
        }
    }

    /// Whether the coordinator has `producer_id`'s transaction open on `partition` at
    /// `epoch` now (see [`crate::storage::transactions::OpenProducers`]).
    pub fn admits(&self, producer_id: i64, epoch: i16, partition: PartitionKey) -> Result<(), ResponseError> {
        self.log.producers().admits(producer_id, epoch, partition)
    }

    /// A transactional batch of `producer_id` was placed at `base_offset`.
    pub fn records(&mut self, partition: PartitionKey, producer_id: i64, base_offset: i64) {
        if self.open_at(partition, producer_id).is_none() {
            self.pending.begun.push(OpenTxn { partition, producer_id, first_offset: base_offset });
        }
    }

    /// The marker of `producer_id`'s transaction was placed at `offset`.
    pub fn marker(&mut self, partition: PartitionKey, producer_id: i64, offset: i64, commit: bool) {
        let first = self.open_at(partition, producer_id);
        self.pending.begun.retain(|t| !(t.partition == partition && t.producer_id == producer_id));
        if !self.pending.ended.contains(&(partition, producer_id)) {
            self.pending.ended.push((partition, producer_id));
        }
        if let (Some(first_offset), false) = (first, commit) {
            self.pending.aborted.push(AbortedTxn { partition, producer_id, first_offset, last_offset: offset });
        }
    }

    /// Stores this write's changes, in its transaction.
    pub fn save(&self, storage: &mut dyn Storage) -> Result<(), StorageError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        storage.save_txn_log(&self.pending)
    }

    /// The write committed: its changes are what Fetch sees now.
    pub fn committed(&mut self) {
        if !self.pending.is_empty() {
            self.log.apply(&std::mem::take(&mut self.pending));
        }
    }

    /// Replaces the shared state with what storage holds now (a hot standby follows
    /// the primary's transactions this way: it writes none itself).
    pub fn reload(&self, storage: &mut dyn Storage) -> Result<(), StorageError> {
        let (open, aborted) = storage.txn_log_state()?;
        self.log.load(&open, &aborted);
        Ok(())
    }

    /// The write rolled back: nothing of it happened.
    pub fn rolled_back(&mut self) {
        self.pending = TxnLogChanges::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::memory::MemoryStorage;

    #[test]
    fn a_transaction_begun_and_aborted_in_one_write_leaves_its_range() {
        let log = TxnLog::default();
        let mut writes = TxnWrites::new(log.clone());
        let p = (1, 0);
        writes.records(p, 7, 3);
        writes.records(p, 7, 5);
        assert_eq!(log.stable_offset(p, 10), 10, "nothing is visible before the commit");
        writes.marker(p, 7, 6, false);
        let mut storage = MemoryStorage::default();
        writes.save(&mut storage).unwrap();
        writes.committed();
        assert_eq!(log.stable_offset(p, 7), 7);
        assert_eq!(log.aborted_between(p, 0, 7), vec![(7, 3)]);
        let (open, aborted) = storage.txn_log_state().unwrap();
        assert!(open.is_empty());
        assert_eq!(aborted, vec![AbortedTxn { partition: p, producer_id: 7, first_offset: 3, last_offset: 6 }]);
    }

    #[test]
    fn an_open_transaction_holds_the_stable_offset_until_its_commit_marker() {
        let log = TxnLog::default();
        let mut writes = TxnWrites::new(log.clone());
        let p = (1, 0);
        writes.records(p, 7, 2);
        writes.committed();
        assert_eq!(log.stable_offset(p, 4), 2);
        writes.records(p, 7, 4);
        writes.marker(p, 7, 5, true);
        writes.rolled_back();
        assert_eq!(log.stable_offset(p, 4), 2, "a rolled-back marker changes nothing");
        writes.marker(p, 7, 5, true);
        writes.committed();
        assert_eq!(log.stable_offset(p, 6), 6);
        assert!(log.aborted_between(p, 0, 6).is_empty(), "a commit leaves no aborted range");
    }
}
