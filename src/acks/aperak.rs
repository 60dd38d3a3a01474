//! APERAK out: the application answer to each business message (APERAK MIG 2.1i / 2.2, AHB
//! 1.0 / 1.1).
//!
//! Layout: `BGM+312` (Anerkennungsmeldung) or `BGM+313` (Verarbeitbarkeitsfehlermeldung),
//! `DTM+137`; SG2 `RFF+ACE` (UNB DE0020 of the received interchange) with `DTM+171` (its
//! date), `RFF+AGO` (BGM DE1004 of the received message); SG3 `NAD+MS` (us) and `NAD+MR`
//! (the partner); for 313 one SG4 per error: `ERC+<Z-code>`, in 2.1i SG5 `RFF+ACW` (the UNH
//! DE0062 of the received message), SG5 `RFF+AGO` and `FTX+Z02` (the place of the error in the
//! AHB's words, Muss for Z21/Z29/Z35/Z38/Z39/Z40/Z41, APERAK AHB 1.1 §3). The CTA/COM contact
//! segments are left out: optional in 2.1i, removed in 2.2.

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
    build_aperak_owned(envelope, interchange, reports, rejected_by_contrl, context).0
}

/// [`build_aperak`], and the positions (in the interchange, from 0) of the messages that
/// passed the gateway's checks but whose APERAK the supplier core owes
/// ([`super::AperakOwner::Core`]): they get none here.
pub(crate) fn build_aperak_owned(
    envelope: &ReceivedEnvelope,
    interchange: &Interchange<'_, '_>,
    reports: &[MessageReport<'_>],
    rejected_by_contrl: &[String],
    context: &mut AckContext<'_>,
) -> (Option<OwnedInterchange>, Vec<usize>) {
    let identifier = aperak_identifier(context);
    let mut messages = Vec::new();
    let mut owed_by_core = Vec::new();
    for (position, message) in interchange.messages().enumerate() {
        let message_type = message.message_type();
        if NOT_ANSWERED.contains(&message_type.as_ref()) {
            continue;
        }
        let Some(report) =
            super::report_index(reports, position, &message.reference()).map(|at| &reports[at])
        else {
            continue;
        };
        // A message with syntax errors is answered by the CONTRL only (APERAK AHB 1.1 §2.5).
        if report.errors(Level::Syntax).next().is_some()
            || rejected_by_contrl.contains(&report.reference)
        {
            continue;
        }
        let errors: Vec<ErrorToReport> = report
            .findings
            .iter()
            .filter(|f| f.severity == Severity::Error && f.level == Level::Application)
            .filter_map(|f| {
                Some(ErrorToReport {
                    code: f.aperak_code?,
                    place: place_of(f.message_segment, &f.tag, f.element, f.component),
                    text: format!("{} [{}]", f.message, f.reference),
                })
            })
            .take(MAX_ERRORS)
            .collect();
        // One APERAK per Geschäftsvorfall (APERAK AHB 1.1 §2.5): when the core owes it, the
        // gateway sends none of its own for a message it found nothing wrong with.
        if errors.is_empty()
            && context.processing.aperak_owner(&message) == super::AperakOwner::Core
        {
            owed_by_core.push(position);
            continue;
        }
        messages.push(aperak_message(
            envelope,
            &message,
            &errors,
            &identifier,
            context,
        ));
    }
    if messages.is_empty() {
        return (None, owed_by_core);
    }
    (
        Some(OwnedInterchange {
            header: answer_header(envelope, context),
            messages,
        }),
        owed_by_core,
    )
}

/// One error of a negative APERAK: its ERC code, where it is, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorToReport {
    /// The BDEW error code (ERC DE9321, `Z10`…`Z44`).
    pub code: &'static str,
    /// Where, as `Segment 5 LOC (DE 2)` (empty: the message as a whole).
    pub place: String,
    /// What is wrong.
    pub text: String,
}

fn place_of(segment: usize, tag: &str, element: Option<usize>, component: Option<usize>) -> String {
    match (element, component) {
        (Some(e), Some(c)) => format!("Segment {segment} {tag} (DE {e}:{c})"),
        (Some(e), None) => format!("Segment {segment} {tag} (DE {e})"),
        _ => format!("Segment {segment} {tag}"),
    }
}

/// The APERAK for one received message, asked for by the supplier core: positive (`BGM+312`)
/// without `errors`, else negative (`BGM+313`) with one error group each (at most 20).
pub fn build_requested_aperak(
    envelope: &ReceivedEnvelope,
    message: &crate::edifact::Message<'_, '_>,
    errors: &[ErrorToReport],
    context: &mut AckContext<'_>,
) -> OwnedInterchange {
    let identifier = aperak_identifier(context);
    let errors = &errors[..errors.len().min(MAX_ERRORS)];
    let aperak = aperak_message(envelope, message, errors, &identifier, context);
    OwnedInterchange {
        header: answer_header(envelope, context),
        messages: vec![aperak],
    }
}

fn aperak_identifier(context: &AckContext<'_>) -> MessageIdentifier {
    let version = context
        .registry
        .mig_in_force("APERAK", context.now.date())
        .map_or("2.1i".to_string(), |m| m.association.clone());
    MessageIdentifier::parse(&format!("APERAK:D:07B:UN:{version}")).expect("valid identifier")
}

/// The APERAK message answering `message`: 312 without `errors`, 313 with them.
fn aperak_message(
    envelope: &ReceivedEnvelope,
    message: &crate::edifact::Message<'_, '_>,
    errors: &[ErrorToReport],
    identifier: &MessageIdentifier,
    context: &mut AckContext<'_>,
) -> OutboundMessage {
    let version = identifier.association.as_str();
    let agency = |id: &str| {
        // NAD DE3055: 293 BDEW, 332 DVGW, 9 GS1 (APERAK MIG SG3 NAD).
        crate::edifact::PartnerQualifier::for_id(id)
            .nad_agency()
            .to_string()
    };
    let document_number = message
        .body()
        .find(|s| s.is(b"BGM"))
        .map(|s| super::copyable(&s.value(2, 1)))
        .unwrap_or_default();
    {
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
        let message_reference = super::copyable(&message.reference());
        for e in errors {
            segments.push(OwnedSegment::new("ERC").composite([e.code]));
            // MIG 2.1i SG4 nested SG5 "Referenznummer der Nachricht" (Nr 00014, status R):
            // `RFF+ACW` with the UNH DE0062 of the message in error, before the SG5 with
            // `RFF+AGO`; both independent examples carry it (conuti maco-edi-testfiles APERAK
            // Z10/Z14/Z17/Z33/Z43). APERAK AHB 1.1 (2.2) has no SG5 ACW any more: the message is
            // named by SG2 RFF+AGO there.
            if version == "2.1i" {
                segments
                    .push(OwnedSegment::new("RFF").composite(["ACW", message_reference.as_str()]));
            }
            segments.push(OwnedSegment::new("RFF").composite(["AGO", document_number.as_str()]));
            let text = if e.place.is_empty() {
                e.text.clone()
            } else {
                format!("{}: {}", e.place, e.text)
            };
            segments.push(
                OwnedSegment::new("FTX")
                    .simple("Z02")
                    .empty()
                    .empty()
                    .composite([ftx_text(&text)]),
            );
        }
        OutboundMessage {
            reference: context.references.next_reference(),
            identifier: identifier.clone(),
            segments,
        }
    }
}
