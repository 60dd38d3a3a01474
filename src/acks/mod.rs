//! Acknowledgements, both ways: what to send back for a received interchange (CONTRL for
//! syntax errors, APERAK for every business message), reading the CONTRL and APERAK that
//! partners send, matching them to what we sent, and the deadlines of both (pure: the time is
//! an argument).
//!
//! The rules applied (sources in the comments at each place):
//! - Strom: a CONTRL only as Syntaxfehlermeldung (UCI action 4 or a UCM 4), never a positive
//!   one, and never a CONTRL on a CONTRL (APERAK AHB 1.1 §1.2, identical to the CONTRL AHB's
//!   chapter 1; Gas answers every interchange, see [`ContrlPolicy::Always`]).
//! - Strom: every business message (Geschäftsvorfall) gets an APERAK, positive (`BGM+312`) or
//!   negative (`BGM+313` with ERC codes), unless the whole interchange was rejected by CONTRL;
//!   no APERAK on an APERAK or a CONTRL (APERAK AHB 1.1 §2.5).

mod aperak;
pub mod calendar;
mod contrl;
mod inbound;

use chrono::NaiveDateTime;

pub use aperak::{build_aperak, build_requested_aperak, ErrorToReport};
pub use calendar::{Calendar, Deadline, DeadlineRules};
pub use contrl::{build_contrl, ContrlPolicy};
pub use inbound::{
    erc_meaning, known_erc_code, match_acknowledgement, read_acknowledgements, AckMatch,
    Acknowledgement, AperakError, ContrlMessageError, SentLookup, SentMessage, ERC_CODES,
};

use crate::edifact::tokens::{find_terminator, split_unreleased};
use crate::edifact::{
    parse_lenient, Charset, Delimiters, Document, InterchangeHeader, LineBreak, Message,
    OwnedInterchange, ParseOutcome, PartnerQualifier, Party, ReferenceSequence, SyntaxError,
    SyntaxIdentifier, Writer,
};
use crate::grammar::{validate_interchange, MessageReport, Registry};

/// What the gateway answers to one received interchange.
#[derive(Debug)]
pub struct AckPlan<'a> {
    /// Syntax errors of the parse (with their positions).
    pub syntax_errors: Vec<SyntaxError>,
    /// Per message: the validation report.
    pub reports: Vec<MessageReport<'a>>,
    /// The CONTRL to send, if the rules ask for one.
    pub contrl: Option<OwnedInterchange>,
    /// The APERAKs to send (one interchange holding one APERAK per business message).
    pub aperak: Option<OwnedInterchange>,
    /// When the CONTRL must have left (UTC), if one is due.
    pub contrl_due: Option<NaiveDateTime>,
    /// When the APERAKs must have left (UTC), if any are due.
    pub aperak_due: Option<NaiveDateTime>,
    /// The messages (positions in the interchange, from 0) that passed the gateway's checks
    /// and whose APERAK the supplier core owes ([`AperakOwner::Core`]).
    pub aperak_owed_by_core: Vec<usize>,
}

/// Who sends the APERAK of a business message that passed the gateway's checks (one APERAK
/// per Geschäftsvorfall, APERAK AHB 1.1 §2.5): the gateway at once, or the supplier core,
/// which runs the business checks (`Z10`, `Z14`, `Z33`, …) of what it is forwarded and asks the
/// gateway to send the APERAK within the deadline. A message the gateway finds wrong gets the
/// gateway's negative APERAK either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AperakOwner {
    /// The gateway answers (positively, when it found nothing).
    Gateway,
    /// The supplier core answers.
    Core,
}

/// A reason why a syntactically correct message cannot be processed, found by the layers
/// above (unknown market location → `Z10`/`Z14`, unknown referenced order → `Z33`, …).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessingError {
    /// The BDEW APERAK error code (ERC DE9321).
    pub code: &'static str,
    /// What is wrong, for `FTX+Z02`.
    pub text: String,
    /// The segment concerned (index in the message, UNH = 0).
    pub segment: usize,
}

/// The business checks of a received message that the pure layers cannot do themselves
/// (they need the store): the order logic implements it.
pub trait ProcessingCheck: std::fmt::Debug {
    /// The reasons why `message` cannot be processed (empty when it can).
    fn check(&self, message: &Message<'_, '_>) -> Vec<ProcessingError>;

    /// Who sends the APERAK of `message` when no check found anything wrong with it (the
    /// gateway unless said otherwise).
    fn aperak_owner(&self, _message: &Message<'_, '_>) -> AperakOwner {
        AperakOwner::Gateway
    }
}

/// A [`ProcessingCheck`] that knows nothing (for `mako-gateway ack` and tests of syntax).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProcessingCheck;

impl ProcessingCheck for NoProcessingCheck {
    fn check(&self, _message: &Message<'_, '_>) -> Vec<ProcessingError> {
        Vec::new()
    }
}

impl AckPlan<'_> {
    /// True when the CONTRL rejects the whole interchange (UCI action 4): no message of it
    /// counts as received, and none gets an APERAK.
    pub fn rejects_whole(&self) -> bool {
        self.contrl
            .as_ref()
            .is_some_and(contrl::rejects_interchange)
    }

    /// True when the CONTRL rejects the message with UNH reference `reference` (its UCM, or
    /// the whole interchange): it counts as not received and gets no APERAK.
    pub fn rejects_message(&self, reference: &str) -> bool {
        self.rejects_whole()
            || self
                .contrl
                .as_ref()
                .is_some_and(|c| contrl::rejected_messages(c).iter().any(|r| r == reference))
    }

    /// The answers written as EDIFACT, CONTRL first.
    pub fn render(&self) -> Result<Vec<Vec<u8>>, crate::edifact::WriteError> {
        let mut out = Vec::new();
        for ic in [&self.contrl, &self.aperak].into_iter().flatten() {
            out.push(
                Writer::new(ic.header.syntax)
                    .with_line_break(LineBreak::None)
                    .write_interchange(ic)?,
            );
        }
        Ok(out)
    }
}

/// Everything the acknowledgement decisions need besides the received bytes.
#[derive(Debug)]
pub struct AckContext<'r> {
    /// The grammars.
    pub registry: &'r Registry,
    /// Now, in UTC (the message date of our answers).
    pub now: NaiveDateTime,
    /// CONTRL policy (Strom: only on errors).
    pub contrl_policy: ContrlPolicy,
    /// Where our interchange and message references come from.
    pub references: ReferenceSequence,
    /// Business checks of the layers above (unknown location, unknown reference).
    pub processing: &'r dyn ProcessingCheck,
}

/// The syntax identifier of everything the gateway writes: `UNOC:3` (BDEW).
pub const OUR_SYNTAX: SyntaxIdentifier = SyntaxIdentifier {
    charset: Charset::Unoc,
    version: 3,
};

/// The envelope of a received interchange as far as it could be read: enough to address an
/// answer even when the rest of the interchange is broken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedEnvelope {
    /// UNB S002.
    pub sender: Party,
    /// UNB S003 (normally us).
    pub recipient: Party,
    /// UNB DE0020.
    pub control_reference: String,
    /// UNB S004 as `CCYYMMDDHHMM` (for APERAK DTM+171), when readable.
    pub prepared: Option<NaiveDateTime>,
}

/// A value copied from a received interchange into one of our answers: characters our
/// syntax (UNOC) cannot carry, and controls, become `?`, so that an answer can always be
/// written, whatever the partner sent.
pub(crate) fn copyable(text: &str) -> String {
    text.chars()
        .map(|c| {
            let fits = OUR_SYNTAX
                .charset
                .encode(c.encode_utf8(&mut [0; 4]))
                .is_ok();
            if fits {
                c
            } else {
                '?'
            }
        })
        .collect()
}

/// Reads the UNB of `input` without trusting anything after it: works on bytes that do not
/// parse (to address the CONTRL that rejects them). For an interchange already parsed,
/// [`read_envelope_parsed`] gives the same answer from the tree.
pub fn read_envelope(input: &[u8]) -> Option<ReceivedEnvelope> {
    let start = input.iter().position(|b| !matches!(b, b'\r' | b'\n'))?;
    let rest = &input[start..];
    let (delimiters, at) = match crate::edifact::parse_una(rest) {
        Ok(Some(advice)) => (advice.delimiters, crate::edifact::UNA_LEN),
        Ok(None) => (Delimiters::default_for(rest), 0),
        Err(_) => return None,
    };
    let body = &rest[at..];
    let body = &body[body.iter().position(|b| !matches!(b, b'\r' | b'\n'))?..];
    if !body.starts_with(b"UNB") {
        return None;
    }
    let end = find_terminator(body, 0, &delimiters)?;
    envelope_of_unb(&body[..end], delimiters)
}

/// [`read_envelope`] on an interchange already parsed: the parse-once entry point, for a
/// caller that parsed the bytes anyway ([`parse_lenient`]'s document). Reads the UNB of the
/// first interchange and answers exactly as [`read_envelope`] does on the bytes the document
/// was parsed from. Bytes that do not parse have no document: use [`read_envelope`] on them.
pub fn read_envelope_parsed(document: &Document<'_>) -> Option<ReceivedEnvelope> {
    let interchange = document.interchanges().next()?;
    // The byte form reads the UNB before its syntax version is known: without the version 4
    // repetition separator (a `*` in a party ID stays in it) and decoded as UNOC. The same
    // reading here keeps the two forms' answers equal.
    let delimiters = Delimiters {
        repetition: None,
        ..interchange.delimiters()
    };
    envelope_of_unb(interchange.unb().raw(), delimiters)
}

/// The envelope in the raw bytes of a UNB segment (tag to terminator, excluded), read with
/// `delimiters` and decoded as UNOC; `None` without sender, recipient or control reference.
fn envelope_of_unb(raw: &[u8], delimiters: Delimiters) -> Option<ReceivedEnvelope> {
    // Offset and segment number only place errors, which this reading does not report.
    let seg = crate::edifact::Segment::new(raw, 0, 1, delimiters, Charset::Unoc);
    let sender = party(&copyable(&seg.value(2, 1)), &seg.value(2, 2));
    let recipient = party(&copyable(&seg.value(3, 1)), &seg.value(3, 2));
    let control_reference = copyable(&seg.value(5, 1));
    if sender.id.is_empty() || recipient.id.is_empty() || control_reference.is_empty() {
        return None;
    }
    Some(ReceivedEnvelope {
        sender,
        recipient,
        control_reference,
        prepared: crate::edifact::parse_preparation_date_time(&seg.value(4, 1), &seg.value(4, 2)),
    })
}

/// True when an unreadable interchange still shows a CONTRL message header: `CONTRL` as UNH
/// S009's first component, i.e. after an unreleased data element separator and before a
/// component separator of the interchange's own delimiters (so that `CONTRL:` in free text,
/// or a CONTRL written with other delimiters, is judged right).
fn claims_contrl(input: &[u8]) -> bool {
    let start = input
        .iter()
        .position(|b| !matches!(b, b'\r' | b'\n'))
        .unwrap_or(0);
    let d = match crate::edifact::parse_una(&input[start..]) {
        Ok(Some(advice)) => advice.delimiters,
        _ => Delimiters::default_for(&input[start..]),
    };
    // A part after an unreleased data element separator that begins `CONTRL` and the
    // component separator.
    split_unreleased(input, d.element, d.release)
        .skip(1)
        .any(|(_, part)| {
            part.strip_prefix(b"CONTRL")
                .is_some_and(|rest| rest.first() == Some(&d.component))
        })
}

/// Decides what to answer to a received interchange: parses it leniently, validates every
/// message, and builds the CONTRL and the APERAKs the rules ask for. A caller that parses the
/// bytes for other reasons too (journal facts, reading acknowledgements) parses once and calls
/// [`plan_parsed`].
pub fn plan<'a>(input: &'a [u8], context: &mut AckContext<'_>) -> AckPlan<'a> {
    let parsed = parse_lenient(input);
    let mut plan = decide(input, parsed.document.as_ref(), &parsed.errors, context);
    plan.syntax_errors = parsed.errors;
    plan
}

/// [`plan`] on an interchange already parsed: the parse-once entry point. `parsed` is what
/// [`parse_lenient`] returned for `input`, and the plan is the one `plan(input, context)`
/// makes. `input` is needed besides: when the bytes do not parse, the envelope and the CONTRL
/// claim are read from them. The syntax errors are copied into the plan, so that `parsed`
/// (its document in particular) stays the caller's to read.
///
/// ```
/// use mako_gateway::acks::{plan_parsed, read_acknowledgements, AckContext, ContrlPolicy};
/// use mako_gateway::edifact::{parse_lenient, ReferenceSequence};
/// let input = b"UNA:+.? 'UNB+UNOC:3+9900000000003:500+9900000000010:500+251001:0815+R1'\
///     UNH+1+CONTRL:D:3:UN:2.0b'UCI+X1+9900000000010:500+9900000000003:500+7'UNT+3+1'UNZ+1+R1'";
/// let parsed = parse_lenient(input);
/// let mut context = AckContext {
///     registry: mako_gateway::grammar::Registry::embedded(),
///     now: chrono::NaiveDate::from_ymd_opt(2025, 10, 1).unwrap().and_hms_opt(8, 20, 0).unwrap(),
///     contrl_policy: ContrlPolicy::OnErrors,
///     references: ReferenceSequence::new("ACK", 1).unwrap(),
///     processing: &mako_gateway::acks::NoProcessingCheck,
/// };
/// // Nobody answers a CONTRL…
/// let answers = plan_parsed(input, &parsed, &mut context);
/// assert!(answers.contrl.is_none() && answers.aperak.is_none());
/// // …and the same parse serves reading it.
/// let document = parsed.document.as_ref().unwrap();
/// let read = read_acknowledgements(&document.interchanges().next().unwrap());
/// assert_eq!(read.len(), 1);
/// ```
pub fn plan_parsed<'a>(
    input: &'a [u8],
    parsed: &ParseOutcome<'a>,
    context: &mut AckContext<'_>,
) -> AckPlan<'a> {
    debug_assert!(
        parsed
            .document
            .as_ref()
            .is_none_or(|d| std::ptr::eq(d.input(), input)),
        "the outcome of parsing another input"
    );
    let mut plan = decide(input, parsed.document.as_ref(), &parsed.errors, context);
    plan.syntax_errors = parsed.errors.clone();
    plan
}

/// The decisions of [`plan`] on a parse outcome given in parts; the plan's `syntax_errors` are
/// left empty for the caller to move or copy in.
fn decide<'a>(
    input: &'a [u8],
    document: Option<&Document<'a>>,
    syntax_errors: &[SyntaxError],
    context: &mut AckContext<'_>,
) -> AckPlan<'a> {
    let mut reports = Vec::new();
    let mut contrl = None;
    let mut aperak = None;
    let mut aperak_owed_by_core = Vec::new();
    let envelope = read_envelope(input);
    match document {
        Some(document) => {
            // The gateway receives one interchange per file or mail (BDEW); should there be
            // several, the answers cover the first and the others are reported as findings by
            // the caller.
            if let Some(interchange) = document.interchanges().next() {
                let mut ic_reports = validate_interchange(&interchange, context.registry);
                add_processing_errors(&interchange, &mut ic_reports, context.processing);
                let only_contrl = interchange.messages().len() > 0
                    && interchange.messages().all(|m| m.message_type() == "CONTRL");
                if !only_contrl {
                    contrl = envelope.as_ref().and_then(|env| {
                        build_contrl(env, Some(&interchange), syntax_errors, &ic_reports, context)
                    });
                    let rejected_whole = contrl.as_ref().is_some_and(contrl::rejects_interchange);
                    if !rejected_whole {
                        let rejected = contrl
                            .as_ref()
                            .map(contrl::rejected_messages)
                            .unwrap_or_default();
                        if let Some(env) = envelope.as_ref() {
                            (aperak, aperak_owed_by_core) = aperak::build_aperak_owned(
                                env,
                                &interchange,
                                &ic_reports,
                                &rejected,
                                context,
                            );
                        }
                    }
                }
                reports.extend(ic_reports);
            }
        }
        None => {
            // The structure could not be read: the whole interchange is rejected by CONTRL,
            // if its UNB names whom to answer (a CONTRL-only interchange is never answered).
            let is_contrl = claims_contrl(input);
            if !is_contrl {
                contrl = envelope
                    .as_ref()
                    .and_then(|env| build_contrl(env, None, syntax_errors, &[], context));
            }
        }
    }
    let (rules, calendar) = (DeadlineRules::embedded(), Calendar::embedded());
    let contrl_due = contrl
        .as_ref()
        .and_then(|_| rules.due(Deadline::Contrl, "*", context.now, calendar));
    // The earliest deadline of the answered message types (45 minutes for UTILMD/ORDERS).
    let aperak_due = aperak.as_ref().and_then(|_| {
        reports
            .iter()
            .filter_map(|r| {
                let message_type = r.identifier.split([':', '+']).next().unwrap_or("");
                rules.due(Deadline::Aperak, message_type, context.now, calendar)
            })
            .min()
    });
    AckPlan {
        syntax_errors: Vec::new(),
        reports,
        contrl,
        aperak,
        contrl_due,
        aperak_due,
        aperak_owed_by_core,
    }
}

/// Turns the business checks' reasons into APERAK findings of the messages' reports.
fn add_processing_errors(
    interchange: &crate::edifact::Interchange<'_, '_>,
    reports: &mut [MessageReport<'_>],
    processing: &dyn ProcessingCheck,
) {
    for (index, message) in interchange.messages().enumerate() {
        let Some(at) = report_index(reports, index, &message.reference()) else {
            continue;
        };
        let report = &mut reports[at];
        for e in processing.check(&message) {
            let segment = message
                .segments()
                .nth(e.segment)
                .unwrap_or_else(|| message.unh());
            report.findings.push(crate::grammar::Finding {
                severity: crate::grammar::Severity::Error,
                level: crate::grammar::Level::Application,
                rule: "not_processable",
                message: e.text,
                offset: segment.offset(),
                segment: segment.number(),
                message_segment: e.segment + 1,
                tag: segment.tag().to_string(),
                element: None,
                component: None,
                reference: format!("APERAK {} ({})", e.code, inbound::erc_meaning(e.code)),
                contrl_code: None,
                aperak_code: Some(e.code),
            });
        }
    }
}

/// Where the validation report of message `index` (reference `reference`) of an interchange
/// is in `reports`: they are made one per message in order, so at `index` unless the lists
/// differ, then the first with that reference. Looked up this way, an interchange of 27,205
/// messages is acknowledged in linear time; a search by reference for every message made it
/// quadratic (minutes for one interchange).
pub(crate) fn report_index(
    reports: &[MessageReport<'_>],
    index: usize,
    reference: &str,
) -> Option<usize> {
    match reports.get(index) {
        Some(r) if r.reference == reference => Some(index),
        _ => reports.iter().position(|r| r.reference == reference),
    }
}

/// The header of an answer: from us (the recipient of what we answer) to its sender.
fn answer_header(received: &ReceivedEnvelope, context: &mut AckContext<'_>) -> InterchangeHeader {
    InterchangeHeader {
        syntax: OUR_SYNTAX,
        sender: received.recipient.clone(),
        recipient: received.sender.clone(),
        prepared: context.now,
        control_reference: context.references.next_reference(),
        application_reference: None,
        test: false,
    }
}

fn party(id: &str, qualifier: &str) -> Party {
    Party {
        id: id.to_string(),
        qualifier: PartnerQualifier::from_code(qualifier)
            .unwrap_or_else(|| PartnerQualifier::for_id(id)),
    }
}
