//! The sans-IO health checker (docs/health-checks.md): probe targets with keepalived's timing
//! and counting, passive signals from the datapath, and the queue of probes a transport runs.
//! It never touches a socket: the [`Balancer`](crate::Balancer) owns it, hands out [`Probe`]s
//! (`poll_probe`), takes their [`ProbeOutcome`]s (`probe_result`), runs its timers from
//! `poll_timeout`/`handle_timeout`, and applies each transition to the director
//! (`balancer/health.rs`).
//!
//! # Model
//! - A **target** is one probe: an address and a [`HealthCheck`]. Checked servers with the same
//!   probe address and the same check share one target, in any number of services.
//! - A **member** is one checked (service, real server): the target it follows, the weight to
//!   restore, its passive-signal counters and slow-start ramp.
//! - A **service** entry holds a virtual server's [`VirtualServerHealth`] and its quorum state.
//!
//! # Files
//! | file | holds |
//! |---|---|
//! | `mod.rs` | the checker: probe targets, members, the probe queue, [`Probe`] |
//! | `storage.rs` | [`HealthLimits`], [`HealthStorage`], [`HealthResources`] |
//! | `config.rs` | the public configuration types and [`HealthError`] |
//! | `state.rs` | the UP/DOWN counting, [`ProbeOutcome`], [`Reason`] |
//! | `passive.rs` | the datapath's SYN, handshake and RST signals |
//! | `http.rs` | the HTTP request a probe sends and the evaluation of its response |
//!
//! Timing, transitions and their effect are tested through the balancer, on a virtual clock,
//! in `balancer/health_tests.rs`; the counting and the passive runs beside their code.

mod config;
mod http;
mod passive;
mod state;
mod storage;

use core::net::SocketAddr;

use managed::ManagedSlice;

use crate::config::{ServerConfig, ServiceKey};
use crate::server::{ServerId, NO_SERVER};
use crate::time::{Duration, Instant};

pub use config::{
    CheckKind, HealthCheck, HealthError, HttpUrl, PassiveAction, PassiveConfig, StatusSet,
    VirtualServerHealth, PATH_MAX, STATUS_RANGES_MAX, URLS_MAX,
};
pub use http::{evaluate_response, write_request, HTTP_USER_AGENT};
pub use state::{HealthState, ProbeOutcome, Reason};
pub use storage::{HealthLimits, HealthResources, HealthStorage};

pub(crate) use passive::Passive;
use state::{Machine, Next};

/// "No member" in a real server's mark.
pub(crate) const NO_MEMBER: u16 = u16::MAX;

/// Identifies a probe handed out by `poll_probe`; report its result with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ProbeId(u32);

/// What a probe asks the transport to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeKind {
    /// Connect to `addr`; success when the handshake completes. Then abort (RST).
    TcpConnect {
        /// Where to connect.
        addr: SocketAddr,
    },
    /// Connect to `addr`, send [`write_request`]'s request for `url`, feed the response to
    /// [`evaluate_response`].
    HttpGet {
        /// Where to connect.
        addr: SocketAddr,
        /// The URL and what it must answer.
        url: HttpUrl,
    },
}

/// One probe to run now. Report its outcome with
/// [`Balancer::probe_result`](crate::Balancer::probe_result) before `deadline`; at the deadline
/// the balancer counts it as a timeout itself and ignores a later report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    /// Its identity.
    pub id: ProbeId,
    /// The real server it checks (one of possibly several services' servers at this address).
    pub server: SocketAddr,
    /// What to do.
    pub kind: ProbeKind,
    /// `bindto`: the source address to use, if configured.
    pub bind_to: Option<SocketAddr>,
    /// `connect_timeout`.
    pub timeout: Duration,
    /// When the balancer counts it as timed out.
    pub deadline: Instant,
}

/// What the checker knows of one checked real server, for an operator
/// ([`Balancer::health_statuses`](crate::Balancer::health_statuses)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthStatus<'h> {
    /// The virtual service.
    pub service: ServiceKey,
    /// The real server.
    pub server: SocketAddr,
    /// Its check.
    pub check: &'h HealthCheck,
    /// Its state.
    pub state: HealthState,
    /// Probes in a row that passed (0 after a failure).
    pub passes: u16,
    /// Probes in a row that failed (0 after a pass).
    pub failures: u16,
    /// The last probe's end and outcome (`None`: not probed yet).
    pub last: Option<(Instant, ProbeOutcome)>,
    /// The last change of state (or the configuration of the check).
    pub since: Instant,
    /// Why it last changed (`None`: it has not changed since it was configured).
    pub reason: Option<Reason>,
}

/// Where a target's probe stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Next probe due at this time (waits in line while the pool is full).
    Idle(Instant),
    /// A probe is out; it times out at this deadline.
    InFlight(Instant),
}

/// One distinct probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    pub(crate) refs: u16,
    pub(crate) server: SocketAddr,
    pub(crate) check: HealthCheck,
    pub(crate) machine: Machine,
    pub(crate) phase: Phase,
    /// The URL of the round being probed (HTTP).
    url: u8,
    /// Bumped per probe: a report with an older sequence is stale.
    seq: u16,
    /// A transition not yet applied to the members.
    pub(crate) changed: Option<Reason>,
    /// The last probe's end and outcome.
    last: Option<(Instant, ProbeOutcome)>,
    /// Results in a row: passes, failures (one of them is 0).
    passes: u16,
    failures: u16,
    /// The last transition (or the configuration) and its reason.
    since: Instant,
    reason: Option<Reason>,
}

impl Target {
    pub(crate) const EMPTY: Target = Target {
        refs: 0,
        server: SocketAddr::new(core::net::IpAddr::V4(core::net::Ipv4Addr::UNSPECIFIED), 0),
        check: HealthCheck::tcp(),
        machine: Machine::new(false),
        phase: Phase::Idle(Instant::ZERO),
        url: 0,
        seq: 0,
        changed: None,
        last: None,
        passes: 0,
        failures: 0,
        since: Instant::ZERO,
        reason: None,
    };

    fn probe_addr(&self) -> SocketAddr {
        self.check.connect_to.unwrap_or(self.server)
    }
}

/// One checked (service, real server).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Member {
    pub(crate) used: bool,
    pub(crate) service: ServiceKey,
    /// The configuration to restore (weight included).
    pub(crate) cfg: ServerConfig,
    pub(crate) target: u16,
    /// The server's slot while it is in the director (NO_SERVER once removed).
    pub(crate) server: ServerId,
    /// Whether it is scheduled now (UP and the quorum allows).
    pub(crate) applied_up: bool,
    pub(crate) passive: Passive,
    /// Slow start: the ramp's start and its next step.
    pub(crate) ramp: Option<(Instant, Instant)>,
    /// An event not yet polled.
    pub(crate) pending: Option<(HealthState, Reason)>,
}

impl Member {
    pub(crate) const EMPTY: Member = Member {
        used: false,
        service: ServiceKey::Fwmark { mark: 0, v6: false },
        cfg: crate::server::RealServer::EMPTY.config,
        target: 0,
        server: NO_SERVER,
        applied_up: false,
        passive: Passive::NEW,
        ramp: None,
        pending: None,
    };
}

/// One service's policy and quorum state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SvcHealth {
    pub(crate) key: Option<ServiceKey>,
    pub(crate) cfg: VirtualServerHealth,
    pub(crate) quorum_up: bool,
    /// A quorum event not yet polled.
    pub(crate) pending: Option<bool>,
}

impl SvcHealth {
    pub(crate) const EMPTY: SvcHealth = SvcHealth {
        key: None,
        cfg: VirtualServerHealth {
            sorry_server: None,
            quorum: 1,
            hysteresis: 0,
            slowstart: Duration::from_millis(0),
            passive: None,
        },
        quorum_up: true,
        pending: None,
    };
}

/// The checker: its storage, the probe pool and the cached next deadline.
pub(crate) struct Health<'a> {
    pub(crate) targets: ManagedSlice<'a, Target>,
    pub(crate) members: ManagedSlice<'a, Member>,
    pub(crate) services: ManagedSlice<'a, SvcHealth>,
    max_in_flight: usize,
    pub(crate) in_flight: usize,
    rng: u64,
    /// The earliest time `handle_timeout` or `poll_probe` has work (cached; `None`: idle).
    pub(crate) next: Option<Instant>,
    /// Whether some service listens to passive signals (the datapath's one branch).
    pub(crate) passive_on: bool,
    /// Results reported for a probe that had already timed out or was unknown.
    pub(crate) stale_results: u64,
    /// Passive triggers that would have exceeded a service's share and probed instead.
    pub(crate) passive_capped: u64,
    pub(crate) event_cursor: usize,
    /// Some target has a `changed` not yet applied (spares `sync_health` its scans).
    pub(crate) changed_any: bool,
    /// Whether some service ramps recovered servers (slow start): members have timers.
    pub(crate) slow_on: bool,
}

impl<'a> Health<'a> {
    /// No storage: nothing is checked, nothing costs.
    pub(crate) fn none() -> Health<'a> {
        Health::new(
            HealthStorage {
                targets: ManagedSlice::Borrowed(&mut []),
                members: ManagedSlice::Borrowed(&mut []),
                services: ManagedSlice::Borrowed(&mut []),
                max_in_flight: 0,
            },
            0,
        )
    }

    pub(crate) fn new(mut s: HealthStorage<'a>, seed: u64) -> Health<'a> {
        s.targets.fill(Target::EMPTY);
        s.members.fill(Member::EMPTY);
        s.services.fill(SvcHealth::EMPTY);
        Health {
            targets: s.targets,
            members: s.members,
            services: s.services,
            max_in_flight: s.max_in_flight,
            in_flight: 0,
            rng: seed,
            next: None,
            passive_on: false,
            stale_results: 0,
            passive_capped: 0,
            event_cursor: 0,
            changed_any: false,
            slow_on: false,
        }
    }

    pub(crate) fn has_storage(&self) -> bool {
        !self.members.is_empty()
    }

    /// splitmix64: the seeded randomness of warm-up and jitter.
    fn random(&mut self) -> u64 {
        self.rng = self.rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A uniform time in `[0, max]`.
    fn random_upto(&mut self, max: Duration) -> Duration {
        Duration::from_millis(self.random() % (max.millis() + 1))
    }

    /// The target for `check` of `server`: an identical one, or a new one whose first probe
    /// is spread over the warm-up.
    pub(crate) fn target_for(
        &mut self,
        now: Instant,
        server: SocketAddr,
        check: &HealthCheck,
    ) -> Result<u16, HealthError> {
        let same = self
            .targets
            .iter()
            .position(|t| t.refs > 0 && t.server == server && t.check == *check);
        let i = match same {
            Some(i) => i,
            None => {
                // Target indexes are the high half of a `ProbeId`.
                let i = self
                    .targets
                    .iter()
                    .take(usize::from(u16::MAX))
                    .position(|t| t.refs == 0)
                    .ok_or(HealthError::TooManyChecks {
                        max: self.targets.len(),
                    })?;
                let due = now + self.random_upto(check.warmup());
                let seq = self.targets[i].seq;
                self.targets[i] = Target {
                    server,
                    check: check.clone(),
                    machine: Machine::new(check.alpha),
                    phase: Phase::Idle(due),
                    seq,
                    since: now,
                    reason: check.alpha.then_some(Reason::Alpha),
                    ..Target::EMPTY
                };
                i
            }
        };
        self.targets[i].refs += 1;
        self.schedule_at(due_of(&self.targets[i]));
        Ok(i as u16)
    }

    /// Drops one reference to target `t`, freeing it at the last.
    pub(crate) fn release_target(&mut self, t: u16) {
        let Some(tg) = self.targets.get_mut(usize::from(t)) else {
            return;
        };
        tg.refs = tg.refs.saturating_sub(1);
        if tg.refs == 0 {
            if matches!(tg.phase, Phase::InFlight(_)) {
                self.in_flight -= 1;
            }
            let seq = tg.seq.wrapping_add(1);
            *tg = Target {
                seq,
                ..Target::EMPTY
            };
        }
    }

    /// Hands out the probe due first, if the pool has room.
    pub(crate) fn poll_probe(&mut self, now: Instant) -> Option<Probe> {
        // `next` is never later than a due probe while the pool has room.
        if self.in_flight >= self.max_in_flight || self.next.is_none_or(|n| n > now) {
            return None;
        }
        // One scan finds the probe due first and the earliest timer of the others, which is
        // the next deadline once it is out (unless members have timers of their own).
        let room_after = self.in_flight + 1 < self.max_in_flight;
        let mut best: Option<(usize, Instant)> = None;
        let mut rest: Option<Instant> = None;
        let lower = |a: &mut Option<Instant>, t: Instant| *a = Some(a.map_or(t, |n| n.min(t)));
        for (i, t) in self.targets.iter().enumerate().filter(|(_, t)| t.refs > 0) {
            match t.phase {
                Phase::InFlight(d) => lower(&mut rest, d),
                Phase::Idle(due) if due <= now && best.is_none_or(|(_, b)| due < b) => {
                    if let (Some((_, b)), true) = (best, room_after) {
                        lower(&mut rest, b);
                    }
                    best = Some((i, due));
                }
                Phase::Idle(due) if room_after => lower(&mut rest, due),
                Phase::Idle(_) => {}
            }
        }
        let (i, _) = best?;
        let t = &mut self.targets[i];
        t.seq = t.seq.wrapping_add(1);
        let deadline = now + t.check.connect_timeout;
        t.phase = Phase::InFlight(deadline);
        let addr = t.probe_addr();
        let kind = match &t.check.kind {
            CheckKind::TcpConnect => ProbeKind::TcpConnect { addr },
            CheckKind::HttpGet { urls } => ProbeKind::HttpGet {
                addr,
                url: urls.get(usize::from(t.url)).or(urls.first())?.clone(),
            },
        };
        let probe = Probe {
            id: ProbeId((i as u32) << 16 | u32::from(t.seq)),
            server: t.server,
            kind,
            bind_to: t.check.bind_to,
            timeout: t.check.connect_timeout,
            deadline,
        };
        self.in_flight += 1;
        if self.passive_on || self.slow_on {
            self.recompute_next();
        } else {
            lower(&mut rest, deadline);
            self.next = rest;
        }
        Some(probe)
    }

    /// Counts a reported outcome; `false` if the probe is not out (timed out, unknown).
    pub(crate) fn probe_result(
        &mut self,
        now: Instant,
        id: ProbeId,
        outcome: ProbeOutcome,
    ) -> bool {
        let i = (id.0 >> 16) as usize;
        let live = self.targets.get(i).is_some_and(|t| {
            t.refs > 0 && u32::from(t.seq) == id.0 & 0xffff && matches!(t.phase, Phase::InFlight(_))
        });
        if !live {
            self.stale_results += 1;
            return false;
        }
        let was_full = self.in_flight >= self.max_in_flight;
        let old = due_of(&self.targets[i]);
        self.finish(now, i, outcome);
        if was_full || self.next == old {
            // Idle targets count again, or the probe's deadline was the earliest timer.
            self.recompute_next();
        } else {
            let due = due_of(&self.targets[i]);
            self.schedule_at(due);
        }
        true
    }

    /// A probe of target `i` ended with `outcome` at `now`.
    fn finish(&mut self, now: Instant, i: usize, outcome: ProbeOutcome) {
        self.in_flight -= 1;
        let t = &mut self.targets[i];
        let ok = outcome == ProbeOutcome::Ok;
        t.last = Some((now, outcome));
        if ok {
            t.passes = t.passes.saturating_add(1);
            t.failures = 0;
        } else {
            t.failures = t.failures.saturating_add(1);
            t.passes = 0;
        }
        let urls = match &t.check.kind {
            CheckKind::HttpGet { urls } => urls.len(),
            CheckKind::TcpConnect => 1,
        };
        if ok && usize::from(t.url) + 1 < urls {
            // The round goes on with the next URL, at once.
            t.url += 1;
            t.phase = Phase::Idle(now);
            return;
        }
        t.url = 0;
        let (change, next) = t.machine.on_result(ok, &t.check);
        if let Some(up) = change {
            let reason = if up {
                Reason::Passed
            } else {
                Reason::of_failure(outcome, t.check.connect_timeout)
            };
            t.changed = Some(reason);
            t.reason = Some(reason);
            t.since = now;
            self.changed_any = true;
        }
        let delay = match next {
            Next::Retry => t.check.delay_before_retry,
            Next::Loop => {
                let (d, j) = (t.check.delay_loop, t.check.jitter_percent);
                let spread = Duration::from_millis(d.millis() * u64::from(j) / 100);
                let cut = self.random_upto(spread);
                Duration::from_millis(d.millis() - cut.millis())
            }
        };
        self.targets[i].phase = Phase::Idle(now + delay);
    }

    /// Times out the probes past their deadline.
    pub(crate) fn expire_probes(&mut self, now: Instant) {
        for i in 0..self.targets.len() {
            let t = &self.targets[i];
            if t.refs > 0 && matches!(t.phase, Phase::InFlight(d) if d <= now) {
                self.finish(now, i, ProbeOutcome::Timeout);
            }
        }
    }

    /// Asks target `t` to probe at once, its next failure decisive (a passive trigger).
    pub(crate) fn probe_now(&mut self, now: Instant, t: u16) {
        let Some(tg) = self.targets.get_mut(usize::from(t)) else {
            return;
        };
        if !tg.machine.up {
            return;
        }
        tg.machine.exhausted = true;
        if let Phase::Idle(due) = tg.phase {
            tg.phase = Phase::Idle(due.min(now));
        }
        self.schedule_at(Some(now));
    }

    /// Takes target `t` DOWN now (a passive trigger); probes go on every `delay_loop`.
    pub(crate) fn force_down(&mut self, now: Instant, t: u16, reason: Reason) {
        let Some(tg) = self.targets.get_mut(usize::from(t)) else {
            return;
        };
        if !tg.machine.up {
            return;
        }
        tg.machine.force_down();
        tg.changed = Some(reason);
        tg.reason = Some(reason);
        tg.since = now;
        self.changed_any = true;
        if let Phase::Idle(_) = tg.phase {
            tg.phase = Phase::Idle(now + tg.check.delay_loop);
        }
    }

    /// Lowers the cached next deadline to `t`.
    pub(crate) fn schedule_at(&mut self, t: Option<Instant>) {
        if let Some(t) = t {
            self.next = Some(self.next.map_or(t, |n| n.min(t)));
        }
    }

    /// The earliest of: a probe due (while the pool has room), a probe's deadline, a passive
    /// SYN deadline, a slow-start step.
    pub(crate) fn recompute_next(&mut self) {
        let room = self.in_flight < self.max_in_flight;
        let mut next: Option<Instant> = None;
        let mut lower = |t: Instant| next = Some(next.map_or(t, |n: Instant| n.min(t)));
        for t in self.targets.iter().filter(|t| t.refs > 0) {
            match t.phase {
                Phase::InFlight(d) => lower(d),
                Phase::Idle(due) if room => lower(due),
                Phase::Idle(_) => {}
            }
        }
        // Members only matter with passive signals or slow start somewhere.
        if !self.passive_on && !self.slow_on {
            self.next = next;
            return;
        }
        for (m, svc) in self.members.iter().filter(|m| m.used).map(|m| {
            let svc = self.services.iter().find(|s| s.key == Some(m.service));
            (m, svc)
        }) {
            if let Some((_, step)) = m.ramp {
                lower(step);
            }
            if let Some(p) = svc.and_then(|s| s.cfg.passive) {
                if let Some(d) = m.passive.deadline(&p) {
                    lower(d);
                }
            }
        }
        self.next = next;
    }

    /// The policy of service `key` (the default when none was set).
    pub(crate) fn service_cfg(&self, key: &ServiceKey) -> VirtualServerHealth {
        self.services
            .iter()
            .find(|s| s.key == Some(*key))
            .map_or(SvcHealth::EMPTY.cfg, |s| s.cfg)
    }

    /// The operator's view of member `m`.
    pub(crate) fn status(&self, m: &Member) -> Option<HealthStatus<'_>> {
        let t = self.targets.get(usize::from(m.target))?;
        Some(HealthStatus {
            service: m.service,
            server: m.cfg.addr,
            check: &t.check,
            state: if t.machine.up {
                HealthState::Up
            } else {
                HealthState::Down
            },
            passes: t.passes,
            failures: t.failures,
            last: t.last,
            since: t.since,
            reason: t.reason,
        })
    }

    /// Whether target `t` is UP.
    pub(crate) fn target_up(&self, t: u16) -> bool {
        self.targets
            .get(usize::from(t))
            .is_some_and(|t| t.machine.up)
    }
}

/// A target's next timer while idle or in flight.
fn due_of(t: &Target) -> Option<Instant> {
    Some(match t.phase {
        Phase::Idle(d) | Phase::InFlight(d) => d,
    })
}
