//! The driver: files and includes, blocks opened and closed, and each statement handed to its
//! block's keywords (`blocks/`); closing a block checks and finishes its item (`fixup.rs`).

use core::ops::ControlFlow;

use super::error::{ErrorKind as K, Notice, NoticeKind};
use super::lex::{Lexed, Lexer, Stmt};
use super::{values, Config, Error, Fault, FileId, Files, IncludeError, MAX_INCLUDE_DEPTH};
use crate::addr::Protocol;
use crate::config::SchedulerKind;

/// The blocks the parser understands; everything else is refused or skipped whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Block {
    VirtualServer,
    RealServer,
    Checker,
    Url,
    /// A block skipped whole (`global_defs`, `vrrp_instance`, ...), `depth` blocks deep inside.
    Skip {
        depth: u32,
    },
}

/// An open block: what it is, its keyword and line.
#[derive(Debug, Clone, Copy)]
struct Open {
    block: Block,
    keyword: &'static str,
    line: u32,
}

/// What a statement does to the block structure.
pub(crate) enum Next {
    /// Nothing: the statement takes no block.
    Plain,
    /// It opens this block (its keyword named in messages).
    Push(Block, &'static str),
}

/// What the open `virtual_server` said that is resolved when it closes.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct VsDraft {
    pub(crate) persistence_secs: Option<u32>,
    /// `persistence_granularity`'s prefix and line.
    pub(crate) granularity: Option<(u8, u32)>,
    /// `ops`'s line.
    pub(crate) ops: Option<u32>,
    /// The last `sh-*`/`mh-*` flag: its name, the scheduler it needs, its line.
    pub(crate) sched_flag: Option<(&'static str, SchedulerKind, u32)>,
    pub(crate) proto: Option<Protocol>,
    /// A `real_server` was seen (`ip_family` must come before).
    pub(crate) reals_seen: bool,
    /// `sorry_server`'s line.
    pub(crate) sorry: u32,
    /// The open real server's `lthreshold` line.
    pub(crate) lthreshold: u32,
}

pub(crate) struct Parser<'c, 's, 'f, 'n, F: Files + ?Sized> {
    pub(crate) cfg: &'c mut Config<'s>,
    files: &'f F,
    notice: &'n mut dyn FnMut(&Notice<'_>),
    stack: heapless::Vec<Open, 6>,
    including: heapless::Vec<FileId, { MAX_INCLUDE_DEPTH + 1 }>,
    pub(crate) vs: VsDraft,
}

/// Whether an include pattern has glob characters (then matching nothing is not an error).
fn is_glob(pattern: &str) -> bool {
    pattern.contains(['*', '?', '[', '{'])
}

impl<'c, 's, 'f, 'n, F: Files + ?Sized> Parser<'c, 's, 'f, 'n, F> {
    pub(crate) fn new(
        cfg: &'c mut Config<'s>,
        files: &'f F,
        notice: &'n mut dyn FnMut(&Notice<'_>),
    ) -> Self {
        Parser {
            cfg,
            files,
            notice,
            stack: heapless::Vec::new(),
            including: heapless::Vec::new(),
            vs: VsDraft::default(),
        }
    }

    pub(crate) fn run(mut self, id: FileId, name: &str, text: &str) -> Result<(), Error> {
        // Cannot fail: the stack is empty.
        let _ = self.including.push(id);
        self.file(id, name, text)
    }

    pub(crate) fn note(&mut self, file: &str, line: u32, text: &str, kind: NoticeKind) {
        (self.notice)(&Notice {
            file,
            line,
            text,
            kind,
        });
    }

    /// One file's statements. Its blocks must close in it: a `}` may not close a block opened
    /// by the including file, and the file may not end inside a block.
    fn file(&mut self, id: FileId, name: &str, text: &str) -> Result<(), Error> {
        let base = self.stack.len();
        let mut lx = Lexer::new(text);
        while let Some(item) = lx.next_item().map_err(|f| f.in_file(name))? {
            match item {
                Lexed::Close(line) if self.stack.len() == base => {
                    let f = Fault {
                        line,
                        text: "}",
                        kind: K::UnexpectedBrace,
                    };
                    return Err(f.in_file(name));
                }
                Lexed::Close(_) => self.close().map_err(|f| f.in_file(name))?,
                Lexed::Stmt(s) => self.statement(id, name, &s)?,
            }
        }
        match self.stack.last() {
            Some(open) if self.stack.len() > base => {
                let f = Fault {
                    line: lx.line(),
                    text: open.keyword,
                    kind: K::UnclosedBlock { opened: open.line },
                };
                Err(f.in_file(name))
            }
            _ => Ok(()),
        }
    }

    fn statement(&mut self, id: FileId, name: &str, s: &Stmt<'_>) -> Result<(), Error> {
        if let Some(Open {
            block: Block::Skip { depth },
            ..
        }) = self.stack.last_mut()
        {
            if s.open {
                *depth += 1;
            }
            return Ok(());
        }
        refuse_advanced(s).map_err(|f| f.in_file(name))?;
        if s.keyword() == "include" {
            if s.open {
                return Err(s.fault(s.keyword(), K::UnexpectedBlock).in_file(name));
            }
            return self.include(id, name, s);
        }
        let at = super::Location {
            file: id,
            line: s.line,
        };
        let next = match self.stack.last().map(|o| o.block) {
            None => self.top(at, name, s),
            Some(Block::VirtualServer) => self.in_virtual_server(at, name, s),
            Some(Block::RealServer) => self.in_real_server(at, name, s),
            Some(Block::Checker) => self.in_checker(at, name, s),
            Some(Block::Url) => self.in_url(s),
            Some(Block::Skip { .. }) => Ok(Next::Plain),
        }
        .map_err(|f| f.in_file(name))?;
        let fault = |kind| s.fault(s.keyword(), kind).in_file(name);
        match (next, s.open) {
            (Next::Plain, false) => Ok(()),
            (Next::Plain, true) => Err(fault(K::UnexpectedBlock)),
            (Next::Push(..), false) => Err(fault(K::NeedsBlock)),
            (Next::Push(block, keyword), true) => {
                let open = Open {
                    block,
                    keyword,
                    line: s.line,
                };
                // The deepest nesting is virtual_server, real_server, checker, url (4 of 6).
                self.stack
                    .push(open)
                    .map_err(|_| fault(K::Invalid("blocks nested too deep")))
            }
        }
    }

    /// A `}`: finishes the innermost block's item.
    fn close(&mut self) -> Result<(), Fault<'static>> {
        let Some(open) = self.stack.pop() else {
            return Ok(());
        };
        match open.block {
            Block::Skip { depth } if depth > 0 => {
                // Cannot fail: one was just popped.
                let _ = self.stack.push(Open {
                    block: Block::Skip { depth: depth - 1 },
                    ..open
                });
                Ok(())
            }
            Block::Skip { .. } => Ok(()),
            Block::VirtualServer => self.close_virtual_server(),
            Block::RealServer => self.close_real_server(),
            Block::Checker => self.close_checker(),
            Block::Url => self.close_url(),
        }
    }

    /// `include PATTERN`: each file it names, parsed in place, as if its text stood here.
    fn include(&mut self, id: FileId, name: &str, s: &Stmt<'_>) -> Result<(), Error> {
        let pattern = values::one(s, "a file name or pattern").map_err(|f| f.in_file(name))?;
        if self.including.len() > MAX_INCLUDE_DEPTH {
            let max = MAX_INCLUDE_DEPTH;
            return Err(s.fault(pattern, K::IncludeDepth { max }).in_file(name));
        }
        let files = self.files;
        let mut failed: Option<Error> = None;
        let read = files.include(id, pattern, &mut |fid, fname, ftext| {
            if self.including.contains(&fid) {
                failed = Some(Error::new(name, s.line, fname, K::IncludeCycle));
                return ControlFlow::Break(());
            }
            // Cannot fail: the depth was checked above.
            let _ = self.including.push(fid);
            let r = self.file(fid, fname, ftext);
            self.including.pop();
            match r {
                Ok(()) => ControlFlow::Continue(()),
                Err(e) => {
                    failed = Some(e);
                    ControlFlow::Break(())
                }
            }
        });
        if let Some(e) = failed {
            return Err(e);
        }
        let failed = |e: IncludeError| Error::new(name, s.line, &e.0, K::IncludeFailed);
        match read {
            Err(e) => Err(failed(e)),
            Ok(0) if is_glob(pattern) => {
                self.note(name, s.line, pattern, NoticeKind::NothingIncluded);
                Ok(())
            }
            Ok(0) => Err(failed(IncludeError::new(&format_args!(
                "{pattern}: no such file"
            )))),
            Ok(_) => Ok(()),
        }
    }
}

/// keepalived's preprocessor features, which lb does not implement: `@name` conditional
/// lines, `$NAME=value` definitions and `${NAME}` substitution, `~SEQ`/`~LST` blocks.
fn refuse_advanced<'a>(s: &Stmt<'a>) -> Result<(), Fault<'a>> {
    let kw = s.keyword();
    let what = if kw.starts_with('@') {
        Some("conditional lines (@name)")
    } else if kw.starts_with('~') {
        Some("~SEQ and ~LST blocks")
    } else if kw.starts_with('$') {
        Some("definitions ($NAME=value)")
    } else {
        None
    };
    if let Some(what) = what {
        return Err(s.fault(kw, K::Unsupported(what)));
    }
    match s.words.iter().find(|w| w.contains("${")) {
        Some(w) => Err(s.fault(w, K::Unsupported("${NAME} substitution"))),
        None => Ok(()),
    }
}
