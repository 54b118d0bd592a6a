//! The control plane: services, real servers, scheduling decisions and the counters the
//! datapath keeps, all in caller-owned fixed memory (reference §1, §2.7, §4.7, §5).
//!
//! # Who calls what, and when
//! - **Configuration** (`ipvsadm -A/-E/-D/-a/-e/-d/-C/-Z`): [`Director::add_service`],
//!   [`edit_service`](Director::edit_service), [`del_service`](Director::del_service),
//!   [`add_server`](Director::add_server), [`edit_server`](Director::edit_server),
//!   [`del_server`](Director::del_server), [`clear`](Director::clear),
//!   [`zero_stats`](Director::zero_stats). Call them between packet bursts.
//! - **A new connection**: [`lookup`](Director::lookup) the service, then
//!   [`schedule`](Director::schedule) a server; when the entry is created call
//!   [`bind_conn`](Director::bind_conn) (or [`bind_template`](Director::bind_template) for a
//!   persistence template), [`set_active`](Director::set_active) whenever its TCP state enters
//!   or leaves the active set (§2.1), [`count_in`](Director::count_in) /
//!   [`count_out`](Director::count_out) per packet, and [`unbind_conn`](Director::unbind_conn)
//!   / [`unbind_template`](Director::unbind_template) when the entry is freed.
//! - **Timers**: ask [`poll_timeout`](Director::poll_timeout), call
//!   [`handle_timeout`](Director::handle_timeout) when it has passed (rate estimator every 2 s,
//!   lblc/lblcr garbage collection every 60 s).
//! - **Controllers** draining a server (weight 0) poll [`poll_drained`](Director::poll_drained)
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
//! (64-bit targets): [`ServiceSlot`] 240, [`RealServer`] 112, [`RateEstimator`] 80, order entry 2,
//! `MhScratch` and lblc/lblcr entries: see their modules; [`Limits::storage_bytes`] computes the
//! exact total. With [`Limits::default`] (64 services × 1023 servers, 65536 table slots, 1024
//! lblc entries) the services take 15 KiB, servers + rates + order 12.1 MiB (194 B per server
//! slot), tables 8 MiB, plus the mh scratch (one per server slot) and the lblc/lblcr caches. Hosts that need less pass smaller limits.
//!
//! Lookups scan the service slots (a handful of compares per service); scheduling scans the
//! service's contiguous order array plus the server array.

use core::mem::size_of;
use core::net::{IpAddr, SocketAddr};

use managed::ManagedSlice;

use crate::addr::{addr_bytes, Protocol};
use crate::config::{ConfigError, SchedulerKind, ServerConfig, ServiceConfig, ServiceKey};
use crate::sched::lblc::{self, LblcEntry};
use crate::sched::lblcr::{self, LblcrEntry};
use crate::sched::mh::{self, MhScratch};
use crate::sched::{dh, rr, sh, twos, wrr, Sched};
use crate::server::{DestList, RealServer, ServerId, NO_SERVER};
use crate::service::{Service, ServiceId, ServiceSlot};
use crate::stats::{RateEstimator, Rates, Stats, ESTIMATOR_PERIOD};
use crate::time::{Duration, Instant};

/// How often lblc/lblcr caches are garbage-collected (the kernel's 60 s timer, §5.7).
pub const GC_PERIOD: Duration = Duration::from_secs(60);

/// lblc's and lblcr's default `*_expiration` sysctls: 24 h.
pub const DEFAULT_LBLC_EXPIRATION: Duration = Duration::from_secs(24 * 60 * 60);

/// How many drained-server events wait for [`Director::poll_drained`] before further ones are
/// dropped (and [`Director::drained_events_lost`] reports it).
pub const DRAINED_QUEUE: usize = 32;

/// The sizes of a director's storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Service slots.
    pub services: usize,
    /// Real servers per service, deleted-but-referenced ones included.
    /// `services × servers_per_service` must stay below 65535 ([`NO_SERVER`]).
    pub servers_per_service: usize,
    /// sh/dh/mh table slots per service: the largest table a service may use (mh M = 65521
    /// and sh 2^16 need 65536).
    pub table_slots_per_service: usize,
    /// lblc cache entries per service, and as many lblcr entries.
    pub lblc_entries_per_service: usize,
}

impl Default for Limits {
    /// 64 services × 1023 servers (as many as a `u16` id allows), 65536 table slots and 1024
    /// lblc/lblcr entries per service.
    fn default() -> Self {
        Limits {
            services: 64,
            servers_per_service: 1023,
            table_slots_per_service: 65536,
            lblc_entries_per_service: 1024,
        }
    }
}

impl Limits {
    /// Bytes of storage these limits need, all arrays included.
    pub const fn storage_bytes(&self) -> usize {
        let per_server = size_of::<RealServer>()
            + size_of::<RateEstimator>()
            + size_of::<ServerId>()
            + size_of::<MhScratch>();
        let per_service = size_of::<ServiceSlot>()
            + self.servers_per_service * per_server
            + self.table_slots_per_service * size_of::<ServerId>()
            + self.lblc_entries_per_service * (size_of::<LblcEntry>() + size_of::<LblcrEntry>());
        self.services * per_service
    }
}

/// Caller-owned memory for a [`Director`]: each slice holds `services ×` its per-service size
/// (see [`Limits`]). Build it from borrowed slices, [`DirectorStorage::alloc`] (feature
/// `alloc`) or [`DirectorResources::storage`]. Contents are reset by [`Director::new`].
pub struct DirectorStorage<'a> {
    /// The sizes the slices are meant for. [`Director::new`] shrinks them to what the slices
    /// actually hold.
    pub limits: Limits,
    /// `services` entries.
    pub services: ManagedSlice<'a, ServiceSlot>,
    /// `services × servers_per_service` entries.
    pub servers: ManagedSlice<'a, RealServer>,
    /// One estimator per server slot.
    pub server_rates: ManagedSlice<'a, RateEstimator>,
    /// Per-service list order, one entry per server slot.
    pub order: ManagedSlice<'a, ServerId>,
    /// `services × table_slots_per_service` sh/dh/mh slots.
    pub tables: ManagedSlice<'a, ServerId>,
    /// mh's build scratch, one per server slot.
    pub mh_scratch: ManagedSlice<'a, MhScratch>,
    /// `services × lblc_entries_per_service` lblc entries.
    pub lblc: ManagedSlice<'a, LblcEntry>,
    /// As many lblcr entries.
    pub lblcr: ManagedSlice<'a, LblcrEntry>,
}

#[cfg(feature = "alloc")]
impl DirectorStorage<'static> {
    /// Storage for `limits`, on the heap (host convenience; the director itself never
    /// allocates).
    pub fn alloc(limits: Limits) -> Self {
        use alloc::vec;
        let n = limits.services * limits.servers_per_service;
        DirectorStorage {
            limits,
            services: ManagedSlice::Owned(vec![ServiceSlot::FREE; limits.services]),
            servers: ManagedSlice::Owned(vec![RealServer::EMPTY; n]),
            server_rates: ManagedSlice::Owned(vec![RateEstimator::NEW; n]),
            order: ManagedSlice::Owned(vec![NO_SERVER; n]),
            tables: ManagedSlice::Owned(vec![
                NO_SERVER;
                limits.services * limits.table_slots_per_service
            ]),
            mh_scratch: ManagedSlice::Owned(vec![MhScratch::EMPTY; n]),
            lblc: ManagedSlice::Owned(vec![
                LblcEntry::EMPTY;
                limits.services * limits.lblc_entries_per_service
            ]),
            lblcr: ManagedSlice::Owned(vec![
                LblcrEntry::EMPTY;
                limits.services * limits.lblc_entries_per_service
            ]),
        }
    }
}

/// Statically sized storage for embedded targets, to put in a `static` (via a `StaticCell` or
/// similar) and borrow with [`DirectorResources::storage`]. The parameters are **totals**:
/// `SERVICES` slots, `SERVERS` server slots (split evenly: `SERVERS / SERVICES` per service),
/// `TABLE_SLOTS` sh/dh/mh slots and `LBLC_ENTRIES` lblc and as many lblcr entries, likewise
/// split. Example: `DirectorResources<4, 64, 4096, 0>` gives 4 services of 16 servers with
/// tables of up to 1024 slots (sh/dh 256, mh 509 or 1021).
pub struct DirectorResources<
    const SERVICES: usize,
    const SERVERS: usize,
    const TABLE_SLOTS: usize,
    const LBLC_ENTRIES: usize,
> {
    services: [ServiceSlot; SERVICES],
    servers: [RealServer; SERVERS],
    server_rates: [RateEstimator; SERVERS],
    order: [ServerId; SERVERS],
    tables: [ServerId; TABLE_SLOTS],
    mh_scratch: [MhScratch; SERVERS],
    lblc: [LblcEntry; LBLC_ENTRIES],
    lblcr: [LblcrEntry; LBLC_ENTRIES],
}

impl<const SVC: usize, const SRV: usize, const TAB: usize, const LBLC: usize>
    DirectorResources<SVC, SRV, TAB, LBLC>
{
    /// Empty resources; usable in a `static` initialiser.
    pub const fn new() -> Self {
        DirectorResources {
            // All zero bits (so a `static` lands in .bss); `Director::new` resets every
            // slot to its proper empty value.
            services: [ServiceSlot::FREE; SVC],
            servers: [RealServer::EMPTY; SRV],
            server_rates: [RateEstimator::NEW; SRV],
            order: [0; SRV],
            tables: [0; TAB],
            mh_scratch: [MhScratch::EMPTY; SRV],
            lblc: [LblcEntry::ZEROED; LBLC],
            lblcr: [LblcrEntry::ZEROED; LBLC],
        }
    }

    /// Lends the arrays as a [`DirectorStorage`] for [`Director::new`].
    pub fn storage(&mut self) -> DirectorStorage<'_> {
        let per = |total: usize| total.checked_div(SVC).unwrap_or(0);
        DirectorStorage {
            limits: Limits {
                services: SVC,
                servers_per_service: per(SRV),
                table_slots_per_service: per(TAB),
                lblc_entries_per_service: per(LBLC),
            },
            services: ManagedSlice::Borrowed(&mut self.services[..]),
            servers: ManagedSlice::Borrowed(&mut self.servers[..]),
            server_rates: ManagedSlice::Borrowed(&mut self.server_rates[..]),
            order: ManagedSlice::Borrowed(&mut self.order[..]),
            tables: ManagedSlice::Borrowed(&mut self.tables[..]),
            mh_scratch: ManagedSlice::Borrowed(&mut self.mh_scratch[..]),
            lblc: ManagedSlice::Borrowed(&mut self.lblc[..]),
            lblcr: ManagedSlice::Borrowed(&mut self.lblcr[..]),
        }
    }
}

impl<const SVC: usize, const SRV: usize, const TAB: usize, const LBLC: usize> Default
    for DirectorResources<SVC, SRV, TAB, LBLC>
{
    fn default() -> Self {
        Self::new()
    }
}

/// What [`Director::unmatched`] found at a packet's destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unmatched {
    /// A deleted service still referenced by connections.
    Retired(ServiceId),
    /// The address of a live service (on another port or protocol).
    Vip,
    /// Not an address of ours.
    Other,
}

/// What a scheduling decision reads from the packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SchedInput {
    /// The packet's protocol.
    pub proto: Protocol,
    /// The client's address and port (sh and mh key on them).
    pub client: SocketAddr,
    /// The packet's destination (the VIP, or any address for fwmark services); dh, lblc and
    /// lblcr key on its address.
    pub dst: SocketAddr,
}

/// A server that became drained: weight 0, available, no references left. Its controller may
/// now delete it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DrainedServer {
    /// Its service.
    pub service: ServiceId,
    /// Its id (check `addr` before acting: the id may have been reused since).
    pub server: ServerId,
    /// Its address and port.
    pub addr: SocketAddr,
}

/// The list position where the change happened, for the scheduler hooks.
#[derive(Clone, Copy)]
enum Change {
    Add,
    Del(usize),
    Edit,
}

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
    lblc_expiration: Duration,
    lblcr_expiration: Duration,
    drained: heapless::Deque<DrainedServer, DRAINED_QUEUE>,
    drained_lost: bool,
}

/// The service-specific RNG seed: SplitMix64 of the director seed and the slot.
fn service_seed(seed: u64, slot: usize) -> u64 {
    twos::Rng::new(seed ^ (slot as u64).wrapping_mul(0xD1B5_4A32_D192_ED03)).next_u64()
}

fn is_table(kind: SchedulerKind) -> bool {
    kind.has_table()
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

    /// Sets lblc's `lblc_expiration` (default 24 h): cache entries unused this long are
    /// collected.
    pub fn set_lblc_expiration(&mut self, d: Duration) {
        self.lblc_expiration = d;
    }

    /// Sets lblcr's `lblcr_expiration` (default 24 h): a set unchanged this long loses its most
    /// loaded member, and unused entries are collected.
    pub fn set_lblcr_expiration(&mut self, d: Duration) {
        self.lblcr_expiration = d;
    }

    // ---------------------------------------------------------------- internal helpers

    fn base(&self, s: usize) -> usize {
        s * self.limits.servers_per_service
    }

    fn svc(&self, s: usize) -> Option<&Service> {
        self.services.get(s)?.get()
    }

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
    fn used(&self, id: ServerId) -> Option<usize> {
        let i = usize::from(id);
        let s = self.servers.get(i)?;
        (!s.is_free()).then_some(i)
    }

    fn service_of(&self, i: usize) -> usize {
        i / self.limits.servers_per_service.max(1)
    }

    /// Position in the list of service `s` of the server at `addr`.
    fn position(&self, s: usize, addr: SocketAddr) -> Option<usize> {
        self.dests(s).iter().position(|(_, d)| d.addr() == addr)
    }

    fn table_size_for(&self, cfg: &ServiceConfig) -> Result<u32, ConfigError> {
        let (default, valid): (u32, fn(u32) -> bool) = match cfg.scheduler {
            SchedulerKind::Sh => (sh::DEFAULT_SIZE, sh::valid_size),
            SchedulerKind::Dh => (dh::DEFAULT_SIZE, dh::valid_size),
            SchedulerKind::Mh => (mh::DEFAULT_SIZE, mh::valid_size),
            _ => return Ok(0),
        };
        let size = cfg.table_size.unwrap_or(default);
        if !valid(size) || size as usize > self.limits.table_slots_per_service {
            return Err(ConfigError::BadTableSize);
        }
        Ok(size)
    }

    fn validate_service(&self, cfg: &ServiceConfig) -> Result<u32, ConfigError> {
        if let Some(p) = cfg.persistence {
            let max = if cfg.key.is_ipv6() { 128 } else { 32 };
            if p.prefix > max {
                return Err(ConfigError::BadNetmask);
            }
        }
        if let ServiceKey::Addr { vip, .. } = cfg.key {
            if vip.port() == 0 && cfg.persistence.is_none() {
                return Err(ConfigError::PortZeroNeedsPersistence);
            }
        }
        self.table_size_for(cfg)
    }

    fn validate_server(key: &ServiceKey, cfg: &ServerConfig) -> Result<(), ConfigError> {
        if cfg.weight > ServerConfig::MAX_WEIGHT {
            return Err(ConfigError::WeightOutOfRange);
        }
        if cfg.l_threshold > cfg.u_threshold {
            return Err(ConfigError::ThresholdOrder);
        }
        if cfg.addr.is_ipv6() != key.is_ipv6() {
            return Err(ConfigError::FamilyMismatch);
        }
        Ok(())
    }

    fn count_key(&mut self, key: &ServiceKey, delta: i32) {
        let c = match key {
            ServiceKey::Fwmark { .. } => &mut self.fwmark_services,
            ServiceKey::Addr { vip, .. } if vip.port() == 0 => &mut self.port0_services,
            ServiceKey::Addr { .. } => return,
        };
        *c = c.saturating_add_signed(delta as i16);
    }

    /// Rebuilds service `s`'s sh/dh/mh table from its list.
    fn rebuild_table(&mut self, s: usize) -> Result<(), ConfigError> {
        let Some(svc) = self.services.get(s).and_then(ServiceSlot::get) else {
            return Ok(());
        };
        let (kind, size, len) = (svc.config.scheduler, svc.table_size as usize, svc.len());
        let tb = s * self.limits.table_slots_per_service;
        let base = self.base(s);
        let per = self.limits.servers_per_service;
        let table = &mut self.tables[tb..tb + self.limits.table_slots_per_service];
        table.fill(NO_SERVER);
        let table = &mut table[..size];
        let dests = DestList {
            order: &self.order[base..base + len],
            servers: &self.servers,
        };
        match kind {
            SchedulerKind::Sh => sh::build(table, dests),
            SchedulerKind::Dh => dh::build(table, dests),
            SchedulerKind::Mh => {
                return mh::build(table, &mut self.mh_scratch[base..base + per], dests)
            }
            _ => {}
        }
        Ok(())
    }

    fn clear_caches(&mut self, s: usize) {
        let n = self.limits.lblc_entries_per_service;
        self.lblc[s * n..(s + 1) * n].fill(LblcEntry::EMPTY);
        self.lblcr[s * n..(s + 1) * n].fill(LblcrEntry::EMPTY);
    }

    /// The scheduler hooks of reference §5.15 after a list change.
    fn hooks(&mut self, s: usize, change: Change) {
        let Some(svc) = self.svc(s) else { return };
        let kind = svc.config.scheduler;
        let base = self.base(s);
        let len = svc.len();
        let dests = DestList {
            order: &self.order[base..base + len],
            servers: &self.servers,
        };
        let mut wrr_state = svc.sched.wrr;
        wrr_state.dest_changed(dests);
        let Some(svc) = self.svc_mut(s) else { return };
        // rr's cursor and wrr's state are kept up to date whatever the scheduler: rr's cursor is
        // a position, wrr's only reset on a scheduler change.
        match change {
            Change::Add => svc.sched.rr.on_add(),
            Change::Del(pos) => svc.sched.rr.on_del(pos),
            Change::Edit => {}
        }
        if kind == SchedulerKind::Wrr {
            svc.sched.wrr = wrr_state;
        }
        let rebuild = match kind {
            SchedulerKind::Sh | SchedulerKind::Mh => true,
            SchedulerKind::Dh => !matches!(change, Change::Edit),
            _ => false,
        };
        if rebuild {
            // Sizes were checked before the change: mh cannot fail here.
            let _ = self.rebuild_table(s);
        }
    }

    /// Frees a server slot whose last reference went (or that had none when deleted).
    fn free_server(&mut self, i: usize) {
        let s = self.service_of(i);
        self.servers[i] = RealServer::EMPTY;
        self.server_rates[i] = RateEstimator::NEW;
        let n = self.limits.lblc_entries_per_service;
        let id = i as ServerId;
        lblc::forget_server(&mut self.lblc[s * n..(s + 1) * n], id);
        lblcr::forget_server(&mut self.lblcr[s * n..(s + 1) * n], id);
        self.maybe_free_service(s);
    }

    /// Frees a deleted service's slot once none of its servers is referenced.
    fn maybe_free_service(&mut self, s: usize) {
        if !self.svc(s).is_some_and(|v| v.deleted) {
            return;
        }
        let base = self.base(s);
        let per = self.limits.servers_per_service;
        if self.servers[base..base + per]
            .iter()
            .all(RealServer::is_free)
        {
            self.services[s] = ServiceSlot::FREE;
        }
    }

    /// Unlinks the server at list position `pos` of service `s`; returns its slot.
    fn unlink(&mut self, s: usize, pos: usize) -> usize {
        let base = self.base(s);
        let len = self.svc(s).map_or(0, Service::len);
        let id = self.order[base + pos];
        self.order
            .copy_within(base + pos + 1..base + len, base + pos);
        self.order[base + len - 1] = NO_SERVER;
        if let Some(svc) = self.svc_mut(s) {
            svc.len -= 1;
        }
        let i = usize::from(id);
        self.servers[i].available = false;
        i
    }

    fn push_drained(&mut self, i: usize) {
        let ev = DrainedServer {
            service: self.service_of(i) as ServiceId,
            server: i as ServerId,
            addr: self.servers[i].addr(),
        };
        if self.drained.push_back(ev).is_err() {
            self.drained_lost = true;
        }
    }

    /// After a reference was dropped: free a deleted server, or report a drained one.
    fn after_unref(&mut self, i: usize) {
        let d = &self.servers[i];
        if d.refs() != 0 {
            return;
        }
        if !d.available {
            self.free_server(i);
        } else if d.weight() == 0 {
            self.push_drained(i);
        }
    }

    // ---------------------------------------------------------------- configuration

    /// `ipvsadm -A`: adds a virtual service with an empty server list. Errors: `ServiceExists`,
    /// `TooManyServices`, `BadNetmask`, `PortZeroNeedsPersistence`, `BadTableSize`.
    /// Re-adding the key of a deleted service that is still referenced takes back its slot
    /// (fresh counters and scheduler state), so its servers can be revived by `add_server`.
    pub fn add_service(&mut self, cfg: &ServiceConfig) -> Result<ServiceId, ConfigError> {
        let table_size = self.validate_service(cfg)?;
        if self.find_live(&cfg.key).is_some() {
            return Err(ConfigError::ServiceExists);
        }
        let s = match self.find_slot(&cfg.key, true) {
            Some(s) => s,
            None => self
                .services
                .iter()
                .position(ServiceSlot::is_free)
                .ok_or(ConfigError::TooManyServices)?,
        };
        let mut svc = Service::new(*cfg, service_seed(self.seed, s));
        svc.table_size = table_size;
        self.services[s] = ServiceSlot::new(svc);
        self.svc_high = self.svc_high.max(s + 1);
        self.count_key(&cfg.key, 1);
        self.clear_caches(s);
        self.rebuild_table(s)?;
        Ok(s as ServiceId)
    }

    /// `ipvsadm -E`: changes a service's scheduler, flags, persistence, one-packet mode or
    /// table size (the key identifies the service and cannot change). A new scheduler starts
    /// from fresh state (rr at the head, wrr `init` over the current list, empty caches, a
    /// rebuilt table); the same scheduler keeps its state (its table is rebuilt if the size
    /// changed). Errors: `NoSuchService`, the `add_service` validation errors, and
    /// `TooManyServersForTable` when switching to mh with more servers than M.
    pub fn edit_service(&mut self, cfg: &ServiceConfig) -> Result<(), ConfigError> {
        let table_size = self.validate_service(cfg)?;
        let s = self.find_live(&cfg.key).ok_or(ConfigError::NoSuchService)?;
        let dests = self.dests(s);
        if cfg.scheduler == SchedulerKind::Mh && dests.len() > table_size as usize {
            return Err(ConfigError::TooManyServersForTable);
        }
        let wrr_init = wrr::WrrState::init(dests);
        let Some(svc) = self.svc_mut(s) else {
            return Err(ConfigError::NoSuchService);
        };
        let changed = svc.config.scheduler != cfg.scheduler;
        let resize = svc.table_size != table_size;
        svc.config = *cfg;
        svc.table_size = table_size;
        if changed {
            svc.sched.rr = rr::RrState::HEAD;
            svc.sched.wrr = wrr_init;
            self.clear_caches(s);
        }
        if (changed || resize) && is_table(cfg.scheduler) {
            self.rebuild_table(s)?;
        }
        Ok(())
    }

    /// `ipvsadm -D`: deletes a service. Its servers leave the list; referenced ones stay in
    /// their slots (unavailable) until unbound, and the service slot stays, `deleted`, until
    /// then. Error: `NoSuchService`.
    pub fn del_service(&mut self, key: &ServiceKey) -> Result<(), ConfigError> {
        let s = self.find_live(key).ok_or(ConfigError::NoSuchService)?;
        self.del_service_slot(s);
        Ok(())
    }

    fn del_service_slot(&mut self, s: usize) {
        let Some(svc) = self.svc_mut(s) else { return };
        svc.deleted = true;
        let key = svc.config.key;
        self.count_key(&key, -1);
        while self.svc(s).is_some_and(|v| v.len > 0) {
            let len = self.svc(s).map_or(0, Service::len);
            let i = self.unlink(s, len - 1);
            if self.servers[i].refs() == 0 {
                // Leave the service slot alone until the loop is done.
                self.servers[i] = RealServer::EMPTY;
                self.server_rates[i] = RateEstimator::NEW;
            }
        }
        let tb = s * self.limits.table_slots_per_service;
        self.tables[tb..tb + self.limits.table_slots_per_service].fill(NO_SERVER);
        self.clear_caches(s);
        self.maybe_free_service(s);
    }

    /// `ipvsadm -C`: deletes every service (as `del_service` each).
    pub fn clear(&mut self) {
        for s in 0..self.limits.services {
            if self.svc(s).is_some_and(|v| !v.deleted) {
                self.del_service_slot(s);
            }
        }
    }

    /// `ipvsadm -a`: adds a real server at the head of the service's list (or revives it from
    /// the deleted-but-referenced servers, counters included), then runs the scheduler's add
    /// hook. Errors: `NoSuchService`, `ServerExists`, `WeightOutOfRange`, `ThresholdOrder`,
    /// `FamilyMismatch`, `TooManyServers`, and `TooManyServersForTable` for mh with more
    /// servers than M (deliberate difference: IPVS accepts the server and keeps a stale table).
    pub fn add_server(
        &mut self,
        key: &ServiceKey,
        cfg: &ServerConfig,
    ) -> Result<ServerId, ConfigError> {
        Self::validate_server(key, cfg)?;
        let s = self.find_live(key).ok_or(ConfigError::NoSuchService)?;
        if self.position(s, cfg.addr).is_some() {
            return Err(ConfigError::ServerExists);
        }
        let svc = self.svc(s).ok_or(ConfigError::NoSuchService)?;
        let len = svc.len();
        if svc.config.scheduler == SchedulerKind::Mh && len + 1 > svc.table_size as usize {
            return Err(ConfigError::TooManyServersForTable);
        }
        let base = self.base(s);
        let per = self.limits.servers_per_service;
        let range = base..base + per;
        let trash = self.servers[range.clone()]
            .iter()
            .position(|d| !d.available && d.refs() > 0 && d.addr() == cfg.addr);
        let i = match trash {
            Some(k) => {
                let d = &mut self.servers[base + k];
                d.available = true;
                apply_server_config(d, cfg);
                base + k
            }
            None => {
                let k = self.servers[range]
                    .iter()
                    .position(RealServer::is_free)
                    .ok_or(ConfigError::TooManyServers)?;
                self.servers[base + k] = RealServer::new(*cfg);
                self.server_rates[base + k] = RateEstimator::NEW;
                base + k
            }
        };
        self.order.copy_within(base..base + len, base + 1);
        self.order[base] = i as ServerId;
        if let Some(svc) = self.svc_mut(s) {
            svc.len += 1;
        }
        self.hooks(s, Change::Add);
        Ok(i as ServerId)
    }

    /// `ipvsadm -e`: changes a listed server's weight, thresholds or method, applying IPVS's
    /// rules (§4.7: OVERLOAD cleared if the new upper threshold is 0 or above the old one;
    /// `last_weight` follows non-zero weights), then the scheduler's edit hook. A server whose
    /// weight becomes 0 with no references is reported drained. Errors: `NoSuchService`,
    /// `NoSuchServer`, and the `add_server` validation errors.
    pub fn edit_server(&mut self, key: &ServiceKey, cfg: &ServerConfig) -> Result<(), ConfigError> {
        Self::validate_server(key, cfg)?;
        let s = self.find_live(key).ok_or(ConfigError::NoSuchService)?;
        let pos = self
            .position(s, cfg.addr)
            .ok_or(ConfigError::NoSuchServer)?;
        let i = usize::from(self.order[self.base(s) + pos]);
        let was = self.servers[i].weight();
        apply_server_config(&mut self.servers[i], cfg);
        self.hooks(s, Change::Edit);
        if was != 0 && cfg.weight == 0 && self.servers[i].refs() == 0 {
            self.push_drained(i);
        }
        Ok(())
    }

    /// `ipvsadm -d`: removes a server from the list and runs the scheduler's delete hook. If
    /// connections still reference it, it stays in its slot, unavailable, until the last is
    /// unbound; otherwise its slot is freed now. Errors: `NoSuchService`, `NoSuchServer`.
    pub fn del_server(&mut self, key: &ServiceKey, addr: SocketAddr) -> Result<(), ConfigError> {
        let s = self.find_live(key).ok_or(ConfigError::NoSuchService)?;
        let pos = self.position(s, addr).ok_or(ConfigError::NoSuchServer)?;
        let i = self.unlink(s, pos);
        self.hooks(s, Change::Del(pos));
        if self.servers[i].refs() == 0 {
            self.free_server(i);
        }
        Ok(())
    }

    /// `ipvsadm -Z`: zeroes the counters and rates of one service and its listed servers, or of
    /// every service when `key` is `None`. Error: `NoSuchService`.
    pub fn zero_stats(&mut self, key: Option<&ServiceKey>) -> Result<(), ConfigError> {
        let only = match key {
            Some(k) => Some(self.find_live(k).ok_or(ConfigError::NoSuchService)?),
            None => None,
        };
        for s in 0..self.limits.services {
            if only.is_some_and(|o| o != s) {
                continue;
            }
            let Some(svc) = self.svc_mut(s) else { continue };
            if svc.deleted {
                continue;
            }
            svc.stats = Stats::new();
            svc.rates.reset(&Stats::new());
            let base = self.base(s);
            for k in 0..self.svc(s).map_or(0, Service::len) {
                let i = usize::from(self.order[base + k]);
                self.servers[i].stats = Stats::new();
                self.server_rates[i].reset(&Stats::new());
            }
        }
        Ok(())
    }

    // ---------------------------------------------------------------- queries

    /// The id of the live (not deleted) service with this key.
    pub fn service_id(&self, key: &ServiceKey) -> Option<ServiceId> {
        self.find_live(key).map(|s| s as ServiceId)
    }

    /// The service a packet belongs to, in IPVS's order (§1 "Service lookup order"): the
    /// fwmark service when a mark is given, then `<proto, addr, port>`, then a port-0 service
    /// at that address. (The FTP rule is not implemented.) Call for a packet that matches no
    /// connection entry.
    pub fn lookup(
        &self,
        proto: Protocol,
        dst: SocketAddr,
        fwmark: Option<u32>,
    ) -> Option<ServiceId> {
        if let (Some(mark), true) = (fwmark, self.fwmark_services > 0) {
            let key = ServiceKey::Fwmark {
                mark,
                v6: dst.is_ipv6(),
            };
            if let Some(s) = self.service_id(&key) {
                return Some(s);
            }
        }
        let ip = dst.ip();
        self.lookup_flow(proto, ip.is_ipv6(), &addr_bytes(ip), dst.port())
    }

    /// [`lookup`](Self::lookup) without a mark, for an address stored as a connection entry
    /// stores it (16 bytes, IPv4 in the first four, the rest zero): in one pass over the used
    /// slots, the live service keyed `<proto, addr, port>`, else a live port-0 service on
    /// `addr`. Addresses and ports only: an IPv6 VIP configured with a flow label or scope id
    /// matches packets, which carry neither (IPVS compares addresses).
    #[inline]
    pub fn lookup_flow(
        &self,
        proto: Protocol,
        v6: bool,
        addr: &[u8; 16],
        port: u16,
    ) -> Option<ServiceId> {
        let port0 = self.port0_services > 0 && port != 0;
        let mut second = None;
        for (i, slot) in self.services.get(..self.svc_high)?.iter().enumerate() {
            let Some(s) = slot.get() else { continue };
            let ServiceKey::Addr { proto: p, vip } = s.config.key else {
                continue;
            };
            if p != proto || s.deleted {
                continue;
            }
            let vport = vip.port();
            let exact = vport == port;
            let port0_candidate = port0 && vport == 0 && second.is_none();
            if !exact && !port0_candidate {
                continue;
            }
            let same_ip = match vip.ip() {
                IpAddr::V4(a) => !v6 && a.octets() == addr[..4],
                IpAddr::V6(a) => v6 && a.octets() == *addr,
            };
            if !same_ip {
                continue;
            }
            if exact {
                return Some(i as ServiceId);
            }
            second = Some(i as ServiceId);
        }
        second
    }

    /// What `dst` is to a packet that matched no live service and no tracked reply, in one
    /// pass over the service slots: the address of a deleted service still kept because
    /// connections reference its servers (same protocol, address and port, or a port-0 one),
    /// so its flows are expired and answered instead of passed on; else a live virtual
    /// address (the packet must not be passed on: it would loop); else nothing of ours.
    pub fn unmatched(&self, proto: Protocol, dst: SocketAddr) -> Unmatched {
        let mut vip = false;
        let mut port0 = None;
        for (i, slot) in self.services[..self.svc_high.min(self.services.len())]
            .iter()
            .enumerate()
        {
            let Some(s) = slot.get() else { continue };
            let ServiceKey::Addr { proto: p, vip: v } = s.config.key else {
                continue;
            };
            if v.ip() != dst.ip() {
                continue;
            }
            if !s.deleted {
                vip = true;
            } else if p == proto {
                if v.port() == dst.port() {
                    return Unmatched::Retired(i as ServiceId);
                }
                if v.port() == 0 && port0.is_none() {
                    port0 = Some(i as ServiceId);
                }
            }
        }
        match (port0, vip) {
            (Some(s), _) => Unmatched::Retired(s),
            (None, true) => Unmatched::Vip,
            (None, false) => Unmatched::Other,
        }
    }

    /// Whether `addr` is the virtual address of a live service.
    pub fn is_vip(&self, addr: IpAddr) -> bool {
        self.services[..self.svc_high.min(self.services.len())]
            .iter()
            .filter_map(ServiceSlot::get)
            .any(|s| {
                !s.deleted
                    && matches!(s.config.key, ServiceKey::Addr { vip, .. } if vip.ip() == addr)
            })
    }

    /// The service in slot `id`, deleted or not (check `deleted`).
    pub fn service(&self, id: ServiceId) -> Option<&Service> {
        self.svc(usize::from(id))
    }

    /// Live services with their ids, in slot order.
    pub fn services(&self) -> impl Iterator<Item = (ServiceId, &Service)> + '_ {
        self.services
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.get().filter(|s| !s.deleted).map(|s| (i as ServiceId, s)))
    }

    /// A service's servers in IPVS list order (empty for an unknown id).
    pub fn servers(&self, id: ServiceId) -> DestList<'_> {
        self.dests(usize::from(id))
    }

    /// A server in use (listed, or deleted but still referenced).
    pub fn server(&self, id: ServerId) -> Option<&RealServer> {
        self.used(id).map(|i| &self.servers[i])
    }

    /// A server in use, mutably. Prefer the counter methods: they keep OVERLOAD and the
    /// deletion/drain bookkeeping right; changing counters here bypasses them.
    pub fn server_mut(&mut self, id: ServerId) -> Option<&mut RealServer> {
        self.used(id).map(|i| &mut self.servers[i])
    }

    /// The service a server in use belongs to.
    pub fn server_service(&self, id: ServerId) -> Option<ServiceId> {
        self.used(id).map(|i| self.service_of(i) as ServiceId)
    }

    /// The listed server of service `svc` at `addr`.
    pub fn find_server(&self, svc: ServiceId, addr: SocketAddr) -> Option<ServerId> {
        let s = usize::from(svc);
        let pos = self.position(s, addr)?;
        Some(self.order[self.base(s) + pos])
    }

    /// A server's decoded rates.
    pub fn server_rates(&self, id: ServerId) -> Option<Rates> {
        self.used(id).map(|i| self.server_rates[i].rates())
    }

    // ---------------------------------------------------------------- scheduling

    /// Picks a real server for a new connection of service `svc` (after `lookup`), running the
    /// service's scheduler; `None` when no server is available (the caller answers as IPVS's
    /// `ip_vs_leave` does). Updates only the scheduler's state: call `bind_conn` /
    /// `bind_template` when the entry is created.
    pub fn schedule(
        &mut self,
        svc: ServiceId,
        input: &SchedInput,
        now: Instant,
    ) -> Option<ServerId> {
        let s = usize::from(svc);
        let per = self.limits.servers_per_service;
        let tslots = self.limits.table_slots_per_service;
        let lslots = self.limits.lblc_entries_per_service;
        let service = self.services.get_mut(s)?.get_mut()?;
        if service.deleted {
            return None;
        }
        let base = s * per;
        let dests = DestList {
            order: &self.order[base..base + service.len()],
            servers: &self.servers,
        };
        let tb = s * tslots;
        let lb = s * lslots;
        let mut sched = Sched {
            kind: service.config.scheduler,
            flags: service.config.flags,
            table: &self.tables[tb..tb + service.table_size as usize],
            lblc: &mut self.lblc[lb..lb + lslots],
            lblcr: &mut self.lblcr[lb..lb + lslots],
            lblcr_expiration: self.lblcr_expiration,
        };
        sched.pick(
            &mut service.sched,
            dests,
            input.client.ip(),
            input.client.port(),
            input.dst.ip(),
            now,
        )
    }

    // ---------------------------------------------------------------- counters

    /// Call when a new connection entry is bound to `server` (IPVS `ip_vs_bind_dest` plus the
    /// connection statistics): it counts as inactive until `set_active(true)`, OVERLOAD is set
    /// if `u_threshold ≠ 0` and active + inactive ≥ `u_threshold`, and the server's and
    /// service's `conns` grow by one. Ignored for a free slot.
    pub fn bind_conn(&mut self, server: ServerId) {
        let Some(i) = self.used(server) else { return };
        let d = &mut self.servers[i];
        d.inactive = d.inactive.saturating_add(1);
        d.stats.conns += 1;
        set_overload(d);
        let s = self.service_of(i);
        if let Some(svc) = self.svc_mut(s) {
            svc.stats.conns += 1;
        }
    }

    /// Call when a persistence template is bound to `server`: `persistent` grows by one and
    /// the OVERLOAD set check runs (templates themselves are not counted in it, §4.7).
    pub fn bind_template(&mut self, server: ServerId) {
        let Some(i) = self.used(server) else { return };
        let d = &mut self.servers[i];
        d.persistent = d.persistent.saturating_add(1);
        set_overload(d);
    }

    /// Call when a connection's state enters (`true`) or leaves (`false`) the active set
    /// (§2.1): moves one connection between `inactive` and `active`. OVERLOAD does not change.
    pub fn set_active(&mut self, server: ServerId, active: bool) {
        let Some(i) = self.used(server) else { return };
        let d = &mut self.servers[i];
        if active && d.inactive > 0 {
            d.inactive -= 1;
            d.active += 1;
        } else if !active && d.active > 0 {
            d.active -= 1;
            d.inactive += 1;
        }
    }

    /// Call when a connection entry bound to `server` is freed; `was_active` says which counter
    /// it was in. Runs IPVS's OVERLOAD clear rule (§4.7), frees a deleted server's slot when
    /// this was its last reference, and reports a weight-0 server that became drained.
    pub fn unbind_conn(&mut self, server: ServerId, was_active: bool) {
        let Some(i) = self.used(server) else { return };
        let d = &mut self.servers[i];
        if was_active {
            d.active = d.active.saturating_sub(1);
        } else {
            d.inactive = d.inactive.saturating_sub(1);
        }
        clear_overload(d);
        self.after_unref(i);
    }

    /// Call when a persistence template bound to `server` is freed: like `unbind_conn`, for
    /// `persistent`.
    pub fn unbind_template(&mut self, server: ServerId) {
        let Some(i) = self.used(server) else { return };
        let d = &mut self.servers[i];
        d.persistent = d.persistent.saturating_sub(1);
        clear_overload(d);
        self.after_unref(i);
    }

    /// Call per packet client → server: counts it on the server and its service.
    pub fn count_in(&mut self, server: ServerId, bytes: usize) {
        let Some(i) = self.used(server) else { return };
        let st = &mut self.servers[i].stats;
        st.in_pkts += 1;
        st.in_bytes += bytes as u64;
        let s = self.service_of(i);
        if let Some(svc) = self.svc_mut(s) {
            svc.stats.in_pkts += 1;
            svc.stats.in_bytes += bytes as u64;
        }
    }

    /// Call per packet server → client: counts it on the server and its service.
    pub fn count_out(&mut self, server: ServerId, bytes: usize) {
        let Some(i) = self.used(server) else { return };
        let st = &mut self.servers[i].stats;
        st.out_pkts += 1;
        st.out_bytes += bytes as u64;
        let s = self.service_of(i);
        if let Some(svc) = self.svc_mut(s) {
            svc.stats.out_pkts += 1;
            svc.stats.out_bytes += bytes as u64;
        }
    }

    /// [`count_in`](Self::count_in) (or, with `out`, [`count_out`](Self::count_out)) for a
    /// connection entry's server and service: the entry's service is always its server's, so
    /// the per-packet path need not derive it from the server slot (a division).
    #[inline]
    pub(crate) fn count_conn(&mut self, server: ServerId, svc: ServiceId, bytes: usize, out: bool) {
        let Some(i) = self.used(server) else { return };
        debug_assert_eq!(self.service_of(i), usize::from(svc));
        let bytes = bytes as u64;
        let st = &mut self.servers[i].stats;
        if out {
            st.out_pkts += 1;
            st.out_bytes += bytes;
        } else {
            st.in_pkts += 1;
            st.in_bytes += bytes;
        }
        if let Some(svc) = self.svc_mut(usize::from(svc)) {
            if out {
                svc.stats.out_pkts += 1;
                svc.stats.out_bytes += bytes;
            } else {
                svc.stats.in_pkts += 1;
                svc.stats.in_bytes += bytes;
            }
        }
    }

    /// Whether `server` is drained: listed, weight 0 (quiescent) and no references left. A
    /// controller removing a server sets its weight to 0, waits for this, then deletes it.
    pub fn drained(&self, server: ServerId) -> bool {
        self.server(server)
            .is_some_and(|d| d.available && d.weight() == 0 && d.refs() == 0)
    }

    /// The next server that became drained (weight set to 0 with no references, or last
    /// reference of a weight-0 server unbound), oldest first. Poll after configuration calls
    /// and unbinds.
    pub fn poll_drained(&mut self) -> Option<DrainedServer> {
        self.drained.pop_front()
    }

    /// Whether drained events were dropped because [`DRAINED_QUEUE`] were pending; clears the
    /// flag. If so, scan the servers with [`Director::drained`].
    pub fn drained_events_lost(&mut self) -> bool {
        core::mem::take(&mut self.drained_lost)
    }

    // ---------------------------------------------------------------- timers

    /// When [`Director::handle_timeout`] must next be called.
    pub fn poll_timeout(&self) -> Instant {
        self.next_estimate.min(self.next_gc)
    }

    /// Runs the timers due at `now`: the rate estimator (every 2 s, catching up at most 8
    /// missed periods) and lblc/lblcr garbage collection (every 60 s).
    pub fn handle_timeout(&mut self, now: Instant) {
        let mut runs = 0;
        while self.next_estimate <= now && runs < 8 {
            self.estimate();
            self.next_estimate += ESTIMATOR_PERIOD;
            runs += 1;
        }
        if self.next_estimate <= now {
            self.next_estimate = now + ESTIMATOR_PERIOD;
        }
        if self.next_gc <= now {
            self.gc(now);
            self.next_gc = now + GC_PERIOD;
        }
    }

    fn estimate(&mut self) {
        for svc in self.services.iter_mut().filter_map(ServiceSlot::get_mut) {
            let stats = svc.stats;
            svc.rates.estimate(&stats);
        }
        for (d, e) in self.servers.iter().zip(self.server_rates.iter_mut()) {
            if !d.is_free() {
                e.estimate(&d.stats);
            }
        }
    }

    fn gc(&mut self, now: Instant) {
        let n = self.limits.lblc_entries_per_service;
        for s in 0..self.limits.services {
            match self.svc(s).map(|v| v.config.scheduler) {
                Some(SchedulerKind::Lblc) => {
                    lblc::gc(
                        &mut self.lblc[s * n..(s + 1) * n],
                        now,
                        self.lblc_expiration,
                    );
                }
                Some(SchedulerKind::Lblcr) => {
                    lblcr::gc(
                        &mut self.lblcr[s * n..(s + 1) * n],
                        now,
                        self.lblcr_expiration,
                    );
                }
                _ => {}
            }
        }
    }
}

/// `__ip_vs_update_dest`'s field updates for `-a` (revive) and `-e`.
fn apply_server_config(d: &mut RealServer, cfg: &ServerConfig) {
    if cfg.u_threshold == 0 || cfg.u_threshold > d.config.u_threshold {
        d.overloaded = false;
    }
    if cfg.weight > 0 {
        d.last_weight = cfg.weight;
    }
    d.config = *cfg;
}

/// `ip_vs_bind_dest`'s OVERLOAD set rule.
fn set_overload(d: &mut RealServer) {
    let u = d.config.u_threshold;
    if u != 0 && d.active + d.inactive >= u {
        d.overloaded = true;
    }
}

/// `ip_vs_unbind_dest`'s OVERLOAD clear rule, with hysteresis.
fn clear_overload(d: &mut RealServer) {
    let total = u64::from(d.active) + u64::from(d.inactive);
    let (l, u) = (d.config.l_threshold, d.config.u_threshold);
    if l != 0 {
        if total < u64::from(l) {
            d.overloaded = false;
        }
    } else if u != 0 {
        if total * 4 < u64::from(u) * 3 {
            d.overloaded = false;
        }
    } else {
        d.overloaded = false;
    }
}

#[cfg(test)]
mod tests;
