//! Real servers (IPVS "destinations"): configuration, the counters the schedulers read, and the
//! list order every tie-break follows (docs/ipvs-semantics.md §1, §4.7, §4.9).

use core::net::{IpAddr, Ipv4Addr, SocketAddr};

use crate::config::{ForwardMethod, ServerConfig};
use crate::stats::Stats;

/// Index of a real server in the director's server storage. Stable for as long as the server
/// exists — including after deletion while connections still reference it (IPVS's trash).
pub type ServerId = u16;

/// "No server" in scheduler tables (sh, dh, mh slots hold `ServerId`s).
pub const NO_SERVER: ServerId = u16::MAX;

/// A real server and its run-time state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RealServer {
    /// What `-a`/`-e` configured.
    pub config: ServerConfig,
    /// The most recent non-zero weight (mh builds its table from it, docs/ipvs-semantics.md §5.11).
    pub last_weight: u32,
    /// Connections in an active state (TCP ES, SS, SR, SA).
    pub active: u32,
    /// Other connections (all UDP connections count here).
    pub inactive: u32,
    /// Persistence templates bound to this server.
    pub persistent: u32,
    /// IPVS's OVERLOAD flag: set when `u_threshold` is reached at bind, cleared with hysteresis
    /// at unbind (docs/ipvs-semantics.md §4.7).
    pub overloaded: bool,
    /// False once deleted (IPVS's !AVAILABLE): kept only while entries still reference it.
    pub available: bool,
    /// Traffic counters.
    pub stats: Stats,
    /// The health checker's member for this server, plus one (0: not checked, so that an
    /// empty slot stays all zero bits and a `static` of them lands in .bss).
    pub(crate) health: u16,
    /// Whether the health checker holds it DOWN: a SYN on one of its entries is rescheduled.
    pub(crate) health_down: bool,
}

impl RealServer {
    /// An unused storage slot: unavailable, no references, weight 0, address `0.0.0.0:0`.
    /// The director fills free slots with it (and `DirectorResources::new` is made of it).
    pub const EMPTY: RealServer = {
        let mut s = RealServer::new(ServerConfig {
            addr: SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0),
            weight: 0,
            u_threshold: 0,
            l_threshold: 0,
            method: ForwardMethod::Masq,
        });
        s.available = false;
        s
    };

    /// Whether this storage slot is free: neither in a service's list nor deleted-but-referenced.
    pub const fn is_free(&self) -> bool {
        !self.available && self.refs() == 0
    }

    /// A fresh, available server.
    pub const fn new(config: ServerConfig) -> Self {
        RealServer {
            config,
            last_weight: config.weight,
            active: 0,
            inactive: 0,
            persistent: 0,
            overloaded: false,
            available: true,
            stats: Stats::new(),
            health: 0,
            health_down: false,
        }
    }

    /// The server's address and port.
    pub const fn addr(&self) -> SocketAddr {
        self.config.addr
    }

    /// The configured weight.
    pub const fn weight(&self) -> u32 {
        self.config.weight
    }

    /// IPVS's `ip_vs_dest_conn_overhead`: `active * 256 + inactive`.
    pub const fn overhead(&self) -> u64 {
        ((self.active as u64) << 8) + self.inactive as u64
    }

    /// Whether a scheduler may pick it for a new connection: weight > 0 and not overloaded.
    pub const fn eligible(&self) -> bool {
        self.config.weight > 0 && !self.overloaded
    }

    /// Whether the health checker holds it DOWN (weight 0 or removed until it recovers).
    pub const fn health_down(&self) -> bool {
        self.health_down
    }

    /// The health checker's member for it, if it is checked.
    pub(crate) const fn health_member(&self) -> Option<u16> {
        self.health.checked_sub(1)
    }

    /// Connections still referencing it (templates included). A deleted server's slot is
    /// freed when this reaches 0; a quiescent one is drained then.
    pub const fn refs(&self) -> u32 {
        self.active + self.inactive + self.persistent
    }
}

/// A service's real servers in IPVS list order (newest first: `ipvsadm -a` inserts at the head),
/// as schedulers see them. Deleted servers are not in the list.
#[derive(Clone, Copy)]
pub struct DestList<'s> {
    /// Server ids in list order.
    pub order: &'s [ServerId],
    /// The director's server storage, indexed by `ServerId`.
    pub servers: &'s [RealServer],
}

impl<'s> DestList<'s> {
    /// Number of servers in the list.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// Whether the list is empty.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// The server at list position `pos`.
    pub fn at(&self, pos: usize) -> (ServerId, &'s RealServer) {
        let id = self.order[pos];
        (id, &self.servers[usize::from(id)])
    }

    /// The server with id `id`.
    pub fn get(&self, id: ServerId) -> &'s RealServer {
        &self.servers[usize::from(id)]
    }

    /// Servers in list order, with their ids.
    pub fn iter(&self) -> impl Iterator<Item = (ServerId, &'s RealServer)> + 's {
        let servers = self.servers;
        self.order
            .iter()
            .map(move |&id| (id, &servers[usize::from(id)]))
    }
}
