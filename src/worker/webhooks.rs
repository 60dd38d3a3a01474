//! The webhook worker: claims the next due delivery and POSTs it, signed
//! ([`crate::plan::webhooks::signature`]); failures are retried with backoff and parked after
//! `retry.max_attempts`.

use chrono::{DateTime, Utc};

use super::{Leases, WorkerError};
use crate::config::WebhookConfig;
use crate::plan::webhooks::{signature, SIGNATURE_HEADER};
use crate::store::Store;

/// Delivers webhook events to the supplier core.
#[derive(Debug, Clone)]
pub struct WebhookWorker {
    store: Store,
    name: String,
    leases: Leases,
    config: Option<WebhookConfig>,
    http: reqwest::Client,
}

/// The HTTP client could not be made (a TLS backend problem).
#[derive(Debug, thiserror::Error)]
#[error("the webhook HTTP client: {0}")]
pub struct ClientError(#[from] reqwest::Error);

impl WebhookWorker {
    /// A worker named `name` (in leases) over `store`, posting to `config`'s URL (without a
    /// URL, events are kept until one is configured).
    pub fn new(
        store: Store,
        name: String,
        leases: Leases,
        config: Option<WebhookConfig>,
    ) -> Result<WebhookWorker, ClientError> {
        let timeout = config
            .as_ref()
            .map_or(crate::config::DEFAULT_WEBHOOK_TIMEOUT, |w| w.timeout);
        Ok(WebhookWorker {
            store,
            name,
            leases,
            config,
            http: reqwest::Client::builder().timeout(timeout).build()?,
        })
    }

    /// Claims the next webhook delivery and POSTs it. `None` when nothing is due or no
    /// webhook URL is configured.
    pub async fn deliver_next(&self, now: DateTime<Utc>) -> Result<Option<String>, WorkerError> {
        let Some(config) = &self.config else {
            return Ok(None);
        };
        // In a short transaction, as the outbound worker claims (see `Store::begin`).
        let mut tx = self.store.begin().await?;
        let claimed = tx.claim_webhook(&self.name, now, self.leases.lease).await?;
        tx.commit().await?;
        let Some(delivery) = claimed else {
            return Ok(None);
        };
        let signature = signature(config.secret.as_bytes(), now, delivery.payload.as_bytes());
        let result = self
            .http
            .post(&config.url)
            .header("content-type", "application/json")
            .header(SIGNATURE_HEADER, signature)
            .header("Mako-Event-Id", &delivery.id)
            .body(delivery.payload.clone())
            .send()
            .await;
        let error = match result {
            Ok(r) if r.status().is_success() => None,
            Ok(r) => Some(format!("HTTP {}", r.status())),
            Err(e) => Some(e.to_string()),
        };
        let mut conn = self.store.conn().await?;
        match error {
            None => {
                conn.mark_webhook_delivered(&delivery.id, &self.name, now)
                    .await?;
                Ok(Some(format!("{} delivered", delivery.id)))
            }
            Some(e) => {
                let attempt = u32::try_from(delivery.attempts).unwrap_or(u32::MAX);
                if attempt >= self.leases.max_attempts {
                    conn.park_webhook(&delivery.id, &self.name, &e).await?;
                    Ok(Some(format!("{} parked: {e}", delivery.id)))
                } else {
                    let next = self.leases.next_attempt(attempt, &delivery.id, now);
                    conn.retry_webhook(&delivery.id, &self.name, next, &e)
                        .await?;
                    Ok(Some(format!("{} retry at {next}: {e}", delivery.id)))
                }
            }
        }
    }
}
