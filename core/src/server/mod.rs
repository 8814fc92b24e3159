//! The Kafka listener: a tokio runtime on its own thread, one task per connection.
//!
//! ```text
//!  main thread                     pg_kafka-net thread (tokio runtime)
//!  Listener::bind ─▶ Server::start ─▶ accept loop ──▶ Connection task per client
//!                                      │                 │ frame → Broker::handle → frame
//!  begin_shutdown() ─▶ watch ──────────┴─────────────────┘ (finish current request, exit)
//! ```
//!
//! The listener is bound on the main thread so that a bad address or a port in use is
//! reported in the Postgres log before anything else starts. Every thread started here
//! blocks every signal, the runtime's worker threads included (the runtime is built on
//! the blocked thread, so they inherit its mask): Postgres's handlers belong to the main
//! thread.

pub mod connection;
pub mod descriptors;

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use nix::sys::signal::{pthread_sigmask, SigSet, SigmaskHow};
use tokio::sync::{watch, Semaphore};

use crate::broker::Broker;
use crate::config::Config;
use crate::logging;

/// A bound listening socket, and the shutdown signal the broker built on it will watch.
pub struct Listener {
    socket: std::net::TcpListener,
    local_addr: SocketAddr,
    shutdown: watch::Sender<bool>,
}

impl Listener {
    /// Binds `host:port` from the configuration.
    pub fn bind(config: &Config) -> std::io::Result<Listener> {
        let socket = std::net::TcpListener::bind((config.host.as_str(), config.port))?;
        socket.set_nonblocking(true)?;
        let local_addr = socket.local_addr()?;
        let (shutdown, _) = watch::channel(false);
        Ok(Listener { socket, local_addr, shutdown })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
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
    /// Starts serving `listener` with `broker` on a new thread.
    pub fn start(listener: Listener, broker: Broker) -> std::io::Result<Server> {
        let Listener { socket, local_addr, shutdown } = listener;
        let shutdown_rx = shutdown.subscribe();
        let thread = spawn_without_signals("pg_kafka-net", move || {
            let runtime =
                match tokio::runtime::Builder::new_multi_thread().worker_threads(2).thread_name("pg_kafka-net").enable_all().build() {
                    Ok(runtime) => runtime,
                    Err(e) => return logging::warning(format!("pg_kafka: cannot start the network runtime: {e}")),
                };
            runtime.block_on(async move {
                tokio::spawn(broker.groups().clone().run_expiry(shutdown_rx.clone()));
                match tokio::net::TcpListener::from_std(socket) {
                    Ok(listener) => serve(listener, broker, shutdown_rx).await,
                    Err(e) => logging::warning(format!("pg_kafka: cannot use listener: {e}")),
                }
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

async fn serve(listener: tokio::net::TcpListener, broker: Broker, mut shutdown: watch::Receiver<bool>) {
    let max_connections = connection_limit(broker.config().max_connections);
    let slots = Arc::new(Semaphore::new(max_connections));
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
        let connection = connection::Connection::new(stream, peer, broker.clone(), shutdown.clone());
        tokio::spawn(async move {
            connection.run().await;
            drop(slot);
        });
    }
    drop(listener);
    let grace = Duration::from_millis(broker.config().shutdown_timeout_ms);
    let all_closed = slots.acquire_many(max_connections as u32);
    if tokio::time::timeout(grace, all_closed).await.is_err() {
        logging::warning("pg_kafka: connections still open after pg_kafka.shutdown_timeout_ms; closing them".into());
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
            for _ in 0..4 {
                let report = report.clone();
                runtime.spawn(async move {
                    let mask = SigSet::thread_get_mask().unwrap();
                    report.send([Signal::SIGTERM, Signal::SIGHUP, Signal::SIGINT].map(|s| mask.contains(s))).unwrap();
                });
            }
            drop(report);
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
