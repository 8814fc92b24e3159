//! Idempotent producers: sequence checks per (producer id, partition), on the writer's
//! thread.
//!
//! Follows Kafka's broker rules. A batch that repeats one of the producer's last five
//! batches on the partition (same epoch, first and last sequence) is a retry: it is not
//! written again and gets the original base offset. Otherwise the batch must continue
//! the sequence (last + 1, wrapping at `i32::MAX`); a gap is OUT_OF_ORDER_SEQUENCE_NUMBER.
//! An older epoch than the partition has seen is fenced (INVALID_PRODUCER_EPOCH); a newer
//! one starts over at sequence 0. With no state yet, any sequence starts the log.
//!
//! The state changes in memory as batches are placed, and reaches the table in the same
//! transaction as the rows ([`Sequences::save`]). If that transaction rolls back, the
//! states it touched are forgotten and reloaded from the table, so a retry of a batch
//! that was never stored is appended, not mistaken for a duplicate.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};

use kafka_protocol::ResponseError;

use crate::storage::{ProducerKey, ProducerState, SequencedBatch, Storage, StorageError, RECENT_BATCHES};

/// What an idempotent producer's batch claims.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProducerBatch {
    pub producer_id: i64,
    pub epoch: i16,
    pub first_sequence: i32,
    pub last_sequence: i32,
}

/// The verdict on one batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SequenceCheck {
    Append,
    /// Already stored: answer with this base offset and write nothing.
    Duplicate(i64),
    Refused(ResponseError),
}

/// States kept in memory beyond this many are dropped after a commit (they are in the
/// table and come back on use).
const MAX_CACHED_STATES: usize = 100_000;

#[derive(Default)]
pub struct Sequences {
    states: HashMap<ProducerKey, ProducerState>,
    /// Keys changed since the last commit or rollback.
    touched: HashSet<ProducerKey>,
}

/// `sequence + delta`, wrapping from `i32::MAX` to 0 as Kafka's sequences do.
pub fn add_sequence(sequence: i32, delta: i32) -> i32 {
    ((i64::from(sequence) + i64::from(delta)).rem_euclid(i64::from(i32::MAX) + 1)) as i32
}

impl Sequences {
    pub fn check(&mut self, storage: &mut dyn Storage, key: ProducerKey, batch: &ProducerBatch) -> Result<SequenceCheck, StorageError> {
        let Some(state) = self.load(storage, key)? else { return Ok(SequenceCheck::Append) };
        if batch.epoch < state.epoch {
            return Ok(SequenceCheck::Refused(ResponseError::InvalidProducerEpoch));
        }
        if batch.epoch > state.epoch {
            let starts_over = batch.first_sequence == 0;
            return Ok(if starts_over { SequenceCheck::Append } else { SequenceCheck::Refused(ResponseError::OutOfOrderSequenceNumber) });
        }
        let same = |b: &&SequencedBatch| b.first_sequence == batch.first_sequence && b.last_sequence == batch.last_sequence;
        if let Some(original) = state.batches.iter().find(same) {
            return Ok(SequenceCheck::Duplicate(original.base_offset));
        }
        match state.batches.back() {
            Some(last) if add_sequence(last.last_sequence, 1) != batch.first_sequence => {
                Ok(SequenceCheck::Refused(ResponseError::OutOfOrderSequenceNumber))
            }
            // A marker of this epoch started it over (Transactions V2 bumps the epoch at
            // every end): its first batch has sequence 0, as Kafka checks.
            None if batch.first_sequence != 0 => Ok(SequenceCheck::Refused(ResponseError::OutOfOrderSequenceNumber)),
            _ => Ok(SequenceCheck::Append),
        }
    }

    /// Records a batch placed at `base_offset` (in memory until [`save`](Self::save)).
    pub fn record(&mut self, key: ProducerKey, batch: &ProducerBatch, base_offset: i64) {
        let state = self.states.entry(key).or_default();
        if state.epoch != batch.epoch {
            state.epoch = batch.epoch;
            state.batches.clear();
        }
        state.batches.push_back(SequencedBatch { first_sequence: batch.first_sequence, last_sequence: batch.last_sequence, base_offset });
        while state.batches.len() > RECENT_BATCHES {
            state.batches.pop_front();
        }
        self.touched.insert(key);
    }

    /// A transaction marker of `epoch` was placed for the producer on the partition (the
    /// coordinator writes them, and bumps the epoch when it aborts to fence a producer):
    /// batches of an older epoch that arrive after it are fenced, as in Kafka's producer
    /// state. A newer epoch starts the sequence over.
    pub fn marker(&mut self, storage: &mut dyn Storage, key: ProducerKey, epoch: i16) -> Result<(), StorageError> {
        let known = self.load(storage, key)?.map(|state| state.epoch);
        if known.is_some_and(|known| known >= epoch) {
            return Ok(());
        }
        let state = self.states.entry(key).or_default();
        state.epoch = epoch;
        state.batches.clear();
        self.touched.insert(key);
        Ok(())
    }

    /// Writes every state touched since the last commit, in the caller's transaction.
    pub fn save(&self, storage: &mut dyn Storage) -> Result<(), StorageError> {
        let states: Vec<(ProducerKey, ProducerState)> =
            self.touched.iter().filter_map(|key| Some((*key, self.states.get(key)?.clone()))).collect();
        storage.save_producer_states(&states)
    }

    /// The transaction committed: the touched states are now what the table holds.
    pub fn committed(&mut self) {
        self.touched.clear();
        if self.states.len() > MAX_CACHED_STATES {
            self.states.clear();
        }
    }

    /// The transaction rolled back: forget what it touched; the table still has the truth.
    pub fn rolled_back(&mut self) {
        for key in self.touched.drain() {
            self.states.remove(&key);
        }
    }

    /// Forgets everything cached (topics were deleted; their states went with them).
    pub fn clear(&mut self) {
        self.states.clear();
        self.touched.clear();
    }

    fn load(&mut self, storage: &mut dyn Storage, key: ProducerKey) -> Result<Option<&ProducerState>, StorageError> {
        if let Entry::Vacant(slot) = self.states.entry(key) {
            match storage.producer_state(key)? {
                Some(state) => {
                    slot.insert(state);
                }
                None => return Ok(None),
            }
        }
        Ok(self.states.get(&key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::memory::MemoryStorage;

    fn batch(epoch: i16, first: i32, last: i32) -> ProducerBatch {
        ProducerBatch { producer_id: 7, epoch, first_sequence: first, last_sequence: last }
    }

    const KEY: ProducerKey = (7, 1, 0);

    #[test]
    fn a_marker_of_a_newer_epoch_fences_the_older_one() {
        let (mut sequences, mut storage) = (Sequences::default(), MemoryStorage::default());
        sequences.record(KEY, &batch(2, 0, 9), 0);
        sequences.marker(&mut storage, KEY, 2).unwrap();
        assert_eq!(sequences.check(&mut storage, KEY, &batch(2, 10, 19)).unwrap(), SequenceCheck::Append, "same epoch: sequence goes on");
        sequences.marker(&mut storage, KEY, 3).unwrap();
        let fenced = SequenceCheck::Refused(ResponseError::InvalidProducerEpoch);
        assert_eq!(sequences.check(&mut storage, KEY, &batch(2, 10, 19)).unwrap(), fenced);
        assert_eq!(sequences.check(&mut storage, KEY, &batch(4, 0, 0)).unwrap(), SequenceCheck::Append);
    }

    #[test]
    fn retries_of_the_last_five_batches_are_duplicates_and_gaps_are_refused() {
        let (mut sequences, mut storage) = (Sequences::default(), MemoryStorage::default());
        assert_eq!(sequences.check(&mut storage, KEY, &batch(0, 0, 9)).unwrap(), SequenceCheck::Append);
        for i in 0..6 {
            sequences.record(KEY, &batch(0, i * 10, i * 10 + 9), 100 + i64::from(i) * 10);
        }
        // Batches 1..=5 are remembered; batch 0 has been pushed out.
        assert_eq!(sequences.check(&mut storage, KEY, &batch(0, 10, 19)).unwrap(), SequenceCheck::Duplicate(110));
        assert_eq!(sequences.check(&mut storage, KEY, &batch(0, 50, 59)).unwrap(), SequenceCheck::Duplicate(150));
        assert_eq!(
            sequences.check(&mut storage, KEY, &batch(0, 0, 9)).unwrap(),
            SequenceCheck::Refused(ResponseError::OutOfOrderSequenceNumber)
        );
        assert_eq!(sequences.check(&mut storage, KEY, &batch(0, 60, 61)).unwrap(), SequenceCheck::Append);
        assert_eq!(
            sequences.check(&mut storage, KEY, &batch(0, 62, 62)).unwrap(),
            SequenceCheck::Refused(ResponseError::OutOfOrderSequenceNumber),
            "a gap: 60 and 61 were never recorded"
        );
    }

    #[test]
    fn older_epochs_are_fenced_and_newer_ones_start_at_zero() {
        let (mut sequences, mut storage) = (Sequences::default(), MemoryStorage::default());
        sequences.record(KEY, &batch(3, 0, 4), 0);
        assert_eq!(
            sequences.check(&mut storage, KEY, &batch(2, 5, 5)).unwrap(),
            SequenceCheck::Refused(ResponseError::InvalidProducerEpoch)
        );
        assert_eq!(
            sequences.check(&mut storage, KEY, &batch(4, 5, 5)).unwrap(),
            SequenceCheck::Refused(ResponseError::OutOfOrderSequenceNumber)
        );
        assert_eq!(sequences.check(&mut storage, KEY, &batch(4, 0, 0)).unwrap(), SequenceCheck::Append);
    }

    #[test]
    fn sequences_wrap_at_i32_max() {
        assert_eq!(add_sequence(i32::MAX, 1), 0);
        assert_eq!(add_sequence(i32::MAX - 1, 3), 1);
        let (mut sequences, mut storage) = (Sequences::default(), MemoryStorage::default());
        sequences.record(KEY, &batch(0, i32::MAX - 4, i32::MAX), 0);
        assert_eq!(sequences.check(&mut storage, KEY, &batch(0, 0, 3)).unwrap(), SequenceCheck::Append);
    }

    #[test]
    fn a_rollback_forgets_what_was_not_stored_and_the_table_is_reloaded() {
        let (mut sequences, mut storage) = (Sequences::default(), MemoryStorage::default());
        sequences.record(KEY, &batch(0, 0, 4), 0);
        sequences.save(&mut storage).unwrap();
        sequences.committed();
        sequences.record(KEY, &batch(0, 5, 9), 5);
        sequences.rolled_back();
        // The batch that rolled back is appended when retried, not taken for a duplicate.
        assert_eq!(sequences.check(&mut storage, KEY, &batch(0, 5, 9)).unwrap(), SequenceCheck::Append);
        assert_eq!(sequences.check(&mut storage, KEY, &batch(0, 0, 4)).unwrap(), SequenceCheck::Duplicate(0));
    }
}
