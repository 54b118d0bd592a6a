//! `twos`: weighted random "power of two choices" (docs/ipvs-semantics.md §5.14, the kernel's
//! `ip_vs_twos.c`).
//!
//! IPVS semantics: W = Σ weight over non-OVERLOAD servers of weight > 0 (none: `None`). Two
//! numbers r1, r2 are drawn as `random % (W + 1)` — from [0, W] inclusive — and each eligible
//! server in list order subtracts its weight from both; choice₁ is the first server at which
//! r1 ≤ 0, choice₂ likewise. choice₂ wins only if `w₂·overhead₁ > w₁·overhead₂` (overhead =
//! active·256 + inactive), so ties go to choice₁. The first eligible server is drawn with
//! probability (w₁ + 1)/(W + 1), the others wᵢ/(W + 1): that bias is IPVS's and is kept.
//!
//! Deliberate difference: the kernel draws from its global CSPRNG (`get_random_u32`); lb-core is
//! sans-IO and reproducible, so each service has its own [`Rng`] — SplitMix64 (Steele, Lea &
//! Flood 2014; 64-bit state, passes BigCrush), seeded from `Director::new`'s seed and the
//! service slot — and a draw is the high 32 bits of one output. Hand-written rather than a crate:
//! it is eight lines, and a scheduler needs no cryptographic strength.

use crate::server::{DestList, ServerId};

/// SplitMix64: a small, fast, reproducible PRNG.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rng {
    state: u64,
}

impl Rng {
    /// A generator seeded with `seed`.
    pub const fn new(seed: u64) -> Self {
        Rng { state: seed }
    }

    /// The next 64-bit output.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// The next 32-bit output (`get_random_u32`'s role).
    pub fn next_u32(&mut self) -> u32 {
        (self.next_u64() >> 32) as u32
    }
}

/// Picks the less loaded (by overhead / weight) of two weighted random choices.
pub fn pick(rng: &mut Rng, dests: DestList<'_>) -> Option<ServerId> {
    let servers = dests.servers;
    // The weight a server brings to the draw: 0 unless eligible (weight > 0, not OVERLOAD).
    let share = |id: ServerId| -> u64 {
        let d = &servers[usize::from(id)];
        if d.overloaded {
            0
        } else {
            u64::from(d.weight())
        }
    };
    let total: u64 = dests.order.iter().map(|&id| share(id)).sum();
    if total == 0 {
        return None;
    }
    let r1 = u64::from(rng.next_u32()) % (total + 1);
    let r2 = u64::from(rng.next_u32()) % (total + 1);
    // choiceₖ is the first eligible server at which the running sum reaches rₖ (the kernel
    // subtracts each weight from rₖ and stops at rₖ ≤ 0). One walk finds both: it ends at the
    // first eligible server reaching the larger of the two.
    let (lo, hi) = (r1.min(r2), r1.max(r2));
    let mut sum = 0u64;
    let mut at_lo = None;
    let mut at_hi = None;
    for &id in dests.order {
        let w = share(id);
        sum += w;
        if w > 0 && sum >= lo {
            at_lo.get_or_insert(id);
            if sum >= hi {
                at_hi = Some(id);
                break;
            }
        }
    }
    let (lo_id, hi_id) = (at_lo?, at_hi?);
    let (id1, id2) = if r1 <= r2 {
        (lo_id, hi_id)
    } else {
        (hi_id, lo_id)
    };
    let (d1, d2) = (dests.get(id1), dests.get(id2));
    let (w1, w2) = (u64::from(d1.weight()), u64::from(d2.weight()));
    if w2 * d1.overhead() > w1 * d2.overhead() {
        Some(id2)
    } else {
        Some(id1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sched::fixture::Fixture;
    use alloc::vec::Vec;

    #[test]
    fn splitmix64_reference_output() {
        // First outputs of SplitMix64 seeded with 1234567 (from the reference C code).
        let mut r = Rng::new(1234567);
        assert_eq!(r.next_u64(), 6457827717110365317);
        assert_eq!(r.next_u64(), 3203168211198807973);
    }

    #[test]
    fn reproducible_for_a_seed() {
        let mut f = Fixture::new();
        for n in 1..=5 {
            f.add(n, u32::from(n));
        }
        let run = |seed| {
            let mut rng = Rng::new(seed);
            (0..50)
                .map(|_| pick(&mut rng, f.list()).unwrap())
                .collect::<Vec<_>>()
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
    }

    #[test]
    fn tie_goes_to_choice_one_and_lower_load_wins() {
        // One eligible server: both choices are it.
        let mut f = Fixture::new();
        let a = f.add(1, 1);
        let b = f.add(2, 0);
        let mut rng = Rng::new(1);
        for _ in 0..20 {
            assert_eq!(pick(&mut rng, f.list()), Some(a));
        }
        // b overloaded with weight: still never picked.
        f.s(b).config.weight = 5;
        f.s(b).overloaded = true;
        for _ in 0..20 {
            assert_eq!(pick(&mut rng, f.list()), Some(a));
        }
        // With a loaded and b idle, b wins whenever it is one of the two choices.
        f.s(b).overloaded = false;
        f.s(a).active = 3;
        let mut rng2 = Rng::new(42);
        let mut shadow = Rng::new(42);
        for _ in 0..200 {
            let r1 = shadow.next_u32() as u64 % 7;
            let r2 = shadow.next_u32() as u64 % 7;
            // List b(5) a(1): r ≤ 5 → b, r = 6 → a.
            let want = if r1 <= 5 || r2 <= 5 { b } else { a };
            assert_eq!(pick(&mut rng2, f.list()), Some(want));
        }
    }

    #[test]
    fn first_in_list_bias_matches_the_model() {
        // Equal loads (all 0): the result is always choice₁; P(first) = (w1+1)/(W+1).
        let mut f = Fixture::new();
        f.add(1, 3);
        let first = f.add(2, 1);
        let mut rng = Rng::new(99);
        let n = 40_000;
        let hits = (0..n)
            .filter(|_| pick(&mut rng, f.list()) == Some(first))
            .count();
        // Model: 2/5 = 0.4 (an unbiased draw would give 0.25).
        let p = hits as f64 / n as f64;
        assert!((p - 0.4).abs() < 0.015, "p = {p}");
    }
}
