//! Admin APIs Kafka's Java Admin and tools call that rdkafka does not wrap: OffsetDelete,
//! ElectLeaders, ListPartitionReassignments, DescribeClientQuotas, and the broker's
//! DescribeConfigs; sent as raw requests over a real socket, answered from Postgres.

use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::elect_leaders_request::TopicPartitions;
use kafka_protocol::messages::offset_delete_request::{OffsetDeleteRequestPartition, OffsetDeleteRequestTopic};
use kafka_protocol::messages::{
    ApiKey, DescribeClientQuotasRequest, DescribeClientQuotasResponse, DescribeConfigsRequest, DescribeConfigsResponse,
    ElectLeadersRequest, ElectLeadersResponse, GroupId, ListPartitionReassignmentsRequest, ListPartitionReassignmentsResponse,
    MetadataRequest, MetadataResponse, OffsetDeleteRequest, OffsetDeleteResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use pg_kafka_e2e::{psql, RawClient};

fn ask<Q: kafka_protocol::protocol::Encodable, R: kafka_protocol::protocol::Decodable>(key: ApiKey, version: i16, body: &Q) -> R {
    let mut client = RawClient::connect();
    client.send_message(key, version, body);
    client.read_response(key, version)
}

fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_owned()))
}

#[test]
fn offset_delete_removes_the_named_partitions_committed_offsets() {
    let topic = "e2e-offset-delete";
    psql(&format!("INSERT INTO kafka.topics (name, partitions) VALUES ('{topic}', 2) ON CONFLICT DO NOTHING"));
    psql(&format!(
        "INSERT INTO kafka.consumer_offsets (group_id, topic_id, partition, committed_offset) \
         SELECT 'e2e-od-group', id, p, 3 FROM kafka.topics, generate_series(0, 1) p WHERE name = '{topic}' ON CONFLICT DO NOTHING"
    ));
    let request = OffsetDeleteRequest::default().with_group_id(GroupId(StrBytes::from_static_str("e2e-od-group"))).with_topics(vec![
        OffsetDeleteRequestTopic::default()
            .with_name(name(topic))
            .with_partitions(vec![OffsetDeleteRequestPartition::default().with_partition_index(0)]),
    ]);
    let response: OffsetDeleteResponse = ask(ApiKey::OffsetDelete, 0, &request);
    assert_eq!((response.error_code, response.topics[0].partitions[0].error_code), (0, 0));
    assert_eq!(psql("SELECT string_agg(partition::text, ',') FROM kafka.consumer_offsets WHERE group_id = 'e2e-od-group'"), "1");
    let unknown: OffsetDeleteResponse =
        ask(ApiKey::OffsetDelete, 0, &request.with_group_id(GroupId(StrBytes::from_static_str("e2e-od-nobody"))));
    assert_eq!(unknown.error_code, 69, "GROUP_ID_NOT_FOUND");
}

#[test]
fn one_broker_needs_no_election_and_moves_no_replica() {
    let topic = "e2e-elect";
    psql(&format!("INSERT INTO kafka.topics (name, partitions) VALUES ('{topic}', 1) ON CONFLICT DO NOTHING"));
    let request = ElectLeadersRequest::default()
        .with_election_type(0)
        .with_topic_partitions(Some(vec![TopicPartitions::default().with_topic(name(topic)).with_partitions(vec![0, 5])]));
    let response: ElectLeadersResponse = ask(ApiKey::ElectLeaders, 2, &request);
    let codes: Vec<i16> = response.replica_election_results[0].partition_result.iter().map(|p| p.error_code).collect();
    assert_eq!(codes, vec![84, 3]);
    let reassignments: ListPartitionReassignmentsResponse =
        ask(ApiKey::ListPartitionReassignments, 0, &ListPartitionReassignmentsRequest::default().with_topics(None));
    assert_eq!((reassignments.error_code, reassignments.topics.len()), (0, 0));
    let quotas: DescribeClientQuotasResponse = ask(ApiKey::DescribeClientQuotas, 1, &DescribeClientQuotasRequest::default());
    assert_eq!((quotas.error_code, quotas.entries.map(|e| e.len())), (0, Some(0)));
}

#[test]
fn the_broker_resource_lists_what_clients_read() {
    let resource = DescribeConfigsResource::default()
        .with_resource_type(4)
        .with_resource_name(StrBytes::from_static_str("1"))
        .with_configuration_keys(None);
    let response: DescribeConfigsResponse =
        ask(ApiKey::DescribeConfigs, 4, &DescribeConfigsRequest::default().with_resources(vec![resource]));
    let configs = &response.results[0].configs;
    let value = |key: &str| configs.iter().find(|c| c.name.as_str() == key).and_then(|c| c.value.clone()).map(|v| v.to_string());
    assert!(value("advertised.listeners").unwrap().contains(&pg_kafka_e2e::bootstrap()), "{:?}", value("advertised.listeners"));
    assert_eq!(value("default.replication.factor").as_deref(), Some("1"));
    assert!(value("log.retention.ms").is_some() && value("num.partitions").is_some());
}

/// `__consumer_offsets` is served read-only (one internal partition of committed offsets),
/// never created as an ordinary topic.
#[test]
fn a_lag_monitor_asking_for_consumer_offsets_creates_no_topic() {
    let request = MetadataRequest::default().with_allow_auto_topic_creation(true).with_topics(Some(vec![
        kafka_protocol::messages::metadata_request::MetadataRequestTopic::default().with_name(Some(name("__consumer_offsets"))),
    ]));
    let response: MetadataResponse = ask(ApiKey::Metadata, 9, &request);
    let topic = &response.topics[0];
    assert_eq!((topic.error_code, topic.is_internal, topic.partitions.len()), (0, true, 1));
    assert_eq!(psql("SELECT count(*) FROM kafka.topics WHERE name = '__consumer_offsets'"), "0");
}
