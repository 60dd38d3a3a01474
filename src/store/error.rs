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
    /// unreachable database, a PostgreSQL serialization failure or deadlock, a full disk),
    /// false when the request itself is wrong (a constraint, a missing row, bad stored data).
    pub fn is_transient(&self) -> bool {
        match self {
            StoreError::VersionConflict { .. }
            | StoreError::LeaseLost { .. }
            | StoreError::Abandoned { .. } => true,
            StoreError::Query { source, .. } | StoreError::Connect { source, .. } => match source {
                sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed => true,
                sqlx::Error::Database(e) => e.code().is_some_and(|c| transient_code(&c)),
                _ => false,
            },
            _ => false,
        }
    }
}

/// Whether a database error code names a condition that passes: SQLite's result codes (the
/// primary code is the low byte of an extended one) 5 `SQLITE_BUSY`, 6 `SQLITE_LOCKED`, 10
/// `SQLITE_IOERR` and 13 `SQLITE_FULL` (the disk is full: found by the fault campaign, where
/// an outbox item whose commit met a full disk was parked, though its partner had it);
/// PostgreSQL's SQLSTATEs 40001 serialization_failure, 40P01 deadlock_detected, class 08
/// (connection exceptions), class 53 (insufficient resources: 53100 disk_full, 53200
/// out_of_memory, 53300 too_many_connections), 57P01 admin_shutdown, 57P02 crash_shutdown and
/// 57P03 cannot_connect_now (the server is starting).
fn transient_code(code: &str) -> bool {
    // PostgreSQL's SQLSTATEs have five characters (some all digits); SQLite's result codes
    // are numbers below 10,000.
    if code.len() == 5 {
        return matches!(code, "40001" | "40P01" | "57P01" | "57P02" | "57P03")
            || code.starts_with("08")
            || code.starts_with("53");
    }
    code.parse::<u32>()
        .is_ok_and(|c| matches!(c & 0xff, 5 | 6 | 10 | 13))
}

#[cfg(test)]
mod tests {
    use super::transient_code;

    #[test]
    fn passing_database_conditions_are_transient_and_refusals_are_not() {
        // SQLite: busy, locked (also extended: BUSY_SNAPSHOT 517), I/O error, disk full.
        for code in ["5", "517", "6", "10", "3338", "13"] {
            assert!(transient_code(code), "{code}");
        }
        // SQLite: constraint (19, UNIQUE 2067), corrupt (11), read-only (8).
        for code in ["19", "2067", "11", "8"] {
            assert!(!transient_code(code), "{code}");
        }
        // PostgreSQL: serialization, deadlock, connection lost, disk full, starting up.
        for code in [
            "40001", "40P01", "08006", "53100", "53300", "57P01", "57P03",
        ] {
            assert!(transient_code(code), "{code}");
        }
        // PostgreSQL: unique violation, undefined table, syntax error.
        for code in ["23505", "42P01", "42601"] {
            assert!(!transient_code(code), "{code}");
        }
    }
}
