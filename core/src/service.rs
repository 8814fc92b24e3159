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
//! `StorageSide` over the in-memory engine on a plain thread.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::broker::groups::{GroupCoordinator, GroupSettings};
use crate::broker::Broker;
use crate::config::Config;
use crate::server::{Listener, Server};
use crate::storage::bridge::{self, JobQueue, JobRunner, Waker};
use crate::storage::topics::TopicCache;
use crate::storage::watermarks::Watermarks;
use crate::writer::group_commit::{self, CommitSettings, GroupCommitter};
use crate::writer::retention::Retention;

/// What the thread that owns storage runs: bridge jobs, group commits, refreshes, retention.
pub struct StorageSide {
    jobs: JobQueue,
    committer: GroupCommitter,
    retention: Retention,
}

impl StorageSide {
    /// Runs what is queued and what is due, each unit through `runner` (one transaction
    /// each). Returns how long until something is next due.
    pub fn turn(&mut self, runner: &mut dyn JobRunner) -> Duration {
        self.jobs.run_pending(runner);
        let next_flush = self.committer.poll(runner);
        let next_refresh = self.committer.refresh_if_due(runner);
        let next_retention = self.retention.run_if_due(runner);
        let next_periodic = next_refresh.min(next_retention);
        next_flush.map_or(next_periodic, |flush| flush.min(next_periodic))
    }

    /// Fails every queued produce with a retriable error (shutdown: nothing of it was
    /// acknowledged).
    pub fn fail_pending(&mut self) {
        self.committer.fail_pending();
    }

    /// True once the network side is gone and nothing is left to run.
    pub fn is_disconnected(&self) -> bool {
        self.jobs.is_disconnected() && self.committer.is_disconnected()
    }
}

/// Builds a broker and its storage side. `wake` is called whenever work is queued for the
/// storage thread; `advertised_port` is what Metadata tells clients; `shutdown` turns true
/// when the server stops (long polls then answer at once).
pub fn assemble(config: Arc<Config>, wake: Waker, advertised_port: u16, shutdown: watch::Receiver<bool>) -> (Broker, StorageSide) {
    let (storage, jobs) = bridge::channel(wake.clone());
    let settings = CommitSettings {
        flush_interval: Duration::from_millis(config.flush_interval_ms),
        max_batch_bytes: config.max_batch_bytes,
        refresh_interval: Duration::from_millis(config.refresh_interval_ms),
    };
    let watermarks = Watermarks::default();
    let topics = TopicCache::default();
    let (commits, committer) = group_commit::channel(settings, wake, watermarks.clone(), topics.clone());
    let retention = Retention::new(Duration::from_millis(config.retention_check_interval_ms), watermarks.clone());
    let groups = GroupCoordinator::new(GroupSettings::from_config(&config));
    let broker = Broker::new(config, advertised_port, storage, commits, watermarks, topics, groups, shutdown);
    (broker, StorageSide { jobs, committer, retention })
}

/// Binds the listener from `config`, assembles the broker on it and starts serving.
pub fn start(config: Arc<Config>, wake: Waker) -> std::io::Result<(Server, StorageSide)> {
    let listener = Listener::bind(&config)?;
    let port = listener.local_addr().port();
    let (broker, storage_side) = assemble(config, wake, port, listener.shutdown_signal());
    Ok((Server::start(listener, broker)?, storage_side))
}
