//! DeleteAcls (v0-v3): deletes the ACLs each filter matches and returns them. Needs ALTER
//! on the cluster.

use kafka_protocol::messages::delete_acls_response::{DeleteAclsFilterResult, DeleteAclsMatchingAcl};
use kafka_protocol::messages::{DeleteAclsRequest, DeleteAclsResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::acls::{filter_from_wire, text, WireFilter};
use super::authorize::access;
use super::{decode, respond, storage_call, Broker, Outcome};
use crate::protocol::header::RequestFrame;
use crate::security::acl::Operation;

pub async fn handle(broker: &Broker, request: &RequestFrame) -> Outcome {
    let body: DeleteAclsRequest = match decode(request) {
        Ok(body) => body,
        Err(outcome) => return outcome,
    };
    let failed = |code: ResponseError, message: &str| {
        DeleteAclsFilterResult::default().with_error_code(code.code()).with_error_message(Some(StrBytes::from_string(message.to_owned())))
    };
    let access = access(broker).await;
    if let Err(denied) = access.check_cluster(Operation::Alter) {
        let results = body.filters.iter().map(|_| failed(denied, "ALTER on the cluster is needed")).collect();
        return respond(request, &DeleteAclsResponse::default().with_filter_results(results));
    }
    let parsed: Vec<Result<_, String>> = body
        .filters
        .iter()
        .map(|f| {
            filter_from_wire(WireFilter {
                resource_type: f.resource_type_filter,
                resource_name: &f.resource_name_filter,
                pattern_type: f.pattern_type_filter,
                principal: &f.principal_filter,
                host: &f.host_filter,
                operation: f.operation,
                permission: f.permission_type,
            })
        })
        .collect();
    let valid: Vec<_> = parsed.iter().filter_map(|p| p.as_ref().ok().cloned()).collect();
    let deleted = storage_call(broker, move |s| s.delete_acls(&valid)).await;
    broker.acls().invalidate();
    let mut deleted = match deleted {
        Ok(deleted) => deleted.into_iter(),
        Err(e) => {
            let results = body.filters.iter().map(|_| failed(ResponseError::UnknownServerError, &e.to_string())).collect();
            return respond(request, &DeleteAclsResponse::default().with_filter_results(results));
        }
    };
    let results = parsed
        .into_iter()
        .map(|p| match p {
            Err(problem) => failed(ResponseError::InvalidRequest, &problem),
            Ok(_) => {
                let acls = deleted.next().unwrap_or_default();
                let matching = acls.iter().map(|acl| {
                    DeleteAclsMatchingAcl::default()
                        .with_resource_type(acl.resource_type as i8)
                        .with_resource_name(text(&acl.resource_name))
                        .with_pattern_type(acl.pattern_type as i8)
                        .with_principal(text(&acl.principal))
                        .with_host(text(&acl.host))
                        .with_operation(acl.operation as i8)
                        .with_permission_type(acl.permission as i8)
                });
                DeleteAclsFilterResult::default().with_matching_acls(matching.collect())
            }
        })
        .collect();
    respond(request, &DeleteAclsResponse::default().with_filter_results(results))
}
