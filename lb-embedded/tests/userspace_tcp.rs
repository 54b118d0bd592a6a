//! End to end with userspace TCP on both sides: smoltcp clients → lb-embedded gateway →
//! smoltcp servers, on a virtual clock (see `sim/mod.rs`).

mod sim;

use std::sync::Mutex;

use lb_embedded::smoltcp::phy::Medium;
use sim::{Params, Report, Res};

fn check_scenario(p: &Params, r: &Report) {
    print!("{}", r.summary());
    // Every connection completed its exchange, none needed a second SYN, nothing was reset.
    assert_eq!(r.records.len(), p.connections);
    assert_eq!(r.completed(), p.connections, "failed connections");
    assert_eq!(
        r.syn_retransmissions(),
        0,
        "connections with a SYN retransmission"
    );
    assert_eq!(r.rst_seen, 0);
    assert_eq!(r.balancer.syn_drops, 0);
    // Ports were reused after smoltcp's TIME_WAIT and inside IPVS's.
    let reused: Vec<u64> = r.records.iter().filter_map(|c| c.reused_after_ms).collect();
    assert!(
        reused.len() >= p.connections / 2,
        "too little reuse: {}",
        reused.len()
    );
    assert!(reused
        .iter()
        .all(|&d| d > sim::SMOLTCP_TIME_WAIT_MS && d < sim::IPVS_TIME_WAIT_MS));
    // Each reuse found the old entry and was rescheduled at once: the TIME_WAIT rule for most,
    // the quiescent rule when the old entry was on the drained server, the removed-server rule
    // when it was on the removed one.
    let b = &r.balancer;
    assert_eq!(
        (b.reuse_reschedules + b.quiescent_reschedules + b.nodest_reschedules) as usize,
        reused.len()
    );
    assert!(b.reuse_reschedules as usize >= reused.len() / 2);
    assert_eq!(b.evictions, 0);
    assert_eq!(b.conns_created as usize, p.connections);
    // The split follows the weights in each phase (wrr: within one cycle).
    for ph in 0..3 {
        let w = &r.phase_weights[ph];
        let s = &r.scheduled[ph];
        let total: u64 = s.iter().sum();
        let wsum: u32 = w.iter().sum();
        assert!(total > 100, "phase {ph} too short: {total}");
        for (i, (&n, &wi)) in s.iter().zip(w).enumerate() {
            let expect = total as f64 * f64::from(wi) / f64::from(wsum);
            assert!(
                (n as f64 - expect).abs() <= f64::from(wsum),
                "phase {ph} server {i}: {n} scheduled, {expect:.1} expected"
            );
        }
    }
    // Scheduled in total = answered per server.
    let per: Vec<u64> = r.per_server().iter().map(|&n| n as u64).collect();
    let sched: Vec<u64> = (0..per.len())
        .map(|i| {
            r.scheduled
                .iter()
                .map(|s| s.get(i).copied().unwrap_or(0))
                .sum()
        })
        .collect();
    assert_eq!(per, sched);
    // Drain: the weight-0 server had open connections, they finished (all did), it got no new
    // one, and it was reported drained once its last entry expired.
    assert!(r.open_at_drain > 0);
    assert_eq!(r.accepted_after_drain, 0);
    assert!(r.drained_event_ms.is_some(), "no Drained event");
    // Removal: no new connection for the removed server.
    assert_eq!(r.accepted_after_removal, 0);
}

#[test]
fn ip_medium_port_reuse_drain_and_removal() {
    static RES: Mutex<Res> = Mutex::new(Res::new());
    let p = Params::scenario(Medium::Ip);
    let r = sim::run(&p, &mut RES.lock().unwrap());
    check_scenario(&p, &r);
    assert_eq!(r.gateway.arp_answers, 0);
}

#[test]
fn ethernet_medium_with_arp() {
    static RES: Mutex<Res> = Mutex::new(Res::new());
    let mut p = Params::scenario(Medium::Ethernet);
    p.seed = 0xe7;
    let r = sim::run(&p, &mut RES.lock().unwrap());
    check_scenario(&p, &r);
    let g = &r.gateway;
    // The client resolved the VIP through the gateway; the gateway resolved the client and
    // the servers (holding the first packets, never dropping them) and answered ARP for its
    // own addresses through smoltcp.
    assert!(g.arp_answers >= 1);
    // (The client's address is learnt from its ARP request for the VIP: no request needed.)
    assert!(g.requests_sent >= p.weights.len() as u64);
    assert!(g.held >= p.weights.len() as u64);
    assert_eq!(
        g.hold_full_drops + g.unresolved_drops + g.tx_full + g.no_route,
        0
    );
    assert!(g.rx_own >= 1);
}
