//! The director's timers go idle: no estimator run without something to estimate, no lblc/lblcr
//! garbage collection without a cache entry.

use core::net::SocketAddr;

use std::vec::Vec;

use super::*;
use crate::addr::Protocol;
use crate::config::{ForwardMethod, ServerConfig, ServiceConfig, ServiceKey};
use crate::director::{DirectorStorage, Limits, SchedInput};
use crate::stats::RateEstimator;

fn director() -> Director<'static> {
    let limits = Limits {
        services: 4,
        servers_per_service: 4,
        table_slots_per_service: 251,
        lblc_entries_per_service: 16,
    };
    Director::new(DirectorStorage::alloc(limits), 9)
}

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn ms(t: u64) -> Instant {
    Instant::from_millis(t)
}

/// Calls `handle_timeout` whenever `poll_timeout` asks, from `now` on, until it answers `None`;
/// returns the times asked.
fn run_until_idle(d: &mut Director<'_>, now: &mut Instant) -> Vec<Instant> {
    let mut asked = Vec::new();
    while let Some(t) = d.poll_timeout() {
        assert!(asked.len() < 10_000, "never idle");
        asked.push(t);
        *now = (*now).max(t);
        d.handle_timeout(*now);
    }
    asked
}

fn lblc_entries(d: &Director<'_>) -> usize {
    d.lblc.iter().filter(|e| !e.is_empty()).count()
        + d.lblcr.iter().filter(|e| !e.is_empty()).count()
}

#[test]
fn gc_runs_only_while_a_cache_entry_exists() {
    for kind in [SchedulerKind::Lblc, SchedulerKind::Lblcr] {
        let mut d = director();
        let key = ServiceKey::tcp(sa("10.0.0.100:80"));
        let mut cfg = ServiceConfig::new(key);
        cfg.scheduler = kind;
        let svc = d.add_service(&cfg).unwrap();
        d.add_server(
            &key,
            &ServerConfig::new(sa("10.1.0.1:80"), ForwardMethod::Masq),
        )
        .unwrap();
        d.set_lblc_expiration(Duration::from_secs(600));
        d.set_lblcr_expiration(Duration::from_secs(600));
        assert_eq!(d.poll_timeout(), None, "{kind:?}: no traffic yet");
        // A new connection fills a cache entry.
        let mut now = ms(10_500);
        let input = SchedInput {
            proto: Protocol::Tcp,
            client: sa("192.0.2.1:40000"),
            dst: sa("10.0.0.100:80"),
        };
        let server = d.schedule(svc, &input, now).unwrap();
        d.bind_conn(server);
        d.unbind_conn(server, false);
        assert_eq!(lblc_entries(&d), 1);
        let asked = run_until_idle(&mut d, &mut now);
        // Collected 600 s after its last use, by a collection every 60 s; then nothing is due.
        assert_eq!(lblc_entries(&d), 0, "{kind:?}");
        assert!(now >= ms(10_500 + 600_000), "{kind:?}: idle at {now:?}");
        assert!(now < ms(10_500 + 600_000 + 2 * GC_PERIOD.millis()));
        // Between the estimator's last run and the collection: only the 60 s collections.
        let late: Vec<_> = asked.iter().filter(|&&t| t > ms(200_000)).collect();
        assert!(late.len() <= 10, "{kind:?}: {late:?}");
    }
}

#[test]
fn no_gc_for_other_schedulers() {
    let mut d = director();
    let key = ServiceKey::tcp(sa("10.0.0.100:80"));
    let svc = d.add_service(&ServiceConfig::new(key)).unwrap();
    d.add_server(
        &key,
        &ServerConfig::new(sa("10.1.0.1:80"), ForwardMethod::Masq),
    )
    .unwrap();
    let mut now = ms(1_000);
    let input = SchedInput {
        proto: Protocol::Tcp,
        client: sa("192.0.2.1:40000"),
        dst: sa("10.0.0.100:80"),
    };
    let server = d.schedule(svc, &input, now).unwrap();
    d.bind_conn(server);
    let asked = run_until_idle(&mut d, &mut now);
    // Only estimator runs (one connection decays within a minute) and the immediate call.
    assert!(now < ms(60_000), "{now:?} {asked:?}");
    assert!(
        asked[1..].iter().all(|t| t.millis() % 2000 == 0),
        "{asked:?}"
    );
}

#[test]
fn skipped_runs_keep_the_grid_and_a_periodic_caller_sees_the_old_behaviour() {
    // A caller that never asks poll_timeout and calls every 2 s: each run counts the traffic
    // of the period before it, idle or not.
    let mut d = director();
    let key = ServiceKey::tcp(sa("10.0.0.100:80"));
    let svc = d.add_service(&ServiceConfig::new(key)).unwrap();
    let a = d
        .add_server(
            &key,
            &ServerConfig::new(sa("10.1.0.1:80"), ForwardMethod::Masq),
        )
        .unwrap();
    let mut want = RateEstimator::NEW;
    for g in 1..400u64 {
        if g % 100 == 7 {
            d.bind_conn(a);
            d.count_in(a, 100);
        }
        d.handle_timeout(ms(g * 2000));
        let s = d.service(svc).unwrap();
        want.estimate(&s.stats);
        assert_eq!(s.rates, want, "at {} s", g * 2);
    }
    // Rates at rest, nothing counted since: nothing is due.
    assert_eq!(d.poll_timeout(), None);
}

/// The estimator walks only the server blocks of the service slots ever filled: a server of
/// the highest one is still estimated.
#[test]
fn the_estimator_reaches_the_highest_service_slot_filled() {
    let mut d = director();
    let mut last = None;
    for (i, vip) in ["10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80"]
        .iter()
        .enumerate()
    {
        let key = ServiceKey::tcp(sa(vip));
        let svc = d.add_service(&ServiceConfig::new(key)).unwrap();
        let rs = sa(&std::format!("10.1.0.{}:80", i + 1));
        let cfg = ServerConfig::new(rs, ForwardMethod::Masq);
        last = Some((svc, d.add_server(&key, &cfg).unwrap()));
    }
    let (svc, a) = last.unwrap();
    assert_eq!(svc, 2, "the third slot");
    d.bind_conn(a);
    d.count_in(a, 1000);
    let mut want = RateEstimator::NEW;
    for g in 1..4u64 {
        d.handle_timeout(ms(g * 2000));
        want.estimate(&d.servers[usize::from(a)].stats);
        assert_eq!(d.server_rates[usize::from(a)], want, "at {} s", g * 2);
    }
    assert_ne!(want, RateEstimator::NEW, "the traffic was estimated");
}
