//! The parser against keepalived's grammar: every keyword, the defaults and inheritance, every
//! refusal with its exact `file:line` message, includes, the skipped blocks' notices, and the
//! equivalence with `ipvsadm-save` lines.

use core::net::SocketAddr;
use core::ops::ControlFlow;
use std::string::{String, ToString};
use std::vec::Vec;
use std::{format, vec};

use super::*;
use crate::config::{ForwardMethod, SchedulerKind, ServiceKey};
use crate::ipvsadm::parse_line;
use crate::time::Duration;

/// Files in memory: `(name, text)`; ids are the indices. A pattern is resolved against the
/// directory of the including file; `*` matches any run of characters but `/`.
struct MemFiles(Vec<(&'static str, &'static str)>);

fn glob_match(pat: &str, name: &str) -> bool {
    match pat.split_once('*') {
        None => pat == name,
        Some((pre, post)) => {
            name.len() >= pre.len() + post.len()
                && name.starts_with(pre)
                && name.ends_with(post)
                && !name[pre.len()..name.len() - post.len()].contains('/')
        }
    }
}

impl Files for MemFiles {
    fn include(
        &self,
        from: FileId,
        pattern: &str,
        each: &mut dyn FnMut(FileId, &str, &str) -> ControlFlow<()>,
    ) -> Result<usize, IncludeError> {
        let from_name = if from.0 == u16::MAX {
            "keepalived.conf"
        } else {
            self.0[usize::from(from.0)].0
        };
        let mut full = match (pattern.starts_with('/'), from_name.rsplit_once('/')) {
            (false, Some((dir, _))) => format!("{dir}/{pattern}"),
            _ => pattern.to_string(),
        };
        while let Some(i) = full.find("/../") {
            let dir_start = full[..i].rfind('/').map_or(0, |d| d + 1);
            full.replace_range(dir_start..i + 4, "");
        }
        let mut hits: Vec<(usize, &(&str, &str))> = self
            .0
            .iter()
            .enumerate()
            .filter(|(_, (n, _))| glob_match(&full, n))
            .collect();
        hits.sort_by_key(|(_, (n, _))| *n);
        let mut count = 0;
        for (i, (name, text)) in hits {
            count += 1;
            if each(FileId(i as u16), name, text).is_break() {
                break;
            }
        }
        Ok(count)
    }
}

const MAIN: FileId = FileId(u16::MAX);

struct Store {
    vs: Vec<VirtualServer>,
    rs: Vec<RealServer>,
    ck: Vec<Checker>,
    urls: Vec<Url>,
}

impl Store {
    fn new(vs: usize, rs: usize, ck: usize, urls: usize) -> Self {
        Store {
            vs: vec![VirtualServer::EMPTY; vs],
            rs: vec![RealServer::EMPTY; rs],
            ck: vec![Checker::EMPTY; ck],
            urls: vec![Url::EMPTY; urls],
        }
    }

    fn config(&mut self) -> Config<'_> {
        Config::new(&mut self.vs, &mut self.rs, &mut self.ck, &mut self.urls)
    }
}

/// Parses `text` as `keepalived.conf` with `files` for includes; runs `f` on the result.
fn parse_files<R>(
    files: &dyn Files,
    text: &str,
    f: impl FnOnce(&Config<'_>) -> R,
) -> Result<(R, Vec<String>), String> {
    let mut store = Store::new(8, 32, 32, 16);
    let mut cfg = store.config();
    let mut notices = Vec::new();
    let r = cfg.parse(files, MAIN, "keepalived.conf", text, &mut |n| {
        notices.push(n.to_string())
    });
    match r {
        Ok(()) => Ok((f(&cfg), notices)),
        Err(e) => {
            assert!(cfg.virtual_servers().is_empty(), "an error leaves nothing");
            Err(e.to_string())
        }
    }
}

fn parse<R>(text: &str, f: impl FnOnce(&Config<'_>) -> R) -> Result<(R, Vec<String>), String> {
    parse_files(&NoFiles, text, f)
}

/// The error message of `text`.
fn refused(text: &str) -> String {
    parse(text, |_| ()).expect_err("should be refused")
}

/// `text` inside `virtual_server 192.0.2.10 80 { ... }` (line 2 on), with one real server.
fn in_vs(body: &str) -> String {
    format!("virtual_server 192.0.2.10 80 {{\n{body}\n real_server 10.0.1.1 80 {{\n }}\n}}\n")
}

/// `text` inside a real server's block (line 3 on).
fn in_rs(body: &str) -> String {
    format!("virtual_server 192.0.2.10 80 {{\n real_server 10.0.1.1 80 {{\n{body}\n }}\n}}\n")
}

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

const WEB: &str = r#"
virtual_server 192.0.2.10 80 {
    delay_loop 5                  # seconds between rounds
    lvs_sched wlc
    lvs_method NAT
    alpha                         ! reals stay out until they pass once
    sorry_server 10.0.9.9 8080
    real_server 10.0.1.11 8080 {
        weight 100
        inhibit_on_failure        # weight 0 instead of removal
        HTTP_GET {
            url {
                path /healthz
                status_code 200 204
            }
            url {
                path "/with space"
                digest 9b3a0c85a887a256d6939da88aabd8cd
            }
            connect_timeout 2
            retry 2               # down after 3 consecutive failures
            delay_before_retry 1
        }
    }
    real_server 10.0.1.12 8080 {
        TCP_CHECK {
            connect_port 8081
            bindto 10.0.0.2
            bind_port 5555
            connect_ip 10.0.1.99
            nb_get_retry 3
            warmup 0
        }
    }
}
"#;

#[test]
fn a_web_farm_parses_with_every_value() {
    let ((), notices) = parse(WEB, |c| {
        let [vs] = c.virtual_servers() else {
            panic!("one virtual server")
        };
        assert_eq!(vs.at.line, 2);
        assert_eq!(vs.service.key, ServiceKey::tcp(sa("192.0.2.10:80")));
        assert_eq!(vs.service.scheduler, SchedulerKind::Wlc);
        assert_eq!(vs.service.persistence, None);
        let sorry = vs.sorry_server.unwrap();
        assert_eq!(
            (sorry.addr, sorry.method),
            (sa("10.0.9.9:8080"), ForwardMethod::Masq)
        );
        let [a, b] = c.real_servers(vs) else {
            panic!("two real servers")
        };
        assert_eq!(
            (a.at.line, a.server.addr, a.server.weight),
            (8, sa("10.0.1.11:8080"), 100)
        );
        assert!(a.inhibit_on_failure);
        assert_eq!(a.server.method, ForwardMethod::Masq);
        let [http] = c.checkers(a) else { panic!() };
        assert_eq!(http.kind, CheckKind::Http);
        assert_eq!(http.connect, sa("10.0.1.11:8080"));
        assert!(http.alpha, "alpha is inherited from the virtual server");
        assert_eq!(
            http.timing,
            Timing {
                delay_loop: Duration::from_secs(5),
                connect_timeout: Duration::from_secs(2),
                retry: 2,
                delay_before_retry: Duration::from_secs(1),
                warmup: Duration::from_secs(5),
            }
        );
        let [u1, u2] = c.urls(http) else { panic!() };
        assert_eq!((u1.path.as_str(), u1.at.line), ("/healthz", 12));
        assert!(u1.status.contains(200) && u1.status.contains(204));
        assert!(!u1.status.contains(201) && !u1.status.contains(299));
        assert_eq!(u1.digest, None);
        assert_eq!(u2.path.as_str(), "/with space");
        assert_eq!(
            u2.digest.unwrap()[..4],
            [0x9b, 0x3a, 0x0c, 0x85],
            "digest hex"
        );
        assert!(u2.status.contains(200) && u2.status.contains(299) && !u2.status.contains(300));
        assert_eq!((b.server.weight, b.inhibit_on_failure), (1, false));
        let [tcp] = c.checkers(b) else { panic!() };
        assert_eq!(tcp.kind, CheckKind::Tcp);
        assert_eq!(tcp.connect, sa("10.0.1.99:8081"));
        assert_eq!(tcp.bindto, Some("10.0.0.2".parse().unwrap()));
        assert_eq!(tcp.bind_port, Some(5555));
        assert_eq!(tcp.timing.retry, 3, "nb_get_retry is retry");
        assert_eq!(tcp.timing.warmup, Duration::from_secs(0));
        assert_eq!(tcp.timing.delay_before_retry, Duration::from_secs(1));
    })
    .unwrap();
    assert!(notices.is_empty(), "{notices:?}");
}

#[test]
fn defaults_are_keepalived_s() {
    let text = "virtual_server 192.0.2.10 443 {\n persistence_timeout\n persistence_granularity 255.255.255.0\n real_server 10.0.1.1 {\n  TCP_CHECK {\n  }\n  HTTP_GET {\n   url {\n    path /\n   }\n  }\n }\n}\n";
    parse(text, |c| {
        let vs = &c.virtual_servers()[0];
        assert_eq!(vs.service.scheduler, SchedulerKind::Wlc, "lb_algo wlc");
        let p = vs.service.persistence.unwrap();
        assert_eq!(
            (p.timeout_secs, p.prefix),
            (360, 24),
            "bare timeout is 360 s"
        );
        assert_eq!((vs.quorum, vs.hysteresis, vs.omega), (1, 0, false));
        let rs = &c.real_servers(vs)[0];
        assert_eq!(rs.server.addr, sa("10.0.1.1:443"), "port from the service");
        assert_eq!(rs.server.weight, 1);
        let [tcp, http] = c.checkers(rs) else {
            panic!()
        };
        assert_eq!(tcp.timing, Timing::DEFAULT);
        assert_eq!(tcp.timing.warmup, Duration::from_secs(60));
        assert!(!tcp.alpha);
        assert_eq!(http.timing.delay_before_retry, Duration::from_secs(3));
        assert_eq!(http.http_protocol, HttpProtocol::Http10);
        let u = &c.urls(http)[0];
        assert_eq!(u.status, StatusCodes::default_range());
        assert_eq!(u.virtualhost, None);
    })
    .unwrap();
}

#[test]
fn values_set_on_outer_blocks_are_inherited_wherever_they_are_written() {
    let text = r#"
virtual_server 192.0.2.10 80 {
    real_server 10.0.1.1 80 {
        retry 4
        HTTP_GET {
            url { 
              path /a
            }
            http_protocol 1.1
            fast_recovery
        }
        HTTP_GET {
            virtualhost check.example
            url {
              path /b
              virtualhost url.example
            }
            url {
              path /c
            }
            retry 0
        }
    }
    real_server 10.0.1.2 80 {
        weight 7
        inhibit_on_failure off
        virtualhost rs.example
        TCP_CHECK {
        }
        HTTP_GET {
            url {
              path /d
            }
        }
    }
    connect_timeout 0.25      # after the real servers: still their default
    weight 3
    inhibit_on_failure
    virtualhost vs.example
    delay_loop 2.5
}
"#;
    parse(text, |c| {
        let vs = &c.virtual_servers()[0];
        let [r1, r2] = c.real_servers(vs) else {
            panic!()
        };
        assert_eq!((r1.server.weight, r1.inhibit_on_failure), (3, true));
        assert_eq!((r2.server.weight, r2.inhibit_on_failure), (7, false));
        let [h1, h2] = c.checkers(r1) else { panic!() };
        assert_eq!(h1.timing.connect_timeout, Duration::from_millis(250));
        assert_eq!(h1.timing.delay_loop, Duration::from_millis(2500));
        assert_eq!(h1.timing.warmup, Duration::from_millis(2500));
        assert_eq!(h1.timing.retry, 4, "from the real server");
        assert_eq!(h2.timing.retry, 0, "the checker's own");
        assert_eq!(h1.http_protocol, HttpProtocol::Http11);
        assert!(h1.fast_recovery && !h2.fast_recovery);
        let host = |u: &Url| u.virtualhost.as_ref().map(|h| h.as_str().to_string());
        assert_eq!(host(&c.urls(h1)[0]).as_deref(), Some("vs.example"));
        let [b, cc] = c.urls(h2) else { panic!() };
        assert_eq!(host(b).as_deref(), Some("url.example"));
        assert_eq!(host(cc).as_deref(), Some("check.example"));
        let [_, h3] = c.checkers(r2) else { panic!() };
        assert_eq!(host(&c.urls(h3)[0]).as_deref(), Some("rs.example"));
    })
    .unwrap();
}

#[test]
fn lexical_rules_are_keepalived_s() {
    let text = "! a comment\n# another\nvirtual_server 192.0.2.10 80 { # brace on the line\n  lb_algo \"rr\"  ! quoted\n  real_server 10.0.1.1 80 { weight 2 }\n  real_server 10.0.1.2 \\\n     80\n  {\n    weight 'three'\n  }\n}\n";
    // The last real server's weight is a quoted word that is not a number.
    assert_eq!(
        refused(text),
        "keepalived.conf:9: \"three\": expected a decimal number"
    );
    let text = text.replace("'three'", "'3'");
    parse(&text, |c| {
        let vs = &c.virtual_servers()[0];
        assert_eq!(vs.service.scheduler, SchedulerKind::Rr);
        let [a, b] = c.real_servers(vs) else { panic!() };
        assert_eq!((a.server.weight, a.at.line), (2, 5));
        assert_eq!(
            (b.server.addr, b.server.weight, b.at.line),
            (sa("10.0.1.2:80"), 3, 6)
        );
    })
    .unwrap();
}

#[test]
fn the_skipped_blocks_give_one_notice_each() {
    let text = "global_defs {\n router_id lb1\n notification_email {\n  a@b\n }\n}\nvrrp_script chk {\n script \"/bin/true\"\n}\nvrrp_instance VI_1 {\n state MASTER\n virtual_ipaddress {\n  192.0.2.10/24\n }\n track_script {\n  chk\n }\n}\nstatic_ipaddress {\n 10.0.0.1/24 dev eth0\n}\nvirtual_server 192.0.2.10 80 {\n ha_suspend\n real_server 10.0.1.1 80 {\n }\n}\n";
    let (n, notices) = parse(text, |c| c.virtual_servers().len()).unwrap();
    assert_eq!(n, 1);
    assert_eq!(
        notices,
        [
            "keepalived.conf:1: global_defs block skipped (VRRP and global settings stay keepalived's job)",
            "keepalived.conf:7: vrrp_script block skipped (VRRP and global settings stay keepalived's job)",
            "keepalived.conf:10: vrrp_instance block skipped (VRRP and global settings stay keepalived's job)",
            "keepalived.conf:19: static_ipaddress block skipped (VRRP and global settings stay keepalived's job)",
            "keepalived.conf:23: ha_suspend ignored: lb runs no VRRP: its virtual addresses are always local, checks never pause",
        ]
    );
}

#[test]
fn ignored_keywords_give_a_notice() {
    let text = in_vs(" hashed\n smtp_alert\n snmp_name web\n");
    let ((), notices) = parse(&text, |_| ()).unwrap();
    assert_eq!(
        notices,
        [
            "keepalived.conf:2: hashed ignored: a kernel-internal flag with no effect",
            "keepalived.conf:3: smtp_alert ignored: lb sends no mail",
            "keepalived.conf:4: snmp_name ignored: lb has no SNMP agent",
        ]
    );
    let text = in_rs("  TCP_CHECK {\n   log_all_failures on\n  }");
    let ((), notices) = parse(&text, |_| ()).unwrap();
    assert_eq!(
        notices,
        ["keepalived.conf:4: log_all_failures ignored: lb logs every change of a check's state"]
    );
}

#[test]
fn every_refusal_names_file_line_and_why() {
    let cases: &[(String, &str)] = &[
        (in_vs(" lb_kindd NAT"), "keepalived.conf:2: unknown keyword \"lb_kindd\" in virtual_server"),
        (in_vs(" lb_kind DR"), "keepalived.conf:2: \"DR\" is not supported: only NAT (lb_kind NAT) is supported yet; DR and TUN are not"),
        (in_vs(" lvs_method TUN"), "keepalived.conf:2: \"TUN\" is not supported: only NAT (lb_kind NAT) is supported yet; DR and TUN are not"),
        (in_vs(" lb_kind FOO"), "keepalived.conf:2: \"FOO\": expected NAT, DR or TUN"),
        (in_vs(" lb_algo fastest"), "keepalived.conf:2: \"fastest\": expected a scheduler: rr wrr lc wlc sed nq lblc lblcr dh sh mh fo ovf twos"),
        (in_vs(" protocol SCTP"), "keepalived.conf:2: \"SCTP\" is not supported: SCTP services"),
        (in_vs(" persistence_engine sip"), "keepalived.conf:2: \"persistence_engine\" is not supported: persistence engines (sip)"),
        (in_vs(" quorum_up \"/bin/up\""), "keepalived.conf:2: \"quorum_up\" is not supported: lb runs no scripts (notify_*, quorum_up, quorum_down)"),
        (in_vs(" quorum 0"), "keepalived.conf:2: \"0\": quorum out of range (1..=4294967295)"),
        (in_vs(" persistence_granularity 255.255.255.0"), "keepalived.conf:2: \"persistence_granularity\": needs persistence_timeout"),
        (in_vs(" persistence_timeout 1\n persistence_granularity 255.0.255.0"), "keepalived.conf:3: \"255.0.255.0\": expected a netmask (255.255.255.0) or a prefix length (24, /64)"),
        (in_vs(" ops"), "keepalived.conf:2: \"ops\": one-packet scheduling is for UDP services (protocol UDP)"),
        (in_vs(" sh-port"), "keepalived.conf:2: \"sh-port\": the flag does not belong to this lb_algo"),
        (in_vs(" flag-3"), "keepalived.conf:2: \"flag-3\" is not supported: scheduler flag-3"),
        (in_vs(" sorry_server 2001:db8::1 80"), "keepalived.conf:2: \"sorry_server\": the sorry server's address family differs from the virtual server's"),
        (in_vs(" sorry_server_lvs_method DR"), "keepalived.conf:2: \"DR\" is not supported: only NAT (lb_kind NAT) is supported yet; DR and TUN are not"),
        (in_vs(" ip_family inet6"), "keepalived.conf:2: \"inet6\": differs from the virtual server's address family"),
        (in_vs(" delay_loop 0"), "keepalived.conf:2: \"0\": timer (ms) out of range (1..=2678400000)"),
        (in_vs(" delay_loop 0.0005"), "keepalived.conf:2: \"0.0005\" is not supported: timers finer than a millisecond (lb's clock ticks in milliseconds)"),
        (in_vs(" delay_loop 1s"), "keepalived.conf:2: \"1s\": expected seconds (a decimal number, e.g. 2 or 0.5)"),
        (in_vs(" retry 0"), "keepalived.conf:2: \"0\": retry out of range (1..=4294967295)"),
        (in_vs(" lb_algo"), "keepalived.conf:2: \"lb_algo\" needs a scheduler (rr, wrr, lc, wlc, sh, mh, ...)"),
        (in_vs(" lb_algo rr wrr"), "keepalived.conf:2: unexpected \"wrr\": one keyword a line (keepalived would ignore it silently)"),
        (in_vs(" @main lb_algo rr"), "keepalived.conf:2: \"@main\" is not supported: conditional lines (@name)"),
        (in_vs(" $WEB=1"), "keepalived.conf:2: \"$WEB=1\" is not supported: definitions ($NAME=value)"),
        (in_vs(" lb_algo ${ALGO}"), "keepalived.conf:2: \"${ALGO}\" is not supported: ${NAME} substitution"),
        (in_vs(" include other.conf"), "keepalived.conf:2: include: this configuration cannot include files (no file system)"),
        (in_vs(" lb_algo rr {\n }"), "keepalived.conf:2: \"lb_algo\" takes no block"),
        (in_vs(" real_server 10.0.1.1 80 {\n }"), "keepalived.conf:4: real_server is defined twice (first at line 2)"),
        (in_vs(" real_server 10.0.2.1"), "keepalived.conf:2: \"real_server\" needs a block: real_server ... { ... }"),
        (in_vs(" real_server 2001:db8::1 80 {\n }"), "keepalived.conf:2: \"2001:db8::1\": the real server's address family differs from the virtual server's"),
        (in_vs(" real_server www.example 80 {\n }"), "keepalived.conf:2: \"www.example\": expected a numeric IPv4 or IPv6 address (names are not resolved)"),
        (in_rs("  lb_kind DR"), "keepalived.conf:3: \"DR\" is not supported: only NAT (lb_kind NAT) is supported yet; DR and TUN are not"),
        (in_rs("  weight 70000"), "keepalived.conf:3: \"70000\": weight out of range (0..=65535)"),
        (in_rs("  uthreshold 10\n  lthreshold 20"), "keepalived.conf:4: \"lthreshold\": lthreshold is above uthreshold"),
        (in_rs("  notify_down /bin/down"), "keepalived.conf:3: \"notify_down\" is not supported: lb runs no scripts (notify_*, quorum_up, quorum_down)"),
        (in_rs("  MISC_CHECK {\n  }"), "keepalived.conf:3: \"MISC_CHECK\" is not supported: MISC_CHECK is out of scope: lb runs no scripts; use TCP_CHECK or HTTP_GET"),
        (in_rs("  SSL_GET {\n  }"), "keepalived.conf:3: \"SSL_GET\" is not supported: lb's checks speak no TLS; use TCP_CHECK or HTTP_GET"),
        (in_rs("  DNS_CHECK {\n  }"), "keepalived.conf:3: \"DNS_CHECK\" is not supported: only TCP_CHECK and HTTP_GET are supported"),
        (in_rs("  weigth 2"), "keepalived.conf:3: unknown keyword \"weigth\" in real_server"),
        (in_rs("  TCP_CHECK { connect_timeout 1 retry 3 }"), "keepalived.conf:3: unexpected \"retry\": one keyword a line (keepalived would ignore it silently)"),
        (in_rs("  TCP_CHECK {\n   url {\n   }\n  }"), "keepalived.conf:4: unknown keyword \"url\" in TCP_CHECK"),
        (in_rs("  TCP_CHECK {\n   bind_if eth0\n  }"), "keepalived.conf:4: \"bind_if\" is not supported: checks are not bound to an interface; use bindto"),
        (in_rs("  TCP_CHECK {\n   connect_port 70000\n  }"), "keepalived.conf:4: \"70000\": port out of range (0..=65535)"),
        (in_rs("  TCP_CHECK {\n   connect_ip ::1\n  }"), "keepalived.conf:4: \"::1\": connect_ip's address family differs from the real server's"),
        (in_rs("  HTTP_GET {\n  }"), "keepalived.conf:3: \"HTTP_GET\": HTTP_GET needs at least one url block"),
        (in_rs("  HTTP_GET {\n   url {\n   }\n  }"), "keepalived.conf:4: \"url\": a url needs a path"),
        (in_rs("  HTTP_GET {\n   url {\n    path /\n    regex ok\n   }\n  }"), "keepalived.conf:6: \"regex\" is not supported: regular expressions on the body; use digest or status_code"),
        (in_rs("  HTTP_GET {\n   url {\n    path /\n    status_code 99\n   }\n  }"), "keepalived.conf:6: \"99\": HTTP status code out of range (100..=599)"),
        (in_rs("  HTTP_GET {\n   url {\n    path /\n    digest 12ab\n   }\n  }"), "keepalived.conf:6: \"12ab\": expected 32 hexadecimal digits (an MD5 sum)"),
        (in_rs("  HTTP_GET {\n   http_protocol 2\n  }"), "keepalived.conf:4: \"2\": expected 1.0, 1.0C or 1.1"),
        ("virtual_server_group web {\n 192.0.2.1 80\n}\n".into(), "keepalived.conf:1: \"virtual_server_group\" is not supported: write one virtual_server per address instead"),
        ("virtual_server group web {\n}\n".into(), "keepalived.conf:1: \"group\" is not supported: virtual_server_group; write one virtual_server per address"),
        ("virtual_server 192.0.2.10 {\n}\n".into(), "keepalived.conf:1: \"virtual_server\": without a port it must be persistent (persistence_timeout)"),
        ("virtual_server 192.0.2.10 80 {\n}\nvirtual_server 192.0.2.10 80 {\n}\n".into(), "keepalived.conf:3: virtual_server is defined twice (first at line 1)"),
        ("virtual_server 192.0.2.10 80 {\n".into(), "keepalived.conf:1: the file ends inside the \"virtual_server\" block opened at line 1 (a missing \"}\")"),
        ("virtual_server 192.0.2.10 80 {\n}\n}\n".into(), "keepalived.conf:3: unexpected \"}\""),
        ("{\n".into(), "keepalived.conf:1: unexpected \"{\""),
        ("virtual_server 192.0.2.10 80 {\n lb_algo \"rr\n}\n".into(), "keepalived.conf:2: quoted string \"\\\"rr\" has no closing quote"),
        ("virtual_server 192.0.2.10 80 {\n virtualhost \"a\\\"b\"\n}\n".into(), "keepalived.conf:2: \"\\\"a\\\\\" is not supported: escape sequences in quoted strings"),
        ("virtual_server 192.0.2.10 80 {\n lb_algo rr\\#x\n}\n".into(), "keepalived.conf:2: \"\\\\#\" is not supported: escaped comment characters (\\# and \\!)"),
        ("vrrp_sync_group\n".into(), "keepalived.conf:1: \"vrrp_sync_group\" needs a block: vrrp_sync_group ... { ... }"),
        ("lvs_sync_daemon eth0 VI_1\n".into(), "keepalived.conf:1: unknown keyword \"lvs_sync_daemon\" in top level"),
        ("virtual_server 192.0.2.10 80 {\n}\n".replace("80", "80 90"), "keepalived.conf:1: unexpected \"90\": one keyword a line (keepalived would ignore it silently)"),
    ];
    for (text, want) in cases {
        assert_eq!(&refused(text), want, "for:\n{text}");
    }
}

#[test]
fn fwmark_ipv6_and_udp_services() {
    let text = "virtual_server fwmark 7 {\n ip_family inet6\n persistence_timeout 60\n persistence_granularity 64\n real_server 2001:db8::1 {\n }\n}\nvirtual_server 2001:db8::53 53 {\n protocol UDP\n ops\n lb_algo sh\n sh-port\n sh-fallback\n real_server 2001:db8:1::a 53 {\n }\n}\n";
    parse(text, |c| {
        let [fw, dns] = c.virtual_servers() else {
            panic!()
        };
        assert_eq!(fw.service.key, ServiceKey::Fwmark { mark: 7, v6: true });
        assert_eq!(fw.service.persistence.unwrap().prefix, 64);
        assert_eq!(c.real_servers(fw)[0].server.addr, sa("[2001:db8::1]:0"));
        assert_eq!(dns.service.key, ServiceKey::udp(sa("[2001:db8::53]:53")));
        assert!(dns.service.one_packet);
        assert!(dns.service.flags.port && dns.service.flags.fallback);
    })
    .unwrap();
}

#[test]
fn storage_limits_are_errors_not_panics() {
    let text = "virtual_server 192.0.2.10 80 {\n real_server 10.0.1.1 80 {\n }\n real_server 10.0.1.2 80 {\n }\n}\n";
    let mut store = Store::new(1, 1, 0, 0);
    let e = store
        .config()
        .parse(&NoFiles, MAIN, "k.conf", text, &mut |_| {})
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "k.conf:4: no room for another real_server: the storage holds 1"
    );
    assert_eq!(
        e.kind,
        ErrorKind::TooMany {
            what: "real_server",
            max: 1
        }
    );
    let mut store = Store::new(0, 0, 0, 0);
    let mut cfg = store.config();
    let e = cfg.parse(&NoFiles, MAIN, "k.conf", text, &mut |_| {});
    assert_eq!(e.unwrap_err().line, 1);
    assert_eq!(cfg.commands().count(), 0);
}

fn tree() -> MemFiles {
    MemFiles(vec![
        (
            "conf.d/a.conf",
            "virtual_server 192.0.2.1 80 {\n include ../reals/*.conf\n}\n",
        ),
        (
            "conf.d/b.conf",
            "virtual_server 192.0.2.2 80 {\n real_server 10.0.2.1 80 {\n }\n}\n",
        ),
        ("reals/1.conf", "real_server 10.0.1.1 80 {\n weight 5\n}\n"),
        ("reals/2.conf", "\n\nreal_server 10.0.1.2 80 {\n}\n"),
        ("loop.conf", "include loop.conf\n"),
        ("open.conf", "virtual_server 192.0.2.3 80 {\n"),
        ("close.conf", "}\n"),
        (
            "bad.conf",
            "\n\nvirtual_server 192.0.2.4 80 {\n lb_kind DR\n}\n",
        ),
        ("deep.conf", "include deep2.conf\n"),
        ("deep2.conf", "include deep.conf\n"),
    ])
}

#[test]
fn includes_nest_in_blocks_in_order_and_name_their_file() {
    let files = tree();
    let text = "include conf.d/*.conf\ninclude empty/*.conf\n";
    let (lines, notices) = parse_files(&files, text, |c| {
        c.commands()
            .map(|(at, cmd)| format!("{}:{} {cmd}", at.file.0, at.line))
            .collect::<Vec<_>>()
    })
    .unwrap();
    assert_eq!(
        lines,
        [
            "0:1 -A -t 192.0.2.1:80 -s wlc",
            "2:1 -a -t 192.0.2.1:80 -r 10.0.1.1:80 -m -w 5",
            "3:3 -a -t 192.0.2.1:80 -r 10.0.1.2:80 -m -w 1",
            "1:1 -A -t 192.0.2.2:80 -s wlc",
            "1:2 -a -t 192.0.2.2:80 -r 10.0.2.1:80 -m -w 1",
        ]
    );
    assert_eq!(
        notices,
        ["keepalived.conf:2: include \"empty/*.conf\" matched no file"]
    );
}

#[test]
fn include_errors_name_the_included_file() {
    let files = tree();
    let e = |text: &str| parse_files(&files, text, |_| ()).unwrap_err();
    assert_eq!(
        e("include bad.conf\n"),
        "bad.conf:4: \"DR\" is not supported: only NAT (lb_kind NAT) is supported yet; DR and TUN are not"
    );
    assert_eq!(
        e("include loop.conf\n"),
        "loop.conf:1: include \"loop.conf\": the file is already being read (an include cycle)"
    );
    assert_eq!(
        e("\ninclude deep.conf\n"),
        "deep2.conf:1: include \"deep.conf\": the file is already being read (an include cycle)"
    );
    assert_eq!(
        e("include missing.conf\n"),
        "keepalived.conf:1: include: missing.conf: no such file"
    );
    assert_eq!(
        e("include open.conf\n}\n"),
        "open.conf:1: the file ends inside the \"virtual_server\" block opened at line 1 (a missing \"}\")"
    );
    assert_eq!(
        e("virtual_server 192.0.2.3 80 {\ninclude close.conf\n"),
        "close.conf:1: unexpected \"}\""
    );
}

/// Files that include the next one forever, each a new file: the depth limit stops them.
struct Chain;

impl Files for Chain {
    fn include(
        &self,
        from: FileId,
        _pattern: &str,
        each: &mut dyn FnMut(FileId, &str, &str) -> ControlFlow<()>,
    ) -> Result<usize, IncludeError> {
        let next = from.0.wrapping_add(1);
        let _ = each(FileId(next), &format!("f{next}"), "include next\n");
        Ok(1)
    }
}

#[test]
fn include_depth_is_bounded() {
    let mut store = Store::new(1, 1, 1, 1);
    let e = store
        .config()
        .parse(&Chain, FileId(0), "f0", "include next\n", &mut |_| {})
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("f{MAX_INCLUDE_DEPTH}:1: include \"next\" nests deeper than {MAX_INCLUDE_DEPTH} files (an include cycle?)")
    );
}

#[test]
fn a_reader_s_error_is_reported_at_the_include() {
    struct Failing;
    impl Files for Failing {
        fn include(
            &self,
            _: FileId,
            pattern: &str,
            _: &mut dyn FnMut(FileId, &str, &str) -> ControlFlow<()>,
        ) -> Result<usize, IncludeError> {
            Err(IncludeError::new(&format_args!(
                "cannot read {pattern}: permission denied"
            )))
        }
    }
    let mut store = Store::new(1, 1, 1, 1);
    let e = store
        .config()
        .parse(
            &Failing,
            MAIN,
            "main.conf",
            "\n\ninclude x.conf\n",
            &mut |_| {},
        )
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "main.conf:3: include: cannot read x.conf: permission denied"
    );
}

#[test]
fn long_names_and_texts_are_cut_not_refused() {
    let name = "d/".repeat(60) + "keepalived.conf";
    let word = "x".repeat(200);
    let mut store = Store::new(1, 1, 1, 1);
    let e = store
        .config()
        .parse(&NoFiles, MAIN, &name, &word, &mut |_| {})
        .unwrap_err();
    assert!(e.file.ends_with("d/keepalived.conf") && e.file.len() == NAME_CAP);
    assert_eq!(e.text.len(), ERROR_TEXT_CAP);
    let long_path = format!(
        "{}\n",
        in_rs(&format!(
            "  HTTP_GET {{\n url {{\n path /{}\n }}\n }}",
            "p".repeat(200)
        ))
    );
    assert_eq!(
        refused(&long_path),
        format!(
            "keepalived.conf:5: \"/{}\": length in bytes out of range (1..=128)",
            "p".repeat(63)
        )
    );
}

/// A keepalived configuration gives the same lb-core configuration as the equivalent
/// `ipvsadm-save -n` lines.
#[test]
fn the_same_commands_as_the_equivalent_ipvsadm_save_lines() {
    let keepalived = r#"
virtual_server 192.0.2.10 80 {
    lb_algo wrr
    lb_kind NAT
    protocol TCP
    real_server 10.0.1.11 8080 {
        weight 3
        uthreshold 1000
        lthreshold 800
        TCP_CHECK {
        }
    }
    real_server 10.0.1.12 8080 {
        weight 0
    }
}
virtual_server 192.0.2.10 443 {
    lb_algo sh
    sh-port
    persistence_timeout 600
    persistence_granularity 255.255.255.0
    real_server 10.0.1.11 443 {
    }
}
virtual_server 2001:db8::53 53 {
    protocol UDP
    lb_algo mh
    mh-fallback
    ops
    persistence_timeout
    persistence_granularity 64
    real_server 2001:db8:1::a 5353 {
        weight 2
    }
}
virtual_server 192.0.2.20 {
    lb_algo lc
    persistence_timeout 300
    real_server 10.0.1.30 {
    }
}
"#;
    let ipvsadm_save = "\
-A -t 192.0.2.10:80 -s wrr
-a -t 192.0.2.10:80 -r 10.0.1.11:8080 -m -w 3 -x 1000 -y 800
-a -t 192.0.2.10:80 -r 10.0.1.12:8080 -m -w 0
-A -t 192.0.2.10:443 -s sh -b sh-port -p 600 -M 255.255.255.0
-a -t 192.0.2.10:443 -r 10.0.1.11:443 -m -w 1
-A -u [2001:db8::53]:53 -s mh -b mh-fallback -p 360 -M 64 -o
-a -u [2001:db8::53]:53 -r [2001:db8:1::a]:5353 -m -w 2
-A -t 192.0.2.20:0 -s lc -p 300
-a -t 192.0.2.20:0 -r 10.0.1.30:0 -m -w 1
";
    let want: Vec<_> = ipvsadm_save
        .lines()
        .map(|l| parse_line(l).unwrap().unwrap())
        .collect();
    let (got, _) = parse(keepalived, |c| {
        c.commands().map(|(_, cmd)| cmd).collect::<Vec<_>>()
    })
    .unwrap();
    assert_eq!(got, want);
}
