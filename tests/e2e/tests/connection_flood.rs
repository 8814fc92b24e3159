//! More connections than pg_kafka.max_connections, and more than the soft open-files
//! limit a Postgres process starts with: the extra ones are refused with a log line, the
//! worker keeps its descriptors (it used to exit when epoll_create1 hit EMFILE), and
//! clients are served again once the flood is gone. Alone in its own test binary because
//! it takes every connection slot.

use std::net::TcpStream;
use std::time::Duration;

use nix::sys::resource::{getrlimit, setrlimit, Resource};
use pg_kafka_e2e::*;

const FLOOD: usize = 1200;

#[test]
fn a_connection_flood_is_refused_politely_and_the_worker_survives() {
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard).unwrap();
    assert_survives("a 1,200-connection flood", || {
        let before = worker_identity();
        let mut flood = Vec::with_capacity(FLOOD);
        for _ in 0..FLOOD {
            match TcpStream::connect(bootstrap()) {
                Ok(stream) => flood.push(stream),
                Err(e) => panic!("connect {} failed: {e}", flood.len()),
            }
        }
        assert!(wait_for_log("is reached"), "connections over the limit are refused with a log line");
        // While the flood holds every slot, the database side keeps working (the worker's
        // main thread still has descriptors for its wait sets and files).
        assert_eq!(worker_identity(), before);
        assert_eq!(psql("SELECT count(*) >= 0 FROM kafka.topics"), "t");
        drop(flood);
        std::thread::sleep(Duration::from_millis(500));
    });
}
