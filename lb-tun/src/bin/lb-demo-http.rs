//! `lb-demo-http`: a small HTTP/1.1 server for the demo and the tests, used when nginx is missing.
//!
//! Every request gets `200` with the body `NAME\n` (so a client can tell which real server
//! answered); each request is logged as `REMOTE_ADDR REMOTE_PORT STATUS` (nginx's
//! `$remote_addr $remote_port $status`), so a test can check the balancer kept the client's
//! real address. Keep-alive is honoured (idle connections close after 65 s, like the nginx
//! config in `scripts/netns-lib.sh`). One thread per connection: std only.
#![forbid(unsafe_code)]

use std::fs::OpenOptions;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::Parser;

/// Answer every HTTP request with 200 and a fixed body.
#[derive(Parser, Debug)]
struct Args {
    /// Address to listen on, e.g. `10.20.1.2:80` or `[fd00:20::2]:80`; repeat for several.
    #[arg(long, required = true)]
    listen: Vec<String>,
    /// The body's text (a newline is appended), e.g. the server's name.
    #[arg(long)]
    body: String,
    /// Access log file (appended); none when absent.
    #[arg(long)]
    access_log: Option<String>,
}

type Log = Arc<Mutex<Option<std::fs::File>>>;

/// Serves one connection until the client closes it, asks to close, or idles out.
fn serve(stream: TcpStream, body: &str, log: &Log) -> std::io::Result<()> {
    let peer = stream.peer_addr()?;
    stream.set_read_timeout(Some(Duration::from_secs(65)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut out = stream;
    let mut line = String::new();
    loop {
        // Request line.
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let http10 = line.trim_end().ends_with("HTTP/1.0");
        let mut close = http10;
        // Headers up to the empty line.
        loop {
            line.clear();
            if reader.read_line(&mut line)? == 0 {
                return Ok(());
            }
            let h = line.trim_end().to_ascii_lowercase();
            if h.is_empty() {
                break;
            }
            if let Some(v) = h.strip_prefix("connection:") {
                match v.trim() {
                    "close" => close = true,
                    "keep-alive" => close = false,
                    _ => {}
                }
            }
        }
        let conn = if close { "close" } else { "keep-alive" };
        let resp = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: {conn}\r\n\r\n{body}\n",
            body.len() + 1
        );
        out.write_all(resp.as_bytes())?;
        if let Ok(mut guard) = log.lock() {
            if let Some(f) = guard.as_mut() {
                let _ = writeln!(f, "{} {} 200", peer.ip(), peer.port());
            }
        }
        if close {
            return Ok(());
        }
    }
}

/// Accepts connections forever, one thread each.
fn accept_loop(listener: TcpListener, body: Arc<str>, log: Log) {
    for conn in listener.incoming() {
        let stream = match conn {
            Ok(s) => s,
            Err(e) => {
                eprintln!("lb-demo-http: accept: {e}");
                continue;
            }
        };
        let (body, log) = (Arc::clone(&body), Arc::clone(&log));
        std::thread::spawn(move || {
            let _ = serve(stream, &body, &log);
        });
    }
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let mut listeners = Vec::new();
    for addr in &args.listen {
        match TcpListener::bind(addr) {
            Ok(l) => listeners.push(l),
            Err(e) => {
                eprintln!("lb-demo-http: cannot listen on {addr}: {e}");
                return std::process::ExitCode::FAILURE;
            }
        }
    }
    let file = match &args.access_log {
        Some(p) => match OpenOptions::new().create(true).append(true).open(p) {
            Ok(f) => Some(f),
            Err(e) => {
                eprintln!("lb-demo-http: cannot open {p}: {e}");
                return std::process::ExitCode::FAILURE;
            }
        },
        None => None,
    };
    let log: Log = Arc::new(Mutex::new(file));
    let body: Arc<str> = args.body.into();
    eprintln!("lb-demo-http: listening on {}", args.listen.join(" "));
    let acceptors: Vec<_> = listeners
        .into_iter()
        .map(|listener| {
            let (body, log) = (Arc::clone(&body), Arc::clone(&log));
            std::thread::spawn(move || accept_loop(listener, body, log))
        })
        .collect();
    for a in acceptors {
        let _ = a.join();
    }
    std::process::ExitCode::SUCCESS
}
