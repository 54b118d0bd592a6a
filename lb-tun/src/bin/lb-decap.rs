//! `lb-decap`: the real server's half of tunnel forwarding, in userspace, for hosts whose
//! kernel cannot load `ipip`, `fou` or `ip_gre` (containers, minimal kernels).
//!
//! It receives tunnelled packets (GUE on a UDP socket, IPIP and GRE on raw sockets), checks and
//! strips the outer headers with lb-core's decoder ([`lb_core::tunnel::decap`]) and writes the
//! inner packet into a TUN device; the host's stack takes it from there and answers the client
//! directly. See docs/tunnels.md for the host setup (VIP on `lo`, rp_filter).
#![forbid(unsafe_code)]

use std::io::Write;
use std::process::{Command, ExitCode};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use lb_tun::decap::{open, Receiver, Stats, Tunnels};
use lb_tun::tun::{PacketIo, TunDevice};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use std::os::unix::io::AsRawFd;

/// How long the loop sleeps at most: bounds the delay of a signal and of --stats-interval.
const POLL_TIMEOUT: Duration = Duration::from_millis(200);
/// Receive buffer: the largest IP datagram.
const BUF_SIZE: usize = 65_536;

/// Receive IPIP, GUE and GRE tunnelled packets and write the inner packets into a TUN device.
#[derive(Parser, Debug)]
#[command(version, about)]
#[command(group = clap::ArgGroup::new("tunnels").required(true).multiple(true))]
struct Args {
    /// TUN device to create or attach to; lb-decap brings it up and turns its rp_filter off.
    #[arg(long)]
    tun: String,
    /// Receive GUE on this UDP port (the director's --tun-port), IPv4 and IPv6.
    #[arg(long, value_name = "PORT", group = "tunnels",
          value_parser = clap::value_parser!(u16).range(1..))]
    gue_port: Option<u16>,
    /// Receive IPIP (IP protocols 4 and 41) over IPv4 and IPv6.
    #[arg(long, group = "tunnels")]
    ipip: bool,
    /// Receive GRE (IP protocol 47) over IPv4 and IPv6.
    #[arg(long, group = "tunnels")]
    gre: bool,
    /// Print the counters every SECONDS (they are always printed on exit).
    #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..))]
    stats_interval: Option<u64>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        if let Err(e) = signal_hook::flag::register(sig, Arc::clone(&stop)) {
            log::error!("cannot install signal handler: {e}");
            return ExitCode::FAILURE;
        }
    }
    let dev = match TunDevice::open(&args.tun) {
        Ok(d) => d,
        Err(e) => {
            log::error!("cannot open TUN device {}: {e}", args.tun);
            return ExitCode::FAILURE;
        }
    };
    if let Err(e) = bring_up(dev.name()) {
        log::error!("cannot set up TUN device {}: {e}", dev.name());
        return ExitCode::FAILURE;
    }
    let tunnels = Tunnels {
        gue_port: args.gue_port,
        ipip: args.ipip,
        gre: args.gre,
    };
    let receivers = match open(tunnels) {
        Ok(r) => r,
        Err(e) => {
            log::error!("{e}");
            return ExitCode::FAILURE;
        }
    };
    for r in &receivers {
        log::info!("receiving on {}", r.layer.describe());
    }
    let every = args.stats_interval.map(Duration::from_secs);
    let mut stats = Stats::default();
    let result = run(&dev, &receivers, &stop, every, &mut stats);
    print!("{}", stats.render());
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("{e}");
            ExitCode::FAILURE
        }
    }
}

/// Sets the device up and its IPv4 reverse-path filter off: the inner packets come from the
/// clients, whose route is not the TUN device, so a strict filter would drop them all.
fn bring_up(name: &str) -> std::io::Result<()> {
    let status = Command::new("ip")
        .args(["link", "set", "dev", name, "up"])
        .status()?;
    if !status.success() {
        return Err(std::io::Error::other(format!(
            "`ip link set dev {name} up` failed ({status})"
        )));
    }
    let path = format!("/proc/sys/net/ipv4/conf/{name}/rp_filter");
    std::fs::write(&path, "0\n")?;
    // The effective filter is the larger of the device's and `all`'s.
    let all = std::fs::read_to_string("/proc/sys/net/ipv4/conf/all/rp_filter").unwrap_or_default();
    if all.trim() != "0" {
        log::warn!(
            "net.ipv4.conf.all.rp_filter is {}: the inner IPv4 packets will be dropped \
             unless it is 0 (docs/tunnels.md)",
            all.trim()
        );
    }
    Ok(())
}

/// The loop, until `stop`: wait for any socket, drain each readable one, decode, write to the
/// TUN device; counts into `stats`.
fn run(
    dev: &TunDevice,
    receivers: &[Receiver],
    stop: &AtomicBool,
    every: Option<Duration>,
    stats: &mut Stats,
) -> std::io::Result<()> {
    let mut poll = Poll::new()?;
    for (i, r) in receivers.iter().enumerate() {
        let fd = r.socket.as_raw_fd();
        poll.registry()
            .register(&mut SourceFd(&fd), Token(i), Interest::READABLE)?;
    }
    let mut events = Events::with_capacity(receivers.len().max(1));
    let mut buf = vec![0u8; BUF_SIZE];
    let mut last_print = Instant::now();
    // Edge-triggered: every socket is drained once before the first wait.
    let mut ready: Vec<usize> = (0..receivers.len()).collect();
    let mut retry = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        for &i in &ready {
            let r = &receivers[i];
            loop {
                let n = match r.recv(&mut buf) {
                    Ok(Some(n)) => n,
                    Ok(None) => break,
                    // Nothing a socket reports here (a pending ICMP error, ENOBUFS) is worth
                    // stopping for: count it, go on with the next socket and read this one
                    // again after the wait (edge-triggered: no new wake-up for what it holds).
                    Err(e) => {
                        log::debug!("receive on {}: {e}", r.layer.describe());
                        stats.rx_errors += 1;
                        retry.push(i);
                        break;
                    }
                };
                stats.rx += 1;
                let result = r.layer.decode(&mut buf[..n]);
                stats.record(&result);
                let Ok(inner) = result else { continue };
                match dev.send(&buf[inner.range()]) {
                    Ok(true) => stats.tx += 1,
                    Ok(false) => stats.tx_errors += 1,
                    Err(e) => {
                        log::debug!("TUN write of {} bytes: {e}", inner.len);
                        stats.tx_errors += 1;
                    }
                }
            }
        }
        if let Some(every) = every {
            if last_print.elapsed() >= every {
                print!("{}", stats.render());
                let _ = std::io::stdout().flush();
                last_print = Instant::now();
            }
        }
        match poll.poll(&mut events, Some(POLL_TIMEOUT)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
        ready = events.iter().map(|e| e.token().0).collect();
        ready.append(&mut retry);
    }
    Ok(())
}
