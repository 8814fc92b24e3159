//! Postgres's signal handlers belong to the worker's main thread. Every thread the worker
//! starts (the network thread and the tokio runtime's workers) blocks every signal; before,
//! the runtime's threads inherited the main thread's mask, a SIGTERM could run Postgres's
//! handler on one of them, which panicked. Here SIGHUP and SIGTERM are sent to each of
//! those threads directly (tgkill): nothing may happen. Alone in its own test binary
//! because a mistake would stop the worker every other test uses.

use std::time::Duration;

use pg_kafka_e2e::*;

fn thread_ids(pid: &str) -> Vec<(i32, String)> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .expect("the worker's threads")
        .filter_map(|entry| entry.ok())
        .filter_map(|entry| {
            let tid: i32 = entry.file_name().to_string_lossy().parse().ok()?;
            let name = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default().trim().to_owned();
            Some((tid, name))
        })
        .collect()
}

#[test]
fn signals_sent_to_the_network_threads_are_never_handled_there() {
    assert_survives("SIGHUP and SIGTERM to every network thread", || {
        let log_before = server_log().len();
        let pid = psql("SELECT pid FROM pg_stat_activity WHERE backend_type = 'pg_kafka'");
        let main: i32 = pid.parse().unwrap();
        let others: Vec<(i32, String)> = thread_ids(&pid).into_iter().filter(|(tid, _)| *tid != main).collect();
        assert!(others.len() >= 3, "the network thread and two runtime workers: {others:?}");
        for (tid, name) in &others {
            for signal in [libc::SIGHUP, libc::SIGTERM] {
                // SAFETY: tgkill sends a signal to one thread of the worker's process.
                let sent = unsafe { libc::syscall(libc::SYS_tgkill, main, *tid, signal) };
                assert_eq!(sent, 0, "tgkill {tid} ({name})");
            }
        }
        std::thread::sleep(Duration::from_secs(2));
        let log = server_log();
        let new_lines = log.get(log_before..).unwrap_or_default();
        assert!(!new_lines.contains("panicked") && !new_lines.contains("shutting down"), "no handler ran off the main thread: {new_lines}");
    });
}

/// pg_cancel_backend on the worker (SIGINT: "cancel the current statement") between two
/// jobs has nothing to cancel; it used to be raised as an ERROR outside any transaction by
/// the main loop's interrupt check, which ended the worker.
#[test]
fn pg_cancel_backend_on_the_worker_cancels_nothing_and_ends_nothing() {
    assert_survives("pg_cancel_backend on the worker", || {
        for _ in 0..5 {
            assert_eq!(psql("SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE backend_type = 'pg_kafka'"), "t");
            std::thread::sleep(Duration::from_millis(300));
        }
    });
}
