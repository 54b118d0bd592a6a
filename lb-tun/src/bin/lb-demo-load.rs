//! `lb-demo-load`: the project's own load generator, used when `hey` is missing.
//!
//! Sends N `GET` requests over C threads, a new TCP connection per request (like
//! `hey -disable-keepalive`), and prints one CSV row per request with hey's `-o csv` columns
//! (`response-time,DNS+dialup,DNS,Request-write,Response-delay,Response-read,status-code,offset`,
//! times in seconds) plus `server`: the first line of the body, i.e. which real server
//! answered. A failed request (refused, reset, timed out) has status 0 and server `-`.
//!
//! `--local-port P` makes request `i` connect from local port `P + i` (reproducible client
//! ports, for comparing scheduling decisions). `--hold` instead keeps ONE keep-alive
//! connection and sends `--count` requests `--interval` seconds apart (the last one with
//! `Connection: close`), printing a line per request: `i LOCAL_PORT 200 SERVER MS` or
//! `i LOCAL_PORT ERR KIND MS` (KIND: `reset`, `timeout`, `closed`, ...); it stops at the first
//! error and exits 1 then.
#![forbid(unsafe_code)]

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
    /// Connect request i from local port PORT + i.
    #[arg(long, value_name = "PORT")]
    local_port: Option<u16>,
    /// Hold one keep-alive connection and send --count requests on it.
    #[arg(long)]
    hold: bool,
    /// Seconds between requests with --hold.
    #[arg(long, default_value_t = 0.2)]
    interval: f64,
    /// Requests with --hold.
    #[arg(long, default_value_t = 10)]
    count: usize,
    /// Instead of HTTP: send one ICMP echo request to the URL's host (raw socket, needs
    /// root) and wait --timeout seconds for the reply (`ping` may not be installed).
    #[arg(long)]
    ping: bool,
    /// URL: `http://HOST[:PORT]/PATH` (HOST may be `[v6]`).
    url: String,
}

/// The Internet checksum of `data`.
fn checksum(data: &[u8]) -> u16 {
    let mut sum = 0u32;
    for c in data.chunks(2) {
        let w = u16::from_be_bytes([c[0], c.get(1).copied().unwrap_or(0)]);
        sum += u32::from(w);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// `--ping`: one echo request to `ip`, true when its reply arrives within `timeout`.
fn ping(ip: std::net::IpAddr, timeout: Duration) -> std::io::Result<bool> {
    use socket2::{Domain, Protocol, Socket, Type};
    let v6 = ip.is_ipv6();
    let (domain, proto, req_type, reply_type) = if v6 {
        (Domain::IPV6, Protocol::ICMPV6, 128u8, 129u8)
    } else {
        (Domain::IPV4, Protocol::ICMPV4, 8u8, 0u8)
    };
    let s = Socket::new(domain, Type::RAW, Some(proto))?;
    let ident = (std::process::id() & 0xffff) as u16;
    let mut pkt = vec![req_type, 0, 0, 0];
    pkt.extend_from_slice(&ident.to_be_bytes());
    pkt.extend_from_slice(&1u16.to_be_bytes());
    pkt.extend_from_slice(b"lb-demo-load ping");
    if !v6 {
        // The kernel fills in the ICMPv6 checksum; ICMPv4's is ours.
        let c = checksum(&pkt);
        pkt[2..4].copy_from_slice(&c.to_be_bytes());
    }
    // Connected: the kernel delivers only packets from `ip` to this raw socket.
    s.connect(&SocketAddr::new(ip, 0).into())?;
    s.send(&pkt)?;
    let deadline = Instant::now() + timeout;
    let mut data = [0u8; 2048];
    let mut sock = &s;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(false);
        }
        s.set_read_timeout(Some(left))?;
        let n = match sock.read(&mut data) {
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Ok(false)
            }
            Err(e) => return Err(e),
        };
        let data = &data[..n];
        let icmp = if v6 {
            data
        } else {
            let ihl = usize::from(data.first().copied().unwrap_or(0) & 0x0f) * 4;
            data.get(ihl..).unwrap_or(&[])
        };
        if icmp.len() >= 8 && icmp[0] == reply_type && icmp[4..6] == ident.to_be_bytes() {
            return Ok(true);
        }
    }
}

/// Connects to `addr`, from `local_port` if given (SO_REUSEADDR set).
fn connect(
    addr: SocketAddr,
    local_port: Option<u16>,
    timeout: Duration,
) -> std::io::Result<TcpStream> {
    let Some(port) = local_port else {
        return TcpStream::connect_timeout(&addr, timeout);
    };
    let domain = socket2::Domain::for_address(addr);
    let s = socket2::Socket::new(domain, socket2::Type::STREAM, Some(socket2::Protocol::TCP))?;
    s.set_reuse_address(true)?;
    let local: SocketAddr = match addr {
        SocketAddr::V4(_) => (std::net::Ipv4Addr::UNSPECIFIED, port).into(),
        SocketAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, port).into(),
    };
    s.bind(&local.into())?;
    s.connect_timeout(&addr.into(), timeout)?;
    Ok(s.into())
}

/// Reads one HTTP response (head + Content-Length body) from `s`; returns status and the
/// body's first line.
fn read_response(s: &mut TcpStream) -> std::io::Result<(u16, String)> {
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 512];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = s.read(&mut chunk)?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "closed",
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|x| x.parse().ok())
        .unwrap_or(0);
    let len: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    while buf.len() < head_end + len {
        let n = s.read(&mut chunk)?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "closed",
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = String::from_utf8_lossy(&buf[head_end..head_end + len]);
    Ok((status, body.lines().next().unwrap_or("").trim().to_string()))
}

fn error_kind(e: &std::io::Error) -> &'static str {
    use std::io::ErrorKind as K;
    match e.kind() {
        K::ConnectionReset => "reset",
        K::ConnectionRefused => "refused",
        K::TimedOut | K::WouldBlock => "timeout",
        K::UnexpectedEof => "closed",
        K::BrokenPipe => "broken_pipe",
        _ => "other",
    }
}

/// `--hold`: one connection, `count` requests. Returns whether all succeeded.
fn hold(args: &Args, addr: SocketAddr, host: &str, path: &str, timeout: Duration) -> bool {
    let mut out = std::io::stdout();
    let t0 = Instant::now();
    let mut s = match connect(addr, args.local_port, timeout) {
        Ok(s) => s,
        Err(e) => {
            let _ = writeln!(
                out,
                "0 0 ERR {} {}",
                error_kind(&e),
                t0.elapsed().as_millis()
            );
            return false;
        }
    };
    let port = s.local_addr().map(|a| a.port()).unwrap_or(0);
    let _ = s.set_read_timeout(Some(timeout));
    let _ = s.set_write_timeout(Some(timeout));
    for i in 0..args.count {
        if i > 0 {
            std::thread::sleep(Duration::from_secs_f64(args.interval.max(0.0)));
        }
        let last = i + 1 == args.count;
        let conn = if last { "close" } else { "keep-alive" };
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: lb-demo-load\r\nConnection: {conn}\r\n\r\n"
        );
        let t = Instant::now();
        let r = s
            .write_all(req.as_bytes())
            .and_then(|()| read_response(&mut s));
        let ms = t.elapsed().as_millis();
        match r {
            Ok((status, server)) => {
                let _ = writeln!(out, "{i} {port} {status} {server} {ms}");
                let _ = out.flush();
                if status != 200 {
                    return false;
                }
            }
            Err(e) => {
                let _ = writeln!(out, "{i} {port} ERR {} {ms}", error_kind(&e));
                let _ = out.flush();
                return false;
            }
        }
    }
    if args.count > 0 {
        // The server closes after the `Connection: close` request: wait for its FIN, so the
        // client never holds TIME_WAIT for this port.
        let mut rest = [0u8; 64];
        let _ = s.read(&mut rest);
    }
    true
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

fn one_request(
    addr: SocketAddr,
    local_port: Option<u16>,
    req: &[u8],
    timeout: Duration,
    start: Instant,
) -> Row {
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
        let mut s = connect(addr, local_port, timeout)?;
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
    let timeout = Duration::from_secs_f64(args.timeout.max(0.001));
    if args.ping {
        return match ping(addr.ip(), timeout) {
            Ok(true) => {
                println!("reply from {}", addr.ip());
                std::process::ExitCode::SUCCESS
            }
            Ok(false) => {
                println!("no reply from {}", addr.ip());
                std::process::ExitCode::FAILURE
            }
            Err(e) => {
                eprintln!("lb-demo-load: ping {}: {e}", addr.ip());
                std::process::ExitCode::from(2)
            }
        };
    }
    if args.hold {
        return if hold(&args, addr, &host, &path, timeout) {
            std::process::ExitCode::SUCCESS
        } else {
            std::process::ExitCode::FAILURE
        };
    }
    let req: Arc<[u8]> = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: lb-demo-load\r\nConnection: close\r\n\r\n"
    )
    .into_bytes()
    .into();
    let next = Arc::new(AtomicUsize::new(0));
    let rows = Arc::new(Mutex::new(Vec::with_capacity(args.requests)));
    let start = Instant::now();
    let workers: Vec<_> = (0..args.concurrency.max(1))
        .map(|_| {
            let (next, rows, req) = (Arc::clone(&next), Arc::clone(&rows), Arc::clone(&req));
            let n = args.requests;
            let base = args.local_port;
            std::thread::spawn(move || {
                let mut mine = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        break;
                    }
                    let port = base.map(|p| p.wrapping_add(i as u16));
                    mine.push(one_request(addr, port, &req, timeout, start));
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
