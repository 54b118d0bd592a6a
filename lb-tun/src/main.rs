//! `lb-tun`: the Linux demo gateway. It owns a TUN device (or a TAP device, `--tap`: see
//! [`lb_tun::tap`]), the control socket and the metrics endpoint, and moves packets between the
//! device and lb-core's balancer a burst at a time:
//! read a burst into the ring, run `Balancer::process_burst` over it, write back what the
//! verdicts say (see [`lb_tun::gateway`]). Control requests and timers are handled between
//! bursts by this one owner of the balancer (see `docs/architecture.md`).
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex, MutexGuard, TryLockError};
use std::time::{Duration, Instant};

use clap::Parser;
use lb_tun::announce::{self, Announcer};
use lb_tun::control::{ControlServer, Pending, Reply, DEFAULT_CONTROL_PATH};
use lb_tun::gateway::{os_random, parse_batch, Gateway};
use lb_tun::metrics::{MetricsServer, MetricsSnapshot};
use lb_tun::steer::{Rebalancer, Steering, REBALANCE_EVERY};
use lb_tun::tap::{Device, TapConfig, TapDevice};
use lb_tun::tun::{
    PacketRing, RingStats, SharedRingStats, TunDevice, TunQueue, DEFAULT_BUF_SIZE, DEFAULT_BURST,
    OFFLOAD_BUF_SIZE,
};

/// How long the loop waits for the TUN device at most when no packet waits: bounds the latency of
/// control requests.
const POLL_TIMEOUT: Duration = Duration::from_millis(50);
/// How often the loop republishes the metrics snapshot.
const METRICS_EVERY: Duration = Duration::from_secs(1);
/// How often `--announce` compares the routes with what the gateway can serve, when no
/// control request changed the configuration (health checks change it between).
const ANNOUNCE_EVERY: Duration = Duration::from_millis(100);
/// How often a drain counts the flows left.
const DRAIN_CHECK_EVERY: Duration = Duration::from_millis(200);

/// The userspace IPVS gateway on a TUN device (NAT) or a TAP device (NAT and direct routing),
/// configured in ipvsadm's language.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// TUN device to create or attach to (e.g. lb0); route the VIPs and the real servers'
    /// replies into it (see README-routing.md). NAT only: -g needs --tap.
    #[arg(long, value_name = "NAME", required_unless_present_any = ["tap", "check"])]
    tun: Option<String>,
    /// TAP device to create or attach to instead of a TUN device: lb-tun is then a host on
    /// that Ethernet link (ARP/NDP answered for the VIPs and its --address, next hops resolved
    /// by ARP/NDP) and carries direct routing (-g) as well as NAT (README "Direct routing").
    #[arg(long, value_name = "NAME", conflicts_with = "tun")]
    tap: Option<String>,
    /// lb-tun's own address on the TAP link with its subnet (repeatable, e.g. one IPv4 and
    /// one IPv6): answered to ARP/NDP, the source of its requests; the subnets are on the link.
    #[arg(long, value_name = "ADDR/PREFIX", requires = "tap")]
    address: Vec<String>,
    /// Router for destinations in no --address subnet (repeatable: one per family).
    #[arg(long, value_name = "ADDR", requires = "tap")]
    gateway: Vec<std::net::IpAddr>,
    /// lb-tun's hardware address on the TAP link (default: a random locally administered
    /// one). Not the TAP interface's own address, which is the host's end of the wire.
    #[arg(long, value_name = "MAC", requires = "tap")]
    mac: Option<String>,
    /// File of ipvsadm commands (`ipvsadm-save -n` output, one per line) applied at start;
    /// the gateway refuses to start if any line is wrong.
    #[arg(long)]
    config: Option<PathBuf>,
    /// keepalived.conf whose virtual_server sections are applied at start (with its includes;
    /// global_defs and vrrp_* blocks are skipped). May be combined with --config; the gateway
    /// refuses to start if either is wrong. Its TCP_CHECK and HTTP_GET checkers run from
    /// --probe-source.
    #[arg(long, value_name = "FILE")]
    keepalived: Option<PathBuf>,
    /// Source address of the health probes (repeatable: one IPv4 and/or one IPv6); required
    /// when a checker is configured. Route it into the TUN device (README "Host routing"):
    /// the replies to the probes are read from the TUN device.
    #[arg(long = "probe-source", value_name = "ADDR")]
    probe_source: Vec<std::net::IpAddr>,
    /// Passive health signals (beyond keepalived) on every virtual server with a checked real
    /// server: forwarded SYNs refused or unanswered trigger a probe or take the server DOWN.
    /// SPEC: refused=N,unanswered=N,syn-deadline=SECONDS,action=probe|down,max-down=PERCENT,
    /// each optional (defaults 3, 10, 3, probe, 50).
    #[arg(long, value_name = "SPEC", num_args = 0..=1, default_missing_value = "")]
    passive: Option<String>,
    /// Outer source address of tunnelled packets (`-i` real servers; repeatable: one IPv4
    /// and/or one IPv6). Route it into the TUN device, as --probe-source: the kernel forwards
    /// the tunnelled packets lb-tun writes, so the address must not be one of the host's own
    /// (it would be a martian), and what the path sends back to it comes back to lb-tun.
    #[arg(long = "tunnel-source", value_name = "ADDR")]
    tunnel_source: Vec<std::net::IpAddr>,
    /// MTU of the path to the real servers for DR and tunnels: a packet with DF that does not
    /// fit once encapsulated is answered with ICMP "fragmentation needed" (IPv6: "packet too
    /// big") carrying the MTU left, as the kernel does; 0 = no check.
    #[arg(long = "path-mtu", value_name = "BYTES", default_value_t = 1500)]
    path_mtu: u16,
    /// Unix socket for lbadm.
    #[arg(long, default_value = DEFAULT_CONTROL_PATH)]
    control: PathBuf,
    /// Capacity of the connection table (entries, 64 bytes each plus the index).
    #[arg(long, default_value_t = 1 << 20)]
    conns: usize,
    /// Serve Prometheus metrics at http://ADDR:PORT/metrics.
    #[arg(long, value_name = "ADDR:PORT")]
    metrics: Option<String>,
    /// Packets per burst (buffers in the ring).
    #[arg(long, default_value_t = DEFAULT_BURST)]
    burst: usize,
    /// Queues of the TUN device (`IFF_MULTI_QUEUE`), one packet thread each, all sharing the
    /// one balancer (README "Queues"). Default: the number of online CPUs; 1 on a TAP
    /// device, which has one queue. An existing device must have been created with
    /// `multi_queue` for more than one (without --queues, lb-tun then falls back to one).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=256))]
    queues: Option<u16>,
    /// Take no offloads from the TUN device: every packet is read and written whole, one
    /// MTU-sized packet with its checksums done at a time. By default the device hands over
    /// TCP segments of up to 64 KB with their checksums left to the device (TSO, checksum
    /// offload; README "Offloads"), which lb-tun rewrites once per segment.
    #[arg(long = "no-offload")]
    no_offload: bool,
    /// With more than one queue, leave every connection on the queue the kernel's hash gives
    /// it. By default lb-tun moves connections off a queue that carries over a quarter more
    /// than its share, by writing their packets on another queue (lb-tun README, "Steering").
    #[arg(long = "no-steer")]
    no_steer: bool,
    /// Test aid: every connection's bucket starts pinned to queue N (scripts/test-e2e.sh
    /// offload), so the rebalancing must spread them.
    #[arg(long, value_name = "N", hide = true, conflicts_with = "no_steer")]
    steer_start_queue: Option<usize>,
    /// Keep the connection table across restarts: load FILE at start (if it exists) and write
    /// it on SIGTERM/SIGINT and on `lbadm --save-state` (to FILE.tmp, then renamed).
    #[arg(long, value_name = "FILE")]
    state: Option<PathBuf>,
    /// Own a host route for each VIP on the TUN device, present while the gateway can serve
    /// it (a real server with weight above 0, after its health checks if any): a routing
    /// daemon (BIRD) exports those routes by their protocol number (README "Several
    /// gateways"). Brings the device up. Let lb-tun create the device, so the routes go with
    /// it if the process dies. With --tun only.
    #[arg(long, conflicts_with = "tap")]
    announce: bool,
    /// Protocol number of the announced routes (--announce); 77 is the held routes'.
    #[arg(long, value_name = "N", default_value_t = announce::DEFAULT_PROTO, requires = "announce")]
    announce_proto: u8,
    /// Check the --config and --keepalived files, print the result as -S would, and exit (no
    /// TUN device needed).
    #[arg(long)]
    check: bool,
    /// More logging (-v debug, -vv trace); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count)]
    verbose: u8,
}

/// The balancer's clock: milliseconds since the gateway started.
#[derive(Clone, Copy)]
struct Clock(Instant);

impl Clock {
    fn now(&self) -> lb_core::Instant {
        self.at(Instant::now())
    }

    /// The balancer's time at `t` (the start, if `t` is before it).
    fn at(&self, t: Instant) -> lb_core::Instant {
        let ms = u64::try_from(t.saturating_duration_since(self.0).as_millis()).unwrap_or(u64::MAX);
        lb_core::Instant::from_millis(ms)
    }
}

/// The gateway, shared by the packet threads: each takes the lock for lb-core's work on one
/// burst (tens of nanoseconds a packet) and does its device I/O (microseconds a packet)
/// without it.
type SharedGateway = Arc<Shared>;

/// The gateway and how often a thread found its lock taken.
struct Shared {
    gw: Mutex<Gateway>,
    /// Times a thread had to wait for the lock (`tun.lock_waits` in `--stats-gateway`).
    waits: AtomicU64,
}

/// Takes the gateway's lock, counting a wait when another thread holds it. A packet thread
/// that panicked while holding it left the balancer half-updated: the gateway stops rather
/// than go on with it.
fn lock(shared: &SharedGateway) -> MutexGuard<'_, Gateway> {
    let held = "a packet thread panicked while holding the gateway";
    match shared.gw.try_lock() {
        Ok(g) => g,
        Err(TryLockError::WouldBlock) => {
            shared.waits.fetch_add(1, Ordering::Relaxed);
            shared.gw.lock().expect(held)
        }
        Err(TryLockError::Poisoned(_)) => panic!("{held}"),
    }
}

/// Everything the main packet loop owns: queue 0 of the device, the control requests, the
/// timers, the metrics and the routes.
struct Loop {
    dev: Device,
    ring: PacketRing,
    gw: SharedGateway,
    /// The other queues' counters, as their threads publish them.
    queues: Vec<Arc<SharedRingStats>>,
    /// `--queues` above 1 without `--no-steer`: the placement of connections on the queues,
    /// and every queue's write handle.
    steer: Option<Steer>,
    /// The rebalancing rounds' state (with `steer`), and when the last one ran.
    rebalancer: Rebalancer,
    last_round: Instant,
    clock: Clock,
    control: mpsc::Receiver<Pending>,
    snapshot: MetricsSnapshot,
    last_publish: Instant,
    /// `--announce`'s routes.
    announcer: Option<Announcer>,
    last_announce: Instant,
    /// The last error changing the routes, logged once (they are retried every 100 ms).
    announce_error: Option<String>,
    /// Set by `lbadm --drain-gateway`: when the drain gives up waiting for the flows.
    drain_until: Option<Instant>,
    last_drain_check: Instant,
}

impl Loop {
    /// Runs until `stop` is set (SIGINT/SIGTERM), a drain ends or the device fails.
    fn run(&mut self, stop: &AtomicBool) -> std::io::Result<()> {
        self.publish();
        self.announce();
        while !stop.load(Ordering::Relaxed) {
            let n = self.ring.fill(&self.dev)?;
            // One clock read per turn, two when it slept: the checks below all use `wall`.
            let mut wall = Instant::now();
            if n == 0 {
                let wait = lock(&self.gw)
                    .timer_budget(self.clock.at(wall))
                    .min(POLL_TIMEOUT);
                self.dev.wait_readable(wait)?;
                wall = Instant::now();
            } else {
                lock(&self.gw).process_ring(self.clock.at(wall), &mut self.ring);
                match &self.steer {
                    Some(st) => st.flush(&mut self.ring, 0),
                    None => {
                        self.ring.flush(&self.dev);
                    }
                }
            }
            let now = self.clock.at(wall);
            if let Some(st) = &self.steer {
                // A rebalancing round when one is due (steer.rs logs each move).
                if wall.saturating_duration_since(self.last_round) >= REBALANCE_EVERY {
                    self.last_round = wall;
                    st.steering.rebalance(&mut self.rebalancer);
                }
            }
            let probes = {
                let mut gw = lock(&self.gw);
                gw.run_timers(now);
                gw.take_probe_packets()
            };
            self.dev.run_timers();
            for p in probes {
                if let Err(e) = lb_tun::tun::PacketIo::send(&self.dev, &p) {
                    log::debug!("probe packet not written: {e}");
                }
            }
            let mut changed = false;
            while let Ok(pending) = self.control.try_recv() {
                if let Some(req) = lb_tun::drain::parse(&pending.request.args) {
                    let reply = self.start_drain(req);
                    log::debug!(
                        "control {:?}: status {}",
                        pending.request.args,
                        reply.status
                    );
                    pending.respond(reply);
                    continue;
                }
                let ring = self.ring_stats();
                let mut reply = lock(&self.gw).control(now, &pending.request, &ring);
                if reply.status == 0 && pending.request.args == ["--stats-gateway"] {
                    reply.text.push_str(&self.queue_text());
                    reply.text.push_str(&self.dev.stats_text());
                }
                changed = true;
                log::debug!(
                    "control {:?}: status {}",
                    pending.request.args,
                    reply.status
                );
                pending.respond(reply);
            }
            if changed {
                self.dev.set_answered(answered(&lock(&self.gw)));
            }
            if changed || wall.saturating_duration_since(self.last_announce) >= ANNOUNCE_EVERY {
                self.announce();
            }
            if self.drain_over(now) {
                break;
            }
            if wall.saturating_duration_since(self.last_publish) >= METRICS_EVERY {
                self.publish();
            }
        }
        Ok(())
    }

    /// `--announce`: routes for what the gateway can serve now (none while draining), held
    /// routes for every VIP configured.
    fn announce(&mut self) {
        self.last_announce = Instant::now();
        let Some(a) = &mut self.announcer else {
            return;
        };
        let gw = lock(&self.gw);
        let lb = gw.balancer();
        let want = if self.drain_until.is_some() {
            Default::default()
        } else {
            announce::served_vips(lb)
        };
        match a.sync(&want, &announce::configured_vips(lb)) {
            Ok(c) => {
                for vip in c.added {
                    log::info!("announce: {vip} announced");
                }
                for vip in c.removed {
                    log::info!("announce: {vip} withdrawn");
                }
                if self.announce_error.take().is_some() {
                    log::info!("announce: routes as wanted again");
                }
            }
            Err(e) => {
                let e = e.to_string();
                if self.announce_error.as_ref() != Some(&e) {
                    log::error!("announce: routes not all changed (retried every 100 ms): {e}");
                    self.announce_error = Some(e);
                }
            }
        }
    }

    /// `lbadm --drain-gateway`: withdraw the routes, keep forwarding, exit once the flows end.
    fn start_drain(&mut self, req: Result<lb_tun::drain::DrainRequest, String>) -> Reply {
        let req = match req {
            Ok(r) => r,
            Err(e) => return Reply::error(2, e),
        };
        let mut text = String::new();
        if let Some(a) = &mut self.announcer {
            let was: Vec<_> = a.announced().iter().copied().collect();
            match a.withdraw() {
                Ok(_) => text.push_str(&format!("routes withdrawn: {}\n", join(&was))),
                Err(e) => return Reply::error(1, format!("lbadm: routes not withdrawn: {e}\n")),
            }
        } else {
            text.push_str("no routes to withdraw (the gateway runs without --announce)\n");
        }
        self.drain_until = Some(Instant::now() + req.timeout);
        let flows = lb_tun::drain::live_flows(lock(&self.gw).balancer(), self.clock.now());
        text.push_str(&format!(
            "draining: {flows} flows; the gateway exits when they end or in {} s\n",
            req.timeout.as_secs()
        ));
        log::info!("{}", text.trim_end().replace('\n', "; "));
        Reply::ok(text)
    }

    /// Whether a drain is over: no flow left, or its timeout passed.
    fn drain_over(&mut self, now: lb_core::Instant) -> bool {
        let Some(until) = self.drain_until else {
            return false;
        };
        if self.last_drain_check.elapsed() < DRAIN_CHECK_EVERY {
            return false;
        }
        self.last_drain_check = Instant::now();
        let flows = lb_tun::drain::live_flows(lock(&self.gw).balancer(), now);
        if flows == 0 {
            log::info!("drain: no flow left, exiting");
            return true;
        }
        if Instant::now() >= until {
            log::info!("drain: timeout with {flows} flows left, exiting");
            return true;
        }
        false
    }

    fn publish(&mut self) {
        let ring = self.ring_stats();
        let gw = lock(&self.gw);
        let mut text = lb_tun::prom::format(
            gw.balancer(),
            &ring,
            gw.stats(),
            self.clock.0.elapsed().as_secs(),
        );
        if let Some(p) = gw.probes() {
            text.push_str(&lb_tun::prom::format_health(gw.balancer(), p));
        }
        drop(gw);
        let queues: Vec<RingStats> = std::iter::once(*self.ring.stats())
            .chain(self.queues.iter().map(|q| q.load()))
            .collect();
        text.push_str(&lb_tun::prom::format_queues(
            &queues,
            self.gw.waits.load(Ordering::Relaxed),
            self.steer.as_ref().map(|st| st.steering.moves()),
        ));
        self.snapshot.publish(text);
        self.last_publish = Instant::now();
    }

    /// Every queue's ring counters together.
    fn ring_stats(&self) -> RingStats {
        self.queues
            .iter()
            .fold(*self.ring.stats(), |sum, q| sum.plus(&q.load()))
    }

    /// `tun.queues` and each queue's packets, for `--stats-gateway`.
    fn queue_text(&self) -> String {
        let mut out = format!(
            "tun.queues {}\ntun.lock_waits {}\n",
            1 + self.queues.len(),
            self.gw.waits.load(Ordering::Relaxed)
        );
        if let Some(st) = &self.steer {
            out.push_str(&format!("tun.steer_moves {}\n", st.steering.moves()));
        }
        let per = std::iter::once(*self.ring.stats()).chain(self.queues.iter().map(|q| q.load()));
        for (i, s) in per.enumerate() {
            out.push_str(&format!(
                "tun.queue.{i}.rx_packets {}\ntun.queue.{i}.rx_bytes {}\ntun.queue.{i}.tx_packets {}\n",
                s.rx_packets, s.rx_bytes, s.tx_packets
            ));
        }
        out
    }
}

/// A packet thread of queue 1, 2, ...: reads a burst from its queue, runs it through the shared
/// gateway under its lock, writes it back (each packet on the queue steering names, if on),
/// until `quit` is set or its queue fails (which stops the whole gateway through `stop`).
struct QueueThread {
    /// The queue's index (1, 2, ...; the main loop has 0).
    me: usize,
    dev: TunDevice,
    ring: PacketRing,
    gw: SharedGateway,
    steer: Option<Steer>,
    clock: Clock,
    published: Arc<SharedRingStats>,
    quit: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
}

impl QueueThread {
    fn run(mut self) {
        if let Err(e) = self.turns() {
            log::error!("a queue of {} failed: {e}; stopping", self.dev.name());
            self.stop.store(true, Ordering::Relaxed);
        }
        self.published.store(self.ring.stats());
    }

    fn turns(&mut self) -> std::io::Result<()> {
        while !self.quit.load(Ordering::Relaxed) {
            if self.ring.fill(&self.dev)? == 0 {
                self.dev.wait_readable(POLL_TIMEOUT)?;
                continue;
            }
            lock(&self.gw).process_ring(self.clock.now(), &mut self.ring);
            match &self.steer {
                Some(st) => st.flush(&mut self.ring, self.me),
                None => {
                    self.ring.flush(&self.dev);
                }
            }
            self.published.store(self.ring.stats());
        }
        Ok(())
    }
}

/// Steering over the TUN device's queues (`lb_tun::steer`): the shared placement, every
/// queue's write handle, and (the main loop's copy) the rebalancing rounds.
#[derive(Clone)]
struct Steer {
    steering: Arc<Steering>,
    writers: Arc<[TunQueue]>,
}

impl Steer {
    /// Writes the ring's packets, each forwarded one on the queue its bucket is pinned to, if
    /// it is (counted as queue `me`'s load), the rest on `me`, the writing thread's queue.
    fn flush(&self, ring: &mut PacketRing, me: usize) {
        ring.flush_to(|tag, len| {
            let q = tag.map_or(me, |t| self.steering.count(me, t, len));
            &self.writers[q]
        });
    }
}

/// The addresses a TAP link answers besides lb-tun's own: the VIPs, the probe sources and the
/// tunnel sources (the servers' ICMP errors about tunnelled packets come back to them).
fn answered(gw: &Gateway) -> Vec<std::net::IpAddr> {
    let mut v = lb_tun::tap::vips(gw.balancer());
    if let Some(p) = gw.probes() {
        v.extend_from_slice(p.sources());
    }
    let st = gw.balancer().settings();
    v.extend(st.tunnel_source_v4.map(std::net::IpAddr::V4));
    v.extend(st.tunnel_source_v6.map(std::net::IpAddr::V6));
    v
}

/// Opens the TUN device's queues: `asked` (`--queues`), else one per online CPU, falling back
/// to one queue when the device exists as a single-queue device and `--queues` was not given.
fn open_tun_queues(
    name: &str,
    asked: Option<u16>,
    offload: bool,
) -> Result<Vec<TunDevice>, String> {
    let want = asked.map(usize::from).unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    match TunDevice::open_queues(name, want, offload) {
        Ok(q) => Ok(q),
        Err(e) if asked.is_none() && want > 1 => {
            log::warn!(
                "cannot open {want} queues of {name} ({e}): one queue (a persistent device \
                 created without multi_queue?)"
            );
            TunDevice::open_queues(name, 1, offload)
                .map_err(|e| format!("cannot open TUN device {name}: {e}"))
        }
        Err(e) => Err(format!(
            "cannot open {want} queue{} of TUN device {name}: {e}{}",
            if want == 1 { "" } else { "s" },
            if want > 1 {
                " (an existing device needs multi_queue: ip tuntap add dev NAME mode tun multi_queue)"
            } else {
                ""
            }
        )),
    }
}

/// The TAP link's configuration from `--mac`, `--address` and `--gateway`; `None` on a TUN
/// device, which takes none of them (clap's `requires` does not see `--tap` missing once
/// `--tun`, which conflicts with it, is given).
fn tap_config(args: &Args) -> Result<Option<TapConfig>, String> {
    if args.tap.is_none() {
        if !args.address.is_empty() || !args.gateway.is_empty() || args.mac.is_some() {
            return Err("--address, --gateway and --mac configure a TAP device: \
                        give --tap NAME, or leave them out with --tun"
                .into());
        }
        return Ok(None);
    }
    let mac = match &args.mac {
        Some(m) => lb_tun::tap::parse_mac(m)?,
        None => {
            let mut b = [0u8; 6];
            getrandom::fill(&mut b).map_err(|e| format!("no random bytes for a MAC: {e}"))?;
            lb_tun::tap::local_mac(b)
        }
    };
    TapConfig::new(mac, &args.address, &args.gateway).map(Some)
}

/// Addresses, comma-separated ("none" for none).
fn join(vips: &[std::net::IpAddr]) -> String {
    if vips.is_empty() {
        return "none".into();
    }
    vips.iter()
        .map(|v| v.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Applies `--config` and `--keepalived`, all or nothing: both are read and parsed, then
/// applied together through one dry run. Notices are logged at info, what is parsed but not
/// acted upon at warn. Returns how many real servers use NAT (for `--announce`'s warning).
fn load_config(gw: &mut Gateway, now: lb_core::Instant, args: &Args) -> Result<usize, String> {
    let mut items = Vec::new();
    let mut sources = Vec::new();
    let mut health = lb_tun::keepalived::HealthPlan::default();
    if let Some(path) = &args.config {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read config {}: {e}", path.display()))?;
        let source = path.display().to_string();
        items.extend(parse_batch(&source, &text).map_err(|e| e.0)?);
        sources.push(source);
    }
    if let Some(path) = &args.keepalived {
        let loaded = lb_tun::keepalived::load(path)?;
        for n in &loaded.notices {
            log::info!("{n}");
        }
        if let Some(w) = loaded.not_run() {
            log::warn!("{}: {w}", path.display());
        }
        items.extend(loaded.items);
        health = loaded.health;
        if let Some(spec) = &args.passive {
            let p = lb_tun::health::parse_passive(spec)?;
            let checked: Vec<lb_core::ServiceKey> =
                health.checks.iter().map(|c| c.service).collect();
            for (_, key, policy) in health.services.iter_mut() {
                if checked.contains(key) {
                    policy.passive = Some(p);
                }
            }
        }
        sources.push(path.display().to_string());
    }
    if !args.probe_source.is_empty() {
        gw.enable_probes(now, &args.probe_source)?;
    }
    if sources.is_empty() {
        return Ok(0);
    }
    let source = sources.join(" and ");
    let n = gw.apply_items(now, &source, &items).map_err(|e| e.0)?;
    log::info!("config {source}: {n} commands applied");
    gw.apply_health(now, &health)?;
    if !health.checks.is_empty() {
        log::info!(
            "health: {} real servers checked from {}",
            health.checks.len(),
            args.probe_source
                .iter()
                .map(|a| a.to_string())
                .collect::<Vec<_>>()
                .join(" and ")
        );
    }
    Ok(announce::nat_servers(items.iter().map(|i| &i.cmd)))
}

/// Loads the `--state` snapshot, if the file exists. A damaged or foreign file is kept aside
/// as FILE.bad and the gateway starts with an empty table (it serves new connections rather
/// than not at all).
fn load_state(gw: &mut Gateway, now: lb_core::Instant, path: &std::path::Path) {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            log::info!("state {}: no file yet, starting empty", path.display());
            return;
        }
        Err(e) => {
            log::error!("state {}: cannot read: {e}; starting empty", path.display());
            return;
        }
    };
    let started = Instant::now();
    match gw.import_state(now, &bytes) {
        Ok(r) => log::info!(
            "state {}: {} entries restored, {} updated, {} ignored; dropped: {} no service, \
             {} no real server, {} table full ({:.1} ms)",
            path.display(),
            r.created,
            r.updated,
            r.ignored,
            r.no_service,
            r.no_server,
            r.table_full,
            started.elapsed().as_secs_f64() * 1e3
        ),
        Err(e) => {
            let mut bad = path.as_os_str().to_owned();
            bad.push(".bad");
            let kept = std::fs::rename(path, &bad).is_ok();
            log::error!(
                "state {}: {e}; nothing restored{}",
                path.display(),
                if kept { " (file kept as .bad)" } else { "" }
            );
        }
    }
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
    let (seed, secret) = match os_random() {
        Ok(x) => x,
        Err(e) => {
            log::error!("cannot get random bytes from the OS: {e}");
            return ExitCode::FAILURE;
        }
    };
    let clock = Clock(Instant::now());
    let mut gw = Gateway::new(args.conns, seed, secret, clock.now());
    if let Err(e) = gw.set_tunnel(&args.tunnel_source, args.path_mtu) {
        log::error!("{e}");
        return ExitCode::FAILURE;
    }
    let tap = match tap_config(&args) {
        Ok(t) => t,
        Err(e) => {
            log::error!("{e}");
            return ExitCode::FAILURE;
        }
    };
    if tap.is_some() {
        gw.enable_direct_routing();
    }
    let nat = match load_config(&mut gw, clock.now(), &args) {
        Ok(nat) => nat,
        Err(e) => {
            log::error!("config not applied: {e}");
            return ExitCode::FAILURE;
        }
    };
    if args.check {
        print!("{}", gw.save());
        return ExitCode::SUCCESS;
    }
    if let Some(path) = &args.state {
        load_state(&mut gw, clock.now(), path);
        gw.set_state_path(path.clone());
    }
    let existed = args
        .tun
        .as_ref()
        .is_some_and(|t| std::path::Path::new("/sys/class/net").join(t).exists());
    let opened = match (&args.tap, &tap, &args.tun) {
        (Some(_), _, _) if args.queues.is_some_and(|q| q > 1) => {
            Err("--queues: a TAP device has one queue; more are for --tun".to_string())
        }
        (Some(name), Some(cfg), _) => TapDevice::open(name, cfg)
            .map(|d| (Device::Tap(Box::new(d)), Vec::new()))
            .map_err(|e| format!("cannot open TAP device {name}: {e}")),
        (_, _, Some(name)) => open_tun_queues(name, args.queues, !args.no_offload).map(|mut q| {
            let first = q.remove(0);
            (Device::Tun(first), q)
        }),
        _ => Err("give --tun NAME or --tap NAME".to_string()),
    };
    let (dev, more_queues) = match opened {
        Ok(d) => d,
        Err(e) => {
            log::error!("{e}");
            return ExitCode::FAILURE;
        }
    };
    // Offloaded packets are up to 64 KB.
    let buf_size = match &dev {
        Device::Tun(t) if t.offload() => OFFLOAD_BUF_SIZE,
        _ => DEFAULT_BUF_SIZE,
    };
    dev.set_answered(answered(&gw));
    let announcer = if args.announce {
        if args.announce_proto == announce::HELD_PROTO {
            log::error!(
                "--announce-proto {} is the held routes' protocol number",
                announce::HELD_PROTO
            );
            return ExitCode::FAILURE;
        }
        if existed {
            log::warn!(
                "announce: {} existed before lb-tun (a persistent device?): if lb-tun dies, the \
                 device and its routes stay; let lb-tun create it",
                dev.name()
            );
        }
        if nat > 0 {
            log::warn!(
                "announce: {nat} real servers use NAT (-m): their replies must come back \
                 through the gateway that holds the connection, which ECMP over several \
                 gateways does not ensure (README \"NAT in a cluster\")"
            );
        }
        match Announcer::open(dev.name(), args.announce_proto) {
            Ok(a) => Some(a),
            Err(e) => {
                log::error!("announce: cannot manage routes on {}: {e}", dev.name());
                return ExitCode::FAILURE;
            }
        }
    } else {
        None
    };
    if let Some(cfg) = &tap {
        log::info!(
            "TAP link: hardware address {}, addresses {}{}; direct routing (-g) on",
            cfg.mac,
            cfg.addresses
                .iter()
                .map(|c| c.to_string())
                .collect::<Vec<_>>()
                .join(", "),
            cfg.gateways
                .iter()
                .map(|g| format!(", gateway {g}"))
                .collect::<String>()
        );
    }
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
        "lb-tun on {} ({} queue{}{}, control {}, connection table {} entries)",
        dev.name(),
        1 + more_queues.len(),
        if more_queues.is_empty() { "" } else { "s" },
        if buf_size == OFFLOAD_BUF_SIZE {
            ", offloads on"
        } else {
            ""
        },
        control.path().display(),
        gw.balancer().capacity()
    );
    let gw: SharedGateway = Arc::new(Shared {
        gw: Mutex::new(gw),
        waits: AtomicU64::new(0),
    });
    let quit = Arc::new(AtomicBool::new(false));
    let steer = match &dev {
        Device::Tun(first) if !more_queues.is_empty() && !args.no_steer => {
            let writers: Arc<[TunQueue]> = std::iter::once(first.queue())
                .chain(more_queues.iter().map(TunDevice::queue))
                .collect();
            // Its own key: the buckets say nothing about the connection table's.
            let key = match os_random() {
                Ok((k, _)) => k,
                Err(e) => {
                    log::error!("cannot get random bytes from the OS: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let mut steering = Steering::new(writers.len(), key);
            if let Some(q) = args.steer_start_queue {
                steering = steering.all_on(q);
            }
            lock(&gw).set_steer_key(steering.key());
            Some(Steer {
                steering: Arc::new(steering),
                writers,
            })
        }
        _ => None,
    };
    let mut published = Vec::new();
    let mut threads = Vec::new();
    for (i, q) in more_queues.into_iter().enumerate() {
        let shared = Arc::new(SharedRingStats::default());
        published.push(Arc::clone(&shared));
        let ring = PacketRing::new(args.burst, buf_size);
        let worker = QueueThread {
            me: i + 1,
            dev: q,
            ring,
            gw: Arc::clone(&gw),
            steer: steer.clone(),
            clock,
            published: shared,
            quit: Arc::clone(&quit),
            stop: Arc::clone(&stop),
        };
        let spawned = std::thread::Builder::new()
            .name(format!("queue{}", i + 1))
            .spawn(move || worker.run());
        match spawned {
            Ok(t) => threads.push(t),
            Err(e) => {
                log::error!("cannot start the thread of queue {}: {e}", i + 1);
                return ExitCode::FAILURE;
            }
        }
    }
    let mut lp = Loop {
        dev,
        ring: PacketRing::new(args.burst, buf_size),
        gw,
        queues: published,
        steer,
        rebalancer: Rebalancer::default(),
        last_round: Instant::now(),
        clock,
        control: control_rx,
        snapshot,
        last_publish: Instant::now(),
        announcer,
        last_announce: Instant::now(),
        announce_error: None,
        drain_until: None,
        last_drain_check: Instant::now(),
    };
    let result = lp.run(&stop);
    quit.store(true, Ordering::Relaxed);
    for t in threads {
        if t.join().is_err() {
            log::error!("a queue's packet thread panicked");
        }
    }
    // The routes go first: the routers stop sending here before anything else stops.
    if let Some(a) = lp.announcer.take() {
        drop(a);
        log::info!("announce: routes removed");
    }
    let s = lp.ring_stats();
    let gw = lock(&lp.gw);
    let c = gw.balancer().counters();
    log::info!(
        "exit: rx {} tx {} tx_errors {}; conns created {} reuse reschedules {} syn drops {}",
        s.rx_packets,
        s.tx_packets,
        s.tx_errors,
        c.conns_created,
        c.reuse_reschedules,
        c.syn_drops
    );
    match gw.save_state(lp.clock.now()) {
        Ok(Some(done)) => log::info!("{done}"),
        Ok(None) => {}
        Err(e) => log::error!("cannot write the state file: {e}"),
    }
    drop(metrics);
    drop(control); // removes the socket
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!(
                "{} device failed: {e}",
                if tap.is_some() { "TAP" } else { "TUN" }
            );
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &str) -> Result<Args, String> {
        Args::try_parse_from(std::iter::once("lb-tun").chain(args.split_whitespace()))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn the_clock_counts_milliseconds_from_the_start() {
        let t0 = Instant::now();
        let clock = Clock(t0);
        assert_eq!(clock.at(t0), lb_core::Instant::from_millis(0));
        let later = t0 + Duration::from_micros(1_500_900);
        assert_eq!(clock.at(later), lb_core::Instant::from_millis(1500));
        let before = Clock(later).at(t0);
        assert_eq!(
            before,
            lb_core::Instant::from_millis(0),
            "before the start: the start"
        );
    }

    #[test]
    fn tun_or_tap_with_its_flags() {
        let a = parse("--tun lb0").unwrap();
        assert_eq!((a.tun.as_deref(), a.tap.as_deref()), (Some("lb0"), None));
        let a = parse(
            "--tap lt0 --address 10.0.0.2/24 --address fd00::2/64 --gateway 10.0.0.254 \
             --mac 02:00:00:00:00:01",
        )
        .unwrap();
        assert_eq!(a.tap.as_deref(), Some("lt0"));
        let cfg = tap_config(&a).unwrap().unwrap();
        assert_eq!(cfg.addresses.len(), 2);
        assert_eq!(
            cfg.gateways,
            vec!["10.0.0.254".parse::<std::net::IpAddr>().unwrap()]
        );
        assert_eq!(cfg.mac.0, [2, 0, 0, 0, 0, 1]);
        // Without --mac, a random locally administered one.
        let a = parse("--tap lt0 --address 10.0.0.2/24").unwrap();
        let m = tap_config(&a).unwrap().unwrap().mac;
        assert!(m.is_unicast() && m.0[0] & 2 == 2, "{m}");
        assert!(
            parse("--check --config x").is_ok(),
            "--check needs no device"
        );
        assert_eq!(tap_config(&parse("--tun lb0").unwrap()), Ok(None));
    }

    #[test]
    fn bad_device_flags_are_refused_clearly() {
        for (args, says) in [
            ("", "--tun <NAME>"),
            (
                "--tun lb0 --tap lt0 --address 10.0.0.2/24",
                "cannot be used with",
            ),
            ("--address 10.0.0.2/24", "--tap <NAME>"),
            (
                "--tap lt0 --address 10.0.0.2/24 --gateway 10.0.0",
                "invalid value",
            ),
        ] {
            let e = parse(args).map(|_| ()).unwrap_err();
            assert!(e.contains(says), "{args}: {e}");
        }
        for (args, says) in [
            ("--tap lt0", "--tap needs --address ADDR/PREFIX"),
            ("--tun lb0 --address 10.0.0.2/24", "give --tap NAME"),
            ("--tun lb0 --gateway 10.0.0.1", "give --tap NAME"),
            ("--tun lb0 --mac 02:00:00:00:00:01", "give --tap NAME"),
            ("--tap lt0 --address 10.0.0.2", "want ADDR/PREFIX"),
            (
                "--tap lt0 --address 10.0.0.2/24 --gateway 10.1.0.1",
                "not in the subnet",
            ),
            (
                "--tap lt0 --address 10.0.0.2/24 --mac 01:00:00:00:00:01",
                "not a unicast",
            ),
        ] {
            let e = tap_config(&parse(args).unwrap()).unwrap_err();
            assert!(e.contains(says), "{args}: {e}");
        }
    }

    /// `--announce` owns routes on a TUN device: not with `--tap`; `--announce-proto` only
    /// with it.
    #[test]
    fn announce_goes_with_tun() {
        let a = parse("--tun lb0 --announce").unwrap();
        assert_eq!(
            (a.announce, a.announce_proto),
            (true, announce::DEFAULT_PROTO)
        );
        assert_eq!(
            parse("--tun lb0 --announce --announce-proto 90")
                .unwrap()
                .announce_proto,
            90
        );
        for (args, says) in [
            (
                "--tap lt0 --address 10.0.0.2/24 --announce",
                "cannot be used with",
            ),
            ("--tun lb0 --announce-proto 90", "--announce"),
            ("--tun lb0 --announce --announce-proto 300", "invalid value"),
        ] {
            let e = parse(args).map(|_| ()).unwrap_err();
            assert!(e.contains(says), "{args}: {e}");
        }
    }
}
