//! Produce (v3-v13): decode each partition's RecordBatches, hand them to the group-commit
//! writer, answer with the base offsets once the writer's transaction has committed.
//!
//! `acks=0` gets no response (the protocol says so), but the handler still waits for the
//! commit so that the connection's in-flight byte budget covers queued data. `acks=1` and
//! `acks=-1` are the same here: there is one replica, and the answer comes after COMMIT.
//! Produce v0-v2 is advertised (librdkafka turns compression off if Produce's minimum
//! version is above 0) but its old message format is not served: such requests close the
//! connection with a log line.

use bytes::Bytes;
use kafka_protocol::messages::produce_request::TopicProduceData;
use kafka_protocol::messages::produce_response::{BatchIndexAndErrorMessage, PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use tokio::sync::OwnedSemaphorePermit;

use super::authorize::access;
use super::in_order::InOrder;
use super::transactions::{as_produce_error, PRODUCE_TRANSACTIONS_V2};
use super::{decode, respond, Broker, Outcome};
use crate::config::topic::TimestampType;
use crate::logging;
use crate::protocol::compress;
use crate::protocol::header::RequestFrame;
use crate::protocol::records::{
    decode_batches_within, encode_batch_in, is_plain, Batch, Compression, InflateBudget, InflateCap, Record, RecordsError,
};
use crate::security::acl::Operation;
use crate::storage::batches::checked;
use crate::storage::topics::TopicRef;
use crate::storage::{now_ms, StorageLayout, Topic};
use crate::writer::group_commit::{AppendResult, PartitionAppend, TxnPart};
use crate::writer::sequences::{add_sequence, ProducerBatch};

pub async fn handle(broker: &Broker, request: &RequestFrame, mut order: InOrder) -> Outcome {
    let body: ProduceRequest = match decode(request) {
        Ok(body) => body,
        Err(outcome) => return outcome,
    };
    if !matches!(body.acks, -1..=1) {
        return respond(request, &response(&body, |_| Err(ResponseError::InvalidRequiredAcks.into())));
    }

    let access = access(broker).await;
    if let Some(id) = &body.transactional_id {
        if let Err(denied) = access.check_transactional_id(Operation::Write, id.as_str()) {
            return respond(request, &response(&body, |_| Err(denied.into())));
        }
    }
    let (topics, generation) = resolve_topics(broker, &body, request.version()).await;
    // WRITE is checked before existence (as Kafka does): an unauthorized client learns
    // nothing of which topics exist.
    let topics: Vec<_> = body
        .topic_data
        .iter()
        .zip(topics)
        .map(|(data, topic)| match topic {
            // Kafka's own internal topic is the broker's to write (InvalidTopicException).
            Ok(topic) => access
                .check_topic(Operation::Write, &topic.name)
                .and_then(|()| crate::storage::offsets_topic::refuse_change(topic.id))
                .map(|()| topic),
            Err(ResponseError::UnknownTopicOrPartition) => {
                Err(access.check_topic(Operation::Write, data.name.as_str()).err().unwrap_or(ResponseError::UnknownTopicOrPartition))
            }
            Err(other) => Err(other),
        })
        .collect();
    // Per partition, in request order: its topic and records, or its error.
    let wanted: Vec<Result<PartitionRecords, ResponseError>> = body
        .topic_data
        .iter()
        .zip(&topics)
        .flat_map(|(data, topic)| data.partition_data.iter().map(move |p| (topic, p)))
        .map(|(topic, partition)| {
            let topic = topic.clone()?;
            if !(0..topic.partitions).contains(&partition.index) {
                return Err(ResponseError::UnknownTopicOrPartition);
            }
            Ok((topic, partition.index, partition.records.clone()))
        })
        .collect();
    let Some((decoded, _inflated)) = decode_partitions(broker, wanted, generation).await else {
        return respond(request, &response(&body, |_| Err(ResponseError::KafkaStorageError.into())));
    };
    let in_transaction = body.transactional_id.is_some();
    let mut decoded = decoded;
    if let Some(id) = body.transactional_id.as_ref().filter(|_| request.version() >= PRODUCE_TRANSACTIONS_V2) {
        add_to_transaction(broker, id.as_str(), &mut decoded).await;
    }
    let decoded: Vec<Result<PartitionAppend, Refusal>> =
        decoded.into_iter().map(|append| append.and_then(|a| admitted_in_transaction(broker, a, in_transaction))).collect();
    let mut appends = Vec::new();
    let mut bytes = 0;
    // Per partition, in request order: a decoding error now, or the index of its append
    // and its log append time.
    let slots: Vec<Result<(usize, Option<i64>), Refusal>> = decoded
        .into_iter()
        .map(|append| {
            let append = append?;
            bytes += append.records.iter().map(record_bytes).sum::<usize>() + append.batch.as_ref().map_or(0, |b| b.bytes.len());
            let log_append_time = append.log_append_time;
            appends.push(append);
            Ok((appends.len() - 1, log_append_time))
        })
        .collect();

    let committed: Vec<AppendResult> = if appends.is_empty() {
        Vec::new()
    } else {
        let count = appends.len();
        // Decoding ran in parallel with the connection's other requests; reaching the
        // writer happens in request order, so offsets follow send order.
        order.wait_turn().await;
        let committed = broker.commits.enqueue_produce(appends, bytes, body.acks == -1);
        order.pass();
        match committed.await {
            Ok(results) => results,
            Err(e) => {
                logging::warning(format!("pg_kafka: produce failed: {e}"));
                vec![Err(ResponseError::KafkaStorageError); count]
            }
        }
    };
    if body.acks == 0 {
        return Outcome::Silent;
    }
    let mut slots = slots.into_iter();
    respond(
        request,
        &response(&body, |_| match slots.next().expect("one slot per partition") {
            Ok((index, log_append_time)) => committed[index].map(|base| (base, log_append_time)).map_err(Refusal::from),
            Err(refusal) => Err(refusal),
        }),
    )
}

/// Each requested topic, resolved once through the topic cache (by name up to v12, by
/// id from v13), and the cache generation the answers belong to. Unknown topics answer
/// UNKNOWN_TOPIC_OR_PARTITION (by name) or UNKNOWN_TOPIC_ID (by id).
async fn resolve_topics(broker: &Broker, body: &ProduceRequest, version: i16) -> (Vec<Result<Topic, ResponseError>>, u64) {
    let (reference, unknown): (fn(&TopicProduceData) -> TopicRef, _) = if version < 13 {
        (|t| TopicRef::Name(t.name.0.to_string()), ResponseError::UnknownTopicOrPartition)
    } else {
        (|t| TopicRef::Id(t.topic_id), ResponseError::UnknownTopicId)
    };
    let wanted: Vec<(TopicRef, i32)> =
        body.topic_data.iter().map(|t| (reference(t), t.partition_data.iter().map(|p| p.index).max().unwrap_or(0))).collect();
    match broker.topics.resolve(&broker.storage, &wanted).await {
        Ok(found) => {
            let topic = |t| found.topics.get(&reference(t)).cloned().flatten().ok_or(unknown);
            (body.topic_data.iter().map(topic).collect(), found.generation)
        }
        Err(e) => {
            logging::warning(format!("pg_kafka: produce failed: {e}"));
            (vec![Err(ResponseError::KafkaStorageError); body.topic_data.len()], 0)
        }
    }
}

/// A partition of a Produce request: its topic, index and `records` field.
type PartitionRecords = (Topic, i32, Option<Bytes>);

/// Decodes every partition's batches and accounts what decompression produced. A small
/// request with nothing compressed is decoded right here (a few microseconds: handing it
/// to another thread would cost more, in context switches, than decoding it); anything
/// else on the blocking pool, so that decompression never holds up other connections.
///
/// Deadlock-free by construction: at most [`INFLATING_AT_ONCE`] requests decompress at
/// a time (each capped at `pg_kafka.max_frame_bytes`); one that is done takes its whole
/// decompressed size from the inflated-bytes budget in one all-or-nothing acquire while
/// still holding its slot, and keeps it (the returned permit) until it was answered. So
/// memory of decompressed records is at most that budget plus two requests' worth, and
/// nobody holds part of the budget while waiting for more. `None`: the budget is closed.
async fn decode_partitions(
    broker: &Broker,
    wanted: Vec<Result<PartitionRecords, ResponseError>>,
    generation: u64,
) -> Option<(Vec<Result<PartitionAppend, Refusal>>, Option<OwnedSemaphorePermit>)> {
    if is_small_and_plain(&wanted) {
        // Nothing to inflate: a budget of nothing is never drawn on.
        return Some((decode_all(wanted, generation, &mut InflateCap::new(0)), None));
    }
    let slot = broker.inflating.clone().acquire_owned().await.ok()?;
    let cap = broker.config().max_frame_bytes.min(broker.config().max_inflight_bytes);
    let decoding = tokio::task::spawn_blocking(move || {
        let mut budget = InflateCap::new(cap);
        let appends = decode_all(wanted, generation, &mut budget);
        (appends, cap - budget.left())
    });
    let (appends, inflated) = decoding.await.ok()?;
    let held = match inflated {
        0 => None,
        bytes => Some(broker.inflated.clone().acquire_many_owned(u32::try_from(bytes).ok()?).await.ok()?),
    };
    drop(slot);
    Some((appends, held))
}

/// Every partition's append (or its error), decompression drawing on `budget`.
fn decode_all(
    wanted: Vec<Result<PartitionRecords, ResponseError>>,
    generation: u64,
    budget: &mut InflateCap,
) -> Vec<Result<PartitionAppend, Refusal>> {
    wanted
        .into_iter()
        .map(|w| w.map_err(Refusal::from).and_then(|(topic, partition, data)| partition_append(topic, generation, partition, data, budget)))
        .collect()
}

/// Whether a request's records are few bytes in whole, uncompressed batches.
fn is_small_and_plain(wanted: &[Result<PartitionRecords, ResponseError>]) -> bool {
    let fields = || wanted.iter().filter_map(|w| w.as_ref().ok()).filter_map(|(_, _, data)| data.as_ref());
    fields().map(Bytes::len).sum::<usize>() <= INLINE_DECODE_BYTES && fields().all(|data| is_plain(data))
}

/// Records bytes of a request decoded on its connection's task when nothing is compressed.
const INLINE_DECODE_BYTES: usize = 64 * 1024;

/// Requests decompressing at once (the machine's cores are the limit anyway).
pub const INFLATING_AT_ONCE: usize = 2;

/// One partition's `records` field as an append, or the error code for the partition.
/// As in Kafka, Produce v3+ carries exactly one record batch per partition.
fn partition_append(
    topic: Topic,
    topics_generation: u64,
    partition: i32,
    data: Option<Bytes>,
    budget: &mut dyn InflateBudget,
) -> Result<PartitionAppend, Refusal> {
    let data = data.unwrap_or_default();
    let batch_bytes = data.len();
    let mut batches = decode_batches_within(data.clone(), budget).map_err(|e| {
        logging::warning(format!("pg_kafka: rejected produce to \"{}\": {e}", topic.name));
        records_error_code(&e)
    })?;
    let (Some(batch), None) = (batches.pop(), batches.pop()) else {
        logging::warning(format!("pg_kafka: rejected produce to \"{}\": not exactly one record batch", topic.name));
        return Err(ResponseError::InvalidRecord.into());
    };
    // Control batches are the coordinator's to write.
    if batch.is_control() {
        return Err(ResponseError::InvalidRecord.into());
    }
    let producer = producer_batch(&batch)?;
    let (transactional, producer_id, producer_epoch) = (batch.is_transactional(), batch.producer_id, batch.producer_epoch);
    let now_ms = now_ms();
    let settings = &topic.settings;
    if let Some(record) = batch.records.iter().find(|r| !settings.timestamp_in_range(r.timestamp, now_ms)) {
        logging::warning(format!(
            "pg_kafka: rejected produce to \"{}\": timestamp {} is out of range (message.timestamp.before.max.ms / after.max.ms)",
            topic.name, record.timestamp
        ));
        return Err(ResponseError::InvalidTimestamp.into());
    }
    keyed_if_compacted(&topic, &batch)?;
    let log_append_time = settings.timestamp_type == TimestampType::LogAppendTime;
    let (records, batch) = match topic.layout {
        StorageLayout::Rows => {
            let mut records = batch.records;
            if log_append_time {
                records.iter_mut().for_each(|r| r.timestamp = now_ms);
            }
            (records, None)
        }
        StorageLayout::Batches => {
            let data = in_topic_codec(&topic, &batch, data)?;
            let checked = checked(&batch, data).map_err(|e| {
                logging::warning(format!("pg_kafka: rejected produce to \"{}\": {e}", topic.name));
                ResponseError::InvalidRecord
            })?;
            (Vec::new(), Some(if log_append_time { checked.appended_at(now_ms) } else { checked }))
        }
    };
    let log_append_time = log_append_time.then_some(now_ms);
    let row_txn = (batch.is_none() && transactional).then_some(TxnPart { producer_id, producer_epoch, marker: None });
    Ok(PartitionAppend { topic, topics_generation, partition, records, batch, batch_bytes, producer, log_append_time, row_txn })
}

/// A transactional batch may only come with a transactional id, from the producer whose
/// transaction is open on the partition (AddPartitionsToTxn), at its current epoch.
fn admitted_in_transaction(broker: &Broker, append: PartitionAppend, in_transaction: bool) -> Result<PartitionAppend, Refusal> {
    let Some(txn) = append.txn() else { return Ok(append) };
    if !in_transaction {
        return Err(ResponseError::InvalidRecord.into());
    }
    broker.txns.admits(txn.producer_id, txn.producer_epoch, (append.topic.id, append.partition))?;
    Ok(append)
}

/// Produce v12+ (Transactions V2): the partitions of transactional batches not yet in the
/// producer's transaction join it; where that is refused, so are their batches.
async fn add_to_transaction(broker: &Broker, id: &str, decoded: &mut [Result<PartitionAppend, Refusal>]) {
    let outside = |append: &PartitionAppend| {
        let txn = append.txn()?;
        // Whatever Produce's view says (it is filled once the coordinator loaded its state),
        // the coordinator decides.
        let admitted = broker.txns.admits(txn.producer_id, txn.producer_epoch, (append.topic.id, append.partition));
        admitted.is_err().then_some((txn.producer_id, txn.producer_epoch))
    };
    let joining: Vec<(usize, (i64, i16))> =
        decoded.iter().enumerate().filter_map(|(i, append)| Some((i, outside(append.as_ref().ok()?)?))).collect();
    let Some(&(_, producer)) = joining.first() else { return };
    let partitions: Vec<(Topic, i32)> =
        joining.iter().filter_map(|(i, _)| decoded[*i].as_ref().ok().map(|a| (a.topic.clone(), a.partition))).collect();
    if let Err(error) = broker.txns.add_partitions(broker, id, producer, &partitions).await {
        let error = as_produce_error(error);
        joining.iter().for_each(|(i, _)| decoded[*i] = Err(error.into()));
    }
}

/// The batch as its topic keeps it: recompressed when `compression.type` names a codec
/// other than the producer's (as Kafka's log validator does), else as sent.
fn in_topic_codec(topic: &Topic, batch: &Batch, data: Bytes) -> Result<Bytes, ResponseError> {
    let Some((codec, level)) = compress::target(topic.settings.compression) else { return Ok(data) };
    if Compression::from_attributes(batch.attributes).ok() == Some(codec) {
        return Ok(data);
    }
    encode_batch_in(batch, &batch.records, codec, level).map_err(|e| {
        logging::warning(format!("pg_kafka: rejected produce to \"{}\": {e}", topic.name));
        ResponseError::KafkaStorageError
    })
}

/// What an idempotent batch claims (`None` for producer id -1, the non-idempotent case).
/// Negative sequences or epochs with a producer id are malformed, not silently accepted.
fn producer_batch(batch: &Batch) -> Result<Option<ProducerBatch>, ResponseError> {
    match batch.producer_id {
        -1 => Ok(None),
        id if id < 0 || batch.producer_epoch < 0 || batch.base_sequence < 0 => Err(ResponseError::InvalidRecord),
        producer_id => Ok(Some(ProducerBatch {
            producer_id,
            epoch: batch.producer_epoch,
            first_sequence: batch.base_sequence,
            last_sequence: add_sequence(batch.base_sequence, batch.last_offset_delta.max(0)),
        })),
    }
}

fn records_error_code(error: &RecordsError) -> ResponseError {
    match error {
        RecordsError::CrcMismatch { .. } | RecordsError::Corrupt(_) | RecordsError::Decompress(_) => ResponseError::CorruptMessage,
        RecordsError::Compress(_) => ResponseError::KafkaStorageError,
        RecordsError::UnsupportedMagic(_) => ResponseError::UnsupportedForMessageFormat,
        RecordsError::UnknownCodec(_) => ResponseError::UnsupportedCompressionType,
        RecordsError::TooLarge(_) => ResponseError::MessageTooLarge,
    }
}

fn record_bytes(record: &Record) -> usize {
    let len = |b: &Option<Bytes>| b.as_ref().map_or(0, Bytes::len);
    len(&record.key) + len(&record.value) + len(&record.headers) + 32
}

/// Why a partition's batch was not appended: Kafka's error code and, where Kafka names
/// them, the records at fault (their index in the batch) and a message.
#[derive(Debug)]
struct Refusal {
    error: ResponseError,
    record_errors: Vec<i32>,
    message: Option<String>,
}

impl From<ResponseError> for Refusal {
    fn from(error: ResponseError) -> Refusal {
        Refusal { error, record_errors: Vec::new(), message: None }
    }
}

/// A compacted topic keeps the latest record of each key, so a record without one cannot
/// be stored: as Kafka, the batch is INVALID_RECORD, naming the keyless records.
fn keyed_if_compacted(topic: &Topic, batch: &Batch) -> Result<(), Refusal> {
    if !topic.settings.compact {
        return Ok(());
    }
    let keyless: Vec<i32> = batch.records.iter().enumerate().filter(|(_, r)| r.key.is_none()).map(|(i, _)| i as i32).collect();
    if keyless.is_empty() {
        return Ok(());
    }
    let message = "Compacted topic cannot accept message without key in topic partition".to_owned();
    logging::warning(format!(
        "pg_kafka: rejected produce to \"{}\": {} record(s) without a key on a compacted topic",
        topic.name,
        keyless.len()
    ));
    Err(Refusal { error: ResponseError::InvalidRecord, record_errors: keyless, message: Some(message) })
}

/// Every partition of `body` refused with `error` (a hot standby's answer).
pub(super) fn refused_everywhere(body: &ProduceRequest, error: ResponseError) -> ProduceResponse {
    response(body, |_| Err(error.into()))
}

/// A response with one entry per requested partition, in request order.
/// Success is the base offset and, for a `LogAppendTime` topic, the time given.
fn response(body: &ProduceRequest, mut result_of: impl FnMut(i32) -> Result<(i64, Option<i64>), Refusal>) -> ProduceResponse {
    let topics = body
        .topic_data
        .iter()
        .map(|topic| {
            let partitions = topic
                .partition_data
                .iter()
                .map(|p| {
                    let answer = PartitionProduceResponse::default().with_index(p.index).with_log_append_time_ms(-1);
                    match result_of(p.index) {
                        Ok((base_offset, log_append_time)) => {
                            answer.with_base_offset(base_offset).with_log_append_time_ms(log_append_time.unwrap_or(-1))
                        }
                        Err(refusal) => {
                            crate::metrics::note_error();
                            let record_errors = refusal
                                .record_errors
                                .iter()
                                .map(|&index| {
                                    BatchIndexAndErrorMessage::default()
                                        .with_batch_index(index)
                                        .with_batch_index_error_message(refusal.message.clone().map(StrBytes::from_string))
                                })
                                .collect();
                            answer
                                .with_error_code(refusal.error.code())
                                .with_base_offset(-1)
                                .with_record_errors(record_errors)
                                .with_error_message(refusal.message.map(StrBytes::from_string))
                        }
                    }
                })
                .collect();
            // One of the two is set, by version: name up to v12, topic id from v13.
            TopicProduceResponse::default().with_name(topic.name.clone()).with_topic_id(topic.topic_id).with_partition_responses(partitions)
        })
        .collect();
    ProduceResponse::default().with_responses(topics)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::testing::{broker_with_writer, request_frame, round_trip, with_storage};
    use crate::protocol::records::encode_batch;
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use kafka_protocol::messages::{ApiKey, TopicName};
    use kafka_protocol::protocol::StrBytes;
    use uuid::Uuid;

    fn record(value: &'static [u8]) -> Record {
        Record { offset_delta: 0, timestamp: 1_700_000_000_000, key: None, value: Some(Bytes::from_static(value)), headers: None }
    }

    fn produce(acks: i16, partitions: Vec<(i32, Bytes)>) -> ProduceRequest {
        let partition_data = partitions
            .into_iter()
            .map(|(index, records)| PartitionProduceData::default().with_index(index).with_records(Some(records)))
            .collect();
        ProduceRequest::default().with_acks(acks).with_timeout_ms(1000).with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_static_str("t")))
            .with_partition_data(partition_data)])
    }

    fn codes(response: &ProduceResponse) -> Vec<(i16, i64)> {
        response.responses[0].partition_responses.iter().map(|p| (p.error_code, p.base_offset)).collect()
    }

    #[tokio::test]
    async fn appends_get_base_offsets_after_commit_at_every_version() {
        let broker = broker_with_writer(2);
        let mut next = 0;
        for version in 3..=12 {
            let batch = encode_batch(0, &[record(b"a"), record(b"b")]);
            let response: ProduceResponse =
                round_trip(&broker, ApiKey::Produce, version, &produce(-1, vec![(0, batch.clone()), (1, batch)])).await;
            assert_eq!(codes(&response), vec![(0, next), (0, next)], "v{version}");
            next += 2;
        }
    }

    #[tokio::test]
    async fn v13_names_topics_by_id() {
        let broker = broker_with_writer(1);
        let uuid = with_storage(&broker, |s| s.topic("t")).await.unwrap().unwrap().uuid;
        let by_id = |id: Uuid| {
            let data = PartitionProduceData::default().with_index(0).with_records(Some(encode_batch(0, &[record(b"a")])));
            ProduceRequest::default()
                .with_acks(-1)
                .with_topic_data(vec![TopicProduceData::default().with_topic_id(id).with_partition_data(vec![data])])
        };
        let response: ProduceResponse = round_trip(&broker, ApiKey::Produce, 13, &by_id(uuid)).await;
        assert_eq!((response.responses[0].topic_id, codes(&response)), (uuid, vec![(0, 0)]));
        let response: ProduceResponse = round_trip(&broker, ApiKey::Produce, 13, &by_id(Uuid::from_u128(7))).await;
        assert_eq!(codes(&response), vec![(ResponseError::UnknownTopicId.code(), -1)]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_connections_requests_reach_the_writer_in_request_order() {
        use crate::broker::in_order::Chain;
        use crate::broker::testing::decode_response;
        let broker = broker_with_writer(1);
        // The first request takes far longer to decode than the second.
        let big: Vec<Record> =
            (0..20_000).map(|i| Record { offset_delta: i, ..record(b"0123456789012345678901234567890123456789") }).collect();
        let requests = [encode_batch(0, &big), encode_batch(0, &[record(b"small")])]
            .map(|batch| request_frame(ApiKey::Produce, 9, &produce(-1, vec![(0, batch)])));
        let mut chain = Chain::default();
        let tasks: Vec<_> = requests
            .into_iter()
            .map(|request| {
                let (broker, link) = (broker.clone(), chain.next_link());
                tokio::spawn(async move { broker.handle_in_order(request, link, crate::broker::session::Session::loopback()).await })
            })
            .collect();
        let mut base_offsets = Vec::new();
        for task in tasks {
            let response: ProduceResponse = decode_response(task.await.unwrap(), ApiKey::Produce, 9);
            base_offsets.push(codes(&response)[0]);
        }
        assert_eq!(base_offsets, vec![(0, 0), (0, 20_000)]);
    }

    /// A gzip batch of one record whose value is `size` zeros: tiny on the wire.
    fn gzip_bomb(size: usize) -> Bytes {
        let plain = encode_batch(0, &[Record { value: Some(Bytes::from(vec![0u8; size])), ..record(b"") }]);
        let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        std::io::Write::write_all(&mut gzip, &plain[crate::protocol::records::BATCH_HEADER_BYTES..]).unwrap();
        crate::protocol::records::batch_with_body(1, 1, &gzip.finish().unwrap())
    }

    /// The decompression cap is per request: eight batches that each inflate to 600 KB
    /// used to be accepted one by one (4.8 MB from a few KB; eight zstd batches of 90 MB
    /// took 2.5 GB). With a 1 MiB cap the first fits and the rest are refused.
    #[tokio::test]
    async fn decompression_is_capped_per_request_not_per_partition() {
        let broker = crate::broker::testing::broker_with_config(crate::config::Config { max_frame_bytes: 1 << 20, ..Default::default() });
        with_storage(&broker, |s| s.create_topic("t", 8)).await.unwrap();
        let bomb = gzip_bomb(600_000);
        assert!(bomb.len() < 4096, "{} bytes on the wire", bomb.len());
        let response: ProduceResponse =
            round_trip(&broker, ApiKey::Produce, 9, &produce(1, (0..8).map(|p| (p, bomb.clone())).collect())).await;
        let too_large = ResponseError::MessageTooLarge.code();
        let codes: Vec<i16> = codes(&response).into_iter().map(|(code, _)| code).collect();
        assert_eq!(codes, [vec![0], vec![too_large; 7]].concat());
        // Nothing is held once the request was answered.
        assert_eq!(broker.inflated.available_permits(), broker.config().max_inflight_bytes);
    }

    #[tokio::test]
    async fn a_corrupt_partition_fails_alone() {
        let broker = broker_with_writer(2);
        let mut corrupt = encode_batch(0, &[record(b"x")]).to_vec();
        *corrupt.last_mut().unwrap() ^= 0xff;
        let good = encode_batch(0, &[record(b"y")]);
        let response: ProduceResponse = round_trip(&broker, ApiKey::Produce, 9, &produce(1, vec![(0, corrupt.into()), (1, good)])).await;
        assert_eq!(codes(&response), vec![(ResponseError::CorruptMessage.code(), -1), (0, 0)]);
    }

    #[tokio::test]
    async fn the_internal_offsets_topic_is_never_written() {
        let broker = broker_with_writer(1);
        let mut body = produce(1, vec![(0, encode_batch(0, &[record(b"z")]))]);
        body.topic_data[0].name = TopicName(StrBytes::from_static_str("__consumer_offsets"));
        let response: ProduceResponse = round_trip(&broker, ApiKey::Produce, 9, &body).await;
        assert_eq!(codes(&response), vec![(ResponseError::InvalidTopicException.code(), -1)]);
    }

    #[tokio::test]
    async fn unknown_partitions_and_bad_acks_get_their_codes() {
        let broker = broker_with_writer(1);
        let batch = encode_batch(0, &[record(b"z")]);
        let response: ProduceResponse = round_trip(&broker, ApiKey::Produce, 7, &produce(1, vec![(5, batch.clone())])).await;
        assert_eq!(codes(&response), vec![(ResponseError::UnknownTopicOrPartition.code(), -1)]);
        let response: ProduceResponse = round_trip(&broker, ApiKey::Produce, 7, &produce(2, vec![(0, batch)])).await;
        assert_eq!(codes(&response), vec![(ResponseError::InvalidRequiredAcks.code(), -1)]);
    }

    #[tokio::test]
    async fn acks_zero_gets_no_response_but_is_written() {
        let broker = broker_with_writer(1);
        let frame = request_frame(ApiKey::Produce, 8, &produce(0, vec![(0, encode_batch(0, &[record(b"q")]))]));
        assert!(matches!(broker.handle(frame).await, Outcome::Silent));
        let batch = encode_batch(0, &[record(b"r")]);
        let response: ProduceResponse = round_trip(&broker, ApiKey::Produce, 8, &produce(1, vec![(0, batch)])).await;
        assert_eq!(codes(&response), vec![(0, 1)], "the acks=0 record took offset 0");
    }

    #[tokio::test]
    async fn old_versions_are_answered_unsupported_version_not_closed() {
        let broker = broker_with_writer(1);
        // Produce v3 with no transactional id and no topics reads as v2's acks, timeout, topics.
        let frame = request_frame(ApiKey::Produce, 3, &produce(1, vec![]));
        let mut body = frame.body.to_vec();
        body.drain(..2);
        let old = RequestFrame { header: frame.header.clone().with_request_api_version(2), body: body.into(), ..frame };
        let Outcome::Respond(answer) = broker.handle(old).await else { panic!("no answer") };
        // size, correlation id, topic "t" with no partitions, throttle
        assert_eq!(answer.len(), 4 + 4 + (4 + 3 + 4) + 4);
    }
}

#[cfg(test)]
mod idempotence_tests {
    use super::*;
    use crate::broker::testing::{broker_with_writer, produce_to_partition_0 as send, with_storage};
    use crate::protocol::records::{encode_batch, encode_producer_batch};

    fn records(n: usize) -> Vec<Record> {
        (0..n)
            .map(|i| Record {
                offset_delta: i as i32,
                timestamp: 1_700_000_000_000,
                key: None,
                value: Some(Bytes::from_static(b"v")),
                headers: None,
            })
            .collect()
    }

    #[tokio::test]
    async fn duplicates_gaps_and_stale_epochs_get_kafkas_answers_in_both_layouts() {
        for layout in [crate::storage::StorageLayout::Rows, crate::storage::StorageLayout::Batches] {
            duplicates_gaps_and_stale_epochs_get_kafkas_answers(crate::broker::testing::broker_in_layout(1, layout)).await;
        }
    }

    async fn duplicates_gaps_and_stale_epochs_get_kafkas_answers(broker: Broker) {
        let batch = |epoch: i16, sequence: i32, n: usize| encode_producer_batch(0, &records(n), 5, epoch, sequence);
        assert_eq!(send(&broker, batch(0, 0, 2)).await, (0, 0));
        assert_eq!(send(&broker, batch(0, 0, 2)).await, (0, 0), "a retry gets the original offset");
        assert_eq!(send(&broker, batch(0, 5, 1)).await, (ResponseError::OutOfOrderSequenceNumber.code(), -1));
        assert_eq!(send(&broker, batch(0, 2, 1)).await, (0, 2));
        assert_eq!(send(&broker, batch(1, 0, 1)).await, (0, 3), "a new epoch starts over");
        assert_eq!(send(&broker, batch(0, 3, 1)).await, (ResponseError::InvalidProducerEpoch.code(), -1));
        let stored = with_storage(&broker, |s| s.next_offset(1, 0)).await.unwrap();
        assert_eq!(stored, 4, "no duplicate rows");
    }

    #[tokio::test]
    async fn malformed_producer_fields_and_extra_batches_are_invalid_records() {
        let broker = broker_with_writer(1);
        let negative = encode_producer_batch(0, &records(1), 5, 0, -3);
        assert_eq!(send(&broker, negative).await, (ResponseError::InvalidRecord.code(), -1));
        let mut two = encode_batch(0, &records(1)).to_vec();
        two.extend_from_slice(&encode_batch(1, &records(1)));
        assert_eq!(send(&broker, two.into()).await, (ResponseError::InvalidRecord.code(), -1));
        assert_eq!(send(&broker, Bytes::new()).await, (ResponseError::InvalidRecord.code(), -1));
    }
}

#[cfg(test)]
mod topic_settings_tests {
    use super::*;
    use crate::broker::testing::{broker_in_layout, produce_to_partition_0 as send, with_storage};
    use crate::protocol::records::encode_batch;
    use crate::storage::{batches::unpack, ReadLimit, StoredRecord};

    fn at(timestamp: i64) -> Bytes {
        let record = Record { offset_delta: 0, timestamp, key: None, value: Some(Bytes::from_static(b"v")), headers: None };
        encode_batch(0, &[record])
    }

    async fn configured(layout: StorageLayout, configs: &[(&str, &str)]) -> Broker {
        let broker = broker_in_layout(1, layout);
        let configs: Vec<(String, String)> = configs.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect();
        with_storage(&broker, move |s| s.replace_topic_configs(1, &configs)).await.unwrap();
        broker
    }

    async fn stored(broker: &Broker, layout: StorageLayout) -> Vec<StoredRecord> {
        let limit = ReadLimit { from: 0, below: i64::MAX, max_bytes: 1 << 20, at_least_one: true };
        match layout {
            StorageLayout::Rows => with_storage(broker, move |s| s.read(1, 0, limit)).await.unwrap(),
            StorageLayout::Batches => {
                let batches = with_storage(broker, move |s| s.read_batches(1, 0, limit)).await.unwrap();
                batches.iter().flat_map(|b| unpack(b).unwrap()).collect()
            }
        }
    }

    #[tokio::test]
    async fn timestamps_beyond_the_topics_bounds_are_invalid_in_both_layouts() {
        for layout in [StorageLayout::Rows, StorageLayout::Batches] {
            let broker = configured(layout, &[("message.timestamp.before.max.ms", "60000")]).await;
            let now = now_ms();
            assert_eq!(send(&broker, at(now)).await, (0, 0));
            assert_eq!(send(&broker, at(-1)).await, (0, 1), "no timestamp is not checked");
            assert_eq!(send(&broker, at(now - 3_600_000)).await, (ResponseError::InvalidTimestamp.code(), -1), "{layout:?}");
            assert_eq!(send(&broker, at(now + 7_200_000)).await, (ResponseError::InvalidTimestamp.code(), -1), "Kafka 4: ≤ 1 h ahead");
            assert_eq!(stored(&broker, layout).await.len(), 2);
        }
    }

    #[tokio::test]
    async fn a_log_append_time_topic_keeps_the_brokers_time_in_both_layouts() {
        for layout in [StorageLayout::Rows, StorageLayout::Batches] {
            let broker = configured(layout, &[("message.timestamp.type", "LogAppendTime")]).await;
            let before = now_ms();
            let response = produce_v9(&broker, at(1_000)).await;
            let answer = &response.responses[0].partition_responses[0];
            assert_eq!((answer.error_code, answer.base_offset), (0, 0), "the producer's time is not checked");
            let records = stored(&broker, layout).await;
            assert!(records[0].timestamp_ms >= before && records[0].timestamp_ms <= now_ms(), "{layout:?}: {}", records[0].timestamp_ms);
            let answered = answer.log_append_time_ms;
            assert_eq!(answered, records[0].timestamp_ms, "{layout:?}: the producer is told the time given");
            if layout == StorageLayout::Batches {
                let batch = with_storage(&broker, |s| {
                    s.read_batches(1, 0, ReadLimit { from: 0, below: 9, max_bytes: 1 << 20, at_least_one: true })
                })
                .await
                .unwrap();
                let decoded = crate::protocol::records::decode_batches(batch[0].clone(), 1 << 20).unwrap();
                assert_ne!(decoded[0].attributes & crate::protocol::records::LOG_APPEND_TIME, 0, "the type bit is set");
            }
        }
    }

    #[tokio::test]
    async fn a_batch_topic_keeps_batches_in_its_compression_type() {
        use crate::protocol::records::{decode_batches, encode_batch_in, Compression};
        let plain = encode_batch(0, &[record(0, Some(b"k")), record(1, Some(b"k"))]);
        let gzipped = {
            let decoded = decode_batches(plain.clone(), 1 << 20).unwrap().remove(0);
            encode_batch_in(&decoded, &decoded.records, Compression::Gzip, -1).unwrap()
        };
        for (config, sent, kept) in [
            ("producer", gzipped.clone(), Compression::Gzip),
            ("zstd", plain.clone(), Compression::Zstd),
            ("lz4", gzipped.clone(), Compression::Lz4),
            ("uncompressed", gzipped, Compression::None),
        ] {
            let broker = configured(StorageLayout::Batches, &[("compression.type", config)]).await;
            assert_eq!(send(&broker, sent).await, (0, 0), "{config}");
            let limit = ReadLimit { from: 0, below: 9, max_bytes: 1 << 20, at_least_one: true };
            let stored = with_storage(&broker, move |s| s.read_batches(1, 0, limit)).await.unwrap();
            let batch = decode_batches(stored[0].clone(), 1 << 20).unwrap().remove(0);
            assert_eq!(batch.attributes & 0x07, kept as i16, "{config}");
            assert_eq!(batch.records.iter().map(|r| r.key.clone()).collect::<Vec<_>>(), vec![Some(Bytes::from_static(b"k")); 2]);
        }
    }

    fn record(i: i32, key: Option<&'static [u8]>) -> Record {
        Record {
            offset_delta: i,
            timestamp: now_ms(),
            key: key.map(Bytes::from_static),
            value: Some(Bytes::from_static(b"v")),
            headers: None,
        }
    }

    /// Produce v9 of one batch to partition 0 of "t", acks=all: the whole response.
    async fn produce_v9(broker: &Broker, batch: Bytes) -> ProduceResponse {
        use crate::broker::testing::round_trip;
        use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
        use kafka_protocol::messages::TopicName;
        let request = ProduceRequest::default().with_acks(-1).with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_static_str("t")))
            .with_partition_data(vec![PartitionProduceData::default().with_index(0).with_records(Some(batch))])]);
        round_trip(broker, kafka_protocol::messages::ApiKey::Produce, 9, &request).await
    }

    #[tokio::test]
    async fn a_compacted_topic_refuses_records_without_a_key_naming_them() {
        for layout in [StorageLayout::Rows, StorageLayout::Batches] {
            let broker = configured(layout, &[("cleanup.policy", "compact")]).await;
            let batch = encode_batch(0, &[record(0, Some(b"k")), record(1, None), record(2, Some(b"k")), record(3, None)]);
            let response = produce_v9(&broker, batch).await;
            let answer = &response.responses[0].partition_responses[0];
            assert_eq!(answer.error_code, ResponseError::InvalidRecord.code(), "{layout:?}");
            assert_eq!(answer.record_errors.iter().map(|e| e.batch_index).collect::<Vec<_>>(), vec![1, 3]);
            assert!(answer.error_message.as_ref().is_some_and(|m| m.contains("without key")));
            let keyed = encode_batch(0, &[record(0, Some(b"k"))]);
            assert_eq!(send(&broker, keyed).await, (0, 0), "keyed records are stored");
        }
    }
}
