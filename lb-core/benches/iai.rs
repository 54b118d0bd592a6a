//! The instruction-count gate (gungraun on callgrind): the established-flow and new-connection
//! paths with pinned seeds, failing when a count exceeds the committed absolute limit. Run with
//! `scripts/iai-gate.sh` (installs the runner at gungraun's exact version, needs valgrind).
//!
//! The limits are the counts measured when they were set (BENCHMARKS.md, "Instruction-count
//! gate") plus a margin of 10 %; a fresh CI machine has no baseline, so relative limits would
//! catch nothing. Callgrind counts instructions, which do not see cache misses: the 1 M random
//! case also runs callgrind's cache simulation (fixed I1/D1 32 KiB, LL 8 MiB, so the result
//! does not depend on the host's caches) and limits its last-level data read misses (DLmr).
//!
//! Every case processes 32 packets; the counts cover only the measured function (the setup,
//! which fills the table, is not counted).

mod common;

use std::hint::black_box;

use common::*;
use gungraun::{
    library_benchmark, library_benchmark_group, main, Callgrind, EventKind, LibraryBenchmarkConfig,
};
use lb_core::conn::{ConnFlags, ConnStorage, ConnTable, Entry};
use lb_core::director::{Director, DirectorStorage};
use lb_core::{
    Balancer, Duration, ForwardMethod, GueCsum, SchedulerKind, ServerConfig, ServiceConfig,
    Settings, TcpState, TunnelKind, Verdict,
};

/// Margin over the measured counts, in percent (documented in BENCHMARKS.md).
const MARGIN_PCT: u64 = 10;

/// Measured counts for 32 packets when the limits were last set: instructions (Ir), and for the
/// 1 M cases last-level data read misses (DLmr).
mod measured {
    pub const HOT_V4_TCP: u64 = 23_100;
    pub const HOT_V4_UDP: u64 = 21_852;
    pub const HOT_V6_TCP: u64 = 23_452;
    pub const HOT_V6_UDP: u64 = 22_204;
    pub const HOT_V4_TCP_BURST: u64 = 24_927;
    pub const REPLY_HOT_V4_TCP: u64 = 22_812;
    pub const RANDOM_1M_V4_TCP: u64 = 23_172;
    pub const RANDOM_1M_V4_TCP_BURST: u64 = 24_991;
    pub const RANDOM_1M_DLMR: u64 = 65;
    pub const RANDOM_1M_BURST_DLMR: u64 = 66;
    pub const NEW_CONN_WRR: u64 = 46_187;
    pub const NEW_CONN_MH: u64 = 47_744;
    pub const FIRST_FRAGMENT_V4_UDP: u64 = 70_461;
    pub const LATER_FRAGMENT_V4_UDP: u64 = 30_898;
    pub const LATER_FRAGMENT_V6_UDP: u64 = 35_202;
    pub const HOT_DR_V4_TCP: u64 = 31_132;
    pub const HOT_DR_V6_TCP: u64 = 31_612;
    pub const HOT_IPIP_V4_TCP: u64 = 42_652;
    pub const HOT_IPIP_V6_TCP: u64 = 42_044;
    pub const HOT_GUE_V4_TCP: u64 = 47_036;
    pub const HOT_GUE_CSUM_V4_TCP: u64 = 53_372;
    pub const HOT_GRE_CSUM_V4_TCP: u64 = 47_900;
}

const fn limit(measured: u64) -> u64 {
    measured + measured * MARGIN_PCT / 100
}

fn ir_limit(measured: u64) -> LibraryBenchmarkConfig {
    let mut c = LibraryBenchmarkConfig::default();
    c.tool(Callgrind::default().hard_limits([(EventKind::Ir, limit(measured))]));
    c
}

fn cache_limit(measured_ir: u64, measured_ram: u64) -> LibraryBenchmarkConfig {
    let mut c = LibraryBenchmarkConfig::default();
    c.tool(
        Callgrind::default()
            .args([
                "--cache-sim=yes",
                "--I1=32768,8,64",
                "--D1=32768,8,64",
                "--LL=8388608,16,64",
            ])
            .hard_limits([
                (EventKind::Ir, limit(measured_ir)),
                (EventKind::DLmr, limit(measured_ram)),
            ]),
    );
    c
}

/// A balancer and 32 packets to run through it.
struct Case {
    /// Boxed: gungraun moves the case into and out of the measured call, and a `Balancer` by
    /// value would put a copy of the whole struct (several KiB) into every measurement.
    lb: Box<Balancer<'static>>,
    bufs: Box<BurstBufs>,
    now: lb_core::Instant,
    want: Verdict,
}

const N: usize = 32;

impl Case {
    fn single(mut self) -> Self {
        let mut ok = 0;
        for k in 0..N {
            let len = self.bufs.lens[k];
            let v = self.lb.process(self.now, &mut self.bufs.bufs[k], len);
            ok += usize::from(same_kind(&v, &self.want));
        }
        assert_eq!(ok, N);
        self
    }

    fn burst(mut self) -> Self {
        let (now, want) = (self.now, self.want);
        assert_eq!(self.bufs.run(&mut self.lb, now, want), N);
        self
    }
}

/// Established flows of `kind` in a table of `n`, 32 packets of flow 0 (`hot`) or of random
/// flows (seeded), forward or reply.
fn established(kind: Kind, n: u64, hot: bool, reply: bool) -> Case {
    let mut w = if n > 100_000 {
        direct_world(kind, n)
    } else {
        World::new(kind, n)
    };
    let mut rng = Rng::new(0x1a1_5eed);
    // Warm the code (and the director) with other flows, one at a time and in a burst, so the
    // measured packets miss on their own data only, not on never-run code.
    let mut warm = BurstBufs::new();
    for k in 0..N {
        let i = if hot { 0 } else { rng.below(n) };
        let len = if reply {
            w.reply(&mut warm.bufs[k], i)
        } else {
            w.forward(&mut warm.bufs[k], i)
        };
        let mut copy = [0u8; BUF];
        copy[..len].copy_from_slice(&warm.bufs[k][..len]);
        w.lb.process(w.now, &mut copy, len);
        warm.lens[k] = len;
    }
    warm.run(&mut w.lb, w.now, PASS);
    let mut bufs = BurstBufs::new();
    for k in 0..N {
        let i = if hot { 0 } else { rng.below(n) };
        bufs.lens[k] = if reply {
            w.reply(&mut bufs.bufs[k], i)
        } else {
            w.forward(&mut bufs.bufs[k], i)
        };
    }
    Case {
        lb: Box::new(w.lb),
        bufs,
        now: w.now,
        want: if reply { TO_CLIENT } else { TO_SERVER },
    }
}

/// A [`World`] of `n` established TCP flows built by inserting the entries directly (what the
/// SYN and ACK would have left: ESTABLISHED, active, bound to their server), because running 2 M
/// packets through the balancer under valgrind takes minutes. Flow `i` goes to server `i % 4`.
fn direct_world(kind: Kind, n: u64) -> World {
    assert_eq!(kind.proto(), lb_core::Protocol::Tcp);
    let mut d = Director::new(DirectorStorage::alloc(limits()), DIRECTOR_SEED);
    let mut cfg = ServiceConfig::new(kind.service_key());
    cfg.scheduler = SchedulerKind::Wrr;
    let svc = d.add_service(&cfg).expect("service");
    let mut ids = Vec::new();
    for k in 0..WORLD_SERVERS {
        let s = ServerConfig::new(kind.server(k), ForwardMethod::Masq);
        ids.push(d.add_server(&cfg.key, &s).expect("server"));
    }
    let mut conns = ConnTable::new(ConnStorage::alloc(n as usize), SECRET, T0);
    let timeout = Duration::from_secs(900);
    let mut server_of = Vec::with_capacity(n as usize);
    for i in 0..n {
        let k = (i % WORLD_SERVERS as u64) as usize;
        let mut e = Entry::new(kind.proto(), kind.client(i));
        e.vport = kind.vip().port();
        e.service = svc;
        e.server = ids[k];
        e.state = TcpState::Established as u8;
        e.flags.set(ConnFlags::ACTIVE, true);
        e.set_timeout(timeout);
        conns.insert(e, T0 + timeout).expect("room");
        d.bind_conn(ids[k]);
        d.set_active(ids[k], true);
        server_of.push(k as u8);
    }
    let lb = Balancer::new(d, conns, Settings::default());
    let vip = kind.vip();
    World {
        lb,
        gen: FlowGen {
            kind,
            n,
            server_of: std::rc::Rc::new(server_of),
            fwd: Template::new(kind.client(0), vip, kind.proto(), ACK),
            reply: Template::new(kind.server(0), kind.client(0), kind.proto(), ACK),
        },
        now: T0,
    }
}

/// 32 new IPv4 TCP connections into a table of 65,536 kept ~full by expiry (SYNs at 1 per
/// virtual ms against SYN_RECV's 60 s), after 70,000 warm-up connections.
fn new_conns(sched: SchedulerKind) -> Case {
    const CAP: usize = 65_536;
    let mut lb = balancer(Kind::V4Tcp, CAP, sched, CHURN_SERVERS);
    let kind = Kind::V4Tcp;
    let syn = Template::new(kind.client(0), kind.vip(), kind.proto(), SYN);
    let mut buf = [0u8; BUF];
    let at = |i: u64| T0 + Duration::from_millis(i);
    let warm = 70_000;
    for i in 0..warm {
        let len = syn.restore_with(&mut buf, kind.client(i), true);
        assert!(same_kind(&step(&mut lb, at(i), &mut buf, len), &TO_SERVER));
    }
    let now = at(warm);
    if lb.poll_timeout().is_some_and(|t| now >= t) {
        lb.handle_timeout(now);
    }
    let mut bufs = BurstBufs::new();
    for k in 0..N {
        bufs.lens[k] = syn.restore_with(&mut bufs.bufs[k], kind.client(warm + k as u64), true);
    }
    Case {
        lb: Box::new(lb),
        bufs,
        now,
        want: TO_SERVER,
    }
}

fn hot_case(kind: Kind) -> Case {
    established(kind, 1_000, true, false)
}

fn hot_v4_tcp() -> Case {
    hot_case(Kind::V4Tcp)
}

fn reply_v4_tcp() -> Case {
    established(Kind::V4Tcp, 1_000, true, true)
}

#[library_benchmark]
#[bench::v4_tcp(args = (Kind::V4Tcp), setup = hot_case, config = ir_limit(measured::HOT_V4_TCP))]
#[bench::v4_udp(args = (Kind::V4Udp), setup = hot_case, config = ir_limit(measured::HOT_V4_UDP))]
#[bench::v6_tcp(args = (Kind::V6Tcp), setup = hot_case, config = ir_limit(measured::HOT_V6_TCP))]
#[bench::v6_udp(args = (Kind::V6Udp), setup = hot_case, config = ir_limit(measured::HOT_V6_UDP))]
fn hot(c: Case) -> Case {
    black_box(black_box(c).single())
}

#[library_benchmark]
#[bench::v4_tcp(setup = hot_v4_tcp, config = ir_limit(measured::HOT_V4_TCP_BURST))]
fn hot_burst(c: Case) -> Case {
    black_box(black_box(c).burst())
}

#[library_benchmark]
#[bench::v4_tcp(setup = reply_v4_tcp, config = ir_limit(measured::REPLY_HOT_V4_TCP))]
fn reply_hot(c: Case) -> Case {
    black_box(black_box(c).single())
}

fn random_1m() -> Case {
    established(Kind::V4Tcp, 1_000_000, false, false)
}

#[library_benchmark]
#[bench::v4_tcp(setup = random_1m, config = cache_limit(measured::RANDOM_1M_V4_TCP, measured::RANDOM_1M_DLMR))]
fn random_1m_single(c: Case) -> Case {
    black_box(black_box(c).single())
}

#[library_benchmark]
#[bench::v4_tcp(setup = random_1m, config = cache_limit(measured::RANDOM_1M_V4_TCP_BURST, measured::RANDOM_1M_BURST_DLMR))]
fn random_1m_burst(c: Case) -> Case {
    black_box(black_box(c).burst())
}

#[library_benchmark]
#[bench::wrr(args = (SchedulerKind::Wrr), setup = new_conns, config = ir_limit(measured::NEW_CONN_WRR))]
#[bench::mh(args = (SchedulerKind::Mh), setup = new_conns, config = ir_limit(measured::NEW_CONN_MH))]
fn new_conn(c: Case) -> Case {
    black_box(black_box(c).single())
}

/// 32 fragments of datagrams of established UDP flow 0 (1 k entries): the first fragments of
/// 32 datagrams, or (`first` false) their later fragments, the first ones forwarded in setup.
fn fragments_case(kind: Kind, first: bool) -> Case {
    let mut w = World::new(kind, 1_000);
    let mut firsts = BurstBufs::new();
    for k in 0..N {
        let len = w.forward(&mut firsts.bufs[k], 0);
        firsts.lens[k] = make_fragment(&mut firsts.bufs[k], len, 1000 + k as u32, true);
    }
    let mut bufs = BurstBufs::new();
    if first {
        // Warm with other datagrams of the flow.
        for k in 0..N {
            let len = w.forward(&mut bufs.bufs[k], 0);
            let len = make_fragment(&mut bufs.bufs[k], len, 5000 + k as u32, true);
            assert!(same_kind(
                &w.lb.process(w.now, &mut bufs.bufs[k], len),
                &TO_SERVER
            ));
        }
        return Case {
            lb: Box::new(w.lb),
            bufs: firsts,
            now: w.now,
            want: TO_SERVER,
        };
    }
    for k in 0..N {
        let len = firsts.lens[k];
        assert!(same_kind(
            &w.lb.process(w.now, &mut firsts.bufs[k], len),
            &TO_SERVER
        ));
        let len = w.forward(&mut bufs.bufs[k], 0);
        bufs.lens[k] = make_fragment(&mut bufs.bufs[k], len, 1000 + k as u32, false);
    }
    Case {
        lb: Box::new(w.lb),
        bufs,
        now: w.now,
        want: TO_SERVER,
    }
}

fn first_fragment_v4_udp() -> Case {
    fragments_case(Kind::V4Udp, true)
}

#[library_benchmark]
#[bench::v4_udp(setup = first_fragment_v4_udp, config = ir_limit(measured::FIRST_FRAGMENT_V4_UDP))]
fn first_fragment(c: Case) -> Case {
    black_box(black_box(c).single())
}

fn later_fragment_case(kind: Kind) -> Case {
    fragments_case(kind, false)
}

#[library_benchmark]
#[bench::v4_udp(args = (Kind::V4Udp), setup = later_fragment_case, config = ir_limit(measured::LATER_FRAGMENT_V4_UDP))]
#[bench::v6_udp(args = (Kind::V6Udp), setup = later_fragment_case, config = ir_limit(measured::LATER_FRAGMENT_V6_UDP))]
fn later_fragment(c: Case) -> Case {
    black_box(black_box(c).single())
}

/// 32 packets of one established flow (TCP: after SYN and ACK) to a direct-routing server, in
/// a table of 1,000 flows: the general path (a DR entry leaves the fast path), no rewrite.
fn hot_dr_case(kind: Kind) -> Case {
    hot_method_case(kind, ForwardMethod::Route)
}

/// As [`hot_dr_case`], to servers reached by tunnel `t`: the general path, then the outer
/// headers built and the packet moved behind them (`process`, as lb-tun calls it).
fn hot_tunnel_case(kind: Kind, t: TunnelKind) -> Case {
    hot_method_case(kind, ForwardMethod::Tunnel(t))
}

fn hot_method_case(kind: Kind, method: ForwardMethod) -> Case {
    let mut lb = balancer(kind, 1_000, SchedulerKind::Wrr, 0);
    let mut settings = *lb.settings();
    settings.direct_routing = true;
    settings.tunnel_source_v4 = Some(std::net::Ipv4Addr::new(10, 9, 9, 9));
    settings.tunnel_source_v6 = Some(std::net::Ipv6Addr::new(0x2001, 0xdb8, 9, 0, 0, 0, 0, 9));
    lb.set_settings(settings);
    let vip = kind.vip();
    for k in 0..WORLD_SERVERS {
        let rip = std::net::SocketAddr::new(kind.server(k).ip(), vip.port());
        lb.apply(
            T0,
            &lb_core::ipvsadm::Command::AddServer(
                kind.service_key(),
                ServerConfig::new(rip, method),
            ),
        )
        .expect("add DR or tunnel server");
    }
    let proto = kind.proto();
    let syn = Template::new(kind.client(0), vip, proto, SYN);
    let fwd = Template::new(kind.client(0), vip, proto, ACK);
    let mut buf = [0u8; BUF];
    for i in 0..1_000 {
        let c = kind.client(i);
        if proto == lb_core::Protocol::Tcp {
            let len = syn.restore_with(&mut buf, c, true);
            assert!(same_kind(&lb.process(T0, &mut buf, len), &TO_SERVER));
        }
        let len = fwd.restore_with(&mut buf, c, true);
        assert!(same_kind(&lb.process(T0, &mut buf, len), &TO_SERVER));
    }
    let mut warm = BurstBufs::new();
    for k in 0..N {
        warm.lens[k] = fwd.restore_with(&mut warm.bufs[k], kind.client(0), true);
    }
    assert_eq!(warm.run(&mut lb, T0, TO_SERVER), N);
    let mut bufs = BurstBufs::new();
    for k in 0..N {
        bufs.lens[k] = fwd.restore_with(&mut bufs.bufs[k], kind.client(0), true);
    }
    Case {
        lb: Box::new(lb),
        bufs,
        now: T0,
        want: TO_SERVER,
    }
}

#[library_benchmark]
#[bench::v4_tcp(args = (Kind::V4Tcp), setup = hot_dr_case, config = ir_limit(measured::HOT_DR_V4_TCP))]
#[bench::v6_tcp(args = (Kind::V6Tcp), setup = hot_dr_case, config = ir_limit(measured::HOT_DR_V6_TCP))]
fn hot_dr(c: Case) -> Case {
    black_box(black_box(c).single())
}

const GUE: TunnelKind = TunnelKind::Gue {
    port: 6080,
    csum: GueCsum::None,
};
const GUE_CSUM: TunnelKind = TunnelKind::Gue {
    port: 6080,
    csum: GueCsum::Csum,
};
const GRE_CSUM: TunnelKind = TunnelKind::Gre { csum: true };

#[library_benchmark]
#[bench::ipip_v4_tcp(args = (Kind::V4Tcp, TunnelKind::Ipip), setup = hot_tunnel_case, config = ir_limit(measured::HOT_IPIP_V4_TCP))]
#[bench::ipip_v6_tcp(args = (Kind::V6Tcp, TunnelKind::Ipip), setup = hot_tunnel_case, config = ir_limit(measured::HOT_IPIP_V6_TCP))]
#[bench::gue_v4_tcp(args = (Kind::V4Tcp, GUE), setup = hot_tunnel_case, config = ir_limit(measured::HOT_GUE_V4_TCP))]
#[bench::gue_csum_v4_tcp(args = (Kind::V4Tcp, GUE_CSUM), setup = hot_tunnel_case, config = ir_limit(measured::HOT_GUE_CSUM_V4_TCP))]
#[bench::gre_csum_v4_tcp(args = (Kind::V4Tcp, GRE_CSUM), setup = hot_tunnel_case, config = ir_limit(measured::HOT_GRE_CSUM_V4_TCP))]
fn hot_tunnel(c: Case) -> Case {
    black_box(black_box(c).single())
}

library_benchmark_group!(name = direct_routing, benchmarks = [hot_dr, hot_tunnel]);

library_benchmark_group!(
    name = fragments,
    benchmarks = [first_fragment, later_fragment]
);

library_benchmark_group!(
    name = established_flow,
    benchmarks = [hot, hot_burst, reply_hot, random_1m_single, random_1m_burst]
);

library_benchmark_group!(name = new_connection, benchmarks = [new_conn]);

main!(
    library_benchmark_groups = established_flow,
    new_connection,
    fragments,
    direct_routing
);
