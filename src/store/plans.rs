//! Plans in and out: what the inbound planner needs loaded ([`Session::load_for_inbound`]:
//! a constant number of statements for a whole batch), and carrying a plan out in one call
//! ([`Session::apply_inbound_plans`]: a few multi-row statements for a whole batch;
//! [`Session::apply_outbound_plan`]: the same for one sent interchange).

use chrono::{DateTime, Utc};

use super::types::{JournalState, Transport};
use super::{Connection, Session, StoreError};
use crate::plan::inbound::{BatchKeys, Effect, InboundPlan, Loaded};
use crate::plan::outbound::OutboundPlan;

impl<C: Connection> Session<C> {
    /// The orders and sent messages the items of a batch name, and which of our references it
    /// names are still being sent (at most seven statements, whatever the size of the batch).
    pub async fn load_for_inbound(&mut self, keys: &BatchKeys) -> Result<Loaded, StoreError> {
        // What is still being sent is read first: under PostgreSQL's read committed each
        // statement sees the commits made before it, so an outbox item recorded as sent
        // between this statement and the next ones is found as an order document or sent
        // message there; read last, an answer could see its order neither sent nor in flight.
        let in_flight = self
            .unsent_references(&keys.senders, &keys.references())
            .await?;
        let mut loaded = Loaded {
            reductions: self
                .grid_fees_matching(&keys.market_locations, &keys.order_documents)
                .await?,
            meters: self
                .meter_orders_matching(&keys.metering_locations, &keys.order_documents)
                .await?,
            sent: self
                .sent_matching(
                    &keys.partners,
                    &keys.sent_interchanges,
                    &keys.sent_documents,
                )
                .await?,
            in_flight,
        };
        let missing = loaded.missing_orders();
        if !missing.is_empty() {
            let (reductions, meters) = self.orders_by_id(&missing).await?;
            loaded.reductions.extend(reductions);
            loaded.meters.extend(meters);
        }
        Ok(loaded)
    }

    /// Carries out the plans of a batch of claimed inbound items: the changed orders (checked
    /// against the versions they were planned on), their history rows and webhook events, the
    /// replies into the outbox, the clearing entries, the partners' answers to pass-through
    /// messages, and every journal item marked `processed` with its outcome. One statement
    /// per kind of row, whatever the size of the batch (and one per answer to pass-through
    /// messages, which are rare); the caller commits.
    pub async fn apply_inbound_plans(
        &mut self,
        plans: &[InboundPlan],
        worker: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        // An interchange that answers something still being sent changes nothing yet: its
        // item stays claimed until it is planned again.
        let waiting: Vec<&str> = plans
            .iter()
            .filter(|p| p.waits_for.is_some())
            .filter_map(|p| p.report.journal_id.as_deref())
            .collect();
        let until = now
            + chrono::Duration::from_std(crate::plan::inbound::WAIT_FOR_SENDING)
                .unwrap_or_default();
        self.hold_inbound_items(&waiting, worker, until).await?;
        let changes: Vec<_> = plans.iter().flat_map(|p| &p.order_changes).collect();
        self.save_changed_orders(&changes, now).await?;
        let history: Vec<_> = changes.iter().map(|c| &c.history).collect();
        self.add_history_rows(&history).await?;
        // Order events and `message.received` of the forwarded messages, in one statement.
        let events: Vec<&crate::plan::records::WebhookEvent> = changes
            .iter()
            .filter_map(|c| c.event.as_ref())
            .chain(
                plans
                    .iter()
                    .flat_map(|p| &p.messages)
                    .filter_map(|m| m.event.as_ref()),
            )
            .collect();
        self.add_webhooks(&events, now).await?;
        let mut outbox = Vec::new();
        let mut dues = Vec::new();
        for p in plans {
            for (i, item) in p.outbox.iter().enumerate() {
                outbox.push(item.clone());
                dues.push(p.outbox_due.get(i).copied().flatten());
            }
        }
        self.add_outbox_items_due(&outbox, &dues, now).await?;
        let met: Vec<_> = plans.iter().flat_map(|p| p.met.iter().cloned()).collect();
        self.meet_deadlines(&met, now).await?;
        let clearing: Vec<_> = plans.iter().flat_map(|p| &p.clearing).collect();
        self.add_clearing_items(&clearing, now).await?;
        let messages: Vec<_> = plans
            .iter()
            .flat_map(|p| p.messages.iter().zip(&p.report.routed))
            .collect();
        self.add_received_messages(&messages, now).await?;

        let answers: Vec<_> = plans
            .iter()
            .flat_map(|p| {
                p.report.effects.iter().filter_map(move |e| match e {
                    Effect::PassThroughAnswered {
                        messages, answer, ..
                    } => Some((
                        messages.as_slice(),
                        answer.as_ref(),
                        p.report.journal_id.as_deref(),
                    )),
                    _ => None,
                })
            })
            .collect();
        self.record_pass_through_answers(&answers, now).await?;
        let finished: Vec<(&str, String)> = plans
            .iter()
            .filter(|p| p.waits_for.is_none())
            .filter_map(|p| {
                p.report
                    .journal_id
                    .as_deref()
                    .map(|id| (id, p.report.outcome_text()))
            })
            .collect();
        self.finish_inbound_items(&finished, worker, JournalState::Processed)
            .await
    }

    /// Carries out the plan of a sent outbox item: the outbound journal entry (over
    /// `transport`; a pass-through's, journaled when it was handed over, completed and its
    /// messages marked sent), what we sent, the orders moved on with their history rows and
    /// webhook events, the pending outbox items of the orders sent with it dropped, and the
    /// item marked sent. The caller commits.
    pub async fn apply_outbound_plan(
        &mut self,
        plan: &OutboundPlan,
        transport: Transport,
        outbox_id: &str,
        worker: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        match &plan.pass_through {
            // Journaled when the core handed it over: completed now.
            Some(sending) => {
                self.mark_pass_through_sent(&plan.journal_id, transport, sending, now)
                    .await?
            }
            None => {
                self.insert_outbound_journal(&plan.journal_record(transport, now))
                    .await?;
            }
        }
        self.record_sent_rows(&plan.sent, now).await?;
        let changes: Vec<_> = plan.order_changes.iter().collect();
        self.save_changed_orders(&changes, now).await?;
        let history: Vec<_> = changes.iter().map(|c| &c.history).collect();
        self.add_history_rows(&history).await?;
        let events: Vec<_> = changes.iter().filter_map(|c| c.event.clone()).collect();
        self.add_webhooks(&events, now).await?;
        for order in &plan.stand_down {
            self.drop_pending_outbox(order).await?;
        }
        self.mark_outbox_sent(outbox_id, worker, now).await
    }
}
