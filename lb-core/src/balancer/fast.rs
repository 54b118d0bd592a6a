//! The established-flow fast path: what most packets of a busy balancer are — a TCP segment
//! or UDP datagram of a flow already in the table, whose state does not change — handled from
//! a [`Flow`] (addresses as the entries store them, no `SocketAddr`s) with no step the general
//! path would not take.
//!
//! [`Balancer::process_flow`] tries [`fast_forward`](Balancer::fast_forward) or
//! [`fast_reply`](Balancer::fast_reply); each checks every condition first and returns `None`,
//! having changed nothing, when the packet needs more than "re-arm the timer, count, rewrite":
//! a SYN (port reuse, §3.2 step 1), a state change (counters, templates), a removed server
//! (expire_nodest_conn), a reply that is the first of its flow (NOOUTPUT), any packet of a DR or
//! tunnel connection (NAT's path pays one test of the entry's flags for it), a UDP reply that
//! assures a template. A packet with a partial checksum ([`Packet::csum_partial`]) never comes
//! here: `process_packet` and the burst send it down the general path, whose rewrites follow it,
//! so this path's rewrite assumes a complete checksum and pays nothing for the other kind.
//!
//! The general path ([`Balancer::process_parsed`]) then takes the packet with the look-ups
//! already made.
//!
//! A SYN that no entry holds, to a service without persistence, takes
//! [`fast_new`](Balancer::fast_new): `inbound`'s steps 3 and 4 for it (the same `new_conn`, the
//! first step made before the insert) without the full parse and the general path's dispatch.
//!
//! The paths give the same verdicts, packets and counters: the tests and the fuzz target run
//! every packet through both orders of the same balancer (single calls and bursts) and compare.
//!
//! [`Packet::csum_partial`]: super::Packet::csum_partial

use crate::addr::{addr_bytes, ip_of, Protocol};
use crate::config::ServiceKey;
use crate::conn::{ConnFlags, Entry, Handle};
use crate::nat;
use crate::packet::Flow;
use crate::service::ServiceId;
use crate::tcp::{self, Direction, TcpState};
use crate::time::{Duration, Instant};
use crate::verdict::{DropReason, Transmit, Verdict};

use super::datapath::Hint;
use super::entries::table_direction;
use super::inbound::NewConn;
use super::matching::{server_endpoint, FlowKey};
use super::method;
use super::Balancer;

/// The datapath's last service look-up: destination (protocol, family, address, port) → the
/// live service there, or none. Packets of a burst mostly go to one VIP (or come back from one
/// server to one client), so most look-ups are one comparison. The balancer clears it on every
/// configuration change ([`Balancer::apply`], [`Balancer::director_mut`]): the services do not
/// change otherwise (a deleted service freed by the datapath was never a live answer).
#[derive(Debug, Clone, Copy)]
pub(super) struct SvcCache {
    valid: bool,
    key: u8,
    port: u16,
    addr: [u8; 16],
    svc: Option<ServiceId>,
}

impl SvcCache {
    pub(super) const EMPTY: SvcCache = SvcCache {
        valid: false,
        key: 0,
        port: 0,
        addr: [0; 16],
        svc: None,
    };
}

impl<'a> Balancer<'a> {
    /// A flow's live service (it is then a forward packet) and the hash of its client side:
    /// the source of a forward packet, the destination of a reply.
    #[inline(always)]
    pub(super) fn look(&mut self, f: &Flow) -> (Option<ServiceId>, u64) {
        let key = Entry::conn_key(f.proto, f.v6);
        let c = &self.svc_cache;
        let svc = if c.valid && c.key == key && c.port == f.dport && c.addr == f.dst {
            c.svc
        } else {
            let svc = self.director.lookup_flow(f.proto, f.v6, &f.dst, f.dport);
            self.svc_cache = SvcCache {
                valid: true,
                key,
                port: f.dport,
                addr: f.dst,
                svc,
            };
            svc
        };
        (svc, FlowKey::of(f).hash(&self.conns, svc.is_some()))
    }

    /// A packet of the common shape, its look-ups made: the fast path if it applies, else the
    /// general path with the look-ups as hints.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    pub(super) fn process_flow(
        &mut self,
        now: Instant,
        buf: &mut [u8],
        len: usize,
        f: &Flow,
        svc: Option<ServiceId>,
        hash: u64,
        found: Option<Handle>,
    ) -> Verdict {
        if let Some(h) = found {
            let fast = match svc {
                Some(_) => self.fast_forward(now, buf, len, f, h),
                None => self.fast_reply(now, buf, len, f, h),
            };
            if let Some(v) = fast {
                return v;
            }
        }
        if let (None, Some(svc)) = (found, svc) {
            if f.proto == Protocol::Tcp
                && f.tcp_flags & (tcp::flags::SYN | tcp::flags::RST) == tcp::flags::SYN
            {
                if let Some(v) = self.fast_new(now, buf, len, f, svc, hash) {
                    return v;
                }
            }
        }
        let hint = match svc {
            Some(svc) => Hint::Forward(svc, hash, found),
            None => Hint::Reply(found),
        };
        self.process_parsed(now, buf, len, &f.to_parsed(), hint)
    }

    /// Client → real server on an entry whose state stays: `inbound`'s steps 2 and 4 with
    /// nothing to decide. `None` (nothing changed) when the general path must decide.
    #[inline(always)]
    fn fast_forward(
        &mut self,
        now: Instant,
        buf: &mut [u8],
        len: usize,
        f: &Flow,
        h: Handle,
    ) -> Option<Verdict> {
        if f.proto == Protocol::Tcp && f.tcp_flags & tcp::flags::SYN != 0 {
            return None;
        }
        let e = self.conns.get(h)?;
        if !method::is_nat(e.flags) {
            // Direct routing or a tunnel: the general path.
            return None;
        }
        let s = self.director.server(e.server)?;
        if !s.available {
            return None;
        }
        let (server, svc) = (e.server, e.service);
        let dest = server_endpoint(s.addr(), e.vport);
        let timeout = self.steady_timeout(e, f, Direction::Input)?;
        self.conns.update(h, |e| {
            e.set_timeout(timeout);
            e.count_in_pkt();
            (now + timeout, ())
        })?;
        if self.sync.master_on() {
            // The state did not change (`steady_timeout`): the entry's own is the old one.
            self.sync_after_steady(now, h);
        }
        if nat::rewrite_flow(
            &mut buf[..len],
            f,
            &addr_bytes(dest.ip()),
            dest.port(),
            false,
        )
        .is_err()
        {
            return Some(self.drop(DropReason::Malformed, false));
        }
        self.director.count_conn(server, svc, len, false);
        Some(Verdict::ToServer(Transmit {
            start: 0,
            dst: dest.ip(),
            len: f.total_len as usize,
        }))
    }

    /// Client → service, a SYN without RST that no entry holds: `inbound`'s steps 3 and 4
    /// for it — a new connection scheduled (`new_conn`, shared), its first step, the
    /// rewrite — from the [`Flow`], without the general path's look-ups and dispatch. `None`
    /// (nothing changed) for a persistent service: templates take the general path.
    /// Out of line and cold: the established-flow loop stays as it was (instruction gate).
    #[cold]
    #[inline(never)]
    fn fast_new(
        &mut self,
        now: Instant,
        buf: &mut [u8],
        len: usize,
        f: &Flow,
        svc: ServiceId,
        hash: u64,
    ) -> Option<Verdict> {
        if self.director.service(svc)?.config.persistence.is_some() {
            return None;
        }
        let p = f.to_parsed();
        let (h, first) = match self.new_conn(now, &p, Protocol::Tcp, svc, hash) {
            Ok(NewConn::Entry(h, first)) => (h, first),
            // One-packet scheduling is UDP's: not here.
            Ok(NewConn::OnePacket(server)) => {
                return Some(self.forward_ops(now, buf, len, &p, server))
            }
            Err(err) => return Some(self.not_created(now, buf, len, &p, Protocol::Tcp, err)),
        };
        let Some(e) = self.conns.get(h) else {
            return Some(self.drop(DropReason::NoConnection, true));
        };
        let (server, svc, flags) = (e.server, e.service, e.flags);
        let Some(dest) = self.endpoint_of(e) else {
            return Some(self.drop(DropReason::NoDest, true));
        };
        self.stepped(now, h, Direction::Input, first);
        let outer = if method::is_nat(flags) {
            let to = addr_bytes(dest.ip());
            if nat::rewrite_flow(&mut buf[..len], f, &to, dest.port(), false).is_err() {
                return Some(self.drop(DropReason::Malformed, true));
            }
            0
        } else {
            match self.send_to_server(now, buf, len, &p, dest, flags, server, true) {
                Ok(outer) => outer,
                Err(v) => return Some(v),
            }
        };
        self.director.count_conn(server, svc, len, false);
        Some(Verdict::ToServer(Transmit {
            start: 0,
            dst: dest.ip(),
            len: f.total_len as usize + outer,
        }))
    }

    /// Real server → client on an entry whose state stays and that has seen a reply before:
    /// `outbound` with nothing to decide. `None` (nothing changed) when the general path must.
    #[inline(always)]
    fn fast_reply(
        &mut self,
        now: Instant,
        buf: &mut [u8],
        len: usize,
        f: &Flow,
        h: Handle,
    ) -> Option<Verdict> {
        if self.health.passive_on && f.tcp_flags & tcp::flags::SYN != 0 {
            // A server's SYN-ACK is a passive health signal: the general path counts it.
            return None;
        }
        let e = self.conns.get(h)?;
        if e.flags.contains(ConnFlags::NOOUTPUT)
            || !method::is_nat(e.flags)
            || e.control().is_some()
        {
            return None;
        }
        let ServiceKey::Addr { vip, .. } = self.director.service(e.service)?.config.key else {
            return None;
        };
        let (server, svc, vport) = (e.server, e.service, e.vport);
        let timeout = self.steady_timeout(e, f, Direction::Output)?;
        self.conns.update(h, |e| {
            e.set_timeout(timeout);
            (now + timeout, ())
        })?;
        if nat::rewrite_flow(&mut buf[..len], f, &addr_bytes(vip.ip()), vport, true).is_err() {
            return Some(self.drop(DropReason::Malformed, false));
        }
        self.director.count_conn(server, svc, len, true);
        Some(Verdict::ToClient(Transmit {
            start: 0,
            dst: ip_of(f.v6, &f.dst),
            len: f.total_len as usize,
        }))
    }

    /// The timeout entry `e` re-arms with for packet `f` in table direction `dir` when its
    /// state does not change (UDP, or a TCP transition to the same state); `None` when it does.
    #[inline(always)]
    fn steady_timeout(&self, e: &Entry, f: &Flow, dir: Direction) -> Option<Duration> {
        match f.proto {
            Protocol::Udp => Some(self.settings.timeouts.udp()),
            Protocol::Tcp => {
                let cur = TcpState::from_u8(e.state)?;
                let dir = table_direction(dir, e.flags);
                (tcp::next_state(self.dos, dir, f.tcp_flags, cur) == cur)
                    .then(|| self.settings.timeouts.timeout(cur))
            }
        }
    }
}
