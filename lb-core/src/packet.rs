//! Parsing of one IP packet into what the balancer needs to look it up and rewrite it
//! (reference §6.1, §2.8 for which ICMP messages are "related").
//!
//! [`parse`] takes a packet starting at its IP header (no link layer) and returns a [`Parsed`]:
//! addresses, ports, TCP flags and the byte offsets the rewrites in [`crate::nat`] use, so a
//! rewrite never parses again. The datapath first tries [`parse_flow`], which reads only the
//! common shape — TCP or UDP over IPv4 without options or IPv6 without extension headers, not a
//! fragment — into a [`Flow`] (addresses as the connection entries store them), with the same
//! checks; anything else goes to [`parse`]. It reads untrusted bytes through smoltcp's `wire` views, created
//! with `new_checked` after lb-core's own length checks (which give the specific [`Malformed`]
//! reason smoltcp's unit error does not).
//!
//! What is recognised:
//! * IPv4 and IPv6 carrying TCP or UDP: [`Kind::Transport`].
//! * ICMPv4 DEST_UNREACH, SOURCE_QUENCH and TIME_EXCEEDED, and ICMPv6 errors (types 1–127),
//!   quoting a TCP or UDP packet: [`Kind::IcmpError`]. Only the quoted IP header and the first
//!   8 bytes of the quoted L4 header must be present (RFC 792); the ports sit in those 8 bytes.
//! * ICMPv4 echo request (type 8) and ICMPv6 echo request (type 128): [`Kind::EchoRequest`], so a
//!   frontend can answer pings to a VIP ([`crate::nat::write_echo_reply`]).
//! * Anything else well-formed (other protocols, other ICMP, ICMP errors quoting something other
//!   than TCP/UDP or a non-first fragment): [`Kind::Other`], for the caller to pass on or drop.
//!
//! Checked and refused ([`Malformed`], a counted drop for the balancer): truncation, bad version,
//! IHL or total length, a bad IPv4 header checksum, a bad TCP data offset or UDP length.
//! Bytes after the IP total length (link-layer padding) are ignored.
//!
//! Deliberate limitations, each a counted drop:
//! * **Fragments** (IPv4 MF set or fragment offset ≠ 0, or an IPv6 Fragment header) are refused
//!   with [`Malformed::Fragment`]: lb-core does not reassemble, and a non-first fragment has no
//!   ports to look up. IPVS sees reassembled packets (conntrack defragments before it).
//! * **IPv6 extension headers** (Hop-by-Hop, Routing, Destination Options, AH, Mobility, HIP,
//!   Shim6, experimental 253/254) are refused with [`Malformed::Ipv6ExtensionHeaders`]: the
//!   header chain is not walked.
//!
//! L4 checksums are not verified, as in IPVS: the rewrites update them incrementally, so a
//! corrupt segment stays detectably corrupt for its receiver.

#![warn(missing_docs)]

use core::fmt;
use core::net::{IpAddr, SocketAddr};

use smoltcp::wire::{Icmpv4Packet, Ipv4Packet, Ipv6Packet, TcpPacket, UdpPacket};

use crate::addr::Protocol;
pub use crate::addr::{addr_bytes, ip_of};
use crate::checksum;

/// IP protocol number of ICMPv4.
pub const PROTO_ICMP: u8 = 1;
/// IP protocol number of TCP.
pub const PROTO_TCP: u8 = 6;
/// IP protocol number of UDP.
pub const PROTO_UDP: u8 = 17;
/// IP protocol number (IPv6 next header) of ICMPv6.
pub const PROTO_ICMPV6: u8 = 58;
/// IPv6 next header of the Fragment header.
const PROTO_IPV6_FRAGMENT: u8 = 44;

const IPV4_MIN_HEADER: usize = 20;
const IPV6_HEADER: usize = 40;
const TCP_MIN_HEADER: usize = 20;
const UDP_HEADER: usize = 8;
const ICMP_HEADER: usize = 8;
/// Bytes of a quoted L4 header an ICMP error must carry (RFC 792: "64 bits of data").
const QUOTED_L4: usize = 8;

/// Why a packet was refused. Each variant is a reason to count in drop statistics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Malformed {
    /// Shorter than a header, or than the length its header claims.
    Truncated,
    /// The IP version is neither 4 nor 6.
    BadVersion,
    /// IPv4 header length below 5 words.
    BadIhl,
    /// IPv4 total length smaller than the header.
    BadTotalLength,
    /// The IPv4 header checksum does not verify.
    BadIpv4HeaderChecksum,
    /// TCP data offset below 5 words or beyond the segment.
    BadTcpDataOffset,
    /// UDP length below 8 or beyond the IP payload.
    BadUdpLength,
    /// An IPv6 extension header (other than Fragment): the chain is not walked.
    Ipv6ExtensionHeaders,
    /// An IPv4 or IPv6 fragment: lb-core does not reassemble.
    Fragment,
    /// An ICMP error whose quoted packet is not a whole IP header of the outer family plus
    /// 8 bytes of L4 header.
    BadEmbeddedPacket,
}

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Malformed::Truncated => "truncated packet",
            Malformed::BadVersion => "IP version is neither 4 nor 6",
            Malformed::BadIhl => "IPv4 header length below 20 bytes",
            Malformed::BadTotalLength => "IPv4 total length smaller than its header",
            Malformed::BadIpv4HeaderChecksum => "bad IPv4 header checksum",
            Malformed::BadTcpDataOffset => "bad TCP data offset",
            Malformed::BadUdpLength => "bad UDP length",
            Malformed::Ipv6ExtensionHeaders => "IPv6 extension headers are not supported",
            Malformed::Fragment => "IP fragments are not supported",
            Malformed::BadEmbeddedPacket => "ICMP error quotes an incomplete or foreign packet",
        })
    }
}

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
    /// Offset of the quoted TCP/UDP header in the buffer (at least 8 bytes of it are present).
    pub l4_offset: u16,
    /// ICMP type (e.g. 3 = destination unreachable for ICMPv4, 2 = packet too big for ICMPv6).
    pub icmp_type: u8,
    /// ICMP code (e.g. 4 = fragmentation needed for ICMPv4 type 3).
    pub icmp_code: u8,
}

/// What kind of packet [`parse`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// TCP or UDP: `Parsed::src`/`dst` carry the ports.
    Transport,
    /// An ICMP error quoting a TCP or UDP packet.
    IcmpError(IcmpError),
    /// An ICMPv4 or ICMPv6 echo request.
    EchoRequest,
    /// Well-formed but nothing lb-core balances.
    Other,
}

/// A parsed IP packet: everything the balancer and the rewrites need, with no reference to the
/// buffer. 148 bytes on 64-bit targets (mostly four `SocketAddr`s of 32 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Parsed {
    /// IPv6 (else IPv4).
    pub v6: bool,
    /// The IP protocol number (IPv4 protocol / IPv6 next header).
    pub proto: u8,
    /// TCP header flags (byte 13; see [`crate::tcp::flags`]); 0 unless TCP.
    pub tcp_flags: u8,
    /// Offset of the L4 header (TCP, UDP or ICMP) in the buffer: the IP header length.
    pub l4_offset: u16,
    /// Bytes of L4 payload: after the TCP header (options included), after the 8-byte UDP
    /// header (per the UDP length field), or after the 8-byte ICMP header; 0 for `Other`.
    pub payload_len: u16,
    /// Length of the IP packet (header and payload) as its header says; bytes of the buffer past
    /// it are padding. The packet to transmit is `buf[..total_len]`.
    pub total_len: u32,
    /// Source address, and source port for TCP/UDP (0 otherwise).
    pub src: SocketAddr,
    /// Destination address, and destination port for TCP/UDP (0 otherwise).
    pub dst: SocketAddr,
    /// What the packet is.
    pub kind: Kind,
}

impl Parsed {
    /// The transport protocol of a TCP/UDP packet (`Kind::Transport`), else `None`.
    #[inline]
    pub fn transport(&self) -> Option<Protocol> {
        match self.kind {
            Kind::Transport => Protocol::from_number(self.proto),
            _ => None,
        }
    }
}

/// Parses the IP packet at the start of `buf`. Call it once per received packet, before any
/// lookup; pass the result to the rewrites in [`crate::nat`] together with the same buffer.
#[inline]
pub fn parse(buf: &[u8]) -> Result<Parsed, Malformed> {
    match buf.first().map(|b| b >> 4) {
        None => Err(Malformed::Truncated),
        Some(4) => parse_v4(buf),
        Some(6) => parse_v6(buf),
        Some(_) => Err(Malformed::BadVersion),
    }
}

/// A TCP or UDP packet of the common shape, read by [`parse_flow`]: the fields of [`Parsed`]
/// for `Kind::Transport`, with the addresses as stored in a connection entry (16 bytes, an IPv4
/// address in the first four, the rest zero) instead of `SocketAddr`s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flow {
    /// IPv6 (else IPv4).
    pub v6: bool,
    /// TCP or UDP.
    pub proto: Protocol,
    /// TCP header flags (byte 13); 0 for UDP.
    pub tcp_flags: u8,
    /// Offset of the TCP/UDP header: 20 (IPv4, no options) or 40 (IPv6).
    pub l4_offset: u16,
    /// Bytes of L4 payload, as [`Parsed::payload_len`].
    pub payload_len: u16,
    /// Length of the IP packet as its header says, as [`Parsed::total_len`].
    pub total_len: u32,
    /// Source address.
    pub src: [u8; 16],
    /// Destination address.
    pub dst: [u8; 16],
    /// Source port.
    pub sport: u16,
    /// Destination port.
    pub dport: u16,
}

impl Flow {
    /// A placeholder (IPv4 TCP, all zero) for arrays of flows.
    pub const EMPTY: Flow = Flow {
        v6: false,
        proto: Protocol::Tcp,
        tcp_flags: 0,
        l4_offset: 0,
        payload_len: 0,
        total_len: 0,
        src: [0; 16],
        dst: [0; 16],
        sport: 0,
        dport: 0,
    };

    /// What [`parse`] returns for the same packet.
    #[inline]
    pub fn to_parsed(&self) -> Parsed {
        Parsed {
            v6: self.v6,
            proto: self.proto.number(),
            tcp_flags: self.tcp_flags,
            l4_offset: self.l4_offset,
            payload_len: self.payload_len,
            total_len: self.total_len,
            src: SocketAddr::new(ip_of(self.v6, &self.src), self.sport),
            dst: SocketAddr::new(ip_of(self.v6, &self.dst), self.dport),
            kind: Kind::Transport,
        }
    }
}

/// The datapath's first look at a packet: `Some` for exactly the packets [`parse`] reads as
/// `Kind::Transport` that have the common shape — an IPv4 header without options or an IPv6
/// header without extension headers, not a fragment, carrying TCP or UDP — with the same
/// checks (lengths, IPv4 header checksum, TCP data offset, UDP length); `None` for everything
/// else, which [`parse`] then reads in full (and refuses where it must). Reads the fixed
/// headers through smoltcp's views after its own length checks, with no per-field bounds
/// checks left.
#[inline(always)]
pub fn parse_flow(buf: &[u8]) -> Option<Flow> {
    let first = *buf.first()?;
    let (v6, proto, l4_offset, total, src, dst) = if first == 0x45 {
        let hdr: &[u8; IPV4_MIN_HEADER] = buf.get(..IPV4_MIN_HEADER)?.try_into().ok()?;
        let ip = Ipv4Packet::new_unchecked(&hdr[..]);
        let total = usize::from(ip.total_len());
        // Not a fragment (MF clear, offset 0); the DF bit may be set.
        if total < IPV4_MIN_HEADER || total > buf.len() || hdr[6] & 0x3f != 0 || hdr[7] != 0 {
            return None;
        }
        if !ipv4_header_verifies(hdr) {
            return None;
        }
        let mut src = [0u8; 16];
        let mut dst = [0u8; 16];
        src[..4].copy_from_slice(&ip.src_addr().octets());
        dst[..4].copy_from_slice(&ip.dst_addr().octets());
        (false, hdr[9], IPV4_MIN_HEADER, total, src, dst)
    } else if first >> 4 == 6 {
        let hdr: &[u8; IPV6_HEADER] = buf.get(..IPV6_HEADER)?.try_into().ok()?;
        let ip = Ipv6Packet::new_unchecked(&hdr[..]);
        let total = IPV6_HEADER + usize::from(ip.payload_len());
        if total > buf.len() {
            return None;
        }
        let src = ip.src_addr().octets();
        let dst = ip.dst_addr().octets();
        (true, hdr[6], IPV6_HEADER, total, src, dst)
    } else {
        return None;
    };
    let l4 = buf.get(l4_offset..total)?;
    let (proto, tcp_flags, payload_len) = match proto {
        PROTO_TCP => {
            let hdr: &[u8; TCP_MIN_HEADER] = l4.get(..TCP_MIN_HEADER)?.try_into().ok()?;
            let doff = usize::from(hdr[12] >> 4) * 4;
            if doff < TCP_MIN_HEADER || doff > l4.len() {
                return None;
            }
            (Protocol::Tcp, hdr[13], l4.len() - doff)
        }
        PROTO_UDP => {
            let hdr: &[u8; UDP_HEADER] = l4.get(..UDP_HEADER)?.try_into().ok()?;
            let len = usize::from(UdpPacket::new_unchecked(&hdr[..]).len());
            if len < UDP_HEADER || len > l4.len() {
                return None;
            }
            (Protocol::Udp, 0, len - UDP_HEADER)
        }
        _ => return None,
    };
    Some(Flow {
        v6,
        proto,
        tcp_flags,
        l4_offset: l4_offset as u16,
        payload_len: payload_len as u16,
        total_len: total as u32,
        src,
        dst,
        sport: u16::from_be_bytes([l4[0], l4[1]]),
        dport: u16::from_be_bytes([l4[2], l4[3]]),
    })
}

/// Whether a 20-byte IPv4 header's checksum verifies: its five 32-bit words summed in ones'
/// complement fold to 0xffff (the same sum as over its ten 16-bit words).
#[inline(always)]
fn ipv4_header_verifies(hdr: &[u8; IPV4_MIN_HEADER]) -> bool {
    let mut sum = 0u64;
    for w in hdr.chunks_exact(4) {
        sum += u64::from(u32::from_be_bytes([w[0], w[1], w[2], w[3]]));
    }
    checksum::fold(sum) == 0xffff
}

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

fn parse_v4(buf: &[u8]) -> Result<Parsed, Malformed> {
    let (ihl, total) = check_v4_header(buf)?;
    let ip = Ipv4Packet::new_checked(&buf[..total]).map_err(|_| Malformed::Truncated)?;
    if checksum::fold(checksum::add(0, &buf[..ihl])) != 0xffff {
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

fn parse_v6(buf: &[u8]) -> Result<Parsed, Malformed> {
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

/// Classifies an ICMP message (`icmp` = the whole message, at least 8 bytes).
fn parse_icmp(v6: bool, icmp: &[u8], icmp_offset: usize) -> Result<Kind, Malformed> {
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
    // Extension headers (a Fragment header included) are not walked: not a flow we track.
    let Some(proto) = Protocol::from_number(u8::from(ip.next_header())) else {
        return Ok(None);
    };
    let (sport, dport) = quoted_ports(&q[IPV6_HEADER..])?;
    let src = SocketAddr::new(IpAddr::V6(ip.src_addr()), sport);
    let dst = SocketAddr::new(IpAddr::V6(ip.dst_addr()), dport);
    Ok(Some((proto, src, dst, IPV6_HEADER)))
}

/// Packet builders for tests, emitted with smoltcp's `Repr`s and checksummed with smoltcp's
/// `fill_checksum` (independent of lb-core's own checksum code).
#[cfg(test)]
pub(crate) mod fixtures {
    use core::net::{IpAddr, SocketAddr};
    use smoltcp::phy::ChecksumCapabilities;
    use smoltcp::wire::{
        Icmpv4Packet, Icmpv6Packet, IpAddress, IpProtocol, Ipv4Packet, Ipv4Repr, Ipv6Packet,
        Ipv6Repr, TcpControl, TcpPacket, TcpRepr, TcpSeqNumber, UdpPacket, UdpRepr,
    };
    use std::vec;
    use std::vec::Vec;

    /// An IP packet from `src` to `dst` carrying `l4` (checksum left as is), with `opt_words`
    /// 4-byte words of NOP options in an IPv4 header.
    pub fn ip(src: IpAddr, dst: IpAddr, proto: u8, opt_words: usize, l4: &[u8]) -> Vec<u8> {
        match (src, dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                let hlen = 20 + 4 * opt_words;
                let mut buf = vec![0u8; hlen + l4.len()];
                let repr = Ipv4Repr {
                    src_addr: s,
                    dst_addr: d,
                    next_header: IpProtocol::from(proto),
                    payload_len: l4.len(),
                    hop_limit: 61,
                };
                let mut p = Ipv4Packet::new_unchecked(&mut buf[..]);
                repr.emit(&mut p, &ChecksumCapabilities::default());
                p.set_header_len(hlen as u8);
                p.set_total_len((hlen + l4.len()) as u16);
                buf[20..hlen].fill(1); // NOP options
                buf[hlen..].copy_from_slice(l4);
                Ipv4Packet::new_unchecked(&mut buf[..]).fill_checksum();
                buf
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                let mut buf = vec![0u8; 40 + l4.len()];
                let repr = Ipv6Repr {
                    src_addr: s,
                    dst_addr: d,
                    next_header: IpProtocol::from(proto),
                    payload_len: l4.len(),
                    hop_limit: 61,
                };
                repr.emit(&mut Ipv6Packet::new_unchecked(&mut buf[..]));
                buf[40..].copy_from_slice(l4);
                buf
            }
            _ => panic!("mixed families"),
        }
    }

    /// A TCP segment with exactly `flags` set, some options, and `payload`.
    #[allow(clippy::too_many_arguments)]
    pub fn tcp(
        src: SocketAddr,
        dst: SocketAddr,
        flags: u8,
        seq: u32,
        ack: u32,
        payload: &[u8],
        opt_words: usize,
        with_mss: bool,
    ) -> Vec<u8> {
        let repr = TcpRepr {
            src_port: src.port(),
            dst_port: dst.port(),
            control: TcpControl::None,
            seq_number: TcpSeqNumber(seq as i32),
            ack_number: Some(TcpSeqNumber(ack as i32)),
            window_len: 29200,
            window_scale: with_mss.then_some(7),
            max_seg_size: with_mss.then_some(1460),
            sack_permitted: with_mss,
            sack_ranges: [None; 3],
            timestamp: None,
            payload,
        };
        let mut l4 = vec![0u8; repr.buffer_len()];
        let (s, d) = (IpAddress::from(src.ip()), IpAddress::from(dst.ip()));
        repr.emit(
            &mut TcpPacket::new_unchecked(&mut l4),
            &s,
            &d,
            &ChecksumCapabilities::ignored(),
        );
        l4[13] = flags;
        let mut pkt = ip(src.ip(), dst.ip(), 6, opt_words, &l4);
        fill_l4(&mut pkt);
        pkt
    }

    /// A UDP datagram with `payload`.
    pub fn udp(src: SocketAddr, dst: SocketAddr, payload: &[u8], opt_words: usize) -> Vec<u8> {
        let repr = UdpRepr {
            src_port: src.port(),
            dst_port: dst.port(),
        };
        let mut l4 = vec![0u8; 8 + payload.len()];
        let (s, d) = (IpAddress::from(src.ip()), IpAddress::from(dst.ip()));
        repr.emit(
            &mut UdpPacket::new_unchecked(&mut l4[..]),
            &s,
            &d,
            payload.len(),
            |b| b.copy_from_slice(payload),
            &ChecksumCapabilities::ignored(),
        );
        let mut pkt = ip(src.ip(), dst.ip(), 17, opt_words, &l4);
        fill_l4(&mut pkt);
        pkt
    }

    /// An ICMP message of type `ty`/`code`, 4 bytes `rest` after the checksum, then `body`.
    pub fn icmp(src: IpAddr, dst: IpAddr, ty: u8, code: u8, rest: [u8; 4], body: &[u8]) -> Vec<u8> {
        let mut l4 = vec![ty, code, 0, 0];
        l4.extend_from_slice(&rest);
        l4.extend_from_slice(body);
        let proto = if src.is_ipv6() { 58 } else { 1 };
        let mut pkt = ip(src, dst, proto, 0, &l4);
        fill_l4(&mut pkt);
        pkt
    }

    /// Fills the L4 checksum of a packet built by [`ip`], with smoltcp's code.
    pub fn fill_l4(pkt: &mut [u8]) {
        let (v6, proto, hlen) = if pkt[0] >> 4 == 6 {
            (true, pkt[6], 40)
        } else {
            (false, pkt[9], usize::from(pkt[0] & 15) * 4)
        };
        let (s, d): (IpAddress, IpAddress) = if v6 {
            let s: [u8; 16] = pkt[8..24].try_into().unwrap();
            let d: [u8; 16] = pkt[24..40].try_into().unwrap();
            (
                core::net::Ipv6Addr::from(s).into(),
                core::net::Ipv6Addr::from(d).into(),
            )
        } else {
            let s: [u8; 4] = pkt[12..16].try_into().unwrap();
            let d: [u8; 4] = pkt[16..20].try_into().unwrap();
            (
                core::net::Ipv4Addr::from(s).into(),
                core::net::Ipv4Addr::from(d).into(),
            )
        };
        let l4 = &mut pkt[hlen..];
        match (proto, s, d) {
            (6, _, _) => TcpPacket::new_unchecked(l4).fill_checksum(&s, &d),
            (17, _, _) => UdpPacket::new_unchecked(l4).fill_checksum(&s, &d),
            (1, _, _) => Icmpv4Packet::new_unchecked(l4).fill_checksum(),
            (58, IpAddress::Ipv6(s), IpAddress::Ipv6(d)) => {
                Icmpv6Packet::new_unchecked(l4).fill_checksum(&s, &d)
            }
            _ => {}
        }
    }

    pub fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    pub fn ipa(s: &str) -> IpAddr {
        s.parse().unwrap()
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::*;
    use super::*;
    use crate::checksum::verify_checksums;
    use crate::tcp::flags::*;
    use proptest::prelude::*;
    use std::vec::Vec;

    fn icmp_kind(p: &Parsed) -> IcmpError {
        match p.kind {
            Kind::IcmpError(e) => e,
            k => panic!("not an ICMP error: {k:?}"),
        }
    }

    #[test]
    fn ipv4_tcp_with_options_and_padding() {
        let (c, v) = (sa("192.0.2.7:40000"), sa("198.51.100.1:80"));
        let mut pkt = tcp(c, v, SYN | ACK, 1, 2, b"hello", 2, true);
        assert!(verify_checksums(&pkt));
        let total = pkt.len();
        pkt.extend_from_slice(&[0xee; 6]); // link-layer padding
        let p = parse(&pkt).unwrap();
        assert!(!p.v6);
        assert_eq!((p.proto, p.src, p.dst), (PROTO_TCP, c, v));
        assert_eq!(p.tcp_flags, SYN | ACK);
        assert_eq!(p.l4_offset, 28);
        assert_eq!(p.total_len as usize, total);
        assert_eq!(p.payload_len, 5);
        assert_eq!(p.kind, Kind::Transport);
        assert_eq!(p.transport(), Some(Protocol::Tcp));
    }

    #[test]
    fn ipv6_udp() {
        let (c, v) = (sa("[2001:db8::7]:5353"), sa("[2001:db8:1::1]:53"));
        let pkt = udp(c, v, &[1, 2, 3], 0);
        let p = parse(&pkt).unwrap();
        assert!(p.v6);
        assert_eq!((p.proto, p.src, p.dst, p.l4_offset), (PROTO_UDP, c, v, 40));
        assert_eq!((p.payload_len, p.total_len), (3, 51));
        assert_eq!(p.transport(), Some(Protocol::Udp));
    }

    #[test]
    fn udp_length_shorter_than_ip_payload_is_tolerated() {
        let mut pkt = udp(sa("10.0.0.1:1"), sa("10.0.0.2:2"), &[9; 10], 0);
        pkt[24..26].copy_from_slice(&12u16.to_be_bytes());
        assert_eq!(parse(&pkt).unwrap().payload_len, 4);
    }

    #[test]
    fn every_malformed_reason() {
        let good = tcp(
            sa("10.0.0.1:1"),
            sa("10.0.0.2:2"),
            ACK,
            0,
            0,
            b"x",
            0,
            false,
        );
        let v4 = |f: &dyn Fn(&mut Vec<u8>)| {
            let mut b = good.clone();
            f(&mut b);
            // Keep the header checksum right so the intended check is the one that fails.
            let ihl = usize::from(b[0] & 15) * 4;
            if b.len() >= ihl.max(20) {
                b[10..12].fill(0);
                let s = crate::checksum::finish(crate::checksum::add(0, &b[..ihl.max(20)]));
                b[10..12].copy_from_slice(&s.to_be_bytes());
            }
            parse(&b)
        };
        assert_eq!(parse(&[]), Err(Malformed::Truncated));
        assert_eq!(parse(&good[..19]), Err(Malformed::Truncated));
        assert_eq!(parse(&good[..good.len() - 1]), Err(Malformed::Truncated));
        assert_eq!(v4(&|b| b[0] = 0x55), Err(Malformed::BadVersion));
        assert_eq!(v4(&|b| b[0] = 0x44), Err(Malformed::BadIhl));
        assert_eq!(v4(&|b| b[0] = 0x4f), Err(Malformed::BadTotalLength));
        let long_header = v4(&|b| {
            b[0] = 0x4f;
            b[2..4].copy_from_slice(&[0, 80]);
        });
        assert_eq!(long_header, Err(Malformed::Truncated));
        assert_eq!(
            v4(&|b| b[2..4].copy_from_slice(&[0, 19])),
            Err(Malformed::BadTotalLength)
        );
        assert_eq!(v4(&|b| b[6] |= 0x20), Err(Malformed::Fragment));
        assert_eq!(v4(&|b| b[7] = 1), Err(Malformed::Fragment));
        assert_eq!(v4(&|b| b[6] = 0x40), Ok(parse(&good).unwrap())); // DF is fine
        assert_eq!(v4(&|b| b[32] = 0x40), Err(Malformed::BadTcpDataOffset));
        assert_eq!(v4(&|b| b[32] = 0x60), Err(Malformed::BadTcpDataOffset));
        let mut bad = good.clone();
        bad[10] ^= 1;
        assert_eq!(parse(&bad), Err(Malformed::BadIpv4HeaderChecksum));
        let short_tcp = v4(&|b| {
            b.truncate(39);
            b[2..4].copy_from_slice(&39u16.to_be_bytes());
        });
        assert_eq!(short_tcp, Err(Malformed::Truncated));

        let u = udp(sa("10.0.0.1:1"), sa("10.0.0.2:2"), &[0; 4], 0);
        let udp_len = |n: u16| {
            let mut b = u.clone();
            b[24..26].copy_from_slice(&n.to_be_bytes());
            parse(&b)
        };
        assert_eq!(udp_len(7), Err(Malformed::BadUdpLength));
        assert_eq!(udp_len(13), Err(Malformed::BadUdpLength));
        assert!(udp_len(12).is_ok());

        let v6 = udp(sa("[::1]:1"), sa("[::2]:2"), &[0; 4], 0);
        let next = |nh: u8| {
            let mut b = v6.clone();
            b[6] = nh;
            parse(&b)
        };
        assert_eq!(next(44), Err(Malformed::Fragment));
        for nh in [0, 43, 51, 60, 135, 139, 140, 253, 254] {
            assert_eq!(next(nh), Err(Malformed::Ipv6ExtensionHeaders), "nh {nh}");
        }
        assert_eq!(next(59).map(|p| p.kind), Ok(Kind::Other));
        assert_eq!(parse(&v6[..39]), Err(Malformed::Truncated));
        assert_eq!(parse(&v6[..v6.len() - 1]), Err(Malformed::Truncated));
    }

    #[test]
    fn malformed_display_is_distinct() {
        use Malformed::*;
        let all = [
            Truncated,
            BadVersion,
            BadIhl,
            BadTotalLength,
            BadIpv4HeaderChecksum,
            BadTcpDataOffset,
            BadUdpLength,
            Ipv6ExtensionHeaders,
            Fragment,
            BadEmbeddedPacket,
        ];
        let texts: std::collections::BTreeSet<_> =
            all.iter().map(std::string::ToString::to_string).collect();
        assert_eq!(texts.len(), all.len());
    }

    #[test]
    fn other_protocols_pass() {
        let gre = ip(ipa("10.0.0.1"), ipa("10.0.0.2"), 47, 0, &[0; 8]);
        let p = parse(&gre).unwrap();
        assert_eq!(
            (p.kind, p.proto, p.src.port(), p.payload_len),
            (Kind::Other, 47, 0, 0)
        );
        // ICMP redirect and echo reply are not errors we relate.
        let redirect = icmp(ipa("10.0.0.1"), ipa("10.0.0.2"), 5, 0, [0; 4], &[0; 28]);
        assert_eq!(parse(&redirect).unwrap().kind, Kind::Other);
        let reply = icmp(ipa("::1"), ipa("::2"), 129, 0, [0; 4], b"ping");
        assert_eq!(parse(&reply).unwrap().kind, Kind::Other);
    }

    #[test]
    fn echo_requests() {
        let e4 = icmp(ipa("10.0.0.1"), ipa("10.0.0.2"), 8, 0, [0, 1, 0, 2], b"abc");
        let p = parse(&e4).unwrap();
        assert_eq!(
            (p.kind, p.payload_len, p.proto),
            (Kind::EchoRequest, 3, PROTO_ICMP)
        );
        let e6 = icmp(ipa("::1"), ipa("::2"), 128, 0, [0, 1, 0, 2], b"");
        assert_eq!(parse(&e6).unwrap().kind, Kind::EchoRequest);
        assert_eq!(parse(&e4[..27]), Err(Malformed::Truncated));
    }

    #[test]
    fn icmpv4_error_quoting_tcp() {
        // A reply VIP:80 → client, bounced by a router with "fragmentation needed".
        let (vip, client) = (sa("198.51.100.1:80"), sa("192.0.2.7:40000"));
        let quoted = tcp(vip, client, ACK, 5, 6, &[0; 100], 1, false);
        for n in [quoted.len(), 24 + 8] {
            let pkt = icmp(
                ipa("203.0.113.9"),
                vip.ip(),
                3,
                4,
                [0, 0, 5, 0xdc],
                &quoted[..n],
            );
            let p = parse(&pkt).unwrap();
            assert_eq!((p.src.ip(), p.dst.ip()), (ipa("203.0.113.9"), vip.ip()));
            let e = icmp_kind(&p);
            assert_eq!((e.proto, e.src, e.dst), (Protocol::Tcp, vip, client));
            assert_eq!((e.ip_offset, e.l4_offset), (28, 52));
            assert_eq!((e.icmp_type, e.icmp_code), (3, 4));
        }
        // Less than 8 bytes of quoted L4 header: refused.
        let pkt = icmp(
            ipa("203.0.113.9"),
            vip.ip(),
            11,
            0,
            [0; 4],
            &quoted[..24 + 7],
        );
        assert_eq!(parse(&pkt), Err(Malformed::BadEmbeddedPacket));
        // Quoting IPv6 inside ICMPv4: refused.
        let q6 = udp(sa("[::1]:1"), sa("[::2]:2"), &[], 0);
        let pkt = icmp(ipa("203.0.113.9"), vip.ip(), 3, 3, [0; 4], &q6);
        assert_eq!(parse(&pkt), Err(Malformed::BadEmbeddedPacket));
        // Quoting a non-first fragment or ICMP: unrelated.
        let mut frag = quoted.clone();
        frag[7] = 9;
        let pkt = icmp(ipa("203.0.113.9"), vip.ip(), 3, 1, [0; 4], &frag);
        assert_eq!(parse(&pkt).unwrap().kind, Kind::Other);
        let echo = icmp(vip.ip(), client.ip(), 8, 0, [0; 4], b"");
        let pkt = icmp(ipa("203.0.113.9"), vip.ip(), 3, 1, [0; 4], &echo);
        assert_eq!(parse(&pkt).unwrap().kind, Kind::Other);
        // Source quench (4) and time exceeded (11) are related too.
        for ty in [4, 11] {
            let pkt = icmp(ipa("203.0.113.9"), vip.ip(), ty, 0, [0; 4], &quoted);
            assert!(matches!(parse(&pkt).unwrap().kind, Kind::IcmpError(_)));
        }
    }

    #[test]
    fn icmpv6_error_quoting_udp() {
        let (client, rip) = (sa("[2001:db8::7]:5353"), sa("[2001:db8:2::5]:5300"));
        let quoted = udp(client, rip, &[7; 30], 0);
        for ty in [1, 2, 3, 4, 127] {
            let pkt = icmp(rip.ip(), client.ip(), ty, 0, [0; 4], &quoted[..56]);
            let e = icmp_kind(&parse(&pkt).unwrap());
            assert_eq!((e.proto, e.src, e.dst), (Protocol::Udp, client, rip));
            assert_eq!((e.ip_offset, e.l4_offset, e.icmp_type), (48, 88, ty));
        }
        let pkt = icmp(rip.ip(), client.ip(), 1, 4, [0; 4], &quoted[..47]);
        assert_eq!(parse(&pkt), Err(Malformed::BadEmbeddedPacket));
        // Informational types (≥ 128) other than echo request are not errors.
        let pkt = icmp(rip.ip(), client.ip(), 135, 0, [0; 4], &quoted);
        assert_eq!(parse(&pkt).unwrap().kind, Kind::Other);
    }

    #[test]
    fn parsed_size() {
        let n = core::mem::size_of::<Parsed>();
        std::println!("Parsed = {n} bytes");
        assert!(n <= 152, "{n}");
    }

    proptest! {
        #[test]
        fn garbage_never_panics(mut bytes in proptest::collection::vec(any::<u8>(), 0..120),
                                first in prop_oneof![Just(0x45u8), Just(0x46), Just(0x60), any::<u8>()]) {
            if let Some(b) = bytes.first_mut() { *b = first; }
            let _ = parse(&bytes);
            let _ = parse_flow(&bytes);
        }

        /// `parse_flow` accepts exactly the TCP/UDP packets of the common shape `parse`
        /// accepts, and reads them the same; damaged and cut packets included.
        #[test]
        fn parse_flow_agrees_with_parse(
            v6 in any::<bool>(),
            udp in any::<bool>(),
            flags in any::<u8>(),
            opt_words in prop_oneof![Just(0usize), 0usize..3],
            payload in proptest::collection::vec(any::<u8>(), 0..40),
            damage in proptest::collection::vec((any::<u16>(), any::<u8>()), 0..3),
            cut in proptest::option::of(any::<u8>()),
            padding in 0usize..8,
        ) {
            use fixtures::{tcp, udp as udp_pkt};
            let (src, dst): (SocketAddr, SocketAddr) = if v6 {
                ("[2001:db8::1]:40000".parse().unwrap(), "[2001:db8::100]:80".parse().unwrap())
            } else {
                ("192.0.2.1:40000".parse().unwrap(), "10.0.0.100:80".parse().unwrap())
            };
            let opt_words = if v6 { 0 } else { opt_words };
            let mut pkt = if udp {
                udp_pkt(src, dst, &payload, opt_words)
            } else {
                tcp(src, dst, flags, 1, 2, &payload, opt_words, flags & 1 != 0)
            };
            pkt.extend(core::iter::repeat_n(0u8, padding));
            for (at, x) in damage {
                let i = usize::from(at) % pkt.len();
                pkt[i] ^= x;
            }
            if let Some(n) = cut {
                pkt.truncate(usize::from(n));
            }
            let full = parse(&pkt);
            let common = pkt.first().is_some_and(|b| *b == 0x45 || b >> 4 == 6);
            match parse_flow(&pkt) {
                Some(f) => prop_assert_eq!(Ok(f.to_parsed()), full),
                None => prop_assert!(
                    !common || !matches!(full, Ok(Parsed { kind: Kind::Transport, .. })),
                    "parse_flow refused {:02x?}, parse read {:?}", pkt, full
                ),
            }
        }
    }
}
