//! Fetch (v4-v18): read committed messages back as uncompressed RecordBatch v2, waiting
//! (long polling) when there is nothing new. A read_committed Fetch reads up to the last
//! stable offset and is told the aborted transactions in its range (their records stay in
//! the log, as in Kafka; the client skips them).
//!
//! ```text
//!  resolve topics (cache) ─▶ bounds from Watermarks ─▶ readable partitions?
//!        ─ yes ─▶ ONE storage job: an index range scan per partition, within byte limits
//!        ─ no ──▶ wait for the writer's notify, max_wait_ms or shutdown, then look again
//! ```
//! A poll that finds nothing costs no database work: partition bounds live in memory
//! ([`Watermarks`](crate::storage::watermarks::Watermarks)), loaded once per partition and
//! advanced by the group-commit writer after each commit.
//!
//! Fetch sessions (KIP-227) are not kept: every response carries session id 0, which tells
//! clients to send full requests, as Kafka does when it declines a session.

use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::fetch_response::{AbortedTransaction, FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::{ApiKey, BrokerId, FetchRequest, FetchResponse, ProducerId};
use kafka_protocol::ResponseError;
use tokio::time::Instant;

use super::authorize::access;
use super::{decode, respond, Broker, Outcome};
use crate::logging;
use crate::protocol::compress;
use crate::protocol::header::{encode_response, RequestFrame};
use crate::protocol::parts::{splice, LengthPrefix, Markers, LEND_FROM_BYTES};
use crate::security::acl::Operation;
use crate::storage::bridge::{StorageCallError, Unavailable};
use crate::storage::reads::{PartitionRead, ReadPlan, ReadResult};
use crate::storage::topics::TopicRef;
use crate::storage::watermarks::Bounds;
use crate::storage::Topic;

/// A Fetch with data may always reserve this much from the in-flight budget (waiting for
/// it if need be), so that readers progress while the budget is busy.
const MIN_RESPONSE_RESERVE: usize = 1024 * 1024;

/// First version that names topics by id instead of by name.
const TOPIC_IDS_FROM: i16 = 13;

pub async fn handle(broker: &Broker, request: &RequestFrame) -> Outcome {
    let body: FetchRequest = match decode(request) {
        Ok(body) => body,
        Err(outcome) => return outcome,
    };
    let version = request.version();
    if body.session_id != 0 {
        // We never hand out a session id, so a client cannot hold a valid one.
        let response = FetchResponse::default().with_error_code(ResponseError::FetchSessionIdNotFound.code());
        return respond(request, &response);
    }
    let wanted = match resolve(broker, &body, version).await {
        Ok(wanted) => wanted,
        Err(reason) => {
            logging::warning(format!("pg_kafka: fetch failed: {reason}"));
            return respond(request, &error_response(&body, version, ResponseError::KafkaStorageError));
        }
    };
    let max_wait = Duration::from_millis(body.max_wait_ms.max(0) as u64).min(Duration::from_millis(broker.config().max_wait_ms));
    let deadline = Instant::now() + max_wait;
    let read_committed = body.isolation_level == READ_COMMITTED;
    if read_committed && broker.txns.ready(broker).await.is_err() {
        return respond(request, &error_response(&body, version, ResponseError::KafkaStorageError));
    }
    // KIP-392 (v11+): a consumer that names its rack may be sent to a node there.
    let preferred_replica = match version >= 11 && !body.rack_id.is_empty() {
        true => super::cluster::view(broker).await.preferred_read_replica(&body.rack_id),
        false => None,
    };
    let limits = Limits {
        response_bytes: (body.max_bytes.max(0) as usize).min(broker.config().fetch_max_bytes),
        min_bytes: body.min_bytes.max(0) as usize,
        read_committed,
        preferred_replica,
    };
    // Fetches of one connection reserve (and long-poll) one after another, as Kafka
    // handles a connection's requests; the turn passes on when this one returns.
    let mut turn = super::CONNECTION_RESPONSES.try_with(|turn| turn.take()).ok().flatten();
    if let Some(link) = &mut turn {
        link.wait_turn().await;
    }
    let mut shutdown = broker.shutdown.clone();
    loop {
        // Registered before looking, so that a commit in between still wakes us.
        let changed = broker.watermarks.changed();
        tokio::pin!(changed);
        changed.as_mut().enable();
        let gathered = match gather(broker, &wanted, limits).await {
            Ok(gathered) => gathered,
            Err(reason) => {
                logging::warning(format!("pg_kafka: fetch failed: {reason}"));
                return respond(request, &error_response(&body, version, ResponseError::KafkaStorageError));
            }
        };
        let stopping = *shutdown.borrow();
        let answered = gathered.has_error || limits.preferred_replica.is_some();
        if gathered.bytes >= limits.min_bytes || answered || stopping || Instant::now() >= deadline {
            let response = response(&body, version, gathered.partitions);
            return match gathered.held {
                Some(held) => match respond_lending(request, response) {
                    Ok(parts) => Outcome::RespondHolding(parts, held),
                    Err(outcome) => outcome,
                },
                None => respond(request, &response),
            };
        }
        tokio::select! {
            _ = &mut changed => {}
            _ = tokio::time::sleep_until(deadline) => {}
            // A dropped sender also means the server is going away.
            _ = shutdown.changed() => {}
        }
    }
}

#[derive(Clone, Copy)]
struct Limits {
    response_bytes: usize,
    min_bytes: usize,
    /// isolation_level 1: nothing at or after the last stable offset, and the aborted
    /// transactions of the range read.
    read_committed: bool,
    /// The node the consumer should fetch from instead (KIP-392): every partition in
    /// range is answered with it and no records, at once.
    preferred_replica: Option<i32>,
}

/// Fetch's isolation_level for read_committed.
pub const READ_COMMITTED: i8 = 1;

/// One requested partition, with what the request asked of it.
struct Wanted {
    topic: Result<Topic, ResponseError>,
    partition: i32,
    fetch_offset: i64,
    max_bytes: usize,
}

/// Every requested partition in request order, topics resolved.
async fn resolve(broker: &Broker, body: &FetchRequest, version: i16) -> Result<Vec<Wanted>, StorageCallError> {
    let topic_ref = |t: &kafka_protocol::messages::fetch_request::FetchTopic| {
        if version >= TOPIC_IDS_FROM {
            TopicRef::Id(t.topic_id)
        } else {
            TopicRef::Name(t.topic.0.to_string())
        }
    };
    let refs: Vec<(TopicRef, i32)> =
        body.topics.iter().flat_map(|t| t.partitions.iter().map(move |p| (topic_ref(t), p.partition))).collect();
    let found = broker.topics.resolve(&broker.storage, &refs).await?;
    let access = access(broker).await;
    let unknown = if version >= TOPIC_IDS_FROM { ResponseError::UnknownTopicId } else { ResponseError::UnknownTopicOrPartition };
    let wanted = body
        .topics
        .iter()
        .flat_map(|t| t.partitions.iter().map(move |p| (t, p)))
        .map(|(t, p)| {
            let topic = match found.get(&topic_ref(t)).cloned().flatten() {
                None => Err(unknown),
                Some(topic) if !(0..topic.partitions).contains(&p.partition) => Err(ResponseError::UnknownTopicOrPartition),
                Some(topic) => access.check_topic(Operation::Read, &topic.name).map(|()| topic),
            };
            Wanted { topic, partition: p.partition, fetch_offset: p.fetch_offset, max_bytes: p.partition_max_bytes.max(0) as usize }
        })
        .collect();
    Ok(wanted)
}

/// What one look at the partitions found.
struct Gathered {
    partitions: Vec<PartitionData>,
    bytes: usize,
    has_error: bool,
    /// The response's bytes, from the response budgets.
    held: Option<Vec<tokio::sync::OwnedSemaphorePermit>>,
}

/// Looks at every wanted partition once: errors and bounds from memory, then one storage
/// job that reads every partition with data, if there is any.
async fn gather(broker: &Broker, wanted: &[Wanted], limits: Limits) -> Result<Gathered, StorageCallError> {
    let bounds = bounds_of(broker, wanted).await?;
    let mut has_error = false;
    let mut partitions = Vec::with_capacity(wanted.len());
    // The partitions with data to read, and where each goes in the response.
    let (mut reads, mut indexes) = (Vec::new(), Vec::new());
    for (index, (w, bounds)) in wanted.iter().zip(&bounds).enumerate() {
        let mut data = PartitionData::default().with_partition_index(w.partition).with_records(Some(Bytes::new()));
        let with_bounds = |data: PartitionData, b: &Bounds| match &w.topic {
            Ok(topic) => with_bounds(data, b, broker.txns.log().stable_offset((topic.id, w.partition), b.high)),
            Err(_) => data,
        };
        let status = match (&w.topic, bounds, limits.preferred_replica) {
            (Err(error), ..) => Err(*error),
            (Ok(_), None, _) => Err(ResponseError::UnknownTopicOrPartition),
            (Ok(_), Some(b), _) if !(b.log_start..=b.high).contains(&w.fetch_offset) => {
                data = with_bounds(data, b);
                Err(ResponseError::OffsetOutOfRange)
            }
            (Ok(_), Some(b), Some(replica)) => {
                data = with_bounds(data, b).with_preferred_read_replica(BrokerId(replica));
                Ok(())
            }
            (Ok(topic), Some(b), None) => {
                data = with_bounds(data, b);
                let below = if limits.read_committed { data.last_stable_offset } else { b.high };
                if limits.read_committed {
                    broker.txns.log().forget_aborted_before((topic.id, w.partition), b.log_start);
                    let aborted = broker.txns.log().aborted_between((topic.id, w.partition), w.fetch_offset, below);
                    let aborted = aborted.into_iter().map(|(producer_id, first_offset)| {
                        AbortedTransaction::default().with_producer_id(ProducerId(producer_id)).with_first_offset(first_offset)
                    });
                    data = data.with_aborted_transactions(Some(aborted.collect()));
                }
                if w.fetch_offset < below {
                    let read = PartitionRead {
                        topic_id: topic.id,
                        partition: w.partition,
                        from: w.fetch_offset,
                        below,
                        max_bytes: w.max_bytes,
                        layout: topic.layout,
                        codec: compress::target(topic.settings.compression),
                    };
                    reads.push(read);
                    indexes.push(index);
                }
                Ok(())
            }
        };
        if let Err(error) = status {
            has_error = true;
            crate::metrics::note_error();
            data = data.with_error_code(error.code());
            if !matches!(error, ResponseError::OffsetOutOfRange) {
                data = data.with_high_watermark(-1);
            }
        }
        partitions.push(data);
    }
    let mut bytes = 0;
    let mut held = None;
    if !reads.is_empty() {
        let (response_bytes, reserved) = reserve_response(broker, limits.response_bytes).await?;
        let plan = ReadPlan { reads, response_bytes };
        let ahead = super::CONNECTION_RESPONSES.try_with(|turn| turn.responses.read_ahead.clone()).ok();
        let read_ahead = match &ahead {
            Some(ahead) => ahead.take(broker, &plan).await,
            None => None,
        };
        let read = match read_ahead {
            Some(read) => read,
            None => read_plan(broker, plan.clone()).await?,
        };
        if let Some(ahead) = ahead {
            ahead.start(broker, &plan, &read);
        }
        for (index, answer) in indexes.into_iter().zip(read) {
            if !answer.is_empty() {
                broker.metrics().fetched(answer.records, answer.len());
                bytes += answer.len();
                partitions[index].records = Some(answer.into_records());
            }
        }
        let mut reserved = reserved;
        if bytes > response_bytes {
            hold_oversized(broker, &mut reserved, bytes).await?;
        }
        // Whatever the read did not use goes back now (split off and dropped).
        for permit in &mut reserved {
            drop(permit.split(permit.num_permits().saturating_sub(bytes)));
        }
        held = Some(reserved);
    }
    Ok(Gathered { partitions, bytes, has_error, held })
}

/// Runs `plan` in a reader process if one is connected, else as a job on the main thread.
async fn read_plan(broker: &Broker, plan: ReadPlan) -> Result<ReadResult, StorageCallError> {
    let (max_answer_bytes, timeout) = reader_limits(broker, &plan);
    if let Some(answer) = broker.readers.run(&plan, max_answer_bytes, timeout).await {
        return Ok(answer?);
    }
    broker.storage.try_call(move |storage| plan.run(storage)).await
}

/// The largest answer a reader may give for `plan`, and how long it may take.
pub(super) fn reader_limits(broker: &Broker, plan: &ReadPlan) -> (usize, Duration) {
    let config = broker.config();
    // An answer holds the plan's bytes plus framing; a first message larger than the
    // response (KIP-74) may add up to a frame. Anything beyond is a reader gone wrong.
    let max_answer_bytes = plan.response_bytes.saturating_mul(2).saturating_add(config.max_frame_bytes).saturating_add(1 << 16);
    let timeout = Duration::from_millis(config.statement_timeout_ms.max(config.request_timeout_ms)).saturating_add(Duration::from_secs(5));
    (max_answer_bytes, timeout)
}

/// Reserves what a response may hold until written: first from its connection's allowance
/// (one full response; waits while earlier unwritten responses of the connection hold it),
/// then from the response budget shared by all connections (at most what is free, at least
/// [`MIN_RESPONSE_RESERVE`]). Returns how many bytes the read may return and the permits.
async fn reserve_response(broker: &Broker, wanted: usize) -> Result<(usize, Vec<tokio::sync::OwnedSemaphorePermit>), StorageCallError> {
    let closed = |_| StorageCallError::Unavailable(Unavailable("the response budget is closed"));
    let mut held = Vec::with_capacity(2);
    let mut bytes = wanted.min(broker.config().max_inflight_bytes).max(1);
    if let Ok(connection) = super::CONNECTION_RESPONSES.try_with(|turn| turn.responses.clone()) {
        bytes = bytes.min(connection.size).max(1);
        held.push(connection.allowance.acquire_many_owned(bytes as u32).await.map_err(closed)?);
    }
    bytes = bytes.min(broker.responses.available_permits().max(MIN_RESPONSE_RESERVE)).max(1);
    held.push(broker.responses.clone().acquire_many_owned(bytes as u32).await.map_err(closed)?);
    // The connection's share may be larger than what the shared budget allowed: trim it.
    if let Some(first) = held.first_mut() {
        drop(first.split(first.num_permits().saturating_sub(bytes)));
    }
    Ok((bytes, held))
}

/// A first record larger than the response is still returned (KIP-74), but held in the
/// shared response budget for all its bytes (up to the whole budget) like any response,
/// so that many of them wait for each other instead of bypassing the budget. The shared
/// permit (last in `reserved`) is given back and the whole size taken in one step: two
/// fetches each holding part while waiting for more could never finish.
async fn hold_oversized(
    broker: &Broker,
    reserved: &mut Vec<tokio::sync::OwnedSemaphorePermit>,
    bytes: usize,
) -> Result<(), StorageCallError> {
    let closed = |_| StorageCallError::Unavailable(Unavailable("the response budget is closed"));
    drop(reserved.pop());
    let whole = bytes.min(broker.config().max_inflight_bytes).max(1);
    reserved.push(broker.responses.clone().acquire_many_owned(whole as u32).await.map_err(closed)?);
    Ok(())
}

/// Bounds of each wanted partition that exists; loads the ones not yet in memory (once).
async fn bounds_of(broker: &Broker, wanted: &[Wanted]) -> Result<Vec<Option<Bounds>>, StorageCallError> {
    let key = |w: &Wanted| w.topic.as_ref().ok().map(|t| (t.id, w.partition));
    let missing: Vec<(i32, i32)> = wanted.iter().filter_map(key).filter(|&(t, p)| broker.watermarks.get(t, p).is_none()).collect();
    if !missing.is_empty() {
        let watermarks = broker.watermarks.clone();
        broker.storage.try_call(move |storage| watermarks.load(storage, &missing)).await?;
    }
    Ok(wanted.iter().map(|w| key(w).and_then(|(t, p)| broker.watermarks.get(t, p))).collect())
}

/// The partition's offsets: high watermark, last stable offset (the first offset of its
/// oldest open transaction, else the high watermark), log start.
fn with_bounds(data: PartitionData, bounds: &Bounds, stable: i64) -> PartitionData {
    data.with_high_watermark(bounds.high).with_last_stable_offset(stable).with_log_start_offset(bounds.log_start)
}

/// The response: one entry per requested topic, partitions in request order.
fn response(body: &FetchRequest, version: i16, partitions: Vec<PartitionData>) -> FetchResponse {
    let mut partitions = partitions.into_iter();
    let topics = body
        .topics
        .iter()
        .map(|t| {
            let answers = t.partitions.iter().map(|_| partitions.next().expect("one answer per partition")).collect();
            let answer = FetchableTopicResponse::default().with_partitions(answers);
            if version >= TOPIC_IDS_FROM {
                answer.with_topic_id(t.topic_id)
            } else {
                answer.with_topic(t.topic.clone())
            }
        })
        .collect();
    FetchResponse::default().with_session_id(0).with_responses(topics)
}

/// The frame of `response` in parts, its larger record batches sent as they are
/// (`protocol::parts`); the frame whole where that cannot be (a classic version translated
/// back, markers not found as written). `Err`: what to do instead of responding.
fn respond_lending(request: &RequestFrame, mut response: FetchResponse) -> Result<Vec<Bytes>, Outcome> {
    let whole = |response: &FetchResponse| match respond(request, response) {
        Outcome::Respond(frame) => Ok(vec![frame]),
        other => Err(other),
    };
    let lendable = |records: &Bytes| records.len() >= LEND_FROM_BYTES;
    let any_lendable = response.responses.iter().flat_map(|t| &t.partitions).any(|p| p.records.as_ref().is_some_and(lendable));
    // Markers cost a random draw (a syscall): only for responses with a batch to lend.
    if request.legacy_version.is_some() || !any_lendable {
        return whole(&response);
    }
    // (topic, partition) of each lent batch, in the order the encoder writes them.
    let (markers, mut lent, mut places) = (Markers::new(), Vec::new(), Vec::new());
    for (t, topic) in response.responses.iter_mut().enumerate() {
        for (p, partition) in topic.partitions.iter_mut().enumerate() {
            if let Some(records) = partition.records.as_mut().filter(|r| lendable(r)) {
                lent.push(std::mem::replace(records, markers.marker(lent.len() as u32)));
                places.push((t, p));
            }
        }
    }
    let version = request.version();
    let flexible = ApiKey::Fetch.response_header_version(version) >= 1;
    let prefix = if flexible { LengthPrefix::Compact } else { LengthPrefix::Int32 };
    let spliced = encode_response(ApiKey::Fetch, version, request.header.correlation_id, &response)
        .ok()
        .and_then(|frame| splice(&frame, &markers, prefix, &lent));
    if let Some(parts) = spliced {
        return Ok(parts);
    }
    for ((t, p), records) in places.into_iter().zip(lent) {
        if let Some(partition) = response.responses.get_mut(t).and_then(|topic| topic.partitions.get_mut(p)) {
            partition.records = Some(records);
        }
    }
    whole(&response)
}

/// Every partition answered with `error`.
fn error_response(body: &FetchRequest, version: i16, error: ResponseError) -> FetchResponse {
    let partitions = body
        .topics
        .iter()
        .flat_map(|t| t.partitions.iter())
        .map(|p| PartitionData::default().with_partition_index(p.partition).with_error_code(error.code()).with_high_watermark(-1))
        .collect();
    response(body, version, partitions)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::testing::{append_values, broker_counting_jobs, broker_with_writer, round_trip};
    use crate::protocol::records::decode_batches;
    use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
    use kafka_protocol::messages::ApiKey;
    use kafka_protocol::protocol::StrBytes;
    use std::time::Duration;

    fn fetch(topic: FetchTopic, max_wait_ms: i32) -> FetchRequest {
        FetchRequest::default()
            .with_max_wait_ms(max_wait_ms)
            .with_min_bytes(1)
            .with_max_bytes(1 << 20)
            .with_session_epoch(-1)
            .with_topics(vec![topic])
    }

    fn topic(name: &'static str, partitions: &[(i32, i64)], partition_max_bytes: i32) -> FetchTopic {
        let partitions = partitions
            .iter()
            .map(|&(p, offset)| {
                FetchPartition::default().with_partition(p).with_fetch_offset(offset).with_partition_max_bytes(partition_max_bytes)
            })
            .collect();
        FetchTopic::default().with_topic(kafka_protocol::messages::TopicName(StrBytes::from_static_str(name))).with_partitions(partitions)
    }

    /// (offset, value) of every record of a partition's answer.
    fn records_of(data: &PartitionData) -> Vec<(i64, Bytes)> {
        decode_batches(data.records.clone().unwrap_or_default(), 1 << 20)
            .unwrap()
            .into_iter()
            .flat_map(|b| b.records.into_iter().map(move |r| (b.base_offset + i64::from(r.offset_delta), r.value.unwrap())))
            .collect()
    }

    /// A first record larger than the response is returned whole (KIP-74) and held in the
    /// response budget for all its bytes: many such answers wait for the budget instead of
    /// bypassing it (40 connections x 16 Fetches of a 90 MiB record stalled every consumer).
    #[tokio::test]
    async fn an_oversized_first_record_is_held_in_the_budget_whole() {
        use crate::broker::testing::{broker_with_config, request_frame, with_storage};
        let config = crate::config::Config { fetch_max_bytes: 200, ..Default::default() };
        let budget = config.max_inflight_bytes;
        let broker = broker_with_config(config);
        with_storage(&broker, |s| s.create_topic("t", 1)).await.unwrap();
        let value: &'static [u8] = &[7; 5000];
        append_values(&broker, 0, &[value]).await;
        let outcome = broker.handle(request_frame(ApiKey::Fetch, 12, &fetch(topic("t", &[(0, 0)], 1 << 20), 0))).await;
        let Outcome::RespondHolding(frame, held) = outcome else { panic!("a response holding its bytes: {outcome:?}") };
        let frame = frame.concat();
        let held_bytes: usize = held.iter().map(|p| p.num_permits()).sum();
        assert!(frame.len() > 5000, "the record is returned");
        assert!(held_bytes >= 5000, "held {held_bytes} of a {} byte response", frame.len());
        assert!(broker.responses().available_permits() <= budget - 5000);
        drop(held);
        assert_eq!(broker.responses().available_permits(), budget);
    }

    /// pg_kafka.fetch_max_bytes caps a response whatever the client asks, and the bytes of
    /// a response with data come out of the in-flight budget until it is written.
    #[tokio::test]
    async fn responses_are_capped_and_held_in_the_budget_until_written() {
        use crate::broker::testing::{broker_with_config, request_frame, with_storage};
        let config = crate::config::Config { fetch_max_bytes: 200, ..Default::default() };
        let budget = config.max_inflight_bytes;
        let broker = broker_with_config(config);
        with_storage(&broker, |s| s.create_topic("t", 1)).await.unwrap();
        let value: &'static [u8] = &[7; 40];
        append_values(&broker, 0, &[value; 10]).await;
        let outcome = broker.handle(request_frame(ApiKey::Fetch, 12, &fetch(topic("t", &[(0, 0)], 1 << 20), 0))).await;
        let Outcome::RespondHolding(frame, held) = outcome else { panic!("a response holding its bytes: {outcome:?}") };
        let frame = Bytes::from(frame.concat());
        let held_bytes: usize = held.iter().map(|p| p.num_permits()).sum();
        assert!(held_bytes > 0 && held_bytes <= frame.len());
        assert_eq!(broker.responses().available_permits(), budget - held_bytes);
        let response: FetchResponse = crate::broker::testing::decode_response(Outcome::Respond(frame), ApiKey::Fetch, 12);
        let read = records_of(&response.responses[0].partitions[0]).len();
        assert!((1..10).contains(&read), "{read} of 10 records in a 200-byte response");
        drop(held);
        assert_eq!(broker.responses().available_permits(), budget);
    }

    /// The connection writes responses in request order, so a later Fetch must not take
    /// the connection's allowance before an earlier one: the earlier would wait for bytes
    /// that are only released after it is written, and the connection would hang.
    #[tokio::test]
    async fn fetches_of_one_connection_reserve_in_request_order() {
        use crate::broker::in_order::Chain;
        use crate::broker::testing::{broker_with_config, request_frame, with_storage};
        use crate::broker::{ConnectionResponses, CONNECTION_RESPONSES};
        let broker = broker_with_config(crate::config::Config { fetch_max_bytes: 4000, ..Default::default() });
        with_storage(&broker, |s| s.create_topic("t", 1)).await.unwrap();
        append_values(&broker, 0, &[&[7; 3000]]).await;
        let responses = ConnectionResponses::new(4000);
        let mut chain = Chain::default();
        let (first, second) = (responses.turn(chain.next_link()), responses.turn(chain.next_link()));
        let request = || request_frame(ApiKey::Fetch, 12, &fetch(topic("t", &[(0, 0)], 1 << 20), 0));
        let (early, late) = (broker.clone(), broker.clone());
        // The second request's task runs first and would hold the whole allowance.
        let second = tokio::spawn(CONNECTION_RESPONSES.scope(second, async move { late.handle(request()).await }));
        tokio::time::sleep(Duration::from_millis(50)).await;
        let first = tokio::spawn(CONNECTION_RESPONSES.scope(first, async move { early.handle(request()).await }));
        let first = tokio::time::timeout(Duration::from_secs(5), first).await.expect("the earlier fetch got its bytes").unwrap();
        assert!(matches!(first, Outcome::RespondHolding(..)), "{first:?}");
        assert!(!second.is_finished(), "the later fetch waits while the earlier response is unwritten");
        drop(first); // written
        let second = tokio::time::timeout(Duration::from_secs(5), second).await.expect("then the later one").unwrap();
        assert!(matches!(second, Outcome::RespondHolding(..)), "{second:?}");
    }

    /// KIP-392: the leader sends a consumer of another rack to a node of its rack, with no
    /// records and without waiting; a consumer of the leader's rack is served.
    #[tokio::test]
    async fn a_consumer_is_sent_to_a_node_of_its_rack_at_once() {
        use crate::broker::testing::broker_on;
        use crate::storage::memory::MemoryStorage;
        use crate::storage::Storage;
        let mut storage = MemoryStorage::default();
        storage.create_topic("t", 1).unwrap();
        let cluster_nodes = crate::config::nodes::parse("1:a@10.0.0.1:9092,2:b@10.0.0.2:9092").unwrap();
        let broker = broker_on(storage, crate::config::Config { cluster_nodes, ..crate::config::Config::default() });
        append_values(&broker, 0, &[b"a"]).await;
        let in_rack = |rack: &'static str| fetch(topic("t", &[(0, 1)], 1 << 20), 5_000).with_rack_id(StrBytes::from_static_str(rack));
        let started = std::time::Instant::now();
        let response: FetchResponse = round_trip(&broker, ApiKey::Fetch, 11, &in_rack("b")).await;
        let data = &response.responses[0].partitions[0];
        assert_eq!((data.error_code, data.preferred_read_replica.0, data.high_watermark), (0, 2, 1));
        assert!(records_of(data).is_empty());
        assert!(started.elapsed() < Duration::from_secs(4), "answered without the long poll");
        let at_start = fetch(topic("t", &[(0, 0)], 1 << 20), 0).with_rack_id(StrBytes::from_static_str("a"));
        let response: FetchResponse = round_trip(&broker, ApiKey::Fetch, 11, &at_start).await;
        let data = &response.responses[0].partitions[0];
        assert_eq!((data.preferred_read_replica.0, records_of(data).len()), (-1, 1), "the leader's own rack");
    }

    #[tokio::test]
    async fn reads_back_what_was_committed_at_every_version() {
        let broker = broker_with_writer(2);
        append_values(&broker, 1, &[b"a", b"b", b"c"]).await;
        let uuid = broker.storage.call(|s| s.topic("t")).await.unwrap().unwrap().unwrap().uuid;
        for version in 4..=18 {
            let mut t = topic("t", &[(1, 1), (0, 0)], 1 << 20);
            if version >= TOPIC_IDS_FROM {
                t = t.with_topic_id(uuid);
            }
            let response: FetchResponse = round_trip(&broker, ApiKey::Fetch, version, &fetch(t, 0)).await;
            let partitions = &response.responses[0].partitions;
            assert_eq!(partitions[0].error_code, 0, "v{version}");
            assert_eq!(partitions[0].high_watermark, 3);
            let values: Vec<(i64, Bytes)> = records_of(&partitions[0]);
            assert_eq!(values, vec![(1, Bytes::from_static(b"b")), (2, Bytes::from_static(b"c"))], "v{version}");
            assert_eq!((partitions[1].high_watermark, records_of(&partitions[1]).len()), (0, 0));
        }
    }

    #[tokio::test]
    async fn offsets_outside_the_log_and_unknown_partitions_are_errors() {
        let broker = broker_with_writer(1);
        append_values(&broker, 0, &[b"a"]).await;
        let request = fetch(topic("t", &[(0, 2), (0, -1), (3, 0)], 1 << 20), 5000);
        let response: FetchResponse = round_trip(&broker, ApiKey::Fetch, 11, &request).await;
        let codes: Vec<(i16, i64)> = response.responses[0].partitions.iter().map(|p| (p.error_code, p.high_watermark)).collect();
        let out_of_range = ResponseError::OffsetOutOfRange.code();
        assert_eq!(codes, vec![(out_of_range, 1), (out_of_range, 1), (ResponseError::UnknownTopicOrPartition.code(), -1)]);
        let response: FetchResponse = round_trip(&broker, ApiKey::Fetch, 11, &fetch(topic("nope", &[(0, 0)], 100), 5000)).await;
        assert_eq!(response.responses[0].partitions[0].error_code, ResponseError::UnknownTopicOrPartition.code());
    }

    #[tokio::test]
    async fn a_message_larger_than_the_limits_still_comes_alone() {
        let broker = broker_with_writer(1);
        append_values(&broker, 0, &[&[7; 4000], b"small"]).await;
        let response: FetchResponse = round_trip(&broker, ApiKey::Fetch, 12, &fetch(topic("t", &[(0, 0)], 100), 0)).await;
        let records = records_of(&response.responses[0].partitions[0]);
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].1.len(), 4000);
    }

    /// A batch of 16 KiB or more goes as a part of its own, not copied into the frame;
    /// the frame is the same at classic and flexible versions.
    #[tokio::test]
    async fn large_batches_are_sent_as_they_are_read() {
        use crate::broker::testing::request_frame;
        let broker = broker_with_writer(1);
        let large: &'static [u8] = &[9; LEND_FROM_BYTES];
        append_values(&broker, 0, &[large]).await;
        append_values(&broker, 0, &[b"small"]).await;
        // By topic name: up to v12 (v12 is flexible, v4 and v11 classic).
        for version in [4, 11, 12] {
            let body = fetch(topic("t", &[(0, 0)], 1 << 20), 0);
            let outcome = broker.handle(request_frame(ApiKey::Fetch, version, &body)).await;
            let Outcome::RespondHolding(parts, _held) = outcome else { panic!("v{version}: a response with records: {outcome:?}") };
            let largest = parts.iter().map(Bytes::len).max().unwrap_or(0);
            assert!(
                parts.len() >= 2 && largest > LEND_FROM_BYTES,
                "v{version}: the batch is a part of its own: {:?}",
                parts.iter().map(Bytes::len).collect::<Vec<_>>()
            );
            let frame = Bytes::from(parts.concat());
            let response: FetchResponse = crate::broker::testing::decode_response(Outcome::Respond(frame), ApiKey::Fetch, version);
            let values: Vec<Bytes> = records_of(&response.responses[0].partitions[0]).into_iter().map(|(_, v)| v).collect();
            assert_eq!(values, vec![Bytes::from_static(large), Bytes::from_static(b"small")], "v{version}");
        }
    }

    #[tokio::test]
    async fn a_long_poll_wakes_on_commit_and_an_idle_one_times_out() {
        let broker = broker_with_writer(1);
        let waiting = broker.clone();
        let started = std::time::Instant::now();
        let poll = tokio::spawn(async move {
            round_trip::<_, FetchResponse>(&waiting, ApiKey::Fetch, 11, &fetch(topic("t", &[(0, 0)], 1 << 20), 10_000)).await
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        append_values(&broker, 0, &[b"late"]).await;
        let response = tokio::time::timeout(Duration::from_secs(5), poll).await.expect("woken before max_wait").unwrap();
        assert_eq!(records_of(&response.responses[0].partitions[0]), vec![(0, Bytes::from_static(b"late"))]);
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[tokio::test]
    async fn idle_polls_wait_out_max_wait_without_storage_work() {
        let (broker, jobs_run) = broker_counting_jobs(1);
        append_values(&broker, 0, &[b"a"]).await;
        let request = fetch(topic("t", &[(0, 1)], 1 << 20), 300);
        let _: FetchResponse = round_trip(&broker, ApiKey::Fetch, 11, &request).await; // loads bounds
        let jobs_before = jobs_run.load(std::sync::atomic::Ordering::Relaxed);
        let started = std::time::Instant::now();
        for _ in 0..3 {
            let response: FetchResponse = round_trip(&broker, ApiKey::Fetch, 11, &request).await;
            assert!(records_of(&response.responses[0].partitions[0]).is_empty());
        }
        assert!(started.elapsed() >= Duration::from_millis(900), "each poll held for max_wait_ms");
        assert_eq!(jobs_run.load(std::sync::atomic::Ordering::Relaxed), jobs_before, "idle polls ran storage jobs");
    }

    #[tokio::test]
    async fn sessions_are_declined() {
        let broker = broker_with_writer(1);
        let request = fetch(topic("t", &[(0, 0)], 100), 0).with_session_id(42);
        let response: FetchResponse = round_trip(&broker, ApiKey::Fetch, 11, &request).await;
        assert_eq!(response.error_code, ResponseError::FetchSessionIdNotFound.code());
    }
}
