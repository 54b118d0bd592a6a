//! `sh`: source hashing (docs/ipvs-semantics.md §5.10).
//!
//! A table of N = 2^bits buckets (default 256, 2^4..=2^20) maps a hash of the client address
//! (plus its port with `sh-port`) to a server. [`build`] fills the buckets in list order with
//! runs as long as each server's *current* weight; a weight-0 server still gets one bucket per
//! cycle and lookups reject it. The director calls [`build`] after every add, delete and edit
//! (IPVS's three hooks), and [`pick`] for each new connection.
//!
//! Memory: the table is N × 2 bytes (one `ServerId` per bucket): 512 bytes at N = 256.
//! IPVS's is N × 8 bytes of pointers.

use core::net::IpAddr;

use crate::addr::fold;
use crate::config::SchedFlags;
use crate::hash::hash_32;
use crate::server::{DestList, ServerId, NO_SERVER};

/// The default table size, IPVS's `CONFIG_IP_VS_SH_TAB_BITS` = 8.
pub const DEFAULT_SIZE: u32 = 256;

/// Whether `n` is a table size sh accepts: a power of two from 2^4 to 2^20 (IPVS's Kconfig range).
pub const fn valid_size(n: u32) -> bool {
    n.is_power_of_two() && n >= 1 << 4 && n <= 1 << 20
}

/// Fills `table` (its length is N, which [`valid_size`] should accept) from `dests`: walking
/// the buckets in order, each server in list order takes a run of buckets as long as its current
/// weight (at least one), cycling through the list. An empty list clears every bucket.
/// Call after any server of the service is added, deleted or edited.
pub fn build(table: &mut [ServerId], dests: DestList<'_>) {
    if dests.is_empty() {
        table.fill(NO_SERVER);
        return;
    }
    let n = dests.len();
    let mut pos = 0;
    let mut count = 0u32;
    for slot in table.iter_mut() {
        let id = dests.order[pos];
        *slot = id;
        count += 1;
        let weight = dests.servers.get(usize::from(id)).map_or(0, |s| s.weight());
        if count >= weight {
            pos += 1;
            if pos == n {
                pos = 0;
            }
            count = 0;
        }
    }
}

/// The bucket of `client` (and `port`, already zeroed unless `sh-port` is set) with `offset`:
/// `(offset + hash_32(port + fold(client), bits)) mod N`, sums taken mod 2^32.
#[inline]
fn bucket(key: u32, bits: u32, mask: usize, offset: usize) -> usize {
    (offset.wrapping_add(hash_32(key, bits) as usize)) & mask
}

/// Whether the server in a bucket may take a new connection: weight > 0 and not OVERLOAD.
/// (IPVS does not check AVAILABLE here: deleted servers leave the table at the rebuild.)
#[inline]
fn usable(dests: &DestList<'_>, id: ServerId) -> bool {
    dests
        .servers
        .get(usize::from(id))
        .is_some_and(|s| s.eligible())
}

/// Picks the server for a new connection from `client` (source port `cport`, host order; used
/// only when `flags.port` is set). Without `flags.fallback` the client's bucket decides alone:
/// its server if usable, else `None`. With it, an unusable server makes sh probe bucket
/// `(k + 2h) mod N` for k = 0, 1, .. (h the client's bucket) and return the first usable server,
/// stopping with `None` at an empty bucket or after N probes — IPVS's probe order exactly.
#[inline]
pub fn pick(
    table: &[ServerId],
    dests: DestList<'_>,
    flags: SchedFlags,
    client: IpAddr,
    cport: u16,
) -> Option<ServerId> {
    let n = table.len();
    if n == 0 {
        return None;
    }
    let mask = n - 1;
    let bits = n.trailing_zeros();
    let port = if flags.port { u32::from(cport) } else { 0 };
    let key = port.wrapping_add(fold(client));
    let h = bucket(key, bits, mask, 0);
    let id = table[h];
    if id == NO_SERVER {
        return None;
    }
    if usable(&dests, id) {
        return Some(id);
    }
    if !flags.fallback {
        return None;
    }
    for k in 0..n {
        let roffset = (k + h) & mask;
        let id = table[bucket(key, bits, mask, roffset)];
        if id == NO_SERVER {
            return None;
        }
        if usable(&dests, id) {
            return Some(id);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::super::wlc::fixture::*;
    use super::*;
    use alloc::vec;
    use alloc::vec::Vec;
    use proptest::prelude::*;

    const FALLBACK: SchedFlags = SchedFlags {
        fallback: true,
        port: false,
    };
    const PORT: SchedFlags = SchedFlags {
        fallback: false,
        port: true,
    };

    /// hash_32 computed from its definition in 64-bit arithmetic, for cross-checking.
    fn bucket_of(x: u32, bits: u32) -> usize {
        (((u64::from(x) * 0x61C8_8647) & 0xffff_ffff) >> (32 - bits)) as usize
    }

    #[test]
    fn sizes() {
        assert!(valid_size(DEFAULT_SIZE));
        assert!(valid_size(16) && valid_size(1 << 20));
        assert!(!valid_size(8) && !valid_size(1 << 21) && !valid_size(255) && !valid_size(0));
    }

    #[test]
    fn fill_runs_follow_weights_and_weight_zero_gets_one_bucket() {
        let s = servers(&[2, 0, 3]);
        let mut t = vec![0; 16];
        build(&mut t, list(&order(3), &s));
        assert_eq!(t, [0, 0, 1, 2, 2, 2, 0, 0, 1, 2, 2, 2, 0, 0, 1, 2]);
        // List order, not id order, decides the sequence.
        build(&mut t, list(&[2, 0], &s));
        assert_eq!(t, [2, 2, 2, 0, 0, 2, 2, 2, 0, 0, 2, 2, 2, 0, 0, 2]);
        // Weights are not divided by their gcd.
        let s = servers(&[4, 4]);
        build(&mut t, list(&order(2), &s));
        assert_eq!(t, [0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1]);
        // A weight above N gives the whole table to the first server.
        let s = servers(&[100, 1]);
        build(&mut t, list(&order(2), &s));
        assert!(t.iter().all(|&x| x == 0));
    }

    #[test]
    fn empty_list_clears_the_table() {
        let mut t = vec![3; 16];
        build(&mut t, list(&[], &[]));
        assert!(t.iter().all(|&x| x == NO_SERVER));
        assert_eq!(pick(&t, list(&[], &[]), FALLBACK, v4(1, 2, 3, 4), 0), None);
    }

    #[test]
    fn primary_bucket_is_the_hash_of_the_folded_source() {
        let s = servers(&[1; 16]);
        let mut t = vec![0; 16];
        build(&mut t, list(&order(16), &s));
        // With 16 weight-1 servers, bucket i holds server i.
        for c in [v4(10, 1, 2, 3), v4(192, 168, 7, 9), v4(1, 1, 1, 1)] {
            let want = bucket_of(fold(c), 4) as ServerId;
            assert_eq!(
                pick(&t, list(&order(16), &s), SchedFlags::default(), c, 999),
                Some(want)
            );
        }
        let v6: IpAddr = "2001:db8::77".parse().unwrap();
        let want = bucket_of(0x2001_0db8 ^ 0x77, 4) as ServerId;
        assert_eq!(
            pick(&t, list(&order(16), &s), SchedFlags::default(), v6, 0),
            Some(want)
        );
    }

    #[test]
    fn port_counts_only_with_sh_port() {
        let s = servers(&[1; 16]);
        let mut t = vec![0; 16];
        build(&mut t, list(&order(16), &s));
        let ord = order(16);
        let l = list(&ord, &s);
        let c = v4(10, 1, 2, 3);
        for port in [1u16, 80, 4242, 65535] {
            let want = bucket_of(fold(c).wrapping_add(u32::from(port)), 4) as ServerId;
            assert_eq!(pick(&t, l, PORT, c, port), Some(want));
            assert_eq!(
                pick(&t, l, SchedFlags::default(), c, port),
                Some(bucket_of(fold(c), 4) as ServerId)
            );
        }
    }

    #[test]
    fn unusable_bucket_gives_none_without_fallback() {
        let c = v4(10, 1, 2, 3);
        let h = bucket_of(fold(c), 4);
        let mut s = servers(&[1, 1]);
        let mut t = vec![1; 16];
        t[h] = 0;
        s[0].config.weight = 0;
        assert_eq!(
            pick(&t, list(&order(2), &s), SchedFlags::default(), c, 0),
            None
        );
        s[0].config.weight = 1;
        s[0].overloaded = true;
        assert_eq!(
            pick(&t, list(&order(2), &s), SchedFlags::default(), c, 0),
            None
        );
        s[0].overloaded = false;
        assert_eq!(
            pick(&t, list(&order(2), &s), SchedFlags::default(), c, 0),
            Some(0)
        );
    }

    #[test]
    fn fallback_probes_from_twice_the_bucket() {
        // A client whose bucket h is neither 0 nor 1, so 2h, h and h + 1 are distinct.
        let c = (1..=255u8)
            .map(|x| v4(10, 1, 2, x))
            .find(|&c| bucket_of(fold(c), 4) > 1)
            .unwrap();
        let h = bucket_of(fold(c), 4);
        // Server 0 is unusable; 1 and 2 are usable.
        let mut s = servers(&[0, 1, 1]);
        let l = order(3);
        let mut t = vec![0; 16];
        t[(h + 1) % 16] = 1;
        t[(2 * h) % 16] = 2;
        // The first probe is 2h, not h + 1.
        assert_eq!(pick(&t, list(&l, &s), FALLBACK, c, 0), Some(2));
        // Then 2h + 1, 2h + 2, ...: with every bucket 0 except 2h+3, that one is found.
        let mut t = vec![0; 16];
        t[(2 * h + 3) % 16] = 1;
        assert_eq!(pick(&t, list(&l, &s), FALLBACK, c, 0), Some(1));
        // An empty bucket stops the probe even though usable servers lie beyond it.
        t[(2 * h + 1) % 16] = NO_SERVER;
        assert_ne!((2 * h + 1) % 16, h);
        assert_eq!(pick(&t, list(&l, &s), FALLBACK, c, 0), None);
        // An empty primary bucket gives none at once.
        let mut t = vec![1; 16];
        t[h] = NO_SERVER;
        assert_eq!(pick(&t, list(&l, &s), FALLBACK, c, 0), None);
        // Nothing usable anywhere: none after N probes.
        s[1].overloaded = true;
        s[2].config.weight = 0;
        let t = vec![1; 16];
        assert_eq!(pick(&t, list(&l, &s), FALLBACK, c, 0), None);
    }

    /// Tables of lengths no builder would produce (and ids outside the storage) never panic
    /// in sh, dh or mh lookups.
    #[test]
    fn odd_tables_do_not_panic() {
        let s = servers(&[0, 1]);
        let ord = order(2);
        let all = SchedFlags {
            fallback: true,
            port: true,
        };
        for len in [0usize, 1, 3, 100, 255, 257] {
            for fill in [0, 1, 7, NO_SERVER] {
                let t = vec![fill; len];
                for c in [v4(1, 2, 3, 4), v4(255, 255, 255, 255)] {
                    let _ = pick(&t, list(&ord, &s), all, c, 80);
                    let _ = super::super::dh::pick(&t, list(&ord, &s), c);
                    let _ = super::super::mh::pick(&t, list(&ord, &s), all, c, 80);
                }
            }
        }
        let mut t = vec![0; 16];
        build(&mut t, list(&[9, 1], &s));
        assert_eq!(&t[..4], [9, 1, 9, 1]);
    }

    /// Buckets each list position gets, computed from the run-length rule: full cycles of
    /// Σ max(w, 1) buckets, then a partial cycle in list order.
    fn expected_counts(weights: &[u32], n: usize) -> Vec<usize> {
        let runs: Vec<usize> = weights.iter().map(|&w| w.max(1) as usize).collect();
        let cycle: usize = runs.iter().sum();
        let (full, mut rest) = (n / cycle, n % cycle);
        runs.iter()
            .map(|&r| {
                let extra = rest.min(r);
                rest -= extra;
                full * r + extra
            })
            .collect()
    }

    fn config() -> impl Strategy<Value = (Vec<(u32, bool)>, u32, bool, bool)> {
        (
            proptest::collection::vec((0u32..20, proptest::bool::weighted(0.2)), 0..20),
            4u32..11,
            any::<bool>(),
            any::<bool>(),
        )
    }

    proptest! {
        #[test]
        fn bucket_shares_follow_weights((cfg, bits, _, _) in config()) {
            prop_assume!(!cfg.is_empty());
            let w: Vec<u32> = cfg.iter().map(|c| c.0).collect();
            let s = servers(&w);
            let mut t = vec![0; 1 << bits];
            build(&mut t, list(&order(s.len()), &s));
            let want = expected_counts(&w, t.len());
            for (i, &cnt) in want.iter().enumerate() {
                prop_assert_eq!(t.iter().filter(|&&x| x as usize == i).count(), cnt);
            }
        }

        /// Never a weight-0 or OVERLOAD server; never a panic; the same client gets the same
        /// server from a rebuilt table, whatever the connection counters say.
        #[test]
        fn picks_are_usable_and_stable(
            (cfg, bits, fallback, port) in config(),
            clients in proptest::collection::vec((any::<u32>(), any::<u16>()), 1..20),
        ) {
            let w: Vec<u32> = cfg.iter().map(|c| c.0).collect();
            let mut s = servers(&w);
            for (srv, c) in s.iter_mut().zip(&cfg) {
                srv.overloaded = c.1;
            }
            let ord = order(s.len());
            let flags = SchedFlags { fallback, port };
            let mut t = vec![0; 1 << bits];
            build(&mut t, list(&ord, &s));
            let mut busy = s.clone();
            for (i, b) in busy.iter_mut().enumerate() {
                b.active = i as u32 * 7;
                b.inactive = 1000 - i as u32;
            }
            let mut t2 = vec![NO_SERVER; 1 << bits];
            build(&mut t2, list(&ord, &busy));
            for &(a, p) in &clients {
                let c = IpAddr::V4(a.into());
                let got = pick(&t, list(&ord, &s), flags, c, p);
                if let Some(id) = got {
                    prop_assert!(s[usize::from(id)].eligible());
                }
                prop_assert_eq!(got, pick(&t2, list(&ord, &busy), flags, c, p));
                if !port {
                    prop_assert_eq!(got, pick(&t, list(&ord, &s), flags, c, p ^ 0x5555));
                }
                // With fallback, a usable server is found whenever the table holds one
                // (tables from build have no empty buckets, and N probes cover the table).
                if fallback && t.iter().any(|&x| s.get(usize::from(x)).is_some_and(|x| x.eligible())) {
                    prop_assert!(got.is_some());
                }
            }
        }
    }
}

#[cfg(test)]
mod timing {
    /// Rough decision costs of sh and dh (goal ≤ 20 ns in release builds).
    /// `cargo test --release -p lb-core sh_dh_pick_time -- --ignored --nocapture`
    #[test]
    #[ignore]
    fn sh_dh_pick_time() {
        use super::super::wlc::fixture::{list, order, servers};
        use super::*;
        let s = servers(&[1, 2, 3, 0, 5, 1, 1, 1]);
        let ord = order(s.len());
        let mut t = alloc::vec![0; DEFAULT_SIZE as usize];
        build(&mut t, list(&ord, &s));
        let flags = SchedFlags {
            fallback: true,
            port: true,
        };
        let n = 10_000_000u32;
        let start = std::time::Instant::now();
        let mut acc = 0usize;
        for i in 0..n {
            let c = IpAddr::V4(i.wrapping_mul(2_654_435_761).into());
            acc += usize::from(pick(&t, list(&ord, &s), flags, c, i as u16).unwrap_or(0));
        }
        std::println!("sh pick: {:?} each ({acc})", start.elapsed() / n);
        super::super::dh::build(&mut t, list(&ord, &s));
        let start = std::time::Instant::now();
        for i in 0..n {
            let c = IpAddr::V4(i.wrapping_mul(2_654_435_761).into());
            acc += usize::from(super::super::dh::pick(&t, list(&ord, &s), c).unwrap_or(0));
        }
        std::println!("dh pick: {:?} each ({acc})", start.elapsed() / n);
    }
}
