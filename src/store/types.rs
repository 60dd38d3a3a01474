//! The records the store reads and writes.

use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;

use crate::acks::{SentLookup, SentMessage};
use crate::orders::{GridFeeReduction, MeterOrder};

pub use crate::ids::new_id;

/// The text of a serde unit enum value (`"intended"`, `"enwg-14a-module-1"`, …).
pub fn serde_text<S: Serialize>(value: &S) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(s)) => s,
        other => panic!("expected a unit enum that serialises as a string, got {other:?}"),
    }
}

macro_rules! text_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
        pub enum $name {
            $($(#[$vmeta])* #[serde(rename = $text)] $variant),+
        }
        impl $name {
            /// The text stored in the database.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
            /// Reads the stored text.
            pub fn parse(text: &str) -> Option<Self> {
                match text { $($text => Some($name::$variant),)+ _ => None }
            }
        }
        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

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
    /// How an interchange came or went.
    Transport {
        /// File drop (`data/inbox`, `data/outbox`).
        File = "file",
        /// E-mail.
        Email = "email",
        /// AS4.
        As4 = "as4",
        /// The HTTP API.
        Api = "api",
        /// `mako-gateway replay`.
        Replay = "replay",
    }
);

text_enum!(
    /// Where a journal item is in processing.
    JournalState {
        /// Stored, not yet processed.
        Received = "received",
        /// Claimed by a worker (leased).
        Processing = "processing",
        /// Done (its effects are committed).
        Processed = "processed",
        /// Could not be processed (the outcome says why).
        Failed = "failed",
    }
);

text_enum!(
    /// The two order kinds.
    OrderKind {
        /// `orders::GridFeeReduction`.
        GridFeeReduction = "grid_fee_reduction",
        /// `orders::MeterOrder`.
        MeterOrder = "meter_order",
    }
);

text_enum!(
    /// What an outbox item sends.
    OutboxKind {
        /// An order, built from the order's row when sent.
        Order = "order",
        /// A CONTRL or APERAK, built when the message it answers was received (`payload`).
        Ack = "ack",
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

/// A received interchange, to be journaled before it is acknowledged to the transport.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundRecord {
    /// The sender (UNB S002), or `""` when the interchange is unreadable.
    pub partner: String,
    /// How it came.
    pub transport: Transport,
    /// UNB DE0020, `None` when unreadable (such interchanges are never deduplicated).
    pub interchange_ref: Option<String>,
    /// UNH DE0062 of each message.
    pub message_refs: Vec<String>,
    /// Prüfidentifikatoren of the messages.
    pub pids: Vec<String>,
    /// BGM DE1004 of the messages.
    pub document_numbers: Vec<String>,
    /// The bytes as received.
    pub raw: Vec<u8>,
    /// When it was received.
    pub received_at: DateTime<Utc>,
}

/// A sent interchange.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundRecord {
    /// The journal id, when the caller fixed it ahead (a plan that names it in history rows);
    /// `None`: a new one.
    pub id: Option<String>,
    /// The recipient (UNB S003).
    pub partner: String,
    /// How it went.
    pub transport: Transport,
    /// Our UNB DE0020.
    pub interchange_ref: String,
    /// UNH DE0062 of each message.
    pub message_refs: Vec<String>,
    /// Prüfidentifikatoren.
    pub pids: Vec<String>,
    /// BGM DE1004 of each message.
    pub document_numbers: Vec<String>,
    /// The bytes sent.
    pub raw: Vec<u8>,
    /// When.
    pub sent_at: DateTime<Utc>,
}

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
    pub outcome: Option<serde_json::Value>,
    /// How often it was claimed (1 on the first claim).
    pub attempts: i64,
}

/// A grid-fee reduction as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GridFeeRecord {
    /// The pure order.
    pub order: GridFeeReduction,
    /// The wanted change date; `None` = "next possible date" (`ChangeDate::NextPossibleFrom`).
    pub effective_date: Option<NaiveDate>,
    /// Optimistic-concurrency version (1 on insert).
    pub version: i64,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Last saved.
    pub updated_at: DateTime<Utc>,
}

/// A meter order as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeterOrderRecord {
    /// The pure order.
    pub order: MeterOrder,
    /// The wanted installation date, if the supplier gave one.
    pub wanted_date: Option<NaiveDate>,
    /// Optimistic-concurrency version (1 on insert).
    pub version: i64,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Last saved.
    pub updated_at: DateTime<Utc>,
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

/// One status transition of an order.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HistoryEntry {
    /// Which kind of order.
    pub order_kind: OrderKind,
    /// The order's id.
    pub order_id: String,
    /// Status before (`None` when the order was created).
    pub from: Option<String>,
    /// Status after.
    pub to: String,
    /// The event topic published for it, if any.
    pub topic: Option<String>,
    /// The journal item of the message that caused it (`None` for API actions).
    pub journal_id: Option<String>,
    /// When.
    pub at: DateTime<Utc>,
    /// Anything else worth keeping (JSON).
    pub detail: Option<serde_json::Value>,
}

/// A webhook event: `{id, timestamp, topic, context}` as the receiver gets it.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookEvent {
    /// `evt_…`; receivers dedupe on it.
    pub id: String,
    /// `grid_fee_reduction.ordered`, …
    pub topic: String,
    /// The JSON body to POST.
    pub payload: serde_json::Value,
}

impl WebhookEvent {
    /// An event with a new id; `context` holds ids only (`{"meter_order": "mor_…", …}`).
    pub fn new(topic: &str, context: serde_json::Value, now: DateTime<Utc>) -> WebhookEvent {
        let id = new_id("evt", now);
        let payload = serde_json::json!({
            "id": id,
            "timestamp": now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "topic": topic,
            "context": context,
        });
        WebhookEvent {
            id,
            topic: topic.to_string(),
            payload,
        }
    }
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

/// Work to put into the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewOutboxItem {
    /// Order or acknowledgement.
    pub kind: OutboxKind,
    /// The order to send (for [`OutboxKind::Order`]).
    pub order: Option<(OrderKind, String)>,
    /// The recipient.
    pub partner: String,
    /// Prebuilt bytes (for [`OutboxKind::Ack`]).
    pub payload: Option<Vec<u8>>,
    /// The journal item this answers (acks).
    pub journal_id: Option<String>,
}

impl NewOutboxItem {
    /// An order to build and send to `partner`.
    pub fn order(kind: OrderKind, order_id: &str, partner: &str) -> NewOutboxItem {
        NewOutboxItem {
            kind: OutboxKind::Order,
            order: Some((kind, order_id.to_string())),
            partner: partner.to_string(),
            payload: None,
            journal_id: None,
        }
    }
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
}

/// A message we sent, for matching what partners answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentRecord {
    /// Recipient.
    pub partner: String,
    /// Our UNB DE0020.
    pub interchange_ref: String,
    /// Our UNH DE0062.
    pub message_ref: String,
    /// Our BGM DE1004.
    pub document_number: String,
    /// The order the message belongs to.
    pub order: Option<(OrderKind, String)>,
    /// The outbound journal item.
    pub journal_id: String,
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
