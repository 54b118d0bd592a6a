//! The health checker's public configuration: what to probe and how often ([`HealthCheck`],
//! one per checked real server), what a service does about it ([`VirtualServerHealth`]), and
//! the errors of setting them ([`HealthError`]). Defaults are keepalived's
//! (docs/health-checks.md §1).

use core::net::SocketAddr;

use crate::time::Duration;

/// Longest HTTP path a check may carry (bytes).
pub const PATH_MAX: usize = 64;
/// Most `url` blocks in one HTTP check.
pub const URLS_MAX: usize = 2;
/// Most status-code ranges in one `url`.
pub const STATUS_RANGES_MAX: usize = 4;

/// A set of accepted HTTP status codes: ranges, inclusive. Empty means keepalived's default,
/// 200–299.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StatusSet {
    /// Accepted ranges (`(200, 200)` for one code).
    pub ranges: heapless::Vec<(u16, u16), STATUS_RANGES_MAX>,
}

impl StatusSet {
    /// Whether `code` passes.
    pub fn accepts(&self, code: u16) -> bool {
        if self.ranges.is_empty() {
            return (200..=299).contains(&code);
        }
        self.ranges
            .iter()
            .any(|&(lo, hi)| (lo..=hi).contains(&code))
    }
}

/// One keepalived `url { path, status_code, digest }` block of an HTTP check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpUrl {
    /// The path requested (`/healthz`).
    pub path: heapless::String<PATH_MAX>,
    /// Accepted status codes.
    pub status: StatusSet,
    /// MD5 of the response body, as keepalived's `genhash` prints it (bytes, not hex).
    pub digest: Option<[u8; 16]>,
}

impl HttpUrl {
    /// `GET path`, any 2xx status, no digest. Error: the path is longer than [`PATH_MAX`].
    pub fn new(path: &str) -> Result<HttpUrl, HealthError> {
        let mut p = heapless::String::new();
        p.push_str(path).map_err(|_| HealthError::PathTooLong {
            len: path.len(),
            max: PATH_MAX,
        })?;
        Ok(HttpUrl {
            path: p,
            status: StatusSet::default(),
            digest: None,
        })
    }
}

/// What a probe does.
// No heap to box the URLs in: a probe slot is sized for the largest check anyway.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckKind {
    /// keepalived `TCP_CHECK`: the three-way handshake completes.
    TcpConnect,
    /// keepalived `HTTP_GET`: every `url` answers with an accepted status (and digest).
    HttpGet {
        /// The URLs, probed one per connection, in order; all must pass.
        urls: heapless::Vec<HttpUrl, URLS_MAX>,
    },
}

/// How one real server is checked, with keepalived's knobs. Identical checks of the same
/// address (the same `HealthCheck` and probe address, in any service) share one probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    /// The probe.
    pub kind: CheckKind,
    /// `connect_ip`/`connect_port`: where the probe goes (`None`: the real server's address).
    pub connect_to: Option<SocketAddr>,
    /// `bindto`: the probe's source address (the transport's business; carried in the probe).
    pub bind_to: Option<SocketAddr>,
    /// `delay_loop`: time from one probe's end to the next while the result is steady (60 s).
    pub delay_loop: Duration,
    /// `connect_timeout`: a probe with no answer by then failed (5 s). At most `delay_loop`.
    pub connect_timeout: Duration,
    /// `retry`: failures tolerated before DOWN: DOWN after `retry + 1` in a row (1).
    pub retry: u16,
    /// `delay_before_retry`: time from a failed probe's end to its retry (1 s; keepalived uses
    /// 3 s for HTTP_GET: [`HealthCheck::http`] sets that).
    pub delay_before_retry: Duration,
    /// `warmup`: the first probe runs at a seeded random time in `[0, warmup]` after the check
    /// is configured (`None`: `delay_loop`, keepalived's default; zero: at once).
    pub warmup: Option<Duration>,
    /// Successes in a row to come back UP (1, as keepalived). Probes of a DOWN server that
    /// passed but have not reached `rise` yet are repeated after `delay_before_retry`.
    pub rise: u16,
    /// Extra spread, beyond keepalived: each `delay_loop` is shortened by a seeded random
    /// 0..=`jitter_percent` % (0: keepalived's fixed interval; at most 50).
    pub jitter_percent: u8,
    /// `inhibit_on_failure`: DOWN sets the weight to 0 (established flows go on) instead of
    /// removing the server from its service.
    pub inhibit_on_failure: bool,
    /// `alpha`: the server starts DOWN and needs `rise` successes before it is scheduled.
    /// Without it the server starts UP and the first failure takes it DOWN (keepalived).
    pub alpha: bool,
}

impl HealthCheck {
    /// A keepalived `TCP_CHECK` with keepalived's defaults.
    pub const fn tcp() -> HealthCheck {
        HealthCheck {
            kind: CheckKind::TcpConnect,
            connect_to: None,
            bind_to: None,
            delay_loop: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(5),
            retry: 1,
            delay_before_retry: Duration::from_secs(1),
            warmup: None,
            rise: 1,
            jitter_percent: 0,
            inhibit_on_failure: false,
            alpha: false,
        }
    }

    /// A keepalived `HTTP_GET` of `urls` with keepalived's defaults (`delay_before_retry` 3 s).
    pub fn http(urls: heapless::Vec<HttpUrl, URLS_MAX>) -> HealthCheck {
        HealthCheck {
            kind: CheckKind::HttpGet { urls },
            delay_before_retry: Duration::from_secs(3),
            ..HealthCheck::tcp()
        }
    }

    /// The checks [`Balancer::set_health_check`](crate::Balancer::set_health_check) refuses.
    pub(crate) fn validate(&self) -> Result<(), HealthError> {
        if self.delay_loop.millis() == 0 || self.connect_timeout.millis() == 0 {
            return Err(HealthError::ZeroInterval);
        }
        if self.connect_timeout > self.delay_loop {
            return Err(HealthError::TimeoutAboveInterval {
                timeout: self.connect_timeout,
                interval: self.delay_loop,
            });
        }
        if self.rise == 0 {
            return Err(HealthError::ZeroRise);
        }
        if self.jitter_percent > 50 {
            return Err(HealthError::JitterTooLarge {
                percent: self.jitter_percent,
            });
        }
        if let CheckKind::HttpGet { urls } = &self.kind {
            if urls.is_empty() {
                return Err(HealthError::NoUrl);
            }
        }
        Ok(())
    }

    /// The first probe's latest start after configuration.
    pub(crate) fn warmup(&self) -> Duration {
        self.warmup.unwrap_or(self.delay_loop)
    }
}

/// What a run of passive signals does (beyond keepalived; HAProxy's `observe layer4`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PassiveAction {
    /// Probe at once; a failure of that probe takes the server DOWN (no retries).
    Probe,
    /// DOWN at once (within [`PassiveConfig::max_down_percent`]; beyond it, `Probe`).
    MarkDown,
}

/// Passive signals from the datapath, per service. Off by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PassiveConfig {
    /// Forwarded SYNs answered by a RST from the server, in a row, that trigger the action (3).
    pub refused_limit: u16,
    /// Forwarded SYNs in a row with no handshake completed within `syn_deadline` of the last
    /// of them, that trigger the action (10).
    pub unanswered_limit: u16,
    /// How long a forwarded SYN may wait for the handshake (3 s).
    pub syn_deadline: Duration,
    /// What a trigger does.
    pub action: PassiveAction,
    /// Most of a service's checked servers passive signals alone may hold DOWN, in percent
    /// (50). Active failures are never capped.
    pub max_down_percent: u8,
}

impl Default for PassiveConfig {
    fn default() -> Self {
        PassiveConfig {
            refused_limit: 3,
            unanswered_limit: 10,
            syn_deadline: Duration::from_secs(3),
            action: PassiveAction::Probe,
            max_down_percent: 50,
        }
    }
}

/// A virtual server's health policy (keepalived's `virtual_server` keywords).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VirtualServerHealth {
    /// `sorry_server`: added (weight 1) while the quorum is lost, removed when it is back.
    pub sorry_server: Option<SocketAddr>,
    /// `quorum`: the live weight (sum of the weights of UP servers) the service needs (1).
    pub quorum: u32,
    /// `hysteresis`: quorum is lost below `quorum − hysteresis` (or at 0) and back at
    /// `quorum + hysteresis` (0).
    pub hysteresis: u32,
    /// Beyond keepalived (HAProxy's `slowstart`): a recovered server's weight ramps linearly
    /// from 1 to its weight over this time, in steps of max(1 s, slowstart / 20). Zero: off.
    pub slowstart: Duration,
    /// Passive signals (`None`: off).
    pub passive: Option<PassiveConfig>,
}

impl Default for VirtualServerHealth {
    fn default() -> Self {
        VirtualServerHealth {
            sorry_server: None,
            quorum: 1,
            hysteresis: 0,
            slowstart: Duration::from_millis(0),
            passive: None,
        }
    }
}

/// Errors from the health-check configuration calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum HealthError {
    /// No health storage: call [`Balancer::set_health_storage`](crate::Balancer::set_health_storage) first.
    NoStorage,
    /// No such service.
    NoSuchService,
    /// No such real server in that service.
    NoSuchServer,
    /// `delay_loop` or `connect_timeout` is zero.
    ZeroInterval,
    /// `connect_timeout` above `delay_loop`.
    TimeoutAboveInterval {
        /// The timeout.
        timeout: Duration,
        /// The interval.
        interval: Duration,
    },
    /// `rise` is 0.
    ZeroRise,
    /// `jitter_percent` above 50.
    JitterTooLarge {
        /// The percentage asked for.
        percent: u8,
    },
    /// An HTTP check with no `url`.
    NoUrl,
    /// An HTTP path longer than [`PATH_MAX`].
    PathTooLong {
        /// Its length.
        len: usize,
        /// The most.
        max: usize,
    },
    /// Every probe slot is in use.
    TooManyChecks {
        /// Probe slots in the storage.
        max: usize,
    },
    /// Every checked-server slot is in use.
    TooManyCheckedServers {
        /// Checked-server slots in the storage.
        max: usize,
    },
    /// Every service-policy slot is in use.
    TooManyServicePolicies {
        /// Service-policy slots in the storage.
        max: usize,
    },
    /// `quorum` is 0.
    ZeroQuorum,
    /// The sorry server's address family differs from the service's, or it is one of the
    /// service's real servers.
    BadSorryServer,
    /// Passive limits of 0, or a share above 100 %.
    BadPassive,
}

impl core::fmt::Display for HealthError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            HealthError::NoStorage => f.write_str("no health-check storage was given"),
            HealthError::NoSuchService => f.write_str("no such service"),
            HealthError::NoSuchServer => f.write_str("no such real server in that service"),
            HealthError::ZeroInterval => f.write_str("delay_loop and connect_timeout must be > 0"),
            HealthError::TimeoutAboveInterval { timeout, interval } => write!(
                f,
                "connect_timeout {timeout} exceeds delay_loop {interval}"
            ),
            HealthError::ZeroRise => f.write_str("rise must be at least 1"),
            HealthError::JitterTooLarge { percent } => {
                write!(f, "jitter {percent} % exceeds 50 %")
            }
            HealthError::NoUrl => f.write_str("an HTTP check needs at least one url"),
            HealthError::PathTooLong { len, max } => {
                write!(f, "HTTP path of {len} bytes exceeds {max}")
            }
            HealthError::TooManyChecks { max } => {
                write!(f, "no room for another probe: all {max} probe slots are in use")
            }
            HealthError::TooManyCheckedServers { max } => write!(
                f,
                "no room for another checked server: all {max} slots are in use"
            ),
            HealthError::TooManyServicePolicies { max } => write!(
                f,
                "no room for another service health policy: all {max} slots are in use"
            ),
            HealthError::ZeroQuorum => f.write_str("quorum must be at least 1"),
            HealthError::BadSorryServer => f.write_str(
                "the sorry server must be of the service's address family and not one of its real servers",
            ),
            HealthError::BadPassive => {
                f.write_str("passive limits must be > 0 and the share at most 100 %")
            }
        }
    }
}

impl core::error::Error for HealthError {}
