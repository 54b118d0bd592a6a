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
use lb_tun::tun::{PacketRing, TunDevice, DEFAULT_BUF_SIZE, DEFAULT_BURST};

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
    let mut dev = match TunDevice::open(&args.tun) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("tun-echo: cannot open TUN device {}: {e}", args.tun);
            return std::process::ExitCode::FAILURE;
        }
    };
    eprintln!("tun-echo: echoing on {}", dev.name());
    let mut ring = PacketRing::new(args.burst, DEFAULT_BUF_SIZE);
    while !stop.load(Ordering::Relaxed) {
        match ring.fill(&dev) {
            Ok(0) => {
                if let Err(e) = dev.wait_readable(Duration::from_millis(100)) {
                    eprintln!("tun-echo: poll failed: {e}");
                    return std::process::ExitCode::FAILURE;
                }
            }
            Ok(_) => {
                ring.flush(&dev);
            }
            Err(e) => {
                eprintln!("tun-echo: read failed: {e}");
                return std::process::ExitCode::FAILURE;
            }
        }
    }
    let s = ring.stats();
    eprintln!(
        "tun-echo: exit: bursts {} rx {} tx {} tx_errors {} truncated {}",
        s.bursts, s.rx_packets, s.tx_packets, s.tx_errors, s.rx_truncated
    );
    std::process::ExitCode::SUCCESS
}
