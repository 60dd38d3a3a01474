//! How far ahead an order must be placed: the lead times the API checks when an order is
//! created and the outbound planner applies when it is written.

use chrono::{NaiveDate, NaiveDateTime};

use crate::acks::calendar::{berlin_local, Calendar};

/// Working days between the order and the wanted installation date of an iMSys
/// (`shared/domain/README.md`, deadlines: "iMSys orders ≥ 20 working days"; the date travels
/// in ORDERS 17011/17003 `DTM+203`).
pub const METER_ORDER_LEAD_WORKING_DAYS: u32 = 20;

/// Working days between a §14a module order and its change date (`shared/domain/README.md`,
/// deadlines: "§14a orders need ≥ 2 working days lead time"; a shorter lead is answered with
/// ORDRSP 19133 A21).
pub const GRID_FEE_LEAD_WORKING_DAYS: u32 = 2;

/// The German day of `now` (UTC).
pub fn german_day(now: NaiveDateTime) -> NaiveDate {
    berlin_local(now).date()
}

/// The earliest wanted date of an iMSys order written at `now`.
pub fn earliest_meter_date(now: NaiveDateTime) -> NaiveDate {
    Calendar::embedded().add_working_days(german_day(now), METER_ORDER_LEAD_WORKING_DAYS)
}

/// The earliest change date of a §14a module order written at `now`.
pub fn earliest_grid_fee_date(now: NaiveDateTime) -> NaiveDate {
    Calendar::embedded().add_working_days(german_day(now), GRID_FEE_LEAD_WORKING_DAYS)
}
