//! Consumer groups' committed offsets, translated from the source to the target, so that a
//! group can switch clusters and go on where it was (the cutover's last step).
//!
//! Offsets differ between the two logs (transaction markers and aborted records take
//! offsets, and each cluster numbers its own). The forwarder knows, at each committed
//! transaction, the source's next offset of each partition and the target's next offset
//! after the records it wrote (from their delivery reports): a checkpoint. A group's
//! committed source offset S translates to the target offset of the last checkpoint at or
//! below S: exact when S is a batch boundary (a group that caught up), otherwise the
//! group reads again at most the records between that checkpoint and S, never skips one.
//! Checkpoints live in the forwarder's memory (the newest [`KEPT`] per partition) and start
//! at each session with one exact pair, the cursor and the target's end: a group that
//! committed below the oldest one is not translated until it moves past it.
//!
//! The sync only moves a target group forward, and only while that group has no members
//! there (Kafka refuses a commit without a generation to an active group): once consumers
//! run on the target, their own commits count.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::{DeliveryResult, Message};
use rdkafka::producer::ProducerContext;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

/// Checkpoints kept per partition.
const KEPT: usize = 1_000;
/// Groups translated per sync at most.
const MAX_GROUPS: usize = 100;
const TIMEOUT: Duration = Duration::from_secs(10);

/// Pairs of (source next offset, target next offset) per partition, oldest first.
#[derive(Default)]
pub struct Checkpoints {
    partitions: BTreeMap<i32, VecDeque<(i64, i64)>>,
}

impl Checkpoints {
    pub fn note(&mut self, partition: i32, source_next: i64, target_next: i64) {
        let pairs = self.partitions.entry(partition).or_default();
        if pairs.back().is_some_and(|&(source, target)| source >= source_next || target > target_next) {
            return;
        }
        pairs.push_back((source_next, target_next));
        if pairs.len() > KEPT {
            pairs.pop_front();
        }
    }

    /// The target offset a group at `source_offset` resumes from, if a checkpoint is at or
    /// below it.
    pub fn translate(&self, partition: i32, source_offset: i64) -> Option<i64> {
        let pairs = self.partitions.get(&partition)?;
        pairs.iter().rev().find(|&&(source, _)| source <= source_offset).map(|&(_, target)| target)
    }
}

/// The producer's context: the highest offset the target gave each partition's records.
#[derive(Default)]
pub struct Delivered {
    next: Mutex<BTreeMap<i32, i64>>,
}

impl Delivered {
    /// Each partition's target next offset after what was delivered since the last call.
    pub fn take(&self) -> BTreeMap<i32, i64> {
        std::mem::take(&mut *self.next.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

impl ClientContext for Delivered {}

impl ProducerContext for Delivered {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Ok(message) = result {
            let mut next = self.next.lock().unwrap_or_else(|e| e.into_inner());
            let entry = next.entry(message.partition()).or_insert(0);
            *entry = (*entry).max(message.offset() + 1);
        }
    }
}

/// What a sync needs of the two sides.
pub struct GroupSync<'a> {
    pub source: ClientConfig,
    pub source_topic: &'a str,
    pub target: ClientConfig,
    pub target_topic: &'a str,
    pub partitions: i32,
    /// The forwarder's own group on the target, never translated.
    pub own_group: &'a str,
}

impl GroupSync<'_> {
    /// Translates every source group's committed offsets of the topic to the target;
    /// returns how many groups moved. Errors of one group are logged by the caller's
    /// `note` and skip it.
    pub fn run(&self, checkpoints: &Checkpoints, lister: &BaseConsumer, mut note: impl FnMut(String)) -> usize {
        let groups = match lister.fetch_group_list(None, TIMEOUT) {
            Ok(list) => list.groups().iter().map(|g| g.name().to_owned()).collect::<Vec<_>>(),
            Err(error) => {
                note(format!("listing the source's groups: {error}"));
                return 0;
            }
        };
        let mut moved = 0;
        for group in groups.into_iter().filter(|g| g != self.own_group).take(MAX_GROUPS) {
            match self.sync_group(&group, checkpoints) {
                Ok(true) => moved += 1,
                Ok(false) => {}
                Err(error) => note(format!("translating group {group}: {error}")),
            }
        }
        moved
    }

    /// One group: its source offsets, translated, committed where they move it forward.
    fn sync_group(&self, group: &str, checkpoints: &Checkpoints) -> Result<bool, rdkafka::error::KafkaError> {
        let source = self.committed(&self.source, self.source_topic, group)?;
        if source.is_empty() {
            return Ok(false);
        }
        let target = self.committed(&self.target, self.target_topic, group)?;
        let mut moves = TopicPartitionList::new();
        for (&partition, &offset) in &source {
            let Some(translated) = checkpoints.translate(partition, offset) else { continue };
            if target.get(&partition).is_none_or(|&current| translated > current) {
                moves.add_partition_offset(self.target_topic, partition, Offset::Offset(translated))?;
            }
        }
        if moves.count() == 0 {
            return Ok(false);
        }
        let committer: BaseConsumer = self.with_group(&self.target, group).create()?;
        committer.commit(&moves, CommitMode::Sync)?;
        Ok(true)
    }

    /// A group's committed offsets of `topic` on one side, by partition (those it has).
    fn committed(&self, side: &ClientConfig, topic: &str, group: &str) -> Result<BTreeMap<i32, i64>, rdkafka::error::KafkaError> {
        committed_offsets(&self.with_group(side, group), topic, self.partitions, TIMEOUT)
    }

    fn with_group(&self, side: &ClientConfig, group: &str) -> ClientConfig {
        let mut config = side.clone();
        config.set("group.id", group).set("enable.auto.commit", "false");
        config
    }
}

/// The offsets the group of `config` (its `group.id`) has committed for partitions
/// `0..partitions` of `topic`, by partition: those that have one.
pub fn committed_offsets(
    config: &ClientConfig,
    topic: &str,
    partitions: i32,
    timeout: Duration,
) -> Result<BTreeMap<i32, i64>, rdkafka::error::KafkaError> {
    let reader: BaseConsumer = config.create()?;
    let mut wanted = TopicPartitionList::new();
    for partition in 0..partitions {
        wanted.add_partition(topic, partition);
    }
    let committed = reader.committed_offsets(wanted, timeout)?;
    Ok(committed
        .elements()
        .iter()
        .filter_map(|e| match e.offset() {
            Offset::Offset(offset) => Some((e.partition(), offset)),
            _ => None,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::Checkpoints;

    #[test]
    fn a_group_resumes_from_the_last_checkpoint_at_or_below_it() {
        let mut checkpoints = Checkpoints::default();
        checkpoints.note(0, 0, 0);
        checkpoints.note(0, 100, 101); // a marker after each batch on the target
        checkpoints.note(0, 250, 253);
        assert_eq!(checkpoints.translate(0, 100), Some(101), "a batch boundary: exact");
        assert_eq!(checkpoints.translate(0, 180), Some(101), "inside a batch: from its start again");
        assert_eq!(checkpoints.translate(0, 900), Some(253), "ahead of the forwarder: as far as it got");
        assert_eq!(checkpoints.translate(1, 5), None, "no checkpoint for the partition");
        checkpoints.note(0, 200, 300);
        assert_eq!(checkpoints.translate(0, 260), Some(253), "a pair going backwards is ignored");
    }

    #[test]
    fn only_the_newest_checkpoints_are_kept() {
        let mut checkpoints = Checkpoints::default();
        for n in 0..(super::KEPT as i64 + 10) {
            checkpoints.note(0, n * 10, n * 11);
        }
        assert_eq!(checkpoints.translate(0, 50), None, "below the oldest kept");
        assert_eq!(checkpoints.translate(0, 10_095), Some(11_099));
    }
}
