//! Health checks on the gateway's own smoltcp interface, on a virtual clock: two real servers
//! that are smoltcp hosts listening on port 80, one of which dies (stops listening: its
//! interface answers SYNs with a RST) and returns; a smoltcp client that opens a connection to
//! the virtual service every 100 ms. `Medium::Ip`, every link hop 1 ms, nothing sleeps: the
//! loop jumps to the next time anything is due (the gateway's `poll_at`, which must include the
//! prober's and the checker's timers, the hosts' `poll_at`, frames in flight), so a missing
//! deadline shows up as a wrong time.

mod sim;

use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use lb_embedded::lb_core::health::HealthResources;
use lb_embedded::lb_core::{
    DirectorStorage, Duration, Event, HealthCheck, HealthState, Instant, Limits, ServiceKey,
};
use lb_embedded::smoltcp;
use lb_embedded::{Gateway, GatewayConfig, ProbeResources};
use sim::{smol, SimDevice};
use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::phy::Medium;
use smoltcp::socket::tcp;
use smoltcp::wire::{
    EthernetAddress, HardwareAddress, IpAddress, IpCidr, IpProtocol, Ipv4Packet, TcpPacket,
};

type Res = lb_embedded::gateway_resources!(conns: 256, neighbours: 4, routes: 2, hold: 2);

const HOP_MS: u64 = 1;
const VIP: Ipv4Addr = Ipv4Addr::new(10, 0, 1, 100);
const GW_SERVERS: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 1);
const GW_CLIENTS: Ipv4Addr = Ipv4Addr::new(10, 0, 1, 1);
const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 0, 1, 2);
const S1: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 11);
const S2: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 12);

/// A smoltcp host: the client, or a real server with listening sockets.
struct Host {
    addr: Ipv4Addr,
    dev: SimDevice,
    iface: Interface,
    sockets: SocketSet<'static>,
    handles: Vec<SocketHandle>,
    /// A server: whether it listens now.
    up: bool,
    /// A server: connections from the client it accepted, by the time they were established.
    accepted: Vec<u64>,
}

impl Host {
    fn new(addr: Ipv4Addr, gw: Ipv4Addr, sockets: usize) -> Host {
        let mut dev = SimDevice::new(Medium::Ip);
        let mut cfg = Config::new(HardwareAddress::Ip);
        cfg.random_seed = u64::from(u32::from(addr));
        let mut iface = Interface::new(cfg, &mut dev, smol(0));
        iface.update_ip_addrs(|a| {
            a.push(IpCidr::new(IpAddress::Ipv4(addr), 24)).unwrap();
        });
        iface.routes_mut().add_default_ipv4_route(gw).unwrap();
        let mut set = SocketSet::new(vec![]);
        let handles = (0..sockets)
            .map(|_| {
                set.add(tcp::Socket::new(
                    tcp::SocketBuffer::new(vec![0; 256]),
                    tcp::SocketBuffer::new(vec![0; 256]),
                ))
            })
            .collect();
        Host {
            addr,
            dev,
            iface,
            sockets: set,
            handles,
            up: true,
            accepted: Vec::new(),
        }
    }

    /// A server's poll: while up, closed sockets listen again; a connection from the client is
    /// counted once established and reset at once (the test only needs where it went).
    fn serve(&mut self, now: u64) {
        self.iface.poll(smol(now), &mut self.dev, &mut self.sockets);
        for &h in &self.handles {
            let s = self.sockets.get_mut::<tcp::Socket>(h);
            if !self.up {
                if s.is_open() {
                    s.abort();
                }
                continue;
            }
            if s.state() == tcp::State::Established
                && s.remote_endpoint().map(|e| e.addr) == Some(IpAddress::Ipv4(CLIENT))
            {
                self.accepted.push(now);
                s.abort();
            } else if !s.is_open() {
                s.listen(80).unwrap();
            }
        }
        self.iface.poll(smol(now), &mut self.dev, &mut self.sockets);
    }

    /// The client's poll: a new connection to the VIP when `connect` says so (from the next
    /// free socket and port); the server resets it once established (or refuses it).
    fn client(&mut self, now: u64, connect: bool, port: &mut u16) {
        self.iface.poll(smol(now), &mut self.dev, &mut self.sockets);
        if connect {
            let h = *self
                .handles
                .iter()
                .find(|&&h| !self.sockets.get::<tcp::Socket>(h).is_open())
                .expect("a free client socket");
            *port += 1;
            let s = self.sockets.get_mut::<tcp::Socket>(h);
            s.connect(
                self.iface.context(),
                (IpAddress::Ipv4(VIP), 80),
                (IpAddress::Ipv4(self.addr), *port),
            )
            .unwrap();
        }
        self.iface.poll(smol(now), &mut self.dev, &mut self.sockets);
    }

    fn poll_at(&mut self, now: u64) -> Option<u64> {
        self.iface
            .poll_at(smol(now), &self.sockets)
            .map(|t| t.total_millis().max(0) as u64)
    }
}

/// What one run saw.
struct Run {
    /// Health events: (time, server, state, reason).
    events: Vec<(u64, IpAddr, HealthState, String)>,
    /// s2's weight in the service at each 100 ms mark (`None`: not listed).
    s2_weight: Vec<(u64, Option<u32>)>,
    /// Client connections s1 and s2 accepted, by time.
    accepted: [Vec<u64>; 2],
    probes_started: u64,
    /// SYNs the gateway sent from its own address (the probes'): (time, server).
    probe_syns: Vec<(u64, Ipv4Addr)>,
}

/// How s2 dies.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Death {
    /// It stops listening: its interface answers every SYN with a RST.
    Refuses,
    /// Its link goes dead: whatever is sent to it is lost.
    Silent,
}

/// Runs `end_ms` of virtual time: s2 dies (`death`) at `dies_ms` and is back at `returns_ms`;
/// both servers are checked with `check`; the client connects every 100 ms at 50 ms past the
/// mark.
fn run(check: &HealthCheck, death: Death, dies_ms: u64, returns_ms: u64, end_ms: u64) -> Run {
    let mut gw_dev = SimDevice::new(Medium::Ip);
    let limits = Limits {
        services: 1,
        servers_per_service: 4,
        table_slots_per_service: 0,
        lblc_entries_per_service: 0,
    };
    let res: &'static mut Res = Box::leak(Box::new(Res::new()));
    let mac = EthernetAddress([0x02, 0, 0, 0, 0, 1]);
    let t0 = Instant::ZERO;
    let mut gw = Gateway::new(
        res,
        DirectorStorage::alloc(limits),
        &mut gw_dev,
        GatewayConfig::from_seed(mac, 5),
        t0,
    )
    .unwrap();
    // The first own IPv4 address is the probes' source.
    gw.add_address(IpCidr::new(IpAddress::Ipv4(GW_SERVERS), 24))
        .unwrap();
    gw.add_address(IpCidr::new(IpAddress::Ipv4(GW_CLIENTS), 24))
        .unwrap();
    gw.attach_probes(
        Box::leak(Box::new(ProbeResources::<'static, 2, 64>::new())),
        Box::leak(Box::new(HealthResources::<4, 4, 1>::new())),
        9,
    );
    gw.apply_line(t0, &format!("-A -t {VIP}:80 -s rr")).unwrap();
    let service = ServiceKey::tcp(SocketAddr::from((VIP, 80)));
    for s in [S1, S2] {
        gw.apply_line(t0, &format!("-a -t {VIP}:80 -r {s}:80 -m -w 1"))
            .unwrap();
        gw.balancer_mut()
            .set_health_check(t0, &service, SocketAddr::from((s, 80)), check)
            .unwrap();
    }

    let mut client = Host::new(CLIENT, GW_CLIENTS, 16);
    let mut servers = [Host::new(S1, GW_SERVERS, 4), Host::new(S2, GW_SERVERS, 4)];
    // (deliver at, to: 0 gateway, 1 client, 2.. servers, frame)
    let mut wire: VecDeque<(u64, usize, Vec<u8>)> = VecDeque::new();
    let mut out = Run {
        events: Vec::new(),
        s2_weight: Vec::new(),
        accepted: [Vec::new(), Vec::new()],
        probes_started: 0,
        probe_syns: Vec::new(),
    };
    let mut port = 40000u16;
    let mut now = 0u64;
    let mut next_connect = 50u64;
    let mut next_mark = 0u64;
    let mut rounds = 0u64;
    while now <= end_ms {
        rounds += 1;
        assert!(rounds < 1_000_000, "the loop spins at {now} ms");
        let dead = (dies_ms..returns_ms).contains(&now);
        while wire.front().is_some_and(|(t, _, _)| *t <= now) {
            let (_, to, f) = wire.pop_front().unwrap();
            match to {
                3 if dead && death == Death::Silent => {}
                0 => gw_dev.rx.push_back(f),
                1 => client.dev.rx.push_back(f),
                k => servers[k - 2].dev.rx.push_back(f),
            }
        }
        servers[1].up = !(dead && death == Death::Refuses);
        for s in servers.iter_mut() {
            s.serve(now);
        }
        let connect = now == next_connect;
        if connect {
            next_connect += 100;
        }
        client.client(now, connect, &mut port);
        gw.poll(Instant::from_millis(now), &mut gw_dev);
        while let Some(e) = gw.poll_event() {
            if let Event::Health {
                server,
                state,
                reason,
                ..
            } = e
            {
                out.events
                    .push((now, server.ip(), state, reason.to_string()));
            }
        }
        if now == next_mark {
            next_mark += 100;
            let d = gw.balancer().director();
            let svc = d.service_id(&service).unwrap();
            let w = d
                .find_server(svc, SocketAddr::from((S2, 80)))
                .and_then(|id| d.server(id))
                .map(|s| s.weight());
            out.s2_weight.push((now, w));
        }
        // Everything sent goes on the wire, one hop.
        for f in gw_dev.tx.drain(..) {
            let ip = Ipv4Packet::new_checked(&f[..]).unwrap();
            let dst = ip.dst_addr();
            if ip.src_addr() == GW_SERVERS && ip.next_header() == IpProtocol::Tcp {
                let tcp = TcpPacket::new_checked(ip.payload()).unwrap();
                if tcp.syn() && !tcp.ack() {
                    out.probe_syns.push((now, dst));
                }
            }
            let to = match dst {
                CLIENT => 1,
                S1 => 2,
                S2 => 3,
                _ => continue,
            };
            wire.push_back((now + HOP_MS, to, f));
        }
        for f in client.dev.tx.drain(..) {
            wire.push_back((now + HOP_MS, 0, f));
        }
        for s in servers.iter_mut() {
            for f in s.dev.tx.drain(..) {
                wire.push_back((now + HOP_MS, 0, f));
            }
        }
        // The next time anything is due.
        let mut next = [
            Some(next_connect),
            Some(next_mark),
            wire.front().map(|w| w.0),
            gw.poll_at(Instant::from_millis(now)).map(|t| t.millis()),
            client.poll_at(now),
            servers[0].poll_at(now),
            servers[1].poll_at(now),
        ]
        .into_iter()
        .flatten()
        .min()
        .unwrap();
        for edge in [dies_ms, returns_ms] {
            if edge > now {
                next = next.min(edge);
            }
        }
        now = next.max(now + 1);
    }
    out.accepted = [
        std::mem::take(&mut servers[0].accepted),
        std::mem::take(&mut servers[1].accepted),
    ];
    out.probes_started = gw.probe_stats().unwrap().started;
    out
}

/// The knobs of both scenarios: delay_loop 2 s, connect_timeout 500 ms, retry 1,
/// delay_before_retry 1 s, rise 2, the first probe at once (warmup 0).
fn knobs(inhibit: bool) -> HealthCheck {
    HealthCheck {
        delay_loop: Duration::from_secs(2),
        connect_timeout: Duration::from_millis(500),
        retry: 1,
        delay_before_retry: Duration::from_secs(1),
        warmup: Some(Duration::from_millis(0)),
        rise: 2,
        inhibit_on_failure: inhibit,
        ..HealthCheck::tcp()
    }
}

/// s2 dies at 5 s and returns at 12 s. A probe takes one round trip, 2 ms (SYN out at t, the
/// server's SYN-ACK or RST back at t + 2), and every interval runs from a probe's end:
///
/// * s2's probes start at 0, 2,002, 4,004 (ends + delay_loop 2,000) and pass; the one at 6,006
///   is refused at 6,008 (the first failure of retry + 1 = 2), its retry starts
///   delay_before_retry later, at 7,008, and is refused at **7,010: DOWN**;
/// * while DOWN, probes every delay_loop from the last end: 9,010 (refused at 9,012), 11,012
///   (refused at 11,014), 13,014: s2 listens again since 12,000, the probe passes at 13,016
///   (1 of rise 2), the retry at 14,016 passes at **14,018: UP**.
///
/// s1 is never refused: no event for it.
fn expected_events() -> Vec<(u64, IpAddr, HealthState, String)> {
    let s2 = IpAddr::V4(S2);
    vec![
        (7_010, s2, HealthState::Down, "connect refused".to_string()),
        (14_018, s2, HealthState::Up, "check passed".to_string()),
    ]
}

/// s2's link goes dead at 5 s and comes back at 12 s. Failures are now timeouts: a probe's
/// deadline is its start + connect_timeout 500 ms, and the next interval runs from there.
///
/// * Probes at 0, 2,002, 4,004 pass; the one at 6,006 times out at 6,506, its retry at 7,506
///   times out at **8,006: DOWN** ("timeout after 0.5 s");
/// * while DOWN: 10,006 (times out at 10,506), 12,506: the link is back since 12,000, it
///   passes at 12,508 (1 of rise 2), the retry at 13,508 passes at **13,510: UP**.
#[test]
fn a_silent_server_goes_down_after_its_timeouts_and_comes_back_at_the_computed_times() {
    let r = run(&knobs(false), Death::Silent, 5_000, 12_000, 20_000);
    let s2 = IpAddr::V4(S2);
    assert_eq!(
        r.events,
        vec![
            (
                8_006,
                s2,
                HealthState::Down,
                "timeout after 0.5 s".to_string()
            ),
            (13_510, s2, HealthState::Up, "check passed".to_string()),
        ]
    );
    // A server accepts a connection 6 ms after the client's SYN (SYN, SYN-ACK, ACK: three
    // round trips of the gateway's hop). s2 accepts nothing from its death to its UP, and
    // nothing is lost: s2 took every other one of the 30 connections started from 5,050 to
    // 7,950 and its dead link lost their SYNs; the client retransmitted them and, s2 being
    // removed at 8,006, the gateway rescheduled them to s1. So from the DOWN to the return s1
    // accepts the 40 connections started from 8,050 to 11,950 and those 15.
    let count = |v: &[u64], a: u64, b: u64| v.iter().filter(|&&t| t > a && t <= b).count();
    assert_eq!(
        count(&r.accepted[1], 5_000, 13_510 + 6),
        0,
        "{:?}",
        r.accepted[1]
    );
    assert_eq!(count(&r.accepted[0], 8_006, 12_000 + 6), 40 + 15);
    assert_eq!(r.accepted[0].len() + r.accepted[1].len(), 200);
}

fn check_scheduling(r: &Run, down: u64, up: u64) {
    // The client's SYN at t is scheduled by the gateway at t + 1; the server has the
    // connection established at t + 6 (SYN, SYN-ACK, ACK across two hops each).
    let s2_between: Vec<u64> = r.accepted[1]
        .iter()
        .copied()
        .filter(|&t| t > down && t <= up + 6)
        .collect();
    assert!(
        s2_between.is_empty(),
        "s2 took new connections while DOWN: {s2_between:?}"
    );
    // rr over two servers: half of the client's connections each before the death and after
    // the return; s1 takes every one while s2 is DOWN.
    let count = |v: &[u64], a: u64, b: u64| v.iter().filter(|&&t| t > a && t <= b).count();
    assert_eq!(count(&r.accepted[1], 0, 5_000), 25, "{:?}", r.accepted[1]);
    assert_eq!(count(&r.accepted[0], 0, 5_000), 25);
    assert_eq!(count(&r.accepted[0], down + 6, up + 6), 70);
    // After the UP, rr again: 60 connections from 14,050 to 19,950, one of two to s2.
    assert!(count(&r.accepted[1], up + 6, 20_000).abs_diff(30) <= 1);
}

#[test]
fn a_refusing_server_goes_down_and_comes_back_at_the_computed_times_removed_meanwhile() {
    let r = run(&knobs(false), Death::Refuses, 5_000, 12_000, 20_000);
    assert_eq!(r.events, expected_events());
    check_scheduling(&r, 7_010, 14_018);
    // Without inhibit_on_failure the server leaves the service while DOWN.
    for &(t, w) in &r.s2_weight {
        let want = if (7_010..14_018).contains(&t) {
            None
        } else {
            Some(1)
        };
        assert_eq!(w, want, "s2's weight at {t} ms");
    }
    // Probes started: s1's every 2,002 ms from 0 (10 by 20 s: the 10th at 18,018); s2's nine
    // above (0 … 14,016), then two delay_loops after the UP at 14,018: 16,018 and 18,020.
    assert_eq!(r.probes_started, 10 + 9 + 2);
}

#[test]
fn with_inhibit_on_failure_the_down_server_is_held_at_weight_0() {
    let r = run(&knobs(true), Death::Refuses, 5_000, 12_000, 20_000);
    assert_eq!(r.events, expected_events());
    check_scheduling(&r, 7_010, 14_018);
    for &(t, w) in &r.s2_weight {
        let want = if (7_010..14_018).contains(&t) { 0 } else { 1 };
        assert_eq!(w, Some(want), "s2's weight at {t} ms");
    }
}

/// A probe's SYN lost on a link that is dead for a moment is retransmitted by its smoltcp
/// socket after the initial RTO (1 s, `RTTE_INITIAL_RTO`), inside the probe's
/// connect_timeout, and passes: no event. The retransmission is the prober's own timer, which
/// nothing else in the gateway has, so it goes out on time only if `Gateway::poll_at` includes
/// it. s2's link is dead from 5,000 to 6,500, connect_timeout 1.5 s:
///
/// * SYNs at 0, 2,002, 4,004 (passed at +2); at 6,006 (lost), retransmitted at 7,006, passed at
///   7,008; the next delay_loop later: 9,008, 11,010.
#[test]
fn a_lost_probe_syn_is_retransmitted_on_time_and_the_probe_passes() {
    let check = HealthCheck {
        connect_timeout: Duration::from_millis(1_500),
        ..knobs(false)
    };
    let r = run(&check, Death::Silent, 5_000, 6_500, 12_000);
    assert_eq!(r.events, vec![]);
    let s2: Vec<u64> = r
        .probe_syns
        .iter()
        .filter(|(_, d)| *d == S2)
        .map(|(t, _)| *t)
        .collect();
    assert_eq!(s2, [0, 2_002, 4_004, 6_006, 7_006, 9_008, 11_010]);
}
