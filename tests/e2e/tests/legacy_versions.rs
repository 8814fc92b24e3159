//! Request versions Kafka 4 dropped that deployed clients still send (old sarama, Burrow,
//! old kafka-go): served through translation, or answered UNSUPPORTED_VERSION in their own
//! format, never a silent close. Bodies are written by hand here, as those clients write
//! them: the codec the server uses cannot encode these versions.

use kafka_protocol::messages::ApiKey;
use pg_kafka_e2e::*;

fn str16(s: &str) -> Vec<u8> {
    let mut out = (s.len() as i16).to_be_bytes().to_vec();
    out.extend_from_slice(s.as_bytes());
    out
}

/// Sends a request and returns its response body (after the correlation id, checked).
fn exchange(key: ApiKey, version: i16, body: &[u8]) -> Vec<u8> {
    let mut client = RawClient::connect();
    client.send(key, version, body);
    let frame = client.read_frame().expect("an answer, not a closed connection");
    assert_eq!(&frame[..4], &77i32.to_be_bytes(), "correlation id");
    frame[4..].to_vec()
}

fn i16_at(bytes: &[u8], at: usize) -> i16 {
    i16::from_be_bytes(bytes[at..at + 2].try_into().unwrap())
}

fn i64_at(bytes: &[u8], at: usize) -> i64 {
    i64::from_be_bytes(bytes[at..at + 8].try_into().unwrap())
}

#[test]
fn old_sarama_commits_with_offset_commit_v1_and_lists_with_list_offsets_v0() {
    let topic = "e2e-legacy-commit";
    psql(&format!("INSERT INTO kafka.topics (name, partitions) VALUES ('{topic}', 1) ON CONFLICT DO NOTHING"));
    psql(&format!("SELECT kafka.produce('{topic}', 'k', 'a'), kafka.produce('{topic}', 'k', 'b')"));
    // OffsetCommit v1: group, generation -1, member "", one partition at offset 2.
    let mut commit = str16("e2e-legacy-group");
    commit.extend((-1i32).to_be_bytes());
    commit.extend(str16(""));
    commit.extend(1i32.to_be_bytes());
    commit.extend(str16(topic));
    commit.extend(1i32.to_be_bytes());
    commit.extend(0i32.to_be_bytes());
    commit.extend(2i64.to_be_bytes());
    commit.extend((-1i64).to_be_bytes());
    commit.extend(str16("meta"));
    let answer = exchange(ApiKey::OffsetCommit, 1, &commit);
    // topics[1] name, partitions[1] index, error
    let error_at = 4 + 2 + topic.len() + 4 + 4;
    assert_eq!(i16_at(&answer, error_at), 0, "{answer:?}");
    assert_eq!(answer.len(), error_at + 2);
    assert_eq!(
        psql("SELECT committed_offset || ' ' || metadata FROM kafka.consumer_offsets WHERE group_id = 'e2e-legacy-group'"),
        "2 meta"
    );

    // ListOffsets v0 (Burrow): latest, max one offset.
    let mut list = (-1i32).to_be_bytes().to_vec();
    list.extend(1i32.to_be_bytes());
    list.extend(str16(topic));
    list.extend(1i32.to_be_bytes());
    list.extend(0i32.to_be_bytes());
    list.extend((-1i64).to_be_bytes());
    list.extend(1i32.to_be_bytes());
    let answer = exchange(ApiKey::ListOffsets, 0, &list);
    let partition_at = 4 + 2 + topic.len() + 4;
    assert_eq!(i16_at(&answer, partition_at + 4), 0);
    assert_eq!(i32::from_be_bytes(answer[partition_at + 6..partition_at + 10].try_into().unwrap()), 1, "one offset");
    assert_eq!(i64_at(&answer, partition_at + 10), 2, "the high watermark");
}

#[test]
fn describe_configs_v0_and_create_topics_v0_are_served() {
    let topic = "e2e-legacy-created";
    // CreateTopics v0: one topic, 3 partitions, replication 1, no assignments, no configs.
    let mut create = 1i32.to_be_bytes().to_vec();
    create.extend(str16(topic));
    create.extend(3i32.to_be_bytes());
    create.extend(1i16.to_be_bytes());
    create.extend(0i32.to_be_bytes());
    create.extend(0i32.to_be_bytes());
    create.extend(5000i32.to_be_bytes());
    let answer = exchange(ApiKey::CreateTopics, 0, &create);
    assert_eq!(answer.len(), 4 + 2 + topic.len() + 2, "v0 carries no throttle time and no message");
    assert_eq!(i16_at(&answer, answer.len() - 2), 0);
    assert_eq!(psql(&format!("SELECT partitions FROM kafka.topics WHERE name = '{topic}'")), "3");

    // DescribeConfigs v0 of the topic, key retention.ms only.
    let mut describe = 1i32.to_be_bytes().to_vec();
    describe.push(2);
    describe.extend(str16(topic));
    describe.extend(1i32.to_be_bytes());
    describe.extend(str16("retention.ms"));
    let answer = exchange(ApiKey::DescribeConfigs, 0, &describe);
    // throttle, results[1]: error 0, null message, type, name, configs[1]
    let mut at = 4 + 4;
    assert_eq!(i16_at(&answer, at), 0);
    at += 2 + 2 + 1 + 2 + topic.len();
    assert_eq!(i32::from_be_bytes(answer[at..at + 4].try_into().unwrap()), 1);
    at += 4 + 2 + "retention.ms".len();
    let value_length = i16_at(&answer, at) as usize;
    assert_eq!(&answer[at + 2..at + 2 + value_length], b"-1");
    at += 2 + value_length;
    assert_eq!(&answer[at..], &[0, 1, 0], "read-write, is_default, not sensitive");
}

#[test]
fn produce_v2_and_fetch_v2_get_unsupported_version_not_a_close() {
    assert_survives("legacy produce and fetch", || {
        let topic = "e2e-legacy-produce";
        psql(&format!("INSERT INTO kafka.topics (name, partitions) VALUES ('{topic}', 1) ON CONFLICT DO NOTHING"));
        let mut produce = 1i16.to_be_bytes().to_vec();
        produce.extend(1000i32.to_be_bytes());
        produce.extend(1i32.to_be_bytes());
        produce.extend(str16(topic));
        produce.extend(1i32.to_be_bytes());
        produce.extend(0i32.to_be_bytes());
        produce.extend(0i32.to_be_bytes()); // an empty message set
        let answer = exchange(ApiKey::Produce, 2, &produce);
        assert_eq!(i16_at(&answer, 4 + 2 + topic.len() + 4 + 4), 35, "{answer:?}");
        assert!(wait_for_log("Produce v2 from e2e-raw carries message format 0 or 1"));

        let mut fetch = (-1i32).to_be_bytes().to_vec();
        fetch.extend(100i32.to_be_bytes());
        fetch.extend(1i32.to_be_bytes());
        fetch.extend(1i32.to_be_bytes());
        fetch.extend(str16(topic));
        fetch.extend(1i32.to_be_bytes());
        fetch.extend(0i32.to_be_bytes());
        fetch.extend(0i64.to_be_bytes());
        fetch.extend(1024i32.to_be_bytes());
        let answer = exchange(ApiKey::Fetch, 2, &fetch);
        assert_eq!(i16_at(&answer, 4 + 4 + 2 + topic.len() + 4 + 4), 35, "{answer:?}");
        assert_eq!(psql(&format!("SELECT count(*) FROM kafka.topic_messages m WHERE m.topic = '{topic}'")), "0");
    });
}

#[test]
fn a_legacy_body_that_lies_about_its_length_closes_only_its_connection() {
    assert_survives("a lying legacy body", || {
        // OffsetCommit v0 claiming i32::MAX topics.
        let mut commit = str16("g");
        commit.extend(i32::MAX.to_be_bytes());
        let mut client = RawClient::connect();
        client.send(ApiKey::OffsetCommit, 0, &commit);
        assert!(client.is_closed_by_server());
        assert!(wait_for_log("malformed OffsetCommit v0 request"));
    });
}
