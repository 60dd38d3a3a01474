//! The HTTP API for the supplier's core system (axum, JSON): grid-fee reductions, meter
//! orders, subscription confirmation, pass-through sending (`/interchanges`), the forward feed
//! of received messages (`/messages`), operator views of the outbox, the clearing list, the
//! journal of interchanges in and out, the mail quarantine and the received AS4 requests
//! (each with its raw bytes), the files the file drop set aside, health per transport,
//! Prometheus metrics and the OpenAPI document.
//!
//! What it does not do: decide product rules (those are `orders::check_new_reductions` and
//! `orders::check_new_meter_order`) or send anything (it only queues outbox items for the
//! outbound loop). Everything one request changes commits in one store transaction.
//!
//! Authentication: `Authorization: Bearer <token>` on every route except `/health`,
//! `/metrics` and `/openapi.json`.

pub mod actions;
pub mod console;
mod error;
mod input;
mod journal;
mod messages;
mod operations;
mod orders;
mod passthrough;
mod resources;
pub mod server;

use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use chrono::{DateTime, Utc};

pub use error::{ApiError, FieldError};
pub use input::{DEFAULT_LIMIT, MAX_LIMIT};

use crate::ids::MarketPartnerId;
use crate::orders::{GridFeeStatus, MeterStatus};
use crate::store::{serde_text, Store};
use crate::transport::health::Health;

/// The OpenAPI 3.1 document served at `/openapi.json` (hand-written: `src/api/openapi.json`).
pub const OPENAPI_JSON: &str = include_str!("openapi.json");

/// Where the API reads the time (tests pass a fixed clock).
pub use crate::clock::Clock;

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    /// The store.
    pub store: Store,
    /// Accepted bearer tokens.
    tokens: Arc<Vec<String>>,
    /// The clock.
    pub clock: Clock,
    /// Our market partner ID: the UNB sender of what is passed through.
    own_id: MarketPartnerId,
    /// What each transport did last (`/health`, `/metrics`).
    health: Health,
    /// The file drop's inbox, whose `failed/` folder `GET /inbox/failed` lists.
    file_drop_inbox: Option<PathBuf>,
    /// The operator console's sessions and settings.
    console: console::ConsoleState,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("store", &self.store)
            .field("tokens", &format_args!("{} token(s)", self.tokens.len()))
            .finish_non_exhaustive()
    }
}

impl AppState {
    /// State with the store, the accepted bearer tokens and the wall clock. With no token,
    /// every protected route answers 401.
    pub fn new(store: Store, tokens: Vec<String>) -> AppState {
        AppState {
            store,
            tokens: Arc::new(tokens.into_iter().filter(|t| !t.is_empty()).collect()),
            clock: Clock::system(),
            own_id: default_own_id(),
            health: Health::default(),
            file_drop_inbox: None,
            console: console::ConsoleState::default(),
        }
    }

    /// The same state with the console's own token (accepted at its login beside the API
    /// tokens) and whether its cookie is always `Secure` (behind a TLS proxy).
    pub fn with_console(mut self, token: Option<String>, secure_cookie: bool) -> AppState {
        self.console.token = token.filter(|t| !t.is_empty());
        self.console.secure_cookie = secure_cookie;
        self
    }

    /// The same state with the certificates whose expiry the console's health page watches.
    pub fn with_certificates(mut self, certificates: Vec<console::pages::Certificate>) -> AppState {
        self.console.certificates = Arc::new(certificates);
        self
    }

    /// The same state reading the transports' `health` registry and the file drop's `inbox`.
    pub fn with_transport_health(mut self, health: Health, inbox: PathBuf) -> AppState {
        self.health = health;
        self.file_drop_inbox = Some(inbox);
        self
    }

    /// The same state with our market partner ID (the configuration's `own_id`; without it,
    /// the configuration's default).
    pub fn with_own_id(mut self, own_id: MarketPartnerId) -> AppState {
        self.own_id = own_id;
        self
    }

    /// The same state with another clock.
    pub fn with_clock(mut self, clock: Clock) -> AppState {
        self.clock = clock;
        self
    }

    fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }
}

/// The configuration's default own ID ([`crate::config::DEFAULT_OWN_ID`], a valid ID: the
/// configuration's tests check it).
fn default_own_id() -> MarketPartnerId {
    crate::config::DEFAULT_OWN_ID
        .parse()
        .expect("the default own ID is a valid market partner ID")
}

/// Every route of the API (the list `/openapi.json` documents; a test checks they agree).
pub const ROUTES: &[(&str, &str)] = &[
    ("post", "/grid-fee-reductions"),
    ("get", "/grid-fee-reductions"),
    ("get", "/grid-fee-reductions/{id}"),
    ("post", "/subscriptions/{id}/confirm"),
    ("post", "/meter-orders"),
    ("get", "/meter-orders"),
    ("get", "/meter-orders/{id}"),
    ("patch", "/meter-orders/{id}"),
    ("post", "/meter-orders/{id}/cancel"),
    ("get", "/clearing"),
    ("post", "/clearing/{id}/resolve"),
    ("get", "/outbox"),
    ("post", "/outbox/{id}/retry"),
    ("post", "/outbox/{id}/give-up"),
    ("get", "/journal"),
    ("get", "/journal/{id}/raw"),
    ("get", "/quarantine"),
    ("get", "/quarantine/{id}/raw"),
    ("get", "/as4/requests"),
    ("get", "/deadlines"),
    ("get", "/messages"),
    ("get", "/messages/{id}"),
    ("post", "/messages/{id}/ack"),
    ("post", "/messages/{id}/aperak"),
    ("get", "/as4/requests/{id}/raw"),
    ("post", "/interchanges"),
    ("get", "/interchanges"),
    ("get", "/interchanges/{id}"),
    ("get", "/inbox/failed"),
    ("get", "/health"),
    ("get", "/metrics"),
    ("get", "/openapi.json"),
];

/// The router with every route of [`ROUTES`].
pub fn router(state: AppState) -> Router {
    let protected = Router::new()
        .route(
            "/grid-fee-reductions",
            post(orders::create_grid_fee).get(orders::list_grid_fees),
        )
        .route("/grid-fee-reductions/{id}", get(orders::grid_fee))
        .route(
            "/subscriptions/{id}/confirm",
            post(orders::confirm_subscription),
        )
        .route(
            "/meter-orders",
            post(orders::create_meter_order).get(orders::list_meter_orders),
        )
        .route(
            "/meter-orders/{id}",
            get(orders::meter_order).patch(orders::patch_meter_order),
        )
        .route(
            "/meter-orders/{id}/cancel",
            post(orders::cancel_meter_order),
        )
        .route("/clearing", get(orders::list_clearing))
        .route("/clearing/{id}/resolve", post(orders::resolve_clearing))
        .route("/outbox", get(orders::list_outbox))
        .route("/outbox/{id}/retry", post(orders::retry_outbox))
        .route("/outbox/{id}/give-up", post(orders::give_up_outbox))
        .route("/journal", get(journal::list_journal))
        .route("/journal/{id}/raw", get(journal::journal_raw))
        .route("/quarantine", get(orders::list_quarantine))
        .route("/quarantine/{id}/raw", get(journal::quarantine_raw))
        .route("/as4/requests", get(orders::list_as4_requests))
        .route("/deadlines", get(orders::list_deadlines))
        .route("/messages", get(messages::list_messages))
        .route("/messages/{id}", get(messages::message))
        .route("/messages/{id}/ack", post(messages::ack_message))
        .route("/messages/{id}/aperak", post(messages::aperak_for_message))
        .route("/as4/requests/{id}/raw", get(journal::as4_request_raw))
        .route(
            "/interchanges",
            post(passthrough::create).get(passthrough::list),
        )
        .route("/interchanges/{id}", get(passthrough::one))
        .route("/inbox/failed", get(operations::list_failed_files))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token));
    Router::new()
        .route("/health", get(operations::health))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi))
        .merge(protected)
        .fallback(not_found)
        .layer(middleware::from_fn(errors_in_our_shape))
        // The console answers in HTML: merged after the JSON error shape, so that its pages
        // and refusals stay pages. Not in ROUTES nor in /openapi.json.
        .merge(console::routes(state.clone()))
        .layer(middleware::from_fn(refuse_unsafe_targets))
        .with_state(state)
}

/// Every 4xx in the `errors[]` shape: the ones axum and hyper answer themselves (413 for a
/// body over the limit, 405, 415, a path that is not UTF-8, …) come as text or empty, so
/// they are rewritten here with their status kept.
async fn errors_in_our_shape(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !status.is_client_error() || is_json {
        return response;
    }
    let code = match status {
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::PAYLOAD_TOO_LARGE => "body_too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::URI_TOO_LONG => "uri_too_long",
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => "headers_too_large",
        StatusCode::NOT_FOUND => "not_found",
        _ => "invalid_request",
    };
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 4096).await.unwrap_or_default();
    let message = match String::from_utf8_lossy(&text).trim() {
        "" => status
            .canonical_reason()
            .unwrap_or("invalid request")
            .to_string(),
        t => t.to_string(),
    };
    let mut rewritten = ApiError::general(status, code, message).into_response();
    for (name, value) in parts.headers.iter() {
        if name == header::ALLOW {
            rewritten.headers_mut().insert(name.clone(), value.clone());
        }
    }
    rewritten
}

/// Most bytes of a request target (path and query, still percent-encoded).
pub const MAX_TARGET_BYTES: usize = 2048;

/// The request target decoded, when it is UTF-8 without control characters (NUL included) and
/// not longer than [`MAX_TARGET_BYTES`]; else why not. No such value ever reaches a handler or
/// the database, which differ in what they accept (PostgreSQL refuses NUL in text).
fn check_target(target: &str) -> Result<(), &'static str> {
    if target.len() > MAX_TARGET_BYTES {
        return Err("the path and query are longer than 2048 bytes");
    }
    let bytes = target.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    decoded.push((h * 16 + l) as u8);
                    i += 3;
                    continue;
                }
                _ => decoded.push(b'%'),
            },
            b'+' => decoded.push(b' '),
            b => decoded.push(b),
        }
        i += 1;
    }
    let text = std::str::from_utf8(&decoded).map_err(|_| "the path or query is not UTF-8")?;
    if text.chars().any(char::is_control) {
        return Err("the path or query holds a control character");
    }
    Ok(())
}

/// Answers 400 in the `errors[]` shape to a request whose target [`check_target`] refuses.
async fn refuse_unsafe_targets(request: Request, next: Next) -> Response {
    let target = request
        .uri()
        .path_and_query()
        .map_or(request.uri().path(), |p| p.as_str())
        .to_string();
    match check_target(&target) {
        Ok(()) => next.run(request).await,
        Err(reason) => {
            ApiError::invalid(vec![FieldError::new("", "invalid_target", reason)]).into_response()
        }
    }
}

/// Compares without stopping at the first difference, so response times do not tell how
/// much of a guessed token was right.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn require_token(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match given {
        Some(token)
            if state
                .tokens
                .iter()
                .any(|t| same_secret(t.as_bytes(), token.as_bytes())) =>
        {
            next.run(request).await
        }
        Some(_) => ApiError::general(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "the bearer token is not valid",
        )
        .into_response(),
        None => ApiError::general(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "send Authorization: Bearer <token>",
        )
        .into_response(),
    }
}

async fn not_found() -> ApiError {
    ApiError::general(StatusCode::NOT_FOUND, "not_found", "no such route")
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI_JSON).into_response()
}

/// Prometheus text: orders by kind and status, outbox, webhook and journal backlogs, open
/// clearing items, and the transports (`operations::transport_metrics`). Every known status
/// is written, also with 0, so series do not vanish.
async fn metrics(State(state): State<AppState>) -> Response {
    let read = async {
        let mut conn = state.store.conn().await?;
        let counts = conn.counts().await?;
        let waiting = conn.messages_waiting().await?;
        Ok::<_, crate::store::StoreError>((counts, waiting))
    };
    let (counts, (messages_new, oldest_new)) = match read.await {
        Ok(c) => c,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let mut out = String::new();
    let count_of = |list: &[(String, i64)], label: &str| {
        list.iter().find(|(l, _)| l == label).map_or(0, |(_, n)| *n)
    };
    out.push_str(
        "# HELP mako_orders Orders in the store by kind and status.\n# TYPE mako_orders gauge\n",
    );
    let grid_statuses = [
        GridFeeStatus::Intended,
        GridFeeStatus::Ordered,
        GridFeeStatus::Activated,
        GridFeeStatus::Rejected,
        GridFeeStatus::Ended,
    ];
    for s in grid_statuses.iter().map(serde_text) {
        out.push_str(&format!(
            "mako_orders{{kind=\"grid_fee_reduction\",status=\"{s}\"}} {}\n",
            count_of(&counts.grid_fee_reductions, &s)
        ));
    }
    let meter_statuses = [
        MeterStatus::Created,
        MeterStatus::Placed,
        MeterStatus::CheckSubmitted,
        MeterStatus::CheckReviewed,
        MeterStatus::Scheduled,
        MeterStatus::Installed,
        MeterStatus::Activated,
        MeterStatus::Cancelled,
    ];
    for s in meter_statuses.iter().map(serde_text) {
        out.push_str(&format!(
            "mako_orders{{kind=\"meter_order\",status=\"{s}\"}} {}\n",
            count_of(&counts.meter_orders, &s)
        ));
    }
    out.push_str(
        "# HELP mako_outbox_items Outbox items by state.\n# TYPE mako_outbox_items gauge\n",
    );
    for s in ["pending", "in_flight", "sent", "parked"] {
        out.push_str(&format!(
            "mako_outbox_items{{state=\"{s}\"}} {}\n",
            count_of(&counts.outbox, s)
        ));
    }
    out.push_str(
        "# HELP mako_webhook_deliveries Webhook deliveries by state.\n# TYPE mako_webhook_deliveries gauge\n",
    );
    for s in ["pending", "in_flight", "delivered", "parked"] {
        out.push_str(&format!(
            "mako_webhook_deliveries{{state=\"{s}\"}} {}\n",
            count_of(&counts.webhooks, s)
        ));
    }
    out.push_str("# HELP mako_journal_items Journaled interchanges by direction and state.\n# TYPE mako_journal_items gauge\n");
    for (direction, states) in [
        ("in", &["received", "processing", "processed", "failed"][..]),
        // Out: `queued` and `failed` are pass-throughs not sent (yet, or given up).
        ("out", &["queued", "processed", "failed"][..]),
    ] {
        for s in states {
            out.push_str(&format!(
                "mako_journal_items{{direction=\"{direction}\",state=\"{s}\"}} {}\n",
                count_of(&counts.journal, &format!("{direction}/{s}"))
            ));
        }
    }
    out.push_str(&format!(
        "# HELP mako_clearing_open Inbound messages waiting in the clearing list.\n# TYPE mako_clearing_open gauge\nmako_clearing_open {}\n",
        counts.clearing_open
    ));
    out.push_str(&format!(
        "# HELP mako_messages_new Forwarded messages the supplier core has not taken yet.\n# TYPE mako_messages_new gauge\nmako_messages_new {messages_new}\n\
         # HELP mako_messages_new_oldest_age_seconds Age of the oldest forwarded message not taken yet.\n# TYPE mako_messages_new_oldest_age_seconds gauge\nmako_messages_new_oldest_age_seconds {}\n",
        oldest_new.map_or(0, |t| (state.now() - t).num_seconds().max(0))
    ));
    operations::transport_metrics(&state, &mut out).await;
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        out,
    )
        .into_response()
}

#[cfg(test)]
mod target_tests {
    use super::check_target;

    #[test]
    fn regression_nul_control_characters_and_bad_utf8_never_pass() {
        for bad in [
            "/grid-fee-reductions/gfr_%00x",
            "/messages?filter[partner][eq]=%0A1",
            "/meter-orders/%FF",
            "/x?cursor=%7F",
        ] {
            assert!(check_target(bad).is_err(), "{bad}");
        }
        assert!(check_target(&format!("/x?cursor={}", "a".repeat(3000))).is_err());
        for good in [
            "/grid-fee-reductions?filter[status][eq]=ordered&limit=2",
            "/messages/msg_0123abcd",
            "/x?q=M%C3%BCller+1%2B1",
            "/x?q=100%",
        ] {
            assert!(check_target(good).is_ok(), "{good}");
        }
    }
}
