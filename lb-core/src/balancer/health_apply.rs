//! What a health transition does to the director (docs/health-checks.md): the checker's
//! timers, passive-signal triggers, keepalived's quorum and sorry server, taking a server out
//! (`inhibit_on_failure`: weight 0, established flows go on; otherwise deleted as by
//! `ipvsadm -d`, so `expire_nodest_conn` applies to its flows) and putting it back with its
//! weight, ramped by slow start.

use crate::config::{ForwardMethod, ServerConfig, ServiceKey};
use crate::health::{HealthState, PassiveAction, Reason, SvcHealth};
use crate::server::{ServerId, NO_SERVER};
use crate::time::{Duration, Instant};

use super::{fast, Balancer};

impl Balancer<'_> {
    /// The health part of `handle_timeout`: probe deadlines, unanswered-SYN runs, slow-start
    /// steps.
    pub(super) fn health_timeout(&mut self, now: Instant) {
        self.health.expire_probes(now);
        // Members have timers only with passive signals or slow start somewhere.
        let members = if self.health.passive_on || self.health.slow_on {
            self.health.members.len()
        } else {
            0
        };
        for m in 0..members {
            let member = self.health.members[m];
            if !member.used {
                continue;
            }
            if let Some(p) = self.health.service_cfg(&member.service).passive {
                if let Some(reason) = self.health.members[m].passive.expire(now, &p) {
                    self.passive_trigger(now, m, reason);
                }
            }
            if let Some((start, step)) = member.ramp {
                if step <= now {
                    self.ramp_step(now, m, start);
                }
            }
        }
        self.sync_health(now);
    }

    /// The datapath forwarded the first SYN of a connection to `server` (passive services only).
    pub(super) fn passive_syn(&mut self, now: Instant, server: ServerId) {
        let Some(m) = self.member_for(server) else {
            return;
        };
        let key = self.health.members[m].service;
        let Some(p) = self.health.service_cfg(&key).passive else {
            return;
        };
        let due = self.health.members[m].passive.on_syn(now, &p);
        self.health.schedule_at(due);
    }

    /// `server` sent a packet with `tcp_flags` on an entry in SYN_RECV: a SYN-ACK counts as an
    /// answer, a RST as a refusal.
    pub(super) fn passive_reply(&mut self, now: Instant, server: ServerId, tcp_flags: u8) {
        use crate::tcp::flags::{RST, SYN};
        if tcp_flags & RST != 0 {
            self.passive_answer(now, server, false);
        } else if tcp_flags & SYN != 0 {
            self.passive_answer(now, server, true);
        }
    }

    /// The server answered a SYN (`ok`) or refused it with a RST.
    pub(super) fn passive_answer(&mut self, now: Instant, server: ServerId, ok: bool) {
        let Some(m) = self.member_for(server) else {
            return;
        };
        let key = self.health.members[m].service;
        let Some(p) = self.health.service_cfg(&key).passive else {
            return;
        };
        if let Some(reason) = self.health.members[m].passive.on_answer(ok, &p) {
            self.passive_trigger(now, m, reason);
            self.sync_health(now);
        }
    }

    /// A run of passive signals against member `m`: probe at once, or DOWN at once within the
    /// service's share.
    pub(super) fn passive_trigger(&mut self, now: Instant, m: usize, reason: Reason) {
        let member = self.health.members[m];
        let Some(p) = self.health.service_cfg(&member.service).passive else {
            return;
        };
        if !self.health.target_up(member.target) {
            return;
        }
        if p.action == PassiveAction::MarkDown {
            let (mut total, mut down) = (0usize, 0usize);
            for o in self
                .health
                .members
                .iter()
                .filter(|o| o.used && o.service == member.service)
            {
                total += 1;
                if !self.health.target_up(o.target) {
                    down += 1;
                }
            }
            if (down + 1) * 100 <= usize::from(p.max_down_percent) * total {
                self.health.force_down(now, member.target, reason);
                return;
            }
            self.health.passive_capped += 1;
        }
        self.health.probe_now(now, member.target);
    }

    /// Applies the targets' transitions to their members, the quorum, and the director; then
    /// the next deadline.
    pub(super) fn sync_health(&mut self, now: Instant) {
        if !self.health.changed_any {
            self.health.recompute_next();
            return;
        }
        self.health.changed_any = false;
        let mut any = false;
        for m in 0..self.health.members.len() {
            let member = self.health.members[m];
            if !member.used {
                continue;
            }
            let t = &self.health.targets[usize::from(member.target)];
            if let Some(reason) = t.changed {
                let state = if t.machine.up {
                    HealthState::Up
                } else {
                    HealthState::Down
                };
                self.health.members[m].pending = Some((state, reason));
                any = true;
            }
        }
        for t in self.health.targets.iter_mut() {
            t.changed = None;
        }
        if any {
            self.health_changed(now);
        } else {
            self.health.recompute_next();
        }
    }

    /// Re-evaluates every quorum and brings the director in line with every member's state.
    pub(super) fn health_changed(&mut self, now: Instant) {
        self.svc_cache = fast::SvcCache::EMPTY;
        for s in 0..self.health.services.len() {
            self.update_quorum(s);
        }
        for m in 0..self.health.members.len() {
            let member = self.health.members[m];
            if !member.used {
                continue;
            }
            let want = self.health.target_up(member.target) && self.quorum_allows(&member.service);
            match (member.applied_up, want) {
                (true, false) => self.apply_down(m),
                (false, true) => self.apply_up(now, m, true),
                _ => {}
            }
        }
        self.health.passive_on = self.health.services.iter().any(|s| {
            s.cfg.passive.is_some()
                && self
                    .health
                    .members
                    .iter()
                    .any(|m| m.used && Some(m.service) == s.key)
        });
        self.health.slow_on = self
            .health
            .services
            .iter()
            .any(|s| s.key.is_some() && s.cfg.slowstart.millis() > 0);
        self.health.recompute_next();
    }

    /// Whether `service`'s quorum lets its UP servers be scheduled (a lost quorum with a sorry
    /// server takes them out, as keepalived does).
    pub(super) fn quorum_allows(&self, service: &ServiceKey) -> bool {
        let s = self
            .health
            .services
            .iter()
            .find(|s| s.key == Some(*service));
        s.is_none_or(|s| s.quorum_up || s.cfg.sorry_server.is_none())
    }

    /// keepalived's `update_quorum_state`: the live weight against quorum ± hysteresis; on a
    /// change, the sorry server comes or goes and an event is queued.
    pub(super) fn update_quorum(&mut self, s: usize) {
        let SvcHealth {
            key,
            cfg,
            quorum_up,
            ..
        } = self.health.services[s];
        let Some(key) = key else { return };
        let Some(svc) = self.director.service_id(&key) else {
            return;
        };
        let mut sum: u64 = 0;
        for m in self
            .health
            .members
            .iter()
            .filter(|m| m.used && m.service == key)
        {
            if self.health.target_up(m.target) {
                sum += u64::from(m.cfg.weight);
            }
        }
        for (_, d) in self.director.servers(svc).iter() {
            if d.health_member().is_none() && Some(d.addr()) != cfg.sorry_server {
                sum += u64::from(d.weight());
            }
        }
        let (q, h) = (u64::from(cfg.quorum), u64::from(cfg.hysteresis));
        let up = if quorum_up {
            !(sum == 0 || sum < q.saturating_sub(h))
        } else {
            sum >= q + h
        };
        if up != quorum_up {
            self.health.services[s].quorum_up = up;
            self.health.services[s].pending = Some(up);
        }
        if let Some(sorry) = cfg.sorry_server {
            let listed = self.director.find_server(svc, sorry).is_some();
            if !up && !listed {
                let sc = ServerConfig {
                    addr: sorry,
                    weight: 1,
                    u_threshold: 0,
                    l_threshold: 0,
                    method: ForwardMethod::Masq,
                };
                let _ = self.director.add_server(&key, &sc);
            } else if up && listed {
                let _ = self.director.del_server(&key, sorry);
                self.conns.fragments.clear();
            }
        }
    }

    /// Takes member `m` out of scheduling: weight 0 (`inhibit_on_failure`) or deletion.
    pub(super) fn apply_down(&mut self, m: usize) {
        let member = self.health.members[m];
        let inhibit = self.health.targets[usize::from(member.target)]
            .check
            .inhibit_on_failure;
        self.health.members[m].applied_up = false;
        self.health.members[m].ramp = None;
        let svc = self.director.service_id(&member.service);
        let Some(id) = svc.and_then(|s| self.director.find_server(s, member.cfg.addr)) else {
            return;
        };
        // What the operator set since (a drain to weight 0 included) is what comes back; a
        // ramp's weight is the checker's, not the operator's.
        if member.ramp.is_none() {
            if let Some(cur) = self.director.server(id).map(|s| s.config) {
                self.health.members[m].cfg = cur;
            }
        }
        self.director.set_health_mark(id, m as u16, true);
        if inhibit {
            let cfg = ServerConfig {
                weight: 0,
                ..self.health.members[m].cfg
            };
            let _ = self.director.edit_server(&member.service, &cfg);
        } else {
            let _ = self.director.del_server(&member.service, member.cfg.addr);
            self.health.members[m].server = NO_SERVER;
            // As for `-d`: later fragments of its datagrams become counted drops.
            self.conns.fragments.clear();
        }
    }

    /// Puts member `m` back with its weight (from 1 under slow start when `ramp`).
    pub(super) fn apply_up(&mut self, now: Instant, m: usize, ramp: bool) {
        let member = self.health.members[m];
        let slowstart = self.health.service_cfg(&member.service).slowstart;
        let ramping = ramp && slowstart.millis() > 0 && member.cfg.weight > 1;
        let cfg = ServerConfig {
            weight: if ramping { 1 } else { member.cfg.weight },
            ..member.cfg
        };
        self.health.members[m].applied_up = true;
        self.health.members[m].ramp = ramping.then(|| (now, now + ramp_step(slowstart)));
        let svc = self.director.service_id(&member.service);
        let id = match svc.and_then(|s| self.director.find_server(s, cfg.addr)) {
            Some(_) => self
                .director
                .edit_server(&member.service, &cfg)
                .ok()
                .and(svc.and_then(|s| self.director.find_server(s, cfg.addr))),
            None => self.director.add_server(&member.service, &cfg).ok(),
        };
        if let Some(id) = id {
            self.director.set_health_mark(id, m as u16, false);
            self.health.members[m].server = id;
        }
    }

    /// One slow-start step of member `m` (ramp started at `start`): weight
    /// 1 + (W − 1)·elapsed/slowstart, elapsed counted in whole steps; W at the end.
    pub(super) fn ramp_step(&mut self, now: Instant, m: usize, start: Instant) {
        let member = self.health.members[m];
        let s = self.health.service_cfg(&member.service).slowstart;
        let step = ramp_step(s);
        let elapsed = now.saturating_since(start).millis();
        let w = u64::from(member.cfg.weight);
        let weight = if elapsed >= s.millis() {
            self.health.members[m].ramp = None;
            w
        } else {
            let k = elapsed / step.millis();
            let next = Instant::from_millis(start.millis() + (k + 1) * step.millis());
            let end = start + s;
            self.health.members[m].ramp = Some((start, next.min(end)));
            1 + (w - 1) * k * step.millis() / s.millis()
        };
        let cfg = ServerConfig {
            weight: weight as u32,
            ..member.cfg
        };
        let _ = self.director.edit_server(&member.service, &cfg);
    }
}

/// Slow start's step: max(1 s, slowstart / 20).
fn ramp_step(slowstart: Duration) -> Duration {
    Duration::from_millis((slowstart.millis() / 20).max(1000))
}
