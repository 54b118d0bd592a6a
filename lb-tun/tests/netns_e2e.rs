//! End-to-end tests of the gateway in network namespaces with nginx and hey: each test runs
//! one scenario of `scripts/test-e2e.sh` (see its header) with its own namespace prefix, one
//! at a time (they compare timings, and the machine may have two cores), and checks that no
//! namespace is left behind.
//!
//! Needs root, `ip` and `/dev/net/tun`; otherwise each test prints why and passes without
//! running. nginx and hey are used when installed (`.ci/run` installs them), else the
//! project's own lb-demo-http and lb-demo-load (the drain scenario then skips: it needs hey).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

mod common;
use common::{our_namespaces, skip_reason};

/// One scenario at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn run(scenario: &str) {
    if let Some(why) = skip_reason() {
        println!("SKIPPED end-to-end scenario {scenario}: {why}");
        return;
    }
    let (ok, stdout) = run_script("scripts/test-e2e.sh", &[scenario], scenario);
    assert!(
        ok && stdout.trim_end().ends_with("PASS"),
        "scripts/test-e2e.sh {scenario} failed"
    );
}

/// Runs `bash SCRIPT ARGS...` from the repository with namespace prefix `lbt<PID><label>` and
/// the test's binaries, one at a time; prints its output, checks no namespace of it is left
/// behind, and returns whether it exited 0, and its standard output.
fn run_script(script: &str, args: &[&str], label: &str) -> (bool, String) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let bin_dir = std::env::var_os("LBT_BIN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_BIN_EXE_lb-tun"))
                .parent()
                .expect("binaries live in a directory")
                .to_path_buf()
        });
    // Unique per test process and scenario; "-" ends it in namespace names.
    let prefix = format!("lbt{}{label}", std::process::id());
    let started = std::time::Instant::now();
    let out = Command::new("bash")
        .arg(repo.join(script))
        .args(args)
        .env("LBT", &prefix)
        .env("LBT_BIN_DIR", &bin_dir)
        .output()
        .expect("run bash");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!(
        "{stdout}\n{stderr}\n({label}: {:.1} s)",
        started.elapsed().as_secs_f64()
    );
    let left = our_namespaces(&format!("{prefix}-"));
    assert!(left.is_empty(), "namespaces left behind: {left:?}");
    (out.status.success(), stdout.into_owned())
}

/// Whether an executable NAME is on the PATH.
fn on_path(name: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(name).is_file()))
}

/// `scripts/demo-cluster.sh`: three gateways behind a BIRD router's ECMP route, `mh` with
/// `--sloppy`; one gateway SIGKILLed, another drained: every connection of the killed one
/// answers its next request from the same server, nothing fails after the drain, nothing
/// fails beyond what was in flight at the kill. Skipped without BIRD 2 or python3.
#[test]
fn e2e_cluster_ecmp_kill_and_drain_keep_connections() {
    if let Some(why) = skip_reason() {
        println!("SKIPPED cluster demo: {why}");
        return;
    }
    for tool in ["bird", "birdc", "python3"] {
        if !on_path(tool) {
            println!(
                "SKIPPED cluster demo: {tool} is not installed (apt-get install bird2 python3)"
            );
            return;
        }
    }
    let (ok, stdout) = run_script("scripts/demo-cluster.sh", &[], "cluster");
    assert!(
        ok && stdout.lines().any(|l| l.starts_with("PASS: ")),
        "scripts/demo-cluster.sh failed"
    );
}

/// (a) every request 200, wrr 3:1 within 2 %; (b) real servers see the client's address;
/// IPv6, ICMP echo to the VIPs, live metrics through promtool.
#[test]
fn e2e_split_nat_ipv6_ping_metrics() {
    run("split");
}

/// (c) the seed scenario: 1,000 client ports, 6,000 connections without keep-alive.
#[test]
fn e2e_seed_port_reuse_without_dropped_syns() {
    run("seed");
}

/// (d) drain under load with a held keep-alive connection, delete once drained, and a
/// deleted server's live connection reset at once.
#[test]
fn e2e_drain_then_delete_under_load() {
    run("drain");
}

/// (e) -S restored into a fresh gateway: same listings and the same scheduling decisions.
#[test]
fn e2e_save_restore_same_decisions() {
    run("restore");
}

/// Hitless restart: the table carried across a SIGTERM and a start with the same --state;
/// keep-alive load and a held connection see no failure.
#[test]
fn e2e_restart_with_state_keeps_connections() {
    run("restart");
}

/// Failover: master and backup synced by IPVS's protocol; the VIP and the return route move to
/// the backup under keep-alive load (wrr, so only sync carries the flows); no request fails.
#[test]
fn e2e_failover_with_sync_keeps_connections() {
    run("failover");
}

/// (f) fragments and extension headers: a UDP service answering 4,000-byte datagrams,
/// fragmented both ways, through the IPv4 and IPv6 VIPs; an IPv6 client sending with a
/// Hop-by-Hop header is served.
#[test]
fn e2e_fragments_both_ways_and_hop_by_hop() {
    run("frag");
}

/// (f) a spoofed SYN flood fills the table (default settings): the keep-alive connections see
/// no error, >= 95 % of new connections during the flood and all after it succeed; a flood from
/// one /24 is held to its share of half-open entries.
#[test]
fn e2e_synflood_new_connections_still_succeed() {
    run("synflood");
}

/// Health checks from a keepalived.conf (HTTP_GET and TCP_CHECK, delay_loop 1): a stopped
/// server leaves within the bound its knobs give, a restarted one comes back, a 404 on the
/// health URL removes a server, the sorry server serves while both are down.
#[test]
fn e2e_health_checks_remove_and_restore_servers() {
    run("health");
}

/// Direct routing on a TAP device (`--tap`): a socat echo of 4 MB compares bytes both ways;
/// hey over wrr 3:1 `-g` servers set up as for kernel IPVS DR (VIP on lo, arp_ignore=1,
/// arp_announce=2, rp_filter 0): every request 200, split 3:1, the servers' replies never
/// pass the director (OutPkts 0, none on the TAP); IPv6 DR; NAT on the same TAP gateway; TCP_CHECK
/// probes over the TAP take a stopped server out.
#[test]
fn e2e_direct_routing_on_tap() {
    run("dr");
}

/// lb-decap on a real server whose kernel has no tunnel module: IPIP, GRE and GUE (every
/// checksum option, remote checksum offload) over IPv4 and IPv6 from a director written apart
/// from lb-core; HTTP and UDP to both VIPs answered straight to the client; no protocol
/// unreachable once its raw sockets are bound; damaged packets counted per reason.
#[test]
fn e2e_decap_userspace_tunnel_endpoint() {
    run("decap");
}

/// Tunnel forwarding (-i) end to end: lb-tun to two real servers running lb-decap and nginx,
/// by ipip, gue and gre: hey with no failure and the wrr split, IPv6, a 1 MB socat echo byte
/// for byte over each family, replies straight to the client, the outer headers on s1's link
/// checked field by field; path MTU discovery shown (lb-tun's "fragmentation needed" / "packet
/// too big" with the MTU left in the tunnel, on the client's link, learnt by its routes,
/// counted); then the same with the kernel decapsulating, for each kind it can (skipped with a
/// `skip: kernel decapsulation of KIND: WHY` line where not).
#[test]
fn e2e_tunnel_ipip_gue_gre_to_lb_decap_servers() {
    run("tunnel");
}

/// Offloads: 64 KB segments NAT-rewritten with their partial checksums, verified in software
/// by the far ends, every byte echoed both ways over both families (scripts/test-e2e.sh
/// header, `offload`).
#[test]
fn e2e_offload_segments_checksums_verified_by_the_far_ends() {
    run("offload");
}

/// `--announce` without BGP: the VIP routes appear once the checks pass, go when a VIP's
/// servers fail and come back, `--drain-gateway` withdraws them while a held connection is
/// still served and the gateway exits after it, SIGKILL takes them with the TUN device.
#[test]
fn e2e_announce_routes_follow_readiness_drain_and_kill() {
    run("announce");
}
