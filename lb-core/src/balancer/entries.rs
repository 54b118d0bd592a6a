//! The life of an entry: insertion (evicting a TIME_WAIT, CLOSE or half-open entry when the
//! table is full), the protocol state machine each packet runs on it, and removal, which
//! releases its counters, its template and its per-prefix half-open count.

use crate::addr::Protocol;
use crate::conn::{ConnFlags, Entry, Handle};
use crate::server::ServerId;
use crate::tcp::{self, Direction, TcpState, TcpTimeouts};
use crate::time::{Duration, Instant};

use super::embryonic::{half_open_state, is_half_open, COUNTED};
use super::inbound::NewConnError;
use super::Balancer;

impl Balancer<'_> {
    /// Inserts `e` (its timeout set; `hash` = `ConnTable::hash_of(&e)`, which the caller
    /// usually has from its lookup). If the table is full it evicts the entry idle longest
    /// among the TCP connections in TIME_WAIT, CLOSE or a half-open state (SYN_RECV, SYNACK:
    /// the client never completed its handshake; `embryonic.rs`) and the TCP templates that
    /// control nothing and were never assured ([`evictable`]), never any other (IPVS's
    /// table has unbounded chains and never evicts; docs/ipvs-semantics.md §4.6, "A full
    /// table").
    pub(super) fn insert(
        &mut self,
        now: Instant,
        e: Entry,
        hash: u64,
    ) -> Result<Handle, NewConnError> {
        let deadline = now + e.timeout();
        if let Ok(h) = self.conns.insert_hashed(e, deadline, hash) {
            self.generation += 1;
            return Ok(h);
        }
        self.evict(now)?;
        let h = self
            .conns
            .insert_hashed(e, deadline, hash)
            .map_err(|_| NewConnError::TableFull)?;
        self.generation += 1;
        Ok(h)
    }

    /// The full table's slow path of [`insert`](Self::insert): evicts one entry, or says
    /// `TableFull`. Out of line, so the usual insert stays small.
    #[cold]
    #[inline(never)]
    fn evict(&mut self, now: Instant) -> Result<(), NewConnError> {
        let t = &self.settings.timeouts;
        let max_timeout = [
            TcpState::TimeWait,
            TcpState::Close,
            TcpState::SynRecv,
            TcpState::SynAck,
        ]
        .map(|s| t.timeout(s))
        .into_iter()
        .max()
        .unwrap_or_default();
        let mut victim = self.conns.evict_candidate(now, max_timeout, evictable);
        if victim.is_none() {
            let (v, next) = self.conns.evict_scan(self.evict_cursor, evictable);
            self.evict_cursor = next;
            victim = v;
        }
        let Some(v) = victim else {
            return Err(NewConnError::TableFull);
        };
        let half_open = self.conns.get(v).is_some_and(is_half_open);
        self.remove_entry(v);
        self.counters.evictions += 1;
        if half_open {
            self.counters.embryonic_evictions += 1;
        }
        Ok(())
    }

    /// Applies the protocol state machine to entry `h` for a packet in direction `dir`, re-arms
    /// its idle timer and, for a forward packet (`Direction::Input`), counts it in the entry's `in_pkts`
    /// (docs/ipvs-semantics.md §2.3–2.8). One pass over the entry.
    pub(super) fn transition(&mut self, now: Instant, h: Handle, dir: Direction, tcp_flags: u8) {
        let (dos, counting) = (self.dos, self.embryonic_limit.is_some());
        let timeouts = &self.settings.timeouts;
        let r = self.conns.update(h, |e| {
            let (timeout, changes) = step(e, dir, tcp_flags, dos, timeouts, counting);
            (now + timeout, changes)
        });
        if let Some(changes) = r {
            self.stepped(now, h, dir, changes);
        }
    }

    /// Applies the state machine to `e`, a new entry not yet inserted, for its first packet
    /// (from the client): what [`transition`](Self::transition) would do to it once
    /// inserted, so it goes into the table with the timeout it keeps and is filed once.
    /// [`stepped`](Self::stepped) then takes the returned changes once it is in the table.
    pub(super) fn first_step(&self, e: &mut Entry, tcp_flags: u8) -> Step {
        let counting = self.embryonic_limit.is_some();
        let timeouts = &self.settings.timeouts;
        step(e, Direction::Input, tcp_flags, self.dos, timeouts, counting).1
    }

    /// What follows a [`step`] of entry `h` outside the entry: the per-prefix half-open
    /// count, a sync message, the server's active/inactive counts, the template assured.
    /// Always inlined: `transition` compiles as the one function it was before it shared this
    /// (held by the instruction gate: a call here cost the general path ~30 instructions).
    #[inline(always)]
    pub(super) fn stepped(&mut self, now: Instant, h: Handle, dir: Direction, changes: Step) {
        if let Some(counted) = changes.half_open_change {
            if let Some(e) = self.conns.get(h) {
                let s = self.embryonic.slots_of(e);
                if counted {
                    self.embryonic.add(s);
                } else {
                    self.embryonic.sub(s);
                }
            }
        }
        if dir != Direction::Output && self.sync.master_on() {
            self.sync_after_input(now, h, changes.old_state);
        }
        if let Some(a) = changes.active_change {
            self.director.set_active(changes.server, a);
        }
        if let Some(t) = changes.control {
            if let Some(tpl) = self.conns.get_mut(t) {
                tpl.flags.set(ConnFlags::ASSURED, true);
            }
        }
    }

    /// Removes entry `h` now, releasing its counters and its template.
    pub(super) fn remove_entry(&mut self, h: Handle) {
        let Some(e) = self.conns.remove(h) else {
            return;
        };
        self.released(&e);
        if let Some(t) = e.control() {
            self.release_control(t);
        }
    }

    /// Releases the counters of `e`, an entry just removed from the table (its template's
    /// `n_control` apart): the per-prefix half-open count, the server's active or inactive
    /// connections (or persistent ones, for a template), the generation.
    ///
    /// Always inlined: `remove_entry` then compiles as it did before it shared this (the
    /// general path's inlining, held by the instruction gate, is unchanged) and the expiry
    /// loop makes no call per entry.
    #[inline(always)]
    pub(super) fn released(&mut self, e: &Entry) {
        self.generation += 1;
        if e.flags.contains(COUNTED) {
            let s = self.embryonic.slots_of(e);
            self.embryonic.sub(s);
        }
        if e.is_template() {
            self.director.unbind_template(e.server);
        } else {
            self.director
                .unbind_conn(e.server, e.flags.contains(ConnFlags::ACTIVE));
        }
    }

    /// A controlled connection of template `t` is gone.
    pub(super) fn release_control(&mut self, t: Handle) {
        if let Some(tpl) = self.conns.get_mut(t) {
            let n = tpl.n_control();
            tpl.set_n_control(n.saturating_sub(1));
        }
    }
}

/// Whether a full table may evict `e` for a new entry: a TCP connection in TIME_WAIT, CLOSE
/// or a half-open state, or a TCP persistence template that controls no connection and was
/// never assured (none of its connections reached ESTABLISHED: what a flood at a persistent
/// service leaves once its half-open connections are gone; IPVS's `drop_entry` drops these
/// too, §4.6).
fn evictable(e: &Entry) -> bool {
    if e.proto() != Protocol::Tcp {
        return false;
    }
    if e.is_template() {
        return e.n_control() == 0 && !e.flags.contains(ConnFlags::ASSURED);
    }
    half_open_state(e.state)
        || e.state == TcpState::TimeWait as u8
        || e.state == TcpState::Close as u8
}

/// What a [`step`] changed that lies outside the entry (for [`Balancer::stepped`]).
#[derive(Debug, Clone, Copy)]
pub(super) struct Step {
    server: ServerId,
    /// The entry became active (`Some(true)`) or inactive.
    active_change: Option<bool>,
    /// The template to assure (the connection reached ESTABLISHED, or a UDP reply came).
    control: Option<Handle>,
    /// The entry is now counted as half-open for its prefix (`Some(true)`) or no longer.
    half_open_change: Option<bool>,
    /// The state before the step.
    old_state: u8,
}

/// The protocol state machine on entry `e` for a packet in direction `dir` (docs/ipvs-semantics.md
/// §2.3–2.8): its new state, flags and timeout (returned, and set), `in_pkts` counted for a
/// forward packet. `counting`: the per-prefix half-open limit is on.
#[inline(always)]
fn step(
    e: &mut Entry,
    dir: Direction,
    tcp_flags: u8,
    dos: bool,
    timeouts: &TcpTimeouts,
    counting: bool,
) -> (Duration, Step) {
    let old_state = e.state;
    let mut assure = false;
    let mut active_change = None;
    let mut half_open_change = None;
    let timeout = match e.proto() {
        Protocol::Udp => {
            assure = dir == Direction::Output;
            timeouts.udp()
        }
        Protocol::Tcp => {
            if dir == Direction::Output {
                e.flags.set(ConnFlags::NOOUTPUT, false);
            }
            let table_dir = table_direction(dir, e.flags);
            let cur = TcpState::from_u8(e.state).unwrap_or(TcpState::None);
            let new = tcp::next_state(dos, table_dir, tcp_flags, cur);
            if new != cur {
                let was = e.flags.contains(ConnFlags::ACTIVE);
                let now_active = new.is_active();
                if was != now_active {
                    e.flags.set(ConnFlags::ACTIVE, now_active);
                    active_change = Some(now_active);
                }
                e.state = new as u8;
                assure = new == TcpState::Established;
                let counted = e.flags.contains(COUNTED);
                let half_open = half_open_state(e.state) && !e.is_template();
                if counted != (counting && half_open) {
                    e.flags.set(COUNTED, !counted);
                    half_open_change = Some(!counted);
                }
            }
            timeouts.timeout(new)
        }
    };
    e.set_timeout(timeout);
    if dir != Direction::Output {
        e.count_in_pkt();
    }
    let control = if assure { e.control() } else { None };
    let changes = Step {
        server: e.server,
        active_change,
        control,
        half_open_change,
        old_state,
    };
    (timeout, changes)
}

/// The transition sub-table for a packet travelling in `dir` (`Input` from the client, `Output`
/// from the real server) on an entry with `flags`: `Input` is `InputOnly` while the entry has
/// NOOUTPUT (§2.3).
#[inline(always)]
pub(super) fn table_direction(dir: Direction, flags: ConnFlags) -> Direction {
    match dir {
        Direction::Input if flags.contains(ConnFlags::NOOUTPUT) => Direction::InputOnly,
        d => d,
    }
}
