//! The parser: tokens → option slots → a typed [`Command`].
//!
//! Three passes over fixed-size state, no allocation:
//! 1. recognise each token (short groups like `-Ln`, `-w3`; long `--weight 3` or `--weight=3`;
//!    `-p`'s optional value), file it in its slot, refuse duplicates;
//! 2. check the options against the command (ipvsadm's `commands_v_options` table);
//! 3. parse the values and apply ipvsadm's defaults and cross-checks.

use super::{Command, ListOptions, ParseError};

mod build;
mod collect;
mod lex;
mod options;
mod values;

use build::parse_tokens;
use lex::{LineTokens, Tok};

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

#[cfg(test)]
mod tests;
