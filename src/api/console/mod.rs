//! The operator's console (issue 17): server-rendered pages under `/ui` over the same store
//! reads and the same actions ([`super::actions`]) as the JSON API, for an operator who does
//! not read JSON at 03:00.
//!
//! - Login with the API token or the console token into a session ([`session`]): a random id
//!   in a cookie `HttpOnly; SameSite=Strict; Path=/ui` (`Secure` behind TLS), sessions in
//!   memory with an expiry; the session's CSRF token is checked on every POST before any
//!   handler runs (`require_session`).
//! - Every response carries a `Content-Security-Policy` without inline script or style; the
//!   one script (`static/console.js`: auto-refresh of the overview, list filters without a
//!   page load) and the stylesheet are files compiled into the binary. Everything works with
//!   JavaScript off.
//! - Every value shown is escaped (maud); partner texts are treated as hostile.
//! - Every action (resolve a clearing entry, retry or give up a parked outbox item, re-order
//!   a rejected reduction) calls [`super::actions`], which the JSON routes call too, and is
//!   recorded in the audit trail with the operator's name.
//!
//! What it does not do: anything the API cannot; it is not part of `/openapi.json`.

pub mod edifact_view;
pub mod pages;
pub mod session;

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use maud::Markup;
use sha2::{Digest, Sha256};

use super::error::ApiError;
use super::{actions, journal, AppState};
use crate::edifact::parse_lenient;
use crate::grammar::{validate_interchange, Registry, Severity};
use crate::store::{
    names_value, Direction, JournalEntry, JournalFilter, JournalItem, MessageFilter, OrderFilter,
    PageRequest, StoreConn, StoreError,
};
use edifact_view::Mark;
use pages::{Certificate, Frame};
use session::{Operator, Sessions};

/// Rows per page of a console list.
const PAGE_LIMIT: u32 = 50;

/// The largest form body the console reads (a note is at most a few hundred bytes).
const MAX_FORM_BYTES: usize = 16 * 1024;

/// The longest operator name kept for the audit trail.
const MAX_NAME_CHARS: usize = 80;

/// How many CONTRL/APERAK of a partner the console reads to find those naming an interchange.
const RELATED_SCAN: u32 = 200;

const CSS: &str = include_str!("static/console.css");
const JS: &str = include_str!("static/console.js");

/// The policy of every console response: our own script and stylesheet only, no inline
/// script or style, no framing, forms only to ourselves.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// What the console keeps beside the API's state.
#[derive(Debug, Clone, Default)]
pub struct ConsoleState {
    /// The live sessions.
    pub sessions: Sessions,
    /// A token for the console only (`[console] token`), accepted beside the API tokens.
    pub token: Option<String>,
    /// Set `Secure` on the cookie even when the request did not say it came over TLS (the
    /// console is reached through a TLS proxy that does not send `X-Forwarded-Proto`).
    pub secure_cookie: bool,
    /// The certificates whose expiry the health page watches.
    pub certificates: Arc<Vec<Certificate>>,
}

/// The `/ui` routes (merged into the API's router by [`super::router`]).
pub fn routes(state: AppState) -> Router<AppState> {
    let guarded = Router::new()
        .route("/ui", get(overview))
        .route("/ui/logout", post(logout))
        .route("/ui/grid-fee-reductions", get(grid_fees))
        .route("/ui/grid-fee-reductions/{id}", get(grid_fee))
        .route("/ui/grid-fee-reductions/{id}/reorder", post(reorder))
        .route("/ui/meter-orders", get(meter_orders))
        .route("/ui/meter-orders/{id}", get(meter_order))
        .route("/ui/journal", get(journal_list))
        .route("/ui/journal/{id}", get(journal_detail))
        .route("/ui/journal/{id}/raw", get(journal::journal_raw))
        .route("/ui/messages", get(messages))
        .route("/ui/deadlines", get(deadlines))
        .route("/ui/clearing", get(clearing))
        .route("/ui/clearing/{id}/resolve", post(resolve_clearing))
        .route("/ui/outbox", get(outbox))
        .route("/ui/outbox/{id}/retry", post(retry_outbox))
        .route("/ui/outbox/{id}/give-up", post(give_up_outbox))
        .route("/ui/quarantine", get(quarantine))
        .route("/ui/quarantine/{id}/raw", get(journal::quarantine_raw))
        .route("/ui/as4", get(as4_requests))
        .route("/ui/as4/{id}/raw", get(journal::as4_request_raw))
        .route("/ui/health", get(health))
        .route("/ui/audit", get(audit))
        .route_layer(middleware::from_fn_with_state(state, require_session));
    Router::new()
        .route("/ui/login", get(login_form).post(login))
        .route("/ui/static/console.css", get(css))
        .route("/ui/static/console.js", get(js))
        .merge(guarded)
        .layer(middleware::map_response(security_headers))
}

async fn security_headers(mut response: Response) -> Response {
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}

async fn css() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=300"),
        ],
        CSS,
    )
        .into_response()
}

async fn js() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=300"),
        ],
        JS,
    )
        .into_response()
}

/// A console failure as an HTML page with its status.
#[derive(Debug)]
pub struct Failure {
    status: StatusCode,
    messages: Vec<String>,
}

impl Failure {
    fn new(status: StatusCode, message: impl Into<String>) -> Failure {
        Failure {
            status,
            messages: vec![message.into()],
        }
    }
}

impl From<ApiError> for Failure {
    fn from(e: ApiError) -> Failure {
        Failure {
            status: e.status,
            messages: e
                .errors
                .into_iter()
                .map(|f| match f.field.as_deref() {
                    Some(field) if !field.is_empty() => format!("{field}: {}", f.message),
                    _ => f.message,
                })
                .collect(),
        }
    }
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Failure {
        Failure::from(ApiError::from(e))
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        (
            self.status,
            Html(pages::error(None, self.status.as_u16(), &self.messages).into_string()),
        )
            .into_response()
    }
}

type PageResult = Result<Html<String>, Failure>;

fn page(markup: Markup) -> PageResult {
    Ok(Html(markup.into_string()))
}

/// The form fields of a POST, read (and its CSRF token checked) by `require_session`.
#[derive(Debug, Clone, Default)]
pub struct FormFields(Vec<(String, String)>);

impl FormFields {
    fn parse(bytes: &[u8]) -> FormFields {
        FormFields(
            form_urlencoded::parse(bytes)
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    /// The value of a field, trimmed; `None` when absent or empty.
    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.trim())
            .filter(|v| !v.is_empty())
    }
}

fn session_id(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(session::cookie_value)
        .map(str::to_string)
}

/// Lets a request through only with a live session; a POST only with the session's CSRF
/// token in its form (checked here, so that no handler can forget it).
async fn require_session(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let now = state.now();
    let operator =
        session_id(request.headers()).and_then(|id| state.console.sessions.operator(&id, now));
    let Some(operator) = operator else {
        return if request.method() == Method::GET || request.method() == Method::HEAD {
            Redirect::to("/ui/login").into_response()
        } else {
            Failure::new(
                StatusCode::FORBIDDEN,
                "no session: log in again (the session may have expired)",
            )
            .into_response()
        };
    };
    let (mut parts, body) = request.into_parts();
    if parts.method != Method::GET && parts.method != Method::HEAD {
        let Ok(bytes) = axum::body::to_bytes(body, MAX_FORM_BYTES).await else {
            return Failure::new(StatusCode::PAYLOAD_TOO_LARGE, "the form is too large")
                .into_response();
        };
        let form = FormFields::parse(&bytes);
        let sent = form.get("csrf").unwrap_or("");
        if !super::same_secret(sent.as_bytes(), operator.csrf.as_bytes()) {
            return Failure::new(
                StatusCode::FORBIDDEN,
                "the form's CSRF token is missing or not this session's: reload the page and try again",
            )
            .into_response();
        }
        parts.extensions.insert(form);
        parts.extensions.insert(operator);
        return next
            .run(Request::from_parts(parts, Body::from(bytes)))
            .await;
    }
    parts.extensions.insert(operator);
    next.run(Request::from_parts(parts, body)).await
}

fn frame(op: &Operator) -> Frame<'_> {
    Frame {
        operator: &op.name,
        csrf: &op.csrf,
    }
}

async fn login_form() -> Html<String> {
    Html(pages::login(None).into_string())
}

/// Whether the request came over TLS as far as we can tell: a TLS proxy in front says so in
/// `X-Forwarded-Proto` (the API itself speaks plain HTTP), or the configuration says so.
fn over_tls(state: &AppState, headers: &HeaderMap) -> bool {
    state.console.secure_cookie
        || headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("https"))
}

async fn login(State(state): State<AppState>, headers: HeaderMap, bytes: Bytes) -> Response {
    let refuse = |status: StatusCode, message: &str| {
        (status, Html(pages::login(Some(message)).into_string())).into_response()
    };
    if bytes.len() > MAX_FORM_BYTES {
        return refuse(StatusCode::PAYLOAD_TOO_LARGE, "the form is too large");
    }
    let form = FormFields::parse(&bytes);
    let name = form.get("name").unwrap_or("");
    if name.is_empty()
        || name.chars().count() > MAX_NAME_CHARS
        || name.chars().any(char::is_control)
    {
        return refuse(
            StatusCode::BAD_REQUEST,
            "give your name (up to 80 characters): the audit trail records it with each action",
        );
    }
    let token = form.get("token").unwrap_or("");
    let accepted = !token.is_empty()
        && state
            .tokens
            .iter()
            .chain(state.console.token.iter())
            .any(|t| super::same_secret(t.as_bytes(), token.as_bytes()));
    if !accepted {
        tracing::warn!("console login refused: wrong token");
        return refuse(StatusCode::UNAUTHORIZED, "the token is not valid");
    }
    let fingerprint = hex::encode(&Sha256::digest(token.as_bytes())[..4]);
    let id = state.console.sessions.open(name, &fingerprint, state.now());
    tracing::info!(operator = %name, token = %fingerprint, "console login");
    let cookie = session::set_cookie(&id, over_tls(&state, &headers));
    (
        StatusCode::SEE_OTHER,
        [
            (header::SET_COOKIE, cookie),
            (header::LOCATION, "/ui".to_string()),
        ],
    )
        .into_response()
}

async fn logout(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(id) = session_id(&headers) {
        state.console.sessions.close(&id);
    }
    (
        StatusCode::SEE_OTHER,
        [
            (
                header::SET_COOKIE,
                session::clear_cookie(over_tls(&state, &headers)),
            ),
            (header::LOCATION, "/ui/login".to_string()),
        ],
    )
        .into_response()
}

/// `?cursor=…` and the console's page length.
fn page_request(q: &[(String, String)]) -> PageRequest {
    PageRequest {
        cursor: param(q, "cursor").map(str::to_string),
        limit: PAGE_LIMIT,
    }
}

fn param<'a>(q: &'a [(String, String)], name: &str) -> Option<&'a str> {
    q.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.trim())
        .filter(|v| !v.is_empty())
}

async fn conn(state: &AppState) -> Result<StoreConn, Failure> {
    Ok(state.store.conn().await?)
}

async fn overview(State(state): State<AppState>, Extension(op): Extension<Operator>) -> PageResult {
    let now = state.now();
    let mut c = conn(&state).await?;
    let counts = c.counts().await?;
    let console = c.console_counts(now).await?;
    let (messages_new, _) = c.messages_waiting().await?;
    let health = state.health.snapshot();
    page(pages::overview(
        &frame(&op),
        &pages::Overview {
            counts: &counts,
            console: &console,
            messages_new,
            health: &health,
            certificates: &state.console.certificates,
            now,
        },
    ))
}

/// The API's status filter for an order list, checked as the API checks it.
fn order_filter<T: serde::de::DeserializeOwned>(
    q: &[(String, String)],
) -> Result<OrderFilter, Failure> {
    let status = param(q, "status");
    if let Some(s) = status {
        if serde_json::from_value::<T>(serde_json::Value::String(s.to_string())).is_err() {
            return Err(Failure::new(
                StatusCode::BAD_REQUEST,
                format!("unknown status {s:?}"),
            ));
        }
    }
    Ok(OrderFilter {
        status: status.map(str::to_string),
        subscription: param(q, "subscription").map(str::to_string),
    })
}

async fn grid_fees(
    State(state): State<AppState>,
    Extension(op): Extension<Operator>,
    Query(q): Query<Vec<(String, String)>>,
) -> PageResult {
    let filter = order_filter::<crate::orders::GridFeeStatus>(&q)?;
    let list = conn(&state)
        .await?
        .list_grid_fees(&filter, &page_request(&q))
        .await?;
    page(pages::grid_fee_list(
        &frame(&op),
        &list,
        filter.status.as_deref(),
        filter.subscription.as_deref(),
    ))
}

async fn meter_orders(
    State(state): State<AppState>,
    Extension(op): Extension<Operator>,
    Query(q): Query<Vec<(String, String)>>,
) -> PageResult {
    let filter = order_filter::<crate::orders::MeterStatus>(&q)?;
    let list = conn(&state)
        .await?
        .list_meter_orders(&filter, &page_request(&q))
        .await?;
    page(pages::meter_list(
        &frame(&op),
        &list,
        filter.status.as_deref(),
        filter.subscription.as_deref(),
    ))
}

fn entry_of(item: &JournalItem) -> JournalEntry {
    JournalEntry {
        id: item.id.clone(),
        direction: item.direction,
        partner: item.partner.clone(),
        transport: item.transport.clone(),
        interchange_ref: item.interchange_ref.clone(),
        message_refs: item.message_refs.clone(),
        pids: item.pids.clone(),
        message_types: item.message_types.clone(),
        document_numbers: item.document_numbers.clone(),
        received_at: item.received_at,
        sent_at: item.sent_at,
        state: item.state,
        outcome: item.outcome.clone(),
        attempts: item.attempts,
        size: item.raw.len() as u64,
    }
}

/// The CONTRL and APERAK exchanged with the item's partner (either way) that name the
/// item's UNB reference or one of its document numbers, among the partner's latest
/// [`RELATED_SCAN`] of each type.
async fn related_acks(c: &mut StoreConn, item: &JournalItem) -> Result<Vec<JournalEntry>, Failure> {
    let mut names: Vec<&str> = item.document_numbers.iter().map(String::as_str).collect();
    if let Some(r) = &item.interchange_ref {
        names.push(r);
    }
    let mut found = Vec::new();
    for kind in ["CONTRL", "APERAK"] {
        if item.message_types.iter().all(|t| t == kind) {
            continue;
        }
        let filter = JournalFilter {
            partner: Some(item.partner.clone()),
            message_type: Some(kind.to_string()),
            ..JournalFilter::default()
        };
        let list = c
            .list_journal(
                &filter,
                &PageRequest {
                    cursor: None,
                    limit: RELATED_SCAN,
                },
            )
            .await?;
        for entry in list.items {
            if entry.id == item.id {
                continue;
            }
            let raw = c.journal_raw(&entry.id).await?.unwrap_or_default();
            if names.iter().any(|n| names_value(&raw, n)) {
                found.push(entry);
            }
        }
    }
    Ok(found)
}

/// The contact lines (CTA, COM) of the partner's message a rejection names
/// (`"<UNB reference>/<UNH reference>"`).
async fn rejection_contact(
    c: &mut StoreConn,
    partner: &str,
    message_reference: Option<&str>,
) -> Result<Vec<String>, Failure> {
    let Some(interchange) = message_reference.and_then(|r| r.split('/').next()) else {
        return Ok(Vec::new());
    };
    let filter = JournalFilter {
        direction: Some(Direction::In),
        partner: Some(partner.to_string()),
        reference: Some(interchange.to_string()),
        ..JournalFilter::default()
    };
    let list = c
        .list_journal(
            &filter,
            &PageRequest {
                cursor: None,
                limit: 1,
            },
        )
        .await?;
    let Some(entry) = list.items.first() else {
        return Ok(Vec::new());
    };
    let raw = c.journal_raw(&entry.id).await?.unwrap_or_default();
    Ok(edifact_view::contacts(&raw))
}

/// What an order's page shows beside the order.
struct Loaded {
    history: Vec<crate::store::HistoryEntry>,
    exchanged: Vec<JournalEntry>,
    outbox: Vec<crate::store::OutboxItem>,
    awaiting: Vec<crate::store::StoredDeadline>,
    contact: Vec<String>,
    audit: Vec<crate::store::AuditEntry>,
}

impl Loaded {
    /// What the detail pages read, at `now`.
    fn context(&self, now: chrono::DateTime<chrono::Utc>) -> pages::OrderContext<'_> {
        pages::OrderContext {
            history: &self.history,
            exchanged: &self.exchanged,
            outbox: &self.outbox,
            awaiting: &self.awaiting,
            contact: &self.contact,
            audit: &self.audit,
            now: Some(now),
        }
    }
}

async fn order_context(
    c: &mut StoreConn,
    order_id: &str,
    partner: &str,
    rejection: Option<&crate::orders::Rejection>,
) -> Result<Loaded, Failure> {
    let history = c.history(order_id).await?;
    let mut exchanged: Vec<JournalEntry> = Vec::new();
    let mut acks: Vec<JournalEntry> = Vec::new();
    for journal_id in history.iter().filter_map(|h| h.journal_id.as_deref()) {
        if exchanged.iter().any(|e| e.id == journal_id) {
            continue;
        }
        if let Some(item) = c.journal_item(journal_id).await? {
            for a in related_acks(c, &item).await? {
                if !acks.iter().any(|x| x.id == a.id) {
                    acks.push(a);
                }
            }
            exchanged.push(entry_of(&item));
        }
    }
    for a in acks {
        if !exchanged.iter().any(|e| e.id == a.id) {
            exchanged.push(a);
        }
    }
    exchanged.sort_by(|a, b| a.id.cmp(&b.id));
    let outbox = c.outbox_of_order(order_id).await?;
    let awaiting = c.deadlines_of_order(order_id).await?;
    let contact = match rejection {
        Some(r) => rejection_contact(c, partner, r.message_reference.as_deref()).await?,
        None => Vec::new(),
    };
    let audit = c
        .list_audit(
            Some(order_id),
            &PageRequest {
                cursor: None,
                limit: 500,
            },
        )
        .await?
        .items;
    Ok(Loaded {
        history,
        exchanged,
        outbox,
        awaiting,
        contact,
        audit,
    })
}

async fn grid_fee(
    State(state): State<AppState>,
    Extension(op): Extension<Operator>,
    Path(id): Path<String>,
) -> PageResult {
    let mut c = conn(&state).await?;
    let record = c
        .grid_fee(&id)
        .await?
        .ok_or_else(|| Failure::from(ApiError::not_found("grid-fee reduction", &id)))?;
    let l = order_context(
        &mut c,
        &id,
        record.order.grid_operator.as_str(),
        record.order.rejection.as_ref(),
    )
    .await?;
    let context = l.context(state.now());
    page(pages::grid_fee_detail(&frame(&op), &record, &context))
}

async fn meter_order(
    State(state): State<AppState>,
    Extension(op): Extension<Operator>,
    Path(id): Path<String>,
) -> PageResult {
    let mut c = conn(&state).await?;
    let record = c
        .meter_order(&id)
        .await?
        .ok_or_else(|| Failure::from(ApiError::not_found("meter order", &id)))?;
    let l = order_context(
        &mut c,
        &id,
        record.order.metering_operator.as_str(),
        record.order.blocked_reason.as_ref(),
    )
    .await?;
    let context = l.context(state.now());
    page(pages::meter_detail(&frame(&op), &record, &context))
}

async fn reorder(
    State(state): State<AppState>,
    Extension(op): Extension<Operator>,
    Extension(form): Extension<FormFields>,
    Path(id): Path<String>,
) -> Result<Response, Failure> {
    let effective_date = match form.get("effective_date") {
        None => None,
        Some(d) => Some(d.parse::<chrono::NaiveDate>().map_err(|e| {
            Failure::new(
                StatusCode::BAD_REQUEST,
                format!("effective_date {d:?} is not a date (YYYY-MM-DD): {e}"),
            )
        })?),
    };
    if let Some(d) = effective_date {
        let earliest = crate::orders::lead_time::earliest_grid_fee_date(state.now().naive_utc());
        if d < earliest {
            return Err(Failure::new(
                StatusCode::BAD_REQUEST,
                format!("the change date {d} is earlier than {earliest}: §14a orders need 2 working days' lead"),
            ));
        }
    }
    let new = actions::reorder_grid_fee(&state, &id, effective_date, &op.actor()).await?;
    Ok(Redirect::to(&format!("/ui/grid-fee-reductions/{}", new.order.id)).into_response())
}

async fn journal_list(
    State(state): State<AppState>,
    Extension(op): Extension<Operator>,
    Query(q): Query<Vec<(String, String)>>,
) -> PageResult {
    let value = |name: &str| param(&q, name).unwrap_or("").to_string();
    let search = pages::JournalSearch {
        direction: value("filter[direction][eq]"),
        partner: value("filter[partner][eq]"),
        pid: value("filter[pid][eq]"),
        message_type: value("filter[message_type][eq]"),
        state: value("filter[state][eq]"),
        from: value("filter[time][gte]"),
        until: value("filter[time][lt]"),
        reference: value("reference"),
    };
    // The API's own reading of its filters (the same names, the same checks).
    let api_pairs: Vec<(String, String)> = q
        .iter()
        .filter(|(k, v)| k.starts_with("filter[") && !v.trim().is_empty())
        .map(|(k, v)| (k.clone(), v.trim().to_string()))
        .collect();
    let mut filter = journal::console_filter(&api_pairs)?;
    filter.reference = param(&q, "reference").map(str::to_string);
    let list = conn(&state)
        .await?
        .list_journal(&filter, &page_request(&q))
        .await?;
    page(pages::journal_list(&frame(&op), &list, &search))
}

/// The findings of an interchange (syntax errors and grammar findings) as marks.
pub fn marks_of(raw: &[u8]) -> Vec<Mark> {
    let outcome = parse_lenient(raw);
    let mut marks: Vec<Mark> = outcome
        .errors
        .iter()
        .map(|e| Mark {
            offset: e.position.offset,
            severity: "error",
            text: e.to_string(),
        })
        .collect();
    if let Some(document) = &outcome.document {
        for ic in document.interchanges() {
            for report in validate_interchange(&ic, Registry::embedded()) {
                for f in &report.findings {
                    let codes = match (f.contrl_code, f.aperak_code) {
                        (Some(c), _) => format!(" [CONTRL {c}]"),
                        (None, Some(a)) => format!(" [APERAK {a}]"),
                        _ => String::new(),
                    };
                    marks.push(Mark {
                        offset: f.offset,
                        severity: match f.severity {
                            Severity::Error => "error",
                            Severity::Warning => "warning",
                        },
                        text: format!("{} ({}){codes}", f.message, f.reference),
                    });
                }
            }
        }
    }
    marks
}

async fn journal_detail(
    State(state): State<AppState>,
    Extension(op): Extension<Operator>,
    Path(id): Path<String>,
) -> PageResult {
    let mut c = conn(&state).await?;
    let item = c
        .journal_item(&id)
        .await?
        .ok_or_else(|| Failure::from(ApiError::not_found("journal item", &id)))?;
    let related = related_acks(&mut c, &item).await?;
    let queued = c.outbox_answering(&id).await?;
    let marks = marks_of(&item.raw);
    let raw = edifact_view::raw_view(&item.raw, &marks);
    let tree = edifact_view::segment_tree(&item.raw, Registry::embedded());
    page(pages::journal_detail(
        &frame(&op),
        &item,
        tree,
        raw,
        &related,
        &queued,
    ))
}

async fn messages(
    State(state): State<AppState>,
    Extension(op): Extension<Operator>,
    Query(q): Query<Vec<(String, String)>>,
) -> PageResult {
    let wanted = param(&q, "state").unwrap_or("new").to_string();
    let filter = MessageFilter {
        state: Some(wanted.clone()),
        ..MessageFilter::default()
    };
    let list = conn(&state)
        .await?
        .list_messages(&filter, &page_request(&q))
        .await?;
    page(pages::messages_list(&frame(&op), &list, &wanted))
}

async fn deadlines(
    State(state): State<AppState>,
    Extension(op): Extension<Operator>,
    Query(q): Query<Vec<(String, String)>>,
) -> PageResult {
    let list = conn(&state)
        .await?
        .list_deadlines(Some("overdue"), &page_request(&q))
        .await?;
    page(pages::deadlines_list(&frame(&op), &list, state.now()))
}

async fn clearing(
    State(state): State<AppState>,
    Extension(op): Extension<Operator>,
    Query(q): Query<Vec<(String, String)>>,
) -> PageResult {
    let list = conn(&state)
        .await?
        .list_clearing(false, &page_request(&q))
        .await?;
    page(pages::clearing_list(&frame(&op), &list))
}

async fn resolve_clearing(
    State(state): State<AppState>,
    Extension(op): Extension<Operator>,
    Extension(form): Extension<FormFields>,
    Path(id): Path<String>,
) -> Result<Response, Failure> {
    actions::resolve_clearing(&state, &id, form.get("note"), &op.actor()).await?;
    Ok(Redirect::to("/ui/clearing").into_response())
}

async fn outbox(
    State(state): State<AppState>,
    Extension(op): Extension<Operator>,
    Query(q): Query<Vec<(String, String)>>,
) -> PageResult {
    let given_up = param(&q, "given_up").is_some();
    let list = conn(&state)
        .await?
        .list_parked_outbox(given_up, &page_request(&q))
        .await?;
    page(pages::outbox_list(&frame(&op), &list, given_up))
}

async fn retry_outbox(
    State(state): State<AppState>,
    Extension(op): Extension<Operator>,
    Extension(form): Extension<FormFields>,
    Path(id): Path<String>,
) -> Result<Response, Failure> {
    actions::retry_outbox(&state, &id, form.get("note"), &op.actor()).await?;
    Ok(Redirect::to("/ui/outbox").into_response())
}

async fn give_up_outbox(
    State(state): State<AppState>,
    Extension(op): Extension<Operator>,
    Extension(form): Extension<FormFields>,
    Path(id): Path<String>,
) -> Result<Response, Failure> {
    actions::give_up_outbox(&state, &id, form.get("note"), &op.actor()).await?;
    Ok(Redirect::to("/ui/outbox").into_response())
}

async fn quarantine(
    State(state): State<AppState>,
    Extension(op): Extension<Operator>,
    Query(q): Query<Vec<(String, String)>>,
) -> PageResult {
    let list = conn(&state)
        .await?
        .list_quarantine(&page_request(&q))
        .await?;
    page(pages::quarantine_list(&frame(&op), &list))
}

async fn as4_requests(
    State(state): State<AppState>,
    Extension(op): Extension<Operator>,
    Query(q): Query<Vec<(String, String)>>,
) -> PageResult {
    let outcome = param(&q, "outcome").unwrap_or("refused").to_string();
    if !["pending", "receipted", "refused", "busy"].contains(&outcome.as_str()) {
        return Err(Failure::new(
            StatusCode::BAD_REQUEST,
            format!("unknown outcome {outcome:?}"),
        ));
    }
    let list = conn(&state)
        .await?
        .list_as4_requests(Some(&outcome), &page_request(&q))
        .await?;
    page(pages::as4_list(&frame(&op), &list, &outcome))
}

async fn health(State(state): State<AppState>, Extension(op): Extension<Operator>) -> PageResult {
    page(pages::health(
        &frame(&op),
        &state.health.snapshot(),
        &state.console.certificates,
        state.now(),
    ))
}

async fn audit(
    State(state): State<AppState>,
    Extension(op): Extension<Operator>,
    Query(q): Query<Vec<(String, String)>>,
) -> PageResult {
    let list = conn(&state)
        .await?
        .list_audit(None, &page_request(&q))
        .await?;
    page(pages::audit_list(&frame(&op), &list))
}
