//! The fragment table: which way the first fragment of a datagram went, so that its later
//! fragments (no ports, nothing to look a connection up by) follow it, as Maglev and Katran
//! forward fragments.
//!
//! A `FragDecision` is filed under the datagram's reassembly key — source, destination,
//! identification, and for IPv4 the protocol (RFC 791; IPv6 keys by the first three,
//! RFC 8200 §4.5) — when the balancer forwards a first fragment, and read for every later one.
//! It lives [`FRAG_TIMEOUT`] (Linux's `ipfrag_time`, 30 s) from the first fragment, expired
//! lazily: a look-up ignores a stale slot and an insert reuses it, so the table asks for no
//! timer and an idle balancer stays idle.
//!
//! The table is open addressing over caller storage ([`FragSlot`]s, 64 bytes each; sized by
//! [`ConnStorage::slots_for`](super::ConnStorage::slots_for): one per 16 connections, 16 to
//! 4,096), hashed under the connection table's secret. An insert and a look-up read at most
//! [`FRAG_PROBE`] slots from the datagram's home slot; when all of them hold live decisions,
//! the insert replaces the one closest to expiry (the oldest: every decision lives the same
//! 30 s) and says so, for the balancer to count. A replaced or expired decision leaves its
//! later fragments without a way: the balancer drops them, counted, as it drops a later
//! fragment that overtook its first.

use managed::ManagedSlice;

use crate::hash::{siphash13, SipKey};
use crate::server::ServerId;
use crate::service::ServiceId;
use crate::time::{Duration, Instant};

use super::wheel::ms_to_tick_floor;

/// How long a first fragment's decision is kept: Linux's `net.ipv4.ipfrag_time` (and
/// `net.ipv6.ip6frag_time`), 30 s: the time a receiver waits for the rest of a datagram.
pub const FRAG_TIMEOUT: Duration = Duration::from_secs(30);

/// Slots an insert or a look-up reads from a datagram's home slot.
pub const FRAG_PROBE: usize = 8;

/// A datagram's reassembly key: addresses as the connection entries store them (16 bytes, an
/// IPv4 address in the first four), the identification, and the protocol (0 for IPv6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FragKey {
    pub(crate) v6: bool,
    pub(crate) proto: u8,
    pub(crate) id: u32,
    pub(crate) src: [u8; 16],
    pub(crate) dst: [u8; 16],
}

/// What the balancer did with a datagram's first fragment, for its later fragments to follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FragDecision {
    /// The first fragment was a reply, its source rewritten to `addr` (else a forward packet,
    /// its destination rewritten).
    pub(crate) to_client: bool,
    /// The address written (stored as in an entry).
    pub(crate) addr: [u8; 16],
    /// The server and service the datagram's bytes count on, if it belongs to a connection.
    pub(crate) conn: Option<(ServerId, ServiceId)>,
    /// The first fragment went by direct routing: unchanged, with `addr` (the real server) as
    /// next hop; the later ones go the same way.
    pub(crate) route: bool,
    /// The first fragment went in a tunnel to `addr` (the real server): the later ones are
    /// put in the same tunnel.
    pub(crate) tunnel: bool,
    /// `addr` is IPv6 (a tunnel's real server may be of the other family than the packet).
    pub(crate) addr_v6: bool,
}

/// One slot of the fragment table: a key and its decision, 64 bytes. All zero is free.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FragSlot {
    src: [u8; 16],
    dst: [u8; 16],
    addr: [u8; 16],
    id: u32,
    /// Expiry, in ticks of 1/16 s (wrapping).
    deadline: u32,
    server: ServerId,
    service: ServiceId,
    proto: u8,
    /// `USED`, `V6`, `TO_CLIENT`, `CONN`, `ROUTE`.
    flags: u8,
}

const USED: u8 = 1;
const V6: u8 = 2;
const TO_CLIENT: u8 = 4;
const CONN: u8 = 8;
const ROUTE: u8 = 16;
const TUNNEL: u8 = 32;
const ADDR_V6: u8 = 64;

impl FragSlot {
    /// A free slot.
    pub const EMPTY: FragSlot = FragSlot {
        src: [0; 16],
        dst: [0; 16],
        addr: [0; 16],
        id: 0,
        deadline: 0,
        server: 0,
        service: 0,
        proto: 0,
        flags: 0,
    };

    fn holds(&self, k: &FragKey) -> bool {
        self.flags & USED != 0
            && self.id == k.id
            && self.proto == k.proto
            && (self.flags & V6 != 0) == k.v6
            && self.src == k.src
            && self.dst == k.dst
    }

    /// Whether the slot holds a decision still live at `tick`.
    fn live(&self, tick: u32) -> bool {
        self.flags & USED != 0 && (self.deadline.wrapping_sub(tick) as i32) > 0
    }
}

/// The ticks of 1/16 s at `now`, truncated to 32 bits (wrapping every 8.5 years).
fn tick(now: Instant) -> u32 {
    ms_to_tick_floor(now.millis()) as u32
}

/// [`FRAG_TIMEOUT`] in ticks.
const TIMEOUT_TICKS: u32 = (FRAG_TIMEOUT.millis() * 16 / 1000) as u32;

/// The fragment table over caller storage. See the [module docs](self).
#[derive(Debug)]
pub(crate) struct FragTable<'a> {
    slots: ManagedSlice<'a, FragSlot>,
    secret: SipKey,
}

/// What [`FragTable::insert`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Filed {
    /// In a free or expired slot (or over the same datagram's older decision).
    Free,
    /// Over a live decision of another datagram.
    Replaced,
    /// Nowhere: the table has no slots.
    NoRoom,
}

impl<'a> FragTable<'a> {
    pub(crate) fn new(mut slots: ManagedSlice<'a, FragSlot>, secret: SipKey) -> Self {
        slots.fill(FragSlot::EMPTY);
        FragTable { slots, secret }
    }

    /// How many decisions the table holds at most.
    pub(crate) fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// Forgets every decision.
    pub(crate) fn clear(&mut self) {
        self.slots.fill(FragSlot::EMPTY);
    }

    /// The slots a datagram may sit in: `FRAG_PROBE` (or all, if fewer) from its home slot.
    fn window(&self, k: &FragKey) -> impl Iterator<Item = usize> {
        let n = self.slots.len();
        let mut bytes = [0u8; 38];
        bytes[..16].copy_from_slice(&k.src);
        bytes[16..32].copy_from_slice(&k.dst);
        bytes[32..36].copy_from_slice(&k.id.to_le_bytes());
        bytes[36] = k.proto;
        bytes[37] = u8::from(k.v6);
        let home = if n == 0 {
            0
        } else {
            // Multiply-shift onto [0, n): no division, no modulo bias worth the name.
            ((u128::from(siphash13(self.secret, &bytes)) * n as u128) >> 64) as usize
        };
        (0..FRAG_PROBE.min(n)).map(move |i| (home + i) % n)
    }

    /// The live decision for datagram `k` at `now`.
    pub(crate) fn get(&self, k: &FragKey, now: Instant) -> Option<FragDecision> {
        let t = tick(now);
        self.window(k)
            .map(|i| &self.slots[i])
            .find(|s| s.holds(k) && s.live(t))
            .map(|s| FragDecision {
                to_client: s.flags & TO_CLIENT != 0,
                addr: s.addr,
                conn: (s.flags & CONN != 0).then_some((s.server, s.service)),
                route: s.flags & ROUTE != 0,
                tunnel: s.flags & TUNNEL != 0,
                addr_v6: s.flags & ADDR_V6 != 0,
            })
    }

    /// Files decision `d` for datagram `k` at `now`, live for [`FRAG_TIMEOUT`]: over the same
    /// datagram's decision, else in a free or expired slot of its window, else over the live
    /// decision closest to expiry.
    pub(crate) fn insert(&mut self, k: &FragKey, d: &FragDecision, now: Instant) -> Filed {
        let t = tick(now);
        let mut best: Option<(usize, u32, Filed)> = None;
        for i in self.window(k) {
            let s = &self.slots[i];
            if s.holds(k) || !s.live(t) {
                best = Some((i, 0, Filed::Free));
                if s.holds(k) {
                    break;
                }
                continue;
            }
            let left = s.deadline.wrapping_sub(t);
            if best.is_none_or(|(_, l, f)| f == Filed::Replaced && left < l) {
                best = Some((i, left, Filed::Replaced));
            }
        }
        let Some((i, _, filed)) = best else {
            return Filed::NoRoom;
        };
        let (server, service) = d.conn.unwrap_or((0, 0));
        self.slots[i] = FragSlot {
            src: k.src,
            dst: k.dst,
            addr: d.addr,
            id: k.id,
            deadline: t.wrapping_add(TIMEOUT_TICKS),
            server,
            service,
            proto: k.proto,
            flags: USED
                | if k.v6 { V6 } else { 0 }
                | if d.to_client { TO_CLIENT } else { 0 }
                | if d.route { ROUTE } else { 0 }
                | if d.tunnel { TUNNEL } else { 0 }
                | if d.addr_v6 { ADDR_V6 } else { 0 }
                | if d.conn.is_some() { CONN } else { 0 },
        };
        filed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec;

    fn key(id: u32) -> FragKey {
        FragKey {
            v6: false,
            proto: 17,
            id,
            src: [192, 0, 2, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            dst: [10, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        }
    }

    fn decision(a: u8) -> FragDecision {
        FragDecision {
            to_client: false,
            addr: [10, 1, 0, a, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            conn: Some((u16::from(a), 0)),
            route: a % 2 == 0,
            tunnel: a % 3 == 0,
            addr_v6: a % 5 == 0,
        }
    }

    #[test]
    fn decisions_live_for_ipfrag_time() {
        let mut t = FragTable::new(vec![FragSlot::EMPTY; 16].into(), SipKey([1, 2]));
        let now = Instant::from_secs(100);
        assert_eq!(t.insert(&key(7), &decision(1), now), Filed::Free);
        assert_eq!(t.get(&key(7), now), Some(decision(1)));
        assert_eq!(t.get(&key(8), now), None);
        let mut other = key(7);
        other.proto = 6;
        assert_eq!(t.get(&other, now), None, "IPv4 keys by protocol too");
        let late = now + Duration::from_millis(FRAG_TIMEOUT.millis() - 100);
        assert_eq!(t.get(&key(7), late), Some(decision(1)));
        assert_eq!(t.get(&key(7), now + FRAG_TIMEOUT), None);
        // The expired slot is free again.
        assert_eq!(t.insert(&key(9), &decision(2), now + FRAG_TIMEOUT), Filed::Free);
    }

    #[test]
    fn a_full_window_replaces_the_oldest_decision() {
        let mut t = FragTable::new(vec![FragSlot::EMPTY; 8].into(), SipKey([3, 4]));
        let start = Instant::from_secs(10);
        for id in 0..8 {
            let now = start + Duration::from_secs(u64::from(id));
            assert_eq!(t.insert(&key(id), &decision(1), now), Filed::Free);
        }
        let now = start + Duration::from_secs(8);
        // The same datagram again: over its own decision.
        assert_eq!(t.insert(&key(3), &decision(2), now), Filed::Free);
        assert_eq!(t.get(&key(3), now), Some(decision(2)));
        assert_eq!(t.insert(&key(100), &decision(3), now), Filed::Replaced);
        assert_eq!(t.get(&key(0), now), None, "the oldest went");
        for id in 1..8 {
            assert!(t.get(&key(id), now).is_some(), "{id}");
        }
        assert_eq!(t.get(&key(100), now), Some(decision(3)));
        let mut empty = FragTable::new(ManagedSlice::Borrowed(&mut []), SipKey([0, 0]));
        assert_eq!(empty.insert(&key(1), &decision(1), now), Filed::NoRoom);
        assert_eq!(empty.get(&key(1), now), None);
    }
}
