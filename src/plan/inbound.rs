//! The inbound path's pure core: what a received interchange is (for the journal), what to
//! send back (CONTRL/APERAK, the UTILMD 55220 answer), and what it changes on which order.
//!
//! Two steps, so that the store is only touched between them:
//! 1. [`read_inbound`] parses, validates and plans the acknowledgements, and reads every
//!    answer and acknowledgement with the keys to look its order up by ([`LookupKey`]);
//! 2. the caller loads the orders and sent messages for those keys, and [`decide`] applies
//!    every answer in message order (an order changed twice in one interchange is applied on
//!    its changed state) and returns the [`Effect`]s to commit in one transaction.

use chrono::NaiveDateTime;
use serde::Serialize;

use crate::acks::{
    match_acknowledgement, plan, read_acknowledgements, AckContext, AckMatch, Acknowledgement,
    SentMessage,
};
use crate::edifact::{parse_lenient, OwnedInterchange};
use crate::ids::MarketPartnerId;
use crate::orders::{
    billing_data_answer, match_answer, read_answer, Answer, AnswerMatch, ApplyError,
    BillingDataAnswer, BuiltOrder, GridFeeReduction, Input, MeterOrder, PartnerStatusRules, Sender,
};

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
    let mut facts = JournalFacts::default();
    if let Some(env) = crate::acks::read_envelope(raw) {
        facts.sender = Some(env.sender.id.clone());
        facts.recipient = Some(env.recipient.id.clone());
        facts.interchange_reference = Some(env.control_reference.clone());
    }
    let outcome = parse_lenient(raw);
    if let Some(doc) = &outcome.document {
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
    /// A Messlokation (UTILMD 55620).
    MeteringLocation(String),
    /// What we sent in this interchange to this partner (CONTRL, APERAK by RFF+ACE).
    SentInterchange(String),
    /// Our message with this document number (APERAK RFF+AGO).
    SentDocument(String),
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
                Answer::BillingData {
                    market_location, ..
                } => LookupKey::MarketLocation(market_location.clone()),
                Answer::MeteringLocationChanged {
                    metering_location, ..
                } => LookupKey::MeteringLocation(metering_location.clone()),
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
}

/// Step 1: parse, validate, plan the acknowledgements and read the items. Messages with
/// errors are answered (CONTRL/APERAK) and not applied: a rejected Geschäftsvorfall counts as
/// not received (APERAK AHB 1.1 §1.4/§2.5).
pub fn read_inbound(raw: &[u8], context: &mut AckContext<'_>) -> ReadInbound {
    let facts = journal_facts(raw);
    let acks = plan(raw, context);
    let mut items = Vec::new();
    let syntax_errors: Vec<String> = acks.syntax_errors.iter().map(|e| e.to_string()).collect();
    if acks.reports.is_empty() {
        items.push(InboundItem::NotProcessed {
            message: String::new(),
            reason: match syntax_errors.first() {
                Some(e) => format!("unreadable interchange: {e}"),
                None => "no message in the interchange".into(),
            },
        });
    }
    let mut has_acknowledgements = false;
    for report in &acks.reports {
        let message_type = report.identifier.split(':').next().unwrap_or("");
        if matches!(message_type, "CONTRL" | "APERAK") {
            has_acknowledgements = true;
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
        let answer = match (&report.validated, report.pid) {
            (Some(v), Some(pid)) => read_answer(v, pid),
            _ => None,
        };
        items.push(match answer {
            Some(answer) => InboundItem::Answer {
                message: report.reference.clone(),
                answer,
            },
            None => InboundItem::NotProcessed {
                message: report.reference.clone(),
                reason: format!(
                    "{} PID {}: not an answer to the orders this gateway sends",
                    report.identifier,
                    report.pid.map_or("none".to_string(), |p| p.to_string())
                ),
            },
        });
    }
    if has_acknowledgements {
        if let Some(doc) = parse_lenient(raw).document {
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
    }
}

/// The orders and sent messages the caller loaded for the items' keys.
#[derive(Debug, Clone, Default)]
pub struct Candidates {
    /// Grid-fee reductions.
    pub reductions: Vec<GridFeeReduction>,
    /// Meter orders.
    pub meters: Vec<MeterOrder>,
    /// What we sent to the partner.
    pub sent: Vec<SentMessage>,
}

/// What one item does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "effect", rename_all = "snake_case")]
pub enum Effect {
    /// A grid-fee reduction changed (status or data).
    GridFee {
        /// Status before.
        from: String,
        /// The order after.
        order: Box<GridFeeReduction>,
        /// Webhook topic, if the status changed.
        event: Option<&'static str>,
        /// The message that caused it.
        message: String,
    },
    /// A meter order changed.
    Meter {
        /// Status before.
        from: String,
        /// The order after.
        order: Box<MeterOrder>,
        /// Webhook topic, if something a supplier cares about changed.
        event: Option<&'static str>,
        /// The message that caused it.
        message: String,
    },
    /// Matched an order but did not apply (out of order, not configured …): recorded.
    NotApplied {
        /// The order's id.
        order: String,
        /// Why.
        reason: String,
        /// The message.
        message: String,
    },
    /// Matched nothing: to the clearing list, never dropped.
    Clearing {
        /// Why.
        reason: String,
        /// The message.
        message: String,
    },
    /// A message to send (the UTILMD 55220 answer to a 55218).
    Send {
        /// The recipient.
        partner: String,
        /// The PID.
        pid: u32,
        /// The built interchange.
        #[serde(skip)]
        interchange: Box<OwnedInterchange>,
        /// Its document number.
        document_number: String,
    },
    /// Nothing to do for this item (recorded in the outcome).
    Nothing {
        /// Why.
        reason: String,
        /// The message.
        message: String,
    },
}

/// What `decide` needs besides the items.
#[derive(Debug)]
pub struct DecideContext<'a> {
    /// The grammars.
    pub registry: &'a crate::grammar::Registry,
    /// Us.
    pub sender: &'a Sender,
    /// The partner who sent the interchange (UNB sender).
    pub partner: &'a str,
    /// The UNB reference of the received interchange (names the message that caused a change).
    pub interchange_reference: &'a str,
    /// Per-partner status meanings.
    pub partner_status: &'a PartnerStatusRules,
    /// Now (UTC).
    pub now: NaiveDateTime,
    /// References for what `decide` builds (UTILMD 55220).
    pub references: &'a mut crate::edifact::ReferenceSequence,
}

fn status_of<S: Serialize>(s: &S) -> String {
    serde_json::to_value(s)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// Step 2: applies every item to the loaded candidates, in message order.
pub fn decide(
    items: &[InboundItem],
    candidates: &Candidates,
    context: &mut DecideContext<'_>,
) -> Vec<Effect> {
    let mut reductions = candidates.reductions.clone();
    let mut meters = candidates.meters.clone();
    let mut effects = Vec::new();
    for item in items {
        match item {
            InboundItem::NotProcessed { message, reason } => effects.push(Effect::Nothing {
                reason: reason.clone(),
                message: message.clone(),
            }),
            InboundItem::Answer { message, answer } => {
                let reference = format!("{}/{}", context.interchange_reference, message);
                decide_answer(
                    answer,
                    &reference,
                    &mut reductions,
                    &mut meters,
                    context,
                    &mut effects,
                );
            }
            InboundItem::Acknowledgement { acknowledgement } => {
                let reference = context.interchange_reference.to_string();
                let matched =
                    match_acknowledgement(acknowledgement, context.partner, &candidates.sent[..]);
                let orders: Vec<String> = match &matched {
                    AckMatch::Unmatched { reason } => {
                        effects.push(Effect::Clearing {
                            reason: reason.clone(),
                            message: reference,
                        });
                        continue;
                    }
                    AckMatch::Accepted { messages } | AckMatch::Rejected { messages, .. } => {
                        let mut ids: Vec<String> =
                            messages.iter().filter_map(|m| m.order.clone()).collect();
                        ids.dedup();
                        ids
                    }
                };
                if orders.is_empty() {
                    effects.push(Effect::Nothing {
                        reason: format!("acknowledgement of messages without order: {matched:?}"),
                        message: reference.clone(),
                    });
                }
                for id in orders {
                    let input = Input::Acknowledgement(&matched);
                    apply_to(
                        &id,
                        &input,
                        &reference,
                        &mut reductions,
                        &mut meters,
                        context.now,
                        &mut effects,
                    );
                }
            }
        }
    }
    effects
}

fn decide_answer(
    answer: &Answer,
    reference: &str,
    reductions: &mut [GridFeeReduction],
    meters: &mut [MeterOrder],
    context: &mut DecideContext<'_>,
    effects: &mut Vec<Effect>,
) {
    let ids: Vec<String> = match match_answer(answer, reductions, meters) {
        AnswerMatch::Unmatched { reason } => {
            effects.push(Effect::Clearing {
                reason,
                message: reference.to_string(),
            });
            return;
        }
        AnswerMatch::GridFee(rows) => rows.iter().map(|r| r.id.clone()).collect(),
        AnswerMatch::Meter(m) => vec![m.id.clone()],
    };
    // Partner statuses mean a milestone only where configured for the partner.
    let (input, now) = match answer {
        Answer::StatusReport(report) => {
            match context.partner_status.milestone(context.partner, report) {
                Some(status) => (
                    Input::PartnerStatus(status),
                    report.changed_at.unwrap_or(context.now),
                ),
                None => {
                    effects.push(Effect::NotApplied {
                        order: ids.join(","),
                        reason: format!(
                            "IFTSTA {} status {}:{} has no configured meaning for partner {}",
                            report.pid, report.status, report.code, context.partner
                        ),
                        message: reference.to_string(),
                    });
                    return;
                }
            }
        }
        other => (Input::Answer(other), context.now),
    };
    for id in &ids {
        apply_to(id, &input, reference, reductions, meters, now, effects);
    }
    // Every 55218 is answered with a 55220 (A01: übernommen ohne Anmerkung), whatever it
    // did to the orders: the answer is about the billing data, not the order.
    if let Answer::BillingData {
        market_location,
        transaction,
        periods,
        ..
    } = answer
    {
        let built = (|| -> Result<BuiltOrder, String> {
            let answer = BillingDataAnswer {
                grid_operator: context
                    .partner
                    .parse::<MarketPartnerId>()
                    .map_err(|e| e.to_string())?,
                market_location: market_location.parse().map_err(|e| format!("{e}"))?,
                transaction: transaction.clone(),
                periods: periods.clone(),
                code: "A01",
            };
            billing_data_answer(
                context.registry,
                context.sender,
                &answer,
                context.now,
                context.references,
            )
            .map_err(|e| e.to_string())
        })();
        match built {
            Ok(b) => effects.push(Effect::Send {
                partner: context.partner.to_string(),
                pid: b.pid,
                interchange: Box::new(b.interchange),
                document_number: b.document_number,
            }),
            Err(e) => effects.push(Effect::Nothing {
                reason: format!("UTILMD 55220 could not be built: {e}"),
                message: reference.to_string(),
            }),
        }
    }
}

fn apply_to(
    id: &str,
    input: &Input<'_>,
    reference: &str,
    reductions: &mut [GridFeeReduction],
    meters: &mut [MeterOrder],
    now: NaiveDateTime,
    effects: &mut Vec<Effect>,
) {
    let not_applied = |e: ApplyError| Effect::NotApplied {
        order: id.to_string(),
        reason: e.to_string(),
        message: reference.to_string(),
    };
    if let Some(slot) = reductions.iter_mut().find(|r| r.id == id) {
        let from = status_of(&slot.status);
        match slot.clone().apply(input, now) {
            Ok(applied) => {
                let mut order = applied.order;
                if let Some(r) = order.rejection.as_mut() {
                    r.message_reference.get_or_insert_with(|| reference.into());
                }
                if order != *slot {
                    *slot = order.clone();
                    effects.push(Effect::GridFee {
                        from,
                        order: Box::new(order),
                        event: applied.event,
                        message: reference.to_string(),
                    });
                } else {
                    effects.push(Effect::Nothing {
                        reason: format!("{id}: repeated, no change"),
                        message: reference.to_string(),
                    });
                }
            }
            Err(e) => effects.push(not_applied(e)),
        }
    } else if let Some(slot) = meters.iter_mut().find(|m| m.id == id) {
        let from = status_of(&slot.status);
        match slot.clone().apply(input, now) {
            Ok(applied) => {
                let mut order = applied.order;
                if let Some(r) = order.blocked_reason.as_mut() {
                    r.message_reference.get_or_insert_with(|| reference.into());
                }
                if order != *slot {
                    *slot = order.clone();
                    effects.push(Effect::Meter {
                        from,
                        order: Box::new(order),
                        event: applied.event,
                        message: reference.to_string(),
                    });
                } else {
                    effects.push(Effect::Nothing {
                        reason: format!("{id}: repeated, no change"),
                        message: reference.to_string(),
                    });
                }
            }
            Err(e) => effects.push(not_applied(e)),
        }
    } else {
        effects.push(Effect::Clearing {
            reason: format!("order {id} named by the acknowledgement was not loaded"),
            message: reference.to_string(),
        });
    }
}
