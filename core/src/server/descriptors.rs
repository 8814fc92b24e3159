//! File descriptors: the worker's connections and Postgres's own files share one limit.
//!
//! A Postgres process starts with the soft `RLIMIT_NOFILE` (often 1024), below
//! `pg_kafka.max_connections`' default of 1000 plus what the process itself needs. When
//! sockets used them all, `accept` failed with EMFILE and so did the main thread's next
//! `epoll_create1` inside `WaitLatchOrSocket`, which ended the worker. So at start the
//! soft limit is raised to the hard limit, [`RESERVED_FOR_POSTGRES`] descriptors are kept
//! for the main thread (relation files, WAL, its wait sets), and connections are capped
//! below the rest: `max_connections` (or the cap it is lowered to) is what trips first.

use nix::sys::resource::{getrlimit, setrlimit, Resource};

/// Descriptors never used for client connections.
pub const RESERVED_FOR_POSTGRES: u64 = 256;

/// Raises the soft descriptor limit to the hard one; returns the soft limit now in force.
pub fn raise_limit() -> nix::Result<u64> {
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard)?;
        return Ok(hard);
    }
    Ok(soft)
}

/// How many client connections fit under a descriptor limit of `limit`, at most `wanted`.
pub fn connection_cap(wanted: usize, limit: u64) -> usize {
    let available = limit.saturating_sub(RESERVED_FOR_POSTGRES);
    wanted.min(usize::try_from(available).unwrap_or(usize::MAX)).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_stay_below_the_limit_with_a_reserve() {
        assert_eq!(connection_cap(1000, 1024), 768);
        assert_eq!(connection_cap(1000, 1_048_576), 1000);
        assert_eq!(connection_cap(1000, 100), 1, "one connection whatever the limit");
    }

    #[test]
    fn the_soft_limit_is_raised_to_the_hard_one() {
        let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
        assert_eq!(raise_limit().unwrap(), hard);
        assert_eq!(getrlimit(Resource::RLIMIT_NOFILE).unwrap().0, hard);
    }
}
