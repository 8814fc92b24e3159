//! Compaction on both layouts of the in-memory engine: what survives, what goes, and when.

use super::*;
use crate::metrics::Cleanable;
use crate::protocol::records::{encode_batch, Batch, Record, TRANSACTIONAL};
use crate::storage::batches::checked;
use crate::storage::memory::MemoryStorage;
use crate::storage::transactions::{AbortedTxn, OpenTxn, TxnLogChanges};
use crate::storage::{now_ms, MessageRows, RowTxn};

const HOUR: i64 = 3_600_000;

/// `(key, value)` to append; `None` value: a tombstone.
type Message = (Option<&'static str>, Option<&'static str>);

struct Partition {
    storage: MemoryStorage,
    topic: Topic,
    next: i64,
}

impl Partition {
    fn new(layout: StorageLayout, configs: &[(&str, &str)]) -> Partition {
        let mut storage = MemoryStorage::default();
        let topic = storage.create_topic_as("compacted", 1, layout).unwrap();
        let mut all = vec![("cleanup.policy".to_owned(), "compact".to_owned())];
        all.extend(configs.iter().map(|(n, v)| (n.to_string(), v.to_string())));
        storage.replace_topic_configs(topic.id, &all).unwrap();
        let topic = storage.topic("compacted").unwrap().unwrap();
        Partition { storage, topic, next: 0 }
    }

    /// Appends `messages` (one batch in the batch layout) stamped `timestamp_ms`.
    fn append(&mut self, timestamp_ms: i64, messages: &[Message]) {
        self.append_as(timestamp_ms, messages, None);
    }

    /// Appends `messages` as one batch of producer 7, transactional when `transactional`
    /// names its producer id instead (as rows of that producer in the row layout).
    fn append_as(&mut self, timestamp_ms: i64, messages: &[Message], transactional: Option<i64>) {
        let bytes = |s: Option<&'static str>| s.map(|s| Bytes::from_static(s.as_bytes()));
        match self.topic.layout {
            StorageLayout::Rows => {
                let n = messages.len();
                let rows = MessageRows {
                    topic_ids: vec![self.topic.id; n],
                    partitions: vec![0; n],
                    offsets: (self.next..self.next + n as i64).collect(),
                    timestamps_ms: vec![timestamp_ms; n],
                    keys: messages.iter().map(|(k, _)| bytes(*k)).collect(),
                    values: messages.iter().map(|(_, v)| bytes(*v)).collect(),
                    headers: vec![None; n],
                    txns: vec![transactional.map(|producer_id| RowTxn { producer_id, producer_epoch: 1, control: false }); n],
                };
                self.storage.append(&rows).unwrap();
            }
            StorageLayout::Batches => {
                let records: Vec<Record> = messages
                    .iter()
                    .enumerate()
                    .map(|(i, (k, v))| Record {
                        offset_delta: i as i32,
                        timestamp: timestamp_ms,
                        key: bytes(*k),
                        value: bytes(*v),
                        headers: None,
                    })
                    .collect();
                // An idempotent producer's batch (producer 7, sequence = its offset), so
                // that a rewrite can be seen to keep the producer fields.
                let plain = decode_batches(encode_batch(0, &records), 1 << 20).unwrap().remove(0);
                let idempotent = Batch { producer_id: 7, producer_epoch: 1, base_sequence: self.next as i32, ..plain };
                let idempotent = match transactional {
                    Some(producer_id) => Batch { producer_id, attributes: idempotent.attributes | TRANSACTIONAL, ..idempotent },
                    None => idempotent,
                };
                let raw = encode_batch_like(&idempotent, &idempotent.records);
                let batch = decode_batches(raw.clone(), 1 << 20).unwrap().remove(0);
                let row = checked(&batch, raw).unwrap().placed(self.topic.id, 0, self.next);
                self.storage.append_batches(&[row]).unwrap();
            }
        }
        self.next += messages.len() as i64;
    }

    /// Appends the abort marker of `producer_id`'s transaction: a control row or batch.
    fn abort_marker(&mut self, timestamp_ms: i64, producer_id: i64) {
        match self.topic.layout {
            StorageLayout::Rows => {
                let mut rows = crate::storage::empty_rows(self.topic.id, 0, &[self.next]);
                rows.keys[0] = Some(Bytes::from_static(&[0, 0, 0, 0]));
                rows.timestamps_ms[0] = timestamp_ms;
                rows.set_last_txn(Some(RowTxn { producer_id, producer_epoch: 1, control: true }));
                self.storage.append(&rows).unwrap();
            }
            StorageLayout::Batches => {
                let row = crate::storage::batches::marker(producer_id, 1, false, timestamp_ms).placed(self.topic.id, 0, self.next);
                self.storage.append_batches(&[row]).unwrap();
            }
        }
        self.next += 1;
    }

    fn compact(&mut self, now: i64) -> Option<Cleaned> {
        compact_partition(&mut self.storage, &self.topic, 0, now, Instant::now() + PASS_BUDGET).unwrap()
    }

    /// What a consumer reading from the start sees: (offset, key, value), markers too.
    fn log(&mut self) -> Vec<(i64, Option<String>, Option<String>)> {
        let mut markers = Vec::new();
        let limit = ReadLimit { from: 0, below: i64::MAX, max_bytes: usize::MAX, at_least_one: true };
        let records = match self.topic.layout {
            StorageLayout::Rows => self.storage.read(self.topic.id, 0, limit).unwrap(),
            StorageLayout::Batches => {
                let batches = self.storage.read_batches(self.topic.id, 0, limit).unwrap();
                batches
                    .iter()
                    .filter(|b| decode_batches((*b).clone(), 1 << 20).unwrap()[0].is_control())
                    .for_each(|b| markers.push(base_offset_of(b)));
                unpacked(&batches).unwrap()
            }
        };
        let mut records: Vec<_> = records.into_iter().map(|r| (r.offset, r.key, r.value)).collect();
        records.extend(markers.into_iter().map(|offset| (offset, Some(Bytes::from_static(&[0, 0, 0, 0])), None)));
        records.sort_by_key(|r| r.0);
        let text = |b: Option<Bytes>| b.map(|b| String::from_utf8_lossy(&b).into_owned());
        records.into_iter().map(|(offset, key, value)| (offset, text(key), text(value))).collect()
    }

    fn offsets(&mut self) -> Vec<i64> {
        self.log().into_iter().map(|(o, _, _)| o).collect()
    }
}

/// Everything out of the head at once: 1 ms segments, any dirty share cleans.
const EAGER: &[(&str, &str)] = &[("segment.ms", "1"), ("min.cleanable.dirty.ratio", "0.01")];

fn both_layouts(test: impl Fn(StorageLayout)) {
    for layout in [StorageLayout::Rows, StorageLayout::Batches] {
        test(layout);
    }
}

#[test]
fn the_latest_record_of_each_key_survives_at_its_offset_and_the_last_record_stays() {
    both_layouts(|layout| {
        let mut p = Partition::new(layout, EAGER);
        let then = now_ms() - HOUR;
        p.append(then, &[(Some("a"), Some("1")), (Some("b"), Some("1")), (Some("a"), Some("2"))]);
        p.append(then, &[(Some("c"), Some("1")), (Some("b"), None)]);
        p.append(then, &[(Some("a"), Some("3"))]);
        let cleaned = p.compact(now_ms()).expect("due");
        // The last record (offset 5, its own batch) is never cleanable: the dirty part is
        // 0..5, where a's latest is 2; b's tombstone stays until delete.retention.ms after
        // it was reached.
        assert_eq!((cleaned.removed, cleaned.cleaned_to), (2, 5), "{layout:?}");
        assert_eq!(p.offsets(), vec![2, 3, 4, 5], "{layout:?}");
        assert_eq!(p.storage.next_offset(p.topic.id, 0).unwrap(), 6, "the high watermark stays");
        assert_eq!(p.compact(now_ms()), None, "nothing new: no pass");

        p.append(then, &[(Some("c"), Some("2"))]);
        p.append(then, &[(Some("d"), Some("1"))]);
        let cleaned = p.compact(now_ms()).expect("due");
        assert_eq!(cleaned.removed, 2, "{layout:?}: a@2 (a@5 is dirty now) and c@3");
        let log = p.log();
        let want = vec![
            (4, Some("b".to_owned()), None),
            (5, Some("a".to_owned()), Some("3".to_owned())),
            (6, Some("c".to_owned()), Some("2".to_owned())),
            (7, Some("d".to_owned()), Some("1".to_owned())),
        ];
        assert_eq!(log, want, "{layout:?}");
    });
}

#[test]
fn tombstones_go_delete_retention_after_compaction_reached_them() {
    both_layouts(|layout| {
        let mut p = Partition::new(layout, &[EAGER, &[("delete.retention.ms", "60000")]].concat());
        let then = now_ms() - HOUR;
        p.append(then, &[(Some("a"), Some("1")), (Some("a"), None)]);
        p.append(then, &[(Some("z"), Some("last"))]);
        let now = now_ms();
        p.compact(now).expect("due");
        assert_eq!(p.offsets(), vec![1, 2], "{layout:?}: the tombstone is the latest of a");
        p.append(then, &[(Some("y"), Some("1"))]);
        p.compact(now + 1_000).expect("due");
        assert_eq!(p.offsets(), vec![1, 2, 3], "{layout:?}: reached only a second ago");
        p.append(then, &[(Some("x"), Some("1"))]);
        p.compact(now + 61_000).expect("due");
        assert_eq!(p.offsets(), vec![2, 3, 4], "{layout:?}: a minute after it was reached, it goes");
    });
}

#[test]
fn keyless_records_go_and_the_head_and_the_minimum_lag_are_left_alone() {
    both_layouts(|layout| {
        let mut p = Partition::new(layout, &[("min.cleanable.dirty.ratio", "0.01"), ("min.compaction.lag.ms", "600000")]);
        let now = now_ms();
        p.append(now - 8 * 24 * HOUR, &[(None, Some("before compaction")), (Some("k"), Some("1")), (Some("k"), Some("2"))]);
        p.append(now - 1_000, &[(Some("k"), Some("3")), (Some("k"), Some("4"))]);
        // segment.ms is 7 days: the first batch is out of the head; the second is younger
        // than min.compaction.lag.ms (10 minutes) and stays whole.
        let cleaned = p.compact(now).expect("due");
        assert_eq!((cleaned.removed, cleaned.cleaned_to), (2, 3), "{layout:?}");
        assert_eq!(p.offsets(), vec![2, 3, 4], "{layout:?}: k@2 is the latest below the lag");
    });
}

#[test]
fn a_partition_whose_dirty_share_is_below_the_ratio_waits() {
    both_layouts(|layout| {
        let mut p = Partition::new(layout, &[("segment.ms", "1"), ("min.cleanable.dirty.ratio", "0.9")]);
        let then = now_ms() - HOUR;
        p.append(then, &[(Some("a"), Some("1")), (Some("b"), Some("1")), (Some("c"), Some("1"))]);
        p.append(then, &[(Some("z"), Some("1"))]);
        assert!(p.compact(now_ms()).is_some(), "all dirty at first");
        p.append(then, &[(Some("a"), Some("2"))]);
        p.append(then, &[(Some("z"), Some("2"))]);
        assert_eq!(p.compact(now_ms()), None, "{layout:?}: 2 of 5 dirty is below 0.9");
        assert_eq!(p.offsets().len(), 6);
    });
}

#[test]
fn a_pass_measures_each_compacted_partitions_cleanable_bytes_and_dirty_ratio_as_kafka_does() {
    both_layouts(|layout| {
        let mut p = Partition::new(layout, &[("segment.ms", "1"), ("min.cleanable.dirty.ratio", "0.9")]);
        let figures = |p: &mut Partition| {
            let pass = compact_all(&mut p.storage, now_ms(), Budget::pass(50)).unwrap();
            assert_eq!(pass.figures.len(), 1, "{layout:?}: one compacted partition");
            (pass.cleaned.len(), pass.figures[0].clone())
        };
        let (cleaned, empty) = figures(&mut p);
        assert_eq!((cleaned, empty.cleanable, empty.last_pass_ms), (0, Some(Cleanable::NONE), None), "{layout:?}: nothing yet");
        let then = now_ms() - HOUR;
        p.append(then, &[(Some("a"), Some("1")), (Some("b"), Some("1")), (Some("c"), Some("1"))]);
        p.append(then, &[(Some("z"), Some("1"))]);
        let (cleaned, first) = figures(&mut p);
        assert_eq!((cleaned, first.cleanable), (1, Some(Cleanable::NONE)), "{layout:?}: cleaned, nothing left below the head");
        assert!(first.last_pass_ms.is_some_and(|ms| ms >= then), "{layout:?}");
        // The clean part keeps 6 payload bytes (a, b, c); z@3 and a@4 are dirty (4 bytes),
        // z@5 is the head: 4 / (4 + 6), below 0.9, so no pass cleans it.
        p.append(then, &[(Some("a"), Some("2"))]);
        p.append(then, &[(Some("z"), Some("2"))]);
        let (cleaned, waiting) = figures(&mut p);
        assert_eq!((cleaned, waiting.cleanable), (0, Some(Cleanable { bytes: 4, dirty_ratio: 0.4 })), "{layout:?}");
        assert_eq!(waiting.last_pass_ms, first.last_pass_ms, "{layout:?}: the last pass that cleaned");
    });
}

#[test]
fn a_rewritten_batch_keeps_its_offsets_producer_and_end() {
    let mut p = Partition::new(StorageLayout::Batches, EAGER);
    let then = now_ms() - HOUR;
    p.append(then, &[(Some("a"), Some("1")), (Some("b"), Some("1")), (Some("c"), Some("1"))]);
    p.append(then, &[(Some("c"), Some("2")), (Some("b"), Some("2"))]);
    p.append(then, &[(Some("b"), Some("3"))]);
    p.compact(now_ms()).expect("due");
    let rows = p.storage.batches.clone();
    // b@5 is the head: b@4 stays the latest of b the map knows.
    assert_eq!(
        rows.iter().map(|b| (b.base_offset, b.last_offset(), b.record_count)).collect::<Vec<_>>(),
        vec![(0, 2, 1), (3, 4, 2), (5, 5, 1)]
    );
    let first = decode_batches(rows[0].bytes.clone(), 1 << 20).unwrap().remove(0);
    assert_eq!(
        (first.base_offset, first.last_offset_delta, first.records[0].offset_delta),
        (0, 2, 0),
        "a survives at delta 0, the end stays"
    );
    assert_eq!((first.producer_id, first.producer_epoch, first.base_sequence), (7, 1, 0), "the producer fields stay");
    assert_eq!((rows[0].producer_id, rows[0].base_sequence), (7, 0), "and the row's columns");
    assert_eq!(p.offsets(), vec![0, 3, 4, 5]);
    p.append(then, &[(Some("c"), Some("3"))]);
    p.append(then, &[(Some("q"), Some("1"))]);
    p.compact(now_ms()).expect("due");
    assert_eq!(p.storage.batches.iter().map(|b| b.last_offset()).collect::<Vec<_>>(), vec![2, 5, 6, 7], "an emptied batch is deleted");
    assert_eq!(p.offsets(), vec![0, 5, 6, 7]);
}

#[test]
fn the_tombstone_horizon_and_the_reach_history_never_move_a_deletion_earlier() {
    assert_eq!(tombstone_horizon(&[(10, 1_000), (20, 5_000)], 2_000, 6_000), 10);
    assert_eq!(tombstone_horizon(&[(10, 1_000), (20, 5_000)], 2_000, 7_000), 20);
    assert_eq!(tombstone_horizon(&[(10, 1_000)], 2_000, 2_000), 0);
    let mut reached = Vec::new();
    for pass in 0..100 {
        reached = reached_after(&reached, (pass * 10, pass * 1_000), 1_000_000, pass * 1_000);
        assert!(reached.len() <= MAX_REACHED);
        assert_eq!(reached.last(), Some(&(pass * 10, pass * 1_000)));
    }
    // Merged entries only ever make the horizon later (smaller), never earlier.
    for now in (0..200_000).step_by(7_000) {
        let exact = (0..100).map(|p| (p * 10, p * 1_000)).filter(|(_, at)| *at <= now - 1_000_000).map(|(o, _)| o).max().unwrap_or(0);
        assert!(tombstone_horizon(&reached, 1_000_000, now) <= exact);
    }
    assert!(dirty_enough(50, 50, 500_000) && !dirty_enough(49, 51, 500_000) && !dirty_enough(0, 0, 0));
}

#[test]
fn a_round_longer_than_a_pass_goes_on_in_the_next_passes_and_readers_always_see_each_keys_latest() {
    both_layouts(|layout| {
        let mut p = Partition::new(layout, EAGER);
        let then = now_ms() - HOUR;
        let value: &'static str = Box::leak("x".repeat(1024).into_boxed_str());
        let keys = ["k0", "k1", "k2", "k3", "k4", "k5", "k6", "k7", "k8", "k9"];
        for _ in 0..30 {
            let messages: Vec<Message> = (0..1000).map(|i| (Some(keys[i % 10]), Some(value))).collect();
            p.append(then, &messages);
        }
        p.append(then, &[(Some("tail"), Some("t"))]);
        // A deadline already past: each pass walks one 8 MiB chunk, then stops.
        let mut passes = 0;
        loop {
            let cleaned =
                compact_partition(&mut p.storage, &p.topic, 0, now_ms(), Instant::now()).unwrap().expect("a round is due or going on");
            passes += 1;
            let latest: HashMap<String, i64> = p.log().into_iter().filter_map(|(o, k, _)| k.map(|k| (k, o))).collect();
            assert_eq!(latest.len(), 11, "{layout:?}: every key is still there after pass {passes}");
            assert_eq!(latest["k9"], 29_999, "{layout:?}: and with its latest record");
            if cleaned.cleaned_to == 30_000 {
                break;
            }
            assert!(passes < 20, "{layout:?}: the round ends");
        }
        assert!(passes >= 3, "{layout:?}: 30 MB took {passes} passes of 8 MiB");
        assert_eq!(p.offsets(), [29_990, 29_991, 29_992, 29_993, 29_994, 29_995, 29_996, 29_997, 29_998, 29_999, 30_000]);
        assert_eq!(p.storage.cleaning_state(p.topic.id, 0).unwrap().map(|s| (s.round_end, s.walked_to)), Some((0, 0)));
    });
}

#[test]
fn a_paced_pass_rests_as_long_as_its_share_asks_and_never_past_its_deadline() {
    let rested_after = |budget: Budget, work: Duration| {
        let began = Instant::now();
        std::thread::sleep(work);
        let rest_began = Instant::now();
        budget.rest_after(began);
        rest_began.elapsed()
    };
    let work = Duration::from_millis(40);
    let quarter = rested_after(Budget::pass(25), work);
    assert!(quarter >= work * 3 && quarter < work * 3 + Duration::from_millis(200), "25%: rests three times its work, {quarter:?}");
    assert!(rested_after(Budget::pass(100), work) < Duration::from_millis(5), "100%: no rest");
    let closing = Budget { deadline: Instant::now() + Duration::from_millis(60), work_percent: 1 };
    let rest = rested_after(closing, work);
    assert!(rest < Duration::from_millis(100), "the deadline ends the rest, {rest:?}");
    assert_eq!(Budget::pass(0).work_percent, 1, "a share is at least 1%");
}

#[test]
fn an_aborted_record_supersedes_nothing_and_an_open_transaction_stops_the_cleaner() {
    both_layouts(|layout| {
        let mut p = Partition::new(layout, EAGER);
        let then = now_ms() - HOUR;
        let key = (p.topic.id, 0);
        p.append(then, &[(Some("a"), Some("1"))]);
        // Producer 9's transaction wrote a=2 at offset 1 and aborted with its marker at 2.
        p.append_as(then, &[(Some("a"), Some("2"))], Some(9));
        p.abort_marker(then, 9);
        let aborted = AbortedTxn { partition: key, producer_id: 9, first_offset: 1, last_offset: 2 };
        p.storage.save_txn_log(&TxnLogChanges { ended: vec![(key, 9)], aborted: vec![aborted], ..Default::default() }).unwrap();
        p.append(then, &[(Some("b"), Some("1"))]);
        p.compact(now_ms());
        assert_eq!(p.offsets(), vec![0, 1, 2, 3], "a=1 stays: the aborted a=2 does not supersede it ({layout:?})");

        // Producer 10's transaction is open from offset 4: nothing from there on is cleaned.
        p.append_as(then, &[(Some("b"), Some("2"))], Some(10));
        let open = OpenTxn { partition: key, producer_id: 10, first_offset: 4 };
        p.storage.save_txn_log(&TxnLogChanges { begun: vec![open], ..Default::default() }).unwrap();
        p.append(then, &[(Some("a"), Some("3")), (Some("c"), Some("1"))]);
        p.compact(now_ms());
        assert_eq!(p.offsets(), vec![0, 1, 2, 3, 4, 5, 6], "b=1 stays while b=2's transaction may abort ({layout:?})");

        p.storage.save_txn_log(&TxnLogChanges { ended: vec![(key, 10)], ..Default::default() }).unwrap();
        p.append(then, &[(Some("d"), Some("1"))]);
        p.compact(now_ms());
        let kept = vec![2, 4, 5, 6, 7];
        assert_eq!(p.offsets(), kept, "committed: a=3 and b=2 supersede, the aborted a=2 goes with a=1, the marker stays ({layout:?})");
    });
}
