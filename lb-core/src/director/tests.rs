//! Director tests: configuration rules, lookup order, counters, OVERLOAD, deletion/revival,
//! drain events, timers, and property tests over random command sequences.

use alloc::boxed::Box;
use alloc::vec;
use alloc::vec::Vec;
use core::net::SocketAddr;
use std::string::ToString;

use proptest::prelude::*;

use super::*;
use crate::addr::Protocol;
use crate::config::{
    ConfigError, ForwardMethod, Persistence, SchedulerKind, ServerConfig, ServiceConfig,
};
use crate::service::ServiceId;
use crate::stats::{Rates, Stats};

fn leak<T: Clone>(v: T, n: usize) -> ManagedSlice<'static, T> {
    ManagedSlice::Borrowed(Box::leak(vec![v; n].into_boxed_slice()))
}

fn storage(limits: Limits) -> DirectorStorage<'static> {
    let n = limits.services * limits.servers_per_service;
    DirectorStorage {
        limits,
        services: leak(crate::service::ServiceSlot::FREE, limits.services),
        servers: leak(RealServer::EMPTY, n),
        server_rates: leak(RateEstimator::NEW, n),
        order: leak(NO_SERVER, n),
        tables: leak(NO_SERVER, limits.services * limits.table_slots_per_service),
        mh_scratch: leak(MhScratch::EMPTY, n),
        lblc: leak(
            LblcEntry::EMPTY,
            limits.services * limits.lblc_entries_per_service,
        ),
        lblcr: leak(
            LblcrEntry::EMPTY,
            limits.services * limits.lblc_entries_per_service,
        ),
    }
}

fn small() -> Director<'static> {
    Director::new(
        storage(Limits {
            services: 4,
            servers_per_service: 8,
            table_slots_per_service: 4096,
            lblc_entries_per_service: 16,
        }),
        1,
    )
}

fn vip() -> SocketAddr {
    "10.0.0.100:80".parse().unwrap()
}

fn key() -> ServiceKey {
    ServiceKey::tcp(vip())
}

fn rs(n: u8, weight: u32) -> ServerConfig {
    let mut c = ServerConfig::new(SocketAddr::from(([10, 1, 0, n], 8080)), ForwardMethod::Masq);
    c.weight = weight;
    c
}

fn svc(kind: SchedulerKind) -> ServiceConfig {
    let mut c = ServiceConfig::new(key());
    c.scheduler = kind;
    c
}

fn input(client_n: u32) -> SchedInput {
    SchedInput {
        proto: Protocol::Tcp,
        client: SocketAddr::from((client_n.to_be_bytes(), 40000)),
        dst: vip(),
    }
}

fn pick(d: &mut Director<'_>, s: ServiceId) -> Option<ServerId> {
    d.schedule(s, &input(7), Instant::ZERO)
}

#[test]
fn limits_fit_storage_and_ids() {
    let d = Director::new(
        storage(Limits {
            services: 2,
            servers_per_service: 100,
            table_slots_per_service: 10,
            lblc_entries_per_service: 1,
        }),
        0,
    );
    assert_eq!(d.limits().servers_per_service, 100);
    // Slices shorter than the limits: shrink.
    let mut st = storage(Limits {
        services: 2,
        servers_per_service: 4,
        table_slots_per_service: 8,
        lblc_entries_per_service: 1,
    });
    st.limits.servers_per_service = 50;
    let d = Director::new(st, 0);
    assert_eq!(d.limits().servers_per_service, 4);
    let big = Limits::default();
    assert!(big.services * big.servers_per_service < usize::from(NO_SERVER));
    assert!(big.storage_bytes() > 20 << 20);
}

#[test]
fn resources_are_const_and_usable() {
    let mut res = Box::new(DirectorResources::<2, 16, 1024, 8>::new());
    let mut d = Director::new(res.storage(), 3);
    assert_eq!(d.limits().servers_per_service, 8);
    assert_eq!(d.limits().table_slots_per_service, 512);
    let mut c = svc(SchedulerKind::Mh);
    c.table_size = Some(509);
    assert!(d.add_service(&c).is_ok());
    c.key = ServiceKey::tcp("10.0.0.1:80".parse().unwrap());
    c.table_size = Some(1021);
    let e = d.add_service(&c).unwrap_err();
    assert_eq!(
        e,
        ConfigError::TableTooLarge {
            size: 1021,
            slots: 512
        }
    );
    assert_eq!(
        e.to_string(),
        "table size 1021 exceeds the 512 table slots per service of this director's storage"
    );
}

#[test]
fn validation_errors() {
    let mut d = small();
    let mut c = ServiceConfig::new(ServiceKey::tcp("10.0.0.1:0".parse().unwrap()));
    assert_eq!(
        d.add_service(&c),
        Err(ConfigError::PortZeroNeedsPersistence)
    );
    c.persistence = Some(Persistence {
        timeout_secs: 300,
        prefix: 33,
    });
    assert_eq!(
        d.add_service(&c),
        Err(ConfigError::BadNetmask {
            prefix: 33,
            max: 32
        })
    );
    let mut c = svc(SchedulerKind::Sh);
    c.table_size = Some(100);
    let e = d.add_service(&c).unwrap_err();
    assert_eq!(
        e,
        ConfigError::BadTableSize {
            scheduler: SchedulerKind::Sh,
            size: 100
        }
    );
    assert_eq!(
        e.to_string(),
        "sh table size 100 is not supported: sh takes a power of two from 2 to 1048576"
    );
    c.scheduler = SchedulerKind::Mh;
    c.table_size = Some(8191); // a valid prime, larger than the storage (4096)
    assert_eq!(
        d.add_service(&c),
        Err(ConfigError::TableTooLarge {
            size: 8191,
            slots: 4096
        })
    );
    let s = d.add_service(&svc(SchedulerKind::Rr)).unwrap();
    assert_eq!(
        d.add_service(&svc(SchedulerKind::Rr)),
        Err(ConfigError::ServiceExists)
    );
    assert_eq!(
        d.add_server(&key(), &rs(1, 65536)),
        Err(ConfigError::WeightOutOfRange { weight: 65536 })
    );
    let mut bad = rs(1, 1);
    bad.l_threshold = 5; // above u_threshold 0: IPVS rejects it too
    assert_eq!(
        d.add_server(&key(), &bad),
        Err(ConfigError::ThresholdOrder { lower: 5, upper: 0 })
    );
    let v6 = ServerConfig::new("[2001:db8::1]:80".parse().unwrap(), ForwardMethod::Masq);
    assert_eq!(d.add_server(&key(), &v6), Err(ConfigError::FamilyMismatch));
    d.add_server(&key(), &rs(1, 1)).unwrap();
    assert_eq!(
        d.add_server(&key(), &rs(1, 2)),
        Err(ConfigError::ServerExists)
    );
    assert_eq!(
        d.edit_server(&key(), &rs(9, 2)),
        Err(ConfigError::NoSuchServer)
    );
    assert_eq!(
        d.del_server(&key(), rs(9, 1).addr),
        Err(ConfigError::NoSuchServer)
    );
    for n in 2..=8 {
        d.add_server(&key(), &rs(n, 1)).unwrap();
    }
    assert_eq!(
        d.add_server(&key(), &rs(9, 1)),
        Err(ConfigError::TooManyServers { max: 8 })
    );
    let other = ServiceKey::udp(vip());
    assert_eq!(
        d.add_server(&other, &rs(1, 1)),
        Err(ConfigError::NoSuchService)
    );
    assert_eq!(d.servers(s).len(), 8);
    // mh with more servers than M.
    let mut c = svc(SchedulerKind::Mh);
    c.key = ServiceKey::tcp("10.0.0.2:80".parse().unwrap());
    c.table_size = Some(251);
    d.add_service(&c).unwrap();
    let mut e = svc(SchedulerKind::Mh);
    e.table_size = Some(251);
    assert!(d.edit_service(&e).is_ok());
}

#[test]
fn lookup_order_fwmark_then_addr_then_port0() {
    let mut d = small();
    let vip0: SocketAddr = "10.0.0.100:0".parse().unwrap();
    let mut p0 = ServiceConfig::new(ServiceKey::tcp(vip0));
    p0.persistence = Some(Persistence {
        timeout_secs: 300,
        prefix: 32,
    });
    let s0 = d.add_service(&p0).unwrap();
    assert_eq!(d.lookup(Protocol::Tcp, vip(), None), Some(s0));
    let s80 = d.add_service(&svc(SchedulerKind::Rr)).unwrap();
    assert_eq!(d.lookup(Protocol::Tcp, vip(), None), Some(s80));
    assert_eq!(d.lookup(Protocol::Udp, vip(), None), None);
    assert_eq!(d.lookup(Protocol::Tcp, vip(), Some(5)), Some(s80));
    let fw = ServiceConfig::new(ServiceKey::Fwmark { mark: 5, v6: false });
    let sf = d.add_service(&fw).unwrap();
    assert_eq!(d.lookup(Protocol::Tcp, vip(), Some(5)), Some(sf));
    assert_eq!(
        d.lookup(Protocol::Udp, "1.2.3.4:9".parse().unwrap(), Some(5)),
        Some(sf)
    );
    assert_eq!(
        d.lookup(Protocol::Tcp, "[::1]:9".parse().unwrap(), Some(5)),
        None
    );
    assert_eq!(d.lookup(Protocol::Tcp, vip(), Some(6)), Some(s80));
    d.del_service(&key()).unwrap();
    assert_eq!(d.lookup(Protocol::Tcp, vip(), None), Some(s0));
    assert_eq!(d.services().count(), 2);
}

#[test]
fn wrr_through_the_director_follows_successive_adds() {
    let mut d = small();
    let s = d.add_service(&svc(SchedulerKind::Wrr)).unwrap();
    let a = d.add_server(&key(), &rs(1, 3)).unwrap();
    let b = d.add_server(&key(), &rs(2, 1)).unwrap();
    // List b a; cw = 1: first pass b a; then cw 3: a; 2: a; 1: b a.
    let got: Vec<_> = (0..6).map(|_| pick(&mut d, s).unwrap()).collect();
    assert_eq!(got, [b, a, a, a, b, a]);
    // Switching to wrr from another scheduler uses init (cw = mw).
    let mut c = svc(SchedulerKind::Rr);
    d.edit_service(&c).unwrap();
    c.scheduler = SchedulerKind::Wrr;
    d.edit_service(&c).unwrap();
    let got: Vec<_> = (0..4).map(|_| pick(&mut d, s).unwrap()).collect();
    assert_eq!(got, [a, a, b, a]);
}

#[test]
fn rr_cursor_after_deleting_the_cursor_server() {
    let mut d = small();
    let s = d.add_service(&svc(SchedulerKind::Rr)).unwrap();
    let a = d.add_server(&key(), &rs(1, 1)).unwrap();
    let b = d.add_server(&key(), &rs(2, 1)).unwrap();
    let c = d.add_server(&key(), &rs(3, 1)).unwrap();
    assert_eq!(pick(&mut d, s), Some(c));
    assert_eq!(pick(&mut d, s), Some(b));
    d.del_server(&key(), rs(2, 1).addr).unwrap();
    assert_eq!(pick(&mut d, s), Some(a));
    // An add at the head keeps the cursor on a: next wraps to the new head.
    let e = d.add_server(&key(), &rs(4, 1)).unwrap();
    assert_eq!(pick(&mut d, s), Some(e));
    assert_eq!(pick(&mut d, s), Some(c));
}

#[test]
fn overload_set_and_clear_with_hysteresis() {
    let mut d = small();
    d.add_service(&svc(SchedulerKind::Lc)).unwrap();
    let mut c = rs(1, 1);
    c.u_threshold = 4;
    let a = d.add_server(&key(), &c).unwrap();
    for _ in 0..3 {
        d.bind_conn(a);
    }
    assert!(!d.server(a).unwrap().overloaded);
    d.bind_conn(a); // total 4 ≥ 4
    assert!(d.server(a).unwrap().overloaded);
    d.set_active(a, true);
    d.unbind_conn(a, false); // total 3: 12 < 12? no
    assert!(d.server(a).unwrap().overloaded);
    d.unbind_conn(a, false); // total 2: 8 < 12 → clear
    assert!(!d.server(a).unwrap().overloaded);
    // Templates do not count, but binding one runs the set check.
    d.bind_conn(a);
    d.bind_conn(a); // total 4
    assert!(d.server(a).unwrap().overloaded);
    d.unbind_conn(a, false);
    d.unbind_conn(a, true); // total 2 → clear
    assert!(!d.server(a).unwrap().overloaded);
    d.bind_template(a);
    assert!(!d.server(a).unwrap().overloaded);
    d.bind_conn(a);
    d.bind_conn(a);
    d.server_mut(a).unwrap().overloaded = false;
    d.bind_template(a); // total 4 (templates not counted) → set
    assert!(d.server(a).unwrap().overloaded);
    // With l_threshold: clear only below it.
    c.l_threshold = 2;
    d.edit_server(&key(), &c).unwrap(); // same u_threshold: flag kept
    assert!(d.server(a).unwrap().overloaded);
    d.unbind_conn(a, false); // total 3
    assert!(d.server(a).unwrap().overloaded);
    d.unbind_conn(a, false); // total 2, not < 2
    assert!(d.server(a).unwrap().overloaded);
    d.unbind_conn(a, false); // total 1 < 2
    assert!(!d.server(a).unwrap().overloaded);
    // Edit clears when the new upper threshold is larger, or 0.
    d.server_mut(a).unwrap().overloaded = true;
    c.u_threshold = 5;
    d.edit_server(&key(), &c).unwrap();
    assert!(!d.server(a).unwrap().overloaded);
    // No thresholds: any unbind clears.
    d.server_mut(a).unwrap().overloaded = true;
    d.unbind_template(a);
    assert!(!d.server(a).unwrap().overloaded);
}

#[test]
fn deleted_server_is_kept_while_referenced_and_revived_with_counters() {
    let mut d = small();
    let s = d.add_service(&svc(SchedulerKind::Rr)).unwrap();
    let a = d.add_server(&key(), &rs(1, 1)).unwrap();
    let b = d.add_server(&key(), &rs(2, 1)).unwrap();
    d.bind_conn(a);
    d.set_active(a, true);
    d.bind_conn(a);
    d.del_server(&key(), rs(1, 1).addr).unwrap();
    assert_eq!(d.servers(s).len(), 1);
    let ra = d.server(a).unwrap();
    assert!(!ra.available);
    assert_eq!((ra.active, ra.inactive), (1, 1));
    for _ in 0..4 {
        assert_eq!(pick(&mut d, s), Some(b));
    }
    // Revive: same slot, counters kept, at the head.
    let mut c = rs(1, 7);
    c.u_threshold = 10;
    assert_eq!(d.add_server(&key(), &c), Ok(a));
    let ra = d.server(a).unwrap();
    assert!(ra.available);
    assert_eq!((ra.active, ra.inactive, ra.weight()), (1, 1, 7));
    assert_eq!(d.servers(s).order, &[a, b]);
    // Delete again and unbind everything: the slot is freed.
    d.del_server(&key(), rs(1, 1).addr).unwrap();
    d.unbind_conn(a, true);
    assert!(d.server(a).is_some());
    d.unbind_conn(a, false);
    assert!(d.server(a).is_none());
    // An unreferenced deleted server is freed at once; its slot is reused.
    d.del_server(&key(), rs(2, 1).addr).unwrap();
    assert!(d.server(b).is_none());
    let n = d.add_server(&key(), &rs(3, 1)).unwrap();
    assert!(n == a || n == b);
}

#[test]
fn deleted_service_stays_until_unreferenced_and_can_be_revived() {
    let mut d = small();
    let s = d.add_service(&svc(SchedulerKind::Wlc)).unwrap();
    let a = d.add_server(&key(), &rs(1, 1)).unwrap();
    let b = d.add_server(&key(), &rs(2, 1)).unwrap();
    d.bind_template(a);
    d.del_service(&key()).unwrap();
    assert!(d.service(s).unwrap().deleted);
    assert_eq!(d.lookup(Protocol::Tcp, vip(), None), None);
    assert!(d.server(b).is_none());
    assert_eq!(pick(&mut d, s), None);
    // Re-added: same slot, and the trashed server revives with its template.
    assert_eq!(d.add_service(&svc(SchedulerKind::Rr)), Ok(s));
    assert_eq!(d.add_server(&key(), &rs(1, 1)), Ok(a));
    assert_eq!(d.server(a).unwrap().persistent, 1);
    d.del_service(&key()).unwrap();
    d.unbind_template(a);
    assert!(d.service(s).is_none(), "freed with its last reference");
    // clear() deletes everything.
    d.add_service(&svc(SchedulerKind::Rr)).unwrap();
    d.add_server(&key(), &rs(1, 1)).unwrap();
    d.clear();
    assert_eq!(d.services().count(), 0);
    assert!(d.service(s).is_none());
}

#[test]
fn drained_events_and_query() {
    let mut d = small();
    let s = d.add_service(&svc(SchedulerKind::Rr)).unwrap();
    let a = d.add_server(&key(), &rs(1, 1)).unwrap();
    d.bind_conn(a);
    d.edit_server(&key(), &rs(1, 0)).unwrap();
    assert!(!d.drained(a));
    assert_eq!(d.poll_drained(), None);
    assert_eq!(pick(&mut d, s), None, "weight 0: no new connections");
    d.unbind_conn(a, false);
    assert!(d.drained(a));
    let ev = d.poll_drained().unwrap();
    assert_eq!((ev.service, ev.server, ev.addr), (s, a, rs(1, 0).addr));
    assert_eq!(d.poll_drained(), None);
    d.edit_server(&key(), &rs(1, 2)).unwrap();
    assert_eq!(d.server(a).unwrap().last_weight, 2);
    d.edit_server(&key(), &rs(1, 0)).unwrap();
    assert_eq!(d.server(a).unwrap().last_weight, 2);
    assert_eq!(d.poll_drained().map(|e| e.server), Some(a));
    assert!(!d.drained_events_lost());
}

#[test]
fn stats_rates_and_timers() {
    let mut d = small();
    let s = d.add_service(&svc(SchedulerKind::Rr)).unwrap();
    let a = d.add_server(&key(), &rs(1, 1)).unwrap();
    // Nothing counted yet: no timer.
    assert_eq!(d.poll_timeout(), None);
    let mut now = Instant::ZERO;
    for _ in 0..100 {
        // 10 connections of 10 packets of 100 bytes per 2 s period.
        for _ in 0..10 {
            d.bind_conn(a);
            for _ in 0..10 {
                d.count_in(a, 100);
                d.count_out(a, 1000);
            }
        }
        now += ESTIMATOR_PERIOD;
        d.handle_timeout(now);
    }
    let r = d.service(s).unwrap().rates.rates();
    assert_eq!(
        (r.cps, r.in_pps, r.out_pps, r.in_bps, r.out_bps),
        (5, 50, 50, 5000, 50000)
    );
    assert_eq!(d.server_rates(a), Some(r));
    assert_eq!(d.service(s).unwrap().stats.conns, 1000);
    d.zero_stats(Some(&key())).unwrap();
    assert_eq!(d.service(s).unwrap().stats, Stats::new());
    assert_eq!(d.server(a).unwrap().stats, Stats::new());
    assert_eq!(d.server_rates(a), Some(Rates::default()));
    // Zeroed: the next run finds every rate at rest, and nothing is due any more.
    d.handle_timeout(now + Duration::from_secs(3600));
    assert_eq!(d.poll_timeout(), None);
    assert_eq!(
        d.zero_stats(Some(&ServiceKey::udp(vip()))),
        Err(ConfigError::NoSuchService)
    );
}

#[test]
fn twos_reproducible_per_seed() {
    let run = |seed| {
        let mut d = Director::new(
            storage(Limits {
                services: 2,
                servers_per_service: 8,
                table_slots_per_service: 256,
                lblc_entries_per_service: 1,
            }),
            seed,
        );
        let s = d.add_service(&svc(SchedulerKind::Twos)).unwrap();
        for n in 1..=4 {
            d.add_server(&key(), &rs(n, u32::from(n))).unwrap();
        }
        (0..64)
            .map(|_| pick(&mut d, s).unwrap())
            .collect::<Vec<_>>()
    };
    assert_eq!(run(5), run(5));
    assert_ne!(run(5), run(6));
}

// ------------------------------------------------------------------- property tests

const SCANNING: [SchedulerKind; 9] = [
    SchedulerKind::Rr,
    SchedulerKind::Wrr,
    SchedulerKind::Lc,
    SchedulerKind::Wlc,
    SchedulerKind::Sed,
    SchedulerKind::Nq,
    SchedulerKind::Fo,
    SchedulerKind::Ovf,
    SchedulerKind::Twos,
];

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// Counts wrr picks over `periods` whole periods.
fn wrr_counts(d: &mut Director<'_>, s: ServiceId, periods: u32) -> Vec<u32> {
    let list: Vec<(ServerId, u32)> = d
        .servers(s)
        .iter()
        .map(|(id, r)| (id, r.weight()))
        .collect();
    let g = list.iter().fold(0, |g, &(_, w)| gcd(w, g));
    let total: u32 = list.iter().map(|&(_, w)| w).sum();
    let mut counts = vec![0; list.len()];
    if g == 0 {
        return counts;
    }
    for _ in 0..periods * total / g {
        let id = pick(d, s).unwrap();
        let k = list.iter().position(|&(i, _)| i == id).unwrap();
        counts[k] += 1;
    }
    counts
}

fn expected(d: &Director<'_>, s: ServiceId, periods: u32) -> Vec<u32> {
    let ws: Vec<u32> = d.servers(s).iter().map(|(_, r)| r.weight()).collect();
    let g = ws.iter().fold(0, |g, &w| gcd(w, g));
    ws.iter()
        .map(|&w| (periods * w).checked_div(g).unwrap_or(0))
        .collect()
}

/// Advances to the start of the next full period: the position where cw has just wrapped to
/// mw and the scan starts at the head (a decision made at cl = head with cw = mw).
fn skip_to_period_start(d: &mut Director<'_>, s: ServiceId) {
    for _ in 0..10_000 {
        let st = d.service(s).unwrap().sched_state().wrr;
        // The next decision starts a period when the last one ended the lowest level at the
        // list's last eligible server or the state was just (re)initialised at the head with
        // cw = mw.
        if (st.cl == 0 && st.cw == st.mw) || (st.cw <= i64::from(st.di) && tail_done(d, s, st.cl)) {
            return;
        }
        pick(d, s);
    }
}

/// Whether no server after list coordinate `cl` has a positive weight.
fn tail_done(d: &Director<'_>, s: ServiceId, cl: u32) -> bool {
    d.servers(s)
        .iter()
        .skip(cl as usize)
        .all(|(_, r)| r.weight() == 0)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn wrr_whole_periods_match_weights(
        weights in prop::collection::vec(0u32..12, 1..7),
        edit in (0usize..7, 0u32..12),
        warm in 0usize..40,
    ) {
        let mut d = small();
        let s = d.add_service(&svc(SchedulerKind::Wrr)).unwrap();
        for (i, &w) in weights.iter().enumerate() {
            d.add_server(&key(), &rs(i as u8 + 1, w)).unwrap();
        }
        // Built by successive -a: one first pass at cw = 1 over the weight ≥ 1 servers.
        let first: usize = weights.iter().filter(|&&w| w > 0).count();
        for _ in 0..first {
            prop_assert!(pick(&mut d, s).is_some());
        }
        prop_assert_eq!(wrr_counts(&mut d, s, 2), expected(&d, s, 2));
        // A configuration change mid-way: from the next full period on, counts match again.
        for _ in 0..warm {
            pick(&mut d, s);
        }
        let (k, w) = edit;
        let k = k % weights.len();
        d.edit_server(&key(), &rs(k as u8 + 1, w)).unwrap();
        skip_to_period_start(&mut d, s);
        prop_assert_eq!(wrr_counts(&mut d, s, 2), expected(&d, s, 2));
    }

    #[test]
    fn no_scheduler_picks_quiescent_or_overloaded(
        kind in 0usize..SCANNING.len(),
        servers in prop::collection::vec((0u32..5, any::<bool>(), 0u32..4, 0u32..4), 1..8),
        clients in prop::collection::vec(any::<u32>(), 1..20),
    ) {
        let mut d = small();
        let s = d.add_service(&svc(SCANNING[kind])).unwrap();
        let mut ids = Vec::new();
        for (i, &(w, over, act, inact)) in servers.iter().enumerate() {
            let id = d.add_server(&key(), &rs(i as u8 + 1, w)).unwrap();
            let r = d.server_mut(id).unwrap();
            r.overloaded = over;
            r.active = act;
            r.inactive = inact;
            ids.push(id);
        }
        let any_eligible = ids.iter().any(|&id| d.server(id).unwrap().eligible());
        for &c in &clients {
            let got = d.schedule(s, &input(c), Instant::ZERO);
            match got {
                Some(id) => {
                    prop_assert!(d.server(id).unwrap().eligible());
                    if SCANNING[kind] == SchedulerKind::Ovf {
                        let r = d.server(id).unwrap();
                        prop_assert!(r.active <= r.weight());
                    }
                }
                None => prop_assert!(!any_eligible || SCANNING[kind] == SchedulerKind::Ovf),
            }
        }
    }

    #[test]
    fn overload_matches_the_model(
        u in 0u32..6, l_frac in 0u32..6,
        ops in prop::collection::vec(0u8..5, 1..60),
    ) {
        let l = if u == 0 { 0 } else { l_frac % (u + 1) };
        let mut d = small();
        d.add_service(&svc(SchedulerKind::Rr)).unwrap();
        let mut c = rs(1, 1);
        c.u_threshold = u;
        c.l_threshold = l;
        let a = d.add_server(&key(), &c).unwrap();
        let (mut act, mut inact, mut tpl, mut over) = (0u32, 0u32, 0u32, false);
        for op in ops {
            match op {
                0 => { d.bind_conn(a); inact += 1; if u != 0 && act + inact >= u { over = true } }
                1 => { d.bind_template(a); tpl += 1; if u != 0 && act + inact >= u { over = true } }
                2 => { d.set_active(a, true); if inact > 0 { inact -= 1; act += 1 } }
                3 => {
                    let was_active = act > 0;
                    if act + inact == 0 { continue }
                    d.unbind_conn(a, was_active);
                    if was_active { act -= 1 } else { inact -= 1 }
                    let t = act + inact;
                    if l != 0 { if t < l { over = false } }
                    else if u != 0 { if 4 * t < 3 * u { over = false } }
                    else { over = false }
                }
                _ => {
                    if tpl == 0 { continue }
                    d.unbind_template(a);
                    tpl -= 1;
                    let t = act + inact;
                    if l != 0 { if t < l { over = false } }
                    else if u != 0 { if 4 * t < 3 * u { over = false } }
                    else { over = false }
                }
            }
            let r = d.server(a).unwrap();
            prop_assert_eq!((r.active, r.inactive, r.persistent, r.overloaded), (act, inact, tpl, over));
        }
    }

    #[test]
    fn random_commands_keep_counters_consistent(
        seed in any::<u64>(),
        cmds in prop::collection::vec((0u8..12, 0u8..3, 0u8..6, 0u32..4, 0usize..14), 1..150),
    ) {
        let mut d = Director::new(
            storage(Limits {
                services: 3,
                servers_per_service: 4,
                table_slots_per_service: 512,
                lblc_entries_per_service: 4,
            }),
            seed,
        );
        let keys: Vec<ServiceKey> = (0..3)
            .map(|i| ServiceKey::tcp(SocketAddr::from(([10, 0, 0, i], 80))))
            .collect();
        // Model: live connections (server id, active?, template?).
        let mut conns: Vec<(ServerId, bool, bool)> = Vec::new();
        let mut now = Instant::ZERO;
        for (op, k, n, w, sched) in cmds {
            let key = keys[usize::from(k)];
            let mut cfg = ServiceConfig::new(key);
            cfg.scheduler = SchedulerKind::ALL[sched];
            if cfg.scheduler == SchedulerKind::Mh {
                cfg.table_size = Some(251);
            }
            let mut sc = ServerConfig::new(SocketAddr::from(([10, 1, 0, n], 80)), ForwardMethod::Masq);
            sc.weight = w;
            sc.u_threshold = w * 2;
            sc.l_threshold = w;
            match op {
                0 => { let _ = d.add_service(&cfg); }
                1 => { let _ = d.edit_service(&cfg); }
                2 => { let _ = d.del_service(&key); }
                3 | 4 => { let _ = d.add_server(&key, &sc); }
                5 => { let _ = d.edit_server(&key, &sc); }
                6 => { let _ = d.del_server(&key, sc.addr); }
                7 | 8 => {
                    if let Some(s) = d.service_id(&key) {
                        if let Some(id) = d.schedule(s, &input(u32::from(n)), now) {
                            prop_assert!(d.server(id).unwrap().available);
                            if w == 0 { d.bind_template(id); conns.push((id, false, true)); }
                            else { d.bind_conn(id); conns.push((id, false, false)); }
                        }
                    }
                }
                9 => {
                    if let Some(c) = conns.iter_mut().find(|c| !c.2 && !c.1) {
                        d.set_active(c.0, true);
                        c.1 = true;
                    }
                }
                10 => {
                    if !conns.is_empty() {
                        let (id, act, tpl) = conns.remove(usize::from(n) % conns.len());
                        if tpl { d.unbind_template(id) } else { d.unbind_conn(id, act) }
                    }
                }
                _ => {
                    if w == 0 { d.clear() }
                    now += Duration::from_secs(u64::from(w) * 30);
                    d.handle_timeout(now);
                }
            }
            // Every referenced server is still in use, with exactly the model's counters.
            for i in 0..12u16 {
                let (mut a, mut ina, mut t) = (0, 0, 0);
                for c in conns.iter().filter(|c| c.0 == i) {
                    if c.2 { t += 1 } else if c.1 { a += 1 } else { ina += 1 }
                }
                match d.server(i) {
                    Some(r) => {
                        prop_assert_eq!((r.active, r.inactive, r.persistent), (a, ina, t));
                        // A deleted server exists only while referenced.
                        prop_assert!(r.available || r.refs() > 0);
                        let in_list = d.server_service(i)
                            .map(|s| d.servers(s).order.contains(&i))
                            .unwrap_or(false);
                        prop_assert_eq!(in_list, r.available);
                    }
                    None => prop_assert_eq!(a + ina + t, 0),
                }
            }
            // Deleted services exist only while some server is referenced.
            for s in 0..3u16 {
                if let Some(v) = d.service(s) {
                    if v.deleted {
                        prop_assert!(v.is_empty());
                        prop_assert!(conns.iter().any(|c| d.server_service(c.0) == Some(s)));
                    }
                }
            }
        }
    }
}

/// The sizes the module docs state (x86-64 / 64-bit targets).
#[cfg(target_pointer_width = "64")]
#[test]
fn documented_sizes() {
    assert_eq!(size_of::<ServiceSlot>(), 240);
    assert_eq!(size_of::<RealServer>(), 120);
    assert_eq!(size_of::<RateEstimator>(), 80);
    assert_eq!(size_of::<Stats>(), 40);
    assert_eq!(size_of::<Rates>(), 40);
}
