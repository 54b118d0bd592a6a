//! The sync daemons as `ipvsadm --start-daemon` configures them (docs/sync.md §4): a master
//! that sends this balancer's entries and a backup that takes a peer's, each with its own
//! interface, syncid and multicast group; either, both or neither may run.
//!
//! lb-core keeps the configuration (so `-L --daemon` can print it) and does the protocol work:
//! what to send and when ([`crate::Balancer::poll_sync`]), and applying what a peer sent
//! ([`crate::Balancer::receive_sync`]). The frontend owns the sockets: it joins the group on the
//! interface, sends what `poll_sync` returns and hands over what it receives.

use core::fmt;
use core::net::{IpAddr, Ipv4Addr};

/// The kernel's default group (link-local, TTL 1): 224.0.0.81.
pub const DEFAULT_GROUP_V4: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 81);
/// The default UDP port.
pub const DEFAULT_PORT: u16 = 8848;
/// The master's default maximum message length with an IPv4 group: 1500 − 20 − 8.
pub const DEFAULT_MAXLEN_V4: u16 = 1472;
/// The master's default maximum message length with an IPv6 group: 1500 − 40 − 8.
pub const DEFAULT_MAXLEN_V6: u16 = 1452;
/// Longest interface name (Linux's `IFNAMSIZ` less the NUL).
pub const IFNAME_MAX: usize = 15;

/// Which daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SyncRole {
    /// Sends this balancer's entries.
    Master,
    /// Takes a peer's entries.
    Backup,
}

impl SyncRole {
    /// `master` or `backup`, as ipvsadm spells it.
    pub const fn name(self) -> &'static str {
        match self {
            SyncRole::Master => "master",
            SyncRole::Backup => "backup",
        }
    }
}

/// One daemon's configuration (`--start-daemon ROLE --mcast-interface IF --syncid N …`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DaemonConfig {
    /// Master or backup.
    pub role: SyncRole,
    /// The interface the messages go out on / are received on (`--mcast-interface`).
    pub interface: IfName,
    /// `--syncid` (0–255): the master writes it; a backup with 0 accepts every syncid.
    pub syncid: u8,
    /// `--mcast-group` (default 224.0.0.81; an IPv6 group must be given). A unicast address is
    /// our extension: the master sends to it and the backup listens on it (the backup's own
    /// address), so both ends are configured with the same line.
    pub group: IpAddr,
    /// `--mcast-port` (default 8848).
    pub port: u16,
    /// `--mcast-ttl` (default 1).
    pub ttl: u8,
    /// `--sync-maxlen`: largest message (UDP payload); `None` for the default.
    pub maxlen: Option<u16>,
}

impl DaemonConfig {
    /// A daemon with ipvsadm's defaults on `interface`, syncid 0.
    pub const fn new(role: SyncRole, interface: IfName) -> DaemonConfig {
        DaemonConfig {
            role,
            interface,
            syncid: 0,
            group: IpAddr::V4(DEFAULT_GROUP_V4),
            port: DEFAULT_PORT,
            ttl: 1,
            maxlen: None,
        }
    }

    /// The maximum message length in effect: the configured one, else the master's default for
    /// the group's family (the backup reads with a buffer at least this long).
    pub fn effective_maxlen(&self) -> u16 {
        self.maxlen.unwrap_or(if self.group.is_ipv6() {
            DEFAULT_MAXLEN_V6
        } else {
            DEFAULT_MAXLEN_V4
        })
    }
}

impl fmt::Display for DaemonConfig {
    /// What `ipvsadm -L --daemon` prints for it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} sync daemon (mcast={}, syncid={}, maxlen={}, group={}, port={}, ttl={})",
            self.role.name(),
            self.interface,
            self.syncid,
            self.effective_maxlen(),
            self.group,
            self.port,
            self.ttl
        )
    }
}

/// An interface name of at most [`IFNAME_MAX`] bytes, stored inline.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct IfName {
    len: u8,
    bytes: [u8; IFNAME_MAX],
}

impl IfName {
    /// `name` if it is 1–15 bytes with no `/`, whitespace or NUL (what Linux accepts).
    pub fn new(name: &str) -> Option<IfName> {
        let b = name.as_bytes();
        if b.is_empty()
            || b.len() > IFNAME_MAX
            || b.iter()
                .any(|&c| c == b'/' || c == 0 || c.is_ascii_whitespace())
        {
            return None;
        }
        let mut bytes = [0u8; IFNAME_MAX];
        bytes[..b.len()].copy_from_slice(b);
        Some(IfName {
            len: b.len() as u8,
            bytes,
        })
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        core::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or("")
    }
}

impl fmt::Display for IfName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for IfName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}
