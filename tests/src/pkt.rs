//! Packet builders and a checksum verifier of our own, independent of lb-core's `packet`,
//! `nat` and `checksum` modules (and of smoltcp, which skips checksum verification when built
//! with `cfg(fuzzing)`).

use std::net::{IpAddr, SocketAddr};
use std::vec::Vec;

pub const TCP: u8 = 6;
pub const UDP: u8 = 17;
pub const ICMP: u8 = 1;
pub const ICMPV6: u8 = 58;

pub const FIN: u8 = 0x01;
pub const SYN: u8 = 0x02;
pub const RST: u8 = 0x04;
pub const PSH: u8 = 0x08;
pub const ACK: u8 = 0x10;

/// Ones-complement sum of `data` as big-endian words (odd byte padded).
pub fn sum(mut acc: u64, data: &[u8]) -> u64 {
    let mut it = data.chunks_exact(2);
    for w in &mut it {
        acc += u64::from(w[0]) << 8 | u64::from(w[1]);
    }
    if let [b] = it.remainder() {
        acc += u64::from(*b) << 8;
    }
    acc
}

pub fn fold(mut s: u64) -> u16 {
    while s >> 16 != 0 {
        s = (s & 0xffff) + (s >> 16);
    }
    s as u16
}

fn addr_bytes(a: IpAddr) -> Vec<u8> {
    match a {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

fn pseudo(src: &[u8], dst: &[u8], proto: u8, len: usize) -> u64 {
    sum(sum(0, src), dst) + u64::from(proto) + (len as u64 >> 16) + (len as u64 & 0xffff)
}

/// An IP packet around `l4` (IPv4 with `opt_words` words of NOP options, or IPv6), with the
/// L4 checksum computed when `l4_csum` (for TCP/UDP/ICMPv6 over the pseudo-header, ICMPv4 over
/// the message).
pub fn ip(src: IpAddr, dst: IpAddr, proto: u8, opt_words: usize, mut l4: Vec<u8>) -> Vec<u8> {
    let (s, d) = (addr_bytes(src), addr_bytes(dst));
    let at = match proto {
        TCP => Some(16),
        UDP => Some(6),
        ICMP | ICMPV6 => Some(2),
        _ => None,
    };
    if let Some(at) = at.filter(|&at| l4.len() >= at + 2) {
        l4[at] = 0;
        l4[at + 1] = 0;
        let base = if proto == ICMP {
            0
        } else {
            pseudo(&s, &d, proto, l4.len())
        };
        let mut c = !fold(sum(base, &l4));
        if proto == UDP && c == 0 {
            c = 0xffff;
        }
        l4[at..at + 2].copy_from_slice(&c.to_be_bytes());
    }
    let mut p = Vec::with_capacity(60 + l4.len());
    if src.is_ipv4() {
        let ihl = 5 + opt_words.min(10);
        let total = ihl * 4 + l4.len();
        p.extend_from_slice(&[0x40 | ihl as u8, 0]);
        p.extend_from_slice(&(total as u16).to_be_bytes());
        p.extend_from_slice(&[0x12, 0x34, 0x40, 0, 64, proto, 0, 0]);
        p.extend_from_slice(&s);
        p.extend_from_slice(&d);
        p.resize(ihl * 4, 1);
        let c = !fold(sum(0, &p));
        p[10..12].copy_from_slice(&c.to_be_bytes());
    } else {
        p.extend_from_slice(&[0x60, 0, 0, 0]);
        p.extend_from_slice(&(l4.len() as u16).to_be_bytes());
        p.extend_from_slice(&[proto, 64]);
        p.extend_from_slice(&s);
        p.extend_from_slice(&d);
    }
    p.extend_from_slice(&l4);
    p
}

/// A TCP segment with `opt_words` words of TCP options (NOPs).
pub fn tcp(
    src: SocketAddr,
    dst: SocketAddr,
    flags: u8,
    seq: u32,
    payload: &[u8],
    opt_words: usize,
) -> Vec<u8> {
    let doff = 5 + opt_words.min(10);
    let mut l4 = Vec::new();
    l4.extend_from_slice(&src.port().to_be_bytes());
    l4.extend_from_slice(&dst.port().to_be_bytes());
    l4.extend_from_slice(&seq.to_be_bytes());
    l4.extend_from_slice(&seq.wrapping_mul(7).to_be_bytes());
    l4.extend_from_slice(&[(doff as u8) << 4, flags, 0xff, 0xff, 0, 0, 0, 0]);
    l4.resize(doff * 4, 1);
    l4.extend_from_slice(payload);
    ip(src.ip(), dst.ip(), TCP, opt_words / 3, l4)
}

pub fn udp(src: SocketAddr, dst: SocketAddr, payload: &[u8]) -> Vec<u8> {
    let mut l4 = Vec::new();
    l4.extend_from_slice(&src.port().to_be_bytes());
    l4.extend_from_slice(&dst.port().to_be_bytes());
    l4.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    l4.extend_from_slice(&[0, 0]);
    l4.extend_from_slice(payload);
    ip(src.ip(), dst.ip(), UDP, 0, l4)
}

/// An ICMP (v4 or v6 by the addresses) message of `ty`/`code` with `body` after the 8-byte
/// header.
pub fn icmp(src: IpAddr, dst: IpAddr, ty: u8, code: u8, body: &[u8]) -> Vec<u8> {
    let mut l4 = vec![ty, code, 0, 0, 0, 0, 0, 0];
    l4.extend_from_slice(body);
    let proto = if src.is_ipv4() { ICMP } else { ICMPV6 };
    ip(src, dst, proto, 0, l4)
}

/// An ICMP error (destination unreachable) from `from` quoting `quoted` (cut to `quote_len`
/// bytes, at least its IP header plus 8).
pub fn icmp_error(from: IpAddr, quoted: &[u8], quote_len: usize) -> Vec<u8> {
    let dst = src_of(quoted).map(|s| s.ip()).unwrap_or(from);
    let n = quote_len.clamp(quoted.len().min(28), quoted.len());
    let ty = if from.is_ipv4() { 3 } else { 1 };
    icmp(from, dst, ty, 3, &quoted[..n])
}

/// Source address (and port for TCP/UDP) of a well-formed packet we built.
pub fn src_of(p: &[u8]) -> Option<SocketAddr> {
    let (proto, l4, s, _) = split(p)?;
    Some(SocketAddr::new(s, ports(proto, l4).map_or(0, |x| x.0)))
}

/// Destination address (and port for TCP/UDP).
pub fn dst_of(p: &[u8]) -> Option<SocketAddr> {
    let (proto, l4, _, d) = split(p)?;
    Some(SocketAddr::new(d, ports(proto, l4).map_or(0, |x| x.1)))
}

fn ports(proto: u8, l4: &[u8]) -> Option<(u16, u16)> {
    if (proto == TCP || proto == UDP) && l4.len() >= 4 {
        Some((
            u16::from_be_bytes([l4[0], l4[1]]),
            u16::from_be_bytes([l4[2], l4[3]]),
        ))
    } else {
        None
    }
}

/// (protocol, L4 bytes, source, destination) of an IPv4/IPv6 packet without extension headers.
pub fn split(p: &[u8]) -> Option<(u8, &[u8], IpAddr, IpAddr)> {
    match p.first()? >> 4 {
        4 if p.len() >= 20 => {
            let ihl = usize::from(p[0] & 15) * 4;
            let total = usize::from(u16::from_be_bytes([p[2], p[3]]));
            if ihl < 20 || total < ihl || total > p.len() {
                return None;
            }
            let s: [u8; 4] = p[12..16].try_into().ok()?;
            let d: [u8; 4] = p[16..20].try_into().ok()?;
            Some((p[9], &p[ihl..total], IpAddr::from(s), IpAddr::from(d)))
        }
        6 if p.len() >= 40 => {
            let total = 40 + usize::from(u16::from_be_bytes([p[4], p[5]]));
            if total > p.len() {
                return None;
            }
            let s: [u8; 16] = p[8..24].try_into().ok()?;
            let d: [u8; 16] = p[24..40].try_into().ok()?;
            Some((p[6], &p[40..total], IpAddr::from(s), IpAddr::from(d)))
        }
        _ => None,
    }
}

/// Whether every checksum of the packet verifies, recomputed from scratch: the IPv4 header,
/// the TCP/UDP/ICMP/ICMPv6 checksum over the whole L4 message, and the quoted IPv4 header of
/// an ICMPv4 error. A zero UDP checksum passes over IPv4 only. Anything we cannot check
/// (truncated, fragments, extension headers) is "not valid".
pub fn checksums_ok(p: &[u8]) -> bool {
    let Some((proto, l4, s, d)) = split(p) else {
        return false;
    };
    let v4 = s.is_ipv4();
    if v4 {
        let ihl = usize::from(p[0] & 15) * 4;
        if fold(sum(0, &p[..ihl])) != 0xffff || u16::from_be_bytes([p[6], p[7]]) & 0x3fff != 0 {
            return false;
        }
    }
    let (sb, db) = (addr_bytes(s), addr_bytes(d));
    match proto {
        TCP => l4.len() >= 20 && fold(sum(pseudo(&sb, &db, TCP, l4.len()), l4)) == 0xffff,
        UDP => {
            if l4.len() < 8 {
                return false;
            }
            let len = usize::from(u16::from_be_bytes([l4[4], l4[5]]));
            if len < 8 || len > l4.len() {
                return false;
            }
            if l4[6] == 0 && l4[7] == 0 {
                return v4;
            }
            fold(sum(pseudo(&sb, &db, UDP, len), &l4[..len])) == 0xffff
        }
        ICMP if v4 => {
            if l4.len() < 8 || fold(sum(0, l4)) != 0xffff {
                return false;
            }
            let q = &l4[8..];
            if matches!(l4[0], 3 | 4 | 5 | 11 | 12) && q.len() >= 20 && q[0] >> 4 == 4 {
                let ihl = usize::from(q[0] & 15) * 4;
                return ihl >= 20 && q.len() >= ihl && fold(sum(0, &q[..ihl])) == 0xffff;
            }
            true
        }
        ICMPV6 if !v4 => {
            l4.len() >= 4 && fold(sum(pseudo(&sb, &db, ICMPV6, l4.len()), l4)) == 0xffff
        }
        0 | 43 | 44 | 51 | 60 | 135 | 139 | 140 | 253 | 254 if !v4 => false,
        _ => true,
    }
}

/// The TCP checksum field of a packet we built.
pub fn tcp_checksum(p: &[u8]) -> Option<u16> {
    let (proto, l4, _, _) = split(p)?;
    (proto == TCP && l4.len() >= 20).then(|| u16::from_be_bytes([l4[16], l4[17]]))
}

/// The ones-complement sum the TCP checksum should have made come out as 0xffff: how far off a
/// segment's checksum is (0xffff when right).
pub fn tcp_sum(p: &[u8]) -> Option<u16> {
    let (proto, l4, s, d) = split(p)?;
    (proto == TCP).then(|| {
        fold(sum(
            pseudo(&addr_bytes(s), &addr_bytes(d), TCP, l4.len()),
            l4,
        ))
    })
}

/// An ICMP (IPv4) or ICMPv6 echo request with identifier `ident`, sequence number `seq` and
/// `data`.
pub fn echo_request(src: IpAddr, dst: IpAddr, ident: u16, seq: u16, data: &[u8]) -> Vec<u8> {
    let ty = if src.is_ipv4() { 8 } else { 128 };
    let proto = if src.is_ipv4() { ICMP } else { ICMPV6 };
    let mut l4 = vec![ty, 0, 0, 0];
    l4.extend_from_slice(&ident.to_be_bytes());
    l4.extend_from_slice(&seq.to_be_bytes());
    l4.extend_from_slice(data);
    ip(src, dst, proto, 0, l4)
}

/// Sets the TTL (IPv4, header checksum recomputed) or hop limit (IPv6) of a packet we built.
pub fn set_ttl(p: &mut [u8], ttl: u8) {
    if p[0] >> 4 == 4 {
        let ihl = usize::from(p[0] & 15) * 4;
        p[8] = ttl;
        p[10] = 0;
        p[11] = 0;
        let c = !fold(sum(0, &p[..ihl]));
        p[10..12].copy_from_slice(&c.to_be_bytes());
    } else {
        p[7] = ttl;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_packets_verify_and_name_their_endpoints() {
        let (c, v) = (
            "192.0.2.1:40000".parse().unwrap(),
            "10.0.0.1:80".parse().unwrap(),
        );
        let mut p = tcp(c, v, SYN, 1, b"x", 2);
        assert!(checksums_ok(&p));
        assert_eq!((src_of(&p), dst_of(&p)), (Some(c), Some(v)));
        set_ttl(&mut p, 3);
        assert_eq!(p[8], 3);
        assert!(checksums_ok(&p));
        let e = echo_request("::1".parse().unwrap(), "::2".parse().unwrap(), 7, 1, b"hi");
        assert!(checksums_ok(&e));
        assert_eq!(&e[40..48], &[128, 0, e[42], e[43], 0, 7, 0, 1]);
        let mut bad = udp(c, v, b"data");
        bad[30] ^= 1;
        assert!(!checksums_ok(&bad));
    }
}
