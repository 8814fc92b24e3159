//! Harness for the end-to-end tests. `make e2e-test` starts a cluster with pg_kafka
//! preloaded and passes its coordinates in the environment:
//! `PGKAFKA_E2E_BOOTSTRAP` (host:port of the Kafka listener), `PGKAFKA_E2E_PG_PORT`,
//! `PGKAFKA_E2E_DATA` (the data directory, whose `server.log` tests may read).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set: run these tests through `make e2e-test`"))
}

pub fn bootstrap() -> String {
    env("PGKAFKA_E2E_BOOTSTRAP")
}

/// Runs SQL through psql against the test cluster; returns trimmed, unaligned output.
pub fn psql(sql: &str) -> String {
    let output = Command::new("psql")
        .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-U", "postgres", "-d", "postgres"])
        .args(["-p", &env("PGKAFKA_E2E_PG_PORT"), "-c", sql])
        .output()
        .expect("psql runs");
    assert!(output.status.success(), "psql failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

/// The pg_kafka worker's pid and the postmaster's start time: unchanged means the worker
/// neither crashed nor took the cluster down with it.
pub fn worker_identity() -> String {
    psql("SELECT pid || ' ' || pg_postmaster_start_time() FROM pg_stat_activity WHERE backend_type = 'pg_kafka'")
}

pub fn server_log() -> String {
    std::fs::read_to_string(format!("{}/server.log", env("PGKAFKA_E2E_DATA"))).unwrap_or_default()
}

/// Waits up to 5 s for `needle` to appear in the server log.
pub fn wait_for_log(needle: &str) -> bool {
    for _ in 0..50 {
        if server_log().contains(needle) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

pub fn kcat(args: &[&str]) -> String {
    let output = Command::new("kcat").arg("-b").arg(bootstrap()).args(args).output().expect("kcat runs");
    assert!(output.status.success(), "kcat {args:?} failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A raw Kafka connection, for requests no well-behaved client would send.
pub struct RawClient {
    stream: TcpStream,
}

impl RawClient {
    pub fn connect() -> RawClient {
        let stream = TcpStream::connect(bootstrap()).expect("connect to pg_kafka");
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        RawClient { stream }
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    /// Sends a request frame with a proper header for `key`/`version` and the given body bytes.
    pub fn send(&mut self, key: ApiKey, version: i16, body: &[u8]) {
        let header = RequestHeader::default()
            .with_request_api_key(key as i16)
            .with_request_api_version(version)
            .with_correlation_id(77)
            .with_client_id(Some(StrBytes::from_static_str("e2e-raw")));
        let mut frame = BytesMut::new();
        header.encode(&mut frame, key.request_header_version(version)).unwrap();
        frame.put_slice(body);
        let mut out = (frame.len() as i32).to_be_bytes().to_vec();
        out.extend_from_slice(&frame);
        self.send_raw(&out);
    }

    pub fn send_message<M: Encodable>(&mut self, key: ApiKey, version: i16, body: &M) {
        let mut buf = BytesMut::new();
        body.encode(&mut buf, version).unwrap();
        self.send(key, version, &buf);
    }

    /// Reads one response frame; `None` if the server closed the connection.
    pub fn read_frame(&mut self) -> Option<Bytes> {
        let mut size = [0u8; 4];
        self.stream.read_exact(&mut size).ok()?;
        let mut body = vec![0u8; i32::from_be_bytes(size) as usize];
        self.stream.read_exact(&mut body).ok()?;
        Some(Bytes::from(body))
    }

    /// Reads a response, checks its correlation id, decodes the body at `version`.
    pub fn read_response<M: Decodable>(&mut self, key: ApiKey, version: i16) -> M {
        let mut frame = self.read_frame().expect("a response, not a closed connection");
        let header_version = if key == ApiKey::ApiVersions { 0 } else { key.response_header_version(version) };
        let header = ResponseHeader::decode(&mut frame, header_version).unwrap();
        assert_eq!(header.correlation_id, 77);
        let body = M::decode(&mut frame, version).unwrap();
        assert_eq!(frame.remaining(), 0, "response has trailing bytes");
        body
    }

    /// True if the server closes the connection (within the read timeout) instead of answering.
    pub fn is_closed_by_server(&mut self) -> bool {
        let mut byte = [0u8; 1];
        matches!(self.stream.read(&mut byte), Ok(0)) || matches!(self.stream.read(&mut byte), Err(ref e) if e.kind() == std::io::ErrorKind::ConnectionReset)
    }
}
