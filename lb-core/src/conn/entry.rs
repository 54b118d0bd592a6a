//! One connection entry: what IPVS keeps per connection (docs/ipvs-semantics.md §1 "Connection entry") and no
//! more, in 40 bytes; plus the 48-byte slab slot that adds the two timer-wheel links.
//!
//! Layout of [`Entry`] (`size_of` asserted in the tests):
//!
//! | bytes | field |
//! |---|---|
//! | 16 | client address (IPv4 in the first 4 bytes, the rest zero) |
//! | 2 + 2 | client port, virtual port |
//! | 2 + 2 | service index, real-server index |
//! | 1 | key byte: protocol number, IPv6 bit, TEMPLATE bit (fixed at creation) |
//! | 1 + 1 + 1 | TCP/UDP state (opaque here), [`ConnFlags`], `in_pkts` |
//! | 4 | `control` handle (connections) or `n_control` count (templates) |
//! | 4 + 4 | expiry deadline and re-arm timeout, in [ticks](super::TICKS_PER_SEC) |
//!
//! `control` and `n_control` share four bytes: in IPVS only a persistence template is ever
//! controlled-by-nobody-and-controls-others, and a normal connection controls nothing (lb-core has
//! no FTP helper, whose control connection is the one exception). The TEMPLATE bit is fixed at
//! construction, so the two readings cannot be confused.

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use core::num::NonZeroU32;

use crate::addr::{addr_bytes, Protocol};
use crate::time::Duration;

use super::wheel::{ticks_from_duration, ticks_to_duration};

/// A handle to a live entry of a [`ConnTable`](super::ConnTable): its slab index plus one.
///
/// `Option<Handle>` is four bytes and `None` is all-zero. A handle stays valid until the entry is
/// removed; after that the slot may be reused, so do not keep handles to removed entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Handle(NonZeroU32);

impl Handle {
    /// The handle of slab slot `index`, if the index fits (`index < u32::MAX`).
    pub const fn from_index(index: usize) -> Option<Handle> {
        if index >= u32::MAX as usize {
            return None;
        }
        match NonZeroU32::new(index as u32 + 1) {
            Some(n) => Some(Handle(n)),
            None => None,
        }
    }

    /// The slab slot this handle names.
    pub const fn index(self) -> usize {
        (self.0.get() - 1) as usize
    }

    /// The raw non-zero value (slot index + 1), as stored in index slots and links.
    pub(super) const fn raw(self) -> u32 {
        self.0.get()
    }

    /// The handle for a raw link value; `None` for 0.
    pub(super) const fn from_raw(raw: u32) -> Option<Handle> {
        match NonZeroU32::new(raw) {
            Some(n) => Some(Handle(n)),
            None => None,
        }
    }
}

/// Per-connection flags the balancer reads and writes. One byte; the four high bits are spare
/// for the balancer's own use. (IPVS's TEMPLATE flag is not here: it is part of the entry's key,
/// fixed at creation, see [`Entry::template`] and [`Entry::is_template`].)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ConnFlags(pub u8);

impl ConnFlags {
    /// No flag set.
    pub const NONE: ConnFlags = ConnFlags(0);
    /// IPVS `NOOUTPUT`: no reply has been seen yet (the INPUT_ONLY table applies, §2.3).
    pub const NOOUTPUT: ConnFlags = ConnFlags(0x01);
    /// IPVS `ONE_PACKET`: one-packet scheduling (§4.4), expire right after the packet.
    pub const ONE_PACKET: ConnFlags = ConnFlags(0x02);
    /// Template assured (§4.3): a controlled TCP connection reached ESTABLISHED, or UDP saw a reply.
    pub const ASSURED: ConnFlags = ConnFlags(0x04);
    /// The entry is counted in its server's `activeconns` (else `inactconns`/`persistconns`).
    pub const ACTIVE: ConnFlags = ConnFlags(0x08);
    /// Spare bits the table never reads, free for the balancer.
    pub const SPARE: ConnFlags = ConnFlags(0xf0);

    /// Whether every bit of `other` is set.
    pub const fn contains(self, other: ConnFlags) -> bool {
        self.0 & other.0 == other.0
    }

    /// Sets (`on`) or clears the bits of `other`.
    pub fn set(&mut self, other: ConnFlags, on: bool) {
        if on {
            self.0 |= other.0;
        } else {
            self.0 &= !other.0;
        }
    }
}

impl core::ops::BitOr for ConnFlags {
    type Output = ConnFlags;
    fn bitor(self, rhs: ConnFlags) -> ConnFlags {
        ConnFlags(self.0 | rhs.0)
    }
}

/// Key byte: bits 0..=4 protocol number (6 or 17), bit 6 IPv6, bit 7 TEMPLATE.
const KEY_PROTO: u8 = 0x1f;
const KEY_V6: u8 = 0x40;
const KEY_TEMPLATE: u8 = 0x80;

/// One connection (or persistence template) as the balancer sees it: 40 bytes.
///
/// The lookup key (protocol, client address and port, IPv4/IPv6, TEMPLATE) is fixed when the
/// entry is built with [`Entry::new`] or [`Entry::template`]: the table's index is keyed on it,
/// so it has no setters. Everything else is a public field or an accessor the balancer may change
/// at will through [`ConnTable::get_mut`](super::ConnTable::get_mut), except the deadline, which
/// moves only through [`ConnTable::touch`](super::ConnTable::touch) so the timer wheel stays right.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    client_addr: [u8; 16],
    client_port: u16,
    /// Virtual port the client addressed (the service gives the virtual address). For port-0 and
    /// fwmark services this is the packet's own destination port.
    pub vport: u16,
    /// Index of the service in the balancer's service table.
    pub service: u16,
    /// Index of the real server in the balancer's server table.
    pub server: u16,
    key: u8,
    /// TCP or UDP state (docs/ipvs-semantics.md §2.1 / §2.8); opaque to the table.
    pub state: u8,
    /// See [`ConnFlags`].
    pub flags: ConnFlags,
    /// Incoming packets seen, saturating at 255 (IPVS uses it for sync thresholds and OPS).
    pub in_pkts: u8,
    /// `control` handle (raw, 0 = none) for a connection; `n_control` for a template.
    link: u32,
    /// Deadline, in ticks since the caller's epoch, truncated to 32 bits (see the wheel docs).
    pub(super) deadline: u32,
    /// Timeout to re-arm with, in ticks.
    timeout: u32,
}

impl Entry {
    /// All zero: the contents of a never-used slab slot.
    pub(crate) const ZERO: Entry = Entry {
        client_addr: [0; 16],
        client_port: 0,
        vport: 0,
        service: 0,
        server: 0,
        key: 0,
        state: 0,
        flags: ConnFlags::NONE,
        in_pkts: 0,
        link: 0,
        deadline: 0,
        timeout: 0,
    };

    /// A normal connection entry for the client `client` using `proto`, with every other field
    /// zero (state 0, no flags, no control, timeout 0). Set the rest before inserting it.
    pub fn new(proto: Protocol, client: SocketAddr) -> Entry {
        Entry::with_key(proto, client.ip(), client.port(), 0)
    }

    /// A persistence template (IPVS TEMPLATE flag, docs/ipvs-semantics.md §4.3) for `client_addr` (already
    /// masked by the caller) and `client_port` (0 except where IPVS keeps a port).
    pub fn template(proto: Protocol, client_addr: IpAddr, client_port: u16) -> Entry {
        Entry::with_key(proto, client_addr, client_port, KEY_TEMPLATE)
    }

    fn with_key(proto: Protocol, addr: IpAddr, port: u16, extra: u8) -> Entry {
        let mut e = Entry::ZERO;
        e.client_addr = addr_bytes(addr);
        e.key = Entry::conn_key(proto, addr.is_ipv6()) | extra;
        e.client_port = port;
        e
    }

    /// The transport protocol.
    pub fn proto(&self) -> Protocol {
        Protocol::from_number(self.key & KEY_PROTO).unwrap_or(Protocol::Tcp)
    }

    /// Whether the client address is IPv6.
    pub const fn is_ipv6(&self) -> bool {
        self.key & KEY_V6 != 0
    }

    /// Whether this is a persistence template (IPVS `IP_VS_CONN_F_TEMPLATE`).
    pub const fn is_template(&self) -> bool {
        self.key & KEY_TEMPLATE != 0
    }

    /// The client address.
    pub fn client_addr(&self) -> IpAddr {
        if self.is_ipv6() {
            IpAddr::V6(Ipv6Addr::from(self.client_addr))
        } else {
            let a = &self.client_addr;
            IpAddr::V4(Ipv4Addr::new(a[0], a[1], a[2], a[3]))
        }
    }

    /// The client address as stored: 16 bytes, an IPv4 address in the first four.
    pub const fn client_addr_bytes(&self) -> &[u8; 16] {
        &self.client_addr
    }

    /// The client port (0 for most templates).
    pub const fn client_port(&self) -> u16 {
        self.client_port
    }

    /// The client side as a socket address.
    pub fn client(&self) -> SocketAddr {
        SocketAddr::new(self.client_addr(), self.client_port)
    }

    /// Whether the key equals (`proto`, `addr`, `port`): the part of a lookup the index hash
    /// covers, to be checked by every lookup predicate.
    #[inline]
    pub fn key_matches(&self, proto: Protocol, addr: IpAddr, port: u16) -> bool {
        if self.client_port != port || self.key & KEY_PROTO != proto.number() {
            return false;
        }
        match addr {
            IpAddr::V4(a) => !self.is_ipv6() && self.client_addr[..4] == a.octets(),
            IpAddr::V6(a) => self.is_ipv6() && self.client_addr == a.octets(),
        }
    }

    /// The key byte of a connection (not a template) of `proto` over IPv6 (`v6`) or IPv4: what
    /// [`matches_conn`](Self::matches_conn) compares.
    #[inline]
    pub const fn conn_key(proto: Protocol, v6: bool) -> u8 {
        proto.number() | if v6 { KEY_V6 } else { 0 }
    }

    /// Whether this is a connection (not a template) whose key is `key` (from
    /// [`conn_key`](Self::conn_key)), client address `addr` (stored as in the entry: IPv4 in
    /// the first four bytes, the rest zero) and client port `port`. The datapath's form of
    /// `!is_template() && key_matches(..)`.
    #[inline]
    pub fn matches_conn(&self, key: u8, addr: &[u8; 16], port: u16) -> bool {
        self.key == key && self.client_port == port && self.client_addr == *addr
    }

    /// The template controlling this connection (IPVS `cp->control`); always `None` for a
    /// template.
    pub fn control(&self) -> Option<Handle> {
        if self.is_template() {
            None
        } else {
            Handle::from_raw(self.link)
        }
    }

    /// Sets the controlling template. Ignored for a template, which is never controlled.
    pub fn set_control(&mut self, control: Option<Handle>) {
        if !self.is_template() {
            self.link = control.map_or(0, Handle::raw);
        }
    }

    /// How many entries this template controls (IPVS `n_control`); always 0 for a connection.
    pub const fn n_control(&self) -> u32 {
        if self.is_template() {
            self.link
        } else {
            0
        }
    }

    /// Sets `n_control`. Ignored for a normal connection, which controls nothing.
    pub fn set_n_control(&mut self, n: u32) {
        if self.is_template() {
            self.link = n;
        }
    }

    /// The timeout to re-arm with (IPVS `cp->timeout`), as stored: rounded up to whole ticks.
    pub fn timeout(&self) -> Duration {
        ticks_to_duration(self.timeout)
    }

    /// The timeout to re-arm with, in ticks as stored.
    pub(super) const fn timeout_ticks(&self) -> u32 {
        self.timeout
    }

    /// Sets the timeout to re-arm with; rounded up to a whole tick, capped at
    /// [`MAX_TIMEOUT`](super::MAX_TIMEOUT).
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = ticks_from_duration(timeout);
    }

    /// Counts one incoming packet (`in_pkts`, saturating).
    pub fn count_in_pkt(&mut self) {
        self.in_pkts = self.in_pkts.saturating_add(1);
    }
}

/// One slot of the table's slab: an [`Entry`] plus the timer-wheel links, 48 bytes.
///
/// Callers only allocate these (`[ConnSlot::EMPTY; N]` or [`ConnStorage`](super::ConnStorage));
/// the contents are the table's business.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnSlot {
    pub(super) entry: Entry,
    /// Next entry in the same wheel bucket (raw handle, 0 = end), or the next free slot.
    pub(super) next: u32,
    /// Previous entry in the bucket (raw handle), or `BUCKET | bucket` for the first one, or
    /// one of the markers `FREE` / `DETACHED`.
    pub(super) prev: u32,
}

impl ConnSlot {
    /// An unused slot (all zero bits, so arrays of it can live in `.bss`).
    pub const EMPTY: ConnSlot = ConnSlot {
        entry: Entry::ZERO,
        next: 0,
        prev: 0,
    };
}

impl Default for ConnSlot {
    fn default() -> Self {
        ConnSlot::EMPTY
    }
}
