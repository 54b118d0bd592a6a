//! Packet builders for tests, emitted with smoltcp's `Repr`s and checksummed with smoltcp's
//! `fill_checksum` (independent of lb-core's own checksum code).

use core::net::{IpAddr, SocketAddr};
use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    Icmpv4Packet, Icmpv6Packet, IpAddress, IpProtocol, Ipv4Packet, Ipv4Repr, Ipv6Packet, Ipv6Repr,
    TcpControl, TcpPacket, TcpRepr, TcpSeqNumber, UdpPacket, UdpRepr,
};
use std::vec;
use std::vec::Vec;

/// An IP packet from `src` to `dst` carrying `l4` (checksum left as is), with `opt_words`
/// 4-byte words of NOP options in an IPv4 header.
pub fn ip(src: IpAddr, dst: IpAddr, proto: u8, opt_words: usize, l4: &[u8]) -> Vec<u8> {
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let hlen = 20 + 4 * opt_words;
            let mut buf = vec![0u8; hlen + l4.len()];
            let repr = Ipv4Repr {
                src_addr: s,
                dst_addr: d,
                next_header: IpProtocol::from(proto),
                payload_len: l4.len(),
                hop_limit: 61,
            };
            let mut p = Ipv4Packet::new_unchecked(&mut buf[..]);
            repr.emit(&mut p, &ChecksumCapabilities::default());
            p.set_header_len(hlen as u8);
            p.set_total_len((hlen + l4.len()) as u16);
            buf[20..hlen].fill(1); // NOP options
            buf[hlen..].copy_from_slice(l4);
            Ipv4Packet::new_unchecked(&mut buf[..]).fill_checksum();
            buf
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            let mut buf = vec![0u8; 40 + l4.len()];
            let repr = Ipv6Repr {
                src_addr: s,
                dst_addr: d,
                next_header: IpProtocol::from(proto),
                payload_len: l4.len(),
                hop_limit: 61,
            };
            repr.emit(&mut Ipv6Packet::new_unchecked(&mut buf[..]));
            buf[40..].copy_from_slice(l4);
            buf
        }
        _ => panic!("mixed families"),
    }
}

/// A TCP segment with exactly `flags` set, some options, and `payload`.
#[allow(clippy::too_many_arguments)]
pub fn tcp(
    src: SocketAddr,
    dst: SocketAddr,
    flags: u8,
    seq: u32,
    ack: u32,
    payload: &[u8],
    opt_words: usize,
    with_mss: bool,
) -> Vec<u8> {
    let repr = TcpRepr {
        src_port: src.port(),
        dst_port: dst.port(),
        control: TcpControl::None,
        seq_number: TcpSeqNumber(seq as i32),
        ack_number: Some(TcpSeqNumber(ack as i32)),
        window_len: 29200,
        window_scale: with_mss.then_some(7),
        max_seg_size: with_mss.then_some(1460),
        sack_permitted: with_mss,
        sack_ranges: [None; 3],
        timestamp: None,
        payload,
    };
    let mut l4 = vec![0u8; repr.buffer_len()];
    let (s, d) = (IpAddress::from(src.ip()), IpAddress::from(dst.ip()));
    repr.emit(
        &mut TcpPacket::new_unchecked(&mut l4),
        &s,
        &d,
        &ChecksumCapabilities::ignored(),
    );
    l4[13] = flags;
    let mut pkt = ip(src.ip(), dst.ip(), 6, opt_words, &l4);
    fill_l4(&mut pkt);
    pkt
}

/// A UDP datagram with `payload`.
pub fn udp(src: SocketAddr, dst: SocketAddr, payload: &[u8], opt_words: usize) -> Vec<u8> {
    let repr = UdpRepr {
        src_port: src.port(),
        dst_port: dst.port(),
    };
    let mut l4 = vec![0u8; 8 + payload.len()];
    let (s, d) = (IpAddress::from(src.ip()), IpAddress::from(dst.ip()));
    repr.emit(
        &mut UdpPacket::new_unchecked(&mut l4[..]),
        &s,
        &d,
        payload.len(),
        |b| b.copy_from_slice(payload),
        &ChecksumCapabilities::ignored(),
    );
    let mut pkt = ip(src.ip(), dst.ip(), 17, opt_words, &l4);
    fill_l4(&mut pkt);
    pkt
}

/// An ICMP message of type `ty`/`code`, 4 bytes `rest` after the checksum, then `body`.
pub fn icmp(src: IpAddr, dst: IpAddr, ty: u8, code: u8, rest: [u8; 4], body: &[u8]) -> Vec<u8> {
    let mut l4 = vec![ty, code, 0, 0];
    l4.extend_from_slice(&rest);
    l4.extend_from_slice(body);
    let proto = if src.is_ipv6() { 58 } else { 1 };
    let mut pkt = ip(src, dst, proto, 0, &l4);
    fill_l4(&mut pkt);
    pkt
}

/// Fills the L4 checksum of a packet built by [`ip`], with smoltcp's code.
pub fn fill_l4(pkt: &mut [u8]) {
    let (v6, proto, hlen) = if pkt[0] >> 4 == 6 {
        (true, pkt[6], 40)
    } else {
        (false, pkt[9], usize::from(pkt[0] & 15) * 4)
    };
    let (s, d): (IpAddress, IpAddress) = if v6 {
        let s: [u8; 16] = pkt[8..24].try_into().unwrap();
        let d: [u8; 16] = pkt[24..40].try_into().unwrap();
        (
            core::net::Ipv6Addr::from(s).into(),
            core::net::Ipv6Addr::from(d).into(),
        )
    } else {
        let s: [u8; 4] = pkt[12..16].try_into().unwrap();
        let d: [u8; 4] = pkt[16..20].try_into().unwrap();
        (
            core::net::Ipv4Addr::from(s).into(),
            core::net::Ipv4Addr::from(d).into(),
        )
    };
    let l4 = &mut pkt[hlen..];
    match (proto, s, d) {
        (6, _, _) => TcpPacket::new_unchecked(l4).fill_checksum(&s, &d),
        (17, _, _) => UdpPacket::new_unchecked(l4).fill_checksum(&s, &d),
        (1, _, _) => Icmpv4Packet::new_unchecked(l4).fill_checksum(),
        (58, IpAddress::Ipv6(s), IpAddress::Ipv6(d)) => {
            Icmpv6Packet::new_unchecked(l4).fill_checksum(&s, &d)
        }
        _ => {}
    }
}

pub fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

pub fn ipa(s: &str) -> IpAddr {
    s.parse().unwrap()
}
