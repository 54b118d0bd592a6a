//! A tiny HTTP/1.1 server for Prometheus: `GET /metrics` returns the latest snapshot text.
//!
//! The packet loop formats its counters into a string now and then and [`publish`]es it
//! (`MetricsSnapshot::publish`); the server thread only copies the current string out, so a
//! scrape never touches the balancer or stalls the loop. One request per connection, answered
//! in the server's own thread; other paths get 404, other methods 405.
//!
//! [`publish`]: MetricsSnapshot::publish

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// The Prometheus text exposition format's content type.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
/// Most bytes of a request head the server reads.
const MAX_HEAD: usize = 8192;
const IO_TIMEOUT: Duration = Duration::from_secs(2);
/// How often the idle server thread checks whether it should stop.
const ACCEPT_TICK: Duration = Duration::from_millis(100);

/// The text the server serves, shared between the loop (writer) and the server (reader).
#[derive(Debug, Clone, Default)]
pub struct MetricsSnapshot(Arc<Mutex<String>>);

impl MetricsSnapshot {
    /// An empty snapshot.
    pub fn new() -> Self {
        Self::default()
    }

    /// Replaces the served text; the loop calls it periodically (e.g. once a second).
    pub fn publish(&self, text: String) {
        if let Ok(mut s) = self.0.lock() {
            *s = text;
        }
    }

    /// A copy of the current text.
    pub fn get(&self) -> String {
        self.0.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

/// The metrics server. Dropping it stops its thread.
#[derive(Debug)]
pub struct MetricsServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl MetricsServer {
    /// Listens on `addr` (`ADDR:PORT`; port 0 picks one) and serves `snapshot` from a thread.
    pub fn start(addr: impl ToSocketAddrs, snapshot: MetricsSnapshot) -> io::Result<Self> {
        let listener = TcpListener::bind(addr)?;
        let addr = listener.local_addr()?;
        // Non-blocking accept polled every ACCEPT_TICK: the thread stops on the flag even when
        // nobody can connect to wake it (e.g. the address was removed from the interface).
        listener.set_nonblocking(true)?;
        let stop = Arc::new(AtomicBool::new(false));
        let thread_stop = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("lb-tun-metrics".into())
            .spawn(move || {
                while !thread_stop.load(Ordering::SeqCst) {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            let served = stream
                                .set_nonblocking(false)
                                .and_then(|()| serve(stream, &snapshot));
                            if let Err(e) = served {
                                log::debug!("metrics connection: {e}");
                            }
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                            std::thread::sleep(ACCEPT_TICK)
                        }
                        Err(e) => {
                            log::warn!("metrics accept: {e}");
                            std::thread::sleep(ACCEPT_TICK)
                        }
                    }
                }
            })?;
        Ok(MetricsServer {
            addr,
            stop,
            thread: Some(thread),
        })
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Reads a request head and answers it.
fn serve(mut stream: TcpStream, snapshot: &MetricsSnapshot) -> io::Result<()> {
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut head = Vec::with_capacity(512);
    let mut chunk = [0u8; 512];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && !head.windows(2).any(|w| w == b"\n\n") {
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&chunk[..n]);
        if head.len() > MAX_HEAD {
            respond(
                &mut stream,
                "431 Request Header Fields Too Large",
                "",
                false,
            )?;
            // Drain a little of what the client still sends, so closing with unread data does
            // not reset the connection before the client has read the answer.
            stream.shutdown(std::net::Shutdown::Write)?;
            let _ = io::copy(&mut (&stream).take(1 << 16), &mut io::sink());
            return Ok(());
        }
    }
    let line = head.split(|&b| b == b'\n').next().unwrap_or(&[]);
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    match (method, path) {
        ("GET" | "HEAD", "/metrics") => {
            let body = snapshot.get();
            respond(&mut stream, "200 OK", &body, method == "HEAD")
        }
        ("GET" | "HEAD", _) => respond(&mut stream, "404 Not Found", "not found\n", false),
        _ => respond(&mut stream, "405 Method Not Allowed", "", false),
    }
}

fn respond(stream: &mut TcpStream, status: &str, body: &str, head_only: bool) -> io::Result<()> {
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {CONTENT_TYPE}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    if !head_only {
        out.push_str(body);
    }
    stream.write_all(out.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(addr: SocketAddr, req: &str) -> String {
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(req.as_bytes()).unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    }

    #[test]
    fn serves_the_latest_snapshot_with_the_prometheus_content_type() {
        let snap = MetricsSnapshot::new();
        let server = MetricsServer::start("127.0.0.1:0", snap.clone()).unwrap();
        let addr = server.local_addr();
        snap.publish("lbtun_rx_packets_total 1\n".into());
        let r = get(addr, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
        assert!(r.contains("Content-Type: text/plain; version=0.0.4"), "{r}");
        assert!(r.contains("Content-Length: 25\r\n"), "{r}");
        assert!(r.ends_with("\r\n\r\nlbtun_rx_packets_total 1\n"), "{r}");
        snap.publish("lbtun_rx_packets_total 2\n".into());
        assert!(get(addr, "GET /metrics?x=1 HTTP/1.0\r\n\r\n").ends_with("total 2\n"));
        let head = get(addr, "HEAD /metrics HTTP/1.1\r\n\r\n");
        assert!(head.ends_with("\r\n\r\n") && head.contains("Content-Length: 25"));
        assert!(get(addr, "GET / HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 404"));
        assert!(get(addr, "POST /metrics HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 405"));
        assert!(get(addr, "\r\n\r\n").starts_with("HTTP/1.1 405"));
        let big = format!("GET /{} HTTP/1.1\r\n", "a".repeat(10_000));
        assert!(get(addr, &big).starts_with("HTTP/1.1 431"));
        drop(server);
        assert!(
            TcpStream::connect(addr).is_err(),
            "stopped server no longer listens"
        );
    }
}
