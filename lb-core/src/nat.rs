//! In-place NAT rewrites and the few replies lb-core generates (reference §6.1).
//!
//! **Rewrites.** After [`crate::packet::parse`] and the connection lookup, the balancer calls
//! * [`rewrite_dst`] on a client → VIP:vport packet to send it to RIP:rport (IPVS `dnat_handler`),
//! * [`rewrite_src`] on a RIP:rport → client reply to make it come from VIP:vport
//!   (`snat_handler`),
//! * [`rewrite_icmp_to_server`] / [`rewrite_icmp_to_client`] on an ICMP error about a NAT flow
//!   (`ip_vs_nat_icmp` / `_v6`).
//!
//! Each changes only the address and port bytes in place and updates every checksum covering
//! them incrementally (RFC 1624, [`crate::checksum::Delta`]): the IPv4 header checksum and the
//! TCP/UDP checksum (pseudo-header address and port), so the cost does not depend on the
//! packet's length and options are kept as they are.
//!
//! Deliberate differences from the kernel:
//! * **UDP checksum 0** ("no checksum") stays 0. The kernel computes a full checksum in that case
//!   (an O(length) pass); an IPv4 datagram without a checksum is valid as it is, and an IPv6 one
//!   is invalid whether or not we pass it. An incrementally computed 0 is sent as 0xffff, as
//!   the kernel does (RFC 768).
//! * **ICMPv6 errors**: the kernel leaves the ICMPv6 checksum to offload (CHECKSUM_PARTIAL);
//!   nothing offloads for us, so the ICMPv6 checksum is updated here, pseudo-header included.
//!
//! As in the kernel, the quoted L4 checksum inside an ICMP error is not updated (only 8 bytes of
//! the quoted L4 header are guaranteed to be there), the quoted IPv4 header checksum and the
//! ICMP checksum are.
//!
//! **Replies** are written into a caller buffer and return their length, or `None` when the
//! buffer is too small or no reply is due: [`write_tcp_rst`], [`write_icmp_port_unreachable`],
//! [`write_echo_reply`]. Their IPv4 header has no options, DF set and identification 0 (an
//! atomic datagram, RFC 6864); TTL / hop limit 64.

use core::fmt;
use core::net::{IpAddr, SocketAddr};

use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{IpProtocol, Ipv4Packet, Ipv4Repr, Ipv6Packet, Ipv6Repr};

use crate::checksum::{self, Delta};
use crate::packet::{Kind, Parsed, PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP};
use crate::tcp::flags;

/// Why a rewrite refused to touch a packet. The packet is left unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum NatError {
    /// The new address is of the other IP family than the packet.
    FamilyMismatch,
    /// The packet is not of the kind the rewrite handles (e.g. [`rewrite_dst`] on an ICMP
    /// error, or [`rewrite_icmp_to_server`] on TCP).
    WrongKind,
    /// The buffer is shorter than the `Parsed` says: not the buffer it was parsed from.
    BufferMismatch,
}

impl fmt::Display for NatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NatError::FamilyMismatch => "new address is of the other IP family",
            NatError::WrongKind => "packet is not of the kind this rewrite handles",
            NatError::BufferMismatch => "buffer does not match its parse",
        })
    }
}

const IPV4_CHECKSUM: usize = 10;
const ICMP_CHECKSUM: usize = 2;
const TTL: u8 = 64;

/// Offset of the source (or destination) address within an IP header.
#[inline]
const fn addr_offset(v6: bool, src: bool) -> usize {
    match (v6, src) {
        (false, true) => 12,
        (false, false) => 16,
        (true, true) => 8,
        (true, false) => 24,
    }
}

/// The bytes of an address: the first 4 or 16 of the array.
#[inline]
fn octets(ip: IpAddr) -> ([u8; 16], usize) {
    match ip {
        IpAddr::V4(a) => {
            let mut b = [0u8; 16];
            b[..4].copy_from_slice(&a.octets());
            (b, 4)
        }
        IpAddr::V6(a) => (a.octets(), 16),
    }
}

#[inline]
fn read16(buf: &[u8], at: usize) -> Result<u16, NatError> {
    match buf.get(at..at + 2) {
        Some(&[a, b]) => Ok(u16::from_be_bytes([a, b])),
        _ => Err(NatError::BufferMismatch),
    }
}

#[inline]
fn write16(buf: &mut [u8], at: usize, v: u16) -> Result<(), NatError> {
    let field = buf.get_mut(at..at + 2).ok_or(NatError::BufferMismatch)?;
    field.copy_from_slice(&v.to_be_bytes());
    Ok(())
}

/// Writes `new` at `at`, recording the replaced words in `d`.
#[inline]
fn put(buf: &mut [u8], at: usize, new: &[u8], d: &mut Delta) -> Result<(), NatError> {
    let field = buf
        .get_mut(at..at + new.len())
        .ok_or(NatError::BufferMismatch)?;
    d.replace(field, new);
    field.copy_from_slice(new);
    Ok(())
}

/// Applies `d` to the checksum at `at`; returns (old, new).
#[inline]
fn fix(buf: &mut [u8], at: usize, d: Delta) -> Result<(u16, u16), NatError> {
    let old = read16(buf, at)?;
    let new = d.apply(old);
    write16(buf, at, new)?;
    Ok((old, new))
}

/// Client → real server: sets the destination address and port of a TCP/UDP packet to
/// `server` (RIP:rport), updating the IPv4 header and L4 checksums. Call it on a packet of a
/// NAT connection travelling toward its real server.
#[inline]
pub fn rewrite_dst(buf: &mut [u8], p: &Parsed, server: SocketAddr) -> Result<(), NatError> {
    rewrite_transport(buf, p, server, false)
}

/// Real server → client: sets the source address and port of a TCP/UDP packet to `vip`
/// (VIP:vport), updating the IPv4 header and L4 checksums. Call it on a NAT reply.
#[inline]
pub fn rewrite_src(buf: &mut [u8], p: &Parsed, vip: SocketAddr) -> Result<(), NatError> {
    rewrite_transport(buf, p, vip, true)
}

#[inline]
fn rewrite_transport(
    buf: &mut [u8],
    p: &Parsed,
    new: SocketAddr,
    src: bool,
) -> Result<(), NatError> {
    if p.kind != Kind::Transport {
        return Err(NatError::WrongKind);
    }
    if new.is_ipv6() != p.v6 {
        return Err(NatError::FamilyMismatch);
    }
    let l4 = usize::from(p.l4_offset);
    let (csum_at, udp) = match p.proto {
        PROTO_TCP => (l4 + 16, false),
        PROTO_UDP => (l4 + 6, true),
        _ => return Err(NatError::WrongKind),
    };
    // Check every offset before the first write, so an error leaves the packet untouched.
    let ip_header = if p.v6 { 40 } else { 20 };
    if l4 < ip_header || buf.len() < csum_at + 2 {
        return Err(NatError::BufferMismatch);
    }
    let (addr, n) = octets(new.ip());
    let mut d = Delta::ZERO;
    put(buf, addr_offset(p.v6, src), &addr[..n], &mut d)?;
    if !p.v6 {
        fix(buf, IPV4_CHECKSUM, d)?;
    }
    let port_at = if src { l4 } else { l4 + 2 };
    put(buf, port_at, &new.port().to_be_bytes(), &mut d)?;
    let old = read16(buf, csum_at)?;
    if udp && old == 0 {
        return Ok(());
    }
    let mut sum = d.apply(old);
    if udp && sum == 0 {
        sum = 0xffff;
    }
    write16(buf, csum_at, sum)
}

/// An ICMP error from the client side about a reply we sent (VIP:vport → client), on its way
/// to the real server: sets the outer destination address to `server`'s address and the quoted
/// packet's source address and port to `server` (RIP:rport). Updates the outer IPv4 header
/// checksum, the quoted IPv4 header checksum and the ICMP/ICMPv6 checksum.
#[inline]
pub fn rewrite_icmp_to_server(
    buf: &mut [u8],
    p: &Parsed,
    server: SocketAddr,
) -> Result<(), NatError> {
    rewrite_icmp(buf, p, server, true)
}

/// An ICMP error from the real server side about a packet we forwarded (client → RIP:rport), on
/// its way to the client: sets the outer source address to `vip`'s address and the quoted
/// packet's destination address and port to `vip` (VIP:vport). The outer source becomes the VIP
/// even when a router, not the real server, sent the error, as in the kernel. Updates the outer
/// IPv4 header checksum, the quoted IPv4 header checksum and the ICMP/ICMPv6 checksum.
#[inline]
pub fn rewrite_icmp_to_client(buf: &mut [u8], p: &Parsed, vip: SocketAddr) -> Result<(), NatError> {
    rewrite_icmp(buf, p, vip, false)
}

fn rewrite_icmp(
    buf: &mut [u8],
    p: &Parsed,
    new: SocketAddr,
    to_server: bool,
) -> Result<(), NatError> {
    let Kind::IcmpError(e) = p.kind else {
        return Err(NatError::WrongKind);
    };
    if new.is_ipv6() != p.v6 {
        return Err(NatError::FamilyMismatch);
    }
    let v6 = p.v6;
    let icmp = usize::from(p.l4_offset);
    let (ip, l4) = (usize::from(e.ip_offset), usize::from(e.l4_offset));
    let ip_header = if v6 { 40 } else { 20 };
    if icmp < ip_header || ip < icmp + 8 || l4 < ip + ip_header || buf.len() < l4 + 4 {
        return Err(NatError::BufferMismatch);
    }
    let (addr, n) = octets(new.ip());
    let addr = &addr[..n];

    // Outer header: the destination toward the server, the source toward the client.
    let mut outer = Delta::ZERO;
    put(buf, addr_offset(v6, !to_server), addr, &mut outer)?;
    let mut icmp_delta = Delta::ZERO;
    if v6 {
        // The ICMPv6 checksum covers the outer addresses through its pseudo-header.
        icmp_delta.merge(outer);
    } else {
        fix(buf, IPV4_CHECKSUM, outer)?;
    }

    // Quoted packet: its source was us (VIP) toward the server, its destination was the real
    // server toward the client.
    let mut quoted = Delta::ZERO;
    put(buf, ip + addr_offset(v6, to_server), addr, &mut quoted)?;
    if !v6 {
        let (old, new) = fix(buf, ip + IPV4_CHECKSUM, quoted)?;
        icmp_delta.replace16(old, new);
    }
    icmp_delta.merge(quoted);
    let port_at = if to_server { l4 } else { l4 + 2 };
    put(buf, port_at, &new.port().to_be_bytes(), &mut icmp_delta)?;
    fix(buf, icmp + ICMP_CHECKSUM, icmp_delta)?;
    Ok(())
}

/// Whether a reply to this packet is allowed: never to an unspecified, multicast or broadcast
/// source, nor about a packet sent to a multicast or broadcast address (RFC 1122 §3.2.2,
/// RFC 4443 §2.4).
fn may_answer(p: &Parsed) -> bool {
    let bad = |ip: IpAddr| match ip {
        IpAddr::V4(a) => a.is_unspecified() || a.is_multicast() || a.is_broadcast(),
        IpAddr::V6(a) => a.is_unspecified() || a.is_multicast(),
    };
    !bad(p.src.ip()) && !bad(p.dst.ip())
}

/// Writes an IP header without options for `payload_len` bytes of `proto` into `out`; returns
/// the header length.
fn write_ip_header(
    out: &mut [u8],
    src: IpAddr,
    dst: IpAddr,
    proto: u8,
    payload_len: usize,
) -> Option<usize> {
    match (src, dst) {
        (IpAddr::V4(src_addr), IpAddr::V4(dst_addr)) => {
            if payload_len > usize::from(u16::MAX) - 20 {
                return None;
            }
            let mut ip = Ipv4Packet::new_unchecked(out.get_mut(..20)?);
            let repr = Ipv4Repr {
                src_addr,
                dst_addr,
                next_header: IpProtocol::from(proto),
                payload_len,
                hop_limit: TTL,
            };
            repr.emit(&mut ip, &ChecksumCapabilities::default());
            Some(20)
        }
        (IpAddr::V6(src_addr), IpAddr::V6(dst_addr)) => {
            if payload_len > usize::from(u16::MAX) {
                return None;
            }
            let mut ip = Ipv6Packet::new_unchecked(out.get_mut(..40)?);
            let repr = Ipv6Repr {
                src_addr,
                dst_addr,
                next_header: IpProtocol::from(proto),
                payload_len,
                hop_limit: TTL,
            };
            repr.emit(&mut ip);
            Some(40)
        }
        _ => None,
    }
}

/// The pseudo-header sum for a reply from `src` to `dst`.
fn pseudo(src: IpAddr, dst: IpAddr, proto: u8, len: usize) -> u64 {
    let (s, sn) = octets(src);
    let (d, dn) = octets(dst);
    checksum::pseudo_header(&s[..sn], &d[..dn], proto, len as u32)
}

/// Writes into `out` a TCP RST answering the TCP segment `p` (parsed from `buf`), from its
/// destination to its source, as RFC 793 resets a connection that does not exist: if the
/// segment has ACK, the RST carries seq = its ack; otherwise seq 0, ACK set and
/// ack = its seq + its length (+1 for SYN, +1 for FIN). Returns the reply's length (40 or 60),
/// or `None` if `p` is not TCP, is itself a RST, comes from or goes to a non-unicast address,
/// or `out` is too small. Call it to refuse a connection, e.g. to a flow whose real server is
/// gone.
pub fn write_tcp_rst(out: &mut [u8], p: &Parsed, buf: &[u8]) -> Option<usize> {
    if p.transport() != Some(crate::Protocol::Tcp) || p.tcp_flags & flags::RST != 0 {
        return None;
    }
    if !may_answer(p) {
        return None;
    }
    let l4 = usize::from(p.l4_offset);
    let seg = buf.get(l4..l4 + 20)?;
    let seq = u32::from_be_bytes([seg[4], seg[5], seg[6], seg[7]]);
    let ack = u32::from_be_bytes([seg[8], seg[9], seg[10], seg[11]]);
    let (rst_seq, rst_ack, rst_flags) = if p.tcp_flags & flags::ACK != 0 {
        (ack, 0, flags::RST)
    } else {
        let syn = u32::from(p.tcp_flags & flags::SYN != 0);
        let fin = u32::from(p.tcp_flags & flags::FIN != 0);
        let len = u32::from(p.payload_len) + syn + fin;
        (0, seq.wrapping_add(len), flags::RST | flags::ACK)
    };
    let (src, dst) = (p.dst.ip(), p.src.ip());
    let hdr = write_ip_header(out, src, dst, PROTO_TCP, 20)?;
    let tcp = out.get_mut(hdr..hdr + 20)?;
    tcp[0..2].copy_from_slice(&p.dst.port().to_be_bytes());
    tcp[2..4].copy_from_slice(&p.src.port().to_be_bytes());
    tcp[4..8].copy_from_slice(&rst_seq.to_be_bytes());
    tcp[8..12].copy_from_slice(&rst_ack.to_be_bytes());
    tcp[12] = 5 << 4;
    tcp[13] = rst_flags;
    tcp[14..20].fill(0); // window, checksum, urgent pointer
    let sum = checksum::finish(checksum::add(pseudo(src, dst, PROTO_TCP, 20), tcp));
    tcp[16..18].copy_from_slice(&sum.to_be_bytes());
    Some(hdr + 20)
}

/// Largest ICMPv4 error datagram: RFC 1812 §4.3.2.3 quotes as much as fits in 576 bytes.
pub const ICMPV4_ERROR_MAX: usize = 576;
/// Largest ICMPv6 error packet: RFC 4443 §2.4 (c), the IPv6 minimum MTU.
pub const ICMPV6_ERROR_MAX: usize = 1280;

/// Writes into `out` an ICMP "port unreachable" (ICMPv4 type 3 code 3, ICMPv6 type 1 code 4)
/// from `src` (the VIP) to the sender of the TCP/UDP packet `p` (parsed from `buf`), quoting as
/// much of the packet as fits in 576 (IPv4) or 1280 (IPv6) bytes and in `out`. Returns the
/// reply's length, or `None` if `p` is not TCP/UDP (never an error about an error), `src` is of
/// the other family, either address of `p` is not unicast, or `out` cannot hold the IP header
/// and 8 bytes of L4 header. Call it for UDP to a VIP:port with no service or no server.
pub fn write_icmp_port_unreachable(
    out: &mut [u8],
    buf: &[u8],
    p: &Parsed,
    src: IpAddr,
) -> Option<usize> {
    if p.kind != Kind::Transport || src.is_ipv6() != p.v6 || !may_answer(p) {
        return None;
    }
    let original = buf.get(..usize::try_from(p.total_len).ok()?)?;
    let (hdr_len, max, proto, ty, code) = if p.v6 {
        (40, ICMPV6_ERROR_MAX, PROTO_ICMPV6, 1, 4)
    } else {
        (20, ICMPV4_ERROR_MAX, PROTO_ICMP, 3, 3)
    };
    let room = max.min(out.len()).checked_sub(hdr_len + 8)?;
    let quote = original.len().min(room);
    let must_quote = original.len().min(usize::from(p.l4_offset) + 8);
    if quote < must_quote {
        return None;
    }
    let dst = p.src.ip();
    let icmp_len = 8 + quote;
    let hdr = write_ip_header(out, src, dst, proto, icmp_len)?;
    let icmp = out.get_mut(hdr..hdr + icmp_len)?;
    icmp[..8].copy_from_slice(&[ty, code, 0, 0, 0, 0, 0, 0]);
    icmp[8..].copy_from_slice(&original[..quote]);
    let start = if p.v6 {
        pseudo(src, dst, proto, icmp_len)
    } else {
        0
    };
    let sum = checksum::finish(checksum::add(start, icmp));
    icmp[2..4].copy_from_slice(&sum.to_be_bytes());
    Some(hdr + icmp_len)
}

/// Writes into `out` the echo reply (ICMPv4 type 0, ICMPv6 type 129) to the echo request `p`
/// (parsed from `buf`), from the address it was sent to, echoing its identifier, sequence number
/// and data. Returns the reply's length, or `None` if `p` is not an echo request, its ICMP
/// checksum is bad, either address is not unicast, or `out` is too small. IPv4 options of the
/// request are not echoed. Call it for a ping to a VIP.
pub fn write_echo_reply(out: &mut [u8], buf: &[u8], p: &Parsed) -> Option<usize> {
    if p.kind != Kind::EchoRequest || !may_answer(p) {
        return None;
    }
    let request = buf.get(usize::from(p.l4_offset)..usize::try_from(p.total_len).ok()?)?;
    let (src, dst) = (p.dst.ip(), p.src.ip());
    let (proto, reply_type) = if p.v6 {
        (PROTO_ICMPV6, 129)
    } else {
        (PROTO_ICMP, 0)
    };
    let pseudo_sum = |a, b| {
        if p.v6 {
            pseudo(a, b, proto, request.len())
        } else {
            0
        }
    };
    if checksum::fold(checksum::add(pseudo_sum(dst, src), request)) != 0xffff {
        return None;
    }
    let hdr = write_ip_header(out, src, dst, proto, request.len())?;
    let icmp = out.get_mut(hdr..hdr + request.len())?;
    icmp.copy_from_slice(request);
    icmp[0] = reply_type;
    icmp[1] = 0;
    icmp[2..4].fill(0);
    let sum = checksum::finish(checksum::add(pseudo_sum(src, dst), icmp));
    icmp[2..4].copy_from_slice(&sum.to_be_bytes());
    Some(hdr + request.len())
}
