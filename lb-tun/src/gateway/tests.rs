//! The gateway without a TUN device: configuration batches, lbadm answers, listings in
//! ipvsadm's layout, save/restore fidelity (scheduling included), metrics, and the
//! verdict → ring-action mapping.

use super::*;
use crate::test_support::FakeIo;
use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{Icmpv4Packet, Icmpv4Repr, Ipv4Address, Ipv4Packet};
use std::net::{Ipv4Addr, SocketAddrV4};

const T0: Instant = Instant::from_millis(0);

/// A small director so tests stay fast in debug builds.
fn small_limits() -> Limits {
    Limits {
        services: 8,
        servers_per_service: 64,
        table_slots_per_service: 65536,
        lblc_entries_per_service: 64,
    }
}

fn gw() -> Gateway {
    Gateway::with_limits(small_limits(), 4096, 7, [3; 16], T0)
}

fn req(args: &str) -> Request {
    Request {
        args: args.split_whitespace().map(String::from).collect(),
        stdin: None,
    }
}

fn ctl(g: &mut Gateway, args: &str) -> Reply {
    g.control(T0, &req(args), &RingStats::default())
}

fn ok(g: &mut Gateway, args: &str) -> String {
    let r = ctl(g, args);
    assert_eq!(r.status, 0, "{args}: {}", r.text);
    r.text
}

const CONF: &str = "\
# demo
-A -t 10.30.0.10:80 -s wrr
-a -t 10.30.0.10:80 -r 10.20.1.2:80 -m -w 3
-a -t 10.30.0.10:80 -r 10.20.1.3:80 -m -w 1 -x 100 -y 10

-A -u [fd00:30::10]:53 -s mh -b mh-port -p 60
-a -u [fd00:30::10]:53 -r [fd00:20::2]:53 -m -w 2
-a -u [fd00:30::10]:53 -r [fd00:20::3]:53 -m
-A -t 10.30.0.9:443 -s sh -p 300 -M 255.255.255.0
-a -t 10.30.0.9:443 -r 10.20.1.4:443 -m -w 0
";

#[test]
fn listing_is_laid_out_like_ipvsadm() {
    let mut g = gw();
    assert_eq!(g.apply_batch(T0, "lb.conf", CONF), Ok(8));
    let out = ok(&mut g, "-L -n");
    let want = "\
IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port Scheduler Flags
  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn
TCP  10.30.0.9:443 sh persistent 300 mask 255.255.255.0
  -> 10.20.1.4:443                Masq    0      0          0         
TCP  10.30.0.10:80 wrr
  -> 10.20.1.2:80                 Masq    3      0          0         
  -> 10.20.1.3:80                 Masq    1      0          0         
UDP  [fd00:30::10]:53 mh (mh-port) persistent 60
  -> [fd00:20::2]:53              Masq    2      0          0         
  -> [fd00:20::3]:53              Masq    1      0          0         
";
    assert_eq!(out, want);
    let th = ok(&mut g, "-L -n --thresholds -t 10.30.0.10:80");
    assert_eq!(
        th,
        "\
Prot LocalAddress:Port            Uthreshold Lthreshold ActiveConn InActConn 
  -> RemoteAddress:Port
TCP  10.30.0.10:80 wrr
  -> 10.20.1.2:80                 0          0          0          0         
  -> 10.20.1.3:80                 100        10         0          0         
"
    );
    let st = ok(&mut g, "-L -n --stats -t 10.30.0.10:80");
    assert_eq!(
        st,
        "\
Prot LocalAddress:Port               Conns   InPkts  OutPkts  InBytes OutBytes
  -> RemoteAddress:Port
TCP  10.30.0.10:80                       0        0        0        0        0
  -> 10.20.1.2:80                        0        0        0        0        0
  -> 10.20.1.3:80                        0        0        0        0        0
"
    );
    assert_eq!(
        ok(&mut g, "-L --timeout"),
        "Timeout (tcp tcpfin udp): 900 120 300\n"
    );
    assert!(ok(&mut g, "-L -n -c").starts_with(
        "IPVS connection entries\npro expire state       source             virtual            destination\n"
    ));
    let r = ctl(&mut g, "-L -n -t 10.30.0.99:80");
    assert_eq!((r.status, r.text.as_str()), (1, "No such service\n"));
}

/// `--sloppy` (mid-flow pickup, our extension): -L shows it after ipvsadm's flags, -S prints
/// it back, and -E without it switches it off.
#[test]
fn sloppy_services_list_and_save_back() {
    let mut g = gw();
    ok(&mut g, "-A -t 10.30.0.10:80 -s mh -p 60 --sloppy");
    let l = ok(&mut g, "-L -n");
    assert!(
        l.contains("\nTCP  10.30.0.10:80 mh persistent 60 sloppy\n"),
        "{l}"
    );
    let s = ok(&mut g, "-S -n");
    assert!(
        s.contains("-A -t 10.30.0.10:80 -s mh -p 60 --sloppy\n"),
        "{s}"
    );
    ok(&mut g, "-E -t 10.30.0.10:80 -s mh");
    assert!(!ok(&mut g, "-S -n").contains("--sloppy"));
}

#[test]
fn a_bad_line_names_file_and_line_and_nothing_is_applied() {
    let mut g = gw();
    let bad = "-A -t 10.30.0.10:80 -s wrr\n-a -t 10.30.0.10:80 -r 10.20.1.2:80 -m -w 3\n-a -t 10.30.0.10:80 -r 10.20.1.3:80 -m -w 70000\n";
    let e = g.apply_batch(T0, "/etc/lb.conf", bad).unwrap_err();
    assert!(e.0.starts_with("/etc/lb.conf:3: "), "{e}");
    assert!(e.0.contains("weight out of range"), "{e}");
    assert_eq!(g.balancer().director().services().count(), 0);

    // A line that parses but does not apply (the server exists): caught by the dry run.
    let dup = "-A -t 10.30.0.10:80 -s wrr\n-a -t 10.30.0.10:80 -r 10.20.1.2:80 -m\n-a -t 10.30.0.10:80 -r 10.20.1.2:80 -m\n";
    let e = g.apply_batch(T0, "x.conf", dup).unwrap_err();
    assert!(
        e.0.starts_with("x.conf:3: Destination already exists"),
        "{e}"
    );
    assert_eq!(g.balancer().director().services().count(), 0);

    let e = g.apply_batch(T0, "f.conf", "-A -f 7 -s rr\n").unwrap_err();
    assert!(
        e.0.contains("f.conf:1:") && e.0.contains("carries no firewall mark"),
        "{e}"
    );
    let e = g
        .apply_batch(
            T0,
            "g.conf",
            "-A -t 10.30.0.10:80 -s rr\n-a -t 10.30.0.10:80 -r 10.20.1.2:80 -g\n",
        )
        .unwrap_err();
    assert!(
        e.0.contains("g.conf:2:") && e.0.contains("direct routing (-g)"),
        "{e}"
    );
    assert_eq!(g.balancer().director().services().count(), 0);
}

#[test]
fn restore_is_all_or_nothing_and_builds_on_the_current_table() {
    let mut g = gw();
    ok(&mut g, "-A -t 10.30.0.10:80 -s rr");
    let mut r = req("-R");
    r.stdin = Some(
        "-a -t 10.30.0.10:80 -r 10.20.1.2:80 -m\n-a -t 10.30.0.11:80 -r 10.20.1.3:80 -m\n".into(),
    );
    let rep = g.control(T0, &r, &RingStats::default());
    assert_eq!(rep.status, 1);
    assert!(
        rep.text.contains("stdin:2: Service not defined"),
        "{}",
        rep.text
    );
    assert_eq!(g.save(), "-A -t 10.30.0.10:80 -s rr\n");
    r.stdin = Some("-a -t 10.30.0.10:80 -r 10.20.1.2:80 -m\n--conn-reuse-mode 2\n".into());
    assert_eq!(g.control(T0, &r, &RingStats::default()).status, 0);
    assert_eq!(
        g.save(),
        "-A -t 10.30.0.10:80 -s rr\n-a -t 10.30.0.10:80 -r 10.20.1.2:80 -m -w 1\n--conn-reuse-mode 2\n"
    );
}

#[test]
fn control_errors_are_clear_and_non_zero() {
    let mut g = gw();
    let r = ctl(&mut g, "-A -t 10.30.0.10:80 -s nosuch");
    assert_eq!(r.status, 2);
    assert!(r.text.contains("unknown scheduler"), "{}", r.text);
    let r = ctl(&mut g, "-a -t 10.30.0.10:80 -r 10.20.1.2:80 -m");
    assert_eq!(r.status, 1);
    assert!(r.text.contains("Service not defined"), "{}", r.text);
    ok(&mut g, "-A -t 10.30.0.10:80 -s rr");
    let r = ctl(&mut g, "-a -t 10.30.0.10:80 -r 10.20.1.2:80 -i");
    assert_eq!(r.status, 1);
    assert!(r.text.contains("tunnelling (-i)"), "{}", r.text);
    let r = ctl(&mut g, "-A -f 1 -s rr");
    assert_eq!(r.status, 1);
    assert!(r.text.contains("carries no firewall mark"), "{}", r.text);
    assert!(ok(&mut g, "--help").contains("--stats-gateway"));
}

#[test]
fn settings_are_set_and_shown_as_restorable_lines() {
    let mut g = gw();
    ok(&mut g, "--conn-reuse-mode 3");
    ok(&mut g, "--expire-quiescent-template 1");
    ok(&mut g, "--set 100 0 20");
    let s = ok(&mut g, "--show-settings");
    assert!(s.starts_with("--set 100 120 20\n--conn-reuse-mode 3\n--expire-nodest-conn 1\n--expire-quiescent-template 1\n--secure-tcp 0\n--drop-entry 0\n--sloppy-tcp 0\n"), "{s}");
    assert_eq!(
        ok(&mut g, "-L --timeout"),
        "Timeout (tcp tcpfin udp): 100 120 20\n"
    );
    // The shown settings restore into a fresh gateway.
    let mut h = gw();
    h.apply_batch(T0, "settings", &s).unwrap();
    assert_eq!(h.show_settings(), s);
}

fn syn(src: SocketAddrV4, dst: SocketAddrV4) -> Vec<u8> {
    lb_testkit::pkt::tcp(src.into(), dst.into(), lb_testkit::pkt::SYN, 1000, &[], 0)
}

/// Where the gateway sends a SYN from `client` to `vip` (the rewritten destination).
fn schedule(g: &mut Gateway, client: SocketAddrV4, vip: SocketAddrV4) -> Option<Ipv4Address> {
    let mut buf = syn(client, vip);
    buf.resize(2048, 0);
    let len = buf.len();
    match g.lb.process(T0, &mut buf, len) {
        Verdict::ToServer(_) => Some(Ipv4Packet::new_checked(&buf[..]).ok()?.dst_addr()),
        _ => None,
    }
}

#[test]
fn save_restores_into_a_fresh_gateway_with_the_same_listing_and_scheduling() {
    let conf = "\
-A -t 10.30.0.10:80 -s wrr
-a -t 10.30.0.10:80 -r 10.20.1.2:80 -m -w 3
-a -t 10.30.0.10:80 -r 10.20.1.3:80 -m -w 2 -x 50 -y 5
-a -t 10.30.0.10:80 -r 10.20.1.4:80 -m -w 1
-A -t 10.30.0.11:80 -s mh -b mh-port
-a -t 10.30.0.11:80 -r 10.20.1.4:80 -m -w 1
-a -t 10.30.0.11:80 -r 10.20.1.2:80 -m -w 2
-a -t 10.30.0.11:80 -r 10.20.1.3:80 -m -w 1
--set 600 60 100
";
    let mut a = Gateway::with_limits(small_limits(), 4096, 1, [1; 16], T0);
    a.apply_batch(T0, "a", conf).unwrap();
    // Change things after start-up too, so the save is not just the file back.
    ok(&mut a, "-e -t 10.30.0.10:80 -r 10.20.1.4:80 -m -w 4 -x 9");
    ok(&mut a, "--conn-reuse-mode 2");
    let saved = a.save();
    let mut b = Gateway::with_limits(small_limits(), 4096, 99, [9; 16], T0);
    let mut r = req("-R");
    r.stdin = Some(saved.clone());
    assert_eq!(b.control(T0, &r, &RingStats::default()).status, 0);
    assert_eq!(b.save(), saved);
    for view in [
        "-L -n",
        "-L -n --thresholds",
        "-L --timeout",
        "--show-settings",
    ] {
        assert_eq!(ok(&mut a, view), ok(&mut b, view), "{view}");
    }
    // The same decisions for the same series of clients, wrr order and mh table included.
    let mut seen = HashSet::new();
    for vip in ["10.30.0.10:80", "10.30.0.11:80"] {
        let vip: SocketAddrV4 = vip.parse().unwrap();
        for i in 0..200u16 {
            let client = SocketAddrV4::new(Ipv4Addr::new(10, 40, 0, 2 + (i % 7) as u8), 40000 + i);
            let da = schedule(&mut a, client, vip);
            let db = schedule(&mut b, client, vip);
            assert!(da.is_some());
            assert_eq!(da, db, "client {client} to {vip}");
            seen.insert(da);
        }
    }
    assert_eq!(seen.len(), 3, "every server was picked");
}

#[test]
fn wrr_splits_by_weight_and_echo_to_a_vip_is_answered() {
    let mut g = gw();
    g.apply_batch(T0, "c", CONF).unwrap();
    let vip: SocketAddrV4 = "10.30.0.10:80".parse().unwrap();
    let mut n = [0usize; 2];
    for i in 0..400u16 {
        let c = SocketAddrV4::new(Ipv4Addr::new(10, 40, 0, 2), 30000 + i);
        match schedule(&mut g, c, vip).map(|a| a.octets()[3]) {
            Some(2) => n[0] += 1,
            Some(3) => n[1] += 1,
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(n, [300, 100]);
    let l = ok(&mut g, "-L -n -t 10.30.0.10:80");
    assert!(
        l.contains("  -> 10.20.1.2:80                 Masq    3      300        0         \n"),
        "{l}"
    );
}

fn echo_request(src: Ipv4Address, dst: Ipv4Address) -> Vec<u8> {
    crate::test_support::icmp_echo_request(src, dst, 9)
}

#[test]
fn a_burst_maps_verdicts_to_actions_and_never_loops_a_former_vip() {
    let mut g = gw();
    g.apply_batch(T0, "c", CONF).unwrap();
    let client = Ipv4Address::new(10, 40, 0, 2);
    let vip = Ipv4Address::new(10, 30, 0, 10);
    let io = FakeIo::default();
    let syn_pkt = syn(
        "10.40.0.2:40000".parse().unwrap(),
        "10.30.0.10:80".parse().unwrap(),
    );
    let other = echo_request(client, Ipv4Address::new(10, 20, 1, 2));
    io.inbox.borrow_mut().extend([
        syn_pkt.clone(),
        echo_request(client, vip),
        other.clone(),
        vec![0x45, 0, 0],
    ]);
    let mut ring = PacketRing::new(8, 2048);
    assert_eq!(ring.fill(&io).unwrap(), 4);
    g.process_ring(T0, &mut ring);
    assert_eq!(ring.flush(&io), 3, "the malformed packet is dropped");
    let out = io.outbox.borrow().clone();
    let fwd = Ipv4Packet::new_checked(&out[0][..]).unwrap();
    // wrr's first pick is the newest server (kernel-exact: the current weight starts at 0).
    assert_eq!(fwd.dst_addr(), Ipv4Address::new(10, 20, 1, 3));
    let reply = Ipv4Packet::new_checked(&out[1][..]).unwrap();
    assert_eq!((reply.src_addr(), reply.dst_addr()), (vip, client));
    let icmp = Icmpv4Packet::new_checked(reply.payload()).unwrap();
    assert!(matches!(
        Icmpv4Repr::parse(&icmp, &ChecksumCapabilities::default()),
        Ok(Icmpv4Repr::EchoReply { ident: 9, .. })
    ));
    assert_eq!(out[2], other, "not ours: written back unchanged");

    // The service goes away: a ping to its address is no longer answered and must not be
    // written back (the kernel would route it into the TUN again).
    ok(&mut g, "-D -t 10.30.0.10:80");
    io.outbox.borrow_mut().clear();
    io.inbox.borrow_mut().push_back(echo_request(client, vip));
    ring.fill(&io).unwrap();
    g.process_ring(T0, &mut ring);
    assert_eq!(ring.flush(&io), 0);
    assert_eq!(g.stats().loop_drops, 1);
}

/// The verdicts of a burst land on the right slots when some of its packets never reach the
/// balancer (a probe reply diverted, a slot already marked to drop), and the burst's packet
/// list keeps its allocation from one burst to the next.
#[test]
fn a_burst_with_diverted_packets_lines_verdicts_up_and_reuses_its_list() {
    let mut g = gw();
    g.apply_batch(T0, "c", CONF).unwrap();
    g.enable_probes(T0, &["10.99.0.1".parse().unwrap()])
        .unwrap();
    let vip: SocketAddrV4 = "10.30.0.10:80".parse().unwrap();
    let client = Ipv4Address::new(10, 40, 0, 2);
    let syn_from = |port| syn(SocketAddrV4::new(Ipv4Addr::new(10, 40, 0, 2), port), vip);
    let probe_reply = echo_request(
        Ipv4Address::new(10, 20, 1, 2),
        Ipv4Address::new(10, 99, 0, 1),
    );
    let other = echo_request(client, Ipv4Address::new(10, 20, 1, 3));
    let io = FakeIo::with(&[
        syn_from(40000),
        probe_reply,
        syn_from(40001),
        syn_from(40002),
        other.clone(),
    ]);
    let mut ring = PacketRing::new(8, 2048);
    assert_eq!(ring.fill(&io).unwrap(), 5);
    ring.set_action(3, Action::Drop);
    g.process_ring(T0, &mut ring);
    assert_eq!(
        ring.flush(&io),
        3,
        "the probe reply and the slot marked to drop are not sent"
    );
    let out = io.outbox.borrow().clone();
    for (p, port) in out[..2].iter().zip([40000, 40001]) {
        let ip = Ipv4Packet::new_checked(&p[..]).unwrap();
        assert_ne!(
            ip.dst_addr(),
            Ipv4Address::new(10, 30, 0, 10),
            "forwarded to a server"
        );
        assert_eq!(u16::from_be_bytes([p[20], p[21]]), port);
    }
    assert_eq!(out[2], other, "passed, unchanged");
    assert_eq!(
        g.balancer().counters().conns_created,
        2,
        "the dropped slot's SYN never ran"
    );
    let list = (g.burst.as_ptr(), g.burst.capacity());
    assert!(g.burst.is_empty() && list.1 >= 3, "{list:?}");
    io.inbox.borrow_mut().push_back(syn_from(40003));
    ring.fill(&io).unwrap();
    g.process_ring(T0, &mut ring);
    assert_eq!(ring.flush(&io), 1);
    assert_eq!(
        (g.burst.as_ptr(), g.burst.capacity()),
        list,
        "the same allocation"
    );
}

#[test]
fn metrics_use_node_exporter_names_and_pass_promtool() {
    let mut g = gw();
    g.apply_batch(T0, "c", CONF).unwrap();
    let vip: SocketAddrV4 = "10.30.0.10:80".parse().unwrap();
    for i in 0..4u16 {
        schedule(
            &mut g,
            SocketAddrV4::new(Ipv4Addr::new(10, 40, 0, 2), 50000 + i),
            vip,
        );
    }
    g.enable_probes(T0, &["10.99.0.1".parse().unwrap()])
        .unwrap();
    let plan = crate::keepalived::HealthPlan {
        services: vec![],
        checks: vec![crate::keepalived::PlannedCheck {
            at: "k:1".into(),
            service: lb_core::ServiceKey::tcp("10.30.0.10:80".parse().unwrap()),
            server: "10.20.1.2:80".parse().unwrap(),
            check: lb_core::HealthCheck::tcp(),
        }],
    };
    g.apply_health(T0, &plan).unwrap();
    let mut text = crate::prom::format(g.balancer(), &RingStats::default(), g.stats(), 5);
    text.push_str(&crate::prom::format_health(
        g.balancer(),
        g.probes().unwrap(),
    ));
    let q = |rx, tx| RingStats {
        rx_packets: rx,
        rx_bytes: rx * 100,
        tx_packets: tx,
        ..RingStats::default()
    };
    text.push_str(&crate::prom::format_queues(
        &[q(10, 9), q(7, 7)],
        3,
        Some(2),
    ));
    for want in [
        "lbtun_real_server_up{local_address=\"10.30.0.10\",local_mark=\"\",local_port=\"80\",proto=\"TCP\",remote_address=\"10.20.1.2\",remote_port=\"80\"} 1\n",
        "lbtun_health_checks_total{local_address=\"10.30.0.10\",local_mark=\"\",local_port=\"80\",proto=\"TCP\",remote_address=\"10.20.1.2\",remote_port=\"80\",result=\"refused\"} 0\n",
        "# TYPE lbtun_health_checks_total counter\n",
        "# TYPE node_ipvs_connections_total counter\nnode_ipvs_connections_total 4\n",
        "# HELP node_ipvs_incoming_packets_total The total number of incoming packets.\n",
        "node_ipvs_backend_connections_active{local_address=\"10.30.0.10\",local_mark=\"\",local_port=\"80\",proto=\"TCP\",remote_address=\"10.20.1.2\",remote_port=\"80\"} 3\n",
        "node_ipvs_backend_weight{local_address=\"fd00:30::10\",local_mark=\"\",local_port=\"53\",proto=\"UDP\",remote_address=\"fd00:20::2\",remote_port=\"53\"} 2\n",
        "# TYPE node_ipvs_backend_connections_inactive gauge\n",
        "lbtun_drops_total{reason=\"no_service\"} 0\n",
        "lbtun_reuse_reschedules_total 0\n",
        "lbtun_syn_drops_total 0\n",
        "lbtun_connections 4\n",
        "lbtun_queue_rx_packets_total{queue=\"0\"} 10\nlbtun_queue_rx_packets_total{queue=\"1\"} 7\n",
        "lbtun_queue_rx_bytes_total{queue=\"0\"} 1000\nlbtun_queue_rx_bytes_total{queue=\"1\"} 700\n",
        "# TYPE lbtun_queue_tx_packets_total counter\nlbtun_queue_tx_packets_total{queue=\"0\"} 9\n",
        "lbtun_lock_waits_total 3\n",
        "# TYPE lbtun_steer_moves_total counter\nlbtun_steer_moves_total 2\n",
    ] {
        assert!(text.contains(want), "missing {want:?} in\n{text}");
    }
    match std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
    {
        Err(e) => println!(
            "SKIPPED promtool check: promtool not available ({e}); apt-get install prometheus"
        ),
        Ok(mut child) => {
            use std::io::Write as _;
            child
                .stdin
                .take()
                .unwrap()
                .write_all(text.as_bytes())
                .unwrap();
            let out = child.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "promtool: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

#[test]
fn save_state_writes_a_snapshot_a_new_gateway_restores() {
    let dir = std::env::temp_dir().join(format!("lbt-state-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("table.state");
    let mut a = gw();
    a.apply_batch(T0, "c", CONF).unwrap();
    let vip: SocketAddrV4 = "10.30.0.10:80".parse().unwrap();
    for i in 0..5u16 {
        schedule(
            &mut a,
            SocketAddrV4::new(Ipv4Addr::new(10, 40, 0, 2), 41000 + i),
            vip,
        )
        .unwrap();
    }
    // Without --state the request says so.
    let r = ctl(&mut a, "--save-state");
    assert_eq!(r.status, 1);
    assert!(r.text.contains("--state FILE"), "{}", r.text);
    a.set_state_path(path.clone());
    let text = ok(&mut a, "--save-state");
    assert!(text.starts_with("state: 5 entries"), "{text}");
    assert!(
        !dir.join("table.state.tmp").exists(),
        "the temporary file is renamed"
    );

    let mut b = gw();
    b.apply_batch(T0, "c", CONF).unwrap();
    let report = b.import_state(T0, &std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(report.created, 5);
    assert_eq!(ok(&mut b, "-L -n -c"), ok(&mut a, "-L -n -c"));
    assert_eq!(ok(&mut b, "-L -n"), ok(&mut a, "-L -n"));
    // A damaged file is refused whole.
    let mut bad = std::fs::read(&path).unwrap();
    bad[20] ^= 0xff;
    let mut c = gw();
    c.apply_batch(T0, "c", CONF).unwrap();
    let e = c.import_state(T0, &bad).unwrap_err();
    assert!(e.to_string().contains("damaged"), "{e}");
    assert_eq!(c.balancer().connection_count(), 0);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// On a TUN device `-g` is refused, by a command or a batch, with a message that says to run
/// with --tap; once the device can send to a next hop (TAP), it is accepted beside NAT servers.
#[test]
fn direct_routing_is_refused_on_tun_with_the_way_to_get_it_and_accepted_on_tap() {
    let mut g = gw();
    ok(&mut g, "-A -t 10.30.0.10:80 -s wrr");
    let r = ctl(&mut g, "-a -t 10.30.0.10:80 -r 10.20.1.2 -g");
    assert_eq!(r.status, 1);
    assert!(r.text.contains("direct routing (-g)"), "{}", r.text);
    assert!(r.text.contains("(lb-tun: run it with --tap)"), "{}", r.text);
    let e = g
        .apply_batch(T0, "lb.conf", "-a -t 10.30.0.10:80 -r 10.20.1.3 -g -w 1\n")
        .unwrap_err();
    assert!(
        e.0.starts_with("lb.conf:1: ") && e.0.contains("(lb-tun: run it with --tap)"),
        "{e}"
    );
    // Other refusals do not mention --tap.
    let r = ctl(&mut g, "-a -t 10.30.0.10:80 -r 10.20.1.3 -i");
    assert!(r.status != 0 && !r.text.contains("--tap"), "{}", r.text);

    g.enable_direct_routing();
    ok(&mut g, "-a -t 10.30.0.10:80 -r 10.20.1.2 -g -w 3");
    ok(&mut g, "-a -t 10.30.0.10:80 -r 10.20.1.3:8080 -m -w 1");
    let l = ok(&mut g, "-L -n");
    assert!(
        l.contains("-> 10.20.1.2:80                 Route   3"),
        "{l}"
    );
    assert!(
        l.contains("-> 10.20.1.3:8080               Masq    1"),
        "{l}"
    );
    // A setting changed afterwards keeps direct routing on (it is not one of ipvsadm's).
    ok(&mut g, "--conn-reuse-mode 2");
    ok(&mut g, "-e -t 10.30.0.10:80 -r 10.20.1.2 -g -w 2");
}

/// A burst on a TAP device: the DR packet leaves unchanged (still to the VIP) with its real
/// server as next hop; the NAT one rewritten, its next hop its new destination.
#[test]
fn a_burst_gives_each_forwarded_packet_its_next_hop() {
    let mut g = gw();
    g.enable_direct_routing();
    g.apply_batch(
        T0,
        "c",
        "-A -t 10.30.0.10:80 -s rr\n-a -t 10.30.0.10:80 -r 10.20.1.2 -g\n\
         -A -t 10.30.0.11:80 -s rr\n-a -t 10.30.0.11:80 -r 10.20.1.3 -m\n",
    )
    .unwrap();
    let client: SocketAddrV4 = "10.40.0.2:40000".parse().unwrap();
    let dr = syn(client, "10.30.0.10:80".parse().unwrap());
    let nat = syn(client, "10.30.0.11:80".parse().unwrap());
    let io = FakeIo::with(&[dr.clone(), nat]);
    let mut ring = PacketRing::new(4, 2048);
    ring.fill(&io).unwrap();
    g.process_ring(T0, &mut ring);
    assert_eq!(ring.flush(&io), 2);
    let out = io.outbox.borrow();
    let hops = io.hops.borrow();
    assert_eq!(out[0], dr, "DR: the packet as it came");
    assert_eq!(
        Ipv4Packet::new_checked(&out[1][..]).unwrap().dst_addr(),
        Ipv4Address::new(10, 20, 1, 3)
    );
    let want: Vec<IpAddr> = vec!["10.20.1.2".parse().unwrap(), "10.20.1.3".parse().unwrap()];
    assert_eq!(*hops, want);
}

/// A tunnel (`-i`) server on a TAP gateway: the packet leaves encapsulated, from the tunnel
/// source to the real server, which is also its next hop (as for DR), beside a DR server.
#[test]
fn a_tunnelled_packet_goes_to_its_server_as_next_hop_beside_direct_routing() {
    let mut g = gw();
    g.set_tunnel(&["10.20.9.9".parse().unwrap()], 1500).unwrap();
    g.enable_direct_routing();
    g.apply_batch(
        T0,
        "c",
        "-A -t 10.30.0.10:80 -s rr\n-a -t 10.30.0.10:80 -r 10.20.1.2 -i\n\
         -a -t 10.30.0.10:80 -r 10.20.1.3 -g\n",
    )
    .unwrap();
    let vip: SocketAddrV4 = "10.30.0.10:80".parse().unwrap();
    let pkts: Vec<Vec<u8>> = (0..2u16)
        .map(|i| {
            syn(
                SocketAddrV4::new(Ipv4Addr::new(10, 40, 0, 2), 40000 + i),
                vip,
            )
        })
        .collect();
    let io = FakeIo::with(&pkts);
    let mut ring = PacketRing::new(4, 2048);
    ring.fill(&io).unwrap();
    g.process_ring(T0, &mut ring);
    assert_eq!(ring.flush(&io), 2);
    let out = io.outbox.borrow();
    let hops = io.hops.borrow();
    let mut seen = Vec::new();
    for (p, hop) in out.iter().zip(hops.iter()) {
        let ip = Ipv4Packet::new_checked(&p[..]).unwrap();
        match u8::from(ip.next_header()) {
            4 => {
                assert_eq!(ip.src_addr(), Ipv4Address::new(10, 20, 9, 9));
                assert_eq!(ip.dst_addr(), Ipv4Address::new(10, 20, 1, 2));
                assert_eq!(*hop, "10.20.1.2".parse::<IpAddr>().unwrap());
                assert_eq!(
                    &p[20..],
                    &pkts[seen.len()][..],
                    "the inner packet as it came"
                );
                seen.push("tunnel");
            }
            6 => {
                assert_eq!(ip.dst_addr(), Ipv4Address::new(10, 30, 0, 10));
                assert_eq!(*hop, "10.20.1.3".parse::<IpAddr>().unwrap());
                seen.push("dr");
            }
            other => panic!("protocol {other}"),
        }
    }
    seen.sort();
    assert_eq!(seen, ["dr", "tunnel"]);
}

/// Tunnelled packets and the path MTU answers are counted where an operator looks: in
/// `--stats-gateway` and in the metrics.
#[test]
fn tunnelled_packets_and_too_big_answers_are_in_stats_and_metrics() {
    use lb_testkit::pkt;
    let mut g = gw();
    g.set_tunnel(&["10.20.9.9".parse().unwrap()], 1500).unwrap();
    g.apply_batch(
        T0,
        "c",
        "-A -t 10.30.0.10:80 -s rr\n-a -t 10.30.0.10:80 -r 10.20.1.2 -i\n",
    )
    .unwrap();
    let (client, vip) = (
        "10.40.0.2:40000".parse().unwrap(),
        "10.30.0.10:80".parse().unwrap(),
    );
    let mut buf = pkt::segment(client, vip, pkt::SYN, 1000, 0, &[]);
    let len = buf.len();
    buf.resize(2048, 0);
    assert!(matches!(
        g.lb.process(T0, &mut buf, len),
        Verdict::ToServer(_)
    ));
    // 1,500 bytes with DF: 1,520 once in IPIP, over the path MTU of 1,500.
    let mut buf = pkt::segment(client, vip, pkt::ACK, 1001, 1, &[7; 1460]);
    let len = buf.len();
    buf.resize(2048, 0);
    assert!(matches!(g.lb.process(T0, &mut buf, len), Verdict::Reply(_)));
    let stats = ok(&mut g, "--stats-gateway");
    for want in ["\ntunnelled 1\n", "\ntoo_big_replies 1\n", "\nreplies 1\n"] {
        assert!(stats.contains(want), "missing {want:?} in\n{stats}");
    }
    let text = crate::prom::format(g.balancer(), &RingStats::default(), g.stats(), 5);
    for want in [
        "# TYPE lbtun_tunnelled_total counter\nlbtun_tunnelled_total 1\n",
        "# TYPE lbtun_too_big_replies_total counter\nlbtun_too_big_replies_total 1\n",
    ] {
        assert!(text.contains(want), "missing {want:?} in\n{text}");
    }
}

/// Two packet threads share the gateway as lb-tun's queues do (`--queues 2`): a connection
/// whose SYN and ACK arrive on one queue and whose SYN-ACK arrives on the other is rewritten
/// both ways, and wrr's split over connections spread across both queues is IPVS's exact one
/// (one scheduler, not one per queue).
#[test]
fn queues_share_one_balancer_replies_on_the_other_queue_and_wrr_stays_exact() {
    use lb_testkit::pkt::{dst_of, src_of, tcp, ACK, SYN};
    use std::net::SocketAddr;
    use std::sync::{Arc, Barrier, Mutex};

    let mut g = gw();
    g.apply_batch(T0, "c", CONF).unwrap();
    let g = Arc::new(Mutex::new(g));
    let vip: SocketAddr = "10.30.0.10:80".parse().unwrap();
    let client = |i: u16| SocketAddr::from(([10, 40, 0, 2], 20000 + i));
    /// Runs `pkts` through the shared gateway as one queue's burst; what it writes back.
    fn burst(g: &Mutex<Gateway>, pkts: &[Vec<u8>]) -> Vec<Vec<u8>> {
        let io = FakeIo::with(pkts);
        let mut ring = PacketRing::new(64, 2048);
        ring.fill(&io).unwrap();
        g.lock().unwrap().process_ring(T0, &mut ring);
        ring.flush(&io);
        io.outbox.take()
    }
    // The SYNs, half on each queue, from two threads at once.
    let start = Arc::new(Barrier::new(2));
    let syn_out: Vec<Vec<Vec<u8>>> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..2u16)
            .map(|q| {
                let (g, start) = (Arc::clone(&g), Arc::clone(&start));
                s.spawn(move || {
                    start.wait();
                    let mut out = Vec::new();
                    for b in 0..10u16 {
                        let pkts: Vec<Vec<u8>> = (0..20u16)
                            .map(|k| {
                                let i = q * 200 + b * 20 + k;
                                tcp(client(i), vip, SYN, 1000, &[], 0)
                            })
                            .collect();
                        out.extend(burst(&g, &pkts));
                    }
                    out
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let servers: Vec<SocketAddr> = syn_out.iter().flatten().filter_map(|p| dst_of(p)).collect();
    assert_eq!(servers.len(), 400, "every SYN forwarded");
    let to_s1 = servers
        .iter()
        .filter(|s| s.ip() == std::net::IpAddr::from([10, 20, 1, 2]))
        .count();
    assert_eq!(
        (to_s1, 400 - to_s1),
        (300, 100),
        "wrr 3:1 exact over both queues"
    );

    // Each server's SYN-ACK comes back on the *other* queue's ring than its SYN went out of;
    // the client's ACK on the first again.
    for (q, out) in syn_out.iter().enumerate() {
        for fwd in out {
            let (c, s) = (src_of(fwd).unwrap(), dst_of(fwd).unwrap());
            let reply = burst(&g, &[tcp(s, c, SYN | ACK, 5000, &[], 0)]);
            assert_eq!(
                reply.len(),
                1,
                "SYN-ACK of {c} (its SYN on queue {q}) forwarded"
            );
            assert_eq!(
                (src_of(&reply[0]), dst_of(&reply[0])),
                (Some(vip), Some(c)),
                "the reply leaves from the VIP"
            );
            assert!(lb_testkit::pkt::checksums_ok(&reply[0]));
            let ack = burst(&g, &[tcp(c, vip, ACK, 1001, &[], 0)]);
            assert_eq!(dst_of(&ack[0]), Some(s), "the ACK follows its connection");
        }
    }
    let listing = g
        .lock()
        .unwrap()
        .control(T0, &req("-L -n"), &RingStats::default());
    assert!(
        listing
            .text
            .contains("10.20.1.2:80                 Masq    3      300"),
        "{}",
        listing.text
    );
}

/// The partial copy of a complete TCP packet `p` over IPv4 (its checksum field holds the
/// folded pseudo-header sum, as an offloading device hands it over) and its virtio-net header.
fn partial_v4(p: &[u8], gso_size: u16) -> (Vec<u8>, [u8; VNET_HDR_LEN]) {
    use crate::offload::VnetHdr;
    use lb_testkit::pkt;
    let l4 = usize::from(p[0] & 0x0f) * 4;
    let len = (p.len() - l4) as u64;
    let s = pkt::sum(pkt::sum(0, &p[12..16]), &p[16..20]) + u64::from(p[9]) + len;
    let mut q = p.to_vec();
    q[l4 + 16..l4 + 18].copy_from_slice(&pkt::fold(s).to_be_bytes());
    let hdr = VnetHdr {
        flags: VnetHdr::F_NEEDS_CSUM,
        gso_type: if gso_size > 0 { VnetHdr::GSO_TCPV4 } else { 0 },
        hdr_len: (l4 + 20) as u16,
        gso_size,
        csum_start: l4 as u16,
        csum_offset: 16,
    };
    (q, hdr.to_bytes())
}

/// What an offloading device does with a packet written with header `h`: finishes its
/// checksum (a GSO packet is cut by `offload::segment`, which finishes each segment's).
fn device_finish(pkt: &[u8], h: &[u8; VNET_HDR_LEN]) -> Vec<Vec<u8>> {
    use crate::offload::{complete_checksum, segment, VnetHdr};
    let hdr = VnetHdr::parse(h).unwrap();
    if hdr.is_gso() {
        let mut out = vec![0; 4096];
        let mut segs = Vec::new();
        segment(pkt, &hdr, &mut out, |s| segs.push(s.to_vec())).unwrap();
        return segs;
    }
    let mut p = pkt.to_vec();
    complete_checksum(&mut p, &hdr).unwrap();
    vec![p]
}

/// Offloads: a partial SYN and a 64 KB partial TCP segment are NAT-rewritten once and leave
/// with their virtio-net header, so the device's finished packets are exactly what a
/// complete packet's rewrite gives; the same segment to a tunnel server is cut into packets
/// first, each a whole inner packet with a valid checksum inside its outer header.
#[test]
fn offloaded_segments_keep_their_partial_checksum_or_are_cut_for_a_tunnel() {
    use lb_testkit::pkt::{self, checksums_ok, dst_of, Tcp, ACK, SYN};
    use std::net::SocketAddr;
    let mut g = gw();
    g.apply_batch(
        T0,
        "c",
        "-A -t 10.30.0.10:80 -s rr\n-a -t 10.30.0.10:80 -r 10.20.1.2:8080 -m\n",
    )
    .unwrap();
    let client: SocketAddr = "10.40.0.2:40000".parse().unwrap();
    let vip: SocketAddr = "10.30.0.10:80".parse().unwrap();
    let run = |g: &mut Gateway, pkts: &[(Vec<u8>, [u8; VNET_HDR_LEN])]| {
        let io = FakeIo::default();
        for (p, h) in pkts {
            io.inbox.borrow_mut().push_back(p.clone());
            io.inbox_vnet.borrow_mut().push_back(*h);
        }
        let mut ring = PacketRing::new(8, 70 * 1024);
        ring.fill(&io).unwrap();
        g.process_ring(T0, &mut ring);
        ring.flush(&io);
        (io.outbox.take(), io.outbox_vnet.take())
    };
    let syn = Tcp::new(client, vip, SYN).seq(100).build();
    let data: Vec<u8> = (0..60_000u32).map(|i| (i * 13 + i / 255) as u8).collect();
    let seg = Tcp::new(client, vip, ACK).seq(101).payload(&data).build();
    // The complete packets' rewrite, on a twin gateway: what the device must end up with.
    let mut twin = gw();
    twin.apply_batch(
        T0,
        "c",
        "-A -t 10.30.0.10:80 -s rr\n-a -t 10.30.0.10:80 -r 10.20.1.2:8080 -m\n",
    )
    .unwrap();
    let (want, _) = run(
        &mut twin,
        &[
            (syn.clone(), [0; VNET_HDR_LEN]),
            (seg.clone(), [0; VNET_HDR_LEN]),
        ],
    );
    assert_eq!(want.len(), 2);
    assert!(want.iter().all(|p| checksums_ok(p)));

    let (out, hdrs) = run(&mut g, &[partial_v4(&syn, 0), partial_v4(&seg, 1448)]);
    assert_eq!(out.len(), 2, "both forwarded whole");
    assert_eq!(dst_of(&out[1]), Some("10.20.1.2:8080".parse().unwrap()));
    assert_ne!(hdrs[1], [0; VNET_HDR_LEN], "the segment keeps its header");
    assert_eq!(
        device_finish(&out[0], &hdrs[0]),
        vec![want[0].clone()],
        "the SYN, finished"
    );
    let cut = device_finish(&out[1], &hdrs[1]);
    assert_eq!(cut.len(), 42, "60,000 bytes in 1,448-byte segments");
    let mut twin_cut = Vec::new();
    let whole = crate::offload::VnetHdr {
        gso_type: crate::offload::VnetHdr::GSO_TCPV4,
        gso_size: 1448,
        ..crate::offload::VnetHdr::NONE
    };
    crate::offload::segment(&want[1], &whole, &mut vec![0; 4096], |s| {
        twin_cut.push(s.to_vec())
    })
    .unwrap();
    assert_eq!(
        cut, twin_cut,
        "the device's segments are the complete packet's, cut"
    );
    assert_eq!(g.stats().segmented, 0);

    // A tunnel server: the segment is cut here, every piece tunnelled whole.
    let mut g = gw();
    g.set_tunnel(&["10.99.0.1".parse().unwrap()], 1500).unwrap();
    g.apply_batch(
        T0,
        "c",
        "-A -t 10.30.0.10:80 -s rr\n-a -t 10.30.0.10:80 -r 10.20.1.2 -i\n",
    )
    .unwrap();
    // Segments of 1,400 bytes: 1,440-byte packets fit the path's 1,500 in IPIP (1,448 would
    // not: lb-core would answer "fragmentation needed", as the kernel does).
    let (out, hdrs) = run(&mut g, &[partial_v4(&syn, 0), partial_v4(&seg, 1400)]);
    assert_eq!(
        out.len(),
        1 + 43,
        "the SYN and 43 pieces: {}",
        g.stats_gateway(&RingStats::default())
            .lines()
            .filter(|l| !l.ends_with(" 0"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    assert!(
        hdrs.iter().all(|h| *h == [0; VNET_HDR_LEN]),
        "tunnelled packets leave whole"
    );
    assert_eq!((g.stats().segmented, g.stats().segments), (1, 43));
    let mut payload = Vec::new();
    for o in &out {
        assert_eq!(o[9], 4, "IPIP");
        assert!(o.len() <= 1500, "{} bytes", o.len());
        let inner = &o[20..];
        assert!(checksums_ok(inner), "inner checksums");
        let (_, l4, _, _) = pkt::split(inner).unwrap();
        payload.extend_from_slice(&l4[20..]);
    }
    assert_eq!(payload, data, "every byte, in order");
}

/// Steering's tags: a connection's packet to its real server and the server's reply carry the
/// client's bucket (the forward packet's source, the reply's destination), the reply marked
/// as one; a packet the balancer only passes carries none, and without a key nothing is tagged.
#[test]
fn forwarded_packets_carry_their_clients_steering_bucket() {
    use lb_testkit::pkt::{dst_of, src_of, tcp, udp, ACK, SYN};
    use std::net::SocketAddr;

    let key = 0xfeed;
    let vip: SocketAddr = "10.30.0.10:80".parse().unwrap();
    let client: SocketAddr = "10.40.0.2:41234".parse().unwrap();
    let tags = |g: &mut Gateway, pkts: &[Vec<u8>]| {
        let io = FakeIo::with(pkts);
        let mut ring = PacketRing::new(8, 2048);
        ring.fill(&io).unwrap();
        g.process_ring(T0, &mut ring);
        let tags: Vec<Option<SteerTag>> = ring.slots_mut().map(|s| *s.steer).collect();
        ring.flush(&io);
        (tags, io.outbox.take())
    };
    let mut g = gw();
    g.apply_batch(T0, "c", CONF).unwrap();
    let (none, _) = tags(&mut g, &[tcp(client, vip, SYN, 1, &[], 0)]);
    assert_eq!(none, [None], "no key, no tags");

    g.set_steer_key(key);
    let (t, out) = tags(&mut g, &[tcp(client, vip, SYN, 1, &[], 0)]);
    let bucket = crate::steer::client_buckets(key, &tcp(client, vip, SYN, 1, &[], 0))
        .unwrap()
        .0;
    assert_eq!(
        t,
        [Some(SteerTag {
            bucket,
            reply: false
        })]
    );
    let server = dst_of(&out[0]).unwrap();
    assert_eq!(src_of(&out[0]), Some(client));
    let (t, _) = tags(&mut g, &[tcp(server, client, SYN | ACK, 9, &[], 2)]);
    assert_eq!(
        t,
        [Some(SteerTag {
            bucket,
            reply: true
        })]
    );
    // Not to a service, not from a server: passed, untagged.
    let other: SocketAddr = "10.50.0.1:53".parse().unwrap();
    let (t, out) = tags(&mut g, &[udp(client, other, b"x")]);
    assert_eq!((t, out.len()), (vec![None], 1));
}
