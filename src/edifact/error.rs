//! Syntax errors with the place they were found.

use std::fmt;

/// A three-character segment tag (`UNB`, `DTM`, …), kept as bytes so that errors and views carry
/// it without allocating.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SegmentTag(pub [u8; 3]);

impl SegmentTag {
    /// The tag as text (tags are checked to be ASCII letters and digits).
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or("???")
    }
}

impl fmt::Display for SegmentTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for SegmentTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.as_str())
    }
}

/// Where in the input something was found. Numbers are 1-based except `offset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Position {
    /// Byte offset from the start of the input (0-based).
    pub offset: usize,
    /// Line (1-based; lines end with LF).
    pub line: usize,
    /// Column in bytes on that line (1-based).
    pub column: usize,
    /// Segment number in the input, UNB of the first interchange = 1 (UNA not counted).
    pub segment: usize,
    /// Segment position inside its message, UNH = 1, as CONTRL's UCS reports it.
    pub message_segment: Option<usize>,
    /// Tag of the segment, when it could be read.
    pub tag: Option<SegmentTag>,
    /// Data element position after the tag (1-based), when the error is inside one.
    pub element: Option<usize>,
    /// Component position inside that element (1-based).
    pub component: Option<usize>,
}

impl Position {
    /// Fills `line` and `column` from the offset.
    pub(crate) fn locate(mut self, input: &[u8]) -> Position {
        let before = &input[..self.offset.min(input.len())];
        self.line = memchr::memchr_iter(b'\n', before).count() + 1;
        let line_start = memchr::memrchr(b'\n', before).map_or(0, |i| i + 1);
        self.column = self.offset - line_start + 1;
        self
    }
}

/// What is wrong. Each variant names what was expected and what was found.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SyntaxErrorKind {
    /// The input has no bytes, or only line breaks.
    EmptyInput,
    /// The UNA service string advice is not six usable characters.
    InvalidServiceStringAdvice {
        /// What is wrong with it.
        problem: String,
    },
    /// The last segment has no terminator before the end of the input.
    UnterminatedSegment {
        /// The terminator in force.
        terminator: char,
    },
    /// A segment tag is not three upper-case letters or digits starting with a letter.
    InvalidSegmentTag {
        /// The bytes found where the tag should be.
        found: String,
    },
    /// A byte outside the character repertoire of the syntax identifier.
    InvalidCharacter {
        /// The byte.
        byte: u8,
        /// The syntax identifier in force.
        charset: &'static str,
    },
    /// A release character not followed by a service character.
    InvalidRelease {
        /// The byte after the release character (`None` at the end of a segment).
        found: Option<u8>,
    },
    /// UTF-8 in a UNOW/UNOY interchange is not well formed.
    InvalidUtf8,
    /// A segment where another was required.
    UnexpectedSegment {
        /// What the structure allows here.
        expected: &'static str,
    },
    /// The input ended, or the interchange closed, before a required segment.
    MissingSegment {
        /// The segment that is missing.
        expected: &'static str,
    },
    /// A mandatory data element or component of a service segment is empty or absent.
    MissingElement {
        /// Its name (`syntax identifier`, `message reference`, …).
        name: &'static str,
    },
    /// A service segment value does not have the required form.
    InvalidValue {
        /// Its name.
        name: &'static str,
        /// The form it must have.
        expected: &'static str,
        /// The value found.
        found: String,
    },
    /// The syntax identifier or version is not one this parser knows.
    UnsupportedSyntax {
        /// The value found.
        found: String,
    },
    /// A control count (UNT, UNE, UNZ) does not match what was counted.
    ControlCountMismatch {
        /// What the trailer declares.
        declared: String,
        /// What the parser counted.
        counted: usize,
    },
    /// A trailer reference (UNT, UNE, UNZ) differs from its header's.
    ControlReferenceMismatch {
        /// The header's reference.
        header: String,
        /// The trailer's reference.
        trailer: String,
    },
    /// Bytes after the last interchange that are not line breaks.
    TrailingData,
    /// The input is larger than the parser's offsets can address (4 GiB).
    InputTooLarge,
}

impl SyntaxErrorKind {
    /// A stable snake_case name for machine-readable output.
    pub fn name(&self) -> &'static str {
        match self {
            SyntaxErrorKind::EmptyInput => "empty_input",
            SyntaxErrorKind::InvalidServiceStringAdvice { .. } => "invalid_service_string_advice",
            SyntaxErrorKind::UnterminatedSegment { .. } => "unterminated_segment",
            SyntaxErrorKind::InvalidSegmentTag { .. } => "invalid_segment_tag",
            SyntaxErrorKind::InvalidCharacter { .. } => "invalid_character",
            SyntaxErrorKind::InvalidRelease { .. } => "invalid_release",
            SyntaxErrorKind::InvalidUtf8 => "invalid_utf8",
            SyntaxErrorKind::UnexpectedSegment { .. } => "unexpected_segment",
            SyntaxErrorKind::MissingSegment { .. } => "missing_segment",
            SyntaxErrorKind::MissingElement { .. } => "missing_element",
            SyntaxErrorKind::InvalidValue { .. } => "invalid_value",
            SyntaxErrorKind::UnsupportedSyntax { .. } => "unsupported_syntax",
            SyntaxErrorKind::ControlCountMismatch { .. } => "control_count_mismatch",
            SyntaxErrorKind::ControlReferenceMismatch { .. } => "control_reference_mismatch",
            SyntaxErrorKind::TrailingData => "trailing_data",
            SyntaxErrorKind::InputTooLarge => "input_too_large",
        }
    }

    /// The ISO 9735 syntax error code (code list DE0085) a CONTRL reports for this error.
    pub fn contrl_code(&self) -> u8 {
        match self {
            // 2: syntax version or level not supported
            SyntaxErrorKind::UnsupportedSyntax { .. } => 2,
            // 12: invalid value
            SyntaxErrorKind::InvalidValue { .. } => 12,
            // 13: missing
            SyntaxErrorKind::MissingElement { .. } | SyntaxErrorKind::MissingSegment { .. } => 13,
            // 14: value not supported in this position
            SyntaxErrorKind::UnexpectedSegment { .. } | SyntaxErrorKind::TrailingData => 14,
            // 28: references do not match
            SyntaxErrorKind::ControlReferenceMismatch { .. } => 28,
            // 29: control count does not match number of instances received
            SyntaxErrorKind::ControlCountMismatch { .. } => 29,
            // 21: invalid character(s)
            SyntaxErrorKind::InvalidCharacter { .. }
            | SyntaxErrorKind::InvalidUtf8
            | SyntaxErrorKind::InvalidRelease { .. } => 21,
            // 25 (test indicator) does not apply; 17 (no agreement) does not apply; the rest
            // mean the interchange cannot be read as EDIFACT at all: 18, unspecified error.
            SyntaxErrorKind::EmptyInput
            | SyntaxErrorKind::InvalidServiceStringAdvice { .. }
            | SyntaxErrorKind::UnterminatedSegment { .. }
            | SyntaxErrorKind::InvalidSegmentTag { .. }
            | SyntaxErrorKind::InputTooLarge => 18,
        }
    }
}

fn printable(byte: u8) -> String {
    if byte.is_ascii_graphic() || byte == b' ' {
        format!("`{}`", byte as char)
    } else {
        format!("byte 0x{byte:02X}")
    }
}

impl fmt::Display for SyntaxErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SyntaxErrorKind::EmptyInput => write!(f, "input is empty: expected UNA or UNB"),
            SyntaxErrorKind::InvalidServiceStringAdvice { problem } => {
                write!(f, "invalid UNA service string advice: {problem}")
            }
            SyntaxErrorKind::UnterminatedSegment { terminator } => write!(
                f,
                "segment terminator `{terminator}` not found before end of input"
            ),
            SyntaxErrorKind::InvalidSegmentTag { found } => write!(
                f,
                "expected a segment tag of three upper-case letters or digits, found {found:?}"
            ),
            SyntaxErrorKind::InvalidCharacter { byte, charset } => {
                write!(
                    f,
                    "{} is not in the {charset} character repertoire",
                    printable(*byte)
                )
            }
            SyntaxErrorKind::InvalidRelease { found: Some(b) } => write!(
                f,
                "release character must precede a service character, found {}",
                printable(*b)
            ),
            SyntaxErrorKind::InvalidRelease { found: None } => {
                write!(
                    f,
                    "release character at the end of a segment releases nothing"
                )
            }
            SyntaxErrorKind::InvalidUtf8 => write!(f, "invalid UTF-8 in a UNOW/UNOY interchange"),
            SyntaxErrorKind::UnexpectedSegment { expected } => {
                write!(f, "unexpected segment: expected {expected}")
            }
            SyntaxErrorKind::MissingSegment { expected } => {
                write!(f, "missing segment: expected {expected}")
            }
            SyntaxErrorKind::MissingElement { name } => write!(f, "missing {name}"),
            SyntaxErrorKind::InvalidValue {
                name,
                expected,
                found,
            } => write!(f, "invalid {name}: expected {expected}, found {found:?}"),
            SyntaxErrorKind::UnsupportedSyntax { found } => {
                write!(f, "unsupported syntax identifier {found:?}: expected UNOA/UNOB/UNOC/UNOD/UNOE/UNOW/UNOY with version 1 to 4")
            }
            SyntaxErrorKind::ControlCountMismatch { declared, counted } => write!(
                f,
                "control count mismatch: trailer declares {declared}, counted {counted}"
            ),
            SyntaxErrorKind::ControlReferenceMismatch { header, trailer } => write!(
                f,
                "control reference mismatch: header has {header:?}, trailer has {trailer:?}"
            ),
            SyntaxErrorKind::TrailingData => {
                write!(f, "unexpected data after the end of the interchange: expected UNA, UNB or end of input")
            }
            SyntaxErrorKind::InputTooLarge => write!(f, "input larger than 4 GiB"),
        }
    }
}

/// A syntax error and where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    /// What is wrong.
    pub kind: SyntaxErrorKind,
    /// Where.
    pub position: Position,
}

impl fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = &self.position;
        write!(f, "{}", self.kind)?;
        write!(f, " (segment {}", p.segment)?;
        if let Some(tag) = p.tag {
            write!(f, " {tag}")?;
        }
        if let Some(e) = p.element {
            write!(f, ", element {e}")?;
            if let Some(c) = p.component {
                write!(f, ", component {c}")?;
            }
        }
        write!(
            f,
            ", byte {}, line {}, column {})",
            p.offset, p.line, p.column
        )
    }
}

impl std::error::Error for SyntaxError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_the_place() {
        let e = SyntaxError {
            kind: SyntaxErrorKind::UnterminatedSegment { terminator: '\'' },
            position: Position {
                offset: 1203,
                segment: 14,
                tag: Some(SegmentTag(*b"UNT")),
                ..Position::default()
            }
            .locate(&[b'\n'; 10]),
        };
        assert_eq!(
            e.to_string(),
            "segment terminator `'` not found before end of input (segment 14 UNT, byte 1203, line 11, column 1194)"
        );
    }
}
