//! Transactions through the handlers, on in-memory storage with the real writer.

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::fetch_response::PartitionData;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::txn_offset_commit_request::{TxnOffsetCommitRequestPartition, TxnOffsetCommitRequestTopic};
use kafka_protocol::messages::{
    AddOffsetsToTxnRequest, AddOffsetsToTxnResponse, AddPartitionsToTxnRequest, AddPartitionsToTxnResponse, ApiKey, EndTxnRequest,
    EndTxnResponse, FetchRequest, FetchResponse, GroupId, InitProducerIdRequest, InitProducerIdResponse, ProduceRequest, ProduceResponse,
    ProducerId, TopicName, TransactionalId, TxnOffsetCommitRequest, TxnOffsetCommitResponse,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use crate::broker::testing::{broker_on, round_trip, with_storage};
use crate::broker::Broker;
use crate::config::Config;
use crate::protocol::records::{decode_batches, encode_producer_batch, seal_crc, Batch, Record, CRC_START, TRANSACTIONAL};
use crate::storage::memory::MemoryStorage;
use crate::storage::transactions::{Durability, OpenTxn, TxnLogChanges, TxnRecord, TxnState};
use crate::storage::{Storage, StorageLayout};

const TXN: &str = "tx-1";

fn name(s: &'static str) -> StrBytes {
    StrBytes::from_static_str(s)
}

/// A broker with topic "t" (batch layout, 2 partitions) and "rows" (row layout).
fn broker() -> Broker {
    let mut storage = MemoryStorage::default();
    storage.create_topic_as("t", 2, StorageLayout::Batches).unwrap();
    storage.create_topic_as("rows", 1, StorageLayout::Rows).unwrap();
    broker_on(storage, Config::default())
}

async fn init(broker: &Broker, timeout_ms: i32) -> (i64, i16) {
    let request =
        InitProducerIdRequest::default().with_transactional_id(Some(TransactionalId(name(TXN)))).with_transaction_timeout_ms(timeout_ms);
    let r: InitProducerIdResponse = round_trip(broker, ApiKey::InitProducerId, 4, &request).await;
    assert_eq!(r.error_code, 0);
    (r.producer_id.0, r.producer_epoch)
}

async fn add_partitions(broker: &Broker, (id, epoch): (i64, i16), topic: &'static str, partitions: Vec<i32>) -> Vec<i16> {
    let request = AddPartitionsToTxnRequest::default()
        .with_v3_and_below_transactional_id(TransactionalId(name(TXN)))
        .with_v3_and_below_producer_id(ProducerId(id))
        .with_v3_and_below_producer_epoch(epoch)
        .with_v3_and_below_topics(vec![AddPartitionsToTxnTopic::default().with_name(TopicName(name(topic))).with_partitions(partitions)]);
    let r: AddPartitionsToTxnResponse = round_trip(broker, ApiKey::AddPartitionsToTxn, 3, &request).await;
    r.results_by_topic_v3_and_below[0].results_by_partition.iter().map(|p| p.partition_error_code).collect()
}

/// A transactional batch of `n` records with values `v0..`, sequence from `sequence`.
fn transactional_batch((id, epoch): (i64, i16), sequence: i32, n: usize) -> Bytes {
    let records: Vec<Record> = (0..n)
        .map(|i| Record {
            offset_delta: i as i32,
            timestamp: 1_700_000_000_000,
            key: Some(Bytes::from(format!("k{i}"))),
            value: Some(Bytes::from(format!("v{i}"))),
            headers: None,
        })
        .collect();
    let mut bytes = BytesMut::from(&encode_producer_batch(0, &records, id, epoch, sequence)[..]);
    bytes[CRC_START + 1] |= TRANSACTIONAL as u8;
    seal_crc(&mut bytes);
    bytes.freeze()
}

async fn produce(broker: &Broker, topic: &'static str, partition: i32, batch: Bytes) -> (i16, i64) {
    produce_at(broker, 9, topic, partition, batch).await
}

/// Produce at `version` (12+: Transactions V2, the partition joins the transaction).
async fn produce_at(broker: &Broker, version: i16, topic: &'static str, partition: i32, batch: Bytes) -> (i16, i64) {
    let data = PartitionProduceData::default().with_index(partition).with_records(Some(batch));
    let request = ProduceRequest::default()
        .with_transactional_id(Some(TransactionalId(name(TXN))))
        .with_acks(-1)
        .with_topic_data(vec![TopicProduceData::default().with_name(TopicName(name(topic))).with_partition_data(vec![data])]);
    let r: ProduceResponse = round_trip(broker, ApiKey::Produce, version, &request).await;
    let p = &r.responses[0].partition_responses[0];
    (p.error_code, p.base_offset)
}

async fn end(broker: &Broker, producer: (i64, i16), committed: bool) -> i16 {
    end_at(broker, 3, producer, committed).await.0
}

/// EndTxn at `version`: the error code and the producer id and epoch to go on with (v5+).
async fn end_at(broker: &Broker, version: i16, (id, epoch): (i64, i16), committed: bool) -> (i16, (i64, i16)) {
    let request = EndTxnRequest::default()
        .with_transactional_id(TransactionalId(name(TXN)))
        .with_producer_id(ProducerId(id))
        .with_producer_epoch(epoch)
        .with_committed(committed);
    let r: EndTxnResponse = round_trip(broker, ApiKey::EndTxn, version, &request).await;
    (r.error_code, (r.producer_id.0, r.producer_epoch))
}

/// Partition `partition` of "t" fetched from 0 at `isolation`: (high watermark, last
/// stable offset, aborted (producer, first offset), offsets of data records, offsets of
/// control batches).
async fn fetch(broker: &Broker, partition: i32, isolation: i8) -> (i64, i64, Vec<(i64, i64)>, Vec<i64>, Vec<i64>) {
    fetch_from(broker, "t", partition, isolation).await
}

/// Partition `partition` of `topic` fetched from 0 at `isolation`, as the response has it.
async fn fetched(broker: &Broker, topic: &'static str, partition: i32, isolation: i8) -> PartitionData {
    let p = FetchPartition::default().with_partition(partition).with_fetch_offset(0).with_partition_max_bytes(1 << 20);
    let topic = FetchTopic::default().with_topic(TopicName(name(topic))).with_partitions(vec![p]);
    let request = FetchRequest::default()
        .with_max_wait_ms(0)
        .with_max_bytes(1 << 20)
        .with_isolation_level(isolation)
        .with_session_epoch(-1)
        .with_topics(vec![topic]);
    let mut r: FetchResponse = round_trip(broker, ApiKey::Fetch, 12, &request).await;
    let data = r.responses.swap_remove(0).partitions.swap_remove(0);
    assert_eq!(data.error_code, 0);
    data
}

/// The record batches of a [`fetched`] partition.
fn batches_of(data: &PartitionData) -> Vec<Batch> {
    decode_batches(data.records.clone().unwrap_or_default(), 1 << 20).unwrap()
}

/// [`fetch`] of a partition of `topic`.
async fn fetch_from(
    broker: &Broker,
    topic: &'static str,
    partition: i32,
    isolation: i8,
) -> (i64, i64, Vec<(i64, i64)>, Vec<i64>, Vec<i64>) {
    let data = fetched(broker, topic, partition, isolation).await;
    let aborted = data.aborted_transactions.iter().flatten().map(|a| (a.producer_id.0, a.first_offset)).collect();
    let batches = batches_of(&data);
    let offsets = |control: bool| -> Vec<i64> {
        batches
            .iter()
            .filter(|b| b.is_control() == control)
            .flat_map(|b| b.records.iter().map(move |r| b.base_offset + i64::from(r.offset_delta)))
            .collect()
    };
    (data.high_watermark, data.last_stable_offset, aborted, offsets(false), offsets(true))
}

#[tokio::test]
async fn read_committed_sees_a_transaction_after_its_commit_and_never_an_aborted_ones_records() {
    committed_and_aborted_transactions_read_as_in_kafka("t").await;
}

#[tokio::test]
async fn row_layout_partitions_take_part_in_transactions_as_batch_layout_ones_do() {
    let (broker, producer) = committed_and_aborted_transactions_read_as_in_kafka("rows").await;
    // Fetched as Kafka stores them: each transaction's records a transactional batch of its
    // producer, each marker a control batch; the rows keep the producer.
    let batches = batches_of(&fetched(&broker, "rows", 0, 0).await);
    let shape: Vec<(i64, usize, bool, bool, i64)> =
        batches.iter().map(|b| (b.base_offset, b.records.len(), b.is_transactional(), b.is_control(), b.producer_id)).collect();
    let p = producer.0;
    assert_eq!(shape, vec![(0, 3, true, false, p), (3, 1, true, true, p), (4, 2, true, false, p), (6, 1, true, true, p)]);
}

/// A transaction committed, then one aborted, on partition 0 of `topic`, fetched at both
/// isolation levels; the broker and the producer.
async fn committed_and_aborted_transactions_read_as_in_kafka(topic: &'static str) -> (Broker, (i64, i16)) {
    let broker = broker();
    let producer = init(&broker, 60_000).await;
    assert_eq!(add_partitions(&broker, producer, topic, vec![0]).await, vec![0]);
    assert_eq!(produce(&broker, topic, 0, transactional_batch(producer, 0, 3)).await, (0, 0));
    // Open: read_uncommitted sees the records, read_committed stops at the stable offset 0.
    assert_eq!(fetch_from(&broker, topic, 0, 0).await, (3, 0, vec![], vec![0, 1, 2], vec![]));
    assert_eq!(fetch_from(&broker, topic, 0, 1).await, (3, 0, vec![], vec![], vec![]));
    assert_eq!(end(&broker, producer, true).await, 0);
    assert_eq!(fetch_from(&broker, topic, 0, 1).await, (4, 4, vec![], vec![0, 1, 2], vec![3]), "the commit marker at offset 3");
    assert_eq!(end(&broker, producer, true).await, 0, "a retried EndTxn succeeds");

    assert_eq!(add_partitions(&broker, producer, topic, vec![0]).await, vec![0]);
    assert_eq!(produce(&broker, topic, 0, transactional_batch(producer, 3, 2)).await, (0, 4));
    assert_eq!(end(&broker, producer, false).await, 0);
    let (high, stable, aborted, records, markers) = fetch_from(&broker, topic, 0, 1).await;
    assert_eq!((high, stable, markers), (7, 7, vec![3, 6]));
    assert_eq!(aborted, vec![(producer.0, 4)], "the client skips the producer's records from offset 4");
    assert_eq!(records, vec![0, 1, 2, 4, 5], "aborted records stay in the log, as in Kafka");
    assert_eq!(end(&broker, producer, true).await, ResponseError::InvalidTxnState.code(), "nothing open to commit");
    (broker, producer)
}

#[tokio::test]
async fn a_newer_producer_of_the_id_fences_the_older_and_aborts_its_transaction() {
    let broker = broker();
    let old = init(&broker, 60_000).await;
    assert_eq!(add_partitions(&broker, old, "t", vec![1]).await, vec![0]);
    assert_eq!(produce(&broker, "t", 1, transactional_batch(old, 0, 2)).await, (0, 0));
    let new = init(&broker, 60_000).await;
    assert_eq!((new.0, new.1), (old.0, old.1 + 2), "one bump for the abort, one for the new producer");
    assert_eq!(fetch(&broker, 1, 1).await, (3, 3, vec![(old.0, 0)], vec![0, 1], vec![2]));
    assert_eq!(add_partitions(&broker, old, "t", vec![1]).await, vec![ResponseError::ProducerFenced.code()]);
    assert_eq!(produce(&broker, "t", 1, transactional_batch(old, 2, 1)).await.0, ResponseError::InvalidProducerEpoch.code());
    assert_eq!(end(&broker, old, true).await, ResponseError::ProducerFenced.code());
    // Without AddPartitionsToTxn a transactional batch is refused.
    assert_eq!(produce(&broker, "t", 0, transactional_batch(new, 0, 1)).await.0, ResponseError::InvalidTxnState.code());
}

#[tokio::test]
async fn unknown_partitions_are_refused_whole() {
    let broker = broker();
    let producer = init(&broker, 60_000).await;
    let not_attempted = ResponseError::OperationNotAttempted.code();
    let unknown = ResponseError::UnknownTopicOrPartition.code();
    assert_eq!(add_partitions(&broker, producer, "t", vec![0, 7]).await, vec![not_attempted, unknown]);
}

#[tokio::test]
async fn offsets_committed_in_a_transaction_count_only_once_it_commits() {
    let broker = broker();
    let producer = init(&broker, 60_000).await;
    let commit_offset = |offset: i64| txn_offset_commit(producer, offset);
    let add_offsets = AddOffsetsToTxnRequest::default()
        .with_transactional_id(TransactionalId(name(TXN)))
        .with_producer_id(ProducerId(producer.0))
        .with_producer_epoch(producer.1)
        .with_group_id(GroupId(name("g")));
    let r: TxnOffsetCommitResponse = round_trip(&broker, ApiKey::TxnOffsetCommit, 3, &commit_offset(5)).await;
    assert_eq!(r.topics[0].partitions[0].error_code, ResponseError::InvalidTxnState.code(), "the group was not added");
    for (offset, commit) in [(5, false), (9, true)] {
        let r: AddOffsetsToTxnResponse = round_trip(&broker, ApiKey::AddOffsetsToTxn, 3, &add_offsets).await;
        assert_eq!(r.error_code, 0);
        let r: TxnOffsetCommitResponse = round_trip(&broker, ApiKey::TxnOffsetCommit, 3, &commit_offset(offset)).await;
        assert_eq!(r.topics[0].partitions[0].error_code, 0);
        assert_eq!(committed(&broker).await, Vec::<i64>::new());
        assert_eq!(end(&broker, producer, commit).await, 0);
    }
    assert_eq!(committed(&broker).await, vec![9], "the aborted transaction's offset never counted");
}

/// TxnOffsetCommit of offset `offset` of "t"/0 for group "g".
fn txn_offset_commit((id, epoch): (i64, i16), offset: i64) -> TxnOffsetCommitRequest {
    let partition = TxnOffsetCommitRequestPartition::default().with_partition_index(0).with_committed_offset(offset);
    TxnOffsetCommitRequest::default()
        .with_transactional_id(TransactionalId(name(TXN)))
        .with_group_id(GroupId(name("g")))
        .with_producer_id(ProducerId(id))
        .with_producer_epoch(epoch)
        .with_generation_id(-1)
        .with_topics(vec![TxnOffsetCommitRequestTopic::default().with_name(TopicName(name("t"))).with_partitions(vec![partition])])
}

/// Group "g"'s committed offsets.
async fn committed(broker: &Broker) -> Vec<i64> {
    with_storage(broker, |s| s.committed_offsets("g").unwrap().iter().map(|c| c.offset).collect::<Vec<_>>()).await
}

#[tokio::test]
async fn transactions_v2_add_partitions_and_groups_implicitly_and_bump_the_epoch_at_every_end() {
    let broker = broker();
    let first = init(&broker, 60_000).await;
    // Produce v12+ adds the partition itself; older versions still need AddPartitionsToTxn.
    assert_eq!(produce_at(&broker, 11, "t", 0, transactional_batch(first, 0, 1)).await.0, ResponseError::InvalidTxnState.code());
    assert_eq!(produce_at(&broker, 12, "t", 0, transactional_batch(first, 0, 2)).await, (0, 0));
    let r: TxnOffsetCommitResponse = round_trip(&broker, ApiKey::TxnOffsetCommit, 5, &txn_offset_commit(first, 2)).await;
    assert_eq!(r.topics[0].partitions[0].error_code, 0, "v5 adds the group itself");
    assert_eq!(fetch(&broker, 0, 1).await.1, 0, "open: the stable offset holds");
    let (code, second) = end_at(&broker, 5, first, true).await;
    assert_eq!((code, second), (0, (first.0, first.1 + 1)), "EndTxn v5 answers the next epoch");
    assert_eq!(committed(&broker).await, vec![2]);
    assert_eq!(fetch(&broker, 0, 1).await, (3, 3, vec![], vec![0, 1], vec![2]));
    assert_eq!(end_at(&broker, 5, first, true).await, (0, second), "a retried end succeeds with the epoch it gave");
    assert_eq!(end_at(&broker, 5, first, false).await.0, ResponseError::InvalidTxnState.code());

    // The ended epoch is fenced by its markers; the next one starts its sequences over.
    assert_eq!(produce_at(&broker, 12, "t", 0, transactional_batch(first, 2, 1)).await.0, ResponseError::InvalidProducerEpoch.code());
    assert_eq!(produce_at(&broker, 12, "t", 0, transactional_batch(second, 1, 1)).await.0, ResponseError::OutOfOrderSequenceNumber.code());
    assert_eq!(produce_at(&broker, 12, "t", 0, transactional_batch(second, 0, 1)).await, (0, 3));
    let (code, third) = end_at(&broker, 5, second, false).await;
    assert_eq!((code, third.1), (0, second.1 + 1));
    assert_eq!(fetch(&broker, 0, 1).await.2, vec![(first.0, 3)], "the aborted one");
    assert_eq!(end_at(&broker, 5, second, true).await.0, ResponseError::ProducerFenced.code(), "a commit racing an abort is fenced");

    // An abort with nothing open bumps the epoch (the producer may not know whether its
    // first Produce added a partition); a commit of nothing is refused.
    assert_eq!(end_at(&broker, 5, third, true).await.0, ResponseError::InvalidTxnState.code());
    let (code, fourth) = end_at(&broker, 5, third, false).await;
    assert_eq!((code, fourth.1), (0, third.1 + 1));
    assert_eq!(fetch(&broker, 0, 1).await.4, vec![2, 4], "no marker for a transaction with no partitions");
}

#[tokio::test]
async fn a_spent_epoch_moves_the_transactional_id_to_a_new_producer_id() {
    let mut storage = MemoryStorage::default();
    storage.create_topic_as("t", 1, StorageLayout::Batches).unwrap();
    let last_epoch = i16::MAX - 1;
    let record = TxnRecord { producer_epoch: last_epoch, ..super::records::fresh(TXN, 5, 1) };
    storage.save_transaction(&record, Durability::Flushed).unwrap();
    let broker = broker_on(storage, Config::default());
    assert_eq!(produce_at(&broker, 12, "t", 0, transactional_batch((5, last_epoch), 0, 1)).await, (0, 0));
    let (code, (producer_id, epoch)) = end_at(&broker, 5, (5, last_epoch), true).await;
    assert_eq!(code, 0);
    assert!(producer_id != 5 && epoch == 0, "a new producer id at epoch 0, not {producer_id}/{epoch}");
    let (.., markers) = fetch(&broker, 0, 1).await;
    assert_eq!(markers, vec![1], "the marker, at epoch {}", i16::MAX);
    assert_eq!(produce_at(&broker, 12, "t", 0, transactional_batch((producer_id, 0), 0, 1)).await, (0, 2));
    assert_eq!(
        produce_at(&broker, 12, "t", 0, transactional_batch((5, last_epoch), 1, 1)).await.0,
        ResponseError::InvalidProducerIdMapping.code()
    );
}

#[tokio::test]
async fn a_transaction_left_open_by_a_crash_is_aborted_at_start_and_a_timed_out_one_later() {
    let mut storage = MemoryStorage::default();
    let topic = storage.create_topic_as("t", 2, StorageLayout::Batches).unwrap();
    let open = TxnRecord {
        transactional_id: TXN.to_owned(),
        producer_id: 5,
        producer_epoch: 2,
        state: TxnState::Ongoing,
        timeout_ms: 60_000,
        partitions: vec![(topic.id, 0)],
        groups: Vec::new(),
        pending_offsets: Vec::new(),
        started_ms: Some(1),
        updated_ms: 1,
    };
    storage.save_transaction(&open, Durability::Flushed).unwrap();
    let batch = crate::storage::batches::checked(
        &decode_batches(transactional_batch((5, 2), 0, 2), 1 << 20).unwrap()[0],
        transactional_batch((5, 2), 0, 2),
    )
    .unwrap()
    .placed(topic.id, 0, 0);
    storage.append_batches(&[batch]).unwrap();
    let begun = OpenTxn { partition: (topic.id, 0), producer_id: 5, first_offset: 0 };
    storage.save_txn_log(&TxnLogChanges { begun: vec![begun], ..Default::default() }).unwrap();
    let broker = broker_on(storage, Config::default());
    assert_eq!(fetch(&broker, 0, 1).await, (3, 3, vec![(5, 0)], vec![0, 1], vec![2]), "aborted with a marker at start");
    let records = broker.txns().records(&broker).await.unwrap();
    assert_eq!((records[0].state, records[0].producer_epoch), (TxnState::CompleteAbort, 3), "and its producer fenced");

    let producer = init(&broker, 1).await;
    assert_eq!(add_partitions(&broker, producer, "t", vec![1]).await, vec![0]);
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    broker.txns().expire(&broker).await;
    let records = broker.txns().records(&broker).await.unwrap();
    assert_eq!((records[0].state, records[0].producer_epoch), (TxnState::CompleteAbort, producer.1 + 1));
    assert_eq!(end(&broker, producer, true).await, ResponseError::ProducerFenced.code());
}

#[tokio::test]
async fn a_transaction_holds_a_bounded_number_of_groups() {
    use super::MAX_TRANSACTION_GROUPS;
    let broker = broker();
    let producer = init(&broker, 60_000).await;
    for group in 0..MAX_TRANSACTION_GROUPS {
        broker.txns().add_group(&broker, TXN, producer, &format!("g{group}")).await.unwrap();
    }
    let refused = broker.txns().add_group(&broker, TXN, producer, "one-too-many").await;
    assert_eq!(refused, Err(ResponseError::InvalidRequest));
    broker.txns().add_group(&broker, TXN, producer, "g7").await.expect("a group already in it is no more");
    let records = broker.txns().records(&broker).await.unwrap();
    assert_eq!(records[0].groups.len(), MAX_TRANSACTION_GROUPS);
}

#[tokio::test]
async fn ids_idle_past_their_expiration_are_forgotten_and_start_afresh() {
    let mut storage = MemoryStorage::default();
    storage.create_topic_as("t", 1, StorageLayout::Batches).unwrap();
    let broker = broker_on(storage, Config { transactional_id_expiration_ms: 1, ..Config::default() });
    let first = init(&broker, 60_000).await;
    assert_eq!(add_partitions(&broker, first, "t", vec![0]).await, vec![0]);
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    broker.txns().expire(&broker).await;
    assert_eq!(broker.txns().records(&broker).await.unwrap().len(), 1, "an open transaction is never forgotten");
    assert_eq!(end(&broker, first, true).await, 0);
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    broker.txns().expire(&broker).await;
    assert!(broker.txns().records(&broker).await.unwrap().is_empty());
    assert!(with_storage(&broker, |s| s.transactions().unwrap()).await.is_empty(), "its record is deleted");
    assert_eq!(end(&broker, first, true).await, ResponseError::InvalidProducerIdMapping.code());
    let again = init(&broker, 60_000).await;
    assert_ne!(again.0, first.0, "a new producer id, epoch {}", again.1);
}

/// A transactional batch of `producer` at `sequence` on "t"/0 handed to the writer as if
/// it had passed Produce's check before what the test did since; what the writer answers.
async fn reaching_the_writer_late(broker: &Broker, producer: (i64, i16), sequence: i32) -> Vec<crate::writer::group_commit::AppendResult> {
    use crate::storage::batches::checked;
    use crate::writer::group_commit::PartitionAppend;
    use crate::writer::sequences::ProducerBatch;
    let raw = transactional_batch(producer, sequence, 1);
    let batch = checked(&decode_batches(raw.clone(), 1 << 20).unwrap()[0], raw.clone()).unwrap();
    let topic = with_storage(broker, |s| s.topic("t").unwrap().unwrap()).await;
    let sequenced = ProducerBatch { producer_id: producer.0, epoch: producer.1, first_sequence: sequence, last_sequence: sequence };
    let append = PartitionAppend {
        topic,
        topics_generation: broker.topics.generation(),
        partition: 0,
        records: Vec::new(),
        batch: Some(batch),
        batch_bytes: raw.len(),
        producer: Some(sequenced),
        log_append_time: None,
        row_txn: None,
    };
    broker.commit_queue().submit(vec![append], raw.len()).await.unwrap()
}

#[tokio::test]
async fn a_fenced_producers_batch_reaching_the_writer_after_the_abort_marker_is_refused() {
    let broker = broker();
    let old = init(&broker, 60_000).await;
    assert_eq!(add_partitions(&broker, old, "t", vec![0]).await, vec![0]);
    assert_eq!(produce(&broker, "t", 0, transactional_batch(old, 0, 1)).await, (0, 0));
    init(&broker, 60_000).await; // aborts with a marker of the next epoch
    assert_eq!(reaching_the_writer_late(&broker, old, 1).await, vec![Err(ResponseError::InvalidProducerEpoch)]);
    let (high, stable, ..) = fetch(&broker, 0, 1).await;
    assert_eq!((high, stable), (2, 2), "no transaction left open to hold the stable offset");
}

#[tokio::test]
async fn a_v1_batch_reaching_the_writer_after_its_commit_marker_opens_nothing() {
    let broker = broker();
    let producer = init(&broker, 60_000).await;
    assert_eq!(add_partitions(&broker, producer, "t", vec![0]).await, vec![0]);
    assert_eq!(produce(&broker, "t", 0, transactional_batch(producer, 0, 1)).await, (0, 0));
    assert_eq!(end(&broker, producer, true).await, 0);
    // Same epoch (V1 keeps it): only the coordinator knows its transaction is over.
    assert_eq!(reaching_the_writer_late(&broker, producer, 1).await, vec![Err(ResponseError::InvalidTxnState)]);
    let (high, stable, ..) = fetch(&broker, 0, 1).await;
    assert_eq!((high, stable), (2, 2), "no transaction left open to hold the stable offset");
    // Its next transaction, added again, writes on.
    assert_eq!(add_partitions(&broker, producer, "t", vec![0]).await, vec![0]);
    assert_eq!(produce(&broker, "t", 0, transactional_batch(producer, 1, 1)).await, (0, 2));
}

#[tokio::test]
async fn transactions_are_listed_and_described_as_the_kafka_transactions_tool_asks() {
    use kafka_protocol::messages::{
        DescribeTransactionsRequest, DescribeTransactionsResponse, ListTransactionsRequest, ListTransactionsResponse,
    };
    let broker = broker();
    let producer = init(&broker, 60_000).await;
    assert_eq!(add_partitions(&broker, producer, "t", vec![1, 0]).await, vec![0, 0]);
    let list = |states: Vec<&'static str>| ListTransactionsRequest::default().with_state_filters(states.into_iter().map(name).collect());
    let r: ListTransactionsResponse = round_trip(&broker, ApiKey::ListTransactions, 1, &list(vec!["Ongoing", "Bogus"])).await;
    let listed: Vec<(&str, i64, &str)> =
        r.transaction_states.iter().map(|t| (t.transactional_id.as_str(), t.producer_id.0, t.transaction_state.as_str())).collect();
    assert_eq!(listed, vec![(TXN, producer.0, "Ongoing")]);
    assert_eq!(r.unknown_state_filters, vec![name("Bogus")]);
    let r: ListTransactionsResponse = round_trip(&broker, ApiKey::ListTransactions, 0, &list(vec!["Empty"])).await;
    assert!(r.transaction_states.is_empty());
    let ids = vec![TransactionalId(name(TXN)), TransactionalId(name("nope"))];
    let r: DescribeTransactionsResponse =
        round_trip(&broker, ApiKey::DescribeTransactions, 0, &DescribeTransactionsRequest::default().with_transactional_ids(ids)).await;
    let known = &r.transaction_states[0];
    assert_eq!((known.error_code, known.transaction_state.as_str(), known.producer_epoch), (0, "Ongoing", producer.1));
    assert_eq!(known.transaction_timeout_ms, 60_000);
    assert!(known.transaction_start_time_ms > 0);
    assert_eq!(known.topics.iter().map(|t| (t.topic.as_str(), t.partitions.clone())).collect::<Vec<_>>(), vec![("t", vec![0, 1])]);
    assert_eq!(r.transaction_states[1].error_code, ResponseError::TransactionalIdNotFound.code());
}

#[tokio::test]
async fn describe_producers_shows_where_an_open_transaction_began() {
    use kafka_protocol::messages::describe_producers_request::TopicRequest;
    use kafka_protocol::messages::{DescribeProducersRequest, DescribeProducersResponse};
    let broker = broker();
    let producer = init(&broker, 60_000).await;
    let request = DescribeProducersRequest::default()
        .with_topics(vec![TopicRequest::default().with_name(TopicName(name("t"))).with_partition_indexes(vec![0])]);
    let start_offsets = |broker: Broker| {
        let request = request.clone();
        async move {
            let r: DescribeProducersResponse = round_trip(&broker, ApiKey::DescribeProducers, 0, &request).await;
            r.topics[0].partitions[0].active_producers.iter().map(|p| (p.producer_id.0, p.current_txn_start_offset)).collect::<Vec<_>>()
        }
    };
    assert_eq!(add_partitions(&broker, producer, "t", vec![0]).await, vec![0]);
    assert_eq!(produce(&broker, "t", 0, transactional_batch(producer, 0, 2)).await, (0, 0));
    assert_eq!(start_offsets(broker.clone()).await, vec![(producer.0, 0)]);
    assert_eq!(end(&broker, producer, true).await, 0);
    assert_eq!(start_offsets(broker.clone()).await, vec![(producer.0, -1)]);
}
