//! DescribeConfigs (v1-v4): every topic config with its value and where it comes from
//! (set on the topic, or Kafka's default), and the broker settings a Kafka 4.x broker
//! reports that clients read (`advertised.listeners`, `num.partitions`, ...).

use super::authorize::access;
use crate::security::acl::Operation;
use crate::storage::batches::LAYOUT_CONFIG;
use kafka_protocol::messages::describe_configs_response::{DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym};
use kafka_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::alter_configs::{BROKER_RESOURCE, TOPIC_RESOURCE};
use super::topic_configs::{effective, ConfigType, DEFAULT_CONFIG, DYNAMIC_TOPIC_CONFIG, STATIC_BROKER_CONFIG};
use super::{decode, respond, storage_call, Broker, Outcome};
use crate::protocol::header::RequestFrame;

/// One config line before encoding.
struct Line {
    name: String,
    value: String,
    read_only: bool,
    source: i8,
    config_type: ConfigType,
    doc: &'static str,
    /// The broker setting underneath, as a synonym: its name, value and source.
    synonym: Option<(String, String, i8)>,
}

pub async fn handle(broker: &Broker, request: &RequestFrame) -> Outcome {
    let body: DescribeConfigsRequest = match decode(request) {
        Ok(body) => body,
        Err(outcome) => return outcome,
    };
    let mut results = Vec::new();
    let access = access(broker).await;
    for resource in &body.resources {
        let denied = |e: ResponseError| (e, "DESCRIBE_CONFIGS is needed".to_string());
        let lines = match resource.resource_type {
            TOPIC_RESOURCE => match access.check_topic(Operation::DescribeConfigs, &resource.resource_name) {
                Ok(()) => topic_lines(broker, &resource.resource_name).await,
                Err(e) => Err(denied(e)),
            },
            BROKER_RESOURCE => access.check_cluster(Operation::DescribeConfigs).map(|()| broker_lines(broker)).map_err(denied),
            other => Err((ResponseError::InvalidRequest, format!("unsupported resource type {other}"))),
        };
        let result =
            DescribeConfigsResult::default().with_resource_type(resource.resource_type).with_resource_name(resource.resource_name.clone());
        results.push(match lines {
            Ok(lines) => {
                let keys = resource.configuration_keys.as_ref();
                let wanted = |l: &Line| keys.is_none_or(|keys| keys.iter().any(|k| k.as_str() == l.name));
                let configs =
                    lines.into_iter().filter(wanted).map(|l| encode_line(l, body.include_synonyms, body.include_documentation)).collect();
                result.with_configs(configs)
            }
            Err((error, message)) => result.with_error_code(error.code()).with_error_message(Some(StrBytes::from_string(message))),
        });
    }
    respond(request, &DescribeConfigsResponse::default().with_results(results))
}

async fn topic_lines(broker: &Broker, topic: &str) -> Result<Vec<Line>, (ResponseError, String)> {
    let name = topic.to_owned();
    let (stored, layout) = storage_call(broker, move |s| match s.topic(&name)? {
        Some(t) => s.topic_configs(t.id).map(|configs| Some((configs, t.layout))),
        None => Ok(None),
    })
    .await
    .map_err(|e| (ResponseError::KafkaStorageError, e.to_string()))?
    .ok_or_else(|| (ResponseError::UnknownTopicOrPartition, format!("topic \"{topic}\" does not exist")))?;
    let mut lines: Vec<Line> = effective(&stored)
        .into_iter()
        .map(|c| Line {
            name: c.def.name.to_owned(),
            source: c.source(),
            value: c.value,
            read_only: false,
            config_type: c.def.config_type,
            doc: c.def.doc,
            synonym: c.def.synonym.map(|broker_name| {
                let source = if c.def.broker_default { STATIC_BROKER_CONFIG } else { DEFAULT_CONFIG };
                (broker_name.to_owned(), c.def.default.to_owned(), source)
            }),
        })
        .collect();
    // pg_kafka's own: the layout, chosen at creation (read-only from then on).
    let default_layout = broker.config().default_topic_storage;
    lines.push(Line {
        name: LAYOUT_CONFIG.to_owned(),
        value: layout.as_str().to_owned(),
        read_only: true,
        source: DYNAMIC_TOPIC_CONFIG,
        config_type: ConfigType::String,
        doc: "How the topic's messages are stored: rows (kafka.messages) or batches (kafka.batches). Chosen at creation.",
        synonym: Some(("pg_kafka.default_topic_storage".to_owned(), default_layout.as_str().to_owned(), STATIC_BROKER_CONFIG)),
    });
    Ok(lines)
}

/// The broker settings a Kafka 4.x broker reports that clients and tools read, with the
/// values true here; all read-only (they are `pg_kafka.*` GUCs, or fixed by having one
/// broker on Postgres).
fn broker_lines(broker: &Broker) -> Vec<Line> {
    let config = broker.config();
    let fixed = |name: &str, value: String, config_type| Line {
        name: name.to_owned(),
        value,
        read_only: true,
        source: STATIC_BROKER_CONFIG,
        config_type,
        doc: "Set through pg_kafka.* settings in postgresql.conf, or fixed by pg_kafka's design.",
        synonym: None,
    };
    let listeners =
        if config.listeners.is_empty() { format!("PLAINTEXT://{}:{}", config.host, config.port) } else { config.listeners.clone() };
    let advertised = if !config.advertised_listeners.is_empty() {
        config.advertised_listeners.clone()
    } else if config.listeners.is_empty() {
        format!("PLAINTEXT://{}:{}", config.advertised_host, config.port)
    } else {
        listeners.clone()
    };
    let one = || "1".to_string();
    use ConfigType::{Boolean, Int, List, Long, String as Text};
    let mut lines = vec![
        fixed("advertised.listeners", advertised, Text),
        fixed("auto.create.topics.enable", config.auto_create_topics.to_string(), Boolean),
        fixed("broker.id", config.node_id.to_string(), Int),
        fixed("compression.type", "producer".into(), Text),
        fixed("connections.max.idle.ms", config.connections_max_idle_ms.to_string(), Long),
        fixed("connections.max.reauth.ms", config.connections_max_reauth_ms.to_string(), Long),
        fixed("default.replication.factor", one(), Int),
        fixed("delete.topic.enable", "true".into(), Boolean),
        fixed("group.initial.rebalance.delay.ms", config.group_initial_rebalance_delay_ms.to_string(), Int),
        fixed("group.max.session.timeout.ms", config.group_max_session_timeout_ms.to_string(), Int),
        fixed("group.max.size", config.group_max_size.to_string(), Int),
        fixed("group.min.session.timeout.ms", config.group_min_session_timeout_ms.to_string(), Int),
        fixed("listeners", listeners, Text),
        fixed("log.cleanup.policy", "delete".into(), List),
        fixed("log.message.timestamp.type", "CreateTime".into(), Text),
        fixed("log.retention.bytes", "-1".into(), Long),
        fixed("log.retention.check.interval.ms", config.retention_check_interval_ms.to_string(), Long),
        fixed("log.retention.ms", "-1".into(), Long),
        fixed("message.max.bytes", config.max_frame_bytes.to_string(), Int),
        fixed("min.insync.replicas", one(), Int),
        fixed("node.id", config.node_id.to_string(), Int),
        fixed("num.partitions", config.default_partitions.to_string(), Int),
        fixed("offsets.topic.num.partitions", one(), Int),
        fixed("offsets.topic.replication.factor", one(), Int),
        fixed("process.roles", "broker,controller".into(), List),
        fixed("socket.request.max.bytes", config.max_frame_bytes.to_string(), Int),
        fixed("transaction.state.log.min.isr", one(), Int),
        fixed("transaction.state.log.replication.factor", one(), Int),
        fixed("unclean.leader.election.enable", "false".into(), Boolean),
    ];
    lines.sort_by(|a, b| a.name.cmp(&b.name));
    lines
}

fn encode_line(line: Line, synonyms: bool, documentation: bool) -> DescribeConfigsResourceResult {
    let text = |s: String| StrBytes::from_string(s);
    let synonyms = if synonyms {
        // As Kafka: the value's own source first (when it is the topic's), then the
        // broker setting it falls back to.
        let own = (line.source == DYNAMIC_TOPIC_CONFIG || line.synonym.is_none()).then(|| {
            DescribeConfigsSynonym::default()
                .with_name(text(line.name.clone()))
                .with_value(Some(text(line.value.clone())))
                .with_source(line.source)
        });
        let broker = line.synonym.map(|(name, value, source)| {
            DescribeConfigsSynonym::default().with_name(text(name)).with_value(Some(text(value))).with_source(source)
        });
        own.into_iter().chain(broker).collect()
    } else {
        Vec::new()
    };
    DescribeConfigsResourceResult::default()
        .with_name(text(line.name))
        .with_value(Some(text(line.value)))
        .with_read_only(line.read_only)
        .with_config_source(line.source)
        .with_synonyms(synonyms)
        .with_config_type(line.config_type as i8)
        .with_documentation(documentation.then(|| StrBytes::from_static_str(line.doc)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::testing::{broker, round_trip};
    use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
    use kafka_protocol::messages::ApiKey;

    #[tokio::test]
    async fn the_broker_reports_the_settings_clients_read_with_true_values() {
        let resource = DescribeConfigsResource::default()
            .with_resource_type(BROKER_RESOURCE)
            .with_resource_name(StrBytes::from_static_str("1"))
            .with_configuration_keys(None);
        let request = DescribeConfigsRequest::default().with_resources(vec![resource]);
        let response: DescribeConfigsResponse = round_trip(&broker(), ApiKey::DescribeConfigs, 4, &request).await;
        let configs = &response.results[0].configs;
        let value = |name: &str| configs.iter().find(|c| c.name.as_str() == name).and_then(|c| c.value.as_ref()).map(|v| v.to_string());
        assert_eq!(value("default.replication.factor").as_deref(), Some("1"));
        assert_eq!(value("num.partitions").as_deref(), Some("1"));
        assert_eq!(value("log.retention.ms").as_deref(), Some("-1"), "topics keep messages unless retention is set");
        assert!(value("advertised.listeners").is_some_and(|l| l.starts_with("PLAINTEXT://")));
        assert!(configs.len() >= 25 && configs.iter().all(|c| c.read_only && c.config_source == STATIC_BROKER_CONFIG));
        assert!(configs.windows(2).all(|w| w[0].name.as_str() < w[1].name.as_str()), "sorted by name");
    }

    #[tokio::test]
    async fn a_compacted_topic_describes_as_kafka_connect_verifies_it() {
        use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
        use kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse, TopicName};
        let broker = broker();
        let config = |n: &'static str, v: &'static str| {
            CreatableTopicConfig::default().with_name(StrBytes::from_static_str(n)).with_value(Some(StrBytes::from_static_str(v)))
        };
        let topic = CreatableTopic::default()
            .with_name(TopicName(StrBytes::from_static_str("connect-configs")))
            .with_num_partitions(1)
            .with_replication_factor(1)
            .with_configs(vec![config("cleanup.policy", "compact"), config("segment.bytes", "52428800")]);
        let created: CreateTopicsResponse =
            round_trip(&broker, ApiKey::CreateTopics, 7, &CreateTopicsRequest::default().with_topics(vec![topic])).await;
        assert_eq!(created.topics[0].error_code, 0);
        let stored = broker.storage.call(|s| s.topic("connect-configs")).await.unwrap().unwrap().unwrap();
        assert!(stored.settings.compact && !stored.settings.delete);

        let resource = DescribeConfigsResource::default()
            .with_resource_type(TOPIC_RESOURCE)
            .with_resource_name(StrBytes::from_static_str("connect-configs"))
            .with_configuration_keys(None);
        let request = DescribeConfigsRequest::default().with_resources(vec![resource]).with_include_synonyms(true);
        let response: DescribeConfigsResponse = round_trip(&broker, ApiKey::DescribeConfigs, 4, &request).await;
        let configs = &response.results[0].configs;
        let find = |name: &str| configs.iter().find(|c| c.name.as_str() == name).unwrap();
        let policy = find("cleanup.policy");
        assert_eq!(policy.value.as_ref().map(|v| v.as_str()), Some("compact"));
        assert_eq!(policy.config_source, DYNAMIC_TOPIC_CONFIG);
        let synonyms: Vec<(&str, i8)> = policy.synonyms.iter().map(|s| (s.name.as_str(), s.source)).collect();
        assert_eq!(synonyms, vec![("cleanup.policy", DYNAMIC_TOPIC_CONFIG), ("log.cleanup.policy", DEFAULT_CONFIG)]);
        assert_eq!(find("segment.bytes").value.as_ref().map(|v| v.as_str()), Some("52428800"));
        assert_eq!(find("retention.ms").config_source, STATIC_BROKER_CONFIG, "pg_kafka's broker default");
        assert_eq!(find("min.insync.replicas").config_source, DEFAULT_CONFIG);
        assert!(configs.iter().filter(|c| c.name.as_str() != LAYOUT_CONFIG).all(|c| !c.read_only));
    }
}
