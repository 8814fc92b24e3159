//! [`Storage`] on Postgres through SPI: the only module that runs SQL.
//!
//! Methods assume a transaction is open; [`TransactionRunner`] opens one per bridge job on
//! the worker's main thread, and `#[pg_test]`s run inside the test's own transaction.

use std::panic::{catch_unwind, AssertUnwindSafe};

use pgrx::prelude::*;
use pgrx::datum::TimestampWithTimeZone;
use pgrx::spi::{OwnedPreparedStatement, SpiClient, SpiTupleTable};
use pgrx::{PgBuiltInOids, PgOid};

use super::bridge::JobRunner;
use super::copy_in;
use super::{
    is_valid_topic_name, kafka_timestamp_ms, postgres_timestamp_us, record_bytes, MessageRows, ReadLimit, Storage,
    StorageError, StoredRecord, Topic,
};

const ALL_TOPICS: &str = include_str!("../../sql/queries/all_topics.sql");
const TOPIC_BY_NAME: &str = include_str!("../../sql/queries/topic_by_name.sql");
const CREATE_TOPIC: &str = include_str!("../../sql/queries/create_topic.sql");
const NEXT_OFFSET: &str = include_str!("../../sql/queries/next_offset.sql");
const READ_MESSAGES: &str = include_str!("../../sql/queries/read_messages.sql");
const FIRST_OFFSET: &str = include_str!("../../sql/queries/first_offset.sql");
const OFFSET_FOR_TIMESTAMP: &str = include_str!("../../sql/queries/offset_for_timestamp.sql");
const MAX_TIMESTAMP: &str = include_str!("../../sql/queries/max_timestamp.sql");

/// Rows a Fetch read asks the cursor for at a time; reading stops at the byte budget.
const READ_CHUNK_ROWS: i64 = 256;

/// Storage in the `kafka` schema of the connected database.
#[derive(Default)]
pub struct PgStorage {
    /// Fetch's index range scan, planned once and kept for the session.
    read_plan: Option<OwnedPreparedStatement>,
}

fn oid(o: PgBuiltInOids) -> PgOid {
    PgOid::BuiltIn(o)
}

/// The statement in `slot`, planning and keeping it on first use.
fn prepared<'a>(
    slot: &'a mut Option<OwnedPreparedStatement>,
    client: &mut SpiClient<'_>,
    sql: &str,
    types: &[PgOid],
) -> Result<&'a OwnedPreparedStatement, StorageError> {
    if slot.is_none() {
        *slot = Some(client.prepare_mut(sql, types).map_err(database_error)?.keep());
    }
    Ok(slot.as_ref().expect("prepared above"))
}

/// A timestamptz column as Kafka milliseconds (sub-millisecond parts of SQL-written rows
/// are truncated; infinities saturate).
fn kafka_timestamp(row: &pgrx::spi::SpiHeapTupleData<'_>, ordinal: usize) -> Result<i64, StorageError> {
    let ts: Option<TimestampWithTimeZone> = row.get(ordinal).map_err(database_error)?;
    Ok(ts.map_or(-1, |ts| kafka_timestamp_ms(ts.into())))
}

/// `(offset, timestamp)` from the first row of a one-row query, if any.
fn offset_and_timestamp(rows: SpiTupleTable<'_>) -> Result<Option<(i64, i64)>, StorageError> {
    match rows.into_iter().next() {
        None => Ok(None),
        Some(row) => {
            let offset: i64 = row.get(1).map_err(database_error)?.ok_or_else(|| database_error("null offset"))?;
            Ok(Some((offset, kafka_timestamp(&row, 2)?)))
        }
    }
}

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

    fn next_offset(&mut self, topic_id: i32, partition: i32) -> Result<i64, StorageError> {
        with_client(|client| {
            let rows = client.select(NEXT_OFFSET, Some(1), &[topic_id.into(), partition.into()]).map_err(database_error)?;
            rows.first().get_one::<i64>().map_err(database_error)?.ok_or_else(|| database_error("no next offset"))
        })
    }

    fn append(&mut self, rows: &MessageRows) -> Result<(), StorageError> {
        copy_in::copy_into_messages(copy_in::encode_binary(rows)?);
        Ok(())
    }

    fn read(&mut self, topic_id: i32, partition: i32, limit: ReadLimit) -> Result<Vec<StoredRecord>, StorageError> {
        let slot = &mut self.read_plan;
        with_client(|client| {
            let types = [
                oid(PgBuiltInOids::INT4OID),
                oid(PgBuiltInOids::INT4OID),
                oid(PgBuiltInOids::INT8OID),
                oid(PgBuiltInOids::INT8OID),
            ];
            let plan = prepared(slot, client, READ_MESSAGES, &types)?;
            let args = [topic_id.into(), partition.into(), limit.from.into(), limit.below.into()];
            let mut cursor = client.try_open_cursor(plan, &args).map_err(database_error)?;
            let mut records = Vec::new();
            let mut bytes = 0;
            loop {
                let rows = cursor.fetch(READ_CHUNK_ROWS as _).map_err(database_error)?;
                if rows.is_empty() {
                    return Ok(records);
                }
                for row in rows {
                    let bytea = |i| -> Result<Option<bytes::Bytes>, StorageError> {
                        Ok(row.get::<&[u8]>(i).map_err(database_error)?.map(bytes::Bytes::copy_from_slice))
                    };
                    let record = StoredRecord {
                        offset: row.get(1).map_err(database_error)?.ok_or_else(|| database_error("null offset"))?,
                        timestamp_ms: kafka_timestamp(&row, 2)?,
                        key: bytea(3)?,
                        value: bytea(4)?,
                        headers: bytea(5)?,
                    };
                    bytes += record_bytes(&record);
                    if !limit.admits(records.len(), bytes) {
                        return Ok(records);
                    }
                    records.push(record);
                }
            }
        })
    }

    fn first_offset(&mut self, topic_id: i32, partition: i32) -> Result<Option<i64>, StorageError> {
        with_client(|client| {
            let rows = client.select(FIRST_OFFSET, Some(1), &[topic_id.into(), partition.into()]).map_err(database_error)?;
            rows.first().get_one::<i64>().map_err(database_error)
        })
    }

    fn offset_for_timestamp(&mut self, topic_id: i32, partition: i32, timestamp_ms: i64) -> Result<Option<(i64, i64)>, StorageError> {
        // Targets beyond what Postgres can store: before everything, or after everything.
        let target = match postgres_timestamp_us(timestamp_ms).map(TimestampWithTimeZone::try_from) {
            Some(Ok(ts)) => ts,
            _ if timestamp_ms < 0 => TimestampWithTimeZone::negative_infinity(),
            _ => return Ok(None),
        };
        with_client(|client| {
            let args = [topic_id.into(), partition.into(), target.into()];
            offset_and_timestamp(client.select(OFFSET_FOR_TIMESTAMP, Some(1), &args).map_err(database_error)?)
        })
    }

    fn max_timestamp(&mut self, topic_id: i32, partition: i32) -> Result<Option<(i64, i64)>, StorageError> {
        with_client(|client| {
            let args = [topic_id.into(), partition.into()];
            offset_and_timestamp(client.select(MAX_TIMESTAMP, Some(1), &args).map_err(database_error)?)
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
    fn run(&mut self, job: &mut dyn FnMut(&mut dyn Storage) -> Result<(), String>) -> bool {
        let storage = &mut self.storage;
        let outcome = catch_unwind(AssertUnwindSafe(|| unsafe {
            pg_sys::SetCurrentStatementStartTimestamp();
            pg_sys::StartTransactionCommand();
            pg_sys::PushActiveSnapshot(pg_sys::GetTransactionSnapshot());
            let result = job(storage);
            pg_sys::PopActiveSnapshot();
            if result.is_ok() {
                pg_sys::CommitTransactionCommand();
            }
            result
        }));
        let failure = match outcome {
            Ok(Ok(())) => return true,
            Ok(Err(message)) => message,
            Err(payload) => describe_panic(&payload),
        };
        unsafe { pg_sys::AbortCurrentTransaction() };
        pgrx::warning!("pg_kafka: storage work failed and was rolled back: {failure}");
        false
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

/// Prepares the worker's session: creates the extension (schema and tables) in its
/// database if missing, and sets the writer's `synchronous_commit`.
pub fn prepare_session(synchronous_commit: &str) -> Result<(), String> {
    let mut runner = TransactionRunner::default();
    let mut result = Err("not run".to_owned());
    let ok = runner.run(&mut |_| {
        result = Spi::run("CREATE EXTENSION IF NOT EXISTS pg_kafka")
            .and_then(|_| {
                Spi::run_with_args("SELECT set_config('synchronous_commit', $1, false)", &[synchronous_commit.into()])
            })
            .map_err(|e| e.to_string());
        Ok(())
    });
    if ok { result } else { Err("preparing the session failed; see the previous log line".to_owned()) }
}
