//! Row counts for `/metrics`.

use super::sql::get;
use super::types::Counts;
use super::{Connection, Session, StoreError};

impl<C: Connection> Session<C> {
    /// Row counts by status and state, for `/metrics`.
    pub async fn counts(&mut self) -> Result<Counts, StoreError> {
        let conn = self.conn();
        let group = |table: &str, label: &str| {
            format!("SELECT {label} AS label, COUNT(*) AS n FROM {table} GROUP BY {label} ORDER BY {label}")
        };
        let mut read = async |statement: String| -> Result<Vec<(String, i64)>, StoreError> {
            let rows = sqlx::query(&statement)
                .fetch_all(&mut *conn)
                .await
                .map_err(StoreError::query("counting rows for metrics"))?;
            rows.iter()
                .map(|r| Ok((get::<String>(r, "label")?, get::<i64>(r, "n")?)))
                .collect()
        };
        let grid_fee_reductions = read(group("grid_fee_reductions", "status")).await?;
        let meter_orders = read(group("meter_orders", "status")).await?;
        let outbox = read(group("outbox", "state")).await?;
        let webhooks = read(group("webhook_deliveries", "state")).await?;
        let journal = read(group("journal", "direction || '/' || state")).await?;
        let clearing_open = read(
            "SELECT 'open' AS label, COUNT(*) AS n FROM clearing WHERE resolved_at IS NULL"
                .to_string(),
        )
        .await?
        .first()
        .map_or(0, |(_, n)| *n);
        Ok(Counts {
            grid_fee_reductions,
            meter_orders,
            outbox,
            webhooks,
            journal,
            clearing_open,
        })
    }
}
