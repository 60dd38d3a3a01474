//! The journal: every interchange in and out, raw, with its partner, transport, references,
//! PIDs and processing state. Received interchanges are the inbound work queue.

use chrono::{DateTime, Utc};
use sqlx::any::AnyRow;

use super::sql::{
    claim_next, corrupt, get, json_list, lease_kept, ms, page_rows_where, read_list, select_rows,
    time, ListFilter, Queue,
};
use super::types::*;
use super::{Connection, Session, StoreError};

/// The largest part of a journal item's bytes stored in one row (1 MiB; see
/// `migrations/0011_journal_raw_parts.sql`).
pub const RAW_PART_BYTES: usize = 1 << 20;

/// Parts read per statement after the first (at most 4 MiB held by the driver at once).
const PARTS_PER_READ: i64 = 4;

/// Bytes of parts written per statement (4 MiB: the copies on the way into the database are
/// of this much at most, and small interchanges still share statements).
const BYTES_PER_WRITE: usize = 4 * RAW_PART_BYTES;

/// The columns of a journal item; its bytes are in `journal_raw` (see [`Session::with_raw`]).
pub(crate) const JOURNAL_COLUMNS: &str = "id, direction, partner, transport, interchange_ref, \
    message_refs, pids, message_types, document_numbers, received_at, sent_at, state, \
    outcome, attempts, size";

/// The columns of a listed entry: not the bytes, only their size.
const ENTRY_COLUMNS: &str = JOURNAL_COLUMNS;

const INBOUND_QUEUE: Queue = Queue {
    operation: "claiming an inbound journal item",
    table: "journal",
    busy_state: "processing",
    ready: [
        "direction = 'in' AND state = 'received'",
        "direction = 'in' AND state = 'processing' AND locked_until < $3",
    ],
    columns: JOURNAL_COLUMNS,
};

/// A journal row without its bytes, their size given (read from the row, or counted).
fn entry_from_row(row: &AnyRow, size: u64) -> Result<JournalEntry, StoreError> {
    const WHAT: &str = "journal item";
    let id: String = get(row, "id")?;
    let direction: String = get(row, "direction")?;
    let state: String = get(row, "state")?;
    let outcome: Option<String> = get(row, "outcome")?;
    let list = |column: &'static str| -> Result<Vec<String>, StoreError> {
        read_list(WHAT, &id, column, &get::<String>(row, column)?)
    };
    Ok(JournalEntry {
        direction: Direction::parse(&direction)
            .ok_or_else(|| corrupt(WHAT, &id, "direction", direction.clone()))?,
        partner: get(row, "partner")?,
        transport: get(row, "transport")?,
        interchange_ref: get(row, "interchange_ref")?,
        message_refs: list("message_refs")?,
        pids: list("pids")?,
        message_types: list("message_types")?,
        document_numbers: list("document_numbers")?,
        received_at: get::<Option<i64>>(row, "received_at")?.map(time),
        sent_at: get::<Option<i64>>(row, "sent_at")?.map(time),
        state: JournalState::parse(&state)
            .ok_or_else(|| corrupt(WHAT, &id, "state", state.clone()))?,
        outcome: outcome
            .map(JsonText::parse)
            .transpose()
            .map_err(|e| corrupt(WHAT, &id, "outcome", e.to_string()))?,
        attempts: get(row, "attempts")?,
        size,
        id,
    })
}

pub(crate) fn journal_from_row(row: &AnyRow, raw: Vec<u8>) -> Result<JournalItem, StoreError> {
    let JournalEntry {
        id,
        direction,
        partner,
        transport,
        interchange_ref,
        message_refs,
        pids,
        message_types,
        document_numbers,
        received_at,
        sent_at,
        state,
        outcome,
        attempts,
        size: _,
    } = entry_from_row(row, raw.len() as u64)?;
    Ok(JournalItem {
        id,
        direction,
        partner,
        transport,
        interchange_ref,
        message_refs,
        pids,
        message_types,
        document_numbers,
        raw,
        received_at,
        sent_at,
        state,
        outcome,
        attempts,
    })
}

impl<C: Connection> Session<C> {
    /// Journals a received interchange. The same interchange again (same partner and UNB
    /// reference) is not stored twice: [`Inserted::Duplicate`] names the first, and only the
    /// first is processed. On a pooled connection it is committed on return.
    pub async fn insert_inbound(&mut self, record: &InboundRecord) -> Result<Inserted, StoreError> {
        let id = new_id("jrn", record.received_at);
        // The bytes first: on a pooled connection each statement commits on its own, and a
        // journal row must never be visible (to a worker, or after a crash) without its bytes.
        // A crash between the two leaves bytes no row names, which nothing reads.
        self.insert_raw(&[(&id, &record.raw)]).await?;
        let inserted = sqlx::query(
            "INSERT INTO journal (id, direction, partner, transport, interchange_ref, message_refs, \
             pids, message_types, document_numbers, size, received_at, state, attempts) \
             VALUES ($1, 'in', $2, $3, $4, $5, $6, $7, $8, $9, $10, 'received', 0) \
             ON CONFLICT (direction, partner, interchange_ref) DO NOTHING",
        )
        .bind(&id)
        .bind(&record.partner)
        .bind(record.transport.as_str())
        .bind(record.interchange_ref.clone())
        .bind(json_list(&record.message_refs))
        .bind(json_list(&record.pids))
        .bind(json_list(&record.message_types))
        .bind(json_list(&record.document_numbers))
        .bind(record.raw.len() as i64)
        .bind(ms(record.received_at))
        .execute(self.conn())
        .await
        .map_err(StoreError::query("journaling an inbound interchange"))?;
        if inserted.rows_affected() == 1 {
            return Ok(Inserted::New(id));
        }
        // A duplicate: its bytes are the first one's.
        sqlx::query("DELETE FROM journal_raw WHERE journal_id = $1")
            .bind(&id)
            .execute(self.conn())
            .await
            .map_err(StoreError::query("dropping the bytes of a duplicate"))?;
        // The conflict can only come from the unique key, so the reference is there.
        let reference = record.interchange_ref.as_deref().unwrap_or_default();
        let rows = select_rows(
            self.conn(),
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

    /// Journals received interchanges with one statement (the group commit of
    /// `worker::receive::Journal`), in the order given; one [`Inserted`] per record, as
    /// [`Session::insert_inbound`] would answer it one by one (a duplicate, also of an earlier
    /// record of the same group, names the first).
    pub async fn insert_inbound_many(
        &mut self,
        records: &[&InboundRecord],
    ) -> Result<Vec<Inserted>, StoreError> {
        if records.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<String> = records
            .iter()
            .map(|r| new_id("jrn", r.received_at))
            .collect();
        let rows = (0..records.len())
            .map(|r| {
                let p = |k: usize| format!("${}", r * 10 + k);
                format!(
                    "({}, 'in', {}, {}, {}, {}, {}, {}, {}, {}, {}, 'received', 0)",
                    p(1),
                    p(2),
                    p(3),
                    p(4),
                    p(5),
                    p(6),
                    p(7),
                    p(8),
                    p(9),
                    p(10)
                )
            })
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "INSERT INTO journal (id, direction, partner, transport, interchange_ref, message_refs, \
             pids, message_types, document_numbers, size, received_at, state, attempts) \
             VALUES {rows} ON CONFLICT (direction, partner, interchange_ref) DO NOTHING RETURNING id"
        );
        let mut query = sqlx::query(&sql);
        for (id, record) in ids.iter().zip(records) {
            query = query
                .bind(id.clone())
                .bind(record.partner.clone())
                .bind(record.transport.as_str())
                .bind(record.interchange_ref.clone())
                .bind(json_list(&record.message_refs))
                .bind(json_list(&record.pids))
                .bind(json_list(&record.message_types))
                .bind(json_list(&record.document_numbers))
                .bind(record.raw.len() as i64)
                .bind(ms(record.received_at));
        }
        let returned = query
            .fetch_all(self.conn())
            .await
            .map_err(StoreError::query("journaling inbound interchanges"))?;
        let inserted: std::collections::HashSet<String> = returned
            .iter()
            .map(|row| get::<String>(row, "id"))
            .collect::<Result<_, _>>()?;
        let raws: Vec<(&str, &[u8])> = ids
            .iter()
            .zip(records)
            .filter(|(id, _)| inserted.contains(*id))
            .map(|(id, record)| (id.as_str(), &record.raw[..]))
            .collect();
        self.insert_raw(&raws).await?;
        let mut results = Vec::with_capacity(records.len());
        for (id, record) in ids.into_iter().zip(records) {
            if inserted.contains(&id) {
                results.push(Inserted::New(id));
                continue;
            }
            // Not inserted: the unique key met an interchange journaled before.
            let reference = record.interchange_ref.as_deref().unwrap_or_default();
            let rows = select_rows(
                self.conn(),
                "finding the journaled duplicate",
                "SELECT id FROM journal WHERE direction = 'in' AND partner = $1 AND interchange_ref = $2",
                &[&record.partner, reference],
            )
            .await?;
            let existing = rows.first().ok_or_else(|| StoreError::NotFound {
                what: "journaled duplicate of interchange",
                id: reference.to_string(),
            })?;
            results.push(Inserted::Duplicate(get(existing, "id")?));
        }
        Ok(results)
    }

    /// Journals an interchange we sent; returns its journal id.
    pub async fn insert_outbound_journal(
        &mut self,
        record: &OutboundRecord,
    ) -> Result<String, StoreError> {
        let id = record
            .id
            .clone()
            .unwrap_or_else(|| new_id("jrn", record.sent_at));
        // The bytes first, so that no journal row is ever without them.
        self.insert_raw(&[(&id, &record.raw)]).await?;
        sqlx::query(
            "INSERT INTO journal (id, direction, partner, transport, interchange_ref, message_refs, \
             pids, message_types, document_numbers, size, sent_at, state, attempts) \
             VALUES ($1, 'out', $2, $3, $4, $5, $6, $7, $8, $9, $10, 'processed', 0)",
        )
        .bind(&id)
        .bind(&record.partner)
        .bind(record.transport.as_str())
        .bind(&record.interchange_ref)
        .bind(json_list(&record.message_refs))
        .bind(json_list(&record.pids))
        .bind(json_list(&record.message_types))
        .bind(json_list(&record.document_numbers))
        .bind(record.raw.len() as i64)
        .bind(ms(record.sent_at))
        .execute(self.conn())
        .await
        .map_err(StoreError::query("journaling an outbound interchange"))?;
        Ok(id)
    }

    /// One journal item.
    pub async fn journal_item(&mut self, id: &str) -> Result<Option<JournalItem>, StoreError> {
        let sql = format!("SELECT {JOURNAL_COLUMNS} FROM journal WHERE id = $1");
        let rows = select_rows(self.conn(), "reading a journal item", &sql, &[id]).await?;
        Ok(self.with_raw(rows).await?.pop())
    }

    /// The journal in id order (oldest first), in and out, without the bytes: the entries
    /// meeting every filter of `filter`, one page of them.
    pub async fn list_journal(
        &mut self,
        filter: &JournalFilter,
        page: &PageRequest,
    ) -> Result<Page<JournalEntry>, StoreError> {
        let backend = self.backend;
        let text = ListFilter::text;
        let mut filters = Vec::new();
        if let Some(direction) = filter.direction {
            filters.push(text("direction = $?", direction.as_str()));
        }
        if let Some(partner) = &filter.partner {
            filters.push(text("partner = $?", partner));
        }
        if let Some(pid) = &filter.pid {
            filters.push(text(&backend.json_list_has("journal.pids"), pid));
        }
        if let Some(message_type) = &filter.message_type {
            filters.push(text(
                &backend.json_list_has("journal.message_types"),
                message_type,
            ));
        }
        if let Some(state) = filter.state {
            filters.push(text("state = $?", state.as_str()));
        }
        // An entry's time is when it was received (in) or sent (out); one of the two is set.
        if let Some(from) = filter.from {
            filters.push(ListFilter::time(
                "COALESCE(received_at, sent_at) >= $?",
                from,
            ));
        }
        if let Some(until) = filter.until {
            filters.push(ListFilter::time(
                "COALESCE(received_at, sent_at) < $?",
                until,
            ));
        }
        let by_reference = filter.reference.as_deref().map(|_| {
            format!(
                "(interchange_ref = $? OR {} OR {})",
                backend.json_list_has("journal.message_refs"),
                backend.json_list_has("journal.document_numbers")
            )
        });
        if let (Some(condition), Some(reference)) = (&by_reference, &filter.reference) {
            filters.push(text(condition, reference));
        }
        let (rows, next_cursor) = page_rows_where(
            self.conn(),
            "listing the journal",
            "journal",
            ENTRY_COLUMNS,
            "1 = 1",
            &filters,
            page,
        )
        .await?;
        let items = rows
            .iter()
            .map(|r| {
                let size: i64 = get(r, "size")?;
                entry_from_row(r, u64::try_from(size).unwrap_or_default())
            })
            .collect::<Result<_, StoreError>>()?;
        Ok(Page { items, next_cursor })
    }

    /// The bytes of a journal item, exactly as received or sent.
    pub async fn journal_raw(&mut self, id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let first = sqlx::query("SELECT raw FROM journal_raw WHERE journal_id = $1 AND part = 0")
            .bind(id)
            .fetch_optional(self.conn())
            .await
            .map_err(StoreError::query("reading a journal item's bytes"))?;
        let Some(first) = first else {
            return Ok(None);
        };
        let mut raw: Vec<u8> = get(&first, "raw")?;
        drop(first);
        self.read_later_parts(id, &mut raw).await?;
        Ok(Some(raw))
    }

    /// Appends the parts after the first of item `id` to `raw`, [`PARTS_PER_READ`] per
    /// statement, so that a large interchange is never held twice while it is read.
    async fn read_later_parts(&mut self, id: &str, raw: &mut Vec<u8>) -> Result<(), StoreError> {
        let mut next: i64 = 1;
        loop {
            let rows = sqlx::query(
                "SELECT part, raw FROM journal_raw WHERE journal_id = $1 AND part >= $2 \
                 ORDER BY part LIMIT $3",
            )
            .bind(id)
            .bind(next)
            .bind(PARTS_PER_READ)
            .fetch_all(self.conn())
            .await
            .map_err(StoreError::query("reading a journal item's bytes"))?;
            let count = rows.len();
            for row in rows {
                let part: i64 = get(&row, "part")?;
                if part != next {
                    return Err(corrupt(
                        "journal item",
                        id,
                        "raw",
                        format!("part {next} missing in journal_raw (found {part})"),
                    ));
                }
                raw.extend_from_slice(&get::<Vec<u8>>(&row, "raw")?);
                next += 1;
            }
            if count < PARTS_PER_READ as usize {
                return Ok(());
            }
        }
    }

    /// Stores the bytes of journal items (written once, never updated: see
    /// `migrations/0009_journal_raw.sql`) in parts of [`RAW_PART_BYTES`]
    /// (`migrations/0011_journal_raw_parts.sql`); a statement holds up to
    /// `ROWS_PER_STATEMENT` parts and stops after the one that brings it to
    /// [`BYTES_PER_WRITE`], so that the copies made on the way into the database (sqlx's, the
    /// driver's) are of a few parts, not of the interchange.
    pub(crate) async fn insert_raw(&mut self, raws: &[(&str, &[u8])]) -> Result<(), StoreError> {
        let parts: Vec<(&str, i64, &[u8])> = raws
            .iter()
            .flat_map(|(id, raw)| {
                let pieces: Vec<&[u8]> = if raw.is_empty() {
                    vec![&raw[..]]
                } else {
                    raw.chunks(RAW_PART_BYTES).collect()
                };
                pieces
                    .into_iter()
                    .enumerate()
                    .map(move |(n, piece)| (*id, n as i64, piece))
            })
            .collect();
        let mut rest = &parts[..];
        while !rest.is_empty() {
            let mut take = 0;
            let mut bytes = 0;
            while take < rest.len()
                && take < super::sql::ROWS_PER_STATEMENT
                && bytes < BYTES_PER_WRITE
            {
                bytes += rest[take].2.len();
                take += 1;
            }
            let (chunk, after) = rest.split_at(take);
            rest = after;
            let statement = format!(
                "INSERT INTO journal_raw (journal_id, part, raw) VALUES {}",
                super::sql::value_rows(chunk.len(), 3)
            );
            let statement = super::sql::positional(self.backend, statement);
            let mut query = sqlx::query(&statement);
            for (id, part, raw) in chunk {
                query = query.bind(*id).bind(*part).bind(*raw);
            }
            query
                .execute(self.conn())
                .await
                .map_err(StoreError::query("storing the bytes of journal items"))?;
        }
        Ok(())
    }

    /// The journal items of `rows` (read with [`JOURNAL_COLUMNS`]) with their bytes: the first
    /// parts of up to `ROWS_PER_STATEMENT` items per statement, the later parts of a large
    /// one [`PARTS_PER_READ`] at a time into bytes of its recorded size; each row and each
    /// value dropped once its item holds the bytes.
    pub(crate) async fn with_raw(
        &mut self,
        rows: Vec<AnyRow>,
    ) -> Result<Vec<JournalItem>, StoreError> {
        let ids: Vec<String> = rows
            .iter()
            .map(|r| get::<String>(r, "id"))
            .collect::<Result<_, _>>()?;
        let sizes: Vec<i64> = rows
            .iter()
            .map(|r| get::<i64>(r, "size"))
            .collect::<Result<_, _>>()?;
        let mut raws: std::collections::HashMap<String, Vec<u8>> =
            std::collections::HashMap::with_capacity(ids.len());
        for chunk in ids.chunks(super::sql::ROWS_PER_STATEMENT) {
            let statement = format!(
                "SELECT journal_id, raw FROM journal_raw WHERE part = 0 AND journal_id IN ({})",
                super::sql::placeholders(1, chunk.len())
            );
            let statement = super::sql::positional(self.backend, statement);
            let mut query = sqlx::query(&statement);
            for id in chunk {
                query = query.bind(id.as_str());
            }
            let found = query
                .fetch_all(self.conn())
                .await
                .map_err(StoreError::query("reading the bytes of journal items"))?;
            for row in found {
                raws.insert(get(&row, "journal_id")?, get(&row, "raw")?);
            }
        }
        for (id, size) in ids.iter().zip(&sizes) {
            let size = usize::try_from(*size).unwrap_or(0);
            if let Some(raw) = raws.get_mut(id) {
                if raw.len() < size {
                    let mut whole = Vec::with_capacity(size);
                    whole.append(raw);
                    self.read_later_parts(id, &mut whole).await?;
                    *raw = whole;
                }
            }
        }
        rows.into_iter()
            .zip(ids)
            .map(|(row, id)| {
                let raw = raws.remove(&id).ok_or_else(|| {
                    corrupt("journal item", &id, "raw", "no bytes in journal_raw".into())
                })?;
                journal_from_row(&row, raw)
            })
            .collect()
    }

    /// Claims the oldest inbound journal item that is `received`, or `processing` with an
    /// expired lease, for `worker` until `now + lease`.
    pub async fn claim_inbound(
        &mut self,
        worker: &str,
        now: DateTime<Utc>,
        lease: std::time::Duration,
    ) -> Result<Option<JournalItem>, StoreError> {
        let backend = self.backend;
        let row = claim_next(self.conn(), backend, &INBOUND_QUEUE, worker, now, lease).await?;
        Ok(self.with_raw(row.into_iter().collect()).await?.pop())
    }

    /// Claims up to `limit` new inbound journal items at once, oldest first (PostgreSQL skips
    /// rows another worker is claiming). Items with an expired lease are left to
    /// [`Session::claim_inbound`], which the worker falls back to when this finds nothing.
    pub async fn claim_inbound_batch(
        &mut self,
        worker: &str,
        now: DateTime<Utc>,
        lease: std::time::Duration,
        limit: u32,
    ) -> Result<Vec<JournalItem>, StoreError> {
        let until = now + chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::MAX);
        let statement = format!(
            "UPDATE journal SET state = 'processing', locked_by = $1, locked_until = $2, \
             attempts = attempts + 1 WHERE id IN (SELECT id FROM journal WHERE direction = 'in' \
             AND state = 'received' ORDER BY id LIMIT $3{}) RETURNING {JOURNAL_COLUMNS}",
            self.backend.skip_locked(),
        );
        let rows = sqlx::query(&statement)
            .bind(worker)
            .bind(ms(until))
            .bind(i64::from(limit))
            .fetch_all(self.conn())
            .await
            .map_err(StoreError::query("claiming inbound journal items"))?;
        let mut items = self.with_raw(rows).await?;
        items.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(items)
    }

    /// Claims one given inbound journal item (for `replay`, which processes what it just
    /// journaled): like [`Session::claim_inbound`], but for this id.
    pub async fn claim_journal_item(
        &mut self,
        id: &str,
        worker: &str,
        now: DateTime<Utc>,
        lease: std::time::Duration,
    ) -> Result<Option<JournalItem>, StoreError> {
        let until = now + chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::MAX);
        let rows = sqlx::query(&format!(
            "UPDATE journal SET state = 'processing', locked_by = $1, locked_until = $2, \
             attempts = attempts + 1 WHERE id = $3 AND direction = 'in' AND \
             (state = 'received' OR (state = 'processing' AND locked_until < $4)) \
             RETURNING {JOURNAL_COLUMNS}"
        ))
        .bind(worker)
        .bind(ms(until))
        .bind(id)
        .bind(ms(now))
        .fetch_all(self.conn())
        .await
        .map_err(StoreError::query("claiming a journal item"))?;
        Ok(self.with_raw(rows).await?.pop())
    }

    /// Hands a claimed inbound item back unprocessed (a failed attempt, shutdown): claimable
    /// again at once.
    pub async fn release_inbound(
        &mut self,
        journal_id: &str,
        worker: &str,
    ) -> Result<(), StoreError> {
        let done = sqlx::query(
            "UPDATE journal SET state = 'received', locked_by = NULL, locked_until = NULL \
             WHERE id = $1 AND locked_by = $2 AND state = 'processing'",
        )
        .bind(journal_id)
        .bind(worker)
        .execute(self.conn())
        .await
        .map_err(StoreError::query("releasing an inbound journal item"))?;
        lease_kept(done.rows_affected(), "journal item", journal_id, worker)
    }

    /// Keeps claimed inbound items unprocessed until `until` (their lease is set to it), when
    /// any worker may take them again: an interchange that answers something still being
    /// sent waits for the record of sending (see `plan::inbound::InboundPlan::waits_for`).
    /// Fails with [`StoreError::LeaseLost`] when the worker's lease of one of them is gone.
    pub async fn hold_inbound_items(
        &mut self,
        ids: &[&str],
        worker: &str,
        until: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        for id in ids {
            let done = sqlx::query(
                "UPDATE journal SET locked_until = $1 \
                 WHERE id = $2 AND locked_by = $3 AND state = 'processing'",
            )
            .bind(ms(until))
            .bind(id.to_string())
            .bind(worker)
            .execute(self.conn())
            .await
            .map_err(StoreError::query("holding an inbound journal item"))?;
            lease_kept(done.rows_affected(), "journal item", id, worker)?;
        }
        Ok(())
    }

    /// Ends the processing of a claimed inbound item with its outcome (`processed` or
    /// `failed`); fails with [`StoreError::LeaseLost`] when the worker's lease is gone.
    pub async fn finish_inbound(
        &mut self,
        journal_id: &str,
        worker: &str,
        state: JournalState,
        outcome: &serde_json::Value,
    ) -> Result<(), StoreError> {
        let done = sqlx::query(
            "UPDATE journal SET state = $1, outcome = $2, locked_by = NULL, locked_until = NULL \
             WHERE id = $3 AND locked_by = $4 AND state = 'processing'",
        )
        .bind(state.as_str())
        .bind(outcome.to_string())
        .bind(journal_id)
        .bind(worker)
        .execute(self.conn())
        .await
        .map_err(StoreError::query("finishing an inbound journal item"))?;
        lease_kept(done.rows_affected(), "journal item", journal_id, worker)
    }

    /// Ends the processing of several claimed inbound items, each with its outcome (one
    /// statement); fails with [`StoreError::LeaseLost`] when the worker's lease on any of them
    /// is gone.
    pub async fn finish_inbound_items(
        &mut self,
        items: &[(&str, String)],
        worker: &str,
        state: JournalState,
    ) -> Result<(), StoreError> {
        if items.is_empty() {
            return Ok(());
        }
        let statement = format!(
            "UPDATE journal SET state = $1, outcome = v.column2, locked_by = NULL, \
             locked_until = NULL FROM (VALUES {}) AS v \
             WHERE journal.id = v.column1 AND journal.locked_by = $2 AND journal.state = 'processing'",
            (0..items.len())
                .map(|r| format!("(${}, ${})", 3 + 2 * r, 4 + 2 * r))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let mut query = sqlx::query(&statement).bind(state.as_str()).bind(worker);
        for (id, outcome) in items {
            query = query.bind(*id).bind(outcome.as_str());
        }
        let done = query
            .execute(self.conn())
            .await
            .map_err(StoreError::query("finishing inbound journal items"))?;
        if done.rows_affected() == items.len() as u64 {
            Ok(())
        } else {
            Err(StoreError::LeaseLost {
                what: "journal item",
                id: items
                    .iter()
                    .map(|(id, _)| *id)
                    .collect::<Vec<_>>()
                    .join(" or "),
                worker: worker.to_string(),
            })
        }
    }

    /// How many inbound journal items wait for a worker (received, or with an expired lease).
    pub async fn journal_items_waiting(&mut self, now: DateTime<Utc>) -> Result<i64, StoreError> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS n FROM journal WHERE direction = 'in' AND \
             (state = 'received' OR (state = 'processing' AND locked_until < $1))",
        )
        .bind(ms(now))
        .fetch_one(self.conn())
        .await
        .map_err(StoreError::query("counting waiting journal items"))?;
        get(&row, "n")
    }
}
