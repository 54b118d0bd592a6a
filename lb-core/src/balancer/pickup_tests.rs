//! Mid-flow pickup (`pickup.rs`): two gateways with the same configuration but their own
//! secrets, as in an ECMP group; gateway A sees a flow's SYN, gateway B its later segments.
//! With `mh` or `sh` B forwards them to A's server; with `rr`/`wrr` it may not. The entry B
//! creates takes its state from the segment (an ACK gives ESTABLISHED), its method's table
//! (DR: INPUT_ONLY), and a RST never creates one.

use std::vec::Vec;

use super::test_support::{limits, sa};
use super::*;
use crate::config::{ForwardMethod, SchedulerKind, ServerConfig, ServiceConfig, ServiceKey};
use crate::conn::{ConnFlags, ConnStorage, ConnTable};
use crate::director::{Director, DirectorStorage};
use crate::hash::SipKey;
use crate::ipvsadm::{Command, Setting};
use crate::tcp::flags::{ACK, FIN, PSH, RST, SYN};
use crate::verdict::{DropReason, Verdict};
use lb_testkit::pkt;

const VIP: &str = "10.0.0.100:80";
const SERVERS: [&str; 4] = [
    "10.1.0.1:8080",
    "10.1.0.2:8080",
    "10.1.0.3:8080",
    "10.1.0.4:8080",
];

/// A gateway with its own scheduling seed and flow-hash key (`secret`), and `sched` at `VIP`
/// over `SERVERS` (NAT, or DR with `method` Route), mid-flow pickup per service if `sloppy`.
fn gateway(
    secret: u64,
    sched: SchedulerKind,
    method: ForwardMethod,
    sloppy: bool,
) -> Balancer<'static> {
    let director = Director::new(DirectorStorage::alloc(limits()), secret);
    let conns = ConnTable::new(
        ConnStorage::alloc(1024),
        SipKey([secret, !secret]),
        Instant::ZERO,
    );
    let settings = Settings {
        direct_routing: method == ForwardMethod::Route,
        tunnel_source_v4: Some(core::net::Ipv4Addr::new(10, 1, 0, 254)),
        ..Settings::default()
    };
    let mut b = Balancer::new(director, conns, settings);
    let key = ServiceKey::tcp(sa(VIP));
    let mut cfg = ServiceConfig::new(key);
    cfg.scheduler = sched;
    cfg.sloppy_tcp = sloppy;
    b.apply(Instant::ZERO, &Command::AddService(cfg)).unwrap();
    for s in SERVERS {
        let mut addr = sa(s);
        if method != ForwardMethod::Masq {
            addr.set_port(80);
        }
        let server = ServerConfig::new(addr, method);
        b.apply(Instant::ZERO, &Command::AddServer(key, server))
            .unwrap();
    }
    b
}

fn run(b: &mut Balancer<'_>, now: Instant, p: &[u8]) -> (Verdict, Vec<u8>) {
    let mut buf = p.to_vec();
    buf.resize(2048, 0);
    let v = b.process(now, &mut buf, p.len());
    let n = v.transmit().map_or(p.len(), |t| t.len);
    (v, buf[..n].to_vec())
}

/// Client `i`'s address.
fn client(i: u16) -> core::net::SocketAddr {
    core::net::SocketAddr::new(
        core::net::IpAddr::from([192, 0, 2, (i % 200) as u8 + 1]),
        30000 + i,
    )
}

/// The server a packet went to: its rewritten destination (NAT), its next hop (DR) or its
/// tunnel's outer destination (port 0: the outer header has none).
fn server_of(v: &Verdict, out: &[u8]) -> Option<core::net::SocketAddr> {
    match v {
        Verdict::ToServer(t) => {
            let dst = pkt::dst_of(out)?;
            Some(core::net::SocketAddr::new(t.dst, dst.port()))
        }
        _ => None,
    }
}

/// State name and seconds left of `b`'s entry for `c`.
fn entry_of(b: &Balancer<'_>, c: core::net::SocketAddr) -> Option<(&'static str, u64)> {
    b.connections(Instant::ZERO)
        .find(|e| e.client == c && !e.template)
        .map(|e| (e.state, e.expires_in.secs()))
}

/// For 64 clients: A schedules the SYNs, then B gets the next ACKs, in the other order (the
/// order in which flows move is the routers', not the clients'). How many went to another
/// server on B, and every B entry's state.
fn hand_over(sched: SchedulerKind) -> (usize, Vec<(&'static str, u64)>) {
    let mut a = gateway(1, sched, ForwardMethod::Masq, true);
    let mut b = gateway(0x9e37_79b9, sched, ForwardMethod::Masq, true);
    let mut on_a = Vec::new();
    for i in 0..64 {
        let syn = pkt::segment(client(i), sa(VIP), SYN, 7, 0, b"");
        let (va, outa) = run(&mut a, Instant::ZERO, &syn);
        on_a.push(server_of(&va, &outa).expect("A schedules the SYN"));
    }
    let mut moved = 0;
    let mut states = Vec::new();
    for i in (0..64).rev() {
        let c = client(i);
        let ack = pkt::segment(c, sa(VIP), ACK | PSH, 8, 1, b"GET / HTTP/1.1\r\n\r\n");
        let (vb, outb) = run(&mut b, Instant::ZERO, &ack);
        let on_b = server_of(&vb, &outb).expect("B picks the ACK up");
        assert!(pkt::checksums_ok(&outb));
        moved += usize::from(on_a[usize::from(i)] != on_b);
        states.push(entry_of(&b, c).expect("B keeps an entry"));
    }
    (moved, states)
}

#[test]
fn with_mh_and_sh_the_second_gateway_picks_up_on_the_first_ones_server() {
    for sched in [SchedulerKind::Mh, SchedulerKind::Sh] {
        let (moved, states) = hand_over(sched);
        assert_eq!(moved, 0, "{sched:?}");
        // NONE + ack -> ESTABLISHED (INPUT table), with its 900 s timeout.
        assert!(
            states.iter().all(|&s| s == ("ESTABLISHED", 900)),
            "{states:?}"
        );
    }
}

/// Schedulers that keep state of their own (rr's cursor, wrr's, the connection counts of the
/// least-connection family) do not agree between gateways: the picked-up flow may go to a
/// server that never saw its handshake.
#[test]
fn with_rr_and_wrr_the_second_gateway_may_choose_another_server() {
    for sched in [SchedulerKind::Rr, SchedulerKind::Wrr, SchedulerKind::Wlc] {
        let (moved, states) = hand_over(sched);
        assert!(moved > 0, "{sched:?}");
        assert!(
            states.iter().all(|&(s, _)| s == "ESTABLISHED"),
            "{states:?}"
        );
    }
}

/// Without `--sloppy` (and `sloppy_tcp` off) nothing changes: the ACK of an unknown flow is
/// answered by a RST and creates nothing.
#[test]
fn without_pickup_an_unknown_flows_ack_creates_nothing() {
    let mut b = gateway(2, SchedulerKind::Mh, ForwardMethod::Masq, false);
    let c = client(1);
    let (v, out) = run(
        &mut b,
        Instant::ZERO,
        &pkt::segment(c, sa(VIP), ACK, 8, 1, b""),
    );
    assert!(matches!(v, Verdict::Reply(_)), "{v:?}");
    assert_eq!(pkt::split(&out).map(|(_, l4, ..)| l4[13] & RST), Some(RST));
    assert_eq!(b.connection_count(), 0);
    assert_eq!(b.counters().conns_created, 0);
}

/// The per-service flag picks up for its own service only; the global `sloppy_tcp`
/// (`--sloppy-tcp 1`, IPVS's sysctl) for every service.
#[test]
fn the_service_flag_is_per_service_and_the_setting_global() {
    let mut b = gateway(3, SchedulerKind::Mh, ForwardMethod::Masq, true);
    let other = ServiceKey::tcp(sa("10.0.0.101:80"));
    let mut cfg = ServiceConfig::new(other);
    cfg.scheduler = SchedulerKind::Mh;
    b.apply(Instant::ZERO, &Command::AddService(cfg)).unwrap();
    let server = ServerConfig::new(sa("10.1.0.9:8080"), ForwardMethod::Masq);
    b.apply(Instant::ZERO, &Command::AddServer(other, server))
        .unwrap();
    let ack = |c, vip: &str| pkt::segment(c, sa(vip), ACK, 8, 1, b"");
    let (v, _) = run(&mut b, Instant::ZERO, &ack(client(1), "10.0.0.101:80"));
    assert!(!matches!(v, Verdict::ToServer(_)), "{v:?}");
    let (v, _) = run(&mut b, Instant::ZERO, &ack(client(2), VIP));
    assert!(matches!(v, Verdict::ToServer(_)), "{v:?}");
    assert_eq!(b.connection_count(), 1);

    b.apply(Instant::ZERO, &Command::Set(Setting::SloppyTcp(true)))
        .unwrap();
    let (v, out) = run(&mut b, Instant::ZERO, &ack(client(3), "10.0.0.101:80"));
    assert_eq!(server_of(&v, &out), Some(sa("10.1.0.9:8080")));
    assert_eq!(entry_of(&b, client(3)).map(|e| e.0), Some("ESTABLISHED"));
}

/// A DR or tunnel entry picked up mid-flow starts with NOOUTPUT, so it runs on INPUT_ONLY: a
/// FIN after the ACK gives FIN_WAIT there (the INPUT table would say CLOSE_WAIT, as the NAT
/// entry shows). The packet goes toward A's server: unchanged (DR), encapsulated (IPIP).
#[test]
fn dr_and_tunnel_entries_picked_up_run_on_input_only_and_a_nat_one_on_input() {
    let ipip = ForwardMethod::Tunnel(crate::config::TunnelKind::Ipip);
    for method in [ForwardMethod::Route, ipip, ForwardMethod::Masq] {
        let mut a = gateway(1, SchedulerKind::Mh, method, true);
        let mut b = gateway(5, SchedulerKind::Mh, method, true);
        let c = client(9);
        let (va, outa) = run(
            &mut a,
            Instant::ZERO,
            &pkt::segment(c, sa(VIP), SYN, 7, 0, b""),
        );
        let ack = pkt::segment(c, sa(VIP), ACK, 8, 1, b"");
        let (vb, outb) = run(&mut b, Instant::ZERO, &ack);
        assert_eq!(server_of(&vb, &outb), server_of(&va, &outa), "{method:?}");
        let flags = b.conns.iter().map(|(_, e)| e.flags).next().unwrap();
        let fin = pkt::segment(c, sa(VIP), FIN | ACK, 8, 1, b"");
        run(&mut b, Instant::ZERO, &fin);
        let state = entry_of(&b, c).unwrap().0;
        if method == ForwardMethod::Route {
            assert_eq!(outb, ack, "DR forwards the packet as it came");
            assert!(flags.contains(ConnFlags::NOOUTPUT) && flags.contains(method::ROUTE));
            assert_eq!(state, "FIN_WAIT");
        } else if method == ipip {
            assert_eq!(outb.len(), ack.len() + 20, "one outer IPv4 header");
            assert_eq!(&outb[20..], &ack[..], "the client's packet inside");
            assert!(flags.contains(ConnFlags::NOOUTPUT) && flags.contains(method::TUNNEL));
            assert_eq!(state, "FIN_WAIT");
        } else {
            assert!(!flags.contains(ConnFlags::NOOUTPUT) && method::is_nat(flags));
            assert_eq!(state, "CLOSE_WAIT");
        }
    }
}

/// A RST never creates an entry, with pickup on or not, SYN set or not
/// (`tcp_conn_schedule`); a FIN does, in CLOSE (NONE + fin, 10 s).
#[test]
fn a_rst_never_creates_an_entry_and_a_fin_creates_one_in_close() {
    let mut b = gateway(6, SchedulerKind::Sh, ForwardMethod::Masq, true);
    for (i, flags) in [RST, RST | ACK, SYN | RST].into_iter().enumerate() {
        let p = pkt::segment(client(i as u16), sa(VIP), flags, 8, 1, b"");
        let (v, _) = run(&mut b, Instant::ZERO, &p);
        assert_eq!(v, Verdict::Drop(DropReason::NoConnection), "{flags:#x}");
    }
    assert_eq!(b.connection_count(), 0);
    assert_eq!(b.counters().drops[DropReason::NoConnection.index()], 3);
    let fin = pkt::segment(client(7), sa(VIP), FIN | ACK, 8, 1, b"");
    let (v, _) = run(&mut b, Instant::ZERO, &fin);
    assert!(matches!(v, Verdict::ToServer(_)), "{v:?}");
    assert_eq!(entry_of(&b, client(7)), Some(("CLOSE", 10)));
}
