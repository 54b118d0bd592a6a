//! The TUN side of the gateway: a non-blocking TUN device and a ring of preallocated packet
//! buffers filled a burst at a time straight from its descriptor.
//!
//! Packets are read into the ring until the descriptor would block or the ring is full, handed
//! to the balancer as one burst (`tun-echo` sends them back unchanged), and written back with
//! [`PacketRing::flush`]. TUN has no `recvmmsg`, so one `read(2)` per packet is the floor; what
//! the ring saves is allocation and a wait per packet.

use std::io::{self, ErrorKind, IoSlice, IoSliceMut};
use std::net::IpAddr;
use std::os::unix::io::AsRawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use tun_tap::{Iface, Mode};

/// Buffers in a ring by default: one burst is at most this many packets.
pub const DEFAULT_BURST: usize = 64;
/// Bytes per buffer by default: an MTU of 1500 plus room for lb-core to grow a packet.
pub const DEFAULT_BUF_SIZE: usize = 2048;
/// Bytes per buffer with offloads: the largest segment a TUN device hands over (an IPv6
/// header and a 65,535-byte payload) plus room for lb-core to grow a packet.
pub const OFFLOAD_BUF_SIZE: usize = 66 * 1024;

/// Bytes of the virtio-net header (`struct virtio_net_hdr`) a TUN device opened with offloads
/// puts in front of every packet it hands over and expects in front of every packet written.
pub const VNET_HDR_LEN: usize = 10;

/// Something packets can be read from and written to one at a time without blocking.
///
/// Implemented by [`TunDevice`]; tests implement it over in-memory queues.
pub trait PacketIo {
    /// Reads one packet into `buf` and its virtio-net header into `hdr` (all zero — a whole
    /// packet with its checksums done — on a device without offloads, the default).
    fn recv_vnet(&self, hdr: &mut [u8; VNET_HDR_LEN], buf: &mut [u8]) -> io::Result<Option<usize>> {
        *hdr = [0; VNET_HDR_LEN];
        self.recv(buf)
    }
    /// Writes one packet with its virtio-net header (ignored by a device without offloads,
    /// the default: only a header of zeros may go to one).
    fn send_vnet(&self, hdr: &[u8; VNET_HDR_LEN], pkt: &[u8]) -> io::Result<bool> {
        let _ = hdr;
        self.send(pkt)
    }
    /// Reads one packet into `buf`; `Ok(None)` when none is waiting (the read would block).
    fn recv(&self, buf: &mut [u8]) -> io::Result<Option<usize>>;
    /// Writes one packet; `Ok(false)` when the device would block and the packet was not sent.
    fn send(&self, pkt: &[u8]) -> io::Result<bool>;
    /// Writes one packet towards `next_hop`, which may differ from the packet's destination (a
    /// direct-routing packet still goes to the VIP, its next hop is the real server). A device
    /// that routes on the packet's destination (TUN) ignores `next_hop`: the default.
    fn send_to(&self, pkt: &[u8], next_hop: IpAddr) -> io::Result<bool> {
        let _ = next_hop;
        self.send(pkt)
    }
}

/// Creates or attaches to the TUN or TAP device `name` (no packet-info header), non-blocking,
/// with an epoll instance watching it for reads.
pub(crate) fn open_polled(name: &str, mode: Mode) -> io::Result<(Iface, Poll)> {
    let iface = Iface::without_packet_info(name, mode)?;
    iface.set_non_blocking()?;
    let poll = poll_readable(iface.as_raw_fd())?;
    Ok((iface, poll))
}

/// An epoll instance watching descriptor `fd` for reads. mio registers a raw descriptor
/// without `unsafe` and without taking ownership: the device it belongs to must outlive the
/// instance (both are dropped together).
fn poll_readable(fd: std::os::unix::io::RawFd) -> io::Result<Poll> {
    let poll = Poll::new()?;
    poll.registry()
        .register(&mut SourceFd(&fd), Token(0), Interest::READABLE)?;
    Ok(poll)
}

/// `IFF_MULTI_QUEUE` of `<linux/if_tun.h>`.
const IFF_MULTI_QUEUE: u32 = 0x0100;

/// The flags of an existing TUN/TAP device `name` (`/sys/class/net/NAME/tun_flags`), `None` if
/// there is no such device.
fn existing_tun_flags(name: &str) -> Option<u32> {
    let text = std::fs::read_to_string(format!("/sys/class/net/{name}/tun_flags")).ok()?;
    u32::from_str_radix(text.trim().trim_start_matches("0x"), 16).ok()
}

/// A TUN device (IP packets, no packet-info header) in non-blocking mode, with the epoll
/// instance [`wait_readable`](Self::wait_readable) sleeps in: one queue of the device.
///
/// Opened through `tun-rs`, which can open a multi-queue device (`IFF_MULTI_QUEUE`), one
/// descriptor per queue; `tun-tap` cannot.
pub struct TunDevice {
    io: TunQueue,
    name: String,
    poll: Poll,
    events: Events,
}

impl std::fmt::Debug for TunDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TunDevice")
            .field("name", &self.name)
            .field("fd", &self.io.dev.as_raw_fd())
            .finish()
    }
}

impl TunDevice {
    /// Creates the TUN device `name`, or attaches to it if it already exists as a persistent
    /// device (`ip tuntap add dev NAME mode tun`), and sets it non-blocking: one queue.
    ///
    /// Needs `CAP_NET_ADMIN`. The device's addresses, link state and routes are the host's job
    /// (see `lb-tun/README-routing.md`).
    pub fn open(name: &str) -> io::Result<Self> {
        let mut q = Self::open_queues(name, 1, false)?;
        Ok(q.remove(0))
    }

    /// Opens `queues` queues of the TUN device `name` (at least 1), each its own descriptor:
    /// with more than one, the device is a multi-queue one (`IFF_MULTI_QUEUE`), and the kernel
    /// spreads the packets it routes into it over the queues by a hash of their flow. An
    /// existing device must have been created the same way (`ip tuntap add ... multi_queue`
    /// for more than one queue), else the kernel refuses (`EINVAL`).
    ///
    /// With `offload`, the queues are opened with `IFF_VNET_HDR` and the device takes TCP
    /// segmentation and checksum offloads (`TUNSETOFFLOAD`: checksum, TSO4, TSO6, and USO4/6
    /// where the kernel has them): the kernel hands over TCP segments of up to 64 KB whose
    /// checksum may be partial, each behind a virtio-net header ([`PacketIo::recv_vnet`]),
    /// and takes them back the same way. Without it, any offloads a persistent device kept from
    /// an earlier user are cleared.
    pub fn open_queues(name: &str, queues: usize, offload: bool) -> io::Result<Vec<Self>> {
        // The kernel attaches to an existing device only with its own multi-queue flag, even
        // for one queue: read it (sysfs, the device's namespace's view).
        let multi = match existing_tun_flags(name) {
            Some(flags) => flags & IFF_MULTI_QUEUE != 0,
            None => queues > 1,
        };
        if queues > 1 && !multi {
            return Err(io::Error::new(
                ErrorKind::InvalidInput,
                format!("{name} exists as a single-queue device (created without multi_queue)"),
            ));
        }
        let first = tun_rs::DeviceBuilder::new()
            .name(name)
            .multi_queue(multi)
            .offload(offload)
            .inherit_enable_state()
            .build_sync()?;
        let name = first.name()?;
        let mut devs = Vec::with_capacity(queues.max(1));
        for _ in 1..queues {
            let more = first.try_clone()?;
            devs.push(Self::polled(more, name.clone(), offload)?);
        }
        devs.insert(0, Self::polled(first, name, offload)?);
        Ok(devs)
    }

    /// Whether the device was opened with offloads (a virtio-net header on every packet).
    pub fn offload(&self) -> bool {
        self.io.vnet
    }

    /// A handle on this queue that other threads can write to (and read from) while this
    /// device's owner waits on it: how one queue's thread writes a packet on another queue
    /// (lb-tun's steering, `crate::steer`).
    pub fn queue(&self) -> TunQueue {
        self.io.clone()
    }

    fn polled(dev: tun_rs::SyncDevice, name: String, vnet: bool) -> io::Result<Self> {
        dev.set_nonblocking(true)?;
        let poll = poll_readable(dev.as_raw_fd())?;
        Ok(TunDevice {
            io: TunQueue {
                dev: Arc::new(dev),
                vnet,
            },
            name,
            poll,
            events: Events::with_capacity(1),
        })
    }

    /// The device's name as the kernel gave it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Waits until a packet arrives or `timeout` passes; `Ok(true)` when one arrived.
    ///
    /// Call it only after a [`PacketRing::fill`] that found nothing (a read that would block):
    /// the wait is edge-triggered (epoll through mio), so it wakes for packets that arrive after
    /// the device was drained, not for ones left unread. A wake-up may be spurious (the packet
    /// was already read); the next fill simply finds nothing. A signal interrupting the wait
    /// returns `Ok(false)`, so the caller's loop can check its shutdown flag.
    pub fn wait_readable(&mut self, timeout: Duration) -> io::Result<bool> {
        match self.poll.poll(&mut self.events, Some(timeout)) {
            Ok(()) => Ok(!self.events.is_empty()),
            Err(e) if e.kind() == ErrorKind::Interrupted => Ok(false),
            Err(e) => Err(e),
        }
    }
}

/// A read's outcome: `Ok(None)` when it would block; interrupted reads and writes are retried.
fn retried<T>(mut op: impl FnMut() -> io::Result<T>) -> io::Result<Option<T>> {
    loop {
        match op() {
            Ok(n) => return Ok(Some(n)),
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(None),
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

impl std::fmt::Debug for TunQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TunQueue")
            .field("fd", &self.dev.as_raw_fd())
            .field("vnet", &self.vnet)
            .finish()
    }
}

/// One queue of a TUN device, shared: reads and writes without the device's epoll instance.
/// Cloning it gives another handle on the same queue (the same descriptor).
#[derive(Clone)]
pub struct TunQueue {
    dev: Arc<tun_rs::SyncDevice>,
    /// Opened with offloads: every read and write carries a virtio-net header.
    vnet: bool,
}

impl PacketIo for TunQueue {
    /// Reads one packet; on a device with offloads its virtio-net header is read and dropped:
    /// use [`recv_vnet`](PacketIo::recv_vnet) there, or a partial checksum goes unnoticed.
    fn recv(&self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        if self.vnet {
            return self.recv_vnet(&mut [0; VNET_HDR_LEN], buf);
        }
        retried(|| self.dev.recv(buf))
    }

    fn send(&self, pkt: &[u8]) -> io::Result<bool> {
        if self.vnet {
            return self.send_vnet(&[0; VNET_HDR_LEN], pkt);
        }
        Ok(retried(|| self.dev.send(pkt))?.is_some())
    }

    fn recv_vnet(&self, hdr: &mut [u8; VNET_HDR_LEN], buf: &mut [u8]) -> io::Result<Option<usize>> {
        if !self.vnet {
            *hdr = [0; VNET_HDR_LEN];
            return retried(|| self.dev.recv(buf));
        }
        let n = retried(|| {
            let mut parts = [IoSliceMut::new(hdr), IoSliceMut::new(buf)];
            self.dev.recv_vectored(&mut parts)
        })?;
        match n {
            Some(n) if n < VNET_HDR_LEN => Err(io::Error::new(
                ErrorKind::InvalidData,
                format!("a read of {n} bytes is shorter than the virtio-net header"),
            )),
            other => Ok(other.map(|n| n - VNET_HDR_LEN)),
        }
    }

    fn send_vnet(&self, hdr: &[u8; VNET_HDR_LEN], pkt: &[u8]) -> io::Result<bool> {
        if !self.vnet {
            return self.send(pkt);
        }
        let parts = [IoSlice::new(hdr), IoSlice::new(pkt)];
        Ok(retried(|| self.dev.send_vectored(&parts))?.is_some())
    }
}

impl PacketIo for TunDevice {
    fn recv(&self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        self.io.recv(buf)
    }

    fn send(&self, pkt: &[u8]) -> io::Result<bool> {
        self.io.send(pkt)
    }

    fn recv_vnet(&self, hdr: &mut [u8; VNET_HDR_LEN], buf: &mut [u8]) -> io::Result<Option<usize>> {
        self.io.recv_vnet(hdr, buf)
    }

    fn send_vnet(&self, hdr: &[u8; VNET_HDR_LEN], pkt: &[u8]) -> io::Result<bool> {
        self.io.send_vnet(hdr, pkt)
    }
}

/// What [`PacketRing::flush`] does with a received packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Write `buf[..len]` back to the device (the default after a fill: echo / forward).
    Send,
    /// Discard it.
    Drop,
}

/// Per-slot bookkeeping: the packet's length, what to do with it and its next hop, if the
/// balancer named one.
#[derive(Debug, Clone, Copy)]
struct SlotMeta {
    len: usize,
    action: Action,
    next_hop: Option<IpAddr>,
    /// The packet's virtio-net header as read (zeros without offloads), written back with it.
    vnet: [u8; VNET_HDR_LEN],
    /// Its client's steering bucket, when the balancer forwarded it (`crate::steer`).
    steer: Option<SteerTag>,
}

impl SlotMeta {
    /// A packet of `len` bytes just read (with virtio-net header `vnet`) or made: to be sent
    /// to its own destination, untagged.
    const fn fresh(len: usize, vnet: [u8; VNET_HDR_LEN]) -> Self {
        SlotMeta {
            len,
            action: Action::Send,
            next_hop: None,
            vnet,
            steer: None,
        }
    }
}

/// What steering (`crate::steer`) needs of a packet the balancer forwarded: the bucket of its
/// connection's client side, and whether it goes to the client (a reply) or to a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SteerTag {
    /// The client's bucket.
    pub bucket: u8,
    /// A reply (real server → client), not a packet to a real server.
    pub reply: bool,
}

/// Counters of the ring's I/O since it was created.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RingStats {
    /// Calls to [`PacketRing::fill`] that read at least one packet.
    pub bursts: u64,
    /// Packets read from the device.
    pub rx_packets: u64,
    /// Bytes of the packets read (without virtio-net headers).
    pub rx_bytes: u64,
    /// Packets read that filled the whole buffer and may have been cut short; dropped.
    pub rx_truncated: u64,
    /// Packets written to the device.
    pub tx_packets: u64,
    /// Packets the device refused (would block or returned an error); dropped.
    pub tx_errors: u64,
}

/// A ring's counters as the thread that owns the ring last published them, for another
/// thread to read (the gateway's other queues: `--stats-gateway` and the metrics see them all).
#[derive(Debug, Default)]
pub struct SharedRingStats {
    bursts: AtomicU64,
    rx_packets: AtomicU64,
    rx_bytes: AtomicU64,
    rx_truncated: AtomicU64,
    tx_packets: AtomicU64,
    tx_errors: AtomicU64,
}

impl SharedRingStats {
    /// Publishes `s` (the owner's counters, whole).
    pub fn store(&self, s: &RingStats) {
        self.bursts.store(s.bursts, Ordering::Relaxed);
        self.rx_packets.store(s.rx_packets, Ordering::Relaxed);
        self.rx_bytes.store(s.rx_bytes, Ordering::Relaxed);
        self.rx_truncated.store(s.rx_truncated, Ordering::Relaxed);
        self.tx_packets.store(s.tx_packets, Ordering::Relaxed);
        self.tx_errors.store(s.tx_errors, Ordering::Relaxed);
    }

    /// The counters last published.
    pub fn load(&self) -> RingStats {
        RingStats {
            bursts: self.bursts.load(Ordering::Relaxed),
            rx_packets: self.rx_packets.load(Ordering::Relaxed),
            rx_bytes: self.rx_bytes.load(Ordering::Relaxed),
            rx_truncated: self.rx_truncated.load(Ordering::Relaxed),
            tx_packets: self.tx_packets.load(Ordering::Relaxed),
            tx_errors: self.tx_errors.load(Ordering::Relaxed),
        }
    }
}

impl RingStats {
    /// The sum of two rings' counters (a gateway's queues together).
    pub fn plus(&self, o: &RingStats) -> RingStats {
        RingStats {
            bursts: self.bursts + o.bursts,
            rx_packets: self.rx_packets + o.rx_packets,
            rx_bytes: self.rx_bytes + o.rx_bytes,
            rx_truncated: self.rx_truncated + o.rx_truncated,
            tx_packets: self.tx_packets + o.tx_packets,
            tx_errors: self.tx_errors + o.tx_errors,
        }
    }
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
    /// Where [`PacketRing::flush`] sends it ([`PacketIo::send_to`]); `None` (the default after
    /// a fill): to its own destination ([`PacketIo::send`]).
    pub next_hop: &'a mut Option<IpAddr>,
    /// The virtio-net header read with the packet (zeros without offloads), written back with
    /// it: set it to zeros when the packet leaves with its checksums done and unsegmented.
    pub vnet: &'a mut [u8; VNET_HDR_LEN],
    /// Steering's tag (`None` after a fill): set by the gateway for a forwarded packet, read by
    /// [`PacketRing::flush_to`]'s caller.
    pub steer: &'a mut Option<SteerTag>,
}

/// A ring of `slots` preallocated packet buffers of `buf_size` bytes each, allocated once in
/// [`PacketRing::new`]; packets are rewritten in place and written back from the same buffers.
///
/// One burst: [`fill`](Self::fill) → inspect/rewrite with [`slots_mut`](Self::slots_mut) →
/// [`flush`](Self::flush).
#[derive(Debug)]
pub struct PacketRing {
    buf_size: usize,
    rx: Box<[u8]>,
    meta: Box<[SlotMeta]>,
    filled: usize,
    stats: RingStats,
    /// Packets made while the burst was processed (software segments of an offloaded one),
    /// one after another in `extra`, each with [`EXTRA_ROOM`] bytes behind it; `extra_meta`
    /// holds each one's buffer length. Written after the burst's own.
    extra: Vec<u8>,
    extra_meta: Vec<(usize, SlotMeta)>,
}

/// Bytes behind an extra packet for the balancer to grow it (tunnel headers), as a
/// [`DEFAULT_BUF_SIZE`] buffer has behind a 1,500-byte packet.
const EXTRA_ROOM: usize = DEFAULT_BUF_SIZE - 1500;

impl PacketRing {
    /// Allocates a ring of `slots` buffers of `buf_size` bytes. Both are raised to at least 1.
    pub fn new(slots: usize, buf_size: usize) -> Self {
        let slots = slots.max(1);
        let buf_size = buf_size.max(1);
        PacketRing {
            buf_size,
            rx: vec![0; slots * buf_size].into_boxed_slice(),
            meta: vec![SlotMeta::fresh(0, [0; VNET_HDR_LEN]); slots].into_boxed_slice(),
            filled: 0,
            stats: RingStats::default(),
            extra: Vec::new(),
            extra_meta: Vec::new(),
        }
    }

    /// Adds a packet made while the burst is processed (a software segment), to be written
    /// after the burst's own packets by [`flush`](Self::flush); [`extras_mut`](Self::extras_mut)
    /// hands it to the balancer first. Its buffer has room for the balancer to grow it.
    pub fn push_extra(&mut self, pkt: &[u8]) {
        let at = self.extra.len();
        self.extra.resize(at + pkt.len() + EXTRA_ROOM, 0);
        self.extra[at..at + pkt.len()].copy_from_slice(pkt);
        let meta = SlotMeta::fresh(pkt.len(), [0; VNET_HDR_LEN]);
        self.extra_meta.push((pkt.len() + EXTRA_ROOM, meta));
    }

    /// The packets added by [`push_extra`](Self::push_extra), as [`slots_mut`](Self::slots_mut)
    /// hands the burst's own.
    pub fn extras_mut(&mut self) -> impl Iterator<Item = Slot<'_>> + '_ {
        let mut rest = &mut self.extra[..];
        self.extra_meta.iter_mut().map(move |(size, m)| {
            let (buf, tail) = std::mem::take(&mut rest).split_at_mut(*size);
            rest = tail;
            Slot {
                buf,
                len: &mut m.len,
                action: &mut m.action,
                next_hop: &mut m.next_hop,
                vnet: &mut m.vnet,
                steer: &mut m.steer,
            }
        })
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
            let mut vnet = [0; VNET_HDR_LEN];
            let Some(n) = dev.recv_vnet(&mut vnet, buf)? else {
                break;
            };
            self.stats.rx_packets += 1;
            self.stats.rx_bytes += n as u64;
            if n >= self.buf_size {
                self.stats.rx_truncated += 1;
                continue;
            }
            self.meta[i] = SlotMeta::fresh(n, vnet);
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
                next_hop: &mut m.next_hop,
                vnet: &mut m.vnet,
                steer: &mut m.steer,
            })
    }

    /// Writes every [`Action::Send`] packet to `dev`, in order (to its next hop if it has one),
    /// and empties the ring; returns how many were written.
    ///
    /// A packet the device refuses is counted in [`RingStats::tx_errors`] and dropped: a
    /// gateway drops rather than stalls.
    pub fn flush<D: PacketIo + ?Sized>(&mut self, dev: &D) -> usize {
        self.flush_to(|_, _| dev)
    }

    /// [`flush`](Self::flush), each packet to the device `pick` names for it, given its
    /// steering tag and length as it leaves: lb-tun's steering writes a packet on the queue its
    /// connection belongs to ([`crate::steer`]).
    pub fn flush_to<'d, D: PacketIo + ?Sized + 'd>(
        &mut self,
        mut pick: impl FnMut(Option<SteerTag>, usize) -> &'d D,
    ) -> usize {
        let mut sent = 0;
        for (i, m) in self.meta[..self.filled].iter().enumerate() {
            if m.action != Action::Send {
                continue;
            }
            let len = m.len.min(self.buf_size);
            let pkt = &self.rx[i * self.buf_size..i * self.buf_size + len];
            if Self::send_one(
                pick(m.steer, len),
                pkt,
                m.next_hop,
                &m.vnet,
                &mut self.stats,
            ) {
                sent += 1;
            }
        }
        self.filled = 0;
        let mut at = 0;
        for (size, m) in &self.extra_meta {
            if m.action == Action::Send {
                let pkt = &self.extra[at..at + m.len.min(*size)];
                if Self::send_one(
                    pick(m.steer, pkt.len()),
                    pkt,
                    m.next_hop,
                    &m.vnet,
                    &mut self.stats,
                ) {
                    sent += 1;
                }
            }
            at += size;
        }
        self.extra_meta.clear();
        self.extra.clear();
        sent
    }

    fn send_one<D: PacketIo + ?Sized>(
        dev: &D,
        pkt: &[u8],
        next_hop: Option<IpAddr>,
        vnet: &[u8; VNET_HDR_LEN],
        stats: &mut RingStats,
    ) -> bool {
        // A header that asks for something (a partial checksum, segmentation) goes to a TUN
        // device, which routes on the packet's destination: no next hop to honour.
        let sent = match next_hop {
            _ if *vnet != [0; VNET_HDR_LEN] => dev.send_vnet(vnet, pkt),
            Some(hop) => dev.send_to(pkt, hop),
            None => dev.send(pkt),
        };
        match sent {
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::FakeIo;

    #[test]
    fn fill_reads_a_burst_until_empty_and_flush_echoes_in_order() {
        let pkts: Vec<Vec<u8>> = (0..5u8).map(|i| vec![0x45, i, i, i]).collect();
        let io = FakeIo::with(&pkts);
        let mut ring = PacketRing::new(8, 64);
        assert_eq!(ring.fill(&io).unwrap(), 5);
        assert_eq!(ring.len(), 5);
        assert_eq!(ring.packet(3), &pkts[3][..]);
        assert_eq!(ring.packet(9), &[] as &[u8]);
        assert_eq!(ring.flush(&io), 5);
        assert!(ring.is_empty());
        assert_eq!(*io.outbox.borrow(), pkts);
        assert_eq!(ring.stats().bursts, 1);
        assert_eq!(ring.stats().rx_bytes, 20);
        assert_eq!(ring.stats().tx_packets, 5);
    }

    #[test]
    fn fill_stops_when_the_ring_is_full_and_the_rest_waits() {
        let pkts: Vec<Vec<u8>> = (0..10u8).map(|i| vec![i; 10]).collect();
        let io = FakeIo::with(&pkts);
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
        let io = FakeIo::with(&[vec![1; 8], vec![2; 8], vec![3; 8]]);
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
        ring.set_action(2, Action::Drop); // set after the rewrite pass: honoured too
        ring.set_action(7, Action::Drop); // out of range: ignored
        assert_eq!(ring.flush(&io), 1);
        let mut want = vec![1u8; 8];
        want.extend_from_slice(&[9; 4]);
        assert_eq!(*io.outbox.borrow(), vec![want]);
    }

    /// Extras (software segments) of different lengths, each with room to grow, are handed
    /// out and written after the burst's own packets, in order, as rewritten; then gone.
    #[test]
    fn extras_follow_the_burst_in_order_and_may_grow() {
        let io = FakeIo::with(&[vec![1; 8]]);
        let mut ring = PacketRing::new(4, 64);
        ring.fill(&io).unwrap();
        ring.push_extra(&[2; 100]);
        ring.push_extra(&[3; 3000]);
        ring.push_extra(&[4; 10]);
        for (i, s) in ring.extras_mut().enumerate() {
            assert!(s.buf.len() >= *s.len + 52, "room to grow");
            match i {
                0 => *s.action = Action::Drop,
                1 => {
                    s.buf[3000..3052].fill(5);
                    *s.len = 3052;
                }
                _ => {}
            }
        }
        assert_eq!(ring.flush(&io), 3);
        let mut grown = vec![3u8; 3000];
        grown.extend_from_slice(&[5; 52]);
        assert_eq!(*io.outbox.borrow(), vec![vec![1; 8], grown, vec![4; 10]]);
        assert_eq!(ring.extras_mut().count(), 0, "flushed with the burst");
    }

    #[test]
    fn a_packet_filling_the_whole_buffer_is_dropped_as_truncated() {
        let io = FakeIo::with(&[vec![7; 100], vec![8; 10]]);
        let mut ring = PacketRing::new(4, 64);
        assert_eq!(ring.fill(&io).unwrap(), 1);
        assert_eq!(ring.packet(0), &[8; 10]);
        assert_eq!(ring.stats().rx_truncated, 1);
    }
}
