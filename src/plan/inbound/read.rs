//! Step 1 of the inbound path: one parse of the received bytes gives the journal facts, the
//! validation, the CONTRL/APERAK to send back, and the business items with the keys to look
//! their orders up by.

use serde::Serialize;

use chrono::NaiveDateTime;

use crate::acks::{
    plan_parsed, read_acknowledgements, read_envelope, read_envelope_parsed, AckContext,
    Acknowledgement, Calendar, Deadline, DeadlineRules,
};
use crate::edifact::{parse_lenient, OwnedInterchange, ParseOutcome};
use crate::grammar::Level;
use crate::orders::{read_answers, Answer};
use crate::plan::routing::{route_of_message, Route, RoutingTable};

/// What the journal records about a received interchange.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct JournalFacts {
    /// UNB sender (market partner ID), if readable.
    pub sender: Option<String>,
    /// UNB recipient, if readable.
    pub recipient: Option<String>,
    /// UNB DE0020, if readable.
    pub interchange_reference: Option<String>,
    /// UNH DE0062 of every message.
    pub message_references: Vec<String>,
    /// The PIDs of the messages (RFF+Z13), where they carry one.
    pub pids: Vec<u32>,
    /// Message types (`ORDRSP`, `UTILMD`, …).
    pub message_types: Vec<String>,
}

/// Reads the journal facts from raw bytes (never fails: unreadable parts stay empty).
pub fn journal_facts(raw: &[u8]) -> JournalFacts {
    facts_of(raw, &parse_lenient(raw))
}

/// The journal facts of `raw` from its parse (the envelope from the tree when there is one,
/// else from the bytes: the UNB of a broken interchange still names its sender).
fn facts_of(raw: &[u8], parsed: &ParseOutcome<'_>) -> JournalFacts {
    let mut facts = JournalFacts::default();
    let envelope = parsed
        .document
        .as_ref()
        .and_then(read_envelope_parsed)
        .or_else(|| read_envelope(raw));
    if let Some(env) = envelope {
        facts.sender = Some(env.sender.id.clone());
        facts.recipient = Some(env.recipient.id.clone());
        facts.interchange_reference = Some(env.control_reference.clone());
    }
    if let Some(doc) = &parsed.document {
        for ic in doc.interchanges() {
            for m in ic.messages() {
                facts.message_references.push(m.reference().into_owned());
                facts.message_types.push(m.message_type().into_owned());
                if let Some(pid) = crate::grammar::message_pid(&m) {
                    facts.pids.push(pid);
                }
            }
        }
    }
    facts
}

/// Where to look an item's order up.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(tag = "by", content = "value", rename_all = "snake_case")]
pub enum LookupKey {
    /// Our ORDERS document number (RFF+ON of an ORDRSP, RFF+AGI of an IFTSTA).
    OrderDocument(String),
    /// A market location (UTILMD 55218).
    MarketLocation(String),
    /// A Messlokation (UTILMD 55653, IFTSTA 21025).
    MeteringLocation(String),
    /// What we sent in this interchange to this partner (CONTRL, APERAK by RFF+ACE).
    SentInterchange(String),
    /// Our message with this document number (APERAK RFF+AGO).
    SentDocument(String),
}

impl LookupKey {
    /// The reference of ours this key names (a document number or interchange reference we
    /// wrote), if it names one rather than a location.
    pub fn our_reference(&self) -> Option<&str> {
        match self {
            LookupKey::OrderDocument(r)
            | LookupKey::SentInterchange(r)
            | LookupKey::SentDocument(r) => Some(r),
            LookupKey::MarketLocation(_) | LookupKey::MeteringLocation(_) => None,
        }
    }

    /// True when the key names a reference of ours ([`LookupKey::our_reference`]).
    pub fn names_ours(&self) -> bool {
        self.our_reference().is_some()
    }
}

/// One business item of the interchange.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "item", rename_all = "snake_case")]
pub enum InboundItem {
    /// An answer to one of our orders.
    Answer {
        /// UNH DE0062.
        message: String,
        /// What it says.
        answer: Answer,
    },
    /// A CONTRL or APERAK about what we sent.
    Acknowledgement {
        /// What it says.
        acknowledgement: Acknowledgement,
    },
    /// A message that changes nothing here, with the reason (kept in the journal outcome).
    NotProcessed {
        /// UNH DE0062 (empty when the interchange could not be read).
        message: String,
        /// Why.
        reason: String,
    },
}

impl InboundItem {
    /// The keys to look the item's order up by.
    pub fn keys(&self) -> Vec<LookupKey> {
        match self {
            InboundItem::Answer { answer, .. } => vec![match answer {
                Answer::GridFeeResponse { order_document, .. }
                | Answer::MeterOrderResponse { order_document, .. } => {
                    LookupKey::OrderDocument(order_document.clone())
                }
                Answer::StatusReport(r) => LookupKey::OrderDocument(r.order_document.clone()),
                Answer::BillingData(data) => {
                    LookupKey::MarketLocation(data.market_location.clone())
                }
                Answer::MeteringLocationData {
                    metering_location, ..
                } => LookupKey::MeteringLocation(metering_location.clone()),
                Answer::MeteringChangeFailed(r) => {
                    LookupKey::MeteringLocation(r.metering_location.clone())
                }
            }],
            InboundItem::Acknowledgement { acknowledgement } => match acknowledgement {
                Acknowledgement::Contrl {
                    interchange_reference,
                    ..
                } => vec![LookupKey::SentInterchange(interchange_reference.clone())],
                Acknowledgement::Aperak {
                    interchange_reference,
                    document_number,
                    ..
                } => document_number
                    .iter()
                    .map(|d| LookupKey::SentDocument(d.clone()))
                    .chain(
                        interchange_reference
                            .iter()
                            .map(|i| LookupKey::SentInterchange(i.clone())),
                    )
                    .collect(),
            },
            InboundItem::NotProcessed { .. } => Vec::new(),
        }
    }
}

/// Who answers a forwarded or refused message with its APERAK, as far as decided on receipt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AperakState {
    /// None is sent: the CONTRL rejected the message (or its interchange).
    None,
    /// The gateway sent it with the replies: its own findings, or a refusal.
    Sent,
    /// The supplier core owes it (`POST /messages/{id}/aperak`) by the deadline.
    Core,
}

impl AperakState {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            AperakState::None => "none",
            AperakState::Sent => "sent",
            AperakState::Core => "core",
        }
    }
}

/// The state of a received message in the forward feed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageState {
    /// Forwarded, not yet taken by the core.
    New,
    /// Forwarded and taken by the core (`POST /messages/{id}/ack`).
    Taken,
    /// Forwarded, but rejected by our acknowledgement (CONTRL or negative APERAK): it counts
    /// as not received (APERAK AHB 1.1 §1.4/§2.5) and is kept for reading, not offered as new.
    Rejected,
    /// Refused by the routing table (negative APERAK sent).
    Refused,
}

impl MessageState {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            MessageState::New => "new",
            MessageState::Taken => "taken",
            MessageState::Rejected => "rejected",
            MessageState::Refused => "refused",
        }
    }

    /// Reads a stored name.
    pub fn parse(text: &str) -> Option<MessageState> {
        [
            MessageState::New,
            MessageState::Taken,
            MessageState::Rejected,
            MessageState::Refused,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
    }
}

/// A message's findings as JSON text (an array, [`Finding`](crate::grammar::Finding)'s fields),
/// written once from the report ([`JsonText::of_findings`]): what the `messages` row stores,
/// and what the journal outcome embeds as it is.
///
/// [`JsonText::of_findings`]: crate::plan::records::JsonText::of_findings
pub type FindingsJson = crate::plan::records::JsonText;

/// A received business message that is not ours to handle: forwarded to the core or refused.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReceivedMessage {
    /// Position in the interchange (from 0).
    pub position: usize,
    /// UNH DE0062.
    pub message_ref: String,
    /// UNH S009 DE0065 (`MSCONS`).
    pub message_type: String,
    /// UNH S009 DE0057 (`2.4c`).
    pub version: String,
    /// RFF+Z13, where the message carries one.
    pub pid: Option<u32>,
    /// BGM DE1004, where readable.
    pub document_number: Option<String>,
    /// Forward or refuse.
    pub route: Route,
    /// False when we hold no grammar for its type and version (forwarded unchecked).
    pub checked: bool,
    /// What the validation found (errors and warnings with their positions).
    pub findings: FindingsJson,
    /// Its state in the feed.
    pub state: MessageState,
    /// Who answers it with an APERAK.
    pub aperak: AperakState,
    /// When the APERAK is due (UTC; APERAK AHB 1.1 §2.5.1), if the core owes it.
    pub aperak_due: Option<NaiveDateTime>,
}

/// A received interchange, read.
#[derive(Debug)]
pub struct ReadInbound {
    /// For the journal.
    pub facts: JournalFacts,
    /// The CONTRL and APERAK to send back (already built).
    pub replies: Vec<OwnedInterchange>,
    /// Syntax errors with their positions (for the journal outcome and the logs).
    pub syntax_errors: Vec<String>,
    /// The business items, in message order.
    pub items: Vec<InboundItem>,
    /// The messages forwarded to the core or refused, in message order.
    pub messages: Vec<ReceivedMessage>,
}

/// Step 1: parse (once: the one tree serves the journal facts, the validation, the
/// acknowledgements and the reading of answers and acknowledgements), validate, plan the
/// acknowledgements and read the items. Messages with errors are answered (CONTRL/APERAK) and
/// not applied: a rejected Geschäftsvorfall counts as not received (APERAK AHB 1.1 §1.4/§2.5).
///
/// `routing` decides per message whether one of our workflows reads it, the core gets it, or
/// it is refused; `context.processing` should be the same table's
/// [`RoutingCheck`](crate::plan::routing::RoutingCheck), so that the acknowledgements agree.
pub fn read_inbound(
    raw: &[u8],
    context: &mut AckContext<'_>,
    routing: &RoutingTable,
) -> ReadInbound {
    let parsed = parse_lenient(raw);
    let facts = facts_of(raw, &parsed);
    let acks = plan_parsed(raw, &parsed, context);
    let interchange = parsed
        .document
        .as_ref()
        .and_then(|d| d.interchanges().next());
    let routed: Vec<(Route, Option<String>)> = interchange
        .iter()
        .flat_map(|ic| ic.messages())
        .map(|m| {
            let document_number = m
                .body()
                .find(|s| s.is(b"BGM"))
                .map(|s| s.value(2, 1).into_owned())
                .filter(|d| !d.is_empty());
            (
                route_of_message(routing, context.registry, &m),
                document_number,
            )
        })
        .collect();
    let (rules, calendar) = (DeadlineRules::embedded(), Calendar::embedded());
    let mut messages = Vec::new();
    let mut items = Vec::new();
    let syntax_errors: Vec<String> = acks.syntax_errors.iter().map(|e| e.to_string()).collect();
    if acks.reports.is_empty() {
        items.push(InboundItem::NotProcessed {
            message: String::new(),
            reason: match syntax_errors.first() {
                Some(e) => format!("{}: {e}", super::UNREADABLE),
                None => super::NO_MESSAGE.into(),
            },
        });
    }
    let mut has_acknowledgements = false;
    for (position, report) in acks.reports.iter().enumerate() {
        let message_type = report.identifier.split(':').next().unwrap_or("");
        if matches!(message_type, "CONTRL" | "APERAK") {
            has_acknowledgements = true;
            continue;
        }
        let (route, document_number) = routed
            .get(position)
            .cloned()
            .unwrap_or((Route::Forward, None));
        if route != Route::Handle {
            let syntax_rejected = report.errors(Level::Syntax).next().is_some()
                || acks.rejects_message(&report.reference);
            let has_errors = report.has_errors() || syntax_rejected;
            let owed_by_core = acks.aperak_owed_by_core.contains(&position);
            let aperak = if owed_by_core {
                AperakState::Core
            } else if syntax_rejected {
                AperakState::None
            } else {
                AperakState::Sent
            };
            let state = match route {
                Route::Refuse => MessageState::Refused,
                _ if has_errors => MessageState::Rejected,
                _ => MessageState::New,
            };
            messages.push(ReceivedMessage {
                position,
                message_ref: report.reference.clone(),
                message_type: message_type.to_string(),
                version: report
                    .identifier
                    .split(':')
                    .nth(4)
                    .unwrap_or_default()
                    .to_string(),
                pid: report.pid,
                document_number,
                route,
                checked: !report.is_unchecked(),
                findings: FindingsJson::of_findings(&report.findings),
                state,
                aperak,
                aperak_due: owed_by_core
                    .then(|| rules.due(Deadline::Aperak, message_type, context.now, calendar))
                    .flatten(),
            });
            items.push(InboundItem::NotProcessed {
                message: report.reference.clone(),
                reason: match (route, state) {
                    (Route::Refuse, _) => "refused by the routing table".to_string(),
                    (_, MessageState::Rejected) => {
                        "rejected by our acknowledgement; kept for the core to read".to_string()
                    }
                    _ if report.is_unchecked() => {
                        "forwarded to the supplier core (unchecked: no grammar)".to_string()
                    }
                    _ => "forwarded to the supplier core".to_string(),
                },
            });
            continue;
        }
        if report.has_errors() {
            let first = report
                .findings
                .iter()
                .find(|f| f.severity == crate::grammar::Severity::Error)
                .map(|f| f.message.clone())
                .unwrap_or_default();
            items.push(InboundItem::NotProcessed {
                message: report.reference.clone(),
                reason: format!("rejected by our acknowledgement: {first}"),
            });
            continue;
        }
        let answers = match (&report.validated, report.pid) {
            (Some(v), Some(pid)) => read_answers(v, pid),
            _ => Vec::new(),
        };
        if answers.is_empty() {
            items.push(InboundItem::NotProcessed {
                message: report.reference.clone(),
                reason: format!(
                    "{} PID {}: not an answer to the orders this gateway sends",
                    report.identifier,
                    report.pid.map_or("none".to_string(), |p| p.to_string())
                ),
            });
        }
        // One item per answer: an IFTSTA 21025 reports one failure per SG14.
        items.extend(answers.into_iter().map(|answer| InboundItem::Answer {
            message: report.reference.clone(),
            answer,
        }));
    }
    if has_acknowledgements {
        if let Some(doc) = &parsed.document {
            if let Some(ic) = doc.interchanges().next() {
                items.extend(
                    read_acknowledgements(&ic)
                        .into_iter()
                        .map(|acknowledgement| InboundItem::Acknowledgement { acknowledgement }),
                );
            }
        }
    }
    ReadInbound {
        facts,
        replies: acks.contrl.into_iter().chain(acks.aperak).collect(),
        syntax_errors,
        items,
        messages,
    }
}
