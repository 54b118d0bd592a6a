//! Expiry: a single-level timer wheel of 1/16 s buckets with lazy re-arm (docs/ipvs-semantics.md §2.7: idle
//! timeouts re-armed by every packet, templates deferred while they control connections).
//!
//! * A packet only stores the entry's new deadline ([`ConnTable::touch`]): no list surgery when
//!   the deadline moves later, which is what almost every packet does. Only a deadline moving
//!   *earlier* (a state change to a shorter timeout, about once per connection) unlinks the entry
//!   and files it again, in O(1), through the doubly linked bucket chain.
//! * Every live entry sits in the bucket of a position `p` (a tick) with `p ≤ deadline` and
//!   `cursor ≤ p < cursor + buckets`. Deadlines beyond the wheel's span (900 s ESTABLISHED on a
//!   small wheel, 24 h templates) are filed in the farthest bucket and filed again when it fires.
//! * [`ConnTable::poll_expired`] walks the buckets from the cursor up to `now`; an entry whose
//!   deadline moved on is filed again, one whose deadline has passed is handed to the caller,
//!   who removes it or re-arms it. The walk costs one head read per elapsed tick plus one visit
//!   per entry per `min(timeout, span)`; it never scans the table.
//! * [`ConnTable::next_deadline`] does the same filing ahead of the walk, for the earliest
//!   buckets only, until it finds an entry really due: it answers the earliest real deadline,
//!   not the start of a bucket whose entries all moved on.
//!
//! * A new entry is filed only at the next insert or wheel walk (`ConnTable::fresh`), by the
//!   deadline it has then: a new connection's first packet moves it from the 3 s initial
//!   timeout to its state's (SYN_RECV) at once, and without this every new connection was
//!   filed twice, the second time by `next_deadline` or the expiry walk seconds later, when
//!   its slab line had left the cache.
//!
//! # Staged expiry
//!
//! Expiring an entry touches its slab slot (the chain walk), its index slot (found from its
//! flow hash, a random line of a large array) and its server's counters. Taken one at a
//! time, each expiry waited for its own index miss. [`ConnTable::poll_expired`] therefore
//! stages the due entries of a bucket, up to 32 at a time: it takes them off the chain (each
//! left `DETACHED`), computes every tag and home slot, reads every home slot (independent
//! loads: the misses overlap, as in `find_burst`), finds each entry's index slot, reads the
//! line after each (the removal's backward shift walks the rest of the run, which at the
//! index's load often goes on into the next line: in callgrind's cache simulation that was
//! 0.37 serial misses per removal, 0.04 with this read), and then
//! hands the entries out one by one; [`ConnTable::remove`] of the entry just handed out uses
//! the slot found (checked: a removal since may have shifted it back) and hashes nothing.
//! What the caller does between two calls is honoured as before: a staged entry it removed
//! is skipped, one it re-armed is filed by its new deadline. A stage never spans buckets, so
//! while its entries are handed out the cursor is where it was when they were taken one by
//! one, and a bucket's entries come out in the same order (an entry the caller files into
//! the bucket being walked meanwhile comes after the stage rather than next: the order
//! within a tick, which was never a promise).
//!
//! The balancer does not take the entries one by one: `ConnTable::expire_batch` resolves a
//! whole stage in one call, asking the caller only whether to keep each entry, removing the
//! others at the index slots found while staging and handing back copies of them, whose
//! counters the balancer then releases together. That leaves per expired entry the walk, one
//! flow hash, the index removal and the balancer's counters (with the per-prefix half-open
//! count's own hash), without a `poll_expired` and a `remove` call, their checks and the
//! entry's move between them.
//!
//! Time: a tick is 1/16 s (62.5 ms). Deadlines are stored as 32-bit tick counts since the caller's
//! epoch, truncated, and compared against the cursor with wrapping (serial-number) arithmetic, so
//! any epoch works and the count may wrap (every 8.5 years); deadlines are clamped to within
//! [`MAX_TIMEOUT`] (about 776 days) of the cursor so every comparison stays within ±2^31 ticks.
//! A deadline is rounded *up* to a tick and `now` *down*, so no entry is reported before its
//! deadline, and once `expire(now)` runs with `now ≥ deadline + 62.5 ms` it has been reported.

use crate::time::{Duration, Instant};

use super::entry::{ConnSlot, Entry, Handle};
use super::index;
use super::ConnTable;

/// Deadline resolution: ticks per second. One tick is 62.5 ms; whole seconds are whole ticks.
pub const TICKS_PER_SEC: u64 = 16;

/// The farthest a deadline or timeout may lie ahead: 2^30 ticks (about 776 days). Longer values
/// are clamped to it.
pub const MAX_TIMEOUT: Duration = Duration::from_millis((1u64 << 30) / 2 * 125);

const MAX_AHEAD_TICKS: u64 = 1 << 30;

/// How many wheel buckets [`ConnTable::evict_candidate`] looks at, at most (128 s of deadlines:
/// more than the 120 s TIME_WAIT timeout, so every TIME_WAIT entry is within reach).
pub const EVICT_MAX_BUCKETS: u64 = 2048;

/// How many entries [`ConnTable::evict_candidate`] examines, at most.
pub const EVICT_MAX_ENTRIES: u32 = 128;

/// How many slab slots [`ConnTable::evict_scan`] examines, at most.
pub const EVICT_SCAN_SLOTS: usize = 256;

/// How many entries of the wheel's farthest bucket [`ConnTable::next_deadline`] examines, at
/// most, for the earliest deadline beyond the wheel's span.
const FAR_SCAN_ENTRIES: u32 = 32;

/// `prev` marker of a slab slot on the free list.
pub(super) const FREE: u32 = u32::MAX;
/// `prev` marker of an entry handed out by `poll_expired` and not yet resolved.
pub(super) const DETACHED: u32 = u32::MAX - 1;
/// `prev` marker of the entry inserted last, not yet filed (`ConnTable::fresh`).
pub(super) const FRESH: u32 = u32::MAX - 2;
/// `prev` bit marking "first in bucket `prev & !BUCKET`".
pub(super) const BUCKET: u32 = 1 << 31;
/// Largest wheel the table uses (2^24 buckets, 12 days of ticks).
pub(super) const MAX_BUCKETS: usize = 1 << 24;

/// How many due entries [`ConnTable::poll_expired`] stages at a time.
pub(crate) const EXPIRE_BATCH: usize = 32;

/// The staged expiry's batch: due entries taken off the wheel (each `DETACHED`) and not yet
/// handed out, each with its index tag and the index slot it was seen in; and the hint for the
/// entry last handed out, which [`ConnTable::remove`] takes.
#[derive(Debug, Clone, Copy)]
pub(super) struct Pending {
    raw: [u32; EXPIRE_BATCH],
    tag: [u32; EXPIRE_BATCH],
    pos: [usize; EXPIRE_BATCH],
    /// Entries `[next, len)` are still to hand out.
    next: u8,
    len: u8,
    /// (raw handle, tag, index slot) of the entry last handed out; raw 0 = none.
    hint: (u32, u32, usize),
}

impl Pending {
    pub(super) const EMPTY: Pending = Pending {
        raw: [0; EXPIRE_BATCH],
        tag: [0; EXPIRE_BATCH],
        pos: [0; EXPIRE_BATCH],
        next: 0,
        len: 0,
        hint: (0, 0, 0),
    };

    fn clear(&mut self) {
        self.next = 0;
        self.len = 0;
    }

    fn push(&mut self, raw: u32, tag: u32, pos: usize) {
        let k = usize::from(self.len);
        if k < EXPIRE_BATCH {
            self.raw[k] = raw;
            self.tag[k] = tag;
            self.pos[k] = pos;
            self.len += 1;
        }
    }

    fn pop(&mut self) -> Option<(u32, u32, usize)> {
        let k = usize::from(self.next);
        if k >= usize::from(self.len) {
            return None;
        }
        self.next += 1;
        Some((self.raw[k], self.tag[k], self.pos[k]))
    }

    /// The staged entries not yet handed out (raw handles).
    pub(super) fn waiting(&self) -> &[u32] {
        self.raw
            .get(usize::from(self.next)..usize::from(self.len))
            .unwrap_or(&[])
    }

    /// The tag and index slot of `raw` if it is the entry last handed out; the hint is used up.
    pub(super) fn take_hint(&mut self, raw: u32) -> Option<(u32, usize)> {
        if self.hint.0 != raw || raw == 0 {
            return None;
        }
        let (_, tag, pos) = core::mem::take(&mut self.hint);
        Some((tag, pos))
    }
}

/// One timer-wheel bucket: the head of a chain of entries (4 bytes; all-zero is empty).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WheelBucket(pub(super) u32);

impl WheelBucket {
    /// An empty bucket (all zero bits).
    pub const EMPTY: WheelBucket = WheelBucket(0);
}

/// What [`ConnTable::expire`]'s callback wants done with an expired entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expire {
    /// Remove the entry from the table.
    Remove,
    /// Keep it until this new deadline (e.g. a template that still controls connections: now +
    /// 60 s, docs/ipvs-semantics.md §2.7). A deadline not after `now` reports the entry again on the next tick.
    Rearm(Instant),
}

/// Below this, `2 * ms` cannot overflow: one division instead of two.
const MS_FAST: u64 = 1 << 62;

/// `floor(ms / 62.5)`.
#[inline(always)]
pub(super) const fn ms_to_tick_floor(ms: u64) -> u64 {
    if ms < MS_FAST {
        ms * 2 / 125
    } else {
        ms / 125 * 2 + (ms % 125) * 2 / 125
    }
}

/// `ceil(ms / 62.5)`.
#[inline(always)]
pub(super) const fn ms_to_tick_ceil(ms: u64) -> u64 {
    if ms < MS_FAST {
        (ms * 2).div_ceil(125)
    } else {
        ms / 125 * 2 + ((ms % 125) * 2).div_ceil(125)
    }
}

/// The first millisecond at or after the start of tick `t`: `ceil(t * 62.5)`.
pub(super) const fn tick_to_ms_ceil(t: u64) -> u64 {
    (t / 2).saturating_mul(125).saturating_add((t % 2) * 63)
}

/// A duration as whole ticks, rounded up and clamped to [`MAX_TIMEOUT`].
pub(super) const fn ticks_from_duration(d: Duration) -> u32 {
    let t = ms_to_tick_ceil(d.millis());
    if t > MAX_AHEAD_TICKS {
        MAX_AHEAD_TICKS as u32
    } else {
        t as u32
    }
}

/// A tick count as a duration (62.5 ms per tick, rounded up to whole milliseconds).
pub(super) const fn ticks_to_duration(t: u32) -> Duration {
    Duration::from_millis(tick_to_ms_ceil(t as u64))
}

/// The absolute tick of a stored 32-bit deadline, read relative to the wheel's `cursor`.
#[inline(always)]
pub(super) fn deadline_abs_at(cursor: u64, d: u32) -> u64 {
    let delta = d.wrapping_sub(cursor as u32) as i32;
    (cursor as i64).saturating_add(i64::from(delta)).max(0) as u64
}

/// The stored form of `deadline` for a wheel at `cursor`: ticks rounded up, clamped to the
/// cursor ± [`MAX_TIMEOUT`].
#[inline(always)]
pub(super) fn encode_deadline_at(cursor: u64, deadline: Instant) -> u32 {
    let t = ms_to_tick_ceil(deadline.millis());
    let lo = cursor.saturating_sub(MAX_AHEAD_TICKS);
    let hi = cursor.saturating_add(MAX_AHEAD_TICKS);
    // `t.clamp(lo, hi)`, written out: `clamp` is not always inlined on the datapath.
    (if t < lo {
        lo
    } else if t > hi {
        hi
    } else {
        t
    }) as u32
}

impl<'a> ConnTable<'a> {
    /// The buckets in use (a power of two ≥ 2, or 1 for an unusable zero-capacity table).
    #[inline]
    pub(super) fn buckets(&self) -> u64 {
        self.mask + 1
    }

    /// The absolute tick of a stored 32-bit deadline, read relative to the cursor.
    #[inline]
    pub(super) fn deadline_abs(&self, d: u32) -> u64 {
        deadline_abs_at(self.cursor, d)
    }

    /// The stored form of `deadline`: ticks rounded up, clamped to the cursor ± [`MAX_TIMEOUT`].
    #[inline]
    pub(super) fn encode_deadline(&self, deadline: Instant) -> u32 {
        encode_deadline_at(self.cursor, deadline)
    }

    /// Moves the table's clock forward to `now` (never back).
    pub(super) fn observe(&mut self, now: Instant) {
        if now.millis() > self.clock_ms {
            self.clock_ms = now.millis();
        }
    }

    fn head(&self, pos: u64) -> u32 {
        self.wheel
            .get((pos & self.mask) as usize)
            .map_or(0, |b| b.0)
    }

    fn set_head(&mut self, slot: u32, raw: u32) {
        if let Some(b) = self.wheel.get_mut(slot as usize) {
            b.0 = raw;
        }
    }

    fn set_prev(&mut self, raw: u32, prev: u32) {
        if let Some(n) = self.slot_mut(raw) {
            n.prev = prev;
        }
    }

    /// Files entry `raw` at wheel position `pos` (front of the bucket chain).
    pub(super) fn push(&mut self, raw: u32, pos: u64) {
        let slot = (pos & self.mask) as u32;
        let head = self.head(pos);
        if let Some(n) = self.slot_mut(raw) {
            n.next = head;
            n.prev = BUCKET | slot;
        }
        if head != 0 {
            self.set_prev(head, raw);
        }
        self.set_head(slot, raw);
        if pos < self.earliest {
            self.earliest = pos;
        }
    }

    /// Files entry `raw` by its deadline, no earlier than position `lo` and no later than the
    /// wheel's farthest bucket.
    pub(super) fn place(&mut self, raw: u32, lo: u64) {
        let d = self.slot(raw).map_or(0, |n| n.entry.deadline);
        let far = self.cursor + self.mask;
        let pos = self.deadline_abs(d).max(lo).min(far);
        self.push(raw, pos);
    }

    /// Takes entry `raw` out of whatever chain holds it; it is left `DETACHED`.
    pub(super) fn unlink(&mut self, raw: u32) {
        let Some(&ConnSlot { prev, next, .. }) = self.slot(raw) else {
            return;
        };
        if prev == FREE {
            return;
        }
        if prev == DETACHED {
            if self.detached == raw {
                self.detached = 0;
            }
        } else if prev == FRESH {
            if self.fresh == raw {
                self.fresh = 0;
            }
        } else if prev & BUCKET != 0 {
            self.set_head(prev & !BUCKET, next);
            if next != 0 {
                self.set_prev(next, prev);
            }
        } else {
            if let Some(p) = self.slot_mut(prev) {
                p.next = next;
            }
            if next != 0 {
                self.set_prev(next, prev);
            }
        }
        if let Some(n) = self.slot_mut(raw) {
            n.prev = DETACHED;
            n.next = 0;
        }
    }

    /// Files the entry inserted last, if it is not yet, by its deadline now.
    #[inline]
    pub(super) fn file_fresh(&mut self) {
        let raw = core::mem::take(&mut self.fresh);
        if raw != 0 && self.slot(raw).is_some_and(|n| n.prev == FRESH) {
            self.place(raw, self.cursor);
        }
    }

    /// Takes the first entry out of the bucket at `pos` (it is left `DETACHED`); 0 if the
    /// bucket is empty. A bucket's first entry has `prev` = `BUCKET | slot`, so this is
    /// [`unlink`](Self::unlink) without its cases.
    fn pop(&mut self, pos: u64) -> u32 {
        let slot = (pos & self.mask) as u32;
        let raw = self.head(pos);
        let Some(n) = self.slot_mut(raw) else {
            return 0;
        };
        debug_assert_eq!(n.prev, BUCKET | slot);
        let next = n.next;
        n.prev = DETACHED;
        n.next = 0;
        self.set_head(slot, next);
        if next != 0 {
            self.set_prev(next, BUCKET | slot);
        }
        raw
    }

    /// Files again the entry last handed out by `poll_expired`, if the caller neither removed
    /// it nor moved it: by its deadline, or at the next tick if the deadline has passed.
    fn settle(&mut self, now_tick: u64) {
        let raw = core::mem::take(&mut self.detached);
        if raw == 0 || self.slot(raw).map(|n| n.prev) != Some(DETACHED) {
            return;
        }
        let d = self.deadline_abs(self.slot(raw).map_or(0, |n| n.entry.deadline));
        if d <= now_tick {
            // Ignored: report again next tick. Never into the bucket being walked.
            let mut pos = now_tick + 1;
            if self.cursor <= now_tick && (pos & self.mask) == (self.cursor & self.mask) {
                pos += 1;
            }
            if pos > self.cursor + self.mask {
                // Only after a long pause: the same bucket, one round earlier.
                pos -= self.buckets();
            }
            self.push(raw, pos);
        } else {
            self.place(raw, self.cursor);
        }
    }

    /// Hands out one entry whose deadline has passed by `now`, or `None` when there is none
    /// left. Call it in a loop from the balancer's `handle_timeout(now)`:
    ///
    /// ```ignore
    /// while let Some(h) = table.poll_expired(now) {
    ///     // inspect and update other entries (e.g. the template's n_control), then either
    ///     table.remove(h);            // or: table.touch(h, now + Duration::from_secs(60));
    /// }
    /// ```
    ///
    /// Between two calls the caller must remove the entry or give it a later deadline with
    /// [`touch`](Self::touch); otherwise the next call files it again and it is reported again
    /// on the next tick. Entries are reported in order of wheel bucket (1/16 s), not exactly in
    /// deadline order within a bucket.
    ///
    /// Staged (see the module docs): the due entries are taken off the wheel up to 32
    /// (`EXPIRE_BATCH`) at a time, their index slots found in one pass, then handed out one by
    /// one; [`remove`](Self::remove) of the entry just handed out uses the slot found.
    pub fn poll_expired(&mut self, now: Instant) -> Option<Handle> {
        let now_tick = self.expiry_tick(now);
        if let Some(h) = self.next_pending(now_tick) {
            return Some(h);
        }
        if !self.stage_due(now_tick) {
            return None;
        }
        self.next_pending(now_tick)
    }

    /// What every expiry call does first: files the entry inserted last, moves the clock to
    /// `now` and files again the entry last handed out if the caller left it alone. Returns
    /// the current tick. (Always inlined: called out of line, it cost `expire_batch` five
    /// instructions per expired entry.)
    #[inline(always)]
    fn expiry_tick(&mut self, now: Instant) -> u64 {
        self.file_fresh();
        self.observe(now);
        let now_tick = ms_to_tick_floor(self.clock_ms);
        if now_tick >= self.cursor + self.buckets() {
            // A long pause: one round of the wheel visits every bucket once.
            self.cursor = now_tick + 1 - self.buckets();
            self.earliest = self.cursor;
        }
        self.settle(now_tick);
        now_tick
    }

    /// Stages the next due entries ([`stage`](Self::stage)); `false`, with the cursor moved
    /// on, when none is due by `now_tick`.
    #[inline(always)]
    fn stage_due(&mut self, now_tick: u64) -> bool {
        if self.len == 0 {
            self.cursor = self.cursor.max(now_tick + 1);
            self.earliest = self.cursor;
            return false;
        }
        if self.stage(now_tick) == 0 {
            self.refresh_earliest();
            return false;
        }
        true
    }

    /// The balancer's expiry, a stage at a time: takes the next stage of due entries off the
    /// wheel (as [`poll_expired`](Self::poll_expired) does) and resolves each in order, with
    /// no call per entry in between. `keep` sees each due entry and answers a new deadline to
    /// keep it (a template that still controls connections, which `keep` may also change),
    /// or `None` to remove it. A removed entry is copied into `gone` (the caller releases its
    /// counters from the copy, in any order), its index slot is the one found while staging
    /// (no second hash), and a removed connection's template, its [`control`](Entry::control),
    /// has one connection fewer ([`set_n_control`](Entry::set_n_control)) before the next
    /// entry is seen, as when the caller removed them one by one.
    ///
    /// Returns how many entries went into `gone` (0 when every entry of the stage was kept),
    /// or `None` when nothing more is due by `now`. Entries that `poll_expired` staged and did
    /// not hand out yet come first; an entry it handed out and the caller left alone is filed
    /// again first, as the next `poll_expired` would.
    pub(crate) fn expire_batch(
        &mut self,
        now: Instant,
        gone: &mut [Entry; EXPIRE_BATCH],
        mut keep: impl FnMut(&mut Entry) -> Option<Instant>,
    ) -> Option<usize> {
        let now_tick = self.expiry_tick(now);
        if self.pending.waiting().is_empty() && !self.stage_due(now_tick) {
            return None;
        }
        self.pending.hint = (0, 0, 0);
        let mut n = 0;
        while let Some((raw, tag, pos)) = self.pending.pop() {
            let (cursor, free) = (self.cursor, self.free);
            let Some(slot) = self.slots.get_mut((raw as usize).wrapping_sub(1)) else {
                continue;
            };
            if slot.prev != DETACHED {
                // Removed (and perhaps the slot reused) since it was staged.
                continue;
            }
            if deadline_abs_at(cursor, slot.entry.deadline) > now_tick {
                self.place(raw, cursor);
                continue;
            }
            if let Some(deadline) = keep(&mut slot.entry) {
                slot.entry.deadline = encode_deadline_at(cursor, deadline);
                // Filed by its new deadline, as `settle` files an entry the caller re-armed.
                self.detached = raw;
                self.settle(now_tick);
                continue;
            }
            let entry = slot.entry;
            slot.prev = FREE;
            slot.next = free;
            self.free = raw;
            self.len -= 1;
            index::remove_hinted(&mut self.index, tag, raw, pos);
            if let Some(t) = entry.control() {
                if let Some(tpl) = self.get_mut(t) {
                    tpl.set_n_control(tpl.n_control().saturating_sub(1));
                }
            }
            if let Some(g) = gone.get_mut(n) {
                *g = entry;
                n += 1;
            }
        }
        Some(n)
    }

    /// The next staged entry still to hand out, detached as `poll_expired` leaves it. One the
    /// caller removed meanwhile is skipped; one it gave a later deadline is filed by it.
    fn next_pending(&mut self, now_tick: u64) -> Option<Handle> {
        while let Some((raw, tag, pos)) = self.pending.pop() {
            let Some(n) = self.slot(raw) else { continue };
            if n.prev != DETACHED {
                // Removed (and perhaps the slot reused) since it was staged.
                continue;
            }
            if self.deadline_abs(n.entry.deadline) > now_tick {
                self.place(raw, self.cursor);
                continue;
            }
            self.detached = raw;
            self.pending.hint = (raw, tag, pos);
            return Handle::from_raw(raw);
        }
        None
    }

    /// Takes up to `EXPIRE_BATCH` due entries off the wheel (walking it from the cursor as
    /// far as `now_tick`, filing again the ones whose deadline moved on), then finds their
    /// index slots: every tag, then every home slot read (independent loads, so the cache
    /// misses overlap, as in `find_burst`), then the probes. Returns how many it staged.
    fn stage(&mut self, now_tick: u64) -> usize {
        let mut raws = [0u32; EXPIRE_BATCH];
        let mut n = 0;
        'walk: while self.cursor <= now_tick {
            let pos = self.cursor;
            if self.earliest > pos {
                // Known empty up to `earliest`.
                self.cursor = self.earliest.min(now_tick + 1);
                continue;
            }
            loop {
                if n == EXPIRE_BATCH {
                    break 'walk;
                }
                let raw = self.pop(pos);
                if raw == 0 {
                    if n > 0 {
                        // A stage never spans buckets: while its entries are handed out the
                        // cursor stays at their bucket, as when they were taken one by one
                        // (where `settle` and `place` file an entry depends on it).
                        break 'walk;
                    }
                    break;
                }
                let d = self.deadline_abs(self.slot(raw).map_or(0, |n| n.entry.deadline));
                if d <= now_tick {
                    raws[n] = raw;
                    n += 1;
                } else {
                    // The deadline moved on (lazy re-arm) or lies beyond the span: file it again.
                    self.place(raw, pos + 1);
                }
            }
            self.cursor = pos + 1;
            if self.earliest < self.cursor {
                self.earliest = self.cursor;
            }
        }
        let raws = &raws[..n];
        let len = self.index.len();
        // Tags and home slots (the entries' lines were just read by the walk).
        let mut tags = [0u32; EXPIRE_BATCH];
        let mut homes = [0usize; EXPIRE_BATCH];
        for ((t, h), &raw) in tags.iter_mut().zip(homes.iter_mut()).zip(raws) {
            if let Some(s) = self.slot(raw) {
                let e = &s.entry;
                let hash =
                    self.hash_bytes(e.proto(), e.is_ipv6(), e.client_addr_bytes(), e.client_port());
                debug_assert_eq!(hash, self.hash_of(e));
                *t = index::tag_of(hash);
                *h = index::home(*t, len);
            }
        }
        // Every home slot read at once; the probes below then find them in cache.
        let mut sink = 0u32;
        for &h in &homes[..n] {
            if let Some(s) = self.index.get(h) {
                sink ^= s.handle;
            }
        }
        core::hint::black_box(sink);
        self.pending.clear();
        for k in 0..n {
            let pos = index::position(&self.index, raws[k], homes[k]).unwrap_or(usize::MAX);
            self.pending.push(raws[k], tags[k], pos);
            homes[k] = pos;
        }
        // The removal shifts the rest of each run back, and a run often goes on into the next
        // line (linear probing at the index's load): read it now too, every entry's at once.
        let mut sink = 0u32;
        for &pos in &homes[..n] {
            if let Some(s) = self.index.get(pos.wrapping_add(7)) {
                sink ^= s.handle;
            }
        }
        core::hint::black_box(sink);
        n
    }

    /// Makes `earliest` exact: the first non-empty bucket at or after the cursor.
    fn refresh_earliest(&mut self) {
        let start = self.earliest.max(self.cursor);
        let end = self.cursor + self.buckets();
        let mut pos = start;
        while pos < end && self.head(pos) == 0 {
            pos += 1;
        }
        self.earliest = pos;
    }

    /// Runs every expiry due by `now`: `decide` gets each entry whose deadline has passed and
    /// answers [`Expire::Remove`] or [`Expire::Rearm`]. Returns how many entries were removed.
    ///
    /// Call it when [`next_deadline`](Self::next_deadline) has passed. When expiring an entry
    /// must change *other* entries (a template's `n_control`), use
    /// [`poll_expired`](Self::poll_expired) instead, which leaves the whole table to the caller.
    pub fn expire(
        &mut self,
        now: Instant,
        mut decide: impl FnMut(Handle, &mut Entry) -> Expire,
    ) -> usize {
        let mut removed = 0;
        while let Some(h) = self.poll_expired(now) {
            let Some(e) = self.get_mut(h) else { continue };
            match decide(h, e) {
                Expire::Remove => {
                    if self.remove(h).is_some() {
                        removed += 1;
                    }
                }
                Expire::Rearm(deadline) => self.touch(h, deadline),
            }
        }
        removed
    }

    /// When [`expire`](Self::expire) next has work: the earliest deadline (a tick, as
    /// [`deadline`](Self::deadline) gives it) of an entry, or the next tick for one already
    /// past it; `None` when the table is empty. For the balancer's `poll_timeout`.
    ///
    /// Exact: never earlier than that deadline, never later. A packet's re-arm only stores the
    /// later deadline and leaves the entry in its old bucket (see the module docs), so before
    /// answering this files again, by their real deadlines, the entries of the earliest bucket
    /// that are not due in it, until it finds one that is — the work `expire` would do when
    /// that bucket came up, done earlier: amortised O(1) per re-arm, nothing on the datapath.
    ///
    /// One exception: the wheel files deadlines up to its span ahead (buckets / 16 s). When
    /// every entry lies beyond it (all in the farthest bucket) and there are more than 32, the
    /// answer is that bucket's start: early, once per span (`expire` then files them again).
    pub fn next_deadline(&mut self) -> Option<Instant> {
        self.next_deadline_before(None)
    }

    /// [`next_deadline`](Self::next_deadline), only looked for before `limit`: `None` also when
    /// nothing is due before it (the balancer passes its other timers' earliest, so a busy
    /// table is not searched past the next estimator run).
    pub fn next_deadline_before(&mut self, limit: Option<Instant>) -> Option<Instant> {
        if self.len == 0 {
            return None;
        }
        self.file_fresh();
        if self.detached != 0 {
            // An entry `poll_expired` handed out and the caller left alone: filed again, as the
            // next `poll_expired` would.
            self.settle(ms_to_tick_floor(self.clock_ms));
        }
        // Entries staged by `poll_expired` and not yet handed out (a caller that stopped
        // polling early) are off the wheel: the earliest of their deadlines.
        let waiting = self.waiting_deadline();
        if let Some(w) = waiting {
            let at = Instant::from_millis(tick_to_ms_ceil(w));
            let limit = Some(limit.map_or(at, |l| l.min(at)));
            return self.wheel_deadline_before(limit).or(Some(at));
        }
        self.wheel_deadline_before(limit)
    }

    /// The earliest deadline (absolute tick) of the staged entries still to hand out.
    fn waiting_deadline(&self) -> Option<u64> {
        self.pending
            .waiting()
            .iter()
            .filter_map(|&raw| self.slot(raw).filter(|n| n.prev == DETACHED))
            .map(|n| self.deadline_abs(n.entry.deadline))
            .min()
    }

    /// [`next_deadline_before`](Self::next_deadline_before) among the entries on the wheel.
    fn wheel_deadline_before(&mut self, limit: Option<Instant>) -> Option<Instant> {
        // Positions from `end` on start at or after `limit`.
        let end = limit.map_or(u64::MAX, |l| ms_to_tick_ceil(l.millis()));
        let far = self.cursor + self.mask;
        let mut pos = self.earliest.max(self.cursor);
        while pos <= far && pos < end {
            if self.head(pos) == 0 {
                pos += 1;
                continue;
            }
            self.earliest = pos;
            if pos == far {
                return self.far_deadline(far, end);
            }
            loop {
                let raw = self.head(pos);
                if raw == 0 {
                    break;
                }
                let d = self.deadline_abs(self.slot(raw).map_or(0, |n| n.entry.deadline));
                if d <= pos {
                    return Some(Instant::from_millis(tick_to_ms_ceil(pos)));
                }
                // Re-armed since it was filed: to the bucket of its deadline (within the span).
                self.unlink(raw);
                self.place(raw, pos + 1);
            }
            pos += 1;
        }
        if pos < end {
            // Unreachable while the wheel is consistent; be conservative.
            return Some(Instant::from_millis(self.clock_ms));
        }
        if pos > self.earliest {
            self.earliest = pos;
        }
        None
    }

    /// The answer of `next_deadline` when the farthest bucket is the first non-empty one:
    /// its entries may lie anywhere beyond it. The earliest of them if there are at most
    /// `FAR_SCAN_ENTRIES`, else the bucket's start.
    fn far_deadline(&self, far: u64, end: u64) -> Option<Instant> {
        let mut best = u64::MAX;
        let mut raw = self.head(far);
        let mut budget = FAR_SCAN_ENTRIES;
        while raw != 0 {
            let Some(n) = self.slot(raw) else { break };
            if budget == 0 {
                best = far;
                break;
            }
            budget -= 1;
            best = best.min(self.deadline_abs(n.entry.deadline).max(far));
            raw = n.next;
        }
        (best < end).then(|| Instant::from_millis(tick_to_ms_ceil(best)))
    }

    /// For a full table: the entry idle longest (the earliest last packet: deadline minus its
    /// re-arm timeout) among those `accept` takes (the balancer passes "TCP in TIME_WAIT, CLOSE
    /// or half-open"), so a new connection can evict it instead of being dropped; never an
    /// entry `accept` rejects. `max_timeout` is the longest re-arm timeout an accepted entry
    /// has: entries filed beyond the best candidate's last packet plus it cannot have been idle
    /// longer, so the walk stops there.
    ///
    /// Bounded: it walks the wheel from the cursor through at most [`EVICT_MAX_BUCKETS`] buckets
    /// (128 s of deadlines) and examines at most [`EVICT_MAX_ENTRIES`] entries, stopping early
    /// once the buckets ahead cannot hold an entry idle longer, or at an accepted entry already
    /// due by `now` (it goes anyway). It may therefore miss a candidate in a table crowded with
    /// other entries; it then returns `None` and the caller drops the packet as IPVS would.
    pub fn evict_candidate(
        &self,
        now: Instant,
        max_timeout: Duration,
        mut accept: impl FnMut(&Entry) -> bool,
    ) -> Option<Handle> {
        let now_tick = ms_to_tick_floor(now.millis().max(self.clock_ms));
        let horizon = u64::from(ticks_from_duration(max_timeout));
        let mut budget = EVICT_MAX_ENTRIES;
        // (last packet, deadline, raw) of the best candidate so far.
        let mut best: Option<(u64, u64, u32)> = None;
        let mut consider = |raw: u32, n: &ConnSlot, best: &mut Option<(u64, u64, u32)>| {
            if accept(&n.entry) {
                let d = self.deadline_abs(n.entry.deadline);
                let last = d.saturating_sub(u64::from(n.entry.timeout_ticks()));
                // Ties (one tick): the later in a chain was filed earlier.
                if best.is_none_or(|(bl, _, _)| last <= bl) {
                    *best = Some((last, d, raw));
                }
            }
        };
        if self.detached != 0 {
            if let Some(n) = self.slot(self.detached) {
                budget -= 1;
                consider(self.detached, n, &mut best);
            }
        }
        if self.fresh != 0 {
            if let Some(n) = self.slot(self.fresh).filter(|n| n.prev == FRESH) {
                budget = budget.saturating_sub(1);
                consider(self.fresh, n, &mut best);
            }
        }
        // Staged by `poll_expired`, not yet handed out: off the wheel, and due.
        for &raw in self.pending.waiting() {
            if let Some(n) = self.slot(raw).filter(|n| n.prev == DETACHED) {
                budget = budget.saturating_sub(1);
                consider(raw, n, &mut best);
            }
        }
        let span = self.buckets().min(EVICT_MAX_BUCKETS);
        // The buckets before `earliest` are empty: a table full of new connections has its
        // first entries a whole SYN_RECV timeout ahead, now that each is filed by that deadline.
        let start = self.earliest.clamp(self.cursor, self.cursor + span);
        'walk: for pos in start..self.cursor + span {
            match best {
                Some((last, d, _)) if d <= now_tick || last.saturating_add(horizon) < pos => {
                    break
                }
                _ => {}
            }
            let mut raw = self.head(pos);
            while raw != 0 {
                if budget == 0 {
                    break 'walk;
                }
                budget -= 1;
                let Some(n) = self.slot(raw) else { break };
                consider(raw, n, &mut best);
                raw = n.next;
            }
        }
        best.and_then(|(_, _, raw)| Handle::from_raw(raw))
    }

    /// [`evict_candidate`](Self::evict_candidate)'s fallback, for when its walk finds nothing:
    /// the entry idle longest among those `accept` takes in at most [`EVICT_SCAN_SLOTS`] slab
    /// slots from slot `start` on (wrapping), and the slot the next scan should start at.
    ///
    /// The wheel walk misses candidates when they share buckets with many entries it may not
    /// take: on a wheel shorter than the candidates' timeouts (a small table: buckets / 16 s)
    /// everything beyond its span sits in the farthest bucket, half-open and ESTABLISHED
    /// entries alike, in no order. Slots are read in order (cheap, sequential memory), and
    /// a caller that passes the returned position next time visits the whole slab in turn.
    pub fn evict_scan(
        &self,
        start: usize,
        mut accept: impl FnMut(&Entry) -> bool,
    ) -> (Option<Handle>, usize) {
        let high = self.high as usize;
        if high == 0 {
            return (None, 0);
        }
        let mut i = start % high;
        let mut best: Option<(u64, usize)> = None;
        for _ in 0..EVICT_SCAN_SLOTS.min(high) {
            if let Some(n) = self.slots.get(i) {
                if n.prev != FREE && accept(&n.entry) {
                    let d = self.deadline_abs(n.entry.deadline);
                    let last = d.saturating_sub(u64::from(n.entry.timeout_ticks()));
                    if best.is_none_or(|(bl, _)| last < bl) {
                        best = Some((last, i));
                    }
                }
            }
            i = if i + 1 == high { 0 } else { i + 1 };
        }
        (best.and_then(|(_, i)| Handle::from_index(i)), i)
    }
}

#[cfg(test)]
#[path = "wheel_tests.rs"]
mod tests;
