//! The composition root: the one place that builds the broker's parts and wires them.
//!
//! ```text
//!                  ┌──────────── Broker (network side, cloned into every connection) ─┐
//!  assemble() ───▶ │ config · storage client · commit queue · topic cache ·          │
//!                  │ watermarks · group coordinator · shutdown signal                │
//!                  └─────────────────────────────────────────────────────────────────┘
//!                  ┌──────────── StorageSide (the thread that owns storage) ──────────┐
//!                  │ bridge job queue · group committer · retention                   │
//!                  └──────────────────────────────────────────────────────────────────┘
//! ```
//! The worker (glue crate) calls [`start`] and then drives [`StorageSide::turn`] from its
//! main loop inside Postgres transactions; unit tests call [`assemble`] and drive the same
//! `StorageSide` over the in-memory engine on a plain thread. Reader processes call
//! [`answer_reader_job`] for each job the worker hands them.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::watch;

use crate::broker::figures::Figures;
use crate::broker::groups::{GroupCoordinator, GroupSettings};
use crate::broker::session::{ConnectionInfo, Registry};
use crate::broker::transactions::TxnCoordinator;
use crate::broker::Broker;
use crate::config::{Config, SharedConfig};
use crate::metrics::Metrics;
use crate::server::{ListenError, Listener, Server};
use crate::storage::bridge::{self, in_transaction, JobQueue, JobRunner, Waker};
use crate::storage::readers::{ReaderJob, Readers};
use crate::storage::reads::{answer_parts, ReadPlan, WireError};
use crate::storage::sql_appends::SqlAppendLog;
use crate::storage::topics::TopicCache;
use crate::storage::transactions::TxnLog;
use crate::storage::watermarks::Watermarks;
use crate::storage::{Storage, StorageError};
use crate::writer::group_commit::{self, CommitSettings, GroupCommitter};
use crate::writer::replicas::InSyncWatch;
use crate::writer::retention::{Retention, RetentionPass, RetentionTiming};
use crate::writer::standby_acks::ReplicationProgress;

/// The time storage jobs may take in one turn of the storage thread before the group
/// commit gets its turn.
pub const JOBS_PER_TURN: Duration = Duration::from_millis(20);

/// When a hot standby, which runs no retention and has no standbys of its own to look
/// at, is next due for either: never soon.
const IDLE_RETENTION: Duration = Duration::from_secs(3600);

/// What the thread that owns storage runs: bridge jobs, group commits, refreshes, retention.
pub struct StorageSide {
    jobs: JobQueue,
    committer: GroupCommitter,
    retention: Retention,
    /// The network side's settings, replaced on reload.
    config: SharedConfig,
    /// The open connections, which the worker publishes for `kafka.connections`.
    connections: Registry,
    /// The reader processes connected now, which the worker keeps at `pg_kafka.readers`.
    readers: Arc<Readers>,
    /// What the worker publishes for `kafka.broker_stats`, `kafka.groups` and the rest.
    figures: Figures,
    /// A hot standby: no retention passes (see [`Config::standby`]).
    standby: bool,
    /// Whether this primary has recorded that it leads (`kafka.cluster_leader`).
    leads: bool,
    /// The primary's look at its synchronous standbys (the in-sync replicas).
    in_sync: InSyncWatch,
}

impl StorageSide {
    /// Runs what is queued and what is due, each unit through `runner` (one transaction
    /// each). Returns how long until something is next due (zero while jobs are left).
    ///
    /// Storage jobs get [`JOBS_PER_TURN`] of each turn: a burst of them (a thousand
    /// clients' Metadata requests, say) is spread over turns, and the group commit still
    /// runs in every one, so producers are acknowledged on time.
    pub fn turn(&mut self, runner: &mut dyn JobRunner) -> Duration {
        if !self.standby && !self.leads {
            // Once per start (tried again next turn if it failed): standbys tell clients
            // this node leads once they have replayed it (broker/cluster.rs).
            let node_id = self.config.current().node_id;
            self.leads = runner.run(&mut |storage| storage.claim_leadership(node_id)).is_ok();
        }
        let jobs_left = self.jobs.run_pending_within(runner, JOBS_PER_TURN);
        self.committer.catch_up_with_sql(runner);
        let next_flush = self.committer.poll(runner);
        let next_refresh = self.committer.refresh_if_due(runner);
        // A hot standby deletes nothing: the primary's retention reaches it by replay.
        let next_retention = if self.standby { IDLE_RETENTION } else { self.retention.run_if_due(runner) };
        let next_in_sync = match self.standby {
            true => IDLE_RETENTION,
            false => {
                let config = self.config.current();
                self.in_sync.run_if_due(runner, &config.cluster_nodes, config.node_id)
            }
        };
        let next_periodic = next_refresh.min(next_retention).min(next_in_sync);
        let next = next_flush.map_or(next_periodic, |flush| flush.min(next_periodic));
        if jobs_left {
            Duration::ZERO
        } else {
            next
        }
    }

    /// Fails every queued produce with a retriable error (shutdown: nothing of it was
    /// acknowledged).
    pub fn fail_pending(&mut self) {
        self.committer.fail_pending();
    }

    /// Puts reloaded settings in force for the network side (SIGHUP). Settings fixed at
    /// start keep their start-up values.
    pub fn reload(&mut self, config: Config) {
        self.committer.set_max_lock_wait(Duration::from_millis(config.request_timeout_ms));
        self.config.replace(config);
    }

    /// Where SQL sessions record what they produced (`kafka.produce()`), so that the
    /// writer's counters and Fetch's watermarks follow them at once.
    pub fn set_sql_log(&mut self, log: SqlAppendLog) {
        self.committer.set_sql_log(log);
    }

    /// Where the writer reads its commits' WAL positions and the synchronous standbys'
    /// confirmations (acks=all answered apart from the commit, writer/standby_acks.rs).
    pub fn set_replication_progress(&mut self, progress: Box<dyn ReplicationProgress>) {
        self.committer.set_replication_progress(progress);
    }

    /// How many reader processes are connected now.
    pub fn readers_connected(&self) -> usize {
        self.readers.connected()
    }

    /// What operators see of the broker now.
    pub fn figures(&self) -> &Figures {
        &self.figures
    }

    /// The `limit` oldest open connections now, and how many are open.
    pub fn connections(&self, limit: usize) -> (Vec<ConnectionInfo>, usize) {
        (self.connections.first(limit), self.connections.count())
    }

    /// True once the network side is gone and nothing is left to run.
    pub fn is_disconnected(&self) -> bool {
        self.jobs.is_disconnected() && self.committer.is_disconnected()
    }
}

/// Builds a broker and its storage side. `wake` is called whenever work is queued for the
/// storage thread; `shutdown` turns true when the server stops (long polls then answer at
/// once).
pub fn assemble(config: Config, wake: Waker, shutdown: watch::Receiver<bool>) -> (Broker, StorageSide) {
    let (storage, jobs) = bridge::channel(wake.clone());
    let settings = CommitSettings {
        flush_interval: Duration::from_millis(config.flush_interval_ms),
        max_batch_bytes: config.max_batch_bytes,
        refresh_interval: Duration::from_millis(config.refresh_interval_ms),
        max_lock_wait: Duration::from_millis(config.request_timeout_ms),
        follow_replay: config.standby,
    };
    let watermarks = Watermarks::default();
    let topics = TopicCache::default();
    let (commits, mut committer) = group_commit::channel(settings, wake, watermarks.clone(), topics.clone());
    let metrics = Metrics::default();
    committer.set_metrics(metrics.clone());
    let txn_log = TxnLog::default();
    committer.set_txn_log(txn_log.clone());
    let txns = TxnCoordinator::new(txn_log);
    let groups = GroupCoordinator::new(GroupSettings::from_config(&config));
    let standby = config.standby;
    let retention_timing = RetentionTiming::of(&config);
    let retention_watermarks = watermarks.clone();
    let config = SharedConfig::new(config);
    let connections = Registry::default();
    let retention_metrics = metrics.clone();
    let broker = Broker::new(config.clone(), storage, commits, watermarks, topics, groups, txns, shutdown, connections.clone(), metrics);
    let readers = broker.readers().clone();
    let retention = Retention::new(retention_timing, retention_watermarks, retention_metrics, readers.clone());
    let figures = broker.figures();
    let in_sync = InSyncWatch::new(broker.in_sync_standbys().clone(), Duration::from_millis(config.current().refresh_interval_ms));
    (broker, StorageSide { jobs, committer, retention, config, connections, readers, figures, standby, leads: false, in_sync })
}

/// Binds the listeners from `config`, assembles the broker on them and starts serving;
/// returns also the listeners' description for the log.
pub fn start(config: Config, wake: Waker) -> Result<(Server, StorageSide, String), ListenError> {
    let listener = Listener::bind(&config)?;
    let described = listener.describe();
    let (broker, storage_side) = assemble(config, wake, listener.shutdown_signal());
    let server = Server::start(listener, broker).map_err(|source| ListenError::Bind { address: "(network thread)".into(), source })?;
    Ok((server, storage_side, described))
}

/// What can end a reader's job other than an answer.
#[derive(Debug, thiserror::Error)]
pub enum ReaderJobError {
    #[error("a malformed job: {0}")]
    Malformed(#[from] WireError),
    #[error("the answer cannot be sent: {0}")]
    Send(#[from] std::io::Error),
}

/// What a reader process does with one job frame (`[u8 kind][job]`, see
/// [`crate::storage::readers`]): runs the job through `runner` in one transaction and
/// hands its encoded answer to `send`. A job that succeeded is sent before its
/// transaction ends, so that a reader may lend the batches it read from the
/// transaction's memory instead of copying them (src/pg/index_read.rs); one that failed
/// is sent after the rollback, its error in the answer. A frame that does not decode is
/// an error: the reader stops.
pub fn answer_reader_job(
    frame: &[u8],
    runner: &mut dyn JobRunner,
    send: &mut dyn FnMut(&[Bytes]) -> std::io::Result<()>,
) -> Result<(), ReaderJobError> {
    let (&kind, job) = frame.split_first().ok_or(WireError::Truncated(1))?;
    match kind {
        ReadPlan::KIND => {
            let plan = ReadPlan::decode(job)?;
            answer_within(runner, send, |storage| plan.run(storage), answer_parts)
        }
        RetentionPass::KIND => {
            let pass = RetentionPass::decode(job)?;
            answer_within(runner, send, |storage| pass.run(storage), |answer| vec![Bytes::from(RetentionPass::encode_answer(answer))])
        }
        other => Err(WireError::UnknownTag(other).into()),
    }
}

/// Runs `job` in one transaction and sends its answer, encoded by `encode`: inside the
/// transaction when the job succeeded, after the rollback when it failed. Sent once:
/// should the commit of a job already answered fail (a read-only transaction's seldom
/// does), the answer stands.
fn answer_within<T>(
    runner: &mut dyn JobRunner,
    send: &mut dyn FnMut(&[Bytes]) -> std::io::Result<()>,
    mut job: impl FnMut(&mut dyn Storage) -> Result<T, StorageError>,
    encode: impl Fn(&Result<T, StorageError>) -> Vec<Bytes>,
) -> Result<(), ReaderJobError> {
    let mut sent = None;
    let outcome = in_transaction(runner, |storage| {
        let answer = Ok(job(storage)?);
        sent = Some(send(&encode(&answer)));
        Ok(())
    });
    if let Some(sent) = sent {
        return Ok(sent?);
    }
    let error = outcome.err().unwrap_or_else(|| StorageError::Database { sqlstate: None, message: "the job did not run".into() });
    Ok(send(&encode(&Err(error)))?)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::protocol::records::Record;
    use crate::storage::bridge::DirectRunner;
    use crate::storage::memory::MemoryStorage;
    use crate::storage::Storage;
    use crate::writer::group_commit::PartitionAppend;

    /// A burst of slow storage jobs does not hold off the group commit: each turn runs
    /// jobs for at most JOBS_PER_TURN, then flushes, and says to come back at once.
    #[tokio::test]
    async fn a_burst_of_jobs_is_spread_over_turns_and_the_writer_runs_in_each() {
        let config = Config { flush_interval_ms: 0, ..Config::default() };
        let (_shutdown_tx, shutdown) = watch::channel(false);
        let (broker, mut side) = assemble(config, Arc::new(|| {}), shutdown);
        let mut memory = MemoryStorage::default();
        let topic = memory.create_topic("t", 1).unwrap();
        let mut runner = DirectRunner(memory);
        let storage = broker.storage_client().clone();
        let slow: Vec<_> = (0..10)
            .map(|_| {
                let storage = storage.clone();
                tokio::spawn(async move { storage.call(|_| std::thread::sleep(Duration::from_millis(10))).await })
            })
            .collect();
        let record = Record { offset_delta: 0, timestamp: 0, key: None, value: None, headers: None };
        let append = PartitionAppend {
            topic,
            topics_generation: 0,
            partition: 0,
            records: vec![record],
            batch: None,
            batch_bytes: 0,
            producer: None,
            log_append_time: None,
            row_txn: None,
        };
        // Queued at once (the future only waits for the answer).
        let produced = tokio::spawn(broker.commit_queue().enqueue(vec![append], 1));
        while side.jobs.len() < 10 {
            tokio::task::yield_now().await;
        }
        let next = side.turn(&mut runner);
        assert_eq!(next, Duration::ZERO, "jobs are left for the next turn");
        assert_eq!(produced.await.unwrap().unwrap(), vec![Ok(0)], "the produce was committed in the first turn");
        while side.turn(&mut runner) == Duration::ZERO {}
        for job in slow {
            job.await.unwrap().unwrap();
        }
    }

    /// A retention scenario (rows of partition 0 a minute apart, retention.ms 150 s keeps
    /// offsets 7..): the same "database" for the main thread and for each reader.
    fn retention_storage() -> (MemoryStorage, i32) {
        let mut storage = MemoryStorage::default();
        let topic = storage.create_topic("t", 2).unwrap();
        storage.append(&crate::storage::retention_scenario_rows(topic.id, crate::storage::now_ms())).unwrap();
        storage.replace_topic_configs(topic.id, &[("retention.ms".into(), "150000".into())]).unwrap();
        (storage, topic.id)
    }

    /// Reader processes in threads: each answers jobs with [`answer_reader_job`] on a
    /// storage of its own and reports partition 0's first offset after each answer.
    fn readers_answering(name: &str, count: usize) -> (Arc<Readers>, watch::Sender<bool>, std::sync::mpsc::Receiver<Option<i64>>) {
        let path = std::env::temp_dir().join(format!("pg_kafka-service-{}-{name}.sock", std::process::id()));
        let readers = Arc::new(Readers::default());
        let (stop, shutdown) = watch::channel(false);
        tokio::spawn(readers.clone().accept(crate::storage::readers::bind(path.to_str().unwrap()).unwrap(), shutdown));
        let (report, reports) = std::sync::mpsc::channel();
        for _ in 0..count {
            let (storage, topic_id) = retention_storage();
            let report = report.clone();
            crate::storage::readers::fake::reader(&path, storage, usize::MAX, move |storage| {
                let _ = report.send(storage.first_offset(topic_id, 0).unwrap());
            });
        }
        (readers, stop, reports)
    }

    async fn until_connected(readers: &Readers, count: usize) {
        while readers.connected() < count {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    #[tokio::test]
    async fn a_retention_pass_runs_in_a_reader_and_moves_fetchs_log_start() {
        let (readers, _stop, reports) = readers_answering("retention", 2);
        until_connected(&readers, 2).await;
        let (storage, topic_id) = retention_storage();
        let watermarks = Watermarks::default();
        let mut runner = DirectRunner(storage);
        watermarks.load(&mut runner.0, &[(topic_id, 0)]).unwrap();
        let mut retention =
            Retention::new(RetentionTiming::every_look(Duration::from_secs(5)), watermarks.clone(), Metrics::default(), readers);
        retention.run_if_due(&mut runner);
        let deleted_in_reader = tokio::task::spawn_blocking(move || reports.recv_timeout(Duration::from_secs(5))).await.unwrap();
        assert_eq!(deleted_in_reader, Ok(Some(7)), "a reader deleted offsets 0..7");
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while watermarks.get(topic_id, 0).map(|b| b.log_start) != Some(7) {
            assert!(std::time::Instant::now() < deadline, "the log start did not move");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(runner.0.first_offset(topic_id, 0).unwrap(), Some(0), "the main thread deleted nothing");
    }

    #[tokio::test]
    async fn with_one_reader_retention_stays_on_the_main_thread() {
        let (readers, _stop, _reports) = readers_answering("retention-one", 1);
        until_connected(&readers, 1).await;
        let (storage, topic_id) = retention_storage();
        let mut runner = DirectRunner(storage);
        let mut retention =
            Retention::new(RetentionTiming::every_look(Duration::from_secs(5)), Watermarks::default(), Metrics::default(), readers);
        retention.run_if_due(&mut runner);
        assert_eq!(runner.0.first_offset(topic_id, 0).unwrap(), Some(7));
    }

    /// A runner that tells whether its transaction is open and can fail a job before it
    /// runs or at its commit.
    struct Observed {
        storage: MemoryStorage,
        open: Arc<std::sync::atomic::AtomicBool>,
        fail_begin: bool,
        fail_commit: bool,
    }

    impl JobRunner for Observed {
        fn run(&mut self, job: &mut dyn FnMut(&mut dyn Storage) -> Result<(), StorageError>) -> Result<(), StorageError> {
            let failed = || StorageError::Database { sqlstate: Some("57014".into()), message: "canceled".into() };
            if self.fail_begin {
                return Err(failed());
            }
            self.open.store(true, std::sync::atomic::Ordering::SeqCst);
            let result = job(&mut self.storage);
            self.open.store(false, std::sync::atomic::Ordering::SeqCst);
            result.and_then(|()| if self.fail_commit { Err(failed()) } else { Ok(()) })
        }
    }

    /// Answers one read plan of partition 0 of a topic holding two records through a
    /// runner failing as told; returns each answer sent, with whether its transaction was
    /// open then.
    fn answers_of_a_read(fail_begin: bool, fail_commit: bool) -> Vec<(bool, Result<crate::storage::reads::ReadResult, StorageError>)> {
        let mut storage = MemoryStorage::default();
        let topic = storage.create_topic("t", 1).unwrap();
        storage.append(&crate::storage::empty_rows(topic.id, 0, &[0, 1])).unwrap();
        let open = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut runner = Observed { storage, open: open.clone(), fail_begin, fail_commit };
        let read = crate::storage::reads::PartitionRead {
            topic_id: topic.id,
            partition: 0,
            from: 0,
            below: 2,
            max_bytes: 1 << 20,
            layout: topic.layout,
            codec: None,
        };
        let mut frame = vec![ReadPlan::KIND];
        frame.extend(ReadPlan { reads: vec![read], response_bytes: 1 << 20 }.encode());
        let mut sent = Vec::new();
        let mut send = |parts: &[Bytes]| {
            let answer = crate::storage::reads::decode_answer(Bytes::from(parts.concat())).unwrap();
            sent.push((open.load(std::sync::atomic::Ordering::SeqCst), answer));
            Ok(())
        };
        answer_reader_job(&frame, &mut runner, &mut send).unwrap();
        sent
    }

    #[test]
    fn a_reader_sends_what_it_read_before_its_transaction_ends() {
        let sent = answers_of_a_read(false, false);
        assert_eq!(sent.len(), 1);
        assert!(sent[0].0, "sent while the transaction was open");
        assert_eq!(sent[0].1.as_ref().map(|read| read[0].records), Ok(2));
    }

    #[test]
    fn a_failed_job_is_answered_with_its_error_after_the_rollback() {
        let sent = answers_of_a_read(true, false);
        assert_eq!(sent.len(), 1);
        assert!(!sent[0].0, "sent after the rollback");
        let message = sent[0].1.as_ref().map(|_| ()).unwrap_err().to_string();
        assert!(message.contains("SQLSTATE 57014") && message.contains("canceled"), "{message}");
    }

    #[test]
    fn an_answer_sent_stands_when_the_commit_then_fails() {
        let sent = answers_of_a_read(false, true);
        assert_eq!(sent.len(), 1, "one answer per job, or the worker reads the next job's answer for this one");
        assert!(sent[0].1.is_ok());
    }

    #[test]
    fn a_job_of_an_unknown_kind_is_refused_and_nothing_is_sent() {
        let mut runner = DirectRunner(MemoryStorage::default());
        let mut sent = 0;
        let outcome = answer_reader_job(&[9, 0, 0], &mut runner, &mut |_| {
            sent += 1;
            Ok(())
        });
        assert!(matches!(outcome, Err(ReaderJobError::Malformed(WireError::UnknownTag(9)))));
        assert_eq!(sent, 0);
    }
}
