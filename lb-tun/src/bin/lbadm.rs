//! `lbadm`: administer a running lb-tun gateway with ipvsadm's syntax.
//!
//! Every argument except `--control PATH` is passed through unchanged to the gateway, which
//! parses it with lb-core's ipvsadm grammar and applies it between bursts; `lbadm` prints the
//! reply and exits with its status. With `-R` (restore) the standard input is read and sent
//! along. `--control PATH` (or `--control=PATH`) selects the socket, default `/run/lb-tun.sock`.
#![forbid(unsafe_code)]

use std::io::{ErrorKind, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use lb_tun::control::{send_request, Request, DEFAULT_CONTROL_PATH};

/// Splits `--control PATH` off the arguments; everything else is for the gateway.
fn split_args(argv: Vec<String>) -> Result<(PathBuf, Vec<String>), String> {
    let mut path = PathBuf::from(DEFAULT_CONTROL_PATH);
    let mut rest = Vec::with_capacity(argv.len());
    let mut it = argv.into_iter();
    while let Some(a) = it.next() {
        if a == "--control" {
            path = it.next().ok_or("--control needs a socket path")?.into();
        } else if let Some(p) = a.strip_prefix("--control=") {
            path = p.into();
        } else {
            rest.push(a);
        }
    }
    Ok((path, rest))
}

/// True when the arguments ask for a restore (`-R` / `--restore`), which reads standard input.
fn wants_stdin(args: &[String]) -> bool {
    args.iter().any(|a| a == "-R" || a == "--restore")
}

fn main() -> ExitCode {
    let (path, args) = match split_args(std::env::args().skip(1).collect()) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("lbadm: {e}");
            return ExitCode::from(2);
        }
    };
    let stdin = if wants_stdin(&args) {
        let mut s = String::new();
        if let Err(e) = std::io::stdin().read_to_string(&mut s) {
            eprintln!("lbadm: cannot read standard input: {e}");
            return ExitCode::from(2);
        }
        Some(s)
    } else {
        None
    };
    let reply = match send_request(&path, &Request { args, stdin }) {
        Ok(r) => r,
        Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::ConnectionRefused) => {
            eprintln!(
                "lbadm: the gateway is not running (no one answers on {}: {e}); start lb-tun, or pass --control PATH",
                path.display()
            );
            return ExitCode::from(2);
        }
        Err(e) => {
            eprintln!("lbadm: talking to the gateway on {}: {e}", path.display());
            return ExitCode::from(2);
        }
    };
    let written = if reply.status == 0 {
        std::io::stdout().write_all(reply.text.as_bytes())
    } else {
        std::io::stderr().write_all(reply.text.as_bytes())
    };
    if written.is_err() {
        return ExitCode::from(2);
    }
    ExitCode::from(u8::try_from(reply.status.clamp(0, 255)).unwrap_or(255))
}
