//! Every handler on whatever the wire brings: no request, however malformed or hostile,
//! makes a handler panic. The request pipeline target checks the decoding; this one goes
//! on into the handlers, as the broker runs them (`Broker::handle`: served versions, the
//! shape walk, then the API's own handler) on in-memory storage holding a topic with two
//! partitions. In the broker a handler panic is caught per request, but it closes the
//! connection and floods the log (OffsetFetch v8 with no groups once indexed an empty
//! list): here it is a finding.
//!
//! Handlers that wait (long polls, rebalances) are given a few milliseconds, then dropped,
//! as a closed connection's are. A fresh broker every few thousand inputs keeps the state
//! the inputs leave behind (groups, produced records) small.
#![no_main]

use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use pg_kafka_core::broker::testing::broker_with_writer;
use pg_kafka_core::broker::Broker;
use pg_kafka_core::protocol::header::parse_request;

/// Inputs one broker serves before it is replaced.
const INPUTS_PER_BROKER: usize = 4096;
/// How long a handler may wait before it is dropped.
const WAIT: Duration = Duration::from_millis(20);

struct State {
    runtime: tokio::runtime::Runtime,
    broker: Broker,
    served: usize,
}

static STATE: Mutex<Option<State>> = Mutex::new(None);

fuzz_target!(|data: &[u8]| {
    let Ok(request) = parse_request(Bytes::copy_from_slice(data)) else { return };
    let mut state = STATE.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if state.as_ref().is_none_or(|s| s.served >= INPUTS_PER_BROKER) {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("a runtime");
        let broker = runtime.block_on(async { broker_with_writer(2) });
        *state = Some(State { runtime, broker, served: 0 });
    }
    let Some(state) = state.as_mut() else { return };
    state.served += 1;
    let broker = state.broker.clone();
    // A panic in the handler unwinds through block_on: libFuzzer reports it.
    let _ = state.runtime.block_on(async move { tokio::time::timeout(WAIT, broker.handle(request)).await });
});
