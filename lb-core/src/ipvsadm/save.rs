//! The `-S` writer: ipvsadm-save's line format (`print_service_entry` with `FMT_RULE |
//! FMT_NUMERIC` in ipvsadm.c), plus our thresholds and `--table-size`, and `Display` for
//! [`Command`].

use core::fmt::{self, Write};
use core::net::{IpAddr, SocketAddr};

use super::{Command, ListView, Setting};
use crate::addr::{prefix_netmask, Protocol};
use crate::config::{
    ForwardMethod, GueCsum, SchedulerKind, ServerConfig, ServiceConfig, ServiceKey, TunnelKind,
};

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
/// order (IPVS inserts a new destination at the head, docs/ipvs-semantics.md "List order"). Restoring the
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
    if svc.sloppy_tcp {
        w.write_str(" --sloppy")?;
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
    if let ForwardMethod::Tunnel(kind) = s.method {
        // ipvsadm's `print_tunnel_rule`: the type, GUE's port, the checksum option.
        write!(w, " --tun-type {}", kind.type_name())?;
        match kind {
            TunnelKind::Ipip => {}
            TunnelKind::Gue { port, csum } => {
                let opt = match csum {
                    GueCsum::None => "--tun-nocsum",
                    GueCsum::Csum => "--tun-csum",
                    GueCsum::RemCsum => "--tun-remcsum",
                };
                write!(w, " --tun-port {port} {opt}")?;
            }
            TunnelKind::Gre { csum } => {
                w.write_str(if csum { " --tun-csum" } else { " --tun-nocsum" })?;
            }
        }
    }
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
                    ListView::TunInfo => " --tun-info",
                    ListView::Timeouts => " --timeout",
                    ListView::Connections => " -c",
                    ListView::Daemon => " --daemon",
                })?;
                if let Some(key) = &o.service {
                    f.write_char(' ')?;
                    write_key(f, key)?;
                }
                Ok(())
            }
            Command::Save { numeric } => f.write_str(if *numeric { "-S -n" } else { "-S" }),
            Command::Restore => f.write_str("-R"),
            Command::StartDaemon(d) => {
                write!(
                    f,
                    "--start-daemon {} --mcast-interface {} --syncid {}",
                    d.role.name(),
                    d.interface,
                    d.syncid
                )?;
                if d.group != core::net::IpAddr::V4(crate::sync::daemon::DEFAULT_GROUP_V4) {
                    write!(f, " --mcast-group {}", d.group)?;
                }
                if d.port != crate::sync::daemon::DEFAULT_PORT {
                    write!(f, " --mcast-port {}", d.port)?;
                }
                if d.ttl != 1 {
                    write!(f, " --mcast-ttl {}", d.ttl)?;
                }
                if let Some(m) = d.maxlen {
                    write!(f, " --sync-maxlen {m}")?;
                }
                Ok(())
            }
            Command::StopDaemon(role) => write!(f, "--stop-daemon {}", role.name()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Persistence, SchedFlags, Timeouts};
    use crate::ipvsadm::{parse_line, ListOptions};
    use core::net::{Ipv4Addr, Ipv6Addr};
    use proptest::prelude::*;
    use std::string::{String, ToString};
    use std::vec::Vec;

    /// `ipvsadm-save -n` output in ipvsadm v1.31's format (`print_service_entry` with
    /// `FMT_RULE`): IPv4 and IPv6 services, fwmark with and without `-6`, `-p` with a
    /// timeout, `-M` as a dotted mask and as an IPv6 prefix, `-o`, `-b` in its three
    /// spellings, all three forwarding methods (every tunnel type and checksum option, one
    /// service mixing methods, an IPv6 server in an IPv4 service by tunnel), weight 0, port 0.
    const SAVED: &str = "\
-A -t 10.30.0.10:80 -s wrr -p 300
-a -t 10.30.0.10:80 -r 10.20.1.2:80 -m -w 3
-a -t 10.30.0.10:80 -r 10.20.1.3:8080 -m -w 1
-A -t 10.30.0.11:443 -s wlc -p 1800 -M 255.255.255.0
-a -t 10.30.0.11:443 -r 10.20.1.4:443 -g -w 0
-A -t 10.30.0.12:0 -s rr -p 300
-a -t 10.30.0.12:0 -r 10.20.1.5:0 -g -w 1
-A -u [2001:db8::10]:53 -s rr -o
-a -u [2001:db8::10]:53 -r [2001:db8::2]:5353 -m -w 2
-A -t [2001:db8::11]:443 -s sh -p 600 -M 64 -b sh-fallback,sh-port
-A -f 7 -s mh -b mh-port
-A -f 8 -6 -s dh -p 300
-a -f 8 -6 -r [2001:db8::3]:0 -g -w 1
-A -u 10.30.0.13:53 -s wrr -o -b flag-1,flag-2
-A -t 10.30.0.14:80 -s rr
-a -t 10.30.0.14:80 -r 10.20.1.6:80 -i -w 1 --tun-type ipip
-a -t 10.30.0.14:80 -r 10.20.1.7:80 -i -w 1 --tun-type gue --tun-port 6080 --tun-nocsum
-a -t 10.30.0.14:80 -r 10.20.1.8:80 -i -w 2 --tun-type gue --tun-port 6081 --tun-csum
-a -t 10.30.0.14:80 -r 10.20.1.9:80 -i -w 1 --tun-type gue --tun-port 6082 --tun-remcsum
-a -t 10.30.0.14:80 -r [2001:db8::4]:80 -i -w 1 --tun-type gre --tun-nocsum
-a -t 10.30.0.14:80 -r 10.20.1.10:80 -i -w 1 --tun-type gre --tun-csum
-a -t 10.30.0.14:80 -r 10.20.1.11:80 -g -w 1
-a -t 10.30.0.14:80 -r 10.20.1.12:80 -m -w 1
";

    #[test]
    fn ipvsadm_save_output_reads_and_writes_back_unchanged() {
        let mut out = String::new();
        for line in SAVED.lines() {
            match parse_line(line) {
                Ok(Some(Command::AddService(svc))) => write_service(&mut out, &svc).unwrap(),
                Ok(Some(Command::AddServer(key, s))) => write_server(&mut out, &key, &s).unwrap(),
                other => panic!("{line}: {other:?}"),
            }
            out.push('\n');
        }
        assert_eq!(out, SAVED);
    }

    #[test]
    fn ipvsadm_save_output_means_what_it_says() {
        let cmds: Vec<Command> = SAVED
            .lines()
            .map(|l| parse_line(l).unwrap().unwrap())
            .collect();
        let Command::AddService(s) = cmds[3] else {
            panic!()
        };
        assert_eq!(
            s.persistence,
            Some(Persistence {
                timeout_secs: 1800,
                prefix: 24
            })
        );
        let Command::AddServer(_, r) = cmds[4] else {
            panic!()
        };
        assert_eq!((r.weight, r.method), (0, ForwardMethod::Route));
        let Command::AddService(s) = cmds[9] else {
            panic!()
        };
        assert_eq!(
            s.key,
            ServiceKey::tcp("[2001:db8::11]:443".parse().unwrap())
        );
        assert_eq!(s.persistence.map(|p| p.prefix), Some(64));
        assert_eq!(
            s.flags,
            SchedFlags {
                fallback: true,
                port: true
            }
        );
        let Command::AddService(s) = cmds[10] else {
            panic!()
        };
        assert_eq!(s.key, ServiceKey::Fwmark { mark: 7, v6: false });
        assert_eq!(
            (s.scheduler, s.flags.port, s.flags.fallback),
            (SchedulerKind::Mh, true, false)
        );
        let Command::AddServer(k, r) = cmds[12] else {
            panic!()
        };
        assert_eq!(k, ServiceKey::Fwmark { mark: 8, v6: true });
        assert_eq!(r.addr, "[2001:db8::3]:0".parse().unwrap());
        // ipvsadm v1.31 saves tunnel servers with `--tun-type ipip`.
        assert_eq!(
            parse_line("-a -f 7 -r 10.20.1.6:0 -i -w 2 --tun-type ipip"),
            Ok(Some(Command::AddServer(
                ServiceKey::Fwmark { mark: 7, v6: false },
                {
                    let mut r = ServerConfig::new(
                        "10.20.1.6:0".parse().unwrap(),
                        ForwardMethod::Tunnel(TunnelKind::Ipip),
                    );
                    r.weight = 2;
                    r
                }
            )))
        );
    }

    #[test]
    fn writer_adds_thresholds_and_table_size() {
        let key = ServiceKey::tcp("10.0.0.1:80".parse().unwrap());
        let mut s = ServerConfig::new("10.0.1.2:80".parse().unwrap(), ForwardMethod::Masq);
        s.u_threshold = 100;
        s.l_threshold = 20;
        let mut out = String::new();
        write_server(&mut out, &key, &s).unwrap();
        assert_eq!(out, "-a -t 10.0.0.1:80 -r 10.0.1.2:80 -m -w 1 -x 100 -y 20");
        let mut svc = ServiceConfig::new(key);
        svc.scheduler = SchedulerKind::Mh;
        svc.table_size = Some(4093);
        out.clear();
        write_service(&mut out, &svc).unwrap();
        assert_eq!(out, "-A -t 10.0.0.1:80 -s mh --table-size 4093");
        svc.sloppy_tcp = true;
        out.clear();
        write_service(&mut out, &svc).unwrap();
        assert_eq!(out, "-A -t 10.0.0.1:80 -s mh --table-size 4093 --sloppy");
    }

    #[test]
    fn write_save_writes_services_then_their_servers_in_the_given_order() {
        let a = ServiceConfig::new(ServiceKey::tcp("10.0.0.1:80".parse().unwrap()));
        let b = ServiceConfig::new(ServiceKey::udp("10.0.0.2:53".parse().unwrap()));
        let r = |s: &str| ServerConfig::new(s.parse().unwrap(), ForwardMethod::Masq);
        let mut out = String::new();
        write_save(
            &mut out,
            [
                (a, Vec::from([r("10.0.1.2:80"), r("10.0.1.1:80")])),
                (b, Vec::new()),
            ],
        )
        .unwrap();
        assert_eq!(
            out,
            "-A -t 10.0.0.1:80 -s wlc\n\
             -a -t 10.0.0.1:80 -r 10.0.1.2:80 -m -w 1\n\
             -a -t 10.0.0.1:80 -r 10.0.1.1:80 -m -w 1\n\
             -A -u 10.0.0.2:53 -s wlc\n"
        );
    }

    #[test]
    fn commands_display_as_lines() {
        let key = ServiceKey::Fwmark { mark: 3, v6: true };
        let cases: [(Command, &str); 8] = [
            (Command::DelService(key), "-D -f 3 -6"),
            (
                Command::DelServer(key, "[::2]:0".parse().unwrap()),
                "-d -f 3 -6 -r [::2]:0",
            ),
            (Command::Zero(None), "-Z"),
            (
                Command::SetTimeouts(Timeouts {
                    tcp: 900,
                    tcp_fin: 120,
                    udp: 300,
                }),
                "--set 900 120 300",
            ),
            (
                Command::Set(Setting::ExpireNodestConn(true)),
                "--expire-nodest-conn 1",
            ),
            (
                Command::List(ListOptions {
                    numeric: true,
                    exact: true,
                    view: ListView::Stats,
                    service: Some(key),
                }),
                "-L -n --exact --stats -f 3 -6",
            ),
            (Command::Save { numeric: true }, "-S -n"),
            (Command::Restore, "-R"),
        ];
        for (c, s) in cases {
            assert_eq!(c.to_string(), s);
            assert_eq!(parse_line(s), Ok(Some(c)));
        }
    }

    fn arb_ip(v6: bool) -> BoxedStrategy<IpAddr> {
        if v6 {
            any::<u128>()
                .prop_map(|a| IpAddr::V6(Ipv6Addr::from(a)))
                .boxed()
        } else {
            any::<u32>()
                .prop_map(|a| IpAddr::V4(Ipv4Addr::from(a)))
                .boxed()
        }
    }

    fn arb_key() -> impl Strategy<Value = ServiceKey> {
        prop_oneof![
            (any::<bool>(), any::<bool>(), any::<u16>()).prop_flat_map(|(udp, v6, port)| arb_ip(
                v6
            )
            .prop_map(move |ip| {
                let vip = SocketAddr::new(ip, port);
                if udp {
                    ServiceKey::udp(vip)
                } else {
                    ServiceKey::tcp(vip)
                }
            })),
            (1..=u32::MAX, any::<bool>()).prop_map(|(mark, v6)| ServiceKey::Fwmark { mark, v6 }),
        ]
    }

    /// Any service configuration ipvsadm's checks accept.
    fn arb_service() -> impl Strategy<Value = ServiceConfig> {
        (
            arb_key(),
            proptest::sample::select(&SchedulerKind::ALL[..]),
            any::<(bool, bool, bool, bool, bool)>(),
            (1..=crate::ipvsadm::MAX_TIMEOUT_SECS, 0u8..=128),
            1..=u32::MAX,
        )
            .prop_map(
                |(key, scheduler, (fallback, port, persist, ops, sloppy), (t, prefix), size)| {
                    let mut c = ServiceConfig::new(key);
                    c.scheduler = scheduler;
                    c.flags = SchedFlags { fallback, port };
                    let zero_port = matches!(key, ServiceKey::Addr { vip, .. } if vip.port() == 0);
                    if persist || zero_port {
                        let prefix = if key.is_ipv6() {
                            prefix.max(1)
                        } else {
                            prefix % 33
                        };
                        c.persistence = Some(Persistence {
                            timeout_secs: t,
                            prefix,
                        });
                    }
                    let tcp = matches!(
                        key,
                        ServiceKey::Addr {
                            proto: Protocol::Tcp,
                            ..
                        }
                    );
                    c.one_packet = ops && !tcp;
                    let udp = matches!(
                        key,
                        ServiceKey::Addr {
                            proto: Protocol::Udp,
                            ..
                        }
                    );
                    c.sloppy_tcp = sloppy && !udp;
                    if scheduler.has_table() && size % 2 == 0 {
                        c.table_size = Some(size);
                    }
                    c
                },
            )
    }

    /// Any real server ipvsadm's checks accept for `key`.
    fn arb_server(key: ServiceKey) -> impl Strategy<Value = ServerConfig> {
        (
            proptest::sample::select(
                &[
                    ForwardMethod::Masq,
                    ForwardMethod::Route,
                    ForwardMethod::Tunnel(TunnelKind::Ipip),
                    ForwardMethod::Tunnel(TunnelKind::Gue {
                        port: 6080,
                        csum: GueCsum::None,
                    }),
                    ForwardMethod::Tunnel(TunnelKind::Gue {
                        port: 1,
                        csum: GueCsum::Csum,
                    }),
                    ForwardMethod::Tunnel(TunnelKind::Gue {
                        port: 65535,
                        csum: GueCsum::RemCsum,
                    }),
                    ForwardMethod::Tunnel(TunnelKind::Gre { csum: false }),
                    ForwardMethod::Tunnel(TunnelKind::Gre { csum: true }),
                ][..],
            ),
            any::<bool>(),
            any::<u16>(),
            0..=ServerConfig::MAX_WEIGHT,
            0..=i32::MAX as u32,
            any::<u32>(),
        )
            .prop_flat_map(move |(method, cross, port, weight, u, l)| {
                let v6 = key.is_ipv6() != (cross && method.is_tunnel());
                arb_ip(v6).prop_map(move |ip| {
                    let port = match key {
                        ServiceKey::Addr { vip, .. } if method != ForwardMethod::Masq => vip.port(),
                        _ => port,
                    };
                    let mut s = ServerConfig::new(SocketAddr::new(ip, port), method);
                    s.weight = weight;
                    s.u_threshold = u;
                    s.l_threshold = if u == 0 { 0 } else { l % (u + 1) };
                    s
                })
            })
    }

    fn arb_service_and_server() -> impl Strategy<Value = (ServiceConfig, ServerConfig)> {
        arb_service().prop_flat_map(|svc| arb_server(svc.key).prop_map(move |s| (svc, s)))
    }

    proptest! {
        #[test]
        fn service_round_trips(svc in arb_service()) {
            let mut line = String::new();
            write_service(&mut line, &svc).unwrap();
            prop_assert_eq!(parse_line(&line), Ok(Some(Command::AddService(svc))), "{}", line);
            let edit = Command::EditService(svc);
            prop_assert_eq!(parse_line(&edit.to_string()), Ok(Some(edit)));
        }

        #[test]
        fn server_round_trips((svc, s) in arb_service_and_server()) {
            let mut line = String::new();
            write_server(&mut line, &svc.key, &s).unwrap();
            prop_assert_eq!(parse_line(&line), Ok(Some(Command::AddServer(svc.key, s))), "{}", line);
            let edit = Command::EditServer(svc.key, s);
            prop_assert_eq!(parse_line(&edit.to_string()), Ok(Some(edit)));
            let del = Command::DelServer(svc.key, s.addr);
            prop_assert_eq!(parse_line(&del.to_string()), Ok(Some(del)));
        }

        #[test]
        fn save_round_trips(table in proptest::collection::vec(
            arb_service().prop_flat_map(|svc| {
                proptest::collection::vec(arb_server(svc.key), 0..4).prop_map(move |v| (svc, v))
            }),
            0..4,
        )) {
            let mut text = String::new();
            write_save(&mut text, table.iter().cloned()).unwrap();
            let mut want = Vec::new();
            for (svc, servers) in &table {
                want.push(Command::AddService(*svc));
                want.extend(servers.iter().map(|s| Command::AddServer(svc.key, *s)));
            }
            let got: Vec<Command> = text.lines().map(|l| parse_line(l).unwrap().unwrap()).collect();
            prop_assert_eq!(got, want);
            let _ = text.to_string();
        }
    }
}
