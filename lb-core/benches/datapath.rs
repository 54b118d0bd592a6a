//! lb-core's divan suites (issue 7; the performance parts of issues 2 and 3). See
//! BENCHMARKS.md for the figures, the machine and the goals.
//!
//! * `established::<kind>`: an established-flow packet (IPv4/IPv6 × TCP/UDP) at 1 k, 64 k and
//!   1 M live entries — one hot flow, or a flow drawn at random per packet from all of them;
//!   one at a time (`process`) and in bursts of 32 (`process_burst`, time per burst); the
//!   reply direction likewise; beside them `bare` (parse + rewrite, no lookup) and `chase` (one
//!   dependent random load over a buffer of the table's size). The ratios are printed from one
//!   interleaved run by `cargo bench -p lb-core --bench ratios`.
//! * `new_conn`: SYN → schedule → insert → rewrite, for every scheduler, into a 1 M table kept
//!   ~full by expiry (16 servers); `new_conn_burst`: the same in bursts of 32 (wrr, mh).
//! * `expire_1m`: `handle_timeout` expiring 1 M entries.
//! * `mh_build`: mh table builds, M = 4093 and 65521, 10 and 1,000 servers.
//! * `schedule`: one scheduling decision with 64 servers, every scheduler.
//! * `fragments`: a first and a later fragment of a UDP datagram of an established flow.
//!
//! Every packet is restored from a template outside the timed region (divan's `with_inputs`).

mod common;

use std::cell::RefCell;
use std::collections::HashMap;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use common::*;
use divan::counter::ItemsCount;
use divan::Bencher;
use lb_core::conn::ConnStorage;
use lb_core::director::{Director, DirectorStorage, SchedInput};
use lb_core::sched::mh;
use lb_core::server::{RealServer, ServerId, NO_SERVER};
use lb_core::{
    Duration, ForwardMethod, Protocol, SchedulerKind, ServerConfig, ServiceConfig, ServiceKey,
};

fn main() {
    divan::main();
}

const SIZES: [u64; 3] = [1_000, 65_536, 1_000_000];

thread_local! {
    /// Filled balancers, built once per (kind, size) and shared by that kind's benches.
    static WORLDS: RefCell<HashMap<(Kind, u64), World>> = RefCell::new(HashMap::new());
}

fn with_world<R>(kind: Kind, n: u64, f: impl FnOnce(&mut World) -> R) -> R {
    WORLDS.with(|w| {
        let mut w = w.borrow_mut();
        let world = w.entry((kind, n)).or_insert_with(|| World::new(kind, n));
        f(world)
    })
}

/// One packet in its buffer.
struct Pkt {
    buf: [u8; BUF],
    len: usize,
}

fn pkt(f: impl FnOnce(&mut [u8]) -> usize) -> Pkt {
    let mut p = Pkt {
        buf: [0; BUF],
        len: 0,
    };
    p.len = f(&mut p.buf);
    p
}

/// Which flows a bench draws: flow 0 always, or one at random from all `n`.
#[derive(Clone, Copy)]
enum Draw {
    Hot,
    Random,
}

#[derive(Clone, Copy)]
enum Dir {
    Forward,
    Reply,
}

fn one(b: Bencher, kind: Kind, n: u64, draw: Draw, dir: Dir) {
    with_world(kind, n, |w| {
        let gen = w.gen.clone();
        let now = w.now;
        let mut rng = Rng::new(0xbe7c_0000 ^ n);
        let want = match dir {
            Dir::Forward => TO_SERVER,
            Dir::Reply => TO_CLIENT,
        };
        let lb = &mut w.lb;
        b.with_inputs(move || {
            let i = match draw {
                Draw::Hot => 0,
                Draw::Random => rng.below(gen.n),
            };
            pkt(|buf| match dir {
                Dir::Forward => gen.forward(buf, i),
                Dir::Reply => gen.reply(buf, i),
            })
        })
        .bench_local_refs(|p| {
            let v = lb.process(now, &mut p.buf, p.len);
            debug_assert!(same_kind(&v, &want));
            v
        });
    });
}

fn burst(b: Bencher, kind: Kind, n: u64, draw: Draw, dir: Dir) {
    with_world(kind, n, |w| {
        let gen = w.gen.clone();
        let now = w.now;
        let mut rng = Rng::new(0xb0257 ^ n);
        let want = match dir {
            Dir::Forward => TO_SERVER,
            Dir::Reply => TO_CLIENT,
        };
        let lb = &mut w.lb;
        b.counter(ItemsCount::new(BURST))
            .with_inputs(move || {
                let mut bb = BurstBufs::new();
                for k in 0..BURST {
                    let i = match draw {
                        Draw::Hot => 0,
                        Draw::Random => rng.below(gen.n),
                    };
                    bb.lens[k] = match dir {
                        Dir::Forward => gen.forward(&mut bb.bufs[k], i),
                        Dir::Reply => gen.reply(&mut bb.bufs[k], i),
                    };
                }
                bb
            })
            .bench_local_refs(|bb| {
                let ok = bb.run(lb, now, want);
                debug_assert_eq!(ok, BURST);
                ok
            });
    });
}

fn bare(b: Bencher, kind: Kind) {
    let t = Template::new(kind.client(0), kind.vip(), kind.proto(), ACK);
    let server = kind.server(0);
    b.with_inputs(|| pkt(|buf| t.restore(buf)))
        .bench_local_refs(|p| bare_rewrite(&mut p.buf, p.len, server));
}

fn chase(b: Bencher, n: u64) {
    let mut c = Chase::new(ConnStorage::slots_for(n as usize).bytes(), 0xc0ffee);
    b.bench_local(|| c.run(1));
}

macro_rules! established {
    ($m:ident, $kind:expr) => {
        /// Established-flow packets of one kind.
        mod $m {
            use super::*;
            const K: Kind = $kind;

            #[divan::bench]
            fn bare(b: Bencher) {
                super::bare(b, K);
            }
            #[divan::bench(args = SIZES)]
            fn chase(b: Bencher, n: u64) {
                super::chase(b, n);
            }
            #[divan::bench(args = SIZES)]
            fn hot(b: Bencher, n: u64) {
                one(b, K, n, Draw::Hot, Dir::Forward);
            }
            #[divan::bench(args = SIZES)]
            fn hot_burst32(b: Bencher, n: u64) {
                burst(b, K, n, Draw::Hot, Dir::Forward);
            }
            #[divan::bench(args = SIZES)]
            fn random(b: Bencher, n: u64) {
                one(b, K, n, Draw::Random, Dir::Forward);
            }
            #[divan::bench(args = SIZES)]
            fn random_burst32(b: Bencher, n: u64) {
                burst(b, K, n, Draw::Random, Dir::Forward);
            }
            #[divan::bench(args = SIZES)]
            fn reply_hot(b: Bencher, n: u64) {
                one(b, K, n, Draw::Hot, Dir::Reply);
            }
            #[divan::bench(args = SIZES)]
            fn reply_random(b: Bencher, n: u64) {
                one(b, K, n, Draw::Random, Dir::Reply);
            }
            #[divan::bench(args = SIZES)]
            fn reply_random_burst32(b: Bencher, n: u64) {
                burst(b, K, n, Draw::Random, Dir::Reply);
            }
        }
    };
}

/// Established-flow packets (forward and reply), by flow kind.
mod established {
    use super::*;
    established!(ipv4_tcp, Kind::V4Tcp);
    established!(ipv4_udp, Kind::V4Udp);
    established!(ipv6_tcp, Kind::V6Tcp);
    established!(ipv6_udp, Kind::V6Udp);
}

/// Fragments of datagrams of established UDP flow 0 (1 k entries): `first` fragments of new
/// datagrams (each files a decision; the 62-slot table replaces the oldest, as in a steady
/// stream), or later fragments of one datagram whose decision is filed.
fn fragment(b: Bencher, kind: Kind, first: bool) {
    with_world(kind, 1_000, |w| {
        let gen = w.gen.clone();
        let now = w.now;
        let lb = &mut w.lb;
        let mut setup = Pkt {
            buf: [0; BUF],
            len: 0,
        };
        let len = gen.forward(&mut setup.buf, 0);
        let len = make_fragment(&mut setup.buf, len, 7, true);
        assert!(same_kind(&lb.process(now, &mut setup.buf, len), &TO_SERVER));
        let mut id = 1_000_000u32;
        b.with_inputs(move || {
            id = id.wrapping_add(1);
            pkt(|buf| {
                let len = gen.forward(buf, 0);
                make_fragment(buf, len, if first { id } else { 7 }, first)
            })
        })
        .bench_local_refs(|p| {
            let v = lb.process(now, &mut p.buf, p.len);
            debug_assert!(same_kind(&v, &TO_SERVER));
            v
        });
    });
}

/// Fragments of UDP datagrams of an established flow: the first (scheduled by the general
/// path, its decision filed) and a later one (the decision looked up, the address rewritten).
mod fragments {
    use super::*;

    #[divan::bench(args = [Kind::V4Udp, Kind::V6Udp])]
    fn first(b: Bencher, kind: Kind) {
        fragment(b, kind, true);
    }

    #[divan::bench(args = [Kind::V4Udp, Kind::V6Udp])]
    fn later(b: Bencher, kind: Kind) {
        fragment(b, kind, false);
    }
}

fn sched_kind(name: &str) -> SchedulerKind {
    SCHEDULERS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, k)| *k)
        .expect("scheduler name")
}

const SCHED_NAMES: [&str; 14] = [
    "rr", "wrr", "lc", "wlc", "sed", "nq", "lblc", "lblcr", "dh", "sh", "mh", "fo", "ovf", "twos",
];

/// A new IPv4 TCP connection (SYN → schedule → insert → rewrite) into a table of 1,000,000
/// entries kept ~960,000 full by expiry, 16 servers; the amortised expiry is in the figure.
#[divan::bench(args = SCHED_NAMES, sample_count = 60, sample_size = 256)]
fn new_conn(b: Bencher, name: &str) {
    let Churn { mut lb, mut gen } = Churn::new(Kind::V4Tcp, 1_000_000, sched_kind(name), 1_000_000);
    b.with_inputs(move || {
        let mut p = pkt(|_| 0);
        let (now, len) = gen.prepare(&mut p.buf);
        p.len = len;
        (p, now)
    })
    .bench_local_refs(|(p, now)| {
        let v = step(&mut lb, *now, &mut p.buf, p.len);
        debug_assert!(same_kind(&v, &TO_SERVER));
        v
    });
}

/// [`new_conn`] in bursts of 32 SYNs (`process_burst`, the burst's packets sharing the last
/// one's arrival time): the index probes of a burst overlap. Time per burst; divide by 32 for
/// the cost per new connection. Only the two schedulers.
#[divan::bench(args = ["wrr", "mh"], sample_count = 60, sample_size = 16)]
fn new_conn_burst(b: Bencher, name: &str) {
    let Churn { mut lb, mut gen } = Churn::new(Kind::V4Tcp, 1_000_000, sched_kind(name), 1_000_000);
    b.counter(ItemsCount::new(BURST))
        .with_inputs(move || {
            let mut bb = BurstBufs::new();
            let mut now = T0;
            for k in 0..BURST {
                let (t, len) = gen.prepare(&mut bb.bufs[k]);
                bb.lens[k] = len;
                now = t;
            }
            (bb, now)
        })
        .bench_local_refs(|(bb, now)| {
            if lb.poll_timeout().is_some_and(|t| *now >= t) {
                lb.handle_timeout(*now);
            }
            let n = bb.run(&mut lb, *now, TO_SERVER);
            debug_assert_eq!(n, BURST);
            n
        });
}

/// `handle_timeout` expiring 1,000,000 UDP entries (created over 62.5 s of virtual time, so
/// they sit in ~1,000 wheel buckets). Time per 1 M.
#[divan::bench(sample_count = 5, sample_size = 1)]
fn expire_1m(b: Bencher) {
    const N: u64 = 1_000_000;
    b.counter(ItemsCount::new(N))
        .with_inputs(|| {
            let kind = Kind::V4Udp;
            let mut lb = balancer(kind, N as usize, SchedulerKind::Rr, 4);
            let t = Template::new(kind.client(0), kind.vip(), Protocol::Udp, 0);
            let mut buf = [0u8; BUF];
            for i in 0..N {
                let now = T0 + Duration::from_millis(i / CHURN_PER_MS);
                let len = t.restore_with(&mut buf, kind.client(i), true);
                assert!(same_kind(&lb.process(now, &mut buf, len), &TO_SERVER));
            }
            assert_eq!(lb.conns().len() as u64, N);
            lb
        })
        .bench_local_values(|mut lb| {
            lb.handle_timeout(T0 + Duration::from_secs(400));
            assert_eq!(lb.conns().len(), 0);
            lb
        });
}

/// mh table build (IPVS's `ip_vs_mh_reassign`): M slots, `servers` servers of weights 1..=4.
#[divan::bench(consts = [4093, 65521], args = [10, 1000])]
fn mh_build<const M: usize>(b: Bencher, servers: usize) {
    let list: Vec<RealServer> = (0..servers)
        .map(|k| {
            let addr = SocketAddr::new(
                IpAddr::V4(Ipv4Addr::new(10, 1, (k >> 8) as u8, k as u8)),
                8080,
            );
            let mut c = ServerConfig::new(addr, ForwardMethod::Masq);
            c.weight = 1 + (k as u32 % 4);
            RealServer::new(c)
        })
        .collect();
    let order: Vec<ServerId> = (0..servers as ServerId).rev().collect();
    let mut table = vec![NO_SERVER; M];
    let mut scratch = vec![mh::MhScratch::EMPTY; servers];
    b.bench_local(|| {
        let dests = lb_core::server::DestList {
            order: &order,
            servers: &list,
        };
        mh::build(black_box(&mut table), &mut scratch, dests).expect("build")
    });
}

/// One scheduling decision (`Director::schedule`) over 64 servers of weights 1..=4, clients
/// cycling through 1,024 addresses; server counters stay 0 (no connection is bound), so the
/// scanning schedulers walk the whole list.
#[divan::bench(args = SCHED_NAMES)]
fn schedule(b: Bencher, name: &str) {
    let kind = Kind::V4Tcp;
    let mut d = Director::new(DirectorStorage::alloc(limits()), DIRECTOR_SEED);
    let mut cfg = ServiceConfig::new(ServiceKey::tcp(kind.vip()));
    cfg.scheduler = sched_kind(name);
    let svc = d.add_service(&cfg).expect("service");
    for k in 0..64 {
        let mut s = ServerConfig::new(kind.server(k), ForwardMethod::Masq);
        s.weight = 1 + (k as u32 % 4);
        d.add_server(&cfg.key, &s).expect("server");
    }
    let inputs: Vec<SchedInput> = (0..1024)
        .map(|i| SchedInput {
            proto: Protocol::Tcp,
            client: kind.client(i * 97),
            dst: kind.vip(),
        })
        .collect();
    let mut i = 0;
    let now = T0;
    b.bench_local(|| {
        i = (i + 1) & 1023;
        d.schedule(svc, &inputs[i], now)
    });
}
