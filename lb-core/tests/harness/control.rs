//! The `control` target: lb-tun's lbadm wire format, then the argv it carries.
//!
//! lb-core cannot depend on lb-tun, so the decoder and encoder come in as functions (the fuzz
//! target and lb-tun's regression test pass `lb_tun::control::{read_request, write_request}`).
//! Checks: decoding arbitrary bytes never panics; a decoded request encodes back to exactly the
//! bytes it was read from, and decodes again to itself; its argv goes through
//! [`grammar::check_argv`](super::grammar::check_argv).

use std::string::String;
use std::vec::Vec;

use super::grammar;

/// A decoded request: argv and the optional standard input.
pub type Request = (Vec<String>, Option<String>);

/// Runs one input. `decode` reads a request from the front of the slice (advancing it) or
/// fails; `encode` writes one.
pub fn run(
    data: &[u8],
    decode: impl Fn(&mut &[u8]) -> Option<Request>,
    encode: impl Fn(&Request) -> Option<Vec<u8>>,
) {
    let mut rest = data;
    let Some(req) = decode(&mut rest) else {
        return;
    };
    let consumed = &data[..data.len() - rest.len()];
    let bytes = encode(&req).expect("a decoded request encodes");
    assert_eq!(bytes, consumed, "re-encoding differs from the bytes read");
    let mut again = &bytes[..];
    assert_eq!(
        decode(&mut again),
        Some(req.clone()),
        "does not decode to itself"
    );
    assert!(again.is_empty());
    if req.0.len() <= 64 && req.1.as_ref().is_none_or(|s| s.len() <= 1 << 16) {
        grammar::check_argv(&req.0, req.1.as_deref());
    }
}
