//! The request pipeline as the broker runs it on every frame body:
//! header → served check → shape walk (canonical body) → kafka-protocol decode → the
//! handler's own decoding (Produce's record batches), with allocations bounded by the
//! input. Differential: whenever the codec accepts the canonical body, it must have read
//! exactly the bytes the shape walk read.
#![no_main]

use bytes::Bytes;
use kafka_protocol::messages::{ApiKey, RequestKind};
use libfuzzer_sys::fuzz_target;
use pg_kafka_core::protocol::header::parse_request;
use pg_kafka_core::protocol::records::decode_batches;
use pg_kafka_core::protocol::{shape, versions};
use pg_kafka_fuzz::{bounded, TrackingAllocator};

#[global_allocator]
static ALLOCATOR: TrackingAllocator = TrackingAllocator;

/// The decompression cap the fuzzer runs with: within the allowance, so a cap that is not
/// respected shows up as a finding.
const DECOMPRESSED_CAP: usize = 1 << 20;

fuzz_target!(|data: &[u8]| {
    bounded(data, || run(data));
});

fn run(data: &[u8]) {
    let Ok(request) = parse_request(Bytes::copy_from_slice(data)) else { return };
    let (api_key, version) = (request.api_key, request.version());
    if api_key == ApiKey::ApiVersions || !versions::is_served(api_key, version) {
        return;
    }
    let Ok(body) = shape::canonical(api_key, version, &request.body) else { return };
    let walked = shape::consumed(api_key, version, &body).expect("the canonical body passes its own walk");
    let mut rest = body.clone();
    let Ok(decoded) = RequestKind::decode(api_key, &mut rest, version) else { return };
    assert_eq!(body.len() - rest.len(), walked, "{api_key:?} v{version}: the codec and the shape walk read different bytes");
    if let RequestKind::Produce(produce) = decoded {
        for partition in produce.topic_data.iter().flat_map(|t| &t.partition_data) {
            let _ = decode_batches(partition.records.clone().unwrap_or_default(), DECOMPRESSED_CAP);
        }
    }
}
