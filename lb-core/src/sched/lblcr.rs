//! `lblcr`: locality-based least connection with replication (docs/ipvs-semantics.md §5.8).
//!
//! Like [lblc], keyed by the destination address, but each address maps to a
//! **set** of servers (head insertion, with the time of its last change, `lastmod`). On a hit
//! [`pick`] takes the weighted-least-connection member of the set (only AVAILABLE, non-OVERLOAD
//! members count, and the first candidate must have weight > 0); if the set has more than one
//! member and has not changed for `expiration`, its weighted-most-loaded member (weight > 0) is
//! dropped; if the chosen member is missing or lblc-overloaded, wlc over the whole service picks
//! a server that joins the set. A miss schedules by wlc and creates the entry.
//!
//! # Deliberate differences
//! * The cache is bounded and set-associative, exactly as lblc's (see there): a full set of
//!   entries replaces its least recently used one.
//! * A server set holds at most [`LBLCR_SET_MAX`] members (IPVS: unbounded). Adding to a full
//!   set first removes its weighted-most-loaded member (weight > 0; if none has weight > 0, the
//!   oldest member).
//! * [`forget_server`] removes a released server id from every set (IPVS keeps a pointer to the
//!   deleted server, which its "most loaded" choice may still pick and drop).
//!
//! Memory: an [`LblcrEntry`] is 56 bytes (one cache line): 17-byte `IpAddr`, 8 × 2-byte ids,
//! a 1-byte length, two 8-byte times, padding.
//!
//! The director calls [`pick`] for each new connection, [`gc`] every
//! [`CHECK_INTERVAL`](super::lblc::CHECK_INTERVAL), and [`forget_server`] when it releases a
//! server id.

use core::net::{IpAddr, Ipv4Addr};

use crate::server::{DestList, RealServer, ServerId, NO_SERVER};
use crate::time::{Duration, Instant};

use super::lblc::{self, set_of, victim};
use super::wlc;

/// The most servers one destination address's set holds.
pub const LBLCR_SET_MAX: usize = 8;

/// One cached mapping: destination address → set of servers. 56 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LblcrEntry {
    /// The destination address (compared in full, as IPVS does).
    pub addr: IpAddr,
    /// The set's members, most recently added first: `set[..len]`.
    pub set: [ServerId; LBLCR_SET_MAX],
    /// How many members the set has; 0 marks a free entry.
    pub len: u8,
    /// When a packet last used the entry.
    pub lastuse: Instant,
    /// When a member was last added or removed.
    pub lastmod: Instant,
}

impl LblcrEntry {
    /// All zero bits: a placeholder for statically allocated storage, which
    /// [`Director::new`](crate::director::Director::new) resets to [`EMPTY`](Self::EMPTY).
    pub const ZEROED: LblcrEntry = LblcrEntry {
        addr: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        set: [0; LBLCR_SET_MAX],
        len: 0,
        lastuse: Instant::ZERO,
        lastmod: Instant::ZERO,
    };

    /// A free entry, for initialising cache storage.
    pub const EMPTY: LblcrEntry = LblcrEntry {
        addr: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        set: [NO_SERVER; LBLCR_SET_MAX],
        len: 0,
        lastuse: Instant::ZERO,
        lastmod: Instant::ZERO,
    };

    /// Whether the entry is free.
    pub const fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The set's members, most recently added first.
    pub fn members(&self) -> &[ServerId] {
        &self.set[..usize::from(self.len).min(LBLCR_SET_MAX)]
    }

    /// Removes `id` from the set, keeping the order of the others; true if it was a member.
    fn erase(&mut self, id: ServerId) -> bool {
        let n = self.members().len();
        let Some(i) = self.members().iter().position(|&m| m == id) else {
            return false;
        };
        self.set.copy_within(i + 1..n, i);
        self.set[n - 1] = NO_SERVER;
        self.len = (n - 1) as u8;
        true
    }

    /// Adds `id` at the head of the set unless it is a member already (IPVS's
    /// `ip_vs_dest_set_insert` with check). A full set first loses its most loaded member.
    fn insert(&mut self, id: ServerId, dests: &DestList<'_>, now: Instant) {
        if self.members().contains(&id) {
            return;
        }
        if self.members().len() >= LBLCR_SET_MAX {
            let out = set_max(self.members(), dests).unwrap_or(self.set[LBLCR_SET_MAX - 1]);
            self.erase(out);
        }
        let n = self.members().len();
        self.set.copy_within(0..n, 1);
        self.set[0] = id;
        self.len = (n + 1) as u8;
        self.lastmod = now;
    }
}

fn server<'s>(dests: &DestList<'s>, id: ServerId) -> Option<&'s RealServer> {
    dests.servers.get(usize::from(id))
}

/// The weighted-least-connection member (`ip_vs_dest_set_min`): the first AVAILABLE, non-OVERLOAD
/// member with weight > 0, replaced by each later AVAILABLE, non-OVERLOAD member with less load
/// per weight.
fn set_min(members: &[ServerId], dests: &DestList<'_>) -> Option<ServerId> {
    let mut it = members
        .iter()
        .filter_map(|&id| Some((id, server(dests, id)?)))
        .filter(|(_, s)| !s.overloaded && s.available);
    let (mut least_id, mut least) = it.by_ref().find(|(_, s)| s.weight() > 0)?;
    for (id, d) in it {
        if wlc::more_loaded(least, d) {
            least_id = id;
            least = d;
        }
    }
    Some(least_id)
}

/// The weighted-most-loaded member (`ip_vs_dest_set_max`): the first member with weight > 0,
/// replaced by each later member with weight > 0 and more load per weight. Neither AVAILABLE
/// nor OVERLOAD is looked at.
fn set_max(members: &[ServerId], dests: &DestList<'_>) -> Option<ServerId> {
    let mut it = members
        .iter()
        .filter_map(|&id| Some((id, server(dests, id)?)))
        .filter(|(_, s)| s.weight() > 0);
    let (mut most_id, mut most) = it.next()?;
    for (id, d) in it {
        if wlc::more_loaded(d, most) {
            most_id = id;
            most = d;
        }
    }
    Some(most_id)
}

/// Picks the server for a new connection to destination `daddr` at `now`, per IPVS's
/// `ip_vs_lblcr_schedule`; `expiration` is `lblcr_expiration`
/// ([`DEFAULT_EXPIRATION`](super::lblc::DEFAULT_EXPIRATION), 24 h, by default). On a hit the
/// entry's `lastuse` is refreshed, the set may lose its most loaded member (more than one member
/// and `now − lastmod > expiration`), and the least loaded usable member is returned unless it is
/// lblc-overloaded; otherwise the wlc choice joins the set. `None` when wlc finds no server.
pub fn pick(
    cache: &mut [LblcrEntry],
    dests: DestList<'_>,
    daddr: IpAddr,
    now: Instant,
    expiration: Duration,
) -> Option<ServerId> {
    let range = set_of(cache.len(), daddr);
    let set = &mut cache[range];
    let hit = set.iter().position(|e| !e.is_empty() && e.addr == daddr);
    if let Some(i) = hit {
        let e = &mut set[i];
        e.lastuse = now;
        let least = set_min(e.members(), &dests);
        if e.members().len() > 1 && now > e.lastmod + expiration {
            if let Some(most) = set_max(e.members(), &dests) {
                e.erase(most);
                e.lastmod = now;
            }
        }
        if let Some(id) = least {
            if server(&dests, id).is_some_and(|s| !lblc::overloaded(s, &dests)) {
                return Some(id);
            }
        }
        let id = wlc::pick(dests)?;
        e.insert(id, &dests, now);
        return Some(id);
    }
    let id = wlc::pick(dests)?;
    if !set.is_empty() {
        let i = victim(set, LblcrEntry::is_empty, |e| e.lastuse);
        let mut e = LblcrEntry::EMPTY;
        e.addr = daddr;
        e.set[0] = id;
        e.len = 1;
        e.lastuse = now;
        e.lastmod = now;
        set[i] = e;
    }
    Some(id)
}

/// Garbage collection, the same rules as [`lblc::gc`]: call every
/// [`CHECK_INTERVAL`](super::lblc::CHECK_INTERVAL). Returns the number of entries removed.
pub fn gc(cache: &mut [LblcrEntry], now: Instant, expiration: Duration) -> usize {
    lblc::gc_by(
        cache,
        now,
        expiration,
        LblcrEntry::is_empty,
        |e| e.lastuse,
        |e| *e = LblcrEntry::EMPTY,
    )
}

/// Removes server `id` from every set (freeing entries whose set becomes empty). Call when the
/// director releases the id, before it can be reused.
pub fn forget_server(cache: &mut [LblcrEntry], id: ServerId) {
    for e in cache.iter_mut() {
        if e.erase(id) && e.is_empty() {
            *e = LblcrEntry::EMPTY;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::lblc::DEFAULT_EXPIRATION;
    use super::super::wlc::fixture::*;
    use super::*;
    use alloc::vec;
    use alloc::vec::Vec;
    use proptest::prelude::*;
    use std::collections::HashMap;

    const T0: Instant = Instant::from_secs(1000);

    fn entry(cache: &[LblcrEntry], d: IpAddr) -> &LblcrEntry {
        cache.iter().find(|e| !e.is_empty() && e.addr == d).unwrap()
    }

    #[test]
    fn entry_size() {
        assert_eq!(core::mem::size_of::<LblcrEntry>(), 56);
    }

    #[test]
    fn a_miss_creates_a_one_member_set_and_hits_stick() {
        let mut s = servers(&[1, 1]);
        let ord = order(2);
        let mut cache = vec![LblcrEntry::EMPTY; 16];
        let d = v4(198, 51, 100, 1);
        assert_eq!(
            pick(&mut cache, list(&ord, &s), d, T0, DEFAULT_EXPIRATION),
            Some(0)
        );
        assert_eq!(entry(&cache, d).members(), [0]);
        assert_eq!(entry(&cache, d).lastmod, T0);
        s[0].inactive = 100;
        let t1 = T0 + Duration::from_secs(1);
        assert_eq!(
            pick(&mut cache, list(&ord, &s), d, t1, DEFAULT_EXPIRATION),
            Some(0)
        );
        assert_eq!(
            (entry(&cache, d).lastuse, entry(&cache, d).lastmod),
            (t1, T0)
        );
    }

    #[test]
    fn replication_adds_at_the_head_and_the_least_loaded_member_wins() {
        let mut s = servers(&[1, 1, 4]);
        let ord = order(3);
        let mut cache = vec![LblcrEntry::EMPTY; 16];
        let d = v4(198, 51, 100, 2);
        let exp = DEFAULT_EXPIRATION;
        assert_eq!(pick(&mut cache, list(&ord, &s), d, T0, exp), Some(0));
        // Server 0 gets 2 active > weight 1 while server 2 is half idle: lblc-overloaded.
        s[0].active = 2;
        s[1].inactive = 10;
        let t1 = T0 + Duration::from_secs(1);
        assert_eq!(pick(&mut cache, list(&ord, &s), d, t1, exp), Some(2));
        assert_eq!(entry(&cache, d).members(), [2, 0]);
        assert_eq!(entry(&cache, d).lastmod, t1);
        // A third member joins when the least loaded usable member is lblc-overloaded.
        s[2].active = 9; // 9 > 4, and server 1 (0 active, weight 1) is half idle
        s[1].inactive = 0;
        // set_min: 2 has 9·256/4 = 576, 0 has 512/1: 2 is more loaded, so 0 is chosen, but
        // 0 is lblc-overloaded: wlc over all gives server 1, which joins.
        assert_eq!(pick(&mut cache, list(&ord, &s), d, t1, exp), Some(1));
        assert_eq!(entry(&cache, d).members(), [1, 2, 0]);
        // Overloaded (flag) and deleted members do not count for the least loaded choice.
        s[1].overloaded = true;
        s[0].active = 0;
        s[0].available = false;
        s[2].active = 1;
        assert_eq!(pick(&mut cache, list(&ord, &s), d, t1, exp), Some(2));
        assert_eq!(entry(&cache, d).members(), [1, 2, 0]);
    }

    #[test]
    fn an_old_set_loses_its_most_loaded_member() {
        let mut s = servers(&[1, 1, 1]);
        let ord = order(3);
        let mut cache = vec![LblcrEntry::EMPTY; 16];
        let d = v4(198, 51, 100, 3);
        let exp = Duration::from_secs(100);
        pick(&mut cache, list(&ord, &s), d, T0, exp);
        s[0].active = 2;
        pick(&mut cache, list(&ord, &s), d, T0, exp); // server 1 joins
        assert_eq!(entry(&cache, d).members(), [1, 0]);
        s[0].active = 0;
        s[0].inactive = 50;
        s[1].inactive = 10;
        // now − lastmod = expiration exactly: not yet.
        let at = T0 + exp;
        assert_eq!(pick(&mut cache, list(&ord, &s), d, at, exp), Some(1));
        assert_eq!(entry(&cache, d).members(), [1, 0]);
        // One millisecond later the most loaded member (0) goes; lastmod moves.
        let later = at + Duration::from_millis(1);
        assert_eq!(pick(&mut cache, list(&ord, &s), d, later, exp), Some(1));
        assert_eq!(entry(&cache, d).members(), [1]);
        assert_eq!(entry(&cache, d).lastmod, later);
        // A single member is never dropped.
        let much_later = later + Duration::from_secs(1000);
        assert_eq!(
            pick(&mut cache, list(&ord, &s), d, much_later, exp),
            Some(1)
        );
        assert_eq!(entry(&cache, d).members(), [1]);
    }

    #[test]
    fn the_member_chosen_before_the_drop_is_returned() {
        // IPVS picks the least loaded member before dropping the most loaded: with one
        // usable member that is also the most loaded, it is returned and dropped.
        let mut s = servers(&[1, 1]);
        let ord = order(2);
        let mut cache = vec![LblcrEntry::EMPTY; 16];
        let d = v4(198, 51, 100, 4);
        let exp = Duration::from_secs(10);
        pick(&mut cache, list(&ord, &s), d, T0, exp);
        s[0].active = 2;
        pick(&mut cache, list(&ord, &s), d, T0, exp);
        assert_eq!(entry(&cache, d).members(), [1, 0]);
        s[0].active = 0;
        s[1].inactive = 50;
        s[0].overloaded = true; // not usable for set_min, but set_max ignores the flag
        let later = T0 + Duration::from_secs(11);
        assert_eq!(pick(&mut cache, list(&ord, &s), d, later, exp), Some(1));
        assert_eq!(entry(&cache, d).members(), [0]);
    }

    #[test]
    fn a_full_set_replaces_its_most_loaded_member() {
        let n = LBLCR_SET_MAX + 1;
        let mut s = servers(&vec![1; n]);
        let ord = order(n);
        let mut cache = vec![LblcrEntry::EMPTY; 16];
        let d = v4(198, 51, 100, 5);
        let exp = DEFAULT_EXPIRATION;
        // Each pick overloads the previous choice so the next server joins.
        for i in 0..n {
            let got = pick(&mut cache, list(&ord, &s), d, T0, exp).unwrap();
            assert_eq!(usize::from(got), i);
            s[i].active = 2;
            s[i].inactive = i as u32; // later servers slightly more loaded
        }
        let e = entry(&cache, d);
        assert_eq!(e.members().len(), LBLCR_SET_MAX);
        assert_eq!(e.members()[0], 8);
        // Server 7 (2 active, 7 inactive) was the most loaded when 8 joined.
        assert!(!e.members().contains(&7));
        assert!(e.members().contains(&0));
    }

    #[test]
    fn forget_and_gc() {
        let mut s = servers(&[1, 1]);
        let ord = order(2);
        let mut cache = vec![LblcrEntry::EMPTY; 16];
        let d = v4(198, 51, 100, 6);
        let e2 = v4(198, 51, 100, 7);
        let exp = DEFAULT_EXPIRATION;
        pick(&mut cache, list(&ord, &s), d, T0, exp);
        s[0].active = 2;
        pick(&mut cache, list(&ord, &s), d, T0, exp);
        pick(&mut cache, list(&ord, &s), e2, T0, exp);
        assert_eq!(entry(&cache, d).members(), [1, 0]);
        assert_eq!(entry(&cache, e2).members(), [1]);
        forget_server(&mut cache, 1);
        assert_eq!(entry(&cache, d).members(), [0]);
        assert!(cache.iter().all(|x| x.is_empty() || x.addr != e2));
        assert_eq!(gc(&mut cache, T0 + exp, exp), 1);
        assert!(cache.iter().all(|x| x.is_empty()));
    }

    /// IPVS's lblcr with an unbounded table and unbounded sets, for the model test.
    fn model_pick(
        map: &mut HashMap<IpAddr, (Vec<ServerId>, Instant)>,
        dests: DestList<'_>,
        d: IpAddr,
        now: Instant,
        exp: Duration,
    ) -> Option<ServerId> {
        let load = |id: ServerId| {
            let s = dests.get(id);
            (s.overhead() as u128, s.weight() as u128)
        };
        // a/b < c/d without division.
        let less = |a: (u128, u128), b: (u128, u128)| a.0 * b.1 < b.0 * a.1;
        if let Some((set, lastmod)) = map.get_mut(&d) {
            let usable: Vec<ServerId> = set
                .iter()
                .copied()
                .filter(|&id| !dests.get(id).overloaded && dests.get(id).available)
                .collect();
            let first = usable.iter().position(|&id| dests.get(id).weight() > 0);
            let least = first.map(|f| {
                let mut l = usable[f];
                for &id in &usable[f + 1..] {
                    if less(load(id), load(l)) {
                        l = id;
                    }
                }
                l
            });
            if set.len() > 1 && now > *lastmod + exp {
                let weighted: Vec<ServerId> = set
                    .iter()
                    .copied()
                    .filter(|&id| dests.get(id).weight() > 0)
                    .collect();
                if let Some(&f) = weighted.first() {
                    let mut m = f;
                    for &id in &weighted[1..] {
                        if less(load(m), load(id)) {
                            m = id;
                        }
                    }
                    set.retain(|&x| x != m);
                    *lastmod = now;
                }
            }
            if let Some(l) = least {
                let s = dests.get(l);
                let half_idle = dests
                    .iter()
                    .any(|(_, x)| (x.active as u64) * 2 < x.weight() as u64);
                if !(s.active > s.weight() && half_idle) {
                    return Some(l);
                }
            }
            let id = wlc::pick(dests)?;
            if !set.contains(&id) {
                set.insert(0, id);
                *lastmod = now;
            }
            return Some(id);
        }
        let id = wlc::pick(dests)?;
        map.insert(d, (vec![id], now));
        Some(id)
    }

    proptest! {
        /// With at most 4 destinations (one cache set of 4) and 6 servers (sets never full),
        /// the cache behaves exactly like IPVS's unbounded structures.
        #[test]
        fn matches_the_unbounded_kernel_model(
            ops in proptest::collection::vec(
                (0u8..4, 0usize..6, 0u32..4, 0u32..6, 0u32..300, proptest::bool::weighted(0.15)),
                1..80,
            ),
        ) {
            let mut s = servers(&[1, 2, 3, 1, 2, 1]);
            let ord = order(6);
            let mut cache = vec![LblcrEntry::EMPTY; 4];
            let mut map = HashMap::new();
            let exp = Duration::from_secs(5);
            for (t, &(d, srv, w, act, inact, ov)) in ops.iter().enumerate() {
                s[srv].config.weight = w;
                s[srv].active = act;
                s[srv].inactive = inact;
                s[srv].overloaded = ov;
                let d = v4(192, 0, 2, d);
                let now = Instant::from_secs(2 * t as u64);
                let got = pick(&mut cache, list(&ord, &s), d, now, exp);
                prop_assert_eq!(got, model_pick(&mut map, list(&ord, &s), d, now, exp));
                match map.get(&d) {
                    Some((members, lastmod)) => {
                        let e = entry(&cache, d);
                        prop_assert_eq!(e.members(), &members[..]);
                        prop_assert_eq!(e.lastmod, *lastmod);
                    }
                    // No server was ever available for it: neither side has an entry.
                    None => prop_assert!(!cache.iter().any(|e| !e.is_empty() && e.addr == d)),
                }
            }
        }

        #[test]
        fn never_panics_or_duplicates(
            cap in 0usize..24,
            weights in proptest::collection::vec(0u32..3, 0..12),
            ops in proptest::collection::vec((any::<u32>(), 0u64..10_000, 0usize..12, 0u32..4), 1..80),
        ) {
            let mut s = servers(&weights);
            let ord = order(s.len());
            let mut cache = vec![LblcrEntry::EMPTY; cap];
            for &(a, t, srv, act) in &ops {
                if let Some(x) = s.get_mut(srv) {
                    x.active = act;
                }
                let d = IpAddr::V4((a % 32).into());
                let now = Instant::from_secs(t);
                if let Some(id) = pick(&mut cache, list(&ord, &s), d, now, Duration::from_secs(60)) {
                    prop_assert!(s[usize::from(id)].weight() > 0);
                }
                if t % 5 == 0 {
                    gc(&mut cache, now, Duration::from_secs(3000));
                }
                if t % 11 == 0 && !s.is_empty() {
                    forget_server(&mut cache, (t as usize % s.len()) as ServerId);
                }
                for e in cache.iter().filter(|e| !e.is_empty()) {
                    let mut m = e.members().to_vec();
                    m.sort();
                    m.dedup();
                    prop_assert_eq!(m.len(), e.members().len());
                }
            }
        }
    }
}
