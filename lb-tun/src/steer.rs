//! Steering: which queue of a multi-queue TUN device a flow's packets arrive on, balanced by
//! load (`--queues` above 1; `--no-rebalance` turns it off).
//!
//! The kernel picks the queue a packet routed into the device is read from (`tun.c`,
//! automatic queue selection): the queue that last *wrote* a packet of the same flow (its
//! flow table, keyed by the symmetric hash of the addresses and ports, entries dropped after
//! ~3 s idle), else a hash of the flow. Left alone, a few large flows land on the queues by
//! that hash: four iperf3 streams over two queues all meet on one in one run out of eight
//! (and three to one in half of them), and that run moves about what one queue moves
//! (BENCHMARKS.md, "Steering").
//!
//! lb-tun uses the kernel's own rule to place flows. Flows fall into [`BUCKETS`] buckets by a
//! keyed hash of their unordered addresses and ports ([`flow_bucket`]), and each bucket has an
//! owner queue. Every packet lb-tun writes goes out on the owner of *its* bucket: the packets
//! that come back the other way on that flow are the ones the kernel then hands to that queue.
//! For a NAT connection the two directions are two flows (client ↔ VIP comes in, client ↔
//! server goes out): the client's data arrives on the queue that wrote the un-NATed replies
//! (client ↔ VIP), the replies on the queue that wrote the data. A direct-routing packet leaves
//! with the tuple it came with, so it steers its own flow. Tunnelled packets leave inside an
//! outer header, so their flows stay where the kernel's hash put them.
//!
//! A flow only ever read, never written back the other way (a one-way UDP stream: its
//! packets leave NATed, a different flow), cannot be moved: the kernel never sees lb-tun write
//! its tuple (or only once, its first reply, an entry the kernel forgets after 3 s). So only
//! the buckets at least [`MIN_WRITES`] packets were written in during the round may move.
//!
//! The reading thread counts what each bucket cost it ([`Steering::account`]: a packet's bytes
//! plus [`PACKET_WEIGHT`] for its two system calls), and the main loop moves buckets from the
//! busiest queue to the idlest every [`REBALANCE_EVERY`] ([`plan`]), when the busiest carries
//! clearly more than its share and a move makes the pair more even. A moved bucket stays put
//! for [`COOL_ROUNDS`] rounds. A flow that moves may have a few packets still waiting on its old
//! queue, read by the old thread while the new one reads the newer ones: a one-time reordering
//! of at most a burst, which TCP absorbs (counted moves: `tun.steer_moves`).

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::time::Duration;

use crate::tun::PacketRing;

/// Buckets flows fall into; each has an owner queue.
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

/// Packets written in a bucket in a round for it to be movable (a TCP flow's replies: hundreds).
pub const MIN_WRITES: u64 = 16;

/// The bucket of the flow of IP packet `pkt` under `key`: the same for both directions of a
/// flow (the addresses and ports unordered, as the kernel's symmetric flow hash); `None` for
/// anything that is not an IPv4 or IPv6 packet (it leaves on the queue that read it). Ports
/// count for TCP and UDP, not in fragments or behind IPv6 extension headers.
pub fn flow_bucket(key: u64, pkt: &[u8]) -> Option<usize> {
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
    let end = |addr: u64, port: u64| mix(addr.rotate_left(16) ^ port ^ key);
    let sym = end(a, pa).wrapping_add(end(b, pb));
    Some((mix(sym ^ u64::from(proto)) >> 56) as usize)
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
    owner: [AtomicU8; BUCKETS],
    /// Per queue: load read per bucket since the start (bytes + [`PACKET_WEIGHT`] each).
    load: Box<[[AtomicU64; BUCKETS]]>,
    /// Per queue: packets written per bucket since the start. The kernel's flow table follows
    /// the buckets written in, so only they can move.
    written: Box<[[AtomicU64; BUCKETS]]>,
    moves: AtomicU64,
}

impl Steering {
    /// Steering over `queues` queues (at most 256) with hash key `key` (random: flows nobody
    /// can aim at one bucket); bucket `b` starts on queue `b % queues`.
    pub fn new(queues: usize, key: u64) -> Self {
        let queues = queues.clamp(1, 256);
        Steering {
            key,
            owner: std::array::from_fn(|b| AtomicU8::new((b % queues) as u8)),
            load: (0..queues)
                .map(|_| std::array::from_fn(|_| AtomicU64::new(0)))
                .collect(),
            written: (0..queues)
                .map(|_| std::array::from_fn(|_| AtomicU64::new(0)))
                .collect(),
            moves: AtomicU64::new(0),
        }
    }

    /// Every bucket starts on queue `q` instead (a test aid, lb-tun's hidden
    /// `--steer-start-queue`: all flows meet on one queue and the rebalancing must spread them).
    pub fn all_on(self, q: usize) -> Self {
        let q = q.min(self.queues() - 1) as u8;
        for o in &self.owner {
            o.store(q, Ordering::Relaxed);
        }
        self
    }

    /// The queues steered.
    pub fn queues(&self) -> usize {
        self.load.len()
    }

    /// The queue packet `pkt`, about to be written by queue `me`'s thread, should leave on:
    /// its bucket's owner, or `me` for a packet without a bucket. Only queue `me`'s thread may
    /// call it (it counts the write: one writer per counter).
    pub fn queue_for(&self, pkt: &[u8], me: usize) -> usize {
        match flow_bucket(self.key, pkt) {
            Some(b) => {
                if let Some(row) = self.written.get(me) {
                    let c = &row[b];
                    c.store(c.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
                }
                usize::from(self.owner[b].load(Ordering::Relaxed))
            }
            None => me,
        }
    }

    /// Counts the packets `ring` holds (just read, not yet rewritten) as queue `me`'s load.
    /// Only queue `me`'s thread may call it (one writer per counter).
    pub fn account(&self, me: usize, ring: &PacketRing) {
        let Some(row) = self.load.get(me) else {
            return;
        };
        for i in 0..ring.len() {
            let pkt = ring.packet(i);
            if let Some(b) = flow_bucket(self.key, pkt) {
                let c = &row[b];
                c.store(
                    c.load(Ordering::Relaxed) + pkt.len() as u64 + PACKET_WEIGHT,
                    Ordering::Relaxed,
                );
            }
        }
    }

    /// Buckets moved so far.
    pub fn moves(&self) -> u64 {
        self.moves.load(Ordering::Relaxed)
    }

    /// The queue that owns bucket `b` now.
    pub fn owner(&self, b: usize) -> usize {
        usize::from(self.owner[b % BUCKETS].load(Ordering::Relaxed))
    }

    /// One round of rebalancing (the main loop, every [`REBALANCE_EVERY`]): the load each
    /// bucket took since the last round, smoothed ([`SMOOTHING`]), and the moves [`plan`]
    /// makes of it.
    pub fn rebalance(&self, state: &mut Rebalancer) -> usize {
        for b in 0..BUCKETS {
            let total: u64 = self
                .load
                .iter()
                .map(|row| row[b].load(Ordering::Relaxed))
                .sum();
            let round = total.wrapping_sub(state.seen[b]);
            state.seen[b] = total;
            let s = &mut state.smooth[b];
            *s = *s - *s / SMOOTHING + round / SMOOTHING;
        }
        let mut owner: [u8; BUCKETS] =
            std::array::from_fn(|b| self.owner[b].load(Ordering::Relaxed));
        let movable: [bool; BUCKETS] = std::array::from_fn(|b| {
            let total: u64 = self
                .written
                .iter()
                .map(|row| row[b].load(Ordering::Relaxed))
                .sum();
            let round = total.wrapping_sub(state.seen_written[b]);
            state.seen_written[b] = total;
            round >= MIN_WRITES
        });
        let moved = plan(
            &mut owner,
            &state.smooth,
            &movable,
            self.queues(),
            &mut state.cooling,
        );
        if moved > 0 {
            for (b, (o, new)) in self.owner.iter().zip(owner).enumerate() {
                let old = o.swap(new, Ordering::Relaxed);
                if old != new {
                    log::debug!(
                        "steering: bucket {b} ({} KB a round) moved from queue {old} to {new}",
                        state.smooth[b] >> 10
                    );
                }
            }
            self.moves.fetch_add(moved as u64, Ordering::Relaxed);
        }
        moved
    }
}

/// The main loop's side of [`Steering::rebalance`]: the totals (load, writes) seen at the last
/// round, each bucket's smoothed load, and the buckets still cooling after a move.
#[derive(Debug, Clone)]
pub struct Rebalancer {
    seen: [u64; BUCKETS],
    seen_written: [u64; BUCKETS],
    smooth: [u64; BUCKETS],
    cooling: [u8; BUCKETS],
}

impl Default for Rebalancer {
    fn default() -> Self {
        Rebalancer {
            seen: [0; BUCKETS],
            seen_written: [0; BUCKETS],
            smooth: [0; BUCKETS],
            cooling: [0; BUCKETS],
        }
    }
}

/// Moves buckets between `queues` queues given each bucket's `load` in the last round,
/// rewriting `owner`; returns how many moved. Only `movable` buckets move (their load counts
/// all the same). Each move takes a bucket of the busiest queue
/// to the idlest, the one that leaves the two closest to even, and only while the busiest
/// carries more than 1/4 above its fair share and the move lowers it (a bucket lighter than
/// the gap between the two). Nothing moves in a round lighter than [`MIN_ROUND_LOAD`]; a
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
    fn both_directions_of_a_flow_share_a_bucket() {
        let key = 0x1234_5678_9abc_def0;
        for proto in [6, 17] {
            let a = v4(proto, [10, 0, 0, 1], 40000, [10, 0, 0, 2], 80);
            let b = v4(proto, [10, 0, 0, 2], 80, [10, 0, 0, 1], 40000);
            assert_eq!(flow_bucket(key, &a), flow_bucket(key, &b));
            let a = v6(proto, 1, 40000, 2 << 64 | 7, 443);
            let b = v6(proto, 2 << 64 | 7, 443, 1, 40000);
            assert_eq!(flow_bucket(key, &a), flow_bucket(key, &b));
        }
    }

    #[test]
    fn buckets_depend_on_ports_key_and_protocol() {
        let key = 99;
        let flows: Vec<usize> = (0..64u16)
            .map(|i| flow_bucket(key, &v4(6, [10, 0, 0, 1], 40000 + i, [10, 0, 0, 2], 80)).unwrap())
            .collect();
        let distinct: std::collections::HashSet<_> = flows.iter().collect();
        assert!(
            distinct.len() > 40,
            "64 client ports fell into {} buckets",
            distinct.len()
        );
        let p = v4(6, [10, 0, 0, 1], 40000, [10, 0, 0, 2], 80);
        let other_keys: std::collections::HashSet<_> =
            (0..32u64).map(|k| flow_bucket(k, &p).unwrap()).collect();
        assert!(other_keys.len() > 16, "the key changes the bucket");
        let buckets_of = |proto| {
            (0..32u16)
                .map(|i| flow_bucket(key, &v4(proto, [10, 0, 0, 1], i, [10, 0, 0, 2], 80)))
                .collect::<Vec<_>>()
        };
        assert_ne!(buckets_of(6), buckets_of(17));
    }

    #[test]
    fn fragments_and_foreign_packets() {
        let key = 5;
        let mut first = v4(17, [10, 0, 0, 1], 1000, [10, 0, 0, 2], 53);
        first[6] = 0x20; // more fragments
        let mut later = v4(17, [10, 0, 0, 1], 0, [10, 0, 0, 2], 0);
        later[7] = 0x10; // offset 16 × 8
        assert_eq!(flow_bucket(key, &first), flow_bucket(key, &later));
        assert_eq!(flow_bucket(key, &[]), None);
        assert_eq!(flow_bucket(key, &[0x45; 19]), None);
        assert_eq!(flow_bucket(key, &[0x60; 39]), None);
        assert_eq!(flow_bucket(key, &[0x00; 60]), None);
        // A header claiming more than the packet holds: no ports, still a bucket.
        let mut short = v4(6, [10, 0, 0, 1], 1, [10, 0, 0, 2], 2);
        short[0] = 0x4f;
        short.truncate(24);
        assert!(flow_bucket(key, &short).is_some());
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

    #[test]
    fn a_flow_never_written_does_not_move() {
        // Four one-way flows (UDP to the VIP, leaving NATed: other tuples) all read on queue 0.
        let s = Steering::new(2, 7);
        let mut ring = PacketRing::new(256, 2048);
        let mut state = Rebalancer::default();
        let out = FakeIo::with(&[]);
        for _ in 0..20 {
            let pkts: Vec<Vec<u8>> = (0..256u16)
                .map(|i| v4(17, [10, 0, 0, 1], 5000 + i % 4, [10, 0, 0, 9], 53))
                .map(|mut p| {
                    p.resize(1400, 0);
                    p
                })
                .collect();
            // Two bursts a round: 4.9 MB of load, above the floor.
            for _ in 0..2 {
                ring.fill(&FakeIo::with(&pkts)).unwrap();
                s.account(0, &ring);
                for slot in ring.slots_mut() {
                    slot.buf[16..20].copy_from_slice(&[10, 0, 1, 2]); // the NAT's new destination
                }
                ring.flush_to(|pkt| {
                    let _ = s.queue_for(pkt, 0);
                    &out
                });
            }
            // A reply now and then (iperf3's first datagram back) does not make a flow movable.
            let _ = s.queue_for(&v4(17, [10, 0, 0, 9], 53, [10, 0, 0, 1], 5000), 0);
            assert_eq!(s.rebalance(&mut state), 0);
        }
        assert_eq!(s.moves(), 0);
        // The same load with the buckets movable moves two of them.
        let mut owner = [0u8; BUCKETS];
        let mut cooling = [0; BUCKETS];
        let mut movable = [false; BUCKETS];
        assert_eq!(
            plan(&mut owner, &state.smooth, &movable, 2, &mut cooling),
            0
        );
        for (m, &l) in movable.iter_mut().zip(&state.smooth) {
            *m = l > 0;
        }
        assert_eq!(
            plan(&mut owner, &state.smooth, &movable, 2, &mut cooling),
            2
        );
    }

    #[test]
    fn accounting_and_rebalancing_move_the_owner_and_writes_follow_it() {
        let s = Steering::new(2, 42);
        assert!((0..BUCKETS).any(|b| s.owner(b) == 1));
        let all = Steering::new(3, 42).all_on(7);
        assert!((0..BUCKETS).all(|b| all.owner(b) == 2));
        // Four flows whose buckets start on queue 0, read by queue 0's thread.
        let mut flows = Vec::new();
        let mut port = 30000u16;
        while flows.len() < 4 {
            let p = v4(6, [10, 0, 0, 1], port, [10, 0, 0, 9], 80);
            let b = flow_bucket(42, &p).unwrap();
            if s.owner(b) == 0 && !flows.iter().any(|(fb, _)| *fb == b) {
                flows.push((b, p));
            }
            port += 1;
        }
        let mut big: Vec<Vec<u8>> = Vec::new();
        for (_, p) in &flows {
            let mut p = p.clone();
            p.resize(60000, 0);
            big.push(p);
        }
        // Rounds of 40 segments per flow, each read by the queue its bucket's owner is (what
        // the kernel does once lb-tun has written on that queue).
        let mut state = Rebalancer::default();
        let mut ring = PacketRing::new(200, 64 * 1024);
        let queues = [FakeIo::with(&[]), FakeIo::with(&[])];
        let mut moved_at = Vec::new();
        let mut mark = [0usize; 2];
        for round in 0..30 {
            for q in 0..2 {
                let mine: Vec<Vec<u8>> = (0..40)
                    .flat_map(|_| flows.iter().zip(&big))
                    .filter(|((b, _), _)| s.owner(*b) == q)
                    .map(|(_, p)| p.clone())
                    .collect();
                ring.fill(&FakeIo::with(&mine)).unwrap();
                s.account(q, &ring);
                // The ring writes each packet on its bucket's owner.
                ring.flush_to(|pkt| &queues[s.queue_for(pkt, q)]);
            }
            if s.rebalance(&mut state) > 0 {
                moved_at.push(round);
                // What was written before the move went to the old owners.
                for (m, io) in mark.iter_mut().zip(&queues) {
                    *m = io.outbox.borrow().len();
                }
            }
        }
        // Smoothed, the load passes the floor in the second round; then two moves even the
        // queues and nothing moves again.
        assert_eq!(moved_at, [1]);
        assert_eq!(s.moves(), 2);
        let on1 = flows.iter().filter(|(b, _)| s.owner(*b) == 1).count();
        assert_eq!(on1, 2);
        for (q, io) in queues.iter().enumerate() {
            let out = &io.outbox.borrow()[mark[q]..];
            assert!(out.iter().all(|p| s.queue_for(p, 9) == q));
            assert_eq!(out.len(), 28 * 80, "queue {q}");
        }
        // A packet without a bucket stays on the writer's queue.
        assert_eq!(s.queue_for(&[0x00; 20], 1), 1);
    }
}
