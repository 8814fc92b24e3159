//! Rows in COPY's binary format (`COPY ... FROM ... (FORMAT binary)`), columns in
//! `kafka.messages` (or `kafka.batches`) order: what the Postgres engine feeds its COPY
//! with. Pure, so it is unit-tested here without Postgres.

#[cfg(test)]
use super::RowTxn;
use super::{postgres_timestamp_us, BatchRow, MessageRows, StorageError};

/// COPY binary signature, then flags and header-extension length (both 0).
const HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";
/// Columns of `kafka.messages`: topic, partition, offset, timestamp, key, value, headers,
/// then (0.9.0) producer_id, producer_epoch and control, NULL outside transactions.
const COLUMNS: i16 = 10;
const TRAILER: i16 = -1;

/// Rows in COPY's binary format, columns in `kafka.messages` order.
pub fn encode_binary(rows: &MessageRows) -> Result<Vec<u8>, StorageError> {
    let len = |b: &Option<bytes::Bytes>| b.as_ref().map_or(0, bytes::Bytes::len);
    let payload: usize = (0..rows.len()).map(|i| len(&rows.keys[i]) + len(&rows.values[i]) + len(&rows.headers[i])).sum();
    let mut out = Vec::with_capacity(HEADER.len() + payload + rows.len() * 70 + 2);
    out.extend_from_slice(HEADER);
    for i in 0..rows.len() {
        let ms = rows.timestamps_ms[i];
        let timestamp = postgres_timestamp_us(ms).ok_or(StorageError::TimestampOutOfRange(ms))?;
        out.extend_from_slice(&COLUMNS.to_be_bytes());
        field(&mut out, Some(&rows.topic_ids[i].to_be_bytes()));
        field(&mut out, Some(&rows.partitions[i].to_be_bytes()));
        field(&mut out, Some(&rows.offsets[i].to_be_bytes()));
        field(&mut out, Some(&timestamp.to_be_bytes()));
        field(&mut out, rows.keys[i].as_deref());
        field(&mut out, rows.values[i].as_deref());
        field(&mut out, rows.headers[i].as_deref());
        match rows.txn(i) {
            Some(txn) => {
                field(&mut out, Some(&txn.producer_id.to_be_bytes()));
                field(&mut out, Some(&txn.producer_epoch.to_be_bytes()));
                field(&mut out, Some(&[u8::from(txn.control)]));
            }
            None => (0..3).for_each(|_| field(&mut out, None)),
        }
    }
    out.extend_from_slice(&TRAILER.to_be_bytes());
    Ok(out)
}

/// Columns of `kafka.batches`.
const BATCH_COLUMNS: i16 = 10;

/// Batches in COPY's binary format, columns in `kafka.batches` order.
pub fn encode_batches(batches: &[BatchRow]) -> Result<Vec<u8>, StorageError> {
    let bytes: usize = batches.iter().map(|b| b.bytes.len()).sum();
    let mut out = Vec::with_capacity(HEADER.len() + bytes + batches.len() * 100 + 2);
    out.extend_from_slice(HEADER);
    for b in batches {
        let ms = b.max_timestamp_ms;
        let max_timestamp = postgres_timestamp_us(ms).ok_or(StorageError::TimestampOutOfRange(ms))?;
        out.extend_from_slice(&BATCH_COLUMNS.to_be_bytes());
        field(&mut out, Some(&b.topic_id.to_be_bytes()));
        field(&mut out, Some(&b.partition.to_be_bytes()));
        field(&mut out, Some(&b.base_offset.to_be_bytes()));
        field(&mut out, Some(&b.last_offset().to_be_bytes()));
        field(&mut out, Some(&b.record_count.to_be_bytes()));
        field(&mut out, Some(&max_timestamp.to_be_bytes()));
        field(&mut out, Some(&b.producer_id.to_be_bytes()));
        field(&mut out, Some(&b.producer_epoch.to_be_bytes()));
        field(&mut out, Some(&b.base_sequence.to_be_bytes()));
        field(&mut out, Some(&b.bytes));
    }
    out.extend_from_slice(&TRAILER.to_be_bytes());
    Ok(out)
}

/// One field: its length (-1 for NULL), then its bytes.
fn field(out: &mut Vec<u8>, value: Option<&[u8]>) {
    match value {
        Some(bytes) => {
            out.extend_from_slice(&(bytes.len() as i32).to_be_bytes());
            out.extend_from_slice(bytes);
        }
        None => out.extend_from_slice(&(-1i32).to_be_bytes()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn rows_encode_as_copy_binary() {
        let rows = MessageRows {
            topic_ids: vec![3],
            partitions: vec![1],
            offsets: vec![9],
            timestamps_ms: vec![946_684_800_001], // 2000-01-01 00:00:00.001: 1000 µs
            keys: vec![None],
            values: vec![Some(Bytes::from_static(b"hi"))],
            headers: vec![Some(Bytes::new())],
            txns: Vec::new(),
        };
        let mut want = b"PGCOPY\n\xff\r\n\0".to_vec();
        want.extend_from_slice(&[0; 8]);
        want.extend_from_slice(&[0, 10]);
        want.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 3]);
        want.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 1]);
        want.extend_from_slice(&[0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 9]);
        want.extend_from_slice(&[0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0x03, 0xe8]);
        want.extend_from_slice(&[0xff, 0xff, 0xff, 0xff]);
        want.extend_from_slice(&[0, 0, 0, 2, b'h', b'i']);
        want.extend_from_slice(&[0, 0, 0, 0]);
        want.extend_from_slice(&[0xff; 12]); // no transaction: three NULLs
        want.extend_from_slice(&[0xff, 0xff]);
        assert_eq!(encode_binary(&rows).unwrap(), want);
    }

    #[test]
    fn a_transactional_row_carries_its_producer_and_control_flag() {
        let mut rows = crate::storage::empty_rows(3, 1, &[9]);
        rows.set_last_txn(Some(RowTxn { producer_id: 5, producer_epoch: 2, control: true }));
        let encoded = encode_binary(&rows).unwrap();
        let mut tail = vec![0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 5, 0, 0, 0, 2, 0, 2, 0, 0, 0, 1, 1];
        tail.extend_from_slice(&[0xff, 0xff]);
        assert!(encoded.ends_with(&tail), "{encoded:?}");
    }

    #[test]
    fn batches_encode_as_copy_binary_in_column_order() {
        let record = |delta| crate::protocol::records::Record { offset_delta: delta, timestamp: 1, key: None, value: None, headers: None };
        let two_records = crate::protocol::records::encode_batch(10, &[record(0), record(1)]);
        let batch = BatchRow {
            topic_id: 3,
            partition: 1,
            base_offset: 10,
            record_count: 2,
            max_timestamp_ms: 946_684_800_001,
            producer_id: -1,
            producer_epoch: -1,
            base_sequence: -1,
            bytes: two_records.clone(),
        };
        let encoded = encode_batches(&[batch]).unwrap();
        let mut want = HEADER.to_vec();
        want.extend_from_slice(&[0, 10]);
        want.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 3, 0, 0, 0, 4, 0, 0, 0, 1]);
        want.extend_from_slice(&[0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 10, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 11]);
        want.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 2]);
        want.extend_from_slice(&[0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0x03, 0xe8]);
        want.extend_from_slice(&[0, 0, 0, 8, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
        want.extend_from_slice(&[0, 0, 0, 2, 0xff, 0xff, 0, 0, 0, 4, 0xff, 0xff, 0xff, 0xff]);
        want.extend_from_slice(&(two_records.len() as u32).to_be_bytes());
        want.extend_from_slice(&two_records);
        want.extend_from_slice(&[0xff, 0xff]);
        assert_eq!(encoded, want);
    }

    #[test]
    fn unstorable_timestamps_are_refused() {
        let rows = MessageRows {
            topic_ids: vec![1],
            partitions: vec![0],
            offsets: vec![0],
            timestamps_ms: vec![i64::MAX],
            keys: vec![None],
            values: vec![None],
            headers: vec![None],
            txns: Vec::new(),
        };
        assert_eq!(encode_binary(&rows), Err(StorageError::TimestampOutOfRange(i64::MAX)));
    }
}
