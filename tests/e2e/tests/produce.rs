//! Produce: every acknowledged message is a row, once, with gap-free offsets and intact bytes.

use std::collections::HashMap;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ApiKey, ProduceRequest, ProduceResponse, TopicName};
use kafka_protocol::records::{Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType};
use pg_kafka_e2e::produce::{encoded_headers, produce, Message};
use pg_kafka_e2e::*;

fn message(i: usize, partitions: i32) -> Message {
    Message {
        partition: (i % partitions as usize) as i32,
        key: Some(format!("key-{i}").into_bytes()),
        value: format!("value-{i}-{}", "x".repeat(i % 50)).into_bytes(),
        headers: vec![("n".into(), i.to_string().into_bytes()), ("bin".into(), vec![0, 255, i as u8])],
        ..Message::default()
    }
}

/// Every (key → (value, headers)) stored for a topic, hex-decoded.
fn stored(topic: &str) -> HashMap<Vec<u8>, (Vec<u8>, Vec<u8>)> {
    let hex = |s: &str| (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect::<Vec<u8>>();
    psql(&format!(
        "SELECT encode(key, 'hex'), encode(value, 'hex'), encode(coalesce(headers, ''), 'hex') FROM {}",
        pg_kafka_e2e::messages_of(topic)
    ))
    .lines()
    .map(|line| {
        let f: Vec<&str> = line.split('|').collect();
        (hex(f[0]), (hex(f[1]), hex(f[2])))
    })
    .collect()
}

#[test]
fn hundred_thousand_messages_with_keys_and_headers_land_exactly_once() {
    let topic = "e2e-produce-100k";
    create_topic(topic, 3);
    let (ok, failed) = produce(topic, &[], (0..100_000).map(|i| message(i, 3)));
    assert_eq!((ok, failed), (100_000, 0));
    assert_eq!(assert_gap_free(topic), 100_000);
    let rows = stored(topic);
    assert_eq!(rows.len(), 100_000, "one row per key: nothing duplicated");
    for i in (0..100_000).step_by(997).chain([99_999]) {
        let expected = message(i, 3);
        let (value, headers) = &rows[&expected.key.clone().unwrap()];
        assert_eq!(value, &expected.value, "value of message {i}");
        assert_eq!(headers, &encoded_headers(&expected.headers), "headers of message {i}");
    }
    // Keys land in the partition they were sent to, in send order (the client pipelines
    // many Produce requests on one connection; they must be applied in request order).
    let in_order = psql(&format!(
        "SELECT partition, bool_and(n > previous AND n % 3 = partition) FROM ( \
           SELECT partition, n, lag(n) OVER (PARTITION BY partition ORDER BY \"offset\") AS previous \
           FROM (SELECT partition, \"offset\", substr(convert_from(key, 'UTF8'), 5)::int AS n \
                 FROM kafka.topic_messages m WHERE m.topic = '{topic}') keyed \
         ) ordered WHERE previous IS NOT NULL GROUP BY partition ORDER BY partition"
    ));
    assert_eq!(in_order, "0|t\n1|t\n2|t");
}

#[test]
fn every_compression_codec_is_accepted() {
    for codec in ["gzip", "snappy", "lz4", "zstd"] {
        let topic = format!("e2e-codec-{codec}");
        create_topic(&topic, 1);
        let (ok, failed) = produce(&topic, &[("compression.codec", codec)], (0..2000).map(|i| message(i, 1)));
        assert_eq!((ok, failed), (2000, 0), "{codec}");
        assert_eq!(assert_gap_free(&topic), 2000, "{codec}");
        let rows = stored(&topic);
        assert_eq!(rows[&b"key-1234".to_vec()].0, message(1234, 1).value, "{codec}");
    }
}

#[test]
fn acks_zero_messages_are_written() {
    let topic = "e2e-acks-zero";
    create_topic(topic, 2);
    let (ok, failed) = produce(topic, &[("acks", "0")], (0..5000).map(|i| message(i, 2)));
    assert_eq!((ok, failed), (5000, 0));
    // Nothing acknowledges acks=0 writes: wait for the writer to catch up.
    for _ in 0..100 {
        if partition_summary(topic).iter().map(|p| p.1).sum::<i64>() == 5000 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(assert_gap_free(topic), 5000);
}

#[test]
fn concurrent_producers_to_one_partition_never_share_or_skip_an_offset() {
    let topic = "e2e-concurrent";
    create_topic(topic, 1);
    let producers: Vec<_> = (0..4)
        .map(|p| {
            std::thread::spawn(move || {
                produce(
                    topic,
                    &[("linger.ms", "1")],
                    (0..5000).map(move |i| Message {
                        partition: 0,
                        key: Some(format!("p{p}-{i}").into_bytes()),
                        value: vec![p as u8; 10],
                        ..Message::default()
                    }),
                )
            })
        })
        .collect();
    for producer in producers {
        assert_eq!(producer.join().unwrap(), (5000, 0));
    }
    assert_eq!(assert_gap_free(topic), 20_000);
    assert_eq!(stored(topic).len(), 20_000);
}

#[test]
fn kcat_produces_keyed_messages() {
    let topic = "e2e-kcat-produce";
    create_topic(topic, 1);
    let mut child = std::process::Command::new("kcat")
        .args(["-b", &bootstrap(), "-P", "-t", topic, "-p", "0", "-K", ":", "-z", "snappy"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(b"a:first\nb:second\n").unwrap();
    assert!(child.wait().unwrap().success());
    assert_eq!(assert_gap_free(topic), 2);
    let rows = stored(topic);
    assert_eq!(rows[&b"b".to_vec()].0, b"second");
}

fn raw_batch(values: &[&'static str]) -> BytesMut {
    let records: Vec<Record> = values
        .iter()
        .enumerate()
        .map(|(i, v)| Record {
            transactional: false,
            control: false,
            partition_leader_epoch: 0,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            // The encoder starts a new batch when offset - sequence changes; Produce v3+
            // carries exactly one batch per partition. Base sequence -1: not idempotent.
            sequence: i as i32 - 1,
            timestamp: 1_700_000_000_000,
            key: None,
            value: Some(Bytes::from_static(v.as_bytes())),
            headers: Default::default(),
            delete_horizon: false,
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(&mut buf, &records, &RecordEncodeOptions { version: 2, compression: Compression::None }).unwrap();
    buf
}

fn raw_produce(topic: &str, batch: Bytes) -> (i16, i64) {
    let request = ProduceRequest::default().with_acks(1).with_timeout_ms(5000).with_topic_data(vec![TopicProduceData::default()
        .with_name(TopicName(topic.to_owned().into()))
        .with_partition_data(vec![PartitionProduceData::default().with_index(0).with_records(Some(batch))])]);
    let mut client = RawClient::connect();
    client.send_message(ApiKey::Produce, 7, &request);
    let response: ProduceResponse = client.read_response(ApiKey::Produce, 7);
    let partition = &response.responses[0].partition_responses[0];
    (partition.error_code, partition.base_offset)
}

#[test]
fn a_corrupted_crc_is_rejected_and_nothing_is_written() {
    let topic = "e2e-corrupt";
    create_topic(topic, 1);
    let mut batch = raw_batch(&["good"]);
    let last = batch.len() - 1;
    batch[last] ^= 0x01;
    assert_eq!(raw_produce(topic, batch.freeze()), (2, -1), "CORRUPT_MESSAGE");
    assert!(wait_for_log("CRC mismatch"));
    assert_eq!(raw_produce(topic, raw_batch(&["good"]).freeze()), (0, 0));
    assert_eq!(assert_gap_free(topic), 1);
}

#[test]
fn a_failed_insert_fails_its_producers_and_the_next_batch_works() {
    let topic = "e2e-unwritable";
    create_row_topic(topic, 1);
    assert_eq!(raw_produce(topic, raw_batch(&["before"]).freeze()), (0, 0));
    // Make the table unwritable for this topic only: other tests keep producing meanwhile.
    let topic_id = psql(&format!("SELECT id FROM kafka.topics WHERE name = '{topic}'"));
    psql(&format!(
        "CREATE FUNCTION e2e_refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'e2e: refused'; END $$; \
         CREATE TRIGGER e2e_refuse BEFORE INSERT ON kafka.messages FOR EACH ROW \
         WHEN (NEW.topic_id = {topic_id}) EXECUTE FUNCTION e2e_refuse()"
    ));
    let refused = raw_produce(topic, raw_batch(&["during", "during"]).freeze());
    psql("DROP TRIGGER e2e_refuse ON kafka.messages; DROP FUNCTION e2e_refuse()");
    assert_eq!(refused, (56, -1), "KAFKA_STORAGE_ERROR");
    assert!(wait_for_log("e2e: refused"));
    assert_eq!(raw_produce(topic, raw_batch(&["after"]).freeze()), (0, 1), "no gap left by the failed batch");
    assert_eq!(assert_gap_free(topic), 2);
}
