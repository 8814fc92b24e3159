//! Bytes that reach pg_kafka from clients and are decoded long after the request was
//! checked: record headers as stored (shown as JSON by `kafka.headers()`), headers given
//! as JSON to `kafka.produce()`, and a consumer group leader's assignments (shown by
//! `kafka.group_members`). Whatever the bytes, decoding ends in a value or an error, with
//! allocations bounded by the input; what decodes encodes back to the same headers.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pg_kafka_core::broker::groups::assignment;
use pg_kafka_core::protocol::records::{decode_headers, encode_headers};
use pg_kafka_core::storage::headers_json::{headers_from_json, headers_to_json};
use pg_kafka_fuzz::{bounded, TrackingAllocator};

#[global_allocator]
static ALLOCATOR: TrackingAllocator = TrackingAllocator;

fuzz_target!(|data: &[u8]| {
    bounded(data, || {
        let Some((&choice, rest)) = data.split_first() else { return };
        match choice % 3 {
            0 => {
                if let Ok(headers) = decode_headers(rest) {
                    let again = encode_headers(&headers).map(|b| b.to_vec()).unwrap_or_else(|| vec![0]);
                    assert_eq!(decode_headers(&again).expect("re-encoded headers decode"), headers);
                    let _ = headers_to_json(rest).expect("decodable headers show as JSON");
                }
            }
            1 => {
                if let Ok(json) = serde_json::from_slice::<serde_json::Value>(rest) {
                    if let Ok(Some(encoded)) = headers_from_json(&json) {
                        decode_headers(&encoded).expect("encoded headers decode");
                    }
                }
            }
            _ => {
                let _ = assignment::describe(rest);
            }
        }
    });
});
