//! `lbadm -L`: ipvsadm's listings, laid out byte for byte as ipvsadm v1.31 prints them
//! (`print_title`, `print_service_entry`, `print_largenum`, `list_conn`, `list_timeout` in
//! ipvsadm.c), from the balancer's state.
//!
//! Sorting follows ipvsadm's default (`--sort`): services by fwmark, address family, protocol,
//! address and port (`ipvs_cmp_services`); real servers by address and port
//! (`ipvs_cmp_dests`). The connection list (`-c`) is in table order, as the kernel's hash order
//! is in ipvsadm's.
//!
//! One difference: host and port names are never resolved (the gateway has no resolver), so
//! `-L` prints what `-L -n` prints.

use lb_core::sync::daemon::SyncRole;
use std::fmt::Write;
use std::net::{IpAddr, SocketAddr};

use lb_core::ipvsadm::{ListOptions, ListView};
use lb_core::Protocol;
use lb_core::{
    Balancer, ForwardMethod, Instant, RealServer, SchedulerKind, Service, ServiceId, ServiceKey,
};

/// IPVS's version as ipvsadm prints it.
pub const IPVS_VERSION: &str = "1.2.1";

/// Why a listing could not be made (ipvsadm's `ipvs_strerror` text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListError(pub &'static str);

/// Produces the text `ipvsadm -L` with `opts` prints. `size` is the number shown as
/// `(size=N)` in the header (IPVS shows its connection hash table size; we show the
/// connection table's capacity).
pub fn list(
    lb: &Balancer<'_>,
    opts: &ListOptions,
    now: Instant,
    size: usize,
) -> Result<String, ListError> {
    let mut out = String::new();
    match opts.view {
        ListView::Timeouts => {
            let t = lb.settings().timeouts.get();
            let _ = writeln!(
                out,
                "Timeout (tcp tcpfin udp): {} {} {}",
                t.tcp, t.tcp_fin, t.udp
            );
        }
        ListView::Connections => list_connections(&mut out, lb, now),
        ListView::Daemon => {
            for role in [SyncRole::Master, SyncRole::Backup] {
                if let Some(d) = lb.sync_daemon(role) {
                    let _ = writeln!(out, "{d}");
                }
            }
        }
        _ => match &opts.service {
            Some(key) => {
                let id = lb
                    .director()
                    .service_id(key)
                    .ok_or(ListError("No such service"))?;
                let svc = lb
                    .director()
                    .service(id)
                    .filter(|s| !s.deleted)
                    .ok_or(ListError("No such service"))?;
                print_title(&mut out, opts.view);
                print_service(&mut out, lb, id, svc, opts);
            }
            None => {
                let _ = writeln!(
                    out,
                    "IP Virtual Server version {IPVS_VERSION} (size={size})"
                );
                print_title(&mut out, opts.view);
                for (id, svc) in sorted_services(lb) {
                    print_service(&mut out, lb, id, svc, opts);
                }
            }
        },
    }
    Ok(out)
}

/// Live services in ipvsadm's sort order.
pub fn sorted_services<'b>(lb: &'b Balancer<'_>) -> Vec<(ServiceId, &'b Service)> {
    let mut v: Vec<_> = lb.director().services().collect();
    v.sort_by_key(|(_, s)| service_sort_key(&s.config.key));
    v
}

/// `ipvs_cmp_services`: fwmark (0 for address services), family (AF_INET before AF_INET6),
/// protocol number, address, port.
fn service_sort_key(key: &ServiceKey) -> (u32, u8, u8, u128, u16) {
    match key {
        ServiceKey::Addr { proto, vip } => {
            let pnum = match proto {
                Protocol::Tcp => 6,
                Protocol::Udp => 17,
            };
            (0, family(vip.ip()), pnum, addr_num(vip.ip()), vip.port())
        }
        ServiceKey::Fwmark { mark, v6 } => (*mark, u8::from(*v6), 0, 0, 0),
    }
}

fn family(ip: IpAddr) -> u8 {
    match ip {
        IpAddr::V4(_) => 0,
        IpAddr::V6(_) => 1,
    }
}

fn addr_num(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

/// A service's servers sorted as `ipvs_cmp_dests` sorts them (address, then port).
pub fn sorted_servers<'b>(lb: &'b Balancer<'_>, id: ServiceId) -> Vec<&'b RealServer> {
    let mut v: Vec<&RealServer> = lb.director().servers(id).iter().map(|(_, s)| s).collect();
    v.sort_by_key(|s| (addr_num(s.addr().ip()), s.addr().port()));
    v
}

/// `a.b.c.d:port` or `[v6]:port` (ipvsadm's `addrport_to_anyname` with `FMT_NUMERIC`).
pub fn addrport(addr: SocketAddr) -> String {
    match addr.ip() {
        IpAddr::V4(ip) => format!("{ip}:{}", addr.port()),
        IpAddr::V6(ip) => format!("[{ip}]:{}", addr.port()),
    }
}

fn proto_name(p: Protocol) -> &'static str {
    match p {
        Protocol::Tcp => "TCP",
        Protocol::Udp => "UDP",
    }
}

fn print_title(out: &mut String, view: ListView) {
    let _ = match view {
        ListView::Stats => writeln!(
            out,
            "{:<33} {:>8} {:>8} {:>8} {:>8} {:>8}\n  -> RemoteAddress:Port",
            "Prot LocalAddress:Port", "Conns", "InPkts", "OutPkts", "InBytes", "OutBytes"
        ),
        ListView::Rate => writeln!(
            out,
            "{:<33} {:>8} {:>8} {:>8} {:>8} {:>8}\n  -> RemoteAddress:Port",
            "Prot LocalAddress:Port", "CPS", "InPPS", "OutPPS", "InBPS", "OutBPS"
        ),
        ListView::Thresholds => writeln!(
            out,
            "{:<33} {:<10} {:<10} {:<10} {:<10}\n  -> RemoteAddress:Port",
            "Prot LocalAddress:Port", "Uthreshold", "Lthreshold", "ActiveConn", "InActConn"
        ),
        ListView::TunInfo => writeln!(
            out,
            "Prot LocalAddress:Port Scheduler Flags\n  -> RemoteAddress:Port           Forward TunnelInfo    Weight ActiveConn InActConn"
        ),
        _ => writeln!(
            out,
            "Prot LocalAddress:Port Scheduler Flags\n  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn"
        ),
    };
}

/// `print_largenum`: 9 columns, abbreviated with K/M/G/T unless `--exact`.
fn largenum(out: &mut String, i: u64, exact: bool) {
    let _ = if exact {
        let len = i.to_string().len();
        let w = if len <= 8 { 9 } else { len + 1 };
        write!(out, "{i:>w$}")
    } else if i < 100_000_000 {
        write!(out, "{i:>9}")
    } else if i < 1_000_000_000 {
        write!(out, "{:>8}K", i / 1000)
    } else if i < 100_000_000_000 {
        write!(out, "{:>8}M", i / 1_000_000)
    } else if i < 100_000_000_000_000 {
        write!(out, "{:>8}G", i / 1_000_000_000)
    } else {
        write!(out, "{:>8}T", i / 1_000_000_000_000)
    };
}

/// `print_sched_flags`: the names of the set flags, comma-separated.
fn sched_flags(svc: &Service) -> String {
    let f = svc.config.flags;
    let (a, b) = match svc.config.scheduler {
        SchedulerKind::Sh => ("sh-fallback", "sh-port"),
        SchedulerKind::Mh => ("mh-fallback", "mh-port"),
        _ => ("flag-1", "flag-2"),
    };
    let mut v = Vec::new();
    if f.fallback {
        v.push(a);
    }
    if f.port {
        v.push(b);
    }
    v.join(",")
}

/// The service column: `TCP  10.30.0.10:80` (`%-4s %s`, cut to 33 bytes for IPv4), or
/// `FWM  7` / `FWM  7 IPv6`.
fn service_name(key: &ServiceKey) -> String {
    match key {
        ServiceKey::Addr { proto, vip } => {
            let mut s = format!("{:<4} {}", proto_name(*proto), addrport(*vip));
            if vip.is_ipv4() {
                s.truncate(33);
            }
            s
        }
        ServiceKey::Fwmark { mark, v6: false } => format!("FWM  {mark}"),
        ServiceKey::Fwmark { mark, v6: true } => format!("FWM  {mark} IPv6"),
    }
}

fn print_service(
    out: &mut String,
    lb: &Balancer<'_>,
    id: ServiceId,
    svc: &Service,
    opts: &ListOptions,
) {
    let cfg = &svc.config;
    let name = service_name(&cfg.key);
    match opts.view {
        ListView::Stats => {
            let _ = write!(out, "{name:<33}");
            let s = svc.stats;
            for v in [s.conns, s.in_pkts, s.out_pkts, s.in_bytes, s.out_bytes] {
                largenum(out, v, opts.exact);
            }
        }
        ListView::Rate => {
            let _ = write!(out, "{name:<33}");
            let r = svc.rates.rates();
            for v in [r.cps, r.in_pps, r.out_pps, r.in_bps, r.out_bps] {
                largenum(out, v, opts.exact);
            }
        }
        _ => {
            let _ = write!(out, "{name} {}", cfg.scheduler.name());
            let flags = sched_flags(svc);
            if !flags.is_empty() {
                let _ = write!(out, " ({flags})");
            }
            if let Some(p) = cfg.persistence {
                let _ = write!(out, " persistent {}", p.timeout_secs);
                if cfg.key.is_ipv6() {
                    if p.prefix != 128 {
                        let _ = write!(out, " mask {}", p.prefix);
                    }
                } else if p.prefix != 32 {
                    let _ = write!(out, " mask {}", p.netmask());
                }
            }
            if cfg.one_packet {
                out.push_str(" ops");
            }
            // Our extension (`--sloppy`): mid-flow pickup, after what ipvsadm prints.
            if cfg.sloppy_tcp {
                out.push_str(" sloppy");
            }
        }
    }
    out.push('\n');
    for d in sorted_servers(lb, id) {
        let mut dname = addrport(d.addr());
        if d.addr().is_ipv4() {
            dname.truncate(28);
        }
        let _ = match opts.view {
            ListView::Stats => {
                let _ = write!(out, "  -> {dname:<28}");
                let s = d.stats;
                for v in [s.conns, s.in_pkts, s.out_pkts, s.in_bytes, s.out_bytes] {
                    largenum(out, v, opts.exact);
                }
                writeln!(out)
            }
            ListView::Rate => {
                let r = lb
                    .director()
                    .find_server(id, d.addr())
                    .and_then(|sid| lb.director().server_rates(sid))
                    .unwrap_or_default();
                let _ = write!(
                    out,
                    "  -> {dname:<28} {:>8} {:>8} {:>8}",
                    r.cps, r.in_pps, r.out_pps
                );
                largenum(out, r.in_bps, opts.exact);
                largenum(out, r.out_bps, opts.exact);
                writeln!(out)
            }
            ListView::Thresholds => writeln!(
                out,
                "  -> {dname:<28} {:<10} {:<10} {:<10} {:<10}",
                d.config.u_threshold, d.config.l_threshold, d.active, d.inactive
            ),
            ListView::TunInfo => {
                let info = match d.config.method {
                    ForwardMethod::Tunnel(kind) => kind.to_string(),
                    _ => "n/a".to_string(),
                };
                writeln!(
                    out,
                    "  -> {dname:<28} {:<7} {info:<13} {:<6} {:<10} {:<10}",
                    d.config.method.name(),
                    d.weight(),
                    d.active,
                    d.inactive
                )
            }
            _ => writeln!(
                out,
                "  -> {dname:<28} {:<7} {:<6} {:<10} {:<10}",
                d.config.method.name(),
                d.weight(),
                d.active,
                d.inactive
            ),
        };
    }
}

/// `ipvsadm -L -c`: `list_conn`/`print_conn` with numeric names.
fn list_connections(out: &mut String, lb: &Balancer<'_>, now: Instant) {
    out.push_str("IPVS connection entries\n");
    let _ = writeln!(
        out,
        "pro expire {:<11} {:<18} {:<18} destination",
        "state", "source", "virtual"
    );
    for c in lb.connections(now) {
        let secs = c.expires_in.secs();
        let expire = format!("{:02}:{:02}", secs / 60, secs % 60);
        let _ = writeln!(
            out,
            "{:<3} {:<6} {:<11} {:<18} {:<18} {}",
            proto_name(c.proto),
            expire,
            c.state,
            addrport(c.client),
            addrport(c.vip),
            addrport(c.server)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn largenum_matches_ipvsadm() {
        let f = |i, exact| {
            let mut s = String::new();
            largenum(&mut s, i, exact);
            s
        };
        assert_eq!(f(0, false), "        0");
        assert_eq!(f(99_999_999, false), " 99999999");
        assert_eq!(f(100_000_000, false), "  100000K");
        assert_eq!(f(1_234_567_890, false), "    1234M");
        assert_eq!(f(123_456_789_012, false), "     123G");
        assert_eq!(f(123_456_789_012_345, false), "     123T");
        assert_eq!(f(12, true), "       12");
        assert_eq!(f(1_234_567_890, true), " 1234567890");
    }

    /// One service mixing the three methods: the Forward column says Masq, Route and Tunnel;
    /// `--tun-info` adds each tunnel's type, port and checksum option (`n/a` for the others),
    /// in ipvsadm's `FMT_TUN_INFO` layout.
    #[test]
    fn forward_methods_and_tun_info_like_ipvsadm() {
        let secrets = lb_core::Secrets::from_bytes([7; 24]);
        let mut lb = Balancer::alloc(lb_core::Limits::new(2, 8), 64, &secrets, Instant::ZERO);
        lb.set_settings(lb_core::Settings {
            direct_routing: true,
            ..lb_core::Settings::default()
        });
        for line in [
            "-A -t 10.30.0.10:80 -s rr",
            "-a -t 10.30.0.10:80 -r 10.20.1.1:8080 -m -w 2",
            "-a -t 10.30.0.10:80 -r 10.20.1.2 -g",
        ] {
            lb.apply_line(Instant::ZERO, line).unwrap();
        }
        // lb-core's apply refuses tunnels (no encapsulation yet); the listing still names them.
        let key = ServiceKey::tcp("10.30.0.10:80".parse().unwrap());
        for (addr, line) in [
            (
                "10.20.1.3:80",
                "-i --tun-type gue --tun-port 6080 --tun-remcsum",
            ),
            ("10.20.1.4:80", "-i --tun-type gre --tun-csum"),
        ] {
            let cmd =
                lb_core::ipvsadm::parse_line(&format!("-a -t 10.30.0.10:80 -r {addr} {line}"))
                    .unwrap();
            let Some(lb_core::ipvsadm::Command::AddServer(_, cfg)) = cmd else {
                panic!("{line}")
            };
            lb.director_mut().add_server(&key, &cfg).unwrap();
        }
        let opts = |view| ListOptions {
            numeric: true,
            view,
            ..ListOptions::default()
        };
        let plain = list(&lb, &opts(ListView::Services), Instant::ZERO, 64).unwrap();
        let tun = list(&lb, &opts(ListView::TunInfo), Instant::ZERO, 64).unwrap();
        // After the version line; the last column's padding (ipvsadm's `%-10u`) trimmed.
        let body = |s: &str| {
            s.lines()
                .skip(1)
                .map(str::trim_end)
                .collect::<Vec<_>>()
                .join("\n")
        };
        assert_eq!(
            body(&plain),
            "\
Prot LocalAddress:Port Scheduler Flags
  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn
TCP  10.30.0.10:80 rr
  -> 10.20.1.1:8080               Masq    2      0          0
  -> 10.20.1.2:80                 Route   1      0          0
  -> 10.20.1.3:80                 Tunnel  1      0          0
  -> 10.20.1.4:80                 Tunnel  1      0          0"
        );
        assert_eq!(
            body(&tun),
            "\
Prot LocalAddress:Port Scheduler Flags
  -> RemoteAddress:Port           Forward TunnelInfo    Weight ActiveConn InActConn
TCP  10.30.0.10:80 rr
  -> 10.20.1.1:8080               Masq    n/a           2      0          0
  -> 10.20.1.2:80                 Route   n/a           1      0          0
  -> 10.20.1.3:80                 Tunnel  gue:6080:r+c  1      0          0
  -> 10.20.1.4:80                 Tunnel  gre:+c        1      0          0"
        );
    }

    #[test]
    fn service_names_are_cut_like_ipvsadm() {
        let key = ServiceKey::tcp("10.30.0.10:80".parse().unwrap());
        assert_eq!(service_name(&key), "TCP  10.30.0.10:80");
        let key = ServiceKey::udp("[fd00:30::10]:53".parse().unwrap());
        assert_eq!(service_name(&key), "UDP  [fd00:30::10]:53");
        assert_eq!(
            service_name(&ServiceKey::Fwmark { mark: 7, v6: true }),
            "FWM  7 IPv6"
        );
    }
}
