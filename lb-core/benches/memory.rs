//! Memory per connection entry, service and server: from `size_of`, and measured as resident
//! memory (VmRSS from /proc/self/status) after filling a table with 1,000,000 established TCP
//! connections through the balancer (SYN, then ACK).
//!
//! `cargo bench -p lb-core --bench memory` (env `LB_MEM_N` changes the count).

mod common;

use std::mem::size_of;

use common::*;
use lb_core::conn::{ConnSlot, ConnStorage, FragSlot, IndexSlot, WheelBucket};
use lb_core::director::Limits;
use lb_core::sched::lblc::LblcEntry;
use lb_core::sched::lblcr::LblcrEntry;
use lb_core::sched::mh::MhScratch;
use lb_core::server::{RealServer, ServerId};
use lb_core::stats::RateEstimator;
use lb_core::Service;

/// Resident memory of this process, in bytes.
fn vm_rss() -> usize {
    let s = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let line = s
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .expect("VmRSS line");
    let kb: usize = line
        .split_whitespace()
        .nth(1)
        .and_then(|x| x.parse().ok())
        .expect("VmRSS value");
    kb * 1024
}

fn main() {
    let n: u64 = std::env::var("LB_MEM_N")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let sizes = ConnStorage::slots_for(n as usize);
    println!("Memory (size_of, 64-bit host)");
    println!();
    println!("| item | bytes |");
    println!("|---|---:|");
    println!(
        "| `ConnSlot` (entry 40 + wheel links 8) | {} |",
        size_of::<ConnSlot>()
    );
    println!("| `IndexSlot` | {} |", size_of::<IndexSlot>());
    println!("| `WheelBucket` | {} |", size_of::<WheelBucket>());
    println!("| `FragSlot` | {} |", size_of::<FragSlot>());
    let frags = sizes.fragment_slots * size_of::<FragSlot>();
    println!(
        "| table of {n} entries: {} slots + {} index slots + {} buckets | {} ({:.2} per entry) |",
        sizes.entries,
        sizes.index_slots,
        sizes.wheel_buckets,
        sizes.bytes() - frags,
        (sizes.bytes() - frags) as f64 / n as f64
    );
    println!(
        "| its fragment table: {} slots | {frags} ({:.2} per entry) |",
        sizes.fragment_slots,
        frags as f64 / n as f64
    );
    let per_server = size_of::<RealServer>()
        + size_of::<RateEstimator>()
        + size_of::<ServerId>()
        + size_of::<MhScratch>();
    println!(
        "| per server slot: `RealServer` {} + `RateEstimator` {} + order `ServerId` {} + `MhScratch` {} | {} |",
        size_of::<RealServer>(),
        size_of::<RateEstimator>(),
        size_of::<ServerId>(),
        size_of::<MhScratch>(),
        per_server
    );
    println!(
        "| per service slot, fixed part: `Option<Service>` | {} |",
        size_of::<Option<Service>>()
    );
    println!(
        "| per service slot, tables: sh/dh/mh slot `ServerId` {} × table slots + (`LblcEntry` {} + `LblcrEntry` {}) × lblc entries | — |",
        size_of::<ServerId>(),
        size_of::<LblcEntry>(),
        size_of::<LblcrEntry>()
    );
    for (what, l) in [
        (
            "default `Limits` (64 services × 1023 servers, 65536 table slots, 1024 lblc)",
            Limits::default(),
        ),
        ("the benches' `Limits` (64 × 64, 65521, 256)", limits()),
        (
            "small: 4 services × 16 servers, mh 4093, no lblc",
            Limits {
                services: 4,
                servers_per_service: 16,
                table_slots_per_service: 4093,
                lblc_entries_per_service: 0,
            },
        ),
    ] {
        println!("| director storage, {what} | {} |", l.storage_bytes());
    }

    // Measured: resident memory before and after a table of n established flows.
    let before = vm_rss();
    let t = std::time::Instant::now();
    let kind = Kind::V4Tcp;
    let mut lb = balancer(kind, n as usize, lb_core::SchedulerKind::Wrr, 4);
    let after_alloc = vm_rss();
    let syn = Template::new(kind.client(0), kind.vip(), kind.proto(), SYN);
    let ack = Template::new(kind.client(0), kind.vip(), kind.proto(), ACK);
    let mut buf = [0u8; BUF];
    for i in 0..n {
        let len = syn.restore_with(&mut buf, kind.client(i), true);
        assert!(same_kind(&lb.process(T0, &mut buf, len), &TO_SERVER));
        let len = ack.restore_with(&mut buf, kind.client(i), true);
        assert!(same_kind(&lb.process(T0, &mut buf, len), &TO_SERVER));
    }
    assert_eq!(lb.conns().len() as u64, n);
    let after = vm_rss();
    let director_bytes = limits().storage_bytes();
    println!();
    println!(
        "Measured VmRSS with {n} established connections (filled in {:.2} s):",
        t.elapsed().as_secs_f64()
    );
    println!();
    println!("| | bytes |");
    println!("|---|---:|");
    println!("| before the balancer | {before} |");
    println!(
        "| after allocating (table cleared, director of the benches' limits) | {after_alloc} |"
    );
    println!("| after {n} connections | {after} |");
    println!(
        "| growth, minus the director's storage ({director_bytes}) | {} |",
        (after - before).saturating_sub(director_bytes)
    );
    println!(
        "| **per connection** (growth minus director, / {n}) | **{:.2}** |",
        (after - before).saturating_sub(director_bytes) as f64 / n as f64
    );
    // Keep the balancer alive until the measurement is taken.
    std::hint::black_box(&lb);
}
