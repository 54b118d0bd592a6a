//! The balancer every packet target starts from: a few services with different schedulers,
//! persistence, one-packet scheduling, a port-0 service and direct-routing and tunnel servers
//! among NAT ones, configured through the ipvsadm grammar (the balancer's settings must have
//! [`Settings::direct_routing`] on; [`empty`] gives them tunnel sources).

use std::net::SocketAddr;

use lb_core::conn::ConnStorage;
use lb_core::director::{Director, DirectorStorage, Limits};
use lb_core::hash::SipKey;
use lb_core::ipvsadm::parse_line;
use lb_core::{Balancer, Instant, ServiceKey, Settings};

/// The configuration, as `ipvsadm -S` lines.
pub const CONFIG: &str = "\
-A -t 10.0.0.100:80 -s wlc
-a -t 10.0.0.100:80 -r 10.1.0.1:8080 -m -w 1
-a -t 10.0.0.100:80 -r 10.1.0.2:8080 -m -w 2
-a -t 10.0.0.100:80 -r 10.1.0.3 -m -w 1
-a -t 10.0.0.100:80 -r 10.1.0.7 -g -w 1
-a -t 10.0.0.100:80 -r 10.1.0.8 -i -w 1 --tun-type gue --tun-port 6080 --tun-csum
-A -u 10.0.0.100:53 -s rr -o
-a -u 10.0.0.100:53 -r 10.1.0.1:53 -m
-a -u 10.0.0.100:53 -r 10.1.0.2:5353 -m
-a -u 10.0.0.100:53 -r 10.1.0.7 -g
-a -u 10.0.0.100:53 -r 10.1.0.8 -i --tun-type gre --tun-csum
-A -t [2001:db8::100]:443 -s sh -p 300 -M 64
-a -t [2001:db8::100]:443 -r [2001:db8:1::1]:443 -m
-a -t [2001:db8::100]:443 -r [2001:db8:1::2]:8443 -m -x 3 -y 1
-a -t [2001:db8::100]:443 -r [2001:db8:1::4] -g
-a -t [2001:db8::100]:443 -r [2001:db8:1::5] -i
-A -t 10.0.0.101:0 -s lc -p 60
-a -t 10.0.0.101:0 -r 10.1.0.4 -m
-a -t 10.0.0.101:0 -r 10.1.0.5 -m
-A -u [2001:db8::100]:53 -s mh -p 30 -o
-a -u [2001:db8::100]:53 -r [2001:db8:1::1]:53 -m
-a -u [2001:db8::100]:53 -r [2001:db8:1::3]:53 -m -w 3
-A -t 10.0.0.102:25 -s lblc
-a -t 10.0.0.102:25 -r 10.1.0.1:25 -m
-a -t 10.0.0.102:25 -r 10.1.0.6:25 -m -w 0
";

/// The service keys of [`CONFIG`], in order.
pub fn service_keys() -> [ServiceKey; 6] {
    [
        ServiceKey::tcp(sa("10.0.0.100:80")),
        ServiceKey::udp(sa("10.0.0.100:53")),
        ServiceKey::tcp(sa("[2001:db8::100]:443")),
        ServiceKey::tcp(sa("10.0.0.101:0")),
        ServiceKey::udp(sa("[2001:db8::100]:53")),
        ServiceKey::tcp(sa("10.0.0.102:25")),
    ]
}

pub fn sa(s: &str) -> SocketAddr {
    s.parse().expect("test address")
}

pub fn limits() -> Limits {
    Limits {
        services: 8,
        servers_per_service: 8,
        table_slots_per_service: 4093,
        lblc_entries_per_service: 16,
    }
}

/// The outer source of IPv4 tunnels.
pub const TUNNEL_SOURCE_V4: std::net::Ipv4Addr = std::net::Ipv4Addr::new(10, 1, 0, 254);
/// The outer source of IPv6 tunnels.
pub const TUNNEL_SOURCE_V6: std::net::Ipv6Addr =
    std::net::Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0xfe);

/// A balancer with an empty table of `capacity` entries and no services; `settings` with the
/// tunnel sources set where they are not.
pub fn empty(capacity: usize, mut settings: Settings, seed: u64) -> Balancer<'static> {
    settings.tunnel_source_v4.get_or_insert(TUNNEL_SOURCE_V4);
    settings.tunnel_source_v6.get_or_insert(TUNNEL_SOURCE_V6);
    let director = Director::new(DirectorStorage::alloc(limits()), seed);
    let conns = ConnTable::new(
        ConnStorage::alloc(capacity),
        SipKey([seed ^ 0x0123_4567_89ab_cdef, 0x0fed_cba9_8765_4321]),
        Instant::ZERO,
    );
    Balancer::new(director, conns, settings)
}

use lb_core::conn::ConnTable;

/// Applies every line of `text` (panics on a line that does not parse or apply).
pub fn configure(b: &mut Balancer<'_>, text: &str) {
    for line in text.lines() {
        let Some(cmd) = parse_line(line).unwrap_or_else(|e| panic!("{line}: {e}")) else {
            continue;
        };
        b.apply(Instant::ZERO, &cmd)
            .unwrap_or_else(|e| panic!("{line}: {e}"));
    }
}

/// A balancer configured with [`CONFIG`].
pub fn configured(capacity: usize, settings: Settings, seed: u64) -> Balancer<'static> {
    let mut b = empty(capacity, settings, seed);
    configure(&mut b, CONFIG);
    b
}
