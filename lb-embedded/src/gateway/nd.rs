//! Neighbour discovery on Ethernet: ARP requests and IPv6 neighbour solicitations for a
//! virtual address are answered with the gateway's hardware address; ARP and NDP messages
//! teach the neighbour cache (and release the frames held for a neighbour that answered); and
//! the next hops of forwarded packets are resolved with ARP requests and neighbour
//! solicitations sent from the gateway's own addresses.

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use lb_core::Instant;
use smoltcp::phy::Device;
use smoltcp::wire::{
    ArpOperation, ArpPacket, ArpRepr, EthernetAddress, Icmpv6Repr, IpAddress, NdiscRepr,
};

use super::tx::transmit;
use super::{Gateway, IP_AT, RX_AT};
use crate::link::{
    arp_reply, arp_request, icmpv6_frame, multicast_mac, neighbour_advert, parse_ndisc, raw_mac,
    solicited_node, NDISC_FRAME,
};

impl<'a> Gateway<'a> {
    /// An ARP packet in the Ethernet frame `frame[RX_AT..RX_AT + len]`: learns the sender, answers a
    /// request for a virtual address, hands one for an own address to the interface.
    pub(super) fn handle_arp<D: Device + ?Sized>(
        &mut self,
        now: Instant,
        device: &mut D,
        len: usize,
    ) {
        let parsed = ArpPacket::new_checked(&self.frame[IP_AT..RX_AT + len])
            .and_then(|p| ArpRepr::parse(&p));
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
            self.send_held(now, device, IpAddr::V4(sip), smac);
        }
        if vip && operation == ArpOperation::Request {
            let buf = arp_reply(self.mac, tip, smac, sip);
            if transmit(device, now, &buf) {
                self.counters.arp_answers += 1;
            } else {
                self.counters.tx_full += 1;
            }
            return;
        }
        if own {
            self.give_interface(now, device, len, false);
        } else {
            self.counters.rx_ignored += 1;
        }
    }

    /// Handles a neighbour solicitation or advertisement; `true` if it was consumed (a
    /// solicitation for a virtual address, answered).
    pub(super) fn handle_ndp<D: Device + ?Sized>(
        &mut self,
        now: Instant,
        device: &mut D,
        len: usize,
        link_src: Option<EthernetAddress>,
    ) -> bool {
        let Some((src, _, nd)) = parse_ndisc(&self.frame[IP_AT..IP_AT + len]) else {
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
                        self.send_held(now, device, IpAddr::V6(src), m);
                    }
                }
                if !vip {
                    return false;
                }
                let Some((to, to_mac, na)) =
                    neighbour_advert(src, mac.or(link_src), target_addr, self.mac)
                else {
                    return true;
                };
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
                        self.send_held(now, device, IpAddr::V6(target_addr), m);
                    }
                }
                false
            }
            _ => false,
        }
    }

    /// Sends an ARP request or neighbour solicitation for `ip`.
    pub(super) fn send_request<D: Device + ?Sized>(
        &mut self,
        now: Instant,
        device: &mut D,
        ip: IpAddr,
    ) {
        let sent = match ip {
            IpAddr::V4(target) => {
                let Some(src) = self.source_v4(target) else {
                    return;
                };
                let buf = arp_request(self.mac, src, target);
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
        let mut buf = [0u8; NDISC_FRAME];
        match icmpv6_frame(&mut buf, self.mac, src, dst_mac, dst, msg) {
            Some(n) => transmit(device, now, &buf[..n]),
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use core::net::{IpAddr, Ipv6Addr};

    use smoltcp::phy::Medium;
    use smoltcp::wire::{
        ArpOperation, ArpRepr, EthernetAddress, EthernetProtocol, NdiscNeighborFlags, NdiscRepr,
    };

    use super::super::testkit::*;
    use crate::link::{multicast_mac, solicited_node};
    use crate::neighbour::{MAX_REQUESTS, RETRY};
    use lb_core::Instant;

    #[test]
    fn an_arp_request_for_a_vip_is_answered_with_our_mac_and_the_asker_is_learnt() {
        let mut dev = FakeDevice::new(Medium::Ethernet);
        let mut gw = gateway(&mut dev);
        let out = exchange(&mut gw, &mut dev, T0, &[who_has(VIP)]);
        assert_eq!(out.len(), 1);
        assert_eq!(
            eth_header(&out[0]),
            (CLIENT_MAC, GW_MAC, EthernetProtocol::Arp)
        );
        assert_eq!(
            arp_of(&out[0]),
            Some(ArpRepr::EthernetIpv4 {
                operation: ArpOperation::Reply,
                source_hardware_addr: GW_MAC,
                source_protocol_addr: VIP,
                target_hardware_addr: CLIENT_MAC,
                target_protocol_addr: CLIENT,
            })
        );
        assert_eq!(gw.counters().arp_answers, 1);
        assert_eq!(gw.counters().rx_own, 0, "not the interface's business");
        assert!(gw
            .neighbours()
            .any(|n| n == (IpAddr::V4(CLIENT), CLIENT_MAC)));
    }

    #[test]
    fn an_arp_request_for_a_stranger_is_ignored_and_not_learnt() {
        let mut dev = FakeDevice::new(Medium::Ethernet);
        let mut gw = gateway(&mut dev);
        let out = exchange(
            &mut gw,
            &mut dev,
            T0,
            &[who_has(core::net::Ipv4Addr::new(10, 0, 0, 77))],
        );
        assert!(out.is_empty());
        assert_eq!(gw.counters().rx_ignored, 1);
        assert_eq!(gw.counters().arp_answers, 0);
        assert_eq!(gw.neighbours().count(), 0);
    }

    #[test]
    fn an_arp_request_for_an_own_address_is_left_to_the_interface() {
        let mut dev = FakeDevice::new(Medium::Ethernet);
        let mut gw = gateway(&mut dev);
        let out = exchange(&mut gw, &mut dev, T0, &[who_has(GW_IP)]);
        assert_eq!(gw.counters().rx_own, 1);
        assert_eq!(gw.counters().arp_answers, 0);
        let reply = out
            .iter()
            .find_map(|f| arp_of(f))
            .expect("the interface answers");
        assert!(matches!(
            reply,
            ArpRepr::EthernetIpv4 {
                operation: ArpOperation::Reply,
                source_hardware_addr: GW_MAC,
                source_protocol_addr: GW_IP,
                ..
            }
        ));
    }

    #[test]
    fn a_neighbour_solicitation_for_a_v6_vip_is_answered_solicited() {
        let mut dev = FakeDevice::new(Medium::Ethernet);
        let mut gw = gateway(&mut dev);
        gw.apply_line(T0, "-A -t [fd00::100]:80 -s rr").unwrap();
        let ns = NdiscRepr::NeighborSolicit {
            target_addr: VIP6,
            lladdr: Some(CLIENT_MAC.into()),
        };
        let to = solicited_node(VIP6);
        let out = exchange(
            &mut gw,
            &mut dev,
            T0,
            &[ndisc(CLIENT6, to, multicast_mac(to), 255, ns)],
        );
        assert_eq!(gw.counters().ndp_answers, 1);
        assert_eq!(out.len(), 1);
        assert_eq!(eth_header(&out[0]).0, CLIENT_MAC);
        let (src, dst, hop, na) = ndisc_of(&out[0]).unwrap();
        assert_eq!((src, dst, hop), (VIP6, CLIENT6, 255));
        assert_eq!(
            na,
            NdiscRepr::NeighborAdvert {
                flags: NdiscNeighborFlags::SOLICITED | NdiscNeighborFlags::OVERRIDE,
                target_addr: VIP6,
                lladdr: Some(GW_MAC.into()),
            }
        );
        assert!(gw
            .neighbours()
            .any(|n| n == (IpAddr::V6(CLIENT6), CLIENT_MAC)));
    }

    #[test]
    fn a_duplicate_address_probe_for_a_vip_is_answered_to_all_nodes_unsolicited() {
        let mut dev = FakeDevice::new(Medium::Ethernet);
        let mut gw = gateway(&mut dev);
        gw.apply_line(T0, "-A -t [fd00::100]:80 -s rr").unwrap();
        let ns = NdiscRepr::NeighborSolicit {
            target_addr: VIP6,
            lladdr: None,
        };
        let to = solicited_node(VIP6);
        let probe = ndisc(Ipv6Addr::UNSPECIFIED, to, multicast_mac(to), 255, ns);
        let out = exchange(&mut gw, &mut dev, T0, &[probe]);
        let all = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
        assert_eq!(eth_header(&out[0]).0, multicast_mac(all));
        let (_, dst, _, na) = ndisc_of(&out[0]).unwrap();
        assert_eq!(dst, all);
        assert!(matches!(
            na,
            NdiscRepr::NeighborAdvert { flags, .. } if flags == NdiscNeighborFlags::OVERRIDE
        ));
        assert_eq!(gw.neighbours().count(), 0, "nothing to learn from ::");
    }

    #[test]
    fn a_solicitation_with_a_hop_limit_below_255_is_not_answered() {
        let mut dev = FakeDevice::new(Medium::Ethernet);
        let mut gw = gateway(&mut dev);
        gw.apply_line(T0, "-A -t [fd00::100]:80 -s rr").unwrap();
        let ns = NdiscRepr::NeighborSolicit {
            target_addr: VIP6,
            lladdr: Some(CLIENT_MAC.into()),
        };
        let to = solicited_node(VIP6);
        let out = exchange(
            &mut gw,
            &mut dev,
            T0,
            &[ndisc(CLIENT6, to, multicast_mac(to), 64, ns)],
        );
        assert_eq!(gw.counters().ndp_answers, 0);
        assert!(out
            .iter()
            .all(|f| ndisc_of(f).is_none_or(|(src, ..)| src != VIP6)));
    }

    #[test]
    fn an_unresolved_next_hop_is_asked_for_and_its_frame_sent_once_it_answers() {
        let mut dev = FakeDevice::new(Medium::Ethernet);
        let mut gw = gateway(&mut dev);
        let out = exchange(&mut gw, &mut dev, T0, &[eth4(&syn(CLIENT, VIP, 64))]);
        // The SYN is balanced to SERVER, whose MAC is unknown: ARP request, frame held.
        assert_eq!(out.len(), 1);
        assert_eq!(
            eth_header(&out[0]),
            (EthernetAddress::BROADCAST, GW_MAC, EthernetProtocol::Arp)
        );
        assert_eq!(
            arp_of(&out[0]),
            Some(ArpRepr::EthernetIpv4 {
                operation: ArpOperation::Request,
                source_hardware_addr: GW_MAC,
                source_protocol_addr: GW_IP,
                target_hardware_addr: EthernetAddress([0; 6]),
                target_protocol_addr: SERVER,
            })
        );
        assert_eq!(gw.held(), 1);
        assert_eq!((gw.counters().held, gw.counters().requests_sent), (1, 1));

        let answer = arp(ArpOperation::Reply, SERVER_MAC, SERVER, GW_IP, GW_MAC);
        let out = exchange(&mut gw, &mut dev, Instant::from_millis(5), &[answer]);
        assert_eq!(gw.held(), 0);
        assert_eq!(out.len(), 1);
        assert_eq!(
            eth_header(&out[0]),
            (SERVER_MAC, GW_MAC, EthernetProtocol::Ipv4)
        );
        assert_eq!(ipv4_of(&out[0], true).unwrap().dst_addr(), SERVER);
    }

    #[test]
    fn a_next_hop_that_never_answers_is_asked_again_then_its_frames_are_dropped() {
        let mut dev = FakeDevice::new(Medium::Ethernet);
        let mut gw = gateway(&mut dev);
        exchange(&mut gw, &mut dev, T0, &[eth4(&syn(CLIENT, VIP, 64))]);
        for i in 1..u64::from(MAX_REQUESTS) {
            let out = exchange(&mut gw, &mut dev, Instant::from_millis(i * RETRY), &[]);
            assert!(matches!(
                arp_of(&out[0]),
                Some(ArpRepr::EthernetIpv4 {
                    target_protocol_addr: SERVER,
                    ..
                })
            ));
            assert_eq!(gw.held(), 1, "still held after request {}", i + 1);
        }
        let done = Instant::from_millis(u64::from(MAX_REQUESTS) * RETRY);
        assert!(exchange(&mut gw, &mut dev, done, &[]).is_empty());
        assert_eq!(gw.held(), 0);
        assert_eq!(gw.counters().unresolved_drops, 1);
        assert_eq!(gw.counters().requests_sent, u64::from(MAX_REQUESTS));
    }

    #[test]
    fn solicited_node_and_multicast_addresses_follow_the_rfcs() {
        let a = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0x1234, 0x5678);
        let sn = solicited_node(a);
        assert_eq!(sn, Ipv6Addr::new(0xff02, 0, 0, 0, 0, 1, 0xff34, 0x5678));
        assert_eq!(
            multicast_mac(sn),
            EthernetAddress([0x33, 0x33, 0xff, 0x34, 0x56, 0x78])
        );
    }
}
