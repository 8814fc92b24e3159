//! Read-ahead for a consumer catching up on a log: Fetch's next read starts while the last
//! answer is still on its way.
//!
//! A consumer has one Fetch in flight per broker: it asks for the next range only once
//! the last answer arrived and was parsed. Reading from behind, each Fetch then waits for
//! its read (a reader process walking the index and detoasting batches) after the
//! network and the client's own parsing, one after the other, with a core idle. When an
//! answer leaves data below the bounds it was read with, the read its consumer will want
//! next (the same partitions, each from the offset after what it got) starts at once in
//! another reader process; the next Fetch of the connection takes that answer if it asks
//! for exactly those reads.
//!
//! ```text
//!  Fetch n:   read ──▶ answer ─┬─▶ network ─▶ client parses ─▶ Fetch n+1: take ─▶ answer
//!                              └─▶ read ahead (another reader) ───────────────┘
//! ```
//! Bounded: one read ahead per connection; started only when two readers are idle (it
//! never makes another client's Fetch wait for a reader, nor runs on the main thread)
//! and at least half the shared response budget would stay free; its bytes held in that
//! budget until taken, or dropped [`KEPT`] after it was read, or with its connection.
//! Correct by construction: it read records committed below its bounds, which only grow,
//! so a Fetch may use it when each read asks for the same partition from the same offset
//! with the same limits and bounds no lower; anything else drops it and reads afresh.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{oneshot, OwnedSemaphorePermit};

use super::Broker;
use crate::storage::reads::{PartitionAnswer, ReadPlan, ReadResult};

/// How long an answer read ahead waits for its Fetch: a consumer asks again within
/// milliseconds unless its application stopped polling.
pub const KEPT: Duration = Duration::from_secs(1);

/// A connection's read ahead, if one is under way or done.
#[derive(Default)]
pub struct ReadAhead {
    pending: parking_lot::Mutex<Option<Pending>>,
}

/// A read started ahead of the Fetch expected to want it.
struct Pending {
    plan: ReadPlan,
    /// Where the answer lands (`None` inside if no reader could give one), with the
    /// response budget it holds; emptied by the read's task [`KEPT`] after it landed.
    answer: Arc<parking_lot::Mutex<Option<Answered>>>,
    /// Says when the answer has landed.
    landed: oneshot::Receiver<()>,
    /// Dropped with the pending read (taken, replaced, or its connection gone): the
    /// read's task then stops keeping the answer.
    _kept: oneshot::Sender<()>,
}

type Answered = (Option<ReadResult>, OwnedSemaphorePermit);

impl ReadAhead {
    pub fn new() -> Arc<ReadAhead> {
        Arc::default()
    }

    /// The answer read ahead for `plan`, if the read ahead is what `plan` asks for and
    /// found something; otherwise `None` (a read ahead that does not serve is dropped:
    /// it finishes in its reader, and its answer goes away with its budget).
    pub async fn take(&self, broker: &Broker, plan: &ReadPlan) -> Option<ReadResult> {
        let pending = self.pending.lock().take()?;
        if !serves(&pending.plan, plan) {
            return None;
        }
        pending.landed.await.ok()?;
        let (answer, _budget) = pending.answer.lock().take()?;
        let answer = answer.filter(|read| !read.iter().all(PartitionAnswer::is_empty))?;
        broker.metrics().read_ahead_used();
        Some(answer)
    }

    /// After `plan` read `read`: starts the read the consumer will want next, if there
    /// is more to read below the plan's bounds, two readers are idle and the response
    /// budget has room for it.
    pub fn start(&self, broker: &Broker, plan: &ReadPlan, read: &ReadResult) {
        let Some(next) = next_plan(plan, read) else { return };
        let readers = broker.readers.clone();
        let budget_left = broker.responses.available_permits().saturating_sub(next.response_bytes);
        if readers.idle() < 2 || budget_left < broker.config().max_inflight_bytes / 2 {
            return;
        }
        let Ok(budget) = broker.responses.clone().try_acquire_many_owned(next.response_bytes.min(u32::MAX as usize) as u32) else {
            return;
        };
        let (max_answer_bytes, timeout) = super::fetch::reader_limits(broker, &next);
        let (job, answer) = (next.clone(), Arc::new(parking_lot::Mutex::new(None)));
        let ((land, landed), (kept, until_dropped)) = (oneshot::channel(), oneshot::channel::<()>());
        let slot = answer.clone();
        tokio::spawn(async move {
            let read = readers.run(&job, max_answer_bytes, timeout).await.and_then(Result::ok);
            *slot.lock() = Some((read, budget));
            let _ = land.send(());
            // Taken, or its connection gone, or no Fetch came for it: drop what is left.
            let _ = tokio::time::timeout(KEPT, until_dropped).await;
            slot.lock().take();
        });
        broker.metrics().read_ahead_started();
        *self.pending.lock() = Some(Pending { plan: next, answer, landed, _kept: kept });
    }
}

/// The plan of the Fetch that reads on from `read`: each partition from the offset after
/// what it got (or where it was, if the response filled before it), keeping those with
/// data left below their bounds. `None` when nothing was read or nothing is left.
pub fn next_plan(plan: &ReadPlan, read: &ReadResult) -> Option<ReadPlan> {
    read.iter().find_map(PartitionAnswer::next_offset)?;
    let reads: Vec<_> = plan
        .reads
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let from = read.get(i).and_then(PartitionAnswer::next_offset).map_or(r.from, |next| next.max(r.from));
            crate::storage::reads::PartitionRead { from, ..*r }
        })
        .filter(|r| r.from < r.below)
        .collect();
    (!reads.is_empty()).then_some(ReadPlan { reads, response_bytes: plan.response_bytes })
}

/// Whether what `ahead` read answers `wanted`: the same reads in the same order, each
/// with bounds no lower (records below the old bounds stay committed), and a response
/// at least as large.
fn serves(ahead: &ReadPlan, wanted: &ReadPlan) -> bool {
    ahead.response_bytes <= wanted.response_bytes
        && ahead.reads.len() == wanted.reads.len()
        && ahead.reads.iter().zip(&wanted.reads).all(|(a, w)| {
            (a.topic_id, a.partition, a.from, a.max_bytes, a.layout, a.codec)
                == (w.topic_id, w.partition, w.from, w.max_bytes, w.layout, w.codec)
                && a.below <= w.below
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::records::{encode_batch, Record};
    use crate::storage::reads::PartitionRead;
    use crate::storage::StorageLayout;
    use std::time::Duration;

    fn read(partition: i32, from: i64, below: i64) -> PartitionRead {
        PartitionRead { topic_id: 7, partition, from, below, max_bytes: 1 << 20, layout: StorageLayout::Batches, codec: None }
    }

    fn answer(base_offset: i64, records: usize) -> PartitionAnswer {
        let records: Vec<Record> = (0..records)
            .map(|i| Record {
                offset_delta: i as i32,
                timestamp: 0,
                key: None,
                value: Some(bytes::Bytes::from_static(b"v")),
                headers: None,
            })
            .collect();
        PartitionAnswer { records: records.len(), batches: vec![encode_batch(base_offset, &records)] }
    }

    #[test]
    fn the_next_plan_reads_on_from_each_answer_while_data_is_left() {
        let plan = ReadPlan { reads: vec![read(0, 10, 100), read(1, 0, 5), read(2, 3, 50)], response_bytes: 4096 };
        // Partition 0 got 10..=19, partition 1 all it had, partition 2 nothing (response full).
        let next = next_plan(&plan, &vec![answer(10, 10), answer(0, 5)]).expect("more to read");
        assert_eq!(next.reads, vec![read(0, 20, 100), read(2, 3, 50)]);
        assert_eq!(next.response_bytes, 4096);
        assert_eq!(next_plan(&plan, &vec![PartitionAnswer::default()]), None, "nothing read: a tailing consumer");
        let caught_up = ReadPlan { reads: vec![read(0, 10, 20)], response_bytes: 4096 };
        assert_eq!(next_plan(&caught_up, &vec![answer(10, 10)]), None, "read up to the bounds");
    }

    #[test]
    fn a_read_ahead_serves_only_the_same_reads_with_bounds_no_lower() {
        let ahead = ReadPlan { reads: vec![read(0, 20, 100)], response_bytes: 4096 };
        assert!(serves(&ahead, &ahead));
        assert!(serves(&ahead, &ReadPlan { reads: vec![read(0, 20, 150)], response_bytes: 8192 }));
        assert!(!serves(&ahead, &ReadPlan { reads: vec![read(0, 20, 90)], response_bytes: 4096 }), "bounds went down");
        assert!(!serves(&ahead, &ReadPlan { reads: vec![read(0, 21, 100)], response_bytes: 4096 }), "the consumer moved");
        assert!(!serves(&ahead, &ReadPlan { reads: vec![read(0, 20, 100)], response_bytes: 1024 }), "a smaller response");
        assert!(!serves(&ahead, &ReadPlan { reads: vec![read(0, 20, 100), read(1, 0, 9)], response_bytes: 4096 }));
        let compressed = PartitionRead { codec: Some((crate::protocol::records::Compression::Lz4, 0)), ..read(0, 20, 100) };
        assert!(!serves(&ahead, &ReadPlan { reads: vec![compressed], response_bytes: 4096 }), "the topic's codec changed");
    }

    /// A broker whose topic "t" holds `count` records valued "b", and two reader
    /// processes whose storage holds them valued "r" (so answers show who read them).
    async fn broker_with_readers(name: &str, count: usize) -> (Broker, tokio::sync::watch::Sender<bool>) {
        use crate::storage::{memory::MemoryStorage, MessageRows, Storage};
        let broker = crate::broker::testing::broker_with_writer(1);
        crate::broker::testing::append_values(&broker, 0, &vec![&b"b"[..]; count]).await;
        let path = std::env::temp_dir().join(format!("pg_kafka-read-ahead-{}-{name}.sock", std::process::id()));
        let (stop, shutdown) = tokio::sync::watch::channel(false);
        tokio::spawn(broker.readers().clone().accept(crate::storage::readers::bind(path.to_str().unwrap()).unwrap(), shutdown));
        for _ in 0..2 {
            let mut storage = MemoryStorage::default();
            let topic = storage.create_topic("t", 1).unwrap();
            let rows = MessageRows {
                topic_ids: vec![topic.id; count],
                partitions: vec![0; count],
                offsets: (0..count as i64).collect(),
                timestamps_ms: vec![1; count],
                keys: vec![None; count],
                values: vec![Some(bytes::Bytes::from_static(b"r")); count],
                headers: vec![None; count],
                txns: Vec::new(),
            };
            storage.append(&rows).unwrap();
            crate::storage::readers::fake::reader(&path, storage, usize::MAX, |_| {});
        }
        while broker.readers().idle() < 2 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        (broker, stop)
    }

    /// One Fetch of a record (partition_max_bytes 1) at `offset` of partition 0 on the
    /// connection of `responses`: the (offset, value) pairs it got.
    async fn fetch_at(broker: &Broker, responses: &super::super::ConnectionResponses, offset: i64) -> Vec<(i64, bytes::Bytes)> {
        use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
        use kafka_protocol::messages::{ApiKey, FetchRequest, FetchResponse, TopicName};
        let partition = FetchPartition::default().with_partition(0).with_fetch_offset(offset).with_partition_max_bytes(1);
        let topic = FetchTopic::default().with_topic(TopicName("t".into())).with_partitions(vec![partition]);
        let request = FetchRequest::default().with_max_bytes(1 << 20).with_min_bytes(1).with_session_epoch(-1).with_topics(vec![topic]);
        let frame = crate::broker::testing::request_frame(ApiKey::Fetch, 12, &request);
        let turn = responses.turn(super::super::in_order::InOrder::first());
        let outcome = super::super::CONNECTION_RESPONSES.scope(turn, broker.handle(frame)).await;
        let response: FetchResponse = crate::broker::testing::decode_response(outcome, ApiKey::Fetch, 12);
        let records = response.responses[0].partitions[0].records.clone().unwrap_or_default();
        let batches = crate::protocol::records::decode_batches(records, 1 << 20).unwrap();
        batches
            .into_iter()
            .flat_map(|b| b.records.into_iter().map(move |r| (b.base_offset + i64::from(r.offset_delta), r.value.unwrap_or_default())))
            .collect()
    }

    fn counter(broker: &Broker, name: &str) -> Option<f64> {
        broker.metrics().snapshot().iter().find(|m| m.name == name).map(|m| m.value)
    }

    #[tokio::test]
    async fn a_consumer_reading_on_is_answered_from_its_read_ahead() {
        let (broker, _stop) = broker_with_readers("reading-on", 10).await;
        let responses = super::super::ConnectionResponses::new(1 << 20);
        let r = bytes::Bytes::from_static(b"r");
        assert_eq!(fetch_at(&broker, &responses, 0).await, vec![(0, r.clone())]);
        // (Its read ahead done, so that its reader is free again.)
        tokio::time::sleep(Duration::from_millis(100)).await;
        // A seek: what was read ahead (offset 1) is dropped, offset 5 read afresh.
        assert_eq!(fetch_at(&broker, &responses, 5).await, vec![(5, r.clone())]);
        assert_eq!(counter(&broker, "fetch_reads_ahead_used_total"), Some(0.0));
        for offset in 6..10 {
            assert_eq!(fetch_at(&broker, &responses, offset).await, vec![(offset, r.clone())]);
        }
        assert_eq!(counter(&broker, "fetch_reads_ahead_used_total"), Some(4.0), "offsets 6 to 9 were read ahead");
        // Offset 9 was the last below the high watermark: nothing more was read ahead.
        assert_eq!(counter(&broker, "fetch_reads_ahead_total"), Some(5.0));
        // Another connection never gets this one's read ahead.
        assert_eq!(fetch_at(&broker, &super::super::ConnectionResponses::new(1 << 20), 1).await, vec![(1, r)]);
        assert_eq!(counter(&broker, "fetch_reads_ahead_used_total"), Some(4.0));
    }

    #[tokio::test]
    async fn a_read_ahead_nobody_takes_gives_its_budget_back() {
        let (broker, _stop) = broker_with_readers("untaken", 10).await;
        let budget = broker.config().max_inflight_bytes;
        let budget_back = |within: Duration| {
            let broker = broker.clone();
            async move {
                let started = tokio::time::Instant::now();
                while broker.responses().available_permits() < budget {
                    assert!(started.elapsed() < within, "the budget stays held");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                started.elapsed()
            }
        };
        let responses = super::super::ConnectionResponses::new(1 << 20);
        fetch_at(&broker, &responses, 0).await;
        assert!(broker.responses().available_permits() < budget, "the answer read ahead of offset 1 holds its bytes");
        let waited = budget_back(KEPT + Duration::from_secs(5)).await;
        assert!(waited >= KEPT / 2, "held until {KEPT:?} after it was read, not {waited:?}");
        fetch_at(&broker, &responses, 1).await;
        assert_eq!(counter(&broker, "fetch_reads_ahead_used_total"), Some(0.0), "offset 1 was read afresh");
        assert!(broker.responses().available_permits() < budget, "offset 2 is read ahead");
        drop(responses); // the connection goes, and its read ahead with it
        assert!(budget_back(Duration::from_secs(5)).await < KEPT);
    }

    #[test]
    fn the_next_offset_walks_batches_back_to_back() {
        let (first, second) = (answer(0, 3), answer(3, 4));
        let joined = [first.batches[0].clone(), second.batches[0].clone()].concat();
        let together = PartitionAnswer { records: 7, batches: vec![bytes::Bytes::from(joined)] };
        assert_eq!(together.next_offset(), Some(7));
        assert_eq!(PartitionAnswer::default().next_offset(), None);
        let truncated = PartitionAnswer { records: 0, batches: vec![first.batches[0].slice(..20)] };
        assert_eq!(truncated.next_offset(), None, "shorter than a batch header");
    }
}
