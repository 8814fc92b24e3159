//! Transactions as storage sees them: the coordinator's record of each transactional id
//! ([`TxnRecord`], table `kafka.transaction_state`), and what the log knows of them
//! ([`TxnLog`]: the producers with a transaction open on each partition, where it began,
//! and the aborted ranges, tables `kafka.open_transactions` and `kafka.aborted_transactions`).
//!
//! The log's part lives in memory for Fetch and ListOffsets, as the watermarks do: the
//! last stable offset of a partition is the first offset of its oldest open transaction
//! (the high watermark when none is open), and a read_committed Fetch is told which
//! producers' records in its range were aborted. Only the group-commit writer changes it,
//! after the transaction that stored the change committed ([`TxnLog::apply`]).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use parking_lot::RwLock;

use kafka_protocol::ResponseError;

use super::watermarks::PartitionKey;
use super::OffsetCommit;

/// Whether storing a transactional id's record waits for its WAL flush.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// Committed and flushed before the call returns: what a producer is told it has (an
    /// epoch, an ended transaction).
    Flushed,
    /// Committed without waiting for the flush (`synchronous_commit = off` for that one
    /// transaction): a change that a later, flushed commit carries to disk (WAL is
    /// flushed in order). Which changes qualify is the coordinator's rule
    /// (`records::change_durability`: those of a transaction with a partition).
    Deferred,
}

/// Where a transactional id stands (Kafka's `TransactionState`, less `Dead`: an id is
/// kept until deleted with SQL).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TxnState {
    /// Initialised, no transaction begun.
    Empty,
    /// Partitions or a group were added: a transaction is open.
    Ongoing,
    /// EndTxn was asked; its markers are being written.
    PrepareCommit,
    PrepareAbort,
    /// The last transaction ended.
    CompleteCommit,
    CompleteAbort,
}

impl TxnState {
    pub const ALL: [TxnState; 6] = [
        TxnState::Empty,
        TxnState::Ongoing,
        TxnState::PrepareCommit,
        TxnState::PrepareAbort,
        TxnState::CompleteCommit,
        TxnState::CompleteAbort,
    ];

    /// The name Kafka's tools show (and the table stores).
    pub fn as_str(self) -> &'static str {
        match self {
            TxnState::Empty => "Empty",
            TxnState::Ongoing => "Ongoing",
            TxnState::PrepareCommit => "PrepareCommit",
            TxnState::PrepareAbort => "PrepareAbort",
            TxnState::CompleteCommit => "CompleteCommit",
            TxnState::CompleteAbort => "CompleteAbort",
        }
    }

    pub fn parse(name: &str) -> Option<TxnState> {
        TxnState::ALL.into_iter().find(|s| s.as_str() == name)
    }

    /// A transaction is open or ending: its partitions hold back the last stable offset.
    pub fn is_open(self) -> bool {
        matches!(self, TxnState::Ongoing | TxnState::PrepareCommit | TxnState::PrepareAbort)
    }
}

/// An offset committed inside a transaction, waiting for its commit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingOffset {
    pub group: String,
    pub commit: OffsetCommit,
}

/// The coordinator's record of one transactional id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TxnRecord {
    /// The id as the client sent it (any UTF-8, NUL included: stored as bytes).
    pub transactional_id: String,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub state: TxnState,
    pub timeout_ms: i32,
    /// The partitions of the open transaction, `(topic id, partition)`, sorted.
    pub partitions: Vec<PartitionKey>,
    /// The groups whose offsets the transaction commits (AddOffsetsToTxn), sorted.
    pub groups: Vec<String>,
    /// Offsets TxnOffsetCommit sent, applied when the transaction commits.
    pub pending_offsets: Vec<PendingOffset>,
    /// When the open transaction began (its first partition or group), Kafka ms.
    pub started_ms: Option<i64>,
    /// When the record last changed, Kafka ms.
    pub updated_ms: i64,
}

/// A transaction's records on one partition: the first offset it wrote there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpenTxn {
    pub partition: PartitionKey,
    pub producer_id: i64,
    pub first_offset: i64,
}

/// An aborted transaction's range on one partition: its records from `first_offset` up
/// to its marker at `last_offset` are to be skipped by read_committed consumers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AbortedTxn {
    pub partition: PartitionKey,
    pub producer_id: i64,
    pub first_offset: i64,
    pub last_offset: i64,
}

/// What compaction knows of a partition's transactions: the first offset of the oldest
/// open one, and aborted ranges.
pub type PartitionTransactions = (Option<i64>, Vec<AbortedTxn>);

/// What one write changed in the log's transaction state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TxnLogChanges {
    /// Transactions that wrote their first records on a partition.
    pub begun: Vec<OpenTxn>,
    /// Transactions whose marker was written on a partition: `(partition, producer id)`.
    pub ended: Vec<(PartitionKey, i64)>,
    /// The aborted ones among them.
    pub aborted: Vec<AbortedTxn>,
}

impl TxnLogChanges {
    pub fn is_empty(&self) -> bool {
        self.begun.is_empty() && self.ended.is_empty()
    }
}

/// The log's transaction state, shared by the writer (which changes it) and Fetch, and the
/// coordinator's view of open transactions (which it keeps current).
#[derive(Clone, Default)]
pub struct TxnLog {
    inner: Arc<RwLock<LogState>>,
    producers: OpenProducers,
}

/// Each producer's epoch and the partitions of its open transaction, as the coordinator
/// has them: Produce admits a transactional batch by it, and the writer asks again as it
/// places one, so a batch that passed Produce's check before its transaction ended (a V1
/// producer's epoch does not change at the end) cannot open a transaction nobody ends.
#[derive(Clone, Default)]
pub struct OpenProducers(Arc<RwLock<HashMap<i64, OpenProducer>>>);

/// A producer's epoch and the partitions of its open transaction (none: no transaction).
type OpenProducer = (i16, HashSet<PartitionKey>);

impl OpenProducers {
    /// Whether `producer_id`'s transaction is open on `partition` at `epoch`: an unknown
    /// producer is INVALID_PRODUCER_ID_MAPPING, an older epoch INVALID_PRODUCER_EPOCH,
    /// anything else not open there INVALID_TXN_STATE.
    pub fn admits(&self, producer_id: i64, epoch: i16, partition: PartitionKey) -> Result<(), ResponseError> {
        match self.0.read().get(&producer_id) {
            None => Err(ResponseError::InvalidProducerIdMapping),
            Some((current, _)) if epoch < *current => Err(ResponseError::InvalidProducerEpoch),
            Some((current, partitions)) if epoch == *current && partitions.contains(&partition) => Ok(()),
            Some(_) => Err(ResponseError::InvalidTxnState),
        }
    }

    /// The producer's epoch and open partitions now (none: no transaction open).
    pub fn publish(&self, producer_id: i64, epoch: i16, partitions: HashSet<PartitionKey>) {
        self.0.write().insert(producer_id, (epoch, partitions));
    }

    /// Forgets `producer_id` if it is still at `epoch`.
    pub fn forget(&self, producer_id: i64, epoch: i16) {
        let mut producers = self.0.write();
        if producers.get(&producer_id).is_some_and(|(current, _)| *current == epoch) {
            producers.remove(&producer_id);
        }
    }
}

#[derive(Default)]
struct LogState {
    loaded: bool,
    /// Per partition: producer id → first offset of its open transaction there.
    open: HashMap<PartitionKey, BTreeMap<i64, i64>>,
    /// Per partition: aborted ranges, by marker offset.
    aborted: HashMap<PartitionKey, BTreeMap<i64, AbortedTxn>>,
}

impl TxnLog {
    /// The coordinator's view of open transactions.
    pub fn producers(&self) -> &OpenProducers {
        &self.producers
    }

    /// Whether the state was loaded from storage since the start.
    pub fn is_loaded(&self) -> bool {
        self.inner.read().loaded
    }

    /// Replaces the state with what storage holds (at start).
    pub fn load(&self, open: &[OpenTxn], aborted: &[AbortedTxn]) {
        let mut state = self.inner.write();
        state.open.clear();
        state.aborted.clear();
        for txn in open {
            state.open.entry(txn.partition).or_default().insert(txn.producer_id, txn.first_offset);
        }
        for txn in aborted {
            state.aborted.entry(txn.partition).or_default().insert(txn.last_offset, *txn);
        }
        state.loaded = true;
    }

    /// The first offset of `producer_id`'s open transaction on `partition`, if one is open.
    pub fn open_at(&self, partition: PartitionKey, producer_id: i64) -> Option<i64> {
        self.inner.read().open.get(&partition)?.get(&producer_id).copied()
    }

    /// The last stable offset of `partition` whose high watermark is `high`: the first
    /// offset of its oldest open transaction, or `high`.
    pub fn stable_offset(&self, partition: PartitionKey, high: i64) -> i64 {
        let state = self.inner.read();
        state.open.get(&partition).and_then(|open| open.values().min().copied()).map_or(high, |first| first.min(high))
    }

    /// The aborted transactions whose records may be in `from..below` of `partition`:
    /// `(producer id, first offset)`, by first offset (what Fetch answers).
    pub fn aborted_between(&self, partition: PartitionKey, from: i64, below: i64) -> Vec<(i64, i64)> {
        let state = self.inner.read();
        let Some(aborted) = state.aborted.get(&partition) else { return Vec::new() };
        let mut found: Vec<(i64, i64)> =
            aborted.range(from..).map(|(_, t)| t).filter(|t| t.first_offset < below).map(|t| (t.producer_id, t.first_offset)).collect();
        found.sort_by_key(|&(_, first)| first);
        found
    }

    /// Forgets the aborted ranges of `partition` that end below its log start: no read
    /// reaches them again (storage drops them as the log start moves). Cheap when there is
    /// nothing to forget.
    pub fn forget_aborted_before(&self, partition: PartitionKey, log_start: i64) {
        let stale = |state: &LogState| state.aborted.get(&partition).and_then(|a| a.keys().next()).is_some_and(|&last| last < log_start);
        if !stale(&self.inner.read()) {
            return;
        }
        let mut state = self.inner.write();
        if let Some(aborted) = state.aborted.get_mut(&partition) {
            *aborted = aborted.split_off(&log_start);
            if aborted.is_empty() {
                state.aborted.remove(&partition);
            }
        }
    }

    /// Applies what a committed write changed.
    pub fn apply(&self, changes: &TxnLogChanges) {
        let mut state = self.inner.write();
        for txn in &changes.begun {
            state.open.entry(txn.partition).or_default().entry(txn.producer_id).or_insert(txn.first_offset);
        }
        for (partition, producer_id) in &changes.ended {
            if let Some(open) = state.open.get_mut(partition) {
                open.remove(producer_id);
                if open.is_empty() {
                    state.open.remove(partition);
                }
            }
        }
        for txn in &changes.aborted {
            state.aborted.entry(txn.partition).or_default().insert(txn.last_offset, *txn);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stable_offset_is_the_oldest_open_transactions_first_offset() {
        let log = TxnLog::default();
        let p = (1, 0);
        assert_eq!(log.stable_offset(p, 10), 10);
        log.apply(&TxnLogChanges {
            begun: vec![
                OpenTxn { partition: p, producer_id: 7, first_offset: 4 },
                OpenTxn { partition: p, producer_id: 8, first_offset: 6 },
            ],
            ..Default::default()
        });
        assert_eq!(log.stable_offset(p, 10), 4);
        assert_eq!(log.stable_offset((1, 1), 10), 10);
        // A second begin of an open transaction keeps its first offset.
        log.apply(&TxnLogChanges { begun: vec![OpenTxn { partition: p, producer_id: 7, first_offset: 9 }], ..Default::default() });
        assert_eq!(log.open_at(p, 7), Some(4));
        let aborted = AbortedTxn { partition: p, producer_id: 7, first_offset: 4, last_offset: 11 };
        log.apply(&TxnLogChanges { ended: vec![(p, 7)], aborted: vec![aborted], ..Default::default() });
        assert_eq!(log.stable_offset(p, 12), 6);
        log.apply(&TxnLogChanges { ended: vec![(p, 8)], ..Default::default() });
        assert_eq!(log.stable_offset(p, 13), 13);
        assert_eq!(log.open_at(p, 7), None);
    }

    #[test]
    fn aborted_ranges_overlapping_a_read_are_answered() {
        let log = TxnLog::default();
        let p = (1, 0);
        let range = |producer_id, first_offset, last_offset| AbortedTxn { partition: p, producer_id, first_offset, last_offset };
        log.load(&[], &[range(5, 0, 3), range(6, 4, 9), range(5, 10, 12)]);
        assert!(log.is_loaded());
        assert_eq!(log.aborted_between(p, 0, 100), vec![(5, 0), (6, 4), (5, 10)]);
        assert_eq!(log.aborted_between(p, 4, 10), vec![(6, 4)]);
        assert_eq!(log.aborted_between(p, 9, 10), vec![(6, 4)]);
        assert_eq!(log.aborted_between(p, 13, 20), vec![]);
        assert_eq!(log.aborted_between(p, 0, 4), vec![(5, 0)]);
        log.forget_aborted_before(p, 10);
        assert_eq!(log.aborted_between(p, 0, 100), vec![(5, 10)], "ranges ending below the log start are forgotten");
        log.forget_aborted_before(p, 13);
        assert_eq!(log.aborted_between(p, 0, 100), vec![]);
    }

    #[test]
    fn states_round_trip_by_name() {
        for state in TxnState::ALL {
            assert_eq!(TxnState::parse(state.as_str()), Some(state));
        }
        assert_eq!(TxnState::parse("Dead"), None);
    }
}
