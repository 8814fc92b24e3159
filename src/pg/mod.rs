//! The Postgres storage engine: [`storage::PgStorage`] implements the core's `Storage`
//! trait with SPI, [`copy_in`] feeds the group-commit writer's rows to COPY,
//! [`index_read`] reads Fetch's messages straight off the primary key index,
//! [`described`] reads what DescribeLogDirs and DescribeProducers show,
//! [`replication`] records which node leads a primary and which standbys are in sync,
//! [`roles`] reads roles for logins and principals, [`partition_lock`] is the append lock the writer and `kafka.produce()` share, and
//! [`cleaning`] does compaction's storage work, [`transactions`] keeps transactions' state,
//! [`storage::TransactionRunner`] runs each unit of storage work in its own transaction,
//! and [`privileged`] is how SQL runs with more privilege than its caller.
//! Main thread only.

pub mod cleaning;
pub mod copy_in;
pub mod described;
pub mod index_read;
pub mod partition_lock;
pub mod privileged;
pub mod replication;
pub mod roles;
pub mod storage;
pub mod transactions;
