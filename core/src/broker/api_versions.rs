//! ApiVersions: which APIs and versions we serve, read from the one versions table.
//!
//! A request of a version we do not serve is answered with UNSUPPORTED_VERSION in a v0
//! body that still lists our APIs (KIP-511); clients then retry with a version we list.

use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiVersionsRequest, ApiVersionsResponse};
use kafka_protocol::ResponseError;

use super::{respond, respond_at, session, Outcome};
use crate::protocol::header::RequestFrame;
use crate::protocol::versions::{self, SERVED_APIS};

pub fn handle(request: &mut RequestFrame) -> Outcome {
    note_client_software(request);
    let body = ApiVersionsResponse::default().with_api_keys(served_api_list());
    if versions::is_served(request.api_key, request.version()) {
        respond(request, &body)
    } else {
        respond_at(request, 0, &body.with_error_code(ResponseError::UnsupportedVersion.code()))
    }
}

/// Remembers the client library a v3+ request names (for `kafka.connections`), once its
/// body passed the shape check like any other request's.
fn note_client_software(request: &mut RequestFrame) {
    if request.version() < 3 || super::admit(request).is_err() {
        return;
    }
    let (Ok(body), Some(session)) = (super::decode::<ApiVersionsRequest>(request), session::current()) else { return };
    session.saw_software(body.client_software_name.as_str(), body.client_software_version.as_str());
}

fn served_api_list() -> Vec<ApiVersion> {
    SERVED_APIS
        .iter()
        .map(|api| ApiVersion::default().with_api_key(api.key as i16).with_min_version(api.min_advertised).with_max_version(api.max))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::testing::{broker, round_trip};
    use kafka_protocol::messages::ApiKey;

    #[tokio::test]
    async fn lists_exactly_the_served_apis_at_every_version() {
        for version in 0..=3 {
            let response: ApiVersionsResponse = round_trip(&broker(), ApiKey::ApiVersions, version, &ApiVersionsRequest::default()).await;
            assert_eq!(response.error_code, 0);
            assert_eq!(response.api_keys.len(), SERVED_APIS.len());
            let metadata = response.api_keys.iter().find(|k| k.api_key == ApiKey::Metadata as i16).unwrap();
            assert_eq!((metadata.min_version, metadata.max_version), (0, 12));
        }
    }

    #[tokio::test]
    async fn an_unsupported_version_gets_error_35_in_a_v0_body() {
        let frame = crate::broker::testing::request_frame(ApiKey::ApiVersions, 4, &ApiVersionsRequest::default());
        let Outcome::Respond(mut bytes) = broker().handle(frame).await else { panic!("no response") };
        use bytes::Buf;
        use kafka_protocol::protocol::Decodable;
        bytes.advance(8); // size, correlation id (header v0)
        let response = ApiVersionsResponse::decode(&mut bytes, 0).unwrap();
        assert_eq!(response.error_code, 35);
        assert_eq!(response.api_keys.len(), SERVED_APIS.len());
    }
}
