//! Fetch's read: one partition's messages in offset order, walked straight off the primary
//! key index of `kafka.messages`, one tuple at a time (or its batches, off the primary key
//! of `kafka.batches`, for the batch layout).
//!
//! Why not SPI: a cursor materializes each chunk of rows into a tuple table (a copy of
//! every row, whatever its size, before the byte limit can be checked) and converts every
//! value through per-call type checks. The baseline a consumer is compared with, `COPY
//! (SELECT ...) TO`, does neither. Walking the index here copies each value once (into its
//! record), stops at the byte limit before the next tuple is fetched, and needs no plan.
//! Visibility is that of a new query of the transaction: a fresh snapshot that also sees
//! the transaction's own earlier writes (as SPI gives each query).
//!
//! Must run on the worker's main thread inside a transaction with an active snapshot. A
//! Postgres ERROR inside arrives as a panic, which the transaction runner turns into a
//! rollback (which also closes what was opened here).

use std::ffi::CStr;
use std::ptr::null_mut;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use pgrx::pg_sys;

use pg_kafka_core::storage::{kafka_timestamp_ms, record_bytes, ReadLimit, RowTxn, StorageError, StorageLayout, StoredRecord};

use super::storage::database_error;

/// The index key columns of `messages_pkey` (topic_id, partition, "offset") and of
/// `batches_pkey` (topic_id, partition, last_offset).
const KEY_TOPIC: i16 = 1;
const KEY_PARTITION: i16 = 2;
const KEY_OFFSET: i16 = 3;

/// A table of a layout and the primary key walked, with the offset column the key ends in.
struct Table {
    heap: &'static CStr,
    index: &'static CStr,
    offset: &'static CStr,
}

fn table_of(layout: StorageLayout) -> Table {
    match layout {
        StorageLayout::Rows => Table { heap: c"messages", index: c"messages_pkey", offset: c"offset" },
        StorageLayout::Batches => Table { heap: c"batches", index: c"batches_pkey", offset: c"last_offset" },
    }
}

/// Column `name` of a relation, by number (1-based).
unsafe fn attnum(relation: pg_sys::Oid, name: &CStr) -> Result<usize, StorageError> {
    // SAFETY: a syscache lookup with a valid relation and a NUL-terminated name.
    let number = unsafe { pg_sys::get_attnum(relation, name.as_ptr()) };
    usize::try_from(number).ok().filter(|&n| n > 0).ok_or_else(|| database_error(format!("kafka table has no column {name:?}")))
}

/// Where each column of `kafka.messages` is in its tuples, looked up by name.
struct Columns {
    offset: usize,
    timestamp: usize,
    key: usize,
    value: usize,
    headers: usize,
    /// The row's transaction (0.9.0): producer id and epoch, and whether it is a marker.
    producer_id: usize,
    producer_epoch: usize,
    control: usize,
    /// The highest of them: how far a tuple must be deformed.
    last: i32,
}

impl Columns {
    unsafe fn of(relation: pg_sys::Oid) -> Result<Columns, StorageError> {
        // SAFETY: as the caller promises: a valid relation.
        let attnum = |name: &CStr| unsafe { attnum(relation, name) };
        let (offset, timestamp, key, value, headers) =
            (attnum(c"offset")?, attnum(c"timestamp")?, attnum(c"key")?, attnum(c"value")?, attnum(c"headers")?);
        let (producer_id, producer_epoch, control) = (attnum(c"producer_id")?, attnum(c"producer_epoch")?, attnum(c"control")?);
        let all = [offset, timestamp, key, value, headers, producer_id, producer_epoch, control];
        let last = all.into_iter().max().unwrap_or(0) as i32;
        Ok(Columns { offset, timestamp, key, value, headers, producer_id, producer_epoch, control, last })
    }
}

/// `kafka.<name>`'s relation oid.
unsafe fn relation_oid(name: &CStr) -> Result<pg_sys::Oid, StorageError> {
    // SAFETY: catalog lookups with NUL-terminated names, inside a transaction.
    let oid = unsafe { pg_sys::get_relname_relid(name.as_ptr(), pg_sys::get_namespace_oid(c"kafka".as_ptr(), false)) };
    if oid == pg_sys::InvalidOid {
        return Err(database_error(format!("kafka.{} does not exist", name.to_string_lossy())));
    }
    Ok(oid)
}

/// Messages of (`topic_id`, `partition`) with offsets in `limit.from..limit.below`, in
/// offset order, until `limit` admits no more bytes.
pub fn read_partition(topic_id: i32, partition: i32, limit: ReadLimit) -> Result<Vec<StoredRecord>, StorageError> {
    let offsets = offset_range(&limit);
    // SAFETY: main thread, in a transaction with an active snapshot (the runner's).
    // A new command, a new snapshot: what a query run now would see.
    unsafe {
        scan_partition(&table_of(StorageLayout::Rows), topic_id, partition, &offsets, SnapshotOf::Transaction, |scan, slot, heap| {
            collect(scan, slot, &Columns::of(heap)?, limit)
        })
    }?
}

/// Batches of (`topic_id`, `partition`) whose last offset is in `limit.from..limit.below`,
/// in offset order, their bytes as stored, until `limit` admits no more bytes.
pub fn read_batches(topic_id: i32, partition: i32, limit: ReadLimit) -> Result<Vec<Bytes>, StorageError> {
    let offsets = offset_range(&limit);
    // SAFETY: main thread, in a transaction with an active snapshot (the runner's); the
    // batch column is read only while the slot holds its tuple.
    unsafe {
        scan_partition(&table_of(StorageLayout::Batches), topic_id, partition, &offsets, SnapshotOf::Transaction, |scan, slot, heap| {
            let column = attnum(heap, c"batch")?;
            let (mut batches, mut bytes) = (Vec::new(), 0);
            while pg_sys::index_getnext_slot(scan, pg_sys::ScanDirection::ForwardScanDirection, slot) {
                pg_sys::slot_getsomeattrs_int(slot, column as i32);
                let i = column - 1;
                if *(*slot).tts_isnull.add(i) {
                    return Err(database_error("null batch"));
                }
                let batch = bytea(*(*slot).tts_values.add(i));
                bytes += batch.len();
                if !limit.admits(batches.len(), bytes) {
                    break;
                }
                batches.push(batch);
            }
            Ok(batches)
        })
    }?
}

/// The last offset stored in (`topic_id`, `partition`) as committed now, with this
/// transaction's own earlier rows: one backward step of the primary key index under the
/// latest snapshot (not the transaction's, which in REPEATABLE READ may be older). `None`
/// when the partition has no rows. For `kafka.produce()`, under the partition's lock.
pub fn last_offset_now(layout: StorageLayout, topic_id: i32, partition: i32) -> Result<Option<i64>, StorageError> {
    let table = table_of(layout);
    // SAFETY: in a transaction; the slot holds the tuple while its offset is read.
    unsafe {
        scan_partition(&table, topic_id, partition, &[], SnapshotOf::Latest, |scan, slot, heap| {
            let offset = attnum(heap, table.offset)?;
            if !pg_sys::index_getnext_slot(scan, pg_sys::ScanDirection::BackwardScanDirection, slot) {
                return Ok(None);
            }
            pg_sys::slot_getsomeattrs_int(slot, offset as i32);
            let i = offset - 1;
            Ok((!*(*slot).tts_isnull.add(i)).then(|| (*(*slot).tts_values.add(i)).value() as i64))
        })
    }?
}

/// The key conditions of a read: `limit.from <= offset < limit.below`.
fn offset_range(limit: &ReadLimit) -> [OffsetKey; 2] {
    [
        OffsetKey { strategy: pg_sys::BTGreaterEqualStrategyNumber, procedure: pg_sys::F_INT8GE, offset: limit.from },
        OffsetKey { strategy: pg_sys::BTLessStrategyNumber, procedure: pg_sys::F_INT8LT, offset: limit.below },
    ]
}

/// A condition on the key's "offset" column, beside topic and partition.
struct OffsetKey {
    strategy: u32,
    procedure: u32,
    offset: i64,
}

/// Whose visibility a scan has (after a CommandCounterIncrement, so the transaction's own
/// earlier writes are seen in both).
enum SnapshotOf {
    /// A new query of the transaction (fresh in READ COMMITTED).
    Transaction,
    /// Everything committed now, whatever the isolation level.
    Latest,
}

/// Opens `table` and its primary key, scans (`topic_id`, `partition`) with `offsets` as
/// further conditions under `snapshot`, hands the scan, a slot and the table's oid to
/// `walk`, and closes everything again.
///
/// # Safety
/// In a transaction on the thread that owns Postgres; `walk` reads tuples only while the
/// slot holds them. An ERROR inside aborts the transaction, which closes what is open.
unsafe fn scan_partition<T>(
    table: &Table,
    topic_id: i32,
    partition: i32,
    offsets: &[OffsetKey],
    snapshot: SnapshotOf,
    walk: impl FnOnce(pg_sys::IndexScanDesc, *mut pg_sys::TupleTableSlot, pg_sys::Oid) -> T,
) -> Result<T, StorageError> {
    // SAFETY: as the caller promises; every relation, scan and slot opened here is closed
    // here.
    unsafe {
        let heap_oid = relation_oid(table.heap)?;
        let index_oid = relation_oid(table.index)?;
        let lock = pg_sys::AccessShareLock as pg_sys::LOCKMODE;
        let heap = pg_sys::table_open(heap_oid, lock);
        let index = pg_sys::index_open(index_oid, lock);
        let mut keys: [pg_sys::ScanKeyData; 4] = std::mem::zeroed();
        let equal = pg_sys::BTEqualStrategyNumber as pg_sys::StrategyNumber;
        pg_sys::ScanKeyInit(&mut keys[0], KEY_TOPIC, equal, pg_sys::Oid::from(pg_sys::F_INT4EQ), topic_id.into());
        pg_sys::ScanKeyInit(&mut keys[1], KEY_PARTITION, equal, pg_sys::Oid::from(pg_sys::F_INT4EQ), partition.into());
        for (key, condition) in keys[2..].iter_mut().zip(offsets) {
            let strategy = condition.strategy as pg_sys::StrategyNumber;
            pg_sys::ScanKeyInit(key, KEY_OFFSET, strategy, pg_sys::Oid::from(condition.procedure), condition.offset.into());
        }
        let key_count = 2 + offsets.len().min(2) as i32;
        pg_sys::CommandCounterIncrement();
        pg_sys::PushActiveSnapshot(match snapshot {
            SnapshotOf::Transaction => pg_sys::GetTransactionSnapshot(),
            SnapshotOf::Latest => pg_sys::GetLatestSnapshot(),
        });
        let scan = begin_scan(heap, index, key_count);
        pg_sys::index_rescan(scan, keys.as_mut_ptr(), key_count, null_mut(), 0);
        let slot = pg_sys::table_slot_create(heap, null_mut());
        let walked = walk(scan, slot, heap_oid);
        pg_sys::ExecDropSingleTupleTableSlot(slot);
        pg_sys::index_endscan(scan);
        pg_sys::PopActiveSnapshot();
        pg_sys::index_close(index, pg_sys::NoLock as pg_sys::LOCKMODE);
        pg_sys::table_close(heap, pg_sys::NoLock as pg_sys::LOCKMODE);
        Ok(walked)
    }
}

#[cfg(not(feature = "pg18"))]
unsafe fn begin_scan(heap: pg_sys::Relation, index: pg_sys::Relation, keys: i32) -> pg_sys::IndexScanDesc {
    // SAFETY: open relations, the active snapshot of the current transaction.
    unsafe { pg_sys::index_beginscan(heap, index, pg_sys::GetActiveSnapshot(), keys, 0) }
}

#[cfg(feature = "pg18")]
unsafe fn begin_scan(heap: pg_sys::Relation, index: pg_sys::Relation, keys: i32) -> pg_sys::IndexScanDesc {
    // SAFETY: open relations, the active snapshot of the current transaction.
    unsafe { pg_sys::index_beginscan(heap, index, pg_sys::GetActiveSnapshot(), null_mut(), keys, 0) }
}

/// Takes tuples from `scan` while `limit` admits them.
unsafe fn collect(
    scan: pg_sys::IndexScanDesc,
    slot: *mut pg_sys::TupleTableSlot,
    columns: &Columns,
    limit: ReadLimit,
) -> Result<Vec<StoredRecord>, StorageError> {
    let mut records = Vec::new();
    let mut bytes = 0;
    // SAFETY: `slot` belongs to the scanned heap; a tuple's values are read only after
    // deforming up to `columns.last`, and only while the slot holds that tuple.
    unsafe {
        while pg_sys::index_getnext_slot(scan, pg_sys::ScanDirection::ForwardScanDirection, slot) {
            if i32::from((*slot).tts_nvalid) < columns.last {
                pg_sys::slot_getsomeattrs_int(slot, columns.last);
            }
            let value_at = |column: usize| -> Option<pg_sys::Datum> {
                let i = column - 1;
                (!*(*slot).tts_isnull.add(i)).then(|| *(*slot).tts_values.add(i))
            };
            let offset = value_at(columns.offset).ok_or_else(|| database_error("null offset"))?.value() as i64;
            let timestamp_ms = value_at(columns.timestamp).map_or(-1, |us| kafka_timestamp_ms(us.value() as i64));
            let record = StoredRecord {
                offset,
                timestamp_ms,
                key: value_at(columns.key).map(|d| bytea(d)),
                value: value_at(columns.value).map(|d| bytea(d)),
                headers: value_at(columns.headers).map(|d| bytea(d)),
                txn: value_at(columns.producer_id).map(|id| RowTxn {
                    producer_id: id.value() as i64,
                    producer_epoch: value_at(columns.producer_epoch).map_or(-1, |e| e.value() as i16),
                    control: value_at(columns.control).is_some_and(|c| c.value() != 0),
                }),
            };
            bytes += record_bytes(&record);
            if !limit.admits(records.len(), bytes) {
                break;
            }
            records.push(record);
        }
    }
    Ok(records)
}

/// A bytea value's bytes, detoasted (decompressed, fetched) if need be. A value detoasted
/// into memory of its own is lent while [`lend_detoasted`] is in force, else copied.
unsafe fn bytea(datum: pg_sys::Datum) -> Bytes {
    // SAFETY: `datum` is a non-null bytea of a tuple the caller's slot holds.
    unsafe {
        let stored = datum.cast_mut_ptr::<pg_sys::varlena>();
        let plain = pg_sys::pg_detoast_datum_packed(stored);
        let slice = pgrx::varlena::varlena_to_byte_slice(plain);
        if plain != stored && LENDING.load(Ordering::Relaxed) {
            return Bytes::from_owner(Lent { start: slice.as_ptr(), len: slice.len() });
        }
        let bytes = Bytes::copy_from_slice(slice);
        if plain != stored {
            pg_sys::pfree(plain.cast());
        }
        bytes
    }
}

/// Whether [`bytea`] lends detoasted values instead of copying them.
static LENDING: AtomicBool = AtomicBool::new(false);

/// Lends detoasted values while it lives: [`bytea`] hands out the value Postgres
/// detoasted into the transaction's memory instead of a copy (a megabyte-sized batch was
/// copied once more for nothing). Only for a reader process, which writes a job's answer
/// to the worker before the job's transaction ends and keeps none of it after: a lent
/// value is freed with that memory, whoever still holds it.
pub fn lend_detoasted() -> Lending {
    LENDING.store(true, Ordering::Relaxed);
    Lending(())
}

/// See [`lend_detoasted`]; copying resumes when it is dropped.
pub struct Lending(());

impl Drop for Lending {
    fn drop(&mut self) {
        LENDING.store(false, Ordering::Relaxed);
    }
}

/// A detoasted value in the current transaction's memory, lent as [`Bytes`]: nothing to
/// free (the transaction's end frees it).
struct Lent {
    start: *const u8,
    len: usize,
}

// SAFETY: only read, on the thread that owns Postgres, before the transaction ends.
unsafe impl Send for Lent {}

impl AsRef<[u8]> for Lent {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: palloc'd by the detoast in the transaction that is still running.
        unsafe { std::slice::from_raw_parts(self.start, self.len) }
    }
}
