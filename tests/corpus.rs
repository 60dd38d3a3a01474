//! Every interchange of the shared corpus (written by others) is parsed, round-tripped byte for
//! byte, and snapshotted.
//!
//! The corpus lives beside the checkout in `../shared/corpus` (or `MAKO_CORPUS_DIR`). Files of
//! `hupe1980-mako/` are MIT/Apache licensed: their snapshot is the whole tree. The other folders
//! carry no licence, so their snapshot records only the structure (tags, element counts and
//! the envelope summary), never their values.

mod common;

use common::{corpus_dir, edi_files};

use mako_gateway::cli::{render_text, summary_json, write_summary_json};
use mako_gateway::edifact::{parse, parse_lenient, write_document, Document};

fn shape(document: &Document<'_>) -> String {
    let mut out = String::new();
    for ic in document.interchanges() {
        out.push_str(&format!(
            "interchange {} ({} segments, {} messages)\n",
            ic.syntax(),
            ic.segment_count(),
            ic.messages().len()
        ));
        for m in ic.messages() {
            out.push_str(&format!(
                "  message {} {} ({} segments)\n",
                m.message_type(),
                m.version(),
                m.segment_count()
            ));
        }
        for s in ic.segments() {
            let counts: Vec<String> = s
                .elements()
                .map(|e| e.components().count().to_string())
                .collect();
            out.push_str(&format!(
                "  {:>4} {} [{}]\n",
                s.number(),
                s.tag(),
                counts.join(",")
            ));
        }
    }
    out
}

#[test]
fn every_corpus_file_parses_round_trips_and_matches_its_snapshot() {
    let Some(dir) = corpus_dir() else { return };
    let files = edi_files(&dir);
    assert!(
        files.len() > 300,
        "expected the whole corpus, found {} files",
        files.len()
    );
    let mut with_errors = 0;
    for path in &files {
        let relative = path.strip_prefix(&dir).unwrap();
        let name = relative
            .with_extension("")
            .to_string_lossy()
            .replace(['/', '\\'], "__");
        let licensed = relative.starts_with("hupe1980-mako");
        let input = std::fs::read(path).unwrap();
        let mut report = String::new();
        let document = match parse(&input) {
            Ok(document) => document,
            Err(_) => {
                // Files with syntax errors still must be read as far as the structure goes,
                // and every error is recorded with its position.
                let outcome = parse_lenient(&input);
                for e in &outcome.errors {
                    report.push_str(&format!("error: {e}\n"));
                }
                with_errors += 1;
                outcome.document.unwrap_or_else(|| {
                    panic!("{}: structure unreadable: {:?}", name, outcome.errors)
                })
            }
        };
        assert_eq!(
            write_document(&document),
            input,
            "{name}: round trip is not byte-exact"
        );
        // `parse --format json` writes the text of the summary value, by its fast path or not.
        let mut written = Vec::new();
        write_summary_json(&document, &mut written).unwrap();
        assert_eq!(
            String::from_utf8(written).unwrap(),
            summary_json(&document).to_string(),
            "{name}: the JSON summary writer differs from the summary value"
        );
        report.push_str(&if licensed {
            render_text(&document)
        } else {
            shape(&document)
        });
        insta::assert_snapshot!(name, report);
    }
    // The generated hupe1980 fixtures of IFTSTA and MSCONS declare wrong UNT counts; everything
    // else in the corpus is syntactically valid. A change here means the parser changed.
    assert_eq!(with_errors, 58, "files with syntax errors");
}
