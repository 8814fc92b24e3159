//! The APIs and versions pg_kafka serves: the single source for ApiVersions responses and
//! for request validation. An API is listed here only once its handler exists.

use kafka_protocol::messages::ApiKey;

/// One served API: the versions advertised, and the subset actually decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServedApi {
    pub key: ApiKey,
    /// Lowest version advertised in ApiVersions.
    pub min_advertised: i16,
    /// Lowest version really served; versions below it get UNSUPPORTED_VERSION.
    /// (Produce is advertised from 0 but served from 3, because librdkafka turns
    /// compression off when Produce's advertised minimum is above 0.)
    pub min_served: i16,
    pub max: i16,
    /// Lowest version [`legacy`](super::legacy) translates to `min_served` (or answers
    /// UNSUPPORTED_VERSION in its own format); equal to `min_served` when there is none.
    pub min_legacy: i16,
}

const fn api(key: ApiKey, min: i16, max: i16) -> ServedApi {
    ServedApi { key, min_advertised: min, min_served: min, max, min_legacy: min }
}

/// An API whose versions from `legacy` up to `min` are translated (and advertised).
const fn with_legacy(key: ApiKey, legacy: i16, min: i16, max: i16) -> ServedApi {
    ServedApi { key, min_advertised: legacy, min_served: min, max, min_legacy: legacy }
}

pub const SERVED_APIS: &[ServedApi] = &[
    // Advertised from 0 though served from 3 (see `min_served`); v0-2 are answered
    // UNSUPPORTED_VERSION per partition, as Fetch v0-3 are (not advertised).
    with_legacy(ApiKey::Produce, 0, 3, 13),
    ServedApi { key: ApiKey::Fetch, min_advertised: 4, min_served: 4, max: 18, min_legacy: 0 },
    with_legacy(ApiKey::ListOffsets, 0, 1, 10),
    api(ApiKey::Metadata, 0, 12),
    api(ApiKey::ApiVersions, 0, 3),
    api(ApiKey::FindCoordinator, 0, 6),
    api(ApiKey::JoinGroup, 0, 9),
    api(ApiKey::SyncGroup, 0, 5),
    api(ApiKey::Heartbeat, 0, 4),
    api(ApiKey::LeaveGroup, 0, 5),
    with_legacy(ApiKey::OffsetCommit, 0, 2, 9),
    api(ApiKey::OffsetFetch, 1, 9),
    api(ApiKey::DescribeGroups, 0, 5),
    api(ApiKey::ListGroups, 0, 5),
    api(ApiKey::DeleteGroups, 0, 2),
    api(ApiKey::InitProducerId, 0, 5),
    with_legacy(ApiKey::CreateTopics, 0, 2, 7),
    api(ApiKey::DeleteTopics, 1, 6),
    api(ApiKey::CreatePartitions, 0, 3),
    with_legacy(ApiKey::DescribeConfigs, 0, 1, 4),
    api(ApiKey::AlterConfigs, 0, 2),
    api(ApiKey::IncrementalAlterConfigs, 0, 1),
    api(ApiKey::DescribeCluster, 0, 1),
    api(ApiKey::DeleteRecords, 0, 2),
    api(ApiKey::SaslHandshake, 0, 1),
    api(ApiKey::SaslAuthenticate, 0, 2),
    api(ApiKey::DescribeAcls, 1, 3),
    api(ApiKey::CreateAcls, 1, 3),
    api(ApiKey::DeleteAcls, 1, 3),
    api(ApiKey::ElectLeaders, 0, 2),
    api(ApiKey::OffsetDelete, 0, 0),
    api(ApiKey::ListPartitionReassignments, 0, 0),
    api(ApiKey::DescribeClientQuotas, 0, 1),
    api(ApiKey::DescribeLogDirs, 1, 4),
    api(ApiKey::DescribeProducers, 0, 0),
    // AddPartitionsToTxn as clients send it (v4+ is broker to broker); EndTxn and
    // TxnOffsetCommit v5 are Transactions V2 (KIP-890), which clients use when ApiVersions
    // finalizes `transaction.version` 2.
    api(ApiKey::AddPartitionsToTxn, 0, 3),
    api(ApiKey::AddOffsetsToTxn, 0, 4),
    api(ApiKey::TxnOffsetCommit, 0, 5),
    api(ApiKey::EndTxn, 0, 5),
    api(ApiKey::DescribeTransactions, 0, 0),
    // v2 filters ids by a regular expression: not served.
    api(ApiKey::ListTransactions, 0, 1),
];

/// The entry for `key`, if we serve that API at all.
pub fn served(key: ApiKey) -> Option<&'static ServedApi> {
    SERVED_APIS.iter().find(|api| api.key == key)
}

/// Whether `version` of `key` is one [`legacy`](super::legacy) translates or answers.
pub fn is_legacy(key: ApiKey, version: i16) -> bool {
    served(key).is_some_and(|api| (api.min_legacy..api.min_served).contains(&version))
}

/// Whether `version` of `key` is one we decode and answer.
pub fn is_served(key: ApiKey, version: i16) -> bool {
    served(key).is_some_and(|api| (api.min_served..=api.max).contains(&version))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_served_range_is_within_what_the_codec_supports() {
        for api in SERVED_APIS {
            let codec = api.key.valid_versions();
            assert!(api.min_advertised <= api.min_served, "{:?}", api.key);
            assert!(api.min_legacy <= api.min_advertised, "{:?}", api.key);
            assert!(api.min_served >= codec.min && api.max <= codec.max, "{:?}", api.key);
        }
    }

    #[test]
    fn versions_outside_the_table_are_not_served() {
        assert!(is_served(ApiKey::Metadata, 12));
        assert!(!is_served(ApiKey::Metadata, 13));
        assert!(!is_served(ApiKey::ApiVersions, 4));
        assert!(!is_served(ApiKey::Fetch, 3));
        assert!(is_served(ApiKey::Fetch, 4));
        assert!(!is_served(ApiKey::Produce, 2), "advertised but not served");
        assert!(is_served(ApiKey::Produce, 3));
        assert!(is_legacy(ApiKey::Produce, 2) && is_legacy(ApiKey::OffsetCommit, 0) && is_legacy(ApiKey::Fetch, 3));
        assert!(!is_legacy(ApiKey::Fetch, 4) && !is_legacy(ApiKey::Metadata, 0));
    }
}
