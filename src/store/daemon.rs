//! What the daemon's loops need beyond the order and journal operations: blocks of
//! references from the shared counter, and an outbox item's built bytes kept before sending.

use chrono::{DateTime, Utc};

use super::sql::ms;
use super::{lease_kept, Store, StoreError};

/// References taken from the shared counter per statement. Every processed inbound item
/// asks for a dozen; taking them a thousand at a time saves a statement and a commit (a WAL
/// flush) per item. An instance that stops leaves the rest of its block unused: a gap, which is
/// harmless (duplicates would not be). 36^8 references last for billions of blocks.
pub(crate) const REFERENCE_BLOCK: u32 = 1_000;

/// The part of a reserved block not handed out yet: `next..end`.
#[derive(Debug, Default)]
pub(crate) struct ReferenceBlock {
    next: u64,
    end: u64,
}

impl ReferenceBlock {
    fn take(&mut self, count: u64) -> Option<u64> {
        (self.end - self.next >= count).then(|| {
            self.next += count;
            self.next - count
        })
    }
}

impl Store {
    /// Reserves `count` consecutive reference numbers and returns the first. They come from a
    /// block of at least `REFERENCE_BLOCK` (1,000) that this instance reserved in one statement,
    /// committed at once: concurrent instances get disjoint blocks.
    pub async fn reserve_references(&self, count: u32) -> Result<u64, StoreError> {
        let count = u64::from(count);
        if let Some(first) = self.references.lock().expect("not poisoned").take(count) {
            return Ok(first);
        }
        let size = count.max(u64::from(REFERENCE_BLOCK));
        let first = self.reserve_block(size).await?;
        let mut block = self.references.lock().expect("not poisoned");
        // Another loop may have refilled it meanwhile: the rest of the older block is a gap.
        *block = ReferenceBlock {
            next: first + count,
            end: first + size,
        };
        Ok(first)
    }

    /// Reserves `count` references in the database; returns the first.
    async fn reserve_block(&self, count: u64) -> Result<u64, StoreError> {
        let count = i64::try_from(count).unwrap_or(i64::MAX);
        let row = sqlx::query(
            "UPDATE reference_counter SET next_value = next_value + $1 WHERE name = 'edifact' \
             RETURNING next_value",
        )
        .bind(count)
        .fetch_one(&self.pool)
        .await
        .map_err(StoreError::query("reserving references"))?;
        let next: i64 = super::sql::get(&row, "next_value")?;
        Ok(u64::try_from(next - count).unwrap_or(0))
    }

    /// Keeps the bytes built for a claimed outbox item, so that a retry after a crash sends
    /// the same interchange (same references) instead of building a second one.
    pub async fn set_outbox_payload(
        &self,
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
        .execute(&self.pool)
        .await
        .map_err(StoreError::query("keeping an outbox item's bytes"))?;
        lease_kept(done.rows_affected(), "outbox item", id, worker)
    }

    /// How many inbound journal items wait for a worker (received, or with an expired lease).
    pub async fn journal_items_waiting(&self, now: DateTime<Utc>) -> Result<i64, StoreError> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS n FROM journal WHERE direction = 'in' AND \
             (state = 'received' OR (state = 'processing' AND locked_until < $1))",
        )
        .bind(ms(now))
        .fetch_one(&self.pool)
        .await
        .map_err(StoreError::query("counting waiting journal items"))?;
        super::sql::get(&row, "n")
    }
}

impl Store {
    /// Claims one given inbound journal item (for `replay`, which processes what it just
    /// journaled): like [`Store::claim_inbound`], but for this id.
    pub async fn claim_journal_item(
        &self,
        id: &str,
        worker: &str,
        now: DateTime<Utc>,
        lease: std::time::Duration,
    ) -> Result<Option<super::JournalItem>, StoreError> {
        let until = now + chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::MAX);
        let rows = sqlx::query(&format!(
            "UPDATE journal SET state = 'processing', locked_by = $1, locked_until = $2, \
             attempts = attempts + 1 WHERE id = $3 AND direction = 'in' AND \
             (state = 'received' OR (state = 'processing' AND locked_until < $4)) RETURNING {}",
            super::sql::JOURNAL_COLUMNS
        ))
        .bind(worker)
        .bind(ms(until))
        .bind(id)
        .bind(ms(now))
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::query("claiming a journal item"))?;
        rows.first().map(super::sql::journal_from_row).transpose()
    }
}

impl Store {
    /// Claims up to `limit` new inbound journal items at once, oldest first (PostgreSQL skips
    /// rows another worker is claiming). Items with an expired lease are left to
    /// [`Store::claim_inbound`], which the worker falls back to when this finds nothing.
    pub async fn claim_inbound_batch(
        &self,
        worker: &str,
        now: DateTime<Utc>,
        lease: std::time::Duration,
        limit: u32,
    ) -> Result<Vec<super::JournalItem>, StoreError> {
        let until = now + chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::MAX);
        let rows = sqlx::query(&format!(
            "UPDATE journal SET state = 'processing', locked_by = $1, locked_until = $2, \
             attempts = attempts + 1 WHERE id IN (SELECT id FROM journal WHERE direction = 'in' \
             AND state = 'received' ORDER BY id LIMIT $3{}) RETURNING {}",
            self.backend.skip_locked(),
            super::sql::JOURNAL_COLUMNS
        ))
        .bind(worker)
        .bind(ms(until))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::query("claiming inbound journal items"))?;
        let mut items = rows
            .iter()
            .map(super::sql::journal_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        items.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(items)
    }
}
