//! keepalived's lexical rules over a `&str`, without allocation: lines of words, `#` and `!`
//! comments, quoted strings, a trailing `\` joining lines, and `{`/`}` as tokens of their own.
//!
//! keepalived splits a line at its braces, so after the split a statement is one keyword and
//! its arguments: [`Lexer`] yields [`Lexed::Stmt`] (its words, and whether a `{` follows,
//! on the same line or the next non-empty one) and [`Lexed::Close`] for each `}`.

use super::error::ErrorKind as K;
use super::Fault;

/// The most words one statement may have (keyword included).
pub(crate) const MAX_WORDS: usize = 32;

/// One statement: a keyword and its arguments, on `line`; `open` if a `{` follows it.
#[derive(Debug, Clone)]
pub(crate) struct Stmt<'a> {
    pub(crate) line: u32,
    pub(crate) words: heapless::Vec<&'a str, MAX_WORDS>,
    pub(crate) open: bool,
}

impl<'a> Stmt<'a> {
    pub(crate) fn keyword(&self) -> &'a str {
        self.words.first().copied().unwrap_or("")
    }

    /// The arguments after the keyword.
    pub(crate) fn args(&self) -> &[&'a str] {
        self.words.get(1..).unwrap_or(&[])
    }

    pub(crate) fn fault(&self, text: &'a str, kind: K) -> Fault<'a> {
        Fault {
            line: self.line,
            text,
            kind,
        }
    }
}

/// What the lexer yields (one at a time, on the stack: the size difference does not matter).
#[derive(Debug, Clone)]
#[allow(clippy::large_enum_variant)]
pub(crate) enum Lexed<'a> {
    Stmt(Stmt<'a>),
    /// A `}` on this line.
    Close(u32),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tok<'a> {
    Word(&'a str),
    Open,
    Close,
    Eol,
}

/// The statements of one file's text.
#[derive(Debug, Clone)]
pub(crate) struct Lexer<'a> {
    text: &'a str,
    pos: usize,
    line: u32,
    /// A `}` that ended the previous statement, still to be yielded.
    pending_close: Option<u32>,
}

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | 0x0b | 0x0c)
}

impl<'a> Lexer<'a> {
    pub(crate) fn new(text: &'a str) -> Self {
        Lexer {
            text,
            pos: 0,
            line: 1,
            pending_close: None,
        }
    }

    /// The line the lexer is on; at the end of the text, its last line.
    pub(crate) fn line(&self) -> u32 {
        if self.pos >= self.text.len() && self.text.ends_with('\n') && self.line > 1 {
            self.line - 1
        } else {
            self.line
        }
    }

    fn fault(&self, text: &'a str, kind: K) -> Fault<'a> {
        Fault {
            line: self.line,
            text,
            kind,
        }
    }

    /// The next token and the line it is on.
    fn token(&mut self) -> Result<Option<(Tok<'a>, u32)>, Fault<'a>> {
        let bytes = self.text.as_bytes();
        loop {
            let Some(&b) = bytes.get(self.pos) else {
                return Ok(None);
            };
            let line = self.line;
            match b {
                b'\n' => {
                    self.pos += 1;
                    self.line += 1;
                    return Ok(Some((Tok::Eol, line)));
                }
                _ if is_space(b) => self.pos += 1,
                b'#' | b'!' => {
                    // A comment runs to the end of the line.
                    while bytes.get(self.pos).is_some_and(|&c| c != b'\n') {
                        self.pos += 1;
                    }
                }
                b'\\' if self.continues_line() => {}
                b'{' => {
                    self.pos += 1;
                    return Ok(Some((Tok::Open, line)));
                }
                b'}' => {
                    self.pos += 1;
                    return Ok(Some((Tok::Close, line)));
                }
                b'"' | b'\'' => return self.quoted(b).map(|w| Some((Tok::Word(w), line))),
                _ => return self.word().map(|w| Some((Tok::Word(w), line))),
            }
        }
    }

    /// At a `\`: if only spaces follow it on this line, the next line continues this one.
    fn continues_line(&mut self) -> bool {
        let bytes = self.text.as_bytes();
        let mut i = self.pos + 1;
        while bytes.get(i).is_some_and(|&c| c != b'\n' && is_space(c)) {
            i += 1;
        }
        match bytes.get(i) {
            Some(b'\n') => {
                self.pos = i + 1;
                self.line += 1;
                true
            }
            None => {
                self.pos = i;
                true
            }
            Some(_) => false,
        }
    }

    /// A quoted string: the text between the quotes, on one line, without escapes.
    fn quoted(&mut self, quote: u8) -> Result<&'a str, Fault<'a>> {
        let bytes = self.text.as_bytes();
        let start = self.pos + 1;
        let mut i = start;
        loop {
            match bytes.get(i) {
                Some(&c) if c == quote => {
                    self.pos = i + 1;
                    return Ok(&self.text[start..i]);
                }
                Some(b'\\') => {
                    return Err(self.fault(
                        &self.text[self.pos..=i],
                        K::Unsupported("escape sequences in quoted strings"),
                    ))
                }
                None | Some(b'\n') => {
                    return Err(self.fault(&self.text[self.pos..i], K::UnterminatedQuote))
                }
                Some(_) => i += 1,
            }
        }
    }

    /// A bare word: up to whitespace, a brace, a comment or a quote.
    fn word(&mut self) -> Result<&'a str, Fault<'a>> {
        let bytes = self.text.as_bytes();
        let start = self.pos;
        let mut i = start;
        while let Some(&c) = bytes.get(i) {
            match c {
                b'{' if i > start && bytes[i - 1] == b'$' => {
                    let end = self.text[i..]
                        .find(['}', '\n'])
                        .map_or(self.text.len(), |e| i + e + 1);
                    let end = end.min(self.text.len());
                    return Err(self.fault(
                        &self.text[i - 1..end],
                        K::Unsupported("${NAME} substitution"),
                    ));
                }
                b'\n' | b'{' | b'}' | b'#' | b'!' | b'"' | b'\'' => break,
                _ if is_space(c) => break,
                b'\\' if matches!(bytes.get(i + 1), Some(b'#' | b'!')) => {
                    return Err(self.fault(
                        &self.text[i..i + 2],
                        K::Unsupported("escaped comment characters (\\# and \\!)"),
                    ))
                }
                _ => i += 1,
            }
        }
        self.pos = i;
        Ok(&self.text[start..i])
    }

    /// Whether the next token, across empty lines and comments, is `{`; consumes up to it if so.
    fn open_follows(&mut self) -> Result<bool, Fault<'a>> {
        let mut ahead = self.clone();
        loop {
            match ahead.token()? {
                Some((Tok::Eol, _)) => {}
                Some((Tok::Open, _)) => {
                    *self = ahead;
                    return Ok(true);
                }
                _ => return Ok(false),
            }
        }
    }

    /// The next statement or `}`; `None` at the end of the text.
    pub(crate) fn next_item(&mut self) -> Result<Option<Lexed<'a>>, Fault<'a>> {
        if let Some(line) = self.pending_close.take() {
            return Ok(Some(Lexed::Close(line)));
        }
        let mut stmt = Stmt {
            line: self.line,
            words: heapless::Vec::new(),
            open: false,
        };
        loop {
            let tok = self.token()?;
            let empty = stmt.words.is_empty();
            match tok {
                None if empty => return Ok(None),
                None => return Ok(Some(Lexed::Stmt(stmt))),
                Some((Tok::Eol, _)) if empty => {}
                Some((Tok::Eol, _)) => {
                    stmt.open = self.open_follows()?;
                    return Ok(Some(Lexed::Stmt(stmt)));
                }
                Some((Tok::Open, line)) if empty => {
                    return Err(Fault {
                        line,
                        text: "{",
                        kind: K::UnexpectedBrace,
                    })
                }
                Some((Tok::Open, _)) => {
                    stmt.open = true;
                    return Ok(Some(Lexed::Stmt(stmt)));
                }
                Some((Tok::Close, line)) if empty => return Ok(Some(Lexed::Close(line))),
                Some((Tok::Close, line)) => {
                    self.pending_close = Some(line);
                    return Ok(Some(Lexed::Stmt(stmt)));
                }
                Some((Tok::Word(w), line)) => {
                    if empty {
                        stmt.line = line;
                    }
                    if stmt.words.push(w).is_err() {
                        return Err(Fault {
                            line,
                            text: w,
                            kind: K::TooManyWords { max: MAX_WORDS },
                        });
                    }
                }
            }
        }
    }
}
