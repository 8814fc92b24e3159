//! Broker figures for operators: requests, errors and latency per API, produce and fetch
//! volumes, group-commit sizes and times. Recorded from any thread with a lock held for a
//! few instructions; read as a [`Snapshot`] by the worker (for `kafka.broker_stats`) and by
//! the Prometheus endpoint.
//!
//! Percentiles cover a sliding window: two histograms, the current and the previous one,
//! swapped every [`WINDOW`]; a snapshot merges both, so it always covers between one and
//! two windows of the most recent activity. Counters count from the worker's start.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use kafka_protocol::messages::ApiKey;
use parking_lot::Mutex;

/// How long a percentile window lasts.
pub const WINDOW: Duration = Duration::from_secs(60);
/// The largest value a histogram records (larger ones are clamped): an hour in µs.
const HIGHEST: u64 = 3_600_000_000;

/// A histogram over the most recent one to two [`WINDOW`]s, at 2 significant digits (1%:
/// 26 KB a histogram; 3 digits would be 188 KB, copied at every look).
struct Window {
    current: Histogram<u64>,
    previous: Histogram<u64>,
    started: Instant,
    /// The percentiles as last computed, until something is recorded or the window turns.
    computed: Option<Option<[u64; 4]>>,
}

impl Window {
    fn new() -> Window {
        let empty = || Histogram::new_with_bounds(1, HIGHEST, 2).expect("valid histogram bounds");
        Window { current: empty(), previous: empty(), started: Instant::now(), computed: None }
    }

    fn record(&mut self, value: u64) {
        self.rotate_if_due();
        self.current.saturating_record(value.clamp(1, HIGHEST));
        self.computed = None;
    }

    fn rotate_if_due(&mut self) {
        if self.started.elapsed() >= WINDOW {
            std::mem::swap(&mut self.current, &mut self.previous);
            self.current.reset();
            self.started = Instant::now();
            self.computed = None;
        }
    }

    /// (p50, p99, p99.9, max) over both histograms; `None` when nothing was recorded.
    fn percentiles(&mut self) -> Option<[u64; 4]> {
        self.rotate_if_due();
        if let Some(computed) = self.computed {
            return computed;
        }
        let mut merged = self.previous.clone();
        let computed = merged
            .add(&self.current)
            .ok()
            .filter(|_| !merged.is_empty())
            .map(|_| [merged.value_at_quantile(0.5), merged.value_at_quantile(0.99), merged.value_at_quantile(0.999), merged.max()]);
        self.computed = Some(computed);
        computed
    }
}

#[derive(Default)]
struct ApiFigures {
    requests: u64,
    errors: u64,
    latency_us: Option<Window>,
}

#[derive(Default)]
struct Inner {
    apis: Mutex<BTreeMap<i16, ApiFigures>>,
    commits: Mutex<Option<CommitFigures>>,
    produced_messages: AtomicU64,
    produced_bytes: AtomicU64,
    fetched_messages: AtomicU64,
    fetched_bytes: AtomicU64,
    compacted_partitions: AtomicU64,
    compacted_records: AtomicU64,
    reads_ahead: AtomicU64,
    reads_ahead_used: AtomicU64,
    /// Where compaction stands on each compacted partition, as of the last pass.
    cleaner: Mutex<Vec<CleanerFigures>>,
    /// When each partition was last appended to (ms since the Unix epoch).
    appended: Mutex<std::collections::HashMap<(i32, i32), i64>>,
    /// The counters at the last rate sample, and the rates computed then.
    rates: Mutex<Option<RateSample>>,
}

struct RateSample {
    at: Instant,
    counters: [u64; 4],
    per_second: [f64; 4],
}

/// Where compaction stands on one compacted partition after a pass: Kafka's cleaner
/// figures (its `LogToClean`), per partition.
#[derive(Clone, Debug, PartialEq)]
pub struct CleanerFigures {
    pub topic: String,
    pub partition: i32,
    /// The dirty part's payload bytes below the head (what a pass would clean), and their
    /// share of those plus the clean part's (the ratio `min.cleanable.dirty.ratio` is
    /// compared with); `None` when the pass did not measure them (a round of cleaning
    /// going on, or the pass's time was up): the last measure stands.
    pub cleanable: Option<Cleanable>,
    /// When a pass last cleaned the partition (ms since the Unix epoch).
    pub last_pass_ms: Option<i64>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Cleanable {
    pub bytes: i64,
    pub dirty_ratio: f64,
}

impl Cleanable {
    /// Nothing to clean.
    pub const NONE: Cleanable = Cleanable { bytes: 0, dirty_ratio: 0.0 };
}

/// Rates are computed over at least this long.
const RATE_INTERVAL: Duration = Duration::from_secs(1);

struct CommitFigures {
    count: u64,
    rows: Window,
    micros: Window,
}

/// Where the broker's figures are recorded. Cheap to clone.
#[derive(Clone, Default)]
pub struct Metrics {
    inner: Arc<Inner>,
}

tokio::task_local! {
    /// Set by a handler that answered with an error code (see [`note_error`]).
    static ANSWERED_WITH_ERROR: Cell<bool>;
}

/// The request being handled is answered with an error (a refused partition, a denied
/// operation); counted in `errors_total` of its API. Outside a measured request, nothing.
pub fn note_error() {
    let _ = ANSWERED_WITH_ERROR.try_with(|failed| failed.set(true));
}

/// Runs a request's handling and says whether it noted an error.
pub async fn noting_errors<T>(handling: impl std::future::Future<Output = T>) -> (T, bool) {
    ANSWERED_WITH_ERROR
        .scope(Cell::new(false), async move {
            let outcome = handling.await;
            (outcome, ANSWERED_WITH_ERROR.with(Cell::get))
        })
        .await
}

/// One figure: a name, the API it is about (if any), a value.
#[derive(Clone, Debug, PartialEq)]
pub struct Metric {
    pub name: &'static str,
    pub api: Option<&'static str>,
    pub value: f64,
    pub help: &'static str,
}

pub type Snapshot = Vec<Metric>;

impl Metrics {
    /// A request of `api` took `elapsed`; `failed` when it was answered with an error or
    /// closed the connection.
    pub fn request(&self, api: ApiKey, elapsed: Duration, failed: bool) {
        let mut apis = self.inner.apis.lock();
        let figures = apis.entry(api as i16).or_default();
        figures.requests += 1;
        figures.errors += u64::from(failed);
        figures.latency_us.get_or_insert_with(Window::new).record(elapsed.as_micros() as u64);
    }

    /// A group commit stored `rows` messages in `elapsed`.
    pub fn group_commit(&self, rows: usize, elapsed: Duration) {
        let mut commits = self.inner.commits.lock();
        let figures = commits.get_or_insert_with(|| CommitFigures { count: 0, rows: Window::new(), micros: Window::new() });
        figures.count += 1;
        figures.rows.record(rows as u64);
        figures.micros.record(elapsed.as_micros() as u64);
    }

    /// Messages (and their payload bytes) acknowledged to producers.
    pub fn produced(&self, messages: usize, bytes: usize) {
        self.inner.produced_messages.fetch_add(messages as u64, Ordering::Relaxed);
        self.inner.produced_bytes.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// Messages (and their bytes) returned to consumers.
    pub fn fetched(&self, messages: usize, bytes: usize) {
        self.inner.fetched_messages.fetch_add(messages as u64, Ordering::Relaxed);
        self.inner.fetched_bytes.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// Fetch started a read ahead of a consumer's next Fetch (`broker::read_ahead`).
    pub fn read_ahead_started(&self) {
        self.inner.reads_ahead.fetch_add(1, Ordering::Relaxed);
    }

    /// A Fetch was answered with what was read ahead for it.
    pub fn read_ahead_used(&self) {
        self.inner.reads_ahead_used.fetch_add(1, Ordering::Relaxed);
    }

    /// A compaction pass cleaned `partitions` partitions, removing `records` records.
    pub fn compacted(&self, partitions: usize, records: i64) {
        self.inner.compacted_partitions.fetch_add(partitions as u64, Ordering::Relaxed);
        self.inner.compacted_records.fetch_add(records.max(0) as u64, Ordering::Relaxed);
    }

    /// A pass's view of every compacted partition: replaces the last one (partitions no
    /// longer compacted go), keeping a partition's last measure where this pass took none.
    pub fn cleaner(&self, mut figures: Vec<CleanerFigures>) {
        let mut kept = self.inner.cleaner.lock();
        for now in figures.iter_mut().filter(|f| f.cleanable.is_none()) {
            now.cleanable = kept.iter().find(|k| k.topic == now.topic && k.partition == now.partition).and_then(|k| k.cleanable);
        }
        *kept = figures;
    }

    /// Every compacted partition's cleaner figures, as of the last pass.
    pub fn cleaner_figures(&self) -> Vec<CleanerFigures> {
        self.inner.cleaner.lock().clone()
    }

    /// A partition was appended to (by the writer, or by a SQL session that committed).
    pub fn appended(&self, key: (i32, i32)) {
        let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
        self.inner.appended.lock().insert(key, now_ms);
    }

    /// When each partition was last appended to since the worker started.
    pub fn last_appends(&self) -> Vec<((i32, i32), i64)> {
        self.inner.appended.lock().iter().map(|(k, v)| (*k, *v)).collect()
    }

    /// Produce and fetch rates (messages and bytes per second) over the last second or more.
    fn rates(&self) -> [f64; 4] {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let i = &self.inner;
        let counters = [load(&i.produced_messages), load(&i.produced_bytes), load(&i.fetched_messages), load(&i.fetched_bytes)];
        let mut sample = i.rates.lock();
        match sample.as_mut() {
            None => {
                *sample = Some(RateSample { at: Instant::now(), counters, per_second: [0.0; 4] });
                [0.0; 4]
            }
            Some(last) if last.at.elapsed() >= RATE_INTERVAL => {
                let seconds = last.at.elapsed().as_secs_f64();
                for ((rate, now), before) in last.per_second.iter_mut().zip(counters).zip(last.counters) {
                    *rate = now.saturating_sub(before) as f64 / seconds;
                }
                last.at = Instant::now();
                last.counters = counters;
                last.per_second
            }
            Some(last) => last.per_second,
        }
    }

    /// Every recorded figure now (gauges are added by whoever owns them).
    pub fn snapshot(&self) -> Snapshot {
        let mut out = Vec::new();
        let rates = self.rates();
        for (name, value, help) in [
            ("produce_messages_per_second", rates[0], "messages acknowledged per second, over the last second or more"),
            ("produce_bytes_per_second", rates[1], "payload bytes acknowledged per second"),
            ("fetch_messages_per_second", rates[2], "messages returned to consumers per second"),
            ("fetch_bytes_per_second", rates[3], "record bytes returned to consumers per second"),
        ] {
            out.push(Metric { name, api: None, value, help });
        }
        let counter = |name, value: &AtomicU64, help| Metric { name, api: None, value: value.load(Ordering::Relaxed) as f64, help };
        out.push(counter("produce_messages_total", &self.inner.produced_messages, "messages acknowledged to producers"));
        out.push(counter("produce_bytes_total", &self.inner.produced_bytes, "payload bytes acknowledged to producers"));
        out.push(counter("fetch_messages_total", &self.inner.fetched_messages, "messages returned to consumers"));
        out.push(counter("fetch_bytes_total", &self.inner.fetched_bytes, "record bytes returned to consumers"));
        out.push(counter("fetch_reads_ahead_total", &self.inner.reads_ahead, "reads started ahead of a consumer's next Fetch"));
        out.push(counter("fetch_reads_ahead_used_total", &self.inner.reads_ahead_used, "Fetches answered with what was read ahead"));
        out.push(counter(
            "compacted_partitions_total",
            &self.inner.compacted_partitions,
            "partitions a compaction pass cleaned (cleanup.policy=compact)",
        ));
        out.push(counter("compaction_removed_records_total", &self.inner.compacted_records, "records compaction removed"));
        if let Some(commits) = self.inner.commits.lock().as_mut() {
            out.push(Metric { name: "group_commits_total", api: None, value: commits.count as f64, help: "group commits" });
            push_percentiles(&mut out, COMMIT_ROWS, None, commits.rows.percentiles(), 1.0, "messages per group commit");
            push_percentiles(&mut out, COMMIT_MS, None, commits.micros.percentiles(), 1000.0, "time of one group commit");
        }
        for (&key, figures) in self.inner.apis.lock().iter_mut() {
            let api = ApiKey::try_from(key).ok().map(api_name);
            out.push(Metric { name: "requests_total", api, value: figures.requests as f64, help: "requests answered" });
            out.push(Metric { name: "errors_total", api, value: figures.errors as f64, help: "requests answered with an error or closed" });
            let latency = figures.latency_us.as_mut().and_then(Window::percentiles);
            push_percentiles(&mut out, LATENCY_MS, api, latency, 1000.0, "time from request read to response ready");
        }
        out
    }
}

/// The names of a histogram's four figures: p50, p99, p99.9, max.
const COMMIT_ROWS: [&str; 4] = ["group_commit_rows_p50", "group_commit_rows_p99", "group_commit_rows_p999", "group_commit_rows_max"];
const COMMIT_MS: [&str; 4] = ["group_commit_ms_p50", "group_commit_ms_p99", "group_commit_ms_p999", "group_commit_ms_max"];
const LATENCY_MS: [&str; 4] = ["request_latency_ms_p50", "request_latency_ms_p99", "request_latency_ms_p999", "request_latency_ms_max"];

fn push_percentiles(
    out: &mut Snapshot,
    names: [&'static str; 4],
    api: Option<&'static str>,
    values: Option<[u64; 4]>,
    divisor: f64,
    help: &'static str,
) {
    let Some(values) = values else { return };
    for (name, value) in names.into_iter().zip(values) {
        out.push(Metric { name, api, value: value as f64 / divisor, help });
    }
}

/// The API's name as Kafka spells it ("Produce", "Fetch", ...).
pub fn api_name(api: ApiKey) -> &'static str {
    // kafka-protocol's Debug names are Kafka's names with a "Key" suffix on some versions.
    // Made once per API (a few dozen strings for the process's life), not per snapshot.
    API_NAMES.lock().entry(api as i16).or_insert_with(|| Box::leak(format!("{api:?}").trim_end_matches("Key").to_owned().into_boxed_str()))
}

static API_NAMES: Mutex<BTreeMap<i16, &'static str>> = Mutex::new(BTreeMap::new());

/// The snapshot and the cleaner's figures in Prometheus's text format (metric names
/// prefixed `pg_kafka_`; the cleaner's labelled by topic and partition).
pub fn prometheus_text(snapshot: &[Metric], cleaner: &[CleanerFigures]) -> String {
    let mut out = String::new();
    let mut described = std::collections::HashSet::new();
    for metric in snapshot {
        let name = format!("pg_kafka_{}", metric.name);
        if described.insert(metric.name) {
            let kind = if metric.name.ends_with("_total") { "counter" } else { "gauge" };
            out.push_str(&format!("# HELP {name} {}\n# TYPE {name} {kind}\n", metric.help));
        }
        match metric.api {
            Some(api) => out.push_str(&format!("{name}{{api=\"{api}\"}} {}\n", metric.value)),
            None => out.push_str(&format!("{name} {}\n", metric.value)),
        }
    }
    push_cleaner_text(&mut out, cleaner);
    out
}

/// Per compacted partition: cleanable bytes, dirty ratio, and the last pass's time.
fn push_cleaner_text(out: &mut String, cleaner: &[CleanerFigures]) {
    type Figure = fn(&CleanerFigures) -> Option<f64>;
    let gauges: [(&str, &str, Figure); 3] = [
        ("compaction_cleanable_bytes", "payload bytes compaction would clean (the dirty part below the head)", |f| {
            f.cleanable.map(|c| c.bytes as f64)
        }),
        ("compaction_dirty_ratio", "cleanable bytes over those and the compacted part's (min.cleanable.dirty.ratio's measure)", |f| {
            f.cleanable.map(|c| c.dirty_ratio)
        }),
        ("compaction_last_pass_timestamp_seconds", "when compaction last cleaned the partition (Unix seconds)", |f| {
            f.last_pass_ms.map(|ms| ms as f64 / 1000.0)
        }),
    ];
    for (name, help, figure) in gauges {
        let values: Vec<_> = cleaner.iter().filter_map(|f| figure(f).map(|v| (f, v))).collect();
        if values.is_empty() {
            continue;
        }
        out.push_str(&format!("# HELP pg_kafka_{name} {help}\n# TYPE pg_kafka_{name} gauge\n"));
        for (f, value) in values {
            out.push_str(&format!("pg_kafka_{name}{{topic=\"{}\",partition=\"{}\"}} {value}\n", label_value(&f.topic), f.partition));
        }
    }
}

/// A label value as Prometheus's text format escapes it (backslash, quote, newline).
fn label_value(text: &str) -> String {
    text.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(snapshot: &Snapshot, name: &str, api: Option<&str>) -> Option<f64> {
        snapshot.iter().find(|m| m.name == name && m.api == api).map(|m| m.value)
    }

    #[test]
    fn requests_errors_and_latencies_are_counted_per_api() {
        let metrics = Metrics::default();
        for ms in 1..=100 {
            metrics.request(ApiKey::Produce, Duration::from_millis(ms), ms == 100);
        }
        metrics.request(ApiKey::Fetch, Duration::from_millis(500), false);
        let snapshot = metrics.snapshot();
        assert_eq!(value(&snapshot, "requests_total", Some("Produce")), Some(100.0));
        assert_eq!(value(&snapshot, "errors_total", Some("Produce")), Some(1.0));
        let p50 = value(&snapshot, "request_latency_ms_p50", Some("Produce")).unwrap();
        assert!((49.0..=51.0).contains(&p50), "p50 {p50}");
        let p99 = value(&snapshot, "request_latency_ms_p99", Some("Produce")).unwrap();
        assert!((98.0..=101.0).contains(&p99), "p99 {p99}");
        // Looked at again with nothing new: the same figures (computed once).
        assert_eq!(metrics.snapshot().iter().filter(|m| m.api == Some("Produce")).count(), 6);
        metrics.request(ApiKey::Produce, Duration::from_secs(2), false);
        let max = value(&metrics.snapshot(), "request_latency_ms_max", Some("Produce")).unwrap();
        assert!((2000.0..2020.0).contains(&max), "a new request is seen: {max}");
        assert_eq!(value(&snapshot, "requests_total", Some("Fetch")), Some(1.0));
    }

    #[test]
    fn group_commits_and_volumes_add_up() {
        let metrics = Metrics::default();
        metrics.group_commit(1000, Duration::from_millis(4));
        metrics.group_commit(10, Duration::from_millis(2));
        metrics.produced(1010, 101_000);
        metrics.fetched(7, 700);
        let snapshot = metrics.snapshot();
        assert_eq!(value(&snapshot, "group_commits_total", None), Some(2.0));
        let max_rows = value(&snapshot, "group_commit_rows_max", None).unwrap();
        assert!((1000.0..1010.0).contains(&max_rows), "{max_rows} (2 significant digits)");
        assert_eq!(value(&snapshot, "produce_messages_total", None), Some(1010.0));
        assert_eq!(value(&snapshot, "fetch_bytes_total", None), Some(700.0));
        let text = prometheus_text(&snapshot, &[]);
        assert!(text.contains("# TYPE pg_kafka_group_commits_total counter\npg_kafka_group_commits_total 2\n"), "{text}");
        assert!(text.contains("pg_kafka_group_commit_ms_max 4\n") || text.contains("pg_kafka_group_commit_ms_max 4.0"), "{text}");
    }

    #[test]
    fn api_names_are_kafkas() {
        assert_eq!(api_name(ApiKey::Produce), "Produce");
        assert_eq!(api_name(ApiKey::ApiVersions), "ApiVersions");
        let metrics = Metrics::default();
        metrics.request(ApiKey::Metadata, Duration::from_millis(1), false);
        assert!(prometheus_text(&metrics.snapshot(), &[]).contains("pg_kafka_requests_total{api=\"Metadata\"} 1\n"));
    }

    #[test]
    fn cleaner_figures_are_labelled_per_partition_and_a_pass_without_a_measure_keeps_the_last() {
        let metrics = Metrics::default();
        let figures =
            |topic: &str, partition, cleanable, last_pass_ms| CleanerFigures { topic: topic.into(), partition, cleanable, last_pass_ms };
        let measured = Some(Cleanable { bytes: 300, dirty_ratio: 0.75 });
        metrics.cleaner(vec![figures("a", 0, measured, Some(1_700_000_000_500)), figures("gone", 1, measured, None)]);
        // The next pass took no measure of "a" (a round going on) and "gone" is no longer compacted.
        metrics.cleaner(vec![figures("a", 0, None, Some(1_700_000_001_000)), figures("we\"ird\\", 2, None, None)]);
        assert_eq!(metrics.cleaner_figures()[0].cleanable, measured);
        let text = prometheus_text(&[], &metrics.cleaner_figures());
        assert!(
            text.contains(
                "# TYPE pg_kafka_compaction_dirty_ratio gauge\npg_kafka_compaction_dirty_ratio{topic=\"a\",partition=\"0\"} 0.75\n"
            ),
            "{text}"
        );
        assert!(text.contains("pg_kafka_compaction_cleanable_bytes{topic=\"a\",partition=\"0\"} 300\n"), "{text}");
        assert!(text.contains("pg_kafka_compaction_last_pass_timestamp_seconds{topic=\"a\",partition=\"0\"} 1700000001\n"), "{text}");
        assert!(!text.contains("gone"), "{text}");
        assert!(!text.contains("topic=\"we"), "a partition with no figure has no line: {text}");
        let odd = prometheus_text(&[], &[figures("we\"ird\\\n", 2, measured, None)]);
        assert!(odd.contains("{topic=\"we\\\"ird\\\\\\n\",partition=\"2\"} 300\n"), "{odd}");
    }
}
