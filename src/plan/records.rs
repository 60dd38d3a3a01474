//! The records a plan consists of: what the pure planners hand the store to write (history
//! rows, webhook events, outbox items, sent messages, journal entries), and the stored form of
//! an order they plan on (the order with its version).

use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;

use crate::ids::new_id;
use crate::orders::{GridFeeReduction, MeterOrder};

/// The text of a serde unit enum value (`"intended"`, `"enwg-14a-module-1"`, …).
pub fn serde_text<S: Serialize>(value: &S) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(s)) => s,
        other => panic!("expected a unit enum that serialises as a string, got {other:?}"),
    }
}

/// JSON kept as its text: written once (a message's findings) or read from the store without
/// building a value tree (checked to be JSON when read), and written into a record or a
/// response as the JSON it is, not as a string. Value trees were the largest thing held after
/// the bytes for an interchange of 27,000 forwarded messages: about 1.8 KB per finding against
/// 270 bytes of text, and a journal outcome of 15 MB of text was several times that as a
/// `serde_json::Value`, held twice by a `GET /journal` page (the row's tree and the
/// response's copy).
#[derive(Debug, Clone)]
pub struct JsonText(Box<serde_json::value::RawValue>);

impl JsonText {
    /// `text`, if it is JSON.
    pub fn parse(text: String) -> Result<JsonText, serde_json::Error> {
        serde_json::value::RawValue::from_string(text).map(JsonText)
    }

    /// The text of `findings` (an array of [`Finding`](crate::grammar::Finding)'s fields; `[]`
    /// should they not serialize).
    pub fn of_findings(findings: &[crate::grammar::Finding]) -> JsonText {
        JsonText(
            serde_json::value::to_raw_value(findings)
                .or_else(|_| serde_json::value::RawValue::from_string("[]".to_string()))
                .expect("`[]` is JSON"),
        )
    }

    /// The JSON text.
    pub fn as_str(&self) -> &str {
        self.0.get()
    }

    /// The text read as a value tree (for the few readers that look inside).
    pub fn value(&self) -> Result<serde_json::Value, serde_json::Error> {
        serde_json::from_str(self.as_str())
    }
}

/// Equal texts (what the store wrote is compact, so equal values are equal texts).
impl PartialEq for JsonText {
    fn eq(&self, other: &JsonText) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for JsonText {}

impl Serialize for JsonText {
    /// Embedded as the JSON it is, without reading it again.
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
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

pub(crate) use text_enum;

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
        /// Out: a pass-through interchange of the supplier core, journaled when it was handed
        /// over, not sent yet (it becomes `processed` when sent, `failed` when parked).
        Queued = "queued",
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
        /// A pass-through interchange of the supplier core, checked and fixed when it was
        /// handed over (`payload`; `journal_id` is its own outbound journal entry).
        PassThrough = "pass_through",
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
    /// UNH S009 DE0065 of each message (`UTILMD`, `CONTRL`, …).
    pub message_types: Vec<String>,
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
    /// UNH S009 DE0065 of each message (`ORDERS`, `CONTRL`, …).
    pub message_types: Vec<String>,
    /// BGM DE1004 of each message.
    pub document_numbers: Vec<String>,
    /// The bytes sent.
    pub raw: Vec<u8>,
    /// When.
    pub sent_at: DateTime<Utc>,
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
    /// The JSON body to POST, as text (kept as text: an interchange of many forwarded
    /// messages queues as many events).
    pub payload: String,
}

impl WebhookEvent {
    /// An event with a new id; `context` holds ids only (`{"meter_order": "mor_…", …}`).
    pub fn new(topic: &str, context: serde_json::Value, now: DateTime<Utc>) -> WebhookEvent {
        /// The body, in this order.
        #[derive(Serialize)]
        struct Body<'b> {
            id: &'b str,
            timestamp: String,
            topic: &'b str,
            context: serde_json::Value,
        }
        let id = new_id("evt", now);
        let payload = serde_json::to_string(&Body {
            id: &id,
            timestamp: now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            topic,
            context,
        })
        .unwrap_or_else(|_| "null".to_string());
        WebhookEvent {
            id,
            topic: topic.to_string(),
            payload,
        }
    }
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
    /// Prebuilt bytes (for [`OutboxKind::Ack`] and [`OutboxKind::PassThrough`]).
    pub payload: Option<Vec<u8>>,
    /// The journal item this answers (acks), or the pass-through's own outbound journal
    /// entry.
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
    /// The pass-through message it is (the `messages` row, `out_…`), for a message of the
    /// supplier core sent as it was handed over.
    pub pass_through: Option<String>,
    /// The outbound journal item.
    pub journal_id: String,
}

/// An order as a plan changed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChangedOrder {
    /// A grid-fee reduction.
    GridFee(Box<GridFeeReduction>),
    /// A meter order.
    Meter(Box<MeterOrder>),
}

impl ChangedOrder {
    /// Which kind of order.
    pub fn kind(&self) -> OrderKind {
        match self {
            ChangedOrder::GridFee(_) => OrderKind::GridFeeReduction,
            ChangedOrder::Meter(_) => OrderKind::MeterOrder,
        }
    }

    /// The order's id.
    pub fn id(&self) -> &str {
        match self {
            ChangedOrder::GridFee(o) => &o.id,
            ChangedOrder::Meter(o) => &o.id,
        }
    }
}

/// One change of an order with everything that goes with it: the order saved if nobody saved
/// it since `expected_version` was read, its status-history row, and the webhook event, if the
/// change is one the supplier is told about.
#[derive(Debug, Clone, PartialEq)]
pub struct OrderChange {
    /// The order after the change.
    pub order: ChangedOrder,
    /// The stored version the change was planned on (optimistic concurrency).
    pub expected_version: i64,
    /// The status-history row.
    pub history: HistoryEntry,
    /// The webhook event, if any.
    pub event: Option<WebhookEvent>,
}

impl OrderChange {
    /// The change of `order` (kind, id, subscription) from status `from` to `to`, caused by
    /// `message` (journal item `journal_id`), with the webhook `topic` if there is one.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        order: ChangedOrder,
        expected_version: i64,
        subscription: &str,
        from: &str,
        to: &str,
        topic: Option<&str>,
        journal_id: Option<&str>,
        message: &str,
        now: DateTime<Utc>,
    ) -> OrderChange {
        let kind = order.kind();
        let id = order.id().to_string();
        let history = HistoryEntry {
            order_kind: kind,
            order_id: id.clone(),
            from: Some(from.to_string()),
            to: to.to_string(),
            topic: topic.map(str::to_string),
            journal_id: journal_id.map(str::to_string),
            at: now,
            detail: Some(serde_json::json!({ "message": message })),
        };
        let event = topic.map(|topic| {
            let mut context =
                serde_json::json!({ kind.as_str(): id, "subscription": subscription });
            if let Some(j) = journal_id {
                context["journal"] = serde_json::json!(j);
            }
            WebhookEvent::new(topic, context, now)
        });
        OrderChange {
            order,
            expected_version,
            history,
            event,
        }
    }
}

/// An inbound message for the clearing list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewClearing {
    /// The journal item of the message.
    pub journal_id: String,
    /// Why it is there.
    pub reason: String,
}
