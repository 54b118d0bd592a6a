//! `ovf`: weighted overflow (docs/ipvs-semantics.md §5.13, the kernel's `ip_vs_ovf.c`).
//!
//! IPVS semantics: consider servers that are not OVERLOAD, have weight w > 0 and have
//! `active ≤ w`; pick the highest weight, ties to the first in list. The weight acts as a cap on
//! active connections: the top server takes connections until it has more than w active. For UDP
//! (active always 0) it never overflows (§4.9), as in IPVS. No deliberate difference.

use crate::server::{DestList, ServerId};

/// Picks the highest-weight server whose active connections do not exceed its weight.
pub fn pick(dests: DestList<'_>) -> Option<ServerId> {
    let mut best = None;
    // The best weight so far; 0 while there is no candidate, so `w > hw` also excludes weight 0.
    let mut hw = 0;
    for (id, d) in dests.iter() {
        let w = d.weight();
        if w > hw && d.active <= w && !d.overloaded {
            best = Some(id);
            hw = w;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sched::fixture::Fixture;

    #[test]
    fn weight_caps_active_connections() {
        let mut f = Fixture::new();
        let a = f.add(1, 2);
        let b = f.add(2, 3);
        let c = f.add(3, 3);
        // List c b a: c and b tie at 3 → c.
        let mut got = alloc::vec::Vec::new();
        for _ in 0..11 {
            let Some(id) = pick(f.list()) else {
                got.push(None);
                continue;
            };
            f.s(id).active += 1;
            got.push(Some(id));
        }
        // c takes 4 (active ≤ 3 before each), then b 4, then a 3, then none.
        let want: alloc::vec::Vec<_> = [c, c, c, c, b, b, b, b, a, a, a]
            .into_iter()
            .map(Some)
            .collect();
        assert_eq!(got, want);
        assert_eq!(pick(f.list()), None);
        f.s(a).active = 0;
        f.s(a).overloaded = true;
        assert_eq!(pick(f.list()), None);
    }
}
