//! The `keepalived` target: arbitrary text through the keepalived.conf parser, with includes.
//!
//! The input is split at NUL bytes: the first part is `keepalived.conf`, the others are files
//! `f1.conf`, `f2.conf`, ... that `include` patterns reach (an exact name, or `*` for all of
//! them, so cycles and deep nesting happen). Each input is parsed twice, into small storage
//! (tables fill up) and into ample storage. Checks:
//! * parsing never panics, and parsing the same input again gives the same result;
//! * an error's message starts with `FILE:LINE: ` and its line lies within that file;
//! * a configuration that parses is whole: every HTTP_GET has a url, every url a path and a
//!   status set, every timer that must be positive is, warmup and retries are set;
//! * its commands apply, in order, to a fresh director large enough for them (the parser has
//!   already refused everything the director would: duplicates, families, persistence,
//!   thresholds, flags), and each command's `Display` parses back to it as an ipvsadm line.

use std::format;
use std::string::{String, ToString};
use std::vec::Vec;

use core::ops::ControlFlow;

use lb_core::director::{Director, DirectorStorage, Limits};
use lb_core::ipvsadm::{parse_line, Command};
use lb_core::keepalived::{
    CheckKind, Checker, Config, Error, FileId, Files, IncludeError, RealServer, Url, VirtualServer,
};

use super::grammar::apply;

/// The files of one input: `keepalived.conf` and `f1.conf`, `f2.conf`, ...
pub struct Inputs(pub Vec<(String, String)>);

impl Inputs {
    pub fn split(data: &[u8]) -> Self {
        let mut files = Vec::new();
        for (i, part) in data.split(|&b| b == 0).take(8).enumerate() {
            let name = if i == 0 {
                "keepalived.conf".to_string()
            } else {
                format!("f{i}.conf")
            };
            files.push((name, String::from_utf8_lossy(part).into_owned()));
        }
        Inputs(files)
    }
}

impl Files for Inputs {
    fn include(
        &self,
        _from: FileId,
        pattern: &str,
        each: &mut dyn FnMut(FileId, &str, &str) -> ControlFlow<()>,
    ) -> Result<usize, IncludeError> {
        if pattern == "unreadable.conf" {
            return Err(IncludeError::new(&"unreadable.conf: permission denied"));
        }
        let mut n = 0;
        for (i, (name, text)) in self.0.iter().enumerate().skip(1) {
            if pattern == "*" || pattern == name {
                n += 1;
                if each(FileId(i as u16), name, text).is_break() {
                    break;
                }
            }
        }
        Ok(n)
    }
}

/// What a parse gave, comparable between runs.
type Outcome = Result<Vec<Command>, String>;

fn parse_into(inputs: &Inputs, sizes: [usize; 4], check: bool) -> Outcome {
    let mut vs = std::vec![VirtualServer::EMPTY; sizes[0]];
    let mut rs = std::vec![RealServer::EMPTY; sizes[1]];
    let mut ck = std::vec![Checker::EMPTY; sizes[2]];
    let mut urls = std::vec![Url::EMPTY; sizes[3]];
    let mut cfg = Config::new(&mut vs, &mut rs, &mut ck, &mut urls);
    let main = &inputs.0[0].1;
    let mut notices = 0usize;
    let r = cfg.parse(inputs, FileId(0), "keepalived.conf", main, &mut |n| {
        assert!(n
            .to_string()
            .starts_with(&format!("{}:{}: ", n.file, n.line)));
        notices += 1;
    });
    match r {
        Ok(()) => {
            if check {
                check_whole(&cfg, sizes);
            }
            Ok(cfg.commands().map(|(_, c)| c).collect())
        }
        Err(e) => {
            assert!(cfg.virtual_servers().is_empty(), "an error leaves nothing");
            check_error(inputs, &e);
            Err(e.to_string())
        }
    }
}

fn check_error(inputs: &Inputs, e: &Error) {
    let shown = e.to_string();
    assert!(
        shown.starts_with(&format!("{}:{}: ", e.file, e.line)),
        "{shown}"
    );
    if let Some((_, text)) = inputs.0.iter().find(|(n, _)| *n == e.file.as_str()) {
        let lines = text.split('\n').count() as u32;
        assert!(
            e.line <= lines.max(1),
            "{shown}: the file has {lines} lines"
        );
    }
}

fn check_whole(cfg: &Config<'_>, sizes: [usize; 4]) {
    let limits = Limits {
        services: sizes[0].max(1),
        servers_per_service: sizes[1].max(1),
        table_slots_per_service: 65536,
        lblc_entries_per_service: 8,
    };
    let mut d = Director::new(DirectorStorage::alloc(limits), 3);
    for (at, cmd) in cfg.commands() {
        let shown = format!("{cmd}");
        assert_eq!(
            parse_line(&shown).ok().flatten().as_ref(),
            Some(&cmd),
            "{shown:?} does not parse back"
        );
        if let Err(e) = apply(&mut d, &cmd) {
            panic!("line {}: {shown}: the director refuses it: {e}", at.line);
        }
    }
    for vs in cfg.virtual_servers() {
        for rs in cfg.real_servers(vs) {
            assert_eq!(rs.server.addr.is_ipv6(), vs.service.key.is_ipv6());
            for ck in cfg.checkers(rs) {
                let t = ck.timing;
                assert!(t.delay_loop.millis() > 0 && t.connect_timeout.millis() > 0);
                let urls = cfg.urls(ck);
                match ck.kind {
                    CheckKind::Http => assert!(!urls.is_empty(), "HTTP_GET without a url"),
                    CheckKind::Tcp => assert!(urls.is_empty()),
                }
                for u in urls {
                    assert!(!u.path.is_empty() && !u.status.is_empty());
                }
            }
        }
    }
}

/// The `keepalived` fuzz target.
pub fn run(data: &[u8]) {
    let inputs = Inputs::split(data);
    let small = parse_into(&inputs, [2, 4, 4, 2], true);
    let ample = parse_into(&inputs, [16, 64, 64, 32], true);
    assert_eq!(
        parse_into(&inputs, [16, 64, 64, 32], false),
        ample,
        "not deterministic"
    );
    // Small storage may only add "no room" errors.
    if let (Err(s), Ok(_)) = (&small, &ample) {
        assert!(s.contains("no room for another"), "{s}");
    }
    if let (Ok(a), Ok(b)) = (&small, &ample) {
        assert_eq!(a, b, "the storage size changed the result");
    }
}
