//! DeleteRecords (v0-v2): moves partitions' log start offsets forward and deletes the
//! messages below them. Offset -1 means the high watermark (delete everything). The
//! new log start is kept in `kafka.partition_starts`, so offsets are never reused even
//! when a partition is emptied.

use super::authorize::access;
use crate::security::acl::Operation;
use kafka_protocol::messages::delete_records_response::{DeleteRecordsPartitionResult, DeleteRecordsTopicResult};
use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse};
use kafka_protocol::ResponseError;

use super::{decode, respond, storage_call, Broker, Outcome};
use crate::logging;
use crate::protocol::header::RequestFrame;
use crate::storage::topics::TopicRef;

/// DeleteRecords' "up to the high watermark".
const HIGH_WATERMARK: i64 = -1;

pub async fn handle(broker: &Broker, request: &RequestFrame) -> Outcome {
    let body: DeleteRecordsRequest = match decode(request) {
        Ok(body) => body,
        Err(outcome) => return outcome,
    };
    let wanted: Vec<(TopicRef, i32)> = body
        .topics
        .iter()
        .map(|t| (TopicRef::Name(t.name.to_string()), t.partitions.iter().map(|p| p.partition_index).max().unwrap_or(0)))
        .collect();
    let found = broker.topics.resolve(&broker.storage, &wanted).await.unwrap_or_default();
    let access = &access(broker).await;
    // Per requested partition: (topic id, partition, offset), or why not.
    let targets: Vec<Result<(i32, i32, i64), ResponseError>> = body
        .topics
        .iter()
        .flat_map(|t| {
            let topic = found.get(&TopicRef::Name(t.name.to_string())).cloned().flatten();
            t.partitions.iter().map(move |p| match &topic {
                Some(topic) if (0..topic.partitions).contains(&p.partition_index) => {
                    access.check_topic(Operation::Delete, &topic.name)?;
                    crate::storage::offsets_topic::refuse_change(topic.id)?;
                    Ok((topic.id, p.partition_index, p.offset))
                }
                _ => Err(ResponseError::UnknownTopicOrPartition),
            })
        })
        .collect();
    let jobs: Vec<(i32, i32, i64)> = targets.iter().filter_map(|t| t.as_ref().ok().copied()).collect();
    let done = storage_call(broker, move |s| {
        let mut outcomes = Vec::new();
        for (topic_id, partition, offset) in jobs {
            let high = s.next_offset(topic_id, partition)?;
            let start = s.first_offset(topic_id, partition)?.unwrap_or(high);
            let target = if offset == HIGH_WATERMARK { high } else { offset };
            if !(0..=high).contains(&target) {
                outcomes.push(Err(ResponseError::OffsetOutOfRange));
                continue;
            }
            s.delete_records_before(topic_id, partition, target)?;
            outcomes.push(Ok(start.max(target)));
        }
        Ok(outcomes)
    })
    .await;
    if let Err(e) = &done {
        logging::warning(format!("pg_kafka: delete records failed: {e}"));
    }
    let mut outcomes = done.as_ref().map(|o| o.iter()).ok();
    let mut results = targets.into_iter().map(|target| {
        target.and_then(|(topic_id, partition, _)| {
            let low = match outcomes.as_mut() {
                Some(outcomes) => outcomes.next().cloned().unwrap_or(Err(ResponseError::KafkaStorageError))?,
                None => return Err(ResponseError::KafkaStorageError),
            };
            broker.watermarks.raise_log_start(topic_id, partition, low);
            Ok(low)
        })
    });
    let topics = body
        .topics
        .iter()
        .map(|t| {
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let answer = DeleteRecordsPartitionResult::default().with_partition_index(p.partition_index);
                    match results.next().expect("one result per partition") {
                        Ok(low) => answer.with_low_watermark(low),
                        Err(error) => answer.with_low_watermark(-1).with_error_code(error.code()),
                    }
                })
                .collect();
            DeleteRecordsTopicResult::default().with_name(t.name.clone()).with_partitions(partitions)
        })
        .collect();
    respond(request, &DeleteRecordsResponse::default().with_topics(topics))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::testing::{append_values, broker_with_writer, round_trip};
    use kafka_protocol::messages::delete_records_request::{DeleteRecordsPartition, DeleteRecordsTopic};
    use kafka_protocol::messages::{ApiKey, TopicName};
    use kafka_protocol::protocol::StrBytes;

    async fn delete(broker: &Broker, partitions: &[(i32, i64)]) -> Vec<(i16, i64)> {
        let partitions =
            partitions.iter().map(|&(i, o)| DeleteRecordsPartition::default().with_partition_index(i).with_offset(o)).collect();
        let request = DeleteRecordsRequest::default().with_topics(vec![DeleteRecordsTopic::default()
            .with_name(TopicName(StrBytes::from_static_str("t")))
            .with_partitions(partitions)]);
        let response: DeleteRecordsResponse = round_trip(broker, ApiKey::DeleteRecords, 2, &request).await;
        response.topics[0].partitions.iter().map(|p| (p.error_code, p.low_watermark)).collect()
    }

    #[tokio::test]
    async fn moves_the_log_start_and_never_reuses_offsets() {
        let broker = broker_with_writer(2);
        append_values(&broker, 0, &[b"a", b"b", b"c", b"d"]).await;
        let watermarks = broker.watermarks.clone();
        broker.storage.call(move |s| watermarks.load(s, &[(1, 0)])).await.unwrap().unwrap();
        assert_eq!(delete(&broker, &[(0, 2), (1, 5), (9, 0)]).await, vec![(0, 2), (1, -1), (3, -1)]);
        assert_eq!(broker.watermarks.get(1, 0).map(|b| b.log_start), Some(2), "Fetch sees the new log start");
        assert_eq!(delete(&broker, &[(0, 1)]).await, vec![(0, 2)], "the log start never moves back");
        assert_eq!(delete(&broker, &[(0, HIGH_WATERMARK)]).await, vec![(0, 4)]);
        assert_eq!(append_values(&broker, 0, &[b"e"]).await, 4, "an emptied partition goes on from its high watermark");
    }
}
