//! The keywords of each block: top level and `virtual_server` (`virtual_server.rs`),
//! `real_server` (`real_server.rs`), the checkers and `url` (`checker.rs`). Each statement is
//! applied to the item being built, ignored with a notice, or refused.

use core::net::SocketAddr;

use super::ast::{Checker, RealServer, Url, VirtualServer, Written};
use super::error::{ErrorKind as K, NoticeKind};
use super::lex::Stmt;
use super::parse::{Next, Parser};
use super::values::{self, count, flag, timer};
use super::{Fault, Files};
use crate::config::{ForwardMethod, GueCsum, ServiceKey, TunnelKind};

mod checker;
mod real_server;
mod virtual_server;

pub use virtual_server::DEFAULT_PERSISTENCE_SECS;

pub(super) const SCRIPTS: &str = "lb runs no scripts (notify_*, quorum_up, quorum_down)";
pub(super) const SORRY_NAT: &str =
    "the sorry server forwards by NAT only (sorry_server_lvs_method NAT)";
pub(super) const OTHER_CHECKS: &str = "only TCP_CHECK and HTTP_GET are supported";

/// `lb_kind`/`lvs_method`: `NAT`, `DR` (direct routing, which the frontend must carry:
/// `Balancer::apply` says when it cannot) or `TUN [type {ipip|gue port NUM|gre}
/// [nocsum|csum|remcsum]]`, keepalived's tunnel syntax (default IPIP; the checksum options as
/// ipvsadm takes them: none for IPIP, `remcsum` for GUE only).
pub(super) fn method<'a>(s: &Stmt<'a>) -> Result<ForwardMethod, Fault<'a>> {
    let Some(&m) = s.args().first() else {
        return Err(s.fault(s.keyword(), K::MissingValue("NAT")));
    };
    let method = match m {
        "NAT" => ForwardMethod::Masq,
        "DR" => ForwardMethod::Route,
        "TUN" => return tunnel(s),
        _ => return Err(s.fault(m, K::BadValue("NAT, DR or TUN"))),
    };
    none_after(s, 1)?;
    Ok(method)
}

/// The arguments after `TUN`.
fn tunnel<'a>(s: &Stmt<'a>) -> Result<ForwardMethod, Fault<'a>> {
    let args = s.args();
    let mut at = 1;
    let mut kind = TunnelKind::Ipip;
    if args.get(at) == Some(&"type") {
        let Some(&t) = args.get(at + 1) else {
            return Err(s.fault(args[at], K::MissingValue("ipip, gue port NUM or gre")));
        };
        at += 2;
        kind = match t {
            "ipip" => TunnelKind::Ipip,
            "gre" => TunnelKind::Gre { csum: false },
            "gue" => {
                if args.get(at) != Some(&"port") {
                    return Err(s.fault(t, K::MissingValue("port NUM after gue")));
                }
                let Some(&p) = args.get(at + 1) else {
                    return Err(s.fault(args[at], K::MissingValue("a port")));
                };
                at += 2;
                let port = values::port(s, p)?;
                if port == 0 {
                    return Err(s.fault(p, K::BadValue("a GUE port from 1 to 65535")));
                }
                TunnelKind::Gue {
                    port,
                    csum: GueCsum::None,
                }
            }
            _ => return Err(s.fault(t, K::BadValue("ipip, gue or gre"))),
        };
    }
    if let Some(&c) = args.get(at) {
        kind = match (kind, c) {
            (_, "nocsum") => kind,
            (TunnelKind::Gue { port, .. }, "csum") => TunnelKind::Gue {
                port,
                csum: GueCsum::Csum,
            },
            (TunnelKind::Gue { port, .. }, "remcsum") => TunnelKind::Gue {
                port,
                csum: GueCsum::RemCsum,
            },
            (TunnelKind::Gre { .. }, "csum") => TunnelKind::Gre { csum: true },
            (TunnelKind::Ipip, "csum" | "remcsum") | (TunnelKind::Gre { .. }, "remcsum") => {
                return Err(s.fault(
                    c,
                    K::Invalid("checksum options are for gue (csum, remcsum) and gre (csum)"),
                ))
            }
            _ => return Err(s.fault(c, K::BadValue("nocsum, csum or remcsum"))),
        };
        at += 1;
    }
    none_after(s, at)?;
    Ok(ForwardMethod::Tunnel(kind))
}

/// Nothing after the first `n` arguments.
pub(super) fn none_after<'a>(s: &Stmt<'a>, n: usize) -> Result<(), Fault<'a>> {
    match s.args().get(n) {
        Some(extra) => Err(s.fault(extra, K::ExtraArgument)),
        None => Ok(()),
    }
}

/// `IP [PORT]`: the address and the port, `default_port` if none.
pub(super) fn endpoint<'a>(s: &Stmt<'a>, default_port: u16) -> Result<SocketAddr, Fault<'a>> {
    const WHAT: &str = "an address and a port";
    match s.args() {
        [] => Err(s.fault(s.keyword(), K::MissingValue(WHAT))),
        [ip] => Ok(SocketAddr::new(values::ip(s, ip)?, default_port)),
        [ip, port] => Ok(SocketAddr::new(values::ip(s, ip)?, values::port(s, port)?)),
        [_, _, extra, ..] => Err(s.fault(extra, K::ExtraArgument)),
    }
}

/// The service port (0 for a fwmark service): the default port of its real servers.
pub(super) fn key_port(key: &ServiceKey) -> u16 {
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

    pub(super) fn cur_rs(&mut self) -> &mut RealServer {
        &mut self.cfg.rs[self.cfg.n.rs]
    }

    pub(super) fn cur_ck(&mut self) -> &mut Checker {
        &mut self.cfg.ck[self.cfg.n.ck]
    }

    pub(super) fn cur_url(&mut self) -> &mut Url {
        &mut self.cfg.urls[self.cfg.n.urls]
    }

    /// Tells the caller `s` is ignored, and why.
    pub(super) fn ignore(&mut self, name: &str, s: &Stmt<'_>, why: &'static str) -> Next {
        self.note(name, s.line, s.keyword(), NoticeKind::Ignored(why));
        Next::Plain
    }

    /// The keywords a virtual server, a real server and a checker share (the timers, `retry`,
    /// `alpha`); false if `s` is none of them.
    /// `min_retry`: 1 on virtual and real servers, 0 in a checker (keepalived's limits).
    pub(super) fn common<'a>(
        &mut self,
        s: &Stmt<'a>,
        w: &mut Written,
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
}
