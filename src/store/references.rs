//! References for what the gateway writes (UNB, UNH, BGM): blocks reserved from one counter
//! shared by all instances.

use super::sql::get;
use super::{Store, StoreError};

/// References taken from the shared counter per statement. Every processed inbound item
/// asks for a dozen; taking them ten thousand at a time saves a statement and a commit (a WAL
/// flush) per item, and per batch of 32 items (a block of 1,000 was a commit every third
/// batch in `cargo bench --bench inbound`). An instance that stops leaves the rest of its
/// block unused: a gap, which is harmless (duplicates would not be). 36^8 references last for
/// 280 million blocks.
pub(crate) const REFERENCE_BLOCK: u32 = 10_000;

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
    /// block of at least `REFERENCE_BLOCK` (10,000) that this instance reserved in one statement,
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

    /// Reserves `count` references in the database; returns the first. In a transaction of
    /// its own (on SQLite it waits for this instance's turn to write, see [`Store::begin`],
    /// rather than polling SQLite's lock).
    async fn reserve_block(&self, count: u64) -> Result<u64, StoreError> {
        let count = i64::try_from(count).unwrap_or(i64::MAX);
        let mut tx = self.begin().await?;
        let row = sqlx::query(
            "UPDATE reference_counter SET next_value = next_value + $1 WHERE name = 'edifact' \
             RETURNING next_value",
        )
        .bind(count)
        .fetch_one(tx.conn())
        .await
        .map_err(StoreError::query("reserving references"))?;
        tx.commit().await?;
        let next: i64 = get(&row, "next_value")?;
        Ok(u64::try_from(next - count).unwrap_or(0))
    }
}
