//! Generated replies are rate-limited (issue "Hostile traffic: the balancer must not be a
//! reflector", item 2): every RST, ICMP/ICMPv6 error and echo reply lb-core builds spends a token
//! of a global bucket (Linux's `icmp_msgs_per_sec`/`icmp_msgs_burst`) and of its destination
//! prefix's bucket (`icmp_ratelimit`, burst 6 as `inet_peer_xrlim_allow`).

use core::net::{IpAddr, SocketAddr};

use std::vec::Vec;

use super::*;
use crate::config::{ForwardMethod, SchedulerKind, ServerConfig, ServiceConfig, ServiceKey};
use crate::ipvsadm::Command;
use crate::tcp::flags::SYN;
use crate::verdict::{DropReason, Verdict};
use lb_testkit::pkt;

use super::test_support::{empty_balancer, ms, sa};

/// A VIP with a TCP service on port 80 (one server) and nothing on port 81.
const VIP: &str = "10.0.0.100:80";
const UNSERVED: &str = "10.0.0.100:81";
const VIP6: &str = "[2001:db8::100]:80";
const UNSERVED6: &str = "[2001:db8::100]:81";

fn balancer_with(settings: Settings) -> Balancer<'static> {
    let mut b = empty_balancer(64, settings);
    for (vip, rip) in [(VIP, "10.1.0.1:80"), (VIP6, "[2001:db8:1::1]:80")] {
        let key = ServiceKey::tcp(sa(vip));
        let mut cfg = ServiceConfig::new(key);
        cfg.scheduler = SchedulerKind::Rr;
        b.apply(Instant::ZERO, &Command::AddService(cfg)).unwrap();
        let s = ServerConfig::new(sa(rip), ForwardMethod::Masq);
        b.apply(Instant::ZERO, &Command::AddServer(key, s)).unwrap();
    }
    b
}

fn balancer() -> Balancer<'static> {
    balancer_with(Settings::default())
}

/// Client `i` of many /24s (spread so the per-prefix limit does not bind): 10.(i/256).(i%256).1.
fn spread_client(i: u32) -> SocketAddr {
    SocketAddr::new(IpAddr::V4([100, (i >> 8) as u8, i as u8, 1].into()), 40000)
}

/// Sends `pkt` at `now`; whether it was answered.
fn replied(b: &mut Balancer<'_>, now: Instant, mut pkt: Vec<u8>) -> bool {
    let len = pkt.len();
    pkt.resize(2048, 0);
    matches!(b.process(now, &mut pkt, len), Verdict::Reply(_))
}

fn syn(from: SocketAddr, to: &str) -> Vec<u8> {
    pkt::segment(from, sa(to), SYN, 1, 0, &[])
}

/// The hole: 1,000 SYNs from 1,000 networks to a VIP port with no service, in the same
/// millisecond. Before the limit every one was answered with a RST (1,000 replies); now the
/// global burst (50) is all that goes out, and the rest are counted drops.
#[test]
fn a_thousand_syns_in_one_ms_get_only_the_global_burst() {
    let mut b = balancer();
    let mut replies = 0;
    for i in 0..1000 {
        replies += replied(&mut b, ms(0), syn(spread_client(i), UNSERVED)) as u32;
    }
    assert_eq!(replies, 50);
    assert_eq!(b.counters().replies, 50);
    assert_eq!(b.counters().drops(DropReason::ReplyRateLimited), 950);
}

/// Only the global limit (the per-prefix one off), replies from many networks.
fn global_only() -> Balancer<'static> {
    balancer_with(Settings {
        reply_peer_interval_ms: 0,
        ..Settings::default()
    })
}

/// Only the per-prefix limit (the global one off).
fn per_prefix_only() -> Balancer<'static> {
    balancer_with(Settings {
        reply_rate_per_sec: 0,
        ..Settings::default()
    })
}

/// Sends `n` SYNs to the unserved port at `t`, from clients `next..next+n`; how many were
/// answered.
fn flood(b: &mut Balancer<'_>, t: u64, next: &mut u32, n: u32) -> u32 {
    let mut replies = 0;
    for _ in 0..n {
        replies += replied(b, ms(t), syn(spread_client(*next), UNSERVED)) as u32;
        *next += 1;
    }
    replies
}

#[test]
fn global_limit_is_the_burst_then_the_rate() {
    let mut b = global_only();
    let mut next = 0;
    // The burst at once, then nothing more in the same millisecond.
    assert_eq!(flood(&mut b, 0, &mut next, 1000), 50);
    // A second later the bucket is full again: the burst, not a second's worth (1,000).
    assert_eq!(flood(&mut b, 1000, &mut next, 1000), 50);
    // Then the rate: 1,000 a second is one a millisecond.
    for t in 1001..=1100 {
        assert_eq!(flood(&mut b, t, &mut next, 3), 1, "at {t} ms");
    }
    assert_eq!(flood(&mut b, 1110, &mut next, 20), 10);
    assert_eq!(b.counters().replies, 50 + 50 + 100 + 10);
    assert_eq!(
        b.counters().drops(DropReason::ReplyRateLimited),
        950 + 950 + 200 + 10
    );
    // Dropped SYNs count as SYN drops, as every dropped SYN.
    assert_eq!(b.counters().syn_drops, 950 + 950 + 200 + 10);
}

#[test]
fn a_slower_global_rate_accrues_in_thousandths() {
    let mut b = balancer_with(Settings {
        reply_rate_per_sec: 3,
        reply_burst: 5,
        reply_peer_interval_ms: 0,
        ..Settings::default()
    });
    let mut next = 0;
    assert_eq!(flood(&mut b, 0, &mut next, 10), 5);
    // 3 a second: one token every 333⅓ ms, nothing lost to rounding.
    assert_eq!(flood(&mut b, 333, &mut next, 5), 0);
    assert_eq!(flood(&mut b, 334, &mut next, 5), 1);
    assert_eq!(flood(&mut b, 666, &mut next, 5), 0); // 998 thousandths
    assert_eq!(flood(&mut b, 667, &mut next, 5), 1);
    assert_eq!(flood(&mut b, 1000, &mut next, 5), 1);
}

fn from(s: &str) -> SocketAddr {
    sa(s)
}

#[test]
fn per_prefix_limit_is_shared_by_a_24() {
    let mut b = per_prefix_only();
    let send = |b: &mut Balancer<'_>, t: u64, c: &str, n: u32| -> u32 {
        (0..n)
            .map(|_| replied(b, ms(t), syn(from(c), UNSERVED)) as u32)
            .sum()
    };
    // Burst of 6 to one client…
    assert_eq!(send(&mut b, 0, "192.0.2.1:40000", 10), 6);
    // …and none to its neighbour in the same /24.
    assert_eq!(send(&mut b, 0, "192.0.2.200:40000", 10), 0);
    // Another /24 has its own bucket.
    assert_eq!(send(&mut b, 0, "198.51.100.1:40000", 10), 6);
    // One a second (icmp_ratelimit 1000 ms) afterwards, for the whole /24.
    assert_eq!(send(&mut b, 999, "192.0.2.3:40000", 3), 0);
    assert_eq!(send(&mut b, 1000, "192.0.2.3:40000", 3), 1);
    assert_eq!(send(&mut b, 2000, "192.0.2.4:40000", 3), 1);
    // Idle for long enough, the bucket refills to the burst, not beyond.
    assert_eq!(send(&mut b, 60_000, "192.0.2.5:40000", 10), 6);
    assert_eq!(b.counters().replies, 6 + 6 + 1 + 1 + 6);
}

#[test]
fn per_prefix_limit_is_shared_by_a_64() {
    let mut b = per_prefix_only();
    let send = |b: &mut Balancer<'_>, c: &str, n: u32| -> u32 {
        (0..n)
            .map(|_| replied(b, ms(0), syn(from(c), UNSERVED6)) as u32)
            .sum()
    };
    assert_eq!(send(&mut b, "[2001:db8:9::1]:40000", 10), 6);
    assert_eq!(
        send(&mut b, "[2001:db8:9:0:ffff:ffff:ffff:ffff]:40000", 10),
        0
    );
    assert_eq!(send(&mut b, "[2001:db8:9:1::1]:40000", 10), 6);
    assert_eq!(b.counters().drops(DropReason::ReplyRateLimited), 4 + 10 + 4);
}

/// RSTs, ICMP port unreachables and echo replies all spend the same tokens.
#[test]
fn every_kind_of_reply_is_limited() {
    let mut b = per_prefix_only();
    let client = from("192.0.2.1:40000");
    let vip: IpAddr = "10.0.0.100".parse().unwrap();
    let mut replies = 0;
    for i in 0..3 {
        replies += replied(&mut b, ms(0), syn(client, UNSERVED)) as u32;
        replies += replied(&mut b, ms(0), pkt::udp(client, sa(UNSERVED), b"x")) as u32;
        let echo = pkt::echo_request(client.ip(), vip, 7, i, b"ping");
        replies += replied(&mut b, ms(0), echo) as u32;
    }
    assert_eq!(replies, 6);
    assert_eq!(b.counters().drops(DropReason::ReplyRateLimited), 3);
    assert_eq!(b.counters().drops(DropReason::NoService), 0);
}

#[test]
fn zero_means_unlimited() {
    let mut b = balancer_with(Settings {
        reply_rate_per_sec: 0,
        reply_peer_interval_ms: 0,
        ..Settings::default()
    });
    let client = from("192.0.2.1:40000");
    let n: u32 = (0..1000)
        .map(|_| replied(&mut b, ms(0), syn(client, UNSERVED)) as u32)
        .sum();
    assert_eq!(n, 1000);
    assert_eq!(b.counters().drops(DropReason::ReplyRateLimited), 0);
}

#[test]
fn settings_lines_round_trip() {
    use crate::ipvsadm::{parse_line, Setting};
    let mut b = balancer();
    assert_eq!(b.settings().reply_rate_per_sec, 1000);
    assert_eq!(b.settings().reply_burst, 50);
    assert_eq!(b.settings().reply_peer_interval_ms, 1000);
    for (line, want) in [
        ("--reply-rate 100", Setting::ReplyRate(100)),
        ("--reply-burst 7", Setting::ReplyBurst(7)),
        ("--reply-peer-interval 0", Setting::ReplyPeerInterval(0)),
    ] {
        let cmd = parse_line(line).unwrap().unwrap();
        assert_eq!(cmd, Command::Set(want));
        // What `-S` writes reads back to the same command.
        let saved = std::format!("{cmd}");
        assert_eq!(saved, line);
        assert_eq!(parse_line(&saved).unwrap().unwrap(), cmd);
        b.apply_line(Instant::ZERO, line).unwrap();
    }
    assert_eq!(b.settings().reply_rate_per_sec, 100);
    assert_eq!(b.settings().reply_burst, 7);
    assert_eq!(b.settings().reply_peer_interval_ms, 0);
    assert!(parse_line("--reply-rate").is_err());
    assert!(parse_line("--reply-rate x").is_err());
    assert!(parse_line("--reply-burst 4294967296").is_err());
    // The new burst applies: 7 at once.
    let mut next = 0;
    assert_eq!(flood(&mut b, 0, &mut next, 20), 7);
}
