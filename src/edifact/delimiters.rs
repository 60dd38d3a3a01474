//! Service characters: the UNA service string advice and the ISO 9735 defaults.
//!
//! The UNA segment (`UNA:+.? '`) names six characters in a fixed order: component data element
//! separator, data element separator, decimal mark, release character, repetition separator
//! (syntax version 4; "reserved, space" in version 3) and segment terminator
//! (ISO 9735-1:2002 §8, ISO 9735:1988 §7).

use nom::bytes::complete::{tag, take};
use nom::IResult;
use nom::Parser;

/// Length of a complete UNA service string advice: `UNA` and six characters.
pub const UNA_LEN: usize = 9;

/// The service characters in force for one interchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Delimiters {
    /// Component data element separator (default `:`).
    pub component: u8,
    /// Data element separator (default `+`).
    pub element: u8,
    /// Decimal mark (default `.`); only informative for numeric values, never a separator.
    pub decimal: u8,
    /// Release character (default `?`): the character after it loses its service meaning.
    /// `None` for syntax level B defaults, which have no release character.
    pub release: Option<u8>,
    /// Repetition separator (syntax version 4, default `*`); `None` where the position is
    /// reserved (version 3, where UNA carries a space there).
    pub repetition: Option<u8>,
    /// Segment terminator (default `'`).
    pub terminator: u8,
}

impl Delimiters {
    /// ISO 9735 syntax level A defaults (`UNA:+.? '`), for syntax version 3: no repetition
    /// separator.
    pub const LEVEL_A_V3: Delimiters = Delimiters {
        component: b':',
        element: b'+',
        decimal: b'.',
        release: Some(b'?'),
        repetition: None,
        terminator: b'\'',
    };

    /// ISO 9735-1:2002 syntax level A defaults for version 4: repetition separator `*`.
    pub const LEVEL_A_V4: Delimiters = Delimiters {
        repetition: Some(b'*'),
        ..Delimiters::LEVEL_A_V3
    };

    /// ISO 9735 syntax level B defaults: information separators IS4 (segment terminator, 0x1C),
    /// IS3 (data element separator, 0x1D), IS1 (component separator, 0x1F), no release
    /// character (ISO 9735:1988 §7.1, ISO 9735-1:2002 Annex A). Version 4 adds IS2 (0x1E) as the
    /// repetition separator.
    pub const LEVEL_B_V3: Delimiters = Delimiters {
        component: 0x1F,
        element: 0x1D,
        decimal: b'.',
        release: None,
        repetition: None,
        terminator: 0x1C,
    };

    /// Syntax level B defaults for version 4 (repetition separator IS2).
    pub const LEVEL_B_V4: Delimiters = Delimiters {
        repetition: Some(0x1E),
        ..Delimiters::LEVEL_B_V3
    };

    /// The defaults when no UNA is present: level B when the interchange begins `UNB` followed by
    /// IS3, level A otherwise. The repetition separator is set later, once the UNB syntax
    /// version is known (see [`Delimiters::for_version`]).
    pub fn default_for(input: &[u8]) -> Delimiters {
        if input.len() > 3 && input[3] == Delimiters::LEVEL_B_V3.element {
            Delimiters::LEVEL_B_V3
        } else {
            Delimiters::LEVEL_A_V3
        }
    }

    /// The delimiters as they apply to a syntax version: the repetition separator only exists
    /// from version 4 on. `una_repetition` is the character the UNA gave (or the default).
    pub fn for_version(self, version: u8, una_repetition: Option<u8>) -> Delimiters {
        let repetition = if version >= 4 {
            una_repetition.filter(|&c| c != b' ')
        } else {
            None
        };
        Delimiters { repetition, ..self }
    }

    /// True when `byte` is one of the characters that must be released inside a value.
    #[inline]
    pub fn is_service(&self, byte: u8) -> bool {
        byte == self.component
            || byte == self.element
            || byte == self.terminator
            || Some(byte) == self.release
            || Some(byte) == self.repetition
    }

    /// The UNA service string advice for these delimiters (`UNA:+.? '`).
    pub fn una(&self) -> [u8; UNA_LEN] {
        [
            b'U',
            b'N',
            b'A',
            self.component,
            self.element,
            self.decimal,
            self.release.unwrap_or(b' '),
            self.repetition.unwrap_or(b' '),
            self.terminator,
        ]
    }
}

/// What a UNA service string advice says, before the syntax version is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServiceStringAdvice {
    /// Delimiters with the repetition separator not yet applied.
    pub delimiters: Delimiters,
    /// The fifth character: repetition separator in version 4, reserved (space) in version 3.
    pub repetition_or_reserved: u8,
}

/// Why a UNA could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnaProblem {
    /// Fewer than six characters follow `UNA`.
    TooShort,
    /// Two service characters are the same (the named positions, 1-based).
    NotDistinct(usize, usize),
    /// A separator is a letter, digit or space, which would make segments ambiguous.
    Unusable(usize),
}

fn una_chars(input: &[u8]) -> IResult<&[u8], &[u8]> {
    let (rest, (_, chars)) = (tag(&b"UNA"[..]), take(6usize)).parse(input)?;
    Ok((rest, chars))
}

/// Reads a UNA at the start of `input`. Returns `Ok(None)` when the input does not start with
/// `UNA`.
pub fn parse_una(input: &[u8]) -> Result<Option<ServiceStringAdvice>, UnaProblem> {
    if !input.starts_with(b"UNA") {
        return Ok(None);
    }
    let (_, c) = una_chars(input).map_err(|_| UnaProblem::TooShort)?;
    let (component, element, decimal, release, rep, terminator) =
        (c[0], c[1], c[2], c[3], c[4], c[5]);
    // The separators and the release character must differ from each other; the decimal mark
    // may not equal a separator either. A space in the reserved/repetition position is allowed
    // (version 3), and so is a space for the release character (which then means: none).
    let named = [
        (1, component),
        (2, element),
        (3, decimal),
        (4, release),
        (5, rep),
        (6, terminator),
    ];
    for (i, (pi, a)) in named.iter().enumerate() {
        for (pj, b) in &named[i + 1..] {
            let space_slot = (*pi == 4 || *pi == 5 || *pj == 4 || *pj == 5) && *a == b' ';
            if a == b && !space_slot {
                return Err(UnaProblem::NotDistinct(*pi, *pj));
            }
        }
    }
    for (pos, ch) in [(1, component), (2, element), (6, terminator)] {
        if ch.is_ascii_alphanumeric() || ch == b' ' {
            return Err(UnaProblem::Unusable(pos));
        }
    }
    let release = if release == b' ' { None } else { Some(release) };
    Ok(Some(ServiceStringAdvice {
        delimiters: Delimiters {
            component,
            element,
            decimal,
            release,
            repetition: None,
            terminator,
        },
        repetition_or_reserved: rep,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_bdew_una() {
        let advice = parse_una(b"UNA:+.? 'UNB").unwrap().unwrap();
        assert_eq!(advice.delimiters, Delimiters::LEVEL_A_V3);
        assert_eq!(advice.repetition_or_reserved, b' ');
    }

    #[test]
    fn reads_any_six_characters() {
        let advice = parse_una(b"UNA|^,\\#~").unwrap().unwrap();
        let d = advice
            .delimiters
            .for_version(4, Some(advice.repetition_or_reserved));
        assert_eq!(d.component, b'|');
        assert_eq!(d.element, b'^');
        assert_eq!(d.decimal, b',');
        assert_eq!(d.release, Some(b'\\'));
        assert_eq!(d.repetition, Some(b'#'));
        assert_eq!(d.terminator, b'~');
        assert_eq!(&d.una(), b"UNA|^,\\#~");
    }

    #[test]
    fn version_3_ignores_the_repetition_position() {
        let advice = parse_una(b"UNA:+.?*'").unwrap().unwrap();
        let d = advice.delimiters.for_version(3, Some(b'*'));
        assert_eq!(d.repetition, None);
    }

    #[test]
    fn rejects_short_and_ambiguous_advice() {
        assert_eq!(parse_una(b"UNA:+."), Err(UnaProblem::TooShort));
        assert_eq!(parse_una(b"UNA::.? '"), Err(UnaProblem::NotDistinct(1, 2)));
        assert_eq!(parse_una(b"UNAA+.? '"), Err(UnaProblem::Unusable(1)));
        assert_eq!(parse_una(b"UNB+"), Ok(None));
    }

    #[test]
    fn level_b_defaults_are_chosen_by_the_first_separator() {
        assert_eq!(
            Delimiters::default_for(b"UNB\x1dUNOB\x1f3"),
            Delimiters::LEVEL_B_V3
        );
        assert_eq!(
            Delimiters::default_for(b"UNB+UNOA:3"),
            Delimiters::LEVEL_A_V3
        );
    }
}
