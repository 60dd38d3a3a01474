//! asx-rs's storage traits over our [`Store`]: [`Dedup`] (duplicate detection of received
//! messages, SQLite or PostgreSQL, shared by all gateway instances) and [`EvidenceStore`] (the
//! audit records: signed receipts we got and gave, durably).

use std::error::Error as StdError;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::clock::Clock;
use crate::store::{DedupClaim, Store};
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
        }
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
            Ok(
                match self
                    .store
                    .conn()
                    .await?
                    .as4_claim(&self.key(key), until, now)
                    .await?
                {
                    DedupClaim::Claimed(token) => Claim::Claimed(ClaimToken::new(token)),
                    DedupClaim::Duplicate => match &self.duplicate {
                        Some(seen) => {
                            seen.0.store(true, Ordering::SeqCst);
                            Claim::Claimed(ClaimToken::new(DUPLICATE_TOKEN))
                        }
                        None => Claim::Duplicate,
                    },
                    DedupClaim::InFlight => Claim::InFlight,
                },
            )
        })
    }

    fn accept<'a>(
        &'a self,
        key: &'a str,
        token: &'a ClaimToken,
    ) -> BoxFuture<'a, Result<(), BoxError>> {
        Box::pin(async move {
            if token.as_str() == DUPLICATE_TOKEN {
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
#[derive(Clone)]
pub struct EvidenceStore {
    /// Set at once ([`EvidenceStore::new`]) or once the store is connected
    /// ([`EvidenceStore::attach`]): the AS4 endpoint is built and checked with the rest of the
    /// configuration, before the store is touched.
    store: std::sync::Arc<std::sync::OnceLock<Store>>,
    clock: Clock,
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
        }
    }

    /// Gives the sink (and every clone of it) its store; a second call changes nothing.
    pub fn attach(&self, store: Store) {
        let _ = self.store.set(store);
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
            store
                .conn()
                .await?
                .insert_as4_evidence(
                    record.record_id(),
                    record.message_id(),
                    record.partner(),
                    &json,
                    self.clock.now(),
                )
                .await?;
            Ok(())
        })
    }
}
