#![doc = include_str!("../README.md")]
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

#[cfg(any(test, feature = "alloc"))]
extern crate alloc;
#[cfg(test)]
extern crate std;

/// Declares modules that are lb-core's own business: private to the crate, and public only with
/// the `internals` feature, which lb-core's benchmarks, tests and fuzz targets enable to reach
/// the pieces they measure or check. Nothing behind `internals` is covered by the public-API
/// baseline (`lb-core/public-api.txt`): it may change in any release.
macro_rules! internal {
    ($($(#[$meta:meta])* mod $name:ident;)*) => {$(
        $(#[$meta])*
        #[cfg(feature = "internals")]
        #[doc(hidden)]
        pub mod $name;
        $(#[$meta])*
        #[cfg(not(feature = "internals"))]
        #[allow(dead_code, unreachable_pub, unused_imports)]
        pub(crate) mod $name;
    )*};
}

pub mod balancer;
pub mod checksum;
pub mod config;
pub mod director;
pub mod health;
pub mod ipvsadm;
pub mod keepalived;
pub mod server;
pub mod service;
pub mod stats;
pub mod sync;
pub mod tunnel;

internal! {
    mod addr;
    mod conn;
    mod hash;
    mod nat;
    mod packet;
    mod sched;
    mod tcp;
    mod time;
    mod verdict;
}

pub use addr::Protocol;
pub use balancer::{
    Balancer, ConnInfo, ConnReuseMode, Counters, DefenceMode, Event, ImportReport, Packet, Secrets,
    Settings, REPLY_MAX,
};
pub use config::{
    ConfigError, ForwardMethod, GueCsum, Persistence, SchedFlags, SchedulerKind, ServerConfig,
    ServiceConfig, ServiceKey, Timeouts, TunnelKind,
};
pub use conn::{ConnResources, ConnSizes, ConnStorage};
pub use director::{Director, DirectorResources, DirectorStorage, Limits, SchedInput};
pub use health::{
    CheckKind, HealthCheck, HealthError, HealthLimits, HealthResources, HealthState, HealthStatus,
    HealthStorage, HttpUrl, PassiveAction, PassiveConfig, Probe, ProbeId, ProbeKind, ProbeOutcome,
    Reason, VirtualServerHealth,
};
pub use ipvsadm::LineError;
pub use server::{RealServer, ServerId};
pub use service::{Service, ServiceId};
pub use tcp::{TcpState, TcpTimeouts};
pub use time::{Duration, Instant};
pub use verdict::{DropReason, Transmit, Verdict};
