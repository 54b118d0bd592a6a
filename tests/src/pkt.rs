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

/// A TCP segment with `opt_words` words of TCP options (NOPs), acknowledgment number
/// `seq * 7` and `opt_words / 3` words of IPv4 options. [`Tcp`] sets every field.
pub fn tcp(
    src: SocketAddr,
    dst: SocketAddr,
    flags: u8,
    seq: u32,
    payload: &[u8],
    opt_words: usize,
) -> Vec<u8> {
    Tcp::new(src, dst, flags)
        .seq(seq)
        .ack(seq.wrapping_mul(7))
        .options(&[1; 40][..4 * opt_words.min(10)])
        .payload(payload)
        .ip_options(opt_words / 3)
        .build()
}

/// The options of a SYN as a real stack sends them: MSS 1460, window scale 7, SACK permitted,
/// end of list (padding to a 4-byte boundary).
pub const SYN_OPTIONS: [u8; 12] = [2, 4, 0x05, 0xb4, 3, 3, 7, 4, 2, 0, 0, 0];

/// A TCP segment with acknowledgment number `ack` and [`SYN_OPTIONS`] when `flags` has SYN
/// (no options otherwise): a segment of a connection as its endpoints send them.
pub fn segment(
    src: SocketAddr,
    dst: SocketAddr,
    flags: u8,
    seq: u32,
    ack: u32,
    payload: &[u8],
) -> Vec<u8> {
    let options: &[u8] = if flags & SYN != 0 { &SYN_OPTIONS } else { &[] };
    Tcp::new(src, dst, flags)
        .seq(seq)
        .ack(ack)
        .options(options)
        .payload(payload)
        .build()
}

/// A TCP segment described field by field, built (with its checksums) by [`Tcp::build`]:
/// `Tcp::new(src, dst, SYN).seq(1).options(&SYN_OPTIONS).ip_options(1).build()`.
#[derive(Clone, Copy, Debug)]
pub struct Tcp<'a> {
    pub src: SocketAddr,
    pub dst: SocketAddr,
    /// The flags byte, exactly (ACK is not implied by an acknowledgment number).
    pub flags: u8,
    pub seq: u32,
    pub ack: u32,
    pub window: u16,
    /// TCP option bytes (at most 40), padded with zeros (end of list) to a 4-byte boundary.
    pub options: &'a [u8],
    pub payload: &'a [u8],
    /// 4-byte words of NOP options in the IPv4 header (at most 10; none over IPv6).
    pub ip_opt_words: usize,
}

impl<'a> Tcp<'a> {
    /// A segment with `flags`, sequence and acknowledgment numbers 0, window 65535, no options
    /// and no payload.
    pub fn new(src: SocketAddr, dst: SocketAddr, flags: u8) -> Self {
        Tcp {
            src,
            dst,
            flags,
            seq: 0,
            ack: 0,
            window: 0xffff,
            options: &[],
            payload: &[],
            ip_opt_words: 0,
        }
    }

    pub fn seq(self, seq: u32) -> Self {
        Tcp { seq, ..self }
    }

    pub fn ack(self, ack: u32) -> Self {
        Tcp { ack, ..self }
    }

    pub fn window(self, window: u16) -> Self {
        Tcp { window, ..self }
    }

    pub fn options(self, options: &'a [u8]) -> Self {
        Tcp { options, ..self }
    }

    pub fn payload(self, payload: &'a [u8]) -> Self {
        Tcp { payload, ..self }
    }

    pub fn ip_options(self, words: usize) -> Self {
        Tcp {
            ip_opt_words: words,
            ..self
        }
    }

    /// The IP packet, with correct checksums.
    pub fn build(&self) -> Vec<u8> {
        assert!(
            self.options.len() <= 40,
            "more than 40 bytes of TCP options"
        );
        let doff = 5 + self.options.len().div_ceil(4);
        let mut l4 = Vec::with_capacity(doff * 4 + self.payload.len());
        l4.extend_from_slice(&self.src.port().to_be_bytes());
        l4.extend_from_slice(&self.dst.port().to_be_bytes());
        l4.extend_from_slice(&self.seq.to_be_bytes());
        l4.extend_from_slice(&self.ack.to_be_bytes());
        l4.extend_from_slice(&[(doff as u8) << 4, self.flags]);
        l4.extend_from_slice(&self.window.to_be_bytes());
        l4.extend_from_slice(&[0, 0, 0, 0]);
        l4.extend_from_slice(self.options);
        l4.resize(doff * 4, 0);
        l4.extend_from_slice(self.payload);
        ip(self.src.ip(), self.dst.ip(), TCP, self.ip_opt_words, l4)
    }
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
    icmp_rest(src, dst, ty, code, [0; 4], body)
}

/// An ICMP (v4 or v6 by the addresses) message of `ty`/`code` whose header ends with `rest`
/// (the 4 bytes after the checksum: identifier and sequence number, next-hop MTU, pointer),
/// then `body`.
pub fn icmp_rest(
    src: IpAddr,
    dst: IpAddr,
    ty: u8,
    code: u8,
    rest: [u8; 4],
    body: &[u8],
) -> Vec<u8> {
    let mut l4 = vec![ty, code, 0, 0];
    l4.extend_from_slice(&rest);
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

/// An ICMP "fragmentation needed" (type 3 code 4) or ICMPv6 "packet too big" (type 2) from
/// `from` with next-hop MTU `mtu`, to the source of `quoted`, quoting it cut to `quote_len`
/// bytes (at least its IP header plus 8).
pub fn too_big(from: IpAddr, quoted: &[u8], quote_len: usize, mtu: u16) -> Vec<u8> {
    let dst = src_of(quoted).map(|s| s.ip()).unwrap_or(from);
    let hdr = if from.is_ipv4() { 28 } else { 48 };
    let n = quote_len.clamp(quoted.len().min(hdr), quoted.len());
    let (ty, code) = if from.is_ipv4() { (3, 4) } else { (2, 0) };
    let [hi, lo] = mtu.to_be_bytes();
    icmp_rest(from, dst, ty, code, [0, 0, hi, lo], &quoted[..n])
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
        p[8] = ttl;
        refresh_ipv4_checksum(p);
    } else {
        p[7] = ttl;
    }
}

/// Recomputes the IPv4 header checksum after a header edit, over the header the IHL gives
/// (at least 20 bytes, at most the whole packet), so a test's damage is the only fault.
pub fn refresh_ipv4_checksum(p: &mut [u8]) {
    let ihl = (usize::from(p[0] & 15) * 4).max(20).min(p.len());
    if p.len() >= 12 {
        p[10] = 0;
        p[11] = 0;
        let c = !fold(sum(0, &p[..ihl]));
        p[10..12].copy_from_slice(&c.to_be_bytes());
    }
}

/// An IPv4 packet we built (without options) with `words` 4-byte words of NOP options
/// (at most 10) inserted in its header; total length, IHL and header checksum updated (the L4
/// checksum does not cover the IP header). An IPv6 packet is returned as it is.
pub fn with_ip_options(p: &[u8], words: usize) -> Vec<u8> {
    if p[0] >> 4 != 4 {
        return p.to_vec();
    }
    let ihl = usize::from(p[0] & 15) * 4;
    let add = 4 * words.min(10 - (ihl / 4 - 5));
    let mut q = p[..ihl].to_vec();
    q.resize(ihl + add, 1);
    q.extend_from_slice(&p[ihl..]);
    q[0] = 0x40 | ((ihl + add) / 4) as u8;
    let total = (u16::from_be_bytes([p[2], p[3]]) as usize + add) as u16;
    q[2..4].copy_from_slice(&total.to_be_bytes());
    refresh_ipv4_checksum(&mut q);
    q
}

/// Makes an IPv4 packet we built a fragment: fragment offset `offset` (in 8-byte units), more
/// fragments when `more`, DF cleared; header checksum recomputed.
pub fn set_fragment(p: &mut [u8], offset: u16, more: bool) {
    let field = (offset & 0x1fff) | if more { 0x2000 } else { 0 };
    p[6..8].copy_from_slice(&field.to_be_bytes());
    refresh_ipv4_checksum(p);
}

/// An IPv6 packet we built with an extension header of type `ty` inserted after the fixed
/// header: the header's first byte names the protocol that followed (next header), `rest` are
/// its other bytes (7, 15, ...: e.g. hop-by-hop `[0, 1, 4, 0, 0, 0, 0]`, or a fragment header's
/// `[0, offset_hi, offset_lo | more, ident...]`), and the payload length grows to match.
pub fn ipv6_ext(p: &[u8], ty: u8, rest: &[u8]) -> Vec<u8> {
    assert_eq!(p[0] >> 4, 6, "not IPv6");
    let mut q = p[..40].to_vec();
    q[6] = ty;
    q.push(p[6]);
    q.extend_from_slice(rest);
    q.extend_from_slice(&p[40..]);
    let plen = (q.len() - 40) as u16;
    q[4..6].copy_from_slice(&plen.to_be_bytes());
    q
}

/// Splits an IPv4 packet, or an IPv6 packet (its extension headers, if any, stay in the
/// unfragmentable part only if `ext` is their length; pass 0 for none), into fragments of the
/// datagram identified by `id`: the IP payload is cut at the byte offsets `cuts` (ascending,
/// multiples of 8, inside the payload). IPv4 fragments get the identification (low 16 bits),
/// MF and offset, DF cleared; IPv6 fragments a Fragment header after the fixed header and
/// `ext` bytes of extension headers. Returned in order.
pub fn fragments(p: &[u8], ext: usize, cuts: &[usize], id: u32) -> Vec<Vec<u8>> {
    let v6 = p[0] >> 4 == 6;
    let hdr = if v6 {
        40 + ext
    } else {
        usize::from(p[0] & 15) * 4
    };
    let payload = &p[hdr..];
    let mut bounds = std::vec![0];
    bounds.extend_from_slice(cuts);
    bounds.push(payload.len());
    let mut out = Vec::new();
    for w in bounds.windows(2) {
        let (from, to) = (w[0], w[1]);
        let more = to < payload.len();
        let mut q = p[..hdr].to_vec();
        if v6 {
            // The Fragment header goes last in the unfragmentable part.
            let next_at = if ext == 0 {
                6
            } else {
                last_ext_next_at(p, ext)
            };
            let next = q[next_at];
            q[next_at] = 44;
            let field = (from as u16) | u16::from(more);
            q.push(next);
            q.push(0);
            q.extend_from_slice(&field.to_be_bytes());
            q.extend_from_slice(&id.to_be_bytes());
            q.extend_from_slice(&payload[from..to]);
            let plen = (q.len() - 40) as u16;
            q[4..6].copy_from_slice(&plen.to_be_bytes());
        } else {
            q.extend_from_slice(&payload[from..to]);
            let total = q.len() as u16;
            q[2..4].copy_from_slice(&total.to_be_bytes());
            q[4..6].copy_from_slice(&(id as u16).to_be_bytes());
            let field = ((from / 8) as u16) | if more { 0x2000 } else { 0 };
            q[6..8].copy_from_slice(&field.to_be_bytes());
            refresh_ipv4_checksum(&mut q);
        }
        out.push(q);
    }
    out
}

/// Where the next-header byte of the last of the `ext` bytes of extension headers after an
/// IPv6 fixed header sits.
fn last_ext_next_at(p: &[u8], ext: usize) -> usize {
    let (mut at, mut ty) = (40, p[6]);
    loop {
        let len = if ty == 51 {
            (usize::from(p[at + 1]) + 2) * 4
        } else {
            (usize::from(p[at + 1]) + 1) * 8
        };
        if at + len >= 40 + ext {
            return at;
        }
        ty = p[at];
        at += len;
    }
}

/// Reassembles fragments (any order; what [`fragments`] makes, or their rewrites) into the
/// datagram: IPv4 with the first fragment's header, MF/offset cleared; IPv6 with the Fragment
/// header removed. `None` if a piece is missing.
pub fn reassemble(frags: &[Vec<u8>]) -> Option<Vec<u8>> {
    let v6 = frags.first()?[0] >> 4 == 6;
    let mut pieces: Vec<(usize, bool, Vec<u8>, Vec<u8>)> = Vec::new();
    for f in frags {
        if v6 {
            // The Fragment header is found by walking: fixed header, then headers up to 44.
            let mut next_at = 6;
            let mut at = 40;
            while f[next_at] != 44 {
                let len = (usize::from(f[at + 1]) + 1) * 8;
                next_at = at;
                at += len;
            }
            let field = u16::from_be_bytes([f[at + 2], f[at + 3]]);
            let mut head = f[..at].to_vec();
            head[next_at] = f[at];
            pieces.push((
                usize::from(field & !7),
                field & 1 != 0,
                head,
                f[at + 8..].to_vec(),
            ));
        } else {
            let ihl = usize::from(f[0] & 15) * 4;
            let field = u16::from_be_bytes([f[6], f[7]]);
            pieces.push((
                usize::from(field & 0x1fff) * 8,
                field & 0x2000 != 0,
                f[..ihl].to_vec(),
                f[ihl..].to_vec(),
            ));
        }
    }
    pieces.sort_by_key(|p| p.0);
    let mut data = Vec::new();
    for (off, _, _, d) in &pieces {
        if *off != data.len() {
            return None;
        }
        data.extend_from_slice(d);
    }
    if pieces.last()?.1 {
        return None;
    }
    let mut q = pieces[0].2.clone();
    q.extend_from_slice(&data);
    if v6 {
        let plen = (q.len() - 40) as u16;
        q[4..6].copy_from_slice(&plen.to_be_bytes());
    } else {
        let total = q.len() as u16;
        q[2..4].copy_from_slice(&total.to_be_bytes());
        q[6..8].copy_from_slice(&[0, 0]);
        refresh_ipv4_checksum(&mut q);
    }
    Some(q)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fragments_reassemble_to_the_datagram() {
        for (c, v) in [
            ("192.0.2.1:5000", "10.0.0.1:53"),
            ("[2001:db8::1]:5000", "[2001:db8::2]:53"),
        ] {
            let d = udp(c.parse().unwrap(), v.parse().unwrap(), &[7u8; 3000]);
            let frags = fragments(&d, 0, &[1232, 2464], 0x1234_5678);
            assert_eq!(frags.len(), 3);
            let mut back = reassemble(&frags).unwrap();
            if d[0] >> 4 == 4 {
                back[4..6].copy_from_slice(&d[4..6]); // the identification
                back[6..8].copy_from_slice(&d[6..8]);
                refresh_ipv4_checksum(&mut back);
            }
            assert_eq!(back, d);
            assert!(checksums_ok(&back));
            assert_eq!(reassemble(&frags[..2]), None);
        }
    }

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

    #[test]
    fn tcp_builder_sets_every_field() {
        let (c, v): (SocketAddr, SocketAddr) = (
            "192.0.2.1:40000".parse().unwrap(),
            "10.0.0.1:80".parse().unwrap(),
        );
        let p = Tcp::new(c, v, SYN)
            .seq(0x0102_0304)
            .ack(0x0506_0708)
            .window(29200)
            .options(&SYN_OPTIONS[..9])
            .payload(b"hi")
            .ip_options(1)
            .build();
        assert!(checksums_ok(&p));
        assert_eq!((p[0], p.len()), (0x46, 24 + 32 + 2));
        let l4 = &p[24..];
        assert_eq!(&l4[4..16], &[1, 2, 3, 4, 5, 6, 7, 8, 0x80, SYN, 0x72, 0x10]);
        assert_eq!(&l4[20..32], &SYN_OPTIONS);
        assert_eq!(&l4[32..], b"hi");
        // `segment` adds the SYN options on a SYN only; `tcp` keeps its own shape.
        assert_eq!(segment(c, v, SYN, 1, 2, b"").len(), 20 + 32);
        assert_eq!(segment(c, v, ACK, 1, 2, b"").len(), 20 + 20);
        let t = tcp(c, v, ACK, 3, b"", 4);
        assert_eq!(
            (t[0], t[24 + 12], &t[24 + 8..24 + 12]),
            (0x46, 0x90, &21u32.to_be_bytes()[..])
        );
    }

    #[test]
    fn icmp_errors_fragments_and_extension_headers() {
        let (c, v): (SocketAddr, SocketAddr) = (
            "[2001:db8::1]:40000".parse().unwrap(),
            "[2001:db8::2]:80".parse().unwrap(),
        );
        let router: IpAddr = "2001:db8::ff".parse().unwrap();
        let q = udp(c, v, &[7; 100]);
        let e = too_big(router, &q, 60, 1400);
        assert!(checksums_ok(&e));
        assert_eq!(split(&e).unwrap().3, c.ip());
        assert_eq!(&e[40..41], &[2]);
        assert_eq!(&e[44..48], &[0, 0, 5, 0x78]);
        assert_eq!(&e[48..], &q[..60]);
        let x = ipv6_ext(&q, 0, &[0, 1, 4, 0, 0, 0, 0]);
        assert_eq!((x[6], x[40], x.len()), (0, UDP, q.len() + 8));
        assert_eq!(usize::from(u16::from_be_bytes([x[4], x[5]])), x.len() - 40);
        assert_eq!(&x[48..], &q[40..]);

        let (c4, v4): (SocketAddr, SocketAddr) = (
            "192.0.2.1:40000".parse().unwrap(),
            "10.0.0.1:80".parse().unwrap(),
        );
        let u = udp(c4, v4, b"x");
        let o = with_ip_options(&u, 2);
        assert!(checksums_ok(&o));
        assert_eq!(
            (o[0], o.len(), &o[20..28], &o[28..]),
            (0x47, u.len() + 8, &[1; 8][..], &u[20..])
        );
        assert_eq!(o, ip(c4.ip(), v4.ip(), UDP, 2, u[20..].to_vec()));
        let mut f = u;
        set_fragment(&mut f, 3, true);
        assert_eq!(&f[6..8], &[0x20, 3]);
        assert_eq!(fold(sum(0, &f[..20])), 0xffff);
        assert!(!checksums_ok(&f), "fragments are not checked");
        f[16] = 9;
        refresh_ipv4_checksum(&mut f);
        assert_eq!(fold(sum(0, &f[..20])), 0xffff);
        let r = icmp_rest(c4.ip(), v4.ip(), 3, 4, [0, 0, 5, 0xdc], &f[..28]);
        assert!(checksums_ok(&r));
        assert_eq!(&r[20..28], &[3, 4, r[22], r[23], 0, 0, 5, 0xdc]);
        assert_eq!(
            echo_request(c4.ip(), v4.ip(), 1, 2, b""),
            icmp_rest(c4.ip(), v4.ip(), 8, 0, [0, 1, 0, 2], b"")
        );
    }
}
