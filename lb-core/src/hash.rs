//! Hashes: the kernel's `hsiphash` and `hash_32` (so sh, dh and mh build the same tables as
//! Linux, docs/ipvs-semantics.md §5 "hash_32" and §5.11), and the keyed flow hash of the connection table.
//!
//! On 64-bit kernels `hsiphash` is SipHash-1-3 with 64-bit state, truncated to its low 32 bits.
//! The flow hash uses the same SipHash-1-3 core with a 128-bit caller-supplied secret, so flows
//! crafted to collide under one key do not collide under another.

use core::net::IpAddr;

use crate::addr::{addr_bytes, Protocol};

/// A 128-bit SipHash key, as two little-endian 64-bit words (the kernel's `hsiphash_key_t` on
/// 64-bit machines).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct SipKey(pub [u64; 2]);

impl SipKey {
    /// A key from 16 secret bytes (e.g. from the caller's RNG).
    pub const fn from_bytes(b: [u8; 16]) -> Self {
        let mut lo = [0u8; 8];
        let mut hi = [0u8; 8];
        let mut i = 0;
        while i < 8 {
            lo[i] = b[i];
            hi[i] = b[i + 8];
            i += 1;
        }
        SipKey([u64::from_le_bytes(lo), u64::from_le_bytes(hi)])
    }
}

#[derive(Clone, Copy)]
struct Sip {
    v0: u64,
    v1: u64,
    v2: u64,
    v3: u64,
}

impl Sip {
    #[inline(always)]
    const fn new(k: SipKey) -> Self {
        Sip {
            v0: 0x736f_6d65_7073_6575 ^ k.0[0],
            v1: 0x646f_7261_6e64_6f6d ^ k.0[1],
            v2: 0x6c79_6765_6e65_7261 ^ k.0[0],
            v3: 0x7465_6462_7974_6573 ^ k.0[1],
        }
    }

    #[inline(always)]
    fn round(&mut self) {
        self.v0 = self.v0.wrapping_add(self.v1);
        self.v1 = self.v1.rotate_left(13);
        self.v1 ^= self.v0;
        self.v0 = self.v0.rotate_left(32);
        self.v2 = self.v2.wrapping_add(self.v3);
        self.v3 = self.v3.rotate_left(16);
        self.v3 ^= self.v2;
        self.v0 = self.v0.wrapping_add(self.v3);
        self.v3 = self.v3.rotate_left(21);
        self.v3 ^= self.v0;
        self.v2 = self.v2.wrapping_add(self.v1);
        self.v1 = self.v1.rotate_left(17);
        self.v1 ^= self.v2;
        self.v2 = self.v2.rotate_left(32);
    }

    /// One compression round (SipHash-1-x).
    #[inline(always)]
    fn compress(&mut self, m: u64) {
        self.v3 ^= m;
        self.round();
        self.v0 ^= m;
    }

    /// Three finalisation rounds (SipHash-x-3).
    #[inline(always)]
    fn finish(mut self) -> u64 {
        self.v2 ^= 0xff;
        self.round();
        self.round();
        self.round();
        self.v0 ^ self.v1 ^ self.v2 ^ self.v3
    }
}

/// SipHash-1-3 of `data` under `key`, 64-bit output.
pub fn siphash13(key: SipKey, data: &[u8]) -> u64 {
    let mut s = Sip::new(key);
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        s.compress(u64::from_le_bytes(w));
    }
    let rest = chunks.remainder();
    let mut last = [0u8; 8];
    last[..rest.len()].copy_from_slice(rest);
    let b = ((data.len() as u64) << 56) | u64::from_le_bytes(last);
    s.compress(b);
    s.finish()
}

/// The kernel's `hsiphash` on 64-bit machines: SipHash-1-3 truncated to 32 bits.
pub fn hsiphash(key: SipKey, data: &[u8]) -> u32 {
    siphash13(key, data) as u32
}

/// The kernel's `hsiphash_1u32(v, key)`: hashes `v`'s 4 bytes in little-endian (host) order.
#[inline]
pub fn hsiphash_1u32(key: SipKey, v: u32) -> u32 {
    let s = Sip::new(key);
    let mut s = s;
    s.compress((4u64 << 56) | u64::from(v));
    s.finish() as u32
}

/// The kernel's multiplicative `hash_32(x, bits)`: `(x * 0x61C88647) >> (32 - bits)`.
#[inline]
pub const fn hash_32(x: u32, bits: u32) -> u32 {
    if bits == 0 {
        return 0;
    }
    x.wrapping_mul(0x61C8_8647) >> (32 - bits)
}

/// The connection table's keyed hash of a flow's client side: protocol, client address and
/// client port. Both directions of a flow carry these (forward as source, replies as
/// destination), so one hash serves both lookups. It is SipHash-1-3 under the caller's key of
/// 7 bytes (IPv4: one compression) or 19 bytes (IPv6: three).
#[inline]
pub fn flow_hash(key: SipKey, proto: Protocol, addr: IpAddr, port: u16) -> u64 {
    flow_hash_bytes(key, proto, addr.is_ipv6(), &addr_bytes(addr), port)
}

/// [`flow_hash`] of an address stored as a connection entry stores it: 16 bytes, an IPv4
/// address (`v6` false) in the first four. The datapath's form: no `IpAddr` to build.
#[inline(always)]
pub fn flow_hash_bytes(key: SipKey, proto: Protocol, v6: bool, addr: &[u8; 16], port: u16) -> u64 {
    let mut s = Sip::new(key);
    if v6 {
        let x = u128::from_be_bytes(*addr);
        s.compress(x as u64);
        s.compress((x >> 64) as u64);
        s.compress((19u64 << 56) | (u64::from(port) << 8) | u64::from(proto.number()));
    } else {
        // SipHash-1-3 of the 7-byte message (proto, port, address): one compression word, the
        // message length in its top byte as SipHash's last word carries it.
        let a = u32::from_be_bytes([addr[0], addr[1], addr[2], addr[3]]);
        let w = (7u64 << 56)
            | (u64::from(a) << 24)
            | (u64::from(port) << 8)
            | u64::from(proto.number());
        s.compress(w);
    }
    s.finish()
}

/// The keyed hash of a client's network, its /24 (IPv4, `v6` false) or /64 (IPv6), from the
/// address as a connection entry stores it (16 bytes, IPv4 in the first four): SipHash-1-3 of
/// the message (4, three bytes) or (6, eight bytes), a family tag and the prefix, built in
/// words (one compression for IPv4, two for IPv6); equal to [`siphash13`] of those bytes.
#[inline(always)]
pub fn prefix_hash(key: SipKey, v6: bool, addr: &[u8; 16]) -> u64 {
    let mut s = Sip::new(key);
    if v6 {
        let q = u64::from_le_bytes([
            addr[0], addr[1], addr[2], addr[3], addr[4], addr[5], addr[6], addr[7],
        ]);
        // Little-endian words of 06 a0 .. a7: the tag and seven bytes, then the last byte.
        s.compress(6 | (q << 8));
        s.compress((9u64 << 56) | (q >> 56));
    } else {
        return prefix_hash_v4(key, [addr[0], addr[1], addr[2], addr[3]]);
    }
    s.finish()
}

/// [`prefix_hash`] of an IPv4 address's /24.
#[inline(always)]
pub fn prefix_hash_v4(key: SipKey, addr: [u8; 4]) -> u64 {
    let mut s = Sip::new(key);
    let w = u64::from(u32::from_le_bytes([4, addr[0], addr[1], addr[2]]));
    s.compress((4u64 << 56) | w);
    s.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_hash_is_siphash_of_the_tagged_prefix() {
        let key = SipKey([0x0123_4567_89ab_cdef, 0xfedc_ba98_7654_3210]);
        let mut v4 = [0u8; 16];
        v4[..4].copy_from_slice(&[192, 0, 2, 77]);
        assert_eq!(prefix_hash(key, false, &v4), siphash13(key, &[4, 192, 0, 2]));
        let v6: [u8; 16] = core::array::from_fn(|i| 0x20 + i as u8);
        let mut msg = [6u8; 9];
        msg[1..].copy_from_slice(&v6[..8]);
        assert_eq!(prefix_hash(key, true, &v6), siphash13(key, &msg));
    }

    /// `test_key_hsiphash` of Linux `lib/siphash_kunit.c`, `BITS_PER_LONG == 64` branch.
    const KUNIT_KEY: SipKey = SipKey([0x0706_0504_0302_0100, 0x0f0e_0d0c_0b0a_0908]);

    /// `test_vectors_hsiphash` of Linux `lib/siphash_kunit.c`, `BITS_PER_LONG == 64` branch:
    /// entry i is the hash of the i-byte message 00 01 .. (i-1).
    const KUNIT_VECTORS: [u32; 64] = [
        0x050fc4dc, 0x7d57ca93, 0x4dc7d44d, 0xe7ddf7fb, 0x88d38328, 0x49533b67, 0xc59f22a7,
        0x9bb11140, 0x8d299a8e, 0x6c063de4, 0x92ff097f, 0xf94dc352, 0x57b4d9a2, 0x1229ffa7,
        0xc0f95d34, 0x2a519956, 0x7d908b66, 0x63dbd80c, 0xb473e63e, 0x8d297d1c, 0xa6cce040,
        0x2b45f844, 0xa320872e, 0xdae6c123, 0x67349c8c, 0x705b0979, 0xca9913a5, 0x4ade3b35,
        0xef6cd00d, 0x4ab1e1f4, 0x43c5e663, 0x8c21d1bc, 0x16a7b60d, 0x7a8ff9bf, 0x1f2a753e,
        0xbf186b91, 0xada26206, 0xa3c33057, 0xae3a36a1, 0x7b108392, 0x99e41531, 0x3f1ad944,
        0xc8138825, 0xc28949a6, 0xfaf8876b, 0x9f042196, 0x68b1d623, 0x8b5114fd, 0xdf074c46,
        0x12cc86b3, 0x0a52098f, 0x9d292f9a, 0xa2f41f12, 0x43a71ed0, 0x73f0bce6, 0x70a7e980,
        0x243c6d75, 0xfdb71513, 0xa67d8a08, 0xb7e8f148, 0xf7a644ee, 0x0f1837f2, 0x4b6694e0,
        0xb7bbb3a8,
    ];

    #[test]
    fn hsiphash_matches_kernel_kunit_vectors() {
        let mut msg = [0u8; 64];
        for (i, b) in msg.iter_mut().enumerate() {
            *b = i as u8;
        }
        for (i, want) in KUNIT_VECTORS.iter().enumerate() {
            assert_eq!(hsiphash(KUNIT_KEY, &msg[..i]), *want, "vector {i}");
        }
    }

    #[test]
    fn hsiphash_1u32_matches_kernel_kunit_vector() {
        // The KUnit check `hsiphash_1u32(0x03020100, key) == test_vectors_hsiphash[4]`.
        assert_eq!(hsiphash_1u32(KUNIT_KEY, 0x0302_0100), KUNIT_VECTORS[4]);
    }

    #[test]
    fn hash_32_is_the_kernel_multiplicative_hash() {
        assert_eq!(hash_32(0, 8), 0);
        assert_eq!(hash_32(1, 32), 0x61C8_8647);
        assert_eq!(hash_32(1, 8), 0x61);
        assert_eq!(hash_32(2, 10), (0xC391_0C8E_u32) >> 22);
    }

    #[test]
    fn flow_hash_is_siphash13_of_the_flow_bytes() {
        let k = SipKey([0x0123_4567_89ab_cdef, 0xfedc_ba98_7654_3210]);
        let a = core::net::Ipv4Addr::new(192, 0, 2, 7);
        let o = a.octets();
        let msg = [6, 0x40, 0x9c, o[3], o[2], o[1], o[0]];
        assert_eq!(
            flow_hash(k, Protocol::Tcp, IpAddr::V4(a), 0x9c40),
            siphash13(k, &msg)
        );
        let b: core::net::Ipv6Addr = "2001:db8::1:2".parse().unwrap();
        let mut msg6 = [0u8; 19];
        msg6[..16].copy_from_slice(&u128::from(b).to_le_bytes());
        msg6[16..].copy_from_slice(&[17, 0x35, 0x00]);
        assert_eq!(
            flow_hash(k, Protocol::Udp, IpAddr::V6(b), 0x0035),
            siphash13(k, &msg6)
        );
    }

    #[test]
    fn flow_hash_depends_on_key_and_every_field() {
        let k1 = SipKey([1, 2]);
        let k2 = SipKey([3, 4]);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let h = flow_hash(k1, Protocol::Tcp, a, 1000);
        assert_ne!(h, flow_hash(k2, Protocol::Tcp, a, 1000));
        assert_ne!(h, flow_hash(k1, Protocol::Udp, a, 1000));
        assert_ne!(h, flow_hash(k1, Protocol::Tcp, b, 1000));
        assert_ne!(h, flow_hash(k1, Protocol::Tcp, a, 1001));
        let v6: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert_ne!(h, flow_hash(k1, Protocol::Tcp, v6, 1000));
    }
}
