#![doc = include_str!("../README.md")]
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

#[cfg(feature = "alloc")]
extern crate alloc;

use core::net::{IpAddr, SocketAddr};

use lb_core::health::{evaluate_response, write_request};
use lb_core::{Balancer, Probe, ProbeKind, ProbeOutcome};
use managed::ManagedSlice;
use smoltcp::iface::{Interface, SocketHandle, SocketSet, SocketStorage};
use smoltcp::phy::Device;
use smoltcp::socket::tcp;

pub use lb_core;
pub use smoltcp;

/// The largest HTTP request a probe writes (a path of [`lb_core::health::PATH_MAX`] bytes and the
/// fixed headers fit with room to spare); a socket's transmit buffer must hold it.
pub const REQUEST_MAX: usize = 256;

/// First local port probes use; they cycle through `PORT_BASE..=65535` (the IANA dynamic
/// range), skipping ports in use by the pool.
pub const PORT_BASE: u16 = 49152;

/// One socket of the pool and the probe it runs.
#[derive(Debug)]
pub struct Slot {
    handle: Option<SocketHandle>,
    job: Job,
    port: u16,
}

impl Slot {
    /// An empty slot, to fill the storage given to [`Prober::new`].
    pub const EMPTY: Slot = Slot {
        handle: None,
        job: Job::Free,
        port: 0,
    };
}

/// Where a slot's probe stands.
#[derive(Debug)]
enum Job {
    /// No probe; the socket is closed and may connect.
    Free,
    /// SYN sent, waiting for the handshake.
    Connecting(Probe),
    /// HTTP: request sent, reading the response.
    Receiving(Probe),
    /// Aborted: the RST is not sent yet (the socket keeps its endpoints until it is).
    Closing,
}

/// What the prober counted, beyond what it reports to the balancer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ProberStats {
    /// Probes started (SYN queued).
    pub started: u64,
    /// Probes that reached their deadline: aborted without a report (the balancer counts the
    /// timeout itself at the deadline).
    pub timeouts: u64,
    /// Probes for which no source address of their family was set, or whose connect the
    /// socket refused: reported as `Unreachable`.
    pub no_source: u64,
}

/// The health-probe transport: a bounded pool of smoltcp TCP sockets that runs the
/// [`Probe`]s a [`Balancer`] hands out and reports what each found. See the crate docs.
pub struct Prober<'a> {
    sockets: SocketSet<'a>,
    slots: ManagedSlice<'a, Slot>,
    pool: usize,
    v4: Option<IpAddr>,
    v6: Option<IpAddr>,
    next_port: u16,
    stats: ProberStats,
}

/// [`Prober::add_socket`] with every slot already holding a socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolFull;

impl core::fmt::Display for PoolFull {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("every probe slot already has a socket")
    }
}

impl core::error::Error for PoolFull {}

impl<'a> Prober<'a> {
    /// A prober whose pool has room for `slots.len()` sockets (at most `sockets.len()`), each
    /// added with [`add_socket`](Self::add_socket). `seed` spreads the local ports of
    /// successive runs (e.g. from a random source), so a restarted prober does not reuse the
    /// last run's ports first.
    pub fn new(
        sockets: ManagedSlice<'a, SocketStorage<'a>>,
        mut slots: ManagedSlice<'a, Slot>,
        seed: u16,
    ) -> Self {
        for s in slots.iter_mut() {
            *s = Slot::EMPTY;
        }
        Prober {
            sockets: SocketSet::new(sockets),
            slots,
            pool: 0,
            v4: None,
            v6: None,
            next_port: PORT_BASE + seed % (u16::MAX - PORT_BASE + 1),
            stats: ProberStats::default(),
        }
    }

    /// A prober with `pool` sockets of `rx` bytes to receive (an HTTP response is judged on
    /// at most this many bytes) and [`REQUEST_MAX`] to send, on the heap.
    #[cfg(feature = "alloc")]
    pub fn alloc(pool: usize, rx: usize, seed: u16) -> Prober<'static> {
        use alloc::vec;
        let mut p = Prober::new(
            ManagedSlice::Owned((0..pool).map(|_| SocketStorage::EMPTY).collect()),
            ManagedSlice::Owned((0..pool).map(|_| Slot::EMPTY).collect()),
            seed,
        );
        for _ in 0..pool {
            let s = tcp::Socket::new(
                tcp::SocketBuffer::new(vec![0; rx]),
                tcp::SocketBuffer::new(vec![0; REQUEST_MAX]),
            );
            // Cannot fail: `pool` slots were given.
            let _ = p.add_socket(s);
        }
        p
    }

    /// Adds a TCP socket to the pool (its transmit buffer must hold [`REQUEST_MAX`] bytes;
    /// its receive buffer bounds the HTTP response judged).
    pub fn add_socket(&mut self, socket: tcp::Socket<'a>) -> Result<(), PoolFull> {
        let slot = self
            .slots
            .iter_mut()
            .find(|s| s.handle.is_none())
            .ok_or(PoolFull)?;
        slot.handle = Some(self.sockets.add(socket));
        self.pool += 1;
        Ok(())
    }

    /// Sockets in the pool: give the balancer the same
    /// [`HealthLimits::max_in_flight`](lb_core::HealthLimits::max_in_flight).
    pub fn capacity(&self) -> usize {
        self.pool
    }

    /// Sets the source address of probes of its family (one IPv4, one IPv6; a probe's
    /// `bind_to` overrides it). The interface given to [`poll`](Self::poll) must own it.
    pub fn set_source(&mut self, addr: IpAddr) {
        match addr {
            IpAddr::V4(_) => self.v4 = Some(addr),
            IpAddr::V6(_) => self.v6 = Some(addr),
        }
    }

    /// Probes running (sockets not free).
    pub fn busy(&self) -> usize {
        self.slots
            .iter()
            .filter(|s| s.handle.is_some() && !matches!(s.job, Job::Free))
            .count()
    }

    /// The prober's counters.
    pub fn stats(&self) -> ProberStats {
        self.stats
    }

    /// The sockets, for an interface poll outside [`poll`](Self::poll) (the prober's
    /// sockets must be the only ones of the set).
    pub fn sockets_mut(&mut self) -> &mut SocketSet<'a> {
        &mut self.sockets
    }

    /// Runs the probes: moves packets between `iface` (on `device`) and the sockets, reports
    /// each finished probe to `lb` ([`Balancer::probe_result`]) and to `done` (every probe,
    /// timeouts included, for the caller's counters), aborts it with a RST, and starts the
    /// probes `lb` has due while sockets are free. Call after the balancer's
    /// `handle_timeout`, when packets for the probe addresses arrived, and when
    /// [`poll_at`](Self::poll_at) is due. Returns whether a probe started or finished.
    ///
    /// It only calls `lb`'s `poll_probe` and `probe_result`: never its datapath.
    pub fn poll<D: Device + ?Sized>(
        &mut self,
        now: lb_core::Instant,
        lb: &mut Balancer<'_>,
        iface: &mut Interface,
        device: &mut D,
        done: &mut dyn FnMut(&Probe, ProbeOutcome),
    ) -> bool {
        let ts = smoltcp::time::Instant::from_millis(now.millis() as i64);
        iface.poll(ts, device, &mut self.sockets);
        let mut active = self.progress(now, lb, done);
        // Sends the RSTs of the aborted probes: their sockets become free.
        iface.poll(ts, device, &mut self.sockets);
        self.reclaim();
        active |= self.start(now, lb, iface, done);
        iface.poll(ts, device, &mut self.sockets);
        self.reclaim();
        active
    }

    /// When [`poll`](Self::poll) is due next: the interface's next transmission
    /// (retransmitted SYNs) or a probe's deadline. `None`: nothing is running.
    pub fn poll_at(
        &self,
        now: lb_core::Instant,
        iface: &mut Interface,
    ) -> Option<lb_core::Instant> {
        let ts = smoltcp::time::Instant::from_millis(now.millis() as i64);
        let mut next = iface
            .poll_at(ts, &self.sockets)
            .map(|t| lb_core::Instant::from_millis(t.total_millis().max(0) as u64));
        for s in self.slots.iter() {
            if let Job::Connecting(p) | Job::Receiving(p) = &s.job {
                next = Some(next.map_or(p.deadline, |n| n.min(p.deadline)));
            }
        }
        next
    }

    /// Looks at every running probe: finished ones are reported and aborted.
    fn progress(
        &mut self,
        now: lb_core::Instant,
        lb: &mut Balancer<'_>,
        done: &mut dyn FnMut(&Probe, ProbeOutcome),
    ) -> bool {
        let mut active = false;
        for slot in self.slots.iter_mut() {
            let Some(h) = slot.handle else { continue };
            let (p, mut receiving) = match core::mem::replace(&mut slot.job, Job::Free) {
                Job::Connecting(p) => (p, false),
                Job::Receiving(p) => (p, true),
                idle => {
                    slot.job = idle;
                    continue;
                }
            };
            let s = self.sockets.get_mut::<tcp::Socket>(h);
            let outcome = match (&p.kind, receiving, s.state()) {
                (_, false, tcp::State::SynSent | tcp::State::SynReceived) => None,
                // A RST (or the socket gave up): refused.
                (_, false, tcp::State::Closed | tcp::State::TimeWait) => {
                    Some(ProbeOutcome::Refused)
                }
                // The handshake completed.
                (ProbeKind::TcpConnect { .. }, _, _) => Some(ProbeOutcome::Ok),
                (ProbeKind::HttpGet { addr, url }, false, _) => {
                    let mut req = [0u8; REQUEST_MAX];
                    match write_request(url, *addr, &mut req) {
                        Some(n) if s.send_slice(&req[..n]) == Ok(n) => {
                            receiving = true;
                            None
                        }
                        // The request does not fit the socket: a transport limit, told as a
                        // bad response rather than hidden.
                        _ => Some(ProbeOutcome::BadResponse),
                    }
                }
                (ProbeKind::HttpGet { url, .. }, true, state) => {
                    // The server's FIN (or a RST) ends the stream; we never close first.
                    let closed = state != tcp::State::Established;
                    let full = s.recv_queue() >= s.recv_capacity();
                    let data = s.peek(usize::MAX).unwrap_or(&[]);
                    let o = evaluate_response(url, data);
                    // Without a digest the status line decides as soon as the header is in;
                    // a digest needs the whole body: the end of the stream or a full buffer.
                    let decided = url.digest.is_none() && o != ProbeOutcome::BadResponse;
                    (closed || full || decided).then_some(o)
                }
            };
            let expired = now >= p.deadline;
            let Some(outcome) = outcome.or(expired.then_some(ProbeOutcome::Timeout)) else {
                slot.job = if receiving {
                    Job::Receiving(p)
                } else {
                    Job::Connecting(p)
                };
                continue;
            };
            if outcome == ProbeOutcome::Timeout {
                // The balancer counts it itself at the deadline.
                self.stats.timeouts += 1;
            } else {
                lb.probe_result(now, p.id, outcome);
            }
            done(&p, outcome);
            s.abort();
            slot.job = Job::Closing;
            active = true;
        }
        active
    }

    /// Frees the slots whose RST has gone out (or that were reset by the peer).
    fn reclaim(&mut self) {
        for slot in self.slots.iter_mut() {
            if let (Some(h), Job::Closing) = (slot.handle, &slot.job) {
                if self
                    .sockets
                    .get::<tcp::Socket>(h)
                    .remote_endpoint()
                    .is_none()
                {
                    slot.job = Job::Free;
                }
            }
        }
    }

    /// Starts the due probes while sockets are free.
    fn start(
        &mut self,
        now: lb_core::Instant,
        lb: &mut Balancer<'_>,
        iface: &mut Interface,
        done: &mut dyn FnMut(&Probe, ProbeOutcome),
    ) -> bool {
        let mut active = false;
        loop {
            let Some(i) = self
                .slots
                .iter()
                .position(|s| s.handle.is_some() && matches!(s.job, Job::Free))
            else {
                return active;
            };
            let Some(probe) = lb.poll_probe(now) else {
                return active;
            };
            active = true;
            let addr = match &probe.kind {
                ProbeKind::TcpConnect { addr } | ProbeKind::HttpGet { addr, .. } => *addr,
            };
            let source = probe.bind_to.map(|b| b.ip()).or(match addr {
                SocketAddr::V4(_) => self.v4,
                SocketAddr::V6(_) => self.v6,
            });
            let port = match probe.bind_to.map(|b| b.port()) {
                Some(p) if p != 0 => p,
                _ => self.free_port(),
            };
            let slot = &mut self.slots[i];
            let Some(h) = slot.handle else { return active };
            let s = self.sockets.get_mut::<tcp::Socket>(h);
            let connected = source.is_some_and(|src| {
                s.connect(iface.context(), addr, SocketAddr::new(src, port))
                    .is_ok()
            });
            if !connected {
                self.stats.no_source += 1;
                lb.probe_result(now, probe.id, ProbeOutcome::Unreachable);
                done(&probe, ProbeOutcome::Unreachable);
                continue;
            }
            self.stats.started += 1;
            slot.port = port;
            slot.job = Job::Connecting(probe);
        }
    }

    /// The next local port not used by a running probe.
    fn free_port(&mut self) -> u16 {
        let mut p = self.next_port;
        // A pool never holds all 16,384 ports: the bound only keeps the loop finite.
        for _ in 0..=(u16::MAX - PORT_BASE) {
            p = self.next_port;
            self.next_port = if p == u16::MAX { PORT_BASE } else { p + 1 };
            if !self
                .slots
                .iter()
                .any(|s| s.port == p && !matches!(s.job, Job::Free))
            {
                return p;
            }
        }
        p
    }
}

/// A `Medium::Ip` interface on `device` that owns `sources` (a /32 or /128 each; at most one
/// per family) and routes everything from them: the interface a frontend without one of its own
/// gives [`Prober::poll`]. Error: more than one address of a family.
pub fn probe_interface<D: Device + ?Sized>(
    device: &mut D,
    sources: &[IpAddr],
    now: lb_core::Instant,
) -> Result<Interface, SourceError> {
    use smoltcp::iface::Config;
    use smoltcp::wire::{HardwareAddress, IpCidr};
    let v4 = sources.iter().filter(|a| a.is_ipv4()).count();
    if v4 > 1 || sources.len() - v4 > 1 {
        return Err(SourceError);
    }
    let ts = smoltcp::time::Instant::from_millis(now.millis() as i64);
    let mut iface = Interface::new(Config::new(HardwareAddress::Ip), device, ts);
    iface.update_ip_addrs(|addrs| {
        for a in sources {
            let len = if a.is_ipv4() { 32 } else { 128 };
            // Room for one address per family (smoltcp's default of 2).
            let _ = addrs.push(IpCidr::new((*a).into(), len));
        }
    });
    for a in sources {
        // The next hop is not used on Medium::Ip: the route only says "everything".
        let _ = match a {
            IpAddr::V4(v4) => iface.routes_mut().add_default_ipv4_route(*v4).map(|_| ()),
            IpAddr::V6(v6) => iface.routes_mut().add_default_ipv6_route(*v6).map(|_| ()),
        };
    }
    Ok(iface)
}

/// [`probe_interface`] with two source addresses of one family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourceError;

impl core::fmt::Display for SourceError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("at most one IPv4 and one IPv6 probe source")
    }
}

impl core::error::Error for SourceError {}

#[cfg(feature = "alloc")]
mod queue;
#[cfg(feature = "alloc")]
pub use queue::QueueDevice;

#[cfg(test)]
mod tests;
