//! Orders: grid-fee reductions and meter orders (indexed columns plus the pure order as JSON,
//! optimistic versions), their status history, and the subscriptions' confirmations.

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::any::AnyRow;

use super::sql::{
    corrupt, get, ms, page_rows, placeholders, read_date, select_rows, time, value_rows,
    ROWS_PER_STATEMENT,
};
use super::types::*;
use super::{Backend, Connection, Session, StoreError};
use crate::orders::{GridFeeReduction, MeterOrder};
use crate::plan::records::{ChangedOrder, OrderChange};

pub(crate) const GRID_FEE_COLUMNS: &str =
    "id, effective_date, body, version, created_at, updated_at";
pub(crate) const METER_COLUMNS: &str = "id, wanted_date, body, version, created_at, updated_at";

pub(crate) fn grid_fee_from_row(row: &AnyRow) -> Result<GridFeeRecord, StoreError> {
    const WHAT: &str = "grid-fee reduction";
    let id: String = get(row, "id")?;
    let body: String = get(row, "body")?;
    let order: GridFeeReduction =
        serde_json::from_str(&body).map_err(|e| corrupt(WHAT, &id, "body", e.to_string()))?;
    Ok(GridFeeRecord {
        order,
        effective_date: read_date(WHAT, &id, "effective_date", get(row, "effective_date")?)?,
        version: get(row, "version")?,
        created_at: time(get(row, "created_at")?),
        updated_at: time(get(row, "updated_at")?),
    })
}

pub(crate) fn meter_from_row(row: &AnyRow) -> Result<MeterOrderRecord, StoreError> {
    const WHAT: &str = "meter order";
    let id: String = get(row, "id")?;
    let body: String = get(row, "body")?;
    let order: MeterOrder =
        serde_json::from_str(&body).map_err(|e| corrupt(WHAT, &id, "body", e.to_string()))?;
    Ok(MeterOrderRecord {
        order,
        wanted_date: read_date(WHAT, &id, "wanted_date", get(row, "wanted_date")?)?,
        version: get(row, "version")?,
        created_at: time(get(row, "created_at")?),
        updated_at: time(get(row, "updated_at")?),
    })
}

fn body<T: serde::Serialize>(order: &T) -> String {
    serde_json::to_string(order).expect("orders serialise to JSON")
}

impl<C: Connection> Session<C> {
    /// Stores a new grid-fee reduction (version 1).
    pub async fn insert_grid_fee(
        &mut self,
        order: &GridFeeReduction,
        effective_date: Option<NaiveDate>,
        now: DateTime<Utc>,
    ) -> Result<GridFeeRecord, StoreError> {
        sqlx::query(
            "INSERT INTO grid_fee_reductions (id, subscription, status, reduction_type, market_location, \
             grid_operator, order_document, effective_date, body, version, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 1, $10, $10)",
        )
        .bind(&order.id)
        .bind(&order.subscription)
        .bind(serde_text(&order.status))
        .bind(serde_text(&order.reduction_type))
        .bind(order.market_location.as_str())
        .bind(order.grid_operator.as_str())
        .bind(order.order_document.clone())
        .bind(effective_date.map(|d| d.to_string()))
        .bind(body(order))
        .bind(ms(now))
        .execute(self.conn())
        .await
        .map_err(StoreError::query("inserting a grid-fee reduction"))?;
        Ok(GridFeeRecord {
            order: order.clone(),
            effective_date,
            version: 1,
            created_at: time(ms(now)),
            updated_at: time(ms(now)),
        })
    }
    /// Stores a new meter order (version 1); a second one for the subscription is
    /// [`StoreError::DuplicateMeterOrder`].
    pub async fn insert_meter_order(
        &mut self,
        order: &MeterOrder,
        wanted_date: Option<NaiveDate>,
        now: DateTime<Utc>,
    ) -> Result<MeterOrderRecord, StoreError> {
        let result = sqlx::query(
            "INSERT INTO meter_orders (id, subscription, status, market_location, metering_location, \
             metering_operator, order_document, wanted_date, body, version, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 1, $10, $10)",
        )
        .bind(&order.id)
        .bind(&order.subscription)
        .bind(serde_text(&order.status))
        .bind(order.market_location.as_str())
        .bind(order.metering_location.as_ref().map(|m| m.to_string()))
        .bind(order.metering_operator.as_str())
        .bind(order.order_document.clone())
        .bind(wanted_date.map(|d| d.to_string()))
        .bind(body(order))
        .bind(ms(now))
        .execute(self.conn())
        .await;
        match result {
            Ok(_) => Ok(MeterOrderRecord {
                order: order.clone(),
                wanted_date,
                version: 1,
                created_at: time(ms(now)),
                updated_at: time(ms(now)),
            }),
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                Err(StoreError::DuplicateMeterOrder {
                    subscription: order.subscription.clone(),
                })
            }
            Err(source) => Err(StoreError::Query {
                operation: "inserting a meter order",
                source,
            }),
        }
    }
    /// Saves a changed reduction if nobody saved it since `expected_version` was read; returns
    /// the new version, or [`StoreError::VersionConflict`].
    pub async fn save_grid_fee(
        &mut self,
        order: &GridFeeReduction,
        expected_version: i64,
        now: DateTime<Utc>,
    ) -> Result<i64, StoreError> {
        let done = sqlx::query(
            "UPDATE grid_fee_reductions SET status = $1, order_document = $2, body = $3, \
             version = version + 1, updated_at = $4 WHERE id = $5 AND version = $6",
        )
        .bind(serde_text(&order.status))
        .bind(order.order_document.clone())
        .bind(body(order))
        .bind(ms(now))
        .bind(&order.id)
        .bind(expected_version)
        .execute(self.conn())
        .await
        .map_err(StoreError::query("saving a grid-fee reduction"))?;
        if done.rows_affected() == 1 {
            Ok(expected_version + 1)
        } else {
            Err(StoreError::VersionConflict {
                kind: "grid_fee_reduction",
                id: order.id.clone(),
                expected: expected_version,
            })
        }
    }
    /// Saves a changed meter order (optimistic, like [`Session::save_grid_fee`]).
    pub async fn save_meter_order(
        &mut self,
        order: &MeterOrder,
        expected_version: i64,
        now: DateTime<Utc>,
    ) -> Result<i64, StoreError> {
        let done = sqlx::query(
            "UPDATE meter_orders SET status = $1, metering_location = $2, order_document = $3, \
             body = $4, version = version + 1, updated_at = $5 WHERE id = $6 AND version = $7",
        )
        .bind(serde_text(&order.status))
        .bind(order.metering_location.as_ref().map(|m| m.to_string()))
        .bind(order.order_document.clone())
        .bind(body(order))
        .bind(ms(now))
        .bind(&order.id)
        .bind(expected_version)
        .execute(self.conn())
        .await
        .map_err(StoreError::query("saving a meter order"))?;
        if done.rows_affected() == 1 {
            Ok(expected_version + 1)
        } else {
            Err(StoreError::VersionConflict {
                kind: "meter_order",
                id: order.id.clone(),
                expected: expected_version,
            })
        }
    }
    /// One grid-fee reduction.
    pub async fn grid_fee(&mut self, id: &str) -> Result<Option<GridFeeRecord>, StoreError> {
        let sql = format!("SELECT {GRID_FEE_COLUMNS} FROM grid_fee_reductions WHERE id = $1");
        let rows = select_rows(self.conn(), "reading a grid-fee reduction", &sql, &[id]).await?;
        rows.first().map(grid_fee_from_row).transpose()
    }
    /// One meter order.
    pub async fn meter_order(&mut self, id: &str) -> Result<Option<MeterOrderRecord>, StoreError> {
        let sql = format!("SELECT {METER_COLUMNS} FROM meter_orders WHERE id = $1");
        let rows = select_rows(self.conn(), "reading a meter order", &sql, &[id]).await?;
        rows.first().map(meter_from_row).transpose()
    }
    /// Grid-fee reductions where `column = value`, in creation order.
    async fn grid_fees_where(
        &mut self,
        column: &'static str,
        value: &str,
    ) -> Result<Vec<GridFeeRecord>, StoreError> {
        let sql = format!(
            "SELECT {GRID_FEE_COLUMNS} FROM grid_fee_reductions WHERE {column} = $1 ORDER BY id"
        );
        select_rows(self.conn(), "reading grid-fee reductions", &sql, &[value])
            .await?
            .iter()
            .map(grid_fee_from_row)
            .collect()
    }
    /// Meter orders where `column = value`, in creation order.
    async fn meters_where(
        &mut self,
        column: &'static str,
        value: &str,
    ) -> Result<Vec<MeterOrderRecord>, StoreError> {
        let sql =
            format!("SELECT {METER_COLUMNS} FROM meter_orders WHERE {column} = $1 ORDER BY id");
        select_rows(self.conn(), "reading meter orders", &sql, &[value])
            .await?
            .iter()
            .map(meter_from_row)
            .collect()
    }
    /// When the subscription was confirmed, if it was.
    pub async fn subscription_confirmed(
        &mut self,
        subscription: &str,
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        let rows = select_rows(
            self.conn(),
            "reading a subscription",
            "SELECT confirmed_at FROM subscriptions WHERE id = $1",
            &[subscription],
        )
        .await?;
        rows.first()
            .map(|r| get::<i64>(r, "confirmed_at").map(time))
            .transpose()
    }
    /// Records a status transition.
    pub async fn add_history(&mut self, entry: &HistoryEntry) -> Result<String, StoreError> {
        let ids = self.add_history_rows(&[entry]).await?;
        Ok(ids.into_iter().next().expect("one id per row"))
    }

    /// Every status transition of an order, oldest first.
    pub async fn history(&mut self, order_id: &str) -> Result<Vec<HistoryEntry>, StoreError> {
        let rows = select_rows(
            self.conn(),
            "reading the status history",
            "SELECT id, order_kind, order_id, from_status, to_status, topic, journal_id, at, detail \
             FROM status_history WHERE order_id = $1 ORDER BY id",
            &[order_id],
        )
        .await?;
        rows.iter()
            .map(|r| {
                let id: String = get(r, "id")?;
                let kind: String = get(r, "order_kind")?;
                let detail: Option<String> = get(r, "detail")?;
                Ok(HistoryEntry {
                    order_kind: OrderKind::parse(&kind)
                        .ok_or_else(|| corrupt("history row", &id, "order_kind", kind.clone()))?,
                    order_id: get(r, "order_id")?,
                    from: get(r, "from_status")?,
                    to: get(r, "to_status")?,
                    topic: get(r, "topic")?,
                    journal_id: get(r, "journal_id")?,
                    at: time(get(r, "at")?),
                    detail: detail
                        .map(|d| serde_json::from_str(&d))
                        .transpose()
                        .map_err(|e| corrupt("history row", &id, "detail", e.to_string()))?,
                })
            })
            .collect()
    }

    /// Grid-fee reductions with the filters, in creation order.
    pub async fn list_grid_fees(
        &mut self,
        filter: &OrderFilter,
        page: &PageRequest,
    ) -> Result<Page<GridFeeRecord>, StoreError> {
        let (rows, next_cursor) = page_rows(
            self.conn(),
            "listing grid-fee reductions",
            "grid_fee_reductions",
            GRID_FEE_COLUMNS,
            "1 = 1",
            &[
                ("status =", filter.status.as_deref()),
                ("subscription =", filter.subscription.as_deref()),
            ],
            page,
        )
        .await?;
        Ok(Page {
            items: rows
                .iter()
                .map(grid_fee_from_row)
                .collect::<Result<_, _>>()?,
            next_cursor,
        })
    }

    /// Meter orders with the filters, in creation order.
    pub async fn list_meter_orders(
        &mut self,
        filter: &OrderFilter,
        page: &PageRequest,
    ) -> Result<Page<MeterOrderRecord>, StoreError> {
        let (rows, next_cursor) = page_rows(
            self.conn(),
            "listing meter orders",
            "meter_orders",
            METER_COLUMNS,
            "1 = 1",
            &[
                ("status =", filter.status.as_deref()),
                ("subscription =", filter.subscription.as_deref()),
            ],
            page,
        )
        .await?;
        Ok(Page {
            items: rows.iter().map(meter_from_row).collect::<Result<_, _>>()?,
            next_cursor,
        })
    }

    /// Every grid-fee reduction of a subscription (for the product rules).
    pub async fn grid_fees_of_subscription(
        &mut self,
        subscription: &str,
    ) -> Result<Vec<GridFeeRecord>, StoreError> {
        self.grid_fees_where("subscription", subscription).await
    }

    /// Every meter order of a subscription (at most one).
    pub async fn meter_orders_of_subscription(
        &mut self,
        subscription: &str,
    ) -> Result<Vec<MeterOrderRecord>, StoreError> {
        self.meters_where("subscription", subscription).await
    }

    /// The reductions an answer may be for: those at the market location and the one with
    /// the document number (for `orders::match_answer`).
    pub async fn grid_fee_reductions_for_matching(
        &mut self,
        market_location: Option<&str>,
        order_document: Option<&str>,
    ) -> Result<Vec<GridFeeRecord>, StoreError> {
        let mut out = Vec::new();
        if let Some(m) = market_location {
            out.extend(self.grid_fees_where("market_location", m).await?);
        }
        if let Some(d) = order_document {
            for r in self.grid_fees_where("order_document", d).await? {
                if !out.iter().any(|o: &GridFeeRecord| o.order.id == r.order.id) {
                    out.push(r);
                }
            }
        }
        Ok(out)
    }

    /// The meter orders an answer may be for: at the Messlokation and with the document
    /// number.
    pub async fn meter_orders_for_matching(
        &mut self,
        metering_location: Option<&str>,
        order_document: Option<&str>,
    ) -> Result<Vec<MeterOrderRecord>, StoreError> {
        let mut out = Vec::new();
        if let Some(m) = metering_location {
            out.extend(self.meters_where("metering_location", m).await?);
        }
        if let Some(d) = order_document {
            for r in self.meters_where("order_document", d).await? {
                if !out
                    .iter()
                    .any(|o: &MeterOrderRecord| o.order.id == r.order.id)
                {
                    out.push(r);
                }
            }
        }
        Ok(out)
    }

    /// Serialises requests about one subscription until this transaction ends, so that the
    /// product rules see every order of it (PostgreSQL: a transaction-scoped advisory lock;
    /// SQLite: taking the single writer lock now). Call it first, inside a transaction.
    pub async fn lock_subscription(&mut self, subscription: &str) -> Result<(), StoreError> {
        let statement = match self.backend {
            Backend::Postgres => "SELECT pg_advisory_xact_lock(hashtext($1))::TEXT AS locked",
            // A write, even one that changes nothing, takes SQLite's writer lock for the rest of
            // the transaction (waiting up to the busy timeout), so the reads after it are current.
            Backend::Sqlite => "UPDATE subscriptions SET id = id WHERE id = $1",
        };
        sqlx::query(statement)
            .bind(subscription)
            .execute(self.conn())
            .await
            .map_err(StoreError::query("locking a subscription"))?;
        Ok(())
    }

    /// Records the confirmation (the first one counts): true if it is new.
    pub async fn confirm_subscription(
        &mut self,
        subscription: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "INSERT INTO subscriptions (id, confirmed_at) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING",
        )
        .bind(subscription)
        .bind(ms(now))
        .execute(self.conn())
        .await
        .map_err(StoreError::query("confirming a subscription"))?;
        Ok(done.rows_affected() == 1)
    }
}

impl<C: Connection> Session<C> {
    /// Grid-fee reductions at any of the market locations or with any of the document
    /// numbers, in id order (one statement).
    pub async fn grid_fees_matching(
        &mut self,
        market_locations: &[String],
        order_documents: &[String],
    ) -> Result<Vec<GridFeeRecord>, StoreError> {
        let rows = self
            .rows_matching(
                "reading grid-fee reductions",
                "grid_fee_reductions",
                GRID_FEE_COLUMNS,
                &[
                    ("market_location", market_locations),
                    ("order_document", order_documents),
                ],
            )
            .await?;
        rows.iter().map(grid_fee_from_row).collect()
    }

    /// Meter orders at any of the Messlokationen or with any of the document numbers, in id
    /// order (one statement).
    pub async fn meter_orders_matching(
        &mut self,
        metering_locations: &[String],
        order_documents: &[String],
    ) -> Result<Vec<MeterOrderRecord>, StoreError> {
        let rows = self
            .rows_matching(
                "reading meter orders",
                "meter_orders",
                METER_COLUMNS,
                &[
                    ("metering_location", metering_locations),
                    ("order_document", order_documents),
                ],
            )
            .await?;
        rows.iter().map(meter_from_row).collect()
    }

    /// Grid-fee reductions and meter orders by id (one statement per kind).
    pub async fn orders_by_id(
        &mut self,
        ids: &[String],
    ) -> Result<(Vec<GridFeeRecord>, Vec<MeterOrderRecord>), StoreError> {
        let grid = self
            .rows_matching(
                "reading grid-fee reductions",
                "grid_fee_reductions",
                GRID_FEE_COLUMNS,
                &[("id", ids)],
            )
            .await?;
        let meters = self
            .rows_matching(
                "reading meter orders",
                "meter_orders",
                METER_COLUMNS,
                &[("id", ids)],
            )
            .await?;
        Ok((
            grid.iter()
                .map(grid_fee_from_row)
                .collect::<Result<_, _>>()?,
            meters
                .iter()
                .map(meter_from_row)
                .collect::<Result<_, _>>()?,
        ))
    }

    /// `SELECT columns FROM table WHERE c1 IN (…) OR c2 IN (…) ORDER BY id`; no statement when
    /// every list is empty.
    async fn rows_matching(
        &mut self,
        operation: &'static str,
        table: &'static str,
        columns: &'static str,
        conditions: &[(&'static str, &[String])],
    ) -> Result<Vec<AnyRow>, StoreError> {
        let total: usize = conditions.iter().map(|(_, v)| v.len()).sum();
        if total > ROWS_PER_STATEMENT {
            // A long list (an interchange of many answers): one statement per column and
            // ROWS_PER_STATEMENT values, rows found twice kept once, in id order.
            let mut rows: Vec<(String, AnyRow)> = Vec::new();
            for (column, values) in conditions {
                for chunk in values.chunks(ROWS_PER_STATEMENT) {
                    for row in
                        Box::pin(self.rows_matching(operation, table, columns, &[(column, chunk)]))
                            .await?
                    {
                        rows.push((get(&row, "id")?, row));
                    }
                }
            }
            rows.sort_by(|a, b| a.0.cmp(&b.0));
            rows.dedup_by(|a, b| a.0 == b.0);
            return Ok(rows.into_iter().map(|(_, row)| row).collect());
        }
        let mut args: Vec<&str> = Vec::new();
        let mut parts = Vec::new();
        for (column, values) in conditions {
            if values.is_empty() {
                continue;
            }
            parts.push(format!(
                "{column} IN ({})",
                placeholders(args.len() + 1, values.len())
            ));
            args.extend(values.iter().map(String::as_str));
        }
        if parts.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT {columns} FROM {table} WHERE {} ORDER BY id",
            parts.join(" OR ")
        );
        select_rows(self.conn(), operation, &sql, &args).await
    }

    /// Saves changed orders: the last state of each, if nobody saved it since the version the
    /// change was planned on (one statement per order kind). Fails with
    /// [`StoreError::VersionConflict`] when any of them was saved meanwhile.
    pub async fn save_changed_orders(
        &mut self,
        changes: &[&OrderChange],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        // The last change of each order wins; all changes of one order in a plan (or a batch
        // of plans) were planned on the same stored version.
        let mut last: Vec<&OrderChange> = Vec::new();
        for change in changes {
            match last.iter_mut().find(|c| c.order.id() == change.order.id()) {
                Some(slot) => *slot = change,
                None => last.push(change),
            }
        }
        let grid: Vec<(&GridFeeReduction, i64)> = last
            .iter()
            .filter_map(|c| match &c.order {
                ChangedOrder::GridFee(o) => Some((&**o, c.expected_version)),
                ChangedOrder::Meter(_) => None,
            })
            .collect();
        let meters: Vec<(&MeterOrder, i64)> = last
            .iter()
            .filter_map(|c| match &c.order {
                ChangedOrder::Meter(o) => Some((&**o, c.expected_version)),
                ChangedOrder::GridFee(_) => None,
            })
            .collect();
        for grid in grid.chunks(ROWS_PER_STATEMENT) {
            // VALUES columns are named column1, column2, … in both SQLite and PostgreSQL.
            let statement = format!(
                "UPDATE grid_fee_reductions SET status = v.column2, order_document = v.column3, \
                 body = v.column4, version = version + 1, updated_at = v.column6 \
                 FROM (VALUES {}) AS v \
                 WHERE grid_fee_reductions.id = v.column1 AND grid_fee_reductions.version = v.column5",
                value_rows(grid.len(), 6)
            );
            let statement = super::sql::positional(self.backend, statement);
            let mut query = sqlx::query(&statement);
            for (order, expected) in grid {
                query = query
                    .bind(order.id.clone())
                    .bind(serde_text(&order.status))
                    .bind(order.order_document.clone())
                    .bind(body(*order))
                    .bind(*expected)
                    .bind(ms(now));
            }
            let done = query
                .execute(self.conn())
                .await
                .map_err(StoreError::query("saving grid-fee reductions"))?;
            if done.rows_affected() != grid.len() as u64 {
                return Err(conflict("grid_fee_reduction", grid));
            }
        }
        for meters in meters.chunks(ROWS_PER_STATEMENT) {
            let statement = format!(
                "UPDATE meter_orders SET status = v.column2, metering_location = v.column3, \
                 order_document = v.column4, body = v.column5, version = version + 1, \
                 updated_at = v.column7 FROM (VALUES {}) AS v \
                 WHERE meter_orders.id = v.column1 AND meter_orders.version = v.column6",
                value_rows(meters.len(), 7)
            );
            let statement = super::sql::positional(self.backend, statement);
            let mut query = sqlx::query(&statement);
            for (order, expected) in meters {
                query = query
                    .bind(order.id.clone())
                    .bind(serde_text(&order.status))
                    .bind(order.metering_location.as_ref().map(|m| m.to_string()))
                    .bind(order.order_document.clone())
                    .bind(body(*order))
                    .bind(*expected)
                    .bind(ms(now));
            }
            let done = query
                .execute(self.conn())
                .await
                .map_err(StoreError::query("saving meter orders"))?;
            if done.rows_affected() != meters.len() as u64 {
                return Err(conflict("meter_order", meters));
            }
        }
        Ok(())
    }

    /// Records status transitions (one statement per `ROWS_PER_STATEMENT` (500)); returns their
    /// ids.
    pub async fn add_history_rows(
        &mut self,
        entries: &[&HistoryEntry],
    ) -> Result<Vec<String>, StoreError> {
        let mut ids = Vec::with_capacity(entries.len());
        for chunk in entries.chunks(ROWS_PER_STATEMENT) {
            ids.extend(self.add_history_chunk(chunk).await?);
        }
        Ok(ids)
    }

    async fn add_history_chunk(
        &mut self,
        entries: &[&HistoryEntry],
    ) -> Result<Vec<String>, StoreError> {
        if entries.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<String> = entries.iter().map(|e| new_id("hst", e.at)).collect();
        let statement = format!(
            "INSERT INTO status_history (id, order_kind, order_id, from_status, to_status, topic, \
             journal_id, at, detail) VALUES {}",
            value_rows(entries.len(), 9)
        );
        let statement = super::sql::positional(self.backend, statement);
        let mut query = sqlx::query(&statement);
        for (id, entry) in ids.iter().zip(entries) {
            query = query
                .bind(id.clone())
                .bind(entry.order_kind.as_str())
                .bind(entry.order_id.clone())
                .bind(entry.from.clone())
                .bind(entry.to.clone())
                .bind(entry.topic.clone())
                .bind(entry.journal_id.clone())
                .bind(ms(entry.at))
                .bind(entry.detail.as_ref().map(|d| d.to_string()));
        }
        query
            .execute(self.conn())
            .await
            .map_err(StoreError::query("adding status history rows"))?;
        Ok(ids)
    }
}

/// The error of a multi-row save that changed fewer rows than it named: one of the orders was
/// saved by someone else since it was read.
fn conflict<T: HasId>(kind: &'static str, saved: &[(&T, i64)]) -> StoreError {
    StoreError::VersionConflict {
        kind,
        id: saved
            .iter()
            .map(|(o, _)| o.id())
            .collect::<Vec<_>>()
            .join(" or "),
        expected: saved.first().map_or(0, |(_, v)| *v),
    }
}

trait HasId {
    fn id(&self) -> &str;
}

impl HasId for GridFeeReduction {
    fn id(&self) -> &str {
        &self.id
    }
}

impl HasId for MeterOrder {
    fn id(&self) -> &str {
        &self.id
    }
}
