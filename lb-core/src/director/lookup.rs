//! Read-side queries: the per-packet service lookup (IPVS's lookup order), what an unmatched
//! destination is ([`Unmatched`]), [`is_vip`](Director::is_vip), and the accessors for services,
//! servers and their rates.

use core::net::{IpAddr, SocketAddr};

use super::Director;
use crate::addr::{addr_bytes, Protocol};
use crate::config::ServiceKey;
use crate::server::{DestList, RealServer, ServerId};
use crate::service::{Service, ServiceId, ServiceSlot};
use crate::stats::Rates;

/// What `Director::unmatched` found at a packet's destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unmatched {
    /// A deleted service still referenced by connections.
    Retired(ServiceId),
    /// The address of a live service (on another port or protocol).
    Vip,
    /// Not an address of ours.
    Other,
}

impl Director<'_> {
    /// The id of the live (not deleted) service with this key.
    pub fn service_id(&self, key: &ServiceKey) -> Option<ServiceId> {
        self.find_live(key).map(|s| s as ServiceId)
    }

    /// The service a packet belongs to, in IPVS's order (§1 "Service lookup order"): the
    /// fwmark service when a mark is given, then `<proto, addr, port>`, then a port-0 service
    /// at that address. (The FTP rule is not implemented.) Call for a packet that matches no
    /// connection entry.
    pub(crate) fn lookup(
        &self,
        proto: Protocol,
        dst: SocketAddr,
        fwmark: Option<u32>,
    ) -> Option<ServiceId> {
        if let (Some(mark), true) = (fwmark, self.fwmark_services > 0) {
            let key = ServiceKey::Fwmark {
                mark,
                v6: dst.is_ipv6(),
            };
            if let Some(s) = self.service_id(&key) {
                return Some(s);
            }
        }
        let ip = dst.ip();
        self.lookup_flow(proto, ip.is_ipv6(), &addr_bytes(ip), dst.port())
    }

    /// [`lookup`](Self::lookup) without a mark, for an address stored as a connection entry
    /// stores it (16 bytes, IPv4 in the first four, the rest zero): in one pass over the used
    /// slots, the live service keyed `<proto, addr, port>`, else a live port-0 service on
    /// `addr`. Addresses and ports only: an IPv6 VIP configured with a flow label or scope id
    /// matches packets, which carry neither (IPVS compares addresses).
    #[inline]
    pub(crate) fn lookup_flow(
        &self,
        proto: Protocol,
        v6: bool,
        addr: &[u8; 16],
        port: u16,
    ) -> Option<ServiceId> {
        let port0 = self.port0_services > 0 && port != 0;
        let mut second = None;
        for (i, slot) in self.services.get(..self.svc_high)?.iter().enumerate() {
            let Some(s) = slot.get() else { continue };
            let ServiceKey::Addr { proto: p, vip } = s.config.key else {
                continue;
            };
            if p != proto || s.deleted {
                continue;
            }
            let vport = vip.port();
            let exact = vport == port;
            let port0_candidate = port0 && vport == 0 && second.is_none();
            if !exact && !port0_candidate {
                continue;
            }
            let same_ip = match vip.ip() {
                IpAddr::V4(a) => !v6 && a.octets() == addr[..4],
                IpAddr::V6(a) => v6 && a.octets() == *addr,
            };
            if !same_ip {
                continue;
            }
            if exact {
                return Some(i as ServiceId);
            }
            second = Some(i as ServiceId);
        }
        second
    }

    /// What `dst` is to a packet that matched no live service and no tracked reply, in one
    /// pass over the service slots: the address of a deleted service still kept because
    /// connections reference its servers (same protocol, address and port, or a port-0 one),
    /// so its flows are expired and answered instead of passed on; else a live virtual
    /// address (the packet must not be passed on: it would loop); else nothing of ours.
    pub(crate) fn unmatched(&self, proto: Protocol, dst: SocketAddr) -> Unmatched {
        let mut vip = false;
        let mut port0 = None;
        for (i, slot) in self.services[..self.svc_high.min(self.services.len())]
            .iter()
            .enumerate()
        {
            let Some(s) = slot.get() else { continue };
            let ServiceKey::Addr { proto: p, vip: v } = s.config.key else {
                continue;
            };
            if v.ip() != dst.ip() {
                continue;
            }
            if !s.deleted {
                vip = true;
            } else if p == proto {
                if v.port() == dst.port() {
                    return Unmatched::Retired(i as ServiceId);
                }
                if v.port() == 0 && port0.is_none() {
                    port0 = Some(i as ServiceId);
                }
            }
        }
        match (port0, vip) {
            (Some(s), _) => Unmatched::Retired(s),
            (None, true) => Unmatched::Vip,
            (None, false) => Unmatched::Other,
        }
    }

    /// Whether `addr` is the virtual address of a live service.
    pub fn is_vip(&self, addr: IpAddr) -> bool {
        self.services[..self.svc_high.min(self.services.len())]
            .iter()
            .filter_map(ServiceSlot::get)
            .any(|s| {
                !s.deleted
                    && matches!(s.config.key, ServiceKey::Addr { vip, .. } if vip.ip() == addr)
            })
    }

    /// The service in slot `id`, deleted or not (check `deleted`).
    pub fn service(&self, id: ServiceId) -> Option<&Service> {
        self.svc(usize::from(id))
    }

    /// Live services with their ids, in slot order.
    pub fn services(&self) -> impl Iterator<Item = (ServiceId, &Service)> + '_ {
        self.services
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.get().filter(|s| !s.deleted).map(|s| (i as ServiceId, s)))
    }

    /// A service's servers in IPVS list order (empty for an unknown id).
    pub fn servers(&self, id: ServiceId) -> DestList<'_> {
        self.dests(usize::from(id))
    }

    /// A server in use (listed, or deleted but still referenced).
    pub fn server(&self, id: ServerId) -> Option<&RealServer> {
        self.used(id).map(|i| &self.servers[i])
    }

    /// A server in use, mutably. Prefer the counter methods: they keep OVERLOAD and the
    /// deletion/drain bookkeeping right; changing counters here bypasses them.
    #[cfg(test)]
    pub(crate) fn server_mut(&mut self, id: ServerId) -> Option<&mut RealServer> {
        self.used(id).map(|i| &mut self.servers[i])
    }

    /// The service a server in use belongs to.
    #[cfg(test)]
    pub(crate) fn server_service(&self, id: ServerId) -> Option<ServiceId> {
        self.used(id).map(|i| self.service_of(i) as ServiceId)
    }

    /// Marks server `id` as the health checker's `member` (`NO_MEMBER`: unchecked), DOWN or
    /// not (a server not in use is left alone).
    pub(crate) fn set_health_mark(&mut self, id: ServerId, member: u16, down: bool) {
        if let Some(i) = self.used(id) {
            self.servers[i].health = member.wrapping_add(1);
            self.servers[i].health_down = down;
        }
    }

    /// Clears every server's health mark (a new checker starts).
    pub(crate) fn clear_health_marks(&mut self) {
        for s in self.servers.iter_mut() {
            s.health = 0;
            s.health_down = false;
        }
    }

    /// Whether a listed real server is of the other address family than its service (a
    /// tunnel: IPv4 inside IPv6 or back).
    pub fn has_mixed_family_server(&self) -> bool {
        self.services().any(|(id, svc)| {
            let d = self.servers(id);
            d.order
                .iter()
                .any(|&s| d.servers[usize::from(s)].addr().is_ipv6() != svc.config.key.is_ipv6())
        })
    }

    /// The listed server of service `svc` at `addr`.
    pub fn find_server(&self, svc: ServiceId, addr: SocketAddr) -> Option<ServerId> {
        let s = usize::from(svc);
        let pos = self.position(s, addr)?;
        Some(self.order[self.base(s) + pos])
    }

    /// A server's decoded rates.
    pub fn server_rates(&self, id: ServerId) -> Option<Rates> {
        self.used(id).map(|i| self.server_rates[i].rates())
    }
}
