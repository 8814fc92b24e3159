//! What a hot standby answers to requests only the primary can serve.
//!
//! A standby's worker serves reads (ApiVersions, Metadata, Fetch, ListOffsets, the
//! Describe APIs) from what Postgres has replayed. Everything that writes, and everything
//! of consumer groups and transactions (their coordinator is the primary's), is refused
//! here before its handler runs, with the code a Kafka broker gives for a request sent to
//! the wrong broker, so that clients refresh their metadata and go to the primary:
//!
//! | requests | answer |
//! |---|---|
//! | Produce, DeleteRecords | NOT_LEADER_OR_FOLLOWER per partition |
//! | group and transaction requests, a transactional InitProducerId | NOT_COORDINATOR |
//! | CreateTopics, DeleteTopics, CreatePartitions, configs and ACL changes | NOT_CONTROLLER |
//! | ListGroups, ListTransactions | an empty list: this node coordinates none |
//!
//! FindCoordinator is served: it names the primary (broker/cluster.rs). An idempotent
//! producer's InitProducerId is served too, from [`ProducerIds`]: any Kafka broker hands out
//! producer ids, and librdkafka asks only a broker it is already connected to, so a standby
//! that refused would keep a producer that bootstrapped from it from ever producing. A
//! refused request
//! never reaches storage: Postgres would refuse its writes anyway (a
//! read-only transaction), with an error no client retries elsewhere.

use kafka_protocol::messages::add_partitions_to_txn_response::{AddPartitionsToTxnPartitionResult, AddPartitionsToTxnTopicResult};
use kafka_protocol::messages::create_acls_response::AclCreationResult;
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use kafka_protocol::messages::delete_acls_response::DeleteAclsFilterResult;
use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::delete_records_response::{DeleteRecordsPartitionResult, DeleteRecordsTopicResult};
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::describe_groups_response::DescribedGroup;
use kafka_protocol::messages::describe_transactions_response::TransactionState;
use kafka_protocol::messages::offset_commit_response::{OffsetCommitResponsePartition, OffsetCommitResponseTopic};
use kafka_protocol::messages::offset_fetch_response::{OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponseTopic};
use kafka_protocol::messages::txn_offset_commit_response::{TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::{decode, respond, Outcome};
use crate::protocol::header::RequestFrame;

const NOT_LEADER: i16 = ResponseError::NotLeaderOrFollower.code();
const NOT_COORDINATOR: i16 = ResponseError::NotCoordinator.code();
const NOT_CONTROLLER: i16 = ResponseError::NotController.code();

/// The answer a hot standby gives `request`, or `None` when it serves it itself.
pub fn refusal(request: &RequestFrame) -> Option<Outcome> {
    let answer = match request.api_key {
        ApiKey::Produce => produce(request),
        ApiKey::DeleteRecords => answer(request, |b: DeleteRecordsRequest| {
            let topics = b.topics.iter().map(|t| {
                let partitions = t.partitions.iter().map(|p| {
                    DeleteRecordsPartitionResult::default()
                        .with_partition_index(p.partition_index)
                        .with_low_watermark(-1)
                        .with_error_code(NOT_LEADER)
                });
                DeleteRecordsTopicResult::default().with_name(t.name.clone()).with_partitions(partitions.collect())
            });
            DeleteRecordsResponse::default().with_topics(topics.collect())
        }),
        ApiKey::JoinGroup => {
            answer(request, |_: JoinGroupRequest| JoinGroupResponse::default().with_error_code(NOT_COORDINATOR).with_generation_id(-1))
        }
        ApiKey::SyncGroup => answer(request, |_: SyncGroupRequest| SyncGroupResponse::default().with_error_code(NOT_COORDINATOR)),
        ApiKey::Heartbeat => answer(request, |_: HeartbeatRequest| HeartbeatResponse::default().with_error_code(NOT_COORDINATOR)),
        ApiKey::LeaveGroup => answer(request, |_: LeaveGroupRequest| LeaveGroupResponse::default().with_error_code(NOT_COORDINATOR)),
        ApiKey::OffsetCommit => answer(request, |b: OffsetCommitRequest| {
            let topics = b.topics.iter().map(|t| {
                let partitions = t.partitions.iter().map(|p| {
                    OffsetCommitResponsePartition::default().with_partition_index(p.partition_index).with_error_code(NOT_COORDINATOR)
                });
                OffsetCommitResponseTopic::default()
                    .with_name(t.name.clone())
                    .with_topic_id(t.topic_id)
                    .with_partitions(partitions.collect())
            });
            OffsetCommitResponse::default().with_topics(topics.collect())
        }),
        ApiKey::OffsetFetch => answer(request, offset_fetch),
        ApiKey::OffsetDelete => answer(request, |_: OffsetDeleteRequest| OffsetDeleteResponse::default().with_error_code(NOT_COORDINATOR)),
        ApiKey::DescribeGroups => answer(request, |b: DescribeGroupsRequest| {
            let groups = b.groups.iter().map(|g| DescribedGroup::default().with_group_id(g.clone()).with_error_code(NOT_COORDINATOR));
            DescribeGroupsResponse::default().with_groups(groups.collect())
        }),
        ApiKey::DeleteGroups => answer(request, |b: DeleteGroupsRequest| {
            let results =
                b.groups_names.iter().map(|g| DeletableGroupResult::default().with_group_id(g.clone()).with_error_code(NOT_COORDINATOR));
            DeleteGroupsResponse::default().with_results(results.collect())
        }),
        ApiKey::ListGroups => answer(request, |_: ListGroupsRequest| ListGroupsResponse::default()),
        ApiKey::InitProducerId => return init_producer_id(request),
        ApiKey::AddPartitionsToTxn => answer(request, |b: AddPartitionsToTxnRequest| {
            let topics = b.v3_and_below_topics.iter().map(|t| {
                let partitions = t.partitions.iter().map(|&p| {
                    AddPartitionsToTxnPartitionResult::default().with_partition_index(p).with_partition_error_code(NOT_COORDINATOR)
                });
                AddPartitionsToTxnTopicResult::default().with_name(t.name.clone()).with_results_by_partition(partitions.collect())
            });
            AddPartitionsToTxnResponse::default().with_error_code(NOT_COORDINATOR).with_results_by_topic_v3_and_below(topics.collect())
        }),
        ApiKey::AddOffsetsToTxn => {
            answer(request, |_: AddOffsetsToTxnRequest| AddOffsetsToTxnResponse::default().with_error_code(NOT_COORDINATOR))
        }
        ApiKey::EndTxn => answer(request, |_: EndTxnRequest| {
            EndTxnResponse::default().with_error_code(NOT_COORDINATOR).with_producer_id(ProducerId(-1)).with_producer_epoch(-1)
        }),
        ApiKey::TxnOffsetCommit => answer(request, |b: TxnOffsetCommitRequest| {
            let topics = b.topics.iter().map(|t| {
                let partitions = t.partitions.iter().map(|p| {
                    TxnOffsetCommitResponsePartition::default().with_partition_index(p.partition_index).with_error_code(NOT_COORDINATOR)
                });
                TxnOffsetCommitResponseTopic::default().with_name(t.name.clone()).with_partitions(partitions.collect())
            });
            TxnOffsetCommitResponse::default().with_topics(topics.collect())
        }),
        ApiKey::DescribeTransactions => answer(request, |b: DescribeTransactionsRequest| {
            let states = b.transactional_ids.iter().map(|id| {
                TransactionState::default()
                    .with_transactional_id(id.clone())
                    .with_error_code(NOT_COORDINATOR)
                    .with_producer_id(ProducerId(-1))
                    .with_producer_epoch(-1)
            });
            DescribeTransactionsResponse::default().with_transaction_states(states.collect())
        }),
        ApiKey::ListTransactions => answer(request, |_: ListTransactionsRequest| ListTransactionsResponse::default()),
        ApiKey::CreateTopics => answer(request, |b: CreateTopicsRequest| {
            let topics = b.topics.iter().map(|t| {
                CreatableTopicResult::default()
                    .with_name(t.name.clone())
                    .with_error_code(NOT_CONTROLLER)
                    .with_num_partitions(-1)
                    .with_replication_factor(-1)
            });
            CreateTopicsResponse::default().with_topics(topics.collect())
        }),
        ApiKey::DeleteTopics => answer(request, |b: DeleteTopicsRequest| {
            let by_name = b
                .topic_names
                .iter()
                .map(|name| DeletableTopicResult::default().with_name(Some(name.clone())).with_error_code(NOT_CONTROLLER));
            let by_state = b.topics.iter().map(|t| {
                DeletableTopicResult::default().with_name(t.name.clone()).with_topic_id(t.topic_id).with_error_code(NOT_CONTROLLER)
            });
            DeleteTopicsResponse::default().with_responses(by_name.chain(by_state).collect())
        }),
        ApiKey::CreatePartitions => answer(request, |b: CreatePartitionsRequest| {
            let results =
                b.topics.iter().map(|t| CreatePartitionsTopicResult::default().with_name(t.name.clone()).with_error_code(NOT_CONTROLLER));
            CreatePartitionsResponse::default().with_results(results.collect())
        }),
        ApiKey::AlterConfigs => answer(request, |b: AlterConfigsRequest| {
            use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
            let responses = b.resources.iter().map(|r| {
                AlterConfigsResourceResponse::default()
                    .with_resource_type(r.resource_type)
                    .with_resource_name(r.resource_name.clone())
                    .with_error_code(NOT_CONTROLLER)
            });
            AlterConfigsResponse::default().with_responses(responses.collect())
        }),
        ApiKey::IncrementalAlterConfigs => answer(request, |b: IncrementalAlterConfigsRequest| {
            use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
            let responses = b.resources.iter().map(|r| {
                AlterConfigsResourceResponse::default()
                    .with_resource_type(r.resource_type)
                    .with_resource_name(r.resource_name.clone())
                    .with_error_code(NOT_CONTROLLER)
            });
            IncrementalAlterConfigsResponse::default().with_responses(responses.collect())
        }),
        ApiKey::CreateAcls => answer(request, |b: CreateAclsRequest| {
            CreateAclsResponse::default()
                .with_results(b.creations.iter().map(|_| AclCreationResult::default().with_error_code(NOT_CONTROLLER)).collect())
        }),
        ApiKey::DeleteAcls => answer(request, |b: DeleteAclsRequest| {
            DeleteAclsResponse::default()
                .with_filter_results(b.filters.iter().map(|_| DeleteAclsFilterResult::default().with_error_code(NOT_CONTROLLER)).collect())
        }),
        _ => return None,
    };
    crate::metrics::note_error();
    Some(answer)
}

/// Decodes `request` as `R` and answers what `refuse` makes of it.
fn answer<R: kafka_protocol::protocol::Decodable, A: kafka_protocol::protocol::Encodable>(
    request: &RequestFrame,
    refuse: impl FnOnce(R) -> A,
) -> Outcome {
    match decode::<R>(request) {
        Ok(body) => respond(request, &refuse(body)),
        Err(outcome) => outcome,
    }
}

/// A transactional producer's InitProducerId: NOT_COORDINATOR (its coordinator is the
/// primary); an idempotent producer's is served (`None`), as is one that does not decode
/// (its handler answers that).
fn init_producer_id(request: &RequestFrame) -> Option<Outcome> {
    let body: InitProducerIdRequest = decode(request).ok()?;
    body.transactional_id.as_ref().filter(|id| !id.is_empty())?;
    Some(respond(
        request,
        &InitProducerIdResponse::default().with_error_code(NOT_COORDINATOR).with_producer_id(ProducerId(-1)).with_producer_epoch(-1),
    ))
}

/// Producer ids a standby hands out without writing: Postgres cannot take the next value of
/// `kafka.producer_ids` there. They are disjoint from the sequence's and from every other
/// node's: bit 62 set, this node's id (its low 10 bits) in bits 52-61, and below them the
/// time in microseconds since 1970 (which fits 52 bits until 2112), never less than the
/// last id given plus one. A standby restarted later starts above every id it gave before
/// as long as its clock did not go back by more than the restart took. Node ids that differ
/// in their low 10 bits (0-1023) get disjoint ranges. The primary accepts such an id like
/// any id it has no state for: from sequence 0 (writer/sequences.rs).
#[derive(Debug, Default)]
pub struct ProducerIds {
    last: std::sync::atomic::AtomicI64,
}

const STANDBY_PRODUCER_IDS: i64 = 1 << 62;
const MICROS_BITS: u32 = 52;

impl ProducerIds {
    /// The next id for node `node_id`.
    pub fn next(&self, node_id: i32) -> i64 {
        let micros = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_micros());
        self.next_at(node_id, i64::try_from(micros).unwrap_or(i64::MAX))
    }

    fn next_at(&self, node_id: i32, micros: i64) -> i64 {
        use std::sync::atomic::Ordering;
        let floor = STANDBY_PRODUCER_IDS | ((i64::from(node_id) & 0x3FF) << MICROS_BITS) | (micros & ((1 << MICROS_BITS) - 1));
        let given = |last: i64| floor.max(last.saturating_add(1));
        let last = self.last.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |last| Some(given(last))).unwrap_or_else(|last| last);
        given(last)
    }
}

/// Produce: every partition NOT_LEADER_OR_FOLLOWER; nothing at all for acks=0, as for
/// any Produce with acks=0 (the client learns of the new leader from its next Metadata).
fn produce(request: &RequestFrame) -> Outcome {
    let body: ProduceRequest = match decode(request) {
        Ok(body) => body,
        Err(outcome) => return outcome,
    };
    if body.acks == 0 {
        return Outcome::Silent;
    }
    respond(request, &super::produce::refused_everywhere(&body, ResponseError::NotLeaderOrFollower))
}

/// OffsetFetch: the group's error at every version's place for it (per partition before
/// v2, at the top from v2, per group from v8).
fn offset_fetch(body: OffsetFetchRequest) -> OffsetFetchResponse {
    let topics = body.topics.iter().flatten().map(|t| {
        let partitions = t.partition_indexes.iter().map(|&p| {
            OffsetFetchResponsePartition::default()
                .with_partition_index(p)
                .with_committed_offset(-1)
                .with_error_code(NOT_COORDINATOR)
                .with_metadata(Some(StrBytes::default()))
        });
        OffsetFetchResponseTopic::default().with_name(t.name.clone()).with_partitions(partitions.collect())
    });
    let groups =
        body.groups.iter().map(|g| OffsetFetchResponseGroup::default().with_group_id(g.group_id.clone()).with_error_code(NOT_COORDINATOR));
    OffsetFetchResponse::default().with_error_code(NOT_COORDINATOR).with_topics(topics.collect()).with_groups(groups.collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::testing::{append_values, broker_on, decode_response, request_frame, round_trip};
    use crate::broker::Broker;
    use crate::config::Config;
    use crate::protocol::records::{encode_batch, Record};
    use crate::storage::memory::MemoryStorage;
    use crate::storage::Storage;
    use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
    use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};

    #[tokio::test]
    async fn an_idempotent_producer_gets_an_id_from_the_standbys_own_range() {
        let broker = standby_with_topic_t();
        let request = InitProducerIdRequest::default().with_transactional_id(None).with_transaction_timeout_ms(60_000);
        let first: InitProducerIdResponse = round_trip(&broker, ApiKey::InitProducerId, 4, &request).await;
        let second: InitProducerIdResponse = round_trip(&broker, ApiKey::InitProducerId, 4, &request).await;
        assert_eq!((first.error_code, first.producer_epoch, second.error_code), (0, 0, 0));
        assert!(first.producer_id.0 >= STANDBY_PRODUCER_IDS, "{:?}", first.producer_id);
        assert!(second.producer_id.0 > first.producer_id.0, "never the same id twice");
    }

    #[test]
    fn standby_producer_ids_keep_to_their_nodes_range_and_never_repeat() {
        let ids = ProducerIds::default();
        let at = 1_796_000_000_000_000; // December 2026, in microseconds
        let first = ids.next_at(2, at);
        assert_eq!(first, (1 << 62) | (2 << 52) | at);
        assert_eq!(ids.next_at(2, at), first + 1, "two in the same microsecond");
        assert_eq!(ids.next_at(2, at - 1_000_000), first + 2, "the clock went back: still above the last");
        assert_eq!(ids.next_at(2, at + 10), first + 10);
        let other = ProducerIds::default().next_at(3, at);
        assert_eq!(other >> 52, (1 << 10) | 3, "node 3's range");
        assert_ne!(other >> 52, first >> 52);
        assert!(first > 0 && other > 0, "never negative (-1 means none)");
    }

    fn standby_with_topic_t() -> Broker {
        let mut storage = MemoryStorage::default();
        storage.create_topic("t", 1).unwrap();
        broker_on(storage, Config { standby: true, ..Config::default() })
    }

    fn name(text: &'static str) -> TopicName {
        TopicName(StrBytes::from_static_str(text))
    }

    fn produce(acks: i16) -> ProduceRequest {
        let record = Record {
            offset_delta: 0,
            timestamp: 1_700_000_000_000,
            key: None,
            value: Some(bytes::Bytes::from_static(b"v")),
            headers: None,
        };
        let partition = PartitionProduceData::default().with_index(0).with_records(Some(encode_batch(0, &[record])));
        ProduceRequest::default()
            .with_acks(acks)
            .with_timeout_ms(1000)
            .with_topic_data(vec![TopicProduceData::default().with_name(name("t")).with_partition_data(vec![partition])])
    }

    #[tokio::test]
    async fn writes_go_to_the_leader_groups_and_transactions_to_the_coordinator() {
        let broker = standby_with_topic_t();
        let produced: ProduceResponse = round_trip(&broker, ApiKey::Produce, 9, &produce(-1)).await;
        assert_eq!(produced.responses[0].partition_responses[0].error_code, NOT_LEADER);
        assert!(matches!(broker.handle(request_frame(ApiKey::Produce, 9, &produce(0))).await, Outcome::Silent), "acks=0: no answer");

        let join = JoinGroupRequest::default()
            .with_group_id(GroupId(StrBytes::from_static_str("g")))
            .with_protocol_type(StrBytes::from_static_str("consumer"));
        let joined: JoinGroupResponse = round_trip(&broker, ApiKey::JoinGroup, 5, &join).await;
        assert_eq!(joined.error_code, NOT_COORDINATOR);
        let transactional = InitProducerIdRequest::default()
            .with_transactional_id(Some(TransactionalId(StrBytes::from_static_str("tx"))))
            .with_transaction_timeout_ms(60_000);
        let init: InitProducerIdResponse = round_trip(&broker, ApiKey::InitProducerId, 4, &transactional).await;
        assert_eq!((init.error_code, init.producer_id.0), (NOT_COORDINATOR, -1));
        let fetch_offsets = OffsetFetchRequest::default().with_groups(vec![
            offset_fetch_request::OffsetFetchRequestGroup::default().with_group_id(GroupId(StrBytes::from_static_str("g")))
        ]);
        let offsets: OffsetFetchResponse = round_trip(&broker, ApiKey::OffsetFetch, 8, &fetch_offsets).await;
        assert_eq!(offsets.groups[0].error_code, NOT_COORDINATOR);
        let listed: ListGroupsResponse = round_trip(&broker, ApiKey::ListGroups, 4, &ListGroupsRequest::default()).await;
        assert_eq!((listed.error_code, listed.groups.len()), (0, 0), "a standby coordinates no group");

        let create = CreateTopicsRequest::default().with_topics(vec![create_topics_request::CreatableTopic::default()
            .with_name(name("new"))
            .with_num_partitions(1)
            .with_replication_factor(1)]);
        let created: CreateTopicsResponse = round_trip(&broker, ApiKey::CreateTopics, 7, &create).await;
        assert_eq!(created.topics[0].error_code, NOT_CONTROLLER);
        let topics = crate::broker::testing::with_storage(&broker, |s| s.all_topics().unwrap().len()).await;
        assert_eq!(topics, 1, "nothing was created");
    }

    #[tokio::test]
    async fn the_primary_is_named_coordinator_and_leader() {
        let mut storage = MemoryStorage::default();
        storage.leader = Some(1);
        let cluster_nodes = crate::config::nodes::parse("1@10.0.0.1:9092,2@10.0.0.2:9092").unwrap();
        let broker = broker_on(storage, Config { standby: true, node_id: 2, cluster_nodes, ..Config::default() });
        let found: FindCoordinatorResponse =
            round_trip(&broker, ApiKey::FindCoordinator, 3, &FindCoordinatorRequest::default().with_key(StrBytes::from_static_str("g")))
                .await;
        assert_eq!((found.error_code, found.node_id.0, found.host.as_str(), found.port), (0, 1, "10.0.0.1", 9092));
        let keys = FindCoordinatorRequest::default().with_coordinator_keys(vec![StrBytes::from_static_str("g")]);
        let found: FindCoordinatorResponse = round_trip(&broker, ApiKey::FindCoordinator, 4, &keys).await;
        assert_eq!((found.coordinators[0].error_code, found.coordinators[0].node_id.0), (0, 1));
        let metadata: MetadataResponse = round_trip(&broker, ApiKey::Metadata, 9, &MetadataRequest::default().with_topics(None)).await;
        let brokers: Vec<(i32, &str)> = metadata.brokers.iter().map(|b| (b.node_id.0, b.host.as_str())).collect();
        assert_eq!(brokers, vec![(1, "10.0.0.1"), (2, "127.0.0.1")]);
        assert_eq!(metadata.controller_id.0, 1);
    }

    #[tokio::test]
    async fn without_a_known_primary_there_is_no_coordinator_and_no_leader() {
        let broker = standby_with_topic_t();
        let found: FindCoordinatorResponse =
            round_trip(&broker, ApiKey::FindCoordinator, 3, &FindCoordinatorRequest::default().with_key(StrBytes::from_static_str("g")))
                .await;
        assert_eq!((found.error_code, found.node_id.0), (ResponseError::CoordinatorNotAvailable.code(), -1));
        let metadata: MetadataResponse = round_trip(&broker, ApiKey::Metadata, 9, &MetadataRequest::default().with_topics(None)).await;
        let partition = &metadata.topics.iter().find(|t| t.name.as_ref().is_some_and(|n| n.as_str() == "t")).unwrap().partitions[0];
        assert_eq!((partition.error_code, partition.leader_id.0), (ResponseError::LeaderNotAvailable.code(), -1));
    }

    #[tokio::test]
    async fn reads_are_served_and_metadata_creates_no_topic() {
        let broker = standby_with_topic_t();
        // What the primary wrote, replayed (the writer's path stands in for replay here).
        append_values(&broker, 0, &[b"a", b"b"]).await;
        let partition = FetchPartition::default().with_partition(0).with_fetch_offset(0).with_partition_max_bytes(1 << 20);
        let fetch = FetchRequest::default()
            .with_max_wait_ms(0)
            .with_max_bytes(1 << 20)
            .with_session_epoch(-1)
            .with_topics(vec![FetchTopic::default().with_topic(name("t")).with_partitions(vec![partition])]);
        let fetched: FetchResponse = round_trip(&broker, ApiKey::Fetch, 11, &fetch).await;
        let data = &fetched.responses[0].partitions[0];
        assert_eq!((data.error_code, data.high_watermark), (0, 2));
        assert!(data.records.as_ref().is_some_and(|r| !r.is_empty()));

        let wanted = |topic: &'static str| MetadataRequestTopic::default().with_name(Some(name(topic)));
        let request =
            MetadataRequest::default().with_topics(Some(vec![wanted("t"), wanted("unknown")])).with_allow_auto_topic_creation(true);
        let outcome = broker.handle(request_frame(ApiKey::Metadata, 9, &request)).await;
        let metadata: MetadataResponse = decode_response(outcome, ApiKey::Metadata, 9);
        let codes: Vec<i16> = metadata.topics.iter().map(|t| t.error_code).collect();
        assert_eq!(codes, vec![0, ResponseError::UnknownTopicOrPartition.code()]);
    }
}

#[cfg(test)]
mod every_version {
    use super::*;
    use crate::protocol::header::parse_request;
    use crate::protocol::samples::sample_request;
    use crate::protocol::versions::SERVED_APIS;

    /// A refusal is a response in the request's own version: a field set that the version
    /// lacks would fail to encode and close the connection instead.
    #[test]
    fn every_refusal_encodes_at_every_served_version() {
        let mut refused = 0;
        for api in SERVED_APIS {
            for version in api.min_served..=api.max {
                let Some(frame) = sample_request(api.key, version) else { continue };
                let request = parse_request(frame).expect("samples parse");
                match refusal(&request) {
                    Some(Outcome::Close(reason)) => panic!("{:?} v{version}: {reason}", api.key),
                    Some(_) => refused += 1,
                    None => {}
                }
            }
        }
        assert!(refused > 100, "only {refused} refusals checked");
    }
}
