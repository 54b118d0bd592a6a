//! Typed configuration: what `ipvsadm -A/-E` and `-a/-e` say, shared by the ipvsadm grammar, the
//! director, the frontends and the control socket.

use core::fmt;
use core::net::SocketAddr;

use crate::addr::Protocol;

/// How a virtual service is identified.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ServiceKey {
    /// `-t|-u VIP:PORT`: protocol, virtual address and port.
    Addr {
        /// TCP (`-t`) or UDP (`-u`).
        proto: Protocol,
        /// Virtual address and port.
        vip: SocketAddr,
    },
    /// `-f MARK`: a firewall mark the frontend supplies with each packet. `v6` selects the
    /// address family of the service (`-6` in ipvsadm).
    Fwmark {
        /// The mark.
        mark: u32,
        /// An IPv6 service (`-6`).
        v6: bool,
    },
}

impl ServiceKey {
    /// A TCP service at `vip`.
    pub const fn tcp(vip: SocketAddr) -> Self {
        ServiceKey::Addr {
            proto: Protocol::Tcp,
            vip,
        }
    }

    /// A UDP service at `vip`.
    pub const fn udp(vip: SocketAddr) -> Self {
        ServiceKey::Addr {
            proto: Protocol::Udp,
            vip,
        }
    }

    /// Whether the service is IPv6.
    pub fn is_ipv6(&self) -> bool {
        match self {
            ServiceKey::Addr { vip, .. } => vip.is_ipv6(),
            ServiceKey::Fwmark { v6, .. } => *v6,
        }
    }
}

/// Prints as ipvsadm's `-t 10.0.0.1:80`, `-u [::1]:53` or `-f 7`.
impl fmt::Display for ServiceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServiceKey::Addr { proto, vip } => {
                let flag = match proto {
                    Protocol::Tcp => "-t",
                    Protocol::Udp => "-u",
                };
                write!(f, "{flag} {vip}")
            }
            ServiceKey::Fwmark { mark, .. } => write!(f, "-f {mark}"),
        }
    }
}

/// The fourteen IPVS schedulers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum SchedulerKind {
    /// Round robin (§5.1).
    Rr,
    /// Weighted round robin (§5.2).
    Wrr,
    /// Least connection (§5.3).
    Lc,
    /// Weighted least connection (§5.4), ipvsadm's default.
    #[default]
    Wlc,
    /// Shortest expected delay (§5.5).
    Sed,
    /// Never queue (§5.6).
    Nq,
    /// Locality-based least connection (§5.7).
    Lblc,
    /// Locality-based least connection with replication (§5.8).
    Lblcr,
    /// Destination hashing (§5.9).
    Dh,
    /// Source hashing (§5.10).
    Sh,
    /// Maglev hashing (§5.11).
    Mh,
    /// Weighted failover (§5.12).
    Fo,
    /// Weighted overflow (§5.13).
    Ovf,
    /// Weighted random power of two choices (§5.14).
    Twos,
}

impl SchedulerKind {
    /// Every scheduler, in the order of the reference's chapter 5.
    pub const ALL: [SchedulerKind; 14] = [
        SchedulerKind::Rr,
        SchedulerKind::Wrr,
        SchedulerKind::Lc,
        SchedulerKind::Wlc,
        SchedulerKind::Sed,
        SchedulerKind::Nq,
        SchedulerKind::Lblc,
        SchedulerKind::Lblcr,
        SchedulerKind::Dh,
        SchedulerKind::Sh,
        SchedulerKind::Mh,
        SchedulerKind::Fo,
        SchedulerKind::Ovf,
        SchedulerKind::Twos,
    ];

    /// The name ipvsadm uses (`-s NAME`).
    pub const fn name(self) -> &'static str {
        match self {
            SchedulerKind::Rr => "rr",
            SchedulerKind::Wrr => "wrr",
            SchedulerKind::Lc => "lc",
            SchedulerKind::Wlc => "wlc",
            SchedulerKind::Sed => "sed",
            SchedulerKind::Nq => "nq",
            SchedulerKind::Lblc => "lblc",
            SchedulerKind::Lblcr => "lblcr",
            SchedulerKind::Dh => "dh",
            SchedulerKind::Sh => "sh",
            SchedulerKind::Mh => "mh",
            SchedulerKind::Fo => "fo",
            SchedulerKind::Ovf => "ovf",
            SchedulerKind::Twos => "twos",
        }
    }

    /// The scheduler called `name`, if there is one.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }

    /// Whether the scheduler keeps a lookup table (sh, dh, mh) sized by `table_size`.
    pub const fn has_table(self) -> bool {
        matches!(
            self,
            SchedulerKind::Sh | SchedulerKind::Dh | SchedulerKind::Mh
        )
    }
}

impl fmt::Display for SchedulerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Scheduler flags (`-b`). In IPVS `sh-fallback`/`mh-fallback` are the same bit (SCHED1) and
/// `sh-port`/`mh-port` another (SCHED2); we keep IPVS's bits and its names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct SchedFlags {
    /// SCHED1: `sh-fallback` / `mh-fallback`.
    pub fallback: bool,
    /// SCHED2: `sh-port` / `mh-port`.
    pub port: bool,
}

impl SchedFlags {
    /// Sets the flag called `name` (`sh-fallback`, `sh-port`, `mh-fallback`, `mh-port`);
    /// false if there is no such flag.
    pub fn set_by_name(&mut self, name: &str) -> bool {
        match name {
            "sh-fallback" | "mh-fallback" => self.fallback = true,
            "sh-port" | "mh-port" => self.port = true,
            _ => return false,
        }
        true
    }
}

/// Persistence (`-p [timeout] [-M netmask]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Persistence {
    /// Template timeout in seconds (ipvsadm's default is 300).
    pub timeout_secs: u32,
    /// Client address prefix length that shares a template (`-M`): 32 (IPv4) or 128 (IPv6)
    /// by default.
    pub prefix: u8,
}

impl Persistence {
    /// The persistence netmask as ipvsadm prints it for an IPv4 service (`-M 255.255.255.0`
    /// for a /24).
    pub fn netmask(&self) -> core::net::Ipv4Addr {
        crate::addr::prefix_netmask(self.prefix)
    }
}

/// A virtual service's configuration (`-A`/`-E`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ServiceConfig {
    /// How packets find the service.
    pub key: ServiceKey,
    /// Its scheduler (`-s`).
    pub scheduler: SchedulerKind,
    /// Scheduler flags (`-b`).
    pub flags: SchedFlags,
    /// Persistence (`-p`, `-M`), if any.
    pub persistence: Option<Persistence>,
    /// One-packet scheduling (`-o`); applies to UDP only.
    pub one_packet: bool,
    /// Size of the sh/dh/mh table; `None` picks IPVS's default (sh 256, dh 256, mh 4093).
    /// mh takes one of the kernel's primes, sh a power of two (16..=2^20).
    pub table_size: Option<u32>,
    /// Mid-flow pickup (`--sloppy`, our extension): any TCP segment without RST may create an
    /// entry for this service, not only a SYN; IPVS's global `sloppy_tcp`
    /// ([`Settings::sloppy_tcp`](crate::Settings::sloppy_tcp)) for one service. Safe with a
    /// consistent-hash scheduler (`mh`, `sh`) or connection sync: see docs/ipvs-semantics.md
    /// §4.10, "Mid-flow pickup".
    pub sloppy_tcp: bool,
}

impl ServiceConfig {
    /// A service with ipvsadm's defaults: wlc, no flags, no persistence.
    pub const fn new(key: ServiceKey) -> Self {
        ServiceConfig {
            key,
            scheduler: SchedulerKind::Wlc,
            flags: SchedFlags {
                fallback: false,
                port: false,
            },
            persistence: None,
            one_packet: false,
            table_size: None,
            sloppy_tcp: false,
        }
    }
}

/// How packets reach a real server (IPVS's three forwarding methods), chosen per real server:
/// one service may mix them.
///
/// `repr(u8)` with `Masq` as tag 0: an unused server slot (`RealServer::EMPTY`, NAT) is then all
/// zero bits, so the director's storage can live in `.bss` (without it the tag would sit in a
/// niche of `TunnelKind`, non-zero).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(u8)]
pub enum ForwardMethod {
    /// `-m`: NAT (masquerading): the destination becomes the real server's address and port,
    /// and its replies come back through the balancer.
    Masq,
    /// `-g`: direct routing (gatewaying), ipvsadm's default: the packet is sent unchanged with
    /// the real server as next hop; replies go straight to the client.
    #[default]
    Route,
    /// `-i`: tunnelling (IP-in-IP, GUE or GRE): the packet is encapsulated toward the real
    /// server; replies go straight to the client.
    Tunnel(TunnelKind),
}

impl ForwardMethod {
    /// ipvsadm's flag (`-m`, `-g`, `-i`).
    pub const fn flag(self) -> &'static str {
        match self {
            ForwardMethod::Masq => "-m",
            ForwardMethod::Route => "-g",
            ForwardMethod::Tunnel(_) => "-i",
        }
    }

    /// ipvsadm `-L`'s column text.
    pub const fn name(self) -> &'static str {
        match self {
            ForwardMethod::Masq => "Masq",
            ForwardMethod::Route => "Route",
            ForwardMethod::Tunnel(_) => "Tunnel",
        }
    }

    /// Whether the method is tunnelling, of any kind.
    pub const fn is_tunnel(self) -> bool {
        matches!(self, ForwardMethod::Tunnel(_))
    }
}

/// A tunnel's encapsulation (`--tun-type`, `--tun-port`, `--tun-nocsum|--tun-csum|--tun-remcsum`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum TunnelKind {
    /// `--tun-type ipip`, the default: IPv4 or IPv6 in IP (protocol 4 or 41).
    #[default]
    Ipip,
    /// `--tun-type gue --tun-port PORT`: Generic UDP Encapsulation to UDP port `port` (never 0).
    Gue {
        /// The real server's GUE port (`--tun-port`).
        port: u16,
        /// The outer UDP checksum.
        csum: GueCsum,
    },
    /// `--tun-type gre`: GRE without key or sequence number.
    Gre {
        /// `--tun-csum`: the GRE header carries a checksum (`--tun-nocsum`: not).
        csum: bool,
    },
}

/// GUE's checksum option.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum GueCsum {
    /// `--tun-nocsum`, the default: outer UDP checksum 0.
    #[default]
    None,
    /// `--tun-csum`: a full outer UDP checksum.
    Csum,
    /// `--tun-remcsum`: remote checksum offload for packets whose inner checksum is not yet
    /// computed; for a packet whose checksum is complete (every packet a frontend hands over)
    /// it is exactly `--tun-csum` on the wire, as in the kernel.
    RemCsum,
}

impl TunnelKind {
    /// `--tun-type`'s value.
    pub const fn type_name(self) -> &'static str {
        match self {
            TunnelKind::Ipip => "ipip",
            TunnelKind::Gue { .. } => "gue",
            TunnelKind::Gre { .. } => "gre",
        }
    }
}

/// Prints as ipvsadm `-L --tun-info`'s column: `ipip`, `gue:6080:-c` (`+c`, `r+c`), `gre:-c`
/// (`+c`).
impl fmt::Display for TunnelKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TunnelKind::Ipip => f.write_str("ipip"),
            TunnelKind::Gue { port, csum } => {
                let c = match csum {
                    GueCsum::None => "-c",
                    GueCsum::Csum => "+c",
                    GueCsum::RemCsum => "r+c",
                };
                write!(f, "gue:{port}:{c}")
            }
            TunnelKind::Gre { csum } => f.write_str(if *csum { "gre:+c" } else { "gre:-c" }),
        }
    }
}

/// A real server's configuration (`-a`/`-e`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ServerConfig {
    /// Address and port (`-r`).
    pub addr: SocketAddr,
    /// 0..=65535; 0 makes the server quiescent (no new connections).
    pub weight: u32,
    /// Upper connection threshold (`-x`); 0 = none.
    pub u_threshold: u32,
    /// Lower connection threshold (`-y`); 0 = none.
    pub l_threshold: u32,
    /// Forwarding method (`-m`, `-g`, `-i`).
    pub method: ForwardMethod,
}

impl ServerConfig {
    /// The largest weight IPVS accepts.
    pub const MAX_WEIGHT: u32 = 65535;

    /// A server with ipvsadm's defaults: weight 1, no thresholds, the given method.
    pub const fn new(addr: SocketAddr, method: ForwardMethod) -> Self {
        ServerConfig {
            addr,
            weight: 1,
            u_threshold: 0,
            l_threshold: 0,
            method,
        }
    }
}

/// IPVS's protocol timeouts that `ipvsadm --set tcp tcpfin udp` changes, in seconds; 0 in a
/// `--set` command keeps the current value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Timeouts {
    /// ESTABLISHED.
    pub tcp: u32,
    /// FIN_WAIT.
    pub tcp_fin: u32,
    /// UDP.
    pub udp: u32,
}

/// Errors from configuration calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// The service already exists.
    ServiceExists,
    /// No such service.
    NoSuchService,
    /// The real server already exists in that service.
    ServerExists,
    /// No such real server in that service.
    NoSuchServer,
    /// All service slots are in use.
    TooManyServices {
        /// The service slots of the director's storage.
        max: usize,
    },
    /// The service has as many real servers as its storage holds (deleted servers that
    /// connections still reference included).
    TooManyServers {
        /// Server slots per service.
        max: usize,
    },
    /// Weight above 65535.
    WeightOutOfRange {
        /// The weight asked for.
        weight: u32,
    },
    /// `-y` above `-x`.
    ThresholdOrder {
        /// The lower threshold (`-y`).
        lower: u32,
        /// The upper threshold (`-x`).
        upper: u32,
    },
    /// The sh/dh/mh table size is not one the scheduler accepts (sh and dh: a power of two
    /// from 2 to 2^20; mh: one of its primes).
    BadTableSize {
        /// The scheduler.
        scheduler: SchedulerKind,
        /// The size asked for (or the scheduler's default).
        size: u32,
    },
    /// The sh/dh/mh table is larger than the director's storage holds per service.
    TableTooLarge {
        /// The size asked for (or the scheduler's default).
        size: u32,
        /// Table slots per service in the storage ([`Limits`](crate::Limits)).
        slots: usize,
    },
    /// The real server's address family differs from the service's.
    FamilyMismatch,
    /// mh cannot hold more real servers than its table has slots.
    TooManyServersForTable {
        /// Servers the service would have.
        servers: usize,
        /// Slots of its mh table (M).
        slots: u32,
    },
    /// A port-0 service must be persistent.
    PortZeroNeedsPersistence,
    /// A persistence netmask longer than the address.
    BadNetmask {
        /// The prefix length asked for.
        prefix: u8,
        /// The address's length in bits (32 or 128).
        max: u8,
    },
    /// The datapath does not support this (e.g. a forwarding method other than NAT).
    Unsupported(&'static str),
}

/// Says what was refused and the numbers that explain it, e.g. `mh table size 4093 exceeds the
/// 1021 table slots per service of this director's storage`.
impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ConfigError::ServiceExists => f.write_str("service already exists"),
            ConfigError::NoSuchService => f.write_str("no such service"),
            ConfigError::ServerExists => f.write_str("destination already exists"),
            ConfigError::NoSuchServer => f.write_str("no such destination"),
            ConfigError::TooManyServices { max } => {
                write!(
                    f,
                    "no room for another service: all {max} service slots are in use"
                )
            }
            ConfigError::TooManyServers { max } => write!(
                f,
                "no room for another destination: the service has all {max} server slots in use \
                 (deleted servers still referenced by connections included)"
            ),
            ConfigError::WeightOutOfRange { weight } => {
                write!(f, "weight {weight} out of range (0..=65535)")
            }
            ConfigError::ThresholdOrder { lower, upper } => write!(
                f,
                "lower threshold {lower} (-y) is above the upper threshold {upper} (-x)"
            ),
            ConfigError::BadTableSize { scheduler, size } => {
                let takes = match scheduler {
                    SchedulerKind::Mh => "one of its primes (e.g. 251, 509, 1021, 4093, 65521)",
                    _ => "a power of two from 2 to 1048576",
                };
                write!(
                    f,
                    "{scheduler} table size {size} is not supported: {scheduler} takes {takes}"
                )
            }
            ConfigError::TableTooLarge { size, slots } => write!(
                f,
                "table size {size} exceeds the {slots} table slots per service of this director's \
                 storage"
            ),
            ConfigError::FamilyMismatch => {
                f.write_str("real server and service address families differ")
            }
            ConfigError::TooManyServersForTable { servers, slots } => write!(
                f,
                "{servers} destinations do not fit an mh table of {slots} slots"
            ),
            ConfigError::PortZeroNeedsPersistence => {
                f.write_str("a port-0 service must be persistent")
            }
            ConfigError::BadNetmask { prefix, max } => write!(
                f,
                "persistence netmask /{prefix} is longer than the address ({max} bits)"
            ),
            ConfigError::Unsupported(what) => write!(f, "not supported: {what}"),
        }
    }
}

impl core::error::Error for ConfigError {}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::ToString;

    /// ipvsadm's `-L` Forward column and `--tun-info` column (`fwd_name`, `fwd_tun_info`).
    #[test]
    fn methods_and_tunnels_print_as_ipvsadm_lists_them() {
        let gue = |port, csum| TunnelKind::Gue { port, csum };
        let cases = [
            (TunnelKind::Ipip, "ipip", "ipip"),
            (gue(6080, GueCsum::None), "gue", "gue:6080:-c"),
            (gue(1, GueCsum::Csum), "gue", "gue:1:+c"),
            (gue(65535, GueCsum::RemCsum), "gue", "gue:65535:r+c"),
            (TunnelKind::Gre { csum: false }, "gre", "gre:-c"),
            (TunnelKind::Gre { csum: true }, "gre", "gre:+c"),
        ];
        for (kind, ty, info) in cases {
            assert_eq!((kind.type_name(), kind.to_string().as_str()), (ty, info));
            let m = ForwardMethod::Tunnel(kind);
            assert_eq!((m.flag(), m.name(), m.is_tunnel()), ("-i", "Tunnel", true));
        }
        assert_eq!(
            (ForwardMethod::Route.flag(), ForwardMethod::Route.name()),
            ("-g", "Route")
        );
        assert_eq!(
            (ForwardMethod::Masq.flag(), ForwardMethod::Masq.name()),
            ("-m", "Masq")
        );
        assert_eq!(ForwardMethod::default(), ForwardMethod::Route);
        assert_eq!(TunnelKind::default(), TunnelKind::Ipip);
    }
}
