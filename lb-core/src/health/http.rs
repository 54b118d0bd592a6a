//! The byte side of an HTTP probe, as pure functions a transport calls: the request to send
//! ([`write_request`]) and the verdict on the response it read ([`evaluate_response`]: status
//! in the accepted set, then the MD5 of the body as keepalived's `genhash` prints it — the bytes
//! after the header, bounded by Content-Length, no chunked decoding).

use core::fmt::Write as _;
use core::net::SocketAddr;

use md5::{Digest, Md5};

use super::config::HttpUrl;
use super::state::ProbeOutcome;

/// The `User-Agent` a probe sends (keepalived's).
pub const HTTP_USER_AGENT: &str = "KeepAliveClient";

/// Writes the request for `url` to `host` into `buf`: `GET path HTTP/1.1` with `Connection:
/// close`, or HTTP/1.0 when a digest is checked (so the server does not answer chunked: the
/// digest is of the raw body bytes, as keepalived hashes them). The length written, or `None`
/// if `buf` is too small.
pub fn write_request(url: &HttpUrl, host: SocketAddr, buf: &mut [u8]) -> Option<usize> {
    struct Cursor<'b> {
        buf: &'b mut [u8],
        len: usize,
    }
    impl core::fmt::Write for Cursor<'_> {
        fn write_str(&mut self, s: &str) -> core::fmt::Result {
            let end = self.len + s.len();
            let dst = self.buf.get_mut(self.len..end).ok_or(core::fmt::Error)?;
            dst.copy_from_slice(s.as_bytes());
            self.len = end;
            Ok(())
        }
    }
    let mut c = Cursor { buf, len: 0 };
    let version = if url.digest.is_some() { "1.0" } else { "1.1" };
    write!(
        c,
        "GET {} HTTP/{version}\r\nUser-Agent: {HTTP_USER_AGENT}\r\nHost: {host}\r\nConnection: close\r\n\r\n",
        url.path
    )
    .ok()?;
    Some(c.len)
}

/// The outcome of `response` (everything the server sent, up to the transport's limit) for
/// `url`: `Ok`, `HttpStatus(code)` when the status is not accepted, `DigestMismatch`, or
/// `BadResponse` when there is no status line, no end of header, or fewer body bytes than
/// Content-Length says while a digest is checked.
pub fn evaluate_response(url: &HttpUrl, response: &[u8]) -> ProbeOutcome {
    let Some(head_end) = find(response, b"\r\n\r\n") else {
        return ProbeOutcome::BadResponse;
    };
    let head = &response[..head_end];
    let Some(code) = status_code(head) else {
        return ProbeOutcome::BadResponse;
    };
    if !url.status.accepts(code) {
        return ProbeOutcome::HttpStatus(code);
    }
    let Some(want) = url.digest else {
        return ProbeOutcome::Ok;
    };
    let mut body = &response[head_end + 4..];
    if let Some(len) = content_length(head) {
        match body.get(..len) {
            Some(b) => body = b,
            None => return ProbeOutcome::BadResponse,
        }
    }
    let got: [u8; 16] = Md5::digest(body).into();
    if got == want {
        ProbeOutcome::Ok
    } else {
        ProbeOutcome::DigestMismatch
    }
}

/// The code of a `HTTP/1.x NNN reason` status line.
fn status_code(head: &[u8]) -> Option<u16> {
    let line = head.split(|&b| b == b'\r').next()?;
    let rest = line.strip_prefix(b"HTTP/")?;
    let sp = rest.iter().position(|&b| b == b' ')?;
    let code = rest.get(sp + 1..sp + 4)?;
    if !code.iter().all(u8::is_ascii_digit) || rest.get(sp + 4).is_some_and(|&b| b != b' ') {
        return None;
    }
    let code = code.iter().fold(0u16, |n, &d| n * 10 + u16::from(d - b'0'));
    (100..=599).contains(&code).then_some(code)
}

/// The Content-Length header's value, if present and a number.
fn content_length(head: &[u8]) -> Option<usize> {
    head.split(|&b| b == b'\n').skip(1).find_map(|line| {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let colon = line.iter().position(|&b| b == b':')?;
        let (name, value) = line.split_at(colon);
        if !name.eq_ignore_ascii_case(b"content-length") {
            return None;
        }
        let v = core::str::from_utf8(&value[1..]).ok()?.trim();
        v.parse().ok()
    })
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(path: &str) -> HttpUrl {
        HttpUrl::new(path).unwrap()
    }

    #[test]
    fn request_is_keepalived_like() {
        let mut buf = [0u8; 256];
        let n = write_request(&url("/healthz"), "10.1.0.1:8080".parse().unwrap(), &mut buf);
        let text = core::str::from_utf8(&buf[..n.unwrap()]).unwrap();
        assert_eq!(
            text,
            "GET /healthz HTTP/1.1\r\nUser-Agent: KeepAliveClient\r\nHost: 10.1.0.1:8080\r\nConnection: close\r\n\r\n"
        );
        let mut d = url("/");
        d.digest = Some([0; 16]);
        let n = write_request(&d, "10.1.0.1:80".parse().unwrap(), &mut buf).unwrap();
        assert!(buf[..n].starts_with(b"GET / HTTP/1.0\r\n"));
        assert_eq!(
            write_request(&d, "10.1.0.1:80".parse().unwrap(), &mut buf[..20]),
            None
        );
    }

    #[test]
    fn status_sets() {
        let u = url("/");
        assert_eq!(
            evaluate_response(&u, b"HTTP/1.1 204 No Content\r\n\r\n"),
            ProbeOutcome::Ok
        );
        assert_eq!(
            evaluate_response(&u, b"HTTP/1.1 503 Busy\r\nX: y\r\n\r\nbody"),
            ProbeOutcome::HttpStatus(503)
        );
        let mut only = url("/");
        only.status.ranges.push((301, 302)).unwrap();
        assert_eq!(
            evaluate_response(&only, b"HTTP/1.0 302 Found\r\n\r\n"),
            ProbeOutcome::Ok
        );
        assert_eq!(
            evaluate_response(&only, b"HTTP/1.0 200 OK\r\n\r\n"),
            ProbeOutcome::HttpStatus(200)
        );
        for bad in [
            &b"HTTP/1.1 200 OK\r\n"[..],
            b"SSH-2.0\r\n\r\n",
            b"HTTP/1.1 2000\r\n\r\n",
            b"",
        ] {
            assert_eq!(evaluate_response(&u, bad), ProbeOutcome::BadResponse);
        }
    }

    #[test]
    fn digest_of_body_bounded_by_content_length() {
        // MD5("hello") = 5d41402abc4b2a76b9719d911017c592 (RFC 1321 test suite style; also
        // what `genhash` prints for a body "hello").
        let mut u = url("/");
        u.digest = Some([
            0x5d, 0x41, 0x40, 0x2a, 0xbc, 0x4b, 0x2a, 0x76, 0xb9, 0x71, 0x9d, 0x91, 0x10, 0x17,
            0xc5, 0x92,
        ]);
        let ok = b"HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\nhello";
        assert_eq!(evaluate_response(&u, ok), ProbeOutcome::Ok);
        // Bytes past Content-Length are not hashed.
        let extra = b"HTTP/1.0 200 OK\r\ncontent-length: 5\r\n\r\nhelloXX";
        assert_eq!(evaluate_response(&u, extra), ProbeOutcome::Ok);
        // No Content-Length: everything after the header.
        assert_eq!(
            evaluate_response(&u, b"HTTP/1.0 200 OK\r\n\r\nhello"),
            ProbeOutcome::Ok
        );
        assert_eq!(
            evaluate_response(&u, b"HTTP/1.0 200 OK\r\n\r\nhellp"),
            ProbeOutcome::DigestMismatch
        );
        assert_eq!(
            evaluate_response(&u, b"HTTP/1.0 200 OK\r\nContent-Length: 9\r\n\r\nhello"),
            ProbeOutcome::BadResponse
        );
        // The status is checked first.
        assert_eq!(
            evaluate_response(&u, b"HTTP/1.0 500 Oops\r\n\r\nhello"),
            ProbeOutcome::HttpStatus(500)
        );
    }
}
