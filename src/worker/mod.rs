//! The workers: each claims work from the store, asks a pure planner what to do, and has the
//! store commit the plan (and a transport carry it out). They decide nothing themselves.
//!
//! - [`receive`]: the one inbound sink every transport feeds: journal first, then the
//!   transport may acknowledge.
//! - [`inbound`]: claims received interchanges in batches, plans them
//!   ([`crate::plan::inbound`]) and commits the plans.
//! - [`outbound`]: claims outbox items, plans them ([`crate::plan::outbound`]), hands the bytes
//!   to the partner's transport and commits the plan.
//! - [`webhooks`]: claims webhook deliveries and POSTs them, signed.
//!
//! Every step returns a [`WorkerError`] that says with [`WorkerError::is_transient`] whether
//! the same step may succeed later.

pub mod inbound;
pub mod outbound;
pub mod receive;
pub mod webhooks;

use std::time::Duration;

use crate::store::StoreError;
use crate::transport::SendError;

/// Why a worker's step failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WorkerError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A transport refused or failed to take an interchange.
    #[error(transparent)]
    Send(#[from] SendError),
    /// A blocking task (file system work) panicked or was cancelled.
    #[error("a blocking task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
}

impl WorkerError {
    /// True when the same step may succeed later (a busy database, a lost race, a partner's
    /// server that is down), false when repeating it gives the same error.
    pub fn is_transient(&self) -> bool {
        match self {
            WorkerError::Store(e) => e.is_transient(),
            WorkerError::Send(e) => e.is_transient(),
            WorkerError::Join(_) => true,
        }
    }
}

/// How a worker holds and retries its work.
#[derive(Debug, Clone, Copy)]
pub struct Leases {
    /// How long a claim holds before another worker may take the item over.
    pub lease: Duration,
    /// Attempts before an item is given up (parked, or failed into clearing).
    pub max_attempts: u32,
    /// First retry delay (doubling per attempt).
    pub retry_base: Duration,
    /// Longest retry delay.
    pub retry_max: Duration,
}

impl Leases {
    /// The settings of `config`'s `[workers]` and `[retry]`.
    pub fn of(config: &crate::config::Config) -> Leases {
        Leases {
            lease: config.workers.lease,
            max_attempts: config.retry.max_attempts,
            retry_base: config.retry.base,
            retry_max: config.retry.max,
        }
    }

    /// When attempt `attempt` (1 = the first) of the item `key` is tried again.
    pub fn next_attempt(
        &self,
        attempt: u32,
        key: &str,
        now: chrono::DateTime<chrono::Utc>,
    ) -> chrono::DateTime<chrono::Utc> {
        let wait = crate::plan::webhooks::backoff(
            attempt.saturating_sub(1),
            self.retry_base,
            self.retry_max,
            key,
        );
        now + chrono::Duration::from_std(wait).unwrap_or_default()
    }
}
