//! Which order an answer is for, by the references the format provides — never by guesswork,
//! and, for a UTILMD 55218, what the matched reductions lead us to expect in it
//! ([`expectation_for`], compared by `billing::review`). An answer that matches nothing goes
//! to the clearing list with the reason.

use chrono::NaiveDate;

use super::answers::Answer;
use super::billing::{BillingData, Expectation};
use super::lifecycle::{GridFeeReduction, MeterOrder, MeterStatus, METER_ORDER_DECISION_TREE};
use super::rules::{GridFeeStatus, ReductionType};

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
///   are not guessed between); while nothing waits, the activated reductions of the location
///   (the data continue or end them);
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
            // Document numbers are sequential and guessable: an answer counts only when it
            // comes from the grid operator the order went to.
            let from_its_operator: Vec<&GridFeeReduction> = of_document
                .iter()
                .copied()
                .filter(|r| r.grid_operator.as_str() == partner)
                .collect();
            match (of_document.first(), from_its_operator.is_empty()) {
                (None, _) => unmatched(format!(
                    "ORDRSP 19133 refers to order {order_document:?}, which we did not send"
                )),
                (Some(r), true) => unmatched(format!(
                    "ORDRSP 19133 from {partner} refers to order {order_document:?}, which went to grid operator {}",
                    r.grid_operator
                )),
                (Some(_), false) => AnswerMatch::GridFee(from_its_operator),
            }
        }
        Answer::BillingData(data) => {
            let market_location = &data.market_location;
            // Only the reductions ordered from the sender: another grid operator's data for
            // the same market location change nothing of ours.
            let at_location = |status: GridFeeStatus| -> Vec<&GridFeeReduction> {
                reductions
                    .iter()
                    .filter(|r| {
                        r.market_location == *market_location.as_str()
                            && r.status == status
                            && r.grid_operator.as_str() == partner
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
            // Nothing waits: the data are the grid operator's news about the active ones
            // (the module continues, or it is closed and ends).
            let activated = at_location(GridFeeStatus::Activated);
            if activated.is_empty() {
                unmatched(format!(
                    "UTILMD 55218 for market location {market_location}: no reduction there waits for its data or is active"
                ))
            } else {
                AnswerMatch::GridFee(activated)
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

/// What the reductions a 55218 matched lead us to expect in it, or `None` where we hold no
/// view (nothing matched; a waiting order whose module the data do not show and that the grid
/// operator has not accepted yet; active reductions whose modules the data still show).
///
/// - Reductions waiting for their data (`ordered`): the product ordered applies from the
///   fixed change date (`fixed(id)`, the ORDERS' `DTM+203`), or for an order "at the next
///   possible date" (`DTM+469`) from where the data first show it; where they never show it,
///   from the start of the latest data period (an inference: the grid operator announced our
///   order with A20 and chose the date). The modules ordered anew do not apply before.
/// - Active reductions (`activated`): their module keeps applying from `valid_from`, unless
///   the data show it and close it (the grid operator ends it).
pub fn expectation_for(
    rows: &[&GridFeeReduction],
    data: &BillingData,
    fixed: impl Fn(&str) -> Option<NaiveDate>,
) -> Option<Expectation> {
    let waiting: Vec<&&GridFeeReduction> = rows
        .iter()
        .filter(|r| r.status == GridFeeStatus::Ordered)
        .collect();
    if let Some(first) = waiting.first() {
        let required: Vec<ReductionType> = first
            .product
            .map_or_else(|| vec![first.reduction_type], |p| p.types().to_vec());
        let span = data.module_span(|shown| shown == required.as_slice());
        if span.is_none() && !waiting.iter().any(|r| r.accepted) {
            return None;
        }
        let from = match (fixed(&first.id), span) {
            (Some(day), _) => day,
            (None, Some((day, _))) => day,
            (None, None) => data.latest_data_start()?,
        };
        return Some(Expectation {
            from,
            required,
            new: waiting.iter().map(|r| r.reduction_type).collect(),
            exact: true,
        });
    }
    let missing: Vec<&&GridFeeReduction> = rows
        .iter()
        .filter(|r| r.status == GridFeeStatus::Activated)
        .filter(|r| {
            data.module_span(|shown| shown.contains(&r.reduction_type))
                .is_none()
        })
        .collect();
    let from = missing.iter().filter_map(|r| r.valid_from).min()?;
    let mut required: Vec<ReductionType> = missing.iter().map(|r| r.reduction_type).collect();
    if required.contains(&ReductionType::Module3) {
        // Modul 3 only on top of Modul 1 (Codeliste der Konfigurationen 1.3c §6.2).
        required.push(ReductionType::Module1);
    }
    required.sort();
    required.dedup();
    Some(Expectation {
        from,
        required,
        new: Vec::new(),
        exact: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::orders::billing::{review, Article, PeriodKind, UsagePeriod, E0610};
    use ReductionType::*;

    fn day(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    fn articles(ids: &[&str]) -> Vec<Article> {
        ids.iter()
            .map(|id| Article {
                id: id.to_string(),
                qualifier: "Z09".into(),
                quantities: Vec::new(),
            })
            .collect()
    }

    fn period(
        id: &str,
        kind: PeriodKind,
        from: NaiveDate,
        until: Option<NaiveDate>,
        ids: &[&str],
    ) -> UsagePeriod {
        UsagePeriod {
            id: id.into(),
            kind,
            from,
            until,
            articles: articles(ids),
        }
    }

    fn data(periods: Vec<UsagePeriod>) -> BillingData {
        BillingData {
            market_location: "51238696781".into(),
            transaction: "V1".into(),
            periods,
        }
    }

    /// An ordered Modul 1 reduction (ORDERS sent, no answer yet).
    fn waiting() -> GridFeeReduction {
        GridFeeReduction::intended(
            "gfr_1".into(),
            "sub_1".into(),
            Module1,
            "51238696781".parse().unwrap(),
            "9900000000011".parse().unwrap(),
            crate::orders::rules::MeterType::Smart,
        )
        .ordered(crate::orders::rules::ModuleProduct::Module1, "MG1".into())
        .unwrap()
        .order
    }

    const MODUL_1: &[&str] = &["1-02-0-001", "1-02-0-002", "1-02-0-015"];
    const PLAIN: &[&str] = &["1-02-0-001", "1-02-0-002"];

    #[test]
    fn an_active_module_that_the_grid_operator_closes_is_no_difference() {
        let d = data(vec![
            period(
                "1",
                PeriodKind::Data,
                day(2026, 6, 1),
                Some(day(2027, 1, 1)),
                MODUL_1,
            ),
            period("2", PeriodKind::NoData, day(2027, 1, 1), None, &[]),
        ]);
        let active = GridFeeReduction {
            status: GridFeeStatus::Activated,
            valid_from: Some(day(2026, 6, 1)),
            ..waiting()
        };
        assert_eq!(expectation_for(&[&active], &d, |_| None), None);
        // Data that drop it without closing it are a difference.
        let d = data(vec![period(
            "1",
            PeriodKind::Data,
            day(2027, 1, 1),
            None,
            PLAIN,
        )]);
        let e = expectation_for(&[&active], &d, |_| None).unwrap();
        let r = review(&d, Some(&e));
        assert_eq!(r.answers[0].code, E0610::A02);
        let ids: Vec<&str> = r.view[0].articles.iter().map(|a| a.id.as_str()).collect();
        assert_eq!(ids, MODUL_1);
    }

    #[test]
    fn a_waiting_order_not_yet_accepted_gives_no_view_on_data_without_its_module() {
        let d = data(vec![period(
            "1",
            PeriodKind::Data,
            day(2026, 1, 1),
            None,
            PLAIN,
        )]);
        let waiting = waiting();
        assert_eq!(
            expectation_for(&[&waiting], &d, |_| Some(day(2026, 6, 1))),
            None
        );
        let accepted = GridFeeReduction {
            accepted: true,
            ..waiting
        };
        assert_eq!(
            expectation_for(&[&accepted], &d, |_| Some(day(2026, 6, 1))),
            Some(Expectation {
                from: day(2026, 6, 1),
                required: vec![Module1],
                new: vec![Module1],
                exact: true,
            })
        );
        // At the next possible date: from where the data show it, else from their latest change.
        assert_eq!(
            expectation_for(&[&accepted], &d, |_| None).map(|e| e.from),
            Some(day(2026, 1, 1))
        );
    }

    #[test]
    fn regression_a_grid_fee_answer_from_another_partner_changes_nothing() {
        let order = waiting();
        let rejection = Answer::GridFeeResponse {
            order_document: "MG1".into(),
            code: "A99".into(),
            text: None,
        };
        // From an unknown market partner: clearing, naming both.
        match match_answer(
            &rejection,
            "9904292000003",
            std::slice::from_ref(&order),
            &[],
        ) {
            AnswerMatch::Unmatched { reason } => {
                assert!(
                    reason.contains("9904292000003") && reason.contains("9900000000011"),
                    "{reason}"
                )
            }
            other => panic!("{other:?}"),
        }
        // From the grid operator the order went to: matched.
        assert!(matches!(
            match_answer(
                &rejection,
                "9900000000011",
                std::slice::from_ref(&order),
                &[]
            ),
            AnswerMatch::GridFee(_)
        ));
        // Billing data for the market location from another grid operator: nothing of ours.
        let billing = Answer::BillingData(data(vec![period(
            "1",
            PeriodKind::Data,
            day(2026, 6, 1),
            None,
            MODUL_1,
        )]));
        assert!(matches!(
            match_answer(&billing, "9904292000003", std::slice::from_ref(&order), &[]),
            AnswerMatch::Unmatched { .. }
        ));
        assert!(matches!(
            match_answer(&billing, "9900000000011", std::slice::from_ref(&order), &[]),
            AnswerMatch::GridFee(_)
        ));
    }
}
