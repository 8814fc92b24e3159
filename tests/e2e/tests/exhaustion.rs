//! Requests built to exhaust the worker's memory or its storage thread. Each runs inside
//! `assert_survives`: a psql session held across it survives, the worker keeps its pid,
//! other clients are served, and its peak RSS (printed) stays under 1 GB.

use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ApiKey, ProduceRequest, ProduceResponse, RequestHeader, TopicName};
use kafka_protocol::protocol::Encodable;
use pg_kafka_e2e::produce::{produce, Message};
use pg_kafka_e2e::*;

/// One attack at a time: the peak RSS each test prints is then its own (VmHWM only rises).
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Metadata v1 naming `count` topics, each a 2-byte `name` field holding `name_bytes`.
fn metadata_v1(count: usize, name_bytes: [u8; 2]) -> Vec<u8> {
    let mut body = (count as i32).to_be_bytes().to_vec();
    for _ in 0..count {
        body.extend_from_slice(&name_bytes);
    }
    body
}

/// A bystander's Metadata is answered within `limit` while the attack runs.
fn bystander_served_within(limit: Duration) {
    let started = Instant::now();
    let output = kcat(&["-L", "-t", "e2e-exhaustion-bystander"]);
    assert!(output.contains("e2e-exhaustion-bystander"), "{output}");
    assert!(started.elapsed() < limit, "a bystander's Metadata took {:?}", started.elapsed());
}

/// 500,000 null topic names (1 MB) kept the storage thread busy for 22 s, every one a
/// read of all topics; 5,000,000 empty names (10 MB) took 1.5 GB of RSS.
#[test]
fn metadata_with_millions_of_empty_or_null_names() {
    let _serial = serial();
    assert_survives("Metadata with 500,000 null and 5,000,000 empty names", || {
        let mut nulls = RawClient::connect();
        nulls.send(ApiKey::Metadata, 1, &metadata_v1(500_000, [0xff, 0xff]));
        let mut empties = RawClient::connect();
        empties.send(ApiKey::Metadata, 1, &metadata_v1(5_000_000, [0, 0]));
        bystander_served_within(Duration::from_secs(5));
        // Each is answered (one entry for the repeated name) or refused; neither hangs.
        let _ = nulls.read_frame();
        let _ = empties.read_frame();
    });
}

/// A Produce record batch of one record whose value is `size` zero bytes, zstd-compressed.
fn zstd_bomb(size: usize) -> Bytes {
    let mut record = BytesMut::new();
    let varint = zigzag_varint;
    let mut body = BytesMut::new();
    body.put_u8(0); // attributes
    varint(&mut body, 0); // timestamp delta
    varint(&mut body, 0); // offset delta
    varint(&mut body, -1); // null key
    varint(&mut body, size as i64);
    body.put_bytes(0, size);
    varint(&mut body, 0); // no headers
    varint(&mut record, body.len() as i64);
    record.extend_from_slice(&body);
    let compressed = zstd::encode_all(&record[..], 3).unwrap();
    let mut batch = BytesMut::new();
    batch.put_i64(0); // base offset
    batch.put_i32((49 + compressed.len()) as i32); // batch length
    batch.put_i32(0); // partition leader epoch
    batch.put_i8(2); // magic
    batch.put_u32(0); // crc, below
    batch.put_i16(4); // attributes: zstd
    batch.put_i32(0); // last offset delta
    batch.put_i64(1_700_000_000_000);
    batch.put_i64(1_700_000_000_000);
    batch.put_i64(-1); // producer id
    batch.put_i16(-1);
    batch.put_i32(-1);
    batch.put_i32(1); // records
    batch.extend_from_slice(&compressed);
    let crc = crc32c::crc32c(&batch[21..]);
    batch[17..21].copy_from_slice(&crc.to_be_bytes());
    batch.freeze()
}

/// One 24 KB Produce with eight zstd batches each inflating to 90 MiB took 2.5 GB of RSS
/// when the cap was per partition. Now the request as a whole may inflate to
/// pg_kafka.max_frame_bytes: the first batch is stored, the rest are refused.
#[test]
fn a_produce_of_eight_decompression_bombs() {
    let _serial = serial();
    let topic = "e2e-zstd-bombs";
    create_topic(topic, 8);
    let bomb = zstd_bomb(90 << 20);
    assert!(bomb.len() < 64 * 1024, "{} bytes on the wire", bomb.len());
    assert_survives("eight zstd batches of 90 MiB in one Produce", || {
        let partitions = (0..8).map(|p| PartitionProduceData::default().with_index(p).with_records(Some(bomb.clone()))).collect();
        let request = ProduceRequest::default().with_acks(-1).with_timeout_ms(30_000).with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(topic.to_owned().into()))
            .with_partition_data(partitions)]);
        let mut client = RawClient::connect();
        client.send_message(ApiKey::Produce, 7, &request);
        bystander_served_within(Duration::from_secs(10));
        let response: ProduceResponse = client.read_response(ApiKey::Produce, 7);
        let refused = response.responses[0].partition_responses.iter().filter(|p| p.error_code == 10).count();
        assert!(refused >= 7, "batches over the per-request cap are MESSAGE_TOO_LARGE: {refused} of 8");
    });
}

/// A client that pipelines Fetches of a topic holding 70 MB and never reads the answers
/// held 16 responses of 70 MB each (over 1 GB). Now a response is capped at
/// pg_kafka.fetch_max_bytes, responses come out of the in-flight budget, and a client that
/// takes none is cut off after pg_kafka.request_timeout_ms.
#[test]
fn pipelined_fetches_that_are_never_read() {
    let _serial = serial();
    let topic = "e2e-never-read";
    create_topic(topic, 1);
    let value = vec![7u8; 1_000_000];
    let messages = (0..70).map(|_| Message { value: value.clone(), ..Message::default() });
    assert_eq!(produce(topic, &[("message.max.bytes", "2000000")], messages), (70, 0));
    assert_survives("16 pipelined 100 MB Fetches never read", || {
        let request = fetch_from_start(topic, 100, 100 << 20);
        let mut frame = BytesMut::new();
        RequestHeader::default().with_request_api_key(ApiKey::Fetch as i16).with_request_api_version(11).encode(&mut frame, 1).unwrap();
        request.encode(&mut frame, 11).unwrap();
        let mut greedy = RawClient::connect();
        for _ in 0..16 {
            greedy.send_raw(&(frame.len() as i32).to_be_bytes());
            greedy.send_raw(&frame);
        }
        std::thread::sleep(Duration::from_secs(3));
        bystander_served_within(Duration::from_secs(5));
        drop(greedy);
    });
}
