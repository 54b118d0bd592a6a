//! Replays every saved input of the `control` fuzz target (`fuzz/regressions/control/`)
//! through the same harness the target runs, with lb-tun's request decoder and encoder
//! (lb-core's tests cannot depend on lb-tun). See FUZZING.md.

#[allow(dead_code)]
#[path = "../../lb-core/tests/harness/grammar.rs"]
mod grammar;

#[allow(dead_code)]
#[path = "../../lb-core/tests/harness/control.rs"]
mod control;

use std::path::PathBuf;

use lb_tun::control::{read_request, write_request, Request};

fn decode(r: &mut &[u8]) -> Option<control::Request> {
    read_request(r).ok().map(|q| (q.args, q.stdin))
}

fn encode(q: &control::Request) -> Option<Vec<u8>> {
    let req = Request {
        args: q.0.clone(),
        stdin: q.1.clone(),
    };
    let mut out = Vec::new();
    write_request(&mut out, &req).ok()?;
    Some(out)
}

#[test]
fn control_regressions() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/regressions/control");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    files.retain(|p| p.is_file());
    files.sort();
    for f in files {
        let data = std::fs::read(&f).unwrap();
        let r = std::panic::catch_unwind(|| control::run(&data, decode, encode));
        assert!(r.is_ok(), "regression input {} fails again", f.display());
    }
}

/// The seed requests decode, re-encode and apply (the harness itself works).
#[test]
fn control_seeds_pass() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds/control");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let data = std::fs::read(e.unwrap().path()).unwrap();
        let mut rest = &data[..];
        assert!(decode(&mut rest).is_some(), "seed decodes");
        control::run(&data, decode, encode);
        n += 1;
    }
    assert!(n > 0);
}
