#![doc = include_str!("../README.md")]
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

// The unit tests run on the host, with std (the device and frames they build are Vecs).
#[cfg(test)]
extern crate std;

pub mod gateway;
pub mod link;
pub mod neighbour;
mod phy;
pub mod route;

#[cfg(feature = "health")]
pub use gateway::ProbeResources;
pub use gateway::{Gateway, GatewayConfig, GatewayCounters, GatewayError, LineError};
#[cfg(feature = "sync")]
pub use gateway::{SyncResources, SYNC_BUFFER};
/// lb-probe (feature `health`), re-exported for its [`ProberStats`](lb_probe::ProberStats) and
/// [`REQUEST_MAX`](lb_probe::REQUEST_MAX).
#[cfg(feature = "health")]
pub use lb_probe;
pub use route::Route;

/// lb-core, re-exported so users (and [`gateway_resources!`]) need one dependency.
pub use lb_core;
/// smoltcp, re-exported for the device trait and wire types.
pub use smoltcp;

use lb_core::ConnResources;
use neighbour::{HoldSlot, NeighbourSlot};
use route::RouteSlot;

/// Bytes of an Ethernet header. A received IP packet sits this far behind the frame's start on
/// every medium ([`HEADROOM`] + `LINK_HEADER` into the frame buffer), so the header can be
/// written in front of a forwarded packet without moving it.
pub const LINK_HEADER: usize = 14;

/// Bytes kept free in the frame buffer in front of every received frame: the most a tunnel
/// (`-i`) puts in front of a packet ([`lb_core::tunnel::MAX_OVERHEAD`], IPv6 + UDP + GUE), so
/// the balancer writes a tunnelled packet's outer headers there
/// ([`Balancer::process_at`](lb_core::Balancer::process_at)) and never moves the packet; the
/// link header then goes in front of the outer headers.
pub const HEADROOM: usize = lb_core::tunnel::MAX_OVERHEAD;

/// Room the balancer gets for one IP packet: lb-core wants at least 1600 bytes (or MTU + 100)
/// so a generated reply (an ICMP error quoting the packet) always fits.
pub const IP_BUFFER: usize = 1600;

/// Bytes of the frame buffer: [`HEADROOM`], a link header and [`IP_BUFFER`]. A received frame
/// may be up to `LINK_HEADER + IP_BUFFER` bytes long (longer ones are dropped as oversize).
pub const FRAME_BUFFER: usize = HEADROOM + LINK_HEADER + IP_BUFFER;

/// The largest frame the gateway sends or holds: 1500-byte IP packets plus the Ethernet header.
/// Packets longer than this or than the device's MTU are dropped and counted.
pub const MAX_FRAME: usize = 1514;

/// Everything a [`Gateway`] keeps except the director's storage: the connection table
/// (`CONNS` entries, with `INDEX` index slots, `WHEEL` wheel buckets and `FRAGS`
/// fragment-table slots sized by [`ConnStorage::slots_for`](lb_core::ConnStorage::slots_for)),
/// `NEIGHBOURS`
/// neighbour-cache entries, `ROUTES` static routes, `HOLD` frames waiting for address
/// resolution, and the frame buffer.
///
/// Spell the type with [`gateway_resources!`], which computes `INDEX`, `WHEEL` and `FRAGS`. Its
/// [`new`](Self::new) is a `const fn` giving all zero bits, so a `static` of it lands in `.bss`
/// (no flash). Size: `64 × CONNS` (for `CONNS ≥ 17`) + the fragment table (`4 × CONNS`, at
/// least 1 KiB) + `48 × NEIGHBOURS` + `37 × ROUTES` + `1540 × HOLD` + 1666 bytes, rounded up
/// for alignment (78,384 bytes on Cortex-M for 1,024 connections, 16 neighbours, 4 routes,
/// 4 held frames).
pub struct GatewayResources<
    const CONNS: usize,
    const INDEX: usize,
    const WHEEL: usize,
    const FRAGS: usize,
    const NEIGHBOURS: usize,
    const ROUTES: usize,
    const HOLD: usize,
> {
    pub(crate) conns: ConnResources<CONNS, INDEX, WHEEL, FRAGS>,
    pub(crate) neighbours: [NeighbourSlot; NEIGHBOURS],
    pub(crate) routes: [RouteSlot; ROUTES],
    pub(crate) hold: [HoldSlot; HOLD],
    pub(crate) frame: [u8; FRAME_BUFFER],
}

impl<
        const CONNS: usize,
        const INDEX: usize,
        const WHEEL: usize,
        const FRAGS: usize,
        const NEIGHBOURS: usize,
        const ROUTES: usize,
        const HOLD: usize,
    > GatewayResources<CONNS, INDEX, WHEEL, FRAGS, NEIGHBOURS, ROUTES, HOLD>
{
    /// Empty resources, all zero bits: for a `static` (directly, in a `StaticCell`, or from
    /// cortex-m's `singleton!`). Large instances do not belong on the stack.
    pub const fn new() -> Self {
        GatewayResources {
            conns: ConnResources::new(),
            neighbours: [NeighbourSlot::EMPTY; NEIGHBOURS],
            routes: [RouteSlot::EMPTY; ROUTES],
            hold: [HoldSlot::EMPTY; HOLD],
            frame: [0; FRAME_BUFFER],
        }
    }

    /// The connection table's capacity.
    pub const fn connections(&self) -> usize {
        CONNS
    }
}

impl<
        const CONNS: usize,
        const INDEX: usize,
        const WHEEL: usize,
        const FRAGS: usize,
        const NEIGHBOURS: usize,
        const ROUTES: usize,
        const HOLD: usize,
    > Default for GatewayResources<CONNS, INDEX, WHEEL, FRAGS, NEIGHBOURS, ROUTES, HOLD>
{
    fn default() -> Self {
        Self::new()
    }
}

/// The [`GatewayResources`] type for the given sizes, with the connection table's index,
/// wheel and fragment table sized by [`ConnStorage::slots_for`](lb_core::ConnStorage::slots_for):
///
/// ```
/// type Res = lb_embedded::gateway_resources!(conns: 1024, neighbours: 16, routes: 4, hold: 4);
/// assert!(core::mem::size_of::<Res>() < 80 * 1024);
/// ```
#[macro_export]
macro_rules! gateway_resources {
    (conns: $c:expr, neighbours: $n:expr, routes: $r:expr, hold: $h:expr $(,)?) => {
        $crate::GatewayResources<
            { $c },
            { $crate::lb_core::ConnStorage::slots_for($c).index_slots },
            { $crate::lb_core::ConnStorage::slots_for($c).wheel_buckets },
            { $crate::lb_core::ConnStorage::slots_for($c).fragment_slots },
            { $n },
            { $r },
            { $h },
        >
    };
}
