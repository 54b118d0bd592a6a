//! Shared by the namespace tests: whether they can run here, and which namespaces they left.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

/// Why the namespace tests cannot run here, if they cannot: not root, no `ip`, no TUN.
pub fn skip_reason() -> Option<String> {
    match std::fs::metadata("/proc/self") {
        Ok(m) if m.uid() == 0 => {}
        Ok(_) => return Some("not root".into()),
        Err(e) => return Some(format!("cannot tell the user id: {e}")),
    }
    if Command::new("ip").arg("-V").output().is_err() {
        return Some("`ip` (iproute2) is not installed".into());
    }
    if !Path::new("/dev/net/tun").exists() {
        return Some("/dev/net/tun is missing".into());
    }
    None
}

/// The network namespaces whose names start with `prefix`.
pub fn our_namespaces(prefix: &str) -> Vec<String> {
    let out = Command::new("ip").args(["netns", "list"]).output();
    let text = out.map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
    text.unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(prefix))
        .map(str::to_string)
        .collect()
}
