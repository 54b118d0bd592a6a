//! `fo`: weighted failover (docs/ipvs-semantics.md §5.12, the kernel's `ip_vs_fo.c`).
//!
//! IPVS semantics: pick the non-OVERLOAD server with the highest weight; the comparison is
//! strict starting from 0, so weight 0 is never picked and ties go to the first in list. No
//! counters are read. No deliberate difference.

use crate::server::{DestList, ServerId};

/// Picks the highest-weight server that is not overloaded.
pub fn pick(dests: DestList<'_>) -> Option<ServerId> {
    let mut best = None;
    let mut hw = 0;
    for (id, d) in dests.iter() {
        if !d.overloaded && d.weight() > hw {
            best = Some(id);
            hw = d.weight();
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sched::fixture::Fixture;

    #[test]
    fn highest_weight_first_in_list() {
        let mut f = Fixture::new();
        let a = f.add(1, 5);
        let b = f.add(2, 5);
        let c = f.add(3, 2);
        // List c b a: b and a tie at 5 → b.
        assert_eq!(pick(f.list()), Some(b));
        f.s(b).active = 1000; // counters are not read
        assert_eq!(pick(f.list()), Some(b));
        f.s(b).overloaded = true;
        assert_eq!(pick(f.list()), Some(a));
        f.s(a).config.weight = 0;
        assert_eq!(pick(f.list()), Some(c));
        f.s(c).config.weight = 0;
        assert_eq!(pick(f.list()), None);
    }
}
