//! The sans-IO balancer: packets and `now` in, verdicts and the next timeout out.
//!
//! [`Balancer`] ties the pieces together the way IPVS's `ip_vs_in_hook` / `ip_vs_out_hook` do
//! (reference §3.2, §6.1): it parses a packet, finds its connection in the [`ConnTable`] (one
//! keyed index serves both directions), applies the port-reuse and removed-server rules, asks
//! the [`Director`] to schedule new connections (persistence templates first), runs the TCP
//! state machine, keeps the counters the schedulers read, and rewrites the packet in place.
//!
//! Most packets of a busy balancer belong to a flow the table holds and leave its state as it
//! is; they take a fast path (`fast.rs`) that reads them with [`packet::parse_flow`], re-arms,
//! counts and rewrites them, and hands everything else to the general path with its look-ups
//! made. [`Balancer::process_general`] runs the general path alone: the differential tests and
//! the fuzz target hold the two to the same verdicts, bytes, entries and counters.
//!
//! # Where we differ from IPVS, on purpose
//! - **No dropped SYN on port reuse.** IPVS with netfilter conntrack drops a SYN that reuses a
//!   client port whose entry is in TIME_WAIT (the 1 s stall, §3.3). We own the only flow table,
//!   so such a SYN (conn_reuse_mode ≥ 1) expires the old entry and is scheduled and forwarded in
//!   the same call.
//! - **conn_reuse_mode 0 never follows a removed server.** The SYN follows its old entry as in
//!   IPVS, but a removed server's entry is expired (`expire_nodest_conn`) or the packet dropped.
//! - **A removed server's flow fails fast.** With `expire_nodest_conn` (our default: on), a
//!   non-SYN TCP packet of such a flow is answered with a RST (what the kernel's local stack
//!   does once IPVS lets the packet through), a SYN or UDP packet is rescheduled.
//! - **No server available:** TCP gets a RST, UDP an ICMP port unreachable (IPVS sends ICMP port
//!   unreachable for both).
//! - **NAT only.** `-g` and `-i` servers are refused by [`Balancer::apply`].
//! - **fwmark services** are scheduled by the [`Director`], but the datapath has no packet mark
//!   and looks services up by address only.
//! - **Fragments and IPv6 extension headers** are counted drops (no reassembly).

use core::net::{IpAddr, SocketAddr};

use crate::addr::{mask, Protocol};
use crate::config::{ConfigError, ForwardMethod, ServiceKey};
use crate::conn::{ConnFlags, ConnTable, Entry, Handle};
use crate::director::{Director, SchedInput, Unmatched};
use crate::ipvsadm::{Command, Setting};
use crate::nat;
use crate::packet::{self, Flow, IcmpError, Kind, Malformed, Parsed};
use crate::server::ServerId;
use crate::service::ServiceId;
use crate::tcp::{self, Direction, TcpState, TcpTimeouts};
use crate::time::{Duration, Instant};
use crate::verdict::{DropReason, Verdict};

/// Largest generated reply (an ICMPv6 error quotes up to 1280 bytes in all).
pub const REPLY_MAX: usize = nat::ICMPV6_ERROR_MAX;

/// How long a template that still controls connections is kept when its timer fires
/// (reference §2.7, "Expiry while still needed").
pub const TEMPLATE_DEFER: Duration = Duration::from_secs(60);

/// How often the defence levels are re-evaluated (IPVS's `update_defense_level`: 1 s).
pub const DEFENCE_PERIOD: Duration = Duration::from_secs(1);

/// Behaviour switches: IPVS's sysctls that apply to a userspace balancer, with their
/// defaults, plus the fill threshold that plays the part of `amemthresh`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// `conn_reuse_mode` (0..=3, default 1): how a SYN that reuses a client port is handled
    /// (reference §3.1; see the module docs for our difference).
    pub conn_reuse_mode: u8,
    /// `expire_nodest_conn` (default **on** here; IPVS's default is off): packets of a flow
    /// whose server was removed expire it and are rescheduled or reset instead of dropped.
    pub expire_nodest_conn: bool,
    /// `expire_quiescent_template` (default off): a persistence template pointing at a
    /// weight-0 server is not used for new connections.
    pub expire_quiescent_template: bool,
    /// `secure_tcp` defence mode (0 off, 1 automatic and off, 2 automatic and on, 3 on). While
    /// on, TCP uses IPVS's `tcp_states_dos` table.
    pub secure_tcp: u8,
    /// `drop_entry` defence mode (0..=3 as above): while on, every second 1/32 of the table is
    /// scanned and half-open entries are dropped (reference §4.6).
    pub drop_entry: u8,
    /// `sloppy_tcp`: create entries from any non-RST TCP packet, not only SYN.
    pub sloppy_tcp: bool,
    /// Table fill, in percent, above which automatic defences (mode 1) switch on; they switch
    /// back off below it. Our analogue of `amemthresh`.
    pub defence_fill_percent: u8,
    /// Per-state idle timeouts (`ipvsadm --set tcp tcpfin udp` changes three of them).
    pub timeouts: TcpTimeouts,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            conn_reuse_mode: 1,
            expire_nodest_conn: true,
            expire_quiescent_template: false,
            secure_tcp: 0,
            drop_entry: 0,
            sloppy_tcp: false,
            defence_fill_percent: 90,
            timeouts: TcpTimeouts::DEFAULT,
        }
    }
}

/// The balancer's own counters (per-service and per-server traffic lives in the
/// [`Director`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counters {
    /// Drops, indexed by [`DropReason::index`].
    pub drops: [u64; DropReason::ALL.len()],
    /// Dropped packets that carried a SYN (included in `drops`).
    pub syn_drops: u64,
    /// SYNs that reused a client port whose entry was in TIME_WAIT/CLOSE (or FIN_WAIT with
    /// mode 2) and were rescheduled at once.
    pub reuse_reschedules: u64,
    /// SYNs whose entry pointed at a weight-0 server and were rescheduled
    /// (`expire_nodest_conn`).
    pub quiescent_reschedules: u64,
    /// Packets of a removed server's flow that were rescheduled (SYN, UDP).
    pub nodest_reschedules: u64,
    /// Packets of a removed server's flow answered with a RST.
    pub nodest_resets: u64,
    /// New connections with no server available, answered with a RST or ICMP.
    pub no_server: u64,
    /// Entries created (templates not included).
    pub conns_created: u64,
    /// TIME_WAIT/CLOSE entries evicted to make room for a new connection.
    pub evictions: u64,
    /// Packets passed through untouched.
    pub passed: u64,
    /// Replies generated (RST, ICMP errors, echo replies).
    pub replies: u64,
    /// Entries dropped by the `drop_entry` defence.
    pub defence_drops: u64,
}

impl Counters {
    /// The drop counter of `reason`.
    pub fn drops(&self, reason: DropReason) -> u64 {
        self.drops[reason.index()]
    }
}

/// One packet of a burst: a buffer (its capacity bounds generated replies) holding an IP
/// packet in `buf[..len]`.
pub struct Packet<'p> {
    /// The buffer.
    pub buf: &'p mut [u8],
    /// The packet's length.
    pub len: usize,
}

/// Something a controller may want to act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// A quiescent (weight 0) server has no connections left: deleting it now breaks nothing.
    Drained {
        /// Its service.
        service: ServiceKey,
        /// The server.
        server: SocketAddr,
    },
}

/// A live connection, as `ipvsadm -L -c` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnInfo {
    /// Protocol.
    pub proto: Protocol,
    /// Client address and port (for a template: the masked address and port 0).
    pub client: SocketAddr,
    /// Virtual address and port.
    pub vip: SocketAddr,
    /// Real server address and port.
    pub server: SocketAddr,
    /// State name (`ESTABLISHED`, `TIME_WAIT`, `UDP`, `NONE` for templates…).
    pub state: &'static str,
    /// Time left before it expires.
    pub expires_in: Duration,
    /// Whether it is a persistence template.
    pub template: bool,
}

/// Errors from [`Balancer::apply`].
pub type ApplyError = ConfigError;

#[derive(Clone, Copy)]
enum Dir {
    /// Client → virtual service.
    In,
    /// Real server → client.
    Out,
}

/// A connection table, a director and the rules that join them. One owner per balancer: the
/// frontend calls [`process`](Balancer::process) (or [`process_burst`](Balancer::process_burst))
/// for every packet, [`handle_timeout`](Balancer::handle_timeout) when
/// [`poll_timeout`](Balancer::poll_timeout) has passed, and [`apply`](Balancer::apply) for
/// configuration between packets.
pub struct Balancer<'a> {
    director: Director<'a>,
    conns: ConnTable<'a>,
    settings: Settings,
    counters: Counters,
    /// Whether secure_tcp's DoS table is in force now.
    dos: bool,
    /// Whether the drop_entry defence is running now.
    dropping: bool,
    /// Slab position where the next drop_entry scan starts.
    drop_cursor: usize,
    /// drop_entry's rate-rule counters, by `in_pkts` (IPVS's `todrop_counter`).
    todrop_counter: [i8; 9],
    next_defence: Instant,
    /// Changes every time an entry is inserted or removed (burst lookups stay valid while it
    /// does not).
    generation: u64,
    /// The last service look-up of the datapath (cleared by every configuration change).
    svc_cache: fast::SvcCache,
    scratch: [u8; REPLY_MAX],
}

impl<'a> Balancer<'a> {
    /// A balancer over `director` (services and servers, possibly already configured) and an
    /// empty connection table.
    pub fn new(director: Director<'a>, conns: ConnTable<'a>, settings: Settings) -> Self {
        let mut b = Balancer {
            director,
            conns,
            settings,
            counters: Counters::default(),
            dos: false,
            dropping: false,
            drop_cursor: 0,
            todrop_counter: [0; 9],
            next_defence: Instant::ZERO,
            generation: 0,
            svc_cache: fast::SvcCache::EMPTY,
            scratch: [0; REPLY_MAX],
        };
        b.update_defence();
        b
    }

    // ------------------------------------------------------------------ accessors

    /// The control plane: services, servers (list order), counters and rates.
    pub fn director(&self) -> &Director<'a> {
        &self.director
    }

    /// The control plane, for calls [`apply`](Balancer::apply) does not cover. Do not delete
    /// servers or services behind the balancer's back while it has entries for them unless you
    /// accept IPVS's trash semantics (the director keeps referenced servers until released).
    pub fn director_mut(&mut self) -> &mut Director<'a> {
        self.svc_cache = fast::SvcCache::EMPTY;
        &mut self.director
    }

    /// The connection table.
    pub fn conns(&self) -> &ConnTable<'a> {
        &self.conns
    }

    /// The current settings.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Changes the settings (defence levels are re-evaluated at once).
    pub fn set_settings(&mut self, settings: Settings) {
        self.settings = settings;
        self.update_defence();
    }

    /// The balancer's counters.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Zeroes the balancer's counters (`ipvsadm -Z` zeroes the director's).
    pub fn zero_counters(&mut self) {
        self.counters = Counters::default();
    }

    /// Whether secure_tcp's DoS transition table is in force.
    pub fn secure_tcp_active(&self) -> bool {
        self.dos
    }

    /// Whether the drop_entry defence is running.
    pub fn drop_entry_active(&self) -> bool {
        self.dropping
    }

    /// Whether `addr` is the virtual address of some service (frontends answer ARP/NDP for
    /// these, and must not route packets for them back to themselves).
    pub fn is_vip(&self, addr: IpAddr) -> bool {
        self.director.is_vip(addr)
    }

    /// Live connections and templates, for `ipvsadm -L -c`.
    pub fn connections(&self, now: Instant) -> impl Iterator<Item = ConnInfo> + '_ {
        self.conns.iter().filter_map(move |(h, e)| {
            let server = self.director.server(e.server)?;
            let svc = self.director.service(e.service)?;
            let vip = match svc.config.key {
                ServiceKey::Addr { vip, .. } => SocketAddr::new(vip.ip(), e.vport),
                ServiceKey::Fwmark { .. } => SocketAddr::new(server.addr().ip(), e.vport),
            };
            let state = if e.is_template() {
                "NONE"
            } else {
                match e.proto() {
                    Protocol::Udp => tcp::UDP_STATE_NAME,
                    Protocol::Tcp => TcpState::from_u8(e.state).unwrap_or(TcpState::None).name(),
                }
            };
            Some(ConnInfo {
                proto: e.proto(),
                client: e.client(),
                vip,
                server: server_endpoint(server.addr(), e.vport),
                state,
                expires_in: self.conns.deadline(h)?.saturating_since(now),
                template: e.is_template(),
            })
        })
    }

    /// Whether drained-server events were lost since the last call (too many at once for the
    /// director's queue); clears the flag. (Through the balancer, not `director_mut`, so the
    /// datapath's service cache stays warm.)
    pub fn drained_events_lost(&mut self) -> bool {
        self.director.drained_events_lost()
    }

    /// The next event for a controller (drained servers), oldest first. Poll after
    /// `process`/`handle_timeout`/`apply`.
    pub fn poll_event(&mut self) -> Option<Event> {
        let d = self.director.poll_drained()?;
        let service = self.director.service(d.service)?.config.key;
        Some(Event::Drained {
            service,
            server: d.addr,
        })
    }

    // ------------------------------------------------------------------ control

    /// Applies one ipvsadm command (`-A/-E/-D`, `-a/-e/-d`, `-C`, `-Z`, `--set`, and our
    /// settings). Listing, saving and restoring are the frontend's (they read
    /// [`director`](Balancer::director)); they return `Unsupported`. Call between packets;
    /// established flows are never moved: a changed scheduler affects new connections only.
    pub fn apply(&mut self, now: Instant, cmd: &Command) -> Result<(), ApplyError> {
        self.svc_cache = fast::SvcCache::EMPTY;
        match cmd {
            Command::AddService(cfg) => self.director.add_service(cfg).map(|_| ()),
            Command::EditService(cfg) => self.director.edit_service(cfg),
            Command::DelService(key) => self.director.del_service(key),
            Command::AddServer(key, cfg) => {
                check_method(cfg.method)?;
                self.director.add_server(key, cfg).map(|_| ())
            }
            Command::EditServer(key, cfg) => {
                check_method(cfg.method)?;
                self.director.edit_server(key, cfg)
            }
            Command::DelServer(key, addr) => self.director.del_server(key, *addr),
            Command::Clear => {
                self.director.clear();
                Ok(())
            }
            Command::Zero(key) => {
                self.director.zero_stats(key.as_ref())?;
                if key.is_none() {
                    self.zero_counters();
                }
                Ok(())
            }
            Command::SetTimeouts(t) => {
                self.settings.timeouts.apply_set(*t);
                Ok(())
            }
            Command::Set(s) => {
                match *s {
                    Setting::ConnReuseMode(m) => self.settings.conn_reuse_mode = m,
                    Setting::ExpireNodestConn(b) => self.settings.expire_nodest_conn = b,
                    Setting::ExpireQuiescentTemplate(b) => {
                        self.settings.expire_quiescent_template = b
                    }
                    Setting::SecureTcp(m) => self.settings.secure_tcp = m,
                    Setting::DropEntry(m) => self.settings.drop_entry = m,
                    Setting::SloppyTcp(b) => self.settings.sloppy_tcp = b,
                }
                self.update_defence();
                let _ = now;
                Ok(())
            }
            Command::List(_) | Command::Save { .. } | Command::Restore => Err(
                ConfigError::Unsupported("listing, saving and restoring belong to the frontend"),
            ),
        }
    }

    // ------------------------------------------------------------------ timers

    /// When [`handle_timeout`](Balancer::handle_timeout) must next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut t = self.director.poll_timeout();
        if let Some(c) = self.conns.next_deadline() {
            t = t.min(c);
        }
        if self.settings.secure_tcp == 1
            || self.settings.secure_tcp == 2
            || self.settings.drop_entry != 0
        {
            t = t.min(self.next_defence);
        }
        Some(t)
    }

    /// Expires idle entries, runs the director's timers (rate estimator, lblc/lblcr garbage
    /// collection) and the defences. Call when `poll_timeout()` has passed (calling it more
    /// often is harmless).
    pub fn handle_timeout(&mut self, now: Instant) {
        self.expire(now);
        self.director.handle_timeout(now);
        if now >= self.next_defence {
            self.next_defence = now + DEFENCE_PERIOD;
            self.update_defence();
            if self.dropping {
                self.drop_entries(now);
            }
        }
    }

    fn expire(&mut self, now: Instant) {
        while let Some(h) = self.conns.poll_expired(now) {
            let Some(e) = self.conns.get_mut(h) else {
                continue;
            };
            if e.is_template() && e.n_control() > 0 {
                // Still controls connections: deferred in 60 s steps (reference §2.7).
                e.set_timeout(TEMPLATE_DEFER);
                self.conns.touch(h, now + TEMPLATE_DEFER);
                continue;
            }
            self.remove_entry(h);
        }
    }

    /// A controlled connection of template `t` is gone.
    fn release_control(&mut self, t: Handle) {
        if let Some(tpl) = self.conns.get_mut(t) {
            let n = tpl.n_control();
            tpl.set_n_control(n.saturating_sub(1));
        }
    }

    /// Re-evaluates the automatic defence modes against the table's fill.
    fn update_defence(&mut self) {
        let cap = self.conns.capacity().max(1);
        let fill = self.conns.len() * 100 / cap;
        let high = fill >= usize::from(self.settings.defence_fill_percent);
        let level = |mode: &mut u8| -> bool {
            match *mode {
                1 if high => *mode = 2,
                2 if !high => *mode = 1,
                _ => {}
            }
            *mode >= 2
        };
        self.dos = level(&mut self.settings.secure_tcp);
        self.dropping = level(&mut self.settings.drop_entry);
    }

    /// IPVS's `ip_vs_random_dropentry`, one pass: scan 1/32 of the table (reference §4.6) and
    /// drop half-open TCP entries (SYN_RECV, SYNACK) and non-assured templates always, and
    /// ESTABLISHED TCP entries, UDP entries and one-packet services' templates by the rate rule.
    /// Entries that control others are never dropped.
    fn drop_entries(&mut self, now: Instant) {
        let cap = self.conns.capacity();
        if cap == 0 {
            return;
        }
        let span = (cap / 32).max(1);
        let start = self.drop_cursor % cap;
        self.drop_cursor = (start + span) % cap;
        for i in start..(start + span).min(cap) {
            let Some(h) = Handle::from_index(i) else {
                break;
            };
            let Some(e) = self.conns.get(h) else { continue };
            let last_use = self.conns.deadline(h).map_or(now, |d| {
                Instant::from_millis(d.millis().saturating_sub(e.timeout().millis()))
            });
            let rate = DropRule::Rate {
                last_use,
                in_pkts: e.in_pkts,
            };
            let rule = if e.is_template() {
                if e.n_control() > 0 {
                    DropRule::Keep
                } else if self
                    .director
                    .service(e.service)
                    .is_some_and(|s| s.config.one_packet)
                {
                    rate
                } else if e.flags.contains(ConnFlags::ASSURED) {
                    DropRule::Keep
                } else {
                    DropRule::Always
                }
            } else {
                match (e.proto(), TcpState::from_u8(e.state)) {
                    (Protocol::Tcp, Some(TcpState::SynRecv | TcpState::SynAck)) => DropRule::Always,
                    (Protocol::Tcp, Some(TcpState::Established)) | (Protocol::Udp, _) => rate,
                    _ => DropRule::Keep,
                }
            };
            let drop = match rule {
                DropRule::Keep => false,
                DropRule::Always => true,
                DropRule::Rate { last_use, in_pkts } => self.todrop(now, last_use, in_pkts),
            };
            if drop {
                self.remove_entry(h);
                self.counters.defence_drops += 1;
            }
        }
    }

    /// IPVS's `todrop_entry` rate rule: an entry idle for at least 60 s with `in_pkts` = i in
    /// 1..=8 is a candidate, and every i-th candidate with that count is dropped (one counter
    /// per i, shared by the whole table).
    fn todrop(&mut self, now: Instant, last_use: Instant, in_pkts: u8) -> bool {
        if now.saturating_since(last_use) < Duration::from_secs(60) {
            return false;
        }
        let i = usize::from(in_pkts);
        if i == 0 || i > 8 {
            return false;
        }
        self.todrop_counter[i] -= 1;
        if self.todrop_counter[i] > 0 {
            return false;
        }
        self.todrop_counter[i] = i as i8;
        true
    }

    /// Removes entry `h` now, releasing its counters and its template.
    fn remove_entry(&mut self, h: Handle) {
        let Some(e) = self.conns.remove(h) else {
            return;
        };
        self.generation += 1;
        if e.is_template() {
            self.director.unbind_template(e.server);
            return;
        }
        self.director
            .unbind_conn(e.server, e.flags.contains(ConnFlags::ACTIVE));
        if let Some(t) = e.control() {
            self.release_control(t);
        }
    }

    // ------------------------------------------------------------------ datapath

    /// Processes one IP packet (no link-layer header) held in `buf[..len]`; `buf`'s capacity
    /// bounds a generated reply. See [`Verdict`] for what to do next.
    pub fn process(&mut self, now: Instant, buf: &mut [u8], len: usize) -> Verdict {
        let len = len.min(buf.len());
        if let Some(f) = packet::parse_flow(&buf[..len]) {
            let (svc, hash) = self.look(&f);
            let found = self.find_flow(hash, &f, svc);
            return self.process_flow(now, buf, len, &f, svc, hash, found);
        }
        self.process_general(now, buf, len)
    }

    /// [`process`](Balancer::process) without the established-flow fast path
    /// ([`parse_flow`](packet::parse_flow) and what follows): every packet parsed in full and
    /// taken through the general path. The same verdicts, bytes and counters, only slower:
    /// the reference the differential tests and the fuzz target hold the fast path to.
    #[doc(hidden)]
    pub fn process_general(&mut self, now: Instant, buf: &mut [u8], len: usize) -> Verdict {
        let len = len.min(buf.len());
        match packet::parse(&buf[..len]) {
            Ok(ref p) => self.process_parsed(now, buf, len, p, Hint::None),
            Err(m) => self.unparsed(&buf[..len], m),
        }
    }

    /// Processes a burst of packets; `verdicts[i]` is the verdict for `pkts[i]`. Equivalent to
    /// calling [`process`](Balancer::process) on each in order, but the table lookups of the
    /// whole burst are issued together first, so their cache misses overlap.
    pub fn process_burst(
        &mut self,
        now: Instant,
        pkts: &mut [Packet<'_>],
        verdicts: &mut [Verdict],
    ) {
        const STAGE: usize = 32;
        let n = pkts.len().min(verdicts.len());
        let mut start = 0;
        while start < n {
            let end = (start + STAGE).min(n);
            let count = end - start;
            let mut flows = [Flow::EMPTY; STAGE];
            let mut staged = [Staged::No; STAGE];
            let mut hashes = [0u64; STAGE];
            let mut found: [Option<Handle>; STAGE] = [None; STAGE];
            // Stage 1: read the packets of the common shape (TCP/UDP, no IP options or
            // extension headers), find their live service (the services do not change during
            // a burst) and hash their client side: the source of a forward packet, the
            // destination of a reply. Other packets take the full path in stage 3.
            for (i, pkt) in pkts[start..end].iter().enumerate() {
                let len = pkt.len.min(pkt.buf.len());
                if let Some(f) = packet::parse_flow(&pkt.buf[..len]) {
                    let (svc, hash) = self.look(&f);
                    flows[i] = f;
                    hashes[i] = hash;
                    staged[i] = Staged::Flow(svc);
                }
            }
            // Stage 2: all index slots, then all entries, both directions.
            let gen = self.generation;
            {
                let director = &self.director;
                self.conns
                    .find_burst(&hashes[..count], &mut found[..count], |i, e| {
                        match staged[i] {
                            Staged::No => false,
                            Staged::Flow(svc) => flow_match(director, e, &flows[i], svc),
                        }
                    });
            }
            // Stage 3: state machine and rewrite, in order. The lookups stay valid while no
            // entry was inserted or removed.
            for i in 0..count {
                let pkt = &mut pkts[start + i];
                let len = pkt.len.min(pkt.buf.len());
                verdicts[start + i] = match staged[i] {
                    // Not of the common shape (parse_flow refused it in stage 1).
                    Staged::No => self.process_general(now, pkt.buf, len),
                    Staged::Flow(svc) => {
                        let f = &flows[i];
                        let h = if self.generation == gen {
                            found[i]
                        } else {
                            self.find_flow(hashes[i], f, svc)
                        };
                        self.process_flow(now, pkt.buf, len, f, svc, hashes[i], h)
                    }
                };
            }
            start = end;
        }
    }

    /// A packet lb-core cannot parse. Fragments and IPv6 extension-header chains that are not
    /// addressed to a virtual address pass on untouched, as a router would; those to a VIP are
    /// counted drops (no reassembly, no extension-header walk). Anything else malformed is a
    /// counted drop.
    fn unparsed(&mut self, pkt: &[u8], m: Malformed) -> Verdict {
        if matches!(m, Malformed::Fragment | Malformed::Ipv6ExtensionHeaders) {
            if let Some(dst) = raw_destination(pkt) {
                if !self.is_vip(dst) {
                    return self.pass();
                }
            }
        }
        self.drop(malformed_reason(m), false)
    }

    fn process_parsed(
        &mut self,
        now: Instant,
        buf: &mut [u8],
        len: usize,
        p: &Parsed,
        hint: Hint,
    ) -> Verdict {
        match p.kind {
            Kind::Transport => {
                let Some(proto) = p.transport() else {
                    return self.not_ours(buf, len, p);
                };
                let (svc, found) = match hint {
                    Hint::Forward(svc, hash, found) => (Some(svc), Some((hash, found))),
                    Hint::Reply(_) => (None, None),
                    Hint::None => (self.director.lookup(proto, p.dst, None), None),
                };
                if let Some(svc) = svc {
                    return self.inbound(now, buf, len, p, proto, svc, found);
                }
                let reply = match hint {
                    Hint::Reply(found) => found,
                    _ => self.find_reply(proto, p.src, p.dst),
                };
                if let Some(h) = reply {
                    return self.outbound(now, buf, len, p, proto, h);
                }
                match self.director.unmatched(proto, p.dst) {
                    // Flows of a deleted service: expired and answered like a removed server's.
                    Unmatched::Retired(svc) => self.inbound(now, buf, len, p, proto, svc, None),
                    Unmatched::Vip => self.answer_unserved(buf, len, p),
                    Unmatched::Other => self.pass(),
                }
            }
            Kind::IcmpError(ie) => self.icmp_error(buf, len, p, &ie),
            Kind::EchoRequest => {
                if self.is_vip(p.dst.ip()) {
                    match self.reply_with(buf, |out, b| nat::write_echo_reply(out, &b[..len], p)) {
                        Verdict::Drop(reason) => self.drop(reason, false),
                        v => v,
                    }
                } else {
                    self.pass()
                }
            }
            Kind::Other => self.not_ours(buf, len, p),
        }
    }

    /// A packet that is neither for a service nor a reply of a tracked flow: pass it on, unless
    /// it is addressed to a virtual address, where it would loop.
    fn not_ours(&mut self, buf: &mut [u8], len: usize, p: &Parsed) -> Verdict {
        if !self.is_vip(p.dst.ip()) {
            return self.pass();
        }
        self.answer_unserved(buf, len, p)
    }

    /// A packet to a virtual address on a port or protocol no service serves: answered (TCP
    /// RST, ICMP port unreachable) or dropped, never passed on.
    fn answer_unserved(&mut self, buf: &mut [u8], len: usize, p: &Parsed) -> Verdict {
        match p.transport() {
            Some(Protocol::Tcp) => self.answer_tcp(buf, len, p, DropReason::NoService),
            Some(Protocol::Udp) => self.answer_udp(buf, len, p, DropReason::NoService),
            None => self.drop(DropReason::NoService, false),
        }
    }

    /// Client → virtual service (reference §3.2 `ip_vs_in_hook`).
    #[allow(clippy::too_many_arguments)]
    fn inbound(
        &mut self,
        now: Instant,
        buf: &mut [u8],
        len: usize,
        p: &Parsed,
        proto: Protocol,
        svc: ServiceId,
        found: Option<(u64, Option<Handle>)>,
    ) -> Verdict {
        let syn = proto == Protocol::Tcp && p.tcp_flags & tcp::flags::SYN != 0;
        let rst = proto == Protocol::Tcp && p.tcp_flags & tcp::flags::RST != 0;
        let (mut found, hash) = match found {
            Some((hash, f)) => (f, Some(hash)),
            None => {
                let hash = self.conns.hash(proto, p.src.ip(), p.src.port());
                let director = &self.director;
                let f = self
                    .conns
                    .find(hash, |e| forward_match(director, e, p, proto, Some(svc)));
                (f, Some(hash))
            }
        };

        // Step 1: a SYN on an existing entry (reference §3.2 step 1).
        if let (Some(h), true) = (found, syn) {
            if let Some(e) = self.conns.get(h) {
                let server = self.director.server(e.server);
                let quiescent = server.is_some_and(|s| s.available && s.weight() == 0);
                if self.settings.expire_nodest_conn && quiescent {
                    self.remove_entry(h);
                    self.counters.quiescent_reschedules += 1;
                    found = None;
                } else if self.reusable(e) {
                    self.remove_entry(h);
                    self.counters.reuse_reschedules += 1;
                    found = None;
                }
            }
        }

        // Step 2: the entry's server was removed. (An entry that stays gives step 4 its
        // server and destination: one look-up of each per packet.)
        let mut target = None;
        if let Some(h) = found {
            let mut available = false;
            if let Some(e) = self.conns.get(h) {
                if let Some(s) = self.director.server(e.server) {
                    available = s.available;
                    target = Some((e.server, e.service, server_endpoint(s.addr(), e.vport)));
                }
            }
            if !available {
                if !self.settings.expire_nodest_conn {
                    return self.drop(DropReason::NoDest, syn);
                }
                self.remove_entry(h);
                found = None;
                if proto == Protocol::Tcp && !syn {
                    self.counters.nodest_resets += 1;
                    return self.answer_tcp(buf, len, p, DropReason::NoDest);
                }
                self.counters.nodest_reschedules += 1;
            }
        }

        let h = match found {
            Some(h) => h,
            None => {
                // Step 3: schedule a new connection.
                // A RST never creates an entry, not even with SYN set (reference §4.10;
                // `tcp_conn_schedule`: `(th->syn || sloppy_tcp) && !th->rst`).
                let may_create = match proto {
                    Protocol::Udp => true,
                    Protocol::Tcp => (syn || self.settings.sloppy_tcp) && !rst,
                };
                if !may_create {
                    return if rst {
                        self.drop(DropReason::NoConnection, false)
                    } else {
                        self.answer_tcp(buf, len, p, DropReason::NoConnection)
                    };
                }
                let hash = hash.unwrap_or_else(|| self.conns.hash(proto, p.src.ip(), p.src.port()));
                match self.new_conn(now, p, proto, svc, hash) {
                    Ok(NewConn::Entry(h)) => h,
                    Ok(NewConn::OnePacket(server)) => {
                        // One-packet scheduling: nothing to keep.
                        return self.forward_ops(buf, len, p, server);
                    }
                    Err(NewConnError::NoServer) => {
                        self.counters.no_server += 1;
                        return match proto {
                            Protocol::Tcp => self.answer_tcp(buf, len, p, DropReason::NoService),
                            Protocol::Udp => self.answer_udp(buf, len, p, DropReason::NoService),
                        };
                    }
                    Err(NewConnError::TableFull) => return self.drop(DropReason::TableFull, syn),
                }
            }
        };

        // Step 4: state transition, rewrite, statistics.
        let (server_id, svc_id, dest) = match (found, target) {
            (Some(_), Some(t)) => t,
            _ => {
                let Some(e) = self.conns.get(h) else {
                    return self.drop(DropReason::NoConnection, syn);
                };
                let (server_id, svc_id) = (e.server, e.service);
                let Some(dest) = self.endpoint_of(e) else {
                    return self.drop(DropReason::NoDest, syn);
                };
                (server_id, svc_id, dest)
            }
        };
        self.transition(now, h, Dir::In, p.tcp_flags);
        if nat::rewrite_dst(&mut buf[..len], p, dest).is_err() {
            return self.drop(DropReason::Malformed, syn);
        }
        self.director.count_conn(server_id, svc_id, len, false);
        Verdict::ToServer
    }

    /// One-packet scheduling (UDP, `-o`): forward to `server`, keeping no entry (IPVS creates
    /// one and frees it at once: counters go up and down).
    fn forward_ops(&mut self, buf: &mut [u8], len: usize, p: &Parsed, server: ServerId) -> Verdict {
        let Some(addr) = self.director.server(server).map(|s| s.addr()) else {
            return self.drop(DropReason::NoDest, false);
        };
        self.director.bind_conn(server);
        self.counters.conns_created += 1;
        let dest = server_endpoint(addr, p.dst.port());
        let verdict = if nat::rewrite_dst(&mut buf[..len], p, dest).is_ok() {
            self.director.count_in(server, len);
            Verdict::ToServer
        } else {
            self.drop(DropReason::Malformed, false)
        };
        self.director.unbind_conn(server, false);
        verdict
    }

    /// Whether a SYN may reuse the client port of entry `e` by rescheduling (reference §3.1).
    fn reusable(&self, e: &Entry) -> bool {
        let mode = self.settings.conn_reuse_mode;
        if mode == 0 || e.proto() != Protocol::Tcp || e.control().is_some() {
            return false;
        }
        match TcpState::from_u8(e.state) {
            Some(TcpState::TimeWait | TcpState::Close) => true,
            Some(TcpState::FinWait) => mode & 2 != 0 && e.flags.contains(ConnFlags::NOOUTPUT),
            _ => false,
        }
    }

    /// Creates the entry for a new connection: persistence template first (reference §4.3),
    /// else the scheduler. A one-packet UDP service keeps no entry: only the server is chosen.
    fn new_conn(
        &mut self,
        now: Instant,
        p: &Parsed,
        proto: Protocol,
        svc: ServiceId,
        hash: u64,
    ) -> Result<NewConn, NewConnError> {
        let Some(service) = self.director.service(svc) else {
            return Err(NewConnError::NoServer);
        };
        let one_packet = service.config.one_packet && proto == Protocol::Udp;
        let persistent = service.config.persistence.is_some();
        if one_packet {
            let server = if persistent {
                // The template is still created and used.
                self.template_server(now, p, proto, svc)
            } else {
                self.pick_server(now, p, proto, svc)
            };
            return server.map(NewConn::OnePacket).ok_or(NewConnError::NoServer);
        }
        let (server, template) = if persistent {
            let t = self.template_for(now, p, proto, svc)?;
            let server = self
                .conns
                .get(t)
                .map(|e| e.server)
                .ok_or(NewConnError::NoServer)?;
            (server, Some(t))
        } else {
            let server = self
                .pick_server(now, p, proto, svc)
                .ok_or(NewConnError::NoServer)?;
            (server, None)
        };
        let method = self
            .director
            .server(server)
            .map(|s| s.config.method)
            .ok_or(NewConnError::NoServer)?;
        let mut e = Entry::new(proto, p.src);
        e.vport = p.dst.port();
        e.service = svc;
        e.server = server;
        e.state = TcpState::None as u8;
        if method != ForwardMethod::Masq {
            e.flags.set(ConnFlags::NOOUTPUT, true);
        }
        e.set_control(template);
        e.set_timeout(tcp::INITIAL_TIMEOUT);
        let h = self.insert(now, e, hash)?;
        if let Some(t) = template {
            if let Some(tpl) = self.conns.get_mut(t) {
                let n = tpl.n_control();
                tpl.set_n_control(n + 1);
                let timeout = tpl.timeout();
                self.conns.touch(t, now + timeout);
            }
        }
        self.director.bind_conn(server);
        self.counters.conns_created += 1;
        Ok(NewConn::Entry(h))
    }

    /// Runs the service's scheduler for the packet's client.
    fn pick_server(
        &mut self,
        now: Instant,
        p: &Parsed,
        proto: Protocol,
        svc: ServiceId,
    ) -> Option<ServerId> {
        let input = SchedInput {
            proto,
            client: p.src,
            dst: p.dst,
        };
        self.director.schedule(svc, &input, now)
    }

    /// The server of the persistence template for this packet's client (creating the
    /// template if needed), for one-packet services.
    fn template_server(
        &mut self,
        now: Instant,
        p: &Parsed,
        proto: Protocol,
        svc: ServiceId,
    ) -> Option<ServerId> {
        let t = self.template_for(now, p, proto, svc).ok()?;
        let e = self.conns.get(t)?;
        let server = e.server;
        let timeout = e.timeout();
        self.conns.touch(t, now + timeout);
        Some(server)
    }

    /// Finds a valid persistence template for the packet's client, or schedules and creates
    /// one (reference §4.2 `ip_vs_check_template`, §4.3).
    fn template_for(
        &mut self,
        now: Instant,
        p: &Parsed,
        proto: Protocol,
        svc: ServiceId,
    ) -> Result<Handle, NewConnError> {
        let Some(service) = self.director.service(svc) else {
            return Err(NewConnError::NoServer);
        };
        let Some(pers) = service.config.persistence else {
            return Err(NewConnError::NoServer);
        };
        let vport = match service.config.key {
            ServiceKey::Addr { vip, .. } => vip.port(),
            ServiceKey::Fwmark { .. } => 0,
        };
        let caddr = mask(p.src.ip(), pers.prefix);
        let hash = self.conns.hash(proto, caddr, 0);
        let found = self.conns.find(hash, |e| {
            e.is_template()
                && !e.flags.contains(INVALID)
                && e.service == svc
                && e.vport == vport
                && e.key_matches(proto, caddr, 0)
        });
        if let Some(t) = found {
            let valid = self.conns.get(t).is_some_and(|e| {
                self.director.server(e.server).is_some_and(|s| {
                    s.available && !(self.settings.expire_quiescent_template && s.weight() == 0)
                })
            });
            if valid {
                return Ok(t);
            }
            // Invalid: never matched again; freed now if it controls nothing, else it expires
            // on its own timer once its connections are gone.
            let n = self.conns.get(t).map_or(0, |e| e.n_control());
            if n == 0 {
                self.remove_entry(t);
            } else if let Some(e) = self.conns.get_mut(t) {
                e.flags.set(INVALID, true);
            }
        }
        let server = self
            .pick_server(now, p, proto, svc)
            .ok_or(NewConnError::NoServer)?;
        let mut tpl = Entry::template(proto, caddr, 0);
        tpl.vport = vport;
        tpl.service = svc;
        tpl.server = server;
        tpl.set_timeout(Duration::from_secs(u64::from(pers.timeout_secs)));
        let hash = self.conns.hash_of(&tpl);
        let t = self.insert(now, tpl, hash)?;
        self.director.bind_template(server);
        Ok(t)
    }

    /// Inserts `e` (its timeout set; `hash` = `ConnTable::hash_of(&e)`, which the caller
    /// usually has from its lookup), evicting the oldest TIME_WAIT/CLOSE entry if the table is
    /// full (reference-free: IPVS's table has unbounded chains).
    fn insert(&mut self, now: Instant, e: Entry, hash: u64) -> Result<Handle, NewConnError> {
        let deadline = now + e.timeout();
        if let Ok(h) = self.conns.insert_hashed(e, deadline, hash) {
            self.generation += 1;
            return Ok(h);
        }
        let victim = self.conns.evict_candidate(now, |v| {
            !v.is_template()
                && v.proto() == Protocol::Tcp
                && matches!(
                    TcpState::from_u8(v.state),
                    Some(TcpState::TimeWait | TcpState::Close)
                )
        });
        let Some(v) = victim else {
            return Err(NewConnError::TableFull);
        };
        self.remove_entry(v);
        self.counters.evictions += 1;
        let h = self
            .conns
            .insert_hashed(e, deadline, hash)
            .map_err(|_| NewConnError::TableFull)?;
        self.generation += 1;
        Ok(h)
    }

    /// Applies the protocol state machine to entry `h` for a packet in direction `dir`, re-arms
    /// its idle timer and, for a forward packet (`Dir::In`), counts it in the entry's `in_pkts`
    /// (reference §2.3–2.8). One pass over the entry.
    fn transition(&mut self, now: Instant, h: Handle, dir: Dir, tcp_flags: u8) {
        let dos = self.dos;
        let timeouts = &self.settings.timeouts;
        let r = self.conns.update(h, |e| {
            let mut assure = false;
            let mut active_change = None;
            let timeout = match e.proto() {
                Protocol::Udp => {
                    assure = matches!(dir, Dir::Out);
                    timeouts.udp()
                }
                Protocol::Tcp => {
                    let table_dir = match dir {
                        Dir::Out => {
                            e.flags.set(ConnFlags::NOOUTPUT, false);
                            Direction::Output
                        }
                        Dir::In if e.flags.contains(ConnFlags::NOOUTPUT) => Direction::InputOnly,
                        Dir::In => Direction::Input,
                    };
                    let cur = TcpState::from_u8(e.state).unwrap_or(TcpState::None);
                    let new = tcp::next_state(dos, table_dir, tcp_flags, cur);
                    if new != cur {
                        let was = e.flags.contains(ConnFlags::ACTIVE);
                        let now_active = new.is_active();
                        if was != now_active {
                            e.flags.set(ConnFlags::ACTIVE, now_active);
                            active_change = Some(now_active);
                        }
                        e.state = new as u8;
                        assure = new == TcpState::Established;
                    }
                    timeouts.timeout(new)
                }
            };
            e.set_timeout(timeout);
            if let Dir::In = dir {
                e.count_in_pkt();
            }
            let control = if assure { e.control() } else { None };
            (now + timeout, (e.server, active_change, control))
        });
        let Some((server, active_change, control)) = r else {
            return;
        };
        if let Some(a) = active_change {
            self.director.set_active(server, a);
        }
        if let Some(t) = control {
            if let Some(tpl) = self.conns.get_mut(t) {
                tpl.flags.set(ConnFlags::ASSURED, true);
            }
        }
    }

    /// Real server → client (reference §6.1 `handle_response`).
    fn outbound(
        &mut self,
        now: Instant,
        buf: &mut [u8],
        len: usize,
        p: &Parsed,
        proto: Protocol,
        h: Handle,
    ) -> Verdict {
        let Some(e) = self.conns.get(h) else {
            return self.pass();
        };
        let (server, svc) = (e.server, e.service);
        let Some(vip) = self.vip_of(e) else {
            return self.pass();
        };
        let _ = proto;
        self.transition(now, h, Dir::Out, p.tcp_flags);
        if nat::rewrite_src(&mut buf[..len], p, vip).is_err() {
            return self.drop(DropReason::Malformed, false);
        }
        self.director.count_conn(server, svc, len, true);
        Verdict::ToClient
    }

    /// ICMP errors about a tracked flow: rewrite outer and embedded headers (reference §6.1).
    fn icmp_error(&mut self, buf: &mut [u8], len: usize, p: &Parsed, ie: &IcmpError) -> Verdict {
        // From the client side, about a reply we sent (VIP:vport → client).
        if self.director.lookup(ie.proto, ie.src, None).is_some() {
            let hash = self.conns.hash(ie.proto, ie.dst.ip(), ie.dst.port());
            let director = &self.director;
            let (proto, vip) = (ie.proto, ie.src);
            let found = self.conns.find(hash, |e| {
                !e.is_template()
                    && e.key_matches(proto, ie.dst.ip(), ie.dst.port())
                    && e.vport == vip.port()
                    && director
                        .service(e.service)
                        .is_some_and(|s| service_has_vip(&s.config.key, vip))
            });
            if let Some(dest) = found
                .and_then(|h| self.conns.get(h))
                .and_then(|e| self.endpoint_of(e))
            {
                return match nat::rewrite_icmp_to_server(&mut buf[..len], p, dest) {
                    Ok(()) => Verdict::ToServer,
                    Err(_) => self.drop(DropReason::Malformed, false),
                };
            }
            return self.drop(DropReason::NoConnection, false);
        }
        // From the server side, about a packet we forwarded (client → RIP:rport).
        if let Some(h) = self.find_reply(ie.proto, ie.dst, ie.src) {
            if let Some(vip) = self.conns.get(h).and_then(|e| self.vip_of(e)) {
                return match nat::rewrite_icmp_to_client(&mut buf[..len], p, vip) {
                    Ok(()) => Verdict::ToClient,
                    Err(_) => self.drop(DropReason::Malformed, false),
                };
            }
        }
        if self.is_vip(p.dst.ip()) {
            return self.drop(DropReason::NoConnection, false);
        }
        self.pass()
    }

    /// The entry of a reply from `server_side` to `client`, if we track it.
    fn find_reply(
        &self,
        proto: Protocol,
        server_side: SocketAddr,
        client: SocketAddr,
    ) -> Option<Handle> {
        let hash = self.conns.hash(proto, client.ip(), client.port());
        let director = &self.director;
        self.conns.find(hash, |e| {
            reply_match(director, e, proto, server_side, client)
        })
    }

    /// Where packets of entry `e` go: its server's address and port (the virtual port for a
    /// port-0 server).
    fn endpoint_of(&self, e: &Entry) -> Option<SocketAddr> {
        self.director
            .server(e.server)
            .map(|s| server_endpoint(s.addr(), e.vport))
    }

    /// The virtual address and port a reply of entry `e` must come from.
    fn vip_of(&self, e: &Entry) -> Option<SocketAddr> {
        match self.director.service(e.service)?.config.key {
            ServiceKey::Addr { vip, .. } => Some(SocketAddr::new(vip.ip(), e.vport)),
            ServiceKey::Fwmark { .. } => None,
        }
    }

    // ------------------------------------------------------------------ verdicts

    fn pass(&mut self) -> Verdict {
        self.counters.passed += 1;
        Verdict::Pass
    }

    fn drop(&mut self, reason: DropReason, syn: bool) -> Verdict {
        self.counters.drops[reason.index()] += 1;
        if syn {
            self.counters.syn_drops += 1;
        }
        Verdict::Drop(reason)
    }

    /// Answers a TCP packet with a RST (never a RST to a RST); `reason` counts a drop when no
    /// answer is possible.
    fn answer_tcp(
        &mut self,
        buf: &mut [u8],
        len: usize,
        p: &Parsed,
        reason: DropReason,
    ) -> Verdict {
        if p.tcp_flags & tcp::flags::RST != 0 {
            return self.drop(reason, false);
        }
        let syn = p.tcp_flags & tcp::flags::SYN != 0;
        let v = self.reply_with(buf, |out, b| nat::write_tcp_rst(out, p, &b[..len]));
        if let Verdict::Drop(_) = v {
            return self.drop(reason, syn);
        }
        v
    }

    /// Answers a UDP packet with ICMP port unreachable from the address it was sent to.
    fn answer_udp(
        &mut self,
        buf: &mut [u8],
        len: usize,
        p: &Parsed,
        reason: DropReason,
    ) -> Verdict {
        let src = p.dst.ip();
        let v = self.reply_with(buf, |out, b| {
            nat::write_icmp_port_unreachable(out, &b[..len], p, src)
        });
        if let Verdict::Drop(_) = v {
            return self.drop(reason, false);
        }
        v
    }

    /// Builds a reply in the scratch buffer, then copies it over the packet.
    fn reply_with(
        &mut self,
        buf: &mut [u8],
        write: impl FnOnce(&mut [u8], &[u8]) -> Option<usize>,
    ) -> Verdict {
        let cap = buf.len().min(REPLY_MAX);
        let Some(n) = write(&mut self.scratch[..cap], buf) else {
            return Verdict::Drop(DropReason::NoRoomForReply);
        };
        buf[..n].copy_from_slice(&self.scratch[..n]);
        self.counters.replies += 1;
        Verdict::Reply { len: n }
    }
}

/// How the drop_entry defence treats an entry (reference §4.6).
enum DropRule {
    /// Never dropped.
    Keep,
    /// Dropped whenever scanned.
    Always,
    /// Dropped by IPVS's rate rule (idle ≥ 60 s, every i-th with `in_pkts` = i).
    Rate { last_use: Instant, in_pkts: u8 },
}

/// A spare connection-flag bit: the template may no longer be used (IPVS rehashes such a
/// template so it never matches again).
const INVALID: ConnFlags = ConnFlags(0x10);

enum NewConn {
    Entry(Handle),
    OnePacket(ServerId),
}

enum NewConnError {
    NoServer,
    TableFull,
}

/// What a burst's first stage found out about a packet.
#[derive(Clone, Copy)]
enum Staged {
    /// Not of the common shape: the full path, in order.
    No,
    /// A [`Flow`] for this live service, or for none (looked up as a reply).
    Flow(Option<ServiceId>),
}

/// Look-ups already made for a packet (valid while no entry was inserted or removed).
#[derive(Clone, Copy)]
enum Hint {
    /// None: look everything up.
    None,
    /// The packet's live service, its flow hash and its connection entry, if any.
    Forward(ServiceId, u64, Option<Handle>),
    /// No live service; the reply's entry, if any.
    Reply(Option<Handle>),
}

/// Whether entry `e` is the connection of forward packet `p` (client → VIP:vport) of protocol
/// `proto`. `svc`, when given, is the service `Director::lookup` (or `unmatched`) found for
/// `p`: an entry of that service has the packet's VIP, so its service need not be read.
#[inline]
fn forward_match(
    director: &Director<'_>,
    e: &Entry,
    p: &Parsed,
    proto: Protocol,
    svc: Option<ServiceId>,
) -> bool {
    !e.is_template()
        && e.key_matches(proto, p.src.ip(), p.src.port())
        && e.vport == p.dst.port()
        && (Some(e.service) == svc
            || director
                .service(e.service)
                .is_some_and(|s| service_has_vip(&s.config.key, p.dst)))
}

/// Whether entry `e` is the connection of a reply from `server_side` to `client`.
#[inline]
fn reply_match(
    director: &Director<'_>,
    e: &Entry,
    proto: Protocol,
    server_side: SocketAddr,
    client: SocketAddr,
) -> bool {
    !e.is_template()
        && e.key_matches(proto, client.ip(), client.port())
        && director.server(e.server).is_some_and(|s| {
            // Address and port only (not an IPv6 flow label or scope id the configuration
            // may carry).
            let end = server_endpoint(s.addr(), e.vport);
            end.ip() == server_side.ip() && end.port() == server_side.port()
        })
}

/// Whether `key` is the service for packets to `dst` (a port-0 service takes any port).
#[inline]
fn service_has_vip(key: &ServiceKey, dst: SocketAddr) -> bool {
    match key {
        ServiceKey::Addr { vip, .. } => {
            vip.ip() == dst.ip() && (vip.port() == dst.port() || vip.port() == 0)
        }
        ServiceKey::Fwmark { .. } => false,
    }
}

/// A server's endpoint for a connection to virtual port `vport`: its own port, or the virtual
/// port when its port is 0.
#[inline]
fn server_endpoint(addr: SocketAddr, vport: u16) -> SocketAddr {
    if addr.port() == 0 {
        SocketAddr::new(addr.ip(), vport)
    } else {
        addr
    }
}

fn check_method(m: ForwardMethod) -> Result<(), ConfigError> {
    match m {
        ForwardMethod::Masq => Ok(()),
        ForwardMethod::Route => Err(ConfigError::Unsupported(
            "direct routing (-g): lb-core forwards by NAT only; use -m",
        )),
        ForwardMethod::Tunnel => Err(ConfigError::Unsupported(
            "tunnelling (-i): lb-core forwards by NAT only; use -m",
        )),
    }
}

/// The destination address of a packet whose fixed IP header is intact.
fn raw_destination(pkt: &[u8]) -> Option<IpAddr> {
    match pkt.first()? >> 4 {
        4 => {
            let b: [u8; 4] = pkt.get(16..20)?.try_into().ok()?;
            Some(IpAddr::from(b))
        }
        6 => {
            let b: [u8; 16] = pkt.get(24..40)?.try_into().ok()?;
            Some(IpAddr::from(b))
        }
        _ => None,
    }
}

fn malformed_reason(m: Malformed) -> DropReason {
    match m {
        Malformed::BadIpv4HeaderChecksum => DropReason::BadIpChecksum,
        Malformed::Fragment => DropReason::Fragment,
        Malformed::Ipv6ExtensionHeaders => DropReason::Ipv6ExtensionHeaders,
        _ => DropReason::Malformed,
    }
}

mod fast;
use fast::flow_match;
#[cfg(test)]
mod tests;
