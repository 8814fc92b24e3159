//! The coordinator under tokio's paused clock: rebalances, expiry, fencing, validation.

use tokio::sync::oneshot;
use tokio::time::Instant;

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
    assert_eq!(
        ready(c.join(JoinRequest { group_id: String::new(), ..join_request("", &["range"]) })).error,
        Some(ResponseError::InvalidGroupId)
    );
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

#[tokio::test(start_paused = true)]
async fn a_group_whose_members_all_left_is_still_a_consumer_group() {
    let c = coordinator(100);
    let (a, b, _) = stable_pair(&c).await;
    assert_eq!(c.leave("g", &[member(&a), member(&b)]), vec![Ok(()), Ok(())]);
    let described = c.describe("g").unwrap();
    assert_eq!((described.state, described.protocol_type.as_str()), (GroupState::Empty, "consumer"));
    assert_eq!(c.list(), vec![("g".to_owned(), "consumer".to_owned(), GroupState::Empty)]);
}

/// KIP-345: a static member (leader or follower) restarting into a stable group gets the
/// current generation and its assignment back; the other member keeps its generation.
#[tokio::test(start_paused = true)]
async fn a_returning_static_member_causes_no_rebalance() {
    let c = coordinator(100);
    let static_join = |id: &str, instance: &str| JoinRequest { instance_id: Some(instance.into()), ..join_request(id, &["range"]) };
    let join_a = c.join(static_join("", "i-a"));
    let join_b = c.join(static_join("", "i-b"));
    tokio::time::advance(Duration::from_millis(150)).await;
    c.expire(Instant::now());
    let (ja, jb) = (ready(join_a), ready(join_b));
    let (a, b, generation) = (ja.member_id.clone(), jb.member_id.clone(), ja.generation);
    assert_eq!(ja.leader, a);
    let follower_sync = waiting(sync(&c, &b, generation, vec![]));
    let assignments = vec![(a.clone(), Bytes::from_static(b"A")), (b.clone(), Bytes::from_static(b"B"))];
    ready(sync(&c, &a, generation, assignments));
    follower_sync.await.unwrap();

    for (instance, old, assignment) in [("i-b", b.clone(), "B"), ("i-a", a.clone(), "A")] {
        let back = ready(c.join(static_join("", instance)));
        assert_eq!((back.error, back.generation), (None, generation), "{instance} rejoins the current generation");
        assert_ne!(back.member_id, old);
        assert_ne!(back.leader, back.member_id, "a returning member never computes assignments for a stable group");
        assert!(back.members.is_empty());
        let synced = ready(sync(&c, &back.member_id, generation, vec![]));
        assert_eq!((synced.error, synced.assignment), (None, Bytes::copy_from_slice(assignment.as_bytes())));
        let stale = MemberRef { member_id: old, instance_id: Some(instance.into()) };
        assert_eq!(c.heartbeat("g", generation, &stale), Err(ResponseError::FencedInstanceId));
    }
    let description = c.describe("g").unwrap();
    assert_eq!((description.state, description.generation), (GroupState::Stable, generation), "nobody rebalanced");
}
