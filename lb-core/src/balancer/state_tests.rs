//! The table snapshot (issue "Failover without dropped connections", item 1) and the sync
//! records it is made of: byte vectors written out field by field from the kernel's struct
//! layout, version 0, every malformed field, and export → import across a "restart".

use core::net::SocketAddr;

use std::vec;
use std::vec::Vec;

use super::*;
use crate::config::{ForwardMethod, Persistence, SchedulerKind, ServerConfig, ServiceConfig};
use crate::ipvsadm::Command;
use crate::sync::snapshot::{self, SnapshotError, CHUNK_MIN};
use crate::sync::wire::{
    flags, LbTimer, Message, MessageWriter, Record, RecordError, SkipReason, Version, WireError,
    WireFault,
};
use crate::tcp::flags::{ACK, SYN};
use crate::verdict::Verdict;
use lb_testkit::pkt;

use super::test_support::{empty_balancer, ms, sa};

fn hex(s: &str) -> Vec<u8> {
    let s: Vec<u8> = s.bytes().filter(u8::is_ascii_hexdigit).collect();
    s.chunks(2)
        .map(|c| u8::from_str_radix(core::str::from_utf8(c).unwrap(), 16).unwrap())
        .collect()
}

/// Worked example (i): IPv4 TCP NAT, ESTABLISHED, timeout 900, syncid 7.
fn record_v4_tcp() -> Record {
    Record {
        protocol: 6,
        flags: 0,
        state: 1,
        client: sa("10.0.0.1:40000"),
        vaddr: sa("10.30.0.10:80"),
        daddr: sa("10.20.1.2:80"),
        fwmark: 0,
        timeout_secs: 900,
        lb_timer: None,
    }
}

/// Worked example (ii): IPv6 UDP direct routing, timeout 300, syncid 7.
fn record_v6_udp() -> Record {
    Record {
        protocol: 17,
        flags: flags::DROUTE | flags::NOOUTPUT | flags::INACTIVE,
        state: 0,
        client: sa("[2001:db8:1::10]:53000"),
        vaddr: sa("[2001:db8:30::53]:53"),
        daddr: sa("[2001:db8:20::2]:53"),
        fwmark: 0,
        timeout_secs: 300,
        lb_timer: None,
    }
}

fn message(syncid: u8, records: &[Record]) -> Vec<u8> {
    let mut buf = vec![0u8; 1472];
    let mut w = MessageWriter::new(&mut buf, syncid).unwrap();
    for r in records {
        assert!(w.push(r));
    }
    w.finish().to_vec()
}

#[test]
fn ipv4_tcp_record_is_the_kernels_struct_byte_for_byte() {
    let expected = hex(concat!(
        // struct ip_vs_sync_mesg (8 bytes)
        "00",   // reserved: 0 in v1
        "07",   // syncid 7
        "002c", // size: 8 + 36 = 44
        "01",   // nr_conns
        "01",   // version 1
        "0000", // spare
        // struct ip_vs_sync_v4 (36 bytes)
        "00",       // type: IPv4
        "06",       // protocol: TCP
        "0024",     // ver_size: version 0, length 36
        "00000000", // flags: MASQ, established (INACTIVE clear)
        "0001",     // state: ESTABLISHED
        "9c40",     // cport 40000
        "0050",     // vport 80
        "0050",     // dport 80
        "00000000", // fwmark
        "00000384", // timeout 900 s
        "0a000001", // caddr 10.0.0.1
        "0a1e000a", // vaddr 10.30.0.10
        "0a140102", // daddr 10.20.1.2
    ));
    assert_eq!(message(7, &[record_v4_tcp()]), expected);
    let m = Message::parse(&expected, Some(7)).unwrap();
    assert_eq!((m.version, m.count()), (Version::V1, 1));
    let got: Vec<_> = m.records().collect();
    assert_eq!(got, vec![Ok(record_v4_tcp())]);
}

#[test]
fn ipv6_udp_record_is_the_kernels_struct_byte_for_byte() {
    let expected = hex(concat!(
        "00 07 0050 01 01 0000",            // header: size 8 + 72 = 80
        "01",                               // type: bit 0 = IPv6
        "11",                               // protocol: UDP
        "0048",                             // ver_size: length 72
        "00000183",                         // flags: DROUTE | NOOUTPUT | INACTIVE
        "0000",                             // state: UDP's one state
        "cf08",                             // cport 53000
        "0035",                             // vport 53
        "0035",                             // dport 53
        "00000000",                         // fwmark
        "0000012c",                         // timeout 300 s
        "20010db8000100000000000000000010", // caddr
        "20010db8003000000000000000000053", // vaddr
        "20010db8002000000000000000000002", // daddr
    ));
    assert_eq!(message(7, &[record_v6_udp()]), expected);
    let got: Vec<_> = Message::parse(&expected, None).unwrap().records().collect();
    assert_eq!(got, vec![Ok(record_v6_udp())]);
}

#[test]
fn records_are_padded_in_front_and_the_last_is_not() {
    let mut timed = record_v4_tcp();
    timed.lb_timer = Some(LbTimer {
        timeout_ms: 900_000,
        left_ms: 12_345,
    });
    // 8 + 54 (36 + lb option 18) = 62, two zero bytes, then 36: size 100.
    let m = message(1, &[timed, record_v4_tcp()]);
    assert_eq!(m.len(), 100);
    assert_eq!(&m[2..4], &[0, 100]);
    assert_eq!(&m[62..64], &[0, 0]);
    assert_eq!(
        &m[44..46],
        &[0x60, 16],
        "lb's option: type 0x60 (optional bit), length 16"
    );
    let got: Vec<_> = Message::parse(&m, Some(1)).unwrap().records().collect();
    assert_eq!(got, vec![Ok(timed), Ok(record_v4_tcp())]);
}

#[test]
fn a_message_stops_at_its_max_length_and_at_255_records() {
    let mut buf = vec![0u8; 1472];
    let mut w = MessageWriter::new(&mut buf, 0).unwrap();
    let mut n = 0;
    while w.push(&record_v4_tcp()) {
        n += 1;
    }
    assert_eq!(n, 40, "8 + 40 × 36 = 1,448 of 1,472 bytes");
    let mut big = vec![0u8; 20_000];
    let mut w = MessageWriter::new(&mut big, 0).unwrap();
    let mut n = 0;
    while w.push(&record_v4_tcp()) {
        n += 1;
    }
    assert_eq!(n, 255, "the count is one byte");
}

#[test]
fn version_0_is_read() {
    let v0 = hex(concat!(
        "01 07 001c",     // nr_conns 1, syncid 7, size 4 + 24 = 28
        "00 06",          // reserved, protocol TCP
        "9c40 0050 0050", // cport, vport, dport
        "0a000001 0a1e000a 0a140102",
        "0000", // flags
        "0001", // state ESTABLISHED
    ));
    let m = Message::parse(&v0, Some(7)).unwrap();
    assert_eq!(m.version, Version::V0);
    let mut expected = record_v4_tcp();
    expected.timeout_secs = 0;
    assert_eq!(m.records().collect::<Vec<_>>(), vec![Ok(expected)]);
}

#[test]
fn every_malformed_header_field_is_refused() {
    let good = message(7, &[record_v4_tcp()]);
    assert_eq!(
        Message::parse(&good[..3], None).unwrap_err(),
        WireError::Truncated
    );
    assert_eq!(
        Message::parse(&good[..40], None).unwrap_err(),
        WireError::Size {
            header: 44,
            datagram: 40
        }
    );
    assert_eq!(
        Message::parse(&good, Some(8)).unwrap_err(),
        WireError::SyncId { got: 7 }
    );
    assert!(
        Message::parse(&good, Some(0)).is_ok(),
        "syncid 0 accepts all"
    );
}

/// Each record fault of the kernel backup's two classes, one mutation at a time.
#[test]
fn every_malformed_record_field_is_refused() {
    let good = message(7, &[record_v4_tcp()]);
    let first = |m: &[u8]| Message::parse(m, None).unwrap().records().next().unwrap();
    let with = |at: usize, bytes: &[u8]| {
        let mut m = good.clone();
        m[at..at + bytes.len()].copy_from_slice(bytes);
        m
    };
    let fatal = |f| Err(RecordError::Fatal(f));
    let skip = |s| Err(RecordError::Skip(s, 36));
    assert_eq!(first(&with(8, &[2])), fatal(WireFault::RecordType));
    assert_eq!(
        first(&with(10, &[0x10, 0x24])),
        fatal(WireFault::RecordVersion)
    );
    assert_eq!(
        first(&with(10, &[0x00, 0x30])),
        fatal(WireFault::RecordLength)
    );
    assert_eq!(
        first(&with(10, &[0x00, 0x20])),
        fatal(WireFault::RecordLength)
    );
    assert_eq!(first(&with(9, &[1])), skip(SkipReason::Protocol));
    assert_eq!(first(&with(16, &[0, 11])), skip(SkipReason::State));
    assert_eq!(first(&with(12, &[0, 0, 0x20, 0])), skip(SkipReason::Flags));
    assert_eq!(first(&with(12, &[0, 0, 0x18, 0])), skip(SkipReason::Flags));
    // A template may only be NONE or ASSURED.
    assert_eq!(
        first(&with(12, &[0, 0, 0x10, 0]).clone()),
        Ok({
            let mut r = record_v4_tcp();
            r.flags = flags::TEMPLATE;
            r
        })
    );
    assert_eq!(
        first(&with(12, &[0, 0, 0x10, 0, 0, 2])),
        skip(SkipReason::State)
    );
    // Too few records for the count.
    let short = with(4, &[2]);
    let all: Vec<_> = Message::parse(&short, None).unwrap().records().collect();
    assert_eq!(all, vec![Ok(record_v4_tcp()), fatal(WireFault::Truncated)]);
}

#[test]
fn options_are_checked_as_the_kernel_does() {
    // A 36-byte record plus one option of `body` (ver_size counts it).
    let with_option = |body: &[u8]| {
        let mut m = message(7, &[record_v4_tcp()]);
        m.extend_from_slice(body);
        let len = m.len() as u16;
        m[2..4].copy_from_slice(&len.to_be_bytes());
        let rec = (36 + body.len()) as u16;
        m[10..12].copy_from_slice(&rec.to_be_bytes());
        m
    };
    let first = |m: &[u8]| Message::parse(m, None).unwrap().records().next().unwrap();
    let n = |body: &[u8]| 36 + body.len();
    // Unknown optional option: skipped, record kept.
    assert_eq!(first(&with_option(&[0x45, 2, 9, 9])), Ok(record_v4_tcp()));
    // Unknown mandatory option: this record refused.
    let b = [0x05, 2, 9, 9];
    assert_eq!(
        first(&with_option(&b)),
        Err(RecordError::Skip(SkipReason::UnknownOption, n(&b)))
    );
    // Persistence-engine data: refused (no engines here).
    let b = [0x02, 3, 1, 2, 3, 0x03, 3, b's', b'i', b'p'];
    assert_eq!(
        first(&with_option(&b)),
        Err(RecordError::Skip(SkipReason::PersistenceEngine, n(&b)))
    );
    // SEQ data of the wrong length, a zero length, a truncated header, a known option twice.
    let fatal = |f| Err(RecordError::Fatal(f));
    assert_eq!(
        first(&with_option(&[0x01, 2, 0, 0])),
        fatal(WireFault::OptionLength)
    );
    assert_eq!(
        first(&with_option(&[0x45, 0])),
        fatal(WireFault::OptionLength)
    );
    assert_eq!(
        first(&with_option(&[0x45])),
        fatal(WireFault::OptionTruncated)
    );
    let mut twice = vec![0x01, 24];
    twice.extend_from_slice(&[0; 24]);
    twice.extend_from_slice(&[0x01, 24]);
    twice.extend_from_slice(&[0; 24]);
    assert_eq!(first(&with_option(&twice)), fatal(WireFault::OptionTwice));
    // SEQ data of the right length is read and ignored.
    let mut seq = vec![0x01, 24];
    seq.extend_from_slice(&[0; 24]);
    assert_eq!(first(&with_option(&seq)), Ok(record_v4_tcp()));
}

// ---- The snapshot across a restart ----

const VIP: &str = "10.0.0.100:80";
const PVIP: &str = "10.0.0.100:443";
const VIP6: &str = "[2001:db8::100]:53";
const RS: [&str; 3] = ["10.1.0.1:80", "10.1.0.2:80", "10.1.0.3:80"];

/// The configuration both "processes" load: rr over three servers, a persistent service, and
/// an IPv6 UDP service.
fn configured(capacity: usize) -> Balancer<'static> {
    let mut b = empty_balancer(capacity, Settings::default());
    let tcp = ServiceKey::tcp(sa(VIP));
    let mut cfg = ServiceConfig::new(tcp);
    cfg.scheduler = SchedulerKind::Rr;
    b.apply(Instant::ZERO, &Command::AddService(cfg)).unwrap();
    for rs in RS {
        let s = ServerConfig::new(sa(rs), ForwardMethod::Masq);
        b.apply(Instant::ZERO, &Command::AddServer(tcp, s)).unwrap();
    }
    let p = ServiceKey::tcp(sa(PVIP));
    let mut cfg = ServiceConfig::new(p);
    cfg.scheduler = SchedulerKind::Rr;
    cfg.persistence = Some(Persistence {
        timeout_secs: 300,
        prefix: 24,
    });
    b.apply(Instant::ZERO, &Command::AddService(cfg)).unwrap();
    for rs in ["10.1.0.1:443", "10.1.0.2:443"] {
        let s = ServerConfig::new(sa(rs), ForwardMethod::Masq);
        b.apply(Instant::ZERO, &Command::AddServer(p, s)).unwrap();
    }
    let u = ServiceKey::udp(sa(VIP6));
    b.apply(Instant::ZERO, &Command::AddService(ServiceConfig::new(u)))
        .unwrap();
    let s = ServerConfig::new(sa("[2001:db8:1::1]:53"), ForwardMethod::Masq);
    b.apply(Instant::ZERO, &Command::AddServer(u, s)).unwrap();
    b
}

/// Forwards `p` and returns where it went (its destination after the rewrite).
fn forward(b: &mut Balancer<'_>, now: Instant, mut p: Vec<u8>) -> SocketAddr {
    let len = p.len();
    p.resize(2048, 0);
    let v = b.process(now, &mut p, len);
    assert!(matches!(v, Verdict::ToServer(_)), "{v:?}");
    pkt::dst_of(&p[..len]).unwrap()
}

/// Opens `n` connections from distinct clients to `vip` (SYN, then the client's ACK after the
/// server's SYN-ACK) so they are ESTABLISHED; returns (client, server) pairs.
fn establish(
    b: &mut Balancer<'_>,
    now: Instant,
    vip: &str,
    n: u16,
) -> Vec<(SocketAddr, SocketAddr)> {
    (0..n)
        .map(|i| {
            let client = SocketAddr::new([192, 0, 2, (i % 200) as u8 + 1].into(), 40000 + i);
            let rs = forward(b, now, pkt::segment(client, sa(vip), SYN, 1, 0, &[]));
            let mut synack = pkt::segment(rs, client, SYN | ACK, 7, 2, &[]);
            let len = synack.len();
            synack.resize(2048, 0);
            let v = b.process(now, &mut synack, len);
            assert!(matches!(v, Verdict::ToClient(_)), "{v:?}");
            forward(b, now, pkt::segment(client, sa(vip), ACK, 2, 8, &[]));
            (client, rs)
        })
        .collect()
}

fn export(b: &Balancer<'_>, now: Instant, chunk: usize) -> Vec<u8> {
    let mut ex = b.export_state(now);
    let mut out = Vec::new();
    let mut buf = vec![0u8; chunk];
    loop {
        let n = ex.write(b, &mut buf);
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    out
}

/// What `ipvsadm -L -c` shows, sorted, with times as seen from `now`.
fn listing(b: &Balancer<'_>, now: Instant) -> Vec<std::string::String> {
    let mut v: Vec<_> = b
        .connections(now)
        .map(|c| {
            std::format!(
                "{} {} {} {} {} {} {}",
                c.proto.name(),
                c.client,
                c.vip,
                c.server,
                c.state,
                c.expires_in.millis(),
                c.template
            )
        })
        .collect();
    v.sort();
    v
}

fn server_counts(b: &Balancer<'_>) -> Vec<(SocketAddr, u32, u32, u32)> {
    let mut v: Vec<_> = b
        .director()
        .services()
        .flat_map(|(id, _)| {
            let d = b.director().servers(id);
            d.order
                .iter()
                .map(|&s| {
                    let s = &d.servers[usize::from(s)];
                    (s.addr(), s.active, s.inactive, s.persistent)
                })
                .collect::<Vec<_>>()
        })
        .collect();
    v.sort();
    v
}

#[test]
fn a_restart_keeps_every_entry_state_timer_and_counter() {
    let t0 = ms(1_000);
    let mut a = configured(256);
    let flows = establish(&mut a, t0, VIP, 9);
    let pflows = establish(&mut a, t0, PVIP, 4);
    let client6 = sa("[2001:db8:9::1]:5353");
    forward(&mut a, t0, pkt::udp(client6, sa(VIP6), b"q"));
    // A half-open one and one closing.
    let half = sa("192.0.2.250:1234");
    forward(&mut a, t0, pkt::segment(half, sa(VIP), SYN, 1, 0, &[]));
    let t1 = ms(31_000);
    // Whatever chunk size, the same bytes.
    let snap = export(&a, t1, CHUNK_MIN);
    assert_eq!(snap, export(&a, t1, 1 << 16));
    assert_eq!(
        a.connection_count(),
        9 + 4 + 1 + 1 + 1,
        "4 persistent clients share one /24 template"
    );

    // The "new process": the same configuration, its clock restarted at another origin.
    let t2 = ms(5_000);
    let mut b = configured(256);
    let report = b.import_state(t2, &snap).unwrap();
    assert_eq!(
        report,
        ImportReport {
            created: 16,
            ..ImportReport::default()
        }
    );
    assert_eq!(
        listing(&b, t2),
        listing(&a, t1),
        "same entries, states, time left"
    );
    assert_eq!(
        server_counts(&b),
        server_counts(&a),
        "active/inactive/persistent counters"
    );
    // Every established flow goes on to its server: no rescheduling.
    for (client, rs) in flows.iter().chain(&pflows) {
        let vip = if rs.port() == 443 { PVIP } else { VIP };
        let to = forward(
            &mut b,
            t2,
            pkt::segment(*client, sa(vip), ACK, 2, 8, b"GET"),
        );
        assert_eq!(to, *rs);
    }
    // The template still controls its connections: a new client of the same /24 sticks.
    let sticky = pflows[0].1;
    let other = sa("192.0.2.77:5000");
    assert_eq!(
        forward(&mut b, t2, pkt::segment(other, sa(PVIP), SYN, 1, 0, &[])),
        sticky
    );
}

#[test]
fn a_damaged_or_foreign_snapshot_changes_nothing() {
    let t = ms(1_000);
    let mut a = configured(64);
    establish(&mut a, t, VIP, 3);
    let snap = export(&a, t, 4096);
    let mut b = configured(64);
    establish(&mut b, t, VIP, 1);
    let before = listing(&b, t);
    let mut flipped = snap.clone();
    flipped[30] ^= 1;
    assert!(matches!(
        b.import_state(t, &flipped),
        Err(SnapshotError::Checksum { .. })
    ));
    let mut foreign = snap.clone();
    foreign[0] = b'X';
    assert_eq!(
        b.import_state(t, &foreign),
        Err(SnapshotError::NotASnapshot)
    );
    let mut newer = snap.clone();
    newer[7] = 2;
    assert_eq!(
        b.import_state(t, &newer),
        Err(SnapshotError::Version { found: 2 })
    );
    assert!(b.import_state(t, &snap[..20]).is_err());
    assert!(b.import_state(t, &snap[..10]).is_err());
    // A cut record with a recomputed CRC: found by the record walk, not the checksum.
    let mut cut = snap[..snap.len() - 8 - 18].to_vec();
    cut.extend_from_slice(&3u32.to_be_bytes());
    let crc = snapshot::crc32(&cut);
    cut.extend_from_slice(&crc.to_be_bytes());
    assert!(matches!(
        b.import_state(t, &cut),
        Err(SnapshotError::Record { index: 2, .. })
    ));
    assert_eq!(listing(&b, t), before);
}

#[test]
fn records_of_removed_services_and_servers_are_dropped_and_counted() {
    let t = ms(1_000);
    let mut a = configured(64);
    let flows = establish(&mut a, t, VIP, 3);
    forward(
        &mut a,
        t,
        pkt::udp(sa("[2001:db8:9::1]:5353"), sa(VIP6), b"q"),
    );
    let snap = export(&a, t, 4096);
    let mut b = configured(64);
    // The restarted gateway's configuration lost one server and the UDP service.
    let gone = flows[0].1;
    b.apply(t, &Command::DelServer(ServiceKey::tcp(sa(VIP)), gone))
        .unwrap();
    b.apply(t, &Command::DelService(ServiceKey::udp(sa(VIP6))))
        .unwrap();
    let r = b.import_state(t, &snap).unwrap();
    assert_eq!((r.created, r.no_server, r.no_service), (2, 1, 1));
    assert_eq!(r.dropped(), 2);
    assert_eq!(b.connection_count(), 2);
}

#[test]
fn import_never_goes_over_capacity() {
    let t = ms(1_000);
    let mut a = configured(64);
    establish(&mut a, t, VIP, 20);
    let snap = export(&a, t, 4096);
    let mut b = configured(8);
    let r = b.import_state(t, &snap).unwrap();
    assert_eq!((r.created, r.table_full), (8, 12));
    assert_eq!(b.connection_count(), 8);
}

#[test]
fn a_record_for_a_flow_the_table_has_updates_it() {
    let t = ms(1_000);
    let mut a = configured(64);
    let flows = establish(&mut a, t, VIP, 2);
    let snap = export(&a, ms(2_000), 4096);
    // b has the same two flows, still half-open, with the same servers (same rr order).
    let mut b = configured(64);
    for (client, rs) in &flows {
        assert_eq!(
            forward(&mut b, t, pkt::segment(*client, sa(VIP), SYN, 1, 0, &[])),
            *rs
        );
    }
    let r = b.import_state(ms(2_000), &snap).unwrap();
    assert_eq!((r.created, r.updated), (0, 2));
    assert_eq!(listing(&b, ms(2_000)), listing(&a, ms(2_000)));
    assert_eq!(server_counts(&b), server_counts(&a));
}
