//! The foundation: clients connect, learn the broker and topics, and nothing a client
//! sends can take the worker down.

use std::time::Duration;

use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, ApiVersionsResponse, MetadataRequest, MetadataResponse};
use pg_kafka_e2e::*;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::ClientConfig;

#[test]
fn kcat_lists_the_broker_and_an_auto_created_topic() {
    let output = kcat(&["-L", "-t", "e2e-demo"]);
    assert!(output.contains("broker 1 at 127.0.0.1:"), "{output}");
    assert!(output.contains("topic \"e2e-demo\" with 1 partitions"), "{output}");
    assert!(output.contains("partition 0, leader 1, replicas: 1, isrs: 1"), "{output}");
    // Created for real: in the table, and listed without being asked for.
    assert_eq!(psql("SELECT partitions FROM kafka.topics WHERE name = 'e2e-demo'"), "1");
    assert!(kcat(&["-L"]).contains("topic \"e2e-demo\""));
}

#[test]
fn rdkafka_fetches_metadata() {
    psql("INSERT INTO kafka.topics (name, partitions) VALUES ('e2e-rdkafka', 4) ON CONFLICT DO NOTHING");
    let consumer: BaseConsumer =
        ClientConfig::new().set("bootstrap.servers", bootstrap()).set("group.id", "e2e-metadata").create().unwrap();
    let metadata = consumer.fetch_metadata(Some("e2e-rdkafka"), Duration::from_secs(10)).unwrap();
    assert_eq!(metadata.brokers().len(), 1);
    assert_eq!(metadata.brokers()[0].id(), 1);
    let topic = &metadata.topics()[0];
    assert_eq!(topic.name(), "e2e-rdkafka");
    assert_eq!(topic.error(), None);
    assert_eq!(topic.partitions().len(), 4);
    assert!(topic.partitions().iter().all(|p| p.leader() == 1 && p.isr() == [1]));
}

#[test]
fn unknown_topic_without_auto_create_gets_error_3() {
    let mut client = RawClient::connect();
    let request = MetadataRequest::default()
        .with_allow_auto_topic_creation(false)
        .with_topics(Some(vec![kafka_protocol::messages::metadata_request::MetadataRequestTopic::default()
            .with_name(Some(kafka_protocol::messages::TopicName("e2e-never-created".into())))]));
    client.send_message(ApiKey::Metadata, 9, &request);
    let response: MetadataResponse = client.read_response(ApiKey::Metadata, 9);
    assert_eq!(response.topics[0].error_code, 3);
    assert_eq!(psql("SELECT count(*) FROM kafka.topics WHERE name = 'e2e-never-created'"), "0");
}

#[test]
fn unsupported_api_versions_version_gets_error_35_not_a_hang() {
    let mut client = RawClient::connect();
    client.send(ApiKey::ApiVersions, 99, &[0]);
    let response: ApiVersionsResponse = client.read_response(ApiKey::ApiVersions, 0);
    assert_eq!(response.error_code, 35);
    assert!(response.api_keys.iter().any(|k| k.api_key == ApiKey::Metadata as i16));
    // The connection stays usable: the client retries at a version we list.
    client.send_message(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default());
    let response: ApiVersionsResponse = client.read_response(ApiKey::ApiVersions, 3);
    assert_eq!(response.error_code, 0);
}

#[test]
fn unsupported_versions_of_other_apis_close_the_connection_not_hang() {
    assert_survives("unsupported versions", || {
        let mut client = RawClient::connect();
        client.send(ApiKey::Metadata, 13, &[0, 0, 0]);
        assert!(client.is_closed_by_server());
        let mut client = RawClient::connect();
        // AddPartitionsToTxn v4+ is broker to broker: past the versions served.
        client.send(ApiKey::AddPartitionsToTxn, 4, &[]);
        assert!(client.is_closed_by_server());
        let mut client = RawClient::connect();
        client.send(ApiKey::WriteTxnMarkers, 1, &[]);
        assert!(client.is_closed_by_server());
        assert!(wait_for_log("unsupported request Metadata v13"));
        assert!(wait_for_log("unsupported request AddPartitionsToTxn v4"));
        assert!(wait_for_log("unsupported request WriteTxnMarkers v1"));
    });
}

#[test]
fn oversized_frame_closes_only_that_connection() {
    assert_survives("an oversized frame", || {
        let mut bystander = RawClient::connect();
        let mut attacker = RawClient::connect();
        attacker.send_raw(&0x7fff_fff0i32.to_be_bytes());
        assert!(attacker.is_closed_by_server());
        bystander.send_message(ApiKey::ApiVersions, 2, &ApiVersionsRequest::default());
        let response: ApiVersionsResponse = bystander.read_response(ApiKey::ApiVersions, 2);
        assert_eq!(response.error_code, 0);
        assert!(wait_for_log("frame of 2147483632 bytes exceeds the limit of"));
    });
}

#[test]
fn array_lengths_from_the_wire_never_reach_the_allocator() {
    assert_survives("lying array lengths", || {
        // Metadata v1 claiming i32::MAX topics, and v12 claiming 2^32-2 in compact form.
        let mut client = RawClient::connect();
        client.send(ApiKey::Metadata, 1, &i32::MAX.to_be_bytes());
        assert!(client.is_closed_by_server());
        let mut client = RawClient::connect();
        client.send(ApiKey::Metadata, 12, &[0xff, 0xff, 0xff, 0xff, 0x0f, 0, 0, 0]);
        assert!(client.is_closed_by_server());
        assert!(wait_for_log("malformed Metadata v1 request"));
    });
}

/// Fetch v17 whose partition carries tag 0 (replica_directory_id) declared with size 0:
/// the codec used to read the tag from the following bytes, then a 2^32-2 array length,
/// and the worker aborted on a 412 GB allocation (Postgres reinitialized).
#[test]
fn a_known_tag_with_a_false_size_cannot_misalign_the_decoder() {
    assert_survives("the Fetch v17 size-0 tag frame", || {
        let frame = "000000710001001100001092000673612d72656c00000001f400000001001000000000000000ffffffff02\
                     000000000000000000000000000000000200000000ffffffff0000000000000000ffffffffffffffffffff\
                     ffff001000000100000001000105100000000000000000000000ffffffff0f";
        let digits: Vec<u8> = frame.bytes().filter(u8::is_ascii_hexdigit).collect();
        let bytes: Vec<u8> = digits.chunks(2).map(|pair| u8::from_str_radix(std::str::from_utf8(pair).unwrap(), 16).unwrap()).collect();
        let mut client = RawClient::connect();
        client.send_raw(&bytes);
        // Answered or closed, either is fine; what matters is that the worker is still there.
        let _ = client.read_frame();
    });
}

#[test]
fn garbage_and_truncated_requests_close_the_connection_and_nothing_else() {
    assert_survives("garbage and truncated frames", || {
        for bytes in [
            &[0, 0, 0, 3, 1, 2, 3][..],                        // shorter than a header
            &[0, 0, 0, 8, 0x7f, 0, 0, 0, 0, 0, 0, 1][..],      // unknown API key
            &[0, 0, 0, 10, 0, 3, 0, 1, 0, 0, 0, 1, 0, 99][..], // client id longer than the frame
            &[0, 0, 0, 20, 0, 3][..],                          // frame cut short by the client
        ] {
            let mut client = RawClient::connect();
            client.send_raw(bytes);
            if bytes.len() == 6 {
                drop(client); // hang up mid-frame
                continue;
            }
            assert!(client.is_closed_by_server(), "{bytes:?}");
        }
    });
}

/// Three clients announce 100 MB requests and send nothing more. They used to reserve the
/// announced bytes from the shared in-flight budget before anything arrived, and the third
/// one's wait then held up every other client's request (the budget is first come, first
/// served). Now they hold only what they sent.
#[test]
fn silent_clients_announcing_large_frames_stall_nobody() {
    assert_survives("three silent 100 MB announcements", || {
        let mut silent = Vec::new();
        for _ in 0..3 {
            let mut client = RawClient::connect();
            client.send_raw(&(100 * 1024 * 1024i32).to_be_bytes());
            client.send_raw(&[0; 16]);
            silent.push(client);
        }
        std::thread::sleep(Duration::from_millis(200));
        let started = std::time::Instant::now();
        let output = kcat(&["-L", "-t", "e2e-silent-bystander"]);
        assert!(output.contains("e2e-silent-bystander"), "{output}");
        assert!(started.elapsed() < Duration::from_secs(5), "metadata took {:?}", started.elapsed());
        drop(silent);
    });
}
