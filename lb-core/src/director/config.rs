//! Configuration (`ipvsadm -A/-E/-D/-a/-e/-d/-C/-Z`): adding, editing and deleting services and
//! servers, their validation, the scheduler hooks and tables a list change triggers, and the
//! deleted-but-referenced slots (IPVS's trash).

use core::net::SocketAddr;

use super::Director;
use crate::config::{ConfigError, SchedulerKind, ServerConfig, ServiceConfig, ServiceKey};
use crate::sched::lblc::{self, LblcEntry};
use crate::sched::lblcr::{self, LblcrEntry};
use crate::sched::{dh, mh, rr, sh, twos, wrr};
use crate::server::{DestList, RealServer, ServerId, NO_SERVER};
use crate::service::{Service, ServiceId, ServiceSlot};
use crate::stats::{RateEstimator, Stats};

/// The list position where the change happened, for the scheduler hooks.
#[derive(Clone, Copy)]
enum Change {
    Add,
    Del(usize),
    Edit,
}

/// The service-specific RNG seed: SplitMix64 of the director seed and the slot.
fn service_seed(seed: u64, slot: usize) -> u64 {
    twos::Rng::new(seed ^ (slot as u64).wrapping_mul(0xD1B5_4A32_D192_ED03)).next_u64()
}

fn is_table(kind: SchedulerKind) -> bool {
    kind.has_table()
}

impl Director<'_> {
    fn table_size_for(&self, cfg: &ServiceConfig) -> Result<u32, ConfigError> {
        let (default, valid): (u32, fn(u32) -> bool) = match cfg.scheduler {
            SchedulerKind::Sh => (sh::DEFAULT_SIZE, sh::valid_size),
            SchedulerKind::Dh => (dh::DEFAULT_SIZE, dh::valid_size),
            SchedulerKind::Mh => (mh::DEFAULT_SIZE, mh::valid_size),
            _ => return Ok(0),
        };
        let size = cfg.table_size.unwrap_or(default);
        if !valid(size) {
            return Err(ConfigError::BadTableSize {
                scheduler: cfg.scheduler,
                size,
            });
        }
        if size as usize > self.limits.table_slots_per_service {
            return Err(ConfigError::TableTooLarge {
                size,
                slots: self.limits.table_slots_per_service,
            });
        }
        Ok(size)
    }

    fn validate_service(&self, cfg: &ServiceConfig) -> Result<u32, ConfigError> {
        if let Some(p) = cfg.persistence {
            let max = if cfg.key.is_ipv6() { 128 } else { 32 };
            if p.prefix > max {
                return Err(ConfigError::BadNetmask {
                    prefix: p.prefix,
                    max,
                });
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
            return Err(ConfigError::WeightOutOfRange { weight: cfg.weight });
        }
        if cfg.l_threshold > cfg.u_threshold {
            return Err(ConfigError::ThresholdOrder {
                lower: cfg.l_threshold,
                upper: cfg.u_threshold,
            });
        }
        // Tunnelling alone carries a packet to a real server of the other family (IPv4 inside
        // IPv6 and back), as IPVS allows.
        let tunnel = matches!(cfg.method, crate::config::ForwardMethod::Tunnel(_));
        if cfg.addr.is_ipv6() != key.is_ipv6() && !tunnel {
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

    /// The scheduler hooks of docs/ipvs-semantics.md §5.15 after a list change.
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
    pub(super) fn free_server(&mut self, i: usize) {
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

    // ---------------------------------------------------------------- configuration

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
            None => self.services.iter().position(ServiceSlot::is_free).ok_or(
                ConfigError::TooManyServices {
                    max: self.limits.services,
                },
            )?,
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
            return Err(ConfigError::TooManyServersForTable {
                servers: dests.len(),
                slots: table_size,
            });
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
            return Err(ConfigError::TooManyServersForTable {
                servers: len + 1,
                slots: svc.table_size,
            });
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
                    .ok_or(ConfigError::TooManyServers { max: per })?;
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
