//! What the balancer tells the frontend to do with a packet, and why it dropped one.

use core::fmt;
use core::net::{IpAddr, Ipv4Addr};

/// Where to send a packet and which part of the buffer it is (quinn-proto's `Transmit`): the
/// frontend routes by `dst` and sends `buf[start..start + len]` ([`Transmit::range`]), without
/// parsing the packet again. `start` is 0 for every packet
/// [`Balancer::process`](crate::Balancer::process) hands back; only
/// [`Balancer::process_at`](crate::Balancer::process_at) moves it, into the headroom, when it
/// puts tunnel headers in front of a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Transmit {
    /// Where the packet goes: look the next hop up for this address. It is the packet's
    /// destination as it now stands (a real server after a NAT [`Verdict::ToServer`], the
    /// client after [`Verdict::ToClient`] and [`Verdict::Reply`]), except for direct routing
    /// (`-g`): then the packet still goes to the VIP, unchanged, and `dst` is the real server,
    /// the **next hop** — send the frame to its link-layer address (a frontend that can only
    /// route on the packet's destination leaves
    /// [`Settings::direct_routing`](crate::Settings::direct_routing) off and gets no `-g`
    /// servers).
    pub dst: IpAddr,
    /// Where the packet starts in the buffer.
    pub start: usize,
    /// The IP packet's length, from its header (with the tunnel headers lb-core put in front of
    /// it, if any). Never more than the `len` handed to `process` (link-layer padding after the
    /// packet is not counted) plus those headers.
    pub len: usize,
}

impl Transmit {
    /// Destination and length from the IP header of `pkt`, a packet the parser accepted (or,
    /// for a passed fragment, whose fixed header it read).
    pub(crate) fn of(pkt: &[u8]) -> Transmit {
        let (dst, len) = match pkt.first().map(|b| b >> 4) {
            Some(6) if pkt.len() >= 40 => {
                let mut a = [0u8; 16];
                a.copy_from_slice(&pkt[24..40]);
                (
                    IpAddr::from(a),
                    40 + usize::from(u16::from_be_bytes([pkt[4], pkt[5]])),
                )
            }
            Some(4) if pkt.len() >= 20 => (
                IpAddr::from([pkt[16], pkt[17], pkt[18], pkt[19]]),
                usize::from(u16::from_be_bytes([pkt[2], pkt[3]])),
            ),
            _ => (IpAddr::V4(Ipv4Addr::UNSPECIFIED), pkt.len()),
        };
        Transmit {
            dst,
            start: 0,
            len: len.min(pkt.len()),
        }
    }

    /// The packet's bytes in the buffer: `buf[start..start + len]`.
    pub const fn range(&self) -> core::ops::Range<usize> {
        self.start..self.start + self.len
    }
}

/// The outcome of [`Balancer::process`](crate::Balancer::process) for one packet. Every variant
/// but `Drop` means "send `buf[t.range()]` toward `t.dst`"; the variant says why.
///
/// ```
/// use lb_core::{Transmit, Verdict};
///
/// /// What a frontend does with a verdict: route by `dst`, send `len` bytes.
/// fn send(verdict: Verdict, buf: &[u8], out: &mut Vec<(std::net::IpAddr, Vec<u8>)>) {
///     match verdict.transmit() {
///         Some(t) => out.push((t.dst, buf[t.range()].to_vec())),
///         None => {} // Drop: already counted under its reason
///     }
/// }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The packet is for a real server: rewritten by NAT (destination changed); by direct
    /// routing, unchanged with the real server as next hop ([`Transmit::dst`]); or by a
    /// tunnel, unchanged behind outer headers addressed to the real server. Send it on.
    ToServer(Transmit),
    /// The packet was a real server's reply, rewritten to come from the virtual service: send it
    /// on toward the client.
    ToClient(Transmit),
    /// Not ours (neither for a virtual service nor a reply of a tracked flow): send it on
    /// untouched, as a router would (or drop it, if the frontend does not route).
    Pass(Transmit),
    /// The buffer now holds a packet lb-core generated (a TCP RST, an ICMP error or an ICMP
    /// echo reply), addressed to the original packet's sender — or, for an ICMP error from a
    /// tunnel's path about a tunnelled packet, relayed to that packet's client: send it; the
    /// original is consumed. `len` is at most the buffer's capacity (and [`REPLY_MAX`](crate::balancer::REPLY_MAX)).
    Reply(Transmit),
    /// Drop the packet. Already counted under its reason.
    Drop(DropReason),
}

impl Verdict {
    /// Where and how much to send, for every verdict but [`Verdict::Drop`].
    pub const fn transmit(&self) -> Option<Transmit> {
        match self {
            Verdict::ToServer(t) | Verdict::ToClient(t) | Verdict::Pass(t) | Verdict::Reply(t) => {
                Some(*t)
            }
            Verdict::Drop(_) => None,
        }
    }
}

/// A placeholder for the verdict arrays handed to
/// [`process_burst`](crate::Balancer::process_burst), which overwrites them:
/// `Drop(Malformed)`.
impl Default for Verdict {
    fn default() -> Self {
        Verdict::Drop(DropReason::Malformed)
    }
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
    /// A fragment lb-core cannot forward: a later fragment to a virtual address whose first
    /// fragment was not seen (it overtook it, or the decision expired after 30 s or was
    /// replaced in a full fragment table), a tiny fragment (RFC 1858) to a virtual address, or
    /// a fragment of something other than TCP/UDP to a virtual address.
    Fragment,
    /// An IPv6 packet to a virtual address with a Routing header with segments left (not at
    /// its final destination), a second Fragment header or more than 8 extension headers.
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
    /// An ICMP error quoting a tracked flow whose outer destination is not the quoted
    /// packet's source (the VIP for an error about a reply, the client for an error about a
    /// forwarded packet): injected or reflected, not translated.
    IcmpMismatch,
    /// A generated reply (TCP RST, ICMP/ICMPv6 error, echo reply) held back by the reply rate
    /// limit: global ([`Settings::reply_rate_per_sec`](crate::Settings::reply_rate_per_sec),
    /// [`reply_burst`](crate::Settings::reply_burst)) or per destination /24 or /64
    /// ([`reply_peer_interval_ms`](crate::Settings::reply_peer_interval_ms)).
    ReplyRateLimited,
    /// A new TCP connection from a /24 (IPv4) or /64 (IPv6) that already holds its share of
    /// half-open entries
    /// ([`Settings::embryonic_prefix_share`](crate::Settings::embryonic_prefix_share)).
    EmbryonicPrefixLimit,
    /// A packet for a tunnel (`-i`) real server, and the buffer had room for the outer headers
    /// neither in front of the packet nor after it
    /// ([`tunnel::MAX_OVERHEAD`](crate::tunnel::MAX_OVERHEAD) bytes are always enough).
    NoHeadroom,
    /// A packet for a DR or tunnel real server larger than the path MTU
    /// ([`Settings::path_mtu`](crate::Settings::path_mtu)) that may not be fragmented and may
    /// not be answered with an ICMP "too big" (it is itself an ICMP error, or the MTU left
    /// would be below IPv4's minimum of 68).
    TooBig,
}

impl DropReason {
    /// Every reason, for counters and metrics.
    pub const ALL: [DropReason; 16] = [
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
        DropReason::IcmpMismatch,
        DropReason::ReplyRateLimited,
        DropReason::EmbryonicPrefixLimit,
        DropReason::NoHeadroom,
        DropReason::TooBig,
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
            DropReason::IcmpMismatch => "icmp_mismatch",
            DropReason::ReplyRateLimited => "reply_rate_limited",
            DropReason::EmbryonicPrefixLimit => "embryonic_prefix_limit",
            DropReason::NoHeadroom => "no_headroom",
            DropReason::TooBig => "too_big",
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
