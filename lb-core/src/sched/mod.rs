//! The fourteen IPVS schedulers (docs/ipvs-semantics.md §5), one file each, dispatched by a `match` on
//! [`SchedulerKind`] in [`Sched`] — no trait objects, no allocation.
//!
//! Every scheduler reads a [`DestList`]: the service's server ids in IPVS list order (newest
//! first, docs/ipvs-semantics.md §0) over the director's contiguous server array, so a scan is a walk over a
//! `&[ServerId]` plus indexed loads. Unless its doc says otherwise a scheduler skips servers of
//! weight 0 and OVERLOAD servers, and breaks ties by list order.
//!
//! Per-service state that survives between decisions ([`SchedState`]: rr's cursor, wrr's
//! cl/di/mw/cw, twos's RNG) lives in the `Service`; sh/dh/mh tables and lblc/lblcr caches live
//! in the director's storage and are passed in as slices.

use core::net::IpAddr;

use crate::config::{SchedFlags, SchedulerKind};
use crate::server::{DestList, ServerId};
use crate::time::{Duration, Instant};

pub mod fo;
pub mod lc;
pub mod nq;
pub mod ovf;
pub mod rr;
pub mod sed;
pub mod twos;
pub mod wrr;

pub mod dh;
pub mod lblc;
pub mod lblcr;
pub mod mh;
pub mod sh;
pub mod wlc;

/// A service's scheduler state that survives between decisions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SchedState {
    /// rr's cursor.
    pub rr: rr::RrState,
    /// wrr's cl, di, mw, cw.
    pub wrr: wrr::WrrState,
    /// twos's random number generator.
    pub rng: twos::Rng,
}

impl SchedState {
    /// All zero bits: a placeholder for free storage slots.
    pub(crate) const ZEROED: SchedState = SchedState {
        rr: rr::RrState::HEAD,
        wrr: wrr::WrrState::ZEROED,
        rng: twos::Rng::new(0),
    };

    /// Fresh state for an empty list, with twos's RNG seeded from `seed`.
    pub const fn new(seed: u64) -> Self {
        SchedState {
            rr: rr::RrState::HEAD,
            wrr: wrr::WrrState::EMPTY,
            rng: twos::Rng::new(seed),
        }
    }
}

/// What one scheduling decision needs besides the server list: the packet's addresses, the
/// service's flags, `now` and the service's sh/dh/mh table and lblc/lblcr caches.
pub struct Sched<'t> {
    /// The service's scheduler.
    pub kind: SchedulerKind,
    /// The service's `-b` flags.
    pub flags: SchedFlags,
    /// The sh/dh/mh table (only the slots in use).
    pub table: &'t [ServerId],
    /// The lblc cache.
    pub lblc: &'t mut [lblc::LblcEntry],
    /// The lblcr cache.
    pub lblcr: &'t mut [lblcr::LblcrEntry],
    /// lblcr's set expiration (`lblcr_expiration`).
    pub lblcr_expiration: Duration,
}

impl Sched<'_> {
    /// Picks a server for a new connection from `client` to `daddr` (the packet's destination
    /// address), or `None` when no server is available.
    pub fn pick(
        &mut self,
        state: &mut SchedState,
        dests: DestList<'_>,
        client: IpAddr,
        cport: u16,
        daddr: IpAddr,
        now: Instant,
    ) -> Option<ServerId> {
        match self.kind {
            SchedulerKind::Rr => rr::pick(&mut state.rr, dests),
            SchedulerKind::Wrr => wrr::pick(&mut state.wrr, dests),
            SchedulerKind::Lc => lc::pick(dests),
            SchedulerKind::Wlc => wlc::pick(dests),
            SchedulerKind::Sed => sed::pick(dests),
            SchedulerKind::Nq => nq::pick(dests),
            SchedulerKind::Fo => fo::pick(dests),
            SchedulerKind::Ovf => ovf::pick(dests),
            SchedulerKind::Twos => twos::pick(&mut state.rng, dests),
            SchedulerKind::Sh => sh::pick(self.table, dests, self.flags, client, cport),
            SchedulerKind::Mh => mh::pick(self.table, dests, self.flags, client, cport),
            SchedulerKind::Dh => dh::pick(self.table, dests, daddr),
            SchedulerKind::Lblc => lblc::pick(self.lblc, dests, daddr, now),
            SchedulerKind::Lblcr => {
                lblcr::pick(self.lblcr, dests, daddr, now, self.lblcr_expiration)
            }
        }
    }
}

/// Shared helpers for the scheduler unit tests: a server array and a list built by successive
/// "`ipvsadm -a`" head inserts.
#[cfg(test)]
pub(crate) mod fixture {
    use alloc::vec::Vec;
    use core::net::SocketAddr;

    use crate::config::{ForwardMethod, ServerConfig};
    use crate::server::{DestList, RealServer, ServerId};

    pub struct Fixture {
        pub servers: Vec<RealServer>,
        pub order: Vec<ServerId>,
    }

    impl Fixture {
        pub fn new() -> Self {
            Fixture {
                servers: Vec::new(),
                order: Vec::new(),
            }
        }

        /// Adds 10.0.0.`n`:80 with `weight` at the list head, as `ipvsadm -a` does; returns its id.
        pub fn add(&mut self, n: u8, weight: u32) -> ServerId {
            let addr = SocketAddr::from(([10, 0, 0, n], 80));
            let mut cfg = ServerConfig::new(addr, ForwardMethod::Masq);
            cfg.weight = weight;
            self.servers.push(RealServer::new(cfg));
            let id = (self.servers.len() - 1) as ServerId;
            self.order.insert(0, id);
            id
        }

        pub fn list(&self) -> DestList<'_> {
            DestList {
                order: &self.order,
                servers: &self.servers,
            }
        }

        pub fn s(&mut self, id: ServerId) -> &mut RealServer {
            &mut self.servers[usize::from(id)]
        }
    }
}
