//! `make bench`: how close Kafka produce and consume through pg_kafka come to what Postgres
//! itself does with the same rows, on the same table of the same cluster.
//!
//! Every case runs `BENCH_ROUNDS` times (default 3) and reports the median round and the
//! spread. Baselines: server-side binary `COPY FROM`/`COPY TO` a file (Postgres with no
//! client), the same through libpq (`STDIN`/`STDOUT`), and a per-row INSERT loop.
//! Clients: librdkafka's own `rdkafka_performance` (acks=all, linger.ms=5, 1 MB batches:
//! the rows the targets of docs/performance.md are about) and rdkafka producers and
//! consumers from Rust (per-message latency from `send()`); `kafka.produce()` from SQL
//! sessions. Latency: acknowledgements at a
//! fixed rate, and produce-to-consume with a consumer in long poll. SASL_SSL beside
//! PLAINTEXT: what security costs.
//!
//! Environment (set by the Makefile): PGKAFKA_BENCH_BOOTSTRAP, PGKAFKA_BENCH_PG_PORT,
//! PGKAFKA_BENCH_SASL_SSL, PGKAFKA_BENCH_CA_FILE, PGKAFKA_BENCH_RDKAFKA_PERFORMANCE;
//! BENCH_MESSAGES (default 1,000,000), BENCH_ROUNDS (default 3), BENCH_SUSTAINED_MESSAGES
//! (default 50,000,000), BENCH_ONLY (one group of cases: `sustained`, `partitions`,
//! `idempotent`, `mixed`, `layouts`, `kafka`, `compaction`, `transactions`, `replication`, `shadow`) with BENCH_SIZE (its message size, 100),
//! BENCH_SQL (a SQL file run first, e.g. tuning/autovacuum.sql). `kafka` and the full run
//! measure Apache Kafka too (module `versus`).

mod compaction;
mod consume;
mod copy;
mod idle;
mod latency;
mod perf_tool;
mod produce;
mod replication;
mod report;
mod shadow;
mod sql_produce;
mod transactions;
mod versus;

use std::time::Duration;

use perf_tool::ProduceShape;
pub use report::{Report, Row};

pub struct Env {
    pub bootstrap: String,
    pub pg_port: u16,
    pub messages: usize,
    pub rounds: usize,
    /// Messages of the sustained run (BENCH_SUSTAINED_MESSAGES, default 50M).
    pub sustained_messages: usize,
    /// BENCH_ONLY: one group of cases alone (to profile it or compare settings on it).
    pub only: Option<Only>,
    /// The SASL_SSL listener, when `make bench` configured one.
    pub sasl_ssl: Option<SaslSsl>,
}

/// The groups of cases BENCH_ONLY can run alone, each with the baseline its ratio needs.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Only {
    /// The sustained run with retention.
    Sustained,
    /// rdkafka_performance 8 partitions against 1, and 1,000 partitions against the Rust
    /// client's 1-partition rate.
    Partitions,
    /// Server-side COPY FROM, rdkafka_performance plain against it, idempotent and
    /// max.in.flight=1 against plain.
    Idempotent,
    /// rdkafka_performance produce beside reads against produce and replay alone.
    Mixed,
    /// rdkafka_performance produce (plain, idempotent, 8 partitions) and consume on topics
    /// in the batch layout against the same in the row layout.
    Layouts,
    /// pg_kafka (both layouts) beside Apache Kafka (defaults, and an fsync per append).
    Kafka,
    /// Compacting a partition of BENCH_COMPACTION_MESSAGES over 100k keys, and produce
    /// beside it against produce alone.
    Compaction,
    /// Transactional produce (a commit every 1,000) against idempotent; read_committed
    /// consume against read_uncommitted.
    Transactions,
    /// With a hot standby of the bench cluster: acks=all with it synchronous against the
    /// node alone, and a consumer sent to it (KIP-392) against one reading the leader.
    Replication,
    /// pg_kafka_shadow forwarding a topic to Apache Kafka against producing it.
    Shadow,
}

impl Only {
    fn parse(name: &str) -> Only {
        match name {
            "sustained" => Only::Sustained,
            "partitions" => Only::Partitions,
            "idempotent" => Only::Idempotent,
            "mixed" => Only::Mixed,
            "layouts" => Only::Layouts,
            "kafka" => Only::Kafka,
            "compaction" => Only::Compaction,
            "transactions" => Only::Transactions,
            "replication" => Only::Replication,
            "shadow" => Only::Shadow,
            other => {
                panic!(
                    "BENCH_ONLY={other}: expected sustained, partitions, idempotent, mixed, layouts, kafka, compaction, transactions or replication"
                )
            }
        }
    }
}

pub struct SaslSsl {
    pub bootstrap: String,
    /// The CA that signed the listener's certificate.
    pub ca_file: String,
}

impl Env {
    fn from_env() -> Env {
        let var = |name: &str| std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set: run through `make bench`"));
        let number = |name: &str, default: usize| std::env::var(name).ok().and_then(|n| n.parse().ok()).unwrap_or(default);
        Env {
            bootstrap: var("PGKAFKA_BENCH_BOOTSTRAP"),
            pg_port: var("PGKAFKA_BENCH_PG_PORT").parse().expect("port"),
            messages: number("BENCH_MESSAGES", 1_000_000),
            rounds: number("BENCH_ROUNDS", 3),
            sustained_messages: number("BENCH_SUSTAINED_MESSAGES", 50_000_000),
            only: std::env::var("BENCH_ONLY").ok().map(|name| Only::parse(&name)),
            sasl_ssl: std::env::var("PGKAFKA_BENCH_SASL_SSL")
                .ok()
                .map(|bootstrap| SaslSsl { bootstrap, ca_file: var("PGKAFKA_BENCH_CA_FILE") }),
        }
    }

    pub fn sql(&self) -> postgres::Client {
        let dsn = format!("host=127.0.0.1 port={} user=postgres dbname=postgres", self.pg_port);
        postgres::Client::connect(&dsn, postgres::NoTls).expect("connect to the bench cluster")
    }

    /// Deletes every benchmark topic but `keep`, with its messages: a 1 KiB case writes
    /// about 1 GB a round, which would otherwise pile up to tens of GB over a run.
    pub fn reset(&self, keep: Option<&str>) {
        let mut sql = self.sql();
        match keep {
            None => sql.batch_execute("TRUNCATE kafka.messages, kafka.batches; DELETE FROM kafka.topics WHERE name LIKE 'bench-%'"),
            Some(name) => {
                sql.execute("DELETE FROM kafka.topics WHERE name LIKE 'bench-%' AND name <> $1", &[&name]).expect("delete topics");
                sql.batch_execute(
                    "DELETE FROM kafka.messages WHERE topic_id NOT IN (SELECT id FROM kafka.topics);
                     DELETE FROM kafka.batches WHERE topic_id NOT IN (SELECT id FROM kafka.topics)",
                )
                .and_then(|()| sql.batch_execute("VACUUM kafka.messages, kafka.batches"))
            }
        }
        .expect("reset the benchmark tables");
    }

    /// Runs one round of a case, then deletes what it wrote (but `keep`).
    pub fn round<T>(&self, keep: Option<&str>, run: impl FnOnce() -> T) -> T {
        let result = run();
        self.reset(keep);
        result
    }

    /// The peak resident memory (VmHWM) of the worker and of its readers, from /proc (the
    /// bench runs on the cluster's machine).
    fn peak_memory(&self) -> Vec<String> {
        let rows = self
            .sql()
            .query("SELECT pid, backend_type FROM pg_stat_activity WHERE backend_type LIKE 'pg_kafka%' ORDER BY backend_type", &[])
            .unwrap_or_default();
        rows.iter()
            .map(|row| {
                let (pid, kind): (i32, String) = (row.get(0), row.get(1));
                let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
                let peak = status.lines().find(|l| l.starts_with("VmHWM:")).map_or("unknown".into(), |l| l[6..].trim().to_string());
                format!("Peak RSS of {kind} (pid {pid}): {peak}")
            })
            .collect()
    }

    /// Creates a topic in the row layout and returns its id.
    pub fn create_topic(&self, name: &str, partitions: i32) -> i32 {
        self.create_topic_in(name, partitions, "rows")
    }

    /// Creates a topic stored in `layout` ("rows" or "batches") and returns its id.
    pub fn create_topic_in(&self, name: &str, partitions: i32, layout: &str) -> i32 {
        let mut sql = self.sql();
        let insert = "INSERT INTO kafka.topics (name, partitions, storage) VALUES ($1, $2, $3) RETURNING id";
        sql.query_one(insert, &[&name, &partitions, &layout]).expect("create topic").get(0)
    }
}

/// Consumers of the idle long-poll case.
const IDLE_CONSUMERS: usize = 5000;

fn main() {
    let env = Env::from_env();
    let mut report = Report::new(&env);
    env.reset(None);
    // BENCH_SQL: a file of SQL run first (per-table settings such as tuning/autovacuum.sql).
    if let Ok(file) = std::env::var("BENCH_SQL") {
        let sql = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("BENCH_SQL {file}: {e}"));
        env.sql().batch_execute(&sql).unwrap_or_else(|e| panic!("BENCH_SQL {file}: {e}"));
        println!("ran {file}");
    }
    if let Some(only) = env.only {
        run_only(&env, &mut report, only);
        report.finish(&env.peak_memory());
        return;
    }
    // Latency first, on a quiet cluster: after the throughput cases' gigabytes the
    // checkpoints and autovacuum they leave behind set the tail instead (measured: p99
    // 5.7 ms here against 233 ms at the end of a run).
    let paced = ProduceShape { rate: Some(5000), ..ProduceShape::plain(100, 1) };
    report.case(|r| env.round(None, || perf_tool::produce(&env, paced, &format!("bench-perf-paced-r{r}"))));
    report.case(|r| env.round(None, || latency::produce_at_fixed_rate(&env, 5000, Duration::from_secs(10), r)));
    report.case(|r| env.round(None, || latency::end_to_end(&env, 1000, Duration::from_secs(10), r)));
    for size in [100, 1024] {
        let fresh = |run: &dyn Fn() -> Row| env.round(None, run);
        let copy_rate = report.case(|r| fresh(&|| copy::copy_in(&env, size, r)));
        let server_copy_rate = report.case(|r| fresh(&|| copy::server_copy_in(&env, size, r)));
        let insert_rate = report.case(|r| fresh(&|| copy::insert_loop(&env, size, r).against(copy_rate)));
        // Produce from SQL (the outbox path) against the per-row INSERT it replaces.
        if size == 100 {
            for sessions in [1, 8] {
                report.case(|r| fresh(&|| sql_produce::one_per_transaction(&env, size, sessions, r).against(insert_rate)));
            }
            report.case(|r| fresh(&|| sql_produce::array_form(&env, size, r).against(copy_rate)));
        }

        // The targets: rdkafka_performance against Postgres's own limits and each other.
        let perf_topic = |what: &str, r: usize| format!("bench-perf-{size}-{what}-r{r}");
        let one = ProduceShape::plain(size, 1);
        let one_rate = report.case(|r| fresh(&|| perf_tool::produce(&env, one, &perf_topic("p1", r)).against(server_copy_rate)));
        let idempotent = ProduceShape { idempotent: true, ..one };
        report.case(|r| fresh(&|| perf_tool::produce(&env, idempotent, &perf_topic("p1-idempotent", r)).against(one_rate)));
        let eight = ProduceShape::plain(size, 8);
        report.case(|r| fresh(&|| perf_tool::produce(&env, eight, &perf_topic("p8", r)).against(one_rate)));
        let one_in_flight = ProduceShape { one_in_flight: true, ..one };
        report.case(|r| fresh(&|| perf_tool::produce(&env, one_in_flight, &perf_topic("p1-inflight1", r)).against(one_rate)));

        // The same through the Rust client, with per-message latency from send().
        let mut one_partition_rate = 0.0;
        for (partitions, producers) in [(1, 1), (1, 4), (8, 1), (8, 4)] {
            let rate = report.case(|r| fresh(&|| produce::throughput(&env, size, partitions, producers, false, r).against(copy_rate)));
            if (partitions, producers) == (1, 1) {
                one_partition_rate = rate;
            }
        }
        if size == 100 {
            report.case(|r| fresh(&|| produce::many_partitions(&env, size, r).against(one_partition_rate)));
        }
        if env.sasl_ssl.is_some() {
            report.case(|r| fresh(&|| produce::throughput_sasl_ssl(&env, size, r).expect("a SASL_SSL listener").against(copy_rate)));
        }
        if size == 100 {
            for (partitions, producers) in [(1, 1), (8, 4)] {
                report.case(|r| fresh(&|| produce::throughput(&env, size, partitions, producers, true, r).against(copy_rate)));
            }
        }

        // Consume what one rdkafka_performance run produced (kept until the size is done).
        let filled = format!("bench-fill-{size}");
        perf_tool::produce(&env, one, &filled);
        let keep = |run: &dyn Fn() -> Row| env.round(Some(&filled), run);
        let copy_out_rate = report.case(|_| keep(&|| copy::copy_out(&env, size, &filled)));
        let server_copy_out_rate = report.case(|_| keep(&|| copy::server_copy_out(&env, size, &filled)));
        let replay_alone = report.case(|_| keep(&|| perf_tool::consume(&env, size, &filled).against(server_copy_out_rate)));
        report.case(|_| keep(&|| consume::throughput(&env, size, &filled).against(copy_out_rate)));

        // Reads beside writes.
        if size == 100 {
            report.cases(|r| {
                env.round(Some(&filled), || {
                    let (produced, replayed) = perf_tool::produce_beside_reads(&env, size, &filled, &perf_topic("beside-reads", r));
                    vec![produced.against(one_rate), replayed.against(replay_alone)]
                })
            });
        }
        env.reset(None);
    }
    // Apache Kafka on this machine, with the same clients, against both layouts.
    versus::run(&env, &mut report, &[100, 1024]);
    // A long run with retention deleting behind the writer (once: it takes minutes).
    let sustained = env.sustained_messages;
    report.once(env.round(None, || perf_tool::sustained(&env, sustained, 20_000, "bench-sustained")));
    // Compaction of a large partition, and produce beside it.
    compaction::run(&env, &mut report);
    // Forwarding a shadowed topic to Apache Kafka against producing it.
    shadow::run(&env, &mut report, 100);
    // Thousands of idle consumers in long poll (needs pg_kafka.max_connections above it).
    let idle = idle::long_polls(&env, IDLE_CONSUMERS);
    report.finish(&[vec![idle], env.peak_memory()].concat());
}

/// BENCH_ONLY: one group of cases with its baselines, messages of BENCH_SIZE bytes (100).
fn run_only(env: &Env, report: &mut Report, only: Only) {
    let size = std::env::var("BENCH_SIZE").ok().and_then(|n| n.parse().ok()).unwrap_or(100);
    let fresh = |run: &dyn Fn() -> Row| env.round(None, run);
    let perf_topic = |what: &str, r: usize| format!("bench-perf-{size}-{what}-r{r}");
    let one = ProduceShape::plain(size, 1);
    match only {
        Only::Sustained => {
            let sustained = env.sustained_messages;
            report.once(env.round(None, || perf_tool::sustained(env, sustained, 20_000, "bench-sustained")));
        }
        Only::Partitions => {
            let one_rate = report.case(|r| fresh(&|| perf_tool::produce(env, one, &perf_topic("p1", r))));
            let eight = ProduceShape::plain(size, 8);
            report.case(|r| fresh(&|| perf_tool::produce(env, eight, &perf_topic("p8", r)).against(one_rate)));
            let one_partition_rate = report.case(|r| fresh(&|| produce::throughput(env, size, 1, 1, false, r)));
            report.case(|r| fresh(&|| produce::many_partitions(env, size, r).against(one_partition_rate)));
        }
        Only::Idempotent => {
            let server_copy_rate = report.case(|r| fresh(&|| copy::server_copy_in(env, size, r)));
            let one_rate = report.case(|r| fresh(&|| perf_tool::produce(env, one, &perf_topic("p1", r)).against(server_copy_rate)));
            let idempotent = ProduceShape { idempotent: true, ..one };
            report.case(|r| fresh(&|| perf_tool::produce(env, idempotent, &perf_topic("p1-idempotent", r)).against(one_rate)));
            let one_in_flight = ProduceShape { one_in_flight: true, ..one };
            report.case(|r| fresh(&|| perf_tool::produce(env, one_in_flight, &perf_topic("p1-inflight1", r)).against(one_rate)));
        }
        Only::Kafka => versus::run(env, report, &[size]),
        Only::Compaction => compaction::run(env, report),
        Only::Transactions => transactions::run(env, report, size),
        Only::Replication => replication::run(env, report, size),
        Only::Shadow => shadow::run(env, report, size),
        Only::Layouts => {
            for shape in [one, ProduceShape { idempotent: true, ..one }, ProduceShape::plain(size, 8)] {
                let rows = report.case(|r| fresh(&|| perf_tool::produce(env, shape, &perf_topic("rows", r))));
                let batches = ProduceShape { layout: "batches", ..shape };
                report.case(|r| fresh(&|| perf_tool::produce(env, batches, &perf_topic("batches", r)).against(rows)));
            }
            let mut replay_rows = 0.0;
            for layout in ["rows", "batches"] {
                let filled = format!("bench-fill-{size}-{layout}");
                perf_tool::produce(env, ProduceShape { layout, ..one }, &filled);
                let rate = report.case(|_| {
                    let row = env.round(Some(&filled), || perf_tool::consume(env, size, &filled));
                    let row = Row { method: format!("{}, {layout} layout", row.method), ..row };
                    if layout == "rows" {
                        row
                    } else {
                        row.against(replay_rows)
                    }
                });
                replay_rows = rate;
                env.reset(None);
            }
        }
        Only::Mixed => {
            let one_rate = report.case(|r| fresh(&|| perf_tool::produce(env, one, &perf_topic("p1", r))));
            let filled = format!("bench-fill-{size}");
            perf_tool::produce(env, one, &filled);
            let replay_alone = report.case(|_| env.round(Some(&filled), || perf_tool::consume(env, size, &filled)));
            report.cases(|r| {
                env.round(Some(&filled), || {
                    let (produced, replayed) = perf_tool::produce_beside_reads(env, size, &filled, &perf_topic("beside-reads", r));
                    vec![produced.against(one_rate), replayed.against(replay_alone)]
                })
            });
        }
    }
}
