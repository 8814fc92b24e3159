//! DescribeLogDirs (v1-v4): the database is the one broker's one log directory, named by
//! the cluster's data directory. A row-layout partition's size is its share of
//! `kafka.messages`'s bytes (table, indexes and TOAST) by its share of the table's rows:
//! one catalog read and the partition bounds Fetch already keeps, never a scan of the
//! messages. A batch-layout partition's is its records times the stored bytes per record
//! of its newest 100 batches (one bounded index walk). Needs DESCRIBE on the cluster, as in
//! Kafka; topics named that do not exist are left out, as Kafka does.

use kafka_protocol::messages::describe_log_dirs_response::{DescribeLogDirsPartition, DescribeLogDirsResult, DescribeLogDirsTopic};
use kafka_protocol::messages::{DescribeLogDirsRequest, DescribeLogDirsResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::authorize::access;
use super::{decode, respond, Broker, Outcome};
use crate::protocol::header::RequestFrame;
use crate::security::acl::Operation;
use crate::storage::topics::{look_up, TopicRef};
use crate::storage::{StorageLayout, Topic};
use std::collections::HashMap;

pub async fn handle(broker: &Broker, request: &RequestFrame) -> Outcome {
    let body: DescribeLogDirsRequest = match decode(request) {
        Ok(body) => body,
        Err(outcome) => return outcome,
    };
    if let Err(denied) = access(broker).await.check_cluster(Operation::Describe) {
        return respond(request, &DescribeLogDirsResponse::default().with_error_code(denied.code()));
    }
    // (topic name, partitions asked for; None: all of them).
    let wanted: Option<Vec<(String, Vec<i32>)>> =
        body.topics.map(|topics| topics.into_iter().map(|t| (t.topic.0.to_string(), t.partitions)).collect());
    let watermarks = broker.watermarks.clone();
    let found = broker
        .storage
        .try_call(move |storage| {
            let described = described_partitions(storage, wanted)?;
            let keys: Vec<(i32, i32)> = described.iter().flat_map(|(t, ps)| ps.iter().map(|p| (t.id, *p))).collect();
            watermarks.load(storage, &keys)?;
            let mut per_record = HashMap::new();
            for (topic, partitions) in described.iter().filter(|(t, _)| t.layout == StorageLayout::Batches) {
                for &p in partitions {
                    per_record.insert((topic.id, p), storage.batch_bytes_per_record(topic.id, p)?.unwrap_or(0.0));
                }
            }
            Ok((described, storage.log_dir_usage()?, per_record))
        })
        .await;
    let (described, usage, per_record) = match found {
        Ok(found) => found,
        Err(_) => return respond(request, &DescribeLogDirsResponse::default().with_error_code(ResponseError::KafkaStorageError.code())),
    };
    let topics = described
        .into_iter()
        .map(|(topic, partitions)| {
            let size = |p: i32, records: i64| match per_record.get(&(topic.id, p)) {
                Some(bytes) => (bytes * records as f64).round() as i64,
                None => usage.estimate_bytes(records),
            };
            let partitions = partitions.into_iter().map(|p| partition_entry(broker, topic.id, p, size)).collect();
            DescribeLogDirsTopic::default().with_name(TopicName(StrBytes::from_string(topic.name))).with_partitions(partitions)
        })
        .collect();
    let dir = DescribeLogDirsResult::default()
        .with_log_dir(StrBytes::from_string(usage.path.clone()))
        .with_topics(topics)
        .with_total_bytes(usage.volume_bytes)
        .with_usable_bytes(usage.usable_bytes);
    respond(request, &DescribeLogDirsResponse::default().with_results(vec![dir]))
}

/// Each existing topic asked for with the partitions of it that exist (all topics and
/// partitions when `wanted` is None). Storage thread; lookups bounded as Metadata's.
fn described_partitions(
    storage: &mut dyn crate::storage::Storage,
    wanted: Option<Vec<(String, Vec<i32>)>>,
) -> Result<Vec<(Topic, Vec<i32>)>, crate::storage::StorageError> {
    let Some(wanted) = wanted else {
        return Ok(storage.all_topics()?.into_iter().map(|t| (t.clone(), (0..t.partitions).collect())).collect());
    };
    let refs: Vec<TopicRef> = wanted.iter().map(|(name, _)| TopicRef::Name(name.clone())).collect();
    let found = look_up(storage, &refs)?;
    Ok(wanted
        .into_iter()
        .zip(found)
        .filter_map(|((_, partitions), topic)| {
            let topic = topic?;
            let mut existing: Vec<i32> = partitions.into_iter().filter(|p| (0..topic.partitions).contains(p)).collect();
            existing.sort_unstable();
            existing.dedup();
            Some((topic, existing))
        })
        .collect())
}

/// A partition's entry, sized by `size(partition, records)`.
fn partition_entry(broker: &Broker, topic_id: i32, partition: i32, size: impl Fn(i32, i64) -> i64) -> DescribeLogDirsPartition {
    let records = broker.watermarks.get(topic_id, partition).map_or(0, |b| b.high - b.log_start);
    DescribeLogDirsPartition::default().with_partition_index(partition).with_partition_size(size(partition, records)).with_offset_lag(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::testing::{append_values, broker_with_writer, round_trip};
    use crate::storage::LogDirUsage;
    use kafka_protocol::messages::describe_log_dirs_request::DescribableLogDirTopic;
    use kafka_protocol::messages::ApiKey;

    fn sizes(response: &DescribeLogDirsResponse) -> Vec<(String, Vec<(i32, i64)>)> {
        response.results[0]
            .topics
            .iter()
            .map(|t| (t.name.0.to_string(), t.partitions.iter().map(|p| (p.partition_index, p.partition_size)).collect()))
            .collect()
    }

    #[tokio::test]
    async fn partitions_are_sized_by_their_share_of_the_rows() {
        let broker = broker_with_writer(2);
        append_values(&broker, 0, &[b"0123456789" as &[u8]; 3]).await;
        for version in 1..=4 {
            let all: DescribeLogDirsResponse =
                round_trip(&broker, ApiKey::DescribeLogDirs, version, &DescribeLogDirsRequest::default().with_topics(None)).await;
            assert_eq!(all.results.len(), 1, "one log dir");
            assert_eq!(sizes(&all), vec![("t".to_string(), vec![(0, 30), (1, 0)])], "v{version}");
        }
        let named = DescribeLogDirsRequest::default().with_topics(Some(vec![
            DescribableLogDirTopic::default().with_topic(TopicName(StrBytes::from_static_str("t"))).with_partitions(vec![1, 7, 1]),
            DescribableLogDirTopic::default().with_topic(TopicName(StrBytes::from_static_str("nope"))).with_partitions(vec![0]),
        ]));
        let response: DescribeLogDirsResponse = round_trip(&broker, ApiKey::DescribeLogDirs, 4, &named).await;
        assert_eq!(sizes(&response), vec![("t".to_string(), vec![(1, 0)])], "unknown topics and partitions are left out");
    }

    #[tokio::test]
    async fn batch_partitions_are_sized_by_their_stored_bytes_per_record() {
        use crate::protocol::records::{encode_batch, Record};
        let broker = crate::broker::testing::broker_in_layout(1, StorageLayout::Batches);
        let record = |delta| Record { offset_delta: delta, timestamp: 1, key: None, value: Some(vec![7u8; 50].into()), headers: None };
        let batch = encode_batch(0, &(0..4).map(record).collect::<Vec<_>>());
        assert_eq!(crate::broker::testing::produce_to_partition_0(&broker, batch.clone()).await, (0, 0));
        let all: DescribeLogDirsResponse =
            round_trip(&broker, ApiKey::DescribeLogDirs, 4, &DescribeLogDirsRequest::default().with_topics(None)).await;
        assert_eq!(sizes(&all), vec![("t".to_string(), vec![(0, batch.len() as i64)])]);
    }

    #[test]
    fn the_estimate_is_a_share_of_the_table() {
        let usage = LogDirUsage { table_bytes: 1000, table_rows: 10, ..LogDirUsage::default() };
        assert_eq!((usage.estimate_bytes(3), usage.estimate_bytes(0)), (300, 0));
        assert_eq!(LogDirUsage::default().estimate_bytes(5), 0, "an empty table sizes nothing");
    }
}
