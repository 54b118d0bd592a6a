//! The health checker's side of the Balancer (docs/health-checks.md): configuration calls,
//! the probe queue a transport drains, events, and what operator commands do to checked
//! servers. What a transition does to the director is in `health_apply.rs`.

use core::net::SocketAddr;

use crate::config::{ConfigError, ServerConfig, ServiceKey};
use crate::health::{
    Health, HealthCheck, HealthError, HealthState, HealthStatus, HealthStorage, Member, Probe,
    ProbeId, ProbeOutcome, Reason, SvcHealth, VirtualServerHealth, NO_MEMBER,
};
use crate::server::{ServerId, NO_SERVER};
use crate::time::Instant;

use super::{Balancer, Event};

/// The health checker's own counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HealthCounters {
    /// Probes out now.
    pub in_flight: usize,
    /// Results reported for a probe that had already timed out (or was unknown).
    pub stale_results: u64,
    /// Passive triggers that would have taken more than a service's share DOWN and probed
    /// instead.
    pub passive_capped: u64,
}

impl<'a> Balancer<'a> {
    /// Gives the balancer health-check storage (sized by [`HealthLimits`](crate::HealthLimits))
    /// and the seed of its warm-up and jitter randomness. Any previous checks are forgotten
    /// (servers they held DOWN stay as they are). Call at start-up, before the checks.
    ///
    /// ```
    /// use lb_core::{
    ///     Balancer, Duration, Event, HealthCheck, HealthLimits, HealthState, HealthStorage,
    ///     Instant, Limits, ProbeKind, ProbeOutcome, Secrets, ServiceKey,
    /// };
    ///
    /// let t0 = Instant::ZERO;
    /// let mut lb = Balancer::alloc(Limits::new(1, 4), 1024, &Secrets::from_bytes([5; 24]), t0);
    /// lb.apply_line(t0, "-A -t 10.0.0.1:80 -s wlc")?;
    /// lb.apply_line(t0, "-a -t 10.0.0.1:80 -r 10.1.0.1:80 -m -w 3")?;
    /// let limits = HealthLimits { targets: 4, members: 4, services: 1, max_in_flight: 2 };
    /// lb.set_health_storage(HealthStorage::alloc(limits), 0x5eed); // seed from an RNG
    /// let svc = ServiceKey::tcp("10.0.0.1:80".parse().unwrap());
    /// let check = HealthCheck {
    ///     delay_loop: Duration::from_secs(6),
    ///     connect_timeout: Duration::from_secs(3),
    ///     warmup: Some(Duration::from_secs(0)),
    ///     ..HealthCheck::tcp()
    /// };
    /// lb.set_health_check(t0, &svc, "10.1.0.1:80".parse().unwrap(), &check).unwrap();
    ///
    /// // The frontend's loop: timers, then every due probe to the transport.
    /// lb.handle_timeout(t0);
    /// let probe = lb.poll_probe(t0).expect("due at once (warmup 0)");
    /// assert!(matches!(probe.kind, ProbeKind::TcpConnect { .. }));
    /// // ... the transport's SYN is answered by a RST:
    /// lb.probe_result(Instant::from_millis(2), probe.id, ProbeOutcome::Refused);
    /// let Some(Event::Health { state, reason, .. }) = lb.poll_event() else { panic!() };
    /// assert_eq!((state, reason.to_string().as_str()), (HealthState::Down, "connect refused"));
    /// assert!(lb.director().servers(0).is_empty()); // removed (no inhibit_on_failure)
    /// # Ok::<(), lb_core::LineError>(())
    /// ```
    pub fn set_health_storage(&mut self, storage: HealthStorage<'a>, seed: u64) {
        self.health = Health::new(storage, seed);
        self.director.clear_health_marks();
    }

    /// Checks real server `server` of `service` with `check` (replacing its previous check).
    /// The server must be in the service now. Without `alpha` it stays UP until a probe fails;
    /// with `alpha` it leaves scheduling at once until `rise` probes pass. The first probe runs
    /// within `warmup` of `now`.
    pub fn set_health_check(
        &mut self,
        now: Instant,
        service: &ServiceKey,
        server: SocketAddr,
        check: &HealthCheck,
    ) -> Result<(), HealthError> {
        check.validate()?;
        if !self.health.has_storage() {
            return Err(HealthError::NoStorage);
        }
        let svc = self
            .director
            .service_id(service)
            .ok_or(HealthError::NoSuchService)?;
        let existing = self.member_of(service, server);
        let listed = self.director.find_server(svc, server);
        let cfg = match (existing, listed) {
            (Some(m), _) => self.health.members[m].cfg,
            (None, Some(id)) => self
                .director
                .server(id)
                .map(|s| s.config)
                .ok_or(HealthError::NoSuchServer)?,
            (None, None) => return Err(HealthError::NoSuchServer),
        };
        let slot = match existing {
            Some(m) => m,
            None => self
                .health
                .members
                .iter()
                .take(usize::from(NO_MEMBER))
                .position(|m| !m.used)
                .ok_or(HealthError::TooManyCheckedServers {
                    max: self.health.members.len(),
                })?,
        };
        let target = self.health.target_for(now, server, check)?;
        let old = self.health.members[slot];
        if old.used {
            self.health.release_target(old.target);
        }
        let applied_up = if old.used { old.applied_up } else { true };
        self.health.members[slot] = Member {
            used: true,
            service: *service,
            cfg,
            target,
            server: listed.unwrap_or(NO_SERVER),
            applied_up,
            ..Member::EMPTY
        };
        if let Some(id) = listed {
            self.director.set_health_mark(id, slot as u16, !applied_up);
        }
        if check.alpha && !self.health.target_up(target) {
            self.health.members[slot].pending = Some((HealthState::Down, Reason::Alpha));
        }
        self.health_changed(now);
        Ok(())
    }

    /// Stops checking `server` of `service`. A server the checker had removed is added back
    /// (with its weight); one it held at weight 0 gets its weight back.
    pub fn remove_health_check(
        &mut self,
        now: Instant,
        service: &ServiceKey,
        server: SocketAddr,
    ) -> Result<(), HealthError> {
        let m = self
            .member_of(service, server)
            .ok_or(HealthError::NoSuchServer)?;
        let member = self.health.members[m];
        if !member.applied_up {
            self.apply_up(now, m, false);
        }
        self.forget_member(m);
        self.health_changed(now);
        Ok(())
    }

    /// Sets the health policy of `service`: sorry server, quorum and hysteresis, slow start,
    /// passive signals.
    pub fn set_virtual_server_health(
        &mut self,
        now: Instant,
        service: &ServiceKey,
        cfg: &VirtualServerHealth,
    ) -> Result<(), HealthError> {
        if !self.health.has_storage() {
            return Err(HealthError::NoStorage);
        }
        if cfg.quorum == 0 {
            return Err(HealthError::ZeroQuorum);
        }
        if let Some(p) = cfg.passive {
            if p.refused_limit == 0 || p.unanswered_limit == 0 || p.max_down_percent > 100 {
                return Err(HealthError::BadPassive);
            }
        }
        let svc = self
            .director
            .service_id(service)
            .ok_or(HealthError::NoSuchService)?;
        if let Some(sorry) = cfg.sorry_server {
            let family_ok = match service {
                ServiceKey::Addr { vip, .. } => vip.is_ipv4() == sorry.is_ipv4(),
                ServiceKey::Fwmark { v6, .. } => *v6 != sorry.is_ipv4(),
            };
            let is_real = self.director.find_server(svc, sorry).is_some()
                && self.sorry_of(service) != Some(sorry);
            if !family_ok || is_real {
                return Err(HealthError::BadSorryServer);
            }
        }
        let slot = self
            .health
            .services
            .iter()
            .position(|s| s.key == Some(*service))
            .or_else(|| self.health.services.iter().position(|s| s.key.is_none()))
            .ok_or(HealthError::TooManyServicePolicies {
                max: self.health.services.len(),
            })?;
        let old = self.health.services[slot];
        if old.key.is_some() {
            if let Some(s) = old
                .cfg
                .sorry_server
                .filter(|s| Some(*s) != cfg.sorry_server)
            {
                // The old sorry server leaves; the quorum check adds the new one if needed.
                let _ = self.director.del_server(service, s);
            }
        }
        self.health.services[slot] = SvcHealth {
            key: Some(*service),
            cfg: *cfg,
            quorum_up: old.key.is_none() || old.quorum_up,
            pending: None,
        };
        self.health_changed(now);
        Ok(())
    }

    /// The health of `server` in `service`, if it is checked.
    pub fn health_state(&self, service: &ServiceKey, server: SocketAddr) -> Option<HealthState> {
        let m = self.member_of(service, server)?;
        Some(if self.health.target_up(self.health.members[m].target) {
            HealthState::Up
        } else {
            HealthState::Down
        })
    }

    /// Every checked real server with its state, counts, last result and last change, in
    /// configuration order (servers the checker removed included). For an operator's
    /// listing; not for the packet path.
    pub fn health_statuses(&self) -> impl Iterator<Item = HealthStatus<'_>> + '_ {
        self.health
            .members
            .iter()
            .filter(|m| m.used)
            .filter_map(|m| self.health.status(m))
    }

    /// Whether `service` has its quorum (keepalived's `quorum`/`hysteresis`), if it has a
    /// health policy.
    pub fn quorum_up(&self, service: &ServiceKey) -> Option<bool> {
        let s = self
            .health
            .services
            .iter()
            .find(|s| s.key == Some(*service))?;
        Some(s.quorum_up)
    }

    /// The health checker's counters.
    pub fn health_counters(&self) -> HealthCounters {
        HealthCounters {
            in_flight: self.health.in_flight,
            stale_results: self.health.stale_results,
            passive_capped: self.health.passive_capped,
        }
    }

    /// The next probe to run, if one is due and the pool
    /// ([`HealthLimits::max_in_flight`](crate::HealthLimits::max_in_flight)) has room. Call after every `handle_timeout` and `probe_result`
    /// until it gives `None`; [`poll_timeout`](Balancer::poll_timeout) counts a due probe as
    /// work due now.
    pub fn poll_probe(&mut self, now: Instant) -> Option<Probe> {
        self.health.poll_probe(now)
    }

    /// Reports what probe `id` found. A transition it completes is applied at once (and an
    /// [`Event::Health`] queued). A report after the probe's deadline is ignored (counted in
    /// [`HealthCounters::stale_results`]): the balancer counted a timeout then.
    pub fn probe_result(&mut self, now: Instant, id: ProbeId, outcome: ProbeOutcome) {
        // The checker recomputed its timer; only a transition has more to do.
        if self.health.probe_result(now, id, outcome) && self.health.changed_any {
            self.sync_health(now);
        }
    }

    /// Forgets member `m` (its target's reference and its server's mark).
    fn forget_member(&mut self, m: usize) {
        let member = self.health.members[m];
        self.health.release_target(member.target);
        if let Some(svc) = self.director.service_id(&member.service) {
            if let Some(id) = self.director.find_server(svc, member.cfg.addr) {
                self.director.set_health_mark(id, NO_MEMBER, false);
            }
        }
        self.health.members[m] = Member::EMPTY;
    }

    /// `ipvsadm -e` of a checked server: the new configuration is what recovery restores; while
    /// the checker holds the server DOWN (or ramps it), the weight stays the checker's. `None`
    /// when the server is not checked.
    pub(super) fn health_edit(
        &mut self,
        service: &ServiceKey,
        cfg: &ServerConfig,
    ) -> Option<Result<(), ConfigError>> {
        let m = self.member_of(service, cfg.addr)?;
        let member = self.health.members[m];
        if member.applied_up && member.ramp.is_none() {
            let r = self.director.edit_server(service, cfg);
            if r.is_ok() {
                self.health.members[m].cfg = *cfg;
            }
            return Some(r);
        }
        if cfg.weight > u32::from(u16::MAX) {
            return Some(Err(ConfigError::WeightOutOfRange { weight: cfg.weight }));
        }
        self.health.members[m].cfg = *cfg;
        if !member.applied_up && member.server == NO_SERVER {
            // Removed by the checker: it comes back with this configuration.
            return Some(Ok(()));
        }
        let held = self
            .director
            .service_id(service)
            .and_then(|s| self.director.find_server(s, cfg.addr))
            .and_then(|id| self.director.server(id))
            .map_or(0, |s| s.weight());
        let weight = if member.applied_up {
            held.min(cfg.weight)
        } else {
            0
        };
        Some(
            self.director
                .edit_server(service, &ServerConfig { weight, ..*cfg }),
        )
    }

    /// `ipvsadm -a` of a checked server (one the checker removed): its configuration is what
    /// recovery restores, and while the checker holds it DOWN it goes out again.
    pub(super) fn health_readd(&mut self, service: &ServiceKey, cfg: &ServerConfig, id: ServerId) {
        let Some(m) = self.member_of(service, cfg.addr) else {
            return;
        };
        let member = &mut self.health.members[m];
        member.cfg = *cfg;
        member.server = id;
        let down = !member.applied_up;
        self.director.set_health_mark(id, m as u16, false);
        if down {
            self.health.members[m].applied_up = true;
            self.apply_down(m);
        }
    }

    /// `ipvsadm -d`/`-D`/`-C` forget the checks of what they delete. `Ok` when the checker had
    /// removed the server (the director does not list it then).
    pub(super) fn health_forget(
        &mut self,
        service: Option<&ServiceKey>,
        server: Option<SocketAddr>,
    ) -> bool {
        let mut removed_by_us = false;
        for m in 0..self.health.members.len() {
            let member = self.health.members[m];
            let hit = member.used
                && service.is_none_or(|k| *k == member.service)
                && server.is_none_or(|a| a == member.cfg.addr);
            if hit {
                removed_by_us |= member.server == NO_SERVER;
                self.forget_member(m);
            }
        }
        if server.is_none() {
            for s in self.health.services.iter_mut() {
                if s.key.is_some() && service.is_none_or(|k| s.key == Some(*k)) {
                    *s = SvcHealth::EMPTY;
                }
            }
        }
        removed_by_us
    }

    /// After a configuration command: quorums follow the servers the operator changed.
    pub(super) fn health_after_apply(&mut self, now: Instant) {
        if self.health.has_storage() {
            self.health_changed(now);
        }
    }

    /// The next health event (member transitions, then quorum changes).
    pub(super) fn poll_health_event(&mut self) -> Option<Event> {
        let n = self.health.members.len();
        for k in 0..n {
            let m = (self.health.event_cursor + k) % n;
            if let Some((state, reason)) = self.health.members[m].pending.take() {
                self.health.event_cursor = (m + 1) % n;
                let member = self.health.members[m];
                return Some(Event::Health {
                    service: member.service,
                    server: member.cfg.addr,
                    state,
                    reason,
                });
            }
        }
        for s in self.health.services.iter_mut() {
            if let (Some(up), Some(service)) = (s.pending.take(), s.key) {
                return Some(Event::Quorum { service, up });
            }
        }
        None
    }

    pub(super) fn member_of(&self, service: &ServiceKey, server: SocketAddr) -> Option<usize> {
        self.health
            .members
            .iter()
            .position(|m| m.used && m.service == *service && m.cfg.addr == server)
    }

    /// The member marked on server `id` (a slot reused since does not match).
    pub(super) fn member_for(&self, id: ServerId) -> Option<usize> {
        let m = usize::from(self.director.server(id)?.health_member()?);
        let member = self.health.members.get(m)?;
        (member.used && member.server == id).then_some(m)
    }

    fn sorry_of(&self, service: &ServiceKey) -> Option<SocketAddr> {
        self.health
            .services
            .iter()
            .find(|s| s.key == Some(*service))?
            .cfg
            .sorry_server
    }
}
