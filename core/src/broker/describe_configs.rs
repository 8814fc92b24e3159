//! DescribeConfigs (v1-v4): every topic config with its value and where it comes from
//! (set on the topic, or Kafka's default), and the broker's few fixed settings.

use super::authorize::access;
use crate::security::acl::Operation;
use kafka_protocol::messages::describe_configs_response::{DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym};
use kafka_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::alter_configs::{BROKER_RESOURCE, TOPIC_RESOURCE};
use super::topic_configs::{effective, ConfigType, DEFAULT_CONFIG, DYNAMIC_TOPIC_CONFIG, STATIC_BROKER_CONFIG};
use super::{decode, respond, storage_call, Broker, Outcome, NODE_ID};
use crate::protocol::header::RequestFrame;

/// One config line before encoding.
struct Line {
    name: String,
    value: String,
    read_only: bool,
    source: i8,
    config_type: ConfigType,
    doc: &'static str,
    /// The default underneath a value set on the topic (a synonym).
    default: Option<String>,
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
    let stored = storage_call(broker, move |s| match s.topic(&name)? {
        Some(t) => s.topic_configs(t.id).map(Some),
        None => Ok(None),
    })
    .await
    .map_err(|e| (ResponseError::KafkaStorageError, e.to_string()))?
    .ok_or_else(|| (ResponseError::UnknownTopicOrPartition, format!("topic \"{topic}\" does not exist")))?;
    Ok(effective(&stored)
        .into_iter()
        .map(|c| Line {
            name: c.def.name.to_owned(),
            value: c.value,
            read_only: !c.def.enforced,
            source: if c.is_set { DYNAMIC_TOPIC_CONFIG } else { DEFAULT_CONFIG },
            config_type: c.def.config_type,
            doc: c.def.doc,
            default: c.is_set.then(|| c.def.default.to_owned()),
        })
        .collect())
}

/// The broker's settings that clients ask about; all read-only here (they are GUCs).
fn broker_lines(broker: &Broker) -> Vec<Line> {
    let config = broker.config();
    let fixed = |name: &str, value: String, config_type| Line {
        name: name.to_owned(),
        value,
        read_only: true,
        source: STATIC_BROKER_CONFIG,
        config_type,
        doc: "Set through pg_kafka.* settings in postgresql.conf.",
        default: None,
    };
    vec![
        fixed("auto.create.topics.enable", config.auto_create_topics.to_string(), ConfigType::Boolean),
        fixed("broker.id", NODE_ID.to_string(), ConfigType::Int),
        fixed("default.replication.factor", "1".into(), ConfigType::Int),
        fixed("group.max.session.timeout.ms", config.group_max_session_timeout_ms.to_string(), ConfigType::Int),
        fixed("group.max.size", config.group_max_size.to_string(), ConfigType::Int),
        fixed("group.min.session.timeout.ms", config.group_min_session_timeout_ms.to_string(), ConfigType::Int),
        fixed("message.max.bytes", config.max_frame_bytes.to_string(), ConfigType::Int),
        fixed("num.partitions", config.default_partitions.to_string(), ConfigType::Int),
    ]
}

fn encode_line(line: Line, synonyms: bool, documentation: bool) -> DescribeConfigsResourceResult {
    let text = |s: String| StrBytes::from_string(s);
    let synonyms = if synonyms {
        let own = DescribeConfigsSynonym::default()
            .with_name(text(line.name.clone()))
            .with_value(Some(text(line.value.clone())))
            .with_source(line.source);
        let default = line.default.map(|d| {
            DescribeConfigsSynonym::default().with_name(text(line.name.clone())).with_value(Some(text(d))).with_source(DEFAULT_CONFIG)
        });
        std::iter::once(own).chain(default).collect()
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
