//! `make bench`: how close Kafka produce and consume through pg_kafka come to what Postgres
//! itself does with the same rows, on the same table of the same cluster.
//!
//! Produce: rdkafka producers (acks=all, linger.ms=5) against `COPY kafka.messages FROM
//! STDIN (FORMAT binary)` of identical rows, and a per-row INSERT loop. Consume: an rdkafka
//! consumer from offset 0 against `COPY (SELECT ...) TO STDOUT` of the same rows. Latency:
//! produce acknowledgement at a fixed rate, and produce-to-consume with a consumer in long
//! poll. Produce over SASL_SSL (SCRAM-SHA-256 and TLS) beside PLAINTEXT: what security
//! costs. Environment: PGKAFKA_BENCH_BOOTSTRAP, PGKAFKA_BENCH_PG_PORT,
//! PGKAFKA_BENCH_SASL_SSL and PGKAFKA_BENCH_CA_FILE (set by the Makefile), BENCH_MESSAGES
//! (default 1,000,000).

mod consume;
mod copy;
mod latency;
mod produce;
mod report;

use std::time::Duration;

pub use report::{Report, Row};

pub struct Env {
    pub bootstrap: String,
    pub pg_port: u16,
    pub messages: usize,
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
        Env {
            bootstrap: var("PGKAFKA_BENCH_BOOTSTRAP"),
            pg_port: var("PGKAFKA_BENCH_PG_PORT").parse().expect("port"),
            messages: std::env::var("BENCH_MESSAGES").ok().and_then(|n| n.parse().ok()).unwrap_or(1_000_000),
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
        let copy_rate = copy::copy_in(&env, size, &mut report);
        copy::insert_loop(&env, size, copy_rate, &mut report);
        for (partitions, producers) in [(1, 1), (1, 4), (8, 1), (8, 4)] {
            produce::throughput(&env, size, partitions, producers, false, copy_rate, &mut report);
        }
        produce::throughput_sasl_ssl(&env, size, copy_rate, &mut report);
        if size == 100 {
            for (partitions, producers) in [(1, 1), (8, 4)] {
                produce::throughput(&env, size, partitions, producers, true, copy_rate, &mut report);
            }
        }
        let copy_out_rate = copy::copy_out(&env, size, &mut report);
        consume::throughput(&env, size, copy_out_rate, &mut report);
    }
    latency::produce_at_fixed_rate(&env, 5000, Duration::from_secs(10), &mut report);
    latency::end_to_end(&env, 1000, Duration::from_secs(10), &mut report);
    report.finish();
}
