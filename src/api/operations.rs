//! What operators watch besides the orders: `/health` (the database and every transport),
//! the transports' lines of `/metrics`, and `GET /inbox/failed` (the files the file drop set
//! aside). The transports report into the in-memory registry
//! ([`crate::transport::health::Health`]); this module only reads it.

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::input::ListQuery;
use super::resources::time;
use super::{ApiError, AppState, FieldError};
use crate::store::Backend;
use crate::transport::file_drop::{failed_files, FailedFile};
use crate::transport::health::{Snapshot, State as PartState, Status};

/// `GET /health`: 200 with `"status": "ok"` when the database answers and no transport or
/// partner is failing; 200 with `"degraded"` and the failing ones named with their last error
/// when one is; 503 (`"unavailable"`) only when the database does not answer.
pub async fn health(State(state): State<AppState>) -> Response {
    let database = match state.store.backend() {
        Backend::Sqlite => "sqlite",
        Backend::Postgres => "postgres",
    };
    let snapshot = state.health.snapshot();
    let failing = failing(&snapshot);
    let mut body = json!({
        "status": if failing.is_empty() { "ok" } else { "degraded" },
        "database": database,
        "transports": transports(&snapshot),
        "partners": snapshot.partners.iter().map(|p| {
            let mut v = status_json(&p.status);
            v["partner"] = json!(p.partner.as_str());
            v["transport"] = json!(p.part.label());
            v
        }).collect::<Vec<_>>(),
        "failing": failing,
    });
    match state.store.ping().await {
        Ok(()) => Json(body).into_response(),
        Err(e) => {
            body["status"] = json!("unavailable");
            body["error"] = json!(e.to_string());
            (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
        }
    }
}

fn status_json(status: &Status) -> Value {
    json!({
        "state": status.state().label(),
        "last_success_at": status.last_success.map(time),
        "last_failure": status.last_failure.as_ref().map(|f| json!({
            "at": time(f.at),
            "reason": f.reason,
        })),
        "failures": status.failures,
    })
}

/// `{"imap": {...}, "smtp": {...}}`: the parts in use.
fn transports(snapshot: &Snapshot) -> Value {
    let mut out = serde_json::Map::new();
    for (part, status) in &snapshot.parts {
        out.insert(part.label().to_string(), status_json(status));
    }
    Value::Object(out)
}

/// Every failing part and partner with its last error.
fn failing(snapshot: &Snapshot) -> Vec<Value> {
    let down = |s: &Status| s.state() == PartState::Down;
    let error = |s: &Status| {
        s.last_failure
            .as_ref()
            .map(|f| (time(f.at), f.reason.clone()))
    };
    let parts = snapshot
        .parts
        .iter()
        .filter(|(_, s)| down(s))
        .map(|(part, s)| {
            let (at, reason) = error(s).unwrap_or_default();
            json!({"transport": part.label(), "partner": null, "error": reason, "at": at})
        });
    let partners = snapshot
        .partners
        .iter()
        .filter(|p| down(&p.status))
        .map(|p| {
            let (at, reason) = error(&p.status).unwrap_or_default();
            json!({"transport": p.part.label(), "partner": p.partner.as_str(), "error": reason, "at": at})
        });
    parts.chain(partners).collect()
}

/// The transports' lines of `/metrics`: per part `mako_transport_up`, the last success and
/// failure as Unix time (0: none since the start) and the failures since the start; the same
/// per partner and part; and the files in `inbox/failed/`.
pub async fn transport_metrics(state: &AppState, out: &mut String) {
    let snapshot = state.health.snapshot();
    let seconds = |t: Option<DateTime<Utc>>| t.map_or(0, |t| t.timestamp());
    let mut family = |name: &str, kind: &str, help: &str, lines: Vec<(String, String)>| {
        out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
        for (labels, value) in lines {
            out.push_str(&format!("{name}{{{labels}}} {value}\n"));
        }
    };
    let parts = |f: &dyn Fn(&Status) -> String| {
        snapshot
            .parts
            .iter()
            .map(|(part, s)| (format!("transport=\"{}\"", part.label()), f(s)))
            .collect::<Vec<_>>()
    };
    // Partner IDs are checked market partner IDs (digits only): safe in a label.
    let partners = |f: &dyn Fn(&Status) -> String| {
        snapshot
            .partners
            .iter()
            .map(|p| {
                (
                    format!(
                        "partner=\"{}\",transport=\"{}\"",
                        p.partner.as_str(),
                        p.part.label()
                    ),
                    f(&p.status),
                )
            })
            .collect::<Vec<_>>()
    };
    let up = |s: &Status| u8::from(s.state() != PartState::Down).to_string();
    let last_success = |s: &Status| seconds(s.last_success).to_string();
    let last_failure = |s: &Status| seconds(s.last_failure.as_ref().map(|f| f.at)).to_string();
    let failures = |s: &Status| s.failures.to_string();
    family(
        "mako_transport_up",
        "gauge",
        "Whether a transport works: 0 from a failed attempt until the next success, else 1 (also before the first attempt).",
        parts(&up),
    );
    family(
        "mako_transport_last_success_timestamp_seconds",
        "gauge",
        "When a transport last worked (Unix time; 0: not since the start).",
        parts(&last_success),
    );
    family(
        "mako_transport_last_failure_timestamp_seconds",
        "gauge",
        "When a transport last failed (Unix time; 0: not since the start).",
        parts(&last_failure),
    );
    family(
        "mako_transport_failures_total",
        "counter",
        "Failures of a transport since the start.",
        parts(&failures),
    );
    family(
        "mako_partner_up",
        "gauge",
        "Whether the last exchange with a partner over a transport worked (1) or failed (0).",
        partners(&up),
    );
    family(
        "mako_partner_last_success_timestamp_seconds",
        "gauge",
        "When an exchange with a partner over a transport last worked (Unix time; 0: not since the start).",
        partners(&last_success),
    );
    family(
        "mako_partner_last_failure_timestamp_seconds",
        "gauge",
        "When an exchange with a partner over a transport last failed (Unix time; 0: not since the start).",
        partners(&last_failure),
    );
    family(
        "mako_partner_failures_total",
        "counter",
        "Failed exchanges with a partner over a transport since the start.",
        partners(&failures),
    );
    let failed = match state.file_drop_inbox.clone() {
        Some(inbox) => tokio::task::spawn_blocking(move || {
            crate::transport::file_drop::count_failed_files(&inbox)
        })
        .await
        .ok()
        .and_then(Result::ok),
        None => Some(0),
    };
    // Unreadable folder: the line is left out rather than a made-up number.
    if let Some(n) = failed {
        out.push_str(&format!(
            "# HELP mako_file_drop_failed_files Files the file drop set aside in inbox/failed/ (GET /inbox/failed).\n\
             # TYPE mako_file_drop_failed_files gauge\nmako_file_drop_failed_files {n}\n"
        ));
    }
}

/// The place of a failed file in the listing (newest first, then by the hash of the name),
/// and the cursor that continues after it: `ff_<milliseconds>-<16 hex digits>`. A cursor
/// names a place, not a file, so it stays valid when the file is moved away meanwhile.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Place {
    millis: i64,
    hash: String,
}

impl Place {
    fn of(file: &FailedFile) -> Place {
        let digest = Sha256::digest(file.name.as_bytes());
        Place {
            millis: file.set_aside_at.map_or(0, |t| t.timestamp_millis().max(0)),
            hash: hex::encode(&digest[..8]),
        }
    }

    fn cursor(&self) -> String {
        format!("ff_{}-{}", self.millis, self.hash)
    }

    fn parse(cursor: &str) -> Option<Place> {
        let (millis, hash) = cursor.strip_prefix("ff_")?.split_once('-')?;
        let ok = hash.len() == 16 && hash.bytes().all(|b| b.is_ascii_hexdigit());
        Some(Place {
            millis: millis.parse().ok().filter(|m: &i64| *m >= 0)?,
            hash: ok.then(|| hash.to_ascii_lowercase())?,
        })
    }

    /// Whether `self` comes after `other` in the listing's order.
    fn after(&self, other: &Place) -> bool {
        self.millis < other.millis || (self.millis == other.millis && self.hash > other.hash)
    }
}

/// `GET /inbox/failed`: the files the file drop set aside in `inbox/failed/` (too large,
/// unreadable, a link, a folder, not claimable, not journaled), newest first, each with its
/// name, size, kind, reason and the time it was set aside; `limit` and `cursor` as in every
/// list.
pub async fn list_failed_files(
    State(state): State<AppState>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Result<Json<Value>, ApiError> {
    let query = ListQuery::parse(&pairs, &[])?;
    let after = match &query.page.cursor {
        Some(c) => Some(Place::parse(c).ok_or_else(|| {
            ApiError::invalid(vec![FieldError::new(
                "cursor",
                "invalid",
                "cursor must be the next_cursor of a previous page",
            )])
        })?),
        None => None,
    };
    let files = match state.file_drop_inbox.clone() {
        Some(inbox) => tokio::task::spawn_blocking(move || failed_files(&inbox))
            .await
            .map_err(|e| {
                ApiError::general(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
            })?
            .map_err(|e| {
                ApiError::general(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "inbox_unreadable",
                    format!("inbox/failed/ cannot be read: {e}"),
                )
            })?,
        None => Vec::new(),
    };
    let mut placed: Vec<(Place, FailedFile)> =
        files.into_iter().map(|f| (Place::of(&f), f)).collect();
    placed.sort_by(|(a, _), (b, _)| b.millis.cmp(&a.millis).then_with(|| a.hash.cmp(&b.hash)));
    let limit = query.page.limit as usize;
    let mut rest = placed
        .into_iter()
        .filter(|(place, _)| after.as_ref().is_none_or(|c| place.after(c)));
    let page: Vec<(Place, FailedFile)> = rest.by_ref().take(limit).collect();
    let next_cursor = match (rest.next(), page.last()) {
        (Some(_), Some((last, _))) => Some(last.cursor()),
        _ => None,
    };
    Ok(Json(json!({
        "object": "list",
        "data": page.iter().map(|(_, f)| json!({
            "object": "failed_file",
            "name": f.name,
            "size": f.size,
            "kind": f.kind,
            "reason": f.reason,
            "set_aside_at": f.set_aside_at.map(time),
        })).collect::<Vec<_>>(),
        "next_cursor": next_cursor,
    })))
}

#[cfg(test)]
mod tests {
    use super::Place;

    #[test]
    fn a_cursor_names_a_place_and_reads_back() {
        let place = Place {
            millis: 1_700_000_000_123,
            hash: "0123456789abcdef".into(),
        };
        assert_eq!(Place::parse(&place.cursor()), Some(place.clone()));
        for bad in [
            "ff_",
            "ff_1-xyz",
            "ff_-1-0123456789abcdef",
            "jrn_1-0123456789abcdef",
        ] {
            assert_eq!(Place::parse(bad), None, "{bad}");
        }
        let later_in_list = Place {
            millis: place.millis - 1,
            hash: "0000000000000000".into(),
        };
        assert!(later_in_list.after(&place));
        assert!(!place.after(&place));
    }
}
