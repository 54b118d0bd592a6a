//! The typed result: virtual servers, their real servers, the real servers' checkers and the
//! HTTP checkers' URLs, each tagged with the file and line it was written at. Values are
//! resolved: keepalived's inheritance (virtual_server → real_server → checker) and defaults are
//! applied, so every field says what keepalived would do.

use core::net::{IpAddr, SocketAddr};

use crate::config::{ForwardMethod, ServerConfig, ServiceConfig};
use crate::time::Duration;

/// The longest URL path, `virtualhost` or other text value kept, in bytes.
pub const TEXT_CAP: usize = 128;

/// A text value of the configuration (a URL path, a host name), at most [`TEXT_CAP`] bytes.
pub type Text = heapless::String<TEXT_CAP>;

/// A file of the configuration, numbered by the caller: the main file has the number given to
/// [`Config::parse`](super::Config::parse), included files the numbers their
/// [`Files`](super::Files) gave them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct FileId(pub u16);

/// Where an item was written: its opening keyword's file and line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Location {
    /// The file.
    pub file: FileId,
    /// The line, from 1.
    pub line: u32,
}

/// An index range into one of the parser's item tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Span {
    pub(crate) start: u32,
    pub(crate) end: u32,
}

impl Span {
    pub(crate) fn range(self) -> core::ops::Range<usize> {
        self.start as usize..self.end as usize
    }
}

/// The timers and counters of a checker (keepalived's `delay_loop`, `connect_timeout`,
/// `retry`, `delay_before_retry`, `warmup`), set on the checker, its real server or its virtual
/// server, or keepalived's defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Timing {
    /// `delay_loop`: time between checks while the result does not change (default 60 s).
    pub delay_loop: Duration,
    /// `connect_timeout`: how long a check may take (default 5 s).
    pub connect_timeout: Duration,
    /// `retry` (older name `nb_get_retry`): failures retried before the real server goes down;
    /// down after `retry + 1` consecutive failures (default 1).
    pub retry: u32,
    /// `delay_before_retry`: time before a retry (default 1 s; 3 s for HTTP_GET).
    pub delay_before_retry: Duration,
    /// `warmup`: the first check starts at a random time up to this after start (default
    /// `delay_loop`; 0: at once).
    pub warmup: Duration,
}

/// Timers as written on one level; `None` inherits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Written {
    pub(crate) delay_loop: Option<Duration>,
    pub(crate) connect_timeout: Option<Duration>,
    pub(crate) retry: Option<u32>,
    pub(crate) delay_before_retry: Option<Duration>,
    pub(crate) warmup: Option<Duration>,
    pub(crate) alpha: Option<bool>,
    pub(crate) inhibit_on_failure: Option<bool>,
    pub(crate) weight: Option<u32>,
    /// `lb_kind`/`lvs_method`, on the virtual server (for its real servers) or a real server.
    pub(crate) method: Option<ForwardMethod>,
}

impl Written {
    /// `self`'s values, the unset ones taken from `outer`.
    pub(crate) fn or(self, outer: Written) -> Written {
        Written {
            delay_loop: self.delay_loop.or(outer.delay_loop),
            connect_timeout: self.connect_timeout.or(outer.connect_timeout),
            retry: self.retry.or(outer.retry),
            delay_before_retry: self.delay_before_retry.or(outer.delay_before_retry),
            warmup: self.warmup.or(outer.warmup),
            alpha: self.alpha.or(outer.alpha),
            inhibit_on_failure: self.inhibit_on_failure.or(outer.inhibit_on_failure),
            weight: self.weight.or(outer.weight),
            method: self.method.or(outer.method),
        }
    }
}

/// A `virtual_server` block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VirtualServer {
    /// Where it was written.
    pub at: Location,
    /// The service, as `ipvsadm -A` would configure it (`lb_algo`, `protocol`,
    /// `persistence_timeout`, `persistence_granularity`, `ops`, scheduler flags).
    pub service: ServiceConfig,
    /// `quorum`: the smallest sum of weights of live real servers that keeps the service up
    /// (default 1).
    pub quorum: u32,
    /// `hysteresis`: quorum is lost below `quorum - hysteresis` and regained at `quorum +
    /// hysteresis` (default 0).
    pub hysteresis: u32,
    /// `sorry_server`: the server that replaces all real servers while quorum is lost (its port
    /// defaults to the service's).
    pub sorry_server: Option<ServerConfig>,
    /// `sorry_server_inhibit`: the sorry server stays configured, at weight 0, while unused.
    pub sorry_server_inhibit: bool,
    /// `omega`: run the down actions at shutdown (no effect without notify scripts).
    pub omega: bool,
    pub(crate) written: Written,
    pub(crate) virtualhost: Option<Text>,
    pub(crate) reals: Span,
}

/// A `real_server` block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RealServer {
    /// Where it was written.
    pub at: Location,
    /// The server, as `ipvsadm -a ... -m` would configure it (`weight`, `uthreshold`,
    /// `lthreshold`; NAT).
    pub server: ServerConfig,
    /// `inhibit_on_failure` (here or on the virtual server): a failed server is set to weight 0
    /// instead of being removed.
    pub inhibit_on_failure: bool,
    pub(crate) written: Written,
    pub(crate) virtualhost: Option<Text>,
    pub(crate) checkers: Span,
}

/// Which check a checker runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CheckKind {
    /// `TCP_CHECK`: a TCP connect.
    Tcp,
    /// `HTTP_GET`: an HTTP GET of each URL.
    Http,
}

/// `http_protocol` of an HTTP_GET.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum HttpProtocol {
    /// `1.0` (the default).
    #[default]
    Http10,
    /// `1.0C`: HTTP/1.0 with `Connection: close`.
    Http10Close,
    /// `1.1` (sends `Connection: close` too).
    Http11,
}

/// A checker block (`TCP_CHECK` or `HTTP_GET`) of a real server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checker {
    /// Where it was written.
    pub at: Location,
    /// The check.
    pub kind: CheckKind,
    /// Where the check connects: `connect_ip` and `connect_port`, by default the real server's
    /// address and port.
    pub connect: SocketAddr,
    /// `bindto`: the source address of checks.
    pub bindto: Option<IpAddr>,
    /// `bind_port`: the source port of checks.
    pub bind_port: Option<u16>,
    /// Timers and retries.
    pub timing: Timing,
    /// `alpha` (here, on the real server or on the virtual server): the real server starts
    /// failed and needs a successful check to be used.
    pub alpha: bool,
    /// HTTP_GET: `http_protocol`.
    pub http_protocol: HttpProtocol,
    /// HTTP_GET: `fast_recovery`: after a failure, check every URL each round, not one a round.
    pub fast_recovery: bool,
    pub(crate) written: Written,
    pub(crate) virtualhost: Option<Text>,
    pub(crate) urls: Span,
}

/// HTTP status codes a URL accepts (100..=599).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StatusCodes {
    bits: [u64; 8],
}

impl StatusCodes {
    /// No code.
    pub const EMPTY: StatusCodes = StatusCodes { bits: [0; 8] };

    /// keepalived's default: 200..=299.
    pub fn default_range() -> Self {
        let mut s = Self::EMPTY;
        s.insert_range(200, 299);
        s
    }

    /// Whether `code` is accepted.
    pub fn contains(&self, code: u16) -> bool {
        match code.checked_sub(100) {
            Some(i) if code <= 599 => self.bits[usize::from(i / 64)] & (1 << (i % 64)) != 0,
            _ => false,
        }
    }

    /// Whether no code is accepted.
    pub fn is_empty(&self) -> bool {
        self.bits == [0; 8]
    }

    /// Accepts `lo..=hi` (within 100..=599).
    pub(crate) fn insert_range(&mut self, lo: u16, hi: u16) {
        for code in lo.max(100)..=hi.min(599) {
            let i = code - 100;
            self.bits[usize::from(i / 64)] |= 1 << (i % 64);
        }
    }
}

/// A `url` block of an HTTP_GET.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    /// Where it was written.
    pub at: Location,
    /// `path`: what to GET.
    pub path: Text,
    /// `digest`: the MD5 of the body (keepalived's `genhash`), if checked.
    pub digest: Option<[u8; 16]>,
    /// `status_code`: the accepted codes (default 200..=299).
    pub status: StatusCodes,
    /// The `Host` header: `virtualhost` of the url, checker, real server or virtual server;
    /// `None`: the address checked.
    pub virtualhost: Option<Text>,
}

impl Written {
    pub(crate) const NONE: Written = Written {
        delay_loop: None,
        connect_timeout: None,
        retry: None,
        delay_before_retry: None,
        warmup: None,
        alpha: None,
        inhibit_on_failure: None,
        weight: None,
        method: None,
    };
}

const NOWHERE: Location = Location {
    file: FileId(0),
    line: 0,
};

const NO_SPAN: Span = Span { start: 0, end: 0 };

const NO_ADDR: SocketAddr = SocketAddr::V4(core::net::SocketAddrV4::new(
    core::net::Ipv4Addr::UNSPECIFIED,
    0,
));

impl VirtualServer {
    /// A blank slot, to fill the storage given to [`Config::new`](super::Config::new).
    pub const EMPTY: VirtualServer = VirtualServer {
        at: NOWHERE,
        service: ServiceConfig::new(crate::config::ServiceKey::tcp(NO_ADDR)),
        quorum: 1,
        hysteresis: 0,
        sorry_server: None,
        sorry_server_inhibit: false,
        omega: false,
        written: Written::NONE,
        virtualhost: None,
        reals: NO_SPAN,
    };
}

impl RealServer {
    /// A blank slot, to fill the storage given to [`Config::new`](super::Config::new).
    pub const EMPTY: RealServer = RealServer {
        at: NOWHERE,
        server: ServerConfig::new(NO_ADDR, crate::config::ForwardMethod::Masq),
        inhibit_on_failure: false,
        written: Written::NONE,
        virtualhost: None,
        checkers: NO_SPAN,
    };
}

impl Timing {
    /// keepalived's defaults for a TCP_CHECK.
    pub const DEFAULT: Timing = Timing {
        delay_loop: Duration::from_secs(60),
        connect_timeout: Duration::from_secs(5),
        retry: 1,
        delay_before_retry: Duration::from_secs(1),
        warmup: Duration::from_secs(60),
    };
}

impl Checker {
    /// A blank slot, to fill the storage given to [`Config::new`](super::Config::new).
    pub const EMPTY: Checker = Checker {
        at: NOWHERE,
        kind: CheckKind::Tcp,
        connect: NO_ADDR,
        bindto: None,
        bind_port: None,
        timing: Timing::DEFAULT,
        alpha: false,
        http_protocol: HttpProtocol::Http10,
        fast_recovery: false,
        written: Written::NONE,
        virtualhost: None,
        urls: NO_SPAN,
    };
}

impl Url {
    /// A blank slot, to fill the storage given to [`Config::new`](super::Config::new).
    pub const EMPTY: Url = Url {
        at: NOWHERE,
        path: Text::new(),
        digest: None,
        status: StatusCodes::EMPTY,
        virtualhost: None,
    };
}
