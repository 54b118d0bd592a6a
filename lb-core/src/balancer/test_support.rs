//! What the balancer's unit-test modules share: addresses and times from literals, and an
//! empty balancer on the heap with pinned secrets (the same decisions on every run).

use core::net::SocketAddr;

use super::{Balancer, Settings};
use crate::config::{ForwardMethod, SchedulerKind, ServerConfig, ServiceConfig, ServiceKey};
use crate::conn::{ConnStorage, ConnTable};
use crate::director::{Director, DirectorStorage, Limits};
use crate::hash::SipKey;
use crate::ipvsadm::Command;
use crate::time::Instant;

/// `"10.0.0.1:80"`, `"[2001:db8::1]:53"` as an address.
pub(super) fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// `t` milliseconds after the epoch.
pub(super) fn ms(t: u64) -> Instant {
    Instant::from_millis(t)
}

/// The director's sizes every test balancer has: 4 services of 16 servers, tables up to
/// 4,093 slots (mh's default M), 64 lblc/lblcr entries per service.
pub(super) fn limits() -> Limits {
    Limits {
        services: 4,
        servers_per_service: 16,
        table_slots_per_service: 4093,
        lblc_entries_per_service: 64,
    }
}

/// A balancer with no service yet, room for `capacity` connections, `settings`, and fixed
/// secrets (director seed 1, flow key 0x1234/0x5678).
pub(super) fn empty_balancer(capacity: usize, settings: Settings) -> Balancer<'static> {
    let director = Director::new(DirectorStorage::alloc(limits()), 1);
    let conns = ConnTable::new(
        ConnStorage::alloc(capacity),
        SipKey([0x1234, 0x5678]),
        Instant::ZERO,
    );
    Balancer::new(director, conns, settings)
}

/// The key of a TCP (or, with `udp`, UDP) service at `vip`.
pub(super) fn service_key(vip: &str, udp: bool) -> ServiceKey {
    if udp {
        ServiceKey::udp(sa(vip))
    } else {
        ServiceKey::tcp(sa(vip))
    }
}

/// `b` with service `cfg`, its scheduler set to rr, over `servers` (address, method).
pub(super) fn rr_service(
    mut b: Balancer<'static>,
    mut cfg: ServiceConfig,
    servers: &[(&str, ForwardMethod)],
) -> Balancer<'static> {
    let key = cfg.key;
    cfg.scheduler = SchedulerKind::Rr;
    b.apply(Instant::ZERO, &Command::AddService(cfg)).unwrap();
    for &(addr, method) in servers {
        let s = ServerConfig::new(sa(addr), method);
        b.apply(Instant::ZERO, &Command::AddServer(key, s)).unwrap();
    }
    b
}
