//! Invariants of a balancer's table and counters, checked after every step of every target.

use std::collections::HashMap;

use lb_core::conn::{ConnFlags, Handle};
use lb_core::server::ServerId;
use lb_core::{Balancer, Duration, Instant, Transmit, Verdict};

use super::pkt;

/// One wheel tick (1/16 s), rounded up: the wheel's deadline granularity.
pub const TICK: Duration = Duration::from_millis(63);
/// How long a template that still controls connections is deferred (IPVS: 60 s).
pub const TEMPLATE_DEFER: Duration = Duration::from_secs(60);

/// The table and counter invariants:
/// * `len()` equals the number of live entries `iter()` yields, and never exceeds capacity;
/// * for every server, `active` equals its non-template entries with the ACTIVE flag,
///   `active + inactive` its non-template entries, `persistent` its templates;
/// * every entry points at a server in use, and every template's `n_control` equals the
///   number of entries it controls, every control link names a live template;
/// * no deadline lies further ahead of `now` than the entry's own timeout (plus a tick).
pub fn check_table(b: &Balancer<'_>, now: Instant) {
    let conns = b.conns();
    let live: Vec<(Handle, lb_core::conn::Entry)> = conns.iter().map(|(h, e)| (h, *e)).collect();
    assert_eq!(conns.len(), live.len(), "len() != live entries");
    assert!(
        conns.len() <= conns.capacity(),
        "more entries than capacity"
    );
    let mut per: HashMap<ServerId, (u32, u32, u32)> = HashMap::new();
    let mut controlled: HashMap<Handle, u32> = HashMap::new();
    for (h, e) in &live {
        let c = per.entry(e.server).or_default();
        if e.is_template() {
            c.2 += 1;
        } else {
            c.1 += 1;
            if e.flags.contains(ConnFlags::ACTIVE) {
                c.0 += 1;
            }
            if let Some(t) = e.control() {
                *controlled.entry(t).or_default() += 1;
            }
        }
        assert!(
            b.director().server(e.server).is_some(),
            "entry {h:?} points at a free server slot {}",
            e.server
        );
        let d = conns.deadline(*h).expect("live entry has a deadline");
        assert!(
            d <= now + e.timeout() + TICK,
            "entry {:?} {e:?}: deadline {d:?} beyond now {now:?} + timeout {:?}",
            h,
            e.timeout()
        );
    }
    for (t, n) in &controlled {
        let tpl = conns.get(*t).expect("control link names a live entry");
        assert!(tpl.is_template(), "control link names a non-template");
        assert_eq!(tpl.n_control(), *n, "n_control of template {t:?}");
    }
    for (h, e) in &live {
        if e.is_template() {
            let n = controlled.get(h).copied().unwrap_or(0);
            assert_eq!(e.n_control(), n, "template {h:?} {e:?}: n_control");
        }
    }
    let limits = b.director().limits();
    let slots = limits.services * limits.servers_per_service;
    for id in 0..slots.min(usize::from(u16::MAX)) {
        let id = id as ServerId;
        let Some(s) = b.director().server(id) else {
            assert!(!per.contains_key(&id));
            continue;
        };
        let (a, n, p) = per.get(&id).copied().unwrap_or_default();
        assert_eq!(s.active, a, "server {id} {}: active", s.addr());
        assert_eq!(
            s.active + s.inactive,
            n,
            "server {id} {}: active+inactive",
            s.addr()
        );
        assert_eq!(s.persistent, p, "server {id} {}: persistent", s.addr());
    }
}

/// Tracks every entry's deadline across time steps: a time step (`handle_timeout(now)` with
/// no packet) may only remove entries whose deadline has passed, defer a template that still
/// controls connections to `now + 60 s`, or leave an entry alone; and afterwards no entry's
/// deadline lies more than a tick in the past.
#[derive(Default)]
pub struct Deadlines {
    before: HashMap<Handle, (lb_core::conn::Entry, Instant)>,
}

impl Deadlines {
    /// Records the table before a time step.
    pub fn snapshot(&mut self, b: &Balancer<'_>) {
        self.before.clear();
        for (h, e) in b.conns().iter() {
            if let Some(d) = b.conns().deadline(h) {
                self.before.insert(h, (*e, d));
            }
        }
    }

    /// Checks the table after `handle_timeout(now)`; `defence_dropped` says whether the
    /// drop_entry defence removed entries in that call (they may go early).
    pub fn check_after(&self, b: &Balancer<'_>, now: Instant, defence_dropped: bool) {
        let conns = b.conns();
        for (h, e) in conns.iter() {
            let d = conns.deadline(h).expect("live");
            assert!(
                d + TICK > now,
                "entry {h:?} {e:?} outlived its deadline {d:?} (now {now:?})"
            );
            if let Some((old, od)) = self.before.get(&h) {
                if !same_key(old, e) {
                    continue;
                }
                if d != *od {
                    // It controlled connections when its timer fired (they may have expired
                    // later in the same call: IPVS's order-dependent 60 s re-arm).
                    let deferred = e.is_template()
                        && old.n_control() > 0
                        && *od <= now
                        && d <= now + TEMPLATE_DEFER + TICK
                        && d + TICK >= now + TEMPLATE_DEFER;
                    assert!(
                        deferred,
                        "time step moved deadline of {e:?} from {od:?} to {d:?} (now {now:?})"
                    );
                }
            }
        }
        if defence_dropped {
            return;
        }
        for (h, (e, d)) in &self.before {
            let still = conns.get(*h).is_some_and(|n| same_key(e, n));
            if !still {
                assert!(
                    *d <= now,
                    "entry {e:?} removed at {now:?} before its deadline {d:?}"
                );
            }
        }
    }
}

fn same_key(a: &lb_core::conn::Entry, b: &lb_core::conn::Entry) -> bool {
    a.client() == b.client()
        && a.is_template() == b.is_template()
        && a.proto() == b.proto()
        && a.vport == b.vport
        && a.service == b.service
}

/// The bytes a verdict sends with tunnel headers taken off (a tunnelled packet grows: its
/// transmit is longer than the packet that came in), else `buf[..len]`.
pub fn inner_of(buf: &[u8], len: usize, v: Verdict) -> &[u8] {
    match v {
        Verdict::ToServer(t) if t.len > len => &buf[t.start + (t.len - len)..t.start + t.len],
        _ => &buf[..len],
    }
}

/// Checks the outer headers of tunnelled packet `out` (sent as `t`) field by field, as an
/// independent decoder reads them, and returns the inner packet: outer version and (IPv4)
/// header checksum, lengths, source the balancer's tunnel source, destination `t.dst`, TTL /
/// hop limit the inner one's; IPIP's protocol, GUE's UDP port, header and checksum, GRE's
/// flags, EtherType and checksum.
fn tunnel_inner<'b>(b: &Balancer<'_>, out: &'b [u8], t: Transmit) -> &'b [u8] {
    let settings = b.settings();
    let (v6, ip_len, proto, total, src, dst, ttl) = match out[0] >> 4 {
        4 => {
            assert!(
                lb_core::checksum::verify_checksums(&out[..20]) || {
                    let mut s = 0u64;
                    for w in out[..20].chunks(2) {
                        s += u64::from(u16::from_be_bytes([w[0], w[1]]));
                    }
                    lb_core::checksum::fold(s) == 0xffff
                },
                "outer IPv4 header checksum"
            );
            assert_eq!(out[0], 0x45, "outer IPv4 without options");
            let src = std::net::IpAddr::from([out[12], out[13], out[14], out[15]]);
            let dst = std::net::IpAddr::from([out[16], out[17], out[18], out[19]]);
            let total = usize::from(u16::from_be_bytes([out[2], out[3]]));
            (false, 20, out[9], total, src, dst, out[8])
        }
        6 => {
            let mut a = [0u8; 16];
            a.copy_from_slice(&out[8..24]);
            let src = std::net::IpAddr::from(a);
            a.copy_from_slice(&out[24..40]);
            let dst = std::net::IpAddr::from(a);
            let total = 40 + usize::from(u16::from_be_bytes([out[4], out[5]]));
            (true, 40, out[6], total, src, dst, out[7])
        }
        v => panic!("tunnel packet of IP version {v}"),
    };
    assert_eq!(total, out.len(), "outer length");
    assert_eq!(dst, t.dst, "outer destination is not the transmit's");
    let want_src = if v6 {
        settings.tunnel_source_v6.map(std::net::IpAddr::V6)
    } else {
        settings.tunnel_source_v4.map(std::net::IpAddr::V4)
    };
    assert_eq!(Some(src), want_src, "outer source is not the tunnel source");
    let inner = match proto {
        4 | 41 => &out[ip_len..],
        17 => {
            let u = &out[ip_len..];
            assert_eq!(
                usize::from(u16::from_be_bytes([u[4], u[5]])),
                u.len(),
                "UDP length"
            );
            assert_eq!(u[8] & 0xe0, 0, "GUE version 0, data");
            assert_eq!(u[8] & 0x1f, 0, "no GUE options");
            assert_eq!((u[10], u[11]), (0, 0), "no GUE flags");
            if u16::from_be_bytes([u[6], u[7]]) != 0 {
                assert!(
                    lb_core::checksum::verify_checksums(out),
                    "outer UDP checksum"
                );
            }
            assert!(matches!(u[9], 4 | 41));
            &u[12..]
        }
        47 => {
            let g = &out[ip_len..];
            let flags = u16::from_be_bytes([g[0], g[1]]);
            assert!(flags == 0 || flags == 0x8000, "GRE flags {flags:#x}");
            let hl = if flags == 0 { 4 } else { 8 };
            if flags != 0 {
                let mut s = 0u64;
                for w in g.chunks(2) {
                    s += u64::from(u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)]));
                }
                assert_eq!(lb_core::checksum::fold(s), 0xffff, "GRE checksum");
            }
            let et = u16::from_be_bytes([g[2], g[3]]);
            let want = if g[hl] >> 4 == 6 { 0x86dd } else { 0x0800 };
            assert_eq!(et, want, "GRE EtherType");
            &g[hl..]
        }
        p => panic!("tunnel packet of protocol {p}"),
    };
    let inner_ttl = if inner[0] >> 4 == 6 {
        inner[7]
    } else {
        inner[8]
    };
    assert_eq!(ttl, inner_ttl, "outer TTL is the inner one");
    inner
}

/// Checks what one packet's verdict says against the counters and the bytes that leave:
/// drops are counted under their reason, passes are untouched and counted, replies are
/// counted and well-formed; a forwarded or generated packet has valid checksums if the
/// packet that arrived had.
pub fn check_verdict(
    b: &Balancer<'_>,
    before: &lb_core::Counters,
    input: &[u8],
    buf: &[u8],
    len: usize,
    v: Verdict,
) {
    let after = b.counters();
    // A tunnelled packet: its outer headers checked here, the rest on the inner packet.
    let (buf, len, v) = match v {
        Verdict::ToServer(t) if t.len > len => {
            let inner = tunnel_inner(b, &buf[t.range()], t);
            let n = inner.len();
            let inner_t = Transmit {
                dst: t.dst,
                start: 0,
                len: n,
            };
            (inner, n, Verdict::ToServer(inner_t))
        }
        _ => (buf, len, v),
    };
    let valid_in = pkt::checksums_ok(input) && lb_core::checksum::verify_checksums(input);
    if let Some(t) = v.transmit() {
        // The verdict says where and how much: the packet's own destination and length, or,
        // for direct routing, the real server as next hop of an unchanged packet to a VIP.
        assert!(t.len <= len.max(buf.len()), "{v:?} longer than the buffer");
        if let Some((_, _, _, dst)) = pkt::split(&buf[..t.len]) {
            let routed = matches!(v, Verdict::ToServer(_)) && b.is_vip(dst) && &buf[..len] == input;
            assert!(
                t.dst == dst || routed,
                "{v:?}: transmit dst is neither the packet's destination nor a DR next hop"
            );
        }
        let header_len = match buf.first().map(|b| b >> 4) {
            Some(4) => usize::from(u16::from_be_bytes([buf[2], buf[3]])),
            _ => 40 + usize::from(u16::from_be_bytes([buf[4], buf[5]])),
        };
        assert_eq!(
            t.len, header_len,
            "{v:?}: transmit len is not the IP length"
        );
    }
    match v {
        Verdict::Drop(r) => {
            assert_eq!(after.drops(r), before.drops(r) + 1, "drop {r} not counted");
        }
        Verdict::Pass(_) => {
            assert_eq!(after.passed, before.passed + 1, "pass not counted");
            assert_eq!(&buf[..len], input, "a passed packet was changed");
        }
        Verdict::Reply(Transmit { len: n, .. }) => {
            assert_eq!(after.replies, before.replies + 1, "reply not counted");
            assert!(n <= buf.len());
            let out = &buf[..n];
            assert!(lb_core::packet::parse(out).is_ok(), "reply does not parse");
            assert!(
                pkt::checksums_ok(out) && lb_core::checksum::verify_checksums(out),
                "generated reply has a bad checksum: {out:02x?}"
            );
        }
        Verdict::ToServer(_) | Verdict::ToClient(_) => {
            let out = &buf[..len];
            assert_eq!(len, input.len(), "a forwarded packet changed length");
            let parsed = lb_core::packet::parse(out);
            assert!(
                parsed.is_ok(),
                "forwarded packet does not parse: {parsed:?}"
            );
            if valid_in {
                assert!(
                    pkt::checksums_ok(out),
                    "valid packet left with a bad checksum (own check): {v:?} in {input:02x?} out {out:02x?}"
                );
                assert!(
                    lb_core::checksum::verify_checksums(out),
                    "valid packet left with a bad checksum (verify_checksums): {v:?}"
                );
            }
            let (pin, pout) = (lb_core::packet::parse(input), parsed);
            if let (Ok(pin), Ok(pout)) = (pin, pout) {
                // An ICMP error is translated only when sent to the quoted packet's source
                // (the VIP of a reply, the client of a forwarded packet).
                if let lb_core::packet::Kind::IcmpError(ie) = pin.kind {
                    assert_eq!(
                        pin.dst.ip(),
                        ie.src.ip(),
                        "{v:?}: an ICMP error not sent to the quoted source was translated"
                    );
                }
                if let Verdict::ToServer(t) = v {
                    assert_eq!(pin.src, pout.src, "ToServer changed the source");
                    // NAT wrote the real server as destination; direct routing left the
                    // packet as it was, the real server its next hop.
                    assert!(
                        pout.dst.ip() == t.dst || out == input,
                        "{v:?}: neither rewritten to the next hop nor left unchanged"
                    );
                } else {
                    assert_eq!(pin.dst, pout.dst, "ToClient changed the destination");
                    assert!(b.is_vip(pout.src.ip()), "ToClient source is not a VIP");
                }
            }
        }
    }
    let drops = |c: &lb_core::Counters| c.drops.iter().sum::<u64>();
    let moved = (drops(after) - drops(before)) + (after.passed - before.passed);
    assert!(moved <= 1, "one packet moved several counters");
}
