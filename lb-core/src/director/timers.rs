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

    /// When [`Director::handle_timeout`] must next be called.
    pub fn poll_timeout(&self) -> Instant {
        self.next_estimate.min(self.next_gc)
    }

    /// Runs the timers due at `now`: the rate estimator (every 2 s, catching up at most 8
    /// missed periods) and lblc/lblcr garbage collection (every 60 s).
    pub fn handle_timeout(&mut self, now: Instant) {
        let mut runs = 0;
        while self.next_estimate <= now && runs < 8 {
            self.estimate();
            self.next_estimate += ESTIMATOR_PERIOD;
            runs += 1;
        }
        if self.next_estimate <= now {
            self.next_estimate = now + ESTIMATOR_PERIOD;
        }
        if self.next_gc <= now {
            self.gc(now);
            self.next_gc = now + GC_PERIOD;
        }
    }

    fn estimate(&mut self) {
        for svc in self.services.iter_mut().filter_map(ServiceSlot::get_mut) {
            let stats = svc.stats;
            svc.rates.estimate(&stats);
        }
        for (d, e) in self.servers.iter().zip(self.server_rates.iter_mut()) {
            if !d.is_free() {
                e.estimate(&d.stats);
            }
        }
    }

    fn gc(&mut self, now: Instant) {
        let n = self.limits.lblc_entries_per_service;
        for s in 0..self.limits.services {
            match self.svc(s).map(|v| v.config.scheduler) {
                Some(SchedulerKind::Lblc) => {
                    lblc::gc(
                        &mut self.lblc[s * n..(s + 1) * n],
                        now,
                        self.lblc_expiration,
                    );
                }
                Some(SchedulerKind::Lblcr) => {
                    lblcr::gc(
                        &mut self.lblcr[s * n..(s + 1) * n],
                        now,
                        self.lblcr_expiration,
                    );
                }
                _ => {}
            }
        }
    }
}
