//! Request shapes: a walk over a request body, done before `kafka-protocol` decodes it.
//!
//! The codec trusts lengths read off the wire: `Array` calls `Vec::with_capacity(n)` on the
//! `n` it reads, so a 60-byte request can ask for gigabytes, and a failed allocation aborts
//! the process (no unwinding, so nothing can catch it) and Postgres restarts every backend.
//! [`check`] walks the same bytes against the API's schema and fails as soon as a length
//! claims more than is present. A body that passes holds every element of every array it
//! declares, so what the codec then allocates is bounded by the bytes really received.
//!
//! Tagged fields are where a walk and the codec could read different bytes: the codec
//! decodes a *known* tag's value straight from the buffer whatever size the tag declares,
//! so a tag declared with size 0 makes the codec read the next field's bytes as its value
//! and go on misaligned, trusting lengths the walk never saw. No request field we serve
//! needs a tagged value, so [`canonical`] removes them: it returns the body with every
//! tagged-field section replaced by "no tagged fields", and only those bytes reach the
//! codec. The walk and the decode then read the same bytes by construction.
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
    /// An array of INT32 (no tagged fields per element).
    Int32s,
    /// An array of INT64 (no tagged fields per element).
    Int64s,
    /// An array of STRING (no tagged fields per element).
    Strs,
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
    #[error("decodes to about {decoded} bytes in memory from {wire} bytes on the wire (at most {DECODED_FACTOR}x + 1 MiB)")]
    DecodesTooLarge { decoded: usize, wire: usize },
}

/// How much more memory than its bytes on the wire a request may decode to, on top of
/// [`DECODED_FLOOR`]. Real requests stay under 4x (a Fetch partition is ~33 bytes on the
/// wire and ~80 in memory); arrays of empty elements are where a small frame turns into
/// gigabytes of structs (5 million empty topic names in a 10 MB Metadata request).
pub const DECODED_FACTOR: usize = 16;
/// Decoded bytes every request may use whatever its size.
pub const DECODED_FLOOR: usize = 1 << 20;

/// Memory one decoded value of each kind takes (kafka-protocol's structs: a `Bytes` or
/// `StrBytes` is 32 bytes, a `Vec` 24, each struct's map of unknown tagged fields 24).
const SCALAR_BYTES: usize = 8;
const BYTES_BYTES: usize = 32;
const VEC_BYTES: usize = 24;
const STRUCT_OVERHEAD_BYTES: usize = 24;

/// Checks that `body` holds everything the schema of `api_key` v`version` declares.
pub fn check(api_key: ApiKey, version: i16, body: &[u8]) -> Result<(), ShapeError> {
    walk(api_key, version, body).map(drop)
}

/// Checks `body` as [`check`] does and returns the bytes the codec may decode: `body`
/// itself, or a copy (never longer) in which every tagged-field section is empty.
pub fn canonical(api_key: ApiKey, version: i16, body: &bytes::Bytes) -> Result<bytes::Bytes, ShapeError> {
    let tagged = walk(api_key, version, body)?.tagged;
    if tagged.is_empty() {
        return Ok(body.clone());
    }
    let mut out = Vec::with_capacity(body.len());
    let mut at = 0;
    for section in tagged {
        out.extend_from_slice(&body[at..section.start]);
        out.push(0); // an unsigned varint 0: no tagged fields
        at = section.end;
    }
    out.extend_from_slice(&body[at..]);
    Ok(out.into())
}

/// How many bytes of `body` the schema walk reads (the rest is trailing bytes the
/// codec ignores too). The fuzz targets compare this with what the codec consumed.
pub fn consumed(api_key: ApiKey, version: i16, body: &[u8]) -> Result<usize, ShapeError> {
    walk(api_key, version, body).map(|cursor| cursor.at)
}

/// Walks `body` against its schema; the cursor knows how far it read and the byte ranges of
/// the tagged-field sections that hold any field.
fn walk(api_key: ApiKey, version: i16, body: &[u8]) -> Result<Cursor<'_>, ShapeError> {
    let fields = request_schema(api_key, version).ok_or(ShapeError::NoSchema(api_key, version))?;
    let mut cursor = Cursor::new(body, api_key.request_header_version(version) >= 2);
    cursor.walk_struct(&fields)?;
    Ok(cursor)
}

/// The request schema of a served API version, `None` for APIs we do not decode.
pub fn request_schema(api_key: ApiKey, version: i16) -> Option<Vec<Field>> {
    use Field::*;
    let when = |cond: bool, field: Field| cond.then_some(field);
    let fields: Vec<Option<Field>> = match api_key {
        ApiKey::ApiVersions => vec![when(version >= 3, Str), when(version >= 3, Str)],
        // transactional_id, acks, timeout_ms, topic_data[name (topic id from v13),
        // partition_data[index, records]]
        ApiKey::Produce => vec![
            when(version >= 3, Str),
            Some(Int16),
            Some(Int32),
            Some(Structs(vec![if version >= 13 { Uuid } else { Str }, Structs(vec![Int32, Bytes])])),
        ],
        ApiKey::Fetch => {
            let by_id = version >= 13;
            let topic = if by_id { Uuid } else { Str };
            vec![
                when(version <= 14, Int32), // replica_id (a tagged field from v15)
                Some(Int32),                // max_wait_ms
                Some(Int32),                // min_bytes
                when(version >= 3, Int32),  // max_bytes
                when(version >= 4, Int8),   // isolation_level
                when(version >= 7, Int32),  // session_id
                when(version >= 7, Int32),  // session_epoch
                Some(Structs(vec![
                    topic.clone(),
                    Structs(
                        [
                            Some(Int32),                // partition
                            when(version >= 9, Int32),  // current_leader_epoch
                            Some(Int64),                // fetch_offset
                            when(version >= 12, Int32), // last_fetched_epoch
                            when(version >= 5, Int64),  // log_start_offset
                            Some(Int32),                // partition_max_bytes
                        ]
                        .into_iter()
                        .flatten()
                        .collect(),
                    ),
                ])),
                when(version >= 7, Structs(vec![topic, Int32s])), // forgotten_topics_data
                when(version >= 11, Str),                         // rack_id
            ]
        }
        ApiKey::ListOffsets => vec![
            Some(Int32),              // replica_id
            when(version >= 2, Int8), // isolation_level
            Some(Structs(vec![
                Str,
                // index, current_leader_epoch, timestamp, max_num_offsets (v0)
                Structs([Some(Int32), when(version >= 4, Int32), Some(Int64), when(version == 0, Int32)].into_iter().flatten().collect()),
            ])),
            when(version >= 10, Int32), // timeout_ms
        ],
        ApiKey::Metadata => vec![
            Some(Structs([when(version >= 10, Uuid), Some(Str)].into_iter().flatten().collect())),
            when(version >= 4, Bool),
            when((8..=10).contains(&version), Bool),
            when(version >= 8, Bool),
        ],
        _ => return group_or_admin_schema(api_key, version),
    };
    Some(fields.into_iter().flatten().collect())
}

/// Schemas of the consumer-group, producer-id and admin APIs.
fn group_or_admin_schema(api_key: ApiKey, version: i16) -> Option<Vec<Field>> {
    use Field::*;
    let when = |cond: bool, field: Field| cond.then_some(field);
    let fields: Vec<Option<Field>> = match api_key {
        // key (v0-3) and key_type (v1-3), then key_type and coordinator_keys (v4+)
        ApiKey::FindCoordinator if version >= 4 => vec![Some(Int8), Some(Strs)],
        ApiKey::FindCoordinator => vec![Some(Str), when(version >= 1, Int8)],
        // group_id, session_timeout, rebalance_timeout, member_id, group_instance_id,
        // protocol_type, protocols[name, metadata], reason
        ApiKey::JoinGroup => vec![
            Some(Str),
            Some(Int32),
            when(version >= 1, Int32),
            Some(Str),
            when(version >= 5, Str),
            Some(Str),
            Some(Structs(vec![Str, Bytes])),
            when(version >= 8, Str),
        ],
        // group_id, generation, member_id, group_instance_id, protocol_type, protocol_name,
        // assignments[member_id, assignment]
        ApiKey::SyncGroup => vec![
            Some(Str),
            Some(Int32),
            Some(Str),
            when(version >= 3, Str),
            when(version >= 5, Str),
            when(version >= 5, Str),
            Some(Structs(vec![Str, Bytes])),
        ],
        ApiKey::Heartbeat => vec![Some(Str), Some(Int32), Some(Str), when(version >= 3, Str)],
        // group_id, then member_id (v0-2) or members[member_id, group_instance_id, reason]
        ApiKey::LeaveGroup if version >= 3 => {
            vec![Some(Str), Some(Structs([Some(Str), Some(Str), when(version >= 5, Str)].into_iter().flatten().collect()))]
        }
        ApiKey::LeaveGroup => vec![Some(Str), Some(Str)],
        // group_id, generation and member_id (v1+), retention_time (v2-4), group_instance_id
        // (v7+), topics[name, partitions[index, offset, timestamp (v1), leader_epoch (v6+),
        // metadata]]
        ApiKey::OffsetCommit => vec![
            Some(Str),
            when(version >= 1, Int32),
            when(version >= 1, Str),
            when((2..=4).contains(&version), Int64),
            when(version >= 7, Str),
            Some(Structs(vec![
                Str,
                Structs(
                    [Some(Int32), Some(Int64), when(version == 1, Int64), when(version >= 6, Int32), Some(Str)]
                        .into_iter()
                        .flatten()
                        .collect(),
                ),
            ])),
        ],
        // v1-7: group_id, topics[name, partitions]; v8+: groups[group_id, member_id and
        // member_epoch (v9+), topics[name, partitions]]; require_stable (v7+)
        ApiKey::OffsetFetch if version >= 8 => {
            let group = [Some(Str), when(version >= 9, Str), when(version >= 9, Int32), Some(Structs(vec![Str, Int32s]))];
            vec![Some(Structs(group.into_iter().flatten().collect())), Some(Bool)]
        }
        ApiKey::OffsetFetch => vec![Some(Str), Some(Structs(vec![Str, Int32s])), when(version >= 7, Bool)],
        ApiKey::DescribeGroups => vec![Some(Strs), when(version >= 3, Bool)],
        ApiKey::ListGroups => vec![when(version >= 4, Strs), when(version >= 5, Strs)],
        ApiKey::DeleteGroups => vec![Some(Strs)],
        // transactional_id, transaction_timeout, producer_id and epoch (v3+)
        ApiKey::InitProducerId => vec![Some(Str), Some(Int32), when(version >= 3, Int64), when(version >= 3, Int16)],
        // topics[name, partitions, replication, assignments[index, brokers], configs[name,
        // value]], timeout, validate_only
        ApiKey::CreateTopics => {
            let topic = Structs(vec![Str, Int32, Int16, Structs(vec![Int32, Int32s]), Structs(vec![Str, Str])]);
            vec![Some(topic), Some(Int32), when(version >= 1, Bool)]
        }
        // topic names (v1-5) or topics[name, topic_id] (v6+), timeout
        ApiKey::DeleteTopics => vec![Some(if version >= 6 { Structs(vec![Str, Uuid]) } else { Strs }), Some(Int32)],
        // topics[name, count, assignments[brokers]], timeout, validate_only
        ApiKey::CreatePartitions => vec![Some(Structs(vec![Str, Int32, Structs(vec![Int32s])])), Some(Int32), Some(Bool)],
        // resources[type, name, keys], include_synonyms, include_documentation (v3+)
        ApiKey::DescribeConfigs => vec![Some(Structs(vec![Int8, Str, Strs])), when(version >= 1, Bool), when(version >= 3, Bool)],
        ApiKey::AlterConfigs => vec![Some(Structs(vec![Int8, Str, Structs(vec![Str, Str])])), Some(Bool)],
        ApiKey::IncrementalAlterConfigs => vec![Some(Structs(vec![Int8, Str, Structs(vec![Str, Int8, Str])])), Some(Bool)],
        ApiKey::DescribeCluster => vec![Some(Bool), when(version >= 1, Int8), when(version >= 2, Bool)],
        // topics[name, partitions[index, offset]], timeout
        ApiKey::DeleteRecords => vec![Some(Structs(vec![Str, Structs(vec![Int32, Int64])])), Some(Int32)],
        ApiKey::SaslHandshake => vec![Some(Str)],
        ApiKey::SaslAuthenticate => vec![Some(Bytes)],
        ApiKey::DescribeAcls => acl_filter_fields(version),
        // group_id, topics[name, partitions[index]]
        ApiKey::OffsetDelete => vec![Some(Str), Some(Structs(vec![Str, Structs(vec![Int32])]))],
        // election_type (v1+), topic_partitions[topic, partitions], timeout
        ApiKey::ElectLeaders => vec![when(version >= 1, Int8), Some(Structs(vec![Str, Int32s])), Some(Int32)],
        // timeout, topics[name, partition_indexes]
        ApiKey::ListPartitionReassignments => vec![Some(Int32), Some(Structs(vec![Str, Int32s]))],
        // components[entity_type, match_type, match], strict
        ApiKey::DescribeClientQuotas => vec![Some(Structs(vec![Str, Int8, Str])), Some(Bool)],
        // topics[topic, partitions] (null: all)
        ApiKey::DescribeLogDirs => vec![Some(Structs(vec![Str, Int32s]))],
        // topics[name, partition_indexes]
        ApiKey::DescribeProducers => vec![Some(Structs(vec![Str, Int32s]))],
        // v0-3: transactional_id, producer_id, producer_epoch, topics[name, partitions]
        ApiKey::AddPartitionsToTxn => vec![Some(Str), Some(Int64), Some(Int16), Some(Structs(vec![Str, Int32s]))],
        // transactional_id, producer_id, producer_epoch, group_id
        ApiKey::AddOffsetsToTxn => vec![Some(Str), Some(Int64), Some(Int16), Some(Str)],
        // transactional_id, group_id, producer_id, producer_epoch, generation_id, member_id
        // and group_instance_id (v3+), topics[name, partitions[index, offset, leader epoch
        // (v2+), metadata]]
        ApiKey::TxnOffsetCommit => {
            let partition = [Some(Int32), Some(Int64), when(version >= 2, Int32), Some(Str)];
            vec![
                Some(Str),
                Some(Str),
                Some(Int64),
                Some(Int16),
                when(version >= 3, Int32),
                when(version >= 3, Str),
                when(version >= 3, Str),
                Some(Structs(vec![Str, Structs(partition.into_iter().flatten().collect())])),
            ]
        }
        // transactional_id, producer_id, producer_epoch, committed
        ApiKey::EndTxn => vec![Some(Str), Some(Int64), Some(Int16), Some(Bool)],
        ApiKey::DescribeTransactions => vec![Some(Strs)],
        // state_filters, producer_id_filters, duration_filter (v1+)
        ApiKey::ListTransactions => vec![Some(Strs), Some(Int64s), when(version >= 1, Int64)],
        ApiKey::CreateAcls | ApiKey::DeleteAcls => vec![Some(Structs(acl_filter_fields(version).into_iter().flatten().collect()))],
        _ => return None,
    };
    Some(fields.into_iter().flatten().collect())
}

/// An ACL creation or filter: resource type, name, pattern type (v1+), principal, host,
/// operation, permission type.
fn acl_filter_fields(version: i16) -> Vec<Option<Field>> {
    use Field::*;
    vec![Some(Int8), Some(Str), (version >= 1).then_some(Int8), Some(Str), Some(Str), Some(Int8), Some(Int8)]
}

struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
    flexible: bool,
    /// Tagged-field sections with at least one field, in order.
    tagged: Vec<std::ops::Range<usize>>,
    /// Estimated memory of the decoded request so far, and the most it may reach.
    decoded: usize,
    max_decoded: usize,
}

impl<'a> Cursor<'a> {
    fn new(bytes: &'a [u8], flexible: bool) -> Cursor<'a> {
        let max_decoded = bytes.len().saturating_mul(DECODED_FACTOR).saturating_add(DECODED_FLOOR);
        Cursor { bytes, at: 0, flexible, tagged: Vec::new(), decoded: 0, max_decoded }
    }

    /// Counts `bytes` of decoded memory; fails once the request would decode to too much.
    fn decodes_to(&mut self, bytes: usize) -> Result<(), ShapeError> {
        self.decoded = self.decoded.saturating_add(bytes);
        if self.decoded > self.max_decoded {
            return Err(ShapeError::DecodesTooLarge { decoded: self.decoded, wire: self.bytes.len() });
        }
        Ok(())
    }

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

    /// An array of `size`-byte scalars.
    fn scalars(&mut self, size: usize) -> Result<(), ShapeError> {
        let count = self.length(4)?.unwrap_or(0);
        self.skip(count.checked_mul(size).ok_or(ShapeError::InvalidLength(count as i64))?)?;
        self.decodes_to(VEC_BYTES + count * size)
    }

    fn walk_field(&mut self, field: &Field) -> Result<(), ShapeError> {
        match field {
            Field::Int8 | Field::Bool => self.scalar(1),
            Field::Int16 => self.scalar(2),
            Field::Int32 => self.scalar(4),
            Field::Int64 => self.scalar(8),
            Field::Uuid => self.scalar(16),
            Field::Str => self.length(2).and_then(|len| self.bytes_field(len.unwrap_or(0))),
            Field::Bytes => self.length(4).and_then(|len| self.bytes_field(len.unwrap_or(0))),
            Field::Int32s => self.scalars(4),
            Field::Int64s => self.scalars(8),
            Field::Strs => {
                let count = self.length(4)?.unwrap_or(0);
                self.decodes_to(VEC_BYTES)?;
                for _ in 0..count {
                    self.walk_field(&Field::Str)?;
                }
                Ok(())
            }
            Field::Structs(fields) => {
                let count = self.length(4)?.unwrap_or(0);
                self.decodes_to(VEC_BYTES)?;
                for _ in 0..count {
                    let start = self.at;
                    self.decodes_to(STRUCT_OVERHEAD_BYTES)?;
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

    /// A fixed-size field of `wire` bytes.
    fn scalar(&mut self, wire: usize) -> Result<(), ShapeError> {
        self.skip(wire)?;
        self.decodes_to(SCALAR_BYTES.max(wire))
    }

    /// A string or bytes field of `len` bytes: shared with the frame, not copied.
    fn bytes_field(&mut self, len: usize) -> Result<(), ShapeError> {
        self.skip(len)?;
        self.decodes_to(BYTES_BYTES)
    }

    fn skip_tagged_fields(&mut self) -> Result<(), ShapeError> {
        let start = self.at;
        let count = self.unsigned_varint()?;
        for _ in 0..count {
            self.unsigned_varint()?;
            let size = self.unsigned_varint()? as usize;
            self.skip(size)?;
        }
        if count > 0 {
            self.tagged.push(start..self.at);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::versions::SERVED_APIS;
    use bytes::Bytes;
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
            for version in api.min_legacy..=api.max {
                assert!(request_schema(api.key, version).is_some(), "{:?} v{version}", api.key);
            }
        }
    }

    #[test]
    fn real_requests_pass_at_every_version() {
        let topic = |name: &'static str| MetadataRequestTopic::default().with_name(Some(TopicName(StrBytes::from_static_str(name))));
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
    fn fetch_and_list_offsets_schemas_match_every_byte() {
        use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic, ForgottenTopic};
        use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
        use kafka_protocol::messages::{FetchRequest, ListOffsetsRequest};
        let name = TopicName(StrBytes::from_static_str("topic"));
        for version in 4..=18 {
            let (mut topic, mut forgotten) = (FetchTopic::default(), ForgottenTopic::default().with_partitions(vec![1, 2, 3]));
            if version < 13 {
                topic = topic.with_topic(name.clone());
                forgotten = forgotten.with_topic(name.clone());
            }
            let mut fetch = FetchRequest::default()
                .with_topics(vec![topic.with_partitions(vec![FetchPartition::default(), FetchPartition::default().with_partition(1)])]);
            if version >= 7 {
                fetch = fetch.with_forgotten_topics_data(vec![forgotten]);
            }
            if version >= 11 {
                fetch = fetch.with_rack_id(StrBytes::from_static_str("rack"));
            }
            let body = encode(&fetch, version);
            assert_eq!(consumed(ApiKey::Fetch, version, &body).unwrap(), body.len(), "Fetch v{version}");
        }
        let list = ListOffsetsRequest::default().with_topics(vec![ListOffsetsTopic::default()
            .with_name(name)
            .with_partitions(vec![ListOffsetsPartition::default(), ListOffsetsPartition::default()])]);
        for version in 1..=10 {
            let body = encode(&list, version);
            assert_eq!(consumed(ApiKey::ListOffsets, version, &body).unwrap(), body.len(), "ListOffsets v{version}");
        }
    }

    #[test]
    fn arrays_of_empty_elements_cannot_decode_to_gigabytes() {
        // Metadata v1 with a million empty topic names: 2 MB on the wire, about 56 MB of
        // structs once decoded (5 million took 1.5 GB of RSS before this check).
        let count = 1_000_000u32;
        let mut body = count.to_be_bytes().to_vec();
        body.resize(4 + 2 * count as usize, 0);
        assert!(matches!(check(ApiKey::Metadata, 1, &body), Err(ShapeError::DecodesTooLarge { .. })));
        // The same names, real ones, a thousand of them: fine.
        let mut body = 1000u32.to_be_bytes().to_vec();
        for i in 0..1000 {
            let name = format!("topic-{i:05}");
            body.extend_from_slice(&(name.len() as i16).to_be_bytes());
            body.extend_from_slice(name.as_bytes());
        }
        check(ApiKey::Metadata, 1, &body).unwrap();
    }

    #[test]
    fn canonical_bodies_drop_tagged_fields_and_decode_exactly() {
        use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
        use kafka_protocol::messages::FetchRequest;
        use kafka_protocol::protocol::Decodable;
        // Real known tags (cluster_id at the top, replica_directory_id per partition) and
        // an unknown one: all are removed, and the codec consumes exactly what is left.
        let mut partition = FetchPartition::default().with_replica_directory_id(uuid::Uuid::from_u128(7));
        partition.unknown_tagged_fields.insert(99, Bytes::from_static(b"xyz"));
        let fetch = FetchRequest::default()
            .with_cluster_id(Some(StrBytes::from_static_str("cluster")))
            .with_topics(vec![FetchTopic::default().with_partitions(vec![partition, FetchPartition::default()])]);
        let body = Bytes::from(encode(&fetch, 17));
        let stripped = canonical(ApiKey::Fetch, 17, &body).unwrap();
        assert!(stripped.len() < body.len());
        assert!(check(ApiKey::Fetch, 17, &stripped).is_ok());
        let mut rest = stripped.clone();
        let decoded = FetchRequest::decode(&mut rest, 17).unwrap();
        assert!(rest.is_empty(), "the codec read {} bytes fewer than the walk", rest.len());
        assert_eq!(decoded.cluster_id, None);
        assert_eq!(decoded.topics[0].partitions.len(), 2);
        assert!(decoded.topics[0].partitions[0].unknown_tagged_fields.is_empty());
        // A body without tagged fields is passed on as it is.
        let plain = Bytes::from(encode(&FetchRequest::default(), 17));
        assert_eq!(canonical(ApiKey::Fetch, 17, &plain).unwrap().as_ptr(), plain.as_ptr());
    }

    /// Every served request, with every array holding elements, at every served version:
    /// the schema must consume exactly the bytes the codec wrote.
    #[test]
    fn every_served_request_matches_its_schema_byte_for_byte() {
        for api in SERVED_APIS {
            for version in api.min_served..=api.max {
                let body = crate::protocol::samples::sample_body(api.key, version).expect("a sample for every served API");
                assert_eq!(consumed(api.key, version, &body).unwrap(), body.len(), "{:?} v{version}", api.key);
            }
        }
    }

    #[test]
    fn a_lying_int32_array_length_is_caught() {
        // Fetch v7: replica, wait, min, max, isolation, session id, epoch, no topics, then
        // one forgotten topic that claims a billion partitions.
        let mut body = vec![0u8; 4 * 4 + 1 + 4 * 2];
        body.extend_from_slice(&0i32.to_be_bytes());
        body.extend_from_slice(&1i32.to_be_bytes());
        body.extend_from_slice(&[0, 1, b'x']);
        body.extend_from_slice(&1_000_000_000i32.to_be_bytes());
        assert!(matches!(check(ApiKey::Fetch, 7, &body), Err(ShapeError::Truncated { .. })));
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
