//! The gateway: a smoltcp device in, lb-core's balancer in the middle, the same device out.
//!
//! See the [crate docs](crate) for the packet path. Call [`Gateway::poll`] whenever the device
//! may have received something or [`Gateway::poll_at`] has passed; configure it between polls
//! with [`Gateway::apply`] or [`Gateway::apply_line`] (ipvsadm command lines).

use core::fmt;
use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use lb_core::conn::ConnTable;
use lb_core::hash::SipKey;
use lb_core::ipvsadm::{self, Command, ParseError};
use lb_core::{
    Balancer, ConfigError, Director, DirectorStorage, Duration, Event, Instant, Settings, Verdict,
};
use smoltcp::iface::{Config, Interface, PollResult, SocketSet, SocketStorage};
use smoltcp::phy::{ChecksumCapabilities, Device, Medium, TxToken};
use smoltcp::time::Instant as SmolInstant;
use smoltcp::wire::{
    ArpOperation, ArpPacket, ArpRepr, EthernetAddress, EthernetFrame, EthernetProtocol,
    EthernetRepr, HardwareAddress, Icmpv6Packet, Icmpv6Repr, IpAddress, IpCidr, IpProtocol,
    Ipv4Packet, Ipv6Packet, Ipv6Repr, NdiscNeighborFlags, NdiscRepr, RawHardwareAddress,
};

use crate::neighbour::{Due, Hold, Lookup, Neighbours};
use crate::phy::{OneFrame, TxOnly};
use crate::route::{Route, Routes};
use crate::{GatewayResources, FRAME_BUFFER, LINK_HEADER, MAX_FRAME};

/// Frames read from the device per [`Gateway::poll`], at most.
pub const RX_BURST: usize = 32;

/// How a gateway starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GatewayConfig {
    /// The gateway's hardware address on `Medium::Ethernet` (ignored on `Medium::Ip`); must be
    /// unicast.
    pub hardware_addr: EthernetAddress,
    /// Seeds the connection-table hash key, the schedulers and smoltcp's interface. Give each
    /// boot a different one if you can (a hardware RNG or a unique id).
    pub seed: u64,
    /// The balancer's settings (IPVS's sysctls).
    pub settings: Settings,
    /// Whether packets the balancer does not own (`Verdict::Pass`) are routed on, as a router
    /// would (TTL / hop limit decremented). Default `true`; `false` drops them (counted).
    pub forward_other: bool,
}

impl GatewayConfig {
    /// Defaults: lb-core's settings, other traffic routed on.
    pub fn new(hardware_addr: EthernetAddress, seed: u64) -> Self {
        GatewayConfig {
            hardware_addr,
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

/// Why [`Gateway::apply_line`] failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LineError {
    /// The line is not an ipvsadm command.
    Parse(ParseError),
    /// The command was refused.
    Config(ConfigError),
}

impl fmt::Display for LineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LineError::Parse(e) => write!(f, "{e}"),
            LineError::Config(e) => write!(f, "{e}"),
        }
    }
}

/// The gateway's own counters (the balancer's are [`Balancer::counters`], per service and
/// server in its [`Director`]).
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
    /// Passed packets whose TTL / hop limit ran out.
    pub ttl_expired: u64,
    /// Packets longer than the device's MTU, [`MAX_FRAME`] or the frame buffer.
    pub oversize: u64,
    /// Frames dropped because the device had no transmit buffer.
    pub tx_full: u64,
}

/// The gateway. One owner: it is polled from one loop (or one interrupt priority).
pub struct Gateway<'a> {
    lb: Balancer<'a>,
    iface: Interface,
    sockets: SocketSet<'static>,
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

/// Sends `bytes` as one frame; `false` if the device had no buffer.
fn transmit<D: Device + ?Sized>(device: &mut D, now: Instant, bytes: &[u8]) -> bool {
    match device.transmit(smol(now)) {
        Some(tok) => {
            tok.consume(bytes.len(), |b| b.copy_from_slice(bytes));
            true
        }
        None => false,
    }
}

/// What the gateway reads from an IP header.
struct IpInfo {
    dst: IpAddr,
    /// The packet's own length (Ethernet padding trimmed).
    len: usize,
    /// An ICMPv6 neighbour-discovery message (router/neighbour solicitation/advertisement,
    /// redirect).
    ndp: bool,
}

fn ip_info(buf: &[u8]) -> Option<IpInfo> {
    match buf.first()? >> 4 {
        4 => {
            let p = Ipv4Packet::new_checked(buf).ok()?;
            Some(IpInfo {
                dst: IpAddr::V4(p.dst_addr()),
                len: usize::from(p.total_len()),
                ndp: false,
            })
        }
        6 => {
            let p = Ipv6Packet::new_checked(buf).ok()?;
            let ndp = p.next_header() == IpProtocol::Icmpv6
                && p.payload().first().is_some_and(|t| (133..=137).contains(t));
            Some(IpInfo {
                dst: IpAddr::V6(p.dst_addr()),
                len: p.total_len(),
                ndp,
            })
        }
        _ => None,
    }
}

fn is_multicast_or_broadcast(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => a.is_multicast() || a.is_broadcast(),
        IpAddr::V6(a) => a.is_multicast(),
    }
}

/// The solicited-node multicast address of `a` (RFC 4291 §2.7.1).
fn solicited_node(a: Ipv6Addr) -> Ipv6Addr {
    let o = a.octets();
    Ipv6Addr::new(
        0xff02,
        0,
        0,
        0,
        0,
        1,
        0xff00 | u16::from(o[13]),
        u16::from_be_bytes([o[14], o[15]]),
    )
}

/// The Ethernet address an IPv6 multicast address maps to (RFC 2464 §7).
fn multicast_mac(a: Ipv6Addr) -> EthernetAddress {
    let o = a.octets();
    EthernetAddress([0x33, 0x33, o[12], o[13], o[14], o[15]])
}

fn raw_mac(raw: RawHardwareAddress) -> Option<EthernetAddress> {
    match raw.parse(Medium::Ethernet) {
        Ok(HardwareAddress::Ethernet(m)) => Some(m),
        _ => None,
    }
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
        const NEIGHBOURS: usize,
        const ROUTES: usize,
        const HOLD: usize,
    >(
        res: &'a mut GatewayResources<CONNS, INDEX, WHEEL, NEIGHBOURS, ROUTES, HOLD>,
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
        let s = config.seed;
        let key = SipKey([
            s ^ 0x736f_6d65_7073_6575,
            s.rotate_left(29) ^ 0x646f_7261_6e64_6f83,
        ]);
        let conns = ConnTable::new(conns.storage(), key, now);
        let director = Director::new(director, s.rotate_left(17) ^ 0x6c62_2d65_6d62_6564);
        let sockets: &'static mut [SocketStorage<'static>] = &mut [];
        Ok(Gateway {
            lb: Balancer::new(director, conns, config.settings),
            iface,
            sockets: SocketSet::new(sockets),
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
    pub fn add_address(&mut self, cidr: IpCidr) -> Result<(), GatewayError> {
        let mut res = Ok(());
        self.iface.update_ip_addrs(|a| {
            if !a.contains(&cidr) && a.push(cidr).is_err() {
                res = Err(GatewayError::AddressesFull);
            }
        });
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

    /// Applies one ipvsadm command (see [`Balancer::apply`]).
    pub fn apply(&mut self, now: Instant, cmd: &Command) -> Result<(), ConfigError> {
        self.lb.apply(now, cmd)
    }

    /// Parses and applies one ipvsadm command line (`-A -t 10.0.0.1:80 -s wrr`,
    /// `-a -t 10.0.0.1:80 -r 10.1.0.2:80 -m -w 3`, …); empty lines and `#` comments do nothing.
    pub fn apply_line(&mut self, now: Instant, line: &str) -> Result<(), LineError> {
        match ipvsadm::parse_line(line) {
            Ok(Some(cmd)) => self.lb.apply(now, &cmd).map_err(LineError::Config),
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
        t
    }

    /// How long until [`poll_at`](Self::poll_at) (zero if it has passed).
    pub fn poll_delay(&mut self, now: Instant) -> Option<Duration> {
        self.poll_at(now).map(|t| t.saturating_since(now))
    }

    /// Runs the timers that are due, then reads up to [`RX_BURST`] frames from `device` and
    /// handles each (balance and forward, answer, or hand to the interface), then lets the
    /// interface send what it has. Returns whether anything was done.
    pub fn poll<D: Device + ?Sized>(&mut self, now: Instant, device: &mut D) -> bool {
        let mut did = self.run_timers(now, device);
        let off = if self.ethernet { 0 } else { LINK_HEADER };
        for _ in 0..RX_BURST {
            let Some((rx, tx)) = device.receive(smol(now)) else {
                break;
            };
            drop(tx);
            let frame = &mut *self.frame;
            let len = smoltcp::phy::RxToken::consume(rx, |b| {
                let room = &mut frame[off..];
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

    // ------------------------------------------------------------------ receive path

    /// A whole Ethernet frame in `frame[..len]`.
    fn handle_ethernet<D: Device + ?Sized>(&mut self, now: Instant, device: &mut D, len: usize) {
        let Ok(eth) = EthernetFrame::new_checked(&self.frame[..len]) else {
            self.counters.rx_ignored += 1;
            return;
        };
        let (dst, src, ethertype) = (eth.dst_addr(), eth.src_addr(), eth.ethertype());
        let for_us = dst == self.mac || dst.is_broadcast() || dst.is_multicast();
        if !for_us || src == self.mac {
            self.counters.rx_ignored += 1;
            return;
        }
        match ethertype {
            EthernetProtocol::Arp => self.handle_arp(now, device, len),
            EthernetProtocol::Ipv4 | EthernetProtocol::Ipv6 => {
                self.handle_ip(now, device, len - LINK_HEADER, Some(src))
            }
            _ => self.counters.rx_ignored += 1,
        }
    }

    fn handle_arp<D: Device + ?Sized>(&mut self, now: Instant, device: &mut D, len: usize) {
        let parsed =
            ArpPacket::new_checked(&self.frame[LINK_HEADER..len]).and_then(|p| ArpRepr::parse(&p));
        let Ok(ArpRepr::EthernetIpv4 {
            operation,
            source_hardware_addr: smac,
            source_protocol_addr: sip,
            target_protocol_addr: tip,
            ..
        }) = parsed
        else {
            self.counters.rx_ignored += 1;
            return;
        };
        let own = self.iface.has_ip_addr(tip);
        let vip = self.lb.is_vip(IpAddr::V4(tip));
        if !sip.is_unspecified()
            && self
                .neighbours
                .learn(IpAddr::V4(sip), smac, now, own || vip)
        {
            self.flush(now, device, IpAddr::V4(sip), smac);
        }
        if vip && operation == ArpOperation::Request {
            let mut buf = [0u8; LINK_HEADER + 28];
            EthernetRepr {
                src_addr: self.mac,
                dst_addr: smac,
                ethertype: EthernetProtocol::Arp,
            }
            .emit(&mut EthernetFrame::new_unchecked(&mut buf[..]));
            ArpRepr::EthernetIpv4 {
                operation: ArpOperation::Reply,
                source_hardware_addr: self.mac,
                source_protocol_addr: tip,
                target_hardware_addr: smac,
                target_protocol_addr: sip,
            }
            .emit(&mut ArpPacket::new_unchecked(&mut buf[LINK_HEADER..]));
            if transmit(device, now, &buf) {
                self.counters.arp_answers += 1;
            } else {
                self.counters.tx_full += 1;
            }
            return;
        }
        if own {
            self.give_interface(now, device, len);
        } else {
            self.counters.rx_ignored += 1;
        }
    }

    /// Hands `frame[off..off + len]` (`off` = 0 on Ethernet, [`LINK_HEADER`] on IP) to the
    /// interface.
    fn give_interface<D: Device + ?Sized>(&mut self, now: Instant, device: &mut D, len: usize) {
        let off = if self.ethernet { 0 } else { LINK_HEADER };
        let mut one = OneFrame {
            frame: Some(&self.frame[off..off + len]),
            inner: device,
        };
        self.iface.poll(smol(now), &mut one, &mut self.sockets);
        if one.frame.is_some() {
            self.counters.own_dropped += 1;
        } else {
            self.counters.rx_own += 1;
        }
    }

    /// An IP packet in `frame[LINK_HEADER..LINK_HEADER + len]`; `link_src` is the Ethernet
    /// source on Ethernet.
    fn handle_ip<D: Device + ?Sized>(
        &mut self,
        now: Instant,
        device: &mut D,
        len: usize,
        link_src: Option<EthernetAddress>,
    ) {
        let mut len = len;
        if let Some(info) = ip_info(&self.frame[LINK_HEADER..LINK_HEADER + len]) {
            len = len.min(info.len);
            if info.ndp && self.ethernet && self.handle_ndp(now, device, len, link_src) {
                return;
            }
            let vip = self.lb.is_vip(info.dst);
            if !vip && (self.is_own(info.dst) || is_multicast_or_broadcast(info.dst)) {
                let frame_len = if self.ethernet {
                    len + LINK_HEADER
                } else {
                    len
                };
                self.give_interface(now, device, frame_len);
                return;
            }
        }
        let verdict = self.lb.process(now, &mut self.frame[LINK_HEADER..], len);
        match verdict {
            Verdict::ToServer | Verdict::ToClient => {
                self.counters.forwarded += 1;
                self.send_ip(now, device, len);
            }
            Verdict::Reply { len } => {
                self.counters.replies += 1;
                self.send_ip(now, device, len);
            }
            Verdict::Pass => {
                if !self.forward_other {
                    self.counters.not_forwarded += 1;
                } else if !self.decrement_ttl(len) {
                    self.counters.ttl_expired += 1;
                } else {
                    self.counters.passed += 1;
                    self.send_ip(now, device, len);
                }
            }
            Verdict::Drop(_) => self.counters.balancer_drops += 1,
        }
    }

    /// Handles a neighbour solicitation or advertisement; `true` if it was consumed (a
    /// solicitation for a virtual address, answered).
    fn handle_ndp<D: Device + ?Sized>(
        &mut self,
        now: Instant,
        device: &mut D,
        len: usize,
        link_src: Option<EthernetAddress>,
    ) -> bool {
        let Ok(ip) = Ipv6Packet::new_checked(&self.frame[LINK_HEADER..LINK_HEADER + len]) else {
            return false;
        };
        if ip.hop_limit() != 255 {
            return false;
        }
        let (src, dst) = (ip.src_addr(), ip.dst_addr());
        let Ok(icmp) = Icmpv6Packet::new_checked(ip.payload()) else {
            return false;
        };
        let caps = ChecksumCapabilities::default();
        let Ok(Icmpv6Repr::Ndisc(nd)) = Icmpv6Repr::parse(&src, &dst, &icmp, &caps) else {
            return false;
        };
        match nd {
            NdiscRepr::NeighborSolicit {
                target_addr,
                lladdr,
            } => {
                let target = IpAddr::V6(target_addr);
                let vip = self.lb.is_vip(target);
                let own = self.is_own(target);
                let mac = lladdr.and_then(raw_mac);
                if let (false, Some(m)) = (src.is_unspecified(), mac) {
                    if self.neighbours.learn(IpAddr::V6(src), m, now, vip || own) {
                        self.flush(now, device, IpAddr::V6(src), m);
                    }
                }
                if !vip {
                    return false;
                }
                let (to, to_mac, flags) = if src.is_unspecified() {
                    let all = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
                    (all, multicast_mac(all), NdiscNeighborFlags::OVERRIDE)
                } else {
                    let Some(m) = mac.or(link_src) else {
                        return true;
                    };
                    (
                        src,
                        m,
                        NdiscNeighborFlags::SOLICITED | NdiscNeighborFlags::OVERRIDE,
                    )
                };
                let na = Icmpv6Repr::Ndisc(NdiscRepr::NeighborAdvert {
                    flags,
                    target_addr,
                    lladdr: Some(self.mac.into()),
                });
                if self.send_icmpv6(now, device, target_addr, to, to_mac, &na) {
                    self.counters.ndp_answers += 1;
                } else {
                    self.counters.tx_full += 1;
                }
                true
            }
            NdiscRepr::NeighborAdvert {
                target_addr,
                lladdr,
                ..
            } => {
                if let Some(m) = lladdr.and_then(raw_mac).or(link_src) {
                    if self
                        .neighbours
                        .learn(IpAddr::V6(target_addr), m, now, false)
                    {
                        self.flush(now, device, IpAddr::V6(target_addr), m);
                    }
                }
                false
            }
            _ => false,
        }
    }

    // ------------------------------------------------------------------ transmit path

    fn is_own(&self, ip: IpAddr) -> bool {
        self.iface.has_ip_addr(IpAddress::from(ip))
    }

    /// Decrements the TTL / hop limit of the packet in the frame buffer; `false` if it ran out.
    fn decrement_ttl(&mut self, len: usize) -> bool {
        let buf = &mut self.frame[LINK_HEADER..LINK_HEADER + len];
        match buf.first().map(|b| b >> 4) {
            Some(4) => match Ipv4Packet::new_checked(buf) {
                Ok(mut p) if p.hop_limit() > 1 => {
                    let h = p.hop_limit();
                    p.set_hop_limit(h - 1);
                    p.fill_checksum();
                    true
                }
                _ => false,
            },
            Some(6) => match Ipv6Packet::new_checked(buf) {
                Ok(mut p) if p.hop_limit() > 1 => {
                    let h = p.hop_limit();
                    p.set_hop_limit(h - 1);
                    true
                }
                _ => false,
            },
            _ => false,
        }
    }

    /// Routes the IP packet in `frame[LINK_HEADER..LINK_HEADER + len]` and sends it (or holds
    /// it until its next hop resolves).
    fn send_ip<D: Device + ?Sized>(&mut self, now: Instant, device: &mut D, len: usize) {
        let Some(info) = ip_info(&self.frame[LINK_HEADER..LINK_HEADER + len]) else {
            self.counters.no_route += 1;
            return;
        };
        let Some(hop) = self.routes.next_hop(info.dst, self.iface.ip_addrs()) else {
            self.counters.no_route += 1;
            return;
        };
        if self.is_own(hop) || self.lb.is_vip(hop) {
            self.counters.loop_drops += 1;
            return;
        }
        if !self.ethernet {
            if len > self.mtu {
                self.counters.oversize += 1;
            } else if !transmit(device, now, &self.frame[LINK_HEADER..LINK_HEADER + len]) {
                self.counters.tx_full += 1;
            }
            return;
        }
        let total = LINK_HEADER + len;
        if total > self.mtu || total > MAX_FRAME {
            self.counters.oversize += 1;
            return;
        }
        let ethertype = match info.dst {
            IpAddr::V4(_) => EthernetProtocol::Ipv4,
            IpAddr::V6(_) => EthernetProtocol::Ipv6,
        };
        let mut header = EthernetFrame::new_unchecked(&mut self.frame[..LINK_HEADER]);
        header.set_src_addr(self.mac);
        header.set_ethertype(ethertype);
        match self.neighbours.lookup(hop, now) {
            Lookup::Found { mac, refresh } => {
                self.frame[..6].copy_from_slice(&mac.0);
                if !transmit(device, now, &self.frame[..total]) {
                    self.counters.tx_full += 1;
                }
                if refresh {
                    self.send_request(now, device, hop);
                }
            }
            Lookup::Resolving { request } => {
                if self.hold.push(hop, &self.frame[..total]) {
                    self.counters.held += 1;
                } else {
                    self.counters.hold_full_drops += 1;
                }
                if request {
                    self.send_request(now, device, hop);
                }
            }
            Lookup::NoRoom => self.counters.hold_full_drops += 1,
        }
    }

    /// Sends the frames held for `ip`, now known to be at `mac`, oldest first.
    fn flush<D: Device + ?Sized>(
        &mut self,
        now: Instant,
        device: &mut D,
        ip: IpAddr,
        mac: EthernetAddress,
    ) {
        while let Some(sent) = self.hold.pop_for(ip, |f| {
            f[..6].copy_from_slice(&mac.0);
            transmit(device, now, f)
        }) {
            if !sent {
                self.counters.tx_full += 1;
            }
        }
    }

    /// Sends an ARP request or neighbour solicitation for `ip`.
    fn send_request<D: Device + ?Sized>(&mut self, now: Instant, device: &mut D, ip: IpAddr) {
        let sent = match ip {
            IpAddr::V4(target) => {
                let Some(src) = self.source_v4(target) else {
                    return;
                };
                let mut buf = [0u8; LINK_HEADER + 28];
                EthernetRepr {
                    src_addr: self.mac,
                    dst_addr: EthernetAddress::BROADCAST,
                    ethertype: EthernetProtocol::Arp,
                }
                .emit(&mut EthernetFrame::new_unchecked(&mut buf[..]));
                ArpRepr::EthernetIpv4 {
                    operation: ArpOperation::Request,
                    source_hardware_addr: self.mac,
                    source_protocol_addr: src,
                    target_hardware_addr: EthernetAddress([0; 6]),
                    target_protocol_addr: target,
                }
                .emit(&mut ArpPacket::new_unchecked(&mut buf[LINK_HEADER..]));
                transmit(device, now, &buf)
            }
            IpAddr::V6(target) => {
                let Some(src) = self.source_v6() else {
                    return;
                };
                let to = solicited_node(target);
                let ns = Icmpv6Repr::Ndisc(NdiscRepr::NeighborSolicit {
                    target_addr: target,
                    lladdr: Some(self.mac.into()),
                });
                self.send_icmpv6(now, device, src, to, multicast_mac(to), &ns)
            }
        };
        if sent {
            self.counters.requests_sent += 1;
        } else {
            self.counters.tx_full += 1;
        }
    }

    /// The own IPv4 address to send an ARP request for `target` from: one in its subnet, else
    /// the first.
    fn source_v4(&self, target: Ipv4Addr) -> Option<Ipv4Addr> {
        let t = IpAddress::Ipv4(target);
        let mut first = None;
        for c in self.iface.ip_addrs() {
            if let IpAddress::Ipv4(a) = c.address() {
                if c.contains_addr(&t) {
                    return Some(a);
                }
                first = first.or(Some(a));
            }
        }
        first
    }

    /// The own IPv6 address to solicit from.
    fn source_v6(&self) -> Option<Ipv6Addr> {
        self.iface
            .ip_addrs()
            .iter()
            .find_map(|c| match c.address() {
                IpAddress::Ipv6(a) => Some(a),
                #[allow(unreachable_patterns)]
                _ => None,
            })
    }

    /// Sends an ICMPv6 message with hop limit 255 (neighbour discovery).
    fn send_icmpv6<D: Device + ?Sized>(
        &mut self,
        now: Instant,
        device: &mut D,
        src: Ipv6Addr,
        dst: Ipv6Addr,
        dst_mac: EthernetAddress,
        msg: &Icmpv6Repr<'_>,
    ) -> bool {
        let ip = Ipv6Repr {
            src_addr: src,
            dst_addr: dst,
            next_header: IpProtocol::Icmpv6,
            payload_len: msg.buffer_len(),
            hop_limit: 255,
        };
        let mut buf = [0u8; LINK_HEADER + 40 + 40];
        let total = LINK_HEADER + ip.buffer_len() + msg.buffer_len();
        let Some(buf) = buf.get_mut(..total) else {
            return false;
        };
        EthernetRepr {
            src_addr: self.mac,
            dst_addr: dst_mac,
            ethertype: EthernetProtocol::Ipv6,
        }
        .emit(&mut EthernetFrame::new_unchecked(&mut buf[..]));
        ip.emit(&mut Ipv6Packet::new_unchecked(&mut buf[LINK_HEADER..]));
        msg.emit(
            &src,
            &dst,
            &mut Icmpv6Packet::new_unchecked(&mut buf[LINK_HEADER + 40..]),
            &ChecksumCapabilities::default(),
        );
        transmit(device, now, buf)
    }
}
