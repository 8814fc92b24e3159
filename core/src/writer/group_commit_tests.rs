//! The group-commit writer on the in-memory engine: offsets, sequences, flush timing,
//! SQL-held partitions and the counters' refresh.

use super::*;
use crate::storage::bridge::DirectRunner;
use crate::storage::memory::MemoryStorage;
use bytes::Bytes;

fn settings(flush_ms: u64) -> CommitSettings {
    CommitSettings {
        flush_interval: Duration::from_millis(flush_ms),
        max_batch_bytes: 1 << 20,
        refresh_interval: Duration::from_secs(60),
        max_lock_wait: Duration::from_secs(30),
        follow_replay: false,
    }
}

fn records(n: usize) -> Vec<Record> {
    (0..n)
        .map(|i| Record {
            offset_delta: i as i32,
            timestamp: 1_700_000_000_000,
            key: None,
            value: Some(Bytes::from(format!("v{i}"))),
            headers: None,
        })
        .collect()
}

/// Topic "t" with two partitions, as [`runner_with_topic`] creates it (id 1), as a
/// handler would have resolved it; any other name is a topic that storage never had.
fn resolved(name: &str) -> Topic {
    let id = if name == "t" { 1 } else { 99 };
    Topic {
        id,
        name: name.into(),
        uuid: uuid::Uuid::nil(),
        partitions: 2,
        settings: Default::default(),
        layout: crate::storage::StorageLayout::Rows,
    }
}

fn append(topic: &str, partition: i32, n: usize) -> PartitionAppend {
    PartitionAppend {
        topic: resolved(topic),
        topics_generation: 0,
        partition,
        records: records(n),
        batch: None,
        batch_bytes: 0,
        producer: None,
        log_append_time: None,
        row_txn: None,
    }
}

fn runner_with_topic(partitions: i32) -> DirectRunner<MemoryStorage> {
    let mut storage = MemoryStorage::default();
    storage.create_topic("t", partitions).unwrap();
    DirectRunner(storage)
}

/// Submits each request from its own task, then flushes once: one group commit.
async fn submit_all(queue: &CommitQueue, requests: Vec<Vec<PartitionAppend>>) -> Vec<tokio::task::JoinHandle<Vec<AppendResult>>> {
    let handles: Vec<_> = requests
        .into_iter()
        .map(|appends| {
            let queue = queue.clone();
            tokio::spawn(async move { queue.submit(appends, 10).await.unwrap() })
        })
        .collect();
    while queue.jobs.len() < handles.len() {
        tokio::task::yield_now().await;
    }
    handles
}

#[tokio::test]
async fn one_flush_commits_every_waiting_producer_with_contiguous_offsets() {
    let (queue, mut committer) = channel(settings(0), Arc::new(|| {}), Watermarks::default(), TopicCache::default());
    let mut runner = runner_with_topic(2);
    let handles = submit_all(&queue, vec![vec![append("t", 0, 3)], vec![append("t", 0, 2), append("t", 1, 4)]]).await;
    assert_eq!(committer.poll(&mut runner), None);
    let mut answers = Vec::new();
    for handle in handles {
        answers.push(handle.await.unwrap());
    }
    assert_eq!(answers, vec![vec![Ok(0)], vec![Ok(3), Ok(0)]]);
    assert_eq!(runner.0.messages.offsets, vec![0, 1, 2, 3, 4, 0, 1, 2, 3]);
}

#[tokio::test]
async fn counters_continue_from_the_table_and_then_from_memory() {
    let (queue, mut committer) = channel(settings(0), Arc::new(|| {}), Watermarks::default(), TopicCache::default());
    let mut runner = runner_with_topic(1);
    runner.0.append(&sql_row(0, 41)).unwrap();
    for expected in [42, 45] {
        let handles = submit_all(&queue, vec![vec![append("t", 0, 3)]]).await;
        committer.poll(&mut runner);
        assert_eq!(handles.into_iter().next().unwrap().await.unwrap(), vec![Ok(expected)]);
    }
}

fn idempotent(first_sequence: i32, n: usize) -> PartitionAppend {
    let producer = ProducerBatch { producer_id: 9, epoch: 0, first_sequence, last_sequence: first_sequence + n as i32 - 1 };
    PartitionAppend { producer: Some(producer), ..append("t", 0, n) }
}

#[tokio::test]
async fn a_retried_idempotent_batch_is_stored_once_even_within_one_flush() {
    let (queue, mut committer) = channel(settings(0), Arc::new(|| {}), Watermarks::default(), TopicCache::default());
    let mut runner = runner_with_topic(1);
    let handles = submit_all(&queue, vec![vec![idempotent(0, 3)], vec![idempotent(0, 3)], vec![idempotent(3, 1)]]).await;
    committer.poll(&mut runner);
    let mut answers = Vec::new();
    for handle in handles {
        answers.push(handle.await.unwrap());
    }
    assert_eq!(answers, vec![vec![Ok(0)], vec![Ok(0)], vec![Ok(3)]]);
    assert_eq!(runner.0.messages.offsets, vec![0, 1, 2, 3]);
    let stored = runner.0.producer_state((9, 1, 0)).unwrap().unwrap();
    assert_eq!(stored.batches.iter().map(|b| (b.first_sequence, b.base_offset)).collect::<Vec<_>>(), vec![(0, 0), (3, 3)]);
}

#[tokio::test]
async fn a_batch_whose_write_failed_is_appended_when_retried() {
    let (queue, mut committer) = channel(settings(0), Arc::new(|| {}), Watermarks::default(), TopicCache::default());
    let mut runner = runner_with_topic(1);
    runner.0.fail_appends = true;
    let handles = submit_all(&queue, vec![vec![idempotent(0, 2)]]).await;
    committer.poll(&mut runner);
    assert_eq!(handles.into_iter().next().unwrap().await.unwrap(), vec![Err(ResponseError::KafkaStorageError)]);
    runner.0.fail_appends = false;
    let handles = submit_all(&queue, vec![vec![idempotent(0, 2)]]).await;
    committer.poll(&mut runner);
    assert_eq!(handles.into_iter().next().unwrap().await.unwrap(), vec![Ok(0)], "not mistaken for a duplicate");
    assert_eq!(runner.0.messages.offsets, vec![0, 1]);
}

#[tokio::test]
async fn a_deleted_topic_is_never_written_under_its_old_id() {
    let topics = TopicCache::default();
    let (queue, mut committer) = channel(settings(0), Arc::new(|| {}), Watermarks::default(), topics.clone());
    let mut runner = runner_with_topic(1);
    let handles = submit_all(&queue, vec![vec![append("t", 0, 1)]]).await;
    committer.poll(&mut runner);
    assert_eq!(handles.into_iter().next().unwrap().await.unwrap(), vec![Ok(0)]);
    // DeleteTopics and CreateTopics ran (in storage jobs) while a produce resolved
    // before them was still queued.
    runner.0.delete_topic(1).unwrap();
    let recreated = runner.0.create_topic("t", 1).unwrap();
    topics.invalidate();
    let fresh = PartitionAppend { topic: recreated.clone(), topics_generation: topics.generation(), ..append("t", 0, 1) };
    let handles = submit_all(&queue, vec![vec![append("t", 0, 1)], vec![fresh]]).await;
    committer.poll(&mut runner);
    let mut answers = Vec::new();
    for handle in handles {
        answers.push(handle.await.unwrap());
    }
    assert_eq!(answers, vec![vec![Err(ResponseError::UnknownTopicOrPartition)], vec![Ok(0)]], "the new topic starts at 0");
    assert_eq!(runner.0.messages.topic_ids, vec![recreated.id], "nothing under the deleted id");
}

#[tokio::test]
async fn a_failed_write_fails_everyone_and_leaves_no_gap() {
    let (queue, mut committer) = channel(settings(0), Arc::new(|| {}), Watermarks::default(), TopicCache::default());
    let mut runner = runner_with_topic(1);
    let handles = submit_all(&queue, vec![vec![append("t", 0, 2)]]).await;
    committer.poll(&mut runner);
    assert_eq!(handles.into_iter().next().unwrap().await.unwrap(), vec![Ok(0)]);

    runner.0.fail_appends = true;
    let handles = submit_all(&queue, vec![vec![append("t", 0, 5)], vec![append("t", 0, 1)]]).await;
    committer.poll(&mut runner);
    for handle in handles {
        assert_eq!(handle.await.unwrap(), vec![Err(ResponseError::KafkaStorageError)]);
    }

    runner.0.fail_appends = false;
    let handles = submit_all(&queue, vec![vec![append("t", 0, 1)]]).await;
    committer.poll(&mut runner);
    assert_eq!(handles.into_iter().next().unwrap().await.unwrap(), vec![Ok(2)], "no gap after the failure");
}

/// A trigger refusing one producer's rows used to fail every producer of the group
/// commit; the group is now written again one producer at a time.
#[tokio::test]
async fn rows_refused_by_a_trigger_fail_only_their_producer() {
    let (queue, mut committer) = channel(settings(0), Arc::new(|| {}), Watermarks::default(), TopicCache::default());
    let mut runner = runner_with_topic(2);
    runner.0.refuse_partition = Some((1, 1));
    let handles = submit_all(&queue, vec![vec![append("t", 0, 2)], vec![append("t", 1, 1)], vec![append("t", 0, 1)]]).await;
    committer.poll(&mut runner);
    let mut answers = Vec::new();
    for handle in handles {
        answers.push(handle.await.unwrap());
    }
    assert_eq!(answers, vec![vec![Ok(0)], vec![Err(ResponseError::KafkaStorageError)], vec![Ok(2)]]);
    assert_eq!(runner.0.messages.offsets, vec![0, 1, 2], "no gap where the refused rows would have gone");
}

#[tokio::test]
async fn partitions_beyond_the_topic_are_refused_without_failing_others() {
    let (queue, mut committer) = channel(settings(0), Arc::new(|| {}), Watermarks::default(), TopicCache::default());
    let mut runner = runner_with_topic(1);
    let beyond = PartitionAppend { topic: Topic { partitions: 1, ..resolved("t") }, ..append("t", 1, 1) };
    let handles = submit_all(&queue, vec![vec![beyond, append("t", 0, 1)]]).await;
    committer.poll(&mut runner);
    let results = handles.into_iter().next().unwrap().await.unwrap();
    assert_eq!(results, vec![Err(ResponseError::UnknownTopicOrPartition), Ok(0)]);
}

#[tokio::test]
async fn waits_for_the_flush_interval_between_flushes() {
    // An interval no busy test machine outlasts between the two polls.
    let (queue, mut committer) = channel(settings(5_000), Arc::new(|| {}), Watermarks::default(), TopicCache::default());
    let mut runner = runner_with_topic(1);
    let first = submit_all(&queue, vec![vec![append("t", 0, 1)]]).await;
    assert_eq!(committer.poll(&mut runner), None, "the first flush is immediate");
    first.into_iter().next().unwrap().await.unwrap();
    let _second = submit_all(&queue, vec![vec![append("t", 0, 1)]]).await;
    let wait = committer.poll(&mut runner).expect("not due yet");
    assert!(wait <= Duration::from_millis(5_000) && wait > Duration::ZERO);
    assert_eq!(runner.0.messages.len(), 1);
}

#[tokio::test]
async fn a_transaction_end_is_flushed_without_waiting_for_the_interval() {
    let (queue, mut committer) = channel(settings(60_000), Arc::new(|| {}), Watermarks::default(), TopicCache::default());
    let mut runner = runner_with_topic(1);
    let first = submit_all(&queue, vec![vec![append("t", 0, 1)]]).await;
    assert_eq!(committer.poll(&mut runner), None);
    first.into_iter().next().unwrap().await.unwrap();
    let plain = queue.enqueue(vec![append("t", 0, 1)], 1);
    assert!(committer.poll(&mut runner).is_some(), "a plain append waits for the interval");
    let end = queue.enqueue_then(vec![append("t", 0, 1)], 1, Some(Box::new(|_| Ok(()))));
    assert_eq!(committer.poll(&mut runner), None, "the end is flushed at once, with what waited");
    assert_eq!((plain.await.unwrap(), end.await.unwrap()), (vec![Ok(1)], vec![Ok(2)]));
    let later = queue.enqueue(vec![append("t", 0, 1)], 1);
    assert!(committer.poll(&mut runner).is_some(), "the end no longer counts once flushed");
    drop(later);
}

#[tokio::test]
async fn commits_publish_watermarks_and_refresh_catches_up_with_sql_writes() {
    let watermarks = Watermarks::default();
    let settings = CommitSettings { refresh_interval: Duration::ZERO, ..settings(0) };
    let (queue, mut committer) = channel(settings, Arc::new(|| {}), watermarks.clone(), TopicCache::default());
    let mut runner = runner_with_topic(1);
    watermarks.load(&mut runner.0, &[(1, 0)]).unwrap();
    let handles = submit_all(&queue, vec![vec![append("t", 0, 2)]]).await;
    committer.poll(&mut runner);
    handles.into_iter().next().unwrap().await.unwrap();
    assert_eq!(watermarks.get(1, 0).map(|b| b.high), Some(2));

    // A row written by a SQL session, not through the writer.
    runner.0.append(&sql_row(0, 2)).unwrap();
    committer.refresh_if_due(&mut runner);
    assert_eq!(watermarks.get(1, 0).map(|b| b.high), Some(3));
    let handles = submit_all(&queue, vec![vec![append("t", 0, 1)]]).await;
    committer.poll(&mut runner);
    assert_eq!(handles.into_iter().next().unwrap().await.unwrap(), vec![Ok(3)], "no collision with the SQL row");
}

/// Submits one request, flushes, and returns its answer.
async fn flush_one(
    queue: &CommitQueue,
    committer: &mut GroupCommitter,
    runner: &mut DirectRunner<MemoryStorage>,
    appends: Vec<PartitionAppend>,
) -> Vec<AppendResult> {
    let handles = submit_all(queue, vec![appends]).await;
    committer.poll(runner);
    handles.into_iter().next().unwrap().await.unwrap()
}

#[tokio::test]
async fn refresh_keeps_the_counters_of_partitions_written_since_and_forgets_idle_ones() {
    let settings = CommitSettings { refresh_interval: Duration::ZERO, ..settings(0) };
    let (queue, mut committer) = channel(settings, Arc::new(|| {}), Watermarks::default(), TopicCache::default());
    let mut runner = runner_with_topic(2);
    flush_one(&queue, &mut committer, &mut runner, vec![append("t", 0, 1), append("t", 1, 1)]).await;
    assert_eq!(runner.0.next_offset_probes, 2, "first writes read the table");
    committer.refresh_if_due(&mut runner);
    flush_one(&queue, &mut committer, &mut runner, vec![append("t", 0, 1)]).await;
    assert_eq!(runner.0.next_offset_probes, 2, "counters of partitions written since the last refresh stay");
    committer.refresh_if_due(&mut runner);
    assert_eq!(flush_one(&queue, &mut committer, &mut runner, vec![append("t", 0, 1), append("t", 1, 1)]).await, vec![Ok(2), Ok(1)]);
    assert_eq!(runner.0.next_offset_probes, 3, "partition 1 was idle for a whole interval: read again");
}

/// A row that a SQL session appended behind the writer's back.
fn sql_row(partition: i32, offset: i64) -> MessageRows {
    crate::storage::empty_rows(1, partition, &[offset])
}

#[tokio::test]
async fn a_partition_locked_by_sql_holds_back_its_jobs_in_order_and_nothing_else() {
    let (queue, mut committer) = channel(settings(0), Arc::new(|| {}), Watermarks::default(), TopicCache::default());
    let mut runner = runner_with_topic(2);
    runner.0.locked_elsewhere.insert((1, 0));
    // Job 1 waits for partition 0; job 2 (partition 1) goes ahead; job 3 writes both and
    // waits behind job 1, and job 4 (partition 1) waits behind job 3.
    let handles = submit_all(
        &queue,
        vec![vec![append("t", 0, 2)], vec![append("t", 1, 3)], vec![append("t", 1, 1), append("t", 0, 1)], vec![append("t", 1, 1)]],
    )
    .await;
    assert!(committer.poll(&mut runner).is_some(), "held-back jobs ask for another flush");
    assert_eq!(runner.0.messages.offsets, vec![0, 1, 2], "only job 2 was written");
    assert!(committer.poll(&mut runner).is_some());
    assert_eq!(runner.0.messages.len(), 3, "still locked");
    // The SQL transaction committed two rows on partition 0 and released the lock.
    runner.0.append(&sql_row(0, 0)).unwrap();
    runner.0.append(&sql_row(0, 1)).unwrap();
    runner.0.locked_elsewhere.clear();
    assert_eq!(committer.poll(&mut runner), None);
    let mut answers = Vec::new();
    for handle in handles {
        answers.push(handle.await.unwrap());
    }
    assert_eq!(answers, vec![vec![Ok(2)], vec![Ok(0)], vec![Ok(3), Ok(4)], vec![Ok(4)]]);
}

/// The limit is pg_kafka.request_timeout_ms, which is reloadable: set after start
/// (as a reload does), it holds for the next held-back job.
#[tokio::test]
async fn a_job_held_back_longer_than_the_limit_times_out() {
    let (queue, mut committer) = channel(settings(0), Arc::new(|| {}), Watermarks::default(), TopicCache::default());
    committer.set_max_lock_wait(Duration::ZERO);
    let mut runner = runner_with_topic(1);
    runner.0.locked_elsewhere.insert((1, 0));
    let handles = submit_all(&queue, vec![vec![append("t", 0, 1)]]).await;
    assert_eq!(committer.poll(&mut runner), None);
    assert_eq!(handles.into_iter().next().unwrap().await.unwrap(), vec![Err(ResponseError::RequestTimedOut)]);
    assert!(runner.0.messages.is_empty());
}

#[tokio::test]
async fn counters_and_watermarks_follow_what_sql_sessions_produced() {
    let watermarks = Watermarks::default();
    let (queue, mut committer) = channel(settings(0), Arc::new(|| {}), watermarks.clone(), TopicCache::default());
    let ring = Arc::new(parking_lot::Mutex::new(crate::storage::sql_appends::AppendRing::default()));
    let log_ring = ring.clone();
    committer.set_sql_log(Arc::new(move |seen| log_ring.lock().since(seen)));
    let mut runner = runner_with_topic(2);
    let handles = submit_all(&queue, vec![vec![append("t", 0, 2), append("t", 1, 1)]]).await;
    committer.poll(&mut runner);
    assert_eq!(handles.into_iter().next().unwrap().await.unwrap(), vec![Ok(0), Ok(0)]);
    watermarks.load(&mut runner.0, &[(1, 0)]).unwrap();
    // A SQL session appends offsets 2 and 3 of partition 0 and records it at commit.
    runner.0.append(&sql_row(0, 2)).unwrap();
    runner.0.append(&sql_row(0, 3)).unwrap();
    ring.lock().push(&[(1, 0)]);
    let changed = watermarks.changed();
    tokio::pin!(changed);
    changed.as_mut().enable();
    committer.catch_up_with_sql(&mut runner);
    tokio::time::timeout(Duration::from_secs(1), changed).await.expect("long polls woken");
    assert_eq!(watermarks.get(1, 0).map(|b| b.high), Some(4));
    let handles = submit_all(&queue, vec![vec![append("t", 0, 1), append("t", 1, 1)]]).await;
    committer.poll(&mut runner);
    assert_eq!(handles.into_iter().next().unwrap().await.unwrap(), vec![Ok(4), Ok(1)], "partition 0 re-read, 1 from memory");
}

#[tokio::test]
async fn one_write_locks_at_most_its_share_of_the_lock_table() {
    let (queue, mut committer) = channel(settings(0), Arc::new(|| {}), Watermarks::default(), TopicCache::default());
    let mut runner = runner_with_topic(1100);
    let wide = |partition| PartitionAppend { topic: Topic { partitions: 1100, ..resolved("t") }, ..append("t", partition, 1) };
    let handles = submit_all(&queue, (0..1100).map(|p| vec![wide(p)]).collect()).await;
    assert!(committer.poll(&mut runner).is_some(), "the rest waits for the next flush");
    assert_eq!(runner.0.messages.len(), MAX_PARTITIONS_PER_WRITE);
    assert_eq!(committer.poll(&mut runner), None);
    for handle in handles {
        assert_eq!(handle.await.unwrap(), vec![Ok(0)]);
    }
}

#[tokio::test]
async fn jobs_held_back_do_not_count_as_a_full_batch() {
    let (queue, mut committer) = channel(settings(50), Arc::new(|| {}), Watermarks::default(), TopicCache::default());
    let mut runner = runner_with_topic(1);
    runner.0.locked_elsewhere.insert((1, 0));
    let big = queue.clone();
    let handle = tokio::spawn(async move { big.submit(vec![append("t", 0, 1)], 4 << 20).await.unwrap() });
    while queue.jobs.is_empty() {
        tokio::task::yield_now().await;
    }
    assert_eq!(committer.poll(&mut runner), Some(Duration::from_millis(50)), "tried once, held back");
    assert_eq!(queue.queued(), (0, 0));
    // Not retried at once as if 4 MiB were waiting: the next try is the flush interval.
    let next = committer.poll(&mut runner).expect("still waiting");
    assert!(next < Duration::from_millis(50), "{next:?}");
    runner.0.locked_elsewhere.clear();
    tokio::time::sleep(next).await;
    assert_eq!(committer.poll(&mut runner), None);
    assert_eq!(handle.await.unwrap(), vec![Ok(0)]);
}

#[tokio::test]
async fn a_standbys_refresh_follows_the_replayed_transactions() {
    use crate::storage::transactions::{OpenTxn, TxnLog, TxnLogChanges};
    let watermarks = Watermarks::default();
    let settings = CommitSettings { refresh_interval: Duration::ZERO, follow_replay: true, ..settings(0) };
    let (_queue, mut committer) = channel(settings, Arc::new(|| {}), watermarks.clone(), TopicCache::default());
    let log = TxnLog::default();
    committer.set_txn_log(log.clone());
    let mut runner = runner_with_topic(1);
    watermarks.load(&mut runner.0, &[(1, 0)]).unwrap();
    // The primary's writer stored a transaction open from offset 0, then three rows.
    let begun = TxnLogChanges { begun: vec![OpenTxn { partition: (1, 0), producer_id: 7, first_offset: 0 }], ..TxnLogChanges::default() };
    runner.0.save_txn_log(&begun).unwrap();
    runner.0.append(&crate::storage::empty_rows(1, 0, &[0, 1, 2])).unwrap();
    assert!(!log.is_loaded());
    committer.refresh_if_due(&mut runner);
    assert_eq!(watermarks.get(1, 0).map(|b| b.high), Some(3), "replayed rows are readable");
    assert!(log.is_loaded());
    assert_eq!(log.stable_offset((1, 0), 3), 0, "the open transaction holds the stable offset back");
    // Its marker is replayed: the transaction ended (committed), the stable offset follows.
    let ended = TxnLogChanges { ended: vec![((1, 0), 7)], ..TxnLogChanges::default() };
    runner.0.save_txn_log(&ended).unwrap();
    runner.0.append(&crate::storage::empty_rows(1, 0, &[3])).unwrap();
    committer.refresh_if_due(&mut runner);
    assert_eq!(log.stable_offset((1, 0), 4), 4);
}

/// What the standbys have confirmed, as a test sets it: each commit ends one position
/// further on.
#[derive(Clone, Default)]
struct Standbys {
    commits: Arc<std::sync::atomic::AtomicU64>,
    confirmed: Arc<parking_lot::Mutex<Option<u64>>>,
}

impl Standbys {
    fn confirm(&self, position: Option<u64>) {
        *self.confirmed.lock() = position;
    }
}

impl ReplicationProgress for Standbys {
    fn last_commit_end(&mut self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }

    fn confirmed(&self) -> Option<u64> {
        *self.confirmed.lock()
    }
}

/// A committer whose commits, one standby in sync, wait for what `Standbys` confirms.
fn with_a_standby(watermarks: Watermarks) -> (CommitQueue, GroupCommitter, DirectRunner<MemoryStorage>, Standbys) {
    let (queue, mut committer) = channel(settings(0), Arc::new(|| {}), watermarks, TopicCache::default());
    let mut runner = runner_with_topic(2);
    runner.0.in_sync = Some(vec!["node2".into()]);
    let standbys = Standbys::default();
    standbys.confirm(Some(0));
    committer.set_replication_progress(Box::new(standbys.clone()));
    (queue, committer, runner, standbys)
}

/// Whether an answer has not come yet (polled once, nobody woken).
fn is_pending<F: std::future::Future + Unpin>(answer: &mut F) -> bool {
    let mut context = std::task::Context::from_waker(std::task::Waker::noop());
    std::pin::Pin::new(answer).poll(&mut context).is_pending()
}

/// Polls once, as the worker's turn does, with the next commit ending one position on.
fn turn(committer: &mut GroupCommitter, runner: &mut DirectRunner<MemoryStorage>, standbys: &Standbys) -> Option<Duration> {
    standbys.commits.fetch_add(1, Ordering::Relaxed);
    committer.poll(runner)
}

/// With a standby in sync, acks=1 and acks=all Produce requests go in group commits of
/// their own, in the order they came: the acks=1 ones answered at their commit, the
/// acks=all ones once the standby confirmed theirs (and held to `min.insync.replicas`).
#[tokio::test]
async fn acks_one_and_acks_all_never_share_a_group_commit() {
    let (queue, mut committer, mut runner, standbys) = with_a_standby(Watermarks::default());
    let first = queue.enqueue_produce(vec![append("t", 0, 1)], 10, false);
    let second = queue.enqueue_produce(vec![append("t", 0, 1)], 10, false);
    let mut third = Box::pin(queue.enqueue_produce(vec![append("t", 0, 1)], 10, true));
    let fourth = queue.enqueue_produce(vec![append("t", 0, 1)], 10, false);
    assert_eq!(turn(&mut committer, &mut runner, &standbys), Some(Duration::ZERO));
    assert_eq!(turn(&mut committer, &mut runner, &standbys), Some(Duration::ZERO), "the acks=all job, committed at 2");
    assert_eq!(turn(&mut committer, &mut runner, &standbys), Some(STANDBY_POLL_INTERVAL), "its answer waits");
    assert_eq!(runner.0.local_commits, 3, "every commit is local");
    let offsets = [first.await.unwrap(), second.await.unwrap(), fourth.await.unwrap()];
    assert_eq!(offsets, [vec![Ok(0)], vec![Ok(1)], vec![Ok(3)]], "in the order they came");
    assert!(is_pending(&mut third), "the standby has not confirmed it");
    standbys.confirm(Some(2));
    assert_eq!(turn(&mut committer, &mut runner, &standbys), None);
    assert_eq!(third.await.unwrap(), vec![Ok(2)]);
}

/// While the standby has not confirmed a group, the writer goes on with the next ones, and
/// Fetch sees nothing past the first unconfirmed offset of each partition (rows committed
/// without waiting behind it included); confirmations release the groups in order.
#[tokio::test]
async fn the_writer_goes_on_while_answers_wait_and_the_high_watermark_waits_with_them() {
    let watermarks = Watermarks::default();
    let (queue, mut committer, mut runner, standbys) = with_a_standby(watermarks.clone());
    watermarks.load(&mut runner.0, &[(1, 0), (1, 1)]).unwrap();
    let mut first = Box::pin(queue.enqueue_produce(vec![append("t", 0, 2)], 10, true));
    turn(&mut committer, &mut runner, &standbys); // commit 1
    let mut second = Box::pin(queue.enqueue_produce(vec![append("t", 0, 1), append("t", 1, 1)], 10, true));
    turn(&mut committer, &mut runner, &standbys); // commit 2
    let acks_one = queue.enqueue_produce(vec![append("t", 1, 3)], 10, false);
    turn(&mut committer, &mut runner, &standbys); // commit 3, answered at once
    assert_eq!(acks_one.await.unwrap(), vec![Ok(1)]);
    assert_eq!(runner.0.messages.len(), 7, "everything is written");
    let high = |partition| watermarks.get(1, partition).unwrap().high;
    assert_eq!((high(0), high(1)), (0, 0), "held at the first unconfirmed offsets");
    standbys.confirm(Some(1));
    turn(&mut committer, &mut runner, &standbys);
    assert_eq!(first.as_mut().await.unwrap(), vec![Ok(0)]);
    assert!(is_pending(&mut second));
    assert_eq!((high(0), high(1)), (2, 0), "the second group still holds both");
    standbys.confirm(Some(2));
    assert_eq!(turn(&mut committer, &mut runner, &standbys), None, "nothing waits any more");
    assert_eq!(second.await.unwrap(), vec![Ok(2), Ok(0)]);
    assert_eq!((high(0), high(1)), (3, 4), "the acks=1 rows behind it are readable with it");
}

/// No more than MAX_WAITING_GROUPS wait: the writer then writes nothing until one is released.
#[tokio::test]
async fn a_standby_that_falls_far_behind_holds_the_writer() {
    use super::super::standby_acks::MAX_WAITING_GROUPS;
    let (queue, mut committer, mut runner, standbys) = with_a_standby(Watermarks::default());
    let mut answers = Vec::new();
    for _ in 0..=MAX_WAITING_GROUPS {
        answers.push(queue.enqueue_produce(vec![append("t", 0, 1)], 10, true));
        turn(&mut committer, &mut runner, &standbys);
    }
    assert_eq!(runner.0.messages.len(), MAX_WAITING_GROUPS, "the last job waits to be written");
    standbys.confirm(Some(1));
    turn(&mut committer, &mut runner, &standbys);
    assert_eq!(runner.0.messages.len(), MAX_WAITING_GROUPS + 1);
    standbys.confirm(Some(u64::MAX));
    turn(&mut committer, &mut runner, &standbys);
    for (offset, answer) in answers.into_iter().enumerate() {
        assert_eq!(answer.await.unwrap(), vec![Ok(offset as i64)]);
    }
}

/// Shutdown with answers waiting: REQUEST_TIMED_OUT (written, not confirmed).
#[tokio::test]
async fn answers_still_waiting_at_shutdown_time_out() {
    let (queue, mut committer, mut runner, standbys) = with_a_standby(Watermarks::default());
    let waiting = queue.enqueue_produce(vec![append("t", 0, 1)], 10, true);
    turn(&mut committer, &mut runner, &standbys);
    committer.fail_pending();
    assert_eq!(waiting.await.unwrap(), vec![Err(ResponseError::RequestTimedOut)]);
    assert!(committer.standby_acks.is_empty());
}

/// Synchronous replication with no standby in sync: the commit is local (it never waits
/// for a standby that is gone), and an acks=all append to a topic that wants two copies is
/// refused NOT_ENOUGH_REPLICAS while the rest of the group is written.
#[tokio::test]
async fn with_no_standby_in_sync_commits_are_local_and_too_few_copies_are_refused() {
    let (queue, mut committer) = channel(settings(0), Arc::new(|| {}), Watermarks::default(), TopicCache::default());
    let mut runner = runner_with_topic(2);
    runner.0.in_sync = Some(vec![]);
    let mut wants_two = append("t", 0, 2);
    wants_two.topic.settings = crate::config::topic::TopicSettings::from_stored(&[("min.insync.replicas".into(), "2".into())]);
    let acks_all = queue.enqueue_produce(vec![wants_two.clone(), append("t", 1, 1)], 10, true);
    let acks_one = queue.enqueue_produce(vec![wants_two], 10, false);
    assert_eq!(committer.poll(&mut runner), Some(Duration::ZERO), "the acks=1 job is next, at once");
    assert_eq!(committer.poll(&mut runner), None);
    assert_eq!(acks_all.await.unwrap(), vec![Err(ResponseError::NotEnoughReplicas), Ok(0)]);
    assert_eq!(acks_one.await.unwrap(), vec![Ok(0)], "acks=1 is not held to min.insync.replicas");
    assert_eq!(runner.0.local_commits, 2, "two group commits (acks=all, then acks=1), both local");
    assert_eq!(runner.0.messages.len(), 3, "nothing of the refused append was written");
}

/// A group waiting for a standby that is let go without it (Patroni cleared
/// `synchronous_standby_names`): written, and its acks=all appends to a topic that wants
/// two copies are answered NOT_ENOUGH_REPLICAS_AFTER_APPEND; the others succeed.
#[tokio::test]
async fn a_commit_let_go_without_its_standby_is_answered_not_enough_replicas_after_append() {
    let (queue, mut committer, mut runner, standbys) = with_a_standby(Watermarks::default());
    let mut wants_two = append("t", 0, 2);
    wants_two.topic.settings = crate::config::topic::TopicSettings::from_stored(&[("min.insync.replicas".into(), "2".into())]);
    let acks_all = queue.enqueue_produce(vec![wants_two, append("t", 1, 1)], 10, true);
    assert_eq!(turn(&mut committer, &mut runner, &standbys), Some(STANDBY_POLL_INTERVAL));
    runner.0.in_sync = Some(Vec::new());
    standbys.confirm(None);
    assert_eq!(turn(&mut committer, &mut runner, &standbys), None);
    assert_eq!(acks_all.await.unwrap(), vec![Err(ResponseError::NotEnoughReplicasAfterAppend), Ok(0)]);
    assert_eq!(runner.0.messages.len(), 3, "everything was written");
}

/// A group waiting for a standby that leaves while synchronous replication stays on: the
/// next acks=all group counts one copy, and the waiting one is let go with what it has.
#[tokio::test]
async fn a_group_waiting_for_a_standby_that_left_is_let_go_when_the_next_group_counts_fewer() {
    let (queue, mut committer, mut runner, standbys) = with_a_standby(Watermarks::default());
    let mut wants_two = append("t", 0, 1);
    wants_two.topic.settings = crate::config::topic::TopicSettings::from_stored(&[("min.insync.replicas".into(), "2".into())]);
    let first = queue.enqueue_produce(vec![wants_two], 10, true);
    turn(&mut committer, &mut runner, &standbys);
    runner.0.in_sync = Some(Vec::new());
    let second = queue.enqueue_produce(vec![append("t", 0, 1)], 10, true);
    turn(&mut committer, &mut runner, &standbys);
    assert_eq!(turn(&mut committer, &mut runner, &standbys), None);
    assert_eq!(first.await.unwrap(), vec![Err(ResponseError::NotEnoughReplicasAfterAppend)]);
    assert_eq!(second.await.unwrap(), vec![Ok(1)], "one copy was all it could have");
}
