//! Authorization of requests: the ACLs and the logged-in principals, cached, and the
//! check every handler makes before it acts.
//!
//! The cache is refreshed from storage once it is older than
//! `pg_kafka.refresh_interval_ms` (so ACLs edited with SQL, `GRANT`/`REVOKE` of roles, and
//! `ALTER ROLE ... SUPERUSER` reach open connections within that and one reload), in the
//! background while checks go on with the previous snapshot; and at once, with checks
//! waiting, after CreateAcls/DeleteAcls and after every login (a new connection sees the
//! ACLs and grants of the moment). One refresh runs at a time.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kafka_protocol::ResponseError;
use parking_lot::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use super::session::{self, Session};
use super::{storage_call, Broker};
use crate::logging;
use crate::security::acl::{self, AclBinding, Operation, Principal, ResourceType, CLUSTER_NAME};

/// The ACLs and the principals by role name, as one check sees them.
type Current = (Arc<Vec<AclBinding>>, Arc<HashMap<String, Arc<Principal>>>);

#[derive(Default)]
struct Snapshot {
    acls: Arc<Vec<AclBinding>>,
    /// Principals of logins seen, by role name, refreshed with the ACLs.
    principals: Arc<HashMap<String, Arc<Principal>>>,
    loaded_at: Option<Instant>,
}

/// The ACLs and principals, shared by every connection.
#[derive(Clone, Default)]
pub struct AclCache {
    snapshot: Arc<Mutex<Snapshot>>,
    reloading: Arc<tokio::sync::Mutex<()>>,
}

impl AclCache {
    /// Forces the next check to reload (after ACLs were created or deleted).
    pub fn invalidate(&self) {
        self.snapshot.lock().loaded_at = None;
    }

    /// Records a principal just authenticated, so checks need not wait for a reload.
    pub fn remember(&self, principal: Principal) {
        Arc::make_mut(&mut self.snapshot.lock().principals).insert(principal.name.clone(), Arc::new(principal));
    }

    fn fresh(&self, max_age: Duration) -> Option<Current> {
        let snapshot = self.snapshot.lock();
        let fresh = snapshot.loaded_at.is_some_and(|at| at.elapsed() < max_age);
        fresh.then(|| (snapshot.acls.clone(), snapshot.principals.clone()))
    }

    /// What was loaded last, however old; `None` before the first load and after an
    /// invalidation (ACLs changed through pg_kafka: the next check must see the change).
    fn loaded(&self) -> Option<Current> {
        let snapshot = self.snapshot.lock();
        snapshot.loaded_at.map(|_| (snapshot.acls.clone(), snapshot.principals.clone()))
    }

    /// The ACLs and principals. Older than `max_age`: the check goes on with them while
    /// one reload runs in the background (a request never waits behind a group commit
    /// for a periodic refresh). Never loaded or invalidated: the check waits for the
    /// reload. A reload that fails keeps the previous ones (logged): a database hiccup
    /// does not open anything.
    async fn current(&self, broker: &Broker, max_age: Duration) -> Current {
        if let Some(fresh) = self.fresh(max_age) {
            return fresh;
        }
        if let Some(old) = self.loaded() {
            if let Ok(one_at_a_time) = self.reloading.clone().try_lock_owned() {
                let (cache, broker) = (self.clone(), broker.clone());
                tokio::spawn(async move {
                    cache.reload(&broker).await;
                    drop(one_at_a_time);
                });
            }
            return old;
        }
        let _one_at_a_time = self.reloading.lock().await;
        if let Some(fresh) = self.fresh(max_age) {
            return fresh;
        }
        self.reload(&broker.clone()).await
    }

    async fn reload(&self, broker: &Broker) -> Current {
        let names: Vec<String> = self.snapshot.lock().principals.keys().cloned().collect();
        let loaded = storage_call(broker, move |s| Ok((s.acls()?, s.principals(&names)?))).await;
        let mut snapshot = self.snapshot.lock();
        match loaded {
            Ok((acls, principals)) => {
                snapshot.acls = Arc::new(acls);
                snapshot.principals = Arc::new(principals.into_iter().map(|p| (p.name.clone(), Arc::new(p))).collect());
                snapshot.loaded_at = Some(Instant::now());
            }
            Err(e) => logging::warning(format!("pg_kafka: cannot reload ACLs, keeping the previous ones: {e}")),
        }
        (snapshot.acls.clone(), snapshot.principals.clone())
    }
}

/// What the current request may do.
#[derive(Clone)]
pub struct Access {
    /// `None`: not checked (a listener that authenticates nobody).
    checked: Option<Checked>,
}

#[derive(Clone)]
struct Checked {
    acls: Arc<Vec<AclBinding>>,
    /// Shared with the cache: a check per request copies no role sets.
    principal: Arc<Principal>,
    host: String,
}

impl Access {
    /// Everything allowed: sessions on listeners that authenticate nobody.
    pub fn unchecked() -> Access {
        Access { checked: None }
    }

    pub fn allows(&self, operation: Operation, resource_type: ResourceType, name: &str) -> bool {
        match &self.checked {
            None => true,
            Some(c) => acl::is_allowed(&c.acls, &c.principal, &c.host, operation, (resource_type, name)),
        }
    }

    pub fn allows_topic(&self, operation: Operation, topic: &str) -> bool {
        self.allows(operation, ResourceType::Topic, topic)
    }

    pub fn allows_group(&self, operation: Operation, group: &str) -> bool {
        self.allows(operation, ResourceType::Group, group)
    }

    pub fn allows_cluster(&self, operation: Operation) -> bool {
        self.allows(operation, ResourceType::Cluster, CLUSTER_NAME)
    }

    /// Whether WRITE is allowed on any topic (idempotent producers, KIP-679).
    pub fn allows_writing_somewhere(&self) -> bool {
        match &self.checked {
            None => true,
            Some(c) => {
                c.principal.superuser
                    || c.acls.iter().any(|a| {
                        a.resource_type == ResourceType::Topic
                            && acl::is_allowed(&c.acls, &c.principal, &c.host, Operation::Write, (ResourceType::Topic, &a.resource_name))
                    })
            }
        }
    }

    /// Kafka's `authorized_operations` bit field for a resource.
    pub fn operations(&self, resource_type: ResourceType, name: &str) -> i32 {
        let all = acl::operations_of(resource_type).iter().copied();
        acl::operations_bits(all.filter(|op| self.allows(*op, resource_type, name)))
    }

    /// The principal and address, for log lines about refusals.
    pub fn who(&self) -> String {
        match &self.checked {
            None => "an unauthenticated client".into(),
            Some(c) => format!("{} from {}", c.principal.kafka_name(), c.host),
        }
    }
}

/// What the session of the request being handled may do. Outside a session nothing is
/// allowed; a login whose role no longer exists is allowed nothing either.
pub async fn access(broker: &Broker) -> Access {
    let Some(session) = session::current() else {
        return denied("(no session)".into());
    };
    access_of(broker, &session).await
}

async fn access_of(broker: &Broker, session: &Session) -> Access {
    let Some(login) = session.login() else {
        return Access::unchecked();
    };
    let max_age = Duration::from_millis(broker.config().refresh_interval_ms);
    let (acls, principals) = broker.acls().current(broker, max_age).await;
    let principal = principals.get(&login).cloned().unwrap_or_else(|| Arc::new(nobody(login)));
    Access { checked: Some(Checked { acls, principal, host: session.host() }) }
}

fn nobody(name: String) -> Principal {
    Principal { name, superuser: false, roles: Default::default() }
}

fn denied(name: String) -> Access {
    Access { checked: Some(Checked { acls: Arc::new(vec![]), principal: Arc::new(nobody(name)), host: String::new() }) }
}

impl Access {
    /// `Ok` if `operation` on topic `name` is allowed; else TOPIC_AUTHORIZATION_FAILED (logged).
    pub fn check_topic(&self, operation: Operation, name: &str) -> Result<(), ResponseError> {
        self.check(operation, ResourceType::Topic, name, ResponseError::TopicAuthorizationFailed)
    }

    /// `Ok` if `operation` on group `name` is allowed; else GROUP_AUTHORIZATION_FAILED (logged).
    pub fn check_group(&self, operation: Operation, name: &str) -> Result<(), ResponseError> {
        self.check(operation, ResourceType::Group, name, ResponseError::GroupAuthorizationFailed)
    }

    /// `Ok` if `operation` on transactional id `name` is allowed; else
    /// TRANSACTIONAL_ID_AUTHORIZATION_FAILED (logged).
    pub fn check_transactional_id(&self, operation: Operation, name: &str) -> Result<(), ResponseError> {
        self.check(operation, ResourceType::TransactionalId, name, ResponseError::TransactionalIdAuthorizationFailed)
    }

    /// `Ok` if `operation` on the cluster is allowed; else CLUSTER_AUTHORIZATION_FAILED (logged).
    pub fn check_cluster(&self, operation: Operation) -> Result<(), ResponseError> {
        self.check(operation, ResourceType::Cluster, CLUSTER_NAME, ResponseError::ClusterAuthorizationFailed)
    }

    fn check(&self, operation: Operation, resource_type: ResourceType, name: &str, error: ResponseError) -> Result<(), ResponseError> {
        if self.allows(operation, resource_type, name) {
            return Ok(());
        }
        log_denied(self, operation, resource_type, name);
        crate::metrics::note_error();
        Err(error)
    }
}

/// Denials logged in the current second, and the second (since start).
static DENIALS_THIS_SECOND: AtomicU64 = AtomicU64::new(0);
static DENIAL_SECOND: AtomicU64 = AtomicU64::new(0);
static DENIALS_NOT_LOGGED: AtomicU64 = AtomicU64::new(0);
/// At most this many denials are logged per second.
const DENIALS_LOGGED_PER_SECOND: u64 = 20;

/// Logs a refused operation, as Kafka's authorizer logger does, at most
/// [`DENIALS_LOGGED_PER_SECOND`] a second (a client retrying what it may not do must not
/// flood the Postgres log); the next line logged says how many were left out.
fn log_denied(access: &Access, operation: Operation, resource_type: ResourceType, name: &str) {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    let second = START.get_or_init(Instant::now).elapsed().as_secs();
    if DENIAL_SECOND.swap(second, Ordering::Relaxed) != second {
        DENIALS_THIS_SECOND.store(0, Ordering::Relaxed);
    }
    if DENIALS_THIS_SECOND.fetch_add(1, Ordering::Relaxed) >= DENIALS_LOGGED_PER_SECOND {
        DENIALS_NOT_LOGGED.fetch_add(1, Ordering::Relaxed);
        return;
    }
    let skipped = DENIALS_NOT_LOGGED.swap(0, Ordering::Relaxed);
    let more = if skipped > 0 { format!(" ({skipped} more denials were not logged)") } else { String::new() };
    logging::log(format!("pg_kafka: denied {operation:?} on {resource_type:?} \"{name}\" to {}{more}", access.who()));
}
