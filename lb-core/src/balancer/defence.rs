//! The defences against a filling table (docs/ipvs-semantics.md §4.6): the automatic `secure_tcp` and
//! `drop_entry` levels, re-evaluated against the table's fill, and `drop_entry`'s scan with
//! IPVS's rate rule.

use crate::addr::Protocol;
use crate::conn::{ConnFlags, Handle};
use crate::tcp::TcpState;
use crate::time::{Duration, Instant};

use super::{Balancer, DefenceMode};

/// How often the defence levels are re-evaluated (IPVS's `update_defense_level`: 1 s).
pub const DEFENCE_PERIOD: Duration = Duration::from_secs(1);

impl Balancer<'_> {
    /// Re-evaluates the automatic defence modes against the table's fill.
    pub(super) fn update_defence(&mut self) {
        let cap = self.conns.capacity().max(1);
        let fill = self.conns.len() * 100 / cap;
        let high = fill >= usize::from(self.settings.defence_fill_percent);
        let level = |mode: &mut DefenceMode| -> bool {
            match *mode {
                DefenceMode::Auto if high => *mode = DefenceMode::AutoActive,
                DefenceMode::AutoActive if !high => *mode = DefenceMode::Auto,
                _ => {}
            }
            mode.active()
        };
        self.dos = level(&mut self.settings.secure_tcp);
        self.dropping = level(&mut self.settings.drop_entry);
    }

    /// IPVS's `ip_vs_random_dropentry`, one pass: scan 1/32 of the table (docs/ipvs-semantics.md §4.6) and
    /// drop half-open TCP entries (SYN_RECV, SYNACK) and non-assured templates always, and
    /// ESTABLISHED TCP entries, UDP entries and one-packet services' templates by the rate rule.
    /// Entries that control others are never dropped.
    pub(super) fn drop_entries(&mut self, now: Instant) {
        let cap = self.conns.capacity();
        if cap == 0 {
            return;
        }
        let span = (cap / 32).max(1);
        let start = self.drop_cursor % cap;
        self.drop_cursor = (start + span) % cap;
        for i in start..(start + span).min(cap) {
            let Some(h) = Handle::from_index(i) else {
                break;
            };
            let Some(e) = self.conns.get(h) else { continue };
            let last_use = self.conns.deadline(h).map_or(now, |d| {
                Instant::from_millis(d.millis().saturating_sub(e.timeout().millis()))
            });
            let rate = DropRule::Rate {
                last_use,
                in_pkts: e.in_pkts,
            };
            let rule = if e.is_template() {
                if e.n_control() > 0 {
                    DropRule::Keep
                } else if self
                    .director
                    .service(e.service)
                    .is_some_and(|s| s.config.one_packet)
                {
                    rate
                } else if e.flags.contains(ConnFlags::ASSURED) {
                    DropRule::Keep
                } else {
                    DropRule::Always
                }
            } else {
                match (e.proto(), TcpState::from_u8(e.state)) {
                    (Protocol::Tcp, Some(TcpState::SynRecv | TcpState::SynAck)) => DropRule::Always,
                    (Protocol::Tcp, Some(TcpState::Established)) | (Protocol::Udp, _) => rate,
                    _ => DropRule::Keep,
                }
            };
            let drop = match rule {
                DropRule::Keep => false,
                DropRule::Always => true,
                DropRule::Rate { last_use, in_pkts } => self.todrop(now, last_use, in_pkts),
            };
            if drop {
                self.remove_entry(h);
                self.counters.defence_drops += 1;
            }
        }
    }

    /// IPVS's `todrop_entry` rate rule: an entry idle for at least 60 s with `in_pkts` = i in
    /// 1..=8 is a candidate, and every i-th candidate with that count is dropped (one counter
    /// per i, shared by the whole table).
    fn todrop(&mut self, now: Instant, last_use: Instant, in_pkts: u8) -> bool {
        if now.saturating_since(last_use) < Duration::from_secs(60) {
            return false;
        }
        let i = usize::from(in_pkts);
        if i == 0 || i > 8 {
            return false;
        }
        self.todrop_counter[i] -= 1;
        if self.todrop_counter[i] > 0 {
            return false;
        }
        self.todrop_counter[i] = i as i8;
        true
    }
}

/// How the drop_entry defence treats an entry (docs/ipvs-semantics.md §4.6).
enum DropRule {
    /// Never dropped.
    Keep,
    /// Dropped whenever scanned.
    Always,
    /// Dropped by IPVS's rate rule (idle ≥ 60 s, every i-th with `in_pkts` = i).
    Rate { last_use: Instant, in_pkts: u8 },
}
