//! The audit trail of operator actions (who, when, what; `migrations/0007_console.sql`) and
//! what the operator console reads beside the API's lists: the parked outbox items with
//! whether an operator gave them up, and the counts of its overview. The actions an operator
//! takes on a parked outbox item (retry, give up) are here too; the console and any future
//! API route call the same two methods.

use chrono::{DateTime, Utc};

use super::outbox::{outbox_from_row, OUTBOX_COLUMNS};
use super::sql::{get, ms, page_rows, time};
use super::types::*;
use super::{Connection, Session, StoreError};

/// An operator action to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAudit<'a> {
    /// Who: the console's operator name with its token's fingerprint, or `api`.
    pub actor: &'a str,
    /// What: `clearing.resolve`, `outbox.retry`, `outbox.give_up`,
    /// `grid_fee_reduction.reorder`.
    pub action: &'a str,
    /// The record acted on.
    pub target: &'a str,
    /// The operator's note, or what the action found.
    pub note: Option<&'a str>,
}

/// A recorded operator action.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AuditEntry {
    /// `aud_…`.
    pub id: String,
    /// When.
    pub at: DateTime<Utc>,
    /// Who.
    pub actor: String,
    /// What.
    pub action: String,
    /// On which record.
    pub target: String,
    /// The note.
    pub note: Option<String>,
}

/// A parked outbox item, with when an operator gave it up (if so).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParkedItem {
    /// The item (its `last_error` is the reason, e.g. the partner's answer).
    pub item: OutboxItem,
    /// When an operator gave it up; `None` while it waits for one.
    pub given_up_at: Option<DateTime<Utc>>,
}

/// What the console's overview counts beside [`Counts`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConsoleCounts {
    /// Answers we wait for, past their deadline and not met.
    pub answers_overdue: i64,
    /// Parked outbox items no operator has given up.
    pub outbox_parked: i64,
    /// Quarantined mails.
    pub quarantined_mails: i64,
    /// AS4 requests refused.
    pub as4_refused: i64,
}

fn audit_from_row(r: &sqlx::any::AnyRow) -> Result<AuditEntry, StoreError> {
    Ok(AuditEntry {
        id: get(r, "id")?,
        at: time(get(r, "at")?),
        actor: get(r, "actor")?,
        action: get(r, "action")?,
        target: get(r, "target")?,
        note: get(r, "note")?,
    })
}

impl<C: Connection> Session<C> {
    /// Records an operator action; returns its id.
    pub async fn add_audit(
        &mut self,
        entry: &NewAudit<'_>,
        now: DateTime<Utc>,
    ) -> Result<String, StoreError> {
        let id = new_id("aud", now);
        sqlx::query(
            "INSERT INTO audit (id, at, actor, action, target, note) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(id.clone())
        .bind(ms(now))
        .bind(entry.actor)
        .bind(entry.action)
        .bind(entry.target)
        .bind(entry.note)
        .execute(self.conn())
        .await
        .map_err(StoreError::query("recording an operator action"))?;
        Ok(id)
    }

    /// The recorded actions in id order (oldest first), all or those on one record.
    pub async fn list_audit(
        &mut self,
        target: Option<&str>,
        page: &PageRequest,
    ) -> Result<Page<AuditEntry>, StoreError> {
        let (rows, next_cursor) = page_rows(
            self.conn(),
            "listing the audit trail",
            "audit",
            "id, at, actor, action, target, note",
            "1 = 1",
            &[("target =", target)],
            page,
        )
        .await?;
        Ok(Page {
            items: rows.iter().map(audit_from_row).collect::<Result<_, _>>()?,
            next_cursor,
        })
    }

    /// One outbox item.
    pub async fn outbox_item(&mut self, id: &str) -> Result<Option<ParkedItem>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {OUTBOX_COLUMNS}, given_up_at FROM outbox WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(self.conn())
        .await
        .map_err(StoreError::query("reading an outbox item"))?;
        row.map(|r| {
            Ok(ParkedItem {
                item: outbox_from_row(&r)?,
                given_up_at: get::<Option<i64>>(&r, "given_up_at")?.map(time),
            })
        })
        .transpose()
    }

    /// Parked outbox items in id order: those waiting for an operator, or those given up.
    pub async fn list_parked_outbox(
        &mut self,
        given_up: bool,
        page: &PageRequest,
    ) -> Result<Page<ParkedItem>, StoreError> {
        let (rows, next_cursor) = page_rows(
            self.conn(),
            "listing parked outbox items",
            "outbox",
            &format!("{OUTBOX_COLUMNS}, given_up_at"),
            if given_up {
                "state = 'parked' AND given_up_at IS NOT NULL"
            } else {
                "state = 'parked' AND given_up_at IS NULL"
            },
            &[],
            page,
        )
        .await?;
        let items = rows
            .iter()
            .map(|r| {
                Ok(ParkedItem {
                    item: outbox_from_row(r)?,
                    given_up_at: get::<Option<i64>>(r, "given_up_at")?.map(time),
                })
            })
            .collect::<Result<_, StoreError>>()?;
        Ok(Page { items, next_cursor })
    }

    /// An operator sends a parked item again: pending at once, with a fresh attempt budget
    /// (the worker parks it after `retry.max_attempts` counted from here). Kept bytes are
    /// sent as they are (the same interchange); an item given up is taken back; a
    /// pass-through's messages and journal entry, `failed` when it was parked, are `queued`
    /// again. Not found: no such item, or it is not parked.
    pub async fn retry_parked_outbox(
        &mut self,
        id: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let item = self.outbox_item(id).await?;
        let done = sqlx::query(
            "UPDATE outbox SET state = 'pending', attempts = 0, next_attempt_at = $1, \
             given_up_at = NULL, locked_by = NULL, locked_until = NULL \
             WHERE id = $2 AND state = 'parked'",
        )
        .bind(ms(now))
        .bind(id)
        .execute(self.conn())
        .await
        .map_err(StoreError::query("retrying a parked outbox item"))?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound {
                what: "parked outbox item",
                id: id.to_string(),
            });
        }
        if let Some(p) = item.filter(|p| p.item.kind == OutboxKind::PassThrough) {
            self.requeue_pass_through(id, p.item.journal_id.as_deref(), now)
                .await?;
        }
        Ok(())
    }

    /// An operator gives a parked item up: it stays parked, and stops waiting for an
    /// operator. Not found: no such item, not parked, or given up already.
    pub async fn give_up_outbox(&mut self, id: &str, now: DateTime<Utc>) -> Result<(), StoreError> {
        let done = sqlx::query(
            "UPDATE outbox SET given_up_at = $1 \
             WHERE id = $2 AND state = 'parked' AND given_up_at IS NULL",
        )
        .bind(ms(now))
        .bind(id)
        .execute(self.conn())
        .await
        .map_err(StoreError::query("giving up a parked outbox item"))?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound {
                what: "parked outbox item not given up",
                id: id.to_string(),
            });
        }
        Ok(())
    }

    /// The console's overview counts at `now`.
    pub async fn console_counts(
        &mut self,
        now: DateTime<Utc>,
    ) -> Result<ConsoleCounts, StoreError> {
        let conn = self.conn();
        let mut count = async |statement: &str, at: Option<i64>| -> Result<i64, StoreError> {
            let mut query = sqlx::query(statement);
            if let Some(at) = at {
                query = query.bind(at);
            }
            let row = query
                .fetch_one(&mut *conn)
                .await
                .map_err(StoreError::query("counting for the console"))?;
            get::<i64>(&row, "n")
        };
        Ok(ConsoleCounts {
            answers_overdue: count(
                "SELECT COUNT(*) AS n FROM deadlines WHERE met_at IS NULL AND due_at < $1",
                Some(ms(now)),
            )
            .await?,
            outbox_parked: count(
                "SELECT COUNT(*) AS n FROM outbox WHERE state = 'parked' AND given_up_at IS NULL",
                None,
            )
            .await?,
            quarantined_mails: count(
                "SELECT COUNT(*) AS n FROM mail_journal WHERE outcome = 'quarantined'",
                None,
            )
            .await?,
            as4_refused: count(
                "SELECT COUNT(*) AS n FROM as4_inbox WHERE outcome = 'refused'",
                None,
            )
            .await?,
        })
    }
}

impl<C: Connection> Session<C> {
    /// Every outbox item of an order, whatever its state, in id order.
    pub async fn outbox_of_order(&mut self, order_id: &str) -> Result<Vec<OutboxItem>, StoreError> {
        let sql = format!("SELECT {OUTBOX_COLUMNS} FROM outbox WHERE order_id = $1 ORDER BY id");
        super::sql::select_rows(
            self.conn(),
            "reading the outbox of an order",
            &sql,
            &[order_id],
        )
        .await?
        .iter()
        .map(outbox_from_row)
        .collect()
    }

    /// The outbox items that answer a received interchange (its CONTRL, APERAK, UTILMD
    /// 55220), in id order.
    pub async fn outbox_answering(
        &mut self,
        journal_id: &str,
    ) -> Result<Vec<OutboxItem>, StoreError> {
        let sql = format!("SELECT {OUTBOX_COLUMNS} FROM outbox WHERE journal_id = $1 ORDER BY id");
        super::sql::select_rows(
            self.conn(),
            "reading the answers to an interchange",
            &sql,
            &[journal_id],
        )
        .await?
        .iter()
        .map(outbox_from_row)
        .collect()
    }
}
