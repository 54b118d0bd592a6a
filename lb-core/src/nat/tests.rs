//! Unit tests and property tests of the rewrites and the replies.

use core::net::{IpAddr, SocketAddr};

use super::*;
use crate::checksum;
use crate::checksum::verify_checksums;
use crate::packet::{parse, IcmpError, Kind, Parsed, PROTO_UDP};
use crate::tcp::flags::*;
use lb_testkit::pkt::{self, Tcp, SYN_OPTIONS};
use proptest::prelude::*;
use std::vec;
use std::vec::Vec;

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn ipa(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn l4_checksum(pkt: &[u8]) -> u16 {
    let p = parse(pkt).unwrap();
    let at = usize::from(p.l4_offset) + if p.proto == PROTO_UDP { 6 } else { 16 };
    u16::from_be_bytes([pkt[at], pkt[at + 1]])
}

fn icmp_error(p: &Parsed) -> IcmpError {
    match p.kind {
        Kind::IcmpError(e) => e,
        k => panic!("not an ICMP error: {k:?}"),
    }
}

#[test]
fn a_datagram_rewritten_fragment_by_fragment_reassembles_valid() {
    // The first fragment's incremental L4 update covers the data of the later ones.
    for (c, vip, rip) in [
        ("192.0.2.7:5353", "198.51.100.1:53", "10.1.0.9:5300"),
        ("[2001:db8::7]:5353", "[2001:db8:1::1]:53", "[2001:db8:2::9]:5300"),
    ] {
        let (c, vip, rip) = (sa(c), sa(vip), sa(rip));
        let d = pkt::udp(c, vip, &[0x5a; 2500]);
        let mut frags = pkt::fragments(&d, 0, &[1000, 2000], 3);
        let first = parse(&frags[0]).unwrap();
        rewrite_dst(&mut frags[0], &first, rip).unwrap();
        for f in &mut frags[1..] {
            let p = parse(f).unwrap();
            assert_eq!(rewrite_dst(f, &p, rip), Err(NatError::WrongKind));
            let other = if rip.is_ipv4() { ipa("::1") } else { ipa("10.0.0.1") };
            assert_eq!(
                rewrite_fragment(f, &p, other, false),
                Err(NatError::FamilyMismatch)
            );
            rewrite_fragment(f, &p, rip.ip(), false).unwrap();
            if rip.is_ipv4() {
                assert!(checksum::ipv4_header_verifies(&f[..20]));
            }
        }
        assert_eq!(
            rewrite_fragment(&mut frags[0].clone(), &first, rip.ip(), false),
            Err(NatError::WrongKind)
        );
        let whole = pkt::reassemble(&frags).unwrap();
        assert!(pkt::checksums_ok(&whole));
        assert_eq!(pkt::dst_of(&whole), Some(rip));
        assert_eq!(pkt::src_of(&whole), Some(c));
    }
}

#[test]
fn dnat_then_snat_v4_tcp() {
    let (c, vip, rip) = (
        sa("192.0.2.7:40000"),
        sa("198.51.100.1:80"),
        sa("10.1.0.5:8080"),
    );
    let orig = Tcp::new(c, vip, SYN)
        .seq(1000)
        .options(&SYN_OPTIONS)
        .ip_options(1)
        .build();
    let mut pkt = orig.clone();
    let p = parse(&pkt).unwrap();
    rewrite_dst(&mut pkt, &p, rip).unwrap();
    assert!(verify_checksums(&pkt));
    let q = parse(&pkt).unwrap();
    assert_eq!((q.src, q.dst, q.tcp_flags), (c, rip, SYN));
    // Only the address, port and checksum bytes changed.
    let changed: Vec<_> = (0..pkt.len()).filter(|&i| pkt[i] != orig[i]).collect();
    assert!(changed
        .iter()
        .all(|i| matches!(i, 10 | 11 | 16..=19 | 26 | 27 | 40 | 41)));
    // The reply, rewritten back to the VIP.
    let mut reply = pkt::segment(rip, c, SYN | ACK, 7, 1001, b"");
    let p = parse(&reply).unwrap();
    rewrite_src(&mut reply, &p, vip).unwrap();
    assert!(verify_checksums(&reply));
    let q = parse(&reply).unwrap();
    assert_eq!((q.src, q.dst), (vip, c));
}

#[test]
fn dnat_v6_udp() {
    let (c, vip, rip) = (
        sa("[2001:db8::7]:5353"),
        sa("[2001:db8:1::1]:53"),
        sa("[fd00::5]:5300"),
    );
    let mut pkt = pkt::udp(c, vip, b"query");
    let p = parse(&pkt).unwrap();
    rewrite_dst(&mut pkt, &p, rip).unwrap();
    assert!(verify_checksums(&pkt));
    assert_eq!(parse(&pkt).unwrap().dst, rip);
}

#[test]
fn udp_checksum_zero_stays_zero() {
    let mut pkt = pkt::udp(sa("192.0.2.7:1000"), sa("198.51.100.1:53"), b"abc");
    pkt[26..28].fill(0);
    let p = parse(&pkt).unwrap();
    rewrite_dst(&mut pkt, &p, sa("10.0.0.9:5353")).unwrap();
    assert_eq!(l4_checksum(&pkt), 0);
    assert!(verify_checksums(&pkt));
    let p = parse(&pkt).unwrap();
    rewrite_src(&mut pkt, &p, sa("10.9.9.9:1")).unwrap();
    assert_eq!(l4_checksum(&pkt), 0);
}

#[test]
fn udp_computed_zero_is_sent_as_ffff() {
    let orig = pkt::udp(sa("192.0.2.7:1000"), sa("198.51.100.1:53"), b"abcd");
    let p = parse(&orig).unwrap();
    let mut hits = 0;
    for port in 0..=u16::MAX {
        let mut pkt = orig.clone();
        rewrite_dst(&mut pkt, &p, SocketAddr::new(ipa("10.0.0.9"), port)).unwrap();
        // The full recompute, with the checksum field zeroed.
        let mut z = pkt.clone();
        z[26..28].fill(0);
        let sum = checksum::add(
            checksum::pseudo_header(&z[12..16], &z[16..20], 17, 12),
            &z[20..32],
        );
        if checksum::finish(sum) == 0 {
            hits += 1;
            assert_eq!(l4_checksum(&pkt), 0xffff, "port {port}");
        } else {
            assert_ne!(l4_checksum(&pkt), 0, "port {port}");
        }
        assert!(verify_checksums(&pkt));
    }
    assert_eq!(hits, 1);
}

#[test]
fn refused_rewrites_leave_the_packet_alone() {
    let orig = pkt::segment(sa("10.0.0.1:1"), sa("10.0.0.2:2"), ACK, 0, 0, b"");
    let p = parse(&orig).unwrap();
    let mut pkt = orig.clone();
    assert_eq!(
        rewrite_dst(&mut pkt, &p, sa("[::1]:5")),
        Err(NatError::FamilyMismatch)
    );
    assert_eq!(
        rewrite_icmp_to_server(&mut pkt, &p, sa("10.0.0.3:5")),
        Err(NatError::WrongKind)
    );
    assert_eq!(
        rewrite_src(&mut pkt[..30], &p, sa("10.0.0.3:5")),
        Err(NatError::BufferMismatch)
    );
    assert_eq!(pkt, orig);
    let echo = pkt::echo_request(ipa("10.0.0.1"), ipa("10.0.0.2"), 0, 0, b"");
    let mut e = echo.clone();
    let p = parse(&echo).unwrap();
    assert_eq!(
        rewrite_dst(&mut e, &p, sa("10.0.0.3:5")),
        Err(NatError::WrongKind)
    );
    assert_eq!(e, echo);
}

#[test]
fn icmp_v4_toward_server_and_client() {
    let (c, vip, rip) = (
        sa("192.0.2.7:40000"),
        sa("198.51.100.1:80"),
        sa("10.1.0.5:8080"),
    );
    let router = ipa("203.0.113.9");
    // A reply we sent (VIP → client) bounced back to the VIP.
    let quoted = pkt::segment(vip, c, ACK, 1, 2, &[0; 600]);
    let mut pkt = pkt::too_big(router, &quoted, 28 + 64, 1400);
    let p = parse(&pkt).unwrap();
    rewrite_icmp_to_server(&mut pkt, &p, rip).unwrap();
    assert!(verify_checksums(&pkt));
    let q = parse(&pkt).unwrap();
    assert_eq!((q.src.ip(), q.dst.ip()), (router, rip.ip()));
    let e = icmp_error(&q);
    assert_eq!((e.src, e.dst), (rip, c));
    // A packet we forwarded (client → RIP) bounced back by the real server's side.
    let quoted = pkt::udp(c, rip, &[1; 40]);
    let mut pkt = pkt::too_big(router, &quoted, quoted.len(), 1400);
    let p = parse(&pkt).unwrap();
    rewrite_icmp_to_client(&mut pkt, &p, vip).unwrap();
    assert!(verify_checksums(&pkt));
    let q = parse(&pkt).unwrap();
    assert_eq!((q.src.ip(), q.dst.ip()), (vip.ip(), c.ip()));
    let e = icmp_error(&q);
    assert_eq!((e.src, e.dst), (c, vip));
    // The quoted UDP checksum is not touched (as in the kernel).
    assert_eq!(&pkt[28 + 26..28 + 28], &quoted[26..28]);
}

#[test]
fn icmp_v6_toward_server_and_client() {
    let (c, vip, rip) = (
        sa("[2001:db8::7]:40000"),
        sa("[2001:db8:1::1]:443"),
        sa("[fd00::5]:8443"),
    );
    let quoted = pkt::segment(vip, c, ACK, 1, 2, &[0; 1400]);
    let mut pkt = pkt::too_big(ipa("2001:db8:ff::1"), &quoted, 1232, 1400);
    let p = parse(&pkt).unwrap();
    rewrite_icmp_to_server(&mut pkt, &p, rip).unwrap();
    assert!(verify_checksums(&pkt), "ICMPv6 checksum must be computed");
    let q = parse(&pkt).unwrap();
    assert_eq!(q.dst.ip(), rip.ip());
    assert_eq!(icmp_error(&q).src, rip);

    let quoted = pkt::udp(c, rip, &[1; 40]);
    let mut pkt = pkt::too_big(rip.ip(), &quoted, quoted.len(), 1400);
    let p = parse(&pkt).unwrap();
    rewrite_icmp_to_client(&mut pkt, &p, vip).unwrap();
    assert!(verify_checksums(&pkt));
    let q = parse(&pkt).unwrap();
    assert_eq!(q.src.ip(), vip.ip());
    assert_eq!(icmp_error(&q).dst, vip);
}

#[test]
fn rst_sequence_numbers() {
    let (c, vip) = (sa("192.0.2.7:40000"), sa("198.51.100.1:80"));
    let mut out = [0u8; 128];
    // A SYN (no ACK): seq 0, ACK set, ack = seq + 1.
    let syn = pkt::segment(c, vip, SYN, 0xffff_ffff, 0, b"");
    let n = write_tcp_rst(&mut out, &parse(&syn).unwrap(), &syn).unwrap();
    assert_eq!(n, 40);
    let r = parse(&out[..n]).unwrap();
    assert!(verify_checksums(&out[..n]));
    assert_eq!((r.src, r.dst, r.tcp_flags), (vip, c, RST | ACK));
    assert_eq!(&out[24..28], &0u32.to_be_bytes());
    assert_eq!(&out[28..32], &0u32.to_be_bytes()); // 0xffffffff + 1 wraps
                                                   // FIN without ACK carrying 10 bytes: ack = seq + 10 + 1.
    let fin = pkt::segment(c, vip, FIN, 500, 0, &[0; 10]);
    let n = write_tcp_rst(&mut out, &parse(&fin).unwrap(), &fin).unwrap();
    assert_eq!(&out[28..32], &511u32.to_be_bytes());
    assert_eq!(out[33], RST | ACK);
    assert_eq!(n, 40);
    // With ACK: seq = its ack, RST alone.
    let data = pkt::segment(c, vip, ACK | PSH, 500, 777, &[0; 10]);
    let n = write_tcp_rst(&mut out, &parse(&data).unwrap(), &data).unwrap();
    assert_eq!(&out[24..28], &777u32.to_be_bytes());
    assert_eq!((out[33], n), (RST, 40));
    // IPv6.
    let syn6 = Tcp::new(sa("[2001:db8::7]:1"), sa("[2001:db8::1]:80"), SYN)
        .seq(9)
        .build();
    let n = write_tcp_rst(&mut out, &parse(&syn6).unwrap(), &syn6).unwrap();
    assert_eq!(n, 60);
    assert!(verify_checksums(&out[..n]));
    assert_eq!(parse(&out[..n]).unwrap().dst, sa("[2001:db8::7]:1"));
    // No RST for a RST, for UDP, or into a small buffer.
    let rst = pkt::segment(c, vip, RST, 1, 0, b"");
    assert_eq!(write_tcp_rst(&mut out, &parse(&rst).unwrap(), &rst), None);
    let u = pkt::udp(c, vip, b"");
    assert_eq!(write_tcp_rst(&mut out, &parse(&u).unwrap(), &u), None);
    assert_eq!(
        write_tcp_rst(&mut out[..39], &parse(&syn).unwrap(), &syn),
        None
    );
}

#[test]
fn port_unreachable_quotes_up_to_the_limit() {
    let (c, vip) = (sa("192.0.2.7:40000"), sa("198.51.100.1:53"));
    let mut out = vec![0u8; 2000];
    for (len, want) in [(4, 20 + 8 + 32), (1000, 576)] {
        let mut pkt = pkt::udp(c, vip, &vec![3; len]);
        let real = pkt.len();
        pkt.extend_from_slice(&[0xee; 4]); // padding is not quoted
        let p = parse(&pkt).unwrap();
        let n = write_icmp_port_unreachable(&mut out, &pkt, &p, vip.ip()).unwrap();
        assert_eq!(n, want);
        assert!(verify_checksums(&out[..n]));
        assert_eq!(&out[..2], &[0x45, 0]);
        assert_eq!((out[20], out[21]), (3, 3));
        assert_eq!(&out[28..n], &pkt[..(n - 28).min(real)]);
        let r = parse(&out[..n]).unwrap();
        assert_eq!((r.src.ip(), r.dst.ip()), (vip.ip(), c.ip()));
        let e = icmp_error(&r);
        assert_eq!((e.src, e.dst), (c, vip));
    }
    // IPv6: type 1 code 4, up to 1280.
    let (c6, v6) = (sa("[2001:db8::7]:4000"), sa("[2001:db8::1]:53"));
    let pkt = pkt::udp(c6, v6, &[3; 1400]);
    let p = parse(&pkt).unwrap();
    let n = write_icmp_port_unreachable(&mut out, &pkt, &p, v6.ip()).unwrap();
    assert_eq!(n, 1280);
    assert!(verify_checksums(&out[..n]));
    assert_eq!((out[40], out[41]), (1, 4));
    assert_eq!(icmp_error(&parse(&out[..n]).unwrap()).dst, v6);
    // A small buffer quotes less, but never less than the headers.
    let n = write_icmp_port_unreachable(&mut out[..100], &pkt, &p, v6.ip()).unwrap();
    assert_eq!(n, 100);
    assert!(verify_checksums(&out[..n]));
    assert_eq!(
        write_icmp_port_unreachable(&mut out[..95], &pkt, &p, v6.ip()),
        None
    );
    // Never about an ICMP message, from a multicast source, or across families.
    let echo = pkt::echo_request(c.ip(), vip.ip(), 0, 0, b"");
    let pe = parse(&echo).unwrap();
    assert_eq!(
        write_icmp_port_unreachable(&mut out, &echo, &pe, vip.ip()),
        None
    );
    let mc = pkt::udp(sa("224.0.0.1:5"), vip, b"");
    let pm = parse(&mc).unwrap();
    assert_eq!(
        write_icmp_port_unreachable(&mut out, &mc, &pm, vip.ip()),
        None
    );
    let bc = pkt::udp(c, sa("255.255.255.255:5"), b"");
    let pb = parse(&bc).unwrap();
    assert_eq!(
        write_icmp_port_unreachable(&mut out, &bc, &pb, vip.ip()),
        None
    );
    assert_eq!(
        write_icmp_port_unreachable(&mut out, &pkt, &p, vip.ip()),
        None
    );
}

#[test]
fn echo_replies() {
    let mut out = [0u8; 200];
    for (c, vip, reply_type, hdr) in [
        (ipa("192.0.2.7"), ipa("198.51.100.1"), 0, 20),
        (ipa("2001:db8::7"), ipa("2001:db8::1"), 129, 40),
    ] {
        let req = pkt::echo_request(c, vip, 0x1234, 9, b"payload!");
        let p = parse(&req).unwrap();
        let n = write_echo_reply(&mut out, &req, &p).unwrap();
        assert_eq!(n, hdr + 16);
        assert!(verify_checksums(&out[..n]));
        let r = parse(&out[..n]).unwrap();
        assert_eq!((r.src.ip(), r.dst.ip(), r.kind), (vip, c, Kind::Other));
        assert_eq!(out[hdr], reply_type);
        assert_eq!(&out[hdr + 4..n], &req[hdr + 4..]);
        // A corrupt request gets no answer; neither does a too-small buffer.
        let mut bad = req.clone();
        let last = bad.len() - 1;
        bad[last] ^= 0x40;
        assert_eq!(write_echo_reply(&mut out, &bad, &p), None);
        assert_eq!(write_echo_reply(&mut out[..n - 1], &req, &p), None);
    }
}

fn addr_v4() -> impl Strategy<Value = IpAddr> {
    any::<[u8; 4]>().prop_map(IpAddr::from)
}

fn addr_v6() -> impl Strategy<Value = IpAddr> {
    any::<[u8; 16]>().prop_map(IpAddr::from)
}

/// Random (v6, client, vip, server) of one family.
fn endpoints() -> impl Strategy<Value = (SocketAddr, SocketAddr, SocketAddr)> {
    let v4 = (addr_v4(), addr_v4(), addr_v4());
    let v6 = (addr_v6(), addr_v6(), addr_v6());
    (prop_oneof![v4, v6], any::<[u16; 3]>()).prop_map(|((a, b, c), [p, q, r])| {
        (
            SocketAddr::new(a, p),
            SocketAddr::new(b, q),
            SocketAddr::new(c, r),
        )
    })
}

/// A random TCP or UDP packet from `src` to `dst`.
fn packet(
    src: SocketAddr,
    dst: SocketAddr,
    is_tcp: bool,
    flags: u8,
    payload: &[u8],
    opts: usize,
) -> Vec<u8> {
    let opts = if src.is_ipv6() { 0 } else { opts };
    if is_tcp {
        let options: &[u8] = if flags & 1 == 0 { &SYN_OPTIONS } else { &[] };
        Tcp::new(src, dst, flags)
            .seq(7)
            .ack(9)
            .options(options)
            .payload(payload)
            .ip_options(opts)
            .build()
    } else {
        pkt::with_ip_options(&pkt::udp(src, dst, payload), opts)
    }
}

/// Every rewrite and writer on a copy of `buf`; must not panic.
fn exercise(buf: &[u8], p: &Parsed, a: SocketAddr) {
    let mut b = buf.to_vec();
    let _ = rewrite_dst(&mut b, p, a);
    let _ = rewrite_src(&mut b, p, a);
    let _ = rewrite_icmp_to_server(&mut b, p, a);
    let _ = rewrite_icmp_to_client(&mut b, p, a);
    let mut out = [0u8; 1400];
    let _ = write_tcp_rst(&mut out, p, buf);
    let _ = write_icmp_port_unreachable(&mut out, buf, p, a.ip());
    let _ = write_echo_reply(&mut out, buf, p);
    let _ = write_tcp_rst(&mut out[..30], p, buf);
    let _ = write_icmp_port_unreachable(&mut out[..50], buf, p, a.ip());
    let _ = write_echo_reply(&mut out[..30], buf, p);
}

proptest! {
    #[test]
    fn transport_rewrites_match_recompute(
        (client, vip, server) in endpoints(),
        is_tcp in any::<bool>(),
        flags in any::<u8>(),
        payload in proptest::collection::vec(any::<u8>(), 0..64),
        opts in 0usize..4,
        zero_udp in any::<bool>(),
    ) {
        let mut pkt = packet(client, vip, is_tcp, flags, &payload, opts);
        let no_udp_sum = !is_tcp && zero_udp && !client.is_ipv6();
        if no_udp_sum {
            let at = pkt.len() - payload.len() - 2;
            pkt[at..at + 2].fill(0);
        }
        prop_assert!(verify_checksums(&pkt));
        let p = parse(&pkt).unwrap();
        rewrite_dst(&mut pkt, &p, server).unwrap();
        prop_assert!(verify_checksums(&pkt));
        let q = parse(&pkt).unwrap();
        prop_assert_eq!((q.src, q.dst, q.tcp_flags), (client, server, p.tcp_flags));
        if !is_tcp {
            prop_assert_eq!(l4_checksum(&pkt) == 0, no_udp_sum);
        }

        // The reply direction.
        let mut reply = packet(server, client, is_tcp, flags, &payload, opts);
        let p = parse(&reply).unwrap();
        rewrite_src(&mut reply, &p, vip).unwrap();
        prop_assert!(verify_checksums(&reply));
        let q = parse(&reply).unwrap();
        prop_assert_eq!((q.src, q.dst), (vip, client));
    }

    /// The datapath's rewrite from a `Flow` writes exactly the bytes the `Parsed` one
    /// writes, both directions, with and without an IPv4 UDP checksum, and with damaged
    /// L4 checksums (never verified, only updated).
    #[test]
    fn flow_rewrites_equal_parsed_rewrites(
        (client, vip, server) in endpoints(),
        is_tcp in any::<bool>(),
        flags in any::<u8>(),
        payload in proptest::collection::vec(any::<u8>(), 0..64),
        zero_udp in any::<bool>(),
        l4_damage in any::<u16>(),
    ) {
        for (src, dst, new, to_src) in [(client, vip, server, false), (server, client, vip, true)] {
            // No IPv4 options: the shape `parse_flow` reads.
            let mut pkt = packet(src, dst, is_tcp, flags, &payload, 0);
            let l4 = usize::from(parse(&pkt).unwrap().l4_offset);
            let at = l4 + if is_tcp { 16 } else { 6 };
            if !is_tcp && zero_udp && !src.is_ipv6() {
                pkt[at..at + 2].fill(0);
            } else {
                let c = u16::from_be_bytes([pkt[at], pkt[at + 1]]) ^ l4_damage;
                pkt[at..at + 2].copy_from_slice(&c.to_be_bytes());
            }
            let mut by_flow = pkt.clone();
            let p = parse(&pkt).unwrap();
            if to_src { rewrite_src(&mut pkt, &p, new).unwrap() } else { rewrite_dst(&mut pkt, &p, new).unwrap() }
            let f = crate::packet::parse_flow(&by_flow).unwrap();
            let addr = crate::packet::addr_bytes(new.ip());
            rewrite_flow(&mut by_flow, &f, &addr, new.port(), to_src).unwrap();
            prop_assert_eq!(&by_flow, &pkt);
        }
    }

    #[test]
    fn icmp_rewrites_match_recompute(
        (client, vip, server) in endpoints(),
        is_tcp in any::<bool>(),
        payload in proptest::collection::vec(any::<u8>(), 0..64),
        quote_extra in 0usize..80,
        router in prop_oneof![addr_v4(), addr_v6()],
    ) {
        let v6 = client.is_ipv6();
        let router = match (v6, router) {
            (true, IpAddr::V4(a)) => IpAddr::V6(a.to_ipv6_mapped()),
            (false, IpAddr::V6(a)) => IpAddr::V4(a.to_ipv4_mapped().unwrap_or(core::net::Ipv4Addr::LOCALHOST)),
            (_, r) => r,
        };
        let hdr = if v6 { 40 } else { 20 };
        // Toward the server: an error about our reply VIP → client.
        let quoted = packet(vip, client, is_tcp, ACK, &payload, 0);
        let mut pkt = pkt::too_big(router, &quoted, hdr + 8 + quote_extra, 1400);
        prop_assert!(verify_checksums(&pkt));
        let p = parse(&pkt).unwrap();
        rewrite_icmp_to_server(&mut pkt, &p, server).unwrap();
        prop_assert!(verify_checksums(&pkt));
        let q = parse(&pkt).unwrap();
        prop_assert_eq!((q.src.ip(), q.dst.ip()), (router, server.ip()));
        let e = icmp_error(&q);
        prop_assert_eq!((e.src, e.dst), (server, client));

        // Toward the client: an error about a packet we forwarded client → server.
        let quoted = packet(client, server, is_tcp, ACK, &payload, 0);
        let mut pkt = pkt::too_big(router, &quoted, hdr + 8 + quote_extra, 1400);
        let p = parse(&pkt).unwrap();
        rewrite_icmp_to_client(&mut pkt, &p, vip).unwrap();
        prop_assert!(verify_checksums(&pkt));
        let q = parse(&pkt).unwrap();
        prop_assert_eq!((q.src.ip(), q.dst.ip()), (vip.ip(), client.ip()));
        let e = icmp_error(&q);
        prop_assert_eq!((e.src, e.dst), (client, vip));
    }

    #[test]
    fn arbitrary_bytes_never_panic(
        mut bytes in proptest::collection::vec(any::<u8>(), 0..200),
        first in prop_oneof![Just(0x45u8), Just(0x47), Just(0x60), any::<u8>()],
        proto in prop_oneof![Just(1u8), Just(6), Just(17), Just(58), any::<u8>()],
        (a, _, _) in endpoints(),
    ) {
        if let Some(b) = bytes.first_mut() { *b = first; }
        if bytes.len() > 9 { bytes[if first >> 4 == 6 { 6 } else { 9 }] = proto; }
        if let Ok(p) = parse(&bytes) {
            exercise(&bytes, &p, a);
        }
        let _ = verify_checksums(&bytes);
    }

    #[test]
    fn mutated_packets_never_panic(
        (client, vip, server) in endpoints(),
        kind in 0u8..4,
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        cut in any::<prop::sample::Index>(),
    ) {
        let inner = packet(client, vip, kind & 1 == 0, SYN, b"data", 1);
        let mut pkt = match kind {
            0 | 1 => inner,
            2 => pkt::too_big(server.ip(), &inner, inner.len(), 1400),
            _ => pkt::echo_request(client.ip(), vip.ip(), 0, 0, b"ping"),
        };
        for (i, v) in flips {
            let at = i.index(pkt.len());
            pkt[at] = v;
        }
        pkt.truncate(cut.index(pkt.len() + 1));
        if let Ok(p) = parse(&pkt) {
            exercise(&pkt, &p, server);
            // A parse of a mismatched (shorter) buffer must be refused, not panic.
            let short = &pkt[..pkt.len() / 2];
            exercise(short, &p, server);
        }
    }
}
