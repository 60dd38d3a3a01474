//! The outbound path's pure core: an item waiting in the outbox becomes a complete
//! [`OutboundPlan`]: the bytes (an order's ORDERS built now, or bytes kept from before), the
//! order moved to `ordered` / `placed` with the document number answers will name, its history
//! row and webhook event, and the sent records. The worker sends the bytes and the store
//! commits the plan; nothing is decided or applied again after it.

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};

use super::passthrough::{aperak_due, PassThroughSending, QueuedMessage};
use super::records::{
    serde_text, ChangedOrder, GridFeeRecord, MeterOrderRecord, OrderChange, OrderKind,
    OutboundRecord, SentRecord, Transport,
};
use crate::edifact::ReferenceSequence;
use crate::grammar::Registry;
use crate::ids::new_id;
use crate::orders::lead_time::{earliest_meter_date, german_day};
use crate::orders::{
    grid_fee_order, meter_order, Applied, ApplyError, BuildError, BuiltOrder, ChangeDate,
    GridFeeOrder, GridFeeReduction, GridFeeStatus, ImsysOrder, MeterOrder, MeterStatus,
    ModuleProduct, ReductionType, Sender,
};

/// Why an outbox item cannot be sent (permanent: the item is parked with this reason).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OutboundError {
    /// The reductions to send together ask for a combination no product covers.
    #[error("no §14a product covers {wanted:?} with {active:?} active")]
    NoProduct {
        /// Types to order.
        wanted: Vec<ReductionType>,
        /// Types active.
        active: Vec<ReductionType>,
    },
    /// The message could not be built.
    #[error(transparent)]
    Build(#[from] BuildError),
    /// The order is not in a state to be sent.
    #[error(transparent)]
    State(#[from] ApplyError),
    /// The meter order has no Messlokation yet.
    #[error("meter order {0} has no metering_location yet")]
    NoMeteringLocation(String),
    /// Nothing to send.
    #[error("no reduction to send")]
    Empty,
}

/// The reductions of one subscription and market location sent together as one ORDERS 17133
/// (Modul 1 and 3 ordered in one request travel as "Modul 1 und Modul 3"), and the types
/// already active there.
#[derive(Debug, Clone)]
pub struct GridFeeBatch<'a> {
    /// `intended` reductions, one market location, one grid operator.
    pub rows: &'a [GridFeeReduction],
    /// The types active (`activated`) at the subscription.
    pub active: &'a [ReductionType],
    /// Wanted date; `None` = the next possible date from today (`DTM+469`).
    pub effective_date: Option<NaiveDate>,
}

/// Builds the ORDERS 17133 for a batch and moves every row to `ordered`.
pub fn send_grid_fee(
    registry: &Registry,
    sender: &Sender,
    batch: &GridFeeBatch<'_>,
    now: NaiveDateTime,
    references: &mut ReferenceSequence,
) -> Result<(BuiltOrder, Vec<Applied<GridFeeReduction>>), OutboundError> {
    let first = batch.rows.first().ok_or(OutboundError::Empty)?;
    let wanted: Vec<ReductionType> = batch.rows.iter().map(|r| r.reduction_type).collect();
    let product = ModuleProduct::for_types(&wanted, batch.active).ok_or_else(|| {
        OutboundError::NoProduct {
            wanted: wanted.clone(),
            active: batch.active.to_vec(),
        }
    })?;
    let change = match batch.effective_date {
        Some(day) => ChangeDate::On(day),
        None => ChangeDate::NextPossibleFrom(german_day(now)),
    };
    let built = grid_fee_order(
        registry,
        sender,
        &GridFeeOrder {
            grid_operator: first.grid_operator.clone(),
            market_location: first.market_location.clone(),
            product,
            change,
        },
        now,
        references,
    )?;
    let mut applied = Vec::new();
    for row in batch.rows {
        if row.status != GridFeeStatus::Intended {
            return Err(OutboundError::State(ApplyError::IllegalTransition {
                status: format!("{:?}", row.status),
                input: "sending the order".into(),
            }));
        }
        applied.push(
            row.clone()
                .ordered(product, built.document_number.clone())?,
        );
    }
    Ok((built, applied))
}

/// Builds the iMSys ORDERS for a meter order and moves it to `placed`. A wanted date earlier
/// than 20 working days ahead is moved to the earliest allowed one.
pub fn send_meter_order(
    registry: &Registry,
    sender: &Sender,
    order: &MeterOrder,
    wanted: Option<NaiveDate>,
    now: NaiveDateTime,
    references: &mut ReferenceSequence,
) -> Result<(BuiltOrder, Applied<MeterOrder>), OutboundError> {
    let melo = order
        .metering_location
        .as_ref()
        .ok_or_else(|| OutboundError::NoMeteringLocation(order.id.clone()))?;
    let earliest = earliest_meter_date(now);
    let date = wanted.map_or(earliest, |w| w.max(earliest));
    let message = ImsysOrder {
        metering_operator: order.metering_operator.clone(),
        metering_location: melo.clone(),
        wanted: date,
        customer: order.customer_contact.clone(),
    };
    let built = meter_order(registry, sender, &message, now, references)?;
    let applied = order.clone().placed(built.document_number.clone())?;
    Ok((built, applied))
}

/// One message of an interchange we write, as the journal and the sent records name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrittenMessage {
    /// UNH DE0062.
    pub message_ref: String,
    /// BGM DE1004.
    pub document_number: String,
    /// The PID (RFF+Z13), or the message type where there is none (CONTRL, APERAK).
    pub pid: String,
    /// UNH S009 DE0065 (`ORDERS`, `CONTRL`, …).
    pub message_type: String,
}

/// An interchange on its way out, with everything its sending changes.
#[derive(Debug, Clone)]
pub struct OutboundPlan {
    /// The recipient (UNB S003).
    pub partner: String,
    /// The bytes to send.
    pub bytes: Vec<u8>,
    /// True when the bytes were built now: they are kept with the outbox item before anything
    /// leaves, so that a retry after a crash sends the same interchange.
    pub newly_built: bool,
    /// Our UNB reference.
    pub interchange_ref: String,
    /// Its messages.
    pub messages: Vec<WrittenMessage>,
    /// The id of its outbound journal entry (fixed here: the history rows name it).
    pub journal_id: String,
    /// The orders moved on (`ordered`, `placed`), with history rows and webhook events.
    pub order_changes: Vec<OrderChange>,
    /// What we sent, for matching answers.
    pub sent: Vec<SentRecord>,
    /// Orders whose own pending outbox items have nothing left to do (sent with this one).
    pub stand_down: Vec<String>,
    /// A pass-through of the supplier core: its journal entry exists since it was handed
    /// over (sending completes it instead of adding one), and its messages are marked sent.
    pub pass_through: Option<PassThroughSending>,
}

impl OutboundPlan {
    /// The journal entry of the interchange, sent over `transport` at `sent_at`.
    pub fn journal_record(&self, transport: Transport, sent_at: DateTime<Utc>) -> OutboundRecord {
        OutboundRecord {
            id: Some(self.journal_id.clone()),
            partner: self.partner.clone(),
            transport,
            interchange_ref: self.interchange_ref.clone(),
            message_refs: self
                .messages
                .iter()
                .map(|m| m.message_ref.clone())
                .collect(),
            pids: self.messages.iter().map(|m| m.pid.clone()).collect(),
            message_types: self
                .messages
                .iter()
                .map(|m| m.message_type.clone())
                .collect(),
            document_numbers: self
                .messages
                .iter()
                .map(|m| m.document_number.clone())
                .collect(),
            raw: self.bytes.clone(),
            sent_at,
        }
    }
}

/// What a claimed order item sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection<T> {
    /// Nothing (the order moved on, or another item sends it): the item is done, for this
    /// reason.
    Done(String),
    /// These orders, in one interchange.
    Send(T),
}

/// Why an outbox item cannot be planned (permanent: the item is parked with this reason).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// The order could not be built or moved on.
    #[error(transparent)]
    Outbound(#[from] OutboundError),
    /// The order of the item is not in the store.
    #[error("{what} {id} not found")]
    OrderNotFound {
        /// `reduction` or `meter order`.
        what: &'static str,
        /// Its id.
        id: String,
    },
    /// Kept bytes that are not an interchange we can read.
    #[error("the outbox payload is not a readable interchange")]
    Unreadable,
    /// An acknowledgement without bytes.
    #[error("an acknowledgement without bytes")]
    NoBytes,
    /// Kept ORDERS 17133 bytes without the product.
    #[error("the built ORDERS 17133 names no §14a product (CAV+ZH9)")]
    NoProduct,
    /// A pass-through item without its journal entry.
    #[error("a pass-through outbox item without its journal entry")]
    NoJournalEntry,
    /// A message of a pass-through interchange without its `messages` row.
    #[error("message {position} of the pass-through interchange has no pass-through record")]
    NoPassThroughRecord {
        /// Its place in the interchange (0 = the first).
        position: usize,
    },
}

/// What building needs: the grammars, us, now, and where references come from.
#[derive(Debug)]
pub struct BuildContext<'a> {
    /// The grammars.
    pub registry: &'a Registry,
    /// Us.
    pub sender: &'a Sender,
    /// Now.
    pub now: DateTime<Utc>,
    /// References for what is built.
    pub references: &'a mut ReferenceSequence,
}

/// The facts of an interchange we wrote, read back from its bytes (an acknowledgement built
/// when its message was received, or an order built before a crash): the one place outbound
/// bytes are parsed.
struct WrittenFacts {
    partner: String,
    interchange_ref: String,
    messages: Vec<WrittenMessage>,
    /// The §14a product code of an ORDERS 17133 (`CAV+ZH9:::<code>`).
    product: Option<String>,
}

fn written_facts(bytes: &[u8]) -> Option<WrittenFacts> {
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
        .map(|m| WrittenMessage {
            message_ref: m.reference().into_owned(),
            document_number: m
                .body()
                .find(|s| s.is(b"BGM"))
                .map(|s| s.value(2, 1).into_owned())
                .unwrap_or_default(),
            pid: crate::grammar::message_pid(&m)
                .map(|p| p.to_string())
                .unwrap_or_else(|| m.message_type().into_owned()),
            message_type: m.message_type().into_owned(),
        })
        .collect();
    Some(WrittenFacts {
        partner: env.recipient.id,
        interchange_ref: env.control_reference,
        messages,
        product,
    })
}

/// The references of ours an interchange we wrote carries, as answers name them: its UNB
/// DE0020, each message's UNH DE0062 and BGM DE1004, each once, non-empty, in that order
/// (nothing for bytes that are not a readable interchange), read back by the same parse as
/// every other fact of written bytes (`written_facts`). The store indexes an outbox item
/// by them, so that an answer naming one while the item is still being sent is recognised.
pub fn written_references(bytes: &[u8]) -> Vec<String> {
    let Some(facts) = written_facts(bytes) else {
        return Vec::new();
    };
    let mut out: Vec<String> = Vec::new();
    let values = std::iter::once(facts.interchange_ref).chain(
        facts
            .messages
            .into_iter()
            .flat_map(|m| [m.message_ref, m.document_number]),
    );
    for value in values {
        if !value.is_empty() && !out.contains(&value) {
            out.push(value);
        }
    }
    out
}

/// The facts of an interchange built now (no parse: the builder knows them).
fn built_facts(built: &BuiltOrder) -> WrittenFacts {
    let header = &built.interchange.header;
    WrittenFacts {
        partner: header.recipient.id.clone(),
        interchange_ref: header.control_reference.clone(),
        messages: built
            .interchange
            .messages
            .iter()
            .map(|m| WrittenMessage {
                message_ref: m.reference.clone(),
                document_number: built.document_number.clone(),
                pid: built.pid.to_string(),
                message_type: m.identifier.message_type.clone(),
            })
            .collect(),
        product: None,
    }
}

fn plan_of(
    facts: WrittenFacts,
    bytes: Vec<u8>,
    newly_built: bool,
    orders: &[(OrderKind, String)],
    now: DateTime<Utc>,
) -> OutboundPlan {
    let journal_id = new_id("jrn", now);
    let mut sent = Vec::new();
    for m in &facts.messages {
        let targets: Vec<Option<(OrderKind, String)>> = if orders.is_empty() {
            vec![None]
        } else {
            orders.iter().cloned().map(Some).collect()
        };
        for order in targets {
            sent.push(SentRecord {
                partner: facts.partner.clone(),
                interchange_ref: facts.interchange_ref.clone(),
                message_ref: m.message_ref.clone(),
                document_number: m.document_number.clone(),
                order,
                pass_through: None,
                journal_id: journal_id.clone(),
            });
        }
    }
    OutboundPlan {
        partner: facts.partner,
        bytes,
        newly_built,
        interchange_ref: facts.interchange_ref,
        messages: facts.messages,
        journal_id,
        order_changes: Vec::new(),
        sent,
        stand_down: Vec::new(),
        pass_through: None,
    }
}

impl WrittenFacts {
    /// The BGM document number of the (first) message: what answers will name.
    fn document(&self) -> String {
        self.messages
            .first()
            .map(|m| m.document_number.clone())
            .unwrap_or_default()
    }
}

/// The plan of an order's interchange and the order's transitions: built now by `build`, or,
/// when the outbox item kept the bytes of an earlier attempt, read back from them (the one
/// place outbound bytes are parsed) and moved on by `from_kept` as they were written.
fn built_or_kept<A>(
    kept: Option<&[u8]>,
    orders: &[(OrderKind, String)],
    now: DateTime<Utc>,
    build: impl FnOnce() -> Result<(BuiltOrder, A), OutboundError>,
    from_kept: impl FnOnce(&WrittenFacts) -> Result<A, PlanError>,
) -> Result<(OutboundPlan, A), PlanError> {
    match kept {
        None => {
            let (built, applied) = build()?;
            let bytes = crate::plan::inbound::write(&built.interchange);
            Ok((
                plan_of(built_facts(&built), bytes, true, orders, now),
                applied,
            ))
        }
        Some(bytes) => {
            let facts = written_facts(bytes).ok_or(PlanError::Unreadable)?;
            let applied = from_kept(&facts)?;
            Ok((plan_of(facts, bytes.to_vec(), false, orders, now), applied))
        }
    }
}

/// An acknowledgement or answer built when its message was received: sent as it is.
pub fn plan_prebuilt(bytes: Option<&[u8]>, now: DateTime<Utc>) -> Result<OutboundPlan, PlanError> {
    let bytes = bytes.ok_or(PlanError::NoBytes)?;
    let facts = written_facts(bytes).ok_or(PlanError::Unreadable)?;
    Ok(plan_of(facts, bytes.to_vec(), false, &[], now))
}

/// A pass-through interchange of the supplier core, checked and journaled when it was handed
/// over (`journal_id`, its `queued` outbound journal entry; `queued`, its messages' rows): sent
/// as it is. The plan completes that journal entry, records what was sent for matching
/// answers (each message with its pass-through record) and marks the messages sent with the
/// partner's APERAK deadline from now.
pub fn plan_pass_through(
    bytes: Option<&[u8]>,
    journal_id: Option<&str>,
    queued: &[QueuedMessage],
    now: DateTime<Utc>,
) -> Result<OutboundPlan, PlanError> {
    let journal_id = journal_id.ok_or(PlanError::NoJournalEntry)?;
    let mut plan = plan_prebuilt(bytes, now)?;
    plan.journal_id = journal_id.to_string();
    let mut sending = Vec::new();
    for (position, sent) in plan.sent.iter_mut().enumerate() {
        let message = queued
            .iter()
            .find(|q| q.position == position)
            .ok_or(PlanError::NoPassThroughRecord { position })?;
        sent.journal_id = journal_id.to_string();
        sent.pass_through = Some(message.id.clone());
        sending.push((message.id.clone(), aperak_due(&message.message_type, now)));
    }
    plan.pass_through = Some(PassThroughSending { messages: sending });
    Ok(plan)
}

/// The order change that sending moves an order through, named by the outbound journal entry.
#[allow(clippy::too_many_arguments)] // the fields of one history row, named at the call
fn sent_change(
    order: ChangedOrder,
    version: i64,
    subscription: &str,
    from: &str,
    to: &str,
    event: Option<&'static str>,
    plan: &OutboundPlan,
    now: DateTime<Utc>,
) -> OrderChange {
    OrderChange::new(
        order,
        version,
        subscription,
        from,
        to,
        event,
        Some(&plan.journal_id),
        &plan.interchange_ref,
        now,
    )
}

/// What the outbox item of reduction `id` sends, given every reduction of its subscription.
///
/// The intended reductions of the subscription at the same market location and date go in one
/// ORDERS (Modul 1 and 3 ordered together). Every one of them has an outbox item; the item of
/// the first (smallest id) sends for all, the others stand down, so that two workers never
/// send the batch twice.
pub fn select_grid_fee_batch<'r>(
    id: &str,
    subscription: &'r [GridFeeRecord],
) -> Result<Selection<Vec<&'r GridFeeRecord>>, PlanError> {
    let record = subscription
        .iter()
        .find(|r| r.order.id == id)
        .ok_or_else(|| PlanError::OrderNotFound {
            what: "reduction",
            id: id.to_string(),
        })?;
    if record.order.status != GridFeeStatus::Intended {
        return Ok(Selection::Done(format!(
            "nothing to send: reduction {id} is {:?} (sent with another)",
            record.order.status
        )));
    }
    let mut batch: Vec<&GridFeeRecord> = subscription
        .iter()
        .filter(|r| {
            r.order.status == GridFeeStatus::Intended
                && r.order.market_location == record.order.market_location
                && r.effective_date == record.effective_date
        })
        .collect();
    batch.sort_by(|a, b| a.order.id.cmp(&b.order.id));
    if batch.is_empty() {
        batch.push(record);
    }
    let leader = &batch[0].order.id;
    if leader != id {
        return Ok(Selection::Done(format!(
            "sent together with {leader}'s ORDERS"
        )));
    }
    Ok(Selection::Send(batch))
}

/// The ORDERS 17133 of a batch of intended reductions (from [`select_grid_fee_batch`]; the
/// first is the one whose outbox item sends). `subscription` holds every reduction of the
/// subscription (the active ones decide the product); `kept` the bytes built for the item
/// before a crash.
pub fn plan_grid_fee(
    batch: &[&GridFeeRecord],
    subscription: &[GridFeeRecord],
    kept: Option<&[u8]>,
    context: &mut BuildContext<'_>,
) -> Result<OutboundPlan, PlanError> {
    let Some(record) = batch.first() else {
        return Err(OutboundError::Empty.into());
    };
    let id = &record.order.id;
    let orders: Vec<(OrderKind, String)> = batch
        .iter()
        .map(|r| (OrderKind::GridFeeReduction, r.order.id.clone()))
        .collect();
    let (mut plan, applied) = built_or_kept(
        kept,
        &orders,
        context.now,
        || {
            let active: Vec<ReductionType> = subscription
                .iter()
                .filter(|r| r.order.status == GridFeeStatus::Activated)
                .map(|r| r.order.reduction_type)
                .collect();
            let rows: Vec<GridFeeReduction> = batch.iter().map(|r| r.order.clone()).collect();
            send_grid_fee(
                context.registry,
                context.sender,
                &GridFeeBatch {
                    rows: &rows,
                    active: &active,
                    effective_date: record.effective_date,
                },
                context.now.naive_utc(),
                context.references,
            )
        },
        |facts| {
            // The product as written.
            let product = facts
                .product
                .as_deref()
                .and_then(ModuleProduct::from_code)
                .ok_or(PlanError::NoProduct)?;
            let applied = batch
                .iter()
                .map(|r| r.order.clone().ordered(product, facts.document()))
                .collect::<Result<Vec<_>, _>>()
                .map_err(OutboundError::from)?;
            Ok(applied)
        },
    )?;
    for (row, applied) in batch.iter().zip(applied) {
        let change = sent_change(
            ChangedOrder::GridFee(Box::new(applied.order)),
            row.version,
            &row.order.subscription,
            &serde_text(&row.order.status),
            &serde_text(&GridFeeStatus::Ordered),
            applied.event,
            &plan,
            context.now,
        );
        plan.order_changes.push(change);
        if &row.order.id != id {
            plan.stand_down.push(row.order.id.clone());
        }
    }
    Ok(plan)
}

/// What the outbox item of a meter order sends: the order, while it is `created`.
pub fn select_meter_order(record: &MeterOrderRecord) -> Selection<&MeterOrderRecord> {
    if record.order.status == MeterStatus::Created {
        Selection::Send(record)
    } else {
        Selection::Done(format!(
            "nothing to send: meter order {} is {:?}",
            record.order.id, record.order.status
        ))
    }
}

/// The iMSys ORDERS of a `created` meter order (from [`select_meter_order`]; `kept`: the
/// bytes built for its outbox item before a crash).
pub fn plan_meter_order(
    record: &MeterOrderRecord,
    kept: Option<&[u8]>,
    context: &mut BuildContext<'_>,
) -> Result<OutboundPlan, PlanError> {
    let order = &record.order;
    let orders = [(OrderKind::MeterOrder, order.id.clone())];
    let (mut plan, applied) = built_or_kept(
        kept,
        &orders,
        context.now,
        || {
            send_meter_order(
                context.registry,
                context.sender,
                order,
                record.wanted_date,
                context.now.naive_utc(),
                context.references,
            )
        },
        |facts| {
            Ok(order
                .clone()
                .placed(facts.document())
                .map_err(OutboundError::from)?)
        },
    )?;
    let change = sent_change(
        ChangedOrder::Meter(Box::new(applied.order)),
        record.version,
        &order.subscription,
        &serde_text(&order.status),
        &serde_text(&MeterStatus::Placed),
        applied.event,
        &plan,
        context.now,
    );
    plan.order_changes.push(change);
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn the_journal_record_of_kept_bytes_names_each_message_type_and_pid() {
        let now = Utc.with_ymd_and_hms(2026, 6, 1, 10, 0, 0).unwrap();
        for (bytes, pids, types) in [
            (
                &include_bytes!("../../samples/outbound/orders_17133_modul1_und_3.edi")[..],
                ["17133"],
                ["ORDERS"],
            ),
            // No PID: the journal names the message type in its place.
            (
                &include_bytes!("../../samples/outbound/aperak_313_z29_answer.edi")[..],
                ["APERAK"],
                ["APERAK"],
            ),
        ] {
            let plan = plan_prebuilt(Some(bytes), now).unwrap();
            let record = plan.journal_record(Transport::File, now);
            assert_eq!(record.pids, pids);
            assert_eq!(record.message_types, types);
            assert_eq!(record.raw, bytes);
        }
    }

    #[test]
    fn the_references_of_written_bytes_are_the_interchange_message_and_document_numbers() {
        let bytes = include_bytes!("../../samples/outbound/orders_17133_modul1_und_3.edi");
        assert_eq!(
            written_references(bytes),
            ["MG00000003", "MG00000002", "MG00000001"]
        );
        // Every value once; a message without BGM adds its UNH reference only.
        let contrl = b"UNA:+.? 'UNB+UNOC:3+1:500+2:500+261123:0815+R1'UNH+R1+CONTRL:D:3:UN:2.0b'\
UCI+X9+2:500+1:500+7'UNT+3+R1'UNZ+1+R1'";
        assert_eq!(written_references(contrl), ["R1"]);
        assert!(written_references(b"not an interchange").is_empty());
    }
}
