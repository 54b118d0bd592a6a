//! Runs the `schedule` example binary and checks its observable behaviour.
//!
//! How the binary is found (robust without nested cargo locking): `cargo test` builds the
//! package's examples before running tests, into `<target>/<profile>/examples/`, a sibling of
//! this test's own `deps/` directory, so the path is derived from `current_exe()`. When only
//! this test target was built (`cargo test --test schedule_example`), the binary may be
//! missing: it is then built with `cargo build --example schedule` (the outer cargo holds no
//! lock while tests run).

use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::OnceLock;

fn binary() -> &'static PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let exe = std::env::current_exe().expect("test executable path");
        let profile_dir = exe
            .parent()
            .and_then(|deps| deps.parent())
            .expect("target/<profile>/deps");
        let bin = profile_dir
            .join("examples")
            .join(format!("schedule{}", std::env::consts::EXE_SUFFIX));
        if !bin.exists() {
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let status = Command::new(cargo)
                .args(["build", "-q", "-p", "lb-core", "--example", "schedule"])
                .status()
                .expect("run cargo build");
            assert!(status.success(), "building the schedule example failed");
        }
        bin
    })
}

fn run(args: &[&str]) -> Output {
    Command::new(binary())
        .args(args)
        .output()
        .expect("run the schedule example")
}

fn lines(args: &[&str]) -> Vec<String> {
    let out = run(args);
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn wrr_first_pass_then_weighted_pattern() {
    // Added A (w 4), B (w 3), C (w 2): list C B A, cw starts at 1.
    let got = lines(&[
        "--scheduler",
        "wrr",
        "--dest",
        "10.0.0.1:80:4",
        "--dest",
        "10.0.0.2:80:3",
        "--dest",
        "10.0.0.3:80:2",
        "--picks",
        "12",
    ]);
    let (a, b, c) = ("10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80");
    assert_eq!(got, [c, b, a, a, b, a, c, b, a, c, b, a]);
}

#[test]
fn picks_count_as_active_connections() {
    // lc with active connections: alternates in list order (B first: added last).
    let got = lines(&[
        "--scheduler",
        "lc",
        "--dest",
        "10.0.0.1:80:1",
        "--dest",
        "10.0.0.2:80:5",
        "--picks",
        "4",
    ]);
    assert_eq!(
        got,
        ["10.0.0.2:80", "10.0.0.1:80", "10.0.0.2:80", "10.0.0.1:80"]
    );
    // ovf: weight caps active connections, then none.
    let got = lines(&[
        "--scheduler",
        "ovf",
        "--dest",
        "10.0.0.1:80:1",
        "--picks",
        "3",
    ]);
    assert_eq!(got, ["10.0.0.1:80", "10.0.0.1:80", "none"]);
}

#[test]
fn clients_ipv6_and_weight_zero() {
    let got = lines(&[
        "--scheduler",
        "rr",
        "--vip",
        "[2001:db8::100]:443",
        "--dest",
        "[2001:db8::1]:8443:1",
        "--dest",
        "[2001:db8::2]:8443:0",
        "--dest",
        "[2001:db8::3]:8443:2",
        "--client",
        "[2001:db8:1::1]:1000",
        "--client",
        "[2001:db8:1::2]:1000@2001:db8::100",
        "--client",
        "[2001:db8:1::3]:1000",
    ]);
    assert_eq!(
        got,
        [
            "[2001:db8::3]:8443",
            "[2001:db8::1]:8443",
            "[2001:db8::3]:8443"
        ]
    );
}

#[test]
fn twos_is_reproducible_with_a_seed() {
    let args = |seed| {
        lines(&[
            "--scheduler",
            "twos",
            "--dest",
            "10.0.0.1:80:1",
            "--dest",
            "10.0.0.2:80:2",
            "--dest",
            "10.0.0.3:80:3",
            "--picks",
            "40",
            "--seed",
            seed,
        ])
    };
    assert_eq!(args("11"), args("11"));
    assert_eq!(args("11").len(), 40);
}

#[test]
fn errors_exit_non_zero_with_a_message() {
    for args in [
        &[
            "--scheduler",
            "nope",
            "--dest",
            "10.0.0.1:80:1",
            "--picks",
            "1",
        ][..],
        &[
            "--scheduler",
            "rr",
            "--dest",
            "10.0.0.1:80:65536",
            "--picks",
            "1",
        ],
        &[
            "--scheduler",
            "rr",
            "--dest",
            "10.0.0.x:80:1",
            "--picks",
            "1",
        ],
        &["--scheduler", "rr", "--picks", "1"],
        &["--scheduler", "rr", "--dest", "10.0.0.1:80:1"],
        &["--dest", "10.0.0.1:80:1", "--picks", "1"],
        &["--scheduler", "rr", "--dest", "[::1]:80:1", "--picks", "1"],
        &[
            "--scheduler",
            "sh",
            "--table-size",
            "100",
            "--dest",
            "10.0.0.1:80:1",
            "--picks",
            "1",
        ],
        &[
            "--scheduler",
            "sh",
            "--flag",
            "bogus",
            "--dest",
            "10.0.0.1:80:1",
            "--picks",
            "1",
        ],
    ] {
        let out = run(args);
        assert!(!out.status.success(), "{args:?} should fail");
        assert!(!out.stderr.is_empty(), "{args:?} should explain");
        assert!(out.stdout.is_empty());
    }
}
