//! The one inbound sink: every transport (file drop, e-mail, AS4) hands a received interchange
//! to [`Journal::receive`], which journals it and commits; only then may the transport
//! acknowledge it (move the file, flag the mail, return the AS4 receipt).

use chrono::{DateTime, Utc};

use crate::plan::inbound::journal_facts;
use crate::store::{InboundRecord, Inserted, Store, StoreError, Transport};
use crate::transport::{BoxFuture, InboundSink};

/// Journals received interchanges.
#[derive(Debug, Clone)]
pub struct Journal {
    store: Store,
}

impl Journal {
    /// A journal over `store`.
    pub fn new(store: Store) -> Journal {
        Journal { store }
    }

    /// Journals a received interchange and commits it. The same interchange (sender and UNB
    /// reference) delivered twice is stored once ([`Inserted::Duplicate`]).
    pub async fn receive(
        &self,
        raw: Vec<u8>,
        transport: Transport,
        now: DateTime<Utc>,
    ) -> Result<Inserted, StoreError> {
        let facts = journal_facts(&raw);
        let record = InboundRecord {
            partner: facts.sender.clone().unwrap_or_default(),
            transport,
            interchange_ref: facts.interchange_reference.clone(),
            message_refs: facts.message_references.clone(),
            pids: facts.pids.iter().map(|p| p.to_string()).collect(),
            message_types: facts.message_types.clone(),
            document_numbers: Vec::new(),
            raw,
            received_at: now,
        };
        self.store.conn().await?.insert_inbound(&record).await
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
}
