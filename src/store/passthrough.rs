//! Pass-through messages of the supplier core (`messages` rows with direction `out` and route
//! `pass_through`): queued with their journal entry and outbox item in one transaction, marked
//! sent with the APERAK deadline, failed when parked, answered by the partner's CONTRL/APERAK,
//! and read back with their journal entry's and outbox item's state.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::any::AnyRow;

use super::sql::{corrupt, get, json_list, ms, placeholders, select_rows, time};
use super::types::{Page, PageRequest, Transport};
use super::{Backend, Connection, Session, StoreError};
use crate::plan::passthrough::{
    state, AnswerOutcome, Earlier, PassThroughAnswer, PassThroughSending, Queued, QueuedMessage,
};

/// `messages.route` of a pass-through.
const ROUTE: &str = "pass_through";

/// The columns of a record, each named plainly (both databases then name it the same).
const COLUMNS: &str = "m.id AS id, m.partner AS partner, m.journal_id AS journal_id, \
    m.position AS position, m.message_type AS message_type, m.version AS version, m.pid AS pid, \
    m.message_ref AS message_ref, m.document_number AS document_number, m.state AS state, \
    m.checked AS checked, m.findings AS findings, m.aperak_due AS aperak_due, \
    m.answer AS answer, m.outbox_id AS outbox_id, m.created_at AS created_at, \
    m.updated_at AS updated_at, j.interchange_ref AS interchange_ref, \
    j.transport AS transport, j.sent_at AS sent_at, o.state AS outbox_state, \
    o.attempts AS outbox_attempts, o.last_error AS outbox_error";

/// The rows of records: pass-through messages with their journal entry and outbox item.
const FROM: &str = "messages m JOIN journal j ON j.id = m.journal_id \
    LEFT JOIN outbox o ON o.id = m.outbox_id \
    WHERE m.direction = 'out' AND m.route = 'pass_through'";

/// The outbox item that sends a pass-through, as far as a record shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PassThroughOutbox {
    /// `obx_…`.
    pub id: String,
    /// `pending`, `in_flight`, `sent`, `parked`.
    pub state: String,
    /// Attempts so far.
    pub attempts: i64,
    /// The last transport error, if any (the reason it was parked).
    pub last_error: Option<String>,
}

/// A pass-through message as stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PassThroughRecord {
    /// `out_…`.
    pub id: String,
    /// The recipient.
    pub partner: String,
    /// Its interchange's outbound journal entry (there since the core handed it over).
    pub journal_id: String,
    /// Its place in the interchange (0 = the first message).
    pub position: i64,
    /// UNB DE0020 of its interchange.
    pub interchange_ref: Option<String>,
    /// UNH S009 DE0065.
    pub message_type: String,
    /// The rest of S009.
    pub version: String,
    /// The Prüfidentifikator, if any.
    pub pid: Option<i64>,
    /// UNH DE0062 as sent.
    pub message_ref: String,
    /// BGM DE1004, if any.
    pub document_number: Option<String>,
    /// `queued`, `sent`, `accepted`, `rejected`, `failed`.
    pub state: String,
    /// Validated against a grammar we hold.
    pub checked: bool,
    /// The validator's warnings (and, when unchecked, why).
    pub findings: serde_json::Value,
    /// When the partner's APERAK is due (set when sent; none for CONTRL and APERAK).
    pub aperak_due: Option<DateTime<Utc>>,
    /// The partner's CONTRL or APERAK that decided the state (or, until an APERAK comes, a
    /// positive CONTRL), with the journal entry that carried it.
    pub answer: Option<serde_json::Value>,
    /// How it went (`api` until it is sent).
    pub transport: String,
    /// When it was sent.
    pub sent_at: Option<DateTime<Utc>>,
    /// The outbox item that sends it.
    pub outbox: Option<PassThroughOutbox>,
    /// When the core handed it over.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

fn record_from_row(row: &AnyRow) -> Result<PassThroughRecord, StoreError> {
    const WHAT: &str = "pass-through message";
    let id: String = get(row, "id")?;
    let json = |column: &'static str, text: String| {
        serde_json::from_str::<serde_json::Value>(&text)
            .map_err(|e| corrupt(WHAT, &id, column, e.to_string()))
    };
    let findings = json("findings", get(row, "findings")?)?;
    let answer = get::<Option<String>>(row, "answer")?
        .map(|a| json("answer", a))
        .transpose()?;
    let checked: String = get(row, "checked")?;
    let outbox_id: Option<String> = get(row, "outbox_id")?;
    let outbox_state: Option<String> = get(row, "outbox_state")?;
    let outbox = match (outbox_id, outbox_state) {
        (Some(id), Some(state)) => Some(PassThroughOutbox {
            id,
            state,
            attempts: get::<Option<i64>>(row, "outbox_attempts")?.unwrap_or_default(),
            last_error: get(row, "outbox_error")?,
        }),
        _ => None,
    };
    Ok(PassThroughRecord {
        partner: get(row, "partner")?,
        journal_id: get(row, "journal_id")?,
        position: get(row, "position")?,
        interchange_ref: get(row, "interchange_ref")?,
        message_type: get(row, "message_type")?,
        version: get(row, "version")?,
        pid: get(row, "pid")?,
        message_ref: get(row, "message_ref")?,
        document_number: get(row, "document_number")?,
        state: get(row, "state")?,
        checked: match checked.as_str() {
            "checked" => true,
            "unchecked" => false,
            _ => return Err(corrupt(WHAT, &id, "checked", checked)),
        },
        findings,
        aperak_due: get::<Option<i64>>(row, "aperak_due")?.map(time),
        answer,
        transport: get(row, "transport")?,
        sent_at: get::<Option<i64>>(row, "sent_at")?.map(time),
        outbox,
        created_at: time(get(row, "created_at")?),
        updated_at: time(get(row, "updated_at")?),
        id,
    })
}

/// Filters of the pass-through list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PassThroughFilter {
    /// One of the stored states, or `overdue` (sent, past its APERAK deadline at `now`).
    pub state: Option<String>,
    /// Only to this partner.
    pub partner: Option<String>,
}

/// The `state` filter value that selects sent messages past their APERAK deadline.
pub const OVERDUE: &str = "overdue";

impl<C: Connection> Session<C> {
    /// Serialises the pass-through requests to `partner` until this transaction ends, so that
    /// a request checked against what was handed over before sees every earlier one
    /// (PostgreSQL: a transaction-scoped advisory lock; SQLite: the transaction holds the one
    /// writer lock already, `BEGIN IMMEDIATE`). Call it first, inside a transaction.
    pub async fn lock_pass_through(&mut self, partner: &str) -> Result<(), StoreError> {
        if self.backend == Backend::Postgres {
            sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))::TEXT AS locked")
                .bind(format!("pass-through {partner}"))
                .execute(self.conn())
                .await
                .map_err(StoreError::query(
                    "locking the pass-through requests of a partner",
                ))?;
        }
        Ok(())
    }

    /// What was handed over or sent to `partner` before under this UNB reference (any
    /// outbound journal entry) or under one of these document numbers (pass-through
    /// messages), oldest first, each interchange once.
    pub async fn earlier_pass_through(
        &mut self,
        partner: &str,
        interchange_ref: Option<&str>,
        document_numbers: &[String],
    ) -> Result<Vec<Earlier>, StoreError> {
        let mut earlier: Vec<Earlier> = Vec::new();
        let mut rows = Vec::new();
        if let Some(reference) = interchange_ref {
            rows.extend(
                select_rows(
                    self.conn(),
                    "looking up an outbound interchange by reference",
                    "SELECT j.id AS id, j.interchange_ref AS interchange_ref, \
                     CAST((SELECT COUNT(*) FROM messages m WHERE m.journal_id = j.id \
                     AND m.route = 'pass_through') AS BIGINT) AS pass_through \
                     FROM journal j WHERE j.direction = 'out' AND j.partner = $1 \
                     AND j.interchange_ref = $2",
                    &[partner, reference],
                )
                .await?,
            );
        }
        if !document_numbers.is_empty() {
            let sql = format!(
                "SELECT j.id AS id, j.interchange_ref AS interchange_ref, \
                 CAST(1 AS BIGINT) AS pass_through \
                 FROM messages m JOIN journal j ON j.id = m.journal_id \
                 WHERE m.direction = 'out' AND m.route = 'pass_through' AND m.partner = $1 \
                 AND m.document_number IN ({}) ORDER BY m.id",
                placeholders(2, document_numbers.len())
            );
            let mut args = vec![partner];
            args.extend(document_numbers.iter().map(String::as_str));
            rows.extend(
                select_rows(
                    self.conn(),
                    "looking up pass-through messages by document number",
                    &sql,
                    &args,
                )
                .await?,
            );
        }
        for row in &rows {
            let journal_id: String = get(row, "id")?;
            if earlier.iter().any(|e| e.journal_id == journal_id) {
                continue;
            }
            let bytes = self.journal_raw(&journal_id).await?.ok_or_else(|| {
                super::sql::corrupt(
                    "journal item",
                    &journal_id,
                    "raw",
                    "no bytes in journal_raw".into(),
                )
            })?;
            earlier.push(Earlier {
                interchange_ref: get::<Option<String>>(row, "interchange_ref")?.unwrap_or_default(),
                bytes,
                pass_through: get::<i64>(row, "pass_through")? > 0,
                journal_id,
            });
        }
        Ok(earlier)
    }

    /// Stores a checked pass-through: its outbound journal entry (`queued`, transport `api`
    /// until it is sent), the outbox item with the bytes, and one `messages` row per message.
    /// The caller commits (all three or nothing).
    pub async fn queue_pass_through(
        &mut self,
        queued: &Queued,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let checked = &queued.checked;
        let list = |f: &dyn Fn(&crate::plan::passthrough::CheckedMessage) -> String| {
            json_list(&checked.messages.iter().map(f).collect::<Vec<_>>())
        };
        // The bytes first, so that no journal row is ever without them.
        self.insert_raw(&[(&queued.journal_id, &checked.bytes)])
            .await?;
        sqlx::query(
            "INSERT INTO journal (id, direction, partner, transport, interchange_ref, message_refs, \
             pids, message_types, document_numbers, size, state, attempts) \
             VALUES ($1, 'out', $2, $3, $4, $5, $6, $7, $8, $9, 'queued', 0)",
        )
        .bind(&queued.journal_id)
        .bind(&checked.partner)
        .bind(Transport::Api.as_str())
        .bind(&checked.interchange_ref)
        .bind(list(&|m| m.message_ref.clone()))
        .bind(list(&|m| {
            m.pid
                .map_or_else(|| m.message_type.clone(), |p| p.to_string())
        }))
        .bind(list(&|m| m.message_type.clone()))
        .bind(list(&|m| m.document_number.clone().unwrap_or_default()))
        .bind(checked.bytes.len() as i64)
        .execute(self.conn())
        .await
        .map_err(StoreError::query("journaling a pass-through interchange"))?;

        let outbox_id = self.add_outbox(&queued.outbox, now).await?;
        const PER_ROW: usize = 13;
        let rows: Vec<(usize, (&String, &crate::plan::passthrough::CheckedMessage))> = queued
            .message_ids
            .iter()
            .zip(&checked.messages)
            .enumerate()
            .collect();
        for chunk in rows.chunks(super::sql::ROWS_PER_STATEMENT) {
            let statement = format!(
                "INSERT INTO messages (id, direction, journal_id, position, partner, message_type, \
                 version, pid, message_ref, document_number, route, state, checked, findings, \
                 aperak, outbox_id, created_at, updated_at) VALUES {}",
                (0..chunk.len())
                    .map(|r| {
                        let p = |i: usize| format!("${}", 1 + r * PER_ROW + i);
                        format!(
                            "({}, 'out', {}, {}, {}, {}, {}, {}, {}, {}, '{ROUTE}', '{}', {}, {}, \
                             'none', {}, {}, {})",
                            p(0),
                            p(1),
                            p(2),
                            p(3),
                            p(4),
                            p(5),
                            p(6),
                            p(7),
                            p(8),
                            state::QUEUED,
                            p(9),
                            p(10),
                            p(11),
                            p(12),
                            p(12)
                        )
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            let statement = super::sql::positional(self.backend, statement);
            let mut query = sqlx::query(&statement);
            for &(position, (id, m)) in chunk {
                let findings = serde_json::to_string(&m.findings)
                    .map_err(|e| corrupt("pass-through message", id, "findings", e.to_string()))?;
                query = query
                    .bind(id.clone())
                    .bind(queued.journal_id.clone())
                    .bind(i64::try_from(position).unwrap_or(i64::MAX))
                    .bind(checked.partner.clone())
                    .bind(m.message_type.clone())
                    .bind(m.version.clone())
                    .bind(m.pid.map(i64::from))
                    .bind(m.message_ref.clone())
                    .bind(m.document_number.clone())
                    .bind(if m.checked { "checked" } else { "unchecked" })
                    .bind(findings)
                    .bind(outbox_id.clone())
                    .bind(ms(now));
            }
            query
                .execute(self.conn())
                .await
                .map_err(StoreError::query("adding pass-through messages"))?;
        }
        Ok(())
    }

    /// One pass-through message.
    pub async fn pass_through(
        &mut self,
        id: &str,
    ) -> Result<Option<PassThroughRecord>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM {FROM} AND m.id = $1");
        select_rows(self.conn(), "reading a pass-through message", &sql, &[id])
            .await?
            .first()
            .map(record_from_row)
            .transpose()
    }

    /// The pass-through messages of one interchange (its journal entry), in message order.
    pub async fn pass_through_of_journal(
        &mut self,
        journal_id: &str,
    ) -> Result<Vec<PassThroughRecord>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM {FROM} AND m.journal_id = $1 ORDER BY m.position");
        select_rows(
            self.conn(),
            "reading the pass-through messages of an interchange",
            &sql,
            &[journal_id],
        )
        .await?
        .iter()
        .map(record_from_row)
        .collect()
    }

    /// Pass-through messages in id order (oldest first), one page; `now` decides which are
    /// overdue for the `overdue` state filter.
    pub async fn list_pass_through(
        &mut self,
        filter: &PassThroughFilter,
        page: &PageRequest,
        now: DateTime<Utc>,
    ) -> Result<Page<PassThroughRecord>, StoreError> {
        let mut sql = format!("SELECT {COLUMNS} FROM {FROM}");
        let mut args: Vec<String> = Vec::new();
        let mut arg = |sql: &mut String, condition: &str, value: String| {
            args.push(value);
            sql.push_str(&format!(" AND {condition} ${}", args.len()));
        };
        match filter.state.as_deref() {
            Some(OVERDUE) => {
                sql.push_str(&format!(
                    " AND m.state = '{}' AND m.aperak_due IS NOT NULL",
                    state::SENT
                ));
                // A time, compared as a number: bound as text it would compare as text on
                // SQLite, so it is written into the statement (an integer, not user input).
                sql.push_str(&format!(" AND m.aperak_due < {}", ms(now)));
            }
            Some(s) => arg(&mut sql, "m.state =", s.to_string()),
            None => {}
        }
        if let Some(partner) = &filter.partner {
            arg(&mut sql, "m.partner =", partner.clone());
        }
        if let Some(cursor) = &page.cursor {
            arg(&mut sql, "m.id >", cursor.clone());
        }
        let limit = page.limit.max(1);
        sql.push_str(&format!(" ORDER BY m.id LIMIT {}", u64::from(limit) + 1));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut rows =
            select_rows(self.conn(), "listing pass-through messages", &sql, &args).await?;
        let next_cursor = if rows.len() > limit as usize {
            rows.truncate(limit as usize);
            rows.last().map(|r| get::<String>(r, "id")).transpose()?
        } else {
            None
        };
        Ok(Page {
            items: rows.iter().map(record_from_row).collect::<Result<_, _>>()?,
            next_cursor,
        })
    }

    /// The messages an outbox item sends, for the outbound worker.
    pub async fn queued_pass_through(
        &mut self,
        outbox_id: &str,
    ) -> Result<Vec<QueuedMessage>, StoreError> {
        select_rows(
            self.conn(),
            "reading the pass-through messages of an outbox item",
            "SELECT id, position, message_type FROM messages \
             WHERE outbox_id = $1 AND direction = 'out' AND route = 'pass_through' ORDER BY position",
            &[outbox_id],
        )
        .await?
        .iter()
        .map(|row| {
            Ok(QueuedMessage {
                id: get(row, "id")?,
                position: usize::try_from(get::<i64>(row, "position")?).unwrap_or(usize::MAX),
                message_type: get(row, "message_type")?,
            })
        })
        .collect()
    }

    /// A pass-through went out over `transport`: its journal entry gets the transport and
    /// the time (and is `processed`), its messages become `sent` with their APERAK deadline.
    pub(crate) async fn mark_pass_through_sent(
        &mut self,
        journal_id: &str,
        transport: Transport,
        sending: &PassThroughSending,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let done = sqlx::query(
            "UPDATE journal SET transport = $1, sent_at = $2, state = 'processed' \
             WHERE id = $3 AND direction = 'out' AND state = 'queued'",
        )
        .bind(transport.as_str())
        .bind(ms(now))
        .bind(journal_id)
        .execute(self.conn())
        .await
        .map_err(StoreError::query(
            "completing a pass-through's journal entry",
        ))?;
        if done.rows_affected() != 1 {
            return Err(StoreError::NotFound {
                what: "queued pass-through journal entry",
                id: journal_id.to_string(),
            });
        }
        // One statement per deadline: the messages of an interchange are of one type (a
        // BDEW transfer file is), so this is one statement.
        let mut dues: Vec<Option<DateTime<Utc>>> = Vec::new();
        for (_, due) in &sending.messages {
            if !dues.contains(due) {
                dues.push(*due);
            }
        }
        for due in dues {
            let ids: Vec<&str> = sending
                .messages
                .iter()
                .filter(|(_, d)| *d == due)
                .map(|(id, _)| id.as_str())
                .collect();
            for ids in ids.chunks(super::sql::ROWS_PER_STATEMENT) {
                let statement = format!(
                "UPDATE messages SET state = CASE WHEN state = '{queued}' THEN '{sent}' ELSE state END, \
                 aperak_due = $1, updated_at = $2 WHERE id IN ({})",
                placeholders(3, ids.len()),
                queued = state::QUEUED,
                sent = state::SENT,
            );
                let mut query = sqlx::query(&statement).bind(due.map(ms)).bind(ms(now));
                for id in ids {
                    query = query.bind(id);
                }
                query
                    .execute(self.conn())
                    .await
                    .map_err(StoreError::query("marking pass-through messages sent"))?;
            }
        }
        Ok(())
    }

    /// The outbox item of a pass-through was parked: its messages `failed`, its journal entry
    /// `failed` with the reason.
    pub async fn fail_pass_through(
        &mut self,
        outbox_id: &str,
        journal_id: Option<&str>,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        sqlx::query(&format!(
            "UPDATE messages SET state = '{}', updated_at = $1 \
             WHERE outbox_id = $2 AND direction = 'out' AND state = '{}'",
            state::FAILED,
            state::QUEUED
        ))
        .bind(ms(now))
        .bind(outbox_id)
        .execute(self.conn())
        .await
        .map_err(StoreError::query("marking pass-through messages failed"))?;
        if let Some(journal_id) = journal_id {
            sqlx::query(
                "UPDATE journal SET state = 'failed', outcome = $1 \
                 WHERE id = $2 AND direction = 'out' AND state = 'queued'",
            )
            .bind(serde_json::json!({ "error": reason }).to_string())
            .bind(journal_id)
            .execute(self.conn())
            .await
            .map_err(StoreError::query(
                "marking a pass-through's journal entry failed",
            ))?;
        }
        Ok(())
    }

    /// An operator retries a parked pass-through (`Session::retry_parked_outbox`): what
    /// [`Session::fail_pass_through`] marked `failed` is `queued` again, so that the sending
    /// completes it as it completes any pass-through.
    pub(crate) async fn requeue_pass_through(
        &mut self,
        outbox_id: &str,
        journal_id: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        sqlx::query(&format!(
            "UPDATE messages SET state = '{}', updated_at = $1 \
             WHERE outbox_id = $2 AND direction = 'out' AND state = '{}'",
            state::QUEUED,
            state::FAILED
        ))
        .bind(ms(now))
        .bind(outbox_id)
        .execute(self.conn())
        .await
        .map_err(StoreError::query("queueing retried pass-through messages"))?;
        if let Some(journal_id) = journal_id {
            sqlx::query(
                "UPDATE journal SET state = 'queued', outcome = NULL \
                 WHERE id = $1 AND direction = 'out' AND state = 'failed'",
            )
            .bind(journal_id)
            .execute(self.conn())
            .await
            .map_err(StoreError::query(
                "queueing a retried pass-through's journal entry",
            ))?;
        }
        Ok(())
    }

    /// The partners' answers to pass-through messages, in message order: each changes the
    /// records it names as [`AnswerOutcome::effect`] says (one guarded statement per answer;
    /// a batch rarely holds one), the answer kept with `journal_id`, the entry that carried
    /// it.
    pub(crate) async fn record_pass_through_answers(
        &mut self,
        answers: &[(&[String], &PassThroughAnswer, Option<&str>)],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        for (ids, answer, journal_id) in answers {
            if ids.is_empty() {
                continue;
            }
            let effect = AnswerOutcome::effect(answer.outcome);
            let mut shown = serde_json::to_value(answer).unwrap_or_default();
            shown["journal_id"] = serde_json::json!(journal_id);
            let to = match effect.to {
                Some(to) => format!("'{to}'"),
                None => format!(
                    "CASE WHEN state = '{sent}' AND aperak_due IS NULL THEN '{accepted}' \
                     ELSE state END",
                    sent = state::SENT,
                    accepted = state::ACCEPTED
                ),
            };
            let from = effect
                .from
                .iter()
                .map(|s| format!("'{s}'"))
                .collect::<Vec<_>>()
                .join(", ");
            let first = if effect.only_first {
                " AND answer IS NULL"
            } else {
                ""
            };
            for ids in ids.chunks(super::sql::ROWS_PER_STATEMENT) {
                let statement = format!(
                    "UPDATE messages SET state = {to}, answer = $1, updated_at = $2 \
                 WHERE direction = 'out' AND route = '{ROUTE}' AND state IN ({from}){first} \
                 AND id IN ({})",
                    placeholders(3, ids.len())
                );
                let mut query = sqlx::query(&statement)
                    .bind(shown.to_string())
                    .bind(ms(now));
                for id in ids.iter() {
                    query = query.bind(id.clone());
                }
                query.execute(self.conn()).await.map_err(StoreError::query(
                    "recording answers to pass-through messages",
                ))?;
            }
        }
        Ok(())
    }
}
