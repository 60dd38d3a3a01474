//! Acknowledgements both ways: the CONTRL and APERAK the gateway sends for received
//! interchanges, reading the ones partners send, matching them to what we sent, and their
//! deadlines.

mod common;

use std::path::Path;

use chrono::{NaiveDate, NaiveDateTime};
use common::{corpus_dir, edi_files};
use mako_gateway::acks::{
    match_acknowledgement, plan, plan_parsed, read_acknowledgements, read_envelope,
    read_envelope_parsed, AckContext, AckMatch, Acknowledgement, Calendar, ContrlPolicy, Deadline,
    DeadlineRules, SentMessage,
};
use mako_gateway::edifact::{parse, parse_lenient, ReferenceSequence, Writer};
use mako_gateway::grammar::Registry;

fn context(policy: ContrlPolicy) -> AckContext<'static> {
    AckContext {
        registry: Registry::embedded(),
        now: at(2026, 5, 12, 10, 0),
        contrl_policy: policy,
        references: ReferenceSequence::new("ACK", 1).unwrap(),
        processing: &mako_gateway::acks::NoProcessingCheck,
    }
}

fn at(y: i32, m: u32, d: u32, h: u32, min: u32) -> NaiveDateTime {
    NaiveDate::from_ymd_opt(y, m, d)
        .unwrap()
        .and_hms_opt(h, min, 0)
        .unwrap()
}

fn sample(path: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("samples")
            .join(path),
    )
    .unwrap()
}

/// The segments of the first message of the first answer, as text lines without UNA.
fn answer_segments(answer: &mako_gateway::edifact::OwnedInterchange) -> Vec<String> {
    let bytes = Writer::new(answer.header.syntax)
        .write_interchange(answer)
        .unwrap();
    let text: String = bytes.iter().map(|&b| b as char).collect();
    text[9..]
        .split('\'')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

const ORDRSP: &str = "UNA:+.? 'UNB+UNOC:3+9900000000011:500+9900000000003:500+260512:0930+NB1'UNH+M1+ORDRSP:D:10A:UN:1.4b'BGM+Z91+D1'DTM+137:202605120930?+00:303'RFF+ON:MG10000000001'RFF+Z13:19133'AJT+A20+E_0595'NAD+MS+9900000000011::293'NAD+MR+9900000000003::293'UNS+S'UNT+10+M1'UNZ+1+NB1'";

#[test]
fn a_clean_interchange_gets_no_contrl_in_strom_and_a_positive_one_in_gas() {
    let mut ctx = context(ContrlPolicy::OnErrors);
    assert!(plan(ORDRSP.as_bytes(), &mut ctx).contrl.is_none());
    let mut gas = context(ContrlPolicy::Always);
    let contrl = plan(ORDRSP.as_bytes(), &mut gas)
        .contrl
        .expect("gas answers every interchange");
    let segs = answer_segments(&contrl);
    assert_eq!(
        segs[0],
        "UNB+UNOC:3+9900000000003:500+9900000000011:500+260512:1000+ACK00000001"
    );
    assert_eq!(segs[2], "UCI+NB1+9900000000011:500+9900000000003:500+7");
}

#[test]
fn a_wrong_segment_count_is_answered_with_ucm_29_on_unt() {
    let bad = ORDRSP.replace("UNT+10+M1", "UNT+11+M1");
    let mut ctx = context(ContrlPolicy::OnErrors);
    let answer = plan(bad.as_bytes(), &mut ctx);
    let segs = answer_segments(answer.contrl.as_ref().unwrap());
    // Strom: the Syntaxfehlermeldung rejects the interchange (UCI 4), UCM says where.
    assert_eq!(segs[2], "UCI+NB1+9900000000011:500+9900000000003:500+4");
    assert_eq!(segs[3], "UCM+M1+ORDRSP:D:10A:UN:1.4b+4+29+UNT");
    // Gas answers the same interchange with UCI 7 and the message rejected by UCM 4.
    let mut gas = context(ContrlPolicy::Always);
    let gas_answer = plan(bad.as_bytes(), &mut gas);
    let gas_segs = answer_segments(gas_answer.contrl.as_ref().unwrap());
    assert_eq!(gas_segs[2], "UCI+NB1+9900000000011:500+9900000000003:500+7");
    assert_eq!(gas_segs[3], "UCM+M1+ORDRSP:D:10A:UN:1.4b+4+29+UNT");
    assert!(
        answer.aperak.is_none(),
        "the rejected message gets no APERAK"
    );
}

#[test]
fn a_bad_character_is_answered_with_ucs_and_ucd_21() {
    let bad = ORDRSP.replace("BGM+Z91+D1", "BGM+Z91+D\u{1}1");
    let mut ctx = context(ContrlPolicy::OnErrors);
    let answer = plan(bad.as_bytes(), &mut ctx);
    let segs = answer_segments(answer.contrl.as_ref().unwrap());
    assert_eq!(segs[3], "UCM+M1+ORDRSP:D:10A:UN:1.4b+4");
    assert_eq!(segs[4], "UCS+2");
    assert_eq!(segs[5], "UCD+21+3");
}

#[test]
fn an_unreadable_interchange_is_rejected_whole() {
    let broken = ORDRSP.trim_end_matches('\'');
    let mut ctx = context(ContrlPolicy::OnErrors);
    let answer = plan(broken.as_bytes(), &mut ctx);
    let segs = answer_segments(answer.contrl.as_ref().unwrap());
    // UCI action 4 (rejected) with syntax error 12 naming UNZ: the whole interchange counts
    // as not received (APERAK AHB 1.1 §1.4).
    assert_eq!(
        segs[2],
        "UCI+NB1+9900000000011:500+9900000000003:500+4+12+UNZ"
    );
    assert!(answer.aperak.is_none());
}

#[test]
fn no_contrl_on_a_contrl_even_a_broken_one() {
    let contrl = sample("inbound/contrl_uci4_rejected.edi");
    let mut ctx = context(ContrlPolicy::Always);
    let answer = plan(&contrl, &mut ctx);
    assert!(answer.contrl.is_none() && answer.aperak.is_none());
    let text: String = contrl.iter().map(|&b| b as char).collect();
    let broken = text.replace("UNT+3+1", "UNT+9+1");
    let answer = plan(broken.as_bytes(), &mut ctx);
    assert!(answer.contrl.is_none(), "never a CONTRL on a CONTRL");
}

#[test]
fn an_aperak_is_answered_by_nobody() {
    let aperak = sample("inbound/aperak_313_z29.edi");
    let mut ctx = context(ContrlPolicy::OnErrors);
    let answer = plan(&aperak, &mut ctx);
    assert!(answer.contrl.is_none() && answer.aperak.is_none());
}

#[test]
fn the_aperak_references_the_received_interchange_and_message() {
    let mut ctx = context(ContrlPolicy::OnErrors);
    let answer = plan(ORDRSP.as_bytes(), &mut ctx);
    let segs = answer_segments(answer.aperak.as_ref().unwrap());
    let body: Vec<&str> = segs.iter().map(String::as_str).skip(2).take(8).collect();
    assert_eq!(
        body,
        [
            "BGM+312+ACK00000001",
            "DTM+137:202605121000?+00:303",
            "RFF+ACE:NB1",
            "DTM+171:202605120930?+00:303",
            "RFF+AGO:D1",
            "NAD+MS+9900000000003::293",
            "NAD+MR+9900000000011::293",
            "UNT+9+ACK00000002",
        ]
    );
}

fn sent() -> Vec<SentMessage> {
    vec![SentMessage {
        interchange_reference: "MG10000000001".into(),
        message_reference: "1".into(),
        document_number: "MG10000000001".into(),
        order: Some("gfr_1".into()),
        pass_through: None,
    }]
}

#[test]
fn a_partners_contrl_rejecting_our_interchange_marks_our_order() {
    let bytes = sample("inbound/contrl_uci4_rejected.edi");
    let doc = parse(&bytes).unwrap();
    let acks = read_acknowledgements(&doc.interchanges().next().unwrap());
    assert_eq!(
        acks,
        vec![Acknowledgement::Contrl {
            interchange_reference: "MG10000000001".into(),
            rejected: true,
            interchange_code: Some(29),
            rejected_messages: vec![],
        }]
    );
    match match_acknowledgement(&acks[0], "9900000000011", sent().as_slice()) {
        AckMatch::Rejected {
            messages,
            codes,
            reason,
        } => {
            assert_eq!(messages[0].order.as_deref(), Some("gfr_1"));
            assert_eq!(codes, vec!["29"]);
            assert!(reason.contains("29"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_partners_negative_aperak_carries_code_and_text() {
    let bytes = sample("inbound/aperak_313_z29.edi");
    let doc = parse(&bytes).unwrap();
    let acks = read_acknowledgements(&doc.interchanges().next().unwrap());
    match match_acknowledgement(&acks[0], "9900000000011", sent().as_slice()) {
        AckMatch::Rejected { codes, reason, .. } => {
            assert_eq!(codes, vec!["Z29"]);
            assert_eq!(
                reason,
                "Z29 Erforderliche Angabe für diesen Anwendungsfall fehlt: Segment 12 LOC: Marktlokation fehlt"
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn an_acknowledgement_for_something_we_never_sent_goes_to_clearing() {
    let bytes = sample("inbound/aperak_313_z29.edi");
    let doc = parse(&bytes).unwrap();
    let acks = read_acknowledgements(&doc.interchanges().next().unwrap());
    let nothing: Vec<SentMessage> = Vec::new();
    match match_acknowledgement(&acks[0], "9900000000011", nothing.as_slice()) {
        AckMatch::Unmatched { reason } => assert!(reason.contains("MG10000000001"), "{reason}"),
        other => panic!("{other:?}"),
    }
    // A positive CONTRL (gas) for our interchange is an acceptance.
    let ack = Acknowledgement::Contrl {
        interchange_reference: "MG10000000001".into(),
        rejected: false,
        interchange_code: None,
        rejected_messages: vec![],
    };
    assert!(matches!(
        match_acknowledgement(&ack, "9900000000011", sent().as_slice()),
        AckMatch::Accepted { .. }
    ));
}

#[test]
fn deadlines_of_our_answers_and_overdue_answers_of_partners() {
    let (rules, calendar) = (DeadlineRules::embedded(), Calendar::embedded());
    // An ORDRSP received on Wednesday 23.12.2026 09:00 UTC: 24., 25., 26. are no working days,
    // 27. is a Sunday: the APERAK is due Monday 28.12. 12:00 German time (11:00 UTC).
    assert_eq!(
        rules.due(Deadline::Aperak, "ORDRSP", at(2026, 12, 23, 9, 0), calendar),
        Some(at(2026, 12, 28, 11, 0))
    );
    // We sent an ORDERS at 09:00: the partner's APERAK is overdue after 45 minutes.
    assert!(!rules.is_overdue(
        Deadline::Aperak,
        "ORDERS",
        at(2026, 5, 12, 9, 0),
        at(2026, 5, 12, 9, 45),
        calendar
    ));
    assert!(rules.is_overdue(
        Deadline::Aperak,
        "ORDERS",
        at(2026, 5, 12, 9, 0),
        at(2026, 5, 12, 9, 46),
        calendar
    ));
}

/// A business check as the order logic will provide it: answers referring to an order we do
/// not know get ERC Z33 ("Referenziertes Geschäftsvorfall-Tupel nicht vorhanden").
#[derive(Debug)]
struct KnownOrders(Vec<&'static str>);

impl mako_gateway::acks::ProcessingCheck for KnownOrders {
    fn check(
        &self,
        message: &mako_gateway::edifact::Message<'_, '_>,
    ) -> Vec<mako_gateway::acks::ProcessingError> {
        message
            .segments()
            .enumerate()
            .filter(|(_, s)| s.is(b"RFF") && s.value(1, 1) == "ON")
            .filter(|(_, s)| !self.0.contains(&s.value(1, 2).as_ref()))
            .map(|(i, s)| mako_gateway::acks::ProcessingError {
                code: "Z33",
                text: format!("order {} is unknown", s.value(1, 2)),
                segment: i,
            })
            .collect()
    }
}

#[test]
fn an_answer_to_an_unknown_order_gets_aperak_z33_and_deadlines_are_planned() {
    let known = KnownOrders(vec!["MG99999999999"]);
    let mut ctx = context(ContrlPolicy::OnErrors);
    ctx.processing = &known;
    let answer = plan(ORDRSP.as_bytes(), &mut ctx);
    let segs = answer_segments(answer.aperak.as_ref().unwrap());
    assert!(
        segs.contains(&"BGM+313+ACK00000001".to_string()),
        "{segs:?}"
    );
    assert!(segs.contains(&"ERC+Z33".to_string()), "{segs:?}");
    assert!(
        segs.iter()
            .any(|s| s.starts_with("FTX+Z02+++Segment 4 RFF?: order MG10000000001 is unknown")),
        "{segs:?}"
    );
    // ORDRSP received Tuesday 12.05.2026 10:00 UTC: APERAK by Wednesday 12:00 German time.
    assert_eq!(answer.aperak_due, Some(at(2026, 5, 13, 10, 0)));
    assert_eq!(answer.contrl_due, None);
}

/// APERAK MIG 2.1i: every SG4 error group starts its references with the SG5 "Referenznummer
/// der Nachricht" (status R), `RFF+ACW` = the UNH DE0062 of the message in error, before the
/// SG5 `RFF+AGO`; the gateway wrote only `RFF+AGO`. APERAK 2.2 (AHB 1.1) has no SG5 ACW.
#[test]
fn regression_a_negative_aperak_in_2_1i_names_the_message_in_sg5_rff_acw() {
    let known = KnownOrders(vec!["MG99999999999"]);
    let mut ctx = context(ContrlPolicy::OnErrors);
    ctx.processing = &known;
    let answer = plan(ORDRSP.as_bytes(), &mut ctx);
    let segs = answer_segments(answer.aperak.as_ref().unwrap());
    let erc = segs.iter().position(|s| s == "ERC+Z33").expect("ERC");
    assert_eq!(segs[erc + 1], "RFF+ACW:M1", "{segs:?}");
    assert_eq!(segs[erc + 2], "RFF+AGO:D1", "{segs:?}");
    // In 2.2 (from 2026-10-01) the message is named in SG2 RFF+AGO and SG5 has no ACW.
    let mut ctx = context(ContrlPolicy::OnErrors);
    ctx.processing = &known;
    ctx.now = at(2026, 11, 23, 10, 0);
    let answer = plan(ORDRSP.as_bytes(), &mut ctx);
    let segs = answer_segments(answer.aperak.as_ref().unwrap());
    assert!(segs.iter().all(|s| !s.starts_with("RFF+ACW")), "{segs:?}");
    // Our own 2.1i APERAK passes the 2.1i rules (SG5 ACW required when an ERC is present).
    let mut ctx = context(ContrlPolicy::OnErrors);
    ctx.processing = &known;
    let bytes = plan(ORDRSP.as_bytes(), &mut ctx)
        .render()
        .unwrap()
        .remove(0);
    let doc = parse(&bytes).unwrap();
    let ic = doc.interchanges().next().unwrap();
    let report = mako_gateway::grammar::validate_interchange(&ic, Registry::embedded()).remove(0);
    assert!(
        !report.has_errors(),
        "{:?}",
        report
            .findings
            .iter()
            .map(|f| &f.message)
            .collect::<Vec<_>>()
    );
}

/// Found by the fuzzer: a UNB whose sender holds control characters and a byte UNOC cannot
/// carry made the CONTRL unwritable. Values copied into answers are made writable.
#[test]
fn regression_answer_to_unb_with_control_characters_is_writable() {
    let input: &[u8] = &[
        85, 78, 66, 43, 85, 78, 79, 67, 58, 51, 43, 0, 0, 0, 0, 0, 0, 0, 0, 233, 52, 48, 49, 58,
        51, 52, 53, 48, 48, 48, 48, 50, 43, 51, 58, 49, 52, 43, 57, 57, 48, 48, 51, 53, 55, 48, 48,
        48, 48, 43, 57, 57, 48, 50, 51, 49, 55, 48, 48, 48, 48, 48, 39, 10, 85, 48, 78,
    ];
    let mut ctx = context(ContrlPolicy::Always);
    let answer = plan(input, &mut ctx);
    for bytes in answer.render().expect("answers are always writable") {
        parse(&bytes).expect("and parse");
    }
}

/// Found in review: an unreadable interchange was taken for a CONTRL when its free text held
/// `CONTRL:`; now only a UNH-style `+CONTRL:` with the interchange's own delimiters counts.
#[test]
fn regression_contrl_in_free_text_does_not_suppress_the_contrl() {
    let broken = ORDRSP
        .replace("UNS+S'", "FTX+AAP+++siehe CONTRL?: 29'UNS+S'")
        .trim_end_matches('\'')
        .to_string();
    let mut ctx = context(ContrlPolicy::OnErrors);
    assert!(plan(broken.as_bytes(), &mut ctx).contrl.is_some());
    let contrl_with_other_delimiters =
        "UNA|^.? 'UNB^UNOC|3^9900000000011|500^9900000000003|500^260512|0930^NB9'UNH^1^CONTRL|D|3|UN|2.0b'UCI^X^A|500^B|500^4";
    assert!(plan(contrl_with_other_delimiters.as_bytes(), &mut ctx)
        .contrl
        .is_none());
}

/// Found when `claims_contrl` moved to the shared tokenizer: it took any release character
/// before `+CONTRL:` as releasing the separator, so a released release character (`??+`) hid
/// the CONTRL header of an unreadable CONTRL interchange and it was answered with a CONTRL.
#[test]
fn regression_contrl_after_a_released_release_character_is_not_answered() {
    let unreadable_contrl = "UNA:+.? 'UNB+UNOC:3+9900000000011:500+9900000000003:500+260512:0930+NB9'UNH+1??+CONTRL:D:3:UN:2.0b'UCI+X+A:500+B:500+4";
    let mut ctx = context(ContrlPolicy::OnErrors);
    assert!(plan(unreadable_contrl.as_bytes(), &mut ctx)
        .contrl
        .is_none());
    // One release character releases the separator: not a CONTRL header, so it is answered.
    let released = unreadable_contrl.replace("1??+CONTRL", "1?+CONTRL");
    assert!(plan(released.as_bytes(), &mut ctx).contrl.is_some());
}

/// The parse-once forms (`plan_parsed`, `read_envelope_parsed`) answer exactly as the byte forms
/// do: on every sample, every corpus file, and broken variants that parse with errors or not
/// at all.
#[test]
fn the_parse_once_forms_answer_as_the_byte_forms() {
    let samples = Path::new(env!("CARGO_MANIFEST_DIR")).join("samples");
    let mut inputs: Vec<Vec<u8>> = edi_files(&samples)
        .iter()
        .chain(
            corpus_dir()
                .map(|d| edi_files(&d))
                .unwrap_or_default()
                .iter(),
        )
        .map(|path| std::fs::read(path).unwrap())
        .collect();
    for broken in [
        ORDRSP.replace("UNT+10+M1", "UNT+11+M1"),
        ORDRSP.replace("BGM+Z91+D1", "BGM+Z91+D\u{1}1"),
        ORDRSP.trim_end_matches('\'').to_string(),
        ORDRSP.replace("UNB+UNOC:3", "UNB+UNOW:4"),
        ORDRSP.replace("9900000000011:500", "99000000?*00011:500"),
        // Version 4 with a repetition separator, and a sender that is no UNOC text.
        ORDRSP.replace(
            "UNA:+.? 'UNB+UNOC:3+9900000000011:500",
            "UNA:+.?*'UNB+UNOW:4+99000000*0\u{fc}011:500",
        ),
    ] {
        inputs.push(broken.into_bytes());
    }
    let (mut parsed_documents, mut unreadable) = (0, 0);
    for input in &inputs {
        let parsed = parse_lenient(input);
        match &parsed.document {
            Some(document) => {
                parsed_documents += 1;
                assert_eq!(read_envelope_parsed(document), read_envelope(input));
            }
            None => unreadable += 1,
        }
        for policy in [ContrlPolicy::OnErrors, ContrlPolicy::Always] {
            let bytes_form = plan(input, &mut context(policy));
            let parsed_form = plan_parsed(input, &parsed, &mut context(policy));
            assert_eq!(parsed_form.syntax_errors, bytes_form.syntax_errors);
            assert_eq!(parsed_form.contrl_due, bytes_form.contrl_due);
            assert_eq!(parsed_form.aperak_due, bytes_form.aperak_due);
            assert_eq!(parsed_form.render().unwrap(), bytes_form.render().unwrap());
            let findings = |p: &mako_gateway::acks::AckPlan<'_>| {
                p.reports
                    .iter()
                    .map(|r| (r.reference.clone(), r.findings.clone()))
                    .collect::<Vec<_>>()
            };
            assert_eq!(findings(&parsed_form), findings(&bytes_form));
        }
    }
    assert!(
        parsed_documents > 10 && unreadable > 0,
        "{parsed_documents} {unreadable}"
    );
}
