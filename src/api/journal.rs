//! The journal routes: every interchange received or sent (`GET /journal`, filtered and paged,
//! without the bytes), and the bytes as they were received or sent, one item at a time:
//! `GET /journal/{id}/raw`, and likewise for what never became a journal item, the quarantined
//! mails (`GET /quarantine/{id}/raw`) and the received AS4 requests, refused ones included
//! (`GET /as4/requests/{id}/raw`).
//!
//! What it does not do: parse or change anything it serves; the bytes go out exactly as the
//! store keeps them.

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};

use super::error::{ApiError, FieldError};
use super::input::ListQuery;
use super::resources;
use super::AppState;
use crate::ids::is_record_id;
use crate::store::{Direction, JournalEntry, JournalFilter, JournalState, JsonText};

/// The filters of `GET /journal`: `filter[<name>][<operator>]`.
const JOURNAL_FILTERS: &[(&str, &str)] = &[
    ("direction", "eq"),
    ("partner", "eq"),
    ("pid", "eq"),
    ("message_type", "eq"),
    ("state", "eq"),
    ("time", "gte"),
    ("time", "lt"),
];

/// The longest EDIFACT message type (UNH S009 DE0065 is an..6).
const MESSAGE_TYPE_MAX_LEN: usize = 6;

/// A Prüfidentifikator has five digits.
const PID_LEN: usize = 5;

/// The content type of EDIFACT interchanges (RFC 1767).
const EDIFACT_CONTENT_TYPE: &str = "application/edifact";

/// The content type of a whole mail.
const MAIL_CONTENT_TYPE: &str = "message/rfc822";

fn invalid(key: &str, message: String) -> FieldError {
    FieldError::new(key, "invalid", message)
}

/// Reads the journal filters of `query`, collecting every invalid value.
fn journal_filter(query: &ListQuery) -> Result<JournalFilter, ApiError> {
    let mut errors = Vec::new();
    let mut filter = JournalFilter::default();
    if let Some(d) = query.filter("direction") {
        filter.direction = Direction::parse(d);
        if filter.direction.is_none() {
            errors.push(invalid(
                "filter[direction][eq]",
                format!("unknown direction {d:?}; one of in, out"),
            ));
        }
    }
    if let Some(p) = query.filter("partner") {
        if p.is_empty() {
            errors.push(invalid(
                "filter[partner][eq]",
                "the partner must not be empty".to_string(),
            ));
        } else {
            filter.partner = Some(p.to_string());
        }
    }
    if let Some(p) = query.filter("pid") {
        if crate::ids::is_pid(p) {
            filter.pid = Some(p.to_string());
        } else {
            errors.push(invalid(
                "filter[pid][eq]",
                format!("{p:?} is not a Prüfidentifikator: {PID_LEN} digits, e.g. 55218"),
            ));
        }
    }
    if let Some(t) = query.filter("message_type") {
        if (1..=MESSAGE_TYPE_MAX_LEN).contains(&t.len())
            && t.bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
        {
            filter.message_type = Some(t.to_string());
        } else {
            errors.push(invalid(
                "filter[message_type][eq]",
                format!(
                    "{t:?} is not an EDIFACT message type: up to {MESSAGE_TYPE_MAX_LEN} capital \
                     letters or digits, e.g. UTILMD"
                ),
            ));
        }
    }
    if let Some(s) = query.filter("state") {
        filter.state = JournalState::parse(s);
        if filter.state.is_none() {
            errors.push(invalid(
                "filter[state][eq]",
                format!("unknown state {s:?}; one of received, processing, processed, failed"),
            ));
        }
    }
    let mut instant = |operator: &str| -> Option<DateTime<Utc>> {
        let text = query.filter_with("time", operator)?;
        match DateTime::parse_from_rfc3339(text) {
            Ok(t) => Some(t.with_timezone(&Utc)),
            Err(e) => {
                errors.push(invalid(
                    &format!("filter[time][{operator}]"),
                    format!("{text:?} is not an RFC 3339 time such as 2026-06-01T10:00:00Z: {e}"),
                ));
                None
            }
        }
    };
    filter.from = instant("gte");
    filter.until = instant("lt");
    if let (Some(from), Some(until)) = (filter.from, filter.until) {
        if until <= from {
            errors.push(invalid(
                "filter[time][lt]",
                "the end of the time range must be after its start (filter[time][gte])".to_string(),
            ));
        }
    }
    if errors.is_empty() {
        Ok(filter)
    } else {
        Err(ApiError::invalid(errors))
    }
}

/// The journal filters of the console's search: the same names and checks as
/// `GET /journal` (pairs with empty values left out by the caller).
pub(super) fn console_filter(pairs: &[(String, String)]) -> Result<JournalFilter, ApiError> {
    let query = ListQuery::parse_with_operators(pairs, JOURNAL_FILTERS)?;
    journal_filter(&query)
}

/// `object: "journal_entry"`: an entry as the API writes it, borrowed from the store's record
/// and serialized straight into the response (no value tree: the outcome is embedded as the
/// JSON text it is stored as).
#[derive(serde::Serialize)]
struct JournalEntryView<'e> {
    object: &'static str,
    id: &'e str,
    direction: &'static str,
    partner: &'e str,
    transport: &'e str,
    interchange_ref: Option<&'e str>,
    message_refs: &'e [String],
    pids: &'e [String],
    message_types: &'e [String],
    document_numbers: &'e [String],
    received_at: Option<String>,
    sent_at: Option<String>,
    state: &'static str,
    outcome: Option<&'e JsonText>,
    attempts: i64,
    size: u64,
    raw: String,
}

impl<'e> JournalEntryView<'e> {
    fn of(e: &'e JournalEntry) -> JournalEntryView<'e> {
        JournalEntryView {
            object: "journal_entry",
            id: &e.id,
            direction: e.direction.as_str(),
            partner: &e.partner,
            transport: &e.transport,
            interchange_ref: e.interchange_ref.as_deref(),
            message_refs: &e.message_refs,
            pids: &e.pids,
            message_types: &e.message_types,
            document_numbers: &e.document_numbers,
            received_at: e.received_at.map(resources::time),
            sent_at: e.sent_at.map(resources::time),
            state: e.state.as_str(),
            outcome: e.outcome.as_ref(),
            attempts: e.attempts,
            size: e.size,
            raw: format!("/journal/{}/raw", e.id),
        }
    }
}

/// `{"object": "list", "data": [...], "next_cursor": ...}` of journal entries (as
/// [`resources::list`] writes lists).
#[derive(serde::Serialize)]
struct JournalList<'e> {
    object: &'static str,
    data: Vec<JournalEntryView<'e>>,
    next_cursor: Option<&'e str>,
}

/// `GET /journal`: the interchanges received and sent, oldest first, without their bytes
/// (each names its `raw` link); `filter[direction][eq]`, `filter[partner][eq]`,
/// `filter[pid][eq]`, `filter[message_type][eq]`, `filter[state][eq]`, and the time it was
/// received (in) or sent (out) from `filter[time][gte]` until before `filter[time][lt]`.
pub async fn list_journal(
    State(state): State<AppState>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Result<Response, ApiError> {
    let query = ListQuery::parse_with_operators(&pairs, JOURNAL_FILTERS)?;
    let filter = journal_filter(&query)?;
    let page = state
        .store
        .conn()
        .await?
        .list_journal(&filter, &query.page)
        .await?;
    let list = JournalList {
        object: "list",
        data: page.items.iter().map(JournalEntryView::of).collect(),
        next_cursor: page.next_cursor.as_deref(),
    };
    Ok(Json(list).into_response())
}

/// A download: the bytes with their content type, to be saved as `file_name` (made of a
/// checked record id, so it needs no quoting), never rendered or sniffed.
fn attachment(content_type: HeaderValue, file_name: &str, bytes: Vec<u8>) -> Response {
    let disposition = HeaderValue::from_str(&format!("attachment; filename=\"{file_name}\""))
        .unwrap_or(HeaderValue::from_static("attachment"));
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_DISPOSITION, disposition),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
        ],
        bytes,
    )
        .into_response()
}

/// `GET /journal/{id}/raw`: the interchange exactly as received or sent.
pub async fn journal_raw(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    const WHAT: &str = "journal item";
    if !is_record_id("jrn", &id) {
        return Err(ApiError::not_found(WHAT, &id));
    }
    let raw = state
        .store
        .conn()
        .await?
        .journal_raw(&id)
        .await?
        .ok_or_else(|| ApiError::not_found(WHAT, &id))?;
    Ok(attachment(
        HeaderValue::from_static(EDIFACT_CONTENT_TYPE),
        &format!("{id}.edi"),
        raw,
    ))
}

/// `GET /quarantine/{id}/raw`: a quarantined mail exactly as fetched.
pub async fn quarantine_raw(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    const WHAT: &str = "quarantined mail";
    if !is_record_id("mail", &id) {
        return Err(ApiError::not_found(WHAT, &id));
    }
    let raw = state
        .store
        .conn()
        .await?
        .quarantined_mail_raw(&id)
        .await?
        .ok_or_else(|| ApiError::not_found(WHAT, &id))?;
    Ok(attachment(
        HeaderValue::from_static(MAIL_CONTENT_TYPE),
        &format!("{id}.eml"),
        raw,
    ))
}

/// `GET /as4/requests/{id}/raw`: a received AS4 request's body exactly as it came, with the
/// Content-Type it came with (its MIME boundary is needed to read the parts).
pub async fn as4_request_raw(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    const WHAT: &str = "AS4 request";
    if !is_record_id("as4in", &id) {
        return Err(ApiError::not_found(WHAT, &id));
    }
    let request = state
        .store
        .conn()
        .await?
        .as4_request_raw(&id)
        .await?
        .ok_or_else(|| ApiError::not_found(WHAT, &id))?;
    // The header was a valid header value when it came; a request without one gets the
    // neutral type.
    let content_type = HeaderValue::from_str(&request.content_type)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or(HeaderValue::from_static("application/octet-stream"));
    Ok(attachment(content_type, &format!("{id}.bin"), request.raw))
}
