//! The parser against keepalived's grammar: every keyword, the defaults and inheritance
//! (`keywords.rs`), every refusal with its exact `file:line` message (`refusals.rs`), includes
//! (`includes.rs`), and the equivalence with `ipvsadm-save` lines (`ipvsadm.rs`).

use core::net::SocketAddr;
use core::ops::ControlFlow;
use std::string::{String, ToString};
use std::vec::Vec;
use std::{format, vec};

use super::*;

mod includes;
mod ipvsadm;
mod keywords;
mod refusals;

/// Files in memory: `(name, text)`; ids are the indices. A pattern is resolved against the
/// directory of the including file; `*` matches any run of characters but `/`.
pub(super) struct MemFiles(Vec<(&'static str, &'static str)>);

pub(super) fn glob_match(pat: &str, name: &str) -> bool {
    match pat.split_once('*') {
        None => pat == name,
        Some((pre, post)) => {
            name.len() >= pre.len() + post.len()
                && name.starts_with(pre)
                && name.ends_with(post)
                && !name[pre.len()..name.len() - post.len()].contains('/')
        }
    }
}

impl Files for MemFiles {
    fn include(
        &self,
        from: FileId,
        pattern: &str,
        each: &mut dyn FnMut(FileId, &str, &str) -> ControlFlow<()>,
    ) -> Result<usize, IncludeError> {
        let from_name = if from.0 == u16::MAX {
            "keepalived.conf"
        } else {
            self.0[usize::from(from.0)].0
        };
        let mut full = match (pattern.starts_with('/'), from_name.rsplit_once('/')) {
            (false, Some((dir, _))) => format!("{dir}/{pattern}"),
            _ => pattern.to_string(),
        };
        while let Some(i) = full.find("/../") {
            let dir_start = full[..i].rfind('/').map_or(0, |d| d + 1);
            full.replace_range(dir_start..i + 4, "");
        }
        let mut hits: Vec<(usize, &(&str, &str))> = self
            .0
            .iter()
            .enumerate()
            .filter(|(_, (n, _))| glob_match(&full, n))
            .collect();
        hits.sort_by_key(|(_, (n, _))| *n);
        let mut count = 0;
        for (i, (name, text)) in hits {
            count += 1;
            if each(FileId(i as u16), name, text).is_break() {
                break;
            }
        }
        Ok(count)
    }
}

pub(super) const MAIN: FileId = FileId(u16::MAX);

pub(super) struct Store {
    vs: Vec<VirtualServer>,
    rs: Vec<RealServer>,
    ck: Vec<Checker>,
    urls: Vec<Url>,
}

impl Store {
    pub(super) fn new(vs: usize, rs: usize, ck: usize, urls: usize) -> Self {
        Store {
            vs: vec![VirtualServer::EMPTY; vs],
            rs: vec![RealServer::EMPTY; rs],
            ck: vec![Checker::EMPTY; ck],
            urls: vec![Url::EMPTY; urls],
        }
    }

    pub(super) fn config(&mut self) -> Config<'_> {
        Config::new(&mut self.vs, &mut self.rs, &mut self.ck, &mut self.urls)
    }
}

/// Parses `text` as `keepalived.conf` with `files` for includes; runs `f` on the result.
pub(super) fn parse_files<R>(
    files: &dyn Files,
    text: &str,
    f: impl FnOnce(&Config<'_>) -> R,
) -> Result<(R, Vec<String>), String> {
    let mut store = Store::new(8, 32, 32, 16);
    let mut cfg = store.config();
    let mut notices = Vec::new();
    let r = cfg.parse(files, MAIN, "keepalived.conf", text, &mut |n| {
        notices.push(n.to_string())
    });
    match r {
        Ok(()) => Ok((f(&cfg), notices)),
        Err(e) => {
            assert!(cfg.virtual_servers().is_empty(), "an error leaves nothing");
            Err(e.to_string())
        }
    }
}

pub(super) fn parse<R>(
    text: &str,
    f: impl FnOnce(&Config<'_>) -> R,
) -> Result<(R, Vec<String>), String> {
    parse_files(&NoFiles, text, f)
}

/// The error message of `text`.
pub(super) fn refused(text: &str) -> String {
    parse(text, |_| ()).expect_err("should be refused")
}

/// `text` inside `virtual_server 192.0.2.10 80 { ... }` (line 2 on), with one real server.
pub(super) fn in_vs(body: &str) -> String {
    format!("virtual_server 192.0.2.10 80 {{\n{body}\n real_server 10.0.1.1 80 {{\n }}\n}}\n")
}

/// `text` inside a real server's block (line 3 on).
pub(super) fn in_rs(body: &str) -> String {
    format!("virtual_server 192.0.2.10 80 {{\n real_server 10.0.1.1 80 {{\n{body}\n }}\n}}\n")
}

pub(super) fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}
