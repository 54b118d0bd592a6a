//! The fuzz harness lives in `lb-core/tests/harness` so that `cargo test` can replay saved
//! crash inputs through the very same code (`lb-core/tests/fuzz_regressions.rs`); this crate
//! only includes it. See FUZZING.md.

#[path = "../../lb-core/tests/harness/mod.rs"]
pub mod harness;

/// lb-tun's request decoder and encoder, in the shape [`harness::control::run`] takes.
pub mod lbadm {
    use crate::harness::control::Request;
    use lb_tun::control::{read_request, write_request, Request as TunRequest};

    pub fn decode(r: &mut &[u8]) -> Option<Request> {
        read_request(r).ok().map(|q| (q.args, q.stdin))
    }

    pub fn encode(q: &Request) -> Option<Vec<u8>> {
        let req = TunRequest {
            args: q.0.clone(),
            stdin: q.1.clone(),
        };
        let mut out = Vec::new();
        write_request(&mut out, &req).ok()?;
        Some(out)
    }
}

/// lb-tun's TUN offloads (`lb_tun::offload`) on arbitrary bytes: the first ten are a virtio-net
/// header (read field by field, so that headers `VnetHdr::parse` refuses reach `segment` too),
/// the rest the packet. Nothing panics; a segmentation that succeeds gives complete packets
/// (every checksum verifies, by lb-testkit's own sums), no longer than the buffer, whose
/// payloads concatenate to the packet's; a checksum `prepare_for_balancer` leaves partial for
/// lb-core has its field inside the packet.
pub mod offload {
    use lb_testkit::pkt;
    use lb_tun::offload::{complete_checksum, prepare_for_balancer, segment, VnetHdr};

    /// The TCP (data offset) or UDP (8 bytes) header's length: `segment` cuts both (TSO, USO).
    fn l4_header_len(proto: u8, l4: &[u8]) -> usize {
        if proto == pkt::UDP {
            8
        } else {
            usize::from(l4[12] >> 4) * 4
        }
    }

    pub fn run(data: &[u8]) {
        let Some((h, pkt)) = data.split_first_chunk::<10>() else {
            return;
        };
        let _ = VnetHdr::parse(h);
        let u = |i: usize| u16::from_ne_bytes([h[i], h[i + 1]]);
        let hdr = VnetHdr {
            flags: h[0],
            gso_type: h[1],
            hdr_len: u(2),
            gso_size: u(4) % 4096,
            csum_start: u(6) % 128,
            csum_offset: u(8) % 32,
        };
        let mut out = [0u8; 8192];
        // The segment buffer: all of it, less `hdr_len` bytes (modulo).
        let out_len = out.len() - usize::from(u(2)) % (out.len() - 64);
        let mut joined = Vec::new();
        let mut count = 0;
        let r = segment(pkt, &hdr, &mut out[..out_len], |s| {
            assert!(s.len() <= out_len);
            assert!(pkt::checksums_ok(s), "a segment's checksums: {s:02x?}");
            let (proto, l4, _, _) = pkt::split(s).expect("a segment is an IP packet");
            joined.extend_from_slice(&l4[l4_header_len(proto, l4)..]);
            count += 1;
        });
        if let Ok(n) = r {
            assert_eq!(n, count);
            let (proto, l4, _, _) = pkt::split(pkt).expect("segmented an IP packet");
            assert_eq!(
                joined,
                &l4[l4_header_len(proto, l4)..],
                "the payloads concatenate to the packet's"
            );
        }
        let _ = complete_checksum(&mut pkt.to_vec(), &hdr);
        let mut p = pkt.to_vec();
        if prepare_for_balancer(&mut p, &hdr) == Ok(true) {
            complete_checksum(&mut p, &hdr).expect("a field inside the packet");
        }
    }
}
