//! The `packets` target: structured TCP/UDP/ICMP packets over IPv4 and IPv6 and arbitrary
//! bytes, both directions, through the configured balancer ([`super::setup`]), interleaved with
//! time steps and control changes.
//!
//! Three balancers run in lockstep on the same input: `a` gets every packet through
//! `process`, `b` gets each group through `process_burst`, `c` gets every packet through
//! `process_general` (no established-flow fast path); their verdicts, output bytes and counters
//! must be identical, and all three must hold the same entries and statistics (and `a` and `c`
//! the same events). `b` gets every TCP/UDP packet whose checksum verifies with a *partial*
//! checksum instead ([`Packet::csum_partial`], as a device's checksum offload hands it over):
//! its output, completed as a device would when the flag says it is still partial, must be
//! `a`'s (a checksum of 0 and one of 0xffff being the same), except a generated reply's quote. After every step `a`'s table and counters are checked
//! ([`super::inv`]), and every time step checks the deadlines.

use std::net::{IpAddr, SocketAddr};

use arbitrary::{Arbitrary, Unstructured};
use lb_core::config::{Persistence, SchedulerKind, ServerConfig, ServiceConfig, Timeouts};
use lb_core::ipvsadm::{Command, Setting};
use lb_core::{
    Balancer, ConnReuseMode, DefenceMode, Duration, ForwardMethod, GueCsum, Instant, Packet,
    Settings, Transmit, TunnelKind, Verdict,
};

use std::collections::HashMap;

use super::inv::{self, check_table, check_verdict, Deadlines};
use super::{pkt, setup};

/// Buffer size handed to the balancer (room for any generated reply).
pub const BUF: usize = 2048;

#[derive(Arbitrary, Debug, Clone, Copy)]
pub struct SettingsIn {
    pub conn_reuse_mode: u8,
    pub expire_nodest_conn: bool,
    pub expire_quiescent_template: bool,
    pub secure_tcp: u8,
    pub drop_entry: u8,
    pub sloppy_tcp: bool,
    pub defence_fill_percent: u8,
}

impl SettingsIn {
    pub fn settings(self) -> Settings {
        Settings {
            conn_reuse_mode: ConnReuseMode::new(self.conn_reuse_mode % 4).unwrap(),
            expire_nodest_conn: self.expire_nodest_conn,
            expire_quiescent_template: self.expire_quiescent_template,
            secure_tcp: DefenceMode::new(self.secure_tcp % 4).unwrap(),
            drop_entry: DefenceMode::new(self.drop_entry % 4).unwrap(),
            sloppy_tcp: self.sloppy_tcp,
            defence_fill_percent: self.defence_fill_percent % 101,
            // The setup has direct-routing servers.
            direct_routing: true,
            ..Settings::default()
        }
    }
}

#[derive(Arbitrary, Debug)]
pub struct Input {
    pub settings: SettingsIn,
    /// Table capacity: 1 + (capacity % 48), small enough to fill.
    pub capacity: u8,
    pub ops: Vec<Op>,
}

#[derive(Arbitrary, Debug)]
pub enum Op {
    /// A group of packets: one by one through `a`, one burst through `b`.
    Packets(Vec<Spec>),
    /// Time passes, then `handle_timeout(now)`.
    Time(Step),
    /// A control change, applied to both.
    Control(Ctl),
}

#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum Step {
    Millis(u16),
    Secs(u8),
    /// Up to ~18 hours at once.
    Jump(u16),
}

impl Step {
    pub fn duration(self) -> Duration {
        match self {
            Step::Millis(ms) => Duration::from_millis(u64::from(ms)),
            Step::Secs(s) => Duration::from_secs(u64::from(s)),
            Step::Jump(s) => Duration::from_secs(u64::from(s)),
        }
    }
}

/// One packet.
#[derive(Arbitrary, Debug, Clone)]
pub struct Spec {
    pub body: Body,
    /// Damage after building: (offset, xor) pairs, then an optional cut.
    pub damage: Vec<(u16, u8)>,
    pub cut: Option<u16>,
}

#[derive(Arbitrary, Debug, Clone)]
pub enum Body {
    /// Arbitrary bytes.
    Raw(Vec<u8>),
    /// Client → service (or a non-VIP address, or a VIP port without a service).
    Forward(Flow),
    /// Real server → client.
    Reply(Flow),
    /// An ICMP error from the client side about a reply, or from the server side about a
    /// forwarded packet.
    IcmpError {
        flow: Flow,
        server_side: bool,
        quote: u8,
    },
    /// An echo request to a VIP (or elsewhere).
    Echo { v6: bool, to_vip: bool, len: u8 },
    /// One fragment of a datagram of the flow (client → service, or with `reply` the
    /// server's reply): its L4 part cut into 2–5 pieces of multiples of 8 bytes, `piece`
    /// picks one, so the pieces of a datagram arrive over several specs in any order, some
    /// twice, some never. `overlap` moves the piece's start back 8 bytes (overlapping the one
    /// before: RFC 5722's case); `hbh` puts a Hop-by-Hop header before an IPv6 Fragment
    /// header. Few identifications, so the pieces of one datagram meet.
    Fragment {
        flow: Flow,
        reply: bool,
        id: u8,
        pieces: u8,
        piece: u8,
        overlap: bool,
        hbh: bool,
    },
    /// A packet of the flow with a chain of IPv6 extension headers (each byte one header:
    /// Hop-by-Hop, Destination Options, Routing with no or one segment left, AH, an atomic
    /// Fragment header); an IPv4 flow's packet gets none.
    Ext {
        flow: Flow,
        reply: bool,
        chain: Vec<u8>,
    },
    /// An ICMP error quoting the flow (as `IcmpError`) whose outer destination is chosen
    /// apart from the quote: the VIP, the client, a real server or a stranger, so most do not
    /// match the quoted source.
    IcmpOuter {
        flow: Flow,
        server_side: bool,
        quote: u8,
        to: u8,
    },
}

#[derive(Arbitrary, Debug, Clone, Copy)]
pub struct Flow {
    /// Which client address and port (small pools, so flows meet again).
    pub client: u8,
    /// Which service (0..6), 6 = a VIP port with no service, 7 = not a VIP.
    pub service: u8,
    /// Which real server of the service (replies), or which port of a port-0 service.
    pub server: u8,
    pub tcp_flags: u8,
    pub payload: u8,
    pub opt_words: u8,
}

const V4_CLIENTS: [&str; 5] = [
    "192.0.2.1",
    "192.0.2.2",
    "192.0.2.3",
    "192.0.2.200",
    "198.51.100.7",
];
const V6_CLIENTS: [&str; 5] = [
    "2001:db8:c::1",
    "2001:db8:c::2",
    "2001:db8:c:0:1::3",
    "2001:db8:c:1::4",
    "2001:db8:d::1",
];

fn client(v6: bool, i: u8) -> SocketAddr {
    let pool = if v6 { V6_CLIENTS } else { V4_CLIENTS };
    let ip: IpAddr = pool[usize::from(i >> 2) % pool.len()]
        .parse()
        .expect("pool");
    SocketAddr::new(ip, 40000 + u16::from(i & 3))
}

/// (protocol, destination, v6) for a flow's forward packet.
fn target(f: &Flow) -> (u8, SocketAddr) {
    let keys = setup::service_keys();
    match usize::from(f.service % 8) {
        i @ 0..=5 => {
            let key = keys[i];
            let lb_core::ServiceKey::Addr { proto, vip } = key else {
                unreachable!()
            };
            let mut vip = vip;
            if vip.port() == 0 {
                vip.set_port([80, 443, 22, 0][usize::from(f.server % 4)]);
            }
            (proto.number(), vip)
        }
        6 => (
            if f.tcp_flags & 0x80 != 0 {
                pkt::UDP
            } else {
                pkt::TCP
            },
            setup::sa(if f.client & 0x80 != 0 {
                "[2001:db8::100]:9999"
            } else {
                "10.0.0.100:9999"
            }),
        ),
        _ => (
            if f.tcp_flags & 0x80 != 0 {
                pkt::UDP
            } else {
                pkt::TCP
            },
            setup::sa(if f.client & 0x80 != 0 {
                "[2001:db8:ffff::9]:80"
            } else {
                "203.0.113.9:80"
            }),
        ),
    }
}

/// The endpoint a reply of the flow comes from: one of the service's servers now listed, or a
/// stranger.
fn server_endpoint(b: &Balancer<'_>, f: &Flow, vip: SocketAddr) -> SocketAddr {
    let keys = setup::service_keys();
    let d = b.director();
    let id = keys
        .get(usize::from(f.service % 8))
        .and_then(|k| d.service_id(k));
    if let Some(id) = id {
        let list = d.servers(id);
        if !list.is_empty() {
            let (_, s) = list.at(usize::from(f.server) % list.len());
            let a = s.addr();
            return if a.port() == 0 {
                SocketAddr::new(a.ip(), vip.port())
            } else {
                a
            };
        }
    }
    if vip.is_ipv6() {
        setup::sa("[2001:db8:1::9]:80")
    } else {
        setup::sa("10.1.0.9:80")
    }
}

fn payload(n: u8) -> Vec<u8> {
    (0..n).map(|i| i.wrapping_mul(31)).collect()
}

fn l4(proto: u8, src: SocketAddr, dst: SocketAddr, f: &Flow) -> Vec<u8> {
    if proto == pkt::UDP {
        pkt::udp(src, dst, &payload(f.payload))
    } else {
        let flags = f.tcp_flags & 0x3f;
        pkt::tcp(
            src,
            dst,
            flags,
            u32::from(f.payload) << 8,
            &payload(f.payload),
            usize::from(f.opt_words % 11),
        )
    }
}

/// The flow's packet: client → service, or with `reply` the server's reply.
fn flow_packet(b: &Balancer<'_>, f: &Flow, reply: bool) -> Vec<u8> {
    let (proto, vip) = target(f);
    let c = client(vip.is_ipv6(), f.client);
    if reply {
        l4(proto, server_endpoint(b, f, vip), c, f)
    } else {
        l4(proto, c, vip, f)
    }
}

/// One piece of the flow's datagram cut into fragments (see `Body::Fragment`).
fn fragment_of(p: &[u8], id: u8, pieces: u8, piece: u8, overlap: bool, hbh: bool) -> Vec<u8> {
    let v6 = p.first().is_some_and(|b| b >> 4 == 6);
    let (p, ext) = if v6 && hbh {
        (pkt::ipv6_ext(p, 0, &[0, 1, 4, 0, 0, 0, 0]), 8)
    } else {
        (p.to_vec(), 0)
    };
    let hdr = if v6 {
        40 + ext
    } else {
        usize::from(p[0] & 15) * 4
    };
    let data = p.len() - hdr;
    let n = 2 + usize::from(pieces % 4);
    let step = (data.div_ceil(n)).div_ceil(8).max(1) * 8;
    let mut cuts: Vec<usize> = (1..n).map(|k| k * step).filter(|&c| c < data).collect();
    let k = usize::from(piece) % (cuts.len() + 1);
    if overlap && k > 0 && cuts[k - 1] >= 16 {
        cuts[k - 1] -= 8;
    }
    let frags = pkt::fragments(&p, ext, &cuts, 0x0100_0000 | u32::from(id % 4));
    frags[k.min(frags.len() - 1)].clone()
}

/// The packet with IPv6 extension headers as `chain` says (see `Body::Ext`).
fn with_chain(p: Vec<u8>, chain: &[u8]) -> Vec<u8> {
    if p.first().is_none_or(|b| b >> 4 != 6) {
        return p;
    }
    let mut p = p;
    for c in chain.iter().take(10) {
        p = match c % 6 {
            0 => pkt::ipv6_ext(&p, 0, &[0, 1, 4, 0, 0, 0, 0]),
            1 => pkt::ipv6_ext(&p, 60, &[1, 1, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
            2 => pkt::ipv6_ext(&p, 43, &[0, 4, 0, 0, 0, 0, 0]),
            3 => pkt::ipv6_ext(&p, 43, &[0, 4, 1, 0, 0, 0, 0]),
            4 => pkt::ipv6_ext(&p, 51, &[1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 2]),
            _ => pkt::ipv6_ext(&p, 44, &[0, 0, 0, 0, 0, 0, c / 6]),
        };
    }
    p
}

/// Builds the packet `s` describes, against `b`'s current configuration.
pub fn build(b: &Balancer<'_>, s: &Spec) -> Vec<u8> {
    let mut p = match &s.body {
        Body::Raw(bytes) => bytes.clone(),
        Body::Forward(f) => {
            let (proto, dst) = target(f);
            l4(proto, client(dst.is_ipv6(), f.client), dst, f)
        }
        Body::Reply(f) => {
            let (proto, vip) = target(f);
            let c = client(vip.is_ipv6(), f.client);
            l4(proto, server_endpoint(b, f, vip), c, f)
        }
        Body::IcmpError {
            flow,
            server_side,
            quote,
        } => {
            let (proto, vip) = target(flow);
            let c = client(vip.is_ipv6(), flow.client);
            if *server_side {
                let srv = server_endpoint(b, flow, vip);
                let quoted = l4(proto, c, srv, flow);
                pkt::icmp_error(srv.ip(), &quoted, usize::from(*quote) + 28)
            } else {
                let quoted = l4(proto, vip, c, flow);
                pkt::icmp_error(c.ip(), &quoted, usize::from(*quote) + 28)
            }
        }
        Body::Echo { v6, to_vip, len } => {
            let (src, dst, ty) = match (*v6, *to_vip) {
                (false, true) => ("192.0.2.1", "10.0.0.100", 8),
                (false, false) => ("192.0.2.1", "203.0.113.9", 8),
                (true, true) => ("2001:db8:c::1", "2001:db8::100", 128),
                (true, false) => ("2001:db8:c::1", "2001:db8:ffff::9", 128),
            };
            let (src, dst): (IpAddr, IpAddr) = (src.parse().unwrap(), dst.parse().unwrap());
            pkt::icmp(src, dst, ty, 0, &payload(*len))
        }
        Body::Fragment {
            flow,
            reply,
            id,
            pieces,
            piece,
            overlap,
            hbh,
        } => fragment_of(
            &flow_packet(b, flow, *reply),
            *id,
            *pieces,
            *piece,
            *overlap,
            *hbh,
        ),
        Body::Ext { flow, reply, chain } => with_chain(flow_packet(b, flow, *reply), chain),
        Body::IcmpOuter {
            flow,
            server_side,
            quote,
            to,
        } => {
            let (proto, vip) = target(flow);
            let c = client(vip.is_ipv6(), flow.client);
            let srv = server_endpoint(b, flow, vip);
            let (from, quoted) = if *server_side {
                (srv.ip(), l4(proto, c, srv, flow))
            } else {
                (c.ip(), l4(proto, vip, c, flow))
            };
            let stranger: IpAddr = if vip.is_ipv6() {
                "2001:db8:ffff::9".parse().unwrap()
            } else {
                "203.0.113.9".parse().unwrap()
            };
            let dst = [vip.ip(), c.ip(), srv.ip(), stranger][usize::from(to % 4)];
            let hdr = if vip.is_ipv6() { 48 } else { 28 };
            let n = (usize::from(*quote) + hdr).min(quoted.len());
            let ty = if vip.is_ipv6() { 1 } else { 3 };
            pkt::icmp(from, dst, ty, 3, &quoted[..n])
        }
    };
    for &(at, x) in &s.damage {
        if !p.is_empty() {
            let i = usize::from(at) % p.len();
            p[i] ^= x;
        }
    }
    if let Some(n) = s.cut {
        p.truncate(usize::from(n));
    }
    p.truncate(BUF);
    p
}

#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum Ctl {
    AddServer {
        service: u8,
        addr: u8,
        port: u8,
        weight: u8,
        threshold: u8,
    },
    EditServer {
        service: u8,
        index: u8,
        weight: u8,
        threshold: u8,
    },
    DelServer {
        service: u8,
        index: u8,
    },
    EditService {
        service: u8,
        scheduler: u8,
        persistence: Option<(u8, u8)>,
    },
    DelService {
        service: u8,
    },
    /// Re-adds a deleted service with the setup configuration (and its servers).
    Restore,
    Clear,
    Set {
        which: u8,
        value: u8,
    },
    SetTimeouts {
        tcp: u8,
        tcp_fin: u8,
        udp: u8,
    },
    Zero,
}

fn server_addr(v6: bool, addr: u8, port: u16) -> SocketAddr {
    let ip: IpAddr = if v6 {
        format!("2001:db8:1::{}", 1 + addr % 4).parse().unwrap()
    } else {
        format!("10.1.0.{}", 1 + addr % 7).parse().unwrap()
    };
    SocketAddr::new(ip, port)
}

/// The commands a control change stands for (against `b`'s current state).
pub fn commands(b: &Balancer<'_>, c: Ctl) -> Vec<Command> {
    let keys = setup::service_keys();
    let key_of = |s: u8| keys[usize::from(s) % keys.len()];
    let listed = |key: &lb_core::ServiceKey, i: u8| {
        let d = b.director();
        let id = d.service_id(key)?;
        let list = d.servers(id);
        (!list.is_empty()).then(|| list.at(usize::from(i) % list.len()).1.config)
    };
    match c {
        Ctl::AddServer {
            service,
            addr,
            port,
            weight,
            threshold,
        } => {
            let key = key_of(service);
            let vport = match key {
                lb_core::ServiceKey::Addr { vip, .. } => vip.port(),
                _ => 0,
            };
            let port = [0, vport, 8080, 53][usize::from(port % 4)];
            // Mostly NAT; direct routing when the weight's high bit is set, a tunnel when the
            // next one is (its kind from the threshold's high bits).
            let method = if weight & 0x80 != 0 {
                ForwardMethod::Route
            } else if weight & 0x40 != 0 {
                ForwardMethod::Tunnel(tunnel_kind(threshold))
            } else {
                ForwardMethod::Masq
            };
            // A tunnel may reach a real server of the other family (IPv4 inside IPv6 and back).
            let v6 = match method {
                ForwardMethod::Tunnel(_) if threshold & 0x08 != 0 => !key.is_ipv6(),
                _ => key.is_ipv6(),
            };
            let mut s = ServerConfig::new(server_addr(v6, addr, port), method);
            s.weight = u32::from(weight % 4);
            s.u_threshold = u32::from(threshold % 4);
            s.l_threshold = u32::from(threshold / 4 % 4).min(s.u_threshold);
            vec![Command::AddServer(key, s)]
        }
        Ctl::EditServer {
            service,
            index,
            weight,
            threshold,
        } => {
            let key = key_of(service);
            let Some(mut s) = listed(&key, index) else {
                return vec![];
            };
            s.weight = u32::from(weight % 4);
            s.u_threshold = u32::from(threshold % 4);
            s.l_threshold = u32::from(threshold / 4 % 4).min(s.u_threshold);
            // The weight's high bit switches NAT and direct routing: open connections keep
            // the method they were created with.
            if weight & 0x80 != 0 {
                s.method = match s.method {
                    ForwardMethod::Masq => ForwardMethod::Route,
                    ForwardMethod::Route => ForwardMethod::Tunnel(tunnel_kind(threshold)),
                    ForwardMethod::Tunnel(_) => ForwardMethod::Masq,
                };
            }
            vec![Command::EditServer(key, s)]
        }
        Ctl::DelServer { service, index } => {
            let key = key_of(service);
            match listed(&key, index) {
                Some(s) => vec![Command::DelServer(key, s.addr)],
                None => vec![],
            }
        }
        Ctl::EditService {
            service,
            scheduler,
            persistence,
        } => {
            let key = key_of(service);
            let Some(id) = b.director().service_id(&key) else {
                return vec![];
            };
            let Some(svc) = b.director().service(id) else {
                return vec![];
            };
            let mut cfg: ServiceConfig = svc.config;
            cfg.scheduler = SchedulerKind::ALL[usize::from(scheduler) % SchedulerKind::ALL.len()];
            // The high bit: mid-flow pickup for this service (`--sloppy`).
            cfg.sloppy_tcp = scheduler & 0x80 != 0;
            cfg.table_size = None;
            cfg.flags = Default::default();
            cfg.persistence = persistence.map(|(t, m)| Persistence {
                timeout_secs: 1 + u32::from(t),
                prefix: if key.is_ipv6() {
                    64 + m % 65
                } else {
                    16 + m % 17
                },
            });
            vec![Command::EditService(cfg)]
        }
        Ctl::DelService { service } => vec![Command::DelService(key_of(service))],
        Ctl::Restore => restore_commands(b),
        Ctl::Clear => vec![Command::Clear],
        Ctl::Set { which, value } => {
            let s = match which % 10 {
                0 => Setting::ConnReuseMode(value % 4),
                1 => Setting::ExpireNodestConn(value & 1 != 0),
                2 => Setting::ExpireQuiescentTemplate(value & 1 != 0),
                3 => Setting::SecureTcp(value % 4),
                4 => Setting::DropEntry(value % 4),
                5 => Setting::SloppyTcp(value & 1 != 0),
                // The reply limit: off, slow enough to bind in a short run, or the default.
                6 => Setting::ReplyRate(u32::from(value % 4) * 500),
                7 => Setting::ReplyBurst(u32::from(value % 64)),
                8 => Setting::ReplyPeerInterval(u32::from(value % 3) * 500),
                // The per-prefix share of half-open entries: off, tight enough to bind, default.
                _ => Setting::EmbryonicPrefixShare([0, 1, 10][usize::from(value % 3)]),
            };
            vec![Command::Set(s)]
        }
        Ctl::SetTimeouts { tcp, tcp_fin, udp } => vec![Command::SetTimeouts(Timeouts {
            tcp: u32::from(tcp),
            tcp_fin: u32::from(tcp_fin),
            udp: u32::from(udp),
        })],
        Ctl::Zero => vec![Command::Zero(None)],
    }
}

/// A tunnel kind from the high bits of `b`.
fn tunnel_kind(b: u8) -> TunnelKind {
    let csum = b & 0x10 != 0;
    match b >> 5 {
        0 | 1 => TunnelKind::Ipip,
        2 | 3 => TunnelKind::Gre { csum },
        k => TunnelKind::Gue {
            port: 6080,
            csum: match k {
                4 => GueCsum::None,
                5 => GueCsum::Csum,
                _ => GueCsum::RemCsum,
            },
        },
    }
}

/// Commands re-adding every setup service that is gone, with its setup servers.
fn restore_commands(b: &Balancer<'_>) -> Vec<Command> {
    let mut out = Vec::new();
    let mut adding = false;
    for line in setup::CONFIG.lines() {
        let Ok(Some(cmd)) = lb_core::ipvsadm::parse_line(line) else {
            continue;
        };
        match cmd {
            Command::AddService(cfg) => {
                adding = b.director().service_id(&cfg.key).is_none();
                if adding {
                    out.push(cmd);
                }
            }
            _ if adding => out.push(cmd),
            _ => {}
        }
    }
    out
}

/// Whether two balancers fed the same input hold the same state: counters, connections (as
/// `-L -c` lists them, and every entry's fields and deadline) and every service's and server's
/// statistics.
fn check_same_state(a: &Balancer<'_>, c: &Balancer<'_>, now: Instant) {
    assert_eq!(
        a.counters(),
        c.counters(),
        "fast and general path: counters differ"
    );
    let ca: Vec<_> = a.connections(now).collect();
    let cc: Vec<_> = c.connections(now).collect();
    assert_eq!(ca, cc, "connections differ");
    let ea: Vec<_> = a
        .conns()
        .iter()
        .map(|(h, e)| (h, *e, a.conns().deadline(h)))
        .collect();
    let ec: Vec<_> = c
        .conns()
        .iter()
        .map(|(h, e)| (h, *e, c.conns().deadline(h)))
        .collect();
    assert_eq!(ea, ec, "table entries differ");
    let (da, dc) = (a.director(), c.director());
    for ((ia, sa), (ic, sc)) in da.services().zip(dc.services()) {
        assert_eq!(ia, ic);
        assert_eq!(sa.stats, sc.stats, "service stats differ");
        for ((_, xa), (_, xc)) in da.servers(ia).iter().zip(dc.servers(ic).iter()) {
            assert_eq!(xa, xc, "server {} differs", xa.addr());
        }
    }
}

/// What the rules allow of fragments, kept apart from lb-core's fragment table: a later
/// fragment may be forwarded only after its datagram's first fragment was, less than 30 s
/// (`ipfrag_time`) before, the same way (to a server, or to a client), with the same address
/// rewritten; and not past a command that deleted a service or server.
#[derive(Default)]
pub struct FragmentRules {
    first: HashMap<DatagramKey, FirstDecision>,
}

/// A datagram's reassembly key: family, source, destination, identification, IPv4 protocol.
type DatagramKey = (bool, IpAddr, IpAddr, u32, u8);
/// What happened to a first fragment: to a client (else to a server), the address written,
/// when.
type FirstDecision = (bool, IpAddr, Instant);

impl FragmentRules {
    /// Checks packet `input`'s verdict `v` (output `out`) at `now` against the rules, and
    /// records a first fragment's decision.
    pub fn check(&mut self, input: &[u8], out: &[u8], v: Verdict, now: Instant) {
        let Ok(pin) = lb_core::packet::parse(input) else {
            return;
        };
        let Some(f) = pin.fragment else {
            return;
        };
        let key = (
            pin.v6,
            pin.src.ip(),
            pin.dst.ip(),
            f.id,
            if pin.v6 { 0 } else { pin.proto },
        );
        let forwarded = match v {
            Verdict::ToServer(_) => Some(false),
            Verdict::ToClient(_) => Some(true),
            _ => None,
        };
        let Some(to_client) = forwarded else {
            return;
        };
        let pout = lb_core::packet::parse(out).expect("a forwarded fragment parses");
        let written = if to_client {
            pout.src.ip()
        } else {
            pout.dst.ip()
        };
        match pin.kind {
            lb_core::packet::Kind::Fragment => {
                let Some(&(way, addr, at)) = self.first.get(&key) else {
                    panic!("{v:?}: a later fragment forwarded with no first fragment forwarded");
                };
                assert!(
                    now < at + Duration::from_secs(30),
                    "a later fragment forwarded 30 s after its first"
                );
                assert_eq!(way, to_client, "a later fragment went the other way");
                assert_eq!(addr, written, "a later fragment was rewritten otherwise");
            }
            _ => {
                self.first.insert(key, (to_client, written, now));
            }
        }
    }

    /// A command deleted a service or a server: no decision stands.
    pub fn forget(&mut self) {
        self.first.clear();
    }
}

/// "Generated packets never exceed the rate limit": the replies (`Verdict::Reply`) of any
/// second number at most `reply_burst + reply_rate_per_sec` (a token bucket holds at most the
/// burst and earns the rate in a second), counted afresh when a limit setting changes.
#[derive(Default)]
pub struct ReplyRate {
    times: Vec<Instant>,
}

impl ReplyRate {
    pub fn check(&mut self, b: &Balancer<'_>, v: Verdict, now: Instant) {
        if !matches!(v, Verdict::Reply(_)) {
            return;
        }
        let s = b.settings();
        self.times.push(now);
        if s.reply_rate_per_sec == 0 {
            return;
        }
        let since = Instant::from_millis(now.millis().saturating_sub(999));
        self.times.retain(|&t| t >= since);
        let max = u64::from(s.reply_burst) + u64::from(s.reply_rate_per_sec);
        assert!(
            self.times.len() as u64 <= max,
            "{} replies within a second, limit {max}",
            self.times.len()
        );
    }

    pub fn reset(&mut self) {
        self.times.clear();
    }
}

/// Runs one input. Panics when an invariant breaks.
pub fn run(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let Ok(input) = Input::arbitrary(&mut u) else {
        return;
    };
    run_input(&input);
}

/// Runs one input; returns `a`'s counters at the end (before the final expiry). Panics when
/// an invariant breaks.
pub fn run_input(input: &Input) -> lb_core::Counters {
    let settings = input.settings.settings();
    let cap = 1 + usize::from(input.capacity % 48);
    let mut a = setup::configured(cap, settings, 7);
    let mut b = setup::configured(cap, settings, 7);
    let mut c = setup::configured(cap, settings, 7);
    let mut now = Instant::ZERO;
    let mut deadlines = Deadlines::default();
    let mut fragments = FragmentRules::default();
    let mut rate = ReplyRate::default();
    let mut packets = 0usize;
    for op in &input.ops {
        match op {
            Op::Packets(specs) => {
                let specs = &specs[..specs.len().min(40)];
                packets += specs.len();
                if packets > 4000 {
                    return *a.counters();
                }
                let built: Vec<Vec<u8>> = specs.iter().map(|s| build(&a, s)).collect();
                let mut outs_a = Vec::new();
                for p in &built {
                    let mut buf = p.clone();
                    buf.resize(BUF, 0);
                    let before = *a.counters();
                    let v = a.process(now, &mut buf, p.len());
                    check_verdict(&a, &before, p, &buf, p.len(), v);
                    fragments.check(p, inv::inner_of(&buf, p.len(), v), v, now);
                    rate.check(&a, v, now);
                    let mut buf_c = p.clone();
                    buf_c.resize(BUF, 0);
                    let vc = c.process_general(now, &mut buf_c, p.len());
                    assert_eq!(v, vc, "process and the general path disagree on {p:02x?}");
                    let n = match v {
                        Verdict::Reply(Transmit { len, .. })
                        | Verdict::ToServer(Transmit { len, .. }) => len,
                        _ => p.len(),
                    };
                    assert_eq!(
                        &buf[..n],
                        &buf_c[..n],
                        "process and the general path wrote different bytes for {p:02x?}"
                    );
                    outs_a.push((v, buf));
                    check_table(&a, now);
                }
                check_same_state(&a, &c, now);
                let partial: Vec<Option<(Vec<u8>, usize, usize)>> =
                    built.iter().map(|p| partial_copy(p)).collect();
                let mut bufs: Vec<Vec<u8>> = built
                    .iter()
                    .zip(&partial)
                    .map(|(p, q)| {
                        let mut buf = q.as_ref().map_or(p, |(q, _, _)| q).clone();
                        buf.resize(BUF, 0);
                        buf
                    })
                    .collect();
                let mut pkts: Vec<Packet<'_>> = bufs
                    .iter_mut()
                    .zip(&built)
                    .zip(&partial)
                    .map(|((buf, p), q)| Packet {
                        buf: buf.as_mut_slice(),
                        start: 0,
                        len: p.len(),
                        csum_partial: q.is_some(),
                    })
                    .collect();
                let mut verdicts = vec![Verdict::default(); pkts.len()];
                b.process_burst(now, &mut pkts, &mut verdicts);
                let still: Vec<bool> = pkts.iter().map(|p| p.csum_partial).collect();
                drop(pkts);
                for (i, ((va, bufa), vb)) in outs_a.iter().zip(&verdicts).enumerate() {
                    assert_eq!(va, vb, "packet {i}: process and process_burst disagree");
                    let n = match va {
                        Verdict::Reply(Transmit { len, .. })
                        | Verdict::ToServer(Transmit { len, .. }) => *len,
                        _ => built[i].len(),
                    };
                    let Some((_, l4, field)) = partial[i] else {
                        assert!(!still[i], "packet {i}: a complete packet came out partial");
                        assert_eq!(
                            &bufa[..n],
                            &bufs[i][..n],
                            "packet {i}: process and process_burst wrote different bytes"
                        );
                        continue;
                    };
                    let goes_on = matches!(
                        va,
                        Verdict::ToServer(_) | Verdict::ToClient(_) | Verdict::Pass(_)
                    );
                    if still[i] {
                        assert!(goes_on, "packet {i}: {va:?} with a partial checksum");
                        assert_eq!(va.transmit().map(|t| t.start), Some(0), "packet {i}");
                        device_complete(&mut bufs[i][..n], l4, field);
                    }
                    if goes_on {
                        assert!(
                            same_but_zero_sum(&bufa[..n], &bufs[i][..n]),
                            "packet {i}: the partial packet's output, completed, is not the \
                             complete one's:\n{:02x?}\n{:02x?}",
                            &bufa[..n],
                            &bufs[i][..n]
                        );
                    }
                }
                assert_eq!(a.counters(), b.counters(), "burst counters differ");
                assert_eq!(a.conns().len(), b.conns().len(), "burst tables differ");
                check_same_state(&a, &b, now);
            }
            Op::Time(step) => {
                now += step.duration();
                deadlines.snapshot(&a);
                let dropped = a.counters().defence_drops;
                a.handle_timeout(now);
                b.handle_timeout(now);
                c.handle_timeout(now);
                deadlines.check_after(&a, now, a.counters().defence_drops != dropped);
                check_table(&a, now);
                // poll_timeout files re-armed entries again (expiry order within a tick, hence
                // slab reuse, follows): all three ask it, as they see the same input.
                let (tb, tc) = (b.poll_timeout(), c.poll_timeout());
                let ta = a.poll_timeout();
                assert_eq!((ta, ta), (tb, tc), "poll_timeout differs");
                if let Some(t) = ta {
                    for (h, _) in a.conns().iter() {
                        let d = a.conns().deadline(h).expect("live");
                        assert!(t <= d, "poll_timeout {t:?} after a deadline {d:?}");
                    }
                }
                while b.poll_event().is_some() {}
                while let Some(e) = a.poll_event() {
                    assert_eq!(Some(e), c.poll_event(), "events differ");
                }
                assert_eq!(c.poll_event(), None, "events differ");
            }
            Op::Control(ctl) => {
                for cmd in commands(&a, *ctl) {
                    match cmd {
                        Command::DelService(_) | Command::DelServer(..) | Command::Clear => {
                            fragments.forget()
                        }
                        Command::Set(
                            Setting::ReplyRate(_)
                            | Setting::ReplyBurst(_)
                            | Setting::ReplyPeerInterval(_),
                        ) => rate.reset(),
                        _ => {}
                    }
                    let ra = a.apply(now, &cmd);
                    let rb = b.apply(now, &cmd);
                    assert_eq!(ra, rb, "{cmd}");
                    assert_eq!(ra, c.apply(now, &cmd), "{cmd}");
                    check_table(&a, now);
                }
            }
        }
    }
    let counters = *a.counters();
    // Everything expires in the end: templates once their connections are gone.
    let end = now + Duration::from_secs(86400 * 40);
    a.handle_timeout(end);
    a.handle_timeout(end + Duration::from_secs(61));
    check_table(&a, end + Duration::from_secs(61));
    assert_eq!(
        a.conns().len(),
        0,
        "entries left after every timeout passed"
    );
    let d = a.director();
    for (id, _) in d.services() {
        for (_, s) in d.servers(id).iter() {
            assert_eq!(s.refs(), 0, "server {} still referenced", s.addr());
        }
    }
    counters
}

/// The partial copy of a TCP/UDP packet of `built` whose checksum verifies and is not 0 (an
/// IPv4 UDP datagram without one has nothing to offload), unfragmented, without IPv6 extension
/// headers and without bytes after its IP length: its checksum field holds the folded sum of the
/// pseudo-header alone, as a device's checksum offload hands it over. With the offsets of the
/// L4 header and of the field.
fn partial_copy(p: &[u8]) -> Option<(Vec<u8>, usize, usize)> {
    let (proto, l4, src, dst) = pkt::split(p)?;
    let at = if src.is_ipv4() {
        usize::from(p[0] & 0x0f) * 4
    } else {
        40
    };
    if at + l4.len() != p.len() || !pkt::checksums_ok(p) {
        return None;
    }
    let field = at
        + match proto {
            pkt::TCP => 16,
            pkt::UDP => 6,
            _ => return None,
        };
    if p.get(field..field + 2)? == [0, 0] {
        return None;
    }
    let bytes = |a: IpAddr| match a {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    };
    let len = l4.len() as u64;
    let sum = pkt::sum(pkt::sum(0, &bytes(src)), &bytes(dst))
        + u64::from(proto)
        + (len >> 16)
        + (len & 0xffff);
    let mut q = p.to_vec();
    q[field..field + 2].copy_from_slice(&pkt::fold(sum).to_be_bytes());
    Some((q, at, field))
}

/// What a device does with a partial packet: sums from the L4 header at `l4` to the end, the
/// field at `field` in place, and stores the complement there (0 as 0xffff).
fn device_complete(p: &mut [u8], l4: usize, field: usize) {
    let c = match !pkt::fold(pkt::sum(0, &p[l4..])) {
        0 => 0xffff,
        c => c,
    };
    p[field..field + 2].copy_from_slice(&c.to_be_bytes());
}

/// Whether `x` and `y` are the same bytes but for one checksum that is 0x0000 in one and
/// 0xffff in the other (the same value in ones' complement).
fn same_but_zero_sum(x: &[u8], y: &[u8]) -> bool {
    if x.len() != y.len() {
        return false;
    }
    let diff: Vec<usize> = (0..x.len()).filter(|&i| x[i] != y[i]).collect();
    match diff[..] {
        [] => true,
        [i, j] if j == i + 1 => {
            let pair = |b: &[u8]| [b[i], b[j]];
            matches!(
                (pair(x), pair(y)),
                ([0, 0], [0xff, 0xff]) | ([0xff, 0xff], [0, 0])
            )
        }
        _ => false,
    }
}
