//! Every keyword's value, keepalived's defaults and inheritance, the lexical rules, and the
//! notices of what is skipped or ignored.

use std::string::ToString;

use super::*;
use crate::config::{ForwardMethod, SchedulerKind, ServiceKey};
use crate::time::Duration;

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
fn the_remaining_keywords_are_kept() {
    let text = "virtual_server 192.0.2.10 80 {\n quorum 3\n hysteresis 1\n omega\n sorry_server 10.0.9.9\n sorry_server_inhibit on\n sorry_server_lvs_method NAT\n lb_algo wrr\n flag-1\n flag-2\n alpha\n delay_before_retry 2\n real_server 10.0.1.1 80 {\n  lvs_method NAT\n  alpha no\n  inhibit_on_failure\n  TCP_CHECK {\n   alpha yes\n  }\n  TCP_CHECK {\n  }\n }\n}\n";
    parse(text, |c| {
        let vs = &c.virtual_servers()[0];
        assert_eq!((vs.quorum, vs.hysteresis, vs.omega), (3, 1, true));
        let sorry = vs.sorry_server.unwrap();
        assert_eq!(sorry.addr, sa("10.0.9.9:80"), "the service's port");
        assert!(vs.sorry_server_inhibit);
        assert!(vs.service.flags.fallback && vs.service.flags.port);
        let rs = &c.real_servers(vs)[0];
        assert!(rs.inhibit_on_failure);
        let [a, b] = c.checkers(rs) else { panic!() };
        assert!(a.alpha, "the checker's own");
        assert!(
            !b.alpha,
            "the real server's `alpha no` over the virtual server's"
        );
        assert_eq!(b.timing.delay_before_retry, Duration::from_secs(2));
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
