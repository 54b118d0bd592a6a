//! The `-S` writer: ipvsadm-save's line format (`print_service_entry` with `FMT_RULE |
//! FMT_NUMERIC` in ipvsadm.c), plus our thresholds and `--table-size`, and `Display` for
//! [`Command`].

use core::fmt::{self, Write};
use core::net::{IpAddr, SocketAddr};

use super::{Command, ListView, Setting};
use crate::addr::{prefix_netmask, Protocol};
use crate::config::{SchedulerKind, ServerConfig, ServiceConfig, ServiceKey};

/// Writes `-A <service> -s SCHED [-p T [-M MASK]] [-o] [-b FLAGS] [--table-size M]`, without
/// a newline, as `ipvsadm-save -n` prints a service (`--table-size` is our extension).
///
/// `-M` is printed when the prefix is not the whole address: a dotted mask for IPv4, a prefix
/// length for IPv6. `-b` uses `sh-*`/`mh-*` names for sh/mh and `flag-1`/`flag-2` otherwise.
pub fn write_service<W: Write>(w: &mut W, svc: &ServiceConfig) -> fmt::Result {
    write_service_as(w, "-A", svc)
}

/// Writes `-a <service> -r ADDR:PORT -m|-g|-i -w W [-x N] [-y N]`, without a newline, as
/// `ipvsadm-save -n` prints a real server; the thresholds (printed when non-zero) are ours.
pub fn write_server<W: Write>(w: &mut W, key: &ServiceKey, server: &ServerConfig) -> fmt::Result {
    write_server_as(w, "-a", key, server)
}

/// Writes a whole table, one command a line: each service, then its real servers.
///
/// Pass each service's servers in **insertion order**, which is the reverse of IPVS's list
/// order (IPVS inserts a new destination at the head, reference "List order"). Restoring the
/// output with `-a` in that order then rebuilds the same list, and with it the same scheduling
/// (ipvsadm itself prints a sorted list, which does not keep the order).
pub fn write_save<W, I, S>(w: &mut W, services: I) -> fmt::Result
where
    W: Write,
    I: IntoIterator<Item = (ServiceConfig, S)>,
    S: IntoIterator<Item = ServerConfig>,
{
    for (svc, servers) in services {
        write_service(w, &svc)?;
        w.write_char('\n')?;
        for server in servers {
            write_server(w, &svc.key, &server)?;
            w.write_char('\n')?;
        }
    }
    Ok(())
}

fn write_service_as<W: Write>(w: &mut W, cmd: &str, svc: &ServiceConfig) -> fmt::Result {
    write!(w, "{cmd} ")?;
    write_key(w, &svc.key)?;
    write!(w, " -s {}", svc.scheduler.name())?;
    if let Some(p) = svc.persistence {
        write!(w, " -p {}", p.timeout_secs)?;
        if svc.key.is_ipv6() {
            if p.prefix != 128 {
                write!(w, " -M {}", p.prefix)?;
            }
        } else if p.prefix != 32 {
            write!(w, " -M {}", prefix_netmask(p.prefix))?;
        }
    }
    if svc.one_packet {
        w.write_str(" -o")?;
    }
    let f = svc.flags;
    if f.fallback || f.port {
        let (fallback, port) = match svc.scheduler {
            SchedulerKind::Sh => ("sh-fallback", "sh-port"),
            SchedulerKind::Mh => ("mh-fallback", "mh-port"),
            _ => ("flag-1", "flag-2"),
        };
        w.write_str(" -b ")?;
        match (f.fallback, f.port) {
            (true, true) => write!(w, "{fallback},{port}")?,
            (true, false) => w.write_str(fallback)?,
            _ => w.write_str(port)?,
        }
    }
    if let Some(n) = svc.table_size {
        write!(w, " --table-size {n}")?;
    }
    Ok(())
}

fn write_server_as<W: Write>(
    w: &mut W,
    cmd: &str,
    key: &ServiceKey,
    s: &ServerConfig,
) -> fmt::Result {
    write!(w, "{cmd} ")?;
    write_key(w, key)?;
    w.write_str(" -r ")?;
    write_addr(w, s.addr)?;
    write!(w, " {} -w {}", s.method.flag(), s.weight)?;
    if s.u_threshold != 0 {
        write!(w, " -x {}", s.u_threshold)?;
    }
    if s.l_threshold != 0 {
        write!(w, " -y {}", s.l_threshold)?;
    }
    Ok(())
}

/// `-t 10.0.0.1:80`, `-u [2001:db8::1]:53`, `-f 7`, `-f 7 -6`.
fn write_key<W: Write>(w: &mut W, key: &ServiceKey) -> fmt::Result {
    match key {
        ServiceKey::Addr { proto, vip } => {
            w.write_str(match proto {
                Protocol::Tcp => "-t ",
                Protocol::Udp => "-u ",
            })?;
            write_addr(w, *vip)
        }
        ServiceKey::Fwmark { mark, v6 } => {
            write!(w, "-f {mark}")?;
            if *v6 {
                w.write_str(" -6")?;
            }
            Ok(())
        }
    }
}

/// `a.b.c.d:port` or `[v6]:port` (no scope id: IPVS has none).
fn write_addr<W: Write>(w: &mut W, addr: SocketAddr) -> fmt::Result {
    match addr.ip() {
        IpAddr::V4(ip) => write!(w, "{ip}:{}", addr.port()),
        IpAddr::V6(ip) => write!(w, "[{ip}]:{}", addr.port()),
    }
}

/// `--conn-reuse-mode 1`, `--sloppy-tcp 0`, ...
impl fmt::Display for Setting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.option(), self.value())
    }
}

/// The command as one line in this grammar, e.g. `-a -t 10.0.0.1:80 -r 10.0.1.2:80 -m -w 3`;
/// [`parse_line`](super::parse_line) reads it back to an equal command (for servers, as long
/// as a `-g`/`-i` server of a non-fwmark service has the service's port, which ipvsadm forces).
impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Command::AddService(svc) => write_service_as(f, "-A", svc),
            Command::EditService(svc) => write_service_as(f, "-E", svc),
            Command::DelService(key) => {
                f.write_str("-D ")?;
                write_key(f, key)
            }
            Command::AddServer(key, s) => write_server_as(f, "-a", key, s),
            Command::EditServer(key, s) => write_server_as(f, "-e", key, s),
            Command::DelServer(key, addr) => {
                f.write_str("-d ")?;
                write_key(f, key)?;
                f.write_str(" -r ")?;
                write_addr(f, *addr)
            }
            Command::Clear => f.write_str("-C"),
            Command::Zero(key) => {
                f.write_str("-Z")?;
                if let Some(key) = key {
                    f.write_char(' ')?;
                    write_key(f, key)?;
                }
                Ok(())
            }
            Command::SetTimeouts(t) => write!(f, "--set {} {} {}", t.tcp, t.tcp_fin, t.udp),
            Command::Set(s) => write!(f, "{s}"),
            Command::List(o) => {
                f.write_str("-L")?;
                if o.numeric {
                    f.write_str(" -n")?;
                }
                if o.exact {
                    f.write_str(" --exact")?;
                }
                f.write_str(match o.view {
                    ListView::Services => "",
                    ListView::Stats => " --stats",
                    ListView::Rate => " --rate",
                    ListView::Thresholds => " --thresholds",
                    ListView::Timeouts => " --timeout",
                    ListView::Connections => " -c",
                })?;
                if let Some(key) = &o.service {
                    f.write_char(' ')?;
                    write_key(f, key)?;
                }
                Ok(())
            }
            Command::Save { numeric } => f.write_str(if *numeric { "-S -n" } else { "-S" }),
            Command::Restore => f.write_str("-R"),
        }
    }
}
