//! The TUN side of the gateway: a non-blocking TUN device, a ring of preallocated packet
//! buffers filled a burst at a time straight from its descriptor, and a `smoltcp::phy::Device`
//! adapter over the same buffers for the gateway's own traffic.
//!
//! This is the frontend corner of `/work/shared/design.md` ("lb-tun"): packets are read into
//! the ring until the descriptor would block or the ring is full, handed to the balancer as one
//! burst (phase 2; `tun-echo` sends them back unchanged), and written back with [`PacketRing::flush`].
//! TUN has no `recvmmsg`, so one `read(2)` per packet is the floor (`perf-notes.md`, "The TUN
//! device is the limit of the gateway"); what the ring saves is allocation and the poll per packet.
//!
//! The only `unsafe` in the crate is the `poll(2)` call in [`TunDevice::wait_readable`].

use std::io::{self, ErrorKind};
use std::os::unix::io::AsRawFd;
use std::time::Duration;

use smoltcp::phy::{self, DeviceCapabilities, Medium};
use smoltcp::time::Instant as SmolInstant;
use tun_tap::{Iface, Mode};

/// Buffers in a ring by default: one burst is at most this many packets.
pub const DEFAULT_BURST: usize = 64;
/// Bytes per buffer by default: an MTU of 1500 plus room for lb-core to grow a packet.
pub const DEFAULT_BUF_SIZE: usize = 2048;
/// The IP MTU the [`RingPhy`] adapter advertises to smoltcp by default (the TUN default).
pub const DEFAULT_MTU: usize = 1500;

/// Something packets can be read from and written to one at a time without blocking.
///
/// Implemented by [`TunDevice`]; tests implement it over in-memory queues.
pub trait PacketIo {
    /// Reads one packet into `buf`; `Ok(None)` when none is waiting (the read would block).
    fn recv(&self, buf: &mut [u8]) -> io::Result<Option<usize>>;
    /// Writes one packet; `Ok(false)` when the device would block and the packet was not sent.
    fn send(&self, pkt: &[u8]) -> io::Result<bool>;
}

/// A TUN device (IP packets, no packet-info header) in non-blocking mode.
#[derive(Debug)]
pub struct TunDevice {
    iface: Iface,
}

impl TunDevice {
    /// Creates the TUN device `name`, or attaches to it if it already exists as a persistent
    /// device (`ip tuntap add dev NAME mode tun`), and sets it non-blocking.
    ///
    /// Needs `CAP_NET_ADMIN`. The device's addresses, link state and routes are the host's job
    /// (see `lb-tun/README-routing.md`).
    pub fn open(name: &str) -> io::Result<Self> {
        let iface = Iface::without_packet_info(name, Mode::Tun)?;
        iface.set_non_blocking()?;
        Ok(TunDevice { iface })
    }

    /// The device's name as the kernel gave it.
    pub fn name(&self) -> &str {
        self.iface.name()
    }

    /// Waits until a packet can be read or `timeout` passes; `Ok(true)` when readable.
    ///
    /// A signal interrupting the wait returns `Ok(false)`, so the caller's loop can check its
    /// shutdown flag. Call it before [`PacketRing::fill`] when the previous fill found nothing.
    pub fn wait_readable(&self, timeout: Duration) -> io::Result<bool> {
        let mut pfd = libc::pollfd {
            fd: self.iface.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
        // SAFETY: `pfd` is one valid, initialised `pollfd` that lives for the whole call, and we
        // pass exactly one entry; the descriptor is owned by `self.iface` and open.
        #[allow(unsafe_code)]
        let n = unsafe { libc::poll(&mut pfd, 1, ms) };
        if n < 0 {
            let err = io::Error::last_os_error();
            return if err.kind() == ErrorKind::Interrupted {
                Ok(false)
            } else {
                Err(err)
            };
        }
        Ok(n > 0 && pfd.revents & libc::POLLIN != 0)
    }
}

impl PacketIo for TunDevice {
    fn recv(&self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        loop {
            match self.iface.recv(buf) {
                Ok(n) => return Ok(Some(n)),
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(None),
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }

    fn send(&self, pkt: &[u8]) -> io::Result<bool> {
        loop {
            match self.iface.send(pkt) {
                Ok(_) => return Ok(true),
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }
}

/// What [`PacketRing::flush`] does with a received packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Write `buf[..len]` back to the device (the default after a fill: echo / forward).
    Send,
    /// Discard it.
    Drop,
    /// It is for the gateway itself: [`PacketRing::phy`] hands it to smoltcp, then it is dropped.
    Local,
}

/// Per-slot bookkeeping: the packet's length and what to do with it.
#[derive(Debug, Clone, Copy)]
struct SlotMeta {
    len: usize,
    action: Action,
}

/// Counters of the ring's I/O since it was created.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RingStats {
    /// Calls to [`PacketRing::fill`] that read at least one packet.
    pub bursts: u64,
    /// Packets read from the device.
    pub rx_packets: u64,
    /// Packets read that filled the whole buffer and may have been cut short; dropped.
    pub rx_truncated: u64,
    /// Packets written to the device (forwarded and locally generated).
    pub tx_packets: u64,
    /// Packets the device refused (would block or returned an error); dropped.
    pub tx_errors: u64,
    /// Locally generated packets refused because the transmit area was full.
    pub local_tx_full: u64,
}

/// One received packet as the packet loop sees it: the whole buffer (so the balancer may grow
/// the packet up to its capacity), the packet's length, and what to do with it.
#[derive(Debug)]
pub struct Slot<'a> {
    /// The buffer; the packet is `buf[..*len]`.
    pub buf: &'a mut [u8],
    /// The packet's length; set it when the packet is rewritten.
    pub len: &'a mut usize,
    /// What [`PacketRing::flush`] will do with it.
    pub action: &'a mut Action,
}

/// A ring of preallocated packet buffers: `slots` receive buffers and as many transmit buffers
/// for locally generated packets, `buf_size` bytes each, allocated once in [`PacketRing::new`].
///
/// One burst: [`fill`](Self::fill) → inspect/rewrite with [`slots_mut`](Self::slots_mut) →
/// optionally let smoltcp consume the [`Action::Local`] ones through [`phy`](Self::phy) →
/// [`flush`](Self::flush).
#[derive(Debug)]
pub struct PacketRing {
    buf_size: usize,
    mtu: usize,
    rx: Box<[u8]>,
    meta: Box<[SlotMeta]>,
    filled: usize,
    local_next: usize,
    tx: Box<[u8]>,
    tx_len: Box<[usize]>,
    tx_count: usize,
    stats: RingStats,
}

impl PacketRing {
    /// Allocates a ring of `slots` buffers of `buf_size` bytes (plus as many for local
    /// transmissions). Both are raised to at least 1.
    pub fn new(slots: usize, buf_size: usize) -> Self {
        let slots = slots.max(1);
        let buf_size = buf_size.max(1);
        PacketRing {
            buf_size,
            mtu: DEFAULT_MTU.min(buf_size),
            rx: vec![0; slots * buf_size].into_boxed_slice(),
            meta: vec![
                SlotMeta {
                    len: 0,
                    action: Action::Send
                };
                slots
            ]
            .into_boxed_slice(),
            filled: 0,
            local_next: 0,
            tx: vec![0; slots * buf_size].into_boxed_slice(),
            tx_len: vec![0; slots].into_boxed_slice(),
            tx_count: 0,
            stats: RingStats::default(),
        }
    }

    /// Sets the MTU the smoltcp adapter advertises (clamped to the buffer size).
    pub fn set_mtu(&mut self, mtu: usize) {
        self.mtu = mtu.min(self.buf_size);
    }

    /// The most packets one burst holds.
    pub fn capacity(&self) -> usize {
        self.meta.len()
    }

    /// Bytes per buffer.
    pub fn buf_size(&self) -> usize {
        self.buf_size
    }

    /// Packets received and not yet flushed.
    pub fn len(&self) -> usize {
        self.filled
    }

    /// True when no received packet waits for [`flush`](Self::flush).
    pub fn is_empty(&self) -> bool {
        self.filled == 0
    }

    /// The ring's I/O counters.
    pub fn stats(&self) -> &RingStats {
        &self.stats
    }

    /// Reads packets from `dev` into the free buffers until it would block or the ring is full;
    /// returns how many were read. Each new packet's action is [`Action::Send`].
    ///
    /// Call after [`flush`](Self::flush) (packets already held are kept, so calling it twice
    /// only tops the ring up). An error other than "would block" is returned as is.
    pub fn fill<D: PacketIo + ?Sized>(&mut self, dev: &D) -> io::Result<usize> {
        let start = self.filled;
        while self.filled < self.meta.len() {
            let i = self.filled;
            let buf = &mut self.rx[i * self.buf_size..(i + 1) * self.buf_size];
            let Some(n) = dev.recv(buf)? else { break };
            self.stats.rx_packets += 1;
            if n >= self.buf_size {
                self.stats.rx_truncated += 1;
                continue;
            }
            self.meta[i] = SlotMeta {
                len: n,
                action: Action::Send,
            };
            self.filled += 1;
        }
        let got = self.filled - start;
        if got > 0 {
            self.stats.bursts += 1;
        }
        Ok(got)
    }

    /// The `i`th received packet, `buf[..len]`; empty if `i` is out of range.
    pub fn packet(&self, i: usize) -> &[u8] {
        match self.meta[..self.filled].get(i) {
            Some(m) => &self.rx[i * self.buf_size..i * self.buf_size + m.len],
            None => &[],
        }
    }

    /// Sets what [`flush`](Self::flush) does with the `i`th received packet (ignored if out of range).
    pub fn set_action(&mut self, i: usize, action: Action) {
        if let Some(m) = self.meta[..self.filled].get_mut(i) {
            m.action = action;
        }
    }

    /// The received packets of this burst, in arrival order, for the balancer to rewrite.
    pub fn slots_mut(&mut self) -> impl Iterator<Item = Slot<'_>> + '_ {
        self.rx
            .chunks_mut(self.buf_size)
            .zip(self.meta[..self.filled].iter_mut())
            .map(|(buf, m)| Slot {
                buf,
                len: &mut m.len,
                action: &mut m.action,
            })
    }

    /// Writes every [`Action::Send`] packet (in order), then every locally generated packet, to
    /// `dev`, and empties the ring; returns how many were written.
    ///
    /// A packet the device refuses is counted in [`RingStats::tx_errors`] and dropped: a
    /// gateway drops rather than stalls. [`Action::Local`] packets smoltcp did not take are dropped.
    pub fn flush<D: PacketIo + ?Sized>(&mut self, dev: &D) -> usize {
        let mut sent = 0;
        for (i, m) in self.meta[..self.filled].iter().enumerate() {
            if m.action != Action::Send {
                continue;
            }
            let len = m.len.min(self.buf_size);
            let pkt = &self.rx[i * self.buf_size..i * self.buf_size + len];
            if Self::send_one(dev, pkt, &mut self.stats) {
                sent += 1;
            }
        }
        for (i, &len) in self.tx_len[..self.tx_count].iter().enumerate() {
            let pkt = &self.tx[i * self.buf_size..i * self.buf_size + len];
            if Self::send_one(dev, pkt, &mut self.stats) {
                sent += 1;
            }
        }
        self.filled = 0;
        self.local_next = 0;
        self.tx_count = 0;
        sent
    }

    fn send_one<D: PacketIo + ?Sized>(dev: &D, pkt: &[u8], stats: &mut RingStats) -> bool {
        match dev.send(pkt) {
            Ok(true) => {
                stats.tx_packets += 1;
                true
            }
            Ok(false) => {
                stats.tx_errors += 1;
                false
            }
            Err(e) => {
                log::debug!("tun write of {} bytes failed: {e}", pkt.len());
                stats.tx_errors += 1;
                false
            }
        }
    }

    /// A `smoltcp::phy::Device` over this ring: it receives the [`Action::Local`] packets of
    /// the current burst (each once) and queues what smoltcp transmits for the next
    /// [`flush`](Self::flush). Use it with `Interface::poll` between `fill` and `flush`.
    pub fn phy(&mut self) -> RingPhy<'_> {
        RingPhy { ring: self }
    }
}

/// The `smoltcp::phy::Device` adapter returned by [`PacketRing::phy`] (`Medium::Ip`).
#[derive(Debug)]
pub struct RingPhy<'r> {
    ring: &'r mut PacketRing,
}

/// Receive token of [`RingPhy`]: one [`Action::Local`] packet of the burst.
#[derive(Debug)]
pub struct RingRxToken<'a> {
    pkt: &'a [u8],
}

/// Transmit token of [`RingPhy`]: the next free transmit buffer.
#[derive(Debug)]
pub struct RingTxToken<'a> {
    buf: &'a mut [u8],
    len: &'a mut usize,
    count: &'a mut usize,
}

impl phy::RxToken for RingRxToken<'_> {
    fn consume<R, F>(self, f: F) -> R
    where
        F: FnOnce(&[u8]) -> R,
    {
        f(self.pkt)
    }
}

impl phy::TxToken for RingTxToken<'_> {
    fn consume<R, F>(self, len: usize, f: F) -> R
    where
        F: FnOnce(&mut [u8]) -> R,
    {
        // smoltcp never asks for more than the MTU we advertise, which fits the buffer.
        let len = len.min(self.buf.len());
        let r = f(&mut self.buf[..len]);
        *self.len = len;
        *self.count += 1;
        r
    }
}

/// The next free transmit buffer of a ring's transmit area, if any.
fn tx_token<'a>(
    tx: &'a mut [u8],
    tx_len: &'a mut [usize],
    count: &'a mut usize,
    buf_size: usize,
) -> Option<RingTxToken<'a>> {
    let i = *count;
    let len = tx_len.get_mut(i)?;
    let buf = tx.get_mut(i * buf_size..(i + 1) * buf_size)?;
    Some(RingTxToken { buf, len, count })
}

impl phy::Device for RingPhy<'_> {
    type RxToken<'a>
        = RingRxToken<'a>
    where
        Self: 'a;
    type TxToken<'a>
        = RingTxToken<'a>
    where
        Self: 'a;

    fn receive(&mut self, _now: SmolInstant) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        let ring = &mut *self.ring;
        if ring.tx_count >= ring.tx_len.len() {
            ring.stats.local_tx_full += 1;
            return None;
        }
        let i = (ring.local_next..ring.filled).find(|&i| ring.meta[i].action == Action::Local)?;
        ring.local_next = i + 1;
        ring.meta[i].action = Action::Drop;
        let bs = ring.buf_size;
        let pkt = &ring.rx[i * bs..i * bs + ring.meta[i].len.min(bs)];
        let tx = tx_token(&mut ring.tx, &mut ring.tx_len, &mut ring.tx_count, bs)?;
        Some((RingRxToken { pkt }, tx))
    }

    fn transmit(&mut self, _now: SmolInstant) -> Option<Self::TxToken<'_>> {
        let ring = &mut *self.ring;
        let bs = ring.buf_size;
        let tok = tx_token(&mut ring.tx, &mut ring.tx_len, &mut ring.tx_count, bs);
        if tok.is_none() {
            ring.stats.local_tx_full += 1;
        }
        tok
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ip;
        caps.max_transmission_unit = self.ring.mtu;
        caps.max_burst_size = Some(self.ring.capacity());
        caps
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use smoltcp::iface::{Config, Interface, SocketSet};
    use smoltcp::phy::ChecksumCapabilities;
    use smoltcp::wire::{
        HardwareAddress, Icmpv4Packet, Icmpv4Repr, IpAddress, IpCidr, Ipv4Address, Ipv4Packet,
    };
    use std::cell::RefCell;
    use std::collections::VecDeque;

    /// In-memory device: `inbox` is what `recv` returns, `outbox` collects what is sent.
    #[derive(Default)]
    struct FakeIo {
        inbox: RefCell<VecDeque<Vec<u8>>>,
        outbox: RefCell<Vec<Vec<u8>>>,
    }

    impl PacketIo for FakeIo {
        fn recv(&self, buf: &mut [u8]) -> io::Result<Option<usize>> {
            let Some(p) = self.inbox.borrow_mut().pop_front() else {
                return Ok(None);
            };
            let n = p.len().min(buf.len());
            buf[..n].copy_from_slice(&p[..n]);
            Ok(Some(n))
        }
        fn send(&self, pkt: &[u8]) -> io::Result<bool> {
            self.outbox.borrow_mut().push(pkt.to_vec());
            Ok(true)
        }
    }

    fn fake_with(pkts: &[Vec<u8>]) -> FakeIo {
        let io = FakeIo::default();
        io.inbox.borrow_mut().extend(pkts.iter().cloned());
        io
    }

    #[test]
    fn fill_reads_a_burst_until_empty_and_flush_echoes_in_order() {
        let pkts: Vec<Vec<u8>> = (0..5u8).map(|i| vec![0x45, i, i, i]).collect();
        let io = fake_with(&pkts);
        let mut ring = PacketRing::new(8, 64);
        assert_eq!(ring.fill(&io).unwrap(), 5);
        assert_eq!(ring.len(), 5);
        assert_eq!(ring.packet(3), &pkts[3][..]);
        assert_eq!(ring.packet(9), &[] as &[u8]);
        assert_eq!(ring.flush(&io), 5);
        assert!(ring.is_empty());
        assert_eq!(*io.outbox.borrow(), pkts);
        assert_eq!(ring.stats().bursts, 1);
        assert_eq!(ring.stats().tx_packets, 5);
    }

    #[test]
    fn fill_stops_when_the_ring_is_full_and_the_rest_waits() {
        let pkts: Vec<Vec<u8>> = (0..10u8).map(|i| vec![i; 10]).collect();
        let io = fake_with(&pkts);
        let mut ring = PacketRing::new(4, 64);
        assert_eq!(ring.fill(&io).unwrap(), 4);
        assert_eq!(ring.fill(&io).unwrap(), 0, "a full ring reads nothing more");
        ring.flush(&io);
        assert_eq!(ring.fill(&io).unwrap(), 4);
        ring.flush(&io);
        assert_eq!(ring.fill(&io).unwrap(), 2);
        ring.flush(&io);
        assert_eq!(*io.outbox.borrow(), pkts);
    }

    #[test]
    fn actions_and_rewrites_are_honoured_by_flush() {
        let io = fake_with(&[vec![1; 8], vec![2; 8], vec![3; 8]]);
        let mut ring = PacketRing::new(4, 64);
        ring.fill(&io).unwrap();
        for (i, s) in ring.slots_mut().enumerate() {
            if i == 0 {
                // Grow the packet in place, as a NAT rewrite may.
                s.buf[8..12].copy_from_slice(&[9; 4]);
                *s.len = 12;
            }
            if i == 1 {
                *s.action = Action::Drop;
            }
        }
        ring.set_action(2, Action::Local); // not consumed by smoltcp: dropped
        ring.set_action(7, Action::Drop); // out of range: ignored
        assert_eq!(ring.flush(&io), 1);
        let mut want = vec![1u8; 8];
        want.extend_from_slice(&[9; 4]);
        assert_eq!(*io.outbox.borrow(), vec![want]);
    }

    #[test]
    fn a_packet_filling_the_whole_buffer_is_dropped_as_truncated() {
        let io = fake_with(&[vec![7; 100], vec![8; 10]]);
        let mut ring = PacketRing::new(4, 64);
        assert_eq!(ring.fill(&io).unwrap(), 1);
        assert_eq!(ring.packet(0), &[8; 10]);
        assert_eq!(ring.stats().rx_truncated, 1);
    }

    #[test]
    fn smoltcp_answers_a_local_ping_through_the_ring_and_forwarded_packets_pass() {
        let me = Ipv4Address::new(10, 30, 0, 1);
        let peer = Ipv4Address::new(10, 40, 0, 2);
        let forwarded =
            crate::test_packets::icmp_echo_request(peer, Ipv4Address::new(10, 20, 1, 2), 7);
        let local = crate::test_packets::icmp_echo_request(peer, me, 8);
        let io = fake_with(&[forwarded.clone(), local]);
        let mut ring = PacketRing::new(8, 2048);
        let now = SmolInstant::from_millis(0);
        let mut iface = Interface::new(Config::new(HardwareAddress::Ip), &mut ring.phy(), now);
        iface.update_ip_addrs(|a| a.push(IpCidr::new(IpAddress::Ipv4(me), 24)).unwrap());
        let mut sockets = SocketSet::new(vec![]);

        assert_eq!(ring.fill(&io).unwrap(), 2);
        ring.set_action(1, Action::Local);
        iface.poll(now, &mut ring.phy(), &mut sockets);
        assert_eq!(ring.flush(&io), 2);

        let out = io.outbox.borrow();
        assert_eq!(
            out[0], forwarded,
            "the forwarded packet goes out first, unchanged"
        );
        let ip = Ipv4Packet::new_checked(&out[1][..]).unwrap();
        assert_eq!(ip.src_addr(), me);
        assert_eq!(ip.dst_addr(), peer);
        let icmp = Icmpv4Packet::new_checked(ip.payload()).unwrap();
        let repr = Icmpv4Repr::parse(&icmp, &ChecksumCapabilities::default()).unwrap();
        assert_eq!(
            repr,
            Icmpv4Repr::EchoReply {
                ident: 8,
                seq_no: 1,
                data: b"ping"
            }
        );
    }
}
