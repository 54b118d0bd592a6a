//! Which entry is a packet's: one comparison, [`FlowKey::matches`], on the addresses as the
//! entries store them, for the fast path (borrowed from a [`Flow`]) and the general path
//! (converted from `SocketAddr`s); and the addresses an entry stands for (its server's
//! endpoint, its virtual address).

use core::net::SocketAddr;

use crate::addr::{addr_bytes, ip_of, Protocol};
use crate::config::ServiceKey;
use crate::conn::{ConnTable, Entry, Handle};
use crate::director::Director;
use crate::packet::Flow;
use crate::service::ServiceId;

use super::Balancer;

/// A packet's flow as the entry look-up compares it: protocol, family, and both ends, with the
/// addresses as the entries store them (16 bytes, an IPv4 address in the first four, the rest
/// zero). The fast path borrows them from a [`Flow`] ([`FlowKey::of`]); the general path
/// converts its `SocketAddr`s ([`Balancer::find_addrs`]).
#[derive(Clone, Copy)]
pub(super) struct FlowKey<'f> {
    proto: Protocol,
    v6: bool,
    src: &'f [u8; 16],
    sport: u16,
    dst: &'f [u8; 16],
    dport: u16,
}

impl<'f> FlowKey<'f> {
    /// The key of flow `f`.
    #[inline(always)]
    pub(super) fn of(f: &'f Flow) -> Self {
        FlowKey {
            proto: f.proto,
            v6: f.v6,
            src: &f.src,
            sport: f.sport,
            dst: &f.dst,
            dport: f.dport,
        }
    }

    /// The hash of the flow's client side, which the table indexes the entry under: the source
    /// of a forward packet (`forward`), the destination of a reply.
    #[inline(always)]
    pub(super) fn hash(&self, conns: &ConnTable<'_>, forward: bool) -> u64 {
        let (addr, port) = if forward {
            (self.src, self.sport)
        } else {
            (self.dst, self.dport)
        };
        conns.hash_bytes(self.proto, self.v6, addr, port)
    }

    /// Whether entry `e` is the connection of this flow: [`forward_match`](Self::forward_match)
    /// when `svc` (the live service of the flow's destination) is given, else
    /// [`reply_match`](Self::reply_match) — on the entry's stored form of the addresses.
    #[inline(always)]
    pub(super) fn matches(
        &self,
        director: &Director<'_>,
        e: &Entry,
        svc: Option<ServiceId>,
    ) -> bool {
        match svc {
            Some(svc) => self.forward_match(director, e, svc),
            None => self.reply_match(director, e),
        }
    }

    /// Whether entry `e` is the connection of this forward packet (client → VIP:vport). `svc` is
    /// the service `Director::lookup` (or `unmatched`) found for the packet: an entry of that
    /// service has the packet's VIP, so its service need not be read.
    #[inline(always)]
    fn forward_match(&self, director: &Director<'_>, e: &Entry, svc: ServiceId) -> bool {
        e.matches_conn(Entry::conn_key(self.proto, self.v6), self.src, self.sport)
            && e.vport == self.dport
            && (e.service == svc
                || director.service(e.service).is_some_and(|s| {
                    let dst = SocketAddr::new(ip_of(self.v6, self.dst), self.dport);
                    service_has_vip(&s.config.key, dst)
                }))
    }

    /// Whether entry `e` is the connection of this reply (real server → client): the client is
    /// the destination, the server's endpoint the source.
    #[inline(always)]
    fn reply_match(&self, director: &Director<'_>, e: &Entry) -> bool {
        e.matches_conn(Entry::conn_key(self.proto, self.v6), self.dst, self.dport)
            && director.server(e.server).is_some_and(|s| {
                // Address and port only (not an IPv6 flow label or scope id the configuration
                // may carry).
                let a = s.addr();
                let port = if a.port() == 0 { e.vport } else { a.port() };
                port == self.sport && addr_bytes(a.ip()) == *self.src
            })
    }
}

impl Balancer<'_> {
    /// The entry of a flow: a connection of `svc` for a forward packet, the connection a reply
    /// belongs to when `svc` is `None`.
    #[inline(always)]
    pub(super) fn find_flow(
        &self,
        hash: u64,
        f: &FlowKey<'_>,
        svc: Option<ServiceId>,
    ) -> Option<Handle> {
        let director = &self.director;
        self.conns.find(hash, |e| f.matches(director, e, svc))
    }

    /// [`find_flow`](Self::find_flow) for the general path, which reads `SocketAddr`s: the flow
    /// of protocol `proto` from `src` to `dst`, forward when `svc` is given. Returns the flow's
    /// hash too (the one to insert a new entry under).
    pub(super) fn find_addrs(
        &self,
        proto: Protocol,
        src: SocketAddr,
        dst: SocketAddr,
        svc: Option<ServiceId>,
    ) -> (u64, Option<Handle>) {
        let (s, d) = (addr_bytes(src.ip()), addr_bytes(dst.ip()));
        let f = FlowKey {
            proto,
            v6: src.is_ipv6(),
            src: &s,
            sport: src.port(),
            dst: &d,
            dport: dst.port(),
        };
        let hash = f.hash(&self.conns, svc.is_some());
        (hash, self.find_flow(hash, &f, svc))
    }

    /// The entry of a reply from `server_side` to `client`, if we track it.
    pub(super) fn find_reply(
        &self,
        proto: Protocol,
        server_side: SocketAddr,
        client: SocketAddr,
    ) -> Option<Handle> {
        self.find_addrs(proto, server_side, client, None).1
    }

    /// Where packets of entry `e` go: its server's address and port (the virtual port for a
    /// port-0 server).
    #[inline]
    pub(super) fn endpoint_of(&self, e: &Entry) -> Option<SocketAddr> {
        self.director
            .server(e.server)
            .map(|s| server_endpoint(s.addr(), e.vport))
    }

    /// The virtual address and port a reply of entry `e` must come from.
    #[inline]
    pub(super) fn vip_of(&self, e: &Entry) -> Option<SocketAddr> {
        match self.director.service(e.service)?.config.key {
            ServiceKey::Addr { vip, .. } => Some(SocketAddr::new(vip.ip(), e.vport)),
            ServiceKey::Fwmark { .. } => None,
        }
    }
}

/// Whether `key` is the service for packets to `dst` (a port-0 service takes any port).
#[inline]
pub(super) fn service_has_vip(key: &ServiceKey, dst: SocketAddr) -> bool {
    match key {
        ServiceKey::Addr { vip, .. } => {
            vip.ip() == dst.ip() && (vip.port() == dst.port() || vip.port() == 0)
        }
        ServiceKey::Fwmark { .. } => false,
    }
}

/// A server's endpoint for a connection to virtual port `vport`: its own port, or the virtual
/// port when its port is 0.
#[inline]
pub(super) fn server_endpoint(addr: SocketAddr, vport: u16) -> SocketAddr {
    if addr.port() == 0 {
        SocketAddr::new(addr.ip(), vport)
    } else {
        addr
    }
}
