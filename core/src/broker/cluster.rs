//! The nodes a client is told of, and which of them leads.
//!
//! A node alone (no `pg_kafka.cluster_nodes`) is every partition's leader and replica, as
//! before. With a list, set the same on a primary and its hot standbys (docs/replication.md),
//! every node's Metadata names them all: each at its address for the client's listener
//! protocol (this node at its own advertised address), every node a replica of every
//! partition, and the primary the leader, the controller and every group's coordinator.
//!
//! The primary knows it leads. A standby learns who does from `kafka.cluster_leader`,
//! which the primary's worker writes when it starts and Postgres replays; it re-reads it
//! at most every `pg_kafka.refresh_interval_ms`, when a request needs it.
//!
//! The in-sync replicas are the leader and the standbys synchronous now: the primary's
//! storage side looks at them every refresh interval (writer/replicas.rs) and records
//! them in `kafka.cluster_in_sync`, which a standby reads with the leader.

use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::{session, storage_call, Broker};
use crate::config::nodes;
use crate::security::listeners::SecurityProtocol;
use crate::writer::replicas::InSyncStandbys;

/// The leader a standby last read (-1: none known) and when; and the standbys in sync,
/// which a standby reads with it and the primary's storage side writes.
#[derive(Debug)]
pub struct LeaderCache {
    leader: AtomicI32,
    read_at: Mutex<Option<Instant>>,
    reading: AtomicBool,
    in_sync: InSyncStandbys,
}

impl Default for LeaderCache {
    fn default() -> Self {
        LeaderCache {
            leader: AtomicI32::new(-1),
            read_at: Mutex::new(None),
            reading: AtomicBool::new(false),
            in_sync: InSyncStandbys::default(),
        }
    }
}

impl LeaderCache {
    fn known(&self) -> Option<i32> {
        Some(self.leader.load(Ordering::Relaxed)).filter(|id| *id >= 0)
    }

    /// The leader, re-read first when the last read is older than `max_age` (one request
    /// re-reads at a time; the others go on with what was read last).
    async fn current(&self, broker: &Broker, max_age: Duration) -> Option<i32> {
        let stale = self.read_at.lock().is_none_or(|at| at.elapsed() >= max_age);
        if stale && !self.reading.swap(true, Ordering::AcqRel) {
            // Released however this ends: a request whose connection closes is dropped
            // mid-read (FindCoordinator), and the next one must read again.
            let _reading = Reading(&self.reading);
            if let Ok((leader, in_sync)) = storage_call(broker, |s| Ok((s.cluster_leader()?, s.recorded_in_sync()?))).await {
                self.leader.store(leader.unwrap_or(-1), Ordering::Relaxed);
                self.in_sync.set(in_sync);
                *self.read_at.lock() = Some(Instant::now());
            }
        }
        self.known()
    }

    /// Where the standbys in sync are kept.
    pub(crate) fn in_sync(&self) -> &InSyncStandbys {
        &self.in_sync
    }
}

/// The one read in progress; dropping it lets the next request read.
struct Reading<'a>(&'a AtomicBool);

impl Drop for Reading<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// What one request is told of the cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterView {
    /// This node.
    pub this: i32,
    /// The leader of every partition (the node whose Postgres is the primary); `None`
    /// while a standby does not know it.
    pub leader: Option<i32>,
    /// Every node with an address for this client's listener, by id.
    pub brokers: Vec<Node>,
    /// Every node: the replicas of every partition.
    pub replicas: Vec<i32>,
    /// The leader, then the standbys in sync now: the in-sync replicas of every partition
    /// (none while the leader is unknown).
    pub in_sync: Vec<i32>,
}

/// A node as a client reaches it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    pub id: i32,
    pub host: String,
    pub port: i32,
    pub rack: Option<String>,
}

impl ClusterView {
    /// Where this client reaches node `id`, if it can.
    pub fn address_of(&self, id: i32) -> Option<(String, i32)> {
        self.brokers.iter().find(|n| n.id == id).map(|n| (n.host.clone(), n.port))
    }

    /// KIP-392: the node a consumer in `client_rack` should fetch from instead of this
    /// one, when this node leads and another node it can reach is in its rack (the one
    /// of lowest id) while this one is not. Its data is what it has replayed; a consumer
    /// ahead of it is answered OFFSET_OUT_OF_RANGE there and comes back to the leader.
    pub fn preferred_read_replica(&self, client_rack: &str) -> Option<i32> {
        let rack_of = |id: i32| self.brokers.iter().find(|n| n.id == id).and_then(|n| n.rack.as_deref());
        if client_rack.is_empty() || self.leader != Some(self.this) || rack_of(self.this) == Some(client_rack) {
            return None;
        }
        self.brokers.iter().find(|n| n.id != self.this && n.rack.as_deref() == Some(client_rack)).map(|n| n.id)
    }

    /// The leader, with where this client reaches it.
    pub fn leader_address(&self) -> Option<(i32, String, i32)> {
        let leader = self.leader?;
        self.address_of(leader).map(|(host, port)| (leader, host, port))
    }
}

/// The cluster as the current request's client sees it.
pub async fn view(broker: &Broker) -> ClusterView {
    let config = broker.config();
    let leader = if config.standby {
        // A standby never leads: its own id there is a stale record (or two nodes given
        // one id), and clients sent to it would be sent back.
        broker.leader.current(broker, Duration::from_millis(config.refresh_interval_ms)).await.filter(|id| *id != config.node_id)
    } else {
        Some(config.node_id)
    };
    let protocol = session::current().map_or(SecurityProtocol::Plaintext, |s| s.listener.protocol);
    let (host, port) = broker.advertised_address();
    let replicas = nodes::ids(&config.cluster_nodes, config.node_id);
    let rack = |id: i32| nodes::rack_of(&config.cluster_nodes, id).map(str::to_owned);
    let brokers = replicas
        .iter()
        .filter_map(|&id| match id == config.node_id {
            true => Some(Node { id, host: host.clone(), port, rack: rack(id) }),
            false => nodes::address_of(&config.cluster_nodes, id, protocol).map(|(h, p)| Node {
                id,
                host: h.to_owned(),
                port: i32::from(p),
                rack: rack(id),
            }),
        })
        .collect();
    let in_sync = in_sync_replicas(leader, &broker.leader.in_sync().get(), &replicas);
    ClusterView { this: config.node_id, leader, brokers, replicas, in_sync }
}

/// The leader and, after it, the standbys in sync that are replicas.
fn in_sync_replicas(leader: Option<i32>, standbys: &[i32], replicas: &[i32]) -> Vec<i32> {
    let Some(leader) = leader else { return Vec::new() };
    let standbys = standbys.iter().copied().filter(|id| *id != leader && replicas.contains(id));
    std::iter::once(leader).chain(standbys).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::testing::{broker_on, with_storage};
    use crate::config::Config;
    use crate::storage::memory::MemoryStorage;
    use std::future::Future;

    fn config(standby: bool, node_id: i32) -> Config {
        let cluster_nodes = nodes::parse("1@10.0.0.1:9092,2@10.0.0.2:9092,3@SSL://10.0.0.3:9093").unwrap();
        Config { standby, node_id, cluster_nodes, refresh_interval_ms: 0, ..Config::default() }
    }

    #[tokio::test]
    async fn a_node_alone_leads_and_is_the_only_replica() {
        let view = view(&broker_on(MemoryStorage::default(), Config::default())).await;
        let this = Node { id: 1, host: "127.0.0.1".into(), port: 9092, rack: None };
        assert_eq!(view, ClusterView { this: 1, leader: Some(1), brokers: vec![this], replicas: vec![1], in_sync: vec![1] });
    }

    #[tokio::test]
    async fn the_primary_leads_and_names_the_nodes_its_clients_can_reach() {
        let view = view(&broker_on(MemoryStorage::default(), config(false, 2))).await;
        assert_eq!(view.leader, Some(2));
        assert_eq!(view.replicas, vec![1, 2, 3]);
        let ids: Vec<i32> = view.brokers.iter().map(|b| b.id).collect();
        assert_eq!(ids, vec![1, 2], "node 3 has no PLAINTEXT address");
        assert_eq!(view.address_of(2), Some(("127.0.0.1".into(), 9092)), "this node at its own advertised address");
        assert_eq!(view.address_of(1), Some(("10.0.0.1".into(), 9092)));
    }

    #[tokio::test]
    async fn a_consumer_in_a_standbys_rack_is_sent_there_by_the_leader_only() {
        let cluster_nodes = nodes::parse("1:a@10.0.0.1:9092,2:b@10.0.0.2:9092,3:b@10.0.0.3:9092").unwrap();
        let on = |standby: bool, node_id: i32| {
            let mut storage = MemoryStorage::default();
            storage.leader = Some(1);
            broker_on(storage, Config { standby, node_id, cluster_nodes: cluster_nodes.clone(), ..Config::default() })
        };
        let leader = view(&on(false, 1)).await;
        assert_eq!(leader.preferred_read_replica("b"), Some(2), "the first node of the client's rack");
        assert_eq!(leader.preferred_read_replica("a"), None, "the leader is in the client's rack");
        assert_eq!(leader.preferred_read_replica("c"), None, "no node in the client's rack");
        assert_eq!(leader.preferred_read_replica(""), None, "a client without a rack");
        assert_eq!(view(&on(true, 3)).await.preferred_read_replica("b"), None, "a standby sends nobody elsewhere");
    }

    #[tokio::test]
    async fn a_read_dropped_midway_lets_the_next_request_read() {
        let mut storage = MemoryStorage::default();
        storage.leader = Some(1);
        let broker = broker_on(storage, config(true, 2));
        // A request dropped before its read was answered (its connection closed).
        let mut first = Box::pin(view(&broker));
        let mut context = std::task::Context::from_waker(std::task::Waker::noop());
        assert!(first.as_mut().poll(&mut context).is_pending(), "reading");
        drop(first);
        assert_eq!(view(&broker).await.leader, Some(1));
    }

    #[tokio::test]
    async fn a_standby_follows_the_leader_the_primary_recorded() {
        let broker = broker_on(MemoryStorage::default(), config(true, 2));
        assert_eq!(view(&broker).await.leader, None, "no primary has said it leads");
        assert_eq!(view(&broker).await.replicas, vec![1, 2, 3]);
        let claim = |id: i32| {
            let broker = broker.clone();
            async move {
                with_storage(&broker, move |s| s.claim_leadership(id)).await.unwrap();
                *broker.leader.read_at.lock() = None; // as if the refresh interval had passed
            }
        };
        claim(1).await;
        assert_eq!(view(&broker).await.leader_address(), Some((1, "10.0.0.1".into(), 9092)));
        claim(2).await;
        assert_eq!(view(&broker).await.leader, None, "a standby never leads, whatever the record says");
        claim(3).await;
        let view = view(&broker).await;
        assert_eq!((view.leader, view.leader_address()), (Some(3), None), "a failover: node 3 has no address for this client");
    }

    #[tokio::test]
    async fn the_in_sync_replicas_are_the_leader_and_the_standbys_in_sync() {
        let primary = broker_on(MemoryStorage::default(), config(false, 1));
        assert_eq!(view(&primary).await.in_sync, vec![1], "no standby in sync");
        primary.leader.in_sync().set(vec![3, 7]);
        assert_eq!(view(&primary).await.in_sync, vec![1, 3], "as the storage side saw them; node 7 is no replica");

        let mut storage = MemoryStorage::default();
        storage.leader = Some(1);
        storage.recorded_in_sync = vec![1, 2];
        let standby = broker_on(storage, config(true, 2));
        assert_eq!(view(&standby).await.in_sync, vec![1, 2], "as the primary recorded them, the leader first once");
        with_storage(&standby, |s| s.record_in_sync(&[])).await.unwrap();
        *standby.leader.read_at.lock() = None;
        assert_eq!(view(&standby).await.in_sync, vec![1]);
        with_storage(&standby, |s| s.claim_leadership(2)).await.unwrap();
        *standby.leader.read_at.lock() = None;
        assert_eq!(view(&standby).await.in_sync, Vec::<i32>::new(), "no leader known: no in-sync replicas");
    }
}
