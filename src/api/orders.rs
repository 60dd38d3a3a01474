//! The order routes: create, list, get, confirm, patch, cancel; and the operator views.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use super::actions::{self, not_sendable, rule_error};
use super::error::{ApiError, FieldError};
use super::input::{Body, ListQuery};
use super::resources;
use super::AppState;
use crate::ids::{MarketLocationId, MarketPartnerId, MeteringLocationId};
use crate::orders::{
    CancelReason, ContactFields, CustomerContact, GridFeeStatus, MeterStatus, MeterType,
    ReductionType,
};
use crate::plan::records::ChangedOrder;
use crate::plan::requests::{
    cancellation, check_sendable_meter_order, confirmation, new_meter_order, NewMeterOrder,
    NewReductions,
};
use crate::store::{serde_text, NewOutboxItem, OrderFilter, OrderKind, OutboxState};

const TYPES: &str = "one of enwg-14a-module-1, enwg-14a-module-2, enwg-14a-module-3";

fn created(value: Value) -> Response {
    (StatusCode::CREATED, Json(value)).into_response()
}

/// `POST /grid-fee-reductions`: one reduction (`type`) or several at once (`types`, e.g.
/// Modul 1 and 3 together).
pub async fn create_grid_fee(
    State(state): State<AppState>,
    bytes: Bytes,
) -> Result<Response, ApiError> {
    let now = state.now();
    let mut body = Body::parse(
        &bytes,
        &[
            "subscription",
            "type",
            "types",
            "market_location",
            "grid_operator",
            "meter_type",
            "effective_date",
        ],
    )?;
    let subscription = body.identifier("subscription", true);
    let several = body.has("types");
    let requested: Option<Vec<ReductionType>> = if several {
        if body.has("type") {
            body.errors.push(FieldError::new(
                "type",
                "invalid",
                "give either type or types, not both",
            ));
        }
        match body.value::<Vec<ReductionType>>("types", true, &format!("a list of {TYPES}")) {
            Some(t) if t.is_empty() => {
                body.errors.push(FieldError::new(
                    "types",
                    "required",
                    "types must not be empty",
                ));
                None
            }
            other => other,
        }
    } else {
        body.value::<ReductionType>("type", true, TYPES)
            .map(|t| vec![t])
    };
    let market_location: Option<MarketLocationId> = body.parsed("market_location", true);
    let grid_operator: Option<MarketPartnerId> = body.parsed("grid_operator", true);
    let meter_type: Option<MeterType> = body.value("meter_type", true, "smart or conventional");
    // §14a module orders need 2 working days' lead (shared/domain/README.md; the grid
    // operator answers an earlier date with ORDRSP 19133 A21 "Frist unterschritten").
    let effective_date = body.date_with_lead(
        "effective_date",
        crate::orders::lead_time::earliest_grid_fee_date(now.naive_utc()),
        "§14a orders need 2 working days' lead",
    );
    let errors_so_far = body.errors.len();
    let (
        Some(subscription),
        Some(requested),
        Some(market_location),
        Some(grid_operator),
        Some(meter_type),
        0,
    ) = (
        subscription,
        requested,
        market_location,
        grid_operator,
        meter_type,
        errors_so_far,
    )
    else {
        return Err(ApiError::invalid(body.errors));
    };

    let request = NewReductions {
        subscription,
        types: requested,
        market_location,
        grid_operator,
        meter_type,
    };
    let records = actions::place_reductions(&state, &request, effective_date, now).await?;
    if several {
        Ok(created(json!({
            "object": "list",
            "data": records.iter().map(resources::grid_fee).collect::<Vec<_>>(),
            "next_cursor": null,
        })))
    } else {
        Ok(created(resources::grid_fee(&records[0])))
    }
}

fn status_filter<T: serde::de::DeserializeOwned>(
    query: &ListQuery,
    allowed: &str,
) -> Result<Option<String>, ApiError> {
    match query.filter("status") {
        None => Ok(None),
        Some(s) if serde_json::from_value::<T>(Value::String(s.to_string())).is_ok() => {
            Ok(Some(s.to_string()))
        }
        Some(s) => Err(ApiError::invalid(vec![FieldError::new(
            "filter[status][eq]",
            "invalid",
            format!("unknown status {s:?}; one of {allowed}"),
        )])),
    }
}

fn order_filter<T: serde::de::DeserializeOwned>(
    pairs: &[(String, String)],
    statuses: &str,
) -> Result<(ListQuery, OrderFilter), ApiError> {
    let query = ListQuery::parse(pairs, &["status", "subscription"])?;
    let filter = OrderFilter {
        status: status_filter::<T>(&query, statuses)?,
        subscription: query.filter("subscription").map(str::to_string),
    };
    Ok((query, filter))
}

/// `GET /grid-fee-reductions`.
pub async fn list_grid_fees(
    State(state): State<AppState>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Result<Json<Value>, ApiError> {
    let (query, filter) =
        order_filter::<GridFeeStatus>(&pairs, "intended, ordered, activated, rejected, ended")?;
    let page = state
        .store
        .conn()
        .await?
        .list_grid_fees(&filter, &query.page)
        .await?;
    Ok(Json(resources::list(&page, resources::grid_fee)))
}

/// `GET /grid-fee-reductions/{id}`.
pub async fn grid_fee(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let record = state
        .store
        .conn()
        .await?
        .grid_fee(&id)
        .await?
        .ok_or_else(|| ApiError::not_found("grid-fee reduction", &id))?;
    let mut body = resources::grid_fee(&record);
    body["awaiting"] = awaiting(&state, &id).await?;
    Ok(Json(body))
}

/// `POST /subscriptions/{id}/confirm`: records the confirmation and queues every intended
/// reduction of the subscription (once: a repeated confirmation queues nothing twice).
pub async fn confirm_subscription(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let now = state.now();
    if id.trim().is_empty() {
        return Err(ApiError::invalid(vec![FieldError::new(
            "id",
            "required",
            "the subscription id must not be empty",
        )]));
    }
    let mut tx = state.store.begin().await?;
    tx.lock_subscription(&id).await?;
    tx.confirm_subscription(&id, now).await?;
    let reductions = tx.grid_fees_of_subscription(&id).await?;
    let mut open = Vec::new();
    for r in &reductions {
        if !tx.open_outbox_for_order(&r.order.id).await?.is_empty() {
            open.push(r.order.id.clone());
        }
    }
    let items = confirmation(&reductions, |order| open.iter().any(|o| o == order));
    tx.add_outbox_items(&items, now).await?;
    let queued: Vec<String> = items
        .into_iter()
        .filter_map(|item| item.order.map(|(_, id)| id))
        .collect();
    let confirmed_at = tx.subscription_confirmed(&id).await?.unwrap_or(now);
    tx.commit().await?;
    Ok(Json(json!({
        "object": "subscription",
        "id": id,
        "confirmed_at": resources::time(confirmed_at),
        "queued": queued,
    })))
}

/// `POST /meter-orders`.
pub async fn create_meter_order(
    State(state): State<AppState>,
    bytes: Bytes,
) -> Result<Response, ApiError> {
    let now = state.now();
    let mut body = Body::parse(
        &bytes,
        &[
            "subscription",
            "market_location",
            "metering_location",
            "metering_operator",
            "wanted_date",
            "customer_contact",
        ],
    )?;
    let subscription = body.identifier("subscription", true);
    let market_location: Option<MarketLocationId> = body.parsed("market_location", true);
    let metering_location: Option<MeteringLocationId> = body.parsed("metering_location", false);
    let metering_operator: Option<MarketPartnerId> = body.parsed("metering_operator", true);
    let wanted_date = body.date_with_lead(
        "wanted_date",
        crate::orders::lead_time::earliest_meter_date(now.naive_utc()),
        "iMSys orders need 20 working days' lead",
    );
    let customer_contact = customer_contact(&mut body);
    let errors_so_far = body.errors.len();
    let (Some(subscription), Some(market_location), Some(metering_operator), 0) = (
        subscription,
        market_location,
        metering_operator,
        errors_so_far,
    ) else {
        return Err(ApiError::invalid(body.errors));
    };

    let request = NewMeterOrder {
        subscription,
        market_location,
        metering_location,
        metering_operator,
        customer_contact,
    };
    let mut tx = state.store.begin().await?;
    tx.lock_subscription(&request.subscription).await?;
    let existing = tx
        .meter_orders_of_subscription(&request.subscription)
        .await?
        .len();
    let new = new_meter_order(&request, existing, now).map_err(|rule| ApiError {
        status: StatusCode::CONFLICT,
        errors: vec![rule_error(rule)],
    })?;
    check_sendable_meter_order(&new.orders[0], wanted_date, &state.own_id, now)
        .map_err(not_sendable)?;
    let record = tx
        .insert_meter_order(&new.orders[0], wanted_date, now)
        .await?;
    tx.add_history_rows(&new.history.iter().collect::<Vec<_>>())
        .await?;
    tx.add_outbox_items(&new.outbox, now).await?;
    tx.commit().await?;
    Ok(created(resources::meter_order(&record)))
}

/// `customer_contact` of `POST /meter-orders`: `{name, email?, phone?, mobile?}`, checked by the
/// product rules ([`CustomerContact::new`]); each problem is reported as
/// `customer_contact.<field>`.
fn customer_contact(body: &mut Body) -> Option<CustomerContact> {
    const SHAPE: &str = "an object {name, email, phone, mobile} of strings";
    let fields: ContactFields = body.value("customer_contact", false, SHAPE)?;
    match CustomerContact::new(fields) {
        Ok(contact) => Some(contact),
        Err(problems) => {
            body.errors.extend(problems.iter().map(|p| {
                FieldError::new(
                    &format!("customer_contact.{}", p.field()),
                    "invalid",
                    p.to_string(),
                )
            }));
            None
        }
    }
}

/// `GET /meter-orders`.
pub async fn list_meter_orders(
    State(state): State<AppState>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Result<Json<Value>, ApiError> {
    let (query, filter) = order_filter::<MeterStatus>(
        &pairs,
        "created, placed, check_submitted, check_reviewed, scheduled, installed, activated, cancelled",
    )?;
    let page = state
        .store
        .conn()
        .await?
        .list_meter_orders(&filter, &query.page)
        .await?;
    Ok(Json(resources::list(&page, resources::meter_order)))
}

/// `GET /meter-orders/{id}`.
pub async fn meter_order(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let record = state
        .store
        .conn()
        .await?
        .meter_order(&id)
        .await?
        .ok_or_else(|| ApiError::not_found("meter order", &id))?;
    let mut body = resources::meter_order(&record);
    body["awaiting"] = awaiting(&state, &id).await?;
    Ok(Json(body))
}

/// The answers awaited for an order, with their due times and whether they came or are
/// overdue.
async fn awaiting(state: &AppState, order_id: &str) -> Result<Value, ApiError> {
    let now = state.now();
    let deadlines = state
        .store
        .conn()
        .await?
        .deadlines_of_order(order_id)
        .await?;
    Ok(Value::Array(
        deadlines.iter().map(|d| deadline_json(d, now)).collect(),
    ))
}

/// One awaited answer as the API shows it.
pub(super) fn deadline_json(
    d: &crate::store::StoredDeadline,
    now: chrono::DateTime<chrono::Utc>,
) -> Value {
    json!({
        "object": "deadline",
        "id": d.id,
        "awaiting": d.awaiting,
        "partner": d.partner,
        "reference": d.reference,
        "order": d.order_id,
        "due_at": resources::time(d.due_at),
        "met_at": d.met_at.map(resources::time),
        "overdue": d.met_at.is_none() && d.due_at < now,
    })
}

/// `GET /deadlines`: the answers we wait for (`filter[state][eq]=open|overdue|met`).
pub async fn list_deadlines(
    State(state): State<AppState>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Result<Json<Value>, ApiError> {
    let query = ListQuery::parse(&pairs, &["state"])?;
    let wanted = query.filter("state");
    if wanted.is_some_and(|s| !matches!(s, "open" | "overdue" | "met")) {
        return Err(ApiError::invalid(vec![FieldError::new(
            "filter[state][eq]",
            "invalid",
            "filter[state][eq] must be open, overdue or met",
        )]));
    }
    let now = state.now();
    let page = state
        .store
        .conn()
        .await?
        .list_deadlines(wanted, &query.page)
        .await?;
    Ok(Json(resources::list(&page, |d| deadline_json(d, now))))
}

fn conflict(code: &str, message: String) -> ApiError {
    ApiError::general(StatusCode::CONFLICT, code, message)
}

/// `PATCH /meter-orders/{id}`: the Messlokation once it is known; a `created` order goes
/// into the outbox then.
pub async fn patch_meter_order(
    State(state): State<AppState>,
    Path(id): Path<String>,
    bytes: Bytes,
) -> Result<Json<Value>, ApiError> {
    let now = state.now();
    let mut body = Body::parse(&bytes, &["metering_location"])?;
    let metering_location: Option<MeteringLocationId> = body.parsed("metering_location", true);
    body.finish()?;
    let Some(metering_location) = metering_location else {
        unreachable!("finish() reported the missing field")
    };
    let mut tx = state.store.begin().await?;
    let mut record = tx
        .meter_order(&id)
        .await?
        .ok_or_else(|| ApiError::not_found("meter order", &id))?;
    match &record.order.metering_location {
        Some(known) if *known == metering_location => {
            return Ok(Json(resources::meter_order(&record)));
        }
        Some(known) => {
            return Err(conflict(
                "metering_location_already_set",
                format!("meter order {id} already has the Messlokation {known}"),
            ))
        }
        None => {}
    }
    if record.order.status != MeterStatus::Created {
        return Err(conflict(
            "not_changeable",
            format!(
                "meter order {id} is {}; the Messlokation can only be set while it is created",
                serde_text(&record.order.status)
            ),
        ));
    }
    record.order.metering_location = Some(metering_location);
    check_sendable_meter_order(&record.order, record.wanted_date, &state.own_id, now)
        .map_err(not_sendable)?;
    record.version = tx
        .save_meter_order(&record.order, record.version, now)
        .await?;
    record.updated_at = now;
    if tx.open_outbox_for_order(&id).await?.is_empty() {
        tx.add_outbox(
            &NewOutboxItem::order(
                OrderKind::MeterOrder,
                &id,
                record.order.metering_operator.as_str(),
            ),
            now,
        )
        .await?;
    }
    tx.commit().await?;
    Ok(Json(resources::meter_order(&record)))
}

/// `POST /meter-orders/{id}/cancel`: the customer cancels (`{"reason": "customer_request"}`,
/// the default, also for an empty body), or an iMSys is already there (`"pre_existing"`: no
/// answer of the metering operator to our order says so, so the core decides). Order,
/// history, webhook event and the dropped pending outbox item commit together.
pub async fn cancel_meter_order(
    State(state): State<AppState>,
    Path(id): Path<String>,
    bytes: Bytes,
) -> Result<Json<Value>, ApiError> {
    let now = state.now();
    let reason = if bytes.iter().all(u8::is_ascii_whitespace) {
        CancelReason::CustomerRequest
    } else {
        let mut body = Body::parse(&bytes, &["reason"])?;
        let reason =
            body.value::<CancelReason>("reason", false, "customer_request or pre_existing");
        body.finish()?;
        reason.unwrap_or(CancelReason::CustomerRequest)
    };
    let mut tx = state.store.begin().await?;
    let record = tx
        .meter_order(&id)
        .await?
        .ok_or_else(|| ApiError::not_found("meter order", &id))?;
    let Some(change) = cancellation(&record, reason, now)
        .map_err(|e| conflict("illegal_transition", e.to_string()))?
    else {
        // Already cancelled for this reason: nothing changes.
        return Ok(Json(resources::meter_order(&record)));
    };
    tx.save_changed_orders(&[&change], now).await?;
    let version = record.version + 1;
    tx.add_history_rows(&[&change.history]).await?;
    tx.add_webhooks(change.event.as_slice(), now).await?;
    tx.drop_pending_outbox(&id).await?;
    tx.commit().await?;
    let ChangedOrder::Meter(order) = change.order else {
        unreachable!("a meter order's cancellation changes the meter order")
    };
    Ok(Json(resources::meter_order(
        &crate::store::MeterOrderRecord {
            order: *order,
            wanted_date: record.wanted_date,
            version,
            created_at: record.created_at,
            updated_at: now,
        },
    )))
}

/// `GET /clearing`: inbound messages nothing matched, not yet resolved.
pub async fn list_clearing(
    State(state): State<AppState>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Result<Json<Value>, ApiError> {
    let query = ListQuery::parse(&pairs, &[])?;
    let page = state
        .store
        .conn()
        .await?
        .list_clearing(false, &query.page)
        .await?;
    Ok(Json(resources::list(&page, |c| {
        let mut v = serde_json::to_value(c).unwrap_or_default();
        v["object"] = json!("clearing_item");
        v
    })))
}

/// `POST /clearing/{id}/resolve`: an operator has dealt with an unmatched message (it stays
/// in the journal; the clearing list stops showing it); recorded in the audit trail.
pub async fn resolve_clearing(
    State(state): State<AppState>,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Result<Json<Value>, ApiError> {
    let now = actions::resolve_clearing(&state, &id, None, actions::API_ACTOR).await?;
    Ok(Json(json!({
        "object": "clearing_item",
        "id": id,
        "resolved_at": now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    })))
}

/// `POST /outbox/{id}/retry`: a parked outbox item is sent again (the console's action, audited
/// as `api`, with the partner's answer that parked it).
pub async fn retry_outbox(
    State(state): State<AppState>,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Result<Json<Value>, ApiError> {
    actions::retry_outbox(&state, &id, None, actions::API_ACTOR).await?;
    Ok(Json(json!({
        "object": "outbox_item",
        "id": id,
        "state": "pending",
    })))
}

/// `POST /outbox/{id}/give-up`: an operator gives a parked outbox item up (it stays parked and
/// no longer waits for an operator; audited as `api`).
pub async fn give_up_outbox(
    State(state): State<AppState>,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Result<Json<Value>, ApiError> {
    actions::give_up_outbox(&state, &id, None, actions::API_ACTOR).await?;
    Ok(Json(json!({
        "object": "outbox_item",
        "id": id,
        "state": "parked",
        "given_up": true,
    })))
}

/// `GET /outbox`: work to send, e.g. `filter[state][eq]=parked` for what needs an operator.
pub async fn list_outbox(
    State(state): State<AppState>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Result<Json<Value>, ApiError> {
    let query = ListQuery::parse(&pairs, &["state"])?;
    let filter = match query.filter("state") {
        None => None,
        Some(s) => Some(OutboxState::parse(s).ok_or_else(|| {
            ApiError::invalid(vec![FieldError::new(
                "filter[state][eq]",
                "invalid",
                format!("unknown state {s:?}; one of pending, in_flight, sent, parked"),
            )])
        })?),
    };
    let page = state
        .store
        .conn()
        .await?
        .list_outbox(filter, &query.page)
        .await?;
    Ok(Json(resources::list(&page, |o| {
        let mut v = serde_json::to_value(o).unwrap_or_default();
        v["object"] = json!("outbox_item");
        v
    })))
}

/// `GET /quarantine`: received mails that were not taken in (unsigned, not decryptable,
/// signed by someone else than the interchange's sender, no or several interchanges), with
/// the reason; oldest first. Each names its `raw` link (`GET /quarantine/{id}/raw`, the mail
/// as fetched); the mails also stay on the mail server.
pub async fn list_quarantine(
    State(state): State<AppState>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Result<Json<Value>, ApiError> {
    let query = ListQuery::parse(&pairs, &[])?;
    let page = state
        .store
        .conn()
        .await?
        .list_quarantine(&query.page)
        .await?;
    Ok(Json(resources::list(&page, |q| {
        let mut v = serde_json::to_value(q).unwrap_or_default();
        v["object"] = json!("quarantined_mail");
        v["raw"] = json!(format!("/quarantine/{}/raw", q.id));
        v
    })))
}

/// `GET /as4/requests`: every AS4 request received, with how it was answered (`receipted`,
/// `refused` with the ebMS error code and reason, `busy`); `filter[outcome][eq]=refused` for
/// what partners sent that was not taken in. Each names its `raw` link
/// (`GET /as4/requests/{id}/raw`, the request body as received).
pub async fn list_as4_requests(
    State(state): State<AppState>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Result<Json<Value>, ApiError> {
    let query = ListQuery::parse(&pairs, &["outcome"])?;
    let outcome = query.filter("outcome");
    if let Some(o) = outcome {
        if !["pending", "receipted", "refused", "busy"].contains(&o) {
            return Err(ApiError::invalid(vec![FieldError::new(
                "filter[outcome][eq]",
                "invalid",
                format!("unknown outcome {o:?}; one of pending, receipted, refused, busy"),
            )]));
        }
    }
    let page = state
        .store
        .conn()
        .await?
        .list_as4_requests(outcome, &query.page)
        .await?;
    Ok(Json(resources::list(&page, |q| {
        let mut v = serde_json::to_value(q).unwrap_or_default();
        v["object"] = json!("as4_request");
        v["raw"] = json!(format!("/as4/requests/{}/raw", q.id));
        v
    })))
}
