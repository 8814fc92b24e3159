//! RecordBatch v2 (magic 2), the only record format Produce v3+ carries.
//!
//! Our own decoder rather than `kafka-protocol`'s: that one reserves `record_count` slots
//! read off the wire and decompresses without a limit. Here every count is checked against
//! the bytes present, decompression stops at a cap, and the CRC32C is verified first.
//!
//! ```text
//! baseOffset i64 | batchLength i32 | partitionLeaderEpoch i32 | magic i8 | crc u32
//! | attributes i16 | lastOffsetDelta i32 | baseTimestamp i64 | maxTimestamp i64
//! | producerId i64 | producerEpoch i16 | baseSequence i32 | recordCount i32 | records…
//! record: length varint | attributes i8 | timestampDelta varlong | offsetDelta varint
//!         | key (varint len, -1 null) | value (same) | headers (varint count, key/value pairs)
//! ```
//! The CRC covers everything from `attributes` to the end of the batch.

use std::io::Read;

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// Bytes before the records: the fixed batch header.
pub const BATCH_HEADER_BYTES: usize = 61;
/// Where header fields sit in a batch (byte offsets).
pub const PARTITION_LEADER_EPOCH_AT: usize = 12;
pub const CRC_AT: usize = 17;
/// Offset of `attributes`, where the CRC-covered part starts.
pub const CRC_START: usize = 21;
pub const MAX_TIMESTAMP_AT: usize = 35;
pub const LAST_OFFSET_DELTA_AT: usize = 23;
pub const PRODUCER_ID_AT: usize = 43;
pub const RECORD_COUNT_AT: usize = 57;
/// Attribute bit: the batch's timestamps are the broker's append time.
pub const LOG_APPEND_TIME: i16 = 0x08;
/// `baseOffset` and `batchLength` are not counted in `batchLength`.
const LOG_OVERHEAD: usize = 12;
/// The smallest possible record: length, attributes, three varints, null key, null value, 0 headers.
const MIN_RECORD_BYTES: usize = 7;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RecordsError {
    #[error("CRC mismatch: batch says {expected:#010x}, bytes give {actual:#010x}")]
    CrcMismatch { expected: u32, actual: u32 },
    #[error("unsupported record batch magic {0} (only v2 is accepted)")]
    UnsupportedMagic(i8),
    #[error("corrupt record batch: {0}")]
    Corrupt(&'static str),
    #[error("unknown compression codec {0}")]
    UnknownCodec(i16),
    #[error("records decompress to more than {0} bytes")]
    TooLarge(usize),
    #[error("decompression failed: {0}")]
    Decompress(String),
    #[error("compression failed: {0}")]
    Compress(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    None = 0,
    Gzip = 1,
    Snappy = 2,
    Lz4 = 3,
    Zstd = 4,
}

impl Compression {
    /// The codec of a batch's attributes (their low three bits).
    pub fn from_attributes(attributes: i16) -> Result<Compression, RecordsError> {
        Ok(match attributes & 0x07 {
            0 => Compression::None,
            1 => Compression::Gzip,
            2 => Compression::Snappy,
            3 => Compression::Lz4,
            4 => Compression::Zstd,
            other => return Err(RecordsError::UnknownCodec(other)),
        })
    }
}

/// One record, with the batch's base values applied. Bytes are slices of the request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub offset_delta: i32,
    /// Milliseconds since the epoch (CreateTime, or LogAppendTime if the batch says so).
    pub timestamp: i64,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    /// The record's headers exactly as encoded (count then pairs); `None` when there are none.
    pub headers: Option<Bytes>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Batch {
    pub base_offset: i64,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub records: Vec<Record>,
}

impl Batch {
    pub fn is_transactional(&self) -> bool {
        self.attributes & TRANSACTIONAL != 0
    }
    pub fn is_control(&self) -> bool {
        self.attributes & CONTROL != 0
    }
}

/// Where decompressed bytes are accounted for. Decompression reports its output in steps
/// of at most [`INFLATE_STEP`] (a snappy block: its whole declared length, before the
/// output is allocated); an error stops it.
pub trait InflateBudget {
    fn take(&mut self, bytes: usize) -> Result<(), RecordsError>;
}

/// Output decompression produces between two reports to the budget.
pub const INFLATE_STEP: usize = 256 * 1024;

/// A plain cap on decompressed bytes.
pub struct InflateCap {
    cap: usize,
    left: usize,
}

impl InflateCap {
    pub fn new(cap: usize) -> InflateCap {
        InflateCap { cap, left: cap }
    }

    /// What is still allowed.
    pub fn left(&self) -> usize {
        self.left
    }
}

impl InflateBudget for InflateCap {
    fn take(&mut self, bytes: usize) -> Result<(), RecordsError> {
        self.left = self.left.checked_sub(bytes).ok_or(RecordsError::TooLarge(self.cap))?;
        Ok(())
    }
}

/// Decodes every batch in a Produce partition's `records` field; all of its compressed
/// batches together may inflate to at most `max_decompressed` bytes.
pub fn decode_batches(data: Bytes, max_decompressed: usize) -> Result<Vec<Batch>, RecordsError> {
    decode_batches_within(data, &mut InflateCap::new(max_decompressed))
}

/// Decodes every batch in a Produce partition's `records` field, accounting every
/// decompressed byte to `budget` (shared by a whole request, say).
pub fn decode_batches_within(mut data: Bytes, budget: &mut dyn InflateBudget) -> Result<Vec<Batch>, RecordsError> {
    let mut batches = Vec::new();
    while data.has_remaining() {
        if data.len() < BATCH_HEADER_BYTES {
            return Err(RecordsError::Corrupt("batch shorter than its header"));
        }
        let total = whole_batch_size(&data).ok_or(RecordsError::Corrupt("batch length does not match the bytes present"))?;
        batches.push(decode_batch(data.split_to(total), budget)?);
    }
    Ok(batches)
}

/// Whether every batch in a `records` field is whole and uncompressed, from the batch
/// headers alone (lengths checked as [`decode_batches_within`] checks them): decoding such
/// bytes costs time in proportion to their length and inflates nothing. `false` for
/// anything else, malformed bytes included.
pub fn is_plain(mut data: &[u8]) -> bool {
    while !data.is_empty() {
        if data.len() < BATCH_HEADER_BYTES {
            return false;
        }
        let attributes = i16::from_be_bytes(data[CRC_START..CRC_START + 2].try_into().unwrap());
        match whole_batch_size(data) {
            Some(total) if attributes & 0x07 == 0 => data = &data[total..],
            _ => return false,
        }
    }
    true
}

/// The size of the batch `data` starts with, header and length field included, when its
/// header is there and its length names a whole batch within `data`; `None` otherwise.
pub fn whole_batch_size(data: &[u8]) -> Option<usize> {
    let length = i32::from_be_bytes(data.get(8..12)?.try_into().ok()?);
    let total = usize::try_from(length).ok()?.checked_add(LOG_OVERHEAD)?;
    (BATCH_HEADER_BYTES..=data.len()).contains(&total).then_some(total)
}

fn decode_batch(mut batch: Bytes, budget: &mut dyn InflateBudget) -> Result<Batch, RecordsError> {
    let magic = batch[16] as i8;
    if magic != 2 {
        return Err(RecordsError::UnsupportedMagic(magic));
    }
    let expected = u32::from_be_bytes(batch[CRC_AT..CRC_START].try_into().unwrap());
    let actual = crc32c::crc32c(&batch[CRC_START..]);
    if expected != actual {
        return Err(RecordsError::CrcMismatch { expected, actual });
    }
    let base_offset = batch.get_i64();
    batch.advance(4 + 4 + 1 + 4); // batchLength, partitionLeaderEpoch, magic, crc
    let attributes = batch.get_i16();
    let last_offset_delta = batch.get_i32();
    let base_timestamp = batch.get_i64();
    let max_timestamp = batch.get_i64();
    let producer_id = batch.get_i64();
    let producer_epoch = batch.get_i16();
    let base_sequence = batch.get_i32();
    let record_count = batch.get_i32();
    let record_count = usize::try_from(record_count).map_err(|_| RecordsError::Corrupt("negative record count"))?;
    let log_append_time = attributes & LOG_APPEND_TIME != 0;

    let body = decompress(Compression::from_attributes(attributes)?, batch, budget)?;
    if record_count > body.len() / MIN_RECORD_BYTES {
        return Err(RecordsError::Corrupt("record count exceeds the bytes present"));
    }
    let mut records = Vec::with_capacity(record_count);
    let mut cursor = body;
    for _ in 0..record_count {
        let mut record = read_record(&mut cursor, base_timestamp)?;
        if log_append_time {
            record.timestamp = max_timestamp;
        }
        records.push(record);
    }
    if cursor.has_remaining() {
        return Err(RecordsError::Corrupt("bytes left after the last record"));
    }
    Ok(Batch {
        base_offset,
        attributes,
        last_offset_delta,
        base_timestamp,
        max_timestamp,
        producer_id,
        producer_epoch,
        base_sequence,
        records,
    })
}

fn read_record(cursor: &mut Bytes, base_timestamp: i64) -> Result<Record, RecordsError> {
    let length = usize::try_from(read_varlong(cursor)?).map_err(|_| RecordsError::Corrupt("negative record length"))?;
    if length > cursor.len() {
        return Err(RecordsError::Corrupt("record longer than the batch"));
    }
    let mut record = cursor.split_to(length);
    need(&record, 1)?;
    record.advance(1); // attributes: unused in v2
    let timestamp_delta = read_varlong(&mut record)?;
    let offset_delta = i32::try_from(read_varlong(&mut record)?).map_err(|_| RecordsError::Corrupt("offset delta"))?;
    let key = read_nullable_bytes(&mut record)?;
    let value = read_nullable_bytes(&mut record)?;
    let headers = read_headers(&mut record)?;
    if record.has_remaining() {
        return Err(RecordsError::Corrupt("bytes left inside a record"));
    }
    Ok(Record { offset_delta, timestamp: base_timestamp.wrapping_add(timestamp_delta), key, value, headers })
}

/// Checks the header section's structure and returns it as encoded (None when empty).
fn read_headers(record: &mut Bytes) -> Result<Option<Bytes>, RecordsError> {
    let start = record.clone();
    let count = read_varlong(record)?;
    if count < 0 || count as usize > record.len() / 2 {
        return Err(RecordsError::Corrupt("header count"));
    }
    for _ in 0..count {
        read_nullable_bytes(record)?.ok_or(RecordsError::Corrupt("null header key"))?;
        read_nullable_bytes(record)?;
    }
    let used = start.len() - record.len();
    Ok((count > 0).then(|| start.slice(..used)))
}

/// One record header: a key and a value that may be null.
pub type Header = (Bytes, Option<Bytes>);

/// Stored headers (as [`Record::headers`] keeps them: count, then key/value pairs) as pairs,
/// in order. Refuses anything that is not exactly one well-formed header section.
pub fn decode_headers(encoded: &[u8]) -> Result<Vec<Header>, RecordsError> {
    let mut buf = Bytes::copy_from_slice(encoded);
    let section = read_headers(&mut buf)?;
    if buf.has_remaining() {
        return Err(RecordsError::Corrupt("bytes after the headers"));
    }
    let Some(mut section) = section else { return Ok(Vec::new()) };
    let count = read_varlong(&mut section)?;
    (0..count)
        .map(|_| {
            let key = read_nullable_bytes(&mut section)?.ok_or(RecordsError::Corrupt("null header key"))?;
            Ok((key, read_nullable_bytes(&mut section)?))
        })
        .collect()
}

/// Headers in the encoding [`Record::headers`] keeps; `None` when there are none (how
/// `kafka.messages.headers` stores "no headers").
pub fn encode_headers(headers: &[Header]) -> Option<Bytes> {
    if headers.is_empty() {
        return None;
    }
    let mut out = BytesMut::new();
    write_varlong(&mut out, headers.len() as i64);
    for (key, value) in headers {
        write_varlong(&mut out, key.len() as i64);
        out.put_slice(key);
        match value {
            Some(value) => {
                write_varlong(&mut out, value.len() as i64);
                out.put_slice(value);
            }
            None => write_varlong(&mut out, -1),
        }
    }
    Some(out.freeze())
}

fn need(buf: &Bytes, n: usize) -> Result<(), RecordsError> {
    if buf.len() < n {
        Err(RecordsError::Corrupt("record truncated"))
    } else {
        Ok(())
    }
}

fn read_nullable_bytes(buf: &mut Bytes) -> Result<Option<Bytes>, RecordsError> {
    match read_varlong(buf)? {
        -1 => Ok(None),
        n if n >= 0 && (n as usize) <= buf.len() => Ok(Some(buf.split_to(n as usize))),
        _ => Err(RecordsError::Corrupt("field length")),
    }
}

/// A zig-zag varint of up to 10 bytes.
fn read_varlong(buf: &mut Bytes) -> Result<i64, RecordsError> {
    let mut raw: u64 = 0;
    for shift in (0..70).step_by(7) {
        need(buf, 1)?;
        let byte = buf.get_u8();
        raw |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(((raw >> 1) as i64) ^ -((raw & 1) as i64));
        }
    }
    Err(RecordsError::Corrupt("varint too long"))
}

fn write_varlong(out: &mut BytesMut, value: i64) {
    let mut raw = ((value << 1) ^ (value >> 63)) as u64;
    while raw >= 0x80 {
        out.put_u8((raw as u8) | 0x80);
        raw >>= 7;
    }
    out.put_u8(raw as u8);
}

/// Inflates `data`, accounting its output to `budget` as it is produced.
fn decompress(codec: Compression, data: Bytes, budget: &mut dyn InflateBudget) -> Result<Bytes, RecordsError> {
    let reader: Box<dyn Read + '_> = match codec {
        Compression::None => return Ok(data),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(&data[..])),
        Compression::Snappy => return snappy_decompress(&data, budget),
        Compression::Lz4 => Box::new(lz4_flex::frame::FrameDecoder::new(&data[..])),
        Compression::Zstd => Box::new(zstd_decoder(&data)?),
    };
    read_within(reader, budget)
}

/// Largest zstd window a batch may declare (2^23 = 8 MiB, what Kafka clients' encoders use
/// at most). The decoder allocates the window a frame declares; zstd's own limit is 128 MiB,
/// which a 20-byte frame could claim.
const ZSTD_MAX_WINDOW_LOG: u32 = 23;

fn zstd_decoder(data: &[u8]) -> Result<impl Read + '_, RecordsError> {
    let mut decoder = zstd::stream::read::Decoder::with_buffer(data).map_err(|e| RecordsError::Decompress(e.to_string()))?;
    decoder.window_log_max(ZSTD_MAX_WINDOW_LOG).map_err(|e| RecordsError::Decompress(e.to_string()))?;
    Ok(decoder)
}

/// Reads a decompressor's output in steps, each reported to `budget` once read (so at
/// most one step is ever unaccounted for).
fn read_within(mut reader: impl Read, budget: &mut dyn InflateBudget) -> Result<Bytes, RecordsError> {
    let mut out = Vec::new();
    loop {
        let read = (&mut reader).take(INFLATE_STEP as u64).read_to_end(&mut out).map_err(|e| RecordsError::Decompress(e.to_string()))?;
        if read == 0 {
            return Ok(Bytes::from(out));
        }
        budget.take(read)?;
    }
}

/// The most a snappy block can inflate per input byte (a 3-byte copy of 64 bytes is 21x),
/// rounded up.
const SNAPPY_MAX_EXPANSION: usize = 32;

/// Snappy as Kafka clients send it: either xerial's framing (the Java client: magic header,
/// then length-prefixed blocks) or one raw block (librdkafka).
fn snappy_decompress(data: &[u8], budget: &mut dyn InflateBudget) -> Result<Bytes, RecordsError> {
    const XERIAL_MAGIC: &[u8] = b"\x82SNAPPY\x00";
    let mut block = |block: &[u8], out: &mut Vec<u8>| -> Result<(), RecordsError> {
        let len = snap::raw::decompress_len(block).map_err(|e| RecordsError::Decompress(e.to_string()))?;
        // No snappy element yields more than 22 bytes per byte of input: a larger declared
        // length is a lie, refused before the output is zero-filled to that length.
        if len > block.len().saturating_mul(SNAPPY_MAX_EXPANSION) {
            return Err(RecordsError::Corrupt("snappy length exceeds what the block can inflate to"));
        }
        budget.take(len)?;
        let start = out.len();
        out.resize(start + len, 0);
        snap::raw::Decoder::new().decompress(block, &mut out[start..]).map_err(|e| RecordsError::Decompress(e.to_string()))?;
        Ok(())
    };
    let mut out = Vec::new();
    if data.len() >= 16 && data.starts_with(XERIAL_MAGIC) {
        let mut rest = &data[16..]; // magic, version, compatible version
        while !rest.is_empty() {
            if rest.len() < 4 {
                return Err(RecordsError::Corrupt("snappy chunk header"));
            }
            let len = u32::from_be_bytes(rest[..4].try_into().unwrap()) as usize;
            rest = &rest[4..];
            if len > rest.len() {
                return Err(RecordsError::Corrupt("snappy chunk length"));
            }
            block(&rest[..len], &mut out)?;
            rest = &rest[len..];
        }
    } else {
        block(data, &mut out)?;
    }
    Ok(Bytes::from(out))
}

/// Writes a whole batch's CRC32C (of everything from `attributes` on) into its header.
pub fn seal_crc(batch: &mut [u8]) {
    let crc = crc32c::crc32c(&batch[CRC_START..]);
    batch[CRC_AT..CRC_START].copy_from_slice(&crc.to_be_bytes());
}

/// Encodes records as one uncompressed v2 batch starting at `base_offset` (Fetch, tests).
pub fn encode_batch(base_offset: i64, records: &[Record]) -> Bytes {
    encode_producer_batch(base_offset, records, -1, -1, -1)
}

/// Like [`encode_batch`], from an idempotent producer: its id, epoch and the batch's
/// first sequence number.
pub fn encode_producer_batch(base_offset: i64, records: &[Record], producer_id: i64, epoch: i16, base_sequence: i32) -> Bytes {
    encode_with_attributes(base_offset, records, (producer_id, epoch, base_sequence), 0)
}

/// Records of a transaction as one uncompressed batch: transactional, and a control batch
/// when they are its end marker (what a row-layout partition's transactional rows are
/// fetched as, so that every client's aborted-record filter sees them as Kafka sends them).
pub fn encode_transactional_batch(base_offset: i64, records: &[Record], producer_id: i64, epoch: i16, control: bool) -> Bytes {
    let attributes = if control { TRANSACTIONAL | CONTROL } else { TRANSACTIONAL };
    encode_with_attributes(base_offset, records, (producer_id, epoch, -1), attributes)
}

fn encode_with_attributes(
    base_offset: i64,
    records: &[Record],
    (producer_id, epoch, base_sequence): (i64, i16, i32),
    attributes: i16,
) -> Bytes {
    let head = Head {
        base_offset,
        attributes,
        last_offset_delta: records.last().map_or(0, |r| r.offset_delta),
        base_timestamp: records.iter().map(|r| r.timestamp).min().unwrap_or(-1),
        max_timestamp: records.iter().map(|r| r.timestamp).max().unwrap_or(-1),
        producer_id,
        producer_epoch: epoch,
        base_sequence,
    };
    encode(&head, records)
}

/// The attributes bits of a transactional batch and of a control batch.
pub const TRANSACTIONAL: i16 = 0x10;
pub const CONTROL: i16 = 0x20;

/// A transaction's end marker on a partition: a control batch of one record (key: version
/// 0 and the type, 0 abort or 1 commit; value: version 0 and the coordinator epoch, 0
/// here), from the transaction's producer, at `base_offset`.
pub fn encode_marker_batch(base_offset: i64, producer_id: i64, epoch: i16, commit: bool, timestamp_ms: i64) -> Bytes {
    let record = marker_record(commit, timestamp_ms);
    let head = Head {
        base_offset,
        attributes: TRANSACTIONAL | CONTROL,
        last_offset_delta: 0,
        base_timestamp: timestamp_ms,
        max_timestamp: timestamp_ms,
        producer_id,
        producer_epoch: epoch,
        base_sequence: -1,
    };
    encode(&head, &[record])
}

/// The control record of a transaction's end marker (a row-layout partition stores it as
/// a row).
pub fn marker_record(commit: bool, timestamp_ms: i64) -> Record {
    let key = Bytes::copy_from_slice(&[0, 0, 0, u8::from(commit)]);
    let value = Bytes::from_static(&[0, 0, 0, 0, 0, 0]);
    Record { offset_delta: 0, timestamp: timestamp_ms, key: Some(key), value: Some(value), headers: None }
}

/// Whether a control record's key says commit (`Some(true)`), abort (`Some(false)`), or
/// is not a transaction marker (`None`).
pub fn marker_commits(key: &[u8]) -> Option<bool> {
    match key {
        [0, 0, 0, 0] => Some(false),
        [0, 0, 0, 1] => Some(true),
        _ => None,
    }
}

/// `original` with only `records` left (a subset of its own, offset deltas kept): what
/// compaction writes back. Offsets, the last offset delta, the producer's fields and the
/// timestamp type stay as they were (as Kafka's cleaner keeps them, so the batch still
/// ends where it ended and the producer's sequence stays known); the records are written
/// uncompressed, which every client reads.
pub fn encode_batch_like(original: &Batch, records: &[Record]) -> Bytes {
    let log_append_time = original.attributes & LOG_APPEND_TIME != 0;
    let timestamps = || records.iter().map(|r| r.timestamp);
    let head = Head {
        base_offset: original.base_offset,
        attributes: original.attributes & !0x07,
        last_offset_delta: original.last_offset_delta,
        base_timestamp: if log_append_time { original.base_timestamp } else { timestamps().min().unwrap_or(-1) },
        max_timestamp: if log_append_time { original.max_timestamp } else { timestamps().max().unwrap_or(-1) },
        producer_id: original.producer_id,
        producer_epoch: original.producer_epoch,
        base_sequence: original.base_sequence,
    };
    encode(&head, records)
}

/// A batch header's fields, before the length, CRC and count are known.
struct Head {
    base_offset: i64,
    attributes: i16,
    last_offset_delta: i32,
    base_timestamp: i64,
    max_timestamp: i64,
    producer_id: i64,
    producer_epoch: i16,
    base_sequence: i32,
}

/// Like [`encode_batch_like`], the records compressed with `codec` at `level` (what a
/// topic's `compression.type` asks for; [`Compression::None`] strips the producer's).
pub fn encode_batch_in(original: &Batch, records: &[Record], codec: Compression, level: i32) -> Result<Bytes, RecordsError> {
    compress_batch(encode_batch_like(original, records), codec, level)
}

/// An uncompressed batch with its records compressed by `codec` at `level`: the header
/// kept, its length, codec bits and CRC updated.
pub fn compress_batch(plain: Bytes, codec: Compression, level: i32) -> Result<Bytes, RecordsError> {
    if codec == Compression::None {
        return Ok(plain);
    }
    let body = super::compress::compress(codec, level, &plain[BATCH_HEADER_BYTES..])?;
    let mut out = BytesMut::with_capacity(BATCH_HEADER_BYTES + body.len());
    out.extend_from_slice(&plain[..BATCH_HEADER_BYTES]);
    out.extend_from_slice(&body);
    let length = (out.len() - LOG_OVERHEAD) as i32;
    out[8..12].copy_from_slice(&length.to_be_bytes());
    let attributes = i16::from_be_bytes([out[CRC_START], out[CRC_START + 1]]) | codec as i16;
    out[CRC_START..CRC_START + 2].copy_from_slice(&attributes.to_be_bytes());
    seal_crc(&mut out);
    Ok(out.freeze())
}

fn encode(head: &Head, records: &[Record]) -> Bytes {
    let base_timestamp = head.base_timestamp;
    let mut body = BytesMut::new();
    let mut record_bytes = BytesMut::new();
    for record in records {
        record_bytes.clear();
        record_bytes.put_i8(0);
        write_varlong(&mut record_bytes, record.timestamp - base_timestamp);
        write_varlong(&mut record_bytes, i64::from(record.offset_delta));
        for field in [&record.key, &record.value] {
            match field {
                Some(bytes) => {
                    write_varlong(&mut record_bytes, bytes.len() as i64);
                    record_bytes.put_slice(bytes);
                }
                None => write_varlong(&mut record_bytes, -1),
            }
        }
        match &record.headers {
            Some(headers) => record_bytes.put_slice(headers),
            None => write_varlong(&mut record_bytes, 0),
        }
        write_varlong(&mut body, record_bytes.len() as i64);
        body.put_slice(&record_bytes);
    }
    let mut out = BytesMut::with_capacity(BATCH_HEADER_BYTES + body.len());
    out.put_i64(head.base_offset);
    out.put_i32((BATCH_HEADER_BYTES - LOG_OVERHEAD + body.len()) as i32);
    out.put_i32(-1); // partition leader epoch
    out.put_i8(2);
    out.put_u32(0); // CRC, filled in below
    out.put_i16(head.attributes);
    out.put_i32(head.last_offset_delta);
    out.put_i64(base_timestamp);
    out.put_i64(head.max_timestamp);
    out.put_i64(head.producer_id);
    out.put_i16(head.producer_epoch);
    out.put_i32(head.base_sequence);
    out.put_i32(records.len() as i32);
    out.put_slice(&body);
    seal_crc(&mut out);
    out.freeze()
}

#[cfg(test)]
/// A batch of `count` records whose body is `body`, compressed with attribute `codec`.
pub(crate) fn batch_with_body(codec: i16, count: i32, body: &[u8]) -> Bytes {
    let mut bytes = encode_batch(0, &[]).to_vec();
    bytes[21..23].copy_from_slice(&codec.to_be_bytes());
    bytes[RECORD_COUNT_AT..RECORD_COUNT_AT + 4].copy_from_slice(&count.to_be_bytes());
    bytes.extend_from_slice(body);
    let length = (bytes.len() - 12) as i32;
    bytes[8..12].copy_from_slice(&length.to_be_bytes());
    seal_crc(&mut bytes);
    bytes.into()
}

/// A batch of `count` records written by an independent encoder (kafka-protocol's),
/// from idempotent producer `producer_id` at epoch 1, sequences from 0 (the encoder keeps
/// records in one batch only when their sequences follow each other).
#[cfg(test)]
pub(crate) fn foreign_batch(compression: kafka_protocol::records::Compression, count: i64, producer_id: i64) -> Bytes {
    use kafka_protocol::records::{Record as KpRecord, RecordBatchEncoder, RecordEncodeOptions, TimestampType};
    let records: Vec<KpRecord> = (0..count)
        .map(|i| KpRecord {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id,
            producer_epoch: 1,
            timestamp_type: TimestampType::Creation,
            offset: i,
            sequence: i as i32,
            timestamp: 1_700_000_000_000 + i,
            key: (i % 2 == 0).then(|| Bytes::from(format!("key-{i}"))),
            value: Some(Bytes::from(vec![i as u8; 100])),
            headers: [(kafka_protocol::protocol::StrBytes::from_static_str("h"), Some(Bytes::from_static(b"v")))].into_iter().collect(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(&mut buf, &records, &RecordEncodeOptions { version: 2, compression }).unwrap();
    buf.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::records::Compression as KpCompression;

    const CAP: usize = 1 << 20;

    fn foreign_batch(compression: KpCompression, count: i64) -> Bytes {
        super::foreign_batch(compression, count, 7)
    }

    #[test]
    fn only_whole_uncompressed_batches_are_plain() {
        let plain =
            encode_batch(0, &[Record { offset_delta: 0, timestamp: 1, key: None, value: Some(Bytes::from_static(b"v")), headers: None }]);
        assert!(is_plain(&plain));
        assert!(is_plain(&[plain.clone(), plain.clone()].concat()));
        assert!(is_plain(&[]));
        assert!(!is_plain(&plain[..plain.len() - 1]), "cut short");
        assert!(!is_plain(&foreign_batch(KpCompression::Gzip, 3)));
        assert!(!is_plain(&[plain.clone(), foreign_batch(KpCompression::Zstd, 3)].concat()));
        let mut negative = plain.to_vec();
        negative[8..12].copy_from_slice(&(-1i32).to_be_bytes());
        assert!(!is_plain(&negative));
    }

    #[test]
    fn decodes_every_codec_from_an_independent_encoder() {
        for codec in [KpCompression::None, KpCompression::Gzip, KpCompression::Snappy, KpCompression::Lz4, KpCompression::Zstd] {
            let batches = decode_batches(foreign_batch(codec, 50), CAP).unwrap();
            assert_eq!(batches.len(), 1, "{codec:?}");
            let batch = &batches[0];
            assert_eq!((batch.producer_id, batch.producer_epoch, batch.base_sequence), (7, 1, 0));
            assert_eq!(batch.records.len(), 50);
            let r = &batch.records[4];
            assert_eq!(r.key.as_deref(), Some(&b"key-4"[..]));
            assert_eq!(r.value.as_deref(), Some(&[4u8; 100][..]));
            assert_eq!(r.timestamp, 1_700_000_000_004);
            assert_eq!(r.headers.as_deref(), Some(&[2, 2, b'h', 2, b'v'][..]), "{codec:?}");
            assert_eq!(batch.records[5].key, None);
            crate::protocol::samples::write_seed("record_batch", &format!("{codec:?}"), &foreign_batch(codec, 5));
        }
    }

    #[test]
    fn round_trips_through_our_encoder() {
        let records = vec![
            Record { offset_delta: 0, timestamp: 5, key: None, value: Some(Bytes::from_static(b"a")), headers: None },
            Record {
                offset_delta: 1,
                timestamp: 9,
                key: Some(Bytes::from_static(b"k")),
                value: None,
                headers: Some(Bytes::from_static(&[2, 2, b'x', 0])),
            },
        ];
        let encoded = encode_batch(40, &records);
        let decoded = decode_batches(encoded, CAP).unwrap().remove(0);
        assert_eq!(decoded.base_offset, 40);
        assert_eq!(decoded.records, records);
    }

    #[test]
    fn a_flipped_bit_fails_the_crc() {
        let mut bytes = foreign_batch(KpCompression::None, 3).to_vec();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        assert!(matches!(decode_batches(Bytes::from(bytes), CAP), Err(RecordsError::CrcMismatch { .. })));
    }

    #[test]
    fn decompression_stops_at_the_cap() {
        let batch = foreign_batch(KpCompression::Gzip, 50);
        assert_eq!(decode_batches(batch, 1000), Err(RecordsError::TooLarge(1000)));
    }

    #[test]
    fn a_snappy_block_that_lies_about_its_length_is_refused_before_allocating() {
        // Varint 94,371,840 (90 MiB), then four bytes: no snappy block inflates that far.
        let lie = [0x80, 0x80, 0x80, 0x2d, 0, 1, 2, 3];
        let refused = decode_batches(batch_with_body(2, 1, &lie), 100 << 20);
        assert_eq!(refused, Err(RecordsError::Corrupt("snappy length exceeds what the block can inflate to")));
    }

    #[test]
    fn a_zstd_frame_wanting_a_window_over_8_mib_is_refused() {
        let mut encoder = zstd::stream::Encoder::new(Vec::new(), 1).unwrap();
        encoder.window_log(24).unwrap();
        encoder.include_contentsize(false).unwrap();
        std::io::Write::write_all(&mut encoder, &vec![7u8; 9 << 20]).unwrap();
        let frame = encoder.finish().unwrap();
        let refused = decode_batches(batch_with_body(4, 1, &frame), 100 << 20);
        assert!(matches!(refused, Err(RecordsError::Decompress(_))), "{refused:?}");
    }

    #[test]
    fn lying_counts_and_lengths_are_corrupt_not_allocations() {
        let mut bytes = encode_batch(0, &[]).to_vec();
        bytes[57..61].copy_from_slice(&i32::MAX.to_be_bytes()); // record count
        seal_crc(&mut bytes);
        assert!(matches!(decode_batches(Bytes::from(bytes.clone()), CAP), Err(RecordsError::Corrupt(_))));
        bytes[8..12].copy_from_slice(&i32::MAX.to_be_bytes()); // batch length
        assert!(matches!(decode_batches(Bytes::from(bytes), CAP), Err(RecordsError::Corrupt(_))));
    }

    #[test]
    fn every_truncation_is_an_error() {
        let batch = foreign_batch(KpCompression::None, 3);
        for cut in 1..batch.len() {
            assert!(decode_batches(batch.slice(..cut), CAP).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn old_magic_is_refused() {
        let mut bytes = encode_batch(0, &[]).to_vec();
        bytes[16] = 1;
        assert_eq!(decode_batches(Bytes::from(bytes), CAP), Err(RecordsError::UnsupportedMagic(1)));
    }
    #[test]
    fn headers_round_trip_and_refuse_garbage() {
        let headers: Vec<Header> = vec![
            (Bytes::from_static(b"trace"), Some(Bytes::from_static(b"\x00\xffid"))),
            (Bytes::from_static(b"empty"), None),
            (Bytes::from_static(b"trace"), Some(Bytes::new())),
        ];
        let encoded = encode_headers(&headers).unwrap();
        assert_eq!(decode_headers(&encoded).unwrap(), headers);
        assert_eq!(encode_headers(&[]), None);
        assert_eq!(decode_headers(&[0]).unwrap(), Vec::<Header>::new());
        for bad in [&b""[..], &[2, 2, b'h'], &[1, 1], &[0, 0], &[0x80; 11]] {
            assert!(decode_headers(bad).is_err(), "{bad:?}");
        }
        assert!(decode_headers(&[encoded.as_ref(), &[0]].concat()).is_err(), "trailing bytes");
    }
}
