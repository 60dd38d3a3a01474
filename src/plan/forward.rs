//! The forward feed's pure side: what the core reads about a received message (its segment
//! tree as JSON, the envelope facts) and the APERAK it asks the gateway to send for one.
//!
//! The split of the APERAK checks (APERAK AHB 1.1 §2.5: one APERAK per Geschäftsvorfall): the
//! gateway answers what it can judge itself (format and AHB conformance where it holds the
//! grammar) with a negative APERAK at once; for a forwarded message it found nothing wrong
//! with, the business checks (`Z10` ID unknown, `Z14` object not found, `Z33` referenced case
//! unknown, …) are the core's, so the core asks for the APERAK, positive or negative, through
//! `POST /messages/{id}/aperak` by the deadline.

use chrono::NaiveDateTime;
use serde_json::{json, Value};

use crate::acks::{
    build_requested_aperak, read_envelope_parsed, AckContext, ContrlPolicy, ErrorToReport,
    NoProcessingCheck,
};
use crate::edifact::{parse_lenient, Message, OwnedInterchange, ReferenceSequence};
use crate::grammar::Registry;

/// Most error groups in one requested APERAK (as the gateway writes its own).
pub const MAX_REQUESTED_ERRORS: usize = 20;

/// Why a requested APERAK cannot be built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AperakRequestError {
    /// The journaled interchange no longer reads as one with this message (never expected:
    /// the message was read from it on receipt).
    MessageGone(usize),
    /// The UNB does not name whom to answer.
    NoEnvelope,
}

impl std::fmt::Display for AperakRequestError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AperakRequestError::MessageGone(p) => {
                write!(f, "message {p} of the journaled interchange cannot be read")
            }
            AperakRequestError::NoEnvelope => {
                f.write_str("the journaled interchange's UNB names no sender to answer")
            }
        }
    }
}

impl std::error::Error for AperakRequestError {}

/// An ERC code the core may use: a BDEW APERAK error code we know (`Z10`…`Z44`,
/// [`crate::acks::ERC_CODES`]).
pub fn is_known_error_code(code: &str) -> Option<&'static str> {
    crate::acks::known_erc_code(code).map(|(code, _)| code)
}

/// The APERAK the core asked for: for message `position` of the journaled interchange `raw`,
/// positive without `errors`, negative with them; references from `references`, dated `now`.
pub fn requested_aperak(
    raw: &[u8],
    position: usize,
    errors: &[ErrorToReport],
    now: NaiveDateTime,
    references: &mut ReferenceSequence,
    registry: &Registry,
) -> Result<OwnedInterchange, AperakRequestError> {
    let parsed = parse_lenient(raw);
    let document = parsed
        .document
        .as_ref()
        .ok_or(AperakRequestError::MessageGone(position))?;
    let envelope = read_envelope_parsed(document).ok_or(AperakRequestError::NoEnvelope)?;
    let interchange = document
        .interchanges()
        .next()
        .ok_or(AperakRequestError::MessageGone(position))?;
    let message = interchange
        .messages()
        .nth(position)
        .ok_or(AperakRequestError::MessageGone(position))?;
    let mut context = AckContext {
        registry,
        now,
        contrl_policy: ContrlPolicy::OnErrors,
        references: references.clone(),
        processing: &NoProcessingCheck,
    };
    let built = build_requested_aperak(
        &envelope,
        &message,
        &errors[..errors.len().min(MAX_REQUESTED_ERRORS)],
        &mut context,
    );
    *references = context.references;
    Ok(built)
}

/// What the core reads about message `position` of `raw`: the envelope facts and the message
/// as a segment tree (`[{tag, number, offset, elements: [[component, …], …]}]`, values
/// unescaped and decoded). `None` when the bytes do not hold that message.
pub fn message_view(raw: &[u8], position: usize) -> Option<Value> {
    let parsed = parse_lenient(raw);
    let document = parsed.document.as_ref()?;
    let interchange = document.interchanges().next()?;
    let message = interchange.messages().nth(position)?;
    let envelope = read_envelope_parsed(document);
    Some(json!({
        "interchange": {
            "sender": envelope.as_ref().map(|e| e.sender.id.clone()),
            "recipient": envelope.as_ref().map(|e| e.recipient.id.clone()),
            "reference": envelope.as_ref().map(|e| e.control_reference.clone()),
            "prepared": envelope.as_ref().and_then(|e| e.prepared).map(|p| p.and_utc().to_rfc3339()),
            "syntax": interchange.syntax().to_string(),
            "messages": interchange.messages().len(),
        },
        "segments": segments_json(&message),
    }))
}

fn segments_json(message: &Message<'_, '_>) -> Value {
    Value::Array(
        message
            .segments()
            .map(|s| {
                json!({
                    "tag": s.tag().to_string(),
                    "number": s.number(),
                    "offset": s.offset(),
                    "elements": s
                        .elements()
                        .map(|e| e.components().map(|c| c.text().into_owned()).collect::<Vec<_>>())
                        .collect::<Vec<_>>(),
                })
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSCONS: &[u8] =
        b"UNA:+.? 'UNB+UNOC:3+9900000000011:500+9900000000003:500+261001:0815+R77'\
UNH+M1+MSCONS:D:04B:UN:2.4c'BGM+7+DOC1+9'DTM+137:202610010815?+00:303'RFF+Z13:13017'\
UNT+5+M1'UNZ+1+R77'";

    fn now() -> NaiveDateTime {
        chrono::NaiveDate::from_ymd_opt(2026, 10, 1)
            .unwrap()
            .and_hms_opt(9, 0, 0)
            .unwrap()
    }

    #[test]
    fn a_requested_negative_aperak_answers_the_message_with_the_cores_code() {
        let mut refs = ReferenceSequence::new("MG", 5).unwrap();
        let errors = [ErrorToReport {
            code: "Z14",
            place: String::new(),
            text: "Messlokation unbekannt".into(),
        }];
        let ic =
            requested_aperak(MSCONS, 0, &errors, now(), &mut refs, Registry::embedded()).unwrap();
        assert_eq!(ic.header.recipient.id, "9900000000011");
        assert_eq!(ic.header.sender.id, "9900000000003");
        let text = String::from_utf8(crate::plan::inbound::write(&ic)).unwrap();
        assert!(text.contains("BGM+313+"), "{text}");
        assert!(text.contains("RFF+ACE:R77'"), "{text}");
        assert!(
            text.contains("ERC+Z14'RFF+AGO:DOC1'FTX+Z02+++Messlokation unbekannt'"),
            "{text}"
        );
        // The references came from the sequence, which moved on.
        assert!(refs.next_reference() != "MG5");
    }

    #[test]
    fn a_requested_positive_aperak_is_an_anerkennungsmeldung() {
        let mut refs = ReferenceSequence::new("MG", 1).unwrap();
        let ic = requested_aperak(MSCONS, 0, &[], now(), &mut refs, Registry::embedded()).unwrap();
        let text = String::from_utf8(crate::plan::inbound::write(&ic)).unwrap();
        assert!(
            text.contains("BGM+312+") && text.contains("RFF+AGO:DOC1'"),
            "{text}"
        );
        assert!(!text.contains("ERC+"), "{text}");
    }

    #[test]
    fn a_position_outside_the_interchange_is_an_error_not_a_panic() {
        let mut refs = ReferenceSequence::new("MG", 1).unwrap();
        assert_eq!(
            requested_aperak(MSCONS, 3, &[], now(), &mut refs, Registry::embedded()),
            Err(AperakRequestError::MessageGone(3))
        );
        assert!(message_view(MSCONS, 3).is_none());
    }

    #[test]
    fn the_view_shows_envelope_and_segments() {
        let view = message_view(MSCONS, 0).unwrap();
        assert_eq!(view["interchange"]["sender"], "9900000000011");
        assert_eq!(view["segments"][0]["tag"], "UNH");
        assert_eq!(view["segments"][2]["elements"][0][1], "202610010815+00");
        assert_eq!(view["segments"][3]["elements"][0], json!(["Z13", "13017"]));
    }

    #[test]
    fn only_known_error_codes_are_accepted() {
        assert_eq!(is_known_error_code("Z33"), Some("Z33"));
        assert_eq!(is_known_error_code("Z99"), None);
        assert_eq!(is_known_error_code("z33"), None);
        for code in ["Z10", "Z33", "Z44"] {
            assert_ne!(
                crate::acks::erc_meaning(code),
                "unbekannter Fehlercode",
                "{code}"
            );
        }
    }
}
