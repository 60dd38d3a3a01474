//! The `.ahb` files: the mechanically checkable AHB rules of one Prüfidentifikator (syntax in
//! `grammars/README.md`).

use chrono::NaiveDate;
use nom::bytes::complete::{take_while1, take_while_m_n};
use nom::character::complete::char;
use nom::combinator::all_consuming;
use nom::multi::separated_list1;
use nom::{IResult, Parser};

use super::unverified::{RuleClass, RuleClasses};
use super::GrammarFileError;

/// A segment selector: a tag and data element conditions (`NAD 3035=MS`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selector {
    /// Segment tag.
    pub tag: [u8; 3],
    /// Data element id and the values it may have (any of them).
    pub conditions: Vec<(String, Vec<String>)>,
}

impl std::fmt::Display for Selector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(std::str::from_utf8(&self.tag).unwrap_or("???"))?;
        for (de, values) in &self.conditions {
            write!(f, " {de}={}", values.join("|"))?;
        }
        Ok(())
    }
}

/// Which value check a `check` rule asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueKind {
    /// Marktlokations-ID: 11 digits with check digit.
    MaLo,
    /// Messlokations-ID: `DE` and 31 letters or digits.
    MeLo,
    /// Market partner ID: 13 digits with check digit.
    MpId,
    /// Date format 303: `CCYYMMDDHHMM` and time zone `?+00`.
    Date303,
    /// Date format 102: `CCYYMMDD`.
    Date102,
    /// Date format 203: `CCYYMMDDHHMM`.
    Date203,
}

impl ValueKind {
    fn parse(s: &str) -> Option<ValueKind> {
        Some(match s {
            "malo" => ValueKind::MaLo,
            "melo" => ValueKind::MeLo,
            "mpid" => ValueKind::MpId,
            "date303" => ValueKind::Date303,
            "date102" => ValueKind::Date102,
            "date203" => ValueKind::Date203,
            _ => return None,
        })
    }
}

/// One rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuleKind {
    /// At least one segment matches.
    Require(Selector),
    /// No segment matches.
    Forbid(Selector),
    /// Exactly one of the selectors matches (a segment).
    OneOf(Vec<Selector>),
    /// In every segment matching the selector, the data element has one of the codes.
    Values {
        /// Segments concerned.
        selector: Selector,
        /// Data element id.
        element: String,
        /// Allowed codes.
        codes: Vec<String>,
    },
    /// In every segment matching the selector, the data element passes a value check.
    Check {
        /// Segments concerned.
        selector: Selector,
        /// Data element id.
        element: String,
        /// The check.
        kind: ValueKind,
    },
    /// If a segment matches `when`, one must match `then`.
    If {
        /// The condition.
        when: Selector,
        /// What it requires.
        then: Selector,
    },
}

/// A rule with its citation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// What it checks.
    pub kind: RuleKind,
    /// The AHB condition or table row it comes from (the text after `#`).
    pub citation: String,
    /// Line in the file.
    pub line: usize,
}

/// Where a data element sits, per segment position of the MIG ([`super::SegmentDef::index`]):
/// `(element, component)`, 1-based, or `None` where that position has no such element.
pub type Locations = Vec<Option<(u16, u16)>>;

/// A selector resolved against a MIG.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompiledSelector {
    /// Segment tag.
    pub tag: [u8; 3],
    /// Per condition: where its data element sits, and the values it may have.
    pub conditions: Vec<(Locations, Vec<String>)>,
}

/// A rule resolved against a MIG (same order as [`AhbBlock::rules`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CompiledRule {
    /// See [`RuleKind::Require`].
    Require(CompiledSelector),
    /// See [`RuleKind::Forbid`].
    Forbid(CompiledSelector),
    /// See [`RuleKind::OneOf`].
    OneOf(Vec<CompiledSelector>),
    /// See [`RuleKind::Values`].
    Values(CompiledSelector, Locations),
    /// See [`RuleKind::Check`].
    Check(CompiledSelector, Locations),
    /// See [`RuleKind::If`].
    If(CompiledSelector, CompiledSelector),
}

fn locations(mig: &super::Mig, tag: &[u8; 3], id: &str) -> Option<Locations> {
    let mut at: Locations = vec![None; mig.positions];
    let mut any = false;
    for def in mig.segment_defs(tag) {
        if let Some((e, c)) = def.locate(id) {
            at[def.index] = Some((e as u16, c as u16));
            any = true;
        }
    }
    any.then_some(at)
}

fn compile_selector(mig: &super::Mig, s: &Selector) -> Result<CompiledSelector, String> {
    let mut conditions = Vec::new();
    for (id, values) in &s.conditions {
        let at = locations(mig, &s.tag, id).ok_or_else(|| {
            format!(
                "{s}: the MIG has no data element {id} in any {} segment",
                String::from_utf8_lossy(&s.tag)
            )
        })?;
        conditions.push((at, values.clone()));
    }
    Ok(CompiledSelector {
        tag: s.tag,
        conditions,
    })
}

impl AhbBlock {
    /// Resolves every rule against `mig`; names each rule that cannot be resolved.
    pub fn compile(&mut self, mig: &super::Mig) -> Vec<(usize, String)> {
        let mut problems = Vec::new();
        let mut compiled = Vec::new();
        for rule in &self.rules {
            let element_at = |sel: &Selector, id: &str| {
                locations(mig, &sel.tag, id).ok_or_else(|| {
                    format!("{sel}: the MIG has no data element {id} in any such segment")
                })
            };
            let result = match &rule.kind {
                RuleKind::Require(s) => compile_selector(mig, s).map(CompiledRule::Require),
                RuleKind::Forbid(s) => compile_selector(mig, s).map(CompiledRule::Forbid),
                RuleKind::OneOf(v) => v
                    .iter()
                    .map(|s| compile_selector(mig, s))
                    .collect::<Result<Vec<_>, _>>()
                    .map(CompiledRule::OneOf),
                RuleKind::Values {
                    selector, element, ..
                } => compile_selector(mig, selector)
                    .and_then(|s| Ok(CompiledRule::Values(s, element_at(selector, element)?))),
                RuleKind::Check {
                    selector, element, ..
                } => compile_selector(mig, selector)
                    .and_then(|s| Ok(CompiledRule::Check(s, element_at(selector, element)?))),
                RuleKind::If { when, then } => compile_selector(mig, when)
                    .and_then(|w| Ok(CompiledRule::If(w, compile_selector(mig, then)?))),
            };
            match result {
                Ok(c) => compiled.push(c),
                Err(message) => {
                    problems.push((rule.line, message));
                    // Keep positions aligned with `rules`: an unresolvable rule never matches.
                    compiled.push(CompiledRule::Require(CompiledSelector {
                        tag: *b"\0\0\0",
                        conditions: Vec::new(),
                    }));
                }
            }
        }
        self.compiled = compiled;
        problems
    }
}

/// The rules of one format-version range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AhbBlock {
    /// First day.
    pub valid_from: NaiveDate,
    /// Last day, if known.
    pub valid_until: Option<NaiveDate>,
    /// The MIG version (S009 DE0057) these rules go with.
    pub mig_version: String,
    /// What is unverified about this block.
    pub unverified: Vec<String>,
    /// `unverified-rules`: the kinds of rule whose findings are warnings, not errors (see
    /// [`crate::grammar::unverified`]).
    pub unverified_rules: RuleClasses,
    /// The rules.
    pub rules: Vec<Rule>,
    /// The rules resolved against their MIG (filled by the registry).
    pub compiled: Vec<CompiledRule>,
}

impl AhbBlock {
    /// True when in force on `date`.
    pub fn in_force(&self, date: NaiveDate) -> bool {
        date >= self.valid_from && self.valid_until.is_none_or(|u| date <= u)
    }
}

/// The AHB rules of one PID (or of APERAK/CONTRL, which have none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ahb {
    /// The Prüfidentifikator; `None` for APERAK and CONTRL.
    pub pid: Option<u32>,
    /// Message type.
    pub message_type: String,
    /// BDEW title.
    pub title: String,
    /// `source` lines.
    pub sources: Vec<String>,
    /// Blocks by format version.
    pub blocks: Vec<AhbBlock>,
    /// File name under `grammars/`.
    pub file: std::sync::Arc<str>,
}

fn tag3(i: &str) -> IResult<&str, &str> {
    take_while_m_n(3, 3, |c: char| c.is_ascii_uppercase() || c.is_ascii_digit()).parse(i)
}

fn condition(i: &str) -> IResult<&str, (String, Vec<String>)> {
    let (i, de) = take_while1(|c: char| c.is_ascii_alphanumeric()).parse(i)?;
    let (i, _) = char('=').parse(i)?;
    let (i, values) = separated_list1(
        char('|'),
        take_while1(|c: char| !c.is_whitespace() && c != '|'),
    )
    .parse(i)?;
    Ok((
        i,
        (
            de.to_string(),
            values.into_iter().map(str::to_string).collect(),
        ),
    ))
}

/// Reads a selector from tokens: the tag, then every `DE=v|v` token.
fn selector(tokens: &[&str]) -> Option<(Selector, usize)> {
    let (_, tag) = all_consuming(tag3).parse(tokens.first()?).ok()?;
    let mut conditions = Vec::new();
    let mut used = 1;
    for t in &tokens[1..] {
        match all_consuming(condition).parse(t) {
            Ok((_, c)) => {
                conditions.push(c);
                used += 1;
            }
            Err(_) => break,
        }
    }
    Some((
        Selector {
            tag: tag.as_bytes().try_into().ok()?,
            conditions,
        },
        used,
    ))
}

fn rule(text: &str) -> Result<RuleKind, String> {
    let tokens: Vec<&str> = text.split_whitespace().collect();
    let bad = || format!("cannot read rule {text:?}");
    let (keyword, rest) = tokens.split_first().ok_or_else(bad)?;
    let whole_selector = |tokens: &[&str]| -> Result<Selector, String> {
        match selector(tokens) {
            Some((s, used)) if used == tokens.len() => Ok(s),
            _ => Err(bad()),
        }
    };
    match *keyword {
        "require" => Ok(RuleKind::Require(whole_selector(rest)?)),
        "forbid" => Ok(RuleKind::Forbid(whole_selector(rest)?)),
        "one-of" => {
            let parts: Vec<Selector> = rest
                .split(|t| *t == "|")
                .map(whole_selector)
                .collect::<Result<_, _>>()?;
            if parts.len() < 2 {
                return Err(bad());
            }
            Ok(RuleKind::OneOf(parts))
        }
        "values" => {
            let (sel, used) = selector(rest).ok_or_else(bad)?;
            match &rest[used..] {
                [element, "=", codes @ ..] if !codes.is_empty() => Ok(RuleKind::Values {
                    selector: sel,
                    element: element.to_string(),
                    codes: codes.iter().map(|c| c.to_string()).collect(),
                }),
                _ => Err(bad()),
            }
        }
        "check" => {
            let (sel, used) = selector(rest).ok_or_else(bad)?;
            match &rest[used..] {
                [element, kind] => Ok(RuleKind::Check {
                    selector: sel,
                    element: element.to_string(),
                    kind: ValueKind::parse(kind)
                        .ok_or_else(|| format!("unknown check {kind:?}"))?,
                }),
                _ => Err(bad()),
            }
        }
        "if" => {
            let then_at = rest.iter().position(|t| *t == "then").ok_or_else(bad)?;
            Ok(RuleKind::If {
                when: whole_selector(&rest[..then_at])?,
                then: whole_selector(&rest[then_at + 1..])?,
            })
        }
        other => Err(format!("unknown rule {other:?}")),
    }
}

/// Parses an `.ahb` file.
pub fn parse_ahb(file: &str, text: &str) -> Result<Ahb, GrammarFileError> {
    let err = |line: usize, message: String| GrammarFileError {
        file: file.to_string(),
        line,
        message,
    };
    let mut ahb = Ahb {
        pid: None,
        message_type: String::new(),
        title: String::new(),
        sources: Vec::new(),
        blocks: Vec::new(),
        file: file.into(),
    };
    for (n, raw) in text.lines().enumerate() {
        let number = n + 1;
        let (content, citation) = match raw.split_once('#') {
            Some((c, cite)) => (c, cite.trim()),
            None => (raw, ""),
        };
        let indented = content.starts_with(' ');
        let content = content.trim();
        if content.is_empty() {
            continue;
        }
        let (key, value) = content.split_once(' ').unwrap_or((content, ""));
        let value = value.trim();
        if !indented {
            match key {
                "pid" => {
                    let mut parts = value.splitn(3, ' ');
                    let pid = parts.next().unwrap_or("");
                    ahb.pid = if pid == "-" {
                        None
                    } else {
                        Some(
                            pid.parse()
                                .map_err(|_| err(number, format!("bad PID {pid:?}")))?,
                        )
                    };
                    ahb.message_type = parts.next().unwrap_or("").to_string();
                    ahb.title = parts.next().unwrap_or("").trim_matches('"').to_string();
                }
                "source" => ahb.sources.push(value.to_string()),
                "version" => {
                    let parts: Vec<&str> = value.split_whitespace().collect();
                    let [from, until, mig] = parts[..] else {
                        return Err(err(number, "version needs FROM UNTIL|- MIG-VERSION".into()));
                    };
                    let day = |s: &str| {
                        NaiveDate::parse_from_str(s, "%Y-%m-%d")
                            .map_err(|_| err(number, format!("bad date {s:?}")))
                    };
                    ahb.blocks.push(AhbBlock {
                        valid_from: day(from)?,
                        valid_until: if until == "-" {
                            None
                        } else {
                            Some(day(until)?)
                        },
                        mig_version: mig.to_string(),
                        unverified: Vec::new(),
                        unverified_rules: RuleClasses::NONE,
                        rules: Vec::new(),
                        compiled: Vec::new(),
                    });
                }
                other => return Err(err(number, format!("unknown line {other:?}"))),
            }
        } else {
            let block = ahb
                .blocks
                .last_mut()
                .ok_or_else(|| err(number, "rule before the first `version` line".into()))?;
            if key == "unverified" {
                block.unverified.push(value.to_string());
                continue;
            }
            if key == "unverified-rules" {
                block.unverified_rules =
                    RuleClasses::parse(value, &RuleClass::AHB).map_err(|m| err(number, m))?;
                continue;
            }
            let kind = rule(content).map_err(|m| err(number, m))?;
            block.rules.push(Rule {
                kind,
                citation: citation.to_string(),
                line: number,
            });
        }
    }
    if ahb.message_type.is_empty() {
        return Err(err(1, "missing `pid` line".into()));
    }
    if ahb.sources.is_empty() {
        return Err(err(1, "missing `source` line".into()));
    }
    Ok(ahb)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_every_rule_kind() {
        let text = "pid 17133 ORDERS \"Bestellung Änderung Abrechnungsdaten\"\nsource test\n\nversion 2025-10-01 2026-09-30 1.4b\n  unverified copied\n  require BGM 1001=Z91   # Muss\n  one-of DTM 2005=203 | DTM 2005=469  # [55] [56]\n  forbid FTX 4451=Z13\n  values NAD 3035=MS|MR 3055 = 9 293\n  check LOC 3227=172 3225 malo\n  if AJT 4465=A99 then FTX 4451=AAP  # [28]\n";
        let ahb = parse_ahb("ahb/17133.ahb", text).unwrap();
        assert_eq!(ahb.pid, Some(17133));
        assert_eq!(ahb.title, "Bestellung Änderung Abrechnungsdaten");
        let block = &ahb.blocks[0];
        assert_eq!(block.unverified, vec!["copied"]);
        assert_eq!(block.rules.len(), 6);
        assert_eq!(block.rules[0].citation, "Muss");
        assert!(matches!(&block.rules[1].kind, RuleKind::OneOf(v) if v.len() == 2));
        match &block.rules[3].kind {
            RuleKind::Values {
                selector,
                element,
                codes,
            } => {
                assert_eq!(selector.to_string(), "NAD 3035=MS|MR");
                assert_eq!(element, "3055");
                assert_eq!(codes, &["9", "293"]);
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            block.rules[4].kind,
            RuleKind::Check {
                kind: ValueKind::MaLo,
                ..
            }
        ));
        assert!(matches!(&block.rules[5].kind, RuleKind::If { .. }));
    }

    #[test]
    fn refuses_unknown_rules_with_their_line() {
        let e = parse_ahb(
            "x.ahb",
            "pid 1 X \"x\"\nsource s\nversion 2025-01-01 - 1\n  demand BGM\n",
        )
        .unwrap_err();
        assert_eq!(e.line, 4);
    }
}
