//! DescribeCluster (v0-v1): one broker, which is also the controller.

use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::metadata::CLUSTER_ID;
use super::{decode, respond, Broker, Outcome, NODE_ID};
use crate::protocol::header::RequestFrame;

/// Endpoint types (v1+): 1 brokers, 2 controllers.
const BROKERS_ENDPOINT: i8 = 1;

pub async fn handle(broker: &Broker, request: &RequestFrame) -> Outcome {
    let body: DescribeClusterRequest = match decode(request) {
        Ok(body) => body,
        Err(outcome) => return outcome,
    };
    let response = DescribeClusterResponse::default().with_endpoint_type(BROKERS_ENDPOINT).with_cluster_authorized_operations(i32::MIN);
    if request.version() >= 1 && body.endpoint_type != BROKERS_ENDPOINT {
        return respond(request, &response.with_error_code(ResponseError::MismatchedEndpointType.code()));
    }
    let this_broker = DescribeClusterBroker::default()
        .with_broker_id(BrokerId(NODE_ID))
        .with_host(StrBytes::from_string(broker.config().advertised_host.clone()))
        .with_port(i32::from(broker.advertised_port));
    let response = response
        .with_cluster_id(StrBytes::from_static_str(CLUSTER_ID))
        .with_controller_id(BrokerId(NODE_ID))
        .with_brokers(vec![this_broker]);
    respond(request, &response)
}
