//! What survives a Postgres restart: committed group offsets (a consumer resumes right
//! after them) and the producer id sequence (ids are never handed out twice). Alone in
//! its own test binary because it restarts the shared test cluster.

use std::collections::BTreeSet;
use std::time::Duration;

use kafka_protocol::messages::{ApiKey, InitProducerIdRequest, InitProducerIdResponse};
use pg_kafka_e2e::groups::{member, Ledger};
use pg_kafka_e2e::produce::{produce, Message};
use pg_kafka_e2e::{create_topic, restart_postgres, RawClient};

fn producer_id() -> i64 {
    let mut client = RawClient::connect();
    client.send_message(ApiKey::InitProducerId, 4, &InitProducerIdRequest::default().with_transactional_id(None));
    let response: InitProducerIdResponse = client.read_response(ApiKey::InitProducerId, 4);
    assert_eq!(response.error_code, 0);
    response.producer_id.0
}

fn messages(from: usize, to: usize) -> impl Iterator<Item = Message> {
    (from..to).map(|i| Message { partition: (i % 2) as i32, value: format!("r{i}").into_bytes(), ..Message::default() })
}

#[test]
fn committed_offsets_and_producer_ids_survive_a_restart() {
    let (topic, group) = ("e2e-restart", "e2e-restart-group");
    create_topic(topic, 2);
    assert_eq!(produce(topic, &[], messages(0, 100)), (100, 0));
    let mut first = Ledger::default();
    {
        let consumer = member(group, topic);
        assert!(first.poll_until(&[&consumer], Duration::from_secs(60), |l| l.committed.len() == 60));
    }
    let id_before = producer_id();

    restart_postgres();

    assert!(producer_id() > id_before, "producer ids are not reused after a restart");
    assert_eq!(produce(topic, &[], messages(100, 120)), (20, 0));
    let consumer = member(group, topic);
    let mut second = Ledger::default();
    assert!(
        second.poll_until(&[&consumer], Duration::from_secs(60), |l| l.committed.len() == 60),
        "the rest (40) and the new (20) messages, got {}",
        second.committed.len()
    );
    let before: BTreeSet<Vec<u8>> = first.committed.iter().map(|(_, _, v)| v.clone()).collect();
    let after: BTreeSet<Vec<u8>> = second.committed.iter().map(|(_, _, v)| v.clone()).collect();
    assert!(before.is_disjoint(&after), "nothing committed before the restart is read again");
    assert_eq!(before.len() + after.len(), 120, "and nothing is skipped");
}
