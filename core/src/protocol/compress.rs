//! Kafka's codecs as encoders: what a topic's `compression.type` turns the batches it
//! stores or serves into. Decoding is `records.rs`'s, bounded by a budget since its input
//! comes from clients; encoding works on what the broker itself holds.
//!
//! Each codec is written as Kafka's Java producer writes it, which every client reads:
//! gzip (a member), snappy in xerial's framing (32 KiB blocks), LZ4 frames (independent
//! blocks, no content size), zstd frames.

use std::io::Write;

use super::records::{Compression, RecordsError};
use crate::config::topic::TopicCompression;

/// The codec and level a topic keeps its batches in; `None`: as each producer sent them.
pub fn target(compression: TopicCompression) -> Option<(Compression, i32)> {
    match compression {
        TopicCompression::Producer => None,
        TopicCompression::Uncompressed => Some((Compression::None, 0)),
        TopicCompression::Gzip { level } => Some((Compression::Gzip, level)),
        TopicCompression::Snappy => Some((Compression::Snappy, 0)),
        TopicCompression::Lz4 => Some((Compression::Lz4, 0)),
        TopicCompression::Zstd { level } => Some((Compression::Zstd, level)),
    }
}

/// `body` (a batch's records) compressed with `codec` at `level` (gzip: 1-9, -1 the
/// default; zstd: its levels; ignored by the others).
pub fn compress(codec: Compression, level: i32, body: &[u8]) -> Result<Vec<u8>, RecordsError> {
    let failed = |e: std::io::Error| RecordsError::Compress(e.to_string());
    match codec {
        Compression::None => Ok(body.to_vec()),
        Compression::Gzip => {
            let level = u32::try_from(level).map_or(flate2::Compression::default(), flate2::Compression::new);
            let mut encoder = flate2::write::GzEncoder::new(Vec::with_capacity(body.len() / 2), level);
            encoder.write_all(body).map_err(failed)?;
            encoder.finish().map_err(failed)
        }
        Compression::Snappy => xerial_snappy(body),
        Compression::Lz4 => {
            let mut encoder = lz4_flex::frame::FrameEncoder::new(Vec::with_capacity(body.len() / 2));
            encoder.write_all(body).map_err(failed)?;
            encoder.finish().map_err(|e| RecordsError::Compress(e.to_string()))
        }
        Compression::Zstd => zstd::bulk::compress(body, level).map_err(failed),
    }
}

/// snappy-java's stream format, as the Java producer writes it: magic, version 1,
/// compatible version 1, then blocks of at most 32 KiB, each a big-endian length and a raw
/// snappy block.
fn xerial_snappy(body: &[u8]) -> Result<Vec<u8>, RecordsError> {
    const BLOCK: usize = 32 * 1024;
    let mut out = Vec::with_capacity(16 + body.len() / 2);
    out.extend_from_slice(b"\x82SNAPPY\x00");
    out.extend_from_slice(&1i32.to_be_bytes());
    out.extend_from_slice(&1i32.to_be_bytes());
    let mut encoder = snap::raw::Encoder::new();
    for chunk in body.chunks(BLOCK) {
        let block = encoder.compress_vec(chunk).map_err(|e| RecordsError::Compress(e.to_string()))?;
        out.extend_from_slice(&(block.len() as u32).to_be_bytes());
        out.extend_from_slice(&block);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::records::{decode_batches, encode_batch, encode_batch_in, Record};
    use bytes::Bytes;

    fn records() -> Vec<Record> {
        (0..200)
            .map(|i| Record {
                offset_delta: i,
                timestamp: 1_700_000_000_000 + i64::from(i),
                key: Some(Bytes::from(format!("key-{}", i % 7))),
                value: (i % 11 != 0).then(|| Bytes::from(vec![b'v'; 500])),
                headers: None,
            })
            .collect()
    }

    #[test]
    fn every_codec_round_trips_through_our_decoder_and_kafka_protocols() {
        let plain = decode_batches(encode_batch(7, &records()), 1 << 20).unwrap().remove(0);
        for (codec, level) in [
            (Compression::None, 0),
            (Compression::Gzip, -1),
            (Compression::Gzip, 9),
            (Compression::Snappy, 0),
            (Compression::Lz4, 0),
            (Compression::Zstd, 3),
            (Compression::Zstd, -5),
        ] {
            let bytes = encode_batch_in(&plain, &plain.records, codec, level).unwrap();
            if codec != Compression::None {
                assert!(bytes.len() < encode_batch(7, &records()).len() / 4, "{codec:?} compresses");
            }
            let ours = decode_batches(bytes.clone(), 1 << 20).unwrap().remove(0);
            assert_eq!(ours.attributes & 0x07, codec as i16);
            assert_eq!((ours.base_offset, ours.last_offset_delta, &ours.records), (7, 199, &plain.records), "{codec:?}");
            // An independent decoder (kafka-protocol's, as the Java client decodes).
            let mut buf = bytes.clone();
            let theirs = kafka_protocol::records::RecordBatchDecoder::decode(&mut buf).unwrap();
            assert_eq!(theirs.records.len(), 200, "{codec:?}");
            assert_eq!(theirs.records[5].value, plain.records[5].value);
        }
    }
}
