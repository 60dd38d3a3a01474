//! CONTRL out: the syntax answer to a received interchange (CONTRL MIG 2.0b).
//!
//! Layout: `UCI` answers the interchange (action 4 rejected / 7 acknowledged); one `UCM` per
//! message with errors (action 4); under it a `UCS` per segment in error (position in the
//! message, UNH = 1) and a `UCD` per data element in error (element:component, the segment
//! tag counting as element 1). Codes are
//! those of ISO 9735 DE0085, restricted to what the BDEW MIG 2.0b allows at each level (UCI:
//! 2 7 12 13 16 20 21 23 25 26 28 29 32; UCM: 12 13 16 21 22 26 28 29 39; UCS: 13 15 16 22 35
//! 36; UCD: 12 13 16 19 21 22 37 38 39 40; MIG CONTRL 2.0b, read in grammars/contrl/2.0b.mig).

use super::{answer_header, AckContext, ReceivedEnvelope};
use crate::edifact::{
    Interchange, MessageIdentifier, OutboundMessage, OwnedInterchange, OwnedSegment, SyntaxError,
};
use crate::grammar::{Finding, Level, MessageReport, Severity};

/// When to send a CONTRL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ContrlPolicy {
    /// Strom: only when the interchange has syntax errors ("nur dann … wenn diese syntaktisch
    /// falsch ist", APERAK AHB 1.1 §1.2 = CONTRL AHB chapter 1).
    #[default]
    OnErrors,
    /// Gas: on every interchange (UCI 7 or 4).
    Always,
}

const UCI_CODES: &[u8] = &[2, 7, 12, 13, 16, 20, 21, 23, 25, 26, 28, 29, 32];
const UCM_CODES: &[u8] = &[12, 13, 16, 21, 22, 26, 28, 29, 39];
const UCS_CODES: &[u8] = &[13, 15, 16, 22, 35, 36];
const UCD_CODES: &[u8] = &[12, 13, 16, 19, 21, 22, 37, 38, 39, 40];

fn allowed(code: u8, list: &[u8], fallback: u8) -> u8 {
    if list.contains(&code) {
        code
    } else {
        fallback
    }
}

/// One error placed in a message, for the UCM/UCS/UCD layers.
struct Placed {
    message_segment: usize,
    tag: String,
    element: Option<usize>,
    component: Option<usize>,
    code: u8,
}

/// True when the CONTRL rejects the whole interchange (UCI action 4).
pub(crate) fn rejects_interchange(contrl: &OwnedInterchange) -> bool {
    contrl
        .messages
        .first()
        .and_then(|m| m.segments.first())
        .is_some_and(|uci| {
            uci.elements
                .get(3)
                .and_then(|e| e.first())
                .is_some_and(|a| a == "4")
        })
}

/// The references of the messages a CONTRL rejects (its UCM segments with action 4).
pub(crate) fn rejected_messages(contrl: &OwnedInterchange) -> Vec<String> {
    contrl
        .messages
        .iter()
        .flat_map(|m| &m.segments)
        .filter(|s| {
            s.tag == "UCM"
                && s.elements
                    .get(2)
                    .and_then(|e| e.first())
                    .is_some_and(|a| a == "4")
        })
        .filter_map(|s| s.elements.first().and_then(|e| e.first()).cloned())
        .collect()
}

/// Builds the CONTRL for a received interchange, or `None` when none is due.
pub fn build_contrl(
    envelope: &ReceivedEnvelope,
    interchange: Option<&Interchange<'_, '_>>,
    syntax_errors: &[SyntaxError],
    reports: &[MessageReport<'_>],
    context: &mut AckContext<'_>,
) -> Option<OwnedInterchange> {
    // Interchange-level errors: outside any message, or in the envelope segments.
    let interchange_error = syntax_errors.iter().find(|e| {
        e.position.message_segment.is_none()
            || interchange.is_none()
            || matches!(
                e.position.tag.map(|t| t.0),
                Some([b'U', b'N', b'B' | b'Z' | b'A'])
            )
    });
    // Message-level errors, by message reference.
    let mut per_message: Vec<(String, Vec<String>, Vec<Placed>)> = Vec::new();
    if let Some(ic) = interchange {
        for (index, m) in ic.messages().enumerate() {
            let (from, to) = (m.unh().offset(), m.unt().offset() + m.unt().raw().len());
            let mut placed: Vec<Placed> = syntax_errors
                .iter()
                .filter(|e| e.position.offset >= from && e.position.offset <= to)
                .map(|e| Placed {
                    message_segment: e.position.message_segment.unwrap_or(1),
                    tag: e.position.tag.map(|t| t.to_string()).unwrap_or_default(),
                    element: e.position.element,
                    component: e.position.component,
                    code: e.kind.contrl_code(),
                })
                .collect();
            if let Some(report) =
                super::report_index(reports, index, &m.reference()).map(|at| &reports[at])
            {
                placed.extend(
                    report
                        .findings
                        .iter()
                        .filter(|f| f.severity == Severity::Error && f.level == Level::Syntax)
                        .map(placed_finding),
                );
            }
            if !placed.is_empty() {
                let s009: Vec<String> = m
                    .unh()
                    .element(2)
                    .map(|e| e.components().map(|c| super::copyable(&c.text())).collect())
                    .unwrap_or_default();
                per_message.push((super::copyable(&m.reference()), s009, placed));
            }
        }
    }
    if interchange_error.is_none()
        && per_message.is_empty()
        && context.contrl_policy == ContrlPolicy::OnErrors
    {
        return None;
    }

    let mut segments = Vec::new();
    let mut uci = OwnedSegment::new("UCI")
        .simple(envelope.control_reference.clone())
        .composite([
            envelope.sender.id.clone(),
            envelope.sender.qualifier.code().to_string(),
        ])
        .composite([
            envelope.recipient.id.clone(),
            envelope.recipient.qualifier.code().to_string(),
        ]);
    match interchange_error {
        Some(e) => {
            // DE0083 4: this level and all lower levels rejected.
            uci = uci
                .simple("4")
                .simple(allowed(e.kind.contrl_code(), UCI_CODES, 12).to_string());
            if let Some(tag) = e
                .position
                .tag
                .map(|t| t.to_string())
                .filter(|t| matches!(t.as_str(), "UNA" | "UNB" | "UNZ"))
            {
                uci = uci.simple(tag);
            }
        }
        // Strom: a CONTRL is only ever a Syntaxfehlermeldung, and a justified one means the
        // whole interchange counts as not received (APERAK AHB 1.1 §1.4, identical to the
        // CONTRL AHB's chapter 1): UCI action 4, the UCM/UCS/UCD below say where. The
        // independent validator edi-energy admits only 4 in the Strom template, too.
        None if !per_message.is_empty() && context.contrl_policy == ContrlPolicy::OnErrors => {
            uci = uci.simple("4");
        }
        // DE0083 7: acknowledged; lower levels acknowledged unless rejected below (Gas).
        None => uci = uci.simple("7"),
    }
    segments.push(uci);
    if interchange_error.is_none() {
        for (reference, s009, placed) in per_message {
            // A count or reference error of UNT belongs to UCM (DE0085 with DE0013 = UNT).
            let trailer_at = placed
                .iter()
                .position(|p| p.tag == "UNT" && matches!(p.code, 28 | 29));
            let trailer = trailer_at.map(|i| &placed[i]);
            let mut ucm = OwnedSegment::new("UCM")
                .simple(reference)
                .composite(s009)
                .simple("4");
            if let Some(t) = trailer {
                ucm = ucm
                    .simple(allowed(t.code, UCM_CODES, 12).to_string())
                    .simple("UNT");
            }
            segments.push(ucm);
            let mut rest: Vec<&Placed> = placed
                .iter()
                .enumerate()
                .filter(|(i, _)| Some(*i) != trailer_at)
                .map(|(_, p)| p)
                .collect();
            rest.sort_by_key(|p| (p.message_segment, p.element, p.component));
            let mut last_segment = None;
            for p in rest {
                if last_segment != Some(p.message_segment) {
                    let mut ucs = OwnedSegment::new("UCS").simple(p.message_segment.to_string());
                    if p.element.is_none() {
                        ucs = ucs.simple(allowed(p.code, UCS_CODES, 15).to_string());
                    }
                    segments.push(ucs);
                    last_segment = Some(p.message_segment);
                }
                if let Some(e) = p.element {
                    // S011 DE0098 counts the segment tag as position 1 ("The segment tag has
                    // position number 1", ISO 9735 CONTRL), so the first data element after the
                    // tag is 2; DE0104 counts components from 1.
                    let element = (e + 1).to_string();
                    let position = match p.component {
                        Some(c) if c > 1 => vec![element, c.to_string()],
                        _ => vec![element],
                    };
                    segments.push(
                        OwnedSegment::new("UCD")
                            .simple(allowed(p.code, UCD_CODES, 12).to_string())
                            .composite(position),
                    );
                }
            }
        }
    }
    let header = answer_header(envelope, context);
    Some(OwnedInterchange {
        header,
        messages: vec![OutboundMessage {
            reference: context.references.next_reference(),
            identifier: MessageIdentifier::parse("CONTRL:D:3:UN:2.0b").expect("valid identifier"),
            segments,
        }],
    })
}

fn placed_finding(f: &Finding) -> Placed {
    Placed {
        message_segment: f.message_segment,
        tag: f.tag.clone(),
        element: f.element,
        component: f.component,
        code: f.contrl_code.unwrap_or(12),
    }
}
