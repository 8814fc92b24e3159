//! The coordinator: every group behind one `parking_lot` mutex (it cannot be poisoned),
//! held only for map updates and never across an `.await`; the entry points the handlers
//! call, and the periodic expiry of sessions and rebalance deadlines.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::ResponseError;
use parking_lot::Mutex;
use tokio::time::Instant;

use super::group::Group;
use super::*;

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
        if let Err(error) = check_group_id(&request.group_id) {
            return Pending::Ready(JoinResponse::error(error, &request.member_id));
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

    /// How many groups the coordinator holds.
    pub fn count(&self) -> usize {
        self.groups.lock().len()
    }

    /// Every group as DescribeGroups would show it, by id.
    pub fn describe_all(&self) -> Vec<(String, GroupDescription)> {
        let groups = self.groups.lock();
        let mut all: Vec<_> = groups.iter().map(|(id, g)| (id.clone(), g.describe())).collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }

    /// (group id, protocol type, state) of every group with members.
    pub fn list(&self) -> Vec<(String, String, GroupState)> {
        let groups = self.groups.lock();
        let mut listed: Vec<_> = groups.iter().map(|(id, g)| (id.clone(), g.protocol_type.clone().unwrap_or_default(), g.state)).collect();
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
