//! lb-core: Linux IPVS in userspace, as a `no_std`, sans-IO library.
//!
//! Packets and `now` come in as arguments; verdicts and the next timeout come out. lb-core never
//! reads a clock, a socket or a global RNG, and never allocates: every table lives in memory the
//! caller hands over.
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![allow(missing_docs)] // lifted module by module as the docs land

#[cfg(any(test, feature = "alloc"))]
extern crate alloc;
#[cfg(test)]
extern crate std;

pub mod addr;
pub mod config;
pub mod conn;
pub mod hash;
pub mod time;

pub use addr::Protocol;
pub use config::{
    ConfigError, ForwardMethod, Persistence, SchedFlags, SchedulerKind, ServerConfig,
    ServiceConfig, ServiceKey, Timeouts,
};
pub use conn::ConnTable;
pub use time::{Duration, Instant};
