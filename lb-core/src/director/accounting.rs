//! Per-connection and per-packet accounting: binding and unbinding entries to servers (active,
//! inactive and persistent counts, OVERLOAD, §4.7), packet and byte counters, and the
//! drained-server events.

use core::net::SocketAddr;

use super::Director;
use crate::server::{RealServer, ServerId};
use crate::service::ServiceId;

/// How many drained-server events wait for `Director::poll_drained` before further ones are
/// dropped (and `Director::drained_events_lost` reports it).
pub const DRAINED_QUEUE: usize = 32;

/// A server that became drained: weight 0, available, no references left. Its controller may
/// now delete it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DrainedServer {
    /// Its service.
    pub service: ServiceId,
    /// Its id (check `addr` before acting: the id may have been reused since).
    pub server: ServerId,
    /// Its address and port.
    pub addr: SocketAddr,
}

impl Director<'_> {
    /// Call when a new connection entry is bound to `server` (IPVS `ip_vs_bind_dest` plus the
    /// connection statistics): it counts as inactive until `set_active(true)`, OVERLOAD is set
    /// if `u_threshold ≠ 0` and active + inactive ≥ `u_threshold`, and the server's and
    /// service's `conns` grow by one. Ignored for a free slot.
    pub fn bind_conn(&mut self, server: ServerId) {
        let Some(i) = self.used(server) else { return };
        let d = &mut self.servers[i];
        d.inactive = d.inactive.saturating_add(1);
        d.stats.conns += 1;
        set_overload(d);
        let s = self.service_of(i);
        if let Some(svc) = self.svc_mut(s) {
            svc.stats.conns += 1;
        }
    }

    /// Call when a persistence template is bound to `server`: `persistent` grows by one and
    /// the OVERLOAD set check runs (templates themselves are not counted in it, §4.7).
    pub(crate) fn bind_template(&mut self, server: ServerId) {
        let Some(i) = self.used(server) else { return };
        let d = &mut self.servers[i];
        d.persistent = d.persistent.saturating_add(1);
        set_overload(d);
    }

    /// Call when a connection's state enters (`true`) or leaves (`false`) the active set
    /// (§2.1): moves one connection between `inactive` and `active`. OVERLOAD does not change.
    pub fn set_active(&mut self, server: ServerId, active: bool) {
        let Some(i) = self.used(server) else { return };
        let d = &mut self.servers[i];
        if active && d.inactive > 0 {
            d.inactive -= 1;
            d.active += 1;
        } else if !active && d.active > 0 {
            d.active -= 1;
            d.inactive += 1;
        }
    }

    /// Call when a connection entry bound to `server` is freed; `was_active` says which counter
    /// it was in. Runs IPVS's OVERLOAD clear rule (§4.7), frees a deleted server's slot when
    /// this was its last reference, and reports a weight-0 server that became drained.
    pub fn unbind_conn(&mut self, server: ServerId, was_active: bool) {
        let Some(i) = self.used(server) else { return };
        let d = &mut self.servers[i];
        if was_active {
            d.active = d.active.saturating_sub(1);
        } else {
            d.inactive = d.inactive.saturating_sub(1);
        }
        clear_overload(d);
        self.after_unref(i);
    }

    /// Call when a persistence template bound to `server` is freed: like `unbind_conn`, for
    /// `persistent`.
    pub(crate) fn unbind_template(&mut self, server: ServerId) {
        let Some(i) = self.used(server) else { return };
        let d = &mut self.servers[i];
        d.persistent = d.persistent.saturating_sub(1);
        clear_overload(d);
        self.after_unref(i);
    }

    /// Call per packet client → server: counts it on the server and its service.
    pub(crate) fn count_in(&mut self, server: ServerId, bytes: usize) {
        let Some(i) = self.used(server) else { return };
        let st = &mut self.servers[i].stats;
        st.in_pkts += 1;
        st.in_bytes += bytes as u64;
        let s = self.service_of(i);
        if let Some(svc) = self.svc_mut(s) {
            svc.stats.in_pkts += 1;
            svc.stats.in_bytes += bytes as u64;
        }
    }

    /// Call per packet server → client: counts it on the server and its service.
    #[cfg(test)]
    pub(crate) fn count_out(&mut self, server: ServerId, bytes: usize) {
        let Some(i) = self.used(server) else { return };
        let st = &mut self.servers[i].stats;
        st.out_pkts += 1;
        st.out_bytes += bytes as u64;
        let s = self.service_of(i);
        if let Some(svc) = self.svc_mut(s) {
            svc.stats.out_pkts += 1;
            svc.stats.out_bytes += bytes as u64;
        }
    }

    /// Adds `bytes` to a connection's byte counters (out: server → client) without a packet:
    /// a later fragment of a datagram, whose first fragment counted the packet (IPVS counts the
    /// reassembled datagram once).
    pub(crate) fn count_bytes(
        &mut self,
        server: ServerId,
        svc: ServiceId,
        bytes: usize,
        out: bool,
    ) {
        let Some(i) = self.used(server) else { return };
        if self.service_of(i) != usize::from(svc) {
            return;
        }
        let bytes = bytes as u64;
        let st = &mut self.servers[i].stats;
        if out {
            st.out_bytes += bytes;
        } else {
            st.in_bytes += bytes;
        }
        if let Some(svc) = self.svc_mut(usize::from(svc)) {
            if out {
                svc.stats.out_bytes += bytes;
            } else {
                svc.stats.in_bytes += bytes;
            }
        }
    }

    /// [`count_in`](Self::count_in) (or, with `out`, [`count_out`](Self::count_out)) for a
    /// connection entry's server and service: the entry's service is always its server's, so
    /// the per-packet path need not derive it from the server slot (a division).
    #[inline]
    pub(crate) fn count_conn(&mut self, server: ServerId, svc: ServiceId, bytes: usize, out: bool) {
        let Some(i) = self.used(server) else { return };
        debug_assert_eq!(self.service_of(i), usize::from(svc));
        let bytes = bytes as u64;
        let st = &mut self.servers[i].stats;
        if out {
            st.out_pkts += 1;
            st.out_bytes += bytes;
        } else {
            st.in_pkts += 1;
            st.in_bytes += bytes;
        }
        if let Some(svc) = self.svc_mut(usize::from(svc)) {
            if out {
                svc.stats.out_pkts += 1;
                svc.stats.out_bytes += bytes;
            } else {
                svc.stats.in_pkts += 1;
                svc.stats.in_bytes += bytes;
            }
        }
    }

    /// Whether `server` is drained: listed, weight 0 (quiescent) and no references left. A
    /// controller removing a server sets its weight to 0, waits for this, then deletes it.
    pub fn drained(&self, server: ServerId) -> bool {
        self.server(server)
            .is_some_and(|d| d.available && d.weight() == 0 && d.refs() == 0)
    }

    /// The next server that became drained (weight set to 0 with no references, or last
    /// reference of a weight-0 server unbound), oldest first. Poll after configuration calls
    /// and unbinds.
    pub(crate) fn poll_drained(&mut self) -> Option<DrainedServer> {
        self.drained.pop_front()
    }

    /// Whether drained events were dropped because [`DRAINED_QUEUE`] were pending; clears the
    /// flag. If so, scan the servers with [`Director::drained`].
    pub(crate) fn drained_events_lost(&mut self) -> bool {
        core::mem::take(&mut self.drained_lost)
    }

    pub(super) fn push_drained(&mut self, i: usize) {
        let ev = DrainedServer {
            service: self.service_of(i) as ServiceId,
            server: i as ServerId,
            addr: self.servers[i].addr(),
        };
        if self.drained.push_back(ev).is_err() {
            self.drained_lost = true;
        }
    }

    /// After a reference was dropped: free a deleted server, or report a drained one.
    fn after_unref(&mut self, i: usize) {
        let d = &self.servers[i];
        if d.refs() != 0 {
            return;
        }
        if !d.available {
            self.free_server(i);
        } else if d.weight() == 0 {
            self.push_drained(i);
        }
    }
}

/// `ip_vs_bind_dest`'s OVERLOAD set rule.
fn set_overload(d: &mut RealServer) {
    let u = d.config.u_threshold;
    if u != 0 && d.active + d.inactive >= u {
        d.overloaded = true;
    }
}

/// `ip_vs_unbind_dest`'s OVERLOAD clear rule, with hysteresis.
fn clear_overload(d: &mut RealServer) {
    let total = u64::from(d.active) + u64::from(d.inactive);
    let (l, u) = (d.config.l_threshold, d.config.u_threshold);
    if l != 0 {
        if total < u64::from(l) {
            d.overloaded = false;
        }
    } else if u != 0 {
        if total * 4 < u64::from(u) * 3 {
            d.overloaded = false;
        }
    } else {
        d.overloaded = false;
    }
}
