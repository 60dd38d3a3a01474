//! What an operator or the supplier core changes, shared by the JSON routes and the console
//! (`console`): each action runs here once, in one store transaction, and is recorded in the
//! audit trail with who did it (`actor`). The routes only read their input and shape the
//! answer; the console only reads its form.
//!
//! What it does not do: decide product rules (`plan::requests` and the orders do) or send
//! anything (it queues outbox items for the outbound loop).

use chrono::{DateTime, NaiveDate, Utc};

use super::error::{ApiError, FieldError};
use super::AppState;
use crate::orders::{BuildError, GridFeeStatus, RuleViolation};
use crate::plan::requests::{check_sendable_reductions, new_reductions, NewReductions};
use crate::store::{serde_text, GridFeeRecord, NewAudit, StoreTx};

/// Who calls through the JSON API: a bearer token names no person.
pub const API_ACTOR: &str = "api";

/// A request whose message would fail our own grammars (issue 15 defect 6): 400, nothing
/// queued.
pub(super) fn not_sendable(invalid: BuildError) -> ApiError {
    ApiError::invalid(vec![FieldError::new(
        "",
        "not_sendable",
        invalid.to_string(),
    )])
}

/// The field a broken rule is about, and its code.
pub(super) fn rule_error(rule: RuleViolation) -> FieldError {
    let field = match rule {
        RuleViolation::Module3WithoutSmartMeter => "meter_type",
        RuleViolation::SecondMeterOrder => "subscription",
        _ => "type",
    };
    let code = serde_text(&rule);
    FieldError::new(field, &code, rule.to_string())
}

/// Places new grid-fee reductions in `tx` (not committed): the product rules against the
/// subscription's orders so far, our own grammars, then the orders, their history and, for a
/// confirmed subscription, their outbox items.
async fn place_reductions_in(
    tx: &mut StoreTx,
    state: &AppState,
    request: &NewReductions,
    effective_date: Option<NaiveDate>,
    now: DateTime<Utc>,
) -> Result<Vec<GridFeeRecord>, ApiError> {
    tx.lock_subscription(&request.subscription).await?;
    let so_far = tx.grid_fees_of_subscription(&request.subscription).await?;
    let confirmed = tx
        .subscription_confirmed(&request.subscription)
        .await?
        .is_some();
    let new = new_reductions(request, &so_far, confirmed, now)
        .map_err(|broken| ApiError::invalid(broken.into_iter().map(rule_error).collect()))?;
    check_sendable_reductions(&new.orders, &so_far, effective_date, &state.own_id, now)
        .map_err(not_sendable)?;
    let mut records = Vec::new();
    for order in &new.orders {
        records.push(tx.insert_grid_fee(order, effective_date, now).await?);
    }
    tx.add_history_rows(&new.history.iter().collect::<Vec<_>>())
        .await?;
    tx.add_outbox_items(&new.outbox, now).await?;
    Ok(records)
}

/// `POST /grid-fee-reductions`: new reductions, committed.
pub(super) async fn place_reductions(
    state: &AppState,
    request: &NewReductions,
    effective_date: Option<NaiveDate>,
    now: DateTime<Utc>,
) -> Result<Vec<GridFeeRecord>, ApiError> {
    let mut tx = state.store.begin().await?;
    let records = place_reductions_in(&mut tx, state, request, effective_date, now).await?;
    tx.commit().await?;
    Ok(records)
}

/// Re-orders a rejected reduction once its cause is fixed: a new order with the same
/// subscription, module, market location, grid operator and meter, placed exactly as
/// `POST /grid-fee-reductions` places one (the product rules refuse it while an active
/// reduction of the type exists). The rejected order stays as it is, for the audit; the
/// new one is recorded against it. `effective_date` `None`: the next possible date.
pub async fn reorder_grid_fee(
    state: &AppState,
    rejected_id: &str,
    effective_date: Option<NaiveDate>,
    actor: &str,
) -> Result<GridFeeRecord, ApiError> {
    let now = state.now();
    let mut tx = state.store.begin().await?;
    let old = tx
        .grid_fee(rejected_id)
        .await?
        .ok_or_else(|| ApiError::not_found("grid-fee reduction", rejected_id))?;
    if old.order.status != GridFeeStatus::Rejected {
        return Err(ApiError::general(
            axum::http::StatusCode::CONFLICT,
            "not_rejected",
            format!(
                "grid-fee reduction {rejected_id} is {}; only a rejected one is re-ordered",
                serde_text(&old.order.status)
            ),
        ));
    }
    let request = NewReductions {
        subscription: old.order.subscription.clone(),
        types: vec![old.order.reduction_type],
        market_location: old.order.market_location.clone(),
        grid_operator: old.order.grid_operator.clone(),
        meter_type: old.order.meter_type,
    };
    let mut records = place_reductions_in(&mut tx, state, &request, effective_date, now).await?;
    let new = records.remove(0);
    tx.add_audit(
        &NewAudit {
            actor,
            action: "grid_fee_reduction.reorder",
            target: rejected_id,
            note: Some(&format!("re-ordered as {}", new.order.id)),
        },
        now,
    )
    .await?;
    tx.commit().await?;
    Ok(new)
}

/// `POST /clearing/{id}/resolve`: an operator has dealt with an unmatched message (it stays
/// in the journal; the clearing list stops showing it), with an optional note. Returns when.
pub async fn resolve_clearing(
    state: &AppState,
    id: &str,
    note: Option<&str>,
    actor: &str,
) -> Result<DateTime<Utc>, ApiError> {
    let now = state.now();
    let mut tx = state.store.begin().await?;
    tx.resolve_clearing(id, now).await?;
    tx.add_audit(
        &NewAudit {
            actor,
            action: "clearing.resolve",
            target: id,
            note,
        },
        now,
    )
    .await?;
    tx.commit().await?;
    Ok(now)
}

/// Sends a parked outbox item again (`Session::retry_parked_outbox`); the partner's answer
/// that parked it is kept in the audit note.
pub async fn retry_outbox(
    state: &AppState,
    id: &str,
    note: Option<&str>,
    actor: &str,
) -> Result<(), ApiError> {
    on_parked_outbox(state, id, note, actor, OutboxAction::Retry).await
}

/// Gives a parked outbox item up (`Session::give_up_outbox`).
pub async fn give_up_outbox(
    state: &AppState,
    id: &str,
    note: Option<&str>,
    actor: &str,
) -> Result<(), ApiError> {
    on_parked_outbox(state, id, note, actor, OutboxAction::GiveUp).await
}

/// What an operator does with a parked outbox item.
#[derive(Clone, Copy)]
enum OutboxAction {
    Retry,
    GiveUp,
}

/// One transaction: the item read (for the answer that parked it), the action, the audit row.
async fn on_parked_outbox(
    state: &AppState,
    id: &str,
    note: Option<&str>,
    actor: &str,
    action: OutboxAction,
) -> Result<(), ApiError> {
    let now = state.now();
    let mut tx = state.store.begin().await?;
    let item = tx
        .outbox_item(id)
        .await?
        .ok_or_else(|| ApiError::not_found("outbox item", id))?;
    let name = match action {
        OutboxAction::Retry => {
            tx.retry_parked_outbox(id, now).await?;
            "outbox.retry"
        }
        OutboxAction::GiveUp => {
            tx.give_up_outbox(id, now).await?;
            "outbox.give_up"
        }
    };
    let note = audit_note(note, item.item.last_error.as_deref());
    tx.add_audit(
        &NewAudit {
            actor,
            action: name,
            target: id,
            note: Some(&note),
        },
        now,
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// The operator's note followed by why the item was parked.
fn audit_note(note: Option<&str>, parked_because: Option<&str>) -> String {
    let parked = format!("parked: {}", parked_because.unwrap_or("(no reason kept)"));
    match note.map(str::trim).filter(|n| !n.is_empty()) {
        Some(n) => format!("{n} ({parked})"),
        None => parked,
    }
}
