//! The layering of `src/`, checked by reading the `use` lines and paths of every file (issue
//! 12): the pure folders import no I/O layer, tokio or sqlx; every module imports only the
//! layers below its own (the order written in `src/lib.rs`); and no two modules import each
//! other, at any level of folders.
//!
//! How a reference is read: `crate::a::b::…` and `super::…` paths outside `#[cfg(test)]`
//! modules (tests may reach anywhere). An edge from module `x::y` to `x::z` is a dependency of
//! the sibling `y` on `z`; edges between a module and its own parent or children (a folder and
//! its `mod.rs`) are the module itself and do not count.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The layers from the bottom up: a module may use the ones before it (and its own).
const LAYERS: &[&[&str]] = &[
    &["clock", "ids", "edifact", "alloc"],
    &["grammar"],
    &["acks"],
    &["orders"],
    &["plan"],
    &["config"],
    &["store"],
    &["transport"],
    &["worker", "api"],
    &["daemon"],
    &["cli"],
];

/// The pure core: no I/O, no runtime, no database.
const PURE: &[&str] = &[
    "clock", "ids", "edifact", "grammar", "acks", "orders", "plan", "config",
];

/// What a pure module must not name.
const NOT_IN_PURE: &[&str] = &[
    "crate::store",
    "crate::transport",
    "crate::daemon",
    "crate::api",
    "crate::worker",
    "crate::cli",
    "tokio::",
    "sqlx::",
    "axum::",
    "hyper::",
    "reqwest::",
    "async_imap::",
];

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `a::b` for `src/a/b.rs` and `src/a/b/mod.rs`; `""` for `lib.rs` and `main.rs`.
fn module_of(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).unwrap().with_extension("");
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if parts
        .last()
        .is_some_and(|p| p == "mod" || p == "lib" || p == "main")
    {
        parts.pop();
    }
    parts
}

/// The code of a file without its test modules (everything from the first `#[cfg(test)]`
/// followed by a `mod`), without comments.
fn code(text: &str) -> String {
    let mut out = String::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("#[cfg(test)]")
            && lines
                .peek()
                .is_some_and(|next| next.trim_start().starts_with("mod "))
        {
            break;
        }
        if trimmed.starts_with("//") {
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// The module paths a file's code names: `crate::a::b` and `super::x` (resolved against
/// `module`), each as its segments.
fn references(module: &[String], is_mod_rs: bool, code: &str) -> Vec<Vec<String>> {
    let ident = |s: &str| -> Vec<String> {
        s.split("::")
            .map(|p| {
                p.chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect::<String>()
            })
            .take_while(|p| !p.is_empty() && p.chars().next().is_some_and(|c| c.is_lowercase()))
            .collect()
    };
    let mut out = Vec::new();
    for (i, _) in code.match_indices("crate::") {
        let before = code[..i].chars().last();
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
            continue;
        }
        out.push(ident(&code[i + "crate::".len()..]));
    }
    for (i, _) in code.match_indices("super::") {
        let before = code[..i].chars().last();
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':') {
            continue;
        }
        // `super` of `a::b` (in b.rs or b/mod.rs) is `a`.
        let mut base: Vec<String> = module.to_vec();
        let _ = is_mod_rs;
        base.pop();
        let mut rest = &code[i + "super::".len()..];
        while let Some(r) = rest.strip_prefix("super::") {
            base.pop();
            rest = r;
        }
        base.extend(ident(rest));
        out.push(base);
    }
    out
}

struct Crate {
    /// Module → its files' code.
    code: BTreeMap<Vec<String>, String>,
    /// Every module path that exists.
    modules: BTreeSet<Vec<String>>,
    /// Module → the modules it names (resolved to existing modules).
    uses: BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
}

fn read_crate() -> Crate {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut all = Vec::new();
    files(&src, &mut all);
    let mut code_of = BTreeMap::new();
    let mut raw_refs = Vec::new();
    let mut modules = BTreeSet::new();
    for file in &all {
        let module = module_of(&src, file);
        let text = std::fs::read_to_string(file).unwrap();
        let code = code(&text);
        let is_mod_rs = file.file_name().is_some_and(|n| n == "mod.rs");
        raw_refs.push((module.clone(), references(&module, is_mod_rs, &code)));
        code_of
            .entry(module.clone())
            .or_insert_with(String::new)
            .push_str(&code);
        modules.insert(module);
    }
    let mut uses: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = BTreeMap::new();
    for (module, refs) in raw_refs {
        for r in refs {
            // The longest existing module the path starts with.
            let target = (1..=r.len())
                .rev()
                .map(|n| r[..n].to_vec())
                .find(|prefix| modules.contains(prefix));
            if let Some(target) = target {
                uses.entry(module.clone()).or_default().insert(target);
            }
        }
    }
    Crate {
        code: code_of,
        modules,
        uses,
    }
}

fn layer_of(top: &str) -> Option<usize> {
    LAYERS.iter().position(|layer| layer.contains(&top))
}

#[test]
fn the_pure_core_imports_no_io_layer_no_runtime_and_no_database() {
    let krate = read_crate();
    let mut offences = Vec::new();
    for (module, code) in &krate.code {
        let Some(top) = module.first() else { continue };
        if !PURE.contains(&top.as_str()) {
            continue;
        }
        for forbidden in NOT_IN_PURE {
            if code.contains(forbidden) {
                offences.push(format!("{} names {forbidden}", module.join("::")));
            }
        }
    }
    assert!(offences.is_empty(), "{offences:#?}");
}

#[test]
fn every_module_imports_only_the_layers_below_its_own() {
    let krate = read_crate();
    let mut offences = Vec::new();
    for (module, targets) in &krate.uses {
        let Some(top) = module.first() else { continue };
        let Some(own) = layer_of(top) else {
            offences.push(format!("{top} is in no layer of LAYERS (src/lib.rs)"));
            continue;
        };
        for target in targets {
            let target_top = &target[0];
            if target_top == top {
                continue;
            }
            match layer_of(target_top) {
                Some(layer) if layer < own => {}
                _ => offences.push(format!(
                    "{} uses {} (a layer at or above its own)",
                    module.join("::"),
                    target.join("::")
                )),
            }
        }
    }
    assert!(offences.is_empty(), "{offences:#?}");
}

#[test]
fn no_two_modules_import_each_other() {
    let krate = read_crate();
    // Dependencies between siblings: x::y → x::z, projected from every edge.
    let mut siblings: BTreeMap<Vec<String>, BTreeSet<(String, String)>> = BTreeMap::new();
    for (from, targets) in &krate.uses {
        for to in targets {
            let common = from.iter().zip(to).take_while(|(a, b)| a == b).count();
            if common == from.len() || common == to.len() {
                continue; // a module and its own parent or child
            }
            siblings
                .entry(from[..common].to_vec())
                .or_default()
                .insert((from[common].clone(), to[common].clone()));
        }
    }
    let mut cycles = Vec::new();
    for (parent, edges) in &siblings {
        // Depth-first search for a cycle among the children of `parent`.
        let next = |n: &str| -> Vec<String> {
            edges
                .iter()
                .filter(|(a, _)| a == n)
                .map(|(_, b)| b.clone())
                .collect()
        };
        let nodes: BTreeSet<String> = edges.iter().map(|(a, _)| a.clone()).collect();
        for start in &nodes {
            let mut stack = vec![(start.clone(), vec![start.clone()])];
            let mut seen = BTreeSet::new();
            while let Some((node, path)) = stack.pop() {
                for n in next(&node) {
                    if &n == start {
                        let mut cycle = path.clone();
                        cycle.push(n.clone());
                        let prefix = if parent.is_empty() {
                            String::new()
                        } else {
                            format!("{}::", parent.join("::"))
                        };
                        cycles.push(format!("{prefix}{}", cycle.join(" -> ")));
                    } else if seen.insert(n.clone()) {
                        let mut p = path.clone();
                        p.push(n.clone());
                        stack.push((n, p));
                    }
                }
            }
        }
    }
    cycles.sort();
    cycles.dedup();
    assert!(cycles.is_empty(), "{cycles:#?}");
}

#[test]
fn the_checks_see_the_crate() {
    // Guards the checks above against reading nothing: the modules they judge exist and the
    // edges they follow are found.
    let krate = read_crate();
    for module in [
        vec!["plan".to_string(), "inbound".to_string()],
        vec!["store".to_string(), "journal".to_string()],
        vec!["worker".to_string(), "outbound".to_string()],
    ] {
        assert!(krate.modules.contains(&module), "{module:?}");
    }
    let worker_uses = &krate.uses[&vec!["worker".to_string(), "inbound".to_string()]];
    assert!(worker_uses.contains(&vec!["plan".to_string(), "inbound".to_string()]));
    assert!(worker_uses.contains(&vec!["store".to_string()]));
}
