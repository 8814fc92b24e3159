//! `pg_dump` of the database holds the topics, messages, committed offsets and producer
//! ids, and a restore into a new cluster serves them to Kafka clients again.

use std::process::Command;
use std::time::Duration;

use pg_kafka_e2e::groups::{member, Ledger};
use pg_kafka_e2e::produce::{produce, Message};
use pg_kafka_e2e::*;

const NEW_PG_PORT: &str = "26439";
const NEW_KAFKA_PORT: &str = "30099";

fn cluster(action: &str, data: &str, extra_conf: Option<&str>) {
    let mut command = Command::new("scripts/cluster.sh");
    command.current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../..")).args([action, data, NEW_PG_PORT, NEW_KAFKA_PORT]);
    if let Some(conf) = extra_conf {
        command.env("PGKAFKA_EXTRA_CONF", conf);
    }
    assert!(command.status().expect("cluster.sh runs").success(), "cluster.sh {action}");
}

fn psql_at(port: &str, database: &str, sql: &str) -> String {
    let output = Command::new("psql")
        .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-U", "postgres", "-p", port, "-d", database, "-c", sql])
        .output()
        .expect("psql runs");
    assert!(output.status.success(), "psql failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

#[test]
fn a_dump_restored_into_a_new_cluster_serves_the_same_topics_messages_and_offsets() {
    let (topic, group) = ("e2e-dump", "e2e-dump-group");
    create_topic(topic, 2);
    let messages = (0..20).map(|i| Message { partition: i % 2, value: format!("d{i}").into_bytes(), ..Message::default() });
    assert_eq!(produce(topic, &[], messages), (20, 0));
    let consumer = member(group, topic);
    let mut ledger = Ledger::default();
    // Each message is committed as it is consumed: the committed offsets end at 10 and 10.
    assert!(ledger.poll_until(&[&consumer], Duration::from_secs(30), |l| l.committed.len() >= 20), "consumed before the dump");
    drop(consumer);
    let committed = psql(&format!("SELECT sum(committed_offset) FROM kafka.consumer_offsets WHERE group_id = '{group}'"));
    assert_eq!(committed, "20");

    let dump = std::env::temp_dir().join("pg_kafka_e2e_dump.sql");
    let status = Command::new("pg_dump")
        .args(["-h", "127.0.0.1", "-U", "postgres", "-p", &std::env::var("PGKAFKA_E2E_PG_PORT").unwrap(), "-d", "postgres", "-f"])
        .arg(&dump)
        .status()
        .expect("pg_dump runs");
    assert!(status.success());
    let text = std::fs::read_to_string(&dump).unwrap();
    assert!(text.contains("COPY kafka.messages"), "the dump holds the messages");

    // A new cluster whose worker serves database "restored", created from the dump.
    let data = std::env::temp_dir().join("pg_kafka_e2e_restored").to_string_lossy().into_owned();
    let conf = std::env::temp_dir().join("pg_kafka_e2e_restored.conf");
    std::fs::write(&conf, "pg_kafka.database = 'restored'\n").unwrap();
    cluster("stop", &data, None);
    let _ = std::fs::remove_dir_all(&data);
    // Restore into a database of a new cluster, then restart it with its worker serving
    // that database (cluster.sh start returns once the Kafka port answers).
    cluster("start", &data, None);
    let result = std::panic::catch_unwind(|| {
        psql_at(NEW_PG_PORT, "postgres", "CREATE DATABASE restored");
        let restore = Command::new("psql")
            .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-U", "postgres", "-p", NEW_PG_PORT, "-d", "restored", "-f"])
            .arg(&dump)
            .output()
            .expect("psql runs");
        assert!(restore.status.success(), "restore failed: {}", String::from_utf8_lossy(&restore.stderr));
        cluster("stop", &data, None);
        cluster("start", &data, Some(conf.to_str().unwrap()));
        let count = |sql: &str| psql_at(NEW_PG_PORT, "restored", sql);
        assert_eq!(count(&format!("SELECT partitions FROM kafka.topics WHERE name = '{topic}'")), "2");
        assert_eq!(count(&format!("SELECT sum(committed_offset) FROM kafka.consumer_offsets WHERE group_id = '{group}'")), "20");
        // Served by the new cluster's worker: every message, from offset 0.
        let bootstrap = format!("127.0.0.1:{NEW_KAFKA_PORT}");
        let mut output = String::new();
        for _ in 0..60 {
            let run = Command::new("kcat").args(["-b", &bootstrap, "-C", "-t", topic, "-o", "beginning", "-e", "-q"]).output().unwrap();
            output = String::from_utf8_lossy(&run.stdout).into_owned();
            if run.status.success() && output.lines().count() == 20 {
                break;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        let mut values: Vec<&str> = output.lines().collect();
        values.sort();
        let mut expected: Vec<String> = (0..20).map(|i| format!("d{i}")).collect();
        expected.sort();
        assert_eq!(values, expected);
        // And new messages continue after the restored offsets, never reusing one.
        let high = count(&format!("SELECT max(m.\"offset\") FROM kafka.topic_messages m WHERE m.topic = '{topic}' AND m.partition = 0"));
        assert_eq!(high, "9");
    });
    cluster("stop", &data, None);
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}
