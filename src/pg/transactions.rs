//! Transactions' storage: the coordinator's records (`kafka.transaction_state`) and the
//! log's open transactions and aborted ranges (`kafka.open_transactions`,
//! `kafka.aborted_transactions`). The storage engine's trait methods call these.

use pg_kafka_core::storage::transactions::{
    AbortedTxn, Durability, OpenTxn, PartitionTransactions, PendingOffset, TxnLogChanges, TxnRecord, TxnState,
};
use pg_kafka_core::storage::{OffsetCommit, StorageError};
use pgrx::spi::SpiHeapTupleData;

use super::storage::{database_error, execute, query_one, relations_exist, storable, with_client};

const TRANSACTIONS: &str = include_str!("../../sql/queries/transactions.sql");
const SAVE_TRANSACTION: &str = include_str!("../../sql/queries/save_transaction.sql");
const OPEN_TRANSACTIONS: &str = include_str!("../../sql/queries/open_transactions.sql");
const ABORTED_TRANSACTIONS: &str = include_str!("../../sql/queries/aborted_transactions.sql");
const BEGIN_TRANSACTIONS: &str = include_str!("../../sql/queries/begin_transactions.sql");
const END_TRANSACTIONS: &str = include_str!("../../sql/queries/end_transactions.sql");
const ABORT_TRANSACTIONS: &str = include_str!("../../sql/queries/abort_transactions.sql");
const FORGET_ABORTED_TRANSACTIONS: &str = include_str!("../../sql/queries/forget_aborted_transactions.sql");
const EXPIRE_TRANSACTION: &str = include_str!("../../sql/queries/expire_transaction.sql");
const PARTITION_TRANSACTIONS: &str = include_str!("../../sql/queries/partition_transactions.sql");
const PARTITION_ABORTED: &str = include_str!("../../sql/queries/partition_aborted.sql");

/// Whether the database has transactions' tables: a database still at an older version of
/// the extension (its DBA has not run ALTER EXTENSION pg_kafka UPDATE, which the worker's
/// start warns about) has none, so it holds no transaction, and reads of committed
/// records must not wait for state that cannot exist.
fn tables_exist() -> Result<bool, StorageError> {
    relations_exist(&["kafka.transaction_state", "kafka.open_transactions", "kafka.aborted_transactions"])
}

/// Drops the aborted ranges of a partition that end below `log_start` (its records are
/// gone), so the table does not grow with every abort for ever.
pub fn forget_aborted_before(topic_id: i32, partition: i32, log_start: i64) -> Result<(), StorageError> {
    if !tables_exist()? {
        return Ok(());
    }
    execute(FORGET_ABORTED_TRANSACTIONS, &[topic_id.into(), partition.into(), log_start.into()])
}

pub fn expire_transaction(record: &TxnRecord) -> Result<(), StorageError> {
    let id = record.transactional_id.as_bytes().to_vec();
    execute(EXPIRE_TRANSACTION, &[id.into(), record.producer_id.into(), record.producer_epoch.into()])
}

pub fn transactions() -> Result<Vec<TxnRecord>, StorageError> {
    if !tables_exist()? {
        return Ok(Vec::new());
    }
    with_client(|client| client.select(TRANSACTIONS, None, &[]).map_err(database_error)?.map(|row| record(&row)).collect())
}

/// A column that is never NULL.
fn column<T: pgrx::datum::FromDatum + pgrx::datum::IntoDatum>(row: &SpiHeapTupleData<'_>, ordinal: usize) -> Result<T, StorageError> {
    row.get(ordinal).map_err(database_error)?.ok_or_else(|| database_error(format!("NULL in column {ordinal} of kafka.transaction_state")))
}

fn record(row: &SpiHeapTupleData<'_>) -> Result<TxnRecord, StorageError> {
    let id: Vec<u8> = column(row, 1)?;
    let state: String = column(row, 4)?;
    let topic_ids: Vec<i32> = column(row, 6)?;
    let partitions: Vec<i32> = column(row, 7)?;
    let groups: Vec<String> = column(row, 8)?;
    let offset_groups: Vec<String> = column(row, 9)?;
    let offset_topic_ids: Vec<i32> = column(row, 10)?;
    let offset_partitions: Vec<i32> = column(row, 11)?;
    let offsets: Vec<i64> = column(row, 12)?;
    let epochs: Vec<i32> = column(row, 13)?;
    let metadata: Vec<Option<String>> = column(row, 14)?;
    let utf8 = |bytes: Vec<u8>| String::from_utf8(bytes).map_err(|_| database_error("a stored string is not UTF-8"));
    let mut pending_offsets = Vec::with_capacity(offsets.len());
    for (i, group) in offset_groups.into_iter().enumerate() {
        let at = |values: &[i32]| values.get(i).copied().ok_or_else(|| database_error("offset arrays of unequal length"));
        let commit = OffsetCommit {
            topic_id: at(&offset_topic_ids)?,
            partition: at(&offset_partitions)?,
            offset: offsets.get(i).copied().ok_or_else(|| database_error("offset arrays of unequal length"))?,
            leader_epoch: at(&epochs)?,
            metadata: metadata.get(i).cloned().flatten().map(|hex| from_hex(&hex).and_then(utf8)).transpose()?,
        };
        pending_offsets.push(PendingOffset { group, commit });
    }
    Ok(TxnRecord {
        transactional_id: utf8(id)?,
        producer_id: column(row, 2)?,
        producer_epoch: column(row, 3)?,
        state: TxnState::parse(&state).ok_or_else(|| database_error(format!("unknown transaction state {state}")))?,
        timeout_ms: column(row, 5)?,
        partitions: topic_ids.into_iter().zip(partitions).collect(),
        groups,
        pending_offsets,
        started_ms: row.get(15).map_err(database_error)?,
        updated_ms: column(row, 16)?,
    })
}

/// Bytes from Postgres's `encode(_, 'hex')`.
fn from_hex(hex: &str) -> Result<Vec<u8>, StorageError> {
    let digit = |c: u8| (c as char).to_digit(16).ok_or_else(|| database_error("not a hex digit"));
    hex.as_bytes().chunks(2).map(|pair| Ok((digit(pair[0])? * 16 + digit(*pair.get(1).unwrap_or(&b'?'))?) as u8)).collect()
}

pub fn save_transaction(record: &TxnRecord, durability: Durability) -> Result<(), StorageError> {
    if durability == Durability::Deferred {
        pgrx::Spi::run("SELECT pg_catalog.set_config('synchronous_commit', 'off', true)").map_err(database_error)?;
    }
    storable(record.groups.iter().chain(record.pending_offsets.iter().map(|p| &p.group)).map(String::as_str))?;
    let offsets = &record.pending_offsets;
    let of = |f: fn(&OffsetCommit) -> i32| -> Vec<i32> { offsets.iter().map(|p| f(&p.commit)).collect() };
    let args = [
        record.transactional_id.as_bytes().to_vec().into(),
        record.producer_id.into(),
        record.producer_epoch.into(),
        record.state.as_str().into(),
        record.timeout_ms.into(),
        record.partitions.iter().map(|p| p.0).collect::<Vec<i32>>().into(),
        record.partitions.iter().map(|p| p.1).collect::<Vec<i32>>().into(),
        record.groups.clone().into(),
        offsets.iter().map(|p| p.group.clone()).collect::<Vec<String>>().into(),
        of(|c| c.topic_id).into(),
        of(|c| c.partition).into(),
        offsets.iter().map(|p| p.commit.offset).collect::<Vec<i64>>().into(),
        of(|c| c.leader_epoch).into(),
        offsets.iter().map(|p| p.commit.metadata.as_ref().map(|m| m.as_bytes().to_vec())).collect::<Vec<Option<Vec<u8>>>>().into(),
        record.started_ms.into(),
        record.updated_ms.into(),
    ];
    execute(SAVE_TRANSACTION, &args)
}

pub fn txn_log_state() -> Result<(Vec<OpenTxn>, Vec<AbortedTxn>), StorageError> {
    if !tables_exist()? {
        return Ok((Vec::new(), Vec::new()));
    }
    with_client(|client| {
        let open = client.select(OPEN_TRANSACTIONS, None, &[]).map_err(database_error)?;
        let open = open
            .map(|row| {
                Ok(OpenTxn {
                    partition: (column(&row, 1)?, column(&row, 2)?),
                    producer_id: column(&row, 3)?,
                    first_offset: column(&row, 4)?,
                })
            })
            .collect::<Result<Vec<_>, StorageError>>()?;
        let aborted = client.select(ABORTED_TRANSACTIONS, None, &[]).map_err(database_error)?;
        let aborted = aborted
            .map(|row| {
                Ok(AbortedTxn {
                    partition: (column(&row, 1)?, column(&row, 2)?),
                    producer_id: column(&row, 3)?,
                    first_offset: column(&row, 4)?,
                    last_offset: column(&row, 5)?,
                })
            })
            .collect::<Result<Vec<_>, StorageError>>()?;
        Ok((open, aborted))
    })
}

pub fn partition_transactions((topic_id, partition): (i32, i32), from: i64, below: i64) -> Result<PartitionTransactions, StorageError> {
    if !tables_exist()? {
        return Ok((None, Vec::new()));
    }
    let key = [topic_id.into(), partition.into()];
    let open = query_one::<i64>(PARTITION_TRANSACTIONS, &key)?;
    let aborted = with_client(|client| {
        let args = [topic_id.into(), partition.into(), from.into(), below.into()];
        let rows = client.select(PARTITION_ABORTED, None, &args).map_err(database_error)?;
        rows.map(|row| {
            Ok(AbortedTxn {
                partition: (topic_id, partition),
                producer_id: column(&row, 1)?,
                first_offset: column(&row, 2)?,
                last_offset: column(&row, 3)?,
            })
        })
        .collect::<Result<Vec<_>, StorageError>>()
    })?;
    Ok((open, aborted))
}

pub fn save_txn_log(changes: &TxnLogChanges) -> Result<(), StorageError> {
    let begun = &changes.begun;
    if !begun.is_empty() {
        let args = [
            begun.iter().map(|t| t.partition.0).collect::<Vec<i32>>().into(),
            begun.iter().map(|t| t.partition.1).collect::<Vec<i32>>().into(),
            begun.iter().map(|t| t.producer_id).collect::<Vec<i64>>().into(),
            begun.iter().map(|t| t.first_offset).collect::<Vec<i64>>().into(),
        ];
        execute(BEGIN_TRANSACTIONS, &args)?;
    }
    let ended = &changes.ended;
    if !ended.is_empty() {
        let args = [
            ended.iter().map(|(p, _)| p.0).collect::<Vec<i32>>().into(),
            ended.iter().map(|(p, _)| p.1).collect::<Vec<i32>>().into(),
            ended.iter().map(|(_, id)| *id).collect::<Vec<i64>>().into(),
        ];
        execute(END_TRANSACTIONS, &args)?;
    }
    let aborted = &changes.aborted;
    if !aborted.is_empty() {
        let args = [
            aborted.iter().map(|t| t.partition.0).collect::<Vec<i32>>().into(),
            aborted.iter().map(|t| t.partition.1).collect::<Vec<i32>>().into(),
            aborted.iter().map(|t| t.producer_id).collect::<Vec<i64>>().into(),
            aborted.iter().map(|t| t.first_offset).collect::<Vec<i64>>().into(),
            aborted.iter().map(|t| t.last_offset).collect::<Vec<i64>>().into(),
        ];
        execute(ABORT_TRANSACTIONS, &args)?;
    }
    Ok(())
}
