//! A userspace-TCP world around an lb-embedded gateway, on a virtual clock.
//!
//! One client host (a smoltcp `Interface` with many TCP client sockets) and several real
//! servers (one `Interface` each, a pool of listening TCP sockets) talk through the gateway over
//! in-memory devices joined by a hub (`Medium::Ip`: routed by address; `Medium::Ethernet`: a
//! switch by MAC, broadcasts flooded). Every link hop takes `link_delay_ms` of virtual time;
//! nothing sleeps. Shared by `lb-embedded/tests/userspace_tcp.rs` and the `embedded-sim` demo
//! in `examples/` (included there with `#[path]`); `forwarding_sim.rs` takes its device, hosts
//! and `mac` and builds its own switch.
//!
//! Each connection: the client connects from a port of its pool, sends `conn=<id>\n`; the
//! server answers `srv=<name> conn=<id>\n` after a think time and **closes first**; the client
//! reads to the end and closes. A port is reused `reuse_min_ms..reuse_max_ms` after its last
//! connection ended: after smoltcp's 10 s TIME_WAIT, inside IPVS's 120 s one.
#![allow(dead_code)]

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use lb_embedded::lb_core::{DirectorStorage, Event, Instant, Limits};
use lb_embedded::route::Route;
use lb_embedded::smoltcp;
use lb_embedded::{Gateway, GatewayConfig};
use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::phy::{self, Device, DeviceCapabilities, Medium};
use smoltcp::socket::tcp;
use smoltcp::time::Instant as SmolInstant;
use smoltcp::wire::{
    EthernetAddress, EthernetFrame, EthernetProtocol, HardwareAddress, IpAddress, IpCidr,
    IpProtocol, Ipv4Packet, TcpPacket,
};

/// The gateway resources the simulation uses.
pub type Res = lb_embedded::gateway_resources!(conns: 2048, neighbours: 16, routes: 4, hold: 8);

/// smoltcp's TIME_WAIT (`CLOSE_DELAY` in `socket/tcp.rs`): 10 s.
pub const SMOLTCP_TIME_WAIT_MS: u64 = 10_000;
/// IPVS's TCP TIME_WAIT timeout: 120 s.
pub const IPVS_TIME_WAIT_MS: u64 = 120_000;

pub const VIP: Ipv4Addr = Ipv4Addr::new(10, 0, 1, 100);
pub const VPORT: u16 = 80;
pub const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 0, 1, 2);
pub const GW_CLIENT_SIDE: Ipv4Addr = Ipv4Addr::new(10, 0, 1, 1);
pub const GW_SERVER_SIDE: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 1);

/// Simulation parameters.
#[derive(Debug, Clone)]
pub struct Params {
    pub medium: Medium,
    pub connections: usize,
    /// wrr weights of the servers s1, s2, …
    pub weights: Vec<u32>,
    /// Client ports: `first_port .. first_port + ports`.
    pub first_port: u16,
    pub ports: u16,
    /// Gap between connection starts, uniform in this range (ms).
    pub gap_ms: (u64, u64),
    /// A port is reused this long after its connection ended (ms), uniform.
    pub reuse_ms: (u64, u64),
    /// Server think time before answering (ms), uniform.
    pub think_ms: (u64, u64),
    pub link_delay_ms: u64,
    /// After this many connections have started, set this server (index) to weight 0 (once
    /// it has an established connection, so something drains).
    pub drain: Option<(usize, usize)>,
    /// After this many connections have started, delete this server (once it has no open
    /// connection).
    pub remove: Option<(usize, usize)>,
    /// Keep the clock running this long after the last connection (to see entries expire).
    pub linger_ms: u64,
    pub seed: u64,
}

impl Params {
    /// The scenario: 2,400 connections, 4 servers (3:2:1:1), the third drained after
    /// 800 connections and the fourth removed after 1,600.
    pub fn scenario(medium: Medium) -> Params {
        Params {
            medium,
            connections: 2400,
            weights: vec![3, 2, 1, 1],
            first_port: 40000,
            ports: 300,
            gap_ms: (50, 150),
            reuse_ms: (10_500, 115_000),
            think_ms: (1, 40),
            link_delay_ms: 1,
            drain: Some((800, 2)),
            remove: Some((1600, 3)),
            linger_ms: 125_000,
            seed: 0x5eed,
        }
    }
}

/// One finished (or failed) connection.
#[derive(Debug, Clone)]
pub struct ConnRecord {
    pub id: usize,
    pub port: u16,
    pub start_ms: u64,
    pub end_ms: u64,
    /// Time to the whole response (ms).
    pub latency_ms: u64,
    /// The server that answered (index), if the exchange completed.
    pub server: Option<usize>,
    /// SYNs seen on the client ↔ gateway wire for this connection.
    pub syns: u32,
    /// Whether this port had been used before (and when that connection ended).
    pub reused_after_ms: Option<u64>,
    /// 0 before the drain, 1 between drain and removal, 2 after.
    pub phase: usize,
}

/// What a run measured.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub records: Vec<ConnRecord>,
    pub servers: Vec<String>,
    /// Connections each server's director stats counted, per phase.
    pub scheduled: [Vec<u64>; 3],
    /// Weights in force in each phase.
    pub phase_weights: [Vec<u32>; 3],
    /// Established connections on the drained server when it was set to weight 0.
    pub open_at_drain: usize,
    /// Connections started after the removal that the removed server answered.
    pub accepted_after_removal: usize,
    /// Connections started after the drain that the drained server answered.
    pub accepted_after_drain: usize,
    /// When (virtual ms) the drained server was reported drained.
    pub drained_event_ms: Option<u64>,
    pub drain_ms: Option<u64>,
    pub remove_ms: Option<u64>,
    pub rst_seen: u64,
    pub gateway: lb_embedded::GatewayCounters,
    pub balancer: lb_embedded::lb_core::Counters,
    pub virtual_ms: u64,
    pub max_table: usize,
}

impl Report {
    pub fn completed(&self) -> usize {
        self.records.iter().filter(|r| r.server.is_some()).count()
    }
    pub fn reused(&self) -> usize {
        self.records
            .iter()
            .filter(|r| r.reused_after_ms.is_some())
            .count()
    }
    pub fn syn_retransmissions(&self) -> usize {
        self.records.iter().filter(|r| r.syns != 1).count()
    }
    pub fn per_server(&self) -> Vec<usize> {
        let mut v = vec![0; self.servers.len()];
        for r in &self.records {
            if let Some(s) = r.server {
                v[s] += 1;
            }
        }
        v
    }
    pub fn latency_percentile(&self, q: f64) -> u64 {
        let mut l: Vec<u64> = self.records.iter().map(|r| r.latency_ms).collect();
        if l.is_empty() {
            return 0;
        }
        l.sort_unstable();
        let i = ((l.len() as f64 * q).round() as usize).clamp(1, l.len());
        l[i - 1]
    }
    /// The summary the TUN demo prints, plus the split per phase.
    pub fn summary(&self) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let n = self.records.len();
        let _ = writeln!(
            s,
            "requests {n}  completed {}  failed {}",
            self.completed(),
            n - self.completed()
        );
        let _ = write!(s, "per server:");
        for (name, c) in self.servers.iter().zip(self.per_server()) {
            let _ = write!(s, "  {name} {c}");
        }
        let _ = writeln!(s);
        for (p, label) in ["before drain", "drained", "removed"].iter().enumerate() {
            let _ = write!(s, "  scheduled {label:<13}");
            for (i, name) in self.servers.iter().enumerate() {
                let _ = write!(
                    s,
                    "  {name} {:>4} (w{})",
                    self.scheduled[p].get(i).copied().unwrap_or(0),
                    self.phase_weights[p].get(i).copied().unwrap_or(0)
                );
            }
            let _ = writeln!(s);
        }
        let _ = writeln!(
            s,
            "latency (virtual) p50 {} ms  p99 {} ms  max {} ms",
            self.latency_percentile(0.50),
            self.latency_percentile(0.99),
            self.records.iter().map(|r| r.latency_ms).max().unwrap_or(0)
        );
        let b = &self.balancer;
        let _ = writeln!(
            s,
            "client ports reused {}  rescheduled by the gateway {} (TIME_WAIT reuse {}, quiescent {}, removed server {})",
            self.reused(),
            b.reuse_reschedules + b.quiescent_reschedules + b.nodest_reschedules,
            b.reuse_reschedules,
            b.quiescent_reschedules,
            b.nodest_reschedules
        );
        let _ = writeln!(
            s,
            "connections that needed a retransmission (SYNs != 1 on the wire): {}  RSTs seen: {}",
            self.syn_retransmissions(),
            self.rst_seen
        );
        let _ = writeln!(
            s,
            "drain: {} open on weight-0 server, accepted after drain {}, drained event after {} s; removed server accepted after removal {}",
            self.open_at_drain,
            self.accepted_after_drain,
            match (self.drained_event_ms, self.drain_ms) {
                (Some(e), Some(d)) => format!("{:.1}", (e - d) as f64 / 1000.0),
                _ => "-".into(),
            },
            self.accepted_after_removal
        );
        let g = &self.gateway;
        let _ = writeln!(
            s,
            "gateway: frames {}  forwarded {}  own {}  arp answers {}  requests {}  held {}  drops: balancer {} hold-full {} unresolved {} no-route {} tx-full {}",
            g.rx_frames, g.forwarded, g.rx_own, g.arp_answers, g.requests_sent, g.held,
            g.balancer_drops, g.hold_full_drops, g.unresolved_drops, g.no_route, g.tx_full
        );
        let _ = writeln!(
            s,
            "virtual time {:.1} s  connection table peak {}",
            self.virtual_ms as f64 / 1000.0,
            self.max_table
        );
        s
    }
}

// ---------------------------------------------------------------------- devices and hub

/// An in-memory device: `rx` is what it receives, `tx` what it sent.
pub struct SimDevice {
    medium: Medium,
    pub rx: VecDeque<Vec<u8>>,
    pub tx: Vec<Vec<u8>>,
}

impl SimDevice {
    pub fn new(medium: Medium) -> Self {
        SimDevice {
            medium,
            rx: VecDeque::new(),
            tx: Vec::new(),
        }
    }
}

pub struct SimRx(Vec<u8>);
pub struct SimTx<'a>(&'a mut Vec<Vec<u8>>);

impl phy::RxToken for SimRx {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

impl phy::TxToken for SimTx<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut v = vec![0; len];
        let r = f(&mut v);
        self.0.push(v);
        r
    }
}

impl Device for SimDevice {
    type RxToken<'a> = SimRx;
    type TxToken<'a> = SimTx<'a>;

    fn receive(&mut self, _t: SmolInstant) -> Option<(SimRx, SimTx<'_>)> {
        let f = self.rx.pop_front()?;
        Some((SimRx(f), SimTx(&mut self.tx)))
    }

    fn transmit(&mut self, _t: SmolInstant) -> Option<SimTx<'_>> {
        Some(SimTx(&mut self.tx))
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut c = DeviceCapabilities::default();
        c.medium = self.medium;
        c.max_transmission_unit = match self.medium {
            Medium::Ethernet => 1514,
            _ => 1500,
        };
        c
    }
}

pub fn smol(ms: u64) -> SmolInstant {
    SmolInstant::from_millis(ms as i64)
}

pub fn mac(n: u8) -> EthernetAddress {
    EthernetAddress([0x02, 0, 0, 0, 0, n])
}

/// Node 0 is the gateway, 1 the client, 2.. the servers.
struct Hub {
    medium: Medium,
    delay: u64,
    /// (deliver at, node, frame), in time order (constant delay).
    queue: VecDeque<(u64, usize, Vec<u8>)>,
    addrs: Vec<Ipv4Addr>,
    macs: Vec<EthernetAddress>,
    /// SYN counts per client port (client → gateway).
    syns: HashMap<u16, u32>,
    rst_seen: u64,
}

impl Hub {
    fn ip_of<'f>(&self, frame: &'f [u8]) -> Option<&'f [u8]> {
        match self.medium {
            Medium::Ethernet => {
                let f = EthernetFrame::new_checked(frame).ok()?;
                (f.ethertype() == EthernetProtocol::Ipv4).then(|| &frame[14..])
            }
            _ => Some(frame),
        }
    }

    /// Watches TCP flags on the wire.
    fn sniff(&mut self, from: usize, frame: &[u8]) {
        let Some(ip) = self.ip_of(frame) else { return };
        let Ok(p) = Ipv4Packet::new_checked(ip) else {
            return;
        };
        if p.next_header() != IpProtocol::Tcp {
            return;
        }
        let Ok(t) = TcpPacket::new_checked(p.payload()) else {
            return;
        };
        if t.rst() {
            self.rst_seen += 1;
        }
        if from == 1 && t.syn() && !t.ack() {
            *self.syns.entry(t.src_port()).or_default() += 1;
        }
    }

    fn send(&mut self, now: u64, from: usize, frame: Vec<u8>) {
        self.sniff(from, &frame);
        let at = now + self.delay;
        match self.medium {
            Medium::Ethernet => {
                let Ok(f) = EthernetFrame::new_checked(&frame[..]) else {
                    return;
                };
                let dst = f.dst_addr();
                if dst.is_broadcast() || dst.is_multicast() {
                    for n in 0..self.macs.len() {
                        if n != from {
                            self.queue.push_back((at, n, frame.clone()));
                        }
                    }
                } else if let Some(n) = self.macs.iter().position(|m| *m == dst) {
                    self.queue.push_back((at, n, frame));
                }
            }
            _ => {
                let to = if from == 0 {
                    let Ok(p) = Ipv4Packet::new_checked(&frame[..]) else {
                        return;
                    };
                    let dst = p.dst_addr();
                    match self.addrs.iter().position(|a| *a == dst) {
                        Some(n) => n,
                        None => return,
                    }
                } else {
                    0
                };
                self.queue.push_back((at, to, frame));
            }
        }
    }
}

// ---------------------------------------------------------------------- hosts

/// A smoltcp host on a [`SimDevice`]: the client, or a real server.
pub struct Host {
    pub dev: SimDevice,
    pub iface: Interface,
    pub sockets: SocketSet<'static>,
}

impl Host {
    /// A host at `addr`/24 with hardware address [`mac`]`(n)` on Ethernet, routed by `gw`.
    pub fn new(medium: Medium, n: u8, addr: Ipv4Addr, gw: Ipv4Addr, seed: u64) -> Host {
        let mut dev = SimDevice::new(medium);
        let hw = match medium {
            Medium::Ethernet => HardwareAddress::Ethernet(mac(n)),
            _ => HardwareAddress::Ip,
        };
        let mut cfg = Config::new(hw);
        cfg.random_seed = seed;
        let mut iface = Interface::new(cfg, &mut dev, smol(0));
        iface.update_ip_addrs(|a| {
            a.push(IpCidr::new(IpAddress::Ipv4(addr), 24)).unwrap();
        });
        iface.routes_mut().add_default_ipv4_route(gw).unwrap();
        Host {
            dev,
            iface,
            sockets: SocketSet::new(vec![]),
        }
    }

    /// A TCP socket with 512-byte buffers.
    pub fn add_tcp(&mut self) -> SocketHandle {
        self.add_tcp_with(512)
    }

    /// A TCP socket with `bytes`-byte receive and send buffers.
    pub fn add_tcp_with(&mut self, bytes: usize) -> SocketHandle {
        let s = tcp::Socket::new(
            tcp::SocketBuffer::new(vec![0; bytes]),
            tcp::SocketBuffer::new(vec![0; bytes]),
        );
        self.sockets.add(s)
    }

    pub fn poll(&mut self, now: u64) {
        self.iface.poll(smol(now), &mut self.dev, &mut self.sockets);
    }

    pub fn poll_at(&mut self, now: u64) -> Option<u64> {
        self.iface
            .poll_at(smol(now), &self.sockets)
            .map(|t| t.total_millis().max(0) as u64)
    }
}

/// A tiny deterministic generator (xorshift64*).
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub fn range(&mut self, (lo, hi): (u64, u64)) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
}

struct ClientConn {
    id: usize,
    port: u16,
    start: u64,
    handle: SocketHandle,
    sent: bool,
    resp: Vec<u8>,
    done_at: Option<u64>,
    syns_before: u32,
    reused_after: Option<u64>,
    phase: usize,
}

#[derive(Default)]
struct ServerConn {
    req: Vec<u8>,
    respond_at: Option<u64>,
    answered: bool,
}

struct Server {
    name: String,
    host: Host,
    socks: Vec<SocketHandle>,
    conns: HashMap<SocketHandle, ServerConn>,
}

fn server_addr(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 0, 2, 11 + i as u8)
}

/// Runs the simulation with the gateway in `res`.
pub fn run(p: &Params, res: &mut Res) -> Report {
    let nsrv = p.weights.len();
    let mut rng = Rng(p.seed | 1);

    // The gateway.
    let mut gw_dev = SimDevice::new(p.medium);
    let limits = Limits {
        services: 2,
        servers_per_service: 8,
        table_slots_per_service: 0,
        lblc_entries_per_service: 0,
    };
    let mut gw = Gateway::new(
        res,
        DirectorStorage::alloc(limits),
        &mut gw_dev,
        GatewayConfig::from_seed(mac(1), p.seed),
        Instant::ZERO,
    )
    .expect("gateway");
    gw.add_address(IpCidr::new(IpAddress::Ipv4(GW_CLIENT_SIDE), 24))
        .unwrap();
    gw.add_address(IpCidr::new(IpAddress::Ipv4(GW_SERVER_SIDE), 24))
        .unwrap();
    gw.add_route(Route::default_via(IpAddr::V4(Ipv4Addr::new(10, 0, 1, 254))))
        .unwrap();
    let t0 = Instant::ZERO;
    gw.apply_line(t0, &format!("-A -t {VIP}:{VPORT} -s wrr"))
        .unwrap();
    for (i, w) in p.weights.iter().enumerate() {
        gw.apply_line(
            t0,
            &format!("-a -t {VIP}:{VPORT} -r {}:80 -m -w {w}", server_addr(i)),
        )
        .unwrap();
    }

    // Hosts.
    let mut client = Host::new(p.medium, 2, CLIENT, GW_CLIENT_SIDE, p.seed ^ 7);
    let client_socks: Vec<SocketHandle> = (0..64).map(|_| client.add_tcp()).collect();
    let mut free_socks: Vec<SocketHandle> = client_socks.clone();
    let mut servers: Vec<Server> = (0..nsrv)
        .map(|i| {
            let mut host = Host::new(
                p.medium,
                10 + i as u8,
                server_addr(i),
                GW_SERVER_SIDE,
                p.seed ^ (100 + i as u64),
            );
            let socks = (0..96).map(|_| host.add_tcp()).collect();
            Server {
                name: format!("s{}", i + 1),
                host,
                socks,
                conns: HashMap::new(),
            }
        })
        .collect();

    let mut addrs = vec![GW_CLIENT_SIDE, CLIENT];
    let mut macs = vec![mac(1), mac(2)];
    for i in 0..nsrv {
        addrs.push(server_addr(i));
        macs.push(mac(10 + i as u8));
    }
    let mut hub = Hub {
        medium: p.medium,
        delay: p.link_delay_ms,
        queue: VecDeque::new(),
        addrs,
        macs,
        syns: HashMap::new(),
        rst_seen: 0,
    };

    // Client port pool: port → (available at, last end).
    let mut ports: Vec<(u16, u64, Option<u64>)> =
        (0..p.ports).map(|i| (p.first_port + i, 0, None)).collect();

    let mut report = Report {
        servers: servers.iter().map(|s| s.name.clone()).collect(),
        ..Report::default()
    };
    let mut weights = p.weights.clone();
    let mut phase = 0usize;
    let mut phase_start_stats = vec![0u64; nsrv];
    let stats_now = |gw: &Gateway<'_>| -> Vec<u64> {
        let d = gw.balancer().director();
        let mut v = vec![0u64; nsrv];
        for (id, _) in d.services() {
            for (_, s) in d.servers(id).iter() {
                if let Some(i) = (0..nsrv).find(|&i| s.addr().ip() == IpAddr::V4(server_addr(i))) {
                    v[i] = s.stats.conns;
                }
            }
        }
        v
    };
    let mut removed_stats: Option<u64> = None;

    let mut now = 0u64;
    let mut next_start = 0u64;
    let mut started = 0usize;
    let mut active: Vec<ClientConn> = Vec::new();
    let mut last_end = 0u64;
    let mut same_time_rounds = 0;
    let mut drain_done = p.drain.is_none();
    let mut remove_done = p.remove.is_none();

    loop {
        // Deliver due frames.
        while hub.queue.front().is_some_and(|(t, _, _)| *t <= now) {
            let (_, n, f) = hub.queue.pop_front().unwrap();
            match n {
                0 => gw_dev.rx.push_back(f),
                1 => client.dev.rx.push_back(f),
                k => servers[k - 2].host.dev.rx.push_back(f),
            }
        }

        // Control plane: drain and removal.
        if !drain_done {
            let (after, idx) = p.drain.unwrap();
            if started >= after {
                let open = connections_on(&gw, now, idx, |state| state == "ESTABLISHED");
                if open > 0 {
                    let s = stats_now(&gw);
                    report.scheduled[0] = since(&s, &phase_start_stats);
                    report.phase_weights[0] = weights.clone();
                    phase_start_stats = s;
                    weights[idx] = 0;
                    gw.apply_line(
                        Instant::from_millis(now),
                        &format!("-e -t {VIP}:{VPORT} -r {}:80 -m -w 0", server_addr(idx)),
                    )
                    .unwrap();
                    report.open_at_drain = open;
                    report.drain_ms = Some(now);
                    drain_done = true;
                    phase = 1;
                }
            }
        }
        let mut hold_starts = false;
        if drain_done && !remove_done {
            let (after, idx) = p.remove.unwrap();
            if started >= after {
                let open = connections_on(&gw, now, idx, |state| {
                    state != "TIME_WAIT" && state != "CLOSE"
                });
                if open == 0 {
                    let s = stats_now(&gw);
                    report.scheduled[1] = since(&s, &phase_start_stats);
                    report.phase_weights[1] = weights.clone();
                    removed_stats = Some(s[idx]);
                    phase_start_stats = s;
                    weights[idx] = 0;
                    gw.apply_line(
                        Instant::from_millis(now),
                        &format!("-d -t {VIP}:{VPORT} -r {}:80", server_addr(idx)),
                    )
                    .unwrap();
                    report.remove_ms = Some(now);
                    remove_done = true;
                    phase = 2;
                } else {
                    hold_starts = true;
                }
            }
        }

        // Start connections.
        while started < p.connections && now >= next_start && !hold_starts {
            let Some(pi) = ports
                .iter()
                .enumerate()
                .filter(|(_, (_, at, _))| *at <= now)
                .min_by_key(|(_, (port, at, _))| (*at, *port))
                .map(|(i, _)| i)
            else {
                break;
            };
            let Some(h) = free_socks.pop() else { break };
            let (port, _, last) = ports[pi];
            ports[pi].1 = u64::MAX;
            let cx = client.iface.context();
            client
                .sockets
                .get_mut::<tcp::Socket>(h)
                .connect(cx, (IpAddress::Ipv4(VIP), VPORT), port)
                .expect("connect");
            active.push(ClientConn {
                id: started,
                port,
                start: now,
                handle: h,
                sent: false,
                resp: Vec::new(),
                done_at: None,
                syns_before: hub.syns.get(&port).copied().unwrap_or(0),
                reused_after: last.map(|e| now - e),
                phase,
            });
            started += 1;
            next_start = now + rng.range(p.gap_ms);
        }

        // Poll everything.
        client.poll(now);
        for s in servers.iter_mut() {
            s.host.poll(now);
        }
        gw.poll(Instant::from_millis(now), &mut gw_dev);
        while let Some(Event::Drained { server, .. }) = gw.poll_event() {
            if let Some((_, idx)) = p.drain {
                if server.ip() == IpAddr::V4(server_addr(idx)) && report.drained_event_ms.is_none()
                {
                    report.drained_event_ms = Some(now);
                }
            }
        }
        report.max_table = report.max_table.max(gw.balancer().connection_count());

        // Applications.
        let mut changed = false;
        let mut i = 0;
        while i < active.len() {
            let c = &mut active[i];
            let sock = client.sockets.get_mut::<tcp::Socket>(c.handle);
            if !c.sent && sock.can_send() {
                sock.send_slice(format!("conn={}\n", c.id).as_bytes())
                    .unwrap();
                c.sent = true;
                changed = true;
            }
            while sock.can_recv() {
                let mut buf = [0u8; 256];
                let n = sock.recv_slice(&mut buf).unwrap();
                c.resp.extend_from_slice(&buf[..n]);
                changed = true;
            }
            if c.done_at.is_none()
                && c.sent
                && !sock.may_recv()
                && sock.state() != tcp::State::SynSent
            {
                c.done_at = Some(now);
                sock.close();
                changed = true;
            }
            let timed_out = now - c.start > 60_000;
            if timed_out {
                sock.abort();
            }
            if sock.state() == tcp::State::Closed {
                let c = active.swap_remove(i);
                let text = String::from_utf8_lossy(&c.resp).to_string();
                let expect_tail = format!(" conn={}\n", c.id);
                let server = text
                    .strip_prefix("srv=s")
                    .filter(|_| text.ends_with(&expect_tail))
                    .and_then(|r| r.split(' ').next())
                    .and_then(|n| n.parse::<usize>().ok())
                    .map(|n| n - 1)
                    .filter(|_| c.done_at.is_some() && !timed_out);
                let syns = hub.syns.get(&c.port).copied().unwrap_or(0) - c.syns_before;
                let end = now;
                report.records.push(ConnRecord {
                    id: c.id,
                    port: c.port,
                    start_ms: c.start,
                    end_ms: end,
                    latency_ms: c.done_at.unwrap_or(end) - c.start,
                    server,
                    syns,
                    reused_after_ms: c.reused_after,
                    phase: c.phase,
                });
                let pi = ports.iter().position(|(p, _, _)| *p == c.port).unwrap();
                ports[pi] = (c.port, end + rng.range(p.reuse_ms), Some(end));
                free_socks.push(c.handle);
                last_end = end;
                changed = true;
                continue;
            }
            i += 1;
        }
        for s in servers.iter_mut() {
            for &h in &s.socks {
                let sock = s.host.sockets.get_mut::<tcp::Socket>(h);
                match sock.state() {
                    tcp::State::Closed => {
                        s.conns.remove(&h);
                        sock.listen(VPORT).unwrap();
                        changed = true;
                        continue;
                    }
                    tcp::State::Listen | tcp::State::SynReceived => continue,
                    _ => {}
                }
                let sc = s.conns.entry(h).or_default();
                while sock.can_recv() {
                    let mut buf = [0u8; 256];
                    let n = sock.recv_slice(&mut buf).unwrap();
                    sc.req.extend_from_slice(&buf[..n]);
                    changed = true;
                }
                if sc.respond_at.is_none() && sc.req.ends_with(b"\n") {
                    sc.respond_at = Some(now + rng.range(p.think_ms));
                }
                if !sc.answered && sc.respond_at.is_some_and(|t| t <= now) && sock.can_send() {
                    let req = String::from_utf8_lossy(&sc.req);
                    let reply = format!("srv={} {}", s.name, req.trim_end());
                    sock.send_slice(format!("{reply}\n").as_bytes()).unwrap();
                    sock.close();
                    sc.answered = true;
                    changed = true;
                }
            }
        }
        if changed {
            // Let the hosts send what the applications just did.
            client.poll(now);
            for s in servers.iter_mut() {
                s.host.poll(now);
            }
        }

        // Collect transmissions.
        for f in gw_dev.tx.drain(..) {
            hub.send(now, 0, f);
        }
        for f in client.dev.tx.drain(..) {
            hub.send(now, 1, f);
        }
        for (k, s) in servers.iter_mut().enumerate() {
            for f in s.host.dev.tx.drain(..) {
                hub.send(now, k + 2, f);
            }
        }

        let all_done = started >= p.connections && active.is_empty();
        if all_done && now >= last_end + p.linger_ms {
            break;
        }

        // Next instant.
        let mut next = u64::MAX;
        if let Some((t, _, _)) = hub.queue.front() {
            next = next.min(*t);
        }
        if started < p.connections {
            let port_at = ports.iter().map(|(_, at, _)| *at).min().unwrap_or(u64::MAX);
            next = next.min(next_start.max(port_at));
        }
        if let Some(t) = gw.poll_at(Instant::from_millis(now)) {
            next = next.min(t.millis());
        }
        if let Some(t) = client.poll_at(now) {
            next = next.min(t);
        }
        for s in servers.iter_mut() {
            if let Some(t) = s.host.poll_at(now) {
                next = next.min(t);
            }
            for sc in s.conns.values() {
                if let (Some(t), false) = (sc.respond_at, sc.answered) {
                    next = next.min(t);
                }
            }
        }
        if !drain_done || !remove_done {
            next = next.min(now + 10);
        }
        if all_done {
            next = next.min(last_end + p.linger_ms);
        }
        if next <= now {
            same_time_rounds += 1;
            if same_time_rounds > 20 {
                same_time_rounds = 0;
                now += 1;
            }
        } else {
            same_time_rounds = 0;
            now = next;
        }
    }

    let s = stats_now(&gw);
    let mut last = since(&s, &phase_start_stats);
    if let (Some((_, idx)), Some(_)) = (p.remove, removed_stats) {
        last[idx] = 0;
    }
    report.scheduled[phase] = last;
    report.phase_weights[phase] = weights.clone();
    // Exact: a connection started after the change sent its SYN after it.
    if let Some((_, idx)) = p.drain {
        report.accepted_after_drain = report
            .records
            .iter()
            .filter(|r| r.phase >= 1 && r.server == Some(idx))
            .count();
    }
    if let Some((_, idx)) = p.remove {
        report.accepted_after_removal = report
            .records
            .iter()
            .filter(|r| r.phase >= 2 && r.server == Some(idx))
            .count();
    }
    report.records.sort_by_key(|r| r.id);
    report.rst_seen = hub.rst_seen;
    report.gateway = *gw.counters();
    report.balancer = *gw.balancer().counters();
    report.virtual_ms = now;
    let _ = SocketAddr::from((VIP, VPORT));
    report
}

/// Connections scheduled per server since the `start` snapshot.
fn since(now: &[u64], start: &[u64]) -> Vec<u64> {
    now.iter()
        .zip(start)
        .map(|(a, b)| a.saturating_sub(*b))
        .collect()
}

/// Connections (not templates) on server `idx` whose state `keep` accepts.
fn connections_on(gw: &Gateway<'_>, now: u64, idx: usize, keep: impl Fn(&str) -> bool) -> usize {
    gw.balancer()
        .connections(Instant::from_millis(now))
        .filter(|c| !c.template && c.server.ip() == IpAddr::V4(server_addr(idx)) && keep(c.state))
        .count()
}
