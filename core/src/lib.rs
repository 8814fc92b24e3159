//! pg_kafka's broker, without Postgres: everything that parses client bytes, decides what
//! a Kafka broker would answer, and batches writes, built and tested with no pgrx.
//!
//! Layers, each importing only the ones below it:
//! ```text
//!  server    tokio listener, one task per connection, framing and back-pressure
//!    │
//!  broker    one handler module per Kafka API; `groups` (consumer-group membership)
//!    │
//!  writer    group commit (queue → committer → acknowledge), producer sequences, retention
//!    │
//!  storage   the `Storage` trait in Kafka terms, the bridge to the storage thread,
//!    │       topic cache, partition watermarks (the Postgres engine lives in the glue crate)
//!  protocol  frames, headers, versions, shape checks, RecordBatch codec (pure)
//!  security  listener specs, SCRAM-SHA-256 over Postgres verifiers, ACLs and their
//!            decision with role membership (pure)
//!
//!  config, logging, metrics: plain settings, a log queue and operators' figures, used
//!  by every layer
//! ```
//! [`service`] is the composition root: it wires the parts into a [`broker::Broker`] and the
//! [`service::StorageSide`] that the thread owning storage drives.
//!
//! See docs/architecture.md for how a request flows.

pub mod broker;
pub mod config;
pub mod logging;
pub mod metrics;
pub mod protocol;
pub mod security;
pub mod server;
pub mod service;
pub mod storage;
pub mod writer;
