//! `next_deadline` against lazy re-arm: the answer is the earliest real deadline, so a caller
//! that sleeps until it wakes once per expiry.

use core::net::{IpAddr, Ipv4Addr, SocketAddr};

use std::vec::Vec;

use super::*;
use crate::addr::Protocol;
use crate::conn::ConnStorage;
use crate::hash::SipKey;

fn table(capacity: usize) -> ConnTable<'static> {
    ConnTable::new(ConnStorage::alloc(capacity), SipKey([7, 11]), Instant::ZERO)
}

fn ms(t: u64) -> Instant {
    Instant::from_millis(t)
}

fn flow(n: u32) -> Entry {
    let client = SocketAddr::new(IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + n)), 1000);
    Entry::new(Protocol::Udp, client)
}

/// The table's own wheel span, in milliseconds.
fn span_ms(t: &ConnTable<'_>) -> u64 {
    t.buckets() * 1000 / TICKS_PER_SEC
}

/// A flow created at `start` with a 300 s timeout, re-armed by a packet every `gap` ms until
/// `last`: after every packet `next_deadline` is the entry's deadline, not the bucket it was
/// first filed in. Then a caller that only calls `expire` when `next_deadline` has passed wakes
/// exactly once, at the deadline, and removes the entry.
fn one_flow(capacity: usize, start: u64, gap: u64, last: u64) {
    let timeout = 300_000;
    let mut t = table(capacity);
    let h = t.insert(flow(1), ms(start + timeout)).unwrap();
    let mut now = start;
    while now <= last {
        t.touch(h, ms(now + timeout));
        let d = t.deadline(h).unwrap();
        assert!(d.millis() >= now + timeout && d.millis() < now + timeout + 63);
        assert_eq!(t.next_deadline(), Some(d), "after the packet at {now} ms");
        now += gap;
    }
    let deadline = t.deadline(h).unwrap();
    let mut wakeups = Vec::new();
    while let Some(at) = t.next_deadline() {
        assert!(wakeups.len() < 1000, "never expired: {wakeups:?}");
        wakeups.push(at);
        t.expire(at, |_, _| Expire::Remove);
    }
    assert_eq!(wakeups, [deadline], "one wake-up, at the deadline");
    assert!(t.is_empty());
}

#[test]
fn rearmed_flow_wakes_once_at_its_deadline() {
    // 128 buckets (8 s span) and 8192 buckets (512 s span, the 300 s timeout within it).
    let small = table(1024);
    assert!(span_ms(&small) < 300_000);
    one_flow(1024, 350, 1000, 60_350);
    let large = table(65_536);
    assert!(span_ms(&large) > 300_000);
    one_flow(65_536, 350, 1000, 60_350);
    // Packets faster than a tick and slower than the span.
    one_flow(1024, 5, 20, 3_000);
    one_flow(1024, 0, 9_000, 200_000);
}

#[test]
fn several_flows_each_woken_at_its_own_deadline() {
    // Ten flows re-armed in turn; the sleeping caller sees each real deadline once, in order.
    let mut t = table(1024);
    let hs: Vec<_> = (0..10)
        .map(|n| t.insert(flow(n), ms(3_000)).unwrap())
        .collect();
    for round in 0..50u64 {
        for (i, &h) in hs.iter().enumerate() {
            let now = round * 1000 + i as u64 * 37;
            t.touch(h, ms(now + 30_000 + i as u64 * 5_000));
            let min = hs.iter().map(|&h| t.deadline(h).unwrap()).min();
            assert_eq!(t.next_deadline(), min);
        }
    }
    let mut want: Vec<_> = hs.iter().map(|&h| t.deadline(h).unwrap()).collect();
    want.sort();
    let mut wakeups = Vec::new();
    while let Some(at) = t.next_deadline() {
        assert!(wakeups.len() < 100, "too many wake-ups: {wakeups:?}");
        wakeups.push(at);
        assert_eq!(t.expire(at, |_, _| Expire::Remove), 1);
    }
    assert_eq!(wakeups, want);
}

#[test]
fn a_limit_bounds_the_search() {
    let mut t = table(1024);
    let h = t.insert(flow(1), ms(3_000)).unwrap();
    t.touch(h, ms(40_000));
    let d = t.deadline(h);
    assert_eq!(t.next_deadline_before(Some(ms(2_000))), None);
    assert_eq!(t.next_deadline_before(Some(ms(40_000))), None);
    assert_eq!(t.next_deadline_before(Some(ms(40_001))), d);
    assert_eq!(t.next_deadline_before(None), d);
    assert_eq!(t.next_deadline(), d);
}

#[test]
fn deadlines_beyond_the_span_are_answered_exactly_up_to_32_far_entries() {
    // 16 buckets: one second of span; a day-long deadline.
    let mut t = table(64);
    assert_eq!(span_ms(&t), 1000);
    let day = 86_400_000;
    let hs: Vec<_> = (0..32)
        .map(|n| t.insert(flow(n), ms(day + u64::from(n) * 1000)).unwrap())
        .collect();
    assert_eq!(t.next_deadline(), t.deadline(hs[0]));
    // More than 32 in the farthest bucket: its start (early, once per span).
    t.insert(flow(40), ms(2 * day)).unwrap();
    let at = t.next_deadline().unwrap();
    assert!(at < ms(1000), "{at:?}");
    t.expire(at, |_, _| Expire::Remove);
    assert_eq!(t.len(), 33);
}

#[test]
fn an_entry_left_detached_is_filed_again_first() {
    let mut t = table(64);
    let h = t.insert(flow(1), ms(1000)).unwrap();
    assert_eq!(t.poll_expired(ms(1000)), Some(h));
    // Re-armed by the caller, who asks before polling again: the new deadline, not "now".
    t.touch(h, ms(5000));
    assert_eq!(t.next_deadline(), Some(ms(5000)));
    assert_eq!(t.poll_expired(ms(4999)), None);
    assert_eq!(t.poll_expired(ms(5000)), Some(h));
    // Left alone: reported again on the next tick.
    assert_eq!(t.next_deadline(), Some(ms(5063)));
}

/// `poll_expired` takes due entries off the wheel in batches; what the caller does between two
/// calls to an entry staged but not yet handed out is seen when its turn comes.
#[test]
fn a_staged_entry_removed_or_rearmed_before_its_turn_is_not_handed_out() {
    let mut t = table(64);
    let hs: Vec<Handle> = (0..4).map(|i| t.insert(flow(i), ms(1000)).unwrap()).collect();
    let first = t.poll_expired(ms(1000)).unwrap();
    let rest: Vec<Handle> = hs.iter().copied().filter(|&h| h != first).collect();
    // One removed, one re-armed, one whose slot is reused by a new entry due later.
    t.remove(rest[0]);
    t.touch(rest[1], ms(5000));
    t.remove(rest[2]);
    let reused = t.insert(flow(9), ms(9000)).unwrap();
    assert_eq!(reused, rest[2]);
    t.remove(first);
    assert_eq!(t.poll_expired(ms(1000)), None);
    assert_eq!(t.len(), 2);
    assert_eq!(t.next_deadline(), Some(ms(5000)));
    assert_eq!(t.poll_expired(ms(5000)), Some(rest[1]));
    t.remove(rest[1]);
    assert_eq!(t.poll_expired(ms(8999)), None);
    assert_eq!(t.poll_expired(ms(9000)), Some(reused));
}

/// A caller that stops polling with staged entries left: they are still due, for
/// `next_deadline`, and handed out by the next `poll_expired`.
#[test]
fn staged_entries_left_by_a_caller_that_stops_are_still_due() {
    let mut t = table(64);
    for i in 0..3 {
        t.insert(flow(i), ms(1000 + 100 * u64::from(i))).unwrap();
    }
    let h = t.poll_expired(ms(2000)).unwrap();
    t.remove(h);
    let at = t.next_deadline().unwrap();
    assert!(at <= ms(2000), "{at:?}");
    let mut n = 0;
    while let Some(h) = t.poll_expired(ms(2000)) {
        t.remove(h);
        n += 1;
    }
    assert_eq!(n, 2);
    assert!(t.is_empty());
    assert_eq!(t.next_deadline(), None);
}

/// More due entries than one stage holds, many under the same key (one probe run, so each
/// removal shifts the index slots found for the others): every one is handed out once and
/// removed, and the index stays consistent.
#[test]
fn expiry_in_several_stages_with_shared_probe_runs() {
    let mut t = table(256);
    let same = flow(1);
    let mut hs = Vec::new();
    for i in 0..200u32 {
        let e = if i % 2 == 0 { same } else { flow(i) };
        hs.push(t.insert(e, ms(1000 + u64::from(i % 7))).unwrap());
    }
    let keep = t.insert(flow(5000), ms(60_000)).unwrap();
    let mut seen = Vec::new();
    while let Some(h) = t.poll_expired(ms(1100)) {
        seen.push(h);
        assert!(t.remove(h).is_some());
    }
    seen.sort();
    hs.sort();
    assert_eq!(seen, hs);
    assert_eq!(t.len(), 1);
    let hash = t.hash_of(&flow(5000));
    assert_eq!(t.find(hash, |_| true), Some(keep));
    assert_eq!(t.find(t.hash_of(&same), |_| true), None);
    // The freed slots and index slots work again.
    let again: Vec<Handle> = (0..100).map(|_| t.insert(same, ms(2000)).unwrap()).collect();
    let mut found = Vec::new();
    t.find(t.hash_of(&same), |e| {
        found.push(*e);
        false
    });
    assert_eq!(found.len(), again.len());
    assert_eq!(t.len(), 101);
}

/// The entry inserted last is filed on the wheel only at the next insert or walk, by the
/// deadline it has then; until then every path still sees it.
#[test]
fn the_entry_inserted_last_is_filed_by_its_deadline_then() {
    let mut t = table(64);
    // Removed before it was filed.
    let a = t.insert(flow(1), ms(1000)).unwrap();
    t.remove(a);
    assert_eq!(t.next_deadline(), None);
    assert_eq!(t.poll_expired(ms(2000)), None);
    // Moved earlier, then later, before it was filed: the last deadline counts.
    let b = t.insert(flow(2), ms(60_000)).unwrap();
    t.touch(b, ms(3000));
    t.touch(b, ms(4000));
    assert_eq!(t.next_deadline(), Some(ms(4000)));
    assert_eq!(t.poll_expired(ms(3999)), None);
    assert_eq!(t.poll_expired(ms(4000)), Some(b));
    t.remove(b);
    // Re-armed later right after its insert (a SYN: 3 s, then SYN_RECV's timeout), and seen
    // by eviction, expiry and `next_deadline` before any other insert files it.
    let c = t.insert(flow(3), ms(7000)).unwrap();
    t.touch(c, ms(64_000));
    assert_eq!(
        t.evict_candidate(ms(4000), Duration::from_secs(60), |_| true),
        Some(c)
    );
    assert_eq!(t.next_deadline(), Some(ms(64_000)));
    assert_eq!(t.poll_expired(ms(7000)), None);
    let d = t.insert(flow(4), ms(8000)).unwrap();
    assert_eq!(t.poll_expired(ms(8000)), Some(d));
    t.remove(d);
    assert_eq!(t.poll_expired(ms(64_000)), Some(c));
}

/// The balancer's expiry rule, one entry at a time through `poll_expired`: a template that
/// still controls connections is kept 60 s more, anything else is removed (and its template
/// controls one fewer).
fn expire_one_by_one(t: &mut ConnTable<'_>, now: Instant, gone: &mut Vec<Entry>) {
    while let Some(h) = t.poll_expired(now) {
        let e = t.get_mut(h).unwrap();
        if e.is_template() && e.n_control() > 0 {
            e.set_timeout(Duration::from_secs(60));
            t.touch(h, now + Duration::from_secs(60));
            continue;
        }
        let e = t.remove(h).unwrap();
        if let Some(c) = e.control() {
            let tpl = t.get_mut(c).unwrap();
            tpl.set_n_control(tpl.n_control() - 1);
        }
        gone.push(e);
    }
}

/// The same rule through `expire_batch`.
fn expire_batched(t: &mut ConnTable<'_>, now: Instant, gone: &mut Vec<Entry>) {
    let mut out = [Entry::ZERO; EXPIRE_BATCH];
    let keep = |e: &mut Entry| {
        (e.is_template() && e.n_control() > 0).then(|| {
            e.set_timeout(Duration::from_secs(60));
            now + Duration::from_secs(60)
        })
    };
    while let Some(n) = t.expire_batch(now, &mut out, keep) {
        gone.extend_from_slice(&out[..n]);
    }
}

/// Every live entry, by handle, and the index finds each under its key.
fn live(t: &ConnTable<'_>) -> Vec<(Handle, Entry, Instant)> {
    let mut v = Vec::new();
    for i in 0..t.capacity() {
        let h = Handle::from_index(i).unwrap();
        if let Some(e) = t.get(h) {
            let mut found = false;
            t.find(t.hash_of(e), |x| {
                found |= x == e;
                false
            });
            assert!(found, "entry {i} not in the index");
            v.push((h, *e, t.deadline(h).unwrap()));
        }
    }
    v
}

/// `expire_batch` removes, keeps and re-files exactly what `poll_expired` one entry at a time
/// does, in the same order, with templates whose connections expire in the same stage
/// (before and after them), more due entries than a stage, shared probe runs, and new
/// entries between the runs.
#[test]
fn batched_expiry_matches_one_entry_at_a_time() {
    let mut a = table(512);
    let mut b = table(512);
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let (mut gone_a, mut gone_b) = (Vec::new(), Vec::new());
    let mut now = 1000;
    for round in 0..40u32 {
        for k in 0..12u32 {
            let r = next();
            let deadline = ms(now + r % 3000);
            if r % 5 == 0 {
                // A template and two connections it controls, due around the same time.
                let client = IpAddr::V4(Ipv4Addr::from(0x0b00_0000 + round * 16 + k));
                let tpl = Entry::template(Protocol::Tcp, client, 0);
                let ha = a.insert(tpl, deadline).unwrap();
                let hb = b.insert(tpl, deadline).unwrap();
                assert_eq!(ha, hb);
                for c in 0..2u64 {
                    let mut e = flow(((r >> 8) % 64) as u32);
                    e.set_control(Some(ha));
                    let at = ms(now + (r >> (16 + c)) % 3000);
                    assert_eq!(a.insert(e, at).unwrap(), b.insert(e, at).unwrap());
                    for t in [&mut a, &mut b] {
                        let tp = t.get_mut(ha).unwrap();
                        tp.set_n_control(tp.n_control() + 1);
                    }
                }
            } else {
                // Shared keys: long probe runs, whose removals shift the staged slots.
                let e = flow(((r >> 8) % 64) as u32);
                if a.len() + 3 < a.capacity() {
                    assert_eq!(a.insert(e, deadline).unwrap(), b.insert(e, deadline).unwrap());
                }
            }
        }
        now += next() % 700;
        expire_one_by_one(&mut a, ms(now), &mut gone_a);
        expire_batched(&mut b, ms(now), &mut gone_b);
        assert_eq!(gone_a, gone_b, "round {round}");
        assert_eq!(a.len(), b.len());
        assert_eq!(live(&a), live(&b));
        assert_eq!(a.next_deadline(), b.next_deadline());
    }
    assert!(gone_a.len() > 200, "{} removed", gone_a.len());
    assert!(gone_a.iter().any(Entry::is_template));
    // Everything goes in the end (templates once their connections are gone).
    now += 1_000_000;
    expire_one_by_one(&mut a, ms(now), &mut gone_a);
    expire_batched(&mut b, ms(now), &mut gone_b);
    expire_one_by_one(&mut a, ms(now + 61_000), &mut gone_a);
    expire_batched(&mut b, ms(now + 61_000), &mut gone_b);
    assert_eq!(gone_a, gone_b);
    assert!(a.is_empty() && b.is_empty());
}

/// `expire_batch` after a caller of `poll_expired` stopped midway: the entry handed out and
/// left alone, and the staged ones not yet handed out, are all expired.
#[test]
fn batched_expiry_takes_over_from_poll_expired() {
    let mut t = table(64);
    let hs: Vec<Handle> = (0..5).map(|i| t.insert(flow(i), ms(1000)).unwrap()).collect();
    let first = t.poll_expired(ms(1000)).unwrap();
    assert!(hs.contains(&first));
    let mut gone = Vec::new();
    expire_batched(&mut t, ms(1000), &mut gone);
    // The one left alone is filed for the next tick, then goes too.
    assert_eq!(gone.len(), 4);
    expire_batched(&mut t, ms(1063), &mut gone);
    assert_eq!(gone.len(), 5);
    assert!(t.is_empty());
    let mut out = [Entry::ZERO; EXPIRE_BATCH];
    assert_eq!(t.expire_batch(ms(5000), &mut out, |_| None), None);
}
