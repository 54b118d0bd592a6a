//! The real server's side of tunnel forwarding: check the outer headers of an IPIP, GUE or GRE
//! packet and find the client's packet inside (what `lb-decap` writes into a TUN device).
//!
//! A socket hands over a different layer depending on its kind, so there is one entry point
//! per layer, each returning the inner packet's place in the buffer it was given:
//!
//! | what the caller holds | entry point |
//! |---|---|
//! | a whole outer IP packet (an IPv4 raw socket, a capture) | [`decap_packet`] |
//! | a UDP payload (a UDP socket bound to the GUE port) | [`decap_gue`] |
//! | a GRE header and payload (an IPv6 raw socket for protocol 47) | [`decap_gre`] |
//! | an IPIP payload (an IPv6 raw socket for protocol 4 or 41) | [`decap_ipip`] |
//!
//! Checked, at each layer present: the outer IPv4 header checksum and lengths (IPv6: payload
//! length, no fragment; Hop-by-Hop and Destination Options headers are skipped), the UDP length
//! and its checksum when non-zero, the GUE version, C bit, flags and optional fields against
//! Hlen, the GRE flags, version and checksum when present, that the inner packet's IP version
//! is the one the tunnel announced (protocol 4 or EtherType `08 00` ↔ IPv4, 41 or `86 dd` ↔
//! IPv6) and that its length fits. Bytes after the inner packet's own length (padding) are left
//! out of the range returned; bytes after the outer packet's length are ignored.
//!
//! GUE's remote checksum offload (a private flag, `--tun-remcsum` on the director) leaves the
//! inner TCP/UDP checksum to the receiver: [`decap_gue`] completes it in place, which is why it
//! takes `&mut [u8]`.
//!
//! Nothing here allocates or panics, whatever the input: a packet is either an [`Inner`] or a
//! [`DecapError`] naming why it was refused, for a frontend's drop counters.

use core::fmt;
use core::ops::Range;

use super::{
    ETHERTYPE_IPV4, ETHERTYPE_IPV6, GRE_CSUM_HEADER_LEN, GRE_FLAG_CSUM, GRE_HEADER_LEN,
    GUE_HEADER_LEN, PROTO_GRE, PROTO_IPIP, PROTO_IPV6, PROTO_UDP,
};
use crate::checksum::{add, fold, ipv4_header_verifies, pseudo_header, verifies};

/// GUE's P flag (private flags present), in the header's 16-bit flags field.
const GUE_FLAG_PRIV: u16 = 0x0001;
/// Bytes of GUE's private flags field.
const GUE_PRIV_LEN: usize = 4;
/// The REMCSUM private flag: remote checksum offload, two 16-bit fields follow.
const GUE_PFLAG_REMCSUM: u32 = 0x8000_0000;
/// Bytes of the REMCSUM fields (csum_start, csum_offset).
const GUE_REMCSUM_LEN: usize = 4;
/// GRE flag bits 1–5 (routing, key, sequence, strict source route, recursion): RFC 2784 §2.3
/// says a receiver that does not implement RFC 1701 discards a packet with any of them set.
const GRE_FLAGS_REFUSED: u16 = 0x7c00;
/// GRE's version bits.
const GRE_VERSION: u16 = 0x0007;
/// IPv6 extension headers skipped in front of the tunnel protocol: Hop-by-Hop, Destination
/// Options.
const IPV6_HOP_BY_HOP: u8 = 0;
const IPV6_DEST_OPTS: u8 = 60;
const IPV6_FRAGMENT: u8 = 44;
/// The most extension headers skipped before a packet is refused.
const IPV6_MAX_EXT: usize = 4;

/// The inner packet's IP version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InnerKind {
    /// IPv4 (IP protocol 4, EtherType `08 00`).
    Ipv4,
    /// IPv6 (IP protocol 41, EtherType `86 dd`).
    Ipv6,
}

/// Which encapsulation carried a packet (`--tun-type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TunnelType {
    /// IP in IP: protocol 4 or 41.
    Ipip,
    /// Generic UDP Encapsulation, version 0.
    Gue,
    /// GRE (RFC 2784).
    Gre,
}

impl TunnelType {
    /// `--tun-type`'s value: `ipip`, `gue` or `gre`.
    pub const fn name(self) -> &'static str {
        match self {
            TunnelType::Ipip => "ipip",
            TunnelType::Gue => "gue",
            TunnelType::Gre => "gre",
        }
    }
}

/// Where the inner packet is, in the buffer handed to the decoder, and what carried it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Inner {
    /// Offset of the inner packet's first byte.
    pub start: usize,
    /// The inner packet's length (its own IP header's length; trailing bytes left out).
    pub len: usize,
    /// The inner packet's IP version.
    pub kind: InnerKind,
    /// The encapsulation that carried it.
    pub tunnel: TunnelType,
    /// Whether its TCP/UDP checksum was completed here (GUE remote checksum offload).
    pub remcsum: bool,
}

impl Inner {
    /// The inner packet's byte range in the buffer handed to the decoder.
    pub const fn range(&self) -> Range<usize> {
        self.start..self.start + self.len
    }

    /// Moves the range `by` bytes further into an enclosing buffer.
    const fn shifted(mut self, by: usize) -> Inner {
        self.start += by;
        self
    }
}

/// Why a tunnelled packet was refused: one name per reason, for counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DecapError {
    /// The buffer ends before a header does, or before the length a header announces.
    Truncated,
    /// The outer packet is neither IPv4 nor IPv6.
    OuterVersion,
    /// The outer IP header's lengths are impossible (IHL below 5, total length below the
    /// header, an IPv6 jumbogram).
    OuterLength,
    /// The outer IPv4 header checksum does not verify.
    OuterChecksum,
    /// The outer packet is a fragment (raw sockets see reassembled packets; captures may not).
    Fragment,
    /// The outer protocol is not a tunnel's (4, 41, 47, 17) or an IPv6 extension header
    /// other than Hop-by-Hop and Destination Options comes first.
    Protocol,
    /// UDP to another port than the GUE port.
    UdpPort,
    /// The UDP length field is below 8 or beyond the IP payload.
    UdpLength,
    /// A non-zero UDP checksum does not verify.
    UdpChecksum,
    /// GUE version other than 0.
    GueVersion,
    /// A GUE control message (C bit set).
    GueControl,
    /// GUE flags or private flags this decoder does not know (their fields' lengths are
    /// unknown).
    GueFlags,
    /// The optional fields the flags announce do not fit in Hlen.
    GueHlen,
    /// GUE's protocol is neither 4 nor 41.
    GueProtocol,
    /// Remote checksum offload's csum_start/csum_offset point outside the inner packet's
    /// payload (into its IP header or past its end), or at an odd offset.
    Remcsum,
    /// GRE version other than 0.
    GreVersion,
    /// GRE routing, key, sequence or recursion bits set.
    GreFlags,
    /// GRE's EtherType is neither IPv4 nor IPv6.
    GreProtocol,
    /// The GRE checksum does not verify.
    GreChecksum,
    /// The inner packet's IP version is not the one the tunnel announced.
    InnerVersion,
    /// The inner packet's own length is below its header or beyond the bytes carried.
    InnerLength,
}

impl DecapError {
    /// Every reason, in declaration order ([`index`](Self::index) is the position here): a
    /// frontend's counter array has one slot per entry.
    pub const ALL: [DecapError; 21] = [
        DecapError::Truncated,
        DecapError::OuterVersion,
        DecapError::OuterLength,
        DecapError::OuterChecksum,
        DecapError::Fragment,
        DecapError::Protocol,
        DecapError::UdpPort,
        DecapError::UdpLength,
        DecapError::UdpChecksum,
        DecapError::GueVersion,
        DecapError::GueControl,
        DecapError::GueFlags,
        DecapError::GueHlen,
        DecapError::GueProtocol,
        DecapError::Remcsum,
        DecapError::GreVersion,
        DecapError::GreFlags,
        DecapError::GreProtocol,
        DecapError::GreChecksum,
        DecapError::InnerVersion,
        DecapError::InnerLength,
    ];

    /// The reason's position in [`ALL`](Self::ALL).
    pub const fn index(self) -> usize {
        self as usize
    }

    /// A short snake_case name, for counters and metrics labels.
    pub const fn name(self) -> &'static str {
        match self {
            DecapError::Truncated => "truncated",
            DecapError::OuterVersion => "outer_version",
            DecapError::OuterLength => "outer_length",
            DecapError::OuterChecksum => "outer_checksum",
            DecapError::Fragment => "fragment",
            DecapError::Protocol => "protocol",
            DecapError::UdpPort => "udp_port",
            DecapError::UdpLength => "udp_length",
            DecapError::UdpChecksum => "udp_checksum",
            DecapError::GueVersion => "gue_version",
            DecapError::GueControl => "gue_control",
            DecapError::GueFlags => "gue_flags",
            DecapError::GueHlen => "gue_hlen",
            DecapError::GueProtocol => "gue_protocol",
            DecapError::Remcsum => "gue_remcsum",
            DecapError::GreVersion => "gre_version",
            DecapError::GreFlags => "gre_flags",
            DecapError::GreProtocol => "gre_protocol",
            DecapError::GreChecksum => "gre_checksum",
            DecapError::InnerVersion => "inner_version",
            DecapError::InnerLength => "inner_length",
        }
    }
}

impl fmt::Display for DecapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self {
            DecapError::Truncated => "the packet ends inside a header or before its length",
            DecapError::OuterVersion => "the outer packet is neither IPv4 nor IPv6",
            DecapError::OuterLength => "the outer IP header's lengths are impossible",
            DecapError::OuterChecksum => "the outer IPv4 header checksum does not verify",
            DecapError::Fragment => "the outer packet is a fragment",
            DecapError::Protocol => "the outer protocol is not IPIP, GRE or UDP",
            DecapError::UdpPort => "UDP to another port than the GUE port",
            DecapError::UdpLength => "the UDP length is impossible",
            DecapError::UdpChecksum => "the UDP checksum does not verify",
            DecapError::GueVersion => "GUE version other than 0",
            DecapError::GueControl => "a GUE control message",
            DecapError::GueFlags => "unknown GUE flags",
            DecapError::GueHlen => "GUE optional fields longer than Hlen",
            DecapError::GueProtocol => "GUE carries neither IPv4 nor IPv6",
            DecapError::Remcsum => "GUE remote checksum offset outside the inner packet",
            DecapError::GreVersion => "GRE version other than 0",
            DecapError::GreFlags => "GRE routing, key or sequence bits set",
            DecapError::GreProtocol => "GRE carries neither IPv4 nor IPv6",
            DecapError::GreChecksum => "the GRE checksum does not verify",
            DecapError::InnerVersion => "the inner IP version is not the one announced",
            DecapError::InnerLength => "the inner packet's length does not fit",
        };
        f.write_str(what)
    }
}

impl core::error::Error for DecapError {}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes([
        *b.get(at)?,
        *b.get(at + 1)?,
        *b.get(at + 2)?,
        *b.get(at + 3)?,
    ]))
}

/// Checks and strips the outer headers of a whole tunnelled IP packet: IPv4 or IPv6, then IPIP
/// (protocol 4 or 41), GRE (47) or GUE (UDP to `gue_port`; `None`: UDP is refused with
/// [`DecapError::UdpPort`]).
///
/// Call it with what an IPv4 raw socket (protocol 4, 41 or 47) returns or with a captured IP
/// packet. The range returned is within `buf`; `buf` changes only where GUE remote checksum
/// offload completes the inner checksum.
pub fn decap_packet(buf: &mut [u8], gue_port: Option<u16>) -> Result<Inner, DecapError> {
    let mut addrs = [0u8; 32];
    let (v6, proto, start, end) = match buf.first().map(|b| b >> 4) {
        Some(4) => outer_v4(buf, &mut addrs)?,
        Some(6) => outer_v6(buf, &mut addrs)?,
        Some(_) => return Err(DecapError::OuterVersion),
        None => return Err(DecapError::Truncated),
    };
    let payload = buf.get_mut(start..end).ok_or(DecapError::Truncated)?;
    let inner = match proto {
        PROTO_IPIP | PROTO_IPV6 => decap_ipip(payload, proto)?,
        PROTO_GRE => decap_gre(payload)?,
        PROTO_UDP => {
            let alen = if v6 { 16 } else { 4 };
            let (src, dst) = (&addrs[..alen], &addrs[16..16 + alen]);
            let udp_start = 8;
            let gue_start = udp(payload, src, dst, gue_port)?;
            let udp_payload = payload
                .get_mut(udp_start..gue_start)
                .ok_or(DecapError::Truncated)?;
            decap_gue(udp_payload)?.shifted(udp_start)
        }
        _ => return Err(DecapError::Protocol),
    };
    Ok(inner.shifted(start))
}

/// The outer IPv4 header: (IPv6?, protocol, payload start, payload end), addresses into
/// `addrs[0..4]` and `addrs[16..20]`.
fn outer_v4(buf: &[u8], addrs: &mut [u8; 32]) -> Result<(bool, u8, usize, usize), DecapError> {
    let hdr = buf.get(..20).ok_or(DecapError::Truncated)?;
    let ihl = usize::from(hdr[0] & 0x0f) * 4;
    if ihl < 20 {
        return Err(DecapError::OuterLength);
    }
    let hdr = buf.get(..ihl).ok_or(DecapError::Truncated)?;
    if !ipv4_header_verifies(hdr) {
        return Err(DecapError::OuterChecksum);
    }
    let total = usize::from(u16::from_be_bytes([hdr[2], hdr[3]]));
    if total < ihl {
        return Err(DecapError::OuterLength);
    }
    if total > buf.len() {
        return Err(DecapError::Truncated);
    }
    if u16::from_be_bytes([hdr[6], hdr[7]]) & 0x3fff != 0 {
        return Err(DecapError::Fragment);
    }
    addrs[..4].copy_from_slice(&hdr[12..16]);
    addrs[16..20].copy_from_slice(&hdr[16..20]);
    Ok((false, hdr[9], ihl, total))
}

/// The outer IPv6 header and any Hop-by-Hop / Destination Options headers after it.
fn outer_v6(buf: &[u8], addrs: &mut [u8; 32]) -> Result<(bool, u8, usize, usize), DecapError> {
    let hdr = buf.get(..40).ok_or(DecapError::Truncated)?;
    let plen = usize::from(u16::from_be_bytes([hdr[4], hdr[5]]));
    if plen == 0 {
        return Err(DecapError::OuterLength);
    }
    let end = 40 + plen;
    if end > buf.len() {
        return Err(DecapError::Truncated);
    }
    addrs[..16].copy_from_slice(&hdr[8..24]);
    addrs[16..].copy_from_slice(&hdr[24..40]);
    let (mut next, mut at) = (hdr[6], 40);
    for _ in 0..IPV6_MAX_EXT {
        match next {
            IPV6_HOP_BY_HOP | IPV6_DEST_OPTS => {
                let (Some(&nh), Some(&len)) = (buf.get(at), buf.get(at + 1)) else {
                    return Err(DecapError::Truncated);
                };
                at += (usize::from(len) + 1) * 8;
                if at > end {
                    return Err(DecapError::Truncated);
                }
                next = nh;
            }
            IPV6_FRAGMENT => return Err(DecapError::Fragment),
            _ => return Ok((true, next, at, end)),
        }
    }
    Err(DecapError::Protocol)
}

/// Checks the UDP header at the start of `l4` (the IP payload): destination port, length,
/// checksum when non-zero. Returns where the UDP payload ends.
fn udp(l4: &[u8], src: &[u8], dst: &[u8], gue_port: Option<u16>) -> Result<usize, DecapError> {
    let hdr = l4.get(..8).ok_or(DecapError::Truncated)?;
    if gue_port != Some(u16::from_be_bytes([hdr[2], hdr[3]])) {
        return Err(DecapError::UdpPort);
    }
    let len = usize::from(u16::from_be_bytes([hdr[4], hdr[5]]));
    if len < 8 || len > l4.len() {
        return Err(DecapError::UdpLength);
    }
    // A zero checksum is "none": IPv4 always, IPv6 for tunnels (RFC 6935), as IPVS sends
    // GUE with --tun-nocsum.
    if u16::from_be_bytes([hdr[6], hdr[7]]) != 0 {
        let sum = pseudo_header(src, dst, PROTO_UDP, len as u32);
        if !verifies(add(sum, &l4[..len])) {
            return Err(DecapError::UdpChecksum);
        }
    }
    Ok(len)
}

/// Checks and strips a GUE header (version 0) at the start of `payload`, the payload of a UDP
/// datagram to the GUE port (what a UDP socket returns), and completes the inner checksum in
/// place when the header asks for remote checksum offload.
///
/// Known options: the P flag with the REMCSUM private flag; other flags are refused (their
/// fields' lengths are unknown), as are optional fields longer than Hlen. Extra optional bytes
/// within Hlen are skipped.
pub fn decap_gue(payload: &mut [u8]) -> Result<Inner, DecapError> {
    let hdr = payload.get(..GUE_HEADER_LEN).ok_or(DecapError::Truncated)?;
    if hdr[0] >> 6 != 0 {
        return Err(DecapError::GueVersion);
    }
    if hdr[0] & 0x20 != 0 {
        return Err(DecapError::GueControl);
    }
    let optlen = usize::from(hdr[0] & 0x1f) * 4;
    let proto = hdr[1];
    let flags = u16::from_be_bytes([hdr[2], hdr[3]]);
    let start = GUE_HEADER_LEN + optlen;
    let opts = payload
        .get(GUE_HEADER_LEN..start)
        .ok_or(DecapError::Truncated)?;
    if flags & !GUE_FLAG_PRIV != 0 {
        return Err(DecapError::GueFlags);
    }
    let mut remcsum = None;
    if flags & GUE_FLAG_PRIV != 0 {
        let pflags = be32(opts, 0).ok_or(DecapError::GueHlen)?;
        if pflags & !GUE_PFLAG_REMCSUM != 0 {
            return Err(DecapError::GueFlags);
        }
        if pflags & GUE_PFLAG_REMCSUM != 0 {
            if opts.len() < GUE_PRIV_LEN + GUE_REMCSUM_LEN {
                return Err(DecapError::GueHlen);
            }
            let csum_start = be16(opts, GUE_PRIV_LEN).ok_or(DecapError::GueHlen)?;
            let csum_offset = be16(opts, GUE_PRIV_LEN + 2).ok_or(DecapError::GueHlen)?;
            remcsum = Some((usize::from(csum_start), usize::from(csum_offset)));
        }
    }
    let kind = match proto {
        PROTO_IPIP => InnerKind::Ipv4,
        PROTO_IPV6 => InnerKind::Ipv6,
        _ => return Err(DecapError::GueProtocol),
    };
    let rest = payload.get_mut(start..).ok_or(DecapError::Truncated)?;
    let len = inner_len(rest, kind)?;
    if let Some((csum_start, csum_offset)) = remcsum {
        let inner = rest.get_mut(..len).ok_or(DecapError::InnerLength)?;
        // The L4 header starts after the inner IP header, never inside it.
        let ip_header = match kind {
            InnerKind::Ipv4 => inner.first().map_or(20, |b| usize::from(b & 0x0f) * 4),
            InnerKind::Ipv6 => 40,
        };
        if csum_start < ip_header {
            return Err(DecapError::Remcsum);
        }
        complete_checksum(inner, csum_start, csum_offset)?;
    }
    Ok(Inner {
        start,
        len,
        kind,
        tunnel: TunnelType::Gue,
        remcsum: remcsum.is_some(),
    })
}

/// Remote checksum offload: the 16-bit field at `offset` holds the pseudo-header sum; the
/// checksum is the complement of the sum of `inner[start..]`, that field included.
fn complete_checksum(inner: &mut [u8], start: usize, offset: usize) -> Result<(), DecapError> {
    let fits =
        start % 2 == 0 && offset >= start && (offset - start) % 2 == 0 && offset + 2 <= inner.len();
    if !fits {
        return Err(DecapError::Remcsum);
    }
    let covered = inner.get(start..).ok_or(DecapError::Remcsum)?;
    // 0 and 0xffff are the same sum in ones' complement; 0 would mean "no checksum" to UDP.
    let csum = match !fold(add(0, covered)) {
        0 => 0xffff,
        c => c,
    };
    let field = inner
        .get_mut(offset..offset + 2)
        .ok_or(DecapError::Remcsum)?;
    field.copy_from_slice(&csum.to_be_bytes());
    Ok(())
}

/// Checks and strips a GRE header (RFC 2784: no key, no sequence number, a checksum or not) at
/// the start of `payload` (what an IPv6 raw socket for protocol 47 returns). The checksum, when
/// present, covers all of `payload`.
pub fn decap_gre(payload: &[u8]) -> Result<Inner, DecapError> {
    let hdr = payload.get(..GRE_HEADER_LEN).ok_or(DecapError::Truncated)?;
    let flags = u16::from_be_bytes([hdr[0], hdr[1]]);
    if flags & GRE_VERSION != 0 {
        return Err(DecapError::GreVersion);
    }
    if flags & GRE_FLAGS_REFUSED != 0 {
        return Err(DecapError::GreFlags);
    }
    let kind = match u16::from_be_bytes([hdr[2], hdr[3]]) {
        ETHERTYPE_IPV4 => InnerKind::Ipv4,
        ETHERTYPE_IPV6 => InnerKind::Ipv6,
        _ => return Err(DecapError::GreProtocol),
    };
    let start = if flags & GRE_FLAG_CSUM != 0 {
        if payload.len() < GRE_CSUM_HEADER_LEN {
            return Err(DecapError::Truncated);
        }
        if !verifies(add(0, payload)) {
            return Err(DecapError::GreChecksum);
        }
        GRE_CSUM_HEADER_LEN
    } else {
        GRE_HEADER_LEN
    };
    let len = inner_len(payload.get(start..).unwrap_or(&[]), kind)?;
    Ok(Inner {
        start,
        len,
        kind,
        tunnel: TunnelType::Gre,
        remcsum: false,
    })
}

/// Checks an IPIP payload, the inner packet itself, against the outer protocol `proto` (4 or
/// 41; anything else is [`DecapError::Protocol`]). What an IPv6 raw socket for protocol 4 or
/// 41 returns.
pub fn decap_ipip(payload: &[u8], proto: u8) -> Result<Inner, DecapError> {
    let kind = match proto {
        PROTO_IPIP => InnerKind::Ipv4,
        PROTO_IPV6 => InnerKind::Ipv6,
        _ => return Err(DecapError::Protocol),
    };
    let len = inner_len(payload, kind)?;
    Ok(Inner {
        start: 0,
        len,
        kind,
        tunnel: TunnelType::Ipip,
        remcsum: false,
    })
}

/// The inner packet's own length, after checking its version against `kind` and that its
/// header and length fit in `bytes`.
fn inner_len(bytes: &[u8], kind: InnerKind) -> Result<usize, DecapError> {
    let version = bytes.first().ok_or(DecapError::InnerLength)? >> 4;
    match (kind, version) {
        (InnerKind::Ipv4, 4) => {
            let ihl = usize::from(bytes[0] & 0x0f) * 4;
            let total = usize::from(be16(bytes, 2).ok_or(DecapError::InnerLength)?);
            if bytes.len() < 20 || ihl < 20 || total < ihl || total > bytes.len() {
                return Err(DecapError::InnerLength);
            }
            Ok(total)
        }
        (InnerKind::Ipv6, 6) => {
            let plen = usize::from(be16(bytes, 4).ok_or(DecapError::InnerLength)?);
            let total = 40 + plen;
            if total > bytes.len() {
                return Err(DecapError::InnerLength);
            }
            Ok(total)
        }
        _ => Err(DecapError::InnerVersion),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lb_testkit::pkt;
    use std::net::{IpAddr, SocketAddr};
    use std::vec;
    use std::vec::Vec;

    /// The worked example's inner packet: a TCP segment 10.0.0.1:40000 → 10.30.0.10:80 with
    /// "GET / HTTP/1.0\r\n\r\n" (58 bytes).
    const INNER_HEX: &str = "4500003a1c4640003f060b500a0000010a1e000a9c4000506b8b4568327b23c7\
                             501801f617360000474554202f20485454502f312e300d0a0d0a";
    const DIRECTOR: [u8; 4] = [10, 20, 0, 1];
    const SERVER: [u8; 4] = [10, 20, 1, 2];
    const DIRECTOR6: [u8; 16] = [0xfd, 0, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
    const SERVER6: [u8; 16] = [0xfd, 0, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
    const TUN_PORT: u16 = 6080;
    const SPORT: u16 = 54321;

    fn hex(s: &str) -> Vec<u8> {
        let s: Vec<u8> = s.bytes().filter(u8::is_ascii_hexdigit).collect();
        s.chunks(2)
            .map(|c| u8::from_str_radix(core::str::from_utf8(c).unwrap(), 16).unwrap())
            .collect()
    }

    fn inner() -> Vec<u8> {
        hex(INNER_HEX)
    }

    /// The checksum field value over `data` (lb-testkit's own sum, not lb-core's).
    fn csum(acc: u64, data: &[u8]) -> u16 {
        !pkt::fold(pkt::sum(acc, data))
    }

    fn pseudo(src: &[u8], dst: &[u8], proto: u8, len: usize) -> u64 {
        pkt::sum(pkt::sum(0, src), dst) + u64::from(proto) + len as u64
    }

    /// An outer IPv4 header as IPVS writes it (id 0, DF, TTL 63) in front of `payload`.
    fn ipv4(proto: u8, payload: &[u8]) -> Vec<u8> {
        let mut p = vec![0x45, 0];
        p.extend_from_slice(&(20 + payload.len() as u16).to_be_bytes());
        p.extend_from_slice(&[0, 0, 0x40, 0, 63, proto, 0, 0]);
        p.extend_from_slice(&DIRECTOR);
        p.extend_from_slice(&SERVER);
        let c = csum(0, &p);
        p[10..12].copy_from_slice(&c.to_be_bytes());
        p.extend_from_slice(payload);
        p
    }

    /// An outer IPv6 header (hop limit 63), optionally with extension headers `ext` first.
    fn ipv6(proto: u8, ext: &[u8], payload: &[u8]) -> Vec<u8> {
        let mut p = vec![0x60, 0, 0, 0];
        p.extend_from_slice(&((ext.len() + payload.len()) as u16).to_be_bytes());
        p.push(if ext.is_empty() {
            proto
        } else {
            IPV6_DEST_OPTS
        });
        p.push(63);
        p.extend_from_slice(&DIRECTOR6);
        p.extend_from_slice(&SERVER6);
        p.extend_from_slice(ext);
        p.extend_from_slice(payload);
        p
    }

    /// UDP to the tunnel port around `payload`, its checksum over `src`/`dst` when `with_csum`.
    fn udp(src: &[u8], dst: &[u8], payload: &[u8], with_csum: bool) -> Vec<u8> {
        let len = 8 + payload.len();
        let mut u = Vec::new();
        u.extend_from_slice(&SPORT.to_be_bytes());
        u.extend_from_slice(&TUN_PORT.to_be_bytes());
        u.extend_from_slice(&(len as u16).to_be_bytes());
        u.extend_from_slice(&[0, 0]);
        u.extend_from_slice(payload);
        if with_csum {
            let c = match csum(pseudo(src, dst, 17, len), &u) {
                0 => 0xffff,
                c => c,
            };
            u[6..8].copy_from_slice(&c.to_be_bytes());
        }
        u
    }

    fn gue(proto: u8, inner: &[u8]) -> Vec<u8> {
        let mut g = vec![0, proto, 0, 0];
        g.extend_from_slice(inner);
        g
    }

    fn gre(ethertype: u16, inner: &[u8], with_csum: bool) -> Vec<u8> {
        let mut g = vec![if with_csum { 0x80 } else { 0 }, 0];
        g.extend_from_slice(&ethertype.to_be_bytes());
        if with_csum {
            g.extend_from_slice(&[0; 4]);
        }
        g.extend_from_slice(inner);
        if with_csum {
            let c = csum(0, &g);
            g[4..6].copy_from_slice(&c.to_be_bytes());
        }
        g
    }

    fn inner6() -> Vec<u8> {
        let c: SocketAddr = "[fd00:40::2]:40000".parse().unwrap();
        let v: SocketAddr = "[fd00:30::10]:53".parse().unwrap();
        pkt::udp(c, v, b"query")
    }

    fn expect(inner: Inner, at: usize, len: usize, kind: InnerKind, tunnel: TunnelType) {
        assert_eq!(
            (inner.start, inner.len, inner.kind, inner.tunnel),
            (at, len, kind, tunnel)
        );
    }

    #[test]
    fn the_worked_example_bytes_are_what_the_builders_make() {
        let i = inner();
        assert_eq!(i.len(), 58);
        assert!(pkt::checksums_ok(&i), "the inner packet's own checksums");
        let g = ipv4(17, &udp(&DIRECTOR, &SERVER, &gue(4, &i), false));
        assert_eq!(
            g[..32],
            hex("4500005a000040003f1126690a1400010a140102 d43117c000460000 00040000")[..]
        );
        let g = udp(&DIRECTOR, &SERVER, &gue(4, &i), true);
        assert_eq!(g[..8], hex("d43117c000461297")[..]);
        let p = ipv4(4, &i);
        assert_eq!(p[..20], hex("4500004e000040003f0426820a1400010a140102")[..]);
        let p = ipv4(47, &gre(0x0800, &i, false));
        assert_eq!(
            p[..24],
            hex("45000052000040003f2f26530a1400010a140102 00000800")[..]
        );
        let p = ipv4(47, &gre(0x0800, &i, true));
        assert_eq!(
            p[..28],
            hex("45000056000040003f2f264f0a1400010a140102 800008008c540000")[..]
        );
    }

    #[test]
    fn ipip_over_ipv4() {
        let i = inner();
        let mut p = ipv4(4, &i);
        let got = decap_packet(&mut p, None).unwrap();
        expect(got, 20, 58, InnerKind::Ipv4, TunnelType::Ipip);
        assert_eq!(p[got.range()], i[..]);
        assert!(!got.remcsum);
        // IPv6 inside IPv4: protocol 41.
        let i6 = inner6();
        let mut p = ipv4(41, &i6);
        let got = decap_packet(&mut p, None).unwrap();
        expect(got, 20, i6.len(), InnerKind::Ipv6, TunnelType::Ipip);
        assert_eq!(p[got.range()], i6[..]);
    }

    #[test]
    fn gue_over_ipv4_without_and_with_udp_checksum() {
        let i = inner();
        for with_csum in [false, true] {
            let mut p = ipv4(17, &udp(&DIRECTOR, &SERVER, &gue(4, &i), with_csum));
            let got = decap_packet(&mut p, Some(TUN_PORT)).unwrap();
            expect(got, 32, 58, InnerKind::Ipv4, TunnelType::Gue);
            assert_eq!(p[got.range()], i[..]);
            assert_eq!(
                decap_packet(&mut p, Some(TUN_PORT + 1)),
                Err(DecapError::UdpPort)
            );
            assert_eq!(decap_packet(&mut p, None), Err(DecapError::UdpPort));
        }
        // What a UDP socket returns: the GUE header and the inner packet.
        let mut g = gue(4, &i);
        let got = decap_gue(&mut g).unwrap();
        expect(got, 4, 58, InnerKind::Ipv4, TunnelType::Gue);
        assert_eq!(g[got.range()], i[..]);
    }

    #[test]
    fn gre_over_ipv4_without_and_with_checksum() {
        let i = inner();
        for (with_csum, at) in [(false, 24), (true, 28)] {
            let mut p = ipv4(47, &gre(0x0800, &i, with_csum));
            let got = decap_packet(&mut p, None).unwrap();
            expect(got, at, 58, InnerKind::Ipv4, TunnelType::Gre);
            assert_eq!(p[got.range()], i[..]);
            let g = gre(0x0800, &i, with_csum);
            let got = decap_gre(&g).unwrap();
            assert_eq!(g[got.range()], i[..]);
        }
        let i6 = inner6();
        let g = gre(0x86dd, &i6, true);
        let got = decap_gre(&g).unwrap();
        expect(got, 8, i6.len(), InnerKind::Ipv6, TunnelType::Gre);
    }

    #[test]
    fn every_tunnel_over_ipv6() {
        let (i, i6) = (inner(), inner6());
        let cases: [(Vec<u8>, Vec<u8>, TunnelType, InnerKind); 5] = [
            (
                ipv6(4, &[], &i),
                i.clone(),
                TunnelType::Ipip,
                InnerKind::Ipv4,
            ),
            (
                ipv6(41, &[], &i6),
                i6.clone(),
                TunnelType::Ipip,
                InnerKind::Ipv6,
            ),
            (
                ipv6(47, &[], &gre(0x86dd, &i6, true)),
                i6.clone(),
                TunnelType::Gre,
                InnerKind::Ipv6,
            ),
            (
                ipv6(17, &[], &udp(&DIRECTOR6, &SERVER6, &gue(41, &i6), true)),
                i6.clone(),
                TunnelType::Gue,
                InnerKind::Ipv6,
            ),
            // IPVS's --tun-nocsum sends a zero UDP checksum over IPv6 too (RFC 6935).
            (
                ipv6(17, &[], &udp(&DIRECTOR6, &SERVER6, &gue(4, &i), false)),
                i.clone(),
                TunnelType::Gue,
                InnerKind::Ipv4,
            ),
        ];
        for (mut p, want, tunnel, kind) in cases {
            let got = decap_packet(&mut p, Some(TUN_PORT)).unwrap();
            expect(got, got.start, want.len(), kind, tunnel);
            assert_eq!(p[got.range()], want[..], "{tunnel:?} {kind:?}");
        }
        // A Destination Options header (8 bytes: next header, length 0, PadN) is skipped.
        let mut opts = vec![4, 0, 1, 4, 0, 0, 0, 0];
        let mut p = ipv6(4, &opts, &i);
        let got = decap_packet(&mut p, None).unwrap();
        expect(got, 48, 58, InnerKind::Ipv4, TunnelType::Ipip);
        // A Fragment header is refused.
        opts[..2].copy_from_slice(&[4, 0]);
        let mut p = ipv6(4, &opts, &i);
        p[6] = IPV6_FRAGMENT;
        assert_eq!(decap_packet(&mut p, None), Err(DecapError::Fragment));
        // Other extension headers (Routing) are not a tunnel.
        p[6] = 43;
        assert_eq!(decap_packet(&mut p, None), Err(DecapError::Protocol));
        // More than IPV6_MAX_EXT option headers.
        let chain: Vec<u8> = (0..5)
            .flat_map(|k| [if k < 4 { 60 } else { 4 }, 0, 1, 4, 0, 0, 0, 0])
            .collect();
        let mut p = ipv6(4, &chain, &i);
        assert_eq!(decap_packet(&mut p, None), Err(DecapError::Protocol));
        // The IPv6 raw socket's view: no IP header.
        let got = decap_ipip(&i6, 41).unwrap();
        expect(got, 0, i6.len(), InnerKind::Ipv6, TunnelType::Ipip);
        assert_eq!(decap_ipip(&i6, 47), Err(DecapError::Protocol));
    }

    #[test]
    fn padding_after_either_packet_is_left_out() {
        let i = inner();
        // Ethernet padding after the outer packet: ignored.
        let mut p = ipv4(4, &i);
        p.extend_from_slice(&[0xee; 6]);
        let got = decap_packet(&mut p, None).unwrap();
        assert_eq!(p[got.range()], i[..]);
        // Bytes after the inner packet inside the outer one: not part of the range.
        let mut padded = i.clone();
        padded.extend_from_slice(&[0xee; 3]);
        let mut p = ipv4(47, &gre(0x0800, &padded, true));
        let got = decap_packet(&mut p, None).unwrap();
        assert_eq!(p[got.range()], i[..]);
    }

    /// One mutation of a valid packet and the reason it must be refused with.
    fn refused(mut p: Vec<u8>, port: Option<u16>, change: impl Fn(&mut Vec<u8>), want: DecapError) {
        change(&mut p);
        assert_eq!(decap_packet(&mut p, port), Err(want), "{}", want.name());
    }

    /// Sets byte `at` of the outer IPv4 header to `value` and recomputes its checksum.
    fn rewrite(p: &mut [u8], at: usize, value: u8) {
        p[at] = value;
        p[10..12].copy_from_slice(&[0, 0]);
        let c = csum(0, &p[..20]);
        p[10..12].copy_from_slice(&c.to_be_bytes());
    }

    #[test]
    fn every_outer_error() {
        use DecapError::*;
        let i = inner();
        let ipip = ipv4(4, &i);
        let port = Some(TUN_PORT);
        refused(ipip.clone(), None, |p| p.clear(), Truncated);
        refused(ipip.clone(), None, |p| p[0] = 0x55, OuterVersion);
        refused(ipip.clone(), None, |p| p[0] = 0x44, OuterLength);
        refused(ipip.clone(), None, |p| p[8] = 1, OuterChecksum);
        refused(ipip.clone(), None, |p| rewrite(p, 3, 19), OuterLength);
        refused(ipip.clone(), None, |p| rewrite(p, 3, 0xff), Truncated);
        refused(ipip.clone(), None, |p| rewrite(p, 6, 0x20), Fragment);
        refused(ipip.clone(), None, |p| rewrite(p, 7, 1), Fragment);
        refused(ipip.clone(), None, |p| rewrite(p, 9, 6), Protocol);
        refused(ipip.clone(), None, |p| rewrite(p, 9, 41), InnerVersion);
        refused(ipip.clone(), None, |p| p[20] = 0x65, InnerVersion);
        // Inner total length beyond the bytes carried, or below its header.
        refused(ipip.clone(), None, |p| p[23] = 59, InnerLength);
        refused(ipip.clone(), None, |p| p[23] = 19, InnerLength);
        refused(ipip.clone(), None, |p| p[20] = 0x44, InnerLength);
        refused(ipv4(4, &[]), None, |_| {}, InnerLength);
        refused(ipv6(4, &[], &i), None, |p| p[4..6].fill(0), OuterLength);

        let g = ipv4(17, &udp(&DIRECTOR, &SERVER, &gue(4, &i), true));
        refused(
            g.clone(),
            port,
            |p| p[24..26].copy_from_slice(&[0, 7]),
            UdpLength,
        );
        refused(
            g.clone(),
            port,
            |p| p[24..26].copy_from_slice(&[1, 0]),
            UdpLength,
        );
        refused(g.clone(), port, |p| p[40] ^= 0x10, UdpChecksum);
        refused(g.clone(), port, |p| rewrite(p, 3, 27), Truncated);
        // The same corruption without a UDP checksum reaches the inner packet.
        let g0 = ipv4(17, &udp(&DIRECTOR, &SERVER, &gue(4, &i), false));
        refused(g0.clone(), port, |p| p[32] = 0x65, InnerVersion);
        // UDP length shorter than the datagram: the inner packet no longer fits.
        refused(g0.clone(), port, |p| p[25] -= 1, InnerLength);
        let v6 = ipv6(17, &[], &udp(&DIRECTOR6, &SERVER6, &gue(4, &i), true));
        refused(v6, port, |p| p[20] ^= 1, UdpChecksum);

        let gr = ipv4(47, &gre(0x0800, &i, true));
        refused(gr.clone(), None, |p| p[30] ^= 1, GreChecksum);
        refused(gr.clone(), None, |p| p[26] = 0x12, GreChecksum);
        refused(
            gr.clone(),
            None,
            |p| p[22..24].copy_from_slice(&[0x86, 0xdd]),
            GreChecksum,
        );
    }

    #[test]
    fn every_gue_error() {
        use DecapError::*;
        let i = inner();
        let g = gue(4, &i);
        let bad = |change: &dyn Fn(&mut Vec<u8>), want: DecapError| {
            let mut p = g.clone();
            change(&mut p);
            assert_eq!(decap_gue(&mut p), Err(want), "{}", want.name());
        };
        bad(&|p| p.truncate(3), Truncated);
        bad(&|p| p[0] = 0x40, GueVersion);
        bad(&|p| p[0] = 0x80, GueVersion);
        bad(&|p| p[0] = 0x20, GueControl);
        bad(&|p| p[1] = 6, GueProtocol);
        bad(&|p| p[1] = 41, InnerVersion);
        bad(&|p| p[3] = 2, GueFlags);
        bad(&|p| p[2] = 0x80, GueFlags);
        // Hlen beyond the datagram.
        bad(
            &|p| {
                p.truncate(8);
                p[0] = 2;
            },
            Truncated,
        );
        // P set with no room for the private flags.
        bad(&|p| p[3] = 1, GueHlen);
        // Unknown private flag.
        bad(
            &|p| {
                p[0] = 1;
                p[3] = 1;
                p.splice(4..4, [0, 0, 0, 1]);
            },
            GueFlags,
        );
        // REMCSUM with Hlen 1: no room for its fields.
        bad(
            &|p| {
                p[0] = 1;
                p[3] = 1;
                p.splice(4..4, [0x80, 0, 0, 0]);
            },
            GueHlen,
        );
        // An unknown-but-empty option area is skipped: Hlen 1, no flags.
        let mut p = g.clone();
        p[0] = 1;
        p.splice(4..4, [9, 9, 9, 9]);
        let got = decap_gue(&mut p).unwrap();
        assert_eq!(p[got.range()], i[..]);
    }

    #[test]
    fn every_gre_error() {
        use DecapError::*;
        let i = inner();
        let g = gre(0x0800, &i, false);
        let bad = |change: &dyn Fn(&mut Vec<u8>), want: DecapError| {
            let mut p = g.clone();
            change(&mut p);
            assert_eq!(decap_gre(&p), Err(want), "{}", want.name());
        };
        bad(&|p| p.truncate(3), Truncated);
        bad(&|p| p[1] = 1, GreVersion);
        for bit in [0x40, 0x20, 0x10, 0x08, 0x04] {
            bad(&|p| p[0] = bit, GreFlags);
        }
        bad(&|p| p[2..4].copy_from_slice(&[0x88, 0x47]), GreProtocol);
        bad(&|p| p[2..4].copy_from_slice(&[0x86, 0xdd]), InnerVersion);
        bad(&|p| p.truncate(4), InnerLength);
        // C set: the 4 checksum bytes are missing, or do not verify.
        bad(
            &|p| {
                p[0] = 0x80;
                p.truncate(6);
            },
            Truncated,
        );
        bad(&|p| p[0] = 0x80, GreChecksum);
        // Bits 6-12 are ignored on receipt (RFC 2784 §2.3).
        let mut p = g.clone();
        p[0] = 0x03;
        p[1] = 0xf8;
        assert_eq!(p[..].len() - 4, decap_gre(&p).unwrap().len);
    }

    #[test]
    fn every_reason_has_a_distinct_name_and_its_index() {
        for (k, e) in DecapError::ALL.iter().enumerate() {
            assert_eq!(e.index(), k);
            assert!(!e.name().is_empty());
            assert!(DecapError::ALL[..k].iter().all(|o| o.name() != e.name()));
            assert!(!std::format!("{e}").is_empty());
        }
    }

    /// Every variant the tests build, as (whole outer packet, GUE port).
    fn every_variant() -> Vec<(Vec<u8>, Option<u16>)> {
        let (i, i6) = (inner(), inner6());
        let p = Some(TUN_PORT);
        vec![
            (ipv4(4, &i), None),
            (ipv4(41, &i6), None),
            (ipv4(17, &udp(&DIRECTOR, &SERVER, &gue(4, &i), false)), p),
            (ipv4(17, &udp(&DIRECTOR, &SERVER, &gue(4, &i), true)), p),
            (ipv4(47, &gre(0x0800, &i, false)), None),
            (ipv4(47, &gre(0x0800, &i, true)), None),
            (ipv6(4, &[60 - 56, 0, 1, 4, 0, 0, 0, 0], &i), None),
            (
                ipv6(17, &[], &udp(&DIRECTOR6, &SERVER6, &gue(41, &i6), true)),
                p,
            ),
            (ipv6(47, &[], &gre(0x86dd, &i6, true)), None),
            (remcsum_packet(&i, 16).0, p),
        ]
    }

    #[test]
    fn every_truncation_is_refused_without_a_panic() {
        for (full, port) in every_variant() {
            let mut whole = full.clone();
            assert!(decap_packet(&mut whole, port).is_ok());
            for n in 0..full.len() {
                let mut cut = full[..n].to_vec();
                assert!(
                    decap_packet(&mut cut, port).is_err(),
                    "cut at {n} of {}",
                    full.len()
                );
                // The same bytes as each socket's layer would hand them over.
                let mut rest = full.get(20..n).unwrap_or(&[]).to_vec();
                let _ = decap_gue(&mut rest);
                let _ = decap_gre(&rest);
                let _ = decap_ipip(&rest, 4);
            }
        }
        // The payload-level entry points, cut at every length, on their own variants.
        let i = inner();
        let g = gre(0x0800, &i, true);
        let mut r = remcsum_gue(&i, 16);
        assert!(decap_gue(&mut r.clone()).is_ok());
        for n in 0..i.len() {
            assert!(decap_ipip(&i[..n], 4).is_err());
        }
        for n in 0..g.len() {
            assert!(decap_gre(&g[..n]).is_err());
        }
        for n in 0..r.len() {
            assert!(decap_gue(&mut r[..n]).is_err());
        }
    }

    /// A GUE header asking for remote checksum offload, and the inner packet with only the
    /// pseudo-header sum in its L4 checksum field at `field` (16: TCP, 6: UDP).
    fn remcsum_gue(inner: &[u8], field: usize) -> Vec<u8> {
        let mut partial = inner.to_vec();
        let ihl = usize::from(partial[0] & 0x0f) * 4;
        let l4_len = partial.len() - ihl;
        let at = ihl + field;
        let ps = pkt::fold(pseudo(
            &partial[12..16],
            &partial[16..20],
            partial[9],
            l4_len,
        ));
        partial[at..at + 2].copy_from_slice(&ps.to_be_bytes());
        let mut g = vec![2, 4, 0, 1, 0x80, 0, 0, 0];
        g.extend_from_slice(&(ihl as u16).to_be_bytes());
        g.extend_from_slice(&(at as u16).to_be_bytes());
        g.extend_from_slice(&partial);
        g
    }

    /// The worked example's GUE with remote checksum offload, as a whole IPv4 packet, and the
    /// GUE payload's length.
    fn remcsum_packet(inner: &[u8], field: usize) -> (Vec<u8>, usize) {
        let g = remcsum_gue(inner, field);
        (ipv4(17, &udp(&DIRECTOR, &SERVER, &g, true)), g.len())
    }

    #[test]
    fn remote_checksum_offload_completes_the_inner_checksum() {
        let tcp = inner();
        let client: SocketAddr = "10.0.0.1:40000".parse().unwrap();
        let vip: SocketAddr = "10.30.0.10:53".parse().unwrap();
        let udp4 = pkt::udp(client, vip, b"remote checksum offload, odd");
        for (inner, field) in [(tcp, 16), (udp4, 6)] {
            let mut g = remcsum_gue(&inner, field);
            assert_ne!(
                g[12..],
                inner[..],
                "the inner checksum is partial on the wire"
            );
            let got = decap_gue(&mut g).unwrap();
            assert!(got.remcsum);
            assert_eq!(got.start, 12);
            assert_eq!(
                g[got.range()],
                inner[..],
                "the checksum the sender would have put"
            );
            assert!(pkt::checksums_ok(&g[got.range()]));
            // And through the whole outer packet, UDP checksum (of the partial bytes) first.
            let (mut p, _) = remcsum_packet(&inner, field);
            let got = decap_packet(&mut p, Some(TUN_PORT)).unwrap();
            assert_eq!(p[got.range()], inner[..]);
        }
        // A sum that completes to 0 is written as 0xffff (UDP's "no checksum" otherwise).
        let mut zero = [0u8; 8];
        complete_checksum(&mut zero, 0, 6).unwrap();
        assert_eq!(zero[6..], [0xff, 0xff]);
    }

    #[test]
    fn remote_checksum_offsets_outside_the_inner_packet_are_refused() {
        let i = inner();
        let bad = |start: u16, offset: u16| {
            let mut g = remcsum_gue(&i, 16);
            g[8..10].copy_from_slice(&start.to_be_bytes());
            g[10..12].copy_from_slice(&offset.to_be_bytes());
            assert_eq!(
                decap_gue(&mut g),
                Err(DecapError::Remcsum),
                "{start} {offset}"
            );
        };
        bad(21, 36); // odd start
        bad(20, 37); // odd offset from start
        bad(36, 20); // offset before start
        bad(20, 57); // field past the end
        bad(20, 58);
        bad(60, 60);
        bad(0xfffe, 0xfffe);
        // Inside the inner IP header: completing would overwrite it (found by the fuzzer:
        // start 0, offset 0 rewrote the version).
        bad(0, 0);
        bad(0, 36);
        bad(18, 36);
    }

    /// Arbitrary bytes through every entry point: no panic, any accepted range within the input.
    #[test]
    fn arbitrary_bytes_never_panic() {
        use proptest::prelude::*;
        let variants = every_variant();
        let mut runner = proptest::test_runner::TestRunner::deterministic();
        let strategy = (
            0..variants.len() + 1,
            proptest::collection::vec((any::<u16>(), any::<u8>()), 0..6),
            proptest::collection::vec(any::<u8>(), 0..120),
            0usize..200,
        );
        runner
            .run(&strategy, |(pick, flips, noise, cut)| {
                let (mut p, port) = variants.get(pick).cloned().unwrap_or((noise, None));
                for (at, x) in flips {
                    if let Some(b) = p.get_mut(usize::from(at) % 200) {
                        *b ^= x;
                    }
                }
                p.truncate(p.len().saturating_sub(cut % 4));
                let n = p.len();
                let mut q = p.clone();
                if let Ok(got) = decap_packet(&mut q, port) {
                    prop_assert!(got.range().end <= n);
                }
                let each = [
                    decap_gue(&mut p.clone()),
                    decap_gre(&p),
                    decap_ipip(&p, 4),
                    decap_ipip(&p, 41),
                ];
                for got in each.into_iter().flatten() {
                    prop_assert!(got.range().end <= n);
                }
                Ok(())
            })
            .unwrap();
    }

    #[test]
    fn ipv4_addresses_of_the_example_are_its_own() {
        let i = inner();
        let (proto, _, src, dst) = pkt::split(&i).unwrap();
        assert_eq!(proto, 6);
        assert_eq!(src, "10.0.0.1".parse::<IpAddr>().unwrap());
        assert_eq!(dst, "10.30.0.10".parse::<IpAddr>().unwrap());
    }
}
