//! Counters per service and per real server, and IPVS's rate estimator (docs/ipvs-semantics.md §4.5
//! `run_estimation`: cps, pps and bps over a 2 s period, smoothed).
//!
//! The estimator is the kernel's `ip_vs_est.c`, to the bit: every [`ESTIMATOR_PERIOD`] (2 s)
//! the counter deltas are scaled (connections and packets by 2^10, bytes by 2^5, each divided by
//! the 2 s period, i.e. shifted by 9 and 4) and folded into an exponentially weighted moving
//! average with weight ¼: `avg += (rate - avg) >> 2`, in signed 64-bit arithmetic with an
//! arithmetic shift. Reading decodes with rounding: `(avg + 0x1FF) >> 10` for cps and pps,
//! `(avg + 0xF) >> 5` for bps — what `ipvsadm -L --rate` prints. The kernel spreads the work of
//! one period over 50 ticks; lb-core does it all at once when the director's timer fires
//! (`Director::handle_timeout`), which gives the same numbers, and skips the runs that could
//! change nothing: no counter moved and every average at rest ([`RateEstimator::is_steady`]).
//!
//! Sizes: [`Stats`] is 40 bytes, [`RateEstimator`] 80 bytes, [`Rates`] 40 bytes.

use crate::time::Duration;

/// Traffic counters of a service or a real server, as `ipvsadm -L --stats` shows them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stats {
    /// Connections scheduled.
    pub conns: u64,
    /// Packets client → server.
    pub in_pkts: u64,
    /// Packets server → client.
    pub out_pkts: u64,
    /// Bytes client → server.
    pub in_bytes: u64,
    /// Bytes server → client.
    pub out_bytes: u64,
}

impl Stats {
    /// All zero.
    pub const fn new() -> Self {
        Stats {
            conns: 0,
            in_pkts: 0,
            out_pkts: 0,
            in_bytes: 0,
            out_bytes: 0,
        }
    }
}

/// How often the rate estimator runs (the kernel's `IPVS_EST_*` period: 2 s).
pub const ESTIMATOR_PERIOD: Duration = Duration::from_secs(2);

/// Decoded rates, per second, as `ipvsadm -L --rate` shows them (CPS, InPPS, OutPPS, InBPS,
/// OutBPS; "BPS" is bytes per second).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Rates {
    /// New connections per second.
    pub cps: u64,
    /// Packets per second, client → server.
    pub in_pps: u64,
    /// Packets per second, server → client.
    pub out_pps: u64,
    /// Bytes per second, client → server.
    pub in_bps: u64,
    /// Bytes per second, server → client.
    pub out_bps: u64,
}

/// IPVS's `struct ip_vs_estimator`: the counters seen at the last period and the scaled
/// averages. Call [`RateEstimator::estimate`] once per [`ESTIMATOR_PERIOD`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RateEstimator {
    last: Stats,
    /// Scaled by 2^10.
    cps: i64,
    /// Scaled by 2^10.
    in_pps: i64,
    /// Scaled by 2^10.
    out_pps: i64,
    /// Scaled by 2^5.
    in_bps: i64,
    /// Scaled by 2^5.
    out_bps: i64,
}

/// One EWMA step: `avg += (((now - last) << shift) - avg) >> 2`, as `estimation_timer` does.
fn ewma(avg: &mut i64, last: &mut u64, now: u64, shift: u32) {
    let rate = now.wrapping_sub(*last).wrapping_shl(shift) as i64;
    *last = now;
    *avg = avg.wrapping_add(rate.wrapping_sub(*avg) >> 2);
}

impl RateEstimator {
    /// An estimator with all rates 0 whose zero point is all-zero counters.
    pub const NEW: RateEstimator = RateEstimator {
        last: Stats::new(),
        cps: 0,
        in_pps: 0,
        out_pps: 0,
        in_bps: 0,
        out_bps: 0,
    };

    /// Runs one 2 s estimation period over the current counters `s`.
    pub fn estimate(&mut self, s: &Stats) {
        ewma(&mut self.cps, &mut self.last.conns, s.conns, 9);
        ewma(&mut self.in_pps, &mut self.last.in_pkts, s.in_pkts, 9);
        ewma(&mut self.out_pps, &mut self.last.out_pkts, s.out_pkts, 9);
        ewma(&mut self.in_bps, &mut self.last.in_bytes, s.in_bytes, 4);
        ewma(&mut self.out_bps, &mut self.last.out_bytes, s.out_bytes, 4);
    }

    /// Zeroes the rates and takes `s` as the new zero point (`ip_vs_zero_estimator`); call it
    /// when the counters are zeroed (`ipvsadm -Z`).
    pub fn reset(&mut self, s: &Stats) {
        *self = RateEstimator {
            last: *s,
            ..RateEstimator::NEW
        };
    }

    /// Whether no counter moved since the last [`estimate`](Self::estimate) (or
    /// [`reset`](Self::reset)): `s` equals the counters it saw then.
    pub fn unchanged(&self, s: &Stats) -> bool {
        self.last == *s
    }

    /// Whether the connection counter moved since the last [`estimate`](Self::estimate).
    pub(crate) fn new_conns(&self, s: &Stats) -> bool {
        self.last.conns != s.conns
    }

    /// Whether one more period with no traffic would leave the estimator exactly as it is: every
    /// average is a fixed point of the zero-delta step `avg += (0 - avg) >> 2`, i.e.
    /// `(-avg) >> 2 == 0`, i.e. `-4 < avg ≤ 0`. A positive average always decays to 0 (it
    /// loses `ceil(avg / 4) ≥ 1` per period); a negative one (counters that went back) stops
    /// between -3 and 0. With [`unchanged`](Self::unchanged) counters, any number of skipped
    /// periods then gives the same state as running them.
    pub fn is_steady(&self) -> bool {
        let fixed = |v: i64| v.wrapping_neg() >> 2 == 0;
        fixed(self.cps)
            && fixed(self.in_pps)
            && fixed(self.out_pps)
            && fixed(self.in_bps)
            && fixed(self.out_bps)
    }

    /// The decoded rates (`ip_vs_read_estimator`).
    pub fn rates(&self) -> Rates {
        let dec = |v: i64, round: i64, shift: u32| (v.wrapping_add(round) >> shift).max(0) as u64;
        Rates {
            cps: dec(self.cps, 0x1FF, 10),
            in_pps: dec(self.in_pps, 0x1FF, 10),
            out_pps: dec(self.out_pps, 0x1FF, 10),
            in_bps: dec(self.in_bps, 0xF, 5),
            out_bps: dec(self.out_bps, 0xF, 5),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steady_rate_converges_like_the_kernel() {
        // 100 connections and 1000 packets (of 500 bytes) per second, 2 s per period.
        let mut e = RateEstimator::NEW;
        let mut s = Stats::new();
        // First period by hand: rate = 200 << 9 = 102400; avg = 102400 >> 2 = 25600.
        s.conns += 200;
        e.estimate(&s);
        assert_eq!(e.cps, 25600);
        assert_eq!(e.rates().cps, (25600 + 0x1FF) >> 10); // 25
        for _ in 0..60 {
            s.conns += 200;
            s.in_pkts += 2000;
            s.in_bytes += 1_000_000;
            e.estimate(&s);
        }
        let r = e.rates();
        assert_eq!(r.cps, 100);
        assert_eq!(r.in_pps, 1000);
        assert_eq!(r.in_bps, 500_000);
        assert_eq!(r.out_pps, 0);
        // Traffic stops: the average decays by ¾ per period.
        let before = e.cps;
        e.estimate(&s);
        assert_eq!(e.cps, before + ((0 - before) >> 2));
    }

    #[test]
    fn reset_zeroes_rates_and_rebases() {
        let mut e = RateEstimator::NEW;
        let mut s = Stats::new();
        s.conns = 1000;
        e.estimate(&s);
        assert!(e.rates().cps > 0);
        s = Stats::new();
        e.reset(&s);
        assert_eq!(e.rates(), Rates::default());
        s.conns = 2;
        e.estimate(&s);
        assert_eq!(e.cps, (2 << 9) >> 2);
    }
}
