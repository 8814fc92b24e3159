//! A primary and a hot standby (BENCH_ONLY=replication, docs/replication.md): produce with
//! acks=all while one synchronous standby confirms every commit (`synchronous_standby_names
//! = '*'`, the writer's `synchronous_commit = on`) against the node alone, and a consumer
//! the leader sends to the standby of its rack (KIP-392) against one reading from the
//! leader. The standby is a `pg_basebackup` of the bench cluster on this machine, sharing
//! its cores, on ports below the ephemeral range.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::perf_tool::{self, ProduceShape};
use crate::report::Report;
use crate::{Env, Row};

const STANDBY_DATA: &str = "target/bench-standby";
const STANDBY_PG_PORT: &str = "25434";
const STANDBY_KAFKA_PORT: &str = "29094";

pub fn run(env: &Env, report: &mut Report, size: usize) {
    let one = ProduceShape { layout: "batches", ..ProduceShape::plain(size, 1) };
    let topic = |what: &str, r: usize| format!("bench-replication-{size}-{what}-r{r}");
    // The node alone, before it has a standby (whose replay shares the cores).
    let alone = report.case(|r| env.round(None, || perf_tool::produce(env, one, &topic("alone", r))));
    let standby = Standby::start(env);
    set_synchronous(env, true);
    report.case(|r| {
        env.round(None, || {
            let row = perf_tool::produce(env, one, &topic("synchronous", r));
            Row { method: format!("{}, one synchronous standby", row.method), ..row }.against(alone)
        })
    });
    set_synchronous(env, false);

    let filled = format!("bench-replication-fill-{size}");
    perf_tool::produce(env, one, &filled);
    standby.wait_for_replay(env);
    let leader = report.case(|_| env.round(Some(&filled), || perf_tool::consume(env, size, &filled)));
    report.case(|_| {
        env.round(Some(&filled), || {
            let consumer = perf_tool::start_consumer_with(&env.bootstrap, &filled, "beginning", env.messages, &[("client.rack", "b")]);
            perf_tool::consumed(consumer, size, "rdkafka_performance consume from offset 0, sent to the standby (client.rack)")
                .against(leader)
        })
    });
    standby.stop(env);
}

/// `synchronous_standby_names` of the bench cluster: every standby, or none.
fn set_synchronous(env: &Env, on: bool) {
    let names = if on { "*" } else { "" };
    alter_system(env, &[&format!("ALTER SYSTEM SET synchronous_standby_names = '{names}'")]);
    let mut sql = env.sql();
    // A reload reaches the walsenders within moments; wait until the standby's state says so.
    let wanted = if on { "sync" } else { "async" };
    let since = Instant::now();
    while since.elapsed() < Duration::from_secs(30) {
        let state: Option<String> =
            sql.query_opt("SELECT sync_state FROM pg_stat_replication LIMIT 1", &[]).expect("pg_stat_replication").map(|r| r.get(0));
        if state.as_deref() == Some(wanted) {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("the standby did not become {wanted}");
}

struct Standby;

impl Standby {
    /// Names both nodes (racks a and b) on the bench cluster, copies it with pg_basebackup
    /// and starts the copy as node 2.
    fn start(env: &Env) -> Standby {
        let nodes = format!("1:a@{},2:b@127.0.0.1:{STANDBY_KAFKA_PORT}", env.bootstrap);
        alter_system(env, &[&format!("ALTER SYSTEM SET pg_kafka.cluster_nodes = '{nodes}'")]);
        cluster("stop");
        let _ = std::fs::remove_dir_all(STANDBY_DATA);
        // Made by root, given to postgres, who fills it (target/ is root's).
        std::fs::create_dir_all(STANDBY_DATA).expect("the standby's directory");
        Command::new("chmod").args(["700", STANDBY_DATA]).status().expect("chmod");
        assert!(Command::new("chown").args(["postgres:postgres", STANDBY_DATA]).status().expect("chown").success());
        let bin = std::env::var("PG_BIN").unwrap_or_else(|_| "/usr/lib/postgresql/15/bin".into());
        let port = env.pg_port.to_string();
        let backup = Command::new("runuser")
            .args(["-u", "postgres", "--", &format!("{bin}/pg_basebackup"), "-h", "127.0.0.1", "-p", &port, "-U", "postgres"])
            .args(["-D", STANDBY_DATA, "-R", "-X", "stream", "-c", "fast"])
            .status()
            .expect("pg_basebackup runs");
        assert!(backup.success(), "pg_basebackup of the bench cluster");
        let conf = "target/bench-standby.conf";
        std::fs::write(conf, "pg_kafka.node_id = 2\n").expect("standby settings");
        assert!(cluster_with("start", Some(conf)), "the standby starts");
        Standby
    }

    /// Waits until the standby has replayed everything the bench cluster wrote so far.
    fn wait_for_replay(&self, env: &Env) {
        let written: String = env.sql().query_one("SELECT pg_current_wal_lsn()::text", &[]).expect("wal position").get(0);
        let dsn = format!("host=127.0.0.1 port={STANDBY_PG_PORT} user=postgres dbname=postgres");
        let mut standby = postgres::Client::connect(&dsn, postgres::NoTls).expect("connect to the standby");
        let since = Instant::now();
        while since.elapsed() < Duration::from_secs(120) {
            let caught_up: bool =
                standby.query_one("SELECT pg_last_wal_replay_lsn() >= $1::text::pg_lsn", &[&written]).expect("replay position").get(0);
            if caught_up {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("the standby did not replay the filled topic");
    }

    fn stop(self, env: &Env) {
        cluster("stop");
        alter_system(env, &["ALTER SYSTEM RESET pg_kafka.cluster_nodes", "ALTER SYSTEM RESET synchronous_standby_names"]);
    }
}

/// Runs each `ALTER SYSTEM` statement (none may share a transaction), then reloads.
fn alter_system(env: &Env, statements: &[&str]) {
    let mut sql = env.sql();
    for statement in statements.iter().chain(&["SELECT pg_reload_conf()"]) {
        sql.batch_execute(statement).unwrap_or_else(|e| panic!("{statement}: {e}"));
    }
}

fn cluster(action: &str) -> bool {
    cluster_with(action, None)
}

fn cluster_with(action: &str, conf: Option<&str>) -> bool {
    let mut command = Command::new("scripts/cluster.sh");
    command.args([action, STANDBY_DATA, STANDBY_PG_PORT, STANDBY_KAFKA_PORT]);
    if let Some(conf) = conf {
        command.env("PGKAFKA_EXTRA_CONF", conf);
    }
    command.status().expect("cluster.sh runs").success()
}
