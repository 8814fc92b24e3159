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
//! the inputs leave behind (groups, produced records) small. Every other broker is a hot
//! standby of a primary and another node (its refusals and the cluster view, racks
//! included: follower fetching).
#![no_main]

use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use pg_kafka_core::broker::testing::{broker_on, broker_with_writer};
use pg_kafka_core::broker::Broker;
use pg_kafka_core::config::{nodes, Config};
use pg_kafka_core::storage::memory::MemoryStorage;
use pg_kafka_core::storage::Storage;
use pg_kafka_core::protocol::header::parse_request;

/// Inputs one broker serves before it is replaced.
const INPUTS_PER_BROKER: usize = 4096;
/// How long a handler may wait before it is dropped.
const WAIT: Duration = Duration::from_millis(20);

struct State {
    runtime: tokio::runtime::Runtime,
    broker: Broker,
    served: usize,
    /// Brokers made so far: odd ones are standbys.
    generation: usize,
}

/// A hot standby (node 2) of node 1, with node 3 in its rack, holding topic "t".
fn standby() -> Broker {
    let mut storage = MemoryStorage::default();
    storage.create_topic("t", 2).expect("a topic");
    storage.leader = Some(1);
    let cluster_nodes = nodes::parse("1:a@10.0.0.1:9092,2:b@10.0.0.2:9092,3:b@SSL://10.0.0.3:9093").expect("a list");
    broker_on(storage, Config { standby: true, node_id: 2, cluster_nodes, ..Config::default() })
}

static STATE: Mutex<Option<State>> = Mutex::new(None);

fuzz_target!(|data: &[u8]| {
    let Ok(request) = parse_request(Bytes::copy_from_slice(data)) else { return };
    let mut state = STATE.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if state.as_ref().is_none_or(|s| s.served >= INPUTS_PER_BROKER) {
        let generation = state.as_ref().map_or(0, |s| s.generation + 1);
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("a runtime");
        let broker = runtime.block_on(async { if generation % 2 == 1 { standby() } else { broker_with_writer(2) } });
        *state = Some(State { runtime, broker, served: 0, generation });
    }
    let Some(state) = state.as_mut() else { return };
    state.served += 1;
    let broker = state.broker.clone();
    // A panic in the handler unwinds through block_on: libFuzzer reports it.
    let _ = state.runtime.block_on(async move { tokio::time::timeout(WAIT, broker.handle(request)).await });
});
