//! Compaction of topics whose `cleanup.policy` contains `compact`, as Kafka's log cleaner
//! defines it: for each key only the latest record survives, once it is out of the head
//! (Kafka's active segment: the newest `segment.bytes` / `segment.ms`) and older than
//! `min.compaction.lag.ms`; offsets never change (consumers see gaps); a tombstone (null
//! value) goes `delete.retention.ms` after compaction reached it; records without a key
//! go (Produce refuses them on a compacted topic; older ones came before the policy).
//!
//! Why here: it runs in the retention pass (a reader process's own session and
//! transaction, beside the group commit; no append lock: it only touches offsets below
//! the high watermark, which the writer never writes again), and it is incremental as
//! Kafka's is. Per partition a pass:
//!
//! ```text
//!  log start ........ cleaned_to ............ end ......... high watermark
//!  |  clean (compacted)  |  dirty (new since)  |  head (left alone)  |
//! ```
//! 1. finds `end`: the head's start, the first record younger than the minimum lag, never
//!    past the last record (the high watermark is the last stored offset + 1);
//! 2. cleans when the dirty part is at least `min.cleanable.dirty.ratio` of what the
//!    partition holds, or a dirty record is older than `max.compaction.lag.ms`;
//! 3. maps each key of the dirty part to its latest offset (bounded: a pass that fills the
//!    map stops its dirty part there, the rest is the next pass's);
//! 4. walks log start..end in chunks, removing what the map supersedes, keyless records
//!    and tombstones below the horizon: rows are deleted, batches rewritten without them
//!    (same offsets, last offset delta and producer fields) or deleted when emptied;
//! 5. stores where it reached (`kafka.partition_cleaning`).
//!
//! Transactions (either layout), as Kafka's cleaner treats them: the cleanable part ends
//! at the partition's last stable offset (a record of an open transaction may yet be
//! aborted), and a record of an aborted transaction supersedes nothing (it is removed
//! once a later record of its key is committed; markers stay).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::config::topic::CompactionSettings;
use crate::metrics::{Cleanable, CleanerFigures};
use crate::protocol::records::{decode_batches, encode_batch_like, MAX_TIMESTAMP_AT};
use crate::storage::batches::{
    base_offset_of, last_offset_of, record_count, transactional_producer_of, unpack, BatchRow, MAX_UNPACKED_BYTES,
};
use crate::storage::transactions::AbortedTxn;
use crate::storage::{payload_bytes, PartitionCleaning, ReadLimit, Storage, StorageError, StorageLayout, StoredRecord, Topic};

/// Records the dirty part of one pass may hold (the rest waits for the next pass).
const MAX_DIRTY_RECORDS: usize = 1_000_000;
/// Key bytes the map of one pass may hold.
const MAX_KEY_BYTES: usize = 64 << 20;
/// Bytes read from storage at a time.
const CHUNK_BYTES: usize = 8 << 20;
/// Passes whose reach is remembered for tombstones (older ones merge into later ones).
const MAX_REACHED: usize = 32;

/// What a pass did to one partition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cleaned {
    pub topic: String,
    pub topic_id: i32,
    pub partition: i32,
    pub removed: i64,
    pub cleaned_to: i64,
}

/// How long one pass may spend walking partitions (it runs in one reader transaction
/// under `pg_kafka.statement_timeout_ms`, 30 s by default, with retention before it): a
/// round of cleaning that takes longer goes on in the next passes.
pub const PASS_BUDGET: Duration = Duration::from_secs(10);
/// The longest rest between two chunks.
const MAX_REST: Duration = Duration::from_secs(1);

/// How long a pass may work, and at what pace: after each chunk it read or cleaned it
/// rests so that work takes `work_percent` of its time (`pg_kafka.compaction_work_percent`:
/// on a small machine the pass would otherwise take a core from the writer and its
/// clients; Kafka's cleaner is throttled by `log.cleaner.io.max.bytes.per.second`).
#[derive(Clone, Copy, Debug)]
pub struct Budget {
    pub deadline: Instant,
    pub work_percent: u32,
}

impl Budget {
    /// A pass that starts now, paced at `work_percent` (100: no rest).
    pub fn pass(work_percent: u32) -> Budget {
        Budget { deadline: Instant::now() + PASS_BUDGET, work_percent: work_percent.clamp(1, 100) }
    }

    fn over(&self) -> bool {
        Instant::now() >= self.deadline
    }

    /// Rests after work that began at `began`, as the pace asks (never past the deadline).
    fn rest_after(&self, began: Instant) {
        if self.work_percent >= 100 {
            return;
        }
        let worked = began.elapsed();
        let rest = worked.mul_f64(f64::from(100 - self.work_percent) / f64::from(self.work_percent)).min(MAX_REST);
        let rest = rest.min(self.deadline.saturating_duration_since(Instant::now()));
        if !rest.is_zero() {
            std::thread::sleep(rest);
        }
    }
}

/// What a pass did: the partitions it cleaned, and where compaction stands on every
/// compacted partition.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Compaction {
    pub cleaned: Vec<Cleaned>,
    pub figures: Vec<CleanerFigures>,
}

/// Compacts the partitions of compacted topics that are due, as of `now_ms`, least
/// recently cleaned first, until the budget's deadline (each partition it reaches walks at
/// least a chunk, so every round ends).
pub fn compact_all(storage: &mut dyn Storage, now_ms: i64, budget: Budget) -> Result<Compaction, StorageError> {
    let mut due = Vec::new();
    for topic in storage.all_topics()?.into_iter().filter(|t| t.settings.compact) {
        for partition in 0..topic.partitions {
            let state = storage.cleaning_state(topic.id, partition)?;
            due.push((state, topic.clone(), partition));
        }
    }
    due.sort_by_key(|(state, topic, partition)| (state.as_ref().map_or(i64::MIN, |s| s.last_pass_ms), topic.id, *partition));
    let mut pass = Compaction::default();
    for (state, topic, partition) in due {
        let mut state = state.unwrap_or_default();
        let looked = if !budget.over() { compact_from(storage, &topic, partition, &mut state, now_ms, budget)? } else { Looked::default() };
        pass.cleaned.extend(looked.cleaned);
        pass.figures.push(CleanerFigures {
            topic: topic.name.clone(),
            partition,
            cleanable: looked.cleanable,
            last_pass_ms: (state.last_pass_ms > 0).then_some(state.last_pass_ms),
        });
    }
    Ok(pass)
}

/// What a pass did to one partition and what it measured there.
#[derive(Default)]
struct Looked {
    cleaned: Option<Cleaned>,
    /// The dirty part below the head, when the pass measured it (not while a round of
    /// cleaning goes on: its dirty part was measured when it began).
    cleanable: Option<Cleanable>,
}

/// One record as the cleaner sees it: its value dropped, only whether it had one kept.
struct Seen {
    offset: i64,
    key: Option<Bytes>,
    tombstone: bool,
    timestamp_ms: i64,
    bytes: usize,
    /// Written by a transaction that aborted: it supersedes nothing.
    aborted: bool,
    /// A transaction's marker (a row-layout control row): kept, its key not the topic's.
    marker: bool,
}

impl Seen {
    fn of(record: StoredRecord) -> Seen {
        let bytes = payload_bytes(&record);
        let (offset, tombstone, timestamp_ms) = (record.offset, record.value.is_none(), record.timestamp_ms);
        Seen { offset, tombstone, key: record.key, timestamp_ms, bytes, aborted: false, marker: false }
    }

    /// A row of the row layout, which says itself whether it is of a transaction.
    fn of_row(record: StoredRecord, aborted: &[AbortedTxn]) -> Seen {
        match record.txn {
            None => Seen::of(record),
            Some(txn) if txn.control => Seen { key: None, marker: true, ..Seen::of(record) },
            Some(txn) => {
                let aborted = in_aborted(aborted, txn.producer_id, (record.offset, record.offset));
                Seen { aborted, ..Seen::of(record) }
            }
        }
    }
}

/// Whether a stored batch holds records of a transaction that aborted.
fn is_aborted(batch: &[u8], aborted: &[AbortedTxn]) -> bool {
    let Some(producer_id) = transactional_producer_of(batch) else { return false };
    in_aborted(aborted, producer_id, (base_offset_of(batch), last_offset_of(batch)))
}

/// Whether `producer_id`'s records at offsets `first..=last` lie in one of its `aborted`
/// transactions.
fn in_aborted(aborted: &[AbortedTxn], producer_id: i64, (first, last): (i64, i64)) -> bool {
    aborted.iter().any(|t| t.producer_id == producer_id && t.first_offset <= first && last <= t.last_offset)
}

/// Compacts one partition if it is due (or goes on with its round); `None` when it was not.
pub fn compact_partition(
    storage: &mut dyn Storage,
    topic: &Topic,
    partition: i32,
    now_ms: i64,
    deadline: Instant,
) -> Result<Option<Cleaned>, StorageError> {
    let mut state = storage.cleaning_state(topic.id, partition)?.unwrap_or_default();
    let budget = Budget { deadline, work_percent: 100 };
    Ok(compact_from(storage, topic, partition, &mut state, now_ms, budget)?.cleaned)
}

/// [`compact_partition`] from the partition's cleaner state as stored (`state`, which it
/// moves on).
fn compact_from(
    storage: &mut dyn Storage,
    topic: &Topic,
    partition: i32,
    state: &mut PartitionCleaning,
    now_ms: i64,
    budget: Budget,
) -> Result<Looked, StorageError> {
    let nothing_cleanable = Looked { cleaned: None, cleanable: Some(Cleanable::NONE) };
    let settings = topic.settings.compaction;
    let high = storage.next_offset(topic.id, partition)?;
    let Some(start) = storage.first_offset(topic.id, partition)? else { return Ok(nothing_cleanable) };
    let from = state.cleaned_to.max(start);
    let resuming = state.round_end > from;
    let (first_open, aborted) = storage.partition_transactions((topic.id, partition), from, high)?;
    let end = if resuming { state.round_end } else { cleanable_end(storage, topic.id, partition, from, high, &settings, now_ms)? };
    // Nothing at or past the last stable offset: an open transaction's record may abort.
    let end = first_open.map_or(end, |open| end.min(open));
    if end <= from {
        return Ok(nothing_cleanable);
    }
    let (dirty, read_to) = read_seen(storage, topic, partition, (from, end), &aborted, budget)?;
    // A batch reaching past `end` is the next round's: the dirty part ends before it.
    let (latest, end) = latest_offsets(&dirty, end.min(read_to));
    if end <= from {
        return Ok(nothing_cleanable);
    }
    let mut cleanable = None;
    if !resuming {
        let dirty_bytes = dirty.iter().take_while(|s| s.offset < end).map(|s| s.bytes as i64).sum();
        let overdue = dirty.first().is_some_and(|s| s.timestamp_ms < now_ms.saturating_sub(settings.max_lag_ms));
        let measured = Cleanable { bytes: dirty_bytes, dirty_ratio: dirty_ratio(dirty_bytes, state.clean_bytes) };
        if !overdue && !dirty_enough(dirty_bytes, state.clean_bytes, settings.min_dirty_ppm) {
            return Ok(Looked { cleaned: None, cleanable: Some(measured) });
        }
        cleanable = Some(measured);
        (state.round_end, state.walked_to, state.clean_bytes) = (end, start, 0);
    }
    drop(dirty);
    let horizon = tombstone_horizon(&state.reached, settings.delete_retention_ms, now_ms);
    let decide = |offset: i64, key: Option<&Bytes>, tombstone: bool| removable(offset, key, tombstone, &latest, horizon);
    let walk = Walk { topic_id: topic.id, partition, start, from: state.walked_to.max(start), end, budget };
    let walked = match topic.layout {
        StorageLayout::Rows => clean_rows(storage, &walk, decide)?,
        StorageLayout::Batches => clean_batches(storage, &walk, decide)?,
    };
    state.clean_bytes += walked.kept_bytes;
    state.last_pass_ms = now_ms;
    state.last_removed = walked.removed;
    state.removed_total += walked.removed;
    if walked.reached >= end {
        state.cleaned_to = end;
        state.reached = reached_after(&state.reached, (end, now_ms), settings.delete_retention_ms, now_ms);
        (state.round_end, state.walked_to) = (0, 0);
    } else {
        state.walked_to = walked.reached;
    }
    storage.save_cleaning_state(topic.id, partition, state)?;
    // A round that ended leaves nothing cleanable below its end; one going on, what it measured.
    let cleanable = if state.round_end == 0 { Some(Cleanable::NONE) } else { cleanable };
    let cleaned =
        Cleaned { topic: topic.name.clone(), topic_id: topic.id, partition, removed: walked.removed, cleaned_to: state.cleaned_to };
    Ok(Looked { cleaned: Some(cleaned), cleanable })
}

/// One pass's walk over a partition: `from..end` of a round that cleans `start..end`.
struct Walk {
    topic_id: i32,
    partition: i32,
    start: i64,
    from: i64,
    end: i64,
    budget: Budget,
}

/// What a walk did: records removed, payload bytes kept, and where it stopped (`end`
/// when it got there).
struct Walked {
    removed: i64,
    kept_bytes: i64,
    reached: i64,
}

/// Where the cleanable part ends: the head's start (the newest `segment.bytes` that are
/// also younger than `segment.ms`, or `max.compaction.lag.ms` which rolls Kafka's segments
/// too), the first record younger than `min.compaction.lag.ms`, and never past the last
/// record (removing it would lower the high watermark).
fn cleanable_end(
    storage: &mut dyn Storage,
    topic_id: i32,
    partition: i32,
    from: i64,
    high: i64,
    settings: &CompactionSettings,
    now_ms: i64,
) -> Result<i64, StorageError> {
    let first_younger = |storage: &mut dyn Storage, age_ms: i64| -> Result<i64, StorageError> {
        let since = now_ms.saturating_sub(age_ms);
        Ok(storage.offset_for_timestamp(topic_id, partition, since)?.map_or(high, |(offset, _)| offset))
    };
    let by_time = first_younger(storage, settings.segment_ms.min(settings.max_lag_ms))?;
    // The head is what is both young and within the newest segment.bytes: when nothing is
    // young, the bytes do not matter (and are not summed). Only the dirty part's bytes
    // are (where the head starts below `from`, nothing is cleanable by bytes).
    let by_bytes = if by_time >= high - 1 {
        by_time
    } else {
        storage.first_offset_within_bytes(topic_id, partition, settings.segment_bytes, from)?.unwrap_or(from)
    };
    let mut end = by_bytes.max(by_time).min(high - 1);
    if settings.min_lag_ms > 0 {
        end = end.min(first_younger(storage, settings.min_lag_ms)?);
    }
    Ok(end)
}

/// `dirty` bytes' share of those and the `clean` part's (Kafka's cleanable ratio).
fn dirty_ratio(dirty: i64, clean: i64) -> f64 {
    let total = dirty.max(0).saturating_add(clean.max(0));
    if total == 0 {
        0.0
    } else {
        dirty.max(0) as f64 / total as f64
    }
}

/// Whether `dirty` bytes are at least `min_ppm` millionths of what the partition holds.
fn dirty_enough(dirty: i64, clean: i64, min_ppm: u32) -> bool {
    let total = dirty.saturating_add(clean.max(0));
    dirty > 0 && i128::from(dirty) * 1_000_000 >= i128::from(total) * i128::from(min_ppm)
}

/// Each key of the dirty records below `end` with its latest offset, and where the dirty
/// part ends: earlier than `end` when the map would outgrow [`MAX_KEY_BYTES`] or the
/// records were cut at [`MAX_DIRTY_RECORDS`].
fn latest_offsets(dirty: &[Seen], end: i64) -> (HashMap<Bytes, i64>, i64) {
    let mut latest = HashMap::new();
    let mut key_bytes = 0;
    let mut reached = end;
    for (at, seen) in dirty.iter().enumerate() {
        if seen.offset >= end {
            break;
        }
        if let Some(key) = seen.key.as_ref().filter(|_| !seen.aborted) {
            if !latest.contains_key(key) {
                if key_bytes + key.len() > MAX_KEY_BYTES && !latest.is_empty() {
                    reached = seen.offset;
                    break;
                }
                key_bytes += key.len();
            }
            latest.insert(key.clone(), seen.offset);
        }
        if at + 1 == MAX_DIRTY_RECORDS {
            reached = reached.min(seen.offset + 1);
        }
    }
    (latest, reached)
}

/// Whether compaction removes the record at `offset`.
fn removable(offset: i64, key: Option<&Bytes>, tombstone: bool, latest: &HashMap<Bytes, i64>, horizon: i64) -> bool {
    match key {
        None => true,
        Some(key) => latest.get(key).is_some_and(|&newest| newest > offset) || (tombstone && offset < horizon),
    }
}

/// Below which offset tombstones may go: what a pass reached at least
/// `delete_retention_ms` ago (0: none did).
fn tombstone_horizon(reached: &[(i64, i64)], delete_retention_ms: i64, now_ms: i64) -> i64 {
    let before = now_ms.saturating_sub(delete_retention_ms);
    reached.iter().filter(|(_, at)| *at <= before).map(|(offset, _)| *offset).max().unwrap_or(0)
}

/// `reached` with a new pass added, pruned: entries older than the horizon's own are
/// dropped, and past [`MAX_REACHED`] middle entries merge into later ones (a tombstone
/// then waits longer, never less).
fn reached_after(reached: &[(i64, i64)], pass: (i64, i64), delete_retention_ms: i64, now_ms: i64) -> Vec<(i64, i64)> {
    let before = now_ms.saturating_sub(delete_retention_ms);
    let horizon_at = reached.iter().filter(|(_, at)| *at <= before).map(|(_, at)| *at).max();
    let mut kept: Vec<(i64, i64)> = reached.iter().copied().filter(|(_, at)| horizon_at.is_none_or(|h| *at >= h)).collect();
    kept.push(pass);
    while kept.len() > MAX_REACHED {
        kept.remove(1);
    }
    kept
}

/// Reads the records of `from..below` as the cleaner sees them, at most
/// [`MAX_DIRTY_RECORDS`], and where the reading stopped (after the last whole batch read,
/// in the batch layout); those of `aborted` transactions marked so.
fn read_seen(
    storage: &mut dyn Storage,
    topic: &Topic,
    partition: i32,
    (from, below): (i64, i64),
    aborted: &[AbortedTxn],
    budget: Budget,
) -> Result<(Vec<Seen>, i64), StorageError> {
    let max = MAX_DIRTY_RECORDS;
    let mut seen = Vec::new();
    let mut cursor = from;
    while cursor < below && seen.len() < max {
        let began = Instant::now();
        let limit = ReadLimit { from: cursor, below, max_bytes: CHUNK_BYTES, at_least_one: true };
        let (records, read_to): (Vec<Seen>, _) = match topic.layout {
            StorageLayout::Rows => {
                let rows = storage.read(topic.id, partition, limit)?;
                let read_to = rows.last().map(|r| r.offset + 1);
                (rows.into_iter().map(|r| Seen::of_row(r, aborted)).collect(), read_to)
            }
            StorageLayout::Batches => {
                let batches = storage.read_batches(topic.id, partition, limit)?;
                let read_to = batches.last().map(|b| last_offset_of(b) + 1);
                let mut records = Vec::new();
                for batch in &batches {
                    let aborted = is_aborted(batch, aborted);
                    records.extend(unpacked(std::slice::from_ref(batch))?.into_iter().map(|r| Seen { aborted, ..Seen::of(r) }));
                }
                (records, read_to)
            }
        };
        let Some(read_to) = read_to else { break };
        seen.extend(records.into_iter().filter(|r| (cursor..below).contains(&r.offset)).take(max - seen.len()));
        cursor = read_to;
        budget.rest_after(began);
    }
    Ok((seen, cursor))
}

fn unpacked(batches: &[Bytes]) -> Result<Vec<StoredRecord>, StorageError> {
    let mut records = Vec::new();
    for batch in batches {
        records.extend(unpack(batch).map_err(|e| StorageError::CorruptBatch(e.to_string()))?);
    }
    Ok(records)
}

type Decide<'a> = dyn Fn(i64, Option<&Bytes>, bool) -> bool + 'a;

/// Walks `walk` a chunk at a time until its end or its deadline: `chunk` cleans the chunk
/// from an offset and says what it did (`None`: nothing is left to read).
fn walk_in_chunks(walk: &Walk, mut chunk: impl FnMut(i64) -> Result<Option<Walked>, StorageError>) -> Result<Walked, StorageError> {
    let mut walked = Walked { removed: 0, kept_bytes: 0, reached: walk.from };
    while walked.reached < walk.end {
        let began = Instant::now();
        let Some(done) = chunk(walked.reached)? else {
            walked.reached = walk.end;
            break;
        };
        walked.removed += done.removed;
        walked.kept_bytes += done.kept_bytes;
        walked.reached = done.reached;
        if walk.budget.over() {
            break;
        }
        walk.budget.rest_after(began);
    }
    Ok(walked)
}

/// Deletes the rows of the walk the decision removes.
fn clean_rows(storage: &mut dyn Storage, walk: &Walk, decide: impl Fn(i64, Option<&Bytes>, bool) -> bool) -> Result<Walked, StorageError> {
    walk_in_chunks(walk, |from| {
        let rows =
            storage.read(walk.topic_id, walk.partition, ReadLimit { from, below: walk.end, max_bytes: CHUNK_BYTES, at_least_one: true })?;
        let Some(last) = rows.last().map(|r| r.offset) else { return Ok(None) };
        let mut done = Walked { removed: 0, kept_bytes: 0, reached: last + 1 };
        let mut gone = Vec::new();
        for row in rows.into_iter().map(|r| Seen::of_row(r, &[])) {
            if !row.marker && decide(row.offset, row.key.as_ref(), row.tombstone) {
                gone.push(row.offset);
            } else {
                done.kept_bytes += row.bytes as i64;
            }
        }
        if !gone.is_empty() {
            storage.delete_messages(walk.topic_id, walk.partition, &gone)?;
            done.removed = gone.len() as i64;
        }
        Ok(Some(done))
    })
}

/// Rewrites the batches of the walk without the records the decision removes. A batch
/// reaching past `end` keeps its later records.
fn clean_batches(
    storage: &mut dyn Storage,
    walk: &Walk,
    decide: impl Fn(i64, Option<&Bytes>, bool) -> bool,
) -> Result<Walked, StorageError> {
    let decide: &Decide<'_> = &decide;
    walk_in_chunks(walk, |from| {
        let limit = ReadLimit { from, below: walk.end, max_bytes: CHUNK_BYTES, at_least_one: true };
        let batches = storage.read_batches(walk.topic_id, walk.partition, limit)?;
        if batches.is_empty() {
            return Ok(None);
        }
        let mut done = Walked { removed: 0, kept_bytes: 0, reached: from };
        let mut changes = Vec::new();
        for stored in batches {
            let batch = compacted_batch(walk.topic_id, walk.partition, &stored, walk.start, walk.end, decide)?;
            done.reached = done.reached.max(batch.change.0 + 1);
            done.removed += batch.removed;
            done.kept_bytes += batch.kept_bytes;
            if batch.removed > 0 {
                changes.push(batch.change);
            }
        }
        if !changes.is_empty() {
            storage.replace_batches(walk.topic_id, walk.partition, &changes)?;
        }
        Ok(Some(done))
    })
}

/// One stored batch after compaction.
struct CompactedBatch {
    /// Its last offset, which names it, and what replaces it (`None`: it was emptied).
    change: (i64, Option<BatchRow>),
    /// Records removed from it.
    removed: i64,
    /// Payload bytes kept of its records in `start..end`.
    kept_bytes: i64,
}

/// One stored batch without the records the decision removes.
fn compacted_batch(
    topic_id: i32,
    partition: i32,
    stored: &Bytes,
    start: i64,
    end: i64,
    decide: &Decide<'_>,
) -> Result<CompactedBatch, StorageError> {
    let decoded = decode_batches(stored.clone(), MAX_UNPACKED_BYTES).map_err(|e| StorageError::CorruptBatch(e.to_string()))?;
    let batch = decoded.into_iter().next().ok_or_else(|| StorageError::CorruptBatch("no batch in a stored row".to_owned()))?;
    let last_offset = batch.base_offset + i64::from(batch.last_offset_delta);
    if batch.is_control() {
        // A transaction marker is kept (Kafka's cleaner keeps markers while the
        // transaction's records may still be read); its key is not a key of the topic's.
        return Ok(CompactedBatch { change: (last_offset, None), removed: 0, kept_bytes: 0 });
    }
    let len = |b: &Option<Bytes>| b.as_ref().map_or(0, Bytes::len) as i64;
    let (mut gone, mut kept_bytes) = (0, 0);
    let mut survivors = Vec::with_capacity(batch.records.len());
    for record in &batch.records {
        let offset = batch.base_offset + i64::from(record.offset_delta);
        let cleanable = (start..end).contains(&offset);
        if cleanable && decide(offset, record.key.as_ref(), record.value.is_none()) {
            gone += 1;
            continue;
        }
        if cleanable {
            kept_bytes += len(&record.key) + len(&record.value) + len(&record.headers);
        }
        survivors.push(record.clone());
    }
    if gone == 0 || survivors.is_empty() {
        return Ok(CompactedBatch { change: (last_offset, None), removed: gone, kept_bytes });
    }
    let bytes = encode_batch_like(&batch, &survivors);
    let row = BatchRow {
        topic_id,
        partition,
        base_offset: batch.base_offset,
        record_count: record_count(&bytes) as i32,
        max_timestamp_ms: i64::from_be_bytes(bytes[MAX_TIMESTAMP_AT..MAX_TIMESTAMP_AT + 8].try_into().expect("a whole header")),
        producer_id: batch.producer_id,
        producer_epoch: batch.producer_epoch,
        base_sequence: batch.base_sequence,
        bytes,
    };
    Ok(CompactedBatch { change: (last_offset, Some(row)), removed: gone, kept_bytes })
}

#[cfg(test)]
#[path = "compaction_tests.rs"]
mod tests;
