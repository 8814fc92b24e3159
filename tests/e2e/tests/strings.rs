//! Client-controlled strings and arrays that broke something once: NUL bytes in headers
//! and in commit metadata round-trip as Kafka keeps them, and an empty groups array is
//! answered, not a panic.

use kafka_protocol::messages::offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic};
use kafka_protocol::messages::offset_fetch_request::{OffsetFetchRequestGroup, OffsetFetchRequestTopics};
use kafka_protocol::messages::{
    ApiKey, GroupId, OffsetCommitRequest, OffsetCommitResponse, OffsetFetchRequest, OffsetFetchResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use pg_kafka_e2e::produce::{produce, Message};
use pg_kafka_e2e::*;

/// confluent-kafka producing `headers=[('h', b'a\x00b')]` made `kafka.headers()` fail, so
/// every `kafka.consume()` of the group errored and its offset never moved, and any
/// `SELECT headers FROM kafka.topic_messages` over the row failed.
#[test]
fn a_header_with_a_nul_byte_is_read_with_sql_and_consumed() {
    let topic = "e2e-strings-nul-header";
    create_topic(topic, 1);
    let message = |value: &[u8], headers: Vec<(String, Vec<u8>)>| Message { value: value.to_vec(), headers, ..Message::default() };
    let sent = [message(b"one", vec![("h".into(), b"a\0b".to_vec()), ("k".into(), b"v".to_vec())]), message(b"two", vec![])];
    assert_eq!(produce(topic, &[], sent), (2, 0));
    let headers = psql(&format!("SELECT headers::text FROM kafka.topic_messages WHERE topic = '{topic}' ORDER BY \"offset\" LIMIT 1"));
    assert_eq!(headers, r#"{"h": "\\x610062", "k": "v"}"#);
    let consumed = psql(&format!("SELECT string_agg(convert_from(value, 'UTF8'), ',') FROM kafka.consume('e2e-nul-group', '{topic}', 10)"));
    assert_eq!(consumed, "one,two");
    let moved = psql("SELECT committed_offset FROM kafka.consumer_offsets WHERE group_id = 'e2e-nul-group'");
    assert_eq!(moved, "2", "the group's offset moved past the row");
    // The hex form goes back in byte-exact.
    psql(&format!("SELECT kafka.produce('{topic}', NULL::bytea, 'three'::bytea, '[[\"h\", \"\\\\x610062\"]]', 0)"));
    let stored = psql(&format!("SELECT encode(m.headers, 'hex') FROM {} WHERE m.\"offset\" = 2", pg_kafka_e2e::messages_of(topic)));
    assert_eq!(stored, "020268066100 62".replace(' ', ""));
}

/// OffsetCommit metadata holding a NUL byte was refused with INVALID_REQUEST; Kafka
/// stores it and returns it byte-exact (librdkafka's tests 0099 and 0130 commit such).
#[test]
fn commit_metadata_with_a_nul_byte_round_trips() {
    let topic = "e2e-strings-nul-metadata";
    create_topic(topic, 1);
    let partition = OffsetCommitRequestPartition::default()
        .with_partition_index(0)
        .with_committed_offset(7)
        .with_committed_metadata(Some(StrBytes::from_static_str("meta\0data")));
    let commit = OffsetCommitRequest::default()
        .with_group_id(GroupId(StrBytes::from_static_str("e2e-nul-metadata")))
        .with_generation_id_or_member_epoch(-1)
        .with_topics(vec![OffsetCommitRequestTopic::default()
            .with_name(TopicName(StrBytes::from_static_str(topic)))
            .with_partitions(vec![partition])]);
    let mut client = RawClient::connect();
    client.send_message(ApiKey::OffsetCommit, 8, &commit);
    let committed: OffsetCommitResponse = client.read_response(ApiKey::OffsetCommit, 8);
    assert_eq!(committed.topics[0].partitions[0].error_code, 0);
    let asked =
        OffsetFetchRequestGroup::default().with_group_id(GroupId(StrBytes::from_static_str("e2e-nul-metadata"))).with_topics(Some(vec![
            OffsetFetchRequestTopics::default().with_name(TopicName(StrBytes::from_static_str(topic))).with_partition_indexes(vec![0]),
        ]));
    client.send_message(ApiKey::OffsetFetch, 8, &OffsetFetchRequest::default().with_groups(vec![asked]));
    let fetched: OffsetFetchResponse = client.read_response(ApiKey::OffsetFetch, 8);
    let answer = &fetched.groups[0].topics[0].partitions[0];
    assert_eq!((answer.committed_offset, answer.metadata.as_deref()), (7, Some("meta\0data")));
}

/// OffsetFetch v8 with an empty groups array panicked in the handler (1.4 KB of
/// backtrace logged per 24-byte request): Kafka answers no groups.
#[test]
fn offset_fetch_with_no_groups_is_answered() {
    assert_survives("OffsetFetch v8 with no groups", || {
        let mut client = RawClient::connect();
        for _ in 0..3 {
            client.send_message(ApiKey::OffsetFetch, 8, &OffsetFetchRequest::default());
            let fetched: OffsetFetchResponse = client.read_response(ApiKey::OffsetFetch, 8);
            assert!(fetched.groups.is_empty());
        }
    });
    assert!(!server_log().contains("OffsetFetch v8 handler failed"), "the handler panicked");
}
