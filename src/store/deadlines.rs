//! The answers we wait for (`deadlines`): added when a message is sent, met when the partner's
//! answer comes, marked overdue once when its time has passed (with a webhook).

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::any::AnyRow;

use super::sql::{get, ms, page_rows, select_rows, time};
use super::types::{Page, PageRequest};
use super::{Connection, Session, StoreError};
use crate::plan::deadlines::{MetKey, NewDeadline};
use crate::plan::records::WebhookEvent;

const COLUMNS: &str = "id, awaiting, order_kind, order_id, partner, reference, interchange_ref, \
    due_at, met_at, overdue_at, created_at";

/// Rows per INSERT: the store's one limit (18 and 11 parameters per row here).
use super::sql::ROWS_PER_STATEMENT as ROWS_PER_INSERT;

/// An answer we wait for, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StoredDeadline {
    /// `ddl_…`.
    pub id: String,
    /// `ORDRSP` or `APERAK`.
    pub awaiting: String,
    /// `grid_fee_reduction` / `meter_order`, if it concerns an order.
    pub order_kind: Option<String>,
    /// The order.
    pub order_id: Option<String>,
    /// Who must answer.
    pub partner: String,
    /// Our document number.
    pub reference: String,
    /// Our UNB reference.
    pub interchange_ref: String,
    /// When.
    pub due_at: DateTime<Utc>,
    /// When the answer came.
    pub met_at: Option<DateTime<Utc>>,
    /// When it was found overdue (and the webhook raised).
    pub overdue_at: Option<DateTime<Utc>>,
    /// Added.
    pub created_at: DateTime<Utc>,
}

fn deadline_from_row(row: &AnyRow) -> Result<StoredDeadline, StoreError> {
    Ok(StoredDeadline {
        id: get(row, "id")?,
        awaiting: get(row, "awaiting")?,
        order_kind: get(row, "order_kind")?,
        order_id: get(row, "order_id")?,
        partner: get(row, "partner")?,
        reference: get(row, "reference")?,
        interchange_ref: get(row, "interchange_ref")?,
        due_at: time(get(row, "due_at")?),
        met_at: get::<Option<i64>>(row, "met_at")?.map(time),
        overdue_at: get::<Option<i64>>(row, "overdue_at")?.map(time),
        created_at: time(get(row, "created_at")?),
    })
}

/// The webhook topic of an overdue answer: `grid_fee_reduction.answer_overdue`,
/// `meter_order.answer_overdue`, or `message.answer_overdue` for a message without order.
pub fn overdue_topic(deadline: &StoredDeadline) -> String {
    let object = match deadline.order_kind.as_deref() {
        Some("grid_fee_reduction") => "grid_fee_reduction",
        Some("meter_order") => "meter_order",
        _ => "message",
    };
    format!("{object}.answer_overdue")
}

impl<C: Connection> Session<C> {
    /// Adds answers to wait for.
    pub async fn add_deadlines(
        &mut self,
        deadlines: &[NewDeadline],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        for chunk in deadlines.chunks(ROWS_PER_INSERT) {
            let statement = format!(
                "INSERT INTO deadlines (id, awaiting, order_kind, order_id, partner, reference, \
                 interchange_ref, due_at, created_at) VALUES {}",
                super::sql::value_rows(chunk.len(), 9)
            );
            let statement = super::sql::positional(self.backend, statement);
            let mut query = sqlx::query(&statement);
            for d in chunk {
                query = query
                    .bind(d.id.clone())
                    .bind(d.awaiting.as_str())
                    .bind(d.order.as_ref().map(|(k, _)| k.as_str().to_string()))
                    .bind(d.order.as_ref().map(|(_, id)| id.clone()))
                    .bind(d.partner.clone())
                    .bind(d.reference.clone())
                    .bind(d.interchange_ref.clone())
                    .bind(ms(d.due_at))
                    .bind(ms(now));
            }
            query
                .execute(self.conn())
                .await
                .map_err(StoreError::query("adding deadlines"))?;
        }
        Ok(())
    }

    /// Marks met what `keys` answer (only deadlines of the same partner and kind that name the
    /// same document or interchange); returns how many.
    pub async fn meet_deadlines(
        &mut self,
        keys: &[MetKey],
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        if keys.is_empty() {
            return Ok(0);
        }
        let mut sql = String::from("UPDATE deadlines SET met_at = $1 WHERE met_at IS NULL AND (");
        let mut args: Vec<String> = Vec::new();
        for (i, k) in keys.iter().enumerate() {
            if i > 0 {
                sql.push_str(" OR ");
            }
            let (column, value) = match (&k.reference, &k.interchange_ref) {
                (Some(r), _) => ("reference", r.clone()),
                (None, Some(i)) => ("interchange_ref", i.clone()),
                (None, None) => continue,
            };
            let n = args.len() + 2;
            sql.push_str(&format!(
                "(partner = ${n} AND awaiting = ${} AND {column} = ${})",
                n + 1,
                n + 2
            ));
            args.extend([k.partner.clone(), k.awaiting.as_str().to_string(), value]);
        }
        sql.push(')');
        if args.is_empty() {
            return Ok(0);
        }
        let mut query = sqlx::query(&sql).bind(ms(now));
        for a in &args {
            query = query.bind(a.clone());
        }
        let done = query
            .execute(self.conn())
            .await
            .map_err(StoreError::query("meeting deadlines"))?;
        Ok(done.rows_affected())
    }

    /// Marks up to `limit` unmet deadlines past their time overdue, once each (another instance
    /// sweeping at the same time marks a disjoint set), and queues their webhooks; returns them.
    pub async fn sweep_overdue(
        &mut self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<StoredDeadline>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM deadlines WHERE met_at IS NULL AND overdue_at IS NULL \
             AND due_at < $1 ORDER BY due_at LIMIT {}",
            limit.max(1)
        );
        let candidates = sqlx::query(&sql)
            .bind(ms(now))
            .fetch_all(self.conn())
            .await
            .map_err(StoreError::query("finding overdue answers"))?
            .iter()
            .map(deadline_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        let mut overdue = Vec::new();
        for mut d in candidates {
            let done = sqlx::query(
                "UPDATE deadlines SET overdue_at = $1 WHERE id = $2 AND overdue_at IS NULL \
                 AND met_at IS NULL",
            )
            .bind(ms(now))
            .bind(&d.id)
            .execute(self.conn())
            .await
            .map_err(StoreError::query("marking an answer overdue"))?;
            if done.rows_affected() == 1 {
                d.overdue_at = Some(now);
                overdue.push(d);
            }
        }
        let events: Vec<WebhookEvent> = overdue
            .iter()
            .map(|d| {
                WebhookEvent::new(
                    &overdue_topic(d),
                    serde_json::json!({
                        "deadline": d.id,
                        "order": d.order_id,
                        "awaiting": d.awaiting,
                        "partner": d.partner,
                        "reference": d.reference,
                        "due_at": d.due_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                    }),
                    now,
                )
            })
            .collect();
        self.add_webhooks(&events, now).await?;
        Ok(overdue)
    }

    /// The answers awaited for one order, oldest first.
    pub async fn deadlines_of_order(
        &mut self,
        order_id: &str,
    ) -> Result<Vec<StoredDeadline>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM deadlines WHERE order_id = $1 ORDER BY id");
        select_rows(
            self.conn(),
            "reading an order's deadlines",
            &sql,
            &[order_id],
        )
        .await?
        .iter()
        .map(deadline_from_row)
        .collect()
    }

    /// One page of deadlines: `open` (waiting, not yet due), `overdue` (found past due, not
    /// met), `met`, or all.
    pub async fn list_deadlines(
        &mut self,
        state: Option<&str>,
        page: &PageRequest,
    ) -> Result<Page<StoredDeadline>, StoreError> {
        let condition = match state {
            Some("open") => "met_at IS NULL AND overdue_at IS NULL",
            Some("overdue") => "met_at IS NULL AND overdue_at IS NOT NULL",
            Some("met") => "met_at IS NOT NULL",
            _ => "1 = 1",
        };
        let (rows, next_cursor) = page_rows(
            self.conn(),
            "listing deadlines",
            "deadlines",
            COLUMNS,
            condition,
            &[],
            page,
        )
        .await?;
        let items = rows
            .iter()
            .map(deadline_from_row)
            .collect::<Result<_, _>>()?;
        Ok(Page { items, next_cursor })
    }
}
