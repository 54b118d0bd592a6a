//! Health probes (docs/health-checks.md): lb-core's checker decides what to probe and when;
//! lb-probe's pool of smoltcp TCP sockets runs the probes on the gateway's own interface, from
//! the gateway's own addresses. This module lends the pool its storage and moves the packets.
//!
//! * Out: each poll lets the prober start the probes the balancer has due (SYNs from the first
//!   own address of the server's family, or the check's `bind_to`) and send its RSTs, through
//!   the interface straight to the device (`TxOnly`: the interface never reads the device).
//! * In: a TCP segment for an own address is handed to the interface with the prober's socket
//!   set (the sync socket's set has no TCP socket, and smoltcp would answer a RST), then the
//!   prober sees the handshake, the response or the reset, reports it to the balancer and
//!   aborts the socket with a RST.

use lb_core::{HealthResources, Instant};
use lb_probe::{Prober, ProberStats, Slot, REQUEST_MAX};
use smoltcp::iface::{SocketSet, SocketStorage};
use smoltcp::phy::Device;
use smoltcp::socket::tcp;

use super::Gateway;
use crate::phy::TxOnly;

/// The probes' socket storage: `POOL` smoltcp TCP sockets (probes in flight at once), each with
/// `RESPONSE` bytes to receive (an HTTP response is judged on at most this many bytes; a TCP
/// check needs none) and [`REQUEST_MAX`] to send. Given to [`Gateway::attach_probes`].
///
/// As with [`SyncResources`](super::SyncResources), smoltcp's empty socket slot is not all zero
/// bits, so keep a `static` of it in `.bss` with `static_cell::StaticCell` and
/// `init(ProbeResources::new())` at boot, not a `const` initialiser (which would put it in
/// `.data`, in flash as well as RAM).
pub struct ProbeResources<'a, const POOL: usize, const RESPONSE: usize> {
    sockets: [SocketStorage<'a>; POOL],
    slots: [Slot; POOL],
    rx: [[u8; RESPONSE]; POOL],
    tx: [[u8; REQUEST_MAX]; POOL],
}

impl<const POOL: usize, const RESPONSE: usize> ProbeResources<'_, POOL, RESPONSE> {
    /// Empty storage.
    pub const fn new() -> Self {
        ProbeResources {
            sockets: [SocketStorage::EMPTY; POOL],
            slots: [Slot::EMPTY; POOL],
            rx: [[0; RESPONSE]; POOL],
            tx: [[0; REQUEST_MAX]; POOL],
        }
    }
}

impl<const POOL: usize, const RESPONSE: usize> Default for ProbeResources<'_, POOL, RESPONSE> {
    fn default() -> Self {
        Self::new()
    }
}

/// The prober and when it wants to run next.
pub(super) struct Probes<'a> {
    prober: Prober<'a>,
    /// A TCP segment for the prober's sockets arrived since its last poll.
    wake: bool,
    /// The prober's [`poll_at`](Prober::poll_at) after its last poll.
    at: Option<Instant>,
}

impl<'a> Probes<'a> {
    /// The prober's sockets, for a received segment: the prober runs at the end of the poll.
    pub(super) fn receiving(&mut self) -> &mut SocketSet<'a> {
        self.wake = true;
        self.prober.sockets_mut()
    }
}

impl<'a> Gateway<'a> {
    /// Gives the gateway its health checker: `probes`, the TCP sockets that run the probes, and
    /// `health`, lb-core's checker storage (`TARGETS` distinct probes, `MEMBERS` checked
    /// servers, `SERVICES` virtual-server policies), sized so the balancer hands out at most as
    /// many probes at once as there are sockets. `seed` (random, e.g. from the RNG) spreads the
    /// first probes over their `warmup` and the probes' local ports.
    ///
    /// Then configure checks on the balancer (`balancer_mut()`: `set_health_check`,
    /// `set_virtual_server_health`). A second call replaces both storages and forgets the
    /// checks (as [`Balancer::set_health_storage`](lb_core::Balancer::set_health_storage)).
    pub fn attach_probes<
        const POOL: usize,
        const RESPONSE: usize,
        const TARGETS: usize,
        const MEMBERS: usize,
        const SERVICES: usize,
    >(
        &mut self,
        probes: &'a mut ProbeResources<'a, POOL, RESPONSE>,
        health: &'a mut HealthResources<TARGETS, MEMBERS, SERVICES>,
        seed: u64,
    ) {
        let ProbeResources {
            sockets,
            slots,
            rx,
            tx,
        } = probes;
        let mut prober = Prober::new(
            (&mut sockets[..]).into(),
            (&mut slots[..]).into(),
            (seed >> 48) as u16,
        );
        for (rx, tx) in rx.iter_mut().zip(tx.iter_mut()) {
            let s = tcp::Socket::new(
                tcp::SocketBuffer::new(&mut rx[..]),
                tcp::SocketBuffer::new(&mut tx[..]),
            );
            // Cannot fail: POOL slots for POOL sockets.
            let _ = prober.add_socket(s);
        }
        self.lb
            .set_health_storage(health.storage(prober.capacity()), seed);
        self.probes = Some(Probes {
            prober,
            wake: false,
            at: None,
        });
    }

    /// The prober's counters (probes started, deadlines reached, probes without a source
    /// address), if probes are attached. What each probe found is in the balancer's
    /// [`health_statuses`](lb_core::Balancer::health_statuses).
    pub fn probe_stats(&self) -> Option<ProberStats> {
        self.probes.as_ref().map(|p| p.prober.stats())
    }

    /// Runs the prober if it has something to do: a segment arrived for it, the balancer's
    /// timers ran (probes may be due), or its own time came (a retransmission, a deadline).
    /// Returns whether a probe started or finished.
    pub(super) fn probe_poll<D: Device + ?Sized>(
        &mut self,
        now: Instant,
        device: &mut D,
        timers_ran: bool,
    ) -> bool {
        let Some(p) = self.probes.as_mut() else {
            return false;
        };
        if !(p.wake || timers_ran || p.at.is_some_and(|t| t <= now)) {
            return false;
        }
        // The first own address of each family is the probes' source (set in reverse so the
        // first wins); the interface's addresses may have changed since the last poll.
        for c in self.iface.ip_addrs().iter().rev() {
            if !c.address().is_unspecified() {
                p.prober.set_source(c.address().into());
            }
        }
        let mut tx = TxOnly { inner: device };
        let active = p
            .prober
            .poll(now, &mut self.lb, &mut self.iface, &mut tx, &mut |_, _| {});
        p.wake = false;
        p.at = p.prober.poll_at(now, &mut self.iface);
        active
    }

    /// When the prober wants to run next.
    pub(super) fn probe_at(&self) -> Option<Instant> {
        self.probes.as_ref().and_then(|p| p.at)
    }
}
