//! The tokenizer: a segment's bytes split into data elements, repetitions and components, and
//! values unescaped, honouring the release character. Every reader of EDIFACT in the crate
//! (the tree's views, the writer's byte-for-byte copy, the envelope checks of the parser, the
//! validator, the acknowledgement reader) splits with these functions, so that a released
//! separator means the same thing everywhere.
//!
//! Two ways to split, with the same rules (a test holds both to one byte-by-byte reference):
//! - [`split_unreleased`] splits at one separator, lazily: what the tree's views
//!   ([`Segment`](super::Segment), [`Element`](super::Element)) need to reach one element or
//!   component. `memchr` finds the candidates.
//! - [`Splitter`] splits a whole segment into all its components in one pass, sixteen bytes at
//!   a time: what the validator needs for every segment of every message, and the parser for
//!   the values of the service segments.
//!
//! The rule: a release character takes away the service meaning of the byte after it, whatever
//! that byte is (the parser reports a release before an ordinary character; the tokenizer does
//! not judge). Unescaping drops each release character and keeps the byte it releases; a
//! release character at the very end releases nothing and is dropped.
//!
//! What it does not do: decode the repertoire (see [`Charset`](super::Charset)), or find where
//! a segment starts (the parser's scanner walks segments and checks their characters; this
//! module finds the terminator of one segment, [`find_terminator`], for readers that look at
//! a single segment, such as the UNB of an interchange that cannot be parsed).
//!
//! ```
//! use mako_gateway::edifact::tokens::{split_unreleased, unescape};
//! let parts: Vec<&[u8]> = split_unreleased(b"FTX+AAI+++O?'Brien?+Co", b'+', Some(b'?'))
//!     .map(|(_, part)| part)
//!     .collect();
//! assert_eq!(parts, [&b"FTX"[..], b"AAI", b"", b"", b"O?'Brien?+Co"]);
//! assert_eq!(unescape(parts[4], Some(b'?')), &b"O'Brien+Co"[..]);
//! ```

use std::borrow::Cow;

use wide::u8x16;

use super::delimiters::Delimiters;

/// Offset of the first `separator` at or after `from` in `raw` that no release character
/// releases, or `None`. `from` must be where a segment, element or component starts (or a
/// separator was just found), so that no release character before it is pending.
#[inline]
pub fn find_unreleased(
    raw: &[u8],
    from: usize,
    separator: u8,
    release: Option<u8>,
) -> Option<usize> {
    let mut search = from;
    loop {
        let rest = raw.get(search..)?;
        let found = match release {
            Some(rel) => memchr::memchr2(separator, rel, rest),
            None => memchr::memchr(separator, rest),
        }?;
        let at = search + found;
        if raw[at] == separator {
            return Some(at);
        }
        // A release character: it and the byte it releases are passed over.
        search = at + 2;
    }
}

/// Offset of the terminator of the segment that starts at `from` (the first terminator that no
/// release character releases), or `None` when the input ends first.
#[inline]
pub fn find_terminator(input: &[u8], from: usize, delimiters: &Delimiters) -> Option<usize> {
    find_unreleased(input, from, delimiters.terminator, delimiters.release)
}

/// Splits `raw` at every `separator` that no release character releases. Yields each part with
/// its start offset in `raw`; empty parts are kept, and an empty `raw` is one empty part.
///
/// ```
/// use mako_gateway::edifact::tokens::split_unreleased;
/// let parts: Vec<_> = split_unreleased(b"a?+b+c??+d", b'+', Some(b'?')).collect();
/// assert_eq!(parts, [(0, &b"a?+b"[..]), (5, b"c??"), (9, b"d")]);
/// ```
#[inline]
pub fn split_unreleased(raw: &[u8], separator: u8, release: Option<u8>) -> Parts<'_> {
    Parts {
        raw,
        separator,
        release,
        start: Some(0),
        search: 0,
    }
}

/// The first repetition of a data element: all of `element` unless the delimiters have a
/// repetition separator (syntax version 4) and it occurs unreleased.
#[inline]
pub fn first_repetition<'a>(element: &'a [u8], delimiters: &Delimiters) -> &'a [u8] {
    match delimiters.repetition {
        Some(rep) => match find_unreleased(element, 0, rep, delimiters.release) {
            Some(end) => &element[..end],
            None => element,
        },
        None => element,
    }
}

/// The parts of [`split_unreleased`].
#[derive(Debug, Clone)]
pub struct Parts<'a> {
    raw: &'a [u8],
    separator: u8,
    release: Option<u8>,
    /// Start of the next part; `None` once the last part was yielded.
    start: Option<usize>,
    /// Where the search for the next separator starts.
    search: usize,
}

impl<'a> Parts<'a> {
    /// `raw` as its only part: for an element of a syntax without repetition separator, so that
    /// both cases are the same iterator type.
    #[inline]
    pub fn whole(raw: &'a [u8]) -> Parts<'a> {
        Parts {
            raw,
            separator: 0,
            release: None,
            start: Some(0),
            // Nothing left to search: the first part runs to the end.
            search: raw.len(),
        }
    }
}

impl<'a> Iterator for Parts<'a> {
    type Item = (usize, &'a [u8]);

    #[inline]
    fn next(&mut self) -> Option<(usize, &'a [u8])> {
        let start = self.start?;
        match find_unreleased(self.raw, self.search, self.separator, self.release) {
            Some(at) => {
                self.start = Some(at + 1);
                self.search = at + 1;
                Some((start, &self.raw[start..at]))
            }
            None => {
                self.start = None;
                Some((start, &self.raw[start..]))
            }
        }
    }
}

impl std::iter::FusedIterator for Parts<'_> {}

/// `raw` with its release characters removed (each keeps the byte it releases). Borrowed when
/// there is none.
///
/// ```
/// use mako_gateway::edifact::tokens::unescape;
/// assert_eq!(unescape(b"O?'Brien??", Some(b'?')), &b"O'Brien?"[..]);
/// assert!(matches!(unescape(b"plain", Some(b'?')), std::borrow::Cow::Borrowed(_)));
/// ```
pub fn unescape(raw: &[u8], release: Option<u8>) -> Cow<'_, [u8]> {
    let Some(rel) = release else {
        return Cow::Borrowed(raw);
    };
    let Some(first) = memchr::memchr(rel, raw) else {
        return Cow::Borrowed(raw);
    };
    let mut out = Vec::with_capacity(raw.len());
    let mut rest = raw;
    let mut at = Some(first);
    while let Some(i) = at {
        out.extend_from_slice(&rest[..i]);
        match rest.get(i + 1) {
            Some(&released) => {
                out.push(released);
                rest = &rest[i + 2..];
            }
            // A release character at the end releases nothing.
            None => rest = &[],
        }
        at = memchr::memchr(rel, rest);
    }
    out.extend_from_slice(rest);
    Cow::Owned(out)
}

/// [`unescape`] into `buf` when `raw` fits (BDEW values are short), else into a new vector:
/// the same bytes either way, without allocating for short values. For values known to hold a
/// release character: a value without one is copied into `buf` all the same.
#[inline]
pub fn unescape_in<'v>(raw: &'v [u8], release: Option<u8>, buf: &'v mut [u8]) -> Cow<'v, [u8]> {
    match release {
        Some(rel) if raw.len() <= buf.len() => {
            let mut n = 0;
            let mut bytes = raw.iter();
            while let Some(&b) = bytes.next() {
                let byte = if b == rel {
                    match bytes.next() {
                        Some(&released) => released,
                        None => break,
                    }
                } else {
                    b
                };
                buf[n] = byte;
                n += 1;
            }
            Cow::Borrowed(&buf[..n])
        }
        _ => unescape(raw, release),
    }
}

/// One component of a segment split by a [`Splitter`]: where it is and what holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ComponentSpan {
    /// Data element position, 1-based after the tag.
    pub element: u16,
    /// Component position in the element's first repetition, 1-based.
    pub component: u16,
    /// Offset of the first byte in the segment.
    pub start: u32,
    /// Offset just past the last byte.
    pub end: u32,
    /// True when the bytes hold a release character (and so need [`unescape`]).
    pub escaped: bool,
}

impl ComponentSpan {
    /// The raw bytes of this component in `segment` (the bytes it was split from).
    #[inline]
    pub fn bytes<'a>(&self, segment: &'a [u8]) -> &'a [u8] {
        &segment[self.start as usize..self.end as usize]
    }

    /// True when the component has no bytes.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.end <= self.start
    }
}

/// Byte classes of [`Splitter`]: ordinary byte.
const ORDINARY: u8 = 0;
/// Byte class: data element separator.
const ELEMENT: u8 = 1;
/// Byte class: component separator.
const COMPONENT: u8 = 2;
/// Byte class: repetition separator.
const REPETITION: u8 = 3;
/// Byte class: release character.
const RELEASE: u8 = 4;

/// The class of every byte value under some delimiters.
type Classes = [u8; 256];

fn classes(d: &Delimiters) -> Classes {
    let mut c = [ORDINARY; 256];
    c[d.element as usize] = ELEMENT;
    c[d.component as usize] = COMPONENT;
    if let Some(r) = d.repetition {
        c[r as usize] = REPETITION;
    }
    if let Some(r) = d.release {
        c[r as usize] = RELEASE;
    }
    c
}

/// Splits whole segments into their components in one pass. Made once per set of delimiters
/// (it holds a 256-byte table and the SIMD lanes of the service characters) and reused for
/// every segment.
pub struct Splitter {
    classes: Classes,
    element: u8x16,
    component: u8x16,
    repetition: Option<u8x16>,
    release: Option<u8x16>,
}

impl std::fmt::Debug for Splitter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Splitter").finish_non_exhaustive()
    }
}

impl Splitter {
    /// A splitter for `delimiters`.
    pub fn new(delimiters: &Delimiters) -> Splitter {
        Splitter {
            classes: classes(delimiters),
            element: u8x16::splat(delimiters.element),
            component: u8x16::splat(delimiters.component),
            repetition: delimiters.repetition.map(u8x16::splat),
            release: delimiters.release.map(u8x16::splat),
        }
    }

    /// Bit `j`: byte `j` of the block is a service character.
    #[inline(always)]
    fn mask(&self, block: &[u8; 16]) -> u32 {
        let v = u8x16::new(*block);
        let mut lanes = v.simd_eq(self.element) | v.simd_eq(self.component);
        if let Some(r) = self.repetition {
            lanes |= v.simd_eq(r);
        }
        if let Some(r) = self.release {
            lanes |= v.simd_eq(r);
        }
        lanes.to_bitmask()
    }

    /// Appends the components of segment `raw` (tag and elements, without terminator) to `out`
    /// in one pass, element by element: the components of each element's first repetition
    /// (the BDEW MIGs repeat no data element; later repetitions are passed over). The tag is
    /// not a component. Service characters are found sixteen bytes at a time; only they are
    /// looked at one by one.
    ///
    /// ```
    /// use mako_gateway::edifact::{tokens::Splitter, Delimiters};
    /// let mut out = Vec::new();
    /// Splitter::new(&Delimiters::LEVEL_A_V3).split(b"NAD+MS+99?+1::293", &mut out);
    /// let parts: Vec<_> = out.iter().map(|c| (c.element, c.component, c.escaped)).collect();
    /// assert_eq!(parts, [(1, 1, false), (2, 1, true), (2, 2, false), (2, 3, false)]);
    /// ```
    pub fn split(&self, raw: &[u8], out: &mut Vec<ComponentSpan>) {
        let n = raw.len();
        let (mut element, mut component, mut start) = (0u16, 1u16, 0usize);
        let mut repetition = false;
        let mut escaped = false;
        // Bytes before this offset are released.
        let mut released_until = 0usize;
        let mut base = 0usize;
        while base < n {
            let mut mask = if n - base >= 16 {
                self.mask(raw[base..base + 16].try_into().expect("16 bytes"))
            } else if n >= 16 {
                // The last bytes: the final sixteen, without the lanes already looked at.
                self.mask(raw[n - 16..].try_into().expect("16 bytes")) >> (base + 16 - n)
            } else {
                // A segment shorter than a block: its bytes in one, the lanes past its end
                // (zeros, which might be a service character) cleared.
                let mut block = [0u8; 16];
                block[..n].copy_from_slice(raw);
                self.mask(&block) & ((1u32 << n) - 1)
            };
            while mask != 0 {
                let i = base + mask.trailing_zeros() as usize;
                mask &= mask - 1;
                if i < released_until {
                    continue;
                }
                let class = self.classes[raw[i] as usize];
                if class == RELEASE {
                    escaped = true;
                    released_until = i + 2;
                    continue;
                }
                if element > 0 && !repetition {
                    out.push(ComponentSpan {
                        element,
                        component,
                        start: start as u32,
                        end: i as u32,
                        escaped,
                    });
                }
                match class {
                    ELEMENT => {
                        element += 1;
                        component = 1;
                        repetition = false;
                    }
                    COMPONENT => component += 1,
                    _ => repetition = true,
                }
                start = i + 1;
                escaped = false;
            }
            base += 16;
        }
        if element > 0 && !repetition {
            out.push(ComponentSpan {
                element,
                component,
                start: start as u32,
                end: n as u32,
                escaped,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small xorshift generator: reproducible random segments without a dependency.
    fn random_bytes(seed: &mut u64, alphabet: &[u8], len: usize) -> Vec<u8> {
        (0..len)
            .map(|_| {
                *seed ^= *seed << 13;
                *seed ^= *seed >> 7;
                *seed ^= *seed << 17;
                alphabet[(*seed % alphabet.len() as u64) as usize]
            })
            .collect()
    }

    #[test]
    fn split_respects_release() {
        let parts: Vec<_> = split_unreleased(b"a?+b+c??+d", b'+', Some(b'?'))
            .map(|(_, p)| p)
            .collect();
        assert_eq!(parts, vec![&b"a?+b"[..], b"c??", b"d"]);
    }

    #[test]
    fn split_keeps_empty_parts() {
        let parts: Vec<_> = split_unreleased(b"ZH9:::123", b':', Some(b'?'))
            .map(|(_, p)| p)
            .collect();
        assert_eq!(parts, vec![&b"ZH9"[..], b"", b"", b"123"]);
        let parts: Vec<_> = split_unreleased(b"", b':', None).collect();
        assert_eq!(parts, vec![(0, &b""[..])]);
        let parts: Vec<_> = split_unreleased(b"a:", b':', None).collect();
        assert_eq!(parts, vec![(0, &b"a"[..]), (2, b"")]);
    }

    #[test]
    fn a_whole_part_is_the_input() {
        assert_eq!(
            Parts::whole(b"a:b*c").collect::<Vec<_>>(),
            vec![(0, &b"a:b*c"[..])]
        );
        assert_eq!(Parts::whole(b"").collect::<Vec<_>>(), vec![(0, &b""[..])]);
    }

    #[test]
    fn a_release_at_the_end_releases_nothing() {
        assert_eq!(find_unreleased(b"ab?", 0, b'\'', Some(b'?')), None);
        assert_eq!(unescape(b"ab?", Some(b'?')), &b"ab"[..]);
        let mut buf = [0u8; 8];
        assert_eq!(unescape_in(b"ab?", Some(b'?'), &mut buf), &b"ab"[..]);
    }

    #[test]
    fn the_terminator_is_the_first_unreleased_one() {
        let d = Delimiters::LEVEL_A_V3;
        let input = b"UNB+A?'B??'UNH'";
        assert_eq!(find_terminator(input, 0, &d), Some(10));
        assert_eq!(find_terminator(input, 11, &d), Some(14));
        assert_eq!(find_terminator(input, 15, &d), None);
        assert_eq!(find_terminator(input, 99, &d), None);
        assert_eq!(find_terminator(b"UNB?'", 0, &d), None);
    }

    #[test]
    fn the_first_repetition_ends_at_an_unreleased_repetition_separator() {
        let d = Delimiters::LEVEL_A_V4;
        assert_eq!(first_repetition(b"a:b*c:d", &d), b"a:b");
        assert_eq!(first_repetition(b"a:b?*c:d", &d), b"a:b?*c:d");
        assert_eq!(first_repetition(b"*c", &d), b"");
        assert_eq!(
            first_repetition(b"a:b*c:d", &Delimiters::LEVEL_A_V3),
            b"a:b*c:d"
        );
    }

    #[test]
    fn unescape_in_a_buffer_is_unescape() {
        let release = Some(b'?');
        for v in [&b"a?+b"[..], b"??", b"?", b"plain", b"x?:y?'z?", b""] {
            let mut buf = [0u8; 64];
            assert_eq!(
                unescape_in(v, release, &mut buf),
                unescape(v, release),
                "{v:?}"
            );
        }
        let long = vec![b'?'; 129];
        let mut buf = [0u8; 64];
        assert_eq!(
            unescape_in(&long, release, &mut buf),
            unescape(&long, release)
        );
        assert_eq!(unescape(&long, release).len(), 64);
        let mut buf = [0u8; 64];
        assert!(matches!(
            unescape_in(b"a?b", None, &mut buf),
            Cow::Borrowed(b"a?b")
        ));
    }

    /// The splitter before it scanned sixteen bytes at a time: one byte after the other.
    fn split_bytewise(raw: &[u8], classes: &Classes) -> Vec<ComponentSpan> {
        let mut out = Vec::new();
        let (mut element, mut component, mut start) = (0u16, 1u16, 0usize);
        let (mut repetition, mut escaped) = (false, false);
        let mut i = 0;
        while i < raw.len() {
            let class = classes[raw[i] as usize];
            if class == ORDINARY {
                i += 1;
                continue;
            }
            if class == RELEASE {
                escaped = true;
                i += 2;
                continue;
            }
            if element > 0 && !repetition {
                out.push(ComponentSpan {
                    element,
                    component,
                    start: start as u32,
                    end: i as u32,
                    escaped,
                });
            }
            match class {
                ELEMENT => {
                    element += 1;
                    component = 1;
                    repetition = false;
                }
                COMPONENT => component += 1,
                _ => repetition = true,
            }
            start = i + 1;
            escaped = false;
            i += 1;
        }
        if element > 0 && !repetition {
            out.push(ComponentSpan {
                element,
                component,
                start: start as u32,
                end: raw.len() as u32,
                escaped,
            });
        }
        out
    }

    /// The components as the tree's views reach them: element by element, first repetition,
    /// component by component.
    fn split_nested(raw: &[u8], d: &Delimiters) -> Vec<ComponentSpan> {
        let mut out = Vec::new();
        for (e, (element_start, element)) in split_unreleased(raw, d.element, d.release)
            .enumerate()
            .skip(1)
        {
            let first = first_repetition(element, d);
            for (c, (start, value)) in split_unreleased(first, d.component, d.release).enumerate() {
                let start = element_start + start;
                out.push(ComponentSpan {
                    element: e as u16,
                    component: c as u16 + 1,
                    start: start as u32,
                    end: (start + value.len()) as u32,
                    escaped: d.release.is_some_and(|r| value.contains(&r)),
                });
            }
        }
        out
    }

    #[test]
    fn the_splitter_agrees_with_the_bytewise_one_and_the_views() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        // The last set has a zero byte as a separator: the padding of short segments must not
        // count as one.
        let zero_component = Delimiters {
            component: 0,
            ..Delimiters::LEVEL_A_V4
        };
        for d in [
            Delimiters::LEVEL_A_V3,
            Delimiters::LEVEL_A_V4,
            zero_component,
        ] {
            let splitter = Splitter::new(&d);
            let alphabet = b"AB1+:*?'. \0";
            for len in 0..70 {
                for _ in 0..200 {
                    let raw = random_bytes(&mut seed, alphabet, len);
                    let mut got = Vec::new();
                    splitter.split(&raw, &mut got);
                    let shown = String::from_utf8_lossy(&raw);
                    assert_eq!(got, split_bytewise(&raw, &splitter.classes), "{shown:?}");
                    assert_eq!(got, split_nested(&raw, &d), "{shown:?}");
                }
            }
        }
    }

    #[test]
    fn unescape_agrees_with_a_bytewise_reference() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        for len in 0..40 {
            for _ in 0..200 {
                let raw = random_bytes(&mut seed, b"a?+", len);
                let mut want = Vec::new();
                let mut bytes = raw.iter();
                while let Some(&b) = bytes.next() {
                    if b == b'?' {
                        want.extend(bytes.next());
                    } else {
                        want.push(b);
                    }
                }
                assert_eq!(unescape(&raw, Some(b'?')), &want[..], "{raw:?}");
            }
        }
    }
}
