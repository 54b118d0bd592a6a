//! The table as records (docs/sync.md): an entry written as a sync record, and a record applied
//! to the table the way IPVS's sync backup applies one — used by the snapshot a restart
//! carries over ([`Balancer::export_state`], [`Balancer::import_state`]).

use core::net::{IpAddr, SocketAddr};

use crate::addr::{addr_bytes, mask, Protocol};
use crate::config::ServiceKey;
use crate::conn::{ConnFlags, Entry, Handle};
use crate::server::ServerId;
use crate::service::ServiceId;
use crate::sync::snapshot::{self, Exporter, SnapshotError};
use crate::sync::wire::{flags, LbTimer, Record};
use crate::tcp::TcpState;
use crate::time::{Duration, Instant};

use super::matching::server_endpoint;
use super::method;
use super::Balancer;

/// What [`Balancer::import_state`] did with the records of a snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ImportReport {
    /// Entries created.
    pub created: u32,
    /// Entries the table had, updated (state, timer).
    pub updated: u32,
    /// Records ignored: the late notice of an entry the table already replaced (an
    /// inactive record for a flow whose entry has another real server), or an expired one.
    pub ignored: u32,
    /// Records for a service the configuration does not have.
    pub no_service: u32,
    /// Records for a real server the service does not have.
    pub no_server: u32,
    /// Records dropped because the table was full (after the same eviction a SYN may do).
    pub table_full: u32,
}

impl ImportReport {
    /// Records dropped: no service, no server or no room.
    pub fn dropped(&self) -> u32 {
        self.no_service + self.no_server + self.table_full
    }
}

/// The template of a persistent fwmark service and of a port-0 service has no port.
const TEMPLATE_STATE_ASSURED: u16 = 1;
/// `in_pkts` of an entry created from a record (IPVS's backup sets `sync_threshold[0]`).
const RECORD_IN_PKTS: u8 = 3;
/// Timeout of a template whose record has none (a version-0 record): IPVS's 180 s.
const TEMPLATE_DEFAULT_TIMEOUT: Duration = Duration::from_secs(180);

/// Where a record lands: its protocol, service and real server found in this balancer's
/// configuration, and its timer.
#[derive(Clone, Copy)]
struct Bound {
    proto: Protocol,
    svc: ServiceId,
    server: ServerId,
    timeout: Duration,
    left: Duration,
}

/// What applying one record did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Applied {
    Created,
    Updated,
    Ignored,
    NoService,
    NoServer,
    TableFull,
}

impl Balancer<'_> {
    /// Starts writing a snapshot of the table at `now`: connections and persistence templates
    /// with their state and time left. Drive the returned [`Exporter`] with this balancer
    /// until it returns 0; process no packet in between for a consistent picture.
    pub fn export_state(&self, now: Instant) -> Exporter {
        Exporter::new(now)
    }

    /// Loads a snapshot written by [`export_state`](Self::export_state) into the table.
    ///
    /// The whole input is checked first (format, version, checksum, every record); if anything
    /// is wrong it returns the error and the table is unchanged. Then every record is applied
    /// against the current configuration: templates first, then connections (linked to their
    /// template again). A record whose service or real server no longer exists is dropped and
    /// counted; a record for a flow the table already has updates it; the table never goes
    /// over capacity (a full table evicts as for a SYN, else the record is dropped and
    /// counted). Entries keep the state, timeout and time left they had when written. It runs
    /// [`handle_timeout`](Self::handle_timeout) first, as the table's clock must be at `now`.
    pub fn import_state(
        &mut self,
        now: Instant,
        snapshot: &[u8],
    ) -> Result<ImportReport, SnapshotError> {
        let records = snapshot::read(snapshot)?;
        // Bring the table's clock to `now` first (what is due expires), so the deadlines of
        // the records are measured from the same point as the records' time left.
        self.handle_timeout(now);
        let mut report = ImportReport::default();
        for templates in [true, false] {
            for r in records.clone().flatten() {
                if r.is_template() == templates {
                    report.count(self.apply_record(now, &r));
                }
            }
        }
        Ok(report)
    }

    /// The record of the first live entry at slab index `from` or after, and the index to go
    /// on from; `None` when there is none. Entries already due, invalid templates and entries
    /// whose server or service is gone are not written.
    pub(crate) fn export_record(&self, ex: &Exporter, from: usize) -> Option<(Record, usize)> {
        let cap = self.conns.capacity();
        (from..cap).find_map(|i| {
            let h = Handle::from_index(i)?;
            let e = self.conns.get(h)?;
            // `deadline` is rounded up to a whole millisecond; one millisecond less lies in the
            // same 1/16 s tick whether the tick ends on a whole or a half millisecond, so the
            // import files the entry into the very tick it left.
            let left = self.conns.deadline(h)?.saturating_since(ex.now).millis();
            let left = Duration::from_millis(left.saturating_sub(1));
            if left == Duration::ZERO
                || e.flags.contains(super::persist::INVALID) && e.is_template()
            {
                return None;
            }
            Some((self.entry_record(e, left)?, i + 1))
        })
    }

    /// Entry `e` as a sync record, with lb's timer option (`left` to go).
    pub(super) fn entry_record(&self, e: &Entry, left: Duration) -> Option<Record> {
        let server = self.director.server(e.server)?;
        let svc = self.director.service(e.service)?;
        if server.addr().is_ipv6() != svc.config.key.is_ipv6() {
            // A tunnel to a real server of the other family: a sync record has one family
            // for all its addresses (IPVS refuses to start a sync daemon while such a server
            // exists); it is neither synced nor saved.
            return None;
        }
        let (vip, fwmark) = match svc.config.key {
            ServiceKey::Addr { vip, .. } => (vip.ip(), 0),
            ServiceKey::Fwmark { mark, v6 } => (unspecified(v6), mark),
        };
        let mut f = if e.flags.contains(method::ROUTE) {
            flags::DROUTE
        } else if e.flags.contains(method::TUNNEL) {
            flags::TUNNEL
        } else {
            flags::MASQ
        };
        let state = if e.is_template() {
            f |= flags::TEMPLATE | flags::INACTIVE;
            u16::from(e.flags.contains(ConnFlags::ASSURED))
        } else {
            if !e.flags.contains(ConnFlags::ACTIVE) {
                f |= flags::INACTIVE;
            }
            u16::from(e.state)
        };
        if e.flags.contains(ConnFlags::NOOUTPUT) {
            f |= flags::NOOUTPUT;
        }
        let timeout = e.timeout();
        Some(Record {
            protocol: e.proto().number(),
            flags: f,
            state,
            client: e.client(),
            vaddr: SocketAddr::new(vip, e.vport),
            daddr: server_endpoint(server.addr(), e.vport),
            fwmark,
            timeout_secs: u32::try_from(timeout.millis().div_ceil(1000)).unwrap_or(u32::MAX),
            lb_timer: Some(LbTimer {
                timeout_ms: timeout.millis(),
                left_ms: left.millis(),
            }),
        })
    }

    /// Applies one record as IPVS's sync backup does (docs/sync.md §3): find the service and
    /// the real server by address, then update the flow's entry or create it.
    pub(crate) fn apply_record(&mut self, now: Instant, r: &Record) -> Applied {
        let Some(proto) = Protocol::from_number(r.protocol) else {
            return Applied::NoService;
        };
        let v6 = r.is_ipv6();
        let svc = if r.fwmark != 0 {
            self.director
                .service_id(&ServiceKey::Fwmark { mark: r.fwmark, v6 })
        } else {
            let vaddr = addr_bytes(r.vaddr.ip());
            self.director.lookup_flow(proto, v6, &vaddr, r.vaddr.port())
        };
        let Some(svc) = svc else {
            return Applied::NoService;
        };
        let Some(server) = self.record_server(svc, r.daddr) else {
            return Applied::NoServer;
        };
        let (timeout, left) = self.record_timer(proto, r);
        if left == Duration::ZERO {
            return Applied::Ignored;
        }
        let at = Bound {
            proto,
            svc,
            server,
            timeout,
            left,
        };
        if r.is_template() {
            self.apply_template(now, r, at)
        } else {
            self.apply_conn(now, r, at)
        }
    }

    /// The live real server of service `svc` at `daddr`, or at its address with port 0.
    fn record_server(&self, svc: ServiceId, daddr: SocketAddr) -> Option<ServerId> {
        let live = |id: ServerId| self.director.server(id).is_some_and(|s| s.available);
        self.director
            .find_server(svc, daddr)
            .filter(|&s| live(s))
            .or_else(|| {
                self.director
                    .find_server(svc, SocketAddr::new(daddr.ip(), 0))
                    .filter(|&s| live(s))
            })
    }

    /// The timeout to re-arm with and the time left: lb's timer option when present, else the
    /// record's timeout in seconds, else (version 0) the table's value for the state.
    fn record_timer(&self, proto: Protocol, r: &Record) -> (Duration, Duration) {
        if let Some(t) = r.lb_timer {
            return (
                Duration::from_millis(t.timeout_ms),
                Duration::from_millis(t.left_ms),
            );
        }
        let timeout = if r.timeout_secs != 0 {
            Duration::from_secs(u64::from(r.timeout_secs))
        } else if r.is_template() {
            TEMPLATE_DEFAULT_TIMEOUT
        } else {
            let t = &self.settings.timeouts;
            match proto {
                Protocol::Udp => t.udp(),
                Protocol::Tcp => t.timeout(tcp_state(r.state)),
            }
        };
        (timeout, timeout)
    }

    fn apply_template(&mut self, now: Instant, r: &Record, at: Bound) -> Applied {
        let Bound {
            proto,
            svc,
            server,
            timeout,
            left,
        } = at;
        let caddr = r.client.ip();
        let vport = r.vaddr.port();
        let hash = self.conns.hash(proto, caddr, r.client.port());
        let found = self.conns.find(hash, |e| {
            e.is_template()
                && e.service == svc
                && e.vport == vport
                && e.key_matches(proto, caddr, r.client.port())
        });
        if let Some(t) = found {
            let same = self.conns.get(t).is_some_and(|e| e.server == server);
            if !same {
                return Applied::Ignored;
            }
            if let Some(e) = self.conns.get_mut(t) {
                e.set_timeout(timeout);
                if r.state == TEMPLATE_STATE_ASSURED {
                    e.flags.set(ConnFlags::ASSURED, true);
                }
            }
            self.conns.touch(t, now + left);
            return Applied::Updated;
        }
        let mut tpl = Entry::template(proto, caddr, r.client.port());
        tpl.vport = vport;
        tpl.service = svc;
        tpl.server = server;
        tpl.in_pkts = RECORD_IN_PKTS;
        tpl.flags
            .set(ConnFlags::ASSURED, r.state == TEMPLATE_STATE_ASSURED);
        tpl.set_timeout(timeout);
        let Ok(t) = self.insert(now, tpl, hash) else {
            return Applied::TableFull;
        };
        self.conns.touch(t, now + left);
        self.director.bind_template(server);
        Applied::Created
    }

    fn apply_conn(&mut self, now: Instant, r: &Record, at: Bound) -> Applied {
        let Bound {
            proto,
            svc,
            server,
            timeout,
            left,
        } = at;
        let v6 = r.is_ipv6();
        let caddr = addr_bytes(r.client.ip());
        let (cport, vport) = (r.client.port(), r.vaddr.port());
        let key = Entry::conn_key(proto, v6);
        let hash = self.conns.hash_bytes(proto, v6, &caddr, cport);
        let found = self.conns.find(hash, |e| {
            e.matches_conn(key, &caddr, cport) && e.vport == vport && e.service == svc
        });
        let active = proto == Protocol::Tcp && tcp_state(r.state).is_active();
        if let Some(h) = found {
            let old = self.conns.get(h).map(|e| e.server);
            if old != Some(server) {
                // The master rescheduled the flow (port reuse); an inactive record about the
                // old server is the late notice of the entry it replaced.
                if r.flags & flags::INACTIVE != 0 {
                    return Applied::Ignored;
                }
                self.remove_entry(h);
            } else {
                let was = self.conns.get_mut(h).map(|e| {
                    let was = e.flags.contains(ConnFlags::ACTIVE);
                    e.state = r.state as u8;
                    e.flags.set(ConnFlags::ACTIVE, active);
                    e.set_timeout(timeout);
                    was
                });
                if was.is_some_and(|w| w != active) {
                    self.director.set_active(server, active);
                }
                self.conns.touch(h, now + left);
                return Applied::Updated;
            }
        }
        let method = self.director.server(server).map(|s| s.config.method);
        let mut e = Entry::new(proto, r.client);
        e.vport = vport;
        e.service = svc;
        e.server = server;
        e.state = r.state as u8;
        e.in_pkts = RECORD_IN_PKTS;
        // A synced connection takes its local real server's method and that method's
        // NOOUTPUT, whatever the record says (`ip_vs_bind_dest`).
        if let Some(m) = method {
            method::bind(&mut e, m);
        }
        let template = self.record_template(proto, svc, server, r.client.ip());
        e.set_control(template);
        e.set_timeout(timeout);
        let Ok(h) = self.insert(now, e, hash) else {
            return Applied::TableFull;
        };
        self.conns.touch(h, now + left);
        if let Some(t) = template {
            if let Some(tpl) = self.conns.get_mut(t) {
                let n = tpl.n_control();
                tpl.set_n_control(n + 1);
            }
        }
        self.director.bind_conn(server);
        if active {
            if let Some(e) = self.conns.get_mut(h) {
                e.flags.set(ConnFlags::ACTIVE, true);
            }
            self.director.set_active(server, true);
        }
        Applied::Created
    }

    /// The persistence template a restored connection of a persistent service belongs to:
    /// the client's (masked) template of that service, if it names the same server.
    fn record_template(
        &self,
        proto: Protocol,
        svc: ServiceId,
        server: ServerId,
        client: IpAddr,
    ) -> Option<Handle> {
        let service = self.director.service(svc)?;
        let pers = service.config.persistence?;
        let vport = match service.config.key {
            ServiceKey::Addr { vip, .. } => vip.port(),
            ServiceKey::Fwmark { .. } => 0,
        };
        let caddr = mask(client, pers.prefix);
        let hash = self.conns.hash(proto, caddr, 0);
        self.conns.find(hash, |e| {
            e.is_template()
                && e.service == svc
                && e.vport == vport
                && e.server == server
                && e.key_matches(proto, caddr, 0)
        })
    }
}

impl ImportReport {
    pub(super) fn count(&mut self, a: Applied) {
        let c = match a {
            Applied::Created => &mut self.created,
            Applied::Updated => &mut self.updated,
            Applied::Ignored => &mut self.ignored,
            Applied::NoService => &mut self.no_service,
            Applied::NoServer => &mut self.no_server,
            Applied::TableFull => &mut self.table_full,
        };
        *c += 1;
    }
}

fn tcp_state(n: u16) -> TcpState {
    u8::try_from(n)
        .ok()
        .and_then(TcpState::from_u8)
        .unwrap_or(TcpState::None)
}

fn unspecified(v6: bool) -> IpAddr {
    if v6 {
        IpAddr::V6(core::net::Ipv6Addr::UNSPECIFIED)
    } else {
        IpAddr::V4(core::net::Ipv4Addr::UNSPECIFIED)
    }
}
