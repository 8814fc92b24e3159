//! Drives handlers with real encoded requests against in-memory storage.

use super::*;
use crate::protocol::header::parse_request;
use crate::service;
use crate::storage::bridge::DirectRunner;
use crate::storage::memory::MemoryStorage;
use crate::writer::group_commit;
use bytes::{Buf, Bytes, BytesMut};
use kafka_protocol::messages::{RequestHeader, ResponseHeader};
use kafka_protocol::protocol::StrBytes;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// A broker on in-memory storage with no topics.
pub fn broker() -> Broker {
    broker_with_config(Config::default())
}

/// Like [`broker`], with other settings.
pub fn broker_with_config(config: Config) -> Broker {
    spawn_counting(MemoryStorage::default(), config, Arc::new(AtomicUsize::new(0)))
}

/// A broker whose storage holds topic "t" with `partitions` partitions.
pub fn broker_with_writer(partitions: i32) -> Broker {
    broker_counting_jobs(partitions).0
}

/// Produces `records` (a Produce partition's records field) to partition 0 of topic
/// "t" (v9, acks=all); returns the partition's (error code, base offset).
pub async fn produce_to_partition_0(broker: &Broker, records: Bytes) -> (i16, i64) {
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use kafka_protocol::messages::{ProduceRequest, ProduceResponse, TopicName};
    let partition = PartitionProduceData::default().with_index(0).with_records(Some(records));
    let request = ProduceRequest::default().with_acks(-1).with_topic_data(vec![TopicProduceData::default()
        .with_name(TopicName(kafka_protocol::protocol::StrBytes::from_static_str("t")))
        .with_partition_data(vec![partition])]);
    let response: ProduceResponse = round_trip(broker, ApiKey::Produce, 9, &request).await;
    let p = &response.responses[0].partition_responses[0];
    (p.error_code, p.base_offset)
}

/// A broker whose storage holds topic "t" with `partitions` partitions in `layout`.
pub fn broker_in_layout(partitions: i32, layout: crate::storage::StorageLayout) -> Broker {
    let mut storage = MemoryStorage::default();
    storage.create_topic_as("t", partitions, layout).unwrap();
    spawn_counting(storage, Config::default(), Arc::new(AtomicUsize::new(0)))
}

/// Like [`broker_with_writer`], with a count of the storage jobs and writer turns run so far.
pub fn broker_counting_jobs(partitions: i32) -> (Broker, Arc<AtomicUsize>) {
    let mut storage = MemoryStorage::default();
    storage.create_topic("t", partitions).unwrap();
    let jobs_run = Arc::new(AtomicUsize::new(0));
    (spawn_counting(storage, Config::default(), jobs_run.clone()), jobs_run)
}

/// A broker on `storage` (roles, ACLs, topics set up by the caller).
pub fn broker_on(storage: MemoryStorage, config: Config) -> Broker {
    spawn_counting(storage, config, Arc::new(AtomicUsize::new(0)))
}

/// Runs the storage side on one thread, as the worker does, with no flush delay.
fn spawn_counting(storage: MemoryStorage, config: Config, jobs_run: Arc<AtomicUsize>) -> Broker {
    let config = Config { flush_interval_ms: 0, max_batch_bytes: 1 << 20, refresh_interval_ms: 60_000, ..config };
    let (shutdown_sender, shutdown) = tokio::sync::watch::channel(false);
    // Tests never shut the broker down; a dropped sender would read as shutdown.
    std::mem::forget(shutdown_sender);
    let (broker, mut side) = service::assemble(config, Arc::new(|| {}), shutdown);
    std::thread::spawn(move || {
        let mut runner = CountingRunner { inner: DirectRunner(storage), runs: jobs_run };
        while !side.is_disconnected() {
            side.turn(&mut runner);
            std::thread::sleep(Duration::from_micros(200));
        }
    });
    broker
}

/// Counts the storage jobs that touched storage.
struct CountingRunner {
    inner: DirectRunner<MemoryStorage>,
    runs: Arc<AtomicUsize>,
}

impl crate::storage::bridge::JobRunner for CountingRunner {
    fn run(&mut self, job: &mut dyn FnMut(&mut dyn Storage) -> Result<(), StorageError>) -> Result<(), StorageError> {
        self.runs.fetch_add(1, Ordering::Relaxed);
        self.inner.run(job)
    }
}

/// Runs `f` on the broker's storage thread (test set-up and inspection).
pub async fn with_storage<R: Send + 'static>(broker: &Broker, f: impl FnOnce(&mut dyn Storage) -> R + Send + 'static) -> R {
    broker.storage.call(f).await.expect("storage thread running")
}

/// Appends records with `values` to partition `partition` of topic "t" through the
/// group-commit writer, as Produce would; returns the base offset.
pub async fn append_values(broker: &Broker, partition: i32, values: &[&'static [u8]]) -> i64 {
    let records = values
        .iter()
        .enumerate()
        .map(|(i, v)| crate::protocol::records::Record {
            offset_delta: i as i32,
            timestamp: 1_700_000_000_000 + i as i64,
            key: None,
            value: Some(Bytes::from_static(v)),
            headers: None,
        })
        .collect();
    let topic = with_storage(broker, |s| s.topic("t")).await.unwrap().expect("topic t");
    let append = group_commit::PartitionAppend {
        topic,
        topics_generation: broker.topics.generation(),
        partition,
        records,
        batch: None,
        batch_bytes: 0,
        producer: None,
        log_append_time: None,
        row_txn: None,
    };
    broker.commits.submit(vec![append], 1).await.unwrap()[0].unwrap()
}

pub fn request_frame<M: Encodable>(key: ApiKey, version: i16, body: &M) -> RequestFrame {
    let header = RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(11)
        .with_client_id(Some(StrBytes::from_static_str("unit")));
    let mut buf = BytesMut::new();
    header.encode(&mut buf, key.request_header_version(version)).unwrap();
    body.encode(&mut buf, version).unwrap();
    parse_request(buf.freeze()).unwrap()
}

/// Sends `body` through the broker and decodes the response as `R`.
pub async fn round_trip<M: Encodable, R: Decodable>(broker: &Broker, key: ApiKey, version: i16, body: &M) -> R {
    decode_response(broker.handle(request_frame(key, version, body)).await, key, version)
}

/// The response body of an outcome that must be a response.
pub fn decode_response<R: Decodable>(outcome: Outcome, key: ApiKey, version: i16) -> R {
    match outcome {
        Outcome::RespondHolding(parts, held) => {
            drop(held);
            decode_response(Outcome::Respond(Bytes::from(parts.concat())), key, version)
        }
        Outcome::Respond(mut frame) | Outcome::RespondThenClose(mut frame, _) => {
            let size = frame.get_i32() as usize;
            assert_eq!(size, frame.len());
            let header_version = if key == ApiKey::ApiVersions { 0 } else { key.response_header_version(version) };
            let header = ResponseHeader::decode(&mut frame, header_version).unwrap();
            assert_eq!(header.correlation_id, 11);
            R::decode(&mut frame, version).unwrap()
        }
        other => panic!("expected a response, got {other:?}"),
    }
}
