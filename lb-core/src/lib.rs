//! lb-core: Linux IPVS in userspace, as a `no_std`, sans-IO library.
//!
//! Packets and `now` come in as arguments; verdicts and the next timeout come out. lb-core never
//! reads a clock, a socket or a global RNG (seeds are passed in), and never allocates: every
//! table lives in memory the caller hands over, as slices or `const`-constructible resource
//! structs that can sit in a `static`.
//!
//! # How a packet flows
//! ```text
//! frontend ──► Balancer::process(now, buf, len) / process_burst(now, packets, verdicts)
//!                │ packet::parse            (smoltcp wire views; malformed → counted drop)
//!                │ Director::lookup         (service by proto + VIP + port)
//!                │ ConnTable::find          (one keyed index serves both directions)
//!                │ port reuse / removed / quiescent rules   (docs/ipvs-semantics.md §3.2; no dropped SYN)
//!                │ persistence template → Director::schedule (the 14 schedulers, §5)
//!                │ tcp::next_state          (IPVS's transition tables as data, §2)
//!                └ nat::rewrite_*           (RFC 1624 incremental checksums)
//!          ◄── Verdict::{ToServer, ToClient, Pass, Reply{len}, Drop(reason)}
//! timers:  Balancer::poll_timeout() → Balancer::handle_timeout(now)
//! control: Balancer::apply(now, &ipvsadm::Command)   (one grammar: config files, lbadm, fuzz)
//! ```
//!
//! # Modules
//! | module | holds |
//! |---|---|
//! | [`balancer`] | [`Balancer`]: the datapath, counters, defences, events |
//! | [`director`] | the control plane: services, real servers (IPVS list order), counters, rates |
//! | [`sched`] | one file per scheduler, dispatched by a `match` |
//! | [`conn`] | the connection table: slab, keyed index, lazy timer wheel (64 B per entry) |
//! | [`tcp`] | IPVS's TCP states, transition tables (normal and secure_tcp) and timeouts |
//! | [`packet`], [`nat`], [`checksum`] | parsing, in-place rewrite, generated replies |
//! | [`ipvsadm`] | the ipvsadm command grammar and the `-S` writer |
//! | [`hash`] | the kernel's `hsiphash` and `hash_32`, and the keyed flow hash |
//!
//! The behaviour to match is Linux IPVS, written up in the repository's
//! `docs/ipvs-semantics.md`; every `§N.M` citation in lb-core's docs and comments is a section of
//! that document. Where lb-core differs on purpose, the [`balancer`] module docs list it.
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
pub mod config;
pub mod director;
pub mod ipvsadm;
pub mod server;
pub mod service;
pub mod stats;

internal! {
    mod addr;
    mod checksum;
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
    Balancer, ConnInfo, ConnReuseMode, Counters, DefenceMode, Event, Packet, Secrets, Settings,
    REPLY_MAX,
};
pub use config::{
    ConfigError, ForwardMethod, Persistence, SchedFlags, SchedulerKind, ServerConfig,
    ServiceConfig, ServiceKey, Timeouts,
};
pub use conn::{ConnResources, ConnStorage};
pub use director::{Director, DirectorResources, DirectorStorage, Limits, SchedInput};
pub use ipvsadm::LineError;
pub use server::{RealServer, ServerId};
pub use service::{Service, ServiceId};
pub use tcp::{TcpState, TcpTimeouts};
pub use time::{Duration, Instant};
pub use verdict::{DropReason, Transmit, Verdict};
