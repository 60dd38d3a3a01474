//! The records the store reads and writes.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::acks::{SentLookup, SentMessage};

pub use crate::ids::new_id;
use crate::plan::records::text_enum;
pub use crate::plan::records::{
    serde_text, GridFeeRecord, HistoryEntry, InboundRecord, JournalState, JsonText,
    MeterOrderRecord, NewOutboxItem, OrderKind, OutboundRecord, OutboxKind, SentRecord, Transport,
    WebhookEvent,
};

text_enum!(
    /// Which way an interchange went.
    Direction {
        /// Received from a partner.
        In = "in",
        /// Sent to a partner.
        Out = "out",
    }
);

text_enum!(
    /// Where an outbox item is.
    OutboxState {
        /// Waiting for `next_attempt_at`.
        Pending = "pending",
        /// Claimed by a worker (leased).
        InFlight = "in_flight",
        /// Sent.
        Sent = "sent",
        /// Given up with a permanent error (`last_error`), for an operator.
        Parked = "parked",
    }
);

text_enum!(
    /// Where a webhook delivery is.
    WebhookState {
        /// Waiting for `next_attempt_at`.
        Pending = "pending",
        /// Claimed by a worker (leased).
        InFlight = "in_flight",
        /// The receiver answered 2xx.
        Delivered = "delivered",
        /// Given up (`last_error`), for an operator.
        Parked = "parked",
    }
);

/// Result of journaling an inbound interchange.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inserted {
    /// Stored for the first time: the new journal id.
    New(String),
    /// The same interchange (direction, partner, UNB reference) is already there: its id.
    Duplicate(String),
}

impl Inserted {
    /// The journal id, new or existing.
    pub fn journal_id(&self) -> &str {
        match self {
            Inserted::New(id) | Inserted::Duplicate(id) => id,
        }
    }
}

/// A journal row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalItem {
    /// `jrn_…`.
    pub id: String,
    /// In or out.
    pub direction: Direction,
    /// Sender (in) or recipient (out).
    pub partner: String,
    /// How it came or went (`file`, …).
    pub transport: String,
    /// UNB DE0020.
    pub interchange_ref: Option<String>,
    /// UNH DE0062 of each message.
    pub message_refs: Vec<String>,
    /// Prüfidentifikatoren.
    pub pids: Vec<String>,
    /// UNH S009 DE0065 of each message (`UTILMD`, `CONTRL`, …).
    pub message_types: Vec<String>,
    /// BGM DE1004 of each message.
    pub document_numbers: Vec<String>,
    /// The bytes.
    pub raw: Vec<u8>,
    /// When received (in).
    pub received_at: Option<DateTime<Utc>>,
    /// When sent (out).
    pub sent_at: Option<DateTime<Utc>>,
    /// Processing state.
    pub state: JournalState,
    /// The processing outcome (JSON), once processed or failed.
    pub outcome: Option<JsonText>,
    /// How often it was claimed (1 on the first claim).
    pub attempts: i64,
}

/// A journal row as lists show it: everything but the bytes (which may be large: one call
/// per item reads them, [`crate::store::Session::journal_raw`]), with their size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalEntry {
    /// `jrn_…`.
    pub id: String,
    /// In or out.
    pub direction: Direction,
    /// Sender (in) or recipient (out).
    pub partner: String,
    /// How it came or went (`file`, …).
    pub transport: String,
    /// UNB DE0020.
    pub interchange_ref: Option<String>,
    /// UNH DE0062 of each message.
    pub message_refs: Vec<String>,
    /// Prüfidentifikatoren.
    pub pids: Vec<String>,
    /// UNH S009 DE0065 of each message.
    pub message_types: Vec<String>,
    /// BGM DE1004 of each message.
    pub document_numbers: Vec<String>,
    /// When received (in).
    pub received_at: Option<DateTime<Utc>>,
    /// When sent (out).
    pub sent_at: Option<DateTime<Utc>>,
    /// Processing state.
    pub state: JournalState,
    /// The processing outcome (JSON), once processed or failed.
    pub outcome: Option<JsonText>,
    /// How often it was claimed.
    pub attempts: i64,
    /// The size of the bytes.
    pub size: u64,
}

/// Filters of the journal list; every one given must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JournalFilter {
    /// Only received or only sent interchanges.
    pub direction: Option<Direction>,
    /// Only this sender (in) or recipient (out), exactly.
    pub partner: Option<String>,
    /// Only interchanges with a message of this Prüfidentifikator (an element of `pids`).
    pub pid: Option<String>,
    /// Only interchanges with a message of this type (an element of `message_types`).
    pub message_type: Option<String>,
    /// Only in this processing state.
    pub state: Option<JournalState>,
    /// Only received (in) or sent (out) at or after this time.
    pub from: Option<DateTime<Utc>>,
    /// Only received (in) or sent (out) before this time.
    pub until: Option<DateTime<Utc>>,
    /// Only interchanges whose UNB reference, a message reference (UNH) or a document
    /// number (BGM) is exactly this (the console's search; the API does not offer it).
    pub reference: Option<String>,
}

/// Filters of an order list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OrderFilter {
    /// Only orders in this status (its serde text, e.g. `intended`).
    pub status: Option<String>,
    /// Only orders of this subscription.
    pub subscription: Option<String>,
}

/// A page of a list ordered by id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    /// The items.
    pub items: Vec<T>,
    /// The id to pass as cursor for the next page, `None` on the last page.
    pub next_cursor: Option<String>,
}

/// Where a page starts and how long it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PageRequest {
    /// Items after this id (exclusive); `None` from the start.
    pub cursor: Option<String>,
    /// At most this many items.
    pub limit: u32,
}

/// A claimed or listed webhook delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookDelivery {
    /// The event id.
    pub id: String,
    /// The topic.
    pub topic: String,
    /// The JSON body (exactly the bytes to sign and send).
    pub payload: String,
    /// State.
    pub state: WebhookState,
    /// Attempts so far (claims).
    pub attempts: i64,
    /// The last error, if a delivery failed.
    pub last_error: Option<String>,
    /// Created.
    pub created_at: DateTime<Utc>,
}

/// An outbox row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OutboxItem {
    /// `obx_…`.
    pub id: String,
    /// Order or acknowledgement.
    pub kind: OutboxKind,
    /// Kind of the order to send.
    pub order_kind: Option<OrderKind>,
    /// Id of the order to send.
    pub order_id: Option<String>,
    /// Recipient.
    pub partner: String,
    /// Prebuilt bytes (acks).
    #[serde(skip)]
    pub payload: Option<Vec<u8>>,
    /// The journal item this answers (acks).
    pub journal_id: Option<String>,
    /// State.
    pub state: OutboxState,
    /// Claims so far.
    pub attempts: i64,
    /// Not before.
    pub next_attempt_at: DateTime<Utc>,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Sent.
    pub sent_at: Option<DateTime<Utc>>,
    /// When it must have left (our deadline for an acknowledgement or answer), if it has one.
    pub due_at: Option<DateTime<Utc>>,
}

text_enum!(
    /// What became of a received mail.
    MailOutcome {
        /// Journaled raw, not yet handled (or handling was interrupted).
        Pending = "pending",
        /// Its interchange is in the journal.
        Journaled = "journaled",
        /// Quarantined with a reason; never parsed as EDIFACT.
        Quarantined = "quarantined",
    }
);

/// A received mail to journal raw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMail {
    /// The account and folder it was read from (`user@host:port/mailbox`).
    pub mailbox: String,
    /// The folder's UIDVALIDITY.
    pub uid_validity: u32,
    /// The mail's UID.
    pub uid: u32,
    /// Its From header as written (for operators; not trusted).
    pub from_header: String,
    /// Its Subject header.
    pub subject: String,
    /// The mail exactly as fetched.
    pub raw: Vec<u8>,
    /// When it was fetched.
    pub received_at: DateTime<Utc>,
}

/// A quarantined mail, for operators (`GET /quarantine`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QuarantineItem {
    /// `mail_…`.
    pub id: String,
    /// The account and folder it was read from.
    pub mailbox: String,
    /// The folder's UIDVALIDITY.
    pub uid_validity: i64,
    /// The mail's UID (it is kept on the server, marked `$MakoJournaled`).
    pub uid: i64,
    /// Its From header as written (not verified).
    pub from: String,
    /// Its Subject header.
    pub subject: String,
    /// Why it is here.
    pub reason: String,
    /// When it was fetched.
    pub received_at: DateTime<Utc>,
    /// The raw mail's size in bytes (kept in full in the store).
    pub size: usize,
}

/// An inbound message nothing matched, kept for an operator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClearingItem {
    /// `clr_…`.
    pub id: String,
    /// The journal item.
    pub journal_id: String,
    /// Its sender.
    pub partner: Option<String>,
    /// Its UNB reference.
    pub interchange_ref: Option<String>,
    /// Why it is here.
    pub reason: String,
    /// When.
    pub created_at: DateTime<Utc>,
    /// When an operator resolved it.
    pub resolved_at: Option<DateTime<Utc>>,
}

/// What we sent to one partner, fetched ahead so that the synchronous
/// [`crate::acks::match_acknowledgement`] can look it up.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SentSnapshot {
    /// The partner the messages were sent to.
    pub partner: String,
    /// The messages.
    pub messages: Vec<SentMessage>,
}

impl SentLookup for SentSnapshot {
    fn by_interchange(&self, partner: &str, interchange_reference: &str) -> Vec<SentMessage> {
        if partner != self.partner {
            return Vec::new();
        }
        self.messages.by_interchange(partner, interchange_reference)
    }
    fn by_document(&self, partner: &str, document_number: &str) -> Option<SentMessage> {
        if partner != self.partner {
            return None;
        }
        self.messages.by_document(partner, document_number)
    }
}

/// Row counts for metrics: `(label, count)` per group.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    /// Grid-fee reductions by status.
    pub grid_fee_reductions: Vec<(String, i64)>,
    /// Meter orders by status.
    pub meter_orders: Vec<(String, i64)>,
    /// Outbox items by state.
    pub outbox: Vec<(String, i64)>,
    /// Webhook deliveries by state.
    pub webhooks: Vec<(String, i64)>,
    /// Journal items by direction and state (`in/received`, …).
    pub journal: Vec<(String, i64)>,
    /// Unresolved clearing items.
    pub clearing_open: i64,
}
