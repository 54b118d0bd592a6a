//! Connection-state figures (docs/sync.md): the table snapshot's export and import time and size
//! at 1,000,000 established connections, and the sync master's output for 10,000 new short
//! connections a second, with the backup's CPU to apply it.
//!
//! `cargo bench -p lb-core --bench sync` (env `LB_SYNC_N` changes the table size, `LB_SYNC_CPS`
//! the connection rate).

mod common;

use std::time::Instant as Wall;

use common::*;
use lb_core::ipvsadm::Command;
use lb_core::sync::daemon::{DaemonConfig, IfName, SyncRole};
use lb_core::{Balancer, Duration, Instant, SchedulerKind, Verdict};
use lb_testkit::pkt;

const FIN: u8 = 0x01;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn export(lb: &Balancer<'_>, now: Instant) -> Vec<u8> {
    let mut ex = lb.export_state(now);
    let mut out = Vec::with_capacity(lb.connection_count() * 56 + 64);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = ex.write(lb, &mut buf);
        if n == 0 {
            return out;
        }
        out.extend_from_slice(&buf[..n]);
    }
}

fn daemon(role: SyncRole) -> Command {
    let mut d = DaemonConfig::new(role, IfName::new("sync0").expect("name"));
    d.syncid = 1;
    Command::StartDaemon(d)
}

fn send(lb: &mut Balancer<'_>, now: Instant, mut p: Vec<u8>) -> Option<std::net::SocketAddr> {
    let len = p.len();
    p.resize(BUF, 0);
    match lb.process(now, &mut p, len) {
        Verdict::ToServer(_) => pkt::dst_of(&p[..len]),
        _ => None,
    }
}

fn main() {
    let n = env("LB_SYNC_N", 1_000_000);
    let cps = env("LB_SYNC_CPS", 10_000);
    let kind = Kind::V4Tcp;

    // --- Snapshot at n established connections.
    let mut a = balancer(kind, n as usize, SchedulerKind::Wrr, 4);
    let syn = Template::new(kind.client(0), kind.vip(), kind.proto(), SYN);
    let ack = Template::new(kind.client(0), kind.vip(), kind.proto(), ACK);
    let mut buf = [0u8; BUF];
    for i in 0..n {
        let len = syn.restore_with(&mut buf, kind.client(i), true);
        assert!(same_kind(&a.process(T0, &mut buf, len), &TO_SERVER));
        let len = ack.restore_with(&mut buf, kind.client(i), true);
        assert!(same_kind(&a.process(T0, &mut buf, len), &TO_SERVER));
    }
    let now = T0 + Duration::from_secs(1);
    let t = Wall::now();
    let snap = export(&a, now);
    let export_s = t.elapsed().as_secs_f64();
    let mut b = balancer(kind, n as usize, SchedulerKind::Wrr, 4);
    let t = Wall::now();
    let r = b.import_state(now, &snap).expect("import");
    let import_s = t.elapsed().as_secs_f64();
    assert_eq!(u64::from(r.created), n);
    let per_m = 1e6 / n as f64;
    println!("Snapshot of {n} established IPv4 TCP connections (one run)");
    println!();
    println!("| | value |");
    println!("|---|---:|");
    println!(
        "| size | {} bytes ({:.1} per entry) |",
        snap.len(),
        snap.len() as f64 / n as f64
    );
    println!(
        "| export (`export_state`, 64 KiB buffers) | {:.0} ms per million |",
        export_s * 1e3 * per_m
    );
    println!(
        "| import (`import_state`: check, then apply) | {:.0} ms per million |",
        import_s * 1e3 * per_m
    );
    drop((a, b));

    // --- Sync: cps short connections a second for 2 s (client: SYN, ACK, request, ACK of the
    // response, FIN; server: SYN-ACK, response, FIN, ACK of the client's FIN).
    let mut m = balancer(kind, 1 << 18, SchedulerKind::Wrr, 4);
    m.apply(T0, &daemon(SyncRole::Master)).expect("master");
    let mut bk = balancer(kind, 1 << 18, SchedulerKind::Wrr, 4);
    bk.apply(T0, &daemon(SyncRole::Backup)).expect("backup");
    let seconds = 2;
    let total = cps * seconds;
    let mut msgs: Vec<(Instant, Vec<u8>)> = Vec::new();
    let mut out = vec![0u8; 1472];
    let vip = kind.vip();
    for i in 0..total {
        let now = T0 + Duration::from_millis(i * 1000 / cps);
        let c = kind.client(i);
        let rs = send(&mut m, now, pkt::segment(c, vip, SYN, 1, 0, &[])).expect("scheduled");
        let reply = |m: &mut Balancer<'_>, fl: u8, data: &[u8]| {
            let mut p = pkt::segment(rs, c, fl, 100, 2, data);
            let len = p.len();
            p.resize(BUF, 0);
            m.process(now, &mut p, len);
        };
        reply(&mut m, SYN | ACK, &[]);
        send(&mut m, now, pkt::segment(c, vip, ACK, 2, 101, &[]));
        send(
            &mut m,
            now,
            pkt::segment(c, vip, ACK, 2, 101, b"GET / HTTP/1.1\r\n\r\n"),
        );
        reply(&mut m, ACK, b"HTTP/1.1 200 OK\r\n\r\n");
        send(&mut m, now, pkt::segment(c, vip, ACK, 20, 120, &[]));
        send(&mut m, now, pkt::segment(c, vip, FIN | ACK, 20, 120, &[]));
        reply(&mut m, FIN | ACK, &[]);
        send(&mut m, now, pkt::segment(c, vip, ACK, 21, 121, &[]));
        while let Some(len) = m.poll_sync(now, &mut out) {
            msgs.push((now, out[..len].to_vec()));
        }
    }
    let end = T0 + Duration::from_secs(seconds + 3);
    while let Some(len) = m.poll_sync(end, &mut out) {
        msgs.push((end, out[..len].to_vec()));
    }
    let st = *m.sync_stats();
    let bytes: usize = msgs.iter().map(|(_, b)| b.len()).sum();
    let t = Wall::now();
    for (at, msg) in &msgs {
        bk.receive_sync(*at, msg).expect("backup takes it");
    }
    let backup_s = t.elapsed().as_secs_f64();
    let s = seconds as f64;
    println!();
    println!("Sync master at {cps} new short connections/s (virtual clock, {seconds} s; one run)");
    println!();
    println!("| | value |");
    println!("|---|---:|");
    println!(
        "| records/s (the rules fire 3 times a connection: 3rd client packet, CLOSE_WAIT, TIME_WAIT; an entry still queued is sent once, in its newest state) | {:.0} ({:.2} per connection) |",
        st.records_sent as f64 / s,
        st.records_sent as f64 / total as f64
    );
    println!(
        "| messages/s (1,472-byte max) | {:.0} |",
        msgs.len() as f64 / s
    );
    println!(
        "| bytes/s (UDP payload; + 28 B of headers per message on the wire) | {:.0} |",
        bytes as f64 / s
    );
    println!("| queue drops | {} |", st.queue_drops);
    println!(
        "| backup: `receive_sync` of those messages | {:.1} ms per second of traffic ({:.2} % of one core), {:.0} ns per record |",
        backup_s * 1e3 / s,
        backup_s * 100.0 / s,
        backup_s * 1e9 / st.records_sent as f64
    );
    println!(
        "| backup entries created / refreshed | {} / {} |",
        bk.sync_stats().created,
        bk.sync_stats().updated
    );
}
