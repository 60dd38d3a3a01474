//! Bytes to tree: segment scanning, service segment checks and control values.
//!
//! The scan is one pass over the input: `memchr` finds each segment terminator, the tag and
//! the characters of the segment are checked, and a small state machine follows the envelope
//! (UNB, UNG, UNH, UNT, UNE, UNZ). Control values are checked as the trailers arrive: UNT's
//! segment count and reference, UNE's message count and reference, UNZ's message (or group)
//! count and reference (ISO 9735-1:2002 §7, ISO 9735:1988 §9).
//!
//! Errors are of two kinds. Errors after which the segment structure is still known (a bad
//! control count, a stray character, an invalid release) are collected and the scan goes on,
//! so that an acknowledgement can name all of them; errors that lose the structure (no
//! terminator, unreadable UNA or UNB, a segment where the envelope allows none) end the scan.

use super::charset::Charset;
use super::delimiters::{parse_una, Delimiters, UnaProblem, UNA_LEN};
use super::error::{Position, SegmentTag, SyntaxError, SyntaxErrorKind};
use super::scan::{ScanProblem, SegmentCursor};
use super::tokens::{find_terminator, ComponentSpan, Splitter};
use super::tree::{
    Document, GroupIndex, InterchangeIndex, MessageIndex, Segment, Span, SyntaxIdentifier,
};

/// Parses every interchange in `input`. Returns the first error if there is any.
///
/// ```
/// let doc = mako_gateway::edifact::parse(b"UNA:+.? 'UNB+UNOC:3+9900000000003:500+9900000000010:500+251001:0815+REF1'UNH+1+APERAK:D:07B:UN:2.1i'BGM+312+X'UNT+3+1'UNZ+1+REF1'").unwrap();
/// let interchange = doc.interchanges().next().unwrap();
/// assert_eq!(interchange.sender().id, "9900000000003");
/// assert_eq!(interchange.messages().next().unwrap().message_type(), "APERAK");
/// ```
// A syntax error carries its whole position (about 150 bytes); errors are rare and returned
// once per parse, so boxing would only add an allocation to every caller's error path.
#[allow(clippy::result_large_err)]
pub fn parse(input: &[u8]) -> Result<Document<'_>, SyntaxError> {
    let outcome = parse_lenient(input);
    match outcome.errors.into_iter().next() {
        Some(error) => Err(error),
        None => Ok(outcome
            .document
            .expect("a scan without errors always yields a document")),
    }
}

/// The result of [`parse_lenient`]: the tree as far as it could be built, and every error.
#[derive(Debug)]
pub struct ParseOutcome<'a> {
    /// The tree, unless an error made the structure unreadable.
    pub document: Option<Document<'a>>,
    /// Every error found, in input order.
    pub errors: Vec<SyntaxError>,
}

/// Parses `input`, collecting every error that leaves the structure readable.
pub fn parse_lenient(input: &[u8]) -> ParseOutcome<'_> {
    let mut scanner = Scanner {
        input,
        // A typical BDEW segment is 20-40 bytes long; reserving for that avoids most regrowth.
        spans: Vec::with_capacity(input.len() / 24 + 4),
        interchanges: Vec::new(),
        errors: Vec::new(),
        service: ServiceFields::new(&Delimiters::LEVEL_A_V3),
    };
    let complete = scanner.run().is_ok();
    let Scanner {
        spans,
        interchanges,
        mut errors,
        ..
    } = scanner;
    for e in &mut errors {
        e.position = e.position.locate(input);
    }
    ParseOutcome {
        document: complete.then_some(Document {
            input,
            spans,
            interchanges,
        }),
        errors,
    }
}

/// Marker: the scan stopped at an error that loses the structure (already recorded).
struct Fatal;

struct Scanner<'a> {
    input: &'a [u8],
    spans: Vec<Span>,
    interchanges: Vec<InterchangeIndex>,
    errors: Vec<SyntaxError>,
    service: ServiceFields,
}

/// Reads the values of the service segments (UNB, UNG, UNH and the trailers) with the
/// tokenizer's one-pass [`Splitter`], made once per set of delimiters: they come once or twice
/// per message, so reading them must cost little next to the scan.
struct ServiceFields {
    delimiters: Delimiters,
    splitter: Splitter,
    /// The components of the segment split last.
    components: Vec<ComponentSpan>,
}

impl ServiceFields {
    fn new(delimiters: &Delimiters) -> ServiceFields {
        ServiceFields {
            delimiters: *delimiters,
            splitter: Splitter::new(delimiters),
            components: Vec::new(),
        }
    }

    /// The components of segment `raw` under `delimiters`.
    fn split(&mut self, raw: &[u8], delimiters: &Delimiters) -> &[ComponentSpan] {
        if self.delimiters != *delimiters {
            *self = ServiceFields::new(delimiters);
        }
        self.components.clear();
        self.splitter.split(raw, &mut self.components);
        &self.components
    }
}

/// Where the envelope state machine is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    /// After UNB, or after UNT/UNE: UNG, UNH or UNZ may follow.
    Interchange,
    /// After UNG, or after a UNT inside a group.
    Group,
    /// Inside a message after UNH.
    Message { in_group: bool },
}

impl<'a> Scanner<'a> {
    fn run(&mut self) -> Result<(), Fatal> {
        if self.input.len() > u32::MAX as usize - 2 {
            return Err(self.fatal(SyntaxErrorKind::InputTooLarge, self.pos(0)));
        }
        let mut at = skip_line_breaks(self.input, 0);
        if at == self.input.len() {
            return Err(self.fatal(SyntaxErrorKind::EmptyInput, self.pos(0)));
        }
        loop {
            at = self.interchange(at)?;
            at = skip_line_breaks(self.input, at);
            if at == self.input.len() {
                return Ok(());
            }
            let rest = &self.input[at..];
            if !(rest.starts_with(b"UNA") || rest.starts_with(b"UNB")) {
                return Err(self.fatal(
                    SyntaxErrorKind::TrailingData,
                    Position {
                        offset: at,
                        segment: self.spans.len() + 1,
                        ..Position::default()
                    },
                ));
            }
        }
    }

    fn pos(&self, offset: usize) -> Position {
        Position {
            offset,
            segment: self.spans.len().max(1),
            ..Position::default()
        }
    }

    fn fatal(&mut self, kind: SyntaxErrorKind, position: Position) -> Fatal {
        self.errors.push(SyntaxError { kind, position });
        Fatal
    }

    fn report(&mut self, kind: SyntaxErrorKind, position: Position) {
        self.errors.push(SyntaxError { kind, position });
    }

    /// Reads one interchange starting at `at` (UNA or UNB). Returns the offset after UNZ's
    /// terminator.
    fn interchange(&mut self, mut at: usize) -> Result<usize, Fatal> {
        let una_offset = at;
        let advice = parse_una(&self.input[at..]).map_err(|problem| {
            let problem = match problem {
                UnaProblem::TooShort => "fewer than six characters after UNA".to_string(),
                UnaProblem::NotDistinct(a, b) => {
                    format!("characters {a} and {b} are the same")
                }
                UnaProblem::Unusable(a) => {
                    format!("character {a} is a letter, digit or space")
                }
            };
            self.fatal(
                SyntaxErrorKind::InvalidServiceStringAdvice { problem },
                Position {
                    offset: una_offset,
                    segment: self.spans.len() + 1,
                    ..Position::default()
                },
            )
        })?;
        let (una, mut delimiters, una_repetition) = match advice {
            Some(a) => {
                at = skip_line_breaks(self.input, at + UNA_LEN);
                (
                    Some(una_offset as u32),
                    a.delimiters,
                    Some(a.repetition_or_reserved),
                )
            }
            None => {
                let d = Delimiters::default_for(&self.input[at..]);
                let rep = if d == Delimiters::LEVEL_B_V3 {
                    Delimiters::LEVEL_B_V4.repetition
                } else {
                    Delimiters::LEVEL_A_V4.repetition
                };
                (None, d, rep)
            }
        };

        // UNB: the syntax identifier decides the charset and the repetition separator.
        let unb_span = self.next_segment(at, &delimiters, "UNB")?;
        let unb_number = self.spans.len() as u32;
        let unb_raw = &self.input[unb_span.range()];
        if !unb_raw.starts_with(b"UNB") {
            return Err(self.fatal(
                SyntaxErrorKind::UnexpectedSegment {
                    expected: if una.is_some() {
                        "UNB after UNA"
                    } else {
                        "UNA or UNB"
                    },
                },
                self.segment_position(unb_span, None),
            ));
        }
        self.spans.push(unb_span);
        let syntax = self.syntax_identifier(unb_span, &delimiters)?;
        delimiters = delimiters.for_version(syntax.version, una_repetition);
        // From here on the scanner knows the delimiters and the repertoire; it reads UNB again
        // so that its characters are checked like every other segment's.
        let mut cursor = SegmentCursor::new(self.input, at, delimiters, syntax.charset);
        match cursor.next_segment() {
            Some(Ok(found)) if found.start == unb_span.start as usize => {}
            _ => unreachable!("the cursor finds the UNB the plain scan found"),
        }
        self.report_scan_problems(&cursor, unb_span, &delimiters, syntax.charset, None);
        let unb_reference = self.check_unb(unb_span, &delimiters, syntax.charset);

        let mut index = InterchangeIndex {
            una,
            delimiters,
            syntax,
            unb: unb_number,
            unz: unb_number,
            groups: Vec::new(),
            messages: Vec::new(),
        };
        let mut place = Place::Interchange;
        let mut unh_number = 0u32;
        // The headers' references, which their trailers must repeat.
        let (mut unh_reference, mut ung_reference): (&[u8], &[u8]) = (&[], &[]);
        let mut ung_number = 0u32;
        let mut group_messages = 0usize;
        let mut bare_messages = 0usize;

        loop {
            let expected = match place {
                Place::Interchange => "UNZ to close the interchange",
                Place::Group => "UNE to close the functional group",
                Place::Message { .. } => "UNT to close the message",
            };
            let span = match cursor.next_segment() {
                Some(Ok(found)) => Span {
                    start: found.start as u32,
                    len: (found.end - found.start) as u32,
                },
                Some(Err(start)) => return Err(self.unterminated(start, &delimiters)),
                None => {
                    return Err(self.fatal(
                        SyntaxErrorKind::MissingSegment { expected },
                        Position {
                            offset: self.input.len().saturating_sub(1),
                            segment: self.spans.len(),
                            ..Position::default()
                        },
                    ))
                }
            };
            self.check_tag(span, &delimiters)?;
            let number = self.spans.len() as u32;
            let raw = &self.input[span.range()];
            let tag = [raw[0], raw[1], raw[2]];
            let message_segment = match place {
                Place::Message { .. } => Some((number - unh_number + 1) as usize),
                _ if &tag == b"UNH" => Some(1),
                _ => None,
            };
            self.spans.push(span);
            if !cursor.problems.is_empty() || syntax.charset.is_utf8() {
                self.report_scan_problems(
                    &cursor,
                    span,
                    &delimiters,
                    syntax.charset,
                    message_segment,
                );
            }
            let at = span.after_terminator();

            match (&tag, place) {
                (b"UNH", Place::Interchange | Place::Group) => {
                    if place == Place::Interchange && !index.groups.is_empty() {
                        return Err(self.fatal(
                            SyntaxErrorKind::UnexpectedSegment {
                                expected: "UNG or UNZ (messages of an interchange with functional groups must all be inside groups)",
                            },
                            self.segment_position(span, Some(1)),
                        ));
                    }
                    unh_reference = self.check_unh(span, &delimiters, syntax.charset);
                    unh_number = number;
                    place = Place::Message {
                        in_group: place == Place::Group,
                    };
                }
                (b"UNT", Place::Message { in_group }) => {
                    let counted = (number - unh_number + 1) as usize;
                    self.check_trailer(
                        span,
                        &delimiters,
                        syntax.charset,
                        counted,
                        unh_reference,
                        "UNT",
                    );
                    index.messages.push(MessageIndex {
                        unh: unh_number,
                        unt: number,
                    });
                    if in_group {
                        group_messages += 1;
                        place = Place::Group;
                    } else {
                        bare_messages += 1;
                        place = Place::Interchange;
                    }
                }
                (b"UNG", Place::Interchange) => {
                    if bare_messages > 0 {
                        return Err(self.fatal(
                            SyntaxErrorKind::UnexpectedSegment {
                                expected: "UNH or UNZ (an interchange with messages outside groups cannot also have groups)",
                            },
                            self.segment_position(span, None),
                        ));
                    }
                    ung_reference = self.check_ung(span, &delimiters, syntax.charset);
                    ung_number = number;
                    group_messages = 0;
                    place = Place::Group;
                }
                (b"UNE", Place::Group) => {
                    self.check_trailer(
                        span,
                        &delimiters,
                        syntax.charset,
                        group_messages,
                        ung_reference,
                        "UNE",
                    );
                    index.groups.push(GroupIndex {
                        ung: ung_number,
                        une: number,
                    });
                    place = Place::Interchange;
                }
                (b"UNZ", Place::Interchange) => {
                    let counted = if index.groups.is_empty() {
                        bare_messages
                    } else {
                        index.groups.len()
                    };
                    self.check_trailer(
                        span,
                        &delimiters,
                        syntax.charset,
                        counted,
                        unb_reference,
                        "UNZ",
                    );
                    index.unz = number;
                    self.interchanges.push(index);
                    return Ok(at);
                }
                (_, Place::Message { .. })
                    if !matches!(&tag, b"UNB" | b"UNG" | b"UNE" | b"UNZ" | b"UNH") =>
                {
                    // an ordinary segment, or UNS/UCI… service segments inside a message
                }
                (_, place) => {
                    let expected = match place {
                        Place::Interchange => "UNH, UNG or UNZ",
                        Place::Group => "UNH or UNE",
                        Place::Message { .. } => "UNT before the next envelope segment",
                    };
                    return Err(self.fatal(
                        SyntaxErrorKind::UnexpectedSegment { expected },
                        Position {
                            message_segment,
                            ..self.segment_position(span, None)
                        },
                    ));
                }
            }
        }
    }

    /// Finds the segment starting at `at` (after optional line breaks): checks that it is
    /// terminated and that its tag is well formed. Does not push the span.
    fn next_segment(
        &mut self,
        at: usize,
        delimiters: &Delimiters,
        expected: &'static str,
    ) -> Result<Span, Fatal> {
        let input = self.input;
        let start = skip_line_breaks(input, at);
        if start == input.len() {
            return Err(self.fatal(
                SyntaxErrorKind::MissingSegment { expected },
                Position {
                    offset: input.len().saturating_sub(1),
                    segment: self.spans.len(),
                    ..Position::default()
                },
            ));
        }
        let Some(end) = find_terminator(input, start, delimiters) else {
            return Err(self.unterminated(start, delimiters));
        };
        let span = Span {
            start: start as u32,
            len: (end - start) as u32,
        };
        self.check_tag(span, delimiters)?;
        Ok(span)
    }

    /// A tag is three upper-case letters or digits starting with a letter, followed by the
    /// element separator, a component separator (version 4 nesting indicator) or the end.
    #[inline(always)]
    fn check_tag(&mut self, span: Span, delimiters: &Delimiters) -> Result<(), Fatal> {
        let raw = &self.input[span.range()];
        let alnum = |b: u8| b.is_ascii_uppercase() || b.is_ascii_digit();
        let tag_ok = match *raw {
            [a, b, c] => a.is_ascii_uppercase() && alnum(b) && alnum(c),
            [a, b, c, next, ..] => {
                a.is_ascii_uppercase()
                    && alnum(b)
                    && alnum(c)
                    && (next == delimiters.element || next == delimiters.component)
            }
            _ => false,
        };
        if tag_ok {
            Ok(())
        } else {
            Err(self.invalid_tag(span))
        }
    }

    #[cold]
    fn invalid_tag(&mut self, span: Span) -> Fatal {
        let raw = &self.input[span.range()];
        let shown = &raw[..raw.len().min(8)];
        self.fatal(
            SyntaxErrorKind::InvalidSegmentTag {
                found: String::from_utf8_lossy(shown).into_owned(),
            },
            Position {
                offset: span.start as usize,
                segment: self.spans.len() + 1,
                ..Position::default()
            },
        )
    }

    /// The fatal error of a segment starting at `start` that has no terminator.
    fn unterminated(&mut self, start: usize, delimiters: &Delimiters) -> Fatal {
        self.fatal(
            SyntaxErrorKind::UnterminatedSegment {
                terminator: delimiters.terminator as char,
            },
            Position {
                offset: start,
                segment: self.spans.len() + 1,
                tag: tag_at(self.input, start),
                ..Position::default()
            },
        )
    }

    /// A position pointing into `span`, with element/component filled from `offset`.
    fn segment_position(&self, span: Span, message_segment: Option<usize>) -> Position {
        Position {
            offset: span.start as usize,
            segment: self.segment_number(span),
            message_segment,
            tag: tag_at(self.input, span.start as usize),
            ..Position::default()
        }
    }

    fn segment_number(&self, span: Span) -> usize {
        // Spans are pushed in order; the segment is usually the last one.
        match self.spans.iter().rposition(|s| *s == span) {
            Some(i) => i + 1,
            None => self.spans.len() + 1,
        }
    }

    /// Position of element `element`, component `component` inside `span`.
    fn element_position(
        &self,
        span: Span,
        delimiters: &Delimiters,
        element: usize,
        component: Option<usize>,
    ) -> Position {
        let raw = &self.input[span.range()];
        let seg = Segment::new(raw, span.start as usize, 0, *delimiters, Charset::Unob);
        let offset = match seg.element(element) {
            Some(e) => match component.and_then(|c| e.component(c)) {
                Some(c) => c.offset(),
                // Absent component: point just past the element, where it would be.
                None if component.is_some() => e.offset() + e.raw().len(),
                None => e.offset(),
            },
            // Absent: point at the end of the segment (its terminator).
            None => span.after_terminator() - 1,
        };
        Position {
            offset,
            element: Some(element),
            component,
            ..self.segment_position(span, None)
        }
    }

    /// Reports what the scanner found inside the segment, and checks UTF-8 well-formedness for
    /// the UTF-8 repertoires.
    fn report_scan_problems(
        &mut self,
        cursor: &SegmentCursor<'_>,
        span: Span,
        delimiters: &Delimiters,
        charset: Charset,
        message_segment: Option<usize>,
    ) {
        for problem in &cursor.problems {
            let (offset, kind) = match *problem {
                ScanProblem::InvalidCharacter(at) => (
                    at,
                    SyntaxErrorKind::InvalidCharacter {
                        byte: self.input[at],
                        charset: charset.identifier(),
                    },
                ),
                ScanProblem::InvalidRelease(at, found) => {
                    (at, SyntaxErrorKind::InvalidRelease { found })
                }
            };
            self.report_in_segment(span, delimiters, offset, message_segment, kind);
        }
        if charset.is_utf8() {
            let raw = &self.input[span.range()];
            if let Err(e) = std::str::from_utf8(raw) {
                self.report_in_segment(
                    span,
                    delimiters,
                    span.start as usize + e.valid_up_to(),
                    message_segment,
                    SyntaxErrorKind::InvalidUtf8,
                );
            }
        }
    }

    /// Records an error at byte `offset` inside `span`, naming element and component.
    fn report_in_segment(
        &mut self,
        span: Span,
        delimiters: &Delimiters,
        offset: usize,
        message_segment: Option<usize>,
        kind: SyntaxErrorKind,
    ) {
        let raw = &self.input[span.range()];
        let seg = Segment::new(raw, span.start as usize, 0, *delimiters, Charset::Unob);
        let mut element = None;
        let mut component = None;
        for (ei, e) in seg.elements().enumerate() {
            if offset >= e.offset() && offset <= e.offset() + e.raw().len() {
                element = Some(ei + 1);
                for (ci, c) in e.components().enumerate() {
                    if offset >= c.offset() && offset <= c.offset() + c.raw().len() {
                        component = Some(ci + 1);
                        break;
                    }
                }
                break;
            }
        }
        let position = Position {
            offset,
            element,
            component,
            message_segment,
            ..self.segment_position(span, message_segment)
        };
        self.report(kind, position);
    }

    /// Reads UNB S001 (syntax identifier and version).
    fn syntax_identifier(
        &mut self,
        span: Span,
        delimiters: &Delimiters,
    ) -> Result<SyntaxIdentifier, Fatal> {
        let raw = &self.input[span.range()];
        let seg = Segment::new(raw, span.start as usize, 0, *delimiters, Charset::Unob);
        let s001 = seg.element(1);
        let id = s001
            .and_then(|e| e.component(1))
            .map(|c| c.raw())
            .unwrap_or(b"");
        let version = s001
            .and_then(|e| e.component(2))
            .map(|c| c.raw())
            .unwrap_or(b"");
        if id.is_empty() || version.is_empty() {
            let position =
                self.element_position(span, delimiters, 1, Some(if id.is_empty() { 1 } else { 2 }));
            return Err(self.fatal(
                SyntaxErrorKind::MissingElement {
                    name: if id.is_empty() {
                        "syntax identifier (UNB S001 DE0001)"
                    } else {
                        "syntax version number (UNB S001 DE0002)"
                    },
                },
                position,
            ));
        }
        let charset = Charset::from_identifier(id);
        let version = match version {
            [v @ b'1'..=b'4'] => Some(v - b'0'),
            _ => None,
        };
        match (charset, version) {
            (Some(charset), Some(version)) => Ok(SyntaxIdentifier { charset, version }),
            _ => {
                let position = self.element_position(
                    span,
                    delimiters,
                    1,
                    Some(if charset.is_none() { 1 } else { 2 }),
                );
                let found =
                    String::from_utf8_lossy(s001.map_or(&b""[..], |e| e.raw())).into_owned();
                Err(self.fatal(SyntaxErrorKind::UnsupportedSyntax { found }, position))
            }
        }
    }

    /// Mandatory UNB elements: S002/S003 identification, S004 date and time, DE0020. Returns
    /// DE0020, the interchange control reference.
    fn check_unb(&mut self, span: Span, delimiters: &Delimiters, charset: Charset) -> &'a [u8] {
        const REQUIRED: [(usize, usize, &str); 5] = [
            (2, 1, "interchange sender identification (UNB S002 DE0004)"),
            (
                3,
                1,
                "interchange recipient identification (UNB S003 DE0004)",
            ),
            (4, 1, "date of preparation (UNB S004 DE0017)"),
            (4, 2, "time of preparation (UNB S004 DE0019)"),
            (5, 1, "interchange control reference (UNB DE0020)"),
        ];
        self.require(span, delimiters, charset, &REQUIRED, 5)
    }

    /// Mandatory UNH elements: DE0062 and S009 0065/0052/0054/0051. Returns DE0062, the
    /// message reference number.
    fn check_unh(&mut self, span: Span, delimiters: &Delimiters, charset: Charset) -> &'a [u8] {
        const REQUIRED: [(usize, usize, &str); 5] = [
            (1, 1, "message reference number (UNH DE0062)"),
            (2, 1, "message type (UNH S009 DE0065)"),
            (2, 2, "message version number (UNH S009 DE0052)"),
            (2, 3, "message release number (UNH S009 DE0054)"),
            (2, 4, "controlling agency (UNH S009 DE0051)"),
        ];
        self.require(span, delimiters, charset, &REQUIRED, 1)
    }

    /// Mandatory UNG elements (ISO 9735-2:2002): DE0038 group identification, sender and
    /// recipient identification, date/time, DE0048 group reference. Returns DE0048.
    fn check_ung(&mut self, span: Span, delimiters: &Delimiters, charset: Charset) -> &'a [u8] {
        const REQUIRED: [(usize, usize, &str); 3] = [
            (1, 1, "message group identification (UNG DE0038)"),
            (4, 1, "date of group preparation (UNG S006 DE0017)"),
            (5, 1, "group reference number (UNG DE0048)"),
        ];
        self.require(span, delimiters, charset, &REQUIRED, 5)
    }

    /// Reports each of the `required` components (element, component, name) of a header that
    /// is empty or absent. Returns the header's reference, element `reference_element`
    /// (component 1), read in the same pass.
    fn require(
        &mut self,
        span: Span,
        delimiters: &Delimiters,
        _charset: Charset,
        required: &[(usize, usize, &'static str)],
        reference_element: usize,
    ) -> &'a [u8] {
        let raw = &self.input[span.range()];
        let components = self.service.split(raw, delimiters);
        let present = nonempty_fields(components);
        let reference = field(raw, components, reference_element, 1);
        for &(element, component, name) in required {
            if present & field_bit(element, component) == 0 {
                let position = self.element_position(span, delimiters, element, Some(component));
                self.report(SyntaxErrorKind::MissingElement { name }, position);
            }
        }
        reference
    }

    /// Checks a trailer: element 1 is the count, element 2 the reference, which must equal
    /// the header's (`header_ref`).
    #[allow(clippy::too_many_arguments)]
    fn check_trailer(
        &mut self,
        span: Span,
        delimiters: &Delimiters,
        _charset: Charset,
        counted: usize,
        header_ref: &[u8],
        name: &'static str,
    ) {
        let input = self.input;
        let raw = &input[span.range()];
        let components = self.service.split(raw, delimiters);
        let (declared, trailer_ref) = (field(raw, components, 1, 1), field(raw, components, 2, 1));
        let message_segment = (name == "UNT").then_some(counted);
        let at_count = |this: &Self| Position {
            message_segment,
            ..this.element_position(span, delimiters, 1, Some(1))
        };
        if declared.is_empty() {
            let position = at_count(self);
            self.report(
                SyntaxErrorKind::MissingElement {
                    name: match name {
                        "UNT" => "number of segments in the message (UNT DE0074)",
                        "UNE" => "number of messages in the group (UNE DE0060)",
                        _ => "interchange control count (UNZ DE0036)",
                    },
                },
                position,
            );
        } else if !declared.iter().all(u8::is_ascii_digit) || declared.len() > 10 {
            let position = at_count(self);
            self.report(
                SyntaxErrorKind::InvalidValue {
                    name: "control count",
                    expected: "digits (n..10)",
                    found: String::from_utf8_lossy(declared).into_owned(),
                },
                position,
            );
        } else if parse_digits(declared) != Some(counted) {
            let position = at_count(self);
            self.report(
                SyntaxErrorKind::ControlCountMismatch {
                    declared: String::from_utf8_lossy(declared).into_owned(),
                    counted,
                },
                position,
            );
        }
        if header_ref != trailer_ref {
            let position = Position {
                message_segment,
                ..self.element_position(span, delimiters, 2, Some(1))
            };
            self.report(
                SyntaxErrorKind::ControlReferenceMismatch {
                    header: String::from_utf8_lossy(header_ref).into_owned(),
                    trailer: String::from_utf8_lossy(trailer_ref).into_owned(),
                },
                position,
            );
        }
    }
}

fn parse_digits(digits: &[u8]) -> Option<usize> {
    digits.iter().try_fold(0usize, |n, &d| {
        n.checked_mul(10)?.checked_add(usize::from(d - b'0'))
    })
}

/// Bit of element `element` (1 to 6), component `component` (1 to 5) in [`nonempty_fields`].
fn field_bit(element: usize, component: usize) -> u32 {
    debug_assert!((1..=6).contains(&element) && (1..=5).contains(&component));
    1 << ((element - 1) * 5 + component - 1)
}

/// Which of the first six elements' first five components (first repetition) are non-empty,
/// as [`field_bit`]s.
fn nonempty_fields(components: &[ComponentSpan]) -> u32 {
    components
        .iter()
        .take_while(|c| c.element <= 6)
        .filter(|c| c.component <= 5 && !c.is_empty())
        .fold(0, |bits, c| {
            bits | field_bit(usize::from(c.element), usize::from(c.component))
        })
}

/// Raw value of element `element`, component `component` (1-based) of a service segment
/// `raw` split into `components`, or empty when absent.
fn field<'a>(
    raw: &'a [u8],
    components: &[ComponentSpan],
    element: usize,
    component: usize,
) -> &'a [u8] {
    components
        .iter()
        .find(|c| usize::from(c.element) == element && usize::from(c.component) == component)
        .map_or(&[], |c| c.bytes(raw))
}

#[inline]
fn skip_line_breaks(input: &[u8], mut at: usize) -> usize {
    while at < input.len() && (input[at] == b'\n' || input[at] == b'\r') {
        at += 1;
    }
    at
}

fn tag_at(input: &[u8], at: usize) -> Option<SegmentTag> {
    let t = input.get(at..at + 3)?;
    t.iter()
        .all(|b| b.is_ascii_alphanumeric())
        .then(|| SegmentTag([t[0], t[1], t[2]]))
}

#[cfg(test)]
mod tests {
    use super::*;

    const APERAK: &[u8] = b"UNA:+.? 'UNB+UNOC:3+9900000000003:500+9900000000010:500+251001:0815+REF1'UNH+1+APERAK:D:07B:UN:2.1i'BGM+312+X'UNT+3+1'UNZ+1+REF1'";

    #[test]
    fn parses_a_minimal_interchange() {
        let doc = parse(APERAK).unwrap();
        assert_eq!(doc.segment_count(), 5);
        let ic = doc.interchanges().next().unwrap();
        assert_eq!(ic.control_reference(), "REF1");
        assert_eq!(ic.sender().qualifier, "500");
        let m = ic.messages().next().unwrap();
        assert_eq!(m.version(), "D:07B:UN:2.1i");
        assert_eq!(m.segment_count(), 3);
    }

    #[test]
    fn reports_a_wrong_unt_count_at_the_count() {
        let bad = String::from_utf8_lossy(APERAK).replace("UNT+3+1", "UNT+4+1");
        let err = parse(bad.as_bytes()).unwrap_err();
        assert_eq!(
            err.kind,
            SyntaxErrorKind::ControlCountMismatch {
                declared: "4".into(),
                counted: 3
            }
        );
        assert_eq!(err.position.tag, Some(SegmentTag(*b"UNT")));
        assert_eq!(err.position.element, Some(1));
        assert_eq!(
            &bad.as_bytes()[err.position.offset..err.position.offset + 1],
            b"4"
        );
        assert_eq!(err.position.segment, 4);
        assert_eq!(err.position.message_segment, Some(3));
    }

    #[test]
    fn lenient_parse_collects_several_errors() {
        let bad = String::from_utf8_lossy(APERAK)
            .replace("UNT+3+1", "UNT+4+2")
            .replace("UNZ+1+REF1", "UNZ+2+REF1");
        let outcome = parse_lenient(bad.as_bytes());
        let kinds: Vec<_> = outcome.errors.iter().map(|e| e.kind.name()).collect();
        assert_eq!(
            kinds,
            vec![
                "control_count_mismatch",
                "control_reference_mismatch",
                "control_count_mismatch"
            ]
        );
        assert!(outcome.document.is_some());
    }

    #[test]
    fn released_terminator_does_not_end_a_segment() {
        let input =
            b"UNB+UNOC:3+A+B+251001:0815+R'UNH+1+X:D:1:UN'FTX+AAP+++O?'Brien??'UNT+3+1'UNZ+1+R'";
        let doc = parse(input).unwrap();
        let ic = doc.interchanges().next().unwrap();
        let ftx = ic.messages().next().unwrap().body().next().unwrap();
        assert_eq!(ftx.value(4, 1), "O'Brien?");
    }
}
