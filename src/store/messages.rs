//! Received messages that are not ours to handle (the `messages` table, `direction = 'in'`):
//! the forward feed the supplier core reads (`GET /messages`), takes (`POST
//! /messages/{id}/ack`) and answers with an APERAK through (`POST /messages/{id}/aperak`).
//!
//! Durable and at least once: a message is written in the same transaction that marks its
//! interchange processed, stays `new` until the core takes it, and is listed with its age.

use chrono::{DateTime, Utc};
use sqlx::any::AnyRow;

use super::sql::{corrupt, get, ms, page_rows, positional, select_rows, time, value_rows};
use super::types::{Page, PageRequest};
use super::{Connection, Session, StoreError};
use crate::plan::inbound::{NewReceivedMessage, ReceivedMessage};

/// Rows per INSERT: the store's one limit (18 and 11 parameters per row here).
use super::sql::ROWS_PER_STATEMENT as ROWS_PER_INSERT;

const COLUMNS: &str = "id, direction, journal_id, position, partner, message_type, version, pid, \
    message_ref, document_number, route, state, checked, findings, aperak, aperak_due, answer, \
    outbox_id, created_at, updated_at";

/// A received message as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredMessage {
    /// `msg_…`.
    pub id: String,
    /// `in` (received) or `out` (pass-through).
    pub direction: String,
    /// The interchange's journal item.
    pub journal_id: String,
    /// Position in the interchange (from 0).
    pub position: i64,
    /// The sender (in) or recipient (out).
    pub partner: String,
    /// `MSCONS`, `UTILMD`, …
    pub message_type: String,
    /// UNH S009 DE0057.
    pub version: String,
    /// RFF+Z13.
    pub pid: Option<i64>,
    /// UNH DE0062.
    pub message_ref: String,
    /// BGM DE1004.
    pub document_number: Option<String>,
    /// `forward`, `refuse` (in).
    pub route: String,
    /// `new`, `taken`, `rejected`, `refused` (in).
    pub state: String,
    /// False when no grammar checked it.
    pub checked: bool,
    /// The validation's findings (JSON list).
    pub findings: serde_json::Value,
    /// `none`, `sent`, `core`, `requested`.
    pub aperak: String,
    /// When the APERAK the core owes is due.
    pub aperak_due: Option<DateTime<Utc>>,
    /// What answered it (JSON), if anything.
    pub answer: Option<serde_json::Value>,
    /// The outbox item of the requested APERAK.
    pub outbox_id: Option<String>,
    /// Received.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

/// The filters of the feed; `None` matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MessageFilter {
    /// `in` or `out`.
    pub direction: Option<String>,
    /// RFF+Z13 as text (`13017`).
    pub pid: Option<String>,
    /// Message type.
    pub message_type: Option<String>,
    /// Sender (in) or recipient (out).
    pub partner: Option<String>,
    /// State.
    pub state: Option<String>,
}

fn message_from_row(row: &AnyRow) -> Result<StoredMessage, StoreError> {
    const WHAT: &str = "message";
    let id: String = get(row, "id")?;
    let json = |column: &'static str, text: String| {
        serde_json::from_str(&text).map_err(|e| corrupt(WHAT, &id, column, e.to_string()))
    };
    let findings = json("findings", get(row, "findings")?)?;
    let answer = get::<Option<String>>(row, "answer")?
        .map(|a| json("answer", a))
        .transpose()?;
    let checked: String = get(row, "checked")?;
    Ok(StoredMessage {
        direction: get(row, "direction")?,
        journal_id: get(row, "journal_id")?,
        position: get(row, "position")?,
        partner: get(row, "partner")?,
        message_type: get(row, "message_type")?,
        version: get(row, "version")?,
        pid: get(row, "pid")?,
        message_ref: get(row, "message_ref")?,
        document_number: get(row, "document_number")?,
        route: get(row, "route")?,
        state: get(row, "state")?,
        checked: checked == "checked",
        findings,
        aperak: get(row, "aperak")?,
        aperak_due: get::<Option<i64>>(row, "aperak_due")?.map(time),
        answer,
        outbox_id: get(row, "outbox_id")?,
        created_at: time(get(row, "created_at")?),
        updated_at: time(get(row, "updated_at")?),
        id,
    })
}

impl<C: Connection> Session<C> {
    /// Writes received messages, each with what was read of it (a few statements for any
    /// number).
    pub async fn add_received_messages(
        &mut self,
        messages: &[(&NewReceivedMessage, &ReceivedMessage)],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        for chunk in messages.chunks(ROWS_PER_INSERT) {
            let statement = positional(
                self.backend,
                format!(
                    "INSERT INTO messages (id, direction, journal_id, position, partner, \
                     message_type, version, pid, message_ref, document_number, route, state, \
                     checked, findings, aperak, aperak_due, created_at, updated_at) VALUES {}",
                    value_rows(chunk.len(), 18)
                ),
            );
            let mut query = sqlx::query(&statement);
            for (m, r) in chunk {
                query = query
                    .bind(m.id.clone())
                    .bind("in")
                    .bind(m.journal_id.clone())
                    .bind(r.position as i64)
                    .bind(m.partner.clone())
                    .bind(r.message_type.clone())
                    .bind(r.version.clone())
                    .bind(r.pid.map(i64::from))
                    .bind(r.message_ref.clone())
                    .bind(r.document_number.clone())
                    .bind(r.route.as_str())
                    .bind(r.state.as_str())
                    .bind(if r.checked { "checked" } else { "unchecked" })
                    .bind(r.findings.as_str())
                    .bind(r.aperak.as_str())
                    .bind(r.aperak_due.map(|d| ms(d.and_utc())))
                    .bind(ms(now))
                    .bind(ms(now));
            }
            query
                .execute(self.conn())
                .await
                .map_err(StoreError::query("adding received messages"))?;
        }
        Ok(())
    }

    /// One page of messages, in id (= arrival) order.
    pub async fn list_messages(
        &mut self,
        filter: &MessageFilter,
        page: &PageRequest,
    ) -> Result<Page<StoredMessage>, StoreError> {
        let (rows, next_cursor) = page_rows(
            self.conn(),
            "listing messages",
            "messages",
            COLUMNS,
            "1 = 1",
            &[
                ("direction =", filter.direction.as_deref()),
                ("CAST(pid AS TEXT) =", filter.pid.as_deref()),
                ("message_type =", filter.message_type.as_deref()),
                ("partner =", filter.partner.as_deref()),
                ("state =", filter.state.as_deref()),
            ],
            page,
        )
        .await?;
        let items = rows
            .iter()
            .map(message_from_row)
            .collect::<Result<_, _>>()?;
        Ok(Page { items, next_cursor })
    }

    /// One message.
    pub async fn message(&mut self, id: &str) -> Result<Option<StoredMessage>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM messages WHERE id = $1");
        let rows = select_rows(self.conn(), "reading a message", &sql, &[id]).await?;
        rows.first().map(message_from_row).transpose()
    }

    /// The core took a forwarded message: `new` → `taken` (again: no change). Returns the
    /// message as it is now; `NotFound` for an unknown id.
    pub async fn take_message(
        &mut self,
        id: &str,
        now: DateTime<Utc>,
    ) -> Result<StoredMessage, StoreError> {
        sqlx::query(
            "UPDATE messages SET state = 'taken', updated_at = $1 \
             WHERE id = $2 AND direction = 'in' AND state = 'new'",
        )
        .bind(ms(now))
        .bind(id)
        .execute(self.conn())
        .await
        .map_err(StoreError::query("taking a message"))?;
        self.message(id).await?.ok_or_else(|| StoreError::NotFound {
            what: "message",
            id: id.to_string(),
        })
    }

    /// The core asked for the APERAK the gateway owes it (`core` → `requested`), queued as
    /// outbox item `outbox_id`. False when the message owes none (any more): another request
    /// was first, or the gateway answered it itself.
    pub async fn mark_aperak_requested(
        &mut self,
        id: &str,
        outbox_id: &str,
        answer: &serde_json::Value,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE messages SET aperak = 'requested', outbox_id = $1, answer = $2, \
             updated_at = $3 WHERE id = $4 AND direction = 'in' AND aperak = 'core'",
        )
        .bind(outbox_id)
        .bind(answer.to_string())
        .bind(ms(now))
        .bind(id)
        .execute(self.conn())
        .await
        .map_err(StoreError::query("recording a requested APERAK"))?;
        Ok(done.rows_affected() == 1)
    }

    /// How many forwarded messages wait for the core, and since when the oldest does.
    pub async fn messages_waiting(&mut self) -> Result<(i64, Option<DateTime<Utc>>), StoreError> {
        let rows = select_rows(
            self.conn(),
            "counting waiting messages",
            "SELECT COUNT(*) AS n, MIN(created_at) AS oldest FROM messages \
             WHERE direction = 'in' AND state = 'new'",
            &[],
        )
        .await?;
        let Some(row) = rows.first() else {
            return Ok((0, None));
        };
        Ok((get(row, "n")?, get::<Option<i64>>(row, "oldest")?.map(time)))
    }
}
