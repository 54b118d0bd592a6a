//! The ipvsadm command grammar: one `no_std`, allocation-free parser and writer shared by the
//! gateway's configuration file, `lbadm` (argv), the control socket (one text line per command),
//! embedded users and the fuzz target.
//!
//! The grammar is ipvsadm v1.31's (\[man\] in `docs/ipvs-semantics.md`; its option table, defaults and
//! checks follow `ipvsadm.c`'s `parse_options`/`process_options`), so the output of
//! `ipvsadm-save -n` is accepted unchanged, and [`write_save`] prints the same format back.
//!
//! * [`parse_line`] reads one line (whitespace-separated; empty lines and `#` comments give
//!   `Ok(None)`); [`parse_args`] reads an argv without the program name.
//! * Both give a typed [`Command`], or a [`ParseError`] naming the offending token and why.
//! * [`write_service`], [`write_server`] and [`write_save`] print `ipvsadm -S -n` lines;
//!   [`Command`]'s `Display` prints any command in a form [`parse_line`] reads back.
//!
//! What ipvsadm does and we do the same way (docs/ipvs-semantics.md §1, §4, \[man\]):
//! * defaults: scheduler `wlc` on `-A`/`-E`, persistence timeout 300 s for a bare `-p`, netmask
//!   /32 (IPv4) or /128 (IPv6), weight 1, forwarding `-g`;
//! * `-E` and `-e` replace the whole configuration: omitted options take their defaults again;
//! * `-r` without a port takes the service port; for `-g`/`-i` on a non-fwmark service the
//!   server port is forced to the service port, as ipvsadm does;
//! * checks: a port-0 service must be persistent, `-o` is for UDP (or fwmark) services only,
//!   a real server of another address family needs `-i`, `-y` may not exceed `-x`, `sh-*`
//!   flags need `sh` and `mh-*` flags need `mh`;
//! * `-b flag-1,flag-2` (what ipvsadm-save prints for other schedulers) are the same two bits.
//!
//! Where we differ, on purpose:
//! * host and port **names are refused** (no resolver in a `no_std` core): numeric addresses
//!   only, which is what `ipvsadm-save -n` prints;
//! * `-M` without `-p` is refused (ipvsadm silently keeps a mask that has no effect);
//! * `--sctp-service` and `--pe` are refused as unsupported;
//! * `-S` also prints the thresholds (`-x N -y N`, when non-zero) and `--table-size M`, which
//!   ipvsadm-save omits.
//!
//! Our extensions (not ipvsadm options):
//! * `--table-size M` on `-A`/`-E`: the sh/dh/mh lookup table size (IPVS fixes it at build
//!   time); only with `-s sh|dh|mh`. Whether the size suits the scheduler is the director's
//!   check (`ConfigError::BadTableSize`).
//! * `--sloppy` on `-A`/`-E` (TCP and fwmark services): mid-flow pickup, IPVS's global
//!   `sloppy_tcp` for one service ([`ServiceConfig::sloppy_tcp`]); `-S` prints it back.
//! * Settings, each a command of its own that sets what IPVS keeps in sysctls (docs/ipvs-semantics.md
//!   §3, §4): `--conn-reuse-mode 0..3`, `--expire-nodest-conn 0|1`,
//!   `--expire-quiescent-template 0|1`, `--secure-tcp 0..3`, `--drop-entry 0..3`,
//!   `--sloppy-tcp 0|1`; and settings IPVS has no sysctl for: the reply rate limit
//!   (`--reply-rate N`, `--reply-burst N`, `--reply-peer-interval MS`) and the per-prefix share
//!   of half-open entries (`--embryonic-prefix-share 0..100`, docs/ipvs-semantics.md §4.6, "A
//!   full table").
#![warn(missing_docs)]

use core::fmt;
use core::net::SocketAddr;

use crate::config::{ConfigError, ServerConfig, ServiceConfig, ServiceKey, Timeouts};
use crate::sync::daemon::{DaemonConfig, SyncRole};

mod parse;
mod save;

pub use parse::{parse_args, parse_line};
pub use save::{write_save, write_server, write_service};

/// The longest timeout ipvsadm accepts for `-p` and `--set`, in seconds (31 days).
pub const MAX_TIMEOUT_SECS: u32 = 86400 * 31;

/// The persistence timeout a bare `-p` gives, in seconds.
pub const DEFAULT_PERSISTENCE_SECS: u32 = 300;

/// One ipvsadm command, typed. Produced by [`parse_line`]/[`parse_args`]; applying it is the
/// director's job. `Copy`, 88 bytes on 64-bit targets: cheap to send through a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// `-A`: add a virtual service.
    AddService(ServiceConfig),
    /// `-E`: replace a virtual service's configuration (omitted options are defaults).
    EditService(ServiceConfig),
    /// `-D`: delete a virtual service.
    DelService(ServiceKey),
    /// `-a`: add a real server to a service.
    AddServer(ServiceKey, ServerConfig),
    /// `-e`: replace a real server's configuration (omitted options are defaults).
    EditServer(ServiceKey, ServerConfig),
    /// `-d`: delete the real server at this address from a service.
    DelServer(ServiceKey, SocketAddr),
    /// `-C`: delete every service.
    Clear,
    /// `-Z [service]`: zero the counters of one service, or of all.
    Zero(Option<ServiceKey>),
    /// `--set tcp tcpfin udp`: change the three protocol timeouts; 0 keeps the current value.
    SetTimeouts(Timeouts),
    /// One of our setting extensions (`--conn-reuse-mode N`, ...).
    Set(Setting),
    /// `-L`/`-l`: list.
    List(ListOptions),
    /// `-S [-n]`: print the table as commands (names are never resolved here, so `numeric`
    /// only records what was asked).
    Save {
        /// `-n` was given.
        numeric: bool,
    },
    /// `-R`: read commands, one a line, from the input that follows.
    Restore,
    /// `--start-daemon master|backup …`: start a connection-sync daemon (docs/sync.md §4).
    StartDaemon(DaemonConfig),
    /// `--stop-daemon master|backup`.
    StopDaemon(SyncRole),
}

/// A director-wide setting; IPVS keeps these in sysctls (docs/ipvs-semantics.md §4 table of sysctls).
/// Spelled as our extension options, e.g. `--conn-reuse-mode 1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Setting {
    /// `--conn-reuse-mode 0..=3` (docs/ipvs-semantics.md §3).
    ConnReuseMode(u8),
    /// `--expire-nodest-conn 0|1`.
    ExpireNodestConn(bool),
    /// `--expire-quiescent-template 0|1`.
    ExpireQuiescentTemplate(bool),
    /// `--secure-tcp 0..=3` (docs/ipvs-semantics.md §4.6).
    SecureTcp(u8),
    /// `--drop-entry 0..=3` (docs/ipvs-semantics.md §4.6).
    DropEntry(u8),
    /// `--sloppy-tcp 0|1`.
    SloppyTcp(bool),
    /// `--reply-rate N`: generated replies a second, globally (`icmp_msgs_per_sec`; 0 = no
    /// limit). [`Settings::reply_rate_per_sec`](crate::Settings::reply_rate_per_sec).
    ReplyRate(u32),
    /// `--reply-burst N`: the global limit's burst (`icmp_msgs_burst`).
    /// [`Settings::reply_burst`](crate::Settings::reply_burst).
    ReplyBurst(u32),
    /// `--reply-peer-interval MS`: milliseconds between replies to one /24 or /64
    /// (`icmp_ratelimit`; 0 = no limit).
    /// [`Settings::reply_peer_interval_ms`](crate::Settings::reply_peer_interval_ms).
    ReplyPeerInterval(u32),
    /// `--sync-threshold N` (0–255, default 3): the sync master sends an entry at its Nth
    /// incoming packet (`sync_threshold`'s first value).
    SyncThreshold(u8),
    /// `--sync-period N` (0–255, default 50): … and every N packets after
    /// (`sync_threshold`'s second value; 0 = only once).
    SyncPeriod(u8),
    /// `--sync-version 0|1` (default 1): the message format the master sends.
    SyncVersion(u8),
    /// `--embryonic-prefix-share 0..=100`: the most half-open TCP entries one /24 or /64 may
    /// hold, in percent of the table's capacity (0 = no limit).
    /// [`Settings::embryonic_prefix_share`](crate::Settings::embryonic_prefix_share).
    EmbryonicPrefixShare(u8),
}

impl Setting {
    /// The option that spells this setting (`--conn-reuse-mode`, ...).
    pub const fn option(&self) -> &'static str {
        match self {
            Setting::ConnReuseMode(_) => "--conn-reuse-mode",
            Setting::ExpireNodestConn(_) => "--expire-nodest-conn",
            Setting::ExpireQuiescentTemplate(_) => "--expire-quiescent-template",
            Setting::SecureTcp(_) => "--secure-tcp",
            Setting::DropEntry(_) => "--drop-entry",
            Setting::SloppyTcp(_) => "--sloppy-tcp",
            Setting::ReplyRate(_) => "--reply-rate",
            Setting::ReplyBurst(_) => "--reply-burst",
            Setting::ReplyPeerInterval(_) => "--reply-peer-interval",
            Setting::SyncThreshold(_) => "--sync-threshold",
            Setting::SyncPeriod(_) => "--sync-period",
            Setting::SyncVersion(_) => "--sync-version",
            Setting::EmbryonicPrefixShare(_) => "--embryonic-prefix-share",
        }
    }

    /// The setting's value as a number (booleans are 0 or 1).
    pub const fn value(&self) -> u32 {
        match *self {
            Setting::ConnReuseMode(v)
            | Setting::SecureTcp(v)
            | Setting::DropEntry(v)
            | Setting::SyncThreshold(v)
            | Setting::SyncPeriod(v)
            | Setting::SyncVersion(v)
            | Setting::EmbryonicPrefixShare(v) => v as u32,
            Setting::ExpireNodestConn(b)
            | Setting::ExpireQuiescentTemplate(b)
            | Setting::SloppyTcp(b) => b as u32,
            Setting::ReplyRate(v) | Setting::ReplyBurst(v) | Setting::ReplyPeerInterval(v) => v,
        }
    }
}

/// What `-L` shows and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ListOptions {
    /// `-n`: numeric addresses and ports.
    pub numeric: bool,
    /// `--exact`: exact numbers instead of K/M/G abbreviations.
    pub exact: bool,
    /// Which table to show.
    pub view: ListView,
    /// Only this service (`-L -t VIP:PORT`); not with `-c` or `--timeout`.
    pub service: Option<ServiceKey>,
}

/// The table `-L` shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ListView {
    /// Services and their real servers (plain `-L`).
    #[default]
    Services,
    /// `--stats`: packet and byte counters.
    Stats,
    /// `--rate`: rates.
    Rate,
    /// `--thresholds`: upper and lower thresholds.
    Thresholds,
    /// `--tun-info`: each real server's forwarding method and tunnel (`ipip`, `gue:6080:-c`,
    /// `gre:+c`; `n/a` when it is not a tunnel).
    TunInfo,
    /// `--timeout`: the `--set` timeouts.
    Timeouts,
    /// `-c`: the connection entries.
    Connections,
    /// `--daemon`: the sync daemons.
    Daemon,
}

/// Why a command line was refused: which token, where, and why (112 bytes on 64-bit targets).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// Index of the offending token, from 0 (argv without the program name). For a missing
    /// option this is the command's token.
    pub token: usize,
    /// Byte range of the offending text in the line ([`parse_line`] only; `None` for argv).
    pub span: Option<(usize, usize)>,
    /// The offending text (the value inside `--opt=value` or `-wVALUE`), cut to
    /// [`ParseError::TEXT_CAP`] bytes at a character boundary.
    pub text: heapless::String<{ ParseError::TEXT_CAP }>,
    /// Why.
    pub kind: ParseErrorKind,
}

impl ParseError {
    /// How many bytes of the offending text an error keeps.
    pub const TEXT_CAP: usize = 40;

    /// An error of `kind` at token `token` whose text is `text` (cut to [`Self::TEXT_CAP`]).
    pub fn new(
        token: usize,
        span: Option<(usize, usize)>,
        text: &str,
        kind: ParseErrorKind,
    ) -> Self {
        let mut cut = text.len().min(Self::TEXT_CAP);
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        let mut t = heapless::String::new();
        // Cannot fail: `cut` is at most the capacity.
        let _ = t.push_str(&text[..cut]);
        ParseError {
            token,
            span,
            text: t,
            kind,
        }
    }
}

/// Prints `token 6 "70000": weight out of range (0..=65535)`.
impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "token {} {:?}: {}",
            self.token,
            self.text.as_str(),
            self.kind
        )
    }
}

impl core::error::Error for ParseError {}

/// Why a command line was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ParseErrorKind {
    /// No command option (`-A`, `-a`, `-L`, ...) in the line.
    MissingCommand,
    /// A second command option.
    MultipleCommands,
    /// Not an option of this grammar.
    UnknownOption,
    /// An ipvsadm option lb-core does not support; says which feature.
    Unsupported(&'static str),
    /// The same option twice (or two service options, or two forwarding methods).
    DuplicateOption,
    /// The option needs a value and none follows.
    MissingValue,
    /// `--option=value` for an option that takes no value.
    UnexpectedValue,
    /// A word that is not an option, where none is expected.
    UnexpectedArgument,
    /// The option is not valid with this command (named, e.g. `-A`).
    NotValidFor(&'static str),
    /// The command needs `-t`, `-u` or `-f`.
    MissingService,
    /// The command needs `-r`.
    MissingRealServer,
    /// `--set` needs three timeouts.
    MissingTimeouts,
    /// Two list options that exclude each other (e.g. `--stats` and `--rate`, `-c` and a
    /// service).
    ConflictingOptions,
    /// Not a numeric IPv4 `a.b.c.d[:port]` or IPv6 `[addr]:port` / `[addr]` / `addr`.
    BadAddress,
    /// A host name: only numeric addresses are accepted.
    HostName,
    /// Not a port number in 0..=65535.
    BadPort,
    /// A service name as port: only numeric ports are accepted.
    PortName,
    /// Not a decimal number; says of what.
    NotANumber(&'static str),
    /// A number outside its range; says of what and the range.
    OutOfRange {
        /// What the number is (`weight`, `fwmark`, ...).
        what: &'static str,
        /// The smallest value accepted.
        min: u32,
        /// The largest value accepted.
        max: u32,
    },
    /// `-6` applies to fwmark (`-f`) services only.
    Ipv6NeedsFwmark,
    /// Not one of the fourteen scheduler names.
    UnknownScheduler,
    /// Not a scheduler flag (`sh-fallback`, `sh-port`, `mh-fallback`, `mh-port`, `flag-1`,
    /// `flag-2`).
    UnknownSchedFlag,
    /// An `sh-*` flag without `-s sh`, or an `mh-*` flag without `-s mh`.
    SchedFlagMismatch,
    /// Not a netmask: a contiguous dotted IPv4 mask or `/N` for IPv4, a prefix length (`N` or
    /// `/N`, 1..=128) for IPv6.
    BadNetmask,
    /// `-M` without `-p`.
    NetmaskNeedsPersistence,
    /// `--table-size` without an sh, dh or mh scheduler.
    TableSizeNeedsHashScheduler,
    /// A port-0 service must be persistent (`-p`).
    PortZeroNeedsPersistence,
    /// `-o` is for UDP and fwmark services only.
    OpsNeedsUdp,
    /// `--sloppy` is for TCP and fwmark services only (every UDP datagram may create an entry).
    SloppyNeedsTcp,
    /// `-y` above `-x`.
    ThresholdOrder,
    /// The real server's address family differs from the service's, without `-i`.
    FamilyMismatch,
    /// `--tun-type`, `--tun-port` or a checksum option without `-i`.
    TunnelTypeNeedsTunnel,
    /// Not a tunnel type (`ipip`, `gue`, `gre`).
    UnknownTunnelType,
    /// `--tun-type gue` without `--tun-port` (or with port 0).
    GueNeedsPort,
    /// A tunnel option the tunnel type does not take: `--tun-port` without GUE, a checksum
    /// option with IPIP, `--tun-remcsum` with GRE.
    TunnelOptionMismatch,
    /// A sync daemon role other than `master` or `backup`.
    BadSyncRole,
    /// Not an interface name (1–15 bytes, no `/` or whitespace).
    BadInterface,
    /// `--mcast-group` is not a multicast or unicast host address (or has a port).
    NotMulticast,
}

impl fmt::Display for ParseErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use ParseErrorKind as K;
        let s = match self {
            K::MissingCommand => {
                "no command (-A, -E, -D, -a, -e, -d, -C, -Z, --set, -L, -S, -R or a setting)"
            }
            K::MultipleCommands => "more than one command",
            K::UnknownOption => "unknown option",
            K::Unsupported(what) => return write!(f, "not supported: {what}"),
            K::DuplicateOption => "option given twice",
            K::MissingValue => "option needs a value",
            K::UnexpectedValue => "option takes no value",
            K::UnexpectedArgument => "unexpected argument",
            K::NotValidFor(cmd) => return write!(f, "option not valid with {cmd}"),
            K::MissingService => "command needs a service (-t, -u or -f)",
            K::MissingRealServer => "command needs a real server (-r)",
            K::MissingTimeouts => "--set needs three timeouts: tcp tcpfin udp",
            K::ConflictingOptions => "conflicts with an earlier list option",
            K::BadAddress => "not a numeric address[:port] (IPv6 as [addr]:port)",
            K::HostName => "host names are not resolved; use a numeric address",
            K::BadPort => "not a port number (0..=65535)",
            K::PortName => "service names are not resolved; use a numeric port",
            K::NotANumber(what) => return write!(f, "{what} is not a decimal number"),
            K::OutOfRange { what, min, max } => {
                return write!(f, "{what} out of range ({min}..={max})")
            }
            K::Ipv6NeedsFwmark => "-6 applies to fwmark services (-f) only",
            K::UnknownScheduler => "unknown scheduler",
            K::UnknownSchedFlag => {
                "unknown scheduler flag (sh-fallback, sh-port, mh-fallback, mh-port, flag-1, flag-2)"
            }
            K::SchedFlagMismatch => "scheduler flag does not belong to this scheduler",
            K::BadNetmask => {
                "bad netmask: a contiguous dotted mask or /N for IPv4, a prefix length 1..=128 for IPv6"
            }
            K::NetmaskNeedsPersistence => "-M needs -p",
            K::TableSizeNeedsHashScheduler => "--table-size needs scheduler sh, dh or mh",
            K::PortZeroNeedsPersistence => "a port-0 service must be persistent (-p)",
            K::OpsNeedsUdp => "one-packet scheduling (-o) is for UDP and fwmark services only",
            K::SloppyNeedsTcp => {
                "mid-flow pickup (--sloppy) is for TCP and fwmark services only"
            }
            K::ThresholdOrder => "lower threshold (-y) above upper threshold (-x)",
            K::FamilyMismatch => {
                "real server and service address families differ (allowed with -i only)"
            }
            K::TunnelTypeNeedsTunnel => "tunnel options (--tun-*) need -i",
            K::UnknownTunnelType => "unknown tunnel type (ipip, gue, gre)",
            K::GueNeedsPort => "--tun-type gue needs --tun-port (1..=65535)",
            K::TunnelOptionMismatch => {
                "option does not apply to this tunnel type (--tun-port: gue only; \
                 --tun-csum, --tun-nocsum: gue and gre; --tun-remcsum: gue only)"
            }
            K::BadSyncRole => "not a sync daemon role (master or backup)",
            K::BadInterface => "not an interface name (1 to 15 bytes, no '/' or spaces)",
            K::NotMulticast => "not a multicast group or unicast host address (no port)",
        };
        f.write_str(s)
    }
}

/// Why a command line was refused: [`parse_line`] did not read it as an ipvsadm command, or
/// [`Balancer::apply`](crate::Balancer::apply) refused the command. Either way nothing was
/// applied. (lb-embedded's `Gateway::apply_line` returns it.)
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LineError {
    /// The line is not an ipvsadm command (the token and why).
    Parse(ParseError),
    /// The command was refused (the numbers that explain it).
    Config(ConfigError),
}

/// Prints the underlying error: `token 6 "70000": weight out of range (0..=65535)` or
/// `no such service`.
impl fmt::Display for LineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LineError::Parse(e) => write!(f, "{e}"),
            LineError::Config(e) => write!(f, "{e}"),
        }
    }
}

impl core::error::Error for LineError {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            LineError::Parse(e) => Some(e),
            LineError::Config(e) => Some(e),
        }
    }
}

impl From<ParseError> for LineError {
    fn from(e: ParseError) -> Self {
        LineError::Parse(e)
    }
}

impl From<ConfigError> for LineError {
    fn from(e: ConfigError) -> Self {
        LineError::Config(e)
    }
}
