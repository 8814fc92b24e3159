//! The producers' end of the group commit: a Produce handler (or a transaction's end, or
//! a SQL-side job) queues its appends as a [`ProduceJob`] and awaits its offsets, which
//! [`GroupCommitter`](super::group_commit::GroupCommitter) answers after the commit.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use kafka_protocol::ResponseError;
use tokio::sync::oneshot;

use super::group_commit::PartitionAppend;
use super::replicas::Durability;
use crate::storage::bridge::{Unavailable, Waker};
use crate::storage::{Storage, StorageError};

/// The base offset given to an append, or why it was refused.
pub type AppendResult = Result<i64, ResponseError>;

/// Storage work that goes into the same transaction as a job's appends (a transaction's
/// end: its state and offsets with its markers). It may run more than once if the write
/// is retried, each time in a new transaction.
pub type AfterAppend = Box<dyn Fn(&mut dyn Storage) -> Result<(), StorageError> + Send + Sync>;

/// One Produce request's appends, waiting for the writer.
pub(super) struct ProduceJob {
    pub(super) appends: Vec<PartitionAppend>,
    /// Produce with acks=all (writer/replicas.rs).
    pub(super) acks_all: bool,
    /// Whether its commit may skip the synchronous standbys (acks=1 Produce).
    pub(super) durability: Durability,
    /// Run in the transaction that stores the appends, after them.
    pub(super) then: Option<AfterAppend>,
    pub(super) bytes: usize,
    pub(super) reply: oneshot::Sender<Vec<AppendResult>>,
    pub(super) queued_at: Instant,
}

impl ProduceJob {
    /// 1 for a job that ends a transaction (its storage work runs after its appends), else
    /// 0: what [`GroupCommitter`]'s `queued_ends` counts.
    pub(super) fn ends(&self) -> usize {
        usize::from(self.then.is_some())
    }
}

/// The handlers' end: submit appends, await their offsets.
#[derive(Clone)]
pub struct CommitQueue {
    pub(super) jobs: flume::Sender<ProduceJob>,
    pub(super) queued_bytes: Arc<AtomicUsize>,
    pub(super) queued_ends: Arc<AtomicUsize>,
    pub(super) wake: Waker,
}

impl CommitQueue {
    /// Produce requests waiting for the writer, and their bytes (not those held back for a
    /// partition a SQL transaction holds).
    pub fn queued(&self) -> (usize, usize) {
        (self.jobs.len(), self.queued_bytes.load(Ordering::Relaxed))
    }

    /// Queues `appends` for the next group commit and waits until it is committed (or failed).
    /// `bytes` is the payload size, counted towards `max_batch_bytes`.
    #[cfg(any(test, feature = "testing"))]
    pub async fn submit(&self, appends: Vec<PartitionAppend>, bytes: usize) -> Result<Vec<AppendResult>, Unavailable> {
        self.enqueue(appends, bytes).await
    }

    /// Queues `appends` now (the queue keeps the order of calls) and returns what to await
    /// for the outcome.
    pub fn enqueue(
        &self,
        appends: Vec<PartitionAppend>,
        bytes: usize,
    ) -> impl std::future::Future<Output = Result<Vec<AppendResult>, Unavailable>> + use<> {
        self.enqueue_job(appends, bytes, None, false, Durability::Replicated)
    }

    /// Like [`enqueue`](Self::enqueue), for a Produce: with `acks_all`, `min.insync.replicas`
    /// applies and the commit waits for the synchronous standbys; without, it does not
    /// (writer/replicas.rs).
    pub fn enqueue_produce(
        &self,
        appends: Vec<PartitionAppend>,
        bytes: usize,
        acks_all: bool,
    ) -> impl std::future::Future<Output = Result<Vec<AppendResult>, Unavailable>> + use<> {
        let durability = if acks_all { Durability::Replicated } else { Durability::Local };
        self.enqueue_job(appends, bytes, None, acks_all, durability)
    }

    /// Like [`enqueue`](Self::enqueue), with storage work `then` done in the same
    /// transaction as the appends.
    pub fn enqueue_then(
        &self,
        appends: Vec<PartitionAppend>,
        bytes: usize,
        then: Option<AfterAppend>,
    ) -> impl std::future::Future<Output = Result<Vec<AppendResult>, Unavailable>> + use<> {
        self.enqueue_job(appends, bytes, then, false, Durability::Replicated)
    }

    fn enqueue_job(
        &self,
        appends: Vec<PartitionAppend>,
        bytes: usize,
        then: Option<AfterAppend>,
        acks_all: bool,
        durability: Durability,
    ) -> impl std::future::Future<Output = Result<Vec<AppendResult>, Unavailable>> + use<> {
        let (reply, result) = oneshot::channel();
        let job = ProduceJob { appends, acks_all, durability, then, bytes, reply, queued_at: Instant::now() };
        let ends = job.ends();
        self.queued_bytes.fetch_add(bytes, Ordering::Relaxed);
        self.queued_ends.fetch_add(ends, Ordering::Relaxed);
        let queued = match self.jobs.send(job) {
            Ok(()) => {
                (self.wake)();
                Ok(())
            }
            Err(_) => {
                self.queued_bytes.fetch_sub(bytes, Ordering::Relaxed);
                self.queued_ends.fetch_sub(ends, Ordering::Relaxed);
                Err(Unavailable("the writer has stopped"))
            }
        };
        async move {
            queued?;
            result.await.map_err(|_| Unavailable("the writer stopped before committing"))
        }
    }
}
