//! `poll_timeout` on a virtual clock: `None` when nothing is due, one wake-up per real expiry
//! however often packets re-arm an entry, an estimator that sleeps once its rates are at rest
//! and computes, when traffic resumes, what a timer run every 2 s would have.

use core::net::SocketAddr;

use std::collections::VecDeque;
use std::vec::Vec;

use super::*;
use crate::config::{ForwardMethod, SchedulerKind, ServerConfig, ServiceConfig, ServiceKey};
use crate::ipvsadm::Command;
use crate::stats::ESTIMATOR_PERIOD;
use crate::verdict::Verdict;
use crate::Settings;
use lb_testkit::pkt;

use crate::balancer::test_support::{empty_balancer, ms, sa};

const VIP: &str = "10.0.0.100:53";
const SERVERS: [&str; 2] = ["10.1.0.1:53", "10.1.0.2:53"];

/// A balancer with no service.
fn empty() -> Balancer<'static> {
    empty_balancer(1024, Settings::default())
}

/// A UDP rr service at `VIP` over `SERVERS`; `one_packet` keeps no entries.
fn udp_service(one_packet: bool) -> Balancer<'static> {
    let mut b = empty();
    let key = ServiceKey::udp(sa(VIP));
    let mut cfg = ServiceConfig::new(key);
    cfg.scheduler = SchedulerKind::Rr;
    cfg.one_packet = one_packet;
    b.apply(Instant::ZERO, &Command::AddService(cfg)).unwrap();
    for s in SERVERS {
        let server = ServerConfig::new(sa(s), ForwardMethod::Masq);
        b.apply(Instant::ZERO, &Command::AddServer(key, server))
            .unwrap();
    }
    b
}

/// A datagram from client port `port` to the VIP, at `now`.
fn datagram(b: &mut Balancer<'_>, now: Instant, port: u16) {
    let client = SocketAddr::new(sa("192.0.2.1:1").ip(), port);
    let mut buf = pkt::udp(client, sa(VIP), b"query");
    let len = buf.len();
    buf.resize(2048, 0);
    assert!(matches!(
        b.process(now, &mut buf, len),
        Verdict::ToServer(_)
    ));
}

/// One timer wake-up of the simulated caller.
#[derive(Debug, Clone, Copy)]
struct Wakeup {
    /// What `poll_timeout` answered.
    asked: Instant,
    /// The clock when it answered (the last packet or wake-up).
    at: Instant,
    /// Entries the `handle_timeout` call removed.
    removed: usize,
}

/// A frontend on a virtual clock: it handles `packets` (times, and the client port) in order,
/// asks `poll_timeout` after every packet and wake-up (checking it is never after an entry's
/// deadline), and sleeps until the earlier of its answer and the next packet — forever on
/// `None` with no packet left, which ends the run.
fn drive(b: &mut Balancer<'_>, packets: &[(u64, u16)], now: &mut Instant) -> Vec<Wakeup> {
    let mut queue: VecDeque<_> = packets.iter().copied().collect();
    let mut wakeups = Vec::new();
    loop {
        assert!(wakeups.len() < 10_000, "never sleeps: {:?}", &wakeups[..20]);
        let t = b.poll_timeout();
        if let Some(t) = t {
            // Never late.
            for (h, _) in b.conns().iter() {
                assert!(t <= b.conns().deadline(h).unwrap());
            }
        }
        let timer_first = match (t, queue.front()) {
            (None, None) => return wakeups,
            (Some(t), Some(&(p, _))) => t <= ms(p),
            (t, _) => t.is_some(),
        };
        if let (true, Some(t)) = (timer_first, t) {
            let before = b.conns().len();
            let at = *now;
            *now = (*now).max(t);
            b.handle_timeout(*now);
            wakeups.push(Wakeup {
                asked: t,
                at,
                removed: before - b.conns().len(),
            });
        } else if let Some((p, port)) = queue.pop_front() {
            *now = ms(p);
            datagram(b, *now, port);
        }
    }
}

fn on_estimator_grid(t: Instant) -> bool {
    t.millis() % ESTIMATOR_PERIOD.millis() == 0
}

#[test]
fn nothing_due_is_none() {
    let mut b = empty();
    assert_eq!(b.poll_timeout(), None, "no service");
    b.handle_timeout(ms(10_000));
    assert_eq!(b.poll_timeout(), None);
    // Services and servers, but nothing counted: nothing to estimate, no entry.
    let mut b = udp_service(false);
    assert_eq!(b.poll_timeout(), None, "services, no traffic");
    b.handle_timeout(ms(100_000));
    assert_eq!(b.poll_timeout(), None);
    // The defences' re-evaluation is due once an automatic mode is on.
    b.apply(
        ms(100_000),
        &Command::Set(crate::ipvsadm::Setting::DropEntry(1)),
    )
    .unwrap();
    assert!(b.poll_timeout().is_some());
}

#[test]
fn a_rearmed_flow_wakes_the_caller_once_at_its_expiry() {
    // One UDP flow (300 s timeout), a packet every second for a minute, off the 2 s grid.
    let mut b = udp_service(false);
    let packets: Vec<(u64, u16)> = (0..60).map(|k| (350 + k * 1000, 5000)).collect();
    let last = packets.last().unwrap().0;
    let mut now = Instant::ZERO;
    let wakeups = drive(&mut b, &packets, &mut now);
    assert!(b.conns().is_empty());
    // The entry's deadline: the last packet + 300 s, rounded up to the table's 1/16 s tick.
    let deadline = ms((last + 300_000).div_ceil(125) * 125);
    let expiry: Vec<_> = wakeups.iter().filter(|w| w.removed > 0).collect();
    assert_eq!(expiry.len(), 1, "{wakeups:?}");
    assert_eq!(expiry[0].asked, deadline);
    for w in &wakeups {
        // Every other wake-up is the estimator's: a run on its grid, or the immediate call
        // that resumes it after the first packet.
        let immediate = w.asked <= w.at;
        assert!(
            w.removed > 0 || on_estimator_grid(w.asked) || immediate,
            "an early wake-up: {w:?}"
        );
    }
    // Once the rates have decayed the caller sleeps straight to the expiry.
    let before: Vec<_> = wakeups.iter().filter(|w| w.asked < deadline).collect();
    let quiet = before.last().unwrap().asked;
    assert!(
        quiet < ms(last + 150_000),
        "estimator still running at {quiet:?}"
    );
}

#[test]
fn the_estimator_sleeps_once_rates_are_at_rest_and_wakes_on_traffic() {
    // One-packet scheduling: counters move, no entry is kept.
    let mut b = udp_service(true);
    let svc = b.director().service_id(&ServiceKey::udp(sa(VIP))).unwrap();
    let packets: Vec<(u64, u16)> = (0..40).map(|k| (500 + k * 250, 6000)).collect();
    let mut now = Instant::ZERO;
    let wakeups = drive(&mut b, &packets, &mut now);
    assert!(b.conns().is_empty());
    let rates = b.director().service(svc).unwrap().rates;
    assert!(rates.is_steady(), "{rates:?}");
    assert_eq!(rates.rates(), crate::stats::Rates::default());
    // Woken for the first packet, then on the grid until the rates decayed.
    assert!(wakeups[1..].iter().all(|w| on_estimator_grid(w.asked)));
    let asleep = now;
    assert!(asleep < ms(120_000), "{asleep:?}");
    assert_eq!(b.poll_timeout(), None);
    // Hours later, one packet: an immediate call, then the next point of the 2 s grid.
    now = ms(3_600_300);
    datagram(&mut b, now, 6001);
    let t = b.poll_timeout().unwrap();
    assert!(t <= now, "{t:?}");
    b.handle_timeout(now);
    assert_eq!(b.poll_timeout(), Some(ms(3_602_000)));
    let mut want = b.director().service(svc).unwrap().rates;
    b.handle_timeout(ms(3_602_000));
    // That run counted the packet: one estimator step over the new counters.
    let s = b.director().service(svc).unwrap();
    want.estimate(&s.stats);
    assert_eq!(s.rates, want);
    assert!(!want.is_steady());
    drive(&mut b, &[], &mut now);
    assert_eq!(b.poll_timeout(), None);
}

/// Rates after idle periods equal those of a balancer whose `handle_timeout` runs every 2 s,
/// compared at every point of the grid, estimator state and all.
#[test]
fn rates_after_idling_equal_a_timer_every_2_s() {
    let mut a = udp_service(true);
    let mut r = udp_service(true);
    let svc = a.director().service_id(&ServiceKey::udp(sa(VIP))).unwrap();
    // Bursts off the grid: a first one, one long after the estimator fell asleep, one just
    // before a grid point, and one half a second after the estimator fell asleep (when its
    // next run lies ahead, not behind).
    let mut packets: Vec<u64> = (0..30).map(|k| 300 + k * 333).collect();
    packets.extend([400_100, 400_200, 401_500, 403_700, 403_900]);
    packets.extend((0..10).map(|k| 1_001_990 + k));
    let mut soon_after_sleep = None;
    let (mut now_a, mut slept, mut a_wakeups) = (Instant::ZERO, false, 0);
    let mut next = 0;
    for g in (1..=1000u64).map(|k| k * ESTIMATOR_PERIOD.millis()) {
        // Packets before `g`, to both.
        while next < packets.len() && packets[next] < g {
            let p = ms(packets[next]);
            // The frontend: timers due before the packet, then the packet.
            while let Some(t) = a.poll_timeout().filter(|&t| t <= p) {
                now_a = now_a.max(t);
                a.handle_timeout(now_a);
                a_wakeups += 1;
            }
            now_a = p;
            datagram(&mut a, p, 7000 + next as u16);
            datagram(&mut r, p, 7000 + next as u16);
            next += 1;
        }
        while let Some(t) = a.poll_timeout().filter(|&t| t <= ms(g)) {
            now_a = now_a.max(t);
            a.handle_timeout(now_a);
            a_wakeups += 1;
        }
        r.handle_timeout(ms(g));
        if a.poll_timeout().is_none() {
            if !slept && soon_after_sleep.is_none() && g > 1_002_000 {
                // It fell asleep at this run: traffic half a second later, before its next
                // grid point (which then counts it).
                soon_after_sleep = Some(g + 500);
                packets.extend([g + 500, g + 700]);
            }
            slept = true;
        } else {
            slept = false;
        }
        let (da, dr) = (a.director(), r.director());
        assert_eq!(
            da.service(svc).unwrap().rates,
            dr.service(svc).unwrap().rates,
            "service rates at {g} ms"
        );
        for ((ia, _), (ir, _)) in da.servers(svc).iter().zip(dr.servers(svc).iter()) {
            assert_eq!(da.server_rates(ia), dr.server_rates(ir), "at {g} ms");
        }
    }
    assert!(slept && soon_after_sleep.is_some(), "{soon_after_sleep:?}");
    assert_eq!(next, packets.len());
    // The reference ran 1000 times; the sleeper only while rates were moving.
    assert!(a_wakeups < 300, "{a_wakeups}");
}
