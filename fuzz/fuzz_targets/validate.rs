//! The grammar validator over whatever the lenient parser accepts: every message of every
//! interchange validated against the embedded MIG/AHB grammars, the validated tree read by
//! group path, every finding placed inside the input and printable; then the inbound reading
//! the workers run on a received interchange (journal facts, acknowledgements, routing, the
//! answers read from handled messages). No panic, and the acknowledgements always write.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mako_gateway::acks::{AckContext, ContrlPolicy};
use mako_gateway::edifact::{parse, parse_lenient, ReferenceSequence, Writer};
use mako_gateway::grammar::{message_date, message_pid, validate_interchange, Registry};
use mako_gateway::plan::inbound::{journal_facts, read_inbound};
use mako_gateway::plan::routing::{RoutingCheck, RoutingTable};

/// Group paths the order readers use (and some that exist in no grammar).
const PATHS: &[&str] = &["SG1", "SG2", "SG2/SG3", "SG2/SG5", "SG4", "SG4/SG5", "SG6", "SG8", "SG14", "SG29", "SG99", ""];

fuzz_target!(|data: &[u8]| {
    let registry = Registry::embedded();
    let outcome = parse_lenient(data);
    if let Some(document) = &outcome.document {
        for interchange in document.interchanges() {
            let reports = validate_interchange(&interchange, registry);
            assert_eq!(reports.len(), interchange.messages().count());
            for (message, report) in interchange.messages().zip(&reports) {
                assert_eq!(message_pid(&message), report.pid);
                let _ = message_date(&message);
                let segments = message.segments().count();
                for finding in &report.findings {
                    assert!(
                        finding.offset <= data.len(),
                        "finding at byte {} of {}: {finding}",
                        finding.offset,
                        data.len()
                    );
                    assert!(!finding.to_string().is_empty());
                }
                let _ = report.has_errors();
                let _ = report.is_unchecked();
                if let Some(validated) = &report.validated {
                    let root = validated.root();
                    let _ = root.segment(b"BGM");
                    let _ = root.qualified(b"RFF", "Z13");
                    for path in PATHS {
                        for group in validated.groups_at(path) {
                            assert!(group.segments(b"RFF").count() <= segments);
                            let _ = group.qualified(b"LOC", "172");
                            let _ = group.groups_qualified("SG3", "ON");
                        }
                    }
                }
            }
        }
    }

    let facts = journal_facts(data);
    let _ = (facts.sender, facts.interchange_reference, facts.pids);
    let routing = RoutingTable::default();
    let check = RoutingCheck {
        table: &routing,
        registry,
    };
    let mut context = AckContext {
        registry,
        now: chrono::NaiveDate::from_ymd_opt(2026, 10, 1)
            .unwrap()
            .and_hms_opt(9, 0, 0)
            .unwrap(),
        contrl_policy: ContrlPolicy::OnErrors,
        references: ReferenceSequence::new("FZ", 1).unwrap(),
        processing: &check,
    };
    let read = read_inbound(data, &mut context, &routing);
    let _ = format!("{:?}", read.items);
    for reply in &read.replies {
        let bytes = Writer::new(reply.header.syntax)
            .write_interchange(reply)
            .expect("our acknowledgements always write");
        parse(&bytes).expect("our acknowledgements parse");
    }
});
