//! Kafka ACLs and the decision over them, with Postgres role membership.
//!
//! An ACL is Kafka's binding (resource type, name, pattern, principal, host, operation,
//! allow/deny), stored one per row in `kafka.acls`. What a Kafka broker cannot do: an ACL
//! for `User:<role>` applies to every login that is a *member* of that role in Postgres, so
//! permissions follow the roles a DBA already manages. Deny wins over allow; superusers may
//! do everything; a resource with no matching allow is denied (Kafka's
//! `allow.everyone.if.no.acl.found=false`).
//!
//! Codes are Kafka's own (`AclOperation`, `ResourceType`, `PatternType`, `AclPermissionType`).

use std::collections::BTreeSet;

/// Kafka's `ResourceType` codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ResourceType {
    Any = 1,
    Topic = 2,
    Group = 3,
    Cluster = 4,
    TransactionalId = 5,
    DelegationToken = 6,
    User = 7,
}

/// Kafka's `PatternType` codes (`Any` and `Match` only in filters).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PatternType {
    Any = 1,
    Match = 2,
    Literal = 3,
    Prefixed = 4,
}

/// Kafka's `AclOperation` codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Operation {
    Any = 1,
    All = 2,
    Read = 3,
    Write = 4,
    Create = 5,
    Delete = 6,
    Alter = 7,
    Describe = 8,
    ClusterAction = 9,
    DescribeConfigs = 10,
    AlterConfigs = 11,
    IdempotentWrite = 12,
    CreateTokens = 13,
    DescribeTokens = 14,
}

/// Kafka's `AclPermissionType` codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Permission {
    Any = 1,
    Deny = 2,
    Allow = 3,
}

macro_rules! from_code {
    ($type:ident { $($variant:ident),* }) => {
        impl $type {
            pub fn from_code(code: i8) -> Option<$type> {
                [$($type::$variant),*].into_iter().find(|v| *v as i8 == code)
            }
        }
    };
}
from_code!(ResourceType { Any, Topic, Group, Cluster, TransactionalId, DelegationToken, User });
from_code!(PatternType { Any, Match, Literal, Prefixed });
from_code!(Operation {
    Any,
    All,
    Read,
    Write,
    Create,
    Delete,
    Alter,
    Describe,
    ClusterAction,
    DescribeConfigs,
    AlterConfigs,
    IdempotentWrite,
    CreateTokens,
    DescribeTokens
});
from_code!(Permission { Any, Deny, Allow });

/// The name of the one cluster resource, as Kafka names it.
pub const CLUSTER_NAME: &str = "kafka-cluster";
/// The literal name and principal that match everything.
pub const WILDCARD: &str = "*";
/// Principals are `User:<role>`.
pub const USER_PREFIX: &str = "User:";

/// One stored ACL.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AclBinding {
    pub resource_type: ResourceType,
    pub resource_name: String,
    pub pattern_type: PatternType,
    pub principal: String,
    pub host: String,
    pub operation: Operation,
    pub permission: Permission,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AclError {
    #[error("the resource type must be TOPIC, GROUP, CLUSTER, TRANSACTIONAL_ID, DELEGATION_TOKEN or USER")]
    ResourceType,
    #[error("the pattern type must be LITERAL or PREFIXED")]
    PatternType,
    #[error("the operation must be a concrete operation, not ANY")]
    Operation,
    #[error("the permission must be ALLOW or DENY")]
    Permission,
    #[error("the principal must be User:<role name> or User:*")]
    Principal,
    #[error("a cluster ACL must name the resource kafka-cluster")]
    ClusterName,
    #[error("the resource name must not be empty")]
    EmptyName,
}

impl AclBinding {
    /// Checks that this is a binding Kafka would store (no filter-only values).
    pub fn validate(&self) -> Result<(), AclError> {
        if matches!(self.resource_type, ResourceType::Any) {
            return Err(AclError::ResourceType);
        }
        if !matches!(self.pattern_type, PatternType::Literal | PatternType::Prefixed) {
            return Err(AclError::PatternType);
        }
        if self.operation == Operation::Any {
            return Err(AclError::Operation);
        }
        if self.permission == Permission::Any {
            return Err(AclError::Permission);
        }
        if self.principal.strip_prefix(USER_PREFIX).is_none_or(str::is_empty) {
            return Err(AclError::Principal);
        }
        if self.resource_name.is_empty() {
            return Err(AclError::EmptyName);
        }
        if self.resource_type == ResourceType::Cluster && self.resource_name != CLUSTER_NAME {
            return Err(AclError::ClusterName);
        }
        Ok(())
    }

    /// Whether this ACL's resource pattern covers the resource `name` of `resource_type`.
    fn covers(&self, resource_type: ResourceType, name: &str) -> bool {
        self.resource_type == resource_type
            && match self.pattern_type {
                PatternType::Literal => self.resource_name == WILDCARD || self.resource_name == name,
                PatternType::Prefixed => name.starts_with(&self.resource_name),
                PatternType::Any | PatternType::Match => false,
            }
    }

    /// Whether this ACL is about `principal` (a member of roles `roles`) from `host`.
    fn applies_to(&self, roles: &BTreeSet<String>, host: &str) -> bool {
        let principal_ok = match self.principal.strip_prefix(USER_PREFIX) {
            Some(WILDCARD) => true,
            Some(role) => roles.contains(role),
            None => false,
        };
        principal_ok && (self.host == WILDCARD || self.host == host)
    }
}

/// A DescribeAcls / DeleteAcls filter: `None` fields and the `Any` codes match everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AclFilter {
    pub resource_type: Option<ResourceType>,
    pub resource_name: Option<String>,
    pub pattern_type: Option<PatternType>,
    pub principal: Option<String>,
    pub host: Option<String>,
    pub operation: Option<Operation>,
    pub permission: Option<Permission>,
}

impl AclFilter {
    pub fn matches(&self, acl: &AclBinding) -> bool {
        fn field<T: PartialEq>(filter: &Option<T>, any: Option<T>, value: &T) -> bool {
            match filter {
                None => true,
                Some(f) if Some(f) == any.as_ref() => true,
                Some(f) => f == value,
            }
        }
        field(&self.resource_type, Some(ResourceType::Any), &acl.resource_type)
            && self.name_matches(acl)
            && field(&self.principal, None, &acl.principal)
            && field(&self.host, None, &acl.host)
            && field(&self.operation, Some(Operation::Any), &acl.operation)
            && field(&self.permission, Some(Permission::Any), &acl.permission)
    }

    /// Name and pattern together: MATCH finds every ACL that would apply to the name
    /// (literal equal or `*`, or a prefix of it), as Kafka's filters do.
    fn name_matches(&self, acl: &AclBinding) -> bool {
        match (self.pattern_type.unwrap_or(PatternType::Any), &self.resource_name) {
            (PatternType::Match, Some(name)) => match acl.pattern_type {
                PatternType::Literal => acl.resource_name == *name || acl.resource_name == WILDCARD,
                PatternType::Prefixed => name.starts_with(&acl.resource_name),
                _ => false,
            },
            (PatternType::Match, None) | (PatternType::Any, None) => true,
            (PatternType::Any, Some(name)) => acl.resource_name == *name,
            (pattern, name) => acl.pattern_type == pattern && name.as_ref().is_none_or(|n| *n == acl.resource_name),
        }
    }
}

/// Who a request comes from, for authorization.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    /// The login role.
    pub name: String,
    pub superuser: bool,
    /// Every role the login is a member of, itself included (`pg_has_role(.., 'MEMBER')`).
    pub roles: BTreeSet<String>,
}

impl Principal {
    /// `User:<name>`, as Kafka shows principals.
    pub fn kafka_name(&self) -> String {
        format!("{USER_PREFIX}{}", self.name)
    }
}

/// Operations that, when allowed, also allow DESCRIBE (Kafka's implication rules).
const IMPLY_DESCRIBE: [Operation; 4] = [Operation::Read, Operation::Write, Operation::Delete, Operation::Alter];

/// Whether `principal` connecting from `host` may do `operation` on the resource.
pub fn is_allowed(acls: &[AclBinding], principal: &Principal, host: &str, operation: Operation, resource: (ResourceType, &str)) -> bool {
    if principal.superuser {
        return true;
    }
    let (resource_type, name) = resource;
    let relevant: Vec<&AclBinding> =
        acls.iter().filter(|acl| acl.covers(resource_type, name) && acl.applies_to(&principal.roles, host)).collect();
    let grants = |permission: Permission, op: Operation| {
        relevant.iter().any(|acl| acl.permission == permission && (acl.operation == op || acl.operation == Operation::All))
    };
    if grants(Permission::Deny, operation) {
        return false;
    }
    let implied: &[Operation] = match operation {
        Operation::Describe => &IMPLY_DESCRIBE,
        Operation::DescribeConfigs => &[Operation::AlterConfigs],
        _ => &[],
    };
    grants(Permission::Allow, operation) || implied.iter().any(|op| grants(Permission::Allow, *op) && !grants(Permission::Deny, *op))
}

/// The operations a resource type has, for the `authorized_operations` bit fields.
pub fn operations_of(resource_type: ResourceType) -> &'static [Operation] {
    use Operation::*;
    match resource_type {
        ResourceType::Topic => &[Read, Write, Create, Delete, Alter, Describe, DescribeConfigs, AlterConfigs],
        ResourceType::Group => &[Read, Delete, Describe],
        ResourceType::Cluster => &[Create, Alter, Describe, ClusterAction, DescribeConfigs, AlterConfigs, IdempotentWrite],
        _ => &[],
    }
}

/// Kafka's `authorized_operations` bit field: bit `op` set for each allowed operation.
pub fn operations_bits(allowed: impl Iterator<Item = Operation>) -> i32 {
    allowed.fold(0, |bits, op| bits | (1 << op as i32))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acl(resource: (ResourceType, &str, PatternType), principal: &str, op: Operation, permission: Permission) -> AclBinding {
        AclBinding {
            resource_type: resource.0,
            resource_name: resource.1.into(),
            pattern_type: resource.2,
            principal: principal.into(),
            host: "*".into(),
            operation: op,
            permission,
        }
    }

    fn login(name: &str, member_of: &[&str]) -> Principal {
        let mut roles: BTreeSet<String> = member_of.iter().map(|r| r.to_string()).collect();
        roles.insert(name.into());
        Principal { name: name.into(), superuser: false, roles }
    }

    const TOPIC: ResourceType = ResourceType::Topic;

    #[test]
    fn no_acl_means_denied_and_superusers_may_do_everything() {
        let alice = login("alice", &[]);
        assert!(!is_allowed(&[], &alice, "1.2.3.4", Operation::Read, (TOPIC, "t")));
        let admin = Principal { superuser: true, ..login("admin", &[]) };
        assert!(is_allowed(&[], &admin, "1.2.3.4", Operation::Delete, (TOPIC, "t")));
    }

    #[test]
    fn an_acl_on_a_group_role_applies_to_its_members() {
        let acls = [acl((TOPIC, "orders", PatternType::Literal), "User:writers", Operation::Write, Permission::Allow)];
        assert!(is_allowed(&acls, &login("alice", &["writers"]), "h", Operation::Write, (TOPIC, "orders")));
        assert!(!is_allowed(&acls, &login("bob", &["readers"]), "h", Operation::Write, (TOPIC, "orders")));
        assert!(!is_allowed(&acls, &login("alice", &["writers"]), "h", Operation::Write, (TOPIC, "other")));
    }

    #[test]
    fn deny_wins_and_prefixes_and_wildcards_match() {
        let acls = [
            acl((TOPIC, "app.", PatternType::Prefixed), "User:*", Operation::All, Permission::Allow),
            acl((TOPIC, "app.secret", PatternType::Literal), "User:bob", Operation::Read, Permission::Deny),
            acl((TOPIC, "*", PatternType::Literal), "User:carol", Operation::Describe, Permission::Allow),
        ];
        let bob = login("bob", &[]);
        assert!(is_allowed(&acls, &bob, "h", Operation::Read, (TOPIC, "app.events")));
        assert!(!is_allowed(&acls, &bob, "h", Operation::Read, (TOPIC, "app.secret")));
        assert!(is_allowed(&acls, &bob, "h", Operation::Write, (TOPIC, "app.secret")));
        assert!(!is_allowed(&acls, &bob, "h", Operation::Read, (TOPIC, "ap")));
        let carol = login("carol", &[]);
        assert!(is_allowed(&acls, &carol, "h", Operation::Describe, (TOPIC, "anything")));
        assert!(!is_allowed(&acls, &carol, "h", Operation::Read, (TOPIC, "anything")));
    }

    #[test]
    fn read_write_imply_describe_and_alter_configs_implies_describe_configs() {
        let acls = [
            acl((TOPIC, "t", PatternType::Literal), "User:a", Operation::Write, Permission::Allow),
            acl((TOPIC, "t", PatternType::Literal), "User:a", Operation::AlterConfigs, Permission::Allow),
        ];
        let a = login("a", &[]);
        assert!(is_allowed(&acls, &a, "h", Operation::Describe, (TOPIC, "t")));
        assert!(is_allowed(&acls, &a, "h", Operation::DescribeConfigs, (TOPIC, "t")));
        assert!(!is_allowed(&acls, &a, "h", Operation::Delete, (TOPIC, "t")));
    }

    #[test]
    fn hosts_narrow_an_acl() {
        let mut only_local = acl((TOPIC, "t", PatternType::Literal), "User:a", Operation::Read, Permission::Allow);
        only_local.host = "127.0.0.1".into();
        let a = login("a", &[]);
        assert!(is_allowed(std::slice::from_ref(&only_local), &a, "127.0.0.1", Operation::Read, (TOPIC, "t")));
        assert!(!is_allowed(&[only_local], &a, "10.0.0.1", Operation::Read, (TOPIC, "t")));
    }

    #[test]
    fn filters_match_like_kafkas() {
        let literal = acl((TOPIC, "orders", PatternType::Literal), "User:a", Operation::Read, Permission::Allow);
        let prefixed = acl((TOPIC, "ord", PatternType::Prefixed), "User:b", Operation::Write, Permission::Allow);
        let everything = AclFilter::default();
        assert!(everything.matches(&literal) && everything.matches(&prefixed));
        let matching = AclFilter { pattern_type: Some(PatternType::Match), resource_name: Some("orders".into()), ..Default::default() };
        assert!(matching.matches(&literal) && matching.matches(&prefixed));
        let exact = AclFilter { pattern_type: Some(PatternType::Literal), resource_name: Some("orders".into()), ..Default::default() };
        assert!(exact.matches(&literal) && !exact.matches(&prefixed));
        let by_principal = AclFilter { principal: Some("User:b".into()), ..Default::default() };
        assert!(!by_principal.matches(&literal) && by_principal.matches(&prefixed));
    }

    #[test]
    fn only_concrete_bindings_validate() {
        let good = acl((TOPIC, "t", PatternType::Literal), "User:a", Operation::Read, Permission::Allow);
        assert_eq!(good.validate(), Ok(()));
        assert_eq!(AclBinding { pattern_type: PatternType::Match, ..good.clone() }.validate(), Err(AclError::PatternType));
        assert_eq!(AclBinding { principal: "Group:x".into(), ..good.clone() }.validate(), Err(AclError::Principal));
        assert_eq!(AclBinding { operation: Operation::Any, ..good.clone() }.validate(), Err(AclError::Operation));
        let cluster = AclBinding { resource_type: ResourceType::Cluster, resource_name: "x".into(), ..good };
        assert_eq!(cluster.validate(), Err(AclError::ClusterName));
    }

    #[test]
    fn operation_bits_are_kafkas() {
        assert_eq!(operations_bits([Operation::Read, Operation::Write].into_iter()), (1 << 3) | (1 << 4));
    }
}
