//! Packets with a partial TCP/UDP checksum ([`Packet::csum_partial`], Linux's
//! CHECKSUM_PARTIAL): each test runs a complete packet and its partial copy (the checksum field
//! holding the pseudo-header's folded sum) through two identical balancers, completes the
//! partial output as a device would, and compares it byte for byte with the complete output.
//! A tunnelled partial packet leaves complete; direct routing and passing leave it partial;
//! generated replies are complete.

use std::vec::Vec;

use super::test_support::{empty_balancer, rr_service, sa, service_key};
use super::*;
use crate::config::{ForwardMethod, ServiceConfig};
use crate::config::{GueCsum, TunnelKind};
use crate::tcp::flags::{ACK, PSH, SYN};
use crate::verdict::Verdict;
use lb_testkit::pkt;

/// The offset of the TCP/UDP checksum field of `p` (an IPv4 header of any length, or IPv6
/// without extension headers), and that of its L4 header.
fn l4_field(p: &[u8]) -> (usize, usize) {
    let (l4, proto) = if p[0] >> 4 == 4 {
        (usize::from(p[0] & 0x0f) * 4, p[9])
    } else {
        (40, p[6])
    };
    let field = match proto {
        pkt::TCP => 16,
        pkt::UDP => 6,
        other => panic!("not TCP/UDP: {other}"),
    };
    (l4, l4 + field)
}

/// The partial copy of a complete TCP/UDP packet: its checksum field holds the folded sum of
/// the pseudo-header alone, as a kernel hands over a CHECKSUM_PARTIAL packet.
fn partial_copy(p: &[u8]) -> Vec<u8> {
    let (l4, field) = l4_field(p);
    let (src, dst, proto) = if p[0] >> 4 == 4 {
        (&p[12..16], &p[16..20], p[9])
    } else {
        (&p[8..24], &p[24..40], p[6])
    };
    let len = (p.len() - l4) as u64;
    let pseudo = pkt::sum(pkt::sum(0, src), dst) + u64::from(proto) + (len >> 16) + (len & 0xffff);
    let mut out = p.to_vec();
    out[field..field + 2].copy_from_slice(&pkt::fold(pseudo).to_be_bytes());
    out
}

/// What a device does with a partial packet: sums from the L4 header to the end, with the
/// field in place, and stores the complement (0 as 0xffff).
fn device_complete(p: &[u8]) -> Vec<u8> {
    let (l4, field) = l4_field(p);
    let mut out = p.to_vec();
    let sum = match !pkt::fold(pkt::sum(0, &p[l4..])) {
        0 => 0xffff,
        s => s,
    };
    out[field..field + 2].copy_from_slice(&sum.to_be_bytes());
    out
}

/// A balancer with one NAT service at `vip` (TCP, or UDP if `udp`) to `server` (a port
/// rewrite), or with `method` to it.
fn balancer(vip: &str, udp: bool, server: &str, method: ForwardMethod) -> Balancer<'static> {
    let settings = Settings {
        tunnel_source_v4: Some("10.1.0.254".parse().unwrap()),
        tunnel_source_v6: Some("2001:db8:1::fe".parse().unwrap()),
        direct_routing: true,
        ..Settings::default()
    };
    let cfg = ServiceConfig::new(service_key(vip, udp));
    rr_service(empty_balancer(64, settings), cfg, &[(server, method)])
}

/// `pkt` through `b` by `process_packet` (with `headroom` bytes in front, `partial` as its
/// flag): the verdict, the bytes to send and the flag on return.
fn run(
    b: &mut Balancer<'_>,
    pkt: &[u8],
    partial: bool,
    headroom: usize,
) -> (Verdict, Vec<u8>, bool) {
    let mut buf = std::vec![0u8; 2048];
    buf[headroom..headroom + pkt.len()].copy_from_slice(pkt);
    let mut p = Packet {
        buf: &mut buf,
        start: headroom,
        len: pkt.len(),
        csum_partial: partial,
    };
    let v = b.process_packet(Instant::from_millis(1), &mut p);
    let flag = p.csum_partial;
    let out = v
        .transmit()
        .map_or_else(Vec::new, |t| buf[t.range()].to_vec());
    (v, out, flag)
}

/// The same packets as [`run`], as one burst.
fn run_burst(b: &mut Balancer<'_>, pkts: &[(Vec<u8>, bool)]) -> Vec<(Verdict, Vec<u8>, bool)> {
    let mut bufs: Vec<Vec<u8>> = pkts
        .iter()
        .map(|(p, _)| {
            let mut buf = p.clone();
            buf.resize(2048, 0);
            buf
        })
        .collect();
    let mut batch: Vec<Packet<'_>> = bufs
        .iter_mut()
        .zip(pkts)
        .map(|(buf, (p, partial))| Packet {
            buf,
            start: 0,
            len: p.len(),
            csum_partial: *partial,
        })
        .collect();
    let mut verdicts = std::vec![Verdict::Drop(DropReason::Malformed); pkts.len()];
    let now = Instant::from_millis(1);
    b.process_burst(now, &mut batch, &mut verdicts);
    let flags: Vec<bool> = batch.iter().map(|p| p.csum_partial).collect();
    drop(batch);
    verdicts
        .iter()
        .zip(bufs.iter().zip(flags))
        .map(|(v, (buf, f))| {
            let out = v
                .transmit()
                .map_or_else(Vec::new, |t| buf[t.range()].to_vec());
            (*v, out, f)
        })
        .collect()
}

/// A NAT flow's packets in both directions: handshake (the general path: state changes)
/// and data (the fast path), TCP or UDP, over the family of `vip`.
fn flow(udp: bool, client: &str, vip: &str, server: &str) -> Vec<Vec<u8>> {
    let (c, v, s) = (sa(client), sa(vip), sa(server));
    let data = [0x5au8; 301];
    if udp {
        return std::vec![
            pkt::udp(c, v, &data),
            pkt::udp(s, c, &data[..100]),
            pkt::udp(c, v, &data[..17]),
            pkt::udp(s, c, &data),
            pkt::udp(c, v, &data),
        ];
    }
    std::vec![
        pkt::segment(c, v, SYN, 100, 0, &[]),
        pkt::segment(s, c, SYN | ACK, 500, 101, &[]),
        pkt::segment(c, v, ACK, 101, 501, &[]),
        pkt::segment(c, v, ACK | PSH, 101, 501, &data),
        pkt::segment(s, c, ACK | PSH, 501, 402, &data[..77]),
        pkt::segment(c, v, ACK, 402, 578, &data[..1]),
        pkt::segment(s, c, ACK, 578, 403, &data),
    ]
}

const CASES: [(bool, &str, &str, &str); 4] = [
    (false, "192.0.2.1:40000", "10.0.0.100:80", "10.1.0.1:8080"),
    (true, "192.0.2.1:40000", "10.0.0.100:53", "10.1.0.1:5353"),
    (
        false,
        "[2001:db8:c::1]:40000",
        "[2001:db8::100]:80",
        "[2001:db8:1::1]:8080",
    ),
    (
        true,
        "[2001:db8:c::1]:40000",
        "[2001:db8::100]:53",
        "[2001:db8:1::1]:5353",
    ),
];

/// NAT both ways, TCP and UDP, IPv4 and IPv6, general and fast path: the partial packet's
/// output, completed, is the complete packet's output, byte for byte; it is still partial.
#[test]
fn nat_keeps_a_partial_checksum_consistent() {
    for (udp, client, vip, server) in CASES {
        let (mut full, mut part) = (
            balancer(vip, udp, server, ForwardMethod::Masq),
            balancer(vip, udp, server, ForwardMethod::Masq),
        );
        for (i, p) in flow(udp, client, vip, server).iter().enumerate() {
            let what = std::format!("{vip} udp={udp} packet {i}");
            let (v, out, flag) = run(&mut full, p, false, 0);
            assert!(
                matches!(v, Verdict::ToServer(_) | Verdict::ToClient(_)),
                "{what}: {v:?}"
            );
            assert!(
                pkt::checksums_ok(&out),
                "{what}: the complete output verifies"
            );
            assert!(!flag, "{what}: a complete packet stays complete");
            let (pv, pout, pflag) = run(&mut part, &partial_copy(p), true, 0);
            assert_eq!(pv, v, "{what}");
            assert!(pflag, "{what}: the output is still partial");
            assert_eq!(device_complete(&pout), out, "{what}");
        }
    }
}

/// The same through `process_burst`, partial and complete packets mixed in one burst.
#[test]
fn a_burst_keeps_partial_checksums_consistent() {
    for (udp, client, vip, server) in CASES {
        let pkts = flow(udp, client, vip, server);
        let mut full = balancer(vip, udp, server, ForwardMethod::Masq);
        let want: Vec<_> = pkts.iter().map(|p| run(&mut full, p, false, 0)).collect();
        let mut part = balancer(vip, udp, server, ForwardMethod::Masq);
        let mixed: Vec<(Vec<u8>, bool)> = pkts
            .iter()
            .enumerate()
            .map(|(i, p)| match i % 3 {
                2 => (p.clone(), false),
                _ => (partial_copy(p), true),
            })
            .collect();
        let got = run_burst(&mut part, &mixed);
        for (i, ((v, out, _), (gv, gout, gflag))) in want.iter().zip(&got).enumerate() {
            let what = std::format!("{vip} udp={udp} packet {i}");
            assert_eq!(gv, v, "{what}");
            assert_eq!(*gflag, mixed[i].1, "{what}: partial in, partial out");
            let done = if *gflag {
                device_complete(gout)
            } else {
                gout.clone()
            };
            assert_eq!(&done, out, "{what}");
        }
    }
}

/// A tunnelled partial packet leaves complete, in every tunnel kind and either family, by
/// `process` (the packet moved) and with headroom (nothing moved): its inner checksum verifies
/// and the inner packet is the original complete one; a GUE or GRE checksum over it verifies.
#[test]
fn a_tunnelled_partial_packet_leaves_complete() {
    let kinds = [
        TunnelKind::Ipip,
        TunnelKind::Gue {
            port: 6080,
            csum: GueCsum::Csum,
        },
        TunnelKind::Gre { csum: true },
    ];
    for (udp, client, vip, server) in CASES {
        // A tunnel keeps the port: the real server listens on the VIP's.
        let rip = std::format!("{}", SocketAddr::new(sa(server).ip(), sa(vip).port()));
        for kind in kinds {
            for headroom in [0, 64] {
                let what = std::format!("{vip} udp={udp} {kind:?} headroom {headroom}");
                let mut b = balancer(vip, udp, &rip, ForwardMethod::Tunnel(kind));
                let p = &flow(udp, client, vip, server)[0];
                let (v, out, flag) = run(&mut b, &partial_copy(p), true, headroom);
                assert!(matches!(v, Verdict::ToServer(_)), "{what}: {v:?}");
                assert!(!flag, "{what}: the tunnelled packet is complete");
                let hl = out.len() - p.len();
                assert_eq!(&out[hl..], &p[..], "{what}: the inner packet, completed");
                assert!(
                    crate::checksum::verify_checksums(&out),
                    "{what}: outer checksums"
                );
            }
        }
    }
}

/// Direct routing and a packet passed on leave the packet as it came, partial; a generated
/// reply (a RST for a closed VIP port) is complete.
#[test]
fn routed_and_passed_packets_stay_partial_and_replies_are_complete() {
    for (udp, client, vip, server) in CASES {
        let rip = std::format!("{}", SocketAddr::new(sa(server).ip(), sa(vip).port()));
        let mut b = balancer(vip, udp, &rip, ForwardMethod::Route);
        let p = partial_copy(&flow(udp, client, vip, server)[0]);
        let (v, out, flag) = run(&mut b, &p, true, 16);
        assert!(matches!(v, Verdict::ToServer(t) if t.start == 16), "{v:?}");
        assert!(
            flag && out == p,
            "{vip} udp={udp}: DR sends it unchanged, partial"
        );

        // Not for a service: passed as it is.
        let other = SocketAddr::new(sa(server).ip(), 9);
        let q = if udp {
            pkt::udp(sa(client), other, b"x")
        } else {
            pkt::segment(sa(client), other, SYN, 1, 0, &[])
        };
        let (v, out, flag) = run(&mut b, &partial_copy(&q), true, 0);
        assert!(matches!(v, Verdict::Pass(_)), "{v:?}");
        assert!(
            flag && out == partial_copy(&q),
            "{vip} udp={udp}: passed, partial"
        );

        // The VIP on a port with no service: answered (RST or ICMP port unreachable).
        let mut closed = sa(vip);
        closed.set_port(81);
        let q = if udp {
            pkt::udp(sa(client), closed, b"x")
        } else {
            pkt::segment(sa(client), closed, SYN, 1, 0, &[])
        };
        let (v, out, flag) = run(&mut b, &partial_copy(&q), true, 0);
        assert!(matches!(v, Verdict::Reply(_)), "{v:?}");
        assert!(!flag, "{vip} udp={udp}: a generated reply is complete");
        assert!(
            pkt::checksums_ok(&out),
            "{vip} udp={udp}: the reply verifies"
        );
    }
}

/// The partial update is the kernel's for CHECKSUM_PARTIAL: the field gains `~old + new` of
/// each address word and nothing for the port; the complete update would be different.
#[test]
fn the_partial_field_changes_by_the_address_alone() {
    let (udp, client, vip, server) = CASES[0];
    let mut b = balancer(vip, udp, server, ForwardMethod::Masq);
    let p = partial_copy(&flow(udp, client, vip, server)[0]);
    let (_, out, _) = run(&mut b, &p, true, 0);
    let field = |q: &[u8]| u64::from(u16::from_be_bytes([q[36], q[37]]));
    let words = |q: &[u8]| {
        [
            u16::from_be_bytes([q[16], q[17]]),
            u16::from_be_bytes([q[18], q[19]]),
        ]
    };
    let mut want = field(&p);
    for (old, new) in words(&p).into_iter().zip(words(&out)) {
        want += u64::from(!old) + u64::from(new);
    }
    assert_eq!(field(&out), u64::from(pkt::fold(want)));
    assert_ne!(&out[22..24], &p[22..24], "the port was rewritten");
}

/// IPv4 options (the general path reads them; the L4 header moves back) and headroom in front
/// of the packet: the partial output, completed, is still the complete one's, and has not moved.
#[test]
fn ip_options_and_headroom() {
    let (udp, client, vip, server) = CASES[0];
    let (mut full, mut part) = (
        balancer(vip, udp, server, ForwardMethod::Masq),
        balancer(vip, udp, server, ForwardMethod::Masq),
    );
    let data = [7u8; 99];
    let (c, v, s) = (sa(client), sa(vip), sa(server));
    let pkts = [
        pkt::Tcp::new(c, v, SYN).seq(1).ip_options(2).build(),
        pkt::Tcp::new(s, c, SYN | ACK)
            .seq(9)
            .ack(2)
            .ip_options(1)
            .build(),
        pkt::Tcp::new(c, v, ACK)
            .seq(2)
            .ack(10)
            .payload(&data)
            .ip_options(3)
            .build(),
    ];
    for (i, p) in pkts.iter().enumerate() {
        let (v, out, _) = run(&mut full, p, false, 0);
        assert!(pkt::checksums_ok(&out), "packet {i}");
        let (pv, pout, pflag) = run(&mut part, &partial_copy(p), true, 48);
        assert!(pflag, "packet {i}");
        assert_eq!(
            pv.transmit().map(|t| t.start),
            Some(48),
            "packet {i}: not moved"
        );
        assert_eq!(pv.transmit().map(|t| t.dst), v.transmit().map(|t| t.dst));
        assert_eq!(device_complete(&pout), out, "packet {i}");
    }
}
