//! `kafka.broker_stats`, `kafka.groups`, `kafka.group_members` and the live half of
//! `kafka.topic_partitions`: the broker seen from psql.
//!
//! Like `kafka.connections` ([`crate::connections`]), these are figures only the worker
//! has. It copies them into fixed tables in shared memory at most every
//! [`PUBLISH_EVERY`] (from its main loop, with no transaction), and the SQL functions
//! here read those tables in whatever backend calls them. Fixed sizes, because shared
//! memory cannot grow: rows beyond a table's size are left out (a NOTICE says how many),
//! text is cut to its field's size.

use std::time::{Duration, Instant};

use pg_kafka_core::broker::figures::{Figures, PartitionFigures};
use pg_kafka_core::broker::groups::assignment;
use pg_kafka_core::metrics::Metric;
use pg_kafka_core::storage::postgres_timestamp_us;
use pgrx::datum::TimestampWithTimeZone;
use pgrx::prelude::*;
use pgrx::{pg_shmem_init, PGRXSharedMemory, PgLwLock};

use crate::shared_text::Text;

/// How often the worker republishes.
pub const PUBLISH_EVERY: Duration = Duration::from_millis(200);

const MAX_METRICS: usize = 512;
const MAX_GROUPS: usize = 256;
const MAX_MEMBERS: usize = 1024;
const MAX_PARTITIONS: usize = 4096;

#[derive(Copy, Clone)]
struct MetricRow {
    name: Text<48>,
    api: Text<32>,
    value: f64,
}

#[derive(Copy, Clone)]
struct GroupRow {
    group_id: Text<128>,
    state: Text<24>,
    protocol_type: Text<32>,
    protocol: Text<32>,
    generation: i32,
    members: i32,
}

#[derive(Copy, Clone)]
struct MemberRow {
    group_id: Text<128>,
    member_id: Text<128>,
    instance_id: Text<64>,
    client_id: Text<64>,
    client_host: Text<48>,
    assignment: Text<256>,
}

#[derive(Copy, Clone)]
struct PartitionRow {
    topic_id: i32,
    partition: i32,
    /// -1 when unknown.
    log_start: i64,
    high: i64,
    /// 0 when not appended to since the worker started.
    last_append_ms: i64,
}

/// One fixed table: rows in use, rows left out, the rows.
#[derive(Copy, Clone)]
struct Table<R: Copy, const N: usize> {
    count: usize,
    more: usize,
    rows: [R; N],
}

impl<R: Copy, const N: usize> Table<R, N> {
    fn fill(&mut self, rows: impl ExactSizeIterator<Item = R>) {
        let total = rows.len();
        self.count = 0;
        for (slot, row) in self.rows.iter_mut().zip(rows) {
            *slot = row;
            self.count += 1;
        }
        self.more = total - self.count;
    }

    fn in_use(&self) -> &[R] {
        &self.rows[..self.count]
    }
}

#[derive(Copy, Clone)]
pub struct Published {
    metrics: Table<MetricRow, MAX_METRICS>,
    groups: Table<GroupRow, MAX_GROUPS>,
    members: Table<MemberRow, MAX_MEMBERS>,
    partitions: Table<PartitionRow, MAX_PARTITIONS>,
}

impl Default for Published {
    fn default() -> Self {
        let metric = MetricRow { name: Text::EMPTY, api: Text::EMPTY, value: 0.0 };
        let group = GroupRow {
            group_id: Text::EMPTY,
            state: Text::EMPTY,
            protocol_type: Text::EMPTY,
            protocol: Text::EMPTY,
            generation: 0,
            members: 0,
        };
        let member = MemberRow {
            group_id: Text::EMPTY,
            member_id: Text::EMPTY,
            instance_id: Text::EMPTY,
            client_id: Text::EMPTY,
            client_host: Text::EMPTY,
            assignment: Text::EMPTY,
        };
        let partition = PartitionRow { topic_id: 0, partition: 0, log_start: -1, high: -1, last_append_ms: 0 };
        Published {
            metrics: Table { count: 0, more: 0, rows: [metric; MAX_METRICS] },
            groups: Table { count: 0, more: 0, rows: [group; MAX_GROUPS] },
            members: Table { count: 0, more: 0, rows: [member; MAX_MEMBERS] },
            partitions: Table { count: 0, more: 0, rows: [partition; MAX_PARTITIONS] },
        }
    }
}

unsafe impl PGRXSharedMemory for Published {}

static PUBLISHED: PgLwLock<Published> = unsafe { PgLwLock::new(c"pg_kafka_monitor") };

/// Reserves the tables. `_PG_init`, while preloading.
pub fn init() {
    pg_shmem_init!(PUBLISHED);
}

/// Publishes the connections and the broker's figures, at most every [`PUBLISH_EVERY`].
#[derive(Default)]
pub struct Publisher {
    last: Option<Instant>,
}

impl Publisher {
    /// `connections(limit)`: the oldest `limit` connections and how many are open.
    pub fn publish_if_due(
        &mut self,
        figures: &Figures,
        connections: impl FnOnce(usize) -> (Vec<pg_kafka_core::broker::session::ConnectionInfo>, usize),
    ) {
        if self.last.is_some_and(|at| at.elapsed() < PUBLISH_EVERY) {
            return;
        }
        self.last = Some(Instant::now());
        let (listed, open) = connections(crate::connections::MAX_ROWS);
        crate::connections::publish(&listed, open);
        publish(figures);
    }
}

/// Empties every table (the worker is stopping).
pub fn clear() {
    crate::connections::clear();
    *PUBLISHED.exclusive() = Published::default();
}

fn publish(figures: &Figures) {
    // Gathered before the lock is taken: readers wait only for the copy.
    let metrics: Vec<MetricRow> = figures.broker().iter().map(metric_row).collect();
    let groups = figures.groups();
    let group_rows: Vec<GroupRow> = groups
        .iter()
        .map(|(id, g)| GroupRow {
            group_id: Text::from(id),
            state: Text::from(g.state.name()),
            protocol_type: Text::from(&g.protocol_type),
            protocol: Text::from(&g.protocol),
            generation: g.generation,
            members: g.members.len() as i32,
        })
        .collect();
    let member_rows: Vec<MemberRow> = groups
        .iter()
        .flat_map(|(id, g)| {
            g.members.iter().map(move |m| MemberRow {
                group_id: Text::from(id),
                member_id: Text::from(&m.member_id),
                instance_id: Text::from(m.instance_id.as_deref().unwrap_or_default()),
                client_id: Text::from(&m.client_id),
                client_host: Text::from(&m.client_host),
                assignment: Text::from(&assignment_text(&g.protocol_type, &m.assignment)),
            })
        })
        .collect();
    let partition_rows: Vec<PartitionRow> = figures.partitions().iter().map(partition_row).collect();
    let mut published = PUBLISHED.exclusive();
    published.metrics.fill(metrics.into_iter());
    published.groups.fill(group_rows.into_iter());
    published.members.fill(member_rows.into_iter());
    published.partitions.fill(partition_rows.into_iter());
}

fn metric_row(metric: &Metric) -> MetricRow {
    MetricRow { name: Text::from(metric.name), api: Text::from(metric.api.unwrap_or_default()), value: metric.value }
}

fn partition_row(p: &PartitionFigures) -> PartitionRow {
    PartitionRow {
        topic_id: p.key.0,
        partition: p.key.1,
        log_start: p.bounds.map_or(-1, |b| b.log_start),
        high: p.bounds.map_or(-1, |b| b.high),
        last_append_ms: p.last_append_ms.unwrap_or(0),
    }
}

/// A consumer's assignment as `topic:0,1;other:2`; other protocols' as a byte count.
fn assignment_text(protocol_type: &str, bytes: &[u8]) -> String {
    if bytes.is_empty() {
        return String::new();
    }
    let consumer = if protocol_type == "consumer" { assignment::describe(bytes) } else { None };
    consumer.unwrap_or_else(|| format!("({} bytes)", bytes.len()))
}

/// Unix milliseconds as a timestamptz (`connected_at`, `last_append_time`).
pub fn unix_ms_timestamp(unix_ms: i64) -> Option<TimestampWithTimeZone> {
    postgres_timestamp_us(unix_ms).and_then(|us| TimestampWithTimeZone::try_from(us).ok())
}

fn notice_left_out(what: &str, more: usize, size: usize) {
    if more > 0 {
        notice!("pg_kafka: {more} more {what} than the shared table can list ({size})");
    }
}

/// SQL functions in schema `kafka` (declared by sql/monitor.sql).
#[pg_schema]
mod kafka {
    use super::*;

    #[pg_extern(stable, sql = false)]
    pub fn broker_stat_list() -> TableIterator<'static, (name!(metric, String), name!(api, Option<String>), name!(value, f64))> {
        let published = PUBLISHED.share();
        let rows: Vec<_> = published.metrics.in_use().iter().map(|m| (m.name.as_str().to_owned(), m.api.non_empty(), m.value)).collect();
        TableIterator::new(rows)
    }

    #[pg_extern(stable, sql = false)]
    #[allow(clippy::type_complexity)]
    pub fn group_list() -> TableIterator<
        'static,
        (
            name!(group_id, String),
            name!(state, String),
            name!(protocol_type, Option<String>),
            name!(protocol, Option<String>),
            name!(generation, i32),
            name!(members, i32),
        ),
    > {
        let published = PUBLISHED.share();
        notice_left_out("groups", published.groups.more, MAX_GROUPS);
        let rows: Vec<_> = published
            .groups
            .in_use()
            .iter()
            .map(|g| {
                (
                    g.group_id.as_str().to_owned(),
                    g.state.as_str().to_owned(),
                    g.protocol_type.non_empty(),
                    g.protocol.non_empty(),
                    g.generation,
                    g.members,
                )
            })
            .collect();
        TableIterator::new(rows)
    }

    #[pg_extern(stable, sql = false)]
    #[allow(clippy::type_complexity)]
    pub fn group_member_list() -> TableIterator<
        'static,
        (
            name!(group_id, String),
            name!(member_id, String),
            name!(group_instance_id, Option<String>),
            name!(client_id, Option<String>),
            name!(client_host, Option<String>),
            name!(assignment, Option<String>),
        ),
    > {
        let published = PUBLISHED.share();
        notice_left_out("group members", published.members.more, MAX_MEMBERS);
        let rows: Vec<_> = published
            .members
            .in_use()
            .iter()
            .map(|m| {
                (
                    m.group_id.as_str().to_owned(),
                    m.member_id.as_str().to_owned(),
                    m.instance_id.non_empty(),
                    m.client_id.non_empty(),
                    m.client_host.non_empty(),
                    m.assignment.non_empty(),
                )
            })
            .collect();
        TableIterator::new(rows)
    }

    #[pg_extern(stable, sql = false)]
    #[allow(clippy::type_complexity)]
    pub fn partition_figure_list() -> TableIterator<
        'static,
        (
            name!(topic_id, i32),
            name!(partition, i32),
            name!(log_start_offset, Option<i64>),
            name!(high_watermark, Option<i64>),
            name!(last_append_time, Option<TimestampWithTimeZone>),
        ),
    > {
        if !serves_this_database() {
            return TableIterator::new(Vec::new());
        }
        let published = PUBLISHED.share();
        notice_left_out("partitions", published.partitions.more, MAX_PARTITIONS);
        let known = |v: i64| (v >= 0).then_some(v);
        let rows: Vec<_> = published
            .partitions
            .in_use()
            .iter()
            .map(|p| {
                let appended = (p.last_append_ms != 0).then(|| unix_ms_timestamp(p.last_append_ms)).flatten();
                (p.topic_id, p.partition, known(p.log_start), known(p.high), appended)
            })
            .collect();
        TableIterator::new(rows)
    }
}

/// Whether the calling backend is in the database the worker serves. Its published
/// partition figures are keyed by topic id, and another database with the extension has
/// topics of its own under the same ids: there, the views compute their figures in SQL.
fn serves_this_database() -> bool {
    // SAFETY: a backend connected to a database; the name is palloc'd in the current context.
    let name = unsafe { pg_sys::get_database_name(pg_sys::MyDatabaseId) };
    if name.is_null() {
        return false;
    }
    // SAFETY: get_database_name returns a NUL-terminated string or NULL (checked above).
    let current = unsafe { std::ffi::CStr::from_ptr(name) };
    current.to_bytes() == crate::gucs::served_database().as_bytes()
}
