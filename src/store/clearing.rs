//! The clearing list: inbound messages that matched nothing, or could not be processed, kept
//! with their reason for an operator.

use chrono::{DateTime, Utc};

use super::sql::{get, ms, page_rows, time, value_rows, ROWS_PER_STATEMENT};
use super::types::*;
use super::{Connection, Session, StoreError};
use crate::plan::records::NewClearing;

impl<C: Connection> Session<C> {
    /// Keeps an unmatched inbound message for clearing; returns its id.
    pub async fn add_clearing(
        &mut self,
        journal_id: &str,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<String, StoreError> {
        let item = NewClearing {
            journal_id: journal_id.to_string(),
            reason: reason.to_string(),
        };
        let ids = self.add_clearing_items(&[&item], now).await?;
        Ok(ids.into_iter().next().expect("one id per item"))
    }

    /// Keeps several inbound messages for clearing (one statement per
    /// `ROWS_PER_STATEMENT` (500)); returns their ids.
    pub async fn add_clearing_items(
        &mut self,
        items: &[&NewClearing],
        now: DateTime<Utc>,
    ) -> Result<Vec<String>, StoreError> {
        let mut ids = Vec::with_capacity(items.len());
        for chunk in items.chunks(ROWS_PER_STATEMENT) {
            ids.extend(self.add_clearing_rows(chunk, now).await?);
        }
        Ok(ids)
    }

    async fn add_clearing_rows(
        &mut self,
        items: &[&NewClearing],
        now: DateTime<Utc>,
    ) -> Result<Vec<String>, StoreError> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<String> = items.iter().map(|_| new_id("clr", now)).collect();
        let statement = format!(
            "INSERT INTO clearing (id, journal_id, reason, created_at) VALUES {}",
            value_rows(items.len(), 4)
        );
        let statement = super::sql::positional(self.backend, statement);
        let mut query = sqlx::query(&statement);
        for (id, item) in ids.iter().zip(items) {
            query = query
                .bind(id.clone())
                .bind(item.journal_id.clone())
                .bind(item.reason.clone())
                .bind(ms(now));
        }
        query
            .execute(self.conn())
            .await
            .map_err(StoreError::query("adding clearing items"))?;
        Ok(ids)
    }

    /// Clearing items (open ones only unless `include_resolved`), in id order, with the
    /// journal item's partner and reference.
    pub async fn list_clearing(
        &mut self,
        include_resolved: bool,
        page: &PageRequest,
    ) -> Result<Page<ClearingItem>, StoreError> {
        let (rows, next_cursor) = page_rows(
            self.conn(),
            "listing the clearing items",
            "clearing",
            "id, journal_id, reason, created_at, resolved_at, \
             (SELECT partner FROM journal WHERE journal.id = clearing.journal_id) AS partner, \
             (SELECT interchange_ref FROM journal WHERE journal.id = clearing.journal_id) AS interchange_ref",
            if include_resolved {
                "1 = 1"
            } else {
                "resolved_at IS NULL"
            },
            &[],
            page,
        )
        .await?;
        let items = rows
            .iter()
            .map(|r| {
                Ok(ClearingItem {
                    id: get(r, "id")?,
                    journal_id: get(r, "journal_id")?,
                    partner: get(r, "partner")?,
                    interchange_ref: get(r, "interchange_ref")?,
                    reason: get(r, "reason")?,
                    created_at: time(get(r, "created_at")?),
                    resolved_at: get::<Option<i64>>(r, "resolved_at")?.map(time),
                })
            })
            .collect::<Result<_, StoreError>>()?;
        Ok(Page { items, next_cursor })
    }

    /// An operator resolved a clearing item.
    pub async fn resolve_clearing(
        &mut self,
        id: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let done = sqlx::query(
            "UPDATE clearing SET resolved_at = $1 WHERE id = $2 AND resolved_at IS NULL",
        )
        .bind(ms(now))
        .bind(id)
        .execute(self.conn())
        .await
        .map_err(StoreError::query("resolving a clearing item"))?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound {
                what: "open clearing item",
                id: id.to_string(),
            });
        }
        Ok(())
    }
}
