//! Request handling: one module per Kafka API, named after it. The dispatcher here only
//! checks the version against [`versions`](crate::protocol::versions), checks the body's
//! shape, and routes.

pub mod api_versions;
pub mod metadata;

use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::messages::ApiKey;
use kafka_protocol::protocol::{Decodable, Encodable};

use crate::config::Config;
use crate::protocol::header::{encode_response, RequestFrame};
use crate::protocol::{shape, versions};
use crate::storage::bridge::StorageClient;

/// The single broker pg_kafka presents itself as.
pub const NODE_ID: i32 = 1;

/// What the connection should do after a request.
#[derive(Debug)]
pub enum Outcome {
    /// Send this frame (already size-prefixed).
    Respond(Bytes),
    /// Send nothing (Produce with acks=0).
    Silent,
    /// Close the connection; the reason goes to the server log. This is what Kafka does
    /// with requests it cannot answer in their own format (unknown or unsupported versions
    /// of APIs other than ApiVersions, malformed bodies).
    Close(String),
}

/// Everything a handler may use: settings, where clients should connect, and storage.
#[derive(Clone)]
pub struct Broker {
    pub config: Arc<Config>,
    /// The port clients are told to use (the bound port when `pg_kafka.port` is 0).
    pub advertised_port: u16,
    pub storage: StorageClient,
}

impl Broker {
    pub async fn handle(&self, request: RequestFrame) -> Outcome {
        let (api_key, version) = (request.api_key, request.version());
        if api_key == ApiKey::ApiVersions {
            return api_versions::handle(&request);
        }
        if !versions::is_served(api_key, version) {
            return Outcome::Close(format!("unsupported request {api_key:?} v{version}"));
        }
        if let Err(e) = shape::check(api_key, version, &request.body) {
            return Outcome::Close(format!("malformed {api_key:?} v{version} request: {e}"));
        }
        match api_key {
            ApiKey::Metadata => metadata::handle(self, &request).await,
            other => Outcome::Close(format!("no handler for {other:?}")),
        }
    }
}

/// Decodes a request body whose shape has been checked.
pub fn decode<M: Decodable>(request: &RequestFrame) -> Result<M, Outcome> {
    M::decode(&mut request.body.clone(), request.version()).map_err(|e| {
        Outcome::Close(format!("malformed {:?} v{} request: {e}", request.api_key, request.version()))
    })
}

/// Encodes `body` as the response to `request`.
pub fn respond<M: Encodable>(request: &RequestFrame, body: &M) -> Outcome {
    respond_at(request, request.version(), body)
}

/// Encodes `body` at `version`, which may differ from the request's (ApiVersions fallback).
pub fn respond_at<M: Encodable>(request: &RequestFrame, version: i16, body: &M) -> Outcome {
    match encode_response(request.api_key, version, request.header.correlation_id, body) {
        Ok(frame) => Outcome::Respond(frame),
        Err(e) => Outcome::Close(e.to_string()),
    }
}

#[cfg(test)]
pub(crate) mod testing {
    //! Drives handlers with real encoded requests against in-memory storage.

    use super::*;
    use crate::protocol::header::parse_request;
    use crate::storage::bridge::spawn_for_tests;
    use crate::storage::memory::MemoryStorage;
    use bytes::{Buf, BytesMut};
    use kafka_protocol::messages::{RequestHeader, ResponseHeader};
    use kafka_protocol::protocol::StrBytes;

    pub fn broker() -> Broker {
        Broker {
            config: Arc::new(Config::default()),
            advertised_port: 9092,
            storage: spawn_for_tests(MemoryStorage::default()),
        }
    }

    pub fn request_frame<M: Encodable>(key: ApiKey, version: i16, body: &M) -> RequestFrame {
        let header = RequestHeader::default()
            .with_request_api_key(key as i16)
            .with_request_api_version(version)
            .with_correlation_id(11)
            .with_client_id(Some(StrBytes::from_static_str("unit")));
        let mut buf = BytesMut::new();
        header.encode(&mut buf, key.request_header_version(version)).unwrap();
        body.encode(&mut buf, version).unwrap();
        parse_request(buf.freeze()).unwrap()
    }

    /// Sends `body` through the broker and decodes the response as `R`.
    pub async fn round_trip<M: Encodable, R: Decodable>(broker: &Broker, key: ApiKey, version: i16, body: &M) -> R {
        match broker.handle(request_frame(key, version, body)).await {
            Outcome::Respond(mut frame) => {
                let size = frame.get_i32() as usize;
                assert_eq!(size, frame.len());
                let header_version = if key == ApiKey::ApiVersions { 0 } else { key.response_header_version(version) };
                let header = ResponseHeader::decode(&mut frame, header_version).unwrap();
                assert_eq!(header.correlation_id, 11);
                R::decode(&mut frame, version).unwrap()
            }
            other => panic!("expected a response, got {other:?}"),
        }
    }
}
