//! Idempotent producers against real failures: a proxy between rdkafka and pg_kafka
//! cuts the connection right after pg_kafka has stored a Produce request but before its
//! answer reaches the client. The client must retry the same batch (same producer id and
//! sequence), and pg_kafka must answer it without storing it twice.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;

use bytes::{Buf, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, MetadataResponse, ProduceRequest, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable};
use pg_kafka_e2e::produce::{produce, Message};
use pg_kafka_e2e::{assert_gap_free, bootstrap, create_topic, psql};

/// What the proxy saw: every (producer id, base sequence) of Produce batches forwarded,
/// and those whose answers it dropped.
#[derive(Default)]
struct Seen {
    forwarded: Vec<(i64, i32)>,
    dropped: Vec<(i64, i32)>,
}

struct Proxy {
    port: u16,
    seen: Arc<Mutex<Seen>>,
}

fn read_frame(stream: &mut TcpStream) -> Option<Bytes> {
    let mut size = [0u8; 4];
    stream.read_exact(&mut size).ok()?;
    let mut body = vec![0u8; i32::from_be_bytes(size) as usize];
    stream.read_exact(&mut body).ok()?;
    Some(body.into())
}

fn write_frame(stream: &mut TcpStream, body: &[u8]) -> bool {
    let mut frame = (body.len() as i32).to_be_bytes().to_vec();
    frame.extend_from_slice(body);
    stream.write_all(&frame).is_ok()
}

/// (producer id, base sequence) of each partition's batch in a Produce request.
fn batches(request: &Bytes, version: i16) -> Vec<(i64, i32)> {
    let mut body = request.clone();
    RequestHeader::decode(&mut body, ApiKey::Produce.request_header_version(version)).unwrap();
    let produce = ProduceRequest::decode(&mut body, version).unwrap();
    produce
        .topic_data
        .iter()
        .flat_map(|t| t.partition_data.iter())
        .filter_map(|p| p.records.as_ref())
        .map(|r| ((&r[43..51]).get_i64(), (&r[53..57]).get_i32()))
        .collect()
}

/// Points Metadata's broker at the proxy, so the client keeps talking through it.
fn rewrite_metadata(response: &Bytes, version: i16, port: u16) -> Bytes {
    let mut body = response.clone();
    let header = ResponseHeader::decode(&mut body, ApiKey::Metadata.response_header_version(version)).unwrap();
    let mut metadata = MetadataResponse::decode(&mut body, version).unwrap();
    for broker in &mut metadata.brokers {
        broker.port = i32::from(port);
    }
    let mut out = BytesMut::new();
    header.encode(&mut out, ApiKey::Metadata.response_header_version(version)).unwrap();
    metadata.encode(&mut out, version).unwrap();
    out.freeze()
}

impl Proxy {
    /// Forwards to pg_kafka; drops the answer (and the connection) of the Produce
    /// requests numbered in `drop_produce` (1-based, counted across connections).
    fn start(drop_produce: &'static [usize]) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Seen::default()));
        let produces = Arc::new(AtomicUsize::new(0));
        let shared = seen.clone();
        thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                let (seen, produces) = (shared.clone(), produces.clone());
                thread::spawn(move || relay(client, port, seen, produces, drop_produce));
            }
        });
        Proxy { port, seen }
    }
}

/// Requests relayed upstream: correlation id → (api key, version, drop the answer?).
type Pending = HashMap<i32, (i16, i16, bool)>;

fn relay(mut client: TcpStream, port: u16, seen: Arc<Mutex<Seen>>, produces: Arc<AtomicUsize>, drop_produce: &[usize]) {
    let mut upstream = TcpStream::connect(bootstrap()).unwrap();
    let mut client_side = client.try_clone().unwrap();
    let mut upstream_reader = upstream.try_clone().unwrap();
    let pending: Arc<Mutex<Pending>> = Arc::default();
    let answers = pending.clone();
    let responder = thread::spawn(move || {
        while let Some(response) = read_frame(&mut upstream_reader) {
            let correlation = (&response[..4]).get_i32();
            let Some((key, version, drop)) = answers.lock().unwrap().remove(&correlation) else { break };
            if drop {
                // Stored by pg_kafka, never acknowledged to the client.
                let _ = client_side.shutdown(Shutdown::Both);
                let _ = upstream_reader.shutdown(Shutdown::Both);
                return;
            }
            let response = if key == ApiKey::Metadata as i16 { rewrite_metadata(&response, version, port) } else { response };
            if !write_frame(&mut client_side, &response) {
                break;
            }
        }
    });
    while let Some(request) = read_frame(&mut client) {
        let (key, version, correlation) = ((&request[0..2]).get_i16(), (&request[2..4]).get_i16(), (&request[4..8]).get_i32());
        let mut drop = false;
        if key == ApiKey::Produce as i16 {
            let number = produces.fetch_add(1, Ordering::SeqCst) + 1;
            drop = drop_produce.contains(&number);
            let mut seen = seen.lock().unwrap();
            let found = batches(&request, version);
            if drop {
                seen.dropped.extend(&found);
            }
            seen.forwarded.extend(found);
        }
        pending.lock().unwrap().insert(correlation, (key, version, drop));
        if !write_frame(&mut upstream, &request) {
            break;
        }
    }
    let _ = upstream.shutdown(Shutdown::Both);
    let _ = responder.join();
}

#[test]
fn an_idempotent_producer_retrying_after_a_cut_connection_leaves_no_duplicates() {
    let topic = "e2e-idempotent-retry";
    create_topic(topic, 1);
    let proxy = Proxy::start(&[3, 7]);
    let through_proxy = format!("127.0.0.1:{}", proxy.port);
    let n = 2000;
    let messages = (0..n).map(|i| Message { value: format!("m{i}").into_bytes(), ..Message::default() });
    let settings = [
        ("bootstrap.servers", through_proxy.as_str()),
        ("enable.idempotence", "true"),
        ("linger.ms", "2"),
        ("batch.num.messages", "100"),
        ("message.timeout.ms", "60000"),
    ];
    assert_eq!(produce(topic, &settings, messages), (n, 0), "every message delivered");

    let seen = proxy.seen.lock().unwrap();
    assert!(!seen.dropped.is_empty(), "the proxy dropped answers");
    for cut in &seen.dropped {
        let sent = seen.forwarded.iter().filter(|b| *b == cut).count();
        assert!(sent >= 2, "batch {cut:?} was sent again after its answer was lost");
    }
    assert_eq!(assert_gap_free(topic), n as i64, "stored exactly once");
    let distinct = psql(&format!("SELECT count(DISTINCT value) FROM kafka.topic_messages m WHERE m.topic = '{topic}'"));
    assert_eq!(distinct, n.to_string());
    let state =
        psql(&format!("SELECT count(*) FROM kafka.producer_state s JOIN kafka.topics t ON t.id = s.topic_id WHERE t.name = '{topic}'"));
    assert_eq!(state, "1", "one producer's sequence state, stored with the rows");
}

#[test]
fn without_idempotence_the_same_cut_stores_duplicates() {
    // The control experiment: shows the proxy really makes a retry re-send stored data.
    let topic = "e2e-non-idempotent-retry";
    create_topic(topic, 1);
    let proxy = Proxy::start(&[3]);
    let through_proxy = format!("127.0.0.1:{}", proxy.port);
    let n = 1000;
    let messages = (0..n).map(|i| Message { value: format!("m{i}").into_bytes(), ..Message::default() });
    let settings = [
        ("bootstrap.servers", through_proxy.as_str()),
        ("enable.idempotence", "false"),
        ("linger.ms", "2"),
        ("batch.num.messages", "100"),
        ("max.in.flight", "1"),
        ("retries", "5"),
    ];
    assert_eq!(produce(topic, &settings, messages), (n, 0));
    assert!(!proxy.seen.lock().unwrap().dropped.is_empty());
    let stored: i64 = psql(&format!("SELECT count(*) FROM kafka.topic_messages m WHERE m.topic = '{topic}'")).parse().unwrap();
    assert!(stored > n as i64, "the retried batch was stored twice ({stored} rows for {n} messages)");
}
