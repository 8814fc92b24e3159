//! The coordinator's rules on one record, without storage: what a new id, a begun and a
//! completed transaction look like, and who may change it.

use kafka_protocol::ResponseError;

use crate::storage::transactions::{Durability, TxnRecord, TxnState};
use crate::storage::OffsetCommit;

/// A transactional id's first record.
pub fn fresh(id: &str, producer_id: i64, now_ms: i64) -> TxnRecord {
    TxnRecord {
        transactional_id: id.to_owned(),
        producer_id,
        producer_epoch: 0,
        state: TxnState::Empty,
        timeout_ms: 0,
        partitions: Vec::new(),
        groups: Vec::new(),
        pending_offsets: Vec::new(),
        started_ms: None,
        updated_ms: now_ms,
    }
}

/// `record` with a new transaction begun at `now_ms` (nothing of the last one kept).
pub fn begun(record: TxnRecord, now_ms: i64) -> TxnRecord {
    TxnRecord {
        state: TxnState::Ongoing,
        partitions: Vec::new(),
        groups: Vec::new(),
        pending_offsets: Vec::new(),
        started_ms: Some(now_ms),
        ..record
    }
}

/// `record` once its transaction ended (its partitions and offsets are done with).
pub fn completed(record: &TxnRecord, commit: bool, now_ms: i64) -> TxnRecord {
    TxnRecord {
        state: if commit { TxnState::CompleteCommit } else { TxnState::CompleteAbort },
        partitions: Vec::new(),
        groups: Vec::new(),
        pending_offsets: Vec::new(),
        updated_ms: now_ms,
        ..record.clone()
    }
}

/// `group`'s offsets will be committed with the transaction; the record, changed.
pub fn add_group<'a>(record: &'a mut TxnRecord, group: &str) -> &'a TxnRecord {
    if !record.groups.iter().any(|g| g == group) {
        record.groups.push(group.to_owned());
        record.groups.sort();
    }
    record
}

/// `record` under a new producer id at epoch 0 when `successor` names one (its epoch was
/// spent), else as it is.
pub fn succeeded_by(record: TxnRecord, successor: Option<i64>) -> TxnRecord {
    match successor {
        Some(producer_id) => TxnRecord { producer_id, producer_epoch: 0, ..record },
        None => record,
    }
}

/// The offsets a committing transaction stores, per group.
pub fn offsets_by_group(record: &TxnRecord) -> Vec<(String, Vec<OffsetCommit>)> {
    let mut groups: Vec<(String, Vec<OffsetCommit>)> = Vec::new();
    for pending in &record.pending_offsets {
        match groups.iter_mut().find(|(group, _)| *group == pending.group) {
            Some((_, commits)) => commits.push(pending.commit.clone()),
            None => groups.push((pending.group.clone(), vec![pending.commit.clone()])),
        }
    }
    groups
}

/// Whether `producer` (id, epoch) is the record's current producer: another id is
/// INVALID_PRODUCER_ID_MAPPING, another epoch PRODUCER_FENCED (an older producer of the
/// same transactional id, fenced by a newer InitProducerId).
pub fn check_producer(record: &TxnRecord, (producer_id, epoch): (i64, i16)) -> Result<(), ResponseError> {
    if record.producer_id != producer_id {
        Err(ResponseError::InvalidProducerIdMapping)
    } else if record.producer_epoch != epoch {
        Err(ResponseError::ProducerFenced)
    } else {
        Ok(())
    }
}

/// What an EndTxn of Transactions V2 (v5+, KIP-890) does: every end bumps the epoch, so
/// a request one epoch behind is a retry of an end already done (or a commit racing the
/// coordinator's own abort, which is fenced, as KAFKA-20785 settled).
#[derive(Debug, PartialEq, Eq)]
pub enum EndV2 {
    /// Ends the open transaction with markers of the next epoch.
    Finish,
    /// Nothing open: the epoch is bumped with no markers (an abort is always legal in V2:
    /// the producer cannot know whether its first Produce added a partition).
    BumpOnly,
    /// A retry of the end that brought the record where it is: answered with its epoch.
    Done,
}

pub fn end_v2(record: &TxnRecord, (producer_id, epoch): (i64, i16), commit: bool) -> Result<EndV2, ResponseError> {
    use TxnState::*;
    if record.producer_id != producer_id {
        return Err(ResponseError::InvalidProducerIdMapping);
    }
    let retry = i32::from(record.producer_epoch) == i32::from(epoch) + 1;
    if record.producer_epoch != epoch && !retry {
        return Err(ResponseError::ProducerFenced);
    }
    match (record.state, commit, retry) {
        (Ongoing, _, false) => Ok(EndV2::Finish),
        (Empty | CompleteAbort | CompleteCommit, false, false) => Ok(EndV2::BumpOnly),
        (CompleteAbort, false, true) | (CompleteCommit, true, true) => Ok(EndV2::Done),
        (Ongoing | Empty | CompleteAbort, _, true) => Err(ResponseError::ProducerFenced),
        _ => Err(ResponseError::InvalidTxnState),
    }
}

/// An error of adding Produce v12+'s partitions (Transactions V2) as Produce answers it
/// (Kafka's produce path maps them the same way): a fenced producer gets
/// INVALID_PRODUCER_EPOCH, and a coordinator that cannot answer now NOT_ENOUGH_REPLICAS,
/// which producers retry.
pub fn as_produce_error(error: ResponseError) -> ResponseError {
    match error {
        ResponseError::ProducerFenced => ResponseError::InvalidProducerEpoch,
        ResponseError::CoordinatorNotAvailable | ResponseError::CoordinatorLoadInProgress | ResponseError::ConcurrentTransactions => {
            ResponseError::NotEnoughReplicas
        }
        other => other,
    }
}

/// PRODUCER_FENCED exists from these versions of each API on (KIP-588); older versions
/// are answered INVALID_PRODUCER_EPOCH, which their clients know.
pub trait FencedAs {
    fn for_version(self, version: i16, fenced_from: i16) -> ResponseError;
}

impl FencedAs for ResponseError {
    fn for_version(self, version: i16, fenced_from: i16) -> ResponseError {
        if self == ResponseError::ProducerFenced && version < fenced_from {
            ResponseError::InvalidProducerEpoch
        } else {
            self
        }
    }
}

/// How an open transaction's change is stored. With a partition in the transaction the
/// change waits for no flush: its producer cannot commit before a Produce to that
/// partition is acknowledged, a flush that carries the change with it (WAL is flushed in
/// order), and a change lost before that leaves a Produce the writer refuses
/// (INVALID_TXN_STATE) or an open transaction the next start aborts. Without one (offsets
/// only) nothing else would flush it, and a lost change would let a V1 EndTxn read as a
/// retry of the previous commit: it is flushed.
pub fn change_durability(record: &TxnRecord) -> Durability {
    if record.partitions.is_empty() {
        Durability::Flushed
    } else {
        Durability::Deferred
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::transactions::PendingOffset;

    #[test]
    fn only_changes_a_produce_will_flush_skip_the_wait() {
        let offsets_only = TxnRecord { groups: vec!["g".into()], ..begun(fresh("t", 9, 0), 1) };
        assert_eq!(change_durability(&offsets_only), Durability::Flushed);
        let with_partition = TxnRecord { partitions: vec![(1, 0)], ..offsets_only };
        assert_eq!(change_durability(&with_partition), Durability::Deferred);
    }

    #[test]
    fn only_the_current_producer_may_change_a_transaction() {
        let record = TxnRecord { producer_epoch: 3, ..fresh("t", 9, 0) };
        assert_eq!(check_producer(&record, (9, 3)), Ok(()));
        assert_eq!(check_producer(&record, (9, 2)), Err(ResponseError::ProducerFenced));
        assert_eq!(check_producer(&record, (8, 3)), Err(ResponseError::InvalidProducerIdMapping));
        assert_eq!(ResponseError::ProducerFenced.for_version(1, 2), ResponseError::InvalidProducerEpoch);
        assert_eq!(ResponseError::ProducerFenced.for_version(2, 2), ResponseError::ProducerFenced);
        assert_eq!(ResponseError::InvalidTxnState.for_version(0, 2), ResponseError::InvalidTxnState);
    }

    #[test]
    fn v2_ends_follow_kafkas_table() {
        use EndV2::*;
        use ResponseError::{InvalidTxnState as Its, ProducerFenced as Pf};
        let at = |state| TxnRecord { state, producer_epoch: 5, ..fresh("t", 9, 0) };
        // (state, abort at 5, abort retried at 4, commit at 5, commit retried at 4)
        let table = [
            (TxnState::Ongoing, Ok(Finish), Err(Pf), Ok(Finish), Err(Pf)),
            (TxnState::Empty, Ok(BumpOnly), Err(Pf), Err(Its), Err(Pf)),
            (TxnState::CompleteAbort, Ok(BumpOnly), Ok(Done), Err(Its), Err(Pf)),
            (TxnState::CompleteCommit, Ok(BumpOnly), Err(Its), Err(Its), Ok(Done)),
        ];
        for (state, abort, abort_retry, commit, commit_retry) in table {
            let record = at(state);
            assert_eq!(end_v2(&record, (9, 5), false), abort, "{state:?} abort");
            assert_eq!(end_v2(&record, (9, 4), false), abort_retry, "{state:?} abort retried");
            assert_eq!(end_v2(&record, (9, 5), true), commit, "{state:?} commit");
            assert_eq!(end_v2(&record, (9, 4), true), commit_retry, "{state:?} commit retried");
            assert_eq!(end_v2(&record, (9, 3), true), Err(Pf), "two epochs behind");
            assert_eq!(end_v2(&record, (9, 6), false), Err(Pf), "ahead");
            assert_eq!(end_v2(&record, (8, 5), false), Err(ResponseError::InvalidProducerIdMapping));
        }
    }

    #[test]
    fn a_completed_transaction_keeps_its_producer_and_forgets_its_parts() {
        let offset = |group: &str, partition| PendingOffset {
            group: group.to_owned(),
            commit: OffsetCommit { topic_id: 1, partition, offset: 5, leader_epoch: -1, metadata: None },
        };
        let open = TxnRecord {
            partitions: vec![(1, 0)],
            groups: vec!["a".into(), "b".into()],
            pending_offsets: vec![offset("a", 0), offset("b", 0), offset("a", 1)],
            ..begun(fresh("t", 9, 0), 10)
        };
        assert_eq!(open.state, TxnState::Ongoing);
        let by_group = offsets_by_group(&open);
        assert_eq!(by_group.iter().map(|(g, c)| (g.as_str(), c.len())).collect::<Vec<_>>(), vec![("a", 2), ("b", 1)]);
        let done = completed(&open, false, 20);
        assert_eq!((done.state, done.producer_id, done.started_ms, done.updated_ms), (TxnState::CompleteAbort, 9, Some(10), 20));
        assert!(done.partitions.is_empty() && done.groups.is_empty() && done.pending_offsets.is_empty());
        let again = begun(done, 30);
        assert_eq!((again.state, again.started_ms), (TxnState::Ongoing, Some(30)));
    }
}
