//! DescribeCluster (v0-v1): the nodes (broker/cluster.rs); the primary is the controller.

use super::authorize::access;
use crate::security::acl::{Operation, ResourceType, CLUSTER_NAME};
use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::metadata::CLUSTER_ID;
use super::{cluster, decode, respond, Broker, Outcome};
use crate::protocol::header::RequestFrame;

/// Endpoint types (v1+): 1 brokers, 2 controllers.
const BROKERS_ENDPOINT: i8 = 1;

pub async fn handle(broker: &Broker, request: &RequestFrame) -> Outcome {
    let body: DescribeClusterRequest = match decode(request) {
        Ok(body) => body,
        Err(outcome) => return outcome,
    };
    let access = access(broker).await;
    if let Err(denied) = access.check_cluster(Operation::Describe) {
        return respond(request, &DescribeClusterResponse::default().with_error_code(denied.code()));
    }
    let operations =
        if body.include_cluster_authorized_operations { access.operations(ResourceType::Cluster, CLUSTER_NAME) } else { i32::MIN };
    let response = DescribeClusterResponse::default().with_endpoint_type(BROKERS_ENDPOINT).with_cluster_authorized_operations(operations);
    if request.version() >= 1 && body.endpoint_type != BROKERS_ENDPOINT {
        return respond(request, &response.with_error_code(ResponseError::MismatchedEndpointType.code()));
    }
    let cluster = cluster::view(broker).await;
    let brokers = cluster
        .brokers
        .iter()
        .map(|n| {
            DescribeClusterBroker::default()
                .with_broker_id(BrokerId(n.id))
                .with_host(StrBytes::from_string(n.host.clone()))
                .with_port(n.port)
                .with_rack(n.rack.clone().map(StrBytes::from_string))
        })
        .collect();
    let response = response
        .with_cluster_id(StrBytes::from_static_str(CLUSTER_ID))
        .with_controller_id(BrokerId(cluster.leader.unwrap_or(-1)))
        .with_brokers(brokers);
    respond(request, &response)
}
