//! [`Storage`] on Postgres through SPI: the only module that runs SQL.
//!
//! Methods assume a transaction is open; [`TransactionRunner`] opens one per bridge job on
//! the worker's main thread, and `#[pg_test]`s run inside the test's own transaction.

use std::panic::{catch_unwind, AssertUnwindSafe};

use pgrx::prelude::*;
use pgrx::spi::{SpiClient, SpiTupleTable};

use super::bridge::JobRunner;
use super::{is_valid_topic_name, Storage, StorageError, Topic};

const ALL_TOPICS: &str = include_str!("../../sql/queries/all_topics.sql");
const TOPIC_BY_NAME: &str = include_str!("../../sql/queries/topic_by_name.sql");
const CREATE_TOPIC: &str = include_str!("../../sql/queries/create_topic.sql");

/// Storage in the `kafka` schema of the connected database.
#[derive(Default)]
pub struct PgStorage;

fn database_error(e: impl std::fmt::Display) -> StorageError {
    StorageError::Database(e.to_string())
}

/// Rows of `(id, name, topic_uuid, partitions)` as topics.
fn topics_from(rows: SpiTupleTable<'_>) -> Result<Vec<Topic>, StorageError> {
    let mut topics = Vec::with_capacity(rows.len());
    for row in rows {
        let uuid: pgrx::Uuid = row.get(3).map_err(database_error)?.ok_or_else(|| database_error("null topic_uuid"))?;
        topics.push(Topic {
            id: row.get(1).map_err(database_error)?.unwrap_or_default(),
            name: row.get(2).map_err(database_error)?.unwrap_or_default(),
            uuid: uuid::Uuid::from_bytes(*uuid.as_bytes()),
            partitions: row.get(4).map_err(database_error)?.unwrap_or_default(),
        });
    }
    Ok(topics)
}

fn with_client<R>(f: impl FnOnce(&mut SpiClient<'_>) -> Result<R, StorageError>) -> Result<R, StorageError> {
    Spi::connect_mut(f)
}

impl Storage for PgStorage {
    fn all_topics(&mut self) -> Result<Vec<Topic>, StorageError> {
        with_client(|client| topics_from(client.select(ALL_TOPICS, None, &[]).map_err(database_error)?))
    }

    fn topic(&mut self, name: &str) -> Result<Option<Topic>, StorageError> {
        with_client(|client| {
            let rows = client.select(TOPIC_BY_NAME, None, &[name.into()]).map_err(database_error)?;
            Ok(topics_from(rows)?.pop())
        })
    }

    fn create_topic(&mut self, name: &str, partitions: i32) -> Result<Topic, StorageError> {
        if !is_valid_topic_name(name) {
            return Err(StorageError::InvalidTopicName(name.to_owned()));
        }
        with_client(|client| {
            let rows = client
                .update(CREATE_TOPIC, None, &[name.into(), partitions.into()])
                .map_err(database_error)?;
            topics_from(rows)?.pop().ok_or_else(|| StorageError::TopicExists(name.to_owned()))
        })
    }
}

/// Runs each bridge job in its own transaction on the worker's main thread.
///
/// A Postgres ERROR inside a job arrives here as a Rust panic (pgrx converts the longjmp and
/// flushes the error state); the transaction is then aborted, the error logged, and the
/// job's caller sees the bridge's `Unavailable` error. The worker itself carries on.
#[derive(Default)]
pub struct TransactionRunner {
    storage: PgStorage,
}

impl JobRunner for TransactionRunner {
    fn run(&mut self, job: &mut dyn FnMut(&mut dyn Storage)) -> bool {
        let storage = &mut self.storage;
        let outcome = catch_unwind(AssertUnwindSafe(|| unsafe {
            pg_sys::SetCurrentStatementStartTimestamp();
            pg_sys::StartTransactionCommand();
            pg_sys::PushActiveSnapshot(pg_sys::GetTransactionSnapshot());
            job(storage);
            pg_sys::PopActiveSnapshot();
            pg_sys::CommitTransactionCommand();
        }));
        match outcome {
            Ok(()) => true,
            Err(payload) => {
                unsafe { pg_sys::AbortCurrentTransaction() };
                pgrx::warning!("pg_kafka: storage request failed and was rolled back: {}", describe_panic(&payload));
                false
            }
        }
    }
}

/// A panic payload as text: pgrx's caught Postgres errors, or a plain Rust panic message.
pub fn describe_panic(payload: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(message) = payload.downcast_ref::<&str>() {
        (*message).to_owned()
    } else if let Some(message) = payload.downcast_ref::<String>() {
        message.clone()
    } else if let Some(caught) = payload.downcast_ref::<pg_sys::panic::CaughtError>() {
        match caught {
            pg_sys::panic::CaughtError::PostgresError(report)
            | pg_sys::panic::CaughtError::ErrorReport(report)
            | pg_sys::panic::CaughtError::RustPanic { ereport: report, .. } => report.message().to_owned(),
        }
    } else {
        "unknown panic".to_owned()
    }
}

/// Creates the extension (schema and tables) in the worker's database if it is missing.
pub fn ensure_extension() -> Result<(), String> {
    let mut runner = TransactionRunner::default();
    let mut result = Err("not run".to_owned());
    let ok = runner.run(&mut |_| {
        result = Spi::run("CREATE EXTENSION IF NOT EXISTS pg_kafka").map_err(|e| e.to_string());
    });
    if ok { result } else { Err("CREATE EXTENSION pg_kafka failed; see the previous log line".to_owned()) }
}
