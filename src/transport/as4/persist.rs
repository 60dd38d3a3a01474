//! asx-rs's storage traits over our [`Store`]: [`Dedup`] (duplicate detection of received
//! messages, SQLite or PostgreSQL, shared by all gateway instances) and [`EvidenceStore`] (the
//! audit records: signed receipts we got and gave, durably).

use std::collections::HashSet;
use std::error::Error as StdError;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::oneshot;

use crate::clock::Clock;
use crate::store::{DedupClaim, Store, StoreError};
use asx::{AuditDurability, AuditRecord, BoxFuture, Claim, ClaimToken};

type BoxError = Box<dyn StdError + Send + Sync>;

/// The duplicate store of received AS4 messages. A claim holds for `lease` (the longest a
/// handler may take: journaling one interchange); an accepted key is remembered until
/// [`crate::store::Session::purge_as4_dedup`] removes it after the retention (≥ 7 days, `as4.dedup_retention`).
#[derive(Clone)]
pub struct Dedup {
    store: Store,
    lease: Duration,
    namespace: String,
    clock: Clock,
    duplicate: Option<Arc<DuplicateSeen>>,
    held: Option<Arc<HeldKey>>,
}

/// Set when a message's key was accepted before ([`Dedup::handing_duplicates_to`]): the
/// message goes to the handler, which compares it with what was accepted, instead of asx-rs
/// answering it with a fresh receipt for whatever it carries.
#[derive(Debug, Default)]
pub struct DuplicateSeen(AtomicBool);

impl DuplicateSeen {
    /// Whether the claimed key was accepted before.
    pub fn is_set(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// The token of a claim on a key accepted before: it holds nothing, and settling it (accept
/// or abandon) changes nothing. Real tokens are `claim_…` ids.
const DUPLICATE_TOKEN: &str = "duplicate-of-an-accepted-key";

/// The token of a claim held in this process ([`Dedup::claiming_in_process`]): settling it
/// changes nothing in the store (the journal's transaction accepted the key).
const HELD_TOKEN: &str = "held-in-this-process";

/// The keys deliveries in this process hold without a claim row ([`Dedup::claiming_in_process`]).
#[derive(Debug, Default)]
pub struct InFlightKeys(Mutex<HashSet<String>>);

/// One delivery's claim in [`InFlightKeys`]: the key it took, released when the delivery ends
/// (this is dropped with the request, whatever became of it: answered, refused, timed out).
#[derive(Debug)]
pub struct HeldKey {
    keys: Arc<InFlightKeys>,
    key: Mutex<Option<String>>,
}

impl HeldKey {
    /// A delivery's claim in `keys`, holding nothing yet.
    pub fn new(keys: Arc<InFlightKeys>) -> HeldKey {
        HeldKey {
            keys,
            key: Mutex::new(None),
        }
    }

    /// The key held, once claimed.
    pub fn key(&self) -> Option<String> {
        self.key
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Takes `key` unless another delivery in this process holds it.
    fn take(&self, key: &str) -> bool {
        let taken = self
            .keys
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key.to_string());
        if taken {
            self.release();
            *self.key.lock().unwrap_or_else(PoisonError::into_inner) = Some(key.to_string());
        }
        taken
    }

    fn release(&self) {
        if let Some(key) = self
            .key
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            self.keys
                .0
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&key);
        }
    }
}

impl Drop for HeldKey {
    fn drop(&mut self) {
        self.release();
    }
}

impl std::fmt::Debug for Dedup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dedup")
            .field("lease", &self.lease)
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

impl Dedup {
    /// A dedup store over `store` with claims leased for `lease`, the time read from `clock`.
    pub fn new(store: Store, lease: Duration, clock: Clock) -> Dedup {
        Dedup {
            store,
            lease,
            namespace: String::new(),
            clock,
            duplicate: None,
            held: None,
        }
    }

    /// The same, but a new key is claimed in this process only ([`HeldKey`]), without a
    /// commit: the transaction that journals the message settles it as accepted
    /// ([`crate::store::Session::as4_accept_unclaimed`], issue 16). A key accepted before is
    /// a duplicate, one under a live claim row (another instance's two-phase claim) in flight.
    pub fn claiming_in_process(mut self, held: Arc<HeldKey>) -> Dedup {
        self.held = Some(held);
        self
    }

    /// The same, but a key accepted before is not answered as a duplicate by asx-rs (which
    /// signs a fresh receipt over whatever the message now carries, issue 15 AS4 finding 1):
    /// the claim succeeds with a token that holds nothing, `seen` is set, and the handler
    /// decides (a receipt again only for the same content). Without it, [`Claim::Duplicate`]
    /// as the trait says (asx-rs's conformance suite).
    pub fn handing_duplicates_to(mut self, seen: Arc<DuplicateSeen>) -> Dedup {
        self.duplicate = Some(seen);
        self
    }

    /// The same, with every key prefixed by `namespace` (separate key spaces in one table).
    pub fn with_namespace(mut self, namespace: impl Into<String>) -> Dedup {
        self.namespace = namespace.into();
        self
    }

    fn key(&self, key: &str) -> String {
        format!("{}{key}", self.namespace)
    }
}

impl asx::DedupStore for Dedup {
    fn claim<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Claim, BoxError>> {
        Box::pin(async move {
            let now = self.clock.now();
            let until = now + chrono::Duration::from_std(self.lease)?;
            let key = self.key(key);
            let mut conn = self.store.conn().await?;
            let claim = match &self.held {
                Some(held) => match conn.as4_key_state(&key, now).await? {
                    DedupClaim::Claimed(_) if held.take(&key) => {
                        return Ok(Claim::Claimed(ClaimToken::new(HELD_TOKEN)));
                    }
                    DedupClaim::Claimed(_) => DedupClaim::InFlight,
                    other => other,
                },
                None => conn.as4_claim(&key, until, now).await?,
            };
            Ok(match claim {
                DedupClaim::Claimed(token) => Claim::Claimed(ClaimToken::new(token)),
                DedupClaim::Duplicate => match &self.duplicate {
                    Some(seen) => {
                        seen.0.store(true, Ordering::SeqCst);
                        Claim::Claimed(ClaimToken::new(DUPLICATE_TOKEN))
                    }
                    None => Claim::Duplicate,
                },
                DedupClaim::InFlight => Claim::InFlight,
            })
        })
    }

    fn accept<'a>(
        &'a self,
        key: &'a str,
        token: &'a ClaimToken,
    ) -> BoxFuture<'a, Result<(), BoxError>> {
        Box::pin(async move {
            if token.as_str() == DUPLICATE_TOKEN || token.as_str() == HELD_TOKEN {
                return Ok(());
            }
            if self
                .store
                .conn()
                .await?
                .as4_accept(&self.key(key), token.as_str(), self.clock.now())
                .await?
            {
                Ok(())
            } else {
                Err(format!("the claim on {key} is no longer held by this delivery").into())
            }
        })
    }

    fn abandon<'a>(
        &'a self,
        key: &'a str,
        token: &'a ClaimToken,
    ) -> BoxFuture<'a, Result<(), BoxError>> {
        Box::pin(async move {
            if token.as_str() == DUPLICATE_TOKEN {
                return Ok(());
            }
            if token.as_str() == HELD_TOKEN {
                if let Some(held) = &self.held {
                    held.release();
                }
                return Ok(());
            }
            if self
                .store
                .conn()
                .await?
                .as4_abandon(&self.key(key), token.as_str())
                .await?
            {
                Ok(())
            } else {
                Err(format!("the claim on {key} is no longer held by this delivery").into())
            }
        })
    }
}

/// The audit sink: every record asx-rs makes (receipts received and sent, refusals) as JSON in
/// `as4_evidence`, committed before asx-rs goes on (`Durable`: a send is not reported
/// delivered, a receipt not returned, unless its evidence is stored).
///
/// **Group commit** (issue 16), as the inbound journal does it: records that arrive while a
/// commit is running are written together in the next one (at most [`MAX_EVIDENCE_GROUP`]),
/// and each caller is answered only after the commit that holds its record. A lone record is
/// written at once.
#[derive(Clone)]
pub struct EvidenceStore {
    /// Set at once ([`EvidenceStore::new`]) or once the store is connected
    /// ([`EvidenceStore::attach`]): the AS4 endpoint is built and checked with the rest of the
    /// configuration, before the store is touched.
    store: Arc<std::sync::OnceLock<Store>>,
    clock: Clock,
    /// Records not yet written, oldest first.
    queue: Arc<Mutex<Vec<PendingRecord>>>,
    /// The writer's turn (fair: callers get it in the order they asked).
    writer: Arc<tokio::sync::Mutex<()>>,
}

/// Most evidence records written in one transaction.
pub const MAX_EVIDENCE_GROUP: usize = 256;

/// A record waiting for the writer, and where its result goes.
struct PendingRecord {
    record_id: String,
    message_id: String,
    partner: String,
    json: String,
    now: chrono::DateTime<chrono::Utc>,
    reply: oneshot::Sender<Result<(), StoreError>>,
}

impl std::fmt::Debug for EvidenceStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EvidenceStore").finish_non_exhaustive()
    }
}

impl EvidenceStore {
    /// An audit sink over `store`, records stamped with `clock`'s time.
    pub fn new(store: Store, clock: Clock) -> EvidenceStore {
        let sink = EvidenceStore::unattached(clock);
        sink.attach(store);
        sink
    }

    /// An audit sink whose store comes later ([`EvidenceStore::attach`]); until then every
    /// record fails (nothing is sent or received before the daemon has its store).
    pub fn unattached(clock: Clock) -> EvidenceStore {
        EvidenceStore {
            store: Default::default(),
            clock,
            queue: Arc::default(),
            writer: Arc::default(),
        }
    }

    /// Gives the sink (and every clone of it) its store; a second call changes nothing.
    pub fn attach(&self, store: Store) {
        let _ = self.store.set(store);
    }

    /// Queues `record` and returns once a commit holding it is done.
    async fn write(&self, store: &Store, record: PendingRecord) -> Result<(), StoreError> {
        let (reply, mut result) = oneshot::channel();
        self.queue
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(PendingRecord { reply, ..record });
        loop {
            // Answered by a writer, or our turn to write what is queued.
            let turn = tokio::select! {
                biased;
                done = &mut result => return done.unwrap_or_else(|_| Err(abandoned())),
                turn = Arc::clone(&self.writer).lock_owned() => turn,
            };
            match result.try_recv() {
                Ok(done) => return done,
                Err(oneshot::error::TryRecvError::Closed) => return Err(abandoned()),
                Err(oneshot::error::TryRecvError::Empty) => {}
            }
            let group: Vec<PendingRecord> = {
                let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
                let n = queue.len().min(MAX_EVIDENCE_GROUP);
                queue.drain(..n).collect()
            };
            // On a task of its own: a caller that gives up never leaves a group half written
            // or its callers unanswered.
            let store = store.clone();
            let _ = tokio::spawn(async move {
                write_group(&store, group).await;
                drop(turn);
            })
            .await;
        }
    }
}

fn abandoned() -> StoreError {
    StoreError::Abandoned {
        what: "keeping AS4 evidence",
    }
}

/// Writes a group in one transaction and answers every caller; a group that fails is written
/// record by record.
async fn write_group(store: &Store, group: Vec<PendingRecord>) {
    if group.len() > 1 {
        let together = async {
            let mut tx = store.begin().await?;
            for r in &group {
                tx.insert_as4_evidence(&r.record_id, &r.message_id, &r.partner, &r.json, r.now)
                    .await?;
            }
            tx.commit().await
        };
        match together.await {
            Ok(()) => {
                for r in group {
                    let _ = r.reply.send(Ok(()));
                }
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, records = group.len(), "keeping AS4 evidence in a group failed; keeping it record by record")
            }
        }
    }
    for r in group {
        let result = match store.conn().await {
            Ok(mut conn) => {
                conn.insert_as4_evidence(&r.record_id, &r.message_id, &r.partner, &r.json, r.now)
                    .await
            }
            Err(e) => Err(e),
        };
        let _ = r.reply.send(result);
    }
}

impl asx::AuditSink for EvidenceStore {
    fn durability(&self) -> AuditDurability {
        AuditDurability::Durable
    }

    fn record<'a>(&'a self, record: &'a AuditRecord) -> BoxFuture<'a, Result<(), BoxError>> {
        Box::pin(async move {
            let json = serde_json::to_string(record)?;
            let store = self
                .store
                .get()
                .ok_or("the AS4 evidence store is not attached to the database yet")?;
            let (reply, _) = oneshot::channel();
            self.write(
                store,
                PendingRecord {
                    record_id: record.record_id().to_string(),
                    message_id: record.message_id().to_string(),
                    partner: record.partner().to_string(),
                    json,
                    now: self.clock.now(),
                    reply,
                },
            )
            .await?;
            Ok(())
        })
    }
}
