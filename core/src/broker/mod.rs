//! Request handling: one module per Kafka API, named after it. The dispatcher here only
//! checks the version against [`versions`](crate::protocol::versions), checks the body's
//! shape, and routes.

pub mod acls;
pub mod add_offsets_to_txn;
pub mod add_partitions_to_txn;
pub mod alter_configs;
pub mod api_versions;
pub mod authorize;
#[cfg(test)]
mod batch_layout_tests;
pub mod cluster;
pub mod create_acls;
pub mod create_partitions;
pub mod create_topics;
pub mod delete_acls;
pub mod delete_groups;
pub mod delete_records;
pub mod delete_topics;
pub mod describe_acls;
pub mod describe_client_quotas;
pub mod describe_cluster;
pub mod describe_configs;
pub mod describe_groups;
pub mod describe_log_dirs;
pub mod describe_producers;
pub mod describe_transactions;
pub mod elect_leaders;
pub mod end_txn;
pub mod fetch;
pub mod figures;
pub mod find_coordinator;
pub mod groups;
pub mod heartbeat;
pub mod in_order;
pub mod incremental_alter_configs;
pub mod init_producer_id;
pub mod join_group;
pub mod leave_group;
pub mod list_groups;
pub mod list_offsets;
pub mod list_partition_reassignments;
pub mod list_transactions;
pub mod metadata;
pub mod offset_commit;
pub mod offset_delete;
pub mod offset_fetch;
pub mod produce;
pub mod read_ahead;
pub mod sasl;
pub mod sasl_authenticate;
pub mod sasl_handshake;
#[cfg(test)]
mod security_tests;
pub mod session;
pub mod standby;
pub mod sync_group;
pub mod topic_configs;
pub mod transactions;
pub mod txn_offset_commit;

use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::messages::ApiKey;
use kafka_protocol::protocol::{Decodable, Encodable};

use crate::config::{Config, SharedConfig};
use crate::metrics::{self, Metrics};
use crate::protocol::header::{encode_classic_response, encode_response, RequestFrame};
use crate::protocol::legacy::{self, Legacy};
use crate::protocol::{shape, versions};
use crate::storage::bridge::{StorageCallError, StorageClient};
use crate::storage::topics::TopicCache;
use crate::storage::watermarks::Watermarks;
use crate::storage::{Storage, StorageError};
use crate::writer::group_commit::CommitQueue;
use groups::GroupCoordinator;

tokio::task_local! {
    /// The response bytes one connection may hold unwritten (one full Fetch response), set
    /// by the connection around each handler task: a client that pipelines Fetches and
    /// never reads holds at most that much.
    pub static CONNECTION_RESPONSES: ResponseTurn;
}

/// A connection's allowance of unwritten response bytes, and its size; and its Fetch's
/// read ahead.
#[derive(Clone)]
pub struct ConnectionResponses {
    pub allowance: Arc<tokio::sync::Semaphore>,
    pub size: usize,
    pub read_ahead: Arc<read_ahead::ReadAhead>,
}

impl ConnectionResponses {
    pub fn new(size: usize) -> ConnectionResponses {
        ConnectionResponses { allowance: Arc::new(tokio::sync::Semaphore::new(size)), size, read_ahead: read_ahead::ReadAhead::new() }
    }

    /// One request's access to the allowance, at `link`'s place in request order.
    pub fn turn(&self, link: in_order::InOrder) -> ResponseTurn {
        ResponseTurn { responses: self.clone(), link: parking_lot::Mutex::new(Some(link)) }
    }
}

/// One request's access to its connection's response allowance. Requests reserve in
/// request order (the allowance's waiters are served first come, first served), so the
/// response the connection writes next never waits for bytes held by one written later.
pub struct ResponseTurn {
    pub responses: ConnectionResponses,
    link: parking_lot::Mutex<Option<in_order::InOrder>>,
}

impl ResponseTurn {
    /// This request's link: wait its turn, then hold it while reserving; dropping it
    /// passes the turn on. `None` if already taken.
    pub fn take(&self) -> Option<in_order::InOrder> {
        self.link.lock().take()
    }
}

/// What the connection should do after a request.
#[derive(Debug)]
pub enum Outcome {
    /// Send this frame (already size-prefixed).
    Respond(Bytes),
    /// Send this frame, given in parts (back to back they are the frame: Fetch's record
    /// batches sent as they are), holding its bytes from the response budgets until it
    /// is written.
    RespondHolding(Vec<Bytes>, Vec<tokio::sync::OwnedSemaphorePermit>),
    /// Send nothing (Produce with acks=0).
    Silent,
    /// Send this frame, then close the connection; the reason goes to the server log
    /// (a refused authentication).
    RespondThenClose(Bytes, String),
    /// Close the connection; the reason goes to the server log. This is what Kafka does
    /// with requests it cannot answer in their own format (unknown or unsupported versions
    /// of APIs other than ApiVersions, malformed bodies).
    Close(String),
}

/// Everything a handler may use: settings, where clients should connect, and storage.
/// Built only by the composition root ([`crate::service::assemble`]); the fields are
/// private to the handlers below this module.
#[derive(Clone)]
pub struct Broker {
    config: SharedConfig,
    storage: StorageClient,
    /// Where Produce sends records for the group-commit writer.
    commits: CommitQueue,
    /// Partition bounds the writer publishes; Fetch reads and waits on them.
    watermarks: Watermarks,
    /// The one cache of topics; invalidated by the storage jobs that delete or change one.
    topics: TopicCache,
    /// Consumer group membership (in memory).
    groups: GroupCoordinator,
    /// Transactional ids, their producers and open transactions.
    txns: transactions::TxnCoordinator,
    /// Becomes true when the server shuts down: long polls answer at once.
    shutdown: tokio::sync::watch::Receiver<bool>,
    /// Request bytes held at once over all connections (`pg_kafka.max_inflight_bytes`):
    /// taken as they arrive, held until answered.
    budget: Arc<tokio::sync::Semaphore>,
    /// Request bytes held at once by connections that have not authenticated yet (SASL
    /// listeners), apart from `budget`: logins in progress can never hold what
    /// authenticated clients need.
    unauthenticated: Arc<tokio::sync::Semaphore>,
    /// Request bytes small requests of logged-in clients may hold when `budget` is
    /// exhausted (an eighth of it): a few huge frames filling the budget never stop a
    /// heartbeat, a Metadata or a small produce of another client.
    small_requests: Arc<tokio::sync::Semaphore>,
    /// Fetch response bytes held at once until written (`pg_kafka.max_inflight_bytes`,
    /// apart from requests: responses nobody reads never stop requests being read).
    responses: Arc<tokio::sync::Semaphore>,
    /// Reader processes, for Fetch's reads beside the group commit.
    readers: Arc<crate::storage::readers::Readers>,
    /// Slots for requests decompressing at once (Produce).
    inflating: Arc<tokio::sync::Semaphore>,
    /// Bytes of decompressed records held at once, over all requests
    /// (`pg_kafka.max_inflight_bytes`, beside the budget of received bytes).
    inflated: Arc<tokio::sync::Semaphore>,
    /// ACLs and logged-in principals, for authorization.
    acls: authorize::AclCache,
    /// Random per start: the stand-in SCRAM verifiers of unknown roles derive from it.
    mock_secret: Arc<[u8; 32]>,
    /// The open connections, for `kafka.connections`.
    connections: session::Registry,
    /// Requests, errors and latencies per API, and what the writer and Fetch moved.
    metrics: Metrics,
    /// Who leads, as a standby last read it.
    leader: Arc<cluster::LeaderCache>,
    /// The producer ids a standby hands to idempotent producers itself.
    standby_producer_ids: Arc<standby::ProducerIds>,
}

/// Requests of at most this size may use the small-request reserve.
pub const SMALL_REQUEST_BYTES: usize = 64 * 1024;

/// Request bytes all connections not yet authenticated may hold at once (64 frames of the
/// 512 KiB they may send; a real login's frames are a few hundred bytes).
pub const UNAUTHENTICATED_BUDGET_BYTES: usize = 32 << 20;

impl Broker {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        config: SharedConfig,
        storage: StorageClient,
        commits: CommitQueue,
        watermarks: Watermarks,
        topics: TopicCache,
        groups: GroupCoordinator,
        txns: transactions::TxnCoordinator,
        shutdown: tokio::sync::watch::Receiver<bool>,
        connections: session::Registry,
        metrics: Metrics,
    ) -> Broker {
        let inflating = Arc::new(tokio::sync::Semaphore::new(produce::INFLATING_AT_ONCE));
        let start = config.current();
        let inflated = Arc::new(tokio::sync::Semaphore::new(start.max_inflight_bytes));
        let budget = Arc::new(tokio::sync::Semaphore::new(start.max_inflight_bytes));
        let responses = Arc::new(tokio::sync::Semaphore::new(start.max_inflight_bytes));
        let unauthenticated = Arc::new(tokio::sync::Semaphore::new(UNAUTHENTICATED_BUDGET_BYTES));
        let small_requests = Arc::new(tokio::sync::Semaphore::new((start.max_inflight_bytes / 8).max(SMALL_REQUEST_BYTES)));
        let mut mock_secret = [0u8; 32];
        getrandom::getrandom(&mut mock_secret).expect("the OS random source works");
        let (acls, mock_secret) = (authorize::AclCache::default(), Arc::new(mock_secret));
        Broker {
            config,
            storage,
            commits,
            watermarks,
            topics,
            groups,
            txns,
            shutdown,
            budget,
            unauthenticated,
            small_requests,
            responses,
            readers: Arc::default(),
            inflating,
            inflated,
            acls,
            mock_secret,
            connections,
            metrics,
            leader: Arc::default(),
            standby_producer_ids: Arc::default(),
        }
    }

    /// The settings in force now (reloaded on SIGHUP).
    pub fn config(&self) -> Arc<Config> {
        self.config.current()
    }

    #[cfg(test)]
    pub(crate) fn storage_client(&self) -> &StorageClient {
        &self.storage
    }

    #[cfg(test)]
    pub(crate) fn commit_queue(&self) -> &CommitQueue {
        &self.commits
    }

    /// The in-flight byte budget shared by every connection.
    pub fn budget(&self) -> &Arc<tokio::sync::Semaphore> {
        &self.budget
    }

    /// The budget of request bytes shared by connections not yet authenticated.
    pub fn unauthenticated_budget(&self) -> &Arc<tokio::sync::Semaphore> {
        &self.unauthenticated
    }

    /// What small requests may hold while the shared budget is exhausted.
    pub fn small_request_reserve(&self) -> &Arc<tokio::sync::Semaphore> {
        &self.small_requests
    }

    /// The budget of unwritten Fetch response bytes shared by every connection.
    pub fn responses(&self) -> &Arc<tokio::sync::Semaphore> {
        &self.responses
    }

    /// The reader processes connected to this broker.
    pub fn readers(&self) -> &Arc<crate::storage::readers::Readers> {
        &self.readers
    }

    /// The standbys in sync now, as Metadata names them (the primary's storage side keeps
    /// them current).
    pub(crate) fn in_sync_standbys(&self) -> &crate::writer::replicas::InSyncStandbys {
        self.leader.in_sync()
    }

    /// Consumer-group membership, whose session expiry the server drives.
    pub fn groups(&self) -> &GroupCoordinator {
        &self.groups
    }

    /// The transaction coordinator, whose timeouts the server drives.
    pub fn txns(&self) -> &transactions::TxnCoordinator {
        &self.txns
    }

    /// Loads the transaction state (finishing what a crash left), then aborts timed-out
    /// transactions every second until `shutdown`.
    pub async fn run_transactions(self, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    if self.txns.ready(&self).await.is_ok() {
                        self.txns.expire(&self).await;
                    }
                }
                _ = shutdown.changed() => return,
            }
        }
    }

    /// ACLs and logged-in principals.
    pub fn acls(&self) -> &authorize::AclCache {
        &self.acls
    }

    /// Operators' figures.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Everything operators see of this broker, gathered from its parts.
    pub fn figures(&self) -> figures::Figures {
        figures::Figures::of(self)
    }

    /// The open connections.
    pub fn connections(&self) -> &session::Registry {
        &self.connections
    }

    pub(crate) fn mock_secret(&self) -> &[u8; 32] {
        &self.mock_secret
    }

    /// Where clients of the current session are told to connect: the listener's advertised
    /// address (outside a session, the configured host and port).
    pub fn advertised_address(&self) -> (String, i32) {
        match session::current() {
            Some(session) => {
                let (host, port) = session.advertised();
                (host, i32::from(port))
            }
            None => (self.config().advertised_host.clone(), i32::from(self.config().port)),
        }
    }

    /// Handles a request on its own (no earlier request to keep order with), from a
    /// loopback PLAINTEXT session.
    pub async fn handle(&self, request: RequestFrame) -> Outcome {
        self.handle_in_order(request, in_order::InOrder::first(), session::Session::loopback()).await
    }

    /// Handles a request of `session` that holds `order`, its place among its connection's
    /// requests.
    pub async fn handle_in_order(&self, request: RequestFrame, order: in_order::InOrder, session: Arc<session::Session>) -> Outcome {
        let api = request.api_key;
        self.measured(api, session.scope(self.dispatch(request, order))).await
    }

    /// Runs a request's handling, counting it, its latency and whether it failed.
    async fn measured(&self, api: ApiKey, handling: impl std::future::Future<Output = Outcome>) -> Outcome {
        let started = std::time::Instant::now();
        let (outcome, noted_error) = metrics::noting_errors(handling).await;
        let closed = matches!(outcome, Outcome::Close(_) | Outcome::RespondThenClose(..));
        self.metrics.request(api, started.elapsed(), noted_error || closed);
        outcome
    }

    /// Handles one SASL request (SaslHandshake, SaslAuthenticate) of the connection's
    /// exchange. The connection runs these one at a time, in order.
    pub async fn handle_sasl(&self, exchange: &mut sasl::SaslExchange, mut request: RequestFrame, session: &session::Session) -> Outcome {
        if let Err(refused) = admit(&mut request) {
            return refused;
        }
        let api = request.api_key;
        self.measured(api, async {
            match api {
                ApiKey::SaslHandshake => sasl_handshake::handle(exchange, session, &request),
                ApiKey::SaslAuthenticate => sasl_authenticate::handle(self, exchange, session, &request).await,
                other => Outcome::Close(format!("{other:?} is not a SASL request")),
            }
        })
        .await
    }

    /// Handles a raw SASL token (after a v0 SaslHandshake).
    pub async fn handle_raw_sasl(&self, exchange: &mut sasl::SaslExchange, token: &[u8], session: &session::Session) -> Outcome {
        sasl_authenticate::handle_raw(self, exchange, session, token).await
    }

    async fn dispatch(&self, mut request: RequestFrame, order: in_order::InOrder) -> Outcome {
        if request.api_key == ApiKey::ApiVersions {
            return api_versions::handle(&mut request, &self.config());
        }
        if let Err(refused) = admit(&mut request) {
            return refused;
        }
        if self.config().standby {
            if let Some(refused) = standby::refusal(&request) {
                return refused;
            }
        }
        match request.api_key {
            // Produce takes its turn itself: after decoding (in parallel with the
            // connection's other requests), before handing its batches to the writer.
            ApiKey::Produce => produce::handle(self, &request, order).await,
            key if changes_state(key) => {
                let mut order = order;
                order.wait_turn().await;
                let outcome = self.route(&request).await;
                order.pass();
                outcome
            }
            _ => {
                // A read keeps no later request waiting (a long-poll Fetch, say).
                drop(order);
                self.route(&request).await
            }
        }
    }

    /// The handler of every API but ApiVersions and Produce.
    async fn route(&self, request: &RequestFrame) -> Outcome {
        match request.api_key {
            ApiKey::Metadata => metadata::handle(self, request).await,
            ApiKey::Fetch => fetch::handle(self, request).await,
            ApiKey::ListOffsets => list_offsets::handle(self, request).await,
            ApiKey::FindCoordinator => find_coordinator::handle(self, request).await,
            ApiKey::JoinGroup => join_group::handle(self, request).await,
            ApiKey::SyncGroup => sync_group::handle(self, request).await,
            ApiKey::Heartbeat => heartbeat::handle(self, request).await,
            ApiKey::LeaveGroup => leave_group::handle(self, request).await,
            ApiKey::OffsetCommit => offset_commit::handle(self, request).await,
            ApiKey::OffsetFetch => offset_fetch::handle(self, request).await,
            ApiKey::DescribeGroups => describe_groups::handle(self, request).await,
            ApiKey::ListGroups => list_groups::handle(self, request).await,
            ApiKey::DeleteGroups => delete_groups::handle(self, request).await,
            ApiKey::InitProducerId => init_producer_id::handle(self, request).await,
            ApiKey::CreateTopics => create_topics::handle(self, request).await,
            ApiKey::DeleteTopics => delete_topics::handle(self, request).await,
            ApiKey::CreatePartitions => create_partitions::handle(self, request).await,
            ApiKey::DescribeConfigs => describe_configs::handle(self, request).await,
            ApiKey::AlterConfigs => alter_configs::handle(self, request).await,
            ApiKey::IncrementalAlterConfigs => incremental_alter_configs::handle(self, request).await,
            ApiKey::DescribeCluster => describe_cluster::handle(self, request).await,
            ApiKey::DeleteRecords => delete_records::handle(self, request).await,
            ApiKey::CreateAcls => create_acls::handle(self, request).await,
            ApiKey::DescribeAcls => describe_acls::handle(self, request).await,
            ApiKey::DeleteAcls => delete_acls::handle(self, request).await,
            ApiKey::ListPartitionReassignments => list_partition_reassignments::handle(self, request).await,
            ApiKey::ElectLeaders => elect_leaders::handle(self, request).await,
            ApiKey::OffsetDelete => offset_delete::handle(self, request).await,
            ApiKey::DescribeClientQuotas => describe_client_quotas::handle(self, request).await,
            ApiKey::DescribeLogDirs => describe_log_dirs::handle(self, request).await,
            ApiKey::DescribeProducers => describe_producers::handle(self, request).await,
            ApiKey::AddPartitionsToTxn => add_partitions_to_txn::handle(self, request).await,
            ApiKey::AddOffsetsToTxn => add_offsets_to_txn::handle(self, request).await,
            ApiKey::TxnOffsetCommit => txn_offset_commit::handle(self, request).await,
            ApiKey::EndTxn => end_txn::handle(self, request).await,
            ApiKey::DescribeTransactions => describe_transactions::handle(self, request).await,
            ApiKey::ListTransactions => list_transactions::handle(self, request).await,
            other => Outcome::Close(format!("no handler for {other:?}")),
        }
    }
}

/// Admits a request to its handler: a served version, and a body whose shape walk passed,
/// replaced by its canonical form. Only bytes the walk has proven consistent reach
/// kafka-protocol's decoders. Otherwise the connection is closed (as Kafka does).
fn admit(request: &mut RequestFrame) -> Result<(), Outcome> {
    let (api_key, version) = (request.api_key, request.version());
    if versions::is_legacy(api_key, version) {
        admit_legacy(request)?;
        return admit(request);
    }
    if !versions::is_served(api_key, version) {
        return Err(Outcome::Close(format!("unsupported request {api_key:?} v{version}")));
    }
    match shape::canonical(api_key, version, &request.body) {
        Ok(body) => request.body = body,
        Err(e) => return Err(Outcome::Close(format!("malformed {api_key:?} v{version} request: {e}"))),
    }
    Ok(())
}

/// Admits a request of a version Kafka 4 dropped: its body, walked at its own version, is
/// translated to the lowest version served (the answer goes back in the client's), or
/// answered UNSUPPORTED_VERSION in its own format when its records are of a message format
/// we do not serve.
fn admit_legacy(request: &mut RequestFrame) -> Result<(), Outcome> {
    let (api_key, version) = (request.api_key, request.version());
    let body = shape::canonical(api_key, version, &request.body)
        .map_err(|e| Outcome::Close(format!("malformed {api_key:?} v{version} request: {e}")))?;
    match legacy::translate_request(api_key, version, &body) {
        Ok(Legacy::Translated { version: served, body }) => {
            request.header.request_api_version = served;
            request.body = body;
            request.legacy_version = Some(version);
            Ok(())
        }
        Ok(Legacy::Refused(answer)) => {
            crate::logging::log(format!(
                "pg_kafka: {api_key:?} v{version} from {} carries message format 0 or 1, which pg_kafka does not serve: \
                 answered UNSUPPORTED_VERSION (the client must use {api_key:?} v{} or later)",
                session::displayable(request.header.client_id.as_deref().unwrap_or("")),
                versions::served(api_key).map_or(0, |api| api.min_served),
            ));
            Err(match answer {
                Some(body) => Outcome::Respond(encode_classic_response(request.header.correlation_id, &body)),
                None => Outcome::Silent,
            })
        }
        Err(e) => Err(Outcome::Close(e.to_string())),
    }
}

/// Requests whose effects must follow the connection's request order, as a Kafka broker
/// applies one connection's requests one after another: each waits until every earlier
/// state-changing request of its connection has finished (committed) before it starts.
/// Reads do not wait and keep no one waiting.
/// Whether a request's handling may stop when its connection closes: reads and group
/// waits, whose answers nobody would receive. Produce, LeaveGroup and everything that
/// changes stored state run to the end even then, as Kafka applies a request it has
/// received (an acks=0 producer may hang up right after sending).
pub fn stops_with_its_connection(api_key: ApiKey) -> bool {
    matches!(
        api_key,
        ApiKey::Fetch
            | ApiKey::ListOffsets
            | ApiKey::OffsetFetch
            | ApiKey::FindCoordinator
            | ApiKey::JoinGroup
            | ApiKey::SyncGroup
            | ApiKey::Heartbeat
            | ApiKey::DescribeGroups
            | ApiKey::ListGroups
            | ApiKey::DescribeConfigs
            | ApiKey::DescribeCluster
            | ApiKey::DescribeAcls
            | ApiKey::ListPartitionReassignments
            | ApiKey::ElectLeaders
            | ApiKey::DescribeClientQuotas
            | ApiKey::ApiVersions
    )
}

fn changes_state(api_key: ApiKey) -> bool {
    matches!(
        api_key,
        ApiKey::Metadata // may create topics
            | ApiKey::OffsetCommit
            | ApiKey::InitProducerId
            | ApiKey::AddPartitionsToTxn
            | ApiKey::AddOffsetsToTxn
            | ApiKey::TxnOffsetCommit
            | ApiKey::EndTxn
            | ApiKey::CreateTopics
            | ApiKey::DeleteTopics
            | ApiKey::CreatePartitions
            | ApiKey::AlterConfigs
            | ApiKey::IncrementalAlterConfigs
            | ApiKey::DeleteRecords
            | ApiKey::DeleteGroups
            | ApiKey::OffsetDelete
            | ApiKey::CreateAcls
            | ApiKey::DeleteAcls
    )
}

/// A group operation's answer, awaited if the rebalance is still going on. When the wait
/// ends without one (the member was removed, or the server is shutting down), `gone`
/// makes the reply.
pub async fn await_pending<T>(broker: &Broker, pending: groups::Pending<T>, gone: impl FnOnce() -> T) -> T {
    match pending {
        groups::Pending::Ready(answer) => answer,
        groups::Pending::Wait(answer) => {
            let mut shutdown = broker.shutdown.clone();
            tokio::select! {
                answer = answer => answer.unwrap_or_else(|_| gone()),
                _ = shutdown.wait_for(|down| *down) => gone(),
            }
        }
    }
}

/// The groups that have committed offsets (ListGroups, DescribeGroups).
pub async fn offset_groups(broker: &Broker) -> Result<Vec<String>, StorageCallError> {
    storage_call(broker, |s| s.offset_groups()).await
}

/// Runs `f` on the storage thread; "storage unreachable" and "storage said no" as one error.
pub async fn storage_call<R, F>(broker: &Broker, f: F) -> Result<R, StorageCallError>
where
    R: Send + 'static,
    F: FnOnce(&mut dyn Storage) -> Result<R, StorageError> + Send + 'static,
{
    broker.storage.try_call(f).await
}

/// Decodes a request body whose shape has been checked.
pub fn decode<M: Decodable>(request: &RequestFrame) -> Result<M, Outcome> {
    M::decode(&mut request.body.clone(), request.version())
        .map_err(|e| Outcome::Close(format!("malformed {:?} v{} request: {e}", request.api_key, request.version())))
}

/// Encodes `body` as the response to `request`.
pub fn respond<M: Encodable>(request: &RequestFrame, body: &M) -> Outcome {
    respond_at(request, request.version(), body)
}

/// Encodes `body` at `version`, which may differ from the request's (ApiVersions fallback).
pub fn respond_at<M: Encodable>(request: &RequestFrame, version: i16, body: &M) -> Outcome {
    match encode_response(request.api_key, version, request.header.correlation_id, body) {
        Ok(frame) => match request.legacy_version {
            Some(legacy) => respond_legacy(request, legacy, &frame),
            None => Outcome::Respond(frame),
        },
        Err(e) => Outcome::Close(e.to_string()),
    }
}

/// Translates a response frame of a classic served version back to the version the client
/// sent (both use response header v0: size and correlation id, then the body).
fn respond_legacy(request: &RequestFrame, version: i16, frame: &[u8]) -> Outcome {
    match legacy::translate_response(request.api_key, version, &frame[8..]) {
        Ok(body) => Outcome::Respond(encode_classic_response(request.header.correlation_id, &body)),
        Err(e) => Outcome::Close(e.to_string()),
    }
}

#[cfg(any(test, feature = "testing"))]
pub mod testing;

#[cfg(test)]
mod hostile_frames {
    use super::testing::broker_with_writer;
    use super::*;
    use crate::protocol::header::parse_request;

    fn hex(text: &str) -> Vec<u8> {
        let digits: Vec<u8> = text.bytes().filter(u8::is_ascii_hexdigit).collect();
        digits.chunks(2).map(|pair| u8::from_str_radix(std::str::from_utf8(pair).unwrap(), 16).unwrap()).collect()
    }

    /// Fetch v17 whose partition carries tag 0 (replica_directory_id) with a declared size
    /// of 0: the codec reads the tag's 16 bytes from what follows and then a 2^32-2 array
    /// length the shape walk never saw. Before the walk's tagged sections were removed
    /// from what the codec sees, this aborted the process (`memory allocation of
    /// 412316860224 bytes failed`) and Postgres reinitialized.
    const FETCH_V17_SIZE_ZERO_TAG: &str = "000000710001001100001092000673612d72656c00000001f400000001001000000000000000ffffffff02\
         000000000000000000000000000000000200000000ffffffff0000000000000000ffffffffffffffffffff\
         ffff001000000100000001000105100000000000000000000000ffffffff0f";

    #[tokio::test]
    async fn a_known_tag_with_a_false_size_is_not_decoded_from_the_wrong_bytes() {
        let frame = hex(FETCH_V17_SIZE_ZERO_TAG);
        assert_eq!(u32::from_be_bytes(frame[..4].try_into().unwrap()) as usize, frame.len() - 4);
        let request = parse_request(bytes::Bytes::from(frame[4..].to_vec())).unwrap();
        assert_eq!((request.api_key, request.version()), (ApiKey::Fetch, 17));
        let broker = broker_with_writer(1);
        // Reaching any outcome at all means the process survived the decode.
        let outcome = broker.handle(request).await;
        assert!(matches!(outcome, Outcome::Respond(_) | Outcome::RespondHolding(..) | Outcome::Close(_)), "{outcome:?}");
    }
}
