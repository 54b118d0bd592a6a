//! `wrr`: weighted round robin (docs/ipvs-semantics.md §5.2, the kernel's `ip_vs_wrr.c`).
//!
//! IPVS semantics. State: cursor `cl` (initially the list head), `di` = gcd of the positive
//! weights (1 if none), `mw` = max weight − (di − 1), `cw` = current weight.
//!
//! - Bound at `-A` to an empty list: di = 1, mw = 0, cw = 0 ([`WrrState::EMPTY`]). Each `-a`,
//!   `-d` and `-e` runs [`WrrState::dest_changed`]: cl to the head, di and mw recomputed, and
//!   `cw = mw` if cw > mw or cw = 0, else if di > 1 `cw = ⌊cw/di⌋·di + 1`. A service built by
//!   successive `-a` therefore starts at cw = 1: its first pass visits every server of weight
//!   ≥ 1 once, then the weighted pattern begins. Changing a service's scheduler to wrr runs
//!   [`WrrState::init`] over the current list instead (cw = mw).
//! - A decision scans from the element after cl to the end for the first server with weight
//!   ≥ cw that is not OVERLOAD; at the end of the list `cw -= di`, wrapping to mw when ≤ 0, and
//!   scans again from the head. It fails once every server was checked at the lowest level: the
//!   kernel's "last pass" flag and its stop marker at the starting element are reproduced
//!   exactly, including where the cursor is left on failure.
//! - The period is Σ weight / gcd decisions.
//!
//! No deliberate difference.

use crate::server::{DestList, ServerId};

/// wrr's state (`struct ip_vs_wrr_mark`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WrrState {
    /// Cursor: 0 is the list head, `k` the server at list position `k − 1`.
    pub cl: u32,
    /// gcd of the positive weights, or 1.
    pub di: u32,
    /// Max weight − (di − 1).
    pub mw: i64,
    /// Current weight.
    pub cw: i64,
}

fn gcd(mut a: u32, mut b: u32) -> u32 {
    while b != 0 {
        let t = a % b;
        a = b;
        b = t;
    }
    a
}

/// (gcd of positive weights or 1, max weight) over the list.
fn weights(dests: DestList<'_>) -> (u32, u32) {
    let mut g = 0;
    let mut max = 0;
    for (_, d) in dests.iter() {
        let w = d.weight();
        if w > 0 {
            g = if g > 0 { gcd(w, g) } else { w };
        }
        max = max.max(w);
    }
    (if g > 0 { g } else { 1 }, max)
}

impl WrrState {
    /// All zero bits: a placeholder for free storage slots (not a valid state).
    pub(crate) const ZEROED: WrrState = WrrState {
        cl: 0,
        di: 0,
        mw: 0,
        cw: 0,
    };

    /// The state right after `-A`: empty list, di = 1, mw = 0, cw = 0.
    pub const EMPTY: WrrState = WrrState {
        cl: 0,
        di: 1,
        mw: 0,
        cw: 0,
    };

    /// `init_svc`: fresh state over `dests` (cw = mw). Call when wrr becomes the service's
    /// scheduler.
    pub fn init(dests: DestList<'_>) -> Self {
        let (di, max) = weights(dests);
        let mw = i64::from(max) - (i64::from(di) - 1);
        WrrState {
            cl: 0,
            di,
            mw,
            cw: mw,
        }
    }

    /// `dest_changed`: call after any add, delete or edit of a server of the service.
    pub fn dest_changed(&mut self, dests: DestList<'_>) {
        let (di, max) = weights(dests);
        self.cl = 0;
        self.di = di;
        self.mw = i64::from(max) - (i64::from(di) - 1);
        if self.cw > self.mw || self.cw == 0 {
            self.cw = self.mw;
        } else if di > 1 {
            let di = i64::from(di);
            self.cw = (self.cw / di) * di + 1;
        }
    }
}

/// Picks the next server in the weighted round-robin sequence.
pub fn pick(m: &mut WrrState, dests: DestList<'_>) -> Option<ServerId> {
    if m.mw == 0 {
        return None;
    }
    let n = dests.len() as u32;
    let di = i64::from(m.di);
    let last = m.cl;
    let mut pos = m.cl; // coordinate of the current element (0 = head)
    let mut stop = None;
    let mut last_pass = false;
    let mut restarted = false;
    loop {
        while pos < n {
            pos += 1;
            let id = dests.order[pos as usize - 1];
            let d = dests.get(id);
            if !d.overloaded && i64::from(d.weight()) >= m.cw {
                m.cl = pos;
                return Some(id);
            }
            if stop == Some(pos) {
                m.cl = pos;
                return None;
            }
        }
        pos = 0;
        m.cw -= di;
        if m.cw <= 0 {
            m.cw = m.mw;
            if last_pass || last == 0 {
                m.cl = 0;
                return None;
            }
            restarted = true;
        }
        last_pass = m.cw <= di;
        if last_pass && restarted && last != 0 {
            stop = Some(last);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sched::fixture::Fixture;
    use alloc::vec::Vec;

    /// Builds the list by successive `-a` (each running dest_changed), as ipvsadm does.
    fn build(weights: &[u32]) -> (Fixture, WrrState, Vec<ServerId>) {
        let mut f = Fixture::new();
        let mut st = WrrState::EMPTY;
        let mut ids = Vec::new();
        for (i, &w) in weights.iter().enumerate() {
            ids.push(f.add(i as u8 + 1, w));
            st.dest_changed(f.list());
        }
        (f, st, ids)
    }

    #[test]
    fn successive_adds_start_at_cw_1_then_weighted_pattern() {
        // -a A -w 4; -a B -w 3; -a C -w 2  → list C B A, di 1, mw 4, cw 1.
        let (f, mut st, ids) = build(&[4, 3, 2]);
        let (a, b, c) = (ids[0], ids[1], ids[2]);
        assert_eq!(
            st,
            WrrState {
                cl: 0,
                di: 1,
                mw: 4,
                cw: 1
            }
        );
        let got: Vec<_> = (0..3 + 9 + 9)
            .map(|_| pick(&mut st, f.list()).unwrap())
            .collect();
        // First pass at cw = 1: C B A. Then cw wraps to 4: A; 3: B A; 2: C B A; 1: C B A.
        let period = [a, b, a, c, b, a, c, b, a];
        let mut want = alloc::vec![c, b, a];
        want.extend(period);
        want.extend(period);
        assert_eq!(got, want);
    }

    #[test]
    fn gcd_steps_and_init_after_scheduler_change() {
        // Weights 4 and 2: di 2, mw 3. init gives cw = mw = 3.
        let mut f = Fixture::new();
        let a = f.add(1, 4);
        let b = f.add(2, 2);
        let mut st = WrrState::init(f.list());
        assert_eq!((st.di, st.mw, st.cw), (2, 3, 3));
        let got: Vec<_> = (0..6).map(|_| pick(&mut st, f.list()).unwrap()).collect();
        // cw 3: A; cw 1: B A; cw wraps to 3: A; 1: B A.
        assert_eq!(got, [a, b, a, a, b, a]);
    }

    #[test]
    fn dest_changed_keeps_level_with_gcd_rounding() {
        let (mut f, mut st, _) = build(&[6, 4]);
        // Built: di 2, mw 5, cw 1. Put cw mid-level and add a server of weight 8.
        st.cw = 5;
        f.add(9, 8);
        st.dest_changed(f.list());
        // di 2, mw 8 - 1 = 7, cw 5 ≤ 7 and di > 1: cw = 5/2*2 + 1 = 5.
        assert_eq!((st.cl, st.di, st.mw, st.cw), (0, 2, 7, 5));
        st.cw = 4;
        st.dest_changed(f.list());
        assert_eq!(st.cw, 5);
    }

    #[test]
    fn fails_only_when_nothing_is_eligible_and_leaves_cursor() {
        let (mut f, mut st, ids) = build(&[2, 1, 3]);
        assert!(pick(&mut st, f.list()).is_some());
        assert!(pick(&mut st, f.list()).is_some());
        for &id in &ids {
            f.s(id).overloaded = true;
        }
        let cl_before = st.cl;
        assert!(cl_before != 0);
        assert_eq!(pick(&mut st, f.list()), None);
        // Started mid-list: the stop marker ends the scan at the starting element.
        assert_eq!(st.cl, cl_before);
        // One server back: found.
        f.s(ids[1]).overloaded = false;
        assert_eq!(pick(&mut st, f.list()), Some(ids[1]));
        // From the head with nothing eligible: fails with the cursor at the head.
        f.s(ids[1]).config.weight = 0;
        st.cl = 0;
        assert_eq!(pick(&mut st, f.list()), None);
        assert_eq!(st.cl, 0);
    }

    #[test]
    fn all_weights_zero_means_none() {
        let (f, mut st, _) = build(&[0, 0]);
        assert_eq!(st.mw, 0);
        assert_eq!(pick(&mut st, f.list()), None);
    }
}
