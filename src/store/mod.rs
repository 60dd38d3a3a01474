//! The durable store: orders, their status history, the message journal, the outbox, webhook
//! deliveries, the clearing list and what we sent, in SQLite (embedded default) or PostgreSQL
//! through one `sqlx::AnyPool` and one set of migrations (`migrations/`, applied at connect).
//!
//! What it does not do: decide anything. Business state comes from the pure `orders` layer;
//! the store keeps it, hands out work with leases and commits what one message changes in one
//! transaction ([`StoreTx`]).
//!
//! Work shared by several gateway instances (inbound journal items, outbox items, webhook
//! deliveries) is claimed with a lease: on PostgreSQL with `FOR UPDATE SKIP LOCKED`, so two
//! instances never take the same item; on SQLite the claim is one statement under SQLite's
//! single writer. A lease that ran out (its worker died before committing) makes the item
//! claimable again; finishing an item checks the lease is still the worker's own.
//!
//! Times are passed in by the caller (no clock in here) and kept as unix milliseconds UTC.

mod as4;
mod daemon;
mod error;
mod mail;
mod sql;
mod types;

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{Any, AnyConnection, AnyPool, Executor, Transaction};

pub use as4::{As4Answer, As4Outbound, As4Request, DedupClaim};
pub use error::StoreError;
pub use types::*;

use crate::acks::SentMessage;
use crate::orders::{GridFeeReduction, MeterOrder};
use sql::{get, ms, time};

/// The database the embedded default uses when nothing is configured.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://data/mako-gateway.db";

/// How long SQLite waits for the writer lock before a statement fails: long enough for a
/// burst of inbound work on one file, short enough to surface a stuck writer.
pub const SQLITE_BUSY_TIMEOUT_MS: u32 = 5_000;

/// Connections per pool: the daemon runs a handful of loops and the API; SQLite has one
/// writer anyway.
pub const DEFAULT_MAX_CONNECTIONS: u32 = 8;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Which database is behind the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// SQLite (one file, one writer).
    Sqlite,
    /// PostgreSQL (row locks, several instances).
    Postgres,
}

impl Backend {
    /// The row-lock clause for claiming work: PostgreSQL skips rows another worker holds;
    /// SQLite has no row locks (a claim is one statement under its one writer lock).
    fn skip_locked(self) -> &'static str {
        match self {
            Backend::Postgres => " FOR UPDATE SKIP LOCKED",
            Backend::Sqlite => "",
        }
    }
}

/// The store: a connection pool with the migrations applied.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    /// References reserved in the database and not handed out yet (shared by the clones of
    /// this store, that is by the loops of one instance).
    references: std::sync::Arc<std::sync::Mutex<daemon::ReferenceBlock>>,
}

/// The URL without a password, for messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &url[scheme + 3..at];
            match credentials.find(':') {
                Some(colon) => format!(
                    "{}{}:***{}",
                    &url[..scheme + 3],
                    &credentials[..colon],
                    &url[at..]
                ),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

impl Store {
    /// Opens the database at `url` and applies the migrations:
    /// - `sqlite://path/to/file.db` (relative or `sqlite:///absolute`): the parent directories
    ///   and the file are created; WAL journal, busy timeout, foreign keys, full sync (a
    ///   journaled interchange survives a crash before it is acknowledged);
    /// - `postgres://…` / `postgresql://…`.
    pub async fn connect(url: &str) -> Result<Store, StoreError> {
        Store::connect_with(url, DEFAULT_MAX_CONNECTIONS).await
    }

    /// [`Store::connect`] with a pool size.
    pub async fn connect_with(url: &str, max_connections: u32) -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
        let (backend, connect_url) = if let Some(rest) = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
        {
            let path = rest.split('?').next().unwrap_or_default();
            if path.is_empty() || path == ":memory:" {
                return Err(StoreError::UnsupportedUrl {
                    url: url.to_string(),
                    reason: "the SQLite store needs a file path (an in-memory database would lose everything)",
                });
            }
            if let Some(parent) = Path::new(path)
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
            {
                std::fs::create_dir_all(parent).map_err(|source| StoreError::CreateDirectory {
                    path: parent.to_path_buf(),
                    source,
                })?;
            }
            (Backend::Sqlite, format!("sqlite://{path}?mode=rwc"))
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            (Backend::Postgres, url.to_string())
        } else {
            return Err(StoreError::UnsupportedUrl {
                url: redact(url),
                reason: "use sqlite://PATH or postgres://…",
            });
        };
        let connect_error = |source| StoreError::Connect {
            url: redact(url),
            source,
        };
        let options = AnyConnectOptions::from_str(&connect_url).map_err(connect_error)?;
        let pool = AnyPoolOptions::new()
            .max_connections(max_connections.max(1))
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        conn.execute(
                            format!("PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}").as_str(),
                        )
                        .await?;
                        conn.execute("PRAGMA foreign_keys = ON").await?;
                        conn.execute("PRAGMA synchronous = FULL").await?;
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await
            .map_err(connect_error)?;
        if backend == Backend::Sqlite {
            // Persistent in the file: readers (the API) do not block the writer.
            pool.execute("PRAGMA journal_mode = WAL")
                .await
                .map_err(StoreError::query("switching SQLite to WAL"))?;
        }
        MIGRATOR
            .run(&pool)
            .await
            .map_err(|source| StoreError::Migrate { source })?;
        Ok(Store {
            pool,
            backend,
            references: Default::default(),
        })
    }

    /// Which database this is.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The pool (for tests and health checks).
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Closes the pool, waiting for connections in use to come back.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Checks the database answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.pool
            .execute("SELECT 1")
            .await
            .map(|_| ())
            .map_err(StoreError::query("checking the database"))
    }

    /// Starts a transaction; nothing of it is visible to others until [`StoreTx::commit`]
    /// (dropping it rolls back).
    ///
    /// On SQLite the transaction takes the write lock at once (`BEGIN IMMEDIATE`): a DEFERRED
    /// one that read first cannot become a writer after another connection committed, and
    /// SQLite refuses that at once ("database is locked", SQLITE_BUSY_SNAPSHOT) instead of
    /// waiting for the busy timeout. Our transactions read, then write; with IMMEDIATE they
    /// queue for the lock under the busy timeout instead. Readers outside transactions (the
    /// API's lists and gets) are not blocked (WAL).
    pub async fn begin(&self) -> Result<StoreTx, StoreError> {
        let tx = match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await,
            Backend::Postgres => self.pool.begin().await,
        }
        .map_err(StoreError::query("starting a transaction"))?;
        Ok(StoreTx {
            tx,
            backend: self.backend,
        })
    }

    async fn conn(&self) -> Result<sqlx::pool::PoolConnection<Any>, StoreError> {
        self.pool
            .acquire()
            .await
            .map_err(StoreError::query("taking a connection from the pool"))
    }

    // ---- journal -------------------------------------------------------------------------

    /// Journals a received interchange (committed on return). The same interchange again
    /// (same partner and UNB reference) is not stored twice: [`Inserted::Duplicate`] names the
    /// first, and only the first is processed.
    pub async fn insert_inbound(&self, record: &InboundRecord) -> Result<Inserted, StoreError> {
        sql::insert_inbound(&mut *self.conn().await?, record).await
    }

    /// Claims the oldest inbound journal item that is `received`, or `processing` with an
    /// expired lease, for `worker` until `now + lease`.
    pub async fn claim_inbound(
        &self,
        worker: &str,
        now: DateTime<Utc>,
        lease: Duration,
    ) -> Result<Option<JournalItem>, StoreError> {
        let row = self
            .claim(
                "claiming an inbound journal item",
                "journal",
                "processing",
                [
                    "direction = 'in' AND state = 'received'",
                    "direction = 'in' AND state = 'processing' AND locked_until < $3",
                ],
                sql::JOURNAL_COLUMNS,
                worker,
                now,
                lease,
            )
            .await?;
        row.as_ref().map(sql::journal_from_row).transpose()
    }

    /// Hands a claimed inbound item back unprocessed (shutdown): claimable again at once.
    pub async fn release_inbound(&self, journal_id: &str, worker: &str) -> Result<(), StoreError> {
        let done = sqlx::query(
            "UPDATE journal SET state = 'received', locked_by = NULL, locked_until = NULL \
             WHERE id = $1 AND locked_by = $2 AND state = 'processing'",
        )
        .bind(journal_id)
        .bind(worker)
        .execute(&self.pool)
        .await
        .map_err(StoreError::query("releasing an inbound journal item"))?;
        lease_kept(done.rows_affected(), "journal item", journal_id, worker)
    }

    /// One journal item.
    pub async fn journal_item(&self, id: &str) -> Result<Option<JournalItem>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {} FROM journal WHERE id = $1",
            sql::JOURNAL_COLUMNS
        ))
        .bind(id)
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::query("reading a journal item"))?;
        rows.first().map(sql::journal_from_row).transpose()
    }

    /// The claim statement shared by the three work queues. `ready` names the two ways an
    /// item is ready: new work, and work whose lease ran out.
    ///
    /// Each way is its own `ORDER BY id LIMIT 1` (one index probe of the work index) and the
    /// older of the two is taken. One condition `new OR expired` would make both databases
    /// collect and sort every waiting item on every claim: with a backlog of 10,000 inbound
    /// items that made claiming the whole backlog quadratic (the inbound benchmark fell from
    /// about 500 to 60 items/s). PostgreSQL allows row locks in CTEs but not in the branches
    /// of a UNION, hence the two CTEs; the row of the branch not taken stays locked only until
    /// this one-statement transaction ends.
    #[allow(clippy::too_many_arguments)]
    async fn claim(
        &self,
        operation: &'static str,
        table: &'static str,
        busy_state: &'static str,
        ready: [&'static str; 2],
        columns: &'static str,
        worker: &str,
        now: DateTime<Utc>,
        lease: Duration,
    ) -> Result<Option<sqlx::any::AnyRow>, StoreError> {
        let until = now + chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::MAX);
        let lock = self.backend.skip_locked();
        let [new, expired] = ready;
        let statement = format!(
            "WITH new AS (SELECT id FROM {table} WHERE {new} ORDER BY id LIMIT 1{lock}), \
             expired AS (SELECT id FROM {table} WHERE {expired} ORDER BY id LIMIT 1{lock}) \
             UPDATE {table} SET state = '{busy_state}', locked_by = $1, locked_until = $2, \
             attempts = attempts + 1 \
             WHERE id = (SELECT MIN(id) FROM (SELECT id FROM new UNION ALL SELECT id FROM expired) AS ready) \
             RETURNING {columns}"
        );
        sqlx::query(&statement)
            .bind(worker)
            .bind(ms(until))
            .bind(ms(now))
            .fetch_optional(&self.pool)
            .await
            .map_err(StoreError::query(operation))
    }

    // ---- outbox ---------------------------------------------------------------------------

    /// Claims the oldest outbox item that is due (`pending` with `next_attempt_at <= now`, or
    /// `in_flight` with an expired lease).
    pub async fn claim_outbox(
        &self,
        worker: &str,
        now: DateTime<Utc>,
        lease: Duration,
    ) -> Result<Option<OutboxItem>, StoreError> {
        let row = self
            .claim(
                "claiming an outbox item",
                "outbox",
                "in_flight",
                [
                    "state = 'pending' AND next_attempt_at <= $3",
                    "state = 'in_flight' AND locked_until < $3",
                ],
                sql::OUTBOX_COLUMNS,
                worker,
                now,
                lease,
            )
            .await?;
        row.as_ref().map(sql::outbox_from_row).transpose()
    }

    /// Marks a claimed outbox item sent (alone; inside a transaction use
    /// [`StoreTx::mark_outbox_sent`]).
    pub async fn mark_outbox_sent(
        &self,
        id: &str,
        worker: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        tx.mark_outbox_sent(id, worker, now).await?;
        tx.commit().await
    }

    /// Puts a claimed outbox item back for another attempt at `next_attempt_at` (a transient
    /// error).
    pub async fn retry_outbox(
        &self,
        id: &str,
        worker: &str,
        next_attempt_at: DateTime<Utc>,
        error: &str,
    ) -> Result<(), StoreError> {
        self.finish_work(
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
    pub async fn park_outbox(&self, id: &str, worker: &str, error: &str) -> Result<(), StoreError> {
        self.finish_work(
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
        &self,
        state: Option<OutboxState>,
        page: &PageRequest,
    ) -> Result<Page<OutboxItem>, StoreError> {
        let (rows, next_cursor) = sql::page_rows(
            &mut *self.conn().await?,
            "listing the outbox",
            "outbox",
            sql::OUTBOX_COLUMNS,
            "1 = 1",
            &[("state =", state.map(OutboxState::as_str))],
            page,
        )
        .await?;
        Ok(Page {
            items: rows
                .iter()
                .map(sql::outbox_from_row)
                .collect::<Result<_, _>>()?,
            next_cursor,
        })
    }

    /// The outbox items of an order that are not sent yet.
    pub async fn open_outbox_for_order(
        &self,
        order_id: &str,
    ) -> Result<Vec<OutboxItem>, StoreError> {
        sql::open_outbox_for_order(&mut *self.conn().await?, order_id).await
    }

    /// Ends a claimed item of `table`: `set` may use `$3` (a time) and `$4` (a text).
    #[allow(clippy::too_many_arguments)]
    async fn finish_work(
        &self,
        table: &'static str,
        what: &'static str,
        busy_state: &'static str,
        set: &'static str,
        id: &str,
        worker: &str,
        at: Option<i64>,
        text: Option<&str>,
    ) -> Result<(), StoreError> {
        let statement = format!(
            "UPDATE {table} SET {set}, locked_by = NULL, locked_until = NULL \
             WHERE id = $1 AND locked_by = $2 AND state = '{busy_state}'"
        );
        let done = sqlx::query(&statement)
            .bind(id)
            .bind(worker)
            .bind(at.unwrap_or_default())
            .bind(text.unwrap_or_default().to_string())
            .execute(&self.pool)
            .await
            .map_err(StoreError::query("finishing claimed work"))?;
        lease_kept(done.rows_affected(), what, id, worker)
    }

    // ---- webhooks --------------------------------------------------------------------------

    /// Claims the oldest due webhook delivery.
    pub async fn claim_webhook(
        &self,
        worker: &str,
        now: DateTime<Utc>,
        lease: Duration,
    ) -> Result<Option<WebhookDelivery>, StoreError> {
        let row = self
            .claim(
                "claiming a webhook delivery",
                "webhook_deliveries",
                "in_flight",
                [
                    "state = 'pending' AND next_attempt_at <= $3",
                    "state = 'in_flight' AND locked_until < $3",
                ],
                WEBHOOK_COLUMNS,
                worker,
                now,
                lease,
            )
            .await?;
        row.as_ref().map(webhook_from_row).transpose()
    }

    /// The receiver took the event.
    pub async fn mark_webhook_delivered(
        &self,
        id: &str,
        worker: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.finish_work(
            "webhook_deliveries",
            "webhook delivery",
            "in_flight",
            "state = 'delivered', delivered_at = $3, last_error = NULLIF($4, '')",
            id,
            worker,
            Some(ms(now)),
            None,
        )
        .await
    }

    /// Another attempt at `next_attempt_at`.
    pub async fn retry_webhook(
        &self,
        id: &str,
        worker: &str,
        next_attempt_at: DateTime<Utc>,
        error: &str,
    ) -> Result<(), StoreError> {
        self.finish_work(
            "webhook_deliveries",
            "webhook delivery",
            "in_flight",
            "state = 'pending', next_attempt_at = $3, last_error = $4",
            id,
            worker,
            Some(ms(next_attempt_at)),
            Some(error),
        )
        .await
    }

    /// Gives up on a delivery (kept, for an operator).
    pub async fn park_webhook(
        &self,
        id: &str,
        worker: &str,
        error: &str,
    ) -> Result<(), StoreError> {
        self.finish_work(
            "webhook_deliveries",
            "webhook delivery",
            "in_flight",
            "state = 'parked', last_error = $4",
            id,
            worker,
            None,
            Some(error),
        )
        .await
    }

    /// Webhook deliveries, optionally in one state, in id order.
    pub async fn list_webhooks(
        &self,
        state: Option<WebhookState>,
        page: &PageRequest,
    ) -> Result<Page<WebhookDelivery>, StoreError> {
        let (rows, next_cursor) = sql::page_rows(
            &mut *self.conn().await?,
            "listing webhook deliveries",
            "webhook_deliveries",
            WEBHOOK_COLUMNS,
            "1 = 1",
            &[("state =", state.map(WebhookState::as_str))],
            page,
        )
        .await?;
        Ok(Page {
            items: rows
                .iter()
                .map(webhook_from_row)
                .collect::<Result<_, _>>()?,
            next_cursor,
        })
    }

    // ---- orders ----------------------------------------------------------------------------

    /// One grid-fee reduction.
    pub async fn grid_fee(&self, id: &str) -> Result<Option<GridFeeRecord>, StoreError> {
        sql::grid_fee(&mut *self.conn().await?, id).await
    }

    /// One meter order.
    pub async fn meter_order(&self, id: &str) -> Result<Option<MeterOrderRecord>, StoreError> {
        sql::meter_order(&mut *self.conn().await?, id).await
    }

    /// Grid-fee reductions with the filters, in creation order.
    pub async fn list_grid_fees(
        &self,
        filter: &OrderFilter,
        page: &PageRequest,
    ) -> Result<Page<GridFeeRecord>, StoreError> {
        let (rows, next_cursor) = sql::page_rows(
            &mut *self.conn().await?,
            "listing grid-fee reductions",
            "grid_fee_reductions",
            sql::GRID_FEE_COLUMNS,
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
                .map(sql::grid_fee_from_row)
                .collect::<Result<_, _>>()?,
            next_cursor,
        })
    }

    /// Meter orders with the filters, in creation order.
    pub async fn list_meter_orders(
        &self,
        filter: &OrderFilter,
        page: &PageRequest,
    ) -> Result<Page<MeterOrderRecord>, StoreError> {
        let (rows, next_cursor) = sql::page_rows(
            &mut *self.conn().await?,
            "listing meter orders",
            "meter_orders",
            sql::METER_COLUMNS,
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
                .map(sql::meter_from_row)
                .collect::<Result<_, _>>()?,
            next_cursor,
        })
    }

    /// Every status transition of an order, oldest first.
    pub async fn history(&self, order_id: &str) -> Result<Vec<HistoryEntry>, StoreError> {
        sql::history(&mut *self.conn().await?, order_id).await
    }

    /// When the subscription was confirmed, if it was.
    pub async fn subscription_confirmed(
        &self,
        subscription: &str,
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        sql::subscription_confirmed(&mut *self.conn().await?, subscription).await
    }

    // ---- clearing, sent --------------------------------------------------------------------

    /// Clearing items (open ones only unless `include_resolved`), in id order, with the
    /// journal item's partner and reference.
    pub async fn list_clearing(
        &self,
        include_resolved: bool,
        page: &PageRequest,
    ) -> Result<Page<ClearingItem>, StoreError> {
        let (rows, next_cursor) = sql::page_rows(
            &mut *self.conn().await?,
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
    pub async fn resolve_clearing(&self, id: &str, now: DateTime<Utc>) -> Result<(), StoreError> {
        let done = sqlx::query(
            "UPDATE clearing SET resolved_at = $1 WHERE id = $2 AND resolved_at IS NULL",
        )
        .bind(ms(now))
        .bind(id)
        .execute(&self.pool)
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

    /// The messages of our interchange `interchange_ref` to `partner`.
    pub async fn sent_by_interchange(
        &self,
        partner: &str,
        interchange_ref: &str,
    ) -> Result<Vec<SentMessage>, StoreError> {
        sql::sent_by_interchange(&mut *self.conn().await?, partner, interchange_ref).await
    }

    /// Our message to `partner` with this BGM document number.
    pub async fn sent_by_document(
        &self,
        partner: &str,
        document_number: &str,
    ) -> Result<Option<SentMessage>, StoreError> {
        sql::sent_by_document(&mut *self.conn().await?, partner, document_number).await
    }

    // ---- metrics ---------------------------------------------------------------------------

    /// Row counts by status and state, for `/metrics`.
    pub async fn counts(&self) -> Result<Counts, StoreError> {
        let mut conn = self.conn().await?;
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

fn lease_kept(rows: u64, what: &'static str, id: &str, worker: &str) -> Result<(), StoreError> {
    if rows == 1 {
        Ok(())
    } else {
        Err(StoreError::LeaseLost {
            what,
            id: id.to_string(),
            worker: worker.to_string(),
        })
    }
}

const WEBHOOK_COLUMNS: &str = "id, topic, payload, state, attempts, last_error, created_at";

fn webhook_from_row(row: &sqlx::any::AnyRow) -> Result<WebhookDelivery, StoreError> {
    let id: String = get(row, "id")?;
    let state: String = get(row, "state")?;
    Ok(WebhookDelivery {
        topic: get(row, "topic")?,
        payload: get(row, "payload")?,
        state: WebhookState::parse(&state).ok_or_else(|| StoreError::Corrupt {
            what: "webhook delivery",
            id: id.clone(),
            column: "state",
            detail: state.clone(),
        })?,
        attempts: get(row, "attempts")?,
        last_error: get(row, "last_error")?,
        created_at: time(get(row, "created_at")?),
        id,
    })
}

/// One transaction: everything one inbound message (or one API request, or one sent order)
/// changes commits together or not at all. Dropping it without [`StoreTx::commit`] rolls back.
#[derive(Debug)]
pub struct StoreTx {
    tx: Transaction<'static, Any>,
    backend: Backend,
}

impl StoreTx {
    fn conn(&mut self) -> &mut AnyConnection {
        &mut self.tx
    }

    /// Commits.
    pub async fn commit(self) -> Result<(), StoreError> {
        self.tx
            .commit()
            .await
            .map_err(StoreError::query("committing a transaction"))
    }

    /// Rolls back (the same as dropping, but waits for it).
    pub async fn rollback(self) -> Result<(), StoreError> {
        self.tx
            .rollback()
            .await
            .map_err(StoreError::query("rolling back a transaction"))
    }

    /// Serialises requests about one subscription until this transaction ends, so that the
    /// product rules see every order of it (PostgreSQL: a transaction-scoped advisory lock;
    /// SQLite: taking the single writer lock now). Call it first.
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

    /// When the subscription was confirmed, if it was.
    pub async fn subscription_confirmed(
        &mut self,
        subscription: &str,
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        sql::subscription_confirmed(self.conn(), subscription).await
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

    /// Stores a new grid-fee reduction (version 1).
    pub async fn insert_grid_fee(
        &mut self,
        order: &GridFeeReduction,
        effective_date: Option<NaiveDate>,
        now: DateTime<Utc>,
    ) -> Result<GridFeeRecord, StoreError> {
        sql::insert_grid_fee(self.conn(), order, effective_date, now).await
    }

    /// Stores a new meter order (version 1); a second one for the subscription is
    /// [`StoreError::DuplicateMeterOrder`].
    pub async fn insert_meter_order(
        &mut self,
        order: &MeterOrder,
        wanted_date: Option<NaiveDate>,
        now: DateTime<Utc>,
    ) -> Result<MeterOrderRecord, StoreError> {
        sql::insert_meter_order(self.conn(), order, wanted_date, now).await
    }

    /// One grid-fee reduction.
    pub async fn grid_fee(&mut self, id: &str) -> Result<Option<GridFeeRecord>, StoreError> {
        sql::grid_fee(self.conn(), id).await
    }

    /// One meter order.
    pub async fn meter_order(&mut self, id: &str) -> Result<Option<MeterOrderRecord>, StoreError> {
        sql::meter_order(self.conn(), id).await
    }

    /// Every grid-fee reduction of a subscription (for the product rules).
    pub async fn grid_fees_of_subscription(
        &mut self,
        subscription: &str,
    ) -> Result<Vec<GridFeeRecord>, StoreError> {
        sql::grid_fees_where(self.conn(), "subscription", subscription).await
    }

    /// Every meter order of a subscription (at most one).
    pub async fn meter_orders_of_subscription(
        &mut self,
        subscription: &str,
    ) -> Result<Vec<MeterOrderRecord>, StoreError> {
        sql::meters_where(self.conn(), "subscription", subscription).await
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
            out.extend(sql::grid_fees_where(self.conn(), "market_location", m).await?);
        }
        if let Some(d) = order_document {
            for r in sql::grid_fees_where(self.conn(), "order_document", d).await? {
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
            out.extend(sql::meters_where(self.conn(), "metering_location", m).await?);
        }
        if let Some(d) = order_document {
            for r in sql::meters_where(self.conn(), "order_document", d).await? {
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

    /// Saves a changed reduction if nobody saved it since `expected_version` was read; returns
    /// the new version, or [`StoreError::VersionConflict`].
    pub async fn save_grid_fee(
        &mut self,
        order: &GridFeeReduction,
        expected_version: i64,
        now: DateTime<Utc>,
    ) -> Result<i64, StoreError> {
        sql::save_grid_fee(self.conn(), order, expected_version, now).await
    }

    /// Saves a changed meter order (optimistic, like [`StoreTx::save_grid_fee`]).
    pub async fn save_meter_order(
        &mut self,
        order: &MeterOrder,
        expected_version: i64,
        now: DateTime<Utc>,
    ) -> Result<i64, StoreError> {
        sql::save_meter_order(self.conn(), order, expected_version, now).await
    }

    /// Records a status transition.
    pub async fn add_history(&mut self, entry: &HistoryEntry) -> Result<String, StoreError> {
        sql::add_history(self.conn(), entry).await
    }

    /// Queues a webhook event.
    pub async fn add_webhook(
        &mut self,
        event: &WebhookEvent,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        sql::add_webhook(self.conn(), event, now).await
    }

    /// Queues work to send (due at `now`); returns the outbox id.
    pub async fn add_outbox(
        &mut self,
        item: &NewOutboxItem,
        now: DateTime<Utc>,
    ) -> Result<String, StoreError> {
        sql::add_outbox(self.conn(), item, now).await
    }

    /// The outbox items of an order that are not sent yet.
    pub async fn open_outbox_for_order(
        &mut self,
        order_id: &str,
    ) -> Result<Vec<OutboxItem>, StoreError> {
        sql::open_outbox_for_order(self.conn(), order_id).await
    }

    /// Deletes the order's outbox items that no worker holds yet (`pending`); returns how
    /// many. An item already in flight is left to its worker.
    pub async fn drop_pending_outbox(&mut self, order_id: &str) -> Result<u64, StoreError> {
        sqlx::query("DELETE FROM outbox WHERE order_id = $1 AND state = 'pending'")
            .bind(order_id)
            .execute(self.conn())
            .await
            .map(|d| d.rows_affected())
            .map_err(StoreError::query("dropping pending outbox items"))
    }

    /// Marks a claimed outbox item sent, as part of this transaction.
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

    /// Keeps an unmatched inbound message for clearing.
    pub async fn add_clearing(
        &mut self,
        journal_id: &str,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<String, StoreError> {
        sql::add_clearing(self.conn(), journal_id, reason, now).await
    }

    /// Records a message we sent.
    pub async fn record_sent(
        &mut self,
        sent: &SentRecord,
        now: DateTime<Utc>,
    ) -> Result<String, StoreError> {
        sql::record_sent(self.conn(), sent, now).await
    }

    /// The messages of our interchange `interchange_ref` to `partner`.
    pub async fn sent_by_interchange(
        &mut self,
        partner: &str,
        interchange_ref: &str,
    ) -> Result<Vec<SentMessage>, StoreError> {
        sql::sent_by_interchange(self.conn(), partner, interchange_ref).await
    }

    /// Our message to `partner` with this document number.
    pub async fn sent_by_document(
        &mut self,
        partner: &str,
        document_number: &str,
    ) -> Result<Option<SentMessage>, StoreError> {
        sql::sent_by_document(self.conn(), partner, document_number).await
    }

    /// What we sent to `partner` under these interchange references and document numbers, as
    /// an [`crate::acks::SentLookup`] for `acks::match_acknowledgement`.
    pub async fn sent_snapshot(
        &mut self,
        partner: &str,
        interchange_refs: &[&str],
        document_numbers: &[&str],
    ) -> Result<SentSnapshot, StoreError> {
        let mut messages: Vec<SentMessage> = Vec::new();
        for r in interchange_refs {
            for m in self.sent_by_interchange(partner, r).await? {
                if !messages.contains(&m) {
                    messages.push(m);
                }
            }
        }
        for d in document_numbers {
            if let Some(m) = self.sent_by_document(partner, d).await? {
                if !messages.contains(&m) {
                    messages.push(m);
                }
            }
        }
        Ok(SentSnapshot {
            partner: partner.to_string(),
            messages,
        })
    }

    /// Journals an interchange we sent; returns its journal id.
    pub async fn insert_outbound_journal(
        &mut self,
        record: &OutboundRecord,
    ) -> Result<String, StoreError> {
        sql::insert_outbound_journal(self.conn(), record).await
    }

    /// Journals a received interchange inside this transaction (replay, tests); the daemon's
    /// transports use [`Store::insert_inbound`], committed at once.
    pub async fn insert_inbound(&mut self, record: &InboundRecord) -> Result<Inserted, StoreError> {
        sql::insert_inbound(self.conn(), record).await
    }

    /// Ends the processing of a claimed inbound item with its outcome (`processed` or
    /// `failed`), as part of this transaction; fails with [`StoreError::LeaseLost`] when the
    /// worker's lease is gone.
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_in_messages_hide_the_password() {
        assert_eq!(
            redact("postgres://gateway:s3cret@db:5432/mako"),
            "postgres://gateway:***@db:5432/mako"
        );
        assert_eq!(
            redact("postgres://gateway@db/mako"),
            "postgres://gateway@db/mako"
        );
        assert_eq!(redact("sqlite://data/x.db"), "sqlite://data/x.db");
    }

    #[test]
    fn lost_races_are_transient_and_refusals_are_not() {
        let conflict = StoreError::VersionConflict {
            kind: "meter_order",
            id: "mor_1".into(),
            expected: 3,
        };
        assert!(conflict.is_transient());
        assert!(!StoreError::DuplicateMeterOrder {
            subscription: "s".into()
        }
        .is_transient());
        assert!(StoreError::Query {
            operation: "x",
            source: sqlx::Error::PoolTimedOut
        }
        .is_transient());
    }
}
