//! One group's state machine (Empty → PreparingRebalance → CompletingRebalance → Stable):
//! joins, syncs, heartbeats, leaves, commits' fencing and expiry.

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::ResponseError;
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::member::{choose_protocol, Member};
use super::*;

pub(super) struct Group {
    pub(super) state: GroupState,
    pub(super) generation: i32,
    pub(super) protocol_type: Option<String>,
    pub(super) protocol: Option<String>,
    pub(super) leader: Option<String>,
    pub(super) members: HashMap<String, Member>,
    /// Member ids handed out with MEMBER_ID_REQUIRED that have not joined yet, with the
    /// time they lapse.
    pub(super) pending: HashMap<String, Instant>,
    /// group.instance.id → the member id that holds it now.
    pub(super) instances: HashMap<String, String>,
    pub(super) rebalance_deadline: Option<Instant>,
    /// The first rebalance of an empty group waits until then for more members.
    pub(super) initial_delay_until: Option<Instant>,
    /// `pg_kafka.group_initial_rebalance_delay_ms`.
    pub(super) initial_delay: Duration,
    pub(super) next_join_order: u64,
}

impl Group {
    pub(super) fn new(initial_delay: Duration) -> Group {
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
    pub(super) fn check_instance(&self, member: &MemberRef) -> Result<(), ResponseError> {
        match member.instance_id.as_ref().and_then(|i| self.instances.get(i)) {
            Some(holder) if *holder != member.member_id => Err(ResponseError::FencedInstanceId),
            _ => Ok(()),
        }
    }

    /// Whether a joining member can use a protocol every current member supports.
    pub(super) fn accepts_protocols(&self, protocol_type: &str, protocols: &[(String, Bytes)], joining: &str) -> bool {
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

    pub(super) fn join(&mut self, request: JoinRequest, settings: &GroupSettings, now: Instant) -> Pending<JoinResponse> {
        if !self.accepts_protocols(&request.protocol_type, &request.protocols, &request.member_id) {
            return Pending::Ready(JoinResponse::error(ResponseError::InconsistentGroupProtocol, &request.member_id));
        }
        let full = self.members.len() + self.pending.len() >= settings.max_size;
        if request.member_id.is_empty() {
            let member_id = format!("{}-{}", request.client_id, uuid::Uuid::new_v4());
            if let Some(instance) = &request.instance_id {
                // A static member restarting: its old member id is fenced from now on.
                if let Some(old) = self.instances.get(instance).cloned() {
                    return self.replace_static_member(&old, member_id, request, now);
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

    pub(super) fn add_member(&mut self, member_id: String, request: JoinRequest, now: Instant) -> Pending<JoinResponse> {
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

    /// A static member comes back under a new member id (KIP-345): the old id is fenced,
    /// and the new one takes over its place, join order and assignment. In a stable group
    /// whose protocol stays the same nobody rebalances: the member gets the current
    /// generation, and the leader named is the one before the swap, so a returning leader
    /// does not compute assignments a stable group would never hand out (its SyncGroup
    /// gets its assignment back). Otherwise the rebalance starts or goes on, as Kafka does.
    pub(super) fn replace_static_member(
        &mut self,
        old_id: &str,
        new_id: String,
        request: JoinRequest,
        now: Instant,
    ) -> Pending<JoinResponse> {
        let leader_before = self.leader.clone().unwrap_or_default();
        if let Some(instance) = &request.instance_id {
            self.instances.insert(instance.clone(), new_id.clone());
        }
        let Some(mut member) = self.members.remove(old_id) else {
            return self.add_member(new_id, request, now);
        };
        if let Some(waiting) = member.awaiting_join.take() {
            let _ = waiting.send(JoinResponse::error(ResponseError::FencedInstanceId, old_id));
        }
        if let Some(waiting) = member.awaiting_sync.take() {
            let _ = waiting.send(SyncResponse::error(ResponseError::FencedInstanceId));
        }
        member.id = new_id.clone();
        member.client_id = request.client_id.clone();
        member.client_host = request.client_host.clone();
        member.protocols = request.protocols.clone();
        member.session_timeout = Duration::from_millis(request.session_timeout_ms as u64);
        member.rebalance_timeout = Duration::from_millis(request.rebalance_timeout_ms as u64);
        member.last_seen = now;
        self.members.insert(new_id.clone(), member);
        if self.leader.as_deref() == Some(old_id) {
            self.leader = Some(new_id.clone());
        }
        if self.state == GroupState::Stable && self.choose_protocol() == self.protocol {
            let response = JoinResponse { leader: leader_before, members: Vec::new(), ..self.join_response(&new_id) };
            return Pending::Ready(response);
        }
        self.await_rebalance(&new_id, now)
    }

    /// A known member joins again: with unchanged metadata while the group is settled it
    /// gets the current generation back; otherwise a rebalance starts (or goes on).
    pub(super) fn rejoin(&mut self, request: JoinRequest, now: Instant) -> Pending<JoinResponse> {
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
        self.await_rebalance(&request.member_id, now)
    }

    /// `member_id` waits for the next generation, which starts now unless it already has.
    fn await_rebalance(&mut self, member_id: &str, now: Instant) -> Pending<JoinResponse> {
        let (reply, answer) = oneshot::channel();
        if let Some(member) = self.members.get_mut(member_id) {
            member.awaiting_join = Some(reply);
        }
        if self.state != GroupState::PreparingRebalance {
            self.prepare_rebalance(now);
        }
        self.maybe_complete_join(now);
        Pending::Wait(answer)
    }

    pub(super) fn prepare_rebalance(&mut self, now: Instant) {
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

    pub(super) fn maybe_complete_join(&mut self, now: Instant) {
        if self.state != GroupState::PreparingRebalance || self.initial_delay_until.is_some_and(|t| now < t) {
            return;
        }
        if self.members.values().all(|m| m.awaiting_join.is_some()) {
            self.complete_join();
        }
    }

    /// Starts the next generation with the members that rejoined and answers their joins.
    pub(super) fn complete_join(&mut self) {
        self.rebalance_deadline = None;
        self.initial_delay_until = None;
        self.generation = self.generation.wrapping_add(1).max(1);
        if self.members.is_empty() {
            // The protocol type stays, as in Kafka: an empty consumer group is still a
            // consumer group (librdkafka takes one without a type for a simple group).
            self.state = GroupState::Empty;
            self.protocol = None;
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
    pub(super) fn choose_protocol(&self) -> Option<String> {
        let mut members: Vec<&Member> = self.members.values().collect();
        members.sort_by_key(|m| m.join_order);
        choose_protocol(&members)
    }

    pub(super) fn join_response(&self, member_id: &str) -> JoinResponse {
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
    pub(super) fn known_member(&self, member: &MemberRef) -> Result<(), ResponseError> {
        self.check_instance(member)?;
        if self.members.contains_key(&member.member_id) {
            Ok(())
        } else {
            Err(ResponseError::UnknownMemberId)
        }
    }

    pub(super) fn touch(&mut self, member_id: &str, now: Instant) {
        if let Some(member) = self.members.get_mut(member_id) {
            member.last_seen = now;
        }
    }

    pub(super) fn sync(&mut self, request: SyncRequest, now: Instant) -> Pending<SyncResponse> {
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
    pub(super) fn complete_sync(&mut self, assignments: Vec<(String, Bytes)>) {
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

    pub(super) fn sync_response(&self, member_id: &str) -> SyncResponse {
        SyncResponse {
            error: None,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol.clone(),
            assignment: self.members.get(member_id).map(|m| m.assignment.clone()).unwrap_or_default(),
        }
    }

    pub(super) fn heartbeat(&mut self, generation: i32, member: &MemberRef, now: Instant) -> Result<(), ResponseError> {
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
    pub(super) fn leave(&mut self, member: &MemberRef) -> Result<(), ResponseError> {
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

    pub(super) fn remove_member(&mut self, member_id: &str, error: ResponseError) {
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
    pub(super) fn members_left(&mut self, now: Instant) {
        match self.state {
            GroupState::Stable | GroupState::CompletingRebalance => {
                self.prepare_rebalance(now);
                self.maybe_complete_join(now);
            }
            GroupState::PreparingRebalance => self.maybe_complete_join(now),
            GroupState::Empty => {}
        }
    }

    pub(super) fn check_commit(&mut self, generation: i32, member: &MemberRef, now: Instant) -> Result<(), ResponseError> {
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

    pub(super) fn expire(&mut self, now: Instant) {
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
            let missing: Vec<String> = self.members.values().filter(|m| m.awaiting_join.is_none()).map(|m| m.id.clone()).collect();
            for id in &missing {
                self.remove_member(id, ResponseError::UnknownMemberId);
            }
            self.complete_join();
        } else {
            self.maybe_complete_join(now);
        }
    }

    pub(super) fn describe(&self) -> GroupDescription {
        let settled = matches!(self.state, GroupState::CompletingRebalance | GroupState::Stable);
        let mut members: Vec<&Member> = self.members.values().collect();
        members.sort_by_key(|m| m.join_order);
        GroupDescription {
            state: self.state,
            generation: self.generation,
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
