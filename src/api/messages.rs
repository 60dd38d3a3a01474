//! The forward feed: received messages that are not ours to handle, for the supplier core.
//!
//! - `GET /messages`: the feed, oldest first, with cursor and `filter[pid|type|partner|state][eq]`;
//!   the core polls `filter[state][eq]=new` (or waits for the `message.received` webhook).
//! - `GET /messages/{id}`: header facts, the message as a segment tree, the findings, who owes
//!   the APERAK and by when, and the raw interchange.
//! - `POST /messages/{id}/ack`: the core took the message (`new` → `taken`, idempotent).
//! - `POST /messages/{id}/aperak`: the core's answer to a message whose APERAK it owes:
//!   `{"result": "accepted"}` (BGM+312) or `{"result": "rejected", "errors": [{"code": "Z33",
//!   "text": "…"}]}` (BGM+313), queued in the outbox and journaled when sent.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use super::error::{ApiError, FieldError};
use super::input::{Body, ListQuery};
use super::resources::{list, time};
use super::AppState;
use crate::acks::ErrorToReport;
use crate::edifact::{Charset, ReferenceSequence};
use crate::grammar::Registry;
use crate::plan::forward::{is_known_error_code, message_view, requested_aperak};
use crate::plan::inbound::{write, MessageState, REFERENCE_PREFIX};
use crate::store::{MessageFilter, NewOutboxItem, OutboxKind, StoredMessage};

/// Longest free text of one error (FTX C108 DE4440 an..512).
const MAX_TEXT: usize = 512;
/// References one requested APERAK uses (UNB, UNH, BGM).
const REFERENCES_PER_APERAK: u32 = 3;

/// True for an id the gateway gave a message (`msg_` and 32 hex digits): anything else is
/// answered 404 without a query.
fn is_message_id(id: &str) -> bool {
    crate::ids::is_record_id("msg", id)
}

fn aperak_json(m: &StoredMessage, now: DateTime<Utc>) -> Value {
    let overdue = m.aperak == "core" && m.aperak_due.is_some_and(|due| due < now);
    json!({
        "state": if overdue { "overdue" } else { m.aperak.as_str() },
        "owed_by": match m.aperak.as_str() {
            "core" => Some("core"),
            "sent" | "requested" => Some("gateway"),
            _ => None,
        },
        "due": m.aperak_due.map(time),
        "answer": m.answer,
    })
}

fn message_json(m: &StoredMessage, now: DateTime<Utc>) -> Value {
    json!({
        "object": "message",
        "id": m.id,
        "direction": m.direction,
        "partner": m.partner,
        "type": m.message_type,
        "version": m.version,
        "pid": m.pid,
        "message_reference": m.message_ref,
        "document_number": m.document_number,
        "route": m.route,
        "state": m.state,
        "checked": m.checked,
        "findings": m.findings.as_array().map_or(0, Vec::len),
        "aperak": aperak_json(m, now),
        "received_at": time(m.created_at),
        "age_seconds": (now - m.created_at).num_seconds().max(0),
        "journal": m.journal_id,
        "links": {
            "self": format!("/messages/{}", m.id),
            "raw": format!("/journal/{}/raw", m.journal_id),
        },
    })
}

fn filter_error(name: &str, expected: &str) -> ApiError {
    ApiError::invalid(vec![FieldError::new(
        &format!("filter[{name}][eq]"),
        "invalid",
        format!("filter[{name}][eq] must be {expected}"),
    )])
}

/// `GET /messages`.
pub async fn list_messages(
    State(state): State<AppState>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Result<Json<Value>, ApiError> {
    let query = ListQuery::parse(&pairs, &["pid", "type", "partner", "state"])?;
    let pid = query.filter("pid");
    if pid.is_some_and(|p| !crate::ids::is_pid(p)) {
        return Err(filter_error("pid", "a PID (five digits)"));
    }
    let message_type = query.filter("type");
    if message_type.is_some_and(|t| t.len() != 6 || !t.bytes().all(|b| b.is_ascii_uppercase())) {
        return Err(filter_error(
            "type",
            "a message type (six capital letters, e.g. MSCONS)",
        ));
    }
    let partner = query.filter("partner");
    if partner.is_some_and(|p| p.len() != 13 || !p.bytes().all(|b| b.is_ascii_digit())) {
        return Err(filter_error("partner", "a market partner ID (13 digits)"));
    }
    let status = query.filter("state");
    if status.is_some_and(|s| MessageState::parse(s).is_none()) {
        return Err(filter_error(
            "state",
            "one of new, taken, rejected, refused",
        ));
    }
    let filter = MessageFilter {
        direction: Some("in".to_string()),
        pid: pid.map(str::to_string),
        message_type: message_type.map(str::to_string),
        partner: partner.map(str::to_string),
        state: status.map(str::to_string),
    };
    let now = state.now();
    let page = state
        .store
        .conn()
        .await?
        .list_messages(&filter, &query.page)
        .await?;
    Ok(Json(list(&page, |m| message_json(m, now))))
}

async fn load(state: &AppState, id: &str) -> Result<StoredMessage, ApiError> {
    if !is_message_id(id) {
        return Err(ApiError::not_found("message", id));
    }
    state
        .store
        .conn()
        .await?
        .message(id)
        .await?
        .filter(|m| m.direction == "in")
        .ok_or_else(|| ApiError::not_found("message", id))
}

/// `GET /messages/{id}`.
pub async fn message(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let now = state.now();
    let m = load(&state, &id).await?;
    let journal = state
        .store
        .conn()
        .await?
        .journal_item(&m.journal_id)
        .await?
        .ok_or_else(|| ApiError::not_found("journal item", &m.journal_id))?;
    let mut body = message_json(&m, now);
    let view = message_view(&journal.raw, m.position as usize).unwrap_or(Value::Null);
    body["interchange"] = view["interchange"].clone();
    body["segments"] = view["segments"].clone();
    body["findings"] = m.findings.clone();
    body["transport"] = json!(journal.transport);
    // The raw interchange as text (decoded with its syntax identifier's character set); the
    // bytes exactly as received are at `links.raw`.
    let charset = crate::edifact::parse_lenient(&journal.raw)
        .document
        .as_ref()
        .and_then(|d| d.interchanges().next().map(|ic| ic.syntax().charset))
        .unwrap_or(Charset::Unoc);
    body["raw"] = json!(charset.decode(&journal.raw));
    Ok(Json(body))
}

/// `POST /messages/{id}/ack`: the core took the message; it leaves the `new` state.
pub async fn ack_message(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let now = state.now();
    let m = load(&state, &id).await?;
    if m.route != "forward" || !matches!(m.state.as_str(), "new" | "taken") {
        return Err(ApiError::general(
            StatusCode::CONFLICT,
            "not_offered",
            format!(
                "message {id} is {} ({}): only forwarded messages are taken",
                m.state, m.route
            ),
        ));
    }
    let taken = state.store.conn().await?.take_message(&id, now).await?;
    Ok(Json(message_json(&taken, now)))
}

/// `POST /messages/{id}/aperak`: the core's APERAK for a message whose APERAK it owes.
pub async fn aperak_for_message(
    State(state): State<AppState>,
    Path(id): Path<String>,
    bytes: Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let now = state.now();
    let mut body = Body::parse(&bytes, &["result", "errors"])?;
    let result = body.string("result", true);
    let errors_given: Option<Vec<Value>> = if body.has("errors") {
        body.value("errors", false, "a list of {code, text}")
    } else {
        None
    };
    let mut errors = Vec::new();
    match result.as_deref() {
        Some("accepted") if errors_given.as_ref().is_some_and(|e| !e.is_empty()) => {
            body.errors.push(FieldError::new(
                "errors",
                "invalid",
                "an accepted message has no errors",
            ));
        }
        Some("accepted") | None => {}
        Some("rejected") => {
            let given = errors_given.unwrap_or_default();
            if given.is_empty() || given.len() > crate::plan::forward::MAX_REQUESTED_ERRORS {
                body.errors.push(FieldError::new(
                    "errors",
                    "required",
                    "a rejection names 1 to 20 errors",
                ));
            }
            for (i, e) in given.iter().enumerate() {
                let code = e.get("code").and_then(Value::as_str).unwrap_or_default();
                let text = e.get("text").and_then(Value::as_str).unwrap_or_default();
                let Some(code) = is_known_error_code(code) else {
                    body.errors.push(FieldError::new(
                        &format!("errors[{i}].code"),
                        "invalid",
                        "an APERAK error code of the APERAK AHB (Z10 … Z44)",
                    ));
                    continue;
                };
                if text.trim().is_empty()
                    || text.chars().count() > MAX_TEXT
                    || text.chars().any(char::is_control)
                {
                    body.errors.push(FieldError::new(
                        &format!("errors[{i}].text"),
                        "invalid",
                        format!("a text of 1 to {MAX_TEXT} characters without control characters"),
                    ));
                    continue;
                }
                errors.push(ErrorToReport {
                    code,
                    place: String::new(),
                    text: text.to_string(),
                });
            }
        }
        Some(_) => body.errors.push(FieldError::new(
            "result",
            "invalid",
            "result must be accepted or rejected",
        )),
    }
    body.finish()?;
    let m = load(&state, &id).await?;
    if m.aperak != "core" {
        return Err(ApiError::general(
            StatusCode::CONFLICT,
            "aperak_not_owed",
            format!(
                "message {id} owes no APERAK from the core (aperak: {}): one APERAK per business case",
                m.aperak
            ),
        ));
    }
    let journal = state
        .store
        .conn()
        .await?
        .journal_item(&m.journal_id)
        .await?
        .ok_or_else(|| ApiError::not_found("journal item", &m.journal_id))?;
    let first = state
        .store
        .reserve_references(REFERENCES_PER_APERAK)
        .await?;
    let mut references = ReferenceSequence::new(REFERENCE_PREFIX, first).map_err(|e| {
        ApiError::general(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
    })?;
    let built = requested_aperak(
        &journal.raw,
        m.position as usize,
        &errors,
        now.naive_utc(),
        &mut references,
        Registry::embedded(),
    )
    .map_err(|e| ApiError::general(StatusCode::CONFLICT, "not_answerable", e.to_string()))?;
    let answer = json!({
        "result": if errors.is_empty() { "accepted" } else { "rejected" },
        "errors": errors.iter().map(|e| json!({"code": e.code, "text": e.text})).collect::<Vec<_>>(),
        "interchange_reference": built.header.control_reference,
    });
    let mut tx = state.store.begin().await?;
    let ids = tx
        .add_outbox_items(
            &[NewOutboxItem {
                kind: OutboxKind::Ack,
                order: None,
                partner: m.partner.clone(),
                payload: Some(write(&built)),
                journal_id: Some(m.journal_id.clone()),
            }],
            now,
        )
        .await?;
    let outbox_id = ids.first().cloned().unwrap_or_default();
    if !tx
        .mark_aperak_requested(&id, &outbox_id, &answer, now)
        .await?
    {
        // Another request was first: nothing of this one is kept.
        return Err(ApiError::general(
            StatusCode::CONFLICT,
            "aperak_not_owed",
            format!("message {id}: its APERAK was requested already"),
        ));
    }
    tx.commit().await?;
    let m = load(&state, &id).await?;
    let mut out = message_json(&m, now);
    out["outbox"] = json!(outbox_id);
    Ok((StatusCode::ACCEPTED, Json(out)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_message_ids_reach_the_store() {
        assert!(is_message_id("msg_019300aa1bcd7abc8def0123456789ab"));
        for bad in [
            "",
            "msg_",
            "gfr_1",
            "msg_../x",
            "msg_\0",
            &format!("msg_{}", "a".repeat(80)),
        ] {
            assert!(!is_message_id(bad), "{bad:?}");
        }
    }
}
