//! Request shapes: a walk over a request body, done before `kafka-protocol` decodes it.
//!
//! The codec trusts lengths read off the wire: `Array` calls `Vec::with_capacity(n)` on the
//! `n` it reads, so a 60-byte request can ask for gigabytes, and a failed allocation aborts
//! the process (no unwinding, so nothing can catch it) and Postgres restarts every backend.
//! [`check`] walks the same bytes against the API's schema and fails as soon as a length
//! claims more than is present. A body that passes holds every element of every array it
//! declares, so what the codec then allocates is bounded by the bytes really received.
//!
//! Each served API has its request schema here, per version, in the field order of Kafka's
//! message definitions (`clients/src/main/resources/common/message/*Request.json`).

use kafka_protocol::messages::ApiKey;

/// One field of a request schema.
#[derive(Clone, Debug)]
pub enum Field {
    Int8,
    Int16,
    Int32,
    Int64,
    Uuid,
    Bool,
    /// STRING or NULLABLE_STRING (compact in flexible versions).
    Str,
    /// BYTES, NULLABLE_BYTES or RECORDS (compact in flexible versions).
    Bytes,
    /// An array of structs; each element ends with tagged fields in flexible versions.
    Structs(Vec<Field>),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ShapeError {
    #[error("request body ends at byte {at} where {needed} more bytes are declared")]
    Truncated { at: usize, needed: usize },
    #[error("invalid length {0}")]
    InvalidLength(i64),
    #[error("varint longer than 5 bytes at byte {0}")]
    BadVarint(usize),
    #[error("no request schema for {0:?} v{1}")]
    NoSchema(ApiKey, i16),
}

/// Checks that `body` holds everything the schema of `api_key` v`version` declares.
pub fn check(api_key: ApiKey, version: i16, body: &[u8]) -> Result<(), ShapeError> {
    let fields = request_schema(api_key, version).ok_or(ShapeError::NoSchema(api_key, version))?;
    let flexible = api_key.request_header_version(version) >= 2;
    let mut cursor = Cursor { bytes: body, at: 0, flexible };
    cursor.walk_struct(&fields)
}

/// The request schema of a served API version, `None` for APIs we do not decode.
pub fn request_schema(api_key: ApiKey, version: i16) -> Option<Vec<Field>> {
    use Field::*;
    let when = |cond: bool, field: Field| cond.then_some(field);
    let fields: Vec<Option<Field>> = match api_key {
        ApiKey::ApiVersions => vec![when(version >= 3, Str), when(version >= 3, Str)],
        ApiKey::Metadata => vec![
            Some(Structs(
                [when(version >= 10, Uuid), Some(Str)].into_iter().flatten().collect(),
            )),
            when(version >= 4, Bool),
            when((8..=10).contains(&version), Bool),
            when(version >= 8, Bool),
        ],
        _ => return None,
    };
    Some(fields.into_iter().flatten().collect())
}

struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
    flexible: bool,
}

impl Cursor<'_> {
    fn skip(&mut self, count: usize) -> Result<(), ShapeError> {
        let left = self.bytes.len() - self.at;
        if count > left {
            return Err(ShapeError::Truncated { at: self.at, needed: count - left });
        }
        self.at += count;
        Ok(())
    }

    fn take<const N: usize>(&mut self) -> Result<[u8; N], ShapeError> {
        let start = self.at;
        self.skip(N)?;
        Ok(self.bytes[start..self.at].try_into().expect("N bytes"))
    }

    fn unsigned_varint(&mut self) -> Result<u32, ShapeError> {
        let start = self.at;
        let mut value: u32 = 0;
        for shift in (0..35).step_by(7) {
            let [byte] = self.take::<1>()?;
            value |= u32::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(ShapeError::BadVarint(start))
    }

    /// A length that may be null (-1). Compact forms encode `length + 1`, 0 meaning null.
    fn length(&mut self, classic_width: usize) -> Result<Option<usize>, ShapeError> {
        let raw: i64 = if self.flexible {
            i64::from(self.unsigned_varint()?) - 1
        } else if classic_width == 2 {
            i64::from(i16::from_be_bytes(self.take::<2>()?))
        } else {
            i64::from(i32::from_be_bytes(self.take::<4>()?))
        };
        match raw {
            -1 => Ok(None),
            n if n >= 0 => Ok(Some(n as usize)),
            n => Err(ShapeError::InvalidLength(n)),
        }
    }

    fn walk_struct(&mut self, fields: &[Field]) -> Result<(), ShapeError> {
        for field in fields {
            self.walk_field(field)?;
        }
        if self.flexible {
            self.skip_tagged_fields()?;
        }
        Ok(())
    }

    fn walk_field(&mut self, field: &Field) -> Result<(), ShapeError> {
        match field {
            Field::Int8 | Field::Bool => self.skip(1),
            Field::Int16 => self.skip(2),
            Field::Int32 => self.skip(4),
            Field::Int64 => self.skip(8),
            Field::Uuid => self.skip(16),
            Field::Str => self.length(2).and_then(|len| self.skip(len.unwrap_or(0))),
            Field::Bytes => self.length(4).and_then(|len| self.skip(len.unwrap_or(0))),
            Field::Structs(fields) => {
                let count = self.length(4)?.unwrap_or(0);
                for _ in 0..count {
                    let start = self.at;
                    self.walk_struct(fields)?;
                    if self.at == start {
                        // Cannot happen for Kafka's schemas; guards the loop bound regardless.
                        return Err(ShapeError::InvalidLength(count as i64));
                    }
                }
                Ok(())
            }
        }
    }

    fn skip_tagged_fields(&mut self) -> Result<(), ShapeError> {
        let count = self.unsigned_varint()?;
        for _ in 0..count {
            self.unsigned_varint()?;
            let size = self.unsigned_varint()? as usize;
            self.skip(size)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::versions::SERVED_APIS;
    use bytes::BytesMut;
    use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
    use kafka_protocol::messages::{ApiVersionsRequest, MetadataRequest, TopicName};
    use kafka_protocol::protocol::{Encodable, StrBytes};

    fn encode<M: Encodable>(message: &M, version: i16) -> Vec<u8> {
        let mut buf = BytesMut::new();
        message.encode(&mut buf, version).unwrap();
        buf.to_vec()
    }

    #[test]
    fn every_served_version_has_a_schema() {
        for api in SERVED_APIS {
            for version in api.min_served..=api.max {
                assert!(request_schema(api.key, version).is_some(), "{:?} v{version}", api.key);
            }
        }
    }

    #[test]
    fn real_requests_pass_at_every_version() {
        let topic = |name: &'static str| {
            MetadataRequestTopic::default().with_name(Some(TopicName(StrBytes::from_static_str(name))))
        };
        let metadata = MetadataRequest::default().with_topics(Some(vec![topic("a"), topic("bb")]));
        for version in 1..=12 {
            check(ApiKey::Metadata, version, &encode(&metadata, version)).unwrap();
        }
        let api_versions = ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str("t"))
            .with_client_software_version(StrBytes::from_static_str("1"));
        for version in 0..=3 {
            check(ApiKey::ApiVersions, version, &encode(&api_versions, version)).unwrap();
        }
    }

    #[test]
    fn huge_array_counts_fail_before_decoding() {
        // Metadata v1: topics array of i32::MAX elements, then nothing.
        let body = i32::MAX.to_be_bytes();
        assert!(matches!(check(ApiKey::Metadata, 1, &body), Err(ShapeError::Truncated { .. })));
        // Metadata v12 (flexible): compact array of 2^32-2 elements, one element present.
        let mut body = vec![0xff, 0xff, 0xff, 0xff, 0x0f];
        body.extend_from_slice(&[0; 16]);
        body.extend_from_slice(&[2, b'a', 0]);
        assert!(matches!(check(ApiKey::Metadata, 12, &body), Err(ShapeError::Truncated { .. })));
    }

    #[test]
    fn every_truncation_of_a_valid_request_is_rejected() {
        let topic = MetadataRequestTopic::default().with_name(Some(TopicName(StrBytes::from_static_str("abc"))));
        let request = MetadataRequest::default().with_topics(Some(vec![topic]));
        for version in [1, 4, 9, 12] {
            let body = encode(&request, version);
            for cut in 0..body.len() {
                assert!(check(ApiKey::Metadata, version, &body[..cut]).is_err(), "v{version} cut at {cut}");
            }
        }
    }

    #[test]
    fn overlong_varints_and_negative_lengths_are_rejected() {
        assert_eq!(check(ApiKey::Metadata, 12, &[0xff; 8]), Err(ShapeError::BadVarint(0)));
        assert_eq!(check(ApiKey::Metadata, 1, &(-5i32).to_be_bytes()), Err(ShapeError::InvalidLength(-5)));
    }
}
