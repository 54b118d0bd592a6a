//! The established-flow ratio table: for each flow kind and table size, in one process and
//! with the variants interleaved sample by sample (so a noisy neighbour hits them alike), the
//! median cost per packet of
//!
//! * `bare`: `packet::parse` + `nat::rewrite_dst`, no lookup;
//! * `hot`: `Balancer::process` of one established flow, again and again (one at a time, and
//!   in `process_burst`s of 32);
//! * `chase`: one dependent random load over a buffer the size of the connection table;
//! * `rand`: `process` of a flow drawn at random per packet from all live flows (one at a time
//!   and in bursts of 32);
//! * `reply`: the reply direction (server → client), hot and random in bursts;
//! * `floor`: the memory floor of a staged lookup in bursts of 32 — per packet one random load
//!   over a buffer the index's size naming a random slot of a buffer the slab's size, loaded
//!   next, stage by stage as `process_burst` issues them (`common::Floor`);
//!
//! and the ratios hot/bare and rand/chase. Every packet is restored from a template before its
//! sample starts (untimed), so nothing stays cache-hot by accident except the packet itself, as
//! after a NIC's DMA.
//!
//! `cargo bench -p lb-core --bench ratios` (env: `LB_SIZES=1000,65536,1000000`,
//! `LB_KINDS=ipv4-tcp,...`, `LB_SAMPLES=301`).

mod common;

use std::hint::black_box;
use std::time::Instant as Clock;

use common::*;
use lb_core::conn::ConnStorage;

/// Packets per timed sample.
const BATCH: usize = 256;

#[derive(Clone, Copy, PartialEq, Eq)]
enum V {
    Bare,
    Hot,
    HotBurst,
    Chase,
    Rand,
    RandBurst,
    ReplyHot,
    ReplyRandBurst,
    Floor,
}

const VARIANTS: [V; 9] = [
    V::Bare,
    V::Hot,
    V::HotBurst,
    V::Chase,
    V::Rand,
    V::RandBurst,
    V::ReplyHot,
    V::ReplyRandBurst,
    V::Floor,
];

fn env_list<T: std::str::FromStr + Clone>(name: &str, default: &[T]) -> Vec<T> {
    match std::env::var(name) {
        Ok(s) if !s.is_empty() => s
            .split(',')
            .map(|x| {
                x.trim()
                    .parse()
                    .unwrap_or_else(|_| panic!("bad {name} item {x:?}"))
            })
            .collect(),
        _ => default.to_vec(),
    }
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

struct Row {
    kind: Kind,
    n: u64,
    med: [f64; 9],
}

fn measure(kind: Kind, n: u64, samples: usize) -> Row {
    let t = Clock::now();
    let mut w = World::new(kind, n);
    let table_bytes = ConnStorage::slots_for(n as usize).bytes();
    let mut chase = Chase::new(table_bytes, 0xc0ffee);
    let mut floor = Floor::new(n as usize, 0xf1_00d);
    eprintln!(
        "  {} n={n}: filled in {:.1} s ({} MiB table)",
        kind.name(),
        t.elapsed().as_secs_f64(),
        table_bytes >> 20
    );
    let server0 = kind.server(usize::from(w.gen.server_of[0]));
    let mut rng = Rng::new(0x5eed_0000 + n);
    let mut bufs = vec![[0u8; BUF]; BATCH];
    let mut lens = [0usize; BATCH];
    let mut bursts: Vec<Box<BurstBufs>> = (0..BATCH / BURST).map(|_| BurstBufs::new()).collect();
    let mut times: Vec<Vec<f64>> = vec![Vec::with_capacity(samples); VARIANTS.len()];
    let now = w.now;
    // Warm-up sample of every variant first (page faults, branch predictors), not recorded.
    for s in 0..=samples {
        for (vi, &v) in VARIANTS.iter().enumerate() {
            // Untimed: restore the packets.
            match v {
                V::Bare | V::Hot => {
                    for (b, l) in bufs.iter_mut().zip(lens.iter_mut()) {
                        *l = w.forward(b, 0);
                    }
                }
                V::Rand => {
                    for (b, l) in bufs.iter_mut().zip(lens.iter_mut()) {
                        *l = w.forward(b, rng.below(n));
                    }
                }
                V::HotBurst | V::RandBurst | V::ReplyHot | V::ReplyRandBurst => {
                    for bb in bursts.iter_mut() {
                        for k in 0..BURST {
                            let i = match v {
                                V::HotBurst | V::ReplyHot => 0,
                                _ => rng.below(n),
                            };
                            bb.lens[k] = match v {
                                V::HotBurst | V::RandBurst => w.forward(&mut bb.bufs[k], i),
                                _ => w.reply(&mut bb.bufs[k], i),
                            };
                        }
                    }
                }
                V::Chase | V::Floor => {}
            }
            // Timed.
            let start = Clock::now();
            let ok = match v {
                V::Bare => bufs
                    .iter_mut()
                    .zip(lens)
                    .map(|(b, l)| usize::from(bare_rewrite(&mut b[..], l, server0)))
                    .sum(),
                V::Hot | V::Rand => bufs
                    .iter_mut()
                    .zip(lens)
                    .map(|(b, l)| {
                        usize::from(same_kind(&w.lb.process(now, &mut b[..], l), &TO_SERVER))
                    })
                    .sum(),
                V::HotBurst | V::RandBurst => bursts
                    .iter_mut()
                    .map(|bb| bb.run(&mut w.lb, now, TO_SERVER))
                    .sum(),
                V::ReplyHot | V::ReplyRandBurst => bursts
                    .iter_mut()
                    .map(|bb| bb.run(&mut w.lb, now, TO_CLIENT))
                    .sum(),
                V::Chase => {
                    black_box(chase.run(BATCH));
                    BATCH
                }
                V::Floor => {
                    black_box(floor.run(BATCH / BURST));
                    BATCH
                }
            };
            let ns = start.elapsed().as_nanos() as f64 / BATCH as f64;
            assert_eq!(
                ok, BATCH,
                "variant {vi}: not every packet took the measured path"
            );
            if s > 0 {
                times[vi].push(ns);
            }
        }
    }
    let mut med = [0.0; 9];
    for (m, t) in med.iter_mut().zip(times.iter_mut()) {
        *m = median(t);
    }
    Row { kind, n, med }
}

fn main() {
    // `cargo bench` passes `--bench`; ignore arguments.
    let sizes: Vec<u64> = env_list("LB_SIZES", &[1_000, 65_536, 1_000_000]);
    let kinds: Vec<String> = env_list("LB_KINDS", &Kind::ALL.map(|k| k.name().to_string()));
    let samples: usize = std::env::var("LB_SAMPLES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(301);
    eprintln!("ratios: {samples} samples of {BATCH} packets per variant, interleaved");
    let mut rows = Vec::new();
    for name in &kinds {
        let kind = Kind::ALL
            .into_iter()
            .find(|k| k.name() == name)
            .unwrap_or_else(|| panic!("unknown kind {name}"));
        for &n in &sizes {
            rows.push(measure(kind, n, samples));
        }
    }
    println!();
    println!("Established-flow packet, median ns per packet ({samples} samples of {BATCH}; one run, variants interleaved)");
    println!();
    println!("| flow | live entries | bare parse+rewrite | hot | hot, burst 32 | hot / bare | hot burst / bare | chase (dependent load) | random | random, burst 32 | random / chase | random burst / chase | floor, burst 32 (two staged misses) | random burst − floor | reply hot, burst | reply random, burst |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in &rows {
        let m = &r.med;
        println!(
            "| {} | {} | {:.1} | {:.1} | {:.1} | {:.2} | {:.2} | {:.1} | {:.1} | {:.1} | {:.2} | {:.2} | {:.1} | {:.1} | {:.1} | {:.1} |",
            r.kind.name(),
            r.n,
            m[0],
            m[1],
            m[2],
            m[1] / m[0],
            m[2] / m[0],
            m[3],
            m[4],
            m[5],
            m[4] / m[3],
            m[5] / m[3],
            m[8],
            m[5] - m[8],
            m[6],
            m[7],
        );
    }
    println!();
    for r in &rows {
        if r.kind == Kind::V4Tcp {
            let m = &r.med;
            println!(
                "goal hot ≤ 2× bare ({} n={}): {:.2}× → {}",
                r.kind.name(),
                r.n,
                m[1] / m[0],
                if m[1] / m[0] <= 2.0 { "met" } else { "NOT met" }
            );
            if r.n >= 1_000_000 {
                println!(
                    "goal random burst ≤ 40 ns at 1M ({}): {:.1} ns → {}",
                    r.kind.name(),
                    m[5],
                    if m[5] <= 40.0 { "met" } else { "NOT met" }
                );
            }
        }
    }
}
