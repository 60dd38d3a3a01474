//! The `.mig` files: one message type's segment tree in one version (syntax in
//! `grammars/README.md`).

use chrono::NaiveDate;
use nom::branch::alt;
use nom::bytes::complete::{tag, take_till, take_while1};
use nom::character::complete::{char, digit1, space0, space1};
use nom::combinator::{all_consuming, map_res, opt, rest};
use nom::multi::separated_list1;
use nom::sequence::{delimited, preceded};
use nom::{IResult, Parser};

use super::unverified::{RuleClass, RuleClasses};
use super::GrammarFileError;

/// Status of a segment, group or data element in the BDEW column of a MIG.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Muss: required.
    M,
    /// Erforderlich: required when the parent is present.
    R,
    /// Abhängig: may be absent.
    D,
    /// Optional.
    O,
    /// Conditional (UN standard): may be absent.
    C,
    /// Nicht benutzt: must be absent.
    N,
}

impl Status {
    /// True for M and R.
    pub fn is_required(self) -> bool {
        matches!(self, Status::M | Status::R)
    }

    fn parse(s: &str) -> Option<Status> {
        Some(match s {
            "M" => Status::M,
            "R" => Status::R,
            "D" => Status::D,
            "O" => Status::O,
            "C" => Status::C,
            "N" => Status::N,
            _ => return None,
        })
    }
}

/// Character class of a data element format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CharClass {
    /// `a`: letters (and spaces).
    Alphabetic,
    /// `n`: digits, with an optional decimal mark and leading minus sign not counted.
    Numeric,
    /// `an`: any character of the repertoire.
    Alphanumeric,
}

/// A data element format such as `an..35` or `n13`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Format {
    /// Character class.
    pub class: CharClass,
    /// Least length (equal to `max` for fixed-length formats, 0 otherwise).
    pub min: u16,
    /// Greatest length.
    pub max: u16,
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let class = match self.class {
            CharClass::Alphabetic => "a",
            CharClass::Numeric => "n",
            CharClass::Alphanumeric => "an",
        };
        if self.min == self.max {
            write!(f, "{class}{}", self.max)
        } else {
            write!(f, "{class}..{}", self.max)
        }
    }
}

/// A simple data element (or a component of a composite).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimpleDef {
    /// Data element id, e.g. `1001`.
    pub id: String,
    /// Status.
    pub status: Status,
    /// Format.
    pub format: Format,
    /// Allowed codes; empty when the MIG does not restrict the value.
    pub codes: Vec<String>,
    /// The codes packed into integers (codes of up to 8 bytes, the rule in BDEW code lists),
    /// so that a lookup compares integers instead of strings.
    pub code_keys: Vec<u64>,
}

/// Packs up to 8 bytes into an integer; longer values have no key.
pub fn code_key(bytes: &[u8]) -> Option<u64> {
    (bytes.len() <= 8).then(|| {
        let mut buf = [0u8; 8];
        buf[..bytes.len()].copy_from_slice(bytes);
        // The length in the top bits keeps `A` and `A\0` apart.
        u64::from_le_bytes(buf) ^ ((bytes.len() as u64) << 60)
    })
}

impl SimpleDef {
    fn new(id: &str, status: Status, format: Format, codes: Vec<String>) -> SimpleDef {
        let code_keys = codes
            .iter()
            .filter_map(|c| code_key(c.as_bytes()))
            .collect();
        SimpleDef {
            id: id.to_string(),
            status,
            format,
            codes,
            code_keys,
        }
    }

    /// True when `value` is one of the allowed codes (or no codes are listed).
    pub fn allows_code(&self, value: &[u8]) -> bool {
        if self.codes.is_empty() {
            return true;
        }
        match code_key(value) {
            Some(k) if self.code_keys.len() == self.codes.len() => self.code_keys.contains(&k),
            _ => self.codes.iter().any(|c| c.as_bytes() == value),
        }
    }
}

/// A data element of a segment: simple or composite.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ElementDef {
    /// A simple data element.
    Simple(SimpleDef),
    /// A composite data element with its components.
    Composite {
        /// Composite id, e.g. `C002`.
        id: String,
        /// Status.
        status: Status,
        /// Components in position order.
        components: Vec<SimpleDef>,
    },
}

impl ElementDef {
    /// The element's id.
    pub fn id(&self) -> &str {
        match self {
            ElementDef::Simple(s) => &s.id,
            ElementDef::Composite { id, .. } => id,
        }
    }

    /// The element's status.
    pub fn status(&self) -> Status {
        match self {
            ElementDef::Simple(s) => s.status,
            ElementDef::Composite { status, .. } => *status,
        }
    }

    /// The components (a simple element is its own single component).
    pub fn components(&self) -> &[SimpleDef] {
        match self {
            ElementDef::Simple(s) => std::slice::from_ref(s),
            ElementDef::Composite { components, .. } => components,
        }
    }
}

/// One segment position of the MIG.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentDef {
    /// Tag.
    pub tag: [u8; 3],
    /// Status.
    pub status: Status,
    /// Most repetitions at this position.
    pub max: u32,
    /// Name from the MIG.
    pub name: String,
    /// Data elements after the tag.
    pub elements: Vec<ElementDef>,
    /// Line in the `.mig` file (for messages about the grammar itself).
    pub line: usize,
    /// Number of this position in tree order (0-based), unique within its MIG.
    pub index: usize,
}

impl SegmentDef {
    /// The tag as text.
    pub fn tag_str(&self) -> &str {
        std::str::from_utf8(&self.tag).unwrap_or("???")
    }

    /// Element and component position (1-based) of data element `id`.
    pub fn locate(&self, id: &str) -> Option<(usize, usize)> {
        for (e, element) in self.elements.iter().enumerate() {
            match element {
                ElementDef::Simple(s) if s.id == id => return Some((e + 1, 1)),
                ElementDef::Simple(_) => {}
                ElementDef::Composite {
                    id: cid,
                    components,
                    ..
                } => {
                    if cid == id {
                        return Some((e + 1, 1));
                    }
                    if let Some(c) = components.iter().position(|c| c.id == id) {
                        return Some((e + 1, c + 1));
                    }
                }
            }
        }
        None
    }
}

/// A segment group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDef {
    /// Group id, e.g. `SG2` (shared with the group instances of validated messages).
    pub id: std::sync::Arc<str>,
    /// Status.
    pub status: Status,
    /// Most repetitions.
    pub max: u32,
    /// Name.
    pub name: String,
    /// Children in MIG order; the first is the trigger segment.
    pub children: Vec<Node>,
}

impl GroupDef {
    /// The trigger segment's tag.
    pub fn trigger(&self) -> [u8; 3] {
        match self.children.first() {
            Some(Node::Segment(s)) => s.tag,
            _ => *b"???",
        }
    }
}

/// A position of the tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    /// A segment position.
    Segment(SegmentDef),
    /// A segment group.
    Group(GroupDef),
}

/// A MIG: one message type in one version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mig {
    /// Message type, e.g. `ORDERS`.
    pub message_type: String,
    /// S009 without the type, e.g. `D:09B:UN:1.4b`.
    pub identifier: String,
    /// The association assigned code (S009 DE0057), e.g. `1.4b`.
    pub association: String,
    /// First day the version is in force.
    pub valid_from: NaiveDate,
    /// Last day, if the end is known.
    pub valid_until: Option<NaiveDate>,
    /// `source` lines.
    pub sources: Vec<String>,
    /// `unverified` lines: what could not be checked against a BDEW text.
    pub unverified: Vec<String>,
    /// `unverified-rules` line: the kinds of rule whose findings are warnings, not errors
    /// (see [`crate::grammar::unverified`]).
    pub unverified_rules: RuleClasses,
    /// The version whose tree this one takes (`based-on`), if any.
    pub based_on: Option<String>,
    /// Top-level positions.
    pub root: Vec<Node>,
    /// File name under `grammars/`.
    pub file: std::sync::Arc<str>,
    /// Number of segment positions (see [`SegmentDef::index`]).
    pub positions: usize,
}

impl Mig {
    /// Numbers the segment positions in tree order ([`SegmentDef::index`]).
    pub fn number_positions(&mut self) {
        fn walk(nodes: &mut [Node], next: &mut usize) {
            for n in nodes {
                match n {
                    Node::Segment(s) => {
                        s.index = *next;
                        *next += 1;
                    }
                    Node::Group(g) => walk(&mut g.children, next),
                }
            }
        }
        let mut next = 0;
        walk(&mut self.root, &mut next);
        self.positions = next;
    }

    /// Sets the allowed code of UNH S009 DE0057 to this MIG's own version (for `based-on`).
    pub fn set_unh_version_code(&mut self) {
        let association = self.association.clone();
        if let Some(Node::Segment(unh)) = self.root.first_mut() {
            for element in &mut unh.elements {
                if let ElementDef::Composite { components, .. } = element {
                    for c in components
                        .iter_mut()
                        .filter(|c| c.id == "0057" && !c.codes.is_empty())
                    {
                        *c = SimpleDef::new(&c.id, c.status, c.format, vec![association.clone()]);
                    }
                }
            }
        }
    }

    /// True when the version is in force on `date`.
    pub fn in_force(&self, date: NaiveDate) -> bool {
        date >= self.valid_from && self.valid_until.is_none_or(|u| date <= u)
    }

    /// Every segment definition with `tag`, in tree order.
    pub fn segment_defs(&self, tag: &[u8; 3]) -> Vec<&SegmentDef> {
        fn walk<'m>(nodes: &'m [Node], tag: &[u8; 3], out: &mut Vec<&'m SegmentDef>) {
            for n in nodes {
                match n {
                    Node::Segment(s) if &s.tag == tag => out.push(s),
                    Node::Segment(_) => {}
                    Node::Group(g) => walk(&g.children, tag, out),
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.root, tag, &mut out);
        out
    }
}

// ---- line parsers (nom) ----

fn quoted_name(i: &str) -> IResult<&str, &str> {
    delimited(char('"'), take_till(|c| c == '"'), char('"')).parse(i)
}

fn status(i: &str) -> IResult<&str, Status> {
    map_res(take_while1(|c: char| c.is_ascii_uppercase()), |s: &str| {
        Status::parse(s).ok_or("status")
    })
    .parse(i)
}

fn number(i: &str) -> IResult<&str, u32> {
    map_res(digit1, str::parse::<u32>).parse(i)
}

fn format(i: &str) -> IResult<&str, Format> {
    let (i, class) = alt((
        tag("an").map(|_| CharClass::Alphanumeric),
        tag("a").map(|_| CharClass::Alphabetic),
        tag("n").map(|_| CharClass::Numeric),
    ))
    .parse(i)?;
    let (i, dots) = opt(tag("..")).parse(i)?;
    let (i, len) = map_res(digit1, str::parse::<u16>).parse(i)?;
    let min = if dots.is_some() { 0 } else { len };
    Ok((
        i,
        Format {
            class,
            min,
            max: len,
        },
    ))
}

fn codes(i: &str) -> IResult<&str, Vec<String>> {
    preceded(
        (space1, char('='), space1),
        separated_list1(space1, take_while1(|c: char| !c.is_whitespace())),
    )
    .map(|v: Vec<&str>| v.into_iter().map(str::to_string).collect())
    .parse(i)
}

/// `segment TAG STATUS MAX ["name"]` or `group SGn STATUS MAX ["name"]`.
fn position_line(i: &str) -> IResult<&str, (&str, &str, Status, u32, String)> {
    let (i, kind) = alt((tag("segment"), tag("group"))).parse(i)?;
    let (i, _) = space1(i)?;
    let (i, id) = take_while1(|c: char| c.is_ascii_alphanumeric()).parse(i)?;
    let (i, _) = space1(i)?;
    let (i, st) = status(i)?;
    let (i, _) = space1(i)?;
    let (i, max) = number(i)?;
    let (i, name) = opt(preceded(space1, quoted_name)).parse(i)?;
    let (i, _) = space0(i)?;
    Ok((i, (kind, id, st, max, name.unwrap_or("").to_string())))
}

/// A data element line: id, status, format (none for a composite), codes.
type ElementLine<'a> = (&'a str, Status, Option<Format>, Vec<String>);

/// `ID STATUS FORMAT [= codes]` (simple) or `ID STATUS` (composite).
fn element_line(i: &str) -> IResult<&str, ElementLine<'_>> {
    let (i, id) = take_while1(|c: char| c.is_ascii_alphanumeric()).parse(i)?;
    let (i, _) = space1(i)?;
    let (i, st) = status(i)?;
    let (i, fmt) = opt(preceded(space1, format)).parse(i)?;
    let (i, cs) = opt(codes).parse(i)?;
    let (i, _) = space0(i)?;
    Ok((i, (id, st, fmt, cs.unwrap_or_default())))
}

/// `keyword value…`
fn header_line(i: &str) -> IResult<&str, (&str, &str)> {
    let (i, key) = take_while1(|c: char| c.is_ascii_lowercase() || c == '-').parse(i)?;
    let (i, _) = space1(i)?;
    let (i, value) = rest(i)?;
    Ok((i, (key, value.trim_end())))
}

fn date(s: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d").ok()
}

/// A line with its indentation level and content (comments and blanks removed).
struct Line<'a> {
    number: usize,
    level: usize,
    text: &'a str,
}

fn lines(text: &str) -> Vec<Line<'_>> {
    text.lines()
        .enumerate()
        .filter_map(|(n, raw)| {
            // A `#` starts a comment unless it is inside a quoted name.
            let mut in_quotes = false;
            let mut cut = raw.len();
            for (i, c) in raw.char_indices() {
                match c {
                    '"' => in_quotes = !in_quotes,
                    '#' if !in_quotes => {
                        cut = i;
                        break;
                    }
                    _ => {}
                }
            }
            let content = raw[..cut].trim_end();
            let trimmed = content.trim_start();
            if trimmed.is_empty() {
                return None;
            }
            let indent = content.len() - trimmed.len();
            Some(Line {
                number: n + 1,
                level: indent / 2,
                text: trimmed,
            })
        })
        .collect()
}

/// Parses a `.mig` file.
pub fn parse_mig(file: &str, text: &str) -> Result<Mig, GrammarFileError> {
    let err = |line: usize, message: String| GrammarFileError {
        file: file.to_string(),
        line,
        message,
    };
    let lines = lines(text);
    let mut mig = Mig {
        message_type: String::new(),
        identifier: String::new(),
        association: String::new(),
        valid_from: NaiveDate::MIN,
        valid_until: None,
        sources: Vec::new(),
        unverified: Vec::new(),
        unverified_rules: RuleClasses::NONE,
        based_on: None,
        root: Vec::new(),
        file: file.into(),
        positions: 0,
    };
    let mut i = 0;
    // Header lines at level 0 until the first segment/group.
    while i < lines.len()
        && !(lines[i].text.starts_with("segment ") || lines[i].text.starts_with("group "))
    {
        let l = &lines[i];
        let (_, (key, value)) = all_consuming(header_line)
            .parse(l.text)
            .map_err(|_| err(l.number, format!("cannot read header line {:?}", l.text)))?;
        match key {
            "source" => mig.sources.push(value.to_string()),
            "unverified" => mig.unverified.push(value.to_string()),
            "unverified-rules" => {
                mig.unverified_rules =
                    RuleClasses::parse(value, &RuleClass::MIG).map_err(|m| err(l.number, m))?
            }
            "message" => {
                let (ty, id) = value
                    .split_once(' ')
                    .ok_or_else(|| err(l.number, "message needs TYPE and identifier".into()))?;
                mig.message_type = ty.to_string();
                mig.identifier = id.trim().to_string();
                mig.association = mig.identifier.rsplit(':').next().unwrap_or("").to_string();
            }
            "valid-from" => {
                mig.valid_from =
                    date(value).ok_or_else(|| err(l.number, format!("bad date {value:?}")))?
            }
            "valid-until" => {
                mig.valid_until =
                    Some(date(value).ok_or_else(|| err(l.number, format!("bad date {value:?}")))?)
            }
            "based-on" => mig.based_on = Some(value.to_string()),
            other => return Err(err(l.number, format!("unknown header {other:?}"))),
        }
        i += 1;
    }
    if mig.message_type.is_empty() {
        return Err(err(1, "missing `message` line".into()));
    }
    if mig.valid_from == NaiveDate::MIN {
        return Err(err(1, "missing `valid-from` line".into()));
    }
    if mig.sources.is_empty() {
        return Err(err(1, "missing `source` line".into()));
    }
    let (nodes, next) = parse_nodes(&lines, i, 0, file)?;
    if next != lines.len() {
        return Err(err(lines[next].number, "unexpected indentation".into()));
    }
    mig.root = nodes;
    mig.number_positions();
    if mig.root.is_empty() && mig.based_on.is_none() {
        return Err(err(1, "no segments and no `based-on`".into()));
    }
    // A tree taken from another version was not read for this one: the file must say which
    // of its rules may not reject a message.
    if mig.based_on.is_some() && (mig.unverified_rules.is_empty() || mig.unverified.is_empty()) {
        return Err(err(
            1,
            "a `based-on` MIG needs `unverified` and `unverified-rules` lines".into(),
        ));
    }
    Ok(mig)
}

fn parse_nodes(
    lines: &[Line<'_>],
    mut i: usize,
    level: usize,
    file: &str,
) -> Result<(Vec<Node>, usize), GrammarFileError> {
    let err = |line: usize, message: String| GrammarFileError {
        file: file.to_string(),
        line,
        message,
    };
    let mut nodes = Vec::new();
    while i < lines.len() && lines[i].level == level {
        let l = &lines[i];
        let (_, (kind, id, st, max, name)) =
            all_consuming(position_line).parse(l.text).map_err(|_| {
                err(
                    l.number,
                    format!("expected `segment` or `group` line, found {:?}", l.text),
                )
            })?;
        i += 1;
        if kind == "group" {
            let (children, next) = parse_nodes(lines, i, level + 1, file)?;
            i = next;
            match children.first() {
                Some(Node::Segment(_)) => {}
                _ => {
                    return Err(err(
                        l.number,
                        format!("group {id} must start with a segment"),
                    ))
                }
            }
            nodes.push(Node::Group(GroupDef {
                id: id.into(),
                status: st,
                max,
                name,
                children,
            }));
        } else {
            let tag: [u8; 3] = id.as_bytes().try_into().map_err(|_| {
                err(
                    l.number,
                    format!("segment tag {id:?} is not three characters"),
                )
            })?;
            let mut elements = Vec::new();
            while i < lines.len() && lines[i].level == level + 1 && !is_position(lines[i].text) {
                let el = &lines[i];
                let (_, (eid, est, efmt, ecodes)) =
                    all_consuming(element_line).parse(el.text).map_err(|_| {
                        err(el.number, format!("cannot read data element {:?}", el.text))
                    })?;
                i += 1;
                match efmt {
                    Some(format) => {
                        elements.push(ElementDef::Simple(SimpleDef::new(eid, est, format, ecodes)))
                    }
                    None => {
                        let mut components = Vec::new();
                        while i < lines.len() && lines[i].level == level + 2 {
                            let cl = &lines[i];
                            let (_, (cid, cst, cfmt, ccodes)) =
                                all_consuming(element_line).parse(cl.text).map_err(|_| {
                                    err(cl.number, format!("cannot read component {:?}", cl.text))
                                })?;
                            let format = cfmt.ok_or_else(|| {
                                err(cl.number, format!("component {cid} needs a format"))
                            })?;
                            components.push(SimpleDef::new(cid, cst, format, ccodes));
                            i += 1;
                        }
                        if components.is_empty() {
                            return Err(err(
                                el.number,
                                format!("{eid} has neither a format nor components"),
                            ));
                        }
                        elements.push(ElementDef::Composite {
                            id: eid.to_string(),
                            status: est,
                            components,
                        });
                    }
                }
            }
            nodes.push(Node::Segment(SegmentDef {
                tag,
                status: st,
                max,
                name,
                elements,
                line: l.number,
                index: 0,
            }));
        }
    }
    Ok((nodes, i))
}

fn is_position(text: &str) -> bool {
    text.starts_with("segment ") || text.starts_with("group ")
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONTRL: &str = r#"
source test
message CONTRL D:3:UN:2.0b
valid-from 2025-10-01
segment UNH M 1 "Kopf # kein Kommentar"
  0062 M an..14
  S009 M
    0065 M an..6 = CONTRL
    0057 M an..6 = 2.0b
segment UCI M 1
  0083 M n1 = 4 7   # Aktion
group SG1 D 999999
  segment UCM M 1
    0083 M n1 = 4
  group SG2 D 999
    segment UCS M 1
      0096 M n..6
segment UNT M 1
  0074 M n..10
"#;

    #[test]
    fn reads_the_tree() {
        let mig = parse_mig("contrl/2.0b.mig", CONTRL).unwrap();
        assert_eq!(mig.association, "2.0b");
        assert_eq!(mig.root.len(), 4);
        let Node::Segment(unh) = &mig.root[0] else {
            panic!()
        };
        assert_eq!(unh.name, "Kopf # kein Kommentar");
        assert_eq!(unh.locate("0057"), Some((2, 2)));
        let Node::Group(sg1) = &mig.root[2] else {
            panic!()
        };
        assert_eq!(sg1.trigger(), *b"UCM");
        assert_eq!(sg1.max, 999_999);
        let Node::Group(sg2) = &sg1.children[1] else {
            panic!()
        };
        assert_eq!(&*sg2.id, "SG2");
        let Node::Segment(uci) = &mig.root[1] else {
            panic!()
        };
        let ElementDef::Simple(action) = &uci.elements[0] else {
            panic!()
        };
        assert_eq!(action.codes, vec!["4", "7"]);
        assert_eq!(
            action.format,
            Format {
                class: CharClass::Numeric,
                min: 1,
                max: 1
            }
        );
    }

    #[test]
    fn names_the_line_of_a_mistake() {
        let broken = CONTRL.replace("0074 M n..10", "0074 M x..10");
        let e = parse_mig("contrl/2.0b.mig", &broken).unwrap_err();
        assert_eq!(e.line, 19);
        let e = parse_mig("x.mig", "message X D:1\nvalid-from 2025-01-01\n").unwrap_err();
        assert!(e.message.contains("source"), "{e}");
    }
}
