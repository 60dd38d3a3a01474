//! Applying the items of a read interchange to the orders loaded for them, in message order:
//! the effects ([`Effect`]) that the plan turns into records.

use chrono::NaiveDateTime;
use serde::Serialize;

use super::read::InboundItem;
use crate::acks::{match_acknowledgement, AckMatch, SentMessage};
use crate::edifact::OwnedInterchange;
use crate::ids::MarketPartnerId;
use crate::orders::{
    billing_data_answer, match_answer, Answer, AnswerMatch, ApplyError, BillingDataAnswer,
    BuiltOrder, GridFeeReduction, Input, MeterOrder, PartnerStatusRules, Sender,
};

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
    let ids: Vec<String> = match match_answer(answer, context.partner, reductions, meters) {
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
