//! The AHB engine: applies the rules of a Prüfidentifikator to a matched message. The
//! matcher marks, segment by segment, which conditions each segment meets ([`Conditions`]);
//! the rules' plans then read those sets ([`Placed`]) and record application findings.

use std::borrow::Cow;

use super::ahb_tables::{AhbTables, Plan, Read, SelectorTable};
use super::split::Split;
use super::values::short_key;
use super::{Finding, Level, Severity, UNESCAPE_BUFFER, UNPLACED};
use crate::edifact::tokens::{unescape_in, ComponentSpan};
use crate::edifact::Segment;
use crate::grammar::ahb::{AhbBlock, CompiledRule, Locations, RuleKind, ValueKind};
use crate::ids::{
    parse_date_102, parse_date_203, parse_date_303, MarketLocationId, MarketPartnerId,
    MeteringLocationId,
};

/// Buffers of [`Conditions`]: one bitset over the message's segments (`words` words) per
/// condition, then one per tag slot.
#[derive(Default)]
pub(super) struct AhbScratch {
    pub(super) sets: Vec<u64>,
}

/// The sets of [`AhbScratch`] being filled for a message and an AHB block: which segments
/// have each tag slot, and which meet each condition, i.e. were matched to a MIG position
/// where the condition's data element is located and hold one of its values there
/// (unescaped). A segment may be marked for a condition on another tag; it is only read
/// together with its own tag.
pub(super) struct Conditions<'s> {
    pub(super) tables: &'s AhbTables,
    pub(super) sets: &'s mut [u64],
    pub(super) words: usize,
}

impl Conditions<'_> {
    /// Marks the conditions that segment `i`, matched to MIG position `position`, meets.
    #[inline]
    pub(super) fn mark(
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
pub(super) fn mark_slots(
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
pub(super) struct Placed<'v, 'a> {
    pub(super) split: Split<'v, 'a>,
    pub(super) placed: &'v [u32],
    /// See [`AhbScratch`].
    pub(super) sets: &'v [u64],
    pub(super) words: usize,
    /// Where the slots' sets start in `sets`.
    pub(super) slots: usize,
    /// The segment whose DE2380 (element 1, component 2) was read as the message date: a
    /// valid date in format 303.
    pub(super) date_at: Option<usize>,
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

    pub(super) fn text(&self, i: usize, at: &Locations) -> Option<Cow<'_, str>> {
        located(self.split, self.placed, i, at).map(|p| self.split.text(i, p))
    }

    /// Calls `f` with the text of the data element located by `at` in segment `i`, if present.
    pub(super) fn with_text<R>(
        &self,
        i: usize,
        at: &Locations,
        f: impl FnOnce(&str) -> R,
    ) -> Option<R> {
        located(self.split, self.placed, i, at).map(|p| self.split.with_text(i, p, f))
    }
}

/// The problem a `check` rule finds with a value, if any.
fn check_kind(kind: ValueKind, v: &str) -> Option<String> {
    match kind {
        ValueKind::MaLo => MarketLocationId::check(v).err().map(|e| e.to_string()),
        ValueKind::MeLo => MeteringLocationId::check(v).err().map(|e| e.to_string()),
        ValueKind::MpId => MarketPartnerId::check(v).err().map(|e| e.to_string()),
        ValueKind::Date303 => parse_date_303(v).err().map(|e| e.to_string()),
        ValueKind::Date203 => parse_date_203(v).err().map(|e| e.to_string()),
        ValueKind::Date102 => parse_date_102(v).err().map(|e| e.to_string()),
    }
}

pub(super) fn apply_ahb(
    block: &AhbBlock,
    tables: &AhbTables,
    view: &Placed<'_, '_>,
    out: &mut Vec<Finding>,
) {
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
