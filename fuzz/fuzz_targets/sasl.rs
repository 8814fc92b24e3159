//! The SCRAM-SHA-256 messages a client sends before it is authenticated: the first
//! message (user, nonce, GS2 header) and the final one (channel binding, nonce, proof)
//! against a server exchange, and Postgres verifier texts. Whatever the bytes, parsing
//! ends in a value or an error, with allocations bounded by the input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pg_kafka_core::security::scram::{ClientFirst, ServerFirst, Verifier};
use pg_kafka_fuzz::{bounded, TrackingAllocator};

#[global_allocator]
static ALLOCATOR: TrackingAllocator = TrackingAllocator;

fuzz_target!(|data: &[u8]| {
    bounded(data, || {
        // First byte chooses what the rest is; a final message is tried against an
        // exchange started with a fixed, valid first message.
        let Some((&choice, rest)) = data.split_first() else { return };
        match choice % 3 {
            0 => {
                let _ = ClientFirst::parse(rest);
            }
            1 => {
                let first = ClientFirst::parse(b"n,,n=user,r=fuzznonce").expect("a valid first message");
                let verifier = Verifier::from_password("pw", b"salt", 1);
                let server = ServerFirst::new(first, verifier, b"server");
                let _ = server.finish(rest);
            }
            _ => {
                let _ = Verifier::parse(&String::from_utf8_lossy(rest));
            }
        }
    });
});
