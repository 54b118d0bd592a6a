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
        run(
            b,
            now,
            pkt::segment(sa(SERVER), client, SYN | ACK, 1, 2, b""),
        );
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

/// Fills the table with spoofed half-open entries, one every 100 ms (more than the wheel's
/// 62.5 ms tick, so their ages differ) from `t0`; returns the
/// sources in order (oldest first).
fn fill_with_flood(b: &mut Balancer<'_>, t0: u64) -> Vec<SocketAddr> {
    let cap = b.capacity() - b.connection_count();
    (0..cap as u32)
        .map(|i| {
            let src = spoofed(i);
            let v = flood_syn(b, ms(t0 + u64::from(i) * 100), src, VIP);
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
    let v = handshake(&mut b, ms(10_000), client);
    assert!(matches!(v, Verdict::ToServer(_)), "legit SYN: {v:?}");
    assert_eq!(state_of(&b, client), Some("ESTABLISHED"));
    assert_eq!(b.counters().drops(DropReason::TableFull), 0);
}

/// The flood goes on at three times the table's size while established flows and a
/// legitimate client's connections go through: no ESTABLISHED entry is ever evicted, every
/// established flow still forwards, every new connection succeeds, and a table of ESTABLISHED
/// entries alone still refuses a new one (`table_full`), as before.
#[test]
fn established_entries_are_never_evicted() {
    let mut b = balancer_with(64, Settings::default());
    let cap = b.capacity();
    let est: Vec<SocketAddr> = (0..cap as u16 / 2)
        .map(|i| sa(&std::format!("192.0.2.1:{}", 30000 + i)))
        .collect();
    for &c in &est {
        assert!(matches!(handshake(&mut b, ms(0), c), Verdict::ToServer(_)));
    }
    for i in 0..3 * cap as u32 {
        let v = flood_syn(&mut b, ms(100 + u64::from(i)), spoofed(i), VIP);
        assert!(matches!(v, Verdict::ToServer(_)), "flood SYN {i}: {v:?}");
        if i % 16 == 0 {
            let c = sa(&std::format!("192.0.2.9:{}", 40000 + i));
            assert!(matches!(
                handshake(&mut b, ms(100 + u64::from(i)), c),
                Verdict::ToServer(_)
            ));
        }
    }
    assert_eq!(b.connection_count(), cap);
    for &c in &est {
        assert_eq!(state_of(&b, c), Some("ESTABLISHED"), "{c}");
        let v = run(&mut b, ms(5_000), pkt::segment(c, sa(VIP), ACK, 2, 2, b"x"));
        assert!(matches!(v, Verdict::ToServer(_)), "{c}: {v:?}");
    }
    assert_eq!(b.counters().drops(DropReason::TableFull), 0);

    // Only ESTABLISHED entries: nothing may go.
    let mut b = balancer_with(16, Settings::default());
    for i in 0..16u16 {
        handshake(&mut b, ms(0), sa(&std::format!("192.0.2.1:{}", 30000 + i)));
    }
    let v = run(
        &mut b,
        ms(1),
        pkt::segment(sa("192.0.2.2:1"), sa(VIP), SYN, 1, 0, b""),
    );
    assert_eq!(v, Verdict::Drop(DropReason::TableFull));
    assert_eq!(b.counters().evictions, 0);
    assert_eq!(b.connection_count(), 16);
}

/// Half-open entries go oldest first (the entry idle longest): each new SYN on the full table
/// evicts the oldest remaining flood entry, so a legitimate handshake in flight, the newest
/// half-open entry, survives the flood that follows it, and completes.
#[test]
fn half_open_entries_are_evicted_oldest_first() {
    let mut b = balancer_with(64, Settings::default());
    let flood = fill_with_flood(&mut b, 0);
    let t0 = 100 * flood.len() as u64;
    // A legitimate SYN: it evicts the oldest flood entry.
    let client = sa("192.0.2.7:40000");
    let v = run(
        &mut b,
        ms(t0),
        pkt::segment(client, sa(VIP), SYN, 1, 0, b""),
    );
    assert!(matches!(v, Verdict::ToServer(_)));
    assert_eq!(state_of(&b, flood[0]), None);
    // More flood while its handshake is in flight: they evict the next oldest, in order.
    for k in 1..20u32 {
        let v = flood_syn(&mut b, ms(t0 + u64::from(k)), spoofed(1000 + k), VIP);
        assert!(matches!(v, Verdict::ToServer(_)));
        assert_eq!(state_of(&b, flood[k as usize]), None, "flood entry {k}");
        assert_eq!(state_of(&b, flood[k as usize + 1]), Some("SYN_RECV"));
    }
    assert_eq!(state_of(&b, client), Some("SYN_RECV"));
    run(
        &mut b,
        ms(t0 + 30),
        pkt::segment(sa(SERVER), client, SYN | ACK, 1, 2, b""),
    );
    run(
        &mut b,
        ms(t0 + 30),
        pkt::segment(client, sa(VIP), ACK, 2, 2, b""),
    );
    assert_eq!(state_of(&b, client), Some("ESTABLISHED"));
    assert_eq!(b.counters().evictions, 20);
    assert_eq!(b.counters().embryonic_evictions, 20);
}

/// Across states the entry idle longest goes: a TIME_WAIT entry closed before the flood began
/// goes before the flood's half-open entries (though it is due later: 120 s against 60 s); the
/// flood's oldest goes next. Only the half-open ones count as embryonic evictions.
#[test]
fn time_wait_and_half_open_entries_go_by_idle_time() {
    let mut b = balancer_with(64, Settings::default());
    let closed = sa("192.0.2.5:40000");
    handshake(&mut b, ms(0), closed);
    run(
        &mut b,
        ms(0),
        pkt::segment(sa(SERVER), closed, crate::tcp::flags::FIN | ACK, 2, 2, b""),
    );
    run(
        &mut b,
        ms(0),
        pkt::segment(closed, sa(VIP), crate::tcp::flags::FIN | ACK, 2, 3, b""),
    );
    run(
        &mut b,
        ms(0),
        pkt::segment(sa(SERVER), closed, ACK, 3, 3, b""),
    );
    assert_eq!(state_of(&b, closed), Some("TIME_WAIT"));
    let flood = fill_with_flood(&mut b, 1_000);
    assert_eq!(b.connection_count(), b.capacity());
    handshake(&mut b, ms(10_000), sa("192.0.2.7:1"));
    assert_eq!(state_of(&b, closed), None, "TIME_WAIT went first");
    assert_eq!(state_of(&b, flood[0]), Some("SYN_RECV"));
    handshake(&mut b, ms(10_000), sa("192.0.2.7:2"));
    assert_eq!(state_of(&b, flood[0]), None);
    assert_eq!(b.counters().evictions, 2);
    assert_eq!(b.counters().embryonic_evictions, 1);
}

/// Sources in one network: `net` is a /24 (three octets) or a /64 (four 16-bit groups).
fn in_v4_net(net: [u8; 3], host: u32) -> SocketAddr {
    let ip = Ipv4Addr::new(net[0], net[1], net[2], (host % 250) as u8 + 1);
    SocketAddr::new(IpAddr::V4(ip), 1024 + host as u16)
}

fn in_v6_net(net: [u16; 4], host: u32) -> SocketAddr {
    let ip = Ipv6Addr::new(
        net[0],
        net[1],
        net[2],
        net[3],
        0,
        0,
        (host >> 16) as u16,
        host as u16,
    );
    SocketAddr::new(IpAddr::V6(ip), 1024 + host as u16)
}

/// One /24 cannot hold more than its share (10 % of 200 entries: 20) of half-open entries;
/// over it a new connection from there is a counted drop, while other /24s are unaffected; a
/// handshake that completes frees its place. The same for an IPv6 /64.
#[test]
fn one_prefix_cannot_exceed_its_share() {
    let mut b = balancer_with(200, Settings::default());
    assert_eq!(b.settings().embryonic_prefix_share, 10);
    for (net, other, vip) in [
        (
            in_v4_net([203, 0, 113], 0),
            in_v4_net([203, 0, 114], 0),
            VIP,
        ),
        (
            in_v6_net([0x2001, 0xdb8, 0xaa, 1], 0),
            in_v6_net([0x2001, 0xdb8, 0xaa, 2], 0),
            VIP6,
        ),
    ] {
        let src = |host: u32| match net {
            SocketAddr::V4(_) => in_v4_net([203, 0, 113], host),
            SocketAddr::V6(_) => in_v6_net([0x2001, 0xdb8, 0xaa, 1], host),
        };
        let before = *b.counters();
        for host in 0..20 {
            let v = flood_syn(&mut b, ms(0), src(host), vip);
            assert!(matches!(v, Verdict::ToServer(_)), "{}: {v:?}", src(host));
        }
        let v = flood_syn(&mut b, ms(0), src(20), vip);
        assert_eq!(
            v,
            Verdict::Drop(DropReason::EmbryonicPrefixLimit),
            "{}",
            src(20)
        );
        // Another network of the same /16 (or /48) is unaffected.
        for host in 0..20 {
            let o = match other {
                SocketAddr::V4(_) => in_v4_net([203, 0, 114], host),
                SocketAddr::V6(_) => in_v6_net([0x2001, 0xdb8, 0xaa, 2], host),
            };
            let v = flood_syn(&mut b, ms(0), o, vip);
            assert!(matches!(v, Verdict::ToServer(_)), "{o}: {v:?}");
        }
        // One of the 20 completes its handshake: one more fits.
        let done = src(0);
        let a = run(&mut b, ms(1), pkt::segment(done, sa(vip), ACK, 8, 10, b""));
        assert!(matches!(a, Verdict::ToServer(_)));
        assert_eq!(state_of(&b, done), Some("ESTABLISHED"));
        assert!(matches!(
            flood_syn(&mut b, ms(2), src(21), vip),
            Verdict::ToServer(_)
        ));
        assert_eq!(
            flood_syn(&mut b, ms(2), src(22), vip),
            Verdict::Drop(DropReason::EmbryonicPrefixLimit)
        );
        let c = b.counters();
        let refused = c.drops(DropReason::EmbryonicPrefixLimit)
            - before.drops(DropReason::EmbryonicPrefixLimit);
        assert_eq!(refused, 2);
        assert_eq!(c.syn_drops - before.syn_drops, 2, "each a counted SYN drop");
    }
    // When they time out (SYN_RECV: 60 s) the prefix has its whole share again.
    b.handle_timeout(ms(62_000));
    for host in 100..120 {
        let v = flood_syn(&mut b, ms(62_000), in_v4_net([203, 0, 113], host), VIP);
        assert!(matches!(v, Verdict::ToServer(_)));
    }
}

/// `--embryonic-prefix-share 0` turns the limit off (one /24 may then fill the table, whose
/// half-open entries are still evictable); the line is checked (0..=100).
#[test]
fn the_share_is_a_setting() {
    let mut b = balancer_with(64, Settings::default());
    b.apply_line(ms(0), "--embryonic-prefix-share 0").unwrap();
    assert_eq!(b.settings().embryonic_prefix_share, 0);
    for host in 0..200 {
        let v = flood_syn(
            &mut b,
            ms(u64::from(host)),
            in_v4_net([203, 0, 113], host),
            VIP,
        );
        assert!(matches!(v, Verdict::ToServer(_)), "{v:?}");
    }
    assert!(b.embryonic.is_empty(), "nothing counted while off");
    assert!(b.apply_line(ms(0), "--embryonic-prefix-share 101").is_err());
    b.apply_line(ms(0), "--embryonic-prefix-share 100").unwrap();
    assert_eq!(b.settings().embryonic_prefix_share, 100);
}

/// Every way an entry leaves takes its count off: completing the handshake, expiry, eviction,
/// the drop_entry defence, a RST, a SYN reusing the port of a closed entry. Afterwards every
/// counter is zero (an entry counted twice or never taken off would show here).
#[test]
fn every_removal_takes_the_count_off() {
    let mut b = balancer_with(64, Settings::default());
    // Eviction, then expiry.
    fill_with_flood(&mut b, 0);
    for i in 0..100 {
        flood_syn(&mut b, ms(10_000 + i), spoofed(5_000 + i as u32), VIP);
    }
    assert!(b.counters().embryonic_evictions >= 100);
    assert!(!b.embryonic.is_empty());
    b.handle_timeout(ms(120_000));
    assert_eq!(b.connection_count(), 0);
    assert!(b.embryonic.is_empty(), "expiry and eviction");
    // Completed handshakes, a RST, port reuse.
    handshake(&mut b, ms(130_000), sa("192.0.2.1:1"));
    let rst = sa("192.0.2.1:2");
    flood_syn(&mut b, ms(130_000), rst, VIP);
    // The server resets it (a client's RST leaves SYN_RECV as it is, §2.2).
    run(
        &mut b,
        ms(130_000),
        pkt::segment(sa(SERVER), rst, crate::tcp::flags::RST, 9, 0, b""),
    );
    assert_eq!(state_of(&b, rst), Some("CLOSE"));
    let v = flood_syn(&mut b, ms(130_001), rst, VIP);
    assert!(matches!(v, Verdict::ToServer(_)), "port reuse: {v:?}");
    assert_eq!(b.counters().reuse_reschedules, 1);
    assert_eq!(state_of(&b, rst), Some("SYN_RECV"));
    b.handle_timeout(ms(1_200_000));
    assert_eq!(b.connection_count(), 0);
    assert!(b.embryonic.is_empty(), "handshake, RST, port reuse");
    // The drop_entry defence.
    let mut s = *b.settings();
    s.drop_entry = DefenceMode::On;
    b.set_settings(s);
    for i in 0..40 {
        flood_syn(&mut b, ms(1_300_000), spoofed(i), VIP);
    }
    for sec in 1..=40 {
        b.handle_timeout(ms(1_300_000 + sec * 1000));
    }
    assert_eq!(b.connection_count(), 0);
    assert!(b.counters().defence_drops >= 40);
    assert!(b.embryonic.is_empty(), "drop_entry");
}

/// The half-open flag is a bit of its own: a persistence template marked invalid (a flag bit of
/// templates) whose removal took a count off its client's prefix would let that prefix past
/// its share.
#[test]
fn removing_an_invalid_template_leaves_the_counts_alone() {
    let mut b = balancer_with(200, Settings::default());
    b.apply_line(ms(0), "-A -t 10.0.0.101:80 -s rr -p 300")
        .unwrap();
    b.apply_line(ms(0), "-a -t 10.0.0.101:80 -r 10.1.0.2:80 -m")
        .unwrap();
    let client = in_v4_net([203, 0, 113], 200);
    let v = run(
        &mut b,
        ms(0),
        pkt::segment(client, sa("10.0.0.101:80"), SYN, 1, 0, b""),
    );
    assert!(matches!(v, Verdict::ToServer(_)));
    let (t, _) = b
        .conns
        .iter()
        .find(|(_, e)| e.is_template())
        .expect("a template");
    // The connection goes; its template is left, then marked invalid.
    let (c, _) = b.conns.iter().find(|(_, e)| !e.is_template()).unwrap();
    b.remove_entry(c);
    b.conns
        .get_mut(t)
        .unwrap()
        .flags
        .set(super::persist::INVALID, true);
    // The /24 at its share (20 of 200).
    for host in 0..20 {
        let v = flood_syn(&mut b, ms(1), in_v4_net([203, 0, 113], host), VIP);
        assert!(matches!(v, Verdict::ToServer(_)));
    }
    b.remove_entry(t);
    let v = flood_syn(&mut b, ms(2), in_v4_net([203, 0, 113], 21), VIP);
    assert_eq!(v, Verdict::Drop(DropReason::EmbryonicPrefixLimit));
}

/// A flood at a persistent service: each spoofed SYN also creates a persistence template
/// (300 s here). Once its connection is evicted a template controls nothing and was never
/// assured (no connection of it reached ESTABLISHED): it may go too, else the flood would fill
/// the table with templates and lock it for the persistence timeout.
#[test]
fn a_flood_at_a_persistent_service_does_not_lock_the_table() {
    let mut b = balancer_with(64, Settings::default());
    b.apply_line(ms(0), "-A -t 10.0.0.101:80 -s rr -p 300")
        .unwrap();
    b.apply_line(ms(0), "-a -t 10.0.0.101:80 -r 10.1.0.2:80 -m")
        .unwrap();
    let vip = "10.0.0.101:80";
    // An established client of the service, with its (assured) template.
    let kept = sa("192.0.2.1:40000");
    let v = run(&mut b, ms(0), pkt::segment(kept, sa(vip), SYN, 1, 0, b""));
    assert!(matches!(v, Verdict::ToServer(_)));
    run(
        &mut b,
        ms(0),
        pkt::segment(sa("10.1.0.2:80"), kept, SYN | ACK, 1, 2, b""),
    );
    run(&mut b, ms(0), pkt::segment(kept, sa(vip), ACK, 2, 2, b""));
    assert_eq!(state_of(&b, kept), Some("ESTABLISHED"));
    for i in 0..5 * b.capacity() as u32 {
        let src = spoofed(i);
        let v = run(
            &mut b,
            ms(100 + u64::from(i) * 100),
            pkt::segment(src, sa(vip), SYN, 7, 0, b""),
        );
        assert!(matches!(v, Verdict::ToServer(_)), "flood SYN {i}: {v:?}");
    }
    let t = ms(100 + 5 * b.capacity() as u64 * 100);
    let client = sa("192.0.2.7:40000");
    let v = run(&mut b, t, pkt::segment(client, sa(vip), SYN, 1, 0, b""));
    assert!(matches!(v, Verdict::ToServer(_)), "legit SYN: {v:?}");
    run(
        &mut b,
        t,
        pkt::segment(sa("10.1.0.2:80"), client, SYN | ACK, 1, 2, b""),
    );
    run(&mut b, t, pkt::segment(client, sa(vip), ACK, 2, 2, b""));
    assert_eq!(state_of(&b, client), Some("ESTABLISHED"));
    assert_eq!(state_of(&b, kept), Some("ESTABLISHED"));
    let templates = b.connections(t).filter(|c| c.template).count();
    assert!(templates <= b.capacity() / 2 + 2, "{templates} templates");
}
