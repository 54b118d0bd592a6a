//! The connection table: every live connection and persistence template, found by a keyed hash
//! of the client side, expired by a lazy timer wheel (docs/ipvs-semantics.md §1 "Connection entry" and
//! "Tables", §2.7 timer semantics, §4.3 templates, §8 memory per connection).
//!
//! It is a data structure only: the balancer drives it (state machine, scheduling and counters
//! are the balancer's). Three parts, all in caller-owned storage of a fixed capacity:
//!
//! * a **slab** of [`ConnSlot`]s addressed by [`Handle`]s ([`entry`]): an [`Entry`] of 40 bytes
//!   (what IPVS keeps per connection and no more) plus two 4-byte timer-wheel links;
//! * an **index** ([`index`]) of 8-byte [`IndexSlot`]s, open addressing with linear probing and
//!   backward-shift deletion, keyed by [`flow_hash`] of (protocol, client address, client port)
//!   under a caller secret. Both directions of a flow carry those fields, so one lookup serves
//!   forward packets and replies; the caller's predicate checks the rest of the tuple;
//! * a **timer wheel** ([`wheel`]) of 4-byte [`WheelBucket`]s, 1/16 s per bucket, with lazy
//!   re-arm: a packet only stores the new deadline;
//! * beside them, the **fragment table** ([`fragments`]) of 64-byte [`FragSlot`]s: the balancer
//!   files there where a datagram's first fragment went, for its later fragments.
//!
//! # Bytes per entry
//!
//! [`ConnStorage::slots_for`]`(n)` sizes the three parts for `n` entries so that together they
//! take **at most 64 bytes per entry** (exactly 64 for every `n ≥ 17`):
//!
//! | part | bytes per entry |
//! |---|---|
//! | slab slot: entry 40 + wheel links 8 | 48 |
//! | index: `2n − b/2` slots of 8 bytes (load ≤ 53.3 % for `n ≥ 128`, ~50 % for big `n`) | 16 − 4b/n |
//! | wheel: `b` buckets of 4 bytes, `b = clamp(next_pow2(n)/8, 16, 65536)` | 4b/n |
//!
//! The fragment table adds one 64-byte slot per 16 entries (16 to 4,096 slots): 4 bytes per
//! entry from 256 to 65,536 entries, less above, 1 KiB below.
//!
//! A million entries take 64 MiB (and 256 KiB of fragment table); IPVS takes about 320 bytes
//! per connection (§8). The index
//! slot count need not be a power of two (the home slot is a multiply-shift of the tag), which is
//! what lets the index take exactly the bytes the wheel leaves.
//!
//! # Time
//!
//! Deadlines and timeouts are stored in ticks of 1/16 s ([`TICKS_PER_SEC`]) as `u32`, with
//! wrap-safe comparisons; deadlines are clamped to [`MAX_TIMEOUT`] (about 776 days) ahead. The
//! wheel reports an entry no earlier than its deadline and at most one tick (62.5 ms) after it,
//! whatever the wheel's span: deadlines beyond the span are filed again as the wheel turns.
//!
//! # Example
//!
//! ```
//! use core::net::SocketAddr;
//! use lb_core::conn::{ConnResources, ConnStorage, ConnTable, Entry, Expire};
//! use lb_core::hash::SipKey;
//! use lb_core::{Duration, Instant, Protocol};
//!
//! const N: usize = 64;
//! type Res = ConnResources<N, { ConnStorage::slots_for(N).index_slots },
//!                             { ConnStorage::slots_for(N).wheel_buckets },
//!                             { ConnStorage::slots_for(N).fragment_slots }>;
//! let mut res = Res::new();
//! let now = Instant::from_secs(1);
//! let mut table = ConnTable::new(res.storage(), SipKey([1, 2]), now);
//!
//! let client: SocketAddr = "192.0.2.7:40000".parse().unwrap();
//! let mut e = Entry::new(Protocol::Tcp, client);
//! e.vport = 80;
//! e.set_timeout(Duration::from_secs(60));
//! let h = table.insert(e, now + e.timeout()).unwrap();
//!
//! let hash = table.hash(Protocol::Tcp, client.ip(), client.port());
//! assert_eq!(table.find(hash, |e| e.key_matches(Protocol::Tcp, client.ip(), client.port())
//!                                  && e.vport == 80), Some(h));
//! assert_eq!(table.expire(now + Duration::from_secs(61), |_, _| Expire::Remove), 1);
//! assert!(table.is_empty());
//! ```

pub mod entry;
pub mod fragments;
pub mod index;
pub mod wheel;

#[cfg(test)]
mod tests;

use core::net::IpAddr;

use managed::ManagedSlice;

use crate::addr::Protocol;
use crate::hash::{flow_hash, flow_hash_bytes, SipKey};
use crate::time::Instant;

pub use entry::{ConnFlags, ConnSlot, Entry, Handle};
pub use fragments::{FragSlot, FRAG_TIMEOUT};
use fragments::FragTable;
pub use index::IndexSlot;
pub use wheel::{
    Expire, WheelBucket, EVICT_MAX_BUCKETS, EVICT_MAX_ENTRIES, EVICT_SCAN_SLOTS, MAX_TIMEOUT, TICKS_PER_SEC,
};

pub(crate) use wheel::EXPIRE_BATCH;
use wheel::{ms_to_tick_floor, BUCKET, FREE, MAX_BUCKETS};

/// The most entries a table holds, whatever its storage (handles keep the top bit free).
pub const MAX_CAPACITY: usize = (BUCKET - 16) as usize;

/// [`ConnTable::insert`] found no free slot: the table holds `capacity()` entries. The balancer
/// may free one with [`ConnTable::evict_candidate`] or drop the packet (`DropReason::TableFull`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Full;

impl core::fmt::Display for Full {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("connection table full")
    }
}

/// How much storage a table of a given capacity needs; from [`ConnStorage::slots_for`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnSizes {
    /// Slab slots (`ConnSlot`, 48 bytes each): the capacity.
    pub entries: usize,
    /// Index slots (`IndexSlot`, 8 bytes each).
    pub index_slots: usize,
    /// Wheel buckets (`WheelBucket`, 4 bytes each); a power of two.
    pub wheel_buckets: usize,
    /// Fragment-table slots (`FragSlot`, 64 bytes each): one per 16 entries, 16 to 4,096
    /// (none for a table of no entries): where the balancer files the decisions of first
    /// fragments for their later fragments.
    pub fragment_slots: usize,
}

impl ConnSizes {
    /// Total bytes of the three arrays.
    pub const fn bytes(&self) -> usize {
        self.entries * core::mem::size_of::<ConnSlot>()
            + self.index_slots * core::mem::size_of::<IndexSlot>()
            + self.wheel_buckets * core::mem::size_of::<WheelBucket>()
            + self.fragment_slots * core::mem::size_of::<FragSlot>()
    }
}

/// The memory a connection table works in, owned by the caller: lent by a [`ConnResources`]
/// (a `static` on a microcontroller; spell its type with `conn_resources!(N)`) or, with the
/// `alloc` feature, on the heap with `ConnStorage::alloc(capacity)`.
#[derive(Debug)]
pub struct ConnStorage<'a> {
    /// The slab; its length is the capacity (see `ConnTable::new` for the limits).
    pub(crate) entries: ManagedSlice<'a, ConnSlot>,
    /// The index; needs more slots than entries, about twice as many for speed.
    pub(crate) index: ManagedSlice<'a, IndexSlot>,
    /// The wheel buckets; the largest power of two not above the length is used.
    pub(crate) wheel: ManagedSlice<'a, WheelBucket>,
    /// The fragment table's slots (may be empty: later fragments are then dropped).
    pub(crate) fragments: ManagedSlice<'a, FragSlot>,
}

impl<'a> ConnStorage<'a> {
    /// Storage from three caller-owned arrays, with no fragment table; size them with
    /// [`slots_for`](Self::slots_for).
    #[cfg(any(test, feature = "internals"))]
    pub fn new(
        entries: impl Into<ManagedSlice<'a, ConnSlot>>,
        index: impl Into<ManagedSlice<'a, IndexSlot>>,
        wheel: impl Into<ManagedSlice<'a, WheelBucket>>,
    ) -> Self {
        ConnStorage {
            entries: entries.into(),
            index: index.into(),
            wheel: wheel.into(),
            fragments: ManagedSlice::Borrowed(&mut []),
        }
    }

    /// The same storage with `fragments` as the fragment table's slots.
    #[cfg(any(test, feature = "internals"))]
    pub fn with_fragments(self, fragments: impl Into<ManagedSlice<'a, FragSlot>>) -> Self {
        ConnStorage {
            fragments: fragments.into(),
            ..self
        }
    }

    /// How many index slots and wheel buckets a table of `capacity` entries needs: at most
    /// 64 bytes per entry in all (see the module docs). A `const fn`, for array lengths.
    pub const fn slots_for(capacity: usize) -> ConnSizes {
        let n = if capacity > MAX_CAPACITY {
            MAX_CAPACITY
        } else {
            capacity
        };
        let mut b = (n.next_power_of_two() / 8) as u64;
        if b < 16 {
            b = 16;
        }
        if b > 65536 {
            b = 65536;
        }
        let b = b as usize;
        let budget = (2 * n).saturating_sub(b / 2);
        let index_slots = if budget > n + n / 2 {
            budget
        } else {
            2 * n + 1
        };
        let mut fragment_slots = n / 16;
        if fragment_slots < 16 {
            fragment_slots = 16;
        }
        if fragment_slots > 4096 {
            fragment_slots = 4096;
        }
        if n == 0 {
            fragment_slots = 0;
        }
        ConnSizes {
            entries: n,
            index_slots,
            wheel_buckets: b,
            fragment_slots,
        }
    }

    /// Heap storage for `capacity` entries, sized by [`slots_for`](Self::slots_for).
    #[cfg(feature = "alloc")]
    pub fn alloc(capacity: usize) -> ConnStorage<'static> {
        use alloc::vec;
        let s = Self::slots_for(capacity);
        ConnStorage {
            entries: ManagedSlice::Owned(vec![ConnSlot::EMPTY; s.entries]),
            index: ManagedSlice::Owned(vec![IndexSlot::EMPTY; s.index_slots]),
            wheel: ManagedSlice::Owned(vec![WheelBucket::EMPTY; s.wheel_buckets]),
            fragments: ManagedSlice::Owned(vec![FragSlot::EMPTY; s.fragment_slots]),
        }
    }
}

/// Statically sized storage for an embedded table: `N` entries, `SLOTS` index slots,
/// `BUCKETS` wheel buckets and `FRAGS` fragment-table slots, all zero bits after
/// [`new`](Self::new), so a `static` of it lands in `.bss`. Spell the type with
/// [`conn_resources!`](crate::conn_resources) (`conn_resources!(1024)`), which sizes the index,
/// the wheel and the fragment table with [`ConnStorage::slots_for`], and lend it with
/// [`storage`](Self::storage).
#[derive(Debug)]
pub struct ConnResources<
    const N: usize,
    const SLOTS: usize,
    const BUCKETS: usize,
    const FRAGS: usize,
> {
    entries: [ConnSlot; N],
    index: [IndexSlot; SLOTS],
    wheel: [WheelBucket; BUCKETS],
    fragments: [FragSlot; FRAGS],
}

impl<const N: usize, const SLOTS: usize, const BUCKETS: usize, const FRAGS: usize>
    ConnResources<N, SLOTS, BUCKETS, FRAGS>
{
    /// All-zero resources. Large instances belong in a `static` (or a `StaticCell`), not on
    /// the stack.
    pub const fn new() -> Self {
        ConnResources {
            entries: [ConnSlot::EMPTY; N],
            index: [IndexSlot::EMPTY; SLOTS],
            wheel: [WheelBucket::EMPTY; BUCKETS],
            fragments: [FragSlot::EMPTY; FRAGS],
        }
    }

    /// Lends the arrays as table storage.
    pub fn storage(&mut self) -> ConnStorage<'_> {
        ConnStorage {
            entries: ManagedSlice::Borrowed(&mut self.entries[..]),
            index: ManagedSlice::Borrowed(&mut self.index[..]),
            wheel: ManagedSlice::Borrowed(&mut self.wheel[..]),
            fragments: ManagedSlice::Borrowed(&mut self.fragments[..]),
        }
    }
}

impl<const N: usize, const SLOTS: usize, const BUCKETS: usize, const FRAGS: usize> Default
    for ConnResources<N, SLOTS, BUCKETS, FRAGS>
{
    fn default() -> Self {
        Self::new()
    }
}

/// The first entry under `tag` that `pred` accepts, probing `index` from position `pos`
/// ([`index::probe`] with each candidate's entry read from `slots`): the lookup of
/// [`ConnTable::find`], [`find_counted`](ConnTable::find_counted) and
/// [`find_burst`](ConnTable::find_burst). Adds the slots read to `probes`. The caller passes
/// the slices, dereferenced once: reading the slab through the table inside the predicate cost
/// about 7 instructions per packet on the established-flow path.
#[inline(always)]
fn probe_entries<F: FnMut(&Entry) -> bool>(
    index: &[IndexSlot],
    slots: &[ConnSlot],
    tag: u32,
    pos: usize,
    probes: &mut u32,
    mut pred: F,
) -> Option<Handle> {
    let raw = index::probe(index, tag, pos, probes, |raw| {
        slots
            .get((raw as usize).wrapping_sub(1))
            .is_some_and(|n| pred(&n.entry))
    });
    Handle::from_raw(raw)
}

/// Burst size of [`ConnTable::find_burst`]'s stages.
const BURST: usize = 32;

/// The connection table. See the [module docs](self).
#[derive(Debug)]
pub struct ConnTable<'a> {
    slots: ManagedSlice<'a, ConnSlot>,
    index: ManagedSlice<'a, IndexSlot>,
    wheel: ManagedSlice<'a, WheelBucket>,
    secret: SipKey,
    capacity: u32,
    len: u32,
    /// Slots `[0, high)` have been handed out at least once; the rest are untouched.
    high: u32,
    /// First free slot below `high` (raw handle), chained through `next`; 0 = none.
    free: u32,
    /// Wheel buckets in use minus one (a power of two minus one).
    mask: u64,
    /// First wheel position (absolute tick) not yet walked.
    cursor: u64,
    /// No bucket at a position in `[cursor, earliest)` is non-empty.
    earliest: u64,
    /// The latest `now` seen, in milliseconds.
    clock_ms: u64,
    /// The entry last handed out by `poll_expired` (raw handle), 0 = none.
    detached: u32,
    /// The entry inserted last (raw handle, 0 = none), not yet filed on the wheel: it is filed
    /// by its deadline at the next insert or wheel walk, so the state transition that follows
    /// a new connection's insert (3 s → SYN_RECV's timeout) costs no second filing.
    fresh: u32,
    /// Due entries `poll_expired` took off the wheel in one staged pass and hands out one by
    /// one, with where their index slots are (see [`wheel`], "Staged expiry").
    pending: wheel::Pending,
    /// The decisions of first fragments, for the later ones (the balancer's; see
    /// [`fragments`]).
    pub(crate) fragments: FragTable<'a>,
}

impl<'a> ConnTable<'a> {
    /// The secret the table hashes under (the balancer keys its reply limiter with it too).
    pub(crate) fn secret(&self) -> SipKey {
        self.secret
    }

    /// A table in `storage`, hashing under `secret` (draw it from a good random source at start,
    /// so nobody can craft flows that collide), with its clock at `now`.
    ///
    /// The capacity is the slab length, limited to one less than the index length and to
    /// [`MAX_CAPACITY`]; the wheel uses the largest power of two of buckets its slice holds (at
    /// most 2^24). A wheel of fewer than 2 buckets gives a table of capacity 0. Check
    /// [`capacity`](Self::capacity) if the storage was not sized by
    /// [`ConnStorage::slots_for`]. Costs a pass over the index and wheel (clearing them).
    pub fn new(storage: ConnStorage<'a>, secret: SipKey, now: Instant) -> Self {
        let ConnStorage {
            entries,
            mut index,
            mut wheel,
            fragments,
        } = storage;
        let index_len = index.len().min(u32::MAX as usize);
        let wheel_len = wheel.len().min(MAX_BUCKETS);
        let buckets = if wheel_len == 0 {
            1
        } else {
            1usize << wheel_len.ilog2()
        };
        let capacity = if buckets < 2 {
            0
        } else {
            entries
                .len()
                .min(index_len.saturating_sub(1))
                .min(MAX_CAPACITY)
        };
        index::clear(&mut index);
        wheel.fill(WheelBucket::EMPTY);
        let cursor = ms_to_tick_floor(now.millis());
        ConnTable {
            slots: entries,
            index,
            wheel,
            secret,
            capacity: capacity as u32,
            len: 0,
            high: 0,
            free: 0,
            mask: buckets as u64 - 1,
            cursor,
            earliest: cursor,
            clock_ms: now.millis(),
            detached: 0,
            fresh: 0,
            pending: wheel::Pending::EMPTY,
            fragments: FragTable::new(fragments, secret),
        }
    }

    /// The keyed hash of a flow's client side, for [`find`](Self::find): `flow_hash` under this
    /// table's secret of (protocol, client address, client port). For a reply packet these are
    /// its destination protocol, address and port.
    #[inline]
    pub fn hash(&self, proto: Protocol, client_addr: IpAddr, client_port: u16) -> u64 {
        flow_hash(self.secret, proto, client_addr, client_port)
    }

    /// [`hash`](Self::hash) of a client address stored as an entry stores it (16 bytes, IPv4
    /// in the first four): the datapath's form.
    #[inline(always)]
    pub fn hash_bytes(&self, proto: Protocol, v6: bool, addr: &[u8; 16], port: u16) -> u64 {
        flow_hash_bytes(self.secret, proto, v6, addr, port)
    }

    /// The hash an entry is indexed under.
    pub fn hash_of(&self, entry: &Entry) -> u64 {
        self.hash(entry.proto(), entry.client_addr(), entry.client_port())
    }

    /// How many entries are live.
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// Whether no entry is live.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// How many entries the table can hold.
    pub fn capacity(&self) -> usize {
        self.capacity as usize
    }

    /// Adds `entry`, indexed under its key and expiring at `deadline` (for a new IPVS entry:
    /// `now + 3 s`, then whatever the first state transition sets, §2.7). Entries may share a
    /// key; the table does not check for duplicates. Fails only when the table is full.
    pub fn insert(&mut self, entry: Entry, deadline: Instant) -> Result<Handle, Full> {
        let hash = self.hash_of(&entry);
        self.insert_hashed(entry, deadline, hash)
    }

    /// [`insert`](Self::insert) for a caller that already computed `hash` = [`hash_of`]
    /// (`entry`) for its lookup (the new-connection path): the flow is not hashed twice.
    ///
    /// [`hash_of`]: Self::hash_of
    pub(crate) fn insert_hashed(
        &mut self,
        entry: Entry,
        deadline: Instant,
        hash: u64,
    ) -> Result<Handle, Full> {
        debug_assert_eq!(hash, self.hash_of(&entry));
        if self.len >= self.capacity {
            return Err(Full);
        }
        let raw = if self.free != 0 {
            let raw = self.free;
            self.free = self.slot(raw).map_or(0, |n| n.next);
            raw
        } else {
            self.high += 1;
            self.high
        };
        let tag = index::tag_of(hash);
        let d = self.encode_deadline(deadline);
        let Some(node) = self.slots.get_mut(raw as usize - 1) else {
            return Err(Full);
        };
        node.entry = entry;
        node.entry.deadline = d;
        node.prev = wheel::FRESH;
        if index::insert(&mut self.index, tag, raw).is_none() {
            // Cannot happen: the index keeps more slots than entries. Give the slot back.
            self.free_slot(raw);
            return Err(Full);
        }
        // The previous new entry is filed now, by the deadline its first packet gave it; this
        // one waits for its own.
        self.file_fresh();
        self.fresh = raw;
        self.len += 1;
        Handle::from_raw(raw).ok_or(Full)
    }

    /// The slab slot of raw handle `raw` (live or not); `None` for 0 or out of range.
    #[inline(always)]
    pub(super) fn slot(&self, raw: u32) -> Option<&ConnSlot> {
        self.slots.get((raw as usize).wrapping_sub(1))
    }

    /// [`slot`](Self::slot), mutably.
    #[inline(always)]
    pub(super) fn slot_mut(&mut self, raw: u32) -> Option<&mut ConnSlot> {
        self.slots.get_mut((raw as usize).wrapping_sub(1))
    }

    /// The slab slot of a live entry.
    fn live(&self, h: Handle) -> Option<&ConnSlot> {
        if h.raw() > self.high {
            return None;
        }
        self.slots.get(h.index()).filter(|n| n.prev != FREE)
    }

    fn free_slot(&mut self, raw: u32) {
        let free = self.free;
        if let Some(n) = self.slot_mut(raw) {
            n.prev = FREE;
            n.next = free;
            self.free = raw;
        }
    }

    /// Removes a live entry and returns it; `None` if `h` names no live entry.
    pub fn remove(&mut self, h: Handle) -> Option<Entry> {
        let entry = self.live(h)?.entry;
        let raw = h.raw();
        match self.pending.take_hint(raw) {
            // The entry `poll_expired` just handed out: its tag and index slot were found
            // while its batch was staged (no second hash, the index line already read).
            Some((tag, pos)) => index::remove_hinted(&mut self.index, tag, raw, pos),
            None => {
                let tag = index::tag_of(self.hash_of(&entry));
                index::remove(&mut self.index, tag, raw)
            }
        };
        self.unlink(raw);
        self.free_slot(raw);
        self.len -= 1;
        Some(entry)
    }

    /// The live entry `h` names.
    pub fn get(&self, h: Handle) -> Option<&Entry> {
        self.live(h).map(|n| &n.entry)
    }

    /// The live entry `h` names, to change its non-key fields (state, flags, control, timeout,
    /// counters). Change its deadline with [`touch`](Self::touch).
    pub fn get_mut(&mut self, h: Handle) -> Option<&mut Entry> {
        self.live(h)?;
        self.slots.get_mut(h.index()).map(|n| &mut n.entry)
    }

    /// The deadline of the live entry `h` (rounded up to a tick).
    pub fn deadline(&self, h: Handle) -> Option<Instant> {
        let n = self.live(h)?;
        Some(Instant::from_millis(wheel::tick_to_ms_ceil(
            self.deadline_abs(n.entry.deadline),
        )))
    }

    /// Sets the deadline of entry `h`: per packet, `now + timeout` (IPVS re-arms the timer on
    /// every packet, §2.7). O(1): a later deadline is only stored (the wheel files the entry
    /// again lazily when its old bucket fires); an earlier one moves the entry to its bucket.
    /// Does nothing if `h` names no live entry.
    pub fn touch(&mut self, h: Handle, deadline: Instant) {
        let Some(n) = self.live(h) else { return };
        let prev = n.prev;
        let old = self.deadline_abs(n.entry.deadline);
        let d = self.encode_deadline(deadline);
        let raw = h.raw();
        if let Some(n) = self.slots.get_mut(h.index()) {
            n.entry.deadline = d;
        }
        if prev != wheel::DETACHED && self.deadline_abs(d) < old {
            self.unlink(raw);
            self.place(raw, self.cursor);
        }
    }

    /// Changes the live entry `h` and re-arms its timer in one pass (one liveness check for the
    /// state, counters and timer of a packet): `f` edits the entry's non-key fields and returns
    /// the new deadline, which is then set exactly as [`touch`](Self::touch) sets it, and a
    /// result. `None` (and `f` is not called) if `h` names no live entry.
    #[inline(always)]
    pub fn update<R>(
        &mut self,
        h: Handle,
        f: impl FnOnce(&mut Entry) -> (Instant, R),
    ) -> Option<R> {
        if h.raw() > self.high {
            return None;
        }
        let cursor = self.cursor;
        let n = self.slots.get_mut(h.index()).filter(|n| n.prev != FREE)?;
        let old = n.entry.deadline;
        let (deadline, r) = f(&mut n.entry);
        let d = wheel::encode_deadline_at(cursor, deadline);
        n.entry.deadline = d;
        let prev = n.prev;
        if d != old
            && prev != wheel::DETACHED
            && wheel::deadline_abs_at(cursor, d) < wheel::deadline_abs_at(cursor, old)
        {
            let raw = h.raw();
            self.unlink(raw);
            self.place(raw, self.cursor);
        }
        Some(r)
    }

    /// [`touch`](Self::touch) with `now` plus the entry's own timeout.
    pub fn rearm(&mut self, h: Handle, now: Instant) {
        if let Some(e) = self.get(h) {
            let deadline = now + e.timeout();
            self.touch(h, deadline);
        }
    }

    /// The first entry under `hash` (from [`hash`](Self::hash)) that `pred` accepts. `pred`
    /// checks the rest of the tuple: [`Entry::key_matches`] plus service/vport for forward
    /// packets, the real server for replies, [`Entry::is_template`] for templates.
    #[inline(always)]
    pub fn find(&self, hash: u64, pred: impl FnMut(&Entry) -> bool) -> Option<Handle> {
        let tag = index::tag_of(hash);
        let start = index::home(tag, self.index.len());
        probe_entries(&self.index, &self.slots, tag, start, &mut 0, pred)
    }

    /// [`find`](Self::find), also returning how many index slots it read (for tests and stats).
    #[inline]
    pub fn find_counted(
        &self,
        hash: u64,
        pred: impl FnMut(&Entry) -> bool,
    ) -> (Option<Handle>, u32) {
        let tag = index::tag_of(hash);
        let start = index::home(tag, self.index.len());
        let mut probes = 0;
        let h = probe_entries(&self.index, &self.slots, tag, start, &mut probes, pred);
        (h, probes)
    }

    /// Looks up a burst of packets at once: `out[i]` becomes what `find(hashes[i], |e| pred(i,
    /// e))` would return, for `i < min(hashes.len(), out.len())`.
    ///
    /// The work is staged — every home slot position, then every slot read, then every candidate
    /// entry read, then the predicates — so the CPU overlaps the cache misses of independent
    /// packets instead of paying them one after the other. `pred` may be called
    /// more than once for the same entry and should have no side effects.
    pub fn find_burst(
        &self,
        hashes: &[u64],
        out: &mut [Option<Handle>],
        mut pred: impl FnMut(usize, &Entry) -> bool,
    ) {
        let n = hashes.len().min(out.len());
        let index = &*self.index;
        let slots = &*self.slots;
        let len = index.len();
        let mut base = 0;
        while base < n {
            let m = (n - base).min(BURST);
            let hashes = &hashes[base..base + m];
            let out = &mut out[base..base + m];
            // Stage 1: home positions.
            let mut pos = [0usize; BURST];
            for (p, &h) in pos.iter_mut().zip(hashes) {
                *p = index::home(index::tag_of(h), len);
            }
            // Stage 2: read every home slot; the loads are independent.
            let mut first = [IndexSlot::EMPTY; BURST];
            for (f, &p) in first.iter_mut().zip(&pos) {
                if let Some(s) = index.get(p) {
                    *f = *s;
                }
            }
            // Stage 3: read every candidate entry (the lines its key and deadline sit in).
            let mut sink = 0u32;
            for (f, &h) in first.iter().zip(hashes) {
                if f.handle != 0 && f.tag == index::tag_of(h) {
                    if let Some(n) = slots.get(f.handle as usize - 1) {
                        sink ^= u32::from(n.entry.client_addr_bytes()[0])
                            ^ u32::from(n.entry.state)
                            ^ n.entry.deadline;
                    }
                }
            }
            core::hint::black_box(sink);
            // Stage 4: resolve; the rare miss in the home slot continues probing.
            for k in 0..m {
                let i = base + k;
                let tag = index::tag_of(hashes[k]);
                let f = first[k];
                out[k] = if f.handle == 0 {
                    None
                } else if f.tag == tag
                    && slots
                        .get(f.handle as usize - 1)
                        .is_some_and(|nd| pred(i, &nd.entry))
                {
                    Handle::from_raw(f.handle)
                } else {
                    let next = index::step(pos[k], len);
                    probe_entries(index, slots, tag, next, &mut 0, |e| pred(i, e))
                };
            }
            base += m;
        }
    }

    /// Every live entry, in slab order (for `ipvsadm -L -c`).
    pub fn iter(&self) -> impl Iterator<Item = (Handle, &Entry)> + '_ {
        self.slots
            .iter()
            .take(self.high as usize)
            .enumerate()
            .filter(|(_, n)| n.prev != FREE)
            .filter_map(|(i, n)| Some((Handle::from_index(i)?, &n.entry)))
    }

    /// Removes every entry (IPVS flush). Keeps the secret and the clock.
    pub fn clear(&mut self) {
        index::clear(&mut self.index);
        self.wheel.fill(WheelBucket::EMPTY);
        self.len = 0;
        self.high = 0;
        self.free = 0;
        self.detached = 0;
        self.fresh = 0;
        self.pending = wheel::Pending::EMPTY;
        self.earliest = self.cursor;
        self.fragments.clear();
    }
}

/// The [`ConnResources`] type for a table of `N` connections, its index, wheel and fragment
/// table sized by [`ConnStorage::slots_for`] (at most 64 bytes per connection, plus 4 for the
/// fragment table from 256 connections on, and 1 KiB below that):
///
/// ```
/// type Conns = lb_core::conn_resources!(1024);
/// assert!(core::mem::size_of::<Conns>() <= 68 * 1024);
/// let mut res = Box::new(Conns::new());
/// let storage = res.storage();
/// ```
#[macro_export]
macro_rules! conn_resources {
    ($n:expr) => {
        $crate::ConnResources<
            { $n },
            { $crate::ConnStorage::slots_for($n).index_slots },
            { $crate::ConnStorage::slots_for($n).wheel_buckets },
            { $crate::ConnStorage::slots_for($n).fragment_slots },
        >
    };
}
