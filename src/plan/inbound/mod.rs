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

//!
//! One file per step: `read` (step 1), `loaded` (what the caller loads between the
//! steps), [`decide`] (applying the items), and here the plan that puts them together.

mod decide;
mod loaded;
mod read;

pub use decide::{decide, Candidates, DecideContext, Effect};
pub use loaded::{BatchKeys, Loaded, LoadedSent};
pub use read::{
    journal_facts, read_inbound, AperakState, InboundItem, JournalFacts, LookupKey, MessageState,
    ReadInbound, ReceivedMessage,
};

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::records::{
    serde_text, ChangedOrder, NewClearing, NewOutboxItem, OrderChange, OutboxKind, WebhookEvent,
};
use crate::edifact::{LineBreak, OwnedInterchange, ReferenceSequence, Writer};
use crate::ids::new_id;
use crate::orders::{PartnerStatusRules, Sender};

/// The prefix of every reference the gateway writes (UNB 0020, UNH 0062, BGM 1004).
pub const REFERENCE_PREFIX: &str = "MG";

/// The start of the reason of an interchange that could not be read.
pub const UNREADABLE: &str = "unreadable interchange";
/// The reason of an interchange without messages.
pub const NO_MESSAGE: &str = "no message in the interchange";

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
    /// Per message not handled here: forwarded or refused, checked or not, who owes the APERAK.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub routed: Vec<ReceivedMessage>,
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

    /// The journal outcome: the report as JSON text, written straight from the report (the
    /// same text as through a `serde_json::Value`, which keeps the fields' order here, but
    /// without building that tree first: for an interchange of 27,000 messages the tree was
    /// the largest thing held while processing it, after its bytes).
    pub fn outcome_text(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| "null".to_string())
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
    /// The messages forwarded to the core or refused (none in a dry run).
    pub messages: Vec<NewReceivedMessage>,
    /// When each outbox item must have left (our deadline), in the order of `outbox`.
    pub outbox_due: Vec<Option<DateTime<Utc>>>,
    /// The answers we waited for that this interchange gives (its sender's ORDRSP and APERAK).
    pub met: Vec<crate::plan::deadlines::MetKey>,
    /// Set when the interchange answers something of ours that is built and kept in the
    /// outbox but not yet recorded as sent (the reference it names, see
    /// [`Loaded::in_flight`]): it matched nothing only because it came before our own record
    /// of sending. Such a plan changes nothing; its journal item stays claimed and is taken
    /// again after [`WAIT_FOR_SENDING`], until the sending is recorded (then it matches) or
    /// the item is no longer in flight (parked: then it goes to clearing as before).
    pub waits_for: Option<String>,
}

/// How long an interchange that answers something still being sent waits before it is planned
/// again ([`InboundPlan::waits_for`]): the sending is recorded milliseconds after the partner
/// took it, or, after a crash, once the outbox item's lease has expired and it was resent.
pub const WAIT_FOR_SENDING: std::time::Duration = std::time::Duration::from_secs(1);

/// The reference of ours still being sent that `read` names, when an item of it matched
/// nothing (see [`InboundPlan::waits_for`]).
fn waits_for_sending(read: &ReadInbound, effects: &[Effect], loaded: &Loaded) -> Option<String> {
    if !effects.iter().any(|e| matches!(e, Effect::Clearing { .. })) {
        return None;
    }
    read.items
        .iter()
        .flat_map(InboundItem::keys)
        .find_map(|key| {
            key.our_reference()
                .filter(|r| loaded.in_flight.iter().any(|f| f == r))
                .map(str::to_string)
        })
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
    if let Some(reference) = waits_for_sending(&read, &effects, loaded) {
        return InboundPlan {
            report: InboundReport {
                journal_id: journal_id.map(str::to_string),
                facts: read.facts,
                syntax_errors: read.syntax_errors,
                effects: Vec::new(),
                replies: Vec::new(),
                routed: Vec::new(),
            },
            order_changes: Vec::new(),
            outbox: Vec::new(),
            clearing: Vec::new(),
            messages: Vec::new(),
            outbox_due: Vec::new(),
            met: Vec::new(),
            waits_for: Some(reference),
        };
    }
    let now = context.now;
    let reply = |partner: &str, payload: Vec<u8>| NewOutboxItem {
        kind: OutboxKind::Ack,
        order: None,
        partner: partner.to_string(),
        payload: Some(payload),
        journal_id: journal_id.map(str::to_string),
    };
    let mut outbox = Vec::new();
    let mut outbox_due = Vec::new();
    let mut replies = Vec::new();
    // The business message type answered (for the APERAK deadline: 45 minutes for
    // UTILMD/ORDERS). Counted from processing, which follows receipt within the poll interval.
    let answered_type = read
        .facts
        .message_types
        .iter()
        .find(|t| !matches!(t.as_str(), "CONTRL" | "APERAK"))
        .cloned()
        .unwrap_or_default();
    for ic in &read.replies {
        let reply_type = ic
            .messages
            .first()
            .map(|m| m.identifier.message_type.clone())
            .unwrap_or_default();
        outbox_due.push(crate::plan::deadlines::our_due(
            &reply_type,
            &answered_type,
            now.naive_utc(),
        ));
        replies.push(reply_type);
        outbox.push(reply(&partner, write(ic)));
    }
    let mut order_changes = Vec::new();
    let mut clearing = Vec::new();
    for effect in &effects {
        // An order changed: the change with its history row and event, and the order written
        // back for the interchanges after this one.
        let changed = match effect {
            Effect::GridFee {
                from,
                order,
                event,
                message,
            } => Some((
                ChangedOrder::GridFee(order.clone()),
                &order.subscription,
                serde_text(&order.status),
                from,
                event,
                message,
            )),
            Effect::Meter {
                from,
                order,
                event,
                message,
            } => Some((
                ChangedOrder::Meter(order.clone()),
                &order.subscription,
                serde_text(&order.status),
                from,
                event,
                message,
            )),
            _ => None,
        };
        if let Some((order, subscription, to, from, event, message)) = changed {
            loaded.update(&order);
            let version = versions.get(order.id()).copied().unwrap_or(1);
            order_changes.push(OrderChange::new(
                order,
                version,
                subscription,
                from,
                &to,
                *event,
                journal_id,
                message,
                now,
            ));
            continue;
        }
        match effect {
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
                outbox_due.push(crate::plan::deadlines::our_due(
                    "UTILMD",
                    "UTILMD",
                    now.naive_utc(),
                ));
                outbox.push(reply(to, write(interchange)));
            }
            // A pass-through answer is carried out from the report's effects by the store.
            // An interchange nobody can read (or one without messages) is answered by CONTRL
            // where the rules ask, and kept for a person to look at, never silently processed.
            Effect::Nothing { reason, .. }
                if reason.starts_with(UNREADABLE) || reason.starts_with(NO_MESSAGE) =>
            {
                if let Some(j) = journal_id {
                    clearing.push(NewClearing {
                        journal_id: j.to_string(),
                        reason: reason.clone(),
                    });
                }
            }
            Effect::GridFee { .. }
            | Effect::Meter { .. }
            | Effect::NotApplied { .. }
            | Effect::PassThroughAnswered { .. }
            | Effect::Nothing { .. } => {}
        }
    }
    let met = met_by(&read);
    let messages = journal_id
        .map(|j| {
            read.messages
                .iter()
                .map(|m| NewReceivedMessage::new(m, j, &partner, now))
                .collect()
        })
        .unwrap_or_default();
    InboundPlan {
        report: InboundReport {
            journal_id: journal_id.map(str::to_string),
            facts: read.facts,
            syntax_errors: read.syntax_errors,
            effects,
            replies,
            routed: read.messages,
        },
        order_changes,
        outbox,
        clearing,
        messages,
        outbox_due,
        met,
        waits_for: None,
    }
}

/// A received message for the `messages` table: forwarded to the core or refused, with the
/// webhook `message.received` when it waits for the core. What was read is the report's
/// ([`InboundReport::routed`], in the same order as [`InboundPlan::messages`]), not copied
/// here: an interchange of 27,000 messages held every message's findings twice.
#[derive(Debug, Clone, PartialEq)]
pub struct NewReceivedMessage {
    /// `msg_…`.
    pub id: String,
    /// The interchange's journal item.
    pub journal_id: String,
    /// The sender (UNB).
    pub partner: String,
    /// `message.received` (ids only), for a message offered to the core.
    pub event: Option<WebhookEvent>,
}

/// The webhook topic of a message offered to the core.
pub const MESSAGE_RECEIVED: &str = "message.received";

impl NewReceivedMessage {
    /// The record of `message` of journal item `journal_id` from `partner`, with a new id.
    pub fn new(
        message: &ReceivedMessage,
        journal_id: &str,
        partner: &str,
        now: DateTime<Utc>,
    ) -> NewReceivedMessage {
        let id = new_id("msg", now);
        let event = (message.state == MessageState::New).then(|| {
            WebhookEvent::new(
                MESSAGE_RECEIVED,
                serde_json::json!({ "message": id, "journal": journal_id }),
                now,
            )
        });
        NewReceivedMessage {
            id,
            journal_id: journal_id.to_string(),
            partner: partner.to_string(),
            event,
        }
    }
}

/// The deadlines a received interchange meets: its answers to our orders and its APERAKs, each
/// keyed by its sender, so that only the partner a message went to can meet its deadline.
pub fn met_by(read: &ReadInbound) -> Vec<crate::plan::deadlines::MetKey> {
    use crate::acks::Acknowledgement;
    use crate::orders::lifecycle::METER_ORDER_DECISION_TREE;
    use crate::orders::Answer;
    use crate::plan::deadlines::{Awaiting, MetKey};
    let Some(partner) = read.facts.sender.clone() else {
        return Vec::new();
    };
    let key = |awaiting, reference: Option<&String>, interchange_ref: Option<&String>| MetKey {
        partner: partner.clone(),
        awaiting,
        reference: reference.cloned(),
        interchange_ref: interchange_ref.cloned(),
    };
    let mut out = Vec::new();
    for item in &read.items {
        match item {
            // An ORDRSP on another decision tree than our iMSys orders' (E_0283, the offer
            // route) answers no order of ours (`orders::match_answer` sends it to clearing), so
            // it does not meet the ORDRSP we wait for either.
            InboundItem::Answer {
                answer: Answer::MeterOrderResponse { decision_tree, .. },
                ..
            } if decision_tree != METER_ORDER_DECISION_TREE => {}
            InboundItem::Answer {
                answer:
                    Answer::GridFeeResponse { order_document, .. }
                    | Answer::MeterOrderResponse { order_document, .. },
                ..
            } => out.push(key(Awaiting::Ordrsp, Some(order_document), None)),
            InboundItem::Acknowledgement {
                acknowledgement:
                    Acknowledgement::Aperak {
                        document_number,
                        interchange_reference,
                        ..
                    },
            } => match document_number {
                Some(d) => out.push(key(Awaiting::Aperak, Some(d), None)),
                None => out.push(key(Awaiting::Aperak, None, interchange_reference.as_ref())),
            },
            _ => {}
        }
    }
    out
}
