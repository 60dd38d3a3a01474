//! The gateway's work, one item at a time, around the pure cores: receive (journal first),
//! process an inbound interchange, send an outbox item, deliver a webhook. The loops of
//! `serve` and `replay` call these; each item's effects commit in one transaction.

use std::path::PathBuf;

use std::time::Duration;
use tracing::Instrument;

use chrono::{DateTime, NaiveDateTime, Utc};
use serde::Serialize;
use serde_json::json;

use crate::acks::{AckContext, ContrlPolicy, NoProcessingCheck};
use crate::config::{Config, RetryConfig, WebhookConfig};
use crate::edifact::{LineBreak, OwnedInterchange, ReferenceSequence, Writer};
use crate::grammar::Registry;
use crate::orders::{
    GridFeeReduction, GridFeeStatus, MeterOrder, MeterStatus, PartnerStatusRule,
    PartnerStatusRules, ReductionType, Sender,
};
use crate::plan::inbound::{
    decide, read_inbound, Candidates, DecideContext, Effect, LookupKey, ReadInbound,
};
use crate::plan::outbound::{send_grid_fee, send_meter_order, GridFeeBatch, OutboundError};
use crate::store::{
    HistoryEntry, InboundRecord, Inserted, JournalItem, JournalState, NewOutboxItem, OrderKind,
    OutboundRecord, OutboxItem, OutboxKind, SentRecord, Store, StoreError, StoreTx, Transport,
    WebhookEvent,
};

/// The prefix of every reference the gateway writes (UNB 0020, UNH 0062, BGM 1004).
pub const REFERENCE_PREFIX: &str = "MG";

/// References reserved per processed item (an answer needs at most CONTRL + APERAK + 55220,
/// three each).
const REFERENCES_PER_ITEM: u32 = 12;

/// Why a step failed.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Writing or reading a file failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was done.
        what: &'static str,
        /// Where.
        path: String,
        /// The error.
        source: std::io::Error,
    },
    /// Something is misconfigured.
    #[error("configuration: {0}")]
    Config(String),
}

/// What processing an inbound interchange did (printed by `replay`, kept as the journal
/// outcome).
#[derive(Debug, Clone, Serialize)]
pub struct InboundReport {
    /// The journal item (`None` in a dry run).
    pub journal_id: Option<String>,
    /// Sender, UNB reference, PIDs.
    pub facts: crate::plan::inbound::JournalFacts,
    /// Syntax errors with their positions.
    pub syntax_errors: Vec<String>,
    /// What each item did.
    pub effects: Vec<Effect>,
    /// What goes back to the partner (`CONTRL`, `APERAK`, `UTILMD 55220`), by message type.
    pub replies: Vec<String>,
}

impl InboundReport {
    /// True when something went to the clearing list (the message matched no order).
    pub fn has_unmatched(&self) -> bool {
        self.effects
            .iter()
            .any(|e| matches!(e, Effect::Clearing { .. }))
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

/// The gateway: the store, who we are, and the settings of the loops.
#[derive(Debug, Clone)]
pub struct Gateway {
    /// The store.
    pub store: Store,
    /// This instance's name in leases.
    pub worker: String,
    sender: Sender,
    partner_status: PartnerStatusRules,
    lease: Duration,
    retry: RetryConfig,
    outbox_dir: PathBuf,
    webhook: Option<WebhookConfig>,
    http: reqwest::Client,
    email: Option<std::sync::Arc<super::email::EmailSetup>>,
    as4: Option<crate::transport::as4::As4Endpoint>,
    /// Where the transports' handlers read the time.
    pub clock: crate::clock::Clock,
}

/// Turns the configured partner statuses into the domain's rules.
pub fn partner_status_rules(config: &Config) -> Result<PartnerStatusRules, String> {
    let mut rules = PartnerStatusRules::default();
    for partner in &config.partners {
        for (i, s) in partner.statuses.iter().enumerate() {
            let status: MeterStatus = serde_json::from_value(json!(s.status)).map_err(|_| {
                format!(
                    "partners[{}].statuses[{i}].status {:?}",
                    partner.id, s.status
                )
            })?;
            rules
                .add(
                    partner.id.clone(),
                    PartnerStatusRule {
                        message: s.message.clone(),
                        pid: s.pid,
                        code: s.code.clone(),
                        status,
                    },
                )
                .map_err(|e| format!("partner {}: {e}", partner.id))?;
        }
    }
    Ok(rules)
}

fn naive(now: DateTime<Utc>) -> NaiveDateTime {
    now.naive_utc()
}

/// Step 1 of the inbound path (pure): parse, validate, plan the acknowledgements, read the
/// items; the references the acknowledgements use are taken from `refs`.
fn read(raw: &[u8], now: DateTime<Utc>, refs: &mut ReferenceSequence) -> ReadInbound {
    let mut ack_context = AckContext {
        registry: Registry::embedded(),
        now: naive(now),
        contrl_policy: ContrlPolicy::OnErrors,
        references: refs.clone(),
        processing: &NoProcessingCheck,
    };
    let read = read_inbound(raw, &mut ack_context);
    *refs = ack_context.references;
    read
}

fn write(ic: &OwnedInterchange) -> Vec<u8> {
    Writer::new(ic.header.syntax)
        .with_line_break(LineBreak::None)
        .write_interchange(ic)
        .unwrap_or_default()
}

/// The references and document numbers of an interchange we wrote.
struct Written {
    interchange_ref: String,
    partner: String,
    /// (UNH reference, BGM document number, PID or message type) per message.
    messages: Vec<(String, String, String)>,
    /// The §14a product code of an ORDERS 17133 (`CAV+ZH9:::<code>`).
    product: Option<String>,
}

fn written_facts(bytes: &[u8]) -> Option<Written> {
    let env = crate::acks::read_envelope(bytes)?;
    let doc = crate::edifact::parse(bytes).ok()?;
    let ic = doc.interchanges().next()?;
    let product = ic
        .messages()
        .flat_map(|m| m.body().collect::<Vec<_>>())
        .find(|s| s.is(b"CAV") && s.value(1, 1) == "ZH9")
        .map(|s| s.value(1, 4).into_owned());
    let messages = ic
        .messages()
        .map(|m| {
            let document = m
                .body()
                .find(|s| s.is(b"BGM"))
                .map(|s| s.value(2, 1).into_owned())
                .unwrap_or_default();
            let pid = crate::grammar::message_pid(&m)
                .map(|p| p.to_string())
                .unwrap_or_else(|| m.message_type().into_owned());
            (m.reference().into_owned(), document, pid)
        })
        .collect();
    Some(Written {
        interchange_ref: env.control_reference,
        partner: env.recipient.id,
        messages,
        product,
    })
}

impl Gateway {
    /// A gateway over `store` with the settings of `config`.
    pub fn new(store: Store, config: &Config, worker: String) -> Result<Gateway, DaemonError> {
        Ok(Gateway {
            store,
            worker,
            sender: Sender {
                id: config.own_id.clone(),
                contact_name: None,
                contact_email: None,
            },
            partner_status: partner_status_rules(config).map_err(DaemonError::Config)?,
            lease: config.workers.lease,
            retry: config.retry,
            outbox_dir: config.outbox_dir(),
            webhook: config.webhook.clone(),
            http: reqwest::Client::builder()
                .timeout(
                    config
                        .webhook
                        .as_ref()
                        .map_or(Duration::from_secs(10), |w| w.timeout),
                )
                .build()
                .map_err(|e| DaemonError::Config(format!("HTTP client: {e}")))?,
            email: None,
            as4: None,
            clock: crate::clock::Clock::system(),
        })
    }

    /// The same gateway sending to e-mail partners through `setup` (without it, every
    /// partner gets the file drop).
    pub fn with_email(mut self, setup: std::sync::Arc<super::email::EmailSetup>) -> Gateway {
        self.email = Some(setup);
        self
    }

    /// The same gateway reading the time from `clock`.
    pub fn with_clock(mut self, clock: crate::clock::Clock) -> Gateway {
        self.clock = clock;
        self
    }

    /// Sends to the AS4 partners of `endpoint`'s registry over AS4.
    pub fn with_as4(mut self, endpoint: crate::transport::as4::As4Endpoint) -> Gateway {
        self.as4 = Some(endpoint);
        self
    }

    /// Journals a received interchange and commits it: only then may the transport
    /// acknowledge it (move the file, flag the mail, return the AS4 receipt). The same
    /// interchange (sender and UNB reference) delivered twice is stored once.
    pub async fn receive(
        &self,
        raw: Vec<u8>,
        transport: Transport,
        now: DateTime<Utc>,
    ) -> Result<Inserted, DaemonError> {
        let facts = crate::plan::inbound::journal_facts(&raw);
        let record = InboundRecord {
            partner: facts.sender.clone().unwrap_or_default(),
            transport,
            interchange_ref: facts.interchange_reference.clone(),
            message_refs: facts.message_references.clone(),
            pids: facts.pids.iter().map(|p| p.to_string()).collect(),
            document_numbers: Vec::new(),
            raw,
            received_at: now,
        };
        Ok(self.store.conn().await?.insert_inbound(&record).await?)
    }

    /// Claims the next inbound interchange and processes it. `None` when nothing waits.
    pub async fn process_next_inbound(
        &self,
        now: DateTime<Utc>,
    ) -> Result<Option<InboundReport>, DaemonError> {
        let Some(item) = self
            .store
            .conn()
            .await?
            .claim_inbound(&self.worker, now, self.lease)
            .await?
        else {
            return Ok(None);
        };
        self.process_claimed(item, now).await.map(Some)
    }

    /// Claims up to `limit` new inbound interchanges and processes them in ONE transaction
    /// (one commit for the batch instead of one per item: commits are what a durable store
    /// pays for). Each item's effects and its journal mark commit together, as with
    /// [`Gateway::process_next_inbound`]; if any item of the batch fails, the batch is rolled
    /// back and its items are processed one by one, so one bad item never holds up the others.
    /// Falls back to a single claim (which also takes items with an expired lease) when no new
    /// item waits. Returns how many items were processed.
    pub async fn process_inbound_batch(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Option<usize>, DaemonError> {
        let items = self
            .store
            .conn()
            .await?
            .claim_inbound_batch(&self.worker, now, self.lease, limit)
            .await?;
        if items.is_empty() {
            return Ok(self.process_next_inbound(now).await?.map(|_| 1));
        }
        if items.len() == 1 {
            let item = items.into_iter().next().expect("one item");
            return self.process_claimed(item, now).await.map(|_| Some(1));
        }
        let count = items.len();
        let first = self
            .store
            .reserve_references(REFERENCES_PER_ITEM * count as u32)
            .await?;
        let mut refs = ReferenceSequence::new(REFERENCE_PREFIX, first).expect("valid prefix");
        let reads: Vec<ReadInbound> = items
            .iter()
            .map(|item| read(&item.raw, now, &mut refs))
            .collect();
        let batch = async {
            let mut tx = self.store.begin().await?;
            for (item, read) in items.iter().zip(reads) {
                let report = self
                    .apply_inbound(&mut tx, read, Some(&item.id), now, &mut refs)
                    .await?;
                let outcome = serde_json::to_value(&report).unwrap_or(serde_json::Value::Null);
                tx.finish_inbound(&item.id, &self.worker, JournalState::Processed, &outcome)
                    .await?;
            }
            tx.commit().await?;
            Ok::<(), DaemonError>(())
        };
        match batch.await {
            Ok(()) => {
                tracing::info!(items = count, "inbound batch processed");
                Ok(Some(count))
            }
            Err(e) => {
                tracing::info!(error = %e, items = count, "inbound batch rolled back; one by one");
                for item in items {
                    let _ = self.process_claimed(item, now).await;
                }
                Ok(Some(count))
            }
        }
    }

    /// Processes one claimed item; on failure it is released (or, after
    /// `retry.max_attempts`, marked failed and put into clearing).
    async fn process_claimed(
        &self,
        item: JournalItem,
        now: DateTime<Utc>,
    ) -> Result<InboundReport, DaemonError> {
        let span = tracing::info_span!("inbound", journal = %item.id, partner = %item.partner, interchange = item.interchange_ref.as_deref().unwrap_or(""));
        match self.process_item(&item, now, false).instrument(span).await {
            Ok(report) => Ok(report),
            Err(e) if item.attempts >= i64::from(self.retry.max_attempts) => {
                // Tried often enough: keep it as failed, with the error, for an operator
                // (the bytes stay in the journal; it also goes to the clearing list).
                tracing::error!(journal = %item.id, error = %e, "inbound processing failed for good");
                let mut tx = self.store.begin().await?;
                tx.finish_inbound(
                    &item.id,
                    &self.worker,
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
                let _ = self
                    .store
                    .conn()
                    .await?
                    .release_inbound(&item.id, &self.worker)
                    .await;
                Err(e)
            }
        }
    }

    /// Processes raw bytes as if received, without journaling and without committing
    /// anything (`replay --dry-run`).
    pub async fn dry_run(
        &self,
        raw: &[u8],
        now: DateTime<Utc>,
    ) -> Result<InboundReport, DaemonError> {
        let mut refs = ReferenceSequence::new("DRY", 1).expect("valid prefix");
        let read = read(raw, now, &mut refs);
        let mut tx = self.store.begin().await?;
        let report = self
            .apply_inbound(&mut tx, read, None, now, &mut refs)
            .await?;
        tx.rollback().await?;
        Ok(report)
    }

    /// Processes one claimed journal item: everything it changes commits together with
    /// marking it processed.
    pub async fn process_item(
        &self,
        item: &JournalItem,
        now: DateTime<Utc>,
        dry_run: bool,
    ) -> Result<InboundReport, DaemonError> {
        let first = self.store.reserve_references(REFERENCES_PER_ITEM).await?;
        let mut refs = ReferenceSequence::new(REFERENCE_PREFIX, first).expect("valid prefix");
        // Parsing, validating and building the acknowledgements before the transaction: on
        // SQLite a transaction holds the one writer lock from its start.
        let read = read(&item.raw, now, &mut refs);
        let mut tx = self.store.begin().await?;
        let report = self
            .apply_inbound(&mut tx, read, Some(&item.id), now, &mut refs)
            .await?;
        let outcome = serde_json::to_value(&report).unwrap_or(serde_json::Value::Null);
        tx.finish_inbound(&item.id, &self.worker, JournalState::Processed, &outcome)
            .await?;
        if dry_run {
            tx.rollback().await?;
        } else {
            tx.commit().await?;
        }
        tracing::info!(
            effects = report.effects.len(),
            replies = report.replies.len(),
            "inbound processed"
        );
        Ok(report)
    }

    async fn apply_inbound(
        &self,
        tx: &mut StoreTx,
        read: ReadInbound,
        journal_id: Option<&str>,
        now: DateTime<Utc>,
        refs: &mut ReferenceSequence,
    ) -> Result<InboundReport, DaemonError> {
        let registry = Registry::embedded();
        let partner = read.facts.sender.clone().unwrap_or_default();
        let interchange_ref = read.facts.interchange_reference.clone().unwrap_or_default();

        // Load what the items name.
        let mut candidates = Candidates::default();
        let mut versions: std::collections::HashMap<String, i64> = Default::default();
        let mut sent_refs: Vec<String> = Vec::new();
        let mut sent_docs: Vec<String> = Vec::new();
        for key in read.items.iter().flat_map(|i| i.keys()) {
            let (malo, melo, doc) = match &key {
                LookupKey::OrderDocument(d) => (None, None, Some(d.as_str())),
                LookupKey::MarketLocation(m) => (Some(m.as_str()), None, None),
                LookupKey::MeteringLocation(m) => (None, Some(m.as_str()), None),
                LookupKey::SentInterchange(r) => {
                    sent_refs.push(r.clone());
                    continue;
                }
                LookupKey::SentDocument(d) => {
                    sent_docs.push(d.clone());
                    continue;
                }
            };
            if malo.is_some() || doc.is_some() {
                for r in tx.grid_fee_reductions_for_matching(malo, doc).await? {
                    push_grid(&mut candidates, &mut versions, r);
                }
            }
            if melo.is_some() || doc.is_some() {
                for r in tx.meter_orders_for_matching(melo, doc).await? {
                    push_meter(&mut candidates, &mut versions, r);
                }
            }
        }
        if !sent_refs.is_empty() || !sent_docs.is_empty() {
            let refs_: Vec<&str> = sent_refs.iter().map(String::as_str).collect();
            let docs_: Vec<&str> = sent_docs.iter().map(String::as_str).collect();
            let snapshot = tx.sent_snapshot(&partner, &refs_, &docs_).await?;
            for m in &snapshot.messages {
                if let Some(id) = &m.order {
                    if versions.contains_key(id) {
                        continue;
                    }
                    if id.starts_with("gfr_") {
                        if let Some(r) = tx.grid_fee(id).await? {
                            push_grid(&mut candidates, &mut versions, r);
                        }
                    } else if let Some(r) = tx.meter_order(id).await? {
                        push_meter(&mut candidates, &mut versions, r);
                    }
                }
            }
            candidates.sent = snapshot.messages;
        }

        let effects = {
            let mut ctx = DecideContext {
                registry,
                sender: &self.sender,
                partner: &partner,
                interchange_reference: &interchange_ref,
                partner_status: &self.partner_status,
                now: naive(now),
                references: refs,
            };
            decide(&read.items, &candidates, &mut ctx)
        };

        // Commit the effects.
        let mut replies = Vec::new();
        for reply in &read.replies {
            let bytes = write(reply);
            let kind = reply
                .messages
                .first()
                .map(|m| m.identifier.message_type.clone())
                .unwrap_or_default();
            replies.push(kind);
            tx.add_outbox(
                &NewOutboxItem {
                    kind: OutboxKind::Ack,
                    order: None,
                    partner: partner.clone(),
                    payload: Some(bytes),
                    journal_id: journal_id.map(str::to_string),
                },
                now,
            )
            .await?;
        }
        for effect in &effects {
            // An order changed: save it (optimistic version), then history and webhook.
            let changed = match effect {
                Effect::GridFee {
                    from,
                    order,
                    event,
                    message,
                } => {
                    let version = versions.get(&order.id).copied().unwrap_or(1);
                    let new_version = tx.save_grid_fee(order, version, now).await?;
                    versions.insert(order.id.clone(), new_version);
                    let status = crate::store::serde_text(&order.status);
                    Some((
                        OrderKind::GridFeeReduction,
                        &order.id,
                        &order.subscription,
                        from,
                        status,
                        *event,
                        message,
                    ))
                }
                Effect::Meter {
                    from,
                    order,
                    event,
                    message,
                } => {
                    let version = versions.get(&order.id).copied().unwrap_or(1);
                    let new_version = tx.save_meter_order(order, version, now).await?;
                    versions.insert(order.id.clone(), new_version);
                    let status = crate::store::serde_text(&order.status);
                    Some((
                        OrderKind::MeterOrder,
                        &order.id,
                        &order.subscription,
                        from,
                        status,
                        *event,
                        message,
                    ))
                }
                _ => None,
            };
            if let Some((kind, id, subscription, from, to, event, message)) = changed {
                self.record_change(
                    tx,
                    kind,
                    id,
                    subscription,
                    from,
                    &to,
                    event,
                    journal_id,
                    message,
                    now,
                )
                .await?;
                continue;
            }
            match effect {
                Effect::Clearing { reason, .. } => {
                    if let Some(j) = journal_id {
                        tx.add_clearing(j, reason, now).await?;
                    }
                }
                Effect::Send {
                    partner: to,
                    interchange,
                    pid,
                    ..
                } => {
                    replies.push(format!("UTILMD {pid}"));
                    tx.add_outbox(
                        &NewOutboxItem {
                            kind: OutboxKind::Ack,
                            order: None,
                            partner: to.clone(),
                            payload: Some(write(interchange)),
                            journal_id: journal_id.map(str::to_string),
                        },
                        now,
                    )
                    .await?;
                }
                Effect::GridFee { .. }
                | Effect::Meter { .. }
                | Effect::NotApplied { .. }
                | Effect::Nothing { .. } => {}
            }
        }
        Ok(InboundReport {
            journal_id: journal_id.map(str::to_string),
            facts: read.facts,
            syntax_errors: read.syntax_errors,
            effects,
            replies,
        })
    }

    #[allow(clippy::too_many_arguments)]
    async fn record_change(
        &self,
        tx: &mut StoreTx,
        kind: OrderKind,
        id: &str,
        subscription: &str,
        from: &str,
        to: &str,
        event: Option<&'static str>,
        journal_id: Option<&str>,
        message: &str,
        now: DateTime<Utc>,
    ) -> Result<(), DaemonError> {
        tx.add_history(&HistoryEntry {
            order_kind: kind,
            order_id: id.to_string(),
            from: Some(from.to_string()),
            to: to.to_string(),
            topic: event.map(str::to_string),
            journal_id: journal_id.map(str::to_string),
            at: now,
            detail: Some(json!({ "message": message })),
        })
        .await?;
        if let Some(topic) = event {
            let mut context = json!({ kind.as_str(): id, "subscription": subscription });
            if let Some(j) = journal_id {
                context["journal"] = json!(j);
            }
            tx.add_webhook(&WebhookEvent::new(topic, context, now), now)
                .await?;
        }
        Ok(())
    }

    /// Claims the next outbox item and sends it. `None` when nothing is due.
    pub async fn send_next_outbox(
        &self,
        now: DateTime<Utc>,
    ) -> Result<Option<OutboundReport>, DaemonError> {
        let Some(item) = self
            .store
            .conn()
            .await?
            .claim_outbox(&self.worker, now, self.lease)
            .await?
        else {
            return Ok(None);
        };
        let span = tracing::info_span!("outbound", outbox = %item.id, partner = %item.partner, order = item.order_id.as_deref().unwrap_or(""));
        let outcome = self.send_item(&item, now).instrument(span).await;
        let outcome = match outcome {
            Ok(o) => o,
            Err(Failure::Permanent(reason)) => {
                tracing::warn!(outbox = %item.id, %reason, "outbox item parked");
                self.store
                    .conn()
                    .await?
                    .park_outbox(&item.id, &self.worker, &reason)
                    .await?;
                format!("parked: {reason}")
            }
            Err(Failure::Transient(reason)) => {
                let attempt = u32::try_from(item.attempts).unwrap_or(u32::MAX);
                if attempt >= self.retry.max_attempts {
                    self.store
                        .conn()
                        .await?
                        .park_outbox(
                            &item.id,
                            &self.worker,
                            &format!("gave up after {attempt} attempts: {reason}"),
                        )
                        .await?;
                    format!("parked after {attempt} attempts: {reason}")
                } else {
                    let wait = crate::plan::webhooks::backoff(
                        attempt.saturating_sub(1),
                        self.retry.base,
                        self.retry.max,
                        &item.id,
                    );
                    let next = now + chrono::Duration::from_std(wait).unwrap_or_default();
                    tracing::info!(outbox = %item.id, %reason, ?wait, "outbox item retried later");
                    self.store
                        .conn()
                        .await?
                        .retry_outbox(&item.id, &self.worker, next, &reason)
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

    async fn send_item(&self, item: &OutboxItem, now: DateTime<Utc>) -> Result<String, Failure> {
        // 1. The bytes: prebuilt (acks, or an order built before a crash), or built now and
        //    kept before anything leaves.
        let mut batch_rows: Vec<(GridFeeReduction, i64)> = Vec::new();
        let mut meter: Option<(MeterOrder, i64)> = None;
        let mut built_bytes: Option<Vec<u8>> = None;
        if item.kind == OutboxKind::Order {
            let id = item.order_id.clone().unwrap_or_default();
            match item.order_kind {
                Some(OrderKind::GridFeeReduction) => {
                    let Some(record) = self
                        .store
                        .conn()
                        .await?
                        .grid_fee(&id)
                        .await
                        .map_err(Failure::store)?
                    else {
                        return Err(Failure::Permanent(format!("reduction {id} not found")));
                    };
                    if record.order.status != GridFeeStatus::Intended {
                        self.store
                            .conn()
                            .await?
                            .mark_outbox_sent(&item.id, &self.worker, now)
                            .await
                            .map_err(Failure::store)?;
                        return Ok(format!(
                            "nothing to send: reduction {id} is {:?} (sent with another)",
                            record.order.status
                        ));
                    }
                    // The intended reductions of the subscription at the same market location
                    // and date go in one ORDERS (Modul 1 and 3 ordered together). Every one
                    // of them has an outbox item (confirming queues them all); the item of
                    // the first (smallest id) sends for all, the others stand down, so that
                    // two workers never send the batch twice.
                    let mut tx = self.store.begin().await.map_err(Failure::store)?;
                    let all = tx
                        .grid_fees_of_subscription(&record.order.subscription)
                        .await
                        .map_err(Failure::store)?;
                    drop(tx);
                    for r in &all {
                        if r.order.status == GridFeeStatus::Intended
                            && r.order.market_location == record.order.market_location
                            && r.effective_date == record.effective_date
                        {
                            batch_rows.push((r.order.clone(), r.version));
                        }
                    }
                    batch_rows.sort_by(|a, b| a.0.id.cmp(&b.0.id));
                    if batch_rows.is_empty() {
                        batch_rows.push((record.order.clone(), record.version));
                    }
                    let leader = batch_rows[0].0.id.clone();
                    if leader != id {
                        self.store
                            .conn()
                            .await?
                            .mark_outbox_sent(&item.id, &self.worker, now)
                            .await
                            .map_err(Failure::store)?;
                        return Ok(format!("sent together with {leader}'s ORDERS"));
                    }
                    if item.payload.is_none() {
                        let active: Vec<ReductionType> = all
                            .iter()
                            .filter(|r| r.order.status == GridFeeStatus::Activated)
                            .map(|r| r.order.reduction_type)
                            .collect();
                        let rows: Vec<GridFeeReduction> =
                            batch_rows.iter().map(|(r, _)| r.clone()).collect();
                        let first = self
                            .store
                            .reserve_references(REFERENCES_PER_ITEM)
                            .await
                            .map_err(Failure::store)?;
                        let mut refs =
                            ReferenceSequence::new(REFERENCE_PREFIX, first).expect("valid prefix");
                        let (built, _) = send_grid_fee(
                            Registry::embedded(),
                            &self.sender,
                            &GridFeeBatch {
                                rows: &rows,
                                active: &active,
                                effective_date: record.effective_date,
                            },
                            naive(now),
                            &mut refs,
                        )
                        .map_err(|e: OutboundError| Failure::Permanent(e.to_string()))?;
                        let bytes = write(&built.interchange);
                        self.keep_payload(item, &bytes).await?;
                        built_bytes = Some(bytes);
                    }
                }
                Some(OrderKind::MeterOrder) => {
                    let Some(record) = self
                        .store
                        .conn()
                        .await?
                        .meter_order(&id)
                        .await
                        .map_err(Failure::store)?
                    else {
                        return Err(Failure::Permanent(format!("meter order {id} not found")));
                    };
                    if record.order.status != MeterStatus::Created {
                        self.store
                            .conn()
                            .await?
                            .mark_outbox_sent(&item.id, &self.worker, now)
                            .await
                            .map_err(Failure::store)?;
                        return Ok(format!(
                            "nothing to send: meter order {id} is {:?}",
                            record.order.status
                        ));
                    }
                    if item.payload.is_none() {
                        let first = self
                            .store
                            .reserve_references(REFERENCES_PER_ITEM)
                            .await
                            .map_err(Failure::store)?;
                        let mut refs =
                            ReferenceSequence::new(REFERENCE_PREFIX, first).expect("valid prefix");
                        let (built, _) = send_meter_order(
                            Registry::embedded(),
                            &self.sender,
                            &record.order,
                            record.wanted_date,
                            naive(now),
                            &mut refs,
                        )
                        .map_err(|e| Failure::Permanent(e.to_string()))?;
                        let bytes = write(&built.interchange);
                        self.keep_payload(item, &bytes).await?;
                        built_bytes = Some(bytes);
                    }
                    meter = Some((record.order, record.version));
                }
                None => return Err(Failure::Permanent("order item without order kind".into())),
            }
        }
        let Some(payload) = item.payload.clone().or(built_bytes) else {
            return Err(Failure::Permanent(
                "an acknowledgement without bytes".into(),
            ));
        };
        let Some(written) = written_facts(&payload) else {
            return Err(Failure::Permanent(
                "the outbox payload is not a readable interchange".into(),
            ));
        };

        // 2. Out through the partner's transport. The file drop is idempotent (the same bytes
        //    to the same name on a retry after a crash). A mail cannot be taken back: a crash
        //    after the SMTP server took it and before the commit below sends it once more,
        //    with the same bytes and UNB reference, which the partner deduplicates (BDEW
        //    receivers must drop a repeated interchange reference).
        let email_partner = self
            .email
            .as_ref()
            .and_then(|e| e.partner(&written.partner).map(|p| (e, p)));
        let as4 = self
            .as4
            .as_ref()
            .filter(|e| e.knows(written.partner.as_str()));
        let (transport, sent_as) = match (email_partner, as4) {
            (_, Some(endpoint)) => {
                let message_id = self
                    .send_as4(endpoint, item, &written, &payload, now)
                    .await?;
                (
                    Transport::As4,
                    format!("AS4 message {message_id} to {}", written.partner),
                )
            }
            (Some((setup, partner)), None) => {
                let name = self.send_mail(setup, partner, &payload, now).await?;
                (
                    Transport::Email,
                    format!("mail {name} to {}", partner.address),
                )
            }
            (None, None) => {
                let path = self.write_outbox_file(&written, &payload).await?;
                (Transport::File, path.display().to_string())
            }
        };

        // 3. Record it, and move the orders on, in one transaction.
        let mut tx = self.store.begin().await.map_err(Failure::store)?;
        let journal_id = tx
            .insert_outbound_journal(&OutboundRecord {
                id: None,
                partner: written.partner.clone(),
                transport,
                interchange_ref: written.interchange_ref.clone(),
                message_refs: written.messages.iter().map(|m| m.0.clone()).collect(),
                pids: written.messages.iter().map(|m| m.2.clone()).collect(),
                document_numbers: written.messages.iter().map(|m| m.1.clone()).collect(),
                raw: payload.clone(),
                sent_at: now,
            })
            .await
            .map_err(Failure::store)?;
        let document = written
            .messages
            .first()
            .map(|m| m.1.clone())
            .unwrap_or_default();
        let order_refs: Vec<(OrderKind, String)> = if let Some((m, _)) = &meter {
            vec![(OrderKind::MeterOrder, m.id.clone())]
        } else {
            batch_rows
                .iter()
                .map(|(r, _)| (OrderKind::GridFeeReduction, r.id.clone()))
                .collect()
        };
        for (message_ref, document_number, _) in &written.messages {
            let orders: Vec<Option<(OrderKind, String)>> = if order_refs.is_empty() {
                vec![None]
            } else {
                order_refs.iter().cloned().map(Some).collect()
            };
            for order in orders {
                tx.record_sent(
                    &SentRecord {
                        partner: written.partner.clone(),
                        interchange_ref: written.interchange_ref.clone(),
                        message_ref: message_ref.clone(),
                        document_number: document_number.clone(),
                        order,
                        journal_id: journal_id.clone(),
                    },
                    now,
                )
                .await
                .map_err(Failure::store)?;
            }
        }
        for (row, version) in &batch_rows {
            // The product as written in the ORDERS (CAV+ZH9), also after a crash.
            let Some(product) = written
                .product
                .as_deref()
                .and_then(crate::orders::ModuleProduct::from_code)
            else {
                return Err(Failure::Permanent(
                    "the built ORDERS 17133 names no §14a product (CAV+ZH9)".into(),
                ));
            };
            let applied = row
                .clone()
                .ordered(product, document.clone())
                .map_err(|e| Failure::Permanent(e.to_string()))?;
            tx.save_grid_fee(&applied.order, *version, now)
                .await
                .map_err(Failure::store)?;
            self.record_change(
                &mut tx,
                OrderKind::GridFeeReduction,
                &row.id,
                &row.subscription,
                "intended",
                "ordered",
                applied.event,
                Some(&journal_id),
                &written.interchange_ref,
                now,
            )
            .await
            .map_err(|e| Failure::Transient(e.to_string()))?;
            if row.id != item.order_id.clone().unwrap_or_default() {
                // The others' items, if still waiting, have nothing left to do.
                tx.drop_pending_outbox(&row.id)
                    .await
                    .map_err(Failure::store)?;
            }
        }
        if let Some((order, version)) = &meter {
            let applied = order
                .clone()
                .placed(document.clone())
                .map_err(|e| Failure::Permanent(e.to_string()))?;
            tx.save_meter_order(&applied.order, *version, now)
                .await
                .map_err(Failure::store)?;
            self.record_change(
                &mut tx,
                OrderKind::MeterOrder,
                &order.id,
                &order.subscription,
                "created",
                "placed",
                applied.event,
                Some(&journal_id),
                &written.interchange_ref,
                now,
            )
            .await
            .map_err(|e| Failure::Transient(e.to_string()))?;
        }
        tx.mark_outbox_sent(&item.id, &self.worker, now)
            .await
            .map_err(Failure::store)?;
        tx.commit().await.map_err(Failure::store)?;
        tracing::info!(to = %sent_as, interchange = %written.interchange_ref, "sent");
        Ok(format!("sent {} as {sent_as}", written.interchange_ref))
    }

    /// Signs, encrypts and mails `payload` to an e-mail partner; returns the file name.
    async fn send_mail(
        &self,
        setup: &super::email::EmailSetup,
        partner: &super::email::EmailPartner,
        payload: &[u8],
        now: DateTime<Utc>,
    ) -> Result<String, Failure> {
        let Some(smtp) = &setup.smtp else {
            return Err(Failure::Permanent(
                "partner uses e-mail but [email.smtp] is not configured".into(),
            ));
        };
        let (name, mail) = setup
            .outbound_mail(partner, payload, now)
            .map_err(|e| Failure::Permanent(e.to_string()))?;
        crate::transport::email::send(
            smtp,
            &setup.address.email,
            std::slice::from_ref(&partner.address.email),
            &mail,
        )
        .await
        .map_err(|e| {
            // The server's answer goes into the outbox item's error as it came.
            if e.is_transient() {
                Failure::Transient(e.to_string())
            } else {
                Failure::Permanent(e.to_string())
            }
        })?;
        Ok(name)
    }

    /// Sends `payload` over AS4 with the message id and timestamp fixed for this outbox item
    /// (made and committed before the first attempt, so every retry sends the same message,
    /// which the partner deduplicates), and records the verified receipt. Returns the message
    /// id. Retryable failures (connection, timeout, `EBMS:0202`, an unreadable answer) are
    /// transient; a refusal by the partner (`EBMS:0004`, `0101`, `0102` …) or a configuration
    /// error parks the item with the partner's code.
    async fn send_as4(
        &self,
        endpoint: &crate::transport::as4::As4Endpoint,
        item: &OutboxItem,
        written: &Written,
        payload: &[u8],
        now: DateTime<Utc>,
    ) -> Result<String, Failure> {
        let fixed = self
            .store
            .conn()
            .await?
            .as4_outbound(
                &item.id,
                written.partner.as_str(),
                &format!(
                    "{}@{}",
                    crate::ids::new_id("as4", now).trim_start_matches("as4_"),
                    self.sender.id
                ),
                now,
            )
            .await
            .map_err(Failure::store)?;
        if fixed.delivered_at.is_some() {
            // Receipted before a crash that came before the commit: do not send again.
            return Ok(fixed.message_id);
        }
        let name =
            crate::transport::email::TransferFileName::of_interchange(payload, now.date_naive())
                .map(|n| n.to_string())
                .unwrap_or_else(|_| format!("{}.txt", written.interchange_ref));
        match endpoint
            .send(
                written.partner.as_str(),
                payload.to_vec(),
                &name,
                &fixed.message_id,
                std::time::SystemTime::from(fixed.timestamp),
            )
            .await
        {
            Ok(delivered) => {
                self.store
                    .conn()
                    .await?
                    .as4_delivered(&item.id, &delivered.receipt_record_id, now)
                    .await
                    .map_err(Failure::store)?;
                tracing::info!(message = %fixed.message_id, signer = %delivered.receipt_signer, "AS4 receipt verified");
                Ok(fixed.message_id)
            }
            Err(e) if e.retryable => Err(Failure::Transient(format!(
                "AS4 message {}: {e}",
                fixed.message_id
            ))),
            Err(e) => Err(Failure::Permanent(format!(
                "AS4 message {}: {e}",
                fixed.message_id
            ))),
        }
    }

    async fn keep_payload(&self, item: &OutboxItem, bytes: &[u8]) -> Result<(), Failure> {
        self.store
            .conn()
            .await?
            .set_outbox_payload(&item.id, &self.worker, bytes)
            .await
            .map_err(Failure::store)
    }

    async fn write_outbox_file(&self, written: &Written, bytes: &[u8]) -> Result<PathBuf, Failure> {
        let dir = self.outbox_dir.clone();
        let name = format!("{}_{}.edi", written.partner, written.interchange_ref);
        let bytes = bytes.to_vec();
        tokio::task::spawn_blocking(move || super::filedrop::write_atomically(&dir, &name, &bytes))
            .await
            .map_err(|e| Failure::Transient(e.to_string()))?
            .map_err(|e| Failure::Transient(e.to_string()))
    }

    /// Claims the next webhook delivery and POSTs it. `None` when nothing is due or no
    /// webhook URL is configured (events are kept until one is).
    pub async fn deliver_next_webhook(
        &self,
        now: DateTime<Utc>,
    ) -> Result<Option<String>, DaemonError> {
        let Some(config) = &self.webhook else {
            return Ok(None);
        };
        let Some(delivery) = self
            .store
            .conn()
            .await?
            .claim_webhook(&self.worker, now, self.lease)
            .await?
        else {
            return Ok(None);
        };
        let signature = crate::plan::webhooks::signature(
            config.secret.as_bytes(),
            now,
            delivery.payload.as_bytes(),
        );
        let result = self
            .http
            .post(&config.url)
            .header("content-type", "application/json")
            .header(crate::plan::webhooks::SIGNATURE_HEADER, signature)
            .header("Mako-Event-Id", &delivery.id)
            .body(delivery.payload.clone())
            .send()
            .await;
        let error = match result {
            Ok(r) if r.status().is_success() => None,
            Ok(r) => Some(format!("HTTP {}", r.status())),
            Err(e) => Some(e.to_string()),
        };
        match error {
            None => {
                self.store
                    .conn()
                    .await?
                    .mark_webhook_delivered(&delivery.id, &self.worker, now)
                    .await?;
                Ok(Some(format!("{} delivered", delivery.id)))
            }
            Some(e) => {
                let attempt = u32::try_from(delivery.attempts).unwrap_or(u32::MAX);
                if attempt >= self.retry.max_attempts {
                    self.store
                        .conn()
                        .await?
                        .park_webhook(&delivery.id, &self.worker, &e)
                        .await?;
                    Ok(Some(format!("{} parked: {e}", delivery.id)))
                } else {
                    let wait = crate::plan::webhooks::backoff(
                        attempt.saturating_sub(1),
                        self.retry.base,
                        self.retry.max,
                        &delivery.id,
                    );
                    let next = now + chrono::Duration::from_std(wait).unwrap_or_default();
                    self.store
                        .conn()
                        .await?
                        .retry_webhook(&delivery.id, &self.worker, next, &e)
                        .await?;
                    Ok(Some(format!("{} retry at {next}: {e}", delivery.id)))
                }
            }
        }
    }
}

fn push_grid(
    c: &mut Candidates,
    versions: &mut std::collections::HashMap<String, i64>,
    r: crate::store::GridFeeRecord,
) {
    if versions.insert(r.order.id.clone(), r.version).is_none() {
        c.reductions.push(r.order);
    }
}

fn push_meter(
    c: &mut Candidates,
    versions: &mut std::collections::HashMap<String, i64>,
    r: crate::store::MeterOrderRecord,
) {
    if versions.insert(r.order.id.clone(), r.version).is_none() {
        c.meters.push(r.order);
    }
}

/// A failed send: try again later, or park for an operator.
#[derive(Debug)]
enum Failure {
    Transient(String),
    Permanent(String),
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Failure {
        Failure::store(e)
    }
}

impl Failure {
    fn store(e: StoreError) -> Failure {
        if e.is_transient() {
            Failure::Transient(e.to_string())
        } else {
            Failure::Permanent(e.to_string())
        }
    }
}
