//! The neighbour cache and the hold queue: hardware addresses of next hops on Ethernet, and the
//! frames that wait while one is being resolved.
//!
//! * A next hop found in the cache is used at once. An entry older than [`REFRESH_AFTER`] is
//!   still used, and a new request (ARP request or neighbour solicitation) is sent — at most
//!   one a [`RETRY`] — so a moved host is noticed without stalling traffic.
//! * An unknown next hop gets an *incomplete* entry and a request; the frame is **held** in the
//!   hold queue. Requests are repeated every [`RETRY`]; after [`MAX_REQUESTS`] unanswered ones
//!   the entry is freed and its held frames are dropped (counted in
//!   [`GatewayCounters::unresolved_drops`](crate::GatewayCounters::unresolved_drops)). A frame
//!   that finds the hold queue full is dropped at once (`hold_full_drops`).
//! * When the cache is full, the least recently confirmed complete entry is replaced; when
//!   every entry is incomplete, the frame is dropped (`hold_full_drops`).
//! * Answers are learnt from ARP replies and requests and from neighbour advertisements and
//!   solicitations (source link-layer address option) addressed to us or to a virtual address.
//!
//! All state is in caller-owned slots that are all zero bits when empty.

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use lb_core::Instant;
use smoltcp::wire::EthernetAddress;

/// Time after which a cache entry is refreshed (it is still used meanwhile): 60 s.
pub const REFRESH_AFTER: u64 = 60_000;

/// Time between two requests for the same address: 1 s.
pub const RETRY: u64 = 1_000;

/// Requests sent for an unknown address before its held frames are dropped.
pub const MAX_REQUESTS: u8 = 3;

const FREE: u8 = 0;
const INCOMPLETE: u8 = 1;
const COMPLETE: u8 = 2;

/// An address, as stored: family and 16 bytes (IPv4 in the first four).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Key {
    v6: bool,
    ip: [u8; 16],
}

impl Key {
    pub(crate) fn of(ip: IpAddr) -> Key {
        match ip {
            IpAddr::V4(a) => {
                let mut b = [0; 16];
                b[..4].copy_from_slice(&a.octets());
                Key { v6: false, ip: b }
            }
            IpAddr::V6(a) => Key {
                v6: true,
                ip: a.octets(),
            },
        }
    }

    pub(crate) fn from_parts(v6: bool, ip: [u8; 16]) -> Key {
        Key { v6, ip }
    }

    pub(crate) fn is_v6(&self) -> bool {
        self.v6
    }

    pub(crate) fn bytes(&self) -> [u8; 16] {
        self.ip
    }

    pub(crate) fn addr(&self) -> IpAddr {
        if self.v6 {
            IpAddr::V6(Ipv6Addr::from(self.ip))
        } else {
            IpAddr::V4(Ipv4Addr::new(
                self.ip[0], self.ip[1], self.ip[2], self.ip[3],
            ))
        }
    }
}

/// One neighbour-cache entry (48 bytes; all zero when free).
#[derive(Debug, Clone, Copy)]
pub struct NeighbourSlot {
    state: u8,
    v6: bool,
    requests: u8,
    mac: [u8; 6],
    ip: [u8; 16],
    /// When it was last confirmed (complete) or first requested (incomplete), in ms.
    updated: u64,
    /// When the next request may (complete) or must (incomplete) be sent, in ms.
    next_request: u64,
}

impl NeighbourSlot {
    /// A free slot.
    pub const EMPTY: NeighbourSlot = NeighbourSlot {
        state: FREE,
        v6: false,
        requests: 0,
        mac: [0; 6],
        ip: [0; 16],
        updated: 0,
        next_request: 0,
    };

    fn key(&self) -> Key {
        Key {
            v6: self.v6,
            ip: self.ip,
        }
    }

    fn set_key(&mut self, k: Key) {
        self.v6 = k.v6;
        self.ip = k.ip;
    }
}

/// What [`Neighbours::lookup`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    /// Known: send to this address; `refresh` asks for a request to be sent too.
    Found {
        /// The next hop's hardware address.
        mac: EthernetAddress,
        /// The entry is old: send a request too (it is still used meanwhile).
        refresh: bool,
    },
    /// Being resolved: hold the frame; `request` asks for the first request to be sent.
    Resolving {
        /// This lookup started the resolution: send the first request.
        request: bool,
    },
    /// No slot to track it: drop the frame.
    NoRoom,
}

/// What a timer pass asks for, one address at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Due {
    /// Send another request for this address.
    Request(IpAddr),
    /// Resolution failed: drop the frames held for it.
    GiveUp(IpAddr),
}

/// The cache over caller-owned slots (emptied by [`new`](Self::new)).
pub struct Neighbours<'a> {
    slots: &'a mut [NeighbourSlot],
}

impl<'a> Neighbours<'a> {
    /// The cache over `slots`, all of them freed.
    pub fn new(slots: &'a mut [NeighbourSlot]) -> Self {
        slots.fill(NeighbourSlot::EMPTY);
        Neighbours { slots }
    }

    fn find(&self, k: Key) -> Option<usize> {
        self.slots
            .iter()
            .position(|s| s.state != FREE && s.key() == k)
    }

    /// A free slot, else the least recently confirmed complete one.
    fn victim(&self) -> Option<usize> {
        if let Some(i) = self.slots.iter().position(|s| s.state == FREE) {
            return Some(i);
        }
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.state == COMPLETE)
            .min_by_key(|(_, s)| s.updated)
            .map(|(i, _)| i)
    }

    /// The hardware address for `ip`, starting a resolution if it is unknown.
    pub fn lookup(&mut self, ip: IpAddr, now: Instant) -> Lookup {
        let now = now.millis();
        let k = Key::of(ip);
        if let Some(i) = self.find(k) {
            let s = &mut self.slots[i];
            if s.state == INCOMPLETE {
                return Lookup::Resolving { request: false };
            }
            let refresh = now.saturating_sub(s.updated) >= REFRESH_AFTER && now >= s.next_request;
            if refresh {
                s.next_request = now + RETRY;
            }
            return Lookup::Found {
                mac: EthernetAddress(s.mac),
                refresh,
            };
        }
        let Some(i) = self.victim() else {
            return Lookup::NoRoom;
        };
        let s = &mut self.slots[i];
        *s = NeighbourSlot::EMPTY;
        s.state = INCOMPLETE;
        s.set_key(k);
        s.requests = 1;
        s.updated = now;
        s.next_request = now + RETRY;
        Lookup::Resolving { request: true }
    }

    /// Records that `ip` is at `mac`. Creates an entry only if `create` (an answer to us);
    /// otherwise only updates a known one. Returns whether frames may be waiting for it.
    pub fn learn(&mut self, ip: IpAddr, mac: EthernetAddress, now: Instant, create: bool) -> bool {
        if !mac.is_unicast() {
            return false;
        }
        let k = Key::of(ip);
        let i = match self.find(k) {
            Some(i) => i,
            None if create => match self.victim() {
                Some(i) => {
                    self.slots[i] = NeighbourSlot::EMPTY;
                    self.slots[i].set_key(k);
                    i
                }
                None => return false,
            },
            None => return false,
        };
        let s = &mut self.slots[i];
        let was_incomplete = s.state == INCOMPLETE;
        s.state = COMPLETE;
        s.mac = mac.0;
        s.requests = 0;
        s.updated = now.millis();
        s.next_request = now.millis();
        was_incomplete
    }

    /// The next due request or give-up, if any (call until `None`).
    pub fn due(&mut self, now: Instant) -> Option<Due> {
        let now = now.millis();
        let s = self
            .slots
            .iter_mut()
            .find(|s| s.state == INCOMPLETE && s.next_request <= now)?;
        let ip = s.key().addr();
        if s.requests >= MAX_REQUESTS {
            *s = NeighbourSlot::EMPTY;
            return Some(Due::GiveUp(ip));
        }
        s.requests += 1;
        s.next_request = now + RETRY;
        Some(Due::Request(ip))
    }

    /// When [`due`](Self::due) next has something to do.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.slots
            .iter()
            .filter(|s| s.state == INCOMPLETE)
            .map(|s| s.next_request)
            .min()
            .map(Instant::from_millis)
    }

    /// Complete entries, for diagnostics: `(address, hardware address)`.
    pub fn entries(&self) -> impl Iterator<Item = (IpAddr, EthernetAddress)> + '_ {
        self.slots
            .iter()
            .filter(|s| s.state == COMPLETE)
            .map(|s| (s.key().addr(), EthernetAddress(s.mac)))
    }
}

/// One held frame (1540 bytes; all zero when free): an Ethernet frame whose destination
/// address is filled in when its next hop resolves.
#[derive(Debug, Clone, Copy)]
pub struct HoldSlot {
    used: bool,
    v6: bool,
    len: u16,
    seq: u32,
    next_hop: [u8; 16],
    frame: [u8; crate::MAX_FRAME],
}

impl HoldSlot {
    /// A free slot.
    pub const EMPTY: HoldSlot = HoldSlot {
        used: false,
        v6: false,
        len: 0,
        seq: 0,
        next_hop: [0; 16],
        frame: [0; crate::MAX_FRAME],
    };
}

/// The hold queue over caller-owned slots (emptied by [`new`](Self::new)).
pub struct Hold<'a> {
    slots: &'a mut [HoldSlot],
    seq: u32,
}

impl<'a> Hold<'a> {
    /// The queue over `slots`, all of them freed.
    pub fn new(slots: &'a mut [HoldSlot]) -> Self {
        for s in slots.iter_mut() {
            s.used = false;
        }
        Hold { slots, seq: 0 }
    }

    /// Holds `frame` (a whole Ethernet frame) for `next_hop`; `false` if the queue is full or
    /// the frame too long.
    pub fn push(&mut self, next_hop: IpAddr, frame: &[u8]) -> bool {
        if frame.len() > crate::MAX_FRAME {
            return false;
        }
        let Some(s) = self.slots.iter_mut().find(|s| !s.used) else {
            return false;
        };
        let k = Key::of(next_hop);
        s.used = true;
        s.v6 = k.v6;
        s.next_hop = k.ip;
        s.len = frame.len() as u16;
        s.seq = self.seq;
        self.seq = self.seq.wrapping_add(1);
        s.frame[..frame.len()].copy_from_slice(frame);
        true
    }

    /// The oldest frame held for `next_hop`, removed from the queue: calls `f` with it (so the
    /// destination address can be written) and returns what `f` returns.
    pub fn pop_for<R>(&mut self, next_hop: IpAddr, f: impl FnOnce(&mut [u8]) -> R) -> Option<R> {
        let k = Key::of(next_hop);
        let seq = self.seq;
        let s = self
            .slots
            .iter_mut()
            .filter(|s| s.used && s.v6 == k.v6 && s.next_hop == k.ip)
            .min_by_key(|s| s.seq.wrapping_sub(seq))?;
        s.used = false;
        let len = usize::from(s.len);
        Some(f(&mut s.frame[..len]))
    }

    /// Drops every frame held for `next_hop`; returns how many.
    pub fn drop_for(&mut self, next_hop: IpAddr) -> u64 {
        let k = Key::of(next_hop);
        let mut n = 0;
        for s in self.slots.iter_mut() {
            if s.used && s.v6 == k.v6 && s.next_hop == k.ip {
                s.used = false;
                n += 1;
            }
        }
        n
    }

    /// Frames held now.
    pub fn len(&self) -> usize {
        self.slots.iter().filter(|s| s.used).count()
    }

    /// True when no frame is held.
    pub fn is_empty(&self) -> bool {
        !self.slots.iter().any(|s| s.used)
    }
}
