//! No single unit of storage work may hold the worker's main thread for long: a group
//! commit that a trigger makes take 10 s is cancelled at pg_kafka.statement_timeout_ms
//! (SQLSTATE 57014), its producer gets a retriable error, and everyone else is served
//! meanwhile. Alone in its own test binary because it slows the shared writer down.

use std::time::{Duration, Instant};

use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ApiKey, ProduceRequest, ProduceResponse, TopicName};
use pg_kafka_e2e::*;

#[test]
fn a_storage_job_that_runs_too_long_is_cancelled_and_frees_the_thread() {
    let topic = "e2e-slow-job";
    create_row_topic(topic, 1);
    slow_down_inserts(topic, "e2e_slow", 10);
    psql("ALTER SYSTEM SET pg_kafka.statement_timeout_ms = 1000");
    reload_and_wait();
    let result = std::panic::catch_unwind(|| {
        assert_survives("a group commit made to take 10 s", || {
            let request = ProduceRequest::default()
                .with_acks(-1)
                .with_timeout_ms(30_000)
                .with_topic_data(vec![TopicProduceData::default().with_name(TopicName(topic.to_owned().into())).with_partition_data(
                    vec![PartitionProduceData::default().with_index(0).with_records(Some(one_record_batch(b"slow")))],
                )]);
            let mut producer = RawClient::connect();
            let started = Instant::now();
            producer.send_message(ApiKey::Produce, 7, &request);
            // Meanwhile another client's Metadata (a storage job) is answered.
            std::thread::sleep(Duration::from_millis(200));
            let asked = Instant::now();
            assert!(kcat(&["-L", "-t", topic]).contains(topic));
            assert!(asked.elapsed() < Duration::from_secs(4), "Metadata took {:?}", asked.elapsed());
            let response: ProduceResponse = producer.read_response(ApiKey::Produce, 7);
            let answered_in = started.elapsed();
            assert_eq!(response.responses[0].partition_responses[0].error_code, 56, "KAFKA_STORAGE_ERROR, retriable");
            assert!(answered_in < Duration::from_secs(5), "answered after {answered_in:?}, not at the statement timeout");
            assert!(wait_for_log("57014"), "the cancel is logged with its SQLSTATE");
        });
    });
    restore_inserts("e2e_slow");
    psql("ALTER SYSTEM RESET pg_kafka.statement_timeout_ms");
    reload_and_wait();
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}
