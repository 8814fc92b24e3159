//! Produce and Fetch on a topic in the batch layout: what a producer sent is what a
//! consumer gets, byte for byte but the base offset (and the partition leader epoch).

use bytes::Bytes;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{ApiKey, FetchRequest, FetchResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::Compression;
use kafka_protocol::ResponseError;

use super::testing::{broker_in_layout, produce_to_partition_0 as produce, round_trip, with_storage};
use super::Broker;
use crate::protocol::records::{decode_batches, encode_batch, foreign_batch, Record};
use crate::storage::StorageLayout;

/// The records field of partition 0's answer to a Fetch from `offset`, and its log start.
async fn fetch(broker: &Broker, offset: i64, version: i16) -> (Bytes, i64) {
    let partition = FetchPartition::default().with_partition(0).with_fetch_offset(offset).with_partition_max_bytes(1 << 20);
    let topic = FetchTopic::default().with_topic(TopicName(StrBytes::from_static_str("t"))).with_partitions(vec![partition]);
    let request = FetchRequest::default().with_max_wait_ms(0).with_max_bytes(1 << 20).with_session_epoch(-1).with_topics(vec![topic]);
    let response: FetchResponse = round_trip(broker, ApiKey::Fetch, version, &request).await;
    let data = &response.responses[0].partitions[0];
    assert_eq!(data.error_code, 0);
    (data.records.clone().unwrap_or_default(), data.log_start_offset)
}

/// `sent` as stored at `base_offset`: base offset and partition leader epoch (-1) set.
fn placed(sent: &Bytes, base_offset: i64) -> Vec<u8> {
    let mut bytes = sent.to_vec();
    bytes[..8].copy_from_slice(&base_offset.to_be_bytes());
    bytes[12..16].copy_from_slice(&(-1i32).to_be_bytes());
    bytes
}

#[tokio::test]
async fn every_codec_comes_back_as_it_was_sent() {
    let broker = broker_in_layout(1, StorageLayout::Batches);
    let sent: Vec<Bytes> = [Compression::None, Compression::Gzip, Compression::Snappy, Compression::Lz4, Compression::Zstd]
        .into_iter()
        .enumerate()
        .map(|(i, codec)| foreign_batch(codec, 10, i as i64 + 1))
        .collect();
    for (i, batch) in sent.iter().enumerate() {
        assert_eq!(produce(&broker, batch.clone()).await, (0, i as i64 * 10));
    }
    let want: Vec<u8> = sent.iter().enumerate().flat_map(|(i, b)| placed(b, i as i64 * 10)).collect();
    for version in [4, 12] {
        assert_eq!(fetch(&broker, 0, version).await.0, want, "v{version}: every batch verbatim");
    }
    // From inside the third batch: it comes whole (the client skips what it did not ask for).
    assert_eq!(
        fetch(&broker, 25, 12).await.0,
        want[want.len() - placed(&sent[4], 0).len() - placed(&sent[3], 0).len() - placed(&sent[2], 0).len()..]
    );
    let records: Vec<i64> = decode_batches(fetch(&broker, 0, 12).await.0, 1 << 20)
        .unwrap()
        .iter()
        .flat_map(|b| b.records.iter().map(move |r| b.base_offset + i64::from(r.offset_delta)))
        .collect();
    assert_eq!(records, (0..50).collect::<Vec<_>>());
}

#[tokio::test]
async fn batches_kafka_refuses_are_refused() {
    let broker = broker_in_layout(1, StorageLayout::Batches);
    let record = |delta| Record { offset_delta: delta, timestamp: 1, key: None, value: None, headers: None };
    let invalid = ResponseError::InvalidRecord.code();
    assert_eq!(produce(&broker, encode_batch(0, &[])).await, (invalid, -1), "no records");
    assert_eq!(produce(&broker, encode_batch(0, &[record(0), record(3)])).await, (invalid, -1), "offset deltas with a gap");
    assert_eq!(produce(&broker, encode_batch(0, &[record(0), record(1)])).await, (0, 0));
    let stored = with_storage(&broker, |s| s.next_offset(1, 0)).await.unwrap();
    assert_eq!(stored, 2);
}

#[tokio::test]
async fn a_log_start_inside_a_batch_keeps_the_batch() {
    let broker = broker_in_layout(1, StorageLayout::Batches);
    let sent = [foreign_batch(Compression::None, 5, 1), foreign_batch(Compression::Lz4, 5, 2)];
    for batch in &sent {
        produce(&broker, batch.clone()).await;
    }
    with_storage(&broker, |s| s.delete_records_before(1, 0, 7)).await.unwrap();
    let (records, log_start) = fetch(&broker, 7, 12).await;
    assert_eq!(log_start, 7);
    assert_eq!(records, placed(&sent[1], 5), "the batch holding 7, whole");
    let first = with_storage(&broker, |s| s.first_offset(1, 0)).await.unwrap();
    assert_eq!(first, Some(7));
}
