//! [`Storage`] on Postgres through SPI: the only module that runs SQL (with `copy_in`,
//! which runs COPY).
//!
//! Methods assume a transaction is open; [`TransactionRunner`] opens one per bridge job on
//! the worker's main thread, and `#[pg_test]`s run inside the test's own transaction.

use pg_kafka_core::security::acl::{AclBinding, AclFilter, Operation, PatternType, Permission, Principal, ResourceType};
use std::ffi::{c_int, c_uint};
use std::panic::{catch_unwind, AssertUnwindSafe};

use pgrx::datum::TimestampWithTimeZone;
use pgrx::prelude::*;
use pgrx::spi::{SpiClient, SpiTupleTable};

use pg_kafka_core::config::SynchronousCommit;
use pg_kafka_core::storage::bridge::JobRunner;
use pg_kafka_core::storage::copy_binary::{encode_batches, encode_binary};
use pg_kafka_core::storage::{
    is_storable_text, is_valid_topic_name, kafka_timestamp_ms, postgres_timestamp_us, ActiveProducer, BatchRow, CommittedOffset,
    LogDirUsage, LoginRole, MessageRows, OffsetCommit, PartitionCleaning, ProducerKey, ProducerState, ReadLimit, SequencedBatch, Storage,
    StorageError, StorageLayout, StoredRecord, Topic, TopicSettings,
};

use super::roles::roles;
use super::{cleaning, copy_in, index_read};
use pg_kafka_core::storage::offsets_topic::OffsetCommitRecord;
use pg_kafka_core::storage::transactions::{AbortedTxn, Durability, OpenTxn, PartitionTransactions, TxnLogChanges, TxnRecord};

const ALL_TOPICS: &str = include_str!("../../sql/queries/all_topics.sql");
const TOPIC_BY_NAME: &str = include_str!("../../sql/queries/topic_by_name.sql");
const CREATE_TOPIC: &str = include_str!("../../sql/queries/create_topic.sql");
const NEXT_OFFSET: &str = include_str!("../../sql/queries/next_offset.sql");
const FIRST_OFFSET: &str = include_str!("../../sql/queries/first_offset.sql");
const OFFSET_FOR_TIMESTAMP: &str = include_str!("../../sql/queries/offset_for_timestamp.sql");
const MAX_TIMESTAMP: &str = include_str!("../../sql/queries/max_timestamp.sql");
const DELETE_TOPIC: &str = include_str!("../../sql/queries/delete_topic.sql");
const SET_PARTITION_COUNT: &str = include_str!("../../sql/queries/set_partition_count.sql");
const TOPIC_CONFIGS: &str = include_str!("../../sql/queries/topic_configs.sql");
const CLEAR_TOPIC_CONFIGS: &str = include_str!("../../sql/queries/clear_topic_configs.sql");
const INSERT_TOPIC_CONFIGS: &str = include_str!("../../sql/queries/insert_topic_configs.sql");
const DELETE_RECORDS: &str = include_str!("../../sql/queries/delete_records.sql");
const MOVE_LOG_START: &str = include_str!("../../sql/queries/move_log_start.sql");
const COMMIT_OFFSETS: &str = include_str!("../../sql/queries/commit_offsets.sql");
const COMMITTED_OFFSETS: &str = include_str!("../../sql/queries/committed_offsets.sql");
const OFFSET_GROUPS: &str = include_str!("../../sql/queries/offset_groups.sql");
const DELETE_GROUP_OFFSETS: &str = include_str!("../../sql/queries/delete_group_offsets.sql");
const DELETE_PARTITION_OFFSETS: &str = include_str!("../../sql/queries/delete_partition_offsets.sql");
const NEXT_PRODUCER_ID: &str = include_str!("../../sql/queries/next_producer_id.sql");
const PRODUCER_STATE: &str = include_str!("../../sql/queries/producer_state.sql");
const RETENTION_TOPICS: &str = include_str!("../../sql/queries/retention_topics.sql");
const RETENTION_BY_TIME: &str = include_str!("../../sql/queries/retention_by_time.sql");
const RETENTION_BY_SIZE: &str = include_str!("../../sql/queries/retention_by_size.sql");
const SAVE_PRODUCER_STATES: &str = include_str!("../../sql/queries/save_producer_states.sql");
const BATCH_BYTES_PER_RECORD: &str = include_str!("../../sql/queries/batch_bytes_per_record.sql");
const ACLS: &str = include_str!("../../sql/queries/acls.sql");
const CREATE_ACLS: &str = include_str!("../../sql/queries/create_acls.sql");
const DELETE_ACLS: &str = include_str!("../../sql/queries/delete_acls.sql");

/// Storage in the `kafka` schema of the connected database.
#[derive(Default)]
pub struct PgStorage;

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

/// An SPI failure reported as a value (no SQLSTATE: Postgres ERRORs arrive as panics and
/// are described by [`TransactionRunner`]).
pub(super) fn database_error(e: impl std::fmt::Display) -> StorageError {
    StorageError::Database { sqlstate: None, message: e.to_string() }
}

/// Rows of `(id, name, topic_uuid, partitions, configs as name=value, storage)` as topics.
pub(crate) fn topics_from(rows: SpiTupleTable<'_>) -> Result<Vec<Topic>, StorageError> {
    let mut topics = Vec::with_capacity(rows.len());
    for row in rows {
        let uuid: pgrx::Uuid = row.get(3).map_err(database_error)?.ok_or_else(|| database_error("null topic_uuid"))?;
        let configs: Vec<String> = row.get(5).map_err(database_error)?.unwrap_or_default();
        let configs: Vec<(String, String)> =
            configs.iter().filter_map(|c| c.split_once('=')).map(|(n, v)| (n.to_owned(), v.to_owned())).collect();
        let storage: Option<String> = row.get(6).map_err(database_error)?;
        let layout = storage.as_deref().and_then(StorageLayout::parse).ok_or_else(|| database_error(format!("bad storage {storage:?}")))?;
        topics.push(Topic {
            id: row.get(1).map_err(database_error)?.unwrap_or_default(),
            name: row.get(2).map_err(database_error)?.unwrap_or_default(),
            uuid: uuid::Uuid::from_bytes(*uuid.as_bytes()),
            partitions: row.get(4).map_err(database_error)?.unwrap_or_default(),
            settings: TopicSettings::from_stored(&configs),
            layout,
        });
    }
    Ok(topics)
}

/// Refuses strings a `text` datum cannot hold (NUL bytes) with Postgres's own SQLSTATE
/// 22021, instead of building an invalid datum. Handlers refuse them earlier with a Kafka
/// error; this is the last line.
pub(super) fn storable<'a>(texts: impl IntoIterator<Item = &'a str>) -> Result<(), StorageError> {
    match texts.into_iter().find(|t| !is_storable_text(t)) {
        None => Ok(()),
        Some(_) => Err(StorageError::Database {
            sqlstate: Some("22021".into()),
            message: "a string from the wire holds a NUL byte, which text cannot store".into(),
        }),
    }
}

/// Runs a statement that returns no rows the caller needs.
pub(super) fn execute(sql: &str, args: &[pgrx::datum::DatumWithOid<'_>]) -> Result<(), StorageError> {
    with_client(|client| client.update(sql, None, args).map(drop).map_err(database_error))
}

/// Parses `array_to_string(recent_batches, ',')`: triples of first sequence, last sequence
/// and base offset.
fn parse_batches(flat: &str) -> Result<std::collections::VecDeque<SequencedBatch>, StorageError> {
    let numbers: Vec<i64> = flat
        .split(',')
        .filter(|n| !n.is_empty())
        .map(|n| n.parse().map_err(|_| database_error(format!("bad recent_batches value {n:?}"))))
        .collect::<Result<_, _>>()?;
    if !numbers.len().is_multiple_of(3) {
        return Err(database_error("recent_batches is not made of triples"));
    }
    let sequence = |n: i64| i32::try_from(n).map_err(|_| database_error("sequence out of range"));
    numbers
        .chunks(3)
        .map(|c| Ok(SequencedBatch { first_sequence: sequence(c[0])?, last_sequence: sequence(c[1])?, base_offset: c[2] }))
        .collect()
}

/// Batches as a 2-D array literal, `{{first,last,base},...}` (`{}` when none).
fn batches_literal(state: &ProducerState) -> String {
    let rows: Vec<String> =
        state.batches.iter().map(|b| format!("{{{},{},{}}}", b.first_sequence, b.last_sequence, b.base_offset)).collect();
    format!("{{{}}}", rows.join(","))
}

/// The first column of a query's first row, run as a read: pgrx's `Spi::get_one*` run
/// every statement as a write, which assigns a transaction id, which a hot standby
/// refuses ("cannot assign TransactionIds during recovery").
pub(super) fn query_one<T: pgrx::FromDatum + pgrx::IntoDatum>(
    sql: &str,
    args: &[pgrx::datum::DatumWithOid<'_>],
) -> Result<Option<T>, StorageError> {
    with_client(|client| match client.select(sql, Some(1), args).map_err(database_error)?.first().get_one::<T>() {
        Ok(value) => Ok(value),
        Err(pgrx::spi::SpiError::InvalidPosition) => Ok(None),
        Err(e) => Err(database_error(e)),
    })
}

/// Whether every named relation exists: a database whose extension is older than the
/// library (its DBA has not run ALTER EXTENSION pg_kafka UPDATE) lacks the newer tables.
pub(super) fn relations_exist(names: &[&str]) -> Result<bool, StorageError> {
    let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
    let exist = query_one::<bool>(
        "SELECT pg_catalog.bool_and(pg_catalog.to_regclass(n) IS NOT NULL) FROM pg_catalog.unnest($1::text[]) n",
        &[names.into()],
    );
    Ok(exist?.unwrap_or(false))
}

pub(super) fn with_client<R>(f: impl FnOnce(&mut SpiClient<'_>) -> Result<R, StorageError>) -> Result<R, StorageError> {
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

    fn create_topic_as(&mut self, name: &str, partitions: i32, layout: StorageLayout) -> Result<Topic, StorageError> {
        if !is_valid_topic_name(name) {
            return Err(StorageError::InvalidTopicName(name.to_owned()));
        }
        with_client(|client| {
            let args = [name.into(), partitions.into(), layout.as_str().into()];
            let rows = client.update(CREATE_TOPIC, None, &args).map_err(database_error)?;
            topics_from(rows)?.pop().ok_or_else(|| StorageError::TopicExists(name.to_owned()))
        })
    }

    fn next_offset(&mut self, topic_id: i32, partition: i32) -> Result<i64, StorageError> {
        with_client(|client| {
            let rows = client.select(NEXT_OFFSET, Some(1), &[topic_id.into(), partition.into()]).map_err(database_error)?;
            rows.first().get_one::<i64>().map_err(database_error)?.ok_or_else(|| database_error("no next offset"))
        })
    }

    fn try_lock_partition(&mut self, topic_id: i32, partition: i32) -> Result<bool, StorageError> {
        let locked = super::partition_lock::try_lock(topic_id, partition);
        // SQL sessions about to take the lock let the writer have a turn while it waits.
        if locked {
            crate::outbox::appends::granted((topic_id, partition));
        } else {
            crate::outbox::appends::want((topic_id, partition));
        }
        Ok(locked)
    }

    fn see_latest_commits(&mut self) -> Result<(), StorageError> {
        // SAFETY: inside the runner's transaction, between statements: the snapshot it
        // pushed is replaced by the latest one (whatever the isolation level), which the
        // runner pops at the end as before. Reads that follow (pgrx runs a transaction's
        // reads before its first write read-only, under the active snapshot) see what was
        // committed before the locks were granted.
        unsafe {
            pg_sys::CommandCounterIncrement();
            pg_sys::PopActiveSnapshot();
            pg_sys::PushActiveSnapshot(pg_sys::GetLatestSnapshot());
        }
        Ok(())
    }

    fn append(&mut self, rows: &MessageRows) -> Result<(), StorageError> {
        copy_in::copy_into(c"messages", encode_binary(rows)?);
        Ok(())
    }

    fn append_batches(&mut self, batches: &[BatchRow]) -> Result<(), StorageError> {
        copy_in::copy_into(c"batches", encode_batches(batches)?);
        Ok(())
    }

    fn read(&mut self, topic_id: i32, partition: i32, limit: ReadLimit) -> Result<Vec<StoredRecord>, StorageError> {
        index_read::read_partition(topic_id, partition, limit)
    }

    fn read_batches(&mut self, topic_id: i32, partition: i32, limit: ReadLimit) -> Result<Vec<bytes::Bytes>, StorageError> {
        index_read::read_batches(topic_id, partition, limit)
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

    fn delete_topic(&mut self, topic_id: i32) -> Result<(), StorageError> {
        execute(DELETE_TOPIC, &[topic_id.into()])
    }

    fn set_partition_count(&mut self, topic_id: i32, partitions: i32) -> Result<(), StorageError> {
        execute(SET_PARTITION_COUNT, &[topic_id.into(), partitions.into()])
    }

    fn topic_configs(&mut self, topic_id: i32) -> Result<Vec<(String, String)>, StorageError> {
        with_client(|client| {
            let rows = client.select(TOPIC_CONFIGS, None, &[topic_id.into()]).map_err(database_error)?;
            rows.into_iter()
                .map(|row| {
                    let name: Option<String> = row.get(1).map_err(database_error)?;
                    let value: Option<String> = row.get(2).map_err(database_error)?;
                    Ok((name.unwrap_or_default(), value.unwrap_or_default()))
                })
                .collect()
        })
    }

    fn replace_topic_configs(&mut self, topic_id: i32, configs: &[(String, String)]) -> Result<(), StorageError> {
        execute(CLEAR_TOPIC_CONFIGS, &[topic_id.into()])?;
        if configs.is_empty() {
            return Ok(());
        }
        storable(configs.iter().flat_map(|(n, v)| [n.as_str(), v.as_str()]))?;
        let names: Vec<String> = configs.iter().map(|(n, _)| n.clone()).collect();
        let values: Vec<String> = configs.iter().map(|(_, v)| v.clone()).collect();
        execute(INSERT_TOPIC_CONFIGS, &[topic_id.into(), names.into(), values.into()])
    }

    fn delete_records_before(&mut self, topic_id: i32, partition: i32, offset: i64) -> Result<(), StorageError> {
        execute(DELETE_RECORDS, &[topic_id.into(), partition.into(), offset.into()])?;
        execute(MOVE_LOG_START, &[topic_id.into(), partition.into(), offset.into()])?;
        super::transactions::forget_aborted_before(topic_id, partition, offset)
    }

    fn commit_offsets(&mut self, group: &str, offsets: &[OffsetCommit]) -> Result<(), StorageError> {
        storable([group])?;
        let column = |f: fn(&OffsetCommit) -> i32| -> Vec<i32> { offsets.iter().map(f).collect() };
        let (topic_ids, partitions, epochs) = (column(|o| o.topic_id), column(|o| o.partition), column(|o| o.leader_epoch));
        let committed: Vec<i64> = offsets.iter().map(|o| o.offset).collect();
        // Metadata text can hold goes to `metadata`, the rest (NUL) to `metadata_bytes`.
        let as_text = |o: &OffsetCommit| o.metadata.clone().filter(|m| is_storable_text(m));
        let as_bytes = |o: &OffsetCommit| o.metadata.as_ref().filter(|m| !is_storable_text(m)).map(|m| m.as_bytes().to_vec());
        let metadata: Vec<Option<String>> = offsets.iter().map(as_text).collect();
        let metadata_bytes: Vec<Option<Vec<u8>>> = offsets.iter().map(as_bytes).collect();
        let args =
            [group.into(), topic_ids.into(), partitions.into(), committed.into(), epochs.into(), metadata.into(), metadata_bytes.into()];
        execute(COMMIT_OFFSETS, &args)
    }

    fn committed_offsets(&mut self, group: &str) -> Result<Vec<CommittedOffset>, StorageError> {
        storable([group])?;
        with_client(|client| {
            let rows = client.select(COMMITTED_OFFSETS, None, &[group.into()]).map_err(database_error)?;
            rows.into_iter()
                .map(|row| {
                    Ok(CommittedOffset {
                        topic: row.get(1).map_err(database_error)?.unwrap_or_default(),
                        partition: row.get(2).map_err(database_error)?.unwrap_or_default(),
                        offset: row.get(3).map_err(database_error)?.unwrap_or(-1),
                        leader_epoch: row.get(4).map_err(database_error)?.unwrap_or(-1),
                        metadata: match row.get::<Vec<u8>>(6).map_err(database_error)? {
                            Some(bytes) => Some(String::from_utf8(bytes).map_err(|_| database_error("metadata_bytes is not UTF-8"))?),
                            None => row.get(5).map_err(database_error)?,
                        },
                    })
                })
                .collect()
        })
    }

    fn offset_groups(&mut self) -> Result<Vec<String>, StorageError> {
        with_client(|client| {
            let rows = client.select(OFFSET_GROUPS, None, &[]).map_err(database_error)?;
            rows.into_iter().map(|row| Ok(row.get(1).map_err(database_error)?.unwrap_or_default())).collect()
        })
    }

    fn delete_group_offsets(&mut self, groups: &[String]) -> Result<Vec<String>, StorageError> {
        storable(groups.iter().map(String::as_str))?;
        with_client(|client| {
            let rows = client.update(DELETE_GROUP_OFFSETS, None, &[groups.to_vec().into()]).map_err(database_error)?;
            let mut deleted: Vec<String> = rows
                .into_iter()
                .map(|row| Ok(row.get(1).map_err(database_error)?.unwrap_or_default()))
                .collect::<Result<_, StorageError>>()?;
            deleted.sort();
            deleted.dedup();
            Ok(deleted)
        })
    }

    fn delete_partition_offsets(&mut self, group: &str, partitions: &[(i32, i32)]) -> Result<(), StorageError> {
        storable([group])?;
        let topic_ids: Vec<i32> = partitions.iter().map(|(t, _)| *t).collect();
        let indexes: Vec<i32> = partitions.iter().map(|(_, p)| *p).collect();
        execute(DELETE_PARTITION_OFFSETS, &[group.into(), topic_ids.into(), indexes.into()])
    }

    fn retention_starts(&mut self, now_ms: i64) -> Result<Vec<(i32, i32, i64)>, StorageError> {
        let limits: Vec<(i32, i32, i64, i64)> = with_client(|client| {
            let rows = client.select(RETENTION_TOPICS, None, &[]).map_err(database_error)?;
            rows.into_iter()
                .map(|row| {
                    let get = |i| row.get::<i64>(i).map_err(database_error).map(|v| v.unwrap_or(-1));
                    let id: i32 = row.get(1).map_err(database_error)?.unwrap_or_default();
                    let partitions: i32 = row.get(2).map_err(database_error)?.unwrap_or_default();
                    Ok((id, partitions, get(3)?, get(4)?))
                })
                .collect()
        })?;
        let mut starts = Vec::new();
        for (topic_id, partitions, retention_ms, retention_bytes) in limits {
            for partition in 0..partitions {
                let high = self.next_offset(topic_id, partition)?;
                let Some(start) = self.first_offset(topic_id, partition)? else { continue };
                let mut target = start;
                if retention_ms >= 0 {
                    let oldest_kept = now_ms.saturating_sub(retention_ms);
                    let oldest = match postgres_timestamp_us(oldest_kept).map(TimestampWithTimeZone::try_from) {
                        Some(Ok(ts)) => ts,
                        _ => continue,
                    };
                    let first_kept = with_client(|client| {
                        let args = [topic_id.into(), partition.into(), oldest.into()];
                        client
                            .select(RETENTION_BY_TIME, Some(1), &args)
                            .map_err(database_error)?
                            .first()
                            .get_one::<i64>()
                            .map_err(database_error)
                    })?;
                    target = target.max(first_kept.unwrap_or(high));
                }
                if retention_bytes >= 0 {
                    let first_kept = self.first_offset_within_bytes(topic_id, partition, retention_bytes, start)?;
                    target = target.max(first_kept.unwrap_or(start));
                }
                if target > start {
                    starts.push((topic_id, partition, target));
                }
            }
        }
        Ok(starts)
    }

    fn first_offset_within_bytes(&mut self, topic_id: i32, partition: i32, bytes: i64, from: i64) -> Result<Option<i64>, StorageError> {
        with_client(|client| {
            let args = [topic_id.into(), partition.into(), bytes.into(), from.into()];
            client.select(RETENTION_BY_SIZE, Some(1), &args).map_err(database_error)?.first().get_one::<i64>().map_err(database_error)
        })
    }

    fn cleaning_state(&mut self, topic_id: i32, partition: i32) -> Result<Option<PartitionCleaning>, StorageError> {
        cleaning::state(topic_id, partition)
    }

    fn save_cleaning_state(&mut self, topic_id: i32, partition: i32, state: &PartitionCleaning) -> Result<(), StorageError> {
        cleaning::save_state(topic_id, partition, state)
    }

    fn delete_messages(&mut self, topic_id: i32, partition: i32, offsets: &[i64]) -> Result<(), StorageError> {
        cleaning::delete_messages(topic_id, partition, offsets)
    }

    fn replace_batches(&mut self, topic_id: i32, partition: i32, changes: &[(i64, Option<BatchRow>)]) -> Result<(), StorageError> {
        cleaning::replace_batches(topic_id, partition, changes)
    }

    fn next_producer_id(&mut self) -> Result<i64, StorageError> {
        with_client(|client| {
            let rows = client.update(NEXT_PRODUCER_ID, None, &[]).map_err(database_error)?;
            rows.first().get_one::<i64>().map_err(database_error)?.ok_or_else(|| database_error("no producer id"))
        })
    }

    fn producer_state(&mut self, (producer_id, topic_id, partition): ProducerKey) -> Result<Option<ProducerState>, StorageError> {
        with_client(|client| {
            let rows =
                client.select(PRODUCER_STATE, Some(1), &[producer_id.into(), topic_id.into(), partition.into()]).map_err(database_error)?;
            let Some(row) = rows.into_iter().next() else { return Ok(None) };
            let epoch: i16 = row.get(1).map_err(database_error)?.unwrap_or_default();
            let flat: String = row.get(2).map_err(database_error)?.unwrap_or_default();
            Ok(Some(ProducerState { epoch, batches: parse_batches(&flat)? }))
        })
    }

    fn save_producer_states(&mut self, states: &[(ProducerKey, ProducerState)]) -> Result<(), StorageError> {
        if states.is_empty() {
            return Ok(());
        }
        let producer_ids: Vec<i64> = states.iter().map(|((p, _, _), _)| *p).collect();
        let topic_ids: Vec<i32> = states.iter().map(|((_, t, _), _)| *t).collect();
        let partitions: Vec<i32> = states.iter().map(|((_, _, n), _)| *n).collect();
        let epochs: Vec<i16> = states.iter().map(|(_, s)| s.epoch).collect();
        let batches: Vec<String> = states.iter().map(|(_, s)| batches_literal(s)).collect();
        let args = [producer_ids.into(), topic_ids.into(), partitions.into(), epochs.into(), batches.into()];
        execute(SAVE_PRODUCER_STATES, &args)
    }

    fn offset_commit_records(&mut self, from: i64, below: i64, limit: usize) -> Result<Vec<OffsetCommitRecord>, StorageError> {
        super::described::offset_commit_records(from, below, limit)
    }

    fn offset_commit_range(&mut self) -> Result<(Option<i64>, i64), StorageError> {
        super::described::offset_commit_range()
    }

    fn active_producers(&mut self, partitions: &[(i32, i32)]) -> Result<Vec<ActiveProducer>, StorageError> {
        super::described::active_producers(partitions)
    }

    fn batch_bytes_per_record(&mut self, topic_id: i32, partition: i32) -> Result<Option<f64>, StorageError> {
        query_one::<f64>(BATCH_BYTES_PER_RECORD, &[topic_id.into(), partition.into()])
    }

    fn transactions(&mut self) -> Result<Vec<TxnRecord>, StorageError> {
        super::transactions::transactions()
    }

    fn save_transaction(&mut self, record: &TxnRecord, durability: Durability) -> Result<(), StorageError> {
        super::transactions::save_transaction(record, durability)
    }

    fn partition_transactions(&mut self, key: (i32, i32), from: i64, below: i64) -> Result<PartitionTransactions, StorageError> {
        super::transactions::partition_transactions(key, from, below)
    }

    fn expire_transaction(&mut self, record: &TxnRecord) -> Result<(), StorageError> {
        super::transactions::expire_transaction(record)
    }

    fn txn_log_state(&mut self) -> Result<(Vec<OpenTxn>, Vec<AbortedTxn>), StorageError> {
        super::transactions::txn_log_state()
    }

    fn save_txn_log(&mut self, changes: &TxnLogChanges) -> Result<(), StorageError> {
        super::transactions::save_txn_log(changes)
    }

    fn log_dir_usage(&mut self) -> Result<LogDirUsage, StorageError> {
        super::described::log_dir_usage()
    }

    fn login_role(&mut self, name: &str) -> Result<Option<LoginRole>, StorageError> {
        storable([name])?;
        Ok(roles(&[name.to_owned()])?.into_iter().next())
    }

    fn principals(&mut self, names: &[String]) -> Result<Vec<Principal>, StorageError> {
        if names.is_empty() {
            return Ok(Vec::new());
        }
        Ok(roles(names)?.into_iter().map(|role| role.principal).collect())
    }

    fn cluster_leader(&mut self) -> Result<Option<i32>, StorageError> {
        super::replication::cluster_leader()
    }

    fn claim_leadership(&mut self, node_id: i32) -> Result<(), StorageError> {
        super::replication::claim_leadership(node_id)
    }

    fn in_sync_standbys(&mut self) -> Result<Option<Vec<String>>, StorageError> {
        super::replication::in_sync_standbys()
    }

    fn recorded_in_sync(&mut self) -> Result<Vec<i32>, StorageError> {
        super::replication::recorded_in_sync()
    }

    fn copies_of_commit(&mut self, commit_end: u64) -> Result<i64, StorageError> {
        super::replication::copies_of_commit(commit_end)
    }

    fn record_in_sync(&mut self, node_ids: &[i32]) -> Result<(), StorageError> {
        super::replication::record_in_sync(node_ids)
    }

    fn commit_locally(&mut self) -> Result<(), StorageError> {
        super::replication::commit_locally()
    }

    fn acls(&mut self) -> Result<Vec<AclBinding>, StorageError> {
        with_client(|client| {
            let rows = client.select(ACLS, None, &[]).map_err(database_error)?;
            let mut acls = Vec::with_capacity(rows.len());
            for row in rows {
                let code = |i| -> Result<i8, StorageError> { Ok(row.get::<i16>(i).map_err(database_error)?.unwrap_or_default() as i8) };
                let text = |i| -> Result<String, StorageError> { Ok(row.get::<String>(i).map_err(database_error)?.unwrap_or_default()) };
                let bad = || database_error("kafka.acls holds a code Kafka does not know");
                acls.push(AclBinding {
                    resource_type: ResourceType::from_code(code(1)?).ok_or_else(bad)?,
                    resource_name: text(2)?,
                    pattern_type: PatternType::from_code(code(3)?).ok_or_else(bad)?,
                    principal: text(4)?,
                    host: text(5)?,
                    operation: Operation::from_code(code(6)?).ok_or_else(bad)?,
                    permission: Permission::from_code(code(7)?).ok_or_else(bad)?,
                });
            }
            Ok(acls)
        })
    }

    fn create_acls(&mut self, acls: &[AclBinding]) -> Result<(), StorageError> {
        storable(acls.iter().flat_map(|a| [a.resource_name.as_str(), a.principal.as_str(), a.host.as_str()]))?;
        execute(CREATE_ACLS, &acl_columns(acls))
    }

    fn delete_acls(&mut self, filters: &[AclFilter]) -> Result<Vec<Vec<AclBinding>>, StorageError> {
        let all = self.acls()?;
        let matched: Vec<Vec<AclBinding>> = filters.iter().map(|f| all.iter().filter(|a| f.matches(a)).cloned().collect()).collect();
        let doomed: Vec<AclBinding> = all.into_iter().filter(|a| filters.iter().any(|f| f.matches(a))).collect();
        if !doomed.is_empty() {
            execute(DELETE_ACLS, &acl_columns(&doomed))?;
        }
        Ok(matched)
    }
}

/// ACLs as the seven column arrays the ACL statements unnest.
fn acl_columns(acls: &[AclBinding]) -> [pgrx::datum::DatumWithOid<'static>; 7] {
    let code = |f: fn(&AclBinding) -> i8| acls.iter().map(|a| i16::from(f(a))).collect::<Vec<i16>>();
    let text = |f: fn(&AclBinding) -> &str| acls.iter().map(|a| f(a).to_owned()).collect::<Vec<String>>();
    [
        code(|a| a.resource_type as i8).into(),
        text(|a| &a.resource_name).into(),
        code(|a| a.pattern_type as i8).into(),
        text(|a| &a.principal).into(),
        text(|a| &a.host).into(),
        code(|a| a.operation as i8).into(),
        code(|a| a.permission as i8).into(),
    ]
}

/// Runs each bridge job in its own transaction on the worker's main thread.
///
/// A Postgres ERROR inside a job arrives here as a Rust panic (pgrx converts the longjmp and
/// flushes the error state); the transaction is then aborted, the error logged with its
/// SQLSTATE, and returned. The job's caller sees the bridge's `Unavailable` error; the
/// worker itself carries on.
///
/// Each job runs under a statement timeout (`pg_kafka.statement_timeout_ms`): SPI never
/// arms `statement_timeout` in a background worker, so the runner arms Postgres's own
/// STATEMENT_TIMEOUT timer around the job, and a job still running when it fires is
/// cancelled with SQLSTATE 57014 like any statement, leaving the thread to the others.
#[derive(Default)]
pub struct TransactionRunner {
    storage: PgStorage,
    /// 0: no limit.
    statement_timeout_ms: u64,
}

/// `STATEMENT_TIMEOUT` of Postgres's `TimeoutId` (utils/timeout.h: the fourth predefined
/// reason in every version pgrx 0.18 supports).
const STATEMENT_TIMEOUT: c_uint = 3;

unsafe extern "C-unwind" {
    fn enable_timeout_after(id: c_uint, delay_ms: c_int);
    fn disable_timeout(id: c_uint, keep_indicator: bool);
}

impl TransactionRunner {
    pub fn new(statement_timeout_ms: u64) -> TransactionRunner {
        TransactionRunner { storage: PgStorage, statement_timeout_ms }
    }

    /// A reloaded `pg_kafka.statement_timeout_ms`.
    pub fn set_statement_timeout(&mut self, ms: u64) {
        self.statement_timeout_ms = ms;
    }
}

impl JobRunner for TransactionRunner {
    fn run(&mut self, job: &mut dyn FnMut(&mut dyn Storage) -> Result<(), StorageError>) -> Result<(), StorageError> {
        let storage = &mut self.storage;
        let timeout_ms = c_int::try_from(self.statement_timeout_ms).unwrap_or(c_int::MAX);
        let outcome = catch_unwind(AssertUnwindSafe(|| unsafe {
            pg_sys::SetCurrentStatementStartTimestamp();
            pg_sys::StartTransactionCommand();
            pg_sys::PushActiveSnapshot(pg_sys::GetTransactionSnapshot());
            if timeout_ms > 0 {
                enable_timeout_after(STATEMENT_TIMEOUT, timeout_ms);
            }
            let result = job(storage);
            disarm_statement_timeout();
            pg_sys::PopActiveSnapshot();
            if result.is_ok() {
                pg_sys::CommitTransactionCommand();
            }
            result
        }));
        let failure = match outcome {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(error)) => error,
            Err(payload) => describe_panic(&payload),
        };
        unsafe {
            disarm_statement_timeout();
            pg_sys::AbortCurrentTransaction();
        }
        pgrx::warning!("pg_kafka: storage work failed and was rolled back: {failure}");
        Err(failure)
    }
}

/// Stops the statement timer and forgets a cancel it may have raised that no check has
/// acted on yet: outside a job there is no statement to cancel, and the main loop's own
/// interrupt check must not raise it as an ERROR there.
unsafe fn disarm_statement_timeout() {
    unsafe {
        disable_timeout(STATEMENT_TIMEOUT, false);
        pg_sys::QueryCancelPending = 0;
    }
}

/// A panic payload as a storage error: pgrx's caught Postgres errors (with their SQLSTATE),
/// or a plain Rust panic message.
pub fn describe_panic(payload: &Box<dyn std::any::Any + Send>) -> StorageError {
    let plain = |message: String| StorageError::Database { sqlstate: None, message };
    if let Some(message) = payload.downcast_ref::<&str>() {
        plain((*message).to_owned())
    } else if let Some(message) = payload.downcast_ref::<String>() {
        plain(message.clone())
    } else if let Some(caught) = payload.downcast_ref::<pg_sys::panic::CaughtError>() {
        match caught {
            pg_sys::panic::CaughtError::PostgresError(report)
            | pg_sys::panic::CaughtError::ErrorReport(report)
            | pg_sys::panic::CaughtError::RustPanic { ereport: report, .. } => {
                StorageError::Database { sqlstate: Some(sqlstate(report.sql_error_code() as i32)), message: report.message().to_owned() }
            }
        }
    } else {
        plain("unknown panic".to_owned())
    }
}

/// Postgres's five-character SQLSTATE from its packed form (`MAKE_SQLSTATE`: six bits per
/// character, offset from '0').
fn sqlstate(packed: i32) -> String {
    (0..5).map(|i| char::from(b'0' + ((packed >> (6 * i)) & 0x3f) as u8)).collect()
}

/// Prepares the worker's session: creates the extension (schema and tables) in its
/// database if missing, and sets the writer's `synchronous_commit` and the session's
/// `lock_timeout`.
pub fn prepare_session(synchronous_commit: SynchronousCommit, lock_timeout_ms: u64, standby: bool) -> Result<(), StorageError> {
    let mut runner = TransactionRunner::default();
    if standby {
        // A hot standby creates nothing: the extension comes from the primary, by replay.
        runner.run(&mut |_| match query_one::<bool>(
            "SELECT true FROM pg_catalog.pg_extension WHERE extname OPERATOR(pg_catalog.=) 'pg_kafka'",
            &[],
        )? {
            Some(true) => Ok(()),
            _ => Err(database_error("pg_kafka is not installed in this database on the primary yet (a hot standby cannot create it)")),
        })?;
    } else {
        runner.run(&mut |_| Spi::run(include_str!("../../sql/queries/create_extension.sql")).map_err(database_error))?;
    }
    runner.run(&mut |_| warn_if_outdated())?;
    apply_session_settings(&mut runner, synchronous_commit, lock_timeout_ms)
}

/// The worker does not upgrade the extension's SQL objects behind the DBA's back: when they
/// are older than the library (a new pg_kafka installed, the database not updated), it
/// says what to run.
fn warn_if_outdated() -> Result<(), StorageError> {
    let versions = with_client(|client| {
        let rows = client
            .select(
                "SELECT e.extversion::text, a.default_version::text FROM pg_catalog.pg_extension e \
                 JOIN pg_catalog.pg_available_extensions a ON a.name OPERATOR(pg_catalog.=) e.extname \
                 WHERE e.extname OPERATOR(pg_catalog.=) 'pg_kafka'",
                Some(1),
                &[],
            )
            .map_err(database_error)?;
        Ok(rows.first().get_two::<String, String>().ok())
    })?;
    if let Some((Some(installed), Some(available))) = versions {
        if installed != available {
            pgrx::warning!(
                "pg_kafka: the extension's SQL objects are version {installed}, the library is {available}: run ALTER EXTENSION pg_kafka UPDATE"
            );
        }
    }
    Ok(())
}

/// Sets the worker session's `synchronous_commit` and `lock_timeout` (at start and after
/// a reload).
pub fn apply_session_settings(
    runner: &mut TransactionRunner,
    synchronous_commit: SynchronousCommit,
    lock_timeout_ms: u64,
) -> Result<(), StorageError> {
    let lock_timeout = format!("{lock_timeout_ms}ms");
    let synchronous_commit = super::replication::session_synchronous_commit(synchronous_commit);
    runner.run(&mut |_| {
        // As reads (select): a hot standby's worker and readers run them too.
        with_client(|client| {
            client
                .select("SELECT pg_catalog.set_config('synchronous_commit', $1, false)", None, &[synchronous_commit.into()])
                .and_then(|_| {
                    client.select("SELECT pg_catalog.set_config('lock_timeout', $1, false)", None, &[lock_timeout.as_str().into()])
                })
                .map(drop)
                .map_err(database_error)
        })
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn sqlstates_unpack_as_postgres_spells_them() {
        // ERRCODE_LOCK_NOT_AVAILABLE is MAKE_SQLSTATE('5','5','P','0','3').
        let pack = |code: &str| code.bytes().enumerate().map(|(i, c)| i32::from(c - b'0') << (6 * i)).sum::<i32>();
        assert_eq!(super::sqlstate(pack("55P03")), "55P03");
        assert_eq!(super::sqlstate(pack("23505")), "23505");
    }
}
