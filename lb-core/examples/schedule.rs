//! Runs IPVS scheduling decisions from the command line, as successive `ipvsadm` commands would
//! set them up, and prints the chosen server of each decision.
//!
//! ```text
//! cargo run -q -p lb-core --example schedule -- --scheduler NAME [--flag F]... \
//!     [--table-size M] [--vip ADDR:PORT] --dest ADDR:PORT:WEIGHT [--dest ...] \
//!     (--picks N | --client ADDR:PORT[@DST] [--client ...]) [--seed S]
//! ```
//!
//! - A TCP service is created at `--vip` (default `10.0.0.100:80`) with the scheduler, `-b`
//!   flags and table size given; destinations are added in the order given (`ipvsadm -a`
//!   each, so the last one given is first in the IPVS list). IPv6: `[addr]:port:weight`.
//! - `--picks N`: N decisions for new connections from distinct clients: client `i` (from 0) is
//!   `198.18.0.0 + i` (IPv4 VIP; the 198.18.0.0/15 benchmarking range) or `2001:db8::/96 + i`
//!   (IPv6 VIP), port `10000 + i % 50000`, to the VIP.
//! - `--client ADDR:PORT[@DST]`: one decision per client, in order; `@DST` sets the packet's
//!   destination address (dh, lblc, lblcr key on it), default the VIP's.
//! - Every decision opens a connection that stays open: `bind_conn` then `set_active(true)`,
//!   so it counts as one active connection on the chosen server.
//! - Output: one line per decision, `ADDR:PORT` (`[addr]:port` for IPv6) or `none`. Errors go
//!   to stderr with a non-zero exit status.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::process::ExitCode;

use lb_core::config::{ForwardMethod, SchedFlags, SchedulerKind, ServerConfig, ServiceConfig};
use lb_core::director::{Director, DirectorStorage, Limits, SchedInput};
use lb_core::{Instant, Protocol, ServiceKey};

struct Args {
    scheduler: SchedulerKind,
    flags: SchedFlags,
    table_size: Option<u32>,
    vip: SocketAddr,
    dests: Vec<(SocketAddr, u32)>,
    picks: Option<u64>,
    clients: Vec<(SocketAddr, Option<IpAddr>)>,
    seed: u64,
}

fn parse_dest(s: &str) -> Result<(SocketAddr, u32), String> {
    let (addr, weight) = s
        .rsplit_once(':')
        .ok_or_else(|| format!("bad --dest {s:?}: expected ADDR:PORT:WEIGHT"))?;
    let addr: SocketAddr = addr
        .parse()
        .map_err(|_| format!("bad --dest address {addr:?} in {s:?}"))?;
    let weight: u32 = weight
        .parse()
        .map_err(|_| format!("bad --dest weight {weight:?} in {s:?}"))?;
    if weight > ServerConfig::MAX_WEIGHT {
        return Err(format!(
            "--dest {s}: weight {weight} out of range (0..=65535)"
        ));
    }
    Ok((addr, weight))
}

fn parse_client(s: &str) -> Result<(SocketAddr, Option<IpAddr>), String> {
    let (client, dst) = match s.split_once('@') {
        Some((c, d)) => (
            c,
            Some(
                d.parse::<IpAddr>()
                    .map_err(|_| format!("bad --client destination {d:?}"))?,
            ),
        ),
        None => (s, None),
    };
    let client = client
        .parse()
        .map_err(|_| format!("bad --client {client:?}: expected ADDR:PORT[@DST]"))?;
    Ok((client, dst))
}

fn parse(argv: &[String]) -> Result<Args, String> {
    let mut scheduler = None;
    let mut a = Args {
        scheduler: SchedulerKind::Wlc,
        flags: SchedFlags::default(),
        table_size: None,
        vip: SocketAddr::from(([10, 0, 0, 100], 80)),
        dests: Vec::new(),
        picks: None,
        clients: Vec::new(),
        seed: 0,
    };
    let mut it = argv.iter();
    while let Some(opt) = it.next() {
        let mut val = || {
            it.next()
                .map(String::as_str)
                .ok_or_else(|| format!("{opt} needs a value"))
        };
        match opt.as_str() {
            "--scheduler" => {
                let v = val()?;
                scheduler = Some(
                    SchedulerKind::from_name(v)
                        .ok_or_else(|| format!("unknown scheduler {v:?}"))?,
                );
            }
            "--flag" => {
                let v = val()?;
                if !a.flags.set_by_name(v) {
                    return Err(format!("unknown scheduler flag {v:?}"));
                }
            }
            "--table-size" => {
                let v = val()?;
                a.table_size = Some(v.parse().map_err(|_| format!("bad --table-size {v:?}"))?);
            }
            "--vip" => {
                let v = val()?;
                a.vip = v.parse().map_err(|_| format!("bad --vip {v:?}"))?;
            }
            "--dest" => a.dests.push(parse_dest(val()?)?),
            "--picks" => {
                let v = val()?;
                a.picks = Some(v.parse().map_err(|_| format!("bad --picks {v:?}"))?);
            }
            "--client" => a.clients.push(parse_client(val()?)?),
            "--seed" => {
                let v = val()?;
                a.seed = v.parse().map_err(|_| format!("bad --seed {v:?}"))?;
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    a.scheduler = scheduler.ok_or("missing --scheduler")?;
    if a.dests.is_empty() {
        return Err("missing --dest".into());
    }
    match (a.picks.is_some(), a.clients.is_empty()) {
        (true, false) => return Err("give either --picks or --client, not both".into()),
        (false, true) => return Err("missing --picks N or --client ADDR:PORT".into()),
        _ => {}
    }
    Ok(a)
}

/// The `i`-th synthetic client of `--picks`.
fn synthetic_client(i: u64, v6: bool) -> SocketAddr {
    let port = 10000 + (i % 50000) as u16;
    if v6 {
        let base = u128::from("2001:db8::".parse::<Ipv6Addr>().expect("constant"));
        SocketAddr::new(Ipv6Addr::from(base + u128::from(i as u32)).into(), port)
    } else {
        let base = u32::from(Ipv4Addr::new(198, 18, 0, 0));
        SocketAddr::new(Ipv4Addr::from(base.wrapping_add(i as u32)).into(), port)
    }
}

fn run(a: &Args) -> Result<Vec<String>, String> {
    let limits = Limits {
        services: 1,
        servers_per_service: a.dests.len().max(1),
        table_slots_per_service: a.table_size.map_or(65536, |t| t as usize).min(1 << 20),
        lblc_entries_per_service: 1024,
    };
    let storage = DirectorStorage::alloc(limits);
    let mut d = Director::new(storage, a.seed);
    let key = ServiceKey::tcp(a.vip);
    let mut cfg = ServiceConfig::new(key);
    cfg.scheduler = a.scheduler;
    cfg.flags = a.flags;
    cfg.table_size = a.table_size;
    let svc = d
        .add_service(&cfg)
        .map_err(|e| format!("service {key}: {e}"))?;
    for &(addr, weight) in &a.dests {
        let mut sc = ServerConfig::new(addr, ForwardMethod::Masq);
        sc.weight = weight;
        d.add_server(&key, &sc)
            .map_err(|e| format!("destination {addr}: {e}"))?;
    }
    let decisions: Vec<(SocketAddr, IpAddr)> = match a.picks {
        Some(n) => (0..n)
            .map(|i| (synthetic_client(i, a.vip.is_ipv6()), a.vip.ip()))
            .collect(),
        None => a
            .clients
            .iter()
            .map(|&(c, dst)| (c, dst.unwrap_or(a.vip.ip())))
            .collect(),
    };
    let mut out = Vec::with_capacity(decisions.len());
    for (client, dst) in decisions {
        let input = SchedInput {
            proto: Protocol::Tcp,
            client,
            dst: SocketAddr::new(dst, a.vip.port()),
        };
        match d.schedule(svc, &input, Instant::ZERO) {
            Some(id) => {
                d.bind_conn(id);
                d.set_active(id, true);
                let addr = d.server(id).map(|s| s.addr()).ok_or("lost server")?;
                out.push(addr.to_string());
            }
            None => out.push("none".into()),
        }
    }
    Ok(out)
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let result = parse(&argv).and_then(|a| run(&a));
    match result {
        Ok(lines) => {
            let mut s = lines.join("\n");
            if !s.is_empty() {
                s.push('\n');
            }
            print!("{s}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("schedule: {e}");
            ExitCode::from(2)
        }
    }
}
