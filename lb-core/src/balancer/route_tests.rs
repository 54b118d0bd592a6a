//! Direct routing (`-g`) through the datapath: the packet leaves unchanged with the real server
//! as next hop, one service mixes DR and NAT servers, a DR connection runs on the INPUT_ONLY
//! table from SYN to FIN_WAIT, replies of DR connections pass untouched, and ICMP errors,
//! fragments and one-packet scheduling follow the connection's method. Tunnels, which the
//! datapath does not encapsulate, are refused by `apply` and dropped as counted.

use std::format;
use std::vec::Vec;

use super::test_support::{empty_balancer, rr_service, sa, service_key};
use super::*;
use crate::config::{
    ConfigError, ForwardMethod, ServerConfig, ServiceConfig, ServiceKey, TunnelKind,
};
use crate::ipvsadm::{parse_line, Command};
use crate::tcp::flags::{ACK, FIN, SYN};
use crate::verdict::{DropReason, Transmit, Verdict};
use lb_testkit::pkt;

const VIP: &str = "10.0.0.100:80";
const UDP_VIP: &str = "10.0.0.100:53";
const CLIENT: &str = "192.0.2.1:40000";

fn dr_settings() -> Settings {
    Settings {
        direct_routing: true,
        ..Settings::default()
    }
}

/// rr over `servers` (address, method) at `VIP` (`udp`: a UDP service at `UDP_VIP`, `-o` if
/// `ops`).
fn balancer_with(servers: &[(&str, ForwardMethod)], udp: bool, ops: bool) -> Balancer<'static> {
    let mut cfg = ServiceConfig::new(service_key(if udp { UDP_VIP } else { VIP }, udp));
    cfg.one_packet = ops;
    rr_service(empty_balancer(1024, dr_settings()), cfg, servers)
}

/// Runs `pkt` through `b`: the verdict and the buffer's first `len` bytes after it.
fn run(b: &mut Balancer<'_>, now: Instant, pkt: &[u8]) -> (Verdict, Vec<u8>) {
    let mut buf = pkt.to_vec();
    buf.resize(2048, 0);
    let v = b.process(now, &mut buf, pkt.len());
    let n = v.transmit().map_or(pkt.len(), |t| t.len);
    (v, buf[..n].to_vec())
}

fn to_server(dst: &str, len: usize) -> Verdict {
    Verdict::ToServer(Transmit {
        start: 0,
        dst: sa(dst).ip(),
        len,
    })
}

/// The one connection's state and time left.
fn state(b: &Balancer<'_>, now: Instant) -> (&'static str, u64) {
    let c: Vec<_> = b.connections(now).filter(|c| !c.template).collect();
    assert_eq!(c.len(), 1);
    (c[0].state, c[0].expires_in.secs())
}

#[test]
fn apply_takes_dr_only_from_a_frontend_that_sends_by_next_hop_and_refuses_tunnels() {
    let line = |l: &str| parse_line(l).unwrap().unwrap();
    let mut b = empty_balancer(64, Settings::default());
    b.apply(Instant::ZERO, &line("-A -t 10.0.0.100:80 -s rr"))
        .unwrap();
    let err = b
        .apply(Instant::ZERO, &line("-a -t 10.0.0.100:80 -r 10.1.0.1 -g"))
        .unwrap_err();
    assert!(format!("{err}").contains("direct routing (-g)"), "{err}");
    b.set_settings(dr_settings());
    b.apply(Instant::ZERO, &line("-a -t 10.0.0.100:80 -r 10.1.0.1 -g"))
        .unwrap();
    for opts in [
        "",
        "--tun-type gue --tun-port 6080",
        "--tun-type gre --tun-csum",
    ] {
        let cmd = line(&format!("-a -t 10.0.0.100:80 -r 10.1.0.2 -i {opts}"));
        let err = b.apply(Instant::ZERO, &cmd).unwrap_err();
        assert!(format!("{err}").contains("tunnelling (-i)"), "{err}");
    }
    // Editing a NAT server into a tunnel is refused the same way.
    b.apply(
        Instant::ZERO,
        &line("-a -t 10.0.0.100:80 -r 10.1.0.3:80 -m"),
    )
    .unwrap();
    let err = b
        .apply(Instant::ZERO, &line("-e -t 10.0.0.100:80 -r 10.1.0.3 -i"))
        .unwrap_err();
    assert!(matches!(err, ConfigError::Unsupported(_)), "{err:?}");
}

/// A whole DR connection, packet by packet, through the fast path (`process`) and the general
/// path (`process_general`) of two identical balancers: the packet never changes, the verdict
/// names the real server, and the state follows INPUT_ONLY (docs/ipvs-semantics.md §2.3) with
/// its timeouts: SYN_RECV 60 s, ESTABLISHED 900 s, and an orderly close ends in FIN_WAIT
/// (120 s), never TIME_WAIT, as the server's FIN is never seen.
#[test]
fn a_dr_connection_runs_on_input_only_from_syn_to_fin_wait_unchanged() {
    let servers = [("10.1.0.1:80", ForwardMethod::Route)];
    let mut fast = balancer_with(&servers, false, false);
    let mut general = balancer_with(&servers, false, false);
    let (c, v) = (sa(CLIENT), sa(VIP));
    let steps: [(u8, &[u8], &str, u64); 6] = [
        (SYN, b"", "SYN_RECV", 60),
        (ACK, b"", "ESTABLISHED", 900),
        (ACK, b"GET / HTTP/1.0\r\n\r\n", "ESTABLISHED", 900),
        (ACK, b"", "ESTABLISHED", 900),
        (FIN | ACK, b"", "FIN_WAIT", 120),
        (ACK, b"", "FIN_WAIT", 120),
    ];
    for (i, &(flags, data, want, secs)) in steps.iter().enumerate() {
        let now = Instant::from_secs(i as u64);
        let p = pkt::segment(c, v, flags, 1000 + i as u32, 1, data);
        let (vf, out) = run(&mut fast, now, &p);
        assert_eq!(vf, to_server("10.1.0.1:80", p.len()), "step {i}");
        assert_eq!(out, p, "step {i}: a DR packet leaves unchanged");
        let mut buf = p.clone();
        let vg = general.process_general(now, &mut buf, p.len());
        assert_eq!((vg, &buf), (vf, &p), "step {i}: both paths agree");
        assert_eq!(state(&fast, now), (want, secs), "step {i}");
        assert_eq!(state(&general, now), (want, secs), "step {i}");
    }
    let d = fast.director();
    let svc = d.service_id(&ServiceKey::tcp(v)).unwrap();
    let server = d.find_server(svc, sa("10.1.0.1:80")).unwrap();
    assert_eq!(d.server(server).map(|s| s.stats.in_pkts), Some(6));
    // The entry times out in FIN_WAIT.
    fast.handle_timeout(Instant::from_secs(4 + 121));
    assert_eq!(fast.connection_count(), 0);
}

/// One service, a NAT and a DR server: each connection goes by its server's method; the NAT
/// server's reply is rewritten, while a packet that looks like the DR server's reply (its
/// address and port toward the client) is passed untouched and changes no state, as IPVS
/// ignores non-NAT connections on the way out.
#[test]
fn one_service_mixes_dr_and_nat_servers() {
    let mut b = balancer_with(
        // rr takes the last added first.
        &[
            ("10.1.0.2:80", ForwardMethod::Route),
            ("10.1.0.1:8080", ForwardMethod::Masq),
        ],
        false,
        false,
    );
    let v = sa(VIP);
    let (c1, c2) = (sa("192.0.2.1:1000"), sa("192.0.2.2:2000"));
    let syn1 = pkt::segment(c1, v, SYN, 1, 0, b"");
    let (v1, out1) = run(&mut b, Instant::ZERO, &syn1);
    assert_eq!(v1, to_server("10.1.0.1:8080", syn1.len()));
    assert_eq!(
        pkt::dst_of(&out1),
        Some(sa("10.1.0.1:8080")),
        "NAT rewrites"
    );
    assert!(pkt::checksums_ok(&out1));
    let syn2 = pkt::segment(c2, v, SYN, 1, 0, b"");
    let (v2, out2) = run(&mut b, Instant::ZERO, &syn2);
    assert_eq!(v2, to_server("10.1.0.2:80", syn2.len()));
    assert_eq!(out2, syn2, "DR does not");

    let reply1 = pkt::segment(sa("10.1.0.1:8080"), c1, SYN | ACK, 9, 2, b"");
    let (r1, out) = run(&mut b, Instant::ZERO, &reply1);
    assert!(matches!(r1, Verdict::ToClient(_)));
    assert_eq!(pkt::src_of(&out), Some(v));
    let reply2 = pkt::segment(sa("10.1.0.2:80"), c2, SYN | ACK, 9, 2, b"");
    let (r2, out) = run(&mut b, Instant::ZERO, &reply2);
    assert_eq!(
        r2,
        Verdict::Pass(Transmit {
            start: 0,
            dst: c2.ip(),
            len: reply2.len()
        })
    );
    assert_eq!(out, reply2);
    let states: Vec<_> = b
        .connections(Instant::ZERO)
        .map(|c| (c.client, c.state))
        .collect();
    assert!(states.contains(&(c1, "SYN_RECV")), "{states:?}");
    assert!(states.contains(&(c2, "SYN_RECV")), "{states:?}");
    // And again on the fast path (the DR entry still has NOOUTPUT).
    let (r2, _) = run(
        &mut b,
        Instant::ZERO,
        &pkt::segment(sa("10.1.0.2:80"), c2, ACK, 10, 2, b""),
    );
    assert!(matches!(r2, Verdict::Pass(_)));
}

/// A connection keeps the method it was created with (IPVS binds the transmitter per
/// connection): after `-e` turns a NAT server into a DR one, its open connection is still
/// rewritten, a new one is not.
#[test]
fn an_edited_method_applies_to_new_connections_only() {
    let mut b = balancer_with(&[("10.1.0.1:80", ForwardMethod::Masq)], false, false);
    let (c1, c2, v) = (sa("192.0.2.1:1000"), sa("192.0.2.2:2000"), sa(VIP));
    run(&mut b, Instant::ZERO, &pkt::segment(c1, v, SYN, 1, 0, b""));
    let edit = ServerConfig::new(sa("10.1.0.1:80"), ForwardMethod::Route);
    b.apply(
        Instant::ZERO,
        &Command::EditServer(ServiceKey::tcp(v), edit),
    )
    .unwrap();
    let ack = pkt::segment(c1, v, ACK, 2, 1, b"x");
    let (_, out) = run(&mut b, Instant::ZERO, &ack);
    assert_eq!(pkt::dst_of(&out), Some(sa("10.1.0.1:80")), "still NAT");
    let syn = pkt::segment(c2, v, SYN, 1, 0, b"");
    let (verdict, out) = run(&mut b, Instant::ZERO, &syn);
    assert_eq!(verdict, to_server("10.1.0.1:80", syn.len()));
    assert_eq!(out, syn, "DR");
}

/// An ICMP error from the client side about a DR connection (quoting VIP → client, what the
/// real server sent) goes to the real server unchanged, as the connection's packets do.
#[test]
fn an_icmp_error_about_a_dr_connection_goes_to_its_server_unchanged() {
    let mut b = balancer_with(&[("10.1.0.1:80", ForwardMethod::Route)], false, false);
    let (c, v) = (sa(CLIENT), sa(VIP));
    run(&mut b, Instant::ZERO, &pkt::segment(c, v, SYN, 1, 0, b""));
    // The server's reply, as it went from the server straight to the client.
    let reply = pkt::segment(v, c, SYN | ACK, 9, 2, b"");
    let err = pkt::icmp_error(sa("192.0.2.254:0").ip(), &reply, 576);
    let (verdict, out) = run(&mut b, Instant::ZERO, &err);
    assert_eq!(verdict, to_server("10.1.0.1:80", err.len()));
    assert_eq!(out, err);
}

/// The later fragments of a datagram whose first fragment went by DR go the same way:
/// unchanged, the real server as next hop.
#[test]
fn later_fragments_follow_a_dr_first_fragment_unchanged() {
    let mut b = balancer_with(&[("10.1.0.1:53", ForwardMethod::Route)], true, false);
    let d = pkt::udp(sa("192.0.2.1:5353"), sa("10.0.0.100:53"), &[7u8; 100]);
    let frags = pkt::fragments(&d, 0, &[24, 64], 0x4242);
    for (i, f) in frags.iter().enumerate() {
        let (verdict, out) = run(&mut b, Instant::ZERO, f);
        assert_eq!(verdict, to_server("10.1.0.1:53", f.len()), "fragment {i}");
        assert_eq!(&out, f, "fragment {i}");
    }
    assert_eq!(b.counters().fragments_forwarded, 2);
}

/// One-packet scheduling (`-o`) by DR: forwarded unchanged, no entry kept.
#[test]
fn one_packet_scheduling_by_dr() {
    let mut b = balancer_with(&[("10.1.0.1:53", ForwardMethod::Route)], true, true);
    let d = pkt::udp(sa("192.0.2.1:5353"), sa("10.0.0.100:53"), b"query");
    let (verdict, out) = run(&mut b, Instant::ZERO, &d);
    assert_eq!(verdict, to_server("10.1.0.1:53", d.len()));
    assert_eq!(out, d);
    assert_eq!(b.connection_count(), 0);
}

/// A tunnel server added past `apply` (through `director_mut`): its packets are counted drops,
/// on both paths, never sent rewritten as NAT.
#[test]
fn a_tunnel_server_the_datapath_cannot_serve_is_a_counted_drop() {
    let mut b = balancer_with(&[], false, false);
    let tunnel = ServerConfig::new(sa("10.1.0.1:80"), ForwardMethod::Tunnel(TunnelKind::Ipip));
    b.director_mut()
        .add_server(&ServiceKey::tcp(sa(VIP)), &tunnel)
        .unwrap();
    let (c, v) = (sa(CLIENT), sa(VIP));
    for (i, flags) in [SYN, ACK, ACK].into_iter().enumerate() {
        let p = pkt::segment(c, v, flags, 1 + i as u32, 1, b"");
        let (verdict, _) = run(&mut b, Instant::ZERO, &p);
        assert_eq!(verdict, Verdict::Drop(DropReason::UnsupportedMethod));
    }
    assert_eq!(b.counters().drops(DropReason::UnsupportedMethod), 3);
}

/// A DR entry is sent to a sync backup as DROUTE with NOOUTPUT, and a backup whose server is
/// DR binds the entry to DR whatever the record says (`ip_vs_bind_dest`).
#[test]
fn sync_records_carry_the_entry_method() {
    let mut b = balancer_with(&[("10.1.0.1:80", ForwardMethod::Route)], false, false);
    run(
        &mut b,
        Instant::ZERO,
        &pkt::segment(sa(CLIENT), sa(VIP), SYN, 1, 0, b""),
    );
    let h = b.conns.iter().next().map(|(h, _)| h).unwrap();
    let e = *b.conns.get(h).unwrap();
    let r = b.entry_record(&e, Duration::from_secs(60)).unwrap();
    use crate::sync::wire::flags;
    assert_eq!(r.flags & flags::FWD_MASK, flags::DROUTE);
    assert_ne!(r.flags & flags::NOOUTPUT, 0);
    assert_eq!(r.daddr, sa("10.1.0.1:80"));
}

/// A persistent service's template for a DR server is bound to DR too: its sync record says
/// DROUTE (with TEMPLATE), as the kernel's does.
#[test]
fn a_dr_servers_template_syncs_as_droute() {
    let mut b = balancer_with(&[], false, false);
    let key = ServiceKey::tcp(sa("10.0.0.101:443"));
    let mut cfg = ServiceConfig::new(key);
    cfg.persistence = Some(crate::config::Persistence {
        timeout_secs: 300,
        prefix: 32,
    });
    b.apply(Instant::ZERO, &Command::AddService(cfg)).unwrap();
    let s = ServerConfig::new(sa("10.1.0.1:443"), ForwardMethod::Route);
    b.apply(Instant::ZERO, &Command::AddServer(key, s)).unwrap();
    let syn = pkt::segment(sa(CLIENT), sa("10.0.0.101:443"), SYN, 1, 0, b"");
    let (verdict, out) = run(&mut b, Instant::ZERO, &syn);
    assert_eq!(verdict, to_server("10.1.0.1:443", syn.len()));
    assert_eq!(out, syn);
    use crate::sync::wire::flags;
    let records: Vec<_> = b
        .conns
        .iter()
        .map(|(_, e)| *e)
        .filter_map(|e| b.entry_record(&e, Duration::from_secs(60)))
        .collect();
    assert_eq!(records.len(), 2, "the connection and its template");
    for r in records {
        assert_eq!(r.flags & flags::FWD_MASK, flags::DROUTE, "{:#x}", r.flags);
    }
}

/// conn_reuse_mode's FIN_WAIT bit is for DR and tunnel connections, the only ones that end in
/// FIN_WAIT (docs/ipvs-semantics.md §3.1): with mode 2 a SYN that reuses the client port of a
/// DR connection in FIN_WAIT is scheduled afresh; with the default mode 1 it follows the old
/// entry, which INPUT_ONLY takes back to SYN_RECV.
#[test]
fn a_syn_reusing_a_dr_connection_in_fin_wait_is_rescheduled_in_mode_2() {
    for (mode, rescheduled) in [(1u8, 0u64), (2, 1)] {
        let mut b = balancer_with(&[("10.1.0.1:80", ForwardMethod::Route)], false, false);
        let mut settings = *b.settings();
        settings.conn_reuse_mode = ConnReuseMode::new(mode).unwrap();
        b.set_settings(settings);
        let (c, v) = (sa(CLIENT), sa(VIP));
        for (i, flags) in [SYN, ACK, FIN | ACK].into_iter().enumerate() {
            run(
                &mut b,
                Instant::from_secs(i as u64),
                &pkt::segment(c, v, flags, 1, 1, b""),
            );
        }
        assert_eq!(state(&b, Instant::from_secs(2)).0, "FIN_WAIT");
        let syn = pkt::segment(c, v, SYN, 7, 0, b"");
        let (verdict, out) = run(&mut b, Instant::from_secs(3), &syn);
        assert_eq!(verdict, to_server("10.1.0.1:80", syn.len()), "mode {mode}");
        assert_eq!(out, syn);
        assert_eq!(b.counters().reuse_reschedules, rescheduled, "mode {mode}");
        assert_eq!(
            state(&b, Instant::from_secs(3)),
            ("SYN_RECV", 60),
            "mode {mode}"
        );
    }
}
