//! In-place NAT rewrites and the few replies lb-core generates (docs/ipvs-semantics.md §6.1).
//!
//! **Rewrites.** After [`crate::packet::parse`] and the connection lookup, the balancer calls
//! * [`rewrite_dst`] on a client → VIP:vport packet to send it to RIP:rport (IPVS `dnat_handler`),
//! * [`rewrite_src`] on a RIP:rport → client reply to make it come from VIP:vport
//!   (`snat_handler`),
//! * [`rewrite_icmp_to_server`] / [`rewrite_icmp_to_client`] on an ICMP error about a NAT flow
//!   (`ip_vs_nat_icmp` / `_v6`),
//! * [`rewrite_fragment`] on a later fragment of a datagram whose first fragment one of the
//!   first two rewrote (the address only: ports and L4 checksum are in the first fragment).
//!
//! IPv6 extension headers stay where they are: the rewrites work at the L4 offset the parse
//! found past them, and the pseudo-header's destination is the IPv6 destination (a Routing
//! header is only accepted with no segments left, where that is the final destination).
//!
//! Each changes only the address and port bytes in place and updates every checksum covering
//! them incrementally (RFC 1624, [`crate::checksum::Delta`]): the IPv4 header checksum and the
//! TCP/UDP checksum (pseudo-header address and port), so the cost does not depend on the
//! packet's length and options are kept as they are.
//!
//! A packet whose TCP/UDP checksum is *partial* (Linux's CHECKSUM_PARTIAL, a device's checksum
//! offload: the field holds the pseudo-header's folded sum) gets the kernel's update for it from
//! the balancer's rewrites: the address change added to the field uncomplemented
//! ([`Delta::apply_partial`](crate::checksum::Delta::apply_partial)), the port left to the
//! device (docs/offloads.md). The public rewrites here take complete checksums.
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
use core::net::IpAddr;

mod reply;
mod rewrite;

pub(crate) use reply::write_icmp_to;
pub use reply::{
    write_echo_reply, write_icmp_port_unreachable, write_icmp_too_big, write_tcp_rst, ICMPV4_ERROR_MAX,
    ICMPV6_ERROR_MAX,
};
pub(crate) use rewrite::rewrite_transport;
pub use rewrite::{
    rewrite_dst, rewrite_flow, rewrite_fragment, rewrite_icmp_to_client, rewrite_icmp_to_server,
    rewrite_src,
};

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

/// The bytes of an address: the first 4 or 16 of the array.
#[inline]
fn octets(ip: IpAddr) -> ([u8; 16], usize) {
    (
        crate::addr::addr_bytes(ip),
        if ip.is_ipv6() { 16 } else { 4 },
    )
}

#[cfg(test)]
mod tests;

impl core::error::Error for NatError {}
