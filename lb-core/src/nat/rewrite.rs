//! The in-place rewrites: a TCP/UDP packet's destination (client → real server) or source
//! (real server → client), and an ICMP error about a NAT flow, each with its checksums updated
//! incrementally (RFC 1624).

use core::net::{IpAddr, SocketAddr};

use super::{octets, NatError};
use crate::addr::Protocol;
use crate::checksum::Delta;
use crate::packet::{Flow, Kind, Parsed, PROTO_TCP, PROTO_UDP};

const IPV4_CHECKSUM: usize = 10;
const ICMP_CHECKSUM: usize = 2;

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
    rewrite_transport(buf, p, server, false, false)
}

/// Real server → client: sets the source address and port of a TCP/UDP packet to `vip`
/// (VIP:vport), updating the IPv4 header and L4 checksums. Call it on a NAT reply.
#[inline]
pub fn rewrite_src(buf: &mut [u8], p: &Parsed, vip: SocketAddr) -> Result<(), NatError> {
    rewrite_transport(buf, p, vip, true, false)
}

/// [`rewrite_src`] (`src`) or [`rewrite_dst`]; with `partial`, the L4 checksum field holds a
/// partial sum ([`Delta::apply_partial`]).
#[inline]
pub(crate) fn rewrite_transport(
    buf: &mut [u8],
    p: &Parsed,
    new: SocketAddr,
    src: bool,
    partial: bool,
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
        partial,
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
        false,
    )
}

/// The rewrite of [`rewrite_flow`] and [`rewrite_dst`]/[`rewrite_src`]: the TCP (or, with
/// `udp`, UDP) header at `l4` of an IPv6 (`v6`) or IPv4 packet.
///
/// With `partial` the L4 checksum field holds the pseudo-header's folded sum (Linux's
/// CHECKSUM_PARTIAL, virtio's NEEDS_CSUM): the address change goes into it uncomplemented
/// ([`Delta::apply_partial`], the kernel's `inet_proto_csum_replace4` with `pseudohdr`), the
/// port change not at all (the device sums the header it is in).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn rewrite_l4(
    buf: &mut [u8],
    v6: bool,
    udp: bool,
    l4: usize,
    addr: &[u8; 16],
    port: u16,
    src: bool,
    partial: bool,
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
    pkt[port_at..port_at + 2].copy_from_slice(&port.to_be_bytes());
    let old = u16::from_be_bytes([pkt[csum_at], pkt[csum_at + 1]]);
    if partial {
        // The pseudo-header's sum: the addresses alone (`d` has not seen the port).
        pkt[csum_at..csum_at + 2].copy_from_slice(&d.apply_partial(old).to_be_bytes());
        return Ok(());
    }
    d.replace16(old_port, port);
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

/// A later fragment (`Kind::Fragment`) of a datagram whose first fragment [`rewrite_dst`] (or,
/// with `src`, [`rewrite_src`]) rewrote: sets its destination (source) address to `addr`,
/// updating the IPv4 header checksum. Nothing else: the ports and the L4 checksum sit in the
/// first fragment, and the first fragment's update is right for the whole datagram (the
/// checksum is one sum over the pseudo-header and every fragment's data: the new address
/// enters it once). Call it with the address the first fragment got.
#[inline]
pub fn rewrite_fragment(buf: &mut [u8], p: &Parsed, addr: IpAddr, src: bool) -> Result<(), NatError> {
    if p.kind != Kind::Fragment {
        return Err(NatError::WrongKind);
    }
    if addr.is_ipv6() != p.v6 {
        return Err(NatError::FamilyMismatch);
    }
    let (bytes, n) = octets(addr);
    let mut d = Delta::ZERO;
    put(buf, addr_offset(p.v6, src), &bytes[..n], &mut d)?;
    if !p.v6 {
        fix(buf, IPV4_CHECKSUM, d)?;
    }
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
