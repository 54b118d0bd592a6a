//! One probe target's UP/DOWN state machine, keepalived's counting (docs/health-checks.md §2):
//! DOWN after `retry + 1` failures in a row (retries `delay_before_retry` apart), UP after
//! `rise` successes in a row; a server that starts UP goes DOWN on its first failure until it
//! has passed once. Plus the results probes report and the reasons transitions give.

use core::fmt;

use super::config::HealthCheck;
use crate::time::Duration;

/// A real server's health.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthState {
    /// Scheduled.
    Up,
    /// Out of scheduling (weight 0 or removed).
    Down,
}

/// What a probe found, as the transport reports it to
/// [`Balancer::probe_result`](crate::Balancer::probe_result).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeOutcome {
    /// The handshake completed (and for HTTP: status and digest accepted).
    Ok,
    /// The server answered the SYN with a RST.
    Refused,
    /// No answer before the probe's deadline (the balancer also decides this itself at the
    /// deadline, so the transport may just drop the probe).
    Timeout,
    /// An ICMP error about the probe (host, network or port unreachable).
    Unreachable,
    /// An HTTP status outside the accepted set.
    HttpStatus(u16),
    /// The body's MD5 differs from the configured digest.
    DigestMismatch,
    /// No parsable HTTP response (closed early, garbage, too large).
    BadResponse,
}

/// Why a server changed state (the text of its [`Display`](fmt::Display)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Reason {
    /// "check passed": `rise` probes in a row passed.
    Passed,
    /// "connect refused".
    Refused,
    /// "timeout after 1 s": no answer within `connect_timeout`.
    Timeout(Duration),
    /// "unreachable".
    Unreachable,
    /// "HTTP 503".
    HttpStatus(u16),
    /// "digest mismatch".
    DigestMismatch,
    /// "bad HTTP response".
    BadResponse,
    /// "passive: 3 SYNs refused": forwarded SYNs answered by a RST from the server.
    PassiveRefused(u16),
    /// "passive: 10 SYNs unanswered": forwarded SYNs with no completed handshake.
    PassiveUnanswered(u16),
    /// "alpha: not checked yet": the server starts DOWN (`alpha`).
    Alpha,
}

impl Reason {
    /// The reason a failed probe gives (`timeout` is the probe's `connect_timeout`).
    pub(crate) fn of_failure(o: ProbeOutcome, timeout: Duration) -> Reason {
        match o {
            ProbeOutcome::Ok => Reason::Passed,
            ProbeOutcome::Refused => Reason::Refused,
            ProbeOutcome::Timeout => Reason::Timeout(timeout),
            ProbeOutcome::Unreachable => Reason::Unreachable,
            ProbeOutcome::HttpStatus(s) => Reason::HttpStatus(s),
            ProbeOutcome::DigestMismatch => Reason::DigestMismatch,
            ProbeOutcome::BadResponse => Reason::BadResponse,
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Reason::Passed => f.write_str("check passed"),
            Reason::Refused => f.write_str("connect refused"),
            Reason::Timeout(d) => {
                let ms = d.millis();
                if ms % 1000 == 0 {
                    write!(f, "timeout after {} s", ms / 1000)
                } else {
                    let frac = ms % 1000;
                    let (mut digits, mut width) = (frac, 3);
                    while digits % 10 == 0 {
                        digits /= 10;
                        width -= 1;
                    }
                    write!(f, "timeout after {}.{:0width$} s", ms / 1000, digits)
                }
            }
            Reason::Unreachable => f.write_str("unreachable"),
            Reason::HttpStatus(s) => write!(f, "HTTP {s}"),
            Reason::DigestMismatch => f.write_str("digest mismatch"),
            Reason::BadResponse => f.write_str("bad HTTP response"),
            Reason::PassiveRefused(n) => write!(f, "passive: {n} SYNs refused"),
            Reason::PassiveUnanswered(n) => write!(f, "passive: {n} SYNs unanswered"),
            Reason::Alpha => f.write_str("alpha: not checked yet"),
        }
    }
}

/// The counters of one target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Machine {
    pub(crate) up: bool,
    /// Failures in a row while UP (retries used).
    fails: u16,
    /// Successes in a row while DOWN.
    oks: u16,
    /// The next failure is decisive: at start (until the first pass) and after a passive
    /// trigger asked for a confirming probe.
    pub(crate) exhausted: bool,
}

/// When the next probe is due after a result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Next {
    /// After `delay_loop` (jittered).
    Loop,
    /// After `delay_before_retry`.
    Retry,
}

impl Machine {
    pub(crate) const fn new(alpha: bool) -> Machine {
        Machine {
            up: !alpha,
            fails: 0,
            oks: 0,
            exhausted: true,
        }
    }

    /// Marks the target DOWN without a probe (a passive trigger).
    pub(crate) fn force_down(&mut self) {
        *self = Machine {
            up: false,
            fails: 0,
            oks: 0,
            exhausted: false,
        };
    }

    /// Counts one probe round's result: the new state if it changed, and when to probe next.
    pub(crate) fn on_result(&mut self, ok: bool, chk: &HealthCheck) -> (Option<bool>, Next) {
        match (self.up, ok) {
            (true, true) => {
                self.fails = 0;
                self.exhausted = false;
                (None, Next::Loop)
            }
            (false, true) => {
                self.oks += 1;
                if self.oks >= chk.rise {
                    *self = Machine {
                        up: true,
                        fails: 0,
                        oks: 0,
                        exhausted: false,
                    };
                    (Some(true), Next::Loop)
                } else {
                    (None, Next::Retry)
                }
            }
            (true, false) => {
                if !self.exhausted && self.fails < chk.retry {
                    self.fails += 1;
                    (None, Next::Retry)
                } else {
                    self.force_down();
                    (Some(false), Next::Loop)
                }
            }
            (false, false) => {
                self.oks = 0;
                (None, Next::Loop)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The states a run of results goes through (true = UP), starting UP (non-alpha).
    fn run(retry: u16, rise: u16, results: &[bool]) -> (std::vec::Vec<bool>, std::vec::Vec<Next>) {
        let chk = HealthCheck {
            retry,
            rise,
            ..HealthCheck::tcp()
        };
        let mut m = Machine::new(false);
        let mut states = std::vec::Vec::new();
        let mut nexts = std::vec::Vec::new();
        for &ok in results {
            let (_, next) = m.on_result(ok, &chk);
            states.push(m.up);
            nexts.push(next);
        }
        (states, nexts)
    }

    #[test]
    fn the_first_failure_is_decisive_until_a_pass() {
        assert_eq!(run(3, 1, &[false]).0, [false]);
        // After a pass, retry 3 tolerates three failures.
        let (s, n) = run(3, 1, &[true, false, false, false, false]);
        assert_eq!(s, [true, true, true, true, false]);
        assert_eq!(
            n,
            [
                Next::Loop,
                Next::Retry,
                Next::Retry,
                Next::Retry,
                Next::Loop
            ]
        );
    }

    #[test]
    fn rise_and_retry_damp_flapping() {
        let flap = [true, false, true, false, true, false, true, false];
        // retry 1, rise 2: alternating results never change the state.
        assert!(run(1, 2, &flap).0.iter().all(|&up| up));
        // retry 0, rise 1: it flips on every probe after the first failure.
        let (s, _) = run(0, 1, &flap);
        assert_eq!(s, [true, false, true, false, true, false, true, false]);
    }

    #[test]
    fn down_needs_rise_passes_in_a_row() {
        let (s, n) = run(0, 3, &[true, false, true, true, false, true, true, true]);
        assert_eq!(s, [true, false, false, false, false, false, false, true]);
        // Passes short of rise retry soon; a failure while DOWN waits a delay_loop.
        assert_eq!(
            n[2..],
            [
                Next::Retry,
                Next::Retry,
                Next::Loop,
                Next::Retry,
                Next::Retry,
                Next::Loop
            ]
        );
    }
}
