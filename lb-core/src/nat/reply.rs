//! The replies lb-core generates, written into a caller buffer: a TCP RST, an ICMP port
//! unreachable, an echo reply.

use core::net::IpAddr;

use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{IpProtocol, Ipv4Packet, Ipv4Repr, Ipv6Packet, Ipv6Repr};

use super::octets;
use crate::checksum;
use crate::packet::{Kind, Parsed, PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP};
use crate::tcp::flags;

const TTL: u8 = 64;

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
    let (ty, code) = if p.v6 { (1, 4) } else { (3, 3) };
    write_icmp_error(out, buf, p, src, [ty, code, 0, 0, 0, 0, 0, 0])
}

/// Writes into `out` the ICMP error that says the TCP/UDP packet `p` (parsed from `buf`) is
/// too big for a link of `mtu` bytes: ICMPv4 "fragmentation needed" (type 3 code 4, the MTU in
/// its next-hop MTU field, RFC 1191) or ICMPv6 "packet too big" (type 2, RFC 4443 §3.2), from
/// `src` (the VIP) to `p`'s sender, quoting as [`write_icmp_port_unreachable`] does, with the
/// same refusals.
pub fn write_icmp_too_big(
    out: &mut [u8],
    buf: &[u8],
    p: &Parsed,
    src: IpAddr,
    mtu: u32,
) -> Option<usize> {
    let m = mtu.to_be_bytes();
    let head = if p.v6 {
        [2, 0, 0, 0, m[0], m[1], m[2], m[3]]
    } else {
        let m = u16::try_from(mtu).unwrap_or(u16::MAX).to_be_bytes();
        [3, 4, 0, 0, 0, 0, m[0], m[1]]
    };
    write_icmp_error(out, buf, p, src, head)
}

/// Writes into `out` an ICMP (IPv4 `src`/`dst`) or ICMPv6 message from `src` to `dst` whose
/// first 8 bytes are `head` (type, code, checksum left 0, and the type's 4 bytes), quoting
/// `quote` cut to fit 576 (IPv4) or 1,280 (IPv6) bytes and `out`. Returns its length, or `None`
/// if the families differ, `dst` is not unicast, or `out` cannot hold the headers and 8 bytes
/// of quote. For errors relayed rather than answered (a tunnel's path telling its client).
pub(crate) fn write_icmp_to(
    out: &mut [u8],
    src: IpAddr,
    dst: IpAddr,
    head: [u8; 8],
    quote: &[u8],
) -> Option<usize> {
    let unicast = match dst {
        IpAddr::V4(a) => !(a.is_unspecified() || a.is_multicast() || a.is_broadcast()),
        IpAddr::V6(a) => !(a.is_unspecified() || a.is_multicast()),
    };
    if !unicast || src.is_ipv6() != dst.is_ipv6() {
        return None;
    }
    let (hdr_len, max, proto) = if dst.is_ipv6() {
        (40, ICMPV6_ERROR_MAX, PROTO_ICMPV6)
    } else {
        (20, ICMPV4_ERROR_MAX, PROTO_ICMP)
    };
    let room = max.min(out.len()).checked_sub(hdr_len + 8)?;
    let n = quote.len().min(room);
    if n < quote.len().min(8) {
        return None;
    }
    let icmp_len = 8 + n;
    let hdr = write_ip_header(out, src, dst, proto, icmp_len)?;
    let icmp = out.get_mut(hdr..hdr + icmp_len)?;
    icmp[..8].copy_from_slice(&head);
    icmp[8..].copy_from_slice(&quote[..n]);
    let start = if dst.is_ipv6() {
        pseudo(src, dst, proto, icmp_len)
    } else {
        0
    };
    let sum = checksum::finish(checksum::add(start, icmp));
    icmp[2..4].copy_from_slice(&sum.to_be_bytes());
    Some(hdr + icmp_len)
}

/// An ICMP error whose first 8 bytes are `head` (type, code, checksum left 0, and the
/// type's 4 bytes), quoting `p`: see [`write_icmp_port_unreachable`].
fn write_icmp_error(
    out: &mut [u8],
    buf: &[u8],
    p: &Parsed,
    src: IpAddr,
    head: [u8; 8],
) -> Option<usize> {
    if p.kind != Kind::Transport || src.is_ipv6() != p.v6 || !may_answer(p) {
        return None;
    }
    let original = buf.get(..usize::try_from(p.total_len).ok()?)?;
    let (hdr_len, max, proto) = if p.v6 {
        (40, ICMPV6_ERROR_MAX, PROTO_ICMPV6)
    } else {
        (20, ICMPV4_ERROR_MAX, PROTO_ICMP)
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
    icmp[..8].copy_from_slice(&head);
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
    if !checksum::verifies(checksum::add(pseudo_sum(dst, src), request)) {
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
