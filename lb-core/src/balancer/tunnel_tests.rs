//! Tunnels (`-i`) through the datapath: the packet leaves unchanged behind outer headers to its
//! real server (IPIP, GUE, GRE, each checksum option, IPv4 and IPv6), placed in the headroom
//! by `process_at` or by moving the packet in `process`; the connection runs on INPUT_ONLY as a
//! DR one does; packets over the path MTU get the kernel's ICMP answer; ICMP errors and later
//! fragments follow the connection into its tunnel.

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::format;
use std::vec::Vec;

use super::test_support::{empty_balancer, rr_service, sa, service_key};
use super::*;
use crate::config::{ForwardMethod, GueCsum, ServerConfig, ServiceConfig, ServiceKey, TunnelKind};
use crate::ipvsadm::{parse_line, Command};
use crate::tcp::flags::{ACK, FIN, SYN};
use crate::tunnel;
use crate::verdict::{DropReason, Transmit, Verdict};
use lb_testkit::pkt;

const VIP: &str = "10.0.0.100:80";
const VIP6: &str = "[2001:db8::100]:80";
const CLIENT: &str = "192.0.2.1:40000";
const CLIENT6: &str = "[2001:db8:c::1]:40000";
const SRC4: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 254);
const SRC6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0xfe);

fn settings() -> Settings {
    Settings {
        tunnel_source_v4: Some(SRC4),
        tunnel_source_v6: Some(SRC6),
        ..Settings::default()
    }
}

/// rr over `servers` (address, method) at `vip` (TCP, or UDP if `udp`).
fn balancer_with(vip: &str, udp: bool, servers: &[(&str, ForwardMethod)]) -> Balancer<'static> {
    let cfg = ServiceConfig::new(service_key(vip, udp));
    rr_service(empty_balancer(1024, settings()), cfg, servers)
}

fn tunnel(kind: TunnelKind) -> ForwardMethod {
    ForwardMethod::Tunnel(kind)
}

const KINDS: [TunnelKind; 6] = [
    TunnelKind::Ipip,
    TunnelKind::Gue {
        port: 6080,
        csum: GueCsum::None,
    },
    TunnelKind::Gue {
        port: 6080,
        csum: GueCsum::Csum,
    },
    TunnelKind::Gue {
        port: 6080,
        csum: GueCsum::RemCsum,
    },
    TunnelKind::Gre { csum: false },
    TunnelKind::Gre { csum: true },
];

/// Runs `pkt` through `b` by `process` in a buffer with room after it: the verdict and the
/// bytes it says to send.
fn run(b: &mut Balancer<'_>, now: Instant, pkt: &[u8]) -> (Verdict, Vec<u8>) {
    let mut buf = pkt.to_vec();
    buf.resize(2048, 0);
    let v = b.process(now, &mut buf, pkt.len());
    let out = v
        .transmit()
        .map_or_else(Vec::new, |t| buf[t.range()].to_vec());
    (v, out)
}

/// Checks that `out` is `inner` behind the outer headers of `kind` from `src` to `rip`, field by
/// field, as an independent decoder reads them.
fn check_outer(out: &[u8], inner: &[u8], kind: TunnelKind, src: IpAddr, rip: IpAddr) {
    let hl = tunnel::overhead(kind, rip.is_ipv6());
    assert_eq!(out.len(), hl + inner.len(), "{kind:?}");
    assert_eq!(&out[hl..], inner, "{kind:?}: the inner packet is unchanged");
    let inner_v6 = inner[0] >> 4 == 6;
    let (proto, ip_len) = if rip.is_ipv6() {
        assert_eq!(out[0] >> 4, 6);
        assert_eq!(
            usize::from(u16::from_be_bytes([out[4], out[5]])),
            out.len() - 40
        );
        assert_eq!(&out[8..24], &crate::addr::addr_bytes(src)[..]);
        assert_eq!(&out[24..40], &crate::addr::addr_bytes(rip)[..]);
        (out[6], 40)
    } else {
        assert_eq!(out[0], 0x45);
        assert_eq!(usize::from(u16::from_be_bytes([out[2], out[3]])), out.len());
        assert!(pkt::checksums_ok(&out[..20]) || crate::checksum::ipv4_header_verifies(&out[..20]));
        assert_eq!(&out[12..16], &crate::addr::addr_bytes(src)[..4]);
        assert_eq!(&out[16..20], &crate::addr::addr_bytes(rip)[..4]);
        (out[9], 20)
    };
    let inner_proto = if inner_v6 { 41 } else { 4 };
    match kind {
        TunnelKind::Ipip => assert_eq!(proto, inner_proto),
        TunnelKind::Gue { port, csum } => {
            assert_eq!(proto, 17);
            let u = &out[ip_len..];
            assert_eq!(u16::from_be_bytes([u[2], u[3]]), port);
            assert_eq!(
                usize::from(u16::from_be_bytes([u[4], u[5]])),
                out.len() - ip_len
            );
            assert_eq!(&u[8..12], &[0, inner_proto, 0, 0]);
            let sum = u16::from_be_bytes([u[6], u[7]]);
            if csum == GueCsum::None {
                assert_eq!(sum, 0);
            } else {
                assert!(
                    crate::checksum::verify_checksums(out),
                    "{kind:?}: UDP checksum"
                );
            }
        }
        TunnelKind::Gre { csum } => {
            assert_eq!(proto, 47);
            let g = &out[ip_len..];
            let et: u16 = if inner_v6 { 0x86dd } else { 0x0800 };
            assert_eq!(u16::from_be_bytes([g[2], g[3]]), et);
            assert_eq!(g[0], if csum { 0x80 } else { 0 });
            if csum {
                let s = crate::checksum::add(0, g);
                assert_eq!(crate::checksum::fold(s), 0xffff, "GRE checksum");
            }
        }
    }
}

#[test]
fn apply_takes_tunnels_only_with_an_outer_source_of_the_servers_family() {
    let line = |l: &str| parse_line(l).unwrap().unwrap();
    let mut b = empty_balancer(64, Settings::default());
    b.apply(Instant::ZERO, &line("-A -t 10.0.0.100:80 -s rr"))
        .unwrap();
    b.apply(Instant::ZERO, &line("-A -t [2001:db8::100]:80 -s rr"))
        .unwrap();
    for opts in [
        "",
        "--tun-type gue --tun-port 6080",
        "--tun-type gre --tun-csum",
    ] {
        let cmd = line(&format!("-a -t 10.0.0.100:80 -r 10.1.0.2 -i {opts}"));
        let err = b.apply(Instant::ZERO, &cmd).unwrap_err();
        assert!(format!("{err}").contains("--tunnel-source"), "{err}");
    }
    b.set_settings(Settings {
        tunnel_source_v4: Some(SRC4),
        ..Settings::default()
    });
    b.apply(Instant::ZERO, &line("-a -t 10.0.0.100:80 -r 10.1.0.2 -i"))
        .unwrap();
    let err = b
        .apply(
            Instant::ZERO,
            &line("-a -t [2001:db8::100]:80 -r [2001:db8:1::2] -i"),
        )
        .unwrap_err();
    assert!(format!("{err}").contains("IPv6"), "{err}");
}

/// A whole tunnel connection, for every tunnel kind, through the fast path (`process`) and the
/// general path: every packet leaves unchanged inside outer headers to the real server, and
/// the state follows INPUT_ONLY as for DR (an orderly close ends in FIN_WAIT).
#[test]
fn a_tunnel_connection_runs_on_input_only_inside_its_tunnel() {
    for kind in KINDS {
        let servers = [("10.1.0.1:80", tunnel(kind))];
        let mut fast = balancer_with(VIP, false, &servers);
        let mut general = balancer_with(VIP, false, &servers);
        let (c, v) = (sa(CLIENT), sa(VIP));
        let steps: [(u8, &[u8], &str); 4] = [
            (SYN, b"", "SYN_RECV"),
            (ACK, b"", "ESTABLISHED"),
            (ACK, b"GET / HTTP/1.0\r\n\r\n", "ESTABLISHED"),
            (FIN | ACK, b"", "FIN_WAIT"),
        ];
        for (i, &(flags, data, want)) in steps.iter().enumerate() {
            let now = Instant::from_secs(i as u64);
            let p = pkt::segment(c, v, flags, 1000 + i as u32, 1, data);
            let (vf, out) = run(&mut fast, now, &p);
            let hl = tunnel::overhead(kind, false);
            assert_eq!(
                vf,
                Verdict::ToServer(Transmit {
                    dst: sa("10.1.0.1:80").ip(),
                    start: 0,
                    len: p.len() + hl
                }),
                "{kind:?} step {i}"
            );
            check_outer(&out, &p, kind, IpAddr::V4(SRC4), sa("10.1.0.1:80").ip());
            let mut buf = p.clone();
            buf.resize(2048, 0);
            let vg = general.process_general(now, &mut buf, p.len());
            assert_eq!(
                (vg, &buf[..out.len()]),
                (vf, &out[..]),
                "{kind:?} step {i}: both paths agree"
            );
            let c0: Vec<_> = fast.connections(now).map(|c| c.state).collect();
            assert_eq!(c0, [want], "{kind:?} step {i}");
            let c1: Vec<_> = general.connections(now).map(|c| c.state).collect();
            assert_eq!(c1, [want], "{kind:?} step {i}");
        }
        assert_eq!(fast.counters().tunnelled, 4);
    }
}

/// `process_at` puts the headers into the headroom: the packet does not move, the verdict's
/// range starts before it. With too little headroom the packet moves back; with no room at
/// all, a counted drop.
#[test]
fn headroom_takes_the_headers_without_moving_the_packet() {
    let kind = TunnelKind::Gue {
        port: 6080,
        csum: GueCsum::Csum,
    };
    let mut b = balancer_with(VIP, false, &[("10.1.0.1:80", tunnel(kind))]);
    let p = pkt::segment(sa(CLIENT), sa(VIP), SYN, 1, 0, b"");
    let hl = tunnel::overhead(kind, false);
    let mut buf = std::vec![0xaa; 64];
    buf.extend_from_slice(&p);
    let v = b.process_at(Instant::ZERO, &mut buf, 64, p.len());
    let Verdict::ToServer(t) = v else {
        panic!("{v:?}")
    };
    assert_eq!((t.start, t.len), (64 - hl, p.len() + hl));
    assert_eq!(&buf[64..], &p[..], "the packet did not move");
    check_outer(
        &buf[t.range()],
        &p,
        kind,
        IpAddr::V4(SRC4),
        sa("10.1.0.1:80").ip(),
    );
    assert!(
        buf[..64 - hl].iter().all(|&x| x == 0xaa),
        "nothing written before the headers"
    );

    // 10 bytes of headroom: moved back by the headers' length, from the headroom on.
    let mut buf = std::vec![0xaa; 10];
    buf.extend_from_slice(&p);
    buf.resize(10 + p.len() + hl, 0);
    let ack = pkt::segment(sa(CLIENT), sa(VIP), ACK, 2, 1, b"");
    buf[10..10 + ack.len()].copy_from_slice(&ack);
    let v = b.process_at(Instant::ZERO, &mut buf, 10, ack.len());
    let Verdict::ToServer(t) = v else {
        panic!("{v:?}")
    };
    assert_eq!(t.start, 10);
    check_outer(
        &buf[t.range()],
        &ack,
        kind,
        IpAddr::V4(SRC4),
        sa("10.1.0.1:80").ip(),
    );

    // No room in front nor after: dropped, counted.
    let mut buf = ack.clone();
    let v = b.process(Instant::ZERO, &mut buf, ack.len());
    assert_eq!(v, Verdict::Drop(DropReason::NoHeadroom));
    assert_eq!(b.counters().drops(DropReason::NoHeadroom), 1);

    // Other verdicts of process_at are shifted too: a NAT reply... here, a passed packet.
    let other = pkt::segment(sa("192.0.2.9:1"), sa("198.51.100.1:2"), ACK, 1, 1, b"");
    let mut buf = std::vec![0; 32];
    buf.extend_from_slice(&other);
    let v = b.process_at(Instant::ZERO, &mut buf, 32, other.len());
    assert_eq!(v.transmit().map(|t| t.range()), Some(32..32 + other.len()));
}

/// A burst with headroom gives the same bytes and verdicts as `process_at` packet by packet.
#[test]
fn a_burst_places_the_headers_as_process_at_does() {
    let kind = TunnelKind::Gre { csum: true };
    let servers = [
        ("10.1.0.1:80", tunnel(kind)),
        ("10.1.0.2:80", ForwardMethod::Masq),
    ];
    let mut one = balancer_with(VIP, false, &servers);
    let mut burst = balancer_with(VIP, false, &servers);
    let pkts: Vec<Vec<u8>> = (0..6)
        .map(|i| {
            let c = sa(&format!("192.0.2.{}:{}", 1 + i % 3, 1000 + i));
            pkt::segment(c, sa(VIP), SYN, 1, 0, b"")
        })
        .collect();
    let mut bufs: Vec<Vec<u8>> = pkts
        .iter()
        .map(|p| {
            let mut b = std::vec![0; 64];
            b.extend_from_slice(p);
            b
        })
        .collect();
    let mut want = Vec::new();
    for p in &pkts {
        let mut b = std::vec![0; 64];
        b.extend_from_slice(p);
        let v = one.process_at(Instant::ZERO, &mut b, 64, p.len());
        want.push((v, b[v.transmit().unwrap().range()].to_vec()));
    }
    let mut batch: Vec<Packet<'_>> = bufs
        .iter_mut()
        .zip(&pkts)
        .map(|(b, p)| Packet {
            buf: b,
            start: 64,
            len: p.len(),
            csum_partial: false,
        })
        .collect();
    let mut verdicts = std::vec![Verdict::default(); batch.len()];
    burst.process_burst(Instant::ZERO, &mut batch, &mut verdicts);
    for (i, (v, b)) in verdicts.iter().zip(&bufs).enumerate() {
        assert_eq!(
            (*v, b[v.transmit().unwrap().range()].to_vec()),
            want[i],
            "packet {i}"
        );
    }
    assert_eq!(burst.counters().tunnelled, 3, "rr: every other one by GRE");
}

/// IPv6 services, each kind.
#[test]
fn ipv6_in_ipv6_for_every_kind() {
    for kind in KINDS {
        let rip = "[2001:db8:1::1]:80";
        let mut b = balancer_with(VIP6, false, &[(rip, tunnel(kind))]);
        let p = pkt::segment(sa(CLIENT6), sa(VIP6), SYN, 1, 0, b"");
        let (v, out) = run(&mut b, Instant::ZERO, &p);
        assert!(
            matches!(v, Verdict::ToServer(t) if t.dst == sa(rip).ip()),
            "{v:?}"
        );
        check_outer(&out, &p, kind, IpAddr::V6(SRC6), sa(rip).ip());
    }
}

/// The path MTU, as the kernel's `ensure_mtu_is_adequate` applies it: an IPv4 packet with DF
/// that would not fit once encapsulated is answered with "fragmentation needed" and the MTU
/// left (1500 − 20 for IPIP, − 32 for GUE); without DF it goes, its outer header without DF; an
/// IPv6 packet gets "packet too big"; a packet that fits goes.
#[test]
fn a_packet_over_the_path_mtu_gets_the_kernels_icmp_answer() {
    for (kind, left) in [
        (TunnelKind::Ipip, 1480u16),
        (
            TunnelKind::Gue {
                port: 6080,
                csum: GueCsum::None,
            },
            1468,
        ),
        (TunnelKind::Gre { csum: true }, 1472),
    ] {
        let mut b = balancer_with(VIP, false, &[("10.1.0.1:80", tunnel(kind))]);
        let (c, v) = (sa(CLIENT), sa(VIP));
        run(&mut b, Instant::ZERO, &pkt::segment(c, v, SYN, 1, 0, b""));
        let fits = pkt::segment(c, v, ACK, 2, 1, &std::vec![7; usize::from(left) - 40]);
        assert_eq!(fits.len(), usize::from(left));
        let (verdict, out) = run(&mut b, Instant::ZERO, &fits);
        assert!(
            matches!(verdict, Verdict::ToServer(_)),
            "{kind:?}: {verdict:?}"
        );
        assert_eq!(out.len(), 1500);
        let big = pkt::segment(c, v, ACK, 2, 1, &std::vec![7; usize::from(left) - 39]);
        let (verdict, out) = run(&mut b, Instant::ZERO, &big);
        assert!(
            matches!(verdict, Verdict::Reply(t) if t.dst == c.ip()),
            "{kind:?}: {verdict:?}"
        );
        // ICMP type 3 code 4, next-hop MTU `left`, from the VIP, quoting the packet.
        assert_eq!(&out[12..16], &[10, 0, 0, 100]);
        assert_eq!((out[9], out[20], out[21]), (1, 3, 4));
        assert_eq!(u16::from_be_bytes([out[26], out[27]]), left, "{kind:?}");
        assert_eq!(&out[28..48], &big[..20]);
        assert!(pkt::checksums_ok(&out));
        assert_eq!(b.counters().too_big_replies, 1);
        // Without DF: encapsulated, outer without DF, for the path to fragment.
        let mut no_df = big.clone();
        no_df[6] = 0;
        pkt::refresh_ipv4_checksum(&mut no_df);
        let (verdict, out) = run(&mut b, Instant::ZERO, &no_df);
        assert!(matches!(verdict, Verdict::ToServer(_)), "{verdict:?}");
        assert_eq!(out[6] & 0x40, 0);
        assert_eq!(out.len(), 1501);
    }
    // IPv6: packet too big with 1500 − 40.
    let mut b = balancer_with(
        VIP6,
        false,
        &[("[2001:db8:1::1]:80", tunnel(TunnelKind::Ipip))],
    );
    let (c, v) = (sa(CLIENT6), sa(VIP6));
    run(&mut b, Instant::ZERO, &pkt::segment(c, v, SYN, 1, 0, b""));
    let big = pkt::segment(c, v, ACK, 2, 1, &std::vec![7; 1500 - 40 - 20 - 39]);
    let (verdict, out) = run(&mut b, Instant::ZERO, &big);
    assert!(matches!(verdict, Verdict::Reply(_)), "{verdict:?}");
    assert_eq!((out[6], out[40], out[41]), (58, 2, 0));
    assert_eq!(
        u32::from_be_bytes([out[44], out[45], out[46], out[47]]),
        1460
    );
    assert!(pkt::checksums_ok(&out));
}

/// Direct routing checks the path MTU too (with no headers to add).
#[test]
fn a_dr_packet_over_the_path_mtu_gets_fragmentation_needed() {
    let mut b = empty_balancer(
        64,
        Settings {
            direct_routing: true,
            path_mtu: 1400,
            ..Settings::default()
        },
    );
    let line = |l: &str| parse_line(l).unwrap().unwrap();
    b.apply(Instant::ZERO, &line("-A -t 10.0.0.100:80 -s rr"))
        .unwrap();
    b.apply(Instant::ZERO, &line("-a -t 10.0.0.100:80 -r 10.1.0.1 -g"))
        .unwrap();
    let (c, v) = (sa(CLIENT), sa(VIP));
    run(&mut b, Instant::ZERO, &pkt::segment(c, v, SYN, 1, 0, b""));
    let (verdict, _) = run(
        &mut b,
        Instant::ZERO,
        &pkt::segment(c, v, ACK, 2, 1, &[1; 1360]),
    );
    assert!(matches!(verdict, Verdict::ToServer(_)), "1400 bytes fit");
    let (verdict, out) = run(
        &mut b,
        Instant::ZERO,
        &pkt::segment(c, v, ACK, 2, 1, &[1; 1361]),
    );
    assert!(matches!(verdict, Verdict::Reply(_)), "{verdict:?}");
    assert_eq!(u16::from_be_bytes([out[26], out[27]]), 1400);
}

/// Replies never pass a tunnel's director: a packet that looks like one (RIP:port → client, or
/// VIP → client as the real server sends it) passes untouched and changes nothing.
#[test]
fn what_looks_like_a_tunnel_connections_reply_passes_untouched() {
    let mut b = balancer_with(VIP, false, &[("10.1.0.1:80", tunnel(TunnelKind::Ipip))]);
    let (c, v) = (sa(CLIENT), sa(VIP));
    run(&mut b, Instant::ZERO, &pkt::segment(c, v, SYN, 1, 0, b""));
    for from in [sa("10.1.0.1:80"), v] {
        let reply = pkt::segment(from, c, SYN | ACK, 9, 2, b"");
        let (verdict, out) = run(&mut b, Instant::ZERO, &reply);
        assert!(matches!(verdict, Verdict::Pass(_)), "{verdict:?}");
        assert_eq!(out, reply);
    }
    let states: Vec<_> = b.connections(Instant::ZERO).map(|c| c.state).collect();
    assert_eq!(states, ["SYN_RECV"]);
}

/// An ICMP error from the client side about a tunnel connection goes to the real server in the
/// connection's tunnel (`ip_vs_icmp_xmit` by the connection's transmitter).
#[test]
fn an_icmp_error_about_a_tunnel_connection_goes_in_its_tunnel() {
    let kind = TunnelKind::Gre { csum: false };
    let mut b = balancer_with(VIP, false, &[("10.1.0.1:80", tunnel(kind))]);
    let (c, v) = (sa(CLIENT), sa(VIP));
    run(&mut b, Instant::ZERO, &pkt::segment(c, v, SYN, 1, 0, b""));
    let reply = pkt::segment(v, c, SYN | ACK, 9, 2, b"");
    let err = pkt::icmp_error(sa("192.0.2.254:0").ip(), &reply, 576);
    let (verdict, out) = run(&mut b, Instant::ZERO, &err);
    assert!(matches!(verdict, Verdict::ToServer(t) if t.dst == sa("10.1.0.1:80").ip()));
    check_outer(&out, &err, kind, IpAddr::V4(SRC4), sa("10.1.0.1:80").ip());
}

/// Every fragment of a datagram whose first fragment went in a tunnel goes in the same tunnel,
/// unchanged inside.
#[test]
fn later_fragments_follow_their_first_into_the_tunnel() {
    let kind = TunnelKind::Gue {
        port: 6080,
        csum: GueCsum::Csum,
    };
    let mut b = balancer_with("10.0.0.100:53", true, &[("10.1.0.1:53", tunnel(kind))]);
    let d = pkt::udp(sa("192.0.2.1:5353"), sa("10.0.0.100:53"), &[7u8; 100]);
    let frags = pkt::fragments(&d, 0, &[24, 64], 0x4242);
    for (i, f) in frags.iter().enumerate() {
        let (verdict, out) = run(&mut b, Instant::ZERO, f);
        assert!(
            matches!(verdict, Verdict::ToServer(t) if t.dst == sa("10.1.0.1:53").ip()),
            "fragment {i}"
        );
        check_outer(&out, f, kind, IpAddr::V4(SRC4), sa("10.1.0.1:53").ip());
    }
    assert_eq!(b.counters().fragments_forwarded, 2);
    assert_eq!(b.counters().tunnelled, 3);
}

/// One service mixes NAT, DR-less tunnel kinds: each connection by its server's method.
#[test]
fn one_service_mixes_nat_and_tunnel_servers() {
    let mut b = balancer_with(
        VIP,
        false,
        &[
            ("10.1.0.2:80", tunnel(TunnelKind::Ipip)),
            ("10.1.0.1:8080", ForwardMethod::Masq),
        ],
    );
    let v = sa(VIP);
    let syn1 = pkt::segment(sa("192.0.2.1:1000"), v, SYN, 1, 0, b"");
    let (_, out1) = run(&mut b, Instant::ZERO, &syn1);
    assert_eq!(pkt::dst_of(&out1), Some(sa("10.1.0.1:8080")), "NAT");
    let syn2 = pkt::segment(sa("192.0.2.2:2000"), v, SYN, 1, 0, b"");
    let (_, out2) = run(&mut b, Instant::ZERO, &syn2);
    check_outer(
        &out2,
        &syn2,
        TunnelKind::Ipip,
        IpAddr::V4(SRC4),
        sa("10.1.0.2:80").ip(),
    );
}

/// A tunnel may reach a real server of the other family (IPv4 inside IPv6 and back), as IPVS
/// allows; the other methods may not, nor may such a server be edited into one of them.
#[test]
fn a_tunnel_carries_a_packet_to_a_real_server_of_the_other_family() {
    let rip6 = "[2001:db8:1::9]:80";
    for kind in KINDS {
        let mut b = balancer_with(VIP, false, &[(rip6, tunnel(kind))]);
        let p = pkt::segment(sa(CLIENT), sa(VIP), SYN, 1, 0, b"");
        let (v, out) = run(&mut b, Instant::ZERO, &p);
        assert!(
            matches!(v, Verdict::ToServer(t) if t.dst == sa(rip6).ip()),
            "{v:?}"
        );
        check_outer(&out, &p, kind, IpAddr::V6(SRC6), sa(rip6).ip());
        let states: Vec<_> = b
            .connections(Instant::ZERO)
            .map(|c| (c.server, c.state))
            .collect();
        assert_eq!(states, [(sa(rip6), "SYN_RECV")]);
    }
    let rip4 = "10.1.0.9:80";
    let mut b = balancer_with(
        VIP6,
        false,
        &[(rip4, tunnel(TunnelKind::Gre { csum: true }))],
    );
    let p = pkt::segment(sa(CLIENT6), sa(VIP6), SYN, 1, 0, b"");
    let (v, out) = run(&mut b, Instant::ZERO, &p);
    assert!(
        matches!(v, Verdict::ToServer(t) if t.dst == sa(rip4).ip()),
        "{v:?}"
    );
    check_outer(
        &out,
        &p,
        TunnelKind::Gre { csum: true },
        IpAddr::V4(SRC4),
        sa(rip4).ip(),
    );

    let line = |l: &str| parse_line(l).unwrap().unwrap();
    let mut b = empty_balancer(
        64,
        Settings {
            direct_routing: true,
            ..settings()
        },
    );
    b.apply(Instant::ZERO, &line("-A -t 10.0.0.100:80 -s rr"))
        .unwrap();
    // The grammar refuses the other methods (as ipvsadm), and so does the director.
    let key = ServiceKey::tcp(sa(VIP));
    for m in [ForwardMethod::Masq, ForwardMethod::Route] {
        let flag = if m == ForwardMethod::Masq { "-m" } else { "-g" };
        assert!(parse_line(&format!("-a -t 10.0.0.100:80 -r [2001:db8:1::9]:80 {flag}")).is_err());
        let cmd = Command::AddServer(key, ServerConfig::new(sa("[2001:db8:1::9]:80"), m));
        assert_eq!(
            b.apply(Instant::ZERO, &cmd),
            Err(crate::config::ConfigError::FamilyMismatch),
            "{m:?}"
        );
    }
    b.apply(
        Instant::ZERO,
        &line("-a -t 10.0.0.100:80 -r [2001:db8:1::9]:80 -i"),
    )
    .unwrap();
    let edit = ServerConfig::new(sa("[2001:db8:1::9]:80"), ForwardMethod::Masq);
    let err = b
        .apply(Instant::ZERO, &Command::EditServer(key, edit))
        .unwrap_err();
    assert!(format!("{err}").contains("families differ"), "{err}");
}

/// The later fragments of a datagram tunnelled to a real server of the other family go to
/// that server, in the same tunnel.
#[test]
fn later_fragments_follow_their_first_into_a_tunnel_of_the_other_family() {
    let rip6 = "[2001:db8:1::9]:53";
    let mut b = balancer_with("10.0.0.100:53", true, &[(rip6, tunnel(TunnelKind::Ipip))]);
    let d = pkt::udp(sa("192.0.2.1:5353"), sa("10.0.0.100:53"), &[7u8; 100]);
    for (i, f) in pkt::fragments(&d, 0, &[24, 64], 0x4243).iter().enumerate() {
        let (verdict, out) = run(&mut b, Instant::ZERO, f);
        assert!(
            matches!(verdict, Verdict::ToServer(t) if t.dst == sa(rip6).ip()),
            "fragment {i}: {verdict:?}"
        );
        check_outer(&out, f, TunnelKind::Ipip, IpAddr::V6(SRC6), sa(rip6).ip());
    }
}

/// A sync record has one family for all its addresses: as IPVS, no sync daemon starts while
/// a real server is of the other family than its service, and such connections are neither
/// synced nor saved in a snapshot (the others are).
#[test]
fn connections_to_a_real_server_of_the_other_family_are_not_synced() {
    use crate::sync::daemon::{DaemonConfig, IfName, SyncRole};
    let mut b = balancer_with(
        VIP,
        false,
        &[
            ("[2001:db8:1::9]:80", tunnel(TunnelKind::Ipip)),
            ("10.1.0.1:80", tunnel(TunnelKind::Ipip)),
        ],
    );
    let d = DaemonConfig::new(SyncRole::Master, IfName::new("sync0").unwrap());
    let err = b
        .apply(Instant::ZERO, &Command::StartDaemon(d))
        .unwrap_err();
    assert!(format!("{err}").contains("sync daemon"), "{err}");
    for i in 0..2u16 {
        let c = sa(&format!("192.0.2.{}:{}", 1 + i, 1000 + i));
        run(
            &mut b,
            Instant::ZERO,
            &pkt::segment(c, sa(VIP), SYN, 1, 0, b""),
        );
    }
    assert_eq!(b.connection_count(), 2);
    let ex = b.export_state(Instant::ZERO);
    let rec = b.export_record(&ex, 0);
    let (r, next) = rec.expect("the same-family connection is exported");
    assert_eq!(r.daddr, sa("10.1.0.1:80"));
    assert!(b.export_record(&ex, next).is_none(), "the other is not");
}

/// A router on a tunnel's path answers "fragmentation needed" about a tunnelled packet, to the
/// tunnel source: relayed to the client from the VIP, with the MTU left once the tunnel
/// headers are off, quoting the client's packet (the kernel's `ip_vs_in_icmp`), for every
/// kind and both families; about a packet without DF nothing is relayed; an error that quotes
/// no tunnelled connection is a counted drop.
#[test]
fn the_paths_too_big_about_a_tunnelled_packet_reaches_the_client() {
    let router4 = IpAddr::V4(Ipv4Addr::new(10, 1, 9, 1));
    for kind in KINDS {
        let mut b = balancer_with(VIP, false, &[("10.1.0.1:80", tunnel(kind))]);
        let (c, v) = (sa(CLIENT), sa(VIP));
        run(&mut b, Instant::ZERO, &pkt::segment(c, v, SYN, 1, 0, b""));
        let data = pkt::segment(c, v, ACK, 2, 1, &[5; 1000]);
        let (_, outer) = run(&mut b, Instant::ZERO, &data);
        let hl = tunnel::overhead(kind, false);
        // The router's MTU is 1,200: it quotes the outer packet (576 bytes at most).
        let err = pkt::icmp_rest(
            router4,
            IpAddr::V4(SRC4),
            3,
            4,
            [0, 0, 0x04, 0xb0],
            &outer[..548],
        );
        let (verdict, out) = run(&mut b, Instant::ZERO, &err);
        assert!(
            matches!(verdict, Verdict::Reply(t) if t.dst == c.ip()),
            "{kind:?}: {verdict:?}"
        );
        assert_eq!(&out[12..16], &[10, 0, 0, 100], "{kind:?}: from the VIP");
        assert_eq!(&out[16..20], &[192, 0, 2, 1], "{kind:?}: to the client");
        assert_eq!((out[20], out[21]), (3, 4));
        assert_eq!(
            usize::from(u16::from_be_bytes([out[26], out[27]])),
            1200 - hl,
            "{kind:?}"
        );
        assert_eq!(
            &out[28..28 + 40],
            &data[..40],
            "{kind:?}: the client's packet quoted"
        );
        assert!(pkt::checksums_ok(&out), "{kind:?}");
        assert_eq!(b.counters().tunnel_icmp_relayed, 1);

        // "Protocol unreachable" is about the outer protocol (IPIP, GRE): not relayed.
        let err = pkt::icmp_rest(router4, IpAddr::V4(SRC4), 3, 2, [0; 4], &outer[..548]);
        let (verdict, _) = run(&mut b, Instant::ZERO, &err);
        assert_eq!(verdict, Verdict::Drop(DropReason::IcmpMismatch), "{kind:?}");

        // The client's packet without DF: nothing to say to it.
        let mut no_df = data.clone();
        no_df[6] = 0;
        pkt::refresh_ipv4_checksum(&mut no_df);
        let (_, outer) = run(&mut b, Instant::ZERO, &no_df);
        let err = pkt::icmp_rest(
            router4,
            IpAddr::V4(SRC4),
            3,
            4,
            [0, 0, 0x04, 0xb0],
            &outer[..548],
        );
        let (verdict, _) = run(&mut b, Instant::ZERO, &err);
        assert_eq!(verdict, Verdict::Drop(DropReason::IcmpMismatch), "{kind:?}");
    }

    // IPv6 (packet too big), and an unreachable relayed with its type and code.
    let mut b = balancer_with(
        VIP6,
        false,
        &[("[2001:db8:1::1]:80", tunnel(TunnelKind::Ipip))],
    );
    let (c, v) = (sa(CLIENT6), sa(VIP6));
    run(&mut b, Instant::ZERO, &pkt::segment(c, v, SYN, 1, 0, b""));
    let data = pkt::segment(c, v, ACK, 2, 1, &[5; 1300]);
    let (_, outer) = run(&mut b, Instant::ZERO, &data);
    let router6 = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 9, 1));
    let m = 1400u32.to_be_bytes();
    let err = pkt::icmp_rest(router6, IpAddr::V6(SRC6), 2, 0, m, &outer[..1232]);
    let (verdict, out) = run(&mut b, Instant::ZERO, &err);
    assert!(
        matches!(verdict, Verdict::Reply(t) if t.dst == c.ip()),
        "{verdict:?}"
    );
    assert_eq!((out[6], out[40], out[41]), (58, 2, 0));
    assert_eq!(
        u32::from_be_bytes([out[44], out[45], out[46], out[47]]),
        1400 - 40
    );
    assert!(pkt::checksums_ok(&out));
    let err = pkt::icmp_rest(router6, IpAddr::V6(SRC6), 1, 3, [0; 4], &outer[..200]);
    let (verdict, out) = run(&mut b, Instant::ZERO, &err);
    assert!(matches!(verdict, Verdict::Reply(_)), "{verdict:?}");
    assert_eq!(
        (out[40], out[41]),
        (1, 3),
        "address unreachable, relayed as is"
    );

    // A port unreachable is about the outer packet (a GUE port), not the client's port.
    let err = pkt::icmp_rest(router6, IpAddr::V6(SRC6), 1, 4, [0; 4], &outer[..200]);
    let (verdict, _) = run(&mut b, Instant::ZERO, &err);
    assert_eq!(verdict, Verdict::Drop(DropReason::IcmpMismatch));
    // A parameter problem points into the outer headers: not the client's business.
    let err = pkt::icmp_rest(router6, IpAddr::V6(SRC6), 4, 1, [0, 0, 0, 6], &outer[..200]);
    let (verdict, _) = run(&mut b, Instant::ZERO, &err);
    assert_eq!(verdict, Verdict::Drop(DropReason::IcmpMismatch));

    // Quoting no tunnelled connection (another client): dropped, counted.
    let mut other = outer.clone();
    other[40 + 8 + 15] ^= 1; // the inner source address
    let err = pkt::icmp_rest(router6, IpAddr::V6(SRC6), 2, 0, m, &other[..1232]);
    let (verdict, _) = run(&mut b, Instant::ZERO, &err);
    assert_eq!(verdict, Verdict::Drop(DropReason::IcmpMismatch));
    assert_eq!(b.counters().tunnel_icmp_relayed, 2);
}
