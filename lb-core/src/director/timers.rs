//! The director's timers: [`poll_timeout`](Director::poll_timeout) /
//! [`handle_timeout`](Director::handle_timeout), the 2 s rate estimator and the 60 s lblc/lblcr
//! garbage collection, and the lblc/lblcr expiration settings.

use super::Director;
use crate::config::SchedulerKind;
use crate::sched::{lblc, lblcr};
use crate::service::ServiceSlot;
use crate::stats::ESTIMATOR_PERIOD;
use crate::time::{Duration, Instant};

/// How often lblc/lblcr caches are garbage-collected (the kernel's 60 s timer, §5.7).
pub const GC_PERIOD: Duration = Duration::from_secs(60);

/// lblc's and lblcr's default `*_expiration` sysctls: 24 h.
pub const DEFAULT_LBLC_EXPIRATION: Duration = Duration::from_secs(24 * 60 * 60);

impl Director<'_> {
    /// Sets lblc's `lblc_expiration` (default 24 h): cache entries unused this long are
    /// collected.
    pub fn set_lblc_expiration(&mut self, d: Duration) {
        self.lblc_expiration = d;
    }

    /// Sets lblcr's `lblcr_expiration` (default 24 h): a set unchanged this long loses its most
    /// loaded member, and unused entries are collected.
    pub fn set_lblcr_expiration(&mut self, d: Duration) {
        self.lblcr_expiration = d;
    }

    /// When [`Director::handle_timeout`] must next be called; `None` when no timer is due until
    /// counters move (a packet is counted). Call it after every `count_*`/`bind_conn` burst,
    /// configuration change and `handle_timeout`.
    ///
    /// * The rate estimator (2 s) is due while some rate is still decaying or a counter moved
    ///   since its last run. Once every average is at rest and nothing was counted since
    ///   ([`RateEstimator::is_steady`](crate::stats::RateEstimator::is_steady)), further runs would change nothing: it goes idle (no
    ///   service at all is the simplest case). An idle estimator notices new traffic here, by
    ///   comparing each service's counters with those its estimator last saw (every server's
    ///   counters move with its service's), without any per-packet work; it then answers the
    ///   time of the last `handle_timeout` call, already passed, so the caller calls
    ///   `handle_timeout` at once and the estimator resumes on its 2 s grid (see
    ///   [`handle_timeout`](Director::handle_timeout)).
    /// * lblc/lblcr garbage collection (60 s) is due while some cache entry may exist: entries
    ///   were left by the last collection, or an lblc/lblcr service counted a new connection
    ///   since (caches are only filled when connections are scheduled).
    pub fn poll_timeout(&mut self) -> Option<Instant> {
        if self.idle.estimator && self.counters_moved() {
            self.idle.estimator = false;
            self.idle.woken = true;
        }
        let est = if self.idle.woken {
            Some(self.idle.last_call)
        } else {
            (!self.idle.estimator).then_some(self.next_estimate)
        };
        let gc = (!self.idle.gc).then_some(self.next_gc);
        match (est, gc) {
            (Some(e), Some(g)) => Some(e.min(g)),
            (e, g) => e.or(g),
        }
    }

    /// Runs the timers due at `now`: the rate estimator (every 2 s, catching up at most 8
    /// missed periods) and lblc/lblcr garbage collection (every 60 s). Calling it early or
    /// when nothing is due is harmless.
    ///
    /// An idle estimator (see [`poll_timeout`](Director::poll_timeout)) skips its runs instead
    /// of doing them, keeping the 2 s grid: with every average at a fixed point of the
    /// zero-traffic step and no counter moved, each skipped run would have computed exactly
    /// what is there (zero deltas keep zero rates), so the rates equal those of an estimator
    /// run every 2 s. When traffic arrived while it was idle:
    /// * if `poll_timeout` reported it, this call follows it at once (as documented), so the
    ///   traffic arrived at about `now`: the runs due by `now` saw none of it and are skipped,
    ///   and the first run after `now` counts it — as a timer running every 2 s would have;
    /// * otherwise (a caller that calls `handle_timeout` on its own schedule), the traffic is
    ///   counted by the first run due since the previous call, as before idling was possible.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.idle.last_call = self.idle.last_call.max(now);
        if core::mem::take(&mut self.idle.woken) {
            self.skip_estimates(now);
        } else if self.idle.estimator {
            if self.counters_moved() {
                self.idle.estimator = false;
            } else {
                self.skip_estimates(now);
            }
        }
        let mut runs = 0;
        while !self.idle.estimator && self.next_estimate <= now && runs < 8 {
            self.idle.estimator = self.estimate();
            self.next_estimate += ESTIMATOR_PERIOD;
            runs += 1;
        }
        if self.idle.estimator {
            // At rest: the remaining runs due would change nothing.
            self.skip_estimates(now);
        } else if self.next_estimate <= now {
            self.next_estimate = now + ESTIMATOR_PERIOD;
        }
        if self.next_gc <= now {
            self.idle.gc = !self.gc(now);
            self.next_gc = now + GC_PERIOD;
        }
    }

    /// Moves the estimator's next run to the first point of its 2 s grid after `now`.
    fn skip_estimates(&mut self, now: Instant) {
        if self.next_estimate <= now {
            let p = ESTIMATOR_PERIOD.millis();
            let missed = (now.millis() - self.next_estimate.millis()) / p + 1;
            self.next_estimate += Duration::from_millis(missed.saturating_mul(p));
        }
    }

    /// Whether some service's counters moved since its estimator last ran. Every counter of a
    /// server moves with its service's (`bind_conn`, `count_*`), so the services suffice.
    fn counters_moved(&self) -> bool {
        self.services
            .get(..self.svc_high)
            .unwrap_or(&[])
            .iter()
            .filter_map(ServiceSlot::get)
            .any(|s| !s.rates.unchanged(&s.stats))
    }

    /// One estimator period over every service and server. Returns whether every estimator is
    /// now at rest (nothing to do until counters move). A new connection of an lblc/lblcr
    /// service may have filled a cache entry: garbage collection is due again.
    fn estimate(&mut self) -> bool {
        let mut steady = true;
        // Only the slots up to the highest service ever filled (and their server blocks) can
        // hold anything: the default limits have 65,472 server slots, ~8 MB to walk.
        let high = self.svc_high.min(self.services.len());
        let servers = (high * self.limits.servers_per_service).min(self.servers.len());
        for svc in self.services[..high]
            .iter_mut()
            .filter_map(ServiceSlot::get_mut)
        {
            let stats = svc.stats;
            if is_cached(svc.config.scheduler) && svc.rates.new_conns(&stats) {
                self.idle.gc = false;
            }
            svc.rates.estimate(&stats);
            steady &= svc.rates.is_steady();
        }
        for (d, e) in self.servers[..servers]
            .iter()
            .zip(self.server_rates.iter_mut())
        {
            if !d.is_free() {
                e.estimate(&d.stats);
                steady &= e.is_steady();
            }
        }
        steady
    }

    /// lblc/lblcr garbage collection. Returns whether some cache entry is left.
    fn gc(&mut self, now: Instant) -> bool {
        let n = self.limits.lblc_entries_per_service;
        let mut left = false;
        for s in 0..self.limits.services {
            match self.svc(s).map(|v| v.config.scheduler) {
                Some(SchedulerKind::Lblc) => {
                    let cache = &mut self.lblc[s * n..(s + 1) * n];
                    lblc::gc(cache, now, self.lblc_expiration);
                    left = left || cache.iter().any(|e| !e.is_empty());
                }
                Some(SchedulerKind::Lblcr) => {
                    let cache = &mut self.lblcr[s * n..(s + 1) * n];
                    lblcr::gc(cache, now, self.lblcr_expiration);
                    left = left || cache.iter().any(|e| !e.is_empty());
                }
                _ => {}
            }
        }
        left
    }
}

/// Whether a scheduler keeps a cache that garbage collection trims.
fn is_cached(kind: SchedulerKind) -> bool {
    matches!(kind, SchedulerKind::Lblc | SchedulerKind::Lblcr)
}

/// Which of the director's timers are idle (nothing due until counters move).
#[derive(Debug, Clone, Copy)]
pub(super) struct Idle {
    /// Every estimator was at rest after its last run (or there is nothing to estimate).
    estimator: bool,
    /// `poll_timeout` saw counters move while the estimator was idle: the next
    /// `handle_timeout` is the one it asked for at once.
    woken: bool,
    /// The latest `now` given to `handle_timeout`.
    last_call: Instant,
    /// The last garbage collection left no lblc/lblcr cache entry, and no lblc/lblcr service
    /// has counted a connection since the estimator last looked.
    gc: bool,
}

impl Idle {
    /// A new director: no service, no cache entry.
    pub(super) const NEW: Idle = Idle {
        estimator: true,
        woken: false,
        last_call: Instant::ZERO,
        gc: true,
    };
}

#[cfg(test)]
#[path = "timer_tests.rs"]
mod tests;
