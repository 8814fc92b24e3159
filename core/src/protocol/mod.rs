//! The Kafka wire protocol, with no I/O policy and no Postgres.
//!
//! - [`frame`]: the 4-byte size prefix, read without allocating what a client merely announces.
//! - [`header`]: request headers in, response headers out, for every header version.
//! - [`parts`]: response frames in parts, Fetch's record batches sent as they are.
//! - [`partitioner`]: Kafka's murmur2 key partitioner, for messages produced from SQL.
//! - [`versions`]: the one table of APIs and versions we serve; ApiVersions and request
//!   validation both read it.
//! - [`legacy`]: request versions Kafka 4 dropped that deployed clients still send,
//!   translated to the lowest version served (and their answers back).
//! - [`shape`]: walks a request body against its schema before `kafka-protocol` decodes it,
//!   so that no array length read off the wire can make the decoder pre-allocate more than
//!   the bytes actually present justify.

pub mod compress;
pub mod frame;
pub mod header;
pub mod legacy;
pub mod partitioner;
pub mod parts;
pub mod records;
#[cfg(any(test, feature = "testing"))]
pub mod samples;
pub mod shape;
pub mod versions;
