//! The append lock of a partition: one heavyweight lock per (topic id, partition), held
//! until the end of the transaction that took it.
//!
//! Whoever holds it decides the partition's next offsets: the group-commit writer for the
//! length of one commit (it never waits for it, see `Storage::try_lock_partition`), or a
//! SQL session that called `kafka.produce()`, until its transaction commits or rolls back.
//! Because a lock taken inside a transaction is released only after its commit is visible,
//! offsets are handed out in commit order and a rollback leaves no gap.
//!
//! It is an advisory lock in the current database with its own key space (`objsubid`
//! [`KEY_SPACE`] in `pg_locks`, where `classid` is the topic id and `objid` the
//! partition), so `pg_advisory_lock()` calls of applications never collide with it, and
//! Postgres's deadlock detector, `lock_timeout` and cancel all apply to SQL sessions that
//! wait for it.

use pgrx::pg_sys;

/// `locktag_field4` of pg_kafka's partition locks (`pg_advisory_lock` uses 1 and 2).
pub const KEY_SPACE: u16 = 75;

fn tag(topic_id: i32, partition: i32) -> pg_sys::LOCKTAG {
    pg_sys::LOCKTAG {
        // SAFETY: reading a backend global set at connection.
        locktag_field1: unsafe { pg_sys::MyDatabaseId }.to_u32(),
        locktag_field2: topic_id as u32,
        locktag_field3: partition as u32,
        locktag_field4: KEY_SPACE,
        locktag_type: pg_sys::LockTagType::LOCKTAG_ADVISORY as u8,
        locktag_lockmethodid: pg_sys::DEFAULT_LOCKMETHOD as u8,
    }
}

/// Takes the lock if nobody else holds it; never waits. Inside a transaction.
pub fn try_lock(topic_id: i32, partition: i32) -> bool {
    let tag = tag(topic_id, partition);
    // SAFETY: a valid tag; transaction-scoped, released by Postgres at transaction end.
    let result = unsafe { pg_sys::LockAcquire(&tag, pg_sys::ExclusiveLock as pg_sys::LOCKMODE, false, true) };
    result != pg_sys::LockAcquireResult::LOCKACQUIRE_NOT_AVAIL
}

/// Takes the lock, waiting for whoever holds it (subject to `lock_timeout`, cancel and
/// deadlock detection, which raise an ERROR). Inside a transaction.
pub fn lock(topic_id: i32, partition: i32) {
    let tag = tag(topic_id, partition);
    // SAFETY: as above; a wait ends in the lock or in an ERROR.
    unsafe { pg_sys::LockAcquire(&tag, pg_sys::ExclusiveLock as pg_sys::LOCKMODE, false, false) };
}
