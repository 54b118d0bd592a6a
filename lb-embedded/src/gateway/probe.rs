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
/// As with the sync socket's `SyncResources`, smoltcp's empty socket slot is not all zero
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
    /// A frame for the interface arrived since the prober's last poll.
    wake: bool,
    /// The prober's [`poll_at`](Prober::poll_at) after its last poll.
    at: Option<Instant>,
}

impl<'a> Probes<'a> {
    /// Something arrived for the interface: the prober runs at the end of the poll (an ARP
    /// reply or neighbour advertisement may let a probe's SYN go, a segment may end a probe).
    /// The prober's sockets if it is a TCP segment (`tcp`).
    pub(super) fn receiving(&mut self, tcp: bool) -> Option<&mut SocketSet<'a>> {
        self.wake = true;
        tcp.then(|| self.prober.sockets_mut())
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

#[cfg(test)]
mod tests {
    use core::net::SocketAddr;
    use std::boxed::Box;
    use std::vec::Vec;

    use lb_core::{
        Duration, HealthCheck, HealthResources, HealthState, Instant, ProbeOutcome, ServiceKey,
    };
    use lb_testkit::pkt;
    use smoltcp::phy::Medium;
    use smoltcp::wire::{ArpOperation, EthernetAddress, EthernetProtocol, TcpPacket};

    use super::super::testkit::*;
    use super::ProbeResources;

    fn check() -> HealthCheck {
        HealthCheck {
            delay_loop: Duration::from_secs(2),
            connect_timeout: Duration::from_secs(1),
            warmup: Some(Duration::from_millis(0)),
            ..HealthCheck::tcp()
        }
    }

    /// The TCP segments in `out` from GW_IP to SERVER: (destination MAC, flags SYN, ACK, RST,
    /// source port, sequence number).
    fn probe_segments(out: &[Vec<u8>]) -> Vec<(EthernetAddress, [bool; 3], u16, u32)> {
        out.iter()
            .filter_map(|f| {
                let ip = ipv4_of(f, true)?;
                if (ip.src_addr(), ip.dst_addr()) != (GW_IP, SERVER) {
                    return None;
                }
                let t = TcpPacket::new_checked(ip.payload()).ok()?;
                let flags = [t.syn(), t.ack(), t.rst()];
                Some((
                    eth_header(f).0,
                    flags,
                    t.src_port(),
                    t.seq_number().0 as u32,
                ))
            })
            .collect()
    }

    /// On Ethernet the probes' interface resolves the server itself (an ARP request from the
    /// gateway's own address), sends the SYN to the server's MAC as soon as the reply is in (the
    /// reply wakes the prober, though it is no TCP segment), takes
    /// the SYN-ACK (a TCP segment for an own address) into the prober's socket, and the check
    /// passes: the ACK and the RST that end the probe go out at once.
    #[test]
    fn a_probe_on_ethernet_resolves_the_server_connects_and_passes() {
        let mut dev = FakeDevice::new(Medium::Ethernet);
        let mut gw = gateway(&mut dev);
        gw.attach_probes(
            Box::leak(Box::new(ProbeResources::<'static, 1, 64>::new())),
            Box::leak(Box::new(HealthResources::<1, 1, 1>::new())),
            3,
        );
        let service = ServiceKey::tcp(SocketAddr::from((VIP, 80)));
        let server = SocketAddr::from((SERVER, 80));
        gw.balancer_mut()
            .set_health_check(T0, &service, server, &check())
            .unwrap();
        let out = exchange(&mut gw, &mut dev, T0, &[]);
        let who = out.iter().filter_map(|f| arp_of(f)).collect::<Vec<_>>();
        assert_eq!(who.len(), 1, "{out:?}");
        assert!(
            probe_segments(&out).is_empty(),
            "no SYN before the MAC is known"
        );
        let t1 = Instant::from_millis(1);
        let is_at = arp(ArpOperation::Reply, SERVER_MAC, SERVER, GW_IP, GW_MAC);
        let out = exchange(&mut gw, &mut dev, t1, &[is_at]);
        let segs = probe_segments(&out);
        assert_eq!(segs.len(), 1, "{out:?}");
        let (mac, flags, port, seq) = segs[0];
        assert_eq!((mac, flags), (SERVER_MAC, [true, false, false]));
        assert!(port >= lb_probe::PORT_BASE);

        let t2 = Instant::from_millis(2);
        let from = SocketAddr::from((SERVER, 80));
        let to = SocketAddr::from((GW_IP, port));
        let syn_ack = pkt::Tcp::new(from, to, pkt::SYN | pkt::ACK)
            .seq(7)
            .ack(seq.wrapping_add(1))
            .build();
        let frame = eth(SERVER_MAC, GW_MAC, EthernetProtocol::Ipv4, &syn_ack);
        let out = exchange(&mut gw, &mut dev, t2, &[frame]);
        let flags: Vec<[bool; 3]> = probe_segments(&out).iter().map(|s| s.1).collect();
        assert_eq!(
            flags,
            [[false, true, false], [false, true, true]],
            "ACK, then RST"
        );
        assert_eq!(gw.counters().rx_own, 2, "the ARP reply and the SYN-ACK");
        let status = gw.balancer().health_statuses().next().unwrap();
        assert_eq!(status.state, HealthState::Up);
        assert_eq!(status.last, Some((t2, ProbeOutcome::Ok)));
        assert_eq!(gw.probe_stats().unwrap().started, 1);
        // The next probe: a delay_loop after this one's end, and poll_at says so.
        assert_eq!(gw.poll_at(t2), Some(Instant::from_millis(2_002)));
    }

    /// Without probes attached, a TCP segment for an own address is answered by smoltcp with
    /// a RST, as before; the sockets of the prober only take segments once attached.
    #[test]
    fn without_probes_a_segment_for_an_own_address_is_reset() {
        let mut dev = FakeDevice::new(Medium::Ip);
        let mut gw = gateway(&mut dev);
        let syn = pkt::Tcp::new(
            SocketAddr::from((CLIENT, 40000)),
            SocketAddr::from((GW_IP, 22)),
            pkt::SYN,
        )
        .build();
        let out = exchange(&mut gw, &mut dev, T0, &[syn]);
        assert_eq!(out.len(), 1);
        let ip = ipv4_of(&out[0], false).unwrap();
        assert_eq!(ip.dst_addr(), CLIENT);
        let t = TcpPacket::new_checked(ip.payload()).unwrap();
        assert!(t.rst());
        assert!(gw.probe_stats().is_none());
    }
}
