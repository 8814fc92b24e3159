//! Reader processes: Fetch's reads and retention passes in Postgres sessions of their
//! own, beside the worker's group commit (why: `pg_kafka_core::storage::readers`).
//!
//! ```text
//! pg_kafka worker ── once its listeners are up ──▶ pg_kafka.readers dynamic bgworkers
//! pg_kafka_reader_main:
//!   connect to pg_kafka.database, then to the worker's abstract socket (socket_name)
//!   loop: [u32 len][u8 kind][job] ─▶ run it in a transaction (a Fetch's index walk, or
//!         a retention pass; statement timeout) ─▶ [u32 len][answer]
//!   end of file (the worker went away) or SIGTERM: exit
//! ```
//! A reader is not restarted by the postmaster: the worker starts missing ones again (at
//! most every 10 s, see [`Keeper`]), and while none is connected the worker's main thread
//! reads, as it did before readers.

use std::io::{ErrorKind, Read};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use pg_kafka_core::service::answer_reader_job;
use pg_kafka_core::storage::readers::{write_answer, ReaderJob};
use pg_kafka_core::storage::reads::ReadPlan;
use pgrx::bgworkers::{BackgroundWorker, BackgroundWorkerBuilder, BgWorkerStartTime, SignalWakeFlags};
use pgrx::prelude::*;

use crate::gucs;
use crate::pg::storage::{apply_session_settings, TransactionRunner};

/// Longest a reader waits for a plan before it looks at SIGTERM again.
const POLL_MS: i64 = 250;
/// A plan is 32 bytes a partition; no Fetch the worker accepts makes one this large.
const MAX_PLAN_BYTES: usize = 64 << 20;

/// The socket readers connect to: an abstract one, named after this cluster's postmaster
/// and data directory, so that clusters on one machine never share it, and nothing lands
/// in the data directory for pg_basebackup or pg_rewind to trip on (why, and who may
/// connect: `pg_kafka_core::storage::readers`).
pub fn socket_name() -> String {
    use std::hash::{Hash, Hasher};
    // SAFETY: DataDir and PostmasterPid are set by the postmaster before any worker
    // starts, and not changed.
    let (data_dir, postmaster) = unsafe { (std::ffi::CStr::from_ptr(pg_sys::DataDir), pg_sys::PostmasterPid) };
    // The worker and its readers run the same library, so they hash alike.
    let mut hasher = std::hash::DefaultHasher::new();
    data_dir.hash(&mut hasher);
    format!("@pg_kafka_readers.{postmaster}.{:016x}", hasher.finish())
}

/// Keeps `pg_kafka.readers` reader processes connected: starts the missing ones at once,
/// then (after one failed or was ended) at most every [`RESTART_EVERY`].
pub struct Keeper {
    wanted: usize,
    last_start: Option<Instant>,
    /// Whether a failed start was logged (max_worker_processes reached): said once.
    told: bool,
}

/// How often missing readers are started again.
const RESTART_EVERY: Duration = Duration::from_secs(10);

impl Keeper {
    /// `wanted` is 0 when the worker has no reader socket.
    pub fn new(wanted: usize) -> Keeper {
        Keeper { wanted, last_start: None, told: false }
    }

    /// Called from the main loop with the readers connected now.
    pub fn keep_up(&mut self, connected: usize) {
        if connected >= self.wanted || self.last_start.is_some_and(|at| at.elapsed() < RESTART_EVERY) {
            return;
        }
        if self.last_start.replace(Instant::now()).is_some() {
            log!("pg_kafka: {} of {} reader processes connected; starting new ones", connected, self.wanted);
        }
        for i in connected..self.wanted {
            let started = BackgroundWorkerBuilder::new(&format!("pg_kafka reader {i}"))
                .set_type("pg_kafka reader")
                .set_library("pg_kafka")
                .set_function("pg_kafka_reader_main")
                .enable_spi_access()
                // Readers serve Fetch on a hot standby too (the worker runs there).
                .set_start_time(BgWorkerStartTime::ConsistentState)
                .set_restart_time(None)
                .load_dynamic();
            if let Err(e) = started {
                if !std::mem::replace(&mut self.told, true) {
                    log!("pg_kafka: cannot start a reader process ({e:?}; see max_worker_processes): Fetch reads on the main thread");
                }
                return;
            }
        }
    }
}

#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn pg_kafka_reader_main(_arg: pg_sys::Datum) {
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGTERM);
    super::keep_freed_memory();
    let config = gucs::config();
    BackgroundWorker::connect_worker_to_spi(Some(&config.database), None);
    // Before any statement: a database owner may have set the path (src/pg/privileged.rs).
    crate::pg::privileged::fix_session_search_path();
    let path = socket_name();
    let mut stream = match pg_kafka_core::storage::readers::connect(&path) {
        Ok(stream) => stream,
        Err(e) => return log!("pg_kafka: reader cannot reach the worker at {path}: {e}"),
    };
    if let Err(e) = stream.set_write_timeout(Some(Duration::from_secs(30))) {
        return log!("pg_kafka: reader cannot set a socket timeout: {e}");
    }
    hold_whole_answers(&stream);
    let mut runner = TransactionRunner::new(config.statement_timeout_ms);
    if let Err(e) = apply_session_settings(&mut runner, config.synchronous_commit, config.lock_timeout_ms) {
        return log!("pg_kafka: reader cannot prepare its session: {e}");
    }
    let mut pending = Vec::new();
    while !BackgroundWorker::sigterm_received() {
        let plan = match next_frame(&mut stream, &mut pending) {
            Ok(Some(frame)) => frame,
            Ok(None) => {
                wait_for(&stream);
                continue;
            }
            Err(e) if e.kind() == ErrorKind::UnexpectedEof => return,
            Err(e) => return log!("pg_kafka: reader stops: {e}"),
        };
        if let Err(e) = stream.set_nonblocking(false) {
            return log!("pg_kafka: reader cannot answer the worker: {e}");
        }
        // A Fetch's batches are lent from its transaction's memory, not copied: its answer
        // is written before the transaction ends (answer_reader_job), and what it holds
        // is bounded by the response. Not a retention or cleaning pass's: those walk far
        // more than they keep, and lent values stay until the transaction ends.
        let lent = (plan.first() == Some(&ReadPlan::KIND)).then(crate::pg::index_read::lend_detoasted);
        let answered = answer_reader_job(&plan, &mut runner, &mut |parts| write_answer(&mut stream, parts));
        drop(lent);
        if let Err(e) = answered {
            return log!("pg_kafka: reader stops: {e}");
        }
    }
}

/// Asks for a send buffer that holds a megabyte answer whole ([`ANSWER_BUFFER_BYTES`],
/// capped by the kernel at `net.core.wmem_max`): with the default (about 200 KB) a reader
/// wrote each answer in five turns, waiting between them for the worker's network thread
/// to drain the socket, and a consumer catching up waited for every turn. Best effort.
fn hold_whole_answers(stream: &UnixStream) {
    let bytes = ANSWER_BUFFER_BYTES;
    // SAFETY: an open socket, and an option value of the size given.
    unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_SNDBUF,
            std::ptr::addr_of!(bytes).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

/// The send buffer a reader asks for: a megabyte batch and its framing, twice over.
const ANSWER_BUFFER_BYTES: libc::c_int = 4 << 20;

/// Sleeps until the socket is readable, the latch is set, or POLL_MS passed, then serves
/// interrupts: a reader must absorb Postgres's process-signal barriers (DROP DATABASE
/// waits for every process to) and leave when the postmaster does.
fn wait_for(stream: &UnixStream) {
    let events = pg_sys::WL_LATCH_SET | pg_sys::WL_SOCKET_READABLE | pg_sys::WL_TIMEOUT | pg_sys::WL_EXIT_ON_PM_DEATH;
    // SAFETY: the process's own latch and an open descriptor, on the main thread.
    unsafe {
        pg_sys::WaitLatchOrSocket(pg_sys::MyLatch, events as i32, stream.as_raw_fd(), POLL_MS as _, pg_sys::PG_WAIT_EXTENSION);
        pg_sys::ResetLatch(pg_sys::MyLatch);
        // A cancel between plans has no statement to cancel (as in the worker's loop).
        pg_sys::QueryCancelPending = 0;
    }
    pg_sys::check_for_interrupts!();
}

/// The next `[u32 length][bytes]` frame once all of it has arrived; `None` when nothing
/// more can be read now (what arrived so far stays in `pending`).
fn next_frame(stream: &mut UnixStream, pending: &mut Vec<u8>) -> std::io::Result<Option<Vec<u8>>> {
    stream.set_nonblocking(true)?;
    let mut chunk = [0u8; 64 * 1024];
    loop {
        if pending.len() >= 4 {
            let size = u32::from_be_bytes(pending[..4].try_into().expect("4 bytes")) as usize;
            if size > MAX_PLAN_BYTES {
                return Err(std::io::Error::other(format!("a plan of {size} bytes")));
            }
            if pending.len() >= 4 + size {
                let frame = pending[4..4 + size].to_vec();
                pending.drain(..4 + size);
                return Ok(Some(frame));
            }
        }
        match stream.read(&mut chunk) {
            Ok(0) => return Err(ErrorKind::UnexpectedEof.into()),
            Ok(n) => pending.extend_from_slice(&chunk[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted) => return Ok(None),
            Err(e) => return Err(e),
        }
    }
}
