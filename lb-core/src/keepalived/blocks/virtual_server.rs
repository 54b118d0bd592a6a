//! Top level (`virtual_server`, the skipped blocks) and the `virtual_server` block.

use super::super::ast::{Location, VirtualServer};
use super::super::error::{ErrorKind as K, NoticeKind};
use super::super::lex::Stmt;
use super::super::parse::{Block, Next, Parser, VsDraft};
use super::super::values::{self, count, flag, none, one, optional, uint};
use super::super::{Fault, Files};
use super::{endpoint, key_port, method, none_after, SCRIPTS, SORRY_NAT};
use crate::addr::Protocol;
use crate::config::{ForwardMethod, SchedulerKind, ServerConfig, ServiceConfig, ServiceKey};
use crate::ipvsadm::MAX_TIMEOUT_SECS;

/// keepalived's `persistence_timeout` without a value, in seconds (ipvsadm's bare `-p` is 300).
pub const DEFAULT_PERSISTENCE_SECS: u32 = 360;

/// Top-level blocks that are keepalived's own business, skipped with one notice each
/// (and every block whose keyword starts with `vrrp_`).
const SKIPPED: &[&str] = &[
    "global_defs",
    "static_ipaddress",
    "static_routes",
    "static_rules",
    "track_file",
    "track_process",
    "garp_group",
    "linkbeat_interfaces",
];

impl<F: Files + ?Sized> Parser<'_, '_, '_, '_, F> {
    /// Top level: `virtual_server`, the skipped blocks; anything else is refused.
    pub(crate) fn top<'a>(
        &mut self,
        at: Location,
        name: &str,
        s: &Stmt<'a>,
    ) -> Result<Next, Fault<'a>> {
        let kw = s.keyword();
        if SKIPPED.contains(&kw) || kw.starts_with("vrrp_") {
            if s.open {
                self.note(name, s.line, kw, NoticeKind::SkippedBlock);
            }
            return Ok(Next::Push(Block::Skip { depth: 0 }, "skipped"));
        }
        match kw {
            "virtual_server" => self.open_virtual_server(at, s),
            "virtual_server_group" => Err(s.fault(
                kw,
                K::Unsupported("write one virtual_server per address instead"),
            )),
            "includer" | "includem" | "includew" | "includeb" | "includea" => {
                Err(s.fault(kw, K::Unsupported("include's variants; use include")))
            }
            _ => Err(s.fault(kw, K::UnknownKeyword { block: "top level" })),
        }
    }

    fn open_virtual_server<'a>(&mut self, at: Location, s: &Stmt<'a>) -> Result<Next, Fault<'a>> {
        let max = self.cfg.vs.len();
        if self.cfg.n.vs == max {
            return Err(s.fault(
                s.keyword(),
                K::TooMany {
                    what: "virtual_server",
                    max,
                },
            ));
        }
        let key = match s.args() {
            ["group", ..] => {
                return Err(s.fault(
                    "group",
                    K::Unsupported("virtual_server_group; write one virtual_server per address"),
                ))
            }
            ["fwmark", rest @ ..] => {
                let Some(&mark) = rest.first() else {
                    return Err(s.fault("fwmark", K::MissingValue("a firewall mark")));
                };
                none_after(s, 2)?;
                ServiceKey::Fwmark {
                    // Below u32::MAX.
                    mark: uint(s, mark, 1, u32::MAX.into(), "fwmark")? as u32,
                    v6: false,
                }
            }
            _ => ServiceKey::tcp(endpoint(s, 0)?),
        };
        let start = self.cfg.n.rs as u32;
        *self.cur_vs() = VirtualServer {
            at,
            service: ServiceConfig::new(key),
            ..VirtualServer::EMPTY
        };
        self.cur_vs().reals.start = start;
        self.cur_vs().reals.end = start;
        self.vs = VsDraft::default();
        Ok(Next::Push(Block::VirtualServer, "virtual_server"))
    }

    pub(crate) fn in_virtual_server<'a>(
        &mut self,
        at: Location,
        name: &str,
        s: &Stmt<'a>,
    ) -> Result<Next, Fault<'a>> {
        let kw = s.keyword();
        let line = s.line;
        match kw {
            "lb_algo" | "lvs_sched" => {
                let v = one(s, "a scheduler (rr, wrr, lc, wlc, sh, mh, ...)")?;
                self.cur_vs().service.scheduler = SchedulerKind::from_name(v).ok_or_else(|| {
                    s.fault(
                        v,
                        K::BadValue(
                            "a scheduler: rr wrr lc wlc sed nq lblc lblcr dh sh mh fo ovf twos",
                        ),
                    )
                })?;
            }
            "lb_kind" | "lvs_method" => self.cur_vs().written.method = Some(method(s)?),
            "protocol" => {
                let v = one(s, "TCP or UDP")?;
                let proto = match v {
                    "TCP" => Protocol::Tcp,
                    "UDP" => Protocol::Udp,
                    "SCTP" => return Err(s.fault(v, K::Unsupported("SCTP services"))),
                    _ => return Err(s.fault(v, K::BadValue("TCP or UDP"))),
                };
                self.vs.proto = Some(proto);
                if let ServiceKey::Addr { proto: p, .. } = &mut self.cur_vs().service.key {
                    *p = proto;
                }
            }
            "persistence_timeout" => {
                let secs = match optional(s)? {
                    None => DEFAULT_PERSISTENCE_SECS,
                    // Below MAX_TIMEOUT_SECS.
                    Some(v) => {
                        uint(s, v, 1, MAX_TIMEOUT_SECS.into(), "persistence timeout (s)")? as u32
                    }
                };
                self.vs.persistence_secs = Some(secs);
            }
            "persistence_granularity" => {
                let v6 = self.cur_vs().service.key.is_ipv6();
                self.vs.granularity = Some((values::netmask(s, v6)?, line));
            }
            "persistence_engine" => {
                return Err(s.fault(kw, K::Unsupported("persistence engines (sip)")))
            }
            "ops" => {
                none(s)?;
                self.vs.ops = Some(line);
                self.cur_vs().service.one_packet = true;
            }
            "flag-1" | "sh-fallback" | "mh-fallback" | "flag-2" | "sh-port" | "mh-port" => {
                none(s)?;
                let (name, needs): (&'static str, _) = match kw {
                    "flag-1" => ("flag-1", None),
                    "flag-2" => ("flag-2", None),
                    "sh-fallback" => ("sh-fallback", Some(SchedulerKind::Sh)),
                    "sh-port" => ("sh-port", Some(SchedulerKind::Sh)),
                    "mh-fallback" => ("mh-fallback", Some(SchedulerKind::Mh)),
                    _ => ("mh-port", Some(SchedulerKind::Mh)),
                };
                if let Some(sched) = needs {
                    self.vs.sched_flag = Some((name, sched, line));
                }
                let flags = &mut self.cur_vs().service.flags;
                match name {
                    "flag-1" => flags.fallback = true,
                    "flag-2" => flags.port = true,
                    _ => {
                        flags.set_by_name(name);
                    }
                }
            }
            "flag-3" => return Err(s.fault(kw, K::Unsupported("scheduler flag-3"))),
            "hashed" => {
                none(s)?;
                return Ok(self.ignore(name, s, "a kernel-internal flag with no effect"));
            }
            "ha_suspend" => {
                none(s)?;
                return Ok(self.ignore(
                    name,
                    s,
                    "lb runs no VRRP: its virtual addresses are always local, checks never pause",
                ));
            }
            "smtp_alert" => {
                optional(s)?;
                return Ok(self.ignore(name, s, "lb sends no mail"));
            }
            "snmp_name" => {
                one(s, "a name")?;
                return Ok(self.ignore(name, s, "lb has no SNMP agent"));
            }
            "weight" => {
                let max = ServerConfig::MAX_WEIGHT;
                self.cur_vs().written.weight = Some(count(s, 0, max, "weight")?);
            }
            "inhibit_on_failure" => self.cur_vs().written.inhibit_on_failure = Some(flag(s)?),
            "quorum" => self.cur_vs().quorum = count(s, 1, u32::MAX, "quorum")?,
            "hysteresis" => self.cur_vs().hysteresis = count(s, 0, u32::MAX, "hysteresis")?,
            "quorum_up" | "quorum_down" => return Err(s.fault(kw, K::Unsupported(SCRIPTS))),
            "sorry_server" => {
                let port = key_port(&self.cur_vs().service.key);
                let addr = endpoint(s, port)?;
                self.cur_vs().sorry_server = Some(ServerConfig::new(addr, ForwardMethod::Masq));
                self.vs.sorry = s.line;
            }
            "sorry_server_inhibit" => self.cur_vs().sorry_server_inhibit = flag(s)?,
            "sorry_server_lvs_method" => {
                if method(s)? != ForwardMethod::Masq {
                    let m = s.args().first().copied().unwrap_or_default();
                    return Err(s.fault(m, K::Unsupported(SORRY_NAT)));
                }
            }
            "omega" => self.cur_vs().omega = flag(s)?,
            "virtualhost" => self.cur_vs().virtualhost = Some(values::text(s, "a host name")?),
            "ip_family" => {
                let v = one(s, "inet or inet6")?;
                let v6 = match v {
                    "inet" => false,
                    "inet6" => true,
                    _ => return Err(s.fault(v, K::BadValue("inet or inet6"))),
                };
                if self.vs.reals_seen {
                    return Err(s.fault(
                        kw,
                        K::Invalid("ip_family must come before the real_server blocks"),
                    ));
                }
                match &mut self.cur_vs().service.key {
                    ServiceKey::Fwmark { v6: f, .. } => *f = v6,
                    key if key.is_ipv6() != v6 => {
                        return Err(s.fault(
                            v,
                            K::Invalid("differs from the virtual server's address family"),
                        ))
                    }
                    _ => {}
                }
            }
            "real_server" => return self.open_real_server(at, s),
            _ => {
                let mut w = self.cur_vs().written;
                if !self.common(s, &mut w, 1)? {
                    return Err(s.fault(
                        kw,
                        K::UnknownKeyword {
                            block: "virtual_server",
                        },
                    ));
                }
                self.cur_vs().written = w;
            }
        }
        Ok(Next::Plain)
    }
}
