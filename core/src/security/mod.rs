//! Who may connect and what they may do, as pure code: listener specifications, the SCRAM
//! exchange over Postgres's own password verifiers, and Kafka ACLs decided with Postgres
//! role membership. The broker runs these against storage and per connection; the server
//! terminates TLS. See docs/security.md.

pub mod acl;
pub mod listeners;
pub mod scram;
