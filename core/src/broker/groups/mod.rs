//! Consumer groups, classic protocol: membership and rebalances, in memory.
//!
//! ```text
//!             join (first member)            every member rejoined, or the
//!   Empty ─────────────────────▶ Preparing ── rebalance timeout passed ──▶ Completing
//!     ▲                          Rebalance  ◀── join / leave / expiry ─── Rebalance
//!     │ last member gone            ▲                                        │ leader's
//!     └─────────────────────────────┴──── join / leave / expiry ── Stable ◀──┘ SyncGroup
//! ```
//!
//! A JoinGroup waits (its handler awaits a oneshot) until the rebalance completes: then
//! the generation goes up, the broker picks a protocol every member supports (by the
//! members' votes), and the leader, the first member to have joined that is still here,
//! receives every member's metadata. A SyncGroup from a follower waits until the leader's
//! SyncGroup hands out the assignments; the broker never assigns partitions itself.
//! Generations and member ids fence stale members; `group.instance.id` makes a member
//! static, and an older member id for the same instance is fenced.
//!
//! Membership lives only here (a restart makes every member rejoin, as after a
//! coordinator move in Kafka); committed offsets are in `kafka.consumer_offsets`.
//! The lock is a `parking_lot::Mutex` (it cannot be poisoned) held only for map updates;
//! nothing here awaits while holding it, and nothing here panics on client input.

use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::ResponseError;
use tokio::sync::oneshot;

use crate::config::Config;

pub mod assignment;
mod coordinator;
mod group;
mod member;
#[cfg(test)]
mod tests;

pub use coordinator::GroupCoordinator;

/// A group id pg_kafka can keep: not empty, and storable in Postgres (no NUL bytes; its
/// committed offsets are rows keyed by it). INVALID_GROUP_ID otherwise.
pub fn check_group_id(group_id: &str) -> Result<(), ResponseError> {
    if group_id.is_empty() || !crate::storage::is_storable_text(group_id) {
        return Err(ResponseError::InvalidGroupId);
    }
    Ok(())
}

/// The protocol type shown for groups known only by their committed offsets (after a
/// restart, before any member rejoins): offsets are committed by consumers.
pub const OFFSETS_ONLY_PROTOCOL_TYPE: &str = "consumer";

/// Limits taken from the `pg_kafka.group_*` settings.
#[derive(Clone, Copy, Debug)]
pub struct GroupSettings {
    pub min_session_timeout: Duration,
    pub max_session_timeout: Duration,
    pub initial_rebalance_delay: Duration,
    pub max_size: usize,
}

impl GroupSettings {
    pub fn from_config(config: &Config) -> GroupSettings {
        GroupSettings {
            min_session_timeout: Duration::from_millis(config.group_min_session_timeout_ms),
            max_session_timeout: Duration::from_millis(config.group_max_session_timeout_ms),
            initial_rebalance_delay: Duration::from_millis(config.group_initial_rebalance_delay_ms),
            max_size: config.group_max_size,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GroupState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
}

impl GroupState {
    /// The name Kafka's DescribeGroups and ListGroups use.
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
        }
    }
}

/// A JoinGroup, as the coordinator needs it.
#[derive(Clone, Debug, Default)]
pub struct JoinRequest {
    pub group_id: String,
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub protocol_type: String,
    /// (name, metadata) in the member's order of preference.
    pub protocols: Vec<(String, Bytes)>,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    /// JoinGroup v4+: a member without an id first gets one with MEMBER_ID_REQUIRED.
    pub require_member_id: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JoinResponse {
    pub error: Option<ResponseError>,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader: String,
    pub member_id: String,
    /// Every member with its metadata for the chosen protocol; only the leader gets them.
    pub members: Vec<JoinedMember>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JoinedMember {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub metadata: Bytes,
}

impl JoinResponse {
    fn error(error: ResponseError, member_id: &str) -> JoinResponse {
        JoinResponse { error: Some(error), generation: -1, member_id: member_id.to_owned(), ..JoinResponse::default() }
    }
}

#[derive(Clone, Debug, Default)]
pub struct SyncRequest {
    pub group_id: String,
    pub generation: i32,
    pub member_id: String,
    pub instance_id: Option<String>,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    /// The leader's assignment per member id (empty from followers).
    pub assignments: Vec<(String, Bytes)>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SyncResponse {
    pub error: Option<ResponseError>,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub assignment: Bytes,
}

impl SyncResponse {
    fn error(error: ResponseError) -> SyncResponse {
        SyncResponse { error: Some(error), ..SyncResponse::default() }
    }
}

/// An answer now, or one to await (the rebalance is still in progress).
pub enum Pending<T> {
    Ready(T),
    Wait(oneshot::Receiver<T>),
}

/// Who a member is, for Heartbeat, OffsetCommit and LeaveGroup checks.
#[derive(Clone, Debug, Default)]
pub struct MemberRef {
    pub member_id: String,
    pub instance_id: Option<String>,
}

/// What DescribeGroups shows of a group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupDescription {
    pub state: GroupState,
    pub generation: i32,
    pub protocol_type: String,
    pub protocol: String,
    pub members: Vec<MemberDescription>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberDescription {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub metadata: Bytes,
    pub assignment: Bytes,
}
