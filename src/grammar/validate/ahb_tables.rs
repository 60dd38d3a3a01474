//! The AHB rules as tables, built once per AHB block by the registry: each rule reduced to a
//! [`Plan`], and the rules' conditions resolved by MIG position, so that the
//! [AHB engine](super::ahb_engine) tests each segment of a message once.

use super::values::short_key;
use crate::grammar::ahb::{Ahb, CompiledRule, CompiledSelector, Locations, RuleKind, ValueKind};
use crate::grammar::mig::{Mig, Node, SegmentDef};

/// What applying one AHB block needs beyond its rules, made once instead of per message: the
/// reference texts of findings, each rule as a [`Plan`], and the rules' conditions in a form
/// that a message's segments are tested against once each (see [`Conditions`]).
///
/// [`Conditions`]: super::ahb_engine::Conditions
#[derive(Debug, Default)]
pub(in crate::grammar) struct AhbTables {
    /// `AHB 17133 (ORDERS 1.4b)`.
    pub(super) reference: String,
    /// The messages of the `rules_unverified` warnings.
    pub(super) unverified: Vec<String>,
    /// Per rule: the reference with its citation.
    pub(super) cites: Vec<String>,
    /// Per rule: what to check.
    pub(super) plans: Vec<Plan>,
    /// The distinct tags of the selectors; a selector names its tag by index (slot).
    pub(super) tags: Vec<[u8; 3]>,
    /// Per MIG position: its tag and that tag's slot (`u32::MAX`: no selector has it), a
    /// shortcut past searching `tags`, taken when the segment has that tag.
    pub(super) position_slots: Vec<([u8; 3], u32)>,
    /// Per MIG position: the data elements that conditions read there.
    pub(super) position_reads: Vec<Vec<Read>>,
    /// Every selector of every rule.
    pub(super) selectors: Vec<SelectorTable>,
    /// Number of distinct conditions.
    pub(super) conditions: usize,
}

/// A rule reduced to what the validator does with it (indices into [`AhbTables::selectors`]).
#[derive(Debug)]
pub(super) enum Plan {
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
pub(super) struct Read {
    pub(super) element: u16,
    pub(super) component: u16,
    /// A value key ([`short_key`]) and the condition that a value with that key meets, for the
    /// conditions whose values all have keys.
    pub(super) keyed: Vec<(u64, u32)>,
    /// Condition number and values, for the other conditions.
    pub(super) other: Vec<(u32, Values)>,
}

/// A compiled selector: its tag slot and conditions.
#[derive(Debug)]
pub(super) struct SelectorTable {
    pub(super) slot: u32,
    pub(super) conditions: Vec<u32>,
}

/// Values a data element may have, with their keys ([`short_key`]) where every value has one.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct Values {
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
    pub(super) fn contains(&self, v: &[u8], key: Option<u64>) -> bool {
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
pub(in crate::grammar) fn ahb_tables(ahb: &Ahb, migs: &[Mig]) -> Vec<AhbTables> {
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
