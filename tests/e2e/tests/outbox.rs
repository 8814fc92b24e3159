//! Produce from SQL (`kafka.produce()`), read with SQL (`kafka.topic_messages`,
//! `kafka.consume()`): transactions decide what Kafka consumers see, offsets stay
//! gap-free and in commit order beside Kafka producers, keys land where Kafka's
//! partitioner puts them, and the README's outbox example runs as written.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{ApiKey, FetchRequest, FetchResponse, TopicName};
use pg_kafka_e2e::consume::{consume, consumer, receive};
use pg_kafka_e2e::produce::{produce, Message};
use pg_kafka_e2e::*;
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use rdkafka::{ClientConfig, Offset};

fn value(text: &str) -> Message {
    Message { value: text.as_bytes().to_vec(), ..Message::default() }
}

/// Runs a script as psql runs a file: statement by statement, as a user typing it would
/// (one `-c` string would be one implicit transaction that a later BEGIN swallows).
fn psql_script(sql: &str) {
    use std::io::Write;
    let mut child = std::process::Command::new("psql")
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-U", "postgres", "-d", "postgres", "-f", "-"])
        .args(["-p", &std::env::var("PGKAFKA_E2E_PG_PORT").unwrap()])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("psql runs");
    child.stdin.take().unwrap().write_all(sql.as_bytes()).unwrap();
    assert!(child.wait().unwrap().success(), "the script failed");
}

/// Values of partition 0 of `topic` in offset order, as SQL sees them.
fn stored_values(topic: &str) -> Vec<(i64, String)> {
    psql(&format!(
        "SELECT \"offset\" || '|' || value_text FROM kafka.topic_messages WHERE topic = '{topic}' AND partition = 0 ORDER BY \"offset\""
    ))
    .lines()
    .map(|line| {
        let (offset, value) = line.split_once('|').unwrap();
        (offset.parse().unwrap(), value.to_owned())
    })
    .collect()
}

#[test]
fn a_rollback_publishes_nothing_and_commits_are_consumed_in_order() {
    let topic = "e2e-outbox-tx";
    create_topic(topic, 1);
    psql(&format!("BEGIN; SELECT kafka.produce('{topic}', 'k', 'gone-1'); SELECT kafka.produce('{topic}', 'k', 'gone-2'); ROLLBACK;"));
    let offsets = psql(&format!(
        "BEGIN; SELECT kafka.produce('{topic}', NULL, 'a', NULL, 0); SELECT kafka.produce('{topic}', NULL, 'b', NULL, 0); \
         SELECT kafka.produce('{topic}', NULL, 'c', NULL, 0); COMMIT;"
    ));
    assert_eq!(offsets, "0\n1\n2", "a rolled-back transaction leaves no gap");
    // A savepoint rolled back takes its message (and its offset) with it.
    psql(&format!(
        "BEGIN; SELECT kafka.produce('{topic}', NULL, 'd', NULL, 0); SAVEPOINT s; SELECT kafka.produce('{topic}', NULL, 'x', NULL, 0); \
         ROLLBACK TO s; SELECT kafka.produce('{topic}', NULL, 'e', NULL, 0); COMMIT;"
    ));
    let values: Vec<String> = consume(topic, &[0], Offset::Beginning, 5)
        .into_iter()
        .map(|m| format!("{}={}", m.offset, String::from_utf8(m.value).unwrap()))
        .collect();
    assert_eq!(values, ["0=a", "1=b", "2=c", "3=d", "4=e"]);
    assert_eq!(assert_gap_free(topic), 5);

    // A REPEATABLE READ transaction whose snapshot predates a Kafka producer's message
    // still continues after it.
    let mut session = HeldSession::open();
    session.run("BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT count(*) FROM kafka.messages;");
    assert_eq!(produce(topic, &[], [value("from kafka")]), (1, 0));
    session.run(&format!("SELECT kafka.produce('{topic}', NULL, 'from repeatable read', NULL, 0); COMMIT;"));
    session.assert_survived();
    assert_eq!(assert_gap_free(topic), 7);
    assert_eq!(stored_values(topic)[5..], [(5, "from kafka".to_owned()), (6, "from repeatable read".to_owned())]);
}

/// A Fetch of partition 0 of `topic` from `offset`, waiting up to 20 s.
fn long_poll(topic: &str, offset: i64) -> FetchRequest {
    let partition = FetchPartition::default().with_partition(0).with_fetch_offset(offset).with_partition_max_bytes(1 << 20);
    let topic = FetchTopic::default().with_topic(TopicName(topic.to_owned().into())).with_partitions(vec![partition]);
    FetchRequest::default().with_max_wait_ms(20_000).with_min_bytes(1).with_max_bytes(1 << 20).with_topics(vec![topic])
}

#[test]
fn a_commit_wakes_waiting_long_polls_at_once() {
    let topic = "e2e-outbox-wake";
    create_topic(topic, 1);
    // The periodic refresh (pg_kafka.refresh_interval_ms, 500 ms) would find the rows too,
    // but not within 150 ms five times in a row.
    let mut latencies = Vec::new();
    for offset in 0..5 {
        let mut client = RawClient::connect();
        client.send_message(ApiKey::Fetch, 11, &long_poll(topic, offset));
        std::thread::sleep(Duration::from_millis(200));
        psql(&format!("SELECT kafka.produce('{topic}', NULL, 'wake {offset}')"));
        let committed = Instant::now();
        let response: FetchResponse = client.read_response(ApiKey::Fetch, 11);
        latencies.push(committed.elapsed());
        let records = response.responses[0].partitions[0].records.clone().unwrap_or_default();
        assert!(!records.is_empty(), "the committed message came back");
    }
    println!("commit → long poll answered: {latencies:?}");
    assert!(latencies.iter().all(|l| *l < Duration::from_millis(150)), "woken at commit, not by the refresh: {latencies:?}");
}

/// Runs one SQL session's transactions: session `s`, transaction `t` produces messages
/// `s{s}-t{t}-m{m}` to partition 0, then commits or rolls back as `commits` says. Returns
/// the messages it committed, per transaction.
fn sql_session(topic: &str, s: usize, commits: &[bool]) -> Vec<Vec<String>> {
    let mut script = String::new();
    let mut committed = Vec::new();
    for (t, &commit) in commits.iter().enumerate() {
        let messages: Vec<String> = (0..1 + (s + t) % 4).map(|m| format!("s{s}-t{t}-m{m}")).collect();
        script.push_str("BEGIN;");
        for (i, message) in messages.iter().enumerate() {
            script.push_str(&format!("SELECT kafka.produce('{topic}', NULL, '{message}', NULL, 0);"));
            if i == 0 {
                // Hold the partition a little while Kafka producers wait.
                script.push_str(&format!("SELECT pg_sleep(0.00{});", (s * 7 + t * 3) % 10));
            }
        }
        script.push_str(if commit { "COMMIT;" } else { "ROLLBACK;" });
        if commit {
            committed.push(messages);
        }
    }
    psql(&script);
    committed
}

#[test]
fn sql_sessions_and_kafka_producers_on_one_partition_keep_offsets_gap_free_and_in_commit_order() {
    let topic = "e2e-outbox-concurrent";
    create_topic(topic, 1);
    let kafka_messages = 3000;
    let done = Arc::new(AtomicBool::new(false));
    // A consumer tails the partition while it is written: it must see every offset once,
    // in order (it may never read past a transaction that is not committed yet).
    let tail = {
        let done = done.clone();
        std::thread::spawn(move || {
            let tailing = consumer(topic, &[0], Offset::Beginning, &[("fetch.wait.max.ms", "50")]);
            let mut seen = Vec::new();
            let deadline = Instant::now() + Duration::from_secs(120);
            while Instant::now() < deadline {
                let got = receive(&tailing, usize::MAX, Duration::from_millis(300));
                let finished = got.is_empty() && done.load(Ordering::SeqCst);
                seen.extend(got.into_iter().map(|m| (m.offset, String::from_utf8(m.value).unwrap())));
                if finished {
                    break;
                }
            }
            seen
        })
    };
    // Paced over the seconds the SQL sessions run, so that both interleave.
    let kafka = std::thread::spawn(move || {
        let messages = (0..kafka_messages).map(|i| {
            std::thread::sleep(Duration::from_millis(1));
            value(&format!("k{i}"))
        });
        produce(topic, &[("enable.idempotence", "true"), ("linger.ms", "1"), ("batch.num.messages", "50")], messages)
    });
    let sessions: Vec<_> = (0..6)
        .map(|s| {
            std::thread::spawn(move || {
                // Start once the Kafka producer is writing (an idempotent librdkafka
                // producer takes a while to get its producer id).
                let deadline = Instant::now() + Duration::from_secs(30);
                while assert_gap_free(topic) < 100 && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(20));
                }
                // Every third transaction rolls back, at a different place in each session.
                let commits: Vec<bool> = (0..20).map(|t| (t + s) % 3 != 0).collect();
                sql_session(topic, s, &commits)
            })
        })
        .collect();
    let committed: Vec<Vec<String>> = sessions.into_iter().flat_map(|h| h.join().unwrap()).collect();
    assert_eq!(kafka.join().unwrap(), (kafka_messages, 0), "every Kafka message acknowledged");
    let sql_messages: usize = committed.iter().map(Vec::len).sum();
    let total = assert_gap_free(topic);
    assert_eq!(total as usize, kafka_messages + sql_messages, "nothing rolled back is stored, nothing committed is lost");

    let stored = stored_values(topic);
    let offset_of: BTreeMap<&str, i64> = stored.iter().map(|(o, v)| (v.as_str(), *o)).collect();
    // One transaction's messages are contiguous: it held the partition from its first
    // message to its commit.
    for transaction in &committed {
        let offsets: Vec<i64> = transaction.iter().map(|m| offset_of[m.as_str()]).collect();
        let first = offsets[0];
        assert_eq!(offsets, (first..first + offsets.len() as i64).collect::<Vec<_>>(), "{transaction:?}");
    }
    let committed_values: HashSet<&String> = committed.iter().flatten().collect();
    assert!(stored.iter().all(|(_, v)| v.starts_with('k') || committed_values.contains(v)), "nothing rolled back is stored");
    // The Kafka producer's messages are in the order it sent them.
    let kafka_offsets: Vec<i64> = (0..kafka_messages).map(|i| offset_of[format!("k{i}").as_str()]).collect();
    assert!(kafka_offsets.windows(2).all(|w| w[0] < w[1]), "Kafka messages kept their order");
    let interleaved = stored.windows(2).filter(|w| w[0].1.starts_with('k') != w[1].1.starts_with('k')).count();
    println!("{total} messages, {sql_messages} from SQL; the two kinds alternate {interleaved} times");
    assert!(interleaved > 20, "SQL and Kafka producers wrote the partition at the same time");

    done.store(true, Ordering::SeqCst);
    let seen = tail.join().unwrap();
    assert_eq!(seen.len(), stored.len(), "the tailing consumer saw every message once");
    assert_eq!(seen, stored, "in offset order, never past an uncommitted transaction");
}

#[test]
fn keys_land_where_kafkas_partitioner_puts_them() {
    // Kafka's own vector: murmur2("foobar") made positive is 1357151166, % 50 = 16.
    create_topic("e2e-outbox-murmur50", 50);
    assert_eq!(psql("SELECT kafka.produce('e2e-outbox-murmur50', 'foobar', 'v')"), "0");
    assert_eq!(psql("SELECT partition FROM kafka.topic_messages WHERE topic = 'e2e-outbox-murmur50'"), "16");

    // The same keys through SQL and through librdkafka's Java-compatible partitioner.
    let topic = "e2e-outbox-keys";
    create_topic(topic, 7);
    let keys: Vec<String> = (0..60).map(|i| format!("customer-{i}")).collect();
    for key in &keys {
        psql(&format!("SELECT kafka.produce('{topic}', '{key}', 'sql')"));
    }
    let producer: ThreadedProducer<rdkafka::producer::DefaultProducerContext> =
        ClientConfig::new().set("bootstrap.servers", bootstrap()).set("partitioner", "murmur2_random").create().expect("producer");
    for key in &keys {
        producer.send(BaseRecord::to(topic).key(key).payload("kafka")).expect("queued");
    }
    producer.flush(Duration::from_secs(30)).expect("flushed");
    let placed = psql(&format!(
        "SELECT count(*) FILTER (WHERE value_text = 'sql'), count(*) FILTER (WHERE value_text = 'kafka'), \
                count(DISTINCT partition) \
         FROM kafka.topic_messages WHERE topic = '{topic}'"
    ));
    assert_eq!(placed.split('|').take(2).collect::<Vec<_>>(), ["60", "60"]);
    let disagreements = psql(&format!(
        "SELECT count(*) FROM (SELECT key_text FROM kafka.topic_messages WHERE topic = '{topic}' \
         GROUP BY key_text HAVING count(DISTINCT partition) > 1) d"
    ));
    assert_eq!(disagreements, "0", "every key in one partition, whoever produced it");
    assert!(placed.split('|').nth(2).unwrap().parse::<i32>().unwrap() > 3, "keys spread over partitions: {placed}");
}

#[test]
fn sql_consumers_of_one_group_never_read_the_same_message() {
    let topic = "e2e-outbox-consume";
    create_topic(topic, 3);
    // 300 keyed messages in one call of the array form.
    let offsets = psql(&format!(
        "SELECT array_length(kafka.produce('{topic}', array_agg(ROW(convert_to('key-' || i, 'UTF8'), convert_to('m' || i, 'UTF8'), \
         '{{\"n\": 1}}'::jsonb, NULL, NULL)::kafka.outgoing ORDER BY i)), 1) FROM generate_series(0, 299) i"
    ));
    assert_eq!(offsets, "300");
    // A consumer that rolls back gives its messages back.
    let first = psql(&format!("BEGIN; SELECT count(*) FROM kafka.consume('g1', '{topic}', 10); ROLLBACK;"));
    assert_eq!(first, "10");
    let readers: Vec<_> = (0..4)
        .map(|_| {
            std::thread::spawn(move || {
                let mut got = Vec::new();
                loop {
                    let batch = psql(&format!(
                        "SELECT string_agg(convert_from(value, 'UTF8') || '@' || partition || ':' || \"offset\" || ':' || (headers->>'n'), ',') \
                         FROM kafka.consume('g1', '{topic}', 7)"
                    ));
                    if batch.is_empty() {
                        return got;
                    }
                    got.extend(batch.split(',').map(str::to_owned));
                }
            })
        })
        .collect();
    let all: Vec<String> = readers.into_iter().flat_map(|h| h.join().unwrap()).collect();
    let distinct: HashSet<&str> = all.iter().map(|m| m.split('@').next().unwrap()).collect();
    assert_eq!(all.len(), 300, "no message read twice");
    assert_eq!(distinct.len(), 300, "every message read");
    assert!(all.iter().all(|m| m.ends_with(":1")), "headers decoded");
    assert_eq!(psql(&format!("SELECT sum(lag) FROM kafka.consumer_lag WHERE group_id = 'g1' AND topic = '{topic}'")), "0");
}

#[test]
fn only_roles_allowed_to_write_the_topic_may_produce() {
    let topic = "e2e-outbox-acl";
    create_topic(topic, 1);
    psql(
        "DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'outbox_app') THEN CREATE ROLE outbox_app LOGIN; END IF; END $$; \
         GRANT USAGE ON SCHEMA kafka TO outbox_app",
    );
    let as_app = |sql: &str| psql(&format!("SET ROLE outbox_app; {sql}"));
    let denied = std::panic::catch_unwind(|| as_app(&format!("SELECT kafka.produce('{topic}', 'k', 'v')")));
    assert!(denied.is_err(), "no INSERT privilege and no ACL: refused");
    psql(&format!("SELECT kafka.grant_acl('outbox_app', 'write', 'topic', '{topic}')"));
    assert_eq!(as_app(&format!("SELECT kafka.produce('{topic}', 'k', 'v')")), "0", "a Kafka ACL allowing WRITE lets it in");
    let other = std::panic::catch_unwind(|| as_app("SELECT kafka.produce('e2e-outbox-tx', 'k', 'v')"));
    assert!(other.is_err(), "only that topic");
    psql(&format!("SELECT kafka.revoke_acl('outbox_app', 'write', 'topic', '{topic}')"));
}

#[test]
fn bad_arguments_are_refused_with_an_error_and_the_server_keeps_running() {
    let topic = "e2e-outbox-bad";
    create_topic(topic, 2);
    assert_survives("bad kafka.produce() arguments", || {
        for sql in [
            format!("SELECT kafka.produce('{topic}', 'k', 'v', NULL, 2)"),
            format!("SELECT kafka.produce('{topic}', 'k', 'v', NULL, -1)"),
            "SELECT kafka.produce('no-such-topic', 'k', 'v')".to_owned(),
            "SELECT kafka.produce(NULL, 'k', 'v')".to_owned(),
            format!("SELECT kafka.produce('{topic}', 'k', 'v', '\"not headers\"')"),
            format!("SELECT kafka.produce('{topic}', 'k', 'v', '[[1, 2]]')"),
            format!("SELECT kafka.produce('{topic}', 'k'::bytea, decode(repeat('ab', 1100000), 'hex'))"),
            "SELECT kafka.headers('\\x05ff')".to_owned(),
        ] {
            assert!(std::panic::catch_unwind(|| psql(&sql)).is_err(), "{sql} was accepted");
        }
        assert_eq!(psql("SELECT kafka.try_text('\\xff00'), kafka.try_jsonb('\\x7b'), kafka.try_text('ok')"), "||ok");
    });
    assert_eq!(assert_gap_free(topic), 0, "nothing stored");
}

#[test]
fn the_readme_outbox_example_runs_as_written() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).unwrap();
    let start = readme.find("<!-- outbox-example -->\n```sql\n").expect("marked example") + "<!-- outbox-example -->\n```sql\n".len();
    let end = start + readme[start..].find("```").unwrap();
    psql_script(&readme[start..end]);
    let got = kcat(&["-C", "-t", "orders", "-e", "-q", "-f", "%k %s %h\\n"]);
    assert_eq!(got, "1 {\"id\": 1, \"total\": 42.50, \"customer\": \"alice\"} source=shop\n", "alice published, bob rolled back");
    assert_eq!(psql("SELECT headers->>'source' FROM kafka.topic_messages WHERE topic = 'orders'"), "shop");
}

/// An ERROR raised inside Postgres under the extension's Rust code (here a user's trigger
/// refusing the row) reaches the client as one line with its SQLSTATE, never with a Rust
/// backtrace in its DETAIL, although the server runs with RUST_BACKTRACE=1 (make e2e-test).
#[test]
fn errors_under_rust_frames_reach_the_client_without_a_backtrace() {
    let topic = "e2e-outbox-refused";
    create_row_topic(topic, 1);
    let topic_id = psql(&format!("SELECT id FROM kafka.topics WHERE name = '{topic}'"));
    psql(&format!(
        "CREATE OR REPLACE FUNCTION public.refuse_e2e_row() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN RAISE EXCEPTION 'refused by a trigger' USING ERRCODE = 'check_violation'; END $$;
         DROP TRIGGER IF EXISTS refuse_e2e_row ON kafka.messages;
         CREATE TRIGGER refuse_e2e_row BEFORE INSERT ON kafka.messages FOR EACH ROW
         WHEN (NEW.topic_id = {topic_id}) EXECUTE FUNCTION public.refuse_e2e_row()"
    ));
    let output = std::process::Command::new("psql")
        .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-v", "VERBOSITY=verbose", "-h", "127.0.0.1", "-U", "postgres"])
        .args(["-p", &std::env::var("PGKAFKA_E2E_PG_PORT").unwrap()])
        .args(["-c", &format!("SELECT kafka.produce('{topic}', 'k', 'v')")])
        .output()
        .unwrap();
    psql("DROP TRIGGER refuse_e2e_row ON kafka.messages; DROP FUNCTION public.refuse_e2e_row()");
    let error = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(error.contains("refused by a trigger") && error.contains("23514"), "{error}");
    assert!(!error.contains("backtrace") && !error.contains(".rs:"), "a Rust backtrace reached the client: {error}");
}
