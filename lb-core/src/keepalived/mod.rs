//! keepalived.conf's `virtual_server` sections: a `no_std`, allocation-free parser that turns
//! them into lb-core's configuration ([`ServiceConfig`](crate::ServiceConfig), [`ServerConfig`](crate::ServerConfig), the same items the
//! equivalent `ipvsadm-save` lines give) and typed checker settings (`TCP_CHECK`, `HTTP_GET`
//! and their `url`s) for a health checker.
//!
//! The supported subset, what is ignored with a [`Notice`] and what is refused with an
//! [`Error`] is in `docs/keepalived.md`. In short:
//! * lexical rules as keepalived's: one keyword a line (a line is split at its braces), `#` and
//!   `!` comments, `"` and `'` quoted strings, a trailing `\` joins lines; `include PATTERN`
//!   through the caller's [`Files`] (relative to the including file, globs), nested at most
//!   [`MAX_INCLUDE_DEPTH`] deep, cycles refused;
//! * `global_defs`, `vrrp_*`, `static_ipaddress` (and the other VRRP blocks) are skipped with
//!   one notice each: VRRP stays keepalived's job;
//! * keepalived's defaults and inheritance (virtual_server → real_server → checker) are
//!   applied, so the items say what keepalived would do;
//! * anything that would change behaviour and that lb does not do is refused, naming
//!   `file:line`; a refused configuration leaves nothing behind.
//!
//! The caller owns the storage ([`Config::new`] takes four slices) and the files: lb-tun reads
//! them from disk, lb-embedded embeds one text and includes none ([`NoFiles`]).
//!
//! ```
//! use lb_core::keepalived::{Config, FileId, NoFiles, VirtualServer, RealServer, Checker, Url};
//!
//! let text = "
//! virtual_server 192.0.2.10 80 {
//!     lb_algo wrr
//!     lb_kind NAT
//!     real_server 10.0.1.11 8080 {
//!         weight 3
//!         TCP_CHECK { connect_timeout 2 }
//!     }
//! }";
//! let mut vs = [const { VirtualServer::EMPTY }; 4];
//! let mut rs = [const { RealServer::EMPTY }; 16];
//! let mut ck = [const { Checker::EMPTY }; 16];
//! let mut urls = [const { Url::EMPTY }; 4];
//! let mut cfg = Config::new(&mut vs, &mut rs, &mut ck, &mut urls);
//! cfg.parse(&NoFiles, FileId(0), "keepalived.conf", text, &mut |n| println!("{n}"))?;
//! let lines: Vec<String> = cfg.commands().map(|(_, cmd)| cmd.to_string()).collect();
//! assert_eq!(lines, ["-A -t 192.0.2.10:80 -s wrr", "-a -t 192.0.2.10:80 -r 10.0.1.11:8080 -m -w 3"]);
//! # Ok::<(), lb_core::keepalived::Error>(())
//! ```
#![warn(missing_docs)]
// An `Error` carries the file name and the offending text inline (~170 bytes), because there is
// no allocator to box them; it is returned once per configuration, never on the packet path.
#![allow(clippy::result_large_err)]

use core::ops::ControlFlow;

use crate::ipvsadm::Command;

mod ast;
mod blocks;
mod error;
mod fixup;
mod lex;
mod parse;
mod values;

pub use ast::{
    CheckKind, Checker, FileId, HttpProtocol, Location, RealServer, StatusCodes, Text, Timing, Url,
    VirtualServer, TEXT_CAP,
};
pub use blocks::DEFAULT_PERSISTENCE_SECS;
pub use error::{Error, ErrorKind, Notice, NoticeKind, ERROR_TEXT_CAP, NAME_CAP};

/// How deep `include`s may nest (the main file is depth 0).
pub const MAX_INCLUDE_DEPTH: usize = 8;

/// A problem found in the current file's text: converted to an [`Error`] with the file's name.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Fault<'a> {
    pub(crate) line: u32,
    pub(crate) text: &'a str,
    pub(crate) kind: ErrorKind,
}

impl Fault<'_> {
    pub(crate) fn in_file(self, file: &str) -> Error {
        Error::new(file, self.line, self.text, self.kind)
    }
}

/// Why an include could not be read: the reader's message (`cannot read
/// /etc/keepalived/vs.conf: permission denied`), cut to [`ERROR_TEXT_CAP`] bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncludeError(pub heapless::String<{ ERROR_TEXT_CAP }>);

impl IncludeError {
    /// An include error saying `msg` (cut to fit).
    pub fn new(msg: &dyn core::fmt::Display) -> Self {
        let mut s = heapless::String::new();
        // A message longer than the capacity is cut: `write!` stops at the first refused char.
        let _ = core::fmt::write(&mut Cut(&mut s), format_args!("{msg}"));
        IncludeError(s)
    }
}

/// A `fmt::Write` that keeps what fits.
struct Cut<'s, const N: usize>(&'s mut heapless::String<N>);

impl<const N: usize> core::fmt::Write for Cut<'_, N> {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        for c in s.chars() {
            if self.0.push(c).is_err() {
                break;
            }
        }
        Ok(())
    }
}

/// The files `include` reads: the caller implements it (lb-tun reads the file system;
/// [`NoFiles`] includes nothing).
pub trait Files {
    /// Reads every file `pattern` names, in order, and calls `each(id, name, text)` for each,
    /// stopping when it returns `Break`; returns how many files were given to `each`.
    ///
    /// `pattern` is keepalived's: a path, absolute or relative to the directory of the file
    /// `from`, with glob characters (`*`, `?`, `[...]`). `id` must be the same for the same
    /// file on every call (the parser refuses cycles by it) and differ between files; `name`
    /// is what errors and notices print.
    fn include(
        &self,
        from: FileId,
        pattern: &str,
        each: &mut dyn FnMut(FileId, &str, &str) -> ControlFlow<()>,
    ) -> Result<usize, IncludeError>;
}

/// [`Files`] for a configuration embedded as one string: every `include` is refused.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoFiles;

impl Files for NoFiles {
    fn include(
        &self,
        _from: FileId,
        _pattern: &str,
        _each: &mut dyn FnMut(FileId, &str, &str) -> ControlFlow<()>,
    ) -> Result<usize, IncludeError> {
        Err(IncludeError::new(
            &"this configuration cannot include files (no file system)",
        ))
    }
}

/// How many items of each table are filled.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Counts {
    pub(crate) vs: usize,
    pub(crate) rs: usize,
    pub(crate) ck: usize,
    pub(crate) urls: usize,
}

/// A parsed keepalived configuration in the caller's storage: virtual servers, each with its
/// real servers, each with its checkers, each HTTP_GET with its URLs.
#[derive(Debug)]
pub struct Config<'s> {
    pub(crate) vs: &'s mut [VirtualServer],
    pub(crate) rs: &'s mut [RealServer],
    pub(crate) ck: &'s mut [Checker],
    pub(crate) urls: &'s mut [Url],
    pub(crate) n: Counts,
}

impl<'s> Config<'s> {
    /// An empty configuration whose items live in these slices: their lengths are how many
    /// virtual servers, real servers (in all), checkers and URLs a configuration may have.
    pub fn new(
        vs: &'s mut [VirtualServer],
        rs: &'s mut [RealServer],
        ck: &'s mut [Checker],
        urls: &'s mut [Url],
    ) -> Self {
        Config {
            vs,
            rs,
            ck,
            urls,
            n: Counts::default(),
        }
    }

    /// Parses `text`, the main file (`file`, called `name` in errors and notices), replacing
    /// what was parsed before; `files` reads includes, `notice` hears what was skipped or
    /// ignored. On an error the configuration is left empty: nothing of a refused
    /// configuration can be applied.
    pub fn parse<F: Files + ?Sized>(
        &mut self,
        files: &F,
        file: FileId,
        name: &str,
        text: &str,
        notice: &mut dyn FnMut(&Notice<'_>),
    ) -> Result<(), Error> {
        self.n = Counts::default();
        let r = parse::Parser::new(self, files, notice).run(file, name, text);
        if r.is_err() {
            self.n = Counts::default();
        }
        r
    }

    /// The virtual servers, in the order written.
    pub fn virtual_servers(&self) -> &[VirtualServer] {
        &self.vs[..self.n.vs]
    }

    /// A virtual server's real servers, in the order written (not its sorry server).
    pub fn real_servers(&self, vs: &VirtualServer) -> &[RealServer] {
        self.rs.get(vs.reals.range()).unwrap_or(&[])
    }

    /// A real server's checkers, in the order written.
    pub fn checkers(&self, rs: &RealServer) -> &[Checker] {
        self.ck.get(rs.checkers.range()).unwrap_or(&[])
    }

    /// An HTTP_GET checker's URLs, in the order written.
    pub fn urls(&self, ck: &Checker) -> &[Url] {
        self.urls.get(ck.urls.range()).unwrap_or(&[])
    }

    /// The configuration as ipvsadm commands, each with where it was written: `-A` for each
    /// virtual server followed by `-a` for each of its real servers (the sorry servers are
    /// not among them: they are used only while quorum is lost). The same commands as the
    /// equivalent `ipvsadm-save -n` lines.
    pub fn commands(&self) -> impl Iterator<Item = (Location, Command)> + '_ {
        self.virtual_servers().iter().flat_map(move |vs| {
            let key = vs.service.key;
            core::iter::once((vs.at, Command::AddService(vs.service))).chain(
                self.real_servers(vs)
                    .iter()
                    .map(move |rs| (rs.at, Command::AddServer(key, rs.server))),
            )
        })
    }
}

#[cfg(test)]
mod tests;
