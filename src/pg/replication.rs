//! A primary and its standbys, from the worker's side. `kafka.cluster_leader`: the primary's
//! worker records its node id there when it starts; a standby's worker reads it, as
//! replayed, to tell clients who leads (pg_kafka_core::broker::cluster). A database still at
//! an extension version older than 0.10.0 has no such table: nothing is recorded, and
//! nobody is known to lead. And the standbys in sync now, before each group commit
//! (pg_kafka_core::writer::replicas), which the primary records in `kafka.cluster_in_sync`
//! (0.11.0) for standbys to name as in-sync replicas too; and how far they confirmed the
//! writer's local commits ([`WalSenders`]).

use pg_kafka_core::config::SynchronousCommit;
use pg_kafka_core::storage::StorageError;
use pg_kafka_core::writer::standby_acks::ReplicationProgress;
use pgrx::pg_sys;

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

/// The copies a commit that ended at `commit_end` has now: compared by position, not by
/// `sync_state`, which a walsender changes only once it has reloaded its settings, after
/// the checkpointer may have let the commit go.
pub fn copies_of_commit(commit_end: u64) -> Result<i64, StorageError> {
    let position = format!("{:X}/{:X}", commit_end >> 32, commit_end & 0xFFFF_FFFF);
    let commit = crate::gucs::postgres_option(c"synchronous_commit").unwrap_or_default();
    Ok(query_one::<i64>(COPIES_OF_COMMIT, &[position.into(), commit.into()])?.unwrap_or(1))
}

/// The writer's commits and the synchronous standbys' confirmations, from this backend's
/// variables and the walsenders' shared memory (pg_kafka_core::writer::standby_acks).
pub struct WalSenders;

impl ReplicationProgress for WalSenders {
    fn last_commit_end(&mut self) -> u64 {
        // SAFETY: a backend-local variable, read on the thread that runs this session.
        unsafe { pg_sys::XactLastCommitEnd }
    }

    fn confirmed(&self) -> Option<u64> {
        // SAFETY: this session's GUC, read on its thread; WalSndCtl points into shared
        // memory set up before any background worker starts. `lsn[]` is what the
        // walsenders write under SyncRepLock and what SyncRepWaitForLSN reads: an aligned
        // 64-bit position that only moves forward, read whole without the lock.
        unsafe {
            let mode = match pg_sys::synchronous_commit as u32 {
                pg_sys::SyncCommitLevel::SYNCHRONOUS_COMMIT_REMOTE_WRITE => pg_sys::SYNC_REP_WAIT_WRITE,
                pg_sys::SyncCommitLevel::SYNCHRONOUS_COMMIT_REMOTE_FLUSH => pg_sys::SYNC_REP_WAIT_FLUSH,
                pg_sys::SyncCommitLevel::SYNCHRONOUS_COMMIT_REMOTE_APPLY => pg_sys::SYNC_REP_WAIT_APPLY,
                _ => return None,
            };
            let control = pg_sys::WalSndCtl;
            if control.is_null() || !standbys_defined(control) {
                return None;
            }
            Some(std::ptr::read_volatile(std::ptr::addr_of!((*control).lsn[mode as usize])))
        }
    }
}

/// Whether commits wait for standbys now, as the checkpointer last told every backend
/// (before it has, as this process's settings say: Postgres's own rule).
///
/// # Safety
/// `control` is the walsenders' shared memory.
unsafe fn standbys_defined(control: *mut pg_sys::WalSndCtlData) -> bool {
    #[cfg(feature = "pg16")]
    // SAFETY: as the caller promises; a flag only the checkpointer writes.
    unsafe {
        std::ptr::read_volatile(std::ptr::addr_of!((*control).sync_standbys_defined))
    }
    #[cfg(not(feature = "pg16"))]
    {
        // SAFETY: as the caller promises; a byte only the checkpointer writes.
        let status = u32::from(unsafe { std::ptr::read_volatile(std::ptr::addr_of!((*control).sync_standbys_status)) });
        match status & pg_sys::SYNC_STANDBY_INIT {
            0 => crate::gucs::postgres_option(c"synchronous_standby_names").is_some(),
            _ => status & pg_sys::SYNC_STANDBY_DEFINED != 0,
        }
    }
}

/// This transaction commits without waiting for standbys.
pub fn commit_locally() -> Result<(), StorageError> {
    query_one::<String>("SELECT pg_catalog.set_config('synchronous_commit', 'local', true)", &[]).map(drop)
}
