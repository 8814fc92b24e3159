//! `ALTER EXTENSION pg_kafka UPDATE` from every earlier version (`sql/history`) leaves the
//! same SQL objects as a fresh install, and keeps the data. Each version is created in a
//! database of its own; the worker serves another one.

use pg_kafka_e2e::psql;
use std::process::Command;

/// Runs SQL in `database`; returns trimmed unaligned output.
fn psql_in(database: &str, sql: &str) -> String {
    let output = Command::new("psql")
        .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-U", "postgres", "-d", database])
        .args(["-p", &std::env::var("PGKAFKA_E2E_PG_PORT").unwrap(), "-c", sql])
        .output()
        .expect("psql runs");
    assert!(output.status.success(), "psql failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

/// The extension's objects, their columns, view definitions, function signatures and
/// privileges: what must not differ between an updated and a fresh install.
fn shape_of(database: &str) -> String {
    let members = "SELECT pg_describe_object(classid, objid, objsubid) FROM pg_depend
                   WHERE refobjid = (SELECT oid FROM pg_extension WHERE extname = 'pg_kafka') AND deptype = 'e' ORDER BY 1";
    let columns = "SELECT table_name || '.' || column_name || ' ' || data_type || ' ' || is_nullable || ' ' || coalesce(column_default, '')
                   FROM information_schema.columns WHERE table_schema = 'kafka' ORDER BY table_name, ordinal_position";
    let views = "SELECT viewname || ': ' || definition FROM pg_views WHERE schemaname = 'kafka' ORDER BY 1";
    let functions =
        "SELECT p.oid::regprocedure::text || ' ' || pg_get_function_result(p.oid) || ' ' || coalesce(array_to_string(p.proacl, ','), '')
                            || ' ' || coalesce(array_to_string(p.proconfig, ','), '')
                     FROM pg_proc p WHERE p.pronamespace = 'kafka'::regnamespace ORDER BY 1";
    let grants = "SELECT c.relname || ' ' || coalesce(array_to_string(c.relacl, ','), '') FROM pg_class c
                  WHERE c.relnamespace = 'kafka'::regnamespace AND c.relkind IN ('r', 'v', 'S') ORDER BY 1";
    let schema = "SELECT coalesce(array_to_string(nspacl, ','), '') FROM pg_namespace WHERE nspname = 'kafka'";
    let dumped = "SELECT array_to_string(extconfig::regclass[], ',') FROM pg_extension WHERE extname = 'pg_kafka'";
    [members, columns, views, functions, grants, schema, dumped].iter().map(|q| psql_in(database, q)).collect::<Vec<_>>().join("\n---\n")
}

/// Creates `version` in a database of its own with a topic, updates it, and compares it
/// with a fresh install; returns the updated database's name (dropped by the caller).
fn update_from(version: &str) -> String {
    let database = format!("upgrade_from_{}", version.replace('.', "_"));
    let fresh = format!("upgrade_fresh_{}", version.replace('.', "_"));
    for db in [&database, &fresh] {
        psql(&format!("DROP DATABASE IF EXISTS {db}"));
        psql(&format!("CREATE DATABASE {db}"));
    }
    psql_in(&database, &format!("CREATE EXTENSION pg_kafka VERSION '{version}'"));
    psql_in(&database, "INSERT INTO kafka.topics (name, partitions) VALUES ('kept', 2)");
    psql_in(&database, "ALTER EXTENSION pg_kafka UPDATE");
    assert_eq!(psql_in(&database, "SELECT extversion FROM pg_extension WHERE extname = 'pg_kafka'"), "0.12.0");
    psql_in(&fresh, "CREATE EXTENSION pg_kafka");
    let (updated, installed) = (shape_of(&database), shape_of(&fresh));
    assert!(installed.contains("table kafka.acls") && installed.contains("view kafka.connections"), "{installed}");
    assert!(installed.contains("view kafka.topic_messages") && installed.contains("view kafka.broker_stats"), "{installed}");
    assert!(installed.contains("kafka.consume(text,text,integer)") && installed.contains("search_path=pg_catalog, pg_temp"), "{installed}");
    assert!(installed.contains("consumer_offsets.metadata_bytes bytea"), "{installed}");
    assert!(installed.contains("consumer_offsets.commit_number bigint") && installed.contains("offset_commit_numbers"), "{installed}");
    assert!(installed.contains("table kafka.batches") && installed.contains("topics.storage text"), "{installed}");
    assert!(installed.contains("table kafka.partition_cleaning"), "{installed}");
    assert!(installed.contains("table kafka.transaction_state") && installed.contains("view kafka.transactions"), "{installed}");
    assert!(installed.contains("table kafka.shadow_topics") && installed.contains("view kafka.shadow_lag"), "{installed}");
    assert!(installed.contains("messages.producer_id bigint") && installed.contains("messages.control boolean"), "{installed}");
    assert!(installed.contains("table kafka.cluster_leader") && installed.contains("table kafka.cluster_in_sync"), "{installed}");
    assert_eq!(updated, installed, "an install updated from {version} differs from a fresh one");
    assert_eq!(psql_in(&database, "SELECT name || ' ' || partitions FROM kafka.topics"), "kept 2");
    psql(&format!("DROP DATABASE {fresh}"));
    database
}

#[test]
fn updating_from_0_1_0_matches_a_fresh_install_and_keeps_the_data() {
    let database = update_from("0.1.0");
    // What the updates added works.
    psql_in(&database, "SELECT kafka.grant_acl('someone', 'read', 'topic', 'kept')");
    assert_eq!(psql_in(&database, "SELECT operation FROM kafka.acl_bindings"), "read");
    psql_in(&database, "SELECT count(*) FROM kafka.connections");
    assert_eq!(psql_in(&database, "SELECT kafka.produce('kept', 'k', 'v', NULL, 1)"), "0");
    assert_eq!(psql_in(&database, "SELECT rows FROM kafka.topic_partitions WHERE partition = 1"), "1");
    psql(&format!("DROP DATABASE {database}"));
}

/// 0.3.0 gains the fixed search paths, the pg_monitor grant and the column for metadata
/// text cannot hold.
#[test]
fn updating_from_0_3_0_matches_a_fresh_install_and_keeps_the_data() {
    let database = update_from("0.3.0");
    assert_eq!(psql_in(&database, "SELECT kafka.produce('kept', 'k', 'v', NULL, 0)"), "0");
    assert_eq!(psql_in(&database, "SELECT has_schema_privilege('pg_monitor', 'kafka', 'USAGE')"), "t");
    psql(&format!("DROP DATABASE {database}"));
}

#[test]
fn updating_from_0_4_0_matches_a_fresh_install() {
    let database = update_from("0.4.0");
    psql(&format!("DROP DATABASE {database}"));
}

/// The update users of the last release run: 0.5.0's topics keep the row layout, and a
/// batch-layout topic made after it reads through the same views.
#[test]
fn updating_from_0_5_0_keeps_topics_in_rows_and_adds_the_batch_layout() {
    let database = update_from("0.5.0");
    assert_eq!(psql_in(&database, "SELECT storage FROM kafka.topics WHERE name = 'kept'"), "rows");
    psql_in(&database, "INSERT INTO kafka.topics (name, partitions, storage) VALUES ('packed', 1, 'batches')");
    assert_eq!(psql_in(&database, "SELECT kafka.produce('packed', 'k', 'v')"), "0");
    assert_eq!(psql_in(&database, "SELECT kafka.produce('packed', 'k', 'w')"), "1");
    assert_eq!(
        psql_in(&database, "SELECT string_agg(value_text, ',' ORDER BY \"offset\") FROM kafka.topic_messages WHERE topic = 'packed'"),
        "v,w"
    );
    assert_eq!(psql_in(&database, "SELECT count(*) FROM kafka.batches"), "2");
    psql(&format!("DROP DATABASE {database}"));
}

/// The update users of the last release run: batches keep their bytes, and a batch may
/// now span more offsets than it holds records (what compaction leaves).
#[test]
fn updating_from_0_6_0_keeps_batches_and_lets_compaction_rewrite_them() {
    let database = format!("upgrade_batches_{}", std::process::id());
    psql(&format!("DROP DATABASE IF EXISTS {database}"));
    psql(&format!("CREATE DATABASE {database}"));
    psql_in(&database, "CREATE EXTENSION pg_kafka VERSION '0.6.0'");
    psql_in(&database, "INSERT INTO kafka.topics (name, partitions, storage) VALUES ('packed', 1, 'batches')");
    assert_eq!(psql_in(&database, "SELECT kafka.produce('packed', 'k', 'v')"), "0");
    psql_in(&database, "ALTER EXTENSION pg_kafka UPDATE");
    assert_eq!(psql_in(&database, "SELECT string_agg(value_text, ',') FROM kafka.topic_messages WHERE topic = 'packed'"), "v");
    psql_in(&database, "UPDATE kafka.batches SET last_offset = last_offset + 2");
    assert_eq!(psql_in(&database, "SELECT last_offset - base_offset + 1 - record_count FROM kafka.batches"), "2");
    assert_eq!(psql_in(&database, "SELECT count(*) FROM kafka.partition_cleaning"), "0");
    psql(&format!("DROP DATABASE {database}"));
}

/// The update users of the last release run: 0.7.0's batches read as before (they hold
/// no transactions), transactions' tables start empty.
#[test]
fn updating_from_0_7_0_matches_a_fresh_install_and_reads_batches_as_before() {
    let database = update_from("0.7.0");
    psql_in(&database, "INSERT INTO kafka.topics (name, partitions, storage) VALUES ('packed', 1, 'batches')");
    assert_eq!(psql_in(&database, "SELECT kafka.produce('packed', 'k', 'v')"), "0");
    assert_eq!(psql_in(&database, "SELECT string_agg(value_text, ',') FROM kafka.topic_messages WHERE topic = 'packed'"), "v");
    assert_eq!(psql_in(&database, "SELECT count(*) FROM kafka.consume('g', 'packed')"), "1");
    assert_eq!(psql_in(&database, "SELECT count(*) FROM kafka.transactions"), "0");
    psql(&format!("DROP DATABASE {database}"));
}

/// The update users of the last release run: 0.8.0's rows read as before (they hold no
/// transaction: the new columns are NULL), in kafka.messages and through the views.
#[test]
fn updating_from_0_8_0_matches_a_fresh_install_and_reads_rows_as_before() {
    let database = update_from("0.8.0");
    // In the row layout whatever the cluster's default (pg_kafka.default_topic_storage).
    psql_in(&database, "INSERT INTO kafka.topics (name, partitions, storage) VALUES ('plain', 1, 'rows')");
    assert_eq!(psql_in(&database, "SELECT kafka.produce('plain', 'k', 'v')"), "0");
    assert_eq!(psql_in(&database, "SELECT string_agg(value_text, ',') FROM kafka.topic_messages WHERE topic = 'plain'"), "v");
    assert_eq!(psql_in(&database, "SELECT count(*) FROM kafka.consume('g', 'plain')"), "1");
    assert_eq!(psql_in(&database, "SELECT count(*) FROM kafka.messages WHERE producer_id IS NULL AND control IS NULL"), "1");
    psql(&format!("DROP DATABASE {database}"));
}

/// The update users of the last release run: 0.11.0 gains the shadow topics' tables, and a
/// topic can be shadowed at once.
#[test]
fn updating_from_0_11_0_matches_a_fresh_install_and_can_shadow_a_topic() {
    let database = update_from("0.11.0");
    assert_eq!(psql_in(&database, "SELECT count(*) FROM kafka.shadow_topics"), "0");
    assert_eq!(psql_in(&database, "SELECT kafka.shadow_topic('kept', 'kafka.example:9092')"), format!("pg_kafka-shadow-{database}-kept"));
    assert_eq!(psql_in(&database, "SELECT count(*) FROM kafka.shadow_lag WHERE topic = 'kept' AND lag = 0"), "2");
    psql(&format!("DROP DATABASE {database}"));
}

/// The update users of 0.10.0 run: it gains the table a primary records its
/// synchronous standbys in, empty until a primary's worker writes it.
#[test]
fn updating_from_0_10_0_matches_a_fresh_install_and_adds_the_in_sync_record() {
    let database = update_from("0.10.0");
    assert_eq!(psql_in(&database, "SELECT count(*) FROM kafka.cluster_in_sync"), "0");
    psql_in(&database, "INSERT INTO kafka.cluster_in_sync (node_id) VALUES (2), (3)");
    assert_eq!(psql_in(&database, "SELECT string_agg(node_id::text, ',' ORDER BY node_id) FROM kafka.cluster_in_sync"), "2,3");
    psql(&format!("DROP DATABASE {database}"));
}

/// The update users of 0.9.0 run: it gains the table a primary records
/// that it leads in (one row at most), empty until a primary's worker writes it.
#[test]
fn updating_from_0_9_0_matches_a_fresh_install_and_adds_the_leader_record() {
    let database = update_from("0.9.0");
    assert_eq!(psql_in(&database, "SELECT count(*) FROM kafka.cluster_leader"), "0");
    psql_in(&database, "INSERT INTO kafka.cluster_leader (node_id) VALUES (3)");
    let second = Command::new("psql")
        .args(["-X", "-q", "-h", "127.0.0.1", "-U", "postgres", "-d", &database, "-p", &std::env::var("PGKAFKA_E2E_PG_PORT").unwrap()])
        .args(["-c", "INSERT INTO kafka.cluster_leader (node_id) VALUES (4)"])
        .output()
        .expect("psql runs");
    assert!(!second.status.success(), "one leader record at most");
    psql(&format!("DROP DATABASE {database}"));
}

/// The update users of 0.4.0 run: its committed offsets get commit numbers
/// (their offsets in `__consumer_offsets`), and every later commit a new, higher one.
#[test]
fn updating_from_0_4_0_numbers_the_commits_already_stored() {
    let database = format!("upgrade_commits_{}", std::process::id());
    psql(&format!("DROP DATABASE IF EXISTS {database}"));
    psql(&format!("CREATE DATABASE {database}"));
    psql_in(&database, "CREATE EXTENSION pg_kafka VERSION '0.4.0'");
    psql_in(&database, "INSERT INTO kafka.topics (name, partitions) VALUES ('kept', 2)");
    psql_in(
        &database,
        "INSERT INTO kafka.consumer_offsets (group_id, topic_id, partition, committed_offset) \
         SELECT 'g', id, p, 7 FROM kafka.topics, generate_series(0, 1) AS p",
    );
    psql_in(&database, "ALTER EXTENSION pg_kafka UPDATE");
    assert_eq!(psql_in(&database, "SELECT string_agg(commit_number::text, ',' ORDER BY partition) FROM kafka.consumer_offsets"), "0,1");
    psql_in(&database, "UPDATE kafka.consumer_offsets SET committed_offset = 8 WHERE partition = 0");
    assert_eq!(psql_in(&database, "SELECT commit_number FROM kafka.consumer_offsets WHERE partition = 0"), "2");
    psql(&format!("DROP DATABASE {database}"));
}
