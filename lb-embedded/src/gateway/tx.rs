//! The transmit path: a packet the balancer rewrote, generated or passed is routed, given the
//! next hop's hardware address on Ethernet (or held while `nd.rs` resolves it), and
//! copied into the device's transmit token. Oversized packets, routing loops and missing
//! routes are dropped and counted.

use core::net::IpAddr;

use lb_core::Instant;
use smoltcp::phy::{Device, TxToken};
use smoltcp::wire::{EthernetAddress, EthernetFrame, EthernetProtocol};

use super::{smol, Gateway};
use crate::neighbour::Lookup;
use crate::{LINK_HEADER, MAX_FRAME};
use lb_core::Transmit;

/// Sends `bytes` as one frame; `false` if the device had no buffer.
pub(super) fn transmit<D: Device + ?Sized>(device: &mut D, now: Instant, bytes: &[u8]) -> bool {
    match device.transmit(smol(now)) {
        Some(tok) => {
            tok.consume(bytes.len(), |b| b.copy_from_slice(bytes));
            true
        }
        None => false,
    }
}

impl<'a> Gateway<'a> {
    /// Decrements the TTL / hop limit of `t`'s packet in the frame buffer (the outer header of
    /// a tunnelled one); `false` if it ran out.
    pub(super) fn decrement_ttl(&mut self, t: &Transmit) -> bool {
        let at = LINK_HEADER + t.start;
        crate::link::decrement_ttl(&mut self.frame[at..at + t.len])
    }

    /// Routes the IP packet `t` (in `frame[LINK_HEADER..]` at `t.range()`, a tunnelled one
    /// with its outer headers) to `t.dst` and sends it (or holds it until its next hop
    /// resolves); on Ethernet the link header goes in the `LINK_HEADER` bytes in front of it.
    pub(super) fn send_ip<D: Device + ?Sized>(
        &mut self,
        now: Instant,
        device: &mut D,
        t: Transmit,
    ) {
        let (at, len) = (t.start, t.len);
        let Some(hop) = self.routes.next_hop(t.dst, self.iface.ip_addrs()) else {
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
            } else if !transmit(device, now, &self.frame[LINK_HEADER + at..][..len]) {
                self.counters.tx_full += 1;
            }
            return;
        }
        let total = LINK_HEADER + len;
        if total > self.mtu || total > MAX_FRAME {
            self.counters.oversize += 1;
            return;
        }
        let ethertype = match t.dst {
            IpAddr::V4(_) => EthernetProtocol::Ipv4,
            IpAddr::V6(_) => EthernetProtocol::Ipv6,
        };
        let frame = &mut self.frame[at..at + total];
        let mut header = EthernetFrame::new_unchecked(&mut frame[..LINK_HEADER]);
        header.set_src_addr(self.mac);
        header.set_ethertype(ethertype);
        match self.neighbours.lookup(hop, now) {
            Lookup::Found { mac, refresh } => {
                frame[..6].copy_from_slice(&mac.0);
                if !transmit(device, now, frame) {
                    self.counters.tx_full += 1;
                }
                if refresh {
                    self.send_request(now, device, hop);
                }
            }
            Lookup::Resolving { request } => {
                if self.hold.push(hop, frame) {
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
    pub(super) fn send_held<D: Device + ?Sized>(
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
}

#[cfg(test)]
mod tests {
    use core::net::{IpAddr, Ipv4Addr};

    use smoltcp::phy::Medium;
    use smoltcp::wire::{EthernetProtocol, IpAddress, IpCidr, IpProtocol, Ipv4Packet};

    use super::super::testkit::*;
    use crate::Route;

    #[test]
    fn a_balanced_packet_goes_to_the_servers_mac_from_ours() {
        let mut dev = FakeDevice::new(Medium::Ethernet);
        let mut gw = gateway(&mut dev);
        teach(&mut gw, &mut dev, SERVER, SERVER_MAC);
        let out = exchange(&mut gw, &mut dev, T0, &[eth4(&syn(CLIENT, VIP, 64))]);
        assert_eq!(out.len(), 1);
        assert_eq!(
            eth_header(&out[0]),
            (SERVER_MAC, GW_MAC, EthernetProtocol::Ipv4)
        );
        let ip = ipv4_of(&out[0], true).unwrap();
        assert_eq!((ip.src_addr(), ip.dst_addr()), (CLIENT, SERVER));
        assert_eq!(gw.counters().forwarded, 1);
        assert_eq!(gw.held(), 0);
    }

    /// Direct routing (`-g`) on Ethernet: the SYN goes to the real server's MAC still addressed
    /// to the VIP, only its TTL decremented (as IPVS's DR transmitter does); on an IP-medium
    /// device, which can only route on the packet's destination, `-g` is refused.
    #[test]
    fn a_direct_routing_packet_goes_to_the_servers_mac_still_to_the_vip() {
        let mut dev = FakeDevice::new(Medium::Ethernet);
        let mut gw = gateway(&mut dev);
        gw.apply_line(T0, "-d -t 10.0.0.100:80 -r 10.0.0.2:80")
            .unwrap();
        gw.apply_line(T0, "-a -t 10.0.0.100:80 -r 10.0.0.2 -g")
            .unwrap();
        teach(&mut gw, &mut dev, SERVER, SERVER_MAC);
        let sent = syn(CLIENT, VIP, 64);
        let out = exchange(&mut gw, &mut dev, T0, &[eth4(&sent)]);
        assert_eq!(out.len(), 1);
        assert_eq!(
            eth_header(&out[0]),
            (SERVER_MAC, GW_MAC, EthernetProtocol::Ipv4)
        );
        let ip = ipv4_of(&out[0], true).unwrap();
        assert_eq!(
            (ip.src_addr(), ip.dst_addr(), ip.hop_limit()),
            (CLIENT, VIP, 63)
        );
        assert!(ip.verify_checksum());
        // Past the TTL and its checksum (bytes 8 and 10–11), the packet is as it came.
        let (a, b) = (&sent[..], ip.into_inner());
        assert_eq!(
            (&a[..8], &a[9..10], &a[12..]),
            (&b[..8], &b[9..10], &b[12..])
        );
        assert_eq!(gw.counters().forwarded, 1);

        let mut dev = FakeDevice::new(Medium::Ip);
        let mut gw = gateway(&mut dev);
        let err = gw
            .apply_line(T0, "-a -t 10.0.0.100:80 -r 10.0.0.3 -g")
            .unwrap_err();
        assert!(
            std::format!("{err}").contains("direct routing (-g)"),
            "{err}"
        );
    }

    /// A segment of `payload` bytes from the client to the VIP, with DF (`df`) or without.
    fn data_to_vip(payload: usize, df: bool) -> std::vec::Vec<u8> {
        use lb_testkit::pkt;
        let (c, v) = (
            core::net::SocketAddr::from((CLIENT, 40000)),
            core::net::SocketAddr::from((VIP, 80)),
        );
        let mut p = pkt::segment(c, v, pkt::SYN, 1, 0, &std::vec![7; payload]);
        if !df {
            p[6] &= !0x40;
            pkt::refresh_ipv4_checksum(&mut p);
        }
        p
    }

    /// A gateway whose service VIP:80 has one tunnel server, SERVER, added by `server`, with
    /// SERVER's MAC known.
    fn tunnel_gateway(dev: &mut FakeDevice, server: &str) -> super::super::Gateway<'static> {
        let mut gw = gateway(dev);
        gw.apply_line(T0, "-d -t 10.0.0.100:80 -r 10.0.0.2:80")
            .unwrap();
        gw.apply_line(T0, server).unwrap();
        teach(&mut gw, dev, SERVER, SERVER_MAC);
        gw
    }

    /// A tunnelled packet (`-i`) leaves in one frame: the link header, the outer headers from
    /// the gateway's own address (the tunnel source) to the real server with the TTL
    /// decremented, and the client's packet as it came, TTL included.
    #[test]
    fn a_tunnelled_packet_leaves_behind_outer_headers_from_the_gateways_address() {
        let mut dev = FakeDevice::new(Medium::Ethernet);
        let mut gw = tunnel_gateway(
            &mut dev,
            "-a -t 10.0.0.100:80 -r 10.0.0.2 -i --tun-type gue --tun-port 6080 --tun-csum",
        );
        let sent = syn(CLIENT, VIP, 64);
        let out = exchange(&mut gw, &mut dev, T0, &[eth4(&sent)]);
        assert_eq!(out.len(), 1);
        // Ethernet, IPv4 (20), UDP (8), GUE (4), then the client's SYN.
        assert_eq!(out[0].len(), crate::LINK_HEADER + 32 + sent.len());
        assert_eq!(
            eth_header(&out[0]),
            (SERVER_MAC, GW_MAC, EthernetProtocol::Ipv4)
        );
        let ip = ipv4_of(&out[0], true).unwrap();
        assert_eq!(
            (
                ip.src_addr(),
                ip.dst_addr(),
                ip.hop_limit(),
                ip.next_header()
            ),
            (GW_IP, SERVER, 63, IpProtocol::Udp)
        );
        assert!(ip.verify_checksum());
        assert_eq!(usize::from(ip.total_len()), 32 + sent.len());
        let udp = &ip.payload()[..8];
        assert_eq!(u16::from_be_bytes([udp[2], udp[3]]), 6080);
        assert_eq!(&out[0][crate::LINK_HEADER + 32..], &sent[..]);
        assert_eq!(gw.counters().forwarded, 1);
        assert_eq!(gw.balancer().counters().tunnelled, 1);
        // Sent from where it was received: the packet was not moved, its outer headers and
        // link header went into the headroom in front of it.
        let at = super::super::IP_AT;
        assert_eq!(&gw.frame[at..at + sent.len()], &sent[..]);
        assert_eq!(
            &gw.frame[at - 32 - crate::LINK_HEADER..at + sent.len()],
            &out[0][..]
        );
    }

    /// GUE over IPv6 takes the whole headroom (40 + 8 + 4 bytes): the frame starts at the
    /// buffer's first byte. It waits in the hold queue while the real server is solicited and
    /// leaves whole when it answers, from the gateway's IPv6 address.
    #[test]
    fn an_ipv6_gue_packet_fills_the_headroom_and_waits_for_its_next_hop_whole() {
        use lb_testkit::pkt;
        use smoltcp::wire::{Ipv6Packet, NdiscNeighborFlags, NdiscRepr};
        let server6 = core::net::Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 2);
        let mut dev = FakeDevice::new(Medium::Ethernet);
        let mut gw = gateway(&mut dev);
        gw.apply_line(T0, "-A -t [fd00::100]:80 -s rr").unwrap();
        gw.apply_line(
            T0,
            "-a -t [fd00::100]:80 -r [fd00::2] -i --tun-type gue --tun-port 6080",
        )
        .unwrap();
        let (c, v) = (
            core::net::SocketAddr::from((CLIENT6, 40000)),
            core::net::SocketAddr::from((VIP6, 80)),
        );
        let sent = pkt::segment(c, v, pkt::SYN, 1, 0, &[]);
        let frame = eth(CLIENT_MAC, GW_MAC, EthernetProtocol::Ipv6, &sent);
        let out = exchange(&mut gw, &mut dev, T0, &[frame]);
        assert_eq!(out.len(), 1, "a neighbour solicitation for the real server");
        assert!(matches!(
            ndisc_of(&out[0]),
            Some((_, _, 255, NdiscRepr::NeighborSolicit { target_addr, .. })) if target_addr == server6
        ));
        assert_eq!(gw.held(), 1);

        let na = NdiscRepr::NeighborAdvert {
            flags: NdiscNeighborFlags::SOLICITED | NdiscNeighborFlags::OVERRIDE,
            target_addr: server6,
            lladdr: Some(SERVER_MAC.into()),
        };
        let answer = ndisc(server6, GW_IP6, GW_MAC, 255, na);
        let out = exchange(&mut gw, &mut dev, T0, &[answer]);
        assert_eq!(gw.held(), 0);
        assert_eq!(out.len(), 1);
        assert_eq!(
            out[0].len(),
            crate::LINK_HEADER + crate::HEADROOM + sent.len()
        );
        assert_eq!(
            eth_header(&out[0]),
            (SERVER_MAC, GW_MAC, EthernetProtocol::Ipv6)
        );
        let ip = Ipv6Packet::new_checked(&out[0][crate::LINK_HEADER..]).unwrap();
        assert_eq!(
            (
                ip.src_addr(),
                ip.dst_addr(),
                ip.hop_limit(),
                ip.next_header()
            ),
            (GW_IP6, server6, 63, IpProtocol::Udp)
        );
        assert_eq!(usize::from(ip.payload_len()), 8 + 4 + sent.len());
        let udp = ip.payload();
        assert_eq!(u16::from_be_bytes([udp[2], udp[3]]), 6080);
        assert_eq!(&udp[8..12], &[0, 41, 0, 0], "GUE: IPv6 inside");
        assert_eq!(&udp[12..], &sent[..]);
        assert_eq!((gw.counters().forwarded, gw.counters().held), (1, 1));
    }

    /// On an IP-medium device a tunnelled packet leaves as the outer packet alone.
    #[test]
    fn on_medium_ip_a_tunnelled_packet_leaves_without_a_link_header() {
        let mut dev = FakeDevice::new(Medium::Ip);
        let mut gw = gateway(&mut dev);
        gw.apply_line(T0, "-d -t 10.0.0.100:80 -r 10.0.0.2:80")
            .unwrap();
        gw.apply_line(T0, "-a -t 10.0.0.100:80 -r 10.0.0.2 -i")
            .unwrap();
        let sent = syn(CLIENT, VIP, 64);
        let out = exchange(&mut gw, &mut dev, T0, core::slice::from_ref(&sent));
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].len(), 20 + sent.len());
        let ip = ipv4_of(&out[0], false).unwrap();
        assert_eq!(
            (
                ip.src_addr(),
                ip.dst_addr(),
                ip.hop_limit(),
                ip.next_header()
            ),
            (GW_IP, SERVER, 63, IpProtocol::Unknown(4))
        );
        assert!(ip.verify_checksum());
        assert_eq!(&out[0][20..], &sent[..]);
    }

    /// The largest packet a tunnel carries fills the largest frame: 1,500 bytes less the
    /// tunnel's headers inside, 1,514 out. One byte more with DF is answered with ICMP
    /// "fragmentation needed" naming that size; without DF it would need the outer packet
    /// fragmented, which the gateway does not do: dropped, counted as oversize.
    #[test]
    fn a_tunnelled_packet_fills_the_largest_frame_and_one_byte_more_is_refused() {
        let mut dev = FakeDevice::new(Medium::Ethernet);
        let mut gw = tunnel_gateway(&mut dev, "-a -t 10.0.0.100:80 -r 10.0.0.2 -i");
        teach(&mut gw, &mut dev, CLIENT, CLIENT_MAC);
        // IPIP: 20 bytes of outer header.
        let headers = data_to_vip(0, true).len();
        let fits = data_to_vip(1480 - headers, true);
        assert_eq!(fits.len(), 1480);
        let out = exchange(&mut gw, &mut dev, T0, &[eth4(&fits)]);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].len(), crate::MAX_FRAME);
        assert_eq!(&out[0][crate::LINK_HEADER + 20..], &fits[..]);

        let big = data_to_vip(1481 - headers, true);
        let out = exchange(&mut gw, &mut dev, T0, &[eth4(&big)]);
        assert_eq!(out.len(), 1);
        assert_eq!(eth_header(&out[0]).0, CLIENT_MAC);
        let ip = ipv4_of(&out[0], true).unwrap();
        assert_eq!((ip.src_addr(), ip.dst_addr()), (VIP, CLIENT));
        let icmp = ip.payload();
        assert_eq!((icmp[0], icmp[1]), (3, 4), "fragmentation needed");
        assert_eq!(u16::from_be_bytes([icmp[6], icmp[7]]), 1480);
        assert_eq!(gw.counters().replies, 1);
        assert_eq!(gw.balancer().counters().too_big_replies, 1);

        let no_df = data_to_vip(1500 - headers, false);
        let out = exchange(&mut gw, &mut dev, T0, &[eth4(&no_df)]);
        assert!(out.is_empty(), "{out:?}");
        assert_eq!(gw.counters().oversize, 1);
        assert_eq!(gw.counters().tx_full, 0);
    }

    #[test]
    fn a_fragmented_segment_follows_its_first_fragment_to_the_server() {
        use lb_testkit::pkt;
        let mut dev = FakeDevice::new(Medium::Ethernet);
        let mut gw = gateway(&mut dev);
        teach(&mut gw, &mut dev, SERVER, SERVER_MAC);
        let (client, vip) = (
            core::net::SocketAddr::from((CLIENT, 40000)),
            core::net::SocketAddr::from((VIP, 80)),
        );
        let seg = pkt::segment(client, vip, pkt::SYN, 1, 0, &[3; 2400]);
        let frags = pkt::fragments(&seg, 0, &[1400], 42);
        let frames: std::vec::Vec<_> = frags.iter().map(|f| eth4(f)).collect();
        let out = exchange(&mut gw, &mut dev, T0, &frames);
        assert_eq!(out.len(), 2, "both fragments forwarded");
        let mut ips = std::vec::Vec::new();
        for (o, f) in out.iter().zip(&frags) {
            assert_eq!(eth_header(o).0, SERVER_MAC);
            let ip = ipv4_of(o, true).unwrap();
            assert_eq!(
                (ip.dst_addr(), usize::from(ip.total_len())),
                (SERVER, f.len())
            );
            assert!(ip.verify_checksum());
            ips.push(o[crate::LINK_HEADER..].to_vec());
        }
        let whole = pkt::reassemble(&ips).unwrap();
        assert!(pkt::checksums_ok(&whole));
        assert_eq!(gw.counters().forwarded, 2);
    }

    #[test]
    fn a_balanced_packet_leaves_with_its_ttl_decremented_and_runs_out_at_1() {
        let mut dev = FakeDevice::new(Medium::Ip);
        let mut gw = gateway(&mut dev);
        let out = exchange(&mut gw, &mut dev, T0, &[syn(CLIENT, VIP, 64)]);
        let ip = ipv4_of(&out[0], false).unwrap();
        assert_eq!((ip.dst_addr(), ip.hop_limit()), (SERVER, 63));
        assert!(ip.verify_checksum());
        assert!(lb_testkit::pkt::checksums_ok(&out[0]));
        let last_hop = syn(Ipv4Addr::new(10, 0, 0, 61), VIP, 1);
        assert!(exchange(&mut gw, &mut dev, T0, &[last_hop]).is_empty());
        assert_eq!(gw.counters().ttl_expired, 1);
        assert_eq!(gw.counters().forwarded, 1);
    }

    #[test]
    fn on_medium_ip_the_packet_is_sent_without_a_link_header() {
        let mut dev = FakeDevice::new(Medium::Ip);
        let mut gw = gateway(&mut dev);
        let pkt = syn(CLIENT, VIP, 64);
        let out = exchange(&mut gw, &mut dev, T0, core::slice::from_ref(&pkt));
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].len(), pkt.len());
        assert_eq!(ipv4_of(&out[0], false).unwrap().dst_addr(), SERVER);
    }

    #[test]
    fn frames_waiting_for_one_next_hop_share_one_request_until_the_hold_queue_is_full() {
        let mut dev = FakeDevice::new(Medium::Ethernet);
        let mut gw = gateway(&mut dev); // hold: 2
        let syns: std::vec::Vec<_> = (0..3u8)
            .map(|i| eth4(&syn(Ipv4Addr::new(10, 0, 0, 60 + i), VIP, 64)))
            .collect();
        let out = exchange(&mut gw, &mut dev, T0, &syns);
        assert_eq!(out.len(), 1, "one ARP request: {out:?}");
        assert!(arp_of(&out[0]).is_some());
        assert_eq!(gw.held(), 2);
        assert_eq!(gw.counters().held, 2);
        assert_eq!(gw.counters().hold_full_drops, 1);
    }

    #[test]
    fn a_passed_packet_is_routed_with_its_ttl_decremented_and_checksum_fixed() {
        let mut dev = FakeDevice::new(Medium::Ethernet);
        let mut gw = gateway(&mut dev);
        teach(&mut gw, &mut dev, SERVER, SERVER_MAC);
        let out = exchange(&mut gw, &mut dev, T0, &[eth4(&ping(CLIENT, SERVER))]);
        assert_eq!(gw.counters().passed, 1);
        let ip = ipv4_of(&out[0], true).unwrap();
        assert_eq!(ip.hop_limit(), 63);
        assert!(ip.verify_checksum());
    }

    #[test]
    fn a_passed_packet_whose_ttl_runs_out_is_dropped() {
        let mut dev = FakeDevice::new(Medium::Ip);
        let mut gw = gateway(&mut dev);
        let mut pkt = ping(CLIENT, SERVER);
        let mut ip = Ipv4Packet::new_checked(&mut pkt[..]).unwrap();
        ip.set_hop_limit(1);
        ip.fill_checksum();
        assert!(exchange(&mut gw, &mut dev, T0, &[pkt]).is_empty());
        assert_eq!(gw.counters().ttl_expired, 1);
        assert_eq!(gw.counters().passed, 0);
    }

    #[test]
    fn without_a_route_a_packet_is_dropped_and_counted() {
        let mut dev = FakeDevice::new(Medium::Ip);
        let mut gw = gateway(&mut dev);
        let far = Ipv4Addr::new(198, 51, 100, 5);
        assert!(exchange(&mut gw, &mut dev, T0, &[ping(CLIENT, far)]).is_empty());
        assert_eq!(gw.counters().no_route, 1);

        gw.add_route(Route::default_via(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 254))))
            .unwrap();
        let out = exchange(&mut gw, &mut dev, T0, &[ping(CLIENT, far)]);
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!(ipv4_of(&out[0], false).unwrap().dst_addr(), far);
        // `passed` counts both (it is counted before routing); `no_route` only the first.
        assert_eq!((gw.counters().passed, gw.counters().no_route), (2, 1));
    }

    #[test]
    fn a_route_through_an_own_address_or_a_vip_is_a_loop() {
        let mut dev = FakeDevice::new(Medium::Ip);
        let mut gw = gateway(&mut dev);
        let net = |a, b| IpCidr::new(IpAddress::v4(198, 51, a, 0), b);
        gw.add_route(Route {
            dest: net(100, 24),
            via: Some(IpAddr::V4(GW_IP)),
        })
        .unwrap();
        gw.add_route(Route {
            dest: net(101, 24),
            via: Some(IpAddr::V4(VIP)),
        })
        .unwrap();
        let pkts = [
            ping(CLIENT, Ipv4Addr::new(198, 51, 100, 5)),
            ping(CLIENT, Ipv4Addr::new(198, 51, 101, 5)),
        ];
        assert!(exchange(&mut gw, &mut dev, T0, &pkts).is_empty());
        assert_eq!(gw.counters().loop_drops, 2);
    }

    #[test]
    fn a_packet_longer_than_the_mtu_is_dropped_as_oversize() {
        let mut dev = FakeDevice::new(Medium::Ip);
        dev.mtu = 60;
        let mut gw = gateway(&mut dev);
        let mut pkt = ping(CLIENT, SERVER); // 32 bytes: fits
        assert_eq!(exchange(&mut gw, &mut dev, T0, &[pkt.clone()]).len(), 1);
        pkt.resize(100, 0);
        let mut ip = Ipv4Packet::new_checked(&mut pkt[..]).unwrap();
        ip.set_total_len(100);
        ip.fill_checksum();
        assert!(exchange(&mut gw, &mut dev, T0, &[pkt]).is_empty());
        assert_eq!(gw.counters().oversize, 1);
    }

    #[test]
    fn a_device_without_a_transmit_buffer_costs_the_frame_and_is_counted() {
        let mut dev = FakeDevice::new(Medium::Ethernet);
        let mut gw = gateway(&mut dev);
        teach(&mut gw, &mut dev, SERVER, SERVER_MAC);
        dev.tx_room = 0;
        assert!(exchange(&mut gw, &mut dev, T0, &[eth4(&syn(CLIENT, VIP, 64))]).is_empty());
        assert_eq!(gw.counters().tx_full, 1);
        assert_eq!(gw.held(), 0, "not held: the next hop is known");
    }
}
