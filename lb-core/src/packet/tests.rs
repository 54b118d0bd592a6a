//! Unit tests of the packet parsers: [`parse`], [`parse_flow`] and their refusals.

use super::*;
use crate::checksum::verify_checksums;
use crate::tcp::flags::*;
use core::net::IpAddr;
use lb_testkit::pkt::{self, Tcp, SYN_OPTIONS};
use proptest::prelude::*;
use std::vec::Vec;

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn ipa(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn icmp_kind(p: &Parsed) -> IcmpError {
    match p.kind {
        Kind::IcmpError(e) => e,
        k => panic!("not an ICMP error: {k:?}"),
    }
}

#[test]
fn ipv4_tcp_with_options_and_padding() {
    let (c, v) = (sa("192.0.2.7:40000"), sa("198.51.100.1:80"));
    let mut pkt = Tcp::new(c, v, SYN | ACK)
        .seq(1)
        .ack(2)
        .options(&SYN_OPTIONS)
        .payload(b"hello")
        .ip_options(2)
        .build();
    assert!(verify_checksums(&pkt));
    let total = pkt.len();
    pkt.extend_from_slice(&[0xee; 6]); // link-layer padding
    let p = parse(&pkt).unwrap();
    assert!(!p.v6);
    assert_eq!((p.proto, p.src, p.dst), (PROTO_TCP, c, v));
    assert_eq!(p.tcp_flags, SYN | ACK);
    assert_eq!(p.l4_offset, 28);
    assert_eq!(p.total_len as usize, total);
    assert_eq!(p.payload_len, 5);
    assert_eq!(p.kind, Kind::Transport);
    assert_eq!(p.transport(), Some(Protocol::Tcp));
}

#[test]
fn ipv6_udp() {
    let (c, v) = (sa("[2001:db8::7]:5353"), sa("[2001:db8:1::1]:53"));
    let pkt = pkt::udp(c, v, &[1, 2, 3]);
    let p = parse(&pkt).unwrap();
    assert!(p.v6);
    assert_eq!((p.proto, p.src, p.dst, p.l4_offset), (PROTO_UDP, c, v, 40));
    assert_eq!((p.payload_len, p.total_len), (3, 51));
    assert_eq!(p.transport(), Some(Protocol::Udp));
}

#[test]
fn udp_length_shorter_than_ip_payload_is_tolerated() {
    let mut pkt = pkt::udp(sa("10.0.0.1:1"), sa("10.0.0.2:2"), &[9; 10]);
    pkt[24..26].copy_from_slice(&12u16.to_be_bytes());
    assert_eq!(parse(&pkt).unwrap().payload_len, 4);
}

#[test]
fn every_malformed_reason() {
    let good = pkt::segment(sa("10.0.0.1:1"), sa("10.0.0.2:2"), ACK, 0, 0, b"x");
    let v4 = |f: &dyn Fn(&mut Vec<u8>)| {
        let mut b = good.clone();
        f(&mut b);
        // Keep the header checksum right so the intended check is the one that fails.
        let ihl = usize::from(b[0] & 15) * 4;
        if b.len() >= ihl.max(20) {
            pkt::refresh_ipv4_checksum(&mut b);
        }
        parse(&b)
    };
    assert_eq!(parse(&[]), Err(Malformed::Truncated));
    assert_eq!(parse(&good[..19]), Err(Malformed::Truncated));
    assert_eq!(parse(&good[..good.len() - 1]), Err(Malformed::Truncated));
    assert_eq!(v4(&|b| b[0] = 0x55), Err(Malformed::BadVersion));
    assert_eq!(v4(&|b| b[0] = 0x44), Err(Malformed::BadIhl));
    assert_eq!(v4(&|b| b[0] = 0x4f), Err(Malformed::BadTotalLength));
    let long_header = v4(&|b| {
        b[0] = 0x4f;
        b[2..4].copy_from_slice(&[0, 80]);
    });
    assert_eq!(long_header, Err(Malformed::Truncated));
    assert_eq!(
        v4(&|b| b[2..4].copy_from_slice(&[0, 19])),
        Err(Malformed::BadTotalLength)
    );
    // A first fragment of 21 bytes of TCP holds the header: read; one at offset 8: tiny.
    assert_eq!(v4(&|b| b[6] |= 0x20).map(|p| p.kind), Ok(Kind::Transport));
    assert_eq!(v4(&|b| b[7] = 1), Err(Malformed::TinyFragment));
    assert_eq!(v4(&|b| b[6] = 0x40), Ok(parse(&good).unwrap())); // DF is fine
    assert_eq!(v4(&|b| b[32] = 0x40), Err(Malformed::BadTcpDataOffset));
    assert_eq!(v4(&|b| b[32] = 0x60), Err(Malformed::BadTcpDataOffset));
    let mut bad = good.clone();
    bad[10] ^= 1;
    assert_eq!(parse(&bad), Err(Malformed::BadIpv4HeaderChecksum));
    let short_tcp = v4(&|b| {
        b.truncate(39);
        b[2..4].copy_from_slice(&39u16.to_be_bytes());
    });
    assert_eq!(short_tcp, Err(Malformed::Truncated));

    let u = pkt::udp(sa("10.0.0.1:1"), sa("10.0.0.2:2"), &[0; 4]);
    let udp_len = |n: u16| {
        let mut b = u.clone();
        b[24..26].copy_from_slice(&n.to_be_bytes());
        parse(&b)
    };
    assert_eq!(udp_len(7), Err(Malformed::BadUdpLength));
    assert_eq!(udp_len(13), Err(Malformed::BadUdpLength));
    assert!(udp_len(12).is_ok());

    let v6 = pkt::udp(sa("[::1]:1"), sa("[::2]:2"), &[0; 4]);
    let next = |nh: u8| {
        let mut b = v6.clone();
        b[6] = nh;
        parse(&b)
    };
    // Headers lb-core walks, reading the UDP header as one: cut short.
    for nh in [0, 43, 44, 51, 60] {
        assert_eq!(next(nh), Err(Malformed::Truncated), "nh {nh}");
    }
    // Mobility, HIP, Shim6, experimental: upper layers to the kernel's walk too.
    for nh in [135, 139, 140, 253, 254] {
        assert_eq!(next(nh).map(|p| p.kind), Ok(Kind::Other), "nh {nh}");
    }
    assert_eq!(next(59).map(|p| p.kind), Ok(Kind::Other));
    assert_eq!(parse(&v6[..39]), Err(Malformed::Truncated));
    assert_eq!(parse(&v6[..v6.len() - 1]), Err(Malformed::Truncated));
}

#[test]
fn malformed_display_is_distinct() {
    use Malformed::*;
    let all = [
        Truncated,
        BadVersion,
        BadIhl,
        BadTotalLength,
        BadIpv4HeaderChecksum,
        BadTcpDataOffset,
        BadUdpLength,
        Ipv6ExtensionHeaders,
        TinyFragment,
        BadEmbeddedPacket,
    ];
    let texts: std::collections::BTreeSet<_> =
        all.iter().map(std::string::ToString::to_string).collect();
    assert_eq!(texts.len(), all.len());
}

#[test]
fn other_protocols_pass() {
    let gre = pkt::ip(ipa("10.0.0.1"), ipa("10.0.0.2"), 47, 0, std::vec![0; 8]);
    let p = parse(&gre).unwrap();
    assert_eq!(
        (p.kind, p.proto, p.src.port(), p.payload_len),
        (Kind::Other, 47, 0, 0)
    );
    // ICMP redirect and echo reply are not errors we relate.
    let redirect = pkt::icmp(ipa("10.0.0.1"), ipa("10.0.0.2"), 5, 0, &[0; 28]);
    assert_eq!(parse(&redirect).unwrap().kind, Kind::Other);
    let reply = pkt::icmp(ipa("::1"), ipa("::2"), 129, 0, b"ping");
    assert_eq!(parse(&reply).unwrap().kind, Kind::Other);
}

#[test]
fn echo_requests() {
    let e4 = pkt::echo_request(ipa("10.0.0.1"), ipa("10.0.0.2"), 1, 2, b"abc");
    let p = parse(&e4).unwrap();
    assert_eq!(
        (p.kind, p.payload_len, p.proto),
        (Kind::EchoRequest, 3, PROTO_ICMP)
    );
    let e6 = pkt::echo_request(ipa("::1"), ipa("::2"), 1, 2, b"");
    assert_eq!(parse(&e6).unwrap().kind, Kind::EchoRequest);
    assert_eq!(parse(&e4[..27]), Err(Malformed::Truncated));
}

#[test]
fn icmpv4_error_quoting_tcp() {
    // A reply VIP:80 → client, bounced by a router with "fragmentation needed".
    let (vip, client) = (sa("198.51.100.1:80"), sa("192.0.2.7:40000"));
    let quoted = Tcp::new(vip, client, ACK)
        .seq(5)
        .ack(6)
        .payload(&[0; 100])
        .ip_options(1)
        .build();
    for n in [quoted.len(), 24 + 8] {
        let pkt = pkt::icmp_rest(
            ipa("203.0.113.9"),
            vip.ip(),
            3,
            4,
            [0, 0, 5, 0xdc],
            &quoted[..n],
        );
        let p = parse(&pkt).unwrap();
        assert_eq!((p.src.ip(), p.dst.ip()), (ipa("203.0.113.9"), vip.ip()));
        let e = icmp_kind(&p);
        assert_eq!((e.proto, e.src, e.dst), (Protocol::Tcp, vip, client));
        assert_eq!((e.ip_offset, e.l4_offset), (28, 52));
        assert_eq!((e.icmp_type, e.icmp_code), (3, 4));
    }
    // Less than 8 bytes of quoted L4 header: refused.
    let pkt = pkt::icmp(ipa("203.0.113.9"), vip.ip(), 11, 0, &quoted[..24 + 7]);
    assert_eq!(parse(&pkt), Err(Malformed::BadEmbeddedPacket));
    // Quoting IPv6 inside ICMPv4: refused.
    let q6 = pkt::udp(sa("[::1]:1"), sa("[::2]:2"), &[]);
    let pkt = pkt::icmp(ipa("203.0.113.9"), vip.ip(), 3, 3, &q6);
    assert_eq!(parse(&pkt), Err(Malformed::BadEmbeddedPacket));
    // Quoting a non-first fragment or ICMP: unrelated.
    let mut frag = quoted.clone();
    frag[7] = 9;
    let pkt = pkt::icmp(ipa("203.0.113.9"), vip.ip(), 3, 1, &frag);
    assert_eq!(parse(&pkt).unwrap().kind, Kind::Other);
    let echo = pkt::echo_request(vip.ip(), client.ip(), 0, 0, b"");
    let pkt = pkt::icmp(ipa("203.0.113.9"), vip.ip(), 3, 1, &echo);
    assert_eq!(parse(&pkt).unwrap().kind, Kind::Other);
    // Source quench (4) and time exceeded (11) are related too.
    for ty in [4, 11] {
        let pkt = pkt::icmp(ipa("203.0.113.9"), vip.ip(), ty, 0, &quoted);
        assert!(matches!(parse(&pkt).unwrap().kind, Kind::IcmpError(_)));
    }
}

#[test]
fn icmpv6_error_quoting_udp() {
    let (client, rip) = (sa("[2001:db8::7]:5353"), sa("[2001:db8:2::5]:5300"));
    let quoted = pkt::udp(client, rip, &[7; 30]);
    for ty in [1, 2, 3, 4, 127] {
        let pkt = pkt::icmp(rip.ip(), client.ip(), ty, 0, &quoted[..56]);
        let e = icmp_kind(&parse(&pkt).unwrap());
        assert_eq!((e.proto, e.src, e.dst), (Protocol::Udp, client, rip));
        assert_eq!((e.ip_offset, e.l4_offset, e.icmp_type), (48, 88, ty));
    }
    let pkt = pkt::icmp(rip.ip(), client.ip(), 1, 4, &quoted[..47]);
    assert_eq!(parse(&pkt), Err(Malformed::BadEmbeddedPacket));
    // Informational types (≥ 128) other than echo request are not errors.
    let pkt = pkt::icmp(rip.ip(), client.ip(), 135, 0, &quoted);
    assert_eq!(parse(&pkt).unwrap().kind, Kind::Other);
}

/// An IPv6 Hop-by-Hop header of 8 bytes (a PadN option), Destination Options of 16, a
/// Routing header with no segments left, AH: the bytes after each next-header byte.
const HBH: [u8; 7] = [0, 1, 4, 0, 0, 0, 0];
const DEST_OPTS_16: [u8; 15] = [1, 1, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
const ROUTING_DONE: [u8; 23] = [2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
const AH: [u8; 15] = [2, 0, 0, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 0];

#[test]
fn ipv6_extension_headers_are_walked_to_the_transport_header() {
    let (c, v) = (sa("[2001:db8::7]:40000"), sa("[2001:db8:1::1]:80"));
    let seg = pkt::segment(c, v, SYN, 1, 0, b"hi");
    let plain = parse(&seg).unwrap();
    // Innermost first: each call puts its header right after the fixed header.
    let chain = pkt::ipv6_ext(&seg, 51, &AH); // AH: (2 + 2) * 4 = 16 bytes
    let chain = pkt::ipv6_ext(&chain, 60, &DEST_OPTS_16);
    let chain = pkt::ipv6_ext(&chain, 43, &ROUTING_DONE);
    let chain = pkt::ipv6_ext(&chain, 0, &HBH);
    let p = parse(&chain).unwrap();
    assert_eq!(p.l4_offset, 40 + 8 + 24 + 16 + 16);
    assert_eq!(
        (p.kind, p.proto, p.src, p.dst, p.tcp_flags, p.payload_len, p.fragment),
        (Kind::Transport, PROTO_TCP, c, v, SYN, 2, None)
    );
    assert_eq!(p.total_len as usize, chain.len());
    assert_eq!(parse_flow(&chain), None, "the fast path stays for the common shape");
    assert_eq!(parse_flow(&seg).map(|f| f.to_parsed()), Some(plain));
    // A Routing header with segments left: the VIP is not the final destination.
    let mut routing = ROUTING_DONE;
    routing[2] = 1;
    assert_eq!(
        parse(&pkt::ipv6_ext(&seg, 43, &routing)),
        Err(Malformed::Ipv6ExtensionHeaders)
    );
    // Nine headers: more than lb-core walks.
    let mut long = seg.clone();
    for _ in 0..9 {
        long = pkt::ipv6_ext(&long, 60, &HBH);
    }
    assert_eq!(parse(&long), Err(Malformed::Ipv6ExtensionHeaders));
    // A header longer than the packet.
    let mut cut = pkt::ipv6_ext(&seg, 0, &HBH);
    cut[41] = 200;
    assert_eq!(parse(&cut), Err(Malformed::Truncated));
    // ESP and No Next Header after a Hop-by-Hop header: nothing lb-core reads.
    for nh in [50, 59] {
        let mut q = pkt::ipv6_ext(&seg, 0, &HBH);
        q[40] = nh;
        assert_eq!(parse(&q).map(|p| p.kind), Ok(Kind::Other), "{nh}");
    }
}

#[test]
fn fragments_first_with_ports_later_without() {
    for (c, v) in [
        (sa("192.0.2.7:5353"), sa("198.51.100.1:53")),
        (sa("[2001:db8::7]:5353"), sa("[2001:db8:1::1]:53")),
    ] {
        let d = pkt::udp(c, v, &[9; 3000]);
        let frags = pkt::fragments(&d, 0, &[1480, 2960], 0xabcd_1234);
        let first = parse(&frags[0]).unwrap();
        let id = if c.is_ipv6() { 0xabcd_1234 } else { 0x1234 };
        assert_eq!(
            (first.kind, first.src, first.dst, first.proto),
            (Kind::Transport, c, v, PROTO_UDP)
        );
        assert_eq!(first.payload_len, 1480 - 8, "the fragment's share");
        assert_eq!(
            first.fragment,
            Some(Fragment {
                id,
                offset: 0,
                more: true
            })
        );
        assert_eq!(first.l4_offset, if c.is_ipv6() { 48 } else { 20 });
        for (k, f) in frags[1..].iter().enumerate() {
            let p = parse(f).unwrap();
            assert_eq!((p.kind, p.proto), (Kind::Fragment, PROTO_UDP));
            assert_eq!((p.src.ip(), p.dst.ip(), p.src.port()), (c.ip(), v.ip(), 0));
            assert_eq!(
                p.fragment,
                Some(Fragment {
                    id,
                    offset: [1480, 2960][k],
                    more: k == 0
                })
            );
            assert_eq!(parse_flow(f), None);
        }
        assert_eq!(parse_flow(&frags[0]), None);
    }
}

#[test]
fn atomic_fragments_are_whole_packets() {
    // RFC 6946: a Fragment header with offset 0 and M clear.
    let seg = pkt::udp(sa("[2001:db8::7]:5353"), sa("[2001:db8:1::1]:53"), b"q");
    let atomic = pkt::ipv6_ext(&seg, 44, &[0, 0, 0, 0, 0, 0, 9]);
    let p = parse(&atomic).unwrap();
    assert_eq!((p.kind, p.fragment, p.l4_offset), (Kind::Transport, None, 48));
    // IPv4 with DF and no MF/offset is no fragment, whatever its identification.
    let mut df = pkt::udp(sa("192.0.2.7:5353"), sa("198.51.100.1:53"), b"q");
    df[4..6].copy_from_slice(&[1, 2]);
    df[6] = 0x40;
    pkt::refresh_ipv4_checksum(&mut df);
    assert_eq!(parse(&df).unwrap().fragment, None);
    // A second Fragment header: refused.
    let twice = pkt::ipv6_ext(&atomic, 44, &[0, 0, 1, 0, 0, 0, 9]);
    assert_eq!(parse(&twice), Err(Malformed::Ipv6ExtensionHeaders));
}

#[test]
fn tiny_fragments_are_refused() {
    // RFC 1858 §3: a first fragment without the whole TCP header, and a TCP fragment at
    // offset 8, which would overwrite the flags of the first.
    for (c, v) in [
        (sa("192.0.2.7:40000"), sa("198.51.100.1:80")),
        (sa("[2001:db8::7]:40000"), sa("[2001:db8:1::1]:80")),
    ] {
        let seg = Tcp::new(c, v, ACK).options(&SYN_OPTIONS).payload(&[1; 40]).build();
        let frags = pkt::fragments(&seg, 0, &[16], 1);
        assert_eq!(parse(&frags[0]), Err(Malformed::TinyFragment));
        let frags = pkt::fragments(&seg, 0, &[24], 1);
        assert_eq!(parse(&frags[0]), Err(Malformed::TinyFragment), "options cut");
        let frags = pkt::fragments(&seg, 0, &[8], 1);
        assert_eq!(parse(&frags[1]), Err(Malformed::TinyFragment), "offset 8");
        let frags = pkt::fragments(&seg, 0, &[40], 1);
        assert_eq!(parse(&frags[0]).unwrap().kind, Kind::Transport);
        assert_eq!(parse(&frags[1]).unwrap().kind, Kind::Fragment);
        let d = pkt::udp(c, v, &[1; 40]);
        let frags = pkt::fragments(&d, 0, &[8], 1);
        assert_eq!(parse(&frags[0]).unwrap().kind, Kind::Transport, "8 bytes of UDP");
        assert_eq!(parse(&frags[1]).unwrap().kind, Kind::Fragment, "UDP at offset 8");
    }
    // A UDP first fragment of 4 bytes (cut by hand: fragments cut at multiples of 8).
    let d = pkt::udp(sa("192.0.2.7:1"), sa("198.51.100.1:2"), &[1; 40]);
    let mut tiny = d[..24].to_vec();
    tiny[2..4].copy_from_slice(&24u16.to_be_bytes());
    tiny[6] = 0x20;
    pkt::refresh_ipv4_checksum(&mut tiny);
    assert_eq!(parse(&tiny), Err(Malformed::TinyFragment));
}

#[test]
fn icmpv6_errors_quoting_extension_headers_are_walked() {
    let (client, vip) = (sa("[2001:db8::7]:5353"), sa("[2001:db8:1::1]:53"));
    let reply = pkt::udp(vip, client, &[7; 30]);
    let quoted = pkt::ipv6_ext(&pkt::ipv6_ext(&reply, 60, &DEST_OPTS_16), 0, &HBH);
    let err = pkt::icmp(ipa("2001:db8:9::1"), vip.ip(), 1, 4, &quoted[..40 + 24 + 8]);
    let e = icmp_kind(&parse(&err).unwrap());
    assert_eq!((e.proto, e.src, e.dst), (Protocol::Udp, vip, client));
    assert_eq!((e.ip_offset, e.l4_offset), (48, 48 + 40 + 24));
    // Cut inside the extension headers: an incomplete quote.
    let err = pkt::icmp(ipa("2001:db8:9::1"), vip.ip(), 1, 4, &quoted[..40 + 20]);
    assert_eq!(parse(&err), Err(Malformed::BadEmbeddedPacket));
    // Quoting a later fragment: unrelated; quoting a first fragment: its ports.
    let frags = pkt::fragments(&pkt::udp(vip, client, &[1; 100]), 0, &[48], 5);
    let err = pkt::icmp(ipa("2001:db8:9::1"), vip.ip(), 1, 4, &frags[1]);
    assert_eq!(parse(&err).unwrap().kind, Kind::Other);
    let err = pkt::icmp(ipa("2001:db8:9::1"), vip.ip(), 1, 4, &frags[0]);
    assert_eq!(icmp_kind(&parse(&err).unwrap()).src, vip);
}

#[test]
fn parsed_size() {
    let n = core::mem::size_of::<Parsed>();
    std::println!("Parsed = {n} bytes");
    assert!(n <= 160, "{n}");
}

proptest! {
    #[test]
    fn garbage_never_panics(mut bytes in proptest::collection::vec(any::<u8>(), 0..120),
                            first in prop_oneof![Just(0x45u8), Just(0x46), Just(0x60), any::<u8>()]) {
        if let Some(b) = bytes.first_mut() { *b = first; }
        let _ = parse(&bytes);
        let _ = parse_flow(&bytes);
    }

    /// `parse_flow` accepts exactly the TCP/UDP packets of the common shape `parse`
    /// accepts, and reads them the same; damaged and cut packets included.
    #[test]
    fn parse_flow_agrees_with_parse(
        v6 in any::<bool>(),
        udp in any::<bool>(),
        flags in any::<u8>(),
        opt_words in prop_oneof![Just(0usize), 0usize..3],
        payload in proptest::collection::vec(any::<u8>(), 0..40),
        damage in proptest::collection::vec((any::<u16>(), any::<u8>()), 0..3),
        cut in proptest::option::of(any::<u8>()),
        padding in 0usize..8,
    ) {
        let (src, dst): (SocketAddr, SocketAddr) = if v6 {
            ("[2001:db8::1]:40000".parse().unwrap(), "[2001:db8::100]:80".parse().unwrap())
        } else {
            ("192.0.2.1:40000".parse().unwrap(), "10.0.0.100:80".parse().unwrap())
        };
        let opt_words = if v6 { 0 } else { opt_words };
        let mut pkt = if udp {
            pkt::with_ip_options(&pkt::udp(src, dst, &payload), opt_words)
        } else {
            let options: &[u8] = if flags & 1 != 0 { &SYN_OPTIONS } else { &[] };
            Tcp::new(src, dst, flags).seq(1).ack(2).options(options).payload(&payload).ip_options(opt_words).build()
        };
        pkt.extend(core::iter::repeat_n(0u8, padding));
        for (at, x) in damage {
            let i = usize::from(at) % pkt.len();
            pkt[i] ^= x;
        }
        if let Some(n) = cut {
            pkt.truncate(usize::from(n));
        }
        let full = parse(&pkt);
        let common = pkt.first().is_some_and(|b| *b == 0x45 || b >> 4 == 6);
        // The common shape: no fragment, no IPv6 extension header.
        let common_transport = |p: &Parsed| {
            p.kind == Kind::Transport && p.fragment.is_none() && (!p.v6 || p.l4_offset == 40)
        };
        match parse_flow(&pkt) {
            Some(f) => prop_assert_eq!(Ok(f.to_parsed()), full),
            None => prop_assert!(
                !common || !full.as_ref().is_ok_and(common_transport),
                "parse_flow refused {:02x?}, parse read {:?}", pkt, full
            ),
        }
    }
}
