//! The MIG as tables, built once per MIG by the registry: the tree's levels as flat node
//! entries for the [`Matcher`](super::matcher::Matcher), the data elements of every segment
//! position as flat arrays for [`elements_ok`](super::values::elements_ok), and the reference
//! texts of findings, so that validating a message formats none of them.

use crate::grammar::mig::{CharClass, Mig, Node, SegmentDef, Status};

/// What validation needs of one MIG beyond its tree, made once instead of per message: the
/// tree's levels as flat node entries, the data elements of every segment position as flat
/// arrays for [`elements_ok`](super::values::elements_ok), and the reference texts of findings.
#[derive(Debug, Default)]
pub(in crate::grammar) struct MigTables {
    /// `MIG ORDERS 1.4b`.
    pub(super) mig_ref: String,
    /// `MIG ORDERS 1.4b (message level)`.
    pub(super) message_level_ref: String,
    /// The messages of the `grammar_unverified` warnings.
    pub(super) unverified: Vec<String>,
    /// The levels of the tree, the message level first.
    pub(super) levels: Vec<LevelTable>,
    /// Per segment position ([`SegmentDef::index`]).
    pub(super) positions: Vec<PositionTable>,
    /// The data elements of all positions, position by position.
    pub(super) elements: Vec<ElementTable>,
    /// The components of all data elements, element by element.
    pub(super) components: Vec<ComponentTable>,
    /// Sorted code keys of the components, component by component.
    pub(super) codes: Vec<u64>,
    /// Per position: `MIG ORDERS 1.4b SG2/NAD`.
    pub(super) position_refs: Vec<String>,
    /// Per data element (as in `elements`): `MIG ORDERS 1.4b SG2/NAD 3035`.
    pub(super) element_refs: Vec<String>,
}

/// One level of the tree (the message level or a group's children), node by node.
#[derive(Debug, Default)]
pub(super) struct LevelTable {
    pub(super) nodes: Vec<NodeTable>,
    /// Per node: the reference of a `missing_segment` / `missing_group` finding.
    pub(super) missing_refs: Vec<String>,
    /// Per node: the reference of a `too_many_group_repetitions` finding (empty for segments).
    pub(super) group_refs: Vec<String>,
}

/// One node of a level.
#[derive(Debug, Clone, Copy)]
pub(super) struct NodeTable {
    /// The tag (a group's trigger).
    pub(super) tag: [u8; 3],
    /// Status M or R.
    pub(super) required: bool,
    /// A segment (else a group).
    pub(super) segment: bool,
    /// A segment with status N.
    pub(super) unused: bool,
    /// Most repetitions.
    pub(super) max: u32,
    /// A segment's position, a group's level.
    pub(super) target: u32,
}

/// The data elements of one segment position.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct PositionTable {
    /// Its first data element in [`MigTables::elements`].
    pub(super) first: u32,
    /// Number of data elements.
    pub(super) count: u32,
    /// Bit `e - 1`: data element `e` is required.
    pub(super) required: u64,
    /// At most 64 data elements of at most 64 components each:
    /// [`elements_ok`](super::values::elements_ok) applies.
    pub(super) small: bool,
}

/// One data element of a segment position.
#[derive(Debug, Clone, Copy)]
pub(super) struct ElementTable {
    /// Its first component in [`MigTables::components`].
    pub(super) first: u32,
    /// Number of components (1 for a simple data element).
    pub(super) count: u32,
    /// Bit `c - 1`: component `c` is required.
    pub(super) required: u64,
    /// Status N.
    pub(super) unused: bool,
}

/// One simple data element (component), for `values::value_ok`.
#[derive(Debug, Clone, Copy)]
pub(super) struct ComponentTable {
    pub(super) class: CharClass,
    pub(super) min: u16,
    pub(super) max: u16,
    pub(super) unused: bool,
    pub(super) codes: Codes,
}

/// The allowed codes of a simple data element, for `values::value_ok`.
#[derive(Debug, Clone, Copy)]
pub(super) enum Codes {
    /// Any value.
    Any,
    /// Every code has a key ([`code_key`](crate::grammar::mig::code_key)): these are
    /// `MigTables::codes[from..to]`, sorted.
    Keys(u32, u32),
    /// Some code is longer than a key: left to [`check_value`](super::values::check_value).
    Def,
}

/// Builds the tables of a MIG (after `based-on` is resolved and positions are numbered).
pub(in crate::grammar) fn mig_tables(mig: &Mig) -> MigTables {
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

fn node_tag(node: &Node) -> [u8; 3] {
    match node {
        Node::Segment(s) => s.tag,
        Node::Group(g) => g.trigger(),
    }
}

fn node_status(node: &Node) -> Status {
    match node {
        Node::Segment(s) => s.status,
        Node::Group(g) => g.status,
    }
}
