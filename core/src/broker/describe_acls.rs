//! DescribeAcls (v0-v3): the stored ACLs a filter matches, grouped by resource. Needs
//! DESCRIBE on the cluster.

use std::collections::BTreeMap;

use kafka_protocol::messages::describe_acls_response::{AclDescription, DescribeAclsResource};
use kafka_protocol::messages::{DescribeAclsRequest, DescribeAclsResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::acls::{filter_from_wire, text, WireFilter};
use super::authorize::access;
use super::{decode, respond, storage_call, Broker, Outcome};
use crate::protocol::header::RequestFrame;
use crate::security::acl::Operation;

pub async fn handle(broker: &Broker, request: &RequestFrame) -> Outcome {
    let body: DescribeAclsRequest = match decode(request) {
        Ok(body) => body,
        Err(outcome) => return outcome,
    };
    let error = |code: ResponseError, message: String| {
        respond(
            request,
            &DescribeAclsResponse::default().with_error_code(code.code()).with_error_message(Some(StrBytes::from_string(message))),
        )
    };
    let access = access(broker).await;
    if let Err(denied) = access.check_cluster(Operation::Describe) {
        return error(denied, "DESCRIBE on the cluster is needed".into());
    }
    let filter = match filter_from_wire(WireFilter {
        resource_type: body.resource_type_filter,
        resource_name: &body.resource_name_filter,
        pattern_type: body.pattern_type_filter,
        principal: &body.principal_filter,
        host: &body.host_filter,
        operation: body.operation,
        permission: body.permission_type,
    }) {
        Ok(filter) => filter,
        Err(problem) => return error(ResponseError::InvalidRequest, problem),
    };
    let acls = match storage_call(broker, |s| s.acls()).await {
        Ok(acls) => acls,
        Err(e) => return error(ResponseError::UnknownServerError, e.to_string()),
    };
    let mut resources: BTreeMap<_, Vec<AclDescription>> = BTreeMap::new();
    for acl in acls.iter().filter(|a| filter.matches(a)) {
        resources.entry((acl.resource_type, acl.resource_name.clone(), acl.pattern_type)).or_default().push(
            AclDescription::default()
                .with_principal(text(&acl.principal))
                .with_host(text(&acl.host))
                .with_operation(acl.operation as i8)
                .with_permission_type(acl.permission as i8),
        );
    }
    let resources = resources
        .into_iter()
        .map(|((resource_type, name, pattern), acls)| {
            DescribeAclsResource::default()
                .with_resource_type(resource_type as i8)
                .with_resource_name(text(&name))
                .with_pattern_type(pattern as i8)
                .with_acls(acls)
        })
        .collect();
    respond(request, &DescribeAclsResponse::default().with_resources(resources))
}
