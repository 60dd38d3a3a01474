//! The outbox: what waits to be sent (orders to build, acknowledgements and answers already
//! built), the outbound work queue with retries and parking.

use chrono::{DateTime, Utc};
use sqlx::any::AnyRow;

use super::sql::{
    claim_next, corrupt, finish_work, get, lease_kept, ms, page_rows, select_rows, time, Queue,
    ROWS_PER_STATEMENT,
};
use super::types::*;
use super::{Connection, Session, StoreError};
use crate::plan::outbound::written_references;

pub(crate) const OUTBOX_COLUMNS: &str = "id, kind, order_kind, order_id, partner, payload, \
    journal_id, state, attempts, next_attempt_at, last_error, created_at, sent_at, due_at";

const OUTBOX_QUEUE: Queue = Queue {
    operation: "claiming an outbox item",
    table: "outbox",
    busy_state: "in_flight",
    ready: [
        "state = 'pending' AND next_attempt_at <= $3",
        "state = 'in_flight' AND locked_until < $3",
    ],
    columns: OUTBOX_COLUMNS,
};

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
        due_at: get::<Option<i64>>(row, "due_at")?.map(time),
        id,
    })
}

impl<C: Connection> Session<C> {
    /// Queues work to send (due at `now`); returns the outbox id.
    pub async fn add_outbox(
        &mut self,
        item: &NewOutboxItem,
        now: DateTime<Utc>,
    ) -> Result<String, StoreError> {
        let ids = self
            .add_outbox_items(std::slice::from_ref(item), now)
            .await?;
        Ok(ids.into_iter().next().expect("one id per item"))
    }

    /// Queues several items in one statement (due at `now`); returns their ids in order.
    pub async fn add_outbox_items(
        &mut self,
        items: &[NewOutboxItem],
        now: DateTime<Utc>,
    ) -> Result<Vec<String>, StoreError> {
        self.add_outbox_items_due(items, &[], now).await
    }

    /// [`Session::add_outbox_items`] with, per item, when it must have left (our deadline for
    /// an acknowledgement or answer; `dues` shorter than `items` means no deadline for the rest).
    pub async fn add_outbox_items_due(
        &mut self,
        items: &[NewOutboxItem],
        dues: &[Option<DateTime<Utc>>],
        now: DateTime<Utc>,
    ) -> Result<Vec<String>, StoreError> {
        // One statement per ROWS_PER_STATEMENT items, each with its share of `dues`.
        let mut ids = Vec::with_capacity(items.len());
        for (n, chunk) in items.chunks(ROWS_PER_STATEMENT).enumerate() {
            let from = (n * ROWS_PER_STATEMENT).min(dues.len());
            let to = (from + chunk.len()).min(dues.len());
            ids.extend(self.add_outbox_rows(chunk, &dues[from..to], now).await?);
        }
        Ok(ids)
    }

    async fn add_outbox_rows(
        &mut self,
        items: &[NewOutboxItem],
        dues: &[Option<DateTime<Utc>>],
        now: DateTime<Utc>,
    ) -> Result<Vec<String>, StoreError> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<String> = items.iter().map(|_| new_id("obx", now)).collect();
        let statement = format!(
            "INSERT INTO outbox (id, kind, order_kind, order_id, partner, payload, journal_id, \
             state, attempts, next_attempt_at, created_at, due_at) VALUES {}",
            (0..items.len())
                .map(|r| {
                    let p = |i: usize| format!("${}", 1 + r * 9 + i);
                    format!(
                        "({}, {}, {}, {}, {}, {}, {}, 'pending', 0, {}, {}, {})",
                        p(0),
                        p(1),
                        p(2),
                        p(3),
                        p(4),
                        p(5),
                        p(6),
                        p(7),
                        p(7),
                        p(8)
                    )
                })
                .collect::<Vec<_>>()
                .join(", ")
        );
        let statement = super::sql::positional(self.backend, statement);
        let mut query = sqlx::query(&statement);
        for (i, (id, item)) in ids.iter().zip(items).enumerate() {
            query = query
                .bind(id.clone())
                .bind(item.kind.as_str())
                .bind(item.order.as_ref().map(|(k, _)| k.as_str().to_string()))
                .bind(item.order.as_ref().map(|(_, id)| id.clone()))
                .bind(item.partner.clone())
                .bind(item.payload.clone())
                .bind(item.journal_id.clone())
                .bind(ms(now))
                .bind(dues.get(i).copied().flatten().map(ms));
        }
        query
            .execute(self.conn())
            .await
            .map_err(StoreError::query("adding outbox items"))?;
        let indexed: Vec<(&str, Vec<String>)> = ids
            .iter()
            .zip(items)
            .filter_map(|(id, item)| {
                let payload = item.payload.as_deref()?;
                Some((id.as_str(), written_references(payload)))
            })
            .collect();
        self.index_outbox_references(&indexed).await?;
        Ok(ids)
    }

    /// Records the references each outbox item's bytes carry (see
    /// `migrations/0010_outbox_reference.sql`); a pair already recorded is left as it is.
    async fn index_outbox_references(
        &mut self,
        items: &[(&str, Vec<String>)],
    ) -> Result<(), StoreError> {
        let pairs: Vec<(&str, &str)> = items
            .iter()
            .flat_map(|(id, refs)| refs.iter().map(move |r| (r.as_str(), *id)))
            .collect();
        for chunk in pairs.chunks(ROWS_PER_STATEMENT) {
            let statement = format!(
                "INSERT INTO outbox_reference (reference, outbox_id) VALUES {} \
                 ON CONFLICT (reference, outbox_id) DO NOTHING",
                super::sql::value_rows(chunk.len(), 2)
            );
            let statement = super::sql::positional(self.backend, statement);
            let mut query = sqlx::query(&statement);
            for (reference, id) in chunk {
                query = query.bind(*reference).bind(*id);
            }
            query.execute(self.conn()).await.map_err(StoreError::query(
                "recording the references of outbox items",
            ))?;
        }
        Ok(())
    }

    /// Indexes the unsent outbox items that have no references recorded: those queued before
    /// `migrations/0010_outbox_reference.sql` (run when the store opens; afterwards it finds
    /// only items whose bytes are no readable interchange). Returns how many it read.
    pub async fn index_unindexed_outbox(&mut self) -> Result<usize, StoreError> {
        let rows = select_rows(
            self.conn(),
            "reading outbox items without references",
            "SELECT id, payload FROM outbox o WHERE o.payload IS NOT NULL \
             AND o.state IN ('pending', 'in_flight', 'parked') \
             AND NOT EXISTS (SELECT 1 FROM outbox_reference r WHERE r.outbox_id = o.id)",
            &[],
        )
        .await?;
        let ids: Vec<String> = rows
            .iter()
            .map(|row| get(row, "id"))
            .collect::<Result<_, _>>()?;
        let mut indexed: Vec<(&str, Vec<String>)> = Vec::with_capacity(rows.len());
        for (id, row) in ids.iter().zip(&rows) {
            let payload: Vec<u8> = get(row, "payload")?;
            indexed.push((id.as_str(), written_references(&payload)));
        }
        self.index_outbox_references(&indexed).await?;
        Ok(rows.len())
    }

    /// Claims the oldest outbox item that is due (`pending` with `next_attempt_at <= now`, or
    /// `in_flight` with an expired lease).
    pub async fn claim_outbox(
        &mut self,
        worker: &str,
        now: DateTime<Utc>,
        lease: std::time::Duration,
    ) -> Result<Option<OutboxItem>, StoreError> {
        let backend = self.backend;
        let row = claim_next(self.conn(), backend, &OUTBOX_QUEUE, worker, now, lease).await?;
        row.as_ref().map(outbox_from_row).transpose()
    }

    /// Keeps the bytes built for a claimed outbox item, so that a retry after a crash sends
    /// the same interchange (same references) instead of building a second one.
    pub async fn set_outbox_payload(
        &mut self,
        id: &str,
        worker: &str,
        payload: &[u8],
    ) -> Result<(), StoreError> {
        let done = sqlx::query(
            "UPDATE outbox SET payload = $1 WHERE id = $2 AND locked_by = $3 AND state = 'in_flight'",
        )
        .bind(payload.to_vec())
        .bind(id)
        .bind(worker)
        .execute(self.conn())
        .await
        .map_err(StoreError::query("keeping an outbox item's bytes"))?;
        lease_kept(done.rows_affected(), "outbox item", id, worker)?;
        self.index_outbox_references(&[(id, written_references(payload))])
            .await
    }

    /// Marks a claimed outbox item sent.
    pub async fn mark_outbox_sent(
        &mut self,
        id: &str,
        worker: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let done = sqlx::query(
            "UPDATE outbox SET state = 'sent', sent_at = $1, locked_by = NULL, locked_until = NULL, \
             last_error = NULL WHERE id = $2 AND locked_by = $3 AND state = 'in_flight'",
        )
        .bind(ms(now))
        .bind(id)
        .bind(worker)
        .execute(self.conn())
        .await
        .map_err(StoreError::query("marking an outbox item sent"))?;
        lease_kept(done.rows_affected(), "outbox item", id, worker)
    }

    /// Puts a claimed outbox item back for another attempt at `next_attempt_at` (a transient
    /// error).
    pub async fn retry_outbox(
        &mut self,
        id: &str,
        worker: &str,
        next_attempt_at: DateTime<Utc>,
        error: &str,
    ) -> Result<(), StoreError> {
        finish_work(
            self.conn(),
            "outbox",
            "outbox item",
            "in_flight",
            "state = 'pending', next_attempt_at = $3, last_error = $4",
            id,
            worker,
            Some(ms(next_attempt_at)),
            Some(error),
        )
        .await
    }

    /// Parks a claimed outbox item with a permanent error (visible in `GET /outbox`).
    pub async fn park_outbox(
        &mut self,
        id: &str,
        worker: &str,
        error: &str,
    ) -> Result<(), StoreError> {
        finish_work(
            self.conn(),
            "outbox",
            "outbox item",
            "in_flight",
            "state = 'parked', last_error = $4",
            id,
            worker,
            None,
            Some(error),
        )
        .await
    }

    /// Outbox items, optionally in one state, in id order.
    pub async fn list_outbox(
        &mut self,
        state: Option<OutboxState>,
        page: &PageRequest,
    ) -> Result<Page<OutboxItem>, StoreError> {
        let (rows, next_cursor) = page_rows(
            self.conn(),
            "listing the outbox",
            "outbox",
            OUTBOX_COLUMNS,
            "1 = 1",
            &[("state =", state.map(OutboxState::as_str))],
            page,
        )
        .await?;
        Ok(Page {
            items: rows.iter().map(outbox_from_row).collect::<Result<_, _>>()?,
            next_cursor,
        })
    }

    /// The outbox items of an order that are not sent yet (pending or in flight).
    pub async fn open_outbox_for_order(
        &mut self,
        order_id: &str,
    ) -> Result<Vec<OutboxItem>, StoreError> {
        let sql = format!(
            "SELECT {OUTBOX_COLUMNS} FROM outbox WHERE order_id = $1 \
             AND state IN ('pending', 'in_flight') ORDER BY id"
        );
        select_rows(
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

    /// Deletes the order's outbox items that no worker holds yet (`pending`); returns how
    /// many. An item already in flight is left to its worker.
    pub async fn drop_pending_outbox(&mut self, order_id: &str) -> Result<u64, StoreError> {
        sqlx::query(
            "DELETE FROM outbox_reference WHERE outbox_id IN \
             (SELECT id FROM outbox WHERE order_id = $1 AND state = 'pending')",
        )
        .bind(order_id)
        .execute(self.conn())
        .await
        .map_err(StoreError::query("dropping pending outbox items"))?;
        sqlx::query("DELETE FROM outbox WHERE order_id = $1 AND state = 'pending'")
            .bind(order_id)
            .execute(self.conn())
            .await
            .map(|d| d.rows_affected())
            .map_err(StoreError::query("dropping pending outbox items"))
    }

    /// Which of `references` (ours: document numbers, interchange references) are written in
    /// an interchange kept in an outbox item to one of `partners` that is not sent yet
    /// (pending or in flight, bytes kept): sent to the partner maybe, but not recorded as sent.
    /// The references counted are those its bytes carry as answers name them
    /// ([`written_references`]: UNB DE0020, UNH DE0062, BGM DE1004), as whole values.
    pub async fn unsent_references(
        &mut self,
        partners: &[String],
        references: &[&str],
    ) -> Result<Vec<String>, StoreError> {
        if partners.is_empty() || references.is_empty() {
            return Ok(Vec::new());
        }
        let wanted: Vec<&str> = references
            .iter()
            .copied()
            .filter(|r| !r.is_empty())
            .collect();
        // Looked up in the references recorded with the items (an index, see
        // `migrations/0010_outbox_reference.sql`): reading every unsent payload instead was the
        // largest cost of processing answers while replies waited in the outbox. Two
        // statements that each can only be read by a key: joined in one, both databases
        // walked every unsent item by its state when they had no statistics yet (PostgreSQL
        // 150 ms a batch with 10,000 replies waiting).
        let mut named: Vec<(String, String)> = Vec::new();
        for chunk in wanted.chunks(ROWS_PER_STATEMENT) {
            let sql = format!(
                "SELECT reference, outbox_id FROM outbox_reference WHERE reference IN ({})",
                super::sql::placeholders(1, chunk.len())
            );
            for row in
                select_rows(self.conn(), "looking for unsent references", &sql, chunk).await?
            {
                named.push((get(&row, "reference")?, get(&row, "outbox_id")?));
            }
        }
        let mut items: Vec<&str> = named.iter().map(|(_, id)| id.as_str()).collect();
        items.sort_unstable();
        items.dedup();
        let mut unsent: std::collections::HashSet<String> = std::collections::HashSet::new();
        for chunk in items.chunks(ROWS_PER_STATEMENT) {
            let sql = format!(
                "SELECT id FROM outbox WHERE id IN ({}) AND state IN ('pending', 'in_flight') \
                 AND partner IN ({})",
                super::sql::placeholders(1, chunk.len()),
                super::sql::placeholders(1 + chunk.len(), partners.len())
            );
            let args: Vec<&str> = chunk
                .iter()
                .copied()
                .chain(partners.iter().map(String::as_str))
                .collect();
            for row in
                select_rows(self.conn(), "looking for unsent references", &sql, &args).await?
            {
                unsent.insert(get(&row, "id")?);
            }
        }
        let mut found: Vec<String> = named
            .into_iter()
            .filter(|(_, id)| unsent.contains(id))
            .map(|(reference, _)| reference)
            .collect();
        // In the order of `references`, each once.
        found.sort_by_key(|f| references.iter().position(|r| r == f));
        found.dedup();
        Ok(found)
    }
}

/// Whether `value` stands as a whole element or component value in `interchange` (written by
/// us, with the standard delimiters). The console uses it to find the CONTRL/APERAK that name
/// an interchange.
pub fn names_value(interchange: &[u8], value: &str) -> bool {
    if value.is_empty() {
        return false;
    }
    let separated = |b: Option<&u8>| matches!(b, Some(b'+' | b':' | b'\''));
    memchr::memmem::find_iter(interchange, value.as_bytes()).any(|at| {
        at > 0 && separated(interchange.get(at - 1)) && separated(interchange.get(at + value.len()))
    })
}

#[cfg(test)]
mod tests {
    use super::names_value;

    #[test]
    fn a_reference_is_found_only_as_a_whole_value() {
        let ic = b"UNB+UNOC:3+9900000000003:500+9900000000011:500+260512:0930+MG00000010'\
                   BGM+Z91+MG0000000X'RFF+ON:MG0000000Y'UNZ+1+MG00000010'";
        assert!(names_value(ic, "MG0000000X"));
        assert!(names_value(ic, "MG0000000Y"));
        assert!(names_value(ic, "MG00000010"));
        assert!(!names_value(ic, "MG0000000"));
        assert!(!names_value(ic, "G0000000X"));
        assert!(!names_value(ic, ""));
    }
}
