//! Passive signals (beyond keepalived; HAProxy's `observe layer4`, DPVS's dest-check): what the
//! datapath sees of a real server's answers to forwarded SYNs. The first SYN of each new
//! connection counts (a client's retransmissions hit the existing entry and do not); the
//! server's SYN-ACK resets the counts; a RST from the server in SYN_RECV counts as refused. A trigger is a run of `refused_limit` refusals, or of
//! `unanswered_limit` SYNs with no handshake completed `syn_deadline` after the last of them.

use super::config::PassiveConfig;
use super::state::Reason;
use crate::time::Instant;

/// One checked server's passive counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Passive {
    /// RSTs from the server in SYN_RECV in a row.
    refused: u16,
    /// SYNs forwarded since the last completed handshake or RST.
    unanswered: u16,
    /// When the `unanswered_limit`-th of them was forwarded.
    nth_at: Option<Instant>,
}

impl Passive {
    pub(crate) const NEW: Passive = Passive {
        refused: 0,
        unanswered: 0,
        nth_at: None,
    };

    /// A SYN was forwarded to the server at `now`: the time the run is due, when this SYN
    /// completes it.
    pub(crate) fn on_syn(&mut self, now: Instant, cfg: &PassiveConfig) -> Option<Instant> {
        self.unanswered = self.unanswered.saturating_add(1);
        if self.unanswered == cfg.unanswered_limit {
            self.nth_at = Some(now);
            return Some(now + cfg.syn_deadline);
        }
        None
    }

    /// The server answered a SYN with a SYN-ACK (`ok`) or a RST: the trigger's reason, when
    /// this completes a run of refusals.
    pub(crate) fn on_answer(&mut self, ok: bool, cfg: &PassiveConfig) -> Option<Reason> {
        self.unanswered = 0;
        self.nth_at = None;
        if ok {
            self.refused = 0;
            return None;
        }
        self.refused = self.refused.saturating_add(1);
        if self.refused >= cfg.refused_limit {
            let n = self.refused;
            self.refused = 0;
            return Some(Reason::PassiveRefused(n));
        }
        None
    }

    /// When an unanswered run is due.
    pub(crate) fn deadline(&self, cfg: &PassiveConfig) -> Option<Instant> {
        self.nth_at.map(|t| t + cfg.syn_deadline)
    }

    /// At `now`: the trigger's reason if an unanswered run is due.
    pub(crate) fn expire(&mut self, now: Instant, cfg: &PassiveConfig) -> Option<Reason> {
        let due = self.deadline(cfg)?;
        if now < due {
            return None;
        }
        let n = self.unanswered;
        *self = Passive::NEW;
        Some(Reason::PassiveUnanswered(n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::Duration;

    fn cfg() -> PassiveConfig {
        PassiveConfig {
            refused_limit: 2,
            unanswered_limit: 3,
            syn_deadline: Duration::from_secs(3),
            ..PassiveConfig::default()
        }
    }

    #[test]
    fn refusals_in_a_row_trigger_and_a_handshake_resets() {
        let mut p = Passive::NEW;
        assert_eq!(p.on_answer(false, &cfg()), None);
        assert_eq!(p.on_answer(true, &cfg()), None);
        assert_eq!(p.on_answer(false, &cfg()), None);
        assert_eq!(p.on_answer(false, &cfg()), Some(Reason::PassiveRefused(2)));
        assert_eq!(p.on_answer(false, &cfg()), None, "counting starts again");
    }

    #[test]
    fn unanswered_syns_are_due_a_deadline_after_the_last_of_the_run() {
        let t = Instant::from_millis;
        let mut p = Passive::NEW;
        assert_eq!(p.on_syn(t(0), &cfg()), None);
        assert_eq!(p.on_syn(t(100), &cfg()), None);
        assert_eq!(p.on_syn(t(200), &cfg()), Some(t(3_200)));
        assert_eq!(p.expire(t(3_199), &cfg()), None);
        // A fourth SYN does not move the deadline of the run.
        assert_eq!(p.on_syn(t(300), &cfg()), None);
        assert_eq!(
            p.expire(t(3_200), &cfg()),
            Some(Reason::PassiveUnanswered(4))
        );
        assert_eq!(p.deadline(&cfg()), None);
        // An answer before the deadline cancels the run.
        for i in 0..3 {
            p.on_syn(t(4_000 + i), &cfg());
        }
        p.on_answer(true, &cfg());
        assert_eq!(p.expire(t(10_000), &cfg()), None);
    }
}
