//! Fragments and IPv6 extension headers through the balancer (`fragments.rs`): datagrams in
//! fragments both ways, a later fragment before its first, decisions expiring and replaced,
//! tiny fragments, and a client sending with a Hop-by-Hop header.

use core::net::SocketAddr;
use std::vec::Vec;

use super::test_support::{empty_balancer, ms, sa};
use super::{Balancer, Settings};
use crate::checksum::verify_checksums;
use crate::config::{ForwardMethod, SchedulerKind, ServerConfig, ServiceConfig, ServiceKey};
use crate::conn::FRAG_TIMEOUT;
use crate::ipvsadm::Command;
use crate::packet;
use crate::tcp::flags::{ACK, SYN};
use crate::time::Instant;
use crate::verdict::{DropReason, Transmit, Verdict};
use lb_testkit::pkt;

const HBH: [u8; 7] = [0, 1, 4, 0, 0, 0, 0];

/// A balancer with a UDP and a TCP service at `vip` (port 53 and 80) over two servers each
/// (`rips`, rr), room for `capacity` connections.
fn service(vip: &str, rips: [&str; 2], capacity: usize) -> Balancer<'static> {
    let mut b = empty_balancer(capacity, Settings::default());
    for (key, port) in [
        (ServiceKey::udp(sa(&format(vip, 53))), 5300),
        (ServiceKey::tcp(sa(&format(vip, 80))), 8080),
    ] {
        let mut cfg = ServiceConfig::new(key);
        cfg.scheduler = SchedulerKind::Rr;
        b.apply(Instant::ZERO, &Command::AddService(cfg)).unwrap();
        for rip in rips {
            let s = ServerConfig::new(sa(&format(rip, port)), ForwardMethod::Masq);
            b.apply(Instant::ZERO, &Command::AddServer(key, s)).unwrap();
        }
    }
    b
}

fn format(ip: &str, port: u16) -> std::string::String {
    if ip.contains(':') {
        std::format!("[{ip}]:{port}")
    } else {
        std::format!("{ip}:{port}")
    }
}

fn run(b: &mut Balancer<'_>, now: Instant, p: &[u8]) -> (Verdict, Vec<u8>) {
    let mut buf = p.to_vec();
    buf.resize(p.len().max(1280) + 64, 0);
    let v = b.process(now, &mut buf, p.len());
    let n = v.transmit().map_or(p.len(), |t| t.len);
    buf.truncate(n);
    (v, buf)
}

/// The IPv6 packet `p` without its extension headers (for the checksum check, which the
/// extension headers do not enter).
fn strip_ext(p: &[u8]) -> Vec<u8> {
    let pr = packet::parse(p).unwrap();
    let mut q = p[..40].to_vec();
    q[6] = pr.proto;
    q.extend_from_slice(&p[usize::from(pr.l4_offset)..]);
    let plen = (q.len() - 40) as u16;
    q[4..6].copy_from_slice(&plen.to_be_bytes());
    q
}

/// A 4,000-byte datagram from `client` to the UDP service, in fragments of at most 1,500
/// bytes, forwarded fragment by fragment to one server; the server's 4,000-byte answer, in
/// fragments, comes back from the VIP. Reassembled, both are the datagrams with the address
/// and port rewritten and every checksum right.
fn datagram_both_ways(vip: &str, client: &str, rips: [&str; 2]) {
    let mut b = service(vip, rips, 64);
    let (client, vip) = (sa(client), sa(&format(vip, 53)));
    let ask: Vec<u8> = (0..4000u32).map(|i| i as u8).collect();
    let d = pkt::udp(client, vip, &ask);
    let frags = pkt::fragments(&d, 0, &[1448, 2896], 0x0bad_cafe);
    let mut out = Vec::new();
    let mut server = None;
    for (k, f) in frags.iter().enumerate() {
        let (v, o) = run(&mut b, ms(k as u64), f);
        let Verdict::ToServer(t) = v else {
            panic!("fragment {k}: {v:?}")
        };
        assert_eq!(t.len, f.len(), "fragments keep their size");
        assert_eq!(
            *server.get_or_insert(t.dst),
            t.dst,
            "one server for the datagram"
        );
        out.push(o);
    }
    assert_eq!(b.counters().fragments_forwarded, 2);
    let whole = pkt::reassemble(&out).unwrap();
    assert!(
        pkt::checksums_ok(&whole),
        "the first fragment's update holds for all"
    );
    let rip = pkt::dst_of(&whole).unwrap();
    assert_eq!(rip.ip(), server.unwrap());
    assert_eq!(rip.port(), 5300);
    assert_eq!(pkt::split(&whole).unwrap().1[8..], ask[..]);

    // The answer, 4,000 bytes, fragmented by the server's stack.
    let answer: Vec<u8> = (0..4000u32).map(|i| (i * 7) as u8).collect();
    let r = pkt::udp(rip, client, &answer);
    let frags = pkt::fragments(&r, 0, &[1448, 2896], 77);
    let mut back = Vec::new();
    for (k, f) in frags.iter().enumerate() {
        let (v, o) = run(&mut b, ms(10 + k as u64), f);
        assert_eq!(
            v,
            Verdict::ToClient(Transmit {
                start: 0,
                dst: client.ip(),
                len: f.len()
            }),
            "reply fragment {k}"
        );
        back.push(o);
    }
    let whole = pkt::reassemble(&back).unwrap();
    assert!(pkt::checksums_ok(&whole));
    assert_eq!(pkt::src_of(&whole), Some(vip));
    assert_eq!(pkt::split(&whole).unwrap().1[8..], answer[..]);
    assert_eq!(b.counters().fragments_forwarded, 4);
    // Counted as IPVS counts the reassembled datagrams: one packet each way, every byte.
    let svc = b.director().service_id(&ServiceKey::udp(vip)).unwrap();
    let st = b.director().service(svc).unwrap().stats;
    assert_eq!((st.in_pkts, st.out_pkts), (1, 1));
    let hdr = if vip.is_ipv6() { 48 } else { 20 };
    assert_eq!(st.in_bytes, (hdr + 8 + 4000) as u64);
    assert_eq!(st.out_bytes, (hdr + 8 + 4000) as u64);
}

#[test]
fn udp_datagrams_in_fragments_work_both_ways_ipv4() {
    datagram_both_ways("10.0.0.100", "192.0.2.1:40000", ["10.1.0.1", "10.1.0.2"]);
}

#[test]
fn udp_datagrams_in_fragments_work_both_ways_ipv6() {
    datagram_both_ways(
        "2001:db8::100",
        "[2001:db8:c::1]:40000",
        ["2001:db8:1::1", "2001:db8:1::2"],
    );
}

#[test]
fn a_later_fragment_before_its_first_is_a_counted_drop() {
    let mut b = service("10.0.0.100", ["10.1.0.1", "10.1.0.2"], 64);
    let d = pkt::udp(sa("192.0.2.1:40000"), sa("10.0.0.100:53"), &[1; 3000]);
    let frags = pkt::fragments(&d, 0, &[1480], 9);
    let (v, _) = run(&mut b, ms(0), &frags[1]);
    assert_eq!(v, Verdict::Drop(DropReason::Fragment));
    assert_eq!(b.counters().drops(DropReason::Fragment), 1);
    assert!(matches!(
        run(&mut b, ms(1), &frags[0]).0,
        Verdict::ToServer(_)
    ));
    // Sent again (the sender retransmits the datagram), it follows.
    assert!(matches!(
        run(&mut b, ms(2), &frags[1]).0,
        Verdict::ToServer(_)
    ));
}

#[test]
fn decisions_last_ipfrag_time_and_ask_for_no_timer() {
    let mut b = service("10.0.0.100", ["10.1.0.1", "10.1.0.2"], 64);
    let mut whole = service("10.0.0.100", ["10.1.0.1", "10.1.0.2"], 64);
    let d = pkt::udp(sa("192.0.2.1:40000"), sa("10.0.0.100:53"), &[1; 3000]);
    let frags = pkt::fragments(&d, 0, &[1480], 9);
    assert!(matches!(
        run(&mut b, ms(0), &frags[0]).0,
        Verdict::ToServer(_)
    ));
    assert!(matches!(run(&mut whole, ms(0), &d).0, Verdict::ToServer(_)));
    // The fragment table adds no timer: the same next timeout as for the whole datagram.
    assert_eq!(b.poll_timeout(), whole.poll_timeout());
    let last = ms(FRAG_TIMEOUT.millis() - 100);
    assert!(matches!(
        run(&mut b, last, &frags[1]).0,
        Verdict::ToServer(_)
    ));
    let late = ms(FRAG_TIMEOUT.millis());
    assert_eq!(
        run(&mut b, late, &frags[1]).0,
        Verdict::Drop(DropReason::Fragment)
    );
}

#[test]
fn a_full_fragment_table_replaces_the_oldest_decision_counted() {
    // 64 connections: 16 fragment slots.
    let mut b = service("10.0.0.100", ["10.1.0.1", "10.1.0.2"], 64);
    let first = |id: u32| {
        let d = pkt::udp(sa("192.0.2.1:40000"), sa("10.0.0.100:53"), &[1; 100]);
        pkt::fragments(&d, 0, &[64], id)
    };
    for id in 0..16 {
        assert!(matches!(
            run(&mut b, ms(u64::from(id)), &first(id)[0]).0,
            Verdict::ToServer(_)
        ));
    }
    let mut evicted = 0;
    for id in 16..48 {
        assert!(matches!(
            run(&mut b, ms(u64::from(id)), &first(id)[0]).0,
            Verdict::ToServer(_)
        ));
        evicted = b.counters().fragment_evictions;
    }
    assert!(evicted >= 16, "{evicted}");
    // Every datagram's later fragment either follows or is a counted drop; the newest follow.
    let mut followed = 0;
    for id in 0..48 {
        match run(&mut b, ms(100), &first(id)[1]).0 {
            Verdict::ToServer(_) => followed += 1,
            v => assert_eq!(v, Verdict::Drop(DropReason::Fragment)),
        }
    }
    assert!(followed <= 16);
    assert!(matches!(
        run(&mut b, ms(100), &first(47)[1]).0,
        Verdict::ToServer(_)
    ));
}

#[test]
fn fragments_not_for_us_pass_and_others_to_a_vip_are_dropped() {
    let mut b = service("10.0.0.100", ["10.1.0.1", "10.1.0.2"], 64);
    // In transit: untouched, first or later.
    let d = pkt::udp(sa("192.0.2.1:40000"), sa("10.9.9.9:53"), &[1; 3000]);
    for f in pkt::fragments(&d, 0, &[1480], 9) {
        let (v, o) = run(&mut b, ms(0), &f);
        assert!(matches!(v, Verdict::Pass(_)));
        assert_eq!(o, f);
    }
    // A fragmented ping to the VIP: not answered (the reply would need the whole datagram).
    let ping = pkt::echo_request(
        sa("192.0.2.1:0").ip(),
        sa("10.0.0.100:0").ip(),
        1,
        1,
        &[0; 3000],
    );
    let frags = pkt::fragments(&ping, 0, &[1480], 3);
    assert_eq!(
        run(&mut b, ms(0), &frags[0]).0,
        Verdict::Drop(DropReason::Fragment)
    );
    // A tiny TCP fragment to the VIP (RFC 1858): refused, counted.
    let seg = pkt::segment(
        sa("192.0.2.1:40000"),
        sa("10.0.0.100:80"),
        SYN,
        1,
        0,
        &[0; 40],
    );
    let frags = pkt::fragments(&seg, 0, &[8], 4);
    assert_eq!(
        run(&mut b, ms(0), &frags[0]).0,
        Verdict::Drop(DropReason::Fragment)
    );
    assert_eq!(
        run(&mut b, ms(0), &frags[1]).0,
        Verdict::Drop(DropReason::Fragment)
    );
    assert_eq!(b.counters().drops(DropReason::Fragment), 3);
}

#[test]
fn an_ipv6_client_with_a_hop_by_hop_header_is_served() {
    let mut b = service("2001:db8::100", ["2001:db8:1::1", "2001:db8:1::2"], 64);
    let (client, vip) = (sa("[2001:db8:c::1]:40000"), sa("[2001:db8::100]:80"));
    let syn = pkt::ipv6_ext(&pkt::segment(client, vip, SYN, 1, 0, b""), 0, &HBH);
    let (v, out) = run(&mut b, ms(0), &syn);
    let Verdict::ToServer(t) = v else {
        panic!("{v:?}")
    };
    assert_eq!(&out[40..48], &syn[40..48], "the Hop-by-Hop header is kept");
    assert!(verify_checksums(&strip_ext(&out)));
    let rip = SocketAddr::new(t.dst, 8080);
    assert_eq!(packet::parse(&out).unwrap().dst, rip);
    // The server answers without one; the client's next segment has one again.
    let (v, out) = run(
        &mut b,
        ms(1),
        &pkt::segment(rip, client, SYN | ACK, 9, 2, b""),
    );
    assert!(matches!(v, Verdict::ToClient(_)));
    assert_eq!(packet::parse(&out).unwrap().src, vip);
    let ack = pkt::ipv6_ext(&pkt::segment(client, vip, ACK, 2, 10, b"GET"), 0, &HBH);
    let (v, out) = run(&mut b, ms(2), &ack);
    assert_eq!(v.transmit().map(|t| t.dst), Some(rip.ip()));
    assert!(verify_checksums(&strip_ext(&out)));
    // An ICMPv6 error from the server side quoting the forwarded SYN, Hop-by-Hop header and
    // all: translated for the client (the quote walked past the header).
    let quoting = pkt::icmp(rip.ip(), client.ip(), 1, 4, &out);
    let (v, back) = run(&mut b, ms(3), &quoting);
    assert_eq!(v.transmit().map(|t| t.dst), Some(client.ip()));
    assert!(matches!(v, Verdict::ToClient(_)), "{v:?}");
    assert!(
        verify_checksums(&back),
        "the ICMPv6 checksum covers the rewritten quote"
    );
    let q = strip_ext(&back[48..]);
    assert_eq!(
        packet::parse(&q).unwrap().dst,
        vip,
        "the quote names the VIP again"
    );
    // A Routing header with segments left: the VIP is not the final destination.
    let routed = pkt::ipv6_ext(
        &pkt::segment(client, vip, SYN, 1, 0, b""),
        43,
        &[
            2, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        ],
    );
    assert_eq!(
        run(&mut b, ms(3), &routed).0,
        Verdict::Drop(DropReason::Ipv6ExtensionHeaders)
    );
}

#[test]
fn ipv6_fragments_with_extension_headers_before_them() {
    // Hop-by-Hop in the unfragmentable part, the Fragment header after it.
    let mut b = service("2001:db8::100", ["2001:db8:1::1", "2001:db8:1::2"], 64);
    let (client, vip) = (sa("[2001:db8:c::1]:40000"), sa("[2001:db8::100]:53"));
    let d = pkt::ipv6_ext(&pkt::udp(client, vip, &[5; 2000]), 0, &HBH);
    let frags = pkt::fragments(&d, 8, &[1200], 1);
    assert_eq!(frags[0][6], 0, "Hop-by-Hop first");
    let mut rip = None;
    for f in &frags {
        let (v, o) = run(&mut b, ms(0), f);
        let Verdict::ToServer(t) = v else {
            panic!("{v:?}")
        };
        assert_eq!(*rip.get_or_insert(t.dst), t.dst);
        assert_eq!(&o[40..48], &f[40..48]);
    }
    // The overlap rule (RFC 5722) is the receiver's: a later fragment is forwarded as it is.
    let overlap = pkt::fragments(&d, 8, &[1192], 1);
    assert!(matches!(
        run(&mut b, ms(1), &overlap[1]).0,
        Verdict::ToServer(_)
    ));
}

#[test]
fn deleting_a_server_forgets_the_decisions_that_name_it() {
    let mut b = service("10.0.0.100", ["10.1.0.1", "10.1.0.2"], 64);
    let d = pkt::udp(sa("192.0.2.1:40000"), sa("10.0.0.100:53"), &[1; 3000]);
    let frags = pkt::fragments(&d, 0, &[1480], 9);
    let Verdict::ToServer(t) = run(&mut b, ms(0), &frags[0]).0 else {
        panic!("first fragment not forwarded")
    };
    let key = ServiceKey::udp(sa("10.0.0.100:53"));
    let cmd = Command::DelServer(key, SocketAddr::new(t.dst, 5300));
    b.apply(ms(1), &cmd).unwrap();
    assert_eq!(
        run(&mut b, ms(2), &frags[1]).0,
        Verdict::Drop(DropReason::Fragment),
        "not sent to a deleted server"
    );
}
