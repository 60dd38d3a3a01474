//! The inbound worker: claims received interchanges in batches, reads each once (pure), loads
//! what their items name in a few statements, plans them ([`crate::plan::inbound`]) and has
//! the store carry the plans out in one transaction. It decides nothing itself.

use chrono::{DateTime, Utc};
use serde_json::json;
use tracing::Instrument;

use super::{Leases, WorkerError};
use crate::acks::{AckContext, ContrlPolicy};
use crate::edifact::ReferenceSequence;
use crate::grammar::Registry;
use crate::orders::{PartnerStatusRules, Sender};
use crate::plan::inbound::{
    plan_inbound, read_inbound, BatchKeys, InboundPlan, InboundReport, PlanContext, ReadInbound,
    REFERENCES_PER_ITEM, REFERENCE_PREFIX,
};
use crate::plan::routing::{RoutingCheck, RoutingTable};
use crate::store::{JournalItem, JournalState, Store};

/// Inbound items processed per transaction by one worker (one commit per batch).
pub const INBOUND_BATCH: u32 = 32;

/// Processes received interchanges.
#[derive(Debug, Clone)]
pub struct InboundWorker {
    store: Store,
    name: String,
    leases: Leases,
    sender: Sender,
    partner_status: PartnerStatusRules,
    routing: RoutingTable,
}

/// Step 1, pure: parse, validate, plan the acknowledgements, read the items; the references
/// the acknowledgements use are taken from `refs`.
fn read(
    raw: &[u8],
    now: DateTime<Utc>,
    refs: &mut ReferenceSequence,
    routing: &RoutingTable,
) -> ReadInbound {
    let registry = Registry::embedded();
    let check = RoutingCheck {
        table: routing,
        registry,
    };
    let mut ack_context = AckContext {
        registry,
        now: now.naive_utc(),
        contrl_policy: ContrlPolicy::OnErrors,
        references: refs.clone(),
        processing: &check,
    };
    let read = read_inbound(raw, &mut ack_context, routing);
    *refs = ack_context.references;
    read
}

/// Logs an interchange that waits for the record of sending what it answers.
fn log_waiting(journal: &str, reference: &str) {
    tracing::info!(
        journal,
        reference,
        wait = ?crate::plan::inbound::WAIT_FOR_SENDING,
        "inbound waits: it answers {reference}, which is being sent and not yet recorded as sent"
    );
}

impl InboundWorker {
    /// A worker named `name` (in leases) over `store`, writing as `sender`, reading the
    /// partners' status reports with `partner_status`.
    pub fn new(
        store: Store,
        name: String,
        leases: Leases,
        sender: Sender,
        partner_status: PartnerStatusRules,
    ) -> InboundWorker {
        InboundWorker {
            store,
            name,
            leases,
            sender,
            partner_status,
            routing: RoutingTable::default(),
        }
    }

    /// The same worker routing received messages by `routing` (default: our PIDs handled,
    /// every other forwarded).
    pub fn with_routing(mut self, routing: RoutingTable) -> InboundWorker {
        self.routing = routing;
        self
    }

    /// This worker's name in leases.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Claims up to `limit` new inbound interchanges and processes them in ONE transaction
    /// (one commit for the batch instead of one per item: commits are what a durable store
    /// pays for). If the batch fails, it is rolled back and its items are processed one by
    /// one, so one bad item never holds up the others. Falls back to a single claim (which
    /// also takes items with an expired lease) when no new item waits. Returns how many items
    /// were processed, `None` when nothing waited.
    pub async fn process_batch(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Option<usize>, WorkerError> {
        // In a transaction of its own rather than a statement that commits itself: on SQLite a
        // transaction waits for this instance's turn to write (see `Store::begin`) instead of
        // polling SQLite's lock in its busy handler.
        let mut tx = self.store.begin().await?;
        let items = tx
            .claim_inbound_batch(&self.name, now, self.leases.lease, limit)
            .await?;
        tx.commit().await?;
        if items.is_empty() {
            return Ok(self.process_next(now).await?.map(|_| 1));
        }
        if items.len() == 1 {
            let item = items.into_iter().next().expect("one item");
            return self.process_claimed(item, now).await.map(|_| Some(1));
        }
        let count = items.len();
        let largest = items.iter().map(|i| i.raw.len()).max().unwrap_or(0);
        match self.process_together(&items, now).await {
            Ok(()) => {
                tracing::info!(items = count, "inbound batch processed");
            }
            Err(e) => {
                tracing::info!(error = %e, items = count, "inbound batch rolled back; one by one");
                for item in items {
                    let _ = self.process_claimed(item, now).await;
                }
            }
        }
        crate::alloc::after_large(largest);
        Ok(Some(count))
    }

    /// Claims the next inbound interchange and processes it. `None` when nothing waits.
    pub async fn process_next(
        &self,
        now: DateTime<Utc>,
    ) -> Result<Option<InboundReport>, WorkerError> {
        let mut tx = self.store.begin().await?;
        let claimed = tx.claim_inbound(&self.name, now, self.leases.lease).await?;
        tx.commit().await?;
        let Some(item) = claimed else {
            return Ok(None);
        };
        self.process_claimed(item, now).await.map(Some)
    }

    /// Processes one claimed journal item (claimed by this worker): everything it changes
    /// commits together with marking it processed; with `dry_run` nothing is committed.
    pub async fn process_item(
        &self,
        item: &JournalItem,
        now: DateTime<Utc>,
        dry_run: bool,
    ) -> Result<InboundReport, WorkerError> {
        let (read, refs) = self.read_item(&item.raw, now).await?;
        self.apply_read(&item.id, read, refs, now, dry_run).await
    }

    /// As [`InboundWorker::process_item`] (committing), with the item's bytes dropped as soon
    /// as they are read: nothing after reading looks at them again, and for a large
    /// interchange they are the largest thing held while the plan is applied (a failed
    /// attempt is released and claimed again with its bytes). A large item's memory is given
    /// back after reading and again after applying ([`crate::alloc::after_large`]).
    async fn process_claimed_item(
        &self,
        item: &mut JournalItem,
        now: DateTime<Utc>,
    ) -> Result<InboundReport, WorkerError> {
        let (read, refs) = self.read_item(&item.raw, now).await?;
        let bytes = std::mem::take(&mut item.raw).len();
        // Returned to the system before the plan is applied, not when the allocator gets to
        // it: applying allocates again at once.
        crate::alloc::after_large(bytes);
        let applied = self.apply_read(&item.id, read, refs, now, false).await;
        crate::alloc::after_large(bytes);
        applied
    }

    /// Step 1 of an item: parsed, validated, its acknowledgements built, its items read
    /// (before any transaction: on SQLite a transaction holds the one writer lock from its
    /// start); with the reference sequence it drew from.
    async fn read_item(
        &self,
        raw: &[u8],
        now: DateTime<Utc>,
    ) -> Result<(ReadInbound, ReferenceSequence), WorkerError> {
        let first = self.store.reserve_references(REFERENCES_PER_ITEM).await?;
        let mut refs = ReferenceSequence::new(REFERENCE_PREFIX, first).expect("valid prefix");
        let read = read(raw, now, &mut refs, &self.routing);
        Ok((read, refs))
    }

    /// The rest of an item after [`InboundWorker::read_item`]: planned on what the store
    /// holds, applied and committed together with marking it processed (rolled back with
    /// `dry_run`).
    async fn apply_read(
        &self,
        journal_id: &str,
        read: ReadInbound,
        mut refs: ReferenceSequence,
        now: DateTime<Utc>,
        dry_run: bool,
    ) -> Result<InboundReport, WorkerError> {
        let mut tx = self.store.begin().await?;
        let mut plans = self
            .plan(&mut tx, vec![(Some(journal_id), read)], now, &mut refs)
            .await?;
        tx.apply_inbound_plans(&plans, &self.name, now).await?;
        if dry_run {
            tx.rollback().await?;
        } else {
            tx.commit().await?;
        }
        let plan = plans.pop().expect("one plan");
        match &plan.waits_for {
            Some(reference) => log_waiting(journal_id, reference),
            None => tracing::info!(
                effects = plan.report.effects.len(),
                replies = plan.report.replies.len(),
                "inbound processed"
            ),
        }
        Ok(plan.report)
    }

    /// Processes raw bytes as if received, without journaling and without writing anything
    /// (`replay --dry-run`).
    pub async fn dry_run(
        &self,
        raw: &[u8],
        now: DateTime<Utc>,
    ) -> Result<InboundReport, WorkerError> {
        let mut refs = ReferenceSequence::new("DRY", 1).expect("valid prefix");
        let read = read(raw, now, &mut refs, &self.routing);
        let mut conn = self.store.conn().await?;
        let mut plans = self
            .plan(&mut conn, vec![(None, read)], now, &mut refs)
            .await?;
        Ok(plans.pop().expect("one plan").report)
    }

    /// Loads what the items name (a few statements for all of them) and plans them in order,
    /// each on what the ones before it changed.
    async fn plan<C: crate::store::Connection>(
        &self,
        session: &mut crate::store::Session<C>,
        reads: Vec<(Option<&str>, ReadInbound)>,
        now: DateTime<Utc>,
        refs: &mut ReferenceSequence,
    ) -> Result<Vec<InboundPlan>, WorkerError> {
        let keys = BatchKeys::of(reads.iter().map(|(_, r)| r));
        let mut loaded = session.load_for_inbound(&keys).await?;
        let mut context = PlanContext {
            registry: Registry::embedded(),
            sender: &self.sender,
            partner_status: &self.partner_status,
            now,
            references: refs,
        };
        Ok(reads
            .into_iter()
            .map(|(journal_id, read)| plan_inbound(read, &mut loaded, journal_id, &mut context))
            .collect())
    }

    /// The batch in one transaction: read all (pure), load once, plan in order, commit once.
    async fn process_together(
        &self,
        items: &[JournalItem],
        now: DateTime<Utc>,
    ) -> Result<(), WorkerError> {
        let first = self
            .store
            .reserve_references(REFERENCES_PER_ITEM * items.len() as u32)
            .await?;
        let mut refs = ReferenceSequence::new(REFERENCE_PREFIX, first).expect("valid prefix");
        let reads: Vec<(Option<&str>, ReadInbound)> = items
            .iter()
            .map(|item| {
                (
                    Some(item.id.as_str()),
                    read(&item.raw, now, &mut refs, &self.routing),
                )
            })
            .collect();
        let mut tx = self.store.begin().await?;
        let plans = self.plan(&mut tx, reads, now, &mut refs).await?;
        tx.apply_inbound_plans(&plans, &self.name, now).await?;
        tx.commit().await?;
        for plan in &plans {
            if let (Some(reference), Some(id)) = (&plan.waits_for, &plan.report.journal_id) {
                log_waiting(id, reference);
            }
        }
        Ok(())
    }

    /// Processes one claimed item; on failure it is released (or, after
    /// `retry.max_attempts`, marked failed and put into clearing).
    async fn process_claimed(
        &self,
        mut item: JournalItem,
        now: DateTime<Utc>,
    ) -> Result<InboundReport, WorkerError> {
        let span = tracing::info_span!("inbound", journal = %item.id, partner = %item.partner, interchange = item.interchange_ref.as_deref().unwrap_or(""));
        match self
            .process_claimed_item(&mut item, now)
            .instrument(span)
            .await
        {
            Ok(report) => Ok(report),
            Err(e) if item.attempts >= i64::from(self.leases.max_attempts) => {
                // Tried often enough: keep it as failed, with the error, for an operator
                // (the bytes stay in the journal; it also goes to the clearing list).
                tracing::error!(journal = %item.id, error = %e, "inbound processing failed for good");
                let mut tx = self.store.begin().await?;
                tx.finish_inbound(
                    &item.id,
                    &self.name,
                    JournalState::Failed,
                    &json!({ "error": e.to_string(), "attempts": item.attempts }),
                )
                .await?;
                tx.add_clearing(
                    &item.id,
                    &format!("processing failed {} times: {e}", item.attempts),
                    now,
                )
                .await?;
                tx.commit().await?;
                Err(e)
            }
            Err(e) => {
                // Nothing of it was committed; give it back so that it is tried again.
                tracing::warn!(journal = %item.id, error = %e, "inbound processing failed, released");
                if let Ok(mut conn) = self.store.conn().await {
                    let _ = conn.release_inbound(&item.id, &self.name).await;
                }
                Err(e)
            }
        }
    }
}
