//! The sync daemons (issue "Failover without dropped connections", item 3): what the master
//! sends and when (IPVS's `ip_vs_sync_conn_needed`), how it packs messages, and a backup that
//! takes them over so the flows continue there.

use core::net::SocketAddr;

use std::vec;
use std::vec::Vec;

use super::*;
use crate::config::{ForwardMethod, Persistence, SchedulerKind, ServerConfig, ServiceConfig};
use crate::ipvsadm::Command;
use crate::sync::daemon::{DaemonConfig, IfName, SyncRole};
use crate::sync::wire::{flags, Message, Record, WireError};
use crate::tcp::flags::{ACK, FIN, SYN};
use crate::verdict::Verdict;
use lb_testkit::pkt;

use super::test_support::{empty_balancer, ms, sa};

const VIP: &str = "10.0.0.100:80";
const PVIP: &str = "10.0.0.100:443";

fn daemon(role: SyncRole, syncid: u8) -> Command {
    let mut d = DaemonConfig::new(role, IfName::new("sync0").unwrap());
    d.syncid = syncid;
    Command::StartDaemon(d)
}

/// wrr 3:2:1 (not a consistent hash: only sync can carry a flow's server) and a persistent
/// service.
fn configured() -> Balancer<'static> {
    let mut b = empty_balancer(256, Settings::default());
    let tcp = ServiceKey::tcp(sa(VIP));
    let mut cfg = ServiceConfig::new(tcp);
    cfg.scheduler = SchedulerKind::Wrr;
    b.apply(Instant::ZERO, &Command::AddService(cfg)).unwrap();
    for (rs, w) in [("10.1.0.1:80", 3), ("10.1.0.2:80", 2), ("10.1.0.3:80", 1)] {
        let mut s = ServerConfig::new(sa(rs), ForwardMethod::Masq);
        s.weight = w;
        b.apply(Instant::ZERO, &Command::AddServer(tcp, s)).unwrap();
    }
    let p = ServiceKey::tcp(sa(PVIP));
    let mut cfg = ServiceConfig::new(p);
    cfg.persistence = Some(Persistence {
        timeout_secs: 300,
        prefix: 32,
    });
    b.apply(Instant::ZERO, &Command::AddService(cfg)).unwrap();
    for rs in ["10.1.0.1:443", "10.1.0.2:443"] {
        let s = ServerConfig::new(sa(rs), ForwardMethod::Masq);
        b.apply(Instant::ZERO, &Command::AddServer(p, s)).unwrap();
    }
    b
}

fn send(b: &mut Balancer<'_>, now: Instant, mut p: Vec<u8>) -> Verdict {
    let len = p.len();
    p.resize(2048, 0);
    b.process(now, &mut p, len)
}

/// Client → VIP segment; returns the real server it went to.
fn to_server(b: &mut Balancer<'_>, now: Instant, c: SocketAddr, vip: &str, fl: u8) -> SocketAddr {
    let mut p = pkt::segment(c, sa(vip), fl, 1, 1, &[]);
    let len = p.len();
    p.resize(2048, 0);
    let v = b.process(now, &mut p, len);
    assert!(matches!(v, Verdict::ToServer(_)), "{v:?}");
    pkt::dst_of(&p[..len]).unwrap()
}

/// Opens a connection: SYN, the server's SYN-ACK, the client's ACK and its request (3 client
/// packets).
fn open(b: &mut Balancer<'_>, now: Instant, c: SocketAddr, vip: &str) -> SocketAddr {
    let rs = to_server(b, now, c, vip, SYN);
    let v = send(b, now, pkt::segment(rs, c, SYN | ACK, 7, 2, &[]));
    assert!(matches!(v, Verdict::ToClient(_)), "{v:?}");
    to_server(b, now, c, vip, ACK);
    to_server(b, now, c, vip, ACK);
    rs
}

/// Every message the master has due at `now`, decoded.
fn drain(b: &mut Balancer<'_>, now: Instant) -> Vec<Vec<Record>> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 1472];
    while let Some(n) = b.poll_sync(now, &mut buf) {
        let m = Message::parse(&buf[..n], None).unwrap();
        out.push(m.records().map(Result::unwrap).collect());
    }
    out
}

#[test]
fn the_master_sends_what_the_kernel_sends_when_the_kernel_sends_it() {
    let mut a = configured();
    a.apply(Instant::ZERO, &daemon(SyncRole::Master, 7))
        .unwrap();
    let c = sa("192.0.2.1:40000");
    let t = ms(1_000);
    open(&mut a, t, c, VIP);
    // Three client packets and ESTABLISHED: queued at the third (in_pkts 3 % 50 == 3).
    assert_eq!(a.sync_stats().queued, 1);
    // Not a full message and not 2 s old: nothing yet; the flush is a timer.
    assert!(drain(&mut a, ms(2_999)).is_empty());
    assert_eq!(a.sync.next_flush(), Some(ms(3_000)));
    a.handle_timeout(ms(2_999));
    assert!(a.poll_timeout().is_some_and(|t| t <= ms(3_000)));
    let msgs = drain(&mut a, ms(3_000));
    assert_eq!(msgs.len(), 1);
    let r = msgs[0][0];
    assert_eq!((r.client, r.vaddr, r.protocol, r.state), (c, sa(VIP), 6, 1));
    assert_eq!(
        (r.timeout_secs, r.flags),
        (900, 0),
        "ESTABLISHED, active, NAT"
    );
    // Packets 4..=52: nothing; the 53rd: again.
    let t = ms(4_000);
    for _ in 4..=52 {
        to_server(&mut a, t, c, VIP, ACK);
    }
    assert_eq!(a.sync_stats().queued, 1);
    to_server(&mut a, t, c, VIP, ACK);
    assert_eq!(a.sync_stats().queued, 2);
    assert_eq!(drain(&mut a, ms(6_000)).concat().len(), 1);
    // A change into CLOSE_WAIT (the client's FIN, NAT) goes at once, whatever the count.
    to_server(&mut a, ms(7_000), c, VIP, FIN | ACK);
    assert_eq!(a.sync_stats().queued, 3);
    let r = drain(&mut a, ms(9_000)).concat()[0];
    assert_eq!((r.state, r.timeout_secs), (7, 60), "CLOSE_WAIT");
    assert_eq!(
        r.flags & flags::INACTIVE,
        flags::INACTIVE,
        "CLOSE_WAIT is not active"
    );
    assert_eq!(a.sync.next_flush(), None, "nothing queued: no sync timer");
}

#[test]
fn a_short_connection_is_sent_when_it_closes_and_udp_at_its_third_packet() {
    let mut a = configured();
    a.apply(Instant::ZERO, &daemon(SyncRole::Master, 0))
        .unwrap();
    let t = ms(0);
    // SYN only (SYN_RECV): never sent.
    to_server(&mut a, t, sa("192.0.2.9:1000"), VIP, SYN);
    assert_eq!(a.sync_stats().queued, 0);
    let udp = ServiceKey::udp(sa("10.0.0.100:53"));
    a.apply(t, &Command::AddService(ServiceConfig::new(udp)))
        .unwrap();
    a.apply(
        t,
        &Command::AddServer(
            udp,
            ServerConfig::new(sa("10.1.0.9:53"), ForwardMethod::Masq),
        ),
    )
    .unwrap();
    let c = sa("192.0.2.5:5353");
    for i in 1..=3 {
        let v = send(&mut a, t, pkt::udp(c, sa("10.0.0.100:53"), b"q"));
        assert!(matches!(v, Verdict::ToServer(_)));
        assert_eq!(a.sync_stats().queued, u64::from(i == 3), "packet {i}");
    }
}

#[test]
fn a_template_is_sent_with_every_packet_of_its_connections() {
    let mut a = configured();
    a.apply(Instant::ZERO, &daemon(SyncRole::Master, 0))
        .unwrap();
    let t = ms(0);
    let c = sa("192.0.2.1:40000");
    open(&mut a, t, c, PVIP);
    // SYN (template), ACK (template again: not queued twice in a row), request (connection at
    // its third packet, then the template).
    let msgs = drain(&mut a, ms(2_000));
    let kinds: Vec<bool> = msgs.concat().iter().map(Record::is_template).collect();
    assert_eq!(kinds, [true, false, true]);
    let tpl = msgs[0][0];
    assert_eq!(
        (tpl.client.port(), tpl.vaddr, tpl.timeout_secs),
        (0, sa(PVIP), 300)
    );
    assert_eq!(tpl.flags, flags::TEMPLATE | flags::INACTIVE);
}

#[test]
fn messages_are_packed_up_to_the_max_length() {
    let mut a = configured();
    a.apply(Instant::ZERO, &daemon(SyncRole::Master, 0))
        .unwrap();
    let t = ms(0);
    for i in 0..100u16 {
        open(
            &mut a,
            t,
            SocketAddr::new([192, 0, 2, 1].into(), 20000 + i),
            VIP,
        );
    }
    // 40 IPv4 records fill 1,448 of 1,472 bytes: two full messages go at once, the rest waits.
    let full = drain(&mut a, t);
    assert_eq!(full.iter().map(Vec::len).collect::<Vec<_>>(), [40, 40]);
    let rest = drain(&mut a, t + SYNC_FLUSH);
    assert_eq!(rest.iter().map(Vec::len).collect::<Vec<_>>(), [20]);
    assert_eq!(a.sync_stats().records_sent, 100);
}

#[test]
fn a_backup_takes_the_flows_and_forwards_them_to_the_same_servers() {
    let mut a = configured();
    a.apply(Instant::ZERO, &daemon(SyncRole::Master, 7))
        .unwrap();
    let mut b = configured();
    b.apply(Instant::ZERO, &daemon(SyncRole::Backup, 7))
        .unwrap();
    let t = ms(1_000);
    // wrr over 3:2:1: six clients spread over all three servers on A.
    let flows: Vec<_> = (0..6u16)
        .map(|i| {
            let c = SocketAddr::new([192, 0, 2, 10].into(), 30000 + i);
            (c, open(&mut a, t, c, VIP))
        })
        .collect();
    // B has seen nothing of them; its own wrr would order the servers its own way.
    for m in drain(&mut a, t + SYNC_FLUSH) {
        let mut buf = vec![0u8; 1472];
        let mut w = crate::sync::wire::MessageWriter::new(&mut buf, 7).unwrap();
        for r in &m {
            assert!(w.push(r));
        }
        let r = b.receive_sync(t, w.finish()).unwrap();
        assert_eq!((r.applied, r.dropped), (m.len() as u32, 0));
    }
    assert_eq!(b.connection_count(), 6);
    assert_eq!(b.sync_stats().created, 6);
    // The VIP moves: each flow's next packet, through B, reaches its server.
    let t2 = ms(5_000);
    for (c, rs) in &flows {
        assert_eq!(to_server(&mut b, t2, *c, VIP, ACK), *rs);
    }
    // And B counts them active, as A does.
    let active = |x: &Balancer<'_>| -> Vec<u32> {
        let id = x.director().service_id(&ServiceKey::tcp(sa(VIP))).unwrap();
        let d = x.director().servers(id);
        d.order
            .iter()
            .map(|&s| d.servers[usize::from(s)].active)
            .collect()
    };
    assert_eq!(active(&b), active(&a));
}

#[test]
fn a_backup_refuses_what_is_not_for_it() {
    let mut a = configured();
    a.apply(Instant::ZERO, &daemon(SyncRole::Master, 7))
        .unwrap();
    open(&mut a, ms(0), sa("192.0.2.1:1"), VIP);
    let mut buf = vec![0u8; 1472];
    let n = a.poll_sync(ms(2_000), &mut buf).unwrap();
    let msg = buf[..n].to_vec();
    let mut b = configured();
    assert_eq!(b.receive_sync(ms(0), &msg), Err(WireError::NoBackup));
    b.apply(Instant::ZERO, &daemon(SyncRole::Backup, 8))
        .unwrap();
    assert_eq!(
        b.receive_sync(ms(0), &msg),
        Err(WireError::SyncId { got: 7 })
    );
    assert_eq!(
        b.receive_sync(ms(0), &msg[..n - 1]),
        Err(WireError::Size {
            header: n,
            datagram: n - 1
        })
    );
    assert_eq!(b.sync_stats().messages_refused, 3);
    assert_eq!(b.connection_count(), 0);
    // A backup with syncid 0 takes any.
    b.apply(Instant::ZERO, &daemon(SyncRole::Backup, 0))
        .unwrap();
    assert_eq!(b.receive_sync(ms(0), &msg).unwrap().applied, 1);
    // Stopping the master empties its queue and its timer.
    a.apply(ms(0), &Command::StopDaemon(SyncRole::Master))
        .unwrap();
    assert!(a.sync_daemon(SyncRole::Master).is_none());
}

#[test]
fn version_0_messages_are_sent_and_read() {
    let mut a = configured();
    a.apply(Instant::ZERO, &daemon(SyncRole::Master, 3))
        .unwrap();
    a.apply_line(Instant::ZERO, "--sync-version 0").unwrap();
    let c = sa("192.0.2.1:40000");
    let rs = open(&mut a, ms(0), c, VIP);
    let mut buf = vec![0u8; 1472];
    let n = a.poll_sync(ms(2_000), &mut buf).unwrap();
    assert_eq!(n, 4 + 24);
    assert_eq!(&buf[..4], &[1, 3, 0, 28], "count, syncid, size");
    let mut b = configured();
    b.apply(Instant::ZERO, &daemon(SyncRole::Backup, 3))
        .unwrap();
    assert_eq!(b.receive_sync(ms(0), &buf[..n]).unwrap().applied, 1);
    assert_eq!(to_server(&mut b, ms(1), c, VIP, ACK), rs);
    // Version 0 has no timeout: the backup uses its own table (ESTABLISHED, 900 s).
    let info = b.connections(ms(1)).next().unwrap();
    assert!(
        (899_000..=900_100).contains(&info.expires_in.millis()),
        "{info:?}"
    );
}

#[test]
fn sync_settings_apply_in_either_order() {
    let mut a = configured();
    a.apply(Instant::ZERO, &daemon(SyncRole::Master, 0))
        .unwrap();
    // A threshold at or above the period: the packet rule never fires (IPVS refuses the pair).
    a.apply_line(Instant::ZERO, "--sync-threshold 10").unwrap();
    a.apply_line(Instant::ZERO, "--sync-period 5").unwrap();
    assert_eq!(
        (a.settings().sync_threshold, a.settings().sync_period),
        (10, 5)
    );
    let c = sa("192.0.2.1:40000");
    open(&mut a, ms(0), c, VIP);
    for _ in 0..20 {
        to_server(&mut a, ms(0), c, VIP, ACK);
    }
    assert_eq!(a.sync_stats().queued, 0);
    // Period 0: once, at the threshold.
    a.apply_line(Instant::ZERO, "--sync-period 0").unwrap();
    a.apply_line(Instant::ZERO, "--sync-threshold 3").unwrap();
    open(&mut a, ms(0), sa("192.0.2.2:1"), VIP);
    assert_eq!(a.sync_stats().queued, 1);
}
