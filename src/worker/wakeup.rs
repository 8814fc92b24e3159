//! An eventfd the network side writes to when it queues work for the main thread.
//!
//! The main thread sleeps in `WaitLatchOrSocket` on its latch *and* this fd, so queued
//! work wakes it at once without any Postgres function being called off the main thread
//! (pgrx forbids that, and `SetLatch` is not ours to call from tokio's threads).
//! Writes add to a counter, so many wake-ups between two waits cost one read.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

pub struct Wakeup {
    fd: OwnedFd,
}

impl Wakeup {
    pub fn new() -> std::io::Result<Wakeup> {
        // SAFETY: eventfd returns a new descriptor or -1.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: fd is a fresh descriptor that nothing else owns.
        Ok(Wakeup { fd: unsafe { OwnedFd::from_raw_fd(fd) } })
    }

    /// Wakes the waiting thread. Safe from any thread.
    pub fn notify(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64. A full counter (EAGAIN) is already a wake-up.
        unsafe { libc::write(self.fd.as_raw_fd(), (&one as *const u64).cast(), 8) };
    }

    /// Clears pending wake-ups; call before draining the work they announced.
    pub fn clear(&self) {
        let mut count: u64 = 0;
        // SAFETY: reads 8 bytes into a live u64; EAGAIN (nothing pending) is fine.
        unsafe { libc::read(self.fd.as_raw_fd(), (&mut count as *mut u64).cast(), 8) };
    }

    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn readable(fd: RawFd) -> bool {
        let mut poll = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
        unsafe { libc::poll(&mut poll, 1, 0) == 1 }
    }

    #[test]
    fn notifications_coalesce_until_cleared() {
        let wakeup = Wakeup::new().unwrap();
        assert!(!readable(wakeup.raw_fd()));
        wakeup.notify();
        std::thread::scope(|s| {
            s.spawn(|| wakeup.notify());
        });
        assert!(readable(wakeup.raw_fd()));
        wakeup.clear();
        assert!(!readable(wakeup.raw_fd()));
    }
}
