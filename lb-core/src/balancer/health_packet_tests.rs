//! Health-check tests with real packets (lb-testkit's builders): passive signals (refused and
//! unanswered SYNs, the share cap, the immediate probe) and the retransmitted SYN to a DOWN
//! server rescheduled.

use super::*;
use crate::tcp::flags::{ACK, RST, SYN};
use lb_testkit::pkt;

fn send(b: &mut Balancer<'_>, now: Instant, p: Vec<u8>) -> (Verdict, Vec<u8>) {
    let len = p.len();
    let mut buf = p;
    buf.resize(2048, 0);
    let v = b.process(now, &mut buf, len);
    (v, buf[..len].to_vec())
}

/// A client SYN to the VIP: the real server it went to.
fn syn(b: &mut Balancer<'_>, now: Instant, client: SocketAddr) -> Option<SocketAddr> {
    let (v, out) = send(b, now, pkt::segment(client, sa(VIP), SYN, 1000, 0, b""));
    matches!(v, Verdict::ToServer(_)).then(|| pkt::dst_of(&out).unwrap())
}

fn rst_from(b: &mut Balancer<'_>, now: Instant, server: SocketAddr, client: SocketAddr) {
    let (v, _) = send(
        b,
        now,
        pkt::segment(server, client, RST | ACK, 0, 1001, b""),
    );
    assert!(matches!(v, Verdict::ToClient(_)), "{v:?}");
}

fn passive_balancer(action: PassiveAction, reals: &[(&str, u32)]) -> Balancer<'static> {
    let mut b = balancer(SchedulerKind::Rr, reals, 8);
    let vs = VirtualServerHealth {
        passive: Some(PassiveConfig {
            refused_limit: 3,
            unanswered_limit: 4,
            syn_deadline: Duration::from_secs(3),
            action,
            max_down_percent: 50,
        }),
        ..VirtualServerHealth::default()
    };
    b.set_virtual_server_health(Instant::ZERO, &key(), &vs)
        .unwrap();
    for (r, _) in reals {
        b.set_health_check(Instant::ZERO, &key(), sa(r), &check(60.0, 1.0, 1, 1.0, 1))
            .unwrap();
    }
    b
}

/// Passes every probe due at `now` (the first round at t = 0).
fn pass_probes(b: &mut Balancer<'_>, now: Instant) -> usize {
    b.handle_timeout(now);
    let mut n = 0;
    while let Some(p) = b.poll_probe(now) {
        b.probe_result(now, p.id, ProbeOutcome::Ok);
        n += 1;
    }
    n
}

/// Three SYNs answered by a RST: an immediate probe; its failure is decisive.
#[test]
fn refused_syns_trigger_an_immediate_probe() {
    let mut b = passive_balancer(PassiveAction::Probe, &[("10.1.0.1:80", 1)]);
    assert_eq!(pass_probes(&mut b, ms(0)), 1);
    for i in 0..3u16 {
        let c = SocketAddr::new(sa("192.0.2.1:0").ip(), 2000 + i);
        let s = syn(&mut b, ms(1_000), c).unwrap();
        assert!(
            b.poll_probe(ms(1_000)).is_none(),
            "no probe before the third RST"
        );
        rst_from(&mut b, ms(1_000), s, c);
    }
    // The next probe was due at 60 s; now it is due at once.
    let p = b.poll_probe(ms(1_000)).expect("an immediate probe");
    b.probe_result(ms(1_010), p.id, ProbeOutcome::Refused);
    assert_eq!(
        b.health_state(&key(), sa("10.1.0.1:80")),
        Some(HealthState::Down)
    );
    let e = b.poll_event().unwrap();
    assert!(
        matches!(
            e,
            Event::Health {
                state: HealthState::Down,
                reason: Reason::Refused,
                ..
            }
        ),
        "{e:?}"
    );
}

/// A handshake that completes resets the run.
#[test]
fn a_completed_handshake_resets_the_run() {
    let mut b = passive_balancer(PassiveAction::Probe, &[("10.1.0.1:80", 1)]);
    pass_probes(&mut b, ms(0));
    let mut port = 3000;
    for round in 0..3 {
        for _ in 0..2 {
            port += 1;
            let c = SocketAddr::new(sa("192.0.2.1:0").ip(), port);
            let s = syn(&mut b, ms(1_000), c).unwrap();
            rst_from(&mut b, ms(1_000), s, c);
        }
        port += 1;
        let c = SocketAddr::new(sa("192.0.2.1:0").ip(), port);
        let s = syn(&mut b, ms(1_000), c).unwrap();
        send(
            &mut b,
            ms(1_000),
            pkt::segment(s, c, SYN | ACK, 5000, 1001, b""),
        );
        // (The server's SYN-ACK is enough: the client's ACK may never come.)
        b.handle_timeout(ms(1_000));
        assert!(b.poll_probe(ms(1_000)).is_none(), "round {round}");
    }
}

/// SYNs with no handshake: DOWN at once (mark_down) syn_deadline after the 4th, within the
/// 50 % share: of two servers, the second is probed instead.
#[test]
fn unanswered_syns_mark_down_within_the_share() {
    let reals = [("10.1.0.1:80", 1), ("10.1.0.2:80", 1)];
    let mut b = passive_balancer(PassiveAction::MarkDown, &reals);
    pass_probes(&mut b, ms(0));
    // rr alternates: 8 SYNs = 4 to each, none answered.
    for i in 0..8u16 {
        let c = SocketAddr::new(sa("192.0.2.1:0").ip(), 4000 + i);
        syn(&mut b, ms(1_000 + u64::from(i)), c).unwrap();
    }
    // The 4th SYN to each went at 1.006 s and 1.007 s: due 3 s later.
    b.handle_timeout(ms(4_005));
    let up = |b: &Balancer<'_>, r: &str| b.health_state(&key(), sa(r)) == Some(HealthState::Up);
    assert!(up(&b, reals[0].0) && up(&b, reals[1].0));
    b.handle_timeout(ms(4_006));
    assert_eq!(
        u8::from(up(&b, reals[0].0)) + u8::from(up(&b, reals[1].0)),
        1
    );
    assert_eq!(b.health_counters().passive_capped, 0);
    assert!(b.poll_probe(ms(4_006)).is_none());
    b.handle_timeout(ms(4_007));
    let states: Vec<_> = reals
        .iter()
        .map(|(r, _)| b.health_state(&key(), sa(r)).unwrap())
        .collect();
    assert_eq!(
        states.iter().filter(|&&s| s == HealthState::Down).count(),
        1,
        "{states:?}"
    );
    assert_eq!(b.health_counters().passive_capped, 1);
    let e = b.poll_event().unwrap();
    let Event::Health { reason, .. } = e else {
        panic!("{e:?}")
    };
    assert_eq!(reason.to_string(), "passive: 4 SYNs unanswered");
    // The other one is probed at once instead.
    assert!(b.poll_probe(ms(4_007)).is_some());
    // Only an active probe brings the DOWN one back: its next probe is a delay_loop later.
    let down = reals
        .iter()
        .position(|(r, _)| b.health_state(&key(), sa(r)) == Some(HealthState::Down))
        .unwrap();
    assert_eq!(weight(&b, reals[down].0), None);
}

/// A client's retransmitted SYN on an entry whose server went DOWN goes to a live server,
/// even with expire_nodest_conn off.
/// A direct-routing server's answers never pass the balancer, so its SYNs are no passive
/// signal: unanswered here, they take nobody DOWN.
#[test]
fn dr_servers_syns_are_no_passive_signal() {
    let reals = [("10.1.0.1:80", 1), ("10.1.0.2:80", 1)];
    let mut b = passive_balancer(PassiveAction::MarkDown, &reals);
    let mut settings = *b.settings();
    settings.direct_routing = true;
    b.set_settings(settings);
    for (r, _) in reals {
        let s = ServerConfig::new(sa(r), ForwardMethod::Route);
        b.apply(Instant::ZERO, &Command::EditServer(key(), s))
            .unwrap();
    }
    pass_probes(&mut b, ms(0));
    for i in 0..8u16 {
        let c = SocketAddr::new(sa("192.0.2.1:0").ip(), 4000 + i);
        let (v, _) = send(
            &mut b,
            ms(1_000 + u64::from(i)),
            pkt::segment(c, sa(VIP), SYN, 1000, 0, b""),
        );
        assert!(matches!(v, Verdict::ToServer(_)), "{v:?}");
    }
    b.handle_timeout(ms(10_000));
    for (r, _) in reals {
        assert_eq!(b.health_state(&key(), sa(r)), Some(HealthState::Up), "{r}");
    }
    assert!(b.poll_event().is_none());
}

/// Segments picked up mid-flow (`--sloppy`, `pickup.rs`) get no SYN-ACK, as their handshake
/// went through another gateway: they are no passive signal either.
#[test]
fn picked_up_segments_are_no_passive_signal() {
    let reals = [("10.1.0.1:80", 1), ("10.1.0.2:80", 1)];
    let mut b = passive_balancer(PassiveAction::MarkDown, &reals);
    b.apply(
        Instant::ZERO,
        &Command::Set(crate::ipvsadm::Setting::SloppyTcp(true)),
    )
    .unwrap();
    pass_probes(&mut b, ms(0));
    for i in 0..8u16 {
        let c = SocketAddr::new(sa("192.0.2.1:0").ip(), 4000 + i);
        let (v, _) = send(
            &mut b,
            ms(1_000 + u64::from(i)),
            pkt::segment(c, sa(VIP), ACK, 1000, 1, b""),
        );
        assert!(matches!(v, Verdict::ToServer(_)), "{v:?}");
    }
    b.handle_timeout(ms(10_000));
    for (r, _) in reals {
        assert_eq!(b.health_state(&key(), sa(r)), Some(HealthState::Up), "{r}");
    }
    assert!(b.poll_event().is_none());
}

#[test]
fn retransmitted_syn_to_a_down_server_is_rescheduled() {
    for inhibit in [true, false] {
        let mut b = balancer(
            SchedulerKind::Rr,
            &[("10.1.0.1:80", 1), ("10.1.0.2:80", 1)],
            4,
        );
        let mut s = *b.settings();
        s.expire_nodest_conn = false;
        b.set_settings(s);
        let mut chk = check(60.0, 1.0, 0, 1.0, 1);
        chk.inhibit_on_failure = inhibit;
        for r in ["10.1.0.1:80", "10.1.0.2:80"] {
            b.set_health_check(Instant::ZERO, &key(), sa(r), &chk)
                .unwrap();
        }
        pass_probes(&mut b, ms(0));
        let c = sa("192.0.2.7:5555");
        let first = syn(&mut b, ms(100), c).unwrap();
        // That server fails its next probe.
        b.handle_timeout(ms(60_000));
        while let Some(p) = b.poll_probe(ms(60_000)) {
            let o = if p.server == first {
                ProbeOutcome::Refused
            } else {
                ProbeOutcome::Ok
            };
            b.probe_result(ms(60_000), p.id, o);
        }
        assert_eq!(b.health_state(&key(), first), Some(HealthState::Down));
        // The client retransmits its SYN (same port).
        let again = syn(&mut b, ms(60_100), c).expect("forwarded");
        assert_ne!(again, first, "inhibit {inhibit}");
        assert_eq!(b.counters().health_reschedules, 1);
    }
}
