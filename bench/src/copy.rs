//! The baselines: what Postgres does with the same rows without Kafka in the way.

use std::io::Read;
use std::time::{Instant, SystemTime};

use postgres::binary_copy::BinaryCopyInWriter;
use postgres::types::{ToSql, Type};

use crate::{Env, Report, Row};

/// The value every benchmark message carries: `size` bytes.
pub fn value(size: usize, i: usize) -> Vec<u8> {
    (0..size).map(|b| b'a' + ((b + i) % 26) as u8).collect()
}

/// `COPY kafka.messages FROM STDIN (FORMAT binary)` of `env.messages` rows; returns msgs/s.
pub fn copy_in(env: &Env, size: usize, report: &mut Report) -> f64 {
    let topic_id = env.create_topic(&format!("bench-copy-{size}"), 1);
    let mut sql = env.sql();
    let now = SystemTime::now();
    let no_bytes: Option<&[u8]> = None;
    let started = Instant::now();
    let sink = sql
        .copy_in("COPY kafka.messages (topic_id, partition, \"offset\", \"timestamp\", key, value, headers) FROM STDIN (FORMAT binary)")
        .expect("copy in");
    let types = [Type::INT4, Type::INT4, Type::INT8, Type::TIMESTAMPTZ, Type::BYTEA, Type::BYTEA, Type::BYTEA];
    let mut writer = BinaryCopyInWriter::new(sink, &types);
    for i in 0..env.messages {
        let value = value(size, i);
        let row: [&(dyn ToSql + Sync); 7] = [&topic_id, &0i32, &(i as i64), &now, &no_bytes, &value.as_slice(), &no_bytes];
        writer.write(&row).expect("copy row");
    }
    writer.finish().expect("copy finish");
    let seconds = started.elapsed().as_secs_f64();
    let row = Row {
        section: "produce",
        method: format!("COPY FROM STDIN binary, {size} B"),
        messages: env.messages,
        bytes: env.messages * size,
        seconds,
        baseline_rate: None,
        latency_ms: None,
    };
    let rate = row.rate();
    report.add(row);
    rate
}

/// One autocommitted INSERT per row, like an application inserting messages one by one.
/// Runs on a slice of the messages (it is slow) and reports the rate.
pub fn insert_loop(env: &Env, size: usize, copy_rate: f64, report: &mut Report) {
    let count = env.messages.min(20_000);
    let topic_id = env.create_topic(&format!("bench-insert-{size}"), 1);
    let mut sql = env.sql();
    let insert = sql
        .prepare("INSERT INTO kafka.messages (topic_id, partition, \"offset\", \"timestamp\", value) VALUES ($1, 0, $2, now(), $3)")
        .expect("prepare");
    let started = Instant::now();
    for i in 0..count {
        sql.execute(&insert, &[&topic_id, &(i as i64), &value(size, i)]).expect("insert");
    }
    report.add(Row {
        section: "produce",
        method: format!("INSERT per row (autocommit), {size} B"),
        messages: count,
        bytes: count * size,
        seconds: started.elapsed().as_secs_f64(),
        baseline_rate: Some(copy_rate),
        latency_ms: None,
    });
}

/// `COPY (SELECT ...) TO STDOUT (FORMAT binary)` of the rows the consume benchmark reads.
pub fn copy_out(env: &Env, size: usize, report: &mut Report) -> f64 {
    let topic = crate::produce::topic_name(size, 1, 1, false);
    let mut sql = env.sql();
    let topic_id: i32 = sql.query_one("SELECT id FROM kafka.topics WHERE name = $1", &[&topic]).expect("topic").get(0);
    let started = Instant::now();
    let mut reader = sql
        .copy_out(&format!(
            "COPY (SELECT \"offset\", \"timestamp\", key, value, headers FROM kafka.messages \
             WHERE topic_id = {topic_id} AND partition = 0 ORDER BY \"offset\") TO STDOUT (FORMAT binary)"
        ))
        .expect("copy out");
    let mut buf = vec![0u8; 1 << 16];
    let mut total = 0;
    loop {
        let n = reader.read(&mut buf).expect("read copy");
        if n == 0 {
            break;
        }
        total += n;
    }
    let row = Row {
        section: "consume",
        method: format!("COPY (SELECT ...) TO STDOUT binary, {size} B"),
        messages: env.messages,
        bytes: total,
        seconds: started.elapsed().as_secs_f64(),
        baseline_rate: None,
        latency_ms: None,
    };
    let rate = row.rate();
    report.add(row);
    rate
}
