//! `kafka.produce()` from SQL sessions: the outbox path. One message per transaction (an
//! application publishing the event of each business write), from one and from eight
//! sessions, and many messages per call (the array form), beside the per-row INSERT
//! baseline of copy.rs.

use std::time::Instant;

use crate::copy::value;
use crate::{Env, Row};

/// Messages per case: single-message transactions commit (and flush WAL) each time.
fn count(env: &Env) -> usize {
    env.messages.min(20_000)
}

/// `sessions` sessions, each running autocommitted `SELECT kafka.produce(...)` calls with
/// its own keys (spread over 8 partitions by Kafka's partitioner).
pub fn one_per_transaction(env: &Env, size: usize, sessions: usize, round: usize) -> Row {
    let topic = format!("bench-sql-{size}-s{sessions}-r{round}");
    env.create_topic(&topic, 8);
    let total = count(env);
    let started = Instant::now();
    std::thread::scope(|scope| {
        for session in 0..sessions {
            let topic = &topic;
            scope.spawn(move || {
                let mut sql = env.sql();
                let produce = sql.prepare("SELECT kafka.produce($1, $2::bytea, $3::bytea)").expect("prepare");
                for i in (session..total).step_by(sessions) {
                    let key = format!("key-{i}").into_bytes();
                    sql.query_one(&produce, &[topic, &key, &value(size, i)]).expect("kafka.produce");
                }
            });
        }
    });
    let seconds = started.elapsed().as_secs_f64();
    Row::new(
        "produce",
        format!("kafka.produce() from SQL, 1 per transaction, {sessions} session(s), {size} B"),
        total,
        total * size,
        seconds,
    )
}

/// One session, 1,000 messages per call of the array form, one call per transaction.
pub fn array_form(env: &Env, size: usize, round: usize) -> Row {
    let topic = format!("bench-sql-array-{size}-r{round}");
    env.create_topic(&topic, 1);
    let total = env.messages.min(200_000);
    let mut sql = env.sql();
    let produce = sql
        .prepare(
            "SELECT array_length(kafka.produce($1, array_agg(ROW(NULL, v, NULL, 0, NULL)::kafka.outgoing)), 1) \
             FROM unnest($2::bytea[]) AS v",
        )
        .expect("prepare");
    let started = Instant::now();
    for chunk in (0..total).collect::<Vec<_>>().chunks(1000) {
        let values: Vec<Vec<u8>> = chunk.iter().map(|&i| value(size, i)).collect();
        let stored: i32 = sql.query_one(&produce, &[&topic, &values]).expect("kafka.produce").get(0);
        assert_eq!(stored as usize, chunk.len());
    }
    let seconds = started.elapsed().as_secs_f64();
    Row::new("produce", format!("kafka.produce() from SQL, 1,000 per call, 1 session, {size} B"), total, total * size, seconds)
}
