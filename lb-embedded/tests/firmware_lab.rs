//! Runs the firmware example's network and configuration (`firmware/src/lab.rs`) on the host,
//! with the firmware's resource sizes, so what the firmware loop does is checked by `cargo test`.
//! (The health check's probes need the `health` feature, the daemons `sync`: see Cargo.toml.)

#[path = "../firmware/src/lab.rs"]
mod lab;

use std::sync::Mutex;

use lb_embedded::lb_core::{DirectorResources, HealthResources, HealthState, Instant, ServiceKey};
use lb_embedded::smoltcp::wire::EthernetAddress;
use lb_embedded::{gateway_resources, Gateway, GatewayConfig, ProbeResources, SyncResources};

type Res = gateway_resources!(conns: 1024, neighbours: 16, routes: 4, hold: 4);
type Dir = DirectorResources<4, 32, 0, 0>;

#[test]
fn firmware_loop_balances_and_expires() {
    static RES: Mutex<Res> = Mutex::new(Res::new());
    static DIR: Mutex<Dir> = Mutex::new(Dir::new());
    let mut res = RES.lock().unwrap();
    let mut dir = DIR.lock().unwrap();
    let mut lab = Box::new(lab::Lab::new());
    let config = GatewayConfig::from_seed(EthernetAddress([0x02, 0, 0, 0, 0, 1]), 0x5eed_0001);
    let now = Instant::ZERO;
    let mut sync = Box::new(SyncResources::new());
    let mut gw = Gateway::new(&mut res, dir.storage(), &mut *lab, config, now).unwrap();
    gw.attach_sync(&mut sync);
    let mut probes = Box::new(ProbeResources::<'_, 2, 64>::new());
    let mut health = Box::new(HealthResources::<4, 4, 1>::new());
    gw.attach_probes(&mut probes, &mut health, 0x5eed_0002);
    lab::configure(&mut gw, now).unwrap();
    lab::configure_health(&mut gw, now).unwrap();
    // 60 s of firmware loop, one iteration a millisecond.
    for ms in 0..60_000u64 {
        gw.poll(Instant::from_millis(ms), &mut *lab);
    }
    let clients = 60_000 / lab::NEW_CLIENT_EVERY_MS as u64;
    let b = *gw.balancer().counters();
    let g = *gw.counters();
    // Every client got its SYN-ACK from the VIP; entries closed by the RST expire (CLOSE: 10 s),
    // so the table holds about 10 s worth of them and never fills.
    assert_eq!(u64::from(lab.dev.handshakes), clients);
    assert_eq!(b.conns_created, clients);
    assert_eq!(b.evictions, 0);
    assert_eq!(g.balancer_drops + g.no_route + g.tx_full + g.oversize, 0);
    assert_eq!(g.forwarded, 4 * clients);
    // Both daemons run; the master sent each connection once, when the client's RST closed it
    // (a change into CLOSE goes at once), 40 records a message, and nothing was lost.
    let s = *gw.balancer().sync_stats();
    let sent = s.messages_sent;
    assert_eq!(s.queued, clients);
    assert_eq!(s.queue_drops, 0);
    assert!(clients - s.records_sent < 40, "{s:?}");
    assert_eq!(s.records_sent.div_ceil(40), sent, "{s:?}");
    assert_eq!((g.sync_sent, g.sync_unsent), (sent, 0));
    assert_eq!(u64::from(lab.dev.sync_messages), sent);
    // The checked server was probed at 0 and then a delay_loop (1 s) after each probe's end:
    // its SYN-ACK comes back at the next poll, 1 ms later, so at 0, 1,001, 2,002, …, 59,059:
    // 60 probes, all passed (no timeout, no event), the server UP.
    let p = gw.probe_stats().unwrap();
    assert_eq!((p.started, p.timeouts, p.no_source), (60, 0, 0));
    let service = ServiceKey::tcp(std::net::SocketAddr::new(lab::VIP.into(), 80));
    assert_eq!(
        gw.balancer().health_state(&service, lab::CHECKED),
        Some(HealthState::Up)
    );
    let status = gw.balancer().health_statuses().next().unwrap();
    assert_eq!(status.server, lab::CHECKED);
    assert_eq!(status.passes, 60);
    assert_eq!(
        status.last,
        Some((
            Instant::from_millis(59_060),
            lb_embedded::lb_core::ProbeOutcome::Ok
        ))
    );
    assert_eq!(gw.poll_event(), None);
    let live = gw.balancer().connection_count() as u64;
    assert!(live > 500 && live < 700, "live entries {live}");
    // wrr 3:2:1 over the TCP service.
    let d = gw.balancer().director();
    let (tcp, _) = d.services().next().unwrap();
    let mut conns: Vec<u64> = d.servers(tcp).iter().map(|(_, s)| s.stats.conns).collect();
    conns.sort_unstable();
    let unit = clients / 6;
    assert!(
        conns
            .iter()
            .zip([unit, 2 * unit, 3 * unit])
            .all(|(&c, e)| c.abs_diff(e) <= 6),
        "{conns:?}"
    );
}

#[test]
fn resources_are_sized_as_documented() {
    // (That they are all zero bits is checked on the linked firmware: build.sh fails unless the
    // resources' static is in .bss.)
    let size = std::mem::size_of::<Res>();
    let conns = lb_embedded::lb_core::ConnStorage::slots_for(1024).bytes();
    // 64 bytes per connection, and the fragment table's 64 slots of 64 bytes.
    assert_eq!(conns, 64 * 1024 + 64 * 64);
    // Parts plus at most 7 bytes of alignment padding.
    let parts = conns + 16 * 48 + 4 * 37 + 4 * 1540 + 1666;
    assert!(size >= parts && size <= parts + 7, "{size} vs {parts}");
}

#[test]
fn slot_sizes_are_as_documented() {
    use lb_embedded::neighbour::{HoldSlot, NeighbourSlot};
    use lb_embedded::route::RouteSlot;
    println!(
        "SIZES res {} neighbour {} hold {} route {} gateway {} dir {}",
        std::mem::size_of::<Res>(),
        std::mem::size_of::<NeighbourSlot>(),
        std::mem::size_of::<HoldSlot>(),
        std::mem::size_of::<RouteSlot>(),
        std::mem::size_of::<Gateway<'static>>(),
        std::mem::size_of::<Dir>()
    );
    assert_eq!(std::mem::size_of::<NeighbourSlot>(), 48);
    assert_eq!(std::mem::size_of::<HoldSlot>(), 1540);
    assert_eq!(std::mem::size_of::<RouteSlot>(), 37);
}
