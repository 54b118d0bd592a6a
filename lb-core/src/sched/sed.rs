//! `sed`: shortest expected delay (docs/ipvs-semantics.md §5.5, the kernel's `ip_vs_sed.c`).
//!
//! IPVS semantics: overhead is `active + 1` (inactive connections are ignored); the first
//! eligible server (weight > 0, not OVERLOAD) is the initial candidate L, and each later
//! non-OVERLOAD server d replaces it when `(act(L)+1)·w(d) > (act(d)+1)·w(L)` — cross-multiplied
//! in 64-bit integers, so weight-0 servers never win and ties keep the earlier server. For UDP
//! (active always 0) this is "highest weight, first in list" (§4.9), as in IPVS. No deliberate
//! difference.

use crate::server::{DestList, ServerId};

/// Picks the server minimising (active + 1) / weight.
pub fn pick(dests: DestList<'_>) -> Option<ServerId> {
    let mut it = dests.iter();
    let (mut least, mut loh, mut lw) = loop {
        let (id, d) = it.next()?;
        if d.eligible() {
            break (id, u64::from(d.active) + 1, u64::from(d.weight()));
        }
    };
    for (id, d) in it {
        let doh = u64::from(d.active) + 1;
        let dw = u64::from(d.weight());
        // One combined condition (no early `continue`), so the loop compiles to selects.
        if loh * dw > doh * lw && !d.overloaded {
            (least, loh, lw) = (id, doh, dw);
        }
    }
    Some(least)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sched::fixture::Fixture;

    #[test]
    fn expected_delay_with_ties_to_the_earlier() {
        let mut f = Fixture::new();
        let a = f.add(1, 3);
        let b = f.add(2, 1);
        // List b a. Idle: (0+1)/1 vs (0+1)/3 → a.
        assert_eq!(pick(f.list()), Some(a));
        // a: 2 active → 3/3 = 1 vs b 1/1 = 1: tie → b (earlier).
        f.s(a).active = 2;
        assert_eq!(pick(f.list()), Some(b));
        // Inactive connections do not count.
        f.s(b).inactive = 1000;
        assert_eq!(pick(f.list()), Some(b));
        f.s(b).active = 1; // 2/1 vs 3/3 → a
        assert_eq!(pick(f.list()), Some(a));
        f.s(a).overloaded = true;
        assert_eq!(pick(f.list()), Some(b));
        f.s(b).config.weight = 0;
        assert_eq!(pick(f.list()), None);
    }
}
