//! Virtual services (docs/ipvs-semantics.md §1 "Service"): configuration, the list of real servers in IPVS
//! list order, the scheduler's state and the counters. Owned by the [`Director`], which keeps
//! them in caller storage; the datapath reads them through `Director::service`.
//!
//! Size: a [`ServiceSlot`] is 240 bytes on 64-bit targets (see `director` module docs for the whole storage).
//!
//! [`Director`]: crate::director::Director

use core::net::{IpAddr, Ipv4Addr, SocketAddr};

use crate::addr::Protocol;
use crate::config::{SchedFlags, SchedulerKind, ServiceConfig, ServiceKey};
use crate::sched::SchedState;
use crate::stats::{RateEstimator, Stats};

/// Index of a service slot in the director's storage. Stable while the service exists,
/// including after deletion while connections still reference it.
pub type ServiceId = u16;

/// A virtual service and its run-time state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Service {
    /// What `-A`/`-E` configured.
    pub config: ServiceConfig,
    /// Traffic counters (`ipvsadm -L --stats`).
    pub stats: Stats,
    /// The rate estimator (`ipvsadm -L --rate`).
    pub rates: RateEstimator,
    /// True once deleted (`-D`, `-C`) while some of its servers are still referenced by
    /// connections. The datapath keeps forwarding or expiring those entries; lookups no longer
    /// find the service, and the slot is freed when the last reference goes.
    pub deleted: bool,
    /// Number of servers in the list (the first `len` ids of its order array).
    pub(crate) len: u16,
    /// Slots of the sh/dh/mh table in use (0 for the other schedulers).
    pub(crate) table_size: u32,
    /// rr cursor, wrr state, twos RNG.
    pub(crate) sched: SchedState,
}

impl Service {
    /// A placeholder of all zero bits, for free [`ServiceSlot`]s; not a usable service.
    pub(crate) const ZEROED: Service = Service {
        config: ServiceConfig {
            key: ServiceKey::Addr {
                proto: Protocol::Tcp,
                vip: SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0),
            },
            scheduler: SchedulerKind::Rr,
            flags: SchedFlags {
                fallback: false,
                port: false,
            },
            persistence: None,
            one_packet: false,
            table_size: None,
            sloppy_tcp: false,
        },
        stats: Stats::new(),
        rates: RateEstimator::NEW,
        deleted: false,
        len: 0,
        table_size: 0,
        sched: SchedState::ZEROED,
    };

    /// A fresh service with an empty server list.
    pub(crate) const fn new(config: ServiceConfig, rng_seed: u64) -> Self {
        Service {
            config,
            stats: Stats::new(),
            rates: RateEstimator::NEW,
            deleted: false,
            len: 0,
            table_size: 0,
            sched: SchedState::new(rng_seed),
        }
    }

    /// Number of real servers in the list (deleted ones not included).
    pub fn len(&self) -> usize {
        usize::from(self.len)
    }

    /// Whether the server list is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The sh/dh/mh table size in use, or 0 for schedulers without a table.
    pub fn table_size(&self) -> u32 {
        self.table_size
    }

    /// The scheduler's state (rr cursor, wrr cl/di/mw/cw, twos RNG), for inspection.
    #[cfg(test)]
    pub(crate) fn sched_state(&self) -> &SchedState {
        &self.sched
    }
}

/// One service slot of the director's storage: a [`Service`] or nothing. Unlike
/// `Option<Service>`, a free slot is all zero bits, so statically allocated storage
/// ([`DirectorResources`](crate::director::DirectorResources)) lands in `.bss`, not in flash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServiceSlot {
    service: Service,
    used: bool,
}

impl ServiceSlot {
    /// A free slot (all zero bits).
    pub const FREE: ServiceSlot = ServiceSlot {
        service: Service::ZEROED,
        used: false,
    };

    /// A slot holding `service`.
    pub const fn new(service: Service) -> Self {
        ServiceSlot {
            service,
            used: true,
        }
    }

    /// The service, if the slot is in use.
    pub fn get(&self) -> Option<&Service> {
        self.used.then_some(&self.service)
    }

    /// The service, mutably, if the slot is in use.
    pub fn get_mut(&mut self) -> Option<&mut Service> {
        self.used.then_some(&mut self.service)
    }

    /// Whether the slot is free.
    pub const fn is_free(&self) -> bool {
        !self.used
    }
}
