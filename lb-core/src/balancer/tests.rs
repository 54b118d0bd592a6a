//! Balancer tests: NAT both ways, port reuse, removed and quiescent servers, persistence,
//! one-packet scheduling, ICMP errors, table full, bursts, and the seed-scenario simulation on a
//! virtual clock (issue: "a deterministic simulation test").

use core::net::SocketAddr;
use std::string::ToString;
use std::vec::Vec;

use super::*;
use crate::checksum::verify_checksums;
use crate::config::{
    ForwardMethod, Persistence, SchedulerKind, ServerConfig, ServiceConfig, ServiceKey,
};
use crate::ipvsadm::{Command, Setting};
use crate::packet::{self, Kind};
use crate::tcp::flags::{ACK, FIN, RST, SYN};
use crate::verdict::{DropReason, Transmit, Verdict};
use lb_testkit::pkt;

use super::test_support::{empty_balancer, sa};

const VIP: &str = "10.0.0.100:80";

/// A balancer with room for `capacity` connections and one TCP service at `VIP`.
fn balancer(capacity: usize, sched: SchedulerKind, servers: &[(&str, u32)]) -> Balancer<'static> {
    let mut b = empty_balancer(capacity, Settings::default());
    let mut cfg = ServiceConfig::new(ServiceKey::tcp(sa(VIP)));
    cfg.scheduler = sched;
    b.apply(Instant::ZERO, &Command::AddService(cfg)).unwrap();
    for (addr, w) in servers {
        add_server(&mut b, ServiceKey::tcp(sa(VIP)), addr, *w);
    }
    b
}

/// The most used fixture: rr over 10.1.0.1:80 and 10.1.0.2:80, room for 1,024 connections.
fn two_servers_rr() -> Balancer<'static> {
    balancer(
        1024,
        SchedulerKind::Rr,
        &[("10.1.0.1:80", 1), ("10.1.0.2:80", 1)],
    )
}

fn add_server(b: &mut Balancer<'_>, key: ServiceKey, addr: &str, w: u32) {
    let mut s = ServerConfig::new(sa(addr), ForwardMethod::Masq);
    s.weight = w;
    b.apply(Instant::ZERO, &Command::AddServer(key, s)).unwrap();
}

fn set_weight(b: &mut Balancer<'_>, addr: &str, w: u32) {
    let mut s = ServerConfig::new(sa(addr), ForwardMethod::Masq);
    s.weight = w;
    b.apply(
        Instant::ZERO,
        &Command::EditServer(ServiceKey::tcp(sa(VIP)), s),
    )
    .unwrap();
}

/// Runs one packet; returns the verdict and the packet as it left.
fn run(b: &mut Balancer<'_>, now: Instant, pkt: Vec<u8>) -> (Verdict, Vec<u8>) {
    let len = pkt.len();
    let mut buf = pkt;
    buf.resize(2048, 0);
    let v = b.process(now, &mut buf, len);
    let out = match v {
        Verdict::Reply(Transmit { len, .. }) => buf[..len].to_vec(),
        _ => buf[..len].to_vec(),
    };
    (v, out)
}

/// Sends a SYN from `client` to the VIP; returns the real server it went to.
fn syn(b: &mut Balancer<'_>, now: Instant, client: SocketAddr) -> SocketAddr {
    let (v, out) = run(b, now, pkt::segment(client, sa(VIP), SYN, 1000, 0, b""));
    assert!(
        matches!(v, Verdict::ToServer(_)),
        "SYN from {client} not forwarded"
    );
    assert!(verify_checksums(&out));
    pkt::dst_of(&out).unwrap()
}

/// Opens a connection from `client` up to ESTABLISHED (SYN, SYN+ACK, ACK); returns its server.
fn established(b: &mut Balancer<'_>, now: Instant, client: SocketAddr) -> SocketAddr {
    let server = syn(b, now, client);
    run(
        b,
        now,
        pkt::segment(server, client, SYN | ACK, 1, 1001, b""),
    );
    run(b, now, pkt::segment(client, sa(VIP), ACK, 1001, 2, b""));
    server
}

/// A whole connection: handshake, request, response, close by the server; the entry ends in
/// TIME_WAIT. Returns the server.
fn connection(b: &mut Balancer<'_>, now: Instant, client: SocketAddr) -> SocketAddr {
    let vip = sa(VIP);
    let server = syn(b, now, client);
    let steps: [(bool, u8, &[u8]); 7] = [
        (false, SYN | ACK, b""),
        (true, ACK, b""),
        (true, ACK, b"GET / HTTP/1.0\r\n\r\n"),
        (false, ACK, b"HTTP/1.0 200 OK\r\n\r\nhi"),
        (false, FIN | ACK, b""),
        (true, FIN | ACK, b""),
        (false, ACK, b""),
    ];
    for (from_client, flags, payload) in steps {
        if from_client {
            let (v, out) = run(b, now, pkt::segment(client, vip, flags, 1001, 1, payload));
            assert!(matches!(v, Verdict::ToServer(_)));
            assert_eq!(pkt::dst_of(&out).unwrap(), server);
            assert!(verify_checksums(&out));
        } else {
            let (v, out) = run(
                b,
                now,
                pkt::segment(server, client, flags, 1, 1001, payload),
            );
            assert!(matches!(v, Verdict::ToClient(_)));
            assert_eq!(pkt::src_of(&out).unwrap(), vip);
            assert!(verify_checksums(&out));
        }
    }
    server
}

fn state_of(b: &Balancer<'_>, client: SocketAddr) -> Option<&'static str> {
    b.connections(Instant::ZERO)
        .find(|c| c.client == client && !c.template)
        .map(|c| c.state)
}

fn refs(b: &Balancer<'_>) -> u32 {
    let svc = b.director().service_id(&ServiceKey::tcp(sa(VIP))).unwrap();
    b.director()
        .servers(svc)
        .iter()
        .map(|(_, s)| s.active + s.inactive)
        .sum()
}

#[test]
fn nat_both_ways_and_time_wait() {
    let mut b = balancer(1024, SchedulerKind::Rr, &[("10.1.0.1:8080", 1)]);
    let client = sa("192.0.2.1:40000");
    let server = connection(&mut b, Instant::ZERO, client);
    assert_eq!(server, sa("10.1.0.1:8080"));
    assert_eq!(state_of(&b, client), Some("TIME_WAIT"));
    let d = b.director();
    let (_, s) = d.servers(0).iter().next().unwrap();
    assert_eq!((s.active, s.inactive), (0, 1));
    assert_eq!(s.stats.in_pkts, 4);
    assert_eq!(s.stats.out_pkts, 4);
}

#[test]
fn counters_follow_states() {
    let mut b = balancer(1024, SchedulerKind::Rr, &[("10.1.0.1:80", 1)]);
    let client = sa("192.0.2.1:40000");
    let server = syn(&mut b, Instant::ZERO, client);
    let s = |b: &Balancer<'_>| {
        let (_, s) = b.director().servers(0).iter().next().unwrap();
        (s.active, s.inactive)
    };
    assert_eq!(state_of(&b, client), Some("SYN_RECV"));
    assert_eq!(s(&b), (1, 0), "SYN_RECV counts as active");
    run(
        &mut b,
        Instant::ZERO,
        pkt::segment(server, client, SYN | ACK, 1, 1001, b""),
    );
    run(
        &mut b,
        Instant::ZERO,
        pkt::segment(client, sa(VIP), ACK, 1001, 2, b""),
    );
    assert_eq!(state_of(&b, client), Some("ESTABLISHED"));
    assert_eq!(s(&b), (1, 0));
    run(
        &mut b,
        Instant::ZERO,
        pkt::segment(client, sa(VIP), RST, 1001, 2, b""),
    );
    assert_eq!(state_of(&b, client), Some("CLOSE"));
    assert_eq!(s(&b), (0, 1));
    // CLOSE lasts 10 s.
    b.handle_timeout(Instant::from_secs(9));
    assert_eq!(b.conns().len(), 1);
    b.handle_timeout(Instant::from_secs(11));
    assert_eq!(b.conns().len(), 0);
    assert_eq!(s(&b), (0, 0));
}

#[test]
fn reused_port_in_time_wait_is_rescheduled_in_the_same_call() {
    let mut b = two_servers_rr();
    let client = sa("192.0.2.1:40000");
    let first = connection(&mut b, Instant::ZERO, client);
    let second = syn(&mut b, Instant::from_secs(1), client);
    assert_ne!(first, second, "rr moves the reused port to the next server");
    assert_eq!(b.counters().reuse_reschedules, 1);
    assert_eq!(b.counters().syn_drops, 0);
    assert_eq!(b.conns().len(), 1);
    assert_eq!(refs(&b), 1);
}

#[test]
fn retransmitted_syn_and_syn_on_established_stay_put() {
    let mut b = two_servers_rr();
    let client = sa("192.0.2.1:40000");
    let first = syn(&mut b, Instant::ZERO, client);
    assert_eq!(syn(&mut b, Instant::from_secs(1), client), first);
    run(
        &mut b,
        Instant::ZERO,
        pkt::segment(first, client, SYN | ACK, 1, 1001, b""),
    );
    run(
        &mut b,
        Instant::ZERO,
        pkt::segment(client, sa(VIP), ACK, 1001, 2, b""),
    );
    assert_eq!(syn(&mut b, Instant::from_secs(2), client), first);
    assert_eq!(b.counters().reuse_reschedules, 0);
    assert_eq!(b.conns().len(), 1);
}

#[test]
fn mode_zero_follows_the_old_entry_but_never_to_a_removed_server() {
    let mut b = two_servers_rr();
    b.apply(Instant::ZERO, &Command::Set(Setting::ConnReuseMode(0)))
        .unwrap();
    let client = sa("192.0.2.1:40000");
    let first = connection(&mut b, Instant::ZERO, client);
    assert_eq!(
        syn(&mut b, Instant::from_secs(1), client),
        first,
        "mode 0 follows"
    );
    // Close it again, then remove its server: the next SYN must go elsewhere.
    let client2 = sa("192.0.2.1:40001");
    let s2 = connection(&mut b, Instant::ZERO, client2);
    b.apply(
        Instant::ZERO,
        &Command::DelServer(ServiceKey::tcp(sa(VIP)), s2),
    )
    .unwrap();
    let s3 = syn(&mut b, Instant::from_secs(1), client2);
    assert_ne!(s3, s2);
    assert_eq!(b.counters().nodest_reschedules, 1);
}

#[test]
fn quiescent_server_keeps_flows_gets_no_new_ones_and_reports_drained() {
    let mut b = two_servers_rr();
    let a = sa("192.0.2.1:40000");
    let c = sa("192.0.2.1:40001");
    let sa_ = syn(&mut b, Instant::ZERO, a);
    let sc = syn(&mut b, Instant::ZERO, c);
    assert_ne!(sa_, sc);
    set_weight(&mut b, &sa_.to_string(), 0);
    // Its open flow keeps working.
    let (v, out) = run(
        &mut b,
        Instant::ZERO,
        pkt::segment(a, sa(VIP), ACK, 1001, 2, b"x"),
    );
    assert!(matches!(v, Verdict::ToServer(_)));
    assert_eq!(pkt::dst_of(&out).unwrap(), sa_);
    // New connections avoid it.
    for port in 41000..41010 {
        assert_eq!(
            syn(&mut b, Instant::ZERO, sa(&std::format!("192.0.2.1:{port}"))),
            sc
        );
    }
    assert_eq!(b.poll_event(), None);
    // Its flow ends: RST → CLOSE → expiry → drained.
    run(
        &mut b,
        Instant::ZERO,
        pkt::segment(a, sa(VIP), RST, 1001, 2, b""),
    );
    b.handle_timeout(Instant::from_secs(20));
    let ev = b.poll_event();
    assert_eq!(
        ev,
        Some(Event::Drained {
            service: ServiceKey::tcp(sa(VIP)),
            server: sa_
        })
    );
}

#[test]
fn reused_port_on_quiescent_server_is_rescheduled_even_in_mode_zero() {
    let mut b = two_servers_rr();
    b.apply(Instant::ZERO, &Command::Set(Setting::ConnReuseMode(0)))
        .unwrap();
    let client = sa("192.0.2.1:40000");
    let first = connection(&mut b, Instant::ZERO, client);
    set_weight(&mut b, &first.to_string(), 0);
    let second = syn(&mut b, Instant::from_secs(1), client);
    assert_ne!(first, second);
    assert_eq!(b.counters().quiescent_reschedules, 1);
}

#[test]
fn removed_server_flow_gets_rst_or_drop() {
    let mut b = two_servers_rr();
    let client = sa("192.0.2.1:40000");
    let server = established(&mut b, Instant::ZERO, client);
    b.apply(
        Instant::ZERO,
        &Command::DelServer(ServiceKey::tcp(sa(VIP)), server),
    )
    .unwrap();
    let (v, out) = run(
        &mut b,
        Instant::ZERO,
        pkt::segment(client, sa(VIP), ACK, 1001, 2, b"more"),
    );
    let Verdict::Reply(_) = v else {
        panic!("expected a RST, got {v:?}")
    };
    let p = packet::parse(&out).unwrap();
    assert_eq!(p.tcp_flags & RST, RST);
    assert_eq!(p.dst, client);
    assert_eq!(p.src, sa(VIP));
    assert!(verify_checksums(&out));
    assert_eq!(b.counters().nodest_resets, 1);
    assert_eq!(b.conns().len(), 0);

    // Without expire_nodest_conn: dropped and counted, never forwarded.
    let mut b = two_servers_rr();
    b.apply(
        Instant::ZERO,
        &Command::Set(Setting::ExpireNodestConn(false)),
    )
    .unwrap();
    let server = syn(&mut b, Instant::ZERO, client);
    b.apply(
        Instant::ZERO,
        &Command::DelServer(ServiceKey::tcp(sa(VIP)), server),
    )
    .unwrap();
    let (v, _) = run(
        &mut b,
        Instant::ZERO,
        pkt::segment(client, sa(VIP), ACK, 1001, 2, b"more"),
    );
    assert_eq!(v, Verdict::Drop(DropReason::NoDest));
    assert_eq!(b.counters().drops(DropReason::NoDest), 1);
}

#[test]
fn no_server_left_answers_rst_and_icmp() {
    let mut b = balancer(1024, SchedulerKind::Wlc, &[]);
    let client = sa("192.0.2.1:40000");
    let (v, out) = run(
        &mut b,
        Instant::ZERO,
        pkt::segment(client, sa(VIP), SYN, 1, 0, b""),
    );
    assert!(matches!(v, Verdict::Reply(_)));
    assert_eq!(packet::parse(&out).unwrap().tcp_flags & RST, RST);
    let mut cfg = ServiceConfig::new(ServiceKey::udp(sa("10.0.0.100:53")));
    cfg.scheduler = SchedulerKind::Rr;
    b.apply(Instant::ZERO, &Command::AddService(cfg)).unwrap();
    let (v, out) = run(
        &mut b,
        Instant::ZERO,
        pkt::udp(client, sa("10.0.0.100:53"), b"q"),
    );
    assert!(matches!(v, Verdict::Reply(_)));
    let p = packet::parse(&out).unwrap();
    assert!(matches!(p.kind, Kind::IcmpError(_)));
    assert!(verify_checksums(&out));
    // A port of the VIP with no service is answered too, never passed (it would loop).
    let (v, _) = run(
        &mut b,
        Instant::ZERO,
        pkt::segment(client, sa("10.0.0.100:81"), SYN, 1, 0, b""),
    );
    assert!(matches!(v, Verdict::Reply(_)));
    // Other traffic passes untouched.
    let pkt = pkt::segment(client, sa("10.9.9.9:80"), SYN, 1, 0, b"");
    let (v, out) = run(&mut b, Instant::ZERO, pkt.clone());
    assert!(matches!(v, Verdict::Pass(_)));
    assert_eq!(out, pkt);
}

#[test]
fn persistence_keeps_a_client_on_one_server_until_the_template_expires() {
    let mut b = two_servers_rr();
    let mut cfg = ServiceConfig::new(ServiceKey::tcp(sa(VIP)));
    cfg.scheduler = SchedulerKind::Rr;
    cfg.persistence = Some(Persistence {
        timeout_secs: 300,
        prefix: 24,
    });
    b.apply(Instant::ZERO, &Command::EditService(cfg)).unwrap();
    let first = connection(&mut b, Instant::ZERO, sa("192.0.2.1:40000"));
    for port in 40001..40010 {
        // Same /24: same server, even across clients.
        let c = sa(&std::format!("192.0.2.{}:{port}", port - 39990));
        assert_eq!(connection(&mut b, Instant::from_secs(1), c), first);
    }
    // A reused port under a template is not rescheduled (IPVS), it stays with the template.
    assert_eq!(
        syn(&mut b, Instant::from_secs(2), sa("192.0.2.1:40000")),
        first
    );
    assert_eq!(b.counters().reuse_reschedules, 0);
    // Another network goes elsewhere (rr).
    let other = syn(&mut b, Instant::from_secs(2), sa("198.51.100.1:40000"));
    assert_ne!(other, first);
    // Once every connection is gone, the template lives 300 s after its last use.
    b.handle_timeout(Instant::from_secs(200));
    assert!(b.connections(Instant::from_secs(200)).any(|c| c.template));
    b.handle_timeout(Instant::from_secs(2000));
    assert_eq!(b.conns().len(), 0);
    let (_, s) = b.director().servers(0).iter().next().unwrap();
    assert_eq!(s.persistent, 0);
}

#[test]
fn one_packet_scheduling_balances_each_datagram() {
    let mut b = balancer(1024, SchedulerKind::Rr, &[]);
    let key = ServiceKey::udp(sa("10.0.0.100:53"));
    let mut cfg = ServiceConfig::new(key);
    cfg.scheduler = SchedulerKind::Rr;
    cfg.one_packet = true;
    b.apply(Instant::ZERO, &Command::AddService(cfg)).unwrap();
    add_server(&mut b, key, "10.1.0.1:53", 1);
    add_server(&mut b, key, "10.1.0.2:53", 1);
    let client = sa("192.0.2.1:5353");
    let mut seen = Vec::new();
    for _ in 0..4 {
        let (v, out) = run(
            &mut b,
            Instant::ZERO,
            pkt::udp(client, sa("10.0.0.100:53"), b"q"),
        );
        assert!(matches!(v, Verdict::ToServer(_)));
        assert!(verify_checksums(&out));
        seen.push(pkt::dst_of(&out).unwrap());
    }
    assert_ne!(seen[0], seen[1]);
    assert_eq!(seen[0], seen[2]);
    assert_eq!(b.conns().len(), 0, "one-packet entries are not kept");
}

#[test]
fn udp_flow_and_its_reply() {
    let mut b = balancer(1024, SchedulerKind::Rr, &[]);
    let key = ServiceKey::udp(sa("10.0.0.100:53"));
    let mut cfg = ServiceConfig::new(key);
    cfg.scheduler = SchedulerKind::Rr;
    b.apply(Instant::ZERO, &Command::AddService(cfg)).unwrap();
    add_server(&mut b, key, "10.1.0.1:5353", 1);
    let client = sa("192.0.2.1:5353");
    let (v, out) = run(
        &mut b,
        Instant::ZERO,
        pkt::udp(client, sa("10.0.0.100:53"), b"q"),
    );
    assert!(matches!(v, Verdict::ToServer(_)));
    assert_eq!(pkt::dst_of(&out).unwrap(), sa("10.1.0.1:5353"));
    let (v, out) = run(
        &mut b,
        Instant::ZERO,
        pkt::udp(sa("10.1.0.1:5353"), client, b"a"),
    );
    assert!(matches!(v, Verdict::ToClient(_)));
    assert_eq!(pkt::src_of(&out).unwrap(), sa("10.0.0.100:53"));
    assert!(verify_checksums(&out));
    assert_eq!(state_of(&b, client), Some("UDP"));
    b.handle_timeout(Instant::from_secs(299));
    assert_eq!(b.conns().len(), 1);
    b.handle_timeout(Instant::from_secs(302));
    assert_eq!(b.conns().len(), 0);
}

#[test]
fn ipv6_nat() {
    let mut b = balancer(1024, SchedulerKind::Rr, &[]);
    let vip = sa("[2001:db8::100]:80");
    let key = ServiceKey::tcp(vip);
    let mut cfg = ServiceConfig::new(key);
    cfg.scheduler = SchedulerKind::Rr;
    b.apply(Instant::ZERO, &Command::AddService(cfg)).unwrap();
    add_server(&mut b, key, "[2001:db8:1::1]:8080", 1);
    let client = sa("[2001:db8:2::7]:40000");
    let (v, out) = run(
        &mut b,
        Instant::ZERO,
        pkt::segment(client, vip, SYN, 1, 0, b""),
    );
    assert!(matches!(v, Verdict::ToServer(_)));
    assert_eq!(pkt::dst_of(&out).unwrap(), sa("[2001:db8:1::1]:8080"));
    assert!(verify_checksums(&out));
    let (v, out) = run(
        &mut b,
        Instant::ZERO,
        pkt::segment(sa("[2001:db8:1::1]:8080"), client, SYN | ACK, 1, 2, b""),
    );
    assert!(matches!(v, Verdict::ToClient(_)));
    assert_eq!(pkt::src_of(&out).unwrap(), vip);
    assert!(verify_checksums(&out));
}

#[test]
fn icmp_errors_about_tracked_flows_are_rewritten() {
    let mut b = balancer(1024, SchedulerKind::Rr, &[("10.1.0.1:8080", 1)]);
    let client = sa("192.0.2.1:40000");
    let server = syn(&mut b, Instant::ZERO, client);
    // From a router on the server side, about client → RIP.
    let quoted = pkt::segment(client, server, ACK, 1, 1, b"");
    let err = pkt::too_big("10.1.0.254".parse().unwrap(), &quoted, 28, 1500);
    let (v, out) = run(&mut b, Instant::ZERO, err);
    assert!(matches!(v, Verdict::ToClient(_)));
    let p = packet::parse(&out).unwrap();
    let Kind::IcmpError(ie) = p.kind else {
        panic!()
    };
    assert_eq!(ie.dst, sa(VIP));
    assert!(verify_checksums(&out));
    // From the client side, about VIP → client.
    let quoted = pkt::segment(sa(VIP), client, ACK, 1, 1, b"");
    let err = pkt::too_big(client.ip(), &quoted, 28, 1500);
    let (v, out) = run(&mut b, Instant::ZERO, err);
    assert!(matches!(v, Verdict::ToServer(_)));
    let p = packet::parse(&out).unwrap();
    let Kind::IcmpError(ie) = p.kind else {
        panic!()
    };
    assert_eq!(ie.src, server);
    assert_eq!(p.dst.ip(), server.ip());
    assert!(verify_checksums(&out));
}

#[test]
fn echo_to_a_vip_is_answered() {
    let mut b = balancer(64, SchedulerKind::Rr, &[("10.1.0.1:80", 1)]);
    let ping = pkt::echo_request("192.0.2.1".parse().unwrap(), sa(VIP).ip(), 1, 1, b"abcd");
    let (v, out) = run(&mut b, Instant::ZERO, ping);
    assert!(matches!(v, Verdict::Reply(_)));
    assert!(verify_checksums(&out));
    assert_eq!(packet::parse(&out).unwrap().src.ip(), sa(VIP).ip());
}

#[test]
fn malformed_packets_are_counted_drops() {
    let mut b = balancer(64, SchedulerKind::Rr, &[("10.1.0.1:80", 1)]);
    let good = pkt::segment(sa("192.0.2.1:40000"), sa(VIP), SYN, 1, 0, b"");
    let (v, _) = run(&mut b, Instant::ZERO, good[..10].to_vec());
    assert_eq!(v, Verdict::Drop(DropReason::Malformed));
    let mut bad = good.clone();
    bad[10] ^= 0xff; // IPv4 header checksum
    let (v, _) = run(&mut b, Instant::ZERO, bad);
    assert_eq!(v, Verdict::Drop(DropReason::BadIpChecksum));
    let mut frag = good;
    pkt::set_fragment(&mut frag, 1, false); // a TCP fragment at offset 8 (RFC 1858)
    let (v, _) = run(&mut b, Instant::ZERO, frag.clone());
    assert_eq!(v, Verdict::Drop(DropReason::Fragment));
    // A fragment for somebody else passes on untouched, as a router would.
    let mut other = frag;
    other[16..20].copy_from_slice(&[10, 9, 9, 9]);
    pkt::refresh_ipv4_checksum(&mut other);
    let (v, out) = run(&mut b, Instant::ZERO, other.clone());
    assert!(matches!(v, Verdict::Pass(_)));
    assert_eq!(out, other);
    assert_eq!(b.counters().drops(DropReason::Malformed), 1);
    assert_eq!(b.counters().drops(DropReason::BadIpChecksum), 1);
    assert_eq!(b.counters().drops(DropReason::Fragment), 1);
}

#[test]
fn table_full_evicts_time_wait_but_never_established() {
    let cap = 16;
    let mut b = balancer(cap, SchedulerKind::Rr, &[("10.1.0.1:80", 1)]);
    let capacity = b.conns().capacity();
    // Fill with established flows.
    for i in 0..capacity {
        let c = sa(&std::format!("192.0.2.1:{}", 30000 + i));
        established(&mut b, Instant::ZERO, c);
    }
    let (v, _) = run(
        &mut b,
        Instant::ZERO,
        pkt::segment(sa("192.0.2.9:1"), sa(VIP), SYN, 1, 0, b""),
    );
    assert_eq!(v, Verdict::Drop(DropReason::TableFull));
    assert_eq!(b.counters().syn_drops, 1);
    // Close one of them: its TIME_WAIT entry may make room.
    let c = sa("192.0.2.1:30000");
    let s = sa("10.1.0.1:80");
    run(
        &mut b,
        Instant::ZERO,
        pkt::segment(s, c, FIN | ACK, 1, 1001, b""),
    );
    run(
        &mut b,
        Instant::ZERO,
        pkt::segment(c, sa(VIP), FIN | ACK, 1001, 2, b""),
    );
    run(&mut b, Instant::ZERO, pkt::segment(s, c, ACK, 2, 1002, b""));
    assert_eq!(state_of(&b, c), Some("TIME_WAIT"));
    syn(&mut b, Instant::from_secs(1), sa("192.0.2.9:1"));
    assert_eq!(b.counters().evictions, 1);
    assert_eq!(b.conns().len(), capacity);
    assert_eq!(refs(&b) as usize, capacity);
}

#[test]
fn burst_equals_one_at_a_time() {
    let servers = [("10.1.0.1:80", 2), ("10.1.0.2:80", 1)];
    let mut one = balancer(256, SchedulerKind::Wrr, &servers);
    let mut many = balancer(256, SchedulerKind::Wrr, &servers);
    let mut pkts = Vec::new();
    for i in 0..40u16 {
        let c = sa(&std::format!("192.0.2.{}:{}", i % 7, 40000 + i % 5));
        let flags = [SYN, ACK, FIN | ACK, RST][usize::from(i % 4)];
        pkts.push(pkt::segment(c, sa(VIP), flags, 1, 1, b"x"));
        pkts.push(pkt::segment(sa("10.1.0.1:80"), c, ACK, 1, 1, b"y"));
    }
    pkts.push(b"garbage".to_vec());
    let mut expect = Vec::new();
    for p in &pkts {
        expect.push(run(&mut one, Instant::ZERO, p.clone()));
    }
    let mut bufs: Vec<Vec<u8>> = pkts
        .iter()
        .map(|p| {
            let mut b = p.clone();
            b.resize(2048, 0);
            b
        })
        .collect();
    let lens: Vec<usize> = pkts.iter().map(|p| p.len()).collect();
    let mut batch: Vec<Packet<'_>> = bufs
        .iter_mut()
        .zip(&lens)
        .map(|(b, &len)| Packet {
            buf: b,
            start: 0,
            len,
            csum_partial: false,
        })
        .collect();
    let mut verdicts = std::vec![Verdict::default(); batch.len()];
    many.process_burst(Instant::ZERO, &mut batch, &mut verdicts);
    for (i, (v, out)) in expect.iter().enumerate() {
        assert_eq!(verdicts[i], *v, "packet {i}");
        let n = match v {
            Verdict::Reply(Transmit { len, .. }) => *len,
            _ => lens[i],
        };
        assert_eq!(&bufs[i][..n], &out[..], "packet {i}");
    }
    assert_eq!(one.counters(), many.counters());
}

/// The seed scenario (issue 3, item 9), on a virtual clock: one client with a 1,000-port range
/// opens 30,000 short-lived connections to a wrr service of three servers, 100 a second, so
/// every port comes back every 10 s while its entry is still in TIME_WAIT (120 s). Mid-run one
/// server is set to weight 0 and later another is deleted.
#[test]
fn seed_scenario_simulation() {
    let servers = [("10.1.0.1:80", 3), ("10.1.0.2:80", 2), ("10.1.0.3:80", 1)];
    let mut b = balancer(8192, SchedulerKind::Wrr, &servers);
    let (a, q, r) = (sa(servers[0].0), sa(servers[1].0), sa(servers[2].0));
    let client_ip = "192.0.2.10";
    // Long-lived flows opened first: two on each server.
    let mut long = Vec::new();
    for i in 0..6u16 {
        let c = sa(&std::format!("{client_ip}:{}", 50000 + i));
        let s = established(&mut b, Instant::ZERO, c);
        long.push((c, s));
    }
    // Picks per phase (before the weight change, between, after the delete) and server.
    let mut count = [[0u64; 3]; 3];
    let idx = |s: SocketAddr| [a, q, r].iter().position(|x| *x == s).unwrap();
    let phase = |n: u32| (n / 10_000) as usize;
    let total = 30_000u32;
    let mut now = Instant::from_secs(1);
    for n in 0..total {
        now += Duration::from_millis(10);
        if n % 100 == 0 {
            b.handle_timeout(now);
        }
        if n == 10_000 {
            set_weight(&mut b, "10.1.0.2:80", 0);
        }
        if n == 20_000 {
            b.apply(now, &Command::DelServer(ServiceKey::tcp(sa(VIP)), r))
                .unwrap();
        }
        let client = sa(&std::format!("{client_ip}:{}", 40000 + n % 1000));
        let server = connection(&mut b, now, client);
        if n % 97 == 0 {
            // A retransmitted SYN of the next connection stays with its server.
            let c = sa(&std::format!("{client_ip}:{}", 60000 + n / 97));
            let s = syn(&mut b, now, c);
            count[phase(n)][idx(s)] += 1;
            assert_eq!(syn(&mut b, now + Duration::from_secs(1), c), s);
            run(&mut b, now, pkt::segment(c, sa(VIP), RST, 1001, 0, b""));
        }
        if n >= 10_000 {
            assert_ne!(server, q, "connection {n} went to the quiescent server");
        }
        if n >= 20_000 {
            assert_ne!(server, r, "connection {n} went to the removed server");
        }
        count[phase(n)][idx(server)] += 1;
        if n % 1000 == 999 {
            // Long-lived flows of remaining servers never move; the quiescent one's keep
            // working too.
            for (c, s) in &long {
                if *s == r && n >= 20_000 {
                    continue;
                }
                let (v, out) = run(
                    &mut b,
                    now,
                    pkt::segment(*c, sa(VIP), ACK, 1001, 2, b"ping"),
                );
                assert!(matches!(v, Verdict::ToServer(_)));
                assert_eq!(pkt::dst_of(&out).unwrap(), *s);
            }
        }
    }
    let c = b.counters();
    assert_eq!(c.syn_drops, 0, "no SYN dropped");
    assert_eq!(c.drops.iter().sum::<u64>(), 0, "nothing dropped");
    // Every connection after the first 1,000 reused a port whose entry was in TIME_WAIT and was
    // rescheduled (those whose old server was quiescent or removed count under those reasons).
    let rescheduled = c.reuse_reschedules + c.quiescent_reschedules + c.nodest_reschedules;
    assert!(rescheduled >= u64::from(total - 1000), "{c:?}");
    assert!(
        c.reuse_reschedules >= u64::from(total - 1000) * 9 / 10,
        "{c:?}"
    );
    // wrr's split over whole periods equals the weights: 3:2:1 in the first phase, 3:0:1 in
    // the second, 3:0:0 in the third. Phases are cut mid-period, so allow one period each end.
    let weights = [[3u64, 2, 1], [3, 0, 1], [3, 0, 0]];
    for (ph, w) in weights.iter().enumerate() {
        let picks: u64 = count[ph].iter().sum();
        let sum: u64 = w.iter().sum();
        for i in 0..3 {
            let want = picks * w[i] / sum;
            let diff = count[ph][i].abs_diff(want);
            assert!(
                diff <= 2 * sum,
                "phase {ph} server {i}: {} vs {want}",
                count[ph][i]
            );
        }
    }
    // The quiescent server's long flows finish normally.
    for (c, s) in &long {
        if *s == q {
            run(
                &mut b,
                now,
                pkt::segment(*c, sa(VIP), FIN | ACK, 1001, 2, b""),
            );
            let (v, _) = run(&mut b, now, pkt::segment(*s, *c, FIN | ACK, 2, 1002, b""));
            assert!(matches!(v, Verdict::ToClient(_)));
        }
    }
    // No entry leaks: once every timeout has passed the table is empty and no counter is left.
    b.handle_timeout(now + Duration::from_secs(1000));
    b.handle_timeout(now + Duration::from_secs(2000));
    assert_eq!(b.conns().len(), 0);
    assert_eq!(refs(&b), 0);
}

#[test]
fn deleted_service_flows_are_reset_not_passed() {
    let mut b = balancer(1024, SchedulerKind::Rr, &[("10.1.0.1:80", 1)]);
    let client = sa("192.0.2.1:40000");
    established(&mut b, Instant::ZERO, client);
    b.apply(
        Instant::ZERO,
        &Command::DelService(ServiceKey::tcp(sa(VIP))),
    )
    .unwrap();
    let (v, out) = run(
        &mut b,
        Instant::ZERO,
        pkt::segment(client, sa(VIP), ACK, 1001, 2, b"more"),
    );
    assert!(matches!(v, Verdict::Reply(_)), "{v:?}");
    assert_eq!(packet::parse(&out).unwrap().tcp_flags & RST, RST);
    assert_eq!(b.conns().len(), 0);
    // With the last reference gone the slot is free and the address is no longer ours.
    let (v, _) = run(
        &mut b,
        Instant::ZERO,
        pkt::segment(client, sa(VIP), ACK, 1001, 2, b"more"),
    );
    assert!(matches!(v, Verdict::Pass(_)));
}

#[test]
fn secure_tcp_switches_on_at_the_fill_threshold_and_uses_the_dos_table() {
    let mut b = balancer(64, SchedulerKind::Rr, &[("10.1.0.1:80", 1)]);
    let cap = b.conns().capacity();
    let mut s = *b.settings();
    s.secure_tcp = DefenceMode::Auto;
    s.defence_fill_percent = 50;
    b.set_settings(s);
    assert!(!b.secure_tcp_active());
    for i in 0..cap / 2 {
        syn(
            &mut b,
            Instant::ZERO,
            // One /24 each, so the per-prefix share of half-open entries does not bind.
            sa(&std::format!("198.18.{i}.2:{}", 1000 + i)),
        );
    }
    b.handle_timeout(Instant::from_secs(1));
    assert!(
        b.secure_tcp_active(),
        "mode 1 switches to 2 above the threshold"
    );
    assert_eq!(b.settings().secure_tcp, DefenceMode::AutoActive);
    // Under the DoS table the client's ACK alone does not establish a NAT connection: the
    // server's SYN+ACK moves SYN_RECV to SYNACK, and only an OUTPUT ack establishes.
    let client = sa("192.0.2.1:40000");
    let server = syn(&mut b, Instant::from_secs(1), client);
    assert_eq!(state_of(&b, client), Some("SYN_RECV"));
    run(
        &mut b,
        Instant::from_secs(1),
        pkt::segment(client, sa(VIP), ACK, 1001, 2, b""),
    );
    assert_eq!(state_of(&b, client), Some("SYN_RECV"));
    run(
        &mut b,
        Instant::from_secs(1),
        pkt::segment(server, client, SYN | ACK, 1, 1001, b""),
    );
    assert_eq!(state_of(&b, client), Some("SYNACK"));
    run(
        &mut b,
        Instant::from_secs(1),
        pkt::segment(client, sa(VIP), ACK, 1001, 2, b""),
    );
    assert_eq!(state_of(&b, client), Some("SYNACK"));
    run(
        &mut b,
        Instant::from_secs(1),
        pkt::segment(server, client, ACK, 2, 1001, b"x"),
    );
    assert_eq!(state_of(&b, client), Some("ESTABLISHED"));
    // Half-open entries time out (SYN_RECV 60 s): the fill drops and the defence switches off.
    b.handle_timeout(Instant::from_secs(70));
    assert!(!b.secure_tcp_active());
    assert_eq!(b.settings().secure_tcp, DefenceMode::Auto);
}

#[test]
fn drop_entry_removes_half_open_entries_but_not_established_ones() {
    let mut b = balancer(64, SchedulerKind::Rr, &[("10.1.0.1:80", 1)]);
    let cap = b.conns().capacity();
    let mut s = *b.settings();
    s.drop_entry = DefenceMode::On;
    b.set_settings(s);
    let est = sa("192.0.2.1:40000");
    established(&mut b, Instant::ZERO, est);
    for i in 0..cap / 2 {
        syn(
            &mut b,
            Instant::ZERO,
            // One /24 each, so the per-prefix share of half-open entries does not bind.
            sa(&std::format!("198.18.{i}.2:{}", 1000 + i)),
        );
    }
    // One pass covers 1/32 of the table; 32 passes cover it all.
    for sec in 1..=40 {
        b.handle_timeout(Instant::from_secs(sec));
    }
    assert_eq!(b.conns().len(), 1, "only the established flow is left");
    assert_eq!(state_of(&b, est), Some("ESTABLISHED"));
    assert_eq!(b.counters().defence_drops as usize, cap / 2);
    assert_eq!(refs(&b), 1);
}

#[test]
fn settings_and_timeouts_through_commands() {
    let mut b = balancer(64, SchedulerKind::Rr, &[("10.1.0.1:80", 1)]);
    let cmd = crate::ipvsadm::parse_line("--set 100 20 30")
        .unwrap()
        .unwrap();
    b.apply(Instant::ZERO, &cmd).unwrap();
    let t = b.settings().timeouts.get();
    assert_eq!((t.tcp, t.tcp_fin, t.udp), (100, 20, 30));
    let client = sa("192.0.2.1:40000");
    established(&mut b, Instant::ZERO, client);
    b.handle_timeout(Instant::from_secs(99));
    assert_eq!(b.conns().len(), 1);
    b.handle_timeout(Instant::from_secs(101));
    assert_eq!(b.conns().len(), 0, "ESTABLISHED now idles out after 100 s");
    let cmd = crate::ipvsadm::parse_line("--conn-reuse-mode 0")
        .unwrap()
        .unwrap();
    b.apply(Instant::ZERO, &cmd).unwrap();
    assert_eq!(b.settings().conn_reuse_mode, ConnReuseMode::OFF);
    // Direct routing is refused with a clear message.
    let cmd = crate::ipvsadm::parse_line("-a -t 10.0.0.100:80 -r 10.1.0.9:80 -g")
        .unwrap()
        .unwrap();
    let err = b.apply(Instant::ZERO, &cmd).unwrap_err();
    assert!(std::format!("{err}").contains("direct routing (-g)"));
}

#[test]
fn drop_entry_rate_rule_drops_every_ith_idle_entry_with_i_packets() {
    let mut b = balancer(256, SchedulerKind::Rr, &[]);
    let key = ServiceKey::udp(sa("10.0.0.100:53"));
    let mut cfg = ServiceConfig::new(key);
    cfg.scheduler = SchedulerKind::Rr;
    b.apply(Instant::ZERO, &Command::AddService(cfg)).unwrap();
    add_server(&mut b, key, "10.1.0.1:53", 1);
    // 8 flows with one datagram each, 8 with two, 4 sent just before the scan (not idle).
    for i in 0..8u16 {
        let one = sa(&std::format!("192.0.2.1:{}", 1000 + i));
        run(
            &mut b,
            Instant::ZERO,
            pkt::udp(one, sa("10.0.0.100:53"), b"q"),
        );
        let two = sa(&std::format!("192.0.2.2:{}", 1000 + i));
        for _ in 0..2 {
            run(
                &mut b,
                Instant::ZERO,
                pkt::udp(two, sa("10.0.0.100:53"), b"q"),
            );
        }
    }
    for i in 0..4u16 {
        let fresh = sa(&std::format!("192.0.2.3:{}", 1000 + i));
        run(
            &mut b,
            Instant::from_secs(100),
            pkt::udp(fresh, sa("10.0.0.100:53"), b"q"),
        );
    }
    let mut s = *b.settings();
    s.drop_entry = DefenceMode::On;
    b.set_settings(s);
    // 32 one-second passes scan the whole table once, from t = 101 s.
    for sec in 101..=132 {
        b.handle_timeout(Instant::from_secs(sec));
    }
    let left = |prefix: &str| {
        b.connections(Instant::from_secs(132))
            .filter(|c| c.client.to_string().starts_with(prefix))
            .count()
    };
    assert_eq!(left("192.0.2.1:"), 0, "in_pkts 1: every candidate dropped");
    assert_eq!(
        left("192.0.2.2:"),
        4,
        "in_pkts 2: every second candidate dropped"
    );
    assert_eq!(left("192.0.2.3:"), 4, "idle less than 60 s: kept");
    assert_eq!(b.counters().defence_drops, 12);
}

/// An IPv6 VIP or server configured with a flow label or scope id (possible through the API,
/// not through ipvsadm's grammar) still matches packets, which carry neither — on the fast path
/// and on the general path alike (found by review: the general path compared whole
/// `SocketAddr`s).
#[test]
fn ipv6_flow_label_and_scope_id_in_the_configuration_do_not_matter() {
    use core::net::{Ipv6Addr, SocketAddrV6};
    let v6 = |ip: &str, port, flowinfo, scope| {
        SocketAddr::V6(SocketAddrV6::new(
            ip.parse::<Ipv6Addr>().unwrap(),
            port,
            flowinfo,
            scope,
        ))
    };
    let configs = [
        (
            v6("2001:db8::100", 80, 0, 5),
            v6("2001:db8:1::1", 8080, 0, 0),
        ),
        (
            v6("2001:db8::100", 80, 9, 0),
            v6("2001:db8:1::1", 8080, 0, 0),
        ),
        (
            v6("2001:db8::100", 80, 0, 0),
            v6("2001:db8:1::1", 8080, 0, 7),
        ),
        (
            v6("2001:db8::100", 80, 3, 2),
            v6("2001:db8:1::1", 8080, 4, 6),
        ),
    ];
    for (vip, server) in configs {
        let make = || {
            let mut b = empty_balancer(64, Settings::default());
            let key = ServiceKey::tcp(vip);
            b.apply(Instant::ZERO, &Command::AddService(ServiceConfig::new(key)))
                .unwrap();
            let s = ServerConfig::new(server, ForwardMethod::Masq);
            b.apply(Instant::ZERO, &Command::AddServer(key, s)).unwrap();
            b
        };
        let (mut fast, mut general) = (make(), make());
        let client = sa("[2001:db8:c::1]:40000");
        let plain_vip = SocketAddr::new(vip.ip(), vip.port());
        let plain_server = SocketAddr::new(server.ip(), server.port());
        let packets = [
            // (packet, to the server: else to the client)
            (pkt::segment(client, plain_vip, SYN, 1, 0, b""), true),
            (
                pkt::segment(plain_server, client, SYN | ACK, 9, 2, b""),
                false,
            ),
            (pkt::segment(client, plain_vip, ACK, 2, 10, b""), true),
            (pkt::segment(plain_server, client, ACK, 10, 2, b"hi"), false),
            (pkt::segment(client, plain_vip, ACK, 2, 12, b"ok"), true),
        ];
        for (i, (pkt, to_server)) in packets.iter().enumerate() {
            let (mut a, mut c) = (pkt.clone(), pkt.clone());
            a.resize(2048, 0);
            c.resize(2048, 0);
            let va = fast.process(Instant::from_secs(1), &mut a, pkt.len());
            let vc = general.process_general(Instant::from_secs(1), &mut c, pkt.len());
            assert_eq!(va, vc, "{vip} / {server}, packet {i}");
            let want = if *to_server {
                Verdict::ToServer(Transmit {
                    start: 0,
                    dst: server.ip(),
                    len: pkt.len(),
                })
            } else {
                Verdict::ToClient(Transmit {
                    start: 0,
                    dst: client.ip(),
                    len: pkt.len(),
                })
            };
            assert_eq!(va, want, "{vip} / {server}, packet {i}");
            assert_eq!(a, c, "{vip} / {server}, packet {i}: bytes");
        }
        assert_eq!(fast.counters(), general.counters());
    }
}
