//! ApiVersions: which APIs and versions we serve, read from the one versions table, and
//! (v3+) the features we support and finalize: `transaction.version`, which tells Java
//! 4.x and franz-go to use Transactions V2 (KIP-890).
//!
//! A request of a version we do not serve is answered with UNSUPPORTED_VERSION in a v0
//! body that still lists our APIs (KIP-511); clients then retry with a version we list.

use kafka_protocol::messages::api_versions_response::{ApiVersion, FinalizedFeatureKey, SupportedFeatureKey};
use kafka_protocol::messages::{ApiVersionsRequest, ApiVersionsResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::{respond, respond_at, session, Outcome};
use crate::config::Config;
use crate::protocol::header::RequestFrame;
use crate::protocol::versions::{self, SERVED_APIS};

/// Kafka's feature for the transaction protocol: 2 is Transactions V2.
const TRANSACTION_VERSION: &str = "transaction.version";
const TRANSACTION_VERSION_MAX: i16 = 2;

pub fn handle(request: &mut RequestFrame, config: &Config) -> Outcome {
    note_client_software(request);
    let body = with_features(ApiVersionsResponse::default().with_api_keys(served_api_list()), config);
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

/// The features supported and finalized (fields of v3+, ignored by older versions). A
/// level of 0 is not listed as finalized, as Kafka lists it.
fn with_features(body: ApiVersionsResponse, config: &Config) -> ApiVersionsResponse {
    let name = StrBytes::from_static_str(TRANSACTION_VERSION);
    let supported = SupportedFeatureKey::default().with_name(name.clone()).with_min_version(0).with_max_version(TRANSACTION_VERSION_MAX);
    let level = config.transaction_version.clamp(0, TRANSACTION_VERSION_MAX);
    let finalized =
        (level > 0).then(|| FinalizedFeatureKey::default().with_name(name).with_min_version_level(level).with_max_version_level(level));
    body.with_supported_features(vec![supported])
        .with_finalized_features_epoch(config.features_epoch)
        .with_finalized_features(finalized.into_iter().collect())
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
    async fn finalizes_the_transaction_version_the_settings_name() {
        let level = |response: &ApiVersionsResponse| {
            let feature = response.finalized_features.iter().find(|f| f.name.as_str() == TRANSACTION_VERSION);
            feature.map(|f| (f.min_version_level, f.max_version_level))
        };
        let response: ApiVersionsResponse = round_trip(&broker(), ApiKey::ApiVersions, 3, &ApiVersionsRequest::default()).await;
        assert_eq!(level(&response), Some((2, 2)), "Transactions V2 by default");
        assert_eq!(response.supported_features[0].max_version, 2);
        let config = Config { transaction_version: 0, features_epoch: 7, ..Config::default() };
        let broker = crate::broker::testing::broker_on(crate::storage::memory::MemoryStorage::default(), config);
        let response: ApiVersionsResponse = round_trip(&broker, ApiKey::ApiVersions, 3, &ApiVersionsRequest::default()).await;
        assert_eq!((level(&response), response.finalized_features_epoch), (None, 7), "level 0 is not listed");
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
