//! pg_kafka: a PostgreSQL extension whose background worker speaks the Kafka protocol.
//!
//! Layout, outermost first:
//! - [`worker`]: the background worker's lifecycle and main-thread loop (pgrx).
//! - [`server`]: the tokio listener and one task per connection (no Postgres).
//! - [`broker`]: one handler module per Kafka API (no Postgres).
//! - [`protocol`]: framing, headers, versions, request-shape checks (pure).
//! - [`storage`]: the [`storage::Storage`] trait, the bridge the network side reaches it
//!   through, and its Postgres (SPI) and in-memory implementations.
//! - [`config`]: GUCs. [`logging`]: log lines from network threads to the server log.
//!
//! See docs/architecture.md for how a request flows.

use pgrx::prelude::*;

pub mod broker;
pub mod config;
pub mod logging;
pub mod protocol;
pub mod server;
pub mod storage;
pub mod worker;

::pgrx::pg_module_magic!();

pgrx::extension_sql_file!("../sql/schema.sql", name = "schema", bootstrap);

#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    if !unsafe { pg_sys::process_shared_preload_libraries_in_progress } {
        // Loaded by CREATE EXTENSION in a server that did not preload us: the tables can be
        // created, but nothing will serve them.
        warning!("pg_kafka is not in shared_preload_libraries: no Kafka listener will run");
        return;
    }
    config::init();
    worker::register();
}

#[cfg(any(test, feature = "pg_test"))]
#[pg_schema]
mod tests {
    use pgrx::prelude::*;

    use crate::storage::postgres::PgStorage;
    use crate::storage::{Storage, StorageError};

    #[pg_test]
    fn creates_finds_and_refuses_duplicate_topics() {
        let mut storage = PgStorage;
        let created = storage.create_topic("pgtest-topic", 3).unwrap();
        assert_eq!(created.partitions, 3);
        assert_eq!(storage.topic("pgtest-topic").unwrap(), Some(created.clone()));
        assert_eq!(storage.create_topic("pgtest-topic", 1), Err(StorageError::TopicExists("pgtest-topic".into())));
        assert!(matches!(storage.create_topic("bad name", 1), Err(StorageError::InvalidTopicName(_))));
        assert!(storage.all_topics().unwrap().contains(&created));
        assert_eq!(storage.topic("nope").unwrap(), None);
    }

    #[pg_test]
    fn the_worker_is_running_and_listening() {
        let workers = Spi::get_one::<i64>("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pg_kafka'");
        assert_eq!(workers, Ok(Some(1)));
    }
}

/// Required by `cargo pgrx test`.
#[cfg(test)]
pub mod pg_test {
    pub fn setup(_options: Vec<&str>) {}

    #[must_use]
    pub fn postgresql_conf_options() -> Vec<&'static str> {
        // Preload, as production does (postmaster GUCs cannot be declared later), and let
        // the worker pick a free port so the test cluster never clashes with `make run`.
        vec!["shared_preload_libraries = 'pg_kafka'", "pg_kafka.port = 0"]
    }
}
