//! The durable store: orders, their status history, the message journal, the outbox, webhook
//! deliveries, the clearing list, what we sent, and the e-mail and AS4 journals, in SQLite
//! (embedded default) or PostgreSQL through one `sqlx::AnyPool` and one set of migrations
//! (`migrations/`, applied at connect).
//!
//! What it does not do: decide anything. Business state comes from the pure layers; the store
//! keeps it, hands out work with leases and commits what one message changes in one
//! transaction.
//!
//! One method set: every operation is a method of [`Session`], which runs on a pooled
//! connection ([`Store::conn`], each statement commits alone) or inside a transaction
//! ([`Store::begin`], [`StoreTx::commit`]). The methods are grouped by topic, one file each:
//! `journal`, `outbox`, `orders` (with the status history and subscriptions), `webhooks`,
//! `clearing`, `sent`, `passthrough` (what the supplier core hands over to be sent as it is),
//! `as4`, `mail`, `references`, `metrics`.
//!
//! Work shared by several gateway instances (inbound journal items, outbox items, webhook
//! deliveries) is claimed with a lease: on PostgreSQL with `FOR UPDATE SKIP LOCKED`, so two
//! instances never take the same item; on SQLite the claim is one statement under SQLite's
//! single writer. A lease that ran out (its worker died before committing) makes the item
//! claimable again; finishing an item checks the lease is still the worker's own.
//!
//! Times are passed in by the caller (no clock in here) and kept as unix milliseconds UTC.

mod as4;
mod audit;
mod clearing;
mod deadlines;
mod error;
mod journal;
mod mail;
mod messages;
mod metrics;
mod orders;
mod outbox;
mod passthrough;
mod plans;
mod references;
mod sent;
mod sql;
mod types;
mod webhooks;

use std::ops::DerefMut;
use std::path::Path;
use std::str::FromStr;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyConnection, AnyPool, Executor};

pub use as4::{
    Arrived, As4Answer, As4Arrival, As4IncomingRequest, As4Outbound, As4Request, As4RequestRaw,
    DedupClaim,
};
pub use audit::{AuditEntry, ConsoleCounts, NewAudit, ParkedItem};
pub use deadlines::{overdue_topic, StoredDeadline};
pub use error::StoreError;
pub use journal::RAW_PART_BYTES;
pub use messages::{MessageFilter, StoredMessage};
pub use outbox::names_value;
pub use passthrough::{PassThroughFilter, PassThroughOutbox, PassThroughRecord, OVERDUE};
pub use types::*;

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

    /// A list condition: the JSON list of strings in `column` (as `sql::json_list` writes it)
    /// has an element equal to the value bound at `$?`. Element by element, so `5521` does
    /// not match `["55218"]`, and the value is a parameter, never part of the SQL.
    fn json_list_has(self, column: &str) -> String {
        match self {
            Backend::Sqlite => {
                format!("EXISTS (SELECT 1 FROM json_each({column}) WHERE json_each.value = $?)")
            }
            Backend::Postgres => {
                format!("CAST({column} AS jsonb) @> jsonb_build_array(CAST($? AS TEXT))")
            }
        }
    }
}

/// Creates `dir` and its missing parents with mode 0700 on Unix (whatever the umask); an
/// existing directory is left as the operator made it.
pub fn private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// Creates `file` empty with mode 0600 on Unix when it does not exist yet; an existing file is
/// left untouched.
fn private_file(file: &Path) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(file) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// The store: a connection pool with the migrations applied.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    /// References reserved in the database and not handed out yet (shared by the clones of
    /// this store, that is by the loops of one instance).
    references: std::sync::Arc<std::sync::Mutex<references::ReferenceBlock>>,
    /// SQLite: the turn to write, taken by [`Store::begin`] before `BEGIN IMMEDIATE` and held
    /// until the transaction ends (shared by the clones of this store). SQLite has one writer;
    /// waiting for it in SQLite's busy handler means sleeping and polling (1 ms growing to
    /// 100 ms), so that under load the lock stood free while every waiter slept; queued here,
    /// the next transaction starts the moment the last one ends. Other processes on the same
    /// file still meet at SQLite's lock, under the busy timeout. `None` on PostgreSQL.
    writer: Option<std::sync::Arc<tokio::sync::Mutex<()>>>,
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

/// How long [`Store::ping`] waits for the database (a health check answers within it).
pub const PING_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

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
                private_dir(parent).map_err(|source| StoreError::CreateDirectory {
                    path: parent.to_path_buf(),
                    source,
                })?;
            }
            // The file holds every raw interchange: created readable by us alone (SQLite
            // gives its -wal and -shm files the same permissions), whatever the umask.
            private_file(Path::new(path)).map_err(|source| StoreError::CreateDirectory {
                path: Path::new(path).to_path_buf(),
                source,
            })?;
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
        let store = Store {
            pool,
            backend,
            references: Default::default(),
            writer: (backend == Backend::Sqlite).then(Default::default),
        };
        // Outbox items queued before their references were recorded with them.
        store.conn().await?.index_unindexed_outbox().await?;
        Ok(store)
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

    /// Checks the database answers, within [`PING_TIMEOUT`]: with the server gone, taking a
    /// connection from the pool waits for a new one up to the pool's acquire timeout (30 s),
    /// longer than a health check may take.
    pub async fn ping(&self) -> Result<(), StoreError> {
        match tokio::time::timeout(PING_TIMEOUT, self.pool.execute("SELECT 1")).await {
            Ok(done) => done
                .map(|_| ())
                .map_err(StoreError::query("checking the database")),
            Err(_) => Err(StoreError::Query {
                operation: "checking the database",
                source: sqlx::Error::PoolTimedOut,
            }),
        }
    }

    /// A pooled connection: every statement commits on its own.
    pub async fn conn(&self) -> Result<StoreConn, StoreError> {
        let conn = self
            .pool
            .acquire()
            .await
            .map_err(StoreError::query("taking a connection from the pool"))?;
        Ok(Session {
            conn,
            backend: self.backend,
        })
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
    ///
    /// The transaction is begun, committed and rolled back with plain statements on a pooled
    /// connection ([`TxConn`]), not with sqlx's transaction type: when a COMMIT fails because
    /// the database ended the transaction itself (SQLite rolls back on its own when the disk
    /// is full, `SQLITE_FULL`), sqlx's ROLLBACK on drop fails too and its SQLite driver keeps
    /// counting the transaction as open; the connection went back into the pool that way and
    /// every later transaction on it failed ("attempted to call begin_with at non-zero
    /// transaction depth", taken for a permanent error: outbox items were parked). A
    /// connection whose transaction state is not known now is closed, never reused.
    pub async fn begin(&self) -> Result<StoreTx, StoreError> {
        // The turn first, then the connection: a connection is never held while waiting.
        let writer = match &self.writer {
            Some(turn) => Some(
                tokio::time::timeout(
                    std::time::Duration::from_millis(u64::from(SQLITE_BUSY_TIMEOUT_MS)),
                    turn.clone().lock_owned(),
                )
                .await
                .map_err(|_| StoreError::Query {
                    operation: "starting a transaction",
                    source: sqlx::Error::Protocol(format!(
                        "another transaction of this gateway held SQLite's write lock for \
                         more than the busy timeout ({SQLITE_BUSY_TIMEOUT_MS} ms)"
                    )),
                })?,
            ),
            None => None,
        };
        let mut conn = self
            .pool
            .acquire()
            .await
            .map_err(StoreError::query("starting a transaction"))?;
        let statement = match self.backend {
            Backend::Sqlite => "BEGIN IMMEDIATE",
            Backend::Postgres => "BEGIN",
        };
        if let Err(e) = conn.execute(statement).await {
            // Begun or not: not known, so not reused.
            conn.close_on_drop();
            return Err(StoreError::query("starting a transaction")(e));
        }
        Ok(Session {
            conn: TxConn {
                conn: Some(conn),
                writer,
            },
            backend: self.backend,
        })
    }
}

/// The pooled connection of a [`StoreTx`], inside its transaction. It goes back to the pool
/// only in a known state: after a COMMIT or ROLLBACK that succeeded. Dropped while the
/// transaction is open (an error on the way, a task aborted at shutdown), it is rolled back in
/// a task of its own, and closed if that fails too (the database rolls back an open
/// transaction of a closed connection).
#[derive(Debug)]
pub struct TxConn {
    conn: Option<PoolConnection<Any>>,
    /// SQLite: this store's turn to write, until the transaction has ended.
    writer: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl std::ops::Deref for TxConn {
    type Target = AnyConnection;

    fn deref(&self) -> &AnyConnection {
        self.conn
            .as_deref()
            .expect("a transaction's connection until it ends")
    }
}

impl DerefMut for TxConn {
    fn deref_mut(&mut self) -> &mut AnyConnection {
        self.conn
            .as_deref_mut()
            .expect("a transaction's connection until it ends")
    }
}

impl Drop for TxConn {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            let unsettled = Unsettled {
                conn: Some(conn),
                _turn: self.writer.take(),
            };
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(unsettled.roll_back());
            }
            // Without a runtime `unsettled` is dropped here: closed.
        }
    }
}

/// A connection in a transaction whose end is not known yet: closed when dropped, unless
/// [`Unsettled::roll_back`] brought it to a known state first; with the turn to write its
/// transaction holds (given back once the transaction has ended).
struct Unsettled {
    conn: Option<PoolConnection<Any>>,
    /// Held, never read: dropped with the value.
    _turn: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl Unsettled {
    /// ROLLBACK: back to the pool when it succeeded, else closed.
    async fn roll_back(mut self) -> Result<(), sqlx::Error> {
        let Some(conn) = self.conn.as_mut() else {
            return Ok(());
        };
        conn.execute("ROLLBACK").await?;
        drop(self.conn.take());
        Ok(())
    }
}

impl Drop for Unsettled {
    fn drop(&mut self) {
        if let Some(mut conn) = self.conn.take() {
            conn.close_on_drop();
        }
    }
}

/// What a [`Session`] runs its statements on: a pooled connection or a transaction (both
/// dereference to the driver's connection).
pub trait Connection: DerefMut<Target = AnyConnection> + Send {}

impl<C: DerefMut<Target = AnyConnection> + Send> Connection for C {}

/// The store's operations, on a pooled connection ([`StoreConn`]) or inside a transaction
/// ([`StoreTx`]): one method set for both.
#[derive(Debug)]
pub struct Session<C> {
    conn: C,
    backend: Backend,
}

/// A transaction: everything one inbound message (or one API request, or one sent order)
/// changes commits together or not at all. Dropping it without [`StoreTx::commit`] rolls back.
pub type StoreTx = Session<TxConn>;

/// A pooled connection: each statement commits on its own.
pub type StoreConn = Session<PoolConnection<Any>>;

impl<C: Connection> Session<C> {
    fn conn(&mut self) -> &mut AnyConnection {
        &mut self.conn
    }

    /// Which database this is.
    pub fn backend(&self) -> Backend {
        self.backend
    }
}

impl StoreTx {
    /// Commits. When the COMMIT fails, the transaction is rolled back (if the database has
    /// not ended it already) and the connection closed unless that succeeded.
    pub async fn commit(mut self) -> Result<(), StoreError> {
        let Some(mut conn) = self.conn.conn.take() else {
            return Ok(());
        };
        match conn.execute("COMMIT").await {
            Ok(_) => Ok(()),
            Err(e) => {
                let _ = Unsettled {
                    conn: Some(conn),
                    _turn: None,
                }
                .roll_back()
                .await;
                Err(StoreError::query("committing a transaction")(e))
            }
        }
    }

    /// Rolls back (the same as dropping, but waits for it).
    pub async fn rollback(mut self) -> Result<(), StoreError> {
        let Some(conn) = self.conn.conn.take() else {
            return Ok(());
        };
        Unsettled {
            conn: Some(conn),
            _turn: None,
        }
        .roll_back()
        .await
        .map_err(StoreError::query("rolling back a transaction"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SQLite ends a transaction on its own when the disk is full at COMMIT (found by the
    /// fault campaign): the COMMIT fails, and so does the ROLLBACK after it. Here the
    /// database's own rollback is a ROLLBACK statement inside the transaction.
    async fn ended_by_the_database(store: &Store) -> StoreTx {
        let mut tx = store.begin().await.unwrap();
        tx.conn().execute("ROLLBACK").await.unwrap();
        tx
    }

    #[tokio::test]
    async fn regression_a_full_database_is_a_transient_error() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/gateway.db", dir.path().display());
        let store = Store::connect_with(&url, 1).await.unwrap();
        // The file may not grow (a full disk, as the fault campaign made one with a tmpfs).
        let pages: i64 = sqlx::query_scalar("PRAGMA page_count")
            .fetch_one(store.pool())
            .await
            .unwrap();
        store
            .pool()
            .execute(format!("PRAGMA max_page_count = {pages}").as_str())
            .await
            .unwrap();
        let record = InboundRecord {
            partner: "9900000000011".into(),
            transport: Transport::File,
            interchange_ref: Some("FULL1".into()),
            message_refs: vec!["1".into()],
            pids: vec!["19133".into()],
            message_types: vec!["ORDRSP".into()],
            document_numbers: Vec::new(),
            raw: vec![b'x'; 1 << 20],
            received_at: crate::clock::Clock::system().now(),
        };
        let full = store
            .conn()
            .await
            .unwrap()
            .insert_inbound(&record)
            .await
            .expect_err("no room for a megabyte");
        assert!(full.to_string().contains("full"), "{full}");
        assert!(full.is_transient(), "a full disk passes: {full}");
        store.close().await;
    }

    /// SQLite transactions of one store queue for its turn to write: the second begins only
    /// when the first has ended (committed, rolled back or dropped), at once rather than
    /// after SQLite's busy handler slept; and a dropped transaction gives the turn back.
    #[tokio::test]
    async fn sqlite_transactions_take_turns_and_a_dropped_one_gives_its_turn_back() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/gateway.db", dir.path().display());
        let store = Store::connect(&url).await.unwrap();
        let first = store.begin().await.unwrap();
        let waiting = tokio::spawn({
            let store = store.clone();
            async move { store.begin().await.map(drop) }
        });
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        assert!(
            !waiting.is_finished(),
            "began while another transaction wrote"
        );
        first.commit().await.unwrap();
        let started = std::time::Instant::now();
        waiting.await.unwrap().unwrap();
        // SQLite's busy handler would have slept up to 100 ms between its tries.
        assert!(started.elapsed() < std::time::Duration::from_secs(2));
        // Dropped without commit: rolled back in a task of its own, which then gives the turn
        // back (else the next one would wait for the busy timeout and fail).
        let mut dropped = store.begin().await.unwrap();
        dropped
            .conn()
            .execute("INSERT INTO subscriptions (id, confirmed_at) VALUES ('s1', 0)")
            .await
            .unwrap();
        drop(dropped);
        let mut next = store.begin().await.unwrap();
        next.confirm_subscription("s2", crate::clock::Clock::system().now())
            .await
            .unwrap();
        let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM subscriptions WHERE id = 's1'")
            .fetch_one(next.conn())
            .await
            .unwrap();
        assert_eq!(rows, 0, "the dropped transaction was rolled back");
        next.commit().await.unwrap();
        store.close().await;
    }

    #[tokio::test]
    async fn regression_a_commit_the_database_refused_leaves_no_connection_in_a_transaction() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/gateway.db", dir.path().display());
        // One connection: the next transaction gets the same one back (or a new one).
        let store = Store::connect_with(&url, 1).await.unwrap();
        let tx = ended_by_the_database(&store).await;
        assert!(tx.commit().await.is_err());
        let mut tx = store
            .begin()
            .await
            .expect("a transaction after a refused commit");
        tx.conn().execute("SELECT 1").await.unwrap();
        tx.commit().await.unwrap();

        // Dropped instead of committed: the same.
        drop(ended_by_the_database(&store).await);
        let tx = store
            .begin()
            .await
            .expect("a transaction after a dropped one");
        tx.commit().await.unwrap();
        store.close().await;
    }

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
