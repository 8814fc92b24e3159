//! DeleteTopics (v1-v6): by name, or (v6) by topic id. Deletes the topic's messages,
//! configs, committed offsets and producer state in one transaction, then drops it from
//! every cache (the writer's is dropped inside that transaction's job, before it can
//! write again).

use super::authorize::access;
use crate::security::acl::Operation;
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{DeleteTopicsRequest, DeleteTopicsResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use uuid::Uuid;

use super::{decode, respond, storage_call, Broker, Outcome};
use crate::protocol::header::RequestFrame;
use crate::storage::topics::TopicRef;
use crate::storage::Topic;

pub async fn handle(broker: &Broker, request: &RequestFrame) -> Outcome {
    let body: DeleteTopicsRequest = match decode(request) {
        Ok(body) => body,
        Err(outcome) => return outcome,
    };
    let wanted: Vec<TopicRef> = if request.version() >= 6 {
        body.topics
            .iter()
            .map(|t| match &t.name {
                Some(name) => TopicRef::Name(name.to_string()),
                None => TopicRef::Id(t.topic_id),
            })
            .collect()
    } else {
        body.topic_names.iter().map(|n| TopicRef::Name(n.to_string())).collect()
    };
    let asked = wanted.clone();
    let topics = broker.topics.clone();
    // DELETE on each topic, checked on its stored name (a topic named by id included).
    let access = access(broker).await;
    let may_delete = access.clone();
    let deleted = storage_call(broker, move |s| {
        let mut all: Option<Vec<Topic>> = None;
        let mut outcomes = Vec::new();
        for topic in asked {
            let found = match &topic {
                TopicRef::Name(name) => s.topic(name)?,
                TopicRef::Id(id) => {
                    if all.is_none() {
                        all = Some(s.all_topics()?);
                    }
                    all.as_ref().and_then(|all| all.iter().find(|t| t.uuid == *id).cloned())
                }
            };
            let found = match found {
                Some(found) if !may_delete.allows_topic(Operation::Delete, &found.name) => Err(found.name),
                found => Ok(found),
            };
            if let Ok(Some(found)) = &found {
                s.delete_topic(found.id)?;
                if let Some(all) = &mut all {
                    all.retain(|t| t.id != found.id);
                }
            }
            outcomes.push(found);
        }
        if outcomes.iter().any(|o| matches!(o, Ok(Some(_)))) {
            topics.invalidate();
        }
        Ok(outcomes)
    })
    .await;
    let results = match deleted {
        Ok(outcomes) => wanted
            .iter()
            .zip(outcomes)
            .map(|(asked, found)| match found {
                Ok(found) => result(broker, asked, found),
                Err(name) => {
                    let _ = access.check_topic(Operation::Delete, &name);
                    refused(asked, ResponseError::TopicAuthorizationFailed, "DELETE on the topic is needed".into())
                }
            })
            .collect(),
        Err(e) => wanted.iter().map(|asked| refused(asked, ResponseError::KafkaStorageError, e.to_string())).collect(),
    };
    respond(request, &DeleteTopicsResponse::default().with_responses(results))
}

fn result(broker: &Broker, asked: &TopicRef, found: Option<Topic>) -> DeletableTopicResult {
    match found {
        Some(topic) => {
            broker.watermarks.forget_topic(topic.id);
            DeletableTopicResult::default().with_name(Some(TopicName(StrBytes::from_string(topic.name)))).with_topic_id(topic.uuid)
        }
        None => match asked {
            TopicRef::Name(name) => refused(asked, ResponseError::UnknownTopicOrPartition, format!("topic \"{name}\" does not exist")),
            TopicRef::Id(id) => refused(asked, ResponseError::UnknownTopicId, format!("no topic has id {id}")),
        },
    }
}

fn refused(asked: &TopicRef, error: ResponseError, message: String) -> DeletableTopicResult {
    let (name, id) = match asked {
        TopicRef::Name(name) => (Some(TopicName(StrBytes::from_string(name.clone()))), Uuid::nil()),
        TopicRef::Id(id) => (None, *id),
    };
    DeletableTopicResult::default()
        .with_name(name)
        .with_topic_id(id)
        .with_error_code(error.code())
        .with_error_message(Some(StrBytes::from_string(message)))
}
