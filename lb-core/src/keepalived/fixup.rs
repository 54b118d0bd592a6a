//! Closing a block: the checks that need the whole block, keepalived's inheritance
//! (virtual_server → real_server → checker → url) and defaults, then the item is kept.

use super::ast::{CheckKind, Timing};
use super::error::ErrorKind as K;
use super::parse::Parser;
use super::{Fault, Files};
use crate::addr::Protocol;
use crate::config::{ForwardMethod, Persistence, ServiceKey};
use crate::time::Duration;

impl<F: Files + ?Sized> Parser<'_, '_, '_, '_, F> {
    pub(crate) fn close_url(&mut self) -> Result<(), Fault<'static>> {
        let n = self.cfg.n.urls;
        let url = &mut self.cfg.urls[n];
        if url.path.is_empty() {
            return Err(Fault {
                line: url.at.line,
                text: "url",
                kind: K::Invalid("a url needs a path"),
            });
        }
        if url.status.is_empty() {
            url.status = super::StatusCodes::default_range();
        }
        self.cfg.n.urls += 1;
        Ok(())
    }

    pub(crate) fn close_checker(&mut self) -> Result<(), Fault<'static>> {
        let n = self.cfg.n.ck;
        let end = self.cfg.n.urls as u32;
        let ck = &mut self.cfg.ck[n];
        ck.urls.end = end;
        if ck.kind == CheckKind::Http && ck.urls.start == end {
            return Err(Fault {
                line: ck.at.line,
                text: "HTTP_GET",
                kind: K::Invalid("HTTP_GET needs at least one url block"),
            });
        }
        self.cfg.n.ck += 1;
        Ok(())
    }

    pub(crate) fn close_real_server(&mut self) -> Result<(), Fault<'static>> {
        let n = self.cfg.n.rs;
        let first = self.cfg.vs[self.cfg.n.vs].reals.start as usize;
        let (before, rest) = self.cfg.rs.split_at_mut(n);
        let rs = &mut rest[0];
        rs.checkers.end = self.cfg.n.ck as u32;
        let c = rs.server;
        if c.l_threshold > c.u_threshold {
            return Err(Fault {
                line: self.vs.lthreshold,
                text: "lthreshold",
                kind: K::Invalid("lthreshold is above uthreshold"),
            });
        }
        if let Some(other) = before[first..].iter().find(|r| r.server.addr == c.addr) {
            return Err(Fault {
                line: rs.at.line,
                text: "real_server",
                kind: K::Duplicate {
                    first: other.at.line,
                    same_file: other.at.file == rs.at.file,
                },
            });
        }
        self.cfg.n.rs += 1;
        Ok(())
    }

    pub(crate) fn close_virtual_server(&mut self) -> Result<(), Fault<'static>> {
        let n = self.cfg.n.vs;
        let d = self.vs;
        let (before, rest) = self.cfg.vs.split_at_mut(n);
        let vs = &mut rest[0];
        vs.reals.end = self.cfg.n.rs as u32;
        let line = vs.at.line;
        let svc = &mut vs.service;
        let v6 = svc.key.is_ipv6();
        match (d.persistence_secs, d.granularity) {
            (Some(timeout_secs), g) => {
                let prefix = g.map_or(if v6 { 128 } else { 32 }, |(p, _)| p);
                if prefix > if v6 { 128 } else { 32 } {
                    return Err(Fault {
                        line: g.map_or(line, |(_, l)| l),
                        text: "persistence_granularity",
                        kind: K::Invalid("longer than the address"),
                    });
                }
                svc.persistence = Some(Persistence {
                    timeout_secs,
                    prefix,
                });
            }
            (None, Some((_, l))) => {
                return Err(Fault {
                    line: l,
                    text: "persistence_granularity",
                    kind: K::Invalid("needs persistence_timeout"),
                })
            }
            (None, None) => {}
        }
        if let ServiceKey::Addr { proto, vip } = svc.key {
            if vip.port() == 0 && svc.persistence.is_none() {
                return Err(Fault {
                    line,
                    text: "virtual_server",
                    kind: K::Invalid("without a port it must be persistent (persistence_timeout)"),
                });
            }
            if let (Some(l), Protocol::Tcp) = (d.ops, proto) {
                return Err(Fault {
                    line: l,
                    text: "ops",
                    kind: K::Invalid("one-packet scheduling is for UDP services (protocol UDP)"),
                });
            }
        }
        if let Some((name, needs, l)) = d.sched_flag {
            if svc.scheduler != needs {
                return Err(Fault {
                    line: l,
                    text: name,
                    kind: K::Invalid("the flag does not belong to this lb_algo"),
                });
            }
        }
        if let Some(sorry) = vs.sorry_server {
            if sorry.addr.is_ipv6() != v6 {
                return Err(Fault {
                    line: d.sorry,
                    text: "sorry_server",
                    kind: K::Invalid(
                        "the sorry server's address family differs from the virtual server's",
                    ),
                });
            }
        }
        if let Some(other) = before.iter().find(|o| o.service.key == vs.service.key) {
            return Err(Fault {
                line,
                text: "virtual_server",
                kind: K::Duplicate {
                    first: other.at.line,
                    same_file: other.at.file == vs.at.file,
                },
            });
        }
        self.inherit(n);
        // ipvsadm gives a direct-routing or tunnel real server of an address service the
        // service's port (it cannot change the port of a packet it does not rewrite): refuse
        // another rather than apply what was not written.
        if let ServiceKey::Addr { vip, .. } = self.cfg.vs[n].service.key {
            let reals = self.cfg.vs[n].reals.range();
            for rs in &self.cfg.rs[reals] {
                if rs.server.method != ForwardMethod::Masq && rs.server.addr.port() != vip.port() {
                    return Err(Fault {
                        line,
                        text: "virtual_server",
                        kind: K::Invalid(
                            "with lb_kind DR or TUN every real server's port must be the \
                             virtual server's",
                        ),
                    });
                }
            }
        }
        self.cfg.n.vs += 1;
        Ok(())
    }

    /// keepalived's inheritance and defaults over virtual server `n`'s real servers, their
    /// checkers and URLs.
    fn inherit(&mut self, n: usize) {
        let cfg = &mut *self.cfg;
        let vs = &cfg.vs[n];
        for rs in &mut cfg.rs[vs.reals.range()] {
            let rw = rs.written.or(vs.written);
            rs.server.weight = rw.weight.unwrap_or(1);
            // keepalived's default method is NAT.
            rs.server.method = rw.method.unwrap_or(ForwardMethod::Masq);
            rs.inhibit_on_failure = rw.inhibit_on_failure.unwrap_or(false);
            let rs_host = rs.virtualhost.as_ref().or(vs.virtualhost.as_ref());
            for ck in &mut cfg.ck[rs.checkers.range()] {
                let cw = ck.written.or(rw);
                let delay_loop = cw.delay_loop.unwrap_or(Timing::DEFAULT.delay_loop);
                let retry_delay = match ck.kind {
                    CheckKind::Tcp => Timing::DEFAULT.delay_before_retry,
                    CheckKind::Http => Duration::from_secs(3),
                };
                ck.timing = Timing {
                    delay_loop,
                    connect_timeout: cw
                        .connect_timeout
                        .unwrap_or(Timing::DEFAULT.connect_timeout),
                    retry: cw.retry.unwrap_or(Timing::DEFAULT.retry),
                    delay_before_retry: cw.delay_before_retry.unwrap_or(retry_delay),
                    warmup: cw.warmup.unwrap_or(delay_loop),
                };
                ck.alpha = cw.alpha.unwrap_or(false);
                let host = ck.virtualhost.as_ref().or(rs_host);
                for url in &mut cfg.urls[ck.urls.range()] {
                    if url.virtualhost.is_none() {
                        url.virtualhost = host.cloned();
                    }
                }
            }
        }
    }
}
