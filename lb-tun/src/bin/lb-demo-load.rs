//! `lb-demo-load`: the project's own load generator, used when `hey` is missing.
//!
//! Sends N `GET` requests over C threads, a new TCP connection per request (like
//! `hey -disable-keepalive`), and prints one CSV row per request with hey's `-o csv` columns
//! (`response-time,DNS+dialup,DNS,Request-write,Response-delay,Response-read,status-code,offset`,
//! times in seconds) plus `server`: the first line of the body, i.e. which real server
//! answered. A failed request (refused, reset, timed out) has status 0 and server `-`.
#![deny(unsafe_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;

/// Send HTTP GET requests, one connection each, and print per-request timings as CSV.
#[derive(Parser, Debug)]
struct Args {
    /// Number of requests.
    #[arg(short = 'n', default_value_t = 200)]
    requests: usize,
    /// Concurrent workers.
    #[arg(short = 'c', default_value_t = 50)]
    concurrency: usize,
    /// Per-request timeout in seconds (connect, and each read).
    #[arg(long, default_value_t = 10.0)]
    timeout: f64,
    /// URL: http://HOST[:PORT]/PATH (HOST may be [v6]).
    url: String,
}

/// One request's outcome, in hey's CSV terms.
struct Row {
    total: f64,
    dial: f64,
    write: f64,
    delay: f64,
    read: f64,
    status: u16,
    offset: f64,
    server: String,
}

/// Splits `http://host[:port]/path` into the socket address and the host header and path.
fn parse_url(url: &str) -> Result<(SocketAddr, String, String), String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("only http:// URLs are supported: {url}"))?;
    let (hostport, path) = match rest.find('/') {
        Some(i) => (&rest[..i], rest[i..].to_string()),
        None => (rest, "/".to_string()),
    };
    let with_port = if hostport.ends_with(']') || !hostport.contains(':') {
        format!("{hostport}:80")
    } else {
        hostport.to_string()
    };
    let addr = with_port
        .to_socket_addrs()
        .map_err(|e| format!("bad address {hostport}: {e}"))?
        .next()
        .ok_or_else(|| format!("no address for {hostport}"))?;
    Ok((addr, hostport.to_string(), path))
}

fn one_request(addr: SocketAddr, req: &[u8], timeout: Duration, start: Instant) -> Row {
    let t0 = Instant::now();
    let mut row = Row {
        total: 0.0,
        dial: 0.0,
        write: 0.0,
        delay: 0.0,
        read: 0.0,
        status: 0,
        offset: t0.duration_since(start).as_secs_f64(),
        server: "-".to_string(),
    };
    let result = (|| -> std::io::Result<()> {
        let mut s = TcpStream::connect_timeout(&addr, timeout)?;
        row.dial = t0.elapsed().as_secs_f64();
        s.set_read_timeout(Some(timeout))?;
        s.set_write_timeout(Some(timeout))?;
        let t1 = Instant::now();
        s.write_all(req)?;
        row.write = t1.elapsed().as_secs_f64();
        let t2 = Instant::now();
        let mut buf = Vec::with_capacity(512);
        let mut chunk = [0u8; 512];
        let n = s.read(&mut chunk)?;
        row.delay = t2.elapsed().as_secs_f64();
        buf.extend_from_slice(&chunk[..n]);
        let t3 = Instant::now();
        loop {
            let n = s.read(&mut chunk)?;
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        row.read = t3.elapsed().as_secs_f64();
        let text = String::from_utf8_lossy(&buf);
        let status = text
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse::<u16>().ok())
            .unwrap_or(0);
        if let Some(i) = text.find("\r\n\r\n") {
            if let Some(first) = text[i + 4..].lines().next() {
                row.server = first.trim().replace(',', ";");
            }
        }
        row.status = status;
        Ok(())
    })();
    if result.is_err() {
        row.status = 0;
        row.server = "-".to_string();
    }
    row.total = t0.elapsed().as_secs_f64();
    row
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let (addr, host, path) = match parse_url(&args.url) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("lb-demo-load: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let req: Arc<[u8]> = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: lb-demo-load\r\nConnection: close\r\n\r\n"
    )
    .into_bytes()
    .into();
    let timeout = Duration::from_secs_f64(args.timeout.max(0.001));
    let next = Arc::new(AtomicUsize::new(0));
    let rows = Arc::new(Mutex::new(Vec::with_capacity(args.requests)));
    let start = Instant::now();
    let workers: Vec<_> = (0..args.concurrency.max(1))
        .map(|_| {
            let (next, rows, req) = (Arc::clone(&next), Arc::clone(&rows), Arc::clone(&req));
            let n = args.requests;
            std::thread::spawn(move || {
                let mut mine = Vec::new();
                while next.fetch_add(1, Ordering::Relaxed) < n {
                    mine.push(one_request(addr, &req, timeout, start));
                }
                if let Ok(mut all) = rows.lock() {
                    all.extend(mine);
                }
            })
        })
        .collect();
    for w in workers {
        let _ = w.join();
    }
    let mut rows = match Arc::try_unwrap(rows).map(|m| m.into_inner()) {
        Ok(Ok(r)) => r,
        _ => {
            eprintln!("lb-demo-load: a worker failed");
            return std::process::ExitCode::FAILURE;
        }
    };
    rows.sort_by(|a, b| a.offset.total_cmp(&b.offset));
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let _ = writeln!(
        out,
        "response-time,DNS+dialup,DNS,Request-write,Response-delay,Response-read,status-code,offset,server"
    );
    for r in &rows {
        let _ = writeln!(
            out,
            "{:.4},{:.4},0.0000,{:.4},{:.4},{:.4},{},{:.4},{}",
            r.total, r.dial, r.write, r.delay, r.read, r.status, r.offset, r.server
        );
    }
    std::process::ExitCode::SUCCESS
}
