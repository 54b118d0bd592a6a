//! The full parse of the IP layer and of TCP/UDP headers behind [`parse`](super::parse): IPv4
//! (options, fragments, header checksum), IPv6 (fragment and extension headers refused), then
//! the L4 header.

use core::net::{IpAddr, SocketAddr};

use smoltcp::wire::{Ipv4Packet, Ipv6Packet, TcpPacket, UdpPacket};

use super::icmp::parse_icmp;
use super::{
    Kind, Malformed, Parsed, ICMP_HEADER, IPV4_MIN_HEADER, IPV6_HEADER, PROTO_ICMP, PROTO_ICMPV6,
    PROTO_IPV6_FRAGMENT, PROTO_TCP, PROTO_UDP, TCP_MIN_HEADER, UDP_HEADER,
};
use crate::checksum;

/// Checks an IPv4 header's lengths; returns (header length, total length).
fn check_v4_header(buf: &[u8]) -> Result<(usize, usize), Malformed> {
    if buf.len() < IPV4_MIN_HEADER {
        return Err(Malformed::Truncated);
    }
    let ihl = usize::from(buf[0] & 0x0f) * 4;
    if ihl < IPV4_MIN_HEADER {
        return Err(Malformed::BadIhl);
    }
    let total = usize::from(u16::from_be_bytes([buf[2], buf[3]]));
    if total < ihl {
        return Err(Malformed::BadTotalLength);
    }
    if buf.len() < total {
        return Err(Malformed::Truncated);
    }
    Ok((ihl, total))
}

pub(super) fn parse_v4(buf: &[u8]) -> Result<Parsed, Malformed> {
    let (ihl, total) = check_v4_header(buf)?;
    let ip = Ipv4Packet::new_checked(&buf[..total]).map_err(|_| Malformed::Truncated)?;
    if !checksum::ipv4_header_verifies(&buf[..ihl]) {
        return Err(Malformed::BadIpv4HeaderChecksum);
    }
    if ip.more_frags() || ip.frag_offset() != 0 {
        return Err(Malformed::Fragment);
    }
    let src = IpAddr::V4(ip.src_addr());
    let dst = IpAddr::V4(ip.dst_addr());
    let proto = u8::from(ip.next_header());
    parse_l4(false, proto, src, dst, ihl, ip.payload(), total)
}

/// IPv6 next-header values of extension headers lb-core does not walk.
fn is_ipv6_extension(next: u8) -> bool {
    matches!(next, 0 | 43 | 51 | 60 | 135 | 139 | 140 | 253 | 254)
}

pub(super) fn parse_v6(buf: &[u8]) -> Result<Parsed, Malformed> {
    if buf.len() < IPV6_HEADER {
        return Err(Malformed::Truncated);
    }
    let total = IPV6_HEADER + usize::from(u16::from_be_bytes([buf[4], buf[5]]));
    if buf.len() < total {
        return Err(Malformed::Truncated);
    }
    let ip = Ipv6Packet::new_checked(&buf[..total]).map_err(|_| Malformed::Truncated)?;
    let proto = u8::from(ip.next_header());
    if proto == PROTO_IPV6_FRAGMENT {
        return Err(Malformed::Fragment);
    }
    if is_ipv6_extension(proto) {
        return Err(Malformed::Ipv6ExtensionHeaders);
    }
    let src = IpAddr::V6(ip.src_addr());
    let dst = IpAddr::V6(ip.dst_addr());
    parse_l4(true, proto, src, dst, IPV6_HEADER, ip.payload(), total)
}

/// Parses the L4 part; `l4` is the IP payload (`buf[l4_offset..total]`).
fn parse_l4(
    v6: bool,
    proto: u8,
    src: IpAddr,
    dst: IpAddr,
    l4_offset: usize,
    l4: &[u8],
    total: usize,
) -> Result<Parsed, Malformed> {
    let mut p = Parsed {
        v6,
        proto,
        tcp_flags: 0,
        // An IPv4 header is at most 60 bytes, an IPv6 one 40: this never truncates.
        l4_offset: l4_offset as u16,
        payload_len: 0,
        total_len: total as u32,
        src: SocketAddr::new(src, 0),
        dst: SocketAddr::new(dst, 0),
        kind: Kind::Other,
    };
    match (proto, v6) {
        (PROTO_TCP, _) => {
            let (sport, dport, flags, payload) = parse_tcp(l4)?;
            p.src.set_port(sport);
            p.dst.set_port(dport);
            p.tcp_flags = flags;
            p.payload_len = payload;
            p.kind = Kind::Transport;
        }
        (PROTO_UDP, _) => {
            let (sport, dport, payload) = parse_udp(l4)?;
            p.src.set_port(sport);
            p.dst.set_port(dport);
            p.payload_len = payload;
            p.kind = Kind::Transport;
        }
        (PROTO_ICMP, false) | (PROTO_ICMPV6, true) => {
            if l4.len() < ICMP_HEADER {
                return Err(Malformed::Truncated);
            }
            p.payload_len = (l4.len() - ICMP_HEADER) as u16;
            p.kind = parse_icmp(v6, l4, l4_offset)?;
        }
        _ => {}
    }
    Ok(p)
}

/// Returns (source port, destination port, flags, payload length).
fn parse_tcp(l4: &[u8]) -> Result<(u16, u16, u8, u16), Malformed> {
    if l4.len() < TCP_MIN_HEADER {
        return Err(Malformed::Truncated);
    }
    let doff = usize::from(l4[12] >> 4) * 4;
    if doff < TCP_MIN_HEADER || doff > l4.len() {
        return Err(Malformed::BadTcpDataOffset);
    }
    let tcp = TcpPacket::new_checked(l4).map_err(|_| Malformed::BadTcpDataOffset)?;
    // The L4 length is at most 65535 (IPv6 payload length) minus a 20-byte header.
    let payload = (l4.len() - doff) as u16;
    Ok((tcp.src_port(), tcp.dst_port(), l4[13], payload))
}

/// Returns (source port, destination port, payload length).
fn parse_udp(l4: &[u8]) -> Result<(u16, u16, u16), Malformed> {
    if l4.len() < UDP_HEADER {
        return Err(Malformed::Truncated);
    }
    let len = usize::from(u16::from_be_bytes([l4[4], l4[5]]));
    if len < UDP_HEADER || len > l4.len() {
        return Err(Malformed::BadUdpLength);
    }
    let udp = UdpPacket::new_checked(l4).map_err(|_| Malformed::BadUdpLength)?;
    Ok((udp.src_port(), udp.dst_port(), (len - UDP_HEADER) as u16))
}
