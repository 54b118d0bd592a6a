//! Health checks in lb-tun: the probes' own smoltcp interface on the TUN device (packets for
//! the `--probe-source` addresses are diverted to it before the balancer sees them), lb-probe's
//! socket pool running the balancer's probes, the results counted per real server for the
//! metrics, and `lbadm --health`.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};

use lb_core::{Balancer, CheckKind, HealthLimits, HealthStorage, Instant, ProbeOutcome};
use lb_probe::smoltcp::iface::Interface;
use lb_probe::{probe_interface, Prober, QueueDevice};

/// Probes in flight at once (the socket pool): smoltcp walks every socket on each poll.
pub const POOL: usize = 64;
/// Bytes of an HTTP response judged (a socket's receive buffer).
pub const RESPONSE_MAX: usize = 4096;
/// Checked servers lb-tun can hold.
pub const MAX_CHECKS: usize = 8192;

/// The names of [`ProbeOutcome`]s in metrics and `--health`, by [`result_index`].
pub const RESULTS: [&str; 7] = [
    "ok",
    "refused",
    "timeout",
    "unreachable",
    "http_status",
    "digest_mismatch",
    "bad_response",
];

/// The index of `o` in [`RESULTS`].
pub fn result_index(o: ProbeOutcome) -> usize {
    match o {
        ProbeOutcome::Ok => 0,
        ProbeOutcome::Refused => 1,
        ProbeOutcome::Timeout => 2,
        ProbeOutcome::Unreachable => 3,
        ProbeOutcome::HttpStatus(_) => 4,
        ProbeOutcome::DigestMismatch => 5,
        ProbeOutcome::BadResponse => 6,
    }
}

/// The probe side of the gateway.
pub struct Probes {
    prober: Prober<'static>,
    iface: Interface,
    dev: QueueDevice,
    sources: Vec<IpAddr>,
    /// Probe results per real server (the probe's server address), by [`RESULTS`].
    results: HashMap<SocketAddr, [u64; RESULTS.len()]>,
}

impl Probes {
    /// A prober of [`POOL`] sockets from `sources` (one IPv4 and/or one IPv6), and health
    /// storage on `lb` sized to match.
    pub fn new(
        lb: &mut Balancer<'static>,
        sources: &[IpAddr],
        seed: u64,
        now: Instant,
    ) -> Result<Probes, String> {
        let mut dev = QueueDevice::new(1500, 4 * POOL);
        let iface =
            probe_interface(&mut dev, sources, now).map_err(|e| format!("--probe-source: {e}"))?;
        let mut prober = Prober::alloc(POOL, RESPONSE_MAX, seed as u16);
        for s in sources {
            prober.set_source(*s);
        }
        let limits = HealthLimits {
            targets: MAX_CHECKS,
            members: MAX_CHECKS,
            services: 1024,
            max_in_flight: prober.capacity(),
        };
        lb.set_health_storage(HealthStorage::alloc(limits), seed.rotate_left(17));
        Ok(Probes {
            prober,
            iface,
            dev,
            sources: sources.to_vec(),
            results: HashMap::new(),
        })
    }

    /// The probe source addresses.
    pub fn sources(&self) -> &[IpAddr] {
        &self.sources
    }

    /// Whether `pkt` (an IP packet from the TUN device) is for a probe source: a few byte
    /// compares, before the balancer.
    pub fn is_for_us(&self, pkt: &[u8]) -> bool {
        let dst = match pkt.first().map(|b| b >> 4) {
            Some(4) => pkt
                .get(16..20)
                .and_then(|b| <[u8; 4]>::try_from(b).ok())
                .map(IpAddr::from),
            Some(6) => pkt
                .get(24..40)
                .and_then(|b| <[u8; 16]>::try_from(b).ok())
                .map(IpAddr::from),
            _ => None,
        };
        dst.is_some_and(|d| self.sources.contains(&d))
    }

    /// Hands a packet for a probe source to the probes' interface.
    pub fn divert(&mut self, pkt: &[u8]) {
        self.dev.rx.push_back(pkt.to_vec());
    }

    /// Whether a poll is due: packets arrived, or a probe deadline or retransmission.
    pub fn due(&mut self, now: Instant) -> bool {
        !self.dev.rx.is_empty() || self.poll_at(now).is_some_and(|t| t <= now)
    }

    /// Runs the probes (see [`Prober::poll`]); each finished one is counted and, at debug,
    /// logged. Returns whether a probe started or finished.
    pub fn poll(&mut self, now: Instant, lb: &mut Balancer<'static>) -> bool {
        let results = &mut self.results;
        self.prober
            .poll(now, lb, &mut self.iface, &mut self.dev, &mut |p, o| {
                results.entry(p.server).or_default()[result_index(o)] += 1;
                log::debug!("probe of {}: {o:?}", p.server);
            })
    }

    /// When the probes need a poll next.
    pub fn poll_at(&mut self, now: Instant) -> Option<Instant> {
        self.prober.poll_at(now, &mut self.iface)
    }

    /// The packets the probes' interface sent, for the TUN device.
    pub fn take_tx(&mut self) -> impl Iterator<Item = Vec<u8>> + '_ {
        self.dev.tx.drain(..)
    }

    /// The results counted for real server `server`, by [`RESULTS`].
    pub fn results(&self, server: SocketAddr) -> [u64; RESULTS.len()] {
        self.results.get(&server).copied().unwrap_or_default()
    }

    /// Probes running now.
    pub fn busy(&self) -> usize {
        self.prober.busy()
    }
}

/// `--passive SPEC`: lb-core's passive signals (docs/health-checks.md §3) for every virtual
/// server with a checked real server. SPEC is `key=value` pairs separated by commas, each
/// optional: `refused=N` (3), `unanswered=N` (10), `syn-deadline=SECONDS` (3), `action=probe|down`
/// (probe), `max-down=PERCENT` (50). Error: an unknown key or a bad value, named.
pub fn parse_passive(spec: &str) -> Result<lb_core::PassiveConfig, String> {
    let mut p = lb_core::PassiveConfig::default();
    for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (k, v) = item
            .split_once('=')
            .ok_or_else(|| format!("--passive: {item:?} is not key=value"))?;
        let bad = || format!("--passive: bad value {v:?} for {k}");
        match k {
            "refused" => p.refused_limit = v.parse().map_err(|_| bad())?,
            "unanswered" => p.unanswered_limit = v.parse().map_err(|_| bad())?,
            "syn-deadline" => {
                let s: f64 = v.parse().map_err(|_| bad())?;
                if !(0.001..=3600.0).contains(&s) {
                    return Err(bad());
                }
                p.syn_deadline = lb_core::Duration::from_millis((s * 1000.0).round() as u64);
            }
            "action" => {
                p.action = match v {
                    "probe" => lb_core::PassiveAction::Probe,
                    "down" => lb_core::PassiveAction::MarkDown,
                    _ => return Err(bad()),
                }
            }
            "max-down" => p.max_down_percent = v.parse().map_err(|_| bad())?,
            _ => {
                return Err(format!(
                    "--passive: unknown key {k:?} (refused, unanswered, syn-deadline, action, max-down)"
                ))
            }
        }
    }
    if p.refused_limit == 0 || p.unanswered_limit == 0 || p.max_down_percent > 100 {
        return Err("--passive: limits must be > 0 and max-down at most 100".into());
    }
    Ok(p)
}

/// `lbadm --health`: one line per checked real server: service, server, check kind, state,
/// results in a row, the last result, time since the last change and its reason.
pub fn listing(lb: &Balancer<'_>, now: Instant) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<22} {:<24} {:<9} {:<5} {:>6} {:<20} {:>9}  reason",
        "service", "real server", "check", "state", "row", "last result", "since"
    );
    for s in lb.health_statuses() {
        let kind = match &s.check.kind {
            CheckKind::TcpConnect => "TCP_CHECK".to_string(),
            CheckKind::HttpGet { .. } => "HTTP_GET".to_string(),
        };
        let row = if s.failures > 0 {
            format!("{}F", s.failures)
        } else {
            format!("{}P", s.passes)
        };
        let last = match s.last {
            None => "-".to_string(),
            Some((t, o)) => format!(
                "{} {:.1}s ago",
                outcome_text(o),
                now.saturating_since(t).millis() as f64 / 1000.0
            ),
        };
        let since = format!(
            "{:.1}s",
            now.saturating_since(s.since).millis() as f64 / 1000.0
        );
        let state = match s.state {
            lb_core::HealthState::Up => "UP",
            lb_core::HealthState::Down => "DOWN",
        };
        let reason = s.reason.map_or("-".to_string(), |r| r.to_string());
        let _ = writeln!(
            out,
            "{:<22} {:<24} {:<9} {:<5} {:>6} {:<20} {:>9}  {reason}",
            s.service.to_string(),
            s.server.to_string(),
            kind,
            state,
            row,
            last,
            since
        );
    }
    out
}

/// A probe outcome in a few words.
fn outcome_text(o: ProbeOutcome) -> String {
    match o {
        ProbeOutcome::HttpStatus(c) => format!("HTTP {c}"),
        o => RESULTS[result_index(o)].replace('_', " "),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packets_for_a_probe_source_are_recognised() {
        let mut lb = lb_tun_test_balancer();
        let p = Probes::new(
            &mut lb,
            &["10.9.0.1".parse().unwrap(), "fd00::9".parse().unwrap()],
            1,
            Instant::ZERO,
        )
        .unwrap();
        let mut v4 = [0u8; 40];
        v4[0] = 0x45;
        v4[16..20].copy_from_slice(&[10, 9, 0, 1]);
        assert!(p.is_for_us(&v4));
        v4[19] = 2;
        assert!(!p.is_for_us(&v4));
        let mut v6 = [0u8; 60];
        v6[0] = 0x60;
        v6[24..40].copy_from_slice(&"fd00::9".parse::<std::net::Ipv6Addr>().unwrap().octets());
        assert!(p.is_for_us(&v6));
        assert!(!p.is_for_us(&v6[..30]));
        assert!(!p.is_for_us(&[]));
    }

    #[test]
    fn passive_spec() {
        let p = parse_passive("").unwrap();
        assert_eq!(p, lb_core::PassiveConfig::default());
        let p = parse_passive("unanswered=2, syn-deadline=0.5,action=down,max-down=100").unwrap();
        assert_eq!(p.unanswered_limit, 2);
        assert_eq!(p.syn_deadline, lb_core::Duration::from_millis(500));
        assert_eq!(p.action, lb_core::PassiveAction::MarkDown);
        assert_eq!(p.max_down_percent, 100);
        assert!(parse_passive("action=maybe")
            .unwrap_err()
            .contains("bad value"));
        assert!(parse_passive("refused=0").unwrap_err().contains("> 0"));
        assert!(parse_passive("speed=3")
            .unwrap_err()
            .contains("unknown key"));
        assert!(parse_passive("refused").unwrap_err().contains("key=value"));
    }

    #[test]
    fn two_sources_of_a_family_are_refused() {
        let mut lb = lb_tun_test_balancer();
        let r = Probes::new(
            &mut lb,
            &["10.9.0.1".parse().unwrap(), "10.9.0.2".parse().unwrap()],
            1,
            Instant::ZERO,
        );
        assert!(r.err().is_some_and(|e| e.contains("one IPv4")));
    }

    fn lb_tun_test_balancer() -> Balancer<'static> {
        Balancer::alloc(
            lb_core::Limits::new(1, 4),
            64,
            &lb_core::Secrets::from_bytes([1; 24]),
            Instant::ZERO,
        )
    }
}
