//! Group commit: many producers' batches, one insert, one transaction, then every ack.
//!
//! ```text
//!  produce handlers (tokio)                 main thread, each loop turn
//!  ────────────────────────                 ─────────────────────────────────────────
//!  CommitQueue::submit(appends) ──ProduceJob──▶ flume ──▶ GroupCommitter::poll
//!        │ wake (eventfd)                                 │ due? (flush interval elapsed,
//!        ▼                                                │       or max_batch_bytes queued)
//!  reply.await ◀───────── acknowledge ◀── write ◀── drain ┘
//!                          (after COMMIT)   │ assign offsets from in-memory counters
//!                                           │ ONE COPY of every row (Storage::append)
//!                                           │ ONE transaction
//! ```
//!
//! Invariants:
//! - A producer hears success only after the transaction that holds its rows committed, and
//!   an acks=all producer only once the synchronous standbys have it too (a commit that
//!   waits for them is local, and its answers wait in [`StandbyAcks`] while the writer goes
//!   on with the next group).
//! - Offsets per (topic, partition) are strictly increasing without gaps: counters are
//!   loaded once from the table (`max(offset)+1`) and advanced in memory; when a write
//!   fails, the counters it touched are forgotten and reloaded from the table next time,
//!   so nothing that was rolled back leaves a gap or is handed out twice.
//! - One offset scheme for Kafka and SQL producers: a write first takes the append lock of
//!   every partition it writes (`Storage::try_lock_partition`, never waiting), the lock a
//!   SQL session's `kafka.produce()` holds until its transaction ends. A job with a
//!   partition locked elsewhere waits for a later flush (and so does every later job on
//!   its partitions, keeping each partition's order); the others go ahead. Under the
//!   locks, counters of partitions SQL sessions wrote since are dropped and re-read
//!   ([`SqlAppendLog`]), so offsets stay gap-free and in commit order on both paths.
//! - Topics arrive resolved (id, partitions, settings) by the Produce handler through the
//!   [`TopicCache`]; an append resolved before the cache was invalidated (a topic deleted
//!   or its configs changed) is checked against storage again, so no row is written under
//!   a deleted topic id.
//! - Nothing here touches Postgres directly: storage goes through [`Storage`] inside a
//!   [`JobRunner`], so the same code runs on `MemoryStorage` in unit tests.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kafka_protocol::ResponseError;

use super::commit_queue::ProduceJob;
pub use super::commit_queue::{AfterAppend, AppendResult, CommitQueue};
use super::replicas::{self, Durability};
use super::sequences::{ProducerBatch, SequenceCheck, Sequences};
use super::standby_acks::{LocalCommit, ReplicationProgress, StandbyAcks, WaitingAnswer};
use super::transactions::TxnWrites;
use crate::metrics::Metrics;
use crate::protocol::records::Record;
use crate::storage::batches::CheckedBatch;
use crate::storage::bridge::{JobRunner, Waker};
use crate::storage::sql_appends::{SqlAppendLog, SqlAppends};
use crate::storage::topics::TopicCache;
use crate::storage::transactions::TxnLog;
use crate::storage::watermarks::Watermarks;
use crate::storage::{postgres_timestamp_us, BatchRow, MessageRows, RowTxn, Storage, StorageError, Topic};

/// Records for one partition, as one producer sent them.
#[derive(Clone, Debug)]
pub struct PartitionAppend {
    /// The topic as the handler resolved it.
    pub topic: Topic,
    /// The [`TopicCache`] generation `topic` was resolved at.
    pub topics_generation: u64,
    /// A partition of `topic` (the handler checked the range).
    pub partition: i32,
    /// The records, for a topic in the row layout.
    pub records: Vec<Record>,
    /// The batch itself, checked, for a topic in the batch layout (`records` is empty then).
    pub batch: Option<CheckedBatch>,
    /// The record batch's size as sent, checked against the topic's `max.message.bytes`.
    pub batch_bytes: usize,
    /// Set for an idempotent producer's batch: what its sequence check needs.
    pub producer: Option<ProducerBatch>,
    /// The broker's time given to the records of a `LogAppendTime` topic, answered to the
    /// producer in `log_append_time_ms` (`None`: CreateTime, answered -1).
    pub log_append_time: Option<i64>,
    /// A row-layout append's transaction (a batch-layout append's batch says it itself).
    pub row_txn: Option<TxnPart>,
}

/// An append's part in a transaction: its producer, and whether it is the marker that
/// ends the transaction on the partition (`Some(commit)`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TxnPart {
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub marker: Option<bool>,
}

impl PartitionAppend {
    /// The transaction the append belongs to, whatever its topic's layout.
    pub fn txn(&self) -> Option<TxnPart> {
        match &self.batch {
            Some(b) => {
                b.transactional.then_some(TxnPart { producer_id: b.producer_id, producer_epoch: b.producer_epoch, marker: b.marker })
            }
            None => self.row_txn,
        }
    }
}

#[derive(Clone, Copy, Debug)]
pub struct CommitSettings {
    /// Flush at most this often (0: whenever anything is queued).
    pub flush_interval: Duration,
    /// Flush early once this many bytes are queued; also caps one flush.
    pub max_batch_bytes: usize,
    /// How often to re-read partition bounds from the table, to notice rows that SQL
    /// sessions wrote (they do not pass through this writer).
    pub refresh_interval: Duration,
    /// How long a job may wait for a partition whose append lock a SQL transaction holds
    /// before it fails with REQUEST_TIMED_OUT.
    pub max_lock_wait: Duration,
    /// On a hot standby nothing is written here: each refresh also re-reads the log's
    /// transaction state, which the primary's writes change as they are replayed.
    pub follow_replay: bool,
}

/// The writer's end, driven by the worker's main loop.
pub struct GroupCommitter {
    jobs: flume::Receiver<ProduceJob>,
    queued_bytes: Arc<AtomicUsize>,
    /// Queued jobs that end a transaction (they carry storage work to run after their
    /// appends). One makes the next flush due at once: its producer waits for nothing else
    /// (a commit blocks it), and its markers are a few bytes, so waiting out the interval
    /// would only add latency to every transaction.
    queued_ends: Arc<AtomicUsize>,
    settings: CommitSettings,
    last_flush: Option<Instant>,
    last_refresh: Instant,
    /// Published after each commit, for Fetch.
    watermarks: Watermarks,
    /// Next offset of each (topic id, partition) this writer has written to.
    next_offsets: HashMap<(i32, i32), i64>,
    /// Partitions this writer committed rows to since the last refresh: their counters
    /// stay (re-reading them at every refresh cost 1,000 written partitions about 2,000
    /// planned queries a second).
    written_since_refresh: HashSet<(i32, i32)>,
    /// Where topics are cached; its generation moves when one is deleted or changed.
    topics: TopicCache,
    /// The generation this writer's counters and producer states belong to.
    topics_generation_seen: u64,
    /// Topics re-read during the current write, for appends resolved before the cache
    /// was last invalidated (topic id → the topic now, if it still exists).
    rechecked: HashMap<i32, Option<Topic>>,
    /// Idempotent producers' sequence state.
    sequences: Sequences,
    /// Where transactions begin and end on each partition.
    txns: TxnWrites,
    /// Jobs that found a partition locked by a SQL transaction, oldest first; they go
    /// before anything newer.
    deferred: VecDeque<ProduceJob>,
    /// The last group ended where the jobs' [`Durability`] changed: the next one starts now.
    kind_changed: bool,
    /// What SQL sessions produced; `None` where nothing but this writer appends.
    sql_log: Option<SqlAppendLog>,
    /// The [`SqlAppendLog`] generation the counters have caught up with.
    counters_seen: u64,
    /// The [`SqlAppendLog`] generation the watermarks have caught up with.
    watermarks_seen: u64,
    /// Group-commit sizes and times, messages stored.
    metrics: Metrics,
    /// Answers of group commits waiting for the synchronous standbys.
    standby_acks: StandbyAcks,
    /// What this turn's writes committed locally for the standbys to confirm.
    local_commit: Option<LocalCommit>,
}

pub fn channel(settings: CommitSettings, wake: Waker, watermarks: Watermarks, topics: TopicCache) -> (CommitQueue, GroupCommitter) {
    let (tx, rx) = flume::unbounded();
    let queued_bytes = Arc::new(AtomicUsize::new(0));
    let queued_ends = Arc::new(AtomicUsize::new(0));
    let queue = CommitQueue { jobs: tx, queued_bytes: queued_bytes.clone(), queued_ends: queued_ends.clone(), wake };
    let committer = GroupCommitter {
        jobs: rx,
        queued_bytes,
        queued_ends,
        settings,
        last_flush: None,
        last_refresh: Instant::now(),
        standby_acks: StandbyAcks::new(watermarks.clone()),
        local_commit: None,
        watermarks,
        next_offsets: HashMap::new(),
        written_since_refresh: HashSet::new(),
        topics_generation_seen: topics.generation(),
        topics,
        rechecked: HashMap::new(),
        sequences: Sequences::default(),
        txns: TxnWrites::default(),
        deferred: VecDeque::new(),
        kind_changed: false,
        sql_log: None,
        counters_seen: 0,
        watermarks_seen: 0,
        metrics: Metrics::default(),
    };
    (queue, committer)
}

/// Where each append of a flush goes, decided before the insert.
/// A job's outcome in one write: its results, or `None` when it must wait for a partition
/// locked elsewhere.
type JobOutcome = Option<Vec<AppendResult>>;

enum Placement {
    Rows { base_offset: i64 },
    Refused(ResponseError),
}

impl GroupCommitter {
    /// Answers what the synchronous standbys confirmed, and flushes if a flush is due.
    /// Returns how long until the next look is due while work is queued or answers wait
    /// (the main loop sleeps no longer than that), `None` when idle.
    pub fn poll(&mut self, runner: &mut dyn JobRunner) -> Option<Duration> {
        self.standby_acks.release_confirmed(runner, &self.next_offsets);
        // With too many groups waiting, nothing more is written before the oldest is released.
        let next_flush = if self.standby_acks.is_full() { None } else { self.flush_if_due(runner) };
        let next_release = (!self.standby_acks.is_empty()).then_some(STANDBY_POLL_INTERVAL);
        match (next_flush, next_release) {
            (Some(flush), Some(release)) => Some(flush.min(release)),
            (flush, release) => flush.or(release),
        }
    }

    /// Where the writer's commits and the synchronous standbys' confirmations are read.
    pub fn set_replication_progress(&mut self, progress: Box<dyn ReplicationProgress>) {
        self.standby_acks.set_progress(progress);
    }

    fn flush_if_due(&mut self, runner: &mut dyn JobRunner) -> Option<Duration> {
        if self.jobs.is_empty() && self.deferred.is_empty() {
            return None;
        }
        let now = Instant::now();
        let since_last = self.last_flush.map_or(Duration::MAX, |t| now.duration_since(t));
        let full = self.queued_bytes.load(Ordering::Relaxed) >= self.settings.max_batch_bytes;
        let ending = self.queued_ends.load(Ordering::Relaxed) > 0;
        let kind_changed = std::mem::take(&mut self.kind_changed);
        if since_last < self.settings.flush_interval && !full && !ending && !kind_changed {
            return Some(self.settings.flush_interval - since_last);
        }
        self.last_flush = Some(now);
        let jobs = self.drain();
        let outcomes = self.write_isolating(runner, &jobs);
        self.acknowledge(jobs, outcomes);
        if self.kind_changed {
            return Some(Duration::ZERO);
        }
        (!self.jobs.is_empty() || !self.deferred.is_empty()).then_some(self.settings.flush_interval.max(MIN_RETRY_INTERVAL))
    }

    /// Reads SQL sessions' news to the writer; Fetch watermarks of the partitions they
    /// wrote move up at once and waiting long polls wake. Cheap when nothing changed (one
    /// look at the log, no transaction).
    pub fn catch_up_with_sql(&mut self, runner: &mut dyn JobRunner) {
        let Some(log) = &self.sql_log else { return };
        let news = log(self.watermarks_seen);
        if !news.moved_since(self.watermarks_seen) {
            return;
        }
        // Partitions no consumer has read are not in the watermarks: nothing to re-read
        // (they are loaded from the table when first fetched), so no transaction either.
        let mut moved = false;
        if news.partitions.as_ref().is_none_or(|partitions| self.watermarks.knows_any(partitions)) {
            let reread = runner.run(&mut |storage| {
                moved = match &news.partitions {
                    Some(partitions) => self.watermarks.reread(storage, partitions)?,
                    None => !self.watermarks.refresh(storage)?.is_empty(),
                };
                Ok(())
            });
            if reread.is_err() {
                return; // tried again at the next turn
            }
        }
        self.watermarks_seen = news.generation;
        news.partitions.iter().flatten().for_each(|&key| self.metrics.appended(key));
        if moved {
            self.watermarks.notify();
        }
    }

    /// Where group commits are counted (the broker's figures).
    /// How long a job may wait behind a partition a SQL transaction holds
    /// (`pg_kafka.request_timeout_ms`, reloadable).
    pub fn set_max_lock_wait(&mut self, wait: Duration) {
        self.settings.max_lock_wait = wait;
    }

    /// Where the log's transaction state is kept for Fetch.
    pub fn set_txn_log(&mut self, log: TxnLog) {
        self.txns = TxnWrites::new(log);
    }

    pub fn set_metrics(&mut self, metrics: Metrics) {
        self.metrics = metrics;
    }

    /// Where SQL sessions' appends are recorded (the worker's shared memory).
    pub fn set_sql_log(&mut self, log: SqlAppendLog) {
        let now = log(0).generation;
        self.counters_seen = now;
        self.watermarks_seen = now;
        self.sql_log = Some(log);
    }

    /// Re-reads partition bounds if the refresh interval has passed: watermarks move up to
    /// rows that SQL sessions INSERTed directly (kafka.produce() reports its own), and the
    /// writer's counters follow them. Counters of partitions no consumer reads and this
    /// writer did not write since the last refresh are forgotten rather than re-read (one
    /// probe at their next write, instead of one per partition every interval); those it
    /// wrote stay as they are: rows INSERTed behind its back there (not through
    /// `kafka.produce()`, which reports them) cost one failed write, whose jobs are then
    /// written apart with counters re-read. Returns the time until the next refresh.
    pub fn refresh_if_due(&mut self, runner: &mut dyn JobRunner) -> Duration {
        let since = self.last_refresh.elapsed();
        if since < self.settings.refresh_interval {
            return self.settings.refresh_interval - since;
        }
        self.last_refresh = Instant::now();
        let mut moved = Vec::new();
        let refreshed = runner.run(&mut |storage| {
            // Cached topics are re-read, so configs changed with SQL take effect.
            self.topics.refresh(storage)?;
            moved = self.watermarks.refresh(storage)?;
            // After the bounds: a transaction begun before they were read is still open
            // in what follows, or has ended with its range recorded; never missing.
            if self.settings.follow_replay {
                self.txns.reload(storage)?;
            }
            Ok(())
        });
        if refreshed.is_ok() {
            let (watermarks, written) = (&self.watermarks, &self.written_since_refresh);
            self.next_offsets.retain(|&(topic_id, partition), counter| match watermarks.get(topic_id, partition) {
                Some(bounds) => {
                    *counter = (*counter).max(bounds.high);
                    true
                }
                None => written.contains(&(topic_id, partition)),
            });
            self.written_since_refresh.clear();
            if !moved.is_empty() {
                self.watermarks.notify();
            }
        }
        self.settings.refresh_interval
    }

    /// True once every queue handle is gone and nothing is left to write or answer.
    pub fn is_disconnected(&self) -> bool {
        self.jobs.is_disconnected() && self.jobs.is_empty() && self.deferred.is_empty() && self.standby_acks.is_empty()
    }

    /// Stops accepting work: jobs still queued fail with KAFKA_STORAGE_ERROR at once, and
    /// those waiting for standbys with REQUEST_TIMED_OUT.
    pub fn fail_pending(&mut self) {
        self.standby_acks.abandon();
        let jobs = self.drain_all();
        let results = all_failed(&jobs);
        self.acknowledge(jobs, results);
    }

    fn drain_all(&mut self) -> Vec<ProduceJob> {
        let queued: Vec<ProduceJob> = self.jobs.try_iter().collect();
        self.queued_bytes.fetch_sub(queued.iter().map(|j| j.bytes).sum(), Ordering::Relaxed);
        self.queued_ends.fetch_sub(queued.iter().map(ProduceJob::ends).sum(), Ordering::Relaxed);
        self.deferred.drain(..).chain(queued).collect()
    }

    /// Takes deferred, then queued jobs, up to `max_batch_bytes` (always at least one), and
    /// only jobs of the first one's [`Durability`]: the first of the other kind goes back to
    /// the front, for a group commit of its own right after this one.
    fn drain(&mut self) -> Vec<ProduceJob> {
        let mut jobs = Vec::new();
        let (mut bytes, mut from_queue, mut ends) = (0, 0, 0);
        while bytes < self.settings.max_batch_bytes {
            let job = match self.deferred.pop_front() {
                Some(job) => job,
                None => match self.jobs.try_recv() {
                    Ok(job) => {
                        from_queue += job.bytes;
                        ends += job.ends();
                        job
                    }
                    Err(_) => break,
                },
            };
            if jobs.first().is_some_and(|first: &ProduceJob| first.durability != job.durability) {
                self.deferred.push_front(job);
                self.kind_changed = true;
                break;
            }
            bytes += job.bytes;
            jobs.push(job);
        }
        // Deferred jobs are not in `queued_bytes`: held back behind a SQL transaction, they
        // must not make every turn look like a full batch is waiting.
        self.queued_bytes.fetch_sub(from_queue, Ordering::Relaxed);
        self.queued_ends.fetch_sub(ends, Ordering::Relaxed);
        jobs
    }

    /// Answers the producers of a flush (called only after its transaction ended); jobs
    /// that waited for a locked partition go back to the front of the queue, unless they
    /// have waited too long.
    fn acknowledge(&mut self, jobs: Vec<ProduceJob>, outcomes: Vec<JobOutcome>) {
        let mut waiting = Vec::new();
        let local_commit = self.local_commit.take();
        let mut for_standbys = Vec::new();
        for (job, outcome) in jobs.into_iter().zip(outcomes) {
            match outcome {
                // A producer that went away (connection closed) no longer needs its answer.
                Some(results) if local_commit.is_none() => drop(job.reply.send(results)),
                Some(results) => {
                    let min_insync = job.appends.iter().map(|a| a.topic.settings.min_insync_replicas).collect();
                    for_standbys.push(WaitingAnswer { reply: job.reply, results, acks_all: job.acks_all, min_insync });
                }
                None if job.queued_at.elapsed() >= self.settings.max_lock_wait => {
                    let _ = job.reply.send(vec![Err(ResponseError::RequestTimedOut); job.appends.len()]);
                }
                None => waiting.push(job),
            }
        }
        for job in waiting.into_iter().rev() {
            self.deferred.push_front(job);
        }
        if let Some(commit) = local_commit {
            self.standby_acks.wait(commit, for_standbys);
        }
    }

    /// Writes every job in one transaction; if that fails on a data error (a trigger or a
    /// constraint refusing some producer's rows), writes each job in a transaction of its
    /// own, so that only the producers whose rows caused it fail. Failures that are not
    /// about the data (a lock timeout, say) would fail every job again: those fail the
    /// whole group at once.
    fn write_isolating(&mut self, runner: &mut dyn JobRunner, jobs: &[ProduceJob]) -> Vec<JobOutcome> {
        match self.write(runner, jobs) {
            Err(e) if jobs.len() > 1 && is_data_error(&e) => {
                let mut results = Vec::with_capacity(jobs.len());
                for job in jobs {
                    results.push(match self.write(runner, std::slice::from_ref(job)) {
                        Ok(mut alone) => alone.pop().flatten(),
                        Err(_) => Some(all_failed_one(job)),
                    });
                }
                results
            }
            Err(_) => all_failed(jobs),
            Ok(results) => results,
        }
    }

    /// Assigns offsets and writes the rows of every job whose partitions it could lock, in
    /// one transaction.
    fn write(&mut self, runner: &mut dyn JobRunner, jobs: &[ProduceJob]) -> Result<Vec<JobOutcome>, StorageError> {
        self.forget_changed_topics();
        // Partitions whose counter this write loaded or moved, and the first offset it
        // wrote there.
        let mut touched = HashMap::new();
        let mut results = Vec::new();
        let (mut stored_rows, mut stored_bytes) = (0, 0);
        let started = Instant::now();
        let mut waited_for = None;
        let committed = runner.run(&mut |storage| {
            let durability = jobs.first().map_or(Durability::Replicated, |job| job.durability);
            let copies = replicas::copies_now(storage, durability)?;
            if durability == Durability::Replicated {
                self.standby_acks.note_copies(copies);
            }
            waited_for = copies;
            let writable = lock_partitions(storage, jobs)?;
            storage.see_latest_commits()?;
            self.forget_counters_sql_moved();
            let mut rows = Appended::default();
            results = jobs
                .iter()
                .zip(writable)
                .map(|(job, writable)| {
                    if !writable {
                        return Ok(None);
                    }
                    let placements = job
                        .appends
                        .iter()
                        .map(|append| match replicas::too_few(job.acks_all, &append.topic, copies) {
                            Some(refused) => Ok(Placement::Refused(refused)),
                            None => self.place(storage, append, &mut rows, &mut touched),
                        })
                        .collect::<Result<Vec<Placement>, StorageError>>()?;
                    if let Some(then) = &job.then {
                        then(storage)?;
                    }
                    Ok(Some(placements.into_iter().map(placement_result).collect()))
                })
                .collect::<Result<Vec<JobOutcome>, StorageError>>()?;
            if !rows.messages.is_empty() {
                storage.append(&rows.messages)?;
            }
            if !rows.batches.is_empty() {
                storage.append_batches(&rows.batches)?;
            }
            (stored_rows, stored_bytes) = rows.counts();
            // Sequence and transaction state go in with the rows they describe, or not at all.
            self.sequences.save(storage)?;
            self.txns.save(storage)?;
            Ok(())
        });
        self.rechecked.clear();
        if committed.is_ok() {
            self.metrics.group_commit(stored_rows, started.elapsed());
            self.metrics.produced(stored_rows, stored_bytes);
            self.sequences.committed();
            self.txns.committed();
            match waited_for.filter(|&copies| copies > 1) {
                Some(copies) => self.wait_for_standbys(copies, &touched),
                None => self.publish(&touched),
            }
            self.written_since_refresh.extend(touched.into_keys());
            return Ok(results);
        }
        // Rolled back: forget every counter and producer state this write moved or loaded;
        // they are re-read from the table.
        self.next_offsets.retain(|key, _| !touched.contains_key(key));
        self.sequences.rolled_back();
        self.txns.rolled_back();
        committed.map(|()| results)
    }

    /// Drops the counters of partitions SQL sessions wrote since the last look; they are
    /// re-read from the table (under the append lock this write holds). Called before any
    /// placement of the write, so no counter it moved is dropped.
    fn forget_counters_sql_moved(&mut self) {
        let Some(log) = &self.sql_log else { return };
        let SqlAppends { generation, partitions } = log(self.counters_seen);
        if generation == self.counters_seen {
            return;
        }
        self.counters_seen = generation;
        match partitions {
            Some(partitions) => partitions.iter().for_each(|key| {
                self.next_offsets.remove(key);
            }),
            None => self.next_offsets.clear(),
        }
    }

    /// Drops cached topics (and what hangs off their ids) after a topic was deleted or
    /// its configs changed, so no row is written for a topic id that is gone.
    fn forget_changed_topics(&mut self) {
        let now = self.topics.generation();
        if now != self.topics_generation_seen {
            self.topics_generation_seen = now;
            self.next_offsets.clear();
            self.sequences.clear();
        }
    }

    /// A commit that waited for no standby: publishes the high watermarks of the
    /// partitions it wrote (up to a hold, writer/standby_acks.rs), and wakes waiting Fetches.
    fn publish(&self, touched: &HashMap<(i32, i32), i64>) {
        for &(topic_id, partition) in touched.keys() {
            self.watermarks.advance(topic_id, partition, self.next_offsets[&(topic_id, partition)]);
            self.metrics.appended((topic_id, partition));
        }
        if !touched.is_empty() {
            self.watermarks.notify();
        }
    }

    /// A local commit whose producers wait for `copies`: its partitions' high watermarks
    /// are held at what it wrote, its answers wait (in [`acknowledge`](Self::acknowledge)).
    fn wait_for_standbys(&mut self, copies: i64, touched: &HashMap<(i32, i32), i64>) {
        let commit_end = self.standby_acks.last_commit_end();
        let ranges = touched.iter().map(|(&key, &first)| (key, (first, self.next_offsets[&key])));
        let commit = self.local_commit.get_or_insert_default();
        commit.add(commit_end, copies, ranges);
        self.standby_acks.hold(commit);
        touched.keys().for_each(|&key| self.metrics.appended(key));
    }

    /// Decides where one append goes and adds its rows.
    fn place(
        &mut self,
        storage: &mut dyn Storage,
        append: &PartitionAppend,
        rows: &mut Appended,
        touched: &mut HashMap<(i32, i32), i64>,
    ) -> Result<Placement, StorageError> {
        let Some(topic) = self.current_topic(storage, append)? else {
            return Ok(Placement::Refused(ResponseError::UnknownTopicOrPartition));
        };
        if append.batch_bytes > usize::try_from(topic.settings.max_message_bytes).unwrap_or(0) {
            return Ok(Placement::Refused(ResponseError::MessageTooLarge));
        }
        let batch_timestamps = append.batch.iter().flat_map(|b| [b.timestamps.0, b.timestamps.1]);
        if append.records.iter().map(|r| r.timestamp).chain(batch_timestamps).any(|ms| postgres_timestamp_us(ms).is_none()) {
            return Ok(Placement::Refused(ResponseError::InvalidTimestamp));
        }
        let producer = append.producer.map(|p| ((p.producer_id, topic.id, append.partition), p));
        if let Some((producer_key, batch)) = &producer {
            match self.sequences.check(storage, *producer_key, batch)? {
                SequenceCheck::Append => {}
                SequenceCheck::Duplicate(base_offset) => return Ok(Placement::Rows { base_offset }),
                SequenceCheck::Refused(error) => return Ok(Placement::Refused(error)),
            }
        }
        let key = (topic.id, append.partition);
        // Asked again here, not only by Produce: its batch may reach the writer after the
        // transaction's marker (a V1 producer keeps its epoch), and would open a
        // transaction nobody ends.
        let txn = append.txn();
        if let Some(t) = txn.filter(|t| t.marker.is_none()) {
            if let Err(error) = self.txns.admits(t.producer_id, t.producer_epoch, key) {
                return Ok(Placement::Refused(error));
            }
        }
        let base_offset = match self.next_offsets.get(&key) {
            Some(&next) => next,
            None => storage.next_offset(topic.id, append.partition)?,
        };
        if let Some((producer_key, batch)) = &producer {
            self.sequences.record(*producer_key, batch, base_offset);
        }
        match txn {
            Some(TxnPart { producer_id, producer_epoch, marker: Some(commit) }) => {
                self.sequences.marker(storage, (producer_id, topic.id, append.partition), producer_epoch)?;
                self.txns.marker(key, producer_id, base_offset, commit);
            }
            Some(t) => self.txns.records(key, t.producer_id, base_offset),
            None => {}
        }
        let mut offset = base_offset;
        if let Some(batch) = &append.batch {
            rows.batches.push(batch.placed(topic.id, append.partition, base_offset));
            offset += i64::from(batch.record_count);
        }
        let row_txn = txn.map(|t| RowTxn { producer_id: t.producer_id, producer_epoch: t.producer_epoch, control: t.marker.is_some() });
        let rows = &mut rows.messages;
        for record in &append.records {
            rows.topic_ids.push(topic.id);
            rows.partitions.push(append.partition);
            rows.offsets.push(offset);
            rows.timestamps_ms.push(record.timestamp);
            rows.keys.push(record.key.clone());
            rows.values.push(record.value.clone());
            rows.headers.push(record.headers.clone());
            rows.set_last_txn(row_txn);
            offset += 1;
        }
        self.next_offsets.insert(key, offset);
        touched.entry(key).or_insert(base_offset);
        Ok(Placement::Rows { base_offset })
    }

    /// The append's topic as it is now: as resolved, unless the topic cache was
    /// invalidated since, in which case storage is asked (once per topic per write)
    /// whether the topic still exists under that id and has the partition.
    fn current_topic(&mut self, storage: &mut dyn Storage, append: &PartitionAppend) -> Result<Option<Topic>, StorageError> {
        let topic = if append.topics_generation == self.topics_generation_seen {
            Some(append.topic.clone())
        } else {
            let id = append.topic.id;
            match self.rechecked.entry(id) {
                Entry::Occupied(known) => known.get().clone(),
                Entry::Vacant(slot) => slot.insert(storage.topic(&append.topic.name)?.filter(|t| t.id == id)).clone(),
            }
        };
        Ok(topic.filter(|t| (0..t.partitions).contains(&append.partition)))
    }
}

/// Takes the append lock of every partition the jobs write, in order; a job with a
/// partition locked elsewhere is not writable now, and neither is any later job that
/// shares a partition with it (each partition's appends keep their order). Returns, per
/// job, whether it may be written in this transaction.
fn lock_partitions(storage: &mut dyn Storage, jobs: &[ProduceJob]) -> Result<Vec<bool>, StorageError> {
    let mut locked: HashSet<(i32, i32)> = HashSet::new();
    let mut blocked: HashSet<(i32, i32)> = HashSet::new();
    let mut writable = Vec::with_capacity(jobs.len());
    for job in jobs {
        let keys: Vec<(i32, i32)> = job.appends.iter().map(|a| (a.topic.id, a.partition)).collect();
        let mut free = !keys.iter().any(|key| blocked.contains(key));
        for key in &keys {
            if !free {
                break;
            }
            if !locked.contains(key) {
                // Each lock takes a slot of Postgres's shared lock table until the commit.
                free = locked.len() < MAX_PARTITIONS_PER_WRITE && storage.try_lock_partition(key.0, key.1)?;
                if free {
                    locked.insert(*key);
                }
            }
        }
        if !free {
            blocked.extend(keys);
        }
        writable.push(free);
    }
    Ok(writable)
}

/// What one write stores: rows (row layout) and batches (batch layout).
#[derive(Default)]
struct Appended {
    messages: MessageRows,
    batches: Vec<BatchRow>,
}

impl Appended {
    /// Messages stored, and their bytes (key, value and headers of rows; whole batches).
    fn counts(&self) -> (usize, usize) {
        let len = |column: &[Option<bytes::Bytes>]| column.iter().flatten().map(bytes::Bytes::len).sum::<usize>();
        let m = &self.messages;
        let batch_records: usize = self.batches.iter().map(|b| b.record_count as usize).sum();
        let batch_bytes: usize = self.batches.iter().map(|b| b.bytes.len()).sum();
        (m.len() + batch_records, len(&m.keys) + len(&m.values) + len(&m.headers) + batch_bytes)
    }
}

fn placement_result(placement: Placement) -> AppendResult {
    match placement {
        Placement::Rows { base_offset } => Ok(base_offset),
        Placement::Refused(error) => Err(error),
    }
}

/// Every append of every job failed with KAFKA_STORAGE_ERROR (nothing was written).
fn all_failed(jobs: &[ProduceJob]) -> Vec<JobOutcome> {
    jobs.iter().map(|job| Some(all_failed_one(job))).collect()
}

fn all_failed_one(job: &ProduceJob) -> Vec<AppendResult> {
    vec![Err(ResponseError::KafkaStorageError); job.appends.len()]
}

/// Whether a failed write was about some rows' data (SQLSTATE classes 22 data exception,
/// 23 integrity constraint violation, P0 raised by PL/pgSQL, 42 a trigger's own mistake),
/// so that writing the jobs apart would let the others through.
fn is_data_error(error: &StorageError) -> bool {
    match error {
        StorageError::Database { sqlstate: Some(code), .. } => ["22", "23", "P0", "42"].iter().any(|class| code.starts_with(class)),
        StorageError::TimestampOutOfRange(_) => true,
        _ => false,
    }
}

/// Partitions one write locks at most; jobs beyond wait for the next flush. Postgres's
/// shared lock table holds about `max_locks_per_transaction` × connections entries in all
/// (6,400 with default settings), and a full one would fail the whole commit.
const MAX_PARTITIONS_PER_WRITE: usize = 1024;

/// How often the standbys' confirmations are looked at while answers wait for them.
const STANDBY_POLL_INTERVAL: Duration = Duration::from_millis(1);

/// How soon jobs waiting for a partition lock are tried again, at the earliest.
const MIN_RETRY_INTERVAL: Duration = Duration::from_millis(1);

#[cfg(test)]
#[path = "group_commit_tests.rs"]
mod tests;
