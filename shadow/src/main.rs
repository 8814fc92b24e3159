//! `pg_kafka_shadow`: forwards every topic `kafka.shadow_topics` names to its external Kafka
//! cluster (or, for a mirrored topic, from it into pg_kafka), exactly once, and keeps
//! doing so across its own crashes, pg_kafka's and the external cluster's outages
//! (docs/shadow.md).
//!
//! Why a process of its own: forwarding waits on a network it does not control, and the
//! worker's one writer thread must never wait on anything but Postgres. As a Kafka client
//! of both sides it reads what any consumer reads (committed records, in order) and needs no
//! access to the worker's memory; rdkafka is never built into the extension.
//!
//! One thread per shadowed topic ([`forwarder`]); this thread re-reads the set every few
//! seconds, starts and stops forwarders as it changes, and records their progress in
//! `kafka.shadow_progress` ([`catalog`]); [`metrics`] serves the same figures to Prometheus;
//! [`offsets`] translates consumer groups' committed offsets to the other side.

mod catalog;
mod forwarder;
mod metrics;
mod offsets;
mod options;

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use catalog::{Catalog, ShadowSpec};
use metrics::Stats;
use options::Options;

/// Writes one line to stderr with the time, as a service manager's journal expects.
#[macro_export]
macro_rules! log_line {
    ($($arg:tt)*) => {{
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        eprintln!("{}.{:03} pg_kafka_shadow: {}", now.as_secs(), now.subsec_millis(), format!($($arg)*));
    }};
}

/// A forwarder thread and what it was started with.
struct Running {
    spec: ShadowSpec,
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

impl Running {
    fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.thread.join();
    }
}

fn main() -> ExitCode {
    let options = match Options::parse(std::env::args().skip(1)) {
        Ok(options) => options,
        Err(message) => {
            eprintln!("pg_kafka_shadow: {message}\n\n{}", options::USAGE);
            return ExitCode::from(2);
        }
    };
    let stats = Arc::new(Stats::default());
    if let Some(address) = &options.metrics {
        if let Err(error) = metrics::serve(address, Arc::clone(&stats)) {
            log_line!("cannot serve metrics on {address}: {error}");
            return ExitCode::FAILURE;
        }
    }
    log_line!("started: pg_kafka at {}, catalog at {}", options.source_bootstrap, options.redacted_postgres());
    supervise(&options, &stats)
}

/// Reads the shadowed set and reconciles the running forwarders with it, forever.
fn supervise(options: &Options, stats: &Arc<Stats>) -> ExitCode {
    let mut catalog = Catalog::new(&options.postgres);
    let mut running: BTreeMap<i32, Running> = BTreeMap::new();
    loop {
        match catalog.shadowed() {
            Ok(specs) => reconcile(&mut running, specs, options, stats),
            Err(error) => log_line!("cannot read kafka.shadow_topics (forwarders keep going): {error}"),
        }
        if let Err(error) = catalog.record_progress(&stats.unrecorded_progress()) {
            log_line!("cannot record progress in kafka.shadow_progress: {error}");
        }
        std::thread::sleep(options.refresh);
    }
}

/// Stops forwarders whose topic is no longer shadowed or whose settings changed, and starts
/// one for every shadowed topic without one.
fn reconcile(running: &mut BTreeMap<i32, Running>, specs: Vec<ShadowSpec>, options: &Options, stats: &Arc<Stats>) {
    let wanted: BTreeMap<i32, ShadowSpec> = specs.into_iter().map(|spec| (spec.topic_id, spec)).collect();
    let stale: Vec<i32> =
        running.iter().filter(|(id, run)| wanted.get(id) != Some(&run.spec) || run.thread.is_finished()).map(|(id, _)| *id).collect();
    for id in stale {
        if let Some(run) = running.remove(&id) {
            log_line!("stopping the forwarding of {}", run.spec.topic);
            let topic = run.spec.topic.clone();
            run.stop();
            stats.forget(&topic);
        }
    }
    for (id, spec) in wanted {
        if running.contains_key(&id) {
            continue;
        }
        match spec.direction {
            catalog::Direction::Export => log_line!("forwarding {} to {} at {}", spec.topic, spec.external_topic, spec.bootstrap_servers),
            catalog::Direction::Import => log_line!("mirroring {} at {} into {}", spec.external_topic, spec.bootstrap_servers, spec.topic),
        }
        let stop = Arc::new(AtomicBool::new(false));
        let forwarding = forwarder::Forwarding::new(spec.clone(), options, Arc::clone(stats), Arc::clone(&stop));
        let thread = std::thread::Builder::new()
            .name(format!("shadow-{}", spec.topic_id))
            .spawn(move || forwarding.run())
            .expect("a thread for a forwarder");
        running.insert(id, Running { spec, stop, thread });
    }
}
