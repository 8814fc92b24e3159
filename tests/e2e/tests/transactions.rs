//! Transactions with librdkafka (V1: AddPartitionsToTxn v0, EndTxn, TxnOffsetCommit):
//! committed and aborted transactions as read_committed and read_uncommitted consumers
//! see them, and consume-transform-produce with the group's offsets in the transaction.
//! The same scenario with Python's three clients (confluent-kafka, kafka-python, aiokafka:
//! `clients/transactions.py`), each read back by its own consumer.

use std::time::Duration;

use pg_kafka_e2e::transactions::{create_batch_topic, create_topic_in, numbered, producer, send, values};
use pg_kafka_e2e::*;
use rdkafka::consumer::{Consumer, ConsumerGroupMetadata};
use rdkafka::producer::Producer;
use rdkafka::{Offset, TopicPartitionList};

const QUIET: Duration = Duration::from_secs(2);

#[test]
fn librdkafka_commits_and_aborts_as_read_committed_consumers_see_them() {
    for layout in ["batches", "rows"] {
        librdkafka_commits_and_aborts_on(layout);
    }
}

fn librdkafka_commits_and_aborts_on(layout: &str) {
    let topic = format!("e2e-txn-{layout}-{}", std::process::id());
    create_topic_in(&topic, 1, layout);
    let producer = producer(&format!("e2e-txn-{layout}-{}", std::process::id()), &[]);
    producer.begin_transaction().unwrap();
    send(&producer, &topic, &numbered("a", 20));
    producer.commit_transaction(Duration::from_secs(30)).unwrap();
    producer.begin_transaction().unwrap();
    send(&producer, &topic, &numbered("b", 7));
    producer.abort_transaction(Duration::from_secs(30)).unwrap();
    producer.begin_transaction().unwrap();
    send(&producer, &topic, &numbered("c", 3));
    // Open: read_committed stops before it.
    assert_eq!(values(&topic, "read_committed", QUIET), numbered("a", 20), "{layout}");
    producer.commit_transaction(Duration::from_secs(30)).unwrap();
    let committed: Vec<String> = [numbered("a", 20), numbered("c", 3)].concat();
    assert_eq!(values(&topic, "read_committed", QUIET), committed, "{layout}");
    let all = [numbered("a", 20), numbered("b", 7), numbered("c", 3)].concat();
    assert_eq!(values(&topic, "read_uncommitted", QUIET), all, "{layout}");
    let sql = psql(&format!("SELECT string_agg(value_text, ',' ORDER BY \"offset\") FROM kafka.topic_messages WHERE topic = '{topic}'"));
    assert_eq!(sql, committed.join(","), "{layout}: SQL readers see committed records only");
    let consumed = psql(&format!(
        "SELECT string_agg(convert_from(value, 'UTF8'), ',' ORDER BY \"offset\") FROM kafka.consume('g-{topic}', '{topic}', 1000)"
    ));
    assert_eq!(consumed, committed.join(","), "{layout}: kafka.consume() takes committed records only");
    let aborted = psql(&format!(
        "SELECT first_offset || '-' || last_offset FROM kafka.aborted_transactions a JOIN kafka.topics t ON t.id = a.topic_id \
         WHERE t.name = '{topic}'"
    ));
    assert_eq!(aborted, "21-28", "{layout}: 20 records and a marker, then 7 aborted ones and their marker");
}

#[test]
fn python_clients_commit_and_abort_with_offsets_as_their_own_consumers_see_it() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/clients/transactions.py");
    let committed: Vec<String> = [numbered("a", 10), numbered("c", 3)].concat();
    let all: Vec<String> = [numbered("a", 10), numbered("b", 5), numbered("c", 3)].concat();
    for (client, layout) in [("ck", "batches"), ("kp", "batches"), ("aio", "batches"), ("ck", "rows"), ("kp", "rows"), ("aio", "rows")] {
        let name = format!("e2e-txn-py-{client}-{layout}-{}", std::process::id());
        create_topic_in(&name, 1, layout);
        let output = std::process::Command::new("timeout")
            .args(["120", "python3", script, client, &bootstrap(), &name, &name, &name])
            .output()
            .expect("python3 runs");
        let stdout = String::from_utf8_lossy(&output.stdout);
        let answer: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap_or_default())
            .unwrap_or_else(|_| panic!("{client}: no answer ({stdout:?}, {})", String::from_utf8_lossy(&output.stderr)));
        let list = |key: &str| -> Vec<String> {
            let values = answer[key].as_array().unwrap_or_else(|| panic!("{client}: {answer}"));
            values.iter().map(|v| v.as_str().unwrap_or_default().to_owned()).collect()
        };
        assert_eq!(list("committed"), committed, "{client}: read_committed skips the aborted round");
        assert_eq!(list("uncommitted"), all, "{client}: read_uncommitted sees every record");
        let offset = psql(&format!("SELECT committed_offset FROM kafka.consumer_offsets WHERE group_id = '{name}'"));
        assert_eq!(offset, "7", "{client}: the last committed transaction's offset, never the aborted one's");
    }
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

/// Hostile transactional requests: lying array lengths, ids never initialised, a
/// transactional id with NUL bytes (stored byte-exact, shown escaped), EndTxn of another
/// producer's transaction. Each gets a Kafka error or a closed connection; the worker and a
/// psql session held across them live on.
#[test]
fn hostile_transactional_requests_get_kafka_errors_and_nothing_else() {
    use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
    use kafka_protocol::messages::{
        AddPartitionsToTxnRequest, AddPartitionsToTxnResponse, ApiKey, EndTxnRequest, EndTxnResponse, InitProducerIdRequest,
        InitProducerIdResponse, ProducerId, TopicName, TransactionalId,
    };
    use kafka_protocol::protocol::StrBytes;
    use kafka_protocol::ResponseError;
    let topic = format!("e2e-txn-hostile-{}", std::process::id());
    create_batch_topic(&topic, 1);
    assert_survives("hostile transactional requests", || {
        // AddPartitionsToTxn v3 whose topics array claims a billion entries.
        let mut body = Vec::new();
        body.extend_from_slice(&[0, 2, b't', b'x']);
        body.extend_from_slice(&7i64.to_be_bytes());
        body.extend_from_slice(&0i16.to_be_bytes());
        body.extend_from_slice(&1_000_000_000i32.to_be_bytes());
        let mut client = RawClient::connect();
        client.send(ApiKey::AddPartitionsToTxn, 3, &body);
        assert!(client.is_closed_by_server());

        let nul_id = "tx\0with\0nul";
        let mut client = RawClient::connect();
        let init = InitProducerIdRequest::default()
            .with_transactional_id(Some(TransactionalId(StrBytes::from_static_str(nul_id))))
            .with_transaction_timeout_ms(60_000);
        client.send_message(ApiKey::InitProducerId, 4, &init);
        let r: InitProducerIdResponse = client.read_response(ApiKey::InitProducerId, 4);
        assert_eq!(r.error_code, 0);
        let shown = psql("SELECT transactional_id FROM kafka.transactions WHERE transactional_id LIKE 'tx\\\\000with%'");
        assert_eq!(shown, "tx\\000with\\000nul", "stored byte-exact, shown escaped");

        // Another producer id for that transactional id, and an id never initialised.
        let end = |id: &'static str, producer: i64| {
            EndTxnRequest::default()
                .with_transactional_id(TransactionalId(StrBytes::from_static_str(id)))
                .with_producer_id(ProducerId(producer))
                .with_committed(true)
        };
        client.send_message(ApiKey::EndTxn, 3, &end(nul_id, r.producer_id.0 + 1));
        let e: EndTxnResponse = client.read_response(ApiKey::EndTxn, 3);
        assert_eq!(e.error_code, ResponseError::InvalidProducerIdMapping.code());
        for i in 0..1000 {
            let id: &'static str = format!("never-initialised-{i}").leak();
            client.send_message(ApiKey::EndTxn, 3, &end(id, 1));
            let e: EndTxnResponse = client.read_response(ApiKey::EndTxn, 3);
            assert_eq!(e.error_code, ResponseError::InvalidProducerIdMapping.code());
        }
        assert_eq!(psql("SELECT count(*) FROM kafka.transactions WHERE transactional_id LIKE 'never-initialised-%'"), "0");
        // Transactions V2's EndTxn with epochs at the ends of the range: fenced, never a
        // retry by wrapping arithmetic, and no producer to go on with.
        for epoch in [i16::MAX, i16::MIN, -1] {
            client.send_message(ApiKey::EndTxn, 5, &end(nul_id, r.producer_id.0).with_producer_epoch(epoch));
            let e: EndTxnResponse = client.read_response(ApiKey::EndTxn, 5);
            assert_eq!((e.error_code, e.producer_id.0, e.producer_epoch), (ResponseError::ProducerFenced.code(), -1, -1), "epoch {epoch}");
        }

        // Partitions that do not exist, in a topic that does.
        let add = AddPartitionsToTxnRequest::default()
            .with_v3_and_below_transactional_id(TransactionalId(StrBytes::from_static_str(nul_id)))
            .with_v3_and_below_producer_id(r.producer_id)
            .with_v3_and_below_producer_epoch(r.producer_epoch)
            .with_v3_and_below_topics(vec![AddPartitionsToTxnTopic::default()
                .with_name(TopicName(StrBytes::from_string(topic.clone())))
                .with_partitions(vec![0, -1, i32::MAX])]);
        client.send_message(ApiKey::AddPartitionsToTxn, 3, &add);
        let a: AddPartitionsToTxnResponse = client.read_response(ApiKey::AddPartitionsToTxn, 3);
        let codes: Vec<i16> = a.results_by_topic_v3_and_below[0].results_by_partition.iter().map(|p| p.partition_error_code).collect();
        let (not_attempted, unknown) = (ResponseError::OperationNotAttempted.code(), ResponseError::UnknownTopicOrPartition.code());
        assert_eq!(codes, vec![not_attempted, unknown, unknown]);
    });
}
