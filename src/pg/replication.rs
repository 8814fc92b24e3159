//! A primary and its standbys, from the worker's side. `kafka.cluster_leader`: the primary's
//! worker records its node id there when it starts; a standby's worker reads it, as
//! replayed, to tell clients who leads (pg_kafka_core::broker::cluster). A database still at
//! an extension version older than 0.10.0 has no such table: nothing is recorded, and
//! nobody is known to lead. And the standbys in sync now, before each group commit
//! (pg_kafka_core::writer::replicas), which the primary records in `kafka.cluster_in_sync`
//! (0.11.0) for standbys to name as in-sync replicas too.

use pg_kafka_core::config::SynchronousCommit;
use pg_kafka_core::storage::StorageError;

use super::storage::{execute, query_one, relations_exist};

const CLUSTER_LEADER: &str = include_str!("../../sql/queries/cluster_leader.sql");
const CLAIM_LEADERSHIP: &str = include_str!("../../sql/queries/claim_leadership.sql");
const IN_SYNC_STANDBYS: &str = include_str!("../../sql/queries/in_sync_standbys.sql");
const RECORDED_IN_SYNC: &str = include_str!("../../sql/queries/recorded_in_sync.sql");
const RECORD_IN_SYNC: &str = include_str!("../../sql/queries/record_in_sync.sql");
const COPIES_OF_COMMIT: &str = include_str!("../../sql/queries/copies_of_commit.sql");

fn table_exists() -> Result<bool, StorageError> {
    relations_exist(&["kafka.cluster_leader"])
}

fn in_sync_table_exists() -> Result<bool, StorageError> {
    relations_exist(&["kafka.cluster_in_sync"])
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
pub fn in_sync_standbys() -> Result<Option<Vec<String>>, StorageError> {
    let names = crate::gucs::postgres_option(c"synchronous_standby_names");
    let commit = crate::gucs::postgres_option(c"synchronous_commit");
    if names.is_none() || matches!(commit.as_deref(), Some("off" | "local")) {
        return Ok(None);
    }
    Ok(Some(query_one::<Vec<String>>(IN_SYNC_STANDBYS, &[])?.unwrap_or_default()))
}

pub fn recorded_in_sync() -> Result<Vec<i32>, StorageError> {
    if !in_sync_table_exists()? {
        return Ok(Vec::new());
    }
    Ok(query_one::<Vec<i32>>(RECORDED_IN_SYNC, &[])?.unwrap_or_default())
}

/// Commits locally: a record of who is in sync never waits for them.
pub fn record_in_sync(node_ids: &[i32]) -> Result<(), StorageError> {
    if !in_sync_table_exists()? {
        return Ok(());
    }
    commit_locally()?;
    execute(RECORD_IN_SYNC, &[node_ids.to_vec().into()])
}

/// The copies this session's last commit has now: compared by position, not by
/// `sync_state`, which a walsender changes only once it has reloaded its settings, after
/// the checkpointer may have let the commit go.
pub fn copies_of_last_commit() -> Result<i64, StorageError> {
    // SAFETY: a backend-local variable, read on the thread that runs this session.
    let end: u64 = unsafe { pgrx::pg_sys::XactLastCommitEnd };
    let position = format!("{:X}/{:X}", end >> 32, end & 0xFFFF_FFFF);
    let commit = crate::gucs::postgres_option(c"synchronous_commit").unwrap_or_default();
    Ok(query_one::<i64>(COPIES_OF_COMMIT, &[position.into(), commit.into()])?.unwrap_or(1))
}

/// This transaction commits without waiting for standbys.
pub fn commit_locally() -> Result<(), StorageError> {
    query_one::<String>("SELECT pg_catalog.set_config('synchronous_commit', 'local', true)", &[]).map(drop)
}
