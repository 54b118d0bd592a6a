//! `dh`: destination hashing (docs/ipvs-semantics.md §5.9).
//!
//! A table of N = 2^bits buckets (default 256) maps a hash of the packet's destination address
//! to a server. [`build`] assigns one bucket per server, cycling through the list and ignoring
//! weights. The director calls it after a server is added or deleted (IPVS's dh has no edit hook,
//! so a weight change does not rebuild the table — do not call it then), and [`pick`] for each
//! new connection. There is no fallback: an unusable server gives `None`.
//!
//! Memory: the table is N × 2 bytes (one `ServerId` per bucket): 512 bytes at N = 256.

use core::net::IpAddr;

use crate::addr::fold;
use crate::hash::hash_32;
use crate::server::{DestList, ServerId, NO_SERVER};

/// The default (and IPVS's only) table size: `IP_VS_DH_TAB_BITS` = 8.
pub const DEFAULT_SIZE: u32 = 256;

/// Whether `n` is a table size dh accepts. IPVS fixes 256; lb-core also accepts the powers of
/// two sh does (2^4..=2^20), hashing with `log2(n)` bits.
pub const fn valid_size(n: u32) -> bool {
    super::sh::valid_size(n)
}

/// Fills `table` so that bucket i holds the server at list position `i mod n`; an empty list
/// clears every bucket. Call after a server of the service is added or deleted.
pub fn build(table: &mut [ServerId], dests: DestList<'_>) {
    if dests.is_empty() {
        table.fill(NO_SERVER);
        return;
    }
    for (slot, &id) in table.iter_mut().zip(dests.order.iter().cycle()) {
        *slot = id;
    }
}

/// Picks the server for a new connection to destination address `daddr`: the server in bucket
/// `hash_32(fold(daddr), log2 N)` if it is AVAILABLE, has weight > 0 and is not OVERLOAD;
/// otherwise `None`.
#[inline]
pub fn pick(table: &[ServerId], dests: DestList<'_>, daddr: IpAddr) -> Option<ServerId> {
    let n = table.len();
    if n == 0 {
        return None;
    }
    let h = hash_32(fold(daddr), n.trailing_zeros()) as usize & (n - 1);
    let id = table[h];
    let s = dests.servers.get(usize::from(id))?;
    (s.available && s.eligible()).then_some(id)
}

#[cfg(test)]
mod tests {
    use super::super::wlc::fixture::*;
    use super::*;
    use alloc::vec;
    use proptest::prelude::*;

    fn bucket_of(x: u32, bits: u32) -> usize {
        (((u64::from(x) * 0x61C8_8647) & 0xffff_ffff) >> (32 - bits)) as usize
    }

    #[test]
    fn one_bucket_per_server_in_list_order_weights_ignored() {
        let s = servers(&[5, 0, 1]);
        let mut t = vec![0; 16];
        build(&mut t, list(&[2, 0, 1], &s));
        assert_eq!(t, [2, 0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2]);
        build(&mut t, list(&[], &s));
        assert!(t.iter().all(|&x| x == NO_SERVER));
        assert_eq!(pick(&t, list(&[], &s), v4(1, 2, 3, 4)), None);
    }

    #[test]
    fn key_is_the_destination_hash_and_unusable_servers_give_none() {
        let mut s = servers(&[1; 256]);
        let ord = order(256);
        let mut t = vec![0; 256];
        build(&mut t, list(&ord, &s));
        let d = v4(172, 16, 5, 9);
        let h = bucket_of(fold(d), 8);
        assert_eq!(pick(&t, list(&ord, &s), d), Some(h as ServerId));
        let v6: IpAddr = "fd00::1:2".parse().unwrap();
        let h6 = bucket_of(0xfd00_0000 ^ 0x0001_0002, 8);
        assert_eq!(pick(&t, list(&ord, &s), v6), Some(h6 as ServerId));
        // No fallback: each kind of unusable server gives none.
        s[h].config.weight = 0;
        assert_eq!(pick(&t, list(&ord, &s), d), None);
        s[h].config.weight = 1;
        s[h].overloaded = true;
        assert_eq!(pick(&t, list(&ord, &s), d), None);
        s[h].overloaded = false;
        s[h].available = false;
        assert_eq!(pick(&t, list(&ord, &s), d), None);
    }

    proptest! {
        #[test]
        fn picks_are_usable_stable_and_never_panic(
            cfg in proptest::collection::vec((0u32..4, proptest::bool::weighted(0.2)), 0..40),
            bits in 4u32..10,
            dsts in proptest::collection::vec(any::<u128>(), 1..20),
        ) {
            let w: alloc::vec::Vec<u32> = cfg.iter().map(|c| c.0).collect();
            let mut s = servers(&w);
            for (srv, c) in s.iter_mut().zip(&cfg) {
                srv.overloaded = c.1;
            }
            let ord = order(s.len());
            let mut t = vec![0; 1 << bits];
            build(&mut t, list(&ord, &s));
            for (i, &id) in t.iter().enumerate() {
                if !ord.is_empty() {
                    prop_assert_eq!(id, ord[i % ord.len()]);
                }
            }
            for &a in &dsts {
                for d in [IpAddr::V6(a.into()), IpAddr::V4((a as u32).into())] {
                    let got = pick(&t, list(&ord, &s), d);
                    if let Some(id) = got {
                        prop_assert!(s[usize::from(id)].eligible());
                    }
                    prop_assert_eq!(got, pick(&t, list(&ord, &s), d));
                }
            }
        }
    }
}
