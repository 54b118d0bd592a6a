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
