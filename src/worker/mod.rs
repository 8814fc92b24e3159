//! The background worker: its registration, and the main thread's loop.
//!
//! ```text
//! pg_kafka_worker_main (main thread: the only one that touches Postgres)
//!   read GUCs → connect to pg_kafka.database → CREATE EXTENSION IF NOT EXISTS pg_kafka
//!   pg_kafka_core::service::start: bind, assemble the broker, start the network thread
//!   keep pg_kafka.readers reader processes (reader.rs) running for Fetch's reads
//!   loop: WaitLatchOrSocket(latch, wakeup eventfd, 250 ms)
//!           → StorageSide::turn: what SQL sessions produced (kafka.produce sets the latch),
//!             queued storage jobs, group commit, refresh, retention,
//!             each in its own transaction (TransactionRunner)
//!           → copy queued log lines into the server log
//!   on SIGTERM: stop accepting, keep serving jobs until connections finish
//!               (pg_kafka.shutdown_timeout_ms), then fail what is left and exit.
//! ```
//! On a hot standby the worker serves reads only (`Config::standby`); once Postgres is
//! promoted its broker shuts down as on SIGTERM and the primary's starts in the same process.
//! Postmaster death ends the process at once (`WL_EXIT_ON_PM_DEATH`). If start-up fails
//! (no such database, port in use) the worker logs why and exits; the postmaster starts
//! it again after `RESTART_SECONDS`.

pub mod reader;
pub mod wakeup;

use std::sync::Arc;
use std::time::{Duration, Instant};

use pg_kafka_core::logging::{self, Level};
use pg_kafka_core::service::{self, StorageSide};
use pg_kafka_core::storage::bridge::Waker;
use pgrx::bgworkers::{BackgroundWorker, BackgroundWorkerBuilder, BgWorkerStartTime, SignalWakeFlags};
use pgrx::prelude::*;

use crate::gucs;
use crate::pg::storage::{apply_session_settings, prepare_session, TransactionRunner};
use wakeup::Wakeup;

const RESTART_SECONDS: u64 = 5;
/// Longest sleep when idle; bounds how late queued log lines reach the server log.
const IDLE_WAIT_MS: i64 = 250;

pub fn register() {
    BackgroundWorkerBuilder::new("pg_kafka")
        .set_type("pg_kafka")
        .set_library("pg_kafka")
        .set_function("pg_kafka_worker_main")
        .enable_spi_access()
        // On a hot standby too, from the moment it is consistent: it serves reads there
        // (docs/replication.md). A primary's worker starts once recovery finished, as
        // before: crash recovery never enters the consistent (hot standby) state.
        .set_start_time(BgWorkerStartTime::ConsistentState)
        .set_restart_time(Some(Duration::from_secs(RESTART_SECONDS)))
        .load();
}

#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn pg_kafka_worker_main(_arg: pg_sys::Datum) {
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP | SignalWakeFlags::SIGTERM);
    keep_freed_memory();
    let database = gucs::config().database;
    BackgroundWorker::connect_worker_to_spi(Some(&database), None);
    // Before any statement: a database owner may have set the path (src/pg/privileged.rs).
    crate::pg::privileged::fix_session_search_path();
    let mut log_lines = logging::install();
    // A standby's broker ends when Postgres is promoted; the primary's starts in its place
    // at once, in this process (the listeners were closed: the ports are free again).
    while let Ending::Promoted(lines) = serve(startup_config(), log_lines) {
        log_lines = lines;
        log!("pg_kafka: this node is the primary now: starting its broker");
    }
    exit_to_be_restarted();
}

/// The settings a broker starts with, with the readers' socket.
fn startup_config() -> pg_kafka_core::config::Config {
    let mut config = gucs::config();
    if config.readers > 0 {
        config.reader_socket = reader::socket_name();
    }
    config
}

/// How [`serve`] ended.
enum Ending {
    /// SIGTERM, or the broker could not start (the postmaster starts the worker again).
    Stopped,
    /// This standby's Postgres was promoted, and its broker has stopped in time: the
    /// primary's may start. The log queue goes to it.
    Promoted(Option<flume::Receiver<(Level, String)>>),
}

/// Runs a broker until SIGTERM, or until a standby's Postgres is promoted.
fn serve(config: pg_kafka_core::config::Config, log_lines: Option<flume::Receiver<(Level, String)>>) -> Ending {
    if let Err(e) = prepare_session(config.synchronous_commit, config.lock_timeout_ms, config.standby) {
        log!("pg_kafka: cannot prepare database \"{}\": {e}; retrying in {RESTART_SECONDS}s", config.database);
        return Ending::Stopped;
    }
    let wakeup = match Wakeup::new() {
        Ok(wakeup) => Arc::new(wakeup),
        Err(e) => {
            log!("pg_kafka: cannot create eventfd: {e}");
            return Ending::Stopped;
        }
    };
    let notify = wakeup.clone();
    let wake: Waker = Arc::new(move || notify.notify());
    let (server, mut storage_side, listeners) = match service::start(config.clone(), wake) {
        Ok(started) => started,
        Err(e) => {
            log!("pg_kafka: cannot start the Kafka listeners: {e}; retrying in {RESTART_SECONDS}s");
            return Ending::Stopped;
        }
    };
    warn_if_cluster_nodes_unreadable();
    let role = if config.standby { ", a hot standby: reads only" } else { "" };
    log!("pg_kafka: listening for Kafka clients on {listeners} (database \"{}\"{role})", config.database);

    // kafka.produce() in SQL sessions: what they committed reaches the writer's counters
    // and Fetch's watermarks at once (they set this process's latch).
    storage_side.set_sql_log(Arc::new(crate::outbox::appends::since));
    storage_side.set_replication_progress(Box::new(crate::pg::replication::WalSenders));
    crate::outbox::appends::attach_worker();
    let runner = TransactionRunner::new(config.statement_timeout_ms);
    let connections = crate::monitor::Publisher::default();
    let readers = reader::Keeper::new(if config.reader_socket.is_empty() { 0 } else { config.readers });
    let mut main = MainLoop { wakeup, storage_side, runner, log_lines, next_wake: None, connections, readers };
    let mut promoted = false;
    while main.wait() {
        main.turn();
        if config.standby && !in_recovery() {
            log!("pg_kafka: this standby was promoted: its broker stops, and the primary's starts");
            promoted = true;
            break;
        }
    }

    log!("pg_kafka: shutting down");
    server.begin_shutdown();
    let deadline = Instant::now() + Duration::from_millis(config.shutdown_timeout_ms) + Duration::from_secs(1);
    while !server.is_finished() && Instant::now() < deadline {
        main.wait();
        main.turn();
    }
    let finished = server.is_finished();
    if finished {
        server.join();
    }
    // What is still queued fails now (nothing of it was acknowledged); dropping the bridge
    // queue fails its jobs too. Their connections are closing.
    main.storage_side.fail_pending();
    crate::monitor::clear();
    crate::outbox::appends::detach_worker();
    main.forward_logs();
    log!("pg_kafka: stopped{}", if finished { "" } else { " (network thread did not finish in time)" });
    // A network thread still running may hold the ports: then the postmaster's restart
    // starts the primary's broker instead.
    match promoted && finished && !BackgroundWorker::sigterm_received() {
        true => Ending::Promoted(main.log_lines.take()),
        false => Ending::Stopped,
    }
}

/// Ends the worker with exit code 1, never 0: the postmaster restarts a worker that exits
/// with 1 after RESTART_SECONDS (pg_terminate_backend, say), and restarts nothing while it
/// shuts down itself. An exit with 0 would unregister the worker and leave the port closed.
/// (`proc_exit` is `noreturn` in Postgres; pgrx's bindings say so for some majors only.)
#[allow(unreachable_code)]
fn exit_to_be_restarted() -> ! {
    unsafe { pg_sys::proc_exit(1) };
    unreachable!("proc_exit returned")
}

/// Says so when `pg_kafka.cluster_nodes` does not parse (at start and at each reload):
/// Metadata then names this node alone.
fn warn_if_cluster_nodes_unreadable() {
    if let Some(problem) = gucs::cluster_nodes_problem() {
        warning!("pg_kafka: {problem}: Metadata names this node alone");
    }
}

/// Whether Postgres is in recovery (a hot standby, here): false once it was promoted.
fn in_recovery() -> bool {
    // SAFETY: reads the shared recovery state.
    unsafe { pg_sys::RecoveryInProgress() }
}

struct MainLoop {
    wakeup: Arc<Wakeup>,
    storage_side: StorageSide,
    runner: TransactionRunner,
    log_lines: Option<flume::Receiver<(Level, String)>>,
    /// When the group-commit writer next has a flush or refresh due.
    next_wake: Option<Duration>,
    /// Copies the open connections and the broker's figures to shared memory.
    connections: crate::monitor::Publisher,
    /// Starts reader processes, and new ones for those that went away.
    readers: reader::Keeper,
}

impl MainLoop {
    /// Sleeps until work is queued, the latch is set, a flush is due, or the idle time
    /// passes. Returns false once SIGTERM has been received.
    fn wait(&self) -> bool {
        // Rounded up: waking a little late is harmless, waking early only spins.
        let due_ms = |due: Duration| (due.as_micros().div_ceil(1000) as i64).min(IDLE_WAIT_MS);
        let timeout_ms = self.next_wake.map_or(IDLE_WAIT_MS, due_ms);
        let events = pg_sys::WL_LATCH_SET | pg_sys::WL_SOCKET_READABLE | pg_sys::WL_TIMEOUT | pg_sys::WL_EXIT_ON_PM_DEATH;
        unsafe {
            pg_sys::WaitLatchOrSocket(pg_sys::MyLatch, events as i32, self.wakeup.raw_fd(), timeout_ms as _, pg_sys::PG_WAIT_EXTENSION);
            pg_sys::ResetLatch(pg_sys::MyLatch);
            // A cancel (pg_cancel_backend on the worker) between jobs has no statement to
            // cancel; left pending, the interrupt check below would raise it as an ERROR
            // outside any transaction and end the worker.
            pg_sys::QueryCancelPending = 0;
        }
        pg_sys::check_for_interrupts!();
        !BackgroundWorker::sigterm_received()
    }

    fn turn(&mut self) {
        self.wakeup.clear();
        if BackgroundWorker::sighup_received() {
            self.reload();
        }
        self.next_wake = Some(self.storage_side.turn(&mut self.runner));
        self.connections.publish_if_due(self.storage_side.figures(), |limit| self.storage_side.connections(limit));
        self.readers.keep_up(self.storage_side.readers_connected());
        // A backend reports its table statistics when it goes idle; a worker must do it
        // itself, or autovacuum never learns of the rows the writer inserts. Rate-limited
        // by Postgres to about once a second; called outside any transaction.
        unsafe { pg_sys::pgstat_report_stat(false) };
        self.forward_logs();
    }

    /// SIGHUP: rereads postgresql.conf, applies the session settings and gives the network
    /// side the new settings. Those that need a restart keep their start-up values (and
    /// Postgres logs that they changed but cannot take effect).
    fn reload(&mut self) {
        unsafe { pg_sys::ProcessConfigFile(pg_sys::GucContext::PGC_SIGHUP) };
        let config = gucs::config();
        warn_if_cluster_nodes_unreadable();
        if let Err(e) = apply_session_settings(&mut self.runner, config.synchronous_commit, config.lock_timeout_ms) {
            warning!("pg_kafka: reloaded settings could not be applied to the worker's session: {e}");
        }
        self.runner.set_statement_timeout(config.statement_timeout_ms);
        self.storage_side.reload(config);
        log!("pg_kafka: settings reloaded");
    }

    fn forward_logs(&self) {
        let Some(lines) = &self.log_lines else { return };
        for (level, line) in lines.try_iter() {
            match level {
                Level::Log => log!("{line}"),
                Level::Warning => warning!("{line}"),
            }
        }
        let dropped = logging::take_dropped();
        if dropped > 0 {
            warning!("pg_kafka: {dropped} log lines from the network thread were dropped (queue full)");
        }
    }
}

/// Keeps freed memory mapped in this process (the worker, or a reader). Fetch moves
/// batches of a megabyte or more through buffers made for each read (a detoasted value,
/// an answer on the reader socket, a response); by default glibc maps and unmaps such
/// buffers, or grows and trims its heap for them, so every read faulted its pages in
/// anew: a fifth of a reader's time when consumers catch up on large batches. Larger
/// allocations than 32 MiB are still mapped apart, and at most 64 MiB freed at the top of
/// a heap stays.
pub fn keep_freed_memory() {
    // SAFETY: mallopt only changes glibc's allocation thresholds; called once per process
    // before its threads start.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 64 << 20);
    }
}
