//! DescribeClientQuotas (v0-v1): pg_kafka enforces no client quotas (bytes and requests are
//! bounded by its budgets, `docs/security.md`), so every filter matches no entry, the answer
//! Kafka gives when none is set.

use kafka_protocol::messages::{DescribeClientQuotasRequest, DescribeClientQuotasResponse};
use kafka_protocol::protocol::StrBytes;

use super::authorize::access;
use super::{decode, respond, Broker, Outcome};
use crate::protocol::header::RequestFrame;
use crate::security::acl::Operation;

pub async fn handle(broker: &Broker, request: &RequestFrame) -> Outcome {
    if let Err(outcome) = decode::<DescribeClientQuotasRequest>(request) {
        return outcome;
    }
    let response = DescribeClientQuotasResponse::default();
    match access(broker).await.check_cluster(Operation::DescribeConfigs) {
        Ok(()) => respond(request, &response.with_entries(Some(Vec::new()))),
        Err(denied) => respond(
            request,
            &response
                .with_error_code(denied.code())
                .with_error_message(Some(StrBytes::from_static_str("DESCRIBE_CONFIGS on the cluster is needed"))),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::testing::{broker, round_trip};
    use kafka_protocol::messages::ApiKey;

    #[tokio::test]
    async fn no_quota_is_set() {
        for version in 0..=1 {
            let response: DescribeClientQuotasResponse =
                round_trip(&broker(), ApiKey::DescribeClientQuotas, version, &DescribeClientQuotasRequest::default()).await;
            assert_eq!((response.error_code, response.entries.map(|e| e.len())), (0, Some(0)));
        }
    }
}
