//! What CreateAcls, DescribeAcls and DeleteAcls share: ACLs and filters to and from the
//! wire's codes, and the authorization those APIs need (ALTER on the cluster to change ACLs,
//! DESCRIBE to read them).

use kafka_protocol::protocol::StrBytes;

use crate::security::acl::{AclBinding, AclFilter, Operation, PatternType, Permission, ResourceType};

/// The wire fields of a DescribeAcls request or a DeleteAcls filter.
pub struct WireFilter<'a> {
    pub resource_type: i8,
    pub resource_name: &'a Option<StrBytes>,
    pub pattern_type: i8,
    pub principal: &'a Option<StrBytes>,
    pub host: &'a Option<StrBytes>,
    pub operation: i8,
    pub permission: i8,
}

/// The filter, or what is wrong with it (answered INVALID_REQUEST).
pub fn filter_from_wire(wire: WireFilter<'_>) -> Result<AclFilter, String> {
    let text = |s: &Option<StrBytes>| s.as_ref().map(|s| s.as_str().to_owned());
    Ok(AclFilter {
        resource_type: Some(ResourceType::from_code(wire.resource_type).ok_or("unknown resource type")?),
        resource_name: text(wire.resource_name),
        pattern_type: Some(PatternType::from_code(wire.pattern_type).ok_or("unknown pattern type")?),
        principal: text(wire.principal),
        host: text(wire.host),
        operation: Some(Operation::from_code(wire.operation).ok_or("unknown operation")?),
        permission: Some(Permission::from_code(wire.permission).ok_or("unknown permission type")?),
    })
}

/// A binding from a CreateAcls creation's codes (validated by the caller).
#[allow(clippy::too_many_arguments)]
pub fn binding_from_wire(
    resource_type: i8,
    resource_name: &StrBytes,
    pattern_type: i8,
    principal: &StrBytes,
    host: &StrBytes,
    operation: i8,
    permission: i8,
) -> Result<AclBinding, String> {
    let binding = AclBinding {
        resource_type: ResourceType::from_code(resource_type).ok_or("unknown resource type")?,
        resource_name: resource_name.as_str().to_owned(),
        pattern_type: PatternType::from_code(pattern_type).ok_or("unknown pattern type")?,
        principal: principal.as_str().to_owned(),
        host: host.as_str().to_owned(),
        operation: Operation::from_code(operation).ok_or("unknown operation")?,
        permission: Permission::from_code(permission).ok_or("unknown permission type")?,
    };
    binding.validate().map_err(|e| e.to_string())?;
    if binding.host.is_empty() || binding.host.contains('\0') || binding.resource_name.contains('\0') || binding.principal.contains('\0') {
        return Err("names must be non-empty text without NUL bytes".into());
    }
    Ok(binding)
}

pub fn text(value: &str) -> StrBytes {
    StrBytes::from_string(value.to_owned())
}
