//! TUN offloads without the I/O: the `virtio_net_hdr` a TUN device opened with `IFF_VNET_HDR`
//! puts in front of every packet, and what a frontend does in software with the packets the
//! kernel then hands over (docs/offloads.md).
//!
//! With `TUNSETOFFLOAD` (`TUN_F_CSUM`, `TUN_F_TSO4`, `TUN_F_TSO6`, `TUN_F_TSO_ECN`) the kernel
//! hands over, and takes back,
//! * packets whose TCP/UDP checksum is **partial** ([`VnetHdr::F_NEEDS_CSUM`]): the field at
//!   `csum_start + csum_offset` holds the folded sum of the pseudo-header alone, and whoever
//!   sends the packet sums from `csum_start` to the end and stores the complement there;
//! * TCP packets of up to 64 KB to be **segmented** ([`VnetHdr::GSO_TCPV4`],
//!   [`VnetHdr::GSO_TCPV6`]) into segments of at most `gso_size` payload bytes, and, on kernels
//!   with USO (6.2 and later, where lb-tun's device asks for it), UDP packets to be cut into
//!   datagrams of `gso_size` bytes ([`VnetHdr::GSO_UDP_L4`]).
//!
//! lb-core follows a partial checksum through NAT ([`lb_core::Packet::csum_partial`]);
//! [`prepare_for_balancer`] says whether it may be told, completing the checksum here when not.
//! [`complete_checksum`] does what the device would do; [`segment`] does the kernel's TSO
//! (`tcp_gso_segment`) and USO (`__udp_gso_segment`) into a caller buffer, one segment at a
//! time, allocating nothing.
//!
//! Not supported: UDP fragmentation offload (`GSO_UDP`), which [`segment`] refuses (the device
//! is never offered it: `TUN_F_UFO` stays off); IPv6 extension headers and IPv6 jumbograms in
//! a GSO packet (refused); the urgent pointer of a segmented packet is copied, not adjusted
//! per segment.

use core::fmt;

use lb_core::checksum;

/// Why a virtio header or the packet behind it cannot be used. The packet is left as it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum OffloadError {
    /// Fewer than [`VnetHdr::LEN`] bytes for the header.
    ShortHeader(usize),
    /// A GSO type this module does not know (the ECN bit aside).
    UnknownGsoType(u8),
    /// A GSO type with a `gso_size` of 0.
    ZeroGsoSize,
    /// The checksum field (`csum_start + csum_offset`, two bytes) lies outside the packet of
    /// `len` bytes.
    ChecksumOutside {
        /// `csum_start`.
        start: u16,
        /// `csum_offset`.
        offset: u16,
        /// The packet's length.
        len: usize,
    },
    /// A GSO type [`segment`] does not do (UDP fragmentation or segmentation), or none.
    UnsupportedGso(u8),
    /// The GSO type's family or protocol is not the packet's (TCPV4 on an IPv6 packet, a
    /// TCP type on UDP).
    GsoMismatch,
    /// The packet is not a well-formed IP packet for its use (truncated, a bad IHL or TCP data
    /// offset, a fragment).
    Malformed,
    /// An IPv6 packet with extension headers (or a jumbogram) to segment.
    Ipv6ExtensionHeaders,
    /// The caller's segment buffer holds `have` bytes; a segment needs `need`.
    BufferTooSmall {
        /// Bytes one segment needs (headers and `gso_size` of payload, at most).
        need: usize,
        /// The buffer's length.
        have: usize,
    },
}

impl fmt::Display for OffloadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            OffloadError::ShortHeader(n) => {
                write!(f, "virtio-net header of {n} bytes, want {}", VnetHdr::LEN)
            }
            OffloadError::UnknownGsoType(t) => write!(f, "unknown GSO type {t:#04x}"),
            OffloadError::ZeroGsoSize => f.write_str("GSO type with a gso_size of 0"),
            OffloadError::ChecksumOutside { start, offset, len } => write!(
                f,
                "checksum field at {start} + {offset} lies outside the {len}-byte packet"
            ),
            OffloadError::UnsupportedGso(t) => write!(f, "GSO type {t:#04x} is not segmented here"),
            OffloadError::GsoMismatch => f.write_str("GSO type does not match the packet"),
            OffloadError::Malformed => f.write_str("malformed IP/TCP packet"),
            OffloadError::Ipv6ExtensionHeaders => {
                f.write_str("IPv6 extension headers or jumbogram in a GSO packet")
            }
            OffloadError::BufferTooSmall { need, have } => {
                write!(f, "segment buffer of {have} bytes, a segment needs {need}")
            }
        }
    }
}

impl std::error::Error for OffloadError {}

/// The 10-byte `struct virtio_net_hdr` (legacy layout, no `num_buffers`) in front of every
/// packet of a TUN device opened with `IFF_VNET_HDR`, its 16-bit fields in the machine's byte
/// order (a TUN device's default: no `TUNSETVNETLE`/`TUNSETVNETBE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct VnetHdr {
    /// [`F_NEEDS_CSUM`](Self::F_NEEDS_CSUM), [`F_DATA_VALID`](Self::F_DATA_VALID).
    pub flags: u8,
    /// One of the `GSO_*` types, with [`GSO_ECN`](Self::GSO_ECN) possibly set.
    pub gso_type: u8,
    /// The length of the headers (IP and TCP) of a GSO packet: a hint, [`segment`] reads the
    /// headers themselves.
    pub hdr_len: u16,
    /// The payload bytes per segment of a GSO packet (the MSS).
    pub gso_size: u16,
    /// Where the sum of a [`F_NEEDS_CSUM`](Self::F_NEEDS_CSUM) packet starts (the L4 header).
    pub csum_start: u16,
    /// Where its checksum field is, from `csum_start` (16 for TCP, 6 for UDP).
    pub csum_offset: u16,
}

impl VnetHdr {
    /// Its length on the wire.
    pub const LEN: usize = 10;
    /// The checksum is partial: sum from `csum_start` to the end, store at
    /// `csum_start + csum_offset`.
    pub const F_NEEDS_CSUM: u8 = 1;
    /// The checksum was verified (receive side; nothing to do).
    pub const F_DATA_VALID: u8 = 2;
    /// Not a GSO packet.
    pub const GSO_NONE: u8 = 0;
    /// TCP over IPv4 to segment (TSO).
    pub const GSO_TCPV4: u8 = 1;
    /// UDP to fragment (UFO).
    pub const GSO_UDP: u8 = 3;
    /// TCP over IPv6 to segment (TSO).
    pub const GSO_TCPV6: u8 = 4;
    /// UDP to segment (USO).
    pub const GSO_UDP_L4: u8 = 5;
    /// Bit with a TCP type: the packet may carry CWR (ECN), kept on the first segment only.
    pub const GSO_ECN: u8 = 0x80;
    /// A header for a complete, unsegmented packet.
    pub const NONE: VnetHdr = VnetHdr {
        flags: 0,
        gso_type: Self::GSO_NONE,
        hdr_len: 0,
        gso_size: 0,
        csum_start: 0,
        csum_offset: 0,
    };

    /// Reads the header from the first [`LEN`](Self::LEN) bytes of `b`. An unknown GSO type
    /// or a GSO type with `gso_size` 0 is an error; [`check`](Self::check) then matches it
    /// against its packet.
    pub fn parse(b: &[u8]) -> Result<VnetHdr, OffloadError> {
        let b: &[u8; Self::LEN] = b
            .get(..Self::LEN)
            .and_then(|b| b.try_into().ok())
            .ok_or(OffloadError::ShortHeader(b.len()))?;
        let u16_at = |i: usize| u16::from_ne_bytes([b[i], b[i + 1]]);
        let hdr = VnetHdr {
            flags: b[0],
            gso_type: b[1],
            hdr_len: u16_at(2),
            gso_size: u16_at(4),
            csum_start: u16_at(6),
            csum_offset: u16_at(8),
        };
        match hdr.gso_type & !Self::GSO_ECN {
            Self::GSO_NONE => {}
            Self::GSO_TCPV4 | Self::GSO_UDP | Self::GSO_TCPV6 | Self::GSO_UDP_L4 => {
                if hdr.gso_size == 0 {
                    return Err(OffloadError::ZeroGsoSize);
                }
            }
            _ => return Err(OffloadError::UnknownGsoType(hdr.gso_type)),
        }
        Ok(hdr)
    }

    /// The header's bytes, to write in front of a packet.
    pub fn to_bytes(&self) -> [u8; Self::LEN] {
        let mut b = [0u8; Self::LEN];
        b[0] = self.flags;
        b[1] = self.gso_type;
        for (i, v) in [
            self.hdr_len,
            self.gso_size,
            self.csum_start,
            self.csum_offset,
        ]
        .into_iter()
        .enumerate()
        {
            b[2 + 2 * i..4 + 2 * i].copy_from_slice(&v.to_ne_bytes());
        }
        b
    }

    /// Whether the packet's checksum is partial ([`F_NEEDS_CSUM`](Self::F_NEEDS_CSUM)).
    pub fn needs_csum(&self) -> bool {
        self.flags & Self::F_NEEDS_CSUM != 0
    }

    /// Whether the packet is to be segmented (a GSO type other than none).
    pub fn is_gso(&self) -> bool {
        self.gso_type & !Self::GSO_ECN != Self::GSO_NONE
    }

    /// Checks the header against its packet of `len` bytes: a partial checksum's field lies
    /// inside it.
    pub fn check(&self, len: usize) -> Result<(), OffloadError> {
        if self.needs_csum() {
            self.csum_field(len)?;
        }
        Ok(())
    }

    /// `(csum_start, the field's offset)` of a partial checksum inside `len` bytes.
    fn csum_field(&self, len: usize) -> Result<(usize, usize), OffloadError> {
        let start = usize::from(self.csum_start);
        let field = start + usize::from(self.csum_offset);
        if field + 2 > len {
            return Err(OffloadError::ChecksumOutside {
                start: self.csum_start,
                offset: self.csum_offset,
                len,
            });
        }
        Ok((start, field))
    }
}

/// Finishes the partial checksum of `pkt` as the device would (Linux's `skb_checksum_help`):
/// sums `pkt[csum_start..]` with the field in place and stores the complement at
/// `csum_start + csum_offset`, 0 as 0xffff. Nothing to do without
/// [`VnetHdr::F_NEEDS_CSUM`]. Call it before a packet goes anywhere that expects complete
/// checksums (a local smoltcp stack, a device without `TUN_F_CSUM`).
pub fn complete_checksum(pkt: &mut [u8], hdr: &VnetHdr) -> Result<(), OffloadError> {
    if !hdr.needs_csum() {
        return Ok(());
    }
    let (start, field) = hdr.csum_field(pkt.len())?;
    // `csum_field` checked that the field lies inside the packet.
    checksum::complete_partial(&mut pkt[start..], field - start);
    Ok(())
}

/// The value of [`lb_core::Packet::csum_partial`] for `pkt` with header `hdr`: true when its
/// checksum is partial and is the one lb-core follows, the TCP or UDP header's own field right
/// after the IP header of an unfragmented packet (IPv4, any options; IPv6 without extension
/// headers). Any other partial checksum is completed here first ([`complete_checksum`]) and
/// the answer is false, as it is for a complete packet. An error (the header points outside
/// the packet) leaves the packet as it was: drop it.
pub fn prepare_for_balancer(pkt: &mut [u8], hdr: &VnetHdr) -> Result<bool, OffloadError> {
    if !hdr.needs_csum() {
        return Ok(false);
    }
    let (start, field) = hdr.csum_field(pkt.len())?;
    if followed_by_lb_core(pkt, start, field - start) {
        return Ok(true);
    }
    complete_checksum(pkt, hdr)?;
    Ok(false)
}

/// Whether a partial checksum summed from `start` with its field at `start + offset` is the
/// TCP/UDP checksum of an unfragmented packet with its L4 header at `start`.
fn followed_by_lb_core(pkt: &[u8], start: usize, offset: usize) -> bool {
    let Some(ip) = IpHeader::read(pkt) else {
        return false;
    };
    let want = match ip.proto {
        PROTO_TCP => 16,
        PROTO_UDP => 6,
        _ => return false,
    };
    !ip.fragment && ip.l4 == start && offset == want
}

const PROTO_TCP: u8 = 6;
const PROTO_UDP: u8 = 17;
const TCP_FIN: u8 = 0x01;
const TCP_PSH: u8 = 0x08;
const TCP_CWR: u8 = 0x80;

/// What [`segment`] and [`prepare_for_balancer`] read of an IP header.
struct IpHeader {
    v6: bool,
    /// The L4 header's offset (IPv4: the IHL; IPv6: 40, extension headers not followed).
    l4: usize,
    /// The IP packet's length from its header (never more than the bytes there are).
    end: usize,
    /// IPv4's protocol, IPv6's next header.
    proto: u8,
    /// An IPv4 fragment (MF or an offset).
    fragment: bool,
}

impl IpHeader {
    fn read(pkt: &[u8]) -> Option<IpHeader> {
        match pkt.first()? >> 4 {
            4 => {
                let l4 = usize::from(pkt[0] & 0x0f) * 4;
                let end = usize::from(u16::from_be_bytes([*pkt.get(2)?, *pkt.get(3)?]));
                if l4 < 20 || end < l4 || end > pkt.len() {
                    return None;
                }
                Some(IpHeader {
                    v6: false,
                    l4,
                    end,
                    proto: pkt[9],
                    fragment: u16::from_be_bytes([pkt[6], pkt[7]]) & 0x3fff != 0,
                })
            }
            6 if pkt.len() >= 40 => {
                let end = 40 + usize::from(u16::from_be_bytes([pkt[4], pkt[5]]));
                (end <= pkt.len()).then_some(IpHeader {
                    v6: true,
                    l4: 40,
                    end,
                    proto: pkt[6],
                    fragment: false,
                })
            }
            _ => None,
        }
    }
}

/// Segments the TCP packet `pkt` (IPv4 or IPv6, its L4 checksum partial or not) whose virtio
/// header `hdr` says [`VnetHdr::GSO_TCPV4`] or [`VnetHdr::GSO_TCPV6`], as the kernel's TSO does
/// (or the UDP packet whose header says [`VnetHdr::GSO_UDP_L4`], as USO does: datagrams of
/// `gso_size` bytes, each with its own UDP length and a complete checksum, IPv4 identifications
/// counted up as for TCP):
/// segments of at most `gso_size` payload bytes, each a complete packet built in `out` and
/// handed to `emit` before the next overwrites it. Each has the IP and TCP headers copied
/// (options included), the IPv4 total length, an identification one more than the previous
/// segment's and a recomputed header checksum, or the IPv6 payload length; the sequence number
/// advanced by the payload before it; FIN and PSH on the last segment only, CWR on the first
/// only; and a complete TCP checksum. Returns the number of segments (at least one: a packet
/// with no more than `gso_size` bytes of payload is one segment).
///
/// `out` must hold the headers and `gso_size` payload bytes (or the whole payload, if less).
/// Everything is checked before the first segment is emitted: on an error nothing was. Not a
/// GSO packet, UDP fragmentation ([`VnetHdr::GSO_UDP`]), an IPv4 fragment, IPv6 extension
/// headers or a jumbogram: errors.
pub fn segment(
    pkt: &[u8],
    hdr: &VnetHdr,
    out: &mut [u8],
    mut emit: impl FnMut(&[u8]),
) -> Result<usize, OffloadError> {
    // The family the type names (UDP_L4 names none) and the transport.
    let (want_v6, want_proto) = match hdr.gso_type & !VnetHdr::GSO_ECN {
        VnetHdr::GSO_TCPV4 => (Some(false), PROTO_TCP),
        VnetHdr::GSO_TCPV6 => (Some(true), PROTO_TCP),
        VnetHdr::GSO_UDP_L4 => (None, PROTO_UDP),
        VnetHdr::GSO_NONE | VnetHdr::GSO_UDP => {
            return Err(OffloadError::UnsupportedGso(hdr.gso_type))
        }
        _ => return Err(OffloadError::UnknownGsoType(hdr.gso_type)),
    };
    let mss = usize::from(hdr.gso_size);
    if mss == 0 {
        return Err(OffloadError::ZeroGsoSize);
    }
    hdr.check(pkt.len())?;
    let ip = IpHeader::read(pkt).ok_or(OffloadError::Malformed)?;
    if want_v6.is_some_and(|v6| ip.v6 != v6) {
        return Err(OffloadError::GsoMismatch);
    }
    if ip.v6 && (ip.end == 40 || (ip.proto != PROTO_TCP && ip.proto != PROTO_UDP)) {
        // A zero payload length is a jumbogram's; another next header, an extension header.
        return Err(OffloadError::Ipv6ExtensionHeaders);
    }
    if ip.proto != want_proto {
        return Err(OffloadError::GsoMismatch);
    }
    if ip.fragment {
        return Err(OffloadError::Malformed);
    }
    let udp = want_proto == PROTO_UDP;
    let doff = if udp {
        8
    } else {
        usize::from(*pkt.get(ip.l4 + 12).ok_or(OffloadError::Malformed)? >> 4) * 4
    };
    let hl = ip.l4 + doff;
    if doff < if udp { 8 } else { 20 } || hl > ip.end {
        return Err(OffloadError::Malformed);
    }
    let payload = &pkt[hl..ip.end];
    let need = hl + mss.min(payload.len());
    if out.len() < need {
        return Err(OffloadError::BufferTooSmall {
            need,
            have: out.len(),
        });
    }

    let (src, dst): (&[u8], &[u8]) = if ip.v6 {
        (&pkt[8..24], &pkt[24..40])
    } else {
        (&pkt[12..16], &pkt[16..20])
    };
    let pseudo_addrs = checksum::add(checksum::add(0, src), dst) + u64::from(want_proto);
    let seq = u32::from_be_bytes([
        pkt[ip.l4 + 4],
        pkt[ip.l4 + 5],
        pkt[ip.l4 + 6],
        pkt[ip.l4 + 7],
    ]);
    let id = u16::from_be_bytes([pkt[4], pkt[5]]);
    let flags = if udp { 0 } else { pkt[ip.l4 + 13] };
    let count = payload.len().div_ceil(mss).max(1);
    out[..hl].copy_from_slice(&pkt[..hl]);
    for (i, at) in (0..count).map(|i| (i, i * mss)) {
        let chunk = &payload[at..(at + mss).min(payload.len())];
        let len = hl + chunk.len();
        out[hl..len].copy_from_slice(chunk);
        let seg = &mut out[..len];
        if ip.v6 {
            seg[4..6].copy_from_slice(&((len - 40) as u16).to_be_bytes());
        } else {
            seg[2..4].copy_from_slice(&(len as u16).to_be_bytes());
            seg[4..6].copy_from_slice(&id.wrapping_add(i as u16).to_be_bytes());
            seg[10..12].fill(0);
            let c = checksum::finish(checksum::add(0, &seg[..ip.l4]));
            seg[10..12].copy_from_slice(&c.to_be_bytes());
        }
        let l4 = ip.l4;
        let l4_len = (len - l4) as u64;
        let field = if udp {
            // USO: each datagram its own length; no sequence, no flags.
            seg[l4 + 4..l4 + 6].copy_from_slice(&(l4_len as u16).to_be_bytes());
            l4 + 6
        } else {
            seg[l4 + 4..l4 + 8].copy_from_slice(&seq.wrapping_add(at as u32).to_be_bytes());
            let mut f = flags;
            if i + 1 < count {
                f &= !(TCP_FIN | TCP_PSH);
            }
            if i > 0 {
                f &= !TCP_CWR;
            }
            seg[l4 + 13] = f;
            l4 + 16
        };
        seg[field..field + 2].fill(0);
        let c = match checksum::finish(checksum::add(pseudo_addrs + l4_len, &seg[l4..])) {
            // UDP: a computed 0 is sent as 0xffff (0 means "no checksum").
            0 if udp => 0xffff,
            c => c,
        };
        seg[field..field + 2].copy_from_slice(&c.to_be_bytes());
        emit(seg);
    }
    Ok(count)
}

#[cfg(test)]
mod tests;
