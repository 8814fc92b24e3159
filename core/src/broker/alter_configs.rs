//! AlterConfigs (v0-v2): replaces every config of a topic with the given set (keys left
//! out go back to their defaults). Broker settings are `pg_kafka.*` GUCs: refused.

use super::authorize::access;
use crate::security::acl::Operation;
use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{AlterConfigsRequest, AlterConfigsResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::topic_configs::{apply, ConfigChange};
use super::{decode, respond, storage_call, Broker, Outcome};
use crate::protocol::header::RequestFrame;

/// ConfigResource types.
pub const TOPIC_RESOURCE: i8 = 2;
pub const BROKER_RESOURCE: i8 = 4;

pub async fn handle(broker: &Broker, request: &RequestFrame) -> Outcome {
    let body: AlterConfigsRequest = match decode(request) {
        Ok(body) => body,
        Err(outcome) => return outcome,
    };
    let mut responses = Vec::new();
    for resource in &body.resources {
        let changes: Vec<ConfigChange> = resource
            .configs
            .iter()
            .map(|c| match &c.value {
                Some(value) => ConfigChange::Set(c.name.to_string(), value.to_string()),
                None => ConfigChange::Delete(c.name.to_string()),
            })
            .collect();
        let outcome = alter(broker, resource.resource_type, &resource.resource_name, changes, true, body.validate_only).await;
        responses.push(resource_response(resource.resource_type, resource.resource_name.clone(), outcome));
    }
    respond(request, &AlterConfigsResponse::default().with_responses(responses))
}

fn resource_response(resource_type: i8, name: StrBytes, outcome: Result<(), (ResponseError, String)>) -> AlterConfigsResourceResponse {
    let answer = AlterConfigsResourceResponse::default().with_resource_type(resource_type).with_resource_name(name);
    match outcome {
        Ok(()) => answer,
        Err((error, message)) => answer.with_error_code(error.code()).with_error_message(Some(StrBytes::from_string(message))),
    }
}

/// Applies `changes` to a resource's configs in one storage job (validating all of them
/// first; nothing is stored with `validate_only`). Shared with IncrementalAlterConfigs.
pub async fn alter(
    broker: &Broker,
    resource_type: i8,
    name: &str,
    changes: Vec<ConfigChange>,
    replace_all: bool,
    validate_only: bool,
) -> Result<(), (ResponseError, String)> {
    let access = access(broker).await;
    match resource_type {
        TOPIC_RESOURCE => {
            access.check_topic(Operation::AlterConfigs, name).map_err(|e| (e, "ALTER_CONFIGS on the topic is needed".to_string()))?
        }
        BROKER_RESOURCE => {
            return Err((ResponseError::InvalidRequest, "broker settings are pg_kafka.* settings in postgresql.conf".into()))
        }
        other => return Err((ResponseError::InvalidRequest, format!("unsupported resource type {other}"))),
    }
    let (topic, topics) = (name.to_owned(), broker.topics.clone());
    let result = storage_call(broker, move |s| {
        let Some(found) = s.topic(&topic)? else {
            return Ok(Err((ResponseError::UnknownTopicOrPartition, format!("topic \"{topic}\" does not exist"))));
        };
        let current = s.topic_configs(found.id)?;
        let updated = match apply(&current, &changes, replace_all) {
            Ok(updated) => updated,
            Err(problem) => return Ok(Err((ResponseError::InvalidConfig, problem))),
        };
        if !validate_only && updated != current {
            s.replace_topic_configs(found.id, &updated)?;
            // Cached topics carry max.message.bytes.
            topics.invalidate();
        }
        Ok(Ok(()))
    })
    .await;
    result.unwrap_or_else(|e| Err((ResponseError::KafkaStorageError, e.to_string())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::testing::{broker_with_writer, round_trip};
    use kafka_protocol::messages::alter_configs_request::{AlterConfigsResource, AlterableConfig};
    use kafka_protocol::messages::ApiKey;

    fn request(topic: &'static str, configs: &[(&'static str, &'static str)]) -> AlterConfigsRequest {
        let configs = configs
            .iter()
            .map(|(n, v)| AlterableConfig::default().with_name(StrBytes::from_static_str(n)).with_value(Some(StrBytes::from_static_str(v))))
            .collect();
        AlterConfigsRequest::default().with_resources(vec![AlterConfigsResource::default()
            .with_resource_type(TOPIC_RESOURCE)
            .with_resource_name(StrBytes::from_static_str(topic))
            .with_configs(configs)])
    }

    #[tokio::test]
    async fn replaces_configs_and_refuses_what_cannot_be_applied() {
        let broker = broker_with_writer(1);
        for version in 0..=2 {
            let ok: AlterConfigsResponse =
                round_trip(&broker, ApiKey::AlterConfigs, version, &request("t", &[("retention.ms", "1000")])).await;
            assert_eq!(ok.responses[0].error_code, 0, "v{version}");
        }
        let compact: AlterConfigsResponse =
            round_trip(&broker, ApiKey::AlterConfigs, 1, &request("t", &[("cleanup.policy", "compacted")])).await;
        assert_eq!(compact.responses[0].error_code, ResponseError::InvalidConfig.code());
        let unknown: AlterConfigsResponse = round_trip(&broker, ApiKey::AlterConfigs, 1, &request("nope", &[("retention.ms", "1")])).await;
        assert_eq!(unknown.responses[0].error_code, ResponseError::UnknownTopicOrPartition.code());
        let stored = broker.storage.call(|s| s.topic_configs(1)).await.unwrap().unwrap();
        assert_eq!(stored, vec![("retention.ms".to_owned(), "1000".to_owned())]);
    }
}
