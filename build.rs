//! Embeds every file under `grammars/` into the binary: generates a table of
//! `(relative path, contents)` that `grammar::Registry::embedded` reads.

use std::path::{Path, PathBuf};

fn collect(dir: &Path, base: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect(&path, base, out);
        } else if matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("mig" | "ahb" | "txt")
        ) {
            out.push(path.strip_prefix(base).unwrap().to_path_buf());
        }
    }
}

fn main() {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let grammars = root.join("grammars");
    println!("cargo:rerun-if-changed=grammars");
    // sqlx::migrate! embeds migrations/ at compile time: rebuild when they change.
    println!("cargo:rerun-if-changed=migrations");
    let mut files = Vec::new();
    collect(&grammars, &grammars, &mut files);
    files.sort();
    let mut code = String::from("/// Embedded grammar files: (path under grammars/, contents).\npub static FILES: &[(&str, &str)] = &[\n");
    for f in &files {
        let rel = f.to_string_lossy().replace('\\', "/");
        println!("cargo:rerun-if-changed=grammars/{rel}");
        code.push_str(&format!(
            "    ({rel:?}, include_str!(concat!(env!(\"CARGO_MANIFEST_DIR\"), \"/grammars/{rel}\"))),\n"
        ));
    }
    code.push_str("];\n");
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("grammars.rs");
    std::fs::write(out, code).unwrap();
}
