//! The gateway: a smoltcp device in, lb-core's balancer in the middle, the same device out.
//!
//! See the [crate docs](crate) for the packet path. Call [`Gateway::poll`] whenever the device
//! may have received something or [`Gateway::poll_at`] has passed; configure it between polls
//! with [`Gateway::apply`] or [`Gateway::apply_line`] (ipvsadm command lines).
//!
//! This file holds the gateway's state, configuration and poll loop; the packet path is split
//! by concern:
//!
//! * `rx.rs`: a received frame's way in — link-layer filtering, the own addresses' traffic to
//!   smoltcp's interface, everything else through the balancer.
//! * `nd.rs`: neighbour discovery — answering ARP and neighbour solicitations for virtual
//!   addresses, learning neighbours, resolving next hops.
//! * `tx.rs`: a packet's way out — route, next hop's hardware address (or the hold queue while
//!   it resolves), the device.
//! * `sync.rs`: the connection-sync daemons' UDP socket (docs/sync.md).
//! * `probe.rs`: the health checker's probes, lb-probe's TCP sockets on the interface
//!   (docs/health-checks.md).

use core::fmt;
use core::net::IpAddr;

use lb_core::ipvsadm::{self, Command};
use lb_core::{
    Balancer, ConfigError, DirectorStorage, Duration, Event, Instant, Secrets, Settings,
};
use smoltcp::iface::{Config, Interface, PollResult, SocketSet, SocketStorage};
use smoltcp::phy::{Device, Medium};
use smoltcp::time::Instant as SmolInstant;
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpAddress, IpCidr};

use crate::neighbour::{Due, Hold, Neighbours};
use crate::phy::TxOnly;
use crate::route::{Route, Routes};
use crate::{GatewayResources, FRAME_BUFFER, HEADROOM, LINK_HEADER, MAX_FRAME};

mod nd;
#[cfg(feature = "health")]
mod probe;
mod rx;
#[cfg(feature = "sync")]
mod sync;
mod tx;

#[cfg(feature = "health")]
pub use probe::ProbeResources;
#[cfg(feature = "sync")]
pub use sync::{SyncResources, SYNC_BUFFER};

#[cfg(test)]
mod testkit;

/// Frames read from the device per [`Gateway::poll`], at most.
pub const RX_BURST: usize = 32;

/// Where a received frame starts in the frame buffer (its link header; an IP-medium frame
/// starts `LINK_HEADER` later, where an Ethernet frame's IP packet does): behind the
/// [`HEADROOM`] a tunnel's outer headers take.
const RX_AT: usize = HEADROOM;

/// Where a received IP packet starts in the frame buffer, on every medium.
const IP_AT: usize = RX_AT + LINK_HEADER;

/// How a gateway starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GatewayConfig {
    /// The gateway's hardware address on `Medium::Ethernet` (ignored on `Medium::Ip`); must be
    /// unicast.
    pub hardware_addr: EthernetAddress,
    /// The balancer's secrets: the connection table's 16-byte hash key and the schedulers'
    /// seed, each its own (lb-core's [`Secrets`]).
    pub secrets: Secrets,
    /// smoltcp's interface seed (the gateway's own traffic), apart from the secrets.
    pub seed: u64,
    /// The balancer's settings (IPVS's sysctls). The gateway sets
    /// [`Settings::direct_routing`] itself: on for an Ethernet device, which sends every
    /// packet to its next hop's hardware address (a DR packet, still addressed to the VIP, to
    /// the real server's), off for an IP-medium device, which cannot.
    pub settings: Settings,
    /// Whether packets the balancer does not own (`Verdict::Pass`) are routed on, as a router
    /// would (TTL / hop limit decremented). Default `true`; `false` drops them (counted).
    pub forward_other: bool,
}

impl GatewayConfig {
    /// Defaults (lb-core's settings, other traffic routed on) with 32 random bytes from the
    /// device's RNG, read once at boot: the first 24 are the balancer's [`Secrets`] (16 key the
    /// connection table's hash, 8 seed the schedulers), the last 8 seed smoltcp's interface.
    /// No part is used for two things.
    pub fn new(hardware_addr: EthernetAddress, random: [u8; 32]) -> Self {
        let mut secrets = [0u8; 24];
        secrets.copy_from_slice(&random[..24]);
        let mut seed = [0u8; 8];
        seed.copy_from_slice(&random[24..]);
        GatewayConfig {
            hardware_addr,
            secrets: Secrets::from_bytes(secrets),
            seed: u64::from_le_bytes(seed),
            settings: Settings::default(),
            forward_other: true,
        }
    }

    /// Every secret derived from one 64-bit seed, for tests and simulations that must replay
    /// the same decisions. Not for a deployment: 64 bits are guessable and the parts are
    /// related; use [`new`](Self::new) with random bytes.
    pub fn from_seed(hardware_addr: EthernetAddress, seed: u64) -> Self {
        let s = seed;
        let mut flow_key = [0u8; 16];
        flow_key[..8].copy_from_slice(&(s ^ 0x736f_6d65_7073_6575).to_le_bytes());
        flow_key[8..].copy_from_slice(&(s.rotate_left(29) ^ 0x646f_7261_6e64_6f83).to_le_bytes());
        GatewayConfig {
            hardware_addr,
            secrets: Secrets {
                flow_key,
                sched_seed: s.rotate_left(17) ^ 0x6c62_2d65_6d62_6564,
            },
            seed,
            settings: Settings::default(),
            forward_other: true,
        }
    }
}

/// Why the gateway could not be built or configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GatewayError {
    /// The device's medium is neither `Ip` nor `Ethernet`.
    UnsupportedMedium,
    /// The hardware address is not unicast.
    BadHardwareAddress,
    /// smoltcp's interface holds no more addresses (`iface-max-addr-count-*`, default 2).
    AddressesFull,
    /// The route table is full.
    RoutesFull,
}

impl core::error::Error for GatewayError {}

impl fmt::Display for GatewayError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            GatewayError::UnsupportedMedium => "the device's medium is neither Ip nor Ethernet",
            GatewayError::BadHardwareAddress => "the hardware address is not unicast",
            GatewayError::AddressesFull => "the interface has no room for another address",
            GatewayError::RoutesFull => "the route table is full",
        })
    }
}

/// Why [`Gateway::apply_line`] failed: lb-core's [`LineError`], re-exported.
pub use lb_core::ipvsadm::LineError;

/// The gateway's own counters (the balancer's are [`Balancer::counters`], per service and
/// server in its `Director`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GatewayCounters {
    /// Frames read from the device.
    pub rx_frames: u64,
    /// Frames handed to the smoltcp interface (the gateway's own traffic).
    pub rx_own: u64,
    /// Frames ignored: for another hardware address, our own reflected, unknown ethertype,
    /// malformed ARP.
    pub rx_ignored: u64,
    /// Own frames the interface could not take (the device had no transmit buffer for it).
    pub own_dropped: u64,
    /// Packets the balancer rewrote (`ToServer`, `ToClient`) and that were routed.
    pub forwarded: u64,
    /// Replies the balancer generated (RST, ICMP errors, echo replies to a VIP).
    pub replies: u64,
    /// Other packets routed on (`Verdict::Pass`).
    pub passed: u64,
    /// `Verdict::Pass` packets dropped because `forward_other` is off.
    pub not_forwarded: u64,
    /// Packets the balancer dropped (their reasons are in the balancer's counters).
    pub balancer_drops: u64,
    /// ARP requests for a virtual address answered.
    pub arp_answers: u64,
    /// Neighbour solicitations for a virtual address answered.
    pub ndp_answers: u64,
    /// ARP requests and neighbour solicitations sent to resolve next hops.
    pub requests_sent: u64,
    /// Frames held while their next hop was resolved.
    pub held: u64,
    /// Frames dropped: the hold queue or the neighbour cache was full.
    pub hold_full_drops: u64,
    /// Held frames dropped because their next hop never answered.
    pub unresolved_drops: u64,
    /// Packets with no route.
    pub no_route: u64,
    /// Packets whose next hop is the gateway itself or a virtual address (a routing loop).
    pub loop_drops: u64,
    /// Forwarded (balanced or passed) packets whose TTL / hop limit ran out.
    pub ttl_expired: u64,
    /// Packets longer than the device's MTU, [`MAX_FRAME`] or the frame buffer
    /// (among them IPv4 packets without DF that a tunnel's headers made too long: the gateway
    /// does not fragment).
    pub oversize: u64,
    /// Frames dropped because the device had no transmit buffer.
    pub tx_full: u64,
    /// Sync messages the master handed to the sync socket.
    pub sync_sent: u64,
    /// Sync messages the master built that no socket could take (dropped).
    pub sync_unsent: u64,
    /// Datagrams to the backup daemon's group and port, handed to the balancer (what it made
    /// of them: [`Balancer::sync_stats`]).
    pub sync_received: u64,
    /// Datagrams on the sync port not sent to a running backup daemon's group (dropped).
    pub sync_ignored: u64,
}

/// The gateway. One owner: it is polled from one loop (or one interrupt priority).
pub struct Gateway<'a> {
    lb: Balancer<'a>,
    iface: Interface,
    /// Empty, or the sync socket once [`attach_sync`](Self::attach_sync) gave it storage.
    sockets: SocketSet<'a>,
    #[cfg(feature = "sync")]
    sync: Option<sync::SyncSocket>,
    /// The health probes once [`attach_probes`](Self::attach_probes) gave them storage.
    #[cfg(feature = "health")]
    probes: Option<probe::Probes<'a>>,
    neighbours: Neighbours<'a>,
    hold: Hold<'a>,
    routes: Routes<'a>,
    frame: &'a mut [u8; FRAME_BUFFER],
    ethernet: bool,
    mac: EthernetAddress,
    /// Largest frame the device takes (link header included on Ethernet).
    mtu: usize,
    forward_other: bool,
    counters: GatewayCounters,
}

fn smol(now: Instant) -> SmolInstant {
    SmolInstant::from_millis(i64::try_from(now.millis()).unwrap_or(i64::MAX))
}

fn from_smol(t: SmolInstant) -> Instant {
    Instant::from_millis(u64::try_from(t.total_millis()).unwrap_or(0))
}

impl<'a> Gateway<'a> {
    /// A gateway over `res` and a director `director` (e.g. from a `DirectorResources` with
    /// [`storage`](lb_core::DirectorResources::storage)), for `device`'s medium and MTU. It
    /// has no address, route or service yet: add them with [`add_address`](Self::add_address),
    /// [`add_route`](Self::add_route) and [`apply_line`](Self::apply_line).
    #[allow(clippy::too_many_arguments)]
    pub fn new<
        D: Device + ?Sized,
        const CONNS: usize,
        const INDEX: usize,
        const WHEEL: usize,
        const FRAGS: usize,
        const NEIGHBOURS: usize,
        const ROUTES: usize,
        const HOLD: usize,
    >(
        res: &'a mut GatewayResources<CONNS, INDEX, WHEEL, FRAGS, NEIGHBOURS, ROUTES, HOLD>,
        director: DirectorStorage<'a>,
        device: &mut D,
        config: GatewayConfig,
        now: Instant,
    ) -> Result<Self, GatewayError> {
        let caps = device.capabilities();
        #[allow(unreachable_patterns)]
        let (ethernet, hw) = match caps.medium {
            Medium::Ethernet => {
                if !config.hardware_addr.is_unicast() {
                    return Err(GatewayError::BadHardwareAddress);
                }
                (true, HardwareAddress::Ethernet(config.hardware_addr))
            }
            Medium::Ip => (false, HardwareAddress::Ip),
            _ => return Err(GatewayError::UnsupportedMedium),
        };
        let mut icfg = Config::new(hw);
        icfg.random_seed = config.seed;
        let iface = Interface::new(icfg, device, smol(now));
        let GatewayResources {
            conns,
            neighbours,
            routes,
            hold,
            frame,
        } = res;
        let mut lb = Balancer::from_storage(director, conns.storage(), &config.secrets, now);
        // A packet goes out whole or not at all (no fragmentation here): DR and tunnel packets
        // over the device's MTU (at most 1,500) get the kernel's ICMP answer instead.
        let ip_mtu =
            caps.max_transmission_unit
                .saturating_sub(if ethernet { LINK_HEADER } else { 0 });
        lb.set_settings(Settings {
            direct_routing: ethernet,
            path_mtu: u16::try_from(ip_mtu.min(MAX_FRAME - LINK_HEADER)).unwrap_or(1500),
            ..config.settings
        });
        let sockets: &'a mut [SocketStorage<'a>] = &mut [];
        Ok(Gateway {
            lb,
            iface,
            sockets: SocketSet::new(sockets),
            #[cfg(feature = "sync")]
            sync: None,
            #[cfg(feature = "health")]
            probes: None,
            neighbours: Neighbours::new(&mut neighbours[..]),
            hold: Hold::new(&mut hold[..]),
            routes: Routes::new(&mut routes[..]),
            frame,
            ethernet,
            mac: config.hardware_addr,
            mtu: caps.max_transmission_unit,
            forward_other: config.forward_other,
            counters: GatewayCounters::default(),
        })
    }

    // ------------------------------------------------------------------ configuration

    /// Gives the gateway an address of its own (answered by smoltcp: ARP/NDP, ping); its
    /// subnet becomes a connected route. At most `iface-max-addr-count-*` (smoltcp's default
    /// is 2: one IPv4 and one IPv6 address).
    ///
    /// The first address of each family is also the outer source of tunnels (`-i`) to real
    /// servers of that family ([`Settings::tunnel_source_v4`], `_v6`), unless the settings
    /// name one already.
    pub fn add_address(&mut self, cidr: IpCidr) -> Result<(), GatewayError> {
        let mut res = Ok(());
        self.iface.update_ip_addrs(|a| {
            if !a.contains(&cidr) && a.push(cidr).is_err() {
                res = Err(GatewayError::AddressesFull);
            }
        });
        if res.is_ok() {
            let mut settings = *self.lb.settings();
            match IpAddr::from(cidr.address()) {
                IpAddr::V4(a) if settings.tunnel_source_v4.is_none() => {
                    settings.tunnel_source_v4 = Some(a)
                }
                IpAddr::V6(a) if settings.tunnel_source_v6.is_none() => {
                    settings.tunnel_source_v6 = Some(a)
                }
                _ => {}
            }
            self.lb.set_settings(settings);
        }
        res
    }

    /// Adds a static route (replacing one for the same destination). A route through a
    /// router is also given to smoltcp's interface (if it has room) for the gateway's own
    /// replies.
    pub fn add_route(&mut self, route: Route) -> Result<(), GatewayError> {
        if !self.routes.add(route) {
            return Err(GatewayError::RoutesFull);
        }
        if let Some(via) = route.via {
            self.iface.routes_mut().update(|r| {
                r.retain(|x| x.cidr != route.dest);
                let _ = r.push(smoltcp::iface::Route {
                    cidr: route.dest,
                    via_router: via.into(),
                    preferred_until: None,
                    expires_at: None,
                });
            });
        }
        Ok(())
    }

    /// Removes the route for exactly `dest`; whether there was one.
    pub fn remove_route(&mut self, dest: IpCidr) -> bool {
        self.iface
            .routes_mut()
            .update(|r| r.retain(|x| x.cidr != dest));
        self.routes.remove(dest)
    }

    /// The static routes (connected subnets of the own addresses not included).
    pub fn routes(&self) -> impl Iterator<Item = Route> + '_ {
        self.routes.iter()
    }

    /// Applies one ipvsadm command (see [`Balancer::apply`]). `--start-daemon` and
    /// `--stop-daemon` also open, set up and close the sync socket (see
    /// [`attach_sync`](Self::attach_sync)); a daemon that cannot run here (no sync socket, no
    /// own address of the group's family for a master, no room for a backup's group) is
    /// refused with [`ConfigError::Unsupported`] saying why.
    pub fn apply(&mut self, now: Instant, cmd: &Command) -> Result<(), ConfigError> {
        #[cfg(feature = "sync")]
        self.sync_check(cmd)?;
        #[cfg(not(feature = "sync"))]
        if matches!(cmd, Command::StartDaemon(_)) {
            return Err(ConfigError::Unsupported(
                "the sync daemons need lb-embedded's `sync` feature",
            ));
        }
        let r = self.lb.apply(now, cmd);
        #[cfg(feature = "sync")]
        self.sync_update();
        r
    }

    /// Parses and applies one ipvsadm command line (`-A -t 10.0.0.1:80 -s wrr`,
    /// `-a -t 10.0.0.1:80 -r 10.1.0.2:80 -m -w 3`, …); empty lines and `#` comments do nothing.
    pub fn apply_line(&mut self, now: Instant, line: &str) -> Result<(), LineError> {
        match ipvsadm::parse_line(line) {
            Ok(Some(cmd)) => self.apply(now, &cmd).map_err(LineError::Config),
            Ok(None) => Ok(()),
            Err(e) => Err(LineError::Parse(e)),
        }
    }

    // ------------------------------------------------------------------ accessors

    /// The balancer: counters, director (services, servers, statistics), connections.
    pub fn balancer(&self) -> &Balancer<'a> {
        &self.lb
    }

    /// The balancer, for settings and direct director calls.
    pub fn balancer_mut(&mut self) -> &mut Balancer<'a> {
        &mut self.lb
    }

    /// The smoltcp interface that answers for the gateway's own addresses.
    pub fn interface(&self) -> &Interface {
        &self.iface
    }

    /// The interface, e.g. to change its addresses directly.
    pub fn interface_mut(&mut self) -> &mut Interface {
        &mut self.iface
    }

    /// The gateway's own counters.
    pub fn counters(&self) -> &GatewayCounters {
        &self.counters
    }

    /// Complete neighbour-cache entries: `(address, hardware address)`.
    pub fn neighbours(&self) -> impl Iterator<Item = (IpAddr, EthernetAddress)> + '_ {
        self.neighbours.entries()
    }

    /// Frames held now, waiting for address resolution.
    pub fn held(&self) -> usize {
        self.hold.len()
    }

    /// The next balancer event (a drained server), see [`Balancer::poll_event`].
    pub fn poll_event(&mut self) -> Option<Event> {
        self.lb.poll_event()
    }

    // ------------------------------------------------------------------ polling

    /// When [`poll`](Self::poll) must next be called if the device receives nothing (call it
    /// at once whenever the device has received something). `now` is the current time.
    pub fn poll_at(&mut self, now: Instant) -> Option<Instant> {
        let mut t = self.lb.poll_timeout();
        if let Some(n) = self.neighbours.next_deadline() {
            t = Some(t.map_or(n, |t| t.min(n)));
        }
        if let Some(i) = self.iface.poll_at(smol(now), &self.sockets) {
            let i = from_smol(i);
            t = Some(t.map_or(i, |t| t.min(i)));
        }
        #[cfg(feature = "health")]
        if let Some(p) = self.probe_at() {
            t = Some(t.map_or(p, |t| t.min(p)));
        }
        t
    }

    /// How long until [`poll_at`](Self::poll_at) (zero if it has passed).
    pub fn poll_delay(&mut self, now: Instant) -> Option<Duration> {
        self.poll_at(now).map(|t| t.saturating_since(now))
    }

    /// Runs the timers that are due, then reads up to [`RX_BURST`] frames from `device` and
    /// handles each (balance and forward, answer, or hand to the interface), then runs the
    /// sync master's sends and the health probes (when attached and something is due for
    /// them), then lets the interface send what it has. Returns whether anything was done.
    pub fn poll<D: Device + ?Sized>(&mut self, now: Instant, device: &mut D) -> bool {
        // Daemons started or stopped on the balancer directly (`balancer_mut`) too.
        #[cfg(feature = "sync")]
        self.sync_update();
        let mut did = self.run_timers(now, device);
        #[cfg(feature = "health")]
        let timers_ran = did;
        let off = if self.ethernet { 0 } else { LINK_HEADER };
        for _ in 0..RX_BURST {
            let Some((rx, tx)) = device.receive(smol(now)) else {
                break;
            };
            drop(tx);
            let frame = &mut *self.frame;
            let len = smoltcp::phy::RxToken::consume(rx, |b| {
                let room = &mut frame[RX_AT + off..];
                let n = b.len();
                room.get_mut(..n).map(|dst| {
                    dst.copy_from_slice(b);
                    n
                })
            });
            did = true;
            self.counters.rx_frames += 1;
            match len {
                Some(n) if self.ethernet => self.handle_ethernet(now, device, n),
                Some(n) => self.handle_ip(now, device, n, None),
                None => self.counters.oversize += 1,
            }
        }
        #[cfg(feature = "sync")]
        self.sync_send(now, device);
        #[cfg(feature = "health")]
        if self.probe_poll(now, device, timers_ran) {
            did = true;
        }
        let mut tx = TxOnly { inner: device };
        if self.iface.poll(smol(now), &mut tx, &mut self.sockets) != PollResult::None {
            did = true;
        }
        did
    }

    fn run_timers<D: Device + ?Sized>(&mut self, now: Instant, device: &mut D) -> bool {
        let mut did = false;
        if self.lb.poll_timeout().is_some_and(|t| t <= now) {
            self.lb.handle_timeout(now);
            did = true;
        }
        while let Some(d) = self.neighbours.due(now) {
            did = true;
            match d {
                Due::Request(ip) => self.send_request(now, device, ip),
                Due::GiveUp(ip) => self.counters.unresolved_drops += self.hold.drop_for(ip),
            }
        }
        did
    }

    /// Whether `ip` is one of the gateway's own addresses (on its smoltcp interface).
    fn is_own(&self, ip: IpAddr) -> bool {
        self.iface.has_ip_addr(IpAddress::from(ip))
    }
}

#[cfg(test)]
mod tests {
    use smoltcp::phy::Medium;
    use smoltcp::wire::{EthernetAddress, IpAddress, IpCidr};

    use super::testkit::*;
    use super::{GatewayConfig, GatewayError, LineError};
    use crate::neighbour::RETRY;
    use lb_core::{ConfigError, DirectorStorage, Instant, Limits};

    #[test]
    fn a_multicast_hardware_address_is_refused_on_ethernet_only() {
        let limits = Limits {
            services: 1,
            servers_per_service: 1,
            table_slots_per_service: 0,
            lblc_entries_per_service: 0,
        };
        let bad = GatewayConfig::from_seed(EthernetAddress([0x01, 0, 0x5e, 0, 0, 1]), 1);
        for (medium, want_ok) in [(Medium::Ethernet, false), (Medium::Ip, true)] {
            let mut dev = FakeDevice::new(medium);
            let res = std::boxed::Box::leak(std::boxed::Box::new(Res::new()));
            let r = super::Gateway::new(res, DirectorStorage::alloc(limits), &mut dev, bad, T0);
            match r {
                Ok(_) => assert!(want_ok, "{medium:?}"),
                Err(e) => {
                    assert!(!want_ok, "{medium:?}");
                    assert_eq!(e, GatewayError::BadHardwareAddress);
                }
            }
        }
    }

    /// The first own address of each family is the outer source of tunnels to real servers
    /// of that family; without one, `-i` to such a server is refused; a source the settings
    /// name is kept.
    #[test]
    fn the_first_address_of_a_family_is_its_tunnel_source() {
        use core::net::{Ipv4Addr, Ipv6Addr};
        let limits = Limits {
            services: 1,
            servers_per_service: 2,
            table_slots_per_service: 0,
            lblc_entries_per_service: 0,
        };
        let bare = |dev: &mut FakeDevice, config: GatewayConfig| {
            let res = std::boxed::Box::leak(std::boxed::Box::new(Res::new()));
            let mut gw =
                super::Gateway::new(res, DirectorStorage::alloc(limits), dev, config, T0).unwrap();
            gw.apply_line(T0, "-A -t 10.0.0.100:80 -s rr").unwrap();
            gw
        };
        let tunnel = "-a -t 10.0.0.100:80 -r 10.0.0.2 -i --tun-type gre";
        let mut dev = FakeDevice::new(Medium::Ethernet);
        let mut gw = bare(&mut dev, GatewayConfig::from_seed(GW_MAC, 1));
        gw.add_address(IpCidr::new(IpAddress::Ipv6(GW_IP6), 64))
            .unwrap();
        let s = *gw.balancer().settings();
        assert_eq!(
            (s.tunnel_source_v4, s.tunnel_source_v6),
            (None, Some(GW_IP6))
        );
        match gw.apply_line(T0, tunnel) {
            Err(LineError::Config(ConfigError::Unsupported(m))) => {
                assert!(m.contains("no IPv4 outer source address"), "{m}")
            }
            other => panic!("{other:?}"),
        }
        gw.add_address(IpCidr::new(IpAddress::Ipv4(GW_IP), 24))
            .unwrap();
        assert_eq!(gw.balancer().settings().tunnel_source_v4, Some(GW_IP));
        gw.apply_line(T0, tunnel).unwrap();

        let mut config = GatewayConfig::from_seed(GW_MAC, 1);
        let named = Ipv4Addr::new(10, 0, 0, 9);
        config.settings.tunnel_source_v4 = Some(named);
        let mut gw = bare(&mut dev, config);
        gw.add_address(IpCidr::new(IpAddress::Ipv4(GW_IP), 24))
            .unwrap();
        let s = *gw.balancer().settings();
        assert_eq!(
            (s.tunnel_source_v4, s.tunnel_source_v6),
            (Some(named), None::<Ipv6Addr>)
        );
    }

    #[test]
    fn the_interface_takes_two_addresses_and_routes_fill_up() {
        let mut dev = FakeDevice::new(Medium::Ethernet);
        let mut gw = gateway(&mut dev); // holds 10.0.0.1/24 and fd00::1/64 already
        let third = IpCidr::new(IpAddress::v4(10, 9, 0, 1), 24);
        assert_eq!(gw.add_address(third), Err(GatewayError::AddressesFull));
        let again = IpCidr::new(IpAddress::v4(10, 0, 0, 1), 24);
        assert_eq!(
            gw.add_address(again),
            Ok(()),
            "an address it has is not added twice"
        );
        let net = |n| IpCidr::new(IpAddress::v4(192, 0, n, 0), 24);
        for n in 0..2 {
            gw.add_route(crate::Route::on_link(net(n))).unwrap();
        }
        // Replacing one is fine; a third is not (routes: 2).
        gw.add_route(crate::Route::on_link(net(1))).unwrap();
        assert_eq!(
            gw.add_route(crate::Route::on_link(net(2))),
            Err(GatewayError::RoutesFull)
        );
        assert!(gw.remove_route(net(0)));
        assert!(!gw.remove_route(net(0)));
        assert_eq!(gw.routes().count(), 1);
    }

    #[test]
    fn apply_line_tells_a_bad_line_from_a_refused_command() {
        let mut dev = FakeDevice::new(Medium::Ip);
        let mut gw = gateway(&mut dev);
        assert_eq!(gw.apply_line(T0, "# a comment"), Ok(()));
        assert_eq!(gw.apply_line(T0, ""), Ok(()));
        assert!(matches!(gw.apply_line(T0, "-Q"), Err(LineError::Parse(_))));
        assert_eq!(
            gw.apply_line(T0, "-A -t 10.0.0.100:80 -s rr"),
            Err(LineError::Config(ConfigError::ServiceExists))
        );
    }

    /// Without the `sync` feature a daemon cannot run, so the balancer does not start one.
    #[cfg(not(feature = "sync"))]
    #[test]
    fn without_the_sync_feature_a_daemon_is_refused() {
        let mut dev = FakeDevice::new(Medium::Ip);
        let mut gw = gateway(&mut dev);
        assert!(matches!(
            gw.apply_line(T0, "--start-daemon master"),
            Err(LineError::Config(ConfigError::Unsupported(_)))
        ));
        let role = lb_core::sync::daemon::SyncRole::Master;
        assert!(gw.balancer().sync_daemon(role).is_none());
    }

    /// A keepalived.conf embedded as a string, in fixed storage and without files, configures
    /// the gateway through the same commands as ipvsadm lines.
    #[test]
    fn a_keepalived_conf_embedded_as_a_string_configures_the_gateway() {
        use lb_core::keepalived::{
            Checker, Config, FileId, NoFiles, RealServer, Url, VirtualServer,
        };
        const CONF: &str = "virtual_server 10.0.0.101 80 {\n lb_algo rr\n lb_kind NAT\n real_server 10.0.0.3 8080 {\n  weight 2\n  TCP_CHECK {\n  }\n }\n}\n";
        let mut vs = [const { VirtualServer::EMPTY }; 2];
        let mut rs = [const { RealServer::EMPTY }; 4];
        let mut ck = [const { Checker::EMPTY }; 4];
        let mut urls = [const { Url::EMPTY }; 1];
        let mut cfg = Config::new(&mut vs, &mut rs, &mut ck, &mut urls);
        cfg.parse(&NoFiles, FileId(0), "embedded", CONF, &mut |_| {})
            .unwrap();
        let mut dev = FakeDevice::new(Medium::Ip);
        let mut gw = gateway(&mut dev);
        for (_, cmd) in cfg.commands() {
            gw.apply(T0, &cmd).unwrap();
        }
        assert_eq!(
            gw.apply_line(T0, "-a -t 10.0.0.101:80 -r 10.0.0.3:8080 -m"),
            Err(LineError::Config(ConfigError::ServerExists))
        );
        let e = cfg
            .parse(
                &NoFiles,
                FileId(0),
                "embedded",
                "include x.conf\n",
                &mut |_| {},
            )
            .unwrap_err();
        assert_eq!(
            (e.file.as_str(), e.line, e.kind, e.text.as_str()),
            (
                "embedded",
                1,
                lb_core::keepalived::ErrorKind::IncludeFailed,
                "this configuration cannot include files (no file system)"
            )
        );
    }

    #[test]
    fn poll_at_includes_the_next_neighbour_request() {
        let mut dev = FakeDevice::new(Medium::Ethernet);
        let mut gw = gateway(&mut dev);
        exchange(&mut gw, &mut dev, T0, &[eth4(&syn(CLIENT, VIP, 64))]);
        assert_eq!(gw.held(), 1);
        // Run whatever is due earlier (the new connection's timers), up to the retry.
        let retry = Instant::from_millis(RETRY);
        let mut now = T0;
        let at = loop {
            let at = gw.poll_at(now).expect("a retry is due");
            if at >= retry {
                break at;
            }
            now = at;
            gw.poll(now, &mut dev);
        };
        assert_eq!(at, retry);
        assert!(
            gw.balancer_mut().poll_timeout().is_none_or(|t| t > retry),
            "the deadline is the neighbour cache's"
        );
        assert_eq!(gw.poll_delay(now), Some(retry.saturating_since(now)));
    }
}
