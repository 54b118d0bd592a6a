//! The lookup index: open addressing with linear probing over 8-byte slots (a 32-bit hash tag
//! and a 32-bit handle), keyed by the keyed flow hash of (protocol, client address, client port).
//!
//! Both directions of a flow carry those three fields (forward packets as source, replies as
//! destination), so one index serves both lookups, as IPVS's single hash table does (docs/ipvs-semantics.md
//! §1 "Tables"); the caller's predicate checks the rest of the tuple in the entry. Several entries
//! may share a key (one client port to two services, templates with port 0): they sit in one probe
//! run and a lookup walks past the ones its predicate rejects.
//!
//! The tag is the hash's high 32 bits and the home slot is computed *from the tag*
//! (`tag * slots >> 32`, Lemire's multiply-shift range reduction), so deletion can find every
//! slot's home again without re-hashing: deletion is backward-shift, leaving no tombstones. The
//! slot count need not be a power of two, so the index can be sized for exactly the byte budget.

/// One index slot: hash tag and raw entry handle (0 = empty). 8 bytes; all-zero is empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct IndexSlot {
    pub(super) tag: u32,
    pub(super) handle: u32,
}

impl IndexSlot {
    /// An empty slot (all zero bits).
    pub const EMPTY: IndexSlot = IndexSlot { tag: 0, handle: 0 };
}

/// The tag of a flow hash.
#[inline(always)]
pub(super) const fn tag_of(hash: u64) -> u32 {
    (hash >> 32) as u32
}

/// The home slot of `tag` in an index of `len` slots (`len` ≤ 2^32).
#[inline(always)]
pub(super) const fn home(tag: u32, len: usize) -> usize {
    ((tag as u64 * len as u64) >> 32) as usize
}

/// The slot after `pos`, wrapping at `len`.
#[inline(always)]
pub(super) fn step(pos: usize, len: usize) -> usize {
    if pos + 1 == len {
        0
    } else {
        pos + 1
    }
}

/// Probes from `pos` for a slot with `tag` whose handle `accept`s. Returns the raw handle (or 0)
/// and adds every slot read to `probes`. Stops at the first empty slot; reads at most the whole
/// index.
///
/// The one lookup loop: `ConnTable::find` (the datapath), `find_counted` and `find_burst` all
/// probe through it. Always inlined and generic over `accept`, so each caller gets its own copy
/// of the loop with the predicate inlined: `find` compiles to the loop it used to write out in
/// place (checked with the instruction-count gate). A caller that does not count probes passes
/// a local counter, which the compiler then drops.
#[inline(always)]
pub(super) fn probe<F: FnMut(u32) -> bool>(
    index: &[IndexSlot],
    tag: u32,
    mut pos: usize,
    probes: &mut u32,
    mut accept: F,
) -> u32 {
    let len = index.len();
    for _ in 0..len {
        let Some(s) = index.get(pos) else { return 0 };
        *probes += 1;
        if s.handle == 0 {
            return 0;
        }
        if s.tag == tag && accept(s.handle) {
            return s.handle;
        }
        pos = step(pos, len);
    }
    0
}

/// Puts `handle` under `tag` in the first free slot of its probe run. Returns the slots read, or
/// `None` if the index has no free slot (the table keeps at least one, so this does not happen).
pub(super) fn insert(index: &mut [IndexSlot], tag: u32, handle: u32) -> Option<u32> {
    let len = index.len();
    let mut pos = home(tag, len);
    for n in 1..=len as u32 {
        let s = index.get_mut(pos)?;
        if s.handle == 0 {
            *s = IndexSlot { tag, handle };
            return Some(n);
        }
        pos = step(pos, len);
    }
    None
}

/// Removes the slot holding `handle` under `tag`, shifting later members of the probe run back
/// so that no tombstone is left. Returns whether the handle was found. (If the tag was wrong,
/// which the table never lets happen, the whole index is searched.)
pub(super) fn remove(index: &mut [IndexSlot], tag: u32, handle: u32) -> bool {
    let len = index.len();
    let mut pos = home(tag, len);
    for _ in 0..len {
        match index.get(pos) {
            Some(s) if s.handle == handle => {
                remove_at(index, pos);
                return true;
            }
            Some(s) if s.handle != 0 => pos = step(pos, len),
            _ => break,
        }
    }
    match index.iter().position(|s| s.handle == handle) {
        Some(pos) => {
            remove_at(index, pos);
            true
        }
        None => false,
    }
}

/// [`remove`], knowing the slot `pos` where `handle` was seen: used when it still holds
/// `handle` (a removal since may have shifted it back), else the probe from the home slot.
pub(super) fn remove_hinted(index: &mut [IndexSlot], tag: u32, handle: u32, pos: usize) -> bool {
    if index.get(pos).is_some_and(|s| s.handle == handle) {
        remove_at(index, pos);
        return true;
    }
    remove(index, tag, handle)
}

/// Where `handle` sits, probing from `home` (its home slot); `None` if it is not in that probe
/// run. For [`remove_hinted`], found ahead of the removal.
#[inline(always)]
pub(super) fn position(index: &[IndexSlot], handle: u32, home: usize) -> Option<usize> {
    let len = index.len();
    let mut pos = home;
    for _ in 0..len {
        let s = index.get(pos)?;
        if s.handle == handle {
            return Some(pos);
        }
        if s.handle == 0 {
            return None;
        }
        pos = step(pos, len);
    }
    None
}

/// Empties slot `hole` by backward shift: each later member of the run moves into the hole when
/// its home is not cyclically inside (hole, j].
fn remove_at(index: &mut [IndexSlot], mut hole: usize) {
    let len = index.len();
    let mut j = hole;
    for _ in 0..len {
        j = step(j, len);
        let Some(&s) = index.get(j) else { break };
        if s.handle == 0 {
            break;
        }
        let h = home(s.tag, len);
        // It stays when its home lies cyclically within (hole, j]: then the hole does not
        // break its run. (Comparisons only: two per slot shifted, on every removal.)
        let stays = if hole < j {
            hole < h && h <= j
        } else {
            hole < h || h <= j
        };
        if !stays {
            if let Some(slot) = index.get_mut(hole) {
                *slot = s;
            }
            hole = j;
        }
    }
    if let Some(slot) = index.get_mut(hole) {
        *slot = IndexSlot::EMPTY;
    }
}

/// Empties every slot.
pub(super) fn clear(index: &mut [IndexSlot]) {
    index.fill(IndexSlot::EMPTY);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec;
    use std::vec::Vec;

    /// Every occupied slot is reachable from its home without crossing an empty slot.
    fn check_runs(index: &[IndexSlot]) {
        let len = index.len();
        for (j, s) in index.iter().enumerate() {
            if s.handle == 0 {
                continue;
            }
            let mut p = home(s.tag, len);
            while p != j {
                assert_ne!(index[p].handle, 0, "gap between home {p} and slot {j}");
                p = step(p, len);
            }
        }
    }

    #[test]
    fn backward_shift_keeps_runs_intact_with_wraparound() {
        let len = 13;
        let mut index = vec![IndexSlot::EMPTY; len];
        // Tags whose homes are 11, 12, 0 and 11 again: the run wraps past the end.
        let tag_for = |h: usize| ((h as u64) << 32).div_ceil(len as u64) as u32;
        let tags: Vec<u32> = [11, 11, 12, 0, 11, 1].iter().map(|&h| tag_for(h)).collect();
        for (i, &t) in tags.iter().enumerate() {
            assert_eq!(home(t, len), [11, 11, 12, 0, 11, 1][i]);
            insert(&mut index, t, i as u32 + 1).unwrap();
        }
        check_runs(&index);
        for (i, &t) in tags.iter().enumerate() {
            assert!(remove(&mut index, t, i as u32 + 1));
            check_runs(&index);
            for (k, &t2) in tags.iter().enumerate().skip(i + 1) {
                let mut p = 0;
                let got = probe(&index, t2, home(t2, len), &mut p, |h| h == k as u32 + 1);
                assert_eq!(got, k as u32 + 1);
            }
        }
        assert!(index.iter().all(|s| s.handle == 0));
        assert!(!remove(&mut index, tags[0], 1));
    }
}
