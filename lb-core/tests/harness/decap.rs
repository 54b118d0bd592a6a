//! The `decap` target: arbitrary bytes through the tunnel decoder (`lb_core::tunnel::decap`),
//! at each layer a socket hands over.
//!
//! The first byte picks the entry point and the GUE port: `& 3` = 0: [`decap_packet`] (a whole
//! outer IP packet; bit 2 set: GUE port 6080, else none), 1: [`decap_gue`], 2: [`decap_gre`],
//! 3: [`decap_ipip`] (bit 2 picks protocol 41 over 4). The rest is the buffer. Checks:
//! * no panic;
//! * an accepted inner packet lies within the buffer, starts with the IP version it reports,
//!   and its own length field gives exactly the length reported;
//! * the buffer is unchanged, except for the two checksum bytes inside the inner packet that
//!   remote checksum offload completes (and only when the result says so);
//! * [`decap_packet`]'s answer agrees with the payload-level decoder run on its payload.

use lb_core::tunnel::decap::{
    decap_gre, decap_gue, decap_ipip, decap_packet, DecapError, Inner, InnerKind, TunnelType,
};

const GUE_PORT: u16 = 6080;

pub fn run(data: &[u8]) {
    let Some((&op, bytes)) = data.split_first() else {
        return;
    };
    let mut buf = bytes.to_vec();
    let result = match op & 3 {
        0 => decap_packet(&mut buf, (op & 4 != 0).then_some(GUE_PORT)),
        1 => decap_gue(&mut buf),
        2 => decap_gre(&buf),
        _ => decap_ipip(&buf, if op & 4 != 0 { 41 } else { 4 }),
    };
    match result {
        Ok(inner) => check_inner(bytes, &buf, &inner),
        Err(e) => {
            assert_eq!(buf, bytes, "a refused packet ({e}) was changed");
            assert!(DecapError::ALL.contains(&e));
        }
    }
    if op & 3 == 0 {
        if let Ok(inner) = result {
            check_layers(bytes, &inner);
        }
    }
}

fn be16(b: &[u8], at: usize) -> usize {
    usize::from(u16::from_be_bytes([b[at], b[at + 1]]))
}

fn check_inner(before: &[u8], after: &[u8], inner: &Inner) {
    let range = inner.range();
    assert!(
        range.end <= after.len(),
        "{inner:?} beyond {} bytes",
        after.len()
    );
    let p = &after[range.clone()];
    let own_len = match inner.kind {
        InnerKind::Ipv4 => {
            assert_eq!(p[0] >> 4, 4);
            be16(p, 2)
        }
        InnerKind::Ipv6 => {
            assert_eq!(p[0] >> 4, 6);
            40 + be16(p, 4)
        }
    };
    assert_eq!(own_len, inner.len, "{inner:?}");
    let changed: Vec<usize> = (0..after.len())
        .filter(|&i| before[i] != after[i])
        .collect();
    if !inner.remcsum {
        assert!(changed.is_empty(), "{inner:?} changed bytes {changed:?}");
        return;
    }
    assert_eq!(inner.tunnel, TunnelType::Gue);
    assert!(changed.len() <= 2, "remcsum changed bytes {changed:?}");
    if let (Some(&first), Some(&last)) = (changed.first(), changed.last()) {
        assert!(last <= first + 1 && range.contains(&first) && range.contains(&last));
    }
}

/// The whole-packet decoder's answer is the payload decoder's, shifted by the outer headers.
fn check_layers(bytes: &[u8], inner: &Inner) {
    let ihl = match bytes[0] >> 4 {
        4 => usize::from(bytes[0] & 0x0f) * 4,
        // IPv6: the payload decoders cannot see extension headers; compare when none.
        _ if matches!(bytes[6], 4 | 41 | 47 | 17) => 40,
        _ => return,
    };
    let end = match bytes[0] >> 4 {
        4 => be16(bytes, 2),
        _ => 40 + be16(bytes, 4),
    };
    let mut payload = bytes[ihl..end].to_vec();
    let (again, skip) = match inner.tunnel {
        TunnelType::Ipip => (
            decap_ipip(&payload, if inner.kind == InnerKind::Ipv4 { 4 } else { 41 }),
            0,
        ),
        TunnelType::Gre => (decap_gre(&payload), 0),
        TunnelType::Gue => {
            let udp_len = be16(&payload, 4);
            (decap_gue(&mut payload[8..udp_len]), 8)
        }
    };
    let again = again.expect("the payload decoder refuses what the packet decoder took");
    assert_eq!(again.start + skip + ihl, inner.start);
    assert_eq!(
        (again.len, again.kind, again.tunnel, again.remcsum),
        (inner.len, inner.kind, inner.tunnel, inner.remcsum)
    );
}
