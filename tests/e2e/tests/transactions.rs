//! Transactions with librdkafka (V1: AddPartitionsToTxn v0, EndTxn, TxnOffsetCommit):
//! committed and aborted transactions as read_committed and read_uncommitted consumers
//! see them, and consume-transform-produce with the group's offsets in the transaction.

use std::time::Duration;

use pg_kafka_e2e::transactions::{create_batch_topic, numbered, producer, send, values};
use pg_kafka_e2e::*;
use rdkafka::consumer::{Consumer, ConsumerGroupMetadata};
use rdkafka::producer::Producer;
use rdkafka::{Offset, TopicPartitionList};

const QUIET: Duration = Duration::from_secs(2);

#[test]
fn librdkafka_commits_and_aborts_as_read_committed_consumers_see_them() {
    let topic = format!("e2e-txn-{}", std::process::id());
    create_batch_topic(&topic, 1);
    let producer = producer(&format!("e2e-txn-{}", std::process::id()), &[]);
    producer.begin_transaction().unwrap();
    send(&producer, &topic, &numbered("a", 20));
    producer.commit_transaction(Duration::from_secs(30)).unwrap();
    producer.begin_transaction().unwrap();
    send(&producer, &topic, &numbered("b", 7));
    producer.abort_transaction(Duration::from_secs(30)).unwrap();
    producer.begin_transaction().unwrap();
    send(&producer, &topic, &numbered("c", 3));
    // Open: read_committed stops before it.
    assert_eq!(values(&topic, "read_committed", QUIET), numbered("a", 20));
    producer.commit_transaction(Duration::from_secs(30)).unwrap();
    let committed: Vec<String> = [numbered("a", 20), numbered("c", 3)].concat();
    assert_eq!(values(&topic, "read_committed", QUIET), committed);
    assert_eq!(values(&topic, "read_uncommitted", QUIET), [numbered("a", 20), numbered("b", 7), numbered("c", 3)].concat());
    let sql = psql(&format!("SELECT string_agg(value_text, ',' ORDER BY \"offset\") FROM kafka.topic_messages WHERE topic = '{topic}'"));
    assert_eq!(sql, committed.join(","), "SQL readers see committed records only");
    let aborted = psql(&format!(
        "SELECT first_offset || '-' || last_offset FROM kafka.aborted_transactions a JOIN kafka.topics t ON t.id = a.topic_id \
         WHERE t.name = '{topic}'"
    ));
    assert_eq!(aborted, "21-28", "20 records and a marker, then 7 aborted ones and their marker");
}

#[test]
fn librdkafka_sends_a_groups_offsets_with_its_transaction() {
    let (input, output) = (format!("e2e-txn-in-{}", std::process::id()), format!("e2e-txn-out-{}", std::process::id()));
    create_batch_topic(&input, 1);
    create_batch_topic(&output, 1);
    let (delivered, _) =
        produce::produce(&input, &[], (0..10).map(|i| produce::Message { value: format!("in{i}").into_bytes(), ..Default::default() }));
    assert_eq!(delivered, 10);
    let group = format!("e2e-txn-group-{}", std::process::id());
    let member = groups::member(&group, &input);
    let read = consume::receive(&member, 10, Duration::from_secs(60));
    assert_eq!(read.len(), 10);
    let producer = producer(&format!("e2e-txn-ctp-{}", std::process::id()), &[]);
    let metadata: ConsumerGroupMetadata = member.group_metadata().expect("group metadata");
    let mut offsets = TopicPartitionList::new();
    offsets.add_partition_offset(&input, 0, Offset::Offset(10)).unwrap();
    // An aborted round first: its output and offsets never count.
    for commit in [false, true] {
        producer.begin_transaction().unwrap();
        let out: Vec<String> = read.iter().map(|m| String::from_utf8_lossy(&m.value).replace("in", "out")).collect();
        send(&producer, &output, &out);
        producer.send_offsets_to_transaction(&offsets, &metadata, Duration::from_secs(30)).unwrap();
        if commit {
            producer.commit_transaction(Duration::from_secs(30)).unwrap();
        } else {
            producer.abort_transaction(Duration::from_secs(30)).unwrap();
            let committed = member.committed_offsets(offsets.clone(), Duration::from_secs(10)).unwrap();
            assert_eq!(committed.find_partition(&input, 0).unwrap().offset(), Offset::Invalid, "nothing committed yet");
        }
    }
    let committed = member.committed_offsets(offsets.clone(), Duration::from_secs(10)).unwrap();
    assert_eq!(committed.find_partition(&input, 0).unwrap().offset(), Offset::Offset(10));
    assert_eq!(values(&output, "read_committed", QUIET), numbered("out", 10));
}
