//! Retention: every `pg_kafka.retention_check_interval_ms`, partitions of topics with
//! `retention.ms` or `retention.bytes` set lose their oldest messages, exactly as
//! DeleteRecords would remove them: the log start moves forward (kept in
//! `kafka.partition_starts`), rows below it are deleted, offsets are never reused, and
//! Fetch sees the new log start at once (consumers behind it get OFFSET_OUT_OF_RANGE and
//! reset, as with Kafka).
//!
//! A pass deletes about as many rows as producers wrote since the last one, which costs
//! about what writing them cost: on the group commit's thread it took a third of the
//! writer's time in a sustained run. So the main thread hands each pass to a reader
//! process (its own Postgres session, on another core) and only runs it itself when
//! fewer than two readers are connected (one stays for Fetch) or the one it used
//! failed. The log starts a pass moved are raised in Fetch's watermarks once it
//! committed, wherever it ran.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes};

use crate::logging;
use crate::metrics::{Cleanable, CleanerFigures, Metrics};
use crate::storage::bridge::{in_transaction, JobRunner};
use crate::storage::readers::{ReaderJob, Readers};
use crate::storage::reads::{finished, put_error, split_answer, take, take_bytes, WireError};
use crate::storage::watermarks::Watermarks;
use crate::storage::{Storage, StorageError};
use crate::writer::compaction::{compact_all, Budget, Cleaned, Compaction};

/// A partition whose log start a pass moved: (topic id, partition, new log start).
pub type LogStart = (i32, i32, i64);

/// What a pass did: log starts retention moved, partitions compaction cleaned
/// (`writer::compaction`, which runs in the same pass and transaction) and where it
/// stands on every compacted partition.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PassDone {
    pub moved: Vec<LogStart>,
    pub compaction: Compaction,
}

/// One retention pass, as of `now_ms`: a job for the main thread or a reader process;
/// its compaction works `work_percent` of its time (see `compaction::Budget`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetentionPass {
    pub now_ms: i64,
    pub work_percent: u32,
}

impl RetentionPass {
    /// Moves the log start of every partition past its limits and deletes the rows
    /// below, then compacts the compacted partitions that are due.
    pub fn run(&self, storage: &mut dyn Storage) -> Result<PassDone, StorageError> {
        let moved = storage.retention_starts(self.now_ms)?;
        for &(topic_id, partition, start) in &moved {
            storage.delete_records_before(topic_id, partition, start)?;
        }
        let compaction = compact_all(storage, self.now_ms, Budget::pass(self.work_percent))?;
        Ok(PassDone { moved, compaction })
    }

    /// The pass on the reader socket: `i64 now_ms, u32 work_percent`.
    pub fn decode(mut bytes: &[u8]) -> Result<RetentionPass, WireError> {
        let mut fields = take(&mut bytes, 12)?;
        let (now_ms, work_percent) = (fields.get_i64(), fields.get_u32());
        finished(bytes)?;
        Ok(RetentionPass { now_ms, work_percent })
    }

    /// Its answer: `u8 0`, `u32 count` and per moved partition `i32 topic, i32 partition,
    /// i64 log start`, then `u32 count` and per cleaned partition `u16 length, topic
    /// name, i32 topic, i32 partition, i64 removed, i64 cleaned to`, then `u32 count` and
    /// per compacted partition `u16 length, topic name, i32 partition, u8 which figures
    /// follow (1: cleanable, 2: last pass), i64 cleanable bytes, f64 dirty ratio, i64 last
    /// pass`; or the error.
    pub fn encode_answer(answer: &Result<PassDone, StorageError>) -> Vec<u8> {
        let mut out = Vec::new();
        match answer {
            Ok(done) => {
                out.put_u8(0);
                out.put_u32(done.moved.len() as u32);
                for &(topic_id, partition, start) in &done.moved {
                    out.put_i32(topic_id);
                    out.put_i32(partition);
                    out.put_i64(start);
                }
                out.put_u32(done.compaction.cleaned.len() as u32);
                for cleaned in &done.compaction.cleaned {
                    put_name(&mut out, &cleaned.topic);
                    out.put_i32(cleaned.topic_id);
                    out.put_i32(cleaned.partition);
                    out.put_i64(cleaned.removed);
                    out.put_i64(cleaned.cleaned_to);
                }
                out.put_u32(done.compaction.figures.len() as u32);
                for figures in &done.compaction.figures {
                    put_figures(&mut out, figures);
                }
            }
            Err(error) => put_error(&mut out, error),
        }
        out
    }
}

impl ReaderJob for RetentionPass {
    type Answer = PassDone;
    const KIND: u8 = 1;

    fn encode(&self) -> Vec<u8> {
        [&self.now_ms.to_be_bytes()[..], &self.work_percent.to_be_bytes()].concat()
    }

    fn decode_answer(bytes: Bytes) -> Result<Result<PassDone, StorageError>, WireError> {
        let mut rest = match split_answer(bytes)? {
            Ok(rest) => rest,
            Err(error) => return Ok(Err(error)),
        };
        let count = take_bytes(&mut rest, 4)?.get_u32() as usize;
        let mut moved = Vec::with_capacity(count.min(rest.len() / 16));
        for _ in 0..count {
            let mut entry = take_bytes(&mut rest, 16)?;
            moved.push((entry.get_i32(), entry.get_i32(), entry.get_i64()));
        }
        let count = take_bytes(&mut rest, 4)?.get_u32() as usize;
        let mut cleaned = Vec::with_capacity(count.min(rest.len() / 26));
        for _ in 0..count {
            let topic = take_name(&mut rest)?;
            let mut entry = take_bytes(&mut rest, 24)?;
            let (topic_id, partition) = (entry.get_i32(), entry.get_i32());
            cleaned.push(Cleaned { topic, topic_id, partition, removed: entry.get_i64(), cleaned_to: entry.get_i64() });
        }
        let count = take_bytes(&mut rest, 4)?.get_u32() as usize;
        let mut figures = Vec::with_capacity(count.min(rest.len() / 31));
        for _ in 0..count {
            figures.push(take_figures(&mut rest)?);
        }
        finished(&rest)?;
        Ok(Ok(PassDone { moved, compaction: Compaction { cleaned, figures } }))
    }
}

fn put_name(out: &mut Vec<u8>, name: &str) {
    out.put_u16(name.len() as u16);
    out.put_slice(name.as_bytes());
}

fn take_name(rest: &mut Bytes) -> Result<String, WireError> {
    let len = take_bytes(rest, 2)?.get_u16() as usize;
    Ok(String::from_utf8_lossy(&take_bytes(rest, len)?).into_owned())
}

fn put_figures(out: &mut Vec<u8>, figures: &CleanerFigures) {
    put_name(out, &figures.topic);
    out.put_i32(figures.partition);
    out.put_u8(u8::from(figures.cleanable.is_some()) | u8::from(figures.last_pass_ms.is_some()) << 1);
    let cleanable = figures.cleanable.unwrap_or(Cleanable::NONE);
    out.put_i64(cleanable.bytes);
    out.put_f64(cleanable.dirty_ratio);
    out.put_i64(figures.last_pass_ms.unwrap_or(0));
}

fn take_figures(rest: &mut Bytes) -> Result<CleanerFigures, WireError> {
    let topic = take_name(rest)?;
    let mut entry = take_bytes(rest, 29)?;
    let (partition, present) = (entry.get_i32(), entry.get_u8());
    let cleanable = Cleanable { bytes: entry.get_i64(), dirty_ratio: entry.get_f64() };
    let last_pass_ms = entry.get_i64();
    Ok(CleanerFigures {
        topic,
        partition,
        cleanable: (present & 1 != 0).then_some(cleanable),
        last_pass_ms: (present & 2 != 0).then_some(last_pass_ms),
    })
}

/// Runs retention every interval, in a reader process when two are connected.
pub struct Retention {
    interval: Duration,
    last_run: Instant,
    watermarks: Watermarks,
    /// Where compaction's counts go (Prometheus, `kafka.broker_stats`).
    metrics: Metrics,
    readers: Arc<Readers>,
    /// How long a reader may take to answer before it counts as failed (past its own
    /// statement timeout, so a slow pass ends as an error there, not as two passes).
    reader_timeout: Duration,
    /// What a pass in a reader gives compaction of its time.
    work_percent: u32,
    handoff: Arc<Handoff>,
}

/// What the main thread and a pass in a reader share.
#[derive(Default)]
struct Handoff {
    /// A pass is in a reader now: the next one waits for it.
    in_reader: AtomicBool,
    /// No reader could run the last pass: the main thread runs one at its next turn.
    handed_back: AtomicBool,
}

/// Readers connected before a pass goes to one of them.
const MIN_READERS: usize = 2;

/// An answer larger than this is a reader gone wrong (16 bytes a moved partition).
const MAX_ANSWER_BYTES: usize = 64 << 20;

/// When passes run and how long and hard they may work.
#[derive(Clone, Copy, Debug)]
pub struct RetentionTiming {
    /// `pg_kafka.retention_check_interval_ms`.
    pub interval: Duration,
    /// `pg_kafka.statement_timeout_ms`: a reader's pass ends as an error past it.
    pub statement_timeout: Duration,
    /// `pg_kafka.compaction_work_percent`.
    pub compaction_work_percent: u32,
}

impl RetentionTiming {
    pub fn of(config: &crate::config::Config) -> RetentionTiming {
        RetentionTiming {
            interval: Duration::from_millis(config.retention_check_interval_ms),
            statement_timeout: Duration::from_millis(config.statement_timeout_ms),
            compaction_work_percent: config.compaction_work_percent,
        }
    }

    /// A pass at every look, unpaced (tests).
    pub fn every_look(statement_timeout: Duration) -> RetentionTiming {
        RetentionTiming { interval: Duration::ZERO, statement_timeout, compaction_work_percent: 100 }
    }
}

impl Retention {
    pub fn new(timing: RetentionTiming, watermarks: Watermarks, metrics: Metrics, readers: Arc<Readers>) -> Retention {
        Retention {
            interval: timing.interval,
            last_run: Instant::now(),
            watermarks,
            metrics,
            readers,
            reader_timeout: timing.statement_timeout.saturating_add(Duration::from_secs(5)),
            work_percent: timing.compaction_work_percent,
            handoff: Arc::default(),
        }
    }

    /// Applies retention if the interval has passed (or a reader handed a pass back);
    /// returns the time until the next run.
    pub fn run_if_due(&mut self, runner: &mut dyn JobRunner) -> Duration {
        let handed_back = self.handoff.handed_back.swap(false, Ordering::AcqRel);
        let since = self.last_run.elapsed();
        if since < self.interval && !handed_back {
            return self.interval - since;
        }
        self.last_run = Instant::now();
        if self.handoff.in_reader.load(Ordering::Acquire) {
            return self.interval; // the last pass is still deleting
        }
        let pass = RetentionPass { now_ms: crate::storage::now_ms(), work_percent: self.work_percent };
        if handed_back || !self.hand_to_reader(pass) {
            // On the main thread the pass holds the group commit: it rests nowhere.
            let pass = RetentionPass { work_percent: 100, ..pass };
            finish(&self.watermarks, &self.metrics, in_transaction(runner, |storage| pass.run(storage)));
        }
        self.interval
    }

    /// Starts `pass` in a reader process; false unless two are connected (a pass may
    /// take one for seconds, and Fetch keeps the other). A reader that fails hands the
    /// pass back to the main thread.
    fn hand_to_reader(&self, pass: RetentionPass) -> bool {
        let Some(runtime) = self.readers.runtime().filter(|_| self.readers.connected() >= MIN_READERS) else {
            return false;
        };
        let (readers, watermarks, metrics, timeout) =
            (self.readers.clone(), self.watermarks.clone(), self.metrics.clone(), self.reader_timeout);
        let handoff = self.handoff.clone();
        let in_reader = InReader::mark(handoff);
        runtime.spawn(async move {
            match readers.run(&pass, MAX_ANSWER_BYTES, timeout).await {
                Some(outcome) => finish(&watermarks, &metrics, outcome),
                None => in_reader.0.handed_back.store(true, Ordering::Release),
            }
        });
        true
    }
}

/// A pass in a reader: marked until the task that waits for it ends, however it ends
/// (a task dropped at shutdown included), so that no pass is waited for forever.
struct InReader(Arc<Handoff>);

impl InReader {
    fn mark(handoff: Arc<Handoff>) -> InReader {
        handoff.in_reader.store(true, Ordering::Release);
        InReader(handoff)
    }
}

impl Drop for InReader {
    fn drop(&mut self) {
        self.0.in_reader.store(false, Ordering::Release);
    }
}

/// Makes a committed pass visible to Fetch, and says what it did.
fn finish(watermarks: &Watermarks, metrics: &Metrics, outcome: Result<PassDone, StorageError>) {
    match outcome {
        Ok(PassDone { moved, compaction: Compaction { cleaned, figures } }) => {
            metrics.compacted(cleaned.len(), cleaned.iter().map(|c| c.removed).sum());
            metrics.cleaner(figures);
            for &(topic_id, partition, start) in &moved {
                watermarks.raise_log_start(topic_id, partition, start);
            }
            if !moved.is_empty() {
                logging::log(format!("pg_kafka: retention moved the log start of {} partitions", moved.len()));
            }
            for c in cleaned.iter().filter(|c| c.removed > 0) {
                logging::log(format!(
                    "pg_kafka: compaction removed {} records of \"{}\" partition {} (superseded keys, keyless records, old tombstones; compacted below offset {})",
                    c.removed, c.topic, c.partition, c.cleaned_to
                ));
            }
        }
        Err(e) => logging::warning(format!("pg_kafka: applying retention failed: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::bridge::DirectRunner;
    use crate::storage::memory::MemoryStorage;
    use crate::storage::retention_scenario_rows;

    #[test]
    fn a_pass_and_its_answer_cross_the_reader_socket_and_cut_bytes_are_refused() {
        let pass = RetentionPass { now_ms: 1_700_000_000_000, work_percent: 50 };
        assert_eq!(RetentionPass::decode(&pass.encode()), Ok(pass));
        assert!(RetentionPass::decode(&pass.encode()[..7]).is_err());
        assert!(RetentionPass::decode(&[pass.encode(), vec![0]].concat()).is_err(), "trailing bytes");
        let cleaned = vec![Cleaned { topic: "t".into(), topic_id: 4, partition: 1, removed: 10, cleaned_to: 99 }];
        let figures = vec![
            CleanerFigures {
                topic: "t".into(),
                partition: 1,
                cleanable: Some(Cleanable { bytes: 5, dirty_ratio: 0.25 }),
                last_pass_ms: Some(8),
            },
            CleanerFigures { topic: "u".into(), partition: 0, cleanable: None, last_pass_ms: None },
        ];
        let done = PassDone { moved: vec![(1, 0, 7), (2, 3, 9)], compaction: Compaction { cleaned, figures } };
        let answer = RetentionPass::encode_answer(&Ok(done.clone()));
        assert_eq!(RetentionPass::decode_answer(Bytes::from(answer.clone())), Ok(Ok(done)));
        for cut in 0..answer.len() {
            assert!(RetentionPass::decode_answer(Bytes::copy_from_slice(&answer[..cut])).is_err(), "cut at {cut}");
        }
        // A count no bytes back: refused without allocating for it.
        let huge = [&[0u8][..], &u32::MAX.to_be_bytes()].concat();
        assert!(RetentionPass::decode_answer(Bytes::from(huge)).is_err());
        let failed = RetentionPass::encode_answer(&Err(StorageError::Database {
            sqlstate: Some("57014".into()),
            message: "canceling statement due to statement timeout".into(),
        }));
        assert!(matches!(RetentionPass::decode_answer(Bytes::from(failed)), Ok(Err(StorageError::Database { .. }))));
    }

    #[test]
    fn a_pass_compacts_compacted_topics_and_counts_what_it_removed() {
        let mut storage = MemoryStorage::default();
        let topic = storage.create_topic("t", 2).unwrap();
        storage.append(&retention_scenario_rows(topic.id, crate::storage::now_ms())).unwrap();
        let configs = [("cleanup.policy", "compact"), ("segment.ms", "1"), ("min.compaction.lag.ms", "30000")];
        storage.replace_topic_configs(topic.id, &configs.map(|(n, v)| (n.to_owned(), v.to_owned()))).unwrap();
        let metrics = Metrics::default();
        let mut retention =
            Retention::new(RetentionTiming::every_look(Duration::from_secs(1)), Watermarks::default(), metrics.clone(), Arc::default());
        let mut runner = DirectRunner(storage);
        retention.run_if_due(&mut runner);
        // Partition 0's keyless records a minute or more old go but the last; partition 1's
        // are younger than the minimum lag. No retention: the log start stays.
        let limit = crate::storage::ReadLimit { from: 0, below: 10, max_bytes: 1 << 20, at_least_one: true };
        let mut left = |p| runner.0.read(topic.id, p, limit).unwrap().iter().map(|r| r.offset).collect::<Vec<_>>();
        assert_eq!((left(0), left(1).len()), (vec![9], 10));
        let figure = |name| metrics.snapshot().iter().find(|m| m.name == name).map(|m| m.value);
        assert_eq!(figure("compaction_removed_records_total"), Some(9.0));
        assert_eq!(figure("compacted_partitions_total"), Some(1.0));
    }

    #[test]
    fn old_and_oversized_prefixes_are_deleted_and_the_log_start_moves() {
        let mut storage = MemoryStorage::default();
        let topic = storage.create_topic("t", 2).unwrap();
        let now = crate::storage::now_ms();
        storage.append(&retention_scenario_rows(topic.id, now)).unwrap();
        storage
            .replace_topic_configs(topic.id, &[("retention.bytes".into(), "35".into()), ("retention.ms".into(), "150000".into())])
            .unwrap();
        let watermarks = Watermarks::default();
        watermarks.load(&mut storage, &[(topic.id, 0), (topic.id, 1)]).unwrap();
        let mut retention =
            Retention::new(RetentionTiming::every_look(Duration::from_secs(1)), watermarks.clone(), Metrics::default(), Arc::default());
        let mut runner = DirectRunner(storage);
        retention.run_if_due(&mut runner);
        // Partition 0: by time, messages from the last 150 s are kept (offsets 7, 8, 9); by
        // size, 35 bytes of 10-byte values keep the last 3 too.
        assert_eq!(runner.0.first_offset(topic.id, 0).unwrap(), Some(7));
        assert_eq!(runner.0.first_offset(topic.id, 1).unwrap(), Some(7), "size alone");
        assert_eq!(runner.0.next_offset(topic.id, 0).unwrap(), 10);
        assert_eq!(watermarks.get(topic.id, 0).map(|b| (b.log_start, b.high)), Some((7, 10)));
    }
}
