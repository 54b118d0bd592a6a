//! lb-embedded on a Cortex-M4F with no operating system: the gateway balances TCP connections
//! over an in-memory device of this example's own.
//!
//! The device (`lab::Lab`, `Medium::Ip`) plays the network: a new client SYN to the virtual
//! service every 16 ms, real servers that answer SYNs, clients that reset their SYN-ACKs. So
//! the loop runs the full path: schedule, NAT both ways, state machine, timers.
//!
//! Memory: the gateway's resources (1,024 connections) are a `ConstStaticCell` that is all
//! zero (`.bss`); the director's storage (4 services × 8 servers) is another, also all zero
//! (`build.sh` fails if either leaves `.bss`); the sync socket's storage is a `StaticCell`
//! written at boot (`.bss` too), as are the health probes' (2 TCP sockets) and the health
//! checker's (its empty entries are not all zero bits either). Time: one loop iteration is one millisecond of
//! gateway time (a board would read SysTick or an RTC instead).
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

mod lab;

use cortex_m_rt::entry;
use lab::Lab;
use lb_embedded::lb_core::{DirectorResources, HealthResources, Instant};
use lb_embedded::smoltcp::wire::EthernetAddress;
use lb_embedded::{gateway_resources, Gateway, GatewayConfig, ProbeResources, SyncResources};
use panic_halt as _;
use static_cell::{ConstStaticCell, StaticCell};

/// Room for 1,024 connections, 16 neighbours, 4 routes, 4 held frames.
type Res = gateway_resources!(conns: 1024, neighbours: 16, routes: 4, hold: 4);
/// 4 services × 8 servers, no sh/dh/mh tables, no lblc caches.
type Dir = DirectorResources<4, 32, 0, 0>;

static RES: ConstStaticCell<Res> = ConstStaticCell::new(Res::new());
static DIR: ConstStaticCell<Dir> = ConstStaticCell::new(Dir::new());
/// The sync socket's storage: a `StaticCell` written at boot, not a `ConstStaticCell`, because
/// smoltcp's empty socket slot is not all zero bits (a const initialiser would put it in .data).
static SYNC: StaticCell<SyncResources<'static>> = StaticCell::new();
/// The health probes: 2 TCP sockets (probes in flight at once), 64 bytes to receive each (a
/// TCP check reads nothing). A `StaticCell` for the same reason as `SYNC`.
type Probes = ProbeResources<'static, 2, 64>;
static PROBES: StaticCell<Probes> = StaticCell::new();
/// The health checker: 4 probes, 4 checked servers, 1 virtual-server policy. A `StaticCell`
/// too: a const initialiser would put its 2.6 KB in .data.
type Health = HealthResources<4, 4, 1>;
static HEALTH: StaticCell<Health> = StaticCell::new();

#[entry]
fn main() -> ! {
    let mut lab = Lab::new();
    let now = Instant::ZERO;
    // The lab has no RNG, so a fixed seed; on a board: GatewayConfig::new(mac, 32 RNG bytes).
    let config = GatewayConfig::from_seed(EthernetAddress([0x02, 0, 0, 0, 0, 1]), 0x5eed_0001);
    let Ok(mut gw) = Gateway::new(RES.take(), DIR.take().storage(), &mut lab, config, now) else {
        panic!("gateway");
    };
    gw.attach_sync(SYNC.init(SyncResources::new()));
    // A board seeds this from its RNG too.
    gw.attach_probes(
        PROBES.init(Probes::new()),
        HEALTH.init(Health::new()),
        0x5eed_0002,
    );
    if lab::configure(&mut gw, now).is_err() || lab::configure_health(&mut gw, now).is_err() {
        panic!("config");
    }
    let mut ms: u64 = 0;
    loop {
        let now = Instant::from_millis(ms);
        gw.poll(now, &mut lab);
        ms += 1;
        // Keep the results observable (a board would export them).
        core::hint::black_box((gw.counters(), gw.balancer().counters(), lab.dev.handshakes));
        core::hint::black_box((gw.balancer().sync_stats(), lab.dev.sync_messages));
        core::hint::black_box((gw.probe_stats(), gw.balancer().health_counters()));
    }
}
