//! One Fetch's reads as a value: which partitions, from where, within what budget. The
//! main thread runs a plan as a storage job; a reader process ([`super::readers`]) runs
//! the same plan in its own Postgres session, so the plan and its answer also travel
//! over the reader socket, in the little binary format below.
//!
//! A read's answer is what the Fetch response carries for the partition: record batches.
//! Batch-layout partitions give their stored batches as they are; row-layout partitions
//! give their rows encoded as one uncompressed batch (by whoever ran the plan: a reader
//! process spends its own core on it).
//!
//! Request (after the frame's kind byte, [`ReaderJob::KIND`]): `u32 reads` then per
//! read `i32 topic, i32 partition, i64 from, i64 below, u64 max_bytes, u8 layout`, then
//! `u64 response_bytes`. Answer: `u8 0` then `u32 reads` and per read `u32 records`,
//! `u32 length` and the batches' bytes; or `u8 1` and a UTF-8 error message.
//! Every length is checked against what is left before anything is allocated.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::batches::{last_offset_of, record_count};
use super::readers::ReaderJob;
use super::{offsets_topic, ReadLimit, Storage, StorageError, StorageLayout, StoredRecord};
use crate::protocol::records::{compress_batch, encode_batch, encode_transactional_batch, whole_batch_size, Compression, Record};

/// One partition's part of a Fetch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PartitionRead {
    pub topic_id: i32,
    pub partition: i32,
    pub from: i64,
    pub below: i64,
    /// The partition's own limit (the request's `partition_max_bytes`).
    pub max_bytes: usize,
    /// Where its messages are.
    pub layout: StorageLayout,
    /// The codec and level a row-layout partition's batch is sent in (its topic's
    /// `compression.type`); `None`: uncompressed. Batch-layout partitions are stored in it.
    pub codec: Option<(Compression, i32)>,
}

/// The reads of one Fetch, in request order, and the bytes its response may hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadPlan {
    pub reads: Vec<PartitionRead>,
    pub response_bytes: usize,
}

/// One partition's answer: its record batches, ready for the Fetch response.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PartitionAnswer {
    /// How many records the batches hold.
    pub records: usize,
    /// The batches, in offset order, as they were read: kept apart (not concatenated) so
    /// that an answer crossing the reader socket is copied once, into the socket's frame.
    pub batches: Vec<Bytes>,
}

impl PartitionAnswer {
    /// The batches' bytes together.
    pub fn len(&self) -> usize {
        self.batches.iter().map(Bytes::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.batches.iter().all(Bytes::is_empty)
    }

    /// The offset after the last whole batch's last offset: where a client reading on from
    /// this answer fetches next. `None` for an empty answer. Batches that travelled the
    /// reader socket come back to back in one `Bytes`: each is walked by its length.
    pub fn next_offset(&self) -> Option<i64> {
        let mut next = None;
        for mut rest in self.batches.iter().map(|b| &b[..]) {
            while let Some(size) = whole_batch_size(rest) {
                next = Some(last_offset_of(rest).saturating_add(1));
                rest = &rest[size..];
            }
        }
        next
    }

    /// The Fetch response's records field: the batches back to back.
    pub fn into_records(mut self) -> Bytes {
        match self.batches.len() {
            0 => Bytes::new(),
            1 => self.batches.pop().unwrap_or_default(),
            _ => {
                let mut out = BytesMut::with_capacity(self.len());
                self.batches.iter().for_each(|b| out.extend_from_slice(b));
                out.freeze()
            }
        }
    }
}

/// What a plan read: one entry per read, in order, until the response was full.
pub type ReadResult = Vec<PartitionAnswer>;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WireError {
    #[error("truncated: {0} more bytes expected")]
    Truncated(usize),
    #[error("{0} bytes left over")]
    Trailing(usize),
    #[error("a negative length ({0})")]
    NegativeLength(i32),
    #[error("unknown answer tag {0}")]
    UnknownTag(u8),
}

impl ReadPlan {
    /// Reads each partition in order, each within its own limit and what the response
    /// has left. A full response stops there: the other partitions wait for the next
    /// Fetch (as in Kafka), and a request naming a million partitions costs no more than
    /// one that fits. KIP-74: the response's first message comes whatever its size.
    pub fn run(&self, storage: &mut dyn Storage) -> Result<ReadResult, StorageError> {
        let mut left = self.response_bytes;
        let mut read = Vec::with_capacity(self.reads.len());
        for r in &self.reads {
            if left == 0 {
                break;
            }
            let limit =
                ReadLimit { from: r.from, below: r.below, max_bytes: r.max_bytes.min(left), at_least_one: left == self.response_bytes };
            let answer = match r.layout {
                _ if r.topic_id == offsets_topic::TOPIC_ID => rows_answer(offsets_topic::read(storage, limit)?, None),
                StorageLayout::Rows => rows_answer(storage.read(r.topic_id, r.partition, limit)?, r.codec),
                StorageLayout::Batches => batches_answer(storage.read_batches(r.topic_id, r.partition, limit)?),
            };
            left = left.saturating_sub(answer.len());
            read.push(answer);
        }
        Ok(read)
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(4 + self.reads.len() * 32 + 8);
        out.put_u32(self.reads.len() as u32);
        for r in &self.reads {
            out.put_i32(r.topic_id);
            out.put_i32(r.partition);
            out.put_i64(r.from);
            out.put_i64(r.below);
            out.put_u64(r.max_bytes as u64);
            out.put_u8(r.layout as u8);
            let (codec, level) = r.codec.map_or((NO_CODEC, 0), |(codec, level)| (codec as u8, level));
            out.put_u8(codec);
            out.put_i32(level);
        }
        out.put_u64(self.response_bytes as u64);
        out
    }

    pub fn decode(mut bytes: &[u8]) -> Result<ReadPlan, WireError> {
        let count = take(&mut bytes, 4)?.get_u32() as usize;
        let mut reads = Vec::with_capacity(count.min(bytes.len() / READ_BYTES));
        for _ in 0..count {
            let mut r = take(&mut bytes, READ_BYTES)?;
            let (topic_id, partition, from, below) = (r.get_i32(), r.get_i32(), r.get_i64(), r.get_i64());
            let max_bytes = saturating_usize(r.get_u64());
            let layout = match r.get_u8() {
                0 => StorageLayout::Rows,
                1 => StorageLayout::Batches,
                other => return Err(WireError::UnknownTag(other)),
            };
            let codec = match (r.get_u8(), r.get_i32()) {
                (NO_CODEC, _) => None,
                (codec, level) => Some((Compression::from_attributes(i16::from(codec)).map_err(|_| WireError::UnknownTag(codec))?, level)),
            };
            reads.push(PartitionRead { topic_id, partition, from, below, max_bytes, layout, codec });
        }
        let response_bytes = saturating_usize(take(&mut bytes, 8)?.get_u64());
        finished(bytes)?;
        Ok(ReadPlan { reads, response_bytes })
    }
}

/// A read on the wire: topic, partition, from, below, max bytes, layout, codec, level.
const READ_BYTES: usize = 4 + 4 + 8 + 8 + 8 + 1 + 1 + 4;
/// The codec byte of a read whose rows go uncompressed.
const NO_CODEC: u8 = u8::MAX;

/// Stored rows as batches, offsets kept as stored (gaps stay gaps), compressed with
/// `codec` when one is given; nothing when there are no rows. One batch per run of rows
/// of the same transaction (or of none): a transaction's records go as a transactional
/// batch of its producer, its marker as a control batch, as Kafka stores them.
fn rows_answer(records: Vec<StoredRecord>, codec: Option<(Compression, i32)>) -> PartitionAnswer {
    let count = records.len();
    let mut batches = Vec::new();
    let mut records = records.into_iter().peekable();
    while let Some(first) = records.next() {
        let (base_offset, txn) = (first.offset, first.txn);
        let mut run = vec![first];
        while let Some(next) = records.next_if(|r| r.txn == txn && !txn.is_some_and(|t| t.control)) {
            run.push(next);
        }
        let run: Vec<Record> = run
            .into_iter()
            .map(|r| Record {
                offset_delta: (r.offset - base_offset) as i32,
                timestamp: r.timestamp_ms,
                key: r.key,
                value: r.value,
                headers: r.headers,
            })
            .collect();
        batches.push(match txn {
            None => {
                let plain = encode_batch(base_offset, &run);
                // An encoder that fails (it does not on bytes it made) leaves the batch uncompressed.
                codec.and_then(|(codec, level)| compress_batch(plain.clone(), codec, level).ok()).unwrap_or(plain)
            }
            Some(t) => encode_transactional_batch(base_offset, &run, t.producer_id, t.producer_epoch, t.control),
        });
    }
    PartitionAnswer { records: count, batches }
}

/// Stored batches, as they were read.
fn batches_answer(batches: Vec<Bytes>) -> PartitionAnswer {
    PartitionAnswer { records: batches.iter().map(|b| record_count(b)).sum(), batches }
}

/// A plan's answer on the wire (its batches, or the error that stopped it), in pieces:
/// the framing, and the batches as they were read (not copied: a reader process writes
/// each piece to its socket as it is; the pieces back to back are the answer).
pub fn answer_parts(answer: &Result<ReadResult, StorageError>) -> Vec<Bytes> {
    let (mut parts, mut framing) = (Vec::new(), Vec::new());
    match answer {
        Ok(read) => {
            framing.put_u8(0);
            framing.put_u32(read.len() as u32);
            for answer in read {
                framing.put_u32(answer.records as u32);
                framing.put_u32(answer.len() as u32);
                if !answer.is_empty() {
                    parts.push(Bytes::from(std::mem::take(&mut framing)));
                    parts.extend(answer.batches.iter().filter(|b| !b.is_empty()).cloned());
                }
            }
        }
        Err(error) => put_error(&mut framing, error),
    }
    if !framing.is_empty() {
        parts.push(Bytes::from(framing));
    }
    parts
}

/// The failure branch of every answer on the reader socket: `u8 1` and the message.
pub fn put_error(out: &mut Vec<u8>, error: &StorageError) {
    out.put_u8(1);
    out.put_slice(error.to_string().as_bytes());
}

/// Reads an answer's tag: `Ok(rest)` after `u8 0`, the reader's error after `u8 1`.
pub fn split_answer(mut bytes: Bytes) -> Result<Result<Bytes, StorageError>, WireError> {
    match take_bytes(&mut bytes, 1)?.get_u8() {
        0 => Ok(Ok(bytes)),
        1 => {
            let message = String::from_utf8_lossy(&bytes).into_owned();
            Ok(Err(StorageError::Database { sqlstate: None, message: format!("in a reader process: {message}") }))
        }
        other => Err(WireError::UnknownTag(other)),
    }
}

/// The answer [`answer_parts`] wrote. Values are slices of `bytes` (no copies).
pub fn decode_answer(bytes: Bytes) -> Result<Result<ReadResult, StorageError>, WireError> {
    let mut rest = match split_answer(bytes)? {
        Ok(rest) => rest,
        Err(error) => return Ok(Err(error)),
    };
    let reads = take_bytes(&mut rest, 4)?.get_u32() as usize;
    // Each read takes at least 8 bytes: the capacity never exceeds what the bytes hold.
    let mut read = Vec::with_capacity(reads.min(rest.len() / 8));
    for _ in 0..reads {
        let mut head = take_bytes(&mut rest, 8)?;
        let (records, len) = (head.get_u32() as usize, head.get_u32() as usize);
        let batches = take_bytes(&mut rest, len)?;
        read.push(PartitionAnswer { records, batches: if batches.is_empty() { Vec::new() } else { vec![batches] } });
    }
    if !rest.is_empty() {
        return Err(WireError::Trailing(rest.len()));
    }
    Ok(Ok(read))
}

impl ReaderJob for ReadPlan {
    type Answer = ReadResult;
    const KIND: u8 = 0;

    fn encode(&self) -> Vec<u8> {
        ReadPlan::encode(self)
    }

    fn decode_answer(bytes: Bytes) -> Result<Result<ReadResult, StorageError>, WireError> {
        decode_answer(bytes)
    }
}

/// The next `n` bytes of a request, or how many are missing.
pub fn take<'a>(bytes: &mut &'a [u8], n: usize) -> Result<&'a [u8], WireError> {
    if bytes.len() < n {
        return Err(WireError::Truncated(n - bytes.len()));
    }
    let (head, tail) = bytes.split_at(n);
    *bytes = tail;
    Ok(head)
}

/// The next `n` bytes of an answer (a slice, not a copy), or how many are missing.
pub fn take_bytes(bytes: &mut Bytes, n: usize) -> Result<Bytes, WireError> {
    if bytes.len() < n {
        return Err(WireError::Truncated(n - bytes.len()));
    }
    Ok(bytes.split_to(n))
}

/// `Ok` when nothing is left over.
pub fn finished(bytes: &[u8]) -> Result<(), WireError> {
    if bytes.is_empty() {
        Ok(())
    } else {
        Err(WireError::Trailing(bytes.len()))
    }
}

fn saturating_usize(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::memory::MemoryStorage;
    use crate::storage::MessageRows;

    fn filled() -> (MemoryStorage, i32) {
        let mut storage = MemoryStorage::default();
        let topic = storage.create_topic("t", 2).unwrap();
        let n = 10;
        let rows = MessageRows {
            topic_ids: vec![topic.id; n],
            partitions: (0..n).map(|i| (i % 2) as i32).collect(),
            offsets: (0..n as i64).map(|i| i / 2).collect(),
            timestamps_ms: vec![1_700_000_000_000; n],
            keys: (0..n).map(|i| (i % 3 == 0).then(|| Bytes::from(vec![b'k'; i]))).collect(),
            values: (0..n).map(|i| Some(Bytes::from(vec![b'v'; 50 + i]))).collect(),
            headers: vec![None; n],
            txns: Vec::new(),
        };
        storage.append(&rows).unwrap();
        (storage, topic.id)
    }

    #[test]
    fn a_plan_stops_when_the_response_is_full_but_gives_the_first_message_whole() {
        let (mut storage, topic_id) = filled();
        let read = |partition, max_bytes| PartitionRead {
            topic_id,
            partition,
            from: 0,
            below: 5,
            max_bytes,
            layout: StorageLayout::Rows,
            codec: None,
        };
        let everything = ReadPlan { reads: vec![read(0, usize::MAX), read(1, usize::MAX)], response_bytes: usize::MAX };
        let all = everything.run(&mut storage).unwrap();
        assert_eq!((all.len(), all[0].records, all[1].records), (2, 5, 5));
        let tiny = ReadPlan { reads: vec![read(0, 1), read(1, 1)], response_bytes: 10 };
        let some = tiny.run(&mut storage).unwrap();
        assert_eq!(some.len(), 1, "full after the first partition");
        assert_eq!(some[0].records, 1, "one message whatever its size");
    }

    #[test]
    fn batch_layout_reads_give_stored_batches_verbatim_from_the_one_holding_the_offset() {
        use crate::protocol::records::{decode_batches, encode_batch};
        use crate::storage::batches::checked;
        let mut storage = MemoryStorage::default();
        let topic = storage.create_topic_as("b", 1, StorageLayout::Batches).unwrap();
        let record =
            |delta| Record { offset_delta: delta, timestamp: 5, key: None, value: Some(Bytes::from(vec![7u8; 100])), headers: None };
        let rows: Vec<_> = (0..3)
            .map(|i| {
                let raw = encode_batch(0, &[record(0), record(1), record(2)]);
                let batch = decode_batches(raw.clone(), 1 << 20).unwrap().remove(0);
                checked(&batch, raw).unwrap().placed(topic.id, 0, i * 3)
            })
            .collect();
        storage.append_batches(&rows).unwrap();
        let read = |from, max_bytes| PartitionRead {
            topic_id: topic.id,
            partition: 0,
            from,
            below: 9,
            max_bytes,
            layout: StorageLayout::Batches,
            codec: None,
        };
        let all = ReadPlan { reads: vec![read(4, usize::MAX)], response_bytes: usize::MAX }.run(&mut storage).unwrap();
        assert_eq!(all[0].records, 6, "from the batch holding offset 4");
        assert_eq!(all[0].clone().into_records(), [rows[1].bytes.clone(), rows[2].bytes.clone()].concat());
        let one = ReadPlan { reads: vec![read(0, 10)], response_bytes: 1 << 20 }.run(&mut storage).unwrap();
        assert_eq!(one[0].clone().into_records(), rows[0].bytes, "a whole first batch whatever the limit");
    }

    #[test]
    fn answers_and_plans_survive_the_wire() {
        let (mut storage, topic_id) = filled();
        let plan = ReadPlan {
            reads: vec![PartitionRead {
                topic_id,
                partition: 1,
                from: 1,
                below: 4,
                max_bytes: 1 << 20,
                layout: StorageLayout::Rows,
                codec: None,
            }],
            response_bytes: 1 << 20,
        };
        assert_eq!(ReadPlan::decode(&plan.encode()), Ok(plan.clone()));
        let answer = plan.run(&mut storage);
        assert_eq!(decode_answer(Bytes::from(answer_parts(&answer).concat())), Ok(answer));
        let failed = Err(StorageError::Database { sqlstate: Some("57014".into()), message: "cancelled".into() });
        let Ok(Err(StorageError::Database { message, .. })) = decode_answer(Bytes::from(answer_parts(&failed).concat())) else {
            panic!("an error comes back as an error")
        };
        assert!(message.contains("cancelled"), "{message}");
    }

    #[test]
    fn a_row_partition_of_a_compressed_topic_is_sent_in_its_codec() {
        let (mut storage, topic_id) = filled();
        let read = |codec| ReadPlan {
            reads: vec![PartitionRead {
                topic_id,
                partition: 0,
                from: 0,
                below: 5,
                max_bytes: 1 << 20,
                layout: StorageLayout::Rows,
                codec,
            }],
            response_bytes: 1 << 20,
        };
        let plain = read(None).run(&mut storage).unwrap().remove(0).into_records();
        let plain = crate::protocol::records::decode_batches(plain, 1 << 20).unwrap();
        for codec in [Compression::Gzip, Compression::Snappy, Compression::Lz4, Compression::Zstd] {
            let plan = read(Some((codec, 3)));
            assert_eq!(ReadPlan::decode(&plan.encode()), Ok(plan.clone()), "the codec crosses the reader socket");
            let sent = plan.run(&mut storage).unwrap().remove(0).into_records();
            let decoded = crate::protocol::records::decode_batches(sent, 1 << 20).unwrap();
            assert_eq!(decoded[0].attributes & 0x07, codec as i16);
            assert_eq!(decoded[0].records, plain[0].records, "{codec:?}");
        }
    }

    /// Whatever arrives, decoding answers or refuses without panicking, and never
    /// reserves more than the bytes could hold (pseudo-random inputs, and every cut of a
    /// real answer).
    #[test]
    fn arbitrary_and_truncated_bytes_never_panic() {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for len in 0..600 {
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    state as u8
                })
                .collect();
            let _ = ReadPlan::decode(&bytes);
            let _ = decode_answer(Bytes::from(bytes));
        }
        let (mut storage, topic_id) = filled();
        let plan = ReadPlan {
            reads: vec![PartitionRead {
                topic_id,
                partition: 0,
                from: 0,
                below: 5,
                max_bytes: 1 << 20,
                layout: StorageLayout::Rows,
                codec: None,
            }],
            response_bytes: 1 << 20,
        };
        let encoded = answer_parts(&plan.run(&mut storage)).concat();
        for cut in 1..encoded.len() {
            assert!(decode_answer(Bytes::copy_from_slice(&encoded[..encoded.len() - cut])).is_err(), "cut {cut}");
        }
        let request = plan.encode();
        for cut in 1..request.len() {
            assert!(ReadPlan::decode(&request[..request.len() - cut]).is_err(), "cut {cut}");
        }
    }
}
