//! Half-open ("embryonic") entries, the SYN-flood defence that works with default settings
//! (docs/ipvs-semantics.md §4.6, "A full table"; issue "Hostile traffic", item 3).
//!
//! An entry is **half-open** while it is a TCP connection (not a template) in SYN_RECV or
//! SYNACK: the client sent a SYN and has not completed the handshake. That is the reading of
//! "embryonic" that works against a flood aimed at live servers: a server answers every
//! spoofed SYN with a SYN+ACK (syncookies), which passes through the balancer and clears the
//! entry's NOOUTPUT, but the spoofed "client" never sends the final ACK, so the entry stays
//! SYN_RECV. "Never saw the server's SYN+ACK" would leave such a flood untouched. A legitimate
//! handshake leaves SYN_RECV one round trip after its SYN, so on a full table the half-open
//! entry idle longest belongs to the flood.
//!
//! Two rules use it:
//! - **Eviction** (`entries.rs`): a new entry on a full table may evict the entry idle longest
//!   among the TIME_WAIT, CLOSE and half-open ones, and templates that control nothing and
//!   were never assured (never ESTABLISHED or any other state).
//! - **Per-prefix share** ([`Settings::embryonic_prefix_share`]): a new TCP connection whose
//!   client's /24 (IPv4) or /64 (IPv6) already holds that percentage of the table's capacity
//!   in half-open entries is refused (a counted drop, [`DropReason::EmbryonicPrefixLimit`]),
//!   so a flood from one network cannot crowd out the others' handshakes by eviction.
//!
//! The per-prefix counts live in [`PrefixCounts`], fixed memory inside the balancer (1 KiB, no
//! caller memory): a count-min sketch of [`ROWS`] rows of [`WIDTH`] `u32` counters, each row
//! indexed by its own bits of one keyed hash of the prefix (SipHash-1-3 under the connection
//! table's secret, so nobody can aim prefixes at one counter). A prefix's count is the
//! smallest of its counters. Prefixes that share a counter add up there: the estimate can only
//! be too high, never too low, so a collision can refuse a prefix early, never let one past its
//! share; a prefix is refused early only if *every* row collides with heavy prefixes
//! (about `(k / WIDTH)^2` of prefixes when `k` prefixes are at their share). A flood spread
//! over many prefixes loads each counter with about 1/`WIDTH` of the half-open entries (under
//! 1 % of the table), far below the default share.
//!
//! Every counted entry carries [`COUNTED`] (a spare [`ConnFlags`] bit), set when it is added
//! and cleared when it is taken off: when it leaves the half-open states and when it is
//! removed, whatever removes it (expiry, eviction, drop_entry, port reuse, a removed server),
//! since every removal goes through `Balancer::remove_entry`. So a count is taken off exactly
//! once, and a counter never goes below the entries counted in it; the arithmetic saturates
//! all the same. A counter cannot overflow: it counts entries of the table, at most its
//! capacity (a `u32` handle space). With the share 0 (off) nothing is counted; turned on later,
//! it counts the entries that become half-open from then on.

use crate::addr::Protocol;
use crate::conn::{ConnFlags, Entry};
use core::net::IpAddr;

use crate::hash::{prefix_hash, prefix_hash_v4, SipKey};
use crate::tcp::TcpState;

use super::Balancer;

#[cfg(doc)]
use super::Settings;
#[cfg(doc)]
use crate::verdict::DropReason;

/// Rows of the count-min sketch.
pub const ROWS: usize = 2;

/// Counters per row (a power of two: a row's index is bits of the hash).
pub const WIDTH: usize = 128;

/// A row index's bits.
const MASK: usize = WIDTH - 1;

/// Flag of a connection counted in [`PrefixCounts`] (a spare bit of [`ConnFlags`]; 0x10 is
/// `persist.rs`'s `INVALID`, a template's flag).
pub(super) const COUNTED: ConnFlags = ConnFlags(0x20);

/// Whether TCP state `state` is half-open: SYN_RECV or SYNACK (the client's SYN seen, its
/// handshake not completed).
#[inline(always)]
pub(super) fn half_open_state(state: u8) -> bool {
    state == TcpState::SynRecv as u8 || state == TcpState::SynAck as u8
}

/// Whether entry `e` is half-open: a TCP connection (not a template) in SYN_RECV or SYNACK.
#[inline(always)]
pub(super) fn is_half_open(e: &Entry) -> bool {
    !e.is_template() && e.proto() == Protocol::Tcp && half_open_state(e.state)
}

/// The counters of a prefix: one per row.
pub(super) type Slots = [usize; ROWS];

/// The per-prefix counts of half-open entries (module docs).
#[derive(Debug, Clone)]
pub(super) struct PrefixCounts {
    key: SipKey,
    rows: [[u32; WIDTH]; ROWS],
}

impl PrefixCounts {
    pub(super) fn new(key: SipKey) -> Self {
        PrefixCounts {
            key,
            rows: [[0; WIDTH]; ROWS],
        }
    }

    /// The counters of the /24 (IPv4, `v6` false) or /64 (IPv6) of client address `addr`, as
    /// entries store it (IPv4 in the first four bytes).
    #[inline]
    pub(super) fn slots(&self, v6: bool, addr: &[u8; 16]) -> Slots {
        let h = prefix_hash(self.key, v6, addr);
        [h as usize & MASK, (h >> 32) as usize & MASK]
    }

    /// [`slots`](Self::slots) of a packet's address.
    #[inline]
    pub(super) fn slots_ip(&self, addr: IpAddr) -> Slots {
        let h = match addr {
            IpAddr::V4(a) => prefix_hash_v4(self.key, a.octets()),
            IpAddr::V6(a) => prefix_hash(self.key, true, &a.octets()),
        };
        [h as usize & MASK, (h >> 32) as usize & MASK]
    }

    /// The half-open entries counted for the prefix with counters `s` (never fewer than it has).
    #[inline]
    pub(super) fn estimate(&self, s: Slots) -> u32 {
        let [a, b] = s;
        self.rows[0][a & MASK].min(self.rows[1][b & MASK])
    }

    /// Counts one half-open entry of the prefix with counters `s`.
    #[inline]
    pub(super) fn add(&mut self, s: Slots) {
        let [a, b] = s;
        let c = &mut self.rows[0][a & MASK];
        *c = c.saturating_add(1);
        let c = &mut self.rows[1][b & MASK];
        *c = c.saturating_add(1);
    }

    /// Takes one half-open entry of the prefix with counters `s` off.
    #[inline]
    pub(super) fn sub(&mut self, s: Slots) {
        let [a, b] = s;
        let c = &mut self.rows[0][a & MASK];
        *c = c.saturating_sub(1);
        let c = &mut self.rows[1][b & MASK];
        *c = c.saturating_sub(1);
    }

    /// The counters of entry `e`'s client prefix.
    #[inline]
    pub(super) fn slots_of(&self, e: &Entry) -> Slots {
        self.slots(e.is_ipv6(), e.client_addr_bytes())
    }

    /// Every counter is zero (tests: nothing left counted once the entries are gone).
    #[cfg(test)]
    pub(super) fn is_empty(&self) -> bool {
        self.rows.iter().flatten().all(|&c| c == 0)
    }
}

impl Balancer<'_> {
    /// Recomputes the per-prefix limit after a change of the settings.
    pub(super) fn update_embryonic_limit(&mut self) {
        self.embryonic_limit =
            prefix_limit(self.conns.capacity(), self.settings.embryonic_prefix_share);
    }
}

/// The most half-open entries one prefix may hold: `share` percent of `capacity`, at least 1;
/// `None` when the share is 0 (off).
fn prefix_limit(capacity: usize, share: u8) -> Option<u32> {
    if share == 0 {
        return None;
    }
    let n = (capacity as u64).saturating_mul(u64::from(share.min(100))) / 100;
    Some(n.clamp(1, u64::from(u32::MAX)) as u32)
}
