//! parse -> write -> parse on arbitrary bytes: no panic, and every accepted input is written
//! back byte for byte; the canonical model of an accepted interchange survives its writer; and
//! validating and planning the answers (CONTRL/APERAK) never panics and always writes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mako_gateway::cli::{render_text, summary_json};
use mako_gateway::acks::{plan, AckContext, ContrlPolicy, NoProcessingCheck};
use mako_gateway::edifact::{
    parse, parse_lenient, write_document, OwnedInterchange, ReferenceSequence, Writer,
};
use mako_gateway::grammar::Registry;

fuzz_target!(|data: &[u8]| {
    let mut context = AckContext {
        registry: Registry::embedded(),
        now: chrono::NaiveDate::from_ymd_opt(2026, 5, 12)
            .unwrap()
            .and_hms_opt(10, 0, 0)
            .unwrap(),
        contrl_policy: ContrlPolicy::Always,
        references: ReferenceSequence::new("FZ", 1).unwrap(),
        processing: &NoProcessingCheck,
    };
    let answers = plan(data, &mut context);
    for answer in answers.render().expect("answers are always writable") {
        parse(&answer).expect("our answers parse");
    }

    let outcome = parse_lenient(data);
    for error in &outcome.errors {
        assert!(error.position.offset <= data.len());
        let _ = error.to_string();
    }
    let Some(document) = outcome.document else {
        return;
    };
    // Views and renderers must cope with whatever the lenient parse accepted.
    let _ = render_text(&document);
    let _ = summary_json(&document);
    if !outcome.errors.is_empty() {
        return;
    }
    let written = write_document(&document);
    assert_eq!(written, data, "exact writer changed an accepted input");
    let again = parse(&written).expect("written bytes parse again");
    assert_eq!(again.segment_count(), document.segment_count());
    for interchange in document.interchanges() {
        if let Ok(model) = OwnedInterchange::from_parsed(&interchange) {
            let writer = Writer::new(model.header.syntax);
            if let Ok(canonical) = writer.write_interchange(&model) {
                let reparsed = parse(&canonical).expect("canonical output parses");
                let back = OwnedInterchange::from_parsed(&reparsed.interchanges().next().unwrap())
                    .expect("canonical output reads back");
                assert_eq!(back.messages, model.messages);
            }
        }
    }
});
