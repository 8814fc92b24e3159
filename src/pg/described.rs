//! What the broker describes of itself from Postgres: the log directory's usage
//! (DescribeLogDirs), the producers a partition keeps (DescribeProducers) and the committed
//! offsets `__consumer_offsets` serves. Each is one bounded query; the storage engine's
//! trait methods call these.

use pg_kafka_core::storage::offsets_topic::OffsetCommitRecord;
use pg_kafka_core::storage::{ActiveProducer, LogDirUsage, StorageError, DESCRIBED_PRODUCERS_LIMIT};
use pgrx::prelude::*;

use super::storage::{database_error, query_one};

const ACTIVE_PRODUCERS: &str = include_str!("../../sql/queries/active_producers.sql");
const LOG_DIR_USAGE: &str = include_str!("../../sql/queries/log_dir_usage.sql");
const COUNT_MESSAGES_BOUNDED: &str = include_str!("../../sql/queries/count_messages_bounded.sql");
const OFFSET_COMMIT_RECORDS: &str = include_str!("../../sql/queries/offset_commit_records.sql");
const OFFSET_COMMIT_RANGE: &str = include_str!("../../sql/queries/offset_commit_range.sql");

/// Rows counted at most when the table has no row estimate yet (a small, new table).
const COUNTED_ROWS_LIMIT: i64 = 1_000_000;

pub fn active_producers(partitions: &[(i32, i32)]) -> Result<Vec<ActiveProducer>, StorageError> {
    if partitions.is_empty() {
        return Ok(Vec::new());
    }
    let topic_ids: Vec<i32> = partitions.iter().map(|(t, _)| *t).collect();
    let indexes: Vec<i32> = partitions.iter().map(|(_, p)| *p).collect();
    let limit = DESCRIBED_PRODUCERS_LIMIT as i64;
    Spi::connect(|client| {
        let rows = client.select(ACTIVE_PRODUCERS, None, &[topic_ids.into(), indexes.into(), limit.into()]).map_err(database_error)?;
        rows.into_iter()
            .map(|row| {
                let int = |i| row.get::<i32>(i).map_err(database_error).map(Option::unwrap_or_default);
                let big = |i| row.get::<i64>(i).map_err(database_error).map(|v| v.unwrap_or(-1));
                let epoch = row.get::<i16>(4).map_err(database_error)?.unwrap_or_default();
                let last_sequence = i32::try_from(big(5)?).map_err(|_| database_error("a stored sequence is out of range"))?;
                let partition = (int(1)?, int(2)?);
                Ok(ActiveProducer { partition, producer_id: big(3)?, epoch, last_sequence, last_timestamp_ms: big(6)? })
            })
            .collect()
    })
}

pub fn offset_commit_records(from: i64, below: i64, limit: usize) -> Result<Vec<OffsetCommitRecord>, StorageError> {
    let args = [from.into(), below.into(), (limit as i64).into()];
    Spi::connect(|client| {
        let rows = client.select(OFFSET_COMMIT_RECORDS, None, &args).map_err(database_error)?;
        rows.into_iter()
            .map(|row| {
                let big = |i| row.get::<i64>(i).map_err(database_error).map(Option::unwrap_or_default);
                let int = |i| row.get::<i32>(i).map_err(database_error).map(Option::unwrap_or_default);
                let text = |i| row.get::<String>(i).map_err(database_error).map(Option::unwrap_or_default);
                let metadata = row.get::<Vec<u8>>(7).map_err(database_error)?.unwrap_or_default();
                Ok(OffsetCommitRecord {
                    number: big(1)?,
                    group: text(2)?,
                    topic: text(3)?,
                    partition: int(4)?,
                    offset: big(5)?,
                    leader_epoch: int(6)?,
                    metadata: metadata.into(),
                    commit_time_ms: big(8)?,
                })
            })
            .collect()
    })
}

pub fn offset_commit_range() -> Result<(Option<i64>, i64), StorageError> {
    Spi::connect(|client| {
        let row = client.select(OFFSET_COMMIT_RANGE, Some(1), &[]).map_err(database_error)?.first();
        let oldest = row.get::<i64>(1).map_err(database_error)?;
        Ok((oldest, row.get::<i64>(2).map_err(database_error)?.unwrap_or_default()))
    })
}

pub fn log_dir_usage() -> Result<LogDirUsage, StorageError> {
    let (table_bytes, estimate) = Spi::connect(|client| {
        let row = client.select(LOG_DIR_USAGE, Some(1), &[]).map_err(database_error)?.first();
        let bytes = row.get::<i64>(1).map_err(database_error)?.unwrap_or_default();
        let rows = row.get::<i64>(2).map_err(database_error)?.unwrap_or(-1);
        Ok::<_, StorageError>((bytes, rows))
    })?;
    let table_rows =
        if estimate >= 0 { estimate } else { query_one::<i64>(COUNT_MESSAGES_BOUNDED, &[COUNTED_ROWS_LIMIT.into()])?.unwrap_or_default() };
    let path = data_directory();
    let (volume_bytes, usable_bytes) = volume(&path).unwrap_or((-1, -1));
    Ok(LogDirUsage { path, table_bytes, table_rows, volume_bytes, usable_bytes })
}

/// The cluster's data directory, as the postmaster resolved it.
fn data_directory() -> String {
    // SAFETY: DataDir is set once at start-up, before any background worker runs, and is
    // a NUL-terminated string for the life of the process (or null in a bare backend).
    let dir = unsafe { pg_sys::DataDir };
    if dir.is_null() {
        return String::new();
    }
    // SAFETY: non-null and NUL-terminated, see above.
    unsafe { std::ffi::CStr::from_ptr(dir) }.to_string_lossy().into_owned()
}

/// Total and available bytes of the file system holding `path`.
fn volume(path: &str) -> Option<(i64, i64)> {
    let c_path = std::ffi::CString::new(path).ok()?;
    let mut stats: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: a valid NUL-terminated path and a statvfs to fill.
    if unsafe { libc::statvfs(c_path.as_ptr(), &mut stats) } != 0 {
        return None;
    }
    let block = stats.f_frsize as i64;
    Some((block.saturating_mul(stats.f_blocks as i64), block.saturating_mul(stats.f_bavail as i64)))
}
