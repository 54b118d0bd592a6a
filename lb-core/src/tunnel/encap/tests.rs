//! The outer headers byte for byte, against the layout Linux IPVS puts on the wire
//! (docs/tunnels.md, "On the wire": the worked example's packets).

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::*;
use crate::checksum;
use crate::config::{GueCsum, TunnelKind};

/// The example's inner packet: TCP 10.0.0.1:40000 → 10.30.0.10:80, PSH+ACK, 18 bytes of
/// request, ID 0x1c46, DF, TTL 63, checksums valid.
const INNER: &str = "4500003a1c4640003f060b500a0000010a1e000a9c4000506b8b4568327b23c7\
                     501801f617360000474554202f20485454502f312e300d0a0d0a";

fn hex(s: &str) -> std::vec::Vec<u8> {
    let s: std::string::String = s.split_whitespace().collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

const DIR: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 20, 0, 1));
const RIP: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 20, 1, 2));

fn gue(csum: GueCsum) -> TunnelKind {
    TunnelKind::Gue { port: 6080, csum }
}

/// The whole outer packet: headers then the inner packet.
fn wire(outer: &Outer, inner: &[u8]) -> std::vec::Vec<u8> {
    let mut v = outer.as_bytes().to_vec();
    v.extend_from_slice(inner);
    v
}

#[test]
fn ipip_over_ipv4_is_the_kernels_header() {
    let inner = hex(INNER);
    let o = build(&inner, TunnelKind::Ipip, DIR, RIP, 0x1234).unwrap();
    assert_eq!(
        o.as_bytes(),
        &hex("4500004e000040003f0426820a1400010a140102")[..],
        "ID 0 with DF, DF copied, TTL copied, protocol 4, header checksum"
    );
    assert_eq!(o.len(), overhead(TunnelKind::Ipip, false));
}

#[test]
fn gue_without_checksum_is_the_kernels_header_but_for_the_hashed_source_port() {
    let inner = hex(INNER);
    let o = build(&inner, gue(GueCsum::None), DIR, RIP, 0).unwrap();
    let b = o.as_bytes();
    assert_eq!(
        &b[..20],
        &hex("4500005a000040003f1126690a1400010a140102")[..]
    );
    let sport = u16::from_be_bytes([b[20], b[21]]);
    assert!((32768..61000).contains(&sport), "source port {sport}");
    assert_eq!(sport, gue_source_port(&inner), "from the inner flow");
    assert_eq!(
        &b[22..],
        &hex("17c00046 0000 00040000")[..],
        "port 6080, length 70, checksum 0, GUE proto 4"
    );
}

#[test]
fn gue_checksum_covers_the_whole_datagram() {
    let inner = hex(INNER);
    for csum in [GueCsum::Csum, GueCsum::RemCsum] {
        let o = build(&inner, gue(csum), DIR, RIP, 0).unwrap();
        let b = o.as_bytes();
        assert_eq!(
            b.len(),
            32,
            "{csum:?}: no remote-checksum option on a complete inner checksum"
        );
        let pkt = wire(&o, &inner);
        assert!(
            checksum::verify_checksums(&pkt),
            "{csum:?}: outer IPv4 and UDP checksums"
        );
        // With the example's stand-in source port (54321) the checksum is the kernel's.
        let sport = u16::from_be_bytes([b[20], b[21]]);
        let c = u16::from_be_bytes([b[26], b[27]]);
        assert_eq!(checksum::update16(c, sport, 54321), 0x1297);
    }
}

#[test]
fn gre_with_and_without_checksum_is_the_kernels_header() {
    let inner = hex(INNER);
    let o = build(&inner, TunnelKind::Gre { csum: false }, DIR, RIP, 0).unwrap();
    assert_eq!(
        o.as_bytes(),
        &hex("45000052000040003f2f26530a1400010a140102 00000800")[..]
    );
    let o = build(&inner, TunnelKind::Gre { csum: true }, DIR, RIP, 0).unwrap();
    assert_eq!(
        o.as_bytes(),
        &hex("45000056000040003f2f264f0a1400010a140102 800008008c540000")[..]
    );
}

#[test]
fn the_inner_packet_is_not_touched_and_its_checksums_stay_valid() {
    let inner = hex(INNER);
    let copy = inner.clone();
    for kind in [
        TunnelKind::Ipip,
        gue(GueCsum::None),
        gue(GueCsum::Csum),
        TunnelKind::Gre { csum: false },
        TunnelKind::Gre { csum: true },
    ] {
        let o = build(&inner, kind, DIR, RIP, 7).unwrap();
        assert_eq!(inner, copy);
        let pkt = wire(&o, &inner);
        assert!(
            checksum::verify_checksums(&pkt[o.len()..]),
            "{kind:?}: inner checksums"
        );
        assert!(
            checksum::ipv4_header_verifies(&pkt[..20]),
            "{kind:?}: outer header checksum"
        );
    }
}

#[test]
fn without_df_the_outer_header_takes_the_counter_as_id_and_no_df() {
    let mut inner = hex(INNER);
    inner[6] = 0; // DF off
    let sum = checksum::finish(checksum::add(0, &{
        let mut h = inner[..20].to_vec();
        h[10] = 0;
        h[11] = 0;
        h
    }));
    inner[10..12].copy_from_slice(&sum.to_be_bytes());
    let o = build(&inner, TunnelKind::Ipip, DIR, RIP, 0xbeef).unwrap();
    let b = o.as_bytes();
    assert_eq!(
        &b[4..8],
        &[0xbe, 0xef, 0, 0],
        "ID from the counter, DF clear"
    );
    assert!(checksum::ipv4_header_verifies(b));
}

#[test]
fn ecn_ce_leaves_as_ect0_and_dscp_is_copied() {
    let mut inner = hex(INNER);
    inner[1] = (46 << 2) | 3; // EF, CE
    let o = build(&inner, TunnelKind::Ipip, DIR, RIP, 0).unwrap();
    assert_eq!(o.as_bytes()[1], (46 << 2) | 2);
    inner[1] = (10 << 2) | 1; // AF11, ECT(1)
    let o = build(&inner, TunnelKind::Ipip, DIR, RIP, 0).unwrap();
    assert_eq!(o.as_bytes()[1], (10 << 2) | 1);
}

/// An IPv6 inner packet: UDP [2001:db8::1]:5000 → [2001:db8:30::10]:53, hop limit 61, traffic
/// class 0xbb (DSCP 46, CE).
fn inner_v6() -> std::vec::Vec<u8> {
    let mut p = hex("6bb00000 000c 11 3d
         20010db8000000000000000000000001
         20010db8003000000000000000000010
         1388 0035 000c 0000 61626364");
    let sum = checksum::finish(checksum::add(
        checksum::pseudo_header(&p[8..24], &p[24..40], 17, 12),
        &p[40..],
    ));
    p[46..48].copy_from_slice(&sum.to_be_bytes());
    p
}

const DIR6: IpAddr = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0x20, 0, 0, 0, 0, 1));
const RIP6: IpAddr = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0x20, 0, 0, 0, 1, 2));

#[test]
fn ipv6_in_ipv6_copies_hop_limit_and_traffic_class_with_flow_label_zero() {
    let inner = inner_v6();
    let o = build(&inner, TunnelKind::Ipip, DIR6, RIP6, 0).unwrap();
    let b = o.as_bytes();
    assert_eq!(b.len(), 40);
    assert_eq!(
        &b[..8],
        &hex("6ba00000 0034 29 3d")[..],
        "TC 46/ECT(0), flow label 0, length 52, next header 41, hop limit 61"
    );
    assert_eq!(&b[8..24], &hex("20010db8002000000000000000000001")[..]);
    assert_eq!(&b[24..40], &hex("20010db8002000000000000000010002")[..]);
}

#[test]
fn gue_and_gre_over_ipv6_carry_the_inner_protocol_and_valid_checksums() {
    let inner = inner_v6();
    let o = build(&inner, gue(GueCsum::Csum), DIR6, RIP6, 0).unwrap();
    let b = o.as_bytes();
    assert_eq!(b.len(), overhead(gue(GueCsum::Csum), true));
    assert_eq!((b[6], b[40 + 9]), (17, 41), "UDP, then GUE proto 41");
    assert!(checksum::verify_checksums(&wire(&o, &inner)));
    let o = build(&inner, TunnelKind::Gre { csum: true }, DIR6, RIP6, 0).unwrap();
    let b = o.as_bytes();
    assert_eq!((b[6], &b[40..44]), (47, &[0x80, 0, 0x86, 0xdd][..]));
    let gre_sum = checksum::add(checksum::add(0, &b[40..]), &inner);
    assert_eq!(checksum::fold(gre_sum), 0xffff, "GRE checksum verifies");
}

#[test]
fn ipv6_inside_ipv4_and_ipv4_inside_ipv6() {
    let o = build(&inner_v6(), TunnelKind::Ipip, DIR, RIP, 9).unwrap();
    let b = o.as_bytes();
    assert_eq!(
        (b[9], b[6] & 0x40, b[8]),
        (41, 0, 61),
        "protocol 41, no DF, TTL from hop limit"
    );
    assert_eq!(&b[4..6], &[0, 9]);
    let o = build(&hex(INNER), TunnelKind::Ipip, DIR6, RIP6, 0).unwrap();
    assert_eq!((o.as_bytes()[6], o.as_bytes()[7]), (4, 63));
}

#[test]
fn the_gue_source_port_is_per_flow() {
    let a = hex(INNER);
    let mut b = a.clone();
    b[20] ^= 1; // another client port
    assert_eq!(gue_source_port(&a), gue_source_port(&a.clone()));
    assert_ne!(gue_source_port(&a), gue_source_port(&b));
    let mut later = a.clone();
    later[6] = 0;
    later[7] = 10; // a later fragment: no ports to hash
    let mut later2 = later.clone();
    later2[20] ^= 1;
    assert_eq!(gue_source_port(&later), gue_source_port(&later2));
}

#[test]
fn anything_but_a_whole_ip_packet_is_refused() {
    for bad in [&[][..], &[0x45; 19][..], &[0x60; 39][..], &[0x55; 60][..]] {
        assert_eq!(
            build(bad, TunnelKind::Ipip, DIR, RIP, 0),
            Err(EncapError::NotIp)
        );
    }
    assert_eq!(
        build(&hex(INNER), TunnelKind::Ipip, DIR, RIP6, 0),
        Err(EncapError::NotIp),
        "mixed outer families"
    );
    let mut big = std::vec![0u8; 65_530];
    big[..58].copy_from_slice(&hex(INNER));
    assert_eq!(
        build(&big, gue(GueCsum::None), DIR, RIP, 0),
        Err(EncapError::TooLong)
    );
}
