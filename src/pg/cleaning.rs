//! Compaction's storage work in Postgres (the decisions are `pg_kafka_core::writer::
//! compaction`'s): the cleaner state of a partition in `kafka.partition_cleaning`, and
//! removing what a pass decided: rows deleted, batches rewritten or deleted.

use pg_kafka_core::storage::batches::BatchRow;
use pg_kafka_core::storage::{PartitionCleaning, StorageError};

use super::storage::{database_error, execute, with_client};

const CLEANING_STATE: &str = include_str!("../../sql/queries/cleaning_state.sql");
const SAVE_CLEANING_STATE: &str = include_str!("../../sql/queries/save_cleaning_state.sql");
const DELETE_MESSAGES: &str = include_str!("../../sql/queries/delete_messages.sql");
const REPLACE_BATCHES: &str = include_str!("../../sql/queries/replace_batches.sql");
const DELETE_BATCHES: &str = include_str!("../../sql/queries/delete_batches.sql");

pub fn state(topic_id: i32, partition: i32) -> Result<Option<PartitionCleaning>, StorageError> {
    with_client(|client| {
        let rows = client.select(CLEANING_STATE, Some(1), &[topic_id.into(), partition.into()]).map_err(database_error)?;
        let Some(row) = rows.into_iter().next() else { return Ok(None) };
        let long = |i| row.get::<i64>(i).map_err(database_error).map(Option::unwrap_or_default);
        let offsets: Vec<i64> = row.get(3).map_err(database_error)?.unwrap_or_default();
        let at: Vec<i64> = row.get(4).map_err(database_error)?.unwrap_or_default();
        Ok(Some(PartitionCleaning {
            cleaned_to: long(1)?,
            clean_bytes: long(2)?,
            reached: offsets.into_iter().zip(at).collect(),
            last_pass_ms: long(5)?,
            last_removed: long(6)?,
            removed_total: long(7)?,
            round_end: long(8)?,
            walked_to: long(9)?,
        }))
    })
}

pub fn save_state(topic_id: i32, partition: i32, state: &PartitionCleaning) -> Result<(), StorageError> {
    let offsets: Vec<i64> = state.reached.iter().map(|(o, _)| *o).collect();
    let at: Vec<i64> = state.reached.iter().map(|(_, at)| *at).collect();
    let args = [
        topic_id.into(),
        partition.into(),
        state.cleaned_to.into(),
        offsets.into(),
        at.into(),
        state.clean_bytes.into(),
        state.last_pass_ms.into(),
        state.last_removed.into(),
        state.removed_total.into(),
        state.round_end.into(),
        state.walked_to.into(),
    ];
    execute(SAVE_CLEANING_STATE, &args)
}

pub fn delete_messages(topic_id: i32, partition: i32, offsets: &[i64]) -> Result<(), StorageError> {
    execute(DELETE_MESSAGES, &[topic_id.into(), partition.into(), offsets.to_vec().into()])
}

pub fn replace_batches(topic_id: i32, partition: i32, changes: &[(i64, Option<BatchRow>)]) -> Result<(), StorageError> {
    let (mut emptied, mut last_offsets, mut batches, mut counts, mut max_ms) = (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (last_offset, row) in changes {
        match row {
            None => emptied.push(*last_offset),
            Some(row) => {
                last_offsets.push(*last_offset);
                batches.push(row.bytes.to_vec());
                counts.push(row.record_count);
                max_ms.push(row.max_timestamp_ms);
            }
        }
    }
    if !emptied.is_empty() {
        execute(DELETE_BATCHES, &[topic_id.into(), partition.into(), emptied.into()])?;
    }
    if !last_offsets.is_empty() {
        let args = [topic_id.into(), partition.into(), last_offsets.into(), batches.into(), counts.into(), max_ms.into()];
        execute(REPLACE_BATCHES, &args)?;
    }
    Ok(())
}
