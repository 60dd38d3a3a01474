//! APERAK out: the application answer to each business message (APERAK MIG 2.1i / 2.2, AHB
//! 1.0 / 1.1).
//!
//! Layout: `BGM+312` (Anerkennungsmeldung) or `BGM+313` (Verarbeitbarkeitsfehlermeldung),
//! `DTM+137`; SG2 `RFF+ACE` (UNB DE0020 of the received interchange) with `DTM+171` (its
//! date), `RFF+AGO` (BGM DE1004 of the received message); SG3 `NAD+MS` (us) and `NAD+MR`
//! (the partner); for 313 one SG4 per error: `ERC+<Z-code>`, SG5 `RFF+AGO` and `FTX+Z02` (the
//! place of the error in the AHB's words, Muss for Z21/Z29/Z35/Z38/Z39/Z40/Z41, APERAK AHB 1.1
//! §3). The CTA/COM contact segments are left out: optional in 2.1i, removed in 2.2.

use chrono::NaiveDateTime;

use super::{answer_header, AckContext, ReceivedEnvelope};
use crate::edifact::{
    Charset, Interchange, MessageIdentifier, OutboundMessage, OwnedInterchange, OwnedSegment,
};
use crate::grammar::{Level, MessageReport, Severity};

/// The BDEW message types that are no business messages and never get an APERAK.
const NOT_ANSWERED: &[&str] = &["APERAK", "CONTRL"];

/// Most characters of an FTX text component (C108 DE4440 an..512).
const FTX_TEXT_LEN: usize = 512;

/// Most SG4 error groups written per APERAK: the first errors are the useful ones, and a
/// partner's long list of follow-up errors helps nobody.
const MAX_ERRORS: usize = 20;

fn date_303(at: NaiveDateTime) -> String {
    // Format 303 with the UTC zone `+00` (BDEW condition [931]); the writer escapes the `+`.
    format!("{}+00", at.format("%Y%m%d%H%M"))
}

/// Text that UNOC can carry, cut to the length FTX allows.
fn ftx_text(text: &str) -> String {
    let mut out: String = text
        .chars()
        .map(|c| {
            if Charset::Unoc.encode(c.encode_utf8(&mut [0; 4])).is_ok() {
                c
            } else {
                '?'
            }
        })
        .collect();
    if out.chars().count() > FTX_TEXT_LEN {
        out = out.chars().take(FTX_TEXT_LEN).collect();
    }
    out
}

/// Builds the APERAKs for the business messages of a received interchange: one per message
/// without syntax errors (those are answered by the CONTRL; `rejected_by_contrl` names them),
/// positive unless an AHB rule was broken. `None` when no message needs one.
pub fn build_aperak(
    envelope: &ReceivedEnvelope,
    interchange: &Interchange<'_, '_>,
    reports: &[MessageReport<'_>],
    rejected_by_contrl: &[String],
    context: &mut AckContext<'_>,
) -> Option<OwnedInterchange> {
    let version = context
        .registry
        .mig_in_force("APERAK", context.now.date())
        .map_or("2.1i".to_string(), |m| m.association.clone());
    let identifier =
        MessageIdentifier::parse(&format!("APERAK:D:07B:UN:{version}")).expect("valid identifier");
    let agency = |id: &str| {
        // NAD DE3055: 293 BDEW, 332 DVGW, 9 GS1 (APERAK MIG SG3 NAD).
        crate::edifact::PartnerQualifier::for_id(id)
            .nad_agency()
            .to_string()
    };
    let mut messages = Vec::new();
    for message in interchange.messages() {
        let message_type = message.message_type();
        if NOT_ANSWERED.contains(&message_type.as_ref()) {
            continue;
        }
        let Some(report) = reports.iter().find(|r| r.reference == message.reference()) else {
            continue;
        };
        // A message with syntax errors is answered by the CONTRL only (APERAK AHB 1.1 §2.5).
        if report.errors(Level::Syntax).next().is_some()
            || rejected_by_contrl.contains(&report.reference)
        {
            continue;
        }
        let document_number = message
            .body()
            .find(|s| s.is(b"BGM"))
            .map(|s| super::copyable(&s.value(2, 1)))
            .unwrap_or_default();
        let errors: Vec<_> = report
            .findings
            .iter()
            .filter(|f| f.severity == Severity::Error && f.level == Level::Application)
            .filter(|f| f.aperak_code.is_some())
            .take(MAX_ERRORS)
            .collect();
        let mut segments = vec![
            OwnedSegment::new("BGM")
                .simple(if errors.is_empty() { "312" } else { "313" })
                .simple(context.references.next_reference()),
            OwnedSegment::new("DTM").composite([
                "137".to_string(),
                date_303(context.now),
                "303".into(),
            ]),
            OwnedSegment::new("RFF").composite(["ACE", envelope.control_reference.as_str()]),
        ];
        if let Some(prepared) = envelope.prepared {
            segments.push(OwnedSegment::new("DTM").composite([
                "171".to_string(),
                date_303(prepared),
                "303".into(),
            ]));
        }
        // SG2 RFF+AGO (document number of the answered message): for 312 in every version; for
        // 313 only from APERAK 2.2 (AHB 1.1 change history: "SG2 RFF+AGO … added for 313"). In
        // 2.1i a 313 names the message in each error group's SG5 RFF+AGO instead.
        if !document_number.is_empty() && (errors.is_empty() || version != "2.1i") {
            segments.push(OwnedSegment::new("RFF").composite(["AGO", document_number.as_str()]));
        }
        segments.push(OwnedSegment::new("NAD").simple("MS").composite([
            envelope.recipient.id.clone(),
            String::new(),
            agency(&envelope.recipient.id),
        ]));
        segments.push(OwnedSegment::new("NAD").simple("MR").composite([
            envelope.sender.id.clone(),
            String::new(),
            agency(&envelope.sender.id),
        ]));
        for f in errors {
            segments.push(OwnedSegment::new("ERC").composite([f.aperak_code.unwrap_or("Z29")]));
            segments.push(OwnedSegment::new("RFF").composite(["AGO", document_number.as_str()]));
            let place = match (f.element, f.component) {
                (Some(e), Some(c)) => {
                    format!("Segment {} {} (DE {e}:{c})", f.message_segment, f.tag)
                }
                (Some(e), None) => format!("Segment {} {} (DE {e})", f.message_segment, f.tag),
                _ => format!("Segment {} {}", f.message_segment, f.tag),
            };
            segments.push(
                OwnedSegment::new("FTX")
                    .simple("Z02")
                    .empty()
                    .empty()
                    .composite([ftx_text(&format!(
                        "{place}: {} [{}]",
                        f.message, f.reference
                    ))]),
            );
        }
        messages.push(OutboundMessage {
            reference: context.references.next_reference(),
            identifier: identifier.clone(),
            segments,
        });
    }
    if messages.is_empty() {
        return None;
    }
    Some(OwnedInterchange {
        header: answer_header(envelope, context),
        messages,
    })
}
