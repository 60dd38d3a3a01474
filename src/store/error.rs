//! What can go wrong in the store, with what it was doing.

use std::path::PathBuf;

/// A store operation that failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The URL names no database the store supports.
    #[error("database URL {url:?} is not supported: {reason}")]
    UnsupportedUrl {
        /// The URL as given.
        url: String,
        /// Why.
        reason: &'static str,
    },
    /// The directory for the SQLite file could not be created.
    #[error("cannot create the directory {path:?} for the SQLite database: {source}")]
    CreateDirectory {
        /// The directory.
        path: PathBuf,
        /// The file system's error.
        source: std::io::Error,
    },
    /// The database could not be opened.
    #[error("cannot connect to {url}: {source}")]
    Connect {
        /// The URL, without its password.
        url: String,
        /// The driver's error.
        source: sqlx::Error,
    },
    /// The embedded migrations could not be applied.
    #[error("applying the migrations failed: {source}")]
    Migrate {
        /// The migrator's error.
        source: sqlx::migrate::MigrateError,
    },
    /// A statement failed.
    #[error("{operation} failed: {source}")]
    Query {
        /// What the store was doing (`claiming an outbox item`, …).
        operation: &'static str,
        /// The driver's error.
        source: sqlx::Error,
    },
    /// Somebody else saved the order since it was read (optimistic concurrency).
    #[error("{kind} {id} was changed by someone else (expected version {expected})")]
    VersionConflict {
        /// `grid_fee_reduction` or `meter_order`.
        kind: &'static str,
        /// The order's id.
        id: String,
        /// The version the caller read.
        expected: i64,
    },
    /// A subscription gets at most one meter order, ever (the database refused a second).
    #[error("subscription {subscription:?} already has a meter order")]
    DuplicateMeterOrder {
        /// The subscription.
        subscription: String,
    },
    /// No row with this id.
    #[error("{what} {id} not found")]
    NotFound {
        /// What was looked for (`outbox item`, …).
        what: &'static str,
        /// The id.
        id: String,
    },
    /// The worker's lease on a claimed item expired and the item is no longer its own (another
    /// worker may have taken it over); nothing was changed.
    #[error("{what} {id} is no longer leased by worker {worker:?}")]
    LeaseLost {
        /// `journal item`, `outbox item` or `webhook delivery`.
        what: &'static str,
        /// The item's id.
        id: String,
        /// The worker that thought it held it.
        worker: String,
    },
    /// A stored value cannot be read back (written by another version, or edited by hand).
    #[error("{what} {id}: stored column {column} cannot be read: {detail}")]
    Corrupt {
        /// The kind of row.
        what: &'static str,
        /// The row's id.
        id: String,
        /// The column.
        column: &'static str,
        /// What is wrong with it.
        detail: String,
    },
    /// The write holding this record ended without an answer (its task panicked): whether it
    /// was committed is unknown, so the sender is not acknowledged and delivers again (a
    /// committed copy is then found as a duplicate).
    #[error("{what} ended without an answer; not acknowledged")]
    Abandoned {
        /// `journaling an inbound interchange`, …
        what: &'static str,
    },
}

impl StoreError {
    /// A closure turning a driver error into [`StoreError::Query`] for `operation`.
    pub(crate) fn query(operation: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
        move |source| StoreError::Query { operation, source }
    }

    /// True when retrying the same operation later may succeed (a lost race, a busy or
    /// unreachable database, a PostgreSQL serialization failure or deadlock), false when the
    /// request itself is wrong (a constraint, a missing row, bad stored data).
    pub fn is_transient(&self) -> bool {
        match self {
            StoreError::VersionConflict { .. }
            | StoreError::LeaseLost { .. }
            | StoreError::Abandoned { .. } => true,
            StoreError::Query { source, .. } | StoreError::Connect { source, .. } => match source {
                sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed => true,
                // PostgreSQL 40001 serialization_failure, 40P01 deadlock_detected, 57P01
                // admin_shutdown; SQLite 5 SQLITE_BUSY, 6 SQLITE_LOCKED.
                sqlx::Error::Database(e) => matches!(
                    e.code().as_deref(),
                    Some("40001" | "40P01" | "57P01" | "5" | "6")
                ),
                _ => false,
            },
            _ => false,
        }
    }
}
