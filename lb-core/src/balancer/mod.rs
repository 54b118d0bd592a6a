//! The sans-IO balancer: packets and `now` in, verdicts and the next timeout out.
//!
//! [`Balancer`] ties the pieces together the way IPVS's `ip_vs_in_hook` / `ip_vs_out_hook` do
//! (docs/ipvs-semantics.md §3.2, §6.1): it parses a packet, finds its connection in the `ConnTable` (one
//! keyed index serves both directions), applies the port-reuse and removed-server rules, asks
//! the [`Director`] to schedule new connections (persistence templates first), runs the TCP
//! state machine, keeps the counters the schedulers read, and rewrites the packet in place.
//!
//! Most packets of a busy balancer belong to a flow the table holds and leave its state as it
//! is; they take a fast path (`fast.rs`) that reads them with `packet::parse_flow`, re-arms,
//! counts and rewrites them, and hands everything else to the general path with its look-ups
//! made. `Balancer::process_general` (feature `internals`) runs the general path alone: the differential tests and
//! the fuzz target hold the two to the same verdicts, bytes, entries and counters.
//!
//! # Where we differ from IPVS, on purpose
//! - **No dropped SYN on port reuse.** IPVS with netfilter conntrack drops a SYN that reuses a
//!   client port whose entry is in TIME_WAIT (the 1 s stall, §3.3). We own the only flow table,
//!   so such a SYN (conn_reuse_mode ≥ 1) expires the old entry and is scheduled and forwarded in
//!   the same call.
//! - **conn_reuse_mode 0 never follows a removed server.** The SYN follows its old entry as in
//!   IPVS, but a removed server's entry is expired (`expire_nodest_conn`) or the packet dropped.
//! - **A removed server's flow fails fast.** With `expire_nodest_conn` (our default: on), a
//!   non-SYN TCP packet of such a flow is answered with a RST (what the kernel's local stack
//!   does once IPVS lets the packet through), a SYN or UDP packet is rescheduled.
//! - **No server available:** TCP gets a RST, UDP an ICMP port unreachable (IPVS sends ICMP port
//!   unreachable for both).
//! - **NAT only.** `-g` and `-i` servers are refused by [`Balancer::apply`].
//! - **fwmark services** are scheduled by the [`Director`], but the datapath has no packet mark
//!   and looks services up by address only.
//! - **Fragments are forwarded one by one, not reassembled** (`fragments.rs`). IPVS sees
//!   datagrams netfilter reassembled, and the kernel fragments them again on the way out; we
//!   schedule a datagram by its first fragment and send its later fragments after it, each
//!   rewritten in place. A later fragment to a VIP that overtook its first is a counted drop
//!   (`fragment`). IPv6 extension headers are walked and kept (Routing only with no segments
//!   left).
//! - **ICMP errors are checked against their outer header.** IPVS translates an error about a
//!   tracked flow wherever it is addressed (`ip_vs_in_icmp`/`ip_vs_out_icmp` look the connection
//!   up from the quoted packet alone); we translate it only when its outer destination is the
//!   quoted packet's source — the VIP for an error about a reply, the client for an error about a
//!   forwarded packet — else it is a counted drop (`icmp_mismatch`), so the balancer cannot be
//!   used to inject or reflect ICMP. Transit errors quoting no tracked flow pass, short quote or
//!   not.
//! - **Every generated reply is rate-limited, RSTs included.** IPVS leaves its ICMP errors to
//!   the kernel's ICMP rate limit and its RSTs (sent by the local stack) to none. We hold every
//!   packet we build — RST, ICMP/ICMPv6 error, echo reply — to Linux's ICMP limits: a global
//!   token bucket (`icmp_msgs_per_sec` 1000, `icmp_msgs_burst` 50) and one per destination
//!   /24 or /64 (`icmp_ratelimit` 1000 ms, burst 6), so the balancer is no reflector for
//!   spoofed sources; over the limit, a counted drop (`reply_rate_limited`).
//! - **A full table evicts.** IPVS's table grows; ours has a fixed capacity, so a new
//!   connection on a full table evicts the entry idle longest among TIME_WAIT, CLOSE and
//!   half-open (SYN_RECV/SYNACK) TCP entries and never-assured TCP templates that control
//!   nothing, never ESTABLISHED; and one client /24 or /64 may
//!   hold at most [`Settings::embryonic_prefix_share`] percent of the table in half-open
//!   entries (over it, a counted drop, `embryonic_prefix_limit`). `embryonic.rs` and
//!   docs/ipvs-semantics.md §4.6, "A full table".
//!
//! # Files
//! | file | holds |
//! |---|---|
//! | `mod.rs` | [`Balancer`], its public types and accessors |
//! | `control.rs` | [`Balancer::apply`] and [`Balancer::set_settings`] |
//! | `timers.rs` | [`Balancer::poll_timeout`], [`Balancer::handle_timeout`], expiry |
//! | `defence.rs` | the `secure_tcp` and `drop_entry` defences |
//! | `embryonic.rs` | half-open entries: what is evictable on a full table, per-prefix counts |
//! | `datapath.rs` | [`Balancer::process`], [`Balancer::process_burst`], `process_general` and the general path's dispatch |
//! | `fast.rs` | the established-flow fast path and its service cache |
//! | `matching.rs` | finding a packet's entry (both paths), an entry's addresses |
//! | `inbound.rs` | client → virtual service: reuse and removed-server rules, scheduling |
//! | `persist.rs` | persistence templates |
//! | `pickup.rs` | mid-flow pickup: which TCP segments without SYN may create an entry |
//! | `outbound.rs` | real server → client |
//! | `fragments.rs` | fragments: the first scheduled, its decision filed, the later ones after it |
//! | `icmp.rs` | ICMP errors about tracked flows, echo requests |
//! | `entries.rs` | inserting, transitioning and removing entries |
//! | `answer.rs` | pass, drop and generated answers (RST, ICMP) |
//! | `ratelimit.rs` | the limit on generated answers (global and per destination prefix) |
//! | `health.rs` | health checks: configuration, probes, events, operator commands on checked servers |
//! | `health_apply.rs` | what a health transition does: weight 0 or deletion, restore, slow start, quorum and sorry server, passive triggers |

mod answer;
mod control;
mod datapath;
mod defence;
mod embryonic;
mod entries;
mod fast;
#[cfg(test)]
mod fragment_tests;
mod fragments;
mod health;
mod health_apply;
#[cfg(test)]
mod health_tests;
mod icmp;
#[cfg(test)]
mod icmp_tests;
mod inbound;
mod matching;
mod method;
#[cfg(test)]
mod offload_tests;
mod outbound;
mod persist;
mod pickup;
#[cfg(test)]
mod pickup_tests;
mod ratelimit;
#[cfg(test)]
mod ratelimit_tests;
#[cfg(test)]
mod route_tests;
mod settings;
mod state;
#[cfg(test)]
mod state_tests;
mod sync;
#[cfg(test)]
mod sync_tests;
#[cfg(test)]
mod synflood_tests;
#[cfg(test)]
mod test_support;
#[cfg(test)]
mod tests;
mod timers;
mod tunnel;
#[cfg(test)]
mod tunnel_tests;

use core::net::{IpAddr, SocketAddr};

use crate::addr::Protocol;
use crate::config::ServiceKey;
use crate::conn::{ConnStorage, ConnTable};
#[cfg(feature = "alloc")]
use crate::director::Limits;
use crate::director::{Director, DirectorStorage};
use crate::hash::SipKey;
use crate::health::{Health, HealthState, Reason};
use crate::nat;
use crate::tcp::{self, TcpState};
use crate::time::{Duration, Instant};
use crate::verdict::DropReason;

pub use control::ApplyError;
pub use defence::DEFENCE_PERIOD;
pub use health::HealthCounters;
pub use settings::{ConnReuseMode, DefenceMode, Settings};
pub use state::ImportReport;
pub use sync::{SyncReceipt, SyncStats, SYNC_FLUSH, SYNC_QUEUE};
pub use timers::TEMPLATE_DEFER;

use matching::server_endpoint;

/// Largest generated reply (an ICMPv6 error quotes up to 1280 bytes in all).
pub const REPLY_MAX: usize = nat::ICMPV6_ERROR_MAX;

/// The balancer's own counters (per-service and per-server traffic lives in the
/// [`Director`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counters {
    /// Drops, indexed by [`DropReason::index`].
    pub drops: [u64; DropReason::ALL.len()],
    /// Dropped packets that carried a SYN (included in `drops`).
    pub syn_drops: u64,
    /// SYNs that reused a client port whose entry was in TIME_WAIT/CLOSE (or FIN_WAIT with
    /// mode 2) and were rescheduled at once.
    pub reuse_reschedules: u64,
    /// SYNs whose entry pointed at a weight-0 server and were rescheduled
    /// (`expire_nodest_conn`).
    pub quiescent_reschedules: u64,
    /// SYNs whose entry pointed at a server the health checker holds DOWN, rescheduled to a
    /// live one (whatever `expire_nodest_conn` says).
    pub health_reschedules: u64,
    /// Packets of a removed server's flow that were rescheduled (SYN, UDP).
    pub nodest_reschedules: u64,
    /// Packets of a removed server's flow answered with a RST.
    pub nodest_resets: u64,
    /// New connections with no server available, answered with a RST or ICMP.
    pub no_server: u64,
    /// Entries created (templates not included).
    pub conns_created: u64,
    /// Entries evicted to make room for a new connection on a full table: TIME_WAIT, CLOSE
    /// and half-open connections, templates that control nothing and were never assured
    /// (docs/ipvs-semantics.md §4.6, "A full table").
    pub evictions: u64,
    /// Half-open entries (SYN_RECV, SYNACK: the client never completed its handshake) among
    /// `evictions`.
    pub embryonic_evictions: u64,
    /// Packets passed through untouched.
    pub passed: u64,
    /// Replies generated (RST, ICMP errors, echo replies).
    pub replies: u64,
    /// Entries dropped by the `drop_entry` defence.
    pub defence_drops: u64,
    /// Later fragments forwarded after their first fragment's decision.
    pub fragments_forwarded: u64,
    /// First-fragment decisions replaced before their 30 s because the fragment table's
    /// slots for a new datagram were all live (its later fragments are then dropped).
    pub fragment_evictions: u64,
    /// Packets put in a tunnel (`-i`) to their real server.
    pub tunnelled: u64,
    /// ICMP "fragmentation needed" / ICMPv6 "packet too big" answers to DR and tunnel packets
    /// over [`Settings::path_mtu`] (included in `replies` when sent).
    pub too_big_replies: u64,
    /// ICMP errors from a tunnel's path about a tunnelled packet, relayed to its client
    /// (included in `replies`).
    pub tunnel_icmp_relayed: u64,
}

impl Counters {
    /// The drop counter of `reason`.
    pub fn drops(&self, reason: DropReason) -> u64 {
        self.drops[reason.index()]
    }
}

/// One packet of a burst ([`Balancer::process_burst`]) or of
/// [`Balancer::process_packet`]: a buffer (its capacity bounds generated replies) holding an
/// IP packet in `buf[start..start + len]`, with `start` bytes of headroom in front of it for
/// tunnel headers (see [`Balancer::process_at`]).
///
/// **Checksum offload.** A frontend whose device hands over packets with their TCP/UDP
/// checksum still to compute (Linux's CHECKSUM_PARTIAL; a TUN device opened with
/// `IFF_VNET_HDR` and `TUN_F_CSUM` marks them `VIRTIO_NET_HDR_F_NEEDS_CSUM`) sets
/// `csum_partial`: the checksum field of the TCP or UDP header then holds the folded sum of
/// the pseudo-header alone, not complemented, and the device sums the rest later. lb-core
/// keeps such a packet consistent (docs/offloads.md): a NAT rewrite adds the address change
/// to the field and leaves the port change to the device, as the kernel does; a packet it
/// puts in a tunnel gets its checksum completed first (the outer packet is complete). On
/// return `csum_partial` says whether the packet to send, `buf[t.range()]` of the verdict's
/// [`Transmit`](crate::Transmit), is still partial: true only after a
/// [`Verdict::ToServer`](crate::Verdict::ToServer), [`Verdict::ToClient`](crate::Verdict::ToClient)
/// or [`Verdict::Pass`](crate::Verdict::Pass) of a packet that came in partial and was not put
/// in a tunnel, and then the packet has not moved (`t.start` is `start`) and its L4 header is
/// where it was, so the device's checksum start and offset are unchanged. Set it only for an
/// unfragmented TCP or UDP packet whose own header's checksum field is the partial one.
pub struct Packet<'p> {
    /// The buffer.
    pub buf: &'p mut [u8],
    /// Where the packet starts: the headroom in front of it.
    pub start: usize,
    /// The packet's length.
    pub len: usize,
    /// In: the packet's TCP/UDP checksum field holds the pseudo-header sum (Linux's
    /// CHECKSUM_PARTIAL, virtio's NEEDS_CSUM). Out: the packet to send still does (see above).
    pub csum_partial: bool,
}

/// Something a controller may want to act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// A quiescent (weight 0) server has no connections left: deleting it now breaks nothing.
    Drained {
        /// Its service.
        service: ServiceKey,
        /// The server.
        server: SocketAddr,
    },
    /// The health checker changed a real server's state (and applied it: weight 0 or
    /// removal on DOWN, the weight back on UP).
    Health {
        /// Its service.
        service: ServiceKey,
        /// The server.
        server: SocketAddr,
        /// The new state.
        state: HealthState,
        /// Why ("connect refused", "timeout after 1 s", "HTTP 503", …).
        reason: Reason,
    },
    /// A service lost (`up == false`) or regained its quorum (keepalived's `quorum_down` /
    /// `quorum_up`); with a sorry server, the sorry server came in or left.
    Quorum {
        /// The service.
        service: ServiceKey,
        /// Whether the quorum is there now.
        up: bool,
    },
}

/// A live connection, as `ipvsadm -L -c` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnInfo {
    /// Protocol.
    pub proto: Protocol,
    /// Client address and port (for a template: the masked address and port 0).
    pub client: SocketAddr,
    /// Virtual address and port.
    pub vip: SocketAddr,
    /// Real server address and port.
    pub server: SocketAddr,
    /// State name (`ESTABLISHED`, `TIME_WAIT`, `UDP`, `NONE` for templates…).
    pub state: &'static str,
    /// Time left before it expires.
    pub expires_in: Duration,
    /// Whether it is a persistence template.
    pub template: bool,
}

/// A connection table, a director and the rules that join them. One owner per balancer: the
/// frontend calls [`process`](Balancer::process) (or [`process_burst`](Balancer::process_burst))
/// for every packet, [`handle_timeout`](Balancer::handle_timeout) when
/// [`poll_timeout`](Balancer::poll_timeout) has passed, and [`apply`](Balancer::apply) for
/// configuration between packets.
// Declaration order (the hot fields first: the director at offset 0, then the table), so
// fields only the control plane reads, such as the health checker, do not move them.
#[repr(C)]
pub struct Balancer<'a> {
    director: Director<'a>,
    conns: ConnTable<'a>,
    settings: Settings,
    counters: Counters,
    /// Whether secure_tcp's DoS table is in force now.
    dos: bool,
    /// Whether the drop_entry defence is running now.
    dropping: bool,
    /// Slab position where the next drop_entry scan starts.
    drop_cursor: usize,
    /// Slab position where the next eviction scan starts (`ConnTable::evict_scan`).
    evict_cursor: usize,
    /// drop_entry's rate-rule counters, by `in_pkts` (IPVS's `todrop_counter`).
    todrop_counter: [i8; 9],
    next_defence: Instant,
    /// Changes every time an entry is inserted or removed (burst lookups stay valid while it
    /// does not).
    generation: u64,
    /// The last service look-up of the datapath (cleared by every configuration change).
    svc_cache: fast::SvcCache,
    /// The limit on generated replies (`ratelimit.rs`).
    limiter: ratelimit::ReplyLimiter,
    /// The health checker (empty storage: nothing checked, nothing costs).
    health: Health<'a>,
    /// Half-open entries per client prefix (`embryonic.rs`).
    embryonic: embryonic::PrefixCounts,
    /// The most half-open entries one prefix may hold (from the settings and the capacity);
    /// `None`: no limit, nothing counted.
    embryonic_limit: Option<u32>,
    scratch: [u8; REPLY_MAX],
    /// The sync daemons (`sync.rs`).
    sync: sync::SyncEngine,
    /// Outer headers the forward step built for the current packet, for the entry point to
    /// put in front of it (`tunnel.rs`); empty between packets.
    outer: crate::tunnel::Outer,
    /// The headroom in front of the current packet (`process_at`); 0 between packets.
    headroom: usize,
    /// The current packet's TCP/UDP checksum field holds a partial sum ([`Packet::csum_partial`]);
    /// cleared when it is completed, false between packets.
    csum_partial: bool,
    /// The outer IPv4 identification of the last tunnelled packet without DF.
    ip_id: u16,
}

/// The secrets a balancer keys its hashes with: the connection table's flow hash (SipHash-1-3,
/// so that nobody who cannot read memory can aim packets at one index slot) and the seed of the
/// schedulers that draw at random (`twos`) or hash with a per-service key. lb-core reads no
/// RNG: fill these from one at start (`getrandom`, a hardware RNG) and keep them secret. Two
/// balancers with the same secrets make the same decisions for the same inputs (tests,
/// benchmarks, a cluster that must agree).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Secrets {
    /// The connection table's SipHash key.
    pub flow_key: [u8; 16],
    /// The schedulers' seed.
    pub sched_seed: u64,
}

impl Secrets {
    /// Secrets from 24 random bytes: the first 16 key the flow hash, the last 8 seed the
    /// schedulers.
    pub const fn from_bytes(b: [u8; 24]) -> Secrets {
        let mut flow_key = [0u8; 16];
        let mut seed = [0u8; 8];
        let mut i = 0;
        while i < 16 {
            flow_key[i] = b[i];
            i += 1;
        }
        while i < 24 {
            seed[i - 16] = b[i];
            i += 1;
        }
        Secrets {
            flow_key,
            sched_seed: u64::from_le_bytes(seed),
        }
    }
}

/// Does not print the secrets.
impl core::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("Secrets { .. }")
    }
}

impl<'a> Balancer<'a> {
    /// The way to build a balancer: from the director's and the connection table's storage
    /// (memory the caller owns: [`DirectorResources`](crate::DirectorResources) and
    /// [`ConnResources`](crate::ConnResources) in `static`s, or on the heap with
    /// `Balancer::alloc`), the hash secrets, and `now` (the connection table's clock starts
    /// there). No services yet: add them with [`apply_line`](Balancer::apply_line). Default
    /// [`Settings`].
    ///
    /// ```
    /// use lb_core::{conn_resources, director_resources, Balancer, Instant, Secrets};
    ///
    /// // 2 services of 8 servers (sh/dh/mh tables up to 256 slots), 1,024 connections. On a
    /// // microcontroller these live in `static`s (a `StaticCell`); here, on the heap.
    /// let mut dir = Box::new(<director_resources!(
    ///     services: 2, servers_per_service: 8, table_slots_per_service: 256, lblc_entries_per_service: 0
    /// )>::new());
    /// let mut conns = Box::new(<conn_resources!(1024)>::new());
    /// let secrets = Secrets::from_bytes([7; 24]); // use random bytes
    /// let mut lb = Balancer::from_storage(dir.storage(), conns.storage(), &secrets, Instant::ZERO);
    /// lb.apply_line(Instant::ZERO, "-A -t 10.0.0.1:80 -s rr")?;
    /// assert_eq!(lb.capacity(), 1024);
    /// # Ok::<(), lb_core::LineError>(())
    /// ```
    pub fn from_storage(
        director: DirectorStorage<'a>,
        conns: ConnStorage<'a>,
        secrets: &Secrets,
        now: Instant,
    ) -> Self {
        Balancer::from_parts(
            Director::new(director, secrets.sched_seed),
            ConnTable::new(conns, SipKey::from_bytes(secrets.flow_key), now),
            Settings::default(),
        )
    }

    /// A balancer over `director` (services and servers, possibly already configured) and an
    /// empty connection table: for callers that build or configure the parts first (tests,
    /// benchmarks; feature `internals`). [`from_storage`](Balancer::from_storage) is the usual
    /// way.
    #[cfg(feature = "internals")]
    pub fn new(director: Director<'a>, conns: ConnTable<'a>, settings: Settings) -> Self {
        Balancer::from_parts(director, conns, settings)
    }

    fn from_parts(director: Director<'a>, conns: ConnTable<'a>, settings: Settings) -> Self {
        let limiter = ratelimit::ReplyLimiter::new(conns.secret());
        let embryonic = embryonic::PrefixCounts::new(conns.secret());
        let mut b = Balancer {
            director,
            conns,
            settings,
            counters: Counters::default(),
            dos: false,
            dropping: false,
            drop_cursor: 0,
            evict_cursor: 0,
            todrop_counter: [0; 9],
            next_defence: Instant::ZERO,
            generation: 0,
            svc_cache: fast::SvcCache::EMPTY,
            limiter,
            health: Health::none(),
            embryonic,
            embryonic_limit: None,
            scratch: [0; REPLY_MAX],
            sync: sync::SyncEngine::new(),
            outer: crate::tunnel::Outer::NONE,
            headroom: 0,
            csum_partial: false,
            ip_id: 0,
        };
        b.update_defence();
        b.update_embryonic_limit();
        b
    }

    /// A balancer on the heap (feature `alloc`): the director sized by `limits`, a connection
    /// table of `capacity` entries (at most 64 bytes each), the secrets and `now`. The balancer
    /// never allocates after this.
    ///
    /// ```
    /// use lb_core::{Balancer, Instant, Limits, Secrets};
    ///
    /// let secrets = Secrets::from_bytes([1; 24]); // use random bytes
    /// let lb = Balancer::alloc(Limits::new(4, 16), 65_536, &secrets, Instant::ZERO);
    /// assert_eq!(lb.capacity(), 65_536);
    /// ```
    #[cfg(feature = "alloc")]
    pub fn alloc(
        limits: Limits,
        capacity: usize,
        secrets: &Secrets,
        now: Instant,
    ) -> Balancer<'static> {
        Balancer::from_storage(
            DirectorStorage::alloc(limits),
            ConnStorage::alloc(capacity),
            secrets,
            now,
        )
    }

    /// The control plane: services, servers (list order), counters and rates.
    pub fn director(&self) -> &Director<'a> {
        &self.director
    }

    /// The control plane, for calls [`apply`](Balancer::apply) does not cover (it forgets
    /// the first-fragment decisions, as `apply` does when a service or server is deleted). Do
    /// not delete servers or services behind the balancer's back while it has entries for them
    /// unless you accept IPVS's trash semantics (the director keeps referenced servers until
    /// released).
    pub fn director_mut(&mut self) -> &mut Director<'a> {
        self.svc_cache = fast::SvcCache::EMPTY;
        // Decisions of first fragments may name what the caller removes.
        self.conns.fragments.clear();
        &mut self.director
    }

    /// Connections and persistence templates in the table now.
    pub fn connection_count(&self) -> usize {
        self.conns.len()
    }

    /// The most connections and templates the table holds (its storage's capacity).
    pub fn capacity(&self) -> usize {
        self.conns.capacity()
    }

    /// How many first-fragment decisions the fragment table holds (one per 16 connections,
    /// 16 to 4,096, with storage sized by `ConnStorage::slots_for`): datagrams whose later
    /// fragments can be in flight at once within 30 s.
    pub fn fragment_capacity(&self) -> usize {
        self.conns.fragments.capacity()
    }

    /// The connection table.
    #[cfg(feature = "internals")]
    pub fn conns(&self) -> &ConnTable<'a> {
        &self.conns
    }

    /// The current settings.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The balancer's counters.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Zeroes the balancer's counters (`ipvsadm -Z` zeroes the director's).
    pub fn zero_counters(&mut self) {
        self.counters = Counters::default();
    }

    /// Whether secure_tcp's DoS transition table is in force.
    pub fn secure_tcp_active(&self) -> bool {
        self.dos
    }

    /// Whether the drop_entry defence is running.
    pub fn drop_entry_active(&self) -> bool {
        self.dropping
    }

    /// Whether `addr` is the virtual address of some service (frontends answer ARP/NDP for
    /// these, and must not route packets for them back to themselves).
    pub fn is_vip(&self, addr: IpAddr) -> bool {
        self.director.is_vip(addr)
    }

    /// Live connections and templates, for `ipvsadm -L -c`.
    pub fn connections(&self, now: Instant) -> impl Iterator<Item = ConnInfo> + '_ {
        self.conns.iter().filter_map(move |(h, e)| {
            let server = self.director.server(e.server)?;
            let svc = self.director.service(e.service)?;
            let vip = match svc.config.key {
                ServiceKey::Addr { vip, .. } => SocketAddr::new(vip.ip(), e.vport),
                ServiceKey::Fwmark { .. } => SocketAddr::new(server.addr().ip(), e.vport),
            };
            let state = if e.is_template() {
                "NONE"
            } else {
                match e.proto() {
                    Protocol::Udp => tcp::UDP_STATE_NAME,
                    Protocol::Tcp => TcpState::from_u8(e.state).unwrap_or(TcpState::None).name(),
                }
            };
            Some(ConnInfo {
                proto: e.proto(),
                client: e.client(),
                vip,
                server: server_endpoint(server.addr(), e.vport),
                state,
                expires_in: self.conns.deadline(h)?.saturating_since(now),
                template: e.is_template(),
            })
        })
    }

    /// Whether drained-server events were lost since the last call (too many at once for the
    /// director's queue); clears the flag. (Through the balancer, not `director_mut`, so the
    /// datapath's service cache stays warm.)
    pub fn drained_events_lost(&mut self) -> bool {
        self.director.drained_events_lost()
    }

    /// The next event for a controller: drained servers (oldest first), then health
    /// transitions and quorum changes. Poll after `process`/`handle_timeout`/`apply`/
    /// `probe_result`. A server's health transitions not polled yet collapse into its latest.
    pub fn poll_event(&mut self) -> Option<Event> {
        let Some(d) = self.director.poll_drained() else {
            return self.poll_health_event();
        };
        let service = self.director.service(d.service)?.config.key;
        Some(Event::Drained {
            service,
            server: d.addr,
        })
    }
}
