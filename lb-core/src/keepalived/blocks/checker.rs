//! The checker blocks (`TCP_CHECK`, `HTTP_GET`) and `url`.

use core::net::IpAddr;

use super::super::ast::{CheckKind, Checker, HttpProtocol, Location, Url};
use super::super::error::ErrorKind as K;
use super::super::lex::Stmt;
use super::super::parse::{Block, Next, Parser};
use super::super::values::{self, flag, none, one, optional};
use super::super::{Fault, Files};

impl<F: Files + ?Sized> Parser<'_, '_, '_, '_, F> {
    pub(super) fn open_checker<'a>(
        &mut self,
        at: Location,
        s: &Stmt<'a>,
    ) -> Result<Next, Fault<'a>> {
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
