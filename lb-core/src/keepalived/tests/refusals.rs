//! Every refusal, with its exact `file:line` message; storage limits and long texts.

use std::format;
use std::string::{String, ToString};

use super::*;

#[test]
fn every_refusal_names_file_line_and_why() {
    let cases: &[(String, &str)] = &[
        (in_vs(" lb_kindd NAT"), "keepalived.conf:2: unknown keyword \"lb_kindd\" in virtual_server"),
        (in_vs(" lb_kind TUN type"), "keepalived.conf:2: \"type\" needs ipip, gue port NUM or gre"),
        (in_vs(" lb_kind TUN type gue"), "keepalived.conf:2: \"gue\" needs port NUM after gue"),
        (in_vs(" lb_kind TUN type gue port 0"), "keepalived.conf:2: \"0\": expected a GUE port from 1 to 65535"),
        (in_vs(" lvs_method TUN type vxlan"), "keepalived.conf:2: \"vxlan\": expected ipip, gue or gre"),
        (in_vs(" lb_kind TUN type ipip csum"), "keepalived.conf:2: \"csum\": checksum options are for gue (csum, remcsum) and gre (csum)"),
        (in_vs(" lb_kind TUN type gre remcsum"), "keepalived.conf:2: \"remcsum\": checksum options are for gue (csum, remcsum) and gre (csum)"),
        (in_vs(" lb_kind TUN type gre csum extra"), "keepalived.conf:2: unexpected \"extra\": one keyword a line (keepalived would ignore it silently)"),
        (in_vs(" lb_kind DR NAT"), "keepalived.conf:2: unexpected \"NAT\": one keyword a line (keepalived would ignore it silently)"),
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
        (in_vs(" sorry_server_lvs_method DR"), "keepalived.conf:2: \"DR\" is not supported: the sorry server forwards by NAT only (sorry_server_lvs_method NAT)"),
        (in_vs(" sorry_server_lvs_method TUN"), "keepalived.conf:2: \"TUN\" is not supported: the sorry server forwards by NAT only (sorry_server_lvs_method NAT)"),
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
        (in_rs("  lb_kind TUN type gre bogus"), "keepalived.conf:3: \"bogus\": expected nocsum, csum or remcsum"),
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
    let long_line = in_rs(&format!(
        "  HTTP_GET {{\n url {{\n path /\n status_code{}\n }}\n }}",
        " 200".repeat(32)
    ));
    let more: &[(String, &str)] = &[
        (
            long_line,
            "keepalived.conf:6: \"200\": more than 32 words on one line",
        ),
        (
            "includer x.conf\n".into(),
            "keepalived.conf:1: \"includer\" is not supported: include's variants; use include",
        ),
        (
            "~SEQ(i,1,3)\n".into(),
            "keepalived.conf:1: \"~SEQ(i,1,3)\" is not supported: ~SEQ and ~LST blocks",
        ),
        (
            "include {\n}\n".into(),
            "keepalived.conf:1: \"include\" takes no block",
        ),
    ];
    for (text, want) in cases.iter().chain(more) {
        assert_eq!(&refused(text), want, "for:\n{text}");
    }
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
