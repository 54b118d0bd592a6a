//! What the balancer tells the frontend to do with a packet, and why it dropped one.

use core::fmt;

/// The outcome of [`Balancer::process`](crate::Balancer::process) for one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The packet was rewritten for a real server (NAT, destination changed): send it on.
    ToServer,
    /// The packet was a real server's reply, rewritten to come from the virtual service: send it
    /// on toward the client.
    ToClient,
    /// Not ours (neither for a virtual service nor a reply of a tracked flow): send it on
    /// untouched, as a router would.
    Pass,
    /// The buffer now holds a generated packet of `len` bytes (a TCP RST, an ICMP error or an
    /// ICMP echo reply) addressed to the original packet's sender: send it; the original is
    /// consumed.
    Reply {
        /// Length of the generated packet at the start of the buffer.
        len: usize,
    },
    /// Drop the packet. Already counted under its reason.
    Drop(DropReason),
}

/// Why a packet was dropped. Each reason has its own counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DropReason {
    /// Not a well-formed IPv4/IPv6 packet, or its TCP/UDP/ICMP header is truncated or
    /// inconsistent.
    Malformed,
    /// The IPv4 header checksum is wrong.
    BadIpChecksum,
    /// IPv4 fragment or IPv6 Fragment header: lb-core does not reassemble.
    Fragment,
    /// IPv6 extension headers lb-core does not walk.
    Ipv6ExtensionHeaders,
    /// A new connection could not get a table entry: the table is full of entries that may
    /// not be evicted.
    TableFull,
    /// A packet of a flow whose real server was removed, with `expire_nodest_conn` off.
    NoDest,
    /// A TCP packet for a service that is neither a SYN nor part of a tracked flow, and a
    /// RST needs no answer.
    NoConnection,
    /// The packet went to a virtual address on a port or protocol that has no service, and
    /// could not be answered.
    NoService,
    /// The reply buffer was too small to hold a generated answer.
    NoRoomForReply,
    /// A real-server forwarding method the datapath does not implement.
    UnsupportedMethod,
    /// The `drop_packet`-style defence or secure_tcp dropped it.
    Defence,
}

impl DropReason {
    /// Every reason, for counters and metrics.
    pub const ALL: [DropReason; 11] = [
        DropReason::Malformed,
        DropReason::BadIpChecksum,
        DropReason::Fragment,
        DropReason::Ipv6ExtensionHeaders,
        DropReason::TableFull,
        DropReason::NoDest,
        DropReason::NoConnection,
        DropReason::NoService,
        DropReason::NoRoomForReply,
        DropReason::UnsupportedMethod,
        DropReason::Defence,
    ];

    /// A short snake_case name, used as the metrics label.
    pub const fn name(self) -> &'static str {
        match self {
            DropReason::Malformed => "malformed",
            DropReason::BadIpChecksum => "bad_ip_checksum",
            DropReason::Fragment => "fragment",
            DropReason::Ipv6ExtensionHeaders => "ipv6_extension_headers",
            DropReason::TableFull => "table_full",
            DropReason::NoDest => "no_dest",
            DropReason::NoConnection => "no_connection",
            DropReason::NoService => "no_service",
            DropReason::NoRoomForReply => "no_room_for_reply",
            DropReason::UnsupportedMethod => "unsupported_method",
            DropReason::Defence => "defence",
        }
    }

    /// Index into counter arrays.
    pub const fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
