//! The transaction coordinator: one record per transactional id (producer id, epoch,
//! state, partitions, offsets), kept in `kafka.transaction_state` and in memory, changed
//! by InitProducerId, AddPartitionsToTxn, AddOffsetsToTxn, TxnOffsetCommit and EndTxn.
//!
//! ```text
//!  InitProducerId ─▶ Empty ─ AddPartitions / AddOffsets ─▶ Ongoing ─ EndTxn ──────────────┐
//!        ▲  (an open transaction is aborted, epoch + 1: the older producer is fenced)     │
//!        └──────────── CompleteCommit|Abort ◀── ONE group commit: the markers, the state, ┘
//!                                                 the offsets (on commit)
//! ```
//!
//! Kafka's coordinator stores PrepareCommit, answers, then writes markers to every
//! partition's leader; here the markers (placed by the group-commit writer, offsets given
//! there), the Complete state and, when it commits, the consumer offsets are one Postgres
//! commit ([`crate::writer::group_commit::CommitQueue::enqueue_then`]), and EndTxn is answered after it. A crash before
//! it leaves the transaction Ongoing: the worker aborts it at start with its epoch bumped
//! (its producer was never told it committed). While its markers are written the slot
//! stays locked and keeps the Ongoing record; only Produce's view is closed, and it is
//! reopened if the write fails, so a failed end leaves memory as storage has it.
//! Transactions that outlive their timeout are aborted the same way by
//! [`TxnCoordinator::expire`].
//!
//! One transactional id is changed by one request at a time (a per-id async lock); the
//! producers' open partitions are also kept in a plain map for Produce's check.
//! Transactions V2 (KIP-890) is served beside V1 (see [`TRANSACTIONS_V2`]): a V2 client's
//! Produce and TxnOffsetCommit add their partition or group themselves, and every EndTxn
//! bumps the epoch. Which one a client uses follows the `transaction.version` feature
//! ApiVersions finalizes (`pg_kafka.transaction_version`).

mod records;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use kafka_protocol::ResponseError;
use parking_lot::Mutex;

use super::{storage_call, Broker};
use crate::logging;
use crate::protocol::records::marker_record;
use crate::storage::batches::marker;
use crate::storage::transactions::{Durability, PendingOffset, TxnLog, TxnRecord, TxnState};
use crate::storage::watermarks::PartitionKey;
use crate::storage::{now_ms, OffsetCommit, StorageLayout, Topic};
use crate::writer::group_commit::{PartitionAppend, TxnPart};
use records::EndV2;
pub use records::{as_produce_error, check_producer, FencedAs};

/// One transactional id's place in memory: its record (`None`: never initialised) and the
/// topics of its partitions, as AddPartitionsToTxn resolved them.
#[derive(Default)]
struct Slot {
    record: Option<TxnRecord>,
    topics: HashMap<i32, Topic>,
}

type SlotRef = Arc<tokio::sync::Mutex<Slot>>;

#[derive(Clone, Default)]
pub struct TxnCoordinator {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    slots: Mutex<HashMap<String, SlotRef>>,
    /// Set once the stored state was loaded and what crashed was finished.
    ready: tokio::sync::OnceCell<()>,
    /// The log's side, shared with the writer and Fetch.
    log: TxnLog,
}

/// The first version of EndTxn and TxnOffsetCommit of Transactions V2 (KIP-890); Produce's
/// is [`PRODUCE_TRANSACTIONS_V2`].
pub const TRANSACTIONS_V2: i16 = 5;
/// From this version on, Produce adds its partitions to the transaction itself.
pub const PRODUCE_TRANSACTIONS_V2: i16 = 12;

/// Most consumer groups one transaction may commit offsets of (a consume-transform-produce
/// step has one), and most offsets it may hold until it ends: each change of the record
/// stores all of them, so unbounded they would make every request of the id slower.
pub const MAX_TRANSACTION_GROUPS: usize = 1_000;
pub const MAX_TRANSACTION_OFFSETS: usize = 100_000;

/// An epoch one below this is the last a producer id may use; the next InitProducerId
/// then hands out a new producer id (as Kafka does).
const LAST_EPOCH: i16 = i16::MAX - 1;

impl TxnCoordinator {
    pub fn new(log: TxnLog) -> TxnCoordinator {
        TxnCoordinator { inner: Arc::new(Inner { log, ..Inner::default() }) }
    }

    /// The log's transaction state (last stable offsets, aborted ranges).
    pub fn log(&self) -> &TxnLog {
        &self.inner.log
    }

    /// Loads the stored state once: every record, the log's open transactions and aborted
    /// ranges; aborts the transactions a crash left open.
    /// On a hot standby nothing is recovered (the primary does that, and its outcome is
    /// replayed): the log's state is ready once the writer's refresh has read it.
    pub async fn ready(&self, broker: &Broker) -> Result<(), ResponseError> {
        if broker.config().standby {
            return if self.inner.log.is_loaded() { Ok(()) } else { Err(ResponseError::CoordinatorLoadInProgress) };
        }
        self.inner.ready.get_or_try_init(|| self.recover(broker)).await.map(drop)
    }

    async fn recover(&self, broker: &Broker) -> Result<(), ResponseError> {
        let loaded = storage_call(broker, |s| Ok((s.transactions()?, s.txn_log_state()?))).await;
        let (records, (open, aborted)) = loaded.map_err(|e| {
            logging::warning(format!("pg_kafka: cannot load transaction state: {e}"));
            ResponseError::CoordinatorLoadInProgress
        })?;
        self.inner.log.load(&open, &aborted);
        let mut unfinished = Vec::new();
        for record in records {
            let id = record.transactional_id.clone();
            if record.state.is_open() {
                unfinished.push(id.clone());
            }
            self.publish(&record);
            self.slot(&id).lock().await.record = Some(record);
        }
        for id in unfinished {
            let slot = self.slot(&id);
            let mut slot = slot.lock().await;
            let Some(record) = slot.record.clone() else { continue };
            let outcome = self.abort_fencing(broker, &mut slot).await;
            logging::log(format!(
                "pg_kafka: transactional id \"{id}\" was {} at start: {}",
                record.state.as_str(),
                match outcome {
                    Ok(()) => format!("now {}", slot.record.as_ref().map_or("?", |r| r.state.as_str())),
                    Err(e) => format!("left as it was ({e:?}), tried again on its next request"),
                }
            ));
        }
        Ok(())
    }

    /// The id's slot, made if new (InitProducerId and loading only: requests naming ids
    /// never initialised must not grow the map).
    fn slot(&self, id: &str) -> SlotRef {
        self.inner.slots.lock().entry(id.to_owned()).or_default().clone()
    }

    fn existing(&self, id: &str) -> Option<SlotRef> {
        self.inner.slots.lock().get(id).cloned()
    }

    /// The id's slot, locked, once the state is loaded, the id known and `producer` its
    /// current producer (its record is then `Some`).
    async fn producers_slot(
        &self,
        broker: &Broker,
        id: &str,
        producer: (i64, i16),
    ) -> Result<tokio::sync::OwnedMutexGuard<Slot>, ResponseError> {
        self.ready(broker).await?;
        let slot = self.existing(id).ok_or(ResponseError::InvalidProducerIdMapping)?.lock_owned().await;
        check_producer(slot.record.as_ref().ok_or(ResponseError::InvalidProducerIdMapping)?, producer)?;
        Ok(slot)
    }

    /// Keeps Produce's view of `record`'s producer current.
    fn publish(&self, record: &TxnRecord) {
        let partitions = if record.state == TxnState::Ongoing { record.partitions.iter().copied().collect() } else { HashSet::new() };
        self.inner.log.producers().publish(record.producer_id, record.producer_epoch, partitions);
    }

    /// Produce's check of a transactional batch: its producer's transaction is open on the
    /// partition, at this epoch.
    pub fn admits(&self, producer_id: i64, epoch: i16, partition: PartitionKey) -> Result<(), ResponseError> {
        self.inner.log.producers().admits(producer_id, epoch, partition)
    }

    /// InitProducerId with a transactional id: a producer id and a new epoch. An open
    /// transaction is aborted first (the previous producer of the id is fenced).
    pub async fn init_producer(
        &self,
        broker: &Broker,
        id: &str,
        timeout_ms: i32,
        expected: Option<(i64, i16)>,
    ) -> Result<(i64, i16), ResponseError> {
        self.ready(broker).await?;
        let slot = self.slot(id);
        let mut slot = slot.lock().await;
        if let (Some(record), Some((producer_id, epoch))) = (&slot.record, expected) {
            // KIP-360: a producer that names its id and epoch must be the current one.
            if record.producer_id != producer_id || record.producer_epoch != epoch {
                return Err(ResponseError::ProducerFenced);
            }
        }
        if slot.record.as_ref().is_some_and(|r| r.state.is_open()) {
            self.abort_fencing(broker, &mut slot).await?;
        }
        let now = now_ms();
        // A clone: should the new producer id not come, the slot keeps what storage has.
        let record = match slot.record.clone() {
            Some(old) if old.producer_epoch < LAST_EPOCH => TxnRecord { producer_epoch: old.producer_epoch + 1, ..old },
            _ => {
                let producer_id = storage_call(broker, |s| s.next_producer_id()).await.map_err(unavailable)?;
                records::fresh(id, producer_id, now)
            }
        };
        let record = TxnRecord { state: TxnState::Empty, timeout_ms, started_ms: None, updated_ms: now, ..record };
        self.store(broker, &mut slot, record, Durability::Flushed).await?;
        let record = slot.record.as_ref().expect("just stored");
        Ok((record.producer_id, record.producer_epoch))
    }

    /// AddPartitionsToTxn: `topics` with their partitions join the open transaction.
    pub async fn add_partitions(
        &self,
        broker: &Broker,
        id: &str,
        producer: (i64, i16),
        partitions: &[(Topic, i32)],
    ) -> Result<(), ResponseError> {
        self.change(broker, id, producer, |slot, record| {
            for (topic, partition) in partitions {
                slot.topics.insert(topic.id, topic.clone());
                record.partitions.push((topic.id, *partition));
            }
            record.partitions.sort_unstable();
            record.partitions.dedup();
            Ok(())
        })
        .await
    }

    /// AddOffsetsToTxn: the transaction will commit offsets of `group`.
    pub async fn add_group(&self, broker: &Broker, id: &str, producer: (i64, i16), group: &str) -> Result<(), ResponseError> {
        self.change(broker, id, producer, |_, record| within_bounds(id, records::add_group(record, group))).await
    }

    /// TxnOffsetCommit: offsets of `group` to commit with the transaction. In V1 the group
    /// was added by AddOffsetsToTxn; V2 (v5+) adds it here, beginning a transaction if none
    /// is open, as Kafka's group coordinator does.
    pub async fn commit_offsets(
        &self,
        broker: &Broker,
        id: &str,
        producer: (i64, i16),
        group: &str,
        offsets: Vec<OffsetCommit>,
        v2: bool,
    ) -> Result<(), ResponseError> {
        // `change` begins a transaction where none is open, with no group: a V1 commit
        // then finds its group missing and is refused, changing nothing.
        self.change(broker, id, producer, |_, record| {
            if v2 {
                within_bounds(id, records::add_group(record, group))?;
            }
            if !record.groups.iter().any(|g| g == group) {
                return Err(ResponseError::InvalidTxnState);
            }
            for commit in offsets {
                let same =
                    |p: &PendingOffset| p.group == group && (p.commit.topic_id, p.commit.partition) == (commit.topic_id, commit.partition);
                record.pending_offsets.retain(|p| !same(p));
                record.pending_offsets.push(PendingOffset { group: group.to_owned(), commit });
            }
            within_bounds(id, record)
        })
        .await
    }

    /// EndTxn: commits or aborts the open transaction; answers once its markers, its state
    /// and its offsets are committed, with the producer id and epoch the producer goes on
    /// with. V1 (EndTxn v0-4) keeps the epoch, and a retry of an end already done
    /// succeeds; V2 (v5+, KIP-890) bumps it at every end ([`records::end_v2`]).
    pub async fn end(&self, broker: &Broker, id: &str, producer: (i64, i16), commit: bool, v2: bool) -> Result<(i64, i16), ResponseError> {
        if v2 {
            return self.end_v2(broker, id, producer, commit).await;
        }
        let mut slot = self.producers_slot(broker, id, producer).await?;
        let record = slot.record.as_ref().expect("checked");
        match (record.state, commit) {
            (TxnState::Ongoing, _) => {}
            (TxnState::CompleteCommit, true) | (TxnState::CompleteAbort, false) => return Ok(producer),
            _ => return Err(ResponseError::InvalidTxnState),
        }
        let record = record.clone();
        self.finish(broker, &mut slot, record, commit, None).await?;
        Ok(producer)
    }

    /// A V2 end: the markers carry the next epoch, which fences the ending epoch's late
    /// batches; a spent epoch moves the id to a new producer id, as Kafka does.
    async fn end_v2(&self, broker: &Broker, id: &str, producer: (i64, i16), commit: bool) -> Result<(i64, i16), ResponseError> {
        self.ready(broker).await?;
        let mut slot = self.existing(id).ok_or(ResponseError::InvalidProducerIdMapping)?.lock_owned().await;
        let record = slot.record.clone().ok_or(ResponseError::InvalidProducerIdMapping)?;
        let step = records::end_v2(&record, producer, commit)?;
        if step != EndV2::Done {
            // The coordinator keeps epochs at most LAST_EPOCH; saturating all the same (the
            // table is a superuser's to write).
            let spent = record.producer_epoch >= LAST_EPOCH;
            let successor = if spent { Some(storage_call(broker, |s| s.next_producer_id()).await.map_err(unavailable)?) } else { None };
            let bumped = TxnRecord { producer_epoch: record.producer_epoch.saturating_add(1), ..record };
            if step == EndV2::Finish {
                self.finish(broker, &mut slot, bumped, commit, successor).await?;
            } else {
                let done = records::completed(&bumped, false, now_ms());
                self.store(broker, &mut slot, records::succeeded_by(done, successor), Durability::Flushed).await?;
            }
        }
        let record = slot.record.as_ref().expect("stored");
        Ok((record.producer_id, record.producer_epoch))
    }

    /// Aborts every transaction open longer than its timeout, bumping its epoch (its
    /// producer is fenced, as Kafka does), then forgets the ids idle too long.
    pub async fn expire(&self, broker: &Broker) {
        if self.inner.ready.get().is_none() {
            return;
        }
        let now = now_ms();
        self.abort_timed_out(broker, now).await;
        self.forget_idle(broker, now).await;
    }

    async fn abort_timed_out(&self, broker: &Broker, now: i64) {
        let slots: Vec<(String, SlotRef)> = self.inner.slots.lock().iter().map(|(id, slot)| (id.clone(), slot.clone())).collect();
        for (id, slot) in slots {
            let Ok(mut slot) = slot.try_lock() else { continue };
            let expired = slot.record.as_ref().is_some_and(|r| {
                r.state == TxnState::Ongoing && r.started_ms.is_some_and(|started| now - started > i64::from(r.timeout_ms))
            });
            if expired {
                match self.abort_fencing(broker, &mut slot).await {
                    Ok(()) => logging::log(format!("pg_kafka: aborted transaction of \"{id}\": it was open longer than its timeout")),
                    Err(e) => logging::warning(format!("pg_kafka: cannot abort the timed-out transaction of \"{id}\": {e:?}")),
                }
            }
        }
    }

    /// Forgets the ids with no transaction open whose last change is older than
    /// `pg_kafka.transactional_id_expiration_ms` (Kafka's `transactional.id.expiration.ms`),
    /// so ids used once do not stay for ever; the next InitProducerId of one starts afresh.
    /// Only slots no request holds leave the map (its reference is then the only one, and
    /// no request can take one while the map is locked).
    async fn forget_idle(&self, broker: &Broker, now: i64) {
        let expiration = broker.config().transactional_id_expiration_ms;
        let idle = |slot: &Slot| slot.record.as_ref().is_some_and(|r| !r.state.is_open() && now - r.updated_ms > expiration);
        let expired: Vec<TxnRecord> = {
            let mut slots = self.inner.slots.lock();
            let ids: Vec<String> = slots
                .iter()
                .filter(|(_, slot)| Arc::strong_count(slot) == 1 && slot.try_lock().is_ok_and(|slot| idle(&slot)))
                .map(|(id, _)| id.clone())
                .collect();
            ids.iter().filter_map(|id| slots.remove(id)).filter_map(|slot| slot.try_lock().ok()?.record.clone()).collect()
        };
        if expired.is_empty() {
            return;
        }
        for record in &expired {
            self.inner.log.producers().forget(record.producer_id, record.producer_epoch);
        }
        let count = expired.len();
        let forgotten = storage_call(broker, move |s| expired.iter().try_for_each(|record| s.expire_transaction(record))).await;
        match forgotten {
            Ok(()) => logging::log(format!("pg_kafka: forgot {count} transactional id(s) idle longer than {expiration} ms")),
            Err(e) => logging::warning(format!("pg_kafka: cannot forget expired transactional ids: {e}")),
        }
    }

    /// Every record, for DescribeTransactions, ListTransactions and `kafka.transactions`.
    pub async fn records(&self, broker: &Broker) -> Result<Vec<TxnRecord>, ResponseError> {
        self.ready(broker).await?;
        let slots: Vec<SlotRef> = self.inner.slots.lock().values().cloned().collect();
        let mut records = Vec::with_capacity(slots.len());
        for slot in slots {
            records.extend(slot.lock().await.record.clone());
        }
        records.sort_by(|a, b| a.transactional_id.cmp(&b.transactional_id));
        Ok(records)
    }

    /// A change of an open (or opening) transaction by its producer.
    async fn change(
        &self,
        broker: &Broker,
        id: &str,
        producer: (i64, i16),
        apply: impl FnOnce(&mut Slot, &mut TxnRecord) -> Result<(), ResponseError>,
    ) -> Result<(), ResponseError> {
        let mut slot = self.producers_slot(broker, id, producer).await?;
        let mut record = slot.record.clone().expect("checked");
        let now = now_ms();
        if record.state != TxnState::Ongoing {
            record = records::begun(record, now);
        }
        apply(&mut slot, &mut record)?;
        record.updated_ms = now;
        let durability = records::change_durability(&record);
        self.store(broker, &mut slot, record, durability).await
    }

    /// Stores `record` as the id's state, then keeps it.
    async fn store(&self, broker: &Broker, slot: &mut Slot, record: TxnRecord, durability: Durability) -> Result<(), ResponseError> {
        let stored = record.clone();
        storage_call(broker, move |s| s.save_transaction(&stored, durability)).await.map_err(unavailable)?;
        self.publish(&record);
        slot.record = Some(record);
        Ok(())
    }

    /// Aborts the open transaction with the epoch bumped: markers of the new epoch end it,
    /// and its producer (at the old epoch) is fenced.
    async fn abort_fencing(&self, broker: &Broker, slot: &mut Slot) -> Result<(), ResponseError> {
        let Some(record) = slot.record.clone() else { return Ok(()) };
        let bumped = TxnRecord { producer_epoch: record.producer_epoch.saturating_add(1).min(LAST_EPOCH), ..record };
        self.finish(broker, slot, bumped, false, None).await
    }

    /// Ends the slot's transaction: the markers, the Complete state and (on commit) the
    /// offsets in one group commit. Kafka stores PrepareCommit first because its markers go
    /// to many partition leaders; here one Postgres commit holds them all.
    /// `record` is the slot's Ongoing record (its epoch bumped when aborting to fence, and
    /// at every V2 end); the slot holds it only once the end committed, under `successor`'s
    /// producer id when one takes over a spent epoch.
    async fn finish(
        &self,
        broker: &Broker,
        slot: &mut Slot,
        record: TxnRecord,
        commit: bool,
        successor: Option<i64>,
    ) -> Result<(), ResponseError> {
        let prepare_state = if commit { TxnState::PrepareCommit } else { TxnState::PrepareAbort };
        let prepared = TxnRecord { state: prepare_state, updated_ms: now_ms(), ..record };
        if prepared.partitions.iter().any(|(topic_id, _)| !slot.topics.contains_key(topic_id)) {
            // Only after a restart: AddPartitionsToTxn resolved the topics of this start.
            let topics = storage_call(broker, |s| s.all_topics()).await.map_err(unavailable)?;
            slot.topics.extend(topics.into_iter().map(|t| (t.id, t)));
        }
        // Neither stored nor kept: the markers and the Complete state commit together, so
        // a crash before leaves the transaction Ongoing (aborted at start; its producer
        // was never told it committed). Published, it stops Produce adding to it.
        self.publish(&prepared);
        let complete = records::succeeded_by(records::completed(&prepared, commit, now_ms()), successor);
        let offsets = if commit { records::offsets_by_group(&prepared) } else { Vec::new() };
        let stored = complete.clone();
        let then = Box::new(move |s: &mut dyn crate::storage::Storage| {
            s.save_transaction(&stored, Durability::Flushed)?;
            offsets.iter().try_for_each(|(group, commits)| s.commit_offsets(group, commits))
        });
        let generation = broker.topics.generation();
        let now = now_ms();
        let appends: Vec<PartitionAppend> = prepared
            .partitions
            .iter()
            .filter_map(|&(topic_id, partition)| {
                let topic = slot.topics.get(&topic_id)?.clone();
                Some(marker_append(topic, generation, partition, &prepared, commit, now))
            })
            .collect();
        let bytes = appends.iter().map(|a| a.batch_bytes).sum();
        let written = match broker.commits.enqueue_then(appends, bytes, Some(then)).await {
            Err(e) => Err(e.to_string()),
            Ok(results) => match results.iter().find_map(|r| r.err()).filter(|e| *e != ResponseError::UnknownTopicOrPartition) {
                Some(error) => Err(format!("{error:?}")),
                None => Ok(()),
            },
        };
        if let Err(reason) = written {
            logging::warning(format!("pg_kafka: writing the markers of \"{}\" failed: {reason}", prepared.transactional_id));
            // Produce sees the transaction as storage still has it: open, at its epoch.
            if let Some(open) = &slot.record {
                self.publish(open);
            }
            return Err(ResponseError::CoordinatorNotAvailable);
        }
        if complete.producer_id != prepared.producer_id {
            self.inner.log.producers().forget(prepared.producer_id, prepared.producer_epoch);
        }
        self.publish(&complete);
        slot.record = Some(complete);
        Ok(())
    }
}

/// The marker of `record`'s transaction for one partition, as an append: a control batch
/// for a batch-layout topic, a control row (Kafka's control record) for a row-layout one.
fn marker_append(topic: Topic, generation: u64, partition: i32, record: &TxnRecord, commit: bool, now: i64) -> PartitionAppend {
    let (producer_id, producer_epoch) = (record.producer_id, record.producer_epoch);
    let (records, batch, row_txn) = match topic.layout {
        StorageLayout::Batches => (Vec::new(), Some(marker(producer_id, producer_epoch, commit, now)), None),
        StorageLayout::Rows => {
            let txn = TxnPart { producer_id, producer_epoch, marker: Some(commit) };
            (vec![marker_record(commit, now)], None, Some(txn))
        }
    };
    PartitionAppend {
        topic,
        topics_generation: generation,
        partition,
        records,
        batch_bytes: 0,
        batch,
        producer: None,
        log_append_time: None,
        row_txn,
    }
}

/// Refuses a transaction past [`MAX_TRANSACTION_GROUPS`] or [`MAX_TRANSACTION_OFFSETS`],
/// with a line in the log (Kafka sets no such bound; its clients never come near it).
fn within_bounds(id: &str, record: &TxnRecord) -> Result<(), ResponseError> {
    if record.groups.len() <= MAX_TRANSACTION_GROUPS && record.pending_offsets.len() <= MAX_TRANSACTION_OFFSETS {
        return Ok(());
    }
    logging::warning(format!(
        "pg_kafka: refused a change of transactional id \"{id}\": a transaction holds at most {MAX_TRANSACTION_GROUPS} groups \
         and {MAX_TRANSACTION_OFFSETS} offsets"
    ));
    Err(ResponseError::InvalidRequest)
}

fn unavailable(e: impl std::fmt::Display) -> ResponseError {
    logging::warning(format!("pg_kafka: transaction state not stored: {e}"));
    ResponseError::CoordinatorNotAvailable
}

#[cfg(test)]
mod tests;
