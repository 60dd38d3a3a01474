//! The two kinds of order and their messages: §14a grid-fee reductions (ORDERS 17133 to the
//! grid operator) and smart-meter installation orders (ORDERS 17011/17003 to the metering
//! operator); the product rules; the answers read from partners' messages; and the pure
//! `apply` of each answer onto the order's state.
//!
//! Pure: time comes in as an argument, lookups of the store happen outside.

pub mod answers;
pub mod billing;
pub mod build;
pub mod lead_time;
pub mod lifecycle;
pub mod matching;
pub mod partner_status;
pub mod reasons;
pub mod rules;

pub use answers::{
    read_answer, read_answers, read_failure_reports, read_status_reports, Answer, FailureReport,
    Installation, InstalledMeter, StatusReport, HANDLED_PIDS, STATUS_REPORT_PIDS,
};
pub use billing::{
    review, Article, BillingData, Expectation, PeriodAnswer, PeriodKind, Quantity, Review,
    UsagePeriod, ViewPeriod, E0610,
};
pub use build::{
    billing_data_answer, grid_fee_order, meter_order, BillingDataAnswer, BuildError, BuiltOrder,
    ChangeDate, GridFeeOrder, ImsysOrder, Sender, BILLING_ANSWER_WORKING_DAYS,
};
pub use lifecycle::{
    Applied, ApplyError, CancelReason, GridFeeReduction, Input, MeterOrder, MeterStatus, Rejection,
};
pub use matching::{expectation_for, match_answer, AnswerMatch};
pub use partner_status::{PartnerStatusError, PartnerStatusRule, PartnerStatusRules};
pub use reasons::reason_text;
pub use rules::{
    check_new_meter_order, check_new_reductions, ContactError, ContactFields, CustomerContact,
    Existing, GridFeeStatus, MeterType, ModuleProduct, ReductionType, RuleViolation,
};
