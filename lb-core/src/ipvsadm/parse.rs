//! The parser: tokens → option slots → a typed [`Command`].
//!
//! Three passes over fixed-size state, no allocation:
//! 1. recognise each token (short groups like `-Ln`, `-w3`; long `--weight 3` or `--weight=3`;
//!    `-p`'s optional value), file it in its slot, refuse duplicates;
//! 2. check the options against the command (ipvsadm's `commands_v_options` table);
//! 3. parse the values and apply ipvsadm's defaults and cross-checks.

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::{
    Command, ListOptions, ListView, ParseError, ParseErrorKind as K, Setting,
    DEFAULT_PERSISTENCE_SECS, MAX_TIMEOUT_SECS,
};
use crate::addr::{netmask_prefix, Protocol};
use crate::config::{
    ForwardMethod, Persistence, SchedFlags, SchedulerKind, ServerConfig, ServiceConfig, ServiceKey,
    Timeouts,
};

/// Parses one line of a configuration file or of the control socket.
///
/// Tokens are separated by whitespace; a token starting with `#` starts a comment that runs to
/// the end of the line. An empty or comment-only line gives `Ok(None)`. Errors carry the token
/// index and its byte range in `line`.
pub fn parse_line(line: &str) -> Result<Option<Command>, ParseError> {
    let mut toks = LineTokens {
        line,
        pos: 0,
        idx: 0,
    }
    .peekable();
    if toks.peek().is_none() {
        return Ok(None);
    }
    parse_tokens(toks).map(Some)
}

/// Parses an argv, **without** the program name (pass `std::env::args().skip(1)`'s strings).
///
/// Like ipvsadm, no argument at all means `-L`. Errors carry the token index (0 = the first
/// argument after the program name) and no span.
pub fn parse_args<'a, I: IntoIterator<Item = &'a str>>(args: I) -> Result<Command, ParseError> {
    let mut toks = args
        .into_iter()
        .enumerate()
        .map(|(idx, text)| Tok {
            idx,
            text,
            span: None,
        })
        .peekable();
    if toks.peek().is_none() {
        return Ok(Command::List(ListOptions::default()));
    }
    parse_tokens(toks)
}

/// One token, or the value part of one (`-w3`, `--weight=3`).
#[derive(Clone, Copy, Debug)]
struct Tok<'a> {
    idx: usize,
    text: &'a str,
    span: Option<(usize, usize)>,
}

impl<'a> Tok<'a> {
    fn err(&self, kind: K) -> ParseError {
        ParseError::new(self.idx, self.span, self.text, kind)
    }

    /// The part of this token from byte `from` on; `from` must be a char boundary.
    fn tail(&self, from: usize) -> Tok<'a> {
        self.sub(from, self.text.len())
    }

    /// The part of this token in `from..to`; both must be char boundaries.
    fn sub(&self, from: usize, to: usize) -> Tok<'a> {
        Tok {
            idx: self.idx,
            text: self.text.get(from..to).unwrap_or(""),
            span: self.span.map(|(s, _)| (s + from, s + to)),
        }
    }
}

/// Splits a line at whitespace, stopping at a `#` comment.
struct LineTokens<'a> {
    line: &'a str,
    pos: usize,
    idx: usize,
}

impl<'a> Iterator for LineTokens<'a> {
    type Item = Tok<'a>;

    fn next(&mut self) -> Option<Tok<'a>> {
        let rest = self.line.get(self.pos..)?;
        let start = self.pos + (rest.len() - rest.trim_start().len());
        let rest = self.line.get(start..)?;
        if rest.is_empty() || rest.starts_with('#') {
            self.pos = self.line.len();
            return None;
        }
        let len = rest.find(char::is_whitespace).unwrap_or(rest.len());
        let end = start + len;
        self.pos = end;
        let tok = Tok {
            idx: self.idx,
            text: &rest[..len],
            span: Some((start, end)),
        };
        self.idx += 1;
        Some(tok)
    }
}

/// What an option means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Flag {
    AddService,
    EditService,
    DelService,
    AddServer,
    EditServer,
    DelServer,
    Clear,
    Zero,
    SetTimeouts,
    List,
    Save,
    Restore,
    ConnReuseMode,
    ExpireNodestConn,
    ExpireQuiescentTemplate,
    SecureTcp,
    DropEntry,
    SloppyTcp,
    Tcp,
    Udp,
    Fwmark,
    Ipv6,
    Scheduler,
    SchedFlags,
    Persistent,
    Netmask,
    Ops,
    TableSize,
    RealServer,
    Masq,
    Route,
    Tunnel,
    Weight,
    UThreshold,
    LThreshold,
    TunType,
    Numeric,
    Connection,
    Stats,
    Rate,
    Thresholds,
    Timeout,
    Exact,
    Sort,
}

/// Where an option is filed; options sharing a slot exclude each other.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Slot {
    Command,
    Service,
    Ipv6,
    Scheduler,
    SchedFlags,
    Persistent,
    Netmask,
    Ops,
    TableSize,
    RealServer,
    Method,
    Weight,
    UThreshold,
    LThreshold,
    TunType,
    Numeric,
    Connection,
    Stats,
    Rate,
    Thresholds,
    Timeout,
    Exact,
    Sort,
}

const SLOTS: usize = Slot::Sort as usize + 1;

const ALL_SLOTS: [Slot; SLOTS] = [
    Slot::Command,
    Slot::Service,
    Slot::Ipv6,
    Slot::Scheduler,
    Slot::SchedFlags,
    Slot::Persistent,
    Slot::Netmask,
    Slot::Ops,
    Slot::TableSize,
    Slot::RealServer,
    Slot::Method,
    Slot::Weight,
    Slot::UThreshold,
    Slot::LThreshold,
    Slot::TunType,
    Slot::Numeric,
    Slot::Connection,
    Slot::Stats,
    Slot::Rate,
    Slot::Thresholds,
    Slot::Timeout,
    Slot::Exact,
    Slot::Sort,
];

impl Flag {
    const fn slot(self) -> Slot {
        use Flag as F;
        match self {
            F::AddService
            | F::EditService
            | F::DelService
            | F::AddServer
            | F::EditServer
            | F::DelServer
            | F::Clear
            | F::Zero
            | F::SetTimeouts
            | F::List
            | F::Save
            | F::Restore
            | F::ConnReuseMode
            | F::ExpireNodestConn
            | F::ExpireQuiescentTemplate
            | F::SecureTcp
            | F::DropEntry
            | F::SloppyTcp => Slot::Command,
            F::Tcp | F::Udp | F::Fwmark => Slot::Service,
            F::Ipv6 => Slot::Ipv6,
            F::Scheduler => Slot::Scheduler,
            F::SchedFlags => Slot::SchedFlags,
            F::Persistent => Slot::Persistent,
            F::Netmask => Slot::Netmask,
            F::Ops => Slot::Ops,
            F::TableSize => Slot::TableSize,
            F::RealServer => Slot::RealServer,
            F::Masq | F::Route | F::Tunnel => Slot::Method,
            F::Weight => Slot::Weight,
            F::UThreshold => Slot::UThreshold,
            F::LThreshold => Slot::LThreshold,
            F::TunType => Slot::TunType,
            F::Numeric => Slot::Numeric,
            F::Connection => Slot::Connection,
            F::Stats => Slot::Stats,
            F::Rate => Slot::Rate,
            F::Thresholds => Slot::Thresholds,
            F::Timeout => Slot::Timeout,
            F::Exact => Slot::Exact,
            F::Sort => Slot::Sort,
        }
    }

    /// The command's short spelling, for "not valid with -A" messages.
    const fn command_name(self) -> &'static str {
        use Flag as F;
        match self {
            F::AddService => "-A",
            F::EditService => "-E",
            F::DelService => "-D",
            F::AddServer => "-a",
            F::EditServer => "-e",
            F::DelServer => "-d",
            F::Clear => "-C",
            F::Zero => "-Z",
            F::SetTimeouts => "--set",
            F::List => "-L",
            F::Save => "-S",
            F::Restore => "-R",
            F::ConnReuseMode => "--conn-reuse-mode",
            F::ExpireNodestConn => "--expire-nodest-conn",
            F::ExpireQuiescentTemplate => "--expire-quiescent-template",
            F::SecureTcp => "--secure-tcp",
            F::DropEntry => "--drop-entry",
            F::SloppyTcp => "--sloppy-tcp",
            _ => "this command",
        }
    }

    /// Whether option slot `slot` may appear with this command (`self` is a command flag).
    /// ipvsadm's `commands_v_options`, restricted to the options we know.
    const fn allows(self, slot: Slot) -> bool {
        use Flag as F;
        use Slot as S;
        match self {
            F::AddService | F::EditService => matches!(
                slot,
                S::Service
                    | S::Ipv6
                    | S::Scheduler
                    | S::SchedFlags
                    | S::Persistent
                    | S::Netmask
                    | S::Ops
                    | S::TableSize
            ),
            F::DelService | F::Zero => matches!(slot, S::Service | S::Ipv6),
            F::AddServer | F::EditServer => matches!(
                slot,
                S::Service
                    | S::Ipv6
                    | S::RealServer
                    | S::Method
                    | S::Weight
                    | S::UThreshold
                    | S::LThreshold
                    | S::TunType
            ),
            F::DelServer => matches!(slot, S::Service | S::Ipv6 | S::RealServer),
            F::List => matches!(
                slot,
                S::Service
                    | S::Ipv6
                    | S::Numeric
                    | S::Connection
                    | S::Stats
                    | S::Rate
                    | S::Thresholds
                    | S::Timeout
                    | S::Exact
                    | S::Sort
            ),
            F::Save => matches!(slot, S::Numeric),
            _ => false,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Arg {
    No,
    Required,
    Optional,
}

struct Spec {
    short: u8,
    long: &'static str,
    flag: Flag,
    arg: Arg,
}

const fn spec(short: u8, long: &'static str, flag: Flag, arg: Arg) -> Spec {
    Spec {
        short,
        long,
        flag,
        arg,
    }
}

/// Every option we know. `short` 0 means long only.
const SPECS: &[Spec] = &[
    spec(b'A', "add-service", Flag::AddService, Arg::No),
    spec(b'E', "edit-service", Flag::EditService, Arg::No),
    spec(b'D', "delete-service", Flag::DelService, Arg::No),
    spec(b'a', "add-server", Flag::AddServer, Arg::No),
    spec(b'e', "edit-server", Flag::EditServer, Arg::No),
    spec(b'd', "delete-server", Flag::DelServer, Arg::No),
    spec(b'C', "clear", Flag::Clear, Arg::No),
    spec(b'Z', "zero", Flag::Zero, Arg::No),
    spec(0, "set", Flag::SetTimeouts, Arg::No),
    spec(b'L', "list", Flag::List, Arg::No),
    spec(b'l', "list", Flag::List, Arg::No),
    spec(b'S', "save", Flag::Save, Arg::No),
    spec(b'R', "restore", Flag::Restore, Arg::No),
    spec(0, "conn-reuse-mode", Flag::ConnReuseMode, Arg::Required),
    spec(
        0,
        "expire-nodest-conn",
        Flag::ExpireNodestConn,
        Arg::Required,
    ),
    spec(
        0,
        "expire-quiescent-template",
        Flag::ExpireQuiescentTemplate,
        Arg::Required,
    ),
    spec(0, "secure-tcp", Flag::SecureTcp, Arg::Required),
    spec(0, "drop-entry", Flag::DropEntry, Arg::Required),
    spec(0, "sloppy-tcp", Flag::SloppyTcp, Arg::Required),
    spec(b't', "tcp-service", Flag::Tcp, Arg::Required),
    spec(b'u', "udp-service", Flag::Udp, Arg::Required),
    spec(b'f', "fwmark-service", Flag::Fwmark, Arg::Required),
    spec(b'6', "ipv6", Flag::Ipv6, Arg::No),
    spec(b's', "scheduler", Flag::Scheduler, Arg::Required),
    spec(b'b', "sched-flags", Flag::SchedFlags, Arg::Required),
    spec(b'p', "persistent", Flag::Persistent, Arg::Optional),
    spec(b'M', "netmask", Flag::Netmask, Arg::Required),
    spec(b'o', "ops", Flag::Ops, Arg::No),
    spec(0, "table-size", Flag::TableSize, Arg::Required),
    spec(b'r', "real-server", Flag::RealServer, Arg::Required),
    spec(b'm', "masquerading", Flag::Masq, Arg::No),
    spec(b'g', "gatewaying", Flag::Route, Arg::No),
    spec(b'i', "ipip", Flag::Tunnel, Arg::No),
    spec(b'w', "weight", Flag::Weight, Arg::Required),
    spec(b'x', "u-threshold", Flag::UThreshold, Arg::Required),
    spec(b'y', "l-threshold", Flag::LThreshold, Arg::Required),
    spec(0, "tun-type", Flag::TunType, Arg::Required),
    spec(b'n', "numeric", Flag::Numeric, Arg::No),
    spec(b'c', "connection", Flag::Connection, Arg::No),
    spec(0, "stats", Flag::Stats, Arg::No),
    spec(0, "rate", Flag::Rate, Arg::No),
    spec(0, "thresholds", Flag::Thresholds, Arg::No),
    spec(0, "timeout", Flag::Timeout, Arg::No),
    spec(b'X', "exact", Flag::Exact, Arg::No),
    spec(0, "sort", Flag::Sort, Arg::No),
];

/// ipvsadm options we refuse, with the feature named in the error.
const UNSUPPORTED: &[(&str, &str)] = &[
    ("sctp-service", "SCTP services"),
    ("pe", "persistence engines (--pe)"),
    ("start-daemon", "the connection sync daemon"),
    ("stop-daemon", "the connection sync daemon"),
    ("daemon", "the connection sync daemon"),
    ("syncid", "the connection sync daemon"),
    ("sync-maxlen", "the connection sync daemon"),
    ("mcast-interface", "the connection sync daemon"),
    ("mcast-group", "the connection sync daemon"),
    ("mcast-port", "the connection sync daemon"),
    ("mcast-ttl", "the connection sync daemon"),
    ("tun-port", "GUE tunnels"),
    ("tun-nocsum", "GUE tunnels"),
    ("tun-csum", "GUE tunnels"),
    ("tun-remcsum", "GUE tunnels"),
    ("tun-info", "the --tun-info listing"),
    ("persistent-conn", "the --persistent-conn listing"),
    ("nosort", "unsorted listing (--nosort)"),
];

/// One filed option: its token, what it means, and its value if it takes one.
#[derive(Clone, Copy, Debug)]
struct Hit<'a> {
    opt: Tok<'a>,
    flag: Flag,
    value: Option<Tok<'a>>,
}

/// Pass 1's result.
struct Hits<'a> {
    slots: [Option<Hit<'a>>; SLOTS],
    args: [Option<Tok<'a>>; 3],
}

impl<'a> Hits<'a> {
    fn get(&self, slot: Slot) -> Option<Hit<'a>> {
        self.slots[slot as usize]
    }

    fn has(&self, slot: Slot) -> bool {
        self.slots[slot as usize].is_some()
    }

    /// The value of an option that requires one (pass 1 guarantees it is there).
    fn value(&self, slot: Slot) -> Option<Tok<'a>> {
        self.get(slot).and_then(|h| h.value)
    }

    fn file(&mut self, hit: Hit<'a>) -> Result<(), ParseError> {
        let slot = &mut self.slots[hit.flag.slot() as usize];
        if slot.is_some() {
            let kind = if hit.flag.slot() == Slot::Command {
                K::MultipleCommands
            } else {
                K::DuplicateOption
            };
            return Err(hit.opt.err(kind));
        }
        *slot = Some(hit);
        Ok(())
    }
}

fn take_value<'a, I: Iterator<Item = Tok<'a>>>(
    toks: &mut core::iter::Peekable<I>,
    opt: &Tok<'a>,
) -> Result<Tok<'a>, ParseError> {
    toks.next().ok_or_else(|| opt.err(K::MissingValue))
}

/// `-p`'s optional value: the next token, unless it is an option.
fn take_optional<'a, I: Iterator<Item = Tok<'a>>>(
    toks: &mut core::iter::Peekable<I>,
) -> Option<Tok<'a>> {
    toks.next_if(|t| !t.text.starts_with('-'))
}

/// Pass 1: file every token.
fn collect<'a, I: Iterator<Item = Tok<'a>>>(
    mut toks: core::iter::Peekable<I>,
) -> Result<Hits<'a>, ParseError> {
    let mut hits = Hits {
        slots: [None; SLOTS],
        args: [None; 3],
    };
    let mut nargs = 0;
    while let Some(t) = toks.next() {
        let text = t.text;
        if let Some(long) = text.strip_prefix("--") {
            let (name, inline) = match long.split_once('=') {
                Some((n, _)) => (n, Some(t.tail(2 + n.len() + 1))),
                None => (long, None),
            };
            let Some(spec) = SPECS.iter().find(|s| s.long == name) else {
                return Err(match UNSUPPORTED.iter().find(|(n, _)| *n == name) {
                    Some((_, what)) => t.err(K::Unsupported(what)),
                    None => t.err(K::UnknownOption),
                });
            };
            let value = match (spec.arg, inline) {
                (Arg::No, Some(_)) => return Err(t.err(K::UnexpectedValue)),
                (Arg::No, None) => None,
                (_, Some(v)) => Some(v),
                (Arg::Required, None) => Some(take_value(&mut toks, &t)?),
                (Arg::Optional, None) => take_optional(&mut toks),
            };
            hits.file(Hit {
                opt: t,
                flag: spec.flag,
                value,
            })?;
        } else if text.len() > 1 && text.starts_with('-') {
            // A group of short options: `-L`, `-Ln`, `-At`, `-w3`.
            let bytes = text.as_bytes();
            let mut i = 1;
            while i < bytes.len() {
                let c = bytes[i];
                let Some(spec) = SPECS.iter().find(|s| s.short != 0 && s.short == c) else {
                    return Err(t.err(K::UnknownOption));
                };
                i += 1;
                let value = match spec.arg {
                    Arg::No => None,
                    _ if i < bytes.len() => {
                        let v = t.tail(i);
                        i = bytes.len();
                        Some(v)
                    }
                    Arg::Required => Some(take_value(&mut toks, &t)?),
                    Arg::Optional => take_optional(&mut toks),
                };
                hits.file(Hit {
                    opt: t,
                    flag: spec.flag,
                    value,
                })?;
            }
        } else {
            if nargs == hits.args.len() {
                return Err(t.err(K::UnexpectedArgument));
            }
            hits.args[nargs] = Some(t);
            nargs += 1;
        }
    }
    Ok(hits)
}

/// Keeps the error at the smallest token index.
fn earliest(best: &mut Option<ParseError>, e: ParseError) {
    if best.as_ref().is_none_or(|b| e.token < b.token) {
        *best = Some(e);
    }
}

fn parse_tokens<'a, I: Iterator<Item = Tok<'a>>>(
    mut toks: core::iter::Peekable<I>,
) -> Result<Command, ParseError> {
    let first = toks.peek().copied();
    let hits = collect(toks)?;

    // Pass 2: a command, and only options it allows.
    let Some(cmd) = hits.get(Slot::Command) else {
        return Err(match first {
            Some(t) => t.err(K::MissingCommand),
            None => ParseError::new(0, None, "", K::MissingCommand),
        });
    };
    let mut bad = None;
    for slot in ALL_SLOTS {
        if slot == Slot::Command {
            continue;
        }
        if let Some(h) = hits.get(slot) {
            if !cmd.flag.allows(slot) {
                earliest(&mut bad, h.opt.err(K::NotValidFor(cmd.flag.command_name())));
            }
        }
    }
    if cmd.flag != Flag::SetTimeouts {
        for a in hits.args.iter().flatten() {
            earliest(&mut bad, a.err(K::UnexpectedArgument));
        }
    }
    if let Some(e) = bad {
        return Err(e);
    }

    // Pass 3: values, defaults, cross-checks.
    let need_service = || service_key(&hits)?.ok_or_else(|| cmd.opt.err(K::MissingService));
    Ok(match cmd.flag {
        Flag::AddService => Command::AddService(service_config(&hits, need_service()?)?),
        Flag::EditService => Command::EditService(service_config(&hits, need_service()?)?),
        Flag::DelService => Command::DelService(need_service()?),
        Flag::AddServer => {
            let key = need_service()?;
            Command::AddServer(key, server_config(&hits, &cmd, key)?)
        }
        Flag::EditServer => {
            let key = need_service()?;
            Command::EditServer(key, server_config(&hits, &cmd, key)?)
        }
        Flag::DelServer => {
            let key = need_service()?;
            let r = hits
                .value(Slot::RealServer)
                .ok_or_else(|| cmd.opt.err(K::MissingRealServer))?;
            let (ip, port) = endpoint(&r)?;
            Command::DelServer(key, SocketAddr::new(ip, port.unwrap_or(key_port(&key))))
        }
        Flag::Clear => Command::Clear,
        Flag::Zero => Command::Zero(service_key(&hits)?),
        Flag::SetTimeouts => {
            let mut t = [0u32; 3];
            for (slot, arg) in t.iter_mut().zip(hits.args) {
                let a = arg.ok_or_else(|| cmd.opt.err(K::MissingTimeouts))?;
                *slot = number(&a, 0, MAX_TIMEOUT_SECS, "timeout")?;
            }
            Command::SetTimeouts(Timeouts {
                tcp: t[0],
                tcp_fin: t[1],
                udp: t[2],
            })
        }
        Flag::List => Command::List(list_options(&hits)?),
        Flag::Save => Command::Save {
            numeric: hits.has(Slot::Numeric),
        },
        Flag::Restore => Command::Restore,
        setting => {
            let v = cmd.value.ok_or_else(|| cmd.opt.err(K::MissingValue))?;
            let (what, max) = match setting {
                Flag::ConnReuseMode => ("conn_reuse_mode", 3),
                Flag::SecureTcp => ("secure_tcp", 3),
                Flag::DropEntry => ("drop_entry", 3),
                Flag::ExpireNodestConn => ("expire_nodest_conn", 1),
                Flag::ExpireQuiescentTemplate => ("expire_quiescent_template", 1),
                _ => ("sloppy_tcp", 1),
            };
            // `max` ≤ 3, so the value fits a u8.
            let n = number(&v, 0, max, what)? as u8;
            Command::Set(match setting {
                Flag::ConnReuseMode => Setting::ConnReuseMode(n),
                Flag::SecureTcp => Setting::SecureTcp(n),
                Flag::DropEntry => Setting::DropEntry(n),
                Flag::ExpireNodestConn => Setting::ExpireNodestConn(n == 1),
                Flag::ExpireQuiescentTemplate => Setting::ExpireQuiescentTemplate(n == 1),
                _ => Setting::SloppyTcp(n == 1),
            })
        }
    })
}

/// The service port (0 for fwmark services).
fn key_port(key: &ServiceKey) -> u16 {
    match key {
        ServiceKey::Addr { vip, .. } => vip.port(),
        ServiceKey::Fwmark { .. } => 0,
    }
}

/// `-t|-u ADDR[:PORT]` or `-f MARK [-6]`, if given.
fn service_key(hits: &Hits<'_>) -> Result<Option<ServiceKey>, ParseError> {
    let Some(svc) = hits.get(Slot::Service) else {
        if let Some(six) = hits.get(Slot::Ipv6) {
            return Err(six.opt.err(K::Ipv6NeedsFwmark));
        }
        return Ok(None);
    };
    let Some(v) = svc.value else {
        return Err(svc.opt.err(K::MissingValue));
    };
    let key = match svc.flag {
        Flag::Fwmark => ServiceKey::Fwmark {
            mark: number(&v, 1, u32::MAX, "fwmark")?,
            v6: hits.has(Slot::Ipv6),
        },
        flag => {
            if let Some(six) = hits.get(Slot::Ipv6) {
                return Err(six.opt.err(K::Ipv6NeedsFwmark));
            }
            let (ip, port) = endpoint(&v)?;
            let proto = if flag == Flag::Udp {
                Protocol::Udp
            } else {
                Protocol::Tcp
            };
            ServiceKey::Addr {
                proto,
                vip: SocketAddr::new(ip, port.unwrap_or(0)),
            }
        }
    };
    Ok(Some(key))
}

/// `-A`/`-E`'s options on top of ipvsadm's defaults.
fn service_config(hits: &Hits<'_>, key: ServiceKey) -> Result<ServiceConfig, ParseError> {
    let mut cfg = ServiceConfig::new(key);
    if let Some(v) = hits.value(Slot::Scheduler) {
        cfg.scheduler =
            SchedulerKind::from_name(v.text).ok_or_else(|| v.err(K::UnknownScheduler))?;
    }
    if let Some(v) = hits.value(Slot::SchedFlags) {
        cfg.flags = sched_flags(&v, cfg.scheduler)?;
    }
    match hits.get(Slot::Persistent) {
        Some(p) => {
            let timeout_secs = match p.value {
                Some(v) => number(&v, 1, MAX_TIMEOUT_SECS, "persistence timeout")?,
                None => DEFAULT_PERSISTENCE_SECS,
            };
            let v6 = key.is_ipv6();
            let prefix = match hits.value(Slot::Netmask) {
                Some(m) => netmask(&m, v6)?,
                None if v6 => 128,
                None => 32,
            };
            cfg.persistence = Some(Persistence {
                timeout_secs,
                prefix,
            });
        }
        None => {
            if let Some(m) = hits.get(Slot::Netmask) {
                return Err(m.opt.err(K::NetmaskNeedsPersistence));
            }
        }
    }
    if let Some(o) = hits.get(Slot::Ops) {
        if let ServiceKey::Addr {
            proto: Protocol::Tcp,
            ..
        } = key
        {
            return Err(o.opt.err(K::OpsNeedsUdp));
        }
        cfg.one_packet = true;
    }
    if let Some(v) = hits.value(Slot::TableSize) {
        let n = number(&v, 1, u32::MAX, "table size")?;
        if !cfg.scheduler.has_table() {
            return Err(v.err(K::TableSizeNeedsHashScheduler));
        }
        cfg.table_size = Some(n);
    }
    if let (ServiceKey::Addr { vip, .. }, None) = (key, cfg.persistence) {
        if vip.port() == 0 {
            if let Some(v) = hits.value(Slot::Service) {
                return Err(v.err(K::PortZeroNeedsPersistence));
            }
        }
    }
    Ok(cfg)
}

/// `-b flag[,flag]`: ipvsadm's names, checked against the scheduler as ipvsadm does.
fn sched_flags(v: &Tok<'_>, sched: SchedulerKind) -> Result<SchedFlags, ParseError> {
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
fn netmask(v: &Tok<'_>, v6: bool) -> Result<u8, ParseError> {
    let (min, max) = if v6 { (1, 128) } else { (0, 32) };
    let digits = match v.text.strip_prefix('/') {
        Some(_) => Some(v.tail(1)),
        None if v6 => Some(*v),
        None => None,
    };
    let prefix = match digits {
        Some(d) => {
            if d.text.is_empty() || !d.text.bytes().all(|b| b.is_ascii_digit()) {
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

/// `-a`/`-e`'s options on top of ipvsadm's defaults.
fn server_config(
    hits: &Hits<'_>,
    cmd: &Hit<'_>,
    key: ServiceKey,
) -> Result<ServerConfig, ParseError> {
    let r = hits
        .value(Slot::RealServer)
        .ok_or_else(|| cmd.opt.err(K::MissingRealServer))?;
    let (ip, port) = endpoint(&r)?;
    let method = match hits.get(Slot::Method).map(|h| h.flag) {
        Some(Flag::Masq) => ForwardMethod::Masq,
        Some(Flag::Tunnel) => ForwardMethod::Tunnel,
        _ => ForwardMethod::Route,
    };
    let svc_port = key_port(&key);
    let fwmark = matches!(key, ServiceKey::Fwmark { .. });
    // ipvsadm: DR and tunnel servers of a non-fwmark service take the service port.
    let port = if !fwmark && method != ForwardMethod::Masq {
        svc_port
    } else {
        port.unwrap_or(svc_port)
    };
    if ip.is_ipv6() != key.is_ipv6() && method != ForwardMethod::Tunnel {
        return Err(r.err(K::FamilyMismatch));
    }
    let mut cfg = ServerConfig::new(SocketAddr::new(ip, port), method);
    if let Some(v) = hits.value(Slot::Weight) {
        cfg.weight = number(&v, 0, ServerConfig::MAX_WEIGHT, "weight")?;
    }
    if let Some(v) = hits.value(Slot::UThreshold) {
        cfg.u_threshold = number(&v, 0, i32::MAX as u32, "upper threshold")?;
    }
    if let Some(v) = hits.value(Slot::LThreshold) {
        cfg.l_threshold = number(&v, 0, i32::MAX as u32, "lower threshold")?;
        if cfg.l_threshold > cfg.u_threshold {
            return Err(v.err(K::ThresholdOrder));
        }
    }
    if let Some(t) = hits.get(Slot::TunType) {
        if method != ForwardMethod::Tunnel {
            return Err(t.opt.err(K::TunnelTypeNeedsTunnel));
        }
        if let Some(v) = t.value {
            match v.text {
                "ipip" => {}
                "gue" | "gre" => return Err(v.err(K::Unsupported("GUE and GRE tunnels"))),
                _ => return Err(v.err(K::UnknownTunnelType)),
            }
        }
    }
    Ok(cfg)
}

/// `-L`'s options; ipvsadm's exclusions between the views and a service.
fn list_options(hits: &Hits<'_>) -> Result<ListOptions, ParseError> {
    let mut opts = ListOptions {
        numeric: hits.has(Slot::Numeric),
        exact: hits.has(Slot::Exact),
        view: ListView::Services,
        service: service_key(hits)?,
    };
    let views = [
        (Slot::Stats, ListView::Stats),
        (Slot::Rate, ListView::Rate),
        (Slot::Thresholds, ListView::Thresholds),
        (Slot::Timeout, ListView::Timeouts),
        (Slot::Connection, ListView::Connections),
    ];
    // The first view option by position wins; any later one conflicts.
    let mut chosen: Option<Hit<'_>> = None;
    let mut conflict = None;
    for (slot, view) in views {
        let Some(h) = hits.get(slot) else { continue };
        match chosen {
            Some(c) if c.opt.idx <= h.opt.idx => {
                earliest(&mut conflict, h.opt.err(K::ConflictingOptions));
            }
            Some(c) => {
                earliest(&mut conflict, c.opt.err(K::ConflictingOptions));
                chosen = Some(h);
                opts.view = view;
            }
            None => {
                chosen = Some(h);
                opts.view = view;
            }
        }
    }
    if let (Some(c), Some(s)) = (chosen, hits.get(Slot::Service)) {
        if matches!(opts.view, ListView::Timeouts | ListView::Connections) {
            let later = if c.opt.idx > s.opt.idx { c.opt } else { s.opt };
            earliest(&mut conflict, later.err(K::ConflictingOptions));
        }
    }
    match conflict {
        Some(e) => Err(e),
        None => Ok(opts),
    }
}

/// A decimal number in `min..=max`.
fn number(v: &Tok<'_>, min: u32, max: u32, what: &'static str) -> Result<u32, ParseError> {
    let t = v.text;
    if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
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
fn endpoint(v: &Tok<'_>) -> Result<(IpAddr, Option<u16>), ParseError> {
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
    if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
        if let Ok(p) = t.parse::<u16>() {
            return Ok(p);
        }
    } else if looks_like_name(t) {
        return Err(v.err(K::PortName));
    }
    Err(v.err(K::BadPort))
}

/// Whether `t` reads as a DNS or service name: letters, digits, `-`, `_` and `.`, with at least
/// one letter.
fn looks_like_name(t: &str) -> bool {
    t.bytes().any(|b| b.is_ascii_alphabetic())
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipvsadm::ParseErrorKind;
    use proptest::prelude::*;
    use std::format;
    use std::string::{String, ToString};
    use std::vec::Vec;

    fn cmd(line: &str) -> Command {
        match parse_line(line) {
            Ok(Some(c)) => c,
            other => panic!("{line:?}: {other:?}"),
        }
    }

    fn err(line: &str) -> (usize, ParseErrorKind) {
        match parse_line(line) {
            Err(e) => (e.token, e.kind),
            other => panic!("{line:?} should fail: {other:?}"),
        }
    }

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn tcp(s: &str) -> ServiceKey {
        ServiceKey::tcp(sa(s))
    }

    fn udp(s: &str) -> ServiceKey {
        ServiceKey::udp(sa(s))
    }

    #[test]
    fn add_service_with_defaults() {
        assert_eq!(
            cmd("-A -t 10.0.0.1:80"),
            Command::AddService(ServiceConfig::new(tcp("10.0.0.1:80")))
        );
    }

    #[test]
    fn add_service_full() {
        let mut want = ServiceConfig::new(tcp("10.30.0.10:80"));
        want.scheduler = SchedulerKind::Wrr;
        want.persistence = Some(Persistence {
            timeout_secs: 300,
            prefix: 32,
        });
        assert_eq!(
            cmd("-A -t 10.30.0.10:80 -s wrr -p 300"),
            Command::AddService(want)
        );
        assert_eq!(
            cmd("--add-service --tcp-service 10.30.0.10:80 --scheduler=wrr --persistent"),
            Command::AddService(want)
        );
        // Short options grouped, values attached.
        assert_eq!(
            cmd("-At 10.30.0.10:80 -swrr -p300"),
            Command::AddService(want)
        );
    }

    #[test]
    fn persistent_optional_value() {
        let p = |line: &str| match cmd(line) {
            Command::AddService(c) | Command::EditService(c) => c.persistence,
            c => panic!("{c:?}"),
        };
        let t = |timeout_secs, prefix| {
            Some(Persistence {
                timeout_secs,
                prefix,
            })
        };
        assert_eq!(p("-A -t 10.0.0.1:80 -p"), t(300, 32));
        assert_eq!(p("-A -t 10.0.0.1:80 -p -s rr"), t(300, 32));
        assert_eq!(p("-A -t 10.0.0.1:80 -p 600 -s rr"), t(600, 32));
        assert_eq!(p("-A -t 10.0.0.1:80 --persistent=60"), t(60, 32));
        assert_eq!(p("-A -t 10.0.0.1:80 -p -M 255.255.255.0"), t(300, 24));
        assert_eq!(p("-A -t 10.0.0.1:80 -p 30 -M /16"), t(30, 16));
        assert_eq!(p("-A -t 10.0.0.1:80 -p -M 0.0.0.0"), t(300, 0));
        assert_eq!(p("-E -u [2001:db8::1]:53 -p -M 64"), t(300, 64));
        assert_eq!(p("-E -u [2001:db8::1]:53 -p --netmask /48"), t(300, 48));
        assert_eq!(p("-E -u [2001:db8::1]:53 -p"), t(300, 128));
        assert_eq!(p("-A -f 7 -6 -p 5"), t(5, 128));
        assert_eq!(p("-A -f 7 -p 5 -M 255.255.0.0"), t(5, 16));
        assert_eq!(p("-A -t 10.0.0.1:80"), None);
        // Port 0 with persistence is allowed; no port means port 0.
        match cmd("-A -t 10.0.0.1 -p") {
            Command::AddService(c) => assert_eq!(c.key, tcp("10.0.0.1:0")),
            c => panic!("{c:?}"),
        }
    }

    #[test]
    fn edit_and_delete_service() {
        let mut want = ServiceConfig::new(udp("[2001:db8::1]:53"));
        want.scheduler = SchedulerKind::Rr;
        want.one_packet = true;
        assert_eq!(
            cmd("-E -u [2001:db8::1]:53 -s rr -o"),
            Command::EditService(want)
        );
        assert_eq!(
            cmd("--edit-service --udp-service [2001:db8::1]:53 -s rr --ops"),
            Command::EditService(want)
        );
        let mark = ServiceKey::Fwmark { mark: 7, v6: true };
        assert_eq!(cmd("-D -f 7 -6"), Command::DelService(mark));
        assert_eq!(
            cmd("--delete-service --fwmark-service 7 --ipv6"),
            Command::DelService(mark)
        );
        assert_eq!(
            cmd("-D -f 4294967295"),
            Command::DelService(ServiceKey::Fwmark {
                mark: u32::MAX,
                v6: false
            })
        );
    }

    #[test]
    fn sched_flags_and_table_size() {
        let c = |line: &str| match cmd(line) {
            Command::AddService(c) => c,
            c => panic!("{c:?}"),
        };
        let both = SchedFlags {
            fallback: true,
            port: true,
        };
        assert_eq!(c("-A -f 1 -s sh -b sh-fallback,sh-port").flags, both);
        assert!(c("-A -f 1 -s mh --sched-flags mh-port").flags.port);
        assert!(c("-A -f 1 -s mh -b mh-fallback").flags.fallback);
        assert_eq!(c("-A -f 1 -s wrr -b flag-1,flag-2").flags, both);
        let mh = c("-A -f 1 -s mh --table-size 65521");
        assert_eq!(
            (mh.scheduler, mh.table_size),
            (SchedulerKind::Mh, Some(65521))
        );
        assert_eq!(c("-A -f 1 -s dh --table-size=1024").table_size, Some(1024));
    }

    #[test]
    fn add_and_edit_server() {
        let key = tcp("10.0.0.1:80");
        let mut s = ServerConfig::new(sa("10.0.1.2:8080"), ForwardMethod::Masq);
        s.weight = 3;
        s.u_threshold = 100;
        s.l_threshold = 50;
        assert_eq!(
            cmd("-a -t 10.0.0.1:80 -r 10.0.1.2:8080 -m -w 3 -x 100 -y 50"),
            Command::AddServer(key, s)
        );
        assert_eq!(
            cmd(
                "--add-server --tcp-service 10.0.0.1:80 --real-server 10.0.1.2:8080 \
                 --masquerading --weight 3 --u-threshold 100 --l-threshold=50"
            ),
            Command::AddServer(key, s)
        );
        // Defaults: service port, -g, weight 1.
        assert_eq!(
            cmd("-a -t 10.0.0.1:80 -r 10.0.1.2"),
            Command::AddServer(
                key,
                ServerConfig::new(sa("10.0.1.2:80"), ForwardMethod::Route)
            )
        );
        // -g and -i force the service port on a non-fwmark service, as ipvsadm does.
        assert_eq!(
            cmd("-e -t 10.0.0.1:80 -r 10.0.1.2:8080 --gatewaying"),
            Command::EditServer(
                key,
                ServerConfig::new(sa("10.0.1.2:80"), ForwardMethod::Route)
            )
        );
        assert_eq!(
            cmd("-a -t 10.0.0.1:80 -r 10.0.1.2:8080 --ipip --tun-type ipip"),
            Command::AddServer(
                key,
                ServerConfig::new(sa("10.0.1.2:80"), ForwardMethod::Tunnel)
            )
        );
        // ... but not on a fwmark service, whose port is 0.
        let mark = ServiceKey::Fwmark { mark: 7, v6: false };
        assert_eq!(
            cmd("-a -f 7 -r 10.0.1.2:8080 -g"),
            Command::AddServer(
                mark,
                ServerConfig::new(sa("10.0.1.2:8080"), ForwardMethod::Route)
            )
        );
        assert_eq!(
            cmd("-a -f 7 -r 10.0.1.2 -m"),
            Command::AddServer(
                mark,
                ServerConfig::new(sa("10.0.1.2:0"), ForwardMethod::Masq)
            )
        );
        // IPv6 real servers: [addr]:port, [addr], bare addr.
        let k6 = udp("[2001:db8::1]:53");
        for r in ["[2001:db8::2]:53", "[2001:db8::2]", "2001:db8::2"] {
            assert_eq!(
                cmd(&format!("-e -u [2001:db8::1]:53 -r {r} -m -w 0")),
                Command::EditServer(k6, {
                    let mut s = ServerConfig::new(sa("[2001:db8::2]:53"), ForwardMethod::Masq);
                    s.weight = 0;
                    s
                })
            );
        }
        // A tunnel may cross families.
        assert_eq!(
            cmd("-a -t 10.0.0.1:80 -r [2001:db8::2]:80 -i"),
            Command::AddServer(
                key,
                ServerConfig::new(sa("[2001:db8::2]:80"), ForwardMethod::Tunnel)
            )
        );
        // Weight and thresholds at their limits; -y equal to -x is fine.
        match cmd("-a -t 10.0.0.1:80 -r 10.0.1.2 -w 65535 -x 2147483647 -y 2147483647") {
            Command::AddServer(_, s) => {
                assert_eq!(
                    (s.weight, s.u_threshold, s.l_threshold),
                    (65535, i32::MAX as u32, i32::MAX as u32)
                )
            }
            c => panic!("{c:?}"),
        }
    }

    #[test]
    fn delete_server() {
        let key = tcp("10.0.0.1:80");
        assert_eq!(
            cmd("-d -t 10.0.0.1:80 -r 10.0.1.2:8080"),
            Command::DelServer(key, sa("10.0.1.2:8080"))
        );
        assert_eq!(
            cmd("--delete-server -t 10.0.0.1:80 -r 10.0.1.2"),
            Command::DelServer(key, sa("10.0.1.2:80"))
        );
    }

    #[test]
    fn table_wide_commands() {
        assert_eq!(cmd("-C"), Command::Clear);
        assert_eq!(cmd("--clear"), Command::Clear);
        assert_eq!(cmd("-Z"), Command::Zero(None));
        assert_eq!(
            cmd("--zero -t 10.0.0.1:80"),
            Command::Zero(Some(tcp("10.0.0.1:80")))
        );
        assert_eq!(
            cmd("--set 900 120 300"),
            Command::SetTimeouts(Timeouts {
                tcp: 900,
                tcp_fin: 120,
                udp: 300
            })
        );
        assert_eq!(
            cmd("--set 0 0 2678400"),
            Command::SetTimeouts(Timeouts {
                tcp: 0,
                tcp_fin: 0,
                udp: MAX_TIMEOUT_SECS
            })
        );
        assert_eq!(cmd("-S"), Command::Save { numeric: false });
        assert_eq!(cmd("-S -n"), Command::Save { numeric: true });
        assert_eq!(cmd("--save --numeric"), Command::Save { numeric: true });
        assert_eq!(cmd("-Sn"), Command::Save { numeric: true });
        assert_eq!(cmd("-R"), Command::Restore);
        assert_eq!(cmd("--restore"), Command::Restore);
    }

    #[test]
    fn settings() {
        let s = |line: &str| match cmd(line) {
            Command::Set(s) => s,
            c => panic!("{c:?}"),
        };
        assert_eq!(s("--conn-reuse-mode 0"), Setting::ConnReuseMode(0));
        assert_eq!(s("--conn-reuse-mode=3"), Setting::ConnReuseMode(3));
        assert_eq!(s("--expire-nodest-conn 1"), Setting::ExpireNodestConn(true));
        assert_eq!(
            s("--expire-quiescent-template 0"),
            Setting::ExpireQuiescentTemplate(false)
        );
        assert_eq!(s("--secure-tcp 2"), Setting::SecureTcp(2));
        assert_eq!(s("--drop-entry 3"), Setting::DropEntry(3));
        assert_eq!(s("--sloppy-tcp 1"), Setting::SloppyTcp(true));
    }

    #[test]
    fn list() {
        let l = |line: &str| match cmd(line) {
            Command::List(o) => o,
            c => panic!("{c:?}"),
        };
        assert_eq!(l("-L"), ListOptions::default());
        assert_eq!(l("-l"), ListOptions::default());
        assert_eq!(l("--list --sort"), ListOptions::default());
        let n = ListOptions {
            numeric: true,
            ..ListOptions::default()
        };
        assert_eq!(l("-L -n"), n);
        assert_eq!(l("-Ln"), n);
        assert_eq!(
            l("-L -n --stats -t 10.0.0.1:80"),
            ListOptions {
                numeric: true,
                exact: false,
                view: ListView::Stats,
                service: Some(tcp("10.0.0.1:80")),
            }
        );
        assert_eq!(l("-L --rate --exact").view, ListView::Rate);
        assert!(l("-L --rate --exact").exact);
        assert!(l("-L -X").exact);
        assert_eq!(l("-L --thresholds").view, ListView::Thresholds);
        assert_eq!(l("-L --timeout").view, ListView::Timeouts);
        assert_eq!(l("-L -c -n").view, ListView::Connections);
        assert_eq!(l("-Lnc").view, ListView::Connections);
        assert_eq!(l("-L --connection").view, ListView::Connections);
    }

    #[test]
    fn blank_lines_and_comments() {
        assert_eq!(parse_line(""), Ok(None));
        assert_eq!(parse_line("   \t "), Ok(None));
        assert_eq!(parse_line("# a comment -A"), Ok(None));
        assert_eq!(parse_line("   #-C"), Ok(None));
        assert_eq!(parse_line("-C   # clear all\r\n"), Ok(Some(Command::Clear)));
    }

    #[test]
    fn argv() {
        assert_eq!(
            parse_args(["-A", "-t", "10.0.0.1:80", "-s", "rr"]),
            Ok(Command::AddService({
                let mut c = ServiceConfig::new(tcp("10.0.0.1:80"));
                c.scheduler = SchedulerKind::Rr;
                c
            }))
        );
        // No argument at all lists, as ipvsadm does.
        assert_eq!(parse_args([]), Ok(Command::List(ListOptions::default())));
        // argv tokens keep their whitespace-free identity: no splitting inside one.
        let e =
            parse_args(["-a", "-t", "10.0.0.1:80", "-r", "10.0.1.2", "-w", "70000"]).unwrap_err();
        assert_eq!((e.token, e.span), (6, None));
        assert_eq!(
            e.to_string(),
            "token 6 \"70000\": weight out of range (0..=65535)"
        );
    }

    #[test]
    fn every_error_kind_at_its_token() {
        use ParseErrorKind as K;
        let range = |what, min, max| K::OutOfRange { what, min, max };
        let cases: &[(&str, usize, ParseErrorKind)] = &[
            ("-t 10.0.0.1:80", 0, K::MissingCommand),
            ("-n -L -C", 2, K::MultipleCommands),
            ("-A -t 10.0.0.1:80 --bogus", 3, K::UnknownOption),
            ("-A -t 10.0.0.1:80 -q", 3, K::UnknownOption),
            ("-A -t 10.0.0.1:80 -sq", 3, K::UnknownScheduler),
            (
                "-A --sctp-service 10.0.0.1:80",
                1,
                K::Unsupported("SCTP services"),
            ),
            (
                "-A -t 10.0.0.1:80 --pe sip",
                3,
                K::Unsupported("persistence engines (--pe)"),
            ),
            ("-A -t 10.0.0.1:80 -s rr -s wrr", 5, K::DuplicateOption),
            ("-A -t 10.0.0.1:80 -u 10.0.0.1:53", 3, K::DuplicateOption),
            ("-a -t 10.0.0.1:80 -r 10.0.0.2 -m -g", 6, K::DuplicateOption),
            ("-a -t 10.0.0.1:80 -r 10.0.0.2 -w", 5, K::MissingValue),
            ("-A -t", 1, K::MissingValue),
            ("-A -t 10.0.0.1:80 --ops=1", 3, K::UnexpectedValue),
            ("-C extra", 1, K::UnexpectedArgument),
            ("--set 1 2 3 4", 4, K::UnexpectedArgument),
            ("-A -t 10.0.0.1:80 -w 3", 3, K::NotValidFor("-A")),
            ("-d -t 10.0.0.1:80 -r 10.0.0.2 -m", 5, K::NotValidFor("-d")),
            ("-S -t 10.0.0.1:80", 1, K::NotValidFor("-S")),
            (
                "-w 3 -a -t 10.0.0.1:80 -r 10.0.0.2 -s rr",
                7,
                K::NotValidFor("-a"),
            ),
            ("-A -s rr", 0, K::MissingService),
            ("-D", 0, K::MissingService),
            ("-a -t 10.0.0.1:80 -w 2", 0, K::MissingRealServer),
            ("-d -t 10.0.0.1:80", 0, K::MissingRealServer),
            ("--set 1 2", 0, K::MissingTimeouts),
            ("-L --stats --rate", 2, K::ConflictingOptions),
            ("-L --rate -n --stats", 3, K::ConflictingOptions),
            ("-L -c -t 10.0.0.1:80", 2, K::ConflictingOptions),
            ("-L -t 10.0.0.1:80 --timeout", 3, K::ConflictingOptions),
            ("-A -t 10.0.0:80", 2, K::BadAddress),
            ("-A -t [10.0.0.1]:80", 2, K::BadAddress),
            ("-A -t [2001:db8::1]80", 2, K::BadAddress),
            ("-A -t 2001:db8::zz", 2, K::BadAddress),
            ("-A -t www.example.com:80", 2, K::HostName),
            ("-a -t 10.0.0.1:80 -r backend1", 4, K::HostName),
            ("-A -t 10.0.0.1:70000", 2, K::BadPort),
            ("-A -t 10.0.0.1:", 2, K::BadPort),
            ("-A -t 10.0.0.1:http", 2, K::PortName),
            (
                "-a -t 10.0.0.1:80 -r 10.0.0.2 -w abc",
                6,
                K::NotANumber("weight"),
            ),
            (
                "-a -t 10.0.0.1:80 -r 10.0.0.2 -w -3",
                6,
                K::NotANumber("weight"),
            ),
            (
                "-a -t 10.0.0.1:80 -r 10.0.0.2 -w 70000",
                6,
                range("weight", 0, 65535),
            ),
            (
                "-a -t 10.0.0.1:80 -r 10.0.0.2 -x 2147483648",
                6,
                range("upper threshold", 0, i32::MAX as u32),
            ),
            ("-A -f 0", 2, range("fwmark", 1, u32::MAX)),
            ("-A -f 4294967296", 2, range("fwmark", 1, u32::MAX)),
            (
                "-A -t 10.0.0.1:80 -p 0",
                4,
                range("persistence timeout", 1, MAX_TIMEOUT_SECS),
            ),
            (
                "--set 1 2678401 3",
                2,
                range("timeout", 0, MAX_TIMEOUT_SECS),
            ),
            ("--conn-reuse-mode 4", 1, range("conn_reuse_mode", 0, 3)),
            ("--sloppy-tcp 2", 1, range("sloppy_tcp", 0, 1)),
            ("--expire-nodest-conn", 0, K::MissingValue),
            ("-A -t [::1]:80 -p -M 0", 5, range("netmask prefix", 1, 128)),
            (
                "-A -t 10.0.0.1:80 -p -M /33",
                5,
                range("netmask prefix", 0, 32),
            ),
            (
                "-A -f 1 -s mh --table-size 0",
                6,
                range("table size", 1, u32::MAX),
            ),
            ("-A -t 10.0.0.1:80 -6", 3, K::Ipv6NeedsFwmark),
            ("-Z -6", 1, K::Ipv6NeedsFwmark),
            ("-A -t 10.0.0.1:80 -s foo", 4, K::UnknownScheduler),
            (
                "-A -t 10.0.0.1:80 -s sh -b sh-port,bogus",
                6,
                K::UnknownSchedFlag,
            ),
            ("-A -t 10.0.0.1:80 -s sh -b", 5, K::MissingValue),
            ("-A -t 10.0.0.1:80 -b sh-port", 4, K::SchedFlagMismatch),
            (
                "-A -t 10.0.0.1:80 -s sh -b mh-port",
                6,
                K::SchedFlagMismatch,
            ),
            (
                "-A -t 10.0.0.1:80 -s rr -b flag-3",
                6,
                K::Unsupported("scheduler flag-3"),
            ),
            ("-A -t 10.0.0.1:80 -p -M 255.0.255.0", 5, K::BadNetmask),
            ("-A -t 10.0.0.1:80 -p -M 24", 5, K::BadNetmask),
            ("-A -t [::1]:80 -p -M 255.255.0.0", 5, K::BadNetmask),
            ("-A -t 10.0.0.1:80 -p -M /x", 5, K::BadNetmask),
            (
                "-A -t 10.0.0.1:80 -M 255.255.255.0",
                3,
                K::NetmaskNeedsPersistence,
            ),
            (
                "-A -t 10.0.0.1:80 --table-size 64",
                4,
                K::TableSizeNeedsHashScheduler,
            ),
            ("-A -t 10.0.0.1:0", 2, K::PortZeroNeedsPersistence),
            ("-A -t 10.0.0.1", 2, K::PortZeroNeedsPersistence),
            ("-A -t 10.0.0.1:80 -o", 3, K::OpsNeedsUdp),
            (
                "-a -t 10.0.0.1:80 -r 10.0.0.2 -x 10 -y 20",
                8,
                K::ThresholdOrder,
            ),
            ("-a -t 10.0.0.1:80 -r 10.0.0.2 -y 1", 6, K::ThresholdOrder),
            ("-a -t 10.0.0.1:80 -r [::1]:80 -m", 4, K::FamilyMismatch),
            ("-a -f 1 -6 -r 10.0.0.2 -g", 5, K::FamilyMismatch),
            (
                "-a -t 10.0.0.1:80 -r 10.0.0.2 -m --tun-type ipip",
                6,
                K::TunnelTypeNeedsTunnel,
            ),
            (
                "-a -t 10.0.0.1:80 -r 10.0.0.2 -i --tun-type foo",
                7,
                K::UnknownTunnelType,
            ),
            (
                "-a -t 10.0.0.1:80 -r 10.0.0.2 -i --tun-type gue",
                7,
                K::Unsupported("GUE and GRE tunnels"),
            ),
        ];
        for &(line, token, kind) in cases {
            assert_eq!(err(line), (token, kind), "{line}");
        }
    }

    #[test]
    fn spans_point_at_the_offending_text() {
        let check = |line: &str, want: &str| {
            let e = parse_line(line).unwrap_err();
            let (s, t) = e.span.unwrap();
            assert_eq!(&line[s..t], want, "{line}");
            assert_eq!(e.text.as_str(), want, "{line}");
        };
        check("-A  -t 10.0.0.1:80   -s   foo", "foo");
        check("-a -t 10.0.0.1:80 -r 10.0.0.2 --weight=70000", "70000");
        check("-a -t 10.0.0.1:80 -r 10.0.0.2 -w70000", "70000");
        check("-A -t www.example.com:80", "www.example.com");
        check("-A -t 10.0.0.1:http", "http");
        check("-A -t 10.0.0.1:80 -s sh -b sh-port,bogus", "bogus");
        check("-A -t 10.0.0.1:80 --frob", "--frob");
        let e = parse_line("-A -t www.example.com:80").unwrap_err();
        assert_eq!(
            e.to_string(),
            "token 2 \"www.example.com\": host names are not resolved; use a numeric address"
        );
    }

    #[test]
    fn long_token_text_is_cut_at_a_char_boundary() {
        let long = "é".repeat(100);
        let e = parse_line(&format!("-A -t {long}")).unwrap_err();
        assert!(e.text.len() <= ParseError::TEXT_CAP && e.text.len() >= ParseError::TEXT_CAP - 1);
        assert!(long.starts_with(e.text.as_str()));
    }

    /// Words that make the fuzzing below reach deep into the grammar.
    const VOCAB: &[&str] = &[
        "-A",
        "-E",
        "-D",
        "-a",
        "-e",
        "-d",
        "-C",
        "-Z",
        "--set",
        "-L",
        "-l",
        "-S",
        "-R",
        "-t",
        "-u",
        "-f",
        "-6",
        "-s",
        "-b",
        "-p",
        "-M",
        "-o",
        "-r",
        "-m",
        "-g",
        "-i",
        "-w",
        "-x",
        "-y",
        "-n",
        "-c",
        "--stats",
        "--rate",
        "--timeout",
        "--exact",
        "--table-size",
        "--tun-type",
        "--conn-reuse-mode",
        "--sloppy-tcp",
        "10.0.0.1:80",
        "10.0.0.1",
        "[::1]:53",
        "[::1]",
        "::1",
        "0",
        "1",
        "7",
        "300",
        "65536",
        "4294967296",
        "sh",
        "mh",
        "wrr",
        "sh-port,sh-fallback",
        "flag-1",
        "255.255.255.0",
        "/24",
        "64",
        "ipip",
        "#",
        "-At",
        "-w3",
        "--weight=2",
        "-p=",
        "--=",
        "[",
        "]:",
        "é",
        "-",
        "--",
    ];

    proptest! {
        #[test]
        fn arbitrary_lines_never_panic(line in "\\PC{0,80}") {
            check_no_panic(&line);
        }

        #[test]
        fn arbitrary_token_sequences_never_panic(
            idx in proptest::collection::vec(0..VOCAB.len(), 0..12)
        ) {
            let toks: Vec<&str> = idx.iter().map(|&i| VOCAB[i]).collect();
            check_no_panic(&toks.join(" "));
            if let Err(e) = parse_args(toks.iter().copied()) {
                let _ = e.to_string();
                prop_assert!(e.token < toks.len().max(1));
            }
        }
    }

    fn check_no_panic(line: &str) {
        match parse_line(line) {
            Ok(Some(c)) => {
                // Whatever parses prints back to something that parses the same.
                let again = parse_line(&c.to_string());
                assert_eq!(again, Ok(Some(c)), "{line:?} -> {c}");
            }
            Ok(None) => {}
            Err(e) => {
                let shown: String = e.to_string();
                assert!(shown.starts_with("token "));
                if let Some((s, t)) = e.span {
                    let text = line.get(s..t).expect("span on char boundaries");
                    assert!(text.starts_with(e.text.as_str()));
                }
            }
        }
    }
}
