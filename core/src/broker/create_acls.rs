//! CreateAcls (v0-v3): stores ACLs in `kafka.acls`. Needs ALTER on the cluster.

use kafka_protocol::messages::create_acls_response::AclCreationResult;
use kafka_protocol::messages::{CreateAclsRequest, CreateAclsResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::acls::binding_from_wire;
use super::authorize::access;
use super::{decode, respond, storage_call, Broker, Outcome};
use crate::protocol::header::RequestFrame;
use crate::security::acl::Operation;

pub async fn handle(broker: &Broker, request: &RequestFrame) -> Outcome {
    let body: CreateAclsRequest = match decode(request) {
        Ok(body) => body,
        Err(outcome) => return outcome,
    };
    let failed = |error: ResponseError, message: String| {
        AclCreationResult::default().with_error_code(error.code()).with_error_message(Some(StrBytes::from_string(message)))
    };
    let access = access(broker).await;
    if let Err(denied) = access.check_cluster(Operation::Alter) {
        let results = body.creations.iter().map(|_| failed(denied, "ALTER on the cluster is needed".into())).collect();
        return respond(request, &CreateAclsResponse::default().with_results(results));
    }
    let parsed: Vec<Result<_, String>> = body
        .creations
        .iter()
        .map(|c| {
            binding_from_wire(
                c.resource_type,
                &c.resource_name,
                c.resource_pattern_type,
                &c.principal,
                &c.host,
                c.operation,
                c.permission_type,
            )
        })
        .collect();
    let valid: Vec<_> = parsed.iter().filter_map(|p| p.as_ref().ok().cloned()).collect();
    let stored = if valid.is_empty() { Ok(()) } else { storage_call(broker, move |s| s.create_acls(&valid)).await };
    broker.acls().invalidate();
    let results = parsed
        .into_iter()
        .map(|p| match (p, &stored) {
            (Err(problem), _) => failed(ResponseError::InvalidRequest, problem),
            (Ok(_), Err(e)) => failed(ResponseError::UnknownServerError, e.to_string()),
            (Ok(_), Ok(())) => AclCreationResult::default(),
        })
        .collect();
    respond(request, &CreateAclsResponse::default().with_results(results))
}
