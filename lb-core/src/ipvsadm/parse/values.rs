//! Option values: decimal numbers in a range, numeric addresses and ports (names refused with
//! their own hint), netmasks and scheduler flags.

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::super::{ParseError, ParseErrorKind as K};
use super::lex::Tok;
use crate::addr::netmask_prefix;
use crate::config::{SchedFlags, SchedulerKind};

/// `-b flag[,flag]`: ipvsadm's names, checked against the scheduler as ipvsadm does.
pub(super) fn sched_flags(v: &Tok<'_>, sched: SchedulerKind) -> Result<SchedFlags, ParseError> {
    let mut flags = SchedFlags::default();
    let mut start = 0;
    for name in v.text.split(',') {
        let part = v.sub(start, start + name.len());
        start += name.len() + 1;
        let needs = match name {
            "sh-fallback" | "sh-port" => Some(SchedulerKind::Sh),
            "mh-fallback" | "mh-port" => Some(SchedulerKind::Mh),
            "flag-1" | "flag-2" => None,
            "flag-3" => return Err(part.err(K::Unsupported("scheduler flag-3"))),
            _ => return Err(part.err(K::UnknownSchedFlag)),
        };
        if needs.is_some_and(|s| s != sched) {
            return Err(part.err(K::SchedFlagMismatch));
        }
        match name {
            "flag-1" => flags.fallback = true,
            "flag-2" => flags.port = true,
            _ => {
                flags.set_by_name(name);
            }
        }
    }
    Ok(flags)
}

/// `-M`: a dotted IPv4 mask, or a prefix length (`N` for IPv6, `/N` for either).
pub(super) fn netmask(v: &Tok<'_>, v6: bool) -> Result<u8, ParseError> {
    let (min, max) = if v6 { (1, 128) } else { (0, 32) };
    let digits = match v.text.strip_prefix('/') {
        Some(_) => Some(v.tail(1)),
        None if v6 => Some(*v),
        None => None,
    };
    let prefix = match digits {
        Some(d) => {
            if !is_decimal(d.text) {
                return Err(v.err(K::BadNetmask));
            }
            number(&d, min, max, "netmask prefix")?
        }
        None => {
            let mask: Ipv4Addr = v.text.parse().map_err(|_| v.err(K::BadNetmask))?;
            u32::from(netmask_prefix(mask).ok_or_else(|| v.err(K::BadNetmask))?)
        }
    };
    // `max` is at most 128.
    Ok(prefix as u8)
}

/// A decimal number in `min..=max`.
pub(super) fn number(
    v: &Tok<'_>,
    min: u32,
    max: u32,
    what: &'static str,
) -> Result<u32, ParseError> {
    let t = v.text;
    if !is_decimal(t) {
        return Err(v.err(K::NotANumber(what)));
    }
    let range = K::OutOfRange { what, min, max };
    match t.parse::<u32>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(v.err(range)),
    }
}

/// A numeric address with an optional port: `a.b.c.d[:port]`, `[v6][:port]` or a bare IPv6
/// address.
pub(super) fn endpoint(v: &Tok<'_>) -> Result<(IpAddr, Option<u16>), ParseError> {
    let t = v.text;
    if let Some(inner) = t.strip_prefix('[') {
        let close = inner.find(']').ok_or_else(|| v.err(K::BadAddress))?;
        let ip: Ipv6Addr = inner[..close].parse().map_err(|_| v.err(K::BadAddress))?;
        let after = 1 + close + 1;
        let rest = &t[after..];
        if rest.is_empty() {
            return Ok((IpAddr::V6(ip), None));
        }
        if !rest.starts_with(':') {
            return Err(v.err(K::BadAddress));
        }
        return Ok((IpAddr::V6(ip), Some(port(&v.tail(after + 1))?)));
    }
    if t.bytes().filter(|&b| b == b':').count() > 1 {
        let ip: Ipv6Addr = t.parse().map_err(|_| v.err(K::BadAddress))?;
        return Ok((IpAddr::V6(ip), None));
    }
    let (host, port_tok) = match t.find(':') {
        Some(i) => (v.sub(0, i), Some(v.tail(i + 1))),
        None => (*v, None),
    };
    let ip: Ipv4Addr = match host.text.parse() {
        Ok(ip) => ip,
        Err(_) if looks_like_name(host.text) => return Err(host.err(K::HostName)),
        Err(_) => return Err(host.err(K::BadAddress)),
    };
    let port = match port_tok {
        Some(p) => Some(port(&p)?),
        None => None,
    };
    Ok((IpAddr::V4(ip), port))
}

/// A port number; a name gets its own hint.
fn port(v: &Tok<'_>) -> Result<u16, ParseError> {
    let t = v.text;
    if is_decimal(t) {
        if let Ok(p) = t.parse::<u16>() {
            return Ok(p);
        }
    } else if looks_like_name(t) {
        return Err(v.err(K::PortName));
    }
    Err(v.err(K::BadPort))
}

/// Whether `t` is a non-empty run of ASCII digits.
fn is_decimal(t: &str) -> bool {
    !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit())
}

/// Whether `t` reads as a DNS or service name: letters, digits, `-`, `_` and `.`, with at least
/// one letter.
fn looks_like_name(t: &str) -> bool {
    t.bytes().any(|b| b.is_ascii_alphabetic())
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}
