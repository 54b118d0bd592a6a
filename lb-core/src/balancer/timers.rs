//! Timers: [`Balancer::poll_timeout`] says when [`Balancer::handle_timeout`] is next due, which
//! expires idle entries (a template that still controls connections is deferred), runs the
//! director's timers and re-evaluates the defences.

use crate::conn::{Entry, EXPIRE_BATCH};
use crate::time::{Duration, Instant};

use super::{Balancer, DEFENCE_PERIOD};

/// How long a template that still controls connections is kept when its timer fires
/// (docs/ipvs-semantics.md §2.7, "Expiry while still needed").
pub const TEMPLATE_DEFER: Duration = Duration::from_secs(60);

impl Balancer<'_> {
    /// When [`handle_timeout`](Balancer::handle_timeout) must next be called: the earliest of
    /// the connection table's next expiry, the rate estimator's next run, lblc/lblcr garbage
    /// collection, (with secure_tcp or drop_entry in an automatic mode) the defences'
    /// 1 s re-evaluation, the sync master's next message ([`poll_sync`](Balancer::poll_sync)),
    /// and the health checker's next probe, probe deadline, passive deadline or slow-start
    /// step. A time already passed means "now".
    ///
    /// Call it after every [`process`](Balancer::process) /
    /// [`process_burst`](Balancer::process_burst), [`handle_timeout`](Balancer::handle_timeout)
    /// and [`apply`](Balancer::apply) (or `director_mut` change), and sleep until the time it
    /// gives or the next packet, whichever comes first. It takes `&mut self` (as quinn's
    /// `poll_timeout` does): it files re-armed entries by their real deadlines (work
    /// `handle_timeout` would do later; only the order in which entries due in the same tick
    /// expire can differ), and notes when the idle estimator sees traffic again.
    ///
    /// `None`: nothing is due until a packet arrives — no connection, rates decayed to zero
    /// with nothing counted since, no lblc/lblcr cache entry, no automatic defence. Sleep until
    /// the next packet (an idle microcontroller can stop its clock).
    ///
    /// Accuracy: never late, and never early — the connection table answers an expiry time
    /// exactly, to its 1/16 s tick (deadlines are rounded up to it), however often packets
    /// re-armed the entry. One exception: a table whose every entry expires beyond the wheel's
    /// span (buckets / 16 s), with more than 32 in its farthest bucket, wakes once per span
    /// to file them again. The estimator, after traffic following an idle period, asks for
    /// one immediate call to resume on its 2 s grid.
    pub fn poll_timeout(&mut self) -> Option<Instant> {
        let mut t = self.director.poll_timeout();
        if let Some(h) = self.health.next {
            t = Some(t.map_or(h, |t| t.min(h)));
        }
        if self.settings.defence_timer() {
            t = Some(t.map_or(self.next_defence, |t| t.min(self.next_defence)));
        }
        if let Some(f) = self.sync.next_flush() {
            t = Some(t.map_or(f, |t| t.min(f)));
        }
        // The table is only searched up to the other timers' earliest.
        if let Some(c) = self.conns.next_deadline_before(t) {
            t = Some(c);
        }
        t
    }

    /// Expires idle entries, runs the director's timers (rate estimator, lblc/lblcr garbage
    /// collection) and the defences. Call when `poll_timeout()` has passed (calling it more
    /// often is harmless).
    pub fn handle_timeout(&mut self, now: Instant) {
        self.expire(now);
        self.director.handle_timeout(now);
        if self.health.next.is_some_and(|t| t <= now) {
            self.health_timeout(now);
        }
        if now >= self.next_defence {
            self.next_defence = now + DEFENCE_PERIOD;
            self.update_defence();
            if self.dropping {
                self.drop_entries(now);
            }
        }
    }

    /// Expires the entries due by `now` a stage at a time (`ConnTable::expire_batch`): the
    /// table takes each stage's removed entries out at the index slots it found while staging,
    /// then their counters are released together.
    fn expire(&mut self, now: Instant) {
        let mut gone = [Entry::ZERO; EXPIRE_BATCH];
        let keep = |e: &mut Entry| {
            if e.is_template() && e.n_control() > 0 {
                // Still controls connections: deferred in 60 s steps (docs/ipvs-semantics.md §2.7).
                e.set_timeout(TEMPLATE_DEFER);
                Some(now + TEMPLATE_DEFER)
            } else {
                None
            }
        };
        while let Some(n) = self.conns.expire_batch(now, &mut gone, keep) {
            for e in gone.iter().take(n) {
                self.released(e);
            }
        }
    }
}

#[cfg(test)]
#[path = "timer_tests.rs"]
mod tests;
