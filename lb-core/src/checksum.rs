//! The Internet checksum (RFC 1071) and its incremental update (RFC 1624), used by the NAT
//! rewrites of docs/ipvs-semantics.md §6.1 and by the replies lb-core generates.
//!
//! A rewrite that changes a few 16-bit words of a packet updates each checksum covering them
//! with RFC 1624 eqn. 3, `HC' = ~(~HC + ~m + m')`, in ones-complement arithmetic (16-bit words,
//! end-around carry): collect every changed word in a [`Delta`], then [`Delta::apply`] it to
//! the old checksum. The cost does not depend on the packet's length.
//!
//! [`verify_checksums`] recomputes every checksum of a packet from scratch; tests, fuzz targets
//! and the balancer's tests use it to check the incremental results.

#![warn(missing_docs)]

/// Adds `data` to the running ones-complement sum `acc`, as big-endian 16-bit words; an odd
/// final byte is padded with a zero byte. When summing several slices, every slice but the last
/// must have an even length. Finish with [`fold`] or [`finish`].
///
/// Four bytes at a time: a 32-bit word is its two 16-bit words, the high one times 2¹⁶, and
/// 2¹⁶ ≡ 1 modulo 2¹⁶ − 1, so summing 32-bit words and folding gives the same ones-complement
/// sum (RFC 1071 §2(B)); the 64-bit accumulator cannot overflow below 2³² words.
#[inline(always)]
pub fn add(acc: u64, data: &[u8]) -> u64 {
    if data.len() < WIDE_FROM {
        add_words(acc, data)
    } else {
        add_wide(acc, data)
    }
}

/// [`add`] of a long slice (a payload).
#[inline(never)]
fn add_wide(acc: u64, data: &[u8]) -> u64 {
    // 32-bit words in the machine's own byte order into a 64-bit sum, a loop the compiler
    // vectorizes; folded and byte-swapped it is the big-endian sum (byte order independence,
    // RFC 1071 §2(B)): on a little-endian machine the swap undoes the load's.
    let mut quads = data.chunks_exact(4);
    let mut native: u64 = 0;
    for q in &mut quads {
        native += u64::from(u32::from_ne_bytes([q[0], q[1], q[2], q[3]]));
    }
    let folded = fold(native);
    let folded = if cfg!(target_endian = "little") {
        folded.swap_bytes()
    } else {
        folded
    };
    add_words(acc + u64::from(folded), quads.remainder())
}

/// Below this many bytes (addresses, headers) [`add`] sums 16-bit words one by one: the wide
/// loop's fold and swap would cost more than they save.
const WIDE_FROM: usize = 64;

/// RFC 1071's loop: big-endian 16-bit words, an odd final byte padded with zero.
#[inline(always)]
fn add_words(acc: u64, data: &[u8]) -> u64 {
    let mut sum = acc;
    let mut words = data.chunks_exact(2);
    for w in &mut words {
        sum += u64::from(u16::from_be_bytes([w[0], w[1]]));
    }
    if let [last] = words.remainder() {
        sum += u64::from(*last) << 8;
    }
    sum
}

/// Folds a running sum to 16 bits with end-around carry (the ones-complement sum). Four fixed
/// steps, no loop: 64 → 33 → 18 → 17 → 16 bits. A non-zero sum never folds to 0.
#[inline]
pub const fn fold(sum: u64) -> u16 {
    let s = (sum >> 32) + (sum & 0xffff_ffff);
    let s = (s >> 16) + (s & 0xffff);
    let s = (s >> 16) + (s & 0xffff);
    let s = (s >> 16) + (s & 0xffff);
    s as u16
}

/// The checksum field value for a running sum: the complement of its fold.
#[inline]
pub const fn finish(sum: u64) -> u16 {
    !fold(sum)
}

/// The running sum of a TCP/UDP/ICMPv6 pseudo-header: source and destination address bytes
/// (4 or 16 each), the protocol number and the L4 length. For IPv4 (RFC 793/768) and IPv6
/// (RFC 8200 §8.1) the sum is the same, since the zero padding adds nothing.
#[inline]
pub fn pseudo_header(src: &[u8], dst: &[u8], proto: u8, l4_len: u32) -> u64 {
    let sum = add(add(0, src), dst);
    sum + u64::from(proto) + u64::from(l4_len >> 16) + u64::from(l4_len & 0xffff)
}

/// A pending incremental checksum update: the ones-complement sum of `~m + m'` over every
/// replaced 16-bit word (RFC 1624 eqn. 3). Build it while rewriting, apply it once per checksum.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Delta(u64);

impl Delta {
    /// No change.
    pub const ZERO: Delta = Delta(0);

    /// Records that the 16-bit word `old` became `new`.
    #[inline]
    pub fn replace16(&mut self, old: u16, new: u16) {
        self.0 += u64::from(!old) + u64::from(new);
    }

    /// Records that the 32-bit word `old` (two 16-bit words) became `new`: the ones'
    /// complement sum is the same over 32-bit words as over their 16-bit halves once folded.
    #[inline]
    pub fn replace32(&mut self, old: u32, new: u32) {
        self.0 += u64::from(!old) + u64::from(new);
    }

    /// Records that the bytes `old` became `new`. Both must have the same length, and start at
    /// an even offset from the start of what the checksum covers; an odd final byte is treated
    /// as the high half of a word, as [`add`] does.
    #[inline]
    pub fn replace(&mut self, old: &[u8], new: &[u8]) {
        let mut o = old.chunks(2);
        let mut n = new.chunks(2);
        while let (Some(a), Some(b)) = (o.next(), n.next()) {
            let word = |c: &[u8]| match c {
                [hi, lo] => u16::from_be_bytes([*hi, *lo]),
                [hi] => u16::from_be_bytes([*hi, 0]),
                _ => 0,
            };
            self.replace16(word(a), word(b));
        }
    }

    /// Adds another pending update to this one (a checksum covering both sets of words).
    #[inline]
    pub fn merge(&mut self, other: Delta) {
        self.0 += other.0;
    }

    /// The updated checksum: `~(~hc + Σ(~m + m'))`.
    #[inline]
    pub const fn apply(self, hc: u16) -> u16 {
        !fold(!hc as u64 + self.0)
    }

    /// The updated field of a *partial* checksum (Linux's CHECKSUM_PARTIAL, virtio's
    /// NEEDS_CSUM): a field holding the folded sum of the pseudo-header alone, not
    /// complemented, to which a device later adds the L4 header and payload. Record only
    /// pseudo-header words (addresses): the words the device sums are its business.
    /// `fold(field + Σ(~m + m'))`, what the kernel's `inet_proto_csum_replace4(.., pseudohdr)`
    /// stores for such a packet.
    #[inline]
    pub const fn apply_partial(self, field: u16) -> u16 {
        fold(field as u64 + self.0)
    }
}

/// Completes a partial TCP/UDP checksum in software, as a device does for a NEEDS_CSUM packet:
/// `l4` is the L4 header and payload (to the end of the IP packet), its checksum field at
/// `field` holding the folded pseudo-header sum ([`Delta::apply_partial`]). Sums `l4` with the
/// field in place and stores the complement there; a result of 0 is stored as 0xffff, as the
/// kernel's `skb_checksum_help` does (for UDP, 0 would mean "no checksum"; for TCP both verify).
/// False, with nothing changed, when the field lies outside `l4`.
pub fn complete_partial(l4: &mut [u8], field: usize) -> bool {
    if field.checked_add(2).is_none_or(|end| end > l4.len()) {
        return false;
    }
    let sum = match finish(add(0, l4)) {
        0 => 0xffff,
        s => s,
    };
    l4[field..field + 2].copy_from_slice(&sum.to_be_bytes());
    true
}

/// RFC 1624 eqn. 3 for a single word: the checksum `hc` after the covered word `old` became
/// `new`.
#[inline]
pub fn update16(hc: u16, old: u16, new: u16) -> u16 {
    let mut d = Delta::ZERO;
    d.replace16(old, new);
    d.apply(hc)
}

/// Whether the sum of a region that includes its own checksum field verifies (folds to 0xffff).
#[inline]
pub(crate) fn verifies(sum: u64) -> bool {
    fold(sum) == 0xffff
}

/// Whether an IPv4 header (`hdr`, its length a multiple of 4 as the IHL makes it) verifies:
/// its 32-bit words summed in ones' complement fold to 0xffff (the same sum as over its 16-bit
/// words, with half the additions; a tail shorter than a word is summed as [`add`] does). The
/// header check of both [`crate::packet::parse`] and [`crate::packet::parse_flow`].
#[inline(always)]
pub(crate) fn ipv4_header_verifies(hdr: &[u8]) -> bool {
    let mut sum = 0u64;
    let mut words = hdr.chunks_exact(4);
    for w in &mut words {
        sum += u64::from(u32::from_be_bytes([w[0], w[1], w[2], w[3]]));
    }
    verifies(add(sum, words.remainder()))
}

/// Recomputes every checksum of the IP packet at the start of `buf` from scratch and says
/// whether all of them verify: the IPv4 header checksum; the TCP, UDP, ICMPv4 or ICMPv6
/// checksum over the whole L4 message (pseudo-header included where the protocol has one); and,
/// in an ICMPv4 error, the quoted IPv4 header's checksum. An IPv4 UDP checksum of 0 means "none"
/// and passes; in IPv6 it fails (RFC 8200 requires one). Other protocols get only the IP
/// header check. Returns false for anything too short or malformed to check, for fragments and
/// for IPv6 extension headers. Independent of the datapath's own parser on purpose.
pub fn verify_checksums(buf: &[u8]) -> bool {
    match buf.first().map(|b| b >> 4) {
        Some(4) => verify_v4(buf),
        Some(6) => verify_v6(buf),
        _ => false,
    }
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

fn verify_v4(buf: &[u8]) -> bool {
    let Some(total) = be16(buf, 2).map(usize::from) else {
        return false;
    };
    let ihl = usize::from(buf[0] & 0x0f) * 4;
    if ihl < 20 || total < ihl || buf.len() < total {
        return false;
    }
    let frag = be16(buf, 6).unwrap_or(0);
    if !verifies(add(0, &buf[..ihl])) || frag & 0x3fff != 0 {
        return false;
    }
    let (src, dst) = (&buf[12..16], &buf[16..20]);
    verify_l4(false, buf[9], src, dst, &buf[ihl..total])
}

fn verify_v6(buf: &[u8]) -> bool {
    let Some(plen) = be16(buf, 4).map(usize::from) else {
        return false;
    };
    if buf.len() < 40 + plen {
        return false;
    }
    let (src, dst) = (&buf[8..24], &buf[24..40]);
    verify_l4(true, buf[6], src, dst, &buf[40..40 + plen])
}

fn verify_l4(v6: bool, proto: u8, src: &[u8], dst: &[u8], l4: &[u8]) -> bool {
    let pseudo = |len: usize| pseudo_header(src, dst, proto, len as u32);
    match proto {
        6 => l4.len() >= 20 && verifies(add(pseudo(l4.len()), l4)),
        17 => {
            let Some(len) = be16(l4, 4).map(usize::from) else {
                return false;
            };
            if len < 8 || len > l4.len() {
                return false;
            }
            if be16(l4, 6) == Some(0) {
                return !v6;
            }
            verifies(add(pseudo(len), &l4[..len]))
        }
        1 if !v6 => {
            if l4.len() < 8 || !verifies(add(0, l4)) {
                return false;
            }
            let quotes_ip = matches!(l4[0], 3 | 4 | 5 | 11 | 12);
            match l4.get(8..) {
                Some(q) if quotes_ip && q.len() >= 20 && q[0] >> 4 == 4 => {
                    let ihl = usize::from(q[0] & 0x0f) * 4;
                    ihl >= 20 && q.len() >= ihl && verifies(add(0, &q[..ihl]))
                }
                _ => true,
            }
        }
        58 if v6 => l4.len() >= 4 && verifies(add(pseudo(l4.len()), l4)),
        // Fragment and other extension headers: the L4 checksum cannot be reached.
        0 | 43 | 44 | 51 | 60 | 135 | 139 | 140 | 253 | 254 if v6 => false,
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The four-bytes-at-a-time sum folds to what 16-bit words give, for every length and
    /// starting sum (the reference is RFC 1071's loop, one word at a time).
    #[test]
    fn wide_words_sum_as_16_bit_words() {
        fn reference(acc: u64, data: &[u8]) -> u64 {
            let mut sum = acc;
            for w in data.chunks(2) {
                sum += u64::from(u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)]));
            }
            sum
        }
        let mut x: u32 = 0x1234_5678;
        let data: std::vec::Vec<u8> = (0..1600)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect();
        for len in 0..data.len() {
            for acc in [0, 0xffff, 0x1_2345_6789] {
                assert_eq!(
                    fold(add(acc, &data[..len])),
                    fold(reference(acc, &data[..len])),
                    "length {len}"
                );
            }
        }
        assert_eq!(fold(add(0, &[0xff; 1600])), 0xffff);
    }

    /// RFC 1071 §3 worked example: bytes 00 01 f2 03 f4 f5 f6 f7 sum to 0xddf2.
    #[test]
    fn rfc1071_example() {
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(fold(add(0, &data)), 0xddf2);
        assert_eq!(finish(add(0, &data)), !0xddf2);
        // An odd final byte is the high half of a word.
        assert_eq!(fold(add(0, &[0x12, 0x34, 0x56])), 0x1234 + 0x5600);
    }

    /// The end-around-carry loop `fold` replaced: the reference its fixed steps must equal.
    fn fold_loop(mut sum: u64) -> u16 {
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        sum as u16
    }

    #[test]
    fn fold_equals_the_carry_loop() {
        let edges = [
            0,
            1,
            0xffff,
            0x1_0000,
            0x1_0001,
            0x1_fffe,
            0xffff_ffff,
            0x1_0000_0000,
            0x1_ffff_fffe,
            u64::MAX,
            u64::MAX - 1,
            0xffff_0000_ffff_0000,
        ];
        for s in edges {
            assert_eq!(fold(s), fold_loop(s), "{s:#x}");
        }
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..100_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            for s in [x, x >> 16, x >> 31, x >> 47] {
                assert_eq!(fold(s), fold_loop(s), "{s:#x}");
            }
        }
    }

    /// RFC 1624 §4 example: HC = 0xdd2f, m = 0x5555 → m' = 0x3285 gives HC' = 0x0000, where
    /// the eqn. 2 form would give 0xffff.
    #[test]
    fn rfc1624_example() {
        assert_eq!(update16(0xdd2f, 0x5555, 0x3285), 0x0000);
        let mut d = Delta::ZERO;
        d.replace(&[0x55, 0x55], &[0x32, 0x85]);
        assert_eq!(d.apply(0xdd2f), 0x0000);
    }

    #[test]
    fn incremental_equals_recompute() {
        let mut data = [0u8; 40];
        for (i, b) in data.iter_mut().enumerate() {
            *b = (i as u8).wrapping_mul(37).wrapping_add(11);
        }
        let before = finish(add(0, &data));
        let mut d = Delta::ZERO;
        let new = [0xde, 0xad, 0xbe, 0xef, 0xff, 0xff];
        d.replace(&data[10..16], &new);
        data[10..16].copy_from_slice(&new);
        let after = finish(add(0, &data));
        // Both are valid encodings of the same ones-complement value.
        let inc = d.apply(before);
        assert!(inc == after || (inc, after) == (0, 0xffff) || (inc, after) == (0xffff, 0));
    }

    /// The 32-bit-word header check agrees with the 16-bit sum of [`add`], at every length.
    #[test]
    fn ipv4_header_verifies_equals_the_16_bit_sum() {
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut hdr = [0u8; 64];
        for round in 0..20_000 {
            for b in hdr.iter_mut() {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *b = x as u8;
            }
            let n = round % hdr.len();
            if round % 2 == 0 && n >= 12 {
                // Make it verify: put the right checksum at bytes 10..12.
                hdr[10..12].fill(0);
                let c = finish(add(0, &hdr[..n]));
                hdr[10..12].copy_from_slice(&c.to_be_bytes());
            }
            let h = &hdr[..n];
            assert_eq!(ipv4_header_verifies(h), verifies(add(0, h)), "{h:02x?}");
        }
        assert!(!ipv4_header_verifies(&[0; 20]));
        assert!(ipv4_header_verifies(&[0xff; 20]));
    }

    #[test]
    fn pseudo_header_carries_long_lengths() {
        // IPv6 allows an L4 length above 16 bits in principle; the sum splits it in two words.
        let z = [0u8; 16];
        assert_eq!(pseudo_header(&z, &z, 6, 0x1_0002), 6 + 1 + 2);
    }

    #[test]
    fn verify_rejects_garbage_without_panicking() {
        assert!(!verify_checksums(&[]));
        assert!(!verify_checksums(&[0x45]));
        assert!(!verify_checksums(&[0x60, 0, 0, 0, 0xff, 0xff]));
        assert!(!verify_checksums(&[0x15; 64]));
    }
}
