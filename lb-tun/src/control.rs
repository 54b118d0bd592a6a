//! The control channel between `lbadm` and the gateway: a Unix socket served by its own thread.
//!
//! `lbadm` sends one [`Request`] per connection — its ipvsadm-style argv, plus the text of its
//! standard input for `-R` — and gets one [`Reply`] back: an exit status and the text to print.
//! The control thread does not touch the balancer: it hands each request to the packet loop as
//! a [`Pending`] through a `std::sync::mpsc` channel, and the loop, the balancer's one owner,
//! applies it between bursts and answers: lbadm ─► Unix socket ─► ipvsadm command ─► applied
//! between bursts by the balancer's one owner (see `docs/architecture.md`).
//!
//! Wire format (all integers big-endian): a request is the magic `LBT1`, a `u32` argument
//! count, each argument as `u32` length + UTF-8 bytes, then a `u8` flag (1 when standard input
//! follows) and, if set, `u32` length + UTF-8 bytes. A reply is an `i32` exit status and the
//! text as `u32` length + UTF-8 bytes. Oversized or malformed requests are answered with an
//! error reply (status 2) and never reach the loop.

use std::fs;
use std::io::{self, ErrorKind, Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::Duration;

/// Where the gateway listens and `lbadm` connects unless `--control PATH` says otherwise.
pub const DEFAULT_CONTROL_PATH: &str = "/run/lb-tun.sock";

const MAGIC: &[u8; 4] = b"LBT1";
/// Most arguments one request may carry.
pub const MAX_ARGS: usize = 1024;
/// Most bytes one argument, the standard input text or a reply may carry (16 MiB).
pub const MAX_TEXT: usize = 16 << 20;
/// How long the control thread waits for a client to send its request, and to write the reply.
const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the idle control thread checks whether it should stop.
const ACCEPT_TICK: Duration = Duration::from_millis(50);
/// How long the control thread waits for the packet loop to answer.
const LOOP_TIMEOUT: Duration = Duration::from_secs(30);

/// One `lbadm` invocation: its arguments (without the program name and `--control`) and, for
/// `-R`, its standard input.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Request {
    /// The ipvsadm-style arguments, e.g. `["-A", "-t", "10.30.0.10:80", "-s", "wrr"]`.
    pub args: Vec<String>,
    /// The standard input text (`-R` restores rules from it); `None` when not sent.
    pub stdin: Option<String>,
}

/// The gateway's answer: `lbadm` prints `text` and exits with `status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// Exit status: 0 success, as ipvsadm's otherwise.
    pub status: i32,
    /// Text to print (a listing, or an error message).
    pub text: String,
}

impl Reply {
    /// A successful reply with `text`.
    pub fn ok(text: impl Into<String>) -> Self {
        Reply {
            status: 0,
            text: text.into(),
        }
    }

    /// A failed reply with `status` and the message `text`.
    pub fn error(status: i32, text: impl Into<String>) -> Self {
        Reply {
            status,
            text: text.into(),
        }
    }
}

/// A request waiting for the packet loop; answer it with [`Pending::respond`].
#[derive(Debug)]
pub struct Pending {
    /// What `lbadm` asked.
    pub request: Request,
    reply: mpsc::Sender<Reply>,
}

impl Pending {
    /// Sends the answer back to the waiting `lbadm` (ignored if it gave up).
    pub fn respond(self, reply: Reply) {
        let _ = self.reply.send(reply);
    }
}

/// The control socket server. Dropping it stops its thread and removes the socket file.
#[derive(Debug)]
pub struct ControlServer {
    path: PathBuf,
    ino: (u64, u64),
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl ControlServer {
    /// Binds the socket at `path` with mode 0600 and starts the control thread; returns the
    /// server and the receiving end the packet loop drains between bursts (`try_recv`).
    ///
    /// A stale socket (nobody accepting) at `path` is replaced; a live one is an error
    /// (`AddrInUse`: another gateway runs), as is any other kind of file there.
    pub fn start(path: &Path) -> io::Result<(ControlServer, mpsc::Receiver<Pending>)> {
        match fs::symlink_metadata(path) {
            Ok(m) if m.file_type().is_socket() => {
                if UnixStream::connect(path).is_ok() {
                    return Err(io::Error::new(
                        ErrorKind::AddrInUse,
                        format!("a gateway already answers on {}", path.display()),
                    ));
                }
            }
            Ok(_) => {
                return Err(io::Error::new(
                    ErrorKind::AlreadyExists,
                    format!("{} exists and is not a socket", path.display()),
                ))
            }
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        // Bind under a temporary name, restrict it, then rename it into place: the socket is
        // never reachable with looser permissions, and a stale one is replaced atomically.
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(format!(".{}.tmp", std::process::id()));
        let tmp = PathBuf::from(tmp);
        let _ = fs::remove_file(&tmp);
        let listener = UnixListener::bind(&tmp)?;
        listener.set_nonblocking(true)?;
        let placed = fs::set_permissions(&tmp, fs::Permissions::from_mode(0o600))
            .and_then(|()| fs::rename(&tmp, path));
        if let Err(e) = placed {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
        let meta = fs::symlink_metadata(path)?;
        let (tx, rx) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let thread_stop = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("lb-tun-control".into())
            .spawn(move || accept_loop(listener, tx, thread_stop))?;
        Ok((
            ControlServer {
                path: path.to_path_buf(),
                ino: (meta.dev(), meta.ino()),
                stop,
                thread: Some(thread),
            },
            rx,
        ))
    }

    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        // Remove the socket only if it is still ours (not replaced by a newer gateway).
        if let Ok(m) = fs::symlink_metadata(&self.path) {
            if (m.dev(), m.ino()) == self.ino {
                let _ = fs::remove_file(&self.path);
            }
        }
    }
}

/// Accepts and serves connections one at a time until `stop` is set. The listener is
/// non-blocking and polled every [`ACCEPT_TICK`], so stopping never depends on a wake-up
/// connection getting through.
fn accept_loop(listener: UnixListener, tx: mpsc::Sender<Pending>, stop: Arc<AtomicBool>) {
    while !stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, _)) => {
                let served = stream
                    .set_nonblocking(false)
                    .and_then(|()| serve_one(stream, &tx));
                if let Err(e) = served {
                    log::debug!("control connection: {e}");
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => std::thread::sleep(ACCEPT_TICK),
            Err(e) => {
                log::warn!("control socket accept: {e}");
                std::thread::sleep(ACCEPT_TICK);
            }
        }
    }
}

fn serve_one(mut stream: UnixStream, tx: &mpsc::Sender<Pending>) -> io::Result<()> {
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let reply = match read_request(&mut stream) {
        Ok(request) => {
            let (reply_tx, reply_rx) = mpsc::channel();
            let pending = Pending {
                request,
                reply: reply_tx,
            };
            if tx.send(pending).is_err() {
                Reply::error(1, "lb-tun: the packet loop has stopped\n")
            } else {
                reply_rx
                    .recv_timeout(LOOP_TIMEOUT)
                    .unwrap_or_else(|_| Reply::error(1, "lb-tun: the packet loop did not answer\n"))
            }
        }
        Err(e) if e.kind() == ErrorKind::InvalidData => {
            Reply::error(2, format!("lb-tun: malformed control request: {e}\n"))
        }
        Err(e) => return Err(e),
    };
    write_reply(&mut stream, &reply)
}

fn invalid(msg: &str) -> io::Error {
    io::Error::new(ErrorKind::InvalidData, msg.to_string())
}

fn read_u32(r: &mut impl Read) -> io::Result<u32> {
    let mut b = [0u8; 4];
    r.read_exact(&mut b)?;
    Ok(u32::from_be_bytes(b))
}

fn read_text(r: &mut impl Read) -> io::Result<String> {
    let len = read_u32(r)? as usize;
    if len > MAX_TEXT {
        return Err(invalid("string too long"));
    }
    let mut buf = Vec::new();
    r.take(len as u64).read_to_end(&mut buf)?;
    if buf.len() != len {
        return Err(io::Error::new(ErrorKind::UnexpectedEof, "truncated string"));
    }
    String::from_utf8(buf).map_err(|_| invalid("string is not UTF-8"))
}

fn write_text(w: &mut impl Write, s: &str) -> io::Result<()> {
    let len = u32::try_from(s.len())
        .ok()
        .filter(|&l| l as usize <= MAX_TEXT)
        .ok_or_else(|| invalid("string too long"))?;
    w.write_all(&len.to_be_bytes())?;
    w.write_all(s.as_bytes())
}

/// Reads one request in the wire format above (the server side).
pub fn read_request(r: &mut impl Read) -> io::Result<Request> {
    let mut magic = [0u8; 4];
    r.read_exact(&mut magic)?;
    if &magic != MAGIC {
        return Err(invalid("bad magic (not an lbadm request)"));
    }
    let argc = read_u32(r)? as usize;
    if argc > MAX_ARGS {
        return Err(invalid("too many arguments"));
    }
    let mut args = Vec::with_capacity(argc);
    for _ in 0..argc {
        args.push(read_text(r)?);
    }
    let mut flag = [0u8; 1];
    r.read_exact(&mut flag)?;
    let stdin = match flag[0] {
        0 => None,
        1 => Some(read_text(r)?),
        _ => return Err(invalid("bad stdin flag")),
    };
    Ok(Request { args, stdin })
}

/// Writes one request in the wire format above (the client side).
pub fn write_request(w: &mut impl Write, req: &Request) -> io::Result<()> {
    let argc = u32::try_from(req.args.len())
        .ok()
        .filter(|&n| n as usize <= MAX_ARGS)
        .ok_or_else(|| invalid("too many arguments"))?;
    let mut buf = Vec::new();
    buf.extend_from_slice(MAGIC);
    buf.extend_from_slice(&argc.to_be_bytes());
    for a in &req.args {
        write_text(&mut buf, a)?;
    }
    match &req.stdin {
        None => buf.push(0),
        Some(s) => {
            buf.push(1);
            write_text(&mut buf, s)?;
        }
    }
    w.write_all(&buf)
}

fn write_reply(w: &mut impl Write, reply: &Reply) -> io::Result<()> {
    let mut buf = Vec::new();
    buf.extend_from_slice(&reply.status.to_be_bytes());
    write_text(&mut buf, &reply.text)?;
    w.write_all(&buf)
}

fn read_reply(r: &mut impl Read) -> io::Result<Reply> {
    let mut b = [0u8; 4];
    r.read_exact(&mut b)?;
    let status = i32::from_be_bytes(b);
    let text = read_text(r)?;
    Ok(Reply { status, text })
}

/// Sends `req` to the gateway listening at `path` and waits for its reply (the `lbadm` side).
///
/// A missing socket is `NotFound` and a socket nobody accepts on is `ConnectionRefused`:
/// both mean the gateway is not running.
pub fn send_request(path: &Path, req: &Request) -> io::Result<Reply> {
    let mut stream = UnixStream::connect(path)?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    stream.set_read_timeout(Some(LOOP_TIMEOUT + IO_TIMEOUT))?;
    write_request(&mut stream, req)?;
    read_reply(&mut stream)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    fn temp_socket() -> PathBuf {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        std::env::temp_dir().join(format!("lbt-ctl-{}-{n}.sock", std::process::id()))
    }

    /// Answers every request with its arguments joined and its stdin, like a loop would.
    fn echo_loop(rx: mpsc::Receiver<Pending>) -> JoinHandle<usize> {
        std::thread::spawn(move || {
            let mut served = 0;
            while let Ok(p) = rx.recv() {
                served += 1;
                let text = format!(
                    "args={} stdin={:?}\n",
                    p.request.args.join(" "),
                    p.request.stdin
                );
                let status = if p.request.args.first().map(String::as_str) == Some("--fail") {
                    3
                } else {
                    0
                };
                p.respond(Reply::error(status, text));
            }
            served
        })
    }

    #[test]
    fn a_request_round_trips_through_the_loop_channel() {
        let path = temp_socket();
        let (server, rx) = ControlServer::start(&path).unwrap();
        let looper = echo_loop(rx);
        let req = Request {
            args: vec!["-A".into(), "-t".into(), "10.30.0.10:80".into()],
            stdin: None,
        };
        let reply = send_request(&path, &req).unwrap();
        assert_eq!(reply, Reply::ok("args=-A -t 10.30.0.10:80 stdin=None\n"));
        let restore = Request {
            args: vec!["-R".into()],
            stdin: Some("-A -t 10.30.0.10:80 -s rr\n".into()),
        };
        let reply = send_request(&path, &restore).unwrap();
        assert_eq!(
            reply.text,
            "args=-R stdin=Some(\"-A -t 10.30.0.10:80 -s rr\\n\")\n"
        );
        let fail = Request {
            args: vec!["--fail".into()],
            stdin: None,
        };
        assert_eq!(send_request(&path, &fail).unwrap().status, 3);
        drop(server);
        assert_eq!(looper.join().unwrap(), 3);
        assert!(
            !path.exists(),
            "the socket is removed when the server stops"
        );
    }

    #[test]
    fn the_socket_is_private_and_a_stale_one_is_replaced() {
        let path = temp_socket();
        // A stale socket: bound, then its listener dropped without unlinking.
        drop(UnixListener::bind(&path).unwrap());
        assert!(path.exists());
        let (server, rx) = ControlServer::start(&path).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        // A live one is not stolen.
        let err = ControlServer::start(&path).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::AddrInUse);
        let looper = echo_loop(rx);
        assert_eq!(send_request(&path, &Request::default()).unwrap().status, 0);
        drop(server);
        looper.join().unwrap();
    }

    #[test]
    fn a_regular_file_at_the_path_is_left_alone() {
        let path = temp_socket();
        fs::write(&path, b"not a socket").unwrap();
        let err = ControlServer::start(&path).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::AlreadyExists);
        assert_eq!(fs::read(&path).unwrap(), b"not a socket");
        fs::remove_file(&path).unwrap();
    }

    #[test]
    fn garbage_gets_an_error_reply_and_the_server_keeps_serving() {
        let path = temp_socket();
        let (server, rx) = ControlServer::start(&path).unwrap();
        let looper = echo_loop(rx);
        for garbage in [
            &b"GET / HTTP/1.1\r\n\r\n"[..],
            &[b'L', b'B', b'T', b'1', 0xff, 0xff, 0xff, 0xff][..],
            &[
                b'L', b'B', b'T', b'1', 0, 0, 0, 1, 0, 0, 0, 2, 0xc3, 0x28, 0,
            ][..],
            &[b'L', b'B', b'T', b'1', 0, 0, 0, 0, 7][..],
        ] {
            let mut s = UnixStream::connect(&path).unwrap();
            s.write_all(garbage).unwrap();
            let reply = read_reply(&mut s).unwrap();
            assert_eq!(reply.status, 2, "{garbage:?}: {}", reply.text);
        }
        // A client that hangs up half-way gets nothing and harms nothing.
        let mut s = UnixStream::connect(&path).unwrap();
        s.write_all(b"LBT1\0\0").unwrap();
        drop(s);
        let reply = send_request(&path, &Request::default()).unwrap();
        assert_eq!(reply, Reply::ok("args= stdin=None\n"));
        drop(server);
        assert_eq!(
            looper.join().unwrap(),
            1,
            "only the valid request reached the loop"
        );
    }

    #[test]
    fn no_gateway_means_not_found_or_refused() {
        let path = temp_socket();
        let err = send_request(&path, &Request::default()).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotFound);
        drop(UnixListener::bind(&path).unwrap());
        let err = send_request(&path, &Request::default()).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ConnectionRefused);
        fs::remove_file(&path).unwrap();
    }

    #[test]
    fn the_wire_format_round_trips() {
        let req = Request {
            args: vec!["-a".into(), "".into(), "ünï".into()],
            stdin: Some(String::new()),
        };
        let mut buf = Vec::new();
        write_request(&mut buf, &req).unwrap();
        assert_eq!(read_request(&mut &buf[..]).unwrap(), req);
        // Every strict prefix is an error, never a panic or a different request.
        for cut in 0..buf.len() {
            assert!(read_request(&mut &buf[..cut]).is_err(), "prefix {cut}");
        }
    }
}
