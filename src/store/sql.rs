//! The statements, as functions over one connection (a pooled one or a transaction's), so the
//! [`super::Store`] and the [`super::StoreTx`] share them.

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use super::error::StoreError;
use super::types::*;
use crate::acks::SentMessage;
use crate::orders::{GridFeeReduction, MeterOrder};

pub(crate) fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

pub(crate) fn time(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

pub(crate) fn get<'r, T>(row: &'r AnyRow, column: &'static str) -> Result<T, StoreError>
where
    T: sqlx::Decode<'r, sqlx::Any> + sqlx::Type<sqlx::Any>,
{
    row.try_get(column).map_err(|source| StoreError::Query {
        operation: "reading a column",
        source,
    })
}

fn corrupt(what: &'static str, id: &str, column: &'static str, detail: String) -> StoreError {
    StoreError::Corrupt {
        what,
        id: id.to_string(),
        column,
        detail,
    }
}

fn json_list(list: &[String]) -> String {
    serde_json::to_string(list).expect("a list of strings serialises")
}

fn read_list(
    what: &'static str,
    id: &str,
    column: &'static str,
    text: &str,
) -> Result<Vec<String>, StoreError> {
    serde_json::from_str(text).map_err(|e| corrupt(what, id, column, e.to_string()))
}

fn read_date(
    what: &'static str,
    id: &str,
    column: &'static str,
    text: Option<String>,
) -> Result<Option<NaiveDate>, StoreError> {
    text.map(|t| {
        t.parse::<NaiveDate>()
            .map_err(|e| corrupt(what, id, column, format!("{t:?}: {e}")))
    })
    .transpose()
}

// ---- orders ----------------------------------------------------------------------------

pub(crate) const GRID_FEE_COLUMNS: &str =
    "id, effective_date, body, version, created_at, updated_at";
pub(crate) const METER_COLUMNS: &str = "id, wanted_date, body, version, created_at, updated_at";

pub(crate) fn grid_fee_from_row(row: &AnyRow) -> Result<GridFeeRecord, StoreError> {
    const WHAT: &str = "grid-fee reduction";
    let id: String = get(row, "id")?;
    let body: String = get(row, "body")?;
    let order: GridFeeReduction =
        serde_json::from_str(&body).map_err(|e| corrupt(WHAT, &id, "body", e.to_string()))?;
    Ok(GridFeeRecord {
        order,
        effective_date: read_date(WHAT, &id, "effective_date", get(row, "effective_date")?)?,
        version: get(row, "version")?,
        created_at: time(get(row, "created_at")?),
        updated_at: time(get(row, "updated_at")?),
    })
}

pub(crate) fn meter_from_row(row: &AnyRow) -> Result<MeterOrderRecord, StoreError> {
    const WHAT: &str = "meter order";
    let id: String = get(row, "id")?;
    let body: String = get(row, "body")?;
    let order: MeterOrder =
        serde_json::from_str(&body).map_err(|e| corrupt(WHAT, &id, "body", e.to_string()))?;
    Ok(MeterOrderRecord {
        order,
        wanted_date: read_date(WHAT, &id, "wanted_date", get(row, "wanted_date")?)?,
        version: get(row, "version")?,
        created_at: time(get(row, "created_at")?),
        updated_at: time(get(row, "updated_at")?),
    })
}

fn body<T: serde::Serialize>(order: &T) -> String {
    serde_json::to_string(order).expect("orders serialise to JSON")
}

pub(crate) async fn insert_grid_fee(
    conn: &mut AnyConnection,
    order: &GridFeeReduction,
    effective_date: Option<NaiveDate>,
    now: DateTime<Utc>,
) -> Result<GridFeeRecord, StoreError> {
    sqlx::query(
        "INSERT INTO grid_fee_reductions (id, subscription, status, reduction_type, market_location, \
         grid_operator, order_document, effective_date, body, version, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 1, $10, $10)",
    )
    .bind(&order.id)
    .bind(&order.subscription)
    .bind(serde_text(&order.status))
    .bind(serde_text(&order.reduction_type))
    .bind(order.market_location.as_str())
    .bind(order.grid_operator.as_str())
    .bind(order.order_document.clone())
    .bind(effective_date.map(|d| d.to_string()))
    .bind(body(order))
    .bind(ms(now))
    .execute(&mut *conn)
    .await
    .map_err(StoreError::query("inserting a grid-fee reduction"))?;
    Ok(GridFeeRecord {
        order: order.clone(),
        effective_date,
        version: 1,
        created_at: time(ms(now)),
        updated_at: time(ms(now)),
    })
}

pub(crate) async fn insert_meter_order(
    conn: &mut AnyConnection,
    order: &MeterOrder,
    wanted_date: Option<NaiveDate>,
    now: DateTime<Utc>,
) -> Result<MeterOrderRecord, StoreError> {
    let result = sqlx::query(
        "INSERT INTO meter_orders (id, subscription, status, market_location, metering_location, \
         metering_operator, order_document, wanted_date, body, version, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 1, $10, $10)",
    )
    .bind(&order.id)
    .bind(&order.subscription)
    .bind(serde_text(&order.status))
    .bind(order.market_location.as_str())
    .bind(order.metering_location.as_ref().map(|m| m.to_string()))
    .bind(order.metering_operator.as_str())
    .bind(order.order_document.clone())
    .bind(wanted_date.map(|d| d.to_string()))
    .bind(body(order))
    .bind(ms(now))
    .execute(&mut *conn)
    .await;
    match result {
        Ok(_) => Ok(MeterOrderRecord {
            order: order.clone(),
            wanted_date,
            version: 1,
            created_at: time(ms(now)),
            updated_at: time(ms(now)),
        }),
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
            Err(StoreError::DuplicateMeterOrder {
                subscription: order.subscription.clone(),
            })
        }
        Err(source) => Err(StoreError::Query {
            operation: "inserting a meter order",
            source,
        }),
    }
}

pub(crate) async fn save_grid_fee(
    conn: &mut AnyConnection,
    order: &GridFeeReduction,
    expected_version: i64,
    now: DateTime<Utc>,
) -> Result<i64, StoreError> {
    let done = sqlx::query(
        "UPDATE grid_fee_reductions SET status = $1, order_document = $2, body = $3, \
         version = version + 1, updated_at = $4 WHERE id = $5 AND version = $6",
    )
    .bind(serde_text(&order.status))
    .bind(order.order_document.clone())
    .bind(body(order))
    .bind(ms(now))
    .bind(&order.id)
    .bind(expected_version)
    .execute(&mut *conn)
    .await
    .map_err(StoreError::query("saving a grid-fee reduction"))?;
    if done.rows_affected() == 1 {
        Ok(expected_version + 1)
    } else {
        Err(StoreError::VersionConflict {
            kind: "grid_fee_reduction",
            id: order.id.clone(),
            expected: expected_version,
        })
    }
}

pub(crate) async fn save_meter_order(
    conn: &mut AnyConnection,
    order: &MeterOrder,
    expected_version: i64,
    now: DateTime<Utc>,
) -> Result<i64, StoreError> {
    let done = sqlx::query(
        "UPDATE meter_orders SET status = $1, metering_location = $2, order_document = $3, \
         body = $4, version = version + 1, updated_at = $5 WHERE id = $6 AND version = $7",
    )
    .bind(serde_text(&order.status))
    .bind(order.metering_location.as_ref().map(|m| m.to_string()))
    .bind(order.order_document.clone())
    .bind(body(order))
    .bind(ms(now))
    .bind(&order.id)
    .bind(expected_version)
    .execute(&mut *conn)
    .await
    .map_err(StoreError::query("saving a meter order"))?;
    if done.rows_affected() == 1 {
        Ok(expected_version + 1)
    } else {
        Err(StoreError::VersionConflict {
            kind: "meter_order",
            id: order.id.clone(),
            expected: expected_version,
        })
    }
}

/// Runs `SELECT <columns> FROM <table> WHERE <condition>` with string arguments.
async fn select_rows(
    conn: &mut AnyConnection,
    operation: &'static str,
    sql: &str,
    args: &[&str],
) -> Result<Vec<AnyRow>, StoreError> {
    let mut query = sqlx::query(sql);
    for a in args {
        query = query.bind(a.to_string());
    }
    query
        .fetch_all(&mut *conn)
        .await
        .map_err(StoreError::query(operation))
}

pub(crate) async fn grid_fee(
    conn: &mut AnyConnection,
    id: &str,
) -> Result<Option<GridFeeRecord>, StoreError> {
    let sql = format!("SELECT {GRID_FEE_COLUMNS} FROM grid_fee_reductions WHERE id = $1");
    let rows = select_rows(conn, "reading a grid-fee reduction", &sql, &[id]).await?;
    rows.first().map(grid_fee_from_row).transpose()
}

pub(crate) async fn meter_order(
    conn: &mut AnyConnection,
    id: &str,
) -> Result<Option<MeterOrderRecord>, StoreError> {
    let sql = format!("SELECT {METER_COLUMNS} FROM meter_orders WHERE id = $1");
    let rows = select_rows(conn, "reading a meter order", &sql, &[id]).await?;
    rows.first().map(meter_from_row).transpose()
}

/// Grid-fee reductions where `column = value`, in creation order.
pub(crate) async fn grid_fees_where(
    conn: &mut AnyConnection,
    column: &'static str,
    value: &str,
) -> Result<Vec<GridFeeRecord>, StoreError> {
    let sql = format!(
        "SELECT {GRID_FEE_COLUMNS} FROM grid_fee_reductions WHERE {column} = $1 ORDER BY id"
    );
    select_rows(conn, "reading grid-fee reductions", &sql, &[value])
        .await?
        .iter()
        .map(grid_fee_from_row)
        .collect()
}

/// Meter orders where `column = value`, in creation order.
pub(crate) async fn meters_where(
    conn: &mut AnyConnection,
    column: &'static str,
    value: &str,
) -> Result<Vec<MeterOrderRecord>, StoreError> {
    let sql = format!("SELECT {METER_COLUMNS} FROM meter_orders WHERE {column} = $1 ORDER BY id");
    select_rows(conn, "reading meter orders", &sql, &[value])
        .await?
        .iter()
        .map(meter_from_row)
        .collect()
}

/// A page of `table` in id order: rows meeting the fixed `condition` and the given filters
/// (`("status =", Some(value))`).
pub(crate) async fn page_rows(
    conn: &mut AnyConnection,
    operation: &'static str,
    table: &'static str,
    columns: &str,
    condition: &'static str,
    filters: &[(&'static str, Option<&str>)],
    page: &PageRequest,
) -> Result<(Vec<AnyRow>, Option<String>), StoreError> {
    let mut sql = format!("SELECT {columns} FROM {table} WHERE {condition}");
    let mut args: Vec<&str> = Vec::new();
    for (condition, value) in filters {
        if let Some(v) = value {
            args.push(v);
            sql.push_str(&format!(" AND {condition} ${}", args.len()));
        }
    }
    if let Some(c) = &page.cursor {
        args.push(c);
        sql.push_str(&format!(" AND id > ${}", args.len()));
    }
    let limit = page.limit.max(1);
    sql.push_str(&format!(" ORDER BY id LIMIT {}", u64::from(limit) + 1));
    let mut rows = select_rows(conn, operation, &sql, &args).await?;
    let next = if rows.len() > limit as usize {
        rows.truncate(limit as usize);
        rows.last().map(|r| get::<String>(r, "id")).transpose()?
    } else {
        None
    };
    Ok((rows, next))
}

// ---- subscriptions -------------------------------------------------------------------------

pub(crate) async fn subscription_confirmed(
    conn: &mut AnyConnection,
    subscription: &str,
) -> Result<Option<DateTime<Utc>>, StoreError> {
    let rows = select_rows(
        conn,
        "reading a subscription",
        "SELECT confirmed_at FROM subscriptions WHERE id = $1",
        &[subscription],
    )
    .await?;
    rows.first()
        .map(|r| get::<i64>(r, "confirmed_at").map(time))
        .transpose()
}

// ---- history, webhooks, outbox, clearing, sent ------------------------------------------------

pub(crate) async fn add_history(
    conn: &mut AnyConnection,
    entry: &HistoryEntry,
) -> Result<String, StoreError> {
    let id = new_id("hst", entry.at);
    sqlx::query(
        "INSERT INTO status_history (id, order_kind, order_id, from_status, to_status, topic, \
         journal_id, at, detail) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(&id)
    .bind(entry.order_kind.as_str())
    .bind(&entry.order_id)
    .bind(entry.from.clone())
    .bind(&entry.to)
    .bind(entry.topic.clone())
    .bind(entry.journal_id.clone())
    .bind(ms(entry.at))
    .bind(entry.detail.as_ref().map(|d| d.to_string()))
    .execute(&mut *conn)
    .await
    .map_err(StoreError::query("adding a status history row"))?;
    Ok(id)
}

pub(crate) async fn history(
    conn: &mut AnyConnection,
    order_id: &str,
) -> Result<Vec<HistoryEntry>, StoreError> {
    let rows = select_rows(
        conn,
        "reading the status history",
        "SELECT id, order_kind, order_id, from_status, to_status, topic, journal_id, at, detail \
         FROM status_history WHERE order_id = $1 ORDER BY id",
        &[order_id],
    )
    .await?;
    rows.iter()
        .map(|r| {
            let id: String = get(r, "id")?;
            let kind: String = get(r, "order_kind")?;
            let detail: Option<String> = get(r, "detail")?;
            Ok(HistoryEntry {
                order_kind: OrderKind::parse(&kind)
                    .ok_or_else(|| corrupt("history row", &id, "order_kind", kind.clone()))?,
                order_id: get(r, "order_id")?,
                from: get(r, "from_status")?,
                to: get(r, "to_status")?,
                topic: get(r, "topic")?,
                journal_id: get(r, "journal_id")?,
                at: time(get(r, "at")?),
                detail: detail
                    .map(|d| serde_json::from_str(&d))
                    .transpose()
                    .map_err(|e| corrupt("history row", &id, "detail", e.to_string()))?,
            })
        })
        .collect()
}

pub(crate) async fn add_webhook(
    conn: &mut AnyConnection,
    event: &WebhookEvent,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO webhook_deliveries (id, topic, payload, state, attempts, next_attempt_at, \
         created_at) VALUES ($1, $2, $3, 'pending', 0, $4, $4)",
    )
    .bind(&event.id)
    .bind(&event.topic)
    .bind(event.payload.to_string())
    .bind(ms(now))
    .execute(&mut *conn)
    .await
    .map_err(StoreError::query("adding a webhook delivery"))?;
    Ok(())
}

pub(crate) async fn add_outbox(
    conn: &mut AnyConnection,
    item: &NewOutboxItem,
    now: DateTime<Utc>,
) -> Result<String, StoreError> {
    let id = new_id("obx", now);
    sqlx::query(
        "INSERT INTO outbox (id, kind, order_kind, order_id, partner, payload, journal_id, state, \
         attempts, next_attempt_at, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending', 0, $8, $8)",
    )
    .bind(&id)
    .bind(item.kind.as_str())
    .bind(item.order.as_ref().map(|(k, _)| k.as_str().to_string()))
    .bind(item.order.as_ref().map(|(_, id)| id.clone()))
    .bind(&item.partner)
    .bind(item.payload.clone())
    .bind(item.journal_id.clone())
    .bind(ms(now))
    .execute(&mut *conn)
    .await
    .map_err(StoreError::query("adding an outbox item"))?;
    Ok(id)
}

pub(crate) const OUTBOX_COLUMNS: &str = "id, kind, order_kind, order_id, partner, payload, \
    journal_id, state, attempts, next_attempt_at, last_error, created_at, sent_at";

pub(crate) fn outbox_from_row(row: &AnyRow) -> Result<OutboxItem, StoreError> {
    const WHAT: &str = "outbox item";
    let id: String = get(row, "id")?;
    let kind: String = get(row, "kind")?;
    let state: String = get(row, "state")?;
    let order_kind: Option<String> = get(row, "order_kind")?;
    Ok(OutboxItem {
        kind: OutboxKind::parse(&kind).ok_or_else(|| corrupt(WHAT, &id, "kind", kind.clone()))?,
        state: OutboxState::parse(&state)
            .ok_or_else(|| corrupt(WHAT, &id, "state", state.clone()))?,
        order_kind: order_kind
            .map(|k| {
                OrderKind::parse(&k).ok_or_else(|| corrupt(WHAT, &id, "order_kind", k.clone()))
            })
            .transpose()?,
        order_id: get(row, "order_id")?,
        partner: get(row, "partner")?,
        payload: get(row, "payload")?,
        journal_id: get(row, "journal_id")?,
        attempts: get(row, "attempts")?,
        next_attempt_at: time(get(row, "next_attempt_at")?),
        last_error: get(row, "last_error")?,
        created_at: time(get(row, "created_at")?),
        sent_at: get::<Option<i64>>(row, "sent_at")?.map(time),
        id,
    })
}

/// The outbox items of an order that are not sent yet (pending or in flight).
pub(crate) async fn open_outbox_for_order(
    conn: &mut AnyConnection,
    order_id: &str,
) -> Result<Vec<OutboxItem>, StoreError> {
    let sql = format!(
        "SELECT {OUTBOX_COLUMNS} FROM outbox WHERE order_id = $1 \
         AND state IN ('pending', 'in_flight') ORDER BY id"
    );
    select_rows(conn, "reading the outbox of an order", &sql, &[order_id])
        .await?
        .iter()
        .map(outbox_from_row)
        .collect()
}

pub(crate) async fn add_clearing(
    conn: &mut AnyConnection,
    journal_id: &str,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<String, StoreError> {
    let id = new_id("clr", now);
    sqlx::query(
        "INSERT INTO clearing (id, journal_id, reason, created_at) VALUES ($1, $2, $3, $4)",
    )
    .bind(&id)
    .bind(journal_id)
    .bind(reason)
    .bind(ms(now))
    .execute(&mut *conn)
    .await
    .map_err(StoreError::query("adding a clearing item"))?;
    Ok(id)
}

pub(crate) async fn record_sent(
    conn: &mut AnyConnection,
    sent: &SentRecord,
    now: DateTime<Utc>,
) -> Result<String, StoreError> {
    let id = new_id("snt", now);
    sqlx::query(
        "INSERT INTO sent_messages (id, partner, interchange_ref, message_ref, document_number, \
         order_kind, order_id, journal_id, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(&id)
    .bind(&sent.partner)
    .bind(&sent.interchange_ref)
    .bind(&sent.message_ref)
    .bind(&sent.document_number)
    .bind(sent.order.as_ref().map(|(k, _)| k.as_str().to_string()))
    .bind(sent.order.as_ref().map(|(_, id)| id.clone()))
    .bind(&sent.journal_id)
    .bind(ms(now))
    .execute(&mut *conn)
    .await
    .map_err(StoreError::query("recording a sent message"))?;
    Ok(id)
}

fn sent_from_row(row: &AnyRow) -> Result<SentMessage, StoreError> {
    Ok(SentMessage {
        interchange_reference: get(row, "interchange_ref")?,
        message_reference: get(row, "message_ref")?,
        document_number: get(row, "document_number")?,
        order: get(row, "order_id")?,
    })
}

pub(crate) async fn sent_by_interchange(
    conn: &mut AnyConnection,
    partner: &str,
    interchange_ref: &str,
) -> Result<Vec<SentMessage>, StoreError> {
    select_rows(
        conn,
        "looking up sent messages by interchange",
        "SELECT interchange_ref, message_ref, document_number, order_id FROM sent_messages \
         WHERE partner = $1 AND interchange_ref = $2 ORDER BY id",
        &[partner, interchange_ref],
    )
    .await?
    .iter()
    .map(sent_from_row)
    .collect()
}

pub(crate) async fn sent_by_document(
    conn: &mut AnyConnection,
    partner: &str,
    document_number: &str,
) -> Result<Option<SentMessage>, StoreError> {
    select_rows(
        conn,
        "looking up a sent message by document number",
        "SELECT interchange_ref, message_ref, document_number, order_id FROM sent_messages \
         WHERE partner = $1 AND document_number = $2 ORDER BY id",
        &[partner, document_number],
    )
    .await?
    .first()
    .map(sent_from_row)
    .transpose()
}

// ---- journal ---------------------------------------------------------------------------------

pub(crate) const JOURNAL_COLUMNS: &str = "id, direction, partner, transport, interchange_ref, \
    message_refs, pids, document_numbers, raw, received_at, sent_at, state, outcome, attempts";

pub(crate) fn journal_from_row(row: &AnyRow) -> Result<JournalItem, StoreError> {
    const WHAT: &str = "journal item";
    let id: String = get(row, "id")?;
    let direction: String = get(row, "direction")?;
    let state: String = get(row, "state")?;
    let outcome: Option<String> = get(row, "outcome")?;
    Ok(JournalItem {
        direction: Direction::parse(&direction)
            .ok_or_else(|| corrupt(WHAT, &id, "direction", direction.clone()))?,
        partner: get(row, "partner")?,
        transport: get(row, "transport")?,
        interchange_ref: get(row, "interchange_ref")?,
        message_refs: read_list(
            WHAT,
            &id,
            "message_refs",
            &get::<String>(row, "message_refs")?,
        )?,
        pids: read_list(WHAT, &id, "pids", &get::<String>(row, "pids")?)?,
        document_numbers: read_list(
            WHAT,
            &id,
            "document_numbers",
            &get::<String>(row, "document_numbers")?,
        )?,
        raw: get(row, "raw")?,
        received_at: get::<Option<i64>>(row, "received_at")?.map(time),
        sent_at: get::<Option<i64>>(row, "sent_at")?.map(time),
        state: JournalState::parse(&state)
            .ok_or_else(|| corrupt(WHAT, &id, "state", state.clone()))?,
        outcome: outcome
            .map(|o| serde_json::from_str(&o))
            .transpose()
            .map_err(|e| corrupt(WHAT, &id, "outcome", e.to_string()))?,
        attempts: get(row, "attempts")?,
        id,
    })
}

pub(crate) async fn insert_outbound_journal(
    conn: &mut AnyConnection,
    record: &OutboundRecord,
) -> Result<String, StoreError> {
    let id = new_id("jrn", record.sent_at);
    sqlx::query(
        "INSERT INTO journal (id, direction, partner, transport, interchange_ref, message_refs, \
         pids, document_numbers, raw, sent_at, state, attempts) \
         VALUES ($1, 'out', $2, $3, $4, $5, $6, $7, $8, $9, 'processed', 0)",
    )
    .bind(&id)
    .bind(&record.partner)
    .bind(record.transport.as_str())
    .bind(&record.interchange_ref)
    .bind(json_list(&record.message_refs))
    .bind(json_list(&record.pids))
    .bind(json_list(&record.document_numbers))
    .bind(record.raw.clone())
    .bind(ms(record.sent_at))
    .execute(&mut *conn)
    .await
    .map_err(StoreError::query("journaling an outbound interchange"))?;
    Ok(id)
}

pub(crate) async fn insert_inbound(
    conn: &mut AnyConnection,
    record: &InboundRecord,
) -> Result<Inserted, StoreError> {
    let id = new_id("jrn", record.received_at);
    let inserted = sqlx::query(
        "INSERT INTO journal (id, direction, partner, transport, interchange_ref, message_refs, \
         pids, document_numbers, raw, received_at, state, attempts) \
         VALUES ($1, 'in', $2, $3, $4, $5, $6, $7, $8, $9, 'received', 0) \
         ON CONFLICT (direction, partner, interchange_ref) DO NOTHING",
    )
    .bind(&id)
    .bind(&record.partner)
    .bind(record.transport.as_str())
    .bind(record.interchange_ref.clone())
    .bind(json_list(&record.message_refs))
    .bind(json_list(&record.pids))
    .bind(json_list(&record.document_numbers))
    .bind(record.raw.clone())
    .bind(ms(record.received_at))
    .execute(&mut *conn)
    .await
    .map_err(StoreError::query("journaling an inbound interchange"))?;
    if inserted.rows_affected() == 1 {
        return Ok(Inserted::New(id));
    }
    // The conflict can only come from the unique key, so the reference is there.
    let reference = record.interchange_ref.as_deref().unwrap_or_default();
    let rows = select_rows(
        conn,
        "finding the journaled duplicate",
        "SELECT id FROM journal WHERE direction = 'in' AND partner = $1 AND interchange_ref = $2",
        &[&record.partner, reference],
    )
    .await?;
    let existing = rows.first().ok_or_else(|| StoreError::NotFound {
        what: "journaled duplicate of interchange",
        id: reference.to_string(),
    })?;
    Ok(Inserted::Duplicate(get(existing, "id")?))
}
