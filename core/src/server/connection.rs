//! One client connection.
//!
//! Clients pipeline requests (librdkafka keeps several Produce requests in flight), and
//! Kafka answers them in order. So a connection is two halves:
//!
//! ```text
//!  reader: size ─▶ reserve bytes from the shared budget ─▶ body ─▶ spawn handler task ─┐
//!                                                                         (≤ MAX_PIPELINED)
//!  writer: ◀──────────── await handler tasks in request order, write responses ◀───────┘
//! ```
//! The budget (`pg_kafka.max_inflight_bytes`, shared by all connections) is reserved as
//! a body is read and released once its response is written: when it runs out, connections
//! stop reading, which is the back-pressure a producer sees. One connection holds at most
//! a quarter of it ([`CONNECTION_SHARE`]), so a few huge frames cannot take it all; a
//! connection on a SASL listener that has not logged in yet reserves from a small budget
//! of its own instead ([`crate::broker::UNAUTHENTICATED_BUDGET_BYTES`]). A handler runs in
//! its own task, so a panic there costs only this connection.
//!
//! On TLS listeners the TLS handshake comes first (within `request_timeout_ms`). On SASL
//! listeners a connection may send only ApiVersions, SaslHandshake and SaslAuthenticate
//! (in frames of at most 512 KiB) until it has authenticated; anything else closes it.
//! SASL requests run in the reader itself, one at a time: the next token only means
//! something after the answer to the previous one.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, BufWriter};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use crate::broker::in_order::Chain;
use crate::broker::sasl::SaslExchange;
use crate::broker::session::{login_by_certificate, Gate, InFlightRequest, ListenerInfo, Session};
use crate::broker::{Broker, ConnectionResponses, Outcome, CONNECTION_RESPONSES, SMALL_REQUEST_BYTES};
use crate::logging;
use crate::protocol::frame::{read_frame_size, write_frame, FrameBody, FrameError};
use crate::protocol::header::{parse_request, HeaderError};

/// Why a connection was closed by the broker (a client that simply leaves is not an error).
#[derive(Debug, thiserror::Error)]
enum ConnectionError {
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error("bad request header: {0}")]
    Header(#[from] HeaderError),
    /// A handler asked to close (unsupported version, malformed body, handler panic).
    #[error("{0}")]
    Refused(String),
    #[error("writing a response failed: {0}")]
    Write(std::io::Error),
    #[error("the in-flight byte budget was closed")]
    BudgetClosed,
    #[error("no request for {0} ms (pg_kafka.connections_max_idle_ms)")]
    Idle(u64),
    #[error("the client took no response for {0} ms (pg_kafka.request_timeout_ms)")]
    WriteTimedOut(u64),
    #[error("{0}")]
    NotAuthenticated(String),
    #[error("TLS handshake failed: {0}")]
    Tls(String),
}

type Reader = Box<dyn AsyncRead + Unpin + Send>;
type Writer = Box<dyn AsyncWrite + Unpin + Send>;

/// The content type of a TLS handshake record, which every TLS connection starts with.
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// Largest frame accepted before authentication (Kafka's `sasl.server.max.receive.size`).
const MAX_UNAUTHENTICATED_FRAME_BYTES: usize = 512 * 1024;

/// Requests read ahead of their responses, per connection.
const MAX_PIPELINED: usize = 16;

/// The part of the shared budget one connection may hold at once (1/N).
const CONNECTION_SHARE: usize = 4;

pub struct Connection {
    stream: TcpStream,
    peer: SocketAddr,
    listener: Arc<ListenerInfo>,
    tls: Option<TlsAcceptor>,
    broker: Broker,
    budget: Arc<Semaphore>,
    shutdown: watch::Receiver<bool>,
}

/// A request being handled, with the bytes it holds from the budgets.
struct InFlight {
    outcome: Handler,
    what: String,
    _bytes: Held,
    /// Counts the request in its session's requests in flight until written.
    _counted: InFlightRequest,
}

/// A handler task, aborted when dropped if its API allows
/// ([`crate::broker::stops_with_its_connection`]): when its connection closes, the reads
/// it left behind stop at their next await instead of running to the end for nobody (a
/// client that sends 16 expensive Fetches and hangs up costs no more than one).
struct Handler {
    task: JoinHandle<Outcome>,
    stops_with_connection: bool,
}

impl Handler {
    fn spawn(task: impl std::future::Future<Output = Outcome> + Send + 'static, stops_with_connection: bool) -> Handler {
        Handler { task: tokio::spawn(task), stops_with_connection }
    }
}

impl std::future::Future for Handler {
    type Output = Result<Outcome, tokio::task::JoinError>;

    fn poll(mut self: std::pin::Pin<&mut Self>, context: &mut std::task::Context<'_>) -> std::task::Poll<Self::Output> {
        std::pin::Pin::new(&mut self.task).poll(context)
    }
}

impl Drop for Handler {
    fn drop(&mut self) {
        if self.stops_with_connection {
            self.task.abort();
        }
    }
}

impl Connection {
    pub fn new(
        stream: TcpStream,
        peer: SocketAddr,
        listener: Arc<ListenerInfo>,
        tls: Option<TlsAcceptor>,
        broker: Broker,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        let budget = broker.budget().clone();
        let _ = stream.set_nodelay(true);
        Connection { stream, peer, listener, tls, broker, budget, shutdown }
    }

    pub async fn run(self) {
        let peer = self.peer;
        let log_connections = self.broker.config().log_connections;
        if log_connections {
            logging::log(format!("pg_kafka: connection from {peer}"));
        }
        match self.serve().await {
            Ok(()) if log_connections => logging::log(format!("pg_kafka: {peer} disconnected")),
            Ok(()) => {}
            Err(reason) => logging::warning(format!("pg_kafka: closing connection from {peer}: {reason}")),
        }
    }

    /// Serves until the client leaves (`Ok`) or must be dropped (`Err(reason)`).
    async fn serve(self) -> Result<(), ConnectionError> {
        let local = self.stream.local_addr().unwrap_or(self.peer);
        let session = Arc::new(Session::new(self.listener.clone(), self.peer, local));
        let _listed = self.broker.connections().register(&session);
        let timeout = Duration::from_millis(self.broker.config().request_timeout_ms);
        let (reader, writer): (Reader, Writer) = match &self.tls {
            None => {
                let (reader, writer) = self.stream.into_split();
                (Box::new(reader), Box::new(writer))
            }
            Some(acceptor) => match accept_tls(self.stream, acceptor, &self.broker, &session, timeout).await? {
                Some(halves) => halves,
                None => return Ok(()),
            },
        };
        let (in_flight, answers) = mpsc::channel(MAX_PIPELINED);
        let reading = read_requests(reader, self.broker, session, self.budget, self.shutdown, in_flight);
        let writing = write_responses(BufWriter::new(writer), answers, timeout);
        tokio::pin!(reading, writing);
        tokio::select! {
            read = &mut reading => match read {
                // The client hung up: nobody will read the answers, so the reads it left
                // behind stop (dropping the writer aborts their handlers); what changes
                // state still runs to the end, as in Kafka.
                Ok(Ended::ClientClosed) => Ok(()),
                // The client must be cut off (or the broker shuts down): answer what was
                // already read.
                read => {
                    let written = writing.await;
                    read.map(|_| ()).and(written)
                }
            },
            // A response could not be written, or a handler asked to close: stop reading.
            written = &mut writing => written,
        }
    }
}

/// The TLS handshake, within `timeout`; `None` if the client left first. A TLS connection
/// opens with a handshake record (0x16): a Kafka client speaking plaintext to this port is
/// told so in the log and closed at once. On SSL listeners a client certificate's CN logs
/// in as that role.
async fn accept_tls(
    stream: TcpStream,
    acceptor: &TlsAcceptor,
    broker: &Broker,
    session: &Session,
    timeout: Duration,
) -> Result<Option<(Reader, Writer)>, ConnectionError> {
    let too_slow = || ConnectionError::Tls(format!("no handshake within {} ms", timeout.as_millis()));
    let mut first = [0u8; 1];
    match tokio::time::timeout(timeout, stream.peek(&mut first)).await {
        Ok(Ok(1)) if first[0] == TLS_HANDSHAKE_RECORD => {}
        Ok(Ok(1)) => return Err(ConnectionError::Tls("the client does not speak TLS (a plaintext Kafka client?)".into())),
        Ok(_) => return Ok(None),
        Err(_) => return Err(too_slow()),
    }
    let stream = match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => return Err(ConnectionError::Tls(e.to_string())),
        Err(_) => return Err(too_slow()),
    };
    let certificate_role = stream.get_ref().1.peer_certificates().and_then(|chain| chain.first()).and_then(super::tls::common_name);
    if let (Some(role), false) = (certificate_role, session.listener.protocol.uses_sasl()) {
        login_by_certificate(broker, session, role).await.map_err(ConnectionError::NotAuthenticated)?;
    }
    let (reader, writer) = tokio::io::split(stream);
    Ok(Some((Box::new(reader), Box::new(writer))))
}

/// How reading requests ended without an error.
enum Ended {
    /// The client closed the connection (end of stream or reset).
    ClientClosed,
    /// The broker is shutting down, or a request's answer ends the connection.
    Stopped,
}

async fn read_requests(
    mut reader: Reader,
    broker: Broker,
    session: Arc<Session>,
    budget: Arc<Semaphore>,
    mut shutdown: watch::Receiver<bool>,
    in_flight: mpsc::Sender<InFlight>,
) -> Result<Ended, ConnectionError> {
    let client_host = format!("/{}", session.peer.ip());
    let mut sasl = SaslExchange::default();
    let mut order = Chain::default();
    let mut response_order = Chain::default();
    // The budget's size is fixed at start; the rest is read per frame (reloadable).
    let share = (broker.config().max_inflight_bytes / CONNECTION_SHARE).max(1);
    let own_share = Arc::new(Semaphore::new(share));
    // Unwritten response bytes this connection may hold: one full Fetch response.
    let responses = ConnectionResponses::new(broker.config().fetch_max_bytes);
    loop {
        let config = broker.config();
        let (mut max_frame_bytes, request_timeout_ms) = (config.max_frame_bytes, config.request_timeout_ms);
        let unauthenticated = session.listener.protocol.uses_sasl() && session.login().is_none();
        if unauthenticated {
            max_frame_bytes = max_frame_bytes.min(MAX_UNAUTHENTICATED_FRAME_BYTES);
        }
        let idle = Duration::from_millis(config.connections_max_idle_ms);
        let size = tokio::select! {
            biased;
            _ = shutdown.changed() => return Ok(Ended::Stopped),
            size = tokio::time::timeout(idle, read_frame_size(&mut reader, max_frame_bytes)) => match size {
                Ok(size) => size,
                Err(_) => return Err(ConnectionError::Idle(idle.as_millis() as u64)),
            },
        };
        let size = match size {
            Ok(Some(size)) => size,
            Ok(None) => return Ok(Ended::ClientClosed),
            Err(FrameError::Io(e)) if e.kind() == std::io::ErrorKind::ConnectionReset => return Ok(Ended::ClientClosed),
            Err(e) => return Err(e.into()),
        };
        // Budget is taken as the body arrives, 64 KiB at a time, so a client that announces
        // a large frame and goes quiet holds only what it sent, and only until the request
        // timeout. A frame larger than the connection's share holds the share, not more.
        let shared = if unauthenticated { broker.unauthenticated_budget() } else { &budget };
        // A small request of a logged-in client may fall back on the small-request reserve.
        let fallback = (!unauthenticated && size <= SMALL_REQUEST_BYTES).then(|| broker.small_request_reserve());
        let mut bytes = Held::none(&own_share, shared)?;
        let reading = read_body_reserving(&mut reader, size, (&own_share, share), (shared, fallback), &mut bytes);
        let frame = match tokio::time::timeout(Duration::from_millis(request_timeout_ms), reading).await {
            Ok(Ok(frame)) => frame,
            Ok(Err(FrameError::Io(e))) if e.kind() == std::io::ErrorKind::ConnectionReset => return Ok(Ended::ClientClosed),
            Ok(Err(e)) => return Err(e.into()),
            Err(_) => return Err(FrameError::TimedOut { size, timeout_ms: request_timeout_ms }.into()),
        };
        // SASL runs here, in order; other requests in handler tasks. A refused login
        // ends the connection once its answer is written.
        let (outcome, what) = if sasl.expects_raw_token() {
            (broker.handle_raw_sasl(&mut sasl, &frame, &session).await, "SASL token".to_owned())
        } else {
            let mut request = parse_request(frame)?;
            request.client_host = client_host.clone();
            session.saw_client_id(request.header.client_id.as_deref());
            let what = format!("{:?} v{}", request.api_key, request.version());
            match session.gate(request.api_key, std::time::Instant::now()) {
                Gate::Refuse(reason) => return Err(ConnectionError::NotAuthenticated(reason)),
                Gate::Sasl => (broker.handle_sasl(&mut sasl, request, &session).await, what),
                Gate::Proceed => {
                    let counted = session.request_in_flight();
                    let stops = crate::broker::stops_with_its_connection(request.api_key);
                    let (handler, link, session) = (broker.clone(), order.next_link(), session.clone());
                    let handling = async move { handler.handle_in_order(request, link, session).await };
                    let turn = responses.turn(response_order.next_link());
                    let outcome = Handler::spawn(CONNECTION_RESPONSES.scope(turn, handling), stops);
                    if in_flight.send(InFlight { outcome, what, _bytes: bytes, _counted: counted }).await.is_err() {
                        return Ok(Ended::Stopped); // the writer has stopped; its error is the one to report
                    }
                    continue;
                }
            }
        };
        let ends = matches!(outcome, Outcome::Close(_) | Outcome::RespondThenClose(..));
        if in_flight.send(answered(outcome, what, bytes, session.request_in_flight())).await.is_err() || ends {
            return Ok(Ended::Stopped);
        }
    }
}

/// What one request holds: its bytes from the connection's share, from the budget it
/// was read under (the shared one, or the unauthenticated connections' one), and from
/// the small-request reserve when the budget had no room.
struct Held {
    own: OwnedSemaphorePermit,
    shared: OwnedSemaphorePermit,
    spare: Option<OwnedSemaphorePermit>,
}

impl Held {
    fn none(own: &Arc<Semaphore>, shared: &Arc<Semaphore>) -> Result<Held, ConnectionError> {
        let empty = |s: &Arc<Semaphore>| s.clone().try_acquire_many_owned(0).map_err(|_| ConnectionError::BudgetClosed);
        Ok(Held { own: empty(own)?, shared: empty(shared)?, spare: None })
    }
}

/// An outcome already decided, queued behind the connection's earlier responses.
fn answered(outcome: Outcome, what: String, bytes: Held, counted: InFlightRequest) -> InFlight {
    InFlight { outcome: Handler::spawn(async move { outcome }, true), what, _bytes: bytes, _counted: counted }
}

/// Reads a `size`-byte body, taking the bytes each step read into `held`: from the
/// connection's own share of `share` bytes (waiting while its earlier requests hold it)
/// and from `shared` (waiting while it is exhausted), or, for a small request, from
/// `fallback` if that has room first. A frame larger than the share holds all of it and
/// reads the rest without reserving more.
async fn read_body_reserving(
    reader: &mut Reader,
    size: usize,
    (own, share): (&Arc<Semaphore>, usize),
    (shared, fallback): (&Arc<Semaphore>, Option<&Arc<Semaphore>>),
    held: &mut Held,
) -> Result<Bytes, FrameError> {
    let closed = |_| FrameError::BudgetClosed;
    let mut body = FrameBody::new(size);
    while let Some(step) = body.next_step() {
        let read = body.read_step(reader, step).await?;
        let reserve = read.min(share - held.own.num_permits());
        if reserve == 0 {
            continue;
        }
        held.own.merge(own.clone().acquire_many_owned(reserve as u32).await.map_err(closed)?);
        match fallback {
            Some(fallback) => tokio::select! {
                biased;
                permit = shared.clone().acquire_many_owned(reserve as u32) => held.shared.merge(permit.map_err(closed)?),
                permit = fallback.clone().acquire_many_owned(reserve as u32) => {
                    let permit = permit.map_err(closed)?;
                    match &mut held.spare {
                        Some(spare) => spare.merge(permit),
                        None => held.spare = Some(permit),
                    }
                }
            },
            None => held.shared.merge(shared.clone().acquire_many_owned(reserve as u32).await.map_err(closed)?),
        }
    }
    Ok(body.finish())
}

/// Writes each response in request order. A response the client does not take within
/// `write_timeout` closes the connection, releasing what its responses held: a client
/// that pipelines Fetches and never reads cannot keep the budget for itself.
async fn write_responses(
    mut writer: BufWriter<Writer>,
    mut answers: mpsc::Receiver<InFlight>,
    write_timeout: Duration,
) -> Result<(), ConnectionError> {
    while let Some(request) = answers.recv().await {
        let mut outcome =
            request.outcome.await.unwrap_or_else(|e| Outcome::Close(format!("{} handler failed: {}", request.what, panic_message(e))));
        // A response's held budget (RespondHolding's permits) stays in `outcome` until the
        // end of this turn: after the frame is written.
        let (response, then_close) = match outcome {
            Outcome::Respond(response) => (vec![response], None),
            Outcome::RespondHolding(ref mut parts, _) => (std::mem::take(parts), None),
            Outcome::RespondThenClose(response, reason) => (vec![response], Some(reason)),
            Outcome::Silent => continue,
            Outcome::Close(reason) => return Err(ConnectionError::Refused(reason)),
        };
        match tokio::time::timeout(write_timeout, write_frame(&mut writer, &response)).await {
            Ok(Ok(())) => {}
            // The client went away (closed, or was killed): a disconnect, not a fault.
            Ok(Err(e)) if matches!(e.kind(), std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset) => return Ok(()),
            Ok(Err(e)) => return Err(ConnectionError::Write(e)),
            Err(_) => return Err(ConnectionError::WriteTimedOut(write_timeout.as_millis() as u64)),
        }
        if let Some(reason) = then_close {
            return Err(ConnectionError::Refused(reason));
        }
    }
    Ok(())
}

fn panic_message(error: tokio::task::JoinError) -> String {
    match error.try_into_panic() {
        Ok(payload) => payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "panic".into()),
        Err(e) => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::testing::broker_with_config;
    use crate::config::Config;
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    /// Polls `done` every 20 ms until it holds or `limit` has passed; whether it held.
    async fn wait_for(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        while !done() {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        true
    }

    fn loopback_listener() -> Arc<ListenerInfo> {
        Arc::new(ListenerInfo::plaintext("127.0.0.1", 9092))
    }

    /// Serves every connection to a fresh listener of `info` with `broker`.
    async fn serve_broker(broker: Broker, info: Arc<ListenerInfo>) -> std::net::SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (shutdown_sender, shutdown) = watch::channel(false);
        tokio::spawn(async move {
            let _keep = shutdown_sender;
            while let Ok((stream, peer)) = listener.accept().await {
                tokio::spawn(Connection::new(stream, peer, info.clone(), None, broker.clone(), shutdown.clone()).run());
            }
        });
        addr
    }

    /// Serves every connection to a fresh listener with one shared byte budget.
    async fn serve_with(config: Config) -> std::net::SocketAddr {
        serve_broker(broker_with_config(config), loopback_listener()).await
    }

    /// An ApiVersions v0 request frame.
    fn api_versions_frame() -> Vec<u8> {
        let mut body = vec![0, 18, 0, 0, 0, 0, 0, 5, 0, 0]; // key 18, v0, correlation 5, no client id
        let mut frame = (body.len() as i32).to_be_bytes().to_vec();
        frame.append(&mut body);
        frame
    }

    #[tokio::test]
    async fn a_client_that_announces_a_frame_and_goes_quiet_holds_only_what_it_sent() {
        let config = Config { max_inflight_bytes: 1000, request_timeout_ms: 300, ..Config::default() };
        let addr = serve_with(config).await;
        // Three clients announce frames larger than the whole budget and send 10 bytes.
        let mut hogs = Vec::new();
        for _ in 0..3 {
            let mut hog = TcpStream::connect(addr).await.unwrap();
            hog.write_all(&50_000i32.to_be_bytes()).await.unwrap();
            hog.write_all(&[0; 10]).await.unwrap();
            hogs.push(hog);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;

        let mut other = TcpStream::connect(addr).await.unwrap();
        other.write_all(&api_versions_frame()).await.unwrap();
        let mut size = [0u8; 4];
        tokio::time::timeout(Duration::from_millis(200), other.read_exact(&mut size)).await.expect("answered at once").unwrap();
        assert!(i32::from_be_bytes(size) > 0);

        // The frame never completes: each hog is cut off at the request timeout.
        for mut hog in hogs {
            let mut rest = Vec::new();
            let closed = tokio::time::timeout(Duration::from_secs(2), hog.read_to_end(&mut rest)).await;
            assert!(matches!(closed, Ok(Ok(0)) | Ok(Err(_))), "{closed:?}");
        }
    }

    #[tokio::test]
    async fn the_budget_still_pushes_back_on_bytes_that_really_arrived() {
        let addr = serve_with(Config { max_inflight_bytes: 1000, ..Config::default() }).await;
        // Four clients that really sent their share (250 bytes each) of larger frames
        // hold the whole budget.
        let mut hogs = Vec::new();
        for _ in 0..CONNECTION_SHARE {
            let mut hog = TcpStream::connect(addr).await.unwrap();
            hog.write_all(&50_000i32.to_be_bytes()).await.unwrap();
            hog.write_all(&[0; 1000]).await.unwrap();
            hogs.push(hog);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;

        // A request larger than the small-request reserve takes waits for the budget...
        let mut large = TcpStream::connect(addr).await.unwrap();
        large.write_all(&((SMALL_REQUEST_BYTES as i32 + 1).to_be_bytes())).await.unwrap();
        // API key -1: refused (the connection closed) once read.
        large.write_all(&vec![0xff; SMALL_REQUEST_BYTES + 1]).await.unwrap();
        let mut byte = [0u8; 1];
        let waited = tokio::time::timeout(Duration::from_millis(300), large.read(&mut byte)).await;
        assert!(waited.is_err(), "a large request was read while the budget was taken");
        // ...while a small one of another client is served from the reserve.
        let mut small = TcpStream::connect(addr).await.unwrap();
        small.write_all(&api_versions_frame()).await.unwrap();
        let mut size = [0u8; 4];
        tokio::time::timeout(Duration::from_millis(300), small.read_exact(&mut size)).await.expect("served at once").unwrap();
        drop(hogs.pop()); // its bytes go back to the budget: the large request is read (and refused)
        let read = tokio::time::timeout(Duration::from_secs(5), large.read(&mut byte)).await.expect("read once there was room");
        assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    }

    /// One connection holds at most its share of the budget: three clients sending 90 MiB
    /// frames used to stall every other client on every listener.
    #[tokio::test]
    async fn one_connection_holds_at_most_its_share() {
        let config = Config { max_inflight_bytes: 1000, ..Config::default() };
        let broker = broker_with_config(config.clone());
        let addr = serve_broker(broker.clone(), loopback_listener()).await;
        let mut hogs = Vec::new();
        for _ in 0..CONNECTION_SHARE - 1 {
            let mut hog = TcpStream::connect(addr).await.unwrap();
            hog.write_all(&50_000i32.to_be_bytes()).await.unwrap();
            hog.write_all(&[0; 5000]).await.unwrap();
            hogs.push(hog);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(broker.budget().available_permits(), 1000 / CONNECTION_SHARE, "each holds its share, not more");
        let mut other = TcpStream::connect(addr).await.unwrap();
        other.write_all(&api_versions_frame()).await.unwrap();
        let mut size = [0u8; 4];
        tokio::time::timeout(Duration::from_millis(300), other.read_exact(&mut size)).await.expect("answered at once").unwrap();
    }

    /// Before a login on a SASL listener a connection reserves from a budget of its own:
    /// 540 connections each sending 511 KiB of an ApiVersions frame filled the shared one.
    #[tokio::test]
    async fn unauthenticated_connections_never_hold_the_shared_budget() {
        let broker = broker_with_config(Config::default());
        let sasl = Arc::new(ListenerInfo {
            protocol: crate::security::listeners::SecurityProtocol::SaslPlaintext,
            advertised_host: None,
            advertised_port: 9093,
            mechanisms: vec!["PLAIN"],
        });
        let addr = serve_broker(broker.clone(), sasl).await;
        let shared = broker.budget().available_permits();
        let mut hogs = Vec::new();
        for _ in 0..4 {
            let mut hog = TcpStream::connect(addr).await.unwrap();
            hog.write_all(&((MAX_UNAUTHENTICATED_FRAME_BYTES as i32).to_be_bytes())).await.unwrap();
            hog.write_all(&vec![0; MAX_UNAUTHENTICATED_FRAME_BYTES - 1024]).await.unwrap();
            hogs.push(hog);
        }
        // Until the server has read (nearly) all four frames: a busy machine takes a while.
        let held = || crate::broker::UNAUTHENTICATED_BUDGET_BYTES - broker.unauthenticated_budget().available_permits();
        let expected = 4 * (MAX_UNAUTHENTICATED_FRAME_BYTES - 1024) - 4 * 65536;
        wait_for(Duration::from_secs(20), || held() >= expected).await;
        assert!(held() >= expected, "held {}", held());
        assert_eq!(broker.budget().available_permits(), shared, "the shared budget is untouched");
    }

    /// A client that pipelines Fetches with data and never reads the answers: its
    /// responses hold budget only until they cannot be written for request_timeout_ms, then
    /// the connection is closed and everything it held goes back.
    #[tokio::test]
    async fn a_client_that_never_reads_its_responses_is_cut_off_and_releases_the_budget() {
        use crate::broker::testing::{append_values, with_storage};
        use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
        use kafka_protocol::messages::{ApiKey, FetchRequest, RequestHeader, TopicName};
        use kafka_protocol::protocol::{Encodable, StrBytes};
        let config = Config { request_timeout_ms: 300, ..Config::default() };
        let budget = config.max_inflight_bytes;
        let broker = broker_with_config(config);
        with_storage(&broker, |s| s.create_topic("t", 1)).await.unwrap();
        let value: &'static [u8] = Box::leak(vec![1u8; 64 * 1024].into_boxed_slice());
        for _ in 0..8 {
            append_values(&broker, 0, &[value; 8]).await;
        }
        let addr = serve_broker(broker.clone(), loopback_listener()).await;
        let partition = FetchPartition::default().with_partition_max_bytes(8 << 20);
        let topic = FetchTopic::default().with_topic(TopicName(StrBytes::from_static_str("t"))).with_partitions(vec![partition]);
        let body = FetchRequest::default().with_max_bytes(8 << 20).with_min_bytes(1).with_topics(vec![topic]);
        let mut frame = bytes::BytesMut::new();
        RequestHeader::default().with_request_api_key(ApiKey::Fetch as i16).with_request_api_version(11).encode(&mut frame, 1).unwrap();
        body.encode(&mut frame, 11).unwrap();
        let mut request = (frame.len() as i32).to_be_bytes().to_vec();
        request.extend_from_slice(&frame);
        let mut greedy = TcpStream::connect(addr).await.unwrap();
        for _ in 0..16 {
            greedy.write_all(&request).await.unwrap();
        }
        // Responses of 4 MiB each fill the socket buffers; the rest wait in the budget. (A
        // busy machine, the unit tier's other tests beside it, may take seconds to get there:
        // each step is awaited, not timed.)
        let held = wait_for(Duration::from_secs(20), || broker.responses().available_permits() < budget).await;
        assert!(held, "responses hold budget");
        let released = wait_for(Duration::from_secs(30), || {
            broker.budget().available_permits() == budget && broker.responses().available_permits() == budget
        })
        .await;
        assert!(released, "the budget came back once the connection was cut off");
        drop(greedy);
    }

    /// 16 long-polling Fetches and a hang-up: the connection's work ends with it, not
    /// when the last long poll would have (the orphaned handlers used to run to the end).
    #[tokio::test]
    async fn a_closed_connections_requests_stop() {
        use crate::broker::testing::with_storage;
        use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
        use kafka_protocol::messages::{ApiKey, FetchRequest, RequestHeader, TopicName};
        use kafka_protocol::protocol::{Encodable, StrBytes};
        let broker = broker_with_config(Config::default());
        with_storage(&broker, |s| s.create_topic("t", 1)).await.unwrap();
        let addr = serve_broker(broker.clone(), loopback_listener()).await;
        let topic = FetchTopic::default()
            .with_topic(TopicName(StrBytes::from_static_str("t")))
            .with_partitions(vec![FetchPartition::default().with_partition_max_bytes(1 << 20)]);
        let body = FetchRequest::default().with_max_bytes(1 << 20).with_min_bytes(1).with_max_wait_ms(20_000).with_topics(vec![topic]);
        let mut frame = bytes::BytesMut::new();
        RequestHeader::default().with_request_api_key(ApiKey::Fetch as i16).with_request_api_version(11).encode(&mut frame, 1).unwrap();
        body.encode(&mut frame, 11).unwrap();
        let mut request = (frame.len() as i32).to_be_bytes().to_vec();
        request.extend_from_slice(&frame);
        let mut client = TcpStream::connect(addr).await.unwrap();
        for _ in 0..16 {
            client.write_all(&request).await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(broker.connections().count(), 1, "long-polling");
        drop(client);
        let mut ended = false;
        for _ in 0..30 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if broker.connections().count() == 0 {
                ended = true;
                break;
            }
        }
        assert!(ended, "the connection's requests still run after it closed");
    }

    #[tokio::test]
    async fn idle_connections_are_closed() {
        let addr = serve_with(Config { connections_max_idle_ms: 200, ..Config::default() }).await;
        let mut idle = TcpStream::connect(addr).await.unwrap();
        let mut rest = Vec::new();
        let closed = tokio::time::timeout(Duration::from_secs(2), idle.read_to_end(&mut rest)).await;
        assert!(matches!(closed, Ok(Ok(0))), "{closed:?}");
    }
}
