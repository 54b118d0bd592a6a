//! `--keepalived` without a TUN device: files and includes on disk, the same `-L -n` and `-S`
//! as the equivalent `--config`, and errors that name the file and line with nothing applied.

use std::path::PathBuf;

use lb_core::{Instant, Limits};

use super::*;
use crate::control::Request;
use crate::gateway::{parse_batch, Gateway, FWMARK_REFUSED};
use crate::tun::RingStats;

const T0: Instant = Instant::from_millis(0);

/// A fresh directory under the system's temporary directory, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("lb-tun-keepalived-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.0.join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, text).unwrap();
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn gw() -> Gateway {
    let limits = Limits {
        services: 8,
        servers_per_service: 64,
        table_slots_per_service: 65536,
        lblc_entries_per_service: 64,
    };
    Gateway::with_limits(limits, 4096, 7, [3; 16], T0)
}

fn list(g: &mut Gateway) -> String {
    let req = Request {
        args: vec!["-L".into(), "-n".into()],
        stdin: None,
    };
    let r = g.control(T0, &req, &RingStats::default());
    assert_eq!(r.status, 0, "{}", r.text);
    r.text
}

const MAIN: &str = r#"! Configuration File for keepalived
global_defs {
   router_id LVS_1
}
vrrp_instance VI_1 {
    state MASTER
    interface eth0
    virtual_router_id 51
    virtual_ipaddress {
        10.30.0.10
    }
}
virtual_server 10.30.0.10 80 {
    delay_loop 6
    lb_algo wrr
    lb_kind NAT
    protocol TCP
    include reals/web-*.conf
}
virtual_server fd00:30::10 53 {
    lb_algo mh
    mh-port
    persistence_timeout 60
    protocol UDP
    real_server fd00:20::2 53 {
        weight 2
        TCP_CHECK {
            connect_port 53
        }
    }
    real_server fd00:20::3 53 {
    }
}
include more.conf
"#;

const WEB1: &str = r#"real_server 10.20.1.2 80 {
    weight 3
    HTTP_GET {
        url {
            path /healthz
        }
    }
}
"#;

const WEB2: &str = r#"real_server 10.20.1.3 80 {
    weight 1
    uthreshold 100
    lthreshold 10
    TCP_CHECK {
        connect_timeout 3
    }
}
"#;

const MORE: &str = r#"virtual_server 10.30.0.9 443 {
    lb_algo sh
    persistence_timeout 300
    persistence_granularity 255.255.255.0
    sorry_server 10.20.1.9 443
    real_server 10.20.1.4 443 {
        weight 0
    }
}
"#;

/// The same configuration as `ipvsadm-save -n` lines.
const SAVE: &str = "\
-A -t 10.30.0.10:80 -s wrr
-a -t 10.30.0.10:80 -r 10.20.1.2:80 -m -w 3
-a -t 10.30.0.10:80 -r 10.20.1.3:80 -m -w 1 -x 100 -y 10
-A -u [fd00:30::10]:53 -s mh -b mh-port -p 60
-a -u [fd00:30::10]:53 -r [fd00:20::2]:53 -m -w 2
-a -u [fd00:30::10]:53 -r [fd00:20::3]:53 -m
-A -t 10.30.0.9:443 -s sh -p 300 -M 255.255.255.0
-a -t 10.30.0.9:443 -r 10.20.1.4:443 -m -w 0
";

fn tree(tag: &str) -> (TempDir, PathBuf) {
    let dir = TempDir::new(tag);
    let main = dir.write("keepalived.conf", MAIN);
    dir.write("reals/web-1.conf", WEB1);
    dir.write("reals/web-2.conf", WEB2);
    dir.write("more.conf", MORE);
    (dir, main)
}

#[test]
fn a_keepalived_conf_lists_like_the_equivalent_config() {
    let (_dir, main) = tree("list");
    let loaded = load(&main).unwrap();
    let name = main.display().to_string();
    assert_eq!(
        loaded.notices,
        [
            format!("{name}:2: global_defs block skipped (VRRP and global settings stay keepalived's job)"),
            format!("{name}:5: vrrp_instance block skipped (VRRP and global settings stay keepalived's job)"),
        ]
    );
    assert_eq!(loaded.health.checks.len(), 3);
    assert_eq!(loaded.health.services.len(), 3);
    assert_eq!(loaded.not_run(), None);
    assert_eq!(loaded.items.len(), 8);
    assert!(
        loaded.items[1].at.ends_with("reals/web-1.conf:1"),
        "{:?}",
        loaded.items[1]
    );

    let mut from_keepalived = gw();
    assert_eq!(from_keepalived.apply_items(T0, "k", &loaded.items), Ok(8));
    let mut from_config = gw();
    assert_eq!(from_config.apply_batch(T0, "lb.conf", SAVE), Ok(8));
    let listing = list(&mut from_keepalived);
    assert!(listing.contains("TCP  10.30.0.10:80 wrr"), "{listing}");
    assert_eq!(listing, list(&mut from_config));
    assert_eq!(from_keepalived.save(), from_config.save());
}

#[test]
fn combined_with_config_an_error_names_file_and_line_and_nothing_is_applied() {
    let (dir, main) = tree("combined");
    let mut items = parse_batch("lb.conf", "-A -t 10.30.0.9:443 -s rr\n").unwrap();
    items.extend(load(&main).unwrap().items);
    let mut g = gw();
    let e = g.apply_items(T0, "startup", &items).unwrap_err();
    let more = dir.0.join("more.conf").display().to_string();
    assert_eq!(
        e.0,
        format!("{more}:1: Service already exists (-A -t 10.30.0.9:443 -s sh -p 300 -M 255.255.255.0)\n  (as ipvsadm: -A -t 10.30.0.9:443 -s sh -p 300 -M 255.255.255.0)")
    );
    assert!(!list(&mut g).contains("TCP"), "nothing applied");
}

#[test]
fn refusals_name_the_included_file_and_line() {
    let (dir, main) = tree("refused");
    let web2 = dir.write("reals/web-2.conf", &WEB2.replace("TCP_CHECK", "MISC_CHECK"));
    assert_eq!(
        load(&main).unwrap_err(),
        format!("{}:5: \"MISC_CHECK\" is not supported: MISC_CHECK is out of scope: lb runs no scripts; use TCP_CHECK or HTTP_GET", web2.display())
    );
    dir.write("reals/web-2.conf", "include ../keepalived.conf\n");
    assert_eq!(
        load(&main).unwrap_err(),
        format!(
            "{}:1: include \"{}\": the file is already being read (an include cycle)",
            web2.display(),
            dir.0.join("reals/../keepalived.conf").display()
        )
    );
    dir.write("reals/web-2.conf", "include \"x/{a,b}.conf\"\n");
    assert_eq!(
        load(&main).unwrap_err(),
        format!(
            "{}:1: include: x/{{a,b}}.conf: brace patterns ({{a,b}}) are not supported",
            web2.display()
        )
    );
    let missing = dir.0.join("nothing.conf");
    assert!(load(&missing)
        .unwrap_err()
        .starts_with(&format!("cannot read {}: ", missing.display())));
}

#[test]
fn a_fwmark_virtual_server_is_refused_at_its_line() {
    let dir = TempDir::new("fwmark");
    let main = dir.write(
        "k.conf",
        "\nvirtual_server fwmark 7 {\n persistence_timeout 60\n real_server 10.0.0.1 {\n }\n}\n",
    );
    let loaded = load(&main).unwrap();
    let e = gw().apply_items(T0, "k", &loaded.items).unwrap_err();
    assert_eq!(
        e.0,
        format!(
            "{}:2: {FWMARK_REFUSED}\n  (as ipvsadm: -A -f 7 -s wlc -p 60)",
            main.display()
        )
    );
}

#[test]
fn storage_grows_for_large_configurations() {
    let dir = TempDir::new("large");
    let mut text = String::new();
    for i in 0..3 {
        let _ = writeln!(text, "virtual_server 10.30.0.{i} 80 {{");
        for r in 0..700 {
            let _ = writeln!(
                text,
                " real_server 10.{i}.{}.{} 80 {{\n }}",
                r / 256,
                r % 256
            );
        }
        text.push_str("}\n");
    }
    let main = dir.write("k.conf", &text);
    let loaded = load(&main).unwrap();
    assert_eq!(loaded.items.len(), 3 + 2100);
}

#[test]
fn checkers_become_health_checks_with_keepalived_knobs() {
    let (_dir, main) = tree("health");
    let loaded = load(&main).unwrap();
    let http = &loaded.health.checks[0];
    assert!(http.at.ends_with("reals/web-1.conf:3"), "{}", http.at);
    assert_eq!(http.server, "10.20.1.2:80".parse().unwrap());
    let lb_core::CheckKind::HttpGet { urls } = &http.check.kind else {
        panic!("{:?}", http.check.kind)
    };
    assert_eq!(urls[0].path.as_str(), "/healthz");
    assert!(urls[0].status.accepts(204) && !urls[0].status.accepts(301));
    // delay_loop inherited from the virtual server; HTTP_GET's delay_before_retry default.
    assert_eq!(http.check.delay_loop, lb_core::Duration::from_secs(6));
    assert_eq!(
        http.check.delay_before_retry,
        lb_core::Duration::from_secs(3)
    );
    assert_eq!(http.check.warmup, Some(lb_core::Duration::from_secs(6)));
    let tcp = &loaded.health.checks[1];
    assert_eq!(tcp.check.connect_timeout, lb_core::Duration::from_secs(3));
    assert_eq!(tcp.check.kind, lb_core::CheckKind::TcpConnect);
    let (_, key, sorry) = &loaded.health.services[2];
    assert_eq!(key.to_string(), "-t 10.30.0.9:443");
    assert_eq!(sorry.sorry_server, Some("10.20.1.9:443".parse().unwrap()));

    // Without a probe source the gateway refuses the checks; with one it runs them.
    let mut g = gw();
    g.apply_items(T0, "k", &loaded.items).unwrap();
    let err = g.apply_health(T0, &loaded.health).unwrap_err();
    assert!(err.contains("no --probe-source"), "{err}");
    let mut g = gw();
    g.apply_items(T0, "k", &loaded.items).unwrap();
    g.enable_probes(T0, &["10.99.0.1".parse().unwrap()])
        .unwrap();
    let err = g.apply_health(T0, &loaded.health).unwrap_err();
    assert!(err.contains("needs an IPv6 --probe-source"), "{err}");
    let mut g = gw();
    g.apply_items(T0, "k", &loaded.items).unwrap();
    g.enable_probes(
        T0,
        &["10.99.0.1".parse().unwrap(), "fd00:99::1".parse().unwrap()],
    )
    .unwrap();
    g.apply_health(T0, &loaded.health).unwrap();
    assert_eq!(g.balancer().health_statuses().count(), 3);
    let req = Request {
        args: vec!["--health".into()],
        stdin: None,
    };
    let r = g.control(T0, &req, &RingStats::default());
    assert_eq!(r.status, 0);
    assert!(
        r.text.contains("10.20.1.2:80") && r.text.contains("HTTP_GET"),
        "{}",
        r.text
    );
    // The sorry server of 10.30.0.9:443 serves: its only real server has weight 0, so the
    // quorum (1) is lost at once.
    assert!(list(&mut g).contains("10.20.1.9:443"), "{}", list(&mut g));
}

#[test]
fn what_is_not_acted_upon_is_listed() {
    let dir = TempDir::new("ignored");
    let main = dir.write(
        "keepalived.conf",
        "virtual_server 10.30.0.10 80 {\n  lb_algo rr\n  lb_kind NAT\n  omega\n  real_server 10.20.1.2 80 {\n    TCP_CHECK {\n    }\n    TCP_CHECK {\n      connect_port 81\n    }\n  }\n}\n",
    );
    let loaded = load(&main).unwrap();
    let w = loaded.not_run().unwrap();
    assert!(w.contains("omega"), "{w}");
    assert!(
        w.contains(":8: a second checker of real server 10.20.1.2:80"),
        "{w}"
    );
    assert_eq!(loaded.health.checks.len(), 1);
}
