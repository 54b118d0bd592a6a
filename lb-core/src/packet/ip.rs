//! The full parse of the IP layer and of TCP/UDP headers behind [`parse`](super::parse): IPv4
//! (options, fragments, header checksum), IPv6 (its extension-header chain walked to the
//! upper-layer header, fragments), then the L4 header.

use core::net::{IpAddr, SocketAddr};

use smoltcp::wire::{Ipv4Packet, Ipv6Packet, TcpPacket, UdpPacket};

use super::icmp::parse_icmp;
use super::{
    Fragment, Kind, Malformed, Parsed, ICMP_HEADER, IPV4_MIN_HEADER, IPV6_HEADER, PROTO_ICMP,
    PROTO_ICMPV6, PROTO_TCP, PROTO_UDP, TCP_MIN_HEADER, UDP_HEADER,
};
use crate::checksum;

/// IPv6 next header of the Hop-by-Hop Options header.
const HOP_BY_HOP: u8 = 0;
/// IPv6 next header of the Routing header.
const ROUTING: u8 = 43;
/// IPv6 next header of the Fragment header.
const FRAGMENT: u8 = 44;
/// IPv6 next header of the Authentication Header.
const AUTH: u8 = 51;
/// IPv6 next header of the Destination Options header.
const DEST_OPTS: u8 = 60;
/// The longest extension-header chain walked; a longer one is refused
/// ([`Malformed::Ipv6ExtensionHeaders`]). RFC 8200 §4.1 recommends at most one of each header
/// (Destination Options twice): six; the walk costs one step per header.
pub(super) const MAX_EXTENSION_HEADERS: usize = 8;

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
    // MF clear and offset 0 is a whole datagram, DF or not (RFC 6864).
    let fragment = (ip.more_frags() || ip.frag_offset() != 0).then(|| Fragment {
        id: u32::from(ip.ident()),
        offset: ip.frag_offset(),
        more: ip.more_frags(),
    });
    let src = IpAddr::V4(ip.src_addr());
    let dst = IpAddr::V4(ip.dst_addr());
    let proto = u8::from(ip.next_header());
    parse_l4(false, proto, src, dst, ihl, ip.payload(), total, fragment)
}

/// Where an IPv6 extension-header chain leads: the upper-layer protocol and its offset, and
/// the Fragment header met on the way (an atomic fragment, offset 0 without M, is none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Chain {
    /// The upper-layer protocol; for a non-first fragment, the Fragment header's next header.
    pub(super) proto: u8,
    /// Offset of the upper-layer header in `pkt` (of the fragment data for a non-first
    /// fragment).
    pub(super) l4_offset: usize,
    /// The packet's place in its datagram, if it is a fragment.
    pub(super) fragment: Option<Fragment>,
}

/// Walks the extension headers of the IPv6 packet `pkt` (its fixed header included; `pkt`
/// ends where the packet does), as the kernel's `ipv6_skip_exthdr` does: Hop-by-Hop, Routing,
/// Fragment, Destination Options and AH are skipped, anything else is the upper layer (ESP
/// and No Next Header included: nothing lb-core reads). Stops at the Fragment header of a
/// non-first fragment (no upper-layer header follows). Refuses a Routing header with segments
/// left (the destination is not the final one), a second Fragment header and chains of more
/// than [`MAX_EXTENSION_HEADERS`] headers ([`Malformed::Ipv6ExtensionHeaders`]), and a header
/// that runs past the packet ([`Malformed::Truncated`]).
pub(super) fn walk_v6(pkt: &[u8]) -> Result<Chain, Malformed> {
    let mut next = *pkt.get(6).ok_or(Malformed::Truncated)?;
    let mut at = IPV6_HEADER;
    let mut fragment = None;
    let mut seen = 0;
    loop {
        if !matches!(next, HOP_BY_HOP | ROUTING | FRAGMENT | AUTH | DEST_OPTS) {
            return Ok(Chain {
                proto: next,
                l4_offset: at,
                fragment,
            });
        }
        seen += 1;
        if seen > MAX_EXTENSION_HEADERS {
            return Err(Malformed::Ipv6ExtensionHeaders);
        }
        let hdr = pkt.get(at..at + 8).ok_or(Malformed::Truncated)?;
        let len = match next {
            FRAGMENT => {
                if fragment.is_some() {
                    return Err(Malformed::Ipv6ExtensionHeaders);
                }
                let field = u16::from_be_bytes([hdr[2], hdr[3]]);
                let f = Fragment {
                    id: u32::from_be_bytes([hdr[4], hdr[5], hdr[6], hdr[7]]),
                    offset: field & !7,
                    more: field & 1 != 0,
                };
                if f.offset != 0 {
                    return Ok(Chain {
                        proto: hdr[0],
                        l4_offset: at + 8,
                        fragment: Some(f),
                    });
                }
                // An atomic fragment (offset 0, no more) is a whole packet (RFC 6946).
                if f.more {
                    fragment = Some(f);
                }
                8
            }
            AUTH => (usize::from(hdr[1]) + 2) * 4,
            _ => (usize::from(hdr[1]) + 1) * 8,
        };
        if at + len > pkt.len() {
            return Err(Malformed::Truncated);
        }
        if next == ROUTING && hdr[3] != 0 {
            return Err(Malformed::Ipv6ExtensionHeaders);
        }
        next = hdr[0];
        at += len;
    }
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
    let chain = walk_v6(&buf[..total])?;
    let src = IpAddr::V6(ip.src_addr());
    let dst = IpAddr::V6(ip.dst_addr());
    let l4 = &buf[chain.l4_offset..total];
    parse_l4(
        true,
        chain.proto,
        src,
        dst,
        chain.l4_offset,
        l4,
        total,
        chain.fragment,
    )
}

/// Parses the L4 part; `l4` is the IP payload after any extension headers
/// (`buf[l4_offset..total]`). For a fragment, `l4` holds the fragment's data only: a non-first
/// fragment is [`Kind::Fragment`], a first fragment must hold the whole TCP header or the
/// 8-byte UDP header, and a TCP fragment at offset 8 (overwriting the first fragment's flags)
/// is refused: the tiny-fragment rules of RFC 1858 §3 ([`Malformed::TinyFragment`]).
#[allow(clippy::too_many_arguments)]
fn parse_l4(
    v6: bool,
    proto: u8,
    src: IpAddr,
    dst: IpAddr,
    l4_offset: usize,
    l4: &[u8],
    total: usize,
    fragment: Option<Fragment>,
) -> Result<Parsed, Malformed> {
    let mut p = Parsed {
        v6,
        proto,
        tcp_flags: 0,
        // At most 60 bytes of IPv4 header, or 40 + 8 extension headers of at most 2,048 bytes.
        l4_offset: l4_offset as u16,
        payload_len: 0,
        total_len: total as u32,
        src: SocketAddr::new(src, 0),
        dst: SocketAddr::new(dst, 0),
        kind: Kind::Other,
        fragment,
    };
    let first_fragment = match fragment {
        Some(f) if f.offset != 0 => {
            if proto == PROTO_TCP && f.offset < TCP_MIN_HEADER as u16 {
                return Err(Malformed::TinyFragment);
            }
            p.kind = Kind::Fragment;
            return Ok(p);
        }
        Some(_) => true,
        None => false,
    };
    match (proto, v6) {
        (PROTO_TCP, _) => {
            if first_fragment && (l4.len() < TCP_MIN_HEADER || usize::from(l4[12] >> 4) * 4 > l4.len()) {
                return Err(Malformed::TinyFragment);
            }
            let (sport, dport, flags, payload) = parse_tcp(l4)?;
            p.src.set_port(sport);
            p.dst.set_port(dport);
            p.tcp_flags = flags;
            p.payload_len = payload;
            p.kind = Kind::Transport;
        }
        (PROTO_UDP, _) => {
            if first_fragment && l4.len() < UDP_HEADER {
                return Err(Malformed::TinyFragment);
            }
            let (sport, dport, payload) = parse_udp(l4, first_fragment)?;
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

/// Returns (source port, destination port, payload length). In a first fragment (`first`)
/// the UDP length is the whole datagram's, beyond the fragment: only its minimum is checked,
/// and the payload length is the fragment's.
fn parse_udp(l4: &[u8], first: bool) -> Result<(u16, u16, u16), Malformed> {
    if l4.len() < UDP_HEADER {
        return Err(Malformed::Truncated);
    }
    let len = usize::from(u16::from_be_bytes([l4[4], l4[5]]));
    if len < UDP_HEADER || (!first && len > l4.len()) {
        return Err(Malformed::BadUdpLength);
    }
    let udp = UdpPacket::new_unchecked(l4);
    let payload = if first { l4.len() } else { len } - UDP_HEADER;
    Ok((udp.src_port(), udp.dst_port(), payload as u16))
}
