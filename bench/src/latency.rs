//! Latency at a fixed, moderate rate: produce acknowledgements, and produce-to-consume.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;
use rdkafka::message::{Message, Timestamp};
use rdkafka::producer::Producer;
use rdkafka::Offset;

use crate::copy::value;
use crate::produce::{producer, send, Acks};
use crate::report::percentiles_ms;
use crate::{Env, Row};

/// Sends `rate` messages a second for `duration`, in 1 ms ticks.
fn paced(duration: Duration, rate: usize, mut send_one: impl FnMut(usize)) -> usize {
    let started = Instant::now();
    let mut sent = 0;
    while started.elapsed() < duration {
        let due = (started.elapsed().as_secs_f64() * rate as f64) as usize;
        while sent < due {
            send_one(sent);
            sent += 1;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    sent
}

pub fn produce_at_fixed_rate(env: &Env, rate: usize, duration: Duration, round: usize) -> Row {
    let topic = format!("bench-latency-{rate}-r{round}");
    env.create_topic(&topic, 1);
    let acks = Acks::new();
    let producer = producer(env, acks.clone(), "5", false);
    let payload = value(100, 0);
    let sent = paced(duration, rate, |_| send(&producer, &topic, 0, &payload));
    producer.flush(Duration::from_secs(60)).expect("flush");
    assert_eq!(acks.ok.load(Ordering::Relaxed), sent);
    let method = format!("produce ack at {rate} msg/s, 100 B, linger.ms=5");
    let latency = percentiles_ms(&acks.latency_us.lock().unwrap());
    Row::new("latency", method, sent, sent * 100, duration.as_secs_f64()).with_latency(latency)
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64
}

/// A consumer waits in long poll at the end of the log; each message's CreateTime is
/// compared with the time it is handed to the application.
pub fn end_to_end(env: &Env, rate: usize, duration: Duration, round: usize) -> Row {
    let topic = format!("bench-e2e-{rate}-r{round}");
    env.create_topic(&topic, 1);
    let consumer = crate::consume::consumer(env, &topic, 1, Offset::Beginning, &[("fetch.wait.max.ms", "500")]);
    let reader = std::thread::spawn(move || {
        let mut latency = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3).unwrap();
        let mut idle_since = Instant::now();
        while idle_since.elapsed() < Duration::from_secs(5) {
            if let Some(Ok(message)) = consumer.poll(Duration::from_millis(100)) {
                if let Timestamp::CreateTime(created) = message.timestamp() {
                    let _ = latency.record(((now_ms() - created).max(0) as u64 * 1000).max(1));
                }
                idle_since = Instant::now();
            }
        }
        latency
    });
    std::thread::sleep(Duration::from_secs(1)); // the consumer is assigned and polling
    let acks = Acks::new();
    let producer = producer(env, acks.clone(), "0", false);
    let payload = value(100, 0);
    let sent = paced(duration, rate, |_| send(&producer, &topic, 0, &payload));
    producer.flush(Duration::from_secs(60)).expect("flush");
    let latency = reader.join().expect("consumer thread");
    assert_eq!(latency.len() as usize, sent, "every message consumed");
    let method = format!("produce to consume at {rate} msg/s, 100 B, linger.ms=0");
    Row::new("latency", method, sent, sent * 100, duration.as_secs_f64()).with_latency(percentiles_ms(&latency))
}
