//! The group-commit writer's insert: Postgres's own `COPY kafka.messages FROM ... (FORMAT
//! binary)` (or `kafka.batches`, for the batch layout), fed from memory through COPY's
//! data-source callback.
//!
//! Why COPY and not `INSERT ... SELECT unnest(...)`: COPY inserts rows in batches
//! (`table_multi_insert`: one WAL record per heap page instead of one per row) and skips the
//! executor's per-row expression work. With the INSERT the writer reached about 0.55x of a
//! client's COPY on the same table (`make bench`); with COPY it runs the same code path as
//! that baseline. Triggers, constraints and indexes behave exactly as for COPY.
//!
//! The rows arrive encoded by `pg_kafka_core::storage::copy_binary` (pure, unit-tested
//! there); [`copy_into`] must run on the worker's main thread inside a transaction.

use std::cell::RefCell;
use std::ffi::{c_int, c_void};
use std::ptr::null_mut;

use pgrx::pg_guard;
use pgrx::pg_sys;

/// What COPY is reading: the encoded rows and how far it got. COPY's callback takes no
/// argument, so the source lives here, set only for the duration of one copy.
struct Source {
    data: Vec<u8>,
    at: usize,
}

thread_local! {
    static SOURCE: RefCell<Option<Source>> = const { RefCell::new(None) };
}

/// Clears the source however the copy ends (a Postgres ERROR unwinds through here).
struct SourceGuard;

impl Drop for SourceGuard {
    fn drop(&mut self) {
        SOURCE.with(|s| s.borrow_mut().take());
    }
}

/// COPY's data-source callback: up to `maxread` bytes into `outbuf`; 0 means end of data.
/// Guarded: Postgres calls it through C, so a Rust panic here becomes a Postgres ERROR
/// rather than unwinding through C frames.
#[pg_guard]
unsafe extern "C-unwind" fn read_source(outbuf: *mut c_void, _minread: c_int, maxread: c_int) -> c_int {
    SOURCE.with(|s| {
        let mut source = s.borrow_mut();
        let Some(source) = source.as_mut() else { return 0 };
        let n = (source.data.len() - source.at).min(maxread.max(0) as usize);
        // SAFETY: COPY hands us a buffer of at least `maxread` bytes.
        unsafe { std::ptr::copy_nonoverlapping(source.data.as_ptr().add(source.at), outbuf.cast::<u8>(), n) };
        source.at += n;
        n as c_int
    })
}

/// Runs `COPY kafka.<table> FROM <data> (FORMAT binary)` in the current transaction.
/// A Postgres ERROR (constraint, trigger, duplicate key) arrives as a panic, which the
/// transaction runner turns into a rollback.
pub fn copy_into(table: &std::ffi::CStr, data: Vec<u8>) {
    SOURCE.with(|s| *s.borrow_mut() = Some(Source { data, at: 0 }));
    let _clear = SourceGuard;
    // SAFETY: the same calls DoCopy makes for `COPY kafka.messages FROM STDIN`, on the
    // main thread, in a transaction with an active snapshot; every pointer passed is
    // palloc'd in the current memory context or a static C string copied with pstrdup.
    unsafe {
        let lock = pg_sys::RowExclusiveLock as c_int;
        let pstate = pg_sys::make_parsestate(null_mut());
        let name = pg_sys::makeRangeVar(pg_sys::pstrdup(c"kafka".as_ptr()), pg_sys::pstrdup(table.as_ptr()), -1);
        let rel = pg_sys::table_openrv(name, lock);
        // CopyFrom finds its target as range-table entry 1.
        pg_sys::addRangeTableEntryForRelation(pstate, rel, lock, null_mut(), false, false);
        let binary = pg_sys::makeString(pg_sys::pstrdup(c"binary".as_ptr()));
        let format = pg_sys::makeDefElem(pg_sys::pstrdup(c"format".as_ptr()), binary.cast(), -1);
        let options = pg_sys::lappend(null_mut(), format.cast());
        let cstate = pg_sys::BeginCopyFrom(pstate, rel, null_mut(), std::ptr::null(), false, Some(read_source), null_mut(), options);
        pg_sys::CopyFrom(cstate);
        pg_sys::EndCopyFrom(cstate);
        pg_sys::table_close(rel, pg_sys::NoLock as c_int);
        pg_sys::free_parsestate(pstate);
    }
}
