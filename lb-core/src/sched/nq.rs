//! `nq`: never queue (docs/ipvs-semantics.md §5.6, the kernel's `ip_vs_nq.c`).
//!
//! IPVS semantics: walk the eligible servers (weight > 0, not OVERLOAD) in list order and return
//! the first with no active connection at once; otherwise keep the sed-minimal one, replacing L
//! by d when `(act(L)+1)·w(d) > (act(d)+1)·w(L)`, ties to the first. For UDP (active always 0)
//! this is "first eligible in list" (§4.9), as in IPVS. No deliberate difference.

use crate::server::{DestList, ServerId};

/// Picks the first idle server, else the one minimising (active + 1) / weight.
pub fn pick(dests: DestList<'_>) -> Option<ServerId> {
    let mut least: Option<(ServerId, u64, u64)> = None;
    for (id, d) in dests.iter() {
        if !d.eligible() {
            continue;
        }
        if d.active == 0 {
            return Some(id);
        }
        let doh = u64::from(d.active) + 1;
        let dw = u64::from(d.weight());
        match least {
            Some((_, loh, lw)) if loh * dw <= doh * lw => {}
            _ => least = Some((id, doh, dw)),
        }
    }
    least.map(|(id, _, _)| id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sched::fixture::Fixture;

    #[test]
    fn first_idle_else_sed_minimal() {
        let mut f = Fixture::new();
        let a = f.add(1, 10);
        let b = f.add(2, 1);
        let c = f.add(3, 1);
        // List c b a: all idle → c, whatever the weights.
        assert_eq!(pick(f.list()), Some(c));
        f.s(c).active = 5;
        // b is the first idle, even though a has weight 10.
        assert_eq!(pick(f.list()), Some(b));
        f.s(b).active = 1;
        assert_eq!(pick(f.list()), Some(a));
        // No idle: c 6/1, b 2/1, a 11/10 → a.
        f.s(a).active = 10;
        assert_eq!(pick(f.list()), Some(a));
        // a 21/10 vs b 2/1 → b. Inactive ignored.
        f.s(a).active = 20;
        f.s(b).inactive = 99;
        assert_eq!(pick(f.list()), Some(b));
        // Tie: b 2/1 and c 2/1 → c (first).
        f.s(c).active = 1;
        assert_eq!(pick(f.list()), Some(c));
        // An idle but overloaded server is skipped.
        f.s(b).active = 0;
        f.s(b).overloaded = true;
        assert_eq!(pick(f.list()), Some(c));
    }
}
