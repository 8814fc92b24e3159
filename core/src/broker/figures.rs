//! What operators see of the broker, gathered from its parts: the figures behind
//! `kafka.broker_stats`, `kafka.groups`, `kafka.group_members` and
//! `kafka.topic_partitions` (which the worker copies into shared memory) and the
//! Prometheus endpoint (which serves them directly). Cheap to clone; reading takes a few
//! short locks and never the storage thread.

use std::sync::Arc;

use tokio::sync::Semaphore;

use super::groups::{GroupCoordinator, GroupDescription};
use super::session::Registry;
use super::Broker;
use crate::metrics::{CleanerFigures, Metric, Metrics, Snapshot};
use crate::storage::bridge::StorageClient;
use crate::storage::readers::Readers;
use crate::storage::watermarks::{Bounds, PartitionKey, Watermarks};
use crate::writer::group_commit::CommitQueue;

#[derive(Clone)]
pub struct Figures {
    metrics: Metrics,
    connections: Registry,
    requests: Arc<Semaphore>,
    responses: Arc<Semaphore>,
    budget_bytes: usize,
    commits: CommitQueue,
    storage: StorageClient,
    readers: Arc<Readers>,
    groups: GroupCoordinator,
    watermarks: Watermarks,
}

/// A partition as the broker knows it: its bounds (if a consumer or the writer loaded
/// them) and when it was last appended to since the worker started.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionFigures {
    pub key: PartitionKey,
    pub bounds: Option<Bounds>,
    pub last_append_ms: Option<i64>,
}

impl Figures {
    pub fn of(broker: &Broker) -> Figures {
        Figures {
            metrics: broker.metrics.clone(),
            connections: broker.connections.clone(),
            requests: broker.budget.clone(),
            responses: broker.responses.clone(),
            budget_bytes: broker.config().max_inflight_bytes,
            commits: broker.commits.clone(),
            storage: broker.storage.clone(),
            readers: broker.readers.clone(),
            groups: broker.groups.clone(),
            watermarks: broker.watermarks.clone(),
        }
    }

    /// The recorded figures and the gauges of now.
    pub fn broker(&self) -> Snapshot {
        let (produce_jobs, produce_bytes) = self.commits.queued();
        let in_use = |budget: &Semaphore| self.budget_bytes.saturating_sub(budget.available_permits()) as f64;
        let gauges = [
            ("connections", self.connections.count() as f64, "open Kafka connections"),
            ("in_flight_request_bytes", in_use(&self.requests), "request bytes read and not yet answered"),
            ("in_flight_response_bytes", in_use(&self.responses), "Fetch response bytes not yet written"),
            ("produce_queue_requests", produce_jobs as f64, "Produce requests waiting for the group commit"),
            ("produce_queue_bytes", produce_bytes as f64, "bytes of Produce requests waiting for the group commit"),
            ("storage_queue_jobs", self.storage.queued() as f64, "jobs waiting for the worker's main thread"),
            ("readers_connected", self.readers.connected() as f64, "reader processes connected"),
            ("groups", self.groups.count() as f64, "consumer groups with members or state"),
        ];
        let mut snapshot: Snapshot = gauges.into_iter().map(|(name, value, help)| Metric { name, api: None, value, help }).collect();
        snapshot.extend(self.metrics.snapshot());
        snapshot
    }

    /// Where compaction stands on each compacted partition, as of the last pass.
    pub fn cleaner(&self) -> Vec<CleanerFigures> {
        self.metrics.cleaner_figures()
    }

    /// Every group, as DescribeGroups shows it (with its generation), by id.
    pub fn groups(&self) -> Vec<(String, GroupDescription)> {
        self.groups.describe_all()
    }

    /// Every partition the broker has bounds or an append time for, by key.
    pub fn partitions(&self) -> Vec<PartitionFigures> {
        let mut by_key: std::collections::BTreeMap<PartitionKey, PartitionFigures> = self
            .watermarks
            .all()
            .into_iter()
            .map(|(key, bounds)| (key, PartitionFigures { key, bounds: Some(bounds), last_append_ms: None }))
            .collect();
        for (key, at) in self.metrics.last_appends() {
            by_key.entry(key).or_insert(PartitionFigures { key, bounds: None, last_append_ms: None }).last_append_ms = Some(at);
        }
        by_key.into_values().collect()
    }
}
