//! `lbadm` against an in-process control server: argv pass-through, `--control`, `-R` stdin,
//! exit status, and the error when no gateway runs. No root needed.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;

use lb_tun::control::{ControlServer, Pending, Reply};

fn socket_path(tag: &str) -> PathBuf {
    std::env::temp_dir().join(format!("lbt-cli-{}-{tag}.sock", std::process::id()))
}

/// Replies with the request it got; status 4 for `-D` so exit codes can be checked.
fn handler(rx: mpsc::Receiver<Pending>) -> JoinHandle<()> {
    std::thread::spawn(move || {
        while let Ok(p) = rx.recv() {
            let status = if p.request.args.iter().any(|a| a == "-D") {
                4
            } else {
                0
            };
            let text = format!("{:?} {:?}\n", p.request.args, p.request.stdin);
            p.respond(Reply { status, text });
        }
    })
}

fn lbadm() -> Command {
    Command::new(env!("CARGO_BIN_EXE_lbadm"))
}

#[test]
fn lbadm_passes_argv_and_stdin_and_exits_with_the_reply_status() {
    let path = socket_path("main");
    let (server, rx) = ControlServer::start(&path).unwrap();
    let h = handler(rx);

    let out = lbadm()
        .args(["-a", "-t", "10.30.0.10:80", "--control"])
        .arg(&path)
        .args(["-r", "10.20.1.2:80", "-m", "-w", "3"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "[\"-a\", \"-t\", \"10.30.0.10:80\", \"-r\", \"10.20.1.2:80\", \"-m\", \"-w\", \"3\"] None\n"
    );

    let mut child = lbadm()
        .arg(format!("--control={}", path.display()))
        .arg("-R")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"-A -t 10.30.0.10:80 -s wrr\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "[\"-R\"] Some(\"-A -t 10.30.0.10:80 -s wrr\\n\")\n"
    );

    let out = lbadm()
        .arg("--control")
        .arg(&path)
        .args(["-D", "-t", "x"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4));
    assert!(out.stdout.is_empty(), "a failure's text goes to stderr");
    assert!(String::from_utf8_lossy(&out.stderr).contains("\"-D\""));

    drop(server);
    h.join().unwrap();
}

#[test]
fn lbadm_says_clearly_when_no_gateway_runs() {
    let path = socket_path("none");
    let out = lbadm()
        .arg("--control")
        .arg(&path)
        .arg("-L")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("gateway is not running"), "{err}");
    let out = lbadm().arg("--control").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}
