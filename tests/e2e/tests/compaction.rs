//! Compacted topics, created as Kafka Connect and Kafka Streams create theirs, in both
//! storage layouts: keyless records are refused, and the retention pass (every second on
//! the make e2e cluster) leaves the latest record of each key at its offset.

use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, AlterConfig, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::{ClientConfig, Offset};

use pg_kafka_e2e::consume::{consumer, receive};
use pg_kafka_e2e::produce::{produce, Message};
use pg_kafka_e2e::*;

fn keyed(key: &str, value: String) -> Message {
    Message { key: Some(key.as_bytes().to_vec()), value: value.into_bytes(), ..Message::default() }
}

fn create_compacted(topic: &str, layout: &str) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new().set("bootstrap.servers", bootstrap()).create().expect("admin");
    let new = NewTopic::new(topic, 1, TopicReplication::Fixed(1))
        .set("cleanup.policy", "compact")
        .set("segment.ms", "100")
        .set("min.cleanable.dirty.ratio", "0.01")
        .set("pg_kafka.storage", layout);
    let created = block_on(admin.create_topics(&[new], &AdminOptions::new().request_timeout(Some(Duration::from_secs(10))))).unwrap();
    assert_eq!(created[0], Ok(topic.to_owned()));
}

#[test]
fn a_compacted_topic_keeps_the_latest_record_of_each_key_in_both_layouts() {
    for layout in ["rows", "batches"] {
        let topic = format!("e2e-compacted-{layout}");
        create_compacted(&topic, layout);
        let keyless = Message { value: b"no key".to_vec(), ..Message::default() };
        assert_eq!(produce(&topic, &[("message.timeout.ms", "5000")], [keyless]), (0, 1), "{layout}: INVALID_RECORD");
        let updates = (0..100).map(|i| keyed(&format!("k{}", i % 10), format!("v{i}")));
        assert_eq!(produce(&topic, &[], updates), (100, 0));
        // Its own batch: the last record, which no pass removes.
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(produce(&topic, &[], [keyed("tail", "t".into())]), (1, 0));

        let cleaned = format!(
            "SELECT coalesce(max(c.cleaned_to), 0) FROM kafka.partition_cleaning c JOIN kafka.topics t ON t.id = c.topic_id WHERE t.name = '{topic}'"
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        while psql(&cleaned) != "100" {
            assert!(Instant::now() < deadline, "{layout}: compaction reached {}", psql(&cleaned));
            std::thread::sleep(Duration::from_millis(100));
        }
        let reader = consumer(&topic, &[0], Offset::Beginning, &[]);
        let left = receive(&reader, 11, Duration::from_secs(20));
        let seen: Vec<(i64, String)> = left.iter().map(|m| (m.offset, String::from_utf8_lossy(&m.value).into_owned())).collect();
        let want: Vec<(i64, String)> = (90..100).map(|i| (i, format!("v{i}"))).chain([(100, "t".to_owned())]).collect();
        assert_eq!(seen, want, "{layout}: the latest of each key, at its offset");
        assert!(receive(&reader, 1, Duration::from_millis(500)).is_empty(), "{layout}: nothing else");
        let counted = format!("SELECT count(*) FROM {}", messages_of(&topic));
        assert_eq!(psql(&counted), "11", "{layout}");
        assert_eq!(psql(&format!("SELECT high_watermark FROM kafka.topic_partitions WHERE topic = '{topic}'")), "101");
        let standing = format!(
            "SELECT cleaned_to, compaction_removed, dirty_ratio BETWEEN 0 AND 1, last_compaction > now() - interval '1 minute' \
             FROM kafka.topic_partitions WHERE topic = '{topic}'"
        );
        assert_eq!(psql(&standing), "100|90|t|t", "{layout}: where compaction stands");
        assert_prometheus_shows_the_cleaner(&topic);

        // The topic as a table: each key's latest value; a tombstone takes its key out.
        let latest = format!("SELECT string_agg(key_text || '=' || value_text, ',' ORDER BY \"offset\") FROM kafka.latest('{topic}')");
        let want: Vec<String> = (90..100).map(|i| format!("k{}=v{i}", i % 10)).chain(["tail=t".to_owned()]).collect();
        assert_eq!(psql(&latest), want.join(","), "{layout}");
        psql(&format!("SELECT kafka.produce('{topic}', 'k3'::text, NULL::text)"));
        assert_eq!(psql(&latest), want.iter().filter(|kv| !kv.starts_with("k3=")).cloned().collect::<Vec<_>>().join(","), "{layout}");
    }
    psql("INSERT INTO kafka.topics (name, partitions) VALUES ('e2e-not-compacted', 1) ON CONFLICT DO NOTHING");
    let not_compacted = "SELECT cleaned_to IS NULL AND dirty_ratio IS NULL AND compaction_removed IS NULL FROM kafka.topic_partitions WHERE topic = 'e2e-not-compacted'";
    assert_eq!(psql(not_compacted), "t");
    assert!(wait_for_log("pg_kafka: compaction removed 90 records of \"e2e-compacted-batches\" partition 0"));
}

/// The cleaner's gauges for the topic's partition 0 on the metrics listener: nothing left
/// to clean after the pass that cleaned it, which was within the last minute.
fn assert_prometheus_shows_the_cleaner(topic: &str) {
    let scraped = http_get("/metrics");
    let value = |name: &str| -> f64 {
        let line_start = format!("pg_kafka_{name}{{topic=\"{topic}\",partition=\"0\"}} ");
        let line = scraped.lines().find(|l| l.starts_with(&line_start)).unwrap_or_else(|| panic!("no {line_start}in {scraped}"));
        line[line_start.len()..].parse().unwrap()
    };
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    let last_pass = value("compaction_last_pass_timestamp_seconds");
    assert!((now - 60.0..=now + 1.0).contains(&last_pass), "{topic}: last pass at {last_pass}, now {now}");
    let (cleanable, ratio) = (value("compaction_cleanable_bytes"), value("compaction_dirty_ratio"));
    assert!((0.0..=1.0).contains(&ratio) && cleanable >= 0.0, "{topic}: {cleanable} bytes, ratio {ratio}");
    assert!(scraped.contains("# TYPE pg_kafka_compaction_dirty_ratio gauge\n"), "{scraped}");
}

fn alter_topic(topic: &str, configs: &[(&str, &str)]) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new().set("bootstrap.servers", bootstrap()).create().expect("admin");
    let alter = configs.iter().fold(AlterConfig::new(ResourceSpecifier::Topic(topic)), |a, (name, value)| a.set(name, value));
    let altered = block_on(admin.alter_configs(&[alter], &AdminOptions::new().request_timeout(Some(Duration::from_secs(10))))).unwrap();
    assert!(altered[0].is_ok(), "{altered:?}");
}

/// A topic that holds data changes its cleanup.policy both ways: made compacted, the
/// records compaction removes go (keyless ones too, as Kafka's cleaner drops them);
/// made `delete` again, keyless records are accepted and nothing more is compacted.
#[test]
fn a_topic_holding_data_changes_its_cleanup_policy_both_ways() {
    let topic = "e2e-policy-change";
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new().set("bootstrap.servers", bootstrap()).create().expect("admin");
    let new = NewTopic::new(topic, 1, TopicReplication::Fixed(1)).set("pg_kafka.storage", "batches");
    block_on(admin.create_topics(&[new], &AdminOptions::new())).unwrap();
    let keyless = || Message { value: b"no key".to_vec(), ..Message::default() };
    assert_eq!(produce(topic, &[], [keyless()]), (1, 0), "a delete topic takes keyless records");
    assert_eq!(produce(topic, &[], (0..20).map(|i| keyed(&format!("k{}", i % 2), format!("v{i}")))), (20, 0));
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(produce(topic, &[], [keyed("tail", "t".into())]), (1, 0));

    alter_topic(topic, &[("cleanup.policy", "compact"), ("segment.ms", "100"), ("min.cleanable.dirty.ratio", "0.01")]);
    let counted = format!("SELECT count(*) FROM {}", messages_of(topic));
    let deadline = Instant::now() + Duration::from_secs(20);
    while psql(&counted) != "3" {
        assert!(Instant::now() < deadline, "compaction left {} records", psql(&counted));
        std::thread::sleep(Duration::from_millis(100));
    }
    let latest = format!("SELECT string_agg(key_text || '=' || value_text, ',' ORDER BY \"offset\") FROM kafka.latest('{topic}')");
    assert_eq!(psql(&latest), "k0=v18,k1=v19,tail=t");
    assert_eq!(produce(topic, &[("message.timeout.ms", "5000")], [keyless()]), (0, 1), "compacted: keyless refused");

    alter_topic(topic, &[("cleanup.policy", "delete")]);
    assert_eq!(produce(topic, &[], [keyless()]), (1, 0), "delete again: keyless accepted");
    assert_eq!(produce(topic, &[], [keyed("k0", "again".into())]), (1, 0));
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(psql(&counted), "5", "nothing compacted any more");
}

/// A row-layout topic with compression.type sends its fetched batches in that codec,
/// which librdkafka decodes (the Java tier reads every codec in both layouts).
#[test]
fn a_row_topic_sends_batches_in_its_compression_type() {
    for codec in ["gzip", "snappy", "lz4", "zstd"] {
        let topic = format!("e2e-row-codec-{codec}");
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new().set("bootstrap.servers", bootstrap()).create().expect("admin");
        let new = NewTopic::new(&topic, 1, TopicReplication::Fixed(1)).set("compression.type", codec).set("pg_kafka.storage", "rows");
        block_on(admin.create_topics(&[new], &AdminOptions::new())).unwrap();
        let sent: Vec<String> = (0..200).map(|i| format!("{codec} {i} {}", "z".repeat(i % 97))).collect();
        assert_eq!(produce(&topic, &[], sent.iter().map(|v| keyed("k", v.clone()))), (200, 0));
        let reader = consumer(&topic, &[0], Offset::Beginning, &[]);
        let got: Vec<String> =
            receive(&reader, 200, Duration::from_secs(20)).iter().map(|m| String::from_utf8_lossy(&m.value).into_owned()).collect();
        assert_eq!(got, sent, "{codec}");
    }
}
