//! Parsing of one IP packet into what the balancer needs to look it up and rewrite it
//! (docs/ipvs-semantics.md §6.1, §2.8 for which ICMP messages are "related").
//!
//! [`parse`] takes a packet starting at its IP header (no link layer) and returns a [`Parsed`]:
//! addresses, ports, TCP flags and the byte offsets the rewrites in [`crate::nat`] use, so a
//! rewrite never parses again. The datapath first tries [`parse_flow`], which reads only the
//! common shape — TCP or UDP over IPv4 without options or IPv6 without extension headers, not a
//! fragment — into a [`Flow`] (addresses as the connection entries store them), with the same
//! checks; anything else goes to [`parse`]. It reads untrusted bytes through smoltcp's `wire` views, created
//! with `new_checked` after lb-core's own length checks (which give the specific [`Malformed`]
//! reason smoltcp's unit error does not).
//!
//! What is recognised:
//! * IPv4 and IPv6 carrying TCP or UDP: [`Kind::Transport`]. IPv6 extension headers are walked
//!   to the upper-layer header as the kernel's `ipv6_skip_exthdr` does (Hop-by-Hop, Routing,
//!   Fragment, Destination Options, AH); [`Parsed::l4_offset`] is past them, and the rewrites
//!   leave them as they are.
//! * Fragments ([`Parsed::fragment`]): the first fragment of a TCP/UDP datagram is
//!   [`Kind::Transport`] with its ports (it must hold the whole TCP header or the 8-byte UDP
//!   header); a later one is [`Kind::Fragment`], with no ports. An IPv6 atomic fragment
//!   (Fragment header with offset 0 and M clear, RFC 6946) is a whole packet, as is an IPv4
//!   packet with MF clear and offset 0 (DF or not).
//! * ICMPv4 DEST_UNREACH, SOURCE_QUENCH and TIME_EXCEEDED, and ICMPv6 errors (types 1–127),
//!   quoting a TCP or UDP packet (its IPv6 extension headers walked): [`Kind::IcmpError`]. Only
//!   the quoted IP header (and extension headers) and the first 8 bytes of the quoted L4
//!   header must be present (RFC 792); the ports sit in those 8 bytes.
//! * ICMPv4 echo request (type 8) and ICMPv6 echo request (type 128): [`Kind::EchoRequest`], so a
//!   frontend can answer pings to a VIP ([`crate::nat::write_echo_reply`]).
//! * Anything else well-formed (other protocols, other ICMP, ICMP errors quoting something other
//!   than TCP/UDP or a non-first fragment, ESP, No Next Header): [`Kind::Other`], for the
//!   caller to pass on or drop.
//!
//! Checked and refused ([`Malformed`], a counted drop for the balancer): truncation, bad version,
//! IHL or total length, a bad IPv4 header checksum, a bad TCP data offset or UDP length, tiny
//! fragments (RFC 1858 §3: a first fragment without the whole TCP or UDP header, a TCP fragment
//! at offset 8), an IPv6 Routing header with segments left (the packet is not at its final
//! destination), a second Fragment header or more than 8 extension headers.
//! Bytes after the IP total length (link-layer padding) are ignored.
//!
//! The parse reads one packet: fragments are not reassembled here (the balancer forwards them
//! one by one, `balancer/fragments.rs`), and overlapping fragments (RFC 5722) are for the
//! receiver to refuse.
//!
//! L4 checksums are not verified, as in IPVS: the rewrites update them incrementally, so a
//! corrupt segment stays detectably corrupt for its receiver.

#![warn(missing_docs)]

use core::fmt;
use core::net::SocketAddr;

use crate::addr::Protocol;
pub use crate::addr::{addr_bytes, ip_of};

mod flow;
mod icmp;
mod ip;

pub use flow::{parse_flow, Flow};
pub use icmp::IcmpError;
use ip::{parse_v4, parse_v6};

/// IP protocol number of ICMPv4.
pub const PROTO_ICMP: u8 = 1;
/// IP protocol number of TCP.
pub const PROTO_TCP: u8 = 6;
/// IP protocol number of UDP.
pub const PROTO_UDP: u8 = 17;
/// IP protocol number (IPv6 next header) of ICMPv6.
pub const PROTO_ICMPV6: u8 = 58;

const IPV4_MIN_HEADER: usize = 20;
const IPV6_HEADER: usize = 40;
const TCP_MIN_HEADER: usize = 20;
const UDP_HEADER: usize = 8;
const ICMP_HEADER: usize = 8;
/// Bytes of a quoted L4 header an ICMP error must carry (RFC 792: "64 bits of data").
const QUOTED_L4: usize = 8;

/// Why a packet was refused. Each variant is a reason to count in drop statistics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Malformed {
    /// Shorter than a header, or than the length its header claims.
    Truncated,
    /// The IP version is neither 4 nor 6.
    BadVersion,
    /// IPv4 header length below 5 words.
    BadIhl,
    /// IPv4 total length smaller than the header.
    BadTotalLength,
    /// The IPv4 header checksum does not verify.
    BadIpv4HeaderChecksum,
    /// TCP data offset below 5 words or beyond the segment.
    BadTcpDataOffset,
    /// UDP length below 8 or beyond the IP payload.
    BadUdpLength,
    /// An IPv6 extension-header chain lb-core does not follow: a Routing header with segments
    /// left (the destination is not the final one), a second Fragment header, or more than 8
    /// extension headers.
    Ipv6ExtensionHeaders,
    /// A tiny fragment (RFC 1858 §3): a first fragment that does not hold the whole TCP header
    /// or the 8-byte UDP header, or a TCP fragment at offset 8 (it would overwrite the flags).
    TinyFragment,
    /// An ICMP error whose quoted packet is not a whole IP header of the outer family plus
    /// 8 bytes of L4 header. The outer packet is well-formed: the balancer passes it on unless
    /// it is addressed to a virtual address.
    BadEmbeddedPacket,
}

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Malformed::Truncated => "truncated packet",
            Malformed::BadVersion => "IP version is neither 4 nor 6",
            Malformed::BadIhl => "IPv4 header length below 20 bytes",
            Malformed::BadTotalLength => "IPv4 total length smaller than its header",
            Malformed::BadIpv4HeaderChecksum => "bad IPv4 header checksum",
            Malformed::BadTcpDataOffset => "bad TCP data offset",
            Malformed::BadUdpLength => "bad UDP length",
            Malformed::Ipv6ExtensionHeaders => {
                "IPv6 routing header with segments left, or too many extension headers"
            }
            Malformed::TinyFragment => "tiny fragment (RFC 1858)",
            Malformed::BadEmbeddedPacket => "ICMP error quotes an incomplete or foreign packet",
        })
    }
}

/// What kind of packet [`parse`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// TCP or UDP: `Parsed::src`/`dst` carry the ports.
    Transport,
    /// An ICMP error quoting a TCP or UDP packet.
    IcmpError(IcmpError),
    /// An ICMPv4 or ICMPv6 echo request.
    EchoRequest,
    /// A fragment after the first of a datagram (offset ≠ 0): no L4 header, no ports;
    /// [`Parsed::fragment`] says which datagram and `proto` its protocol.
    Fragment,
    /// Well-formed but nothing lb-core balances.
    Other,
}

/// Where a fragment sits in its datagram (IPv4 flags and offset, or an IPv6 Fragment header).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fragment {
    /// The datagram's identification: IPv4's 16 bits, or the Fragment header's 32.
    pub id: u32,
    /// Where the fragment's data starts in the datagram's payload, in bytes (a multiple of 8).
    pub offset: u16,
    /// More fragments follow (IPv4 MF, IPv6 M).
    pub more: bool,
}

/// A parsed IP packet: everything the balancer and the rewrites need, with no reference to the
/// buffer. 160 bytes on 64-bit targets (mostly four `SocketAddr`s of 32 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Parsed {
    /// IPv6 (else IPv4).
    pub v6: bool,
    /// The IP protocol number (IPv4 protocol / IPv6 next header).
    pub proto: u8,
    /// TCP header flags (byte 13; see [`crate::tcp::flags`]); 0 unless TCP.
    pub tcp_flags: u8,
    /// Offset of the L4 header (TCP, UDP or ICMP) in the buffer: the IP header length, IPv6
    /// extension headers included (for [`Kind::Fragment`], where the fragment's data starts).
    pub l4_offset: u16,
    /// Bytes of L4 payload: after the TCP header (options included), after the 8-byte UDP
    /// header (per the UDP length field), or after the 8-byte ICMP header; 0 for `Other`.
    pub payload_len: u16,
    /// Length of the IP packet (header and payload) as its header says; bytes of the buffer past
    /// it are padding. The packet to transmit is `buf[..total_len]`.
    pub total_len: u32,
    /// Source address, and source port for TCP/UDP (0 otherwise).
    pub src: SocketAddr,
    /// Destination address, and destination port for TCP/UDP (0 otherwise).
    pub dst: SocketAddr,
    /// What the packet is.
    pub kind: Kind,
    /// The packet's place in its datagram if it is a fragment (not an atomic one); `None` for a
    /// whole packet.
    pub fragment: Option<Fragment>,
}

impl Parsed {
    /// The transport protocol of a TCP/UDP packet (`Kind::Transport`), else `None`.
    #[inline]
    pub fn transport(&self) -> Option<Protocol> {
        match self.kind {
            Kind::Transport => Protocol::from_number(self.proto),
            _ => None,
        }
    }
}

/// Parses the IP packet at the start of `buf`. Call it once per received packet, before any
/// lookup; pass the result to the rewrites in [`crate::nat`] together with the same buffer.
#[inline]
pub fn parse(buf: &[u8]) -> Result<Parsed, Malformed> {
    match buf.first().map(|b| b >> 4) {
        None => Err(Malformed::Truncated),
        Some(4) => parse_v4(buf),
        Some(6) => parse_v6(buf),
        Some(_) => Err(Malformed::BadVersion),
    }
}

#[cfg(test)]
mod tests;

impl core::error::Error for Malformed {}
