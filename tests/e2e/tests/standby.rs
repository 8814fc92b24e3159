//! A hot standby made with `pg_basebackup` is a broker too: its worker serves Fetch,
//! ListOffsets and Metadata from what Postgres has replayed, answers writes, groups and
//! transactions with the codes that send clients to the primary, and serves them itself
//! once Postgres is promoted. Both name each other (`pg_kafka.cluster_nodes`), so clients
//! that know only the standby are sent to the primary, and both name the standby an in-sync
//! replica while it is synchronous. Two clusters of their own (primary
//! node 1, standby node 2), on ports no other test uses, below Linux's ephemeral range:
//! a client connection of an earlier test (pg_basebackup's own, say) never holds them.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, CreateTopicsRequest, CreateTopicsResponse, FetchResponse, FindCoordinatorRequest, FindCoordinatorResponse, MetadataRequest,
    MetadataResponse, ProduceRequest, ProduceResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::RecordBatchDecoder;
use pg_kafka_e2e::consume::{consumer, receive};
use pg_kafka_e2e::produce::{produce, Message};
use pg_kafka_e2e::{fetch_from_start, in_sync_replicas, one_record_batch, RawClient};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::{ClientConfig, Offset};

const PRIMARY: Node = Node { id: 1, name: "pg_kafka_e2e_primary", pg_port: "25451", kafka_port: "29111" };
const STANDBY: Node = Node { id: 2, name: "pg_kafka_e2e_standby", pg_port: "25452", kafka_port: "29112" };
/// `pg_kafka.cluster_nodes`, the same on both. The standby connects to the primary as its
/// `cluster_name`, which names it here.
const CLUSTER_NODES: &str = "1:rack-a@127.0.0.1:29111,2:rack-b/pg_kafka_e2e_standby@127.0.0.1:29112";

struct Node {
    id: i32,
    name: &'static str,
    pg_port: &'static str,
    kafka_port: &'static str,
}

impl Node {
    fn data(&self) -> String {
        std::env::temp_dir().join(self.name).to_string_lossy().into_owned()
    }

    fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.kafka_port)
    }

    /// cluster.sh `action` on this node, with its node id and the node list.
    fn cluster(&self, action: &str) -> bool {
        let conf = std::env::temp_dir().join(format!("{}.conf", self.name));
        let settings =
            format!("pg_kafka.node_id = {}\npg_kafka.cluster_nodes = '{CLUSTER_NODES}'\ncluster_name = '{}'\n", self.id, self.name);
        std::fs::write(&conf, settings).unwrap();
        let mut command = Command::new("scripts/cluster.sh");
        command.current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../..")).args([action, &self.data(), self.pg_port, self.kafka_port]);
        command.env("PGKAFKA_EXTRA_CONF", conf);
        command.status().expect("cluster.sh runs").success()
    }

    fn psql(&self, sql: &str) -> String {
        let output = Command::new("psql")
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-U", "postgres", "-p", self.pg_port, "-c", sql])
            .output()
            .expect("psql runs");
        assert!(output.status.success(), "psql failed: {}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8(output.stdout).unwrap().trim().to_owned()
    }

    fn server_log(&self) -> String {
        std::fs::read_to_string(PathBuf::from(self.data()).join("server.log")).unwrap_or_default()
    }
}

/// A server program of the Postgres the clusters run (cluster.sh's `PG_BIN`, the Makefile's
/// `PG=`), as the postgres user.
fn as_postgres(program: &str, args: &[&str]) {
    let bin = std::env::var("PG_BIN").unwrap_or_else(|_| "/usr/lib/postgresql/15/bin".into());
    let status =
        Command::new("runuser").args(["-u", "postgres", "--", &format!("{bin}/{program}")]).args(args).status().expect("runuser runs");
    assert!(status.success(), "{program} {args:?} failed");
}

fn values(prefix: &str, range: std::ops::Range<usize>) -> Vec<Message> {
    range.map(|i| Message { value: format!("{prefix}{i}").into_bytes(), ..Message::default() }).collect()
}

fn produce_to(node: &Node, topic: &str, messages: Vec<Message>) -> (usize, usize) {
    let bootstrap = node.bootstrap();
    produce(topic, &[("bootstrap.servers", &bootstrap), ("message.timeout.ms", "10000")], messages)
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let since = Instant::now();
    while !done() {
        assert!(since.elapsed() < Duration::from_secs(30), "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn signal(signal: &str, pid: &str) {
    assert!(Command::new("kill").args([signal, pid]).status().expect("kill runs").success(), "kill {signal} {pid}");
}

/// The standby made synchronous: both nodes name it an in-sync replica. Its WAL receiver
/// stopped: an acks=all Produce to a topic that wants two copies waits for it, until
/// synchronous replication is turned off (as Patroni does when it gives a standby up) and
/// the commit is let go with one copy: NOT_ENOUGH_REPLICAS_AFTER_APPEND, the record written.
fn a_commit_let_go_without_its_standby_is_answered_after_append(topic: &str) {
    PRIMARY.psql(
        "WITH t AS (INSERT INTO kafka.topics (name, partitions) VALUES ('two-copies', 1) RETURNING id) \
         INSERT INTO kafka.topic_configs SELECT id, 'min.insync.replicas', '2' FROM t",
    );
    assert_eq!(in_sync_replicas(&PRIMARY.bootstrap(), topic), vec![1], "asynchronous: the leader alone is in sync");
    PRIMARY.psql("ALTER SYSTEM SET synchronous_standby_names = '*'");
    PRIMARY.psql("SELECT pg_reload_conf()");
    wait_until("the standby to be synchronous", || PRIMARY.psql("SELECT sync_state FROM pg_stat_replication") == "sync");
    wait_until("both nodes to name the standby in sync", || {
        in_sync_replicas(&PRIMARY.bootstrap(), topic) == [1, 2] && in_sync_replicas(&STANDBY.bootstrap(), topic) == [1, 2]
    });
    assert_eq!(PRIMARY.psql("SELECT string_agg(node_id::text, ',') FROM kafka.cluster_in_sync"), "2");

    let receiver = STANDBY.psql("SELECT pid FROM pg_stat_wal_receiver");
    signal("-STOP", &receiver);
    let waiting = std::thread::spawn(|| {
        let mut raw = RawClient::connect_to(&PRIMARY.bootstrap());
        raw.send_message(ApiKey::Produce, 9, &produce_request("two-copies"));
        let produced: ProduceResponse = raw.read_response(ApiKey::Produce, 9);
        produced.responses[0].partition_responses[0].error_code
    });
    std::thread::sleep(Duration::from_millis(1500));
    let waited = !waiting.is_finished();
    // The commit is local; what waits is the answer, and the high watermark with it: no
    // consumer reads a record the standby does not have.
    let written_while_waiting = PRIMARY.psql("SELECT count(*) FROM kafka.topic_messages WHERE topic = 'two-copies'");
    let high_while_waiting = primary_high_watermark("two-copies");
    PRIMARY.psql("ALTER SYSTEM RESET synchronous_standby_names");
    PRIMARY.psql("SELECT pg_reload_conf()");
    let code = waiting.join();
    signal("-CONT", &receiver);
    assert!(waited, "the acks=all commit waited for the stopped standby");
    assert_eq!(code.expect("answered"), 20, "NOT_ENOUGH_REPLICAS_AFTER_APPEND");
    assert_eq!(PRIMARY.psql("SELECT count(*) FROM kafka.topic_messages WHERE topic = 'two-copies'"), "1", "written");
    assert_eq!((written_while_waiting.as_str(), high_while_waiting), ("1", 0), "committed, but not readable while it waited");
    assert_eq!(primary_high_watermark("two-copies"), 1, "readable once let go");
    wait_until("both nodes to name the leader alone in sync", || {
        in_sync_replicas(&PRIMARY.bootstrap(), topic) == [1] && in_sync_replicas(&STANDBY.bootstrap(), topic) == [1]
    });
}

/// The high watermark of the primary's partition 0 of `topic`, as Fetch answers it.
fn primary_high_watermark(topic: &str) -> i64 {
    let mut reader = RawClient::connect_to(&PRIMARY.bootstrap());
    reader.send_message(ApiKey::Fetch, 11, &fetch_from_start(topic, 100, 1 << 20));
    let response: FetchResponse = reader.read_response(ApiKey::Fetch, 11);
    let partition = &response.responses[0].partitions[0];
    assert_eq!(partition.error_code, 0, "fetched");
    partition.high_watermark
}

fn produce_request(topic: &'static str) -> ProduceRequest {
    let partition = PartitionProduceData::default().with_index(0).with_records(Some(one_record_batch(b"refused")));
    let data = TopicProduceData::default().with_name(TopicName(StrBytes::from_static_str(topic))).with_partition_data(vec![partition]);
    ProduceRequest::default().with_acks(-1).with_timeout_ms(5000).with_topic_data(vec![data])
}

#[test]
fn a_standby_serves_what_it_replayed_sends_writes_to_the_primary_and_takes_over_when_promoted() {
    for node in [&STANDBY, &PRIMARY] {
        node.cluster("stop");
        let _ = std::fs::remove_dir_all(node.data());
    }
    assert!(PRIMARY.cluster("start"), "the primary starts");
    let result = std::panic::catch_unwind(|| {
        let topic = "replicated";
        PRIMARY.psql(&format!("INSERT INTO kafka.topics (name, partitions) VALUES ('{topic}', 1)"));
        assert_eq!(produce_to(&PRIMARY, topic, values("a", 0..100)), (100, 0));

        as_postgres(
            "pg_basebackup",
            &["-h", "127.0.0.1", "-p", PRIMARY.pg_port, "-U", "postgres", "-D", &STANDBY.data(), "-R", "-X", "stream", "-c", "fast"],
        );
        assert!(STANDBY.cluster("start"), "the standby's worker listens");
        assert!(STANDBY.server_log().contains("a hot standby: reads only"), "the standby's worker says what it is");
        assert_eq!(STANDBY.psql("SELECT pg_is_in_recovery()"), "t");

        // Reads on the standby itself (Fetch sent to it directly: a client goes to the
        // leader): what was there at the backup, then what the primary takes after it, as
        // Postgres replays it.
        let standby_bootstrap = STANDBY.bootstrap();
        let mut reader = RawClient::connect_to(&standby_bootstrap);
        let mut fetched = || -> (i64, Vec<String>) {
            reader.send_message(ApiKey::Fetch, 11, &fetch_from_start(topic, 100, 1 << 20));
            let response: FetchResponse = reader.read_response(ApiKey::Fetch, 11);
            let partition = &response.responses[0].partitions[0];
            assert_eq!(partition.error_code, 0, "served by the standby");
            let mut records = partition.records.clone().unwrap_or_default();
            let mut values = Vec::new();
            while !records.is_empty() {
                let set = RecordBatchDecoder::decode(&mut records).unwrap();
                values.extend(set.records.into_iter().map(|r| String::from_utf8_lossy(&r.value.unwrap_or_default()).into_owned()));
            }
            (partition.high_watermark, values)
        };
        let a: Vec<String> = (0..100).map(|i| format!("a{i}")).collect();
        assert_eq!(fetched(), (100, a.clone()));
        assert_eq!(produce_to(&PRIMARY, topic, values("b", 0..50)), (50, 0));
        let since = Instant::now();
        let mut replayed = fetched();
        while replayed.0 < 150 && since.elapsed() < Duration::from_secs(30) {
            replayed = fetched();
        }
        let ab: Vec<String> = a.into_iter().chain((0..50).map(|i| format!("b{i}"))).collect();
        assert_eq!(replayed, (150, ab), "the standby serves what it replays");
        println!("the standby's high watermark followed the primary's acknowledgement in {:.2} s", since.elapsed().as_secs_f64());

        // Every node is named, the primary leads and coordinates.
        let mut raw = RawClient::connect_to(&standby_bootstrap);
        raw.send_message(ApiKey::Metadata, 9, &MetadataRequest::default().with_topics(None));
        let metadata: MetadataResponse = raw.read_response(ApiKey::Metadata, 9);
        let brokers: Vec<(i32, i32)> = metadata.brokers.iter().map(|b| (b.node_id.0, b.port)).collect();
        assert_eq!(brokers, vec![(1, 29111), (2, 29112)]);
        let partition = &metadata.topics.iter().find(|t| t.name.as_ref().is_some_and(|n| n.as_str() == topic)).unwrap().partitions[0];
        assert_eq!(
            (partition.leader_id.0, partition.replica_nodes.len(), metadata.controller_id.0),
            (1, 2, 1),
            "{metadata:?}\nleader on the primary: {:?}, on the standby: {:?}\nstandby log: {}",
            PRIMARY.psql("SELECT node_id FROM kafka.cluster_leader"),
            STANDBY.psql("SELECT node_id FROM kafka.cluster_leader"),
            STANDBY.server_log()
        );
        raw.send_message(ApiKey::FindCoordinator, 3, &FindCoordinatorRequest::default().with_key(StrBytes::from_static_str("g")));
        let found: FindCoordinatorResponse = raw.read_response(ApiKey::FindCoordinator, 3);
        assert_eq!((found.error_code, found.node_id.0, found.port), (0, 1, 29111));

        // Writes and topic changes sent to the standby anyway: the codes that send a client
        // to the primary. Nothing was written on the standby (it could not be).
        raw.send_message(ApiKey::Produce, 9, &produce_request(topic));
        let produced: ProduceResponse = raw.read_response(ApiKey::Produce, 9);
        assert_eq!(produced.responses[0].partition_responses[0].error_code, 6, "NOT_LEADER_OR_FOLLOWER");
        let create =
            CreateTopicsRequest::default().with_topics(vec![kafka_protocol::messages::create_topics_request::CreatableTopic::default()
                .with_name(TopicName(StrBytes::from_static_str("not-here")))
                .with_num_partitions(1)
                .with_replication_factor(1)]);
        raw.send_message(ApiKey::CreateTopics, 7, &create);
        let created: CreateTopicsResponse = raw.read_response(ApiKey::CreateTopics, 7);
        assert_eq!(created.topics[0].error_code, 41, "NOT_CONTROLLER");
        assert!(!STANDBY.server_log().contains("cannot assign TransactionIds"), "the standby's worker never tried to write");

        // Clients that know only the standby produce and consume in a group: Metadata and
        // FindCoordinator send them to the primary.
        assert_eq!(produce_to(&STANDBY, topic, values("s", 0..10)), (10, 0), "produced through the standby's metadata");
        let member: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &standby_bootstrap)
            .set("group.id", "standby-group")
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .create()
            .expect("consumer");
        member.subscribe(&[topic]).unwrap();
        let consumed = receive(&member, 160, Duration::from_secs(60));
        assert_eq!(consumed.len(), 160, "the group consumed everything");
        member.commit_consumer_state(CommitMode::Sync).expect("offsets committed at the primary");
        drop(member);
        let committed = "SELECT committed_offset FROM kafka.consumer_offsets WHERE group_id = 'standby-group'";
        assert_eq!(PRIMARY.psql(committed), "160");
        // A consumer in the standby's rack (KIP-392) is sent there by the leader and reads
        // everything from it.
        let fetches = "SELECT requests FROM kafka.api_stats WHERE api = 'Fetch'";
        let fetches_before: i64 = STANDBY.psql(fetches).parse().unwrap();
        let primary_bootstrap = PRIMARY.bootstrap();
        let follower = consumer(topic, &[0], Offset::Beginning, &[("bootstrap.servers", &primary_bootstrap), ("client.rack", "rack-b")]);
        assert_eq!(receive(&follower, 160, Duration::from_secs(60)).len(), 160, "read through the standby of its rack");
        drop(follower);
        // kafka.api_stats is published every second or so: wait for it.
        let published = Instant::now();
        let mut fetches_after: i64 = STANDBY.psql(fetches).parse().unwrap();
        while fetches_after == fetches_before && published.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(100));
            fetches_after = STANDBY.psql(fetches).parse().unwrap();
        }
        assert!(fetches_after > fetches_before, "the rack-b consumer fetched from the standby ({fetches_before} -> {fetches_after})");
        let replayed_all = Instant::now();
        while STANDBY.psql(committed) != "160" && replayed_all.elapsed() < Duration::from_secs(30) {
            std::thread::sleep(Duration::from_millis(50));
        }
        assert_eq!(STANDBY.psql(&format!("SELECT count(*) FROM kafka.topic_messages WHERE topic = '{topic}'")), "160");

        a_commit_let_go_without_its_standby_is_answered_after_append(topic);

        // Promotion: the worker restarts as the primary's and takes writes after what it
        // replayed (offsets go on from 150).
        let promoted_at = Instant::now();
        as_postgres("pg_ctl", &["-D", &STANDBY.data(), "promote", "-w"]);
        let listening = |log: &str| log.lines().filter(|l| l.contains("pg_kafka: listening for Kafka clients")).count();
        let before = listening(&STANDBY.server_log());
        while listening(&STANDBY.server_log()) == before && promoted_at.elapsed() < Duration::from_secs(60) {
            std::thread::sleep(Duration::from_millis(50));
        }
        let log = STANDBY.server_log();
        assert!(log.contains("this standby was promoted"), "the worker saw the promotion");
        let restarted = log.lines().rev().find(|l| l.contains("pg_kafka: listening for Kafka clients")).unwrap_or_default();
        assert!(!restarted.contains("hot standby"), "restarted as the primary's: {restarted}");
        assert_eq!(produce_to(&STANDBY, topic, values("c", 0..10)), (10, 0), "the promoted standby takes writes");
        let mut raw = RawClient::connect_to(&standby_bootstrap);
        raw.send_message(ApiKey::Metadata, 9, &MetadataRequest::default().with_topics(None));
        let metadata: MetadataResponse = raw.read_response(ApiKey::Metadata, 9);
        assert_eq!(metadata.controller_id.0, 2, "the promoted node leads");
        assert_eq!(STANDBY.psql("SELECT node_id FROM kafka.cluster_leader"), "2");
        // The standby's reader processes ended with its broker; the primary's has its own.
        let readers = "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pg_kafka reader'";
        let since = Instant::now();
        while STANDBY.psql(readers) != "2" && since.elapsed() < Duration::from_secs(30) {
            std::thread::sleep(Duration::from_millis(100));
        }
        assert_eq!(STANDBY.psql(readers), "2", "the promoted node's broker has its readers");
        println!("promotion to the first write acknowledged by the promoted node: {:.1} s", promoted_at.elapsed().as_secs_f64());
        let offsets = STANDBY.psql(&format!(
            "SELECT min(m.\"offset\") || ' ' || max(m.\"offset\") FROM kafka.topic_messages m WHERE m.topic = '{topic}' AND convert_from(m.value, 'UTF8') LIKE 'c%'"
        ));
        assert_eq!(offsets, "160 169");

        // The old primary, which no standby follows now, told to replicate synchronously:
        // its commits do not wait for a standby that is gone (as Kafka's ISR shrinks to the
        // leader), and acks=all to a topic that wants two copies is NOT_ENOUGH_REPLICAS.
        PRIMARY.psql(
            "WITH t AS (INSERT INTO kafka.topics (name, partitions) VALUES ('durable', 1) RETURNING id) \
             INSERT INTO kafka.topic_configs SELECT id, 'min.insync.replicas', '2' FROM t",
        );
        PRIMARY.psql("INSERT INTO kafka.topics (name, partitions) VALUES ('relaxed', 1)");
        // Last: from now on a SQL session's commit on it waits for a standby (Postgres).
        PRIMARY.psql("ALTER SYSTEM SET synchronous_standby_names = '*'");
        PRIMARY.psql("SELECT pg_reload_conf()");
        let mut raw = RawClient::connect_to(&PRIMARY.bootstrap());
        let mut code = 0;
        let since = Instant::now();
        while code != 19 && since.elapsed() < Duration::from_secs(20) {
            raw.send_message(ApiKey::Produce, 9, &produce_request("durable"));
            let produced: ProduceResponse = raw.read_response(ApiKey::Produce, 9);
            code = produced.responses[0].partition_responses[0].error_code;
            std::thread::sleep(Duration::from_millis(100));
        }
        assert_eq!(code, 19, "NOT_ENOUGH_REPLICAS once the worker reloaded");
        let started = Instant::now();
        assert_eq!(produce_to(&PRIMARY, "relaxed", values("r", 0..10)), (10, 0), "acks=all with one copy wanted");
        assert!(started.elapsed() < Duration::from_secs(5), "no commit waited for the gone standby");
        let bootstrap = PRIMARY.bootstrap();
        let one = produce("durable", &[("bootstrap.servers", &bootstrap), ("acks", "1")], values("d", 0..10));
        assert_eq!(one, (10, 0), "acks=1 is not held to min.insync.replicas");
    });
    for node in [&STANDBY, &PRIMARY] {
        node.cluster("stop");
    }
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}
