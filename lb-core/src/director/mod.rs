//! The control plane: services, real servers, scheduling decisions and the counters the
//! datapath keeps, all in caller-owned fixed memory (docs/ipvs-semantics.md §1, §2.7, §4.7, §5).
//!
//! # Who calls what, and when
//! - **Configuration** (`ipvsadm -A/-E/-D/-a/-e/-d/-C/-Z`): [`Director::add_service`],
//!   [`edit_service`](Director::edit_service), [`del_service`](Director::del_service),
//!   [`add_server`](Director::add_server), [`edit_server`](Director::edit_server),
//!   [`del_server`](Director::del_server), [`clear`](Director::clear),
//!   [`zero_stats`](Director::zero_stats). Call them between packet bursts.
//! - **A new connection**: `lookup` the service, then
//!   [`schedule`](Director::schedule) a server; when the entry is created call
//!   [`bind_conn`](Director::bind_conn) (or `bind_template` for a
//!   persistence template), [`set_active`](Director::set_active) whenever its TCP state enters
//!   or leaves the active set (§2.1), `count_in` /
//!   `count_out` per packet, and [`unbind_conn`](Director::unbind_conn)
//!   / `unbind_template` when the entry is freed.
//! - **Timers**: ask [`poll_timeout`](Director::poll_timeout), call
//!   [`handle_timeout`](Director::handle_timeout) when it has passed (rate estimator every 2 s,
//!   lblc/lblcr garbage collection every 60 s).
//! - **Controllers** draining a server (weight 0) poll `poll_drained`
//!   or check [`drained`](Director::drained), then delete it.
//!
//! # Deleted servers and services (IPVS's trash, §1 "Deleted destinations")
//! A deleted server leaves its service's list at once — schedulers never see it — but its slot
//! stays (`available == false`) while entries reference it, so the datapath can still read it.
//! Re-adding the same address:port to the same service revives it, counters included. The slot
//! is freed when its last reference is unbound (immediately if it had none: deliberate
//! difference, IPVS keeps an idle trash entry 120 s). A deleted service stays in its slot
//! (`service(id).deleted`) while any of its servers is referenced; re-adding the same service
//! key takes that slot back, so its trashed servers can be revived as in IPVS.
//!
//! # Memory
//! Storage is partitioned evenly per service slot: slot `s` owns servers
//! `s·P .. (s+1)·P` (`P` = [`Limits::servers_per_service`]; a [`ServerId`] is the global index),
//! order entries likewise, `T` table slots and `L` lblc and `L` lblcr entries. Bytes per item
//! (64-bit targets): [`ServiceSlot`] 240, [`RealServer`] 120, [`RateEstimator`] 80, order entry 2,
//! `MhScratch` and lblc/lblcr entries: see their modules; [`Limits::storage_bytes`] computes the
//! exact total. With [`Limits::default`] (64 services × 1023 servers, 65536 table slots, 1024
//! lblc entries) the services take 15 KiB, servers + rates + order 12.1 MiB (194 B per server
//! slot), tables 8 MiB, plus the mh scratch (one per server slot) and the lblc/lblcr caches. Hosts that need less pass smaller limits.
//!
//! Lookups scan the service slots (a handful of compares per service); scheduling scans the
//! service's contiguous order array plus the server array.

// The `Director` struct, its constructor and the slot helpers every part uses are here; the
// rest is split by concern (each module adds an `impl Director` block):
mod accounting; // bind/unbind, OVERLOAD, packet counters, drained events
mod config; // ipvsadm -A/-E/-D/-a/-e/-d/-C/-Z, hooks, tables, the trash
mod lookup; // service lookup, is_vip, unmatched, accessors
mod schedule; // SchedInput, schedule
mod storage; // Limits, DirectorStorage, DirectorResources
mod timers; // poll_timeout/handle_timeout, estimator, lblc/lblcr gc

use core::net::SocketAddr;

use managed::ManagedSlice;

use crate::config::ServiceKey;
use crate::sched::lblc::LblcEntry;
use crate::sched::lblcr::LblcrEntry;
use crate::sched::mh::MhScratch;
use crate::server::{DestList, RealServer, ServerId, NO_SERVER};
use crate::service::{Service, ServiceSlot};
use crate::stats::{RateEstimator, ESTIMATOR_PERIOD};
use crate::time::{Duration, Instant};

pub use accounting::{DrainedServer, DRAINED_QUEUE};
pub use lookup::Unmatched;
pub use schedule::SchedInput;
pub use storage::{DirectorResources, DirectorStorage, Limits};
pub use timers::{DEFAULT_LBLC_EXPIRATION, GC_PERIOD};

/// The control plane the datapath uses: services, real servers, scheduling, counters, timers.
pub struct Director<'a> {
    limits: Limits,
    services: ManagedSlice<'a, ServiceSlot>,
    servers: ManagedSlice<'a, RealServer>,
    server_rates: ManagedSlice<'a, RateEstimator>,
    order: ManagedSlice<'a, ServerId>,
    tables: ManagedSlice<'a, ServerId>,
    mh_scratch: ManagedSlice<'a, MhScratch>,
    lblc: ManagedSlice<'a, LblcEntry>,
    lblcr: ManagedSlice<'a, LblcrEntry>,
    seed: u64,
    /// One past the highest service slot ever filled since `new`: every slot from here on is
    /// `None`, so service lookups (one per packet) stop here instead of scanning every slot.
    svc_high: usize,
    fwmark_services: u16,
    port0_services: u16,
    next_estimate: Instant,
    next_gc: Instant,
    idle: timers::Idle,
    lblc_expiration: Duration,
    lblcr_expiration: Duration,
    drained: heapless::Deque<DrainedServer, DRAINED_QUEUE>,
    drained_lost: bool,
}

impl<'a> Director<'a> {
    /// A director over `storage`, with no services. `seed` seeds twos's per-service random
    /// generators (same seed and same commands: same decisions). Call once at start-up; the
    /// storage is reset here. If a slice is shorter than its [`Limits`] say, the limits shrink
    /// to fit (see [`Director::limits`]); so do `servers_per_service` to keep every
    /// [`ServerId`] below [`NO_SERVER`].
    pub fn new(storage: DirectorStorage<'a>, seed: u64) -> Self {
        let DirectorStorage {
            limits,
            mut services,
            mut servers,
            mut server_rates,
            mut order,
            mut tables,
            mut mh_scratch,
            mut lblc,
            mut lblcr,
        } = storage;
        let svc = limits
            .services
            .min(services.len())
            .min(usize::from(u16::MAX));
        let per_of = |len: usize| len.checked_div(svc).unwrap_or(0);
        let mut per = limits
            .servers_per_service
            .min(per_of(servers.len()))
            .min(per_of(server_rates.len()))
            .min(per_of(order.len()))
            .min(per_of(mh_scratch.len()));
        per = per.min(per_of(usize::from(NO_SERVER)));
        let limits = Limits {
            services: svc,
            servers_per_service: per,
            table_slots_per_service: limits.table_slots_per_service.min(per_of(tables.len())),
            lblc_entries_per_service: limits
                .lblc_entries_per_service
                .min(per_of(lblc.len()))
                .min(per_of(lblcr.len())),
        };
        services.fill(ServiceSlot::FREE);
        servers.fill(RealServer::EMPTY);
        server_rates.fill(RateEstimator::NEW);
        order.fill(NO_SERVER);
        tables.fill(NO_SERVER);
        mh_scratch.fill(MhScratch::EMPTY);
        lblc.fill(LblcEntry::EMPTY);
        lblcr.fill(LblcrEntry::EMPTY);
        Director {
            limits,
            services,
            servers,
            server_rates,
            order,
            tables,
            mh_scratch,
            lblc,
            lblcr,
            seed,
            svc_high: 0,
            fwmark_services: 0,
            port0_services: 0,
            next_estimate: Instant::ZERO + ESTIMATOR_PERIOD,
            next_gc: Instant::ZERO + GC_PERIOD,
            idle: timers::Idle::NEW,
            lblc_expiration: DEFAULT_LBLC_EXPIRATION,
            lblcr_expiration: DEFAULT_LBLC_EXPIRATION,
            drained: heapless::Deque::new(),
            drained_lost: false,
        }
    }

    /// The limits in effect (after [`Director::new`] fitted them to the storage).
    pub fn limits(&self) -> Limits {
        self.limits
    }

    // ---------------------------------------------------------------- internal helpers

    #[inline]
    fn base(&self, s: usize) -> usize {
        s * self.limits.servers_per_service
    }

    #[inline]
    fn svc(&self, s: usize) -> Option<&Service> {
        self.services.get(s)?.get()
    }

    #[inline]
    fn svc_mut(&mut self, s: usize) -> Option<&mut Service> {
        self.services.get_mut(s)?.get_mut()
    }

    fn find_slot(&self, key: &ServiceKey, deleted: bool) -> Option<usize> {
        self.services.get(..self.svc_high)?.iter().position(
            |s| matches!(s.get(), Some(s) if s.config.key == *key && s.deleted == deleted),
        )
    }

    fn find_live(&self, key: &ServiceKey) -> Option<usize> {
        self.find_slot(key, false)
    }

    fn dests(&self, s: usize) -> DestList<'_> {
        let len = self.svc(s).map_or(0, Service::len);
        let base = self.base(s);
        DestList {
            order: &self.order[base..base + len],
            servers: &self.servers,
        }
    }

    /// The slot index of a non-free server.
    #[inline]
    fn used(&self, id: ServerId) -> Option<usize> {
        let i = usize::from(id);
        let s = self.servers.get(i)?;
        (!s.is_free()).then_some(i)
    }

    #[inline]
    fn service_of(&self, i: usize) -> usize {
        i / self.limits.servers_per_service.max(1)
    }

    /// Position in the list of service `s` of the server at `addr`.
    fn position(&self, s: usize, addr: SocketAddr) -> Option<usize> {
        self.dests(s).iter().position(|(_, d)| d.addr() == addr)
    }
}

#[cfg(test)]
mod tests;
