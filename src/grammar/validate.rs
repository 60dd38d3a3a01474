//! Validation of a parsed message against its MIG (structure, data elements, formats, codes)
//! and its AHB rules, with findings that name their place and the rule they broke.
//!
//! MIG findings are syntax errors in the sense of the market rules (answered with a CONTRL,
//! ISO 9735 codes of DE0085); AHB findings are application errors (answered with an APERAK,
//! BDEW ERC codes). Each finding carries both where they apply.

use std::borrow::Cow;

use chrono::NaiveDate;

use super::ahb::{Ahb, AhbBlock, CompiledRule, CompiledSelector, Locations, RuleKind, ValueKind};
use super::mig::{CharClass, GroupDef, Mig, Node, SegmentDef, SimpleDef, Status};
use super::Registry;
use crate::edifact::tokens::{unescape, unescape_in, ComponentSpan, Splitter};
use crate::edifact::{Delimiters, Interchange, Message, Segment};
use crate::ids::{
    parse_date_102, parse_date_203, parse_date_303, MarketLocationId, MarketPartnerId,
    MeteringLocationId,
};

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The message breaks a rule; it is answered negatively.
    Error,
    /// Worth knowing, but no reason to reject (e.g. a grammar marked unverified).
    Warning,
}

/// Which kind of rule a finding is about, and so which answer it leads to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// MIG: structure, formats, MIG code lists. Answered with a CONTRL.
    Syntax,
    /// AHB: rules of the Prüfidentifikator. Answered with an APERAK.
    Application,
}

/// One thing found wrong (or worth noting) in a message.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Finding {
    /// Error or warning.
    pub severity: Severity,
    /// Syntax (MIG, CONTRL) or application (AHB, APERAK).
    pub level: Level,
    /// A stable name of the rule kind (`missing_segment`, `code_not_allowed`, …).
    pub rule: &'static str,
    /// What is wrong, in words.
    pub message: String,
    /// Byte offset in the input.
    pub offset: usize,
    /// Segment number in the input (UNB = 1).
    pub segment: usize,
    /// Segment position in the message (UNH = 1).
    pub message_segment: usize,
    /// Segment tag.
    pub tag: String,
    /// Data element position (1-based), when the finding is about one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub element: Option<usize>,
    /// Component position (1-based).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub component: Option<usize>,
    /// The document and place of the rule (`MIG ORDERS 1.4b SG2 NAD`, `AHB 17133 [55]`).
    pub reference: String,
    /// ISO 9735 syntax error code (DE0085) for a CONTRL.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub contrl_code: Option<u8>,
    /// BDEW APERAK error code (ERC DE9321).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aperak_code: Option<&'static str>,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {} (segment {} {}",
            match self.severity {
                Severity::Error => "error",
                Severity::Warning => "warning",
            },
            self.message,
            self.segment,
            self.tag
        )?;
        if let Some(e) = self.element {
            write!(f, ", element {e}")?;
            if let Some(c) = self.component {
                write!(f, ", component {c}")?;
            }
        }
        write!(f, ", byte {}; {})", self.offset, self.reference)
    }
}

/// One repetition of a segment group in a validated message (the root is the message itself).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GroupInstance {
    /// Group id (`SG2`); empty for the message level.
    pub id: std::sync::Arc<str>,
    /// Indices into the message's segments (UNH = 0) of the segments directly in this group.
    pub segments: Vec<usize>,
    /// Nested group repetitions in order.
    pub groups: Vec<GroupInstance>,
}

/// A message that passed the MIG structure check, with its segments placed in their groups, so
/// that code above reads it by group path instead of indexing raw segments.
#[derive(Debug, Clone)]
pub struct Validated<'a> {
    segments: Vec<Segment<'a>>,
    root: GroupInstance,
}

impl<'a> Validated<'a> {
    /// The message level.
    pub fn root(&self) -> GroupView<'_, 'a> {
        GroupView {
            validated: self,
            instance: &self.root,
        }
    }

    /// The repetitions of the group at `path` (`"SG2"`, `"SG2/SG5"`), in message order.
    pub fn groups_at(&self, path: &str) -> Vec<GroupView<'_, 'a>> {
        let mut current = vec![&self.root];
        for id in path.split('/').filter(|p| !p.is_empty()) {
            current = current
                .into_iter()
                .flat_map(|g| g.groups.iter().filter(|c| &*c.id == id))
                .collect();
        }
        current
            .into_iter()
            .map(|instance| GroupView {
                validated: self,
                instance,
            })
            .collect()
    }
}

/// One group repetition of a [`Validated`] message.
#[derive(Debug, Clone, Copy)]
pub struct GroupView<'v, 'a> {
    validated: &'v Validated<'a>,
    instance: &'v GroupInstance,
}

impl<'v, 'a> GroupView<'v, 'a> {
    /// The segments directly in this group with `tag`.
    pub fn segments(&self, tag: &[u8; 3]) -> impl Iterator<Item = Segment<'a>> + 'v {
        let (validated, tag) = (self.validated, *tag);
        self.instance
            .segments
            .iter()
            .map(move |&i| validated.segments[i])
            .filter(move |s| s.is(&tag))
    }

    /// The first segment directly in this group with `tag`.
    pub fn segment(&self, tag: &[u8; 3]) -> Option<Segment<'a>> {
        self.segments(tag).next()
    }

    /// The first segment with `tag` whose element `element`, component 1 is `qualifier`
    /// (e.g. `DTM` with `137`, `RFF` with `Z13`).
    pub fn qualified(&self, tag: &[u8; 3], qualifier: &str) -> Option<Segment<'a>> {
        self.segments(tag).find(|s| s.value(1, 1) == qualifier)
    }

    /// The nested group repetitions with `id`.
    pub fn groups(&self, id: &str) -> impl Iterator<Item = GroupView<'v, 'a>> + 'v {
        let validated = self.validated;
        let id = id.to_string();
        self.instance
            .groups
            .iter()
            .filter(move |g| *g.id == *id)
            .map(move |instance| GroupView {
                validated,
                instance,
            })
    }

    /// The group repetitions with `id` whose trigger segment's first element, first component
    /// is `qualifier` (e.g. `SG2` whose NAD is `MS`).
    pub fn groups_qualified(&self, id: &str, qualifier: &str) -> Vec<GroupView<'v, 'a>> {
        self.groups(id)
            .filter(|g| {
                g.instance
                    .segments
                    .first()
                    .is_some_and(|&i| g.validated.segments[i].value(1, 1) == qualifier)
            })
            .collect()
    }
}

/// The result of validating one message.
#[derive(Debug, Clone)]
pub struct MessageReport<'a> {
    /// UNH DE0062.
    pub reference: String,
    /// UNH S009 as written (`ORDERS:D:09B:UN:1.4b`).
    pub identifier: String,
    /// The Prüfidentifikator, if the message carries one (RFF+Z13).
    pub pid: Option<u32>,
    /// The message date (DTM+137) or, failing that, the interchange date.
    pub date: Option<NaiveDate>,
    /// The MIG file used, if any.
    pub mig: Option<String>,
    /// The AHB file used, if any.
    pub ahb: Option<String>,
    /// Everything found, in message order (MIG findings first, then AHB findings).
    pub findings: Vec<Finding>,
    /// The message placed in its groups, when the structure matched the MIG.
    pub validated: Option<Validated<'a>>,
}

impl MessageReport<'_> {
    /// True when a finding is an error.
    pub fn has_errors(&self) -> bool {
        self.findings.iter().any(|f| f.severity == Severity::Error)
    }

    /// The errors at `level`.
    pub fn errors(&self, level: Level) -> impl Iterator<Item = &Finding> {
        self.findings
            .iter()
            .filter(move |f| f.severity == Severity::Error && f.level == level)
    }
}

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
    placed: Vec<u32>,
    /// Segment indices of the group repetitions being matched (innermost last).
    segment_stack: Vec<usize>,
    /// Finished group repetitions whose parent is still being matched.
    instance_stack: Vec<GroupInstance>,
    /// The last message date that was written out, and its text.
    date_text: Option<(NaiveDate, String)>,
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
    static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::new(Scratch::default());
}

/// No MIG position (the segment was not matched).
const UNPLACED: u32 = u32::MAX;

/// A message's segments with their components split once.
#[derive(Clone, Copy)]
struct Split<'v, 'a> {
    segments: &'v [Segment<'a>],
    /// Per segment: its tag.
    tags: &'v [[u8; 3]],
    parts: &'v [ComponentSpan],
    ranges: &'v [(u32, u32)],
}

impl<'v, 'a> Split<'v, 'a> {
    /// The components of segment `i`.
    fn parts(&self, i: usize) -> &'v [ComponentSpan] {
        let (from, to) = self.ranges[i];
        &self.parts[from as usize..to as usize]
    }

    /// Component `c` of element `e` of segment `i`, if present.
    fn part(&self, i: usize, e: u16, c: u16) -> Option<&'v ComponentSpan> {
        self.parts(i)
            .iter()
            .find(|p| p.element == e && p.component == c)
    }

    /// Raw bytes of a part of segment `i`.
    fn bytes(&self, i: usize, p: &ComponentSpan) -> &'a [u8] {
        &self.segments[i].raw()[p.start as usize..p.end as usize]
    }

    /// Text of element `e`, component `c` of segment `i`: the same as [`Segment::value`].
    fn value(&self, i: usize, e: u16, c: u16) -> Cow<'a, str> {
        match self.part(i, e, c) {
            Some(p) => self.text(i, p),
            None => Cow::Borrowed(""),
        }
    }

    /// A part unescaped and decoded, as [`crate::edifact::Value::text`] does it.
    fn text(&self, i: usize, p: &ComponentSpan) -> Cow<'a, str> {
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
    fn with_text<R>(&self, i: usize, p: &ComponentSpan, f: impl FnOnce(&str) -> R) -> R {
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
    fn finding(
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

    /// The PID as [`message_pid`] reads it.
    fn pid(&self) -> Option<u32> {
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

    /// The message date as [`message_date`] reads it, and the segment whose C507 DE2380 it
    /// is (a valid date in format 303).
    fn date(&self) -> Option<(NaiveDate, usize)> {
        let body = 1..self.segments.len().saturating_sub(1).min(9);
        body.into_iter()
            .filter(|&i| self.tags[i] == *b"DTM")
            .find_map(|i| {
                let qualifier = self.part(i, 1, 1)?;
                (self.bytes(i, qualifier) == b"137")
                    .then(|| self.part(i, 1, 2))
                    .flatten()
                    .and_then(|v| self.with_text(i, v, |t| parse_date_303(t).ok()))
                    .map(|d| (d.date(), i))
            })
    }
}

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
        date_text,
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
    // UNH S009 as text, components joined with `:` whatever the delimiters (trailing empty
    // components dropped), e.g. `ORDERS:D:09B:UN:1.4b`.
    let identifier = {
        let mut parts: Vec<Cow<'_, str>> = (1..=6).map(|c| split.value(0, 2, c)).collect();
        while parts.last().is_some_and(|p| p.is_empty()) {
            parts.pop();
        }
        parts.join(":")
    };
    let pid = split.pid();
    let message_date = split.date();
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
        report.findings.push(split.finding(
            0,
            Severity::Error,
            Level::Syntax,
            "unknown_message_version",
            format!(
                "no grammar for {message_type} {association} (known versions: {})",
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            ),
            Some((2, 5)),
            "grammars/".to_string(),
            Some(12),
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
        conditions,
        delimiters,
        utf8: segments[0].charset().is_utf8(),
    };
    matcher.match_level(&mig.root, 0, true);
    let root = GroupInstance {
        segments: matcher.segment_stack.split_off(0),
        groups: matcher.instance_stack.split_off(0),
        ..GroupInstance::default()
    };
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
            apply_ahb(&ahb.blocks[block], tables, &view, &mut report.findings);
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
            ahb.file.clone(),
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
        report.validated = Some(Validated { segments, root });
    }
    report
}

/// Byte offset of a place in a segment: the component, else its element, else the segment.
fn finding_offset(segment: &Segment<'_>, place: Option<(usize, usize)>) -> usize {
    match place.and_then(|(e, c)| segment.element(e).map(|el| (el, c))) {
        Some((el, c)) => el.component(c).map_or(el.offset(), |v| v.offset()),
        None => segment.offset(),
    }
}

// ---- the MIG as tables (built once by the registry) ----

/// What validation needs of one MIG beyond its tree, made once instead of per message: the
/// tree's levels as flat node entries, the data elements of every segment position as flat
/// arrays for [`elements_ok`], and the reference texts of findings.
#[derive(Debug, Default)]
pub(super) struct MigTables {
    /// `MIG ORDERS 1.4b`.
    mig_ref: String,
    /// `MIG ORDERS 1.4b (message level)`.
    message_level_ref: String,
    /// The messages of the `grammar_unverified` warnings.
    unverified: Vec<String>,
    /// The levels of the tree, the message level first.
    levels: Vec<LevelTable>,
    /// Per segment position ([`SegmentDef::index`]).
    positions: Vec<PositionTable>,
    /// The data elements of all positions, position by position.
    elements: Vec<ElementTable>,
    /// The components of all data elements, element by element.
    components: Vec<ComponentTable>,
    /// Sorted code keys of the components, component by component.
    codes: Vec<u64>,
    /// Per position: `MIG ORDERS 1.4b SG2/NAD`.
    position_refs: Vec<String>,
    /// Per data element (as in `elements`): `MIG ORDERS 1.4b SG2/NAD 3035`.
    element_refs: Vec<String>,
}

/// One level of the tree (the message level or a group's children), node by node.
#[derive(Debug, Default)]
struct LevelTable {
    nodes: Vec<NodeTable>,
    /// Per node: the reference of a `missing_segment` / `missing_group` finding.
    missing_refs: Vec<String>,
    /// Per node: the reference of a `too_many_group_repetitions` finding (empty for segments).
    group_refs: Vec<String>,
}

/// One node of a level.
#[derive(Debug, Clone, Copy)]
struct NodeTable {
    /// The tag (a group's trigger).
    tag: [u8; 3],
    /// Status M or R.
    required: bool,
    /// A segment (else a group).
    segment: bool,
    /// A segment with status N.
    unused: bool,
    /// Most repetitions.
    max: u32,
    /// A segment's position, a group's level.
    target: u32,
}

/// The data elements of one segment position.
#[derive(Debug, Clone, Copy, Default)]
struct PositionTable {
    /// Its first data element in [`MigTables::elements`].
    first: u32,
    /// Number of data elements.
    count: u32,
    /// Bit `e - 1`: data element `e` is required.
    required: u64,
    /// At most 64 data elements of at most 64 components each: [`elements_ok`] applies.
    small: bool,
}

/// One data element of a segment position.
#[derive(Debug, Clone, Copy)]
struct ElementTable {
    /// Its first component in [`MigTables::components`].
    first: u32,
    /// Number of components (1 for a simple data element).
    count: u32,
    /// Bit `c - 1`: component `c` is required.
    required: u64,
    /// Status N.
    unused: bool,
}

/// One simple data element (component), for [`value_ok`].
#[derive(Debug, Clone, Copy)]
struct ComponentTable {
    class: CharClass,
    min: u16,
    max: u16,
    unused: bool,
    codes: Codes,
}

/// The allowed codes of a simple data element, for [`value_ok`].
#[derive(Debug, Clone, Copy)]
enum Codes {
    /// Any value.
    Any,
    /// Every code has a key ([`code_key`](super::mig::code_key)): these are
    /// `MigTables::codes[from..to]`, sorted.
    Keys(u32, u32),
    /// Some code is longer than a key: left to [`check_value`].
    Def,
}

/// Builds the tables of a MIG (after `based-on` is resolved and positions are numbered).
pub(super) fn mig_tables(mig: &Mig) -> MigTables {
    let mig_ref = format!("MIG {} {}", mig.message_type, mig.association);
    let mut tables = MigTables {
        message_level_ref: format!("{mig_ref} (message level)"),
        unverified: mig
            .unverified
            .iter()
            .map(|note| format!("grammar {} is unverified: {note}", mig.file))
            .collect(),
        positions: vec![PositionTable::default(); mig.positions],
        position_refs: vec![String::new(); mig.positions],
        mig_ref,
        ..MigTables::default()
    };
    add_level(&mut tables, &mig.root, "");
    tables
}

/// Adds the level of `nodes` (and the levels below it); returns its number.
fn add_level(tables: &mut MigTables, nodes: &[Node], path: &str) -> u32 {
    let number = tables.levels.len();
    tables.levels.push(LevelTable::default());
    let mut level = LevelTable::default();
    for node in nodes {
        let (target, max) = match node {
            Node::Segment(s) => {
                let reference = format!("{} {path}{}", tables.mig_ref, s.tag_str());
                level.missing_refs.push(reference.clone());
                level.group_refs.push(String::new());
                add_position(tables, s, reference);
                (s.index as u32, s.max)
            }
            Node::Group(g) => {
                let child = add_level(tables, &g.children, &format!("{path}{}/", g.id));
                level.missing_refs.push(format!(
                    "{} {path}{} ({})",
                    tables.mig_ref,
                    g.id,
                    String::from_utf8_lossy(&g.trigger())
                ));
                level
                    .group_refs
                    .push(format!("{} {path}{}", tables.mig_ref, g.id));
                (child, g.max)
            }
        };
        level.nodes.push(NodeTable {
            tag: node_tag(node),
            required: node_status(node).is_required(),
            segment: matches!(node, Node::Segment(_)),
            unused: matches!(node, Node::Segment(s) if s.status == Status::N),
            max,
            target,
        });
    }
    tables.levels[number] = level;
    number as u32
}

/// Adds the data elements of segment position `s.index`.
fn add_position(tables: &mut MigTables, s: &SegmentDef, reference: String) {
    let mut position = PositionTable {
        first: tables.elements.len() as u32,
        count: s.elements.len() as u32,
        required: 0,
        small: s.elements.len() <= 64,
    };
    for (e, element) in s.elements.iter().enumerate() {
        let components = element.components();
        position.small &= components.len() <= 64;
        if element.status().is_required() && e < 64 {
            position.required |= 1 << e;
        }
        let mut required = 0u64;
        for (c, component) in components.iter().enumerate() {
            if component.status.is_required() && c < 64 {
                required |= 1 << c;
            }
            let codes = if component.codes.is_empty() {
                Codes::Any
            } else if component.code_keys.len() == component.codes.len() {
                let mut keys = component.code_keys.clone();
                keys.sort_unstable();
                keys.dedup();
                let from = tables.codes.len() as u32;
                tables.codes.extend(keys);
                Codes::Keys(from, tables.codes.len() as u32)
            } else {
                Codes::Def
            };
            tables.components.push(ComponentTable {
                class: component.format.class,
                min: component.format.min,
                max: component.format.max,
                unused: component.status == Status::N,
                codes,
            });
        }
        tables.elements.push(ElementTable {
            first: (tables.components.len() - components.len()) as u32,
            count: components.len() as u32,
            required,
            unused: element.status() == Status::N,
        });
        tables
            .element_refs
            .push(format!("{reference} {}", element.id()));
    }
    if let Some(slot) = tables.positions.get_mut(s.index) {
        *slot = position;
        tables.position_refs[s.index] = reference;
    }
}

struct Matcher<'s, 'a> {
    split: Split<'s, 'a>,
    tables: &'s MigTables,
    pos: usize,
    findings: Vec<Finding>,
    /// Per segment: the MIG position it matched (for the AHB rules).
    placed: &'s mut [u32],
    /// Segments of the group repetitions being matched (see [`Scratch::segment_stack`]).
    segment_stack: &'s mut Vec<usize>,
    /// Finished group repetitions (see [`Scratch::instance_stack`]).
    instance_stack: &'s mut Vec<GroupInstance>,
    /// The conditions of the AHB rules to apply, marked segment by segment.
    conditions: Option<Conditions<'s>>,
    delimiters: Delimiters,
    utf8: bool,
}

fn node_tag(node: &Node) -> [u8; 3] {
    match node {
        Node::Segment(s) => s.tag,
        Node::Group(g) => g.trigger(),
    }
}

impl<'a> Matcher<'_, 'a> {
    /// Matches the segments from `self.pos` against `nodes` (one level of the tree, numbered
    /// `level` in the tables). At the message level a segment that no later position takes is
    /// reported and skipped; inside a group it ends the group repetition. The segments taken
    /// directly at this level are left on the segment stack, its finished group repetitions on
    /// the instance stack.
    fn match_level(&mut self, nodes: &[Node], level: u32, root: bool) {
        let table = &self.tables.levels[level as usize];
        let entries = &table.nodes[..nodes.len().min(table.nodes.len())];
        let tags = self.split.tags;
        let mut i = 0;
        let mut count = 0u32;
        while i < entries.len() {
            let entry = entries[i];
            if let Some(&tag) = tags.get(self.pos) {
                if entry.tag == tag {
                    count += 1;
                    if entry.segment {
                        self.segment(&nodes[i], entry, count);
                        self.segment_stack.push(self.pos);
                        self.pos += 1;
                        if !root && i == 0 {
                            // The trigger opens this repetition once; its next occurrence
                            // opens the next repetition of the group.
                            i = 1;
                            count = 0;
                        }
                    } else {
                        let Node::Group(g) = &nodes[i] else {
                            // The tables are made from these nodes: not reached.
                            i += 1;
                            continue;
                        };
                        if count > entry.max {
                            self.too_many_groups(g, &table.group_refs[i]);
                        }
                        let segments_from = self.segment_stack.len();
                        let groups_from = self.instance_stack.len();
                        self.match_level(&g.children, entry.target, false);
                        // Exact-size vectors: one allocation each, none when empty.
                        let child = GroupInstance {
                            id: g.id.clone(),
                            segments: self.segment_stack.split_off(segments_from),
                            groups: self.instance_stack.split_off(groups_from),
                        };
                        self.instance_stack.push(child);
                    }
                    continue;
                }
                if root && !entries[i..].iter().any(|n| n.tag == tag) {
                    self.unexpected();
                    self.pos += 1;
                    continue;
                }
            }
            // Node `i` is done: was it required?
            if count == 0 && entry.required {
                self.missing(&nodes[i], &table.missing_refs[i]);
            }
            i += 1;
            count = 0;
        }
    }

    #[cold]
    #[inline(never)]
    fn too_many_groups(&mut self, g: &GroupDef, reference: &str) {
        self.push(
            self.pos,
            Severity::Error,
            "too_many_group_repetitions",
            format!("segment group {} repeats more than {} times", g.id, g.max),
            None,
            reference.to_string(),
            36,
        );
    }

    #[cold]
    #[inline(never)]
    fn unexpected(&mut self) {
        // "segment {tag} is not allowed at this position", without the formatting machinery.
        let tag = self.split.segments[self.pos].tag();
        let tag = tag.as_str();
        let mut message = String::with_capacity(40 + tag.len());
        message.push_str("segment ");
        message.push_str(tag);
        message.push_str(" is not allowed at this position");
        self.push(
            self.pos,
            Severity::Error,
            "unexpected_segment",
            message,
            None,
            self.tables.message_level_ref.clone(),
            15,
        );
    }

    /// Reports a required node that has no segment.
    #[cold]
    #[inline(never)]
    fn missing(&mut self, node: &Node, reference: &str) {
        let (what, rule, name) = match node {
            Node::Segment(s) => ("segment", "missing_segment", Cow::Borrowed(s.tag_str())),
            Node::Group(g) => (
                "segment group",
                "missing_group",
                Cow::Owned(format!(
                    "{} ({})",
                    g.id,
                    String::from_utf8_lossy(&g.trigger())
                )),
            ),
        };
        // Report at the segment where it was expected (or the last one).
        let at = self.pos.min(self.split.segments.len() - 1);
        self.push(
            at,
            Severity::Error,
            rule,
            format!("mandatory {what} {name} is missing before this segment"),
            None,
            reference.to_string(),
            13,
        );
    }

    /// Records a syntax finding about segment `i` of the message.
    #[allow(clippy::too_many_arguments)]
    fn push(
        &mut self,
        i: usize,
        severity: Severity,
        rule: &'static str,
        message: String,
        place: Option<(usize, usize)>,
        reference: String,
        code: u8,
    ) {
        self.findings.push(self.split.finding(
            i,
            severity,
            Level::Syntax,
            rule,
            message,
            place,
            reference,
            Some(code),
            None,
        ));
    }

    /// Checks one segment against its definition (`node`, with its table `entry`):
    /// repetitions, status, data elements.
    #[inline]
    fn segment(&mut self, node: &Node, entry: NodeTable, count: u32) {
        let pos = self.pos;
        self.placed[pos] = entry.target;
        let parts = self.split.parts(pos);
        let raw = self.split.segments[pos].raw();
        if let Some(conditions) = &mut self.conditions {
            conditions.mark(pos, entry.target, parts, raw, &self.split.segments[pos]);
        }
        if !entry.unused
            && count != entry.max.wrapping_add(1)
            && elements_ok(
                self.tables,
                entry.target as usize,
                parts,
                raw,
                &self.delimiters,
                self.utf8,
            )
        {
            return;
        }
        if let Node::Segment(def) = node {
            self.segment_findings(def, count, parts, raw);
        }
    }

    /// Records what is wrong with the segment at `self.pos`, in the order of the checks.
    #[cold]
    #[inline(never)]
    fn segment_findings(
        &mut self,
        def: &SegmentDef,
        count: u32,
        parts: &[ComponentSpan],
        raw: &[u8],
    ) {
        let pos = self.pos;
        let tables = self.tables;
        let reference = &tables.position_refs[def.index];
        if def.status == Status::N {
            self.push(
                pos,
                Severity::Error,
                "segment_not_used",
                format!("segment {} is not used in this message", def.tag_str()),
                None,
                reference.clone(),
                15,
            );
        }
        if count == def.max + 1 {
            self.push(
                pos,
                Severity::Error,
                "too_many_repetitions",
                format!(
                    "segment {} repeats more than {} times",
                    def.tag_str(),
                    def.max
                ),
                None,
                reference.clone(),
                35,
            );
        }
        let element_count = parts.last().map_or(0, |p| p.element as usize);
        if element_count > def.elements.len() {
            self.push(
                pos,
                Severity::Error,
                "too_many_elements",
                format!(
                    "{} has {element_count} data elements, the MIG defines {}",
                    def.tag_str(),
                    def.elements.len()
                ),
                Some((def.elements.len() + 1, 1)),
                reference.clone(),
                16,
            );
        }
        self.element_findings(def, parts, raw);
    }

    /// Checks every data element of the segment at `self.pos` and records what is wrong.
    fn element_findings(&mut self, def: &SegmentDef, parts: &[ComponentSpan], raw: &[u8]) {
        let pos = self.pos;
        let tables = self.tables;
        let first_ref = tables.positions[def.index].first as usize;
        let references = &tables.element_refs[first_ref..first_ref + def.elements.len()];
        let mut p = 0;
        for ((ei, element), reference) in def.elements.iter().enumerate().zip(references) {
            let e = (ei + 1) as u16;
            let first = p;
            while p < parts.len() && parts[p].element == e {
                p += 1;
            }
            let present = &parts[first..p];
            let any_value = present.iter().any(|q| q.end > q.start);
            if !any_value {
                if element.status().is_required() {
                    self.push(
                        pos,
                        Severity::Error,
                        "missing_element",
                        format!("mandatory data element {} is missing", element.id()),
                        Some((ei + 1, 1)),
                        reference.clone(),
                        13,
                    );
                }
                continue;
            }
            if element.status() == Status::N {
                self.push(
                    pos,
                    Severity::Error,
                    "element_not_used",
                    format!("data element {} is not used in this segment", element.id()),
                    Some((ei + 1, 1)),
                    reference.clone(),
                    12,
                );
                continue;
            }
            let components = element.components();
            if present.len() > components.len() {
                self.push(
                    pos,
                    Severity::Error,
                    "too_many_components",
                    format!(
                        "data element {} has {} components, the MIG defines {}",
                        element.id(),
                        present.len(),
                        components.len()
                    ),
                    Some((ei + 1, components.len() + 1)),
                    reference.clone(),
                    16,
                );
            }
            for (ci, cdef) in components.iter().enumerate() {
                let value = present
                    .iter()
                    .find(|q| q.component as usize == ci + 1)
                    .map_or(&b""[..], |q| &raw[q.start as usize..q.end as usize]);
                if let Some((rule, message, code)) =
                    check_value(cdef, value, &self.delimiters, self.utf8)
                {
                    self.push(
                        pos,
                        Severity::Error,
                        rule,
                        message,
                        Some((ei + 1, ci + 1)),
                        reference.clone(),
                        code,
                    );
                }
            }
        }
    }
}

fn node_status(node: &Node) -> Status {
    match node {
        Node::Segment(s) => s.status,
        Node::Group(g) => g.status,
    }
}

/// True when no data element of a segment (matched to `position`) has anything to report:
/// the common case of [`Matcher::element_findings`] in one pass over the parts, without
/// allocating. False where that finds something, or where a value needs [`check_value`] to
/// decide.
///
/// An element without any value is only checked for being required. In an element with a
/// value, a non-empty component must be used and pass [`value_ok`], every required component
/// must be non-empty, and there must be no more components than the MIG defines.
#[inline]
fn elements_ok(
    tables: &MigTables,
    position: usize,
    parts: &[ComponentSpan],
    raw: &[u8],
    delimiters: &Delimiters,
    utf8: bool,
) -> bool {
    let Some(&position) = tables.positions.get(position) else {
        return false;
    };
    let first = position.first as usize;
    let Some(elements) = tables.elements.get(first..first + position.count as usize) else {
        return false;
    };
    if !position.small {
        return false;
    }
    // Elements with a value; the element being read, its non-empty components, and whether
    // it has more components than defined.
    let mut with_value = 0u64;
    let (mut current, mut filled, mut surplus) = (0usize, 0u64, false);
    let mut element = None::<&ElementTable>;
    for q in parts {
        let e = q.element as usize;
        if e != current {
            if filled != 0 {
                let el = element.expect("an element with a value was read");
                if surplus || el.required & !filled != 0 {
                    return false;
                }
                with_value |= 1 << (current - 1);
            }
            let Some(el) = e.checked_sub(1).and_then(|i| elements.get(i)) else {
                // More data elements than the MIG defines.
                return false;
            };
            (current, filled, surplus, element) = (e, 0, false, Some(el));
        }
        let el = element.expect("set above");
        let c = q.component as usize;
        let value = &raw[q.start as usize..q.end as usize];
        if c == 0 || c > el.count as usize {
            surplus = true;
            if !value.is_empty() {
                return false;
            }
            continue;
        }
        if value.is_empty() {
            continue;
        }
        let component = &tables.components[el.first as usize + c - 1];
        if el.unused || component.unused {
            return false;
        }
        let ok = if q.escaped {
            let mut buf = [0u8; UNESCAPE_BUFFER];
            let unescaped = unescape_in(value, delimiters.release, &mut buf);
            value_ok(tables, component, &unescaped, delimiters.decimal, utf8)
        } else {
            value_ok(tables, component, value, delimiters.decimal, utf8)
        };
        if !ok {
            return false;
        }
        filled |= 1 << (c - 1);
    }
    if filled != 0 {
        let el = element.expect("an element with a value was read");
        if surplus || el.required & !filled != 0 {
            return false;
        }
        with_value |= 1 << (current - 1);
    }
    position.required & !with_value == 0
}

/// The format and code checks of [`check_value`] for a present value of a used data element,
/// given unescaped, without allocating: true only when `check_value` finds nothing. False
/// where it would find something, or where it must decide (a UTF-8 value that is not ASCII,
/// codes longer than 8 bytes).
#[inline(always)]
fn value_ok(tables: &MigTables, c: &ComponentTable, raw: &[u8], decimal: u8, utf8: bool) -> bool {
    let length = match c.class {
        CharClass::Numeric => {
            let body = raw.strip_prefix(b"-").unwrap_or(raw);
            if body.first() == Some(&decimal) {
                // No digit before the decimal mark: left to `check_value`.
                return false;
            }
            let (mut digits, mut marks) = (0usize, 0usize);
            for &b in body {
                let digit = b.is_ascii_digit();
                let mark = b == decimal;
                // Neither (or both, with a digit as decimal mark): left to `check_value`.
                if digit == mark {
                    return false;
                }
                digits += usize::from(digit);
                marks += usize::from(mark);
            }
            if marks > 1 {
                return false;
            }
            digits
        }
        CharClass::Alphabetic => {
            if (utf8 && !raw.is_ascii()) || raw.iter().any(|b| b.is_ascii_digit()) {
                return false;
            }
            raw.len()
        }
        CharClass::Alphanumeric => {
            if utf8 && !raw.is_ascii() {
                return false;
            }
            raw.len()
        }
    };
    if length > c.max as usize || length < c.min as usize {
        return false;
    }
    match c.codes {
        Codes::Any => true,
        // Every code has a key, so a value without one (longer than 8 bytes) is no code.
        Codes::Keys(from, to) => {
            let Some(k) = pack(raw) else {
                return false;
            };
            let keys = &tables.codes[from as usize..to as usize];
            if keys.len() <= 8 {
                keys.contains(&k)
            } else {
                keys.binary_search(&k).is_ok()
            }
        }
        Codes::Def => false,
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

/// Values up to this length are unescaped on the stack.
const UNESCAPE_BUFFER: usize = 64;

/// [`code_key`](super::mig::code_key) without a variable-length copy: the same key for the
/// same bytes.
#[inline]
fn pack(bytes: &[u8]) -> Option<u64> {
    if bytes.len() > 8 {
        return None;
    }
    let mut k = 0u64;
    for (j, &b) in bytes.iter().enumerate() {
        k |= u64::from(b) << (8 * j);
    }
    Some(k ^ ((bytes.len() as u64) << 60))
}

/// A key for up to 7 bytes: equal keys, equal bytes (unlike
/// [`code_key`](super::mig::code_key) for 8 bytes, where the length bits overlap the last
/// byte). For comparisons that must be exact byte equality.
#[inline]
pub(super) fn short_key(bytes: &[u8]) -> Option<u64> {
    if bytes.len() > 7 {
        return None;
    }
    pack(bytes)
}

/// Checks one value against its definition: presence, format and codes.
fn check_value(
    def: &SimpleDef,
    raw: &[u8],
    d: &Delimiters,
    utf8: bool,
) -> Option<(&'static str, String, u8)> {
    if raw.is_empty() {
        return def.status.is_required().then(|| {
            (
                "missing_element",
                format!("mandatory data element {} is missing", def.id),
                13,
            )
        });
    }
    if def.status == Status::N {
        return Some((
            "element_not_used",
            format!("data element {} is not used here", def.id),
            12,
        ));
    }
    let value = unescape(raw, d.release);
    let f = def.format;
    let (length, bad_type) = match f.class {
        CharClass::Numeric => {
            // Digits count; a leading minus sign and one decimal mark do not (ISO 9735-1 §10).
            let body = value.strip_prefix(b"-").unwrap_or(&value);
            // The decimal mark is the one the UNA names (default `.`): the other one is an
            // invalid decimal notation (DE0085 19), and a mark needs a digit before it (38).
            let other = if d.decimal == b',' { b'.' } else { b',' };
            if body.contains(&other) && d.decimal != other {
                return Some((
                    "invalid_decimal_notation",
                    format!(
                        "data element {} uses {:?} as decimal mark, the interchange declares {:?}",
                        def.id, other as char, d.decimal as char
                    ),
                    19,
                ));
            }
            if body.first() == Some(&d.decimal) {
                return Some((
                    "missing_digit_before_decimal_mark",
                    format!(
                        "data element {} has no digit before the decimal mark",
                        def.id
                    ),
                    38,
                ));
            }
            let marks = body.iter().filter(|&&b| b == d.decimal).count();
            let digits = body.iter().filter(|b| b.is_ascii_digit()).count();
            (digits, digits + marks != body.len() || marks > 1)
        }
        CharClass::Alphabetic => {
            let n = if utf8 {
                String::from_utf8_lossy(&value).chars().count()
            } else {
                value.len()
            };
            (n, value.iter().any(|b| b.is_ascii_digit()))
        }
        CharClass::Alphanumeric => (
            if utf8 {
                String::from_utf8_lossy(&value).chars().count()
            } else {
                value.len()
            },
            false,
        ),
    };
    if bad_type {
        return Some((
            "invalid_character_type",
            format!(
                "data element {} must be {}, found {:?}",
                def.id,
                f,
                String::from_utf8_lossy(&value)
            ),
            37,
        ));
    }
    if length > f.max as usize {
        return Some((
            "value_too_long",
            format!("data element {} is longer than {} ({length})", def.id, f),
            39,
        ));
    }
    if length < f.min as usize {
        return Some((
            "value_too_short",
            format!("data element {} is shorter than {} ({length})", def.id, f),
            40,
        ));
    }
    if !def.codes.is_empty() && !def.allows_code(&value) {
        return Some((
            "code_not_allowed",
            format!(
                "code {:?} is not allowed in data element {} (allowed: {})",
                String::from_utf8_lossy(&value),
                def.id,
                def.codes.join(", ")
            ),
            12,
        ));
    }
    None
}

// ---- AHB rules ----

/// What applying one AHB block needs beyond its rules, made once instead of per message: the
/// reference texts of findings, each rule as a [`Plan`], and the rules' conditions in a form
/// that a message's segments are tested against once each (see [`Conditions`]).
#[derive(Debug, Default)]
pub(super) struct AhbTables {
    /// `AHB 17133 (ORDERS 1.4b)`.
    reference: String,
    /// The messages of the `rules_unverified` warnings.
    unverified: Vec<String>,
    /// Per rule: the reference with its citation.
    cites: Vec<String>,
    /// Per rule: what to check.
    plans: Vec<Plan>,
    /// The distinct tags of the selectors; a selector names its tag by index (slot).
    tags: Vec<[u8; 3]>,
    /// Per MIG position: its tag and that tag's slot (`u32::MAX`: no selector has it), a
    /// shortcut past searching `tags`, taken when the segment has that tag.
    position_slots: Vec<([u8; 3], u32)>,
    /// Per MIG position: the data elements that conditions read there.
    position_reads: Vec<Vec<Read>>,
    /// Every selector of every rule.
    selectors: Vec<SelectorTable>,
    /// Number of distinct conditions.
    conditions: usize,
}

/// A rule reduced to what the validator does with it (indices into [`AhbTables::selectors`]).
#[derive(Debug)]
enum Plan {
    Require(usize),
    Forbid(usize),
    /// The selectors `from..to`.
    OneOf(usize, usize),
    /// A selector and the condition that the codes hold.
    Values(usize, u32),
    Check(usize, ValueKind),
    If(usize, usize),
    /// A rule whose compiled form does not fit it: checks nothing.
    Nothing,
}

/// A data element read at one MIG position, and the conditions on its value.
#[derive(Debug)]
struct Read {
    element: u16,
    component: u16,
    /// A value key ([`pack`]) and the condition that a value with that key meets, for the
    /// conditions whose values all have keys.
    keyed: Vec<(u64, u32)>,
    /// Condition number and values, for the other conditions.
    other: Vec<(u32, Values)>,
}

/// A compiled selector: its tag slot and conditions.
#[derive(Debug)]
struct SelectorTable {
    slot: u32,
    conditions: Vec<u32>,
}

/// Values a data element may have, with their keys ([`short_key`]) where every value has one.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Values {
    values: Vec<String>,
    keys: Box<[u64]>,
    keyed: bool,
}

impl Values {
    fn new(values: &[String]) -> Values {
        let keys: Option<Vec<u64>> = values.iter().map(|v| short_key(v.as_bytes())).collect();
        Values {
            values: values.to_vec(),
            keyed: keys.is_some(),
            keys: keys.unwrap_or_default().into_boxed_slice(),
        }
    }

    /// True when `v` (with key `key`, see [`short_key`]) is one of the values.
    #[inline]
    fn contains(&self, v: &[u8], key: Option<u64>) -> bool {
        if self.keyed {
            // Every value has a key, so a longer `v` equals none of them.
            key.is_some_and(|k| self.keys.contains(&k))
        } else {
            self.values.iter().any(|x| x.as_bytes() == v)
        }
    }
}

/// A condition while the tables are built: a data element (by location) of a tag's segments
/// holding one of some values.
struct ConditionDef {
    slot: usize,
    at: Locations,
    values: Values,
}

/// Builds [`AhbTables`].
#[derive(Default)]
struct TablesBuilder {
    tables: AhbTables,
    conditions: Vec<ConditionDef>,
}

impl TablesBuilder {
    /// The slot of `tag`, added if new.
    fn slot(&mut self, tag: [u8; 3]) -> usize {
        let tags = &mut self.tables.tags;
        tags.iter().position(|t| *t == tag).unwrap_or_else(|| {
            tags.push(tag);
            tags.len() - 1
        })
    }

    /// The number of a condition, added if new.
    fn condition(&mut self, slot: usize, at: &Locations, values: &[String]) -> u32 {
        let values = Values::new(values);
        if let Some(c) = self
            .conditions
            .iter()
            .position(|c| c.slot == slot && c.at == *at && c.values == values)
        {
            return c as u32;
        }
        self.conditions.push(ConditionDef {
            slot,
            at: at.clone(),
            values,
        });
        (self.conditions.len() - 1) as u32
    }

    /// Adds a selector; returns its index.
    fn selector(&mut self, c: &CompiledSelector) -> usize {
        let slot = self.slot(c.tag);
        let conditions: Vec<u32> = c
            .conditions
            .iter()
            .map(|(at, values)| self.condition(slot, at, values))
            .collect();
        self.tables.selectors.push(SelectorTable {
            slot: slot as u32,
            conditions,
        });
        self.tables.selectors.len() - 1
    }

    fn plan(&mut self, rule: &RuleKind, compiled: &CompiledRule) -> Plan {
        match (rule, compiled) {
            (RuleKind::Require(_), CompiledRule::Require(c)) => Plan::Require(self.selector(c)),
            (RuleKind::Forbid(_), CompiledRule::Forbid(c)) => Plan::Forbid(self.selector(c)),
            (RuleKind::OneOf(_), CompiledRule::OneOf(cs)) => {
                let from = self.tables.selectors.len();
                for c in cs {
                    self.selector(c);
                }
                Plan::OneOf(from, self.tables.selectors.len())
            }
            (RuleKind::Values { codes, .. }, CompiledRule::Values(c, at)) => {
                let s = self.selector(c);
                let slot = self.tables.selectors[s].slot as usize;
                Plan::Values(s, self.condition(slot, at, codes))
            }
            (RuleKind::Check { kind, .. }, CompiledRule::Check(c, _)) => {
                Plan::Check(self.selector(c), *kind)
            }
            (RuleKind::If { .. }, CompiledRule::If(w, t)) => {
                Plan::If(self.selector(w), self.selector(t))
            }
            _ => Plan::Nothing,
        }
    }

    /// Resolves the conditions by MIG position: per position, the data elements to read and
    /// the conditions on each. Positions come from the conditions' locations, so this holds
    /// whichever MIG the message was matched with.
    fn finish(mut self, mig: Option<&Mig>) -> AhbTables {
        let t = &mut self.tables;
        t.conditions = self.conditions.len();
        let positions = self.conditions.iter().map(|c| c.at.len()).max();
        t.position_reads = (0..positions.unwrap_or(0)).map(|_| Vec::new()).collect();
        for (number, c) in self.conditions.into_iter().enumerate() {
            for (p, at) in c.at.iter().enumerate() {
                let Some((element, component)) = *at else {
                    continue;
                };
                let reads = &mut t.position_reads[p];
                let read = match reads
                    .iter()
                    .position(|r| (r.element, r.component) == (element, component))
                {
                    Some(r) => &mut reads[r],
                    None => {
                        reads.push(Read {
                            element,
                            component,
                            keyed: Vec::new(),
                            other: Vec::new(),
                        });
                        reads.last_mut().expect("just pushed")
                    }
                };
                if c.values.keyed {
                    read.keyed
                        .extend(c.values.keys.iter().map(|&k| (k, number as u32)));
                } else {
                    read.other.push((number as u32, c.values.clone()));
                }
            }
        }
        if let Some(mig) = mig {
            t.position_slots = vec![(*b"\0\0\0", u32::MAX); mig.positions];
            let mut defs = Vec::new();
            collect_segment_defs(&mig.root, &mut defs);
            for def in defs {
                let slot = t.tags.iter().position(|tag| *tag == def.tag);
                if let Some(entry) = t.position_slots.get_mut(def.index) {
                    *entry = (def.tag, slot.map_or(u32::MAX, |s| s as u32));
                }
            }
        }
        self.tables
    }
}

/// Builds the tables of every block of an AHB (after the blocks are compiled against `migs`).
pub(super) fn ahb_tables(ahb: &Ahb, migs: &[Mig]) -> Vec<AhbTables> {
    ahb.blocks
        .iter()
        .map(|block| {
            let reference = match ahb.pid {
                Some(pid) => format!("AHB {pid} ({} {})", ahb.message_type, block.mig_version),
                None => format!("AHB {} {}", ahb.message_type, block.mig_version),
            };
            let mut b = TablesBuilder::default();
            b.tables.unverified = block
                .unverified
                .iter()
                .map(|note| format!("AHB rules unverified: {note}"))
                .collect();
            b.tables.cites = block
                .rules
                .iter()
                .map(|rule| {
                    if rule.citation.is_empty() {
                        reference.clone()
                    } else {
                        format!("{reference} {}", rule.citation)
                    }
                })
                .collect();
            b.tables.reference = reference;
            for (rule, compiled) in block.rules.iter().zip(&block.compiled) {
                let plan = b.plan(&rule.kind, compiled);
                b.tables.plans.push(plan);
            }
            let mig = migs
                .iter()
                .find(|m| m.message_type == ahb.message_type && m.association == block.mig_version);
            b.finish(mig)
        })
        .collect()
}

fn collect_segment_defs<'m>(nodes: &'m [Node], out: &mut Vec<&'m SegmentDef>) {
    for node in nodes {
        match node {
            Node::Segment(s) => out.push(s),
            Node::Group(g) => collect_segment_defs(&g.children, out),
        }
    }
}

/// Buffers of [`Conditions`]: one bitset over the message's segments (`words` words) per
/// condition, then one per tag slot.
#[derive(Default)]
struct AhbScratch {
    sets: Vec<u64>,
}

/// The sets of [`AhbScratch`] being filled for a message and an AHB block: which segments
/// have each tag slot, and which meet each condition, i.e. were matched to a MIG position
/// where the condition's data element is located and hold one of its values there
/// (unescaped). A segment may be marked for a condition on another tag; it is only read
/// together with its own tag.
struct Conditions<'s> {
    tables: &'s AhbTables,
    sets: &'s mut [u64],
    words: usize,
}

impl Conditions<'_> {
    /// Marks the conditions that segment `i`, matched to MIG position `position`, meets.
    #[inline]
    fn mark(
        &mut self,
        i: usize,
        position: u32,
        parts: &[ComponentSpan],
        raw: &[u8],
        s: &Segment<'_>,
    ) {
        let Some(reads) = self.tables.position_reads.get(position as usize) else {
            return;
        };
        for read in reads {
            let Some(p) = parts
                .iter()
                .find(|p| p.element == read.element && p.component == read.component)
            else {
                continue;
            };
            let value = &raw[p.start as usize..p.end as usize];
            if p.escaped {
                let mut buf = [0u8; UNESCAPE_BUFFER];
                let value = unescape_in(value, s.delimiters().release, &mut buf);
                mark(self.sets, read, &value, self.words, i);
            } else {
                mark(self.sets, read, value, self.words, i);
            }
        }
    }
}

/// Marks every segment in the set of its tag's slot (see [`AhbScratch`]).
fn mark_slots(
    tables: &AhbTables,
    sets: &mut [u64],
    words: usize,
    split: Split<'_, '_>,
    placed: &[u32],
) {
    let slots = tables.conditions * words;
    for (i, &tag) in split.tags.iter().enumerate() {
        let slot = match tables.position_slots.get(placed[i] as usize) {
            Some(&(t, slot)) if t == tag => (slot != u32::MAX).then_some(slot as usize),
            _ => tables.tags.iter().position(|t| *t == tag),
        };
        if let Some(slot) = slot {
            sets[slots + slot * words + i / 64] |= 1 << (i % 64);
        }
    }
}

/// Marks segment `i` in the sets of the conditions that its value at `read` meets.
#[inline(always)]
fn mark(sets: &mut [u64], read: &Read, value: &[u8], words: usize, i: usize) {
    let (word, bit) = (i / 64, 1u64 << (i % 64));
    let key = short_key(value);
    if let Some(key) = key {
        for &(k, c) in &read.keyed {
            if k == key {
                sets[c as usize * words + word] |= bit;
            }
        }
    }
    for (c, values) in &read.other {
        if values.contains(value, key) {
            sets[*c as usize * words + word] |= bit;
        }
    }
}

/// The part holding the data element located by `at` in segment `i`, if the segment was
/// matched to a MIG position that has it and the message has a value there.
#[inline]
fn located<'v>(
    split: Split<'v, '_>,
    placed: &[u32],
    i: usize,
    at: &Locations,
) -> Option<&'v ComponentSpan> {
    let def = placed[i];
    if def == UNPLACED {
        return None;
    }
    let (e, c) = at.get(def as usize).copied().flatten()?;
    split.part(i, e, c)
}

/// A message's segments with their split components, matched MIG positions and the
/// conditions they meet.
struct Placed<'v, 'a> {
    split: Split<'v, 'a>,
    placed: &'v [u32],
    /// See [`AhbScratch`].
    sets: &'v [u64],
    words: usize,
    /// Where the slots' sets start in `sets`.
    slots: usize,
    /// The segment whose DE2380 (element 1, component 2) was read as the message date: a
    /// valid date in format 303.
    date_at: Option<usize>,
}

impl<'v> Placed<'v, '_> {
    fn condition(&self, c: u32) -> &[u64] {
        let from = c as usize * self.words;
        &self.sets[from..from + self.words]
    }

    /// Word `w` of the set of segments matching a selector.
    #[inline]
    fn word(&self, s: &SelectorTable, w: usize) -> u64 {
        let slot = self.slots + s.slot as usize * self.words;
        s.conditions
            .iter()
            .fold(self.sets[slot + w], |m, &c| m & self.condition(c)[w])
    }

    /// The segments matching a selector, in message order.
    fn matching<'s>(&'s self, s: &'s SelectorTable) -> impl Iterator<Item = usize> + 's {
        (0..self.words).flat_map(move |w| {
            let mut m = self.word(s, w);
            std::iter::from_fn(move || {
                (m != 0).then(|| {
                    let i = m.trailing_zeros() as usize;
                    m &= m - 1;
                    w * 64 + i
                })
            })
        })
    }

    #[inline]
    fn first(&self, s: &SelectorTable) -> Option<usize> {
        (0..self.words).find_map(|w| {
            let m = self.word(s, w);
            (m != 0).then(|| w * 64 + m.trailing_zeros() as usize)
        })
    }

    #[inline]
    fn holds(&self, i: usize, c: u32) -> bool {
        self.condition(c)[i / 64] & (1 << (i % 64)) != 0
    }

    /// True when the data element located by `at` in segment `i` holds a non-empty value.
    fn has_value(&self, i: usize, at: &Locations) -> bool {
        located(self.split, self.placed, i, at).is_some_and(|p| p.end > p.start)
    }

    fn element_of(&self, i: usize, at: &Locations) -> Option<(usize, usize)> {
        let def = self.placed[i];
        if def == UNPLACED {
            return None;
        }
        at.get(def as usize)
            .copied()
            .flatten()
            .map(|(e, c)| (e as usize, c as usize))
    }

    fn text(&self, i: usize, at: &Locations) -> Option<Cow<'_, str>> {
        located(self.split, self.placed, i, at).map(|p| self.split.text(i, p))
    }

    /// Calls `f` with the text of the data element located by `at` in segment `i`, if present.
    fn with_text<R>(&self, i: usize, at: &Locations, f: impl FnOnce(&str) -> R) -> Option<R> {
        located(self.split, self.placed, i, at).map(|p| self.split.with_text(i, p, f))
    }
}

/// The problem a `check` rule finds with a value, if any.
fn check_kind(kind: ValueKind, v: &str) -> Option<String> {
    match kind {
        ValueKind::MaLo => v.parse::<MarketLocationId>().err().map(|e| e.to_string()),
        ValueKind::MeLo => v.parse::<MeteringLocationId>().err().map(|e| e.to_string()),
        ValueKind::MpId => v.parse::<MarketPartnerId>().err().map(|e| e.to_string()),
        ValueKind::Date303 => parse_date_303(v).err().map(|e| e.to_string()),
        ValueKind::Date203 => parse_date_203(v).err().map(|e| e.to_string()),
        ValueKind::Date102 => parse_date_102(v).err().map(|e| e.to_string()),
    }
}

fn apply_ahb(block: &AhbBlock, tables: &AhbTables, view: &Placed<'_, '_>, out: &mut Vec<Finding>) {
    for note in &tables.unverified {
        out.push(view.split.finding(
            0,
            Severity::Warning,
            Level::Application,
            "rules_unverified",
            note.clone(),
            None,
            tables.reference.clone(),
            None,
            None,
        ));
    }
    let selectors = &tables.selectors;
    for (r, plan) in tables.plans.iter().enumerate() {
        match *plan {
            Plan::Require(s) => {
                if view.first(&selectors[s]).is_none() {
                    ahb_finding(block, tables, view, r, None, out);
                }
            }
            Plan::Forbid(s) => {
                for i in view.matching(&selectors[s]) {
                    ahb_finding(block, tables, view, r, Some(i), out);
                }
            }
            Plan::OneOf(from, to) => {
                let hits = selectors[from..to]
                    .iter()
                    .filter(|s| view.first(s).is_some())
                    .count();
                if hits != 1 {
                    ahb_finding(block, tables, view, r, None, out);
                }
            }
            Plan::Values(s, allowed) => {
                for i in view.matching(&selectors[s]) {
                    if !view.holds(i, allowed) {
                        ahb_finding(block, tables, view, r, Some(i), out);
                    }
                }
            }
            Plan::Check(s, kind) => {
                let CompiledRule::Check(_, at) = &block.compiled[r] else {
                    continue;
                };
                for i in view.matching(&selectors[s]) {
                    if kind == ValueKind::Date303
                        && view.date_at == Some(i)
                        && view.element_of(i, at) == Some((1, 2))
                    {
                        // Already read as the message date: valid in format 303.
                        continue;
                    }
                    let problem = view.with_text(i, at, |v| {
                        (!v.is_empty()).then(|| check_kind(kind, v)).flatten()
                    });
                    if let Some(Some(problem)) = problem {
                        out.push(view.split.finding(
                            i,
                            Severity::Error,
                            Level::Application,
                            "format_by_ahb",
                            problem,
                            view.element_of(i, at),
                            tables.cites[r].clone(),
                            None,
                            Some("Z35"),
                        ));
                    }
                }
            }
            Plan::If(w, t) => {
                if let Some(i) = view.first(&selectors[w]) {
                    if view.first(&selectors[t]).is_none() {
                        ahb_finding(block, tables, view, r, Some(i), out);
                    }
                }
            }
            // An unresolvable rule (the registry reports it when loading) checks nothing.
            Plan::Nothing => {}
        }
    }
}

/// Records what rule `r` finds, at segment `at` (`None`: where the rule's kind reports it),
/// after the plan found that it does.
#[cold]
#[inline(never)]
fn ahb_finding(
    block: &AhbBlock,
    tables: &AhbTables,
    view: &Placed<'_, '_>,
    r: usize,
    at: Option<usize>,
    out: &mut Vec<Finding>,
) {
    let segments = view.split.segments;
    // A missing segment is reported at the last segment before UNT.
    let last = segments.len().saturating_sub(2);
    let cite = || tables.cites[r].clone();
    let app = |i: usize, rule, message, place, code| {
        view.split.finding(
            i,
            Severity::Error,
            Level::Application,
            rule,
            message,
            place,
            cite(),
            None,
            Some(code),
        )
    };
    let finding = match (&block.rules[r].kind, &block.compiled[r], &tables.plans[r]) {
        (RuleKind::Require(sel), _, _) => app(
            last,
            "required_by_ahb",
            format!("{sel} is required for this PID but missing"),
            None,
            "Z29",
        ),
        (RuleKind::Forbid(sel), _, _) => app(
            at.unwrap_or(last),
            "forbidden_by_ahb",
            format!("{sel} must not be used for this PID"),
            None,
            "Z39",
        ),
        (RuleKind::OneOf(sels), _, &Plan::OneOf(from, to)) => {
            let names = sels
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>()
                .join(" | ");
            let hits: Vec<usize> = tables.selectors[from..to]
                .iter()
                .filter_map(|s| view.first(s))
                .collect();
            match hits.get(1) {
                None => app(
                    last,
                    "required_by_ahb",
                    format!("exactly one of {names} is required, none is present"),
                    None,
                    "Z29",
                ),
                Some(&i) => app(
                    i,
                    "exclusive_by_ahb",
                    format!("only one of {names} may be present"),
                    None,
                    "Z40",
                ),
            }
        }
        (RuleKind::Values { element, codes, .. }, CompiledRule::Values(_, loc), _) => {
            let i = at.unwrap_or(last);
            // A segment without a value there has nothing to object to.
            if !view.has_value(i, loc) {
                return;
            }
            let v = view.text(i, loc).unwrap_or_default();
            app(
                i,
                "code_not_allowed_by_ahb",
                format!(
                    "code {v:?} in {element} is not allowed for this PID (allowed: {})",
                    codes.join(", ")
                ),
                view.element_of(i, loc),
                "Z39",
            )
        }
        (RuleKind::If { when, then }, _, _) => app(
            at.unwrap_or(last),
            "required_by_ahb",
            format!("{then} is required when {when} is present"),
            None,
            "Z29",
        ),
        _ => return,
    };
    out.push(finding);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::edifact::parse;
    use crate::grammar::mig::code_key;

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

    #[test]
    fn packed_keys_and_numbers_are_the_standard_ones() {
        for v in [
            &b""[..],
            b"A",
            b"A\0",
            b"Z13",
            b"12345678",
            b"123456789",
            b"\xff\x00",
        ] {
            assert_eq!(pack(v), code_key(v), "{v:?}");
        }
        // Keys of different byte strings differ up to 7 bytes; at 8 they may not.
        assert_eq!(code_key(b"ABC"), code_key(b"ABC\0\0\0\0\xb0"));
        assert_ne!(short_key(b"ABC"), short_key(b"ABC\0\0\0\0\xb0"));
        assert_eq!(short_key(b"ABC\0\0\0\0\xb0"), None);
        assert_ne!(short_key(b"ABC"), short_key(b"ABC\0"));
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

    #[test]
    fn unknown_versions_are_reported() {
        let text = message(GOOD).replace("TSTMSG:D:1:UN:1.0", "TSTMSG:D:1:UN:9.9");
        let doc = parse(text.as_bytes()).unwrap();
        let ic = doc.interchanges().next().unwrap();
        let r = validate_message(&ic.messages().next().unwrap(), &registry(), None);
        assert_eq!(r.findings[0].rule, "unknown_message_version");
        assert_eq!(r.findings[0].contrl_code, Some(12));
        assert!(r.findings[0].message.contains("known versions: 1.0"));
    }
}
