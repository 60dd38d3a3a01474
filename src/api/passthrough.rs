//! Pass-through sending (`/interchanges`): the supplier core hands over a message (we write the
//! envelope, references and counts) or a complete interchange for a partner. It is checked
//! against our grammars ([`crate::plan::passthrough`]: any error → 422 with the findings,
//! nothing stored or sent), then journaled and queued with its bytes fixed in one
//! transaction; the outbound worker sends it over the partner's transport like an order, and
//! the partner's CONTRL/APERAK is shown on it.
//!
//! The partner is any valid market partner ID, as for orders: a partner without a
//! `[[partners]]` entry gets the default transport (the file drop).

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use super::error::{ApiError, FieldError};
use super::input::{Body, ListQuery};
use super::resources;
use super::AppState;
use crate::edifact::ReferenceSequence;
use crate::grammar::Registry;
use crate::ids::MarketPartnerId;
use crate::plan::inbound::REFERENCE_PREFIX;
use crate::plan::passthrough::{
    check, is_overdue, queue, repeat_of, state as message_state, CheckContext, Problem, Refused,
    Repeat, Submission,
};
use crate::store::{PassThroughFilter, PassThroughRecord, OVERDUE};

fn field_error(field: &str, problem: Problem) -> FieldError {
    let error = FieldError::new(field, &problem.code, problem.message);
    match problem.position {
        Some(place) => error.at(serde_json::to_value(place).unwrap_or_default()),
        None => error,
    }
}

/// A refused submission: 422 with every problem and its place; an application reference of
/// the wrong form is a plain 400.
fn refused(refused: Refused) -> ApiError {
    let errors = refused
        .problems
        .into_iter()
        .map(|p| field_error(refused.field, p))
        .collect();
    if refused.field == "application_reference" {
        ApiError::invalid(errors)
    } else {
        ApiError::unprocessable(errors)
    }
}

/// `object: "pass_through_message"`; `overdue` as of `now`.
fn resource(r: &PassThroughRecord, now: DateTime<Utc>) -> Value {
    json!({
        "object": "pass_through_message",
        "id": r.id,
        "partner": r.partner,
        "state": r.state,
        "overdue": is_overdue(&r.state, r.aperak_due, now),
        "answer": r.answer,
        "aperak_due": r.aperak_due.map(resources::time),
        "interchange_ref": r.interchange_ref,
        "position": r.position,
        "message_type": r.message_type,
        "version": r.version,
        "pid": r.pid,
        "message_ref": r.message_ref,
        "document_number": r.document_number,
        "validation": if r.checked { "checked" } else { "unchecked" },
        "findings": r.findings,
        "journal_id": r.journal_id,
        "transport": r.transport,
        "sent_at": r.sent_at.map(resources::time),
        "outbox": r.outbox,
        "created_at": resources::time(r.created_at),
        "updated_at": resources::time(r.updated_at),
        "links": { "self": format!("/interchanges/{}", r.id) },
    })
}

/// `POST /interchanges`: `{partner, message}` or `{partner, interchange}` (optionally
/// `application_reference` with a message). 202 with the new records (`queued`); 200 with the
/// earlier ones when the same submission was handed over before (a retried request: nothing
/// is sent twice); 409 when its document number or UNB reference was used for something else;
/// 422 when a check fails.
pub async fn create(State(state): State<AppState>, bytes: Bytes) -> Result<Response, ApiError> {
    let now = state.now();
    let mut body = Body::parse(
        &bytes,
        &["partner", "message", "interchange", "application_reference"],
    )?;
    let partner: Option<MarketPartnerId> = body.parsed("partner", true);
    let (has_message, has_interchange) = (body.has("message"), body.has("interchange"));
    let message = body.string("message", false);
    let interchange = body.string("interchange", false);
    let application_reference = body.string("application_reference", false);
    let submission = match (message, interchange) {
        (Some(_), Some(_)) => {
            body.errors.push(FieldError::new(
                "interchange",
                "invalid",
                "give either message or interchange, not both",
            ));
            None
        }
        (Some(text), None) => Some(Submission::Message {
            text,
            application_reference,
        }),
        (None, Some(text)) => {
            if application_reference.is_some() {
                body.errors.push(FieldError::new(
                    "application_reference",
                    "invalid",
                    "application_reference goes with message: an interchange has its own UNB",
                ));
            }
            Some(Submission::Interchange { text })
        }
        (None, None) => {
            if !has_message && !has_interchange {
                body.errors.push(FieldError::new(
                    "message",
                    "required",
                    "give message (UNH to UNT) or interchange (a complete interchange)",
                ));
            }
            None
        }
    };
    let (Some(partner), Some(submission), true) = (partner, submission, body.errors.is_empty())
    else {
        return Err(ApiError::invalid(body.errors));
    };

    let first = match submission.references_needed() {
        0 => 0,
        n => state.store.reserve_references(n).await?,
    };
    let mut references = ReferenceSequence::new(REFERENCE_PREFIX, first)
        .expect("REFERENCE_PREFIX is a valid reference prefix");
    let checked = check(
        &submission,
        &mut CheckContext {
            registry: Registry::embedded(),
            own_id: state.own_id.as_str(),
            partner: partner.as_str(),
            reference_prefix: REFERENCE_PREFIX,
            now,
            references: &mut references,
        },
    )
    .map_err(refused)?;
    let documents: Vec<String> = checked
        .messages
        .iter()
        .filter_map(|m| m.document_number.clone())
        .collect();
    let interchange_ref = matches!(submission, Submission::Interchange { .. })
        .then(|| checked.interchange_ref.clone());

    let mut tx = state.store.begin().await?;
    tx.lock_pass_through(partner.as_str()).await?;
    let earlier = tx
        .earlier_pass_through(partner.as_str(), interchange_ref.as_deref(), &documents)
        .await?;
    let (status, journal_id) = match repeat_of(&submission, &checked, &earlier) {
        Repeat::New => {
            let queued = queue(checked, now);
            tx.queue_pass_through(&queued, now).await?;
            (StatusCode::ACCEPTED, queued.journal_id)
        }
        Repeat::Same { journal_id } => (StatusCode::OK, journal_id),
        Repeat::Conflict(problem) => {
            return Err(ApiError {
                status: StatusCode::CONFLICT,
                errors: vec![field_error(submission.field(), problem)],
            })
        }
    };
    let records = tx.pass_through_of_journal(&journal_id).await?;
    tx.commit().await?;
    Ok((
        status,
        Json(json!({
            "object": "list",
            "data": records.iter().map(|r| resource(r, now)).collect::<Vec<_>>(),
            "next_cursor": null,
        })),
    )
        .into_response())
}

/// `GET /interchanges`: pass-through messages, oldest first; `filter[state][eq]` (a state or
/// `overdue`), `filter[partner][eq]`.
pub async fn list(
    State(state): State<AppState>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Result<Json<Value>, ApiError> {
    let now = state.now();
    let query = ListQuery::parse(&pairs, &["state", "partner"])?;
    let mut errors = Vec::new();
    let wanted_state = query.filter("state");
    if let Some(s) = wanted_state {
        if !message_state::ALL.contains(&s) && s != OVERDUE {
            errors.push(FieldError::new(
                "filter[state][eq]",
                "invalid",
                format!(
                    "unknown state {s:?}; one of {}, {OVERDUE}",
                    message_state::ALL.join(", ")
                ),
            ));
        }
    }
    let partner = query.filter("partner");
    if let Some(Err(e)) = partner.map(str::parse::<MarketPartnerId>) {
        errors.push(FieldError::new(
            "filter[partner][eq]",
            "invalid",
            e.to_string(),
        ));
    }
    if !errors.is_empty() {
        return Err(ApiError::invalid(errors));
    }
    let filter = PassThroughFilter {
        state: wanted_state.map(str::to_string),
        partner: partner.map(str::to_string),
    };
    let page = state
        .store
        .conn()
        .await?
        .list_pass_through(&filter, &query.page, now)
        .await?;
    Ok(Json(resources::list(&page, |r| resource(r, now))))
}

/// `GET /interchanges/{id}`: one pass-through message with its state, answer, whether it is
/// overdue, its journal entry and outbox item.
pub async fn one(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let now = state.now();
    let record = state
        .store
        .conn()
        .await?
        .pass_through(&id)
        .await?
        .ok_or_else(|| ApiError::not_found("pass-through message", &id))?;
    Ok(Json(resource(&record, now)))
}
