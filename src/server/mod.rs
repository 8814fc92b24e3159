//! The Kafka listener: a tokio runtime on its own thread, one task per connection.
//!
//! ```text
//!  main thread                     pg_kafka-net thread (tokio runtime)
//!  start() ── bind ──▶ listener ──▶ accept loop ──▶ Connection task per client
//!                                      │                 │ frame → Broker::handle → frame
//!  begin_shutdown() ─▶ watch ──────────┴─────────────────┘ (finish current request, exit)
//! ```
//!
//! The listener is bound on the main thread so that a bad address or a port in use is
//! reported in the Postgres log before anything else starts. Threads started here block
//! every signal: Postgres's handlers belong to the main thread.

pub mod connection;

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::{watch, Semaphore};

use crate::broker::Broker;
use crate::config::Config;
use crate::logging;
use crate::broker::topics::TopicCache;
use crate::storage::bridge::StorageClient;
use crate::storage::watermarks::Watermarks;
use crate::storage::TopicChanges;
use crate::broker::group_coordinator::{GroupCoordinator, GroupSettings};
use crate::worker::group_commit::CommitQueue;

pub struct Server {
    pub local_addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    thread: JoinHandle<()>,
}

impl Server {
    /// Binds `host:port` and starts serving on a new thread.
    pub fn start(
        config: Arc<Config>,
        storage: StorageClient,
        commits: CommitQueue,
        watermarks: Watermarks,
        topic_changes: TopicChanges,
    ) -> std::io::Result<Server> {
        let listener = std::net::TcpListener::bind((config.host.as_str(), config.port))?;
        listener.set_nonblocking(true)?;
        let local_addr = listener.local_addr()?;
        let (shutdown, shutdown_rx) = watch::channel(false);
        let broker = Broker {
            advertised_port: local_addr.port(),
            config: config.clone(),
            storage,
            commits,
            watermarks,
            topics: TopicCache::default(),
            topic_changes,
            groups: GroupCoordinator::new(GroupSettings::from_config(&config)),
            shutdown: shutdown_rx.clone(),
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("pg_kafka-net")
            .enable_all()
            .build()?;
        let thread = spawn_without_signals("pg_kafka-net", move || {
            runtime.block_on(async move {
                tokio::spawn(broker.groups.clone().run_expiry(shutdown_rx.clone()));
                match tokio::net::TcpListener::from_std(listener) {
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
    let max_connections = broker.config.max_connections;
    let slots = Arc::new(Semaphore::new(max_connections));
    let budget = Arc::new(Semaphore::new(broker.config.max_inflight_bytes));
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
                "pg_kafka: refusing connection from {peer}: pg_kafka.max_connections ({max_connections}) reached"
            ));
            continue;
        };
        let connection = connection::Connection::new(stream, peer, broker.clone(), budget.clone(), shutdown.clone());
        tokio::spawn(async move {
            connection.run().await;
            drop(slot);
        });
    }
    drop(listener);
    let grace = Duration::from_millis(broker.config.shutdown_timeout_ms);
    let all_closed = slots.acquire_many(max_connections as u32);
    if tokio::time::timeout(grace, all_closed).await.is_err() {
        logging::warning("pg_kafka: connections still open after pg_kafka.shutdown_timeout_ms; closing them".into());
    }
}

/// Spawns a thread with every signal blocked; threads it starts inherit the mask.
fn spawn_without_signals<F: FnOnce() + Send + 'static>(name: &str, body: F) -> std::io::Result<JoinHandle<()>> {
    // SAFETY: plain libc signal-mask calls on sigset_t values we own.
    unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        let mut previous: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_BLOCK, &all, &mut previous);
        let spawned = std::thread::Builder::new().name(name.to_owned()).spawn(body);
        libc::pthread_sigmask(libc::SIG_SETMASK, &previous, std::ptr::null_mut());
        spawned
    }
}
