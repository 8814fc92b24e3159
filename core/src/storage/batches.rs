//! The batch layout: one produced record batch is one row of `kafka.batches`, its bytes
//! stored as they arrived and sent back to consumers as they are.
//!
//! ```text
//!  Produce ─▶ records::decode (CRC, counts, capped decompression: Kafka's checks)
//!          ─▶ checked(): offsets deltas 0..n-1, one timestamp range, maxTimestamp set right
//!  writer  ─▶ placed(base offset): baseOffset and partitionLeaderEpoch set (outside the CRC)
//!          ─▶ COPY kafka.batches (topic, partition, base, last, count, max ts, producer, bytes)
//!  Fetch   ─▶ rows whose last offset ≥ the fetch offset, bytes verbatim, whole batches
//!  SQL     ─▶ kafka.batch_records(batch) = unpack(): the records as rows, offsets absolute
//! ```
//!
//! Why a batch per row: a row per message costs a heap tuple, an index entry, a decode on
//! produce and an encode on fetch for every message; a batch of 100-byte messages
//! amortizes all of it over hundreds of them. The row layout stays for topics people index
//! and query by column; a topic is one or the other for its whole life ([`StorageLayout`]).

use bytes::{Bytes, BytesMut};

use super::StoredRecord;
use crate::protocol::records::{
    decode_batches, encode_marker_batch, seal_crc, Batch, RecordsError, BATCH_HEADER_BYTES, CONTROL, CRC_START as ATTRIBUTES_AT,
    LAST_OFFSET_DELTA_AT, LOG_APPEND_TIME, MAX_TIMESTAMP_AT, PARTITION_LEADER_EPOCH_AT, PRODUCER_ID_AT, RECORD_COUNT_AT, TRANSACTIONAL,
};

/// How a topic's messages are stored; fixed when the topic is created.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum StorageLayout {
    /// A row of `kafka.messages` per message.
    #[default]
    Rows,
    /// A row of `kafka.batches` per produced record batch.
    Batches,
}

impl StorageLayout {
    /// The name in `kafka.topics.storage`, the topic config and the setting.
    pub fn as_str(self) -> &'static str {
        match self {
            StorageLayout::Rows => "rows",
            StorageLayout::Batches => "batches",
        }
    }

    pub fn parse(name: &str) -> Option<StorageLayout> {
        match name {
            "rows" => Some(StorageLayout::Rows),
            "batches" => Some(StorageLayout::Batches),
            _ => None,
        }
    }
}

/// The topic config that chooses a topic's layout at creation (CreateTopics).
pub const LAYOUT_CONFIG: &str = "pg_kafka.storage";

/// One row of `kafka.batches`: a record batch with its offsets assigned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BatchRow {
    pub topic_id: i32,
    pub partition: i32,
    pub base_offset: i64,
    pub record_count: i32,
    /// The largest record timestamp (ms), as the batch header now says.
    pub max_timestamp_ms: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    /// The whole batch, base offset set.
    pub bytes: Bytes,
}

impl BatchRow {
    /// The batch's last offset, as its header says (compaction may have left fewer
    /// records than the batch spans; the batch still ends where it ended).
    pub fn last_offset(&self) -> i64 {
        last_offset_of(&self.bytes)
    }
}

/// A stored batch's header field of `n` bytes at `at` (0 if the batch is shorter).
fn header_field(batch: &[u8], at: usize, n: usize) -> i64 {
    batch.get(at..at + n).map_or(0, |b| b.iter().fold(0i64, |v, byte| v << 8 | i64::from(*byte)))
}

/// A stored batch's base offset, from its header.
pub fn base_offset_of(batch: &[u8]) -> i64 {
    header_field(batch, 0, 8)
}

/// A stored batch's last offset: its base offset plus its header's last offset delta.
pub fn last_offset_of(batch: &[u8]) -> i64 {
    base_offset_of(batch) + i64::from(header_field(batch, LAST_OFFSET_DELTA_AT, 4) as i32)
}

/// A produced batch that passed the checks, ready to be given offsets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckedBatch {
    pub record_count: i32,
    pub max_timestamp_ms: i64,
    /// The records' smallest and largest timestamps (both must be storable).
    pub timestamps: (i64, i64),
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    /// Part of a transaction (its producer's records are held back from read_committed
    /// consumers until the transaction's marker).
    pub transactional: bool,
    /// A transaction's end marker (the coordinator's control batch): commit or abort.
    pub marker: Option<bool>,
    /// The batch as sent, its maxTimestamp corrected if the producer got it wrong.
    pub bytes: Bytes,
}

/// Why a batch cannot be stored as it is.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BatchError {
    #[error("a record batch without records")]
    Empty,
    #[error("record offset deltas are not 0..{0} in order")]
    OffsetDeltas(usize),
    #[error("a control batch: transaction markers are the coordinator's to write")]
    Control,
}

/// Kafka's log validator on a decoded batch (`raw` is its bytes): no control batch, at
/// least one record, offset deltas 0, 1, … matching lastOffsetDelta, and the header's
/// maxTimestamp equal to the records' largest (rewritten, with the CRC, where it is not,
/// as Kafka does).
pub fn checked(batch: &Batch, raw: Bytes) -> Result<CheckedBatch, BatchError> {
    if batch.is_control() {
        return Err(BatchError::Control);
    }
    let count = batch.records.len();
    if count == 0 {
        return Err(BatchError::Empty);
    }
    let in_order = batch.records.iter().enumerate().all(|(i, r)| r.offset_delta as i64 == i as i64);
    if !in_order || batch.last_offset_delta as i64 != count as i64 - 1 {
        return Err(BatchError::OffsetDeltas(count));
    }
    let min = batch.records.iter().map(|r| r.timestamp).min().unwrap_or(-1);
    let max = batch.records.iter().map(|r| r.timestamp).max().unwrap_or(-1);
    // With LogAppendTime every record's timestamp is the header's maxTimestamp already.
    let log_append_time = batch.attributes & LOG_APPEND_TIME != 0;
    let bytes = if batch.max_timestamp == max || log_append_time { raw } else { with_max_timestamp(&raw, max) };
    Ok(CheckedBatch {
        record_count: count as i32,
        max_timestamp_ms: if log_append_time { batch.max_timestamp } else { max },
        timestamps: (min, max),
        producer_id: batch.producer_id,
        producer_epoch: batch.producer_epoch,
        base_sequence: batch.base_sequence,
        transactional: batch.is_transactional(),
        marker: None,
        bytes,
    })
}

/// A transaction's end marker for one partition, as the writer places it.
pub fn marker(producer_id: i64, epoch: i16, commit: bool, now_ms: i64) -> CheckedBatch {
    CheckedBatch {
        record_count: 1,
        max_timestamp_ms: now_ms,
        timestamps: (now_ms, now_ms),
        producer_id,
        producer_epoch: epoch,
        base_sequence: -1,
        transactional: true,
        marker: Some(commit),
        bytes: encode_marker_batch(0, producer_id, epoch, commit, now_ms),
    }
}

fn with_max_timestamp(raw: &Bytes, max: i64) -> Bytes {
    let mut bytes = BytesMut::from(&raw[..]);
    bytes[MAX_TIMESTAMP_AT..MAX_TIMESTAMP_AT + 8].copy_from_slice(&max.to_be_bytes());
    seal_crc(&mut bytes);
    bytes.freeze()
}

impl CheckedBatch {
    /// The batch as a `LogAppendTime` topic keeps it: the timestamp type bit set and
    /// maxTimestamp the append time (every record then reads as that time, as in Kafka),
    /// its CRC refreshed.
    pub fn appended_at(mut self, now_ms: i64) -> CheckedBatch {
        let mut bytes = BytesMut::from(&self.bytes[..]);
        let attributes = i16::from_be_bytes([bytes[ATTRIBUTES_AT], bytes[ATTRIBUTES_AT + 1]]) | LOG_APPEND_TIME;
        bytes[ATTRIBUTES_AT..ATTRIBUTES_AT + 2].copy_from_slice(&attributes.to_be_bytes());
        bytes[MAX_TIMESTAMP_AT..MAX_TIMESTAMP_AT + 8].copy_from_slice(&now_ms.to_be_bytes());
        seal_crc(&mut bytes);
        self.bytes = bytes.freeze();
        self.max_timestamp_ms = now_ms;
        self.timestamps = (now_ms, now_ms);
        self
    }

    /// The batch placed at `base_offset` of a partition: baseOffset set, and the
    /// partition leader epoch set to -1, the epoch Metadata reports (neither is covered by
    /// the CRC, so it stays as the producer computed it).
    pub fn placed(&self, topic_id: i32, partition: i32, base_offset: i64) -> BatchRow {
        let mut bytes = BytesMut::from(&self.bytes[..]);
        bytes[..8].copy_from_slice(&base_offset.to_be_bytes());
        bytes[PARTITION_LEADER_EPOCH_AT..PARTITION_LEADER_EPOCH_AT + 4].copy_from_slice(&(-1i32).to_be_bytes());
        BatchRow {
            topic_id,
            partition,
            base_offset,
            record_count: self.record_count,
            max_timestamp_ms: self.max_timestamp_ms,
            producer_id: self.producer_id,
            producer_epoch: self.producer_epoch,
            base_sequence: self.base_sequence,
            bytes: bytes.freeze(),
        }
    }
}

/// The producer of a stored transactional batch of records (not a marker), from its header.
pub fn transactional_producer_of(batch: &[u8]) -> Option<i64> {
    let attributes = i16::from_be_bytes(batch.get(ATTRIBUTES_AT..ATTRIBUTES_AT + 2)?.try_into().ok()?);
    let producer_id = i64::from_be_bytes(batch.get(PRODUCER_ID_AT..PRODUCER_ID_AT + 8)?.try_into().ok()?);
    (attributes & TRANSACTIONAL != 0 && attributes & CONTROL == 0).then_some(producer_id)
}

/// The number of records a stored batch holds, from its header (0 if it has none).
pub fn record_count(batch: &[u8]) -> usize {
    batch.get(RECORD_COUNT_AT..RECORD_COUNT_AT + 4).map_or(0, |b| i32::from_be_bytes(b.try_into().unwrap()).max(0) as usize)
}

/// The largest a stored batch may inflate to when SQL or ListOffsets unpacks it. Produce
/// lets a request inflate to `pg_kafka.max_frame_bytes` (100 MB by default); this bounds
/// what any bytes a SQL caller hands `kafka.batch_records()` can make a backend allocate.
pub const MAX_UNPACKED_BYTES: usize = 128 << 20;

/// The records of stored batch bytes, at their absolute offsets (what `kafka.batch_records`
/// returns and what the row layout would have stored for them). Control batches
/// (transaction markers) hold no records of the topic's: they are left out.
pub fn unpack(bytes: &[u8]) -> Result<Vec<StoredRecord>, RecordsError> {
    if bytes.len() < BATCH_HEADER_BYTES {
        return Err(RecordsError::Corrupt("batch shorter than its header"));
    }
    let batches = decode_batches(Bytes::copy_from_slice(bytes), MAX_UNPACKED_BYTES)?;
    Ok(batches
        .into_iter()
        .filter(|batch| !batch.is_control())
        .flat_map(|batch| {
            let base = batch.base_offset;
            batch.records.into_iter().map(move |r| StoredRecord {
                offset: base + i64::from(r.offset_delta),
                timestamp_ms: r.timestamp,
                key: r.key,
                value: r.value,
                headers: r.headers,
                txn: None,
            })
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::records::{encode_producer_batch, Record, CRC_AT};

    fn record(delta: i32, timestamp: i64, value: &'static [u8]) -> Record {
        Record { offset_delta: delta, timestamp, key: None, value: Some(Bytes::from_static(value)), headers: None }
    }

    fn decoded(bytes: &Bytes) -> Batch {
        decode_batches(bytes.clone(), 1 << 20).unwrap().remove(0)
    }

    #[test]
    fn a_placed_batch_keeps_its_bytes_and_crc_and_unpacks_at_its_offsets() {
        let raw = encode_producer_batch(0, &[record(0, 10, b"a"), record(1, 30, b"b"), record(2, 20, b"c")], 7, 1, 5);
        let checked = checked(&decoded(&raw), raw.clone()).unwrap();
        assert_eq!((checked.record_count, checked.max_timestamp_ms, checked.timestamps), (3, 30, (10, 30)));
        assert_eq!(checked.bytes, raw, "nothing to correct");
        let row = checked.placed(4, 1, 100);
        assert_eq!((row.base_offset, row.last_offset(), row.producer_id, row.base_sequence), (100, 102, 7, 5));
        assert_eq!(&row.bytes[8..12], &raw[8..12]);
        assert_eq!(&row.bytes[CRC_AT..], &raw[CRC_AT..], "the CRC-covered part is untouched");
        let records = unpack(&row.bytes).unwrap();
        assert_eq!(records.iter().map(|r| (r.offset, r.timestamp_ms)).collect::<Vec<_>>(), vec![(100, 10), (101, 30), (102, 20)]);
        assert_eq!(record_count(&row.bytes), 3);
    }

    #[test]
    fn a_wrong_max_timestamp_is_corrected_with_its_crc() {
        let raw = encode_producer_batch(0, &[record(0, 10, b"a"), record(1, 30, b"b")], -1, -1, -1);
        let mut lying = raw.to_vec();
        lying[MAX_TIMESTAMP_AT..MAX_TIMESTAMP_AT + 8].copy_from_slice(&5i64.to_be_bytes());
        seal_crc(&mut lying);
        let lying = Bytes::from(lying);
        let checked = checked(&decoded(&lying), lying).unwrap();
        assert_eq!(checked.bytes, raw);
        assert_eq!(decoded(&checked.bytes).max_timestamp, 30, "still a valid batch");
    }

    #[test]
    fn empty_batches_and_gapped_offsets_are_refused() {
        let empty = encode_producer_batch(0, &[], -1, -1, -1);
        assert_eq!(checked(&decoded(&empty), empty), Err(BatchError::Empty));
        let gapped = encode_producer_batch(0, &[record(0, 1, b"a"), record(2, 1, b"b")], -1, -1, -1);
        assert_eq!(checked(&decoded(&gapped), gapped), Err(BatchError::OffsetDeltas(2)));
    }

    #[test]
    fn control_batches_are_the_coordinators_and_unpack_to_no_records() {
        let control = crate::protocol::records::encode_marker_batch(4, 7, 0, true, 1);
        assert_eq!(checked(&decoded(&control), control.clone()), Err(BatchError::Control));
        let placed = marker(7, 0, true, 1).placed(1, 0, 4);
        assert_eq!((placed.record_count, placed.last_offset()), (1, 4));
        assert!(unpack(&placed.bytes).unwrap().is_empty(), "a marker holds no record of the topic's");
        let key = decoded(&placed.bytes).records[0].key.clone().unwrap();
        assert_eq!(crate::protocol::records::marker_commits(&key), Some(true));
    }

    #[test]
    fn layouts_have_one_name_each() {
        for layout in [StorageLayout::Rows, StorageLayout::Batches] {
            assert_eq!(StorageLayout::parse(layout.as_str()), Some(layout));
        }
        assert_eq!(StorageLayout::parse("Rows"), None);
    }
}
