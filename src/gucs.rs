//! The `pg_kafka.*` GUCs: declared here, read here, and copied into the core's plain
//! [`Config`] for the network side.
//!
//! GUC values may only be read on the Postgres main thread (pgrx checks this), so the
//! worker reads them at start-up into a `Config`, a plain `Clone + Send` struct that the
//! tokio side owns, and again on SIGHUP (`pg_reload_conf()`): the settings read per
//! request or per frame are `PGC_SIGHUP` and take effect then; the others (listener,
//! budgets, the writer's and the coordinator's settings) are `PGC_POSTMASTER` and need a
//! restart. Every default comes from `pg_kafka_core::config::defaults`, the one table.

use std::ffi::CString;

use pg_kafka_core::config::{defaults, nodes, ClientAuth, Config, SynchronousCommit};
use pg_kafka_core::storage::StorageLayout;
use pgrx::{pg_sys, GucContext, GucFlags, GucRegistry, GucSetting, PostgresGucEnum};

static HOST: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(Some(defaults::HOST));
static PORT: GucSetting<i32> = GucSetting::<i32>::new(defaults::PORT);
static ADVERTISED_HOST: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
static DATABASE: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(Some(defaults::DATABASE));
static LOG_CONNECTIONS: GucSetting<bool> = GucSetting::<bool>::new(defaults::LOG_CONNECTIONS);
static SHUTDOWN_TIMEOUT_MS: GucSetting<i32> = GucSetting::<i32>::new(defaults::SHUTDOWN_TIMEOUT_MS);
static MAX_FRAME_BYTES: GucSetting<i32> = GucSetting::<i32>::new(defaults::MAX_FRAME_BYTES);
static MAX_CONNECTIONS: GucSetting<i32> = GucSetting::<i32>::new(defaults::MAX_CONNECTIONS);
static DEFAULT_PARTITIONS: GucSetting<i32> = GucSetting::<i32>::new(defaults::DEFAULT_PARTITIONS);
static AUTO_CREATE_TOPICS: GucSetting<bool> = GucSetting::<bool>::new(defaults::AUTO_CREATE_TOPICS);
static FLUSH_INTERVAL_MS: GucSetting<i32> = GucSetting::<i32>::new(defaults::FLUSH_INTERVAL_MS);
static MAX_BATCH_BYTES: GucSetting<i32> = GucSetting::<i32>::new(defaults::MAX_BATCH_BYTES);
static MAX_INFLIGHT_BYTES: GucSetting<i32> = GucSetting::<i32>::new(defaults::MAX_INFLIGHT_BYTES);
static REFRESH_INTERVAL_MS: GucSetting<i32> = GucSetting::<i32>::new(defaults::REFRESH_INTERVAL_MS);
static MAX_WAIT_MS: GucSetting<i32> = GucSetting::<i32>::new(defaults::MAX_WAIT_MS);
static TRANSACTION_MAX_TIMEOUT_MS: GucSetting<i32> = GucSetting::<i32>::new(defaults::TRANSACTION_MAX_TIMEOUT_MS);
static TRANSACTIONAL_ID_EXPIRATION_MS: GucSetting<i32> = GucSetting::<i32>::new(defaults::TRANSACTIONAL_ID_EXPIRATION_MS);
static TRANSACTION_VERSION: GucSetting<i32> = GucSetting::<i32>::new(defaults::TRANSACTION_VERSION);
static GROUP_MIN_SESSION_TIMEOUT_MS: GucSetting<i32> = GucSetting::<i32>::new(defaults::GROUP_MIN_SESSION_TIMEOUT_MS);
static GROUP_MAX_SESSION_TIMEOUT_MS: GucSetting<i32> = GucSetting::<i32>::new(defaults::GROUP_MAX_SESSION_TIMEOUT_MS);
static GROUP_INITIAL_REBALANCE_DELAY_MS: GucSetting<i32> = GucSetting::<i32>::new(defaults::GROUP_INITIAL_REBALANCE_DELAY_MS);
static GROUP_MAX_SIZE: GucSetting<i32> = GucSetting::<i32>::new(defaults::GROUP_MAX_SIZE);
static RETENTION_CHECK_INTERVAL_MS: GucSetting<i32> = GucSetting::<i32>::new(defaults::RETENTION_CHECK_INTERVAL_MS);
static COMPACTION_WORK_PERCENT: GucSetting<i32> = GucSetting::<i32>::new(defaults::COMPACTION_WORK_PERCENT);
static REQUEST_TIMEOUT_MS: GucSetting<i32> = GucSetting::<i32>::new(defaults::REQUEST_TIMEOUT_MS);
static CONNECTIONS_MAX_IDLE_MS: GucSetting<i32> = GucSetting::<i32>::new(defaults::CONNECTIONS_MAX_IDLE_MS);
static FETCH_MAX_BYTES: GucSetting<i32> = GucSetting::<i32>::new(defaults::FETCH_MAX_BYTES);
static STATEMENT_TIMEOUT_MS: GucSetting<i32> = GucSetting::<i32>::new(defaults::STATEMENT_TIMEOUT_MS);
static LOCK_TIMEOUT_MS: GucSetting<i32> = GucSetting::<i32>::new(defaults::LOCK_TIMEOUT_MS);
static LISTENERS: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(Some(defaults::LISTENERS));
static ADVERTISED_LISTENERS: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(Some(defaults::ADVERTISED_LISTENERS));
static METRICS_LISTENER: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(Some(defaults::METRICS_LISTENER));
static ALLOW_UNAUTHENTICATED_REMOTE: GucSetting<bool> = GucSetting::<bool>::new(defaults::ALLOW_UNAUTHENTICATED_REMOTE);
static SASL_PLAIN_WITHOUT_TLS: GucSetting<bool> = GucSetting::<bool>::new(defaults::SASL_PLAIN_WITHOUT_TLS);
static SSL_CERT_FILE: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(Some(defaults::SSL_CERT_FILE));
static SSL_KEY_FILE: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(Some(defaults::SSL_KEY_FILE));
static SSL_CA_FILE: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(Some(defaults::SSL_CA_FILE));
static SSL_CLIENT_AUTH: GucSetting<ClientAuthGuc> = GucSetting::<ClientAuthGuc>::new(ClientAuthGuc::from_core(defaults::SSL_CLIENT_AUTH));
static CONNECTIONS_MAX_REAUTH_MS: GucSetting<i32> = GucSetting::<i32>::new(defaults::CONNECTIONS_MAX_REAUTH_MS);
static READERS: GucSetting<i32> = GucSetting::<i32>::new(defaults::READERS);
static NODE_ID: GucSetting<i32> = GucSetting::<i32>::new(defaults::NODE_ID);
static CLUSTER_NODES: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(Some(defaults::CLUSTER_NODES));
static DEFAULT_TOPIC_STORAGE: GucSetting<TopicStorageGuc> =
    GucSetting::<TopicStorageGuc>::new(TopicStorageGuc::from_core(defaults::DEFAULT_TOPIC_STORAGE));
static SYNCHRONOUS_COMMIT: GucSetting<SynchronousCommitGuc> =
    GucSetting::<SynchronousCommitGuc>::new(SynchronousCommitGuc::from_core(defaults::SYNCHRONOUS_COMMIT));

/// `pg_kafka.synchronous_commit` as an enum GUC: Postgres refuses a value that is not one
/// of these when the configuration is loaded, with its own message listing the choices,
/// instead of the worker failing on it later.
#[derive(Clone, Copy, Debug, PostgresGucEnum)]
enum SynchronousCommitGuc {
    #[name = c"on"]
    On,
    #[name = c"off"]
    Off,
    #[name = c"local"]
    Local,
    #[name = c"remote_write"]
    RemoteWrite,
    #[name = c"remote_apply"]
    RemoteApply,
}

impl SynchronousCommitGuc {
    const fn from_core(value: SynchronousCommit) -> Self {
        match value {
            SynchronousCommit::On => Self::On,
            SynchronousCommit::Off => Self::Off,
            SynchronousCommit::Local => Self::Local,
            SynchronousCommit::RemoteWrite => Self::RemoteWrite,
            SynchronousCommit::RemoteApply => Self::RemoteApply,
        }
    }

    fn to_core(self) -> SynchronousCommit {
        match self {
            Self::On => SynchronousCommit::On,
            Self::Off => SynchronousCommit::Off,
            Self::Local => SynchronousCommit::Local,
            Self::RemoteWrite => SynchronousCommit::RemoteWrite,
            Self::RemoteApply => SynchronousCommit::RemoteApply,
        }
    }
}

/// `pg_kafka.default_topic_storage`: the layouts of `StorageLayout`, by their names.
#[derive(Clone, Copy, Debug, PostgresGucEnum)]
enum TopicStorageGuc {
    #[name = c"rows"]
    Rows,
    #[name = c"batches"]
    Batches,
}

impl TopicStorageGuc {
    const fn from_core(value: StorageLayout) -> Self {
        match value {
            StorageLayout::Rows => Self::Rows,
            StorageLayout::Batches => Self::Batches,
        }
    }

    fn to_core(self) -> StorageLayout {
        match self {
            Self::Rows => StorageLayout::Rows,
            Self::Batches => StorageLayout::Batches,
        }
    }
}

/// `pg_kafka.ssl_client_auth`, Kafka's `ssl.client.auth` values.
#[derive(Clone, Copy, Debug, PostgresGucEnum)]
enum ClientAuthGuc {
    #[name = c"none"]
    None,
    #[name = c"requested"]
    Requested,
    #[name = c"required"]
    Required,
}

impl ClientAuthGuc {
    const fn from_core(value: ClientAuth) -> Self {
        match value {
            ClientAuth::None => Self::None,
            ClientAuth::Requested => Self::Requested,
            ClientAuth::Required => Self::Required,
        }
    }

    fn to_core(self) -> ClientAuth {
        match self {
            Self::None => ClientAuth::None,
            Self::Requested => ClientAuth::Requested,
            Self::Required => ClientAuth::Required,
        }
    }
}

/// A TLS file setting, or Postgres's own setting of the same name (`ssl_cert_file`,
/// `ssl_key_file`); relative paths are relative to the data directory, as Postgres reads
/// them.
fn tls_file(setting: &GucSetting<Option<CString>>, postgres_setting: &std::ffi::CStr) -> String {
    let path = string_setting(setting).or_else(|| postgres_option(postgres_setting)).unwrap_or_default();
    if path.is_empty() || path.starts_with('/') {
        return path;
    }
    let data_dir = unsafe { std::ffi::CStr::from_ptr(pgrx::pg_sys::DataDir) }.to_string_lossy().into_owned();
    format!("{data_dir}/{path}")
}

/// A Postgres setting's current value, by name (`None` when unset or empty).
pub fn postgres_option(name: &std::ffi::CStr) -> Option<String> {
    let value = unsafe { pgrx::pg_sys::GetConfigOption(name.as_ptr(), true, false) };
    (!value.is_null()).then(|| unsafe { std::ffi::CStr::from_ptr(value) }.to_string_lossy().into_owned()).filter(|v| !v.is_empty())
}

fn string_setting(setting: &GucSetting<Option<CString>>) -> Option<String> {
    setting.get().map(|value| value.to_string_lossy().into_owned()).filter(|value| !value.is_empty())
}

/// A non-negative integer GUC (every range below starts at 0 or more).
fn unsigned(setting: &GucSetting<i32>) -> u64 {
    u64::try_from(setting.get()).unwrap_or(0)
}

/// The database the worker serves (`pg_kafka.database`), in any backend.
pub fn served_database() -> String {
    string_setting(&DATABASE).unwrap_or_else(|| Config::default().database)
}

/// Reads the GUCs into the core's settings. Main thread only.
pub fn config() -> Config {
    let default = Config::default();
    let host = string_setting(&HOST).unwrap_or(default.host);
    let advertised_host = string_setting(&ADVERTISED_HOST).unwrap_or_else(|| host.clone());
    Config {
        advertised_host,
        host,
        port: u16::try_from(PORT.get()).unwrap_or(0),
        database: string_setting(&DATABASE).unwrap_or(default.database),
        log_connections: LOG_CONNECTIONS.get(),
        shutdown_timeout_ms: unsigned(&SHUTDOWN_TIMEOUT_MS),
        max_frame_bytes: unsigned(&MAX_FRAME_BYTES) as usize,
        max_connections: unsigned(&MAX_CONNECTIONS) as usize,
        default_partitions: DEFAULT_PARTITIONS.get(),
        auto_create_topics: AUTO_CREATE_TOPICS.get(),
        default_topic_storage: DEFAULT_TOPIC_STORAGE.get().to_core(),
        flush_interval_ms: unsigned(&FLUSH_INTERVAL_MS),
        max_batch_bytes: unsigned(&MAX_BATCH_BYTES) as usize,
        max_inflight_bytes: unsigned(&MAX_INFLIGHT_BYTES) as usize,
        synchronous_commit: SYNCHRONOUS_COMMIT.get().to_core(),
        refresh_interval_ms: unsigned(&REFRESH_INTERVAL_MS),
        max_wait_ms: unsigned(&MAX_WAIT_MS),
        transaction_max_timeout_ms: i64::from(TRANSACTION_MAX_TIMEOUT_MS.get()),
        transactional_id_expiration_ms: i64::from(TRANSACTIONAL_ID_EXPIRATION_MS.get()),
        transaction_version: TRANSACTION_VERSION.get() as i16,
        features_epoch: pg_kafka_core::storage::now_ms(),
        group_min_session_timeout_ms: unsigned(&GROUP_MIN_SESSION_TIMEOUT_MS),
        group_max_session_timeout_ms: unsigned(&GROUP_MAX_SESSION_TIMEOUT_MS),
        group_initial_rebalance_delay_ms: unsigned(&GROUP_INITIAL_REBALANCE_DELAY_MS),
        group_max_size: unsigned(&GROUP_MAX_SIZE) as usize,
        retention_check_interval_ms: unsigned(&RETENTION_CHECK_INTERVAL_MS),
        compaction_work_percent: unsigned(&COMPACTION_WORK_PERCENT) as u32,
        lock_timeout_ms: unsigned(&LOCK_TIMEOUT_MS),
        statement_timeout_ms: unsigned(&STATEMENT_TIMEOUT_MS),
        request_timeout_ms: unsigned(&REQUEST_TIMEOUT_MS),
        connections_max_idle_ms: unsigned(&CONNECTIONS_MAX_IDLE_MS),
        fetch_max_bytes: unsigned(&FETCH_MAX_BYTES) as usize,
        listeners: string_setting(&LISTENERS).unwrap_or_default(),
        advertised_listeners: string_setting(&ADVERTISED_LISTENERS).unwrap_or_default(),
        metrics_listener: string_setting(&METRICS_LISTENER).unwrap_or_default(),
        allow_unauthenticated_remote: ALLOW_UNAUTHENTICATED_REMOTE.get(),
        sasl_plain_without_tls: SASL_PLAIN_WITHOUT_TLS.get(),
        ssl_cert_file: tls_file(&SSL_CERT_FILE, c"ssl_cert_file"),
        ssl_key_file: tls_file(&SSL_KEY_FILE, c"ssl_key_file"),
        ssl_ca_file: tls_file(&SSL_CA_FILE, c"ssl_ca_file"),
        ssl_client_auth: SSL_CLIENT_AUTH.get().to_core(),
        connections_max_reauth_ms: unsigned(&CONNECTIONS_MAX_REAUTH_MS),
        readers: unsigned(&READERS) as usize,
        // The worker sets it (it knows the data directory); readers find it the same way.
        reader_socket: String::new(),
        // SAFETY: reads the shared recovery state; callable in any process.
        standby: unsafe { pg_sys::RecoveryInProgress() },
        node_id: NODE_ID.get(),
        // The worker checks the list at start and at each reload (cluster_nodes_problem);
        // a list it cannot read counts as none.
        cluster_nodes: nodes::parse(&string_setting(&CLUSTER_NODES).unwrap_or_default()).unwrap_or_default(),
    }
}

/// Why `pg_kafka.cluster_nodes` cannot be read, if it cannot (the worker logs it).
pub fn cluster_nodes_problem() -> Option<String> {
    nodes::parse(&string_setting(&CLUSTER_NODES).unwrap_or_default()).err().map(|e| e.to_string())
}

/// Declares every `pg_kafka.*` GUC. Called from `_PG_init` while preloading.
pub fn init() {
    GucRegistry::define_string_guc(
        c"pg_kafka.host",
        c"Address the Kafka listener binds to.",
        c"Defaults to 127.0.0.1; set to 0.0.0.0 or a specific address to accept remote clients.",
        &HOST,
        GucContext::Postmaster,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"pg_kafka.port",
        c"TCP port of the Kafka listener.",
        c"0 picks any free port (useful for tests only: Metadata then advertises that port).",
        &PORT,
        0,
        65535,
        GucContext::Postmaster,
        GucFlags::default(),
    );
    GucRegistry::define_string_guc(
        c"pg_kafka.advertised_host",
        c"Host name that Metadata responses tell clients to connect to.",
        c"Defaults to pg_kafka.host.",
        &ADVERTISED_HOST,
        GucContext::Postmaster,
        GucFlags::default(),
    );
    GucRegistry::define_string_guc(
        c"pg_kafka.database",
        c"Database the pg_kafka worker connects to and stores topics in.",
        c"The worker runs CREATE EXTENSION IF NOT EXISTS pg_kafka there on start-up.",
        &DATABASE,
        GucContext::Postmaster,
        GucFlags::default(),
    );
    GucRegistry::define_bool_guc(
        c"pg_kafka.log_connections",
        c"Log each Kafka client connection and disconnection.",
        c"",
        &LOG_CONNECTIONS,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"pg_kafka.shutdown_timeout_ms",
        c"How long shutdown waits for in-flight Kafka requests to finish.",
        c"",
        &SHUTDOWN_TIMEOUT_MS,
        0,
        600_000,
        GucContext::Postmaster,
        GucFlags::UNIT_MS,
    );
    GucRegistry::define_int_guc(
        c"pg_kafka.max_frame_bytes",
        c"Largest Kafka request accepted, in bytes.",
        c"A client announcing a larger request has its connection closed before anything is allocated.",
        &MAX_FRAME_BYTES,
        1024,
        i32::MAX,
        GucContext::Sighup,
        GucFlags::UNIT_BYTE,
    );
    GucRegistry::define_int_guc(
        c"pg_kafka.max_connections",
        c"Most Kafka client connections served at once.",
        c"Further connections are accepted and closed at once, with a log line.",
        &MAX_CONNECTIONS,
        1,
        100_000,
        GucContext::Postmaster,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"pg_kafka.default_partitions",
        c"Partition count of auto-created topics.",
        c"",
        &DEFAULT_PARTITIONS,
        1,
        10_000,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_bool_guc(
        c"pg_kafka.auto_create_topics",
        c"Create topics that clients ask for in Metadata requests.",
        c"Honoured only when the client also allows auto-creation in its request.",
        &AUTO_CREATE_TOPICS,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_enum_guc(
        c"pg_kafka.default_topic_storage",
        c"How new topics store their messages unless they say (CreateTopics config pg_kafka.storage, kafka.topics.storage).",
        c"rows: a row of kafka.messages per message (index and query them by column). batches: a row of kafka.batches per produced record batch, stored and fetched as it arrived (faster).",
        &DEFAULT_TOPIC_STORAGE,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"pg_kafka.flush_interval_ms",
        c"Longest the group-commit writer waits to gather more produce requests.",
        c"0 writes as soon as anything is queued. Larger values trade produce latency for fewer, larger transactions.",
        &FLUSH_INTERVAL_MS,
        0,
        10_000,
        GucContext::Postmaster,
        GucFlags::UNIT_MS,
    );
    GucRegistry::define_int_guc(
        c"pg_kafka.max_batch_bytes",
        c"Most payload bytes one group commit writes; reaching it flushes early.",
        c"",
        &MAX_BATCH_BYTES,
        1024,
        i32::MAX,
        GucContext::Postmaster,
        GucFlags::UNIT_BYTE,
    );
    GucRegistry::define_int_guc(
        c"pg_kafka.max_inflight_bytes",
        c"Most request bytes held in memory at once, over all connections.",
        c"When reached, connections stop reading until earlier requests are answered (back-pressure).",
        &MAX_INFLIGHT_BYTES,
        1024 * 1024,
        i32::MAX,
        GucContext::Postmaster,
        GucFlags::UNIT_BYTE,
    );
    GucRegistry::define_enum_guc(
        c"pg_kafka.synchronous_commit",
        c"synchronous_commit of the writer's transactions.",
        c"on: an acknowledged message survives a crash. off: faster commits, but the last few hundred ms of acknowledged messages can be lost in an OS or Postgres crash (never corrupted).",
        &SYNCHRONOUS_COMMIT,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"pg_kafka.refresh_interval_ms",
        c"How often the worker re-reads partition bounds to see messages written with SQL.",
        c"Messages produced through Kafka wake consumers at once; rows inserted or deleted by SQL sessions are seen within this interval (one index probe per partition in use).",
        &REFRESH_INTERVAL_MS,
        10,
        3_600_000,
        GucContext::Postmaster,
        GucFlags::UNIT_MS,
    );
    GucRegistry::define_int_guc(
        c"pg_kafka.max_wait_ms",
        c"Longest a Fetch request is held waiting for data.",
        c"Caps the client's max_wait_ms.",
        &MAX_WAIT_MS,
        0,
        600_000,
        GucContext::Sighup,
        GucFlags::UNIT_MS,
    );
    GucRegistry::define_int_guc(
        c"pg_kafka.transaction_max_timeout_ms",
        c"Longest transaction timeout a transactional producer may ask for.",
        c"Kafka's transaction.max.timeout.ms; InitProducerId above it gets INVALID_TRANSACTION_TIMEOUT.",
        &TRANSACTION_MAX_TIMEOUT_MS,
        1,
        i32::MAX,
        GucContext::Sighup,
        GucFlags::UNIT_MS,
    );
    GucRegistry::define_int_guc(
        c"pg_kafka.transactional_id_expiration_ms",
        c"How long a transactional id with no transaction open is kept after its last use.",
        c"Kafka's transactional.id.expiration.ms: then its record is deleted, and the id starts afresh at its next InitProducerId.",
        &TRANSACTIONAL_ID_EXPIRATION_MS,
        1000,
        i32::MAX,
        GucContext::Sighup,
        GucFlags::UNIT_MS,
    );
    GucRegistry::define_int_guc(
        c"pg_kafka.transaction_version",
        c"The transaction.version feature level clients are told (2: Transactions V2, KIP-890).",
        c"Kafka's transaction.version feature: at 2, clients that know KIP-890 add partitions with Produce and bump the epoch at every EndTxn; 0 or 1 keeps every client on Transactions V1.",
        &TRANSACTION_VERSION,
        0,
        2,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"pg_kafka.group_min_session_timeout_ms",
        c"Shortest consumer group session timeout a member may ask for.",
        c"Kafka's group.min.session.timeout.ms; JoinGroup below it gets INVALID_SESSION_TIMEOUT.",
        &GROUP_MIN_SESSION_TIMEOUT_MS,
        1,
        3_600_000,
        GucContext::Postmaster,
        GucFlags::UNIT_MS,
    );
    GucRegistry::define_int_guc(
        c"pg_kafka.group_max_session_timeout_ms",
        c"Longest consumer group session timeout a member may ask for.",
        c"Kafka's group.max.session.timeout.ms.",
        &GROUP_MAX_SESSION_TIMEOUT_MS,
        1,
        86_400_000,
        GucContext::Postmaster,
        GucFlags::UNIT_MS,
    );
    GucRegistry::define_int_guc(
        c"pg_kafka.group_initial_rebalance_delay_ms",
        c"How long the first rebalance of an empty consumer group waits for more members.",
        c"Kafka's group.initial.rebalance.delay.ms.",
        &GROUP_INITIAL_REBALANCE_DELAY_MS,
        0,
        300_000,
        GucContext::Postmaster,
        GucFlags::UNIT_MS,
    );
    GucRegistry::define_int_guc(
        c"pg_kafka.group_max_size",
        c"Most members one consumer group may have.",
        c"Further JoinGroups get GROUP_MAX_SIZE_REACHED.",
        &GROUP_MAX_SIZE,
        1,
        100_000,
        GucContext::Postmaster,
        GucFlags::empty(),
    );
    GucRegistry::define_int_guc(
        c"pg_kafka.retention_check_interval_ms",
        c"How often topics' retention.ms and retention.bytes are applied.",
        c"Each check deletes the messages that fell out of retention and moves the log start offset.",
        &RETENTION_CHECK_INTERVAL_MS,
        100,
        86_400_000,
        GucContext::Postmaster,
        GucFlags::UNIT_MS,
    );
    GucRegistry::define_int_guc(
        c"pg_kafka.compaction_work_percent",
        c"The share of its time a compaction pass works.",
        c"Between chunks of 8 MB it reads or cleans, the pass rests so that its work takes this share of its time, leaving CPU and I/O to the writer and its producers (as Kafka's log.cleaner.io.max.bytes.per.second throttles its cleaner). 100 never rests.",
        &COMPACTION_WORK_PERCENT,
        1,
        100,
        GucContext::Postmaster,
        GucFlags::empty(),
    );
    GucRegistry::define_int_guc(
        c"pg_kafka.lock_timeout_ms",
        c"lock_timeout of the worker's transactions.",
        c"A table lock held by another session (LOCK TABLE kafka.messages, say) fails the worker's transaction after this long: producers get a retriable KAFKA_STORAGE_ERROR and other clients keep being served. 0 waits forever.",
        &LOCK_TIMEOUT_MS,
        0,
        3_600_000,
        GucContext::Sighup,
        GucFlags::UNIT_MS,
    );
    GucRegistry::define_int_guc(
        c"pg_kafka.request_timeout_ms",
        c"Longest a request may take to arrive once its size was read.",
        c"A client that announces a request and stops sending has its connection closed after this long, releasing what it held.",
        &REQUEST_TIMEOUT_MS,
        100,
        3_600_000,
        GucContext::Sighup,
        GucFlags::UNIT_MS,
    );
    GucRegistry::define_int_guc(
        c"pg_kafka.connections_max_idle_ms",
        c"Connections with no request for this long are closed.",
        c"Kafka's connections.max.idle.ms (10 minutes by default).",
        &CONNECTIONS_MAX_IDLE_MS,
        1000,
        i32::MAX,
        GucContext::Sighup,
        GucFlags::UNIT_MS,
    );
    GucRegistry::define_int_guc(
        c"pg_kafka.fetch_max_bytes",
        c"Largest Fetch response, whatever the client asks for.",
        c"Kafka's broker fetch.max.bytes. Response bytes also count against pg_kafka.max_inflight_bytes until written.",
        &FETCH_MAX_BYTES,
        1024,
        i32::MAX,
        GucContext::Sighup,
        GucFlags::UNIT_BYTE,
    );
    GucRegistry::define_int_guc(
        c"pg_kafka.statement_timeout_ms",
        c"Longest one unit of storage work may run on the worker's main thread.",
        c"A storage job or group commit still running after this long is cancelled (SQLSTATE 57014): its clients get a retriable error and the thread serves the others. 0: no limit.",
        &STATEMENT_TIMEOUT_MS,
        0,
        3_600_000,
        GucContext::Sighup,
        GucFlags::UNIT_MS,
    );
    GucRegistry::define_string_guc(
        c"pg_kafka.listeners",
        c"Kafka listeners: PROTOCOL://host:port, comma-separated (PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL).",
        c"At most one per protocol. Empty: one PLAINTEXT listener on pg_kafka.host:pg_kafka.port.",
        &LISTENERS,
        GucContext::Postmaster,
        GucFlags::default(),
    );
    GucRegistry::define_string_guc(
        c"pg_kafka.advertised_listeners",
        c"What each listener tells clients to connect to: PROTOCOL://host:port, comma-separated.",
        c"A listener not named here advertises its own address (for a wildcard address, the one the client connected to).",
        &ADVERTISED_LISTENERS,
        GucContext::Postmaster,
        GucFlags::default(),
    );
    GucRegistry::define_string_guc(
        c"pg_kafka.metrics_listener",
        c"host:port of a Prometheus endpoint serving the figures of kafka.broker_stats (GET /metrics).",
        c"Empty (the default): no endpoint. It serves figures only (no topic names, no data) and needs no login.",
        &METRICS_LISTENER,
        GucContext::Postmaster,
        GucFlags::default(),
    );
    GucRegistry::define_bool_guc(
        c"pg_kafka.allow_unauthenticated_remote",
        c"Lets a listener reachable from other hosts accept clients without authentication.",
        c"Off: such a listener refuses to start. Use SASL_PLAINTEXT, SASL_SSL or SSL with client certificates instead.",
        &ALLOW_UNAUTHENTICATED_REMOTE,
        GucContext::Postmaster,
        GucFlags::default(),
    );
    GucRegistry::define_bool_guc(
        c"pg_kafka.sasl_plain_without_tls",
        c"Offers SASL PLAIN on SASL_PLAINTEXT listeners, where the password crosses the network in clear.",
        c"Off: PLAIN only over TLS (SASL_SSL); SCRAM-SHA-256 is offered everywhere.",
        &SASL_PLAIN_WITHOUT_TLS,
        GucContext::Postmaster,
        GucFlags::default(),
    );
    GucRegistry::define_string_guc(
        c"pg_kafka.ssl_cert_file",
        c"PEM certificate chain of TLS listeners.",
        c"Empty: Postgres's own ssl_cert_file. Relative paths are relative to the data directory.",
        &SSL_CERT_FILE,
        GucContext::Postmaster,
        GucFlags::default(),
    );
    GucRegistry::define_string_guc(
        c"pg_kafka.ssl_key_file",
        c"PEM private key of TLS listeners.",
        c"Empty: Postgres's own ssl_key_file. Relative paths are relative to the data directory.",
        &SSL_KEY_FILE,
        GucContext::Postmaster,
        GucFlags::SUPERUSER_ONLY,
    );
    GucRegistry::define_string_guc(
        c"pg_kafka.ssl_ca_file",
        c"PEM certificates of the CAs client certificates must chain to.",
        c"Empty: Postgres's own ssl_ca_file. Needed when pg_kafka.ssl_client_auth is requested or required.",
        &SSL_CA_FILE,
        GucContext::Postmaster,
        GucFlags::default(),
    );
    GucRegistry::define_enum_guc(
        c"pg_kafka.ssl_client_auth",
        c"Whether TLS listeners ask clients for certificates: none, requested or required.",
        c"On SSL listeners a verified certificate's subject CN is the client's role, checked against ACLs.",
        &SSL_CLIENT_AUTH,
        GucContext::Postmaster,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"pg_kafka.connections_max_reauth_ms",
        c"Lifetime of an authenticated session before the client must re-authenticate (KIP-368).",
        c"0: no limit. Capped by the role's VALID UNTIL. A client that does not re-authenticate in time is disconnected.",
        &CONNECTIONS_MAX_REAUTH_MS,
        0,
        i32::MAX,
        GucContext::Sighup,
        GucFlags::UNIT_MS,
    );
    GucRegistry::define_int_guc(
        c"pg_kafka.readers",
        c"Reader processes that serve Fetch's reads and retention passes beside the group commit.",
        c"Each is a background worker with its own session (counted in max_worker_processes). Retention uses one while two are connected. 0: the worker's main thread reads and applies retention.",
        &READERS,
        0,
        64,
        GucContext::Postmaster,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"pg_kafka.node_id",
        c"This node's Kafka node id: what Metadata calls it among pg_kafka.cluster_nodes.",
        c"Different on each node of a primary and its standbys (docs/replication.md).",
        &NODE_ID,
        0,
        i32::MAX,
        GucContext::Postmaster,
        GucFlags::default(),
    );
    GucRegistry::define_string_guc(
        c"pg_kafka.cluster_nodes",
        c"Every node of a primary and its standbys as clients reach it: ID@HOST:PORT or ID@PROTOCOL://HOST:PORT, comma-separated.",
        c"The same on every node. Empty (the default): this node alone. Metadata lists them all; the primary leads every partition.",
        &CLUSTER_NODES,
        GucContext::Sighup,
        GucFlags::default(),
    );
}
