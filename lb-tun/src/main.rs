//! `lb-tun`: the Linux demo gateway. It owns a TUN device, the control socket and the metrics
//! endpoint, and moves packets between the TUN device and the balancer a burst at a time.
//!
//! PHASE 1 STATE: the balancer is not wired in yet. Packets are written back unchanged (the
//! gateway behaves like `tun-echo`), control requests are answered "not wired yet" with status 1,
//! and a `--config` file is read but NOT applied. See `/work/shared/design.md`, "lb-tun".
#![deny(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use clap::Parser;
use lb_tun::control::{ControlServer, Pending, Reply, DEFAULT_CONTROL_PATH};
use lb_tun::metrics::{MetricsServer, MetricsSnapshot};
use lb_tun::tun::{PacketRing, RingStats, TunDevice, DEFAULT_BUF_SIZE, DEFAULT_BURST};

/// How long the loop sleeps in poll(2) when no packet waits: bounds the latency of control
/// requests and timers.
const POLL_TIMEOUT: Duration = Duration::from_millis(50);
/// How often the loop republishes the metrics snapshot.
const METRICS_EVERY: Duration = Duration::from_secs(1);

/// The userspace IPVS gateway on a TUN device.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// TUN device to create or attach to (e.g. lb0); route the VIPs and the real servers'
    /// replies into it (see README-routing.md).
    #[arg(long)]
    tun: String,
    /// File of ipvsadm commands (one per line, as `ipvsadm -S` writes) to apply at start.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Unix socket for lbadm.
    #[arg(long, default_value = DEFAULT_CONTROL_PATH)]
    control: PathBuf,
    /// Capacity of the connection table (entries).
    #[arg(long, default_value_t = 1 << 20)]
    conns: usize,
    /// Serve Prometheus metrics at http://ADDR:PORT/metrics.
    #[arg(long, value_name = "ADDR:PORT")]
    metrics: Option<String>,
    /// Packets per burst (buffers in the ring).
    #[arg(long, default_value_t = DEFAULT_BURST)]
    burst: usize,
    /// More logging (-v debug, -vv trace); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count)]
    verbose: u8,
}

/// Everything the packet loop owns.
struct Gateway {
    dev: TunDevice,
    ring: PacketRing,
    control: mpsc::Receiver<Pending>,
    snapshot: MetricsSnapshot,
    last_publish: Instant,
    started: Instant,
}

impl Gateway {
    /// Runs until `stop` is set (SIGINT/SIGTERM) or the device fails.
    fn run(&mut self, stop: &AtomicBool) -> std::io::Result<()> {
        self.publish();
        while !stop.load(Ordering::Relaxed) {
            let n = self.ring.fill(&self.dev)?;
            if n == 0 {
                self.dev.wait_readable(POLL_TIMEOUT)?;
            } else {
                // Phase 2: lb.process_burst(now, packets, verdicts) sets each slot's action.
                self.ring.flush(&self.dev);
            }
            self.service_control();
            if self.last_publish.elapsed() >= METRICS_EVERY {
                self.publish();
            }
        }
        Ok(())
    }

    /// Answers the control requests that arrived since the last burst.
    fn service_control(&mut self) {
        while let Ok(pending) = self.control.try_recv() {
            log::info!(
                "control request {:?} not applied: not wired yet",
                pending.request.args
            );
            // Phase 2 replaces this with parse_args + Balancer::apply / listings.
            pending.respond(Reply::error(
                1,
                "lb-tun: control commands are not wired to the balancer yet; nothing was applied\n",
            ));
        }
    }

    fn publish(&mut self) {
        self.snapshot
            .publish(format_metrics(self.ring.stats(), self.started.elapsed()));
        self.last_publish = Instant::now();
    }
}

/// The gateway's own counters in Prometheus text format (the IPVS metrics come in phase 2).
fn format_metrics(s: &RingStats, uptime: Duration) -> String {
    let mut out = String::new();
    let mut counter = |name: &str, help: &str, v: u64| {
        out.push_str(&format!(
            "# HELP lbtun_{name} {help}\n# TYPE lbtun_{name} counter\nlbtun_{name} {v}\n"
        ));
    };
    counter("bursts_total", "Bursts read from the TUN device.", s.bursts);
    counter(
        "rx_packets_total",
        "Packets read from the TUN device.",
        s.rx_packets,
    );
    counter(
        "rx_truncated_total",
        "Packets too big for a buffer, dropped.",
        s.rx_truncated,
    );
    counter(
        "tx_packets_total",
        "Packets written to the TUN device.",
        s.tx_packets,
    );
    counter(
        "tx_errors_total",
        "Packets the TUN device refused, dropped.",
        s.tx_errors,
    );
    out.push_str(&format!(
        "# HELP lbtun_uptime_seconds Seconds since the gateway started.\n# TYPE lbtun_uptime_seconds gauge\nlbtun_uptime_seconds {}\n",
        uptime.as_secs()
    ));
    out
}

/// Reads the config file; phase 1 only counts its commands (it does not apply them).
fn read_config(path: &std::path::Path) -> Result<usize, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read config {}: {e}", path.display()))?;
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .count())
}

fn main() -> ExitCode {
    let args = Args::parse();
    let level = match args.verbose {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(level)).init();

    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        if let Err(e) = signal_hook::flag::register(sig, Arc::clone(&stop)) {
            log::error!("cannot install signal handler: {e}");
            return ExitCode::FAILURE;
        }
    }
    if let Some(path) = &args.config {
        match read_config(path) {
            Ok(n) => log::warn!(
                "config {}: {n} commands read but NOT applied (balancer not wired yet)",
                path.display()
            ),
            Err(e) => {
                log::error!("{e}");
                return ExitCode::FAILURE;
            }
        }
    }
    log::debug!(
        "connection table capacity {} (used once the balancer is wired)",
        args.conns
    );
    let dev = match TunDevice::open(&args.tun) {
        Ok(d) => d,
        Err(e) => {
            log::error!("cannot open TUN device {}: {e}", args.tun);
            return ExitCode::FAILURE;
        }
    };
    let (control, control_rx) = match ControlServer::start(&args.control) {
        Ok(x) => x,
        Err(e) => {
            log::error!("control socket {}: {e}", args.control.display());
            return ExitCode::FAILURE;
        }
    };
    let snapshot = MetricsSnapshot::new();
    let metrics = match &args.metrics {
        Some(addr) => match MetricsServer::start(addr.as_str(), snapshot.clone()) {
            Ok(m) => {
                log::info!("metrics on http://{}/metrics", m.local_addr());
                Some(m)
            }
            Err(e) => {
                log::error!("metrics on {addr}: {e}");
                return ExitCode::FAILURE;
            }
        },
        None => None,
    };
    log::info!(
        "lb-tun on {} (control {}): PASS-THROUGH ONLY, the balancer is not wired yet",
        dev.name(),
        control.path().display()
    );
    let mut gw = Gateway {
        dev,
        ring: PacketRing::new(args.burst, DEFAULT_BUF_SIZE),
        control: control_rx,
        snapshot,
        last_publish: Instant::now(),
        started: Instant::now(),
    };
    let result = gw.run(&stop);
    let s = gw.ring.stats();
    log::info!(
        "exit: bursts {} rx {} tx {} tx_errors {}",
        s.bursts,
        s.rx_packets,
        s.tx_packets,
        s.tx_errors
    );
    drop(metrics);
    drop(control); // removes the socket
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("TUN device failed: {e}");
            ExitCode::FAILURE
        }
    }
}
