//! ICMP errors checked against their outer header (issue "Hostile traffic: the balancer must not
//! be a reflector"): an error about a tracked flow is translated only when its outer destination
//! is the quoted packet's source; transit errors the balancer does not own pass, whatever their
//! quote.

use core::net::IpAddr;

use std::vec::Vec;

use super::*;
use crate::checksum::verify_checksums;
use crate::config::{ForwardMethod, SchedulerKind, ServerConfig, ServiceConfig, ServiceKey};
use crate::ipvsadm::Command;
use crate::packet::{self, Kind};
use crate::tcp::flags::{ACK, SYN};
use crate::verdict::{DropReason, Transmit, Verdict};
use lb_testkit::pkt;

use super::test_support::{empty_balancer, sa};

const VIP4: &str = "10.0.0.100:80";
const RIP4: &str = "10.1.0.1:8080";
const CLIENT4: &str = "192.0.2.1:40000";
const VIP6: &str = "[2001:db8::100]:53";
const RIP6: &str = "[2001:db8:1::1]:5353";
const CLIENT6: &str = "[2001:db8:9::7]:41000";

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// A TCP service at [`VIP4`] → [`RIP4`] and a UDP service at [`VIP6`] → [`RIP6`], each with one
/// live flow from its client.
fn balancer() -> Balancer<'static> {
    let mut b = empty_balancer(64, Settings::default());
    for (key, rip) in [
        (ServiceKey::tcp(sa(VIP4)), RIP4),
        (ServiceKey::udp(sa(VIP6)), RIP6),
    ] {
        let mut cfg = ServiceConfig::new(key);
        cfg.scheduler = SchedulerKind::Rr;
        b.apply(Instant::ZERO, &Command::AddService(cfg)).unwrap();
        let s = ServerConfig::new(sa(rip), ForwardMethod::Masq);
        b.apply(Instant::ZERO, &Command::AddServer(key, s)).unwrap();
    }
    let (v, _) = run(
        &mut b,
        pkt::segment(sa(CLIENT4), sa(VIP4), SYN, 1000, 0, b""),
    );
    assert!(matches!(v, Verdict::ToServer(_)));
    let (v, _) = run(&mut b, pkt::udp(sa(CLIENT6), sa(VIP6), b"query"));
    assert!(matches!(v, Verdict::ToServer(_)));
    b
}

/// Runs one packet; returns the verdict and the packet as it left.
fn run(b: &mut Balancer<'_>, pkt: Vec<u8>) -> (Verdict, Vec<u8>) {
    let len = pkt.len();
    let mut buf = pkt;
    buf.resize(2048, 0);
    let v = b.process(Instant::ZERO, &mut buf, len);
    let n = match v {
        Verdict::Reply(Transmit { len, .. }) => len,
        _ => len,
    };
    buf.truncate(n);
    (v, buf)
}

/// The packets the balancer forwarded to the real server (client → RIP) and sent to the
/// client (VIP → client), for each family.
fn quotes() -> [(Vec<u8>, Vec<u8>); 2] {
    [
        (
            pkt::segment(sa(CLIENT4), sa(RIP4), ACK, 1000, 1, b""),
            pkt::segment(sa(VIP4), sa(CLIENT4), ACK, 1, 1001, b""),
        ),
        (
            pkt::udp(sa(CLIENT6), sa(RIP6), b"query"),
            pkt::udp(sa(VIP6), sa(CLIENT6), b"answer"),
        ),
    ]
}

/// An ICMP error of the family of `quoted` from `from` to `to`: destination (port)
/// unreachable.
fn unreach(from: IpAddr, to: IpAddr, quoted: &[u8]) -> Vec<u8> {
    let ty = if from.is_ipv4() { 3 } else { 1 };
    pkt::icmp(from, to, ty, 3, quoted)
}

#[test]
fn error_from_a_third_host_to_elsewhere_is_a_mismatch() {
    let mut b = balancer();
    for ((to_server, _), (third, elsewhere)) in quotes().into_iter().zip([
        ("203.0.113.9", "198.51.100.77"),
        ("2001:db8:7::9", "2001:db8:8::77"),
    ]) {
        // About client → RIP, but addressed neither to the client: not translated, not
        // reflected toward the outer destination.
        for to in [ip(elsewhere), pkt::dst_of(&to_server).unwrap().ip()] {
            let before = b.counters().drops(DropReason::IcmpMismatch);
            let (v, _) = run(&mut b, unreach(ip(third), to, &to_server));
            assert_eq!(v, Verdict::Drop(DropReason::IcmpMismatch), "to {to}");
            assert_eq!(b.counters().drops(DropReason::IcmpMismatch), before + 1);
        }
        // The same with "fragmentation needed" / "packet too big".
        let (ty, code) = if third.contains(':') { (2, 0) } else { (3, 4) };
        let rest = [0, 0, 5, 0];
        let err = pkt::icmp_rest(ip(third), ip(elsewhere), ty, code, rest, &to_server);
        let (v, _) = run(&mut b, err);
        assert_eq!(v, Verdict::Drop(DropReason::IcmpMismatch));
    }
}

#[test]
fn client_side_error_to_a_non_vip_is_not_forwarded() {
    let mut b = balancer();
    for ((_, to_client), (client, rip, other)) in quotes().into_iter().zip([
        (CLIENT4, RIP4, "198.51.100.77"),
        (CLIENT6, RIP6, "2001:db8:8::77"),
    ]) {
        let client = sa(client).ip();
        // About VIP → client, but sent to the real server itself or to a third address.
        for to in [sa(rip).ip(), ip(other)] {
            let (v, _) = run(&mut b, unreach(client, to, &to_client));
            assert_eq!(v, Verdict::Drop(DropReason::IcmpMismatch), "to {to}");
        }
    }
    assert_eq!(b.counters().drops(DropReason::IcmpMismatch), 4);
}

#[test]
fn legitimate_errors_are_still_translated() {
    let mut b = balancer();
    for ((to_server, to_client), (vip, rip, client, router)) in quotes().into_iter().zip([
        (VIP4, RIP4, CLIENT4, "10.1.0.254"),
        (VIP6, RIP6, CLIENT6, "2001:db8:1::fe"),
    ]) {
        let (vip, rip, client) = (sa(vip), sa(rip), sa(client));
        // The real server's port unreachable, and a router's fragmentation needed, to the
        // client: from the VIP, quoting client → VIP.
        for err in [
            pkt::icmp_error(rip.ip(), &to_server, 200),
            pkt::too_big(ip(router), &to_server, 200, 1280),
        ] {
            assert!(pkt::checksums_ok(&err));
            let (v, out) = run(&mut b, err);
            assert!(matches!(v, Verdict::ToClient(_)), "{v:?}");
            let p = packet::parse(&out).unwrap();
            let Kind::IcmpError(ie) = p.kind else {
                panic!("{p:?}")
            };
            assert_eq!((p.src.ip(), p.dst.ip()), (vip.ip(), client.ip()));
            assert_eq!(v.transmit().unwrap().dst, client.ip());
            assert_eq!((ie.src, ie.dst), (client, vip));
            assert!(verify_checksums(&out) && pkt::checksums_ok(&out));
        }
        // The client's error to the VIP, about VIP → client: to the real server, quoting
        // RIP → client.
        let err = pkt::icmp_error(client.ip(), &to_client, 200);
        assert_eq!(pkt::dst_of(&err).unwrap().ip(), vip.ip());
        let (v, out) = run(&mut b, err);
        assert!(matches!(v, Verdict::ToServer(_)), "{v:?}");
        let p = packet::parse(&out).unwrap();
        let Kind::IcmpError(ie) = p.kind else {
            panic!("{p:?}")
        };
        assert_eq!((p.src.ip(), p.dst.ip()), (client.ip(), rip.ip()));
        assert_eq!((ie.src, ie.dst), (rip, client));
        assert!(verify_checksums(&out) && pkt::checksums_ok(&out));
    }
    assert_eq!(b.counters().drops(DropReason::IcmpMismatch), 0);
}

#[test]
fn transit_errors_pass_whatever_their_quote() {
    let mut b = balancer();
    let quoted4 = pkt::segment(sa("198.51.100.1:80"), sa("192.0.2.50:5000"), ACK, 1, 1, b"");
    let quoted6 = pkt::udp(sa("[2001:db8:5::1]:53"), sa("[2001:db8:6::2]:999"), b"x");
    let cases = [
        // A short quote: 7 bytes of TCP header (ICMPv4), 7 of UDP (ICMPv6).
        pkt::icmp(ip("203.0.113.9"), ip("192.0.2.50"), 11, 0, &quoted4[..27]),
        pkt::icmp(
            ip("2001:db8:7::9"),
            ip("2001:db8:6::2"),
            3,
            0,
            &quoted6[..47],
        ),
        // No quote at all, and a quote of the other family.
        pkt::icmp(ip("203.0.113.9"), ip("192.0.2.50"), 3, 1, &[]),
        pkt::icmp(ip("203.0.113.9"), ip("192.0.2.50"), 3, 3, &quoted6),
        // A whole quote of an untracked flow.
        pkt::icmp(ip("203.0.113.9"), ip("192.0.2.50"), 3, 3, &quoted4),
    ];
    for err in cases {
        let (v, out) = run(&mut b, err.clone());
        assert!(matches!(v, Verdict::Pass(_)), "{v:?} for {err:02x?}");
        assert_eq!(out, err);
    }
    assert_eq!(b.counters().passed, 5);
    assert_eq!(b.counters().drops.iter().sum::<u64>(), 0);
    // Malformed ICMP addressed to a VIP is still a counted drop.
    let (v, _) = run(
        &mut b,
        pkt::icmp(ip("203.0.113.9"), sa(VIP4).ip(), 11, 0, &quoted4[..27]),
    );
    assert_eq!(v, Verdict::Drop(DropReason::Malformed));
    let (v, _) = run(
        &mut b,
        pkt::icmp(ip("2001:db8:7::9"), sa(VIP6).ip(), 1, 0, &quoted6[..47]),
    );
    assert_eq!(v, Verdict::Drop(DropReason::Malformed));
}
