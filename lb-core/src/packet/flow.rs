//! [`parse_flow`], the datapath's first look at a packet, and the [`Flow`] it reads: TCP or UDP
//! of the common shape, with the addresses as the connection entries store them.

use smoltcp::wire::{Ipv4Packet, Ipv6Packet, UdpPacket};

use super::{
    Kind, Parsed, IPV4_MIN_HEADER, IPV6_HEADER, PROTO_TCP, PROTO_UDP, TCP_MIN_HEADER, UDP_HEADER,
};
use crate::addr::{ip_of, Protocol};
use crate::checksum;
use core::net::SocketAddr;

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
    ///
    /// [`parse`]: super::parse
    #[inline]
    #[allow(clippy::wrong_self_convention)] // by reference on purpose: a 64-byte Flow
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
            fragment: None,
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
///
/// [`parse`]: super::parse
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
        if !checksum::ipv4_header_verifies(hdr) {
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
