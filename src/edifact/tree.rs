//! The parsed tree: a thin index over the input bytes.
//!
//! A [`Document`] keeps the input and one 8-byte span per segment; interchanges, groups and
//! messages are ranges of segment numbers. Elements, components and their text are read on
//! demand from the input, so values are borrowed unless unescaping or decoding needs a copy
//! ([`Value::text`] returns a `Cow`). This keeps a 100 MB interchange within a few dozen MB of
//! index.

use std::borrow::Cow;

use super::charset::Charset;
use super::delimiters::Delimiters;
use super::error::SegmentTag;
use super::tokens::{first_repetition, split_unreleased, unescape, Parts};

/// Byte span of one segment: from its tag to just before its terminator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Span {
    pub(crate) start: u32,
    pub(crate) len: u32,
}

impl Span {
    pub(crate) fn range(self) -> std::ops::Range<usize> {
        self.start as usize..(self.start + self.len) as usize
    }
    /// Offset just past the terminator.
    pub(crate) fn after_terminator(self) -> usize {
        (self.start + self.len) as usize + 1
    }
}

/// Syntax identifier and version from UNB S001 (e.g. `UNOC:3`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyntaxIdentifier {
    /// DE0001, the character repertoire.
    pub charset: Charset,
    /// DE0002, the syntax version number (1 to 4).
    pub version: u8,
}

impl std::fmt::Display for SyntaxIdentifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.charset, self.version)
    }
}

/// Index data of one interchange (UNA? UNB … UNZ).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct InterchangeIndex {
    /// Offset of the UNA, if the interchange has one.
    pub(crate) una: Option<u32>,
    pub(crate) delimiters: Delimiters,
    pub(crate) syntax: SyntaxIdentifier,
    /// Segment index of UNB and UNZ in [`Document::spans`].
    pub(crate) unb: u32,
    pub(crate) unz: u32,
    pub(crate) groups: Vec<GroupIndex>,
    pub(crate) messages: Vec<MessageIndex>,
}

/// Index data of one functional group (UNG … UNE).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct GroupIndex {
    pub(crate) ung: u32,
    pub(crate) une: u32,
}

/// Index data of one message (UNH … UNT).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct MessageIndex {
    pub(crate) unh: u32,
    pub(crate) unt: u32,
}

/// A parsed input: one or more interchanges over borrowed bytes.
#[derive(Debug, Clone)]
pub struct Document<'a> {
    pub(crate) input: &'a [u8],
    pub(crate) spans: Vec<Span>,
    pub(crate) interchanges: Vec<InterchangeIndex>,
}

impl<'a> Document<'a> {
    /// The bytes this document was parsed from.
    pub fn input(&self) -> &'a [u8] {
        self.input
    }

    /// Number of segments from the first UNB to the last UNZ (UNA not counted).
    pub fn segment_count(&self) -> usize {
        self.spans.len()
    }

    /// The interchanges in input order.
    pub fn interchanges(&self) -> impl ExactSizeIterator<Item = Interchange<'_, 'a>> + '_ {
        self.interchanges.iter().map(move |index| Interchange {
            document: self,
            index,
        })
    }

    pub(crate) fn segment_at(&self, number: u32, ic: &InterchangeIndex) -> Segment<'a> {
        let span = self.spans[number as usize];
        Segment {
            raw: &self.input[span.range()],
            offset: span.start as usize,
            number: number as usize + 1,
            delimiters: ic.delimiters,
            charset: ic.syntax.charset,
        }
    }

    /// The bytes between the terminator of segment `number` (0-based) and the next segment, or
    /// the end of the input: the line break layout (`""`, `"\n"` or `"\r\n"`), and before a
    /// following interchange also its UNA.
    pub(crate) fn gap_after(&self, number: u32) -> &'a [u8] {
        let from = self.spans[number as usize].after_terminator();
        let to = self
            .spans
            .get(number as usize + 1)
            .map_or(self.input.len(), |s| s.start as usize);
        &self.input[from..to]
    }
}

/// One interchange of a [`Document`].
#[derive(Debug, Clone, Copy)]
pub struct Interchange<'d, 'a> {
    document: &'d Document<'a>,
    index: &'d InterchangeIndex,
}

impl<'d, 'a> Interchange<'d, 'a> {
    /// The service characters in force.
    pub fn delimiters(&self) -> Delimiters {
        self.index.delimiters
    }

    /// UNB S001.
    pub fn syntax(&self) -> SyntaxIdentifier {
        self.index.syntax
    }

    /// The UNA service string advice as written, if present.
    pub fn una(&self) -> Option<&'a [u8]> {
        self.index
            .una
            .map(|o| &self.document.input[o as usize..o as usize + super::delimiters::UNA_LEN])
    }

    /// Byte offset of the interchange's first byte (UNA or UNB).
    pub fn offset(&self) -> usize {
        self.index.una.map_or(
            self.document.spans[self.index.unb as usize].start as usize,
            |o| o as usize,
        )
    }

    /// The UNB segment.
    pub fn unb(&self) -> Segment<'a> {
        self.document.segment_at(self.index.unb, self.index)
    }

    /// The UNZ segment.
    pub fn unz(&self) -> Segment<'a> {
        self.document.segment_at(self.index.unz, self.index)
    }

    /// Sender (UNB S002): identification and code qualifier.
    pub fn sender(&self) -> PartyRef<'a> {
        PartyRef::from_element(self.unb().element(2))
    }

    /// Recipient (UNB S003).
    pub fn recipient(&self) -> PartyRef<'a> {
        PartyRef::from_element(self.unb().element(3))
    }

    /// Interchange control reference (UNB DE0020).
    pub fn control_reference(&self) -> Cow<'a, str> {
        self.unb().value(5, 1)
    }

    /// Number of segments UNB to UNZ inclusive.
    pub fn segment_count(&self) -> usize {
        (self.index.unz - self.index.unb + 1) as usize
    }

    /// Number of functional groups (UNG … UNE).
    pub fn group_count(&self) -> usize {
        self.index.groups.len()
    }

    /// The functional groups' UNG segments.
    pub fn groups(&self) -> impl ExactSizeIterator<Item = Group<'a>> + 'd {
        let (document, index) = (self.document, self.index);
        index.groups.iter().map(move |g| Group {
            ung: document.segment_at(g.ung, index),
            une: document.segment_at(g.une, index),
        })
    }

    /// The messages in order (inside groups or not).
    pub fn messages(&self) -> impl ExactSizeIterator<Item = Message<'d, 'a>> + 'd {
        let (document, index) = (self.document, self.index);
        index.messages.iter().map(move |m| Message {
            document,
            interchange: index,
            index: *m,
        })
    }

    /// Every segment UNB … UNZ in order.
    pub fn segments(&self) -> impl ExactSizeIterator<Item = Segment<'a>> + 'd {
        let (document, index) = (self.document, self.index);
        (index.unb..index.unz + 1).map(move |n| document.segment_at(n, index))
    }

    pub(crate) fn document(&self) -> &'d Document<'a> {
        self.document
    }

    pub(crate) fn bounds(&self) -> (u32, u32) {
        (self.index.unb, self.index.unz)
    }
}

/// A functional group's header and trailer.
#[derive(Debug, Clone, Copy)]
pub struct Group<'a> {
    /// UNG.
    pub ung: Segment<'a>,
    /// UNE.
    pub une: Segment<'a>,
}

/// One message (UNH … UNT).
#[derive(Debug, Clone, Copy)]
pub struct Message<'d, 'a> {
    document: &'d Document<'a>,
    interchange: &'d InterchangeIndex,
    index: MessageIndex,
}

impl<'d, 'a> Message<'d, 'a> {
    /// The UNH segment.
    pub fn unh(&self) -> Segment<'a> {
        self.document.segment_at(self.index.unh, self.interchange)
    }

    /// The UNT segment.
    pub fn unt(&self) -> Segment<'a> {
        self.document.segment_at(self.index.unt, self.interchange)
    }

    /// Message reference number (UNH DE0062).
    pub fn reference(&self) -> Cow<'a, str> {
        self.unh().value(1, 1)
    }

    /// Message type (UNH S009 DE0065), e.g. `ORDERS`.
    pub fn message_type(&self) -> Cow<'a, str> {
        self.unh().value(2, 1)
    }

    /// Version, release, agency and association code (S009 DE0052:0054:0051:0057), e.g.
    /// `D:09B:UN:1.4b`.
    pub fn version(&self) -> String {
        self.unh()
            .element(2)
            .map_or_else(String::new, |s009| version_of(&s009))
    }

    /// Number of segments UNH … UNT inclusive.
    pub fn segment_count(&self) -> usize {
        (self.index.unt - self.index.unh + 1) as usize
    }

    /// Every segment UNH … UNT in order.
    pub fn segments(&self) -> impl ExactSizeIterator<Item = Segment<'a>> + 'd {
        let (document, interchange) = (self.document, self.interchange);
        (self.index.unh..self.index.unt + 1).map(move |n| document.segment_at(n, interchange))
    }

    /// The segments between UNH and UNT.
    pub fn body(&self) -> impl ExactSizeIterator<Item = Segment<'a>> + 'd {
        let (document, interchange) = (self.document, self.interchange);
        (self.index.unh + 1..self.index.unt).map(move |n| document.segment_at(n, interchange))
    }
}

/// DE0052:0054:0051:0057 of a UNH S009: its components from the second on, as
/// [`join_components`] writes them.
pub fn version_of(s009: &Element<'_>) -> String {
    Version(s009).to_string()
}

/// The text of [`version_of`], written where it goes (`format!`, `write!`, serde's
/// `collect_str`) without a string of its own: `parse --format json` writes one per message.
#[derive(Debug, Clone, Copy)]
pub struct Version<'e, 'a>(pub &'e Element<'a>);

impl std::fmt::Display for Version<'_, '_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write_joined(self.0.components().skip(1).map(|c| c.text()), f)
    }
}

/// Component texts joined with `:` whatever the delimiters, trailing empty ones dropped
/// (`D::UN` for `D`, ``, `UN`, ``), written into one string.
pub fn join_components<S: AsRef<str>>(components: impl IntoIterator<Item = S>) -> String {
    let mut out = String::with_capacity(24);
    // Writing into a String does not fail.
    let _ = write_joined(components, &mut out);
    out
}

/// The text of [`join_components`], written to `out`.
pub fn write_joined<S: AsRef<str>>(
    components: impl IntoIterator<Item = S>,
    out: &mut impl std::fmt::Write,
) -> std::fmt::Result {
    // Empty components are written only once a non-empty one follows them.
    let mut pending_separators = 0;
    for (n, component) in components.into_iter().enumerate() {
        if n > 0 {
            pending_separators += 1;
        }
        let text = component.as_ref();
        if !text.is_empty() {
            for _ in 0..pending_separators {
                out.write_char(':')?;
            }
            pending_separators = 0;
            out.write_str(text)?;
        }
    }
    Ok(())
}

/// A party of UNB S002/S003: identification (DE0004) and code qualifier (DE0007).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartyRef<'a> {
    /// DE0004.
    pub id: Cow<'a, str>,
    /// DE0007 (500 BDEW, 14 GS1, 502 DVGW), empty when absent.
    pub qualifier: Cow<'a, str>,
}

impl<'a> PartyRef<'a> {
    fn from_element(element: Option<Element<'a>>) -> PartyRef<'a> {
        match element {
            Some(e) => PartyRef {
                id: e.value(1),
                qualifier: e.value(2),
            },
            None => PartyRef {
                id: Cow::Borrowed(""),
                qualifier: Cow::Borrowed(""),
            },
        }
    }
}

/// One segment, borrowed from the input.
#[derive(Debug, Clone, Copy)]
pub struct Segment<'a> {
    raw: &'a [u8],
    offset: usize,
    number: usize,
    delimiters: Delimiters,
    charset: Charset,
}

impl<'a> Segment<'a> {
    /// Builds a view on `raw` (tag and elements, without terminator).
    pub(crate) fn new(
        raw: &'a [u8],
        offset: usize,
        number: usize,
        delimiters: Delimiters,
        charset: Charset,
    ) -> Segment<'a> {
        Segment {
            raw,
            offset,
            number,
            delimiters,
            charset,
        }
    }

    /// The segment tag.
    pub fn tag(&self) -> SegmentTag {
        SegmentTag([self.raw[0], self.raw[1], self.raw[2]])
    }

    /// True when the tag is `tag`.
    pub fn is(&self, tag: &[u8; 3]) -> bool {
        &self.raw[..3] == tag
    }

    /// The raw bytes from the tag to the terminator (excluded), escapes as written.
    pub fn raw(&self) -> &'a [u8] {
        self.raw
    }

    /// Byte offset of the tag in the input.
    pub fn offset(&self) -> usize {
        self.offset
    }

    /// Segment number in the input (first UNB = 1).
    pub fn number(&self) -> usize {
        self.number
    }

    /// The delimiters in force.
    pub fn delimiters(&self) -> Delimiters {
        self.delimiters
    }

    /// The character repertoire in force.
    pub fn charset(&self) -> Charset {
        self.charset
    }

    /// The data elements after the tag (the tag element itself is not included).
    pub fn elements(&self) -> impl Iterator<Item = Element<'a>> + 'a {
        let (delimiters, charset, base) = (self.delimiters, self.charset, self.offset);
        let raw = self.raw;
        split_unreleased(raw, delimiters.element, delimiters.release)
            .skip(1)
            .map(move |(start, bytes)| Element {
                raw: bytes,
                offset: base + start,
                delimiters,
                charset,
            })
    }

    /// Data element `position` (1-based, after the tag).
    pub fn element(&self, position: usize) -> Option<Element<'a>> {
        if position == 0 {
            return None;
        }
        self.elements().nth(position - 1)
    }

    /// Number of data elements after the tag.
    pub fn element_count(&self) -> usize {
        self.elements().count()
    }

    /// Text of element `element`, component `component` (both 1-based); empty when absent.
    pub fn value(&self, element: usize, component: usize) -> Cow<'a, str> {
        self.element(element)
            .map_or(Cow::Borrowed(""), |e| e.value(component))
    }
}

/// One data element occurrence, with its repetitions (syntax version 4) and components.
#[derive(Debug, Clone, Copy)]
pub struct Element<'a> {
    raw: &'a [u8],
    offset: usize,
    delimiters: Delimiters,
    charset: Charset,
}

impl<'a> Element<'a> {
    /// The raw bytes as written.
    pub fn raw(&self) -> &'a [u8] {
        self.raw
    }

    /// Byte offset in the input.
    pub fn offset(&self) -> usize {
        self.offset
    }

    /// True when the element is empty.
    pub fn is_empty(&self) -> bool {
        self.raw.is_empty()
    }

    /// The repetitions of this element (one unless syntax version 4 repeats it).
    pub fn repetitions(&self) -> impl Iterator<Item = Element<'a>> + 'a {
        let this = *self;
        let parts = match this.delimiters.repetition {
            Some(rep) => split_unreleased(this.raw, rep, this.delimiters.release),
            None => Parts::whole(this.raw),
        };
        parts.map(move |(start, raw)| Element {
            raw,
            offset: this.offset + start,
            ..this
        })
    }

    /// The components of the first repetition.
    pub fn components(&self) -> impl Iterator<Item = Value<'a>> + 'a {
        let first = first_repetition(self.raw, &self.delimiters);
        let (release, charset, base) = (self.delimiters.release, self.charset, self.offset);
        split_unreleased(first, self.delimiters.component, release).map(move |(start, raw)| Value {
            raw,
            offset: base + start,
            release,
            charset,
        })
    }

    /// Component `position` (1-based) of the first repetition.
    pub fn component(&self, position: usize) -> Option<Value<'a>> {
        if position == 0 {
            return None;
        }
        self.components().nth(position - 1)
    }

    /// Text of component `position`; empty when absent.
    pub fn value(&self, position: usize) -> Cow<'a, str> {
        self.component(position)
            .map_or(Cow::Borrowed(""), |c| c.text())
    }
}

/// One component value (a simple data element), raw and escaped as written.
#[derive(Debug, Clone, Copy)]
pub struct Value<'a> {
    raw: &'a [u8],
    offset: usize,
    release: Option<u8>,
    charset: Charset,
}

impl<'a> Value<'a> {
    /// The bytes as written, release characters included.
    pub fn raw(&self) -> &'a [u8] {
        self.raw
    }

    /// Byte offset in the input.
    pub fn offset(&self) -> usize {
        self.offset
    }

    /// True when the value is empty.
    pub fn is_empty(&self) -> bool {
        self.raw.is_empty()
    }

    /// The value bytes with release characters removed, still in the interchange's charset.
    pub fn unescaped(&self) -> Cow<'a, [u8]> {
        unescape(self.raw, self.release)
    }

    /// The value as text: unescaped and decoded from the interchange's charset. Borrowed when
    /// neither step changes a byte.
    pub fn text(&self) -> Cow<'a, str> {
        match self.unescaped() {
            Cow::Borrowed(bytes) => self.charset.decode(bytes),
            Cow::Owned(bytes) => Cow::Owned(self.charset.decode(&bytes).into_owned()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_version_joins_s009_after_the_type_and_drops_trailing_empty_components() {
        for (unh, version) in [
            (&b"UNH+1+ORDERS:D:09B:UN:1.4b"[..], "D:09B:UN:1.4b"),
            (b"UNH+1+ORDERS:D:09B:UN", "D:09B:UN"),
            (b"UNH+1+ORDERS:D::UN:::", "D::UN"),
            (b"UNH+1+ORDERS::09B", ":09B"),
            (b"UNH+1+ORDERS", ""),
            (b"UNH+1+ORDERS:D:09B:UN:1?:4", "D:09B:UN:1:4"),
        ] {
            let unh = Segment::new(unh, 0, 1, Delimiters::LEVEL_A_V3, Charset::Unoc);
            let text = String::from_utf8_lossy(unh.raw()).into_owned();
            assert_eq!(version_of(&unh.element(2).unwrap()), version, "{text}");
        }
        // A message's version is its UNH's.
        let input = b"UNA:+.? 'UNB+UNOC:3+1+2+261207:0800+R'UNH+1+ORDERS:D:09B:UN:1.4b'\
UNT+2+1'UNZ+1+R'";
        let document = crate::edifact::parse(input).unwrap();
        let message = document
            .interchanges()
            .next()
            .unwrap()
            .messages()
            .next()
            .unwrap();
        assert_eq!(message.version(), "D:09B:UN:1.4b");
    }

    #[test]
    fn values_unescape_and_decode() {
        let seg = Segment::new(
            b"NAD+Z09+++M\xfcller?:J\xfcrgen:Anna",
            0,
            1,
            Delimiters::LEVEL_A_V3,
            Charset::Unoc,
        );
        assert_eq!(seg.value(4, 1), "Müller:Jürgen");
        assert_eq!(seg.value(4, 2), "Anna");
        assert_eq!(seg.value(4, 3), "");
        assert_eq!(seg.value(1, 1), "Z09");
        assert_eq!(seg.element_count(), 4);
        assert_eq!(seg.element(4).unwrap().offset(), 10);
    }

    #[test]
    fn repetitions_split_in_version_4() {
        let seg = Segment::new(
            b"XYZ+a:b*c:d+e",
            0,
            1,
            Delimiters::LEVEL_A_V4,
            Charset::Unoc,
        );
        let reps: Vec<_> = seg
            .element(1)
            .unwrap()
            .repetitions()
            .map(|r| r.value(2))
            .collect();
        assert_eq!(reps, vec!["b", "d"]);
        assert_eq!(seg.value(1, 2), "b");
    }
}
