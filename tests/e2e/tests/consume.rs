//! Consume: what was produced comes back byte for byte, from any offset, through rdkafka
//! and kcat; long polls wake on commit; SQL-written rows are seen too.

use std::time::{Duration, Instant};

use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{ApiKey, FetchRequest, FetchResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use pg_kafka_e2e::consume::{consume, consumer, receive};
use pg_kafka_e2e::produce::{produce, Message};
use pg_kafka_e2e::*;
use rdkafka::Offset;

/// Message `i`: keyed, with headers (one binary, one empty) and a CreateTime of our choosing.
fn message(i: usize, partitions: i32) -> Message {
    Message {
        partition: (i % partitions as usize) as i32,
        key: (!i.is_multiple_of(7)).then(|| format!("key-{i}").into_bytes()),
        value: format!("value {i} {}", "y".repeat(i % 40)).into_bytes(),
        headers: vec![("i".into(), i.to_string().into_bytes()), ("bin".into(), vec![0, 1, 255]), ("empty".into(), vec![])],
        timestamp: Some(1_600_000_000_000 + i as i64 * 1000),
        offset: 0,
    }
}

/// What a consumer should see of `message(i)` at `offset`.
fn expected(i: usize, partitions: i32, offset: i64) -> Message {
    Message { offset, ..message(i, partitions) }
}

fn by_partition_and_offset(mut messages: Vec<Message>) -> Vec<Message> {
    messages.sort_by_key(|m| (m.partition, m.offset));
    messages
}

#[test]
fn rdkafka_reads_back_exactly_what_was_produced_with_every_codec() {
    for codec in ["none", "gzip", "snappy", "lz4", "zstd"] {
        let topic = format!("e2e-consume-{codec}");
        create_topic(&topic, 2);
        let count = 3000;
        let (ok, failed) = produce(&topic, &[("compression.codec", codec)], (0..count).map(|i| message(i, 2)));
        assert_eq!((ok, failed), (count, 0));
        let received = by_partition_and_offset(consume(&topic, &[0, 1], Offset::Beginning, count));
        // Partition p holds messages p, p+2, p+4, ... at offsets 0, 1, 2, ...
        let wanted: Vec<Message> =
            (0..2).flat_map(|p| (p..count).step_by(2).enumerate().map(move |(offset, i)| expected(i, 2, offset as i64))).collect();
        assert_eq!(received.len(), wanted.len());
        for (got, want) in received.iter().zip(&wanted) {
            assert_eq!(got, want, "{codec}");
        }
    }
}

#[test]
fn kcat_reads_back_every_byte() {
    let topic = "e2e-consume-kcat";
    create_topic(topic, 1);
    let messages: Vec<Message> = (0..500).map(|i| message(i, 1)).collect();
    assert_eq!(produce(topic, &[], messages.clone()), (500, 0));
    // Offset, key (or NULL), value, separated so that no message text can fake a boundary.
    let out = kcat(&["-C", "-t", topic, "-o", "beginning", "-e", "-f", "%o\x1f%k\x1f%s\x1e", "-Z"]);
    let records: Vec<&str> = out.split('\x1e').filter(|r| !r.is_empty()).collect();
    assert_eq!(records.len(), 500);
    for (i, record) in records.iter().enumerate() {
        let fields: Vec<&str> = record.split('\x1f').collect();
        let key = messages[i].key.as_ref().map_or("NULL".to_owned(), |k| String::from_utf8(k.clone()).unwrap());
        assert_eq!(fields, vec![i.to_string(), key, String::from_utf8(messages[i].value.clone()).unwrap()]);
    }
}

#[test]
fn consumers_start_at_a_given_offset_and_reset_when_out_of_range() {
    let topic = "e2e-consume-offsets";
    create_topic(topic, 1);
    assert_eq!(produce(topic, &[], (0..20).map(|i| message(i, 1))), (20, 0));
    let from_five = consume(topic, &[0], Offset::Offset(5), 15);
    assert_eq!(from_five[0], expected(5, 1, 5));
    assert_eq!(from_five.last().unwrap(), &expected(19, 1, 19));
    let from_end = consumer(topic, &[0], Offset::OffsetTail(3), &[]);
    assert_eq!(receive(&from_end, 3, Duration::from_secs(30)).iter().map(|m| m.offset).collect::<Vec<_>>(), vec![17, 18, 19]);
    // Beyond the log: Fetch answers OFFSET_OUT_OF_RANGE and the client resets (ListOffsets).
    let reset = consumer(topic, &[0], Offset::Offset(1000), &[("auto.offset.reset", "earliest")]);
    assert_eq!(receive(&reset, 1, Duration::from_secs(30))[0].offset, 0);
}

/// A Fetch v11 request for one partition, over a raw connection.
fn fetch_request(topic: &str, offset: i64, max_wait_ms: i32) -> FetchRequest {
    FetchRequest::default()
        .with_replica_id((-1).into())
        .with_max_wait_ms(max_wait_ms)
        .with_min_bytes(1)
        .with_max_bytes(1 << 20)
        .with_session_epoch(-1)
        .with_topics(vec![FetchTopic::default()
            .with_topic(TopicName(StrBytes::from_string(topic.to_owned())))
            .with_partitions(vec![FetchPartition::default().with_fetch_offset(offset).with_partition_max_bytes(1 << 20)])])
}

#[test]
fn out_of_range_offsets_get_the_kafka_error() {
    let topic = "e2e-consume-range";
    create_topic(topic, 1);
    assert_eq!(produce(topic, &[], (0..3).map(|i| message(i, 1))), (3, 0));
    let mut client = RawClient::connect();
    for offset in [4, -5] {
        client.send_message(ApiKey::Fetch, 11, &fetch_request(topic, offset, 0));
        let response: FetchResponse = client.read_response(ApiKey::Fetch, 11);
        let partition = &response.responses[0].partitions[0];
        assert_eq!((partition.error_code, partition.high_watermark, partition.log_start_offset), (1, 3, 0), "offset {offset}");
    }
}

#[test]
fn a_long_poll_wakes_on_commit_and_an_idle_one_waits_out_max_wait() {
    let topic = "e2e-consume-long-poll";
    create_topic(topic, 1);
    assert_eq!(produce(topic, &[], [message(0, 1)]), (1, 0));

    let mut idle = RawClient::connect();
    let started = Instant::now();
    idle.send_message(ApiKey::Fetch, 11, &fetch_request(topic, 1, 700));
    let response: FetchResponse = idle.read_response(ApiKey::Fetch, 11);
    let waited = started.elapsed();
    assert!(response.responses[0].partitions[0].records.as_ref().is_none_or(|r| r.is_empty()));
    assert!(waited >= Duration::from_millis(700) && waited < Duration::from_secs(5), "idle poll took {waited:?}");

    // Waiting at the end of the log, then a message arrives: answered long before max_wait.
    let mut waiting = RawClient::connect();
    waiting.send_message(ApiKey::Fetch, 11, &fetch_request(topic, 1, 20_000));
    std::thread::sleep(Duration::from_millis(300));
    let sent = Instant::now();
    assert_eq!(produce(topic, &[("linger.ms", "0")], [message(1, 1)]), (1, 0));
    let response: FetchResponse = waiting.read_response(ApiKey::Fetch, 11);
    let latency = sent.elapsed();
    let records = response.responses[0].partitions[0].records.clone().unwrap_or_default();
    assert!(!records.is_empty(), "the new message came back");
    assert!(latency < Duration::from_secs(5), "woken after {latency:?}, not at max_wait (20 s)");
}

#[test]
fn rows_inserted_with_sql_are_consumed_and_produce_continues_after_them() {
    let topic = "e2e-consume-sql";
    create_row_topic(topic, 1);
    assert_eq!(produce(topic, &[], [message(0, 1)]), (1, 0));
    let waiting = consumer(topic, &[0], Offset::Offset(1), &[("fetch.wait.max.ms", "10000")]);
    psql(&format!(
        "INSERT INTO kafka.messages (topic_id, partition, \"offset\", \"timestamp\", key, value) \
         SELECT id, 0, 1, '2024-01-02 03:04:05.678+00', 'sql-key', 'from SQL' FROM kafka.topics WHERE name = '{topic}'"
    ));
    let got = receive(&waiting, 1, Duration::from_secs(10));
    assert_eq!(got.len(), 1, "the SQL row is seen within pg_kafka.refresh_interval_ms");
    assert_eq!((got[0].offset, got[0].key.clone(), got[0].value.clone()), (1, Some(b"sql-key".to_vec()), b"from SQL".to_vec()));
    assert_eq!(got[0].timestamp, Some(1_704_164_645_678));
    // The writer's counter moved past the SQL row: no collision, no gap.
    assert_eq!(produce(topic, &[], [message(2, 1)]), (1, 0));
    assert_eq!(assert_gap_free(topic), 3);
}

#[test]
fn one_mebibyte_messages_round_trip() {
    let topic = "e2e-consume-large";
    create_topic(topic, 1);
    // As with Kafka, batches above 1 MiB need the topic's max.message.bytes raised.
    psql(&format!(
        "INSERT INTO kafka.topic_configs SELECT id, 'max.message.bytes', '3000000' FROM kafka.topics WHERE name = '{topic}' \
         ON CONFLICT DO NOTHING"
    ));
    let big = |i: u8| Message { value: (0..1 << 20).map(|b: u32| (b as u8) ^ i).collect(), ..Message::default() };
    let (ok, failed) = produce(topic, &[("message.max.bytes", "3000000")], (0..3).map(big));
    assert_eq!((ok, failed), (3, 0));
    let received = consume(topic, &[0], Offset::Beginning, 3);
    for (i, message) in received.iter().enumerate() {
        assert_eq!(message.value, big(i as u8).value, "message {i}");
    }
}

#[test]
fn the_writer_reports_table_statistics_for_autovacuum() {
    let topic = "e2e-consume-stats";
    create_row_topic(topic, 1);
    let inserted = || psql("SELECT n_tup_ins FROM pg_stat_user_tables WHERE relid = 'kafka.messages'::regclass").parse::<i64>().unwrap();
    let before = inserted();
    assert_eq!(produce(topic, &[], (0..100).map(|i| message(i, 1))), (100, 0));
    let deadline = Instant::now() + Duration::from_secs(10);
    while inserted() < before + 100 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(inserted() >= before + 100, "inserts by the worker show in pg_stat_user_tables");
}

#[test]
fn kafka_python_reads_what_rdkafka_produced_compressed() {
    for codec in ["gzip", "lz4", "zstd"] {
        let topic = format!("e2e-consume-python-{codec}");
        create_topic(&topic, 1);
        let messages: Vec<Message> = (0..200).map(|i| message(i, 1)).collect();
        assert_eq!(produce(&topic, &[("compression.codec", codec)], messages.clone()), (200, 0));
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/python/consume.py");
        let output = std::process::Command::new("python3").args([script, &bootstrap(), &topic, "0", "200"]).output().unwrap();
        assert!(output.status.success(), "kafka-python: {}", String::from_utf8_lossy(&output.stderr));
        let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
        let lines: Vec<String> = String::from_utf8(output.stdout).unwrap().lines().map(str::to_owned).collect();
        assert_eq!(lines.len(), 200);
        for (i, line) in lines.iter().enumerate() {
            let m = &messages[i];
            let key = m.key.as_ref().map_or("null".to_owned(), |k| format!("\"{}\"", hex(k)));
            let headers: Vec<String> = m.headers.iter().map(|(k, v)| format!("[\"{k}\", \"{}\"]", hex(v))).collect();
            let want = format!(
                "{{\"offset\": {i}, \"key\": {key}, \"value\": \"{}\", \"headers\": [{}], \"timestamp\": {}}}",
                hex(&m.value),
                headers.join(", "),
                m.timestamp.unwrap()
            );
            assert_eq!(line, &want, "{codec} message {i}");
        }
    }
}
