//! Pass 1: recognise each token (short groups, long options with `=` or a separate value, `-p`'s
//! optional value) and file it in its slot ([`Hits`]), refusing duplicates.

use super::super::{ParseError, ParseErrorKind as K};
use super::lex::Tok;
use super::options::{Arg, Flag, Slot, SLOTS, SPECS, UNSUPPORTED};

/// One filed option: its token, what it means, and its value if it takes one.
#[derive(Clone, Copy, Debug)]
pub(super) struct Hit<'a> {
    pub(super) opt: Tok<'a>,
    pub(super) flag: Flag,
    pub(super) value: Option<Tok<'a>>,
}

/// Pass 1's result.
pub(super) struct Hits<'a> {
    slots: [Option<Hit<'a>>; SLOTS],
    pub(super) args: [Option<Tok<'a>>; 3],
}

impl<'a> Hits<'a> {
    pub(super) fn get(&self, slot: Slot) -> Option<Hit<'a>> {
        self.slots[slot as usize]
    }

    pub(super) fn has(&self, slot: Slot) -> bool {
        self.slots[slot as usize].is_some()
    }

    /// The value of an option that requires one (pass 1 guarantees it is there).
    pub(super) fn value(&self, slot: Slot) -> Option<Tok<'a>> {
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
pub(super) fn collect<'a, I: Iterator<Item = Tok<'a>>>(
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
