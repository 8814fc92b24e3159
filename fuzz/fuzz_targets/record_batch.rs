//! The RecordBatch decoder with every codec (none, gzip, snappy in both framings, lz4,
//! zstd): CRC, lengths, counts and decompression, with allocations bounded by the input.
//! And the header walk Produce uses to decode small requests in place: bytes it calls
//! plain never need a decompression budget. And the batch layout: a batch Produce would
//! store unpacks (as `kafka.batch_records()` does) into its records at its offsets.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use pg_kafka_core::protocol::records::{decode_batches, is_plain, seal_crc, RecordsError, CRC_START};
use pg_kafka_core::storage::batches::{checked, unpack};
use pg_kafka_fuzz::{bounded, TrackingAllocator};

#[global_allocator]
static ALLOCATOR: TrackingAllocator = TrackingAllocator;

/// Inside the allowance: a decompressor that does not stop at its cap is a finding.
const DECOMPRESSED_CAP: usize = 1 << 20;

fuzz_target!(|data: &[u8]| {
    bounded(data, || {
        // Mutations almost never keep the CRC right; fix it so they reach the record
        // parser and the decompressors. A wrong CRC is covered by the unit tests.
        let mut batch = data.to_vec();
        if batch.len() > CRC_START {
            seal_crc(&mut batch);
        }
        let plain = is_plain(&batch);
        let decoded = decode_batches(Bytes::from(batch.clone()), DECOMPRESSED_CAP);
        if let Ok([one]) = decoded.as_deref() {
            if let Ok(stored) = checked(one, Bytes::from(batch.clone())) {
                let row = stored.placed(1, 0, 5);
                let records = unpack(&row.bytes).expect("a stored batch unpacks");
                let offsets: Vec<i64> = records.iter().map(|r| r.offset).collect();
                assert_eq!(offsets, (5..5 + i64::from(stored.record_count)).collect::<Vec<_>>());
            }
        }
        if plain {
            let without_budget = decode_batches(Bytes::from(batch), 0);
            assert!(!matches!(without_budget, Err(RecordsError::TooLarge(_))), "plain bytes drew on the budget");
            assert_eq!(decoded.is_ok(), without_budget.is_ok());
        }
    });
});
