//! Request versions Kafka 4 dropped (KIP-896) that deployed clients still send: old sarama
//! commits with OffsetCommit v1 and asks DescribeConfigs v0, Burrow lists offsets with
//! ListOffsets v0, old kafka-go creates topics with CreateTopics v0. `kafka-protocol`
//! follows Kafka 4's message definitions and cannot read them, so they are translated here,
//! byte for byte, to the lowest version we serve, and the answer back: the handlers only
//! ever see versions the codec knows.
//!
//! Produce v0-2 and Fetch v0-3 carry message sets of format 0 and 1, which pg_kafka does not
//! store or convert to: those get a well-formed answer with UNSUPPORTED_VERSION on every
//! partition (never a silent close), so the client reports why.
//!
//! Request bodies reach this module only after [`shape`](super::shape) walked them at their
//! own version: every length read here is backed by bytes present. Responses are our own.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::ApiKey;

/// UNSUPPORTED_VERSION.
const UNSUPPORTED_VERSION: i16 = 35;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("legacy {api:?} v{version}: {reason}")]
pub struct LegacyError {
    pub api: ApiKey,
    pub version: i16,
    pub reason: &'static str,
}

/// What to do with a request of a legacy version.
#[derive(Debug)]
pub enum Legacy {
    /// Serve it: this body, at `version`, is what the handler decodes.
    Translated { version: i16, body: Bytes },
    /// Answer at once with this body (at the request's own version); `None`: no answer
    /// at all (Produce with acks=0).
    Refused(Option<Bytes>),
}

/// Translates a legacy request body (already walked at `version`).
pub fn translate_request(api: ApiKey, version: i16, body: &[u8]) -> Result<Legacy, LegacyError> {
    let fail = |reason| LegacyError { api, version, reason };
    let mut t = Translator::new(body);
    let (served, body) = match api {
        ApiKey::OffsetCommit => (2, offset_commit_request(&mut t, version).map_err(fail)?),
        ApiKey::ListOffsets => (1, list_offsets_request(&mut t).map_err(fail)?),
        ApiKey::DescribeConfigs => {
            t.copy_rest();
            t.out.put_u8(0); // include_synonyms: false
            (1, t.finish())
        }
        ApiKey::CreateTopics => {
            t.copy_rest();
            if version == 0 {
                t.out.put_u8(0); // validate_only: false
            }
            (2, t.finish())
        }
        ApiKey::Produce => return produce_refusal(&mut t, version).map(Legacy::Refused).map_err(fail),
        ApiKey::Fetch => return fetch_refusal(&mut t, version).map(|b| Legacy::Refused(Some(b))).map_err(fail),
        _ => return Err(fail("no translation")),
    };
    Ok(Legacy::Translated { version: served, body })
}

/// Translates a response body encoded at the served version back to the client's `version`.
pub fn translate_response(api: ApiKey, version: i16, body: &[u8]) -> Result<Bytes, LegacyError> {
    let fail = |reason| LegacyError { api, version, reason };
    let mut t = Translator::new(body);
    match api {
        // v0 and v1 answer exactly as v2 does.
        ApiKey::OffsetCommit => t.copy_rest(),
        ApiKey::ListOffsets => list_offsets_response(&mut t).map_err(fail)?,
        ApiKey::DescribeConfigs => describe_configs_response(&mut t).map_err(fail)?,
        ApiKey::CreateTopics => create_topics_response(&mut t, version).map_err(fail)?,
        _ => return Err(fail("no translation")),
    }
    Ok(t.finish())
}

type Step = Result<(), &'static str>;

/// OffsetCommit v0 (group, topics[name, partitions[index, offset, metadata]]) and v1 (with
/// generation, member and a per-partition timestamp) to v2 (generation, member, retention).
fn offset_commit_request(t: &mut Translator, version: i16) -> Result<Bytes, &'static str> {
    t.copy_string()?;
    if version == 0 {
        t.out.put_i32(-1); // generation: a commit outside any group generation
        t.out.put_i16(0); // member id ""
    } else {
        t.copy(4)?;
        t.copy_string()?;
    }
    t.out.put_i64(-1); // retention: the broker's
    t.array(|t| {
        t.copy_string()?;
        t.array(|t| {
            t.copy(12)?; // index, offset
            if version == 1 {
                t.skip(8)?; // commit timestamp: the broker sets it
            }
            t.copy_string()
        })
    })?;
    Ok(t.finish())
}

/// ListOffsets v0's partitions also carry max_num_offsets, which v1 dropped.
fn list_offsets_request(t: &mut Translator) -> Result<Bytes, &'static str> {
    t.copy(4)?; // replica id
    t.array(|t| {
        t.copy_string()?;
        t.array(|t| {
            t.copy(12)?; // index, timestamp
            t.skip(4)
        })
    })?;
    Ok(t.finish())
}

/// v1's (timestamp, offset) per partition becomes v0's list of offsets: the one offset
/// found, or none.
fn list_offsets_response(t: &mut Translator) -> Step {
    t.array(|t| {
        t.copy_string()?;
        t.array(|t| {
            t.copy(4)?; // index
            let error = t.read_i16()?;
            t.out.put_i16(error);
            t.skip(8)?; // timestamp
            let offset = t.read_i64()?;
            if error == 0 && offset >= 0 {
                t.out.put_i32(1);
                t.out.put_i64(offset);
            } else {
                t.out.put_i32(0);
            }
            Ok(())
        })
    })
}

/// DescribeConfigs v1 to v0: config_source becomes is_default, synonyms go. As the
/// brokers of v0's time said, a value not set on the resource itself is the default:
/// Kafka's own default, or the broker's static one (pg_kafka's retention.ms, say).
fn describe_configs_response(t: &mut Translator) -> Step {
    const STATIC_BROKER_CONFIG: i8 = 4;
    const DEFAULT_CONFIG: i8 = 5;
    t.copy(4)?; // throttle
    t.array(|t| {
        t.copy(2)?; // error code
        t.copy_nullable_string()?;
        t.copy(1)?; // resource type
        t.copy_string()?;
        t.array(|t| {
            t.copy_string()?;
            t.copy_nullable_string()?;
            t.copy(1)?; // read only
            let source = t.read_i8()?;
            t.out.put_u8(u8::from(source == DEFAULT_CONFIG || source == STATIC_BROKER_CONFIG));
            t.copy(1)?; // sensitive
            t.skip_array(|t| {
                t.skip_string()?;
                t.skip_nullable_string()?;
                t.skip(1)
            })
        })
    })
}

/// CreateTopics v2 to v1 (no throttle time) and v0 (no error message either).
fn create_topics_response(t: &mut Translator, version: i16) -> Step {
    t.skip(4)?; // throttle
    t.array(|t| {
        t.copy_string()?;
        t.copy(2)?;
        if version == 0 {
            t.skip_nullable_string()
        } else {
            t.copy_nullable_string()
        }
    })
}

/// Produce v0-2 answered UNSUPPORTED_VERSION on every partition (none when acks is 0).
fn produce_refusal(t: &mut Translator, version: i16) -> Result<Option<Bytes>, &'static str> {
    let acks = t.read_i16()?;
    t.skip(4)?; // timeout
    t.array(|t| {
        t.copy_string()?;
        t.array(|t| {
            t.copy(4)?;
            t.skip_bytes()?;
            t.out.put_i16(UNSUPPORTED_VERSION);
            t.out.put_i64(-1); // base offset
            if version >= 2 {
                t.out.put_i64(-1); // log append time
            }
            Ok(())
        })
    })?;
    if version >= 1 {
        t.out.put_i32(0); // throttle
    }
    Ok((acks != 0).then(|| t.finish()))
}

/// Fetch v0-3 answered UNSUPPORTED_VERSION on every partition, with no records.
fn fetch_refusal(t: &mut Translator, version: i16) -> Result<Bytes, &'static str> {
    if version >= 1 {
        t.out.put_i32(0); // throttle
    }
    t.skip(12)?; // replica id, max wait, min bytes
    if version >= 3 {
        t.skip(4)?; // max bytes
    }
    t.array(|t| {
        t.copy_string()?;
        t.array(|t| {
            t.copy(4)?;
            t.skip(12)?; // fetch offset, partition max bytes
            t.out.put_i16(UNSUPPORTED_VERSION);
            t.out.put_i64(-1); // high watermark
            t.out.put_i32(0); // no records
            Ok(())
        })
    })?;
    Ok(t.finish())
}

/// Reads a classic (non-flexible) body and writes another, field by field.
struct Translator<'a> {
    src: &'a [u8],
    at: usize,
    out: BytesMut,
}

impl<'a> Translator<'a> {
    fn new(src: &'a [u8]) -> Translator<'a> {
        Translator { src, at: 0, out: BytesMut::with_capacity(src.len() + 64) }
    }

    fn finish(&mut self) -> Bytes {
        std::mem::take(&mut self.out).freeze()
    }

    fn take(&mut self, count: usize) -> Result<&'a [u8], &'static str> {
        let end = self.at.checked_add(count).filter(|end| *end <= self.src.len()).ok_or("truncated body")?;
        let bytes = &self.src[self.at..end];
        self.at = end;
        Ok(bytes)
    }

    fn skip(&mut self, count: usize) -> Step {
        self.take(count).map(drop)
    }

    fn copy(&mut self, count: usize) -> Step {
        let bytes = self.take(count)?;
        self.out.put_slice(bytes);
        Ok(())
    }

    fn copy_rest(&mut self) {
        self.out.put_slice(&self.src[self.at..]);
        self.at = self.src.len();
    }

    fn read_i8(&mut self) -> Result<i8, &'static str> {
        Ok(self.take(1)?[0] as i8)
    }

    fn read_i16(&mut self) -> Result<i16, &'static str> {
        Ok(i16::from_be_bytes(self.take(2)?.try_into().expect("2 bytes")))
    }

    fn read_i32(&mut self) -> Result<i32, &'static str> {
        Ok(i32::from_be_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }

    fn read_i64(&mut self) -> Result<i64, &'static str> {
        Ok(i64::from_be_bytes(self.take(8)?.try_into().expect("8 bytes")))
    }

    /// The byte length a string (2-byte length) or bytes (4-byte length) field spans after
    /// its length, 0 for null.
    fn string_length(&mut self) -> Result<usize, &'static str> {
        let length = self.read_i16()?;
        usize::try_from(length.max(0)).map_err(|_| "bad length")
    }

    fn copy_string(&mut self) -> Step {
        let start = self.at;
        let length = self.string_length()?;
        self.at = start;
        self.copy(2 + length)
    }

    fn copy_nullable_string(&mut self) -> Step {
        self.copy_string()
    }

    fn skip_string(&mut self) -> Step {
        let length = self.string_length()?;
        self.skip(length)
    }

    fn skip_nullable_string(&mut self) -> Step {
        self.skip_string()
    }

    fn skip_bytes(&mut self) -> Step {
        let length = self.read_i32()?;
        self.skip(usize::try_from(length.max(0)).map_err(|_| "bad length")?)
    }

    /// Copies an array's count, then translates each element with `each`.
    fn array(&mut self, mut each: impl FnMut(&mut Self) -> Step) -> Step {
        let count = self.read_i32()?;
        self.out.put_i32(count);
        for _ in 0..count.max(0) {
            each(self)?;
        }
        Ok(())
    }

    /// Reads past an array whose elements `each` skips, writing nothing.
    fn skip_array(&mut self, mut each: impl FnMut(&mut Self) -> Step) -> Step {
        let count = self.read_i32()?;
        for _ in 0..count.max(0) {
            each(self)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::{
        CreateTopicsRequest, CreateTopicsResponse, DescribeConfigsRequest, DescribeConfigsResponse, ListOffsetsRequest,
        ListOffsetsResponse, OffsetCommitRequest,
    };
    use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

    fn encode<M: Encodable>(message: &M, version: i16) -> Vec<u8> {
        let mut out = BytesMut::new();
        message.encode(&mut out, version).unwrap();
        out.to_vec()
    }

    fn str16(s: &str) -> Vec<u8> {
        let mut out = (s.len() as i16).to_be_bytes().to_vec();
        out.extend_from_slice(s.as_bytes());
        out
    }

    fn translated<M: Decodable>(api: ApiKey, version: i16, body: &[u8]) -> M {
        let Legacy::Translated { version: served, body } = translate_request(api, version, body).unwrap() else { panic!("refused") };
        let mut body = body;
        let message = M::decode(&mut body, served).unwrap();
        assert!(body.is_empty(), "translation left {} bytes", body.len());
        message
    }

    #[test]
    fn offset_commit_v0_and_v1_become_v2() {
        // v1: group "g", generation 7, member "m", topic "t", partition 3 at 42, timestamp, metadata "x"
        let mut v1 = str16("g");
        v1.extend(7i32.to_be_bytes());
        v1.extend(str16("m"));
        v1.extend(1i32.to_be_bytes());
        v1.extend(str16("t"));
        v1.extend(1i32.to_be_bytes());
        v1.extend(3i32.to_be_bytes());
        v1.extend(42i64.to_be_bytes());
        v1.extend(1_700_000_000_000i64.to_be_bytes());
        v1.extend(str16("x"));
        let request: OffsetCommitRequest = translated(ApiKey::OffsetCommit, 1, &v1);
        assert_eq!((request.group_id.as_str(), request.generation_id_or_member_epoch, request.member_id.as_str()), ("g", 7, "m"));
        let partition = &request.topics[0].partitions[0];
        assert_eq!((partition.partition_index, partition.committed_offset), (3, 42));
        assert_eq!(partition.committed_metadata.as_deref(), Some("x"));

        let mut v0 = str16("g");
        v0.extend(1i32.to_be_bytes());
        v0.extend(str16("t"));
        v0.extend(1i32.to_be_bytes());
        v0.extend(0i32.to_be_bytes());
        v0.extend(5i64.to_be_bytes());
        v0.extend((-1i16).to_be_bytes()); // null metadata
        let request: OffsetCommitRequest = translated(ApiKey::OffsetCommit, 0, &v0);
        assert_eq!((request.generation_id_or_member_epoch, request.member_id.as_str()), (-1, ""));
        assert_eq!(request.topics[0].partitions[0].committed_offset, 5);
    }

    #[test]
    fn list_offsets_v0_round_trips_through_v1() {
        let mut v0 = (-1i32).to_be_bytes().to_vec();
        v0.extend(1i32.to_be_bytes());
        v0.extend(str16("t"));
        v0.extend(2i32.to_be_bytes());
        for (partition, timestamp) in [(0i32, -1i64), (1, -2)] {
            v0.extend(partition.to_be_bytes());
            v0.extend(timestamp.to_be_bytes());
            v0.extend(1i32.to_be_bytes());
        }
        let request: ListOffsetsRequest = translated(ApiKey::ListOffsets, 0, &v0);
        let timestamps: Vec<i64> = request.topics[0].partitions.iter().map(|p| p.timestamp).collect();
        assert_eq!(timestamps, vec![-1, -2]);

        use kafka_protocol::messages::list_offsets_response::{ListOffsetsPartitionResponse, ListOffsetsTopicResponse};
        let response = ListOffsetsResponse::default().with_topics(vec![ListOffsetsTopicResponse::default()
            .with_name(StrBytes::from_static_str("t").into())
            .with_partitions(vec![
                ListOffsetsPartitionResponse::default().with_partition_index(0).with_offset(17),
                ListOffsetsPartitionResponse::default().with_partition_index(1).with_error_code(3).with_offset(-1),
            ])]);
        let old = translate_response(ApiKey::ListOffsets, 0, &encode(&response, 1)).unwrap();
        let mut expected = 1i32.to_be_bytes().to_vec();
        expected.extend(str16("t"));
        expected.extend(2i32.to_be_bytes());
        expected.extend(0i32.to_be_bytes());
        expected.extend(0i16.to_be_bytes());
        expected.extend(1i32.to_be_bytes());
        expected.extend(17i64.to_be_bytes());
        expected.extend(1i32.to_be_bytes());
        expected.extend(3i16.to_be_bytes());
        expected.extend(0i32.to_be_bytes());
        assert_eq!(old.to_vec(), expected);
    }

    #[test]
    fn describe_configs_v0_reports_is_default_and_no_synonyms() {
        use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
        let request = DescribeConfigsRequest::default().with_resources(vec![DescribeConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name(StrBytes::from_static_str("t"))
            .with_configuration_keys(None)]);
        let mut v0 = encode(&request, 1);
        v0.pop(); // v1's include_synonyms
        let back: DescribeConfigsRequest = translated(ApiKey::DescribeConfigs, 0, &v0);
        assert_eq!(back, request);

        use kafka_protocol::messages::describe_configs_response::{
            DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
        };
        let entry = |name: &'static str, source: i8| {
            DescribeConfigsResourceResult::default()
                .with_name(StrBytes::from_static_str(name))
                .with_value(Some(StrBytes::from_static_str("1")))
                .with_config_source(source)
                .with_synonyms(vec![DescribeConfigsSynonym::default().with_name(StrBytes::from_static_str(name))])
        };
        let response = DescribeConfigsResponse::default().with_results(vec![DescribeConfigsResult::default()
            .with_resource_type(2)
            .with_resource_name(StrBytes::from_static_str("t"))
            .with_configs(vec![entry("a", 5), entry("b", 1), entry("c", 4)])]);
        let old = translate_response(ApiKey::DescribeConfigs, 0, &encode(&response, 1)).unwrap();
        // Three entries: name, value "1", read_only, is_default, sensitive (9 bytes each).
        let entries = &old[old.len() - 3 * 9..];
        assert_eq!(entries[7], 1, "source 5 is the default");
        assert_eq!(entries[9 + 7], 0, "set on the topic");
        assert_eq!(entries[18 + 7], 1, "the broker's static value is not set on the topic");
    }

    #[test]
    fn create_topics_v0_and_v1_map_to_v2() {
        use kafka_protocol::messages::create_topics_request::CreatableTopic;
        let request = CreateTopicsRequest::default()
            .with_topics(vec![CreatableTopic::default().with_name(StrBytes::from_static_str("t").into()).with_num_partitions(3)])
            .with_timeout_ms(1000);
        let mut v0 = encode(&request, 2);
        v0.pop();
        let back: CreateTopicsRequest = translated(ApiKey::CreateTopics, 0, &v0);
        assert_eq!(back, request);
        let back: CreateTopicsRequest = translated(ApiKey::CreateTopics, 1, &encode(&request, 2));
        assert_eq!(back, request);

        use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
        let response = CreateTopicsResponse::default().with_topics(vec![CreatableTopicResult::default()
            .with_name(StrBytes::from_static_str("t").into())
            .with_error_code(36)
            .with_error_message(Some(StrBytes::from_static_str("exists")))]);
        let v2 = encode(&response, 2);
        assert_eq!(translate_response(ApiKey::CreateTopics, 1, &v2).unwrap().to_vec(), v2[4..].to_vec());
        let mut v0 = 1i32.to_be_bytes().to_vec();
        v0.extend(str16("t"));
        v0.extend(36i16.to_be_bytes());
        assert_eq!(translate_response(ApiKey::CreateTopics, 0, &v2).unwrap().to_vec(), v0);
    }

    #[test]
    fn old_produce_and_fetch_get_unsupported_version_per_partition() {
        let mut produce = 1i16.to_be_bytes().to_vec();
        produce.extend(1000i32.to_be_bytes());
        produce.extend(1i32.to_be_bytes());
        produce.extend(str16("t"));
        produce.extend(1i32.to_be_bytes());
        produce.extend(4i32.to_be_bytes());
        produce.extend(3i32.to_be_bytes());
        produce.extend([1, 2, 3]);
        let Legacy::Refused(Some(answer)) = translate_request(ApiKey::Produce, 2, &produce).unwrap() else { panic!() };
        let mut expected = 1i32.to_be_bytes().to_vec();
        expected.extend(str16("t"));
        expected.extend(1i32.to_be_bytes());
        expected.extend(4i32.to_be_bytes());
        expected.extend(35i16.to_be_bytes());
        expected.extend((-1i64).to_be_bytes());
        expected.extend((-1i64).to_be_bytes());
        expected.extend(0i32.to_be_bytes());
        assert_eq!(answer.to_vec(), expected);
        produce[..2].copy_from_slice(&0i16.to_be_bytes());
        assert!(matches!(translate_request(ApiKey::Produce, 2, &produce).unwrap(), Legacy::Refused(None)), "acks=0");

        let mut fetch = (-1i32).to_be_bytes().to_vec();
        fetch.extend(500i32.to_be_bytes());
        fetch.extend(1i32.to_be_bytes());
        fetch.extend(1i32.to_be_bytes());
        fetch.extend(str16("t"));
        fetch.extend(1i32.to_be_bytes());
        fetch.extend(0i32.to_be_bytes());
        fetch.extend(9i64.to_be_bytes());
        fetch.extend(1024i32.to_be_bytes());
        let Legacy::Refused(Some(answer)) = translate_request(ApiKey::Fetch, 2, &fetch).unwrap() else { panic!() };
        assert_eq!(answer.len(), 4 + 4 + 3 + 4 + 4 + 2 + 8 + 4);
        assert_eq!(&answer[answer.len() - 14..answer.len() - 12], &35i16.to_be_bytes());
    }

    #[test]
    fn truncated_bodies_fail_without_panicking() {
        for api in [ApiKey::OffsetCommit, ApiKey::ListOffsets, ApiKey::Produce, ApiKey::Fetch] {
            for cut in [&[][..], &[0, 5][..], &[0, 1, b'g', 0, 0, 0, 9][..]] {
                assert!(translate_request(api, 0, cut).is_err(), "{api:?} {cut:?}");
            }
        }
        assert!(translate_response(ApiKey::ListOffsets, 0, &[0, 0, 0, 3]).is_err());
    }
}
