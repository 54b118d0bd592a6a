//! The fast path against the general path, on generated traffic: the `packets` fuzz harness
//! (`tests/harness/packets.rs`) run on a few thousand seeded inputs. Three balancers take each
//! input in lockstep — `process` (the established-flow fast path first), `process_burst`, and
//! `process_general` (the general path only) — and must agree on every verdict, every byte
//! written, every counter, every connection, every event and every service's and server's
//! statistics.
//!
//! The inputs are shaped like traffic — TCP handshakes, data, FINs and RSTs and UDP both ways
//! over a few clients, so most packets belong to flows the table holds and take the fast path
//! — with clock steps, control changes (weights, deletions, persistence, `--set`) and a share
//! of damaged packets and arbitrary fuzz-style inputs. Deterministic: the same inputs on every
//! run (the fuzz target explores beyond them).

mod harness;

use arbitrary::{Arbitrary, Unstructured};
use harness::packets::{Body, Flow, Input, Op, SettingsIn, Spec, Step};

/// xorshift64*.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn byte(&mut self) -> u8 {
        self.next() as u8
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.byte()).collect()
    }

    /// A value of `T` from arbitrary bytes (the fuzz target's own decoding).
    fn arbitrary<T: for<'a> Arbitrary<'a>>(&mut self) -> Option<T> {
        let bytes = self.bytes(64);
        T::arbitrary(&mut Unstructured::new(&bytes)).ok()
    }
}

/// TCP flag sets of real traffic (SYN, SYN+ACK, ACK, PSH+ACK, FIN+ACK, RST, RST+ACK), and
/// sometimes anything.
fn tcp_flags(rng: &mut Rng) -> u8 {
    const COMMON: [u8; 8] = [0x02, 0x12, 0x10, 0x10, 0x18, 0x11, 0x04, 0x14];
    if rng.below(10) == 0 {
        rng.byte() & 0x3f
    } else {
        COMMON[rng.below(8) as usize]
    }
}

fn flow(rng: &mut Rng) -> Flow {
    Flow {
        client: rng.byte() & 0x8f,
        // Mostly services 0..=5; sometimes a VIP port without a service or a stranger.
        service: if rng.below(10) == 0 {
            6 + rng.byte() % 2
        } else {
            rng.byte() % 6
        },
        server: rng.byte() % 4,
        tcp_flags: tcp_flags(rng) | if rng.below(8) == 0 { 0x80 } else { 0 },
        payload: if rng.below(2) == 0 { 0 } else { rng.byte() },
        opt_words: if rng.below(6) == 0 { rng.byte() } else { 0 },
    }
}

/// A flow whose datagrams are cut into fragments: two clients, the TCP and UDP services of
/// both families, a fixed size, so the pieces of one datagram meet.
fn fragment_flow(rng: &mut Rng) -> Flow {
    Flow {
        client: rng.byte() % 2,
        service: [0, 1, 2, 4][rng.below(4) as usize],
        server: 0,
        tcp_flags: [0x02, 0x10][rng.below(2) as usize],
        payload: 200,
        opt_words: 0,
    }
}

fn spec(rng: &mut Rng) -> Spec {
    let body = match rng.below(100) {
        0..=54 => Body::Forward(flow(rng)),
        55..=86 => Body::Reply(flow(rng)),
        87..=89 => Body::IcmpError {
            flow: flow(rng),
            server_side: rng.below(2) == 0,
            quote: rng.byte(),
        },
        // Pieces of a few datagrams (two identifications), both ways, mostly in order.
        90..=94 => Body::Fragment {
            flow: fragment_flow(rng),
            reply: rng.below(3) == 0,
            id: rng.byte() % 2,
            pieces: 0,
            piece: rng.byte() % 3,
            overlap: rng.below(20) == 0,
            hbh: rng.below(2) == 0,
        },
        95 => Body::Ext {
            flow: flow(rng),
            reply: rng.below(2) == 0,
            chain: {
                let n = rng.below(4) as usize;
                rng.bytes(n)
            },
        },
        96 => Body::IcmpOuter {
            flow: flow(rng),
            server_side: rng.below(2) == 0,
            quote: rng.byte(),
            to: rng.byte(),
        },
        _ => rng.arbitrary().unwrap_or(Body::Raw(Vec::new())),
    };
    let damaged = rng.below(25) == 0;
    Spec {
        body,
        damage: if damaged {
            vec![(rng.next() as u16, rng.byte() | 1)]
        } else {
            Vec::new()
        },
        cut: if rng.below(40) == 0 {
            Some(rng.below(80) as u16)
        } else {
            None
        },
    }
}

fn input(rng: &mut Rng) -> Input {
    let settings = SettingsIn {
        conn_reuse_mode: rng.byte(), // reduced to 0..=3 by the harness
        expire_nodest_conn: rng.below(4) != 0,
        expire_quiescent_template: rng.below(2) == 0,
        secure_tcp: if rng.below(4) == 0 { rng.byte() } else { 0 },
        drop_entry: if rng.below(4) == 0 { rng.byte() } else { 0 },
        sloppy_tcp: rng.below(8) == 0,
        defence_fill_percent: rng.byte(),
    };
    let mut ops = Vec::new();
    for _ in 0..(10 + rng.below(50)) {
        ops.push(match rng.below(100) {
            0..=74 => Op::Packets((0..1 + rng.below(24)).map(|_| spec(rng)).collect()),
            75..=91 => Op::Time(match rng.below(3) {
                0 => Step::Millis(rng.next() as u16),
                1 => Step::Secs(rng.byte()),
                _ => Step::Secs(rng.byte() % 8),
            }),
            _ => match rng.arbitrary() {
                Some(op @ Op::Control(_)) => op,
                _ => Op::Time(Step::Millis(rng.next() as u16)),
            },
        });
    }
    Input {
        settings,
        capacity: rng.byte(),
        ops,
    }
}

#[test]
fn fast_path_equals_general_path_on_generated_traffic() {
    let mut rng = Rng(0x5eed_fa57_9a7e_0001);
    let inputs = if cfg!(debug_assertions) { 400 } else { 2_000 };
    let mut later_fragments = 0;
    for _ in 0..inputs {
        later_fragments += harness::packets::run_input(&input(&mut rng)).fragments_forwarded;
    }
    // The generated traffic reaches the later-fragment path, not only its drops.
    assert!(
        later_fragments > 100,
        "{later_fragments} later fragments forwarded"
    );
}

#[test]
fn fast_path_equals_general_path_on_fuzz_style_inputs() {
    let mut rng = Rng(0x5eed_fa57_9a7e_0002);
    for _ in 0..300 {
        let len = 256 + rng.below(3_840) as usize;
        harness::packets::run(&rng.bytes(len));
    }
}
