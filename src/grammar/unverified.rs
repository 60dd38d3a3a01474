//! Which findings of an unverified grammar still reject a message.
//!
//! A grammar file says which kinds of its rules could not be read from a BDEW text
//! (`unverified-rules` in a `.mig` header or an `.ahb` version block). A finding that comes
//! from such a rule is a **warning**: it never leads to a CONTRL or a negative APERAK, because
//! the partner's message may follow the real rule and our copy be wrong. Rules whose content
//! does not depend on the BDEW version stay **errors** even there; `class_of` is the one
//! place that decides, and its match arms give the reason for every rule.
//!
//! This module does not decide *whether* a grammar is unverified: the grammar files say so,
//! with a reason (see `grammars/README.md`, section "What stays unverified").

use std::fmt;

/// A kind of rule that a grammar file can declare unverified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleClass {
    /// MIG: which segments and groups exist, their order and status.
    Structure,
    /// MIG: how often a segment or group may repeat.
    Repetitions,
    /// MIG: how many data elements and components a segment has, and their status.
    Elements,
    /// MIG: character class and length of a value.
    Formats,
    /// MIG: the code list of a data element.
    Codes,
    /// AHB: `require` and `if … then` (a segment the PID needs).
    Required,
    /// AHB: `forbid`.
    Forbidden,
    /// AHB: `one-of`.
    Exclusive,
    /// AHB: `values` (the codes the PID allows in a data element).
    AhbCodes,
}

impl RuleClass {
    /// The name used in grammar files.
    pub fn name(self) -> &'static str {
        match self {
            RuleClass::Structure => "structure",
            RuleClass::Repetitions => "repetitions",
            RuleClass::Elements => "elements",
            RuleClass::Formats => "formats",
            RuleClass::Codes => "codes",
            RuleClass::Required => "required",
            RuleClass::Forbidden => "forbidden",
            RuleClass::Exclusive => "exclusive",
            RuleClass::AhbCodes => "codes",
        }
    }

    fn bit(self) -> u16 {
        1 << self as u16
    }

    /// The classes of a `.mig` file.
    pub const MIG: [RuleClass; 5] = [
        RuleClass::Structure,
        RuleClass::Repetitions,
        RuleClass::Elements,
        RuleClass::Formats,
        RuleClass::Codes,
    ];

    /// The classes of an `.ahb` version block.
    pub const AHB: [RuleClass; 4] = [
        RuleClass::Required,
        RuleClass::Forbidden,
        RuleClass::Exclusive,
        RuleClass::AhbCodes,
    ];
}

/// A set of [`RuleClass`]es: the kinds of rule a grammar declares unverified.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RuleClasses(u16);

impl RuleClasses {
    /// No class: every rule was read from a BDEW text (or from a source the file names).
    pub const NONE: RuleClasses = RuleClasses(0);

    /// True when `class` is in the set.
    pub fn contains(self, class: RuleClass) -> bool {
        self.0 & class.bit() != 0
    }

    /// True when the set is empty.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Adds `class`.
    pub fn insert(&mut self, class: RuleClass) {
        self.0 |= class.bit();
    }

    /// Parses the value of an `unverified-rules` line: class names separated by spaces, from
    /// `allowed` ([`RuleClass::MIG`] or [`RuleClass::AHB`]).
    pub fn parse(value: &str, allowed: &[RuleClass]) -> Result<RuleClasses, String> {
        let mut set = RuleClasses::NONE;
        for word in value.split_whitespace() {
            let class = allowed.iter().find(|c| c.name() == word).ok_or_else(|| {
                format!(
                    "unknown rule kind {word:?} (known: {})",
                    allowed
                        .iter()
                        .map(|c| c.name())
                        .collect::<Vec<_>>()
                        .join(" ")
                )
            })?;
            set.insert(*class);
        }
        if set.is_empty() {
            return Err("`unverified-rules` needs at least one rule kind".into());
        }
        Ok(set)
    }
}

impl fmt::Display for RuleClasses {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for class in RuleClass::MIG.iter().chain(RuleClass::AHB.iter()) {
            if self.contains(*class) {
                if !first {
                    f.write_str(" ")?;
                }
                f.write_str(class.name())?;
                first = false;
            }
        }
        Ok(())
    }
}

/// The class of the rule behind a finding (`rule` as in [`Finding::rule`], on a segment with
/// `tag`), or `None` for a rule that stays an error whatever the grammar declares.
///
/// [`Finding::rule`]: super::Finding::rule
pub(crate) fn class_of(rule: &str, tag: &str) -> Option<RuleClass> {
    // UNH and UNT are ISO 9735 service segments: their data elements, formats and codes are
    // the same in every BDEW version of every message type, so such a finding on them is never
    // a matter of a MIG we could not read. (Structure findings are placed on the segment where
    // the matcher noticed them, often UNT for a missing last segment: they are not pinned.)
    let service = tag == "UNH" || tag == "UNT";
    let class = match rule {
        // New versions add, remove and reorder segments and groups (FV2610 removed the
        // sender's CTA/COM from ORDERS, ORDRSP, IFTSTA, UTILMD and APERAK); a segment unknown
        // to our copy, or one it requires that the new version dropped, may be right.
        "unexpected_segment" | "missing_segment" | "missing_group" | "segment_not_used" => {
            return Some(RuleClass::Structure)
        }
        // Repetition limits change between versions (IFTSTA 2.1 COM 5 -> 4, ORDERS 1.4c CAV
        // 4 -> 1).
        "too_many_repetitions" | "too_many_group_repetitions" => RuleClass::Repetitions,
        // New versions put unused positions to use (ORDERS 1.4c and UTILMD S2.2: PIA C212
        // DE1131 becomes R) and change statuses.
        "too_many_elements" | "too_many_components" | "element_not_used" | "missing_element" => {
            RuleClass::Elements
        }
        // BDEW formats (length, character class) of a data element can change with the
        // version; the UN directory only bounds them.
        "value_too_long"
        | "value_too_short"
        | "invalid_character_type"
        | "invalid_decimal_notation"
        | "missing_digit_before_decimal_mark" => RuleClass::Formats,
        // New versions add codes (qualifiers, categories, EBD numbers).
        "code_not_allowed" => RuleClass::Codes,
        // AHB: what a PID requires, forbids or allows changes with every AHB version.
        "required_by_ahb" => return Some(RuleClass::Required),
        "forbidden_by_ahb" => return Some(RuleClass::Forbidden),
        "exclusive_by_ahb" => return Some(RuleClass::Exclusive),
        "code_not_allowed_by_ahb" => return Some(RuleClass::AhbCodes),
        // AHB `check` rules (market location, metering location and market partner IDs with
        // their check digits, date formats 303/102/203 with UTC offset +00) stay errors: the
        // IDs and formats are defined outside the AHB version (ID rules of the BDEW, DE2379
        // code list), and the segment they look at is chosen by its qualifier, so a rule that
        // no longer applies finds nothing to check instead of a wrong value.
        "format_by_ahb" => return None,
        // Anything else (warnings such as `grammar_unverified`, processing errors added
        // later) is left as it is.
        _ => return None,
    };
    (!service).then_some(class)
}

/// Turns the errors among `findings` whose rule class is in `unverified` into warnings, saying
/// so in their message. `file` names the grammar under `grammars/` (`orders/1.4c.mig`).
pub(crate) fn relax(findings: &mut [super::Finding], unverified: RuleClasses, file: &str) {
    if unverified.is_empty() {
        return;
    }
    for f in findings {
        if f.severity != super::Severity::Error {
            continue;
        }
        let Some(class) = class_of(f.rule, &f.tag) else {
            continue;
        };
        if unverified.contains(class) {
            f.severity = super::Severity::Warning;
            f.message.push_str(" (not rejected: the ");
            f.message.push_str(class.name());
            f.message.push_str(" rules of grammars/");
            f.message.push_str(file);
            f.message.push_str(" are unverified)");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_kinds_a_file_may_declare() {
        let set = RuleClasses::parse("structure codes", &RuleClass::MIG).unwrap();
        assert!(set.contains(RuleClass::Structure) && set.contains(RuleClass::Codes));
        assert!(!set.contains(RuleClass::Formats));
        assert_eq!(set.to_string(), "structure codes");
        let ahb = RuleClasses::parse("required codes", &RuleClass::AHB).unwrap();
        assert!(ahb.contains(RuleClass::AhbCodes) && !ahb.contains(RuleClass::Codes));
        assert!(RuleClasses::parse("required", &RuleClass::MIG)
            .unwrap_err()
            .contains("unknown rule kind"));
        assert!(RuleClasses::parse("", &RuleClass::MIG).is_err());
    }

    #[test]
    fn service_segments_and_value_checks_stay_errors() {
        assert_eq!(class_of("missing_element", "UNH"), None);
        assert_eq!(class_of("value_too_long", "UNT"), None);
        assert_eq!(class_of("format_by_ahb", "LOC"), None);
        assert_eq!(class_of("grammar_unverified", "UNH"), None);
        // A missing last segment is reported on UNT: still a structure finding.
        assert_eq!(
            class_of("missing_segment", "UNT"),
            Some(RuleClass::Structure)
        );
        assert_eq!(
            class_of("too_many_elements", "BGM"),
            Some(RuleClass::Elements)
        );
        assert_eq!(
            class_of("code_not_allowed_by_ahb", "AJT"),
            Some(RuleClass::AhbCodes)
        );
    }
}
