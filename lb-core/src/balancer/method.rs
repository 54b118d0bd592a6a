//! The forwarding method a connection is bound to (docs/ipvs-semantics.md §6.2). IPVS binds a
//! connection's transmitter when it creates the connection (`ip_vs_bind_xmit`, from its real
//! server's method; a synced connection takes its local real server's method): editing a real
//! server's method later changes new connections only. We keep the method in two spare entry
//! flags, so the datapath reads it from the entry it already holds.
//!
//! * NAT (no flag): destination rewritten to the real server, replies rewritten back.
//! * Direct routing ([`ROUTE`]): the packet goes unchanged, the real server as next hop
//!   ([`Transmit::dst`](crate::Transmit::dst)); replies never pass the balancer, and a packet
//!   that looks like one is passed untouched (IPVS's `ip_vs_out_hook` ignores non-NAT
//!   connections).
//! * Tunnelling ([`TUNNEL`]): the datapath does not encapsulate; such a packet is a counted
//!   drop, [`DropReason::UnsupportedMethod`](crate::DropReason::UnsupportedMethod).
//!   [`Balancer::apply`](crate::Balancer::apply) refuses `-i` servers, so only a server added
//!   through [`Balancer::director_mut`](crate::Balancer::director_mut) gets here.
//!
//! Both non-NAT methods start their entries with NOOUTPUT, so TCP runs on the INPUT_ONLY table.

use crate::config::ForwardMethod;
use crate::conn::{ConnFlags, Entry};

/// Entry flag: bound to direct routing (a spare bit of [`ConnFlags`]; 0x10 is `persist.rs`'s
/// `INVALID`, 0x20 `embryonic.rs`'s `COUNTED`).
pub(super) const ROUTE: ConnFlags = ConnFlags(0x40);
/// Entry flag: bound to tunnelling.
pub(super) const TUNNEL: ConnFlags = ConnFlags(0x80);
/// Either non-NAT method.
const NOT_NAT: u8 = ROUTE.0 | TUNNEL.0;

/// The flags of a new entry bound to `method`: its method flag, and NOOUTPUT for DR and
/// tunnels.
pub(super) const fn flags(method: ForwardMethod) -> ConnFlags {
    match method {
        ForwardMethod::Masq => ConnFlags::NONE,
        ForwardMethod::Route => ConnFlags(ConnFlags::NOOUTPUT.0 | ROUTE.0),
        ForwardMethod::Tunnel(_) => ConnFlags(ConnFlags::NOOUTPUT.0 | TUNNEL.0),
    }
}

/// Binds new entry `e` to `method` ([`flags`]).
pub(super) fn bind(e: &mut Entry, method: ForwardMethod) {
    e.flags.0 = (e.flags.0 & !(ConnFlags::NOOUTPUT.0 | NOT_NAT)) | flags(method).0;
}

/// Whether an entry with `flags` is bound to NAT.
#[inline(always)]
pub(super) const fn is_nat(flags: ConnFlags) -> bool {
    flags.0 & NOT_NAT == 0
}
