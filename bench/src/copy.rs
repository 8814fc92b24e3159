//! The baselines: what Postgres does with the same rows without Kafka in the way, through
//! a client (`COPY ... STDIN/STDOUT` over libpq) and with no client at all (server-side
//! `COPY ... FROM/TO '<file>'`, Postgres's own limit on this machine).

use std::io::Read;
use std::time::{Instant, SystemTime};

use postgres::binary_copy::BinaryCopyInWriter;
use postgres::types::{ToSql, Type};

use crate::{Env, Row};

/// The value every benchmark message carries: `size` bytes.
pub fn value(size: usize, i: usize) -> Vec<u8> {
    (0..size).map(|b| b'a' + ((b + i) % 26) as u8).collect()
}

const COLUMNS: &str = "topic_id, partition, \"offset\", \"timestamp\", key, value, headers";

/// `COPY kafka.messages FROM STDIN (FORMAT binary)` of `env.messages` rows into a new
/// one-partition topic; returns the row and the topic's id.
fn copy_rows_in(env: &Env, size: usize, topic: &str) -> (Row, i32) {
    let topic_id = env.create_topic(topic, 1);
    let mut sql = env.sql();
    let now = SystemTime::now();
    let no_bytes: Option<&[u8]> = None;
    let started = Instant::now();
    let sink = sql.copy_in(&format!("COPY kafka.messages ({COLUMNS}) FROM STDIN (FORMAT binary)")).expect("copy in");
    let types = [Type::INT4, Type::INT4, Type::INT8, Type::TIMESTAMPTZ, Type::BYTEA, Type::BYTEA, Type::BYTEA];
    let mut writer = BinaryCopyInWriter::new(sink, &types);
    for i in 0..env.messages {
        let value = value(size, i);
        let row: [&(dyn ToSql + Sync); 7] = [&topic_id, &0i32, &(i as i64), &now, &no_bytes, &value.as_slice(), &no_bytes];
        writer.write(&row).expect("copy row");
    }
    writer.finish().expect("copy finish");
    let row = Row::new(
        "produce",
        format!("COPY FROM STDIN binary, {size} B"),
        env.messages,
        env.messages * size,
        started.elapsed().as_secs_f64(),
    );
    (row, topic_id)
}

/// Client-side `COPY FROM STDIN (FORMAT binary)` of `env.messages` rows.
pub fn copy_in(env: &Env, size: usize, round: usize) -> Row {
    copy_rows_in(env, size, &format!("bench-copy-{size}-r{round}")).0
}

/// Server-side `COPY kafka.messages FROM '<file>' (FORMAT binary)` of the same rows: the
/// file (in the data directory) is written first, untimed, with a new topic's id.
pub fn server_copy_in(env: &Env, size: usize, round: usize) -> Row {
    let source = source_topic(env, size);
    let topic_id = env.create_topic(&format!("bench-server-copy-{size}-r{round}"), 1);
    let mut sql = env.sql();
    let file = server_file(&mut sql, "pg_kafka_bench_in.bin");
    sql.batch_execute(&format!(
        "COPY (SELECT {topic_id}, partition, \"offset\", \"timestamp\", key, value, headers FROM kafka.messages \
         WHERE topic_id = {source}) TO '{file}' (FORMAT binary)"
    ))
    .expect("write the COPY file");
    let started = Instant::now();
    sql.batch_execute(&format!("COPY kafka.messages ({COLUMNS}) FROM '{file}' (FORMAT binary)")).expect("copy from file");
    let seconds = started.elapsed().as_secs_f64();
    Row::new("produce", format!("server-side COPY FROM file binary, {size} B"), env.messages, env.messages * size, seconds)
}

/// A file in the cluster's data directory, where the server may read and write.
fn server_file(sql: &mut postgres::Client, name: &str) -> String {
    let data_directory: String = sql.query_one("SELECT current_setting('data_directory')", &[]).expect("data_directory").get(0);
    format!("{data_directory}/{name}")
}

/// The topic the client-side COPY of round 0 filled: the rows the file baselines use.
fn source_topic(env: &Env, size: usize) -> i32 {
    let name = format!("bench-copy-{size}-r0");
    match env.sql().query_opt("SELECT id FROM kafka.topics WHERE name = $1", &[&name]).expect("topic") {
        Some(row) => row.get(0),
        None => copy_rows_in(env, size, &name).1,
    }
}

/// One autocommitted INSERT per row, like an application inserting messages one by one.
/// Runs on a slice of the messages (it is slow).
pub fn insert_loop(env: &Env, size: usize, round: usize) -> Row {
    let count = env.messages.min(20_000);
    let topic_id = env.create_topic(&format!("bench-insert-{size}-r{round}"), 1);
    let mut sql = env.sql();
    let insert = sql
        .prepare("INSERT INTO kafka.messages (topic_id, partition, \"offset\", \"timestamp\", value) VALUES ($1, 0, $2, now(), $3)")
        .expect("prepare");
    let started = Instant::now();
    for i in 0..count {
        sql.execute(&insert, &[&topic_id, &(i as i64), &value(size, i)]).expect("insert");
    }
    Row::new("produce", format!("INSERT per row (autocommit), {size} B"), count, count * size, started.elapsed().as_secs_f64())
}

/// What a consumer of partition 0 of `topic` reads, in offset order.
fn select_partition(env: &Env, topic: &str) -> String {
    let topic_id: i32 = env.sql().query_one("SELECT id FROM kafka.topics WHERE name = $1", &[&topic]).expect("topic").get(0);
    format!(
        "SELECT \"offset\", \"timestamp\", key, value, headers FROM kafka.messages \
         WHERE topic_id = {topic_id} AND partition = 0 ORDER BY \"offset\""
    )
}

/// Client-side `COPY (SELECT ...) TO STDOUT (FORMAT binary)` of partition 0 of `topic`.
pub fn copy_out(env: &Env, size: usize, topic: &str) -> Row {
    let select = select_partition(env, topic);
    let mut sql = env.sql();
    let started = Instant::now();
    let mut reader = sql.copy_out(&format!("COPY ({select}) TO STDOUT (FORMAT binary)")).expect("copy out");
    let mut buf = vec![0u8; 1 << 16];
    let mut total = 0;
    loop {
        let n = reader.read(&mut buf).expect("read copy");
        if n == 0 {
            break;
        }
        total += n;
    }
    Row::new("consume", format!("COPY (SELECT ...) TO STDOUT binary, {size} B"), env.messages, total, started.elapsed().as_secs_f64())
}

/// Server-side `COPY (SELECT ...) TO '<file>' (FORMAT binary)` of partition 0 of `topic`.
pub fn server_copy_out(env: &Env, size: usize, topic: &str) -> Row {
    let select = select_partition(env, topic);
    let mut sql = env.sql();
    let file = server_file(&mut sql, "pg_kafka_bench_out.bin");
    let started = Instant::now();
    sql.batch_execute(&format!("COPY ({select}) TO '{file}' (FORMAT binary)")).expect("copy to file");
    let seconds = started.elapsed().as_secs_f64();
    Row::new("consume", format!("server-side COPY (SELECT ...) TO file binary, {size} B"), env.messages, env.messages * size, seconds)
}
