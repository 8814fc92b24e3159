//! The bridge between the async network side and the thread that owns [`Storage`].
//!
//! ```text
//!  tokio task                          worker main thread (SPI)
//!  ──────────                          ────────────────────────
//!  StorageClient::call(f) ──Job──▶ flume ──▶ JobQueue::run_pending(storage)
//!        │   wake() ─────────▶ SetLatch        │  runs f(storage) in a transaction,
//!        ▼                                      │  panics caught and logged
//!  oneshot.await  ◀────────── result ───────────┘
//! ```
//!
//! The network side never touches Postgres and the main thread never waits on a socket:
//! a job is a closure run to completion on the main thread, its result sent back over a
//! oneshot channel the task awaits.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use super::Storage;

/// A unit of storage work shipped to the storage thread.
type Job = Box<dyn FnOnce(&mut dyn Storage) + Send>;

/// Wakes the storage thread after a job is queued (in the worker: `SetLatch(MyLatch)`).
pub type Waker = Arc<dyn Fn() + Send + Sync>;

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[error("storage is unavailable: {0}")]
pub struct Unavailable(pub &'static str);

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
    /// returns `Err` or panics. Returns whether it committed.
    fn run(&mut self, job: &mut dyn FnMut(&mut dyn Storage) -> Result<(), String>) -> bool;
}

pub fn channel(wake: Waker) -> (StorageClient, JobQueue) {
    let (tx, rx) = flume::unbounded();
    (StorageClient { jobs: tx, wake }, JobQueue { jobs: rx })
}

impl StorageClient {
    /// Runs `f` on the storage thread and returns its result.
    pub async fn call<R, F>(&self, f: F) -> Result<R, Unavailable>
    where
        R: Send + 'static,
        F: FnOnce(&mut dyn Storage) -> R + Send + 'static,
    {
        let (reply, result) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move |storage| {
            let _ = reply.send(f(storage));
        });
        self.jobs.send(job).map_err(|_| Unavailable("the storage thread has stopped"))?;
        (self.wake)();
        result.await.map_err(|_| Unavailable("the storage request failed; see the server log"))
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

    /// True once every client is gone and nothing is left to run.
    pub fn is_disconnected(&self) -> bool {
        self.jobs.is_disconnected() && self.jobs.is_empty()
    }

    /// Serves jobs until every client is dropped. For tests, on a plain thread.
    pub fn serve_blocking(self, runner: &mut dyn JobRunner) {
        while let Ok(job) = self.jobs.recv() {
            run_job(runner, job);
        }
    }
}

/// A job always commits what it did; a failure inside it is a panic or Postgres ERROR.
fn run_job(runner: &mut dyn JobRunner, job: Job) {
    let mut job = Some(job);
    runner.run(&mut |storage| {
        if let Some(job) = job.take() {
            job(storage)
        }
        Ok(())
    });
}

/// Runs jobs directly against a storage, catching panics (tests and the in-memory engine).
/// There are no transactions: a failed job's partial effects stay.
pub struct DirectRunner<S: Storage>(pub S);

impl<S: Storage> JobRunner for DirectRunner<S> {
    fn run(&mut self, job: &mut dyn FnMut(&mut dyn Storage) -> Result<(), String>) -> bool {
        matches!(catch_unwind(AssertUnwindSafe(|| job(&mut self.0))), Ok(Ok(())))
    }
}

/// Starts a thread serving `storage`, for tests: the client works until it is dropped.
pub fn spawn_for_tests<S: Storage + Send + 'static>(storage: S) -> StorageClient {
    let (client, queue) = channel(Arc::new(|| {}));
    std::thread::spawn(move || queue.serve_blocking(&mut DirectRunner(storage)));
    client
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
}
