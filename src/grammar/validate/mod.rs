//! Validation of a parsed message against its MIG (structure, data elements, formats, codes)
//! and its AHB rules, with findings that name their place and the rule they broke.
//!
//! MIG findings are syntax errors in the sense of the market rules (answered with a CONTRL,
//! ISO 9735 codes of DE0085); AHB findings are application errors (answered with an APERAK,
//! BDEW ERC codes). Each finding carries both where they apply.
//!
//! The parts, in the order a message goes through them:
//! - [`split`]: the message's segments split into components once;
//! - [`matcher`]: the structure matched against the MIG tree (as [`mig_tables`](mod@mig_tables)),
//!   each segment placed at its MIG position;
//! - [`values`]: the data elements of each placed segment checked for presence, format and
//!   codes;
//! - [`ahb_engine`]: the AHB rules of the PID (as [`ahb_tables`](mod@ahb_tables)) applied to the
//!   placed segments;
//! - [`report`]: what comes out, [`MessageReport`] with its [`Finding`]s and the
//!   [`Validated`] message.

mod ahb_engine;
mod ahb_tables;
mod matcher;
mod mig_tables;
mod report;
mod split;
mod values;

use chrono::NaiveDate;

use super::Registry;
use crate::edifact::tokens::{ComponentSpan, Splitter};
use crate::edifact::{Delimiters, Interchange, Message, Segment};
use crate::ids::parse_date_303;
use ahb_engine::{apply_ahb, mark_slots, AhbScratch, Conditions, Placed};
use matcher::Matcher;
use split::Split;

pub(super) use ahb_tables::{ahb_tables, AhbTables};
pub(super) use mig_tables::{mig_tables, MigTables};
pub use report::{Finding, GroupView, Level, MessageReport, Severity, Validated};
pub(super) use values::short_key;

/// The PID of a message: the value of the first `RFF+Z13` (BDEW: "Prüfidentifikator").
pub fn message_pid(message: &Message<'_, '_>) -> Option<u32> {
    message
        .body()
        .find(|s| s.is(b"RFF") && s.value(1, 1) == "Z13")
        .and_then(|s| s.value(1, 2).parse().ok())
}

/// The message date: DTM+137 (format 303) in the message head.
pub fn message_date(message: &Message<'_, '_>) -> Option<NaiveDate> {
    message
        .body()
        .take(8)
        .filter(|s| s.is(b"DTM"))
        .find_map(|s| {
            let c507 = s.element(1)?;
            let mut components = c507.components();
            (components.next()?.raw() == b"137")
                .then(|| components.next())
                .flatten()
                .and_then(|v| parse_date_303(&v.text()).ok())
                .map(|d| d.date())
        })
}

/// Validates every message of an interchange.
pub fn validate_interchange<'a>(
    interchange: &Interchange<'_, 'a>,
    registry: &Registry,
) -> Vec<MessageReport<'a>> {
    let fallback = crate::edifact::parse_preparation_date_time(
        &interchange.unb().value(4, 1),
        &interchange.unb().value(4, 2),
    )
    .map(|d| d.date());
    interchange
        .messages()
        .map(|m| validate_message(&m, registry, fallback))
        .collect()
}

/// Validates one message: chooses the MIG by UNH S009, checks its date against the version's
/// validity, matches the structure, checks every data element, then applies the AHB rules of
/// its PID in force on the message date. `fallback_date` (the interchange's) is used when the
/// message has no readable DTM+137.
pub fn validate_message<'a>(
    message: &Message<'_, 'a>,
    registry: &Registry,
    fallback_date: Option<NaiveDate>,
) -> MessageReport<'a> {
    let segments: Vec<Segment<'a>> = message.segments().collect();
    SCRATCH.with(|cell| match cell.try_borrow_mut() {
        Ok(mut scratch) => {
            let report = validate_segments(segments, registry, fallback_date, &mut scratch);
            scratch.trim();
            report
        }
        // Only reachable if validation ever re-entered itself on this thread.
        Err(_) => validate_segments(segments, registry, fallback_date, &mut Scratch::default()),
    })
}

/// Buffers reused from message to message (per thread), so that validating a conformant
/// message allocates only what its report keeps.
#[derive(Default)]
struct Scratch {
    /// Every segment's components, split once (see [`Splitter::split`]).
    parts: Vec<ComponentSpan>,
    /// Per segment: its range in `parts`.
    ranges: Vec<(u32, u32)>,
    /// Per segment: its tag.
    tags: Vec<[u8; 3]>,
    /// Per segment: the MIG position it matched ([`SegmentDef::index`]) or [`UNPLACED`].
    ///
    /// [`SegmentDef::index`]: crate::grammar::SegmentDef::index
    placed: Vec<u32>,
    /// Segment indices of the group repetitions being matched (innermost last).
    segment_stack: Vec<u32>,
    /// Finished group repetitions whose parent is still being matched.
    instance_stack: Vec<u32>,
    /// The arena of the message being matched (copied out, exact size, when it is kept).
    nodes: Vec<report::GroupNode>,
    members: Vec<u32>,
    children: Vec<u32>,
    /// The last message date that was written out, and its text.
    date_text: Option<(NaiveDate, String)>,
    /// The last message date that was read, and the bytes it was read from.
    last_date: split::LastDate,
    /// The splitter of the last message's delimiters.
    splitter: Option<(Delimiters, Box<Splitter>)>,
    /// The conditions of AHB rules that the segments meet.
    ahb: AhbScratch,
}

impl Scratch {
    /// Gives back memory after an unusually large message.
    fn trim(&mut self) {
        const KEEP: usize = 1 << 16;
        if self.parts.capacity() > 16 * KEEP {
            *self = Scratch::default();
        } else if self.ranges.capacity() > KEEP {
            self.ranges = Vec::new();
            self.tags = Vec::new();
            self.placed = Vec::new();
            self.ahb = AhbScratch::default();
        }
    }
}

thread_local! {
    /// The id of the message level (empty), shared rather than allocated per message.
    static ROOT_ID: std::sync::Arc<str> = std::sync::Arc::from("");
    static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::new(Scratch::default());
}

/// The rule of the finding that says a message was not checked because we hold no grammar for
/// its type and version (a warning: see [`MessageReport::is_unchecked`]).
pub const NO_GRAMMAR: &str = "no_grammar";

/// No MIG position (the segment was not matched).
const UNPLACED: u32 = u32::MAX;

/// Values up to this length are unescaped on the stack.
const UNESCAPE_BUFFER: usize = 64;

/// The work of [`validate_message`] on the message's segments, with the buffers of `scratch`.
fn validate_segments<'a>(
    segments: Vec<Segment<'a>>,
    registry: &Registry,
    fallback_date: Option<NaiveDate>,
    scratch: &mut Scratch,
) -> MessageReport<'a> {
    let Scratch {
        parts,
        ranges,
        tags,
        placed,
        segment_stack,
        instance_stack,
        nodes,
        members,
        children,
        date_text,
        last_date,
        splitter,
        ahb: ahb_scratch,
    } = scratch;
    let delimiters = segments[0].delimiters();
    let splitter = match splitter {
        Some((d, s)) if *d == delimiters => s,
        _ => {
            &mut splitter
                .insert((delimiters, Box::new(Splitter::new(&delimiters))))
                .1
        }
    };
    parts.clear();
    ranges.clear();
    tags.clear();
    for s in &segments {
        tags.push(s.tag().0);
        let from = parts.len() as u32;
        splitter.split(s.raw(), parts);
        ranges.push((from, parts.len() as u32));
    }
    placed.clear();
    placed.resize(segments.len(), UNPLACED);
    let split = Split {
        segments: &segments,
        tags: &tags[..],
        parts: &parts[..],
        ranges: &ranges[..],
    };

    // S009 DE0065 and DE0057 as written: when plain ASCII, they are their own text.
    let plain = |c: u16| match split.part(0, 2, c) {
        None => Some(&b""[..]),
        Some(p) if !p.escaped && split.bytes(0, p).is_ascii() => Some(split.bytes(0, p)),
        Some(_) => None,
    };
    let mig_index = match (plain(1), plain(5)) {
        (Some(message_type), Some(association)) => {
            registry.mig_index_bytes(message_type, association)
        }
        _ => registry.mig_index(&split.value(0, 2, 1), &split.value(0, 2, 5)),
    };
    // UNH S009 as text, e.g. `ORDERS:D:09B:UN:1.4b`.
    let identifier = split.identifier();
    let pid = split.pid();
    let message_date = split.date(last_date);
    let date = message_date.map(|(d, _)| d).or(fallback_date);
    let mut report = MessageReport {
        reference: split.value(0, 1, 1).into_owned(),
        identifier,
        pid,
        date,
        mig: None,
        ahb: None,
        findings: Vec::new(),
        validated: None,
    };
    let Some(mig_index) = mig_index else {
        let (message_type, association) = (split.value(0, 2, 1), split.value(0, 2, 5));
        let known: Vec<&str> = registry
            .migs()
            .iter()
            .filter(|m| m.message_type == message_type)
            .map(|m| m.association.as_str())
            .collect();
        // Not an error: a syntactically valid message is never rejected because we hold no
        // grammar for it (the gateway receives every message type for its market partner
        // ID); it is reported unchecked, and whoever processes it checks it.
        report.findings.push(split.finding(
            0,
            Severity::Warning,
            Level::Syntax,
            NO_GRAMMAR,
            format!(
                "no grammar for {message_type} {association} (known versions: {}): not checked",
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            ),
            Some((2, 5)),
            "grammars/".to_string(),
            None,
            None,
        ));
        return report;
    };
    // From here on, the message's type and association are the MIG's (equal as text).
    let mig = &registry.migs()[mig_index];
    let tables = &registry.mig_tables[mig_index];
    report.mig = Some(mig.file.clone());
    for note in &tables.unverified {
        report.findings.push(split.finding(
            0,
            Severity::Warning,
            Level::Syntax,
            "grammar_unverified",
            note.clone(),
            None,
            tables.mig_ref.clone(),
            None,
            None,
        ));
    }
    if let Some(date) = date {
        if !mig.in_force(date) {
            let in_force = registry
                .mig_in_force(&mig.message_type, date)
                .map_or("none known".to_string(), |m| m.association.clone());
            // The same text as formatting the whole message, with the date's text (the slow
            // part) kept from the previous message when the date is the same.
            if date_text.as_ref().is_none_or(|(d, _)| *d != date) {
                *date_text = Some((date, date.to_string()));
            }
            let day = date_text.as_ref().map_or("", |(_, t)| t.as_str());
            let mut message = String::with_capacity(80);
            for piece in [
                mig.message_type.as_str(),
                " ",
                mig.association.as_str(),
                " is not in force on the message date ",
                day,
                " (in force: ",
                in_force.as_str(),
                ")",
            ] {
                message.push_str(piece);
            }
            report.findings.push(split.finding(
                0,
                Severity::Warning,
                Level::Syntax,
                "version_not_in_force",
                message,
                Some((2, 5)),
                tables.mig_ref.clone(),
                None,
                None,
            ));
        }
    }

    // AHB rules of the PID (or of the PID-less type) in force on the message date: chosen
    // now, so that the matcher reads their conditions' data elements as it goes.
    let ahb_index = match pid {
        Some(pid) => registry.by_pid.get(&pid).copied(),
        None => registry
            .ahbs()
            .iter()
            .position(|a| a.pid.is_none() && a.message_type == mig.message_type),
    };
    let ahb = ahb_index.map(|ahb_index| {
        let ahb = &registry.ahbs()[ahb_index];
        let block = ahb
            .blocks
            .iter()
            .position(|b| date.is_none_or(|d| b.in_force(d)) && b.mig_version == mig.association)
            .or_else(|| {
                ahb.blocks
                    .iter()
                    .position(|b| b.mig_version == mig.association)
            });
        (ahb, block.map(|b| (b, &registry.ahb_tables[ahb_index][b])))
    });
    let conditions = match ahb {
        Some((_, Some((_, tables)))) => {
            let words = segments.len().div_ceil(64);
            ahb_scratch.sets.clear();
            ahb_scratch
                .sets
                .resize((tables.conditions + tables.tags.len()) * words, 0);
            Some(Conditions {
                tables,
                sets: &mut ahb_scratch.sets[..],
                words,
            })
        }
        _ => None,
    };

    segment_stack.clear();
    instance_stack.clear();
    nodes.clear();
    members.clear();
    children.clear();
    let delimiters = segments[0].delimiters();
    // The matcher adds to the report's findings (one vector, grown once).
    let matcher_from = report.findings.len();
    let mut matcher = Matcher {
        split,
        tables,
        pos: 0,
        findings: std::mem::take(&mut report.findings),
        placed: &mut placed[..],
        segment_stack,
        instance_stack,
        nodes,
        members,
        children,
        conditions,
        delimiters,
        utf8: segments[0].charset().is_utf8(),
    };
    matcher.match_level(&mig.root, 0, true);
    let root = ROOT_ID.with(|id| matcher.finish_group(id.clone(), 0, 0));
    // Findings of rule kinds the MIG declares unverified become warnings before anything
    // else reads them: they reject nothing, and the message is read as far as it matched.
    super::unverified::relax(
        &mut matcher.findings[matcher_from..],
        mig.unverified_rules,
        &mig.file,
    );
    let structure_ok = !matcher.findings[matcher_from..].iter().any(|f| {
        f.severity == Severity::Error
            && matches!(
                f.rule,
                "unexpected_segment" | "missing_segment" | "missing_group"
            )
    });
    report.findings = std::mem::take(&mut matcher.findings);
    match ahb {
        Some((ahb, Some((block, tables)))) => {
            report.ahb = Some(ahb.file.clone());
            let words = segments.len().div_ceil(64);
            mark_slots(tables, &mut ahb_scratch.sets, words, split, placed);
            let view = Placed {
                split,
                placed: &placed[..],
                sets: &ahb_scratch.sets,
                words,
                slots: tables.conditions * words,
                date_at: message_date.map(|(_, i)| i),
            };
            let ahb_from = report.findings.len();
            apply_ahb(&ahb.blocks[block], tables, &view, &mut report.findings);
            super::unverified::relax(
                &mut report.findings[ahb_from..],
                ahb.blocks[block].unverified_rules,
                &ahb.file,
            );
        }
        Some((ahb, None)) => report.findings.push(split.finding(
            0,
            Severity::Warning,
            Level::Application,
            "no_ahb_for_version",
            format!(
                "{} has no rules for {} {}",
                ahb.file, mig.message_type, mig.association
            ),
            None,
            ahb.file.to_string(),
            None,
            None,
        )),
        // A PID the grammars have no AHB rules for: say so, only the MIG was checked.
        None => {
            if let Some(pid) = pid {
                report.findings.push(split.finding(
                    0,
                    Severity::Warning,
                    Level::Application,
                    "no_ahb_for_pid",
                    format!("no AHB rules for PID {pid}: only the MIG was checked"),
                    None,
                    "grammars/ahb/".to_string(),
                    None,
                    None,
                ));
            }
        }
    }
    if structure_ok {
        report.validated = Some(Validated {
            segments,
            nodes: nodes.to_vec(),
            members: members.to_vec(),
            children: children.to_vec(),
            root,
        });
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::edifact::parse;

    const MIG: &str = r#"source test
message TSTMSG D:1:UN:1.0
valid-from 2025-01-01
segment UNH M 1
  0062 M an..14
  S009 M
    0065 M an..6 = TSTMSG
    0052 M an..3
    0054 M an..3
    0051 M an..2
    0057 M an..6
segment BGM M 1
  C002 M
    1001 M an..3 = Z91 Z12
  1004 M an..35
segment DTM M 3
  C507 M
    2005 M an..3 = 137 203
    2380 M an..35
    2379 M an..3 = 303
segment RFF D 9
  C506 M
    1153 M an..3
    1154 D an..35
group SG2 M 9
  segment NAD M 1
    3035 M an..3 = MS MR
    C082 M
      3039 M an..35
      1131 N an..17
      3055 M an..3 = 293 9
  group SG5 D 1
    segment CTA M 1
      3139 M an..3
segment UNT M 1
  0074 M n..10
  0062 M an..14
"#;

    const AHB: &str = "pid 99001 TSTMSG \"Test\"\nsource test\nversion 2025-01-01 - 1.0\n  require DTM 2005=203  # [1]\n  values NAD 3035=MS 3055 = 293  # [2]\n  check NAD 3035=MS|MR 3039 mpid\n";

    fn registry() -> Registry {
        Registry::from_files([("tst/1.0.mig", MIG), ("ahb/99001.ahb", AHB)]).unwrap()
    }

    fn message(body: &str) -> String {
        let segs: Vec<&str> = body.split('\'').filter(|s| !s.is_empty()).collect();
        format!(
            "UNB+UNOC:3+9900000000003:500+9900000000010:500+251001:0815+R'UNH+1+TSTMSG:D:1:UN:1.0'{}'UNT+{}+1'UNZ+1+R'",
            segs.join("'"),
            segs.len() + 2
        )
    }

    fn report(body: &str) -> Vec<(String, String, usize, Option<usize>)> {
        let text = message(body);
        let doc = parse(text.as_bytes()).unwrap();
        let ic = doc.interchanges().next().unwrap();
        let m = ic.messages().next().unwrap();
        let r = validate_message(&m, &registry(), None);
        r.findings
            .iter()
            .map(|f| {
                (
                    f.rule.to_string(),
                    f.tag.clone(),
                    f.message_segment,
                    f.element,
                )
            })
            .collect()
    }

    const GOOD: &str = "BGM+Z91+DOC1'DTM+137:202510010815?+00:303'DTM+203:202510142200?+00:303'RFF+Z13:99001'NAD+MS+9904292000003::293'CTA+IC'NAD+MR+9903829000006::9'";

    #[test]
    fn a_good_message_has_no_findings_and_reads_by_group_path() {
        let good = GOOD.replace("RFF+Z13:99001'", "");
        assert_eq!(report(&good), vec![]);
        let text = message(&good);
        let doc = parse(text.as_bytes()).unwrap();
        let ic = doc.interchanges().next().unwrap();
        let m = ic.messages().next().unwrap();
        let r = validate_message(&m, &registry(), None);
        let v = r.validated.unwrap();
        let ms = v.root().groups_qualified("SG2", "MS");
        assert_eq!(ms.len(), 1);
        assert_eq!(ms[0].segment(b"NAD").unwrap().value(2, 1), "9904292000003");
        assert_eq!(ms[0].groups("SG5").count(), 1);
        assert_eq!(v.groups_at("SG2/SG5").len(), 1);
        assert_eq!(
            v.root().qualified(b"DTM", "203").unwrap().value(1, 2),
            "202510142200+00"
        );
    }

    #[test]
    fn structure_findings_name_segment_and_code() {
        // BGM missing, a stray segment, too many DTM, missing NAD group.
        let findings = report("DTM+137:1:303'DTM+137:2:303'DTM+137:3:303'DTM+137:4:303'XYZ+1'");
        let rules: Vec<&str> = findings.iter().map(|f| f.0.as_str()).collect();
        assert_eq!(
            rules,
            vec![
                "missing_segment",
                "too_many_repetitions",
                "unexpected_segment",
                "missing_group"
            ]
        );
        assert_eq!(findings[2].1, "XYZ");
        assert_eq!(findings[2].2, 6);
    }

    #[test]
    fn element_findings_name_element_and_component() {
        let bad = "BGM+Z99+DOC1+X'DTM+137:2025:303:9'NAD+MS+ABC:x:293'NAD+MR'";
        let findings = report(bad);
        let rules: Vec<(&str, Option<usize>)> =
            findings.iter().map(|f| (f.0.as_str(), f.3)).collect();
        assert_eq!(
            rules,
            vec![
                ("too_many_elements", Some(3)),
                ("code_not_allowed", Some(1)),
                ("too_many_components", Some(1)),
                ("element_not_used", Some(2)),
                ("missing_element", Some(2)),
            ]
        );
    }

    #[test]
    fn ahb_rules_apply_by_pid() {
        let bad = GOOD
            .replace("DTM+203:202510142200?+00:303'", "")
            .replace("9904292000003::293", "9900357000004::9");
        let findings = report(&bad);
        let rules: Vec<&str> = findings.iter().map(|f| f.0.as_str()).collect();
        assert_eq!(
            rules,
            vec![
                "required_by_ahb",
                "code_not_allowed_by_ahb",
                "format_by_ahb"
            ]
        );
        assert_eq!(report(GOOD), vec![]);
    }

    /// The test MIG as version 1.1, taken over unread (`based-on`), and the AHB rules of 1.1
    /// with their `require` rules unverified.
    fn unverified_registry() -> Registry {
        let next = "source test\nmessage TSTMSG D:1:UN:1.1\nvalid-from 2026-01-01\nbased-on 1.0\nunverified copied from 1.0\nunverified-rules structure elements codes\n";
        let ahb = format!(
            "{AHB}version 2026-01-01 - 1.1\n  unverified-rules required\n  require DTM 2005=203  # [1]\n  values NAD 3035=MS 3055 = 293  # [2]\n  check NAD 3035=MS|MR 3039 mpid\n"
        );
        Registry::from_files([
            ("tst/1.0.mig", MIG),
            ("tst/1.1.mig", next),
            ("ahb/99001.ahb", ahb.as_str()),
        ])
        .unwrap()
    }

    fn report_unverified(body: &str) -> Vec<(String, Severity)> {
        let text = message(body).replace("TSTMSG:D:1:UN:1.0", "TSTMSG:D:1:UN:1.1");
        let doc = parse(text.as_bytes()).unwrap();
        let ic = doc.interchanges().next().unwrap();
        let r = validate_message(&ic.messages().next().unwrap(), &unverified_registry(), None);
        r.findings
            .iter()
            .filter(|f| !matches!(f.rule, "grammar_unverified" | "version_not_in_force"))
            .map(|f| (f.rule.to_string(), f.severity))
            .collect()
    }

    #[test]
    fn findings_of_unverified_rule_kinds_are_warnings_and_the_message_is_still_read() {
        // A stray segment (structure), a surplus element (elements), a new code (codes) and a
        // missing DTM+203 (AHB required): all from rules the files declare unverified.
        let bad = GOOD
            .replace("BGM+Z91+DOC1'", "BGM+Z99+DOC1+9'XYZ+1'")
            .replace("DTM+203:202510142200?+00:303'", "");
        let findings = report_unverified(&bad);
        assert_eq!(
            findings,
            vec![
                ("too_many_elements".to_string(), Severity::Warning),
                ("code_not_allowed".to_string(), Severity::Warning),
                ("unexpected_segment".to_string(), Severity::Warning),
                ("required_by_ahb".to_string(), Severity::Warning),
            ]
        );
        let text = message(&bad).replace("TSTMSG:D:1:UN:1.0", "TSTMSG:D:1:UN:1.1");
        let doc = parse(text.as_bytes()).unwrap();
        let ic = doc.interchanges().next().unwrap();
        let r = validate_message(&ic.messages().next().unwrap(), &unverified_registry(), None);
        assert!(!r.has_errors());
        let surplus = r
            .findings
            .iter()
            .find(|f| f.rule == "too_many_elements")
            .unwrap();
        assert!(surplus.message.ends_with(
            "(not rejected: the elements rules of grammars/tst/1.1.mig are unverified)"
        ));
        // Read as far as it matched: the stray segment is left out, the rest is placed.
        assert_eq!(r.validated.unwrap().groups_at("SG2").len(), 2);
    }

    #[test]
    fn findings_of_verified_rule_kinds_stay_errors_in_an_unverified_grammar() {
        // Formats and repetitions of 1.1 are not declared unverified; the AHB's code list and
        // check digits are verified (or never depend on the version).
        let bad = GOOD
            .replace("DOC1", "DOC1DOC1DOC1DOC1DOC1DOC1DOC1DOC1DOC1")
            .replace("9904292000003::293", "9904292000004::9");
        let findings = report_unverified(&bad);
        assert_eq!(
            findings,
            vec![
                ("value_too_long".to_string(), Severity::Error),
                ("code_not_allowed_by_ahb".to_string(), Severity::Error),
                ("format_by_ahb".to_string(), Severity::Error),
            ]
        );
    }

    #[test]
    fn the_identifier_is_the_joined_texts_of_unh_s009() {
        for s009 in [
            "TSTMSG:D:1:UN:1.0",
            "TSTMSG:D:1:UN:1.0:",
            "TSTMSG:D:1:UN::X",
            "TSTMSG:D:1:UN:::X",
            "TSTMSG:D:1:UN:1.0:X:7",
            "TSTMSG:D:1:UN:1.0:X",
            "TST?:MSG:D:1:UN:1.0",
            "TSTMSG:D?+:1:UN:1.0",
            "TST\u{e4}:D:1:UN:1.0",
            "TSTMSG:D:1:UN:1.0+X",
        ] {
            let text = message(GOOD).replace("TSTMSG:D:1:UN:1.0", s009);
            // One byte per character: UNOC (Latin-1) as the message's UNB says.
            let bytes: Vec<u8> = text.chars().map(|c| c as u8).collect();
            let doc = parse(&bytes).unwrap();
            let ic = doc.interchanges().next().unwrap();
            let m = ic.messages().next().unwrap();
            let unh = m.segments().next().unwrap();
            let expected = crate::edifact::join_components((1..=6).map(|c| unh.value(2, c)));
            assert_eq!(
                validate_message(&m, &registry(), None).identifier,
                expected,
                "{s009}"
            );
        }
    }

    #[test]
    fn each_message_has_its_own_date_when_dates_repeat_and_change() {
        // The date read last is kept by its bytes: repeated, changed, broken, back again.
        let dates = [
            "202510010815?+00",
            "202510010815?+00",
            "202511010815?+00",
            "202511010815+00",
            "202511310815?+00",
            "202510010815?+00",
        ];
        let expected: Vec<Option<NaiveDate>> = vec![
            NaiveDate::from_ymd_opt(2025, 10, 1),
            NaiveDate::from_ymd_opt(2025, 10, 1),
            NaiveDate::from_ymd_opt(2025, 11, 1),
            None,
            None,
            NaiveDate::from_ymd_opt(2025, 10, 1),
        ];
        let read: Vec<Option<NaiveDate>> = dates
            .iter()
            .map(|d| {
                let text = message(&GOOD.replace("202510010815?+00", d));
                let doc = parse(text.as_bytes()).unwrap();
                let ic = doc.interchanges().next().unwrap();
                let m = ic.messages().next().unwrap();
                let date = validate_message(&m, &registry(), None).date;
                date
            })
            .collect();
        assert_eq!(read, expected);
    }

    #[test]
    fn unknown_versions_are_reported_unchecked_not_rejected() {
        let text = message(GOOD).replace("TSTMSG:D:1:UN:1.0", "TSTMSG:D:1:UN:9.9");
        let doc = parse(text.as_bytes()).unwrap();
        let ic = doc.interchanges().next().unwrap();
        let r = validate_message(&ic.messages().next().unwrap(), &registry(), None);
        assert_eq!(r.findings[0].rule, NO_GRAMMAR);
        assert_eq!(r.findings[0].severity, Severity::Warning);
        assert_eq!(r.findings[0].contrl_code, None);
        assert!(r.is_unchecked() && !r.has_errors());
        assert!(r.findings[0].message.contains("known versions: 1.0"));
    }
}
