//! Validation against the embedded grammars: snapshots of the findings and answers for every
//! sample, a table of broken messages with the finding and code each must produce, and the
//! corpus of other people's interchanges checked against our grammars.

mod common;

use common::{corpus_dir, edi_files};
use std::path::Path;

use chrono::NaiveDate;
use mako_gateway::acks::{plan, AckContext, ContrlPolicy};
use mako_gateway::cli::{render_findings, render_plan};
use mako_gateway::edifact::{parse, parse_lenient, ReferenceSequence};
use mako_gateway::grammar::{validate_interchange, Level, Registry, Severity};

fn manifest() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn context(now: &str) -> AckContext<'static> {
    AckContext {
        registry: Registry::embedded(),
        now: chrono::NaiveDateTime::parse_from_str(now, "%Y-%m-%dT%H:%M").unwrap(),
        contrl_policy: ContrlPolicy::OnErrors,
        references: ReferenceSequence::new("ACK", 1).unwrap(),
        processing: &mako_gateway::acks::NoProcessingCheck,
    }
}

/// Findings and answers of one input, as text.
fn findings_and_answers(name: &str, input: &[u8]) -> String {
    let outcome = parse_lenient(input);
    let reports: Vec<_> = outcome
        .document
        .as_ref()
        .map(|d| {
            d.interchanges()
                .flat_map(|ic| validate_interchange(&ic, Registry::embedded()))
                .collect()
        })
        .unwrap_or_default();
    let mut out = render_findings(name, &outcome.errors, &reports);
    let mut ctx = context("2026-05-12T10:00");
    out.push_str(&render_plan(&plan(input, &mut ctx)).unwrap());
    out
}

#[test]
fn every_sample_has_a_snapshot_of_its_findings_and_answers() {
    let samples = manifest().join("samples");
    let files = edi_files(&samples);
    assert!(files.len() >= 9, "samples missing: {files:?}");
    for path in files {
        let relative = path.strip_prefix(&samples).unwrap();
        let name = relative
            .with_extension("")
            .to_string_lossy()
            .replace('/', "__");
        let input = std::fs::read(&path).unwrap();
        insta::assert_snapshot!(
            name,
            findings_and_answers(&relative.to_string_lossy(), &input)
        );
    }
}

/// One broken variant of the sample ORDERS 17133 and what it must produce.
struct Broken {
    name: &'static str,
    from: &'static str,
    to: &'static str,
    rule: &'static str,
    contrl: Option<u8>,
    aperak: Option<&'static str>,
}

const fn broken(
    name: &'static str,
    from: &'static str,
    to: &'static str,
    rule: &'static str,
    contrl: Option<u8>,
    aperak: Option<&'static str>,
) -> Broken {
    Broken {
        name,
        from,
        to,
        rule,
        contrl,
        aperak,
    }
}

const BROKEN: &[Broken] = &[
    broken(
        "BGM missing",
        "BGM+Z91+MG10000000001'\n",
        "",
        "missing_segment",
        Some(13),
        None,
    ),
    broken(
        "BGM code not in the MIG",
        "BGM+Z91+",
        "BGM+Z99+",
        "code_not_allowed",
        Some(12),
        None,
    ),
    broken(
        "document number too long",
        "BGM+Z91+MG10000000001",
        "BGM+Z91+MG10000000001000000000000000000000000000000000000000000000000000000000000",
        "value_too_long",
        Some(39),
        None,
    ),
    broken(
        "data element more than the MIG defines",
        "CCI+Z66",
        "CCI+Z66++++++++X",
        "too_many_elements",
        Some(16),
        None,
    ),
    broken(
        "segment the MIG does not know",
        "UNS+S'",
        "XYZ+1'\nUNS+S'",
        "unexpected_segment",
        Some(15),
        None,
    ),
    broken(
        "UNS twice",
        "UNS+S'",
        "UNS+S'\nUNS+S'",
        "too_many_repetitions",
        Some(35),
        None,
    ),
    broken(
        "letters in a numeric element",
        "LIN+1+Z79",
        "LIN+A+Z79",
        "invalid_character_type",
        Some(37),
        None,
    ),
    broken(
        "decimal comma where the UNA declares a point",
        "LIN+1+Z79",
        "LIN+1,5+Z79",
        "invalid_decimal_notation",
        Some(19),
        None,
    ),
    broken(
        "decimal mark without a digit before it",
        "LIN+1+Z79",
        "LIN+.5+Z79",
        "missing_digit_before_decimal_mark",
        Some(38),
        None,
    ),
    broken(
        "NAD+MR missing",
        "NAD+MR+9900000000011::293'\n",
        "",
        "required_by_ahb",
        None,
        Some("Z29"),
    ),
    broken(
        "both change date and next possible date",
        "DTM+203:",
        "DTM+469:202605312200?+00:303'\nDTM+203:",
        "exclusive_by_ahb",
        None,
        Some("Z40"),
    ),
    broken(
        "market location check digit",
        "LOC+172+51238696781",
        "LOC+172+51238696782",
        "format_by_ahb",
        None,
        Some("Z35"),
    ),
    broken(
        "date not in format 303",
        "DTM+137:202605100815?+00:303",
        "DTM+137:2026051008?+00:303",
        "format_by_ahb",
        None,
        Some("Z35"),
    ),
    broken(
        "NAD agency not allowed by the AHB",
        "NAD+MS+9900000000003::293",
        "NAD+MS+9900000000003::332",
        "code_not_allowed_by_ahb",
        None,
        Some("Z39"),
    ),
];

fn sample_orders() -> String {
    let bytes = std::fs::read(manifest().join("samples/outbound/orders_17133_modul1.edi")).unwrap();
    bytes.iter().map(|&b| b as char).collect()
}

/// Recomputes UNT after a mutation changed the number of segments, so that only the intended
/// error is in the message.
fn fix_unt(text: &str) -> String {
    let start = text.find("UNH+").unwrap();
    let end = text.find("UNT+").unwrap();
    let count = text[start..end].matches('\'').count() + 1;
    let unt_end = end + text[end..].find('\'').unwrap();
    format!("{}UNT+{count}+1{}", &text[..end], &text[unt_end..])
}

#[test]
fn each_broken_message_gets_its_finding_and_answer_code() {
    let good = sample_orders();
    let registry = Registry::embedded();
    for case in BROKEN {
        assert!(
            good.contains(case.from),
            "{}: {:?} not in the sample",
            case.name,
            case.from
        );
        let text = fix_unt(&good.replacen(case.from, case.to, 1));
        let bytes: Vec<u8> = text.chars().map(|c| c as u8).collect();
        let document = parse(&bytes).unwrap_or_else(|e| panic!("{}: {e}", case.name));
        let interchange = document.interchanges().next().unwrap();
        let reports = validate_interchange(&interchange, registry);
        let errors: Vec<_> = reports[0]
            .findings
            .iter()
            .filter(|f| f.severity == Severity::Error)
            .collect();
        let hit = errors
            .iter()
            .find(|f| f.rule == case.rule)
            .unwrap_or_else(|| panic!("{}: no {} finding in {errors:#?}", case.name, case.rule));
        assert_eq!(hit.contrl_code, case.contrl, "{}", case.name);
        assert_eq!(hit.aperak_code, case.aperak, "{}", case.name);
        // The answer carries the code: a CONTRL for MIG errors, an APERAK 313 for AHB errors.
        let mut ctx = context("2026-05-10T09:00");
        let answer = plan(&bytes, &mut ctx);
        let rendered: Vec<String> = answer
            .render()
            .unwrap()
            .iter()
            .map(|b| b.iter().map(|&c| c as char).collect())
            .collect();
        match (hit.level, case.contrl, case.aperak) {
            (Level::Syntax, Some(code), _) => {
                let contrl = &rendered[0];
                assert!(
                    contrl.contains("CONTRL:D:3:UN:2.0b"),
                    "{}: {contrl}",
                    case.name
                );
                let with_code = contrl.contains(&format!("+{code}'"))
                    || contrl.contains(&format!("UCD+{code}+"));
                assert!(with_code, "{}: code {code} not in {contrl}", case.name);
                assert!(
                    answer.aperak.is_none(),
                    "{}: no APERAK for a rejected message",
                    case.name
                );
            }
            (Level::Application, _, Some(erc)) => {
                assert!(
                    answer.contrl.is_none(),
                    "{}: no CONTRL for an AHB error",
                    case.name
                );
                let aperak = &rendered[0];
                assert!(aperak.contains("BGM+313+"), "{}: {aperak}", case.name);
                assert!(
                    aperak.contains(&format!("ERC+{erc}'")),
                    "{}: {aperak}",
                    case.name
                );
                assert!(
                    aperak.contains("FTX+Z02+++"),
                    "{}: the place of the error",
                    case.name
                );
            }
            other => panic!("{}: unexpected combination {other:?}", case.name),
        }
    }
}

#[test]
fn the_unbroken_sample_is_clean_and_answered_positively() {
    let bytes: Vec<u8> = sample_orders().chars().map(|c| c as u8).collect();
    let mut ctx = context("2026-05-10T09:00");
    let answer = plan(&bytes, &mut ctx);
    for r in &answer.reports {
        assert!(r.findings.is_empty(), "{:#?}", r.findings);
    }
    assert!(answer.contrl.is_none());
    let aperak = answer.aperak.expect("an APERAK for every business message");
    assert_eq!(aperak.messages.len(), 1);
    assert_eq!(aperak.messages[0].segments[0].elements[0], vec!["312"]);
}

#[test]
fn our_own_answers_validate_against_our_grammars() {
    // Every CONTRL and APERAK the gateway writes for the samples and the broken table must
    // itself be valid against the MIG and AHB in force on its date.
    let registry = Registry::embedded();
    let mut inputs: Vec<Vec<u8>> = edi_files(&manifest().join("samples"))
        .into_iter()
        .map(|p| std::fs::read(p).unwrap())
        .collect();
    let good = sample_orders();
    for case in BROKEN {
        inputs.push(
            fix_unt(&good.replacen(case.from, case.to, 1))
                .chars()
                .map(|c| c as u8)
                .collect(),
        );
    }
    let mut checked = 0;
    for input in inputs {
        let mut ctx = context("2026-05-12T10:00");
        for answer in plan(&input, &mut ctx).render().unwrap() {
            let document = parse(&answer).unwrap_or_else(|e| panic!("{e}"));
            for ic in document.interchanges() {
                for report in validate_interchange(&ic, registry) {
                    let errors: Vec<_> = report
                        .findings
                        .iter()
                        .filter(|f| f.severity == Severity::Error)
                        .collect();
                    assert!(
                        errors.is_empty(),
                        "{}: {errors:#?}",
                        String::from_utf8_lossy(&answer)
                    );
                    checked += 1;
                }
            }
        }
    }
    assert!(checked >= 10, "only {checked} answers checked");
}

#[test]
fn answers_after_the_october_switch_use_aperak_2_2() {
    let bytes: Vec<u8> = sample_orders().chars().map(|c| c as u8).collect();
    let mut ctx = context("2026-11-23T10:00");
    let answer = plan(&bytes, &mut ctx);
    let aperak = answer.aperak.unwrap();
    assert_eq!(aperak.messages[0].identifier.association, "2.2");
    // The message itself is an ORDERS 1.4b, not in force any more on its own date? Its date is
    // 2026-05-10, when 1.4b was in force: no warning.
    assert!(answer.reports[0].findings.is_empty());
}

#[test]
fn every_corpus_file_validates_without_panic_and_the_vendor_samples_match_our_migs() {
    let Some(dir) = corpus_dir() else { return };
    let registry = Registry::embedded();
    let mut summary = String::new();
    for path in edi_files(&dir) {
        let relative = path
            .strip_prefix(&dir)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let input = std::fs::read(&path).unwrap();
        let outcome = parse_lenient(&input);
        let Some(document) = outcome.document else {
            summary.push_str(&format!("{relative}: unreadable\n"));
            continue;
        };
        let mut rules: Vec<String> = Vec::new();
        for ic in document.interchanges() {
            for r in validate_interchange(&ic, registry) {
                for f in r.findings.iter().filter(|f| f.severity == Severity::Error) {
                    rules.push(format!("{}@{}", f.rule, f.message_segment));
                }
                // No grammar: reported as a warning and forwarded unchecked, never rejected.
                if r.is_unchecked() {
                    rules.push("unchecked".to_string());
                }
                // The conuti files (vendor test messages for FV2510/FV2604) must match the
                // structure of our MIGs: a structure error there is a grammar bug of ours.
                if relative.contains("v2025") || relative.contains("v2026") {
                    let structure: Vec<_> = r
                        .findings
                        .iter()
                        .filter(|f| f.severity == Severity::Error && f.level == Level::Syntax)
                        .filter(|f| f.rule != mako_gateway::grammar::NO_GRAMMAR)
                        .collect();
                    assert!(structure.is_empty(), "{relative}: {structure:#?}");
                }
            }
        }
        // Answer planning never panics either.
        let mut ctx = context("2026-05-12T10:00");
        let _ = plan(&input, &mut ctx).render().unwrap();
        summary.push_str(&format!(
            "{relative}: {}\n",
            if rules.is_empty() {
                "ok".to_string()
            } else {
                rules.join(" ")
            }
        ));
    }
    insta::assert_snapshot!("corpus_findings", summary);
}

#[test]
fn the_version_in_force_is_chosen_by_date() {
    let registry = Registry::embedded();
    let day = |y, m, d| NaiveDate::from_ymd_opt(y, m, d).unwrap();
    assert_eq!(
        registry
            .mig_in_force("ORDERS", day(2025, 9, 30))
            .unwrap()
            .association,
        "1.4a"
    );
    assert_eq!(
        registry
            .mig_in_force("ORDERS", day(2025, 10, 1))
            .unwrap()
            .association,
        "1.4b"
    );
    assert_eq!(
        registry
            .mig_in_force("ORDERS", day(2026, 11, 23))
            .unwrap()
            .association,
        "1.4c"
    );
    assert_eq!(
        registry
            .mig_in_force("ORDRSP", day(2026, 4, 1))
            .unwrap()
            .association,
        "1.4b"
    );
    assert_eq!(
        registry
            .mig_in_force("APERAK", day(2026, 10, 1))
            .unwrap()
            .association,
        "2.2"
    );
    assert_eq!(
        registry
            .mig_in_force("CONTRL", day(2030, 1, 1))
            .unwrap()
            .association,
        "2.0b"
    );
    // Two versions are loaded at once: a message in the old one is still read.
    assert!(registry.mig("ORDERS", "1.4b").is_some() && registry.mig("ORDERS", "1.4c").is_some());
    // Versions without a machine-readable MIG say so.
    assert!(!registry
        .mig("ORDERS", "1.4c")
        .unwrap()
        .unverified
        .is_empty());
}

/// The ORDRSP 19133 sample moved to FV2610 (ORDRSP 1.4c, dated 2026-11-23), with `edit`
/// applied.
fn ordrsp_19133_fv2610(edit: impl Fn(String) -> String) -> Vec<u8> {
    let bytes =
        std::fs::read(manifest().join("samples/inbound/ordrsp_19133_a20_accepted.edi")).unwrap();
    let text: String = bytes.iter().map(|&b| b as char).collect();
    let text = text
        .replace("ORDRSP:D:10A:UN:1.4b", "ORDRSP:D:10A:UN:1.4c")
        .replace("DTM+137:202605120931", "DTM+137:202611230931")
        .replace("260512:0931", "261123:0931");
    fix_unt(&edit(text)).chars().map(|c| c as u8).collect()
}

#[test]
fn a_partner_message_breaking_only_unverified_rules_is_not_rejected() {
    // ORDRSP MIG 1.4c was not read (only differences to 1.4b from extractions): a segment our
    // copy does not know and a surplus data element are warnings, not a CONTRL.
    let bytes = ordrsp_19133_fv2610(|t| {
        t.replace("BGM+Z91+NB0000000002A'", "BGM+Z91+NB0000000002A+9'ALI+DE'")
    });
    let mut ctx = context("2026-11-23T10:00");
    let answer = plan(&bytes, &mut ctx);
    let report = &answer.reports[0];
    let rules: Vec<(&str, Severity)> = report
        .findings
        .iter()
        .filter(|f| f.rule != "grammar_unverified")
        .map(|f| (f.rule, f.severity))
        .collect();
    assert_eq!(
        rules,
        vec![
            ("too_many_elements", Severity::Warning),
            ("unexpected_segment", Severity::Warning),
        ]
    );
    assert!(!report.has_errors());
    assert!(
        report.validated.is_some(),
        "read as far as it matched the MIG"
    );
    assert!(answer.contrl.is_none());
    let aperak = answer.aperak.expect("a positive APERAK");
    assert_eq!(aperak.messages[0].segments[0].elements[0], vec!["312"]);
}

#[test]
fn a_partner_message_breaking_a_verified_rule_is_still_rejected() {
    // AHB ORDRSP 1.1b (FV2610) was read from its extraction: a missing RFF+ON is an AHB error.
    let bytes = ordrsp_19133_fv2610(|t| t.replace("RFF+ON:MG10000000001'", ""));
    let mut ctx = context("2026-11-23T10:00");
    let answer = plan(&bytes, &mut ctx);
    let errors: Vec<&str> = answer.reports[0]
        .errors(Level::Application)
        .map(|f| f.rule)
        .collect();
    assert_eq!(errors, vec!["required_by_ahb"]);
    let aperak: String = answer.render().unwrap()[0]
        .iter()
        .map(|&c| c as char)
        .collect();
    assert!(aperak.contains("BGM+313+"), "{aperak}");
    // A market partner ID with a wrong check digit is an error even under unverified rules:
    // the ID rules do not depend on the format version.
    let bytes = ordrsp_19133_fv2610(|t| t.replace("NAD+MS+9900000000011", "NAD+MS+9900000000012"));
    let answer = plan(&bytes, &mut context("2026-11-23T10:00"));
    let errors: Vec<&str> = answer.reports[0]
        .errors(Level::Application)
        .map(|f| f.rule)
        .collect();
    assert_eq!(errors, vec!["format_by_ahb"]);
    // The same stray segment as above in a message of a verified MIG (ORDRSP 1.4b) is a
    // syntax error and answered with a CONTRL.
    let bytes =
        std::fs::read(manifest().join("samples/inbound/ordrsp_19133_a20_accepted.edi")).unwrap();
    let text: String = bytes.iter().map(|&b| b as char).collect();
    let text = fix_unt(&text.replace("BGM+Z91+NB0000000002A'", "BGM+Z91+NB0000000002A'ALI+DE'"));
    let bytes: Vec<u8> = text.chars().map(|c| c as u8).collect();
    let answer = plan(&bytes, &mut context("2026-05-12T10:00"));
    let errors: Vec<&str> = answer.reports[0]
        .errors(Level::Syntax)
        .map(|f| f.rule)
        .collect();
    assert_eq!(errors, vec!["unexpected_segment"]);
    assert!(answer.contrl.is_some());
}
