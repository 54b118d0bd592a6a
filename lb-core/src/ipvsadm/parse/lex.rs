//! Splitting the input into tokens: a line at whitespace up to a `#` comment, or an argv as it
//! is; a [`Tok`] keeps its token index and byte range for errors.

use super::super::{ParseError, ParseErrorKind as K};

/// One token, or the value part of one (`-w3`, `--weight=3`).
#[derive(Clone, Copy, Debug)]
pub(super) struct Tok<'a> {
    pub(super) idx: usize,
    pub(super) text: &'a str,
    pub(super) span: Option<(usize, usize)>,
}

impl<'a> Tok<'a> {
    pub(super) fn err(&self, kind: K) -> ParseError {
        ParseError::new(self.idx, self.span, self.text, kind)
    }

    /// The part of this token from byte `from` on; `from` must be a char boundary.
    pub(super) fn tail(&self, from: usize) -> Tok<'a> {
        self.sub(from, self.text.len())
    }

    /// The part of this token in `from..to`; both must be char boundaries.
    pub(super) fn sub(&self, from: usize, to: usize) -> Tok<'a> {
        Tok {
            idx: self.idx,
            text: self.text.get(from..to).unwrap_or(""),
            span: self.span.map(|(s, _)| (s + from, s + to)),
        }
    }
}

/// Splits a line at whitespace, stopping at a `#` comment.
pub(super) struct LineTokens<'a> {
    pub(super) line: &'a str,
    pub(super) pos: usize,
    pub(super) idx: usize,
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
