//! What the worker loads between the two steps: the orders (with their stored versions) and
//! the messages we sent that a batch of interchanges names, and how each interchange's
//! candidates are taken from it.

use std::collections::HashMap;

use super::decide::Candidates;
use super::read::{InboundItem, LookupKey, ReadInbound};
use crate::acks::SentMessage;
use crate::plan::records::{ChangedOrder, GridFeeRecord, MeterOrderRecord};

/// A message we sent, as loaded for matching: with the partner it went to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadedSent {
    /// The recipient.
    pub partner: String,
    /// The message.
    pub message: SentMessage,
}

/// What the worker loaded from the store for the keys of one or more interchanges: the
/// orders with their stored versions, and what we sent. [`plan_inbound`](super::plan_inbound) takes each
/// interchange's candidates from it and writes the changed orders back, so that the next
/// interchange of a batch plans on them.
#[derive(Debug, Clone, Default)]
pub struct Loaded {
    /// Grid-fee reductions, in id order.
    pub reductions: Vec<GridFeeRecord>,
    /// Meter orders, in id order.
    pub meters: Vec<MeterOrderRecord>,
    /// Sent messages, in id order.
    pub sent: Vec<LoadedSent>,
    /// The references of ours the batch names (document numbers, interchange references)
    /// that are in an interchange built and kept in the outbox but not yet recorded as sent:
    /// an answer to one of them came before our record of sending it (a fast partner, or a
    /// crash between handing it over and the commit), and waits for it
    /// ([`InboundPlan::waits_for`](super::InboundPlan::waits_for)).
    pub in_flight: Vec<String>,
}

/// The keys of a batch, grouped the way the store looks them up.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchKeys {
    /// Market locations (UTILMD 55218).
    pub market_locations: Vec<String>,
    /// Messlokationen (UTILMD 55653, IFTSTA 21025).
    pub metering_locations: Vec<String>,
    /// Our ORDERS document numbers.
    pub order_documents: Vec<String>,
    /// Partners whose acknowledgements name our interchanges or documents.
    pub partners: Vec<String>,
    /// Our interchange references named by acknowledgements.
    pub sent_interchanges: Vec<String>,
    /// Our document numbers named by acknowledgements.
    pub sent_documents: Vec<String>,
    /// The senders of the items that name references of ours (order documents, sent
    /// interchanges or documents): whose outbox items may hold them still unsent.
    pub senders: Vec<String>,
}

impl BatchKeys {
    /// The keys of every item of `reads`.
    pub fn of<'r>(reads: impl IntoIterator<Item = &'r ReadInbound>) -> BatchKeys {
        fn add(list: &mut Vec<String>, value: &str) {
            if !list.iter().any(|v| v == value) {
                list.push(value.to_string());
            }
        }
        let mut keys = BatchKeys::default();
        for read in reads {
            for key in read.items.iter().flat_map(InboundItem::keys) {
                match &key {
                    LookupKey::OrderDocument(d) => add(&mut keys.order_documents, d),
                    LookupKey::MarketLocation(m) => add(&mut keys.market_locations, m),
                    LookupKey::MeteringLocation(m) => add(&mut keys.metering_locations, m),
                    LookupKey::SentInterchange(r) => add(&mut keys.sent_interchanges, r),
                    LookupKey::SentDocument(d) => add(&mut keys.sent_documents, d),
                }
                if matches!(
                    key,
                    LookupKey::SentInterchange(_) | LookupKey::SentDocument(_)
                ) {
                    add(
                        &mut keys.partners,
                        read.facts.sender.as_deref().unwrap_or(""),
                    );
                }
                if key.names_ours() {
                    add(
                        &mut keys.senders,
                        read.facts.sender.as_deref().unwrap_or(""),
                    );
                }
            }
        }
        keys
    }

    /// True when nothing is to be looked up.
    pub fn is_empty(&self) -> bool {
        self == &BatchKeys::default()
    }

    /// Every reference of ours the batch names: order documents, sent interchanges and sent
    /// documents.
    pub fn references(&self) -> Vec<&str> {
        self.order_documents
            .iter()
            .chain(&self.sent_interchanges)
            .chain(&self.sent_documents)
            .map(String::as_str)
            .collect()
    }
}

impl Loaded {
    /// The ids of orders named by loaded sent messages that are not loaded themselves (the
    /// store loads them in a second step).
    pub fn missing_orders(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for s in &self.sent {
            if let Some(id) = &s.message.order {
                let loaded = self.reductions.iter().any(|r| &r.order.id == id)
                    || self.meters.iter().any(|m| &m.order.id == id);
                if !loaded && !out.contains(id) {
                    out.push(id.clone());
                }
            }
        }
        out
    }

    /// The candidates of one interchange: what its items' keys name, as the store would have
    /// found them for it alone, with the stored versions.
    pub(super) fn candidates_for(&self, read: &ReadInbound) -> (Candidates, HashMap<String, i64>) {
        let partner = read.facts.sender.clone().unwrap_or_default();
        let mut candidates = Candidates::default();
        let mut versions: HashMap<String, i64> = HashMap::new();
        let mut sent_refs: Vec<&str> = Vec::new();
        let mut sent_docs: Vec<&str> = Vec::new();
        let keys: Vec<LookupKey> = read.items.iter().flat_map(InboundItem::keys).collect();
        for key in &keys {
            let (malo, melo, doc) = match key {
                LookupKey::OrderDocument(d) => (None, None, Some(d.as_str())),
                LookupKey::MarketLocation(m) => (Some(m.as_str()), None, None),
                LookupKey::MeteringLocation(m) => (None, Some(m.as_str()), None),
                LookupKey::SentInterchange(r) => {
                    sent_refs.push(r);
                    continue;
                }
                LookupKey::SentDocument(d) => {
                    sent_docs.push(d);
                    continue;
                }
            };
            // The reductions at the market location, then the one with the document number;
            // the meter orders at the Messlokation, then the one with the document number.
            if let Some(m) = malo {
                for r in self
                    .reductions
                    .iter()
                    .filter(|r| r.order.market_location.as_str() == m)
                {
                    push_grid(&mut candidates, &mut versions, r);
                }
            }
            if let Some(d) = doc {
                for r in self
                    .reductions
                    .iter()
                    .filter(|r| r.order.order_document.as_deref() == Some(d))
                {
                    push_grid(&mut candidates, &mut versions, r);
                }
            }
            if let Some(m) = melo {
                for r in self.meters.iter().filter(|r| {
                    r.order
                        .metering_location
                        .as_ref()
                        .is_some_and(|l| l.as_str() == m)
                }) {
                    push_meter(&mut candidates, &mut versions, r);
                }
            }
            if let Some(d) = doc {
                for r in self
                    .meters
                    .iter()
                    .filter(|r| r.order.order_document.as_deref() == Some(d))
                {
                    push_meter(&mut candidates, &mut versions, r);
                }
            }
        }
        if !sent_refs.is_empty() || !sent_docs.is_empty() {
            // All our messages of the named interchanges, then per document number the first
            // message with it (to this partner only).
            let ours = || self.sent.iter().filter(|s| s.partner == partner);
            let mut messages: Vec<SentMessage> = Vec::new();
            for r in &sent_refs {
                for s in ours().filter(|s| s.message.interchange_reference == *r) {
                    if !messages.contains(&s.message) {
                        messages.push(s.message.clone());
                    }
                }
            }
            for d in &sent_docs {
                if let Some(s) = ours().find(|s| s.message.document_number == *d) {
                    if !messages.contains(&s.message) {
                        messages.push(s.message.clone());
                    }
                }
            }
            for m in &messages {
                let Some(id) = &m.order else { continue };
                if versions.contains_key(id) {
                    continue;
                }
                if let Some(r) = self.reductions.iter().find(|r| &r.order.id == id) {
                    push_grid(&mut candidates, &mut versions, r);
                } else if let Some(r) = self.meters.iter().find(|r| &r.order.id == id) {
                    push_meter(&mut candidates, &mut versions, r);
                }
            }
            candidates.sent = messages;
        }
        (candidates, versions)
    }

    /// Writes a changed order back, so that later interchanges of the batch plan on it.
    pub(super) fn update(&mut self, order: &ChangedOrder) {
        match order {
            ChangedOrder::GridFee(o) => {
                if let Some(r) = self.reductions.iter_mut().find(|r| r.order.id == o.id) {
                    r.order = (**o).clone();
                }
            }
            ChangedOrder::Meter(o) => {
                if let Some(r) = self.meters.iter_mut().find(|r| r.order.id == o.id) {
                    r.order = (**o).clone();
                }
            }
        }
    }
}

fn push_grid(c: &mut Candidates, versions: &mut HashMap<String, i64>, r: &GridFeeRecord) {
    if versions.insert(r.order.id.clone(), r.version).is_none() {
        c.reductions.push(r.order.clone());
        if let Some(day) = r.effective_date {
            c.change_dates.insert(r.order.id.clone(), day);
        }
    }
}

fn push_meter(c: &mut Candidates, versions: &mut HashMap<String, i64>, r: &MeterOrderRecord) {
    if versions.insert(r.order.id.clone(), r.version).is_none() {
        c.meters.push(r.order.clone());
    }
}
