//! The outer headers of a tunnelled packet, as Linux IPVS writes them (`ip_vs_tunnel_xmit`,
//! docs/tunnels.md "On the wire"): built from the inner packet's own header into a small
//! array, for the balancer to place in front of the packet.
//!
//! * **Outer IPv4:** IHL 5, no options; TOS = the inner DS field with the ECN encapsulation
//!   rule (an inner CE leaves as ECT(0): RFC 6040's compatibility mode, `INET_ECN_encapsulate`);
//!   DF copied from an inner IPv4 header (the kernel's `pmtu_disc` = 1), clear for an inner
//!   IPv6 packet; identification 0 with DF (RFC 6864), else the caller's counter; TTL = the
//!   inner TTL / hop limit; protocol 4, 41, 17 (GUE) or 47 (GRE).
//! * **Outer IPv6:** traffic class as above, flow label 0, hop limit = the inner TTL / hop
//!   limit, next header 4, 41, 17 or 47.
//! * **GUE:** UDP source port from a hash of the inner flow (addresses, protocol and, when the
//!   packet carries them, ports) spread over Linux's default local port range 32768–60999, as
//!   `udp_flow_src_port` does; destination port the real server's `--tun-port`; checksum 0
//!   (`--tun-nocsum`) or over the whole datagram (`--tun-csum`, and `--tun-remcsum`, which
//!   adds no option for a packet whose inner checksum is complete — every packet a frontend
//!   hands over). Then the 4-byte GUE header: version 0, C 0, Hlen 0, the inner protocol, no
//!   flags.
//! * **GRE:** `00 00` or, with `--tun-csum`, `80 00`; the inner EtherType; with the checksum,
//!   the Internet checksum of the GRE header and payload and 2 reserved zero bytes.
//!
//! The inner packet is not touched: the kernel decrements its TTL before encapsulating, lb-core
//! leaves that to the frontend's forwarding, which decrements the outer header (as for NAT and
//! direct routing, docs/ipvs-semantics.md §6.3).

use core::net::IpAddr;

use crate::checksum;
use crate::config::{GueCsum, TunnelKind};

use super::{
    ETHERTYPE_IPV4, ETHERTYPE_IPV6, GRE_CSUM_HEADER_LEN, GRE_FLAG_CSUM, GRE_HEADER_LEN,
    GUE_HEADER_LEN, MAX_OVERHEAD, PROTO_GRE, PROTO_IPIP, PROTO_IPV6, PROTO_UDP,
};

/// Linux's default `net.ipv4.ip_local_port_range`, from which GUE source ports are drawn.
const SPORT_MIN: u32 = 32768;
/// The range's end (inclusive, as Linux's `udp_flow_src_port` never reaches it).
const SPORT_MAX: u32 = 60999;

/// Outer headers built for one packet, ready to be placed in front of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outer {
    bytes: [u8; MAX_OVERHEAD],
    len: u8,
}

impl Outer {
    /// No headers: the packet is not tunnelled.
    pub const NONE: Outer = Outer {
        bytes: [0; MAX_OVERHEAD],
        len: 0,
    };

    /// The headers, outermost first.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    /// Their length.
    pub const fn len(&self) -> usize {
        self.len as usize
    }

    /// Whether there are none.
    pub const fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// Why a packet cannot be encapsulated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EncapError {
    /// The inner packet is not a whole IPv4 or IPv6 packet.
    NotIp,
    /// Inner and outer headers together exceed the outer family's length field.
    TooLong,
}

/// How many bytes of outer headers `kind` adds over an IPv4 (`outer_v6` false) or IPv6 path.
pub const fn overhead(kind: TunnelKind, outer_v6: bool) -> usize {
    let ip = if outer_v6 { 40 } else { 20 };
    ip + match kind {
        TunnelKind::Ipip => 0,
        TunnelKind::Gue { .. } => 8 + GUE_HEADER_LEN,
        TunnelKind::Gre { csum: false } => GRE_HEADER_LEN,
        TunnelKind::Gre { csum: true } => GRE_CSUM_HEADER_LEN,
    }
}

/// What the outer headers copy from the inner packet's IP header.
struct InnerInfo {
    v6: bool,
    /// The DS field (DSCP and ECN).
    ds: u8,
    /// TTL or hop limit.
    ttl: u8,
    /// IPv4 DF.
    df: bool,
}

fn inner_info(inner: &[u8]) -> Result<InnerInfo, EncapError> {
    match inner.first().map(|b| b >> 4) {
        Some(4) if inner.len() >= 20 => Ok(InnerInfo {
            v6: false,
            ds: inner[1],
            ttl: inner[8],
            df: inner[6] & 0x40 != 0,
        }),
        Some(6) if inner.len() >= 40 => Ok(InnerInfo {
            v6: true,
            ds: (inner[0] << 4) | (inner[1] >> 4),
            ttl: inner[7],
            df: false,
        }),
        _ => Err(EncapError::NotIp),
    }
}

/// The outer DS field: DSCP and ECN copied, except that an inner CE (11) leaves as ECT(0) (10).
const fn ecn_encapsulate(ds: u8) -> u8 {
    if ds & 3 == 3 {
        (ds & !3) | 2
    } else {
        ds
    }
}

/// GUE's UDP source port for `inner`: a hash of its flow spread over 32768–60999.
pub fn gue_source_port(inner: &[u8]) -> u16 {
    let h = flow_hash(inner);
    let h = h ^ (h << 16);
    (((u64::from(h) * u64::from(SPORT_MAX - SPORT_MIN)) >> 32) as u32 + SPORT_MIN) as u16
}

/// A hash of the inner packet's flow: both addresses, the protocol and, for an unfragmented
/// (or first-fragment) TCP/UDP packet without IPv4 options or IPv6 extension headers, both
/// ports. The same for every packet of a flow; fragments past the first hash without ports.
fn flow_hash(inner: &[u8]) -> u32 {
    let (addrs, proto, l4) = match inner.first().map(|b| b >> 4) {
        Some(4) if inner.len() >= 20 => {
            let ihl = usize::from(inner[0] & 0xf) * 4;
            let later_fragment = u16::from_be_bytes([inner[6], inner[7]]) & 0x1fff != 0;
            (&inner[12..20], inner[9], (!later_fragment).then_some(ihl))
        }
        Some(6) if inner.len() >= 40 => (&inner[8..40], inner[6], Some(40)),
        _ => return 0,
    };
    let mut h: u32 = 0x9e37_79b9 ^ u32::from(proto);
    for w in addrs.chunks_exact(4) {
        h = mix(h, u32::from_be_bytes([w[0], w[1], w[2], w[3]]));
    }
    if matches!(proto, 6 | 17) {
        if let Some(p) = l4.and_then(|at| inner.get(at..at + 4)) {
            h = mix(h, u32::from_be_bytes([p[0], p[1], p[2], p[3]]));
        }
    }
    h ^ (h >> 15)
}

/// One round of a multiply-rotate mix (the Murmur3 body).
const fn mix(h: u32, w: u32) -> u32 {
    let k = w
        .wrapping_mul(0xcc9e_2d51)
        .rotate_left(15)
        .wrapping_mul(0x1b87_3593);
    (h ^ k)
        .rotate_left(13)
        .wrapping_mul(5)
        .wrapping_add(0xe654_6b64)
}

/// Builds the outer headers that carry `inner` (a whole IPv4 or IPv6 packet, its length its
/// slice's) by `kind` from `src` to `dst` (both of the outer family). `ip_id` is the outer
/// IPv4 identification for a packet without DF.
pub fn build(
    inner: &[u8],
    kind: TunnelKind,
    src: IpAddr,
    dst: IpAddr,
    ip_id: u16,
) -> Result<Outer, EncapError> {
    let info = inner_info(inner)?;
    let outer_v6 = dst.is_ipv6();
    let total = overhead(kind, outer_v6);
    let ip_len = if outer_v6 { 40 } else { 20 };
    let inner_proto = if info.v6 { PROTO_IPV6 } else { PROTO_IPIP };
    let mut out = Outer {
        bytes: [0; MAX_OVERHEAD],
        len: total as u8,
    };
    // Everything after the outer IP header, and the IP protocol that announces it.
    let after_ip = inner.len() + total - ip_len;
    let ip_proto = match kind {
        TunnelKind::Ipip => inner_proto,
        TunnelKind::Gue { port, csum } => {
            let udp_len = u16::try_from(after_ip).map_err(|_| EncapError::TooLong)?;
            let b = &mut out.bytes[ip_len..total];
            b[0..2].copy_from_slice(&gue_source_port(inner).to_be_bytes());
            b[2..4].copy_from_slice(&port.to_be_bytes());
            b[4..6].copy_from_slice(&udp_len.to_be_bytes());
            b[9] = inner_proto;
            if csum != GueCsum::None {
                let (s, d) = (crate::addr::addr_bytes(src), crate::addr::addr_bytes(dst));
                let n = if outer_v6 { 16 } else { 4 };
                let pseudo =
                    checksum::pseudo_header(&s[..n], &d[..n], PROTO_UDP, u32::from(udp_len));
                let sum = checksum::add(checksum::add(pseudo, b), inner);
                let c = checksum::finish(sum);
                // A computed 0 goes out as all ones (RFC 768; 0 means "no checksum").
                b[6..8].copy_from_slice(&(if c == 0 { 0xffff } else { c }).to_be_bytes());
            }
            PROTO_UDP
        }
        TunnelKind::Gre { csum } => {
            let b = &mut out.bytes[ip_len..total];
            let flags = if csum { GRE_FLAG_CSUM } else { 0 };
            let ethertype = if info.v6 {
                ETHERTYPE_IPV6
            } else {
                ETHERTYPE_IPV4
            };
            b[0..2].copy_from_slice(&flags.to_be_bytes());
            b[2..4].copy_from_slice(&ethertype.to_be_bytes());
            if csum {
                let c = checksum::finish(checksum::add(checksum::add(0, b), inner));
                b[4..6].copy_from_slice(&c.to_be_bytes());
            }
            PROTO_GRE
        }
    };
    let ds = ecn_encapsulate(info.ds);
    let ip = &mut out.bytes[..ip_len];
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let len = u16::try_from(20 + after_ip).map_err(|_| EncapError::TooLong)?;
            let id = if info.df { 0 } else { ip_id };
            ip[0] = 0x45;
            ip[1] = ds;
            ip[2..4].copy_from_slice(&len.to_be_bytes());
            ip[4..6].copy_from_slice(&id.to_be_bytes());
            ip[6] = if info.df { 0x40 } else { 0 };
            ip[8] = info.ttl;
            ip[9] = ip_proto;
            ip[12..16].copy_from_slice(&s.octets());
            ip[16..20].copy_from_slice(&d.octets());
            let c = checksum::finish(checksum::add(0, ip));
            ip[10..12].copy_from_slice(&c.to_be_bytes());
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            let len = u16::try_from(after_ip).map_err(|_| EncapError::TooLong)?;
            ip[0] = 0x60 | (ds >> 4);
            ip[1] = ds << 4;
            ip[4..6].copy_from_slice(&len.to_be_bytes());
            ip[6] = ip_proto;
            ip[7] = info.ttl;
            ip[8..24].copy_from_slice(&s.octets());
            ip[24..40].copy_from_slice(&d.octets());
        }
        // The caller picks the source of the real server's family.
        _ => return Err(EncapError::NotIp),
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
