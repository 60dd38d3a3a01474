//! Which order an answer is for, by the references the format provides — never by guesswork.
//! An answer that matches nothing goes to the clearing list with the reason.

use super::answers::Answer;
use super::lifecycle::{GridFeeReduction, MeterOrder, MeterStatus, METER_ORDER_DECISION_TREE};
use super::rules::GridFeeStatus;

/// The order(s) an answer belongs to.
#[derive(Debug, PartialEq, Eq)]
pub enum AnswerMatch<'o> {
    /// Grid-fee reductions: one, or the two rows of one "Modul 1 und 3" order (they share
    /// the ORDERS document number and get the same answer).
    GridFee(Vec<&'o GridFeeReduction>),
    /// A meter order.
    Meter(&'o MeterOrder),
    /// Nothing matches: kept for clearing with the reason, never dropped.
    Unmatched {
        /// Why.
        reason: String,
    },
}

/// The reductions of one order document, if `candidates` hold exactly one document.
fn one_document<'o>(candidates: &[&'o GridFeeReduction]) -> Option<Vec<&'o GridFeeReduction>> {
    let first = candidates.first()?.order_document.as_deref();
    candidates
        .iter()
        .all(|r| r.order_document.as_deref() == first)
        .then(|| candidates.to_vec())
}

/// A meter order waits for its installation or its failure: placed and not yet installed,
/// activated or cancelled.
fn is_open(m: &MeterOrder) -> bool {
    matches!(
        m.status,
        MeterStatus::Placed
            | MeterStatus::CheckSubmitted
            | MeterStatus::CheckReviewed
            | MeterStatus::Scheduled
    )
}

/// Finds the order `answer` from `partner` (the UNB sender) is for:
/// - ORDRSP 19133 by `RFF+ON` = the BGM document number of our ORDERS 17133;
/// - UTILMD 55218 by the market location, among the reductions waiting for their data
///   (`ordered`), the accepted ones first, all of one order document (several orders waiting
///   are not guessed between); a 55218 that closes the period (`DTM+Z26`) while nothing waits
///   ends the activated reductions of the location;
/// - ORDRSP 19005/19006 (on E_0250) and IFTSTA 21043/21044 status reports by `RFF+ON` /
///   `RFF+AGI`;
/// - UTILMD 55653 and IFTSTA 21025 by the Messlokation, among the open meter orders there.
///
/// A meter order is only ever matched by an answer of its metering operator, the partner the
/// ORDERS went to: an answer of anyone else goes to clearing.
pub fn match_answer<'o>(
    answer: &Answer,
    partner: &str,
    reductions: &'o [GridFeeReduction],
    meters: &'o [MeterOrder],
) -> AnswerMatch<'o> {
    let unmatched = |reason: String| AnswerMatch::Unmatched { reason };
    let meter_by_document = |document: &str, what: &str| {
        match meters
            .iter()
            .find(|m| m.order_document.as_deref() == Some(document))
        {
            None => unmatched(format!(
                "{what} refers to order {document:?}, which we did not send"
            )),
            Some(m) if m.metering_operator.as_str() != partner => unmatched(format!(
                "{what} from {partner} refers to order {document:?}, which went to metering operator {}",
                m.metering_operator
            )),
            Some(m) => AnswerMatch::Meter(m),
        }
    };
    // The open meter orders at a Messlokation whose metering operator is the sender.
    let open_meter_at = |metering_location: &str, what: &str| {
        let at_location: Vec<&MeterOrder> = meters
            .iter()
            .filter(|m| {
                m.metering_location.as_ref().map(|l| l.as_str()) == Some(metering_location)
                    && is_open(m)
            })
            .collect();
        let of_sender: Vec<&MeterOrder> = at_location
            .iter()
            .copied()
            .filter(|m| m.metering_operator.as_str() == partner)
            .collect();
        match (of_sender.as_slice(), at_location.is_empty()) {
            ([one], _) => AnswerMatch::Meter(one),
            ([], true) => unmatched(format!(
                "{what} for Messlokation {metering_location}: no open meter order there"
            )),
            ([], false) => unmatched(format!(
                "{what} from {partner} for Messlokation {metering_location}: the open meter order there went to another metering operator"
            )),
            _ => unmatched(format!(
                "{what} for Messlokation {metering_location}: several open meter orders"
            )),
        }
    };
    match answer {
        Answer::GridFeeResponse { order_document, .. } => {
            let of_document: Vec<&GridFeeReduction> = reductions
                .iter()
                .filter(|r| r.order_document.as_deref() == Some(order_document.as_str()))
                .collect();
            if of_document.is_empty() {
                unmatched(format!(
                    "ORDRSP 19133 refers to order {order_document:?}, which we did not send"
                ))
            } else {
                AnswerMatch::GridFee(of_document)
            }
        }
        Answer::BillingData {
            market_location,
            valid_until,
            ..
        } => {
            let at_location = |status: GridFeeStatus| -> Vec<&GridFeeReduction> {
                reductions
                    .iter()
                    .filter(|r| {
                        r.market_location == *market_location.as_str() && r.status == status
                    })
                    .collect()
            };
            let waiting = at_location(GridFeeStatus::Ordered);
            let accepted: Vec<&GridFeeReduction> =
                waiting.iter().copied().filter(|r| r.accepted).collect();
            if let Some(matched) = one_document(&accepted) {
                return AnswerMatch::GridFee(matched);
            }
            if !accepted.is_empty() {
                return unmatched(format!(
                    "UTILMD 55218 for market location {market_location}: accepted orders of several documents wait for their data"
                ));
            }
            if let Some(matched) = one_document(&waiting) {
                return AnswerMatch::GridFee(matched);
            }
            if !waiting.is_empty() {
                return unmatched(format!(
                    "UTILMD 55218 for market location {market_location}: several orders wait for their data"
                ));
            }
            let activated = at_location(GridFeeStatus::Activated);
            match (valid_until, activated.is_empty()) {
                (Some(_), false) => AnswerMatch::GridFee(activated),
                (Some(_), true) => unmatched(format!(
                    "UTILMD 55218 for market location {market_location} closes a period, but no reduction is active there"
                )),
                (None, _) => unmatched(format!(
                    "UTILMD 55218 for market location {market_location}: no reduction there waits for its data"
                )),
            }
        }
        Answer::MeterOrderResponse {
            order_document,
            pid,
            decision_tree,
            code,
            ..
        } if decision_tree != METER_ORDER_DECISION_TREE => unmatched(format!(
            "ORDRSP {pid} answers order {order_document:?} with {code} of {decision_tree}; our iMSys orders are BGM+Z12 orders answered on {METER_ORDER_DECISION_TREE} (AHB ORDRSP [83]; E_0283 answers the order of an offer, BGM+Z93 [82], which the gateway does not place)"
        )),
        Answer::MeterOrderResponse {
            order_document,
            pid,
            ..
        } => meter_by_document(order_document, &format!("ORDRSP {pid}")),
        Answer::StatusReport(report) => meter_by_document(
            &report.order_document,
            &format!("IFTSTA {} status", report.pid),
        ),
        Answer::MeteringLocationData {
            metering_location, ..
        } => open_meter_at(metering_location, "UTILMD 55653"),
        Answer::MeteringChangeFailed(report) => {
            open_meter_at(&report.metering_location, "IFTSTA 21025")
        }
    }
}
