//! The option table: every option we know ([`SPECS`]), what it means ([`Flag`]), the slot it is
//! filed in ([`Slot`]), which options each command allows, and the ipvsadm options we refuse.

/// What an option means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Flag {
    AddService,
    EditService,
    DelService,
    AddServer,
    EditServer,
    DelServer,
    Clear,
    Zero,
    SetTimeouts,
    List,
    Save,
    Restore,
    ConnReuseMode,
    ExpireNodestConn,
    ExpireQuiescentTemplate,
    SecureTcp,
    DropEntry,
    SloppyTcp,
    ReplyRate,
    ReplyBurst,
    ReplyPeerInterval,
    SyncThreshold,
    SyncPeriod,
    SyncVersion,
    StartDaemon,
    StopDaemon,
    McastInterface,
    SyncId,
    McastGroup,
    McastPort,
    McastTtl,
    SyncMaxlen,
    Daemon,
    EmbryonicPrefixShare,
    Tcp,
    Udp,
    Fwmark,
    Ipv6,
    Scheduler,
    SchedFlags,
    Persistent,
    Netmask,
    Ops,
    TableSize,
    Sloppy,
    RealServer,
    Masq,
    Route,
    Tunnel,
    Weight,
    UThreshold,
    LThreshold,
    TunType,
    TunPort,
    TunNocsum,
    TunCsum,
    TunRemcsum,
    Numeric,
    Connection,
    Stats,
    Rate,
    Thresholds,
    TunInfo,
    Timeout,
    Exact,
    Sort,
}

/// Where an option is filed; options sharing a slot exclude each other.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Slot {
    Command,
    Service,
    Ipv6,
    Scheduler,
    SchedFlags,
    Persistent,
    Netmask,
    Ops,
    TableSize,
    Sloppy,
    RealServer,
    Method,
    Weight,
    UThreshold,
    LThreshold,
    TunType,
    TunPort,
    TunCsum,
    Numeric,
    Connection,
    Stats,
    Rate,
    Thresholds,
    TunInfo,
    Timeout,
    Exact,
    Sort,
    McastInterface,
    SyncId,
    McastGroup,
    McastPort,
    McastTtl,
    SyncMaxlen,
    Daemon,
}

pub(super) const SLOTS: usize = Slot::Daemon as usize + 1;

pub(super) const ALL_SLOTS: [Slot; SLOTS] = [
    Slot::Command,
    Slot::Service,
    Slot::Ipv6,
    Slot::Scheduler,
    Slot::SchedFlags,
    Slot::Persistent,
    Slot::Netmask,
    Slot::Ops,
    Slot::TableSize,
    Slot::Sloppy,
    Slot::RealServer,
    Slot::Method,
    Slot::Weight,
    Slot::UThreshold,
    Slot::LThreshold,
    Slot::TunType,
    Slot::TunPort,
    Slot::TunCsum,
    Slot::Numeric,
    Slot::Connection,
    Slot::Stats,
    Slot::Rate,
    Slot::Thresholds,
    Slot::TunInfo,
    Slot::Timeout,
    Slot::Exact,
    Slot::Sort,
    Slot::McastInterface,
    Slot::SyncId,
    Slot::McastGroup,
    Slot::McastPort,
    Slot::McastTtl,
    Slot::SyncMaxlen,
    Slot::Daemon,
];

impl Flag {
    pub(super) const fn slot(self) -> Slot {
        use Flag as F;
        match self {
            F::AddService
            | F::EditService
            | F::DelService
            | F::AddServer
            | F::EditServer
            | F::DelServer
            | F::Clear
            | F::Zero
            | F::SetTimeouts
            | F::List
            | F::Save
            | F::Restore
            | F::ConnReuseMode
            | F::ExpireNodestConn
            | F::ExpireQuiescentTemplate
            | F::SecureTcp
            | F::DropEntry
            | F::SloppyTcp
            | F::ReplyRate
            | F::ReplyBurst
            | F::ReplyPeerInterval
            | F::SyncThreshold
            | F::SyncPeriod
            | F::SyncVersion
            | F::StartDaemon
            | F::StopDaemon
            | F::EmbryonicPrefixShare => Slot::Command,
            F::McastInterface => Slot::McastInterface,
            F::SyncId => Slot::SyncId,
            F::McastGroup => Slot::McastGroup,
            F::McastPort => Slot::McastPort,
            F::McastTtl => Slot::McastTtl,
            F::SyncMaxlen => Slot::SyncMaxlen,
            F::Daemon => Slot::Daemon,
            F::Tcp | F::Udp | F::Fwmark => Slot::Service,
            F::Ipv6 => Slot::Ipv6,
            F::Scheduler => Slot::Scheduler,
            F::SchedFlags => Slot::SchedFlags,
            F::Persistent => Slot::Persistent,
            F::Netmask => Slot::Netmask,
            F::Ops => Slot::Ops,
            F::TableSize => Slot::TableSize,
            F::Sloppy => Slot::Sloppy,
            F::RealServer => Slot::RealServer,
            F::Masq | F::Route | F::Tunnel => Slot::Method,
            F::Weight => Slot::Weight,
            F::UThreshold => Slot::UThreshold,
            F::LThreshold => Slot::LThreshold,
            F::TunType => Slot::TunType,
            F::TunPort => Slot::TunPort,
            F::TunNocsum | F::TunCsum | F::TunRemcsum => Slot::TunCsum,
            F::Numeric => Slot::Numeric,
            F::Connection => Slot::Connection,
            F::Stats => Slot::Stats,
            F::Rate => Slot::Rate,
            F::Thresholds => Slot::Thresholds,
            F::TunInfo => Slot::TunInfo,
            F::Timeout => Slot::Timeout,
            F::Exact => Slot::Exact,
            F::Sort => Slot::Sort,
        }
    }

    /// The command's short spelling, for "not valid with -A" messages.
    pub(super) const fn command_name(self) -> &'static str {
        use Flag as F;
        match self {
            F::AddService => "-A",
            F::EditService => "-E",
            F::DelService => "-D",
            F::AddServer => "-a",
            F::EditServer => "-e",
            F::DelServer => "-d",
            F::Clear => "-C",
            F::Zero => "-Z",
            F::SetTimeouts => "--set",
            F::List => "-L",
            F::Save => "-S",
            F::Restore => "-R",
            F::ConnReuseMode => "--conn-reuse-mode",
            F::ExpireNodestConn => "--expire-nodest-conn",
            F::ExpireQuiescentTemplate => "--expire-quiescent-template",
            F::SecureTcp => "--secure-tcp",
            F::DropEntry => "--drop-entry",
            F::SloppyTcp => "--sloppy-tcp",
            F::ReplyRate => "--reply-rate",
            F::ReplyBurst => "--reply-burst",
            F::ReplyPeerInterval => "--reply-peer-interval",
            F::SyncThreshold => "--sync-threshold",
            F::SyncPeriod => "--sync-period",
            F::SyncVersion => "--sync-version",
            F::StartDaemon => "--start-daemon",
            F::StopDaemon => "--stop-daemon",
            F::EmbryonicPrefixShare => "--embryonic-prefix-share",
            _ => "this command",
        }
    }

    /// Whether option slot `slot` may appear with this command (`self` is a command flag).
    /// ipvsadm's `commands_v_options`, restricted to the options we know.
    pub(super) const fn allows(self, slot: Slot) -> bool {
        use Flag as F;
        use Slot as S;
        match self {
            F::AddService | F::EditService => matches!(
                slot,
                S::Service
                    | S::Ipv6
                    | S::Scheduler
                    | S::SchedFlags
                    | S::Persistent
                    | S::Netmask
                    | S::Ops
                    | S::TableSize
                    | S::Sloppy
            ),
            F::DelService | F::Zero => matches!(slot, S::Service | S::Ipv6),
            F::AddServer | F::EditServer => matches!(
                slot,
                S::Service
                    | S::Ipv6
                    | S::RealServer
                    | S::Method
                    | S::Weight
                    | S::UThreshold
                    | S::LThreshold
                    | S::TunType
                    | S::TunPort
                    | S::TunCsum
            ),
            F::DelServer => matches!(slot, S::Service | S::Ipv6 | S::RealServer),
            F::List => matches!(
                slot,
                S::Service
                    | S::Ipv6
                    | S::Numeric
                    | S::Connection
                    | S::Stats
                    | S::Rate
                    | S::Thresholds
                    | S::TunInfo
                    | S::Timeout
                    | S::Exact
                    | S::Sort
                    | S::Daemon
            ),
            F::Save => matches!(slot, S::Numeric),
            F::StartDaemon => matches!(
                slot,
                S::McastInterface
                    | S::SyncId
                    | S::McastGroup
                    | S::McastPort
                    | S::McastTtl
                    | S::SyncMaxlen
            ),
            _ => false,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Arg {
    No,
    Required,
    Optional,
}

pub(super) struct Spec {
    pub(super) short: u8,
    pub(super) long: &'static str,
    pub(super) flag: Flag,
    pub(super) arg: Arg,
}

const fn spec(short: u8, long: &'static str, flag: Flag, arg: Arg) -> Spec {
    Spec {
        short,
        long,
        flag,
        arg,
    }
}

/// Every option we know. `short` 0 means long only.
pub(super) const SPECS: &[Spec] = &[
    spec(b'A', "add-service", Flag::AddService, Arg::No),
    spec(b'E', "edit-service", Flag::EditService, Arg::No),
    spec(b'D', "delete-service", Flag::DelService, Arg::No),
    spec(b'a', "add-server", Flag::AddServer, Arg::No),
    spec(b'e', "edit-server", Flag::EditServer, Arg::No),
    spec(b'd', "delete-server", Flag::DelServer, Arg::No),
    spec(b'C', "clear", Flag::Clear, Arg::No),
    spec(b'Z', "zero", Flag::Zero, Arg::No),
    spec(0, "set", Flag::SetTimeouts, Arg::No),
    spec(b'L', "list", Flag::List, Arg::No),
    spec(b'l', "list", Flag::List, Arg::No),
    spec(b'S', "save", Flag::Save, Arg::No),
    spec(b'R', "restore", Flag::Restore, Arg::No),
    spec(0, "conn-reuse-mode", Flag::ConnReuseMode, Arg::Required),
    spec(
        0,
        "expire-nodest-conn",
        Flag::ExpireNodestConn,
        Arg::Required,
    ),
    spec(
        0,
        "expire-quiescent-template",
        Flag::ExpireQuiescentTemplate,
        Arg::Required,
    ),
    spec(0, "secure-tcp", Flag::SecureTcp, Arg::Required),
    spec(0, "drop-entry", Flag::DropEntry, Arg::Required),
    spec(0, "sloppy-tcp", Flag::SloppyTcp, Arg::Required),
    spec(0, "reply-rate", Flag::ReplyRate, Arg::Required),
    spec(0, "reply-burst", Flag::ReplyBurst, Arg::Required),
    spec(
        0,
        "reply-peer-interval",
        Flag::ReplyPeerInterval,
        Arg::Required,
    ),
    spec(0, "sync-threshold", Flag::SyncThreshold, Arg::Required),
    spec(0, "sync-period", Flag::SyncPeriod, Arg::Required),
    spec(0, "sync-version", Flag::SyncVersion, Arg::Required),
    spec(0, "start-daemon", Flag::StartDaemon, Arg::Required),
    spec(0, "stop-daemon", Flag::StopDaemon, Arg::Required),
    spec(0, "mcast-interface", Flag::McastInterface, Arg::Required),
    spec(0, "syncid", Flag::SyncId, Arg::Required),
    spec(0, "mcast-group", Flag::McastGroup, Arg::Required),
    spec(0, "mcast-port", Flag::McastPort, Arg::Required),
    spec(0, "mcast-ttl", Flag::McastTtl, Arg::Required),
    spec(0, "sync-maxlen", Flag::SyncMaxlen, Arg::Required),
    spec(0, "daemon", Flag::Daemon, Arg::No),
    spec(
        0,
        "embryonic-prefix-share",
        Flag::EmbryonicPrefixShare,
        Arg::Required,
    ),
    spec(b't', "tcp-service", Flag::Tcp, Arg::Required),
    spec(b'u', "udp-service", Flag::Udp, Arg::Required),
    spec(b'f', "fwmark-service", Flag::Fwmark, Arg::Required),
    spec(b'6', "ipv6", Flag::Ipv6, Arg::No),
    spec(b's', "scheduler", Flag::Scheduler, Arg::Required),
    spec(b'b', "sched-flags", Flag::SchedFlags, Arg::Required),
    spec(b'p', "persistent", Flag::Persistent, Arg::Optional),
    spec(b'M', "netmask", Flag::Netmask, Arg::Required),
    spec(b'o', "ops", Flag::Ops, Arg::No),
    spec(0, "table-size", Flag::TableSize, Arg::Required),
    spec(0, "sloppy", Flag::Sloppy, Arg::No),
    spec(b'r', "real-server", Flag::RealServer, Arg::Required),
    spec(b'm', "masquerading", Flag::Masq, Arg::No),
    spec(b'g', "gatewaying", Flag::Route, Arg::No),
    spec(b'i', "ipip", Flag::Tunnel, Arg::No),
    spec(b'w', "weight", Flag::Weight, Arg::Required),
    spec(b'x', "u-threshold", Flag::UThreshold, Arg::Required),
    spec(b'y', "l-threshold", Flag::LThreshold, Arg::Required),
    spec(0, "tun-type", Flag::TunType, Arg::Required),
    spec(0, "tun-port", Flag::TunPort, Arg::Required),
    spec(0, "tun-nocsum", Flag::TunNocsum, Arg::No),
    spec(0, "tun-csum", Flag::TunCsum, Arg::No),
    spec(0, "tun-remcsum", Flag::TunRemcsum, Arg::No),
    spec(b'n', "numeric", Flag::Numeric, Arg::No),
    spec(b'c', "connection", Flag::Connection, Arg::No),
    spec(0, "stats", Flag::Stats, Arg::No),
    spec(0, "rate", Flag::Rate, Arg::No),
    spec(0, "thresholds", Flag::Thresholds, Arg::No),
    spec(0, "tun-info", Flag::TunInfo, Arg::No),
    spec(0, "timeout", Flag::Timeout, Arg::No),
    spec(b'X', "exact", Flag::Exact, Arg::No),
    spec(0, "sort", Flag::Sort, Arg::No),
];

/// ipvsadm options we refuse, with the feature named in the error.
pub(super) const UNSUPPORTED: &[(&str, &str)] = &[
    ("sctp-service", "SCTP services"),
    ("pe", "persistence engines (--pe)"),
    (
        "sync-refresh-period",
        "sync_refresh_period (entries are sent by the packet and state rules only)",
    ),
    (
        "sync-retries",
        "sync_retries (entries are sent by the packet and state rules only)",
    ),
    ("persistent-conn", "the --persistent-conn listing"),
    ("nosort", "unsorted listing (--nosort)"),
];
