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

#![warn(missing_docs)]

use core::fmt;
use core::net::{IpAddr, SocketAddr};

use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{IpProtocol, Ipv4Packet, Ipv4Repr, Ipv6Packet, Ipv6Repr};

use crate::addr::Protocol;
use crate::checksum::{self, Delta};
use crate::packet::{Flow, Kind, Parsed, PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP};
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
    (
        crate::addr::addr_bytes(ip),
        if ip.is_ipv6() { 16 } else { 4 },
    )
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
    let proto = match p.proto {
        PROTO_TCP => Protocol::Tcp,
        PROTO_UDP => Protocol::Udp,
        _ => return Err(NatError::WrongKind),
    };
    // The addresses sit at fixed offsets whatever the IPv4 options: the rewrite needs only
    // the family, the protocol and where the L4 header starts.
    let (addr, _) = octets(new.ip());
    rewrite_l4(
        buf,
        p.v6,
        proto == Protocol::Udp,
        usize::from(p.l4_offset),
        &addr,
        new.port(),
        src,
    )
}

/// [`rewrite_dst`] (`src` false) or [`rewrite_src`] (`src` true) for a packet read by
/// [`packet::parse_flow`](crate::packet::parse_flow): sets the destination (source) address to
/// `addr` (stored as in a [`Flow`]: IPv4 in the first four bytes) and the port to `port`,
/// updating the IPv4 header and L4 checksums word by word (RFC 1624); [`rewrite_dst`] and
/// [`rewrite_src`] are built on it. An error leaves the packet untouched.
#[inline(always)]
pub fn rewrite_flow(
    buf: &mut [u8],
    f: &Flow,
    addr: &[u8; 16],
    port: u16,
    src: bool,
) -> Result<(), NatError> {
    rewrite_l4(
        buf,
        f.v6,
        f.proto == Protocol::Udp,
        usize::from(f.l4_offset),
        addr,
        port,
        src,
    )
}

/// The rewrite of [`rewrite_flow`] and [`rewrite_dst`]/[`rewrite_src`]: the TCP (or, with
/// `udp`, UDP) header at `l4` of an IPv6 (`v6`) or IPv4 packet.
#[inline(always)]
fn rewrite_l4(
    buf: &mut [u8],
    v6: bool,
    udp: bool,
    l4: usize,
    addr: &[u8; 16],
    port: u16,
    src: bool,
) -> Result<(), NatError> {
    let csum_at = l4 + if udp { 6 } else { 16 };
    let ip_header = if v6 { 40 } else { 20 };
    if l4 < ip_header {
        return Err(NatError::BufferMismatch);
    }
    let pkt = buf.get_mut(..csum_at + 2).ok_or(NatError::BufferMismatch)?;
    let mut d = Delta::ZERO;
    if v6 {
        let at = addr_offset(true, src);
        let field: &mut [u8; 16] = (&mut pkt[at..at + 16])
            .try_into()
            .map_err(|_| NatError::BufferMismatch)?;
        for k in 0..4 {
            let w = |b: &[u8; 16]| {
                u32::from_be_bytes([b[4 * k], b[4 * k + 1], b[4 * k + 2], b[4 * k + 3]])
            };
            d.replace32(w(field), w(addr));
        }
        *field = *addr;
    } else {
        let at = addr_offset(false, src);
        let field: &mut [u8; 4] = (&mut pkt[at..at + 4])
            .try_into()
            .map_err(|_| NatError::BufferMismatch)?;
        let new = [addr[0], addr[1], addr[2], addr[3]];
        d.replace32(u32::from_be_bytes(*field), u32::from_be_bytes(new));
        *field = new;
        let old = u16::from_be_bytes([pkt[IPV4_CHECKSUM], pkt[IPV4_CHECKSUM + 1]]);
        pkt[IPV4_CHECKSUM..IPV4_CHECKSUM + 2].copy_from_slice(&d.apply(old).to_be_bytes());
    }
    let port_at = if src { l4 } else { l4 + 2 };
    let old_port = u16::from_be_bytes([pkt[port_at], pkt[port_at + 1]]);
    d.replace16(old_port, port);
    pkt[port_at..port_at + 2].copy_from_slice(&port.to_be_bytes());
    let old = u16::from_be_bytes([pkt[csum_at], pkt[csum_at + 1]]);
    if udp && old == 0 {
        return Ok(());
    }
    let mut sum = d.apply(old);
    if udp && sum == 0 {
        sum = 0xffff;
    }
    pkt[csum_at..csum_at + 2].copy_from_slice(&sum.to_be_bytes());
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checksum::verify_checksums;
    use crate::packet::fixtures::*;
    use crate::packet::{parse, IcmpError};
    use crate::tcp::flags::*;
    use proptest::prelude::*;
    use std::vec;
    use std::vec::Vec;

    fn l4_checksum(pkt: &[u8]) -> u16 {
        let p = parse(pkt).unwrap();
        let at = usize::from(p.l4_offset) + if p.proto == PROTO_UDP { 6 } else { 16 };
        u16::from_be_bytes([pkt[at], pkt[at + 1]])
    }

    fn icmp_error(p: &Parsed) -> IcmpError {
        match p.kind {
            Kind::IcmpError(e) => e,
            k => panic!("not an ICMP error: {k:?}"),
        }
    }

    #[test]
    fn dnat_then_snat_v4_tcp() {
        let (c, vip, rip) = (
            sa("192.0.2.7:40000"),
            sa("198.51.100.1:80"),
            sa("10.1.0.5:8080"),
        );
        let orig = tcp(c, vip, SYN, 1000, 0, b"", 1, true);
        let mut pkt = orig.clone();
        let p = parse(&pkt).unwrap();
        rewrite_dst(&mut pkt, &p, rip).unwrap();
        assert!(verify_checksums(&pkt));
        let q = parse(&pkt).unwrap();
        assert_eq!((q.src, q.dst, q.tcp_flags), (c, rip, SYN));
        // Only the address, port and checksum bytes changed.
        let changed: Vec<_> = (0..pkt.len()).filter(|&i| pkt[i] != orig[i]).collect();
        assert!(changed
            .iter()
            .all(|i| matches!(i, 10 | 11 | 16..=19 | 26 | 27 | 40 | 41)));
        // The reply, rewritten back to the VIP.
        let mut reply = tcp(rip, c, SYN | ACK, 7, 1001, b"", 0, true);
        let p = parse(&reply).unwrap();
        rewrite_src(&mut reply, &p, vip).unwrap();
        assert!(verify_checksums(&reply));
        let q = parse(&reply).unwrap();
        assert_eq!((q.src, q.dst), (vip, c));
    }

    #[test]
    fn dnat_v6_udp() {
        let (c, vip, rip) = (
            sa("[2001:db8::7]:5353"),
            sa("[2001:db8:1::1]:53"),
            sa("[fd00::5]:5300"),
        );
        let mut pkt = udp(c, vip, b"query", 0);
        let p = parse(&pkt).unwrap();
        rewrite_dst(&mut pkt, &p, rip).unwrap();
        assert!(verify_checksums(&pkt));
        assert_eq!(parse(&pkt).unwrap().dst, rip);
    }

    #[test]
    fn udp_checksum_zero_stays_zero() {
        let mut pkt = udp(sa("192.0.2.7:1000"), sa("198.51.100.1:53"), b"abc", 0);
        pkt[26..28].fill(0);
        let p = parse(&pkt).unwrap();
        rewrite_dst(&mut pkt, &p, sa("10.0.0.9:5353")).unwrap();
        assert_eq!(l4_checksum(&pkt), 0);
        assert!(verify_checksums(&pkt));
        let p = parse(&pkt).unwrap();
        rewrite_src(&mut pkt, &p, sa("10.9.9.9:1")).unwrap();
        assert_eq!(l4_checksum(&pkt), 0);
    }

    #[test]
    fn udp_computed_zero_is_sent_as_ffff() {
        let orig = udp(sa("192.0.2.7:1000"), sa("198.51.100.1:53"), b"abcd", 0);
        let p = parse(&orig).unwrap();
        let mut hits = 0;
        for port in 0..=u16::MAX {
            let mut pkt = orig.clone();
            rewrite_dst(&mut pkt, &p, SocketAddr::new(ipa("10.0.0.9"), port)).unwrap();
            // The full recompute, with the checksum field zeroed.
            let mut z = pkt.clone();
            z[26..28].fill(0);
            let sum = checksum::add(
                checksum::pseudo_header(&z[12..16], &z[16..20], 17, 12),
                &z[20..32],
            );
            if checksum::finish(sum) == 0 {
                hits += 1;
                assert_eq!(l4_checksum(&pkt), 0xffff, "port {port}");
            } else {
                assert_ne!(l4_checksum(&pkt), 0, "port {port}");
            }
            assert!(verify_checksums(&pkt));
        }
        assert_eq!(hits, 1);
    }

    #[test]
    fn refused_rewrites_leave_the_packet_alone() {
        let orig = tcp(sa("10.0.0.1:1"), sa("10.0.0.2:2"), ACK, 0, 0, b"", 0, false);
        let p = parse(&orig).unwrap();
        let mut pkt = orig.clone();
        assert_eq!(
            rewrite_dst(&mut pkt, &p, sa("[::1]:5")),
            Err(NatError::FamilyMismatch)
        );
        assert_eq!(
            rewrite_icmp_to_server(&mut pkt, &p, sa("10.0.0.3:5")),
            Err(NatError::WrongKind)
        );
        assert_eq!(
            rewrite_src(&mut pkt[..30], &p, sa("10.0.0.3:5")),
            Err(NatError::BufferMismatch)
        );
        assert_eq!(pkt, orig);
        let echo = icmp(ipa("10.0.0.1"), ipa("10.0.0.2"), 8, 0, [0; 4], b"");
        let mut e = echo.clone();
        let p = parse(&echo).unwrap();
        assert_eq!(
            rewrite_dst(&mut e, &p, sa("10.0.0.3:5")),
            Err(NatError::WrongKind)
        );
        assert_eq!(e, echo);
    }

    /// An ICMP error from `from` to `to` quoting `quoted`.
    fn bounce(from: IpAddr, to: IpAddr, quoted: &[u8]) -> Vec<u8> {
        let (ty, code) = if from.is_ipv6() { (2, 0) } else { (3, 4) };
        icmp(from, to, ty, code, [0, 0, 5, 0x78], quoted)
    }

    #[test]
    fn icmp_v4_toward_server_and_client() {
        let (c, vip, rip) = (
            sa("192.0.2.7:40000"),
            sa("198.51.100.1:80"),
            sa("10.1.0.5:8080"),
        );
        let router = ipa("203.0.113.9");
        // A reply we sent (VIP → client) bounced back to the VIP.
        let quoted = tcp(vip, c, ACK, 1, 2, &[0; 600], 0, false);
        let mut pkt = bounce(router, vip.ip(), &quoted[..28 + 64]);
        let p = parse(&pkt).unwrap();
        rewrite_icmp_to_server(&mut pkt, &p, rip).unwrap();
        assert!(verify_checksums(&pkt));
        let q = parse(&pkt).unwrap();
        assert_eq!((q.src.ip(), q.dst.ip()), (router, rip.ip()));
        let e = icmp_error(&q);
        assert_eq!((e.src, e.dst), (rip, c));
        // A packet we forwarded (client → RIP) bounced back by the real server's side.
        let quoted = udp(c, rip, &[1; 40], 0);
        let mut pkt = bounce(router, c.ip(), &quoted);
        let p = parse(&pkt).unwrap();
        rewrite_icmp_to_client(&mut pkt, &p, vip).unwrap();
        assert!(verify_checksums(&pkt));
        let q = parse(&pkt).unwrap();
        assert_eq!((q.src.ip(), q.dst.ip()), (vip.ip(), c.ip()));
        let e = icmp_error(&q);
        assert_eq!((e.src, e.dst), (c, vip));
        // The quoted UDP checksum is not touched (as in the kernel).
        assert_eq!(&pkt[28 + 26..28 + 28], &quoted[26..28]);
    }

    #[test]
    fn icmp_v6_toward_server_and_client() {
        let (c, vip, rip) = (
            sa("[2001:db8::7]:40000"),
            sa("[2001:db8:1::1]:443"),
            sa("[fd00::5]:8443"),
        );
        let quoted = tcp(vip, c, ACK, 1, 2, &[0; 1400], 0, false);
        let mut pkt = bounce(ipa("2001:db8:ff::1"), vip.ip(), &quoted[..1232]);
        let p = parse(&pkt).unwrap();
        rewrite_icmp_to_server(&mut pkt, &p, rip).unwrap();
        assert!(verify_checksums(&pkt), "ICMPv6 checksum must be computed");
        let q = parse(&pkt).unwrap();
        assert_eq!(q.dst.ip(), rip.ip());
        assert_eq!(icmp_error(&q).src, rip);

        let quoted = udp(c, rip, &[1; 40], 0);
        let mut pkt = bounce(rip.ip(), c.ip(), &quoted);
        let p = parse(&pkt).unwrap();
        rewrite_icmp_to_client(&mut pkt, &p, vip).unwrap();
        assert!(verify_checksums(&pkt));
        let q = parse(&pkt).unwrap();
        assert_eq!(q.src.ip(), vip.ip());
        assert_eq!(icmp_error(&q).dst, vip);
    }

    #[test]
    fn rst_sequence_numbers() {
        let (c, vip) = (sa("192.0.2.7:40000"), sa("198.51.100.1:80"));
        let mut out = [0u8; 128];
        // A SYN (no ACK): seq 0, ACK set, ack = seq + 1.
        let syn = tcp(c, vip, SYN, 0xffff_ffff, 0, b"", 0, true);
        let n = write_tcp_rst(&mut out, &parse(&syn).unwrap(), &syn).unwrap();
        assert_eq!(n, 40);
        let r = parse(&out[..n]).unwrap();
        assert!(verify_checksums(&out[..n]));
        assert_eq!((r.src, r.dst, r.tcp_flags), (vip, c, RST | ACK));
        assert_eq!(&out[24..28], &0u32.to_be_bytes());
        assert_eq!(&out[28..32], &0u32.to_be_bytes()); // 0xffffffff + 1 wraps
                                                       // FIN without ACK carrying 10 bytes: ack = seq + 10 + 1.
        let fin = tcp(c, vip, FIN, 500, 0, &[0; 10], 0, false);
        let n = write_tcp_rst(&mut out, &parse(&fin).unwrap(), &fin).unwrap();
        assert_eq!(&out[28..32], &511u32.to_be_bytes());
        assert_eq!(out[33], RST | ACK);
        assert_eq!(n, 40);
        // With ACK: seq = its ack, RST alone.
        let data = tcp(c, vip, ACK | PSH, 500, 777, &[0; 10], 0, false);
        let n = write_tcp_rst(&mut out, &parse(&data).unwrap(), &data).unwrap();
        assert_eq!(&out[24..28], &777u32.to_be_bytes());
        assert_eq!((out[33], n), (RST, 40));
        // IPv6.
        let syn6 = tcp(
            sa("[2001:db8::7]:1"),
            sa("[2001:db8::1]:80"),
            SYN,
            9,
            0,
            b"",
            0,
            false,
        );
        let n = write_tcp_rst(&mut out, &parse(&syn6).unwrap(), &syn6).unwrap();
        assert_eq!(n, 60);
        assert!(verify_checksums(&out[..n]));
        assert_eq!(parse(&out[..n]).unwrap().dst, sa("[2001:db8::7]:1"));
        // No RST for a RST, for UDP, or into a small buffer.
        let rst = tcp(c, vip, RST, 1, 0, b"", 0, false);
        assert_eq!(write_tcp_rst(&mut out, &parse(&rst).unwrap(), &rst), None);
        let u = udp(c, vip, b"", 0);
        assert_eq!(write_tcp_rst(&mut out, &parse(&u).unwrap(), &u), None);
        assert_eq!(
            write_tcp_rst(&mut out[..39], &parse(&syn).unwrap(), &syn),
            None
        );
    }

    #[test]
    fn port_unreachable_quotes_up_to_the_limit() {
        let (c, vip) = (sa("192.0.2.7:40000"), sa("198.51.100.1:53"));
        let mut out = vec![0u8; 2000];
        for (len, want) in [(4, 20 + 8 + 32), (1000, 576)] {
            let mut pkt = udp(c, vip, &vec![3; len], 0);
            let real = pkt.len();
            pkt.extend_from_slice(&[0xee; 4]); // padding is not quoted
            let p = parse(&pkt).unwrap();
            let n = write_icmp_port_unreachable(&mut out, &pkt, &p, vip.ip()).unwrap();
            assert_eq!(n, want);
            assert!(verify_checksums(&out[..n]));
            assert_eq!(&out[..2], &[0x45, 0]);
            assert_eq!((out[20], out[21]), (3, 3));
            assert_eq!(&out[28..n], &pkt[..(n - 28).min(real)]);
            let r = parse(&out[..n]).unwrap();
            assert_eq!((r.src.ip(), r.dst.ip()), (vip.ip(), c.ip()));
            let e = icmp_error(&r);
            assert_eq!((e.src, e.dst), (c, vip));
        }
        // IPv6: type 1 code 4, up to 1280.
        let (c6, v6) = (sa("[2001:db8::7]:4000"), sa("[2001:db8::1]:53"));
        let pkt = udp(c6, v6, &[3; 1400], 0);
        let p = parse(&pkt).unwrap();
        let n = write_icmp_port_unreachable(&mut out, &pkt, &p, v6.ip()).unwrap();
        assert_eq!(n, 1280);
        assert!(verify_checksums(&out[..n]));
        assert_eq!((out[40], out[41]), (1, 4));
        assert_eq!(icmp_error(&parse(&out[..n]).unwrap()).dst, v6);
        // A small buffer quotes less, but never less than the headers.
        let n = write_icmp_port_unreachable(&mut out[..100], &pkt, &p, v6.ip()).unwrap();
        assert_eq!(n, 100);
        assert!(verify_checksums(&out[..n]));
        assert_eq!(
            write_icmp_port_unreachable(&mut out[..95], &pkt, &p, v6.ip()),
            None
        );
        // Never about an ICMP message, from a multicast source, or across families.
        let echo = icmp(c.ip(), vip.ip(), 8, 0, [0; 4], b"");
        let pe = parse(&echo).unwrap();
        assert_eq!(
            write_icmp_port_unreachable(&mut out, &echo, &pe, vip.ip()),
            None
        );
        let mc = udp(sa("224.0.0.1:5"), vip, b"", 0);
        let pm = parse(&mc).unwrap();
        assert_eq!(
            write_icmp_port_unreachable(&mut out, &mc, &pm, vip.ip()),
            None
        );
        let bc = udp(c, sa("255.255.255.255:5"), b"", 0);
        let pb = parse(&bc).unwrap();
        assert_eq!(
            write_icmp_port_unreachable(&mut out, &bc, &pb, vip.ip()),
            None
        );
        assert_eq!(
            write_icmp_port_unreachable(&mut out, &pkt, &p, vip.ip()),
            None
        );
    }

    #[test]
    fn echo_replies() {
        let mut out = [0u8; 200];
        for (c, vip, reply_type, hdr) in [
            (ipa("192.0.2.7"), ipa("198.51.100.1"), 0, 20),
            (ipa("2001:db8::7"), ipa("2001:db8::1"), 129, 40),
        ] {
            let req_type = if c.is_ipv6() { 128 } else { 8 };
            let req = icmp(c, vip, req_type, 0, [0x12, 0x34, 0, 9], b"payload!");
            let p = parse(&req).unwrap();
            let n = write_echo_reply(&mut out, &req, &p).unwrap();
            assert_eq!(n, hdr + 16);
            assert!(verify_checksums(&out[..n]));
            let r = parse(&out[..n]).unwrap();
            assert_eq!((r.src.ip(), r.dst.ip(), r.kind), (vip, c, Kind::Other));
            assert_eq!(out[hdr], reply_type);
            assert_eq!(&out[hdr + 4..n], &req[hdr + 4..]);
            // A corrupt request gets no answer; neither does a too-small buffer.
            let mut bad = req.clone();
            let last = bad.len() - 1;
            bad[last] ^= 0x40;
            assert_eq!(write_echo_reply(&mut out, &bad, &p), None);
            assert_eq!(write_echo_reply(&mut out[..n - 1], &req, &p), None);
        }
    }

    fn addr_v4() -> impl Strategy<Value = IpAddr> {
        any::<[u8; 4]>().prop_map(IpAddr::from)
    }

    fn addr_v6() -> impl Strategy<Value = IpAddr> {
        any::<[u8; 16]>().prop_map(IpAddr::from)
    }

    /// Random (v6, client, vip, server) of one family.
    fn endpoints() -> impl Strategy<Value = (SocketAddr, SocketAddr, SocketAddr)> {
        let v4 = (addr_v4(), addr_v4(), addr_v4());
        let v6 = (addr_v6(), addr_v6(), addr_v6());
        (prop_oneof![v4, v6], any::<[u16; 3]>()).prop_map(|((a, b, c), [p, q, r])| {
            (
                SocketAddr::new(a, p),
                SocketAddr::new(b, q),
                SocketAddr::new(c, r),
            )
        })
    }

    /// A random TCP or UDP packet from `src` to `dst`.
    fn packet(
        src: SocketAddr,
        dst: SocketAddr,
        is_tcp: bool,
        flags: u8,
        payload: &[u8],
        opts: usize,
    ) -> Vec<u8> {
        let opts = if src.is_ipv6() { 0 } else { opts };
        if is_tcp {
            tcp(src, dst, flags, 7, 9, payload, opts, flags & 1 == 0)
        } else {
            udp(src, dst, payload, opts)
        }
    }

    /// Every rewrite and writer on a copy of `buf`; must not panic.
    fn exercise(buf: &[u8], p: &Parsed, a: SocketAddr) {
        let mut b = buf.to_vec();
        let _ = rewrite_dst(&mut b, p, a);
        let _ = rewrite_src(&mut b, p, a);
        let _ = rewrite_icmp_to_server(&mut b, p, a);
        let _ = rewrite_icmp_to_client(&mut b, p, a);
        let mut out = [0u8; 1400];
        let _ = write_tcp_rst(&mut out, p, buf);
        let _ = write_icmp_port_unreachable(&mut out, buf, p, a.ip());
        let _ = write_echo_reply(&mut out, buf, p);
        let _ = write_tcp_rst(&mut out[..30], p, buf);
        let _ = write_icmp_port_unreachable(&mut out[..50], buf, p, a.ip());
        let _ = write_echo_reply(&mut out[..30], buf, p);
    }

    proptest! {
        #[test]
        fn transport_rewrites_match_recompute(
            (client, vip, server) in endpoints(),
            is_tcp in any::<bool>(),
            flags in any::<u8>(),
            payload in proptest::collection::vec(any::<u8>(), 0..64),
            opts in 0usize..4,
            zero_udp in any::<bool>(),
        ) {
            let mut pkt = packet(client, vip, is_tcp, flags, &payload, opts);
            let no_udp_sum = !is_tcp && zero_udp && !client.is_ipv6();
            if no_udp_sum {
                let at = pkt.len() - payload.len() - 2;
                pkt[at..at + 2].fill(0);
            }
            prop_assert!(verify_checksums(&pkt));
            let p = parse(&pkt).unwrap();
            rewrite_dst(&mut pkt, &p, server).unwrap();
            prop_assert!(verify_checksums(&pkt));
            let q = parse(&pkt).unwrap();
            prop_assert_eq!((q.src, q.dst, q.tcp_flags), (client, server, p.tcp_flags));
            if !is_tcp {
                prop_assert_eq!(l4_checksum(&pkt) == 0, no_udp_sum);
            }

            // The reply direction.
            let mut reply = packet(server, client, is_tcp, flags, &payload, opts);
            let p = parse(&reply).unwrap();
            rewrite_src(&mut reply, &p, vip).unwrap();
            prop_assert!(verify_checksums(&reply));
            let q = parse(&reply).unwrap();
            prop_assert_eq!((q.src, q.dst), (vip, client));
        }

        /// The datapath's rewrite from a `Flow` writes exactly the bytes the `Parsed` one
        /// writes, both directions, with and without an IPv4 UDP checksum, and with damaged
        /// L4 checksums (never verified, only updated).
        #[test]
        fn flow_rewrites_equal_parsed_rewrites(
            (client, vip, server) in endpoints(),
            is_tcp in any::<bool>(),
            flags in any::<u8>(),
            payload in proptest::collection::vec(any::<u8>(), 0..64),
            zero_udp in any::<bool>(),
            l4_damage in any::<u16>(),
        ) {
            for (src, dst, new, to_src) in [(client, vip, server, false), (server, client, vip, true)] {
                // No IPv4 options: the shape `parse_flow` reads.
                let mut pkt = packet(src, dst, is_tcp, flags, &payload, 0);
                let l4 = usize::from(parse(&pkt).unwrap().l4_offset);
                let at = l4 + if is_tcp { 16 } else { 6 };
                if !is_tcp && zero_udp && !src.is_ipv6() {
                    pkt[at..at + 2].fill(0);
                } else {
                    let c = u16::from_be_bytes([pkt[at], pkt[at + 1]]) ^ l4_damage;
                    pkt[at..at + 2].copy_from_slice(&c.to_be_bytes());
                }
                let mut by_flow = pkt.clone();
                let p = parse(&pkt).unwrap();
                if to_src { rewrite_src(&mut pkt, &p, new).unwrap() } else { rewrite_dst(&mut pkt, &p, new).unwrap() }
                let f = crate::packet::parse_flow(&by_flow).unwrap();
                let addr = crate::packet::addr_bytes(new.ip());
                rewrite_flow(&mut by_flow, &f, &addr, new.port(), to_src).unwrap();
                prop_assert_eq!(&by_flow, &pkt);
            }
        }

        #[test]
        fn icmp_rewrites_match_recompute(
            (client, vip, server) in endpoints(),
            is_tcp in any::<bool>(),
            payload in proptest::collection::vec(any::<u8>(), 0..64),
            quote_extra in 0usize..80,
            router in prop_oneof![addr_v4(), addr_v6()],
        ) {
            let v6 = client.is_ipv6();
            let router = match (v6, router) {
                (true, IpAddr::V4(a)) => IpAddr::V6(a.to_ipv6_mapped()),
                (false, IpAddr::V6(a)) => IpAddr::V4(a.to_ipv4_mapped().unwrap_or(core::net::Ipv4Addr::LOCALHOST)),
                (_, r) => r,
            };
            let hdr = if v6 { 40 } else { 20 };
            // Toward the server: an error about our reply VIP → client.
            let quoted = packet(vip, client, is_tcp, ACK, &payload, 0);
            let n = (hdr + 8 + quote_extra).min(quoted.len());
            let mut pkt = bounce(router, vip.ip(), &quoted[..n]);
            prop_assert!(verify_checksums(&pkt));
            let p = parse(&pkt).unwrap();
            rewrite_icmp_to_server(&mut pkt, &p, server).unwrap();
            prop_assert!(verify_checksums(&pkt));
            let q = parse(&pkt).unwrap();
            prop_assert_eq!((q.src.ip(), q.dst.ip()), (router, server.ip()));
            let e = icmp_error(&q);
            prop_assert_eq!((e.src, e.dst), (server, client));

            // Toward the client: an error about a packet we forwarded client → server.
            let quoted = packet(client, server, is_tcp, ACK, &payload, 0);
            let n = (hdr + 8 + quote_extra).min(quoted.len());
            let mut pkt = bounce(router, client.ip(), &quoted[..n]);
            let p = parse(&pkt).unwrap();
            rewrite_icmp_to_client(&mut pkt, &p, vip).unwrap();
            prop_assert!(verify_checksums(&pkt));
            let q = parse(&pkt).unwrap();
            prop_assert_eq!((q.src.ip(), q.dst.ip()), (vip.ip(), client.ip()));
            let e = icmp_error(&q);
            prop_assert_eq!((e.src, e.dst), (client, vip));
        }

        #[test]
        fn arbitrary_bytes_never_panic(
            mut bytes in proptest::collection::vec(any::<u8>(), 0..200),
            first in prop_oneof![Just(0x45u8), Just(0x47), Just(0x60), any::<u8>()],
            proto in prop_oneof![Just(1u8), Just(6), Just(17), Just(58), any::<u8>()],
            (a, _, _) in endpoints(),
        ) {
            if let Some(b) = bytes.first_mut() { *b = first; }
            if bytes.len() > 9 { bytes[if first >> 4 == 6 { 6 } else { 9 }] = proto; }
            if let Ok(p) = parse(&bytes) {
                exercise(&bytes, &p, a);
            }
            let _ = verify_checksums(&bytes);
        }

        #[test]
        fn mutated_packets_never_panic(
            (client, vip, server) in endpoints(),
            kind in 0u8..4,
            flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
            cut in any::<prop::sample::Index>(),
        ) {
            let inner = packet(client, vip, kind & 1 == 0, SYN, b"data", 1);
            let mut pkt = match kind {
                0 | 1 => inner,
                2 => bounce(server.ip(), client.ip(), &inner),
                _ => icmp(client.ip(), vip.ip(), if client.is_ipv6() { 128 } else { 8 }, 0, [0; 4], b"ping"),
            };
            for (i, v) in flips {
                let at = i.index(pkt.len());
                pkt[at] = v;
            }
            pkt.truncate(cut.index(pkt.len() + 1));
            if let Ok(p) = parse(&pkt) {
                exercise(&pkt, &p, server);
                // A parse of a mismatched (shorter) buffer must be refused, not panic.
                let short = &pkt[..pkt.len() / 2];
                exercise(short, &p, server);
            }
        }
    }
}
