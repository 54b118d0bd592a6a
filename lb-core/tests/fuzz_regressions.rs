//! Replays every saved fuzz input under `fuzz/regressions/<target>/` through the same
//! harness the fuzz targets run (`tests/harness`), so `cargo test` keeps every fixed crash
//! fixed. The `control` target's inputs are replayed by lb-tun's `tests/fuzz_regressions.rs`
//! (it needs lb-tun's decoder). See FUZZING.md.

mod harness;

use std::path::PathBuf;

/// Runs every file of `fuzz/regressions/<target>` and of the seed corpus `fuzz/seeds/<target>`.
fn replay(target: &str, run: fn(&[u8])) {
    for kind in ["regressions", "seeds"] {
        replay_dir(
            &PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../fuzz")
                .join(kind)
                .join(target),
            run,
        );
    }
}

fn replay_dir(dir: &std::path::Path, run: fn(&[u8])) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    for f in files {
        let data = std::fs::read(&f).unwrap();
        let name = f.display().to_string();
        let r = std::panic::catch_unwind(|| run(&data));
        assert!(r.is_ok(), "regression input {name} fails again");
    }
}

#[test]
fn packets_regressions() {
    replay("packets", harness::packets::run);
}

#[test]
fn tcp_state_regressions() {
    replay("tcp_state", harness::tcp_state::run);
}

#[test]
fn sync_regressions() {
    replay("sync", harness::sync::run);
}

#[test]
fn decap_regressions() {
    replay("decap", harness::decap::run);
}

#[test]
fn ipvsadm_regressions() {
    replay("ipvsadm", harness::grammar::run_lines);
}

#[test]
fn keepalived_regressions() {
    replay("keepalived", harness::keepalived::run);
}

/// Replays one file: `LB_FUZZ_REPLAY=packets:path/to/crash cargo test -p lb-core --test
/// fuzz_regressions replay_one -- --ignored --nocapture` (prints the decoded input first).
#[test]
#[ignore = "run on demand with LB_FUZZ_REPLAY=target:path"]
fn replay_one() {
    let Ok(spec) = std::env::var("LB_FUZZ_REPLAY") else {
        return;
    };
    let (target, path) = spec.split_once(':').expect("target:path");
    let data = std::fs::read(path).unwrap();
    let mut u = arbitrary::Unstructured::new(&data);
    match target {
        "packets" => {
            use arbitrary::Arbitrary;
            println!("{:#?}", harness::packets::Input::arbitrary(&mut u));
            harness::packets::run(&data);
        }
        "tcp_state" => {
            use arbitrary::Arbitrary;
            println!("{:#?}", harness::tcp_state::Input::arbitrary(&mut u));
            harness::tcp_state::run(&data);
        }
        "ipvsadm" => {
            println!("{}", String::from_utf8_lossy(&data));
            harness::grammar::run_lines(&data);
        }
        "keepalived" => {
            for (name, text) in harness::keepalived::Inputs::split(&data).0 {
                println!("--- {name}\n{text}");
            }
            harness::keepalived::run(&data);
        }
        "sync" => harness::sync::run(&data),
        "decap" => harness::decap::run(&data),
        other => panic!("unknown target {other}"),
    }
}
