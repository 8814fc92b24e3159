//! The results table: every case runs `BENCH_ROUNDS` times (3 by default) and is reported
//! as the median round, with the spread of the rounds, so one noisy round does not decide
//! a ratio. Printed at the end, and written to target/bench/results.md.

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
    /// Slowest and fastest round's msgs/s, once rounds were merged.
    pub spread: Option<(f64, f64)>,
}

impl Row {
    pub fn new(section: &'static str, method: String, messages: usize, bytes: usize, seconds: f64) -> Row {
        Row { section, method, messages, bytes, seconds, baseline_rate: None, latency_ms: None, spread: None }
    }

    pub fn rate(&self) -> f64 {
        self.messages as f64 / self.seconds
    }

    /// Compares this row with a baseline's msgs/s.
    pub fn against(mut self, baseline_rate: f64) -> Row {
        self.baseline_rate = Some(baseline_rate);
        self
    }

    pub fn with_latency(mut self, latency_ms: [f64; 3]) -> Row {
        self.latency_ms = Some(latency_ms);
        self
    }

    /// The median of several rounds of one case: the median rate's round, each latency
    /// percentile's median, and the slowest and fastest rates.
    fn median(mut rounds: Vec<Row>) -> Row {
        rounds.sort_by(|a, b| a.rate().total_cmp(&b.rate()));
        let spread = (rounds[0].rate(), rounds[rounds.len() - 1].rate());
        let latencies: Vec<[f64; 3]> = rounds.iter().filter_map(|r| r.latency_ms).collect();
        let middle = rounds.len() / 2;
        let mut row = rounds.swap_remove(middle);
        if !latencies.is_empty() {
            row.latency_ms = Some([0, 1, 2].map(|i| median(latencies.iter().map(|l| l[i]).collect())));
        }
        row.spread = (!rounds.is_empty()).then_some(spread);
        row
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

pub struct Report {
    header: String,
    rounds: usize,
    rows: Vec<Row>,
}

impl Report {
    pub fn new(env: &Env) -> Report {
        let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
        let header = format!(
            "pg_kafka bench: {} messages per case, {} round(s) per case (medians), {cpus} CPUs, bootstrap {}",
            env.messages, env.rounds, env.bootstrap
        );
        println!("{header}");
        Report { header, rounds: env.rounds.max(1), rows: Vec::new() }
    }

    /// Runs one case `BENCH_ROUNDS` times (`run` gets the round number, for fresh topic
    /// names) and adds the median; returns its msgs/s, to serve as another row's baseline.
    pub fn case(&mut self, mut run: impl FnMut(usize) -> Row) -> f64 {
        self.cases(|round| vec![run(round)])[0]
    }

    /// [`case`](Self::case) for a run that measures several things at once (a producer and
    /// a consumer beside it): one median row per thing.
    pub fn cases(&mut self, mut run: impl FnMut(usize) -> Vec<Row>) -> Vec<f64> {
        let mut per_thing: Vec<Vec<Row>> = Vec::new();
        for round in 0..self.rounds {
            for (index, row) in run(round).into_iter().enumerate() {
                println!("    round {}: {}", round + 1, line(&row));
                if per_thing.len() <= index {
                    per_thing.push(Vec::new());
                }
                per_thing[index].push(row);
            }
        }
        per_thing
            .into_iter()
            .map(|rounds| {
                let row = Row::median(rounds);
                println!("  {}", line(&row));
                let rate = row.rate();
                self.rows.push(row);
                rate
            })
            .collect()
    }

    /// Adds a case run once (too long to repeat): its row as measured.
    pub fn once(&mut self, row: Row) -> f64 {
        println!("  {}", line(&row));
        let rate = row.rate();
        self.rows.push(row);
        rate
    }

    /// Writes the table, with `footer` lines (peak memory) under it.
    pub fn finish(self, footer: &[String]) {
        let mut out = format!("{}\n\n", self.header);
        out.push_str("| section | method | msgs/s | MB/s | ratio | spread | p50 ms | p99 ms | p99.9 ms |\n");
        out.push_str("|---|---|---:|---:|---:|---:|---:|---:|---:|\n");
        for row in &self.rows {
            let ratio = row.baseline_rate.map_or("".into(), |b| format!("{:.2}x", row.rate() / b));
            let spread = row.spread.map_or("".into(), |(low, high)| format!("±{:.0}%", (high - low) / 2.0 / row.rate() * 100.0));
            let [p50, p99, p999] = row.latency_ms.map_or(["".into(), "".into(), "".into()], |l| l.map(|v| format!("{v:.1}")));
            let _ = writeln!(
                out,
                "| {} | {} | {:.0} | {:.1} | {ratio} | {spread} | {p50} | {p99} | {p999} |",
                row.section,
                row.method,
                row.rate(),
                row.bytes as f64 / row.seconds / 1e6
            );
        }
        for line in footer {
            let _ = writeln!(out, "\n{line}");
        }
        println!("\n{out}");
        let _ = std::fs::create_dir_all("target/bench");
        std::fs::write("target/bench/results.md", &out).expect("write target/bench/results.md");
        println!("written to target/bench/results.md");
    }
}

fn line(row: &Row) -> String {
    let mut s =
        format!("{:<8} {:<56} {:>10.0} msgs/s {:>7.1} MB/s", row.section, row.method, row.rate(), row.bytes as f64 / row.seconds / 1e6);
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
