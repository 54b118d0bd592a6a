//! Forwarding methods side by side: the cost per packet of one established IPv4 TCP flow sent
//! by NAT (`-m`), direct routing (`-g`) and each tunnel (`-i`: IPIP, GUE, GUE with its UDP
//! checksum, GRE with its checksum), for a bare ACK (40 bytes) and a full-sized segment
//! (1,400 bytes, the checksummed tunnels sum it all), and the tunnels once more through
//! `process_at` with headroom (nothing moved). One process, the variants interleaved sample by
//! sample so a noisy neighbour hits them alike; medians of `LB_SAMPLES` samples (default 201)
//! of 256 packets, each restored from its template before the sample (untimed).
//!
//! `cargo bench -p lb-core --bench forwarding`

mod common;

use std::hint::black_box;
use std::time::Instant as Clock;

use common::*;
use lb_core::ipvsadm::Command;
use lb_core::{
    Balancer, ForwardMethod, GueCsum, Protocol, SchedulerKind, ServerConfig, TunnelKind,
};

/// Packets per timed sample.
const BATCH: usize = 256;
/// Buffer per packet: the largest packet, headroom and room for the headers.
const SLOT: usize = 1600;
/// Headroom for `process_at`.
const HEADROOM: usize = 64;

struct Variant {
    name: &'static str,
    method: ForwardMethod,
    headroom: bool,
}

fn variants() -> Vec<Variant> {
    let gue = |csum| ForwardMethod::Tunnel(TunnelKind::Gue { port: 6080, csum });
    let mut v = vec![
        Variant {
            name: "nat",
            method: ForwardMethod::Masq,
            headroom: false,
        },
        Variant {
            name: "dr",
            method: ForwardMethod::Route,
            headroom: false,
        },
    ];
    for (name, name_at, method) in [
        (
            "ipip",
            "ipip@headroom",
            ForwardMethod::Tunnel(TunnelKind::Ipip),
        ),
        ("gue", "gue@headroom", gue(GueCsum::None)),
        ("gue+csum", "gue+csum@headroom", gue(GueCsum::Csum)),
        (
            "gre+csum",
            "gre+csum@headroom",
            ForwardMethod::Tunnel(TunnelKind::Gre { csum: true }),
        ),
    ] {
        v.push(Variant {
            name,
            method,
            headroom: false,
        });
        v.push(Variant {
            name: name_at,
            method,
            headroom: true,
        });
    }
    v
}

/// A balancer with one service whose 4 servers go by `method`, and one established flow.
fn setup(method: ForwardMethod, ack: &[u8]) -> Balancer<'static> {
    let kind = Kind::V4Tcp;
    let mut lb = balancer(kind, 1024, SchedulerKind::Wrr, 0);
    let mut s = *lb.settings();
    s.direct_routing = true;
    s.tunnel_source_v4 = Some(std::net::Ipv4Addr::new(10, 9, 9, 9));
    lb.set_settings(s);
    for k in 0..4 {
        let rip = std::net::SocketAddr::new(kind.server(k).ip(), kind.vip().port());
        let addr = if method == ForwardMethod::Masq {
            kind.server(k)
        } else {
            rip
        };
        lb.apply(
            T0,
            &Command::AddServer(kind.service_key(), ServerConfig::new(addr, method)),
        )
        .expect("server");
    }
    let syn = Template::new(kind.client(0), kind.vip(), Protocol::Tcp, SYN);
    let mut buf = vec![0u8; SLOT];
    let n = syn.restore(&mut buf);
    assert!(same_kind(&lb.process(T0, &mut buf, n), &TO_SERVER));
    buf[..ack.len()].copy_from_slice(ack);
    assert!(same_kind(&lb.process(T0, &mut buf, ack.len()), &TO_SERVER));
    lb
}

/// An ACK of the flow with `payload` bytes of data.
fn segment(payload: usize) -> Vec<u8> {
    let kind = Kind::V4Tcp;
    let mut p = lb_testkit::pkt::tcp(
        kind.client(0),
        kind.vip(),
        ACK,
        1000,
        &vec![7u8; payload],
        0,
    );
    fix_checksums(&mut p);
    p
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn main() {
    let samples: usize = std::env::var("LB_SAMPLES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(201);
    println!("forwarding: one established IPv4 TCP flow, ns per packet (median of {samples} samples of {BATCH})");
    println!("{:<20} {:>10} {:>10}", "method", "40 B", "1440 B");
    let vars = variants();
    let mut results = vec![[0f64; 2]; vars.len()];
    for (col, payload) in [0usize, 1400].into_iter().enumerate() {
        let pkt = segment(payload);
        let mut lbs: Vec<Balancer<'static>> = vars.iter().map(|v| setup(v.method, &pkt)).collect();
        let mut bufs = vec![0u8; BATCH * SLOT];
        let mut times = vec![Vec::with_capacity(samples); vars.len()];
        for _ in 0..samples {
            for (i, v) in vars.iter().enumerate() {
                let at = if v.headroom { HEADROOM } else { 0 };
                for b in bufs.chunks_mut(SLOT) {
                    b[at..at + pkt.len()].copy_from_slice(&pkt);
                }
                let lb = &mut lbs[i];
                let t = Clock::now();
                for b in bufs.chunks_mut(SLOT) {
                    let verdict = if v.headroom {
                        lb.process_at(T0, b, at, pkt.len())
                    } else {
                        lb.process(T0, b, pkt.len())
                    };
                    black_box(verdict);
                }
                times[i].push(t.elapsed().as_nanos() as f64 / BATCH as f64);
            }
        }
        for (i, t) in times.iter_mut().enumerate() {
            results[i][col] = median(t);
        }
        // Every variant forwarded (not a drop) in the last sample.
        for (i, v) in vars.iter().enumerate() {
            let mut b = vec![0u8; SLOT];
            let at = if v.headroom { HEADROOM } else { 0 };
            b[at..at + pkt.len()].copy_from_slice(&pkt);
            let verdict = lbs[i].process_at(T0, &mut b, at, pkt.len());
            assert!(same_kind(&verdict, &TO_SERVER), "{}: {verdict:?}", v.name);
        }
    }
    let nat = results[0];
    for (v, r) in vars.iter().zip(&results) {
        println!(
            "{:<20} {:>7.1} ns {:>7.1} ns   ({:.2}× / {:.2}× NAT)",
            v.name,
            r[0],
            r[1],
            r[0] / nat[0],
            r[1] / nat[1]
        );
    }
}
