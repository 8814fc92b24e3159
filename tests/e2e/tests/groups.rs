//! Consumer groups with real clients: rdkafka members sharing partitions, rebalancing
//! when members join or die, committing offsets that `kafka.consumer_offsets` and the
//! lag view show.

use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::time::Duration;

use pg_kafka_e2e::groups::{assigned, member, Ledger};
use pg_kafka_e2e::produce::{produce, Message};
use pg_kafka_e2e::{bootstrap, create_topic, psql, RawClient};

fn produce_round(topic: &str, round: &str, per_partition: usize) {
    let messages = (0..4).flat_map(|p| {
        (0..per_partition).map(move |i| Message { partition: p, value: format!("{round}-{p}-{i}").into_bytes(), ..Message::default() })
    });
    assert_eq!(produce(topic, &[], messages), (4 * per_partition, 0));
}

fn all_partitions() -> BTreeSet<i32> {
    (0..4).collect()
}

#[test]
fn members_split_partitions_rebalance_when_one_joins_and_never_reread_committed_messages() {
    let (topic, group) = ("e2e-group-split", "e2e-split");
    create_topic(topic, 4);
    produce_round(topic, "first", 100);

    let (a, b) = (member(group, topic), member(group, topic));
    let mut ledger = Ledger::default();
    let split = ledger
        .poll_until(&[&a, &b], Duration::from_secs(60), |l| l.committed.len() == 400 && assigned(&a).len() == 2 && assigned(&b).len() == 2);
    assert!(split, "two members hold 2 partitions each and read all 400 (got {})", ledger.committed.len());
    assert!(assigned(&a).is_disjoint(&assigned(&b)));

    let c = member(group, topic);
    produce_round(topic, "second", 50);
    let rebalanced = ledger.poll_until(&[&a, &b, &c], Duration::from_secs(90), |l| {
        let (sa, sb, sc) = (assigned(&a), assigned(&b), assigned(&c));
        let union: BTreeSet<i32> = sa.iter().chain(&sb).chain(&sc).copied().collect();
        l.committed.len() == 600 && !sc.is_empty() && union == all_partitions() && sa.len() + sb.len() + sc.len() == 4
    });
    assert!(rebalanced, "the third member got partitions and all 600 were read (got {})", ledger.committed.len());
    let values: BTreeSet<&Vec<u8>> = ledger.committed.iter().map(|(_, _, v)| v).collect();
    assert_eq!(values.len(), 600, "every message exactly once");

    let lag = psql(&format!("SELECT sum(lag), count(*) FROM kafka.consumer_lag WHERE group_id = '{group}' AND topic = '{topic}'"));
    assert_eq!(lag, "0|4", "the lag view shows every partition caught up");
}

#[test]
fn a_killed_members_partitions_move_after_the_session_timeout() {
    let (topic, group) = ("e2e-group-kill", "e2e-kill");
    create_topic(topic, 4);
    produce_round(topic, "first", 10);
    // A member in another process, killed without leaving the group.
    let mut victim = Command::new("kcat")
        .args(["-b", &bootstrap(), "-G", group, topic, "-q", "-o", "beginning"])
        .args(["-X", "session.timeout.ms=6000", "-X", "heartbeat.interval.ms=500", "-X", "enable.auto.commit=false"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("kcat runs");
    let survivor = member(group, topic);
    let mut ledger = Ledger::default();
    let shared = ledger.poll_until(&[&survivor], Duration::from_secs(60), |_| assigned(&survivor).len() == 2);
    assert!(shared, "kcat and the survivor hold 2 partitions each (survivor has {:?})", assigned(&survivor));

    victim.kill().expect("kill -9 kcat");
    victim.wait().unwrap();
    let started = std::time::Instant::now();
    let moved = ledger.poll_until(&[&survivor], Duration::from_secs(60), |_| assigned(&survivor) == all_partitions());
    assert!(moved, "the survivor took over every partition (has {:?})", assigned(&survivor));
    assert!(started.elapsed() >= Duration::from_secs(4), "not before the session timeout could pass");
    let everything = ledger.poll_until(&[&survivor], Duration::from_secs(30), |l| l.committed.len() == 40);
    assert!(everything, "the survivor read all 40 messages (got {})", ledger.committed.len());
}

#[test]
fn group_apis_show_members_and_refuse_to_delete_a_live_group() {
    let (topic, group) = ("e2e-group-admin", "e2e-described");
    create_topic(topic, 4);
    produce_round(topic, "first", 5);
    let consumer = member(group, topic);
    let mut ledger = Ledger::default();
    assert!(ledger.poll_until(&[&consumer], Duration::from_secs(60), |l| l.committed.len() == 20));

    let admin: rdkafka::admin::AdminClient<_> =
        rdkafka::ClientConfig::new().set("bootstrap.servers", bootstrap()).create().expect("admin client");
    let options = rdkafka::admin::AdminOptions::new().request_timeout(Some(Duration::from_secs(10)));
    let refused = pg_kafka_e2e::block_on(admin.delete_groups(&[group], &options)).expect("delete_groups answers");
    assert!(matches!(&refused[0], Err((_, rdkafka::types::RDKafkaErrorCode::NonEmptyGroup))), "{refused:?}");
    drop(consumer); // closes: LeaveGroup
    let deleted = pg_kafka_e2e::block_on(admin.delete_groups(&[group], &options)).expect("delete_groups answers");
    assert!(deleted[0].is_ok(), "{deleted:?}");
    assert_eq!(psql(&format!("SELECT count(*) FROM kafka.consumer_offsets WHERE group_id = '{group}'")), "0");
}

#[test]
fn kafka_python_produces_idempotently_and_consumes_in_a_group() {
    let (topic, group) = ("e2e-group-python", "e2e-python");
    create_topic(topic, 2);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/python/group.py");
    let output = Command::new("python3").args([script, &bootstrap(), topic, group, "50"]).output().unwrap();
    assert!(output.status.success(), "kafka-python: {}", String::from_utf8_lossy(&output.stderr));
    let printed = String::from_utf8(output.stdout).unwrap();
    assert_eq!(printed.trim(), r#"{"distinct": 50, "committed": {"0": 25, "1": 25}}"#);
    let producers = psql(&format!(
        "SELECT count(DISTINCT producer_id) FROM kafka.producer_state s JOIN kafka.topics t ON t.id = s.topic_id WHERE t.name = '{topic}'"
    ));
    assert_eq!(producers, "1", "the producer was idempotent (it has sequence state)");
    assert_eq!(psql(&format!("SELECT sum(committed_offset) FROM kafka.consumer_offsets WHERE group_id = '{group}'")), "50");
}

/// An OffsetCommit is answered only once its transaction committed: right after each
/// answer, another session already sees the offset (227 of 300 were not, when the answer
/// was sent from inside the storage job).
#[test]
fn a_committed_offset_is_visible_to_sql_as_soon_as_it_is_acknowledged() {
    use kafka_protocol::messages::offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic};
    use kafka_protocol::messages::{ApiKey, GroupId, OffsetCommitRequest, OffsetCommitResponse, TopicName};
    let (topic, group) = ("e2e-visible-commits", "e2e-visible-group");
    create_topic(topic, 1);
    let mut client = RawClient::connect();
    for offset in 1..=100i64 {
        let partition = OffsetCommitRequestPartition::default().with_partition_index(0).with_committed_offset(offset);
        let request = OffsetCommitRequest::default()
            .with_group_id(GroupId(group.to_owned().into()))
            .with_generation_id_or_member_epoch(-1)
            .with_topics(vec![OffsetCommitRequestTopic::default()
                .with_name(TopicName(topic.to_owned().into()))
                .with_partitions(vec![partition])]);
        client.send_message(ApiKey::OffsetCommit, 8, &request);
        let response: OffsetCommitResponse = client.read_response(ApiKey::OffsetCommit, 8);
        assert_eq!(response.topics[0].partitions[0].error_code, 0);
        let seen = psql(&format!("SELECT committed_offset FROM kafka.consumer_offsets WHERE group_id = '{group}'"));
        assert_eq!(seen, offset.to_string(), "commit {offset} answered before it was visible");
    }
}
