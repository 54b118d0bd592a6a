//! The limit on generated replies (issue "Hostile traffic: the balancer must not be a
//! reflector"): every packet lb-core builds itself — TCP RST, ICMP and ICMPv6 errors, echo
//! replies — spends one token of a global bucket and one of its destination prefix's bucket,
//! or is not sent (a counted drop, [`DropReason::ReplyRateLimited`]).
//!
//! Linux's defaults and arithmetic, in integers (lb-core has no floats and reads no clock: time
//! is the `now` of [`Balancer::process`]):
//! - **global**, `net.ipv4.icmp_msgs_per_sec` (1000) and `icmp_msgs_burst` (50)
//!   ([`Settings::reply_rate_per_sec`], [`Settings::reply_burst`]): credit grows by
//!   `rate` tokens a second, kept in thousandths so nothing is lost to rounding, up to `burst`.
//!   Linux (6.11 on) also randomises this bucket against side channels; ours is deterministic.
//! - **per destination prefix**, `icmp_ratelimit` (1000 ms) with `inet_peer_xrlim_allow`'s
//!   burst of `XRLIM_BURST_FACTOR` (6) ([`Settings::reply_peer_interval_ms`]): credit grows by
//!   a millisecond a millisecond, up to 6 intervals; a reply costs one interval. Linux keys this
//!   by the exact peer address; we key it by the /24 (IPv4) or /64 (IPv6) so a spoofer cannot
//!   spread over the addresses of one network, in a fixed table of [`PEER_SLOTS`] buckets
//!   inside the balancer (no caller memory), indexed by a keyed hash (SipHash under the
//!   connection table's secret, so nobody can aim prefixes at one slot). Prefixes that hash to
//!   the same slot share its bucket: a collision only makes the limit stricter, never looser.
//!   A bucket starts full (as a new `inet_peer` does).
//!
//! A reply must pass both; tokens are taken from both or neither. 0 in `reply_rate_per_sec` or
//! `reply_peer_interval_ms` turns that limit off.
//!
//! [`DropReason::ReplyRateLimited`]: crate::DropReason::ReplyRateLimited
//! [`Balancer::process`]: crate::Balancer::process

use core::net::IpAddr;

use crate::hash::{siphash13, SipKey};
use crate::time::Instant;

use super::Settings;

/// Buckets in the per-prefix table.
pub const PEER_SLOTS: usize = 64;

/// Linux's `XRLIM_BURST_FACTOR`: a peer may get this many messages at once.
pub const PEER_BURST: u64 = 6;

/// A token bucket: `credit` in the bucket's own unit, as of `last` (milliseconds).
#[derive(Debug, Clone, Copy)]
struct Bucket {
    credit: u64,
    last: u64,
    /// Never used: starts full.
    fresh: bool,
}

impl Bucket {
    const FRESH: Bucket = Bucket {
        credit: 0,
        last: 0,
        fresh: true,
    };

    /// The credit at `now`: `per_ms` more a millisecond since `last`, at most `cap`.
    fn credit_at(&self, now: u64, per_ms: u64, cap: u64) -> u64 {
        if self.fresh {
            return cap;
        }
        let elapsed = now.saturating_sub(self.last);
        self.credit
            .saturating_add(elapsed.saturating_mul(per_ms))
            .min(cap)
    }
}

/// The global bucket and the per-prefix table.
#[derive(Debug, Clone)]
pub(super) struct ReplyLimiter {
    key: SipKey,
    global: Bucket,
    peers: [Bucket; PEER_SLOTS],
}

impl ReplyLimiter {
    pub(super) fn new(key: SipKey) -> Self {
        ReplyLimiter {
            key,
            global: Bucket::FRESH,
            peers: [Bucket::FRESH; PEER_SLOTS],
        }
    }

    /// The slot of `dst`'s prefix (/24, /64).
    fn slot(&self, dst: IpAddr) -> usize {
        let mut data = [0u8; 9];
        let n = match dst {
            IpAddr::V4(a) => {
                data[0] = 4;
                data[1..4].copy_from_slice(&a.octets()[..3]);
                4
            }
            IpAddr::V6(a) => {
                data[0] = 6;
                data[1..9].copy_from_slice(&a.octets()[..8]);
                9
            }
        };
        (siphash13(self.key, &data[..n]) % PEER_SLOTS as u64) as usize
    }

    /// Whether a reply to `dst` may go out at `now`; if so, its tokens are taken.
    pub(super) fn allow(&mut self, s: &Settings, now: Instant, dst: IpAddr) -> bool {
        let now = now.millis();
        // Global: thousandths of a token; `rate` thousandths a millisecond.
        let rate = u64::from(s.reply_rate_per_sec);
        let global = (rate != 0).then(|| {
            let cap = u64::from(s.reply_burst).saturating_mul(1000);
            self.global.credit_at(now, rate, cap)
        });
        // Per prefix: milliseconds of credit; one interval a reply.
        let interval = u64::from(s.reply_peer_interval_ms);
        let slot = self.slot(dst);
        let peer = (interval != 0)
            .then(|| self.peers[slot].credit_at(now, 1, PEER_BURST.saturating_mul(interval)));
        if global.is_some_and(|c| c < 1000) || peer.is_some_and(|c| c < interval) {
            return false;
        }
        if let Some(c) = global {
            self.global = Bucket {
                credit: c - 1000,
                last: now,
                fresh: false,
            };
        }
        if let Some(c) = peer {
            self.peers[slot] = Bucket {
                credit: c - interval,
                last: now,
                fresh: false,
            };
        }
        true
    }
}
