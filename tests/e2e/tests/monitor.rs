//! The broker seen from psql and Prometheus: `kafka.topic_partitions`,
//! `kafka.broker_stats`, `kafka.api_stats`, `kafka.groups`, `kafka.group_members`,
//! `kafka.connections` and `pg_kafka.metrics_listener` agree with what clients did.

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use pg_kafka_e2e::produce::{produce, Message};
use pg_kafka_e2e::*;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::ClientConfig;

/// The worker republishes its figures every 200 ms.
fn after_publish() {
    std::thread::sleep(Duration::from_millis(450));
}

fn stat(metric: &str, api: Option<&str>) -> f64 {
    let api = api.map_or("api IS NULL".to_owned(), |a| format!("api = '{a}'"));
    psql(&format!("SELECT coalesce(max(value), 0) FROM kafka.broker_stats WHERE metric = '{metric}' AND {api}")).parse().unwrap()
}

fn message(i: usize) -> Message {
    Message { partition: (i % 2) as i32, key: Some(format!("k{i}").into_bytes()), value: vec![b'v'; 100], ..Message::default() }
}

#[test]
fn partitions_and_stats_agree_with_what_was_produced() {
    let topic = "e2e-monitor-produce";
    create_topic(topic, 2);
    let before = (stat("produce_messages_total", None), stat("requests_total", Some("Produce")), stat("group_commits_total", None));
    assert_eq!(produce(topic, &[], (0..1000).map(message)), (1000, 0));
    after_publish();
    let partitions = psql(&format!(
        "SELECT partition || ':' || log_start_offset || ':' || high_watermark || ':' || rows || ':' || bytes || ':' || \
                (last_append_time > now() - interval '1 minute') \
         FROM kafka.topic_partitions WHERE topic = '{topic}' ORDER BY partition"
    ));
    // 500 messages a partition, each with a 2-4 byte key and a 100-byte value (row
    // layout: their payload), or the batches that hold them (batch layout).
    let key_bytes = |p: usize| (0..1000).filter(|i| i % 2 == p).map(|i| format!("k{i}").len()).sum::<usize>();
    let bytes = |p: usize| match psql(&format!("SELECT storage FROM kafka.topics WHERE name = '{topic}'")).as_str() {
        "rows" => (50_000 + key_bytes(p)).to_string(),
        _ => psql(&format!(
            "SELECT sum(octet_length(batch)) FROM kafka.batches WHERE partition = {p} \
             AND topic_id = (SELECT id FROM kafka.topics WHERE name = '{topic}')"
        )),
    };
    let want = format!("0:0:500:500:{}:true\n1:0:500:500:{}:true", bytes(0), bytes(1));
    assert_eq!(partitions, want);
    let after = (stat("produce_messages_total", None), stat("requests_total", Some("Produce")), stat("group_commits_total", None));
    assert!(after.0 - before.0 >= 1000.0, "produce_messages_total {before:?} → {after:?}");
    assert!(after.1 > before.1 && after.2 > before.2, "{before:?} → {after:?}");
    let latency = psql("SELECT latency_p50_ms > 0 AND latency_p99_ms >= latency_p50_ms FROM kafka.api_stats WHERE api = 'Produce'");
    assert_eq!(latency, "t");
    // An empty topic's partitions are listed too, from the table.
    create_topic("e2e-monitor-empty", 3);
    assert_eq!(psql("SELECT count(*), sum(rows) FROM kafka.topic_partitions WHERE topic = 'e2e-monitor-empty'"), "3|0");
}

#[test]
fn groups_show_members_assignments_and_lag() {
    let topic = "e2e-monitor-group";
    create_topic(topic, 2);
    assert_eq!(produce(topic, &[], (0..100).map(message)), (100, 0));
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .set("group.id", "e2e-monitor-g")
        .set("client.id", "monitor-test")
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    consumer.subscribe(&[topic]).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut received = 0;
    while received < 100 && Instant::now() < deadline {
        if let Some(message) = consumer.poll(Duration::from_millis(100)) {
            message.expect("no consumer error");
            received += 1;
        }
    }
    assert_eq!(received, 100);
    consumer.commit_consumer_state(CommitMode::Sync).unwrap();
    after_publish();
    let group = psql(
        "SELECT state || '|' || protocol_type || '|' || protocol || '|' || (generation >= 1) || '|' || members || '|' || lag \
                      FROM kafka.groups WHERE group_id = 'e2e-monitor-g'",
    );
    assert_eq!(group, "Stable|consumer|range|true|1|0");
    let member = psql("SELECT client_id || '|' || assignment FROM kafka.group_members WHERE group_id = 'e2e-monitor-g'");
    assert_eq!(member, format!("monitor-test|{topic}:0,1"));
    let connection = psql(
        "SELECT client_software_name || '|' || (client_software_version <> '') || '|' || (requests_in_flight >= 0) \
                           FROM kafka.connections WHERE client_id = 'monitor-test' LIMIT 1",
    );
    assert_eq!(connection, "librdkafka|true|true");
    drop(consumer);
    // Gone from the live list, still listed with its committed offsets.
    let deadline = Instant::now() + Duration::from_secs(15);
    while psql("SELECT state FROM kafka.groups WHERE group_id = 'e2e-monitor-g'") != "Empty" && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(psql("SELECT state || '|' || members || '|' || lag FROM kafka.groups WHERE group_id = 'e2e-monitor-g'"), "Empty|0|0");
}

#[test]
fn only_monitoring_roles_read_the_figures() {
    psql("DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'monitor_nobody') THEN CREATE ROLE monitor_nobody; END IF; END $$; \
          GRANT USAGE ON SCHEMA kafka TO monitor_nobody");
    for view in ["broker_stats", "api_stats", "groups", "group_members", "topic_partitions", "connections"] {
        let refused = std::panic::catch_unwind(|| psql(&format!("SET ROLE monitor_nobody; SELECT count(*) FROM kafka.{view}")));
        assert!(refused.is_err(), "kafka.{view} readable without pg_monitor");
    }
    psql("GRANT pg_monitor TO monitor_nobody");
    psql("SET ROLE monitor_nobody; SELECT count(*) FROM kafka.broker_stats, kafka.topic_partitions, kafka.groups");
    psql("REVOKE pg_monitor FROM monitor_nobody");
}

#[test]
fn prometheus_scrapes_the_same_figures() {
    create_topic("e2e-monitor-prom", 1);
    assert_eq!(produce("e2e-monitor-prom", &[], (0..10).map(|i| Message { partition: 0, ..message(i) })), (10, 0));
    let response = http_get("/metrics");
    assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
    let value = |line_start: &str| -> f64 {
        response.lines().find(|l| l.starts_with(line_start)).and_then(|l| l.rsplit(' ').next()).unwrap().parse().unwrap()
    };
    assert!(value("pg_kafka_produce_messages_total ") >= 10.0);
    assert!(value("pg_kafka_requests_total{api=\"Produce\"} ") >= 1.0);
    assert!(response.contains("# TYPE pg_kafka_request_latency_ms_p99 gauge"), "{response}");
    after_publish();
    assert!(stat("produce_messages_total", None) >= value("pg_kafka_produce_messages_total "), "SQL shows the same counter, later");
    assert!(http_get("/nope").starts_with("HTTP/1.1 404"));
}

#[test]
fn hostile_scrapers_do_not_hurt_the_broker() {
    assert_survives("hostile HTTP clients on the metrics listener", || {
        // Connections that never send a byte, more than the endpoint serves at once.
        let idle: Vec<TcpStream> = (0..50).filter_map(|_| TcpStream::connect(metrics_address()).ok()).collect();
        // A head that never ends, and binary garbage.
        for garbage in [vec![b'G'; 1 << 20], (0..=255u8).cycle().take(100_000).collect()] {
            if let Ok(mut stream) = TcpStream::connect(metrics_address()) {
                stream.set_write_timeout(Some(Duration::from_secs(2))).unwrap();
                let _ = stream.write_all(&garbage);
            }
        }
        drop(idle);
        // Slots come back within the 5 s per-connection limit; scrapes work again.
        let deadline = Instant::now() + Duration::from_secs(15);
        while !http_get("/metrics").starts_with("HTTP/1.1 200") && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(250));
        }
        assert!(http_get("/metrics").starts_with("HTTP/1.1 200"));
    });
}
