//! After a crash every open transaction is aborted, never left half-applied: the worker
//! is killed with SIGKILL (Postgres reinitializes) and Postgres is restarted while a
//! transaction is open; when the worker is back, the transaction is aborted (its producer
//! fenced), read_committed consumers move past it, and the id's next producer commits.
//! Alone in its own test binary because it crashes the shared test cluster on purpose.

use std::time::{Duration, Instant};

use pg_kafka_e2e::transactions::{create_topic_in, numbered, producer, send, values};
use pg_kafka_e2e::*;
use rdkafka::producer::Producer;

const QUIET: Duration = Duration::from_secs(2);

/// The transaction's state once the worker serves again (it loads and settles
/// transactions at start).
fn state_after_recovery(id: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let state = try_psql(&format!("SELECT state FROM kafka.transactions WHERE transactional_id = '{id}'")).unwrap_or_default();
        if state == "CompleteAbort" {
            return state;
        }
        assert!(Instant::now() < deadline, "transaction of {id} still {state:?} 90 s after the crash");
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn crash_mid_transaction(how: &str, layout: &str, crash: impl FnOnce()) {
    let topic = format!("e2e-txn-crash-{how}-{layout}-{}", std::process::id());
    let id = format!("e2e-txn-crash-{how}-{layout}-{}", std::process::id());
    create_topic_in(&topic, 1, layout);
    {
        let zombie = producer(&id, &[]);
        zombie.begin_transaction().unwrap();
        send(&zombie, &topic, &numbered("before", 2));
        zombie.commit_transaction(Duration::from_secs(30)).unwrap();
        zombie.begin_transaction().unwrap();
        send(&zombie, &topic, &numbered("open", 5));
        crash();
        assert_eq!(state_after_recovery(&id), "CompleteAbort", "{how} {layout}");
        // The producer that was open at the crash is fenced: its commit fails.
        assert!(zombie.commit_transaction(Duration::from_secs(10)).is_err(), "{how} {layout}: the zombie's commit fails");
    }
    let next = producer(&id, &[]);
    next.begin_transaction().unwrap();
    send(&next, &topic, &numbered("after", 3));
    next.commit_transaction(Duration::from_secs(30)).unwrap();
    assert_eq!(values(&topic, "read_committed", QUIET), [numbered("before", 2), numbered("after", 3)].concat(), "{how} {layout}");
    assert_eq!(
        psql(&format!("SELECT count(*) FROM kafka.open_transactions o JOIN kafka.topics t ON t.id = o.topic_id WHERE t.name = '{topic}'")),
        "0",
        "{how} {layout}: nothing holds the last stable offset back"
    );
}

#[test]
fn a_transaction_open_at_a_crash_is_aborted_when_the_worker_is_back() {
    for layout in ["batches", "rows"] {
        crash_mid_transaction("sigkill", layout, || {
            let pid = psql("SELECT pid FROM pg_stat_activity WHERE backend_type = 'pg_kafka'");
            assert!(std::process::Command::new("kill").args(["-9", &pid]).status().unwrap().success());
        });
        crash_mid_transaction("restart", layout, restart_postgres);
    }
}
