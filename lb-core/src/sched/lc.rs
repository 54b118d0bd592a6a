//! `lc`: least connection (docs/ipvs-semantics.md §5.3, the kernel's `ip_vs_lc.c`).
//!
//! IPVS semantics: among eligible servers (weight > 0, not OVERLOAD) pick the one with the
//! smallest overhead `active·256 + inactive`; the comparison is strict, so ties go to the first
//! in list. Weights matter only as 0 versus non-zero. No deliberate difference.

use crate::server::{DestList, ServerId};

/// Picks the eligible server with the least overhead.
pub fn pick(dests: DestList<'_>) -> Option<ServerId> {
    let mut least: Option<(ServerId, u64)> = None;
    for (id, d) in dests.iter() {
        if !d.eligible() {
            continue;
        }
        let doh = d.overhead();
        match least {
            Some((_, loh)) if doh >= loh => {}
            _ => least = Some((id, doh)),
        }
    }
    least.map(|(id, _)| id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sched::fixture::Fixture;

    #[test]
    fn least_overhead_first_in_list_on_ties() {
        let mut f = Fixture::new();
        let a = f.add(1, 1);
        let b = f.add(2, 100);
        let c = f.add(3, 0);
        // List c b a. All idle: b (first eligible; c has weight 0).
        assert_eq!(pick(f.list()), Some(b));
        // b: 1 active (256); a: 255 inactive → a.
        f.s(b).active = 1;
        f.s(a).inactive = 255;
        assert_eq!(pick(f.list()), Some(a));
        // a: 256 inactive: tie with b (256) → b, first in list. Weights are ignored.
        f.s(a).inactive = 256;
        assert_eq!(pick(f.list()), Some(b));
        f.s(b).overloaded = true;
        assert_eq!(pick(f.list()), Some(a));
        f.s(a).config.weight = 0;
        assert_eq!(pick(f.list()), None);
        let _ = c;
    }
}
