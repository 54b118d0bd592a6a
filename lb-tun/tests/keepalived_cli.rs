//! `lb-tun --keepalived FILE --check` (no TUN device, no privileges): a keepalived.conf and the
//! equivalent `--config` print the same `-S`; combined they are applied together; a wrong file
//! stops the gateway with `FILE:LINE` and exit status 1.

use std::path::PathBuf;
use std::process::{Command, Output};

fn dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("lb-tun-ka-cli-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn lb_tun(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lb-tun"))
        .args(["--tun", "unused0", "--check"])
        .args(args)
        .env("RUST_LOG", "info")
        .output()
        .unwrap()
}

const KEEPALIVED: &str = "\
global_defs {
    router_id lb1
}
virtual_server 10.30.0.10 80 {
    lb_algo rr
    lb_kind NAT
    real_server 10.20.1.2 80 {
        weight 2
        TCP_CHECK {
            connect_timeout 3
        }
    }
}
";

#[test]
fn check_prints_the_same_save_as_the_equivalent_config_and_needs_a_probe_source() {
    let d = dir("same");
    let ka = d.join("keepalived.conf");
    std::fs::write(&ka, KEEPALIVED).unwrap();
    let conf = d.join("lb.conf");
    std::fs::write(
        &conf,
        "-A -t 10.30.0.10:80 -s rr\n-a -t 10.30.0.10:80 -r 10.20.1.2:80 -m -w 2\n",
    )
    .unwrap();
    // A checker needs a probe source.
    let none = lb_tun(&["--keepalived", ka.to_str().unwrap()]);
    assert!(!none.status.success());
    let log = String::from_utf8_lossy(&none.stderr);
    assert!(log.contains("no --probe-source"), "{log}");
    let a = lb_tun(&[
        "--keepalived",
        ka.to_str().unwrap(),
        "--probe-source",
        "10.30.0.250",
    ]);
    let b = lb_tun(&["--config", conf.to_str().unwrap()]);
    assert!(a.status.success(), "{}", String::from_utf8_lossy(&a.stderr));
    assert_eq!(
        String::from_utf8_lossy(&a.stdout),
        String::from_utf8_lossy(&b.stdout)
    );
    assert!(String::from_utf8_lossy(&a.stdout).contains("-A -t 10.30.0.10:80 -s rr"));
    let log = String::from_utf8_lossy(&a.stderr);
    assert!(log.contains(":1: global_defs block skipped"), "{log}");
    assert!(
        log.contains("health: 1 real servers checked from 10.30.0.250"),
        "{log}"
    );

    // Both at once: the union, applied together.
    std::fs::write(&conf, "-A -u 10.30.0.10:53 -s wlc\n").unwrap();
    let c = lb_tun(&[
        "--config",
        conf.to_str().unwrap(),
        "--keepalived",
        ka.to_str().unwrap(),
        "--probe-source",
        "10.30.0.250",
    ]);
    let out = String::from_utf8_lossy(&c.stdout);
    assert!(c.status.success());
    assert!(
        out.contains("-A -u 10.30.0.10:53") && out.contains("-A -t 10.30.0.10:80"),
        "{out}"
    );
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn a_wrong_keepalived_conf_stops_the_gateway_naming_file_and_line() {
    let d = dir("wrong");
    let ka = d.join("keepalived.conf");
    std::fs::write(
        &ka,
        KEEPALIVED.replace("lb_kind NAT", "lb_kind TUN type gre remcsum"),
    )
    .unwrap();
    let out = lb_tun(&["--keepalived", ka.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        log.contains(&format!(
            "config not applied: {}:6: \"remcsum\": checksum options are for gue (csum, remcsum) and gre (csum)",
            ka.display()
        )),
        "{log}"
    );
    assert!(out.stdout.is_empty());
    let _ = std::fs::remove_dir_all(&d);
}
