//! Roles as authentication and the ACL cache see them: one query (`sql/queries/roles.sql`)
//! reads a role's login facts and memberships from `pg_authid`, for SASL logins and for
//! refreshing the principals of open connections.

use pg_kafka_core::security::acl::Principal;
use pg_kafka_core::storage::{LoginRole, StorageError};

use super::storage::{database_error, with_client};

const ROLES: &str = include_str!("../../sql/queries/roles.sql");

/// The named roles that exist, as authentication sees them (one query for logins and for
/// the principals the ACL cache refreshes).
pub(super) fn roles(names: &[String]) -> Result<Vec<LoginRole>, StorageError> {
    with_client(|client| {
        let rows = client.select(ROLES, None, &[names.to_vec().into()]).map_err(database_error)?;
        rows.into_iter()
            .map(|row| {
                let name: String = row.get(1).map_err(database_error)?.unwrap_or_default();
                let superuser: bool = row.get(2).map_err(database_error)?.unwrap_or(false);
                let members: String = row.get(3).map_err(database_error)?.unwrap_or_default();
                Ok(LoginRole {
                    password: row.get(4).map_err(database_error)?,
                    can_login: row.get(5).map_err(database_error)?.unwrap_or(false),
                    valid_until_ms: row.get(6).map_err(database_error)?,
                    principal: principal(name, superuser, &members),
                })
            })
            .collect()
    })
}

/// A principal from its name, superuser flag and `chr(1)`-separated memberships.
fn principal(name: String, superuser: bool, members: &str) -> Principal {
    let mut roles: std::collections::BTreeSet<String> = members.split('\u{1}').filter(|r| !r.is_empty()).map(str::to_owned).collect();
    roles.insert(name.clone());
    Principal { name, superuser, roles }
}
