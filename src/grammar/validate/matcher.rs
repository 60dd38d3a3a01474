//! The structure matcher: walks a message's segments along the MIG tree, places each segment
//! at its MIG position and in its group repetition, and records structure findings (missing,
//! unexpected, repeated too often) and, through the value checks, data element findings.

use std::borrow::Cow;

use super::ahb_engine::Conditions;
use super::mig_tables::{MigTables, NodeTable};
use super::report::GroupNode;
use super::split::Split;
use super::values::{check_value, elements_ok};
use super::{Finding, Level, Severity};
use crate::edifact::tokens::ComponentSpan;
use crate::edifact::Delimiters;
use crate::grammar::mig::{GroupDef, Node, SegmentDef, Status};

pub(super) struct Matcher<'s, 'a> {
    pub(super) split: Split<'s, 'a>,
    pub(super) tables: &'s MigTables,
    pub(super) pos: usize,
    pub(super) findings: Vec<Finding>,
    /// Per segment: the MIG position it matched (for the AHB rules).
    pub(super) placed: &'s mut [u32],
    /// Segments of the group repetitions being matched (see
    /// [`Scratch::segment_stack`](super::Scratch::segment_stack)).
    pub(super) segment_stack: &'s mut Vec<u32>,
    /// Finished group repetitions waiting for their parent to finish, as indices into `nodes`
    /// (see [`Scratch::instance_stack`](super::Scratch::instance_stack)).
    pub(super) instance_stack: &'s mut Vec<u32>,
    /// The message's arena being built: group repetitions, their segments, their children.
    pub(super) nodes: &'s mut Vec<GroupNode>,
    pub(super) members: &'s mut Vec<u32>,
    pub(super) children: &'s mut Vec<u32>,
    /// The conditions of the AHB rules to apply, marked segment by segment.
    pub(super) conditions: Option<Conditions<'s>>,
    pub(super) delimiters: Delimiters,
    pub(super) utf8: bool,
}

impl<'a> Matcher<'_, 'a> {
    /// Matches the segments from `self.pos` against `nodes` (one level of the tree, numbered
    /// `level` in the tables). At the message level a segment that no later position takes is
    /// reported and skipped; inside a group it ends the group repetition. The segments taken
    /// directly at this level are left on the segment stack, its finished group repetitions on
    /// the instance stack.
    pub(super) fn match_level(&mut self, nodes: &[Node], level: u32, root: bool) {
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
                        self.segment_stack.push(self.pos as u32);
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
                        let child = self.finish_group(g.id.clone(), segments_from, groups_from);
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

    /// Moves the segments and the finished repetitions above `segments_from` and
    /// `groups_from` on the stacks into a new node of the arena; returns its index.
    pub(super) fn finish_group(
        &mut self,
        id: std::sync::Arc<str>,
        segments_from: usize,
        groups_from: usize,
    ) -> u32 {
        let members_from = self.members.len() as u32;
        self.members
            .extend(self.segment_stack.drain(segments_from..));
        let children_from = self.children.len() as u32;
        self.children
            .extend(self.instance_stack.drain(groups_from..));
        self.nodes.push(GroupNode {
            id,
            segments: members_from..self.members.len() as u32,
            groups: children_from..self.children.len() as u32,
        });
        (self.nodes.len() - 1) as u32
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
