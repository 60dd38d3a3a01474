//! Helpers shared by the integration tests: the corpus beside the checkout and `.edi` files.

use std::path::{Path, PathBuf};

/// The shared corpus (`../shared/corpus`, or `MAKO_CORPUS_DIR`). Without it the caller skips
/// with a printed notice, except under CI, where a missing corpus fails the run.
pub fn corpus_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("MAKO_CORPUS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus"));
    if dir.is_dir() {
        return Some(dir);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "corpus not found at {}: CI must run beside shared/",
        dir.display()
    );
    eprintln!(
        "NOTICE: corpus not found at {}; corpus tests skipped (set MAKO_CORPUS_DIR)",
        dir.display()
    );
    None
}

/// Every `.edi` file below `dir`, sorted.
pub fn edi_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "edi") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}
