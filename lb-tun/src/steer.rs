//! Steering: which queue of a multi-queue TUN device a connection's packets arrive on, balanced
//! by load (`--queues` above 1; `--no-steer` turns it off).
//!
//! The kernel picks the queue a packet routed into the device is read from (`tun.c`,
//! automatic queue selection): the queue that last *wrote* a packet of the same flow (its
//! flow table, keyed by the symmetric hash of the addresses and ports, entries dropped after
//! ~3 s idle), else a hash of the flow. Left alone, a few large flows land on the queues by
//! that hash: four iperf3 streams over two queues all meet on one in one run out of eight,
//! and that run moves about what one queue moves (BENCHMARKS.md, "Steering").
//!
//! lb-tun moves connections by the kernel's own rule. A connection's client side (address and
//! port) falls into one of [`BUCKETS`] buckets by a keyed hash ([`client_buckets`]). The
//! gateway tags each packet the balancer forwards with its client's bucket (the source of a
//! packet to a real server, the destination of a reply: `SteerTag`, from the verdict). A
//! bucket is either left where the kernel puts it, and its packets are written on the queue
//! that read them (the thread's own: a connection then stays on the queue its first packet
//! came in on, both ways, with no hand-over), or *pinned* to a queue, and its packets are
//! written there: for a NAT connection that moves both directions, since the client's packets
//! (client ↔ VIP) come in where the un-NATed replies, of that tuple, were written, and the
//! server's replies (client ↔ server) where the client's NATed packets were. Only the
//! rebalancing pins buckets, and it unpins one that fell idle.
//!
//! A connection whose replies do not come back through lb-tun (a one-way UDP stream, a tunnel
//! or direct-routing server answering the client itself) cannot be moved: the kernel never sees
//! lb-tun write the tuple its packets arrive with. So only the buckets that had at least
//! [`MIN_REPLIES`] replies written in the round may move.
//!
//! The reading thread counts what each bucket cost it ([`Steering::count`]: a packet's bytes
//! plus [`PACKET_WEIGHT`] for its two system calls). Every [`REBALANCE_EVERY`] the main loop
//! takes each bucket to be on its pinned queue, else on the queue that read most of it, and
//! pins buckets from the busiest queue to the idlest ([`plan`], over loads smoothed across
//! rounds) when the busiest carries a quarter more than its share and a move makes the pair
//! more even. A moved bucket stays put for [`COOL_ROUNDS`] rounds, and is unpinned once its
//! load falls under [`IDLE_LOAD`]. A connection that moves may have a few packets still
//! waiting on its old queue, read by the old thread while the new one reads the newer ones: a
//! one-time reordering of at most a burst, which TCP absorbs (counted moves:
//! `tun.steer_moves`).

use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::time::Duration;

use crate::tun::SteerTag;

/// Buckets connections fall into by their client's address and port.
pub const BUCKETS: usize = 256;

/// What a packet costs beyond its bytes, in bytes: its read and its write (~3.7 µs of system
/// calls for a small packet on the bare TUN forwarder, against ~0.45 ns a byte copied for a
/// 64 KB segment: BENCHMARKS.md).
pub const PACKET_WEIGHT: u64 = 8192;

/// How often the main loop looks at the buckets' loads.
pub const REBALANCE_EVERY: Duration = Duration::from_millis(100);

/// Rounds a moved bucket stays on its new queue before it may move again (3 s).
pub const COOL_ROUNDS: u8 = 30;

/// Below this much load in a round (bytes and packet weights, all queues, smoothed), nothing
/// moves: the queues keep up whatever the placement.
pub const MIN_ROUND_LOAD: u64 = 4 << 20;

/// A bucket's load is smoothed over rounds, each new round weighing 1/`SMOOTHING` (a few
/// hundred milliseconds): TCP's own swings between rounds move nothing.
pub const SMOOTHING: u64 = 4;

/// Moves at most per round.
pub const MAX_MOVES: usize = 4;

/// Replies written in a bucket in a round for it to be movable (a TCP connection's: hundreds).
pub const MIN_REPLIES: u64 = 16;

/// A pinned bucket whose smoothed load falls under this (bytes and packet weights a round:
/// ~5 Mbit/s) is unpinned: its connections go back to where the kernel puts them.
pub const IDLE_LOAD: u64 = 64 << 10;

/// An unpinned bucket's owner.
const NATURAL: u16 = u16::MAX;

/// The buckets of the two ends of IP packet `pkt` under `key`: `(source's, destination's)`,
/// each a keyed hash of the end's address and port; `None` for anything that is not an IPv4 or
/// IPv6 packet. Ports count for TCP and UDP, not in fragments or behind IPv6 extension headers
/// (port 0 there).
pub fn client_buckets(key: u64, pkt: &[u8]) -> Option<(u8, u8)> {
    let (proto, a, b, ports) = match pkt.first()? >> 4 {
        4 if pkt.len() >= 20 => {
            let ihl = usize::from(pkt[0] & 0x0f) * 4;
            let frag = u16::from_be_bytes([pkt[6], pkt[7]]) & 0x3fff != 0;
            let a = u64::from(u32::from_be_bytes([pkt[12], pkt[13], pkt[14], pkt[15]]));
            let b = u64::from(u32::from_be_bytes([pkt[16], pkt[17], pkt[18], pkt[19]]));
            (
                pkt[9],
                a,
                b,
                (!frag).then(|| pkt.get(ihl..ihl + 4)).flatten(),
            )
        }
        6 if pkt.len() >= 40 => {
            let fold = |s: &[u8]| {
                let w = |i: usize| u64::from_be_bytes(s[i..i + 8].try_into().unwrap_or([0; 8]));
                w(0) ^ w(8).rotate_left(32)
            };
            (
                pkt[6],
                fold(&pkt[8..24]),
                fold(&pkt[24..40]),
                pkt.get(40..44),
            )
        }
        _ => return None,
    };
    let (pa, pb) = match (proto, ports) {
        (6 | 17, Some(p)) => (
            u64::from(u16::from_be_bytes([p[0], p[1]])),
            u64::from(u16::from_be_bytes([p[2], p[3]])),
        ),
        _ => (0, 0),
    };
    let end = |addr: u64, port: u64| (mix(addr.rotate_left(16) ^ port ^ key) >> 56) as u8;
    Some((end(a, pa), end(b, pb)))
}

/// Murmur3's 64-bit finaliser: every input bit moves every output bit.
fn mix(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^ (x >> 33)
}

/// The buckets' owners and what each queue's thread read of each bucket, shared by the queue
/// threads (lock-free: each counter has one writer, the owners are read and written whole).
#[derive(Debug)]
pub struct Steering {
    key: u64,
    /// Each bucket's pinned queue, or [`NATURAL`].
    pinned: [AtomicU16; BUCKETS],
    /// Per queue: load per bucket since the start (bytes + [`PACKET_WEIGHT`] a packet).
    load: Box<[[AtomicU64; BUCKETS]]>,
    /// Per queue: replies written per bucket since the start (movable buckets).
    replies: Box<[[AtomicU64; BUCKETS]]>,
    moves: AtomicU64,
}

fn rows(queues: usize) -> Box<[[AtomicU64; BUCKETS]]> {
    (0..queues)
        .map(|_| std::array::from_fn(|_| AtomicU64::new(0)))
        .collect()
}

impl Steering {
    /// Steering over `queues` queues (at most 256) with hash key `key` (random: clients nobody
    /// can aim at one bucket); no bucket pinned.
    pub fn new(queues: usize, key: u64) -> Self {
        let queues = queues.clamp(1, 256);
        Steering {
            key,
            pinned: std::array::from_fn(|_| AtomicU16::new(NATURAL)),
            load: rows(queues),
            replies: rows(queues),
            moves: AtomicU64::new(0),
        }
    }

    /// Every bucket pinned to queue `q` (a test aid, lb-tun's hidden `--steer-start-queue`:
    /// all connections meet on one queue and the rebalancing must spread them; these pins are
    /// never dropped for idleness, only moved).
    pub fn all_on(self, q: usize) -> Self {
        let q = q.min(self.queues() - 1) as u16;
        for o in &self.pinned {
            o.store(q, Ordering::Relaxed);
        }
        self
    }

    /// The hash key (for the gateway's tags: [`client_buckets`]).
    pub fn key(&self) -> u64 {
        self.key
    }

    /// The queues steered.
    pub fn queues(&self) -> usize {
        self.load.len()
    }

    /// The queue bucket `b` is pinned to, if it is.
    pub fn pinned(&self, b: u8) -> Option<usize> {
        match self.pinned[usize::from(b)].load(Ordering::Relaxed) {
            NATURAL => None,
            q => Some(usize::from(q)),
        }
    }

    /// Counts a packet of `len` bytes tagged `tag` as read by queue `me` and written now, and
    /// returns the queue to write it on: its bucket's pinned queue, else `me`. Only queue
    /// `me`'s thread may call it (one writer per counter).
    pub fn count(&self, me: usize, tag: SteerTag, len: usize) -> usize {
        let b = usize::from(tag.bucket);
        if let (Some(load), Some(replies)) = (self.load.get(me), self.replies.get(me)) {
            let c = &load[b];
            c.store(
                c.load(Ordering::Relaxed) + len as u64 + PACKET_WEIGHT,
                Ordering::Relaxed,
            );
            if tag.reply {
                let r = &replies[b];
                r.store(r.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
            }
        }
        self.pinned(tag.bucket).unwrap_or(me)
    }

    /// Buckets moved so far.
    pub fn moves(&self) -> u64 {
        self.moves.load(Ordering::Relaxed)
    }

    /// One round of rebalancing (the main loop, every [`REBALANCE_EVERY`]): the load each
    /// bucket took since the last round, smoothed ([`SMOOTHING`]), each bucket on its pinned
    /// queue or the one that read most of it, the pins [`plan`] makes of it among the buckets
    /// with replies, and the pins of idle buckets it moved dropped. Returns the buckets moved.
    pub fn rebalance(&self, state: &mut Rebalancer) -> usize {
        let queues = self.queues();
        if state.seen.len() < queues {
            state.seen.resize(queues, [0; BUCKETS]);
        }
        let mut movable = [false; BUCKETS];
        let mut owner = [0u8; BUCKETS];
        for b in 0..BUCKETS {
            let mut total = 0u64;
            let mut most = (0u64, state.natural[b]);
            for (q, row) in self.load.iter().enumerate() {
                let now = row[b].load(Ordering::Relaxed);
                let round = now.wrapping_sub(state.seen[q][b]);
                state.seen[q][b] = now;
                total += round;
                if round > most.0 {
                    most = (round, q as u8);
                }
            }
            state.natural[b] = most.1;
            let s = &mut state.smooth[b];
            *s = *s - *s / SMOOTHING + total / SMOOTHING;
            let replies: u64 = self
                .replies
                .iter()
                .map(|row| row[b].load(Ordering::Relaxed))
                .sum();
            movable[b] = replies.wrapping_sub(state.seen_replies[b]) >= MIN_REPLIES;
            state.seen_replies[b] = replies;
            owner[b] = match self.pinned(b as u8) {
                Some(q) => q as u8,
                None => state.natural[b],
            };
        }
        let before = owner;
        let moved = plan(
            &mut owner,
            &state.smooth,
            &movable,
            queues,
            &mut state.cooling,
        );
        for b in 0..BUCKETS {
            if owner[b] != before[b] {
                self.pinned[b].store(u16::from(owner[b]), Ordering::Relaxed);
                state.moved[b] = true;
                log::debug!(
                    "steering: bucket {b} ({} KB a round) pinned to queue {} (was on {})",
                    state.smooth[b] >> 10,
                    owner[b],
                    before[b]
                );
            } else if state.moved[b] && state.cooling[b] == 0 && state.smooth[b] < IDLE_LOAD {
                self.pinned[b].store(NATURAL, Ordering::Relaxed);
                state.moved[b] = false;
            }
        }
        if moved > 0 {
            self.moves.fetch_add(moved as u64, Ordering::Relaxed);
        }
        moved
    }
}

/// The main loop's side of [`Steering::rebalance`]: the totals (load per queue, replies) seen
/// at the last round, each bucket's smoothed load and the queue that last read most of it, the
/// buckets still cooling after a move and those whose pin a move made.
#[derive(Debug, Clone)]
pub struct Rebalancer {
    seen: Vec<[u64; BUCKETS]>,
    seen_replies: [u64; BUCKETS],
    smooth: [u64; BUCKETS],
    natural: [u8; BUCKETS],
    cooling: [u8; BUCKETS],
    moved: [bool; BUCKETS],
}

impl Default for Rebalancer {
    fn default() -> Self {
        Rebalancer {
            seen: Vec::new(),
            seen_replies: [0; BUCKETS],
            smooth: [0; BUCKETS],
            natural: [0; BUCKETS],
            cooling: [0; BUCKETS],
            moved: [false; BUCKETS],
        }
    }
}

/// Moves buckets between `queues` queues given each bucket's queue (`owner`) and `load` in the
/// last round, rewriting `owner`; returns how many moved. Only `movable` buckets move (their
/// load counts all the same). Each move takes a bucket of the busiest queue to the idlest, the
/// one that leaves the two closest to even, and only while the busiest carries more than 1/4
/// above its fair share and the move lowers it (a bucket lighter than the gap between the two). Nothing moves in a round lighter than [`MIN_ROUND_LOAD`]; a
/// bucket moved waits [`COOL_ROUNDS`] rounds (`cooling`) before it moves again.
pub fn plan(
    owner: &mut [u8; BUCKETS],
    load: &[u64; BUCKETS],
    movable: &[bool; BUCKETS],
    queues: usize,
    cooling: &mut [u8; BUCKETS],
) -> usize {
    for c in cooling.iter_mut() {
        *c = c.saturating_sub(1);
    }
    if queues < 2 {
        return 0;
    }
    let mut per_queue = vec![0u64; queues];
    for (&o, &l) in owner.iter().zip(load) {
        if let Some(q) = per_queue.get_mut(usize::from(o)) {
            *q += l;
        }
    }
    let total: u64 = per_queue.iter().sum();
    if total < MIN_ROUND_LOAD {
        return 0;
    }
    let fair = total / queues as u64;
    let mut moved = 0;
    while moved < MAX_MOVES {
        let (busiest, &high) = per_queue
            .iter()
            .enumerate()
            .max_by_key(|&(_, l)| *l)
            .unwrap_or((0, &0));
        let (idlest, &low) = per_queue
            .iter()
            .enumerate()
            .min_by_key(|&(_, l)| *l)
            .unwrap_or((0, &0));
        if high.saturating_sub(fair) <= fair / 4 {
            break;
        }
        let gap = high - low;
        let best = (0..BUCKETS)
            .filter(|&b| {
                usize::from(owner[b]) == busiest
                    && movable[b]
                    && cooling[b] == 0
                    && load[b] > 0
                    && load[b] < gap
            })
            .max_by_key(|&b| load[b].min(gap - load[b]));
        let Some(b) = best else {
            break;
        };
        owner[b] = idlest as u8;
        cooling[b] = COOL_ROUNDS;
        per_queue[busiest] -= load[b];
        per_queue[idlest] += load[b];
        moved += 1;
    }
    moved
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::FakeIo;
    use crate::tun::PacketRing;

    const ALL: [bool; BUCKETS] = [true; BUCKETS];

    /// An IPv4 TCP or UDP packet from `src:sport` to `dst:dport`.
    fn v4(proto: u8, src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16) -> Vec<u8> {
        let mut p = vec![0u8; 40];
        p[0] = 0x45;
        p[9] = proto;
        p[12..16].copy_from_slice(&src);
        p[16..20].copy_from_slice(&dst);
        p[20..22].copy_from_slice(&sport.to_be_bytes());
        p[22..24].copy_from_slice(&dport.to_be_bytes());
        p
    }

    fn v6(proto: u8, src: u128, sport: u16, dst: u128, dport: u16) -> Vec<u8> {
        let mut p = vec![0u8; 60];
        p[0] = 0x60;
        p[6] = proto;
        p[8..24].copy_from_slice(&src.to_be_bytes());
        p[24..40].copy_from_slice(&dst.to_be_bytes());
        p[40..42].copy_from_slice(&sport.to_be_bytes());
        p[42..44].copy_from_slice(&dport.to_be_bytes());
        p
    }

    #[test]
    fn the_client_has_one_bucket_as_source_and_as_destination() {
        let key = 0x1234_5678_9abc_def0;
        for proto in [6, 17] {
            // Client → VIP, and the real server's reply to the client.
            let fwd = v4(proto, [10, 0, 0, 1], 40000, [10, 30, 0, 10], 80);
            let rep = v4(proto, [10, 20, 1, 2], 8080, [10, 0, 0, 1], 40000);
            assert_eq!(
                client_buckets(key, &fwd).unwrap().0,
                client_buckets(key, &rep).unwrap().1
            );
            let fwd = v6(proto, 1, 40000, 2 << 64 | 7, 443);
            let rep = v6(proto, 3 << 64 | 9, 8443, 1, 40000);
            assert_eq!(
                client_buckets(key, &fwd).unwrap().0,
                client_buckets(key, &rep).unwrap().1
            );
        }
    }

    #[test]
    fn buckets_depend_on_port_address_and_key() {
        let key = 99;
        let of = |p: &[u8]| client_buckets(key, p).unwrap().0;
        let ports: std::collections::HashSet<_> = (0..64u16)
            .map(|i| of(&v4(6, [10, 0, 0, 1], 40000 + i, [10, 0, 0, 2], 80)))
            .collect();
        assert!(
            ports.len() > 40,
            "64 client ports fell into {} buckets",
            ports.len()
        );
        let addrs: std::collections::HashSet<_> = (0..64u8)
            .map(|i| of(&v4(6, [10, 0, 1, i], 40000, [10, 0, 0, 2], 80)))
            .collect();
        assert!(
            addrs.len() > 40,
            "64 clients fell into {} buckets",
            addrs.len()
        );
        let p = v4(6, [10, 0, 0, 1], 40000, [10, 0, 0, 2], 80);
        let keys: std::collections::HashSet<_> = (0..32u64)
            .map(|k| client_buckets(k, &p).unwrap().0)
            .collect();
        assert!(keys.len() > 16, "the key changes the bucket");
    }

    #[test]
    fn fragments_and_foreign_packets() {
        let key = 5;
        let mut first = v4(17, [10, 0, 0, 1], 1000, [10, 0, 0, 2], 53);
        first[6] = 0x20; // more fragments
        let mut later = v4(17, [10, 0, 0, 1], 0, [10, 0, 0, 2], 0);
        later[7] = 0x10; // offset 16 × 8
        assert_eq!(client_buckets(key, &first), client_buckets(key, &later));
        assert_eq!(client_buckets(key, &[]), None);
        assert_eq!(client_buckets(key, &[0x45; 19]), None);
        assert_eq!(client_buckets(key, &[0x60; 39]), None);
        assert_eq!(client_buckets(key, &[0x00; 60]), None);
        // A header claiming more than the packet holds: no ports, still buckets.
        let mut short = v4(6, [10, 0, 0, 1], 1, [10, 0, 0, 2], 2);
        short[0] = 0x4f;
        short.truncate(24);
        assert!(client_buckets(key, &short).is_some());
    }

    /// Rounds of `per` packets of `len` bytes for each of `tags`, each read by its bucket's
    /// pinned queue, else by queue `kernel(bucket)` (the kernel's own placement), and written
    /// on the queue steering names (checked: the pinned one, else the reader's); the rounds
    /// at which buckets moved.
    fn rounds(
        s: &Steering,
        state: &mut Rebalancer,
        tags: &[SteerTag],
        kernel: impl Fn(u8) -> usize,
        (per, len, n): (usize, usize, usize),
    ) -> Vec<usize> {
        let mut moved_at = Vec::new();
        for round in 0..n {
            for t in tags {
                for _ in 0..per {
                    let q = s.pinned(t.bucket).unwrap_or_else(|| kernel(t.bucket));
                    assert_eq!(s.count(q, *t, len), q);
                }
            }
            if s.rebalance(state) > 0 {
                moved_at.push(round);
            }
        }
        moved_at
    }

    fn both_ways(buckets: &[u8]) -> Vec<SteerTag> {
        buckets
            .iter()
            .flat_map(|&bucket| {
                [
                    SteerTag {
                        bucket,
                        reply: false,
                    },
                    SteerTag {
                        bucket,
                        reply: true,
                    },
                ]
            })
            .collect()
    }

    #[test]
    fn a_connection_without_replies_does_not_move() {
        // Four one-way streams (UDP to the VIP) the kernel put on queue 0; a reply now and
        // then (iperf3's first datagram back) does not make them movable.
        let s = Steering::new(2, 7);
        let one_way: Vec<SteerTag> = (0..4)
            .map(|b| SteerTag {
                bucket: b * 40,
                reply: false,
            })
            .collect();
        let mut state = Rebalancer::default();
        for _ in 0..20 {
            for t in &one_way {
                for _ in 0..100 {
                    assert_eq!(s.count(0, *t, 1400), 0);
                }
            }
            let reply = SteerTag {
                bucket: 0,
                reply: true,
            };
            s.count(0, reply, 60);
            assert_eq!(s.rebalance(&mut state), 0);
        }
        assert_eq!(s.moves(), 0);
        // The same streams with replies: two of them are pinned to queue 1.
        let both = both_ways(&[0, 40, 80, 120]);
        assert_eq!(
            rounds(&s, &mut state, &both, |_| 0, (50, 4000, 20)).len(),
            1
        );
        assert_eq!(s.moves(), 2);
        let pins: Vec<_> = (0..4).filter_map(|b| s.pinned(b * 40)).collect();
        assert_eq!(pins, [1, 1]);
    }

    #[test]
    fn connections_the_kernel_put_on_one_queue_spread_and_idle_pins_go() {
        assert!((0..=255).all(|b| Steering::new(2, 42).pinned(b).is_none()));
        let all = Steering::new(3, 42).all_on(7);
        assert!((0..=255).all(|b| all.pinned(b) == Some(2)));
        // Four connections the kernel put on queue 0: data to the server, acks back.
        let s = Steering::new(2, 42);
        let mut state = Rebalancer::default();
        let tags = both_ways(&[3, 50, 77, 200]);
        // Smoothed, the load passes the floor in the second round; two pins even the queues
        // and nothing moves again.
        assert_eq!(rounds(&s, &mut state, &tags, |_| 0, (20, 60000, 30)), [1]);
        assert_eq!(s.moves(), 2);
        let pinned: Vec<u8> = [3, 50, 77, 200]
            .into_iter()
            .filter(|&b| s.pinned(b).is_some())
            .collect();
        assert_eq!(pinned.len(), 2);
        assert!(pinned.iter().all(|&b| s.pinned(b) == Some(1)));
        // Balanced by the kernel already (two on each queue): nothing is pinned.
        let s2 = Steering::new(2, 42);
        let mut state2 = Rebalancer::default();
        let kernel = |b: u8| usize::from(b == 50 || b == 200);
        assert_eq!(rounds(&s2, &mut state2, &tags, kernel, (20, 60000, 30)), []);
        // The connections end: once idle, the pins are dropped.
        assert_eq!(rounds(&s, &mut state, &[], |_| 0, (0, 0, 30)), []);
        assert!(pinned.iter().all(|&b| s.pinned(b).is_none()));
        // The test aid's pins stay, idle or not.
        let all = Steering::new(2, 42).all_on(0);
        assert_eq!(
            rounds(&all, &mut Rebalancer::default(), &[], |_| 1, (0, 0, 40)),
            []
        );
        assert!((0..=255).all(|b| all.pinned(b) == Some(0)));
    }

    #[test]
    fn flush_writes_each_tagged_packet_on_its_pinned_queue_and_the_rest_on_its_own() {
        let s = Steering::new(2, 1);
        let pinned = Steering::new(2, 1).all_on(1);
        let queues = [FakeIo::with(&[]), FakeIo::with(&[])];
        let mut ring = PacketRing::new(8, 64);
        for st in [&s, &pinned] {
            let io = FakeIo::with(&[vec![0x45; 40], vec![0x46; 40], vec![0x47; 40]]);
            ring.fill(&io).unwrap();
            for (i, slot) in ring.slots_mut().enumerate() {
                if i != 1 {
                    *slot.steer = Some(SteerTag {
                        bucket: 9,
                        reply: i == 2,
                    });
                }
            }
            ring.flush_to(|tag, len| match tag {
                Some(t) => &queues[st.count(0, t, len)],
                None => &queues[0],
            });
        }
        // Unpinned: all three on the reader's queue (0); pinned to 1: the two tagged there.
        assert_eq!(queues[0].outbox.borrow().len(), 4);
        assert_eq!(queues[1].outbox.borrow().len(), 2);
        assert_eq!(queues[0].outbox.borrow()[3][0], 0x46);
        // A fill clears the tags.
        ring.fill(&FakeIo::with(&[vec![0x45; 40]])).unwrap();
        assert!(ring.slots_mut().all(|slot| slot.steer.is_none()));
    }

    #[test]
    fn four_flows_on_one_queue_end_two_and_two() {
        let mut owner = [0u8; BUCKETS];
        let mut load = [0u64; BUCKETS];
        for b in [3, 50, 77, 200] {
            load[b] = 100 << 20;
        }
        load[9] = 1 << 10; // a light flow
        let mut cooling = [0; BUCKETS];
        let moved = plan(&mut owner, &load, &ALL, 2, &mut cooling);
        assert_eq!(moved, 2);
        let on = |q: u8| [3, 50, 77, 200].iter().filter(|&&b| owner[b] == q).count();
        assert_eq!((on(0), on(1)), (2, 2));
        // Balanced now: the next round moves nothing, cooling or not.
        assert_eq!(plan(&mut owner, &load, &ALL, 2, &mut cooling), 0);
        cooling = [0; BUCKETS];
        assert_eq!(plan(&mut owner, &load, &ALL, 2, &mut cooling), 0);
    }

    #[test]
    fn three_to_one_becomes_two_and_two_and_odd_counts_stay() {
        let mut owner = [0u8; BUCKETS];
        let mut load = [0u64; BUCKETS];
        for b in [1, 2, 3] {
            load[b] = 10 << 20;
        }
        load[4] = 10 << 20;
        owner[4] = 1;
        let mut cooling = [0; BUCKETS];
        assert_eq!(plan(&mut owner, &load, &ALL, 2, &mut cooling), 1);
        assert_eq!(owner[1..5].iter().filter(|&&q| q == 1).count(), 2);
        // Three equal flows on two queues: 2 + 1 is the best there is; moving one of the
        // two would only swap the sides.
        load[4] = 0;
        let mut owner = [0u8; BUCKETS];
        owner[3] = 1;
        let mut cooling = [0; BUCKETS];
        assert_eq!(plan(&mut owner, &load, &ALL, 2, &mut cooling), 0);
    }

    #[test]
    fn small_imbalance_light_load_cooling_and_one_queue_move_nothing() {
        let mut cooling = [0; BUCKETS];
        // 62 % against 38 %: within 1/4 of the fair share.
        let mut owner = [0u8; BUCKETS];
        owner[2] = 1;
        let mut load = [0u64; BUCKETS];
        load[1] = 62 << 20;
        load[2] = 38 << 20;
        assert_eq!(plan(&mut owner, &load, &ALL, 2, &mut cooling), 0);
        // Everything on one queue, but too little to matter.
        let mut load = [0u64; BUCKETS];
        load[1] = 1 << 20;
        load[3] = 1 << 20;
        let mut owner = [0u8; BUCKETS];
        assert_eq!(plan(&mut owner, &load, &ALL, 2, &mut cooling), 0);
        // A bucket moved cools down before it moves again.
        let mut load = [0u64; BUCKETS];
        load[1] = 100 << 20;
        load[3] = 100 << 20;
        assert_eq!(plan(&mut owner, &load, &ALL, 2, &mut cooling), 1);
        let moved = (0..BUCKETS).find(|&b| owner[b] == 1).unwrap();
        let stayed = if moved == 1 { 3 } else { 1 };
        // The load turns round: the moved bucket is idle, the other doubles on queue 0 — now
        // queue 0 is busiest but its one bucket is the whole gap, and the moved one cools.
        load[moved] = 0;
        load[stayed] = 300 << 20;
        load[7] = 100 << 20;
        owner[7] = 1;
        let before = owner;
        assert_eq!(plan(&mut owner, &load, &ALL, 2, &mut cooling), 0);
        assert_eq!(owner, before);
        // Two heavy buckets on queue 1, one moved there a round ago (cooling): only the other
        // may come back.
        let mut owner = [0u8; BUCKETS];
        let mut load = [0u64; BUCKETS];
        let mut cooling = [0; BUCKETS];
        owner[10] = 1;
        owner[11] = 1;
        load[10] = 100 << 20;
        load[11] = 100 << 20;
        cooling[10] = 3;
        assert_eq!(plan(&mut owner, &load, &ALL, 2, &mut cooling), 1);
        assert_eq!((owner[10], owner[11]), (1, 0));
        // One queue: nothing to balance.
        let mut owner = [0u8; BUCKETS];
        assert_eq!(plan(&mut owner, &load, &ALL, 1, &mut cooling), 0);
    }
}
