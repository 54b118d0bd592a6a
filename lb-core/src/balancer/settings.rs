//! [`Settings`]: IPVS's sysctls that apply to a userspace balancer, typed.

use core::fmt;
use core::net::{Ipv4Addr, Ipv6Addr};

use crate::tcp::TcpTimeouts;

/// Behaviour switches: IPVS's sysctls that apply to a userspace balancer, with their
/// defaults, plus the fill threshold that plays the part of `amemthresh`. Change them with
/// [`Balancer::set_settings`](crate::Balancer::set_settings) or, as ipvsadm lines,
/// [`Balancer::apply_line`](crate::Balancer::apply_line) (`--conn-reuse-mode 2`, `--secure-tcp 1`,
/// `--set 900 120 300`, …).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// `conn_reuse_mode` (default 1): how a SYN that reuses a client port is handled
    /// (docs/ipvs-semantics.md §3.1; see the balancer module docs for our difference).
    pub conn_reuse_mode: ConnReuseMode,
    /// `expire_nodest_conn` (default **on** here; IPVS's default is off): packets of a flow
    /// whose server was removed expire it and are rescheduled or reset instead of dropped.
    pub expire_nodest_conn: bool,
    /// `expire_quiescent_template` (default off): a persistence template pointing at a
    /// weight-0 server is not used for new connections.
    pub expire_quiescent_template: bool,
    /// `secure_tcp` (default off). While active, TCP uses IPVS's `tcp_states_dos` table.
    pub secure_tcp: DefenceMode,
    /// `drop_entry` (default off): while active, every second 1/32 of the table is scanned and
    /// half-open entries are dropped (docs/ipvs-semantics.md §4.6).
    pub drop_entry: DefenceMode,
    /// `sloppy_tcp`: create entries from any non-RST TCP packet, not only SYN.
    pub sloppy_tcp: bool,
    /// Table fill, in percent, above which automatic defences switch on; they switch back off
    /// below it. Our analogue of `amemthresh`.
    pub defence_fill_percent: u8,
    /// Per-state idle timeouts (`ipvsadm --set tcp tcpfin udp` changes three of them).
    pub timeouts: TcpTimeouts,
    /// Generated replies (TCP RST, ICMP/ICMPv6 errors, echo replies) a second, all
    /// destinations together: Linux's `net.ipv4.icmp_msgs_per_sec` (default 1000); 0 = no
    /// global limit. `--reply-rate N`. Replies over the limit are counted drops
    /// ([`DropReason::ReplyRateLimited`](crate::DropReason::ReplyRateLimited)).
    pub reply_rate_per_sec: u32,
    /// How many replies the global limit lets out at once: Linux's `icmp_msgs_burst` (default
    /// 50). With a non-zero rate, 0 lets none out. `--reply-burst N`.
    pub reply_burst: u32,
    /// Milliseconds between replies to one destination prefix (/24 for IPv4, /64 for IPv6),
    /// with a burst of 6: Linux's `icmp_ratelimit` (default 1000) and `XRLIM_BURST_FACTOR`;
    /// 0 = no per-prefix limit. `--reply-peer-interval MS`.
    pub reply_peer_interval_ms: u32,
    /// The sync master sends an entry at its `sync_threshold`th incoming packet and every
    /// `sync_period` packets after (IPVS's `sync_threshold` sysctl, default 3 and 50; period 0
    /// = once). `--sync-threshold N`, `--sync-period N`. IPVS refuses a threshold at or above
    /// a non-zero period; lb takes it (then the packet rule never fires and only state changes
    /// are sent), so the two lines apply in either order.
    pub sync_threshold: u8,
    /// See [`sync_threshold`](Self::sync_threshold).
    pub sync_period: u8,
    /// The message format the sync master sends: 1 (default) or 0 (`sync_version`).
    /// `--sync-version 0|1`.
    pub sync_version: u8,
    /// The most half-open TCP entries (SYN_RECV or SYNACK: the client's handshake not
    /// completed) one client /24 (IPv4) or /64 (IPv6) may hold, in percent of the table's
    /// capacity (at least one entry); a new connection over it is a counted drop
    /// ([`DropReason::EmbryonicPrefixLimit`](crate::DropReason::EmbryonicPrefixLimit)).
    /// Default 10; 0 = no limit (and nothing counted), 100 = counted, never binding.
    /// `--embryonic-prefix-share PERCENT` (docs/ipvs-semantics.md §4.6, "A full table").
    pub embryonic_prefix_share: u8,
    /// Whether the frontend carries direct routing (`-g`): it sends a
    /// [`Verdict::ToServer`](crate::Verdict::ToServer) packet to the link-layer address of
    /// [`Transmit::dst`](crate::Transmit::dst) as next hop, whatever the packet's own
    /// destination (a DR packet still goes to the VIP). A frontend that routes on the packet's
    /// destination (a TUN device) cannot, and leaves it off: then
    /// [`Balancer::apply`](crate::Balancer::apply) refuses `-g` real servers. Default false.
    pub direct_routing: bool,
    /// The outer source address of IPv4 tunnels (`-i` to an IPv4 real server): the frontend's
    /// own address toward the real servers (lb-tun: `--tunnel-source`; lb-embedded: its
    /// interface address). Without it [`Balancer::apply`](crate::Balancer::apply) refuses
    /// IPv4 tunnel servers. Default none.
    pub tunnel_source_v4: Option<Ipv4Addr>,
    /// The same for IPv6 tunnels.
    pub tunnel_source_v6: Option<Ipv6Addr>,
    /// The path MTU toward the real servers, in bytes, for the methods whose packets grow or
    /// must fit the real servers' link as they are (tunnels, direct routing; NAT packets are
    /// the frontend's to fit, as a router's). A packet that would exceed it is answered as the
    /// kernel answers it: an IPv4 packet with DF gets ICMP "fragmentation needed" with the MTU
    /// left for it (this MTU minus the tunnel headers), an IPv6 packet ICMPv6 "packet too big"
    /// (at least 1,280); an IPv4 packet without DF goes on, its outer header without DF too,
    /// for the path to fragment. Default 1,500; 0 = no check.
    pub path_mtu: u16,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            conn_reuse_mode: ConnReuseMode::DEFAULT,
            expire_nodest_conn: true,
            expire_quiescent_template: false,
            secure_tcp: DefenceMode::Off,
            drop_entry: DefenceMode::Off,
            sloppy_tcp: false,
            defence_fill_percent: 90,
            timeouts: TcpTimeouts::DEFAULT,
            reply_rate_per_sec: 1000,
            reply_burst: 50,
            reply_peer_interval_ms: 1000,
            sync_threshold: 3,
            sync_period: 50,
            sync_version: 1,
            embryonic_prefix_share: 10,
            direct_routing: false,
            tunnel_source_v4: None,
            tunnel_source_v6: None,
            path_mtu: 1500,
        }
    }
}

impl Settings {
    /// Whether a defence is automatic (its level follows the table's fill, re-evaluated every
    /// second) or always on (`drop_entry`'s scan runs every second).
    pub(crate) fn defence_timer(&self) -> bool {
        matches!(self.secure_tcp, DefenceMode::Auto | DefenceMode::AutoActive)
            || self.drop_entry != DefenceMode::Off
    }
}

/// IPVS's `conn_reuse_mode` sysctl, 0..=3 (docs/ipvs-semantics.md §3.1): 0 lets a SYN that
/// reuses a client port follow its old entry; any other value reschedules it when the entry is
/// in TIME_WAIT or CLOSE; bit 0x2 (2 or 3) also when a DR/tunnel entry is in FIN_WAIT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnReuseMode(u8);

impl ConnReuseMode {
    /// 0: no rescheduling on port reuse.
    pub const OFF: ConnReuseMode = ConnReuseMode(0);
    /// 1, the default: reschedule a SYN whose entry is in TIME_WAIT or CLOSE.
    pub const DEFAULT: ConnReuseMode = ConnReuseMode(1);
    /// 2: also reschedule on a DR/tunnel entry in FIN_WAIT.
    pub const FIN_WAIT: ConnReuseMode = ConnReuseMode(2);

    /// The mode for the sysctl value `v`; `None` above 3 (as ipvsadm refuses it).
    pub const fn new(v: u8) -> Option<ConnReuseMode> {
        if v <= 3 {
            Some(ConnReuseMode(v))
        } else {
            None
        }
    }

    /// The sysctl value (what `ipvsadm -S` prints).
    pub const fn value(self) -> u8 {
        self.0
    }

    /// Whether a SYN on a TIME_WAIT/CLOSE entry is rescheduled (any non-zero value).
    pub const fn reschedules(self) -> bool {
        self.0 != 0
    }

    /// Whether a SYN on a DR/tunnel entry in FIN_WAIT is rescheduled too (bit 0x2).
    pub const fn reschedules_fin_wait(self) -> bool {
        self.0 & 2 != 0
    }
}

impl fmt::Display for ConnReuseMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// IPVS's mode for a defence sysctl (`secure_tcp`, `drop_entry`; docs/ipvs-semantics.md §4.6).
/// As in IPVS, an automatic defence moves between [`Auto`](DefenceMode::Auto) and
/// [`AutoActive`](DefenceMode::AutoActive) by itself, so reading the settings back says whether
/// it is on now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum DefenceMode {
    /// 0: never.
    #[default]
    Off,
    /// 1: automatic, currently off (the table is below the fill threshold).
    Auto,
    /// 2: automatic, currently on (the table is above the fill threshold).
    AutoActive,
    /// 3: always on.
    On,
}

impl DefenceMode {
    /// The mode for the sysctl value `v` (0..=3); `None` above 3 (as ipvsadm refuses it).
    pub const fn new(v: u8) -> Option<DefenceMode> {
        match v {
            0 => Some(DefenceMode::Off),
            1 => Some(DefenceMode::Auto),
            2 => Some(DefenceMode::AutoActive),
            3 => Some(DefenceMode::On),
            _ => None,
        }
    }

    /// The sysctl value (what `ipvsadm -S` prints).
    pub const fn value(self) -> u8 {
        self as u8
    }

    /// Whether the defence is in force now.
    pub const fn active(self) -> bool {
        matches!(self, DefenceMode::AutoActive | DefenceMode::On)
    }
}

impl fmt::Display for DefenceMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.value())
    }
}
