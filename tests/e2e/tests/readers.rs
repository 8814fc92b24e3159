//! Reader processes: a Fetch is answered while the worker's main thread is stuck in a
//! group commit (its read runs in a reader, not behind the commit); once the readers are
//! gone the main thread reads, with nothing lost and nobody's session ended, and the
//! worker starts new readers.
//! Alone in its own test binary: it stalls the shared writer and ends the readers.

use std::time::{Duration, Instant};

use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ApiKey, FetchResponse, ProduceRequest, ProduceResponse, TopicName};
use kafka_protocol::records::RecordBatchDecoder;
use pg_kafka_e2e::consume::consume;
use pg_kafka_e2e::produce::{produce, Message};
use pg_kafka_e2e::*;
use rdkafka::Offset;

fn message(i: usize) -> Message {
    Message { partition: 0, key: None, value: format!("read {i}").into_bytes(), headers: vec![], timestamp: None, offset: 0 }
}

/// Values of partition 0 of a Fetch response.
fn values(response: &FetchResponse) -> Vec<Vec<u8>> {
    let mut records = response.responses[0].partitions[0].records.clone().unwrap_or_default();
    let mut values = Vec::new();
    while !records.is_empty() {
        let set = RecordBatchDecoder::decode(&mut records).unwrap();
        values.extend(set.records.into_iter().map(|r| r.value.unwrap_or_default().to_vec()));
    }
    values
}

#[test]
fn reads_do_not_wait_behind_a_group_commit_and_readers_that_go_are_replaced() {
    wait_for_readers(2);
    let topic = "e2e-readers";
    create_topic(topic, 1);
    let count = 500;
    assert_eq!(produce(topic, &[], (0..count).map(message)), (count, 0));
    // Topic and bounds are cached now: a Fetch of it needs nothing from the main thread.
    assert_eq!(consume(topic, &[0], Offset::Beginning, count).len(), count);

    let stalled = "e2e-readers-stall";
    create_row_topic(stalled, 1);
    slow_down_inserts(stalled, "e2e_stall", 3);
    let request = ProduceRequest::default().with_acks(-1).with_timeout_ms(30_000).with_topic_data(vec![TopicProduceData::default()
        .with_name(TopicName(stalled.to_owned().into()))
        .with_partition_data(vec![PartitionProduceData::default().with_index(0).with_records(Some(one_record_batch(b"stall")))])]);
    let mut producer = RawClient::connect();
    let produced_at = Instant::now();
    producer.send_message(ApiKey::Produce, 7, &request);
    std::thread::sleep(Duration::from_millis(300)); // the group commit is in its trigger now
    let mut reader = RawClient::connect();
    let asked = Instant::now();
    reader.send_message(ApiKey::Fetch, 12, &fetch_from_start(topic, 0, 1 << 20));
    let fetched: FetchResponse = reader.read_response(ApiKey::Fetch, 12);
    let waited = asked.elapsed();
    let produced: ProduceResponse = producer.read_response(ApiKey::Produce, 7);
    restore_inserts("e2e_stall");
    assert_eq!(produced.responses[0].partition_responses[0].error_code, 0);
    assert!(produced_at.elapsed() >= Duration::from_millis(2500), "the commit was stalled");
    assert_eq!(values(&fetched).len(), count, "the Fetch read every message");
    assert!(waited < Duration::from_millis(1500), "a Fetch waited {waited:?} behind the group commit");

    assert_survives("terminating the reader processes", || {
        psql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE backend_type = 'pg_kafka reader'");
        wait_for_readers(0);
        let again = consume(topic, &[0], Offset::Beginning, count);
        assert_eq!(again.iter().map(|m| m.value.clone()).collect::<Vec<_>>(), (0..count).map(|i| message(i).value).collect::<Vec<_>>());
    });
    // The worker noticed (on the first Fetch that found a reader gone) and starts new ones.
    wait_for_readers(2);
    assert_eq!(consume(topic, &[0], Offset::Beginning, count).len(), count);
}
