//! The broker's settings as plain data, and the one table of their defaults.
//!
//! The glue crate registers a `pg_kafka.*` GUC for each field, initialised from
//! [`defaults`], and copies the GUC values into a [`Config`] on the main thread; the
//! network side owns that snapshot. Tests build a `Config` with `Config::default()`, which
//! reads the same table, so a default is written down exactly once.

pub mod nodes;
pub mod topic;

use std::ffi::CStr;
use std::sync::Arc;

use parking_lot::RwLock;

/// Every setting's default. The GUC declarations and [`Config::default`] both read these.
pub mod defaults {
    use std::ffi::CStr;

    pub const HOST: &CStr = c"127.0.0.1";
    /// The node id a broker alone (or the first of a replicated set) has.
    pub const NODE_ID: i32 = 1;
    pub const CLUSTER_NODES: &CStr = c"";
    pub const PORT: i32 = 9092;
    pub const DATABASE: &CStr = c"postgres";
    pub const LOG_CONNECTIONS: bool = false;
    pub const SHUTDOWN_TIMEOUT_MS: i32 = 5000;
    pub const MAX_FRAME_BYTES: i32 = 100 * 1024 * 1024;
    pub const MAX_CONNECTIONS: i32 = 1000;
    pub const DEFAULT_PARTITIONS: i32 = 1;
    pub const AUTO_CREATE_TOPICS: bool = true;
    pub const DEFAULT_TOPIC_STORAGE: crate::storage::StorageLayout = crate::storage::StorageLayout::Rows;
    pub const FLUSH_INTERVAL_MS: i32 = 2;
    pub const MAX_BATCH_BYTES: i32 = 16 * 1024 * 1024;
    pub const MAX_INFLIGHT_BYTES: i32 = 256 * 1024 * 1024;
    pub const SYNCHRONOUS_COMMIT: super::SynchronousCommit = super::SynchronousCommit::On;
    pub const REFRESH_INTERVAL_MS: i32 = 500;
    pub const MAX_WAIT_MS: i32 = 30_000;
    pub const TRANSACTION_MAX_TIMEOUT_MS: i32 = 900_000;
    /// Kafka's `transactional.id.expiration.ms`: 7 days.
    pub const TRANSACTIONAL_ID_EXPIRATION_MS: i32 = 604_800_000;
    /// Transactions V2 (KIP-890) for the clients that know it.
    pub const TRANSACTION_VERSION: i32 = 2;
    pub const GROUP_MIN_SESSION_TIMEOUT_MS: i32 = 6000;
    pub const GROUP_MAX_SESSION_TIMEOUT_MS: i32 = 1_800_000;
    pub const GROUP_INITIAL_REBALANCE_DELAY_MS: i32 = 3000;
    pub const GROUP_MAX_SIZE: i32 = 1000;
    pub const RETENTION_CHECK_INTERVAL_MS: i32 = 60_000;
    pub const COMPACTION_WORK_PERCENT: i32 = 50;
    pub const LOCK_TIMEOUT_MS: i32 = 1000;
    pub const STATEMENT_TIMEOUT_MS: i32 = 30_000;
    pub const REQUEST_TIMEOUT_MS: i32 = 30_000;
    pub const CONNECTIONS_MAX_IDLE_MS: i32 = 600_000;
    /// Kafka's broker default `fetch.max.bytes` (55 MiB).
    pub const FETCH_MAX_BYTES: i32 = 55 * 1024 * 1024;
    /// Empty: one PLAINTEXT listener on `HOST`:`PORT`.
    pub const LISTENERS: &CStr = c"";
    pub const ADVERTISED_LISTENERS: &CStr = c"";
    /// Empty: no Prometheus endpoint.
    pub const METRICS_LISTENER: &CStr = c"";
    pub const ALLOW_UNAUTHENTICATED_REMOTE: bool = false;
    pub const SASL_PLAIN_WITHOUT_TLS: bool = false;
    /// Empty: Postgres's own `ssl_cert_file` / `ssl_key_file`.
    pub const SSL_CERT_FILE: &CStr = c"";
    pub const SSL_KEY_FILE: &CStr = c"";
    pub const SSL_CA_FILE: &CStr = c"";
    pub const SSL_CLIENT_AUTH: super::ClientAuth = super::ClientAuth::None;
    /// 0: sessions never need re-authentication.
    pub const CONNECTIONS_MAX_REAUTH_MS: i32 = 0;
    /// Reader processes serving Fetch beside the group commit (0: the main thread reads).
    pub const READERS: i32 = 2;
}

/// Whether TLS listeners ask clients for a certificate (Kafka's `ssl.client.auth`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientAuth {
    None,
    Requested,
    Required,
}

/// `synchronous_commit` of the writer's transactions: Postgres's own values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SynchronousCommit {
    On,
    Off,
    Local,
    RemoteWrite,
    RemoteApply,
}

impl SynchronousCommit {
    /// The value as Postgres's `synchronous_commit` setting spells it.
    pub fn as_setting(self) -> &'static str {
        match self {
            SynchronousCommit::On => "on",
            SynchronousCommit::Off => "off",
            SynchronousCommit::Local => "local",
            SynchronousCommit::RemoteWrite => "remote_write",
            SynchronousCommit::RemoteApply => "remote_apply",
        }
    }
}

/// Everything the network side needs to know, copied off the GUCs on the main thread.
#[derive(Clone, Debug)]
pub struct Config {
    /// Address to listen on.
    pub host: String,
    /// Port to listen on; 0 picks a free port (used by the pgrx test cluster).
    pub port: u16,
    /// Host name Metadata tells clients to connect to.
    pub advertised_host: String,
    /// Database the worker connects to and keeps its tables in.
    pub database: String,
    pub log_connections: bool,
    pub shutdown_timeout_ms: u64,
    /// Largest request frame accepted; larger ones close the connection unread.
    pub max_frame_bytes: usize,
    pub max_connections: usize,
    pub default_partitions: i32,
    pub auto_create_topics: bool,
    /// How topics created without a `pg_kafka.storage` config store their messages.
    pub default_topic_storage: crate::storage::StorageLayout,
    /// The group-commit writer flushes at most this often (0: as soon as anything is queued).
    pub flush_interval_ms: u64,
    /// One flush writes at most this many payload bytes; reaching it flushes early.
    pub max_batch_bytes: usize,
    /// Request bytes held at once across all connections, from read to response.
    pub max_inflight_bytes: usize,
    /// `synchronous_commit` of the writer's session.
    pub synchronous_commit: SynchronousCommit,
    /// How often partition bounds are re-read, to see rows written by SQL sessions.
    pub refresh_interval_ms: u64,
    /// Longest a Fetch is held waiting for data, whatever its `max_wait_ms` asks.
    pub max_wait_ms: u64,
    /// Longest `transaction.timeout.ms` a transactional producer may ask for (Kafka's
    /// `transaction.max.timeout.ms`); InitProducerId above it gets INVALID_TRANSACTION_TIMEOUT.
    pub transaction_max_timeout_ms: i64,
    /// How long a transactional id with no transaction open is kept after its last change
    /// (Kafka's `transactional.id.expiration.ms`); then it is forgotten.
    pub transactional_id_expiration_ms: i64,
    /// The `transaction.version` feature ApiVersions finalizes (Kafka's feature levels: 2 is
    /// Transactions V2, KIP-890; 0 and 1 keep clients on V1).
    pub transaction_version: i16,
    /// When these settings were read (ms since the epoch): the epoch of the features
    /// ApiVersions finalizes, so a client sees a change at a reload.
    pub features_epoch: i64,
    /// Session timeouts a JoinGroup may ask for (Kafka's `group.min/max.session.timeout.ms`).
    pub group_min_session_timeout_ms: u64,
    pub group_max_session_timeout_ms: u64,
    /// How long the first rebalance of an empty group waits for more members.
    pub group_initial_rebalance_delay_ms: u64,
    /// Most members (and members awaiting their id) one group may have.
    pub group_max_size: usize,
    /// How often `retention.ms` / `retention.bytes` are applied.
    pub retention_check_interval_ms: u64,
    /// The share of its time a compaction pass in a reader works (it rests the rest,
    /// between chunks), 1..=100.
    pub compaction_work_percent: u32,
    /// `lock_timeout` of the worker's session: a lock held by a user's session fails the
    /// worker's transaction (producers get a retriable error) instead of freezing it.
    pub lock_timeout_ms: u64,
    /// Longest one unit of storage work (a job, a group commit) may run on the storage
    /// thread before Postgres cancels it (SQLSTATE 57014); 0 for no limit.
    pub statement_timeout_ms: u64,
    /// Longest a request frame may take to arrive once its size was read; the connection
    /// is closed (and what it held released) after that.
    pub request_timeout_ms: u64,
    /// A connection with no request for this long is closed (Kafka's
    /// `connections.max.idle.ms`).
    pub connections_max_idle_ms: u64,
    /// Largest Fetch response, whatever the client asks (Kafka's `fetch.max.bytes`).
    pub fetch_max_bytes: usize,
    /// Kafka-style listener list (`PLAINTEXT://127.0.0.1:9092,SASL_SSL://0.0.0.0:9093`);
    /// empty for one PLAINTEXT listener on `host`:`port`.
    pub listeners: String,
    /// What each listener tells clients to connect to, by protocol name.
    pub advertised_listeners: String,
    /// `host:port` of the Prometheus metrics endpoint; empty for none.
    pub metrics_listener: String,
    /// Lets a listener reachable from other hosts accept unauthenticated clients.
    pub allow_unauthenticated_remote: bool,
    /// Offers SASL PLAIN on SASL_PLAINTEXT listeners (passwords in clear on the network).
    pub sasl_plain_without_tls: bool,
    /// PEM files of the TLS listeners: certificate chain, private key, and the CAs client
    /// certificates must chain to.
    pub ssl_cert_file: String,
    pub ssl_key_file: String,
    pub ssl_ca_file: String,
    pub ssl_client_auth: ClientAuth,
    /// KIP-368 session lifetime; 0 for none.
    pub connections_max_reauth_ms: u64,
    /// Reader processes the worker starts for Fetch's reads (`pg_kafka.readers`).
    pub readers: usize,
    /// Where reader processes connect (an abstract Unix socket `@NAME` set by the worker,
    /// or a socket file in tests); empty: no readers.
    pub reader_socket: String,
    /// Whether this node is a hot standby (Postgres in recovery when the worker started):
    /// it serves reads only, and writes and groups are the primary's (docs/replication.md).
    /// Set by the worker, not a setting.
    pub standby: bool,
    /// This node's id (`pg_kafka.node_id`): Kafka's `node.id`.
    pub node_id: i32,
    /// Every node clients may reach (`pg_kafka.cluster_nodes`, parsed); empty for a node
    /// alone.
    pub cluster_nodes: Vec<nodes::NodeAddress>,
}

fn text(value: &CStr) -> String {
    value.to_string_lossy().into_owned()
}

/// A non-negative default as the unsigned type a field holds.
fn count(value: i32) -> u64 {
    u64::try_from(value).expect("defaults are non-negative")
}

impl Default for Config {
    /// The documented defaults, from [`defaults`].
    fn default() -> Self {
        use defaults as d;
        Config {
            host: text(d::HOST),
            port: u16::try_from(d::PORT).expect("a port"),
            advertised_host: text(d::HOST),
            database: text(d::DATABASE),
            log_connections: d::LOG_CONNECTIONS,
            shutdown_timeout_ms: count(d::SHUTDOWN_TIMEOUT_MS),
            max_frame_bytes: count(d::MAX_FRAME_BYTES) as usize,
            max_connections: count(d::MAX_CONNECTIONS) as usize,
            default_partitions: d::DEFAULT_PARTITIONS,
            auto_create_topics: d::AUTO_CREATE_TOPICS,
            default_topic_storage: d::DEFAULT_TOPIC_STORAGE,
            flush_interval_ms: count(d::FLUSH_INTERVAL_MS),
            max_batch_bytes: count(d::MAX_BATCH_BYTES) as usize,
            max_inflight_bytes: count(d::MAX_INFLIGHT_BYTES) as usize,
            synchronous_commit: d::SYNCHRONOUS_COMMIT,
            refresh_interval_ms: count(d::REFRESH_INTERVAL_MS),
            max_wait_ms: count(d::MAX_WAIT_MS),
            transaction_max_timeout_ms: i64::from(d::TRANSACTION_MAX_TIMEOUT_MS),
            transactional_id_expiration_ms: i64::from(d::TRANSACTIONAL_ID_EXPIRATION_MS),
            transaction_version: d::TRANSACTION_VERSION as i16,
            features_epoch: 0,
            group_min_session_timeout_ms: count(d::GROUP_MIN_SESSION_TIMEOUT_MS),
            group_max_session_timeout_ms: count(d::GROUP_MAX_SESSION_TIMEOUT_MS),
            group_initial_rebalance_delay_ms: count(d::GROUP_INITIAL_REBALANCE_DELAY_MS),
            group_max_size: count(d::GROUP_MAX_SIZE) as usize,
            retention_check_interval_ms: count(d::RETENTION_CHECK_INTERVAL_MS),
            compaction_work_percent: count(d::COMPACTION_WORK_PERCENT) as u32,
            lock_timeout_ms: count(d::LOCK_TIMEOUT_MS),
            statement_timeout_ms: count(d::STATEMENT_TIMEOUT_MS),
            request_timeout_ms: count(d::REQUEST_TIMEOUT_MS),
            connections_max_idle_ms: count(d::CONNECTIONS_MAX_IDLE_MS),
            fetch_max_bytes: count(d::FETCH_MAX_BYTES) as usize,
            listeners: text(d::LISTENERS),
            advertised_listeners: text(d::ADVERTISED_LISTENERS),
            metrics_listener: text(d::METRICS_LISTENER),
            allow_unauthenticated_remote: d::ALLOW_UNAUTHENTICATED_REMOTE,
            sasl_plain_without_tls: d::SASL_PLAIN_WITHOUT_TLS,
            ssl_cert_file: text(d::SSL_CERT_FILE),
            ssl_key_file: text(d::SSL_KEY_FILE),
            ssl_ca_file: text(d::SSL_CA_FILE),
            ssl_client_auth: d::SSL_CLIENT_AUTH,
            connections_max_reauth_ms: count(d::CONNECTIONS_MAX_REAUTH_MS),
            readers: count(d::READERS) as usize,
            reader_socket: String::new(),
            standby: false,
            node_id: d::NODE_ID,
            cluster_nodes: Vec::new(),
        }
    }
}

/// The settings the network side reads, replaced whole when Postgres reloads its
/// configuration (SIGHUP). Readers take a snapshot per request or per frame, so one
/// request never sees half of a reload.
#[derive(Clone, Debug)]
pub struct SharedConfig(Arc<RwLock<Arc<Config>>>);

impl SharedConfig {
    pub fn new(config: Config) -> SharedConfig {
        SharedConfig(Arc::new(RwLock::new(Arc::new(config))))
    }

    /// The settings in force now.
    pub fn current(&self) -> Arc<Config> {
        self.0.read().clone()
    }

    /// Puts reloaded settings in force; what was fixed at start (listener, budgets, the
    /// writer's and the coordinator's settings) keeps its start-up value wherever it is used.
    pub fn replace(&self, config: Config) {
        *self.0.write() = Arc::new(config);
    }
}
