//! Shared fixtures of lb-core's benchmarks: packet templates with valid checksums, balancers
//! filled with a given number of live flows, a seeded RNG and the pointer chase. Everything
//! is deterministic (fixed hash secret, director seed and RNG seeds), so two runs measure the
//! same work.
#![allow(dead_code)] // each bench target uses a different part

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::rc::Rc;

use lb_core::checksum;
use lb_core::conn::{ConnStorage, ConnTable};
use lb_core::director::{Director, DirectorStorage, Limits};
use lb_core::hash::SipKey;
use lb_core::ipvsadm::Command;
use lb_core::{
    Balancer, ForwardMethod, Instant, Packet, Protocol, SchedulerKind, ServerConfig, ServiceConfig,
    ServiceKey, Settings, Transmit, Verdict,
};
use lb_testkit::pkt;

/// Verdicts the benches expect, compared by kind only ([`same_kind`]): a bench checks that a
/// packet was forwarded, not where to.
const ANY: Transmit = Transmit {
    start: 0,
    dst: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
    len: 0,
};
pub const TO_SERVER: Verdict = Verdict::ToServer(ANY);
pub const TO_CLIENT: Verdict = Verdict::ToClient(ANY);
pub const PASS: Verdict = Verdict::Pass(ANY);

/// Whether two verdicts are the same kind (`ToServer`, `Drop(_)`, …), whatever their transmit.
#[inline]
pub fn same_kind(a: &Verdict, b: &Verdict) -> bool {
    core::mem::discriminant(a) == core::mem::discriminant(b)
}

/// TCP flag bits.
pub const FIN: u8 = 0x01;
pub const SYN: u8 = 0x02;
pub const RST: u8 = 0x04;
pub const ACK: u8 = 0x10;

/// The hash secret and director seed every bench uses (pinned: instruction counts must not
/// depend on the run).
pub const SECRET: SipKey = SipKey([0x0123_4567_89ab_cdef, 0xfedc_ba98_7654_3210]);
pub const DIRECTOR_SEED: u64 = 7;

/// The start of every bench's virtual clock.
pub const T0: Instant = Instant::from_secs(1_000);

/// Buffer size for measured packets (a generated reply never happens on these paths).
pub const BUF: usize = 128;

/// Burst size of `process_burst` in the benches.
pub const BURST: usize = 32;

/// The flow kinds measured: address family × protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    V4Tcp,
    V4Udp,
    V6Tcp,
    V6Udp,
}

impl Kind {
    pub const ALL: [Kind; 4] = [Kind::V4Tcp, Kind::V4Udp, Kind::V6Tcp, Kind::V6Udp];

    pub fn name(self) -> &'static str {
        match self {
            Kind::V4Tcp => "ipv4-tcp",
            Kind::V4Udp => "ipv4-udp",
            Kind::V6Tcp => "ipv6-tcp",
            Kind::V6Udp => "ipv6-udp",
        }
    }

    pub fn v6(self) -> bool {
        matches!(self, Kind::V6Tcp | Kind::V6Udp)
    }

    pub fn proto(self) -> Protocol {
        match self {
            Kind::V4Tcp | Kind::V6Tcp => Protocol::Tcp,
            Kind::V4Udp | Kind::V6Udp => Protocol::Udp,
        }
    }

    /// The virtual service's address.
    pub fn vip(self) -> SocketAddr {
        if self.v6() {
            SocketAddr::new(
                IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 0x100)),
                80,
            )
        } else {
            SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 100)), 80)
        }
    }

    pub fn service_key(self) -> ServiceKey {
        ServiceKey::Addr {
            proto: self.proto(),
            vip: self.vip(),
        }
    }

    /// Real server `k` (distinct addresses, port 8080).
    pub fn server(self, k: usize) -> SocketAddr {
        let k = k as u16;
        if self.v6() {
            SocketAddr::new(
                IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 1, 0, 0, k >> 8, k & 0xff)),
                8080,
            )
        } else {
            SocketAddr::new(
                IpAddr::V4(Ipv4Addr::new(10, 1, (k >> 8) as u8, k as u8)),
                8080,
            )
        }
    }

    /// Client of flow `i`: 64 ports per address (injective for `i < 2^30`).
    pub fn client(self, i: u64) -> SocketAddr {
        let host = (i >> 6) as u32;
        let port = 10_000 + (i & 63) as u16;
        if self.v6() {
            SocketAddr::new(
                IpAddr::V6(Ipv6Addr::new(
                    0x2001,
                    0xdb8,
                    0,
                    0,
                    0,
                    0,
                    (host >> 16) as u16,
                    host as u16,
                )),
                port,
            )
        } else {
            SocketAddr::new(IpAddr::V4(Ipv4Addr::from(0x0b00_0000 + host)), port)
        }
    }
}

/// An IP packet with valid IP and L4 checksums (built by lb-testkit): TCP with `flags` and no
/// payload, or UDP with 18 bytes of payload.
pub fn build_packet(src: SocketAddr, dst: SocketAddr, proto: Protocol, flags: u8) -> Vec<u8> {
    assert_eq!(src.is_ipv4(), dst.is_ipv4(), "mixed address families");
    match proto {
        Protocol::Tcp => pkt::tcp(src, dst, flags, 1000, &[], 0),
        Protocol::Udp => pkt::udp(src, dst, b"lb-core bench data"),
    }
}

/// Recomputes the IPv4 header checksum (if IPv4) and the TCP/UDP checksum of `pkt`.
pub fn fix_checksums(pkt: &mut [u8]) {
    let (l4_off, src, dst, pnum) = if pkt[0] >> 4 == 4 {
        pkt[10] = 0;
        pkt[11] = 0;
        let c = checksum::finish(checksum::add(0, &pkt[..20]));
        pkt[10..12].copy_from_slice(&c.to_be_bytes());
        (20, 12..16, 16..20, pkt[9])
    } else {
        (40, 8..24, 24..40, pkt[6])
    };
    let l4_len = pkt.len() - l4_off;
    let ck = if pnum == 6 { l4_off + 16 } else { l4_off + 6 };
    pkt[ck] = 0;
    pkt[ck + 1] = 0;
    let sum = checksum::pseudo_header(&pkt[src], &pkt[dst], pnum, l4_len as u32);
    let mut c = checksum::finish(checksum::add(sum, &pkt[l4_off..]));
    if pnum == 17 && c == 0 {
        c = 0xffff;
    }
    pkt[ck..ck + 2].copy_from_slice(&c.to_be_bytes());
}

/// A packet to copy into a buffer before each measured call (the balancer rewrites packets in
/// place, so every iteration starts again from the template).
#[derive(Clone)]
pub struct Template {
    pub bytes: Vec<u8>,
}

impl Template {
    pub fn new(src: SocketAddr, dst: SocketAddr, proto: Protocol, flags: u8) -> Self {
        Template {
            bytes: build_packet(src, dst, proto, flags),
        }
    }

    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Copies the template into `buf`; returns its length.
    #[inline]
    pub fn restore(&self, buf: &mut [u8]) -> usize {
        buf[..self.bytes.len()].copy_from_slice(&self.bytes);
        self.bytes.len()
    }

    /// Copies the template into `buf` with its source (`as_src`) or destination address and
    /// port replaced by `addr`, checksums fixed. Returns the length.
    pub fn restore_with(&self, buf: &mut [u8], addr: SocketAddr, as_src: bool) -> usize {
        if as_src {
            self.restore_flow(buf, Some(addr), None)
        } else {
            self.restore_flow(buf, None, Some(addr))
        }
    }

    /// Copies the template into `buf` with the given source and/or destination address and
    /// port, checksums fixed. Returns the length.
    pub fn restore_flow(
        &self,
        buf: &mut [u8],
        src: Option<SocketAddr>,
        dst: Option<SocketAddr>,
    ) -> usize {
        let n = self.restore(buf);
        let pkt = &mut buf[..n];
        let v6 = pkt[0] >> 4 == 6;
        let l4 = if v6 { 40 } else { 20 };
        for (addr, is_src) in [(src, true), (dst, false)] {
            let Some(addr) = addr else { continue };
            let range = match (v6, is_src) {
                (false, true) => 12..16,
                (false, false) => 16..20,
                (true, true) => 8..24,
                (true, false) => 24..40,
            };
            match addr.ip() {
                IpAddr::V4(a) => pkt[range].copy_from_slice(&a.octets()),
                IpAddr::V6(a) => pkt[range].copy_from_slice(&a.octets()),
            }
            let p = if is_src { l4 } else { l4 + 2 };
            pkt[p..p + 2].copy_from_slice(&addr.port().to_be_bytes());
        }
        fix_checksums(pkt);
        n
    }
}

/// xorshift64*: a small seeded RNG (the benches must be reproducible).
#[derive(Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed | 1)
    }
    #[inline]
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    /// Uniform-enough in `0..n`.
    #[inline]
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next()) * u128::from(n)) >> 64) as u64
    }
}

/// Director limits for the benches: 64 service slots (as `Limits::default`) of up to 64
/// servers, mh tables up to 65521.
pub fn limits() -> Limits {
    Limits {
        services: 64,
        servers_per_service: 64,
        table_slots_per_service: 65_521,
        lblc_entries_per_service: 256,
    }
}

/// A balancer with room for `capacity` connections and one service of `kind` scheduled by
/// `sched` over `servers` NAT servers (weights 1..=4 cycling, so wrr has real work).
pub fn balancer(
    kind: Kind,
    capacity: usize,
    sched: SchedulerKind,
    servers: usize,
) -> Balancer<'static> {
    let director = Director::new(DirectorStorage::alloc(limits()), DIRECTOR_SEED);
    let conns = ConnTable::new(ConnStorage::alloc(capacity), SECRET, T0);
    // The benches' new connections are SYNs alone (their handshakes never complete) from a few
    // /24s (16,384 client ports each): the per-prefix share of half-open entries is 100 %, so
    // they are still counted (its cost is measured) but never refused.
    let settings = Settings {
        embryonic_prefix_share: 100,
        ..Settings::default()
    };
    let mut lb = Balancer::new(director, conns, settings);
    let mut cfg = ServiceConfig::new(kind.service_key());
    cfg.scheduler = sched;
    lb.apply(T0, &Command::AddService(cfg))
        .expect("add service");
    for k in 0..servers {
        let mut s = ServerConfig::new(kind.server(k), ForwardMethod::Masq);
        s.weight = 1 + (k as u32 % 4);
        lb.apply(T0, &Command::AddServer(kind.service_key(), s))
            .expect("add server");
    }
    lb
}

/// Writes the packets of the flows of a [`World`]; cloneable, so a bench's input generator can
/// own one while the measured closure owns the balancer.
#[derive(Clone)]
pub struct FlowGen {
    pub kind: Kind,
    pub n: u64,
    /// Server index (into `Kind::server`) of flow `i`.
    pub server_of: Rc<Vec<u8>>,
    /// The established-flow packet (client → VIP; TCP: ACK) to restore from.
    pub fwd: Template,
    /// The reply packet (server → client; TCP: ACK).
    pub reply: Template,
}

impl FlowGen {
    /// Writes the forward packet of flow `i` into `buf`.
    #[inline]
    pub fn forward(&self, buf: &mut [u8], i: u64) -> usize {
        self.fwd.restore_with(buf, self.kind.client(i), true)
    }

    /// Writes the reply packet of flow `i` (from its server to its client) into `buf`.
    #[inline]
    pub fn reply(&self, buf: &mut [u8], i: u64) -> usize {
        let server = self.kind.server(usize::from(self.server_of[i as usize]));
        self.reply
            .restore_flow(buf, Some(server), Some(self.kind.client(i)))
    }
}

/// A balancer holding `n` established flows of `kind` (TCP: SYN then ACK, so the entries are
/// ESTABLISHED; UDP: one packet), with the server of every flow recorded for the reply
/// direction.
pub struct World {
    pub lb: Balancer<'static>,
    pub gen: FlowGen,
    pub now: Instant,
}

pub const WORLD_SERVERS: usize = 4;

impl World {
    pub fn new(kind: Kind, n: u64) -> World {
        let mut lb = balancer(kind, n as usize, SchedulerKind::Wrr, WORLD_SERVERS);
        let vip = kind.vip();
        let proto = kind.proto();
        let syn = Template::new(kind.client(0), vip, proto, SYN);
        let fwd = Template::new(kind.client(0), vip, proto, ACK);
        let reply = Template::new(kind.server(0), kind.client(0), proto, ACK);
        let mut buf = [0u8; BUF];
        let mut server_of = Vec::with_capacity(n as usize);
        let servers: Vec<SocketAddr> = (0..WORLD_SERVERS).map(|k| kind.server(k)).collect();
        for i in 0..n {
            let c = kind.client(i);
            let first = if proto == Protocol::Tcp { &syn } else { &fwd };
            let len = first.restore_with(&mut buf, c, true);
            let v = lb.process(T0, &mut buf, len);
            assert!(same_kind(&v, &TO_SERVER), "fill flow {i}");
            let dst = lb_core::packet::parse(&buf[..len]).expect("parse").dst;
            let k = servers
                .iter()
                .position(|s| *s == dst)
                .expect("known server");
            server_of.push(k as u8);
            if proto == Protocol::Tcp {
                let len = fwd.restore_with(&mut buf, c, true);
                assert!(same_kind(&lb.process(T0, &mut buf, len), &TO_SERVER));
            }
        }
        assert_eq!(lb.conns().len() as u64, n);
        World {
            lb,
            gen: FlowGen {
                kind,
                n,
                server_of: Rc::new(server_of),
                fwd,
                reply,
            },
            now: T0,
        }
    }

    /// Writes the forward packet of flow `i` into `buf`.
    #[inline]
    pub fn forward(&self, buf: &mut [u8], i: u64) -> usize {
        self.gen.forward(buf, i)
    }

    /// Writes the reply packet of flow `i` (from its server to its client) into `buf`.
    #[inline]
    pub fn reply(&self, buf: &mut [u8], i: u64) -> usize {
        self.gen.reply(buf, i)
    }
}

/// `BURST` packet buffers and their lengths, filled before a measured `process_burst`.
pub struct BurstBufs {
    pub bufs: [[u8; BUF]; BURST],
    pub lens: [usize; BURST],
}

impl BurstBufs {
    pub fn new() -> Box<Self> {
        Box::new(BurstBufs {
            bufs: [[0; BUF]; BURST],
            lens: [0; BURST],
        })
    }

    /// Runs the burst through `lb`; returns how many verdicts were `want`.
    #[inline]
    pub fn run(&mut self, lb: &mut Balancer<'_>, now: Instant, want: Verdict) -> usize {
        let mut verdicts = [Verdict::default(); BURST];
        let mut pkts: [Packet<'_>; BURST] = {
            let mut it = self.bufs.iter_mut().zip(self.lens);
            core::array::from_fn(|_| {
                let (buf, len) = it.next().expect("BURST buffers");
                Packet {
                    buf: &mut buf[..],
                    start: 0,
                    len,
                    csum_partial: false,
                }
            })
        };
        lb.process_burst(now, &mut pkts, &mut verdicts);
        verdicts.iter().filter(|v| same_kind(v, &want)).count()
    }
}

/// A buffer of `bytes` bytes holding one random cycle through all its cache lines: each load's
/// address is the value of the previous load, so the loads cannot overlap (what one table
/// lookup per packet would pay if every access missed).
pub struct Chase {
    next: Vec<u64>,
    pos: usize,
}

impl Chase {
    pub fn new(bytes: usize, seed: u64) -> Chase {
        let lines = (bytes / 64).max(2);
        // Sattolo's algorithm: a single cycle over all lines.
        let mut perm: Vec<usize> = (0..lines).collect();
        let mut rng = Rng::new(seed);
        for i in (1..lines).rev() {
            let j = rng.below(i as u64) as usize;
            perm.swap(i, j);
        }
        let mut next = vec![0u64; lines * 8];
        for i in 0..lines {
            next[i * 8] = (perm[i] * 8) as u64;
        }
        Chase { next, pos: 0 }
    }

    /// Follows `steps` dependent loads.
    #[inline]
    pub fn run(&mut self, steps: usize) -> usize {
        let mut p = self.pos;
        for _ in 0..steps {
            p = self.next[p] as usize;
        }
        self.pos = p;
        p
    }
}

/// The memory floor of a staged table lookup: per packet, one random 8-byte load from a buffer
/// the size of the table's index, whose value names a random entry (48-byte slot) of a second
/// buffer the size of its slab, loaded next — the two dependent misses of a lookup — with the
/// loads of a burst of 32 issued stage by stage as `process_burst` issues them (all index loads,
/// then all entry loads). No hashing, parsing or anything else: what the burst path would cost
/// if it did nothing but its two rounds of misses.
pub struct Floor {
    index: Vec<u64>,
    slab: Vec<u64>,
    rng: Rng,
}

impl Floor {
    /// Buffers for a table of `capacity` entries (sized by `ConnStorage::slots_for`).
    pub fn new(capacity: usize, seed: u64) -> Floor {
        let sizes = lb_core::conn::ConnStorage::slots_for(capacity);
        let slot_words = core::mem::size_of::<lb_core::conn::ConnSlot>() / 8;
        let mut rng = Rng::new(seed);
        let index: Vec<u64> = (0..sizes.index_slots)
            .map(|_| rng.below(sizes.entries as u64) * slot_words as u64)
            .collect();
        let slab = vec![1u64; sizes.entries * slot_words];
        Floor { index, slab, rng }
    }

    /// `bursts` bursts of 32 staged lookups; returns a value depending on every load.
    #[inline]
    pub fn run(&mut self, bursts: usize) -> u64 {
        let mut sink = 0u64;
        let n = self.index.len() as u64;
        for _ in 0..bursts {
            let mut pos = [0u64; BURST];
            for p in pos.iter_mut() {
                *p = self.index[((u128::from(self.rng.next()) * u128::from(n)) >> 64) as usize];
            }
            for p in pos {
                sink = sink.wrapping_add(self.slab[p as usize]);
            }
        }
        sink
    }
}

/// The bare cost: parse the packet and rewrite its destination, no lookup — with the parser
/// and rewrite the balancer itself uses for the packet: `packet::parse_flow` and
/// `nat::rewrite_flow` for TCP/UDP of the common shape (every packet the benches measure),
/// `packet::parse` and `nat::rewrite_dst` otherwise.
#[inline]
pub fn bare_rewrite(buf: &mut [u8], len: usize, server: SocketAddr) -> bool {
    if let Some(f) = lb_core::packet::parse_flow(&buf[..len]) {
        let addr = lb_core::packet::addr_bytes(server.ip());
        return lb_core::nat::rewrite_flow(&mut buf[..len], &f, &addr, server.port(), false)
            .is_ok();
    }
    match lb_core::packet::parse(&buf[..len]) {
        Ok(p) => lb_core::nat::rewrite_dst(&mut buf[..len], &p, server).is_ok(),
        Err(_) => false,
    }
}

/// Every scheduler, by ipvsadm name.
pub const SCHEDULERS: [(&str, SchedulerKind); 14] = [
    ("rr", SchedulerKind::Rr),
    ("wrr", SchedulerKind::Wrr),
    ("lc", SchedulerKind::Lc),
    ("wlc", SchedulerKind::Wlc),
    ("sed", SchedulerKind::Sed),
    ("nq", SchedulerKind::Nq),
    ("lblc", SchedulerKind::Lblc),
    ("lblcr", SchedulerKind::Lblcr),
    ("dh", SchedulerKind::Dh),
    ("sh", SchedulerKind::Sh),
    ("mh", SchedulerKind::Mh),
    ("fo", SchedulerKind::Fo),
    ("ovf", SchedulerKind::Ovf),
    ("twos", SchedulerKind::Twos),
];

/// New connections into a table of `capacity` entries kept ~full by expiry: SYNs arrive at 16
/// per virtual millisecond, so with SYN_RECV's 60 s timeout about 960,000 entries are live
/// once the clock has run 60 s; `handle_timeout` runs whenever `poll_timeout` has passed, as a
/// frontend would call it.
pub struct Churn {
    pub lb: Balancer<'static>,
    pub gen: SynGen,
}

/// Writes the SYN of the next new flow, with its arrival time.
#[derive(Clone)]
pub struct SynGen {
    pub syn: Template,
    pub kind: Kind,
    /// Next flow number.
    pub next: u64,
}

impl SynGen {
    /// Writes the next new flow's SYN into `buf`; returns its arrival time and length.
    #[inline]
    pub fn prepare(&mut self, buf: &mut [u8]) -> (Instant, usize) {
        let i = self.next;
        self.next += 1;
        let now = T0 + lb_core::Duration::from_millis(i / CHURN_PER_MS);
        (now, self.syn.restore_with(buf, self.kind.client(i), true))
    }
}

pub const CHURN_PER_MS: u64 = 16;
pub const CHURN_SERVERS: usize = 16;

/// Timers due, then the packet: what a frontend does per packet.
#[inline]
pub fn step(lb: &mut Balancer<'_>, now: Instant, buf: &mut [u8], len: usize) -> Verdict {
    if lb.poll_timeout().is_some_and(|t| now >= t) {
        lb.handle_timeout(now);
    }
    lb.process(now, buf, len)
}

impl Churn {
    /// Fills the table with `warm` flows (use ≥ 1,000,000 for a steady ~960,000 live entries).
    pub fn new(kind: Kind, capacity: usize, sched: SchedulerKind, warm: u64) -> Churn {
        let mut lb = balancer(kind, capacity, sched, CHURN_SERVERS);
        if sched == SchedulerKind::Ovf {
            // ovf never lets a server's active connections exceed its weight (and SYN_RECV
            // counts as active): give the 16 servers room for the ~1 M live entries.
            for k in 0..CHURN_SERVERS {
                let mut s = ServerConfig::new(kind.server(k), ForwardMethod::Masq);
                s.weight = ServerConfig::MAX_WEIGHT;
                lb.apply(T0, &Command::EditServer(kind.service_key(), s))
                    .expect("edit server");
            }
        }
        let syn = Template::new(kind.client(0), kind.vip(), kind.proto(), SYN);
        let mut gen = SynGen { syn, kind, next: 0 };
        let mut buf = [0u8; BUF];
        for _ in 0..warm {
            let (now, len) = gen.prepare(&mut buf);
            assert!(same_kind(&step(&mut lb, now, &mut buf, len), &TO_SERVER));
        }
        Churn { lb, gen }
    }
}

/// The IPv4 header checksum of `h`, recomputed.
pub fn ipv4_header_checksum(h: &mut [u8]) {
    h[10..12].fill(0);
    let mut sum: u32 = h
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    h[10..12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
}

/// Makes `buf[..len]` (an IPv4 or IPv6 UDP datagram) a fragment of datagram `id`: with `first`,
/// the first fragment (the whole L4 header and payload, more fragments follow); else a later,
/// last one of 16 bytes at offset 64. IPv6 gets a Fragment header. Returns the length.
pub fn make_fragment(buf: &mut [u8], len: usize, id: u32, first: bool) -> usize {
    let v6 = buf[0] >> 4 == 6;
    let hdr = if v6 { 40 } else { 20 };
    // Offset 64 bytes for a later fragment; IPv6 counts in bytes with M in bit 0, IPv4 in
    // 8-byte units with MF in bit 13.
    let data = if first { len - hdr } else { 16 };
    if v6 {
        let mut out = [0u8; BUF];
        out[..40].copy_from_slice(&buf[..40]);
        out[40] = buf[6];
        out[6] = 44;
        let field: u16 = if first { 1 } else { 64 };
        out[42..44].copy_from_slice(&field.to_be_bytes());
        out[44..48].copy_from_slice(&id.to_be_bytes());
        out[48..48 + data].copy_from_slice(&buf[40..40 + data]);
        out[4..6].copy_from_slice(&((8 + data) as u16).to_be_bytes());
        buf[..BUF].copy_from_slice(&out);
        48 + data
    } else {
        let total = 20 + data;
        buf[2..4].copy_from_slice(&(total as u16).to_be_bytes());
        buf[4..6].copy_from_slice(&(id as u16).to_be_bytes());
        let flags: u16 = if first { 0x2000 } else { 64 / 8 };
        buf[6..8].copy_from_slice(&flags.to_be_bytes());
        ipv4_header_checksum(&mut buf[..20]);
        total
    }
}
