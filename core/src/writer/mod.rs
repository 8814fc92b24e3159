//! Work the storage thread does on its own schedule, not per request: the group-commit
//! writer that turns queued Produce batches into one transaction, the idempotent
//! producers' sequence checks it applies, how many copies a commit can have (synchronous
//! replication), and the periodic retention pass.

pub mod commit_queue;
pub mod compaction;
pub mod group_commit;
pub mod replicas;
pub mod retention;
pub mod sequences;
pub mod standby_acks;
pub mod transactions;
