//! Direct routing (`-g`) and tunnels (`-i`) through an lb-embedded gateway, on a virtual
//! clock: the gateway, a smoltcp client and two smoltcp real servers on one Ethernet segment,
//! joined by a switch that delivers frames by destination MAC (broadcasts flooded), every hop
//! 1 ms. Nothing sleeps.
//!
//! The real servers own the virtual address as well as their own (as a Linux real server holds
//! the VIP on `lo` or its tunnel device). The switch models what Linux's `arp_ignore=1` does
//! for them: ARP requests for the VIP never reach them, so only the gateway answers for it and
//! the client sends every packet for the VIP to the gateway's MAC. Their replies go straight
//! to the client, from the VIP.
//!
//! The switch checks every frame the gateway sends to a real server on the way: a
//! direct-routing packet is the client's packet with only its TTL (and header checksum)
//! changed; a tunnelled packet's outer headers are checked field by field against the layout
//! `lb-core/src/tunnel/mod.rs` documents (written out again here, not lb-core's code), then
//! taken off, and the inner packet — byte for byte the client's — is what the real server's
//! interface receives. lb-core's own decoder (`tunnel::decap`, lb-decap's) must find the same
//! inner packet.

mod sim;

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::{IpAddr, Ipv4Addr};

use lb_embedded::lb_core::tunnel::decap::{self, TunnelType};
use lb_embedded::lb_core::{DirectorStorage, Instant, Limits, ServiceKey};
use lb_embedded::smoltcp;
use lb_embedded::{Gateway, GatewayConfig};
use lb_testkit::pkt;
use sim::{mac, Host, SimDevice};
use smoltcp::iface::SocketHandle;
use smoltcp::phy::Medium;
use smoltcp::socket::tcp;
use smoltcp::wire::{
    ArpPacket, ArpRepr, EthernetAddress, EthernetFrame, EthernetProtocol, IpAddress, IpCidr,
    IpProtocol, Ipv4Packet,
};

type Res = lb_embedded::gateway_resources!(conns: 256, neighbours: 8, routes: 2, hold: 4);

const GW: Ipv4Addr = Ipv4Addr::new(10, 0, 1, 1);
const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 0, 1, 2);
const RIPS: [Ipv4Addr; 2] = [Ipv4Addr::new(10, 0, 1, 11), Ipv4Addr::new(10, 0, 1, 12)];
const VIP: Ipv4Addr = Ipv4Addr::new(10, 0, 1, 100);
/// The direct-routing service's port.
const DR_PORT: u16 = 80;
/// The tunnel service's port.
const TUN_PORT: u16 = 8080;
/// The first real server's GUE port.
const GUE_PORT: u16 = 6080;
/// Switch nodes: the gateway, the client, the real servers.
const NODE_GW: usize = 0;
const NODE_CLIENT: usize = 1;
const NODE_SERVER: usize = 2;
/// Listening sockets per server and port (a server closes first, so each connection keeps
/// one in TIME_WAIT for smoltcp's 10 s).
const LISTENERS: usize = 36;
/// The smoltcp hosts' default TTL.
const TTL: u8 = 64;
/// The link's MTU (IP bytes): `SimDevice`'s 1,514-byte Ethernet frames.
const MTU: usize = 1500;

/// The direct-routing service: wrr, weights 3 and 1.
const DR_SERVICE: [&str; 3] = [
    "-A -t 10.0.1.100:80 -s wrr",
    "-a -t 10.0.1.100:80 -r 10.0.1.11 -g -w 3",
    "-a -t 10.0.1.100:80 -r 10.0.1.12 -g -w 1",
];

/// The tunnel service: wrr, the first server by GUE (weight 2, UDP checksum), the second by
/// GRE (weight 1, GRE checksum).
const TUN_SERVICE: [&str; 3] = [
    "-A -t 10.0.1.100:8080 -s wrr",
    "-a -t 10.0.1.100:8080 -r 10.0.1.11 -i -w 2 --tun-type gue --tun-port 6080 --tun-csum",
    "-a -t 10.0.1.100:8080 -r 10.0.1.12 -i -w 1 --tun-type gre --tun-csum",
];

/// How the tunnel service reaches server `k`, and the bytes of outer headers that costs.
fn tunnel_overhead(k: usize) -> usize {
    [20 + 8 + 4, 20 + 8][k] // IPv4 + UDP + GUE; IPv4 + GRE with checksum
}

// ---------------------------------------------------------------------- the switch

/// What the switch saw.
#[derive(Default)]
struct Log {
    /// Every IP packet the client sent, as it sent it.
    client_packets: HashSet<Vec<u8>>,
    /// The same with TTL and header checksum zeroed, to the TTL it had.
    client_ttl: HashMap<Vec<u8>, u8>,
    /// Direct-routing frames the gateway sent to each server.
    dr_frames: [u64; 2],
    /// Tunnelled frames the gateway sent to each server, and the largest.
    tunnel_frames: [u64; 2],
    largest_tunnel_frame: [usize; 2],
    /// IP frames a server sent to the gateway's MAC (a reply that went through it).
    server_ip_to_gateway: u64,
    /// Frames a server sent straight to the client from the VIP.
    direct_replies: [u64; 2],
    /// ARP frames a server sent naming the VIP as its own address (the model would be wrong).
    server_arp_for_vip: u64,
    /// Frames the client sent to the VIP not to the gateway's MAC.
    client_vip_not_via_gateway: u64,
    /// IPv4 ICMP messages the gateway sent to the client.
    icmp_to_client: Vec<Vec<u8>>,
    /// Frames from the gateway to a server that were neither (must stay 0).
    unexpected_to_server: u64,
}

struct Switch {
    /// (deliver at, node, frame), in time order (every hop takes 1 ms).
    queue: VecDeque<(u64, usize, Vec<u8>)>,
    macs: [EthernetAddress; 4],
    log: Log,
}

fn zero_ttl_and_checksum(ip: &[u8]) -> Vec<u8> {
    let mut v = ip.to_vec();
    v[8] = 0;
    v[10] = 0;
    v[11] = 0;
    v
}

fn ethernet(src: EthernetAddress, dst: EthernetAddress, ip: &[u8]) -> Vec<u8> {
    let mut f = vec![0; 14 + ip.len()];
    let mut e = EthernetFrame::new_unchecked(&mut f[..]);
    e.set_src_addr(src);
    e.set_dst_addr(dst);
    e.set_ethertype(EthernetProtocol::Ipv4);
    f[14..].copy_from_slice(ip);
    f
}

/// Whether the Internet checksum over `data` (checksum field included) verifies.
fn sums_to_ones(acc: u64, data: &[u8]) -> bool {
    pkt::fold(pkt::sum(acc, data)) == 0xffff
}

impl Switch {
    fn send(&mut self, now: u64, from: usize, frame: Vec<u8>) {
        let at = now + 1;
        let Ok(eth) = EthernetFrame::new_checked(&frame[..]) else {
            panic!("a runt frame from node {from}");
        };
        let (dst, ethertype) = (eth.dst_addr(), eth.ethertype());
        let ip = &frame[14..];
        // arp_ignore=1: the real servers do not hear ARP requests for the VIP.
        let arp_target = (ethertype == EthernetProtocol::Arp)
            .then(|| {
                ArpPacket::new_checked(ip)
                    .and_then(|p| ArpRepr::parse(&p))
                    .ok()
            })
            .flatten()
            .and_then(|a| match a {
                ArpRepr::EthernetIpv4 {
                    source_protocol_addr,
                    target_protocol_addr,
                    ..
                } => Some((source_protocol_addr, target_protocol_addr)),
                #[allow(unreachable_patterns)]
                _ => None,
            });
        if from >= NODE_SERVER && arp_target.is_some_and(|(s, _)| s == VIP) {
            self.log.server_arp_for_vip += 1;
        }
        let ipv4 = (ethertype == EthernetProtocol::Ipv4)
            .then(|| Ipv4Packet::new_checked(ip).ok())
            .flatten();
        if let Some(p) = &ipv4 {
            if from == NODE_CLIENT {
                self.log.client_packets.insert(ip.to_vec());
                self.log
                    .client_ttl
                    .insert(zero_ttl_and_checksum(ip), p.hop_limit());
                if p.dst_addr() == VIP && dst != self.macs[NODE_GW] {
                    self.log.client_vip_not_via_gateway += 1;
                }
            }
            if from >= NODE_SERVER && dst == self.macs[NODE_GW] {
                self.log.server_ip_to_gateway += 1;
            }
            if from >= NODE_SERVER && dst == self.macs[NODE_CLIENT] && p.src_addr() == VIP {
                self.log.direct_replies[from - NODE_SERVER] += 1;
            }
            if from == NODE_GW
                && dst == self.macs[NODE_CLIENT]
                && p.next_header() == IpProtocol::Icmp
            {
                self.log.icmp_to_client.push(ip.to_vec());
            }
        }
        if dst.is_broadcast() || dst.is_multicast() {
            for n in 0..self.macs.len() {
                let for_vip = arp_target.is_some_and(|(_, t)| t == VIP);
                if n != from && !(n >= NODE_SERVER && for_vip) {
                    self.queue.push_back((at, n, frame.clone()));
                }
            }
            return;
        }
        let Some(n) = self.macs.iter().position(|m| *m == dst) else {
            return;
        };
        if from == NODE_GW && n >= NODE_SERVER {
            if let Some(p) = ipv4 {
                let inner = self.check_from_gateway(n - NODE_SERVER, &p, ip);
                let f = ethernet(self.macs[NODE_GW], self.macs[n], &inner);
                self.queue.push_back((at, n, f));
                return;
            }
        }
        self.queue.push_back((at, n, frame));
    }

    /// Checks an IP packet the gateway sent to server `k` and returns what the server's
    /// interface gets: a direct-routing packet as it is, a tunnelled one decapsulated.
    fn check_from_gateway(&mut self, k: usize, p: &Ipv4Packet<&[u8]>, ip: &[u8]) -> Vec<u8> {
        assert!(p.verify_checksum(), "IPv4 header checksum to server {k}");
        if p.dst_addr() == VIP {
            let orig = self
                .log
                .client_ttl
                .get(&zero_ttl_and_checksum(ip))
                .unwrap_or_else(|| panic!("a DR packet to server {k} the client never sent"));
            assert_eq!(
                p.hop_limit(),
                orig - 1,
                "a DR packet's TTL is decremented once"
            );
            self.log.dr_frames[k] += 1;
            return ip.to_vec();
        }
        if p.dst_addr() != RIPS[k] {
            self.log.unexpected_to_server += 1;
            return ip.to_vec();
        }
        let inner = decapsulate(k, ip);
        // lb-core's decoder (what lb-decap runs on a real server) agrees.
        let mut copy = ip.to_vec();
        let d = decap::decap_packet(&mut copy, Some(GUE_PORT)).expect("lb-core's decoder");
        assert_eq!(
            &copy[d.range()],
            inner,
            "lb-core's decoder finds the same inner packet"
        );
        assert_eq!(d.tunnel, [TunnelType::Gue, TunnelType::Gre][k]);
        assert!(
            self.log.client_packets.contains(inner),
            "the packet inside the tunnel to server {k} is the client's, unchanged"
        );
        let inner_ttl = inner[8];
        assert_eq!(
            p.hop_limit(),
            inner_ttl - 1,
            "the outer TTL: the inner one, decremented"
        );
        let inner_df = inner[6] & 0x40 != 0;
        assert_eq!(p.dont_frag(), inner_df, "DF copied from the inner header");
        self.log.tunnel_frames[k] += 1;
        let frame_len = 14 + ip.len();
        let largest = &mut self.log.largest_tunnel_frame[k];
        *largest = (*largest).max(frame_len);
        inner.to_vec()
    }
}

/// Takes the outer headers of the tunnel to server `k` off `p` (server 0: GUE to port 6080
/// with a UDP checksum; server 1: GRE with a checksum), checking every field on the way.
fn decapsulate(k: usize, ip: &[u8]) -> &[u8] {
    let p = Ipv4Packet::new_checked(ip).unwrap();
    assert_eq!(
        p.src_addr(),
        GW,
        "the tunnel source is the gateway's address"
    );
    assert_eq!(p.header_len(), 20, "no outer IPv4 options");
    assert_eq!(usize::from(p.total_len()), ip.len());
    let l4 = &ip[20..];
    let (s, d) = (p.src_addr().octets(), p.dst_addr().octets());
    match k {
        0 => {
            assert_eq!(p.next_header(), IpProtocol::Udp, "GUE rides on UDP");
            let sport = u16::from_be_bytes([l4[0], l4[1]]);
            assert!((32768..=60999).contains(&sport), "GUE source port {sport}");
            assert_eq!(u16::from_be_bytes([l4[2], l4[3]]), GUE_PORT);
            assert_eq!(usize::from(u16::from_be_bytes([l4[4], l4[5]])), l4.len());
            assert_ne!(&l4[6..8], &[0, 0], "--tun-csum: a UDP checksum");
            let pseudo = pkt::sum(pkt::sum(0, &s), &d) + 17 + l4.len() as u64;
            assert!(sums_to_ones(pseudo, l4), "the UDP checksum verifies");
            // Version 0, C 0, Hlen 0; IPv4 inside; no flags.
            assert_eq!(&l4[8..12], &[0, 4, 0, 0], "the GUE header");
            &l4[12..]
        }
        _ => {
            assert_eq!(p.next_header(), IpProtocol::Unknown(47), "GRE");
            assert_eq!(&l4[..4], &[0x80, 0, 0x08, 0], "GRE: C set, IPv4 inside");
            assert_eq!(&l4[6..8], &[0, 0], "GRE's reserved field");
            assert!(sums_to_ones(0, l4), "the GRE checksum verifies");
            &l4[8..]
        }
    }
}

// ---------------------------------------------------------------------- the world

/// One connection the client made.
#[derive(Debug)]
struct Conn {
    id: usize,
    port: u16,
    handle: SocketHandle,
    sent: bool,
    resp: Vec<u8>,
    /// The server that answered (from its reply), once the exchange completed.
    server: Option<usize>,
    closed: bool,
}

struct Server {
    host: Host,
    /// (socket, port it listens on).
    socks: Vec<(SocketHandle, u16)>,
    /// Bytes received per socket, and whether it answered.
    got: HashMap<SocketHandle, (Vec<u8>, bool)>,
    /// Data bytes received in all (the PMTU test's segments carry no newline).
    bytes_in: usize,
}

struct World {
    now: u64,
    gw: Gateway<'static>,
    gw_dev: SimDevice,
    client: Host,
    free: Vec<SocketHandle>,
    servers: Vec<Server>,
    switch: Switch,
}

impl World {
    fn new(lines: &[&str]) -> World {
        let res: &'static mut Res = Box::leak(Box::new(Res::new()));
        let mut gw_dev = SimDevice::new(Medium::Ethernet);
        let limits = Limits {
            services: 2,
            servers_per_service: 4,
            table_slots_per_service: 0,
            lblc_entries_per_service: 0,
        };
        let mut gw = Gateway::new(
            res,
            DirectorStorage::alloc(limits),
            &mut gw_dev,
            GatewayConfig::from_seed(mac(1), 0xd1),
            Instant::ZERO,
        )
        .expect("gateway");
        gw.add_address(IpCidr::new(IpAddress::Ipv4(GW), 24))
            .unwrap();
        for line in lines {
            gw.apply_line(Instant::ZERO, line)
                .unwrap_or_else(|e| panic!("{line}: {e}"));
        }
        let mut client = Host::new(Medium::Ethernet, 2, CLIENT, GW, 0xc1);
        let free = (0..16).map(|_| client.add_tcp_with(4096)).collect();
        let servers = (0..2)
            .map(|k| {
                let mut host =
                    Host::new(Medium::Ethernet, 10 + k as u8, RIPS[k], GW, 0x50 + k as u64);
                host.iface.update_ip_addrs(|a| {
                    a.push(IpCidr::new(IpAddress::Ipv4(VIP), 32)).unwrap();
                });
                let mut socks = Vec::new();
                for port in [DR_PORT, TUN_PORT] {
                    for _ in 0..LISTENERS {
                        let h = host.add_tcp_with(4096);
                        host.sockets.get_mut::<tcp::Socket>(h).listen(port).unwrap();
                        socks.push((h, port));
                    }
                }
                Server {
                    host,
                    socks,
                    got: HashMap::new(),
                    bytes_in: 0,
                }
            })
            .collect();
        World {
            now: 0,
            gw,
            gw_dev,
            client,
            free,
            servers,
            switch: Switch {
                queue: VecDeque::new(),
                macs: [mac(1), mac(2), mac(10), mac(11)],
                log: Log::default(),
            },
        }
    }

    /// Opens a connection from `port` to VIP:`vport`.
    fn connect(&mut self, id: usize, port: u16, vport: u16) -> Conn {
        let handle = self.free.pop().expect("a free client socket");
        let cx = self.client.iface.context();
        self.client
            .sockets
            .get_mut::<tcp::Socket>(handle)
            .connect(cx, (IpAddress::Ipv4(VIP), vport), port)
            .expect("connect");
        Conn {
            id,
            port,
            handle,
            sent: false,
            resp: Vec::new(),
            server: None,
            closed: false,
        }
    }

    fn client_socket(&mut self, c: &Conn) -> &mut tcp::Socket<'static> {
        self.client.sockets.get_mut::<tcp::Socket>(c.handle)
    }

    /// One millisecond: frames due are delivered, every node polled, the applications run
    /// (the servers answer `srv=<k> <request>` to a line and close; closed sockets listen
    /// again), and what was sent goes on the wire.
    fn step(&mut self) {
        let now = self.now;
        while self.switch.queue.front().is_some_and(|(t, _, _)| *t <= now) {
            let (_, n, f) = self.switch.queue.pop_front().unwrap();
            match n {
                NODE_GW => self.gw_dev.rx.push_back(f),
                NODE_CLIENT => self.client.dev.rx.push_back(f),
                k => self.servers[k - NODE_SERVER].host.dev.rx.push_back(f),
            }
        }
        self.client.poll(now);
        self.gw.poll(Instant::from_millis(now), &mut self.gw_dev);
        for (k, s) in self.servers.iter_mut().enumerate() {
            s.host.poll(now);
            for &(h, port) in &s.socks {
                let sock = s.host.sockets.get_mut::<tcp::Socket>(h);
                if sock.state() == tcp::State::Closed {
                    s.got.remove(&h);
                    sock.listen(port).unwrap();
                    continue;
                }
                let (req, answered) = s.got.entry(h).or_default();
                while sock.can_recv() {
                    let mut buf = [0u8; 2048];
                    let n = sock.recv_slice(&mut buf).unwrap();
                    req.extend_from_slice(&buf[..n]);
                    s.bytes_in += n;
                }
                if !*answered && req.ends_with(b"\n") && sock.can_send() {
                    let line = String::from_utf8_lossy(req).trim_end().to_string();
                    sock.send_slice(format!("srv={k} {line}\n").as_bytes())
                        .unwrap();
                    sock.close();
                    *answered = true;
                }
            }
            s.host.poll(now);
        }
        for f in self.gw_dev.tx.drain(..) {
            self.switch.send(now, NODE_GW, f);
        }
        for f in self.client.dev.tx.drain(..) {
            self.switch.send(now, NODE_CLIENT, f);
        }
        for (k, s) in self.servers.iter_mut().enumerate() {
            for f in s.host.dev.tx.drain(..) {
                self.switch.send(now, NODE_SERVER + k, f);
            }
        }
        self.now += 1;
    }

    /// The client's side of a request: sends `conn=<id>\n` once connected, reads the answer,
    /// closes when the server has; frees the socket once closed.
    fn drive(&mut self, c: &mut Conn) {
        if c.closed {
            return;
        }
        let sock = self.client.sockets.get_mut::<tcp::Socket>(c.handle);
        if !c.sent && sock.can_send() {
            sock.send_slice(format!("conn={}\n", c.id).as_bytes())
                .unwrap();
            c.sent = true;
        }
        while sock.can_recv() {
            let mut buf = [0u8; 256];
            let n = sock.recv_slice(&mut buf).unwrap();
            c.resp.extend_from_slice(&buf[..n]);
        }
        if c.sent && !sock.may_recv() && sock.state() != tcp::State::SynSent {
            sock.close();
        }
        if sock.state() == tcp::State::Closed && c.sent {
            let text = String::from_utf8_lossy(&c.resp).to_string();
            c.server = text
                .strip_prefix("srv=")
                .and_then(|r| r.strip_suffix(&format!(" conn={}\n", c.id)))
                .and_then(|k| k.parse().ok());
            c.closed = true;
            self.free.push(c.handle);
        }
    }

    /// `n` request/response connections to VIP:`vport`, one started every 5 ms (so several
    /// are open at once); returns them once all are closed.
    fn run_connections(&mut self, n: usize, vport: u16) -> Vec<Conn> {
        let start = self.now;
        let mut conns: Vec<Conn> = Vec::new();
        while conns.len() < n || conns.iter().any(|c| !c.closed) {
            if conns.len() < n && self.now >= start + 5 * conns.len() as u64 {
                let id = conns.len();
                conns.push(self.connect(id, 40000 + vport + id as u16, vport));
            }
            for c in conns.iter_mut() {
                self.drive(c);
            }
            self.step();
            assert!(
                self.now < start + 30_000,
                "connections still open after 30 s"
            );
        }
        conns
    }

    /// `(connections, packets in, packets out)` the director counted for server `k` of the
    /// service on `vport`.
    fn server_stats(&self, vport: u16, k: usize) -> (u64, u64, u64) {
        let d = self.gw.balancer().director();
        for (id, svc) in d.services() {
            let ServiceKey::Addr { vip, .. } = svc.config.key else {
                continue;
            };
            if vip.port() != vport {
                continue;
            }
            for (_, s) in d.servers(id).iter() {
                if s.addr().ip() == IpAddr::V4(RIPS[k]) {
                    return (s.stats.conns, s.stats.in_pkts, s.stats.out_pkts);
                }
            }
        }
        panic!("no server {k} on port {vport}");
    }

    /// The real server the gateway scheduled the client's connection from `port` to.
    fn scheduled(&self, port: u16) -> usize {
        let now = Instant::from_millis(self.now);
        let c = self
            .gw
            .balancer()
            .connections(now)
            .find(|c| !c.template && c.client.port() == port)
            .expect("a connection entry");
        RIPS.iter()
            .position(|r| c.server.ip() == IpAddr::V4(*r))
            .unwrap()
    }
}

/// Checks the run's common ground: every connection completed its exchange, the servers'
/// replies all went straight to the client (none through the gateway), and the ARP model held.
fn check_exchanges(w: &World, conns: &[Conn]) {
    for c in conns {
        assert!(
            c.server.is_some(),
            "connection {} (port {}) did not complete: {:?}",
            c.id,
            c.port,
            String::from_utf8_lossy(&c.resp)
        );
    }
    let log = &w.switch.log;
    assert_eq!(
        log.server_ip_to_gateway, 0,
        "a reply went through the gateway"
    );
    assert_eq!(log.server_arp_for_vip, 0, "a real server claimed the VIP");
    assert_eq!(log.client_vip_not_via_gateway, 0);
    assert_eq!(log.unexpected_to_server, 0);
    assert!(
        log.direct_replies.iter().all(|&r| r > 0),
        "{:?}",
        log.direct_replies
    );
    let g = w.gw.counters();
    assert_eq!(g.balancer_drops, 0);
    assert_eq!((g.oversize, g.tx_full, g.no_route), (0, 0, 0));
    assert_eq!(g.unresolved_drops + g.hold_full_drops, 0);
    assert!(g.arp_answers >= 1, "the gateway answers ARP for the VIP");
}

/// The servers that answered `conns`, in connection order, checked cycle by cycle against
/// `weights`: each run of `weights.sum()` connections splits exactly by weight.
fn check_split(conns: &[Conn], weights: [usize; 2]) -> [usize; 2] {
    let cycle = weights[0] + weights[1];
    let mut total = [0; 2];
    for chunk in conns.chunks(cycle) {
        let mut got = [0; 2];
        for c in chunk {
            got[c.server.unwrap()] += 1;
        }
        if chunk.len() == cycle {
            assert_eq!(got, weights, "one wrr cycle: connections {}..", chunk[0].id);
        }
        total[0] += got[0];
        total[1] += got[1];
    }
    total
}

/// `-g`: 40 connections split 30:10 (3:1 in every cycle of 4); each SYN reaches its server
/// through the gateway's MAC unchanged but for the TTL; every reply goes from the server to
/// the client directly, from the VIP; the gateway's per-server packet counters are the
/// frames it sent each server, and it counted no packet out.
#[test]
fn direct_routing_servers_answer_the_client_directly() {
    let mut w = World::new(&DR_SERVICE);
    let conns = w.run_connections(40, DR_PORT);
    check_exchanges(&w, &conns);
    assert_eq!(check_split(&conns, [3, 1]), [30, 10]);
    let log = &w.switch.log;
    assert_eq!(log.tunnel_frames, [0, 0]);
    for k in 0..2 {
        let (c, inp, out) = w.server_stats(DR_PORT, k);
        assert_eq!(c, [30, 10][k]);
        assert_eq!(inp, log.dr_frames[k], "server {k}'s in-packets: its frames");
        assert!(
            inp >= 4 * c,
            "SYN, request, ACK(s), FIN: {inp} for {c} connections"
        );
        assert_eq!(out, 0, "the gateway never sees a DR reply");
    }
    assert_eq!(
        w.gw.counters().forwarded,
        log.dr_frames[0] + log.dr_frames[1]
    );
    println!(
        "DR: 40 connections, split {:?}, frames to servers {:?}, direct replies {:?}, gateway {:?}",
        [30, 10],
        log.dr_frames,
        log.direct_replies,
        w.gw.counters()
    );
}

/// `-i`: 30 connections split 20:10 (2:1 in every cycle of 3) over a GUE tunnel (UDP
/// checksum) and a GRE tunnel (GRE checksum) from the gateway's address; the switch checks
/// each outer header and hands the real server the inner packet, which is the client's.
#[test]
fn tunnelled_servers_get_the_clients_packets_inside_gue_and_gre() {
    let mut w = World::new(&TUN_SERVICE);
    let conns = w.run_connections(30, TUN_PORT);
    check_exchanges(&w, &conns);
    assert_eq!(check_split(&conns, [2, 1]), [20, 10]);
    let log = &w.switch.log;
    assert_eq!(log.dr_frames, [0, 0]);
    for k in 0..2 {
        let (c, inp, out) = w.server_stats(TUN_PORT, k);
        assert_eq!(c, [20, 10][k]);
        assert_eq!(
            inp, log.tunnel_frames[k],
            "server {k}'s in-packets: its tunnel frames"
        );
        assert_eq!(out, 0);
    }
    let b = w.gw.balancer().counters();
    assert_eq!(b.tunnelled, log.tunnel_frames[0] + log.tunnel_frames[1]);
    println!(
        "tunnels: 30 connections, split [20, 10], tunnel frames {:?} (largest {:?} bytes), direct replies {:?}",
        log.tunnel_frames, log.largest_tunnel_frame, log.direct_replies
    );
}

/// Path MTU through a tunnel: the link carries 1,500-byte packets, so a full-sized segment
/// (1,500 bytes, DF: smoltcp sets it) cannot get its outer headers. The client gets ICMP
/// "fragmentation needed" from the VIP naming 1,500 less the tunnel's headers (1,468 for GUE,
/// 1,472 for GRE with checksum), quoting its segment, and the server gets nothing; a segment of
/// exactly that size then goes through, in a 1,514-byte frame. smoltcp does no path-MTU
/// discovery, so the smaller segment comes from a new connection.
#[test]
fn a_segment_too_big_for_the_tunnel_gets_fragmentation_needed_and_a_smaller_one_goes_through() {
    let mut w = World::new(&TUN_SERVICE);
    let mut refused = [false; 2];
    let mut through = [false; 2];
    let mut port = 50000;
    while refused != [true, true] || through != [true, true] {
        assert!(port < 50010, "both servers tested within 10 connections");
        port += 1;
        let c = w.connect(0, port, TUN_PORT);
        while !w.client_socket(&c).may_send() {
            w.step();
            assert!(w.now < 60_000);
        }
        let k = w.scheduled(port);
        let fits = MTU - tunnel_overhead(k);
        let big = !refused[k];
        // TCP and IP headers without options: 40 bytes.
        let payload = if big { MTU - 40 } else { fits - 40 };
        let icmp_before = w.switch.log.icmp_to_client.len();
        let bytes_before = w.servers[k].bytes_in;
        let sent = w
            .client_socket(&c)
            .send_slice(&vec![b'x'; payload])
            .unwrap();
        assert_eq!(sent, payload);
        for _ in 0..50 {
            w.step();
        }
        let icmp = &w.switch.log.icmp_to_client[icmp_before..];
        if big {
            assert_eq!(icmp.len(), 1, "one answer to the one segment");
            check_frag_needed(&icmp[0], fits as u16, port);
            assert_eq!(
                w.servers[k].bytes_in, bytes_before,
                "nothing reached server {k}"
            );
            refused[k] = true;
        } else {
            assert!(icmp.is_empty(), "{icmp:?}");
            assert_eq!(w.servers[k].bytes_in, bytes_before + payload);
            assert_eq!(w.switch.log.largest_tunnel_frame[k], 14 + MTU);
            through[k] = true;
        }
        w.client_socket(&c).abort();
        w.step();
        w.free.push(c.handle);
    }
    let g = w.gw.counters();
    assert_eq!(w.gw.balancer().counters().too_big_replies, 2);
    assert_eq!(g.replies, 2);
    assert_eq!(g.oversize, 0);
    println!(
        "PMTU: fragmentation needed 1468 (GUE) and 1472 (GRE csum); largest tunnel frames {:?}",
        w.switch.log.largest_tunnel_frame
    );
}

/// `ip` is ICMP "fragmentation needed" (3/4) from the VIP to the client, next-hop MTU `mtu`,
/// checksums valid, quoting the client's 1,500-byte segment from `port`.
fn check_frag_needed(ip: &[u8], mtu: u16, port: u16) {
    let p = Ipv4Packet::new_checked(ip).unwrap();
    assert!(p.verify_checksum());
    assert_eq!((p.src_addr(), p.dst_addr()), (VIP, CLIENT));
    let icmp = p.payload();
    assert_eq!(
        (icmp[0], icmp[1]),
        (3, 4),
        "destination unreachable, fragmentation needed"
    );
    assert!(sums_to_ones(0, icmp), "the ICMP checksum verifies");
    assert_eq!(&icmp[4..6], &[0, 0], "unused");
    assert_eq!(u16::from_be_bytes([icmp[6], icmp[7]]), mtu, "next-hop MTU");
    let quoted = Ipv4Packet::new_unchecked(&icmp[8..]);
    assert_eq!(usize::from(quoted.total_len()), MTU);
    assert!(quoted.dont_frag());
    assert_eq!((quoted.src_addr(), quoted.dst_addr()), (CLIENT, VIP));
    assert_eq!(quoted.hop_limit(), TTL, "quoted as it arrived");
    let l4 = &icmp[8 + 20..];
    assert_eq!(u16::from_be_bytes([l4[0], l4[1]]), port);
    assert_eq!(u16::from_be_bytes([l4[2], l4[3]]), TUN_PORT);
}
