//! `wlc`: weighted least connection, ipvsadm's default scheduler (docs/ipvs-semantics.md §5.4, §4.9).
//!
//! The load of a server is its overhead (`active·256 + inactive`) divided by its weight. The
//! first server in list order that has weight > 0 and is not OVERLOAD is the initial candidate;
//! each later non-OVERLOAD server replaces it when `overhead(L)·w(d) > overhead(d)·w(L)`
//! (cross-multiplied, never divided). A weight-0 server can never win that comparison, and ties
//! keep the earlier server. lblc and lblcr use this same pick when their caches miss.
//!
//! Stateless: no table, no memory.

use crate::server::{DestList, RealServer, ServerId};

/// Picks the server with the least `overhead / weight`, or `None` when no server has weight > 0
/// and is not OVERLOAD. Call once per new connection; `dests` is the service's list in IPVS order.
pub fn pick(dests: DestList<'_>) -> Option<ServerId> {
    let mut it = dests.iter();
    let (mut least_id, least) = it.by_ref().find(|(_, s)| s.eligible())?;
    // The candidate's overhead and weight live in registers: the loop compares, never re-reads.
    let (mut loh, mut lw) = (least.overhead(), u64::from(least.weight()));
    for (id, d) in it {
        let (doh, dw) = (d.overhead(), u64::from(d.weight()));
        // overhead(L)·w(d) > overhead(d)·w(L), in 128 bits (no weight or counter overflows).
        let more = u128::from(loh) * u128::from(dw) > u128::from(doh) * u128::from(lw);
        if more && !d.overloaded {
            (least_id, loh, lw) = (id, doh, dw);
        }
    }
    Some(least_id)
}

/// Whether `a` carries more load per weight than `b`: `overhead(a)·w(b) > overhead(b)·w(a)`.
/// Computed in 128 bits so no weight or counter value can overflow.
pub(crate) fn more_loaded(a: &RealServer, b: &RealServer) -> bool {
    u128::from(a.overhead()) * u128::from(b.weight())
        > u128::from(b.overhead()) * u128::from(a.weight())
}

/// Test fixtures shared by the scheduler tests of this directory.
#[cfg(test)]
pub(crate) mod fixture {
    use alloc::vec::Vec;
    use core::net::{IpAddr, Ipv4Addr, SocketAddr};

    use crate::config::{ForwardMethod, ServerConfig};
    use crate::server::{DestList, RealServer, ServerId};

    /// A server at `addr` with weight `w`.
    pub fn server(addr: SocketAddr, w: u32) -> RealServer {
        let mut c = ServerConfig::new(addr, ForwardMethod::Masq);
        c.weight = w;
        let mut s = RealServer::new(c);
        s.last_weight = w;
        s
    }

    /// Servers at 10.0.0.1:80 + i with the given weights; id i is at list position i.
    pub fn servers(weights: &[u32]) -> Vec<RealServer> {
        weights
            .iter()
            .enumerate()
            .map(|(i, &w)| {
                let a = Ipv4Addr::from(0x0a00_0001 + i as u32);
                server(SocketAddr::new(IpAddr::V4(a), 80), w)
            })
            .collect()
    }

    /// The identity list order 0, 1, .., n-1.
    pub fn order(n: usize) -> Vec<ServerId> {
        (0..n as ServerId).collect()
    }

    /// A list over `servers` in `order`.
    pub fn list<'a>(order: &'a [ServerId], servers: &'a [RealServer]) -> DestList<'a> {
        DestList { order, servers }
    }

    /// An IPv4 address from its four octets.
    pub fn v4(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(a, b, c, d))
    }
}

#[cfg(test)]
mod tests {
    use super::fixture::*;
    use super::*;
    use alloc::vec::Vec;
    use proptest::prelude::*;

    #[test]
    fn empty_and_all_ineligible_give_none() {
        let s = servers(&[]);
        assert_eq!(pick(list(&[], &s)), None);
        let mut s = servers(&[0, 3]);
        s[1].overloaded = true;
        assert_eq!(pick(list(&order(2), &s)), None);
    }

    #[test]
    fn least_overhead_per_weight_wins() {
        // Loads: 0: 300/1 = 300, 1: (256+100)/2 = 178, 2: 600/3 = 200.
        let mut s = servers(&[1, 2, 3]);
        s[0].inactive = 300;
        s[1].active = 1;
        s[1].inactive = 100;
        s[2].inactive = 600;
        assert_eq!(pick(list(&order(3), &s)), Some(1));
        // Active connections cost 256 inactive ones: 1 active (256) beats 257 inactive.
        let mut s = servers(&[1, 1]);
        s[0].inactive = 257;
        s[1].active = 1;
        assert_eq!(pick(list(&order(2), &s)), Some(1));
    }

    #[test]
    fn ties_keep_the_earlier_in_list_order() {
        // Equal loads 2/1 and 4/2: the first in list order wins, whatever the ids.
        let mut s = servers(&[1, 2]);
        s[0].inactive = 2;
        s[1].inactive = 4;
        assert_eq!(pick(list(&[0, 1], &s)), Some(0));
        assert_eq!(pick(list(&[1, 0], &s)), Some(1));
    }

    #[test]
    fn weight_zero_and_overloaded_are_skipped() {
        // The idle weight-0 server and the idle overloaded one never win.
        let mut s = servers(&[0, 5, 1]);
        s[1].overloaded = true;
        s[2].inactive = 1000;
        assert_eq!(pick(list(&order(3), &s)), Some(2));
        // A weight-0 server after the candidate cannot win the comparison either.
        let mut s = servers(&[1, 0]);
        s[0].active = 50;
        assert_eq!(pick(list(&order(2), &s)), Some(0));
    }

    #[test]
    fn huge_counters_do_not_overflow() {
        let mut s = servers(&[u32::MAX, u32::MAX]);
        s[0].active = u32::MAX;
        s[1].active = u32::MAX - 1;
        assert_eq!(pick(list(&order(2), &s)), Some(1));
    }

    proptest! {
        /// wlc returns exactly the first eligible server of minimal overhead/weight
        /// (checked with exact rational comparison in a brute-force model).
        #[test]
        fn matches_brute_force_model(
            cfg in proptest::collection::vec((0u32..5, 0u32..4, 0u32..600, any::<bool>()), 0..12)
        ) {
            let mut s = servers(&cfg.iter().map(|c| c.0).collect::<Vec<_>>());
            for (srv, c) in s.iter_mut().zip(&cfg) {
                srv.active = c.1;
                srv.inactive = c.2;
                srv.overloaded = c.3;
            }
            let ord = order(s.len());
            let got = pick(list(&ord, &s));
            // The model: among eligible servers, the first whose ratio is minimal.
            let cmp = |a: &RealServer, b: &RealServer| {
                (a.overhead() as u128 * b.weight() as u128)
                    .cmp(&(b.overhead() as u128 * a.weight() as u128))
            };
            let eligible: Vec<usize> = (0..s.len()).filter(|&i| s[i].eligible()).collect();
            let min = eligible.iter().copied().min_by(|&a, &b| cmp(&s[a], &s[b]));
            let best = min.and_then(|m| {
                eligible.iter().copied().find(|&i| cmp(&s[i], &s[m]).is_eq())
            });
            prop_assert_eq!(got, best.map(|b| b as ServerId));
            if let Some(id) = got {
                prop_assert!(s[usize::from(id)].eligible());
            }
        }
    }
}
