//! The SQL surface against a role that shadows names: no code of a non-superuser runs
//! with more privilege than its own.
//!
//! The role may call `kafka.produce()` (a WRITE ACL on one topic) and owns a schema of
//! its own, in which it defines the operators and functions the extension's SQL uses
//! (`=` on every type it compares, `>=`, `<`, `convert_to`, `count(*)`, `max`, ...) and,
//! in `pg_temp`, views named like catalogs. Each of them records who ran it and tries
//! `ALTER ROLE ... SUPERUSER`. It then calls every SQL function with its schema (and
//! `pg_temp`) before `pg_catalog` on its path. Its code may run as itself (calling
//! a function runs the caller's operators when the function does not fix its path); it
//! must never run as anybody else, and the role must stay what it was.

use pg_kafka_e2e::{assert_survives, create_topic, psql};

const ROLE: &str = "shadow_attacker";

/// Who ran the attacker's code, as the attacker saw it.
fn runs_by(who: &str) -> i64 {
    psql(&format!("SELECT count(*) FROM shadow.ran WHERE who {who} '{ROLE}'")).parse().unwrap()
}

/// The attacker's schema: a table it logs in, and the function every shadow calls.
const HIT: &str = r#"
CREATE TABLE shadow.ran (who text, what text);
GRANT INSERT ON shadow.ran TO PUBLIC;
CREATE FUNCTION shadow.hit(what text) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO shadow.ran VALUES (current_user, what);
    BEGIN
        EXECUTE 'ALTER ROLE shadow_attacker SUPERUSER';
    EXCEPTION WHEN OTHERS THEN NULL;
    END;
    RETURN true;
END $$;
"#;

/// Operators the extension's SQL uses, shadowed: (name, operator, left type, right type).
const OPERATORS: &[(&str, &str, &str, &str)] = &[
    ("text_eq", "=", "text", "text"),
    ("name_eq", "=", "name", "name"),
    ("name_text_eq", "=", "name", "text"),
    ("int4_eq", "=", "integer", "integer"),
    ("int8_eq", "=", "bigint", "bigint"),
    ("int2_eq", "=", "smallint", "smallint"),
    ("tstz_eq", "=", "timestamptz", "timestamptz"),
    ("int8_ge", ">=", "bigint", "bigint"),
    ("int4_lt", "<", "integer", "integer"),
];

/// Functions it uses, shadowed: (name, arguments, result, the built-in call it forwards to).
const FUNCTIONS: &[(&str, &str, &str, &str)] = &[
    ("convert_to", "t text, e name", "bytea", "pg_catalog.convert_to(t, e)"),
    ("lower", "t text", "text", "pg_catalog.lower(t)"),
    ("replace", "t text, a text, b text", "text", "pg_catalog.replace(t, a, b)"),
    ("chr", "i integer", "text", "pg_catalog.chr(i)"),
    ("now", "", "timestamptz", "pg_catalog.now()"),
    ("clock_timestamp", "", "timestamptz", "pg_catalog.clock_timestamp()"),
    ("date_trunc", "f text, t timestamptz", "timestamptz", "pg_catalog.date_trunc(f, t)"),
    ("set_config", "n text, v text, l boolean", "text", "pg_catalog.set_config(n, v, l)"),
    ("octet_length", "b bytea", "integer", "pg_catalog.octet_length(b)"),
];

/// Aggregates and set-returning functions, which take more than one statement.
const OTHERS: &str = r#"
CREATE FUNCTION shadow.generate_series(a integer, b integer) RETURNS SETOF integer LANGUAGE plpgsql AS
    $$ BEGIN PERFORM shadow.hit('generate_series'); RETURN QUERY SELECT pg_catalog.generate_series(a, b); END $$;
CREATE FUNCTION shadow.count_step(n bigint) RETURNS bigint LANGUAGE plpgsql AS
    $$ BEGIN PERFORM shadow.hit('count(*)'); RETURN n OPERATOR(pg_catalog.+) 1; END $$;
CREATE AGGREGATE shadow.count(*) (SFUNC = shadow.count_step, STYPE = bigint, INITCOND = '0');
CREATE FUNCTION shadow.max_step(s bigint, v bigint) RETURNS bigint LANGUAGE plpgsql AS
    $$ BEGIN PERFORM shadow.hit('max'); RETURN pg_catalog.int8larger(s, v); END $$;
CREATE AGGREGATE shadow.max(bigint) (SFUNC = shadow.max_step, STYPE = bigint);
CREATE FUNCTION shadow.min_step(s bigint, v bigint) RETURNS bigint LANGUAGE plpgsql AS
    $$ BEGIN PERFORM shadow.hit('min'); RETURN pg_catalog.int8smaller(s, v); END $$;
CREATE AGGREGATE shadow.min(bigint) (SFUNC = shadow.min_step, STYPE = bigint);
"#;

/// The whole schema of shadows, as SQL.
fn shadows() -> String {
    let mut sql = HIT.to_owned();
    for (name, op, left, right) in OPERATORS {
        sql.push_str(&format!(
            "CREATE FUNCTION shadow.{name}(a {left}, b {right}) RETURNS boolean LANGUAGE plpgsql AS \
             $$ BEGIN PERFORM shadow.hit('{left} {op} {right}'); RETURN a OPERATOR(pg_catalog.{op}) b; END $$;\n\
             CREATE OPERATOR shadow.{op} (LEFTARG = {left}, RIGHTARG = {right}, FUNCTION = shadow.{name});\n"
        ));
    }
    for (name, arguments, result, forward) in FUNCTIONS {
        sql.push_str(&format!(
            "CREATE FUNCTION shadow.{name}({arguments}) RETURNS {result} LANGUAGE plpgsql AS \
             $$ BEGIN PERFORM shadow.hit('{name}'); RETURN {forward}; END $$;\n"
        ));
    }
    sql + OTHERS
}

/// Views in `pg_temp` named like the catalogs and tables the extension reads, each
/// running the attacker's code for every row read through it.
const TEMP_SHADOWS: &str = "
CREATE TEMP VIEW pg_authid AS
    SELECT oid, rolname, rolsuper, rolpassword, rolcanlogin, rolvaliduntil FROM pg_catalog.pg_roles WHERE shadow.hit('temp pg_authid');
CREATE TEMP VIEW pg_roles AS SELECT * FROM pg_catalog.pg_roles WHERE shadow.hit('temp pg_roles');
CREATE TEMP VIEW topics AS SELECT 1 AS id, 'x'::text AS name WHERE shadow.hit('temp topics');
CREATE TEMP VIEW acls AS SELECT 1 AS resource_type WHERE shadow.hit('temp acls');
";

/// Every SQL function and view of the extension, as the attacker calls them.
fn calls(allowed: &str, denied: &str) -> Vec<String> {
    vec![
        format!("SELECT kafka.produce('{allowed}', 'k'::bytea, 'v'::bytea)"),
        format!("SELECT kafka.produce('{allowed}', 'k'::text, 'v'::text, '{{\"h\": \"v\"}}')"),
        format!("SELECT kafka.produce('{allowed}', 'k'::text, '{{\"a\": 1}}'::jsonb, NULL, 0)"),
        format!("SELECT kafka.produce('{allowed}', ARRAY[ROW('k', 'v', NULL, NULL, NULL)]::kafka.outgoing[])"),
        format!("SELECT kafka.produce('{allowed}', NULL::bytea, 'no key'::bytea)"),
        format!("SELECT kafka.produce('{denied}', 'k'::text, 'v'::text)"),
        "SELECT kafka.produce('no-such-topic', 'k'::text, 'v'::text)".into(),
        format!("SELECT * FROM kafka.consume('shadow-group', '{allowed}', 10)"),
        "SELECT kafka.headers('\\x020268020476'::bytea), kafka.encode_headers('{\"h\": \"v\"}')".into(),
        "SELECT kafka.try_text('\\x41'::bytea), kafka.try_jsonb('\\x7b7d'::bytea)".into(),
        format!("SELECT count(*) FROM kafka.topic_messages WHERE topic = '{allowed}'"),
        "SELECT kafka.acl_code('operation', 'write')".into(),
        format!("SELECT kafka.grant_acl('{ROLE}', 'all', 'cluster', 'x')"),
        format!("SELECT kafka.revoke_acl('{ROLE}', 'write', 'topic', '{allowed}')"),
        "SELECT kafka.log_start_offset(1, 0), kafka.high_watermark(1, 0)".into(),
        "SELECT count(*) FROM kafka.topic_partitions".into(),
        "SELECT count(*) FROM kafka.broker_stats".into(),
        "SELECT count(*) FROM kafka.api_stats".into(),
        "SELECT count(*) FROM kafka.groups".into(),
        "SELECT count(*) FROM kafka.group_members".into(),
        "SELECT count(*) FROM kafka.connections".into(),
        "SELECT count(*) FROM kafka.consumer_lag".into(),
        "SELECT count(*) FROM kafka.acl_bindings".into(),
        format!("SELECT kafka.shadow_topic('{allowed}', '127.0.0.1:1')"),
        format!("SELECT kafka.unshadow_topic('{allowed}')"),
        "SELECT count(*) FROM kafka.shadow_lag".into(),
        "SELECT count(*) FROM kafka.shadow_topics".into(),
    ]
}

#[test]
fn shadowed_operators_and_functions_never_run_with_raised_privileges() {
    let (allowed, denied) = ("e2e-shadow-allowed", "e2e-shadow-denied");
    create_topic(allowed, 1);
    create_topic(denied, 1);
    psql(&format!(
        "DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{ROLE}') THEN CREATE ROLE {ROLE} LOGIN; END IF; END $$; \
         ALTER ROLE {ROLE} NOSUPERUSER; \
         DROP SCHEMA IF EXISTS shadow CASCADE; CREATE SCHEMA shadow AUTHORIZATION {ROLE}; \
         GRANT USAGE ON SCHEMA kafka TO {ROLE}; GRANT TEMPORARY ON DATABASE postgres TO {ROLE}"
    ));
    psql(&format!("SELECT kafka.grant_acl('{ROLE}', 'write', 'topic', '{allowed}')"));
    psql(&format!("SET ROLE {ROLE}; {}", shadows()));

    // The shadows work: an unqualified `=` on the attacker's path is its own.
    psql(&format!("SET ROLE {ROLE}; SET search_path = shadow, pg_catalog; SELECT 'a'::text = 'b'::text"));
    assert!(runs_by("=") > 0, "the attacker's operator did not run: this test would prove nothing");

    assert_survives("shadowed names on the caller's path", || {
        for path in ["shadow, pg_catalog", "pg_temp, shadow, pg_catalog"] {
            for call in calls(allowed, denied) {
                let script = format!("SET ROLE {ROLE}; {TEMP_SHADOWS} SET search_path = {path}; {call}");
                let _ = std::panic::catch_unwind(|| psql(&script));
            }
        }
    });

    let escalated = psql(&format!("SELECT what || ' as ' || who FROM shadow.ran WHERE who <> '{ROLE}'"));
    assert_eq!(runs_by("<>"), 0, "the attacker's code ran with another role's privileges: {escalated}");
    assert_eq!(psql(&format!("SELECT rolsuper FROM pg_roles WHERE rolname = '{ROLE}'")), "f");
    // What it was allowed to produce arrived; the topic it had no ACL for holds nothing.
    assert_eq!(psql(&format!("SELECT count(*) > 0 FROM kafka.topic_messages WHERE topic = '{allowed}'")), "t");
    assert_eq!(psql(&format!("SELECT count(*) FROM kafka.topic_messages WHERE topic = '{denied}'")), "0");
    // Authorization comes first: an unknown topic is refused as unauthorized, not looked up.
    let unknown =
        std::panic::catch_unwind(|| psql(&format!("SET ROLE {ROLE}; SELECT kafka.produce('no-such-topic', 'k'::text, 'v'::text)")));
    assert!(unknown.is_err());
    psql(&format!("SELECT kafka.revoke_acl('{ROLE}', 'write', 'topic', '{allowed}')"));
}

/// The monitoring views are for pg_monitor members, as docs/security.md says: a fresh
/// role granted pg_monitor and nothing else reads them; one without it is refused.
#[test]
fn a_fresh_pg_monitor_member_reads_the_monitoring_views() {
    psql(
        "DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'fresh_monitor') THEN CREATE ROLE fresh_monitor; END IF; \
         IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'fresh_outsider') THEN CREATE ROLE fresh_outsider; END IF; END $$; \
         GRANT pg_monitor TO fresh_monitor",
    );
    for view in ["connections", "broker_stats", "api_stats", "groups", "group_members", "topic_partitions"] {
        psql(&format!("SET ROLE fresh_monitor; SELECT count(*) FROM kafka.{view}"));
        let outsider = std::panic::catch_unwind(|| psql(&format!("SET ROLE fresh_outsider; SELECT count(*) FROM kafka.{view}")));
        assert!(outsider.is_err(), "kafka.{view} read by a role outside pg_monitor");
    }
}
