//! The Ethernet side of TAP mode, frame by frame, without a device.

use super::*;
use lb_embedded::neighbour::{MAX_REQUESTS, RETRY};
use lb_testkit::pkt;
use smoltcp::wire::NdiscNeighborFlags;
use std::net::{Ipv4Addr, SocketAddr};

const OUR_MAC: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 0, 0x01]);
const CLIENT_MAC: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 0, 0x0c]);
const SERVER_MAC: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 0, 0x0b]);
const ROUTER_MAC: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 0, 0xfe]);
const OWN: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const SERVER: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 11);
const VIP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 100);
const ROUTER: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 254);
const OWN6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 2);
const CLIENT6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1);
const SERVER6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 0x11);
const VIP6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 0x100);
const T0: Instant = Instant::from_millis(1_000);

fn link(gateways: &[IpAddr]) -> Link {
    let cfg = TapConfig::new(
        OUR_MAC,
        &["10.0.0.2/24".into(), "fd00::2/64".into()],
        gateways,
    )
    .unwrap();
    let mut l = Link::new(&cfg);
    l.set_answered([IpAddr::V4(VIP), IpAddr::V6(VIP6)]);
    l
}

/// Runs `f` with an `out` that collects the frames sent.
fn sent<R>(f: impl FnOnce(&mut dyn FnMut(&[u8]) -> bool) -> R) -> (R, Vec<Vec<u8>>) {
    let mut frames = Vec::new();
    let r = f(&mut |b: &[u8]| {
        frames.push(b.to_vec());
        true
    });
    (r, frames)
}

fn eth(dst: EthernetAddress, src: EthernetAddress, ty: EthernetProtocol, body: &[u8]) -> Vec<u8> {
    let mut f = vec![0u8; LINK_HEADER];
    let mut h = EthernetFrame::new_unchecked(&mut f[..]);
    h.set_dst_addr(dst);
    h.set_src_addr(src);
    h.set_ethertype(ty);
    f.extend_from_slice(body);
    f
}

fn header(f: &[u8]) -> (EthernetAddress, EthernetAddress, EthernetProtocol) {
    let h = EthernetFrame::new_checked(f).unwrap();
    (h.dst_addr(), h.src_addr(), h.ethertype())
}

fn arp(f: &[u8]) -> ArpRepr {
    ArpRepr::parse(&ArpPacket::new_checked(&f[LINK_HEADER..]).unwrap()).unwrap()
}

fn who_has(from_mac: EthernetAddress, from: Ipv4Addr, target: Ipv4Addr) -> Vec<u8> {
    let mut f = arp_request(from_mac, from, target).to_vec();
    f[..6].copy_from_slice(&EthernetAddress::BROADCAST.0);
    f
}

fn is_at(mac: EthernetAddress, ip: Ipv4Addr) -> Vec<u8> {
    arp_reply(mac, ip, OUR_MAC, OWN).to_vec()
}

fn syn(src: Ipv4Addr, dst: Ipv4Addr) -> Vec<u8> {
    pkt::segment(
        SocketAddr::from((src, 40000)),
        SocketAddr::from((dst, 80)),
        pkt::SYN,
        1,
        0,
        &[],
    )
}

fn ttl(ip: &[u8]) -> u8 {
    match ip[0] >> 4 {
        4 => ip[8],
        _ => ip[7],
    }
}

#[test]
fn flags_are_checked_with_clear_errors() {
    assert_eq!(
        parse_cidr("10.0.0.2/24").unwrap(),
        IpCidr::new(IpAddress::v4(10, 0, 0, 2), 24)
    );
    assert!(parse_cidr("fd00::2/64").is_ok());
    for (bad, says) in [
        ("10.0.0.2", "want ADDR/PREFIX"),
        ("10.0.0/24", "is not an IP address"),
        ("10.0.0.2/33", "0..=32"),
        ("fd00::2/129", "0..=128"),
        ("10.0.0.2/x", "0..=32"),
        ("0.0.0.0/0", "not a unicast address"),
        ("224.0.0.1/4", "not a unicast address"),
    ] {
        let e = parse_cidr(bad).unwrap_err();
        assert!(e.contains(says) && e.contains(bad), "{bad}: {e}");
    }
    assert_eq!(parse_mac("02:00:00:00:00:0a").unwrap().0[5], 10);
    for bad in [
        "02:00:00:00:00",
        "02:00:00:00:00:00:00",
        "02-00-00-00-00-01",
        "zz:00:00:00:00:01",
    ] {
        assert!(
            parse_mac(bad).unwrap_err().contains("six hex bytes"),
            "{bad}"
        );
    }
    assert!(parse_mac("01:00:5e:00:00:01")
        .unwrap_err()
        .contains("unicast"));
    assert!(local_mac([0xff; 6]).is_unicast());
    assert_eq!(local_mac([0xff; 6]).0[0], 0xfe);

    let e = TapConfig::new(OUR_MAC, &[], &[]).unwrap_err();
    assert!(e.contains("--tap needs --address"), "{e}");
    let addrs = ["10.0.0.2/24".to_string()];
    let e = TapConfig::new(OUR_MAC, &addrs, &[IpAddr::V4(v4(10, 9, 9, 9))]).unwrap_err();
    assert!(
        e.contains("not in the subnet of any --address (10.0.0.2/24)"),
        "{e}"
    );
    let e = TapConfig::new(OUR_MAC, &addrs, &[IpAddr::V6(CLIENT6)]).unwrap_err();
    assert!(e.contains("not in the subnet"), "{e}");
    let e = TapConfig::new(OUR_MAC, &addrs, &[IpAddr::V4(OWN)]).unwrap_err();
    assert!(e.contains("own --address"), "{e}");
    let two = [IpAddr::V4(ROUTER), IpAddr::V4(CLIENT)];
    let e = TapConfig::new(OUR_MAC, &addrs, &two).unwrap_err();
    assert!(e.contains("one --gateway per family"), "{e}");
    assert!(TapConfig::new(OUR_MAC, &addrs, &[IpAddr::V4(ROUTER)]).is_ok());
}

fn v4(a: u8, b: u8, c: u8, d: u8) -> Ipv4Addr {
    Ipv4Addr::new(a, b, c, d)
}

#[test]
fn arp_for_a_vip_or_an_own_address_is_answered_and_the_asker_learnt() {
    let mut l = link(&[]);
    for target in [VIP, OWN] {
        let (r, out) = sent(|o| l.receive(T0, &who_has(CLIENT_MAC, CLIENT, target), o));
        assert_eq!(r, None);
        assert_eq!(out.len(), 1);
        assert_eq!(
            header(&out[0]),
            (CLIENT_MAC, OUR_MAC, EthernetProtocol::Arp)
        );
        match arp(&out[0]) {
            ArpRepr::EthernetIpv4 {
                operation,
                source_hardware_addr,
                source_protocol_addr,
                target_protocol_addr,
                ..
            } => {
                assert_eq!(operation, ArpOperation::Reply);
                assert_eq!(
                    (source_hardware_addr, source_protocol_addr),
                    (OUR_MAC, target)
                );
                assert_eq!(target_protocol_addr, CLIENT);
            }
            _ => unreachable!(),
        }
    }
    assert_eq!(l.counters().arp_answers, 2);
    // The asker was learnt: a packet to it goes at once, no request.
    let (ok, out) = sent(|o| l.send(T0, &syn(VIP, CLIENT), IpAddr::V4(CLIENT), o));
    assert!(ok);
    assert_eq!(header(&out[0]).0, CLIENT_MAC);
    // Another address on the link: not ours to answer.
    let (_, out) = sent(|o| l.receive(T0, &who_has(CLIENT_MAC, CLIENT, SERVER), o));
    assert!(out.is_empty());
    // A VIP removed from the answered set is no longer answered.
    l.set_answered([]);
    let (_, out) = sent(|o| l.receive(T0, &who_has(CLIENT_MAC, CLIENT, VIP), o));
    assert!(out.is_empty());
}

#[test]
fn an_ip_frame_to_our_mac_yields_the_packet_without_padding_and_others_are_ignored() {
    let mut l = link(&[]);
    let p = syn(CLIENT, VIP);
    let mut f = eth(OUR_MAC, CLIENT_MAC, EthernetProtocol::Ipv4, &p);
    f.extend_from_slice(&[0; 6]); // Ethernet padding
    let (r, out) = sent(|o| l.receive(T0, &f, o));
    assert_eq!(r, Some((LINK_HEADER, p.len())));
    assert!(out.is_empty());
    let other = eth(SERVER_MAC, CLIENT_MAC, EthernetProtocol::Ipv4, &p);
    let ours = eth(OUR_MAC, OUR_MAC, EthernetProtocol::Ipv4, &p);
    let bcast = eth(
        EthernetAddress::BROADCAST,
        CLIENT_MAC,
        EthernetProtocol::Ipv4,
        &p,
    );
    let short = eth(OUR_MAC, CLIENT_MAC, EthernetProtocol::Ipv4, &p[..10]);
    for f in [other, ours, bcast, short, vec![0; 6]] {
        assert_eq!(sent(|o| l.receive(T0, &f, o)).0, None);
    }
    assert_eq!(l.counters().rx_ignored, 5);
    assert_eq!(l.counters().rx_frames, 6);
}

#[test]
fn an_unknown_next_hop_is_resolved_while_the_frame_waits_then_it_goes_ttl_decremented() {
    let mut l = link(&[]);
    let p = syn(CLIENT, SERVER);
    let (ok, out) = sent(|o| l.send(T0, &p, IpAddr::V4(SERVER), o));
    assert!(ok, "held counts as sent");
    assert_eq!(out.len(), 1);
    assert_eq!(
        header(&out[0]),
        (EthernetAddress::BROADCAST, OUR_MAC, EthernetProtocol::Arp)
    );
    match arp(&out[0]) {
        ArpRepr::EthernetIpv4 {
            operation,
            source_protocol_addr,
            target_protocol_addr,
            ..
        } => assert_eq!(
            (operation, source_protocol_addr, target_protocol_addr),
            (ArpOperation::Request, OWN, SERVER)
        ),
        _ => unreachable!(),
    }
    assert_eq!(l.held(), 1);
    let (_, out) = sent(|o| l.receive(T0, &is_at(SERVER_MAC, SERVER), o));
    assert_eq!(out.len(), 1, "the held frame");
    assert_eq!(
        header(&out[0]),
        (SERVER_MAC, OUR_MAC, EthernetProtocol::Ipv4)
    );
    let ip = &out[0][LINK_HEADER..];
    assert_eq!(ttl(ip), ttl(&p) - 1);
    assert!(pkt::checksums_ok(ip));
    assert_eq!(l.held(), 0);
    let c = l.counters();
    assert_eq!((c.requests_sent, c.held), (1, 1));
}

/// Direct routing: the packet still goes to the VIP, to the real server's MAC, only its TTL
/// decremented.
#[test]
fn a_direct_routing_packet_goes_to_the_next_hops_mac_still_addressed_to_the_vip() {
    let mut l = link(&[]);
    sent(|o| l.receive(T0, &who_has(SERVER_MAC, SERVER, OWN), o));
    let p = syn(CLIENT, VIP);
    let (ok, out) = sent(|o| l.send(T0, &p, IpAddr::V4(SERVER), o));
    assert!(ok);
    assert_eq!(out.len(), 1);
    assert_eq!(
        header(&out[0]),
        (SERVER_MAC, OUR_MAC, EthernetProtocol::Ipv4)
    );
    let ip = &out[0][LINK_HEADER..];
    assert_eq!(destination(ip), Some(IpAddr::V4(VIP)));
    assert_eq!(ttl(ip), ttl(&p) - 1);
    // Past the TTL and the header checksum (bytes 8, 10 and 11), unchanged.
    assert_eq!(
        (&ip[..8], &ip[9..10], &ip[12..]),
        (&p[..8], &p[9..10], &p[12..])
    );
    assert!(pkt::checksums_ok(ip));
}

#[test]
fn off_link_destinations_go_to_the_gateway_and_without_one_are_dropped() {
    let far = IpAddr::V4(v4(198, 51, 100, 5));
    let mut l = link(&[]);
    let (ok, out) = sent(|o| l.send(T0, &syn(VIP, v4(198, 51, 100, 5)), far, o));
    assert!(!ok && out.is_empty());
    assert_eq!(l.counters().no_route, 1);

    let mut l = link(&[IpAddr::V4(ROUTER)]);
    sent(|o| l.receive(T0, &who_has(ROUTER_MAC, ROUTER, OWN), o));
    let (ok, out) = sent(|o| l.send(T0, &syn(VIP, v4(198, 51, 100, 5)), far, o));
    assert!(ok);
    assert_eq!(header(&out[0]).0, ROUTER_MAC);
    assert_eq!(destination(&out[0][LINK_HEADER..]), Some(far));
}

#[test]
fn a_next_hop_that_is_ours_is_a_loop_and_an_expiring_ttl_is_dropped() {
    let mut l = link(&[]);
    for hop in [VIP, OWN] {
        let (ok, out) = sent(|o| l.send(T0, &syn(CLIENT, VIP), IpAddr::V4(hop), o));
        assert!(!ok && out.is_empty());
    }
    assert_eq!(l.counters().loop_drops, 2);
    sent(|o| l.receive(T0, &who_has(SERVER_MAC, SERVER, OWN), o));
    let mut p = syn(CLIENT, SERVER);
    pkt::set_ttl(&mut p, 1);
    let (ok, out) = sent(|o| l.send(T0, &p, IpAddr::V4(SERVER), o));
    assert!(!ok && out.is_empty());
    assert_eq!(l.counters().ttl_expired, 1);
    let big = vec![0x45; MTU + 1];
    assert!(!sent(|o| l.send(T0, &big, IpAddr::V4(SERVER), o)).0);
    assert_eq!(l.counters().oversize, 1);
}

#[test]
fn an_unanswered_next_hop_is_asked_again_then_its_frames_are_dropped() {
    let mut l = link(&[]);
    sent(|o| l.send(T0, &syn(CLIENT, SERVER), IpAddr::V4(SERVER), o));
    let mut t = T0;
    let mut requests = 1;
    for _ in 0..MAX_REQUESTS {
        t = Instant::from_millis(t.millis() + RETRY);
        let (_, out) = sent(|o| l.run_timers(t, o));
        requests += out.len();
    }
    assert_eq!(requests, usize::from(MAX_REQUESTS));
    assert_eq!(l.held(), 0);
    assert_eq!(l.counters().unresolved_drops, 1);
    assert_eq!(l.counters().requests_sent, u64::from(MAX_REQUESTS));
}

fn ndisc_frame(src_mac: EthernetAddress, src: Ipv6Addr, dst: Ipv6Addr, nd: NdiscRepr) -> Vec<u8> {
    let mut buf = [0u8; NDISC_FRAME];
    let n = icmpv6_frame(&mut buf, src_mac, src, OUR_MAC, dst, &Icmpv6Repr::Ndisc(nd)).unwrap();
    let mut f = buf[..n].to_vec();
    f[..6].copy_from_slice(&multicast_mac(dst).0);
    f
}

#[test]
fn a_neighbour_solicitation_for_a_vip_is_advertised_and_ipv6_next_hops_are_solicited() {
    let mut l = link(&[]);
    let ns = ndisc_frame(
        CLIENT_MAC,
        CLIENT6,
        solicited_node(VIP6),
        NdiscRepr::NeighborSolicit {
            target_addr: VIP6,
            lladdr: Some(CLIENT_MAC.into()),
        },
    );
    let (r, out) = sent(|o| l.receive(T0, &ns, o));
    assert_eq!(r, None);
    assert_eq!(out.len(), 1);
    assert_eq!(
        header(&out[0]),
        (CLIENT_MAC, OUR_MAC, EthernetProtocol::Ipv6)
    );
    let (src, dst, nd) = parse_ndisc(&out[0][LINK_HEADER..]).unwrap();
    assert_eq!((src, dst), (VIP6, CLIENT6));
    match nd {
        NdiscRepr::NeighborAdvert {
            flags,
            target_addr,
            lladdr,
        } => {
            assert_eq!(target_addr, VIP6);
            assert_eq!(lladdr.and_then(raw_mac), Some(OUR_MAC));
            assert!(flags.contains(NdiscNeighborFlags::SOLICITED));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(l.counters().ndp_answers, 1);

    // An IPv6 next hop: a solicitation from the own address, then the advertisement
    // releases the held packet.
    let p = pkt::segment(
        SocketAddr::from((CLIENT6, 40000)),
        SocketAddr::from((VIP6, 80)),
        pkt::SYN,
        1,
        0,
        &[],
    );
    let (ok, out) = sent(|o| l.send(T0, &p, IpAddr::V6(SERVER6), o));
    assert!(ok);
    assert_eq!(header(&out[0]).0, multicast_mac(solicited_node(SERVER6)));
    let (src, _, nd) = parse_ndisc(&out[0][LINK_HEADER..]).unwrap();
    assert_eq!(src, OWN6);
    assert!(matches!(nd, NdiscRepr::NeighborSolicit { target_addr, .. } if target_addr == SERVER6));
    let na = ndisc_frame(
        SERVER_MAC,
        SERVER6,
        OWN6,
        NdiscRepr::NeighborAdvert {
            flags: NdiscNeighborFlags::SOLICITED,
            target_addr: SERVER6,
            lladdr: Some(SERVER_MAC.into()),
        },
    );
    let (r, out) = sent(|o| l.receive(T0, &na, o));
    assert_eq!(r, None);
    assert_eq!(out.len(), 1);
    assert_eq!(
        header(&out[0]),
        (SERVER_MAC, OUR_MAC, EthernetProtocol::Ipv6)
    );
    let ip = &out[0][LINK_HEADER..];
    assert_eq!(destination(ip), Some(IpAddr::V6(VIP6)));
    assert_eq!(ttl(ip), ttl(&p) - 1);
}

#[test]
fn a_refusing_device_is_counted() {
    let mut l = link(&[]);
    let mut refuse = |_: &[u8]| false;
    l.receive(T0, &who_has(CLIENT_MAC, CLIENT, VIP), &mut refuse);
    assert!(!l.send(T0, &syn(VIP, CLIENT), IpAddr::V4(CLIENT), &mut refuse));
    let c = l.counters();
    assert_eq!((c.arp_answers, c.tx_errors), (0, 2));
}
