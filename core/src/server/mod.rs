//! The Kafka listener: a tokio runtime on its own thread, one task per connection.
//!
//! ```text
//!  main thread                     pg_kafka-net thread (tokio runtime)
//!  Listener::bind ─▶ Server::start ─▶ accept loop ──▶ Connection task per client
//!                                      │                 │ frame → Broker::handle → frame
//!  begin_shutdown() ─▶ watch ──────────┴─────────────────┘ (finish current request, exit)
//! ```
//!
//! The listeners (one per security protocol, `pg_kafka.listeners`) are bound on the main
//! thread so that a bad address, a port in use, an unreadable certificate or an
//! unauthenticated remote listener is reported in the Postgres log before anything else
//! starts. Every thread started here
//! blocks every signal, the runtime's worker threads included (the runtime is built on
//! the blocked thread, so they inherit its mask): Postgres's handlers belong to the main
//! thread.

pub mod connection;
pub mod descriptors;
pub mod metrics_http;
pub mod tls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use nix::sys::signal::{pthread_sigmask, SigSet, SigmaskHow};
use tokio::sync::{watch, Semaphore};
use tokio_rustls::TlsAcceptor;

use crate::broker::sasl::{PLAIN, SCRAM_SHA_256};
use crate::broker::session::ListenerInfo;
use crate::broker::Broker;
use crate::config::{ClientAuth, Config};
use crate::logging;
use crate::security::listeners::{self, ListenerError, ListenerSpec, SecurityProtocol};

/// Why the listeners could not be started.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    #[error("{0}")]
    Config(#[from] ListenerError),
    #[error("TLS listener: {0}")]
    Tls(#[from] tls::TlsError),
    #[error("cannot listen on {address}: {source}")]
    Bind { address: String, source: std::io::Error },
}

/// One bound listening socket and what it offers.
struct Bound {
    socket: std::net::TcpListener,
    info: Arc<ListenerInfo>,
    tls: Option<TlsAcceptor>,
}

/// The bound listening sockets, and the shutdown signal the broker built on them watches.
pub struct Listener {
    bound: Vec<Bound>,
    /// Where reader processes connect, if any are configured.
    readers: Option<std::os::unix::net::UnixListener>,
    /// The Prometheus endpoint, when `pg_kafka.metrics_listener` asks for one.
    metrics: Option<std::net::TcpListener>,
    shutdown: watch::Sender<bool>,
}

/// The listeners `config` asks for: `pg_kafka.listeners`, or one PLAINTEXT listener on
/// `pg_kafka.host`:`pg_kafka.port` advertised as `pg_kafka.advertised_host`.
pub fn listener_specs(config: &Config) -> Result<Vec<ListenerSpec>, ListenerError> {
    if config.listeners.trim().is_empty() {
        let legacy = ListenerSpec {
            protocol: SecurityProtocol::Plaintext,
            host: config.host.clone(),
            port: config.port,
            advertised: Some((config.advertised_host.clone(), 0)),
        };
        return Ok(vec![legacy]);
    }
    listeners::parse(&config.listeners, &config.advertised_listeners)
}

fn is_wildcard(host: &str) -> bool {
    host.is_empty() || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_unspecified())
}

/// What a bound listener offers and advertises (port 0 in an advertised address: the
/// bound port).
fn listener_info(spec: &ListenerSpec, bound_port: u16, config: &Config) -> ListenerInfo {
    let (advertised_host, advertised_port) = match &spec.advertised {
        Some((host, port)) => (Some(host.clone()), if *port == 0 { bound_port } else { *port }),
        None => ((!is_wildcard(&spec.host)).then(|| spec.host.clone()), bound_port),
    };
    let mechanisms = match spec.protocol {
        SecurityProtocol::SaslSsl => vec![SCRAM_SHA_256, PLAIN],
        SecurityProtocol::SaslPlaintext if config.sasl_plain_without_tls => vec![SCRAM_SHA_256, PLAIN],
        SecurityProtocol::SaslPlaintext => vec![SCRAM_SHA_256],
        _ => vec![],
    };
    ListenerInfo { protocol: spec.protocol, advertised_host, advertised_port, mechanisms }
}

impl Listener {
    /// Binds every listener of the configuration; refuses unsafe ones before binding any.
    pub fn bind(config: &Config) -> Result<Listener, ListenError> {
        let specs = listener_specs(config)?;
        let client_certs_required = config.ssl_client_auth == ClientAuth::Required;
        for spec in &specs {
            listeners::check_secure(spec, client_certs_required, config.allow_unauthenticated_remote)?;
        }
        let acceptor = if specs.iter().any(|s| s.protocol.uses_tls()) { Some(tls::acceptor(config)?) } else { None };
        let mut bound = Vec::with_capacity(specs.len());
        for spec in &specs {
            let address = format!("{}://{}:{}", spec.protocol.name(), spec.host, spec.port);
            let bind = || -> std::io::Result<std::net::TcpListener> {
                let socket = std::net::TcpListener::bind((spec.host.as_str(), spec.port))?;
                socket.set_nonblocking(true)?;
                Ok(socket)
            };
            let socket = bind().map_err(|source| ListenError::Bind { address, source })?;
            let port = socket.local_addr().map_err(|source| ListenError::Bind { address: spec.host.clone(), source })?.port();
            let tls = spec.protocol.uses_tls().then(|| acceptor.clone()).flatten();
            bound.push(Bound { socket, info: Arc::new(listener_info(spec, port, config)), tls });
        }
        let (shutdown, _) = watch::channel(false);
        Ok(Listener { bound, readers: bind_reader_socket(config), metrics: bind_metrics(config), shutdown })
    }

    /// The first listener's address (the one the legacy settings describe).
    pub fn local_addr(&self) -> SocketAddr {
        self.bound[0].socket.local_addr().expect("a bound socket has an address")
    }

    /// `PROTOCOL://address` of each listener, for the log.
    pub fn describe(&self) -> String {
        let each = self.bound.iter().map(|b| {
            let address = b.socket.local_addr().map(|a| a.to_string()).unwrap_or_default();
            let (host, port) = (b.info.advertised_host.clone().unwrap_or_else(|| "(address used)".into()), b.info.advertised_port);
            format!("{}://{address} (advertised as {host}:{port})", b.info.protocol.name())
        });
        let mut described = each.collect::<Vec<_>>().join(", ");
        if let Some(address) = self.metrics.as_ref().and_then(|m| m.local_addr().ok()) {
            described.push_str(&format!("; Prometheus metrics on http://{address}/metrics"));
        }
        described
    }

    /// Becomes true when the server begins to shut down.
    pub fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }
}

pub struct Server {
    pub local_addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    thread: JoinHandle<()>,
}

impl Server {
    /// Starts serving every listener with `broker` on a new thread.
    pub fn start(listener: Listener, broker: Broker) -> std::io::Result<Server> {
        let local_addr = listener.local_addr();
        let Listener { bound, readers, metrics, shutdown } = listener;
        let shutdown_rx = shutdown.subscribe();
        let thread = spawn_without_signals("pg_kafka-net", move || {
            let runtime =
                match tokio::runtime::Builder::new_multi_thread().worker_threads(2).thread_name("pg_kafka-net").enable_all().build() {
                    Ok(runtime) => runtime,
                    Err(e) => return logging::warning(format!("pg_kafka: cannot start the network runtime: {e}")),
                };
            runtime.block_on(async move {
                tokio::spawn(broker.groups().clone().run_expiry(shutdown_rx.clone()));
                tokio::spawn(broker.clone().run_transactions(shutdown_rx.clone()));
                if let Some(socket) = readers {
                    tokio::spawn(broker.readers().clone().accept(socket, shutdown_rx.clone()));
                }
                if let Some(socket) = metrics {
                    tokio::spawn(metrics_http::serve(socket, broker.figures(), shutdown_rx.clone()));
                }
                serve(bound, broker, shutdown_rx).await
            });
            runtime.shutdown_timeout(Duration::from_millis(100));
        })?;
        Ok(Server { local_addr, shutdown, thread })
    }

    /// Stops accepting; open connections finish their current request and close.
    pub fn begin_shutdown(&self) {
        let _ = self.shutdown.send(true);
    }

    pub fn is_finished(&self) -> bool {
        self.thread.is_finished()
    }

    pub fn join(self) {
        let _ = self.thread.join();
    }
}

/// The metrics endpoint's socket, when `pg_kafka.metrics_listener` names one. An address
/// that cannot be bound costs only the endpoint (logged): Kafka clients are still served.
fn bind_metrics(config: &Config) -> Option<std::net::TcpListener> {
    let address = config.metrics_listener.trim();
    if address.is_empty() {
        return None;
    }
    match metrics_http::bind(address) {
        Ok(socket) => Some(socket),
        Err(e) => {
            logging::warning(format!("pg_kafka: cannot listen for Prometheus scrapes on {address} (pg_kafka.metrics_listener): {e}"));
            None
        }
    }
}

/// The reader processes' socket, when `pg_kafka.readers` asks for some. A socket that
/// cannot be bound costs only the readers: Fetch then reads on the main thread.
fn bind_reader_socket(config: &Config) -> Option<std::os::unix::net::UnixListener> {
    if config.readers == 0 || config.reader_socket.is_empty() {
        return None;
    }
    match crate::storage::readers::bind(&config.reader_socket) {
        Ok(socket) => Some(socket),
        Err(e) => {
            logging::warning(format!("pg_kafka: cannot listen for reader processes on {}: {e}", config.reader_socket));
            None
        }
    }
}

/// Accepts on every listener until shutdown, then gives open connections their grace.
async fn serve(bound: Vec<Bound>, broker: Broker, shutdown: watch::Receiver<bool>) {
    let max_connections = connection_limit(broker.config().max_connections);
    let slots = Arc::new(Semaphore::new(max_connections));
    let mut accepting = Vec::new();
    for listener in bound {
        match tokio::net::TcpListener::from_std(listener.socket) {
            Ok(socket) => {
                let (broker, slots, shutdown) = (broker.clone(), slots.clone(), shutdown.clone());
                accepting.push(tokio::spawn(accept_loop(socket, listener.info, listener.tls, broker, slots, shutdown)));
            }
            Err(e) => logging::warning(format!("pg_kafka: cannot use listener: {e}")),
        }
    }
    for loop_ in accepting {
        let _ = loop_.await;
    }
    let grace = Duration::from_millis(broker.config().shutdown_timeout_ms);
    let all_closed = slots.acquire_many(max_connections as u32);
    if tokio::time::timeout(grace, all_closed).await.is_err() {
        logging::warning("pg_kafka: connections still open after pg_kafka.shutdown_timeout_ms; closing them".into());
    }
}

async fn accept_loop(
    listener: tokio::net::TcpListener,
    info: Arc<ListenerInfo>,
    tls: Option<TlsAcceptor>,
    broker: Broker,
    slots: Arc<Semaphore>,
    mut shutdown: watch::Receiver<bool>,
) {
    let max_connections = broker.config().max_connections;
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.changed() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // EMFILE and the like: back off instead of spinning.
                    logging::warning(format!("pg_kafka: accept failed: {e}"));
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            logging::warning(format!(
                "pg_kafka: refusing connection from {peer}: the connection limit ({max_connections}, pg_kafka.max_connections) is reached"
            ));
            continue;
        };
        let connection = connection::Connection::new(stream, peer, info.clone(), tls.clone(), broker.clone(), shutdown.clone());
        tokio::spawn(async move {
            connection.run().await;
            drop(slot);
        });
    }
}

/// `max_connections`, lowered if the descriptor limit (raised as far as allowed) cannot
/// hold that many beside the reserve for Postgres.
fn connection_limit(wanted: usize) -> usize {
    match descriptors::raise_limit() {
        Ok(limit) => {
            let cap = descriptors::connection_cap(wanted, limit);
            if cap < wanted {
                logging::warning(format!(
                    "pg_kafka: serving at most {cap} connections, not pg_kafka.max_connections ({wanted}): the open files limit is {limit} and {} are kept for Postgres",
                    descriptors::RESERVED_FOR_POSTGRES
                ));
            }
            cap
        }
        Err(e) => {
            logging::warning(format!("pg_kafka: cannot read or raise the open files limit: {e}"));
            wanted
        }
    }
}

/// Spawns a thread with every signal blocked; threads it starts inherit the mask.
fn spawn_without_signals<F: FnOnce() + Send + 'static>(name: &str, body: F) -> std::io::Result<JoinHandle<()>> {
    let mut previous = SigSet::empty();
    pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&SigSet::all()), Some(&mut previous))?;
    let spawned = std::thread::Builder::new().name(name.to_owned()).spawn(body);
    pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&previous), None)?;
    spawned
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::signal::Signal;

    #[test]
    fn runtime_threads_block_every_signal() {
        let (report, masks) = std::sync::mpsc::channel();
        let thread = spawn_without_signals("test-net", move || {
            let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).build().unwrap();
            let tasks: Vec<_> = (0..4)
                .map(|_| {
                    let report = report.clone();
                    runtime.spawn(async move {
                        let mask = SigSet::thread_get_mask().unwrap();
                        report.send([Signal::SIGTERM, Signal::SIGHUP, Signal::SIGINT].map(|s| mask.contains(s))).unwrap();
                    })
                })
                .collect();
            drop(report);
            // Wait for every task: shutting down drops tasks that have not run yet.
            runtime.block_on(async {
                for task in tasks {
                    task.await.unwrap();
                }
            });
            runtime.shutdown_timeout(Duration::from_secs(1));
        })
        .unwrap();
        thread.join().unwrap();
        let masks: Vec<_> = masks.iter().collect();
        assert_eq!(masks.len(), 4);
        assert!(masks.iter().all(|m| m.iter().all(|blocked| *blocked)), "{masks:?}");
        let own = SigSet::thread_get_mask().unwrap();
        assert!(!own.contains(Signal::SIGTERM), "the caller's mask is restored");
    }
}
