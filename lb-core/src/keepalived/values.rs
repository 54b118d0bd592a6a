//! Values of keywords: counts, `<TIMER>`s, booleans, addresses, ports, netmasks, status codes,
//! MD5 digests and text, each checked with a message naming what was expected.

use core::net::{IpAddr, Ipv4Addr};

use super::ast::{StatusCodes, Text, TEXT_CAP};
use super::error::ErrorKind as K;
use super::lex::Stmt;
use super::Fault;
use crate::addr::netmask_prefix;
use crate::time::Duration;

/// The statement's one argument.
pub(crate) fn one<'a>(s: &Stmt<'a>, what: &'static str) -> Result<&'a str, Fault<'a>> {
    match s.args() {
        [v] => Ok(v),
        [] => Err(s.fault(s.keyword(), K::MissingValue(what))),
        [_, extra, ..] => Err(s.fault(extra, K::ExtraArgument)),
    }
}

/// The statement's argument, if it has one.
pub(crate) fn optional<'a>(s: &Stmt<'a>) -> Result<Option<&'a str>, Fault<'a>> {
    match s.args() {
        [] => Ok(None),
        [v] => Ok(Some(v)),
        [_, extra, ..] => Err(s.fault(extra, K::ExtraArgument)),
    }
}

/// No arguments.
pub(crate) fn none<'a>(s: &Stmt<'a>) -> Result<(), Fault<'a>> {
    match s.args().first() {
        None => Ok(()),
        Some(extra) => Err(s.fault(extra, K::ExtraArgument)),
    }
}

/// A decimal integer in `min..=max`.
pub(crate) fn uint<'a>(
    s: &Stmt<'a>,
    v: &'a str,
    min: u64,
    max: u64,
    what: &'static str,
) -> Result<u64, Fault<'a>> {
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return Err(s.fault(v, K::BadValue("a decimal number")));
    }
    match v.parse::<u64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(s.fault(v, K::OutOfRange { what, min, max })),
    }
}

/// The statement's one argument as an integer in `min..=max` that fits a `u32`.
pub(crate) fn count<'a>(
    s: &Stmt<'a>,
    min: u32,
    max: u32,
    what: &'static str,
) -> Result<u32, Fault<'a>> {
    let v = one(s, what)?;
    // `max` is a u32.
    Ok(uint(s, v, min.into(), max.into(), what)? as u32)
}

/// The longest timer accepted: 31 days, as ipvsadm's timeouts.
const MAX_TIMER_MS: u64 = 31 * 86_400_000;

/// A `<TIMER>`: decimal seconds, with up to three fractional digits here (keepalived takes
/// six: finer than a millisecond is refused). `positive`: 0 is refused.
pub(crate) fn timer<'a>(s: &Stmt<'a>, positive: bool) -> Result<Duration, Fault<'a>> {
    const WHAT: &str = "seconds (a decimal number, e.g. 2 or 0.5)";
    let v = one(s, WHAT)?;
    let (int, frac) = v.split_once('.').unwrap_or((v, ""));
    let digits = |t: &str| t.bytes().all(|b| b.is_ascii_digit());
    if int.is_empty() || !digits(int) || !digits(frac) || frac.len() > 6 {
        return Err(s.fault(v, K::BadValue(WHAT)));
    }
    let (ms_part, sub_ms) = frac.split_at(frac.len().min(3));
    if sub_ms.bytes().any(|b| b != b'0') {
        return Err(s.fault(
            v,
            K::Unsupported("timers finer than a millisecond (lb's clock ticks in milliseconds)"),
        ));
    }
    let range = K::OutOfRange {
        what: "timer (ms)",
        min: u64::from(positive),
        max: MAX_TIMER_MS,
    };
    let secs: u64 = int.parse().map_err(|_| s.fault(v, range))?;
    let mut ms: u64 = 0;
    for (i, b) in ms_part.bytes().enumerate() {
        ms += u64::from(b - b'0') * [100, 10, 1][i];
    }
    let total = secs.saturating_mul(1000).saturating_add(ms);
    if total > MAX_TIMER_MS || (positive && total == 0) {
        return Err(s.fault(v, range));
    }
    Ok(Duration::from_millis(total))
}

/// A flag with an optional `<BOOL>`: bare means true.
pub(crate) fn flag<'a>(s: &Stmt<'a>) -> Result<bool, Fault<'a>> {
    match optional(s)? {
        None => Ok(true),
        Some(v) => {
            let is = |w: &str| v.eq_ignore_ascii_case(w);
            if is("on") || is("true") || is("yes") {
                Ok(true)
            } else if is("off") || is("false") || is("no") {
                Ok(false)
            } else {
                Err(s.fault(v, K::BadValue("on, off, true, false, yes or no")))
            }
        }
    }
}

/// A numeric IPv4 or IPv6 address (names are not resolved).
pub(crate) fn ip<'a>(s: &Stmt<'a>, v: &'a str) -> Result<IpAddr, Fault<'a>> {
    v.parse().map_err(|_| {
        s.fault(
            v,
            K::BadValue("a numeric IPv4 or IPv6 address (names are not resolved)"),
        )
    })
}

/// A port number.
pub(crate) fn port<'a>(s: &Stmt<'a>, v: &'a str) -> Result<u16, Fault<'a>> {
    // 65535 fits a u16.
    Ok(uint(s, v, 0, 65535, "port")? as u16)
}

/// `persistence_granularity`: a dotted IPv4 netmask, or a prefix length (`N` or `/N`).
pub(crate) fn netmask<'a>(s: &Stmt<'a>, v6: bool) -> Result<u8, Fault<'a>> {
    const WHAT: &str = "a netmask (255.255.255.0) or a prefix length (24, /64)";
    let v = one(s, WHAT)?;
    let max = if v6 { 128 } else { 32 };
    let digits = v.strip_prefix('/').unwrap_or(v);
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        // `max` ≤ 128.
        return Ok(uint(s, digits, 1, max, "netmask prefix length")? as u8);
    }
    if !v6 {
        if let Some(p) = v.parse::<Ipv4Addr>().ok().and_then(netmask_prefix) {
            return Ok(p);
        }
    }
    Err(s.fault(v, K::BadValue(WHAT)))
}

/// `digest`: 32 hexadecimal digits (an MD5, as keepalived's `genhash` prints it).
pub(crate) fn digest<'a>(s: &Stmt<'a>) -> Result<[u8; 16], Fault<'a>> {
    const WHAT: &str = "32 hexadecimal digits (an MD5 sum)";
    let v = one(s, WHAT)?;
    let b = v.as_bytes();
    if b.len() != 32 {
        return Err(s.fault(v, K::BadValue(WHAT)));
    }
    let mut out = [0u8; 16];
    for (i, o) in out.iter_mut().enumerate() {
        let hex = |c: u8| (c as char).to_digit(16);
        match (hex(b[2 * i]), hex(b[2 * i + 1])) {
            // Each digit < 16.
            (Some(h), Some(l)) => *o = (h * 16 + l) as u8,
            _ => return Err(s.fault(v, K::BadValue(WHAT))),
        }
    }
    Ok(out)
}

/// `status_code`: codes and ranges (`200`, `200-299`), 100..=599, separated by spaces or
/// commas.
pub(crate) fn status_codes<'a>(s: &Stmt<'a>) -> Result<StatusCodes, Fault<'a>> {
    const WHAT: &str = "HTTP status codes or ranges (200 204 300-399)";
    if s.args().is_empty() {
        return Err(s.fault(s.keyword(), K::MissingValue(WHAT)));
    }
    let mut set = StatusCodes::EMPTY;
    for &arg in s.args() {
        for part in arg.split(',').filter(|p| !p.is_empty()) {
            let (lo, hi) = part.split_once('-').unwrap_or((part, part));
            let code = |t: &'a str| uint(s, t, 100, 599, "HTTP status code").map(|n| n as u16);
            let (lo, hi) = (code(lo)?, code(hi)?);
            if lo > hi {
                return Err(s.fault(part, K::BadValue(WHAT)));
            }
            set.insert_range(lo, hi);
        }
    }
    Ok(set)
}

/// A text value of at most [`TEXT_CAP`] bytes.
pub(crate) fn text<'a>(s: &Stmt<'a>, what: &'static str) -> Result<Text, Fault<'a>> {
    let v = one(s, what)?;
    let mut t = Text::new();
    t.push_str(v).map_err(|_| {
        s.fault(
            v,
            K::OutOfRange {
                what: "length in bytes",
                min: 1,
                max: TEXT_CAP as u64,
            },
        )
    })?;
    if v.is_empty() {
        return Err(s.fault(s.keyword(), K::MissingValue(what)));
    }
    Ok(t)
}
