//! The JSON shapes of the resources.

use chrono::{DateTime, NaiveDateTime, SecondsFormat, Utc};
use serde_json::{json, Value};

use crate::store::{serde_text, GridFeeRecord, MeterOrderRecord, Page};

fn instant(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// The orders keep UTC times without a zone; the API writes them as RFC 3339 UTC.
fn utc(t: Option<NaiveDateTime>) -> Value {
    t.map_or(Value::Null, |t| Value::String(instant(t.and_utc())))
}

/// `object: "grid_fee_reduction"`.
pub fn grid_fee(r: &GridFeeRecord) -> Value {
    let o = &r.order;
    json!({
        "object": "grid_fee_reduction",
        "id": o.id,
        "subscription": o.subscription,
        "status": serde_text(&o.status),
        "type": serde_text(&o.reduction_type),
        "market_location": o.market_location,
        "grid_operator": o.grid_operator,
        "meter_type": serde_text(&o.meter_type),
        "effective_date": r.effective_date,
        "product": o.product.as_ref().map(serde_text),
        "order_document": o.order_document,
        "valid_from": o.valid_from,
        "valid_until": o.valid_until,
        "rejection": o.rejection,
        "created_at": instant(r.created_at),
        "updated_at": instant(r.updated_at),
    })
}

/// `object: "meter_order"`.
pub fn meter_order(r: &MeterOrderRecord) -> Value {
    let o = &r.order;
    json!({
        "object": "meter_order",
        "id": o.id,
        "subscription": o.subscription,
        "status": serde_text(&o.status),
        "market_location": o.market_location,
        "metering_location": o.metering_location,
        "metering_operator": o.metering_operator,
        "customer_contact": o.customer_contact,
        "wanted_date": r.wanted_date,
        "order_document": o.order_document,
        "appointment_at": utc(o.appointment_at),
        "installed_at": utc(o.installed_at),
        "installation": o.installation.as_ref().map(|i| json!({
            "since": utc(Some(i.since)),
            "gateway": i.gateway,
            "meters": i.meters,
        })),
        "activated_at": utc(o.activated_at),
        "cancelled_reason": o.cancelled_reason.as_ref().map(serde_text),
        "blocked_at": utc(o.blocked_at),
        "blocked_reason": o.blocked_reason,
        "created_at": instant(r.created_at),
        "updated_at": instant(r.updated_at),
    })
}

/// `{"object": "list", "data": [...], "next_cursor": ...}`.
pub fn list<T>(page: &Page<T>, each: impl Fn(&T) -> Value) -> Value {
    json!({
        "object": "list",
        "data": page.items.iter().map(each).collect::<Vec<_>>(),
        "next_cursor": page.next_cursor,
    })
}

/// RFC 3339 UTC with milliseconds.
pub fn time(t: DateTime<Utc>) -> String {
    instant(t)
}
