//! `kafka.produce()`: messages written from SQL, in the caller's transaction (a
//! transactional outbox without an outbox table).
//!
//! A message becomes visible to Kafka consumers when the calling transaction commits, and
//! never if it rolls back. Offsets stay gap-free and in commit order beside the
//! group-commit writer because both obey one scheme: whoever appends to a partition holds
//! its append lock ([`crate::pg::partition_lock`]) and continues from what is committed.
//! A SQL session takes it at its first message to a partition and keeps it until its
//! transaction ends, so a second session (or the writer, which never waits for it and
//! retries at its next flush) continues only after that commit or rollback. At commit the
//! session records its partitions in shared memory and wakes the worker ([`appends`]).
//!
//! Who may call it: roles with INSERT on `kafka.messages`, or whose Kafka ACLs allow
//! WRITE on the topic (for `User:<role>` or a role it is a member of), decided before
//! anything else is looked up. The table work itself then runs as the bootstrap
//! superuser, like the worker's, with a fixed `search_path` ([`crate::pg::privileged`]):
//! no function or operator the caller could have created runs with its privileges.

pub mod appends;

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};

use pg_kafka_core::protocol::partitioner::partition_for_key;
use pg_kafka_core::protocol::records::{encode_batch, Record};
use pg_kafka_core::security::acl::{is_allowed, Operation, ResourceType};
use pg_kafka_core::storage::headers_json::headers_from_json;
use pg_kafka_core::storage::watermarks::PartitionKey;
use pg_kafka_core::storage::{kafka_timestamp_ms, Storage, StorageLayout, Topic};
use pgrx::datum::TimestampWithTimeZone;
use pgrx::prelude::*;
use pgrx::spi::{OwnedPreparedStatement, SpiClient};
use pgrx::{JsonB, PgBuiltInOids, PgOid};

use crate::pg::partition_lock;
use crate::pg::privileged::as_bootstrap_superuser;
use crate::pg::storage::{topics_from, PgStorage};

const TOPIC_FOR_PRODUCE: &str = include_str!("../../sql/queries/topic_for_produce.sql");
const PRODUCE_ROW: &str = include_str!("../../sql/queries/produce_row.sql");
const PRODUCE_BATCH: &str = include_str!("../../sql/queries/produce_batch.sql");

/// What this backend's current transaction has produced.
#[derive(Default)]
struct Produced {
    /// Topics looked up (and authorized) in this transaction, by name.
    topics: HashMap<String, Topic>,
    /// Next offset of each partition whose append lock this transaction holds.
    next_offsets: HashMap<PartitionKey, i64>,
    /// Partitions written, for the worker (recorded at commit).
    written: HashSet<PartitionKey>,
    /// The partition each topic's keyless messages go to in this transaction.
    sticky: HashMap<i32, i32>,
}

thread_local! {
    static PRODUCED: RefCell<Option<Produced>> = const { RefCell::new(None) };
}

/// One message to produce, as the SQL function got it.
struct Message<'a> {
    key: Option<&'a [u8]>,
    value: Option<&'a [u8]>,
    headers: Option<Vec<u8>>,
    partition: Option<i32>,
    timestamp: Option<TimestampWithTimeZone>,
}

impl Message<'_> {
    fn bytes(&self) -> usize {
        self.key.map_or(0, <[u8]>::len) + self.value.map_or(0, <[u8]>::len) + self.headers.as_ref().map_or(0, Vec::len)
    }
}

fn produce(topic: &str, message: Message<'_>) -> i64 {
    register_callbacks();
    let topic = writable_topic(topic);
    if message.bytes() > usize::try_from(topic.settings.max_message_bytes).unwrap_or(0) {
        ereport!(
            ERROR,
            PgSqlErrorCode::ERRCODE_PROGRAM_LIMIT_EXCEEDED,
            format!(
                "message of {} bytes is larger than topic \"{}\" accepts (max.message.bytes {})",
                message.bytes(),
                topic.name,
                topic.settings.max_message_bytes
            )
        );
    }
    let partition = choose_partition(&topic, &message);
    let key = (topic.id, partition);
    let held = with_produced(|p| p.next_offsets.get(&key).copied());
    if held.is_none() {
        appends::yield_to_writer(key);
    }
    partition_lock::lock(topic.id, partition);
    let offset = held.unwrap_or_else(|| stored_next_offset(&topic, partition));
    as_bootstrap_superuser(|| match topic.layout {
        StorageLayout::Rows => insert_row(topic.id, partition, offset, &message),
        StorageLayout::Batches => insert_batch(topic.id, partition, offset, &message),
    });
    with_produced(|p| {
        p.next_offsets.insert(key, offset + 1);
        p.written.insert(key);
    });
    offset
}

fn with_produced<R>(f: impl FnOnce(&mut Produced) -> R) -> R {
    PRODUCED.with(|cell| f(cell.borrow_mut().get_or_insert_with(Produced::default)))
}

/// The topic, looked up once per transaction (and locked against deletion until it
/// ends), if the caller may write it. Authorization comes first: nothing is looked up
/// for a caller who may not produce.
fn writable_topic(name: &str) -> Topic {
    if let Some(topic) = with_produced(|p| p.topics.get(name).cloned()) {
        return topic;
    }
    // Without INSERT the ACLs decide, for the caller's role (named before the switch).
    if !may_insert_messages() {
        let role = current_role_name();
        if !as_bootstrap_superuser(|| acls_allow_write(role, name)) {
            ereport!(ERROR, PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE, format!("permission denied to produce to topic \"{name}\""));
        }
    }
    let topic = as_bootstrap_superuser(|| {
        with_plans(|client, plans| client.update(&plans.topic, Some(1), &[name.into()]).ok().and_then(|rows| topics_from(rows).ok()))
            .and_then(|mut topics| topics.pop())
    });
    let Some(topic) = topic else {
        ereport!(ERROR, PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT, format!("topic \"{name}\" does not exist"));
    };
    with_produced(|p| p.topics.insert(name.to_owned(), topic.clone()));
    topic
}

/// Whether the caller has INSERT on `kafka.messages` (superusers and the owner do).
fn may_insert_messages() -> bool {
    // SAFETY: catalog lookups inside a transaction.
    unsafe {
        let namespace = pg_sys::get_namespace_oid(c"kafka".as_ptr(), true);
        let messages = pg_sys::get_relname_relid(c"messages".as_ptr(), namespace);
        messages != pg_sys::InvalidOid
            && pg_sys::pg_class_aclcheck(messages, pg_sys::GetUserId(), pg_sys::ACL_INSERT as pg_sys::AclMode)
                == pg_sys::AclResult::ACLCHECK_OK
    }
}

/// The statements `kafka.produce()` runs, planned once per backend.
struct Plans {
    topic: OwnedPreparedStatement,
    insert: OwnedPreparedStatement,
    insert_batch: OwnedPreparedStatement,
}

thread_local! {
    static PLANS: RefCell<Option<Plans>> = const { RefCell::new(None) };
}

fn with_plans<R>(f: impl FnOnce(&mut SpiClient<'_>, &Plans) -> R) -> R {
    Spi::connect_mut(|client| {
        PLANS.with(|cell| {
            let mut plans = cell.borrow_mut();
            if plans.is_none() {
                *plans = Some(plan(client));
            }
            let Some(planned) = plans.as_ref() else { error!("pg_kafka: kafka.produce()'s statements are not planned") };
            f(client, planned)
        })
    })
}

/// Plans `kafka.produce()`'s statements, or raises an ERROR saying why not.
fn plan(client: &mut SpiClient<'_>) -> Plans {
    type O = PgBuiltInOids;
    let oid = PgOid::BuiltIn;
    let row_types = [O::INT4OID, O::INT4OID, O::INT8OID, O::TIMESTAMPTZOID, O::BYTEAOID, O::BYTEAOID, O::BYTEAOID].map(oid);
    let planned = client.prepare_mut(TOPIC_FOR_PRODUCE, &[oid(O::TEXTOID)]).map(|p| p.keep()).and_then(|topic| {
        let insert = client.prepare_mut(PRODUCE_ROW, &row_types)?.keep();
        let batch_types = [O::INT4OID, O::INT4OID, O::INT8OID, O::TIMESTAMPTZOID, O::BYTEAOID].map(oid);
        let insert_batch = client.prepare_mut(PRODUCE_BATCH, &batch_types)?.keep();
        Ok(Plans { topic, insert, insert_batch })
    });
    planned.unwrap_or_else(|e| error!("pg_kafka: cannot plan kafka.produce()'s statements: {e}"))
}

/// Whether the Kafka ACLs let `role` WRITE `topic` (as `User:<role>` or any
/// role it is a member of, from any host).
fn acls_allow_write(role: String, topic: &str) -> bool {
    let mut storage = PgStorage;
    let (Ok(acls), Ok(principals)) = (storage.acls(), storage.principals(&[role])) else { return false };
    principals.first().is_some_and(|principal| is_allowed(&acls, principal, "*", Operation::Write, (ResourceType::Topic, topic)))
}

/// The name of the role the caller runs as.
fn current_role_name() -> String {
    // SAFETY: the current role's name, palloc'd and copied here.
    unsafe { std::ffi::CStr::from_ptr(pg_sys::GetUserNameFromId(pg_sys::GetUserId(), false)) }.to_string_lossy().into_owned()
}

/// The partition asked for, else Kafka's murmur2 choice for the key, else this
/// transaction's partition for the topic's keyless messages (sticky, like Kafka's
/// producers; chosen at random once).
fn choose_partition(topic: &Topic, message: &Message<'_>) -> i32 {
    match (message.partition, message.key) {
        (Some(partition), _) if (0..topic.partitions).contains(&partition) => partition,
        (Some(partition), _) => {
            ereport!(
                ERROR,
                PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
                format!("topic \"{}\" has no partition {partition} (it has {})", topic.name, topic.partitions)
            );
        }
        (None, Some(key)) => partition_for_key(key, topic.partitions),
        (None, None) => with_produced(|p| *p.sticky.entry(topic.id).or_insert_with(|| random_below(topic.partitions))),
    }
}

fn random_below(n: i32) -> i32 {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    // SAFETY: reading a backend global.
    let pid = unsafe { pg_sys::MyProcPid } as u32;
    ((nanos.wrapping_mul(2_654_435_761) ^ pid) as i32 & 0x7fff_ffff) % n.max(1)
}

/// The partition's next offset as committed now (and as this transaction's earlier
/// messages left it): read under a snapshot taken after the append lock was granted, so
/// that it sees the commit of whoever held the lock before, even in a REPEATABLE READ or
/// SERIALIZABLE transaction whose own snapshot is older.
fn stored_next_offset(topic: &Topic, partition: i32) -> i64 {
    let topic_id = topic.id;
    match as_bootstrap_superuser(|| crate::pg::index_read::last_offset_now(topic.layout, topic_id, partition)) {
        Ok(Some(last)) => last + 1,
        Ok(None) => empty_partition_next_offset(topic_id, partition),
        Err(e) => error!("pg_kafka: cannot read the next offset of topic id {topic_id} partition {partition}: {e}"),
    }
}

/// An empty partition continues where DeleteRecords or retention left its log start (or
/// at 0).
fn empty_partition_next_offset(topic_id: i32, partition: i32) -> i64 {
    // Two integers: never a NUL (an empty query would fail below, not panic).
    let query = std::ffi::CString::new(format!("SELECT kafka.high_watermark({topic_id}, {partition})")).unwrap_or_default();
    // SAFETY: SPI inside Spi::connect; the latest snapshot is pushed and popped around a
    // read-only query (which then uses it); an ERROR aborts the (sub)transaction, which
    // pops it.
    as_bootstrap_superuser(|| unsafe {
        pg_sys::CommandCounterIncrement();
        pg_sys::PushActiveSnapshot(pg_sys::GetLatestSnapshot());
        let next = Spi::connect(|_| {
            let status = pg_sys::SPI_execute(query.as_ptr(), true, 1);
            if status != pg_sys::SPI_OK_SELECT as i32 || pg_sys::SPI_processed != 1 {
                return None;
            }
            let table = pg_sys::SPI_tuptable;
            let mut is_null = false;
            let datum = pg_sys::SPI_getbinval(*(*table).vals, (*table).tupdesc, 1, &mut is_null);
            i64::from_datum(datum, is_null)
        });
        pg_sys::PopActiveSnapshot();
        next.unwrap_or_else(|| error!("pg_kafka: cannot read the next offset of topic id {topic_id} partition {partition}"))
    })
}

fn insert_row(topic_id: i32, partition: i32, offset: i64, message: &Message<'_>) {
    let inserted = with_plans(|client, plans| {
        client
            .update(
                &plans.insert,
                None,
                &[
                    topic_id.into(),
                    partition.into(),
                    offset.into(),
                    message.timestamp.into(),
                    message.key.into(),
                    message.value.into(),
                    message.headers.as_deref().into(),
                ],
            )
            .map(|_| ())
    });
    if let Err(e) = inserted {
        error!("pg_kafka: cannot store the message: {e}");
    }
}

/// The message as a batch of one record (uncompressed, CreateTime: what a Kafka producer
/// sending it alone would have sent) at `offset`.
fn insert_batch(topic_id: i32, partition: i32, offset: i64, message: &Message<'_>) {
    let timestamp_ms = match message.timestamp {
        Some(ts) => kafka_timestamp_ms(ts.into()),
        None => pg_kafka_core::storage::now_ms(),
    };
    let Some(timestamp) = crate::monitor::unix_ms_timestamp(timestamp_ms) else {
        error!("pg_kafka: timestamp {timestamp_ms} ms is outside Postgres's range")
    };
    let bytes = |b: Option<&[u8]>| b.map(bytes::Bytes::copy_from_slice);
    let record = Record {
        offset_delta: 0,
        timestamp: timestamp_ms,
        key: bytes(message.key),
        value: bytes(message.value),
        headers: bytes(message.headers.as_deref()),
    };
    let batch = encode_batch(offset, &[record]);
    let inserted = with_plans(|client, plans| {
        let args = [topic_id.into(), partition.into(), offset.into(), timestamp.into(), batch.as_ref().into()];
        client.update(&plans.insert_batch, None, &args).map(|_| ())
    });
    if let Err(e) = inserted {
        error!("pg_kafka: cannot store the message: {e}");
    }
}

/// Callbacks at the end of every transaction and subtransaction of this backend,
/// registered at its first `kafka.produce()`.
fn register_callbacks() {
    thread_local! {
        static REGISTERED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    }
    if !REGISTERED.with(|r| r.replace(true)) {
        // SAFETY: plain C callbacks, registered once for the backend's life.
        unsafe {
            pg_sys::RegisterXactCallback(Some(at_transaction_end), std::ptr::null_mut());
            pg_sys::RegisterSubXactCallback(Some(at_subtransaction_end), std::ptr::null_mut());
        }
    }
}

/// Commit (or PREPARE): the worker learns which partitions moved, before the locks go.
/// Abort: nothing was written. Must not raise an ERROR.
#[pg_guard]
unsafe extern "C-unwind" fn at_transaction_end(event: pg_sys::XactEvent::Type, _arg: *mut std::ffi::c_void) {
    use pg_sys::XactEvent::*;
    match event {
        XACT_EVENT_COMMIT | XACT_EVENT_PREPARE => {
            if let Some(produced) = PRODUCED.with(|cell| cell.borrow_mut().take()) {
                appends::publish(&produced.written.into_iter().collect::<Vec<_>>());
            }
        }
        XACT_EVENT_ABORT | XACT_EVENT_PARALLEL_ABORT => {
            PRODUCED.with(|cell| cell.borrow_mut().take());
        }
        _ => {}
    }
}

/// A rolled-back savepoint takes its rows and the locks it took with it: offsets and
/// topics are looked up again (partitions written stay recorded; a spare wake-up is
/// harmless).
#[pg_guard]
unsafe extern "C-unwind" fn at_subtransaction_end(
    event: pg_sys::SubXactEvent::Type,
    _mine: pg_sys::SubTransactionId,
    _parent: pg_sys::SubTransactionId,
    _arg: *mut std::ffi::c_void,
) {
    if event == pg_sys::SubXactEvent::SUBXACT_EVENT_ABORT_SUB {
        PRODUCED.with(|cell| {
            if let Some(produced) = cell.borrow_mut().as_mut() {
                produced.next_offsets.clear();
                produced.topics.clear();
                produced.sticky.clear();
            }
        });
    }
}

/// The SQL functions (declared in sql/outbox.sql).
#[pg_schema]
mod kafka {
    use super::*;

    /// `kafka.produce(topic, key bytea, value bytea, headers jsonb, partition, timestamp)`:
    /// the message's offset. The text and jsonb overloads and the array form are SQL
    /// functions calling this one.
    #[pg_extern(volatile, parallel_unsafe, sql = false)]
    pub fn produce(
        topic: Option<&str>,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: Option<JsonB>,
        partition: Option<i32>,
        timestamp: Option<TimestampWithTimeZone>,
    ) -> i64 {
        let Some(topic) = topic else {
            ereport!(ERROR, PgSqlErrorCode::ERRCODE_NULL_VALUE_NOT_ALLOWED, "kafka.produce(): the topic must not be null");
        };
        let headers = match headers.map(|h| headers_from_json(&h.0)) {
            None => None,
            Some(Ok(encoded)) => encoded.map(|b| b.to_vec()),
            Some(Err(e)) => {
                ereport!(ERROR, PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE, format!("kafka.produce(): {e}"));
            }
        };
        super::produce(topic, Message { key, value, headers, partition, timestamp })
    }
}
