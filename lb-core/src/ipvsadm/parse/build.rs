//! Passes 2 and 3: check the filed options against the command, then turn them into a
//! [`Command`] with ipvsadm's defaults and cross-checks.

use core::net::SocketAddr;

use super::super::{
    Command, ListOptions, ListView, ParseError, ParseErrorKind as K, Setting,
    DEFAULT_PERSISTENCE_SECS, MAX_TIMEOUT_SECS,
};
use super::collect::{collect, Hit, Hits};
use super::lex::Tok;
use super::options::{Flag, Slot, ALL_SLOTS};
use super::values::{endpoint, netmask, number, sched_flags};
use crate::addr::Protocol;
use crate::config::{
    ForwardMethod, GueCsum, Persistence, SchedulerKind, ServerConfig, ServiceConfig, ServiceKey,
    Timeouts, TunnelKind,
};
use crate::sync::daemon::{DaemonConfig, IfName, SyncRole};

/// Keeps the error at the smallest token index.
fn earliest(best: &mut Option<ParseError>, e: ParseError) {
    if best.as_ref().is_none_or(|b| e.token < b.token) {
        *best = Some(e);
    }
}

pub(super) fn parse_tokens<'a, I: Iterator<Item = Tok<'a>>>(
    mut toks: core::iter::Peekable<I>,
) -> Result<Command, ParseError> {
    let first = toks.peek().copied();
    let hits = collect(toks)?;

    // Pass 2: a command, and only options it allows.
    let Some(cmd) = hits.get(Slot::Command) else {
        return Err(match first {
            Some(t) => t.err(K::MissingCommand),
            None => ParseError::new(0, None, "", K::MissingCommand),
        });
    };
    let mut bad = None;
    for slot in ALL_SLOTS {
        if slot == Slot::Command {
            continue;
        }
        if let Some(h) = hits.get(slot) {
            if !cmd.flag.allows(slot) {
                earliest(&mut bad, h.opt.err(K::NotValidFor(cmd.flag.command_name())));
            }
        }
    }
    if cmd.flag != Flag::SetTimeouts {
        for a in hits.args.iter().flatten() {
            earliest(&mut bad, a.err(K::UnexpectedArgument));
        }
    }
    if let Some(e) = bad {
        return Err(e);
    }

    // Pass 3: values, defaults, cross-checks.
    let need_service = || service_key(&hits)?.ok_or_else(|| cmd.opt.err(K::MissingService));
    Ok(match cmd.flag {
        Flag::AddService => Command::AddService(service_config(&hits, need_service()?)?),
        Flag::EditService => Command::EditService(service_config(&hits, need_service()?)?),
        Flag::DelService => Command::DelService(need_service()?),
        Flag::AddServer => {
            let key = need_service()?;
            Command::AddServer(key, server_config(&hits, &cmd, key)?)
        }
        Flag::EditServer => {
            let key = need_service()?;
            Command::EditServer(key, server_config(&hits, &cmd, key)?)
        }
        Flag::DelServer => {
            let key = need_service()?;
            let r = hits
                .value(Slot::RealServer)
                .ok_or_else(|| cmd.opt.err(K::MissingRealServer))?;
            let (ip, port) = endpoint(&r)?;
            Command::DelServer(key, SocketAddr::new(ip, port.unwrap_or(key_port(&key))))
        }
        Flag::Clear => Command::Clear,
        Flag::Zero => Command::Zero(service_key(&hits)?),
        Flag::SetTimeouts => {
            let mut t = [0u32; 3];
            for (slot, arg) in t.iter_mut().zip(hits.args) {
                let a = arg.ok_or_else(|| cmd.opt.err(K::MissingTimeouts))?;
                *slot = number(&a, 0, MAX_TIMEOUT_SECS, "timeout")?;
            }
            Command::SetTimeouts(Timeouts {
                tcp: t[0],
                tcp_fin: t[1],
                udp: t[2],
            })
        }
        Flag::List => Command::List(list_options(&hits)?),
        Flag::Save => Command::Save {
            numeric: hits.has(Slot::Numeric),
        },
        Flag::Restore => Command::Restore,
        Flag::StartDaemon => Command::StartDaemon(daemon_config(&hits, &cmd)?),
        Flag::StopDaemon => Command::StopDaemon(sync_role(&cmd)?),
        flag @ (Flag::SyncThreshold | Flag::SyncPeriod | Flag::SyncVersion) => {
            let v = cmd.value.ok_or_else(|| cmd.opt.err(K::MissingValue))?;
            Command::Set(match flag {
                Flag::SyncThreshold => {
                    Setting::SyncThreshold(number(&v, 0, 255, "sync_threshold")? as u8)
                }
                Flag::SyncPeriod => Setting::SyncPeriod(number(&v, 0, 255, "sync_period")? as u8),
                _ => Setting::SyncVersion(number(&v, 0, 1, "sync_version")? as u8),
            })
        }
        flag @ (Flag::ReplyRate | Flag::ReplyBurst | Flag::ReplyPeerInterval) => {
            let v = cmd.value.ok_or_else(|| cmd.opt.err(K::MissingValue))?;
            let (what, make): (_, fn(u32) -> Setting) = match flag {
                Flag::ReplyRate => ("reply_rate", Setting::ReplyRate),
                Flag::ReplyBurst => ("reply_burst", Setting::ReplyBurst),
                _ => ("reply_peer_interval", Setting::ReplyPeerInterval),
            };
            Command::Set(make(number(&v, 0, u32::MAX, what)?))
        }
        Flag::EmbryonicPrefixShare => {
            let v = cmd.value.ok_or_else(|| cmd.opt.err(K::MissingValue))?;
            // At most 100, so the value fits a u8.
            Command::Set(Setting::EmbryonicPrefixShare(
                number(&v, 0, 100, "embryonic_prefix_share")? as u8,
            ))
        }
        setting => {
            let v = cmd.value.ok_or_else(|| cmd.opt.err(K::MissingValue))?;
            let (what, max, make): (_, _, fn(u8) -> Setting) = match setting {
                Flag::ConnReuseMode => ("conn_reuse_mode", 3, Setting::ConnReuseMode),
                Flag::SecureTcp => ("secure_tcp", 3, Setting::SecureTcp),
                Flag::DropEntry => ("drop_entry", 3, Setting::DropEntry),
                Flag::ExpireNodestConn => ("expire_nodest_conn", 1, |n| {
                    Setting::ExpireNodestConn(n == 1)
                }),
                Flag::ExpireQuiescentTemplate => ("expire_quiescent_template", 1, |n| {
                    Setting::ExpireQuiescentTemplate(n == 1)
                }),
                _ => ("sloppy_tcp", 1, |n| Setting::SloppyTcp(n == 1)),
            };
            // `max` ≤ 3, so the value fits a u8.
            Command::Set(make(number(&v, 0, max, what)? as u8))
        }
    })
}

/// `--start-daemon`'s and `--stop-daemon`'s value.
fn sync_role(cmd: &Hit<'_>) -> Result<SyncRole, ParseError> {
    let v = cmd.value.ok_or_else(|| cmd.opt.err(K::MissingValue))?;
    match v.text {
        "master" => Ok(SyncRole::Master),
        "backup" => Ok(SyncRole::Backup),
        _ => Err(v.err(K::BadSyncRole)),
    }
}

/// `--start-daemon ROLE` with its options on top of ipvsadm's defaults (interface `eth0` when
/// none is given, as ipvsadm does).
fn daemon_config(hits: &Hits<'_>, cmd: &Hit<'_>) -> Result<DaemonConfig, ParseError> {
    let role = sync_role(cmd)?;
    let interface = match hits.value(Slot::McastInterface) {
        Some(v) => IfName::new(v.text).ok_or_else(|| v.err(K::BadInterface))?,
        None => IfName::new("eth0").ok_or_else(|| cmd.opt.err(K::BadInterface))?,
    };
    let mut d = DaemonConfig::new(role, interface);
    if let Some(v) = hits.value(Slot::SyncId) {
        d.syncid = number(&v, 0, 255, "syncid")? as u8;
    }
    if let Some(v) = hits.value(Slot::McastGroup) {
        let (ip, port) = endpoint(&v)?;
        // A unicast address is our extension (ipvsadm wants a multicast group): the master
        // sends to it, the backup listens on it (its own address).
        if port.is_some() || ip.is_unspecified() || ip_is_broadcast(ip) {
            return Err(v.err(K::NotMulticast));
        }
        d.group = ip;
    }
    if let Some(v) = hits.value(Slot::McastPort) {
        d.port = number(&v, 1, 65535, "mcast port")? as u16;
    }
    if let Some(v) = hits.value(Slot::McastTtl) {
        d.ttl = number(&v, 1, 255, "mcast ttl")? as u8;
    }
    if let Some(v) = hits.value(Slot::SyncMaxlen) {
        d.maxlen = Some(number(&v, 1, 65507, "sync maxlen")? as u16);
    }
    Ok(d)
}

fn ip_is_broadcast(ip: core::net::IpAddr) -> bool {
    matches!(ip, core::net::IpAddr::V4(a) if a.is_broadcast())
}

/// The service port (0 for fwmark services).
fn key_port(key: &ServiceKey) -> u16 {
    match key {
        ServiceKey::Addr { vip, .. } => vip.port(),
        ServiceKey::Fwmark { .. } => 0,
    }
}

/// `-t|-u ADDR[:PORT]` or `-f MARK [-6]`, if given.
fn service_key(hits: &Hits<'_>) -> Result<Option<ServiceKey>, ParseError> {
    let Some(svc) = hits.get(Slot::Service) else {
        if let Some(six) = hits.get(Slot::Ipv6) {
            return Err(six.opt.err(K::Ipv6NeedsFwmark));
        }
        return Ok(None);
    };
    let Some(v) = svc.value else {
        return Err(svc.opt.err(K::MissingValue));
    };
    let key = match svc.flag {
        Flag::Fwmark => ServiceKey::Fwmark {
            mark: number(&v, 1, u32::MAX, "fwmark")?,
            v6: hits.has(Slot::Ipv6),
        },
        flag => {
            if let Some(six) = hits.get(Slot::Ipv6) {
                return Err(six.opt.err(K::Ipv6NeedsFwmark));
            }
            let (ip, port) = endpoint(&v)?;
            let proto = if flag == Flag::Udp {
                Protocol::Udp
            } else {
                Protocol::Tcp
            };
            ServiceKey::Addr {
                proto,
                vip: SocketAddr::new(ip, port.unwrap_or(0)),
            }
        }
    };
    Ok(Some(key))
}

/// `-A`/`-E`'s options on top of ipvsadm's defaults.
fn service_config(hits: &Hits<'_>, key: ServiceKey) -> Result<ServiceConfig, ParseError> {
    let mut cfg = ServiceConfig::new(key);
    if let Some(v) = hits.value(Slot::Scheduler) {
        cfg.scheduler =
            SchedulerKind::from_name(v.text).ok_or_else(|| v.err(K::UnknownScheduler))?;
    }
    if let Some(v) = hits.value(Slot::SchedFlags) {
        cfg.flags = sched_flags(&v, cfg.scheduler)?;
    }
    match hits.get(Slot::Persistent) {
        Some(p) => {
            let timeout_secs = match p.value {
                Some(v) => number(&v, 1, MAX_TIMEOUT_SECS, "persistence timeout")?,
                None => DEFAULT_PERSISTENCE_SECS,
            };
            let v6 = key.is_ipv6();
            let prefix = match hits.value(Slot::Netmask) {
                Some(m) => netmask(&m, v6)?,
                None if v6 => 128,
                None => 32,
            };
            cfg.persistence = Some(Persistence {
                timeout_secs,
                prefix,
            });
        }
        None => {
            if let Some(m) = hits.get(Slot::Netmask) {
                return Err(m.opt.err(K::NetmaskNeedsPersistence));
            }
        }
    }
    if let Some(o) = hits.get(Slot::Ops) {
        if let ServiceKey::Addr {
            proto: Protocol::Tcp,
            ..
        } = key
        {
            return Err(o.opt.err(K::OpsNeedsUdp));
        }
        cfg.one_packet = true;
    }
    if let Some(v) = hits.value(Slot::TableSize) {
        let n = number(&v, 1, u32::MAX, "table size")?;
        if !cfg.scheduler.has_table() {
            return Err(v.err(K::TableSizeNeedsHashScheduler));
        }
        cfg.table_size = Some(n);
    }
    if let Some(s) = hits.get(Slot::Sloppy) {
        if let ServiceKey::Addr {
            proto: Protocol::Udp,
            ..
        } = key
        {
            return Err(s.opt.err(K::SloppyNeedsTcp));
        }
        cfg.sloppy_tcp = true;
    }
    if let (ServiceKey::Addr { vip, .. }, None) = (key, cfg.persistence) {
        if vip.port() == 0 {
            if let Some(v) = hits.value(Slot::Service) {
                return Err(v.err(K::PortZeroNeedsPersistence));
            }
        }
    }
    Ok(cfg)
}

/// `-a`/`-e`'s options on top of ipvsadm's defaults.
fn server_config(
    hits: &Hits<'_>,
    cmd: &Hit<'_>,
    key: ServiceKey,
) -> Result<ServerConfig, ParseError> {
    let r = hits
        .value(Slot::RealServer)
        .ok_or_else(|| cmd.opt.err(K::MissingRealServer))?;
    let (ip, port) = endpoint(&r)?;
    let method = match hits.get(Slot::Method).map(|h| h.flag) {
        Some(Flag::Tunnel) => ForwardMethod::Tunnel(tunnel_kind(hits)?),
        flag => {
            if let Some(t) = [Slot::TunType, Slot::TunPort, Slot::TunCsum]
                .into_iter()
                .find_map(|s| hits.get(s))
            {
                return Err(t.opt.err(K::TunnelTypeNeedsTunnel));
            }
            if flag == Some(Flag::Masq) {
                ForwardMethod::Masq
            } else {
                ForwardMethod::Route
            }
        }
    };
    let svc_port = key_port(&key);
    let fwmark = matches!(key, ServiceKey::Fwmark { .. });
    // ipvsadm: DR and tunnel servers of a non-fwmark service take the service port.
    let port = if !fwmark && method != ForwardMethod::Masq {
        svc_port
    } else {
        port.unwrap_or(svc_port)
    };
    if ip.is_ipv6() != key.is_ipv6() && !method.is_tunnel() {
        return Err(r.err(K::FamilyMismatch));
    }
    let mut cfg = ServerConfig::new(SocketAddr::new(ip, port), method);
    if let Some(v) = hits.value(Slot::Weight) {
        cfg.weight = number(&v, 0, ServerConfig::MAX_WEIGHT, "weight")?;
    }
    if let Some(v) = hits.value(Slot::UThreshold) {
        cfg.u_threshold = number(&v, 0, i32::MAX as u32, "upper threshold")?;
    }
    if let Some(v) = hits.value(Slot::LThreshold) {
        cfg.l_threshold = number(&v, 0, i32::MAX as u32, "lower threshold")?;
        if cfg.l_threshold > cfg.u_threshold {
            return Err(v.err(K::ThresholdOrder));
        }
    }
    Ok(cfg)
}

/// `-i`'s encapsulation: `--tun-type` (ipip by default), `--tun-port` (GUE, required),
/// `--tun-nocsum|--tun-csum|--tun-remcsum` (GUE; GRE without remcsum), as ipvsadm takes them.
fn tunnel_kind(hits: &Hits<'_>) -> Result<TunnelKind, ParseError> {
    let port = hits.get(Slot::TunPort);
    let csum = hits.get(Slot::TunCsum);
    // Pass 1 guarantees `--tun-type` its value.
    let ty = hits.value(Slot::TunType);
    let kind = match ty {
        Some(v) if v.text == "gue" => {
            let Some(p) = port.and_then(|p| p.value) else {
                return Err(v.err(K::GueNeedsPort));
            };
            let n = number(&p, 0, u32::from(u16::MAX), "tunnel port")?;
            let Ok(port @ 1..) = u16::try_from(n) else {
                return Err(p.err(K::GueNeedsPort));
            };
            let csum = match csum.map(|h| h.flag) {
                Some(Flag::TunCsum) => GueCsum::Csum,
                Some(Flag::TunRemcsum) => GueCsum::RemCsum,
                _ => GueCsum::None,
            };
            TunnelKind::Gue { port, csum }
        }
        Some(v) if v.text == "gre" => {
            if let Some(p) = port {
                return Err(p.opt.err(K::TunnelOptionMismatch));
            }
            match csum {
                Some(h) if h.flag == Flag::TunRemcsum => {
                    return Err(h.opt.err(K::TunnelOptionMismatch))
                }
                Some(h) => TunnelKind::Gre {
                    csum: h.flag == Flag::TunCsum,
                },
                None => TunnelKind::Gre { csum: false },
            }
        }
        Some(v) if v.text != "ipip" => return Err(v.err(K::UnknownTunnelType)),
        _ => {
            if let Some(h) = port.or(csum) {
                return Err(h.opt.err(K::TunnelOptionMismatch));
            }
            TunnelKind::Ipip
        }
    };
    Ok(kind)
}

/// `-L`'s options; ipvsadm's exclusions between the views and a service.
fn list_options(hits: &Hits<'_>) -> Result<ListOptions, ParseError> {
    let mut opts = ListOptions {
        numeric: hits.has(Slot::Numeric),
        exact: hits.has(Slot::Exact),
        view: ListView::Services,
        service: service_key(hits)?,
    };
    let views = [
        (Slot::Stats, ListView::Stats),
        (Slot::Rate, ListView::Rate),
        (Slot::Thresholds, ListView::Thresholds),
        (Slot::TunInfo, ListView::TunInfo),
        (Slot::Timeout, ListView::Timeouts),
        (Slot::Connection, ListView::Connections),
        (Slot::Daemon, ListView::Daemon),
    ];
    // The first view option by position wins; any later one conflicts.
    let mut chosen: Option<Hit<'_>> = None;
    let mut conflict = None;
    for (slot, view) in views {
        let Some(h) = hits.get(slot) else { continue };
        match chosen {
            Some(c) if c.opt.idx <= h.opt.idx => {
                earliest(&mut conflict, h.opt.err(K::ConflictingOptions));
            }
            Some(c) => {
                earliest(&mut conflict, c.opt.err(K::ConflictingOptions));
                chosen = Some(h);
                opts.view = view;
            }
            None => {
                chosen = Some(h);
                opts.view = view;
            }
        }
    }
    if let (Some(c), Some(s)) = (chosen, hits.get(Slot::Service)) {
        if matches!(opts.view, ListView::Timeouts | ListView::Connections) {
            let later = if c.opt.idx > s.opt.idx { c.opt } else { s.opt };
            earliest(&mut conflict, later.err(K::ConflictingOptions));
        }
    }
    match conflict {
        Some(e) => Err(e),
        None => Ok(opts),
    }
}
