//! GUCs (`pg_kafka.*`) and the owned snapshot of them that the network side uses.
//!
//! GUC values may only be read on the Postgres main thread (pgrx checks this), so the
//! worker reads them once at start-up into [`Config`], a plain `Clone + Send` struct that
//! the tokio side owns. Every setting here is `PGC_POSTMASTER`: changing one needs a
//! server restart, which keeps the snapshot honest.

use std::ffi::CString;

use pgrx::{GucContext, GucFlags, GucRegistry, GucSetting};

static HOST: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(Some(c"127.0.0.1"));
static PORT: GucSetting<i32> = GucSetting::<i32>::new(9092);
static ADVERTISED_HOST: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
static DATABASE: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(Some(c"postgres"));
static LOG_CONNECTIONS: GucSetting<bool> = GucSetting::<bool>::new(false);
static SHUTDOWN_TIMEOUT_MS: GucSetting<i32> = GucSetting::<i32>::new(5000);
static MAX_FRAME_BYTES: GucSetting<i32> = GucSetting::<i32>::new(100 * 1024 * 1024);
static MAX_CONNECTIONS: GucSetting<i32> = GucSetting::<i32>::new(1000);
static DEFAULT_PARTITIONS: GucSetting<i32> = GucSetting::<i32>::new(1);
static AUTO_CREATE_TOPICS: GucSetting<bool> = GucSetting::<bool>::new(true);
static FLUSH_INTERVAL_MS: GucSetting<i32> = GucSetting::<i32>::new(2);
static MAX_BATCH_BYTES: GucSetting<i32> = GucSetting::<i32>::new(16 * 1024 * 1024);
static MAX_INFLIGHT_BYTES: GucSetting<i32> = GucSetting::<i32>::new(256 * 1024 * 1024);
static REFRESH_INTERVAL_MS: GucSetting<i32> = GucSetting::<i32>::new(500);
static MAX_WAIT_MS: GucSetting<i32> = GucSetting::<i32>::new(30_000);
static GROUP_MIN_SESSION_TIMEOUT_MS: GucSetting<i32> = GucSetting::<i32>::new(6000);
static GROUP_MAX_SESSION_TIMEOUT_MS: GucSetting<i32> = GucSetting::<i32>::new(1_800_000);
static GROUP_INITIAL_REBALANCE_DELAY_MS: GucSetting<i32> = GucSetting::<i32>::new(3000);
static GROUP_MAX_SIZE: GucSetting<i32> = GucSetting::<i32>::new(1000);
static RETENTION_CHECK_INTERVAL_MS: GucSetting<i32> = GucSetting::<i32>::new(60_000);
static SYNCHRONOUS_COMMIT: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(Some(c"on"));

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
    /// The group-commit writer flushes at most this often (0: as soon as anything is queued).
    pub flush_interval_ms: u64,
    /// One flush writes at most this many payload bytes; reaching it flushes early.
    pub max_batch_bytes: usize,
    /// Request bytes held at once across all connections, from read to response.
    pub max_inflight_bytes: usize,
    /// `synchronous_commit` of the writer's session.
    pub synchronous_commit: String,
    /// How often partition bounds are re-read, to see rows written by SQL sessions.
    pub refresh_interval_ms: u64,
    /// Longest a Fetch is held waiting for data, whatever its `max_wait_ms` asks.
    pub max_wait_ms: u64,
    /// Session timeouts a JoinGroup may ask for (Kafka's `group.min/max.session.timeout.ms`).
    pub group_min_session_timeout_ms: u64,
    pub group_max_session_timeout_ms: u64,
    /// How long the first rebalance of an empty group waits for more members.
    pub group_initial_rebalance_delay_ms: u64,
    /// Most members (and members awaiting their id) one group may have.
    pub group_max_size: usize,
    /// How often `retention.ms` / `retention.bytes` are applied.
    pub retention_check_interval_ms: u64,
}

impl Default for Config {
    /// The documented defaults; used by tests that run without Postgres.
    fn default() -> Self {
        Config {
            host: "127.0.0.1".into(),
            port: 9092,
            advertised_host: "127.0.0.1".into(),
            database: "postgres".into(),
            log_connections: false,
            shutdown_timeout_ms: 5000,
            max_frame_bytes: 100 * 1024 * 1024,
            max_connections: 1000,
            default_partitions: 1,
            auto_create_topics: true,
            flush_interval_ms: 2,
            max_batch_bytes: 16 * 1024 * 1024,
            max_inflight_bytes: 256 * 1024 * 1024,
            synchronous_commit: "on".into(),
            refresh_interval_ms: 500,
            max_wait_ms: 30_000,
            group_min_session_timeout_ms: 6000,
            group_max_session_timeout_ms: 1_800_000,
            group_initial_rebalance_delay_ms: 3000,
            group_max_size: 1000,
            retention_check_interval_ms: 60_000,
        }
    }
}

fn string_setting(setting: &GucSetting<Option<CString>>) -> Option<String> {
    setting
        .get()
        .map(|value| value.to_string_lossy().into_owned())
        .filter(|value| !value.is_empty())
}

impl Config {
    /// Reads the GUCs. Main thread only.
    pub fn from_gucs() -> Config {
        let host = string_setting(&HOST).unwrap_or_else(|| "127.0.0.1".into());
        let advertised_host = string_setting(&ADVERTISED_HOST).unwrap_or_else(|| host.clone());
        Config {
            advertised_host,
            host,
            port: PORT.get() as u16,
            database: string_setting(&DATABASE).unwrap_or_else(|| "postgres".into()),
            log_connections: LOG_CONNECTIONS.get(),
            shutdown_timeout_ms: SHUTDOWN_TIMEOUT_MS.get() as u64,
            max_frame_bytes: MAX_FRAME_BYTES.get() as usize,
            max_connections: MAX_CONNECTIONS.get() as usize,
            default_partitions: DEFAULT_PARTITIONS.get(),
            auto_create_topics: AUTO_CREATE_TOPICS.get(),
            flush_interval_ms: FLUSH_INTERVAL_MS.get() as u64,
            max_batch_bytes: MAX_BATCH_BYTES.get() as usize,
            max_inflight_bytes: MAX_INFLIGHT_BYTES.get() as usize,
            synchronous_commit: string_setting(&SYNCHRONOUS_COMMIT).unwrap_or_else(|| "on".into()),
            refresh_interval_ms: REFRESH_INTERVAL_MS.get() as u64,
            max_wait_ms: MAX_WAIT_MS.get() as u64,
            group_min_session_timeout_ms: GROUP_MIN_SESSION_TIMEOUT_MS.get() as u64,
            group_max_session_timeout_ms: GROUP_MAX_SESSION_TIMEOUT_MS.get() as u64,
            group_initial_rebalance_delay_ms: GROUP_INITIAL_REBALANCE_DELAY_MS.get() as u64,
            group_max_size: GROUP_MAX_SIZE.get() as usize,
            retention_check_interval_ms: RETENTION_CHECK_INTERVAL_MS.get() as u64,
        }
    }
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
        GucContext::Postmaster,
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
        GucContext::Postmaster,
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
        GucContext::Postmaster,
        GucFlags::default(),
    );
    GucRegistry::define_bool_guc(
        c"pg_kafka.auto_create_topics",
        c"Create topics that clients ask for in Metadata requests.",
        c"Honoured only when the client also allows auto-creation in its request.",
        &AUTO_CREATE_TOPICS,
        GucContext::Postmaster,
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
    GucRegistry::define_string_guc(
        c"pg_kafka.synchronous_commit",
        c"synchronous_commit of the writer's transactions.",
        c"on: an acknowledged message survives a crash. off: faster commits, but the last few hundred ms of acknowledged messages can be lost in an OS or Postgres crash (never corrupted).",
        &SYNCHRONOUS_COMMIT,
        GucContext::Postmaster,
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
        GucContext::Postmaster,
        GucFlags::UNIT_MS,
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
}
