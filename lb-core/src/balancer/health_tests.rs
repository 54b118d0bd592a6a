//! Health-check tests on the virtual clock: a simulated transport answers the balancer's probes
//! from a model of each server (up, refusing, silent) with a latency, and the tests read the
//! exact times of transitions, the probes' spacing and the pool bound, what a transition does
//! to scheduling (inhibit, remove, restore, slow start, quorum, sorry server), and the passive
//! signals of real packets.

use core::net::SocketAddr;
use std::string::ToString;
use std::vec::Vec;

use super::test_support::{empty_balancer, ms, sa};
use super::*;
use crate::config::{ForwardMethod, SchedulerKind, ServerConfig, ServiceConfig, ServiceKey};
use crate::health::ProbeId;
use crate::health::{
    HealthCheck, HealthLimits, HealthState, HealthStorage, PassiveAction, PassiveConfig,
    ProbeOutcome, Reason, VirtualServerHealth,
};
use crate::ipvsadm::Command;
use crate::time::Duration;
use crate::verdict::Verdict;

const VIP: &str = "10.0.0.100:80";

fn key() -> ServiceKey {
    ServiceKey::tcp(sa(VIP))
}

fn secs(s: f64) -> Duration {
    Duration::from_millis((s * 1000.0).round() as u64)
}

/// How a simulated server answers a probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    Ok,
    Refused,
    Silent,
}

/// A balancer with one `sched` service over `servers` (address, weight), health storage for
/// `targets` probes and `pool` probes in flight.
fn balancer(sched: SchedulerKind, servers: &[(&str, u32)], pool: usize) -> Balancer<'static> {
    let mut b = empty_balancer(1024, Settings::default());
    let mut cfg = ServiceConfig::new(key());
    cfg.scheduler = sched;
    b.apply(Instant::ZERO, &Command::AddService(cfg)).unwrap();
    for (addr, w) in servers {
        add(&mut b, addr, *w);
    }
    let limits = HealthLimits {
        targets: 64,
        members: 64,
        services: 4,
        max_in_flight: pool,
    };
    b.set_health_storage(HealthStorage::alloc(limits), 42);
    b
}

fn add(b: &mut Balancer<'_>, addr: &str, w: u32) {
    let mut s = ServerConfig::new(sa(addr), ForwardMethod::Masq);
    s.weight = w;
    b.apply(Instant::ZERO, &Command::AddServer(key(), s))
        .unwrap();
}

/// The weight of `addr` in the service's list, `None` if not listed.
fn weight(b: &Balancer<'_>, addr: &str) -> Option<u32> {
    let svc = b.director().service_id(&key())?;
    let id = b.director().find_server(svc, sa(addr))?;
    b.director().server(id).map(|s| s.weight())
}

/// The simulated transport: answers probes per the model after `latency`, records every
/// probe as (server, start, end) and every event with its time.
struct Sim<'m> {
    now: Instant,
    latency: Duration,
    model: &'m dyn Fn(SocketAddr, Instant) -> Answer,
    pending: Vec<(Instant, ProbeId, ProbeOutcome)>,
    probes: Vec<(SocketAddr, Instant, Instant)>,
    events: Vec<(Instant, Event)>,
    max_out: usize,
}

impl<'m> Sim<'m> {
    fn new(model: &'m dyn Fn(SocketAddr, Instant) -> Answer) -> Self {
        Sim {
            now: Instant::ZERO,
            latency: Duration::from_millis(0),
            model,
            pending: Vec::new(),
            probes: Vec::new(),
            events: Vec::new(),
            max_out: 0,
        }
    }

    /// Drives the balancer until `end`: probes out, answers in, timers.
    fn run(&mut self, b: &mut Balancer<'_>, end: Instant) {
        for _ in 0..10_000_000 {
            self.drain(b);
            let mut next = b.poll_timeout();
            if let Some(&(t, _, _)) = self.pending.iter().min_by_key(|p| p.0) {
                next = Some(next.map_or(t, |n| n.min(t)));
            }
            let Some(next) = next.filter(|&t| t <= end) else {
                self.now = end;
                return;
            };
            assert!(
                next >= self.now || b.poll_probe(self.now).is_none(),
                "spins at {:?}",
                self.now
            );
            self.now = self.now.max(next);
            let now = self.now;
            let mut due = Vec::new();
            self.pending.retain(|&(t, id, o)| {
                if t <= now {
                    due.push((t, id, o));
                    false
                } else {
                    true
                }
            });
            for (_, id, o) in due {
                b.probe_result(now, id, o);
            }
            b.handle_timeout(now);
        }
        panic!("the simulation did not reach its end");
    }

    fn drain(&mut self, b: &mut Balancer<'_>) {
        let now = self.now;
        while let Some(p) = b.poll_probe(now) {
            let answer = (self.model)(p.server, now);
            let at = now + self.latency;
            let end = match answer {
                Answer::Silent => p.deadline,
                _ if at >= p.deadline => p.deadline,
                Answer::Ok => {
                    self.pending.push((at, p.id, ProbeOutcome::Ok));
                    at
                }
                Answer::Refused => {
                    self.pending.push((at, p.id, ProbeOutcome::Refused));
                    at
                }
            };
            self.probes.push((p.server, now, end));
        }
        let out = self
            .probes
            .iter()
            .filter(|&&(_, start, end)| start <= now && end > now)
            .count();
        self.max_out = self.max_out.max(out);
        assert!(b.health_counters().in_flight >= self.pending.len());
        while let Some(e) = b.poll_event() {
            self.events.push((now, e));
        }
    }

    /// The health events of `server`: (time, state, reason text).
    fn transitions(&self, server: &str) -> Vec<(Instant, HealthState, std::string::String)> {
        self.events
            .iter()
            .filter_map(|&(t, e)| match e {
                Event::Health {
                    server: s,
                    state,
                    reason,
                    ..
                } if s == sa(server) => Some((t, state, reason.to_string())),
                _ => None,
            })
            .collect()
    }
}

/// The check every timing test starts from: TCP, no warm-up, no jitter.
fn check(delay_loop: f64, timeout: f64, retry: u16, dbr: f64, rise: u16) -> HealthCheck {
    HealthCheck {
        delay_loop: secs(delay_loop),
        connect_timeout: secs(timeout),
        retry,
        delay_before_retry: secs(dbr),
        warmup: Some(Duration::from_millis(0)),
        rise,
        ..HealthCheck::tcp()
    }
}

/// For every knob combination: the server answers the probes at 0, D and 2D, dies 1 ms after
/// the one at 2D, and comes back 1 ms after it is declared DOWN. Probes pass or are refused
/// at once (latency 0) or go unanswered for `connect_timeout` (silent). The comment of each
/// row computes the times from the knobs:
///   DOWN = 3D + (r + 1)·τ + r·dbr   (silent: every probe lasts τ)
///   DOWN = 3D + r·dbr               (refused: probes end at once)
///   UP   = DOWN + D + (R − 1)·dbr   (the probe after DOWN is a delay_loop later, then
///                                    R − 1 more, delay_before_retry apart)
#[test]
fn detection_and_recovery_times_for_every_knob_combination() {
    struct Row {
        d: f64,
        tau: f64,
        r: u16,
        dbr: f64,
        rise: u16,
        dead: Answer,
        down: f64,
        up: f64,
        reason: &'static str,
    }
    #[rustfmt::skip]
    let rows = [
        // keepalived's defaults: 3·60 + 2·5 + 1 = 191; 191 + 60 = 251.
        Row { d: 60.0, tau: 5.0, r: 1, dbr: 1.0, rise: 1, dead: Answer::Silent, down: 191.0, up: 251.0, reason: "timeout after 5 s" },
        // Refused: 180 + 1·1 = 181; 181 + 60 = 241.
        Row { d: 60.0, tau: 5.0, r: 1, dbr: 1.0, rise: 1, dead: Answer::Refused, down: 181.0, up: 241.0, reason: "connect refused" },
        // The hand-tuned config: 18 + 4·3 + 3·3 = 39; 39 + 6 = 45.
        Row { d: 6.0, tau: 3.0, r: 3, dbr: 3.0, rise: 1, dead: Answer::Silent, down: 39.0, up: 45.0, reason: "timeout after 3 s" },
        // retry 0: one failure: 6 + 1 = 7; 7 + 2 = 9.
        Row { d: 2.0, tau: 1.0, r: 0, dbr: 1.0, rise: 1, dead: Answer::Silent, down: 7.0, up: 9.0, reason: "timeout after 1 s" },
        // rise 3: 6 + 2·1 + 0.5 = 8.5; 8.5 + 2 + 2·0.5 = 11.5.
        Row { d: 2.0, tau: 1.0, r: 1, dbr: 0.5, rise: 3, dead: Answer::Silent, down: 8.5, up: 11.5, reason: "timeout after 1 s" },
        // Fractions: 4.5 + 2·0.1 = 4.7; 4.7 + 1.5 + 1·0.1 = 6.3.
        Row { d: 1.5, tau: 0.25, r: 2, dbr: 0.1, rise: 2, dead: Answer::Refused, down: 4.7, up: 6.3, reason: "connect refused" },
        // Sub-second timeout text: 3·10 + 3·0.5 + 2·2 = 35.5; 35.5 + 10 = 45.5.
        Row { d: 10.0, tau: 0.5, r: 2, dbr: 2.0, rise: 1, dead: Answer::Silent, down: 35.5, up: 45.5, reason: "timeout after 0.5 s" },
    ];
    for (n, row) in rows.iter().enumerate() {
        for inhibit in [false, true] {
            let mut b = balancer(SchedulerKind::Rr, &[("10.1.0.1:80", 5)], 4);
            let mut chk = check(row.d, row.tau, row.r, row.dbr, row.rise);
            chk.inhibit_on_failure = inhibit;
            b.set_health_check(Instant::ZERO, &key(), sa("10.1.0.1:80"), &chk)
                .unwrap();
            let die = secs(2.0 * row.d).millis() + 1;
            let revive = secs(row.down).millis() + 1;
            let model = move |_: SocketAddr, t: Instant| {
                if t.millis() >= die && t.millis() < revive {
                    row.dead
                } else {
                    Answer::Ok
                }
            };
            let mut sim = Sim::new(&model);
            sim.run(&mut b, Instant::ZERO + secs(row.up + 3.0 * row.d));
            let got = sim.transitions("10.1.0.1:80");
            let want = std::vec![
                (
                    Instant::ZERO + secs(row.down),
                    HealthState::Down,
                    row.reason.to_string()
                ),
                (
                    Instant::ZERO + secs(row.up),
                    HealthState::Up,
                    "check passed".to_string()
                ),
            ];
            assert_eq!(got, want, "row {n}, inhibit {inhibit}");
            assert_eq!(
                weight(&b, "10.1.0.1:80"),
                Some(5),
                "row {n}: weight restored"
            );
        }
    }
}

/// A wrr balancer over `servers` whose first, 10.1.0.1:80, is checked every 2 s (timeout 1 s,
/// no retry, rise 1), inhibited or removed when DOWN.
fn first_checked(servers: &[(&str, u32)], inhibit: bool) -> Balancer<'static> {
    let mut b = balancer(SchedulerKind::Wrr, servers, 4);
    let mut chk = check(2.0, 1.0, 0, 1.0, 1);
    chk.inhibit_on_failure = inhibit;
    b.set_health_check(Instant::ZERO, &key(), sa("10.1.0.1:80"), &chk)
        .unwrap();
    b
}

/// A server model that refuses connections before `until` and accepts them after.
fn refused_until(until: Instant) -> impl Fn(SocketAddr, Instant) -> Answer {
    move |_, t| {
        if t < until {
            Answer::Refused
        } else {
            Answer::Ok
        }
    }
}

#[test]
fn inhibit_quiesces_and_remove_deletes_then_recovery_restores_the_weight() {
    for inhibit in [true, false] {
        let mut b = first_checked(&[("10.1.0.1:80", 7), ("10.1.0.2:80", 3)], inhibit);
        let model = refused_until(ms(5_000));
        let mut sim = Sim::new(&model);
        sim.run(&mut b, ms(100));
        // The first probe (t = 0) is refused: non-alpha servers go DOWN on their first failure.
        assert_eq!(
            b.health_state(&key(), sa("10.1.0.1:80")),
            Some(HealthState::Down)
        );
        let down = if inhibit { Some(0) } else { None };
        assert_eq!(weight(&b, "10.1.0.1:80"), down, "inhibit {inhibit}");
        assert_eq!(weight(&b, "10.1.0.2:80"), Some(3));
        sim.run(&mut b, ms(6_100));
        assert_eq!(
            b.health_state(&key(), sa("10.1.0.1:80")),
            Some(HealthState::Up)
        );
        assert_eq!(weight(&b, "10.1.0.1:80"), Some(7), "inhibit {inhibit}");
        let t = sim.transitions("10.1.0.1:80");
        assert_eq!(t.len(), 2);
        assert_eq!((t[0].0, t[1].0), (ms(0), ms(6_000)));
    }
}

#[test]
fn alpha_starts_down_and_needs_rise_passes() {
    let mut b = balancer(SchedulerKind::Rr, &[("10.1.0.1:80", 2)], 4);
    let mut chk = check(5.0, 1.0, 1, 1.0, 2);
    chk.alpha = true;
    b.set_health_check(Instant::ZERO, &key(), sa("10.1.0.1:80"), &chk)
        .unwrap();
    assert_eq!(
        weight(&b, "10.1.0.1:80"),
        None,
        "alpha: removed before any probe"
    );
    let model = |_: SocketAddr, _: Instant| Answer::Ok;
    let mut sim = Sim::new(&model);
    sim.run(&mut b, ms(2_000));
    // Passes at 0 and 1 s (delay_before_retry): UP at 1 s.
    assert_eq!(
        sim.transitions("10.1.0.1:80"),
        std::vec![
            (
                ms(0),
                HealthState::Down,
                "alpha: not checked yet".to_string()
            ),
            (ms(1_000), HealthState::Up, "check passed".to_string()),
        ]
    );
    assert_eq!(weight(&b, "10.1.0.1:80"), Some(2));
}

/// Identical checks of one address in two services share one probe.
#[test]
fn identical_checks_share_one_probe() {
    let mut b = balancer(SchedulerKind::Rr, &[("10.1.0.1:80", 1)], 4);
    let k2 = ServiceKey::tcp(sa("10.0.0.101:80"));
    b.apply(Instant::ZERO, &Command::AddService(ServiceConfig::new(k2)))
        .unwrap();
    let s = ServerConfig::new(sa("10.1.0.1:80"), ForwardMethod::Masq);
    b.apply(Instant::ZERO, &Command::AddServer(k2, s)).unwrap();
    let chk = check(1.0, 0.5, 0, 1.0, 1);
    b.set_health_check(Instant::ZERO, &key(), sa("10.1.0.1:80"), &chk)
        .unwrap();
    b.set_health_check(Instant::ZERO, &k2, sa("10.1.0.1:80"), &chk)
        .unwrap();
    let model = |_: SocketAddr, t: Instant| {
        if t < ms(3_000) {
            Answer::Ok
        } else {
            Answer::Refused
        }
    };
    let mut sim = Sim::new(&model);
    sim.run(&mut b, ms(3_500));
    // Probes at 0, 1, 2, 3 s: one per interval for both services.
    assert_eq!(sim.probes.len(), 4);
    let downs = sim
        .events
        .iter()
        .filter(|(_, e)| {
            matches!(
                e,
                Event::Health {
                    state: HealthState::Down,
                    ..
                }
            )
        })
        .count();
    assert_eq!(downs, 2, "both services see the transition");
    assert_eq!(
        b.health_state(&k2, sa("10.1.0.1:80")),
        Some(HealthState::Down)
    );
}

/// With jitter, a server's next probe never starts before its previous one ended, and each
/// gap is a delay_loop shortened by at most the jitter, or a delay_before_retry.
#[test]
fn jitter_never_overlaps_probes_of_one_server() {
    let servers: Vec<std::string::String> =
        (1..=16).map(|i| std::format!("10.1.0.{i}:80")).collect();
    let refs: Vec<(&str, u32)> = servers.iter().map(|s| (s.as_str(), 1)).collect();
    let mut b = balancer(SchedulerKind::Rr, &refs, 64);
    let mut chk = check(2.0, 1.5, 1, 0.5, 1);
    chk.jitter_percent = 20;
    chk.warmup = None;
    for s in &servers {
        b.set_health_check(Instant::ZERO, &key(), sa(s), &chk)
            .unwrap();
    }
    // Each server flaps on its own pattern; answers take 700 ms (timeouts are 1.5 s).
    let model = |s: SocketAddr, t: Instant| match (t.millis() / 3_000
        + u64::from(s.ip().to_string().len() as u8))
        % 3
    {
        0 => Answer::Ok,
        1 => Answer::Refused,
        _ => Answer::Silent,
    };
    let mut sim = Sim::new(&model);
    sim.latency = Duration::from_millis(700);
    sim.run(&mut b, ms(120_000));
    let mut jittered = false;
    for s in &servers {
        let mine: Vec<_> = sim.probes.iter().filter(|p| p.0 == sa(s)).collect();
        assert!(mine.len() > 40, "{s}: {} probes", mine.len());
        for w in mine.windows(2) {
            let gap = w[1].1.saturating_since(w[0].2).millis();
            assert!(
                gap == 500 || (1_600..=2_000).contains(&gap),
                "{s}: gap {gap} ms between probes"
            );
            jittered |= gap != 500 && gap != 2_000;
        }
    }
    assert!(jittered, "the jitter shortened some intervals");
}

/// 1,000 servers at delay_loop 1 s, all black holes: never more probes out than the pool;
/// and with room for all, their first probes are spread over the warm-up (no millisecond
/// holds more than a handful).
#[test]
fn a_thousand_servers_keep_to_the_pool_and_spread() {
    for (pool, answer) in [(16usize, Answer::Silent), (1_000, Answer::Ok)] {
        let secrets = Secrets::from_bytes([9; 24]);
        let mut b = Balancer::alloc(
            crate::director::Limits::new(1, 1_000),
            1_024,
            &secrets,
            Instant::ZERO,
        );
        b.apply(
            Instant::ZERO,
            &Command::AddService(ServiceConfig::new(key())),
        )
        .unwrap();
        let limits = HealthLimits {
            targets: 1_000,
            members: 1_000,
            services: 1,
            max_in_flight: pool,
        };
        b.set_health_storage(HealthStorage::alloc(limits), 7);
        let mut chk = check(1.0, 1.0, 1, 1.0, 1);
        chk.warmup = None;
        for i in 0..1_000u32 {
            let addr = SocketAddr::new(core::net::Ipv4Addr::from(0x0a01_0000 + i).into(), 80);
            let s = ServerConfig::new(addr, ForwardMethod::Masq);
            b.apply(Instant::ZERO, &Command::AddServer(key(), s))
                .unwrap();
            b.set_health_check(Instant::ZERO, &key(), addr, &chk)
                .unwrap();
        }
        let model = move |_: SocketAddr, _: Instant| answer;
        let mut sim = Sim::new(&model);
        sim.run(&mut b, ms(10_000));
        assert!(
            sim.max_out <= pool,
            "{} probes out, pool {pool}",
            sim.max_out
        );
        if pool == 16 {
            assert_eq!(sim.max_out, 16, "the pool fills");
            // At most 16 per second (each takes its 1 s timeout).
            assert!(sim.probes.len() <= 16 * 11, "{}", sim.probes.len());
        } else {
            let mut per_ms = std::collections::BTreeMap::new();
            let mut first = std::collections::BTreeSet::new();
            for p in sim.probes.iter() {
                *per_ms.entry(p.1).or_insert(0) += 1;
                if p.1 <= ms(1_000) {
                    first.insert(p.0);
                }
            }
            assert_eq!(first.len(), 1_000, "every server probed within the warm-up");
            let busiest = per_ms.values().copied().max().unwrap();
            assert!(busiest <= 8, "{busiest} probes in one millisecond");
        }
    }
}

#[test]
fn slow_start_ramps_the_weight_linearly() {
    let mut b = balancer(
        SchedulerKind::Wlc,
        &[("10.1.0.1:80", 21), ("10.1.0.2:80", 1)],
        4,
    );
    let vs = VirtualServerHealth {
        slowstart: Duration::from_secs(40),
        ..VirtualServerHealth::default()
    };
    b.set_virtual_server_health(Instant::ZERO, &key(), &vs)
        .unwrap();
    let chk = check(100.0, 1.0, 0, 1.0, 1);
    b.set_health_check(Instant::ZERO, &key(), sa("10.1.0.1:80"), &chk)
        .unwrap();
    let model = |_: SocketAddr, t: Instant| {
        if t < ms(1) {
            Answer::Refused
        } else {
            Answer::Ok
        }
    };
    let mut sim = Sim::new(&model);
    sim.run(&mut b, ms(10));
    assert_eq!(weight(&b, "10.1.0.1:80"), None);
    // UP at 100 s; steps of max(1 s, 40/20 = 2 s): w(t) = 1 + 20·(2·⌊t/2⌋)/40.
    sim.run(&mut b, ms(100_000));
    assert_eq!(weight(&b, "10.1.0.1:80"), Some(1));
    for (t, w) in [
        (1.9, 1),
        (2.0, 2),
        (3.0, 2),
        (10.0, 6),
        (21.0, 11),
        (39.9, 20),
        (40.0, 21),
        (60.0, 21),
    ] {
        sim.run(&mut b, Instant::ZERO + secs(100.0 + t));
        assert_eq!(weight(&b, "10.1.0.1:80"), Some(w), "at {t} s into the ramp");
    }
}

/// keepalived's quorum: weights 1+1+1, quorum 2, hysteresis 1: lost when the live weight drops
/// below 1 (all DOWN), regained at 3 (all UP); the sorry server serves in between.
#[test]
fn quorum_hysteresis_and_sorry_server() {
    let reals = ["10.1.0.1:80", "10.1.0.2:80", "10.1.0.3:80"];
    let mut b = balancer(
        SchedulerKind::Rr,
        &[(reals[0], 1), (reals[1], 1), (reals[2], 1)],
        4,
    );
    let vs = VirtualServerHealth {
        sorry_server: Some(sa("10.9.9.9:8080")),
        quorum: 2,
        hysteresis: 1,
        ..VirtualServerHealth::default()
    };
    b.set_virtual_server_health(Instant::ZERO, &key(), &vs)
        .unwrap();
    let mut chk = check(1.0, 0.5, 0, 1.0, 1);
    chk.inhibit_on_failure = true;
    for r in reals {
        b.set_health_check(Instant::ZERO, &key(), sa(r), &chk)
            .unwrap();
    }
    assert_eq!(b.quorum_up(&key()), Some(true));
    assert_eq!(weight(&b, "10.9.9.9:8080"), None);
    // Server k is down between t = k s and t = 10 + k s (probes every second).
    let model = |s: SocketAddr, t: Instant| {
        let k = u64::from(s.ip().to_string().ends_with('1'))
            + 2 * u64::from(s.ip().to_string().ends_with('2'))
            + 3 * u64::from(s.ip().to_string().ends_with('3'));
        if t >= ms(k * 1_000) && t < ms((10 + k) * 1_000) {
            Answer::Refused
        } else {
            Answer::Ok
        }
    };
    let mut sim = Sim::new(&model);
    sim.run(&mut b, ms(2_500));
    // Two down: live weight 1, not below quorum − hysteresis = 1: quorum holds.
    assert_eq!(b.quorum_up(&key()), Some(true));
    assert_eq!(weight(&b, reals[2]), Some(1));
    sim.run(&mut b, ms(3_500));
    // All down: lost; the sorry server comes in.
    assert_eq!(b.quorum_up(&key()), Some(false));
    assert_eq!(weight(&b, "10.9.9.9:8080"), Some(1));
    sim.run(&mut b, ms(12_500));
    // Two back (live weight 2 < quorum + hysteresis = 3): still lost, and the UP servers are
    // kept out while the sorry server serves (keepalived).
    assert_eq!(b.health_state(&key(), sa(reals[0])), Some(HealthState::Up));
    assert_eq!(b.quorum_up(&key()), Some(false));
    assert_eq!(weight(&b, reals[0]), Some(0));
    sim.run(&mut b, ms(13_500));
    assert_eq!(b.quorum_up(&key()), Some(true));
    assert_eq!(weight(&b, "10.9.9.9:8080"), None);
    for r in reals {
        assert_eq!(weight(&b, r), Some(1), "{r}");
    }
    let quorum: Vec<_> = sim
        .events
        .iter()
        .filter_map(|&(t, e)| match e {
            Event::Quorum { up, .. } => Some((t, up)),
            _ => None,
        })
        .collect();
    assert_eq!(quorum, std::vec![(ms(3_000), false), (ms(13_000), true)]);
}

#[test]
fn without_a_sorry_server_all_down_answers_as_before() {
    let mut b = balancer(SchedulerKind::Rr, &[("10.1.0.1:80", 1)], 4);
    b.set_health_check(
        Instant::ZERO,
        &key(),
        sa("10.1.0.1:80"),
        &check(1.0, 0.5, 0, 1.0, 1),
    )
    .unwrap();
    let model = |_: SocketAddr, _: Instant| Answer::Refused;
    let mut sim = Sim::new(&model);
    sim.run(&mut b, ms(100));
    assert_eq!(weight(&b, "10.1.0.1:80"), None);
    let mut buf = lb_testkit::pkt::segment(
        sa("192.0.2.1:1000"),
        sa(VIP),
        crate::tcp::flags::SYN,
        1,
        0,
        b"",
    );
    let len = buf.len();
    buf.resize(2048, 0);
    let v = b.process(ms(200), &mut buf, len);
    assert!(matches!(v, Verdict::Reply(_)), "a RST: {v:?}");
    assert_eq!(b.counters().no_server, 1);
}

#[path = "health_packet_tests.rs"]
mod packets;

#[test]
fn configuration_errors_say_why() {
    let mut b = empty_balancer(16, Settings::default());
    let e = b
        .set_health_check(
            Instant::ZERO,
            &key(),
            sa("10.1.0.1:80"),
            &HealthCheck::tcp(),
        )
        .unwrap_err();
    assert_eq!(e, crate::health::HealthError::NoStorage);
    let mut b = balancer(SchedulerKind::Rr, &[("10.1.0.1:80", 1)], 4);
    let mut c = HealthCheck::tcp();
    c.connect_timeout = Duration::from_secs(90);
    let e = b
        .set_health_check(Instant::ZERO, &key(), sa("10.1.0.1:80"), &c)
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "connect_timeout 90.000s exceeds delay_loop 60.000s"
    );
    let e = b
        .set_health_check(
            Instant::ZERO,
            &key(),
            sa("10.1.0.9:80"),
            &HealthCheck::tcp(),
        )
        .unwrap_err();
    assert_eq!(e, crate::health::HealthError::NoSuchServer);
    assert_eq!(
        Reason::Timeout(Duration::from_millis(1_250)).to_string(),
        "timeout after 1.25 s"
    );
    assert_eq!(Reason::HttpStatus(503).to_string(), "HTTP 503");
    assert_eq!(Reason::DigestMismatch.to_string(), "digest mismatch");
}

/// `ipvsadm -d` of a server the checker removed forgets its check; a stale result is ignored.
#[test]
fn deleting_a_removed_server_and_stale_results() {
    let mut b = balancer(SchedulerKind::Rr, &[("10.1.0.1:80", 1)], 4);
    b.set_health_check(
        Instant::ZERO,
        &key(),
        sa("10.1.0.1:80"),
        &check(1.0, 0.5, 0, 1.0, 1),
    )
    .unwrap();
    b.handle_timeout(ms(0));
    let p = b.poll_probe(ms(0)).unwrap();
    b.handle_timeout(ms(500));
    assert_eq!(
        b.health_state(&key(), sa("10.1.0.1:80")),
        Some(HealthState::Down)
    );
    b.probe_result(ms(600), p.id, ProbeOutcome::Ok);
    assert_eq!(b.health_counters().stale_results, 1);
    assert_eq!(
        b.health_state(&key(), sa("10.1.0.1:80")),
        Some(HealthState::Down)
    );
    b.apply_line(ms(700), "-d -t 10.0.0.100:80 -r 10.1.0.1:80")
        .unwrap();
    assert_eq!(b.health_state(&key(), sa("10.1.0.1:80")), None);
    // Nothing is probed any more.
    b.handle_timeout(ms(5_000));
    assert!(b.poll_probe(ms(5_000)).is_none());
    assert_eq!(b.health_counters().in_flight, 0);
}

/// `ipvsadm -e` while the checker holds a server DOWN: the weight stays 0 (inhibit) or the
/// server stays out (remove), and recovery brings the new weight.
#[test]
fn an_edit_while_down_is_what_recovery_restores() {
    for inhibit in [true, false] {
        let mut b = first_checked(&[("10.1.0.1:80", 2), ("10.1.0.2:80", 1)], inhibit);
        let model = refused_until(ms(1_000));
        let mut sim = Sim::new(&model);
        sim.run(&mut b, ms(100));
        b.apply_line(ms(200), "-e -t 10.0.0.100:80 -r 10.1.0.1:80 -m -w 9")
            .unwrap();
        assert_eq!(
            weight(&b, "10.1.0.1:80"),
            if inhibit { Some(0) } else { None }
        );
        // `-a` of the removed server does not put it back while it is DOWN.
        if !inhibit {
            b.apply_line(ms(300), "-a -t 10.0.0.100:80 -r 10.1.0.1:80 -m -w 8")
                .unwrap();
            assert_eq!(weight(&b, "10.1.0.1:80"), None);
            b.apply_line(ms(400), "-e -t 10.0.0.100:80 -r 10.1.0.1:80 -m -w 9")
                .unwrap();
        }
        sim.run(&mut b, ms(2_100));
        assert_eq!(weight(&b, "10.1.0.1:80"), Some(9), "inhibit {inhibit}");
        // An operator's drain (weight 0) survives a DOWN/UP cycle.
        b.apply_line(ms(2_200), "-e -t 10.0.0.100:80 -r 10.1.0.1:80 -m -w 0")
            .unwrap();
        assert_eq!(weight(&b, "10.1.0.1:80"), Some(0));
    }
}

/// An HTTP check probes its URLs one after the other; one failing URL fails the round, with
/// the HTTP status as the reason.
#[test]
fn http_urls_are_probed_in_turn() {
    use crate::health::{CheckKind, HttpUrl, ProbeKind};
    let mut b = balancer(SchedulerKind::Rr, &[("10.1.0.1:80", 1)], 4);
    let mut urls = heapless::Vec::new();
    urls.push(HttpUrl::new("/a").unwrap()).unwrap();
    urls.push(HttpUrl::new("/b").unwrap()).unwrap();
    let mut chk = HealthCheck::http(urls);
    chk.delay_loop = Duration::from_secs(5);
    chk.connect_timeout = Duration::from_secs(1);
    chk.warmup = Some(Duration::from_millis(0));
    chk.retry = 0;
    chk.connect_to = Some(sa("10.1.0.1:8080"));
    assert!(matches!(chk.kind, CheckKind::HttpGet { .. }));
    b.set_health_check(Instant::ZERO, &key(), sa("10.1.0.1:80"), &chk)
        .unwrap();
    let mut paths = Vec::new();
    let mut t = 0;
    for round in 0..2 {
        b.handle_timeout(ms(t));
        let mut next = b.poll_probe(ms(t));
        while let Some(p) = next {
            let ProbeKind::HttpGet { addr, url } = &p.kind else {
                panic!()
            };
            assert_eq!(*addr, sa("10.1.0.1:8080"));
            paths.push(url.path.to_string());
            let response: &[u8] = if round == 1 && url.path == "/b" {
                b"HTTP/1.1 503 Busy\r\n\r\n"
            } else {
                b"HTTP/1.1 200 OK\r\n\r\n"
            };
            t += 10;
            b.probe_result(ms(t), p.id, crate::health::evaluate_response(url, response));
            // The round's next URL is due at once.
            next = b.poll_probe(ms(t));
        }
        // Not due before the delay_loop has passed since the round's end.
        t += 5_000;
        b.handle_timeout(ms(t - 1));
        assert!(b.poll_probe(ms(t - 1)).is_none());
    }
    assert_eq!(paths, ["/a", "/b", "/a", "/b"]);
    assert_eq!(
        b.health_state(&key(), sa("10.1.0.1:80")),
        Some(HealthState::Down)
    );
    let e = b.poll_event().unwrap();
    let Event::Health { reason, .. } = e else {
        panic!("{e:?}")
    };
    assert_eq!(reason.to_string(), "HTTP 503");
}

/// Static-style storage (`HealthResources`, as a microcontroller holds it) works as the heap's.
#[test]
fn health_resources_lend_their_arrays() {
    use crate::conn::ConnStorage;
    use crate::director::{DirectorResources, DirectorStorage};
    use crate::health::HealthResources;
    let mut dir = std::boxed::Box::new(DirectorResources::<1, 4, 256, 0>::new());
    let mut health = std::boxed::Box::new(HealthResources::<2, 4, 1>::new());
    let secrets = Secrets::from_bytes([3; 24]);
    let dir_storage: DirectorStorage<'_> = dir.storage();
    let mut b =
        Balancer::from_storage(dir_storage, ConnStorage::alloc(64), &secrets, Instant::ZERO);
    b.set_health_storage(health.storage(1), 9);
    b.apply_line(Instant::ZERO, "-A -t 10.0.0.100:80 -s rr")
        .unwrap();
    for r in ["10.1.0.1:80", "10.1.0.2:80", "10.1.0.3:80"] {
        b.apply_line(
            Instant::ZERO,
            &std::format!("-a -t 10.0.0.100:80 -r {r} -m"),
        )
        .unwrap();
    }
    let chk = check(1.0, 0.5, 0, 1.0, 1);
    b.set_health_check(Instant::ZERO, &key(), sa("10.1.0.1:80"), &chk)
        .unwrap();
    b.set_health_check(Instant::ZERO, &key(), sa("10.1.0.2:80"), &chk)
        .unwrap();
    // Two probe slots: a third distinct check does not fit.
    let e = b
        .set_health_check(Instant::ZERO, &key(), sa("10.1.0.3:80"), &chk)
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "no room for another probe: all 2 probe slots are in use"
    );
    // A pool of one: the second due probe waits for the first.
    b.handle_timeout(Instant::ZERO);
    let p = b.poll_probe(Instant::ZERO).unwrap();
    assert!(b.poll_probe(Instant::ZERO).is_none());
    b.probe_result(ms(5), p.id, ProbeOutcome::Ok);
    assert!(b.poll_probe(ms(5)).is_some());
}

#[test]
fn statuses_show_runs_last_result_and_last_change() {
    let mut b = balancer(
        SchedulerKind::Rr,
        &[("10.1.0.1:80", 1), ("10.1.0.2:80", 1)],
        4,
    );
    let check = HealthCheck {
        delay_loop: secs(2.0),
        connect_timeout: secs(1.0),
        warmup: Some(secs(0.0)),
        ..HealthCheck::tcp()
    };
    for s in ["10.1.0.1:80", "10.1.0.2:80"] {
        b.set_health_check(Instant::ZERO, &key(), sa(s), &check)
            .unwrap();
    }
    let fresh: Vec<_> = b.health_statuses().collect();
    assert_eq!(fresh.len(), 2);
    assert!(fresh
        .iter()
        .all(|s| s.last.is_none() && s.reason.is_none() && s.state == HealthState::Up));
    b.handle_timeout(Instant::ZERO);
    let t = ms(5);
    while let Some(p) = b.poll_probe(Instant::ZERO) {
        let o = if p.server == sa("10.1.0.1:80") {
            ProbeOutcome::Ok
        } else {
            ProbeOutcome::Refused
        };
        b.probe_result(t, p.id, o);
    }
    let st: Vec<_> = b.health_statuses().collect();
    let one = st.iter().find(|s| s.server == sa("10.1.0.1:80")).unwrap();
    assert_eq!((one.passes, one.failures), (1, 0));
    assert_eq!(one.last, Some((t, ProbeOutcome::Ok)));
    assert_eq!(one.reason, None);
    let two = st.iter().find(|s| s.server == sa("10.1.0.2:80")).unwrap();
    assert_eq!(two.state, HealthState::Down);
    assert_eq!((two.passes, two.failures), (0, 1));
    assert_eq!((two.since, two.reason), (t, Some(Reason::Refused)));
    // A removed server is still listed (the director no longer has it).
    assert_eq!(weight(&b, "10.1.0.2:80"), None);
    assert_eq!(two.service, key());
}
