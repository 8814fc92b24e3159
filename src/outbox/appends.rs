//! The shared-memory log of what SQL sessions produced, and the worker's latch.
//!
//! A transaction that called `kafka.produce()` records its partitions here when it
//! commits (before its partition locks are released) and sets the worker's latch; the
//! worker reads the log from where it stopped (`pg_kafka_core::storage::sql_appends`):
//! its offset counters for those partitions are re-read under the lock, and long polls
//! waiting on them wake at once.
//!
//! It also keeps SQL sessions from starving the writer: the writer never waits for a
//! partition's append lock, so sessions that take turns on it could keep it forever. When
//! the writer finds a partition locked, it records that it wants it ([`want`]); a session
//! about to take that lock first lets the writer have a turn ([`yield_to_writer`], at most
//! [`MAX_YIELD`]). Wishes older than [`WISH_LIFETIME_MS`] are ignored (the writer renews
//! them at every try, so an old one means it gave up).

use std::sync::atomic::{AtomicBool, Ordering};

use pg_kafka_core::storage::sql_appends::{AppendRing, SqlAppends};
use pg_kafka_core::storage::watermarks::PartitionKey;
use pgrx::prelude::*;
use pgrx::{pg_shmem_init, PGRXSharedMemory, PgLwLock};

/// Partitions the writer may want at once; further wishes are not recorded.
const WISH_SLOTS: usize = 64;
/// How long a wish counts after the writer last renewed it.
const WISH_LIFETIME_MS: i64 = 1000;
/// The longest a SQL session yields to the writer before taking the lock anyway.
pub const MAX_YIELD: std::time::Duration = std::time::Duration::from_millis(200);

/// The writer wants a partition's append lock, since `at_ms`.
#[derive(Copy, Clone, Default)]
struct Wish {
    topic_id: i32,
    partition: i32,
    at_ms: i64,
}

#[derive(Copy, Clone)]
pub struct Log {
    ring: AppendRing,
    wishes: [Wish; WISH_SLOTS],
    /// The worker's `MyLatch` (an address in shared memory, the same in every backend),
    /// 0 while no worker runs.
    worker_latch: usize,
}

impl Default for Log {
    fn default() -> Self {
        Log { ring: AppendRing::default(), wishes: [Wish::default(); WISH_SLOTS], worker_latch: 0 }
    }
}

unsafe impl PGRXSharedMemory for Log {}

static LOG: PgLwLock<Log> = unsafe { PgLwLock::new(c"pg_kafka_sql_appends") };

/// Set in the postmaster by `_PG_init` (and so in every backend it starts): the log exists.
static IN_SHARED_MEMORY: AtomicBool = AtomicBool::new(false);

/// Reserves the log. `_PG_init`, while preloading.
pub fn init() {
    pg_shmem_init!(LOG);
    IN_SHARED_MEMORY.store(true, Ordering::SeqCst);
}

/// Records a committed transaction's partitions and wakes the worker. Called at commit:
/// must not raise an ERROR (an LWLock and a latch cannot fail).
pub fn publish(partitions: &[PartitionKey]) {
    if !IN_SHARED_MEMORY.load(Ordering::SeqCst) || partitions.is_empty() {
        return;
    }
    let latch = {
        let mut log = LOG.exclusive();
        log.ring.push(partitions);
        log.worker_latch
    };
    if latch != 0 {
        // SAFETY: the worker's PGPROC latch, in shared memory; setting the latch of a
        // process that has exited is a harmless spurious wake-up.
        unsafe { pg_sys::SetLatch(latch as *mut pg_sys::Latch) };
    }
}

/// What was recorded after generation `seen`. Worker, main thread.
pub fn since(seen: u64) -> SqlAppends {
    LOG.share().ring.since(seen)
}

/// Makes this process (the worker) the one `publish` wakes.
pub fn attach_worker() {
    // SAFETY: MyLatch points at this process's latch in shared memory once it started.
    LOG.exclusive().worker_latch = unsafe { pg_sys::MyLatch } as usize;
}

/// The worker is exiting: nobody to wake.
pub fn detach_worker() {
    LOG.exclusive().worker_latch = 0;
}

/// The writer found `key` locked by a SQL transaction: it wants a turn. Worker only.
pub fn want(key: PartitionKey) {
    let now = now_ms();
    let mut log = LOG.exclusive();
    let slot = log
        .wishes
        .iter()
        .position(|w| (w.topic_id, w.partition) == key && w.at_ms != 0)
        .or_else(|| log.wishes.iter().position(|w| now - w.at_ms > WISH_LIFETIME_MS));
    if let Some(slot) = slot {
        log.wishes[slot] = Wish { topic_id: key.0, partition: key.1, at_ms: now };
    }
}

/// The writer got `key`'s lock: its wish is granted. Worker only; cheap when it had none.
pub fn granted(key: PartitionKey) {
    if !LOG.share().wishes.iter().any(|w| (w.topic_id, w.partition) == key && w.at_ms != 0) {
        return;
    }
    for wish in LOG.exclusive().wishes.iter_mut().filter(|w| (w.topic_id, w.partition) == key) {
        wish.at_ms = 0;
    }
}

/// Before a SQL session takes `key`'s append lock: while the writer wants it (and at most
/// [`MAX_YIELD`]), wait, so that the writer's next flush gets it.
pub fn yield_to_writer(key: PartitionKey) {
    if !IN_SHARED_MEMORY.load(Ordering::SeqCst) {
        return;
    }
    let started = std::time::Instant::now();
    while started.elapsed() < MAX_YIELD && writer_wants(key) {
        // SAFETY: a plain sleep; interrupts (cancel, termination) are served between naps.
        unsafe { pg_sys::pg_usleep(1000) };
        pg_sys::check_for_interrupts!();
    }
}

fn writer_wants(key: PartitionKey) -> bool {
    let now = now_ms();
    LOG.share().wishes.iter().any(|w| (w.topic_id, w.partition) == key && w.at_ms != 0 && now - w.at_ms <= WISH_LIFETIME_MS)
}

fn now_ms() -> i64 {
    pg_kafka_core::storage::now_ms()
}
