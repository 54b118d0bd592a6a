//! Ethernet link-layer pieces the gateway is built from, public so that another frontend on an
//! Ethernet device (lb-tun's TAP mode) drives the same code rather than a copy: the ARP and
//! neighbour-discovery frames the gateway sends, the reading of a received neighbour-discovery
//! message, and the TTL / hop-limit decrement of a forwarded packet. Together with
//! [`neighbour::Neighbours`](crate::neighbour::Neighbours),
//! [`neighbour::Hold`](crate::neighbour::Hold) and [`route::Routes`](crate::route::Routes)
//! they are everything a next hop's hardware address takes.

use core::net::{Ipv4Addr, Ipv6Addr};

use smoltcp::phy::{ChecksumCapabilities, Medium};
use smoltcp::wire::{
    ArpOperation, ArpPacket, ArpRepr, EthernetAddress, EthernetFrame, EthernetProtocol,
    EthernetRepr, HardwareAddress, Icmpv6Packet, Icmpv6Repr, IpProtocol, Ipv4Packet, Ipv6Packet,
    Ipv6Repr, NdiscNeighborFlags, NdiscRepr, RawHardwareAddress,
};

use crate::LINK_HEADER;

/// Bytes of an ARP frame (Ethernet header and an Ethernet/IPv4 ARP packet, no padding).
pub const ARP_FRAME: usize = LINK_HEADER + 28;

/// Room for the largest neighbour-discovery frame the gateway sends: Ethernet and IPv6
/// headers and a solicitation or advertisement with one link-layer address option.
pub const NDISC_FRAME: usize = LINK_HEADER + 40 + 40;

/// The solicited-node multicast address of `a` (RFC 4291 §2.7.1).
pub fn solicited_node(a: Ipv6Addr) -> Ipv6Addr {
    let o = a.octets();
    Ipv6Addr::new(
        0xff02,
        0,
        0,
        0,
        0,
        1,
        0xff00 | u16::from(o[13]),
        u16::from_be_bytes([o[14], o[15]]),
    )
}

/// The Ethernet address an IPv6 multicast address maps to (RFC 2464 §7).
pub fn multicast_mac(a: Ipv6Addr) -> EthernetAddress {
    let o = a.octets();
    EthernetAddress([0x33, 0x33, o[12], o[13], o[14], o[15]])
}

/// The Ethernet address in a neighbour-discovery option, if it is one.
pub fn raw_mac(raw: RawHardwareAddress) -> Option<EthernetAddress> {
    match raw.parse(Medium::Ethernet) {
        Ok(HardwareAddress::Ethernet(m)) => Some(m),
        _ => None,
    }
}

/// An ARP request from `mac`/`sender` for `target`, broadcast.
pub fn arp_request(mac: EthernetAddress, sender: Ipv4Addr, target: Ipv4Addr) -> [u8; ARP_FRAME] {
    arp_frame(
        mac,
        EthernetAddress::BROADCAST,
        ArpRepr::EthernetIpv4 {
            operation: ArpOperation::Request,
            source_hardware_addr: mac,
            source_protocol_addr: sender,
            target_hardware_addr: EthernetAddress([0; 6]),
            target_protocol_addr: target,
        },
    )
}

/// The ARP reply saying `ip` is at `mac`, to `to_mac`/`to_ip` (the asker).
pub fn arp_reply(
    mac: EthernetAddress,
    ip: Ipv4Addr,
    to_mac: EthernetAddress,
    to_ip: Ipv4Addr,
) -> [u8; ARP_FRAME] {
    arp_frame(
        mac,
        to_mac,
        ArpRepr::EthernetIpv4 {
            operation: ArpOperation::Reply,
            source_hardware_addr: mac,
            source_protocol_addr: ip,
            target_hardware_addr: to_mac,
            target_protocol_addr: to_ip,
        },
    )
}

fn arp_frame(src: EthernetAddress, dst: EthernetAddress, arp: ArpRepr) -> [u8; ARP_FRAME] {
    let mut buf = [0u8; ARP_FRAME];
    EthernetRepr {
        src_addr: src,
        dst_addr: dst,
        ethertype: EthernetProtocol::Arp,
    }
    .emit(&mut EthernetFrame::new_unchecked(&mut buf[..]));
    arp.emit(&mut ArpPacket::new_unchecked(&mut buf[LINK_HEADER..]));
    buf
}

/// An ICMPv6 message with hop limit 255 (neighbour discovery) from `mac`/`src` to
/// `dst_mac`/`dst`, written to `buf`; its length, or `None` if it does not fit.
pub fn icmpv6_frame(
    buf: &mut [u8; NDISC_FRAME],
    mac: EthernetAddress,
    src: Ipv6Addr,
    dst_mac: EthernetAddress,
    dst: Ipv6Addr,
    msg: &Icmpv6Repr<'_>,
) -> Option<usize> {
    let ip = Ipv6Repr {
        src_addr: src,
        dst_addr: dst,
        next_header: IpProtocol::Icmpv6,
        payload_len: msg.buffer_len(),
        hop_limit: 255,
    };
    let total = LINK_HEADER + ip.buffer_len() + msg.buffer_len();
    let buf = buf.get_mut(..total)?;
    EthernetRepr {
        src_addr: mac,
        dst_addr: dst_mac,
        ethertype: EthernetProtocol::Ipv6,
    }
    .emit(&mut EthernetFrame::new_unchecked(&mut buf[..]));
    ip.emit(&mut Ipv6Packet::new_unchecked(&mut buf[LINK_HEADER..]));
    msg.emit(
        &src,
        &dst,
        &mut Icmpv6Packet::new_unchecked(&mut buf[LINK_HEADER + 40..]),
        &ChecksumCapabilities::default(),
    );
    Some(total)
}

/// The neighbour advertisement answering a solicitation for `target` from `src` (whose
/// link-layer address is `sender_mac`, from its option or, failing that, its frame), made by
/// the owner of `mac`: where it goes (address and hardware address) and the message
/// (RFC 4861 §7.2.4: to a solicitation from the unspecified address, all-nodes multicast
/// without the Solicited flag). `None` when the sender has no known hardware address.
pub fn neighbour_advert(
    src: Ipv6Addr,
    sender_mac: Option<EthernetAddress>,
    target: Ipv6Addr,
    mac: EthernetAddress,
) -> Option<(Ipv6Addr, EthernetAddress, Icmpv6Repr<'static>)> {
    let (to, to_mac, flags) = if src.is_unspecified() {
        let all = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
        (all, multicast_mac(all), NdiscNeighborFlags::OVERRIDE)
    } else {
        (
            src,
            sender_mac?,
            NdiscNeighborFlags::SOLICITED | NdiscNeighborFlags::OVERRIDE,
        )
    };
    let na = Icmpv6Repr::Ndisc(NdiscRepr::NeighborAdvert {
        flags,
        target_addr: target,
        lladdr: Some(mac.into()),
    });
    Some((to, to_mac, na))
}

/// The neighbour-discovery message in the IPv6 packet `ip`, with its source and destination:
/// `None` unless its hop limit is 255 (RFC 4861 §7.1: it was not forwarded) and it parses with
/// a valid checksum.
pub fn parse_ndisc(ip: &[u8]) -> Option<(Ipv6Addr, Ipv6Addr, NdiscRepr<'_>)> {
    let ip = Ipv6Packet::new_checked(ip).ok()?;
    if ip.hop_limit() != 255 {
        return None;
    }
    let (src, dst) = (ip.src_addr(), ip.dst_addr());
    let icmp = Icmpv6Packet::new_checked(ip.payload()).ok()?;
    match Icmpv6Repr::parse(&src, &dst, &icmp, &ChecksumCapabilities::default()) {
        Ok(Icmpv6Repr::Ndisc(nd)) => Some((src, dst, nd)),
        _ => None,
    }
}

/// Decrements the TTL (IPv4, checksum updated) or hop limit (IPv6) of the IP packet `ip`, as
/// a router forwarding it does (IPVS too: the kernel's `decrement_ttl` in `ip_vs_xmit.c`);
/// `false` if it ran out (the packet must be dropped) or `ip` is no IP packet.
pub fn decrement_ttl(ip: &mut [u8]) -> bool {
    match ip.first().map(|b| b >> 4) {
        Some(4) => match Ipv4Packet::new_checked(ip) {
            Ok(mut p) if p.hop_limit() > 1 => {
                let h = p.hop_limit();
                p.set_hop_limit(h - 1);
                p.fill_checksum();
                true
            }
            _ => false,
        },
        Some(6) => match Ipv6Packet::new_checked(ip) {
            Ok(mut p) if p.hop_limit() > 1 => {
                let h = p.hop_limit();
                p.set_hop_limit(h - 1);
                true
            }
            _ => false,
        },
        _ => false,
    }
}
