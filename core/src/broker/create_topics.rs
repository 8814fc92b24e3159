//! CreateTopics (v2-v7): checks every topic (name, partitions, replication, replica
//! assignment, configs), then creates each with its configs in one transaction, unless
//! `validate_only`. There is one broker: replication factor 1 (or -1, the default) only.

use super::authorize::access;
use crate::security::acl::Operation;
use std::collections::{HashMap, HashSet};

use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::create_topics_response::{CreatableTopicConfigs, CreatableTopicResult};
use kafka_protocol::messages::{BrokerId, CreateTopicsRequest, CreateTopicsResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::topic_configs::{effective, invalid};
use super::{decode, respond, storage_call, Broker, Outcome};
use crate::protocol::header::RequestFrame;
use crate::storage::batches::LAYOUT_CONFIG;
use crate::storage::{is_valid_topic_name, StorageError, StorageLayout, Topic};

/// The most partitions a topic may have (also checked by `kafka.topics`).
pub const MAX_PARTITIONS: i32 = 100_000;

pub type Refusal = (ResponseError, String);

/// A topic that passed the checks: what to create.
struct Plan {
    partitions: i32,
    configs: Vec<(String, String)>,
    /// Its `pg_kafka.storage` config, or the setting's default.
    layout: StorageLayout,
}

/// A topic CreateTopics will create: name, partition count, configs, layout.
type TopicToCreate = (String, i32, Vec<(String, String)>, StorageLayout);

pub async fn handle(broker: &Broker, request: &RequestFrame) -> Outcome {
    let body: CreateTopicsRequest = match decode(request) {
        Ok(body) => body,
        Err(outcome) => return outcome,
    };
    let repeated = repeated_names(body.topics.iter().map(|t| t.name.as_str()));
    let access = access(broker).await;
    let may_create = |name: &str| access.allows_cluster(Operation::Create) || access.check_topic(Operation::Create, name).is_ok();
    let plans: Vec<Result<Plan, Refusal>> = body
        .topics
        .iter()
        .map(|t| match repeated.contains(t.name.as_str()) {
            _ if !may_create(t.name.as_str()) => {
                Err((ResponseError::TopicAuthorizationFailed, "CREATE on the cluster or on the topic is needed".into()))
            }
            false => plan(t, &broker.config()),
            true => Err(named_twice()),
        })
        .collect();
    let to_create: Vec<TopicToCreate> = body
        .topics
        .iter()
        .zip(&plans)
        .filter_map(|(t, p)| p.as_ref().ok().map(|p| (t.name.to_string(), p.partitions, p.configs.clone(), p.layout)))
        .collect();
    let validate_only = body.validate_only;
    let created = storage_call(broker, move |s| {
        let mut outcomes = Vec::new();
        for (name, partitions, configs, layout) in to_create {
            let outcome = if validate_only {
                match s.topic(&name)? {
                    Some(_) => Err(StorageError::TopicExists(name.clone())),
                    None => Ok(None),
                }
            } else {
                match s.create_topic_as(&name, partitions, layout) {
                    Ok(topic) => {
                        s.replace_topic_configs(topic.id, &configs)?;
                        Ok(Some(topic))
                    }
                    Err(e @ (StorageError::TopicExists(_) | StorageError::InvalidTopicName(_))) => Err(e),
                    Err(e) => return Err(e),
                }
            };
            outcomes.push((name, outcome));
        }
        Ok(outcomes)
    })
    .await;
    let created: HashMap<String, Result<Option<Topic>, Refusal>> = match created {
        Ok(outcomes) => outcomes
            .into_iter()
            .map(|(name, outcome)| {
                let outcome = outcome.map_err(|e| match e {
                    StorageError::TopicExists(_) => (ResponseError::TopicAlreadyExists, format!("topic \"{name}\" already exists")),
                    other => (ResponseError::InvalidTopicException, other.to_string()),
                });
                (name, outcome)
            })
            .collect(),
        Err(e) => {
            let failed = body.topics.iter().map(|t| (t.name.to_string(), Err((ResponseError::KafkaStorageError, e.to_string()))));
            failed.collect()
        }
    };
    let results = body
        .topics
        .iter()
        .zip(plans)
        .map(|(t, plan)| {
            let outcome = plan.and_then(|plan| created[t.name.as_str()].clone().map(|topic| (plan, topic)));
            result(t, outcome)
        })
        .collect();
    respond(request, &CreateTopicsResponse::default().with_topics(results))
}

/// Names that appear more than once in a request (Kafka refuses all of their entries).
pub fn repeated_names<'a>(names: impl Iterator<Item = &'a str>) -> HashSet<&'a str> {
    let mut seen = HashSet::new();
    names.filter(|name| !seen.insert(*name)).collect()
}

pub fn named_twice() -> Refusal {
    (ResponseError::InvalidRequest, "topic named more than once in the request".into())
}

/// Whether a partition's replica list is this broker (`node_id`) and nothing else.
pub fn on_this_broker_alone(broker_ids: &[BrokerId], node_id: i32) -> bool {
    matches!(broker_ids, [only] if only.0 == node_id)
}

pub fn not_on_this_broker(node_id: i32) -> Refusal {
    (ResponseError::InvalidReplicaAssignment, format!("every partition must be on broker {node_id} alone"))
}

/// Checks one requested topic.
fn plan(topic: &CreatableTopic, config: &crate::config::Config) -> Result<Plan, Refusal> {
    let (default_partitions, default_layout) = (config.default_partitions, config.default_topic_storage);
    if !is_valid_topic_name(&topic.name) {
        return Err((ResponseError::InvalidTopicException, format!("invalid topic name \"{}\"", topic.name.as_str())));
    }
    if crate::storage::is_internal_topic(&topic.name) {
        return Err((ResponseError::InvalidRequest, format!("creation of internal topic {} is prohibited", topic.name.as_str())));
    }
    if !matches!(topic.replication_factor, -1 | 1) {
        return Err((
            ResponseError::InvalidReplicationFactor,
            format!("replication factor {} is impossible: pg_kafka is one broker", topic.replication_factor),
        ));
    }
    let partitions = if topic.assignments.is_empty() {
        if topic.num_partitions == -1 {
            default_partitions
        } else {
            topic.num_partitions
        }
    } else {
        if topic.num_partitions != -1 || topic.replication_factor != -1 {
            return Err((ResponseError::InvalidRequest, "give either assignments or partitions and replication".into()));
        }
        let mut indexes: Vec<i32> = topic.assignments.iter().map(|a| a.partition_index).collect();
        indexes.sort_unstable();
        let consecutive = indexes.iter().enumerate().all(|(i, &p)| p == i as i32);
        if !consecutive || !topic.assignments.iter().all(|a| on_this_broker_alone(&a.broker_ids, config.node_id)) {
            return Err(not_on_this_broker(config.node_id));
        }
        i32::try_from(indexes.len()).unwrap_or(i32::MAX)
    };
    if !(1..=MAX_PARTITIONS).contains(&partitions) {
        return Err((ResponseError::InvalidPartitions, format!("partitions must be between 1 and {MAX_PARTITIONS}")));
    }
    let mut configs = Vec::new();
    let mut layout = default_layout;
    for config in &topic.configs {
        let (name, value) = (config.name.to_string(), config.value.as_ref().map(ToString::to_string));
        let Some(value) = value else { continue };
        if name == LAYOUT_CONFIG {
            // Kept in kafka.topics.storage, not among the configs: fixed for the topic's life.
            layout = StorageLayout::parse(&value)
                .ok_or_else(|| (ResponseError::InvalidConfig, format!("{LAYOUT_CONFIG} must be \"rows\" or \"batches\", not {value:?}")))?;
            continue;
        }
        if let Some(problem) = invalid(&name, &value) {
            return Err((ResponseError::InvalidConfig, problem));
        }
        configs.retain(|(n, _): &(String, String)| *n != name);
        configs.push((name, value));
    }
    configs.sort();
    Ok(Plan { partitions, configs, layout })
}

fn result(topic: &CreatableTopic, outcome: Result<(Plan, Option<Topic>), Refusal>) -> CreatableTopicResult {
    let answer = CreatableTopicResult::default().with_name(topic.name.clone());
    match outcome {
        Err((error, message)) => answer
            .with_error_code(error.code())
            .with_error_message(Some(StrBytes::from_string(message)))
            .with_num_partitions(-1)
            .with_replication_factor(-1),
        Ok((plan, created)) => {
            let configs = effective(&plan.configs)
                .into_iter()
                .map(|c| {
                    CreatableTopicConfigs::default()
                        .with_name(StrBytes::from_static_str(c.def.name))
                        .with_config_source(c.source())
                        .with_value(Some(StrBytes::from_string(c.value)))
                        .with_read_only(false)
                })
                .collect();
            answer
                .with_topic_id(created.map(|t| t.uuid).unwrap_or_default())
                .with_num_partitions(plan.partitions)
                .with_replication_factor(1)
                .with_configs(Some(configs))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::testing::{broker, round_trip};
    use kafka_protocol::messages::create_topics_request::CreatableTopicConfig;
    use kafka_protocol::messages::{ApiKey, TopicName};

    fn topic(name: &'static str, partitions: i32, replication: i16) -> CreatableTopic {
        CreatableTopic::default()
            .with_name(TopicName(StrBytes::from_static_str(name)))
            .with_num_partitions(partitions)
            .with_replication_factor(replication)
    }

    #[tokio::test]
    async fn creates_valid_topics_and_names_what_is_wrong_with_the_rest() {
        let broker = broker();
        let config = |n: &'static str, v: &'static str| {
            CreatableTopicConfig::default().with_name(StrBytes::from_static_str(n)).with_value(Some(StrBytes::from_static_str(v)))
        };
        let request = CreateTopicsRequest::default().with_topics(vec![
            topic("a", 3, 1).with_configs(vec![config("retention.ms", "1000")]),
            topic("b", -1, -1),
            topic("bad name", 1, 1),
            topic("c", 0, 1),
            topic("d", 1, 3),
            topic("e", 1, 1).with_configs(vec![config("cleanup.policy", "compacted")]),
        ]);
        let response: CreateTopicsResponse = round_trip(&broker, ApiKey::CreateTopics, 7, &request).await;
        let codes: Vec<(i16, i32)> = response.topics.iter().map(|t| (t.error_code, t.num_partitions)).collect();
        assert_eq!(codes, vec![(0, 3), (0, 1), (17, -1), (37, -1), (38, -1), (40, -1)]);
        assert_ne!(response.topics[0].topic_id, uuid::Uuid::nil());
        let stored = broker.storage.call(|s| s.all_topics()).await.unwrap().unwrap();
        assert_eq!(stored.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(), vec!["a", "b"]);
        let configs = broker.storage.call(|s| s.topic_configs(1)).await.unwrap().unwrap();
        assert_eq!(configs, vec![("retention.ms".to_owned(), "1000".to_owned())]);

        let again: CreateTopicsResponse =
            round_trip(&broker, ApiKey::CreateTopics, 2, &CreateTopicsRequest::default().with_topics(vec![topic("a", 1, 1)])).await;
        assert_eq!(again.topics[0].error_code, ResponseError::TopicAlreadyExists.code());
        let dry = CreateTopicsRequest::default().with_validate_only(true).with_topics(vec![topic("f", 2, 1)]);
        let dry: CreateTopicsResponse = round_trip(&broker, ApiKey::CreateTopics, 5, &dry).await;
        assert_eq!(dry.topics[0].error_code, 0);
        assert_eq!(broker.storage.call(|s| s.topic("f")).await.unwrap().unwrap(), None, "validate-only creates nothing");
    }

    #[tokio::test]
    async fn the_storage_layout_is_a_config_kept_with_the_topic() {
        let broker = broker();
        let layout = |v: &'static str| {
            vec![CreatableTopicConfig::default()
                .with_name(StrBytes::from_static_str(LAYOUT_CONFIG))
                .with_value(Some(StrBytes::from_static_str(v)))]
        };
        let request = CreateTopicsRequest::default().with_topics(vec![
            topic("packed", 1, 1).with_configs(layout("batches")),
            topic("plain", 1, 1),
            topic("odd", 1, 1).with_configs(layout("columns")),
        ]);
        let response: CreateTopicsResponse = round_trip(&broker, ApiKey::CreateTopics, 7, &request).await;
        let codes: Vec<i16> = response.topics.iter().map(|t| t.error_code).collect();
        assert_eq!(codes, vec![0, 0, ResponseError::InvalidConfig.code()]);
        let stored = broker.storage.call(|s| s.all_topics()).await.unwrap().unwrap();
        let layouts: Vec<(&str, StorageLayout)> = stored.iter().map(|t| (t.name.as_str(), t.layout)).collect();
        assert_eq!(layouts, vec![("packed", StorageLayout::Batches), ("plain", StorageLayout::Rows)]);
        let configs = broker.storage.call(|s| s.topic_configs(1)).await.unwrap().unwrap();
        assert!(configs.is_empty(), "kept in the topic, not among its configs: {configs:?}");
    }
}
