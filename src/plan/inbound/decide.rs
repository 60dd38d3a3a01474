//! Applying the items of a read interchange to the orders loaded for them, in message order:
//! the effects ([`Effect`]) that the plan turns into records.

use std::collections::HashMap;

use chrono::{NaiveDate, NaiveDateTime};
use serde::Serialize;

use super::read::InboundItem;
use crate::acks::{match_acknowledgement, AckMatch, Calendar, SentMessage};
use crate::edifact::OwnedInterchange;
use crate::ids::MarketPartnerId;
use crate::orders::{
    billing_data_answer, expectation_for, match_answer, review, Answer, AnswerMatch, ApplyError,
    BillingData, BillingDataAnswer, BuiltOrder, GridFeeReduction, Input, MeterOrder,
    PartnerStatusRules, Sender, BILLING_ANSWER_WORKING_DAYS,
};
use crate::plan::passthrough::{answer_of, PassThroughAnswer};

/// The orders and sent messages the caller loaded for the items' keys.
#[derive(Debug, Clone, Default)]
pub struct Candidates {
    /// Grid-fee reductions.
    pub reductions: Vec<GridFeeReduction>,
    /// Meter orders.
    pub meters: Vec<MeterOrder>,
    /// What we sent to the partner.
    pub sent: Vec<SentMessage>,
    /// The fixed change dates of the loaded reductions (ORDERS 17133 `DTM+203`), by id; a
    /// reduction ordered for the next possible date (`DTM+469`) has none. A UTILMD 55218 is
    /// compared with them.
    pub change_dates: HashMap<String, NaiveDate>,
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
    /// A CONTRL or APERAK about pass-through messages of the supplier core: their records
    /// show it (`accepted`, `rejected` with the codes and text).
    PassThroughAnswered {
        /// The pass-through messages (`out_…`).
        messages: Vec<String>,
        /// What the partner said.
        answer: Box<PassThroughAnswer>,
        /// The acknowledgement's interchange.
        message: String,
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
            InboundItem::Answer {
                message,
                answer: Answer::BillingData(data),
            } => {
                let reference = format!("{}/{}", context.interchange_reference, message);
                decide_billing_data(
                    data,
                    &reference,
                    &mut reductions,
                    &mut meters,
                    &candidates.change_dates,
                    context,
                    &mut effects,
                );
            }
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
                let answered = answer_of(acknowledgement, &matched, &reference);
                let pass_through = answered.is_some();
                effects.extend(
                    answered.map(|(messages, answer)| Effect::PassThroughAnswered {
                        messages,
                        answer: Box::new(answer),
                        message: reference.clone(),
                    }),
                );
                if orders.is_empty() && !pass_through {
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
}

/// A UTILMD 55218: applied to the reductions it matches, and answered with a UTILMD 55220 in
/// any case, at once: matched or not, with what we ordered or without (GPKE Teil 2 §3.1.1.2
/// Nr. 2: within 2 working days). The answer to each Zeitraum-ID is A01 where the data agree
/// with what we ordered or we hold no view, A02 with our view where they differ
/// (`orders::billing::review`). The gateway answers itself rather than leaving it to a
/// person, so the deadline cannot pass unnoticed; what a person should look at (a 55218 that
/// matches nothing, differs from our order or leaves it waiting) goes to the clearing list
/// with what was answered, as does a 55220 that could not be built, with its deadline.
fn decide_billing_data(
    data: &BillingData,
    reference: &str,
    reductions: &mut [GridFeeReduction],
    meters: &mut [MeterOrder],
    change_dates: &HashMap<String, NaiveDate>,
    context: &mut DecideContext<'_>,
    effects: &mut Vec<Effect>,
) {
    let answer = Answer::BillingData(data.clone());
    let (ids, unmatched) = match match_answer(&answer, context.partner, reductions, meters) {
        AnswerMatch::GridFee(rows) => (rows.iter().map(|r| r.id.clone()).collect(), None),
        AnswerMatch::Meter(m) => (vec![m.id.clone()], None),
        AnswerMatch::Unmatched { reason } => (Vec::new(), Some(reason)),
    };
    let rows: Vec<&GridFeeReduction> = reductions.iter().filter(|r| ids.contains(&r.id)).collect();
    let expectation = expectation_for(&rows, data, |id| change_dates.get(id).copied());
    let review = review(data, expectation.as_ref());
    let first_effect = effects.len();
    let input = Input::Answer(&answer);
    for id in &ids {
        apply_to(
            id,
            &input,
            reference,
            reductions,
            meters,
            context.now,
            effects,
        );
    }
    let not_applied: Vec<String> = effects[first_effect..]
        .iter()
        .filter_map(|e| match e {
            Effect::NotApplied { order, reason, .. } => Some(format!("{order}: {reason}")),
            _ => None,
        })
        .collect();
    let codes = review
        .answers
        .iter()
        .map(|a| format!("{} {}", a.period, a.code.code()))
        .collect::<Vec<_>>()
        .join(", ");
    let mut findings: Vec<String> = unmatched.into_iter().collect();
    findings.extend(review.differences.iter().cloned());
    findings.extend(not_applied);
    let built = (|| -> Result<BuiltOrder, String> {
        let answer = BillingDataAnswer {
            grid_operator: context
                .partner
                .parse::<MarketPartnerId>()
                .map_err(|e| e.to_string())?,
            market_location: data.market_location.parse().map_err(|e| format!("{e}"))?,
            transaction: data.transaction.clone(),
            periods: review.answers.clone(),
            view: review.view.clone(),
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
        Ok(b) => {
            effects.push(Effect::Send {
                partner: context.partner.to_string(),
                pid: b.pid,
                interchange: Box::new(b.interchange),
                document_number: b.document_number,
            });
            if !findings.is_empty() {
                effects.push(Effect::Clearing {
                    reason: format!(
                        "UTILMD 55218 {}: {}; answered with UTILMD 55220 ({codes})",
                        data.transaction,
                        findings.join("; ")
                    ),
                    message: reference.to_string(),
                });
            }
        }
        Err(e) => {
            // Nothing went out: a person must answer by the deadline.
            let received = crate::acks::calendar::berlin_local(context.now).date();
            let due = Calendar::embedded().add_working_days(received, BILLING_ANSWER_WORKING_DAYS);
            findings.push(format!("UTILMD 55220 could not be built: {e}"));
            effects.push(Effect::Clearing {
                reason: format!(
                    "UTILMD 55218 {}: {}; answer it with UTILMD 55220 ({codes}) by the end of {due} (GPKE Teil 2 §3.1.1.2)",
                    data.transaction,
                    findings.join("; ")
                ),
                message: reference.to_string(),
            });
        }
    }
}

/// The outcome of applying an input to one order: the effect, or `None` when nothing changed
/// (a repeat). `mark` records the message on the order's reason (rejection or block), `effect`
/// wraps the changed order.
fn apply_one<O: Clone + PartialEq>(
    slot: &mut O,
    applied: Result<crate::orders::lifecycle::Applied<O>, ApplyError>,
    mark: impl FnOnce(&mut O),
    effect: impl FnOnce(Box<O>, Option<&'static str>) -> Effect,
) -> Result<Option<Effect>, ApplyError> {
    let applied = applied?;
    let mut order = applied.order;
    mark(&mut order);
    if order == *slot {
        return Ok(None);
    }
    *slot = order.clone();
    Ok(Some(effect(Box::new(order), applied.event)))
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
    let message = || reference.to_string();
    let outcome = if let Some(slot) = reductions.iter_mut().find(|r| r.id == id) {
        let from = status_of(&slot.status);
        let applied = slot.clone().apply(input, now);
        apply_one(
            slot,
            applied,
            |o| {
                if let Some(r) = o.rejection.as_mut() {
                    r.message_reference.get_or_insert_with(|| reference.into());
                }
            },
            |order, event| Effect::GridFee {
                from,
                order,
                event,
                message: message(),
            },
        )
    } else if let Some(slot) = meters.iter_mut().find(|m| m.id == id) {
        let from = status_of(&slot.status);
        let applied = slot.clone().apply(input, now);
        apply_one(
            slot,
            applied,
            |o| {
                if let Some(r) = o.blocked_reason.as_mut() {
                    r.message_reference.get_or_insert_with(|| reference.into());
                }
            },
            |order, event| Effect::Meter {
                from,
                order,
                event,
                message: message(),
            },
        )
    } else {
        effects.push(Effect::Clearing {
            reason: format!("order {id} named by the acknowledgement was not loaded"),
            message: reference.to_string(),
        });
        return;
    };
    effects.push(match outcome {
        Ok(Some(effect)) => effect,
        Ok(None) => Effect::Nothing {
            reason: format!("{id}: repeated, no change"),
            message: message(),
        },
        Err(e) => Effect::NotApplied {
            order: id.to_string(),
            reason: e.to_string(),
            message: message(),
        },
    });
}
