//! New connections into a 1 M table with churn, from one run: SYN → schedule → insert →
//! rewrite, one at a time (`process`) and in bursts of 32 (`process_burst`), wrr and mh, the
//! two variants interleaved sample by sample on the same table; and, timed apart, the expiry
//! that keeps the table full (`handle_timeout`, per entry removed) and the whole timer side of
//! the lifecycle (`poll_timeout`, which files re-armed entries by their deadlines, plus
//! `handle_timeout`: the time of both from one expiry to the next, per entry the expiry
//! removed). Medians.
//!
//! The table (capacity 1,000,000, 16 servers) is first filled by 1,000,000 SYNs at 16 per
//! virtual ms; SYN_RECV entries expire after 60 s, so ~960,000 stay live and every new entry
//! takes a slot an expired one left. Each sample restores 256 SYNs of new flows (untimed), runs
//! the timers that are due (timed apart), then times the 256 packets.
//!
//! `cargo bench -p lb-core --bench newconn` (env: `LB_SAMPLES=301`, `LB_SCHEDS=wrr,mh`,
//! `LB_CAPACITY=1000000`, `LB_VARIANT=single|burst` to run one variant, e.g. under a profiler).

mod common;

use std::time::Instant as Clock;

use common::*;
use lb_core::SchedulerKind;

/// SYNs per timed sample.
const BATCH: usize = 256;

fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

struct Row {
    name: String,
    single: f64,
    burst: f64,
    expiry: f64,
    /// `poll_timeout` + `handle_timeout` from one expiry to the next, per entry removed.
    timers: f64,
}

fn measure(name: &str, sched: SchedulerKind, samples: usize) -> Row {
    let t = Clock::now();
    let cap: u64 = std::env::var("LB_CAPACITY")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let Churn { mut lb, mut gen } = Churn::new(Kind::V4Tcp, cap as usize, sched, cap);
    eprintln!(
        "  {name}: filled in {:.1} s, {} live entries",
        t.elapsed().as_secs_f64(),
        lb.conns().len()
    );
    let mut bufs = vec![[0u8; BUF]; BATCH];
    let mut lens = [0usize; BATCH];
    let mut nows = [T0; BATCH];
    let mut bursts: Vec<Box<BurstBufs>> = (0..BATCH / BURST).map(|_| BurstBufs::new()).collect();
    let mut burst_nows = [T0; BATCH / BURST];
    let (mut single, mut burst, mut expiry) = (Vec::new(), Vec::new(), Vec::new());
    // Timer time since the last expiry that removed entries.
    let (mut timer_ns, mut timers) = (0f64, Vec::new());
    // LB_VARIANT=single|burst runs one variant only (for profiling).
    let variants: &[bool] = match std::env::var("LB_VARIANT").as_deref() {
        Ok("single") => &[false],
        Ok("burst") => &[true],
        _ => &[false, true],
    };
    for s in 0..=samples {
        for &burst_variant in variants {
            // Untimed: the next 256 SYNs.
            if burst_variant {
                for (bb, at) in bursts.iter_mut().zip(burst_nows.iter_mut()) {
                    for k in 0..BURST {
                        let (now, len) = gen.prepare(&mut bb.bufs[k]);
                        bb.lens[k] = len;
                        *at = now;
                    }
                }
            } else {
                for ((b, l), at) in bufs.iter_mut().zip(lens.iter_mut()).zip(nows.iter_mut()) {
                    let (now, len) = gen.prepare(b);
                    *l = len;
                    *at = now;
                }
            }
            // Timed apart: the timers due by the first packet's arrival.
            let first = if burst_variant {
                burst_nows[0]
            } else {
                nows[0]
            };
            let before = lb.conns().len();
            let poll_start = Clock::now();
            let due = lb.poll_timeout().is_some_and(|t| first >= t);
            let poll_ns = poll_start.elapsed().as_nanos() as f64;
            let mut expire_ns = 0.0;
            if due {
                let start = Clock::now();
                lb.handle_timeout(first);
                expire_ns = start.elapsed().as_nanos() as f64;
            }
            let removed = before - lb.conns().len();
            timer_ns += poll_ns + expire_ns;
            if removed > 0 {
                if s > 0 {
                    expiry.push(expire_ns / removed as f64);
                    timers.push(timer_ns / removed as f64);
                }
                timer_ns = 0.0;
            }
            // Timed: the packets.
            let start = Clock::now();
            let ok: usize = if burst_variant {
                bursts
                    .iter_mut()
                    .zip(burst_nows)
                    .map(|(bb, now)| bb.run(&mut lb, now, TO_SERVER))
                    .sum()
            } else {
                bufs.iter_mut()
                    .zip(lens)
                    .zip(nows)
                    .map(|((b, l), now)| {
                        usize::from(same_kind(&lb.process(now, &mut b[..], l), &TO_SERVER))
                    })
                    .sum()
            };
            let ns = start.elapsed().as_nanos() as f64 / BATCH as f64;
            assert_eq!(ok, BATCH, "{name}: not every SYN was forwarded");
            if s > 0 {
                if burst_variant {
                    burst.push(ns);
                } else {
                    single.push(ns);
                }
            }
        }
    }
    Row {
        name: name.to_string(),
        single: median(&mut single),
        burst: median(&mut burst),
        expiry: median(&mut expiry),
        timers: median(&mut timers),
    }
}

fn main() {
    let samples: usize = std::env::var("LB_SAMPLES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(301);
    let names = std::env::var("LB_SCHEDS").unwrap_or_else(|_| "wrr,mh".to_string());
    eprintln!("newconn: {samples} samples of {BATCH} SYNs per variant, interleaved");
    let mut rows = Vec::new();
    for name in names.split(',').map(str::trim) {
        let sched = SCHEDULERS
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, k)| *k)
            .unwrap_or_else(|| panic!("unknown scheduler {name}"));
        rows.push(measure(name, sched, samples));
    }
    println!();
    println!("New connection (IPv4 TCP SYN) into a 1 M table with churn, median ns per SYN ({samples} samples of {BATCH}; one run)");
    println!();
    println!("| scheduler | one at a time | burst 32 | expiry, per entry removed (timed apart) | burst + expiry | timers (poll + handle), per entry removed | lifecycle: burst + timers |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for r in &rows {
        println!(
            "| {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} |",
            r.name,
            r.single,
            r.burst,
            r.expiry,
            r.burst + r.expiry,
            r.timers,
            r.burst + r.timers
        );
    }
    println!();
    for r in &rows {
        println!(
            "goal new connection ≤ 150 ns ({}): one at a time {:.1} ns → {}; burst 32 {:.1} ns → {}",
            r.name,
            r.single,
            if r.single <= 150.0 { "met" } else { "NOT met" },
            r.burst,
            if r.burst <= 150.0 { "met" } else { "NOT met" },
        );
        println!(
            "goal new connection + its expiry ≤ 200 ns ({}): burst + timers {:.1} ns → {}",
            r.name,
            r.burst + r.timers,
            if r.burst + r.timers <= 200.0 {
                "met"
            } else {
                "NOT met"
            },
        );
    }
}
