//! `kafka.connections`: who is connected to the Kafka listeners, readable from any session.
//!
//! The worker owns the connections; other backends cannot ask it. So the worker copies
//! what its registry lists into a fixed table in shared memory (at most every
//! [`PUBLISH_EVERY`], from its main loop), and `kafka.connections()` reads that table in
//! whatever backend calls it. Fixed sizes, because shared memory cannot grow: the first
//! [`MAX_ROWS`] connections are listed, and text is cut to its field's size.

use std::time::{Duration, Instant};

use pg_kafka_core::broker::session::ConnectionInfo;
use pgrx::prelude::*;
use pgrx::{pg_shmem_init, PGRXSharedMemory, PgLwLock};

/// Connections listed at most (pg_kafka.max_connections defaults to 1000).
pub const MAX_ROWS: usize = 1024;
/// How often the worker republishes.
pub const PUBLISH_EVERY: Duration = Duration::from_millis(200);

const TEXT_BYTES: usize = 64;

#[derive(Copy, Clone)]
struct Text {
    len: u8,
    bytes: [u8; TEXT_BYTES],
}

impl Text {
    const EMPTY: Text = Text { len: 0, bytes: [0; TEXT_BYTES] };

    /// `value` cut to the field's size at a character boundary.
    fn from(value: &str) -> Text {
        let mut end = value.len().min(TEXT_BYTES);
        while !value.is_char_boundary(end) {
            end -= 1;
        }
        let mut text = Text::EMPTY;
        text.bytes[..end].copy_from_slice(&value.as_bytes()[..end]);
        text.len = end as u8;
        text
    }

    fn as_str(&self) -> &str {
        std::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or_default()
    }
}

#[derive(Copy, Clone)]
struct Row {
    id: i64,
    listener: Text,
    client_address: Text,
    /// Empty before authentication.
    principal: Text,
    client_id: Text,
    connected_at_ms: i64,
}

#[derive(Copy, Clone)]
pub struct Table {
    count: usize,
    /// Connections not listed because the table was full.
    more: usize,
    rows: [Row; MAX_ROWS],
}

unsafe impl PGRXSharedMemory for Table {}

impl Default for Table {
    fn default() -> Self {
        let empty = Row {
            id: 0,
            listener: Text::EMPTY,
            client_address: Text::EMPTY,
            principal: Text::EMPTY,
            client_id: Text::EMPTY,
            connected_at_ms: 0,
        };
        Table { count: 0, more: 0, rows: [empty; MAX_ROWS] }
    }
}

static CONNECTIONS: PgLwLock<Table> = unsafe { PgLwLock::new(c"pg_kafka_connections") };

/// Reserves the shared table. `_PG_init`, while preloading.
pub fn init() {
    pg_shmem_init!(CONNECTIONS);
}

/// Publishes the worker's connections, at most every [`PUBLISH_EVERY`].
#[derive(Default)]
pub struct Publisher {
    last: Option<Instant>,
}

impl Publisher {
    pub fn publish_if_due(&mut self, connections: impl FnOnce() -> Vec<ConnectionInfo>) {
        if self.last.is_some_and(|at| at.elapsed() < PUBLISH_EVERY) {
            return;
        }
        self.last = Some(Instant::now());
        publish(&connections());
    }
}

fn publish(connections: &[ConnectionInfo]) {
    let mut table = CONNECTIONS.exclusive();
    table.count = connections.len().min(MAX_ROWS);
    table.more = connections.len() - table.count;
    for (row, info) in table.rows.iter_mut().zip(connections) {
        *row = Row {
            id: info.id as i64,
            listener: Text::from(info.listener),
            client_address: Text::from(&info.client_address),
            principal: Text::from(info.principal.as_deref().unwrap_or_default()),
            client_id: Text::from(info.client_id.as_deref().unwrap_or_default()),
            connected_at_ms: info.connected_at_ms,
        };
    }
}

/// Empties the table (the worker is stopping: nobody is connected any more).
pub fn clear() {
    publish(&[]);
}

/// SQL functions in schema `kafka` (created by the bootstrap SQL).
#[pg_schema]
mod kafka {
    use super::*;

    /// The open Kafka connections: behind the `kafka.connections` view.
    // Declared by sql/connections.sql (part of fresh installs and of the upgrade script).
    #[pg_extern(stable, sql = false)]
    #[allow(clippy::type_complexity)]
    pub fn connection_list() -> TableIterator<
        'static,
        (
            name!(id, i64),
            name!(listener, String),
            name!(client_address, String),
            name!(principal, Option<String>),
            name!(client_id, Option<String>),
            name!(connected_at, Option<TimestampWithTimeZone>),
        ),
    > {
        let table = CONNECTIONS.share();
        let nonempty = |text: &Text| Some(text.as_str().to_owned()).filter(|t| !t.is_empty());
        let rows: Vec<_> = table.rows[..table.count]
            .iter()
            .map(|row| {
                let at = TimestampWithTimeZone::try_from(row.connected_at_ms * 1000 - POSTGRES_EPOCH_OFFSET_US).ok();
                (
                    row.id,
                    row.listener.as_str().to_owned(),
                    row.client_address.as_str().to_owned(),
                    nonempty(&row.principal),
                    nonempty(&row.client_id),
                    at,
                )
            })
            .collect();
        if table.more > 0 {
            notice!("pg_kafka: {} more connections are open than kafka.connections can list ({MAX_ROWS})", table.more);
        }
        TableIterator::new(rows)
    }
}

/// Microseconds from the Unix epoch to Postgres's (2000-01-01).
const POSTGRES_EPOCH_OFFSET_US: i64 = 946_684_800_000_000;
