//! What the fuzz targets share: an allocator that turns "allocates far more than the input
//! justifies" into a finding.
//!
//! Inside Postgres an allocation failure aborts the worker (it is not a panic), and
//! Postgres then reinitializes every session. So a decoder that reserves memory from a
//! length on the wire is a crash waiting for a large enough number, even when the fuzzer's
//! machine has the memory. [`TrackingAllocator`] aborts the target on any single
//! allocation above `ALLOWED_FACTOR × input + ALLOWED_FLOOR` while an input is being run.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Multiple of the input size one allocation may take.
pub const ALLOWED_FACTOR: usize = 64;
/// Fixed allowance on top: the codecs' working memory, which a small valid batch may
/// legitimately need whatever its size (an LZ4 frame with 4 MiB blocks is double-buffered
/// by the decoder, and zstd windows are capped at 8 MiB in `records.rs`). In the broker
/// this is per batch being decoded, so it must stay within the in-flight budget.
pub const ALLOWED_FLOOR: usize = 8 << 20;

/// The largest allocation allowed now; `usize::MAX` outside an input's run.
static LIMIT: AtomicUsize = AtomicUsize::new(usize::MAX);

pub struct TrackingAllocator;

unsafe impl GlobalAlloc for TrackingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        check(layout.size());
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        check(layout.size());
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        check(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

fn check(size: usize) {
    let limit = LIMIT.load(Ordering::Relaxed);
    if size > limit {
        // No allocation from here: report with a fixed message and abort, which libFuzzer
        // records as a crash with the input that caused it.
        let message = b"pg_kafka fuzz: one allocation exceeded the allowance for this input: bytes ";
        unsafe { libc_write(2, message.as_ptr(), message.len()) };
        write_number(size);
        std::process::abort();
    }
}

/// Writes `n` and a newline to stderr without allocating.
fn write_number(mut n: usize) {
    let mut digits = [0u8; 21];
    let mut at = digits.len() - 1;
    digits[at] = b'\n';
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    unsafe { libc_write(2, digits[at..].as_ptr(), digits.len() - at) };
}

unsafe extern "C" {
    #[link_name = "write"]
    fn libc_write(fd: i32, buf: *const u8, count: usize) -> isize;
}

/// Runs `body` with allocations bounded by the size of `input`.
pub fn bounded<R>(input: &[u8], body: impl FnOnce() -> R) -> R {
    LIMIT.store(input.len().saturating_mul(ALLOWED_FACTOR).saturating_add(ALLOWED_FLOOR), Ordering::Relaxed);
    let result = body();
    LIMIT.store(usize::MAX, Ordering::Relaxed);
    result
}
