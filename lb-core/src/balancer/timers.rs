//! Timers: [`Balancer::poll_timeout`] says when [`Balancer::handle_timeout`] is next due, which
//! expires idle entries (a template that still controls connections is deferred), runs the
//! director's timers and re-evaluates the defences.

use crate::time::{Duration, Instant};

use super::{Balancer, DEFENCE_PERIOD};

/// How long a template that still controls connections is kept when its timer fires
/// (docs/ipvs-semantics.md §2.7, "Expiry while still needed").
pub const TEMPLATE_DEFER: Duration = Duration::from_secs(60);

impl Balancer<'_> {
    /// When [`handle_timeout`](Balancer::handle_timeout) must next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut t = self.director.poll_timeout();
        if let Some(c) = self.conns.next_deadline() {
            t = t.min(c);
        }
        if self.settings.defence_timer() {
            t = t.min(self.next_defence);
        }
        Some(t)
    }

    /// Expires idle entries, runs the director's timers (rate estimator, lblc/lblcr garbage
    /// collection) and the defences. Call when `poll_timeout()` has passed (calling it more
    /// often is harmless).
    pub fn handle_timeout(&mut self, now: Instant) {
        self.expire(now);
        self.director.handle_timeout(now);
        if now >= self.next_defence {
            self.next_defence = now + DEFENCE_PERIOD;
            self.update_defence();
            if self.dropping {
                self.drop_entries(now);
            }
        }
    }

    fn expire(&mut self, now: Instant) {
        while let Some(h) = self.conns.poll_expired(now) {
            let Some(e) = self.conns.get_mut(h) else {
                continue;
            };
            if e.is_template() && e.n_control() > 0 {
                // Still controls connections: deferred in 60 s steps (docs/ipvs-semantics.md §2.7).
                e.set_timeout(TEMPLATE_DEFER);
                self.conns.touch(h, now + TEMPLATE_DEFER);
                continue;
            }
            self.remove_entry(h);
        }
    }
}
