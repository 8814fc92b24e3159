//! A primary and its standbys, from the worker's side. `kafka.cluster_leader`: the primary's
//! worker records its node id there when it starts; a standby's worker reads it, as
//! replayed, to tell clients who leads (pg_kafka_core::broker::cluster). A database still at
//! an extension version older than 0.10.0 has no such table: nothing is recorded, and
//! nobody is known to lead. And the standbys in sync now, before each group commit
//! (pg_kafka_core::writer::replicas).

use pg_kafka_core::config::SynchronousCommit;
use pg_kafka_core::storage::StorageError;

use super::storage::{execute, query_one, relations_exist};

const CLUSTER_LEADER: &str = include_str!("../../sql/queries/cluster_leader.sql");
const CLAIM_LEADERSHIP: &str = include_str!("../../sql/queries/claim_leadership.sql");
const IN_SYNC_STANDBYS: &str = include_str!("../../sql/queries/in_sync_standbys.sql");

fn table_exists() -> Result<bool, StorageError> {
    relations_exist(&["kafka.cluster_leader"])
}

pub fn cluster_leader() -> Result<Option<i32>, StorageError> {
    if !table_exists()? {
        return Ok(None);
    }
    query_one::<i32>(CLUSTER_LEADER, &[])
}

pub fn claim_leadership(node_id: i32) -> Result<(), StorageError> {
    if !table_exists()? {
        return Ok(());
    }
    execute(CLAIM_LEADERSHIP, &[node_id.into()])
}

/// The writer session's `synchronous_commit` for the configured one (at start and at each
/// reload): `local` while this process sees no `synchronous_standby_names`. The same
/// thing then (no standby to wait for), except while a reload is on its way: the
/// checkpointer may already have told every backend that standbys are named (shared
/// memory) before this process has read the new names, and a commit made with `on` would
/// wait for a standby that no count before it saw (seen on PostgreSQL 18).
pub fn session_synchronous_commit(configured: SynchronousCommit) -> &'static str {
    let waits_for_standbys = matches!(configured, SynchronousCommit::On | SynchronousCommit::RemoteWrite | SynchronousCommit::RemoteApply);
    match waits_for_standbys && crate::gucs::postgres_option(c"synchronous_standby_names").is_none() {
        true => SynchronousCommit::Local.as_setting(),
        false => configured.as_setting(),
    }
}

/// Before every group commit: without synchronous replication (the common case) the
/// settings alone say so, read from this process's GUCs without a statement.
pub fn in_sync_standbys() -> Result<Option<i64>, StorageError> {
    let names = crate::gucs::postgres_option(c"synchronous_standby_names");
    let commit = crate::gucs::postgres_option(c"synchronous_commit");
    if names.is_none() || matches!(commit.as_deref(), Some("off" | "local")) {
        return Ok(None);
    }
    query_one::<i64>(IN_SYNC_STANDBYS, &[])
}

/// This transaction commits without waiting for standbys.
pub fn commit_locally() -> Result<(), StorageError> {
    query_one::<String>("SELECT pg_catalog.set_config('synchronous_commit', 'local', true)", &[]).map(drop)
}
