//! Tunnel forwarding on the wire (`-i`, docs/tunnels.md): the outer headers IPVS puts in front
//! of a client's packet for IPIP, GUE and GRE, and the decoder a real server (`lb-decap`) uses
//! to take them off again.
//!
//! The layouts, shared by both directions:
//!
//! * **IPIP:** an outer IPv4 or IPv6 header, protocol 4 (IPv4 inside) or 41 (IPv6 inside).
//! * **GUE** (version 0): an outer IP header, a UDP header to the real server's `--tun-port`,
//!   then 4 bytes: version (2 bits, 0) | C (1 bit, 0 = data) | Hlen (5 bits, optional fields in
//!   32-bit words); the inner protocol (4 or 41); 16 bits of flags.
//! * **GRE** (RFC 2784, no key, no sequence number): flags/version `00 00` (or `80 00` with a
//!   checksum), the inner EtherType (`08 00` or `86 dd`), then, with a checksum, the Internet
//!   checksum of the GRE header and payload and 2 reserved bytes. Outer protocol 47.

pub mod decap;

/// IP protocol number of IPv4 in IP (IPIP).
pub const PROTO_IPIP: u8 = 4;
/// IP protocol number of IPv6 in IP.
pub const PROTO_IPV6: u8 = 41;
/// IP protocol number of UDP (GUE's carrier).
pub const PROTO_UDP: u8 = 17;
/// IP protocol number of GRE.
pub const PROTO_GRE: u8 = 47;

/// The GUE header without optional fields.
pub const GUE_HEADER_LEN: usize = 4;
/// The GRE header without checksum.
pub const GRE_HEADER_LEN: usize = 4;
/// The GRE header with checksum and reserved field.
pub const GRE_CSUM_HEADER_LEN: usize = 8;
/// GRE's C bit (checksum present), in the first 16 bits.
pub const GRE_FLAG_CSUM: u16 = 0x8000;
/// EtherType of IPv4, GRE's protocol field for an IPv4 inner packet.
pub const ETHERTYPE_IPV4: u16 = 0x0800;
/// EtherType of IPv6.
pub const ETHERTYPE_IPV6: u16 = 0x86dd;

/// The most bytes of outer headers any tunnel adds: IPv6 (40) + UDP (8) + GUE (4). A frontend
/// that leaves this much headroom in front of every packet never has a packet moved.
pub const MAX_OVERHEAD: usize = 40 + 8 + GUE_HEADER_LEN;

mod encap;
pub use encap::{build, gue_source_port, overhead, EncapError, Outer};
