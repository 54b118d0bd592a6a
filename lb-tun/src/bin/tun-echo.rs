//! `tun-echo`: the bare TUN echo forwarder, the benchmark baseline of the gateway.
//!
//! It reads packets from a TUN device a burst at a time into the same [`PacketRing`] the
//! gateway uses and writes each one back unchanged, so the kernel routes it on by its
//! destination. With the VIP's subnet (or a server subnet) routed into the device, it is a
//! router hop through userspace: the cost of the TUN round trip with no balancer work.
#![forbid(unsafe_code)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use lb_tun::tun::{
    PacketRing, RingStats, TunDevice, DEFAULT_BUF_SIZE, DEFAULT_BURST, OFFLOAD_BUF_SIZE,
};

/// Echo every packet read from a TUN device back into it, unchanged.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// TUN device to create or attach to (e.g. lb0).
    #[arg(long)]
    tun: String,
    /// Packets per burst (buffers in the ring).
    #[arg(long, default_value_t = DEFAULT_BURST)]
    burst: usize,
    /// Queues of the device (`IFF_MULTI_QUEUE` with more than one), one thread each.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=256))]
    queues: u16,
    /// Take the device's offloads (TSO, checksum): segments of up to 64 KB are echoed with
    /// their virtio-net headers, as they came.
    #[arg(long)]
    offload: bool,
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        if let Err(e) = signal_hook::flag::register(sig, Arc::clone(&stop)) {
            eprintln!("tun-echo: cannot install signal handler: {e}");
            return std::process::ExitCode::FAILURE;
        }
    }
    let queues = match TunDevice::open_queues(&args.tun, usize::from(args.queues), args.offload) {
        Ok(q) => q,
        Err(e) => {
            eprintln!("tun-echo: cannot open TUN device {}: {e}", args.tun);
            return std::process::ExitCode::FAILURE;
        }
    };
    eprintln!(
        "tun-echo: echoing on {} ({} queue{})",
        queues[0].name(),
        queues.len(),
        if queues.len() == 1 { "" } else { "s" }
    );
    let threads: Vec<_> = queues
        .into_iter()
        .map(|dev| {
            let stop = Arc::clone(&stop);
            let size = if args.offload {
                OFFLOAD_BUF_SIZE
            } else {
                DEFAULT_BUF_SIZE
            };
            std::thread::spawn(move || echo(dev, PacketRing::new(args.burst, size), &stop))
        })
        .collect();
    let mut failed = false;
    for t in threads {
        match t.join() {
            Ok(Ok(s)) => eprintln!(
                "tun-echo: exit: bursts {} rx {} tx {} tx_errors {} truncated {}",
                s.bursts, s.rx_packets, s.tx_packets, s.tx_errors, s.rx_truncated
            ),
            Ok(Err(e)) => {
                eprintln!("tun-echo: {e}");
                failed = true;
            }
            Err(_) => failed = true,
        }
    }
    if failed {
        std::process::ExitCode::FAILURE
    } else {
        std::process::ExitCode::SUCCESS
    }
}

/// Echoes one queue until `stop` is set (a signal, or another queue failing).
fn echo(mut dev: TunDevice, mut ring: PacketRing, stop: &AtomicBool) -> Result<RingStats, String> {
    while !stop.load(Ordering::Relaxed) {
        match ring.fill(&dev) {
            Ok(0) => {
                if let Err(e) = dev.wait_readable(Duration::from_millis(100)) {
                    stop.store(true, Ordering::Relaxed);
                    return Err(format!("poll failed: {e}"));
                }
            }
            Ok(_) => {
                ring.flush(&dev);
            }
            Err(e) => {
                stop.store(true, Ordering::Relaxed);
                return Err(format!("read failed: {e}"));
            }
        }
    }
    Ok(*ring.stats())
}
