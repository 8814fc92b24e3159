//! Request and response headers.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable};

/// The fixed part every request header starts with: api key, api version, correlation id.
const FIXED_HEADER_BYTES: usize = 8;

#[derive(Debug, thiserror::Error)]
pub enum HeaderError {
    #[error("request of {0} bytes is shorter than a request header")]
    TooShort(usize),
    #[error("unknown API key {api_key} (correlation id {correlation_id})")]
    UnknownApiKey { api_key: i16, correlation_id: i32 },
    #[error("malformed request header for {api_key:?} v{version}: {reason}")]
    Malformed { api_key: ApiKey, version: i16, reason: String },
}

#[derive(Debug, thiserror::Error)]
#[error("cannot encode {api_key:?} v{version} response: {reason}")]
pub struct EncodeError {
    pub api_key: ApiKey,
    pub version: i16,
    pub reason: String,
}

/// A request split into its decoded header and its still-encoded body.
#[derive(Debug)]
pub struct RequestFrame {
    pub api_key: ApiKey,
    pub header: RequestHeader,
    pub body: Bytes,
    /// The client's address as Kafka shows it (`/127.0.0.1`); set by the connection.
    pub client_host: String,
    /// The version the client sent, when [`legacy`](super::legacy) translated the body to
    /// the header's (lower-than-served) version: the answer goes back in that version.
    pub legacy_version: Option<i16>,
}

impl RequestFrame {
    pub fn version(&self) -> i16 {
        self.header.request_api_version
    }
}

/// Splits a frame into header and body. The header holds no arrays, so decoding it
/// cannot be made to over-allocate; strings are bounds-checked by the codec.
pub fn parse_request(mut frame: Bytes) -> Result<RequestFrame, HeaderError> {
    if frame.len() < FIXED_HEADER_BYTES {
        return Err(HeaderError::TooShort(frame.len()));
    }
    let raw_key = i16::from_be_bytes([frame[0], frame[1]]);
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    let correlation_id = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
    let api_key = ApiKey::try_from(raw_key).map_err(|_| HeaderError::UnknownApiKey { api_key: raw_key, correlation_id })?;
    let header_version = api_key.request_header_version(version);
    let header = RequestHeader::decode(&mut frame, header_version).map_err(|e| HeaderError::Malformed {
        api_key,
        version,
        reason: e.to_string(),
    })?;
    Ok(RequestFrame { api_key, header, body: frame, client_host: String::new(), legacy_version: None })
}

/// Encodes a whole response frame: size prefix, response header, body.
///
/// ApiVersions responses always use header v0, whatever the request version (KIP-511):
/// a client must be able to read the answer before it knows which versions we speak.
pub fn encode_response<M: Encodable>(api_key: ApiKey, version: i16, correlation_id: i32, body: &M) -> Result<Bytes, EncodeError> {
    let fail = |reason: String| EncodeError { api_key, version, reason };
    let header_version = match api_key {
        ApiKey::ApiVersions => 0,
        _ => api_key.response_header_version(version),
    };
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    let size = header.compute_size(header_version).map_err(|e| fail(e.to_string()))?
        + body.compute_size(version).map_err(|e| fail(e.to_string()))?;
    let mut out = BytesMut::with_capacity(4 + size);
    out.put_i32(i32::try_from(size).map_err(|_| fail(format!("{size} bytes is too large")))?);
    header.encode(&mut out, header_version).map_err(|e| fail(e.to_string()))?;
    body.encode(&mut out, version).map_err(|e| fail(e.to_string()))?;
    Ok(out.freeze())
}

/// A whole response frame for a body already encoded at a non-flexible version (response
/// header v0: size prefix and correlation id), as [`legacy`](super::legacy) writes them.
pub fn encode_classic_response(correlation_id: i32, body: &[u8]) -> Bytes {
    let mut frame = BytesMut::with_capacity(8 + body.len());
    frame.put_i32((4 + body.len()) as i32);
    frame.put_i32(correlation_id);
    frame.put_slice(body);
    frame.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::MetadataRequest;
    use kafka_protocol::protocol::StrBytes;

    fn encoded_request(key: ApiKey, version: i16, body: &MetadataRequest) -> Bytes {
        let header = RequestHeader::default()
            .with_request_api_key(key as i16)
            .with_request_api_version(version)
            .with_correlation_id(42)
            .with_client_id(Some(StrBytes::from_static_str("test")));
        let mut buf = BytesMut::new();
        header.encode(&mut buf, key.request_header_version(version)).unwrap();
        body.encode(&mut buf, version).unwrap();
        buf.freeze()
    }

    #[test]
    fn parses_flexible_and_non_flexible_headers() {
        for version in [1, 9, 12] {
            let frame = encoded_request(ApiKey::Metadata, version, &MetadataRequest::default());
            let parsed = parse_request(frame).unwrap();
            assert_eq!(parsed.api_key, ApiKey::Metadata);
            assert_eq!(parsed.version(), version);
            assert_eq!(parsed.header.correlation_id, 42);
            assert_eq!(parsed.header.client_id.as_deref(), Some("test"));
            MetadataRequest::decode(&mut parsed.body.clone(), version).unwrap();
        }
    }

    #[test]
    fn rejects_short_unknown_and_truncated_headers() {
        assert!(matches!(parse_request(Bytes::from_static(&[0, 3, 0])), Err(HeaderError::TooShort(3))));
        let unknown = Bytes::from_static(&[0x7f, 0x00, 0, 0, 0, 0, 0, 9]);
        assert!(matches!(parse_request(unknown), Err(HeaderError::UnknownApiKey { correlation_id: 9, .. })));
        // Metadata v1, client id claims 100 bytes, none follow.
        let truncated = Bytes::from_static(&[0, 3, 0, 1, 0, 0, 0, 1, 0, 100]);
        assert!(matches!(parse_request(truncated), Err(HeaderError::Malformed { .. })));
    }

    #[test]
    fn api_versions_response_header_is_always_v0() {
        let body = kafka_protocol::messages::ApiVersionsResponse::default();
        let frame = encode_response(ApiKey::ApiVersions, 3, 7, &body).unwrap();
        // size, correlation id, then straight into the body's error code (no tag buffer).
        assert_eq!(&frame[4..8], &7i32.to_be_bytes());
        assert_eq!(&frame[8..10], &0i16.to_be_bytes());
    }
}
