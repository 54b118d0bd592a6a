//! Property tests of the balancer against a simple `HashMap` model (issue 6, item 3).
//!
//! Random sequences of client flows — SYN, data, FIN, RST, the server's replies, UDP — and time
//! steps go through a `Balancer` with a small table. The model remembers which server each
//! live flow was given, and checks:
//! * every packet of a known flow goes to that flow's server (a SYN only moves a flow whose
//!   entry is in TIME_WAIT/CLOSE, the port-reuse rule), and every reply goes back to the client
//!   from the VIP: established flows never change server;
//! * an established flow is never evicted; only TIME_WAIT/CLOSE and half-open
//!   (SYN_RECV/SYNACK) entries are, and each eviction is counted (the half-open ones also as
//!   embryonic evictions);
//! * entries never exceed the capacity;
//! * the counters equal the model's counts: `conns_created`, `TableFull` drops, and per server
//!   `active`/`inactive` (from the model's flows and their states).

mod harness;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use harness::pkt::{self, ACK, FIN, RST, SYN};
use harness::setup::{configure, empty, sa};
use lb_core::{Balancer, DropReason, Duration, Instant, Settings, Verdict};
use proptest::prelude::*;

const CONFIG: &str = "\
-A -t 10.0.0.100:80 -s wlc
-a -t 10.0.0.100:80 -r 10.1.0.1:8080 -m
-a -t 10.0.0.100:80 -r 10.1.0.2:8080 -m -w 2
-a -t 10.0.0.100:80 -r 10.1.0.3:8080 -m
-A -u 10.0.0.100:53 -s rr
-a -u 10.0.0.100:53 -r 10.1.0.1:53 -m
-a -u 10.0.0.100:53 -r 10.1.0.2:53 -m
";

#[derive(Debug, Clone, Copy)]
enum Op {
    /// Client `c` sends a TCP segment with these flags (and a little data).
    Tcp(u8, u8),
    /// The server of client `c`'s flow answers with these flags.
    TcpReply(u8, u8),
    Udp(u8),
    UdpReply(u8),
    /// Seconds pass.
    Time(u16),
}

fn op() -> impl Strategy<Value = Op> {
    let flags = prop_oneof![
        Just(SYN),
        Just(ACK),
        Just(ACK | pkt::PSH),
        Just(FIN | ACK),
        Just(RST),
        Just(SYN | ACK),
    ];
    prop_oneof![
        4 => (0u8..24, flags.clone()).prop_map(|(c, f)| Op::Tcp(c, f)),
        3 => (0u8..24, flags).prop_map(|(c, f)| Op::TcpReply(c, f)),
        1 => (0u8..6).prop_map(Op::Udp),
        1 => (0u8..6).prop_map(Op::UdpReply),
        1 => prop_oneof![0u16..5, 5u16..200, 200u16..1000].prop_map(Op::Time),
    ]
}

fn tcp_client(c: u8) -> SocketAddr {
    SocketAddr::new(
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1 + c / 4)),
        40000 + u16::from(c % 4),
    )
}

fn udp_client(c: u8) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1 + c)), 5000)
}

/// What the model knows of a live flow.
#[derive(Debug, Clone, Copy)]
struct Flow {
    server: SocketAddr,
    state: &'static str,
}

struct Model {
    flows: HashMap<SocketAddr, Flow>,
    created: u64,
    table_full: u64,
}

fn process(b: &mut Balancer<'_>, now: Instant, p: &[u8]) -> (Verdict, Vec<u8>) {
    let mut buf = p.to_vec();
    buf.resize(2048, 0);
    let v = b.process(now, &mut buf, p.len());
    buf.truncate(p.len());
    (v, buf)
}

/// The balancer's live connections: client → (server, state).
fn live(b: &Balancer<'_>, now: Instant) -> HashMap<SocketAddr, (SocketAddr, &'static str)> {
    b.connections(now)
        .filter(|c| !c.template)
        .map(|c| (c.client, (c.server, c.state)))
        .collect()
}

fn run(capacity: usize, ops: &[Op]) {
    let mut b = empty(capacity, Settings::default(), 9);
    configure(&mut b, CONFIG);
    let tcp_vip = sa("10.0.0.100:80");
    let udp_vip = sa("10.0.0.100:53");
    let mut m = Model {
        flows: HashMap::new(),
        created: 0,
        table_full: 0,
    };
    let mut now = Instant::ZERO;
    for (step, &op) in ops.iter().enumerate() {
        let evictions = b.counters().evictions;
        let embryonic_evictions = b.counters().embryonic_evictions;
        let mut subject = None;
        match op {
            Op::Tcp(c, flags) => {
                let client = tcp_client(c);
                subject = Some(client);
                let known = m.flows.get(&client).copied();
                let p = pkt::tcp(client, tcp_vip, flags, 1, b"x", 0);
                let (v, out) = process(&mut b, now, &p);
                let moves = flags & SYN != 0
                    && known.is_some_and(|f| matches!(f.state, "TIME_WAIT" | "CLOSE"));
                match known {
                    Some(f) if !moves => {
                        assert!(
                            matches!(v, Verdict::ToServer(_)),
                            "step {step}: {client} {flags:#x}"
                        );
                        assert_eq!(
                            pkt::dst_of(&out),
                            Some(f.server),
                            "step {step}: {client} moved"
                        );
                    }
                    _ => {
                        if v == Verdict::Drop(DropReason::TableFull) {
                            m.table_full += 1;
                        }
                        if moves {
                            m.flows.remove(&client);
                        }
                        if matches!(v, Verdict::ToServer(_)) {
                            m.created += 1;
                        }
                    }
                }
            }
            Op::TcpReply(c, flags) => {
                let client = tcp_client(c);
                subject = Some(client);
                let server = m
                    .flows
                    .get(&client)
                    .map_or(sa("10.1.0.1:8080"), |f| f.server);
                let p = pkt::tcp(server, client, flags, 1, b"y", 0);
                let (v, out) = process(&mut b, now, &p);
                if m.flows.contains_key(&client) {
                    assert!(
                        matches!(v, Verdict::ToClient(_)),
                        "step {step}: reply to {client}"
                    );
                    assert_eq!(pkt::src_of(&out), Some(tcp_vip));
                } else {
                    assert!(
                        matches!(v, Verdict::Pass(_)),
                        "step {step}: reply of no flow"
                    );
                }
            }
            Op::Udp(c) => {
                let client = udp_client(c);
                subject = Some(client);
                let known = m.flows.get(&client).copied();
                let (v, out) = process(&mut b, now, &pkt::udp(client, udp_vip, b"q"));
                match known {
                    Some(f) => {
                        assert!(matches!(v, Verdict::ToServer(_)));
                        assert_eq!(pkt::dst_of(&out), Some(f.server), "UDP flow {client} moved");
                    }
                    None => match v {
                        Verdict::ToServer(_) => m.created += 1,
                        Verdict::Drop(DropReason::TableFull) => m.table_full += 1,
                        other => panic!("new UDP flow: {other:?}"),
                    },
                }
            }
            Op::UdpReply(c) => {
                let client = udp_client(c);
                let server = m.flows.get(&client).map_or(sa("10.1.0.1:53"), |f| f.server);
                let (v, _) = process(&mut b, now, &pkt::udp(server, client, b"a"));
                if m.flows.contains_key(&client) {
                    assert!(
                        matches!(v, Verdict::ToClient(_)),
                        "UDP reply to {client}: {v:?}"
                    );
                } else {
                    assert!(
                        matches!(v, Verdict::Pass(_)),
                        "UDP reply to {client}: {v:?}"
                    );
                }
            }
            Op::Time(s) => {
                now += Duration::from_secs(u64::from(s));
                b.handle_timeout(now);
            }
        }
        // Sync the model with the table and check what may and may not have changed.
        let table = live(&b, now);
        let evicted = b.counters().evictions - evictions;
        let evicted_half_open = b.counters().embryonic_evictions - embryonic_evictions;
        let mut gone = 0;
        let mut gone_half_open = 0;
        for (client, f) in &m.flows {
            match table.get(client) {
                Some((server, _)) => {
                    assert_eq!(
                        server, &f.server,
                        "step {step}: {client} changed server in the table"
                    )
                }
                None if matches!(op, Op::Time(_)) => {}
                None if Some(*client) == subject => {}
                None => {
                    assert!(
                        matches!(f.state, "TIME_WAIT" | "CLOSE" | "SYN_RECV" | "SYNACK"),
                        "step {step}: {client} in {} vanished",
                        f.state
                    );
                    gone += 1;
                    gone_half_open += u64::from(matches!(f.state, "SYN_RECV" | "SYNACK"));
                }
            }
        }
        assert_eq!(gone, evicted, "step {step}: evictions counted");
        assert_eq!(
            gone_half_open, evicted_half_open,
            "step {step}: half-open evictions counted"
        );
        m.flows = table
            .iter()
            .map(|(c, (server, state))| {
                (
                    *c,
                    Flow {
                        server: *server,
                        state,
                    },
                )
            })
            .collect();
        assert!(b.conns().len() <= capacity);
        let c = b.counters();
        assert_eq!(c.conns_created, m.created, "step {step}: conns_created");
        assert_eq!(
            c.drops(DropReason::TableFull),
            m.table_full,
            "step {step}: TableFull drops"
        );
        // Per-server counters from the model's flows.
        let d = b.director();
        for (id, _) in d.services() {
            for (_, s) in d.servers(id).iter() {
                let mine = m.flows.values().filter(|f| f.server == s.addr());
                let (mut active, mut total) = (0, 0);
                for f in mine {
                    total += 1;
                    if matches!(f.state, "ESTABLISHED" | "SYN_SENT" | "SYN_RECV" | "SYNACK") {
                        active += 1;
                    }
                }
                assert_eq!(
                    (s.active, s.active + s.inactive),
                    (active, total),
                    "{}",
                    s.addr()
                );
            }
        }
        harness::inv::check_table(&b, now);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn balancer_matches_a_hashmap_model(
        capacity in prop_oneof![4usize..12, 64usize..65],
        ops in proptest::collection::vec(op(), 1..250),
    ) {
        run(capacity, &ops);
    }
}
