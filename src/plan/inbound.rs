//! The inbound path's pure core: what a received interchange is (for the journal), what to
//! send back (CONTRL/APERAK, the UTILMD 55220 answer), and what it changes on which order.
//!
//! Two steps, so that the store is only touched between them:
//! 1. [`read_inbound`] parses, validates and plans the acknowledgements, and reads every
//!    answer and acknowledgement with the keys to look its order up by ([`LookupKey`]);
//! 2. the caller loads the orders and sent messages for those keys ([`Loaded`]), and
//!    [`plan_inbound`] applies every answer in message order ([`decide`]: an order changed
//!    twice in one interchange is applied on its changed state) and returns the complete
//!    [`InboundPlan`]: the orders with their history rows and webhook events, the replies for
//!    the outbox, the clearing entries and the journal outcome, for the store to commit in one
//!    call.

use std::collections::HashMap;

use chrono::{DateTime, NaiveDateTime, Utc};
use serde::Serialize;

use super::records::{
    serde_text, ChangedOrder, GridFeeRecord, MeterOrderRecord, NewClearing, NewOutboxItem,
    OrderChange, OrderKind, OutboxKind,
};
use crate::edifact::{LineBreak, ReferenceSequence, Writer};

use crate::acks::{
    match_acknowledgement, plan_parsed, read_acknowledgements, read_envelope, read_envelope_parsed,
    AckContext, AckMatch, Acknowledgement, SentMessage,
};
use crate::edifact::{parse_lenient, OwnedInterchange, ParseOutcome};
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

/// Step 1: parse (once: the one tree serves the journal facts, the validation, the
/// acknowledgements and the reading of answers and acknowledgements), validate, plan the
/// acknowledgements and read the items. Messages with errors are answered (CONTRL/APERAK) and
/// not applied: a rejected Geschäftsvorfall counts as not received (APERAK AHB 1.1 §1.4/§2.5).
pub fn read_inbound(raw: &[u8], context: &mut AckContext<'_>) -> ReadInbound {
    let parsed = parse_lenient(raw);
    let facts = facts_of(raw, &parsed);
    let acks = plan_parsed(raw, &parsed, context);
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

/// The prefix of every reference the gateway writes (UNB 0020, UNH 0062, BGM 1004).
pub const REFERENCE_PREFIX: &str = "MG";

/// References reserved per processed item (an answer needs at most CONTRL + APERAK + 55220,
/// three each).
pub const REFERENCES_PER_ITEM: u32 = 12;

/// An interchange we wrote, as bytes (one line, no breaks between segments).
pub fn write(ic: &OwnedInterchange) -> Vec<u8> {
    Writer::new(ic.header.syntax)
        .with_line_break(LineBreak::None)
        .write_interchange(ic)
        .unwrap_or_default()
}

/// What processing an inbound interchange did (printed by `replay`, kept as the journal
/// outcome).
#[derive(Debug, Clone, Serialize)]
pub struct InboundReport {
    /// The journal item (`None` in a dry run).
    pub journal_id: Option<String>,
    /// Sender, UNB reference, PIDs.
    pub facts: JournalFacts,
    /// Syntax errors with their positions.
    pub syntax_errors: Vec<String>,
    /// What each item did.
    pub effects: Vec<Effect>,
    /// What goes back to the partner (`CONTRL`, `APERAK`, `UTILMD 55220`), by message type.
    pub replies: Vec<String>,
}

impl InboundReport {
    /// True when something went to the clearing list (the message matched no order).
    pub fn has_unmatched(&self) -> bool {
        self.effects
            .iter()
            .any(|e| matches!(e, Effect::Clearing { .. }))
    }

    /// The journal outcome: the report as JSON.
    pub fn outcome(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }
}

/// Everything processing one inbound interchange changes, for the store to commit in one call
/// (together with marking its journal item processed).
#[derive(Debug, Clone)]
pub struct InboundPlan {
    /// What it did (the journal outcome).
    pub report: InboundReport,
    /// The orders changed, each with its history row and webhook event, in message order.
    pub order_changes: Vec<OrderChange>,
    /// What goes back to the partner (CONTRL, APERAK, UTILMD 55220), already built.
    pub outbox: Vec<NewOutboxItem>,
    /// What matched nothing.
    pub clearing: Vec<NewClearing>,
}

/// A message we sent, as loaded for matching: with the partner it went to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadedSent {
    /// The recipient.
    pub partner: String,
    /// The message.
    pub message: SentMessage,
}

/// What the worker loaded from the store for the keys of one or more interchanges: the
/// orders with their stored versions, and what we sent. [`plan_inbound`] takes each
/// interchange's candidates from it and writes the changed orders back, so that the next
/// interchange of a batch plans on them.
#[derive(Debug, Clone, Default)]
pub struct Loaded {
    /// Grid-fee reductions, in id order.
    pub reductions: Vec<GridFeeRecord>,
    /// Meter orders, in id order.
    pub meters: Vec<MeterOrderRecord>,
    /// Sent messages, in id order.
    pub sent: Vec<LoadedSent>,
}

/// The keys of a batch, grouped the way the store looks them up.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchKeys {
    /// Market locations (UTILMD 55218).
    pub market_locations: Vec<String>,
    /// Messlokationen (UTILMD 55620).
    pub metering_locations: Vec<String>,
    /// Our ORDERS document numbers.
    pub order_documents: Vec<String>,
    /// Partners whose acknowledgements name our interchanges or documents.
    pub partners: Vec<String>,
    /// Our interchange references named by acknowledgements.
    pub sent_interchanges: Vec<String>,
    /// Our document numbers named by acknowledgements.
    pub sent_documents: Vec<String>,
}

impl BatchKeys {
    /// The keys of every item of `reads`.
    pub fn of<'r>(reads: impl IntoIterator<Item = &'r ReadInbound>) -> BatchKeys {
        fn add(list: &mut Vec<String>, value: &str) {
            if !list.iter().any(|v| v == value) {
                list.push(value.to_string());
            }
        }
        let mut keys = BatchKeys::default();
        for read in reads {
            for key in read.items.iter().flat_map(InboundItem::keys) {
                match &key {
                    LookupKey::OrderDocument(d) => add(&mut keys.order_documents, d),
                    LookupKey::MarketLocation(m) => add(&mut keys.market_locations, m),
                    LookupKey::MeteringLocation(m) => add(&mut keys.metering_locations, m),
                    LookupKey::SentInterchange(r) => add(&mut keys.sent_interchanges, r),
                    LookupKey::SentDocument(d) => add(&mut keys.sent_documents, d),
                }
                if matches!(
                    key,
                    LookupKey::SentInterchange(_) | LookupKey::SentDocument(_)
                ) {
                    add(
                        &mut keys.partners,
                        read.facts.sender.as_deref().unwrap_or(""),
                    );
                }
            }
        }
        keys
    }

    /// True when nothing is to be looked up.
    pub fn is_empty(&self) -> bool {
        self == &BatchKeys::default()
    }
}

impl Loaded {
    /// The ids of orders named by loaded sent messages that are not loaded themselves (the
    /// store loads them in a second step).
    pub fn missing_orders(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for s in &self.sent {
            if let Some(id) = &s.message.order {
                let loaded = self.reductions.iter().any(|r| &r.order.id == id)
                    || self.meters.iter().any(|m| &m.order.id == id);
                if !loaded && !out.contains(id) {
                    out.push(id.clone());
                }
            }
        }
        out
    }

    /// The candidates of one interchange: what its items' keys name, as the store would have
    /// found them for it alone, with the stored versions.
    fn candidates_for(&self, read: &ReadInbound) -> (Candidates, HashMap<String, i64>) {
        let partner = read.facts.sender.clone().unwrap_or_default();
        let mut candidates = Candidates::default();
        let mut versions: HashMap<String, i64> = HashMap::new();
        let mut sent_refs: Vec<&str> = Vec::new();
        let mut sent_docs: Vec<&str> = Vec::new();
        let keys: Vec<LookupKey> = read.items.iter().flat_map(InboundItem::keys).collect();
        for key in &keys {
            let (malo, melo, doc) = match key {
                LookupKey::OrderDocument(d) => (None, None, Some(d.as_str())),
                LookupKey::MarketLocation(m) => (Some(m.as_str()), None, None),
                LookupKey::MeteringLocation(m) => (None, Some(m.as_str()), None),
                LookupKey::SentInterchange(r) => {
                    sent_refs.push(r);
                    continue;
                }
                LookupKey::SentDocument(d) => {
                    sent_docs.push(d);
                    continue;
                }
            };
            // The reductions at the market location, then the one with the document number;
            // the meter orders at the Messlokation, then the one with the document number.
            if let Some(m) = malo {
                for r in self
                    .reductions
                    .iter()
                    .filter(|r| r.order.market_location.as_str() == m)
                {
                    push_grid(&mut candidates, &mut versions, r);
                }
            }
            if let Some(d) = doc {
                for r in self
                    .reductions
                    .iter()
                    .filter(|r| r.order.order_document.as_deref() == Some(d))
                {
                    push_grid(&mut candidates, &mut versions, r);
                }
            }
            if let Some(m) = melo {
                for r in self.meters.iter().filter(|r| {
                    r.order
                        .metering_location
                        .as_ref()
                        .is_some_and(|l| l.as_str() == m)
                }) {
                    push_meter(&mut candidates, &mut versions, r);
                }
            }
            if let Some(d) = doc {
                for r in self
                    .meters
                    .iter()
                    .filter(|r| r.order.order_document.as_deref() == Some(d))
                {
                    push_meter(&mut candidates, &mut versions, r);
                }
            }
        }
        if !sent_refs.is_empty() || !sent_docs.is_empty() {
            // All our messages of the named interchanges, then per document number the first
            // message with it (to this partner only).
            let ours = || self.sent.iter().filter(|s| s.partner == partner);
            let mut messages: Vec<SentMessage> = Vec::new();
            for r in &sent_refs {
                for s in ours().filter(|s| s.message.interchange_reference == *r) {
                    if !messages.contains(&s.message) {
                        messages.push(s.message.clone());
                    }
                }
            }
            for d in &sent_docs {
                if let Some(s) = ours().find(|s| s.message.document_number == *d) {
                    if !messages.contains(&s.message) {
                        messages.push(s.message.clone());
                    }
                }
            }
            for m in &messages {
                let Some(id) = &m.order else { continue };
                if versions.contains_key(id) {
                    continue;
                }
                if let Some(r) = self.reductions.iter().find(|r| &r.order.id == id) {
                    push_grid(&mut candidates, &mut versions, r);
                } else if let Some(r) = self.meters.iter().find(|r| &r.order.id == id) {
                    push_meter(&mut candidates, &mut versions, r);
                }
            }
            candidates.sent = messages;
        }
        (candidates, versions)
    }

    /// Writes a changed order back, so that later interchanges of the batch plan on it.
    fn update(&mut self, order: &ChangedOrder) {
        match order {
            ChangedOrder::GridFee(o) => {
                if let Some(r) = self.reductions.iter_mut().find(|r| r.order.id == o.id) {
                    r.order = (**o).clone();
                }
            }
            ChangedOrder::Meter(o) => {
                if let Some(r) = self.meters.iter_mut().find(|r| r.order.id == o.id) {
                    r.order = (**o).clone();
                }
            }
        }
    }
}

fn push_grid(c: &mut Candidates, versions: &mut HashMap<String, i64>, r: &GridFeeRecord) {
    if versions.insert(r.order.id.clone(), r.version).is_none() {
        c.reductions.push(r.order.clone());
    }
}

fn push_meter(c: &mut Candidates, versions: &mut HashMap<String, i64>, r: &MeterOrderRecord) {
    if versions.insert(r.order.id.clone(), r.version).is_none() {
        c.meters.push(r.order.clone());
    }
}

/// What planning needs besides the interchange and what was loaded.
#[derive(Debug)]
pub struct PlanContext<'a> {
    /// The grammars.
    pub registry: &'a crate::grammar::Registry,
    /// Us.
    pub sender: &'a Sender,
    /// Per-partner status meanings.
    pub partner_status: &'a PartnerStatusRules,
    /// Now.
    pub now: DateTime<Utc>,
    /// References for what is built while deciding (UTILMD 55220).
    pub references: &'a mut ReferenceSequence,
}

/// Step 2: applies one read interchange to what was loaded and returns the complete plan.
/// `journal_id` is the interchange's journal item (`None` in a dry run: no clearing entries,
/// no journal references). The changed orders are written back into `loaded`.
pub fn plan_inbound(
    read: ReadInbound,
    loaded: &mut Loaded,
    journal_id: Option<&str>,
    context: &mut PlanContext<'_>,
) -> InboundPlan {
    let partner = read.facts.sender.clone().unwrap_or_default();
    let interchange_reference = read.facts.interchange_reference.clone().unwrap_or_default();
    let (candidates, versions) = loaded.candidates_for(&read);
    let effects = decide(
        &read.items,
        &candidates,
        &mut DecideContext {
            registry: context.registry,
            sender: context.sender,
            partner: &partner,
            interchange_reference: &interchange_reference,
            partner_status: context.partner_status,
            now: context.now.naive_utc(),
            references: context.references,
        },
    );
    let now = context.now;
    let reply = |partner: &str, payload: Vec<u8>| NewOutboxItem {
        kind: OutboxKind::Ack,
        order: None,
        partner: partner.to_string(),
        payload: Some(payload),
        journal_id: journal_id.map(str::to_string),
    };
    let mut outbox = Vec::new();
    let mut replies = Vec::new();
    for ic in &read.replies {
        replies.push(
            ic.messages
                .first()
                .map(|m| m.identifier.message_type.clone())
                .unwrap_or_default(),
        );
        outbox.push(reply(&partner, write(ic)));
    }
    let mut order_changes = Vec::new();
    let mut clearing = Vec::new();
    for effect in &effects {
        match effect {
            Effect::GridFee {
                from,
                order,
                event,
                message,
            } => {
                let changed = ChangedOrder::GridFee(order.clone());
                order_changes.push(OrderChange::new(
                    changed.clone(),
                    versions.get(&order.id).copied().unwrap_or(1),
                    &order.subscription,
                    from,
                    &serde_text(&order.status),
                    *event,
                    journal_id,
                    message,
                    now,
                ));
                loaded.update(&changed);
            }
            Effect::Meter {
                from,
                order,
                event,
                message,
            } => {
                let changed = ChangedOrder::Meter(order.clone());
                order_changes.push(OrderChange::new(
                    changed.clone(),
                    versions.get(&order.id).copied().unwrap_or(1),
                    &order.subscription,
                    from,
                    &serde_text(&order.status),
                    *event,
                    journal_id,
                    message,
                    now,
                ));
                loaded.update(&changed);
            }
            Effect::Clearing { reason, .. } => {
                if let Some(j) = journal_id {
                    clearing.push(NewClearing {
                        journal_id: j.to_string(),
                        reason: reason.clone(),
                    });
                }
            }
            Effect::Send {
                partner: to,
                interchange,
                pid,
                ..
            } => {
                replies.push(format!("UTILMD {pid}"));
                outbox.push(reply(to, write(interchange)));
            }
            Effect::NotApplied { .. } | Effect::Nothing { .. } => {}
        }
    }
    InboundPlan {
        report: InboundReport {
            journal_id: journal_id.map(str::to_string),
            facts: read.facts,
            syntax_errors: read.syntax_errors,
            effects,
            replies,
        },
        order_changes,
        outbox,
        clearing,
    }
}

/// The kind of the order a stored id names (`gfr_…` or `mor_…`).
pub fn order_kind_of(id: &str) -> OrderKind {
    if id.starts_with("gfr_") {
        OrderKind::GridFeeReduction
    } else {
        OrderKind::MeterOrder
    }
}
