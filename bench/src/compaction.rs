//! Compaction under load: one partition of BENCH_COMPACTION_MESSAGES (default 10M)
//! messages of 100 B over 100,000 keys, filled server-side an hour in the past, then made
//! `cleanup.policy=compact` (head: the last record). Reported: the records compaction
//! removed per second until it reached the end, and rdkafka_performance producing to
//! another topic three times while it runs (their sum) against the same produce alone.
//! Compaction runs in the retention pass (every `pg_kafka.retention_check_interval_ms`,
//! 5 s in `make bench`), a million dirty records a pass at most.

use std::time::{Duration, Instant};

use crate::perf_tool::{self, ProduceShape};
use crate::{Env, Report, Row};

const KEYS: i64 = 100_000;

pub fn run(env: &Env, report: &mut Report) {
    let messages: i64 = std::env::var("BENCH_COMPACTION_MESSAGES").ok().and_then(|n| n.parse().ok()).unwrap_or(10_000_000);
    let shape = ProduceShape::plain(100, 1);
    let alone = report.case(|r| env.round(None, || perf_tool::produce(env, shape, &format!("bench-compaction-alone-r{r}"))));
    report.cases(|r| {
        env.round(None, || {
            let topic_id = fill(env, &format!("bench-compacted-r{r}"), messages);
            let started = Instant::now();
            compact(env, topic_id);
            let beside = produce_beside(env, shape, r);
            let removed = wait_until_compacted(env, topic_id, messages);
            let seconds = started.elapsed().as_secs_f64();
            let label = format!("compaction of {}M messages over {}k keys: records removed", messages / 1_000_000, KEYS / 1000);
            let method = format!("rdkafka_performance produce beside compaction ({})", shape.label());
            vec![Row::new("compaction", label, removed as usize, removed as usize * 100, seconds), Row { method, ..beside }.against(alone)]
        })
    });
}

/// Produce beside compaction at three moments of it (5, 20 and 35 s after it began: the
/// first pass starts within the 5 s interval), as one row. One run of a couple of seconds
/// lands on one phase of a pass (reading the dirty part, cleaning, resting) and measures
/// that phase only.
fn produce_beside(env: &Env, shape: ProduceShape, round: usize) -> Row {
    let mut runs = Vec::new();
    for run in 0..3 {
        std::thread::sleep(Duration::from_secs(if run == 0 { 5 } else { 10 }));
        runs.push(perf_tool::produce(env, shape, &format!("bench-compaction-beside-r{round}-{run}")));
    }
    let worst = |at: usize| runs.iter().filter_map(|run| run.latency_ms.map(|l| l[at])).reduce(f64::max);
    let latency_ms = match (worst(0), worst(1), worst(2)) {
        (Some(p50), Some(p99), Some(p999)) => Some([p50, p99, p999]),
        _ => None,
    };
    Row {
        messages: runs.iter().map(|run| run.messages).sum(),
        bytes: runs.iter().map(|run| run.bytes).sum(),
        seconds: runs.iter().map(|run| run.seconds).sum(),
        latency_ms,
        ..runs.swap_remove(0)
    }
}

/// A topic of one partition holding `messages` keyed rows, an hour old: its id.
fn fill(env: &Env, topic: &str, messages: i64) -> i32 {
    let topic_id = env.create_topic(topic, 1);
    let insert = "INSERT INTO kafka.messages (topic_id, partition, \"offset\", \"timestamp\", key, value) \
                  SELECT $1, 0, g, now() - interval '1 hour', convert_to('key-' || (g % $3::bigint), 'UTF8'), convert_to(repeat('v', 100), 'UTF8') \
                  FROM generate_series(0::bigint, $2::bigint - 1) AS g";
    env.sql().execute(insert, &[&topic_id, &messages, &KEYS]).expect("fill the compacted topic");
    topic_id
}

fn compact(env: &Env, topic_id: i32) {
    let configs = "INSERT INTO kafka.topic_configs (topic_id, name, value) \
                   VALUES ($1, 'cleanup.policy', 'compact'), ($1, 'segment.ms', '1')";
    env.sql().execute(configs, &[&topic_id]).expect("make the topic compacted");
}

/// Waits until compaction reached the last record; the records it removed.
fn wait_until_compacted(env: &Env, topic_id: i32, messages: i64) -> i64 {
    let mut sql = env.sql();
    let deadline = Instant::now() + Duration::from_secs(3600);
    loop {
        let row = sql
            .query_opt("SELECT cleaned_to, removed_total FROM kafka.partition_cleaning WHERE topic_id = $1 AND partition = 0", &[&topic_id])
            .expect("read kafka.partition_cleaning");
        if let Some(row) = row.filter(|r| r.get::<_, i64>(0) >= messages - 1) {
            return row.get(1);
        }
        assert!(Instant::now() < deadline, "compaction did not reach the end within an hour");
        std::thread::sleep(Duration::from_millis(200));
    }
}
