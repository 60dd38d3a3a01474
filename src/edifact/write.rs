//! Tree to bytes: the exact writer (a parsed document back to its bytes) and the canonical writer
//! for the interchanges the gateway sends.

use chrono::NaiveDateTime;

use super::charset::{Charset, Unrepresentable};
use super::delimiters::Delimiters;
use super::envelope::{
    parse_preparation_date_time, preparation_date_time, PartnerQualifier, Party,
};
use super::tree::{Document, Interchange, Segment, SyntaxIdentifier};

/// Writes a parsed document back: each segment re-joined from its elements, components and
/// repetitions with the interchange's delimiters, the UNA as given and the line breaks as found.
/// For every input that [`parse`](super::parse) accepts, the result equals the input byte for byte.
pub fn write_document(document: &Document<'_>) -> Vec<u8> {
    let mut out = Vec::with_capacity(document.input().len());
    let input = document.input();
    let interchanges: Vec<Interchange<'_, '_>> = document.interchanges().collect();
    // Leading line breaks before the first interchange are tolerated by the parser.
    let first = interchanges.first().map_or(input.len(), |ic| ic.offset());
    out.extend_from_slice(&input[..first]);
    for (i, ic) in interchanges.iter().enumerate() {
        if let Some(una) = ic.una() {
            out.extend_from_slice(una);
            let after_una = ic.offset() + una.len();
            out.extend_from_slice(&input[after_una..ic.unb().offset()]);
        }
        let d = ic.delimiters();
        let (_, unz) = ic.bounds();
        for segment in ic.segments() {
            write_parsed_segment(&mut out, &segment, &d);
            out.push(d.terminator);
            let number = (segment.number() - 1) as u32;
            if number == unz {
                let next = interchanges.get(i + 1).map_or(input.len(), |n| n.offset());
                let from = segment.offset() + segment.raw().len() + 1;
                out.extend_from_slice(&input[from..next]);
            } else {
                out.extend_from_slice(ic.document().gap_after(number));
            }
        }
    }
    out
}

fn write_parsed_segment(out: &mut Vec<u8>, segment: &Segment<'_>, d: &Delimiters) {
    let raw = segment.raw();
    // The tag element: the tag and, in version 4, its optional nesting components.
    let tag_len = super::tokens::split_unreleased(raw, d.element, d.release)
        .next()
        .map_or(raw.len(), |(_, t)| t.len());
    out.extend_from_slice(&raw[..tag_len]);
    for element in segment.elements() {
        out.push(d.element);
        for (r, repetition) in element.repetitions().enumerate() {
            if r > 0 {
                out.push(d.repetition.unwrap_or(b'*'));
            }
            for (c, component) in repetition.components().enumerate() {
                if c > 0 {
                    out.push(d.component);
                }
                out.extend_from_slice(component.raw());
            }
        }
    }
}

/// A segment built by the gateway: a tag and its data elements, each a list of component
/// values (plain text, not yet escaped or encoded).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OwnedSegment {
    /// The tag (`BGM`, `DTM`, …).
    pub tag: String,
    /// Data elements after the tag; each holds its components.
    pub elements: Vec<Vec<String>>,
}

impl OwnedSegment {
    /// A segment with no elements yet.
    pub fn new(tag: &str) -> OwnedSegment {
        OwnedSegment {
            tag: tag.to_string(),
            elements: Vec::new(),
        }
    }

    /// Appends a data element with one component.
    pub fn simple(mut self, value: impl Into<String>) -> OwnedSegment {
        self.elements.push(vec![value.into()]);
        self
    }

    /// Appends a composite data element.
    pub fn composite<I, S>(mut self, components: I) -> OwnedSegment
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.elements
            .push(components.into_iter().map(Into::into).collect());
        self
    }

    /// Appends an empty data element (a placeholder before later ones).
    pub fn empty(mut self) -> OwnedSegment {
        self.elements.push(Vec::new());
        self
    }

    /// Reads a parsed segment into owned text, trailing empty elements and components removed.
    pub fn from_segment(segment: &Segment<'_>) -> OwnedSegment {
        let mut owned = OwnedSegment::new(segment.tag().as_str());
        for element in segment.elements() {
            owned.elements.push(
                element
                    .components()
                    .map(|c| c.text().into_owned())
                    .collect(),
            );
        }
        owned.trim();
        owned
    }

    /// Removes trailing empty components of each element and trailing empty elements: the
    /// canonical form, which never writes `++` or `::` at the end of a segment.
    pub fn trim(&mut self) {
        for element in &mut self.elements {
            while element.last().is_some_and(|c| c.is_empty()) {
                element.pop();
            }
        }
        while self.elements.last().is_some_and(|e| e.is_empty()) {
            self.elements.pop();
        }
    }
}

/// Why the canonical writer refused a value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WriteError {
    /// A character the syntax identifier cannot carry.
    #[error("segment {segment} {tag}, element {element}, component {component}: {source}")]
    Unrepresentable {
        /// Segment position in the message (UNH = 1) or interchange.
        segment: usize,
        /// Its tag.
        tag: String,
        /// Element position (1-based).
        element: usize,
        /// Component position (1-based).
        component: usize,
        /// The character.
        source: Unrepresentable,
    },
    /// A value contains a service character and there is no release character to escape it.
    #[error("segment {segment} {tag}, element {element}, component {component}: value contains the service character {ch:?} and the delimiters have no release character")]
    UnreleasableServiceCharacter {
        /// Segment position.
        segment: usize,
        /// Its tag.
        tag: String,
        /// Element position.
        element: usize,
        /// Component position.
        component: usize,
        /// The character.
        ch: char,
    },
    /// A tag that is not three upper-case letters or digits.
    #[error("segment {segment}: invalid tag {tag:?}")]
    InvalidTag {
        /// Segment position.
        segment: usize,
        /// The tag.
        tag: String,
    },
}

/// Line layout of written interchanges.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LineBreak {
    /// Segments follow each other directly (the wire format most partners send).
    #[default]
    None,
    /// A LF after every segment terminator (and after UNA).
    Lf,
    /// CR LF after every segment terminator (and after UNA).
    CrLf,
}

impl LineBreak {
    fn bytes(self) -> &'static [u8] {
        match self {
            LineBreak::None => b"",
            LineBreak::Lf => b"\n",
            LineBreak::CrLf => b"\r\n",
        }
    }
}

/// The canonical writer: escapes service characters, encodes the charset, drops trailing empty
/// elements and components, and computes UNT and UNZ counts.
#[derive(Debug, Clone, Copy)]
pub struct Writer {
    delimiters: Delimiters,
    charset: Charset,
    line_break: LineBreak,
}

impl Writer {
    /// A writer for a syntax identifier with its default delimiters (`UNA:+.? '`, and `*` as the
    /// repetition separator in version 4).
    pub fn new(syntax: SyntaxIdentifier) -> Writer {
        let delimiters = if syntax.version >= 4 {
            Delimiters::LEVEL_A_V4
        } else {
            Delimiters::LEVEL_A_V3
        };
        Writer {
            delimiters,
            charset: syntax.charset,
            line_break: LineBreak::None,
        }
    }

    /// Uses other delimiters.
    pub fn with_delimiters(mut self, delimiters: Delimiters) -> Writer {
        self.delimiters = delimiters;
        self
    }

    /// Uses a line layout.
    pub fn with_line_break(mut self, line_break: LineBreak) -> Writer {
        self.line_break = line_break;
        self
    }

    /// The delimiters this writer uses.
    pub fn delimiters(&self) -> Delimiters {
        self.delimiters
    }

    /// Appends one segment, terminator and line break included. `number` is only used in errors.
    pub fn write_segment(
        &self,
        out: &mut Vec<u8>,
        segment: &OwnedSegment,
        number: usize,
    ) -> Result<(), WriteError> {
        let tag = segment.tag.as_bytes();
        let tag_ok = tag.len() == 3
            && tag[0].is_ascii_uppercase()
            && tag[1..]
                .iter()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit());
        if !tag_ok {
            return Err(WriteError::InvalidTag {
                segment: number,
                tag: segment.tag.clone(),
            });
        }
        out.extend_from_slice(tag);
        let elements = trimmed_len(&segment.elements, |e| e.iter().all(|c| c.is_empty()));
        for (ei, element) in segment.elements[..elements].iter().enumerate() {
            out.push(self.delimiters.element);
            let components = trimmed_len(element, |c| c.is_empty());
            for (ci, component) in element[..components].iter().enumerate() {
                if ci > 0 {
                    out.push(self.delimiters.component);
                }
                self.write_value(out, component).map_err(|e| match e {
                    ValueError::Unrepresentable(source) => WriteError::Unrepresentable {
                        segment: number,
                        tag: segment.tag.clone(),
                        element: ei + 1,
                        component: ci + 1,
                        source,
                    },
                    ValueError::NoRelease(ch) => WriteError::UnreleasableServiceCharacter {
                        segment: number,
                        tag: segment.tag.clone(),
                        element: ei + 1,
                        component: ci + 1,
                        ch,
                    },
                })?;
            }
        }
        out.push(self.delimiters.terminator);
        out.extend_from_slice(self.line_break.bytes());
        Ok(())
    }

    fn write_value(&self, out: &mut Vec<u8>, text: &str) -> Result<(), ValueError> {
        let bytes = self
            .charset
            .encode(text)
            .map_err(ValueError::Unrepresentable)?;
        let d = &self.delimiters;
        for &b in bytes.iter() {
            if d.is_service(b) {
                match d.release {
                    Some(rel) => out.push(rel),
                    None => return Err(ValueError::NoRelease(b as char)),
                }
            }
            out.push(b);
        }
        Ok(())
    }

    /// Writes a whole interchange: UNA, UNB, each message between UNH and UNT with its segment
    /// count, and UNZ with the message count.
    pub fn write_interchange(&self, interchange: &OwnedInterchange) -> Result<Vec<u8>, WriteError> {
        let h = &interchange.header;
        let mut out = Vec::with_capacity(256 * (interchange.messages.len() + 1));
        out.extend_from_slice(&self.delimiters.una());
        out.extend_from_slice(self.line_break.bytes());
        let (date, time) = preparation_date_time(h.prepared, h.syntax.version);
        let mut unb = OwnedSegment::new("UNB")
            .composite([
                h.syntax.charset.identifier().to_string(),
                h.syntax.version.to_string(),
            ])
            .composite([h.sender.id.clone(), h.sender.qualifier.code().to_string()])
            .composite([
                h.recipient.id.clone(),
                h.recipient.qualifier.code().to_string(),
            ])
            .composite([date, time])
            .simple(h.control_reference.clone())
            .empty()
            .simple(h.application_reference.clone().unwrap_or_default());
        if h.test {
            // DE0035 test indicator, the 11th element of UNB.
            unb = unb.empty().empty().empty().simple("1");
        }
        self.write_segment(&mut out, &unb, 1)?;
        for message in &interchange.messages {
            let unh = OwnedSegment::new("UNH")
                .simple(message.reference.clone())
                .composite(message.identifier.components());
            self.write_segment(&mut out, &unh, 1)?;
            for (i, segment) in message.segments.iter().enumerate() {
                self.write_segment(&mut out, segment, i + 2)?;
            }
            let count = message.segments.len() + 2;
            let unt = OwnedSegment::new("UNT")
                .simple(count.to_string())
                .simple(message.reference.clone());
            self.write_segment(&mut out, &unt, count)?;
        }
        let unz = OwnedSegment::new("UNZ")
            .simple(interchange.messages.len().to_string())
            .simple(h.control_reference.clone());
        self.write_segment(&mut out, &unz, 0)?;
        Ok(out)
    }
}

enum ValueError {
    Unrepresentable(Unrepresentable),
    NoRelease(char),
}

fn trimmed_len<T>(items: &[T], is_empty: impl Fn(&T) -> bool) -> usize {
    items
        .iter()
        .rposition(|i| !is_empty(i))
        .map_or(0, |p| p + 1)
}

/// UNB of an interchange the gateway writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterchangeHeader {
    /// S001, `UNOC:3` for BDEW.
    pub syntax: SyntaxIdentifier,
    /// S002.
    pub sender: Party,
    /// S003.
    pub recipient: Party,
    /// S004, written in the syntax version's date format.
    pub prepared: NaiveDateTime,
    /// DE0020, unique per sender (see [`ReferenceSequence`](super::ReferenceSequence)).
    pub control_reference: String,
    /// DE0026 (BDEW uses it for MSCONS only: `VL`, `TL`, `EM`).
    pub application_reference: Option<String>,
    /// DE0035 = 1.
    pub test: bool,
}

/// UNH S009: message type, version, release, agency and association assigned code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageIdentifier {
    /// DE0065 (`ORDERS`).
    pub message_type: String,
    /// DE0052 (`D`).
    pub version: String,
    /// DE0054 (`09B`).
    pub release: String,
    /// DE0051 (`UN`).
    pub agency: String,
    /// DE0057 (`1.4b`), the BDEW MIG version.
    pub association: String,
}

impl MessageIdentifier {
    /// Reads `ORDERS:D:09B:UN:1.4b`.
    pub fn parse(s: &str) -> Option<MessageIdentifier> {
        let mut parts = s.split(':');
        let id = MessageIdentifier {
            message_type: parts.next()?.to_string(),
            version: parts.next()?.to_string(),
            release: parts.next()?.to_string(),
            agency: parts.next()?.to_string(),
            association: parts.next().unwrap_or("").to_string(),
        };
        parts.next().is_none().then_some(id)
    }

    fn components(&self) -> [String; 5] {
        [
            self.message_type.clone(),
            self.version.clone(),
            self.release.clone(),
            self.agency.clone(),
            self.association.clone(),
        ]
    }
}

/// A message the gateway writes: UNH reference and identifier, and the segments between UNH
/// and UNT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundMessage {
    /// UNH DE0062.
    pub reference: String,
    /// UNH S009.
    pub identifier: MessageIdentifier,
    /// Segments after UNH and before UNT.
    pub segments: Vec<OwnedSegment>,
}

/// An interchange as the canonical writer takes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedInterchange {
    /// UNB values.
    pub header: InterchangeHeader,
    /// The messages.
    pub messages: Vec<OutboundMessage>,
}

/// Why a parsed interchange could not be read into an [`OwnedInterchange`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot read {what} from the interchange: {found:?}")]
pub struct IntoOwnedError {
    /// The value.
    pub what: &'static str,
    /// What was there.
    pub found: String,
}

impl OwnedInterchange {
    /// Reads a parsed interchange back into the canonical model (messages outside groups).
    pub fn from_parsed(
        interchange: &Interchange<'_, '_>,
    ) -> Result<OwnedInterchange, IntoOwnedError> {
        let unb = interchange.unb();
        let party = |element: usize, what: &'static str| {
            let id = unb.value(element, 1).into_owned();
            let code = unb.value(element, 2);
            PartnerQualifier::from_code(&code)
                .map(|qualifier| Party { id, qualifier })
                .ok_or(IntoOwnedError {
                    what,
                    found: code.into_owned(),
                })
        };
        let prepared = parse_preparation_date_time(&unb.value(4, 1), &unb.value(4, 2)).ok_or(
            IntoOwnedError {
                what: "preparation date and time (UNB S004)",
                found: String::from_utf8_lossy(unb.element(4).map_or(&b""[..], |e| e.raw()))
                    .into_owned(),
            },
        )?;
        let application_reference = Some(unb.value(7, 1).into_owned()).filter(|s| !s.is_empty());
        let header = InterchangeHeader {
            syntax: interchange.syntax(),
            sender: party(2, "sender qualifier (UNB S002 DE0007)")?,
            recipient: party(3, "recipient qualifier (UNB S003 DE0007)")?,
            prepared,
            control_reference: unb.value(5, 1).into_owned(),
            application_reference,
            test: unb.value(11, 1) == "1",
        };
        let messages = interchange
            .messages()
            .map(|m| {
                let s009 = m
                    .unh()
                    .element(2)
                    .map(|e| {
                        e.components()
                            .map(|c| c.text().into_owned())
                            .collect::<Vec<_>>()
                            .join(":")
                    })
                    .unwrap_or_default();
                let identifier = MessageIdentifier::parse(&s009).ok_or(IntoOwnedError {
                    what: "message identifier (UNH S009)",
                    found: s009.clone(),
                })?;
                Ok(OutboundMessage {
                    reference: m.reference().into_owned(),
                    identifier,
                    segments: m.body().map(|s| OwnedSegment::from_segment(&s)).collect(),
                })
            })
            .collect::<Result<Vec<_>, IntoOwnedError>>()?;
        Ok(OwnedInterchange { header, messages })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::edifact::parse;
    use chrono::NaiveDate;

    fn header() -> InterchangeHeader {
        InterchangeHeader {
            syntax: SyntaxIdentifier {
                charset: Charset::Unoc,
                version: 3,
            },
            sender: Party::new("9900000000003"),
            recipient: Party::new("9900000000010"),
            prepared: NaiveDate::from_ymd_opt(2025, 10, 1)
                .unwrap()
                .and_hms_opt(8, 15, 0)
                .unwrap(),
            control_reference: "MG100000001".into(),
            application_reference: None,
            test: false,
        }
    }

    #[test]
    fn writes_counts_escapes_and_trims() {
        let interchange = OwnedInterchange {
            header: header(),
            messages: vec![OutboundMessage {
                reference: "1".into(),
                identifier: MessageIdentifier::parse("ORDERS:D:09B:UN:1.4b").unwrap(),
                segments: vec![
                    OwnedSegment::new("BGM")
                        .simple("Z91")
                        .simple("DOC1")
                        .empty(),
                    OwnedSegment::new("DTM").composite(["137", "202510010815+00", "303"]),
                    OwnedSegment::new("CAV").composite(["ZH9", "", "", "9991000002579"]),
                    OwnedSegment::new("FTX")
                        .simple("AAP")
                        .empty()
                        .empty()
                        .composite(["Müller: O'Brien?", ""]),
                ],
            }],
        };
        let bytes = Writer::new(interchange.header.syntax)
            .write_interchange(&interchange)
            .unwrap();
        let expected: &[u8] = b"UNA:+.? 'UNB+UNOC:3+9900000000003:500+9900000000010:500+251001:0815+MG100000001'UNH+1+ORDERS:D:09B:UN:1.4b'BGM+Z91+DOC1'DTM+137:202510010815?+00:303'CAV+ZH9:::9991000002579'FTX+AAP+++M\xfcller?: O?'Brien??'UNT+6+1'UNZ+1+MG100000001'";
        assert_eq!(
            String::from_utf8_lossy(&bytes),
            String::from_utf8_lossy(expected)
        );
        let doc = parse(&bytes).unwrap();
        let back = OwnedInterchange::from_parsed(&doc.interchanges().next().unwrap()).unwrap();
        let mut normalised = interchange.clone();
        for m in &mut normalised.messages {
            for s in &mut m.segments {
                s.trim();
            }
        }
        assert_eq!(back, normalised);
    }

    #[test]
    fn refuses_what_unoc_cannot_carry() {
        let mut out = Vec::new();
        let err = Writer::new(header().syntax)
            .write_segment(
                &mut out,
                &OwnedSegment::new("NAD")
                    .simple("Z09")
                    .empty()
                    .empty()
                    .simple("Łukasz"),
                7,
            )
            .unwrap_err();
        assert!(matches!(
            err,
            WriteError::Unrepresentable {
                segment: 7,
                element: 4,
                component: 1,
                ..
            }
        ));
    }

    #[test]
    fn writes_test_indicator_and_version_4_dates() {
        let mut h = header();
        h.syntax.version = 4;
        h.test = true;
        let bytes = Writer::new(h.syntax)
            .with_line_break(LineBreak::Lf)
            .write_interchange(&OwnedInterchange {
                header: h,
                messages: vec![],
            })
            .unwrap();
        let text = String::from_utf8(bytes).unwrap();
        assert!(text.starts_with("UNA:+.?*'\nUNB+UNOC:4+9900000000003:500+9900000000010:500+20251001:0815+MG100000001++++++1'\n"));
        assert!(text.ends_with("UNZ+0+MG100000001'\n"));
    }
}
