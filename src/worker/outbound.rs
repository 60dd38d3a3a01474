//! The outbound worker: claims an outbox item (an order, an acknowledgement, a pass-through
//! of the supplier core), has the pure planner say what it sends
//! ([`crate::plan::outbound`]), keeps newly built bytes with the item before anything leaves,
//! hands them to the partner's transport ([`Transports`]) and has the store carry out the plan
//! in one transaction. Transient failures are retried with backoff; permanent ones park the
//! item with the reason.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;
use tracing::Instrument;

use super::{Leases, WorkerError};
use crate::edifact::ReferenceSequence;
use crate::grammar::Registry;
use crate::orders::Sender;
use crate::plan::inbound::{REFERENCES_PER_ITEM, REFERENCE_PREFIX};
use crate::plan::outbound::{
    plan_grid_fee, plan_meter_order, plan_pass_through, plan_prebuilt, select_grid_fee_batch,
    select_meter_order, BuildContext, OutboundPlan, PlanError, Selection,
};
use crate::store::{OrderKind, OutboxItem, OutboxKind, Store, StoreError};
use crate::transport::health::{Health, Part};
use crate::transport::{Outbound, Outgoing, SendError};

/// The transport of each partner, chosen from the configuration; partners without an entry
/// get the default (the file drop).
#[derive(Debug, Clone)]
pub struct Transports {
    default: Arc<dyn Outbound>,
    partners: HashMap<String, Arc<dyn Outbound>>,
}

impl Transports {
    /// Every partner on `default`.
    pub fn new(default: Arc<dyn Outbound>) -> Transports {
        Transports {
            default,
            partners: HashMap::new(),
        }
    }

    /// `partner` on `transport`.
    pub fn with(mut self, partner: &str, transport: Arc<dyn Outbound>) -> Transports {
        self.partners.insert(partner.to_string(), transport);
        self
    }

    /// The transport of `partner`.
    pub fn of(&self, partner: &str) -> &dyn Outbound {
        self.partners
            .get(partner)
            .map_or(self.default.as_ref(), Arc::as_ref)
    }
}

/// What sending one outbox item did.
#[derive(Debug, Clone, Serialize)]
pub struct OutboundReport {
    /// The outbox item.
    pub outbox_id: String,
    /// Sent, dropped (order no longer wants it), retried later or parked.
    pub outcome: String,
}

/// Why one item was not sent: retried later or parked.
#[derive(Debug, thiserror::Error)]
enum ItemError {
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Send(#[from] SendError),
    #[error("order item without order kind")]
    NoOrderKind,
}

impl ItemError {
    fn is_transient(&self) -> bool {
        match self {
            ItemError::Plan(_) | ItemError::NoOrderKind => false,
            ItemError::Store(e) => e.is_transient(),
            ItemError::Send(e) => e.is_transient(),
        }
    }
}

/// Sends what waits in the outbox.
#[derive(Debug, Clone)]
pub struct OutboundWorker {
    store: Store,
    name: String,
    leases: Leases,
    sender: Sender,
    transports: Transports,
    /// Where each send's outcome is reported (per transport and partner).
    health: Health,
}

impl OutboundWorker {
    /// A worker named `name` (in leases) over `store`, writing as `sender`, sending over
    /// `transports`.
    pub fn new(
        store: Store,
        name: String,
        leases: Leases,
        sender: Sender,
        transports: Transports,
    ) -> OutboundWorker {
        OutboundWorker {
            store,
            name,
            leases,
            sender,
            transports,
            health: Health::default(),
        }
    }

    /// The same worker, reporting every send's outcome to `health`.
    pub fn with_health(mut self, health: Health) -> OutboundWorker {
        self.health = health;
        self
    }

    /// Claims the next outbox item and sends it. `None` when nothing is due.
    pub async fn send_next(
        &self,
        now: DateTime<Utc>,
    ) -> Result<Option<OutboundReport>, WorkerError> {
        // In a short transaction: on SQLite it waits for this instance's turn to write (see
        // `Store::begin`) instead of polling SQLite's lock behind the inbound batches.
        let mut tx = self.store.begin().await?;
        let claimed = tx.claim_outbox(&self.name, now, self.leases.lease).await?;
        tx.commit().await?;
        let Some(item) = claimed else {
            return Ok(None);
        };
        let span = tracing::info_span!("outbound", outbox = %item.id, partner = %item.partner, order = item.order_id.as_deref().unwrap_or(""));
        let outcome = match self.send_item(&item, now).instrument(span).await {
            Ok(o) => o,
            Err(e) if !e.is_transient() => {
                let reason = e.to_string();
                tracing::warn!(outbox = %item.id, %reason, "outbox item parked");
                self.park(&item, &reason, now).await?;
                format!("parked: {reason}")
            }
            Err(e) => {
                let reason = e.to_string();
                let attempt = u32::try_from(item.attempts).unwrap_or(u32::MAX);
                if attempt >= self.leases.max_attempts {
                    self.park(
                        &item,
                        &format!("gave up after {attempt} attempts: {reason}"),
                        now,
                    )
                    .await?;
                    format!("parked after {attempt} attempts: {reason}")
                } else {
                    let next = self.leases.next_attempt(attempt, &item.id, now);
                    tracing::info!(outbox = %item.id, %reason, %next, "outbox item retried later");
                    self.store
                        .conn()
                        .await?
                        .retry_outbox(&item.id, &self.name, next, &reason)
                        .await?;
                    format!("retry at {next}: {reason}")
                }
            }
        };
        Ok(Some(OutboundReport {
            outbox_id: item.id,
            outcome,
        }))
    }

    /// Parks a claimed item with `reason`; a pass-through's messages and journal entry are
    /// marked failed with it, in the same transaction.
    async fn park(
        &self,
        item: &OutboxItem,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut tx = self.store.begin().await?;
        tx.park_outbox(&item.id, &self.name, reason).await?;
        if item.kind == OutboxKind::PassThrough {
            tx.fail_pass_through(&item.id, item.journal_id.as_deref(), reason, now)
                .await?;
        }
        tx.commit().await
    }

    /// Runs an order planner with what building needs. References are reserved only when
    /// there are no bytes `kept` from an earlier attempt (the planner then builds nothing and
    /// takes none).
    async fn build(
        &self,
        kept: Option<&[u8]>,
        now: DateTime<Utc>,
        planner: impl FnOnce(&mut BuildContext<'_>) -> Result<OutboundPlan, PlanError>,
    ) -> Result<Selection<OutboundPlan>, ItemError> {
        let first = match kept {
            None => self.store.reserve_references(REFERENCES_PER_ITEM).await?,
            Some(_) => 0,
        };
        let mut references = ReferenceSequence::new(REFERENCE_PREFIX, first).expect("valid prefix");
        let plan = planner(&mut BuildContext {
            registry: Registry::embedded(),
            sender: &self.sender,
            now,
            references: &mut references,
        })?;
        Ok(Selection::Send(plan))
    }

    /// The plan of a claimed item, or why it is done without sending.
    async fn plan(
        &self,
        item: &OutboxItem,
        now: DateTime<Utc>,
    ) -> Result<Selection<OutboundPlan>, ItemError> {
        match item.kind {
            OutboxKind::Ack => {
                return Ok(Selection::Send(plan_prebuilt(
                    item.payload.as_deref(),
                    now,
                )?));
            }
            OutboxKind::PassThrough => {
                let queued = self
                    .store
                    .conn()
                    .await?
                    .queued_pass_through(&item.id)
                    .await?;
                return Ok(Selection::Send(plan_pass_through(
                    item.payload.as_deref(),
                    item.journal_id.as_deref(),
                    &queued,
                    now,
                )?));
            }
            OutboxKind::Order => {}
        }
        let id = item.order_id.clone().unwrap_or_default();
        let kept = item.payload.as_deref();
        let mut conn = self.store.conn().await?;
        match item.order_kind.ok_or(ItemError::NoOrderKind)? {
            OrderKind::GridFeeReduction => {
                let Some(record) = conn.grid_fee(&id).await? else {
                    return Err(PlanError::OrderNotFound {
                        what: "reduction",
                        id,
                    }
                    .into());
                };
                let subscription = conn
                    .grid_fees_of_subscription(&record.order.subscription)
                    .await?;
                drop(conn);
                let batch = match select_grid_fee_batch(&id, &subscription)? {
                    Selection::Done(reason) => return Ok(Selection::Done(reason)),
                    Selection::Send(batch) => batch,
                };
                self.build(kept, now, |context| {
                    plan_grid_fee(&batch, &subscription, kept, context)
                })
                .await
            }
            OrderKind::MeterOrder => {
                let Some(record) = conn.meter_order(&id).await? else {
                    return Err(PlanError::OrderNotFound {
                        what: "meter order",
                        id,
                    }
                    .into());
                };
                drop(conn);
                if let Selection::Done(reason) = select_meter_order(&record) {
                    return Ok(Selection::Done(reason));
                }
                self.build(kept, now, |context| {
                    plan_meter_order(&record, kept, context)
                })
                .await
            }
        }
    }

    async fn send_item(&self, item: &OutboxItem, now: DateTime<Utc>) -> Result<String, ItemError> {
        // 1. What the item sends: nothing (done), or a plan with its bytes, kept before
        //    anything leaves when they were built now (a retry sends the same interchange).
        let plan = match self.plan(item, now).await? {
            Selection::Done(reason) => {
                self.store
                    .conn()
                    .await?
                    .mark_outbox_sent(&item.id, &self.name, now)
                    .await?;
                return Ok(reason);
            }
            Selection::Send(plan) => plan,
        };
        if plan.newly_built {
            self.store
                .conn()
                .await?
                .set_outbox_payload(&item.id, &self.name, &plan.bytes)
                .await?;
        }
        // 2. Out through the partner's transport.
        let transport = self.transports.of(&plan.partner);
        let sent = transport
            .send(Outgoing {
                outbox_id: &item.id,
                partner: &plan.partner,
                interchange_ref: &plan.interchange_ref,
                bytes: &plan.bytes,
                now,
            })
            .await;
        if let Some(part) = Part::sending(transport.kind()) {
            let partner = plan.partner.as_str();
            match &sent {
                Ok(_) => self.health.succeeded(part, Some(partner), now),
                Err(e) if e.is_partner_only() => self.health.partner_failed(part, partner, e, now),
                Err(e) => self.health.failed(part, Some(partner), e, now),
            }
        }
        let sent = sent?;
        // 3. Record it, and move the orders on, in one transaction.
        let mut tx = self.store.begin().await?;
        tx.apply_outbound_plan(&plan, transport.kind(), &item.id, &self.name, now)
            .await?;
        // The answers we now wait for (APERAK, ORDRSP), with their due times.
        let written: Vec<_> = plan
            .messages
            .iter()
            .map(|m| crate::plan::deadlines::Written {
                message_type: &m.message_type,
                document_number: &m.document_number,
                message_ref: &m.message_ref,
            })
            .collect();
        let awaited = crate::plan::deadlines::awaited_after_sending(
            &plan.partner,
            &plan.interchange_ref,
            &written,
            &plan.sent,
            now,
        );
        tx.add_deadlines(&awaited, now).await?;
        tx.commit().await?;
        tracing::info!(to = %sent.description, interchange = %plan.interchange_ref, "sent");
        Ok(format!(
            "sent {} as {}",
            plan.interchange_ref, sent.description
        ))
    }
}
