//! Connection state that outlives one process or one host (docs/sync.md): IPVS's sync
//! records on the wire ([`wire`]), and the table snapshot a restart carries over
//! ([`snapshot`]), which is a sequence of the same records.
//!
//! A [`Balancer`](crate::Balancer) writes its table with
//! [`export_state`](crate::Balancer::export_state) and loads one with
//! [`import_state`](crate::Balancer::import_state).

pub mod daemon;
pub mod snapshot;
pub mod wire;

pub use snapshot::{Exporter, SnapshotError};
