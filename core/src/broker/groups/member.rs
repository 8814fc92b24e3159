//! One member of a group, and the choice of the protocol the whole group will use.

use std::time::Duration;

use bytes::Bytes;
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::*;

pub(super) struct Member {
    pub(super) id: String,
    pub(super) instance_id: Option<String>,
    pub(super) client_id: String,
    pub(super) client_host: String,
    pub(super) protocols: Vec<(String, Bytes)>,
    pub(super) session_timeout: Duration,
    pub(super) rebalance_timeout: Duration,
    pub(super) last_seen: Instant,
    /// Joining order: the earliest member still present leads.
    pub(super) join_order: u64,
    pub(super) awaiting_join: Option<oneshot::Sender<JoinResponse>>,
    pub(super) awaiting_sync: Option<oneshot::Sender<SyncResponse>>,
    pub(super) assignment: Bytes,
}

impl Member {
    pub(super) fn metadata_for(&self, protocol: Option<&str>) -> Bytes {
        self.protocols.iter().find(|(name, _)| Some(name.as_str()) == protocol).map(|(_, m)| m.clone()).unwrap_or_default()
    }

    /// A member awaiting a JoinGroup or SyncGroup answer is alive by definition.
    pub(super) fn expired(&self, now: Instant) -> bool {
        self.awaiting_join.is_none() && self.awaiting_sync.is_none() && now >= self.last_seen + self.session_timeout
    }
}

/// The protocol every member supports that most members list first; `members` in joining
/// order (ties go to the protocol the earliest member prefers).
pub(super) fn choose_protocol(members: &[&Member]) -> Option<String> {
    let supported_by_all = |name: &str| members.iter().all(|m| m.protocols.iter().any(|(n, _)| n == name));
    let first = members.first()?;
    let candidates: Vec<&str> = first.protocols.iter().map(|(n, _)| n.as_str()).filter(|n| supported_by_all(n)).collect();
    let votes = |candidate: &str| {
        members.iter().filter(|m| m.protocols.iter().map(|(n, _)| n.as_str()).find(|n| candidates.contains(n)) == Some(candidate)).count()
    };
    let mut best: Option<(&str, usize)> = None;
    for candidate in &candidates {
        let count = votes(candidate);
        if best.is_none_or(|(_, most)| count > most) {
            best = Some((candidate, count));
        }
    }
    best.map(|(name, _)| name.to_owned())
}
