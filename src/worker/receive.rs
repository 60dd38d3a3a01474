//! The one inbound sink: every transport (file drop, e-mail, AS4) hands a received interchange
//! to [`Journal::receive`], which journals it and commits; only then may the transport
//! acknowledge it (move the file, flag the mail, return the AS4 receipt).
//!
//! **Group commit.** Interchanges received at the same time share one transaction: a caller
//! queues its record, and whoever holds the writer's turn journals everything queued at that
//! moment in one transaction and answers each caller after the commit. A lone caller writes
//! alone at once (no waiting for company); under load the commits (an fsync each) are shared
//! by up to [`MAX_GROUP`] interchanges. Nobody is answered before the commit holding their
//! record, so acknowledging after `receive` returns stays safe. When a group's transaction
//! fails, each of its records is journaled on its own, so one bad interchange (too big for
//! the database, say) fails alone.
//!
//! **AS4 in the same commit** ([`Journal::receive_as4`], issue 16): a record may bring its AS4
//! request and dedup key along; the group's transaction then also settles the key as accepted
//! and records the request as receipted, so that a received AS4 message costs one (shared)
//! commit instead of four. A key that another delivery accepted or holds meanwhile leaves that
//! record unwritten ([`Arrived::KeyTaken`]); the rest of the group goes on.

use std::sync::{Arc, Mutex, PoisonError};

use chrono::{DateTime, Utc};
use tokio::sync::oneshot;

use crate::plan::inbound::journal_facts;
use crate::store::{Arrived, As4Arrival, InboundRecord, Inserted, Store, StoreError, Transport};
use crate::transport::{BoxFuture, InboundSink};

/// Most interchanges journaled in one transaction.
pub const MAX_GROUP: usize = 256;

/// A record waiting for the writer, and where its result goes.
struct Waiting {
    record: InboundRecord,
    /// The AS4 request and dedup key written with it, if it came over AS4 (issue 16).
    as4: Option<As4Arrival>,
    reply: oneshot::Sender<Result<Arrived, StoreError>>,
}

/// Journals received interchanges.
#[derive(Clone)]
pub struct Journal {
    store: Store,
    /// Records not yet written, oldest first.
    queue: Arc<Mutex<Vec<Waiting>>>,
    /// The writer's turn (fair: callers get it in the order they asked).
    writer: Arc<tokio::sync::Mutex<()>>,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal")
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

impl Journal {
    /// A journal over `store`.
    pub fn new(store: Store) -> Journal {
        Journal {
            store,
            queue: Arc::new(Mutex::new(Vec::new())),
            writer: Arc::new(tokio::sync::Mutex::new(())),
        }
    }

    /// Journals a received interchange and commits it (with whatever else was received at
    /// the same moment). The same interchange (sender and UNB reference) delivered twice is
    /// stored once ([`Inserted::Duplicate`]).
    pub async fn receive(
        &self,
        raw: Vec<u8>,
        transport: Transport,
        now: DateTime<Utc>,
    ) -> Result<Inserted, StoreError> {
        match self.enqueue(record_of(raw, transport, now), None).await? {
            Arrived::Journaled(inserted) => Ok(inserted),
            // Only a record with an AS4 key can find it taken.
            Arrived::KeyTaken => Err(abandoned()),
        }
    }

    /// Journals an interchange received in an AS4 message, and in the same commit settles
    /// the message's dedup key as accepted and records the request as receipted
    /// ([`crate::transport::InboundSink::receive_as4`]).
    pub async fn receive_as4(
        &self,
        raw: Vec<u8>,
        arrival: As4Arrival,
        now: DateTime<Utc>,
    ) -> Result<Arrived, StoreError> {
        self.enqueue(record_of(raw, Transport::As4, now), Some(arrival))
            .await
    }

    /// Queues `record` for the next group commit and waits for its answer; a large one's
    /// memory is given back once it is written ([`crate::alloc::after_large`]).
    async fn enqueue(
        &self,
        record: InboundRecord,
        as4: Option<As4Arrival>,
    ) -> Result<Arrived, StoreError> {
        let bytes = record.raw.len();
        let arrived = self.wait_for_commit(record, as4).await;
        crate::alloc::after_large(bytes);
        arrived
    }

    async fn wait_for_commit(
        &self,
        record: InboundRecord,
        as4: Option<As4Arrival>,
    ) -> Result<Arrived, StoreError> {
        let (reply, mut result) = oneshot::channel();
        self.queue
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Waiting { record, as4, reply });
        loop {
            // Answered by a writer, or our turn to write what is queued.
            let turn = tokio::select! {
                biased;
                done = &mut result => return done.unwrap_or_else(|_| Err(abandoned())),
                turn = Arc::clone(&self.writer).lock_owned() => turn,
            };
            // A writer before us may have written our record while we took the turn.
            match result.try_recv() {
                Ok(done) => return done,
                Err(oneshot::error::TryRecvError::Closed) => return Err(abandoned()),
                Err(oneshot::error::TryRecvError::Empty) => {}
            }
            let group: Vec<Waiting> = {
                let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
                let n = queue.len().min(MAX_GROUP);
                queue.drain(..n).collect()
            };
            // On a task of its own: a caller that gives up (its future dropped) never leaves
            // a group half written or its callers unanswered.
            let journal = self.clone();
            let _ = tokio::spawn(async move {
                journal.write(group).await;
                drop(turn);
            })
            .await;
            // More than MAX_GROUP were ahead of us: our record waits for the next turn.
        }
    }

    /// Writes a group in one transaction and answers every caller; a group that fails is
    /// written record by record.
    async fn write(&self, group: Vec<Waiting>) {
        if group.is_empty() {
            return;
        }
        if group.len() > 1 || group[0].as4.is_some() {
            match self.write_together(&group).await {
                Ok(results) => {
                    for (waiting, result) in group.into_iter().zip(results) {
                        let _ = waiting.reply.send(Ok(result));
                    }
                    return;
                }
                Err(e) if group.len() > 1 => {
                    tracing::warn!(
                        error = %e,
                        records = group.len(),
                        "journaling a group failed; journaling its records one by one"
                    );
                }
                Err(e) => {
                    let _ = group.into_iter().next().map(|w| w.reply.send(Err(e)));
                    return;
                }
            }
        }
        for waiting in group {
            let result = if waiting.as4.is_some() {
                self.write_together(std::slice::from_ref(&waiting))
                    .await
                    .map(|mut r| r.remove(0))
            } else {
                match self.store.conn().await {
                    Ok(mut conn) => conn
                        .insert_inbound(&waiting.record)
                        .await
                        .map(Arrived::Journaled),
                    Err(e) => Err(e),
                }
            };
            let _ = waiting.reply.send(result);
        }
    }

    /// One transaction: the AS4 keys settled first (a taken key leaves its record out), then
    /// the records journaled in one statement, then the AS4 requests recorded with their
    /// journal ids.
    async fn write_together(&self, group: &[Waiting]) -> Result<Vec<Arrived>, StoreError> {
        let mut tx = self.store.begin().await?;
        let mut results = vec![Arrived::KeyTaken; group.len()];
        let mut journaled = Vec::with_capacity(group.len());
        for (i, waiting) in group.iter().enumerate() {
            match &waiting.as4 {
                Some(as4) => {
                    if tx
                        .as4_accept_unclaimed(&as4.dedup_key, waiting.record.received_at)
                        .await?
                    {
                        journaled.push(i);
                    }
                }
                None => journaled.push(i),
            }
        }
        let records: Vec<&InboundRecord> = journaled.iter().map(|&i| &group[i].record).collect();
        let inserted = tx.insert_inbound_many(&records).await?;
        for (&i, inserted) in journaled.iter().zip(inserted) {
            if let Some(as4) = &group[i].as4 {
                tx.insert_as4_arrival(as4, inserted.journal_id(), group[i].record.received_at)
                    .await?;
            }
            results[i] = Arrived::Journaled(inserted);
        }
        tx.commit().await?;
        Ok(results)
    }
}

fn abandoned() -> StoreError {
    StoreError::Abandoned {
        what: "journaling an inbound interchange",
    }
}

/// The journal record of received bytes: the envelope's facts, read without validating.
fn record_of(raw: Vec<u8>, transport: Transport, now: DateTime<Utc>) -> InboundRecord {
    let facts = journal_facts(&raw);
    InboundRecord {
        partner: facts.sender.clone().unwrap_or_default(),
        transport,
        interchange_ref: facts.interchange_reference.clone(),
        message_refs: facts.message_references.clone(),
        pids: facts.pids.iter().map(|p| p.to_string()).collect(),
        message_types: facts.message_types.clone(),
        document_numbers: Vec::new(),
        raw,
        received_at: now,
    }
}

impl InboundSink for Journal {
    fn receive(
        &self,
        raw: Vec<u8>,
        transport: Transport,
        now: DateTime<Utc>,
    ) -> BoxFuture<'_, Result<Inserted, StoreError>> {
        Box::pin(Journal::receive(self, raw, transport, now))
    }

    fn receive_as4(
        &self,
        raw: Vec<u8>,
        arrival: As4Arrival,
        now: DateTime<Utc>,
    ) -> BoxFuture<'_, Result<Arrived, StoreError>> {
        Box::pin(Journal::receive_as4(self, raw, arrival, now))
    }
}
