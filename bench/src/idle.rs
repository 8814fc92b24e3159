//! Many consumers waiting in long poll at the end of a topic, as a fleet of idle services
//! does: what the worker spends on them. Raw Fetch v4 requests (no client library holds
//! 5,000 connections cheaply), each waiting up to 30 s for a byte; the worker's CPU time
//! is read from /proc while they wait. An empty poll should touch only memory.

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::Env;

/// How long the CPU time is measured, per round.
const WINDOW: Duration = Duration::from_secs(10);

/// A Fetch v4 of partition 0 of `topic` from `offset`, waiting up to 30 s for one byte.
fn long_poll_request(correlation_id: i32, topic: &str, offset: i64) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&1i16.to_be_bytes()); // api key: Fetch
    body.extend_from_slice(&4i16.to_be_bytes()); // version
    body.extend_from_slice(&correlation_id.to_be_bytes());
    body.extend_from_slice(&(-1i16).to_be_bytes()); // client id: null
    body.extend_from_slice(&(-1i32).to_be_bytes()); // replica id
    body.extend_from_slice(&30_000i32.to_be_bytes()); // max wait ms
    body.extend_from_slice(&1i32.to_be_bytes()); // min bytes
    body.extend_from_slice(&(1i32 << 20).to_be_bytes()); // max bytes
    body.push(0); // isolation level
    body.extend_from_slice(&1i32.to_be_bytes()); // one topic
    body.extend_from_slice(&(topic.len() as i16).to_be_bytes());
    body.extend_from_slice(topic.as_bytes());
    body.extend_from_slice(&1i32.to_be_bytes()); // one partition
    body.extend_from_slice(&0i32.to_be_bytes());
    body.extend_from_slice(&offset.to_be_bytes());
    body.extend_from_slice(&(1i32 << 20).to_be_bytes());
    let mut frame = (body.len() as i32).to_be_bytes().to_vec();
    frame.extend_from_slice(&body);
    frame
}

/// The worker's user + system CPU time so far, from /proc.
fn worker_cpu(pid: i32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces): state is field 3, utime 14.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<u64> = after.split_whitespace().skip(11).take(2).filter_map(|f| f.parse().ok()).collect();
    let ticks: u64 = fields.iter().sum();
    Duration::from_millis(ticks * 1000 / clock_ticks_per_second())
}

fn clock_ticks_per_second() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100)
}

/// `consumers` connections each waiting in a Fetch; returns the worker's CPU over
/// [`WINDOW`] as a share of one core, for each of `rounds` rounds.
fn cpu_while_waiting(env: &Env, consumers: usize, rounds: usize) -> Vec<f64> {
    let topic = "bench-idle";
    env.create_topic(topic, 1);
    let pid: i32 = env.sql().query_one("SELECT pid FROM pg_stat_activity WHERE backend_type = 'pg_kafka'", &[]).expect("worker pid").get(0);
    let mut shares = Vec::new();
    for _ in 0..rounds {
        let mut waiting = Vec::with_capacity(consumers);
        for i in 0..consumers {
            let mut stream = TcpStream::connect(&env.bootstrap).expect("connect (is pg_kafka.max_connections high enough?)");
            stream.write_all(&long_poll_request(i as i32, topic, 0)).expect("send the Fetch");
            waiting.push(stream);
        }
        // Let the connections settle into their long polls first.
        std::thread::sleep(Duration::from_secs(2));
        let (before, started) = (worker_cpu(pid), Instant::now());
        std::thread::sleep(WINDOW);
        let used = worker_cpu(pid).saturating_sub(before);
        shares.push(used.as_secs_f64() / started.elapsed().as_secs_f64() * 100.0);
        drop(waiting);
        std::thread::sleep(Duration::from_secs(1));
    }
    shares
}

/// One report line: the median share of a core, and each round's.
pub fn long_polls(env: &Env, consumers: usize) -> String {
    let mut shares = cpu_while_waiting(env, consumers, env.rounds.max(1));
    let each = shares.iter().map(|s| format!("{s:.2}%")).collect::<Vec<_>>().join(", ");
    shares.sort_by(f64::total_cmp);
    let median = shares[shares.len() / 2];
    format!("{consumers} idle consumers in long poll (Fetch, 30 s max wait): worker CPU {median:.2}% of one core (median; rounds: {each})")
}
