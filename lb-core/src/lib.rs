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
pub mod balancer;
pub mod checksum;
pub mod config;
pub mod conn;
pub mod director;
pub mod hash;
pub mod ipvsadm;
pub mod nat;
pub mod packet;
pub mod sched;
pub mod server;
pub mod service;
pub mod stats;
pub mod tcp;
pub mod time;
pub mod verdict;

pub use addr::Protocol;
pub use balancer::{Balancer, ConnInfo, Counters, Event, Packet, Settings};
pub use config::{
    ConfigError, ForwardMethod, Persistence, SchedFlags, SchedulerKind, ServerConfig,
    ServiceConfig, ServiceKey, Timeouts,
};
pub use conn::ConnTable;
pub use director::{Director, DirectorResources, DirectorStorage, Limits, SchedInput};
pub use nat::NatError;
pub use packet::{Kind, Malformed, Parsed};
pub use server::{RealServer, ServerId};
pub use service::{Service, ServiceId};
pub use tcp::{Direction, TcpState, TcpTimeouts};
pub use time::{Duration, Instant};
pub use verdict::{DropReason, Verdict};
