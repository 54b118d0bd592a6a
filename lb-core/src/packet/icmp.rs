//! ICMP messages: echo requests, and the errors that quote a TCP or UDP packet ([`IcmpError`]),
//! with the quoted packet's flow read from its IP header and first 8 bytes of L4 header.

use core::net::{IpAddr, SocketAddr};

use smoltcp::wire::{Icmpv4Packet, Ipv4Packet, Ipv6Packet};

use super::ip::walk_v6;
use super::{Kind, Malformed, ICMP_HEADER, IPV4_MIN_HEADER, IPV6_HEADER, QUOTED_L4};
use crate::addr::Protocol;

/// An ICMP error about a TCP or UDP packet: the quoted packet's flow and where it sits.
///
/// `src`/`dst` are the quoted packet's own source and destination: for an error about a reply
/// the director sent (VIP → client), `src` is the VIP; for an error about a packet the director
/// forwarded (client → real server), `dst` is the real server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IcmpError {
    /// The quoted packet's transport protocol.
    pub proto: Protocol,
    /// Source address and port of the quoted packet.
    pub src: SocketAddr,
    /// Destination address and port of the quoted packet.
    pub dst: SocketAddr,
    /// Offset of the quoted IP header in the buffer.
    pub ip_offset: u16,
    /// Offset of the quoted TCP/UDP header in the buffer, past any quoted IPv6 extension
    /// headers (at least 8 bytes of it are present).
    pub l4_offset: u16,
    /// ICMP type (e.g. 3 = destination unreachable for ICMPv4, 2 = packet too big for ICMPv6).
    pub icmp_type: u8,
    /// ICMP code (e.g. 4 = fragmentation needed for ICMPv4 type 3).
    pub icmp_code: u8,
}

/// Classifies an ICMP message (`icmp` = the whole message, at least 8 bytes).
pub(super) fn parse_icmp(v6: bool, icmp: &[u8], icmp_offset: usize) -> Result<Kind, Malformed> {
    let (ty, code) = if v6 {
        (icmp[0], icmp[1])
    } else {
        let p = Icmpv4Packet::new_checked(icmp).map_err(|_| Malformed::Truncated)?;
        (u8::from(p.msg_type()), p.msg_code())
    };
    let is_error = if v6 {
        (1..=127).contains(&ty)
    } else {
        matches!(ty, 3 | 4 | 11)
    };
    let is_echo = if v6 { ty == 128 } else { ty == 8 };
    if is_echo {
        return Ok(Kind::EchoRequest);
    }
    if !is_error {
        return Ok(Kind::Other);
    }
    let quoted = &icmp[ICMP_HEADER..];
    let ip_offset = icmp_offset + ICMP_HEADER;
    let q = if v6 {
        parse_quoted_v6(quoted)?
    } else {
        parse_quoted_v4(quoted)?
    };
    let Some((proto, src, dst, ip_len)) = q else {
        return Ok(Kind::Other);
    };
    Ok(Kind::IcmpError(IcmpError {
        proto,
        src,
        dst,
        ip_offset: ip_offset as u16,
        l4_offset: (ip_offset + ip_len) as u16,
        icmp_type: ty,
        icmp_code: code,
    }))
}

/// A quoted packet's (protocol, source, destination, IP header length), or `None` if it is not
/// a first fragment of TCP/UDP.
type Quoted = Option<(Protocol, SocketAddr, SocketAddr, usize)>;

/// The ports at the start of a quoted L4 header (at least [`QUOTED_L4`] bytes long).
fn quoted_ports(l4: &[u8]) -> Result<(u16, u16), Malformed> {
    match l4 {
        [a, b, c, d, _, _, _, _, ..] => {
            Ok((u16::from_be_bytes([*a, *b]), u16::from_be_bytes([*c, *d])))
        }
        _ => Err(Malformed::BadEmbeddedPacket),
    }
}

fn parse_quoted_v4(q: &[u8]) -> Result<Quoted, Malformed> {
    if q.len() < IPV4_MIN_HEADER || q[0] >> 4 != 4 {
        return Err(Malformed::BadEmbeddedPacket);
    }
    let ihl = usize::from(q[0] & 0x0f) * 4;
    if ihl < IPV4_MIN_HEADER || q.len() < ihl + QUOTED_L4 {
        return Err(Malformed::BadEmbeddedPacket);
    }
    // The quoted total length describes the original packet, not the quote: not checked.
    let ip = Ipv4Packet::new_unchecked(q);
    let Some(proto) = Protocol::from_number(u8::from(ip.next_header())) else {
        return Ok(None);
    };
    if ip.frag_offset() != 0 {
        return Ok(None);
    }
    let (sport, dport) = quoted_ports(&q[ihl..])?;
    let src = SocketAddr::new(IpAddr::V4(ip.src_addr()), sport);
    let dst = SocketAddr::new(IpAddr::V4(ip.dst_addr()), dport);
    Ok(Some((proto, src, dst, ihl)))
}

fn parse_quoted_v6(q: &[u8]) -> Result<Quoted, Malformed> {
    if q.len() < IPV6_HEADER + QUOTED_L4 || q[0] >> 4 != 6 {
        return Err(Malformed::BadEmbeddedPacket);
    }
    let ip = Ipv6Packet::new_unchecked(q);
    // The quoted extension headers are walked as the outer ones; the quote ends where the
    // error was cut, not where the quoted payload length says.
    let chain = walk_v6(q).map_err(|_| Malformed::BadEmbeddedPacket)?;
    let Some(proto) = Protocol::from_number(chain.proto) else {
        return Ok(None);
    };
    if chain.fragment.is_some_and(|f| f.offset != 0) {
        return Ok(None);
    }
    let (sport, dport) = quoted_ports(&q[chain.l4_offset..])?;
    let src = SocketAddr::new(IpAddr::V6(ip.src_addr()), sport);
    let dst = SocketAddr::new(IpAddr::V6(ip.dst_addr()), dport);
    Ok(Some((proto, src, dst, chain.l4_offset)))
}
