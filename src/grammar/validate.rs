//! Validation of a parsed message against its MIG (structure, data elements, formats, codes)
//! and its AHB rules, with findings that name their place and the rule they broke.
//!
//! MIG findings are syntax errors in the sense of the market rules (answered with a CONTRL,
//! ISO 9735 codes of DE0085); AHB findings are application errors (answered with an APERAK,
//! BDEW ERC codes). Each finding carries both where they apply.

use std::borrow::Cow;

use chrono::NaiveDate;

use super::ahb::{AhbBlock, CompiledRule, CompiledSelector, Locations, RuleKind, ValueKind};
use super::mig::{CharClass, Node, SegmentDef, SimpleDef, Status};
use super::Registry;
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
    let unh = segments[0];
    let message_type = unh.value(2, 1).into_owned();
    let association = unh.value(2, 5).into_owned();
    let identifier =
        String::from_utf8_lossy(unh.element(2).map_or(&b""[..], |e| e.raw())).into_owned();
    let pid = message_pid(message);
    let date = message_date(message).or(fallback_date);
    let mut report = MessageReport {
        reference: message.reference().into_owned(),
        identifier,
        pid,
        date,
        mig: None,
        ahb: None,
        findings: Vec::new(),
        validated: None,
    };
    let Some(mig) = registry.mig(&message_type, &association) else {
        let known: Vec<&str> = registry
            .migs()
            .iter()
            .filter(|m| m.message_type == message_type)
            .map(|m| m.association.as_str())
            .collect();
        report.findings.push(finding_at(
            &unh,
            1,
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
    report.mig = Some(mig.file.clone());
    let mig_ref = format!("MIG {} {}", mig.message_type, mig.association);
    for note in &mig.unverified {
        report.findings.push(finding_at(
            &unh,
            1,
            Severity::Warning,
            Level::Syntax,
            "grammar_unverified",
            format!("grammar {} is unverified: {note}", mig.file),
            None,
            mig_ref.clone(),
            None,
            None,
        ));
    }
    if let Some(date) = date {
        if !mig.in_force(date) {
            let in_force = registry
                .mig_in_force(&message_type, date)
                .map_or("none known".to_string(), |m| m.association.clone());
            report.findings.push(finding_at(
                &unh,
                1,
                Severity::Warning,
                Level::Syntax,
                "version_not_in_force",
                format!(
                    "{message_type} {association} is not in force on the message date {date} (in force: {in_force})"
                ),
                Some((2, 5)),
                mig_ref.clone(),
                None,
                None,
            ));
        }
    }

    let mut matcher = Matcher {
        segments: &segments,
        pos: 0,
        findings: Vec::new(),
        mig_ref: &mig_ref,
        parts: Vec::with_capacity(segments.len() * 12),
        placed: vec![(0, 0, None); segments.len()],
        scratch: Vec::with_capacity(16),
        classes: classes(&segments[0].delimiters()),
        stack: Vec::new(),
    };
    let mut root = GroupInstance::default();
    matcher.match_level(&mig.root, &mut root, true);
    let structure_ok = !matcher.findings.iter().any(|f| {
        f.severity == Severity::Error
            && matches!(
                f.rule,
                "unexpected_segment" | "missing_segment" | "missing_group"
            )
    });
    report.findings.append(&mut matcher.findings);
    let Matcher { parts, placed, .. } = matcher;

    // AHB rules of the PID (or of the PID-less type) in force on the message date.
    let ahb = match pid {
        Some(pid) => registry.ahb(pid),
        None => registry.ahb_without_pid(&message_type),
    };
    if let Some(ahb) = ahb {
        let block = ahb
            .blocks
            .iter()
            .filter(|b| date.is_none_or(|d| b.in_force(d)))
            .find(|b| b.mig_version == mig.association)
            .or_else(|| ahb.blocks.iter().find(|b| b.mig_version == mig.association));
        match block {
            Some(block) => {
                report.ahb = Some(ahb.file.clone());
                let ahb_ref = match ahb.pid {
                    Some(pid) => format!("AHB {pid} ({} {})", ahb.message_type, block.mig_version),
                    None => format!("AHB {} {}", ahb.message_type, block.mig_version),
                };
                let view = Placed {
                    segments: &segments,
                    parts: &parts,
                    placed: &placed,
                };
                apply_ahb(block, &view, &ahb_ref, &mut report.findings);
            }
            None => report.findings.push(finding_at(
                &unh,
                1,
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
        }
    }
    if structure_ok {
        report.validated = Some(Validated { segments, root });
    }
    report
}

#[allow(clippy::too_many_arguments)]
fn finding_at(
    segment: &Segment<'_>,
    message_segment: usize,
    severity: Severity,
    level: Level,
    rule: &'static str,
    message: String,
    place: Option<(usize, usize)>,
    reference: String,
    contrl_code: Option<u8>,
    aperak_code: Option<&'static str>,
) -> Finding {
    let offset = match place.and_then(|(e, c)| segment.element(e).map(|el| (el, c))) {
        Some((el, c)) => el.component(c).map_or(el.offset(), |v| v.offset()),
        None => segment.offset(),
    };
    Finding {
        severity,
        level,
        rule,
        message,
        offset,
        segment: segment.number(),
        message_segment,
        tag: segment.tag().to_string(),
        element: place.map(|p| p.0),
        component: place.map(|p| p.1),
        reference,
        contrl_code,
        aperak_code,
    }
}

/// One component of a split segment: element and component position (1-based) and raw bytes.
#[derive(Debug, Clone, Copy)]
struct Part {
    element: u16,
    component: u16,
    start: u32,
    end: u32,
}

/// Byte classes for [`split_parts`]: 0 ordinary, 1 element separator, 2 component separator,
/// 3 repetition separator, 4 release character.
type Classes = [u8; 256];

fn classes(d: &Delimiters) -> Classes {
    let mut c = [0u8; 256];
    c[d.element as usize] = 1;
    c[d.component as usize] = 2;
    if let Some(r) = d.repetition {
        c[r as usize] = 3;
    }
    if let Some(r) = d.release {
        c[r as usize] = 4;
    }
    c
}

/// Splits a segment's raw bytes into its components in one pass (first repetition only; the
/// BDEW MIGs repeat no data element).
fn split_parts(raw: &[u8], classes: &Classes, out: &mut Vec<Part>) {
    out.clear();
    let (mut element, mut component, mut start) = (0u16, 1u16, 0usize);
    let mut repetition = false;
    let mut i = 0;
    while i < raw.len() {
        let class = classes[raw[i] as usize];
        if class == 0 {
            i += 1;
            continue;
        }
        if class == 4 {
            i += 2;
            continue;
        }
        if element > 0 && !repetition {
            out.push(Part {
                element,
                component,
                start: start as u32,
                end: i as u32,
            });
        }
        match class {
            1 => {
                element += 1;
                component = 1;
                repetition = false;
            }
            2 => component += 1,
            _ => repetition = true,
        }
        start = i + 1;
        i += 1;
    }
    if element > 0 && !repetition {
        out.push(Part {
            element,
            component,
            start: start as u32,
            end: raw.len() as u32,
        });
    }
}

struct Matcher<'s, 'a> {
    segments: &'s [Segment<'a>],
    pos: usize,
    findings: Vec<Finding>,
    mig_ref: &'s str,
    /// Every segment's components, split once (for element checks and the AHB rules).
    parts: Vec<Part>,
    /// Per segment: its range in `parts` and the MIG position it matched (if any).
    placed: Vec<(u32, u32, Option<usize>)>,
    scratch: Vec<Part>,
    classes: Classes,
    /// Ids of the groups being matched, outermost first (for the references of findings).
    stack: Vec<std::sync::Arc<str>>,
}

fn node_tag(node: &Node) -> [u8; 3] {
    match node {
        Node::Segment(s) => s.tag,
        Node::Group(g) => g.trigger(),
    }
}

impl<'a> Matcher<'_, 'a> {
    /// The group path being matched, as `SG2/SG5/` (empty at the message level).
    fn path(&self) -> String {
        self.stack.iter().map(|g| format!("{g}/")).collect()
    }

    fn current(&self) -> Option<&Segment<'a>> {
        self.segments.get(self.pos)
    }

    /// Matches the segments from `self.pos` against `nodes` (one level of the tree). At the
    /// message level a segment that no later position takes is reported and skipped; inside a
    /// group it ends the group repetition.
    fn match_level(&mut self, nodes: &[Node], instance: &mut GroupInstance, root: bool) {
        let mut i = 0;
        let mut count = 0u32;
        while i < nodes.len() {
            let node = &nodes[i];
            if let Some(seg) = self.current() {
                let tag = seg.tag().0;
                if node_tag(node) == tag {
                    count += 1;
                    match node {
                        Node::Segment(def) => {
                            self.segment(def, count);
                            instance.segments.push(self.pos);
                            self.pos += 1;
                            if !root && i == 0 {
                                // The trigger opens this repetition once; its next occurrence
                                // opens the next repetition of the group.
                                i = 1;
                                count = 0;
                            }
                        }
                        Node::Group(g) => {
                            let seg = *seg;
                            if count > g.max {
                                self.push(
                                    &seg,
                                    Severity::Error,
                                    "too_many_group_repetitions",
                                    format!(
                                        "segment group {} repeats more than {} times",
                                        g.id, g.max
                                    ),
                                    None,
                                    format!("{} {}{}", self.mig_ref, self.path(), g.id),
                                    36,
                                );
                            }
                            let mut child = GroupInstance {
                                id: g.id.clone(),
                                ..GroupInstance::default()
                            };
                            self.stack.push(g.id.clone());
                            self.match_level(&g.children, &mut child, false);
                            self.stack.pop();
                            instance.groups.push(child);
                        }
                    }
                    continue;
                }
                if root && !nodes[i..].iter().any(|n| node_tag(n) == tag) {
                    let seg = *seg;
                    self.push(
                        &seg,
                        Severity::Error,
                        "unexpected_segment",
                        format!("segment {} is not allowed at this position", seg.tag()),
                        None,
                        format!(
                            "{} {}",
                            self.mig_ref,
                            if self.stack.is_empty() {
                                "(message level)".to_string()
                            } else {
                                self.path()
                            }
                        ),
                        15,
                    );
                    self.pos += 1;
                    continue;
                }
            }
            // Node `i` is done: was it required?
            if count == 0 && node_status(node).is_required() {
                let (what, rule, name) = match node {
                    Node::Segment(s) => ("segment", "missing_segment", s.tag_str().to_string()),
                    Node::Group(g) => (
                        "segment group",
                        "missing_group",
                        format!("{} ({})", g.id, String::from_utf8_lossy(&g.trigger())),
                    ),
                };
                // Report at the segment where it was expected (or the last one).
                let at = self.segments[self.pos.min(self.segments.len() - 1)];
                self.push(
                    &at,
                    Severity::Error,
                    rule,
                    format!("mandatory {what} {name} is missing before this segment"),
                    None,
                    format!("{} {}{}", self.mig_ref, self.path(), name),
                    13,
                );
            }
            i += 1;
            count = 0;
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn push(
        &mut self,
        seg: &Segment<'a>,
        severity: Severity,
        rule: &'static str,
        message: String,
        place: Option<(usize, usize)>,
        reference: String,
        code: u8,
    ) {
        let message_segment = self
            .segments
            .iter()
            .position(|s| s.offset() == seg.offset())
            .map_or(self.pos + 1, |p| p + 1);
        self.findings.push(finding_at(
            seg,
            message_segment,
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

    /// Checks one segment against its definition: repetitions, status, data elements.
    fn segment(&mut self, def: &SegmentDef, count: u32) {
        let seg = self.segments[self.pos];
        if def.status == Status::N {
            self.push(
                &seg,
                Severity::Error,
                "segment_not_used",
                format!("segment {} is not used in this message", def.tag_str()),
                None,
                format!("{} {}{}", self.mig_ref, self.path(), def.tag_str()),
                15,
            );
        }
        if count == def.max + 1 {
            self.push(
                &seg,
                Severity::Error,
                "too_many_repetitions",
                format!(
                    "segment {} repeats more than {} times",
                    def.tag_str(),
                    def.max
                ),
                None,
                format!("{} {}{}", self.mig_ref, self.path(), def.tag_str()),
                35,
            );
        }
        let d = seg.delimiters();
        let mut parts = std::mem::take(&mut self.scratch);
        split_parts(seg.raw(), &self.classes, &mut parts);
        let first = self.parts.len() as u32;
        self.parts.extend_from_slice(&parts);
        self.placed[self.pos] = (first, self.parts.len() as u32, Some(def.index));
        let raw = seg.raw();
        let element_count = parts.last().map_or(0, |p| p.element as usize);
        if element_count > def.elements.len() {
            let reference = format!("{} {}{}", self.mig_ref, self.path(), def.tag_str());
            self.push(
                &seg,
                Severity::Error,
                "too_many_elements",
                format!(
                    "{} has {element_count} data elements, the MIG defines {}",
                    def.tag_str(),
                    def.elements.len()
                ),
                Some((def.elements.len() + 1, 1)),
                reference,
                16,
            );
        }
        let mut p = 0;
        for (ei, element) in def.elements.iter().enumerate() {
            let e = (ei + 1) as u16;
            let first = p;
            while p < parts.len() && parts[p].element == e {
                p += 1;
            }
            let present = &parts[first..p];
            let any_value = present.iter().any(|q| q.end > q.start);
            let mig_ref = self.mig_ref;
            let reference = |stack: &[std::sync::Arc<str>]| {
                let path: String = stack.iter().map(|g| format!("{g}/")).collect();
                format!("{} {}{} {}", mig_ref, path, def.tag_str(), element.id())
            };
            if !any_value {
                if element.status().is_required() {
                    let r = reference(&self.stack);
                    self.push(
                        &seg,
                        Severity::Error,
                        "missing_element",
                        format!("mandatory data element {} is missing", element.id()),
                        Some((ei + 1, 1)),
                        r,
                        13,
                    );
                }
                continue;
            }
            if element.status() == Status::N {
                let r = reference(&self.stack);
                self.push(
                    &seg,
                    Severity::Error,
                    "element_not_used",
                    format!("data element {} is not used in this segment", element.id()),
                    Some((ei + 1, 1)),
                    r,
                    12,
                );
                continue;
            }
            let components = element.components();
            if present.len() > components.len() {
                let r = reference(&self.stack);
                self.push(
                    &seg,
                    Severity::Error,
                    "too_many_components",
                    format!(
                        "data element {} has {} components, the MIG defines {}",
                        element.id(),
                        present.len(),
                        components.len()
                    ),
                    Some((ei + 1, components.len() + 1)),
                    r,
                    16,
                );
            }
            for (ci, cdef) in components.iter().enumerate() {
                let value = present
                    .iter()
                    .find(|q| q.component as usize == ci + 1)
                    .map_or(&b""[..], |q| &raw[q.start as usize..q.end as usize]);
                if let Some((rule, message, code)) =
                    check_value(cdef, value, &d, seg.charset().is_utf8())
                {
                    let r = reference(&self.stack);
                    self.push(
                        &seg,
                        Severity::Error,
                        rule,
                        message,
                        Some((ei + 1, ci + 1)),
                        r,
                        code,
                    );
                }
            }
        }
        self.scratch = parts;
    }
}

fn node_status(node: &Node) -> Status {
    match node {
        Node::Segment(s) => s.status,
        Node::Group(g) => g.status,
    }
}

/// Unescapes a raw value only when it holds a release character.
fn unescape<'v>(raw: &'v [u8], d: &Delimiters) -> Cow<'v, [u8]> {
    match d.release {
        Some(rel) if raw.contains(&rel) => {
            let mut out = Vec::with_capacity(raw.len());
            let mut it = raw.iter();
            while let Some(&b) = it.next() {
                if b == rel {
                    if let Some(&n) = it.next() {
                        out.push(n);
                    }
                } else {
                    out.push(b);
                }
            }
            Cow::Owned(out)
        }
        _ => Cow::Borrowed(raw),
    }
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
    let value = unescape(raw, d);
    let f = def.format;
    let (length, bad_type) = match f.class {
        CharClass::Numeric => {
            // Digits count; a leading minus sign and one decimal mark do not (ISO 9735-1 §10).
            let body = value.strip_prefix(b"-").unwrap_or(&value);
            let marks = body
                .iter()
                .filter(|&&b| b == d.decimal || b == b'.' || b == b',')
                .count();
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

/// A message's segments with their split components and matched MIG positions.
struct Placed<'v, 'a> {
    segments: &'v [Segment<'a>],
    parts: &'v [Part],
    placed: &'v [(u32, u32, Option<usize>)],
}

impl Placed<'_, '_> {
    /// Raw value of the data element located by `at` in segment `i`, if present.
    fn raw(&self, i: usize, at: &Locations) -> Option<&[u8]> {
        let (from, to, def) = self.placed[i];
        let (e, c) = at.get(def?).copied().flatten()?;
        let raw = self.segments[i].raw();
        self.parts[from as usize..to as usize]
            .iter()
            .find(|p| p.element == e && p.component == c)
            .map(|p| &raw[p.start as usize..p.end as usize])
    }

    fn element_of(&self, i: usize, at: &Locations) -> Option<(usize, usize)> {
        let def = self.placed[i].2?;
        at.get(def)
            .copied()
            .flatten()
            .map(|(e, c)| (e as usize, c as usize))
    }

    fn value_is(&self, i: usize, at: &Locations, values: &[String]) -> bool {
        let Some(raw) = self.raw(i, at) else {
            return false;
        };
        let d = self.segments[i].delimiters();
        let v = unescape(raw, &d);
        values.iter().any(|x| x.as_bytes() == &v[..])
    }

    fn matches(&self, i: usize, sel: &CompiledSelector) -> bool {
        self.segments[i].is(&sel.tag)
            && sel
                .conditions
                .iter()
                .all(|(at, values)| self.value_is(i, at, values))
    }

    fn first(&self, sel: &CompiledSelector) -> Option<usize> {
        (0..self.segments.len()).find(|&i| self.matches(i, sel))
    }

    fn text(&self, i: usize, at: &Locations) -> Option<String> {
        let raw = self.raw(i, at)?;
        let seg = &self.segments[i];
        let v = unescape(raw, &seg.delimiters());
        Some(seg.charset().decode(&v).into_owned())
    }
}

fn apply_ahb(block: &AhbBlock, view: &Placed<'_, '_>, reference: &str, out: &mut Vec<Finding>) {
    let segments = view.segments;
    let unh = &segments[0];
    let cite = |citation: &str| {
        if citation.is_empty() {
            reference.to_string()
        } else {
            format!("{reference} {citation}")
        }
    };
    let app = |i: usize, rule, message, place, reference, code| {
        finding_at(
            &segments[i],
            i + 1,
            Severity::Error,
            Level::Application,
            rule,
            message,
            place,
            reference,
            None,
            Some(code),
        )
    };
    for note in &block.unverified {
        out.push(finding_at(
            unh,
            1,
            Severity::Warning,
            Level::Application,
            "rules_unverified",
            format!("AHB rules unverified: {note}"),
            None,
            reference.to_string(),
            None,
            None,
        ));
    }
    // A missing segment is reported at the last segment before UNT.
    let last = segments.len().saturating_sub(2);
    for (rule, compiled) in block.rules.iter().zip(&block.compiled) {
        match (&rule.kind, compiled) {
            (RuleKind::Require(sel), CompiledRule::Require(c)) if view.first(c).is_none() => {
                out.push(app(
                    last,
                    "required_by_ahb",
                    format!("{sel} is required for this PID but missing"),
                    None,
                    cite(&rule.citation),
                    "Z29",
                ));
            }
            (RuleKind::Forbid(sel), CompiledRule::Forbid(c)) => {
                for i in (0..segments.len()).filter(|&i| view.matches(i, c)) {
                    out.push(app(
                        i,
                        "forbidden_by_ahb",
                        format!("{sel} must not be used for this PID"),
                        None,
                        cite(&rule.citation),
                        "Z39",
                    ));
                }
            }
            (RuleKind::OneOf(sels), CompiledRule::OneOf(cs)) => {
                let hits: Vec<usize> = cs.iter().filter_map(|c| view.first(c)).collect();
                if hits.len() != 1 {
                    let names = sels
                        .iter()
                        .map(|s| s.to_string())
                        .collect::<Vec<_>>()
                        .join(" | ");
                    if hits.is_empty() {
                        out.push(app(
                            last,
                            "required_by_ahb",
                            format!("exactly one of {names} is required, none is present"),
                            None,
                            cite(&rule.citation),
                            "Z29",
                        ));
                    } else {
                        out.push(app(
                            hits[1],
                            "exclusive_by_ahb",
                            format!("only one of {names} may be present"),
                            None,
                            cite(&rule.citation),
                            "Z40",
                        ));
                    }
                }
            }
            (RuleKind::Values { element, codes, .. }, CompiledRule::Values(c, at)) => {
                for i in (0..segments.len()).filter(|&i| view.matches(i, c)) {
                    if view.raw(i, at).is_some_and(|r| !r.is_empty())
                        && !view.value_is(i, at, codes)
                    {
                        let v = view.text(i, at).unwrap_or_default();
                        out.push(app(
                            i,
                            "code_not_allowed_by_ahb",
                            format!(
                                "code {v:?} in {element} is not allowed for this PID (allowed: {})",
                                codes.join(", ")
                            ),
                            view.element_of(i, at),
                            cite(&rule.citation),
                            "Z39",
                        ));
                    }
                }
            }
            (RuleKind::Check { kind, .. }, CompiledRule::Check(c, at)) => {
                for i in (0..segments.len()).filter(|&i| view.matches(i, c)) {
                    let Some(v) = view.text(i, at).filter(|v| !v.is_empty()) else {
                        continue;
                    };
                    let problem = match kind {
                        ValueKind::MaLo => {
                            v.parse::<MarketLocationId>().err().map(|e| e.to_string())
                        }
                        ValueKind::MeLo => {
                            v.parse::<MeteringLocationId>().err().map(|e| e.to_string())
                        }
                        ValueKind::MpId => {
                            v.parse::<MarketPartnerId>().err().map(|e| e.to_string())
                        }
                        ValueKind::Date303 => parse_date_303(&v).err().map(|e| e.to_string()),
                        ValueKind::Date203 => parse_date_203(&v).err().map(|e| e.to_string()),
                        ValueKind::Date102 => parse_date_102(&v).err().map(|e| e.to_string()),
                    };
                    if let Some(problem) = problem {
                        out.push(app(
                            i,
                            "format_by_ahb",
                            problem,
                            view.element_of(i, at),
                            cite(&rule.citation),
                            "Z35",
                        ));
                    }
                }
            }
            (RuleKind::If { when, then }, CompiledRule::If(w, t)) => {
                if let Some(i) = view.first(w) {
                    if view.first(t).is_none() {
                        out.push(app(
                            i,
                            "required_by_ahb",
                            format!("{then} is required when {when} is present"),
                            None,
                            cite(&rule.citation),
                            "Z29",
                        ));
                    }
                }
            }
            // An unresolvable rule (the registry reports it when loading) checks nothing.
            _ => {}
        }
    }
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
