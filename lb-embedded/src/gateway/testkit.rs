//! What the gateway's unit tests share: a scripted device, a small gateway on a /24 with one
//! virtual service, and builders and readers for the frames they exchange.
//!
//! The test network: the gateway is `GW_MAC` with the own addresses `GW_IP` (10.0.0.1/24) and
//! `GW_IP6` (fd00::1/64); the VIP `VIP` (10.0.0.100:80, round robin) has one real server,
//! `SERVER` (10.0.0.2:80, `SERVER_MAC`); the client is `CLIENT` (10.0.0.50, `CLIENT_MAC`).

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use lb_testkit::pkt;
use std::boxed::Box;
use std::collections::VecDeque;
use std::vec;
use std::vec::Vec;

use lb_core::{DirectorStorage, Instant, Limits};
use smoltcp::phy::{self, ChecksumCapabilities, Device, DeviceCapabilities, Medium};
use smoltcp::time::Instant as SmolInstant;
use smoltcp::wire::{
    ArpOperation, ArpPacket, ArpRepr, EthernetAddress, EthernetFrame, EthernetProtocol,
    EthernetRepr, Icmpv6Packet, Icmpv6Repr, IpAddress, IpCidr, IpProtocol, Ipv4Packet, Ipv6Packet,
    Ipv6Repr, NdiscRepr,
};

use super::{Gateway, GatewayConfig};
use crate::LINK_HEADER;

pub const GW_MAC: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 0, 0x01]);
pub const CLIENT_MAC: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 0, 0x50]);
pub const SERVER_MAC: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 0, 0x02]);
pub const GW_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
pub const GW_IP6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1);
pub const VIP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 100);
pub const VIP6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 0x100);
pub const SERVER: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
pub const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 50);
pub const CLIENT6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 0x50);
pub const T0: Instant = Instant::ZERO;

/// A device fed from `rx`; what the gateway sends lands in `tx`. `tx_room` frames more can be
/// sent (transmit says "no buffer" after that).
pub struct FakeDevice {
    pub medium: Medium,
    pub mtu: usize,
    pub rx: VecDeque<Vec<u8>>,
    pub tx: Vec<Vec<u8>>,
    pub tx_room: usize,
}

impl FakeDevice {
    pub fn new(medium: Medium) -> Self {
        let mtu = if medium == Medium::Ethernet {
            1514
        } else {
            1500
        };
        FakeDevice {
            medium,
            mtu,
            rx: VecDeque::new(),
            tx: Vec::new(),
            tx_room: usize::MAX,
        }
    }
}

pub struct FakeRx(Vec<u8>);

pub struct FakeTx<'a> {
    tx: &'a mut Vec<Vec<u8>>,
}

impl phy::RxToken for FakeRx {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

impl phy::TxToken for FakeTx<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut buf = vec![0; len];
        let r = f(&mut buf);
        self.tx.push(buf);
        r
    }
}

impl Device for FakeDevice {
    type RxToken<'a> = FakeRx;
    type TxToken<'a> = FakeTx<'a>;

    fn receive(&mut self, _now: SmolInstant) -> Option<(FakeRx, FakeTx<'_>)> {
        let frame = self.rx.pop_front()?;
        Some((FakeRx(frame), FakeTx { tx: &mut self.tx }))
    }

    fn transmit(&mut self, _now: SmolInstant) -> Option<FakeTx<'_>> {
        if self.tx_room == 0 {
            return None;
        }
        self.tx_room -= 1;
        Some(FakeTx { tx: &mut self.tx })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = self.medium;
        caps.max_transmission_unit = self.mtu;
        caps
    }
}

pub type Res = crate::gateway_resources!(conns: 64, neighbours: 4, routes: 2, hold: 2);

/// A gateway on `dev` with the test network's addresses and the service `VIP:80 → SERVER:80`.
pub fn gateway_with(dev: &mut FakeDevice, config: GatewayConfig) -> Gateway<'static> {
    let res: &'static mut Res = Box::leak(Box::new(Res::new()));
    let limits = Limits {
        services: 2,
        servers_per_service: 2,
        table_slots_per_service: 0,
        lblc_entries_per_service: 0,
    };
    let mut gw = Gateway::new(res, DirectorStorage::alloc(limits), dev, config, T0).unwrap();
    gw.add_address(IpCidr::new(IpAddress::Ipv4(GW_IP), 24))
        .unwrap();
    gw.add_address(IpCidr::new(IpAddress::Ipv6(GW_IP6), 64))
        .unwrap();
    gw.apply_line(T0, "-A -t 10.0.0.100:80 -s rr").unwrap();
    gw.apply_line(T0, "-a -t 10.0.0.100:80 -r 10.0.0.2:80 -m")
        .unwrap();
    settle(&mut gw, dev);
    gw
}

/// Lets a new gateway send what its interface sends on its own at start: on Ethernet, the MLD
/// report for the solicited-node group of its IPv6 address (smoltcp's `multicast` feature, on
/// with lb-embedded's `sync`),
/// which the tests' expected frames do not include. Checks that that is all.
pub fn settle(gw: &mut Gateway<'_>, dev: &mut FakeDevice) {
    gw.poll(T0, dev);
    let sent = core::mem::take(&mut dev.tx);
    if dev.medium == Medium::Ethernet && cfg!(feature = "sync") {
        assert_eq!(sent.len(), 1, "{sent:?}");
        assert_eq!(mld_report_of(&sent[0]), Some(MLDV2_ROUTERS));
    } else {
        assert!(sent.is_empty(), "{sent:?}");
    }
}

/// ff02::16, where MLDv2 reports go.
pub const MLDV2_ROUTERS: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x16);

/// The destination of an MLDv2 report in an Ethernet frame (ICMPv6 type 143 after the
/// hop-by-hop header), if it is one.
pub fn mld_report_of(f: &[u8]) -> Option<Ipv6Addr> {
    let e = EthernetFrame::new_checked(f).ok()?;
    if e.ethertype() != EthernetProtocol::Ipv6 {
        return None;
    }
    let ip = Ipv6Packet::new_checked(e.payload()).ok()?;
    let p = ip.payload();
    // Hop-by-hop options (next header 0): the ICMPv6 message follows its 8 bytes.
    let icmp_type = match ip.next_header() {
        IpProtocol::HopByHop if p.first() == Some(&58) => *p.get(8)?,
        _ => return None,
    };
    (icmp_type == 143).then_some(ip.dst_addr())
}

/// [`gateway_with`] the default configuration.
pub fn gateway(dev: &mut FakeDevice) -> Gateway<'static> {
    gateway_with(dev, GatewayConfig::from_seed(GW_MAC, 7))
}

/// Feeds `frames` to the gateway in one poll at `now`; returns what it sent.
pub fn exchange(
    gw: &mut Gateway<'static>,
    dev: &mut FakeDevice,
    now: Instant,
    frames: &[Vec<u8>],
) -> Vec<Vec<u8>> {
    dev.rx.extend(frames.iter().cloned());
    gw.poll(now, dev);
    core::mem::take(&mut dev.tx)
}

/// `ip` wrapped in an Ethernet header.
pub fn eth(
    src: EthernetAddress,
    dst: EthernetAddress,
    ethertype: EthernetProtocol,
    payload: &[u8],
) -> Vec<u8> {
    let mut f = vec![0; LINK_HEADER + payload.len()];
    EthernetRepr {
        src_addr: src,
        dst_addr: dst,
        ethertype,
    }
    .emit(&mut EthernetFrame::new_unchecked(&mut f[..]));
    f[LINK_HEADER..].copy_from_slice(payload);
    f
}

/// An IPv4 packet in an Ethernet frame from the client's MAC to the gateway's.
pub fn eth4(ip: &[u8]) -> Vec<u8> {
    eth(CLIENT_MAC, GW_MAC, EthernetProtocol::Ipv4, ip)
}

/// An ARP packet (from `smac`/`sip` about `tip`) in an Ethernet frame to `dst`.
pub fn arp(
    op: ArpOperation,
    smac: EthernetAddress,
    sip: Ipv4Addr,
    tip: Ipv4Addr,
    dst: EthernetAddress,
) -> Vec<u8> {
    let mut p = [0u8; 28];
    ArpRepr::EthernetIpv4 {
        operation: op,
        source_hardware_addr: smac,
        source_protocol_addr: sip,
        target_hardware_addr: if op == ArpOperation::Request {
            EthernetAddress([0; 6])
        } else {
            dst
        },
        target_protocol_addr: tip,
    }
    .emit(&mut ArpPacket::new_unchecked(&mut p[..]));
    eth(smac, dst, EthernetProtocol::Arp, &p)
}

/// A broadcast ARP request from the client for `tip`.
pub fn who_has(tip: Ipv4Addr) -> Vec<u8> {
    arp(
        ArpOperation::Request,
        CLIENT_MAC,
        CLIENT,
        tip,
        EthernetAddress::BROADCAST,
    )
}

/// A TCP SYN from `src:40000` to `dst:80` as an IPv4 packet with TTL `ttl` (built by
/// lb-testkit).
pub fn syn(src: Ipv4Addr, dst: Ipv4Addr, ttl: u8) -> Vec<u8> {
    let (s, d) = (SocketAddr::from((src, 40000)), SocketAddr::from((dst, 80)));
    let mut b = pkt::tcp(s, d, pkt::SYN, 1, &[], 0);
    pkt::set_ttl(&mut b, ttl);
    b
}

/// An ICMP echo request from `src` to `dst` (TTL 64).
pub fn ping(src: Ipv4Addr, dst: Ipv4Addr) -> Vec<u8> {
    pkt::echo_request(src.into(), dst.into(), 1, 1, b"ping")
}

/// An ICMPv6 neighbour-discovery message from `src` to `dst` with hop limit `hop_limit`, in an
/// Ethernet frame from the client's MAC to `dst_mac`.
pub fn ndisc(
    src: Ipv6Addr,
    dst: Ipv6Addr,
    dst_mac: EthernetAddress,
    hop_limit: u8,
    msg: NdiscRepr<'_>,
) -> Vec<u8> {
    let icmp = Icmpv6Repr::Ndisc(msg);
    let ip = Ipv6Repr {
        src_addr: src,
        dst_addr: dst,
        next_header: IpProtocol::Icmpv6,
        payload_len: icmp.buffer_len(),
        hop_limit,
    };
    let mut b = vec![0; ip.buffer_len() + icmp.buffer_len()];
    let mut p = Ipv6Packet::new_unchecked(&mut b[..]);
    ip.emit(&mut p);
    icmp.emit(
        &src,
        &dst,
        &mut Icmpv6Packet::new_unchecked(p.payload_mut()),
        &ChecksumCapabilities::default(),
    );
    eth(CLIENT_MAC, dst_mac, EthernetProtocol::Ipv6, &b)
}

/// A frame's Ethernet header: (destination, source, ethertype).
pub fn eth_header(f: &[u8]) -> (EthernetAddress, EthernetAddress, EthernetProtocol) {
    let e = EthernetFrame::new_checked(f).unwrap();
    (e.dst_addr(), e.src_addr(), e.ethertype())
}

/// The ARP packet in an Ethernet frame, if it is one.
pub fn arp_of(f: &[u8]) -> Option<ArpRepr> {
    let e = EthernetFrame::new_checked(f).ok()?;
    if e.ethertype() != EthernetProtocol::Arp {
        return None;
    }
    ArpRepr::parse(&ArpPacket::new_checked(e.payload()).ok()?).ok()
}

/// The IPv4 packet in a frame (`link` = whether it has an Ethernet header).
pub fn ipv4_of(f: &[u8], link: bool) -> Option<Ipv4Packet<&[u8]>> {
    let ip = if link {
        let e = EthernetFrame::new_checked(f).ok()?;
        if e.ethertype() != EthernetProtocol::Ipv4 {
            return None;
        }
        &f[LINK_HEADER..]
    } else {
        f
    };
    Ipv4Packet::new_checked(ip).ok()
}

/// The neighbour-discovery message in an Ethernet frame, with its IPv6 source, destination
/// and hop limit, if it is one.
pub fn ndisc_of(f: &[u8]) -> Option<(Ipv6Addr, Ipv6Addr, u8, NdiscRepr<'_>)> {
    let e = EthernetFrame::new_checked(f).ok()?;
    if e.ethertype() != EthernetProtocol::Ipv6 {
        return None;
    }
    let ip = Ipv6Packet::new_checked(&f[LINK_HEADER..]).ok()?;
    let (src, dst, hop) = (ip.src_addr(), ip.dst_addr(), ip.hop_limit());
    let icmp = Icmpv6Packet::new_checked(&f[LINK_HEADER + 40..]).ok()?;
    match Icmpv6Repr::parse(&src, &dst, &icmp, &ChecksumCapabilities::default()).ok()? {
        Icmpv6Repr::Ndisc(nd) => Some((src, dst, hop, nd)),
        _ => None,
    }
}

/// Teaches the gateway that `ip` is at `mac` (an ARP request from it for the gateway's own
/// address, which the interface answers), then forgets what was sent.
pub fn teach(gw: &mut Gateway<'static>, dev: &mut FakeDevice, ip: Ipv4Addr, mac: EthernetAddress) {
    exchange(
        gw,
        dev,
        T0,
        &[arp(
            ArpOperation::Request,
            mac,
            ip,
            GW_IP,
            EthernetAddress::BROADCAST,
        )],
    );
    assert!(gw.neighbours().any(|n| n == (IpAddr::V4(ip), mac)));
}
