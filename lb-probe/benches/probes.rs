//! The checker's and the prober's CPU for 1,000 real servers checked with `TCP_CHECK` at
//! `delay_loop 1` s (1,000 probes a second, each SYN, SYN-ACK, ACK, RST), on a virtual clock:
//! the servers are a responder that answers every SYN with a SYN-ACK at once; only the
//! gateway's side is timed — the balancer's `handle_timeout`, `poll_probe` and `probe_result`
//! and the prober's `poll` (its smoltcp interface and sockets) — called the way lb-tun calls
//! them: when the balancer's timer is due, when packets for the probe source arrived, or when
//! the prober's own deadline is. Prints the share of one core.
//!
//! `cargo bench -p lb-probe --bench probes` (release); `LB_PROBE_SERVERS`, `LB_PROBE_SECS`.

use std::time::Instant as Wall;

use lb_core::{
    Balancer, Duration, HealthCheck, HealthLimits, HealthState, HealthStorage, Instant, Limits,
    Secrets, ServiceKey,
};
use lb_probe::smoltcp::wire::{IpAddress, Ipv4Packet, TcpPacket, TcpSeqNumber};
use lb_probe::{probe_interface, Prober, QueueDevice};

/// The servers' side: a SYN-ACK for every SYN (no socket, no state).
fn syn_ack(syn: &[u8]) -> Option<Vec<u8>> {
    let ip = Ipv4Packet::new_checked(syn).ok()?;
    let tcp = TcpPacket::new_checked(ip.payload()).ok()?;
    if !tcp.syn() || tcp.ack() {
        return None;
    }
    let (src, dst) = (ip.src_addr(), ip.dst_addr());
    let mut out = vec![0u8; 40];
    out[..20].copy_from_slice(&syn[..20]);
    let mut o = Ipv4Packet::new_unchecked(&mut out[..]);
    o.set_header_len(20);
    o.set_total_len(40);
    o.set_src_addr(dst);
    o.set_dst_addr(src);
    o.fill_checksum();
    let mut t = TcpPacket::new_unchecked(&mut out[20..]);
    t.set_src_port(tcp.dst_port());
    t.set_dst_port(tcp.src_port());
    t.set_seq_number(TcpSeqNumber(7));
    t.set_ack_number(tcp.seq_number() + 1);
    t.set_header_len(20);
    for f in [false; 1] {
        t.set_fin(f);
        t.set_rst(f);
        t.set_psh(f);
        t.set_urg(f);
    }
    t.set_syn(true);
    t.set_ack(true);
    t.set_window_len(65535);
    t.set_urgent_at(0);
    t.fill_checksum(&IpAddress::Ipv4(dst), &IpAddress::Ipv4(src));
    Some(out)
}

fn main() {
    let n: usize = std::env::var("LB_PROBE_SERVERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let secs: u64 = std::env::var("LB_PROBE_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let t0 = Instant::ZERO;
    let mut lb = Balancer::alloc(
        Limits::new(1, n),
        1 << 16,
        &Secrets::from_bytes([9; 24]),
        t0,
    );
    lb.apply_line(t0, "-A -t 192.0.2.1:80 -s rr").unwrap();
    let server = |i: usize| -> std::net::SocketAddr {
        format!("10.{}.{}.{}:80", 1 + i / 65536, (i / 256) % 256, i % 256)
            .parse()
            .unwrap()
    };
    for i in 0..n {
        lb.apply_line(t0, &format!("-a -t 192.0.2.1:80 -r {} -m", server(i)))
            .unwrap();
    }
    let pool = 64;
    let mut prober = Prober::alloc(pool, 4096, 1);
    let src = "10.0.0.1".parse().unwrap();
    prober.set_source(src);
    let limits = HealthLimits {
        targets: n,
        members: n,
        services: 1,
        max_in_flight: pool,
    };
    lb.set_health_storage(HealthStorage::alloc(limits), 5);
    let check = HealthCheck {
        delay_loop: Duration::from_secs(1),
        connect_timeout: Duration::from_secs(1),
        ..HealthCheck::tcp()
    };
    let svc = ServiceKey::tcp("192.0.2.1:80".parse().unwrap());
    for i in 0..n {
        lb.set_health_check(t0, &svc, server(i), &check).unwrap();
    }
    let mut dev = QueueDevice::new(1500, 4 * pool);
    let mut iface = probe_interface(&mut dev, &[src], t0).unwrap();

    let mut busy = std::time::Duration::ZERO;
    let mut done = 0u64;
    let mut calls = 0u64;
    let warm = 2000; // the warm-up spreads the first probes over delay_loop: skip it
    let mut counted = 0u64;
    for ms in 1..=(secs * 1000) {
        let now = Instant::from_millis(ms);
        let started = Wall::now();
        let due = lb.poll_timeout().is_some_and(|t| t <= now);
        if due {
            lb.handle_timeout(now);
        }
        let mut d = 0;
        if due || prober.poll_at(now, &mut iface).is_some_and(|t| t <= now) || !dev.rx.is_empty() {
            prober.poll(now, &mut lb, &mut iface, &mut dev, &mut |_, _| d += 1);
            calls += 1;
        }
        let replies: Vec<Vec<u8>> = dev.tx.drain(..).filter_map(|p| syn_ack(&p)).collect();
        if ms > warm {
            busy += started.elapsed();
            done += d;
            counted += 1;
        }
        dev.rx.extend(replies);
    }
    let up = lb
        .health_statuses()
        .filter(|s| s.state == HealthState::Up)
        .count();
    let span = counted as f64 / 1000.0;
    println!(
        "{n} servers, delay_loop 1 s, pool {pool}: {done} probes in {span:.0} s ({:.0}/s), {up} UP; \
         {calls} prober polls; CPU {:.1} ms/s = {:.2} % of one core ({:.1} µs per probe)",
        done as f64 / span,
        busy.as_secs_f64() * 1e3 / span,
        busy.as_secs_f64() / span * 100.0,
        busy.as_secs_f64() * 1e6 / done.max(1) as f64
    );
    assert_eq!(up, n, "every server answers: all must stay UP");
}
