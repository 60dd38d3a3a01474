//! A message's segments with their components split once (by the tokenizer's
//! [`Splitter`](crate::edifact::tokens::Splitter)), and what the matcher and the AHB engine read
//! through it: values by position, their text, the places of findings, the PID and the date.

use std::borrow::Cow;

use chrono::NaiveDate;

use super::{Finding, Level, Severity, UNESCAPE_BUFFER};
use crate::edifact::tokens::{unescape, unescape_in, ComponentSpan};
use crate::edifact::Segment;
use crate::ids::parse_date_303;

/// A message's segments with their components split once.
#[derive(Clone, Copy)]
pub(super) struct Split<'v, 'a> {
    pub(super) segments: &'v [Segment<'a>],
    /// Per segment: its tag.
    pub(super) tags: &'v [[u8; 3]],
    pub(super) parts: &'v [ComponentSpan],
    pub(super) ranges: &'v [(u32, u32)],
}

impl<'v, 'a> Split<'v, 'a> {
    /// The components of segment `i`.
    pub(super) fn parts(&self, i: usize) -> &'v [ComponentSpan] {
        let (from, to) = self.ranges[i];
        &self.parts[from as usize..to as usize]
    }

    /// Component `c` of element `e` of segment `i`, if present.
    pub(super) fn part(&self, i: usize, e: u16, c: u16) -> Option<&'v ComponentSpan> {
        self.parts(i)
            .iter()
            .find(|p| p.element == e && p.component == c)
    }

    /// Raw bytes of a part of segment `i`.
    pub(super) fn bytes(&self, i: usize, p: &ComponentSpan) -> &'a [u8] {
        &self.segments[i].raw()[p.start as usize..p.end as usize]
    }

    /// Text of element `e`, component `c` of segment `i`: the same as [`Segment::value`].
    pub(super) fn value(&self, i: usize, e: u16, c: u16) -> Cow<'a, str> {
        match self.part(i, e, c) {
            Some(p) => self.text(i, p),
            None => Cow::Borrowed(""),
        }
    }

    /// A part unescaped and decoded, as [`crate::edifact::Value::text`] does it.
    pub(super) fn text(&self, i: usize, p: &ComponentSpan) -> Cow<'a, str> {
        let seg = &self.segments[i];
        let raw = self.bytes(i, p);
        if p.escaped {
            if let Cow::Owned(bytes) = unescape(raw, seg.delimiters().release) {
                return Cow::Owned(seg.charset().decode(&bytes).into_owned());
            }
        }
        seg.charset().decode(raw)
    }

    /// Calls `f` with the text of a part (the same text as [`Split::text`]), unescaping short
    /// values on the stack.
    pub(super) fn with_text<R>(&self, i: usize, p: &ComponentSpan, f: impl FnOnce(&str) -> R) -> R {
        let seg = &self.segments[i];
        let raw = self.bytes(i, p);
        if p.escaped {
            let mut buf = [0u8; UNESCAPE_BUFFER];
            f(&seg
                .charset()
                .decode(&unescape_in(raw, seg.delimiters().release, &mut buf)))
        } else {
            f(&seg.charset().decode(raw))
        }
    }

    /// Byte offset of a finding's place: the same as [`finding_offset`] on the segment.
    fn offset(&self, i: usize, place: Option<(usize, usize)>) -> usize {
        let base = self.segments[i].offset();
        let Some((e, c)) = place else {
            return base;
        };
        let (Ok(e), Ok(c)) = (u16::try_from(e), u16::try_from(c)) else {
            return finding_offset(&self.segments[i], place);
        };
        match self.part(i, e, 1) {
            Some(element) => base + self.part(i, e, c).unwrap_or(element).start as usize,
            None => base,
        }
    }

    /// A finding about segment `i` (message position `i + 1`).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn finding(
        &self,
        i: usize,
        severity: Severity,
        level: Level,
        rule: &'static str,
        message: String,
        place: Option<(usize, usize)>,
        reference: String,
        contrl_code: Option<u8>,
        aperak_code: Option<&'static str>,
    ) -> Finding {
        let segment = &self.segments[i];
        Finding {
            severity,
            level,
            rule,
            message,
            offset: self.offset(i, place),
            segment: segment.number(),
            message_segment: i + 1,
            tag: segment.tag().as_str().to_string(),
            element: place.map(|p| p.0),
            component: place.map(|p| p.1),
            reference,
            contrl_code,
            aperak_code,
        }
    }

    /// UNH S009 as text (segment 0, element 2), components joined with `:` whatever the
    /// delimiters and trailing empty ones dropped, as
    /// [`join_components`](crate::edifact::join_components) writes the component texts
    /// (`ORDERS:D:09B:UN:1.4b`). Written from the bytes when the components are plain ASCII
    /// (the same text in every repertoire), through the texts otherwise.
    pub(super) fn identifier(&self) -> String {
        let raw = self.segments[0].raw();
        let mut out = String::with_capacity(24);
        // The last component written (1 before any): a component `c` written next is preceded
        // by `c - written` separators, the empty ones between them included.
        let mut written = 1u16;
        for p in self.parts(0) {
            if p.element != 2 || !(1..=6).contains(&p.component) || p.end == p.start {
                continue;
            }
            let bytes = &raw[p.start as usize..p.end as usize];
            let plain = !p.escaped && bytes.is_ascii();
            let Some(text) = plain.then(|| std::str::from_utf8(bytes).ok()).flatten() else {
                return crate::edifact::join_components((1..=6).map(|c| self.value(0, 2, c)));
            };
            for _ in written..p.component {
                out.push(':');
            }
            out.push_str(text);
            written = p.component;
        }
        out
    }

    /// The PID as [`message_pid`](super::message_pid) reads it.
    pub(super) fn pid(&self) -> Option<u32> {
        let body = 1..self.segments.len().saturating_sub(1);
        body.into_iter()
            .find(|&i| {
                // An ASCII text equals the bytes that every repertoire decodes it from.
                self.tags[i] == *b"RFF"
                    && self.part(i, 1, 1).is_some_and(|p| {
                        if p.escaped {
                            self.with_text(i, p, |t| t == "Z13")
                        } else {
                            self.bytes(i, p) == b"Z13"
                        }
                    })
            })
            .and_then(|i| {
                let p = self.part(i, 1, 2)?;
                if p.escaped {
                    self.with_text(i, p, |t| t.parse().ok())
                } else {
                    parse_u32(self.bytes(i, p))
                }
            })
    }

    /// The message date as [`message_date`](super::message_date) reads it, and the segment
    /// whose C507 DE2380 it is (a valid date in format 303). `last` holds the date read last:
    /// the messages of one interchange mostly carry the same one, and reading it is the
    /// larger part of this.
    pub(super) fn date(&self, last: &mut LastDate) -> Option<(NaiveDate, usize)> {
        let body = 1..self.segments.len().saturating_sub(1).min(9);
        body.into_iter()
            .filter(|&i| self.tags[i] == *b"DTM")
            .find_map(|i| {
                let qualifier = self.part(i, 1, 1)?;
                if self.bytes(i, qualifier) != b"137" {
                    return None;
                }
                let v = self.part(i, 1, 2)?;
                let (raw, release) = (self.bytes(i, v), self.segments[i].delimiters().release);
                if let Some(date) = last.of(release, raw) {
                    return Some((date, i));
                }
                let date = self.with_text(i, v, |t| parse_date_303(t).ok())?.date();
                last.keep(release, raw, date);
                Some((date, i))
            })
    }
}

/// The message date read last ([`Split::date`]), by the bytes it was read from and the release
/// character they were written with: equal bytes under the same release character are the
/// same text (ASCII is its own text in every repertoire; only ASCII bytes are kept).
#[derive(Debug, Default)]
pub(super) struct LastDate {
    release: Option<u8>,
    raw: Vec<u8>,
    date: Option<NaiveDate>,
}

impl LastDate {
    /// Values longer than this are not kept (a date in format 303 has 15 characters).
    const LONGEST: usize = 32;

    /// The date read last from these bytes, if it was.
    fn of(&self, release: Option<u8>, raw: &[u8]) -> Option<NaiveDate> {
        self.date
            .filter(|_| self.release == release && self.raw == raw)
    }

    /// Keeps the date read from `raw`.
    fn keep(&mut self, release: Option<u8>, raw: &[u8], date: NaiveDate) {
        if raw.len() <= Self::LONGEST && raw.is_ascii() {
            self.release = release;
            self.raw.clear();
            self.raw.extend_from_slice(raw);
            self.date = Some(date);
        }
    }
}

/// Byte offset of a place in a segment: the component, else its element, else the segment.
fn finding_offset(segment: &Segment<'_>, place: Option<(usize, usize)>) -> usize {
    match place.and_then(|(e, c)| segment.element(e).map(|el| (el, c))) {
        Some((el, c)) => el.component(c).map_or(el.offset(), |v| v.offset()),
        None => segment.offset(),
    }
}

/// `str::parse::<u32>` on the text of `bytes`: a non-ASCII text is no number either, and an
/// ASCII one is these bytes.
fn parse_u32(bytes: &[u8]) -> Option<u32> {
    let digits = bytes.strip_prefix(b"+").unwrap_or(bytes);
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u32, |n, &d| {
        d.is_ascii_digit()
            .then(|| n.checked_mul(10)?.checked_add(u32::from(d - b'0')))
            .flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_u32_is_str_parse_on_ascii_digits() {
        for v in [
            "",
            "+",
            "-",
            "0",
            "+7",
            "++7",
            "-0",
            "17133",
            "4294967295",
            "4294967296",
            "1a",
            " 1",
            "\u{663}",
        ] {
            assert_eq!(parse_u32(v.as_bytes()), v.parse::<u32>().ok(), "{v:?}");
        }
    }
}
