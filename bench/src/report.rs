//! The results table: printed at the end, and written to target/bench/results.md.

use std::fmt::Write as _;

use crate::Env;

pub struct Row {
    pub section: &'static str,
    pub method: String,
    pub messages: usize,
    pub bytes: usize,
    pub seconds: f64,
    /// msgs/s of the baseline this row is compared with.
    pub baseline_rate: Option<f64>,
    /// Latency percentiles p50, p99, p99.9 in ms.
    pub latency_ms: Option<[f64; 3]>,
}

impl Row {
    pub fn rate(&self) -> f64 {
        self.messages as f64 / self.seconds
    }
}

pub struct Report {
    header: String,
    rows: Vec<Row>,
}

impl Report {
    pub fn new(env: &Env) -> Report {
        let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
        let header = format!("pg_kafka bench: {} messages per run, {cpus} CPUs, bootstrap {}", env.messages, env.bootstrap);
        println!("{header}");
        Report { header, rows: Vec::new() }
    }

    pub fn add(&mut self, row: Row) {
        println!("  {}", line(&row));
        self.rows.push(row);
    }

    pub fn finish(self) {
        let mut out = format!("{}\n\n", self.header);
        out.push_str("| section | method | msgs/s | MB/s | ratio | p50 ms | p99 ms | p99.9 ms |\n");
        out.push_str("|---|---|---:|---:|---:|---:|---:|---:|\n");
        for row in &self.rows {
            let ratio = row.baseline_rate.map_or("".into(), |b| format!("{:.2}x", row.rate() / b));
            let [p50, p99, p999] = row.latency_ms.map_or(["".into(), "".into(), "".into()], |l| l.map(|v| format!("{v:.1}")));
            let _ = writeln!(
                out,
                "| {} | {} | {:.0} | {:.1} | {ratio} | {p50} | {p99} | {p999} |",
                row.section,
                row.method,
                row.rate(),
                row.bytes as f64 / row.seconds / 1e6
            );
        }
        println!("\n{out}");
        let _ = std::fs::create_dir_all("target/bench");
        std::fs::write("target/bench/results.md", &out).expect("write target/bench/results.md");
        println!("written to target/bench/results.md");
    }
}

fn line(row: &Row) -> String {
    let mut s =
        format!("{:<8} {:<44} {:>10.0} msgs/s {:>7.1} MB/s", row.section, row.method, row.rate(), row.bytes as f64 / row.seconds / 1e6);
    if let Some(b) = row.baseline_rate {
        let _ = write!(s, "  {:.2}x", row.rate() / b);
    }
    if let Some([p50, p99, p999]) = row.latency_ms {
        let _ = write!(s, "  p50 {p50:.1} ms  p99 {p99:.1} ms  p99.9 {p999:.1} ms");
    }
    s
}

/// p50/p99/p99.9 of a histogram of microseconds, in ms.
pub fn percentiles_ms(h: &hdrhistogram::Histogram<u64>) -> [f64; 3] {
    [50.0, 99.0, 99.9].map(|q| h.value_at_quantile(q / 100.0) as f64 / 1000.0)
}
