//! pg_kafka: a PostgreSQL extension whose background worker speaks the Kafka protocol.
//!
//! This crate is the Postgres glue, the only code that links pgrx; the broker itself
//! (protocol, handlers, groups, group-commit writer, tokio server) is `pg_kafka_core`.
//! - [`worker`]: the background worker's registration and main-thread loop.
//! - [`gucs`]: the `pg_kafka.*` settings, copied into the core's `Config`.
//! - [`pg`]: the SPI/COPY storage engine and the transaction runner.
//! - [`connections`]: the `kafka.connections` view, from shared memory.
//! - [`monitor`]: `kafka.broker_stats`, `kafka.groups`, `kafka.group_members`, the live
//!   half of `kafka.topic_partitions`, from shared memory.
//! - [`sql_read`]: headers as JSON, payloads as text/JSON, for reading topics with SQL.
//! - [`outbox`]: `kafka.produce()`, messages written from SQL in the caller's transaction.
//!
//! See docs/architecture.md for how a request flows.

use pgrx::prelude::*;

pub mod connections;
pub mod gucs;
pub mod monitor;
pub mod outbox;
pub mod pg;
pub mod shared_text;
pub mod sql_read;
pub mod worker;

::pgrx::pg_module_magic!();

// A fresh install: the 0.1.0 schema, then what each version since added (the upgrade
// scripts are made of the same files: see `make install`).
pgrx::extension_sql_file!("../sql/schema.sql", name = "schema", bootstrap);
pgrx::extension_sql_file!("../sql/security.sql", name = "security", requires = ["schema"]);
pgrx::extension_sql_file!("../sql/connections.sql", name = "connections", requires = ["security"]);
pgrx::extension_sql_file!("../sql/outbox.sql", name = "outbox", requires = ["connections"]);
pgrx::extension_sql_file!("../sql/monitor.sql", name = "monitor", requires = ["outbox"]);
pgrx::extension_sql_file!("../sql/offsets.sql", name = "offsets", requires = ["monitor"]);
pgrx::extension_sql_file!("../sql/offsets_topic.sql", name = "offsets_topic", requires = ["offsets"]);
pgrx::extension_sql_file!("../sql/hardening.sql", name = "hardening", requires = ["offsets_topic"], finalize);

#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    if !unsafe { pg_sys::process_shared_preload_libraries_in_progress } {
        // Loaded by CREATE EXTENSION in a server that did not preload us: the tables can be
        // created, but nothing will serve them.
        warning!("pg_kafka is not in shared_preload_libraries: no Kafka listener will run");
        return;
    }
    quiet_backtraces();
    gucs::init();
    connections::init();
    outbox::appends::init();
    monitor::init();
    worker::register();
}

/// An ERROR raised inside Postgres under our Rust frames (a user's trigger on
/// `kafka.messages` refusing a `kafka.produce()` row, say) reaches the client through
/// pgrx, which adds a Rust backtrace to its DETAIL whenever backtraces are enabled in the
/// server's environment (`RUST_BACKTRACE`): 36 frames in the client's error and the log.
/// Errors from SQL functions are one line with their SQLSTATE; `RUST_LIB_BACKTRACE=0`
/// turns the captures off for every process the postmaster starts (a panic's own message
/// on a network thread still follows `RUST_BACKTRACE`).
fn quiet_backtraces() {
    // _PG_init in the postmaster, while preloading: one thread, before any other code
    // reads the environment.
    std::env::set_var("RUST_LIB_BACKTRACE", "0");
}

#[cfg(any(test, feature = "pg_test"))]
#[pg_schema]
mod tests {
    use pgrx::prelude::*;

    use crate::pg::storage::PgStorage;
    use bytes::Bytes;
    use pg_kafka_core::storage::{MessageRows, ReadLimit, Storage, StorageError};

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
    fn appends_rows_exactly_and_counts_next_offsets() {
        let mut storage = PgStorage;
        let topic = storage.create_topic("pgtest-append", 2).unwrap();
        assert_eq!(storage.next_offset(topic.id, 0), Ok(0));
        let bytes = |b: &'static [u8]| Some(Bytes::from_static(b));
        let rows = MessageRows {
            topic_ids: vec![topic.id; 3],
            partitions: vec![0, 0, 1],
            offsets: vec![0, 1, 0],
            timestamps_ms: vec![1_700_000_000_123, -1, 0],
            keys: vec![bytes(b"k\x00\xff"), None, None],
            values: vec![bytes(b"v"), bytes(b""), None],
            headers: vec![bytes(&[2, 2, b'h', 0]), None, None],
        };
        storage.append(&rows).unwrap();
        // The kept plan is reused for the next append.
        let more = MessageRows {
            offsets: vec![2],
            topic_ids: vec![topic.id],
            partitions: vec![0],
            timestamps_ms: vec![5],
            keys: vec![None],
            values: vec![None],
            headers: vec![None],
        };
        storage.append(&more).unwrap();
        assert_eq!(storage.next_offset(topic.id, 0), Ok(3));
        assert_eq!(storage.next_offset(topic.id, 1), Ok(1));
        let first = |column: &str| {
            Spi::get_one::<Vec<u8>>(&format!(
                "SELECT {column} FROM kafka.messages WHERE topic_id = {} AND partition = 0 AND \"offset\" = 0",
                topic.id
            ))
        };
        assert_eq!(first("key"), Ok(Some(b"k\x00\xff".to_vec())));
        assert_eq!(first("headers"), Ok(Some(vec![2, 2, b'h', 0])));
        let millis = Spi::get_one::<i64>(&format!(
            "SELECT (extract(epoch FROM \"timestamp\") * 1000)::bigint FROM kafka.messages \
             WHERE topic_id = {} ORDER BY partition, \"offset\" LIMIT 1",
            topic.id
        ));
        assert_eq!(millis, Ok(Some(1_700_000_000_123)), "timestamps are exact to the millisecond");
    }

    fn one_row(topic_id: i32, partition: i32, offset: i64) -> MessageRows {
        pg_kafka_core::storage::empty_rows(topic_id, partition, &[offset])
    }

    #[pg_test]
    fn deleted_records_move_the_log_start_and_offsets_are_never_reused() {
        let mut storage = PgStorage;
        let topic = storage.create_topic("pgtest-delete-records", 1).unwrap();
        for offset in 0..4 {
            storage.append(&one_row(topic.id, 0, offset)).unwrap();
        }
        storage.delete_records_before(topic.id, 0, 2).unwrap();
        assert_eq!((storage.first_offset(topic.id, 0), storage.next_offset(topic.id, 0)), (Ok(Some(2)), Ok(4)));
        storage.delete_records_before(topic.id, 0, 1).unwrap();
        assert_eq!(storage.first_offset(topic.id, 0), Ok(Some(2)), "the log start never moves back");
        storage.delete_records_before(topic.id, 0, 4).unwrap();
        assert_eq!((storage.first_offset(topic.id, 0), storage.next_offset(topic.id, 0)), (Ok(Some(4)), Ok(4)), "emptied, not reset");
    }

    #[pg_test]
    fn retention_finds_the_first_offset_to_keep_by_time_and_by_size() {
        let mut storage = PgStorage;
        let topic = storage.create_topic("pgtest-retention", 2).unwrap();
        let now = 1_800_000_000_000;
        storage.append(&pg_kafka_core::storage::retention_scenario_rows(topic.id, now)).unwrap();
        assert_eq!(storage.retention_starts(now), Ok(vec![]), "no limits set");
        storage.replace_topic_configs(topic.id, &[("retention.ms".into(), "150000".into())]).unwrap();
        assert_eq!(storage.retention_starts(now), Ok(vec![(topic.id, 0, 7)]));
        storage.replace_topic_configs(topic.id, &[("retention.bytes".into(), "45".into())]).unwrap();
        assert_eq!(storage.retention_starts(now), Ok(vec![(topic.id, 0, 6), (topic.id, 1, 6)]));
    }

    #[pg_test]
    fn offsets_configs_and_producer_state_round_trip_and_go_with_their_topic() {
        use pg_kafka_core::storage::{OffsetCommit, ProducerState, SequencedBatch};
        let mut storage = PgStorage;
        let topic = storage.create_topic("pgtest-groups", 2).unwrap();
        let commit = |partition, offset, metadata: Option<&str>| OffsetCommit {
            topic_id: topic.id,
            partition,
            offset,
            leader_epoch: -1,
            metadata: metadata.map(str::to_owned),
        };
        storage.commit_offsets("g1", &[commit(0, 5, Some("m")), commit(1, 7, None)]).unwrap();
        storage.commit_offsets("g1", &[commit(0, 6, None)]).unwrap();
        let stored = storage.committed_offsets("g1").unwrap();
        assert_eq!(
            stored.iter().map(|c| (c.partition, c.offset, c.metadata.clone())).collect::<Vec<_>>(),
            vec![(0, 6, None), (1, 7, None)]
        );
        storage.append(&one_row(topic.id, 0, 9)).unwrap();
        let lag = Spi::get_one::<i64>("SELECT lag FROM kafka.consumer_lag WHERE group_id = 'g1' AND partition = 0");
        assert_eq!(lag, Ok(Some(4)), "high watermark 10 minus committed 6");

        storage.replace_topic_configs(topic.id, &[("max.message.bytes".into(), "100".into())]).unwrap();
        assert_eq!(storage.topic("pgtest-groups").unwrap().unwrap().max_message_bytes, 100);

        let id = storage.next_producer_id().unwrap();
        assert!(storage.next_producer_id().unwrap() > id);
        let batch = |first, last, base| SequencedBatch { first_sequence: first, last_sequence: last, base_offset: base };
        let state = ProducerState { epoch: 3, batches: [batch(0, 4, 0), batch(5, 9, 5)].into_iter().collect() };
        storage.save_producer_states(&[((id, topic.id, 0), state.clone())]).unwrap();
        let updated = ProducerState { epoch: 3, batches: [batch(10, 10, 10)].into_iter().collect() };
        storage.save_producer_states(&[((id, topic.id, 0), updated.clone())]).unwrap();
        assert_eq!(storage.producer_state((id, topic.id, 0)).unwrap(), Some(updated));
        assert_eq!(storage.producer_state((id, topic.id, 1)).unwrap(), None);

        storage.delete_topic(topic.id).unwrap();
        assert_eq!(storage.topic("pgtest-groups").unwrap(), None);
        assert!(storage.committed_offsets("g1").unwrap().is_empty());
        assert_eq!(storage.producer_state((id, topic.id, 0)).unwrap(), None);
        let rows = Spi::get_one::<i64>(&format!("SELECT count(*) FROM kafka.messages WHERE topic_id = {}", topic.id));
        assert_eq!(rows, Ok(Some(0)));
    }

    #[pg_test]
    fn reads_ranges_within_byte_limits_and_finds_timestamps() {
        let mut storage = PgStorage;
        let topic = storage.create_topic("pgtest-read", 1).unwrap();
        let n = 600;
        let rows = MessageRows {
            topic_ids: vec![topic.id; n],
            partitions: vec![0; n],
            offsets: (10..10 + n as i64).collect(),
            timestamps_ms: (0..n as i64).map(|i| 1_700_000_000_000 + i * 10).collect(),
            keys: vec![None; n],
            values: (0..n).map(|i| Some(Bytes::from(vec![i as u8; 79]))).collect(),
            headers: vec![None; n],
        };
        storage.append(&rows).unwrap();
        let per_record = 79 + pg_kafka_core::storage::RECORD_OVERHEAD_BYTES;
        let limit = |from, below, max_bytes, at_least_one| ReadLimit { from, below, max_bytes, at_least_one };

        let all = storage.read(topic.id, 0, limit(0, i64::MAX, usize::MAX, true)).unwrap();
        assert_eq!(all.len(), n);
        assert_eq!(all[599].offset, 609);
        assert_eq!(all[599].timestamp_ms, 1_700_000_005_990);
        assert_eq!(all[3].value.as_deref(), Some(&[3u8; 79][..]));
        let some = storage.read(topic.id, 0, limit(100, 200, per_record * 7 + 1, true)).unwrap();
        assert_eq!(some.iter().map(|r| r.offset).collect::<Vec<_>>(), (100..107).collect::<Vec<_>>());
        assert_eq!(storage.read(topic.id, 0, limit(100, 105, usize::MAX, true)).unwrap().len(), 5, "stops below the watermark");
        assert_eq!(storage.read(topic.id, 0, limit(100, 200, 1, true)).unwrap().len(), 1, "one whatever its size");
        assert!(storage.read(topic.id, 0, limit(100, 200, 1, false)).unwrap().is_empty());

        assert_eq!(storage.first_offset(topic.id, 0), Ok(Some(10)));
        assert_eq!(storage.first_offset(topic.id, 1), Ok(None));
        assert_eq!(storage.offset_for_timestamp(topic.id, 0, 1_700_000_000_015), Ok(Some((12, 1_700_000_000_020))));
        assert_eq!(storage.offset_for_timestamp(topic.id, 0, i64::MIN), Ok(Some((10, 1_700_000_000_000))));
        assert_eq!(storage.offset_for_timestamp(topic.id, 0, i64::MAX), Ok(None));
        assert_eq!(storage.max_timestamp(topic.id, 0), Ok(Some((609, 1_700_000_005_990))));
    }

    /// Fetch walks the primary key index itself: large values come back whole whether
    /// Postgres compressed them or moved them out of line (TOAST), keys and headers too,
    /// rows of other partitions and topics are not read, and rows written by SQL in the
    /// same transaction are seen.
    #[pg_test]
    fn reads_toasted_values_and_only_its_own_partition() {
        let mut storage = PgStorage;
        let topic = storage.create_topic("pgtest-read-toast", 2).unwrap();
        let other = storage.create_topic("pgtest-read-other", 1).unwrap();
        let compressible = Bytes::from(vec![b'x'; 300_000]);
        let incompressible: Bytes = (0..200_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
        let rows = MessageRows {
            topic_ids: vec![topic.id, topic.id, topic.id, other.id],
            partitions: vec![0, 0, 1, 0],
            offsets: vec![0, 1, 0, 0],
            timestamps_ms: vec![1_700_000_000_000; 4],
            keys: vec![Some(Bytes::from_static(b"k")), None, None, None],
            values: vec![Some(compressible.clone()), Some(incompressible.clone()), Some(Bytes::from_static(b"p1")), None],
            headers: vec![Some(Bytes::from_static(b"\x02h")), None, None, None],
        };
        storage.append(&rows).unwrap();
        Spi::run(&format!(
            "INSERT INTO kafka.messages (topic_id, partition, \"offset\", \"timestamp\", value) VALUES ({}, 0, 2, now(), 'sql')",
            topic.id
        ))
        .unwrap();
        let everything = ReadLimit { from: 0, below: i64::MAX, max_bytes: usize::MAX, at_least_one: true };
        let read = storage.read(topic.id, 0, everything).unwrap();
        assert_eq!(read.iter().map(|r| r.offset).collect::<Vec<_>>(), vec![0, 1, 2]);
        assert_eq!(read[0].value.as_ref(), Some(&compressible));
        assert_eq!(read[0].key.as_deref(), Some(&b"k"[..]));
        assert_eq!(read[0].headers.as_deref(), Some(&b"\x02h"[..]));
        assert_eq!(read[1].value.as_ref(), Some(&incompressible));
        assert_eq!((read[1].key.as_ref(), read[1].headers.as_ref()), (None, None));
        assert_eq!(read[2].value.as_deref(), Some(&b"sql"[..]));
        let stored = "SELECT pg_column_size(value) FROM kafka.messages WHERE topic_id = $1 AND \"offset\" = 0 AND partition = 0";
        let compressed = Spi::get_one_with_args::<i32>(stored, &[topic.id.into()]).unwrap().unwrap();
        assert!(compressed < 100_000, "the first value was stored compressed ({compressed} bytes)");
        let partition_one = storage.read(topic.id, 1, everything).unwrap();
        assert_eq!(partition_one.iter().map(|r| r.value.clone()).collect::<Vec<_>>(), vec![Some(Bytes::from_static(b"p1"))]);
        let other_topic = storage.read(other.id, 0, everything).unwrap();
        assert_eq!((other_topic.len(), other_topic[0].value.clone()), (1, None));
        assert!(storage.read(topic.id, 0, ReadLimit { from: 3, ..everything }).unwrap().is_empty());
    }

    /// Group ids text cannot hold are refused; metadata with NUL is stored in its column
    /// of bytes and read back byte-exact, and text metadata stays text.
    #[pg_test]
    fn nul_group_ids_are_refused_and_nul_metadata_round_trips() {
        let mut storage = PgStorage;
        let topic = storage.create_topic("pgtest-nul", 1).unwrap();
        let commit = pg_kafka_core::storage::OffsetCommit { topic_id: topic.id, partition: 0, offset: 1, leader_epoch: -1, metadata: None };
        let refused = storage.commit_offsets("g\0", std::slice::from_ref(&commit));
        assert!(matches!(refused, Err(StorageError::Database { sqlstate: Some(ref code), .. }) if code == "22021"), "{refused:?}");
        assert_eq!(Spi::get_one::<i64>("SELECT count(*) FROM kafka.consumer_offsets WHERE group_id LIKE 'g%'"), Ok(Some(0)));
        let with_nul = pg_kafka_core::storage::OffsetCommit { metadata: Some("m\0x".into()), ..commit.clone() };
        storage.commit_offsets("g", &[with_nul]).unwrap();
        assert_eq!(storage.committed_offsets("g").unwrap()[0].metadata.as_deref(), Some("m\0x"));
        let text = pg_kafka_core::storage::OffsetCommit { metadata: Some("plain".into()), ..commit };
        storage.commit_offsets("g", &[text]).unwrap();
        assert_eq!(storage.committed_offsets("g").unwrap()[0].metadata.as_deref(), Some("plain"));
        assert_eq!(Spi::get_one::<bool>("SELECT metadata_bytes IS NULL FROM kafka.consumer_offsets WHERE group_id = 'g'"), Ok(Some(true)));
    }

    #[pg_test]
    fn login_roles_are_read_from_pg_authid_with_their_memberships() {
        use pg_kafka_core::security::scram::Verifier;
        Spi::run(
            "CREATE ROLE pgt_team NOLOGIN;
             CREATE ROLE pgt_alice LOGIN PASSWORD 'pw' IN ROLE pgt_team VALID UNTIL 'infinity';
             CREATE ROLE pgt_old LOGIN PASSWORD 'pw' VALID UNTIL '2001-01-01 00:00:00+00';
             CREATE ROLE pgt_nopw LOGIN",
        )
        .unwrap();
        let mut storage = PgStorage;
        let alice = storage.login_role("pgt_alice").unwrap().expect("alice exists");
        assert!(alice.can_login && !alice.principal.superuser);
        assert_eq!(alice.valid_until_ms, None, "infinity is no expiry");
        assert!(Verifier::parse(alice.password.as_deref().unwrap()).unwrap().matches_password("pw"));
        assert!(alice.principal.roles.contains("pgt_team") && alice.principal.roles.contains("pgt_alice"));
        assert_eq!(storage.login_role("pgt_old").unwrap().unwrap().valid_until_ms, Some(978_307_200_000));
        assert_eq!(storage.login_role("pgt_nopw").unwrap().unwrap().password, None);
        assert!(!storage.login_role("pgt_team").unwrap().unwrap().can_login);
        assert_eq!(storage.login_role("pgt_nobody").unwrap(), None);
        let principals = storage.principals(&["pgt_alice".into(), "pgt_nobody".into()]).unwrap();
        assert_eq!(principals, vec![alice.principal]);
    }

    #[pg_test]
    fn acls_round_trip_through_the_table_and_the_sql_functions() {
        use pg_kafka_core::security::acl::{AclBinding, AclFilter, Operation, PatternType, Permission, ResourceType};
        let mut storage = PgStorage;
        let acl = AclBinding {
            resource_type: ResourceType::Topic,
            resource_name: "orders.".into(),
            pattern_type: PatternType::Prefixed,
            principal: "User:pgt_writers".into(),
            host: "*".into(),
            operation: Operation::Write,
            permission: Permission::Allow,
        };
        storage.create_acls(&[acl.clone(), acl.clone()]).unwrap();
        Spi::run("SELECT kafka.grant_acl('pgt_readers', 'read', 'topic', 'orders')").unwrap();
        Spi::run("SELECT kafka.grant_acl('pgt_admins', 'alter', 'cluster', 'anything')").unwrap();
        let stored = storage.acls().unwrap();
        assert_eq!(stored.len(), 3, "{stored:?}");
        assert!(stored.contains(&acl));
        let cluster = stored.iter().find(|a| a.resource_type == ResourceType::Cluster).unwrap();
        assert_eq!(cluster.resource_name, "kafka-cluster");
        let names =
            Spi::get_one::<String>("SELECT string_agg(operation || ' ' || resource_type, ',' ORDER BY operation) FROM kafka.acl_bindings")
                .unwrap();
        assert_eq!(names.as_deref(), Some("alter cluster,read topic,write topic"));
        let by_principal = AclFilter { principal: Some("User:pgt_writers".into()), ..AclFilter::default() };
        assert_eq!(storage.delete_acls(&[by_principal]).unwrap(), vec![vec![acl]]);
        assert_eq!(Spi::get_one::<i64>("SELECT kafka.revoke_acl('pgt_readers', 'read', 'topic', 'orders')").unwrap(), Some(1));
        assert_eq!(storage.acls().unwrap().len(), 1);
        let accepted = pgrx::PgTryBuilder::new(|| Spi::run("SELECT kafka.grant_acl('x', 'fly', 'topic', 't')").is_ok())
            .catch_others(|_| false)
            .execute();
        assert!(!accepted, "unknown names are refused");
    }

    #[pg_test]
    fn the_worker_is_running_and_listening() {
        let workers = Spi::get_one::<i64>("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pg_kafka'");
        assert_eq!(workers, Ok(Some(1)));
    }

    #[pg_test]
    fn a_misspelt_synchronous_commit_is_refused_and_the_default_kept() {
        let value = Spi::get_one::<String>("SELECT current_setting('pg_kafka.synchronous_commit')");
        assert_eq!(value, Ok(Some("on".to_owned())));
        // Its worker came up: it has a pid, and has been running for more than a restart delay.
        let running = Spi::get_one::<bool>(
            "SELECT backend_start < now() - interval '1 second' FROM pg_stat_activity WHERE backend_type = 'pg_kafka'",
        );
        assert!(matches!(running, Ok(Some(_))), "{running:?}");
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
        // The misspelt synchronous_commit is on purpose: an enum GUC, Postgres refuses it
        // with a WARNING and keeps the default, so the worker must still come up (a string
        // setting used to pass it on to set_config and the worker restarted forever).
        vec!["shared_preload_libraries = 'pg_kafka'", "pg_kafka.port = 0", "pg_kafka.synchronous_commit = 'offf'"]
    }
}
