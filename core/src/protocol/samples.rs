//! Sample requests for every served API at every served version, with every array holding
//! elements: what the shape tests check byte for byte and what seeds the fuzz corpus.
//! Test support only (feature `testing`).

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Encodable, StrBytes};

use super::records::{encode_batch, Record};

fn encode<M: Encodable>(message: &M, version: i16) -> Vec<u8> {
    let mut buf = BytesMut::new();
    message.encode(&mut buf, version).expect("samples encode");
    buf.to_vec()
}

/// The body of a sample `key` request at `version` (populated arrays, one record batch
/// per Produce partition); `None` for APIs without a sample.
pub fn sample_body(key: ApiKey, v: i16) -> Option<Vec<u8>> {
    let s = |v: &'static str| StrBytes::from_static_str(v);
    let topic = || TopicName(s("topic"));
    let group = || GroupId(s("group"));
    let record = Record { offset_delta: 0, timestamp: 1_700_000_000_000, key: None, value: Some(Bytes::from_static(b"v")), headers: None };
    Some(match key {
        ApiKey::ApiVersions => {
            encode(&ApiVersionsRequest::default().with_client_software_name(s("fuzz")).with_client_software_version(s("1")), v)
        }
        ApiKey::Produce => {
            let partition = produce_request::PartitionProduceData::default().with_records(Some(encode_batch(0, &[record.clone(), record])));
            let t = produce_request::TopicProduceData::default().with_partition_data(vec![partition.clone(), partition]);
            let t = if v >= 13 { t.with_topic_id(uuid::Uuid::from_u128(1)) } else { t.with_name(topic()) };
            encode(&ProduceRequest::default().with_acks(-1).with_timeout_ms(1000).with_topic_data(vec![t]), v)
        }
        ApiKey::Fetch => {
            let t = fetch_request::FetchTopic::default().with_partitions(vec![fetch_request::FetchPartition::default(); 2]);
            let t = if v >= 13 { t.with_topic_id(uuid::Uuid::from_u128(1)) } else { t.with_topic(topic()) };
            let r = FetchRequest::default().with_max_wait_ms(10).with_topics(vec![t]);
            encode(&if v >= 11 { r.with_rack_id(s("rack")) } else { r }, v)
        }
        ApiKey::ListOffsets => {
            let t = list_offsets_request::ListOffsetsTopic::default()
                .with_name(topic())
                .with_partitions(vec![list_offsets_request::ListOffsetsPartition::default(); 2]);
            encode(&ListOffsetsRequest::default().with_topics(vec![t]), v)
        }
        ApiKey::Metadata => {
            let t = metadata_request::MetadataRequestTopic::default().with_name(Some(topic()));
            encode(&MetadataRequest::default().with_topics(Some(vec![t.clone(), t])), v)
        }
        ApiKey::FindCoordinator => {
            let r = FindCoordinatorRequest::default();
            encode(&if v >= 4 { r.with_coordinator_keys(vec![s("a"), s("bc")]) } else { r.with_key(s("g")) }, v)
        }
        ApiKey::JoinGroup => {
            let protocol =
                join_group_request::JoinGroupRequestProtocol::default().with_name(s("range")).with_metadata(Bytes::from_static(b"m"));
            encode(&JoinGroupRequest::default().with_group_id(group()).with_protocols(vec![protocol.clone(), protocol]), v)
        }
        ApiKey::SyncGroup => {
            let assignment =
                sync_group_request::SyncGroupRequestAssignment::default().with_member_id(s("m")).with_assignment(Bytes::from_static(b"a"));
            encode(&SyncGroupRequest::default().with_group_id(group()).with_assignments(vec![assignment.clone(), assignment]), v)
        }
        ApiKey::Heartbeat => encode(&HeartbeatRequest::default().with_group_id(group()), v),
        ApiKey::LeaveGroup => {
            let r = LeaveGroupRequest::default().with_group_id(group());
            let member = leave_group_request::MemberIdentity::default().with_member_id(s("m"));
            encode(&if v >= 3 { r.with_members(vec![member.clone(), member]) } else { r.with_member_id(s("m")) }, v)
        }
        ApiKey::OffsetCommit => {
            let partition = offset_commit_request::OffsetCommitRequestPartition::default().with_committed_offset(5);
            let t = offset_commit_request::OffsetCommitRequestTopic::default()
                .with_name(topic())
                .with_partitions(vec![partition.clone(), partition]);
            encode(&OffsetCommitRequest::default().with_group_id(group()).with_topics(vec![t.clone(), t]), v)
        }
        ApiKey::OffsetFetch => {
            if v >= 8 {
                let t = offset_fetch_request::OffsetFetchRequestTopics::default().with_name(topic()).with_partition_indexes(vec![0, 1]);
                let g =
                    offset_fetch_request::OffsetFetchRequestGroup::default().with_group_id(group()).with_topics(Some(vec![t.clone(), t]));
                encode(&OffsetFetchRequest::default().with_groups(vec![g.clone(), g]), v)
            } else {
                let t = offset_fetch_request::OffsetFetchRequestTopic::default().with_name(topic()).with_partition_indexes(vec![0, 1]);
                encode(&OffsetFetchRequest::default().with_group_id(group()).with_topics(Some(vec![t.clone(), t])), v)
            }
        }
        ApiKey::DescribeGroups => encode(&DescribeGroupsRequest::default().with_groups(vec![group(), group()]), v),
        ApiKey::ListGroups => {
            let r = ListGroupsRequest::default();
            let r = if v >= 4 { r.with_states_filter(vec![s("Stable"), s("Empty")]) } else { r };
            encode(&if v >= 5 { r.with_types_filter(vec![s("classic")]) } else { r }, v)
        }
        ApiKey::DeleteGroups => encode(&DeleteGroupsRequest::default().with_groups_names(vec![group(), group()]), v),
        ApiKey::InitProducerId => encode(&InitProducerIdRequest::default().with_transaction_timeout_ms(5), v),
        ApiKey::CreateTopics => {
            let assignment = create_topics_request::CreatableReplicaAssignment::default().with_broker_ids(vec![BrokerId(1), BrokerId(1)]);
            let config = create_topics_request::CreatableTopicConfig::default().with_name(s("retention.ms")).with_value(Some(s("1")));
            let t = create_topics_request::CreatableTopic::default()
                .with_name(topic())
                .with_assignments(vec![assignment.clone(), assignment])
                .with_configs(vec![config.clone(), config]);
            encode(&CreateTopicsRequest::default().with_topics(vec![t.clone(), t]), v)
        }
        ApiKey::DeleteTopics => {
            let r = DeleteTopicsRequest::default();
            let state = delete_topics_request::DeleteTopicState::default().with_name(Some(topic()));
            encode(&if v >= 6 { r.with_topics(vec![state.clone(), state]) } else { r.with_topic_names(vec![topic(), topic()]) }, v)
        }
        ApiKey::CreatePartitions => {
            let assignment = create_partitions_request::CreatePartitionsAssignment::default().with_broker_ids(vec![BrokerId(1)]);
            let t = create_partitions_request::CreatePartitionsTopic::default()
                .with_name(topic())
                .with_assignments(Some(vec![assignment.clone(), assignment]));
            encode(&CreatePartitionsRequest::default().with_topics(vec![t.clone(), t]), v)
        }
        ApiKey::DescribeConfigs => {
            let resource = describe_configs_request::DescribeConfigsResource::default()
                .with_resource_type(2)
                .with_configuration_keys(Some(vec![s("a"), s("b")]));
            encode(&DescribeConfigsRequest::default().with_resources(vec![resource.clone(), resource]), v)
        }
        ApiKey::AlterConfigs => {
            let config = alter_configs_request::AlterableConfig::default().with_name(s("a")).with_value(Some(s("1")));
            let resource = alter_configs_request::AlterConfigsResource::default().with_configs(vec![config.clone(), config]);
            encode(&AlterConfigsRequest::default().with_resources(vec![resource.clone(), resource]), v)
        }
        ApiKey::IncrementalAlterConfigs => {
            let config = incremental_alter_configs_request::AlterableConfig::default().with_name(s("a")).with_value(Some(s("1")));
            let resource = incremental_alter_configs_request::AlterConfigsResource::default().with_configs(vec![config.clone(), config]);
            encode(&IncrementalAlterConfigsRequest::default().with_resources(vec![resource.clone(), resource]), v)
        }
        ApiKey::DescribeCluster => encode(&DescribeClusterRequest::default(), v),
        ApiKey::DeleteRecords => {
            let partition = delete_records_request::DeleteRecordsPartition::default().with_offset(3);
            let t = delete_records_request::DeleteRecordsTopic::default()
                .with_name(topic())
                .with_partitions(vec![partition.clone(), partition]);
            encode(&DeleteRecordsRequest::default().with_topics(vec![t.clone(), t]), v)
        }
        ApiKey::SaslHandshake => encode(&SaslHandshakeRequest::default().with_mechanism(s("SCRAM-SHA-256")), v),
        ApiKey::SaslAuthenticate => encode(&SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from_static(b"n,,n=u,r=abc")), v),
        ApiKey::OffsetDelete => {
            let partition = offset_delete_request::OffsetDeleteRequestPartition::default();
            let t = offset_delete_request::OffsetDeleteRequestTopic::default().with_name(topic()).with_partitions(vec![partition; 2]);
            encode(&OffsetDeleteRequest::default().with_group_id(group()).with_topics(vec![t.clone(), t]), v)
        }
        ApiKey::ElectLeaders => {
            let t = elect_leaders_request::TopicPartitions::default().with_topic(topic()).with_partitions(vec![0, 1]);
            encode(&ElectLeadersRequest::default().with_topic_partitions(Some(vec![t.clone(), t])), v)
        }
        ApiKey::ListPartitionReassignments => {
            let t = list_partition_reassignments_request::ListPartitionReassignmentsTopics::default()
                .with_name(topic())
                .with_partition_indexes(vec![0, 1]);
            encode(&ListPartitionReassignmentsRequest::default().with_topics(Some(vec![t.clone(), t])), v)
        }
        ApiKey::DescribeClientQuotas => {
            let c = describe_client_quotas_request::ComponentData::default().with_entity_type(s("user")).with_match(Some(s("u")));
            encode(&DescribeClientQuotasRequest::default().with_components(vec![c.clone(), c]), v)
        }
        ApiKey::DescribeLogDirs => {
            let t = describe_log_dirs_request::DescribableLogDirTopic::default().with_topic(topic()).with_partitions(vec![0, 1]);
            encode(&DescribeLogDirsRequest::default().with_topics(Some(vec![t.clone(), t])), v)
        }
        ApiKey::DescribeProducers => {
            let t = describe_producers_request::TopicRequest::default().with_name(topic()).with_partition_indexes(vec![0, 1]);
            encode(&DescribeProducersRequest::default().with_topics(vec![t.clone(), t]), v)
        }
        ApiKey::AddPartitionsToTxn => {
            let t = add_partitions_to_txn_request::AddPartitionsToTxnTopic::default().with_name(topic()).with_partitions(vec![0, 1]);
            let r = AddPartitionsToTxnRequest::default().with_v3_and_below_transactional_id(TransactionalId(s("tx")));
            encode(&r.with_v3_and_below_producer_id(ProducerId(7)).with_v3_and_below_topics(vec![t.clone(), t]), v)
        }
        ApiKey::AddOffsetsToTxn => {
            let r = AddOffsetsToTxnRequest::default().with_transactional_id(TransactionalId(s("tx"))).with_producer_id(ProducerId(7));
            encode(&r.with_group_id(group()), v)
        }
        ApiKey::TxnOffsetCommit => {
            let p = txn_offset_commit_request::TxnOffsetCommitRequestPartition::default().with_committed_metadata(Some(s("m")));
            let t =
                txn_offset_commit_request::TxnOffsetCommitRequestTopic::default().with_name(topic()).with_partitions(vec![p.clone(), p]);
            let r = TxnOffsetCommitRequest::default().with_transactional_id(TransactionalId(s("tx"))).with_group_id(group());
            let r = if v >= 3 { r.with_member_id(s("m")).with_group_instance_id(Some(s("i"))) } else { r };
            encode(&r.with_topics(vec![t.clone(), t]), v)
        }
        ApiKey::EndTxn => encode(
            &EndTxnRequest::default().with_transactional_id(TransactionalId(s("tx"))).with_producer_id(ProducerId(7)).with_committed(true),
            v,
        ),
        ApiKey::DescribeTransactions => encode(
            &DescribeTransactionsRequest::default().with_transactional_ids(vec![TransactionalId(s("a")), TransactionalId(s("b"))]),
            v,
        ),
        ApiKey::ListTransactions => {
            let r = ListTransactionsRequest::default().with_state_filters(vec![s("Ongoing"), s("Empty")]);
            encode(&r.with_producer_id_filters(vec![ProducerId(1), ProducerId(2)]), v)
        }
        ApiKey::DescribeAcls => {
            let r = DescribeAclsRequest::default().with_resource_type_filter(2).with_resource_name_filter(Some(s("t")));
            encode(&r.with_principal_filter(Some(s("User:a"))).with_host_filter(Some(s("*"))).with_operation(1).with_permission_type(1), v)
        }
        ApiKey::CreateAcls => {
            let c = create_acls_request::AclCreation::default()
                .with_resource_type(2)
                .with_resource_name(s("t"))
                .with_resource_pattern_type(3)
                .with_principal(s("User:a"))
                .with_host(s("*"))
                .with_operation(3)
                .with_permission_type(3);
            encode(&CreateAclsRequest::default().with_creations(vec![c.clone(), c]), v)
        }
        ApiKey::DeleteAcls => {
            let f = delete_acls_request::DeleteAclsFilter::default()
                .with_resource_type_filter(1)
                .with_resource_name_filter(Some(s("t")))
                .with_pattern_type_filter(1)
                .with_principal_filter(None)
                .with_host_filter(Some(s("*")))
                .with_operation(1)
                .with_permission_type(1);
            encode(&DeleteAclsRequest::default().with_filters(vec![f.clone(), f]), v)
        }
        _ => return None,
    })
}

/// A whole request (header and body) as a client frames it, without the size prefix.
pub fn sample_request(key: ApiKey, version: i16) -> Option<Bytes> {
    let body = sample_body(key, version)?;
    let header = RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(7)
        .with_client_id(Some(StrBytes::from_static_str("fuzz")));
    let mut buf = BytesMut::new();
    header.encode(&mut buf, key.request_header_version(version)).expect("headers encode");
    buf.extend_from_slice(&body);
    Some(buf.freeze())
}

/// Writes `bytes` as a fuzz seed for `target` when `PGKAFKA_FUZZ_SEEDS` names a corpus
/// root (`make fuzz-seeds`); does nothing otherwise.
pub fn write_seed(target: &str, name: &str, bytes: &[u8]) {
    let Ok(root) = std::env::var("PGKAFKA_FUZZ_SEEDS") else { return };
    let dir = std::path::Path::new(&root).join(target);
    std::fs::create_dir_all(&dir).expect("corpus directory");
    std::fs::write(dir.join(name), bytes).expect("seed written");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::header::parse_request;
    use crate::protocol::shape;
    use crate::protocol::versions::SERVED_APIS;

    /// Every sample is a request the broker admits: a header it parses and a body whose
    /// canonical form the walk reads to the end. They seed the `request` fuzz target.
    #[test]
    fn samples_are_admitted_requests_and_seed_the_fuzzer() {
        for api in SERVED_APIS {
            for version in api.min_served..=api.max {
                let frame = sample_request(api.key, version).unwrap();
                let request = parse_request(frame.clone()).unwrap();
                let body = shape::canonical(api.key, version, &request.body).unwrap();
                assert_eq!(shape::consumed(api.key, version, &body).unwrap(), body.len(), "{:?} v{version}", api.key);
                write_seed("request", &format!("{:?}-v{version}", api.key), &frame);
            }
        }
    }
}
