//! Response frames in parts: a Fetch response's record batches (a megabyte each, read by a
//! reader process or read ahead) go to the client from where they already are, instead of
//! being copied into one frame buffer first, a copy on the network thread in series with
//! every consumer's next Fetch.
//!
//! The response is encoded (by kafka-protocol, as every response) with each lent byte
//! field holding a marker instead: 16 bytes, random per response, ending in the field's
//! index. [`splice`] then finds the markers and cuts the frame around them: the bytes
//! between markers are copied parts, each lent field a part as it is, its length prefix
//! rewritten, and the frame's size prefix too. A byte field holds its bytes behind a
//! length, never inside another length (no Fetch field is), so that is the frame the
//! lent bytes would have made. A marker found anywhere but exactly once and in order (a
//! client's record that happens to hold one) leaves the frame to be encoded whole.

use bytes::{BufMut, Bytes, BytesMut};

/// Byte fields smaller than this are copied: a part costs an iovec and its share of a
/// write, more than copying a few kilobytes.
pub const LEND_FROM_BYTES: usize = 16 << 10;

/// What stands in for lent byte fields while a response is encoded.
#[derive(Clone, Copy)]
pub struct Markers {
    random: [u8; MARKER_RANDOM],
}

const MARKER_RANDOM: usize = 12;
const MARKER_BYTES: usize = MARKER_RANDOM + 4;

impl Markers {
    pub fn new() -> Markers {
        let mut random = [0; MARKER_RANDOM];
        random.copy_from_slice(&uuid::Uuid::new_v4().as_bytes()[..MARKER_RANDOM]);
        Markers { random }
    }

    /// The marker of the `index`th lent field.
    pub fn marker(&self, index: u32) -> Bytes {
        let mut marker = BytesMut::with_capacity(MARKER_BYTES);
        marker.put_slice(&self.random);
        marker.put_u32(index);
        marker.freeze()
    }
}

impl Default for Markers {
    fn default() -> Markers {
        Markers::new()
    }
}

/// How a byte field's length is written before its bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LengthPrefix {
    /// Flexible versions' compact (nullable) bytes: unsigned varint of length + 1.
    Compact,
    /// Classic versions' bytes: a 4-byte length.
    Int32,
}

impl LengthPrefix {
    fn put(self, out: &mut BytesMut, len: usize) -> Option<()> {
        match self {
            LengthPrefix::Compact => {
                let mut value = u32::try_from(len).ok()?.checked_add(1)?;
                while value >= 0x80 {
                    out.put_u8((value as u8 & 0x7f) | 0x80);
                    value >>= 7;
                }
                out.put_u8(value as u8);
            }
            LengthPrefix::Int32 => out.put_i32(i32::try_from(len).ok()?),
        }
        Some(())
    }
}

/// `frame` (size prefix first) encoded with the `i`th of `lent` replaced by
/// `markers.marker(i)`, in parts with the lent bytes in their places; `None` when the
/// markers are not each found exactly once, in order, behind the prefix they were
/// written with.
pub fn splice(frame: &Bytes, markers: &Markers, prefix: LengthPrefix, lent: &[Bytes]) -> Option<Vec<Bytes>> {
    let found = marker_positions(frame, markers);
    if found.len() != lent.len() || found.iter().enumerate().any(|(i, &(_, index))| index != i as u32) {
        return None;
    }
    let mut marker_prefix = BytesMut::new();
    prefix.put(&mut marker_prefix, MARKER_BYTES)?;
    let size = i32::from_be_bytes(frame.get(..4)?.try_into().ok()?);
    let grown: i64 = lent.iter().map(|bytes| prefixed_len(prefix, bytes.len()) as i64 - (marker_prefix.len() + MARKER_BYTES) as i64).sum();
    let mut head = BytesMut::new();
    head.put_i32(i32::try_from(i64::from(size) + grown).ok()?);
    let (mut parts, mut copied_from) = (Vec::with_capacity(2 * lent.len() + 1), 4);
    for (&(at, _), bytes) in found.iter().zip(lent) {
        let field = at.checked_sub(marker_prefix.len()).filter(|&field| field >= copied_from)?;
        if frame[field..at] != marker_prefix[..] {
            return None;
        }
        head.put_slice(&frame[copied_from..field]);
        prefix.put(&mut head, bytes.len())?;
        parts.push(head.split().freeze());
        parts.push(bytes.clone());
        copied_from = at + MARKER_BYTES;
    }
    parts.push(frame.slice(copied_from..));
    parts.retain(|part| !part.is_empty());
    Some(parts)
}

/// Where each marker of `markers` starts in `frame`, with its index, in frame order.
fn marker_positions(frame: &[u8], markers: &Markers) -> Vec<(usize, u32)> {
    let mut found = Vec::new();
    let mut at = 0;
    while at + MARKER_BYTES <= frame.len() {
        if frame[at..at + MARKER_RANDOM] == markers.random {
            let index = u32::from_be_bytes(frame[at + MARKER_RANDOM..at + MARKER_BYTES].try_into().unwrap_or_default());
            found.push((at, index));
            at += MARKER_BYTES;
        } else {
            at += 1;
        }
    }
    found
}

/// Bytes a field of `len` bytes takes with its length prefix.
fn prefixed_len(prefix: LengthPrefix, len: usize) -> usize {
    let mut out = BytesMut::new();
    prefix.put(&mut out, len).map_or(0, |()| out.len()) + len
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::header::encode_response;
    use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
    use kafka_protocol::messages::{ApiKey, FetchResponse};

    fn response(records: &[Bytes]) -> FetchResponse {
        let partitions = records
            .iter()
            .enumerate()
            .map(|(i, r)| PartitionData::default().with_partition_index(i as i32).with_records(Some(r.clone())))
            .collect();
        FetchResponse::default().with_responses(vec![FetchableTopicResponse::default().with_partitions(partitions)])
    }

    fn prefix_of(version: i16) -> LengthPrefix {
        if version >= 12 {
            LengthPrefix::Compact
        } else {
            LengthPrefix::Int32
        }
    }

    #[test]
    fn lent_bytes_are_parts_of_their_own_and_the_frame_is_the_same() {
        let markers = Markers::new();
        let records: Vec<Bytes> = (0..3u8).map(|i| Bytes::from(vec![i; LEND_FROM_BYTES * (1 + usize::from(i) * 10)])).collect();
        let marked: Vec<Bytes> = (0..3).map(|i| markers.marker(i)).collect();
        for version in [4, 11, 12, 16] {
            let whole = encode_response(ApiKey::Fetch, version, 7, &response(&records)).unwrap();
            let frame = encode_response(ApiKey::Fetch, version, 7, &response(&marked)).unwrap();
            let parts = splice(&frame, &markers, prefix_of(version), &records).expect("spliced");
            assert_eq!(parts.concat(), whole, "v{version}");
            for lent in &records {
                assert!(parts.iter().any(|p| p.as_ptr() == lent.as_ptr() && p.len() == lent.len()), "v{version}: copied");
            }
        }
    }

    #[test]
    fn a_marker_that_is_missing_doubled_or_out_of_order_leaves_the_frame_whole() {
        let markers = Markers::new();
        let lent = [Bytes::from(vec![1; LEND_FROM_BYTES]), Bytes::from(vec![2; LEND_FROM_BYTES])];
        let encode = |fields: &[Bytes]| encode_response(ApiKey::Fetch, 12, 7, &response(fields)).unwrap();
        let (first, second) = (markers.marker(0), markers.marker(1));
        assert!(splice(&encode(std::slice::from_ref(&first)), &markers, LengthPrefix::Compact, &lent).is_none(), "one missing");
        assert!(splice(&encode(&[second.clone(), first.clone()]), &markers, LengthPrefix::Compact, &lent).is_none(), "out of order");
        let mut echo = BytesMut::from(&b"client data "[..]);
        echo.put_slice(&first);
        let doubled = [echo.freeze(), first, second];
        assert!(splice(&encode(&doubled), &markers, LengthPrefix::Compact, &lent).is_none(), "a record holding a marker");
        assert!(splice(&encode(&lent), &markers, LengthPrefix::Int32, &lent).is_none(), "no markers at all");
    }

    #[test]
    fn compact_lengths_are_varints_of_length_plus_one() {
        let mut out = BytesMut::new();
        LengthPrefix::Compact.put(&mut out, 16).unwrap();
        LengthPrefix::Compact.put(&mut out, 1 << 20).unwrap();
        assert_eq!(&out[..], &[17, 0x81, 0x80, 0x40]);
        assert_eq!(prefixed_len(LengthPrefix::Int32, 10), 14);
    }
}
