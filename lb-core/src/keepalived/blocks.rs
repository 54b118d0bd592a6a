//! The keywords of each block: top level, `virtual_server`, `real_server`, the checkers and
//! `url`. Each statement is applied to the item being built, ignored with a notice, or refused.

use core::net::{IpAddr, SocketAddr};

use super::ast::{CheckKind, Checker, HttpProtocol, Location, RealServer, Url, VirtualServer};
use super::error::{ErrorKind as K, NoticeKind};
use super::lex::Stmt;
use super::parse::{Block, Next, Parser, VsDraft};
use super::values::{self, count, flag, none, one, optional, timer, uint};
use super::{Fault, Files};
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

const SCRIPTS: &str = "lb runs no scripts (notify_*, quorum_up, quorum_down)";
const METHODS: &str = "only NAT (lb_kind NAT) is supported yet; DR and TUN are not";
const OTHER_CHECKS: &str = "only TCP_CHECK and HTTP_GET are supported";

/// `lb_kind`/`lvs_method`: NAT, or a refusal naming the method.
fn method<'a>(s: &Stmt<'a>) -> Result<(), Fault<'a>> {
    let Some(&m) = s.args().first() else {
        return Err(s.fault(s.keyword(), K::MissingValue("NAT")));
    };
    match m {
        "NAT" => none_after(s, 1),
        "DR" | "TUN" => Err(s.fault(m, K::Unsupported(METHODS))),
        _ => Err(s.fault(m, K::BadValue("NAT, DR or TUN"))),
    }
}

/// Nothing after the first `n` arguments.
fn none_after<'a>(s: &Stmt<'a>, n: usize) -> Result<(), Fault<'a>> {
    match s.args().get(n) {
        Some(extra) => Err(s.fault(extra, K::ExtraArgument)),
        None => Ok(()),
    }
}

/// `IP [PORT]`: the address and the port, `default_port` if none.
fn endpoint<'a>(s: &Stmt<'a>, default_port: u16) -> Result<SocketAddr, Fault<'a>> {
    const WHAT: &str = "an address and a port";
    match s.args() {
        [] => Err(s.fault(s.keyword(), K::MissingValue(WHAT))),
        [ip] => Ok(SocketAddr::new(values::ip(s, ip)?, default_port)),
        [ip, port] => Ok(SocketAddr::new(values::ip(s, ip)?, values::port(s, port)?)),
        [_, _, extra, ..] => Err(s.fault(extra, K::ExtraArgument)),
    }
}

fn key_port(key: &ServiceKey) -> u16 {
    match key {
        ServiceKey::Addr { vip, .. } => vip.port(),
        ServiceKey::Fwmark { .. } => 0,
    }
}

impl<F: Files + ?Sized> Parser<'_, '_, '_, '_, F> {
    /// The virtual server being built.
    pub(crate) fn cur_vs(&mut self) -> &mut VirtualServer {
        &mut self.cfg.vs[self.cfg.n.vs]
    }

    fn cur_rs(&mut self) -> &mut RealServer {
        &mut self.cfg.rs[self.cfg.n.rs]
    }

    fn cur_ck(&mut self) -> &mut Checker {
        &mut self.cfg.ck[self.cfg.n.ck]
    }

    fn cur_url(&mut self) -> &mut Url {
        &mut self.cfg.urls[self.cfg.n.urls]
    }

    fn ignore(&mut self, name: &str, s: &Stmt<'_>, why: &'static str) -> Next {
        self.note(name, s.line, s.keyword(), NoticeKind::Ignored(why));
        Next::Plain
    }

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
            "lb_kind" | "lvs_method" => method(s)?,
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
            "sorry_server_lvs_method" | "sorry_server_lb_kind" => method(s)?,
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

    /// The keywords a virtual server, a real server and a checker share (timers, `retry`,
    /// `alpha`, `inhibit_on_failure`, `weight`); false if `s` is none of them.
    /// `min_retry`: 1 on virtual and real servers, 0 in a checker (keepalived's limits).
    fn common<'a>(
        &mut self,
        s: &Stmt<'a>,
        w: &mut super::ast::Written,
        min_retry: u32,
    ) -> Result<bool, Fault<'a>> {
        match s.keyword() {
            "delay_loop" => w.delay_loop = Some(timer(s, true)?),
            "connect_timeout" => w.connect_timeout = Some(timer(s, true)?),
            "delay_before_retry" => w.delay_before_retry = Some(timer(s, false)?),
            "warmup" => w.warmup = Some(timer(s, false)?),
            "retry" | "nb_get_retry" => w.retry = Some(count(s, min_retry, u32::MAX, "retry")?),
            "alpha" => w.alpha = Some(flag(s)?),
            _ => return Ok(false),
        }
        Ok(true)
    }

    fn open_real_server<'a>(&mut self, at: Location, s: &Stmt<'a>) -> Result<Next, Fault<'a>> {
        let max = self.cfg.rs.len();
        if self.cfg.n.rs == max {
            return Err(s.fault(
                s.keyword(),
                K::TooMany {
                    what: "real_server",
                    max,
                },
            ));
        }
        let key = self.cur_vs().service.key;
        let addr = endpoint(s, key_port(&key))?;
        if addr.is_ipv6() != key.is_ipv6() {
            return Err(s.fault(
                s.args()[0],
                K::Invalid("the real server's address family differs from the virtual server's"),
            ));
        }
        let start = self.cfg.n.ck as u32;
        *self.cur_rs() = RealServer {
            at,
            server: ServerConfig::new(addr, ForwardMethod::Masq),
            ..RealServer::EMPTY
        };
        self.cur_rs().checkers.start = start;
        self.cur_rs().checkers.end = start;
        self.vs.reals_seen = true;
        Ok(Next::Push(Block::RealServer, "real_server"))
    }

    pub(crate) fn in_real_server<'a>(
        &mut self,
        at: Location,
        name: &str,
        s: &Stmt<'a>,
    ) -> Result<Next, Fault<'a>> {
        let kw = s.keyword();
        match kw {
            "weight" => {
                let max = ServerConfig::MAX_WEIGHT;
                self.cur_rs().written.weight = Some(count(s, 0, max, "weight")?);
            }
            "inhibit_on_failure" => self.cur_rs().written.inhibit_on_failure = Some(flag(s)?),
            "lb_kind" | "lvs_method" => method(s)?,
            "uthreshold" => {
                self.cur_rs().server.u_threshold = count(s, 0, i32::MAX as u32, "uthreshold")?
            }
            "lthreshold" => {
                self.cur_rs().server.l_threshold = count(s, 0, i32::MAX as u32, "lthreshold")?;
                self.vs.lthreshold = s.line;
            }
            "notify_up" | "notify_down" => return Err(s.fault(kw, K::Unsupported(SCRIPTS))),
            "virtualhost" => self.cur_rs().virtualhost = Some(values::text(s, "a host name")?),
            "smtp_alert" => {
                optional(s)?;
                return Ok(self.ignore(name, s, "lb sends no mail"));
            }
            "TCP_CHECK" | "HTTP_GET" => return self.open_checker(at, s),
            "MISC_CHECK" => {
                return Err(s.fault(
                    kw,
                    K::Unsupported(
                        "MISC_CHECK is out of scope: lb runs no scripts; use TCP_CHECK or HTTP_GET",
                    ),
                ))
            }
            "SSL_GET" => {
                return Err(s.fault(
                    kw,
                    K::Unsupported("lb's checks speak no TLS; use TCP_CHECK or HTTP_GET"),
                ))
            }
            "DNS_CHECK" | "UDP_CHECK" | "PING_CHECK" | "SMTP_CHECK" | "BFD_CHECK"
            | "FILE_CHECK" => return Err(s.fault(kw, K::Unsupported(OTHER_CHECKS))),
            _ => {
                let mut w = self.cur_rs().written;
                if !self.common(s, &mut w, 1)? {
                    return Err(s.fault(
                        kw,
                        K::UnknownKeyword {
                            block: "real_server",
                        },
                    ));
                }
                self.cur_rs().written = w;
            }
        }
        Ok(Next::Plain)
    }

    fn open_checker<'a>(&mut self, at: Location, s: &Stmt<'a>) -> Result<Next, Fault<'a>> {
        let max = self.cfg.ck.len();
        if self.cfg.n.ck == max {
            return Err(s.fault(
                s.keyword(),
                K::TooMany {
                    what: "checker",
                    max,
                },
            ));
        }
        none(s)?;
        let (kind, keyword) = match s.keyword() {
            "HTTP_GET" => (CheckKind::Http, "HTTP_GET"),
            _ => (CheckKind::Tcp, "TCP_CHECK"),
        };
        let connect = self.cur_rs().server.addr;
        let start = self.cfg.n.urls as u32;
        *self.cur_ck() = Checker {
            at,
            kind,
            connect,
            ..Checker::EMPTY
        };
        self.cur_ck().urls.start = start;
        self.cur_ck().urls.end = start;
        Ok(Next::Push(Block::Checker, keyword))
    }

    pub(crate) fn in_checker<'a>(
        &mut self,
        at: Location,
        name: &str,
        s: &Stmt<'a>,
    ) -> Result<Next, Fault<'a>> {
        let kw = s.keyword();
        let http = self.cur_ck().kind == CheckKind::Http;
        let block = if http { "HTTP_GET" } else { "TCP_CHECK" };
        match kw {
            "connect_ip" => {
                let ip: IpAddr = values::ip(s, one(s, "an address")?)?;
                if ip.is_ipv6() != self.cur_ck().connect.is_ipv6() {
                    return Err(s.fault(
                        s.args()[0],
                        K::Invalid("connect_ip's address family differs from the real server's"),
                    ));
                }
                self.cur_ck().connect.set_ip(ip);
            }
            "connect_port" => {
                let p = values::port(s, one(s, "a port")?)?;
                self.cur_ck().connect.set_port(p);
            }
            "bindto" => self.cur_ck().bindto = Some(values::ip(s, one(s, "an address")?)?),
            "bind_port" => self.cur_ck().bind_port = Some(values::port(s, one(s, "a port")?)?),
            "bind_if" => {
                return Err(s.fault(
                    kw,
                    K::Unsupported("checks are not bound to an interface; use bindto"),
                ))
            }
            "fwmark" => {
                return Err(s.fault(kw, K::Unsupported("firewall marks (SO_MARK) on checks")))
            }
            "log_all_failures" => {
                optional(s)?;
                return Ok(self.ignore(name, s, "lb logs every change of a check's state"));
            }
            "url" if http => return self.open_url(at, s),
            "http_protocol" if http => {
                let v = one(s, "1.0, 1.0C or 1.1")?;
                self.cur_ck().http_protocol = match v {
                    "1.0" => HttpProtocol::Http10,
                    "1.0C" | "1.0c" => HttpProtocol::Http10Close,
                    "1.1" => HttpProtocol::Http11,
                    _ => return Err(s.fault(v, K::BadValue("1.0, 1.0C or 1.1"))),
                };
            }
            "fast_recovery" if http => self.cur_ck().fast_recovery = flag(s)?,
            "virtualhost" if http => {
                self.cur_ck().virtualhost = Some(values::text(s, "a host name")?)
            }
            _ => {
                let mut w = self.cur_ck().written;
                if !self.common(s, &mut w, 0)? {
                    return Err(s.fault(kw, K::UnknownKeyword { block }));
                }
                self.cur_ck().written = w;
            }
        }
        Ok(Next::Plain)
    }

    fn open_url<'a>(&mut self, at: Location, s: &Stmt<'a>) -> Result<Next, Fault<'a>> {
        let max = self.cfg.urls.len();
        if self.cfg.n.urls == max {
            return Err(s.fault(s.keyword(), K::TooMany { what: "url", max }));
        }
        none(s)?;
        *self.cur_url() = Url { at, ..Url::EMPTY };
        Ok(Next::Push(Block::Url, "url"))
    }

    pub(crate) fn in_url<'a>(&mut self, s: &Stmt<'a>) -> Result<Next, Fault<'a>> {
        let kw = s.keyword();
        match kw {
            "path" => self.cur_url().path = values::text(s, "a path")?,
            "digest" => self.cur_url().digest = Some(values::digest(s)?),
            "status_code" => self.cur_url().status = values::status_codes(s)?,
            "virtualhost" => self.cur_url().virtualhost = Some(values::text(s, "a host name")?),
            "regex" | "regex_no_match" | "regex_options" | "regex_stack" | "regex_min_offset"
            | "regex_max_offset" => {
                return Err(s.fault(
                    kw,
                    K::Unsupported("regular expressions on the body; use digest or status_code"),
                ))
            }
            _ => return Err(s.fault(kw, K::UnknownKeyword { block: "url" })),
        }
        Ok(Next::Plain)
    }
}
