//! A SYN flood must not lock the table (issue "Hostile traffic", item 3): with default settings
//! a new SYN on a full table may evict the oldest half-open entry (SYN_RECV: the client never
//! completed the handshake) as well as TIME_WAIT/CLOSE, never an ESTABLISHED one; and one /24
//! (IPv4) or /64 (IPv6) cannot hold more than its share of half-open entries.

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use std::vec::Vec;

use super::*;
use crate::config::{ForwardMethod, SchedulerKind, ServerConfig, ServiceConfig, ServiceKey};
use crate::ipvsadm::Command;
use crate::tcp::flags::{ACK, SYN};
use crate::verdict::{DropReason, Verdict};
use lb_testkit::pkt;

use super::test_support::{empty_balancer, ms, sa};

const VIP: &str = "10.0.0.100:80";
const VIP6: &str = "[2001:db8::100]:80";
const SERVER: &str = "10.1.0.1:80";
const SERVER6: &str = "[2001:db8:1::1]:80";

/// A balancer with room for `cap` entries, `settings`, and a TCP service on `VIP` and `VIP6`
/// with one server each.
fn balancer_with(cap: usize, settings: Settings) -> Balancer<'static> {
    let mut b = empty_balancer(cap, settings);
    for (vip, rip) in [(VIP, SERVER), (VIP6, SERVER6)] {
        let key = ServiceKey::tcp(sa(vip));
        let mut cfg = ServiceConfig::new(key);
        cfg.scheduler = SchedulerKind::Rr;
        b.apply(Instant::ZERO, &Command::AddService(cfg)).unwrap();
        let s = ServerConfig::new(sa(rip), ForwardMethod::Masq);
        b.apply(Instant::ZERO, &Command::AddServer(key, s)).unwrap();
    }
    b
}

fn run(b: &mut Balancer<'_>, now: Instant, pkt: Vec<u8>) -> Verdict {
    let len = pkt.len();
    let mut buf = pkt;
    buf.resize(2048, 0);
    b.process(now, &mut buf, len)
}

/// Spoofed source `i`, one per /24 (so the per-prefix share never binds): 100.x.y.1.
fn spoofed(i: u32) -> SocketAddr {
    SocketAddr::new(
        IpAddr::V4(Ipv4Addr::new(100, (i >> 8) as u8, i as u8, 1)),
        1024 + (i % 60000) as u16,
    )
}

/// A spoofed SYN from `src` at `now`, answered by the server's SYN+ACK (as a live server with
/// syncookies does): the entry stays SYN_RECV, having seen a reply. Returns the SYN's verdict.
fn flood_syn(b: &mut Balancer<'_>, now: Instant, src: SocketAddr, vip: &str) -> Verdict {
    let v = run(b, now, pkt::segment(src, sa(vip), SYN, 7, 0, b""));
    if matches!(v, Verdict::ToServer(_)) {
        let server = if src.is_ipv4() { SERVER } else { SERVER6 };
        let r = run(b, now, pkt::segment(sa(server), src, SYN | ACK, 9, 8, b""));
        assert!(matches!(r, Verdict::ToClient(_)), "SYN+ACK to {src}: {r:?}");
    }
    v
}

/// A legitimate client's SYN and, if forwarded, the rest of its handshake.
fn handshake(b: &mut Balancer<'_>, now: Instant, client: SocketAddr) -> Verdict {
    let v = run(b, now, pkt::segment(client, sa(VIP), SYN, 1, 0, b""));
    if matches!(v, Verdict::ToServer(_)) {
        run(b, now, pkt::segment(sa(SERVER), client, SYN | ACK, 1, 2, b""));
        let a = run(b, now, pkt::segment(client, sa(VIP), ACK, 2, 2, b""));
        assert!(matches!(a, Verdict::ToServer(_)), "ACK of {client}: {a:?}");
    }
    v
}

fn state_of(b: &Balancer<'_>, client: SocketAddr) -> Option<&'static str> {
    b.connections(Instant::ZERO)
        .find(|c| c.client == client && !c.template)
        .map(|c| c.state)
}

/// Fills the table with spoofed half-open entries, one every 10 ms from `t0`; returns the
/// sources in order (oldest first).
fn fill_with_flood(b: &mut Balancer<'_>, t0: u64) -> Vec<SocketAddr> {
    let cap = b.capacity() - b.connection_count();
    (0..cap as u32)
        .map(|i| {
            let src = spoofed(i);
            let v = flood_syn(b, ms(t0 + u64::from(i) * 10), src, VIP);
            assert!(matches!(v, Verdict::ToServer(_)), "flood SYN {i}: {v:?}");
            src
        })
        .collect()
}

/// The hole: a table full of spoofed SYN_RECV entries (each answered by the server) refused
/// every new legitimate connection as `table_full` until the entries timed out (60 s).
#[test]
fn a_table_full_of_half_open_entries_still_takes_a_new_connection() {
    let mut b = balancer_with(64, Settings::default());
    fill_with_flood(&mut b, 0);
    assert_eq!(b.connection_count(), b.capacity());
    let client = sa("192.0.2.7:40000");
    let v = handshake(&mut b, ms(2_000), client);
    assert!(matches!(v, Verdict::ToServer(_)), "legit SYN: {v:?}");
    assert_eq!(state_of(&b, client), Some("ESTABLISHED"));
    assert_eq!(b.counters().drops(DropReason::TableFull), 0);
}
