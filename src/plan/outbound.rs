//! The outbound path's pure core: an order waiting in the outbox becomes its ORDERS, and the
//! order moves to `ordered` / `placed` with the document number answers will name.

use chrono::{NaiveDate, NaiveDateTime};

use crate::edifact::ReferenceSequence;
use crate::grammar::Registry;
use crate::orders::lead_time::{earliest_meter_date, german_day};
use crate::orders::{
    grid_fee_order, meter_order, Applied, ApplyError, BuildError, BuiltOrder, ChangeDate,
    GridFeeOrder, GridFeeReduction, GridFeeStatus, MeterOrder, ModuleProduct, ReductionType,
    Sender,
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
    let built = meter_order(
        registry,
        sender,
        &order.metering_operator,
        melo,
        date,
        now,
        references,
    )?;
    let applied = order.clone().placed(built.document_number.clone())?;
    Ok((built, applied))
}
