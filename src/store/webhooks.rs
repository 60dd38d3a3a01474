//! Webhook deliveries: every event queued with the change that caused it, and the delivery
//! work queue with retries and parking.

use chrono::{DateTime, Utc};

use super::sql::{
    claim_next, corrupt, finish_work, get, ms, page_rows, positional, time, Queue,
    ROWS_PER_STATEMENT,
};
use super::types::*;
use super::{Connection, Session, StoreError};

pub(crate) const WEBHOOK_COLUMNS: &str =
    "id, topic, payload, state, attempts, last_error, created_at";

fn webhook_from_row(row: &sqlx::any::AnyRow) -> Result<WebhookDelivery, StoreError> {
    let id: String = get(row, "id")?;
    let state: String = get(row, "state")?;
    Ok(WebhookDelivery {
        topic: get(row, "topic")?,
        payload: get(row, "payload")?,
        state: WebhookState::parse(&state)
            .ok_or_else(|| corrupt("webhook delivery", &id, "state", state.clone()))?,
        attempts: get(row, "attempts")?,
        last_error: get(row, "last_error")?,
        created_at: time(get(row, "created_at")?),
        id,
    })
}

const WEBHOOK_QUEUE: Queue = Queue {
    operation: "claiming a webhook delivery",
    table: "webhook_deliveries",
    busy_state: "in_flight",
    ready: [
        "state = 'pending' AND next_attempt_at <= $3",
        "state = 'in_flight' AND locked_until < $3",
    ],
    columns: WEBHOOK_COLUMNS,
};

impl<C: Connection> Session<C> {
    /// Queues a webhook event.
    pub async fn add_webhook(
        &mut self,
        event: &WebhookEvent,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.add_webhooks(std::slice::from_ref(event), now).await
    }

    /// Queues several events (one statement per `ROWS_PER_STATEMENT` (500)).
    pub async fn add_webhooks<E: std::borrow::Borrow<WebhookEvent> + Sync>(
        &mut self,
        events: &[E],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        for chunk in events.chunks(ROWS_PER_STATEMENT) {
            self.add_webhook_rows(chunk, now).await?;
        }
        Ok(())
    }

    async fn add_webhook_rows<E: std::borrow::Borrow<WebhookEvent> + Sync>(
        &mut self,
        events: &[E],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        // Each value its own placeholder, in order (`now` twice): see `positional`.
        let statement = positional(
            self.backend,
            format!(
                "INSERT INTO webhook_deliveries (id, topic, payload, state, attempts, \
                 next_attempt_at, created_at) VALUES {}",
                (0..events.len())
                    .map(|r| {
                        let p = |i: usize| format!("${}", 1 + r * 5 + i);
                        format!(
                            "({}, {}, {}, 'pending', 0, {}, {})",
                            p(0),
                            p(1),
                            p(2),
                            p(3),
                            p(4)
                        )
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        );
        let mut query = sqlx::query(&statement);
        for event in events {
            let event = event.borrow();
            query = query
                .bind(event.id.clone())
                .bind(event.topic.clone())
                .bind(event.payload.as_str())
                .bind(ms(now))
                .bind(ms(now));
        }
        query
            .execute(self.conn())
            .await
            .map_err(StoreError::query("adding webhook deliveries"))?;
        Ok(())
    }

    /// Claims the oldest due webhook delivery.
    pub async fn claim_webhook(
        &mut self,
        worker: &str,
        now: DateTime<Utc>,
        lease: std::time::Duration,
    ) -> Result<Option<WebhookDelivery>, StoreError> {
        let backend = self.backend;
        let row = claim_next(self.conn(), backend, &WEBHOOK_QUEUE, worker, now, lease).await?;
        row.as_ref().map(webhook_from_row).transpose()
    }

    /// The receiver took the event.
    pub async fn mark_webhook_delivered(
        &mut self,
        id: &str,
        worker: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        finish_work(
            self.conn(),
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
        &mut self,
        id: &str,
        worker: &str,
        next_attempt_at: DateTime<Utc>,
        error: &str,
    ) -> Result<(), StoreError> {
        finish_work(
            self.conn(),
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
        &mut self,
        id: &str,
        worker: &str,
        error: &str,
    ) -> Result<(), StoreError> {
        finish_work(
            self.conn(),
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
        &mut self,
        state: Option<WebhookState>,
        page: &PageRequest,
    ) -> Result<Page<WebhookDelivery>, StoreError> {
        let (rows, next_cursor) = page_rows(
            self.conn(),
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
}
