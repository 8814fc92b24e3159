//! `make bench`: how close Kafka produce and consume through pg_kafka come to what Postgres
//! itself does with the same rows, on the same table of the same cluster.
//!
//! Every case runs `BENCH_ROUNDS` times (default 3) and reports the median round and the
//! spread. Baselines: server-side binary `COPY FROM`/`COPY TO` a file (Postgres with no
//! client), the same through libpq (`STDIN`/`STDOUT`), and a per-row INSERT loop.
//! Clients: librdkafka's own `rdkafka_performance` (acks=all, linger.ms=5, 1 MB batches:
//! the rows the targets of docs/performance.md are about) and rdkafka producers and
//! consumers from Rust (per-message latency from `send()`). Latency: acknowledgements at a
//! fixed rate, and produce-to-consume with a consumer in long poll. SASL_SSL beside
//! PLAINTEXT: what security costs.
//!
//! Environment (set by the Makefile): PGKAFKA_BENCH_BOOTSTRAP, PGKAFKA_BENCH_PG_PORT,
//! PGKAFKA_BENCH_SASL_SSL, PGKAFKA_BENCH_CA_FILE, PGKAFKA_BENCH_RDKAFKA_PERFORMANCE;
//! BENCH_MESSAGES (default 1,000,000), BENCH_ROUNDS (default 3).

mod consume;
mod copy;
mod latency;
mod perf_tool;
mod produce;
mod report;

use std::time::Duration;

use perf_tool::ProduceShape;
pub use report::{Report, Row};

pub struct Env {
    pub bootstrap: String,
    pub pg_port: u16,
    pub messages: usize,
    pub rounds: usize,
    /// The SASL_SSL listener, when `make bench` configured one.
    pub sasl_ssl: Option<SaslSsl>,
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
            sasl_ssl: std::env::var("PGKAFKA_BENCH_SASL_SSL")
                .ok()
                .map(|bootstrap| SaslSsl { bootstrap, ca_file: var("PGKAFKA_BENCH_CA_FILE") }),
        }
    }

    pub fn sql(&self) -> postgres::Client {
        let dsn = format!("host=127.0.0.1 port={} user=postgres dbname=postgres", self.pg_port);
        postgres::Client::connect(&dsn, postgres::NoTls).expect("connect to the bench cluster")
    }

    /// Creates a topic and returns its id.
    pub fn create_topic(&self, name: &str, partitions: i32) -> i32 {
        let mut sql = self.sql();
        sql.query_one("INSERT INTO kafka.topics (name, partitions) VALUES ($1, $2) RETURNING id", &[&name, &partitions])
            .expect("create topic")
            .get(0)
    }
}

fn main() {
    let env = Env::from_env();
    let mut report = Report::new(&env);
    for size in [100, 1024] {
        let copy_rate = report.case(|r| copy::copy_in(&env, size, r));
        let server_copy_rate = report.case(|r| copy::server_copy_in(&env, size, r));
        report.case(|r| copy::insert_loop(&env, size, r).against(copy_rate));

        // The targets: rdkafka_performance against Postgres's own limits and each other.
        let perf_topic = |what: &str, r: usize| format!("bench-perf-{size}-{what}-r{r}");
        let one = ProduceShape::plain(size, 1);
        let one_rate = report.case(|r| perf_tool::produce(&env, one, &perf_topic("p1", r)).against(server_copy_rate));
        let idempotent = ProduceShape { idempotent: true, ..one };
        report.case(|r| perf_tool::produce(&env, idempotent, &perf_topic("p1-idempotent", r)).against(one_rate));
        report.case(|r| perf_tool::produce(&env, ProduceShape::plain(size, 8), &perf_topic("p8", r)).against(one_rate));
        let one_in_flight = ProduceShape { one_in_flight: true, ..one };
        report.case(|r| perf_tool::produce(&env, one_in_flight, &perf_topic("p1-inflight1", r)).against(one_rate));

        // The same through the Rust client, with per-message latency from send().
        for (partitions, producers) in [(1, 1), (1, 4), (8, 1), (8, 4)] {
            report.case(|r| produce::throughput(&env, size, partitions, producers, false, r).against(copy_rate));
        }
        if env.sasl_ssl.is_some() {
            report.case(|r| produce::throughput_sasl_ssl(&env, size, r).expect("a SASL_SSL listener").against(copy_rate));
        }
        if size == 100 {
            for (partitions, producers) in [(1, 1), (8, 4)] {
                report.case(|r| produce::throughput(&env, size, partitions, producers, true, r).against(copy_rate));
            }
        }

        // Consume the rows of the first 1-partition rdkafka_performance run.
        let filled = perf_topic("p1", 0);
        let copy_out_rate = report.case(|_| copy::copy_out(&env, size, &filled));
        let server_copy_out_rate = report.case(|_| copy::server_copy_out(&env, size, &filled));
        let replay_alone = report.case(|_| perf_tool::consume(&env, size, &filled).against(server_copy_out_rate));
        report.case(|_| consume::throughput(&env, size, &filled).against(copy_out_rate));

        // Reads beside writes.
        if size == 100 {
            report.cases(|r| {
                let (produced, replayed) = perf_tool::produce_beside_reads(&env, size, &filled, &perf_topic("beside-reads", r));
                vec![produced.against(one_rate), replayed.against(replay_alone)]
            });
        }
    }
    let paced = ProduceShape { rate: Some(5000), ..ProduceShape::plain(100, 1) };
    report.case(|r| perf_tool::produce(&env, paced, &format!("bench-perf-paced-r{r}")));
    report.case(|r| latency::produce_at_fixed_rate(&env, 5000, Duration::from_secs(10), r));
    report.case(|r| latency::end_to_end(&env, 1000, Duration::from_secs(10), r));
    report.finish();
}
