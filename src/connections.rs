//! `kafka.connections`: who is connected to the Kafka listeners, readable from any session.
//!
//! The worker owns the connections; other backends cannot ask it. So the worker copies
//! what its registry lists into a fixed table in shared memory (at most every
//! [`crate::monitor::PUBLISH_EVERY`], from its main loop), and `kafka.connections()` reads that table in
//! whatever backend calls it. Fixed sizes, because shared memory cannot grow: the first
//! [`MAX_ROWS`] connections are listed, and text is cut to its field's size.

use pg_kafka_core::broker::session::ConnectionInfo;
use pgrx::prelude::*;
use pgrx::{pg_shmem_init, PGRXSharedMemory, PgLwLock};

/// Connections listed at most (pg_kafka.max_connections defaults to 1000).
pub const MAX_ROWS: usize = 1024;

const TEXT_BYTES: usize = 64;
type Text = crate::shared_text::Text<TEXT_BYTES>;

#[derive(Copy, Clone)]
struct Row {
    id: i64,
    listener: Text,
    client_address: Text,
    /// Empty before authentication.
    principal: Text,
    client_id: Text,
    software_name: Text,
    software_version: Text,
    requests_in_flight: i64,
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
            software_name: Text::EMPTY,
            software_version: Text::EMPTY,
            requests_in_flight: 0,
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

pub(crate) fn publish(connections: &[ConnectionInfo], open: usize) {
    let mut table = CONNECTIONS.exclusive();
    table.count = connections.len().min(MAX_ROWS);
    table.more = open.saturating_sub(table.count);
    for (row, info) in table.rows.iter_mut().zip(connections) {
        *row = Row {
            id: info.id as i64,
            listener: Text::from(info.listener),
            client_address: Text::from(&info.client_address),
            principal: Text::from(info.principal.as_deref().unwrap_or_default()),
            client_id: Text::from(info.client_id.as_deref().unwrap_or_default()),
            software_name: Text::from(info.software_name.as_deref().unwrap_or_default()),
            software_version: Text::from(info.software_version.as_deref().unwrap_or_default()),
            requests_in_flight: info.requests_in_flight as i64,
            connected_at_ms: info.connected_at_ms,
        };
    }
}

/// Empties the table (the worker is stopping: nobody is connected any more).
pub fn clear() {
    publish(&[], 0);
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
            name!(client_software_name, Option<String>),
            name!(client_software_version, Option<String>),
            name!(requests_in_flight, i64),
            name!(connected_at, Option<TimestampWithTimeZone>),
        ),
    > {
        let table = CONNECTIONS.share();
        let rows: Vec<_> = table.rows[..table.count]
            .iter()
            .map(|row| {
                let at = crate::monitor::unix_ms_timestamp(row.connected_at_ms);
                (
                    row.id,
                    row.listener.as_str().to_owned(),
                    row.client_address.as_str().to_owned(),
                    row.principal.non_empty(),
                    row.client_id.non_empty(),
                    row.software_name.non_empty(),
                    row.software_version.non_empty(),
                    row.requests_in_flight,
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
