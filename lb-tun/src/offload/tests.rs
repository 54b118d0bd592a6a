//! The virtio header, software checksum completion and TSO, checked with smoltcp's wire types
//! (independently of the module's own sums) and lb-testkit's packet builders.

use core::net::SocketAddr;

use lb_testkit::pkt;
use proptest::prelude::*;
use smoltcp::wire::{IpAddress, Ipv4Packet, Ipv6Packet, TcpPacket};

use super::*;

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// The L4 header's offset and the checksum field's offset from it, of a packet we built.
fn l4_of(p: &[u8]) -> (usize, usize) {
    let (l4, proto) = if p[0] >> 4 == 4 {
        (usize::from(p[0] & 0x0f) * 4, p[9])
    } else {
        (40, p[6])
    };
    (l4, if proto == pkt::UDP { 6 } else { 16 })
}

/// The partial copy of a complete TCP/UDP packet and its header: the checksum field holds the
/// folded pseudo-header sum, as the kernel hands over a CHECKSUM_PARTIAL packet.
fn partial(p: &[u8]) -> (Vec<u8>, VnetHdr) {
    let (l4, off) = l4_of(p);
    let (src, dst, proto) = if p[0] >> 4 == 4 {
        (&p[12..16], &p[16..20], p[9])
    } else {
        (&p[8..24], &p[24..40], p[6])
    };
    let len = (p.len() - l4) as u64;
    let s = pkt::sum(pkt::sum(0, src), dst) + u64::from(proto) + (len >> 16) + (len & 0xffff);
    let mut q = p.to_vec();
    q[l4 + off..l4 + off + 2].copy_from_slice(&pkt::fold(s).to_be_bytes());
    let hdr = VnetHdr {
        flags: VnetHdr::F_NEEDS_CSUM,
        csum_start: l4 as u16,
        csum_offset: off as u16,
        ..VnetHdr::NONE
    };
    (q, hdr)
}

fn payload(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 + i / 251) as u8).collect()
}

#[test]
fn header_round_trips_in_native_order() {
    let h = VnetHdr {
        flags: VnetHdr::F_NEEDS_CSUM,
        gso_type: VnetHdr::GSO_TCPV6 | VnetHdr::GSO_ECN,
        hdr_len: 0x0102,
        gso_size: 1440,
        csum_start: 40,
        csum_offset: 16,
    };
    let b = h.to_bytes();
    assert_eq!(b[0], 1);
    assert_eq!(b[1], 0x84);
    assert_eq!(&b[4..6], &1440u16.to_ne_bytes());
    assert_eq!(&b[6..8], &40u16.to_ne_bytes());
    assert_eq!(VnetHdr::parse(&b), Ok(h));
    assert!(h.needs_csum() && h.is_gso());
    assert_eq!(VnetHdr::parse(&[0; 10]), Ok(VnetHdr::NONE));
    assert!(!VnetHdr::NONE.is_gso());
}

#[test]
fn bad_headers_are_errors() {
    assert_eq!(VnetHdr::parse(&[0; 9]), Err(OffloadError::ShortHeader(9)));
    for t in [2u8, 6, 0x7f, 0x40, 0x82] {
        let mut b = VnetHdr::NONE.to_bytes();
        b[1] = t;
        b[4..6].copy_from_slice(&1000u16.to_ne_bytes());
        assert_eq!(
            VnetHdr::parse(&b),
            Err(OffloadError::UnknownGsoType(t)),
            "{t}"
        );
    }
    for t in [1u8, 3, 4, 5, 0x81] {
        let h = VnetHdr {
            gso_type: t,
            ..VnetHdr::NONE
        };
        assert_eq!(
            VnetHdr::parse(&h.to_bytes()),
            Err(OffloadError::ZeroGsoSize),
            "{t}"
        );
    }
    let h = VnetHdr {
        flags: VnetHdr::F_NEEDS_CSUM,
        csum_start: 20,
        csum_offset: 16,
        ..VnetHdr::NONE
    };
    assert_eq!(h.check(38), Ok(()));
    assert_eq!(
        h.check(37),
        Err(OffloadError::ChecksumOutside {
            start: 20,
            offset: 16,
            len: 37
        })
    );
}

/// The device's completion of a partial TCP or UDP checksum, IPv4 and IPv6, gives the
/// complete packet back.
#[test]
fn complete_checksum_finishes_a_partial_packet() {
    let data = payload(999);
    let pkts = [
        pkt::segment(
            sa("192.0.2.1:1000"),
            sa("10.0.0.1:80"),
            pkt::ACK,
            7,
            9,
            &data,
        ),
        pkt::udp(sa("192.0.2.1:1000"), sa("10.0.0.1:53"), &data[..33]),
        pkt::segment(
            sa("[2001:db8::1]:1000"),
            sa("[2001:db8::2]:80"),
            pkt::ACK,
            7,
            9,
            &data,
        ),
        pkt::udp(
            sa("[2001:db8::1]:1000"),
            sa("[2001:db8::2]:53"),
            &data[..34],
        ),
    ];
    for p in pkts {
        let (mut q, hdr) = partial(&p);
        assert_ne!(q, p);
        complete_checksum(&mut q, &hdr).unwrap();
        assert_eq!(q, p);
        // Without NEEDS_CSUM there is nothing to do.
        complete_checksum(&mut q, &VnetHdr::NONE).unwrap();
        assert_eq!(q, p);
        // A field outside the packet: an error, the packet untouched.
        let bad = VnetHdr {
            csum_start: p.len() as u16 - 1,
            ..hdr
        };
        let (mut q, _) = partial(&p);
        let before = q.clone();
        assert!(matches!(
            complete_checksum(&mut q, &bad),
            Err(OffloadError::ChecksumOutside { .. })
        ));
        assert_eq!(q, before);
    }
}

/// lb-core is told of a partial checksum only where it follows it; elsewhere it is completed.
#[test]
fn prepare_for_balancer_tells_or_completes() {
    let data = payload(100);
    let tcp4 = pkt::Tcp::new(sa("192.0.2.1:1000"), sa("10.0.0.1:80"), pkt::ACK)
        .payload(&data)
        .ip_options(2)
        .build();
    let udp6 = pkt::udp(sa("[2001:db8::1]:1000"), sa("[2001:db8::2]:53"), &data);
    for p in [&tcp4, &udp6] {
        let (mut q, hdr) = partial(p);
        let before = q.clone();
        assert_eq!(prepare_for_balancer(&mut q, &hdr), Ok(true));
        assert_eq!(q, before, "left partial for lb-core");
        let mut c = p.clone();
        assert_eq!(prepare_for_balancer(&mut c, &VnetHdr::NONE), Ok(false));
        assert_eq!(&c, p);
    }
    // A partial checksum lb-core would not find (summed from the IPv4 options on, as a
    // checksum of some other layer would be): completed here, not told.
    let (mut q, mut hdr) = partial(&tcp4);
    let l4 = hdr.csum_start;
    hdr.csum_start = 20;
    hdr.csum_offset = l4 + 16 - 20;
    let mut want = q.clone();
    complete_checksum(&mut want, &hdr).unwrap();
    assert_ne!(want, q);
    assert_eq!(prepare_for_balancer(&mut q, &hdr), Ok(false));
    assert_eq!(q, want, "completed here");
    // An IPv4 fragment: not followed by lb-core either.
    let (mut q, hdr) = partial(&tcp4);
    pkt::set_fragment(&mut q, 0, true);
    assert_eq!(prepare_for_balancer(&mut q, &hdr), Ok(false));
}

/// Checks the segments of `p` (built with `flags`, sequence number `seq`, `mss`): each a
/// complete packet whose IP and TCP checksums verify (smoltcp), payloads that concatenate to
/// the original's, sequence numbers, identifications, lengths and the flag rules.
fn check_segments(p: &[u8], segs: &[Vec<u8>], mss: usize, seq: u32, flags: u8) {
    let v6 = p[0] >> 4 == 6;
    let (hl, id) = {
        let (l4, _) = l4_of(p);
        (
            l4 + usize::from(p[l4 + 12] >> 4) * 4,
            u16::from_be_bytes([p[4], p[5]]),
        )
    };
    let body = &p[hl..];
    assert_eq!(segs.len(), body.len().div_ceil(mss).max(1));
    let mut joined = Vec::new();
    for (i, s) in segs.iter().enumerate() {
        let last = i + 1 == segs.len();
        let (tcp, src, dst) = if v6 {
            let ip = Ipv6Packet::new_checked(&s[..]).unwrap();
            assert_eq!(usize::from(ip.payload_len()) + 40, s.len());
            (
                ip.payload().to_vec(),
                IpAddress::Ipv6(ip.src_addr()),
                IpAddress::Ipv6(ip.dst_addr()),
            )
        } else {
            let ip = Ipv4Packet::new_checked(&s[..]).unwrap();
            assert!(ip.verify_checksum(), "segment {i}: IPv4 header checksum");
            assert_eq!(usize::from(ip.total_len()), s.len());
            assert_eq!(ip.ident(), id.wrapping_add(i as u16), "segment {i}: id");
            assert_eq!(
                &s[..10],
                &{
                    let mut h = p[..10].to_vec();
                    h[2..6].copy_from_slice(&s[2..6]);
                    h
                }[..]
            );
            (
                ip.payload().to_vec(),
                IpAddress::Ipv4(ip.src_addr()),
                IpAddress::Ipv4(ip.dst_addr()),
            )
        };
        let t = TcpPacket::new_checked(&tcp[..]).unwrap();
        assert!(t.verify_checksum(&src, &dst), "segment {i}: TCP checksum");
        assert_eq!(t.seq_number().0 as u32, seq.wrapping_add((i * mss) as u32));
        assert_eq!(t.fin(), last && flags & pkt::FIN != 0, "segment {i}: FIN");
        assert_eq!(t.psh(), last && flags & pkt::PSH != 0, "segment {i}: PSH");
        assert_eq!(t.cwr(), i == 0 && flags & 0x80 != 0, "segment {i}: CWR");
        assert!(t.payload().len() <= mss);
        if !last {
            assert_eq!(t.payload().len(), mss, "only the last segment is shorter");
        }
        joined.extend_from_slice(t.payload());
    }
    assert_eq!(joined, body, "the payloads concatenate to the original");
}

/// Runs `segment`, collecting the segments.
fn segments(p: &[u8], hdr: &VnetHdr) -> Result<Vec<Vec<u8>>, OffloadError> {
    let mut out = [0u8; 65536];
    let mut segs = Vec::new();
    let n = segment(p, hdr, &mut out, |s| segs.push(s.to_vec()))?;
    assert_eq!(n, segs.len());
    Ok(segs)
}

fn gso(kind: u8, mss: u16) -> VnetHdr {
    VnetHdr {
        gso_type: kind,
        gso_size: mss,
        ..VnetHdr::NONE
    }
}

#[test]
fn segments_tcp_over_ipv4_and_ipv6() {
    let data = payload(5000);
    let flags = pkt::ACK | pkt::PSH | pkt::FIN | 0x80;
    let cases = [
        (
            "192.0.2.1:40000",
            "10.0.0.1:80",
            VnetHdr::GSO_TCPV4 | VnetHdr::GSO_ECN,
        ),
        (
            "[2001:db8::1]:40000",
            "[2001:db8::2]:80",
            VnetHdr::GSO_TCPV6 | VnetHdr::GSO_ECN,
        ),
    ];
    for (src, dst, kind) in cases {
        let p = pkt::Tcp::new(sa(src), sa(dst), flags)
            .seq(0xffff_f000)
            .ack(1)
            .options(&[1, 1, 1, 1, 1, 1, 1, 1])
            .payload(&data)
            .ip_options(1)
            .build();
        for mss in [1, 536, 1448, 4999, 5000, 9000] {
            let segs = segments(&p, &gso(kind, mss)).unwrap();
            check_segments(&p, &segs, usize::from(mss), 0xffff_f000, flags);
            // The same from a partial packet, as TSO packets come.
            let (q, mut hdr) = partial(&p);
            hdr.gso_type = kind;
            hdr.gso_size = mss;
            assert_eq!(segments(&q, &hdr).unwrap(), segs, "mss {mss}");
        }
        // No payload: one segment, the packet itself.
        let bare = pkt::Tcp::new(sa(src), sa(dst), pkt::ACK | pkt::FIN).build();
        let segs = segments(&bare, &gso(kind, 1000)).unwrap();
        assert_eq!(segs, [bare]);
    }
}

#[test]
fn ipv4_identification_wraps() {
    let data = payload(300);
    let mut p = pkt::segment(sa("192.0.2.1:1"), sa("10.0.0.1:80"), pkt::ACK, 1, 1, &data);
    p[4..6].copy_from_slice(&0xfffeu16.to_be_bytes());
    pkt::refresh_ipv4_checksum(&mut p);
    let segs = segments(&p, &gso(VnetHdr::GSO_TCPV4, 100)).unwrap();
    let ids: Vec<u16> = segs
        .iter()
        .map(|s| u16::from_be_bytes([s[4], s[5]]))
        .collect();
    assert_eq!(ids, [0xfffe, 0xffff, 0]);
    check_segments(&p, &segs, 100, 1, pkt::ACK);
}

#[test]
fn what_cannot_be_segmented_is_an_error() {
    let data = payload(3000);
    let v4 = pkt::segment(sa("192.0.2.1:1"), sa("10.0.0.1:80"), pkt::ACK, 1, 1, &data);
    let v6 = pkt::segment(
        sa("[2001:db8::1]:1"),
        sa("[2001:db8::2]:80"),
        pkt::ACK,
        1,
        1,
        &data,
    );
    let udp = pkt::udp(sa("192.0.2.1:1"), sa("10.0.0.1:53"), &data);
    let e = |p: &[u8], h: VnetHdr| segments(p, &h).unwrap_err();
    assert_eq!(
        e(&v4, gso(VnetHdr::GSO_UDP_L4, 1000)),
        OffloadError::GsoMismatch
    );
    assert_eq!(
        e(&udp, gso(VnetHdr::GSO_UDP, 1000)),
        OffloadError::UnsupportedGso(3)
    );
    assert_eq!(e(&v4, VnetHdr::NONE), OffloadError::UnsupportedGso(0));
    assert_eq!(
        e(&udp, gso(VnetHdr::GSO_TCPV4, 1000)),
        OffloadError::GsoMismatch
    );
    assert_eq!(
        e(&v4, gso(VnetHdr::GSO_TCPV6, 1000)),
        OffloadError::GsoMismatch
    );
    assert_eq!(
        e(&v6, gso(VnetHdr::GSO_TCPV4, 1000)),
        OffloadError::GsoMismatch
    );
    assert_eq!(
        e(&v4, gso(VnetHdr::GSO_TCPV4, 0)),
        OffloadError::ZeroGsoSize
    );
    assert_eq!(e(&v4, gso(0x42, 10)), OffloadError::UnknownGsoType(0x42));
    assert_eq!(
        e(&v4[..100], gso(VnetHdr::GSO_TCPV4, 10)),
        OffloadError::Malformed
    );
    let mut frag = v4.clone();
    pkt::set_fragment(&mut frag, 0, true);
    assert_eq!(
        e(&frag, gso(VnetHdr::GSO_TCPV4, 1000)),
        OffloadError::Malformed
    );
    // A hop-by-hop options header in front of TCP.
    let ext = pkt::ipv6_ext(&v6, 0, &[0; 7]);
    assert_eq!(
        e(&ext, gso(VnetHdr::GSO_TCPV6, 1000)),
        OffloadError::Ipv6ExtensionHeaders
    );
    // A buffer too small for one segment: nothing emitted.
    let mut out = [0u8; 1000];
    let mut emitted = 0;
    let r = segment(&v4, &gso(VnetHdr::GSO_TCPV4, 1448), &mut out, |_| {
        emitted += 1
    });
    assert_eq!(
        r,
        Err(OffloadError::BufferTooSmall {
            need: 40 + 1448,
            have: 1000
        })
    );
    assert_eq!(emitted, 0);
    // A checksum field outside the packet.
    let mut h = gso(VnetHdr::GSO_TCPV4, 1000);
    h.flags = VnetHdr::F_NEEDS_CSUM;
    h.csum_start = u16::MAX;
    assert!(matches!(e(&v4, h), OffloadError::ChecksumOutside { .. }));
}

fn any_hdr() -> impl Strategy<Value = VnetHdr> {
    (
        any::<u8>(),
        prop_oneof![Just(1u8), Just(4), Just(0x81), Just(0x84), any::<u8>()],
        any::<u16>(),
        prop_oneof![1u16..2000, any::<u16>()],
        prop_oneof![0u16..80, any::<u16>()],
        prop_oneof![Just(16u16), Just(6), any::<u16>()],
    )
        .prop_map(
            |(flags, gso_type, hdr_len, gso_size, csum_start, csum_offset)| VnetHdr {
                flags,
                gso_type,
                hdr_len,
                gso_size,
                csum_start,
                csum_offset,
            },
        )
}

proptest! {
    /// Arbitrary bytes and headers: errors, never a panic, whatever the entry point.
    #[test]
    fn arbitrary_input_never_panics(
        raw in proptest::collection::vec(any::<u8>(), 0..200),
        hdr in any_hdr(),
        out_len in 0usize..3000,
        v6 in any::<bool>(),
    ) {
        let _ = VnetHdr::parse(&raw);
        let mut p = raw.clone();
        // Half the time, a plausible IP header in front.
        if v6 && p.len() >= 40 {
            p[0] = 0x60;
        } else if p.len() >= 20 {
            p[0] = 0x45;
        }
        let mut out = std::vec![0u8; out_len];
        let _ = segment(&p, &hdr, &mut out, |s| assert!(s.len() <= out_len));
        let _ = complete_checksum(&mut p.clone(), &hdr);
        let _ = prepare_for_balancer(&mut p, &hdr);
    }

    /// Well-formed TCP packets of any size, MSS and flags: the segments hold every rule.
    #[test]
    fn segments_of_any_packet_check_out(
        len in 0usize..20_000,
        mss in 1u16..3000,
        flags in any::<u8>(),
        seq in any::<u32>(),
        v6 in any::<bool>(),
        opt_words in 0usize..10,
    ) {
        let data = payload(len);
        let (src, dst, kind) = if v6 {
            ("[2001:db8::1]:40000", "[2001:db8::2]:80", VnetHdr::GSO_TCPV6)
        } else {
            ("192.0.2.1:40000", "10.0.0.1:80", VnetHdr::GSO_TCPV4)
        };
        let opts = [1u8; 40];
        let p = pkt::Tcp::new(sa(src), sa(dst), flags)
            .seq(seq)
            .options(&opts[..4 * opt_words])
            .payload(&data)
            .build();
        let segs = segments(&p, &gso(kind, mss)).unwrap();
        check_segments(&p, &segs, usize::from(mss), seq, flags);
    }
}

/// USO: a UDP packet of `GSO_UDP_L4` is cut into datagrams of `gso_size` bytes, each with its
/// own length and a checksum smoltcp verifies, over IPv4 (identifications counted up) and IPv6,
/// partial or not.
#[test]
fn segments_udp_over_ipv4_and_ipv6() {
    use smoltcp::wire::UdpPacket;
    let data = payload(4000);
    for (src, dst) in [
        ("192.0.2.1:4000", "10.0.0.1:53"),
        ("[2001:db8::1]:4000", "[2001:db8::2]:53"),
    ] {
        let p = pkt::udp(sa(src), sa(dst), &data);
        for mss in [1, 1000, 1472, 3999, 4000, 9000] {
            let segs = segments(&p, &gso(VnetHdr::GSO_UDP_L4, mss)).unwrap();
            let mss = usize::from(mss);
            assert_eq!(segs.len(), data.len().div_ceil(mss));
            let mut joined = Vec::new();
            for (i, s) in segs.iter().enumerate() {
                let (l4, sa_, da) = if s[0] >> 4 == 4 {
                    let ip = Ipv4Packet::new_checked(&s[..]).unwrap();
                    assert!(ip.verify_checksum());
                    assert_eq!(
                        ip.ident(),
                        u16::from_be_bytes([p[4], p[5]]).wrapping_add(i as u16)
                    );
                    (
                        &s[20..],
                        IpAddress::from(ip.src_addr()),
                        IpAddress::from(ip.dst_addr()),
                    )
                } else {
                    let ip = Ipv6Packet::new_checked(&s[..]).unwrap();
                    assert_eq!(usize::from(ip.payload_len()), s.len() - 40);
                    (
                        &s[40..],
                        IpAddress::from(ip.src_addr()),
                        IpAddress::from(ip.dst_addr()),
                    )
                };
                let u = UdpPacket::new_checked(l4).unwrap();
                assert_eq!(usize::from(u.len()), l4.len());
                assert!(u.verify_checksum(&sa_, &da), "segment {i} of mss {mss}");
                assert!(u.payload().len() <= mss);
                joined.extend_from_slice(u.payload());
            }
            assert_eq!(joined, data);
            let (q, mut hdr) = partial(&p);
            hdr.gso_type = VnetHdr::GSO_UDP_L4;
            hdr.gso_size = mss as u16;
            assert_eq!(segments(&q, &hdr).unwrap(), segs, "partial, mss {mss}");
        }
    }
}

/// A TCP packet whose data offset is under 20 bytes is malformed, whatever the UDP header's
/// smaller minimum (found by the `offload` fuzz target once USO was added).
#[test]
fn a_tcp_data_offset_under_20_is_malformed() {
    let data = payload(3000);
    for src_dst in [
        ("192.0.2.1:1", "10.0.0.1:80"),
        ("[2001:db8::1]:1", "[2001:db8::2]:80"),
    ] {
        let mut p = pkt::segment(sa(src_dst.0), sa(src_dst.1), pkt::ACK, 1, 1, &data);
        let l4 = if p[0] >> 4 == 4 { 20 } else { 40 };
        let kind = if p[0] >> 4 == 4 {
            VnetHdr::GSO_TCPV4
        } else {
            VnetHdr::GSO_TCPV6
        };
        for doff in 0..5u8 {
            p[l4 + 12] = doff << 4;
            assert_eq!(
                segments(&p, &gso(kind, 1000)),
                Err(OffloadError::Malformed),
                "data offset {doff}"
            );
        }
    }
}
