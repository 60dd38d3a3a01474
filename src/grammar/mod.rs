//! The BDEW message structures as data: MIGs and AHB rules loaded from `grammars/`, chosen by
//! message type, version and date, and the validator that checks messages against them.
//!
//! Pure: the grammar files are embedded at build time (`build.rs`), nothing is read at run
//! time, and dates come in as arguments.

pub mod ahb;
pub mod mig;
pub mod unverified;
mod validate;

use std::collections::HashMap;
use std::sync::OnceLock;

use chrono::NaiveDate;

pub use ahb::{Ahb, AhbBlock, Rule, RuleKind, Selector, ValueKind};
pub use mig::{CharClass, ElementDef, Format, GroupDef, Mig, Node, SegmentDef, SimpleDef, Status};
pub use unverified::{RuleClass, RuleClasses};
pub use validate::{
    message_date, message_pid, validate_interchange, validate_message, Finding, GroupView, Level,
    MessageReport, Severity, Validated, NO_GRAMMAR,
};

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/grammars.rs"));
}

/// An embedded file under `grammars/` (e.g. `calendar/holidays.txt`).
pub fn embedded_file(path: &str) -> Option<&'static str> {
    embedded::FILES
        .iter()
        .find(|(p, _)| *p == path)
        .map(|(_, text)| *text)
}

/// A mistake in a grammar file (caught by the tests of the embedded files).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("grammars/{file}:{line}: {message}")]
pub struct GrammarFileError {
    /// File under `grammars/`.
    pub file: String,
    /// Line (1-based).
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

/// All loaded grammars.
#[derive(Debug, Default)]
pub struct Registry {
    migs: Vec<Mig>,
    ahbs: Vec<Ahb>,
    by_pid: HashMap<u32, usize>,
    /// Per MIG (same order as `migs`): its tables for the validator.
    mig_tables: Vec<validate::MigTables>,
    /// Per AHB and block (same order as `ahbs` and their blocks): tables for the validator.
    ahb_tables: Vec<Vec<validate::AhbTables>>,
    /// Per MIG (same order as `migs`): its message type and association as keys
    /// (`validate::short_key`), `None` where longer than a key.
    mig_keys: Vec<(Option<u64>, Option<u64>)>,
}

impl Registry {
    /// The grammars embedded in the binary, loaded once. Panics if an embedded file is broken,
    /// which the test `every_embedded_grammar_loads` rules out before a release.
    pub fn embedded() -> &'static Registry {
        static REGISTRY: OnceLock<Registry> = OnceLock::new();
        REGISTRY.get_or_init(|| {
            Registry::from_files(embedded::FILES.iter().copied())
                .unwrap_or_else(|errors| panic!("embedded grammars are broken: {errors:?}"))
        })
    }

    /// Loads grammar files given as (path under `grammars/`, contents). Reports every broken
    /// file at once.
    pub fn from_files<'a>(
        files: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Registry, Vec<GrammarFileError>> {
        let mut registry = Registry::default();
        let mut errors = Vec::new();
        for (path, text) in files {
            if path.ends_with(".mig") {
                match mig::parse_mig(path, text) {
                    Ok(m) => registry.migs.push(m),
                    Err(e) => errors.push(e),
                }
            } else if path.ends_with(".ahb") {
                match ahb::parse_ahb(path, text) {
                    Ok(a) => registry.ahbs.push(a),
                    Err(e) => errors.push(e),
                }
            }
        }
        // Resolve `based-on`: take the tree of the named version of the same type.
        let trees: HashMap<(String, String), Vec<Node>> = registry
            .migs
            .iter()
            .filter(|m| m.based_on.is_none())
            .map(|m| {
                (
                    (m.message_type.clone(), m.association.clone()),
                    m.root.clone(),
                )
            })
            .collect();
        for m in &mut registry.migs {
            if let Some(base) = &m.based_on {
                match trees.get(&(m.message_type.clone(), base.clone())) {
                    Some(tree) => {
                        m.root = tree.clone();
                        m.number_positions();
                        // The base tree's UNH allows only its own version in S009 DE0057.
                        m.set_unh_version_code();
                    }
                    None => errors.push(GrammarFileError {
                        file: m.file.to_string(),
                        line: 1,
                        message: format!("based-on {base}: no such version of {}", m.message_type),
                    }),
                }
            }
        }
        // Resolve every AHB rule against the MIG of its block.
        let migs = &registry.migs;
        for a in &mut registry.ahbs {
            for block in &mut a.blocks {
                match migs.iter().find(|m| {
                    m.message_type == a.message_type && m.association == block.mig_version
                }) {
                    Some(mig) => {
                        for (line, message) in block.compile(mig) {
                            errors.push(GrammarFileError {
                                file: a.file.to_string(),
                                line,
                                message,
                            });
                        }
                    }
                    None => errors.push(GrammarFileError {
                        file: a.file.to_string(),
                        line: 1,
                        message: format!(
                            "no MIG {} {} for the rules of this version",
                            a.message_type, block.mig_version
                        ),
                    }),
                }
            }
        }
        for (i, a) in registry.ahbs.iter().enumerate() {
            if let Some(pid) = a.pid {
                if registry.by_pid.insert(pid, i).is_some() {
                    errors.push(GrammarFileError {
                        file: a.file.to_string(),
                        line: 1,
                        message: format!("PID {pid} defined twice"),
                    });
                }
            }
        }
        registry.migs.sort_by(|a, b| {
            (a.message_type.as_str(), a.valid_from).cmp(&(b.message_type.as_str(), b.valid_from))
        });
        registry.mig_tables = registry.migs.iter().map(validate::mig_tables).collect();
        registry.mig_keys = registry
            .migs
            .iter()
            .map(|m| {
                (
                    validate::short_key(m.message_type.as_bytes()),
                    validate::short_key(m.association.as_bytes()),
                )
            })
            .collect();
        registry.ahb_tables = registry
            .ahbs
            .iter()
            .map(|a| validate::ahb_tables(a, &registry.migs))
            .collect();
        if errors.is_empty() {
            Ok(registry)
        } else {
            Err(errors)
        }
    }

    /// Every MIG, by type and date.
    pub fn migs(&self) -> &[Mig] {
        &self.migs
    }

    /// Every AHB file.
    pub fn ahbs(&self) -> &[Ahb] {
        &self.ahbs
    }

    /// The MIG for a message type and association code (S009 DE0057), e.g. (`ORDERS`, `1.4b`).
    pub fn mig(&self, message_type: &str, association: &str) -> Option<&Mig> {
        self.mig_index(message_type, association)
            .map(|i| &self.migs[i])
    }

    /// Index in [`Registry::migs`] of the MIG for a message type and association code.
    fn mig_index(&self, message_type: &str, association: &str) -> Option<usize> {
        self.mig_index_bytes(message_type.as_bytes(), association.as_bytes())
    }

    /// [`Registry::mig_index`] on the bytes of the two texts.
    fn mig_index_bytes(&self, message_type: &[u8], association: &[u8]) -> Option<usize> {
        match (
            validate::short_key(message_type),
            validate::short_key(association),
        ) {
            // Equal keys, equal texts: a key holds the bytes and their number.
            (Some(t), Some(a)) => self
                .mig_keys
                .iter()
                .position(|&keys| keys == (Some(t), Some(a))),
            _ => self.migs.iter().position(|m| {
                m.message_type.as_bytes() == message_type && m.association.as_bytes() == association
            }),
        }
    }

    /// The MIG of a message type in force on `date`.
    pub fn mig_in_force(&self, message_type: &str, date: NaiveDate) -> Option<&Mig> {
        self.migs
            .iter()
            .filter(|m| m.message_type == message_type && m.in_force(date))
            .max_by_key(|m| m.valid_from)
    }

    /// The AHB rules of a PID.
    pub fn ahb(&self, pid: u32) -> Option<&Ahb> {
        self.by_pid.get(&pid).map(|&i| &self.ahbs[i])
    }

    /// The AHB rules of a message type without PID (APERAK, CONTRL).
    pub fn ahb_without_pid(&self, message_type: &str) -> Option<&Ahb> {
        self.ahbs
            .iter()
            .find(|a| a.pid.is_none() && a.message_type == message_type)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_embedded_grammar_loads() {
        let registry =
            Registry::from_files(embedded::FILES.iter().copied()).unwrap_or_else(|errors| {
                panic!(
                    "{}",
                    errors
                        .iter()
                        .map(|e| e.to_string())
                        .collect::<Vec<_>>()
                        .join("\n")
                )
            });
        for m in registry.migs() {
            assert!(!m.root.is_empty(), "{} has no tree", m.file);
        }
    }

    #[test]
    fn based_on_takes_the_earlier_tree_and_reports_a_missing_one() {
        let base = "source s\nmessage X D:1:UN:1.0\nvalid-from 2025-01-01\nsegment UNH M 1\n  0062 M an..14\n";
        let next = "source s\nunverified copy\nunverified-rules structure codes\nmessage X D:1:UN:1.1\nvalid-from 2026-01-01\nbased-on 1.0\n";
        let r = Registry::from_files([("x/1.0.mig", base), ("x/1.1.mig", next)]).unwrap();
        assert_eq!(
            r.mig("X", "1.1").unwrap().root,
            r.mig("X", "1.0").unwrap().root
        );
        let date = NaiveDate::from_ymd_opt(2026, 3, 1).unwrap();
        assert_eq!(r.mig_in_force("X", date).unwrap().association, "1.1");
        let e = Registry::from_files([("x/1.1.mig", next)]).unwrap_err();
        assert!(e[0].message.contains("no such version"));
    }
}
