//! Pass-through sending, pure: what the supplier core hands over to be sent to a partner as it
//! is (`POST /interchanges`), checked before anything is stored or sent; the records that
//! queue it; whether a repeated request is the one handed over before; the APERAK deadline
//! once it is sent; and what a partner's CONTRL or APERAK says about it.
//!
//! Two forms come in:
//! - **a message** (UNH to UNT, optionally after a UNA naming its delimiters): we write the
//!   envelope (UNA, UNB with our ID, a new reference from the shared counter and the time,
//!   UNZ) and renumber the message: UNH DE0062 becomes one of our references and UNT is
//!   counted anew. The core keeps no EDIFACT counters, and what the partner's CONTRL names
//!   (UCI DE0020, UCM DE0062) is ours and unique, so it matches one message. The message is
//!   read element by element with its delimiters and written canonically with ours (`UNOC:3`,
//!   `:+.? '`, trailing empty elements dropped): what goes out is exactly what was validated.
//! - **a complete interchange**: sent byte for byte as given, after the checks: readable, one
//!   interchange, UNB sender us and recipient the partner, the counts right (the parser checks
//!   UNT and UNZ), references that are not of the shape the gateway writes.
//!
//! Either way every message is validated against the grammars we hold
//! ([`crate::grammar::validate_interchange`]); one error refuses the whole request, and
//! nothing is stored or sent. A message type or version we hold no grammar for is taken and
//! marked unchecked (the validator's `unknown_message_version` or `no_grammar` finding).
//!
//! What it does not do: store, send, or read the clock (the time comes in).

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::records::{NewOutboxItem, OutboxKind};
use crate::acks::{
    AckMatch, Acknowledgement, Calendar, Deadline, DeadlineRules, SentMessage, OUR_SYNTAX,
};
use crate::edifact::{
    parse_lenient, parse_una, Charset, Delimiters, Interchange, InterchangeHeader,
    OwnedInterchange, OwnedSegment, Party, ReferenceSequence, SegmentTag, SyntaxError,
    SyntaxErrorKind, WriteError, Writer,
};
use crate::grammar::{message_pid, validate_interchange, Finding, Registry, Severity};
use crate::ids::new_id;

/// The validator's rules that mean "no grammar for this message type and version": such a
/// message is sent unchecked, not refused (`no_grammar` is the warning that replaces the error
/// `unknown_message_version`).
pub const NO_GRAMMAR_RULES: [&str; 2] = ["unknown_message_version", "no_grammar"];

/// Most characters of UNB DE0026 (an..14).
const MAX_APPLICATION_REFERENCE: usize = 14;

/// What the supplier core handed over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Submission {
    /// One message, UNH to UNT, optionally after a UNA that names its delimiters.
    Message {
        /// The text.
        text: String,
        /// UNB DE0026 to write (BDEW uses it for MSCONS: `VL`, `TL`, `EM`), if any.
        application_reference: Option<String>,
    },
    /// A complete interchange, sent as given.
    Interchange {
        /// The text, encoded for sending in the character set its UNB names.
        text: String,
    },
}

impl Submission {
    /// The request field the text came in.
    pub fn field(&self) -> &'static str {
        match self {
            Submission::Message { .. } => "message",
            Submission::Interchange { .. } => "interchange",
        }
    }

    /// References a submission takes from the shared counter (UNB and UNH of a message).
    pub fn references_needed(&self) -> u32 {
        match self {
            Submission::Message { .. } => 2,
            Submission::Interchange { .. } => 0,
        }
    }
}

/// Where in the submitted text a problem is. Segment numbers count in the text as the core
/// sent it: UNH = 1 for a message, UNB = 1 for an interchange (UNA not counted).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Place {
    /// Segment number in the submitted text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub segment: Option<usize>,
    /// The message (1 = the first) of the interchange.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<usize>,
    /// Segment position inside that message (UNH = 1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_segment: Option<usize>,
    /// The segment's tag.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// Data element position (1-based).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub element: Option<usize>,
    /// Component position (1-based).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub component: Option<usize>,
    /// Line in the submitted text (1-based), where the text itself is meant.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    /// Column in characters on that line (1-based).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<usize>,
}

/// One problem (or, kept with a message that was taken, one warning) with its place.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// A stable code: a syntax error kind (`control_count_mismatch`), a validator rule
    /// (`missing_segment`, `code_not_allowed`, …), or one of the checks here (`sender_not_us`,
    /// `recipient_not_partner`, `reserved_reference`, …).
    pub code: String,
    /// What is wrong, in words.
    pub message: String,
    /// Where, when it is about a place in the text (boxed: problems travel in `Result`s).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub position: Option<Box<Place>>,
}

impl Problem {
    fn new(code: &str, message: impl Into<String>) -> Problem {
        Problem {
            code: code.to_string(),
            message: message.into(),
            position: None,
        }
    }

    fn at(mut self, place: Place) -> Problem {
        self.position = Some(Box::new(place));
        self
    }
}

/// Why a submission is refused (nothing is stored or sent): every problem found, all about
/// the one request field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// `message` or `interchange`.
    pub field: &'static str,
    /// The problems, in text order.
    pub problems: Vec<Problem>,
}

/// A message of a checked submission.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedMessage {
    /// UNH S009 DE0065 (`UTILMD`).
    pub message_type: String,
    /// The rest of S009 (`D:11A:UN:S2.1`).
    pub version: String,
    /// The Prüfidentifikator (RFF+Z13), if any.
    pub pid: Option<u32>,
    /// UNH DE0062 as sent.
    pub message_ref: String,
    /// BGM DE1004, if the message has one.
    pub document_number: Option<String>,
    /// Validated against a grammar we hold (false: none held, sent unchecked).
    pub checked: bool,
    /// The warnings (and, when unchecked, why).
    pub findings: Vec<Problem>,
}

/// A submission that passed the checks: the bytes that will go out, exactly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    /// The recipient.
    pub partner: String,
    /// The interchange as it will be sent.
    pub bytes: Vec<u8>,
    /// Its UNB DE0020.
    pub interchange_ref: String,
    /// Its messages, in order.
    pub messages: Vec<CheckedMessage>,
}

/// What checking needs besides the submission.
#[derive(Debug)]
pub struct CheckContext<'a> {
    /// The grammars.
    pub registry: &'a Registry,
    /// Our market partner ID (the UNB sender).
    pub own_id: &'a str,
    /// The recipient.
    pub partner: &'a str,
    /// The prefix of the references the gateway writes: references of that shape are refused
    /// in what the core sends, so that ours never meet them (a second journal entry under our
    /// UNB reference, an APERAK's RFF+AGO naming two messages).
    pub reference_prefix: &'a str,
    /// Now (UNB S004 of a written envelope).
    pub now: DateTime<Utc>,
    /// References for the envelope and the message ([`Submission::references_needed`]).
    pub references: &'a mut ReferenceSequence,
}

/// Checks a submission and, for a message, writes its envelope: the bytes to send and the
/// facts of their messages, or every problem found.
pub fn check(submission: &Submission, context: &mut CheckContext<'_>) -> Result<Checked, Refused> {
    match submission {
        Submission::Message {
            text,
            application_reference,
        } => check_message(text, application_reference.as_deref(), context),
        Submission::Interchange { text } => check_interchange(text, context),
    }
}

/// The form of the submitted text, for turning places in the checked bytes into places in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Form {
    /// Wrapped in our envelope: the text's segment 1 (UNH) is the checked bytes' segment 2.
    Message,
    /// The checked bytes are the text.
    Interchange,
}

impl Form {
    fn field(self) -> &'static str {
        match self {
            Form::Message => "message",
            Form::Interchange => "interchange",
        }
    }

    fn refused(self, problems: Vec<Problem>) -> Refused {
        Refused {
            field: self.field(),
            problems,
        }
    }

    fn refuse(self, code: &str, message: impl Into<String>) -> Refused {
        self.refused(vec![Problem::new(code, message)])
    }

    /// A segment number of the checked bytes (UNB = 1) as a number in the submitted text.
    fn segment(self, checked: usize) -> usize {
        match self {
            Form::Message => checked.saturating_sub(1),
            Form::Interchange => checked,
        }
    }

    fn syntax_problem(self, e: &SyntaxError) -> Problem {
        let p = &e.position;
        let mut place = Place {
            segment: (p.segment > 0).then(|| self.segment(p.segment)),
            message_segment: p.message_segment,
            tag: p.tag.map(|t| t.as_str().to_string()),
            element: p.element,
            component: p.component,
            ..Place::default()
        };
        if self == Form::Interchange && p.line > 0 {
            (place.line, place.column) = (Some(p.line), Some(p.column));
        }
        Problem::new(e.kind.name(), e.kind.to_string()).at(place)
    }

    fn finding(self, message: usize, f: &Finding) -> Problem {
        Problem::new(f.rule, f.message.clone()).at(Place {
            segment: Some(self.segment(f.segment)),
            message: Some(message),
            message_segment: Some(f.message_segment),
            tag: Some(f.tag.clone()),
            element: f.element,
            component: f.component,
            ..Place::default()
        })
    }
}

/// The text as bytes in `charset`, line breaks between segments kept as they are (they are
/// layout, not data, and no repertoire carries them as data).
fn encode(text: &str, charset: Charset) -> Result<Vec<u8>, Problem> {
    let mut out = Vec::with_capacity(text.len());
    for (n, line) in text.split_inclusive('\n').enumerate() {
        let (content, line_break) = match line.strip_suffix("\r\n") {
            Some(c) => (c, "\r\n"),
            None => match line.strip_suffix('\n') {
                Some(c) => (c, "\n"),
                None => (line, ""),
            },
        };
        match charset.encode(content) {
            Ok(bytes) => out.extend_from_slice(&bytes),
            Err(bad) => {
                let column = content[..bad.index].chars().count() + 1;
                return Err(Problem::new(
                    "unrepresentable",
                    format!(
                        "character {:?} is not in the {} repertoire the interchange is sent in",
                        bad.ch, charset
                    ),
                )
                .at(Place {
                    line: Some(n + 1),
                    column: Some(column),
                    ..Place::default()
                }));
            }
        }
        out.extend_from_slice(line_break.as_bytes());
    }
    Ok(out)
}

/// True for a reference of the shape the gateway writes (the prefix and 8 base-36 digits).
fn is_gateway_reference(value: &str, prefix: &str) -> bool {
    value.strip_prefix(prefix).is_some_and(|digits| {
        digits.len() == 8
            && digits
                .bytes()
                .all(|b| b.is_ascii_digit() || b.is_ascii_uppercase())
    })
}

fn check_message(
    text: &str,
    application_reference: Option<&str>,
    context: &mut CheckContext<'_>,
) -> Result<Checked, Refused> {
    let form = Form::Message;
    if let Some(reference) = application_reference {
        let fits = !reference.is_empty()
            && reference.len() <= MAX_APPLICATION_REFERENCE
            && reference.bytes().all(|b| b.is_ascii_alphanumeric());
        if !fits {
            return Err(Refused {
                field: "application_reference",
                problems: vec![Problem::new(
                    "invalid",
                    format!(
                        "application_reference {reference:?} must be 1 to \
                         {MAX_APPLICATION_REFERENCE} letters or digits (UNB DE0026)"
                    ),
                )],
            });
        }
    }
    let text = text.trim();
    // The delimiters: a UNA before the message, or the defaults.
    let (delimiters, rest) = match text.strip_prefix("UNA") {
        Some(_) => {
            let Some(una) = text.get(..crate::edifact::UNA_LEN) else {
                return Err(form.refuse(
                    "invalid_service_string_advice",
                    "the UNA before the message must name six service characters",
                ));
            };
            match parse_una(una.as_bytes()) {
                Ok(Some(advice)) => (
                    Delimiters {
                        repetition: None,
                        ..advice.delimiters
                    },
                    text[una.len()..].trim_start(),
                ),
                Ok(None) | Err(_) => {
                    return Err(form.refuse(
                        "invalid_service_string_advice",
                        format!("the UNA before the message is not usable: {una:?}"),
                    ))
                }
            }
        }
        None => (Delimiters::LEVEL_A_V3, text),
    };
    if rest.starts_with("UNB") {
        return Err(form.refuse(
            "not_a_message",
            "message holds an interchange (UNB): give it as interchange, or the message alone \
             from UNH to UNT",
        ));
    }
    if !rest.starts_with("UNH") {
        return Err(form.refuse(
            "not_a_message",
            "the message must start with UNH (after an optional UNA)",
        ));
    }
    let body = encode(rest, OUR_SYNTAX.charset).map_err(|p| form.refused(vec![p]))?;
    if body.last() != Some(&delimiters.terminator) {
        return Err(form.refuse(
            "unterminated_segment",
            format!(
                "the message must end with the segment terminator `{}`",
                char::from(delimiters.terminator)
            ),
        ));
    }
    // Read in an envelope of ours: the parser sees an interchange, the message keeps its
    // delimiters.
    let writer = Writer::new(OUR_SYNTAX).with_delimiters(delimiters);
    let header = |reference: String| InterchangeHeader {
        syntax: OUR_SYNTAX,
        sender: Party::new(context.own_id),
        recipient: Party::new(context.partner),
        prepared: context.now.naive_utc(),
        control_reference: reference,
        application_reference: application_reference.map(str::to_string),
        test: false,
    };
    let mut wrapped = delimiters.una().to_vec();
    let envelope = |out: &mut Vec<u8>, segment: OwnedSegment| {
        writer
            .write_segment(out, &segment, 1)
            .map_err(|e| form.refuse("invalid_value", e.to_string()))
    };
    envelope(
        &mut wrapped,
        OwnedSegment::new("UNB")
            .composite(["UNOC", "3"])
            .composite([context.own_id, "500"])
            .composite([context.partner, "500"])
            .composite(["000101", "0000"])
            .simple("PASSTHROUGH"),
    )?;
    wrapped.extend_from_slice(&body);
    envelope(
        &mut wrapped,
        OwnedSegment::new("UNZ").simple("1").simple("PASSTHROUGH"),
    )?;
    let parsed = parse_lenient(&wrapped);
    // UNT's count and reference are ours to write: their mismatches are not the core's.
    let unt = SegmentTag(*b"UNT");
    let problems: Vec<Problem> = parsed
        .errors
        .iter()
        .filter(|e| {
            !(e.position.tag == Some(unt)
                && matches!(
                    e.kind,
                    SyntaxErrorKind::ControlCountMismatch { .. }
                        | SyntaxErrorKind::ControlReferenceMismatch { .. }
                ))
        })
        .map(|e| form.syntax_problem(e))
        .collect();
    let Some(document) = parsed.document.as_ref().filter(|_| problems.is_empty()) else {
        return Err(form.refused(problems));
    };
    let Some(interchange) = document.interchanges().next() else {
        return Err(form.refuse("not_a_message", "no message between UNH and UNT"));
    };
    if interchange.messages().len() != 1 {
        return Err(form.refuse(
            "one_message",
            format!(
                "message holds {} messages; give one, or several as an interchange",
                interchange.messages().len()
            ),
        ));
    }
    let mut owned = OwnedInterchange::from_parsed(&interchange)
        .map_err(|e| form.refuse("invalid_value", e.to_string()))?;
    owned.header = header(context.references.next_reference());
    owned.messages[0].reference = context.references.next_reference();
    let bytes = Writer::new(OUR_SYNTAX)
        .write_interchange(&owned)
        .map_err(|e| form.refused(vec![write_problem(&e)]))?;
    validated(bytes, form, context)
}

fn write_problem(e: &WriteError) -> Problem {
    let problem = Problem::new("unrepresentable", e.to_string());
    match e {
        WriteError::Unrepresentable {
            segment,
            tag,
            element,
            component,
            ..
        }
        | WriteError::UnreleasableServiceCharacter {
            segment,
            tag,
            element,
            component,
            ..
        } => problem.at(Place {
            // The writer numbers a message's segments from UNH = 1.
            segment: Some(*segment),
            message_segment: Some(*segment),
            tag: Some(tag.clone()),
            element: Some(*element),
            component: Some(*component),
            ..Place::default()
        }),
        _ => problem,
    }
}

/// The character set the UNB of `text` names (`UNOC` if it cannot be read: the parser then
/// reports the UNB).
fn declared_charset(text: &str) -> Charset {
    let (element, rest) = match parse_una(text.as_bytes()) {
        Ok(Some(advice)) => (
            advice.delimiters.element,
            text.get(crate::edifact::UNA_LEN..).unwrap_or(""),
        ),
        _ => (Delimiters::LEVEL_A_V3.element, text),
    };
    rest.trim_start()
        .strip_prefix("UNB")
        .and_then(|r| r.as_bytes().split_first())
        .filter(|(first, _)| **first == element)
        .and_then(|(_, r)| r.get(..4))
        .and_then(Charset::from_identifier)
        .unwrap_or(Charset::Unoc)
}

fn check_interchange(text: &str, context: &mut CheckContext<'_>) -> Result<Checked, Refused> {
    let form = Form::Interchange;
    let bytes = encode(text, declared_charset(text)).map_err(|p| form.refused(vec![p]))?;
    validated(bytes, form, context)
}

/// Parses the bytes to send, checks the envelope and validates every message.
fn validated(bytes: Vec<u8>, form: Form, context: &CheckContext<'_>) -> Result<Checked, Refused> {
    let parsed = parse_lenient(&bytes);
    let mut problems: Vec<Problem> = parsed
        .errors
        .iter()
        .map(|e| form.syntax_problem(e))
        .collect();
    let Some(document) = parsed.document.as_ref().filter(|_| problems.is_empty()) else {
        return Err(form.refused(problems));
    };
    if document.interchanges().len() != 1 {
        return Err(form.refuse(
            "one_interchange",
            format!(
                "{} interchanges; a pass-through sends exactly one",
                document.interchanges().len()
            ),
        ));
    }
    let Some(interchange) = document.interchanges().next() else {
        return Err(form.refuse("one_interchange", "no interchange"));
    };
    if form == Form::Interchange {
        // A message is in our envelope: nothing to check there.
        problems.extend(envelope_problems(&interchange, context));
    }
    let mut messages = Vec::new();
    let mut documents: Vec<String> = Vec::new();
    let reports = validate_interchange(&interchange, context.registry);
    for (index, (message, report)) in interchange.messages().zip(&reports).enumerate() {
        let number = index + 1;
        let unchecked = report
            .findings
            .iter()
            .any(|f| NO_GRAMMAR_RULES.contains(&f.rule));
        let mut findings = Vec::new();
        for f in &report.findings {
            if f.severity == Severity::Error && !NO_GRAMMAR_RULES.contains(&f.rule) {
                problems.push(form.finding(number, f));
            } else {
                findings.push(form.finding(number, f));
            }
        }
        let bgm = message.body().find(|s| s.is(b"BGM"));
        let document_number = bgm
            .as_ref()
            .map(|s| s.value(2, 1).into_owned())
            .filter(|d| !d.is_empty());
        if let (Some(d), Some(s)) = (&document_number, &bgm) {
            let place = Place {
                segment: Some(form.segment(s.number())),
                message: Some(number),
                tag: Some("BGM".into()),
                element: Some(2),
                component: Some(1),
                ..Place::default()
            };
            if is_gateway_reference(d, context.reference_prefix) {
                problems.push(
                    Problem::new(
                        "reserved_reference",
                        format!(
                            "document number {d:?} has the shape of the gateway's own \
                             references ({}…); use another",
                            context.reference_prefix
                        ),
                    )
                    .at(place),
                );
            } else if documents.contains(d) {
                problems.push(
                    Problem::new(
                        "document_number_repeated",
                        format!("document number {d:?} is used by two messages"),
                    )
                    .at(place),
                );
            }
            documents.push(d.clone());
        }
        messages.push(CheckedMessage {
            message_type: message.message_type().into_owned(),
            version: message.version(),
            pid: message_pid(&message),
            message_ref: message.reference().into_owned(),
            document_number,
            checked: !unchecked,
            findings,
        });
    }
    if messages.is_empty() {
        problems.push(Problem::new(
            "no_message",
            "the interchange holds no message",
        ));
    }
    if !problems.is_empty() {
        return Err(form.refused(problems));
    }
    Ok(Checked {
        partner: context.partner.to_string(),
        interchange_ref: interchange.control_reference().into_owned(),
        messages,
        bytes,
    })
}

/// The envelope of a given interchange: from us, to the partner, under a reference the
/// gateway would not write.
fn envelope_problems(
    interchange: &Interchange<'_, '_>,
    context: &CheckContext<'_>,
) -> Vec<Problem> {
    let mut problems = Vec::new();
    let unb = |element: usize| Place {
        segment: Some(1),
        tag: Some("UNB".into()),
        element: Some(element),
        component: Some(1),
        ..Place::default()
    };
    let sender = interchange.sender().id;
    if sender != context.own_id {
        problems.push(
            Problem::new(
                "sender_not_us",
                format!(
                    "UNB sender {sender} is not our market partner ID {}",
                    context.own_id
                ),
            )
            .at(unb(2)),
        );
    }
    let recipient = interchange.recipient().id;
    if recipient != context.partner {
        problems.push(
            Problem::new(
                "recipient_not_partner",
                format!(
                    "UNB recipient {recipient} is not the partner {}",
                    context.partner
                ),
            )
            .at(unb(3)),
        );
    }
    let reference = interchange.control_reference();
    if is_gateway_reference(&reference, context.reference_prefix) {
        problems.push(
            Problem::new(
                "reserved_reference",
                format!(
                    "UNB reference {reference:?} has the shape of the gateway's own references \
                     ({}…); use another",
                    context.reference_prefix
                ),
            )
            .at(unb(5)),
        );
    }
    problems
}

/// A checked submission ready for the store: the id of its outbound journal entry (journaled
/// now, state `queued`), the outbox item with the bytes fixed before the first attempt, and
/// the id of each message's `messages` row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queued {
    /// The submission.
    pub checked: Checked,
    /// Its outbound journal entry (`jrn_…`).
    pub journal_id: String,
    /// The outbox item that sends it.
    pub outbox: NewOutboxItem,
    /// One `out_…` per message, in order.
    pub message_ids: Vec<String>,
}

/// The records that queue a checked submission.
pub fn queue(checked: Checked, now: DateTime<Utc>) -> Queued {
    let journal_id = new_id("jrn", now);
    let outbox = NewOutboxItem {
        kind: OutboxKind::PassThrough,
        order: None,
        partner: checked.partner.clone(),
        payload: Some(checked.bytes.clone()),
        journal_id: Some(journal_id.clone()),
    };
    let message_ids = checked
        .messages
        .iter()
        .map(|_| new_id("out", now))
        .collect();
    Queued {
        checked,
        journal_id,
        outbox,
        message_ids,
    }
}

/// An earlier pass-through to the same partner that shares a key with a new submission: its
/// UNB reference, or a BGM document number of one of its messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Earlier {
    /// Its outbound journal entry.
    pub journal_id: String,
    /// Its UNB reference.
    pub interchange_ref: String,
    /// The bytes journaled for it.
    pub bytes: Vec<u8>,
    /// True when it is a pass-through of the core (false: an interchange the gateway wrote).
    pub pass_through: bool,
}

/// What a submission is, next to what was handed over before.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Repeat {
    /// Nothing like it was handed over: queue it.
    New,
    /// The same submission again (a retried request): answer with the earlier one, send
    /// nothing.
    Same {
        /// The earlier one's journal entry.
        journal_id: String,
    },
    /// Another submission under a key that is used (409).
    Conflict(Problem),
}

/// Decides whether `checked` repeats one of `earlier` (what the store found under its UNB
/// reference and document numbers, to the same partner).
///
/// The keys are the ones EDIFACT already makes unique per sender, so a retried request needs
/// no idempotency key of its own: a message is the same when its document number (BGM
/// DE1004) names an earlier message with the same segments and the same envelope values
/// (recipient, application reference; our references and time differ by construction); an
/// interchange is the same when its UNB reference names an earlier one with the same bytes.
/// A used key with other content is a conflict: sending it would give the partner two
/// messages under one number. A message without document number has no key: each request
/// sends it.
pub fn repeat_of(submission: &Submission, checked: &Checked, earlier: &[Earlier]) -> Repeat {
    let conflict = |code: &str, message: String| Repeat::Conflict(Problem::new(code, message));
    match submission {
        Submission::Interchange { .. } => {
            if let Some(e) = earlier
                .iter()
                .find(|e| e.interchange_ref == checked.interchange_ref)
            {
                return if e.pass_through && e.bytes == checked.bytes {
                    Repeat::Same {
                        journal_id: e.journal_id.clone(),
                    }
                } else {
                    conflict(
                        "interchange_reference_used",
                        format!(
                            "UNB reference {:?} was sent to {} before with other content \
                             (journal {})",
                            checked.interchange_ref, checked.partner, e.journal_id
                        ),
                    )
                };
            }
        }
        Submission::Message { .. } => {
            if let Some(e) = earlier.first() {
                return if e.pass_through && same_message(&e.bytes, &checked.bytes) {
                    Repeat::Same {
                        journal_id: e.journal_id.clone(),
                    }
                } else {
                    conflict(
                        "document_number_used",
                        format!(
                            "document number {:?} was sent to {} before with other content \
                             (journal {})",
                            checked.messages[0].document_number.as_deref().unwrap_or(""),
                            checked.partner,
                            e.journal_id
                        ),
                    )
                };
            }
        }
    }
    match earlier.first() {
        Some(e) => conflict(
            "document_number_used",
            format!(
                "a document number of this interchange was sent to {} before (journal {})",
                checked.partner, e.journal_id
            ),
        ),
        None => Repeat::New,
    }
}

/// True when two interchanges of one message each carry the same message to the same
/// recipient (UNB and UNH references and the time aside).
fn same_message(a: &[u8], b: &[u8]) -> bool {
    fn owned(bytes: &[u8]) -> Option<OwnedInterchange> {
        let parsed = parse_lenient(bytes);
        let document = parsed.document.as_ref()?;
        let interchange = document.interchanges().next()?;
        OwnedInterchange::from_parsed(&interchange).ok()
    }
    let (Some(a), Some(b)) = (owned(a), owned(b)) else {
        return false;
    };
    let key = |ic: &OwnedInterchange| {
        (
            ic.header.recipient.clone(),
            ic.header.application_reference.clone(),
            ic.messages
                .iter()
                .map(|m| (m.identifier.clone(), m.segments.clone()))
                .collect::<Vec<_>>(),
        )
    };
    a.messages.len() == 1 && key(&a) == key(&b)
}

/// When the partner's APERAK for a message of `message_type` sent at `sent_at` is due
/// (the deadline rules of `grammars/calendar/deadlines.txt`, counted from sending). `None`
/// for CONTRL and APERAK, which get no APERAK.
pub fn aperak_due(message_type: &str, sent_at: DateTime<Utc>) -> Option<DateTime<Utc>> {
    if matches!(message_type, "CONTRL" | "APERAK") {
        return None;
    }
    DeadlineRules::embedded()
        .due(
            Deadline::Aperak,
            message_type,
            sent_at.naive_utc(),
            Calendar::embedded(),
        )
        .map(|due| due.and_utc())
}

/// The states of a pass-through message (`messages.state`, direction `out`).
pub mod state {
    /// Checked, journaled and in the outbox.
    pub const QUEUED: &str = "queued";
    /// Handed to the partner's transport.
    pub const SENT: &str = "sent";
    /// The partner's APERAK (or, where none is due, its CONTRL) took it.
    pub const ACCEPTED: &str = "accepted";
    /// The partner's CONTRL or APERAK refused it.
    pub const REJECTED: &str = "rejected";
    /// Given up (the outbox item was parked).
    pub const FAILED: &str = "failed";
    /// Every state, for filters and docs.
    pub const ALL: [&str; 5] = [QUEUED, SENT, ACCEPTED, REJECTED, FAILED];
}

/// True when a sent message is past its APERAK deadline with no answer that decided it.
pub fn is_overdue(state: &str, aperak_due: Option<DateTime<Utc>>, now: DateTime<Utc>) -> bool {
    state == state::SENT && aperak_due.is_some_and(|due| now > due)
}

/// What an answer means for the pass-through messages it names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AnswerOutcome {
    /// A positive APERAK: taken.
    Accepted,
    /// A CONTRL or APERAK refusing it.
    Rejected,
    /// A CONTRL without errors: the syntax is fine, the APERAK is still to come (where none is
    /// due, this is the final answer and the message is accepted).
    Received,
}

/// How an answer changes the pass-through records it names: the store applies it as one
/// guarded update per answer, in message order, so that the answers of one batch build on
/// each other without the records being loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AnswerEffect {
    /// The states it changes; a record in another state keeps its state and answer (a
    /// rejection is final; an APERAK's acceptance is not undone by a later positive CONTRL).
    pub from: &'static [&'static str],
    /// The state it sets; `None`: the state stays, except that a sent message for which no
    /// APERAK is due (a CONTRL or APERAK passed through) is accepted.
    pub to: Option<&'static str>,
    /// Only where no answer is shown yet: a positive CONTRL never hides an APERAK's answer.
    pub only_first: bool,
}

impl AnswerOutcome {
    /// What this answer does to a record.
    pub fn effect(self) -> AnswerEffect {
        // A parked item may still have arrived (a transport that timed out after delivery):
        // its partner's answer is the better news.
        const OPEN: &[&str] = &[state::QUEUED, state::SENT, state::FAILED];
        const ANY_BUT_REJECTED: &[&str] =
            &[state::QUEUED, state::SENT, state::FAILED, state::ACCEPTED];
        match self {
            AnswerOutcome::Rejected => AnswerEffect {
                from: ANY_BUT_REJECTED,
                to: Some(state::REJECTED),
                only_first: false,
            },
            AnswerOutcome::Accepted => AnswerEffect {
                from: OPEN,
                to: Some(state::ACCEPTED),
                only_first: false,
            },
            AnswerOutcome::Received => AnswerEffect {
                from: OPEN,
                to: None,
                only_first: true,
            },
        }
    }
}

/// A partner's CONTRL or APERAK about pass-through messages, as their rows show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PassThroughAnswer {
    /// What it means.
    pub outcome: AnswerOutcome,
    /// CONTRL DE0085 codes or APERAK ERC codes (`Z29`).
    pub codes: Vec<String>,
    /// The partner's words (APERAK FTX, with the codes' meanings) or the CONTRL codes'.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The acknowledgement as read (ERC groups with their FTX texts, rejected messages).
    pub acknowledgement: Acknowledgement,
    /// The partner's interchange that carried it (its UNB reference).
    pub interchange: String,
}

/// The pass-through messages an acknowledgement matched, and what it says about them; `None`
/// when it matched none (it is about orders, or nothing).
pub fn answer_of(
    acknowledgement: &Acknowledgement,
    matched: &AckMatch,
    interchange: &str,
) -> Option<(Vec<String>, PassThroughAnswer)> {
    let (messages, outcome, codes, reason): (&[SentMessage], _, _, _) = match matched {
        AckMatch::Unmatched { .. } => return None,
        AckMatch::Accepted { messages } => {
            let outcome = match acknowledgement {
                Acknowledgement::Aperak { .. } => AnswerOutcome::Accepted,
                Acknowledgement::Contrl { .. } => AnswerOutcome::Received,
            };
            (messages, outcome, Vec::new(), None)
        }
        AckMatch::Rejected {
            messages,
            codes,
            reason,
        } => (
            messages,
            AnswerOutcome::Rejected,
            codes.clone(),
            Some(reason.clone()),
        ),
    };
    let mut ids: Vec<String> = Vec::new();
    for id in messages.iter().filter_map(|m| m.pass_through.as_ref()) {
        if !ids.contains(id) {
            ids.push(id.clone());
        }
    }
    (!ids.is_empty()).then(|| {
        (
            ids,
            PassThroughAnswer {
                outcome,
                codes,
                reason,
                acknowledgement: acknowledgement.clone(),
                interchange: interchange.to_string(),
            },
        )
    })
}

/// A queued pass-through message as the outbound worker loads it for its outbox item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedMessage {
    /// `out_…`.
    pub id: String,
    /// Its place in the interchange (0 = the first message).
    pub position: usize,
    /// UNH S009 DE0065.
    pub message_type: String,
}

/// Sending a pass-through: its messages marked sent, each with its APERAK deadline (part of
/// an [`crate::plan::outbound::OutboundPlan`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PassThroughSending {
    /// `(out_…, APERAK due)` per message.
    pub messages: Vec<(String, Option<DateTime<Utc>>)>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    const OWN: &str = "9900000000003";
    const VNB: &str = "9900000000011";

    /// The UTILMD 55220 of `samples/outbound/`, as the core would hand it over: its own
    /// document number (not of the gateway's shape), a UNH reference and a wrong UNT count
    /// that the gateway writes anew.
    const UTILMD: &str = "UNH+1+UTILMD:D:11A:UN:S2.1'\nBGM+E03+CORE4711'\n\
        DTM+137:202606020900?+00:303'\nNAD+MS+9900000000003::293'\nNAD+MR+9900000000011::293'\n\
        IDE+24+CORE4711T'\nSTS+7++ZX4'\nSTS+E01++A01:E_0610::1'\nLOC+Z16+51238696781'\n\
        RFF+Z13:55220'\nRFF+TN:NB0000000006V1'\nUNT+99+1'\n";

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 6, 2, 9, 0, 0).unwrap()
    }

    fn run(submission: &Submission, partner: &str) -> Result<Checked, Refused> {
        run_from(submission, partner, 100)
    }

    /// [`run`] with the references from `first` on.
    fn run_from(submission: &Submission, partner: &str, first: u64) -> Result<Checked, Refused> {
        let mut references = ReferenceSequence::new("MG", first).unwrap();
        check(
            submission,
            &mut CheckContext {
                registry: Registry::embedded(),
                own_id: OWN,
                partner,
                reference_prefix: "MG",
                now: now(),
                references: &mut references,
            },
        )
    }

    fn message(text: &str) -> Submission {
        Submission::Message {
            text: text.to_string(),
            application_reference: None,
        }
    }

    fn codes(refused: &Refused) -> Vec<&str> {
        refused.problems.iter().map(|p| p.code.as_str()).collect()
    }

    #[test]
    fn a_message_gets_our_envelope_references_and_counts_and_is_validated() {
        let checked = run(&message(UTILMD), VNB).unwrap();
        let text = String::from_utf8(checked.bytes.clone()).unwrap();
        assert!(
            text.starts_with("UNA:+.? 'UNB+UNOC:3+9900000000003:500+9900000000011:500+260602:0900+MG0000002S'UNH+MG0000002T+UTILMD:D:11A:UN:S2.1'BGM+E03+CORE4711'"),
            "{text}"
        );
        assert!(
            text.ends_with("UNT+12+MG0000002T'UNZ+1+MG0000002S'"),
            "{text}"
        );
        assert_eq!(checked.interchange_ref, "MG0000002S");
        let m = &checked.messages[0];
        assert_eq!(
            (m.message_type.as_str(), m.pid, m.message_ref.as_str()),
            ("UTILMD", Some(55220), "MG0000002T")
        );
        assert_eq!(m.document_number.as_deref(), Some("CORE4711"));
        assert!(m.checked);
    }

    #[test]
    fn a_message_with_an_ahb_error_is_refused_with_its_place_in_the_message() {
        let broken = UTILMD.replace("LOC+Z16+51238696781'\n", "");
        let refused = run(&message(&broken), VNB).unwrap_err();
        assert_eq!(refused.field, "message");
        let p = &refused.problems[0];
        let place = p.position.as_ref().unwrap();
        assert_eq!(place.message, Some(1));
        assert_eq!(place.segment, place.message_segment, "UNH = 1 in a message");
        assert!(!p.message.is_empty());
    }

    #[test]
    fn a_message_type_without_grammar_is_taken_unchecked() {
        let mscons = "UNH+1+MSCONS:D:04B:UN:2.4c'BGM+7+CORE1'UNT+3+1'";
        let checked = run(&message(mscons), VNB).unwrap();
        assert!(!checked.messages[0].checked);
        assert!(NO_GRAMMAR_RULES.contains(&checked.messages[0].findings[0].code.as_str()));
    }

    #[test]
    fn a_message_is_refused_when_it_is_an_interchange_unterminated_or_not_latin_1() {
        let refused = run(&message("UNB+UNOC:3+1+2+3+4'"), VNB).unwrap_err();
        assert_eq!(codes(&refused), ["not_a_message"]);
        let refused = run(&message("UNH+1+MSCONS:D:04B:UN:2.4c'BGM+7+X'UNT+3+1"), VNB).unwrap_err();
        assert_eq!(codes(&refused), ["unterminated_segment"]);
        let refused = run(
            &message("UNH+1+MSCONS:D:04B:UN:2.4c'\nBGM+7+Ł'UNT+3+1'"),
            VNB,
        )
        .unwrap_err();
        assert_eq!(codes(&refused), ["unrepresentable"]);
        let place = refused.problems[0].position.as_ref().unwrap();
        assert_eq!((place.line, place.column), (Some(2), Some(7)));
        let refused = run(
            &message("UNH+1+MSCONS:D:04B:UN:2.4c'BGM+7+MG00000001'UNT+3+1'"),
            VNB,
        )
        .unwrap_err();
        assert_eq!(codes(&refused), ["reserved_reference"]);
    }

    #[test]
    fn a_message_with_its_own_una_is_read_with_those_delimiters() {
        let text = "UNA|^,\\ ~UNH^1^MSCONS|D|04B|UN|2.4c~BGM^7^A\\^B~UNT^3^1~";
        let checked = run(&message(text), VNB).unwrap();
        let text = String::from_utf8(checked.bytes).unwrap();
        assert!(text.contains("BGM+7+A^B'"), "{text}");
        assert_eq!(checked.messages[0].document_number.as_deref(), Some("A^B"));
    }

    fn interchange(sender: &str, recipient: &str, reference: &str, count: &str) -> Submission {
        Submission::Interchange {
            text: format!(
                "UNA:+.? '\nUNB+UNOC:3+{sender}:500+{recipient}:500+260602:0900+{reference}'\n\
                 UNH+1+MSCONS:D:04B:UN:2.4c'\nBGM+7+DOC1'\nUNT+3+1'\nUNZ+{count}+{reference}'\n"
            ),
        }
    }

    #[test]
    fn an_interchange_is_sent_as_given_after_the_envelope_checks() {
        let submission = interchange(OWN, VNB, "CORE1", "1");
        let checked = run(&submission, VNB).unwrap();
        let Submission::Interchange { text } = &submission else {
            unreachable!()
        };
        assert_eq!(checked.bytes, text.as_bytes());
        assert_eq!(checked.interchange_ref, "CORE1");

        let refused = run(&interchange(VNB, OWN, "MG00000001", "1"), VNB).unwrap_err();
        assert_eq!(refused.field, "interchange");
        assert_eq!(
            codes(&refused),
            [
                "sender_not_us",
                "recipient_not_partner",
                "reserved_reference"
            ]
        );
        let refused = run(&interchange(OWN, VNB, "CORE1", "2"), VNB).unwrap_err();
        assert_eq!(codes(&refused), ["control_count_mismatch"]);
        let place = refused.problems[0].position.as_ref().unwrap();
        assert_eq!((place.segment, place.line), (Some(5), Some(6)));
    }

    #[test]
    fn a_repeated_submission_is_recognised_by_the_keys_edifact_makes_unique() {
        let submission = message(UTILMD);
        let first = run(&submission, VNB).unwrap();
        let again = run_from(&submission, VNB, 200).unwrap();
        assert_ne!(first.bytes, again.bytes, "new references each time");
        let earlier = |bytes: &[u8]| Earlier {
            journal_id: "jrn_1".into(),
            interchange_ref: first.interchange_ref.clone(),
            bytes: bytes.to_vec(),
            pass_through: true,
        };
        assert_eq!(repeat_of(&submission, &again, &[]), Repeat::New);
        assert_eq!(
            repeat_of(&submission, &again, &[earlier(&first.bytes)]),
            Repeat::Same {
                journal_id: "jrn_1".into()
            }
        );
        let other = run(&message(&UTILMD.replace("A01", "A02")), VNB);
        // A02 may be refused by the AHB; the other content is what matters here.
        let other_bytes = other.map(|c| c.bytes).unwrap_or_else(|_| b"x".to_vec());
        assert!(matches!(
            repeat_of(&submission, &again, &[earlier(&other_bytes)]),
            Repeat::Conflict(p) if p.code == "document_number_used"
        ));
    }

    #[test]
    fn aperak_deadlines_come_from_the_rules_and_none_for_acknowledgements() {
        let sent = now();
        let due = aperak_due("UTILMD", sent).unwrap();
        assert_eq!(due - sent, chrono::Duration::minutes(45));
        assert!(aperak_due("APERAK", sent).is_none());
        assert!(is_overdue(
            "sent",
            Some(due),
            due + chrono::Duration::seconds(1)
        ));
        assert!(!is_overdue(
            "accepted",
            Some(due),
            due + chrono::Duration::days(1)
        ));
        assert!(!is_overdue("sent", None, due));
    }

    #[test]
    fn a_rejection_is_final_and_a_positive_contrl_never_hides_an_aperak() {
        let rejected = AnswerOutcome::Rejected.effect();
        assert!(rejected.from.contains(&state::ACCEPTED));
        assert!(!rejected.from.contains(&state::REJECTED));
        let accepted = AnswerOutcome::Accepted.effect();
        assert_eq!(accepted.to, Some(state::ACCEPTED));
        assert!(!accepted.from.contains(&state::REJECTED));
        let received = AnswerOutcome::Received.effect();
        assert_eq!(received.to, None);
        assert!(received.only_first);
    }

    #[test]
    fn answers_name_only_pass_through_messages() {
        let sent = |pass_through: Option<&str>| SentMessage {
            interchange_reference: "CORE1".into(),
            message_reference: "1".into(),
            document_number: "DOC1".into(),
            order: None,
            pass_through: pass_through.map(str::to_string),
        };
        let aperak = Acknowledgement::Aperak {
            positive: false,
            interchange_reference: None,
            document_number: Some("DOC1".into()),
            transaction_reference: None,
            errors: Vec::new(),
        };
        let rejected = AckMatch::Rejected {
            messages: vec![sent(Some("out_1")), sent(None)],
            codes: vec!["Z29".into()],
            reason: "Z29 …".into(),
        };
        let (ids, answer) = answer_of(&aperak, &rejected, "NB1").unwrap();
        assert_eq!(ids, ["out_1"]);
        assert_eq!(answer.outcome, AnswerOutcome::Rejected);
        assert_eq!(answer.codes, ["Z29"]);
        let orders_only = AckMatch::Accepted {
            messages: vec![sent(None)],
        };
        assert!(answer_of(&aperak, &orders_only, "NB1").is_none());
    }
}
