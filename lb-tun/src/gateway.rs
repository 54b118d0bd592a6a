//! The gateway's state and logic, apart from its I/O: lb-core's [`Balancer`], the verdict →
//! ring-action mapping of a burst, timers and drained-server events, configuration files and
//! `-R` batches (validated whole before any line is applied), and the answers to `lbadm`
//! requests (`-L`, `-S`, settings, our `--show-settings` and `--stats-gateway`).
//!
//! `main.rs` owns the TUN device, the control socket and the metrics server and calls into a
//! [`Gateway`] between bursts: the packet loop is the balancer's one owner, and configuration
//! changes are applied between bursts, never during one (see `docs/architecture.md`).
//! Everything here runs without privileges, so the unit tests cover it without a TUN device.

use std::collections::HashSet;
use std::fmt::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use lb_core::ipvsadm::{parse_args, parse_line, write_save, Command, Setting};
use lb_core::{
    Balancer, ConfigError, DropReason, Event, ImportReport, Instant, Limits, Packet, Secrets,
    ServerConfig, ServiceConfig, ServiceKey, Settings, TcpTimeouts, Verdict,
};

use crate::control::{Reply, Request};
use crate::prom::FrontendStats;
use crate::tun::{Action, PacketRing, RingStats, Slot, SteerTag, VNET_HDR_LEN};
use lb_core::sync::daemon::SyncRole;

/// How many recent drained-server events `--stats-gateway` remembers.
const RECENT_DRAINED: usize = 16;

/// Why a TUN gateway refuses fwmark services.
pub const FWMARK_REFUSED: &str =
    "firewall-mark services (-f) are not supported: a TUN device carries no firewall mark; use -t or -u";

/// The gateway: a balancer and what the frontend keeps beside it.
pub struct Gateway {
    lb: Balancer<'static>,
    limits: Limits,
    seed: u64,
    /// Every address that was ever a virtual address, and the tunnel sources: a passed packet
    /// to one of them is dropped (the kernel routes it back into the TUN, where it would loop).
    ever_vips: HashSet<IpAddr>,
    verdicts: Vec<Verdict>,
    /// The allocations of a burst's packet list and of its slots' references, empty between
    /// bursts (see [`recycle`]).
    burst: Vec<Packet<'static>>,
    metas: Vec<SlotRefs<'static>>,
    stats: FrontendStats,
    recent_drained: Vec<(ServiceKey, std::net::SocketAddr)>,
    /// Where `--save-state` and the exit write the table (`--state FILE`).
    state_path: Option<PathBuf>,
    /// The sync daemons' sockets.
    sync_io: crate::syncd::SyncIo,
    /// The health probes (`--probe-source`), if any.
    probes: Option<crate::health::Probes>,
    /// A real server is reached by tunnel (`-i`): a 64 KB TCP segment from an offloading
    /// device is cut into packets here before the balancer sees it (an outer header cannot
    /// carry the device's segmentation).
    tunnels: bool,
    /// Software segments of this burst (an arena), and each one's range in it.
    seg_arena: Vec<u8>,
    seg_ranges: Vec<std::ops::Range<usize>>,
    /// One segment as [`crate::offload::segment`] builds it.
    seg_scratch: Vec<u8>,
    /// Steering's hash key (`--queues` above 1): forwarded packets are tagged with their
    /// client's bucket ([`crate::steer`]).
    steer_key: Option<u64>,
}

/// A batch of commands refused: the message names the source, the line and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchError(pub String);

impl std::fmt::Display for BatchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// One command of a batch, with where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchItem {
    /// `FILE:LINE`, printed in front of an error.
    pub at: String,
    /// The text shown under an error (the line as written).
    pub text: String,
    /// The command.
    pub cmd: Command,
}

/// Parses a batch of ipvsadm lines (a `--config` file, `-R` input) into commands, without
/// applying them; `source` names the input in errors (`FILE:LINE: ...`). `-L`, `-S`, `-R`
/// and firewall-mark services are refused.
pub fn parse_batch(source: &str, text: &str) -> Result<Vec<BatchItem>, BatchError> {
    let mut items = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        let here = |what: String| BatchError(format!("{source}:{n}: {what}\n  {}", line.trim()));
        match parse_line(line) {
            Ok(None) => {}
            Ok(Some(Command::List(_) | Command::Save { .. } | Command::Restore)) => {
                return Err(here(
                    "-L, -S and -R are not allowed in a configuration".into(),
                ))
            }
            Ok(Some(cmd)) => {
                if matches!(command_key(&cmd), Some(ServiceKey::Fwmark { .. })) {
                    return Err(here(FWMARK_REFUSED.into()));
                }
                items.push(BatchItem {
                    at: format!("{source}:{n}"),
                    text: line.trim().to_string(),
                    cmd,
                });
            }
            Err(e) => return Err(here(e.to_string())),
        }
    }
    Ok(items)
}

/// 24 bytes of OS randomness (`getrandom(2)`): the director's seed and the connection
/// table's hash secret.
pub fn os_random() -> std::io::Result<(u64, [u8; 16])> {
    let mut b = [0u8; 24];
    getrandom::fill(&mut b)?;
    let mut seed = [0u8; 8];
    seed.copy_from_slice(&b[..8]);
    let mut secret = [0u8; 16];
    secret.copy_from_slice(&b[8..]);
    Ok((u64::from_le_bytes(seed), secret))
}

/// The service key a command names, if any.
fn command_key(cmd: &Command) -> Option<&ServiceKey> {
    match cmd {
        Command::AddService(c) | Command::EditService(c) => Some(&c.key),
        Command::DelService(k)
        | Command::AddServer(k, _)
        | Command::EditServer(k, _)
        | Command::DelServer(k, _) => Some(k),
        Command::Zero(k) => k.as_ref(),
        Command::List(o) => o.service.as_ref(),
        _ => None,
    }
}

/// What a burst keeps of each slot it hands the balancer: where the verdict goes.
type SlotRefs<'r> = (
    &'r mut usize,
    &'r mut Action,
    &'r mut Option<IpAddr>,
    &'r mut [u8; VNET_HDR_LEN],
    &'r mut Option<SteerTag>,
    // The packet's ends' steering buckets as read (source, destination).
    Option<(u8, u8)>,
);

/// `v` emptied, as a list of another lifetime's elements (packets, slot references), in the
/// same allocation: the standard library collects a `Vec`'s own iterator in place when the
/// element layouts match, as they do here (only a lifetime differs), so a burst's lists are
/// allocated once and not once per burst (were that ever not so, this would only allocate
/// again).
// `filter` would keep the element type, and its lifetime is what changes.
#[allow(clippy::unnecessary_filter_map)]
fn recycle<T, U>(mut v: Vec<T>) -> Vec<U> {
    v.clear();
    v.into_iter().filter_map(|_| None).collect()
}

/// A balancer with its own storage. `conns` entries; director storage of `limits`.
fn new_balancer(
    limits: Limits,
    conns: usize,
    seed: u64,
    secret: [u8; 16],
    now: Instant,
) -> Balancer<'static> {
    let secrets = Secrets {
        flow_key: secret,
        sched_seed: seed,
    };
    Balancer::alloc(limits, conns, &secrets, now)
}

impl Gateway {
    /// A gateway with a connection table of `conns` entries, the director's default
    /// [`Limits`], scheduling seed `seed` and table hash secret `secret` (both from the OS,
    /// see [`os_random`]).
    pub fn new(conns: usize, seed: u64, secret: [u8; 16], now: Instant) -> Self {
        Self::with_limits(Limits::default(), conns, seed, secret, now)
    }

    /// As [`Gateway::new`], with explicit director limits.
    pub fn with_limits(
        limits: Limits,
        conns: usize,
        seed: u64,
        secret: [u8; 16],
        now: Instant,
    ) -> Self {
        Gateway {
            lb: new_balancer(limits, conns, seed, secret, now),
            limits,
            seed,
            ever_vips: HashSet::new(),
            verdicts: Vec::new(),
            burst: Vec::new(),
            metas: Vec::new(),
            stats: FrontendStats::default(),
            recent_drained: Vec::new(),
            state_path: None,
            sync_io: crate::syncd::SyncIo::default(),
            probes: None,
            tunnels: false,
            seg_arena: Vec::new(),
            seg_ranges: Vec::new(),
            seg_scratch: Vec::new(),
            steer_key: None,
        }
    }

    /// Tags every packet the balancer forwards from now on with its client's steering bucket
    /// under `key` (the source's for a packet to a real server, the destination's for a reply;
    /// [`Slot::steer`], [`crate::steer`]).
    pub fn set_steer_key(&mut self, key: u64) {
        self.steer_key = Some(key);
    }

    /// Gives the gateway its probe source addresses (`--probe-source`, one IPv4 and/or one
    /// IPv6) and health-check storage: packets to them go to the probes' interface from now
    /// on. Call before [`apply_health`](Self::apply_health).
    pub fn enable_probes(&mut self, now: Instant, sources: &[IpAddr]) -> Result<(), String> {
        let p = crate::health::Probes::new(&mut self.lb, sources, self.seed, now)?;
        self.probes = Some(p);
        Ok(())
    }

    /// Lets the balancer tunnel (`-i`): `sources` are the outer source addresses
    /// (`--tunnel-source`, one IPv4 and/or one IPv6; the host routes them into the TUN device,
    /// as the probe sources, so nothing the path sends back to them loops), `path_mtu` the MTU
    /// toward the real servers (`--path-mtu`). Call before the configuration is applied.
    pub fn set_tunnel(&mut self, sources: &[IpAddr], path_mtu: u16) -> Result<(), String> {
        let mut settings = *self.lb.settings();
        for &a in sources {
            let taken = match a {
                IpAddr::V4(v4) => settings.tunnel_source_v4.replace(v4).is_some(),
                IpAddr::V6(v6) => settings.tunnel_source_v6.replace(v6).is_some(),
            };
            if taken {
                return Err(format!(
                    "--tunnel-source {a}: one address per family (one IPv4, one IPv6)"
                ));
            }
            if a.is_unspecified() || a.is_multicast() {
                return Err(format!("--tunnel-source {a}: not a unicast address"));
            }
            self.ever_vips.insert(a);
        }
        settings.path_mtu = path_mtu;
        self.lb.set_settings(settings);
        Ok(())
    }

    /// The probe side, if `--probe-source` was given.
    pub fn probes(&self) -> Option<&crate::health::Probes> {
        self.probes.as_ref()
    }

    /// Applies a health plan (the keepalived.conf's checkers and virtual-server policies)
    /// after its commands were applied. Error: no probe source, a `bindto` that is not one, or
    /// what lb-core refuses, naming the checker's `FILE:LINE`.
    pub fn apply_health(
        &mut self,
        now: Instant,
        plan: &crate::keepalived::HealthPlan,
    ) -> Result<(), String> {
        if plan.checks.is_empty() && plan.services.is_empty() {
            return Ok(());
        }
        let Some(p) = &self.probes else {
            return Err(format!(
                "{} health checkers are configured but no --probe-source is given: the probes \
                 need a source address the kernel routes into the TUN device (see lb-tun/README.md)",
                plan.checks.len()
            ));
        };
        for c in &plan.checks {
            let addr = c.check.connect_to.unwrap_or(c.server);
            let family_ok = p.sources().iter().any(|s| s.is_ipv4() == addr.is_ipv4());
            if !family_ok {
                return Err(format!(
                    "{}: the check of {} needs an {} --probe-source",
                    c.at,
                    c.server,
                    if addr.is_ipv4() { "IPv4" } else { "IPv6" }
                ));
            }
            if let Some(b) = c.check.bind_to {
                if !p.sources().contains(&b.ip()) {
                    return Err(format!(
                        "{}: bindto {} is not a --probe-source ({})",
                        c.at,
                        b.ip(),
                        p.sources()
                            .iter()
                            .map(|s| s.to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ));
                }
            }
        }
        for (at, key, vsh) in &plan.services {
            self.lb
                .set_virtual_server_health(now, key, vsh)
                .map_err(|e| format!("{at}: {e}"))?;
        }
        for c in &plan.checks {
            self.lb
                .set_health_check(now, &c.service, c.server, &c.check)
                .map_err(|e| format!("{}: {e}", c.at))?;
        }
        self.drain_events();
        Ok(())
    }

    /// The packets the probes sent, to be written to the TUN device.
    pub fn take_probe_packets(&mut self) -> Vec<Vec<u8>> {
        self.probes
            .as_mut()
            .map(|p| p.take_tx().collect())
            .unwrap_or_default()
    }

    /// Lets real servers be added with direct routing (`-g`): for a device that sends each
    /// packet to its next hop's hardware address (`--tap`), whatever the packet's own
    /// destination. Without it `-g` is refused, with a message that says to run with `--tap`.
    pub fn enable_direct_routing(&mut self) {
        let settings = Settings {
            direct_routing: true,
            ..*self.lb.settings()
        };
        self.lb.set_settings(settings);
    }

    /// The balancer (read-only).
    pub fn balancer(&self) -> &Balancer<'static> {
        &self.lb
    }

    /// The frontend's own counters.
    pub fn stats(&self) -> &FrontendStats {
        &self.stats
    }

    // ------------------------------------------------------------------ datapath

    /// Runs the balancer over the packets of `ring` (one burst) and sets each slot's action:
    /// forwarded, passed and generated packets are written back to the device (the forwarded
    /// and generated ones with the verdict's next hop), dropped ones are not, and a passed
    /// packet to a current or former virtual address is dropped (it would loop through the
    /// device). A slot already marked [`Action::Drop`] is left alone. Allocates nothing once
    /// the ring's size of burst was seen (the per-burst lists are kept between bursts).
    ///
    /// Packets from a device with offloads (a non-zero virtio-net header) keep their partial
    /// checksum through the balancer where lb-core can follow it, and their header with it; a
    /// 64 KB TCP segment lb-core cannot forward as one (to a tunnel) is cut into packets here,
    /// which the ring writes after the burst (docs/offloads.md).
    pub fn process_ring(&mut self, now: Instant, ring: &mut PacketRing) {
        self.seg_arena.clear();
        self.seg_ranges.clear();
        self.run_slots(now, ring.slots_mut());
        if !self.seg_ranges.is_empty() {
            for r in self.seg_ranges.drain(..) {
                ring.push_extra(&self.seg_arena[r]);
            }
            self.run_slots(now, ring.extras_mut());
        }
        self.drain_events();
    }

    /// The balancer over `slots`, one burst: see [`process_ring`](Self::process_ring).
    fn run_slots<'r>(&mut self, now: Instant, slots: impl Iterator<Item = Slot<'r>>) {
        let mut pkts = recycle(std::mem::take(&mut self.burst));
        let mut metas: Vec<SlotRefs<'r>> = recycle(std::mem::take(&mut self.metas));
        for slot in slots {
            if *slot.action != Action::Send {
                continue;
            }
            if let Some(p) = self.probes.as_mut() {
                // Replies to the probes never reach the balancer.
                let pkt = &mut slot.buf[..*slot.len];
                if p.is_for_us(pkt) {
                    if *slot.vnet == [0; VNET_HDR_LEN] {
                        p.divert(pkt);
                    } else if let Err(e) =
                        divert_offloaded(p, pkt, slot.vnet, &mut self.seg_scratch)
                    {
                        log::debug!("offloaded probe reply of {} bytes dropped: {e}", pkt.len());
                        self.stats.offload_drops += 1;
                    }
                    *slot.action = Action::Drop;
                    continue;
                }
            }
            let mut csum_partial = false;
            if *slot.vnet != [0; VNET_HDR_LEN] {
                match self.offloaded(slot.buf, *slot.len, slot.vnet) {
                    Ok(Some(partial)) => csum_partial = partial,
                    Ok(None) => {
                        // Cut into packets, processed after this burst.
                        *slot.action = Action::Drop;
                        continue;
                    }
                    Err(e) => {
                        log::debug!("offloaded packet of {} bytes dropped: {e}", *slot.len);
                        self.stats.offload_drops += 1;
                        *slot.action = Action::Drop;
                        continue;
                    }
                }
            }
            let ends = self
                .steer_key
                .and_then(|k| crate::steer::client_buckets(k, &slot.buf[..*slot.len]));
            // No headroom: a tunnelled packet is moved back in its (large) buffer by the
            // balancer, a copy that costs far less than the write(2) that follows.
            pkts.push(Packet {
                buf: slot.buf,
                start: 0,
                len: *slot.len,
                csum_partial,
            });
            metas.push((
                slot.len,
                slot.action,
                slot.next_hop,
                slot.vnet,
                slot.steer,
                ends,
            ));
        }
        let n = pkts.len();
        if self.verdicts.len() < n {
            self.verdicts.resize(n, Verdict::default());
        }
        self.lb
            .process_burst(now, &mut pkts, &mut self.verdicts[..n]);
        for (((len, action, next_hop, vnet, steer, ends), v), pkt) in
            metas.drain(..).zip(&self.verdicts[..n]).zip(&pkts)
        {
            // The client is the source of a packet to a real server and the destination of a
            // reply; what lb-core answers or passes is nobody's connection.
            *steer = match (*v, ends) {
                (Verdict::ToServer(_), Some((src, _))) => Some(SteerTag {
                    bucket: src,
                    reply: false,
                }),
                (Verdict::ToClient(_), Some((_, dst))) => Some(SteerTag {
                    bucket: dst,
                    reply: true,
                }),
                _ => None,
            };
            *action = match *v {
                Verdict::ToServer(t) | Verdict::ToClient(t) | Verdict::Reply(t) => {
                    *len = t.len;
                    // A direct-routing packet's next hop is its real server, not its own
                    // destination (the VIP); only a TAP device can honour it.
                    *next_hop = Some(t.dst);
                    Action::Send
                }
                Verdict::Drop(_) => Action::Drop,
                Verdict::Pass(t) if self.ever_vips.contains(&t.dst) => {
                    self.stats.loop_drops += 1;
                    Action::Drop
                }
                Verdict::Pass(t) => {
                    *len = t.len;
                    Action::Send
                }
            };
            // The device's header goes back with a packet still partial (NAT kept its
            // checksum partial, and the segment, where they were); anything else leaves whole.
            if !pkt.csum_partial {
                *vnet = [0; VNET_HDR_LEN];
            }
        }
        self.burst = recycle(pkts);
        self.metas = recycle(metas);
    }

    /// Readies a packet read with virtio-net header `vnet` for the balancer: `Ok(Some(p))`
    /// when it goes to the balancer as it is, `p` whether its checksum is still partial (lb-core
    /// follows it; else it was completed here and `vnet` cleared); `Ok(None)` when it was cut
    /// into packets (to [`Self::seg_arena`]) instead: a TCP segment for the device to cut that
    /// lb-core cannot keep whole (tunnels configured, or a checksum lb-core cannot follow).
    fn offloaded(
        &mut self,
        buf: &mut [u8],
        len: usize,
        vnet: &mut [u8; VNET_HDR_LEN],
    ) -> Result<Option<bool>, crate::offload::OffloadError> {
        use crate::offload::{prepare_for_balancer, VnetHdr};
        let hdr = VnetHdr::parse(vnet)?;
        hdr.check(len)?;
        let pkt = &mut buf[..len];
        if hdr.is_gso() && self.tunnels {
            return self.cut(pkt, &hdr).map(|_| None);
        }
        let partial = prepare_for_balancer(pkt, &hdr)?;
        if partial {
            return Ok(Some(true));
        }
        if hdr.is_gso() {
            // The checksum is whole now; the device would cut it as one it must finish.
            return self.cut(pkt, &VnetHdr { flags: 0, ..hdr }).map(|_| None);
        }
        *vnet = [0; VNET_HDR_LEN];
        Ok(Some(false))
    }

    /// Cuts the GSO packet `pkt` into segments in [`Self::seg_arena`].
    fn cut(
        &mut self,
        pkt: &[u8],
        hdr: &crate::offload::VnetHdr,
    ) -> Result<usize, crate::offload::OffloadError> {
        let (arena, ranges) = (&mut self.seg_arena, &mut self.seg_ranges);
        let n = segment_in(&mut self.seg_scratch, pkt, hdr, |seg| {
            ranges.push(arena.len()..arena.len() + seg.len());
            arena.extend_from_slice(seg);
        })?;
        self.stats.segmented += 1;
        self.stats.segments += n as u64;
        Ok(n)
    }

    /// How long the loop may sleep before [`Gateway::run_timers`] is due.
    pub fn timer_budget(&mut self, now: Instant) -> std::time::Duration {
        let probes = self.probes.as_mut().and_then(|p| p.poll_at(now));
        let next = match (self.lb.poll_timeout(), probes) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        match next {
            Some(t) => std::time::Duration::from_millis(t.saturating_since(now).millis()),
            None => std::time::Duration::from_secs(3600),
        }
    }

    /// Runs the balancer's timers if due (expiry, rate estimator, defences), logs drained
    /// servers, and moves the sync daemons' messages.
    pub fn run_timers(&mut self, now: Instant) {
        let due = self.lb.poll_timeout().is_some_and(|t| t <= now);
        if due {
            self.lb.handle_timeout(now);
        }
        if let Some(p) = self.probes.as_mut() {
            if due || p.due(now) {
                p.poll(now, &mut self.lb);
            }
        }
        self.sync_io.run(&mut self.lb, now);
        self.drain_events();
    }

    /// Logs every event the balancer queued (drained servers, health transitions, quorum
    /// changes): all of them, whatever their order.
    fn drain_events(&mut self) {
        while let Some(ev) = self.lb.poll_event() {
            match ev {
                Event::Drained { service, server } => {
                    self.stats.drained_events += 1;
                    log::info!("{service}: real server {server} is drained (weight 0, no connections): it can be deleted");
                    if self.recent_drained.len() == RECENT_DRAINED {
                        self.recent_drained.remove(0);
                    }
                    self.recent_drained.push((service, server));
                }
                Event::Health {
                    service,
                    server,
                    state,
                    reason,
                } => {
                    self.stats.health_events += 1;
                    let state = match state {
                        lb_core::HealthState::Up => "UP",
                        lb_core::HealthState::Down => "DOWN",
                    };
                    log::info!("{service}: real server {server} is {state}: {reason}");
                }
                Event::Quorum { service, up } => {
                    log::info!("{service}: quorum {}", if up { "regained" } else { "lost" });
                }
            }
        }
        if self.lb.drained_events_lost() {
            log::warn!(
                "drained-server events were lost (too many at once); see lbadm --stats-gateway"
            );
        }
    }

    /// Notes the configuration's VIPs (passed packets to them are dropped) and whether a real
    /// server is reached by tunnel (offloaded segments to it are cut here).
    fn note_vips(&mut self) {
        let d = self.lb.director();
        self.tunnels = false;
        for (id, s) in d.services() {
            if let ServiceKey::Addr { vip, .. } = s.config.key {
                self.ever_vips.insert(vip.ip());
            }
            self.tunnels |= d
                .servers(id)
                .iter()
                .any(|(_, r)| matches!(r.config.method, lb_core::ForwardMethod::Tunnel(_)));
        }
    }

    // ------------------------------------------------------------------ configuration

    /// Applies one command (not `-L`, `-S`, `-R`) to the balancer.
    pub fn apply(&mut self, now: Instant, cmd: &Command) -> Result<(), String> {
        if matches!(command_key(cmd), Some(ServiceKey::Fwmark { .. })) {
            return Err(FWMARK_REFUSED.into());
        }
        match cmd {
            // The socket first: a daemon that cannot open it does not start.
            Command::StartDaemon(d) => self.sync_io.start(d).map_err(|e| e.to_string())?,
            Command::StopDaemon(role) => self.sync_io.stop(*role),
            _ => {}
        }
        let r = self.lb.apply(now, cmd).map_err(|e| describe(cmd, e));
        self.note_vips();
        self.drain_events();
        r
    }

    /// Applies a whole batch of ipvsadm lines (a `--config` file or `-R` input): every line is
    /// parsed and applied to a scratch copy of the current configuration first; only if all
    /// succeed are they applied for real. `source` names the input in error messages
    /// (`FILE:LINE: ...`). Returns the number of commands applied.
    pub fn apply_batch(
        &mut self,
        now: Instant,
        source: &str,
        text: &str,
    ) -> Result<usize, BatchError> {
        let items = parse_batch(source, text)?;
        self.apply_items(now, source, &items)
    }

    /// Applies commands from any source (`--config` lines, a keepalived.conf's
    /// `virtual_server`s) all or nothing: each is applied to a scratch copy of the current
    /// configuration first, and only if all succeed are they applied for real. An error names
    /// the item's [`BatchItem::at`]; `source` names the whole batch. Returns the number of
    /// commands applied.
    pub fn apply_items(
        &mut self,
        now: Instant,
        source: &str,
        items: &[BatchItem],
    ) -> Result<usize, BatchError> {
        let refused = |item: &BatchItem, what: String| {
            BatchError(format!("{}: {what}\n  {}", item.at, item.text))
        };
        // Dry run on a scratch balancer holding the current configuration.
        let mut scratch = new_balancer(self.limits, 16, self.seed, [0; 16], now);
        scratch.set_settings(*self.lb.settings());
        for cmd in self.current_commands() {
            if let Err(e) = scratch.apply(now, &cmd) {
                // Cannot happen for a configuration the balancer accepted; say so if it does.
                return Err(BatchError(format!(
                    "{source}: the current configuration does not replay ({cmd}: {e}); nothing applied"
                )));
            }
        }
        for item in items {
            if matches!(command_key(&item.cmd), Some(ServiceKey::Fwmark { .. })) {
                return Err(refused(item, FWMARK_REFUSED.into()));
            }
            if let Err(e) = scratch.apply(now, &item.cmd) {
                return Err(refused(item, describe(&item.cmd, e)));
            }
        }
        drop(scratch);
        for (k, item) in items.iter().enumerate() {
            if let Err(e) = self.apply(now, &item.cmd) {
                return Err(refused(item, format!(
                    "{e}\n  (the first {k} commands were applied: the live balancer differs from the dry run, e.g. a deleted server still holds connections)"
                )));
            }
        }
        Ok(items.len())
    }

    /// The current configuration as commands: services in slot order, each followed by its
    /// servers in insertion order (so replaying rebuilds the same lists).
    fn current_commands(&self) -> Vec<Command> {
        let d = self.lb.director();
        let mut v = Vec::new();
        for (id, s) in d.services() {
            v.push(Command::AddService(s.config));
            let servers: Vec<ServerConfig> = d.servers(id).iter().map(|(_, r)| r.config).collect();
            for c in servers.into_iter().rev() {
                v.push(Command::AddServer(s.config.key, c));
            }
        }
        for role in [SyncRole::Master, SyncRole::Backup] {
            if let Some(d) = self.lb.sync_daemon(role) {
                v.push(Command::StartDaemon(*d));
            }
        }
        v
    }

    /// `-S`: the table as `ipvsadm -S -n` lines (services in ipvsadm's order, servers in
    /// insertion order so a restore schedules the same way), followed by `--set` and setting
    /// lines for whatever differs from the defaults.
    pub fn save(&self) -> String {
        let d = self.lb.director();
        let services: Vec<(ServiceConfig, Vec<ServerConfig>)> =
            crate::listing::sorted_services(&self.lb)
                .into_iter()
                .map(|(id, s)| {
                    let mut servers: Vec<ServerConfig> =
                        d.servers(id).iter().map(|(_, r)| r.config).collect();
                    servers.reverse();
                    (s.config, servers)
                })
                .collect();
        let mut out = String::new();
        let _ = write_save(&mut out, services);
        let st = self.lb.settings();
        let def = Settings::default();
        let t = st.timeouts.get();
        if t != TcpTimeouts::DEFAULT.get() {
            let _ = writeln!(out, "{}", Command::SetTimeouts(t));
        }
        for (now_s, def_s) in settings_list(st).into_iter().zip(settings_list(&def)) {
            if now_s != def_s {
                let _ = writeln!(out, "{}", Command::Set(now_s));
            }
        }
        out
    }

    /// `--show-settings` (our extension): every setting as a line `-R` accepts.
    pub fn show_settings(&self) -> String {
        let st = self.lb.settings();
        let mut out = String::new();
        let _ = writeln!(out, "{}", Command::SetTimeouts(st.timeouts.get()));
        for s in settings_list(st) {
            let _ = writeln!(out, "{}", Command::Set(s));
        }
        let _ = writeln!(
            out,
            "# secure_tcp defence {}, drop_entry defence {} (automatic modes switch at {} % table fill)",
            if self.lb.secure_tcp_active() { "on" } else { "off" },
            if self.lb.drop_entry_active() { "on" } else { "off" },
            st.defence_fill_percent
        );
        out
    }

    /// `--stats-gateway` (our extension): the balancer's and the frontend's counters, one
    /// `name value` per line, then drained servers.
    pub fn stats_gateway(&self, ring: &RingStats) -> String {
        let c = self.lb.counters();
        let mut out = String::new();
        let mut kv = |k: &str, v: u64| {
            let _ = writeln!(out, "{k} {v}");
        };
        kv("connections", self.lb.connection_count() as u64);
        kv("connections_capacity", self.lb.capacity() as u64);
        kv("conns_created", c.conns_created);
        kv("reuse_reschedules", c.reuse_reschedules);
        kv("quiescent_reschedules", c.quiescent_reschedules);
        kv("nodest_reschedules", c.nodest_reschedules);
        kv("nodest_resets", c.nodest_resets);
        kv("no_server", c.no_server);
        kv("syn_drops", c.syn_drops);
        kv("evictions", c.evictions);
        kv("embryonic_evictions", c.embryonic_evictions);
        kv("passed", c.passed);
        kv("replies", c.replies);
        kv("defence_drops", c.defence_drops);
        kv("fragments_forwarded", c.fragments_forwarded);
        kv("fragment_evictions", c.fragment_evictions);
        kv("tunnelled", c.tunnelled);
        kv("too_big_replies", c.too_big_replies);
        kv("tunnel_icmp_relayed", c.tunnel_icmp_relayed);
        kv("loop_drops", self.stats.loop_drops);
        kv("offload_drops", self.stats.offload_drops);
        kv("segmented", self.stats.segmented);
        kv("segments", self.stats.segments);
        for r in DropReason::ALL {
            kv(&format!("drops.{}", r.name()), c.drops(r));
        }
        kv("tun.rx_packets", ring.rx_packets);
        kv("tun.rx_bytes", ring.rx_bytes);
        kv("tun.tx_packets", ring.tx_packets);
        kv("tun.tx_errors", ring.tx_errors);
        kv("tun.rx_truncated", ring.rx_truncated);
        let y = self.lb.sync_stats();
        kv("sync.queued", y.queued);
        kv("sync.queue_drops", y.queue_drops);
        kv("sync.messages_sent", y.messages_sent);
        kv("sync.records_sent", y.records_sent);
        kv("sync.send_errors", self.sync_io.send_errors);
        kv("sync.messages_received", y.messages_received);
        kv("sync.messages_refused", y.messages_refused);
        kv("sync.records_refused", y.records_refused);
        kv("sync.created", y.created);
        kv("sync.updated", y.updated);
        kv("sync.ignored", y.ignored);
        kv("sync.no_service", y.no_service);
        kv("sync.no_server", y.no_server);
        kv("sync.table_full", y.table_full);
        let d = self.lb.director();
        for (id, s) in crate::listing::sorted_services(&self.lb) {
            for (sid, r) in d.servers(id).iter() {
                if d.drained(sid) {
                    let _ = writeln!(out, "drained {} -r {}", s.config.key, r.addr());
                }
            }
        }
        for (svc, server) in &self.recent_drained {
            let _ = writeln!(out, "drained_event {svc} -r {server}");
        }
        out
    }

    // ------------------------------------------------------------------ state

    /// Sets the file `--save-state` and [`save_state`](Self::save_state) write.
    pub fn set_state_path(&mut self, path: PathBuf) {
        self.state_path = Some(path);
    }

    /// The connection table as a snapshot (lb-core's format, docs/sync.md §1).
    pub fn export_state(&self, now: Instant) -> Vec<u8> {
        let mut ex = self.lb.export_state(now);
        let mut out = Vec::with_capacity(self.lb.connection_count() * 92 + 64);
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = ex.write(&self.lb, &mut buf);
            if n == 0 {
                return out;
            }
            out.extend_from_slice(&buf[..n]);
        }
    }

    /// Loads a snapshot into the table; on any error nothing is loaded.
    pub fn import_state(
        &mut self,
        now: Instant,
        bytes: &[u8],
    ) -> Result<ImportReport, lb_core::sync::SnapshotError> {
        self.lb.import_state(now, bytes)
    }

    /// Writes the table to the `--state` file: to a temporary file beside it, synced, then
    /// renamed over it, so a crash mid-write leaves the previous snapshot. `None` without
    /// `--state`; else what was written, for the log and `lbadm --save-state`.
    pub fn save_state(&self, now: Instant) -> std::io::Result<Option<String>> {
        let Some(path) = &self.state_path else {
            return Ok(None);
        };
        let started = std::time::Instant::now();
        let bytes = self.export_state(now);
        write_atomically(path, &bytes)?;
        Ok(Some(format!(
            "state: {} entries, {} bytes written to {} in {:.1} ms",
            self.lb.connection_count(),
            bytes.len(),
            path.display(),
            started.elapsed().as_secs_f64() * 1e3
        )))
    }

    // ------------------------------------------------------------------ control

    /// Answers one `lbadm` request; `size` is shown in `-L`'s header, `ring` feeds
    /// `--stats-gateway`.
    pub fn control(&mut self, now: Instant, req: &Request, ring: &RingStats) -> Reply {
        self.stats.control_requests += 1;
        let reply = self.control_inner(now, req, ring);
        if reply.status != 0 {
            self.stats.control_errors += 1;
        }
        reply
    }

    fn control_inner(&mut self, now: Instant, req: &Request, ring: &RingStats) -> Reply {
        let args: Vec<&str> = req.args.iter().map(String::as_str).collect();
        match args.as_slice() {
            ["--show-settings"] => return Reply::ok(self.show_settings()),
            ["--health"] => return Reply::ok(crate::health::listing(&self.lb, now)),
            ["--stats-gateway"] => return Reply::ok(self.stats_gateway(ring)),
            ["--save-state"] => {
                return match self.save_state(now) {
                    Ok(Some(s)) => Reply::ok(format!("{s}\n")),
                    Ok(None) => Reply::error(
                        1,
                        "lbadm: --save-state needs the gateway to run with --state FILE\n",
                    ),
                    Err(e) => Reply::error(1, format!("lbadm: {e}\n")),
                }
            }
            ["-h" | "--help"] => return Reply::ok(HELP),
            _ => {}
        }
        let cmd = match parse_args(args.iter().copied()) {
            Ok(c) => c,
            Err(e) => {
                return Reply::error(
                    2,
                    format!("lbadm: {e}\n  in: {}\n  (lbadm --help)\n", args.join(" ")),
                )
            }
        };
        match cmd {
            Command::List(opts) => {
                if matches!(opts.service, Some(ServiceKey::Fwmark { .. })) {
                    return Reply::error(1, format!("lbadm: {FWMARK_REFUSED}\n"));
                }
                let size = self.lb.capacity();
                match crate::listing::list(&self.lb, &opts, now, size) {
                    Ok(text) => Reply::ok(text),
                    Err(e) => Reply::error(1, format!("{}\n", e.0)),
                }
            }
            Command::Save { .. } => Reply::ok(self.save()),
            Command::Restore => {
                let Some(text) = &req.stdin else {
                    return Reply::error(2, "lbadm: -R reads commands from standard input\n");
                };
                match self.apply_batch(now, "stdin", text) {
                    Ok(_) => Reply::ok(""),
                    Err(e) => Reply::error(1, format!("lbadm: {e}\nnothing was applied\n")),
                }
            }
            cmd => match self.apply(now, &cmd) {
                Ok(()) => Reply::ok(""),
                Err(e) => Reply::error(1, format!("lbadm: {e}\n")),
            },
        }
    }
}

/// [`crate::offload::segment`] with `scratch` as its segment buffer, grown to hold a segment
/// (`gso_size` bytes of payload and headers of up to 256 bytes: IP and TCP with options).
fn segment_in(
    scratch: &mut Vec<u8>,
    pkt: &[u8],
    hdr: &crate::offload::VnetHdr,
    emit: impl FnMut(&[u8]),
) -> Result<usize, crate::offload::OffloadError> {
    let need = usize::from(hdr.gso_size) + 256;
    if scratch.len() < need {
        scratch.resize(need, 0);
    }
    crate::offload::segment(pkt, hdr, scratch, emit)
}

/// Hands the probes' smoltcp interface, which verifies checksums, a packet read with
/// virtio-net header `vnet`: its checksum finished, or cut into whole segments.
fn divert_offloaded(
    probes: &mut crate::health::Probes,
    pkt: &mut [u8],
    vnet: &[u8; VNET_HDR_LEN],
    scratch: &mut Vec<u8>,
) -> Result<(), crate::offload::OffloadError> {
    use crate::offload::{complete_checksum, VnetHdr};
    let hdr = VnetHdr::parse(vnet)?;
    if hdr.is_gso() {
        segment_in(scratch, pkt, &hdr, |s| probes.divert(s))?;
    } else {
        complete_checksum(pkt, &hdr)?;
        probes.divert(pkt);
    }
    Ok(())
}

/// Writes `bytes` to `path` through `path.tmp`: write, fsync, rename.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

/// The thirteen settings, in a fixed order.
fn settings_list(s: &Settings) -> [Setting; 13] {
    [
        Setting::ConnReuseMode(s.conn_reuse_mode.value()),
        Setting::ExpireNodestConn(s.expire_nodest_conn),
        Setting::ExpireQuiescentTemplate(s.expire_quiescent_template),
        Setting::SecureTcp(s.secure_tcp.value()),
        Setting::DropEntry(s.drop_entry.value()),
        Setting::SloppyTcp(s.sloppy_tcp),
        Setting::ReplyRate(s.reply_rate_per_sec),
        Setting::ReplyBurst(s.reply_burst),
        Setting::ReplyPeerInterval(s.reply_peer_interval_ms),
        Setting::EmbryonicPrefixShare(s.embryonic_prefix_share),
        Setting::SyncThreshold(s.sync_threshold),
        Setting::SyncPeriod(s.sync_period),
        Setting::SyncVersion(s.sync_version),
    ]
}

/// `ConfigError` in ipvsadm's words where it has them, naming the command.
fn describe(cmd: &Command, e: ConfigError) -> String {
    let what = match e {
        ConfigError::ServiceExists => "Service already exists".to_string(),
        ConfigError::NoSuchService => match cmd {
            Command::AddServer(..) | Command::EditServer(..) | Command::DelServer(..) => {
                "Service not defined".to_string()
            }
            _ => "No such service".to_string(),
        },
        ConfigError::ServerExists => "Destination already exists".to_string(),
        ConfigError::NoSuchServer => "No such destination".to_string(),
        other => other.to_string(),
    };
    format!("{what} ({cmd})")
}

/// `lbadm --help`.
pub const HELP: &str = "\
lbadm: administer a running lb-tun gateway with ipvsadm's syntax (numeric addresses only).

  lbadm -A|-E -t|-u VIP:PORT [-s SCHED] [-b FLAGS] [-p [TIMEOUT]] [-M MASK] [-o] [--table-size M]
  lbadm -D -t|-u VIP:PORT
  lbadm -a|-e -t|-u VIP:PORT -r RIP[:PORT] -m|-g [-w WEIGHT] [-x UPPER] [-y LOWER]
  lbadm -d -t|-u VIP:PORT -r RIP[:PORT]
  lbadm -C | -Z [-t|-u VIP:PORT]
  lbadm -L|-l [-n] [--exact] [--stats | --rate | --thresholds | --timeout | -c] [-t|-u VIP:PORT]
  lbadm -S [-n]            print the table as commands (-R and --config read it back)
  lbadm -R < FILE          apply commands from standard input, all or nothing
  lbadm --set TCP TCPFIN UDP
  lbadm --conn-reuse-mode 0..3 | --expire-nodest-conn 0|1 | --expire-quiescent-template 0|1
        | --secure-tcp 0..3 | --drop-entry 0..3 | --sloppy-tcp 0|1
        | --reply-rate N | --reply-burst N | --reply-peer-interval MS
                           limit on generated replies (RST, ICMP): global per second and
                           burst, per /24 or /64 interval; 0 = unlimited  (lb-tun extension)
        | --embryonic-prefix-share PERCENT
                           most half-open (SYN_RECV) entries one /24 or /64 may hold, in
                           percent of the table (default 10; 0 = no limit) (lb-tun extension)
  lbadm --show-settings    the settings, as lines -R accepts        (lb-tun extension)
  lbadm --health           each checked real server: check, state, results in a row, last
                           result, time since the last change and why (lb-tun extension)
  lbadm --stats-gateway    gateway counters: reuse reschedules, SYN drops, evictions,
                           drops by reason, drained servers           (lb-tun extension)
  lbadm --start-daemon master|backup --mcast-interface IF [--syncid N] [--mcast-group ADDR]
        [--mcast-port N] [--mcast-ttl N] [--sync-maxlen N]
  lbadm --stop-daemon master|backup
  lbadm -L --daemon        the running sync daemons (IPVS sync protocol v1)
  lbadm --sync-threshold N | --sync-period N | --sync-version 0|1
  lbadm --save-state       write the connection table to the gateway's --state file now
                                                                      (lb-tun extension)
  lbadm --drain-gateway [--timeout SECONDS]
                           withdraw the --announce routes, keep forwarding the flows that
                           still arrive, exit when they end or after SECONDS (default 300)
                                                                      (lb-tun extension)
  --control PATH           the gateway's socket (default /run/lb-tun.sock)

NAT (-m) works on either device; direct routing (-g) only when lb-tun runs on a TAP device
(--tap), and -i is refused. Firewall-mark services (-f) are refused: the device carries no mark.
";

#[cfg(test)]
mod tests;
