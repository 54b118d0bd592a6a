//! End-to-end: the netns topology with `tun-echo` carrying all traffic through the TUN device
//! (runs `scripts/test-echo.sh`), then checks no namespace with the test's prefix is left.
//!
//! Needs root, `ip` and `/dev/net/tun`; otherwise it prints why and passes without running.

use std::path::{Path, PathBuf};
use std::process::Command;

mod common;
use common::{our_namespaces, skip_reason};

#[test]
fn http_through_tun_echo_in_network_namespaces() {
    if let Some(why) = skip_reason() {
        println!("SKIPPED netns end-to-end test: {why}");
        return;
    }
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_tun-echo"))
        .parent()
        .expect("binaries live in a directory")
        .to_path_buf();
    // Unique per test process; "-" ends it so lbt123 never matches lbt1234's namespaces.
    let prefix = format!("lbt{}t", std::process::id());
    let out = Command::new("bash")
        .arg(repo.join("scripts/test-echo.sh"))
        .env("LBT", &prefix)
        .env("LBT_BIN_DIR", &bin_dir)
        .output()
        .expect("run bash");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}\n{stderr}");
    let left = our_namespaces(&format!("{prefix}-"));
    assert!(left.is_empty(), "namespaces left behind: {left:?}");
    assert!(out.status.success(), "scripts/test-echo.sh failed");
    assert!(stdout.contains("PASS"));
}
