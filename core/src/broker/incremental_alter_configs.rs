//! IncrementalAlterConfigs (v0-v1): SET, DELETE, APPEND and SUBTRACT on single topic
//! configs; keys not named keep their values.

use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::alter_configs::alter;
use super::topic_configs::ConfigChange;
use super::{decode, respond, Broker, Outcome};
use crate::protocol::header::RequestFrame;

pub async fn handle(broker: &Broker, request: &RequestFrame) -> Outcome {
    let body: IncrementalAlterConfigsRequest = match decode(request) {
        Ok(body) => body,
        Err(outcome) => return outcome,
    };
    let mut responses = Vec::new();
    for resource in &body.resources {
        let changes: Result<Vec<ConfigChange>, String> = resource
            .configs
            .iter()
            .map(|c| {
                let (name, value) = (c.name.to_string(), c.value.as_ref().map(ToString::to_string).unwrap_or_default());
                match c.config_operation {
                    0 => Ok(ConfigChange::Set(name, value)),
                    1 => Ok(ConfigChange::Delete(name)),
                    2 => Ok(ConfigChange::Append(name, value)),
                    3 => Ok(ConfigChange::Subtract(name, value)),
                    other => Err(format!("unknown config operation {other}")),
                }
            })
            .collect();
        let outcome = match changes {
            Ok(changes) => alter(broker, resource.resource_type, &resource.resource_name, changes, false, body.validate_only).await,
            Err(problem) => Err((ResponseError::InvalidRequest, problem)),
        };
        let answer = AlterConfigsResourceResponse::default()
            .with_resource_type(resource.resource_type)
            .with_resource_name(resource.resource_name.clone());
        responses.push(match outcome {
            Ok(()) => answer,
            Err((error, message)) => answer.with_error_code(error.code()).with_error_message(Some(StrBytes::from_string(message))),
        });
    }
    respond(request, &IncrementalAlterConfigsResponse::default().with_responses(responses))
}
