//! acks=all answered once the synchronous standbys confirm, while the writer goes on.
//!
//! Postgres makes a commit wait for its synchronous standbys inside COMMIT. The writer is
//! the one thread that writes: waiting there, it would sit idle for every round trip to
//! the standby, and the next group commit could not start before the standby had flushed
//! the last one. So a group commit that waits for standbys is committed locally instead
//! (`synchronous_commit = local` for that transaction) and its answers wait here with the
//! WAL position its commit ended at, while the next group is written. Each turn, the
//! position the synchronous standbys have confirmed ([`ReplicationProgress::confirmed`]:
//! the walsenders' own `WalSndCtl->lsn[mode]`, the number Postgres's waiting commits
//! compare theirs with) releases every group at or below it, oldest first. Postgres's own
//! rule: `synchronous_standby_names` (FIRST n, ANY n) and the writer's `synchronous_commit`
//! level mean what they mean for any session.
//!
//! Until its group is released, what it wrote is not readable by Kafka clients: each
//! partition's high watermark is held at the group's first offset there (Kafka's high
//! watermark is what every in-sync replica has). When synchronous replication is switched
//! off while groups wait (a failover manager that gives a dead standby up clears
//! `synchronous_standby_names`), every group is released, and acks=all appends to a topic
//! whose `min.insync.replicas` exceeds the copies the commit has now (counted by position)
//! are answered NOT_ENOUGH_REPLICAS_AFTER_APPEND: written, as Kafka answers when its ISR
//! shrank during the wait. At most [`MAX_WAITING_GROUPS`] wait: beyond, the writer writes
//! nothing until the oldest is released, so a slow standby slows producers down, as a
//! commit waiting in Postgres would.

use std::collections::{HashMap, VecDeque};

use kafka_protocol::ResponseError;
use tokio::sync::oneshot;

use super::commit_queue::AppendResult;
use super::replicas;
use crate::storage::bridge::{in_transaction, JobRunner};
use crate::storage::watermarks::{PartitionKey, Watermarks};

/// Group commits whose answers may wait at most; the writer waits beyond.
pub const MAX_WAITING_GROUPS: usize = 64;

/// Where the writer's commits are, and how far the synchronous standbys have confirmed:
/// WAL positions, read on the writer's thread without a transaction.
pub trait ReplicationProgress: Send {
    /// Where the writer session's last commit ended.
    fn last_commit_end(&mut self) -> u64;
    /// How far the synchronous standbys have confirmed, as the writer's `synchronous_commit`
    /// asks them to (written, flushed or applied); `None` once no standby is to be waited for.
    fn confirmed(&self) -> Option<u64>;
}

/// Without a database (unit tests of other parts): every commit is confirmed as it ends.
pub struct ConfirmedAtCommit;

impl ReplicationProgress for ConfirmedAtCommit {
    fn last_commit_end(&mut self) -> u64 {
        0
    }

    fn confirmed(&self) -> Option<u64> {
        Some(u64::MAX)
    }
}

/// One producer's answer, waiting.
pub struct WaitingAnswer {
    pub reply: oneshot::Sender<Vec<AppendResult>>,
    pub results: Vec<AppendResult>,
    /// Produce with acks=all, and the `min.insync.replicas` of each append's topic.
    pub acks_all: bool,
    pub min_insync: Vec<i64>,
}

impl WaitingAnswer {
    /// Answers NOT_ENOUGH_REPLICAS_AFTER_APPEND where the commit is left with too few copies.
    pub fn copies_lost(&mut self, copies_after: i64) {
        for (&wanted, answer) in self.min_insync.iter().zip(self.results.iter_mut()) {
            if let (Ok(_), Some(error)) = (&answer, replicas::too_few_after(self.acks_all, wanted, copies_after)) {
                *answer = Err(error);
            }
        }
    }

    pub fn send(self) {
        // A producer that went away (connection closed) no longer needs its answer.
        let _ = self.reply.send(self.results);
    }
}

/// What one turn's writes committed locally, to wait for the standbys.
#[derive(Default)]
pub struct LocalCommit {
    /// Where the last of its commits ended.
    commit_end: u64,
    /// The copies its commits waited for (the fewest, if they were several).
    copies: Option<i64>,
    /// Per partition written: the first offset written and the offset after the last.
    ranges: HashMap<PartitionKey, (i64, i64)>,
}

impl LocalCommit {
    /// Adds one committed write: where it ended, its copies, the partitions it wrote.
    pub fn add(&mut self, commit_end: u64, copies: i64, ranges: impl IntoIterator<Item = (PartitionKey, (i64, i64))>) {
        self.copies = Some(self.copies.map_or(copies, |fewest| fewest.min(copies)));
        self.commit_end = self.commit_end.max(commit_end);
        for (key, (first, after)) in ranges {
            let range = self.ranges.entry(key).or_insert((first, after));
            *range = (range.0.min(first), range.1.max(after));
        }
    }
}

struct Group {
    commit: LocalCommit,
    answers: Vec<WaitingAnswer>,
}

/// The groups committed locally whose producers wait for the standbys, oldest first.
pub struct StandbyAcks {
    groups: VecDeque<Group>,
    progress: Box<dyn ReplicationProgress>,
    watermarks: Watermarks,
    /// The copies the last group commit counted before it wrote (`None`: synchronous
    /// replication off): groups that wait for more are let go with what they have.
    copies_now: Option<i64>,
}

impl StandbyAcks {
    pub fn new(watermarks: Watermarks) -> Self {
        StandbyAcks { groups: VecDeque::new(), progress: Box::new(ConfirmedAtCommit), watermarks, copies_now: None }
    }

    pub fn set_progress(&mut self, progress: Box<dyn ReplicationProgress>) {
        self.progress = progress;
    }

    pub fn last_commit_end(&mut self) -> u64 {
        self.progress.last_commit_end()
    }

    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }

    pub fn is_full(&self) -> bool {
        self.groups.len() >= MAX_WAITING_GROUPS
    }

    /// Holds the high watermarks of what a local commit wrote at its first offsets, before
    /// anything publishes them.
    pub fn hold(&self, commit: &LocalCommit) {
        for (&key, &(first, _)) in &commit.ranges {
            self.watermarks.hold(key, first, false);
        }
    }

    /// What the last group commit counted: fewer copies than a group waits for means its
    /// standbys left (ISR shrank, as Kafka would say); it is let go at the next release.
    pub fn note_copies(&mut self, copies: Option<i64>) {
        self.copies_now = copies;
    }

    /// Queues a locally committed group's answers until the standbys confirm it.
    pub fn wait(&mut self, commit: LocalCommit, answers: Vec<WaitingAnswer>) {
        self.groups.push_back(Group { commit, answers });
    }

    /// Answers every group the standbys have confirmed (or all of them, with the copies
    /// each has now, once none is to be waited for) and publishes what they wrote.
    /// `committed` gives a partition's next offset as the writer knows it (rows committed
    /// locally since, without waiting, become readable with the group before them).
    pub fn release_confirmed(&mut self, runner: &mut dyn JobRunner, committed: &HashMap<PartitionKey, i64>) {
        if self.groups.is_empty() {
            return;
        }
        let confirmed = self.progress.confirmed();
        while let Some(group) = self.groups.front() {
            let waits_for = group.commit.copies.unwrap_or(1);
            let standbys_left = self.copies_now.is_none_or(|now| now < waits_for);
            let copies_after = match confirmed {
                Some(position) if group.commit.commit_end <= position => None,
                Some(_) if !standbys_left => break,
                // Let go without its standbys: how many copies does it have?
                _ => in_transaction(runner, |storage| storage.copies_of_commit(group.commit.commit_end))
                    .ok()
                    .filter(|&after| after < waits_for),
            };
            let Some(mut group) = self.groups.pop_front() else { break };
            for mut answer in group.answers.drain(..) {
                if let Some(after) = copies_after {
                    answer.copies_lost(after);
                }
                answer.send();
            }
            self.publish(&group.commit, committed);
        }
    }

    /// Shutdown: the groups still waiting are answered REQUEST_TIMED_OUT (their records
    /// are written; an idempotent producer's retry is found a duplicate).
    pub fn abandon(&mut self) {
        for group in self.groups.drain(..) {
            for mut answer in group.answers {
                answer.results.iter_mut().filter(|r| r.is_ok()).for_each(|r| *r = Err(ResponseError::RequestTimedOut));
                answer.send();
            }
        }
    }

    /// Moves each partition's hold to the next waiting group's first offset there, or
    /// lifts it, and raises the high watermark to match.
    fn publish(&self, released: &LocalCommit, committed: &HashMap<PartitionKey, i64>) {
        for (&key, &(_, after)) in &released.ranges {
            let next_first = self.groups.iter().find_map(|g| g.commit.ranges.get(&key).map(|&(first, _)| first));
            let high = match next_first {
                Some(first) => {
                    self.watermarks.hold(key, first, true);
                    first
                }
                None => {
                    self.watermarks.unhold(key);
                    committed.get(&key).copied().unwrap_or(after).max(after)
                }
            };
            self.watermarks.advance(key.0, key.1, high);
        }
        if !released.ranges.is_empty() {
            self.watermarks.notify();
        }
    }
}
