//! Metadata (v0-v12): the broker, and the topics asked for.
//!
//! Which topics: v0 treats an empty list as "all topics"; from v1 a null list means all and
//! an empty list means none. Unknown topics are created when both `pg_kafka.auto_create_topics`
//! and the request (v4+; implicitly before) allow it. From v10 a topic may be named by id.

use kafka_protocol::messages::metadata_response::{MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::authorize::{access, Access};
use super::cluster::{self, ClusterView};
use super::{decode, respond, Broker, Outcome};
use crate::protocol::header::RequestFrame;
use crate::security::acl::{Operation, ResourceType, CLUSTER_NAME};
use crate::storage::{is_valid_topic_name, Storage, StorageError, StorageLayout, Topic};

/// The cluster id every Metadata response carries (v2+).
pub const CLUSTER_ID: &str = "pg_kafka";

use crate::storage::topics::look_up;
pub use crate::storage::topics::TopicRef;

/// Which topics a request asks about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Wanted {
    All,
    Some(Vec<TopicRef>),
}

/// The answer for one topic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Resolved {
    Found(Topic),
    Failed(TopicRef, ResponseError),
}

pub async fn handle(broker: &Broker, request: &RequestFrame) -> Outcome {
    let body: MetadataRequest = match decode(request) {
        Ok(body) => body,
        Err(outcome) => return outcome,
    };
    let version = request.version();
    let access = access(broker).await;
    let (wanted, denied) = describable(wanted_topics(&body, version), &access);
    let may_create = match &wanted {
        Wanted::Some(refs) => {
            access.allows_cluster(Operation::Create)
                || refs.iter().all(|r| matches!(r, TopicRef::Name(n) if access.allows_topic(Operation::Create, n)))
        }
        Wanted::All => false,
    };
    // A hot standby creates nothing (the primary does, at the client's next request there).
    let auto_create =
        (broker.config().auto_create_topics && !broker.config().standby && (version < 4 || body.allow_auto_topic_creation) && may_create)
            .then_some((broker.config().default_partitions, broker.config().default_topic_storage));
    let lookup = wanted.clone();
    let mut resolved = match broker.storage.call(move |storage| resolve(storage, &lookup, auto_create)).await {
        Ok(Ok(resolved)) => resolved,
        // Storage failed: say so per topic (retriable), so the client backs off and retries.
        _ => unavailable(&wanted),
    };
    // Listing everything shows only what the principal may describe; a topic named by id
    // is checked once its name is known.
    let hidden = |r: &Resolved| matches!(r, Resolved::Found(t) if !access.allows_topic(Operation::Describe, &t.name));
    if wanted == Wanted::All {
        resolved.retain(|r| !hidden(r));
    } else {
        for r in resolved.iter_mut().filter(|r| hidden(r)) {
            if let Resolved::Found(t) = r {
                *r = Resolved::Failed(TopicRef::Id(t.uuid), ResponseError::TopicAuthorizationFailed);
            }
        }
    }
    resolved.extend(denied.into_iter().map(|r| Resolved::Failed(r, ResponseError::TopicAuthorizationFailed)));
    let mut response = response(&cluster::view(broker).await, resolved);
    if body.include_topic_authorized_operations {
        for topic in &mut response.topics {
            let name = topic.name.as_ref().map(|n| n.0.to_string()).unwrap_or_default();
            topic.topic_authorized_operations = access.operations(ResourceType::Topic, &name);
        }
    }
    if body.include_cluster_authorized_operations {
        response.cluster_authorized_operations = access.operations(ResourceType::Cluster, CLUSTER_NAME);
    }
    respond(request, &response)
}

/// The wanted topics a principal may describe, and those (by name) it may not.
fn describable(wanted: Wanted, access: &Access) -> (Wanted, Vec<TopicRef>) {
    match wanted {
        Wanted::All => (Wanted::All, vec![]),
        Wanted::Some(refs) => {
            let (allowed, denied) = refs.into_iter().partition(|r| match r {
                TopicRef::Name(name) => access.check_topic(Operation::Describe, name).is_ok(),
                TopicRef::Id(_) => true, // checked once the name is known
            });
            (Wanted::Some(allowed), denied)
        }
    }
}

/// The distinct topics asked for, in the order first asked (Kafka answers each once): a
/// request repeating one name half a million times costs one lookup, not half a million.
fn wanted_topics(body: &MetadataRequest, version: i16) -> Wanted {
    match &body.topics {
        None => Wanted::All,
        Some(topics) if topics.is_empty() && version == 0 => Wanted::All,
        Some(topics) => {
            let mut seen = std::collections::HashSet::new();
            Wanted::Some(
                topics
                    .iter()
                    .map(|t| match &t.name {
                        // v10+: a topic named only by id carries a null (or empty) name.
                        Some(name) if !name.0.is_empty() || t.topic_id.is_nil() => TopicRef::Name(name.0.to_string()),
                        _ => TopicRef::Id(t.topic_id),
                    })
                    .filter(|r| seen.insert(r.clone()))
                    .collect(),
            )
        }
    }
}

/// Topics one request may auto-create; the rest are answered LEADER_NOT_AVAILABLE
/// (retriable: the client asks again and the next request creates more).
pub const CREATIONS_PER_REQUEST: usize = 64;

/// Looks up (and, with `auto_create = Some((partitions, layout))`, creates) the wanted topics.
/// Runs on the storage thread, with work bounded whatever the request names: the lookups
/// of [`look_up`] and at most [`CREATIONS_PER_REQUEST`] creations.
pub fn resolve(
    storage: &mut dyn Storage,
    wanted: &Wanted,
    auto_create: Option<(i32, StorageLayout)>,
) -> Result<Vec<Resolved>, StorageError> {
    let refs = match wanted {
        Wanted::All => {
            let all = crate::storage::offsets_topic::with_internal(storage.all_topics()?);
            return Ok(all.into_iter().map(Resolved::Found).collect());
        }
        Wanted::Some(refs) => refs,
    };
    // Names no topic can have are answered without a lookup.
    let valid = |r: &&TopicRef| !matches!(r, TopicRef::Name(name) if !is_valid_topic_name(name));
    let askable: Vec<TopicRef> = refs.iter().filter(valid).cloned().collect();
    let mut found = look_up(storage, &askable)?.into_iter();
    let mut created = 0;
    let mut resolved = Vec::with_capacity(refs.len());
    for topic_ref in refs {
        let failed = |error| Resolved::Failed(topic_ref.clone(), error);
        let answer = match topic_ref {
            TopicRef::Name(_) if !valid(&topic_ref) => failed(ResponseError::InvalidTopicException),
            _ => match (found.next().flatten(), topic_ref) {
                (Some(topic), _) => Resolved::Found(topic),
                (None, TopicRef::Id(_)) => failed(ResponseError::UnknownTopicId),
                (None, TopicRef::Name(name)) => create_missing(storage, name, auto_create, &mut created)?,
            },
        };
        resolved.push(answer);
    }
    Ok(resolved)
}

/// A named topic that does not exist: created if the request may, within its allowance.
fn create_missing(
    storage: &mut dyn Storage,
    name: &str,
    auto_create: Option<(i32, StorageLayout)>,
    created: &mut usize,
) -> Result<Resolved, StorageError> {
    let failed = |error| Ok(Resolved::Failed(TopicRef::Name(name.to_owned()), error));
    // Internal names are Kafka's own topics: a lag monitor asking for __consumer_offsets
    // must not turn it into an ordinary topic.
    let Some((partitions, layout)) = auto_create.filter(|_| !crate::storage::is_internal_topic(name)) else {
        return failed(ResponseError::UnknownTopicOrPartition);
    };
    if *created >= CREATIONS_PER_REQUEST {
        return failed(ResponseError::LeaderNotAvailable);
    }
    *created += 1;
    match storage.create_topic_as(name, partitions, layout) {
        Ok(topic) => Ok(Resolved::Found(topic)),
        // Created meanwhile by someone else (SQL, another database session): use theirs.
        Err(StorageError::TopicExists(_)) => match storage.topic(name)? {
            Some(topic) => Ok(Resolved::Found(topic)),
            None => failed(ResponseError::UnknownTopicOrPartition),
        },
        Err(e) => Err(e),
    }
}

fn unavailable(wanted: &Wanted) -> Vec<Resolved> {
    match wanted {
        Wanted::All => Vec::new(),
        Wanted::Some(refs) => refs.iter().map(|r| Resolved::Failed(r.clone(), ResponseError::LeaderNotAvailable)).collect(),
    }
}

fn response(cluster: &ClusterView, resolved: Vec<Resolved>) -> MetadataResponse {
    let brokers = cluster
        .brokers
        .iter()
        .map(|n| {
            MetadataResponseBroker::default()
                .with_node_id(BrokerId(n.id))
                .with_host(StrBytes::from_string(n.host.clone()))
                .with_port(n.port)
                .with_rack(n.rack.clone().map(StrBytes::from_string))
        })
        .collect();
    MetadataResponse::default()
        .with_brokers(brokers)
        .with_cluster_id(Some(StrBytes::from_static_str(CLUSTER_ID)))
        .with_controller_id(BrokerId(cluster.leader.unwrap_or(-1)))
        .with_topics(resolved.into_iter().map(|r| topic_metadata(cluster, r)).collect())
}

fn topic_metadata(cluster: &ClusterView, resolved: Resolved) -> MetadataResponseTopic {
    let name = |n: &str| Some(TopicName(StrBytes::from_string(n.to_owned())));
    match resolved {
        Resolved::Found(topic) => MetadataResponseTopic::default()
            .with_name(name(&topic.name))
            .with_topic_id(topic.uuid)
            .with_is_internal(topic.id == crate::storage::offsets_topic::TOPIC_ID)
            .with_partitions((0..topic.partitions).map(|p| partition_metadata(cluster, p)).collect()),
        Resolved::Failed(TopicRef::Name(n), error) => MetadataResponseTopic::default().with_name(name(&n)).with_error_code(error.code()),
        Resolved::Failed(TopicRef::Id(id), error) => MetadataResponseTopic::default().with_topic_id(id).with_error_code(error.code()),
    }
}

/// The primary leads every partition, and every node is a replica: a standby holds what
/// Postgres replayed. The in-sync replicas are the leader and the standbys synchronous
/// now (`pg_stat_replication.sync_state`). A standby that does not know the leader says
/// LEADER_NOT_AVAILABLE, and the client asks again. There is no leader epoch to offer (no
/// OffsetForLeaderEpoch), so it is -1, which clients read as "unknown".
fn partition_metadata(cluster: &ClusterView, index: i32) -> MetadataResponsePartition {
    let partition = MetadataResponsePartition::default()
        .with_partition_index(index)
        .with_leader_epoch(-1)
        .with_replica_nodes(cluster.replicas.iter().copied().map(BrokerId).collect());
    match cluster.leader {
        Some(leader) => partition.with_leader_id(BrokerId(leader)).with_isr_nodes(cluster.in_sync.iter().copied().map(BrokerId).collect()),
        None => partition.with_leader_id(BrokerId(-1)).with_error_code(ResponseError::LeaderNotAvailable.code()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::testing::{broker, round_trip};
    use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
    use kafka_protocol::messages::ApiKey;
    use uuid::Uuid;

    fn request(names: Option<&[&'static str]>) -> MetadataRequest {
        MetadataRequest::default().with_allow_auto_topic_creation(true).with_topics(names.map(|names| {
            names.iter().map(|n| MetadataRequestTopic::default().with_name(Some(TopicName(StrBytes::from_static_str(n))))).collect()
        }))
    }

    async fn metadata(b: &Broker, version: i16, body: &MetadataRequest) -> MetadataResponse {
        round_trip(b, ApiKey::Metadata, version, body).await
    }

    /// `__consumer_offsets` is served (read-only, internal); other internal names are
    /// never created.
    #[tokio::test]
    async fn internal_topics_are_listed_as_internal_and_never_auto_created() {
        let b = broker();
        let response = metadata(&b, 12, &request(Some(&["__consumer_offsets", "__transaction_state"]))).await;
        let answers: Vec<(&str, i16, bool, usize)> =
            response.topics.iter().map(|t| (t.name.as_ref().unwrap().as_str(), t.error_code, t.is_internal, t.partitions.len())).collect();
        assert_eq!(answers, vec![("__consumer_offsets", 0, true, 1), ("__transaction_state", 3, false, 0)]);
        let all = metadata(&b, 12, &request(None)).await.topics;
        assert_eq!(all.iter().map(|t| t.name.as_ref().unwrap().as_str()).collect::<Vec<_>>(), ["__consumer_offsets"]);
        assert!(b.storage.call(|s| s.all_topics()).await.unwrap().unwrap().is_empty(), "nothing was created");
    }

    #[tokio::test]
    async fn auto_creates_requested_topics_at_every_version() {
        let b = broker();
        for version in 0..=12 {
            let response = metadata(&b, version, &request(Some(&["demo"]))).await;
            assert_eq!(response.brokers.len(), 1);
            assert_eq!(response.brokers[0].node_id.0, crate::config::defaults::NODE_ID);
            assert_eq!(response.brokers[0].port, 9092);
            let topic = &response.topics[0];
            assert_eq!(topic.error_code, 0, "v{version}");
            assert_eq!(topic.partitions.len(), 1);
            assert_eq!(topic.partitions[0].isr_nodes, vec![BrokerId(crate::config::defaults::NODE_ID)]);
        }
        let all = b.storage.call(|s| s.all_topics()).await.unwrap().unwrap();
        assert_eq!(all.len(), 1, "created once, found afterwards");
    }

    #[tokio::test]
    async fn null_means_all_empty_means_none_except_in_v0() {
        let b = broker();
        metadata(&b, 4, &request(Some(&["a", "b"]))).await;
        // All: the two and __consumer_offsets.
        assert_eq!(metadata(&b, 4, &request(None)).await.topics.len(), 3);
        assert_eq!(metadata(&b, 4, &request(Some(&[]))).await.topics.len(), 0);
        assert_eq!(metadata(&b, 0, &request(Some(&[]))).await.topics.len(), 3);
    }

    #[tokio::test]
    async fn unknown_and_invalid_topics_get_their_error_codes() {
        let b = broker();
        let no_create = request(Some(&["missing"])).with_allow_auto_topic_creation(false);
        let response = metadata(&b, 4, &no_create).await;
        assert_eq!(response.topics[0].error_code, ResponseError::UnknownTopicOrPartition.code());
        let response = metadata(&b, 4, &request(Some(&["bad name!"]))).await;
        assert_eq!(response.topics[0].error_code, ResponseError::InvalidTopicException.code());
        assert!(b.storage.call(|s| s.all_topics()).await.unwrap().unwrap().is_empty());
    }

    /// A name (or a null name) repeated a hundred thousand times is one lookup and one
    /// answer, as in Kafka; it used to be a storage lookup (a read of every topic, for
    /// null names) per entry, holding the storage thread for seconds.
    #[tokio::test]
    async fn repeated_topics_are_looked_up_and_answered_once() {
        let b = broker();
        metadata(&b, 12, &request(Some(&["a"]))).await;
        let null = MetadataRequestTopic::default().with_name(None);
        let named = MetadataRequestTopic::default().with_name(Some(TopicName(StrBytes::from_static_str("a"))));
        let body = MetadataRequest::default().with_topics(Some([vec![null; 100_000], vec![named; 100_000]].concat()));
        let response = metadata(&b, 12, &body).await;
        let answered: Vec<(Option<String>, i16)> =
            response.topics.iter().map(|t| (t.name.as_ref().map(|n| n.0.to_string()), t.error_code)).collect();
        assert_eq!(answered, vec![(Some(String::new()), ResponseError::UnknownTopicId.code()), (Some("a".into()), 0)]);
    }

    #[tokio::test]
    async fn topic_ids_are_served_and_resolved_from_v10() {
        let b = broker();
        let created = metadata(&b, 12, &request(Some(&["t"]))).await.topics[0].topic_id;
        assert_ne!(created, Uuid::nil());
        let by_id = MetadataRequest::default().with_topics(Some(vec![MetadataRequestTopic::default().with_topic_id(created)]));
        let response = metadata(&b, 12, &by_id).await;
        assert_eq!(response.topics[0].name.as_ref().unwrap().0.as_str(), "t");
        let unknown = MetadataRequest::default().with_topics(Some(vec![MetadataRequestTopic::default().with_topic_id(Uuid::from_u128(7))]));
        assert_eq!(metadata(&b, 12, &unknown).await.topics[0].error_code, ResponseError::UnknownTopicId.code());
    }

    /// One Metadata naming 1.2M distinct unknown topics kept the main thread busy 30 s:
    /// however many names, one read of every topic, and at most CREATIONS_PER_REQUEST
    /// creations (the rest retriable).
    #[test]
    fn distinct_unknown_names_cost_bounded_storage_work() {
        let mut storage = crate::storage::memory::MemoryStorage::default();
        storage.create_topic("known", 1).unwrap();
        storage.topic_reads = 0;
        let mut names: Vec<TopicRef> = (0..20_000).map(|i| TopicRef::Name(format!("unknown-{i}"))).collect();
        names.push(TopicRef::Name("known".into()));
        names.push(TopicRef::Name("bad name".into()));
        let wanted = Wanted::Some(names);
        let resolved = resolve(&mut storage, &wanted, None).unwrap();
        assert_eq!(storage.topic_reads, 1, "one read for every name");
        assert_eq!(resolved.len(), 20_002);
        assert!(matches!(&resolved[20_000], Resolved::Found(t) if t.name == "known"));
        assert!(matches!(resolved[20_001], Resolved::Failed(_, ResponseError::InvalidTopicException)));
        assert!(matches!(resolved[0], Resolved::Failed(_, ResponseError::UnknownTopicOrPartition)));

        let created = resolve(&mut storage, &wanted, Some((1, StorageLayout::Batches))).unwrap();
        let made = created.iter().filter(|r| matches!(r, Resolved::Found(_))).count();
        assert_eq!(made, CREATIONS_PER_REQUEST + 1, "the allowance, and the known topic");
        assert!(matches!(created[19_999], Resolved::Failed(_, ResponseError::LeaderNotAvailable)));
    }
}
