//! The sync daemons' socket (docs/sync.md §4): one smoltcp UDP socket on the gateway's
//! interface, opened when a daemon starts and closed when the last one stops. lb-core decides
//! what to send and applies what arrives; this module only moves the datagrams.
//!
//! * Master: each poll sends what [`Balancer::poll_sync`](lb_core::Balancer::poll_sync) gives
//!   to the daemon's group:port, with its TTL as the hop limit, one message at a time (the
//!   next is only built once the previous has left, so a busy device delays entries, it does
//!   not lose them).
//! * Backup: the interface is a member of the daemon's group (IGMP / MLD reports from
//!   smoltcp); every datagram sent to that group and port goes to
//!   [`Balancer::receive_sync`](lb_core::Balancer::receive_sync) as it arrives.
//!
//! One socket serves both daemons: it is bound to the backup's port (the master's when only the
//! master runs) and the master sends from it. The device is one link, so a daemon's
//! `--mcast-interface` names nothing here: any name is taken.

use lb_core::ipvsadm::Command;
use lb_core::sync::daemon::{DaemonConfig, SyncRole};
use lb_core::{ConfigError, Instant};
use smoltcp::iface::{MulticastError, SocketHandle, SocketSet, SocketStorage};
use smoltcp::phy::Device;
use smoltcp::socket::udp::{self, PacketBuffer, PacketMetadata};
use smoltcp::wire::{IpAddress, IpEndpoint};

use super::{smol, Gateway};
use crate::phy::TxOnly;
use crate::{IP_BUFFER, LINK_HEADER};

/// Bytes of each of the sync socket's two buffers (receive, send): the largest UDP payload the
/// gateway can receive (an IPv4 packet of [`IP_BUFFER`] bytes less its 20-byte header and the
/// 8-byte UDP header). A message is sent in one frame, so the master's messages are at most
/// this long, and at most the device's MTU less the headers (1,472 bytes to an IPv4 group on
/// a 1500-byte link, ipvsadm's default `--sync-maxlen`).
pub const SYNC_BUFFER: usize = IP_BUFFER - 28;

/// The sync daemons' socket storage: one smoltcp UDP socket with room for one message each way,
/// given to [`Gateway::attach_sync`]. A gateway without it runs no daemon.
///
/// The byte buffers are zero, but smoltcp's socket slot and packet descriptors are not zero bits
/// (their "empty" is a niche value), so a `static` of this built by a `const` initialiser lands
/// in `.data` (flash and RAM). Keep it in `.bss` with `static_cell::StaticCell` and
/// `init(SyncResources::new())` at boot (built on the stack once, 3.4 KB).
pub struct SyncResources<'a> {
    socket: [SocketStorage<'a>; 1],
    rx_meta: [PacketMetadata; 1],
    tx_meta: [PacketMetadata; 1],
    rx: [u8; SYNC_BUFFER],
    tx: [u8; SYNC_BUFFER],
}

impl SyncResources<'_> {
    /// Empty storage.
    pub const fn new() -> Self {
        SyncResources {
            socket: [SocketStorage::EMPTY],
            rx_meta: [PacketMetadata::EMPTY],
            tx_meta: [PacketMetadata::EMPTY],
            rx: [0; SYNC_BUFFER],
            tx: [0; SYNC_BUFFER],
        }
    }
}

impl Default for SyncResources<'_> {
    fn default() -> Self {
        Self::new()
    }
}

/// The socket and what it is set up for (the daemons the balancer ran at the last update).
pub(super) struct SyncSocket {
    handle: SocketHandle,
    master: Option<DaemonConfig>,
    backup: Option<DaemonConfig>,
    /// The multicast group the interface joined for the backup.
    joined: Option<IpAddress>,
}

const NO_SOCKET: ConfigError = ConfigError::Unsupported(
    "a sync daemon needs the gateway's sync socket (Gateway::attach_sync with SyncResources)",
);

impl<'a> Gateway<'a> {
    /// Gives the gateway the storage of its sync socket, so `--start-daemon` can run here. A
    /// second call replaces the first storage (running daemons move to the new socket).
    pub fn attach_sync(&mut self, res: &'a mut SyncResources<'a>) {
        let SyncResources {
            socket,
            rx_meta,
            tx_meta,
            rx,
            tx,
        } = res;
        if let Some(group) = self.sync.take().and_then(|s| s.joined) {
            let _ = self.iface.leave_multicast_group(group);
        }
        self.sockets = SocketSet::new(&mut socket[..]);
        let udp = udp::Socket::new(
            PacketBuffer::new(&mut rx_meta[..], &mut rx[..]),
            PacketBuffer::new(&mut tx_meta[..], &mut tx[..]),
        );
        let handle = self.sockets.add(udp);
        self.sync = Some(SyncSocket {
            handle,
            master: None,
            backup: None,
            joined: None,
        });
        self.sync_update();
    }

    /// Whether the daemon a `--start-daemon` command starts can run here, checked before the
    /// balancer takes it: the socket exists, the port and TTL can be used, a master has a
    /// source address of its group's family, and a backup's group is joined.
    pub(super) fn sync_check(&mut self, cmd: &Command) -> Result<(), ConfigError> {
        let Command::StartDaemon(d) = cmd else {
            return Ok(());
        };
        if self.sync.is_none() {
            return Err(NO_SOCKET);
        }
        if d.port == 0 {
            return Err(ConfigError::Unsupported("sync port 0"));
        }
        match d.role {
            SyncRole::Master => {
                if d.ttl == 0 {
                    return Err(ConfigError::Unsupported(
                        "--mcast-ttl 0 (a datagram is never sent with TTL 0)",
                    ));
                }
                let family = d.group.is_ipv6();
                if !self.iface.ip_addrs().iter().any(|c| {
                    matches!(c.address(), IpAddress::Ipv6(_)) == family
                        && !c.address().is_unspecified()
                }) {
                    return Err(ConfigError::Unsupported(
                        "the sync master needs an own address of its group's family (Gateway::add_address): the messages' source",
                    ));
                }
            }
            SyncRole::Backup => {
                self.iface
                    .join_multicast_group(d.group)
                    .map_err(|e| match e {
                        MulticastError::GroupTableFull => ConfigError::Unsupported(
                            "the interface's multicast group table is full (smoltcp's iface-max-multicast-group-count-*)",
                        ),
                        MulticastError::Unaddressable => ConfigError::Unsupported(
                            "the sync group is not a multicast address",
                        ),
                    })?;
            }
        }
        Ok(())
    }

    /// Sets the socket up for the daemons the balancer runs now: bound to the backup's port
    /// (else the master's; closed when none runs), the master's TTL, the backup's group joined
    /// and a group no longer used left.
    pub(super) fn sync_update(&mut self) {
        let Some(s) = self.sync.as_mut() else {
            return;
        };
        let master = self.lb.sync_daemon(SyncRole::Master).copied();
        let backup = self.lb.sync_daemon(SyncRole::Backup).copied();
        if (master, backup) == (s.master, s.backup) {
            return;
        }
        s.master = master;
        s.backup = backup;
        let sock = self.sockets.get_mut::<udp::Socket>(s.handle);
        let port = backup.or(master).map_or(0, |d| d.port);
        if sock.endpoint().port != port {
            sock.close();
            if port != 0 {
                // Only port 0 is refused, and the socket was just closed.
                let _ = sock.bind(port);
            }
        }
        sock.set_hop_limit(master.map(|d| d.ttl.max(1)));
        let group = backup.map(|d| IpAddress::from(d.group));
        if s.joined != group {
            if let Some(old) = s.joined.take() {
                let _ = self.iface.leave_multicast_group(old);
            }
            if let Some(g) = group {
                // Already joined by `sync_check` when started through `apply`.
                if self.iface.join_multicast_group(g).is_ok() {
                    s.joined = Some(g);
                }
            }
        }
    }

    /// Hands what the socket received to the backup: datagrams sent to its group; anything
    /// else on the port is counted and dropped.
    pub(super) fn sync_receive(&mut self, now: Instant) {
        let Some(s) = self.sync.as_ref() else {
            return;
        };
        let group = s.backup.map(|d| IpAddress::from(d.group));
        let sock = self.sockets.get_mut::<udp::Socket>(s.handle);
        while let Ok((payload, meta)) = sock.recv() {
            if group.is_some() && meta.local_address == group {
                self.counters.sync_received += 1;
                // What the balancer made of it is in its `sync_stats`.
                let _ = self.lb.receive_sync(now, payload);
            } else {
                self.counters.sync_ignored += 1;
            }
        }
    }

    /// Sends the master's due messages, one at a time through the interface: a message is
    /// built only when the previous one has left, so entries wait in the balancer's queue
    /// while the device is busy.
    pub(super) fn sync_send<D: Device + ?Sized>(&mut self, now: Instant, device: &mut D) {
        let Some(d) = self.sync.as_ref().and_then(|s| s.master) else {
            // A master started on the balancer directly, without a socket: nothing can carry
            // its messages, so they are dropped and counted rather than left due forever.
            while self.lb.poll_sync(now, &mut self.frame[..]).is_some() {
                self.counters.sync_unsent += 1;
            }
            return;
        };
        let Some(handle) = self.sync.as_ref().map(|s| s.handle) else {
            return;
        };
        let max = usize::from(d.effective_maxlen())
            .min(self.sync_room(&d))
            .min(SYNC_BUFFER);
        let to = IpEndpoint::new(d.group.into(), d.port);
        loop {
            if self.sockets.get::<udp::Socket>(handle).send_queue() > 0 {
                let mut tx = TxOnly { inner: device };
                self.iface.poll(smol(now), &mut tx, &mut self.sockets);
                if self.sockets.get::<udp::Socket>(handle).send_queue() > 0 {
                    return; // the device has no buffer: the rest waits for the next poll
                }
            }
            let Some(n) = self.lb.poll_sync(now, &mut self.frame[..max]) else {
                return;
            };
            let sock = self.sockets.get_mut::<udp::Socket>(handle);
            match sock.send_slice(&self.frame[..n], to) {
                Ok(()) => self.counters.sync_sent += 1,
                Err(_) => self.counters.sync_unsent += 1,
            }
        }
    }

    /// The largest UDP payload one frame to `d`'s group carries on this device.
    fn sync_room(&self, d: &DaemonConfig) -> usize {
        let link = if self.ethernet { LINK_HEADER } else { 0 };
        let ip = if d.group.is_ipv6() { 40 } else { 20 };
        self.mtu.saturating_sub(link + ip + 8)
    }
}

#[cfg(test)]
mod tests {
    use core::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
    use std::boxed::Box;
    use std::vec::Vec;

    use lb_core::{ConfigError, DirectorStorage, Instant, Limits};
    use lb_testkit::pkt;
    use smoltcp::phy::Medium;
    use smoltcp::wire::{
        ArpOperation, EthernetAddress, EthernetFrame, EthernetProtocol, IpAddress, IpCidr,
        IpProtocol, Ipv4Packet, Ipv6Packet, UdpPacket,
    };

    use super::super::testkit::*;
    use super::super::{Gateway, GatewayConfig};
    use super::SyncResources;
    use crate::LINK_HEADER;

    type Res = crate::gateway_resources!(conns: 64, neighbours: 16, routes: 2, hold: 2);

    const BACKUP_MAC: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 0, 0x03]);
    const BACKUP_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 3);
    const BACKUP_IP6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 3);
    const SERVER2: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 4);
    const SERVER2_MAC: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 0, 0x04]);
    const GROUP4: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 81);
    const GROUP6: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x81);

    /// A gateway at `mac` / `ip` / `ip6` with the sync socket's storage and the wrr service
    /// `VIP:80` over `servers` (weights 3 and 2, in that order), nothing sent yet.
    fn gateway_at(
        dev: &mut FakeDevice,
        mac: EthernetAddress,
        ip: Ipv4Addr,
        ip6: Ipv6Addr,
        servers: [Ipv4Addr; 2],
    ) -> Gateway<'static> {
        let res: &'static mut Res = Box::leak(Box::new(Res::new()));
        let limits = Limits {
            services: 2,
            servers_per_service: 2,
            table_slots_per_service: 0,
            lblc_entries_per_service: 0,
        };
        let config = GatewayConfig::from_seed(mac, 7);
        let mut gw = Gateway::new(res, DirectorStorage::alloc(limits), dev, config, T0).unwrap();
        gw.add_address(IpCidr::new(IpAddress::Ipv4(ip), 24))
            .unwrap();
        gw.add_address(IpCidr::new(IpAddress::Ipv6(ip6), 64))
            .unwrap();
        gw.attach_sync(Box::leak(Box::new(SyncResources::new())));
        gw.apply_line(T0, "-A -t 10.0.0.100:80 -s wrr").unwrap();
        for (s, w) in servers.iter().zip([3, 2]) {
            gw.apply_line(T0, &std::format!("-a -t 10.0.0.100:80 -r {s}:80 -m -w {w}"))
                .unwrap();
        }
        settle(&mut gw, dev);
        gw
    }

    /// Teaches `gw` (own address `own`) that `ip` is at `mac`.
    fn teach_at(
        gw: &mut Gateway<'static>,
        dev: &mut FakeDevice,
        own: Ipv4Addr,
        ip: Ipv4Addr,
        mac: EthernetAddress,
    ) {
        let who = arp(
            ArpOperation::Request,
            mac,
            ip,
            own,
            EthernetAddress::BROADCAST,
        );
        exchange(gw, dev, T0, &[who]);
        assert!(gw.neighbours().any(|n| n == (IpAddr::V4(ip), mac)));
    }

    fn client(i: u8) -> SocketAddr {
        SocketAddr::from((client_ip(i), 40000 + u16::from(i)))
    }

    fn client_ip(i: u8) -> Ipv4Addr {
        Ipv4Addr::new(10, 0, 0, 50 + i)
    }

    fn client_mac(i: u8) -> EthernetAddress {
        EthernetAddress([0x02, 0, 0, 0, 1, i])
    }

    fn vip() -> SocketAddr {
        SocketAddr::from((VIP, 80))
    }

    /// A client's segment in a frame to `to`.
    fn from_client(i: u8, to: EthernetAddress, flags: u8, seq: u32, data: &[u8]) -> Vec<u8> {
        let p = pkt::Tcp::new(client(i), vip(), flags)
            .seq(seq)
            .ack(7)
            .payload(data)
            .build();
        eth(client_mac(i), to, EthernetProtocol::Ipv4, &p)
    }

    /// The server's segment to client `i` (from `server`) in a frame to `to`.
    fn from_server(server: Ipv4Addr, i: u8, to: EthernetAddress, flags: u8) -> Vec<u8> {
        let s = SocketAddr::from((server, 80));
        let p = pkt::Tcp::new(s, client(i), flags).seq(6).ack(2).build();
        let mac = if server == SERVER {
            SERVER_MAC
        } else {
            SERVER2_MAC
        };
        eth(mac, to, EthernetProtocol::Ipv4, &p)
    }

    /// The one frame in `out`: (destination MAC, IPv4 destination).
    fn one_ipv4(out: &[Vec<u8>]) -> (EthernetAddress, Ipv4Addr) {
        assert_eq!(out.len(), 1, "{out:?}");
        let ip = ipv4_of(&out[0], true).unwrap();
        (eth_header(&out[0]).0, ip.dst_addr())
    }

    /// Frames in `out` that are UDP datagrams to `port`: (destination MAC, destination
    /// address, hop limit, payload).
    fn udp_to(out: &[Vec<u8>], port: u16) -> Vec<(EthernetAddress, IpAddr, u8, Vec<u8>)> {
        let mut v = Vec::new();
        for f in out {
            let e = EthernetFrame::new_checked(&f[..]).unwrap();
            let (dst, hop, proto, l4) = match e.ethertype() {
                EthernetProtocol::Ipv4 => {
                    let ip = Ipv4Packet::new_checked(e.payload()).unwrap();
                    let d = IpAddr::V4(ip.dst_addr());
                    (d, ip.hop_limit(), ip.next_header(), ip.payload().to_vec())
                }
                EthernetProtocol::Ipv6 => {
                    let ip = Ipv6Packet::new_checked(e.payload()).unwrap();
                    let d = IpAddr::V6(ip.dst_addr());
                    (d, ip.hop_limit(), ip.next_header(), ip.payload().to_vec())
                }
                _ => continue,
            };
            if proto != IpProtocol::Udp {
                continue;
            }
            let udp = UdpPacket::new_checked(&l4[..]).unwrap();
            if udp.dst_port() == port {
                v.push((e.dst_addr(), dst, hop, udp.payload().to_vec()));
            }
        }
        v
    }

    /// The multicast MAC of a group (RFC 1112, RFC 2464).
    fn group_mac(group: IpAddr) -> EthernetAddress {
        match group {
            IpAddr::V4(g) => {
                let o = g.octets();
                EthernetAddress([0x01, 0, 0x5e, o[1] & 0x7f, o[2], o[3]])
            }
            IpAddr::V6(g) => {
                let o = g.octets();
                EthernetAddress([0x33, 0x33, o[12], o[13], o[14], o[15]])
            }
        }
    }

    /// A sync datagram from `src` (a peer on the link) to `group`:`port`, in a frame to the
    /// group's MAC.
    fn sync_frame(src: IpAddr, group: IpAddr, port: u16, payload: &[u8]) -> Vec<u8> {
        let p = pkt::udp(
            SocketAddr::new(src, 8848),
            SocketAddr::new(group, port),
            payload,
        );
        let ethertype = if group.is_ipv4() {
            EthernetProtocol::Ipv4
        } else {
            EthernetProtocol::Ipv6
        };
        eth(CLIENT_MAC, group_mac(group), ethertype, &p)
    }

    /// A master and a backup on one link, both with the service `VIP:80` over `SERVER` and
    /// `SERVER2` (on the backup in the other order, so its own wrr would not pick as the
    /// master's did), the servers and clients' MACs known to both. The master syncs to
    /// `group` with TTL 2.
    fn pair(
        group: IpAddr,
    ) -> (
        (Gateway<'static>, FakeDevice),
        (Gateway<'static>, FakeDevice),
    ) {
        let mut mdev = FakeDevice::new(Medium::Ethernet);
        let mut master = gateway_at(&mut mdev, GW_MAC, GW_IP, GW_IP6, [SERVER, SERVER2]);
        let mut bdev = FakeDevice::new(Medium::Ethernet);
        let mut backup = gateway_at(
            &mut bdev,
            BACKUP_MAC,
            BACKUP_IP,
            BACKUP_IP6,
            [SERVER2, SERVER],
        );
        // The interface names mean nothing on a one-link device: any is taken.
        master
            .apply_line(
                T0,
                &std::format!("--start-daemon master --mcast-interface eth0 --syncid 9 --mcast-group {group} --mcast-ttl 2"),
            )
            .unwrap();
        backup
            .apply_line(
                T0,
                &std::format!("--start-daemon backup --mcast-interface sync0 --syncid 9 --mcast-group {group}"),
            )
            .unwrap();
        // The backup reports its membership (IGMPv2 to the group; MLDv2 to ff02::16).
        let joined = exchange(&mut backup, &mut bdev, T0, &[]);
        let report = joined.iter().any(|f| match group {
            IpAddr::V4(g) => {
                ipv4_of(f, true)
                    .is_some_and(|ip| ip.dst_addr() == g && ip.next_header() == IpProtocol::Igmp)
                    && eth_header(f).0 == group_mac(group)
            }
            IpAddr::V6(_) => mld_report_of(f) == Some(MLDV2_ROUTERS),
        });
        assert!(report, "{joined:?}");
        assert!(exchange(&mut master, &mut mdev, T0, &[]).is_empty());
        for (gw, dev, own) in [
            (&mut master, &mut mdev, GW_IP),
            (&mut backup, &mut bdev, BACKUP_IP),
        ] {
            teach_at(gw, dev, own, SERVER, SERVER_MAC);
            teach_at(gw, dev, own, SERVER2, SERVER2_MAC);
            for i in 0..5 {
                teach_at(gw, dev, own, client_ip(i), client_mac(i));
            }
            dev.tx.clear();
        }
        ((master, mdev), (backup, bdev))
    }

    fn failover_keeps_the_connections(group: IpAddr) {
        let ((mut master, mut mdev), (mut backup, mut bdev)) = pair(group);
        // Five connections through the master: SYN, SYN-ACK, ACK, a request (the third
        // client packet in ESTABLISHED queues the entry for sync).
        let mut server_of = Vec::new();
        for i in 0..5 {
            let out = exchange(
                &mut master,
                &mut mdev,
                T0,
                &[from_client(i, GW_MAC, pkt::SYN, 1, &[])],
            );
            let (mac, server) = one_ipv4(&out);
            assert_eq!(
                mac,
                if server == SERVER {
                    SERVER_MAC
                } else {
                    SERVER2_MAC
                }
            );
            server_of.push(server);
            let out = exchange(
                &mut master,
                &mut mdev,
                T0,
                &[from_server(server, i, GW_MAC, pkt::SYN | pkt::ACK)],
            );
            assert_eq!(one_ipv4(&out), (client_mac(i), client_ip(i)));
            let ack = from_client(i, GW_MAC, pkt::ACK, 2, &[]);
            let get = from_client(i, GW_MAC, pkt::ACK | pkt::PSH, 2, b"GET /");
            let out = exchange(&mut master, &mut mdev, T0, &[ack, get]);
            assert_eq!(out.len(), 2);
        }
        assert_eq!(
            (
                server_of.iter().filter(|&&s| s == SERVER).count(),
                server_of.iter().filter(|&&s| s == SERVER2).count()
            ),
            (3, 2),
            "wrr 3:2"
        );
        // Nothing is sent before the flush time: 5 entries do not fill a message.
        let t1 = Instant::from_millis(1_999);
        assert!(udp_to(&exchange(&mut master, &mut mdev, t1, &[]), 8848).is_empty());
        assert_eq!(master.poll_at(t1), Some(Instant::from_millis(2_000)));
        let t2 = Instant::from_millis(2_000);
        let out = exchange(&mut master, &mut mdev, t2, &[]);
        let msgs = udp_to(&out, 8848);
        assert_eq!(msgs.len(), 1, "{out:?}");
        let (mac, dst, hop, payload) = &msgs[0];
        assert_eq!((*mac, *dst, *hop), (group_mac(group), group, 2));
        assert_eq!(
            payload.len(),
            8 + 5 * 36,
            "a version-1 header and five IPv4 records"
        );
        assert_eq!(master.counters().sync_sent, 1);
        assert_eq!(master.balancer().sync_stats().records_sent, 5);

        // The backup takes the frame the master sent as the link delivers it.
        assert!(exchange(&mut backup, &mut bdev, t2, &out).is_empty());
        assert_eq!(backup.counters().sync_received, 1);
        assert_eq!(backup.balancer().sync_stats().created, 5);
        let mut listed: Vec<_> = backup
            .balancer()
            .connections(t2)
            .map(|c| (c.client, c.server, c.state))
            .collect();
        listed.sort();
        let mut want: Vec<_> = (0..5u8)
            .map(|i| {
                (
                    client(i),
                    SocketAddr::from((server_of[usize::from(i)], 80)),
                    "ESTABLISHED",
                )
            })
            .collect();
        want.sort();
        assert_eq!(listed, want);

        // The VIP moves: the clients' next packets reach the backup, which sends each to its
        // connection's server, and the servers' answers back from the VIP.
        let t3 = Instant::from_millis(3_000);
        for i in 0..5u8 {
            let server = server_of[usize::from(i)];
            let out = exchange(
                &mut backup,
                &mut bdev,
                t3,
                &[from_client(i, BACKUP_MAC, pkt::ACK | pkt::PSH, 7, b"more")],
            );
            let mac = if server == SERVER {
                SERVER_MAC
            } else {
                SERVER2_MAC
            };
            assert_eq!(one_ipv4(&out), (mac, server), "client {i}");
            let out = exchange(
                &mut backup,
                &mut bdev,
                t3,
                &[from_server(server, i, BACKUP_MAC, pkt::ACK)],
            );
            assert_eq!(one_ipv4(&out), (client_mac(i), client_ip(i)));
            let ip = ipv4_of(&out[0], true).unwrap();
            assert_eq!(ip.src_addr(), VIP);
        }
        let b = backup.balancer().counters();
        assert_eq!(b.conns_created, 0, "the backup scheduled nothing itself");
        assert_eq!(backup.counters().forwarded, 10);
    }

    #[test]
    fn a_backup_takes_over_the_masters_connections_ipv4_group() {
        failover_keeps_the_connections(IpAddr::V4(GROUP4));
    }

    #[test]
    fn a_backup_takes_over_the_masters_connections_ipv6_group() {
        failover_keeps_the_connections(IpAddr::V6(GROUP6));
    }

    /// With `--sync-maxlen 80` a message holds two records, so seven entries make three full
    /// messages at once and a partial one at the flush. A device with room for one frame gets
    /// the first; the second waits in the socket, the other entries in the balancer's queue,
    /// until the device has room again: nothing is lost.
    #[test]
    fn a_busy_device_delays_sync_messages_without_losing_entries() {
        let mut dev = FakeDevice::new(Medium::Ethernet);
        let mut gw = gateway_at(&mut dev, GW_MAC, GW_IP, GW_IP6, [SERVER, SERVER2]);
        gw.apply_line(T0, "--start-daemon master --sync-maxlen 80")
            .unwrap();
        teach_at(&mut gw, &mut dev, GW_IP, SERVER, SERVER_MAC);
        teach_at(&mut gw, &mut dev, GW_IP, SERVER2, SERVER2_MAC);
        // Seven handshakes, one at a time (the half-open share of one /24 is limited), then
        // each client's request: its third packet, which queues the entry.
        let mut conns = Vec::new();
        for i in 0..7 {
            let out = exchange(
                &mut gw,
                &mut dev,
                T0,
                &[from_client(i, GW_MAC, pkt::SYN, 1, &[])],
            );
            let (_, server) = one_ipv4(&out);
            conns.push((i, server));
            dev.rx
                .push_back(from_server(server, i, GW_MAC, pkt::SYN | pkt::ACK));
            dev.rx.push_back(from_client(i, GW_MAC, pkt::ACK, 2, &[]));
            gw.poll(T0, &mut dev);
            dev.tx.clear();
        }
        let frames: Vec<_> = conns
            .iter()
            .map(|&(i, _)| from_client(i, GW_MAC, pkt::ACK | pkt::PSH, 2, b"GET /"))
            .collect();
        dev.tx_room = 7 + 1; // the forwarded requests and one more frame
        let out = exchange(&mut gw, &mut dev, T0, &frames);
        assert_eq!(out.len(), 8);
        let first = udp_to(&out, 8848);
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].3.len(), 80, "two records");
        assert_eq!(
            gw.balancer().sync_stats().records_sent,
            4,
            "two messages built"
        );
        // The device has room again: the second and third messages go; the seventh entry
        // waits for the flush.
        dev.tx_room = usize::MAX;
        let out = udp_to(
            &exchange(&mut gw, &mut dev, Instant::from_millis(10), &[]),
            8848,
        );
        assert_eq!(out.len(), 2);
        assert!(out.iter().all(|m| m.3.len() == 80));
        let out = udp_to(
            &exchange(&mut gw, &mut dev, Instant::from_millis(2_000), &[]),
            8848,
        );
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].3.len(), 8 + 36);
        let s = gw.balancer().sync_stats();
        assert_eq!((s.queued, s.records_sent, s.queue_drops), (7, 7, 0));
        assert_eq!((gw.counters().sync_sent, gw.counters().sync_unsent), (4, 0));
    }

    #[test]
    fn a_malformed_datagram_on_the_sync_port_is_counted_and_ignored() {
        let ((_, _), (mut backup, mut bdev)) = pair(IpAddr::V4(GROUP4));
        let g = IpAddr::V4(GROUP4);
        let peer = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 9));
        // A header whose size is not the datagram's, and three bytes.
        let bad_size = [0, 9, 0, 99, 0, 1, 0, 0];
        let frames = [
            sync_frame(peer, g, 8848, &bad_size),
            sync_frame(peer, g, 8848, &[1, 2, 3]),
        ];
        assert!(exchange(&mut backup, &mut bdev, T0, &frames).is_empty());
        assert_eq!(backup.counters().sync_received, 2);
        let s = *backup.balancer().sync_stats();
        assert_eq!((s.messages_received, s.messages_refused), (2, 2));
        assert_eq!(backup.balancer().connection_count(), 0);
        // To the sync port but not to the backup's group (the gateway's own address): dropped.
        let own = eth(
            CLIENT_MAC,
            BACKUP_MAC,
            EthernetProtocol::Ipv4,
            &pkt::udp(
                SocketAddr::new(peer, 8848),
                SocketAddr::from((BACKUP_IP, 8848)),
                &bad_size,
            ),
        );
        exchange(&mut backup, &mut bdev, T0, &[own]);
        assert_eq!(backup.counters().sync_ignored, 1);
        assert_eq!(backup.balancer().sync_stats().messages_received, 2);
    }

    /// A message as a kernel master writes it (docs/sync.md §2: `struct ip_vs_sync_mesg` and
    /// `struct ip_vs_sync_v4`, field by field), built here by hand.
    #[test]
    fn a_kernel_masters_message_is_taken_by_the_embedded_backup() {
        let ((_, _), (mut backup, mut bdev)) = pair(IpAddr::V4(GROUP4));
        let c = client(3);
        let mut m = Vec::new();
        // Header: reserved 0, syncid 9, size, 1 record, version 1, spare 0.
        m.extend_from_slice(&[0, 9, 0, 8 + 36, 1, 1, 0, 0]);
        // Record: type 0 (IPv4), TCP, version 0 | size 36, flags 0 (masquerading), state 1
        // (ESTABLISHED), client / virtual / real ports, fwmark 0, timeout 900 s, addresses.
        m.extend_from_slice(&[0, 6, 0, 36]);
        m.extend_from_slice(&0u32.to_be_bytes());
        m.extend_from_slice(&1u16.to_be_bytes());
        m.extend_from_slice(&c.port().to_be_bytes());
        m.extend_from_slice(&80u16.to_be_bytes());
        m.extend_from_slice(&80u16.to_be_bytes());
        m.extend_from_slice(&0u32.to_be_bytes());
        m.extend_from_slice(&900u32.to_be_bytes());
        m.extend_from_slice(&client_ip(3).octets());
        m.extend_from_slice(&VIP.octets());
        m.extend_from_slice(&SERVER2.octets());
        let kernel = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 9));
        let f = sync_frame(kernel, IpAddr::V4(GROUP4), 8848, &m);
        assert!(exchange(&mut backup, &mut bdev, T0, &[f]).is_empty());
        let conns: Vec<_> = backup.balancer().connections(T0).collect();
        assert_eq!(conns.len(), 1);
        assert_eq!(
            (conns[0].client, conns[0].server, conns[0].state),
            (c, SocketAddr::from((SERVER2, 80)), "ESTABLISHED")
        );
        assert_eq!(conns[0].expires_in.secs(), 900);
        let out = exchange(
            &mut backup,
            &mut bdev,
            T0,
            &[from_client(3, BACKUP_MAC, pkt::ACK, 9, b"x")],
        );
        assert_eq!(one_ipv4(&out), (SERVER2_MAC, SERVER2));
    }

    /// A master started on the balancer behind the gateway's back, with no socket to send
    /// from: its messages are dropped and counted at the flush instead of staying due (which
    /// would keep `poll_at` in the past).
    #[test]
    fn a_master_without_a_socket_drops_its_messages_and_counts_them() {
        let mut dev = FakeDevice::new(Medium::Ip);
        let mut gw = gateway(&mut dev);
        let d = lb_core::sync::daemon::DaemonConfig::new(
            lb_core::sync::daemon::SyncRole::Master,
            lb_core::sync::daemon::IfName::new("eth0").unwrap(),
        );
        let start = lb_core::ipvsadm::Command::StartDaemon(d);
        gw.balancer_mut().apply(T0, &start).unwrap();
        let ip = |f: Vec<u8>| f[LINK_HEADER..].to_vec();
        let syn = ip(from_client(0, GW_MAC, pkt::SYN, 1, &[]));
        let synack = ip(from_server(SERVER, 0, GW_MAC, pkt::SYN | pkt::ACK));
        let ack = ip(from_client(0, GW_MAC, pkt::ACK, 2, &[]));
        let get = ip(from_client(0, GW_MAC, pkt::ACK | pkt::PSH, 2, b"GET /"));
        exchange(&mut gw, &mut dev, T0, &[syn, synack, ack, get]);
        assert_eq!(gw.balancer().sync_stats().queued, 1);
        // Run whatever is due earlier (the new connection's timers), up to the flush.
        let flush = Instant::from_millis(2_000);
        let mut now = T0;
        let at = loop {
            let at = gw.poll_at(now).expect("the flush is due");
            if at >= flush {
                break at;
            }
            now = at;
            gw.poll(now, &mut dev);
        };
        assert_eq!(at, flush);
        assert_eq!(gw.counters().sync_unsent, 0);
        gw.poll(flush, &mut dev);
        assert_eq!(gw.counters().sync_unsent, 1);
        assert!(gw.poll_at(flush).is_none_or(|t| t > flush));
    }

    #[test]
    fn a_daemon_needs_the_socket_an_own_address_and_leaves_its_group_when_stopped() {
        let mut dev = FakeDevice::new(Medium::Ethernet);
        let mut gw = gateway(&mut dev);
        let refused = |e| {
            matches!(
                e,
                Err(lb_core::LineError::Config(ConfigError::Unsupported(_)))
            )
        };
        assert!(refused(gw.apply_line(T0, "--start-daemon backup")));
        assert!(gw
            .balancer()
            .sync_daemon(lb_core::sync::daemon::SyncRole::Backup)
            .is_none());

        // A master needs a source address of its group's family.
        let mut dev = FakeDevice::new(Medium::Ip);
        let res: &'static mut Res = Box::leak(Box::new(Res::new()));
        let limits = Limits {
            services: 1,
            servers_per_service: 1,
            table_slots_per_service: 0,
            lblc_entries_per_service: 0,
        };
        let config = GatewayConfig::from_seed(GW_MAC, 1);
        let mut gw =
            Gateway::new(res, DirectorStorage::alloc(limits), &mut dev, config, T0).unwrap();
        gw.attach_sync(Box::leak(Box::new(SyncResources::new())));
        gw.add_address(IpCidr::new(IpAddress::Ipv4(GW_IP), 24))
            .unwrap();
        assert!(refused(
            gw.apply_line(T0, "--start-daemon master --mcast-group ff02::81")
        ));
        gw.apply_line(T0, "--start-daemon master").unwrap();

        // A backup's group is joined while it runs and left when it stops.
        let g = IpAddr::V4(GROUP4);
        gw.apply_line(T0, "--start-daemon backup").unwrap();
        assert!(gw.interface().has_multicast_group(GROUP4));
        let msg = [0, 0, 0, 8, 0, 1, 0, 0]; // an empty version-1 message
        let peer = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 9));
        let ip = |f: Vec<u8>| f[LINK_HEADER..].to_vec();
        exchange(
            &mut gw,
            &mut dev,
            T0,
            &[ip(sync_frame(peer, g, 8848, &msg))],
        );
        assert_eq!(gw.counters().sync_received, 1);
        gw.apply_line(T0, "--stop-daemon backup").unwrap();
        assert!(!gw.interface().has_multicast_group(GROUP4));
        exchange(
            &mut gw,
            &mut dev,
            T0,
            &[ip(sync_frame(peer, g, 8848, &msg))],
        );
        assert_eq!(gw.counters().sync_received, 1, "not a member any more");
        assert_eq!(gw.balancer().sync_stats().messages_received, 1);
    }
}
