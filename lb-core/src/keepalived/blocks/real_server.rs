//! The `real_server` block.

use super::super::ast::{Location, RealServer};
use super::super::error::ErrorKind as K;
use super::super::lex::Stmt;
use super::super::parse::{Block, Next, Parser};
use super::super::values::{self, count, flag, optional};
use super::super::{Fault, Files};
use super::{endpoint, key_port, method, OTHER_CHECKS, SCRIPTS};
use crate::config::{ForwardMethod, ServerConfig};

impl<F: Files + ?Sized> Parser<'_, '_, '_, '_, F> {
    pub(super) fn open_real_server<'a>(
        &mut self,
        at: Location,
        s: &Stmt<'a>,
    ) -> Result<Next, Fault<'a>> {
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
            "lb_kind" | "lvs_method" => self.cur_rs().written.method = Some(method(s)?),
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
}
