//! What validation reports: findings with their place and rule, and a message that passed
//! the structure check placed in its segment groups ([`Validated`]), read by group path.

use chrono::NaiveDate;

use crate::edifact::Segment;

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

/// One repetition of a segment group in a validated message (the root is the message itself),
/// kept in the message's arena ([`Validated`]): a message's groups are three vectors, not two
/// per repetition (validating conformant messages spent a fifth of its time allocating and
/// freeing them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct GroupNode {
    /// Group id (`SG2`); empty for the message level.
    pub(super) id: std::sync::Arc<str>,
    /// The range in [`Validated::members`] of the indices into the message's segments (UNH =
    /// 0) of the segments directly in this group.
    pub(super) segments: std::ops::Range<u32>,
    /// The range in [`Validated::children`] of the nested group repetitions, in order.
    pub(super) groups: std::ops::Range<u32>,
}

/// A message that passed the MIG structure check, with its segments placed in their groups, so
/// that code above reads it by group path instead of indexing raw segments.
#[derive(Debug, Clone)]
pub struct Validated<'a> {
    pub(super) segments: Vec<Segment<'a>>,
    /// Every group repetition; the message level is [`Validated::root`].
    pub(super) nodes: Vec<GroupNode>,
    /// Segment indices of the groups, each group's a contiguous range.
    pub(super) members: Vec<u32>,
    /// Node indices of nested repetitions, each group's a contiguous range.
    pub(super) children: Vec<u32>,
    pub(super) root: u32,
}

impl<'a> Validated<'a> {
    /// The message level.
    pub fn root(&self) -> GroupView<'_, 'a> {
        GroupView {
            validated: self,
            node: &self.nodes[self.root as usize],
        }
    }

    /// The repetitions of the group at `path` (`"SG2"`, `"SG2/SG5"`), in message order.
    pub fn groups_at(&self, path: &str) -> Vec<GroupView<'_, 'a>> {
        let mut current = vec![self.root()];
        for id in path.split('/').filter(|p| !p.is_empty()) {
            current = current.into_iter().flat_map(|g| g.groups(id)).collect();
        }
        current
    }
}

/// One group repetition of a [`Validated`] message.
#[derive(Debug, Clone, Copy)]
pub struct GroupView<'v, 'a> {
    validated: &'v Validated<'a>,
    node: &'v GroupNode,
}

impl<'v, 'a> GroupView<'v, 'a> {
    /// The segments directly in this group with `tag`.
    pub fn segments(&self, tag: &[u8; 3]) -> impl Iterator<Item = Segment<'a>> + 'v {
        let (validated, tag) = (self.validated, *tag);
        let range = self.node.segments.start as usize..self.node.segments.end as usize;
        validated.members[range]
            .iter()
            .map(move |&i| validated.segments[i as usize])
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
        let range = self.node.groups.start as usize..self.node.groups.end as usize;
        validated.children[range]
            .iter()
            .map(move |&c| &validated.nodes[c as usize])
            .filter(move |g| *g.id == *id)
            .map(move |node| GroupView { validated, node })
    }

    /// The group repetitions with `id` whose trigger segment's first element, first component
    /// is `qualifier` (e.g. `SG2` whose NAD is `MS`).
    pub fn groups_qualified(&self, id: &str, qualifier: &str) -> Vec<GroupView<'v, 'a>> {
        self.groups(id)
            .filter(|g| {
                g.validated
                    .members
                    .get(g.node.segments.start as usize)
                    .filter(|_| !g.node.segments.is_empty())
                    .is_some_and(|&i| g.validated.segments[i as usize].value(1, 1) == qualifier)
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
    /// The MIG file used, if any (shared with the registry, not copied per message).
    pub mig: Option<std::sync::Arc<str>>,
    /// The AHB file used, if any (shared likewise).
    pub ahb: Option<std::sync::Arc<str>>,
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

    /// True when the message was not checked: we hold no grammar for its type and version
    /// (its only finding says so).
    pub fn is_unchecked(&self) -> bool {
        self.mig.is_none() && self.findings.iter().any(|f| f.rule == super::NO_GRAMMAR)
    }

    /// The errors at `level`.
    pub fn errors(&self, level: Level) -> impl Iterator<Item = &Finding> {
        self.findings
            .iter()
            .filter(move |f| f.severity == Severity::Error && f.level == level)
    }
}
