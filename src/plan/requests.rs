//! The supplier core's requests, decided: which orders a request creates (after the product
//! rules), their first history rows and the outbox items that send them, what a confirmation
//! queues, and what cancelling a meter order changes. The API parses and answers; the store
//! carries out what comes back here.

use chrono::{DateTime, Utc};
use serde_json::json;

use super::outbound::{send_grid_fee, send_meter_order, GridFeeBatch, OutboundError};
use super::records::{
    serde_text, ChangedOrder, GridFeeRecord, HistoryEntry, MeterOrderRecord, NewOutboxItem,
    OrderChange, OrderKind,
};
use crate::edifact::ReferenceSequence;
use crate::grammar::Registry;
use crate::ids::{new_id, MarketLocationId, MarketPartnerId, MeteringLocationId};
use crate::orders::{
    check_new_meter_order, check_new_reductions, ApplyError, BuildError, CancelReason,
    CustomerContact, Existing, GridFeeReduction, GridFeeStatus, MeterOrder, MeterType,
    ReductionType, RuleViolation, Sender,
};

/// `POST /grid-fee-reductions`, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewReductions {
    /// The supplier's subscription.
    pub subscription: String,
    /// The modules asked for (Modul 1 and 3 may come together).
    pub types: Vec<ReductionType>,
    /// The market location.
    pub market_location: MarketLocationId,
    /// Its grid operator.
    pub grid_operator: MarketPartnerId,
    /// The meter there.
    pub meter_type: MeterType,
}

/// `POST /meter-orders`, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMeterOrder {
    /// The supplier's subscription.
    pub subscription: String,
    /// The market location.
    pub market_location: MarketLocationId,
    /// The Messlokation, if already known.
    pub metering_location: Option<MeteringLocationId>,
    /// The metering operator.
    pub metering_operator: MarketPartnerId,
    /// The end customer's contact for the installation appointment, sent with the order.
    pub customer_contact: Option<CustomerContact>,
}

/// New orders with their first history rows and the outbox items that send them.
#[derive(Debug, Clone, PartialEq)]
pub struct Created<T> {
    /// The orders, in the order asked for.
    pub orders: Vec<T>,
    /// One `created`/`intended` row per order.
    pub history: Vec<HistoryEntry>,
    /// What goes out now (nothing while the subscription is unconfirmed or the Messlokation
    /// unknown).
    pub outbox: Vec<NewOutboxItem>,
}

fn first_row(kind: OrderKind, id: &str, status: &str, now: DateTime<Utc>) -> HistoryEntry {
    HistoryEntry {
        order_kind: kind,
        order_id: id.to_string(),
        from: None,
        to: status.to_string(),
        topic: None,
        journal_id: None,
        at: now,
        detail: Some(json!({"source": "api"})),
    }
}

/// The reductions a request creates, given the subscription's reductions so far and whether
/// it is confirmed (only then do they go out); the product rules decide first.
pub fn new_reductions(
    request: &NewReductions,
    subscription: &[GridFeeRecord],
    confirmed: bool,
    now: DateTime<Utc>,
) -> Result<Created<GridFeeReduction>, Vec<RuleViolation>> {
    let existing: Vec<Existing> = subscription
        .iter()
        .map(|r| Existing {
            reduction_type: r.order.reduction_type,
            status: r.order.status,
        })
        .collect();
    check_new_reductions(&existing, &request.types, request.meter_type)?;
    let mut created = Created {
        orders: Vec::new(),
        history: Vec::new(),
        outbox: Vec::new(),
    };
    for reduction_type in &request.types {
        let order = GridFeeReduction::intended(
            new_id("gfr", now),
            request.subscription.clone(),
            *reduction_type,
            request.market_location.clone(),
            request.grid_operator.clone(),
            request.meter_type,
        );
        created.history.push(first_row(
            OrderKind::GridFeeReduction,
            &order.id,
            &serde_text(&order.status),
            now,
        ));
        if confirmed {
            created.outbox.push(NewOutboxItem::order(
                OrderKind::GridFeeReduction,
                &order.id,
                request.grid_operator.as_str(),
            ));
        }
        created.orders.push(order);
    }
    Ok(created)
}

/// The meter order a request creates (at most one per subscription, ever: `existing` is how
/// many the subscription has); it goes out at once when the Messlokation is known.
pub fn new_meter_order(
    request: &NewMeterOrder,
    existing: usize,
    now: DateTime<Utc>,
) -> Result<Created<MeterOrder>, RuleViolation> {
    check_new_meter_order(existing)?;
    let mut order = MeterOrder::created(
        new_id("mor", now),
        request.subscription.clone(),
        request.market_location.clone(),
        request.metering_location.clone(),
        request.metering_operator.clone(),
    );
    order.customer_contact = request.customer_contact.clone();
    let history = vec![first_row(
        OrderKind::MeterOrder,
        &order.id,
        &serde_text(&order.status),
        now,
    )];
    let outbox = order
        .metering_location
        .is_some()
        .then(|| {
            NewOutboxItem::order(
                OrderKind::MeterOrder,
                &order.id,
                order.metering_operator.as_str(),
            )
        })
        .into_iter()
        .collect();
    Ok(Created {
        orders: vec![order],
        history,
        outbox,
    })
}

/// What confirming a subscription queues: every `intended` reduction without an open outbox
/// item (`queued` says which have one), so that a repeated confirmation queues nothing twice.
pub fn confirmation(
    subscription: &[GridFeeRecord],
    queued: impl Fn(&str) -> bool,
) -> Vec<NewOutboxItem> {
    subscription
        .iter()
        .filter(|r| r.order.status == GridFeeStatus::Intended && !queued(&r.order.id))
        .map(|r| {
            NewOutboxItem::order(
                OrderKind::GridFeeReduction,
                &r.order.id,
                r.order.grid_operator.as_str(),
            )
        })
        .collect()
}

/// The supplier core cancels a meter order, because the customer asks (`customer_request`) or
/// because an iMSys is already there (`pre_existing`: no answer to our order says so, see
/// [`CancelReason::PreExisting`]): the change with its history row and webhook event, `None`
/// when it is cancelled for this reason already (nothing changes), or why it cannot be
/// cancelled.
pub fn cancellation(
    record: &MeterOrderRecord,
    reason: CancelReason,
    now: DateTime<Utc>,
) -> Result<Option<OrderChange>, ApplyError> {
    let applied = record.order.clone().cancel(reason)?;
    let Some(topic) = applied.event else {
        return Ok(None);
    };
    let to = serde_text(&applied.order.status);
    let mut change = OrderChange::new(
        ChangedOrder::Meter(Box::new(applied.order.clone())),
        record.version,
        &applied.order.subscription,
        &serde_text(&record.order.status),
        &to,
        Some(topic),
        None,
        "",
        now,
    );
    change.history.detail = Some(json!({"source": "api", "reason": serde_text(&reason)}));
    Ok(Some(change))
}

/// The reference prefix of trial builds ([`check_sendable_reductions`]): never sent.
const TRIAL_REFERENCES: &str = "TRIAL";

/// Whether the ORDERS 17133 that will send new reductions passes our own grammars: built here
/// once as the outbox worker will build it (without the sender's contact, which only ORDERS
/// 1.4b writes) and checked by [`crate::orders::grid_fee_order`], so that a request whose message
/// would fail is refused at the API (400), never queued (issue 15 defect 6). Only a failed
/// check is an error here; whether a product covers the combination is decided by the product
/// rules before and by the worker when it sends.
pub fn check_sendable_reductions(
    reductions: &[GridFeeReduction],
    subscription: &[GridFeeRecord],
    effective_date: Option<chrono::NaiveDate>,
    own_id: &MarketPartnerId,
    now: DateTime<Utc>,
) -> Result<(), BuildError> {
    let active: Vec<ReductionType> = subscription
        .iter()
        .filter(|r| r.order.status == GridFeeStatus::Activated)
        .map(|r| r.order.reduction_type)
        .collect();
    let batch = GridFeeBatch {
        rows: reductions,
        active: &active,
        effective_date,
    };
    let mut references = ReferenceSequence::new(TRIAL_REFERENCES, 1).expect("a valid prefix");
    match send_grid_fee(
        Registry::embedded(),
        &trial_sender(own_id),
        &batch,
        now.naive_utc(),
        &mut references,
    ) {
        Err(OutboundError::Build(invalid @ BuildError::Invalid { .. })) => Err(invalid),
        _ => Ok(()),
    }
}

/// [`check_sendable_reductions`] for a meter order with a known Messlokation (without one
/// nothing is sent yet; the check runs again when it is set).
pub fn check_sendable_meter_order(
    order: &MeterOrder,
    wanted_date: Option<chrono::NaiveDate>,
    own_id: &MarketPartnerId,
    now: DateTime<Utc>,
) -> Result<(), BuildError> {
    if order.metering_location.is_none() {
        return Ok(());
    }
    let mut references = ReferenceSequence::new(TRIAL_REFERENCES, 1).expect("a valid prefix");
    match send_meter_order(
        Registry::embedded(),
        &trial_sender(own_id),
        order,
        wanted_date,
        now.naive_utc(),
        &mut references,
    ) {
        Err(OutboundError::Build(invalid @ BuildError::Invalid { .. })) => Err(invalid),
        _ => Ok(()),
    }
}

fn trial_sender(own_id: &MarketPartnerId) -> Sender {
    Sender {
        id: own_id.clone(),
        contact_name: None,
        contact_email: None,
    }
}
