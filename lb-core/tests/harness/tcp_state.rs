//! The `tcp_state` target: arbitrary TCP flag sequences, directions and clock jumps through a
//! balancer, against a model written from the reference's tables (§2.2–§2.7, §3.1, §4.10),
//! independently of lb-core's `tcp` module.
//!
//! For every packet the model predicts the verdict, the real server, the entry's next state
//! and its deadline (`now + timeout(state)`, re-armed by every packet); after every time step
//! it predicts which entries are gone (allowing the wheel's 1/16 s). Both IPv4 and IPv6
//! clients, the normal and the secure_tcp (DoS) tables, conn_reuse_mode, sloppy_tcp and
//! `--set` timeouts are covered.

use std::collections::HashMap;
use std::net::SocketAddr;

use arbitrary::{Arbitrary, Unstructured};
use lb_core::config::Timeouts;
use lb_core::ipvsadm::{Command, Setting};
use lb_core::{
    Balancer, ConnReuseMode, DefenceMode, DropReason, Duration, Instant, Settings, Transmit,
    Verdict,
};

use super::inv::{check_table, TICK};
use super::packets::Step;
use super::{pkt, setup};

const STATES: [&str; 11] = [
    "NONE",
    "ESTABLISHED",
    "SYN_SENT",
    "SYN_RECV",
    "FIN_WAIT",
    "TIME_WAIT",
    "CLOSE",
    "CLOSE_WAIT",
    "LAST_ACK",
    "LISTEN",
    "SYNACK",
];
const ABBR: [&str; 11] = [
    "NO", "ES", "SS", "SR", "FW", "TW", "CL", "CW", "LA", "LI", "SA",
];
const TW: u8 = 5;
const CL: u8 = 6;
const ES: u8 = 1;
const FW: u8 = 4;

/// docs/ipvs-semantics.md §2.4 (normal) and §2.5 (DoS): [table][direction: input, output][event: syn,
/// fin, ack, rst] → the next state for each current state (columns NO..SA).
const TABLES: [[[&str; 4]; 2]; 2] = [
    [
        [
            "SR ES ES SR SR SR SR SR SR SR SR",
            "CL CW SS TW TW TW CL CW LA LI TW",
            "ES ES SS ES FW TW CL CW CL LI ES",
            "CL CL CL SR CL CL CL CL LA LI SR",
        ],
        [
            "SS ES SS SR SS SS SS SS SS LI SR",
            "TW FW SS TW FW TW CL TW LA LI TW",
            "ES ES SS ES FW TW CL CW LA ES ES",
            "CL CL SS CL CL TW CL CL CL CL CL",
        ],
    ],
    [
        [
            "SR ES ES SR SR SR SR SR SR SR SA",
            "CL CW SS TW TW TW CL CW LA LI SA",
            "ES ES SS SR FW TW CL CW CL LI SA",
            "CL CL CL SR CL CL CL CL LA LI CL",
        ],
        [
            "SS ES SS SA SS SS SS SS SS LI SA",
            "TW FW SS TW FW TW CL TW LA LI TW",
            "ES ES SS ES FW TW CL CW LA ES ES",
            "CL CL SS CL CL TW CL CL CL CL CL",
        ],
    ],
];

/// §2.2: RST, else SYN, else FIN, else ACK; none of them gives CLOSE.
fn next(dos: bool, output: bool, flags: u8, cur: u8) -> u8 {
    let ev = if flags & pkt::RST != 0 {
        3
    } else if flags & pkt::SYN != 0 {
        0
    } else if flags & pkt::FIN != 0 {
        1
    } else if flags & pkt::ACK != 0 {
        2
    } else {
        return CL;
    };
    let row = TABLES[usize::from(dos)][usize::from(output)][ev];
    let cell = row.split(' ').nth(usize::from(cur)).expect("11 columns");
    ABBR.iter().position(|a| *a == cell).expect("known state") as u8
}

/// §2.1 default timeouts in seconds, NONE..SYNACK.
const TIMEOUTS: [u64; 11] = [2, 900, 120, 60, 120, 120, 10, 60, 30, 120, 120];

#[derive(Arbitrary, Debug)]
pub struct Input {
    pub conn_reuse_mode: u8,
    pub secure_tcp: bool,
    pub sloppy_tcp: bool,
    pub ops: Vec<Op>,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum Op {
    /// A segment with these flags: from client `client` (bit 2: IPv6) to the VIP, or from its
    /// real server back.
    Segment {
        client: u8,
        reply: bool,
        flags: u8,
    },
    Time(Step),
    SecureTcp(bool),
    SloppyTcp(bool),
    ConnReuseMode(u8),
    SetTimeouts {
        tcp: u8,
        tcp_fin: u8,
    },
}

const CONFIG: &str = "\
-A -t 10.0.0.100:80 -s rr
-a -t 10.0.0.100:80 -r 10.1.0.1:8080 -m
-a -t 10.0.0.100:80 -r 10.1.0.2:8080 -m
-A -t [2001:db8::100]:80 -s rr
-a -t [2001:db8::100]:80 -r [2001:db8:1::1]:8080 -m
-a -t [2001:db8::100]:80 -r [2001:db8:1::2]:8080 -m
";

#[derive(Debug, Clone, Copy)]
struct Model {
    state: u8,
    server: SocketAddr,
    deadline: Instant,
}

pub fn run(data: &[u8]) {
    let mut u = Unstructured::new(data);
    if let Ok(input) = Input::arbitrary(&mut u) {
        run_input(&input);
    }
}

pub fn run_input(input: &Input) {
    let settings = Settings {
        conn_reuse_mode: ConnReuseMode::new(input.conn_reuse_mode % 4).unwrap(),
        secure_tcp: if input.secure_tcp {
            DefenceMode::On
        } else {
            DefenceMode::Off
        },
        sloppy_tcp: input.sloppy_tcp,
        // This target checks the TCP state machine against its model, which answers every
        // segment of no flow with a RST: the reply rate limit (checked by its own tests and by
        // the `packets` target) is off here, so the model stays exact.
        reply_rate_per_sec: 0,
        reply_peer_interval_ms: 0,
        ..Settings::default()
    };
    let mut b = setup::empty(64, settings, 11);
    setup::configure(&mut b, CONFIG);
    let mut timeouts = TIMEOUTS;
    let mut model: HashMap<SocketAddr, Model> = HashMap::new();
    let mut now = Instant::ZERO;
    for op in input.ops.iter().take(2000) {
        match *op {
            Op::Segment {
                client,
                reply,
                flags,
            } => {
                let v6 = client & 4 != 0;
                let c = if v6 {
                    SocketAddr::new(
                        "2001:db8:c::1".parse().unwrap(),
                        40000 + u16::from(client & 3),
                    )
                } else {
                    SocketAddr::new("192.0.2.1".parse().unwrap(), 40000 + u16::from(client & 3))
                };
                let vip = setup::sa(if v6 {
                    "[2001:db8::100]:80"
                } else {
                    "10.0.0.100:80"
                });
                let dos = b.secure_tcp_active();
                segment(
                    &mut b, &mut model, now, c, vip, reply, flags, dos, &timeouts,
                );
            }
            Op::Time(step) => {
                now += step.duration();
                b.handle_timeout(now);
                let live: Vec<SocketAddr> = b
                    .connections(now)
                    .filter(|c| !c.template)
                    .map(|c| c.client)
                    .collect();
                model.retain(|c, m| {
                    if m.deadline + TICK <= now {
                        assert!(
                            !live.contains(c),
                            "{c} outlived its deadline {:?} (now {now:?})",
                            m.deadline
                        );
                        false
                    } else if m.deadline > now {
                        assert!(
                            live.contains(c),
                            "{c} expired before its deadline {:?} (now {now:?})",
                            m.deadline
                        );
                        true
                    } else {
                        live.contains(c)
                    }
                });
            }
            Op::SecureTcp(on) => apply(
                &mut b,
                now,
                Command::Set(Setting::SecureTcp(if on { 3 } else { 0 })),
            ),
            Op::SloppyTcp(on) => apply(&mut b, now, Command::Set(Setting::SloppyTcp(on))),
            Op::ConnReuseMode(m) => apply(&mut b, now, Command::Set(Setting::ConnReuseMode(m % 4))),
            Op::SetTimeouts { tcp, tcp_fin } => {
                apply(
                    &mut b,
                    now,
                    Command::SetTimeouts(Timeouts {
                        tcp: u32::from(tcp),
                        tcp_fin: u32::from(tcp_fin),
                        udp: 0,
                    }),
                );
                if tcp != 0 {
                    timeouts[usize::from(ES)] = u64::from(tcp);
                }
                if tcp_fin != 0 {
                    timeouts[usize::from(FW)] = u64::from(tcp_fin);
                }
            }
        }
        compare(&b, &model, now);
        check_table(&b, now);
    }
}

fn apply(b: &mut Balancer<'_>, now: Instant, cmd: Command) {
    b.apply(now, &cmd).expect("setting applies");
}

#[allow(clippy::too_many_arguments)]
fn segment(
    b: &mut Balancer<'_>,
    model: &mut HashMap<SocketAddr, Model>,
    now: Instant,
    c: SocketAddr,
    vip: SocketAddr,
    reply: bool,
    flags: u8,
    dos: bool,
    timeouts: &[u64; 11],
) {
    let syn = flags & pkt::SYN != 0;
    let rst = flags & pkt::RST != 0;
    let deadline = |s: u8| now + Duration::from_secs(timeouts[usize::from(s)]);
    if reply {
        let server = model
            .get(&c)
            .map_or_else(|| setup::sa("10.1.0.1:8080"), |m| m.server);
        let server = if c.is_ipv6() && !server.is_ipv6() {
            setup::sa("[2001:db8:1::1]:8080")
        } else {
            server
        };
        let p = pkt::tcp(server, c, flags, 1, b"", 0);
        let (v, out) = process(b, now, &p);
        match model.get_mut(&c) {
            Some(m) => {
                assert!(matches!(v, Verdict::ToClient(_)), "reply of a tracked flow");
                assert_eq!(pkt::src_of(&out), Some(vip));
                m.state = next(dos, true, flags, m.state);
                m.deadline = deadline(m.state);
            }
            None => assert!(matches!(v, Verdict::Pass(_)), "reply of an unknown flow"),
        }
        return;
    }
    let p = pkt::tcp(c, vip, flags, 1, b"", 0);
    let mut cur = model.get(&c).copied();
    // §3.1: a SYN reusing the port of a TIME_WAIT/CLOSE entry is a new connection (mode ≠ 0;
    // NAT entries never have NOOUTPUT, so the FIN_WAIT case does not arise).
    if let Some(m) = cur {
        if syn && b.settings().conn_reuse_mode.reschedules() && (m.state == TW || m.state == CL) {
            model.remove(&c);
            cur = None;
        }
    }
    let (v, out) = process(b, now, &p);
    match cur {
        Some(mut m) => {
            assert!(
                matches!(v, Verdict::ToServer(_)),
                "packet of a tracked flow"
            );
            assert_eq!(
                pkt::dst_of(&out),
                Some(m.server),
                "a tracked flow changed server"
            );
            m.state = next(dos, false, flags, m.state);
            m.deadline = deadline(m.state);
            model.insert(c, m);
        }
        None => {
            // §4.10: a SYN, or with sloppy_tcp any segment, creates an entry; a RST never.
            let creates = (syn || b.settings().sloppy_tcp) && !rst;
            if creates {
                assert!(matches!(v, Verdict::ToServer(_)), "new flow {flags:#04x}");
                let server = pkt::dst_of(&out).expect("forwarded");
                let state = next(dos, false, flags, 0);
                model.insert(
                    c,
                    Model {
                        state,
                        server,
                        deadline: deadline(state),
                    },
                );
            } else if rst {
                assert_eq!(v, Verdict::Drop(DropReason::NoConnection), "RST of no flow");
            } else {
                assert!(matches!(v, Verdict::Reply(_)), "segment of no flow: {v:?}");
            }
        }
    }
}

fn process(b: &mut Balancer<'_>, now: Instant, p: &[u8]) -> (Verdict, Vec<u8>) {
    let mut buf = p.to_vec();
    buf.resize(super::packets::BUF, 0);
    let before = *b.counters();
    let v = b.process(now, &mut buf, p.len());
    super::inv::check_verdict(b, &before, p, &buf, p.len(), v);
    let n = match v {
        Verdict::Reply(Transmit { len, .. }) => len,
        _ => p.len(),
    };
    buf.truncate(n);
    (v, buf)
}

/// The balancer's entries are the model's: same clients, states, servers, deadlines.
fn compare(b: &Balancer<'_>, model: &HashMap<SocketAddr, Model>, now: Instant) {
    let conns = b.conns();
    let mut seen = 0;
    for (h, e) in conns.iter() {
        let c = e.client();
        let m = model
            .get(&c)
            .unwrap_or_else(|| panic!("entry for {c} the model does not have"));
        seen += 1;
        let info = b.connections(now).find(|i| i.client == c).expect("listed");
        assert_eq!(info.state, STATES[usize::from(m.state)], "state of {c}");
        assert_eq!(info.server, m.server, "server of {c}");
        let d = conns.deadline(h).expect("live");
        assert!(
            d >= m.deadline && d <= m.deadline + TICK,
            "{c} in {}: deadline {d:?}, model {:?}",
            info.state,
            m.deadline
        );
    }
    assert_eq!(seen, model.len(), "model has entries the balancer lost");
}
