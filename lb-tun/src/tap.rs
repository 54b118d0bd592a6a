//! TAP mode (`--tap NAME`): the same gateway on a TAP device, which carries Ethernet frames, so
//! lb-tun sends each packet to its next hop's hardware address, whatever the packet's own
//! destination: that is what direct routing (`-g`) needs, a packet still addressed to the VIP
//! delivered to the real server.
//!
//! The Ethernet side is lb-embedded's, reused rather than rewritten: its neighbour cache and
//! hold queue ([`lb_embedded::neighbour`]), its route table ([`lb_embedded::route`]) and its ARP
//! / neighbour-discovery frames and TTL decrement ([`lb_embedded::link`]). [`Link`] drives them
//! the way lb-embedded's gateway does (answer ARP and neighbour solicitations for the VIPs and
//! the own addresses, learn neighbours, resolve next hops, hold frames meanwhile); only the
//! balancer around it is lb-tun's.
//!
//! Why not run lb-embedded's whole `Gateway` over a TAP-backed smoltcp device: it owns its
//! balancer (director storage fixed at compile time, no allocator) and its own health checks and
//! sync socket, so lb-tun's control socket, `-R` batches, `--state`, metrics, keepalived health
//! checks and sync daemons (which all work on lb-tun's `Gateway`) would have had to be written a
//! second time against it. Instead a [`TapDevice`] looks like a TUN device to the packet loop: it
//! yields IP packets (ARP and neighbour discovery are handled inside it, the Ethernet header is
//! stripped) and takes IP packets with their next hop ([`PacketIo::send_to`]), so the loop, the
//! ring and everything around the balancer are the same in both modes.

use std::cell::RefCell;
use std::collections::HashSet;
use std::io::{self, ErrorKind};
use std::net::{IpAddr, Ipv6Addr};
use std::time::Duration;

use lb_core::Instant;
use lb_embedded::link::{
    arp_reply, arp_request, decrement_ttl, icmpv6_frame, multicast_mac, neighbour_advert,
    parse_ndisc, raw_mac, solicited_node, NDISC_FRAME,
};
use lb_embedded::neighbour::{Due, Hold, HoldSlot, Lookup, NeighbourSlot, Neighbours};
use lb_embedded::route::{Route, RouteSlot, Routes};
use lb_embedded::smoltcp::wire::{
    ArpOperation, ArpPacket, ArpRepr, EthernetAddress, EthernetFrame, EthernetProtocol, Icmpv6Repr,
    IpAddress, IpCidr, IpProtocol, Ipv4Packet, Ipv6Packet, NdiscRepr,
};
use lb_embedded::{LINK_HEADER, MAX_FRAME};
use mio::{Events, Poll};
use tun_tap::{Iface, Mode};

use crate::tun::{PacketIo, TunDevice};

/// Neighbour-cache entries (48 bytes each).
pub const NEIGHBOURS: usize = 1024;
/// Frames held while their next hop is resolved (about 1.5 KB each).
pub const HOLD: usize = 256;
/// How often the link's timers run at most: requests are repeated a second apart
/// ([`lb_embedded::neighbour::RETRY`]), and a pass scans the whole neighbour cache.
const TIMER_EVERY_MS: u64 = 100;
/// Route-table slots: the `--gateway` default routes (one per family).
const ROUTES: usize = 2;
/// The IP MTU of the link: the largest packet sent (longer ones are dropped, counted).
pub const MTU: usize = MAX_FRAME - LINK_HEADER;

/// Counters of the Ethernet side (`lbadm --stats-gateway`, `tap.*`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TapCounters {
    /// Frames read from the device.
    pub rx_frames: u64,
    /// Frames ignored: for another hardware address, our own reflected, another ethertype,
    /// malformed, or IP multicast and broadcast (the balancer serves unicast VIPs).
    pub rx_ignored: u64,
    /// ARP requests for a VIP or an own address answered.
    pub arp_answers: u64,
    /// Neighbour solicitations for a VIP or an own address answered.
    pub ndp_answers: u64,
    /// ARP requests and neighbour solicitations sent to resolve next hops.
    pub requests_sent: u64,
    /// Frames held while their next hop was resolved.
    pub held: u64,
    /// Frames dropped: the hold queue or the neighbour cache was full.
    pub hold_full_drops: u64,
    /// Held frames dropped because their next hop never answered.
    pub unresolved_drops: u64,
    /// Packets with no route (no `--address` subnet holds the destination, no `--gateway`).
    pub no_route: u64,
    /// Packets whose next hop is an own address or a VIP (a routing loop).
    pub loop_drops: u64,
    /// Packets whose TTL / hop limit ran out.
    pub ttl_expired: u64,
    /// Packets longer than the link's MTU.
    pub oversize: u64,
    /// Frames the device refused (would block or an error).
    pub tx_errors: u64,
}

/// How the Ethernet side starts: `--mac`, `--address`, `--gateway`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TapConfig {
    /// lb-tun's hardware address on the link (not the TAP interface's own, which is the
    /// host's side of the wire).
    pub mac: EthernetAddress,
    /// Own addresses with their subnets: answered to ARP / neighbour solicitation, the source
    /// of requests; their subnets are on the link.
    pub addresses: Vec<IpCidr>,
    /// Routers for destinations off the link, at most one per family.
    pub gateways: Vec<IpAddr>,
}

/// Parses `ADDR/PREFIX` (an `--address`).
pub fn parse_cidr(s: &str) -> Result<IpCidr, String> {
    let (addr, prefix) = s
        .split_once('/')
        .ok_or_else(|| format!("--address {s}: want ADDR/PREFIX, e.g. 10.0.0.2/24"))?;
    let ip: IpAddr = addr
        .parse()
        .map_err(|_| format!("--address {s}: {addr} is not an IP address"))?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let prefix: u8 = prefix
        .parse()
        .ok()
        .filter(|p| *p <= max)
        .ok_or_else(|| format!("--address {s}: the prefix length must be 0..={max}"))?;
    if ip.is_unspecified() || ip.is_multicast() || ip.is_loopback() {
        return Err(format!("--address {s}: not a unicast address for the link"));
    }
    Ok(IpCidr::new(IpAddress::from(ip), prefix))
}

/// Parses a hardware address `xx:xx:xx:xx:xx:xx` (`--mac`); it must be unicast.
pub fn parse_mac(s: &str) -> Result<EthernetAddress, String> {
    let bad = || format!("--mac {s}: want six hex bytes, e.g. 02:00:00:00:00:01");
    let mut b = [0u8; 6];
    let mut parts = s.split(':');
    for x in b.iter_mut() {
        let p = parts.next().filter(|p| p.len() == 2).ok_or_else(bad)?;
        *x = u8::from_str_radix(p, 16).map_err(|_| bad())?;
    }
    if parts.next().is_some() {
        return Err(bad());
    }
    let mac = EthernetAddress(b);
    if !mac.is_unicast() {
        return Err(format!("--mac {s}: not a unicast address"));
    }
    Ok(mac)
}

/// A locally administered unicast hardware address from six random bytes.
pub fn local_mac(random: [u8; 6]) -> EthernetAddress {
    let mut b = random;
    b[0] = (b[0] & 0xfc) | 0x02;
    EthernetAddress(b)
}

impl TapConfig {
    /// Checks `--address` and `--gateway` together: at least one address; each gateway in the
    /// subnet of an address of its family, one per family.
    pub fn new(
        mac: EthernetAddress,
        addresses: &[String],
        gateways: &[IpAddr],
    ) -> Result<TapConfig, String> {
        if addresses.is_empty() {
            return Err(
                "--tap needs --address ADDR/PREFIX: the source of ARP requests and \
                        neighbour solicitations, and the subnet on the link"
                    .into(),
            );
        }
        let addresses = addresses
            .iter()
            .map(|a| parse_cidr(a))
            .collect::<Result<Vec<_>, _>>()?;
        for (i, g) in gateways.iter().enumerate() {
            if gateways[..i].iter().any(|x| x.is_ipv4() == g.is_ipv4()) {
                return Err(format!(
                    "--gateway {g}: one --gateway per family (IPv4, IPv6)"
                ));
            }
            let on_link = addresses
                .iter()
                .any(|c| c.contains_addr(&IpAddress::from(*g)));
            if !on_link {
                return Err(format!(
                    "--gateway {g}: not in the subnet of any --address ({})",
                    addresses
                        .iter()
                        .map(|c| c.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
            if addresses.iter().any(|c| IpAddr::from(c.address()) == *g) {
                return Err(format!("--gateway {g}: that is lb-tun's own --address"));
            }
        }
        Ok(TapConfig {
            mac,
            addresses,
            gateways: gateways.to_vec(),
        })
    }
}

fn leak<T: Copy>(n: usize, empty: T) -> &'static mut [T] {
    // The gateway's tables live as long as the process, as its balancer's do.
    Box::leak(vec![empty; n].into_boxed_slice())
}

/// The Ethernet side, apart from the device: what a received frame means (an IP packet for
/// the balancer, or ARP / neighbour discovery handled here) and how an IP packet leaves (route,
/// next hop's hardware address or the hold queue, TTL decremented). Frames to send go to the
/// `out` callback, which returns whether the device took them.
pub struct Link {
    mac: EthernetAddress,
    addresses: Vec<IpCidr>,
    /// The VIPs and the probe sources: answered to ARP / neighbour solicitation like the own
    /// addresses, never a next hop.
    answered: HashSet<IpAddr>,
    neighbours: Neighbours<'static>,
    hold: Hold<'static>,
    routes: Routes<'static>,
    frame: Vec<u8>,
    counters: TapCounters,
}

impl Link {
    /// The link of `cfg`, with empty tables.
    pub fn new(cfg: &TapConfig) -> Link {
        let mut routes = Routes::new(leak(ROUTES, RouteSlot::EMPTY));
        for g in &cfg.gateways {
            // Room for one per family, and TapConfig allows no more.
            let added = routes.add(Route::default_via(*g));
            debug_assert!(added);
        }
        Link {
            mac: cfg.mac,
            addresses: cfg.addresses.clone(),
            answered: HashSet::new(),
            neighbours: Neighbours::new(leak(NEIGHBOURS, NeighbourSlot::EMPTY)),
            hold: Hold::new(leak(HOLD, HoldSlot::EMPTY)),
            routes,
            frame: vec![0; MAX_FRAME],
            counters: TapCounters::default(),
        }
    }

    /// The hardware address lb-tun answers with.
    pub fn mac(&self) -> EthernetAddress {
        self.mac
    }

    /// The counters.
    pub fn counters(&self) -> &TapCounters {
        &self.counters
    }

    /// Sets the addresses answered besides the own ones: the VIPs and the probe sources.
    pub fn set_answered(&mut self, addrs: impl IntoIterator<Item = IpAddr>) {
        self.answered = addrs.into_iter().collect();
    }

    fn is_own(&self, ip: IpAddr) -> bool {
        self.addresses
            .iter()
            .any(|c| IpAddr::from(c.address()) == ip)
    }

    fn answers(&self, ip: IpAddr) -> bool {
        self.is_own(ip) || self.answered.contains(&ip)
    }

    /// A received frame: `Some((offset, len))` of the IP packet in it for the balancer (the
    /// Ethernet padding cut off), or `None` if it was handled here or ignored.
    pub fn receive(
        &mut self,
        now: Instant,
        frame: &[u8],
        out: &mut dyn FnMut(&[u8]) -> bool,
    ) -> Option<(usize, usize)> {
        self.counters.rx_frames += 1;
        let Ok(eth) = EthernetFrame::new_checked(frame) else {
            self.counters.rx_ignored += 1;
            return None;
        };
        let (dst, src) = (eth.dst_addr(), eth.src_addr());
        let group = dst.is_broadcast() || dst.is_multicast();
        if (dst != self.mac && !group) || src == self.mac {
            self.counters.rx_ignored += 1;
            return None;
        }
        let ip = &frame[LINK_HEADER..];
        match eth.ethertype() {
            EthernetProtocol::Arp => {
                self.handle_arp(now, ip, out);
                None
            }
            EthernetProtocol::Ipv4 => match Ipv4Packet::new_checked(ip) {
                Ok(p) if !group => Some((LINK_HEADER, usize::from(p.total_len()))),
                _ => {
                    self.counters.rx_ignored += 1;
                    None
                }
            },
            EthernetProtocol::Ipv6 => {
                let Ok(p) = Ipv6Packet::new_checked(ip) else {
                    self.counters.rx_ignored += 1;
                    return None;
                };
                let len = p.total_len();
                let ndp = p.next_header() == IpProtocol::Icmpv6
                    && p.payload().first().is_some_and(|t| (133..=137).contains(t));
                if ndp {
                    self.handle_ndp(now, &ip[..len], src, out);
                    None
                } else if group {
                    self.counters.rx_ignored += 1;
                    None
                } else {
                    Some((LINK_HEADER, len))
                }
            }
            _ => {
                self.counters.rx_ignored += 1;
                None
            }
        }
    }

    /// An ARP packet: learns the sender, answers a request for a VIP or an own address.
    fn handle_arp(&mut self, now: Instant, arp: &[u8], out: &mut dyn FnMut(&[u8]) -> bool) {
        let Ok(ArpRepr::EthernetIpv4 {
            operation,
            source_hardware_addr: smac,
            source_protocol_addr: sip,
            target_protocol_addr: tip,
            ..
        }) = ArpPacket::new_checked(arp).and_then(|p| ArpRepr::parse(&p))
        else {
            self.counters.rx_ignored += 1;
            return;
        };
        let ours = self.answers(IpAddr::V4(tip));
        if !sip.is_unspecified() && self.neighbours.learn(IpAddr::V4(sip), smac, now, ours) {
            self.send_held(IpAddr::V4(sip), smac, out);
        }
        if ours && operation == ArpOperation::Request {
            let f = arp_reply(self.mac, tip, smac, sip);
            if self.put(&f, out) {
                self.counters.arp_answers += 1;
            }
        }
    }

    /// A neighbour-discovery message in `ip`; `link_src` is the frame's Ethernet source.
    fn handle_ndp(
        &mut self,
        now: Instant,
        ip: &[u8],
        link_src: EthernetAddress,
        out: &mut dyn FnMut(&[u8]) -> bool,
    ) {
        let Some((src, _, nd)) = parse_ndisc(ip) else {
            self.counters.rx_ignored += 1;
            return;
        };
        match nd {
            NdiscRepr::NeighborSolicit {
                target_addr,
                lladdr,
            } => {
                let ours = self.answers(IpAddr::V6(target_addr));
                let mac = lladdr.and_then(raw_mac);
                if let (false, Some(m)) = (src.is_unspecified(), mac) {
                    if self.neighbours.learn(IpAddr::V6(src), m, now, ours) {
                        self.send_held(IpAddr::V6(src), m, out);
                    }
                }
                if !ours {
                    return;
                }
                let answer = neighbour_advert(src, mac.or(Some(link_src)), target_addr, self.mac);
                let Some((to, to_mac, na)) = answer else {
                    return;
                };
                if self.put_icmpv6(target_addr, to, to_mac, &na, out) {
                    self.counters.ndp_answers += 1;
                }
            }
            NdiscRepr::NeighborAdvert {
                target_addr,
                lladdr,
                ..
            } => {
                let m = lladdr.and_then(raw_mac).unwrap_or(link_src);
                if self
                    .neighbours
                    .learn(IpAddr::V6(target_addr), m, now, false)
                {
                    self.send_held(IpAddr::V6(target_addr), m, out);
                }
            }
            // Router solicitations and advertisements, redirects: lb-tun is no host to
            // configure and routes only by --address and --gateway.
            _ => {}
        }
    }

    /// Sends the IP packet `pkt` towards `dst` (the verdict's next hop: the packet's own
    /// destination, or a real server for direct routing), through the route table; its TTL /
    /// hop limit is decremented as a router's is. `false` if it was dropped (counted); a frame
    /// held while its next hop resolves counts as sent.
    pub fn send(
        &mut self,
        now: Instant,
        pkt: &[u8],
        dst: IpAddr,
        out: &mut dyn FnMut(&[u8]) -> bool,
    ) -> bool {
        let Some(hop) = self.routes.next_hop(dst, &self.addresses) else {
            self.counters.no_route += 1;
            return false;
        };
        if self.answers(hop) {
            self.counters.loop_drops += 1;
            return false;
        }
        if pkt.len() > MTU {
            self.counters.oversize += 1;
            return false;
        }
        let ethertype = match pkt.first().map(|b| b >> 4) {
            Some(4) => EthernetProtocol::Ipv4,
            _ => EthernetProtocol::Ipv6,
        };
        let total = LINK_HEADER + pkt.len();
        let mut frame = std::mem::take(&mut self.frame);
        frame[LINK_HEADER..total].copy_from_slice(pkt);
        let sent = if decrement_ttl(&mut frame[LINK_HEADER..total]) {
            let mut header = EthernetFrame::new_unchecked(&mut frame[..LINK_HEADER]);
            header.set_src_addr(self.mac);
            header.set_ethertype(ethertype);
            self.send_frame(now, hop, &mut frame[..total], out)
        } else {
            self.counters.ttl_expired += 1;
            false
        };
        self.frame = frame;
        sent
    }

    /// Sends an Ethernet frame (all but its destination address written) to `hop`.
    fn send_frame(
        &mut self,
        now: Instant,
        hop: IpAddr,
        frame: &mut [u8],
        out: &mut dyn FnMut(&[u8]) -> bool,
    ) -> bool {
        match self.neighbours.lookup(hop, now) {
            Lookup::Found { mac, refresh } => {
                frame[..6].copy_from_slice(&mac.0);
                let sent = self.put(frame, out);
                if refresh {
                    self.send_request(hop, out);
                }
                sent
            }
            Lookup::Resolving { request } => {
                let held = self.hold.push(hop, frame);
                if held {
                    self.counters.held += 1;
                } else {
                    self.counters.hold_full_drops += 1;
                }
                if request {
                    self.send_request(hop, out);
                }
                held
            }
            Lookup::NoRoom => {
                self.counters.hold_full_drops += 1;
                false
            }
        }
    }

    /// Repeats requests for unresolved next hops and gives up on those that never answered
    /// (their held frames dropped, counted).
    pub fn run_timers(&mut self, now: Instant, out: &mut dyn FnMut(&[u8]) -> bool) {
        while let Some(due) = self.neighbours.due(now) {
            match due {
                Due::Request(ip) => self.send_request(ip, out),
                Due::GiveUp(ip) => self.counters.unresolved_drops += self.hold.drop_for(ip),
            }
        }
    }

    /// Frames waiting for their next hop.
    pub fn held(&self) -> usize {
        self.hold.len()
    }

    fn send_held(&mut self, ip: IpAddr, mac: EthernetAddress, out: &mut dyn FnMut(&[u8]) -> bool) {
        let mut refused = 0;
        while let Some(sent) = self.hold.pop_for(ip, |f| {
            f[..6].copy_from_slice(&mac.0);
            out(f)
        }) {
            if !sent {
                refused += 1;
            }
        }
        self.counters.tx_errors += refused;
    }

    /// An ARP request or neighbour solicitation for `ip`, from an own address of its family
    /// (one in its subnet if there is one).
    fn send_request(&mut self, ip: IpAddr, out: &mut dyn FnMut(&[u8]) -> bool) {
        let target = IpAddress::from(ip);
        let source = self
            .addresses
            .iter()
            .filter(|c| IpAddr::from(c.address()).is_ipv4() == ip.is_ipv4())
            .max_by_key(|c| c.contains_addr(&target))
            .map(|c| IpAddr::from(c.address()));
        let sent = match (source, ip) {
            (Some(IpAddr::V4(src)), IpAddr::V4(t)) => {
                let f = arp_request(self.mac, src, t);
                self.put(&f, out)
            }
            (Some(IpAddr::V6(src)), IpAddr::V6(t)) => {
                let to = solicited_node(t);
                let ns = Icmpv6Repr::Ndisc(NdiscRepr::NeighborSolicit {
                    target_addr: t,
                    lladdr: Some(self.mac.into()),
                });
                self.put_icmpv6(src, to, multicast_mac(to), &ns, out)
            }
            // No own address of the family: the next hop is unreachable (a --gateway needs
            // an --address of its family, so this is a destination in no subnet of ours).
            _ => false,
        };
        if sent {
            self.counters.requests_sent += 1;
        }
    }

    fn put_icmpv6(
        &mut self,
        src: Ipv6Addr,
        dst: Ipv6Addr,
        dst_mac: EthernetAddress,
        msg: &Icmpv6Repr<'_>,
        out: &mut dyn FnMut(&[u8]) -> bool,
    ) -> bool {
        let mut buf = [0u8; NDISC_FRAME];
        match icmpv6_frame(&mut buf, self.mac, src, dst_mac, dst, msg) {
            Some(n) => self.put(&buf[..n], out),
            None => false,
        }
    }

    fn put(&mut self, frame: &[u8], out: &mut dyn FnMut(&[u8]) -> bool) -> bool {
        let sent = out(frame);
        if !sent {
            self.counters.tx_errors += 1;
        }
        sent
    }
}

/// The destination of the IP packet `pkt`, if it is one.
fn destination(pkt: &[u8]) -> Option<IpAddr> {
    match pkt.first()? >> 4 {
        4 => Some(IpAddr::V4(Ipv4Packet::new_checked(pkt).ok()?.dst_addr())),
        6 => Some(IpAddr::V6(Ipv6Packet::new_checked(pkt).ok()?.dst_addr())),
        _ => None,
    }
}

/// A TAP device with lb-tun's [`Link`] on it: reads yield IP packets, writes take IP packets
/// and their next hop; ARP and neighbour discovery happen inside.
pub struct TapDevice {
    iface: Iface,
    poll: Poll,
    events: Events,
    link: RefCell<Link>,
    clock: std::time::Instant,
    /// When the link's timers last ran (ms on `clock`).
    timers_at: std::cell::Cell<u64>,
}

impl TapDevice {
    /// Creates the TAP device `name`, or attaches to it if it exists as a persistent device
    /// (`ip tuntap add dev NAME mode tap`), non-blocking. Needs `CAP_NET_ADMIN`; bringing it up
    /// and attaching it to a bridge are the host's job.
    pub fn open(name: &str, cfg: &TapConfig) -> io::Result<Self> {
        let (iface, poll) = crate::tun::open_polled(name, Mode::Tap)?;
        Ok(TapDevice {
            iface,
            poll,
            events: Events::with_capacity(1),
            link: RefCell::new(Link::new(cfg)),
            clock: std::time::Instant::now(),
            timers_at: std::cell::Cell::new(0),
        })
    }

    fn now(&self) -> Instant {
        Instant::from_millis(u64::try_from(self.clock.elapsed().as_millis()).unwrap_or(u64::MAX))
    }

    /// Writes one frame; whether the device took it.
    fn write(iface: &Iface, frame: &[u8]) -> bool {
        loop {
            match iface.send(frame) {
                Ok(_) => return true,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => {
                    if e.kind() != ErrorKind::WouldBlock {
                        log::debug!("tap write of {} bytes failed: {e}", frame.len());
                    }
                    return false;
                }
            }
        }
    }
}

impl PacketIo for TapDevice {
    fn recv(&self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        loop {
            let n = match self.iface.recv(buf) {
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(None),
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if n >= buf.len() {
                return Ok(Some(n)); // cut short: the ring counts and drops it
            }
            let iface = &self.iface;
            let got = self
                .link
                .borrow_mut()
                .receive(self.now(), &buf[..n], &mut |f| Self::write(iface, f));
            if let Some((off, len)) = got {
                let len = len.min(n - off);
                buf.copy_within(off..off + len, 0);
                return Ok(Some(len));
            }
        }
    }

    fn send(&self, pkt: &[u8]) -> io::Result<bool> {
        match destination(pkt) {
            Some(dst) => self.send_to(pkt, dst),
            None => Ok(false),
        }
    }

    fn send_to(&self, pkt: &[u8], next_hop: IpAddr) -> io::Result<bool> {
        let iface = &self.iface;
        Ok(self
            .link
            .borrow_mut()
            .send(self.now(), pkt, next_hop, &mut |f| Self::write(iface, f)))
    }
}

/// The gateway's device: TUN (IP packets, routed by the host on their destination) or TAP
/// (Ethernet, lb-tun's own next hops).
pub enum Device {
    /// `--tun NAME`.
    Tun(TunDevice),
    /// `--tap NAME`.
    Tap(Box<TapDevice>),
}

impl Device {
    /// The device's name as the kernel gave it.
    pub fn name(&self) -> &str {
        match self {
            Device::Tun(d) => d.name(),
            Device::Tap(d) => d.iface.name(),
        }
    }

    /// Waits until the device may have a packet, `timeout` at most (see
    /// [`TunDevice::wait_readable`]).
    pub fn wait_readable(&mut self, timeout: Duration) -> io::Result<bool> {
        match self {
            Device::Tun(d) => d.wait_readable(timeout),
            Device::Tap(d) => match d.poll.poll(&mut d.events, Some(timeout)) {
                Ok(()) => Ok(!d.events.is_empty()),
                Err(e) if e.kind() == ErrorKind::Interrupted => Ok(false),
                Err(e) => Err(e),
            },
        }
    }

    /// The Ethernet side's timers (TAP): requests repeated, unresolved next hops given up.
    /// Cheap to call every loop turn: it does something every 100 ms at most.
    pub fn run_timers(&self) {
        if let Device::Tap(d) = self {
            let now = d.now();
            if now.millis() < d.timers_at.get() + TIMER_EVERY_MS {
                return;
            }
            d.timers_at.set(now.millis());
            let iface = &d.iface;
            d.link
                .borrow_mut()
                .run_timers(now, &mut |f| TapDevice::write(iface, f));
        }
    }

    /// The addresses answered on the link besides the own ones (TAP): the gateway's VIPs and
    /// probe sources. Call after every configuration change.
    pub fn set_answered(&self, addrs: impl IntoIterator<Item = IpAddr>) {
        if let Device::Tap(d) = self {
            d.link.borrow_mut().set_answered(addrs);
        }
    }

    /// `tap.*` lines for `lbadm --stats-gateway` (empty on TUN).
    pub fn stats_text(&self) -> String {
        let Device::Tap(d) = self else {
            return String::new();
        };
        let link = d.link.borrow();
        let c = link.counters();
        let mut out = format!("tap.mac {}\n", link.mac());
        for (k, v) in [
            ("rx_frames", c.rx_frames),
            ("rx_ignored", c.rx_ignored),
            ("arp_answers", c.arp_answers),
            ("ndp_answers", c.ndp_answers),
            ("requests_sent", c.requests_sent),
            ("held", c.held),
            ("held_now", link.held() as u64),
            ("hold_full_drops", c.hold_full_drops),
            ("unresolved_drops", c.unresolved_drops),
            ("no_route", c.no_route),
            ("loop_drops", c.loop_drops),
            ("ttl_expired", c.ttl_expired),
            ("oversize", c.oversize),
            ("tx_errors", c.tx_errors),
        ] {
            out.push_str(&format!("tap.{k} {v}\n"));
        }
        out
    }
}

impl PacketIo for Device {
    fn recv_vnet(
        &self,
        hdr: &mut [u8; crate::tun::VNET_HDR_LEN],
        buf: &mut [u8],
    ) -> io::Result<Option<usize>> {
        match self {
            Device::Tun(d) => d.recv_vnet(hdr, buf),
            Device::Tap(d) => d.recv_vnet(hdr, buf),
        }
    }

    fn send_vnet(&self, hdr: &[u8; crate::tun::VNET_HDR_LEN], pkt: &[u8]) -> io::Result<bool> {
        match self {
            Device::Tun(d) => d.send_vnet(hdr, pkt),
            Device::Tap(d) => d.send_vnet(hdr, pkt),
        }
    }

    fn recv(&self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        match self {
            Device::Tun(d) => d.recv(buf),
            Device::Tap(d) => d.recv(buf),
        }
    }

    fn send(&self, pkt: &[u8]) -> io::Result<bool> {
        match self {
            Device::Tun(d) => d.send(pkt),
            Device::Tap(d) => d.send(pkt),
        }
    }

    fn send_to(&self, pkt: &[u8], next_hop: IpAddr) -> io::Result<bool> {
        match self {
            Device::Tun(d) => d.send_to(pkt, next_hop),
            Device::Tap(d) => d.send_to(pkt, next_hop),
        }
    }
}

/// The addresses of `lb`'s services (the VIPs), answered on the link.
pub fn vips(lb: &lb_core::Balancer<'_>) -> Vec<IpAddr> {
    lb.director()
        .services()
        .filter_map(|(_, s)| match s.config.key {
            lb_core::ServiceKey::Addr { vip, .. } => Some(vip.ip()),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests;
