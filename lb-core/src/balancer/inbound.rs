//! Client → virtual service (docs/ipvs-semantics.md §3.2 `ip_vs_in_hook`): a SYN on an existing entry (port
//! reuse, quiescent server), a removed server's flow, the scheduling of a new connection
//! (persistence templates first, see `persist.rs`) and one-packet scheduling.

use crate::addr::Protocol;
use crate::config::ForwardMethod;
use crate::conn::{ConnFlags, Entry, Handle};
use crate::director::SchedInput;
use crate::packet::Parsed;
use crate::server::ServerId;
use crate::service::ServiceId;
use crate::tcp::{self, Direction, TcpState};
use crate::time::Instant;
use crate::verdict::{DropReason, Transmit, Verdict};

use super::embryonic::COUNTED;
use super::entries::Step;
use super::matching::server_endpoint;
use super::method;
use super::Balancer;

impl Balancer<'_> {
    /// Client → virtual service (docs/ipvs-semantics.md §3.2 `ip_vs_in_hook`).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn inbound(
        &mut self,
        now: Instant,
        buf: &mut [u8],
        len: usize,
        p: &Parsed,
        proto: Protocol,
        svc: ServiceId,
        found: Option<(u64, Option<Handle>)>,
    ) -> Verdict {
        let syn = proto == Protocol::Tcp && p.tcp_flags & tcp::flags::SYN != 0;
        let rst = proto == Protocol::Tcp && p.tcp_flags & tcp::flags::RST != 0;
        let (hash, mut found) = match found {
            Some(found) => found,
            None => self.find_addrs(proto, p.src, p.dst, Some(svc)),
        };

        // Step 1: a SYN on an existing entry (docs/ipvs-semantics.md §3.2 step 1). The weight-0
        // reschedule depends on expire_nodest_conn alone, not on conn_reuse_mode: that is the
        // kernel since c95c07836fa4 (Linux 5.16, stable 4.19/5.4/5.15, §3.4); before it,
        // conn_reuse_mode 0 also switched this half off. We follow current kernels.
        if let (Some(h), true) = (found, syn) {
            if let Some(e) = self.conns.get(h) {
                let server = self.director.server(e.server);
                let quiescent = server.is_some_and(|s| s.available && s.weight() == 0);
                if server.is_some_and(|s| s.health_down) {
                    // A retransmitted SYN to a server the health checker took DOWN: to a
                    // live one, so the client sees one retransmission, not a failure.
                    self.remove_entry(h);
                    self.counters.health_reschedules += 1;
                    found = None;
                } else if self.settings.expire_nodest_conn && quiescent {
                    self.remove_entry(h);
                    self.counters.quiescent_reschedules += 1;
                    found = None;
                } else if self.reusable(e) {
                    self.remove_entry(h);
                    self.counters.reuse_reschedules += 1;
                    found = None;
                }
            }
        }

        // Step 2: the entry's server was removed. (An entry that stays gives step 4 its
        // server and destination: one look-up of each per packet.)
        let mut target = None;
        if let Some(h) = found {
            let mut available = false;
            if let Some(e) = self.conns.get(h) {
                if let Some(s) = self.director.server(e.server) {
                    available = s.available;
                    target = Some((
                        e.server,
                        e.service,
                        server_endpoint(s.addr(), e.vport),
                        e.flags,
                    ));
                }
            }
            if !available {
                if !self.settings.expire_nodest_conn {
                    return self.drop(DropReason::NoDest, syn);
                }
                self.remove_entry(h);
                found = None;
                if proto == Protocol::Tcp && !syn {
                    self.counters.nodest_resets += 1;
                    return self.answer_tcp(now, buf, len, p, DropReason::NoDest);
                }
                self.counters.nodest_reschedules += 1;
            }
        }

        let (h, first) = match found {
            Some(h) => (h, None),
            None => {
                // Step 3: schedule a new connection.
                // A RST never creates an entry, not even with SYN set (docs/ipvs-semantics.md §4.10;
                // `tcp_conn_schedule`: `(th->syn || sloppy_tcp) && !th->rst`); sloppy_tcp is
                // global or the service's (`pickup.rs`).
                let may_create = match proto {
                    Protocol::Udp => true,
                    Protocol::Tcp => {
                        (syn || self.settings.sloppy_tcp || self.service_picks_up(svc)) && !rst
                    }
                };
                if !may_create {
                    return if rst {
                        self.drop(DropReason::NoConnection, false)
                    } else {
                        self.answer_tcp(now, buf, len, p, DropReason::NoConnection)
                    };
                }
                match self.new_conn(now, p, proto, svc, hash) {
                    Ok(NewConn::Entry(h, first)) => (h, Some(first)),
                    Ok(NewConn::OnePacket(server)) => {
                        // One-packet scheduling: nothing to keep.
                        return self.forward_ops(now, buf, len, p, server);
                    }
                    Err(err) => return self.not_created(now, buf, len, p, proto, err),
                }
            }
        };

        // Step 4: state transition, rewrite, statistics.
        let (server_id, svc_id, dest, flags) = match (found, target) {
            (Some(_), Some(t)) => t,
            _ => {
                let Some(e) = self.conns.get(h) else {
                    return self.drop(DropReason::NoConnection, syn);
                };
                let (server_id, svc_id, flags) = (e.server, e.service, e.flags);
                let Some(dest) = self.endpoint_of(e) else {
                    return self.drop(DropReason::NoDest, syn);
                };
                (server_id, svc_id, dest, flags)
            }
        };
        match first {
            // A new entry: its first step was made before it went in.
            Some(changes) => self.stepped(now, h, Direction::Input, changes),
            None => self.transition(now, h, Direction::Input, p.tcp_flags),
        }
        let outer = match self.send_to_server(now, buf, len, p, dest, flags, server_id, syn) {
            Ok(outer) => outer,
            Err(v) => return v,
        };
        self.director.count_conn(server_id, svc_id, len, false);
        Verdict::ToServer(Transmit {
            start: 0,
            dst: dest.ip(),
            len: p.total_len as usize + outer,
        })
    }

    /// The verdict on a packet whose new connection [`new_conn`](Self::new_conn) refused:
    /// no server (answered as IPVS does), a full table, a prefix at its half-open limit.
    #[cold]
    pub(super) fn not_created(
        &mut self,
        now: Instant,
        buf: &mut [u8],
        len: usize,
        p: &Parsed,
        proto: Protocol,
        err: NewConnError,
    ) -> Verdict {
        let syn = proto == Protocol::Tcp && p.tcp_flags & tcp::flags::SYN != 0;
        match err {
            NewConnError::NoServer => {
                self.counters.no_server += 1;
                match proto {
                    Protocol::Tcp => self.answer_tcp(now, buf, len, p, DropReason::NoService),
                    Protocol::Udp => self.answer_udp(now, buf, len, p, DropReason::NoService),
                }
            }
            NewConnError::TableFull => self.drop(DropReason::TableFull, syn),
            NewConnError::PrefixLimit => self.drop(DropReason::EmbryonicPrefixLimit, syn),
        }
    }

    /// One-packet scheduling (UDP, `-o`): forward to `server`, keeping no entry (IPVS creates
    /// one and frees it at once: counters go up and down).
    pub(super) fn forward_ops(
        &mut self,
        now: Instant,
        buf: &mut [u8],
        len: usize,
        p: &Parsed,
        server: ServerId,
    ) -> Verdict {
        let Some((addr, method)) = self
            .director
            .server(server)
            .map(|s| (s.addr(), s.config.method))
        else {
            return self.drop(DropReason::NoDest, false);
        };
        self.director.bind_conn(server);
        self.counters.conns_created += 1;
        let dest = server_endpoint(addr, p.dst.port());
        let flags = method::flags(method);
        let verdict = match self.send_to_server(now, buf, len, p, dest, flags, server, false) {
            Ok(outer) => {
                self.director.count_in(server, len);
                Verdict::ToServer(Transmit {
                    start: 0,
                    dst: dest.ip(),
                    len: p.total_len as usize + outer,
                })
            }
            Err(v) => v,
        };
        self.director.unbind_conn(server, false);
        verdict
    }

    /// Whether a SYN may reuse the client port of entry `e` by rescheduling (docs/ipvs-semantics.md §3.1).
    fn reusable(&self, e: &Entry) -> bool {
        let mode = self.settings.conn_reuse_mode;
        if !mode.reschedules() || e.proto() != Protocol::Tcp || e.control().is_some() {
            return false;
        }
        match TcpState::from_u8(e.state) {
            Some(TcpState::TimeWait | TcpState::Close) => true,
            Some(TcpState::FinWait) => {
                mode.reschedules_fin_wait() && e.flags.contains(ConnFlags::NOOUTPUT)
            }
            _ => false,
        }
    }

    /// Creates the entry for a new connection: persistence template first (docs/ipvs-semantics.md §4.3),
    /// else the scheduler. A one-packet UDP service keeps no entry: only the server is chosen.
    /// A SYN makes a half-open entry: refused, before anything is scheduled, when its client's
    /// prefix holds its share already, else counted there (`embryonic.rs`).
    pub(super) fn new_conn(
        &mut self,
        now: Instant,
        p: &Parsed,
        proto: Protocol,
        svc: ServiceId,
        hash: u64,
    ) -> Result<NewConn, NewConnError> {
        let Some(service) = self.director.service(svc) else {
            return Err(NewConnError::NoServer);
        };
        let one_packet = service.config.one_packet && proto == Protocol::Udp;
        let persistent = service.config.persistence.is_some();
        let mut half_open = None;
        if let (Some(limit), true) = (
            self.embryonic_limit,
            proto == Protocol::Tcp && p.tcp_flags & tcp::flags::SYN != 0,
        ) {
            let s = self.embryonic.slots_ip(p.src.ip());
            if self.embryonic.estimate(s) >= limit {
                return Err(NewConnError::PrefixLimit);
            }
            half_open = Some(s);
        }
        if one_packet {
            let server = if persistent {
                // The template is still created and used.
                self.template_server(now, p, proto, svc)
            } else {
                self.pick_server(now, p, proto, svc)
            };
            return server.map(NewConn::OnePacket).ok_or(NewConnError::NoServer);
        }
        let (server, template) = if persistent {
            let t = self.template_for(now, p, proto, svc)?;
            let server = self
                .conns
                .get(t)
                .map(|e| e.server)
                .ok_or(NewConnError::NoServer)?;
            (server, Some(t))
        } else {
            let server = self
                .pick_server(now, p, proto, svc)
                .ok_or(NewConnError::NoServer)?;
            (server, None)
        };
        let method = self
            .director
            .server(server)
            .map(|s| s.config.method)
            .ok_or(NewConnError::NoServer)?;
        let mut e = Entry::new(proto, p.src);
        e.vport = p.dst.port();
        e.service = svc;
        e.server = server;
        e.state = TcpState::None as u8;
        method::bind(&mut e, method);
        e.set_control(template);
        // Counted now (one hash of the prefix per SYN); the first step takes the count off if
        // the SYN does not leave the entry half-open.
        e.flags.set(COUNTED, half_open.is_some());
        // The first packet's transition, made before the insert: the entry goes in with the
        // timeout it keeps (filed once) and its state; the rest follows in `stepped`.
        let first = self.first_step(&mut e, p.tcp_flags);
        // The template controls the connection before it is inserted, so the eviction a full
        // table makes for it cannot take the template (one that controls nothing may go).
        if let Some(t) = template {
            if let Some(tpl) = self.conns.get_mut(t) {
                let n = tpl.n_control();
                tpl.set_n_control(n.saturating_add(1));
            }
        }
        let h = match self.insert(now, e, hash) {
            Ok(h) => h,
            Err(err) => {
                if let Some(t) = template {
                    self.release_control(t);
                }
                return Err(err);
            }
        };
        if let Some(s) = half_open {
            self.embryonic.add(s);
        }
        if let Some(t) = template {
            if let Some(tpl) = self.conns.get(t) {
                let timeout = tpl.timeout();
                self.conns.touch(t, now + timeout);
            }
        }
        self.director.bind_conn(server);
        self.counters.conns_created += 1;
        // Passive signals wait for the server's answer to a SYN, which only a NAT connection
        // sees (a segment picked up mid-flow gets no SYN-ACK).
        if self.health.passive_on
            && proto == Protocol::Tcp
            && p.tcp_flags & tcp::flags::SYN != 0
            && method == ForwardMethod::Masq
        {
            self.passive_syn(now, server);
        }
        Ok(NewConn::Entry(h, first))
    }

    /// Runs the service's scheduler for the packet's client.
    pub(super) fn pick_server(
        &mut self,
        now: Instant,
        p: &Parsed,
        proto: Protocol,
        svc: ServiceId,
    ) -> Option<ServerId> {
        let input = SchedInput {
            proto,
            client: p.src,
            dst: p.dst,
        };
        self.director.schedule(svc, &input, now)
    }
}

pub(super) enum NewConn {
    /// The entry, and what its first step changed outside it (for `stepped`).
    Entry(Handle, Step),
    OnePacket(ServerId),
}

pub(super) enum NewConnError {
    NoServer,
    TableFull,
    /// The client's prefix holds its share of half-open entries.
    PrefixLimit,
}
