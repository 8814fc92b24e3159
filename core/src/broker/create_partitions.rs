//! CreatePartitions (v0-v3): raises a topic's partition count. The count never goes
//! down; new partitions start empty at offset 0.

use super::authorize::access;
use crate::security::acl::Operation;
use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::create_topics::{named_twice, not_on_this_broker, on_this_broker_alone, repeated_names, Refusal, MAX_PARTITIONS};
use super::{decode, respond, storage_call, Broker, Outcome};
use crate::protocol::header::RequestFrame;

pub async fn handle(broker: &Broker, request: &RequestFrame) -> Outcome {
    let body: CreatePartitionsRequest = match decode(request) {
        Ok(body) => body,
        Err(outcome) => return outcome,
    };
    let repeated = repeated_names(body.topics.iter().map(|t| t.name.as_str()));
    let access = access(broker).await;
    let checked: Vec<Result<(), Refusal>> = body
        .topics
        .iter()
        .map(|t| match access.check_topic(Operation::Alter, t.name.as_str()) {
            Err(denied) => Err((denied, "ALTER on the topic is needed".into())),
            Ok(()) if repeated.contains(t.name.as_str()) => Err(named_twice()),
            Ok(()) => check(t, broker.config().node_id),
        })
        .collect();
    let asked: Vec<Option<(String, i32, usize)>> = body
        .topics
        .iter()
        .zip(&checked)
        .map(|(t, c)| c.is_ok().then(|| (t.name.to_string(), t.count, t.assignments.as_ref().map_or(0, Vec::len))))
        .collect();
    let validate_only = body.validate_only;
    let done = storage_call(broker, move |s| {
        let mut outcomes = Vec::new();
        for ask in asked {
            let Some((name, count, assignments)) = ask else {
                outcomes.push(Ok(()));
                continue;
            };
            let outcome = match s.topic(&name)? {
                None => Err((ResponseError::UnknownTopicOrPartition, format!("topic \"{name}\" does not exist"))),
                Some(t) if count <= t.partitions => Err((
                    ResponseError::InvalidPartitions,
                    format!("topic has {} partitions; the new count must be higher, not {count}", t.partitions),
                )),
                Some(t) if assignments != 0 && assignments != (count - t.partitions) as usize => {
                    Err((ResponseError::InvalidReplicaAssignment, "one assignment per new partition, please".into()))
                }
                Some(t) => {
                    if !validate_only {
                        s.set_partition_count(t.id, count)?;
                    }
                    Ok(())
                }
            };
            outcomes.push(outcome);
        }
        Ok(outcomes)
    })
    .await;
    let results = body
        .topics
        .iter()
        .zip(checked)
        .enumerate()
        .map(|(i, (t, check))| {
            let outcome = check.and_then(|()| match &done {
                Ok(outcomes) => outcomes[i].clone(),
                Err(e) => Err((ResponseError::KafkaStorageError, e.to_string())),
            });
            let answer = CreatePartitionsTopicResult::default().with_name(t.name.clone());
            match outcome {
                Ok(()) => answer,
                Err((error, message)) => answer.with_error_code(error.code()).with_error_message(Some(StrBytes::from_string(message))),
            }
        })
        .collect();
    respond(request, &CreatePartitionsResponse::default().with_results(results))
}

/// Checks what can be checked without the topic.
fn check(topic: &CreatePartitionsTopic, node_id: i32) -> Result<(), Refusal> {
    if !(1..=MAX_PARTITIONS).contains(&topic.count) {
        return Err((ResponseError::InvalidPartitions, format!("partitions must be between 1 and {MAX_PARTITIONS}")));
    }
    if topic.assignments.as_ref().is_some_and(|all| !all.iter().all(|a| on_this_broker_alone(&a.broker_ids, node_id))) {
        return Err(not_on_this_broker(node_id));
    }
    Ok(())
}
