//! The Postgres storage engine: [`storage::PgStorage`] implements the core's `Storage`
//! trait with SPI, [`copy_in`] feeds the group-commit writer's rows to COPY, and
//! [`storage::TransactionRunner`] runs each unit of storage work in its own transaction.
//! Main thread only.

pub mod copy_in;
pub mod storage;
