//! The bridge between the async network side and the thread that owns [`Storage`].
//!
//! ```text
//!  tokio task                          storage thread (the worker's main thread)
//!  ──────────                          ─────────────────────────────────────────
//!  StorageClient::call(f) ──Job──▶ flume ──▶ JobQueue::run_pending(runner)
//!        │   wake() ─────▶ eventfd          │  runs f(storage) in a transaction,
//!        ▼                                  │  panics caught and logged
//!  oneshot.await  ◀── result, after COMMIT ─┘
//! ```
//!
//! The network side never touches Postgres and the storage thread never waits on a
//! socket: a job is a closure run to completion on the storage thread. Its result is held
//! until the runner has committed the job's transaction and only then sent back, so a
//! client is never told of a change that another session cannot see yet, or that a
//! failed commit took back (the caller then gets [`Unavailable`]).

use std::sync::Arc;

use super::{Storage, StorageError};

/// Sends a job's result once its transaction has ended (`true`: committed).
type Reply = Box<dyn FnOnce(bool) + Send>;

/// A unit of storage work shipped to the storage thread.
type Job = Box<dyn FnOnce(&mut dyn Storage) -> Reply + Send>;

/// Wakes the storage thread after a job is queued (in the worker: an eventfd write).
pub type Waker = Arc<dyn Fn() + Send + Sync>;

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[error("storage is unavailable: {0}")]
pub struct Unavailable(pub &'static str);

/// Why a storage call gave no value: storage could not be reached, or it said no.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum StorageCallError {
    #[error(transparent)]
    Unavailable(#[from] Unavailable),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// The network side's handle on storage. Cheap to clone.
#[derive(Clone)]
pub struct StorageClient {
    jobs: flume::Sender<Job>,
    wake: Waker,
}

/// The storage thread's end: jobs waiting to run.
pub struct JobQueue {
    jobs: flume::Receiver<Job>,
}

/// How the storage thread runs a unit of work; the worker wraps each in a transaction.
pub trait JobRunner {
    /// Runs `job`, committing its effects if it returns `Ok`, rolling them back if it
    /// returns `Err` or panics (or the commit itself fails). `Ok` only once committed;
    /// the error says what failed, with Postgres's SQLSTATE when it was a database error.
    fn run(&mut self, job: &mut dyn FnMut(&mut dyn Storage) -> Result<(), StorageError>) -> Result<(), StorageError>;
}

/// Runs `job` through `runner` in one transaction: its result once committed, or what
/// failed.
pub fn in_transaction<T: Default>(
    runner: &mut dyn JobRunner,
    mut job: impl FnMut(&mut dyn Storage) -> Result<T, StorageError>,
) -> Result<T, StorageError> {
    let mut result = None;
    runner
        .run(&mut |storage| {
            result = Some(job(storage)?);
            Ok(())
        })
        .map(|()| result.unwrap_or_default())
}

pub fn channel(wake: Waker) -> (StorageClient, JobQueue) {
    let (tx, rx) = flume::unbounded();
    (StorageClient { jobs: tx, wake }, JobQueue { jobs: rx })
}

impl StorageClient {
    /// Jobs queued for the storage thread now.
    pub fn queued(&self) -> usize {
        self.jobs.len()
    }
}

impl StorageClient {
    /// Runs `f` on the storage thread and returns its result once its transaction committed.
    pub async fn call<R, F>(&self, f: F) -> Result<R, Unavailable>
    where
        R: Send + 'static,
        F: FnOnce(&mut dyn Storage) -> R + Send + 'static,
    {
        let (reply, result) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move |storage| {
            // Nobody waits for the answer any more (a read whose client hung up was
            // stopped): the work is not done. State changes are never stopped that way.
            if reply.is_closed() {
                return Box::new(|_| {});
            }
            let value = f(storage);
            Box::new(move |committed| {
                if committed {
                    let _ = reply.send(value);
                }
            })
        });
        self.jobs.send(job).map_err(|_| Unavailable("the storage thread has stopped"))?;
        (self.wake)();
        result.await.map_err(|_| Unavailable("the storage request failed; see the server log"))
    }

    /// Like [`call`](Self::call) for work that can fail in storage: both failures as one error.
    pub async fn try_call<R, F>(&self, f: F) -> Result<R, StorageCallError>
    where
        R: Send + 'static,
        F: FnOnce(&mut dyn Storage) -> Result<R, StorageError> + Send + 'static,
    {
        Ok(self.call(f).await??)
    }
}

impl JobQueue {
    /// Runs every job queued now, each through `runner`. Returns how many ran.
    pub fn run_pending(&self, runner: &mut dyn JobRunner) -> usize {
        let mut ran = 0;
        for job in self.jobs.try_iter() {
            run_job(runner, job);
            ran += 1;
        }
        ran
    }

    /// Runs queued jobs until none is left or `budget` has passed (a job that started
    /// always finishes). Returns whether jobs are still queued.
    pub fn run_pending_within(&self, runner: &mut dyn JobRunner, budget: std::time::Duration) -> bool {
        let started = std::time::Instant::now();
        while started.elapsed() < budget {
            match self.jobs.try_recv() {
                Ok(job) => run_job(runner, job),
                Err(_) => return false,
            }
        }
        !self.jobs.is_empty()
    }

    /// True once every client is gone and nothing is left to run.
    pub fn is_disconnected(&self) -> bool {
        self.jobs.is_disconnected() && self.jobs.is_empty()
    }

    /// Jobs waiting now.
    pub fn len(&self) -> usize {
        self.jobs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.jobs.is_empty()
    }
}

/// Runs one job in its own transaction, then answers its caller: with the result if the
/// transaction committed, with nothing (the caller sees [`Unavailable`]) if it did not.
fn run_job(runner: &mut dyn JobRunner, job: Job) {
    let mut job = Some(job);
    let mut reply = None;
    let outcome = runner.run(&mut |storage| {
        if let Some(job) = job.take() {
            reply = Some(job(storage));
        }
        Ok(())
    });
    if let Some(reply) = reply {
        reply(outcome.is_ok());
    }
}

#[cfg(any(test, feature = "testing"))]
pub use testing::{spawn_for_tests, DirectRunner};

#[cfg(any(test, feature = "testing"))]
mod testing {
    use std::panic::{catch_unwind, AssertUnwindSafe};

    use super::*;

    /// Runs jobs directly against a storage, catching panics (tests and the in-memory
    /// engine). There are no transactions: a failed job's partial effects stay.
    pub struct DirectRunner<S: Storage>(pub S);

    impl<S: Storage> JobRunner for DirectRunner<S> {
        fn run(&mut self, job: &mut dyn FnMut(&mut dyn Storage) -> Result<(), StorageError>) -> Result<(), StorageError> {
            match catch_unwind(AssertUnwindSafe(|| job(&mut self.0))) {
                Ok(result) => result,
                Err(_) => Err(StorageError::Database { sqlstate: None, message: "the job panicked".into() }),
            }
        }
    }

    /// Starts a thread serving `storage`: the client works until it is dropped.
    pub fn spawn_for_tests<S: Storage + Send + 'static>(storage: S) -> StorageClient {
        let (client, queue) = channel(Arc::new(|| {}));
        std::thread::spawn(move || {
            let mut runner = DirectRunner(storage);
            while let Ok(job) = queue.jobs.recv() {
                run_job(&mut runner, job);
            }
        });
        client
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::memory::MemoryStorage;

    #[tokio::test]
    async fn calls_run_on_the_storage_thread_and_return_results() {
        let client = spawn_for_tests(MemoryStorage::default());
        let created = client.call(|s| s.create_topic("t", 3)).await.unwrap().unwrap();
        assert_eq!(created.partitions, 3);
        let found = client.call(|s| s.topic("t")).await.unwrap().unwrap();
        assert_eq!(found, Some(created));
    }

    #[tokio::test]
    async fn a_panicking_job_fails_only_its_caller() {
        let client = spawn_for_tests(MemoryStorage::default());
        let failed = client.call(|_| -> i32 { panic!("boom") }).await;
        assert!(failed.is_err());
        assert_eq!(client.call(|_| 7).await, Ok(7));
    }

    #[tokio::test]
    async fn calls_fail_once_the_storage_thread_is_gone() {
        let (client, queue) = channel(Arc::new(|| {}));
        drop(queue);
        assert!(client.call(|_| ()).await.is_err());
    }

    type Call = std::pin::Pin<Box<dyn std::future::Future<Output = Result<i32, Unavailable>> + Send>>;

    fn poll(call: &mut Call) -> std::task::Poll<Result<i32, Unavailable>> {
        call.as_mut().poll(&mut std::task::Context::from_waker(std::task::Waker::noop()))
    }

    /// A runner that polls the caller's future right after the job ran, before the
    /// transaction ends, to see whether an answer was already out.
    struct Recording {
        storage: MemoryStorage,
        call: Call,
        answered_inside: Option<bool>,
        commit: bool,
    }

    impl JobRunner for Recording {
        fn run(&mut self, job: &mut dyn FnMut(&mut dyn Storage) -> Result<(), StorageError>) -> Result<(), StorageError> {
            job(&mut self.storage)?;
            self.answered_inside = Some(poll(&mut self.call).is_ready());
            if self.commit {
                Ok(())
            } else {
                Err(StorageError::Database { sqlstate: Some("40P01".into()), message: "deadlock".into() })
            }
        }
    }

    #[test]
    fn the_answer_comes_after_the_commit_and_never_after_a_rollback() {
        for commit in [true, false] {
            let (client, queue) = channel(Arc::new(|| {}));
            let mut call: Call = Box::pin(async move { client.call(|_| 5).await });
            assert!(poll(&mut call).is_pending(), "queued");
            let mut runner = Recording { storage: MemoryStorage::default(), call, answered_inside: None, commit };
            queue.run_pending(&mut runner);
            assert_eq!(runner.answered_inside, Some(false), "no answer before the transaction ended");
            match poll(&mut runner.call) {
                std::task::Poll::Ready(result) => assert_eq!(result.is_ok(), commit, "commit {commit}: {result:?}"),
                std::task::Poll::Pending => panic!("no answer after the transaction ended"),
            }
        }
    }
}
