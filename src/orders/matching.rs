//! Which order an answer is for, by the references the format provides — never by guesswork.
//! An answer that matches nothing goes to the clearing list with the reason.

use super::answers::Answer;
use super::lifecycle::{GridFeeReduction, MeterOrder, MeterStatus};
use super::rules::GridFeeStatus;

/// The order an answer belongs to.
#[derive(Debug, PartialEq, Eq)]
pub enum AnswerMatch<'o> {
    /// A grid-fee reduction.
    GridFee(&'o GridFeeReduction),
    /// A meter order.
    Meter(&'o MeterOrder),
    /// Nothing matches: kept for clearing with the reason, never dropped.
    Unmatched {
        /// Why.
        reason: String,
    },
}

/// Finds the order `answer` is for:
/// - ORDRSP 19133 by `RFF+ON` = the BGM document number of our ORDERS 17133;
/// - UTILMD 55218 by the market location, among the reductions waiting for their data
///   (`ordered`), the accepted one first; several candidates are not guessed between;
/// - ORDRSP 19005/19006 by `RFF+ON`;
/// - UTILMD 55620 by the Messlokation, among meter orders not yet installed.
pub fn match_answer<'o>(
    answer: &Answer,
    reductions: &'o [GridFeeReduction],
    meters: &'o [MeterOrder],
) -> AnswerMatch<'o> {
    let unmatched = |reason: String| AnswerMatch::Unmatched { reason };
    match answer {
        Answer::GridFeeResponse { order_document, .. } => reductions
            .iter()
            .find(|r| r.order_document.as_deref() == Some(order_document.as_str()))
            .map_or_else(
                || {
                    unmatched(format!(
                        "ORDRSP 19133 refers to order {order_document:?}, which we did not send"
                    ))
                },
                AnswerMatch::GridFee,
            ),
        Answer::BillingData {
            market_location, ..
        } => {
            let waiting: Vec<&GridFeeReduction> = reductions
                .iter()
                .filter(|r| {
                    r.market_location == *market_location.as_str()
                        && r.status == GridFeeStatus::Ordered
                })
                .collect();
            let accepted: Vec<&&GridFeeReduction> = waiting.iter().filter(|r| r.accepted).collect();
            match (accepted.as_slice(), waiting.as_slice()) {
                ([one], _) => AnswerMatch::GridFee(one),
                ([], [one]) => AnswerMatch::GridFee(one),
                ([], []) => unmatched(format!(
                    "UTILMD 55218 for market location {market_location}: no reduction there waits for its data"
                )),
                _ => unmatched(format!(
                    "UTILMD 55218 for market location {market_location}: several reductions wait for their data"
                )),
            }
        }
        Answer::MeterOrderResponse {
            order_document,
            pid,
            ..
        } => meters
            .iter()
            .find(|m| m.order_document.as_deref() == Some(order_document.as_str()))
            .map_or_else(
                || {
                    unmatched(format!(
                        "ORDRSP {pid} refers to order {order_document:?}, which we did not send"
                    ))
                },
                AnswerMatch::Meter,
            ),
        Answer::MeteringLocationChanged {
            metering_location, ..
        } => {
            let open: Vec<&MeterOrder> = meters
                .iter()
                .filter(|m| {
                    m.metering_location.as_ref().map(|l| l.as_str())
                        == Some(metering_location.as_str())
                })
                .filter(|m| {
                    !matches!(
                        m.status,
                        MeterStatus::Installed
                            | MeterStatus::Activated
                            | MeterStatus::Cancelled
                            | MeterStatus::Created
                    )
                })
                .collect();
            match open.as_slice() {
                [one] => AnswerMatch::Meter(one),
                [] => unmatched(format!(
                    "UTILMD 55620 for Messlokation {metering_location}: no open meter order there"
                )),
                _ => unmatched(format!(
                    "UTILMD 55620 for Messlokation {metering_location}: several open meter orders"
                )),
            }
        }
    }
}
