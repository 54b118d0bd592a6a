//! What the parser reports: an [`Error`] (nothing is applied) or a [`Notice`] (something skipped
//! or ignored on purpose), both naming the file and the line.

use core::fmt;

/// How many bytes of a file name an [`Error`] keeps (longer names keep their end).
pub const NAME_CAP: usize = 64;
/// How many bytes of the offending text an [`Error`] keeps.
pub const ERROR_TEXT_CAP: usize = 64;

/// Why a keepalived configuration was refused, with the file and line: `keepalived.conf:12:
/// unknown keyword "lb_kindd" in virtual_server`. Nothing of a refused configuration is
/// applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    /// The file, as the caller or its [`Files`](super::Files) named it (the end of the name if
    /// it is longer than [`NAME_CAP`]).
    pub file: heapless::String<NAME_CAP>,
    /// The line, from 1 (0: the file as a whole).
    pub line: u32,
    /// The offending word (or the message of a failed include), cut to [`ERROR_TEXT_CAP`] bytes.
    pub text: heapless::String<ERROR_TEXT_CAP>,
    /// What is wrong.
    pub kind: ErrorKind,
}

/// What is wrong; [`Error`]'s `Display` puts the offending text where it belongs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// Not a keyword of this block (named: `virtual_server`, `real_server`, `TCP_CHECK`, ...).
    UnknownKeyword {
        /// The block the keyword is in (`top level` outside any block).
        block: &'static str,
    },
    /// A keepalived feature lb does not support; says why or what to do instead.
    Unsupported(&'static str),
    /// The keyword needs a value: says which.
    MissingValue(&'static str),
    /// Not a value of the expected form: says which.
    BadValue(&'static str),
    /// A number outside its range.
    OutOfRange {
        /// What the number is.
        what: &'static str,
        /// Smallest accepted.
        min: u64,
        /// Largest accepted.
        max: u64,
    },
    /// A word after the keyword's value(s). keepalived reads one keyword a line and silently
    /// drops the rest (`TCP_CHECK { connect_timeout 1 retry 3 }` never sets `retry`).
    ExtraArgument,
    /// The keyword opens a block and none follows.
    NeedsBlock,
    /// The keyword takes no block.
    UnexpectedBlock,
    /// A `}` with no open block (in this file), or a `{` with no keyword.
    UnexpectedBrace,
    /// The file ends inside a block.
    UnclosedBlock {
        /// The line of the keyword that opened it.
        opened: u32,
    },
    /// A quoted string runs to the end of the line.
    UnterminatedQuote,
    /// More words on one line than the parser holds.
    TooManyWords {
        /// Words a line may hold.
        max: usize,
    },
    /// The caller's storage holds no more items of this kind.
    TooMany {
        /// `virtual_server`, `real_server`, `checker` or `url`.
        what: &'static str,
        /// Its capacity.
        max: usize,
    },
    /// A block or value that may appear once appears again (the text names it).
    Duplicate {
        /// Line of the first one.
        first: u32,
        /// Whether the first one is in the same file.
        same_file: bool,
    },
    /// A rule across keywords is broken: says which.
    Invalid(&'static str),
    /// `include` nests deeper than [`MAX_INCLUDE_DEPTH`](super::MAX_INCLUDE_DEPTH).
    IncludeDepth {
        /// The limit.
        max: usize,
    },
    /// A file includes itself (directly or through others).
    IncludeCycle,
    /// The include could not be read (the text is the reader's message).
    IncludeFailed,
}

impl Error {
    /// An error at `file:line` about `text`.
    pub fn new(file: &str, line: u32, text: &str, kind: ErrorKind) -> Self {
        Error {
            file: tail(file),
            line,
            text: head(text),
            kind,
        }
    }
}

/// The first [`ERROR_TEXT_CAP`] bytes of `s`, at a character boundary.
fn head<const N: usize>(s: &str) -> heapless::String<N> {
    let mut cut = s.len().min(N);
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    let mut out = heapless::String::new();
    // Cannot fail: `cut` is at most the capacity.
    let _ = out.push_str(&s[..cut]);
    out
}

/// The last [`NAME_CAP`] bytes of `s`, at a character boundary.
fn tail<const N: usize>(s: &str) -> heapless::String<N> {
    let mut cut = s.len().saturating_sub(N);
    while !s.is_char_boundary(cut) {
        cut += 1;
    }
    let mut out = heapless::String::new();
    let _ = out.push_str(&s[cut..]);
    out
}

/// Prints `keepalived.conf:12: unknown keyword "lb_kindd" in virtual_server`.
impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use ErrorKind as K;
        write!(f, "{}:{}: ", self.file, self.line)?;
        let t = self.text.as_str();
        match self.kind {
            K::UnknownKeyword { block } => write!(f, "unknown keyword {t:?} in {block}"),
            K::Unsupported(why) => write!(f, "{t:?} is not supported: {why}"),
            K::MissingValue(what) => write!(f, "{t:?} needs {what}"),
            K::BadValue(what) => write!(f, "{t:?}: expected {what}"),
            K::OutOfRange { what, min, max } => {
                write!(f, "{t:?}: {what} out of range ({min}..={max})")
            }
            K::ExtraArgument => write!(
                f,
                "unexpected {t:?}: one keyword a line (keepalived would ignore it silently)"
            ),
            K::NeedsBlock => write!(f, "{t:?} needs a block: {t} ... {{ ... }}"),
            K::UnexpectedBlock => write!(f, "{t:?} takes no block"),
            K::UnexpectedBrace => write!(f, "unexpected {t:?}"),
            K::UnclosedBlock { opened } => write!(
                f,
                "the file ends inside the {t:?} block opened at line {opened} (a missing \"}}\")"
            ),
            K::UnterminatedQuote => write!(f, "quoted string {t:?} has no closing quote"),
            K::TooManyWords { max } => write!(f, "{t:?}: more than {max} words on one line"),
            K::TooMany { what, max } => {
                write!(f, "no room for another {what}: the storage holds {max}")
            }
            K::Duplicate { first, same_file } => {
                let where_ = if same_file { "" } else { " of another file" };
                write!(f, "{t} is defined twice (first at line {first}{where_})")
            }
            K::Invalid(why) => write!(f, "{t:?}: {why}"),
            K::IncludeDepth { max } => write!(
                f,
                "include {t:?} nests deeper than {max} files (an include cycle?)"
            ),
            K::IncludeCycle => write!(
                f,
                "include {t:?}: the file is already being read (an include cycle)"
            ),
            K::IncludeFailed => write!(f, "include: {t}"),
        }
    }
}

impl core::error::Error for Error {}

/// Something the parser skipped or ignored on purpose, with the file and line; the caller logs
/// it (lb-tun at `info`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Notice<'a> {
    /// The file.
    pub file: &'a str,
    /// The line, from 1.
    pub line: u32,
    /// The keyword or pattern concerned.
    pub text: &'a str,
    /// What was done.
    pub kind: NoticeKind,
}

/// What was skipped or ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum NoticeKind {
    /// A block that is keepalived's own business (`global_defs`, `vrrp_*`, `static_ipaddress`,
    /// ...) was skipped whole: VRRP stays keepalived's job.
    SkippedBlock,
    /// A keyword that changes nothing lb does was ignored: says why.
    Ignored(&'static str),
    /// An `include` pattern matched no file.
    NothingIncluded,
}

/// Prints `keepalived.conf:3: global_defs block skipped (VRRP and global settings stay
/// keepalived's job)`.
impl fmt::Display for Notice<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: ", self.file, self.line)?;
        let t = self.text;
        match self.kind {
            NoticeKind::SkippedBlock => write!(
                f,
                "{t} block skipped (VRRP and global settings stay keepalived's job)"
            ),
            NoticeKind::Ignored(why) => write!(f, "{t} ignored: {why}"),
            NoticeKind::NothingIncluded => write!(f, "include {t:?} matched no file"),
        }
    }
}
