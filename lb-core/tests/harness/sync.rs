//! The `sync` target: sync messages and snapshots from untrusted bytes, applied to a backup
//! balancer configured with [`setup::CONFIG`](super::setup::CONFIG).
//!
//! The input is a sequence of chunks, each `[kind, len_hi, len_lo, bytes…]`:
//! kind & 3 = 0: a sync message (`receive_sync`, mostly made well-formed: the header's size is
//! set to the chunk's length unless kind & 4); 1: a snapshot (`import_state`); 2: a time step
//! of `len` × 100 ms and `handle_timeout`; 3: a round trip, export then import into a fresh
//! balancer. After every chunk:
//! * no panic; the table is within its capacity;
//! * every entry names a live service and server (`connections()` lists them all);
//! * each real server's active + inactive counters equal its connection entries, its
//!   persistent counter its templates;
//! * a refused snapshot changed nothing;
//! * a round trip reproduces the listing and the counters exactly (times at the table's
//!   776-day cap to the cap).

use std::collections::BTreeMap;
use std::net::SocketAddr;

use lb_core::conn::MAX_TIMEOUT;
use lb_core::ipvsadm::Command;
use lb_core::sync::daemon::{DaemonConfig, IfName, SyncRole};
use lb_core::{Balancer, Duration, Instant, Settings};

use super::setup::{configure, empty, CONFIG};

const CAPACITY: usize = 64;

fn backup() -> Balancer<'static> {
    let settings = Settings {
        direct_routing: true,
        ..Settings::default()
    };
    let mut b = empty(CAPACITY, settings, 7);
    configure(&mut b, CONFIG);
    let d = DaemonConfig::new(SyncRole::Backup, IfName::new("sync0").unwrap());
    b.apply(Instant::ZERO, &Command::StartDaemon(d)).unwrap();
    b
}

type Listing = Vec<String>;

fn listing(b: &Balancer<'_>, now: Instant) -> Listing {
    let mut v: Vec<String> = b
        .connections(now)
        .map(|c| {
            format!(
                "{} {} {} {} {} {} {}",
                c.proto.name(),
                c.client,
                c.vip,
                c.server,
                c.state,
                // The table caps deadlines at MAX_TIMEOUT ahead (rounded to its tick): an
                // entry at the cap may read a tick more before a round trip than after.
                c.expires_in.millis().min(MAX_TIMEOUT.millis()),
                c.template
            )
        })
        .collect();
    v.sort();
    v
}

/// (service index, server address) → (active, inactive, persistent).
fn counters(b: &Balancer<'_>) -> BTreeMap<(u16, SocketAddr), (u32, u32, u32)> {
    let mut m = BTreeMap::new();
    for (id, _) in b.director().services() {
        let d = b.director().servers(id);
        for &s in d.order {
            let r = &d.servers[usize::from(s)];
            m.insert((id, r.addr()), (r.active, r.inactive, r.persistent));
        }
    }
    m
}

fn check(b: &Balancer<'_>, now: Instant) {
    assert!(b.connection_count() <= CAPACITY);
    let listed = b.connections(now).count();
    assert_eq!(
        listed,
        b.connection_count(),
        "an entry names a missing service or server"
    );
    let (mut conns, mut templates) = (0u32, 0u32);
    for c in b.connections(now) {
        if c.template {
            templates += 1;
        } else {
            conns += 1;
        }
    }
    let (mut ai, mut p) = (0u32, 0u32);
    for (a, i, t) in counters(b).values() {
        ai += a + i;
        p += t;
    }
    assert_eq!(
        (ai, p),
        (conns, templates),
        "server counters disagree with the table"
    );
}

fn export(b: &Balancer<'_>, now: Instant) -> Vec<u8> {
    let mut ex = b.export_state(now);
    let mut out = Vec::new();
    let mut buf = vec![0u8; lb_core::sync::snapshot::CHUNK_MIN + 37];
    loop {
        let n = ex.write(b, &mut buf);
        if n == 0 {
            return out;
        }
        out.extend_from_slice(&buf[..n]);
    }
}

pub fn run(data: &[u8]) {
    let mut b = backup();
    let mut now = Instant::ZERO;
    let mut rest = data;
    while rest.len() >= 3 {
        let kind = rest[0];
        let len = usize::from(u16::from_be_bytes([rest[1], rest[2]]));
        let body_len = len.min(rest.len() - 3);
        let body = &rest[3..3 + body_len];
        rest = &rest[3 + body_len..];
        match kind & 3 {
            0 => {
                let mut msg = body.to_vec();
                if kind & 4 == 0 && msg.len() >= 4 {
                    let n = msg.len() as u16;
                    msg[2..4].copy_from_slice(&n.to_be_bytes());
                }
                let _ = b.receive_sync(now, &msg);
            }
            1 => {
                let before = (listing(&b, now), counters(&b));
                if b.import_state(now, body).is_err() {
                    assert_eq!(
                        (listing(&b, now), counters(&b)),
                        before,
                        "a refused snapshot changed the table"
                    );
                }
            }
            2 => {
                now += Duration::from_millis(len as u64 * 100);
                b.handle_timeout(now);
            }
            _ => {
                let snap = export(&b, now);
                let mut c = backup();
                c.import_state(now, &snap)
                    .expect("our own snapshot reads back");
                assert_eq!(listing(&c, now), listing(&b, now), "round trip: entries");
                assert_eq!(counters(&c), counters(&b), "round trip: counters");
            }
        }
        if std::env::var_os("LB_SYNC_TRACE").is_some() {
            eprintln!("after kind {kind} len {len}: {:#?}", listing(&b, now));
        }
        check(&b, now);
    }
}
