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

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::ResponseError;
use parking_lot::Mutex;
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::config::Config;

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

#[derive(Clone)]
pub struct GroupCoordinator {
    groups: Arc<Mutex<HashMap<String, Group>>>,
    settings: GroupSettings,
}

impl GroupCoordinator {
    pub fn new(settings: GroupSettings) -> GroupCoordinator {
        GroupCoordinator { groups: Arc::default(), settings }
    }

    pub fn join(&self, request: JoinRequest) -> Pending<JoinResponse> {
        let settings = self.settings;
        if request.group_id.is_empty() {
            return Pending::Ready(JoinResponse::error(ResponseError::InvalidGroupId, &request.member_id));
        }
        let session = Duration::from_millis(request.session_timeout_ms.max(0) as u64);
        if request.session_timeout_ms <= 0 || session < settings.min_session_timeout || session > settings.max_session_timeout {
            return Pending::Ready(JoinResponse::error(ResponseError::InvalidSessionTimeout, &request.member_id));
        }
        if request.rebalance_timeout_ms <= 0 {
            return Pending::Ready(JoinResponse::error(ResponseError::InvalidRequest, &request.member_id));
        }
        let mut groups = self.groups.lock();
        let group = groups.entry(request.group_id.clone()).or_insert_with(|| Group::new(settings.initial_rebalance_delay));
        group.join(request, &settings, Instant::now())
    }

    pub fn sync(&self, request: SyncRequest) -> Pending<SyncResponse> {
        let mut groups = self.groups.lock();
        match groups.get_mut(&request.group_id) {
            Some(group) => group.sync(request, Instant::now()),
            None => Pending::Ready(SyncResponse::error(ResponseError::UnknownMemberId)),
        }
    }

    /// A member's heartbeat: `Ok` while its generation is current and no rebalance is
    /// under way.
    pub fn heartbeat(&self, group_id: &str, generation: i32, member: &MemberRef) -> Result<(), ResponseError> {
        let mut groups = self.groups.lock();
        let group = groups.get_mut(group_id).ok_or(ResponseError::UnknownMemberId)?;
        group.heartbeat(generation, member, Instant::now())
    }

    /// Removes members; one result per member, or a group-level error.
    pub fn leave(&self, group_id: &str, members: &[MemberRef]) -> Vec<Result<(), ResponseError>> {
        let mut groups = self.groups.lock();
        let Some(group) = groups.get_mut(group_id) else {
            return vec![Err(ResponseError::UnknownMemberId); members.len()];
        };
        let now = Instant::now();
        let results: Vec<_> = members.iter().map(|m| group.leave(m)).collect();
        if results.iter().any(Result::is_ok) {
            group.members_left(now);
        }
        results
    }

    /// Whether an OffsetCommit from `member` at `generation` may be stored. A negative
    /// generation with no member id is a commit from outside any group's membership
    /// (manual assignment), allowed only while the group has no members.
    pub fn check_commit(&self, group_id: &str, generation: i32, member: &MemberRef) -> Result<(), ResponseError> {
        let mut groups = self.groups.lock();
        match groups.get_mut(group_id) {
            None if generation < 0 => Ok(()),
            None => Err(ResponseError::IllegalGeneration),
            Some(group) => group.check_commit(generation, member, Instant::now()),
        }
    }

    pub fn describe(&self, group_id: &str) -> Option<GroupDescription> {
        self.groups.lock().get(group_id).map(Group::describe)
    }

    /// (group id, protocol type, state) of every group with members.
    pub fn list(&self) -> Vec<(String, String, GroupState)> {
        let groups = self.groups.lock();
        let mut listed: Vec<_> = groups
            .iter()
            .map(|(id, g)| (id.clone(), g.protocol_type.clone().unwrap_or_default(), g.state))
            .collect();
        listed.sort_by(|a, b| a.0.cmp(&b.0));
        listed
    }

    /// Forgets an empty group (returns whether it was known); NON_EMPTY_GROUP while it
    /// has members.
    pub fn delete(&self, group_id: &str) -> Result<bool, ResponseError> {
        let mut groups = self.groups.lock();
        match groups.get(group_id) {
            Some(group) if !group.members.is_empty() => Err(ResponseError::NonEmptyGroup),
            _ => Ok(groups.remove(group_id).is_some()),
        }
    }

    /// Applies timeouts: expired sessions leave, rebalances past their deadline complete
    /// without the members that did not rejoin, and empty groups are forgotten.
    pub fn expire(&self, now: Instant) {
        let mut groups = self.groups.lock();
        for group in groups.values_mut() {
            group.expire(now);
        }
        groups.retain(|_, g| !(g.state == GroupState::Empty && g.members.is_empty() && g.pending.is_empty()));
    }

    /// Runs [`expire`](Self::expire) every 100 ms until shutdown.
    pub async fn run_expiry(self, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        loop {
            tokio::select! {
                _ = tick.tick() => self.expire(Instant::now()),
                _ = shutdown.changed() => return,
            }
        }
    }
}

struct Member {
    id: String,
    instance_id: Option<String>,
    client_id: String,
    client_host: String,
    protocols: Vec<(String, Bytes)>,
    session_timeout: Duration,
    rebalance_timeout: Duration,
    last_seen: Instant,
    /// Joining order: the earliest member still present leads.
    join_order: u64,
    awaiting_join: Option<oneshot::Sender<JoinResponse>>,
    awaiting_sync: Option<oneshot::Sender<SyncResponse>>,
    assignment: Bytes,
}

impl Member {
    fn metadata_for(&self, protocol: Option<&str>) -> Bytes {
        self.protocols.iter().find(|(name, _)| Some(name.as_str()) == protocol).map(|(_, m)| m.clone()).unwrap_or_default()
    }

    /// A member awaiting a JoinGroup or SyncGroup answer is alive by definition.
    fn expired(&self, now: Instant) -> bool {
        self.awaiting_join.is_none() && self.awaiting_sync.is_none() && now >= self.last_seen + self.session_timeout
    }
}

struct Group {
    state: GroupState,
    generation: i32,
    protocol_type: Option<String>,
    protocol: Option<String>,
    leader: Option<String>,
    members: HashMap<String, Member>,
    /// Member ids handed out with MEMBER_ID_REQUIRED that have not joined yet, with the
    /// time they lapse.
    pending: HashMap<String, Instant>,
    /// group.instance.id → the member id that holds it now.
    instances: HashMap<String, String>,
    rebalance_deadline: Option<Instant>,
    /// The first rebalance of an empty group waits until then for more members.
    initial_delay_until: Option<Instant>,
    /// `pg_kafka.group_initial_rebalance_delay_ms`.
    initial_delay: Duration,
    next_join_order: u64,
}

impl Group {
    fn new(initial_delay: Duration) -> Group {
        Group {
            initial_delay,
            state: GroupState::Empty,
            generation: 0,
            protocol_type: None,
            protocol: None,
            leader: None,
            members: HashMap::new(),
            pending: HashMap::new(),
            instances: HashMap::new(),
            rebalance_deadline: None,
            initial_delay_until: None,
            next_join_order: 0,
        }
    }

    /// FENCED_INSTANCE_ID when `member` names an instance now held by another member id.
    fn check_instance(&self, member: &MemberRef) -> Result<(), ResponseError> {
        match member.instance_id.as_ref().and_then(|i| self.instances.get(i)) {
            Some(holder) if *holder != member.member_id => Err(ResponseError::FencedInstanceId),
            _ => Ok(()),
        }
    }

    /// Whether a joining member can use a protocol every current member supports.
    fn accepts_protocols(&self, protocol_type: &str, protocols: &[(String, Bytes)], joining: &str) -> bool {
        if protocol_type.is_empty() || protocols.is_empty() {
            return false;
        }
        let others: Vec<&Member> = self.members.values().filter(|m| m.id != joining).collect();
        if others.is_empty() {
            return true;
        }
        self.protocol_type.as_deref() == Some(protocol_type)
            && protocols.iter().any(|(name, _)| others.iter().all(|m| m.protocols.iter().any(|(n, _)| n == name)))
    }

    fn join(&mut self, request: JoinRequest, settings: &GroupSettings, now: Instant) -> Pending<JoinResponse> {
        if !self.accepts_protocols(&request.protocol_type, &request.protocols, &request.member_id) {
            return Pending::Ready(JoinResponse::error(ResponseError::InconsistentGroupProtocol, &request.member_id));
        }
        let full = self.members.len() + self.pending.len() >= settings.max_size;
        if request.member_id.is_empty() {
            let member_id = format!("{}-{}", request.client_id, uuid::Uuid::new_v4());
            if let Some(instance) = &request.instance_id {
                // A static member restarting: its old member id is fenced from now on.
                if let Some(old) = self.instances.get(instance).cloned() {
                    self.remove_member(&old, ResponseError::FencedInstanceId);
                } else if full {
                    return Pending::Ready(JoinResponse::error(ResponseError::GroupMaxSizeReached, ""));
                }
                self.instances.insert(instance.clone(), member_id.clone());
                return self.add_member(member_id, request, now);
            }
            if full {
                return Pending::Ready(JoinResponse::error(ResponseError::GroupMaxSizeReached, ""));
            }
            if request.require_member_id {
                let session = Duration::from_millis(request.session_timeout_ms as u64);
                self.pending.insert(member_id.clone(), now + session);
                return Pending::Ready(JoinResponse::error(ResponseError::MemberIdRequired, &member_id));
            }
            return self.add_member(member_id, request, now);
        }
        let member = MemberRef { member_id: request.member_id.clone(), instance_id: request.instance_id.clone() };
        if let Err(e) = self.check_instance(&member) {
            return Pending::Ready(JoinResponse::error(e, &request.member_id));
        }
        if self.pending.remove(&request.member_id).is_some() {
            return self.add_member(request.member_id.clone(), request, now);
        }
        if !self.members.contains_key(&request.member_id) {
            return Pending::Ready(JoinResponse::error(ResponseError::UnknownMemberId, &request.member_id));
        }
        self.rejoin(request, now)
    }

    fn add_member(&mut self, member_id: String, request: JoinRequest, now: Instant) -> Pending<JoinResponse> {
        let (reply, answer) = oneshot::channel();
        if self.members.is_empty() {
            self.protocol_type = Some(request.protocol_type.clone());
        }
        self.next_join_order += 1;
        self.members.insert(
            member_id.clone(),
            Member {
                id: member_id,
                instance_id: request.instance_id,
                client_id: request.client_id,
                client_host: request.client_host,
                protocols: request.protocols,
                session_timeout: Duration::from_millis(request.session_timeout_ms as u64),
                rebalance_timeout: Duration::from_millis(request.rebalance_timeout_ms as u64),
                last_seen: now,
                join_order: self.next_join_order,
                awaiting_join: Some(reply),
                awaiting_sync: None,
                assignment: Bytes::new(),
            },
        );
        if self.state != GroupState::PreparingRebalance {
            self.prepare_rebalance(now);
        }
        self.maybe_complete_join(now);
        Pending::Wait(answer)
    }

    /// A known member joins again: with unchanged metadata while the group is settled it
    /// gets the current generation back; otherwise a rebalance starts (or goes on).
    fn rejoin(&mut self, request: JoinRequest, now: Instant) -> Pending<JoinResponse> {
        let is_leader = self.leader.as_deref() == Some(request.member_id.as_str());
        let state = self.state;
        let member = self.members.get_mut(&request.member_id).expect("checked by the caller");
        let unchanged = member.protocols == request.protocols;
        member.protocols = request.protocols;
        member.session_timeout = Duration::from_millis(request.session_timeout_ms as u64);
        member.rebalance_timeout = Duration::from_millis(request.rebalance_timeout_ms as u64);
        member.last_seen = now;
        let settled = match state {
            GroupState::CompletingRebalance => unchanged,
            GroupState::Stable => unchanged && !is_leader,
            _ => false,
        };
        if settled {
            return Pending::Ready(self.join_response(&request.member_id));
        }
        let (reply, answer) = oneshot::channel();
        if let Some(member) = self.members.get_mut(&request.member_id) {
            member.awaiting_join = Some(reply);
        }
        if self.state != GroupState::PreparingRebalance {
            self.prepare_rebalance(now);
        }
        self.maybe_complete_join(now);
        Pending::Wait(answer)
    }

    fn prepare_rebalance(&mut self, now: Instant) {
        if self.state == GroupState::CompletingRebalance {
            for member in self.members.values_mut() {
                if let Some(waiting) = member.awaiting_sync.take() {
                    let _ = waiting.send(SyncResponse::error(ResponseError::RebalanceInProgress));
                }
            }
        }
        let was_empty = self.state == GroupState::Empty;
        self.state = GroupState::PreparingRebalance;
        let timeout = self.members.values().map(|m| m.rebalance_timeout).max().unwrap_or_default();
        self.rebalance_deadline = Some(now + timeout);
        self.initial_delay_until = was_empty.then(|| now + self.initial_delay.min(timeout));
    }

    fn maybe_complete_join(&mut self, now: Instant) {
        if self.state != GroupState::PreparingRebalance || self.initial_delay_until.is_some_and(|t| now < t) {
            return;
        }
        if self.members.values().all(|m| m.awaiting_join.is_some()) {
            self.complete_join();
        }
    }

    /// Starts the next generation with the members that rejoined and answers their joins.
    fn complete_join(&mut self) {
        self.rebalance_deadline = None;
        self.initial_delay_until = None;
        self.generation = self.generation.wrapping_add(1).max(1);
        if self.members.is_empty() {
            self.state = GroupState::Empty;
            self.protocol = None;
            self.protocol_type = None;
            self.leader = None;
            return;
        }
        self.protocol = self.choose_protocol();
        let leader_present = self.leader.as_ref().is_some_and(|l| self.members.contains_key(l));
        if !leader_present {
            self.leader = self.members.values().min_by_key(|m| m.join_order).map(|m| m.id.clone());
        }
        self.state = GroupState::CompletingRebalance;
        let ids: Vec<String> = self.members.keys().cloned().collect();
        for id in ids {
            let response = self.join_response(&id);
            let member = self.members.get_mut(&id).expect("listed above");
            member.assignment = Bytes::new();
            if let Some(waiting) = member.awaiting_join.take() {
                let _ = waiting.send(response);
            }
        }
    }

    /// The protocol every member supports that most members list first.
    fn choose_protocol(&self) -> Option<String> {
        let mut members: Vec<&Member> = self.members.values().collect();
        members.sort_by_key(|m| m.join_order);
        let supported_by_all =
            |name: &str| members.iter().all(|m| m.protocols.iter().any(|(n, _)| n == name));
        let first = members.first()?;
        let candidates: Vec<&str> =
            first.protocols.iter().map(|(n, _)| n.as_str()).filter(|n| supported_by_all(n)).collect();
        let votes = |candidate: &str| {
            members
                .iter()
                .filter(|m| m.protocols.iter().map(|(n, _)| n.as_str()).find(|n| candidates.contains(n)) == Some(candidate))
                .count()
        };
        // Ties go to the protocol the earliest member prefers.
        let mut best: Option<(&str, usize)> = None;
        for candidate in &candidates {
            let count = votes(candidate);
            if best.is_none_or(|(_, most)| count > most) {
                best = Some((candidate, count));
            }
        }
        best.map(|(name, _)| name.to_owned())
    }

    fn join_response(&self, member_id: &str) -> JoinResponse {
        let leader = self.leader.clone().unwrap_or_default();
        let members = if leader == member_id {
            let mut all: Vec<&Member> = self.members.values().collect();
            all.sort_by_key(|m| m.join_order);
            all.into_iter()
                .map(|m| JoinedMember {
                    member_id: m.id.clone(),
                    instance_id: m.instance_id.clone(),
                    metadata: m.metadata_for(self.protocol.as_deref()),
                })
                .collect()
        } else {
            Vec::new()
        };
        JoinResponse {
            error: None,
            generation: self.generation,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol.clone(),
            leader,
            member_id: member_id.to_owned(),
            members,
        }
    }

    /// The checks every request from a member goes through, in Kafka's order.
    fn known_member(&self, member: &MemberRef) -> Result<(), ResponseError> {
        self.check_instance(member)?;
        if self.members.contains_key(&member.member_id) {
            Ok(())
        } else {
            Err(ResponseError::UnknownMemberId)
        }
    }

    fn touch(&mut self, member_id: &str, now: Instant) {
        if let Some(member) = self.members.get_mut(member_id) {
            member.last_seen = now;
        }
    }

    fn sync(&mut self, request: SyncRequest, now: Instant) -> Pending<SyncResponse> {
        let member = MemberRef { member_id: request.member_id.clone(), instance_id: request.instance_id.clone() };
        if let Err(e) = self.known_member(&member) {
            return Pending::Ready(SyncResponse::error(e));
        }
        if request.generation != self.generation {
            return Pending::Ready(SyncResponse::error(ResponseError::IllegalGeneration));
        }
        let mismatch = |asked: &Option<String>, ours: &Option<String>| asked.is_some() && asked != ours;
        if mismatch(&request.protocol_type, &self.protocol_type) || mismatch(&request.protocol_name, &self.protocol) {
            return Pending::Ready(SyncResponse::error(ResponseError::InconsistentGroupProtocol));
        }
        self.touch(&request.member_id, now);
        match self.state {
            GroupState::Empty => Pending::Ready(SyncResponse::error(ResponseError::UnknownMemberId)),
            GroupState::PreparingRebalance => Pending::Ready(SyncResponse::error(ResponseError::RebalanceInProgress)),
            GroupState::Stable => Pending::Ready(self.sync_response(&request.member_id)),
            GroupState::CompletingRebalance if self.leader.as_deref() == Some(request.member_id.as_str()) => {
                self.complete_sync(request.assignments);
                Pending::Ready(self.sync_response(&request.member_id))
            }
            GroupState::CompletingRebalance => {
                let (reply, answer) = oneshot::channel();
                if let Some(member) = self.members.get_mut(&request.member_id) {
                    member.awaiting_sync = Some(reply);
                }
                Pending::Wait(answer)
            }
        }
    }

    /// The leader's assignments: hand them out and settle the group.
    fn complete_sync(&mut self, assignments: Vec<(String, Bytes)>) {
        for (member_id, assignment) in assignments {
            if let Some(member) = self.members.get_mut(&member_id) {
                member.assignment = assignment;
            }
        }
        self.state = GroupState::Stable;
        let ids: Vec<String> = self.members.keys().cloned().collect();
        for id in ids {
            let response = self.sync_response(&id);
            if let Some(waiting) = self.members.get_mut(&id).and_then(|m| m.awaiting_sync.take()) {
                let _ = waiting.send(response);
            }
        }
    }

    fn sync_response(&self, member_id: &str) -> SyncResponse {
        SyncResponse {
            error: None,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol.clone(),
            assignment: self.members.get(member_id).map(|m| m.assignment.clone()).unwrap_or_default(),
        }
    }

    fn heartbeat(&mut self, generation: i32, member: &MemberRef, now: Instant) -> Result<(), ResponseError> {
        if self.state == GroupState::Empty {
            return Err(ResponseError::UnknownMemberId);
        }
        self.known_member(member)?;
        if self.state == GroupState::PreparingRebalance {
            self.touch(&member.member_id, now);
            return Err(ResponseError::RebalanceInProgress);
        }
        if generation != self.generation {
            return Err(ResponseError::IllegalGeneration);
        }
        self.touch(&member.member_id, now);
        Ok(())
    }

    /// Removes one member (found by member id, or by instance id when the id is empty).
    fn leave(&mut self, member: &MemberRef) -> Result<(), ResponseError> {
        let member_id = match (&member.instance_id, member.member_id.is_empty()) {
            (Some(instance), true) => self.instances.get(instance).cloned().ok_or(ResponseError::UnknownMemberId)?,
            _ => member.member_id.clone(),
        };
        let resolved = MemberRef { member_id: member_id.clone(), instance_id: member.instance_id.clone() };
        if self.pending.remove(&member_id).is_some() {
            return Ok(());
        }
        self.known_member(&resolved)?;
        self.remove_member(&member_id, ResponseError::UnknownMemberId);
        Ok(())
    }

    fn remove_member(&mut self, member_id: &str, error: ResponseError) {
        let Some(member) = self.members.remove(member_id) else { return };
        if let Some(instance) = &member.instance_id {
            if self.instances.get(instance).map(String::as_str) == Some(member_id) {
                self.instances.remove(instance);
            }
        }
        if let Some(waiting) = member.awaiting_join {
            let _ = waiting.send(JoinResponse::error(error, member_id));
        }
        if let Some(waiting) = member.awaiting_sync {
            let _ = waiting.send(SyncResponse::error(error));
        }
    }

    /// After members left or expired: the others must rebalance.
    fn members_left(&mut self, now: Instant) {
        match self.state {
            GroupState::Stable | GroupState::CompletingRebalance => {
                self.prepare_rebalance(now);
                self.maybe_complete_join(now);
            }
            GroupState::PreparingRebalance => self.maybe_complete_join(now),
            GroupState::Empty => {}
        }
    }

    fn check_commit(&mut self, generation: i32, member: &MemberRef, now: Instant) -> Result<(), ResponseError> {
        if generation < 0 && member.member_id.is_empty() && self.state == GroupState::Empty {
            return Ok(());
        }
        if self.state == GroupState::CompletingRebalance && self.members.contains_key(&member.member_id) {
            self.check_instance(member)?;
            return Err(ResponseError::RebalanceInProgress);
        }
        self.known_member(member)?;
        if generation != self.generation {
            return Err(ResponseError::IllegalGeneration);
        }
        self.touch(&member.member_id, now);
        Ok(())
    }

    fn expire(&mut self, now: Instant) {
        self.pending.retain(|_, lapses| *lapses > now);
        let expired: Vec<String> = self.members.values().filter(|m| m.expired(now)).map(|m| m.id.clone()).collect();
        for id in &expired {
            self.remove_member(id, ResponseError::UnknownMemberId);
        }
        if !expired.is_empty() {
            self.members_left(now);
        }
        if self.state != GroupState::PreparingRebalance {
            return;
        }
        if self.rebalance_deadline.is_some_and(|deadline| now >= deadline) {
            // Members that did not rejoin in time are out of the next generation.
            let missing: Vec<String> =
                self.members.values().filter(|m| m.awaiting_join.is_none()).map(|m| m.id.clone()).collect();
            for id in &missing {
                self.remove_member(id, ResponseError::UnknownMemberId);
            }
            self.complete_join();
        } else {
            self.maybe_complete_join(now);
        }
    }

    fn describe(&self) -> GroupDescription {
        let settled = matches!(self.state, GroupState::CompletingRebalance | GroupState::Stable);
        let mut members: Vec<&Member> = self.members.values().collect();
        members.sort_by_key(|m| m.join_order);
        GroupDescription {
            state: self.state,
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            protocol: if settled { self.protocol.clone().unwrap_or_default() } else { String::new() },
            members: members
                .into_iter()
                .map(|m| MemberDescription {
                    member_id: m.id.clone(),
                    instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    metadata: if settled { m.metadata_for(self.protocol.as_deref()) } else { Bytes::new() },
                    assignment: if self.state == GroupState::Stable { m.assignment.clone() } else { Bytes::new() },
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn coordinator(initial_delay_ms: u64) -> GroupCoordinator {
        GroupCoordinator::new(GroupSettings {
            min_session_timeout: Duration::from_millis(100),
            max_session_timeout: Duration::from_secs(60),
            initial_rebalance_delay: Duration::from_millis(initial_delay_ms),
            max_size: 3,
        })
    }

    fn join_request(member_id: &str, protocols: &[&str]) -> JoinRequest {
        JoinRequest {
            group_id: "g".into(),
            member_id: member_id.into(),
            client_id: "c".into(),
            protocol_type: "consumer".into(),
            protocols: protocols.iter().map(|p| (p.to_string(), Bytes::from(format!("{member_id}:{p}")))).collect(),
            session_timeout_ms: 1000,
            rebalance_timeout_ms: 2000,
            ..JoinRequest::default()
        }
    }

    fn ready<T>(pending: Pending<T>) -> T {
        match pending {
            Pending::Ready(answer) => answer,
            Pending::Wait(mut answer) => answer.try_recv().expect("an answer now"),
        }
    }

    fn waiting<T: std::fmt::Debug>(pending: Pending<T>) -> oneshot::Receiver<T> {
        match pending {
            Pending::Wait(mut answer) => {
                assert!(answer.try_recv().is_err(), "answered too early");
                answer
            }
            Pending::Ready(answer) => panic!("expected to wait, got {answer:?}"),
        }
    }

    /// Joins a new member (v4 style: get an id, then join with it); returns its id and
    /// its pending join.
    fn new_member(c: &GroupCoordinator, protocols: &[&str]) -> (String, Pending<JoinResponse>) {
        let first = ready(c.join(JoinRequest { require_member_id: true, ..join_request("", protocols) }));
        assert_eq!(first.error, Some(ResponseError::MemberIdRequired));
        let id = first.member_id.clone();
        (id.clone(), c.join(join_request(&id, protocols)))
    }

    fn member(id: &str) -> MemberRef {
        MemberRef { member_id: id.into(), instance_id: None }
    }

    fn sync(c: &GroupCoordinator, id: &str, generation: i32, assignments: Vec<(String, Bytes)>) -> Pending<SyncResponse> {
        c.sync(SyncRequest { group_id: "g".into(), generation, member_id: id.into(), assignments, ..SyncRequest::default() })
    }

    /// Forms a stable group of two: returns (leader id, follower id, generation).
    async fn stable_pair(c: &GroupCoordinator) -> (String, String, i32) {
        let (a, join_a) = new_member(c, &["range", "roundrobin"]);
        let (b, join_b) = new_member(c, &["roundrobin"]);
        tokio::time::advance(Duration::from_millis(150)).await;
        c.expire(Instant::now());
        let (ja, jb) = (ready(join_a), ready(join_b));
        assert_eq!((ja.error, jb.error), (None, None));
        assert_eq!(ja.leader, a, "the first member leads");
        assert_eq!(ja.protocol_name.as_deref(), Some("roundrobin"), "the only protocol both support");
        let metadata: Vec<(String, Bytes)> = ja.members.iter().map(|m| (m.member_id.clone(), m.metadata.clone())).collect();
        assert_eq!(metadata, vec![(a.clone(), Bytes::from(format!("{a}:roundrobin"))), (b.clone(), Bytes::from(format!("{b}:roundrobin")))]);
        assert!(jb.members.is_empty(), "followers do not get the member list");
        let follower_sync = waiting(sync(c, &b, jb.generation, vec![]));
        let assignments = vec![(a.clone(), Bytes::from_static(b"A")), (b.clone(), Bytes::from_static(b"B"))];
        assert_eq!(ready(sync(c, &a, ja.generation, assignments)).assignment, Bytes::from_static(b"A"));
        assert_eq!(follower_sync.await.unwrap().assignment, Bytes::from_static(b"B"));
        (a, b, ja.generation)
    }

    #[tokio::test(start_paused = true)]
    async fn the_leader_gets_the_members_and_hands_out_assignments() {
        let c = coordinator(100);
        let (a, b, generation) = stable_pair(&c).await;
        assert_eq!(c.describe("g").unwrap().state, GroupState::Stable);
        assert_eq!(c.heartbeat("g", generation, &member(&a)), Ok(()));
        assert_eq!(c.heartbeat("g", generation, &member(&b)), Ok(()));
        assert_eq!(c.check_commit("g", generation, &member(&b)), Ok(()));
    }

    #[tokio::test(start_paused = true)]
    async fn a_new_member_makes_everyone_rejoin_and_fences_the_old_generation() {
        let c = coordinator(100);
        let (a, b, old) = stable_pair(&c).await;
        let (third, join_c) = new_member(&c, &["roundrobin"]);
        let join_c = waiting(join_c);
        assert_eq!(c.heartbeat("g", old, &member(&a)), Err(ResponseError::RebalanceInProgress));
        let join_a = waiting(c.join(join_request(&a, &["range", "roundrobin"])));
        // Still waiting for b; a commit from b in the old generation is still accepted
        // while it has not rejoined (it may be committing before revoking).
        assert_eq!(c.check_commit("g", old, &member(&b)), Ok(()));
        let join_b = ready(c.join(join_request(&b, &["roundrobin"])));
        let (ja, jc) = (join_a.await.unwrap(), join_c.await.unwrap());
        assert_eq!(ja.generation, old + 1);
        assert_eq!((ja.leader.as_str(), ja.members.len()), (a.as_str(), 3));
        assert_eq!(jc.generation, old + 1);
        assert_eq!(join_b.generation, old + 1);
        assert_eq!(c.check_commit("g", old + 1, &member(&third)), Err(ResponseError::RebalanceInProgress), "awaiting sync");
        ready(sync(&c, &a, old + 1, vec![]));
        assert_eq!(c.check_commit("g", old, &member(&b)), Err(ResponseError::IllegalGeneration));
        assert_eq!(c.heartbeat("g", old, &member(&b)), Err(ResponseError::IllegalGeneration));
        assert_eq!(c.check_commit("g", old + 1, &member(&third)), Ok(()));
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_member_is_evicted_after_its_session_timeout() {
        let c = coordinator(100);
        let (a, b, generation) = stable_pair(&c).await;
        for _ in 0..3 {
            tokio::time::advance(Duration::from_millis(300)).await;
            assert_eq!(c.heartbeat("g", generation, &member(&a)), Ok(()));
            c.expire(Instant::now());
        }
        tokio::time::advance(Duration::from_millis(300)).await;
        c.expire(Instant::now());
        // b never heartbeat for 1.2 s (> its 1 s session): gone, and a must rejoin.
        assert_eq!(c.heartbeat("g", generation, &member(&b)), Err(ResponseError::UnknownMemberId));
        assert_eq!(c.heartbeat("g", generation, &member(&a)), Err(ResponseError::RebalanceInProgress));
        let rejoined = ready(c.join(join_request(&a, &["range", "roundrobin"])));
        assert_eq!((rejoined.generation, rejoined.members.len()), (generation + 1, 1));
        assert_eq!(rejoined.protocol_name.as_deref(), Some("range"), "a alone prefers range");
    }

    #[tokio::test(start_paused = true)]
    async fn members_that_miss_the_rebalance_timeout_are_dropped() {
        let c = coordinator(100);
        let (a, b, generation) = stable_pair(&c).await;
        c.leave("g", &[]);
        let join_a = waiting(c.join(JoinRequest { rebalance_timeout_ms: 500, ..join_request(&a, &["x", "roundrobin"]) }));
        // b keeps heartbeating but never rejoins.
        for _ in 0..10 {
            tokio::time::advance(Duration::from_millis(250)).await;
            let _ = c.heartbeat("g", generation, &member(&b));
            c.expire(Instant::now());
        }
        let joined = join_a.await.unwrap();
        assert_eq!((joined.generation, joined.members.len()), (generation + 1, 1));
        assert_eq!(c.heartbeat("g", generation + 1, &member(&b)), Err(ResponseError::UnknownMemberId));
    }

    #[tokio::test(start_paused = true)]
    async fn leaving_triggers_a_rebalance_and_an_empty_group_can_be_deleted() {
        let c = coordinator(100);
        let (a, b, generation) = stable_pair(&c).await;
        assert_eq!(c.delete("g"), Err(ResponseError::NonEmptyGroup));
        assert_eq!(c.leave("g", &[member(&b), member("nobody")]), vec![Ok(()), Err(ResponseError::UnknownMemberId)]);
        assert_eq!(c.heartbeat("g", generation, &member(&a)), Err(ResponseError::RebalanceInProgress));
        assert_eq!(c.leave("g", &[member(&a)]), vec![Ok(())]);
        assert_eq!(c.describe("g").unwrap().state, GroupState::Empty);
        assert_eq!(c.check_commit("g", -1, &member("")), Ok(()), "manual commits into an empty group");
        assert_eq!(c.delete("g"), Ok(true));
        // A zombie commit after the group was removed.
        assert_eq!(c.check_commit("g", generation, &member(&a)), Err(ResponseError::IllegalGeneration));
    }

    #[tokio::test(start_paused = true)]
    async fn a_restarted_static_member_fences_its_old_member_id() {
        let c = coordinator(0);
        let static_join = |id: &str| JoinRequest { instance_id: Some("i-1".into()), require_member_id: true, ..join_request(id, &["range"]) };
        let first = ready(c.join(static_join("")));
        assert_eq!(first.error, None, "static members need no MEMBER_ID_REQUIRED round");
        let old = first.member_id.clone();
        ready(sync(&c, &old, first.generation, vec![(old.clone(), Bytes::from_static(b"A"))]));
        let second = ready(c.join(static_join("")));
        assert_ne!(second.member_id, old);
        let stale = MemberRef { member_id: old.clone(), instance_id: Some("i-1".into()) };
        assert_eq!(c.heartbeat("g", second.generation, &stale), Err(ResponseError::FencedInstanceId));
        assert_eq!(c.check_commit("g", second.generation, &stale), Err(ResponseError::FencedInstanceId));
        assert_eq!(ready(c.join(static_join(&old))).error, Some(ResponseError::FencedInstanceId));
    }

    #[tokio::test(start_paused = true)]
    async fn joins_are_validated() {
        let c = coordinator(0);
        let bad_session = JoinRequest { session_timeout_ms: 10, ..join_request("", &["range"]) };
        assert_eq!(ready(c.join(bad_session)).error, Some(ResponseError::InvalidSessionTimeout));
        assert_eq!(ready(c.join(JoinRequest { group_id: String::new(), ..join_request("", &["range"]) })).error, Some(ResponseError::InvalidGroupId));
        assert_eq!(ready(c.join(join_request("ghost", &["range"]))).error, Some(ResponseError::UnknownMemberId));
        let (_, joined) = new_member(&c, &["range"]);
        assert_eq!(ready(joined).error, None);
        let (id, _) = (String::new(), ());
        let other_type = JoinRequest { protocol_type: "connect".into(), ..join_request(&id, &["range"]) };
        assert_eq!(ready(c.join(other_type)).error, Some(ResponseError::InconsistentGroupProtocol));
        assert_eq!(ready(c.join(join_request("", &["sticky"]))).error, Some(ResponseError::InconsistentGroupProtocol));
        // max_size is 3: one member, two more ids handed out, then the group is full.
        for _ in 0..2 {
            let r = ready(c.join(JoinRequest { require_member_id: true, ..join_request("", &["range"]) }));
            assert_eq!(r.error, Some(ResponseError::MemberIdRequired));
        }
        let full = ready(c.join(JoinRequest { require_member_id: true, ..join_request("", &["range"]) }));
        assert_eq!(full.error, Some(ResponseError::GroupMaxSizeReached));
    }

    #[tokio::test(start_paused = true)]
    async fn the_first_rebalance_waits_for_the_initial_delay() {
        let c = coordinator(1000);
        let (_, join) = new_member(&c, &["range"]);
        let join = waiting(join);
        tokio::time::advance(Duration::from_millis(500)).await;
        c.expire(Instant::now());
        let mut join = join;
        assert!(join.try_recv().is_err(), "still in the initial delay");
        tokio::time::advance(Duration::from_millis(600)).await;
        c.expire(Instant::now());
        assert_eq!(join.await.unwrap().generation, 1);
    }
}
