//! `rr`: round robin (docs/ipvs-semantics.md §5.1, the kernel's `ip_vs_rr.c`).
//!
//! IPVS semantics: a cursor starts at the list head. A decision walks the list circularly from
//! the element after the cursor (skipping the head while wrapping), at most one lap ending with
//! the cursor element itself, and takes the first eligible server (weight > 0, not OVERLOAD),
//! moving the cursor to it. Nothing eligible: `None`, cursor unchanged. Deleting the cursor
//! server moves the cursor to its predecessor, so the next walk starts at the deleted server's
//! successor. Weights matter only as 0 versus non-zero.
//!
//! The kernel's cursor is a list pointer; ours is a position, which the director keeps pointing
//! at the same server when servers are inserted at the head ([`RrState::on_add`]) or deleted
//! ([`RrState::on_del`]). No deliberate difference.

use crate::server::{DestList, ServerId};

/// rr's cursor: 0 is the list head, `k` the server at list position `k − 1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RrState {
    cursor: u32,
}

impl RrState {
    /// The cursor at the list head (`init_svc`).
    pub const HEAD: RrState = RrState { cursor: 0 };

    /// The cursor's list position, or `None` at the head.
    pub fn position(&self) -> Option<usize> {
        (self.cursor as usize).checked_sub(1)
    }

    /// Call after a server was inserted at the head of the list: the cursor keeps its server.
    pub fn on_add(&mut self) {
        if self.cursor > 0 {
            self.cursor += 1;
        }
    }

    /// Call after the server at list position `pos` was removed from the list (`del_dest`):
    /// if it was the cursor, the cursor moves to its predecessor.
    pub fn on_del(&mut self, pos: usize) {
        let c = self.cursor as usize;
        if c > pos {
            // The cursor was the deleted server (c == pos + 1: now its predecessor, coordinate
            // pos) or after it (shifted down by one): both are one less.
            self.cursor -= 1;
        }
    }
}

/// Picks the next eligible server after the cursor.
pub fn pick(state: &mut RrState, dests: DestList<'_>) -> Option<ServerId> {
    let n = dests.len();
    if n == 0 {
        return None;
    }
    // The element after coordinate c is list position c (mod n).
    let mut pos = state.cursor as usize;
    if pos >= n {
        pos = 0;
    }
    for _ in 0..n {
        let id = dests.order[pos];
        if dests.get(id).eligible() {
            state.cursor = pos as u32 + 1;
            return Some(id);
        }
        pos += 1;
        if pos == n {
            pos = 0;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sched::fixture::Fixture;
    use alloc::vec::Vec;

    fn picks(st: &mut RrState, f: &Fixture, n: usize) -> Vec<Option<ServerId>> {
        (0..n).map(|_| pick(st, f.list())).collect()
    }

    #[test]
    fn cycles_in_list_order_skipping_ineligible() {
        let mut f = Fixture::new();
        let a = f.add(1, 1);
        let _b = f.add(2, 0);
        let c = f.add(3, 5);
        let d = f.add(4, 1);
        // List order: d c b a. b has weight 0.
        let mut st = RrState::HEAD;
        assert_eq!(
            picks(&mut st, &f, 7),
            [d, c, a, d, c, a, d].map(Some).to_vec()
        );
        f.s(c).overloaded = true;
        assert_eq!(picks(&mut st, &f, 3), [a, d, a].map(Some).to_vec());
        f.s(a).config.weight = 0;
        f.s(d).config.weight = 0;
        let before = st;
        assert_eq!(pick(&mut st, f.list()), None);
        assert_eq!(st, before, "cursor unchanged on failure");
    }

    #[test]
    fn deleting_the_cursor_server_continues_at_its_successor() {
        let mut f = Fixture::new();
        let a = f.add(1, 1);
        let b = f.add(2, 1);
        let c = f.add(3, 1);
        // List: c b a.
        let mut st = RrState::HEAD;
        assert_eq!(pick(&mut st, f.list()), Some(c));
        assert_eq!(pick(&mut st, f.list()), Some(b));
        // Delete b (position 1), the cursor.
        f.order.remove(1);
        st.on_del(1);
        assert_eq!(st.position(), Some(0), "cursor on c, b's predecessor");
        assert_eq!(pick(&mut st, f.list()), Some(a));
        assert_eq!(pick(&mut st, f.list()), Some(c));
        // Delete the head element while the cursor is on it: cursor to the list head.
        f.order.remove(0);
        st.on_del(0);
        assert_eq!(st, RrState::HEAD);
        assert_eq!(pick(&mut st, f.list()), Some(a));
    }

    #[test]
    fn head_insert_keeps_the_cursor_server() {
        let mut f = Fixture::new();
        let a = f.add(1, 1);
        let b = f.add(2, 1);
        let mut st = RrState::HEAD;
        assert_eq!(pick(&mut st, f.list()), Some(b));
        let c = f.add(3, 1);
        st.on_add();
        // List c b a, cursor on b: next is a, then c.
        assert_eq!(picks(&mut st, &f, 3), [a, c, b].map(Some).to_vec());
    }
}
