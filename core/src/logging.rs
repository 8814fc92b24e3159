//! Logging from threads that must not call into Postgres.
//!
//! Network threads queue lines here; the worker's main thread drains them into the server
//! log with `ereport` on every loop turn. Without a drain (unit tests) lines go to stderr.
//! The queue is bounded: when a flood of connections fills it, further lines are dropped
//! and counted rather than growing memory.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    Log,
    Warning,
}

const QUEUE_LINES: usize = 10_000;

static SINK: OnceLock<flume::Sender<(Level, String)>> = OnceLock::new();
static DROPPED: AtomicU64 = AtomicU64::new(0);

/// Installs the queue; returns its receiving end for the main thread to drain.
pub fn install() -> Option<flume::Receiver<(Level, String)>> {
    let (tx, rx) = flume::bounded(QUEUE_LINES);
    SINK.set(tx).ok().map(|_| rx)
}

/// Lines dropped because the queue was full, since the last call.
pub fn take_dropped() -> u64 {
    DROPPED.swap(0, Ordering::Relaxed)
}

pub fn log(message: String) {
    emit(Level::Log, message)
}

pub fn warning(message: String) {
    emit(Level::Warning, message)
}

fn emit(level: Level, message: String) {
    match SINK.get() {
        Some(sink) => {
            if sink.try_send((level, message)).is_err() {
                DROPPED.fetch_add(1, Ordering::Relaxed);
            }
        }
        None => eprintln!("pg_kafka: {level:?}: {message}"),
    }
}
