//! No single unit of storage work may hold the worker's main thread for long: a group
//! commit that a trigger makes take 10 s is cancelled at pg_kafka.statement_timeout_ms
//! (SQLSTATE 57014), its producer gets a retriable error, and everyone else is served
//! meanwhile. Alone in its own test binary because it slows the shared writer down.

use std::time::{Duration, Instant};

use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ApiKey, ProduceRequest, ProduceResponse, TopicName};
use kafka_protocol::records::{Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType};
use pg_kafka_e2e::*;

fn one_record_batch() -> bytes::Bytes {
    let record = Record {
        transactional: false,
        control: false,
        delete_horizon: false,
        partition_leader_epoch: 0,
        producer_id: -1,
        producer_epoch: -1,
        timestamp_type: TimestampType::Creation,
        offset: 0,
        sequence: -1,
        timestamp: 1_700_000_000_000,
        key: None,
        value: Some(bytes::Bytes::from_static(b"slow")),
        headers: Default::default(),
    };
    let mut buf = bytes::BytesMut::new();
    RecordBatchEncoder::encode(&mut buf, &[record], &RecordEncodeOptions { version: 2, compression: Compression::None }).unwrap();
    buf.freeze()
}

#[test]
fn a_storage_job_that_runs_too_long_is_cancelled_and_frees_the_thread() {
    let topic = "e2e-slow-job";
    create_topic(topic, 1);
    let topic_id = psql(&format!("SELECT id FROM kafka.topics WHERE name = '{topic}'"));
    psql(&format!(
        "CREATE FUNCTION e2e_slow() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_sleep(10); RETURN NEW; END $$; \
         CREATE TRIGGER e2e_slow BEFORE INSERT ON kafka.messages FOR EACH ROW \
         WHEN (NEW.topic_id = {topic_id}) EXECUTE FUNCTION e2e_slow()"
    ));
    psql("ALTER SYSTEM SET pg_kafka.statement_timeout_ms = 1000");
    reload_and_wait();
    let result = std::panic::catch_unwind(|| {
        assert_survives("a group commit made to take 10 s", || {
            let request =
                ProduceRequest::default().with_acks(-1).with_timeout_ms(30_000).with_topic_data(vec![TopicProduceData::default()
                    .with_name(TopicName(topic.to_owned().into()))
                    .with_partition_data(vec![PartitionProduceData::default().with_index(0).with_records(Some(one_record_batch()))])]);
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
    psql("DROP TRIGGER e2e_slow ON kafka.messages; DROP FUNCTION e2e_slow()");
    psql("ALTER SYSTEM RESET pg_kafka.statement_timeout_ms");
    reload_and_wait();
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}
