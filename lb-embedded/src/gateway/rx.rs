//! The receive path: a frame copied out of the device, filtered by its link-layer header,
//! then either handed to the smoltcp interface (traffic for the gateway's own addresses,
//! multicast, broadcast), to neighbour discovery (`nd.rs`), or run through the balancer,
//! whose verdict decides what is sent on (`tx.rs`).

use core::net::IpAddr;

use lb_core::{Instant, Verdict};
use smoltcp::phy::Device;
use smoltcp::wire::{
    EthernetAddress, EthernetFrame, EthernetProtocol, IpProtocol, Ipv4Packet, Ipv6Packet,
};

use super::{smol, Gateway, IP_AT, RX_AT};
use crate::phy::OneFrame;
use crate::{HEADROOM, LINK_HEADER};

/// What the gateway reads from an IP header.
pub(super) struct IpInfo {
    pub(super) dst: IpAddr,
    /// The packet's own length (Ethernet padding trimmed).
    pub(super) len: usize,
    /// An ICMPv6 neighbour-discovery message (router/neighbour solicitation/advertisement,
    /// redirect).
    pub(super) ndp: bool,
    /// A TCP segment (no IPv6 extension header before it).
    pub(super) tcp: bool,
}

pub(super) fn ip_info(buf: &[u8]) -> Option<IpInfo> {
    match buf.first()? >> 4 {
        4 => {
            let p = Ipv4Packet::new_checked(buf).ok()?;
            Some(IpInfo {
                dst: IpAddr::V4(p.dst_addr()),
                len: usize::from(p.total_len()),
                ndp: false,
                tcp: p.next_header() == IpProtocol::Tcp,
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
                tcp: p.next_header() == IpProtocol::Tcp,
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

impl<'a> Gateway<'a> {
    /// A whole Ethernet frame in `frame[RX_AT..RX_AT + len]`.
    pub(super) fn handle_ethernet<D: Device + ?Sized>(
        &mut self,
        now: Instant,
        device: &mut D,
        len: usize,
    ) {
        let Ok(eth) = EthernetFrame::new_checked(&self.frame[RX_AT..RX_AT + len]) else {
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

    /// Hands the received frame, `len` bytes at `RX_AT` on Ethernet or at `IP_AT` on IP, to
    /// the interface; a TCP segment (`tcp`) to the health probes' sockets when they are attached.
    pub(super) fn give_interface<D: Device + ?Sized>(
        &mut self,
        now: Instant,
        device: &mut D,
        len: usize,
        tcp: bool,
    ) {
        let at = if self.ethernet { RX_AT } else { IP_AT };
        let mut one = OneFrame {
            frame: Some(&self.frame[at..at + len]),
            inner: device,
        };
        #[cfg(feature = "health")]
        let sockets = match self.probes.as_mut().and_then(|p| p.receiving(tcp)) {
            Some(probe_sockets) => probe_sockets,
            None => &mut self.sockets,
        };
        #[cfg(not(feature = "health"))]
        let sockets = {
            let _ = tcp; // without probes smoltcp answers a TCP segment with a RST
            &mut self.sockets
        };
        self.iface.poll(smol(now), &mut one, sockets);
        if one.frame.is_some() {
            self.counters.own_dropped += 1;
        } else {
            self.counters.rx_own += 1;
            #[cfg(feature = "sync")]
            self.sync_receive(now);
        }
    }

    /// An IP packet in `frame[IP_AT..IP_AT + len]`; `link_src` is the Ethernet source on
    /// Ethernet.
    pub(super) fn handle_ip<D: Device + ?Sized>(
        &mut self,
        now: Instant,
        device: &mut D,
        len: usize,
        link_src: Option<EthernetAddress>,
    ) {
        let mut len = len;
        if let Some(info) = ip_info(&self.frame[IP_AT..IP_AT + len]) {
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
                self.give_interface(now, device, frame_len, info.tcp);
                return;
            }
        }
        // The balancer sees the buffer from `LINK_HEADER` on, the packet `HEADROOM` bytes in:
        // a tunnelled packet's outer headers go into that headroom, in front of the packet,
        // which stays where it is; the verdict's `start` says where the packet to send begins
        // (`HEADROOM`, or less by the outer headers), and the link header goes in the
        // `LINK_HEADER` bytes before that (tx.rs).
        let verdict = self
            .lb
            .process_at(now, &mut self.frame[LINK_HEADER..], HEADROOM, len);
        match verdict {
            // Forwarded as IPVS forwards NAT traffic: with the TTL / hop limit decremented
            // (the kernel's decrement_ttl in ip_vs_xmit.c; a tunnelled packet's outer one),
            // and dropped when it runs out.
            Verdict::ToServer(t) | Verdict::ToClient(t) => {
                if self.decrement_ttl(&t) {
                    self.counters.forwarded += 1;
                    self.send_ip(now, device, t);
                } else {
                    self.counters.ttl_expired += 1;
                }
            }
            Verdict::Reply(t) => {
                self.counters.replies += 1;
                self.send_ip(now, device, t);
            }
            Verdict::Pass(t) => {
                if !self.forward_other {
                    self.counters.not_forwarded += 1;
                } else if !self.decrement_ttl(&t) {
                    self.counters.ttl_expired += 1;
                } else {
                    self.counters.passed += 1;
                    self.send_ip(now, device, t);
                }
            }
            Verdict::Drop(_) => self.counters.balancer_drops += 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::vec;

    use smoltcp::phy::Medium;
    use smoltcp::wire::{EthernetAddress, EthernetProtocol, Icmpv4Packet, Icmpv4Repr};

    use super::super::testkit::*;
    use super::super::GatewayConfig;
    use super::super::RX_BURST;
    use super::ip_info;
    use crate::FRAME_BUFFER;

    #[test]
    fn a_frame_for_another_hardware_address_is_ignored() {
        let mut dev = FakeDevice::new(Medium::Ethernet);
        let mut gw = gateway(&mut dev);
        let other = EthernetAddress([0x02, 0, 0, 0, 0, 0x99]);
        let f = eth(
            CLIENT_MAC,
            other,
            EthernetProtocol::Ipv4,
            &syn(CLIENT, VIP, 64),
        );
        assert!(exchange(&mut gw, &mut dev, T0, &[f]).is_empty());
        assert_eq!(gw.counters().rx_ignored, 1);
        assert_eq!(gw.balancer().counters().conns_created, 0);
    }

    #[test]
    fn our_own_frame_reflected_back_and_unknown_ethertypes_are_ignored() {
        let mut dev = FakeDevice::new(Medium::Ethernet);
        let mut gw = gateway(&mut dev);
        let reflected = eth(
            GW_MAC,
            EthernetAddress::BROADCAST,
            EthernetProtocol::Ipv4,
            &syn(CLIENT, VIP, 64),
        );
        let lldp = eth(
            CLIENT_MAC,
            GW_MAC,
            EthernetProtocol::Unknown(0x88cc),
            &[0; 46],
        );
        assert!(exchange(&mut gw, &mut dev, T0, &[reflected, lldp]).is_empty());
        assert_eq!(gw.counters().rx_ignored, 2);
        assert_eq!(gw.counters().rx_frames, 2);
        assert_eq!(gw.balancer().counters().conns_created, 0);
    }

    /// A frame fills the buffer behind the headroom: a link header and `IP_BUFFER` bytes are
    /// read (this one is then ignored: its ethertype is unknown); one byte more is oversize.
    #[test]
    fn a_frame_longer_than_the_frame_buffer_is_dropped_as_oversize() {
        let mut dev = FakeDevice::new(Medium::Ethernet);
        let mut gw = gateway(&mut dev);
        let room = FRAME_BUFFER - crate::HEADROOM;
        assert_eq!(room, crate::LINK_HEADER + crate::IP_BUFFER);
        let f = vec![0xff; room];
        assert!(exchange(&mut gw, &mut dev, T0, &[f]).is_empty());
        assert_eq!(gw.counters().oversize, 0);
        assert_eq!(gw.counters().rx_ignored, 1);
        let f = vec![0xff; room + 1];
        assert!(exchange(&mut gw, &mut dev, T0, &[f]).is_empty());
        assert_eq!(gw.counters().oversize, 1);
        assert_eq!(gw.counters().rx_ignored, 1);
    }

    #[test]
    fn one_poll_reads_at_most_a_burst() {
        let mut dev = FakeDevice::new(Medium::Ethernet);
        let mut gw = gateway(&mut dev);
        let f = eth4(&ping(CLIENT, SERVER));
        dev.rx.extend((0..RX_BURST + 5).map(|_| f.clone()));
        gw.poll(T0, &mut dev);
        assert_eq!(gw.counters().rx_frames, RX_BURST as u64);
        assert_eq!(dev.rx.len(), 5, "the rest waits for the next poll");
    }

    #[test]
    fn a_ping_to_an_own_address_is_answered_by_the_interface_not_the_balancer() {
        // Medium::Ip: no neighbour to resolve before the interface can answer.
        let mut dev = FakeDevice::new(Medium::Ip);
        let mut gw = gateway(&mut dev);
        let out = exchange(&mut gw, &mut dev, T0, &[ping(CLIENT, GW_IP)]);
        assert_eq!(gw.counters().rx_own, 1);
        assert_eq!(gw.balancer().counters().replies, 0);
        assert_eq!(out.len(), 1);
        let ip = ipv4_of(&out[0], false).unwrap();
        assert_eq!((ip.src_addr(), ip.dst_addr()), (GW_IP, CLIENT));
        let icmp = Icmpv4Packet::new_checked(ip.payload()).unwrap();
        assert!(matches!(
            Icmpv4Repr::parse(&icmp, &Default::default()),
            Ok(Icmpv4Repr::EchoReply { ident: 1, .. })
        ));
    }

    #[test]
    fn a_ping_to_a_vip_is_answered_by_the_balancer() {
        let mut dev = FakeDevice::new(Medium::Ip);
        let mut gw = gateway(&mut dev);
        let out = exchange(&mut gw, &mut dev, T0, &[ping(CLIENT, VIP)]);
        assert_eq!(gw.counters().replies, 1);
        assert_eq!(gw.counters().rx_own, 0);
        let ip = ipv4_of(&out[0], false).unwrap();
        assert_eq!((ip.src_addr(), ip.dst_addr()), (VIP, CLIENT));
    }

    #[test]
    fn ethernet_padding_is_not_forwarded() {
        let mut dev = FakeDevice::new(Medium::Ethernet);
        let mut gw = gateway(&mut dev);
        teach(&mut gw, &mut dev, SERVER, SERVER_MAC);
        let pkt = syn(CLIENT, VIP, 64);
        let mut f = eth4(&pkt);
        f.resize(f.len() + 8, 0xee); // padding after the IP packet
        let out = exchange(&mut gw, &mut dev, T0, &[f]);
        assert_eq!(gw.counters().forwarded, 1);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].len(), crate::LINK_HEADER + pkt.len());
    }

    #[test]
    fn passed_packets_are_dropped_when_forward_other_is_off() {
        let mut dev = FakeDevice::new(Medium::Ip);
        let mut config = GatewayConfig::from_seed(GW_MAC, 7);
        config.forward_other = false;
        let mut gw = gateway_with(&mut dev, config);
        let out = exchange(&mut gw, &mut dev, T0, &[ping(CLIENT, SERVER)]);
        assert!(out.is_empty());
        assert_eq!(gw.counters().not_forwarded, 1);
        assert_eq!(gw.counters().passed, 0);
    }

    #[test]
    fn ip_info_reads_the_destination_and_flags_neighbour_discovery_only() {
        let info = ip_info(&syn(CLIENT, VIP, 64)).unwrap();
        assert_eq!(info.dst, core::net::IpAddr::V4(VIP));
        assert_eq!(info.len, 40);
        assert!(!info.ndp);
        let ns = ndisc(
            CLIENT6,
            VIP6,
            GW_MAC,
            255,
            smoltcp::wire::NdiscRepr::NeighborSolicit {
                target_addr: VIP6,
                lladdr: None,
            },
        );
        let info = ip_info(&ns[crate::LINK_HEADER..]).unwrap();
        assert!(info.ndp);
        assert_eq!(info.dst, core::net::IpAddr::V6(VIP6));
        assert!(ip_info(&[0x45, 0, 0]).is_none(), "too short");
        assert!(ip_info(&[0x10; 40]).is_none(), "not IP");
    }
}
