//! The two order lifecycles and `apply`: a pure function from (order, input, now) to the
//! order's next state, or the reason the input does not apply. A repeated input is
//! idempotent (the state stays and no event is emitted); an out-of-order one is reported.

use chrono::{NaiveDate, NaiveDateTime};
use serde::{Deserialize, Serialize};

use super::answers::{Answer, Installation};
use super::billing::{self, BillingData};
use super::reasons::reason_text;
use super::rules::{CustomerContact, GridFeeStatus, MeterType, ModuleProduct, ReductionType};
use crate::acks::AckMatch;
use crate::ids::{MarketLocationId, MarketPartnerId, MeteringLocationId};

/// The EBD of the answers to our iMSys orders: they are all `BGM+Z12` orders (WiM Teil 1
/// §3.3.2 "Messlokationsänderung vom LF an MSB"), answered with `AJT+<code>+E_0250` (AHB
/// ORDRSP 19005/19006 \[83\] ∧ \[4\]); E_0283 answers the order of an offer (`BGM+Z93`, \[82\]),
/// which the gateway does not place.
pub const METER_ORDER_DECISION_TREE: &str = "E_0250";

/// The "decision tree" under which the codes of an IFTSTA 21025 without DE1131 are listed in
/// `grammars/codes/answer_codes.txt` (`Z74` kein Zugang, `Z75` Kommunikationsstörung; AHB
/// IFTSTA 21025 STS DE9013 \[103\] ∧ \[537\]).
pub const FAILURE_WITHOUT_TREE: &str = "IFTSTA_21025";

/// Why the partner declined.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rejection {
    /// The code (AJT result code, APERAK ERC code or CONTRL syntax error code).
    pub code: String,
    /// The partner's free text, if any.
    pub text: Option<String>,
    /// German meaning of the code.
    pub meaning_de: String,
    /// English meaning of the code.
    pub meaning_en: String,
    /// The partner's message that declined (its UNB reference and UNH message reference,
    /// `"<interchange>/<message>"`); set where the message is known (the inbound path), not
    /// by the pure `apply`.
    #[serde(default)]
    pub message_reference: Option<String>,
}

impl Rejection {
    fn new(code: &str, decision_tree: &str, text: Option<String>) -> Rejection {
        let (de, en) = reason_text(decision_tree, code);
        Rejection {
            code: code.to_string(),
            text,
            meaning_de: de.to_string(),
            meaning_en: en.to_string(),
            message_reference: None,
        }
    }
}

/// A §14a grid-fee reduction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GridFeeReduction {
    /// The store's id.
    pub id: String,
    /// The supplier's subscription.
    pub subscription: String,
    /// The module.
    pub reduction_type: ReductionType,
    /// Market location.
    pub market_location: MarketLocationId,
    /// Grid operator.
    pub grid_operator: MarketPartnerId,
    /// The meter at the location.
    pub meter_type: MeterType,
    /// Status.
    pub status: GridFeeStatus,
    /// The product ordered for it (Modul 3 travels as "Modul 1 und 3").
    pub product: Option<ModuleProduct>,
    /// BGM document number of our ORDERS 17133 (answers name it in RFF+ON).
    pub order_document: Option<String>,
    /// The grid operator accepted the order (A20); the data follow in UTILMD 55218.
    pub accepted: bool,
    /// From when it applies.
    pub valid_from: Option<NaiveDate>,
    /// Until when it applied.
    pub valid_until: Option<NaiveDate>,
    /// Why it was rejected.
    pub rejection: Option<Rejection>,
}

/// Milestones of a smart-meter order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MeterStatus {
    /// Metering details still being collected.
    Created,
    /// ORDERS sent to the metering operator.
    Placed,
    /// A wMSB partner's site check was submitted (no market message: partner status).
    CheckSubmitted,
    /// The wMSB partner reviewed the site check (no market message: partner status).
    CheckReviewed,
    /// Appointment confirmed (ORDRSP 19005).
    Scheduled,
    /// Installed (the metering operator's UTILMD 55653 shows the smart-meter gateway).
    Installed,
    /// Meter live and reporting (partner status or configuration confirmation).
    Activated,
    /// Cancelled (terminal).
    Cancelled,
}

/// Why a meter order was cancelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CancelReason {
    /// An iMSys is already there. No answer to our order says so (E_0283 A01 "bestellte
    /// Technik liegt bereits vor" answers only the order of an offer, `BGM+Z93`, which the
    /// gateway does not place): the supplier core cancels with this reason when it learns it,
    /// e.g. from the Messlokation's master data.
    PreExisting,
    /// The customer cancelled.
    CustomerRequest,
}

/// A smart-meter (iMSys) installation order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MeterOrder {
    /// The store's id.
    pub id: String,
    /// The supplier's subscription.
    pub subscription: String,
    /// Market location.
    pub market_location: MarketLocationId,
    /// Messlokation, when known.
    pub metering_location: Option<MeteringLocationId>,
    /// Metering operator.
    pub metering_operator: MarketPartnerId,
    /// The end customer's contact for the installation appointment, sent with the order
    /// (ORDERS `NAD+Z09`), if the supplier gave one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_contact: Option<CustomerContact>,
    /// Milestone.
    pub status: MeterStatus,
    /// BGM document number of our ORDERS.
    pub order_document: Option<String>,
    /// Confirmed appointment.
    pub appointment_at: Option<NaiveDateTime>,
    /// Installation time.
    pub installed_at: Option<NaiveDateTime>,
    /// What the metering operator reported installed: the smart-meter gateway and meters of
    /// its UTILMD 55653.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub installation: Option<Installation>,
    /// Activation time.
    pub activated_at: Option<NaiveDateTime>,
    /// Why cancelled.
    pub cancelled_reason: Option<CancelReason>,
    /// Parked since.
    pub blocked_at: Option<NaiveDateTime>,
    /// Why parked.
    pub blocked_reason: Option<Rejection>,
}

/// What comes in for an order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input<'a> {
    /// A partner's answer message.
    Answer(&'a Answer),
    /// A CONTRL or APERAK matched to the order's message.
    Acknowledgement(&'a AckMatch),
    /// A partner-specific status (configured per partner; no market message exists for it).
    /// Applied with `now` = the time the partner reports (IFTSTA `DTM+334`), which becomes
    /// `activated_at`.
    PartnerStatus(MeterStatus),
}

/// Why an input does not apply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize)]
pub enum ApplyError {
    /// The input is not allowed in the order's status (reported, not applied).
    #[error("{input} is not possible in status {status}")]
    IllegalTransition {
        /// The status.
        status: String,
        /// The input, described.
        input: String,
    },
    /// The input is for another order (its references do not match).
    #[error("the input refers to {found:?}, the order is {expected:?}")]
    NotThisOrder {
        /// The order's reference.
        expected: String,
        /// The input's reference.
        found: String,
    },
    /// A UTILMD 55218 that does not show the reduction's module (activation requires it).
    #[error("the billing data (UTILMD 55218) do not show {expected}: Zeitraum-ID {shown}")]
    ModuleMissing {
        /// The module(s) the reduction needs, in words.
        expected: String,
        /// What each data period shows, in words.
        shown: String,
    },
}

impl<T> Applied<T> {
    /// The order changed: publish `event`.
    fn changed(order: T, event: &'static str) -> Self {
        Applied {
            order,
            event: Some(event),
        }
    }

    /// Nothing changed (a repeat, or a change without status change).
    fn unchanged(order: T) -> Self {
        Applied { order, event: None }
    }
}

/// A state change and the event topic to publish (`None` when nothing changed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied<T> {
    /// The order after the input.
    pub order: T,
    /// Webhook topic (`grid_fee_reduction.activated`, …), `None` for an idempotent repeat or a
    /// change without status change (e.g. A20 accepted).
    pub event: Option<&'static str>,
}

fn status_name<S: Serialize>(s: &S) -> String {
    serde_json::to_value(s)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

fn illegal<S: Serialize>(status: &S, input: &str) -> ApplyError {
    ApplyError::IllegalTransition {
        status: status_name(status),
        input: input.to_string(),
    }
}

impl GridFeeReduction {
    /// A new reduction the supplier asked for: `intended`, nothing ordered yet.
    pub fn intended(
        id: String,
        subscription: String,
        reduction_type: ReductionType,
        market_location: MarketLocationId,
        grid_operator: MarketPartnerId,
        meter_type: MeterType,
    ) -> GridFeeReduction {
        GridFeeReduction {
            id,
            subscription,
            reduction_type,
            market_location,
            grid_operator,
            meter_type,
            status: GridFeeStatus::Intended,
            product: None,
            order_document: None,
            accepted: false,
            valid_from: None,
            valid_until: None,
            rejection: None,
        }
    }

    /// The order was sent.
    pub fn ordered(
        mut self,
        product: ModuleProduct,
        document: String,
    ) -> Result<Applied<Self>, ApplyError> {
        match self.status {
            GridFeeStatus::Intended => {
                self.status = GridFeeStatus::Ordered;
                self.product = Some(product);
                self.order_document = Some(document);
                Ok(Applied::changed(self, "grid_fee_reduction.ordered"))
            }
            GridFeeStatus::Ordered if self.order_document.as_deref() == Some(document.as_str()) => {
                Ok(Applied::unchanged(self))
            }
            s => Err(illegal(&s, "sending the order")),
        }
    }

    /// The module no longer applies from the day after `valid_until` (supply ended, or a
    /// module switch made it obsolete).
    pub fn end(mut self, valid_until: NaiveDate) -> Result<Applied<Self>, ApplyError> {
        match self.status {
            GridFeeStatus::Activated | GridFeeStatus::Ordered | GridFeeStatus::Intended => {
                self.status = GridFeeStatus::Ended;
                self.valid_until = Some(valid_until);
                Ok(Applied::changed(self, "grid_fee_reduction.ended"))
            }
            GridFeeStatus::Ended if self.valid_until == Some(valid_until) => {
                Ok(Applied::unchanged(self))
            }
            s => Err(illegal(&s, "ending")),
        }
    }

    fn check_reference(&self, found: &str) -> Result<(), ApplyError> {
        match &self.order_document {
            Some(d) if d == found => Ok(()),
            other => Err(ApplyError::NotThisOrder {
                expected: other.clone().unwrap_or_default(),
                found: found.to_string(),
            }),
        }
    }

    fn reject(mut self, rejection: Rejection) -> Result<Applied<Self>, ApplyError> {
        match self.status {
            GridFeeStatus::Ordered => {
                self.status = GridFeeStatus::Rejected;
                self.rejection = Some(rejection);
                Ok(Applied::changed(self, "grid_fee_reduction.rejected"))
            }
            GridFeeStatus::Rejected
                if self.rejection.as_ref().map(|r| &r.code) == Some(&rejection.code) =>
            {
                Ok(Applied::unchanged(self))
            }
            s => Err(illegal(&s, &format!("rejection {}", rejection.code))),
        }
    }

    /// The modules a 55218 must show for this reduction: while it waits for its data,
    /// exactly the product ordered (Modul 1 und 3 is both); once active, at least its own
    /// module.
    fn shows_its_module(&self, shown: &[ReductionType]) -> bool {
        match (self.status, self.product) {
            (GridFeeStatus::Ordered, Some(product)) => shown == product.types(),
            _ => shown.contains(&self.reduction_type),
        }
    }

    /// A UTILMD 55218: the reduction applies where the data show its module (activation
    /// requires that they carry the module ordered), from the first day they show it; it
    /// ends where the grid operator closes the last period that shows it (`DTM+Z26`, the
    /// last day being the day before). Data without the module change nothing and are
    /// reported: the UTILMD 55220 answers them with our view (`billing::review`).
    fn apply_billing_data(self, data: &BillingData) -> Result<Applied<Self>, ApplyError> {
        if self.market_location != *data.market_location.as_str() {
            return Err(ApplyError::NotThisOrder {
                expected: self.market_location.to_string(),
                found: data.market_location.clone(),
            });
        }
        let span = data.module_span(|shown| self.shows_its_module(shown));
        let what = "billing data (UTILMD 55218)";
        let missing = || ApplyError::ModuleMissing {
            expected: billing::describe_modules(
                self.product
                    .map_or(std::slice::from_ref(&self.reduction_type), |p| p.types()),
            ),
            shown: data
                .periods
                .iter()
                .filter(|p| p.kind == billing::PeriodKind::Data)
                .map(|p| format!("{}: {}", p.id, billing::describe_modules(&p.modules())))
                .collect::<Vec<_>>()
                .join(", "),
        };
        match (self.status, span) {
            (GridFeeStatus::Ordered, Some((from, until))) => {
                let mut order = self;
                order.status = GridFeeStatus::Activated;
                order.valid_from = Some(from);
                order.valid_until = until.map(billing::last_day);
                Ok(Applied::changed(order, "grid_fee_reduction.activated"))
            }
            (GridFeeStatus::Ordered, None) => Err(missing()),
            // The grid operator closes the module's last period: it ends (supply ended, or
            // another module replaced it).
            (GridFeeStatus::Activated, Some((_, Some(until)))) => {
                let until = billing::last_day(until);
                if self.valid_until == Some(until) {
                    Ok(Applied::unchanged(self))
                } else {
                    self.end(until)
                }
            }
            (GridFeeStatus::Activated, Some((_, None))) => Ok(Applied::unchanged(self)),
            // Data only for days before the module: nothing to say about it.
            (GridFeeStatus::Activated, None)
                if !self.valid_from.is_some_and(|from| data.has_data_from(from)) =>
            {
                Ok(Applied::unchanged(self))
            }
            (GridFeeStatus::Activated, None) => Err(missing()),
            (GridFeeStatus::Ended, Some((_, Some(until))))
                if self.valid_until == Some(billing::last_day(until)) =>
            {
                Ok(Applied::unchanged(self))
            }
            (s, _) => Err(illegal(&s, what)),
        }
    }

    /// Applies an input (pure; `now` only for inputs that record a time).
    pub fn apply(
        self,
        input: &Input<'_>,
        _now: NaiveDateTime,
    ) -> Result<Applied<Self>, ApplyError> {
        match input {
            Input::Answer(Answer::GridFeeResponse {
                order_document,
                code,
                text,
            }) => {
                self.check_reference(order_document)?;
                // E_0595: A20 = Zustimmung, new master data follow (UTILMD 55218); every other
                // code means no change (grammars/codes/answer_codes.txt).
                if super::reasons::outcome("E_0595", code)
                    == Some(super::reasons::Outcome::Accepted)
                {
                    return match self.status {
                        GridFeeStatus::Ordered => {
                            let changed = !self.accepted;
                            let mut order = self;
                            order.accepted = true;
                            Ok(Applied {
                                order,
                                event: None.filter(|_: &&str| changed),
                            })
                        }
                        GridFeeStatus::Activated => Ok(Applied::unchanged(self)),
                        s => Err(illegal(&s, "acceptance A20")),
                    };
                }
                self.reject(Rejection::new(code, "E_0595", text.clone()))
            }
            Input::Answer(Answer::BillingData(data)) => self.apply_billing_data(data),
            Input::Acknowledgement(AckMatch::Rejected { codes, reason, .. }) => {
                let code = codes.first().cloned().unwrap_or_default();
                let (de, en) = reason_text("APERAK", &code);
                self.reject(Rejection {
                    code,
                    text: Some(reason.clone()),
                    meaning_de: de.to_string(),
                    meaning_en: en.to_string(),
                    message_reference: None,
                })
            }
            Input::Acknowledgement(AckMatch::Accepted { .. }) => Ok(Applied::unchanged(self)),
            other => Err(illegal(&self.status, &format!("{other:?}"))),
        }
    }
}

impl MeterOrder {
    /// A new smart-meter order: `created`, the Messlokation given now or later.
    pub fn created(
        id: String,
        subscription: String,
        market_location: MarketLocationId,
        metering_location: Option<MeteringLocationId>,
        metering_operator: MarketPartnerId,
    ) -> MeterOrder {
        MeterOrder {
            id,
            subscription,
            market_location,
            metering_location,
            metering_operator,
            customer_contact: None,
            status: MeterStatus::Created,
            order_document: None,
            appointment_at: None,
            installed_at: None,
            installation: None,
            activated_at: None,
            cancelled_reason: None,
            blocked_at: None,
            blocked_reason: None,
        }
    }

    /// The order was sent.
    pub fn placed(mut self, document: String) -> Result<Applied<Self>, ApplyError> {
        match self.status {
            MeterStatus::Created => {
                self.status = MeterStatus::Placed;
                self.order_document = Some(document);
                Ok(Applied::changed(self, "meter_order.placed"))
            }
            MeterStatus::Placed if self.order_document.as_deref() == Some(document.as_str()) => {
                Ok(Applied::unchanged(self))
            }
            s => Err(illegal(&s, "sending the order")),
        }
    }

    /// The customer cancels (possible until installation).
    pub fn cancel(mut self, reason: CancelReason) -> Result<Applied<Self>, ApplyError> {
        match self.status {
            MeterStatus::Installed | MeterStatus::Activated => {
                Err(illegal(&self.status, "cancelling"))
            }
            MeterStatus::Cancelled if self.cancelled_reason == Some(reason) => {
                Ok(Applied::unchanged(self))
            }
            MeterStatus::Cancelled => Err(illegal(&self.status, "cancelling")),
            _ => {
                self.status = MeterStatus::Cancelled;
                self.cancelled_reason = Some(reason);
                Ok(Applied::changed(self, "meter_order.cancelled"))
            }
        }
    }

    fn block(mut self, at: NaiveDateTime, reason: Rejection) -> Result<Applied<Self>, ApplyError> {
        if self.blocked_reason.as_ref().map(|r| &r.code) == Some(&reason.code) {
            return Ok(Applied::unchanged(self));
        }
        self.blocked_at = Some(at);
        self.blocked_reason = Some(reason);
        Ok(Applied::changed(self, "meter_order.blocked"))
    }

    fn advance(mut self, to: MeterStatus, event: &'static str) -> Applied<Self> {
        self.status = to;
        self.blocked_at = None;
        self.blocked_reason = None;
        Applied::changed(self, event)
    }

    fn check_metering_location(&self, found: &str) -> Result<(), ApplyError> {
        match &self.metering_location {
            Some(m) if m.as_str() == found => Ok(()),
            other => Err(ApplyError::NotThisOrder {
                expected: other.as_ref().map(|m| m.to_string()).unwrap_or_default(),
                found: found.to_string(),
            }),
        }
    }

    /// Applies an input.
    pub fn apply(self, input: &Input<'_>, now: NaiveDateTime) -> Result<Applied<Self>, ApplyError> {
        use MeterStatus::*;
        if self.status == Cancelled {
            return Err(illegal(&self.status, &format!("{input:?}")));
        }
        match input {
            Input::Answer(Answer::MeterOrderResponse {
                order_document,
                code,
                decision_tree,
                appointment,
                window,
                text,
                ..
            }) => {
                if self.order_document.as_deref() != Some(order_document.as_str()) {
                    return Err(ApplyError::NotThisOrder {
                        expected: self.order_document.clone().unwrap_or_default(),
                        found: order_document.clone(),
                    });
                }
                // Our orders are BGM+Z12, answered on E_0250 (A02 Zustimmung; A01, A03, A04
                // Ablehnung: grammars/codes/answer_codes.txt). E_0283 answers the order of an
                // offer (BGM+Z93), which we do not place.
                if decision_tree != METER_ORDER_DECISION_TREE {
                    return Err(ApplyError::NotThisOrder {
                        expected: format!("an answer on {}", METER_ORDER_DECISION_TREE),
                        found: format!("{code} of {decision_tree}"),
                    });
                }
                let outcome = super::reasons::outcome(decision_tree, code);
                if outcome == Some(super::reasons::Outcome::Accepted) {
                    return match self.status {
                        Placed | CheckSubmitted | CheckReviewed => {
                            let mut a = self.advance(Scheduled, "meter_order.scheduled");
                            a.order.appointment_at = *appointment;
                            Ok(a)
                        }
                        Scheduled | Installed | Activated
                            if self.appointment_at == *appointment =>
                        {
                            Ok(Applied::unchanged(self))
                        }
                        Scheduled => {
                            let mut order = self;
                            order.appointment_at = *appointment;
                            Ok(Applied {
                                order,
                                event: Some("meter_order.scheduled"),
                            })
                        }
                        s => Err(illegal(&s, &format!("confirmation {code}"))),
                    };
                }
                let mut text = text.clone();
                if let Some((from, to)) = window {
                    let w = format!("alternative window {from} to {to} UTC");
                    text = Some(text.map_or(w.clone(), |t| format!("{t}; {w}")));
                }
                match self.status {
                    Placed | CheckSubmitted | CheckReviewed | Scheduled => {
                        self.block(now, Rejection::new(code, decision_tree, text))
                    }
                    s => Err(illegal(&s, &format!("rejection {code}"))),
                }
            }
            Input::Acknowledgement(AckMatch::Rejected { codes, reason, .. })
                if matches!(
                    self.status,
                    Placed | CheckSubmitted | CheckReviewed | Scheduled
                ) =>
            {
                let code = codes.first().cloned().unwrap_or_default();
                let (de, en) = reason_text("APERAK", &code);
                self.block(
                    now,
                    Rejection {
                        code,
                        text: Some(reason.clone()),
                        meaning_de: de.into(),
                        meaning_en: en.into(),
                        message_reference: None,
                    },
                )
            }
            // A late rejection after installation does not park an installed meter.
            Input::Acknowledgement(AckMatch::Rejected { .. }) => {
                Err(illegal(&self.status, "rejection by CONTRL/APERAK"))
            }
            Input::Acknowledgement(_) => Ok(Applied::unchanged(self)),
            Input::Answer(Answer::StatusReport(report)) => Err(illegal(
                &self.status,
                &format!(
                    "IFTSTA status {}:{} without a configured meaning for this partner",
                    report.status, report.code
                ),
            )),
            Input::PartnerStatus(to) => {
                let order_of = |s: MeterStatus| {
                    [
                        Created,
                        Placed,
                        CheckSubmitted,
                        CheckReviewed,
                        Scheduled,
                        Installed,
                        Activated,
                    ]
                    .iter()
                    .position(|x| *x == s)
                };
                match (order_of(self.status), order_of(*to)) {
                    (Some(a), Some(b)) if a == b => Ok(Applied::unchanged(self)),
                    (Some(a), Some(b)) if b > a && *to != Installed => {
                        let topic = match to {
                            CheckSubmitted => "meter_order.check_submitted",
                            CheckReviewed => "meter_order.check_reviewed",
                            Scheduled => "meter_order.scheduled",
                            Activated => "meter_order.activated",
                            _ => return Err(illegal(&self.status, "partner status")),
                        };
                        let mut a = self.advance(*to, topic);
                        if *to == Activated {
                            a.order.activated_at = Some(now);
                        }
                        Ok(a)
                    }
                    _ => Err(illegal(
                        &self.status,
                        &format!("partner status {}", status_name(to)),
                    )),
                }
            }
            Input::Answer(Answer::MeteringLocationData {
                metering_location,
                installation,
                ..
            }) => {
                self.check_metering_location(metering_location)?;
                let Some(installation) = installation else {
                    return Err(illegal(
                        &self.status,
                        "Messlokation data without a smart-meter gateway (UTILMD 55653)",
                    ));
                };
                match self.status {
                    Placed | CheckSubmitted | CheckReviewed | Scheduled => {
                        let mut a = self.advance(Installed, "meter_order.installed");
                        a.order.installed_at = Some(installation.since);
                        a.order.installation = Some(installation.clone());
                        Ok(a)
                    }
                    Installed | Activated if self.installation.as_ref() == Some(installation) => {
                        Ok(Applied::unchanged(self))
                    }
                    s => Err(illegal(&s, "installation (UTILMD 55653)")),
                }
            }
            Input::Answer(Answer::MeteringChangeFailed(report)) => {
                self.check_metering_location(&report.metering_location)?;
                match self.status {
                    // E_0286 (or Z74/Z75 without EBD): the change failed; the order is parked
                    // at its milestone with the reason, for the supplier to decide.
                    Placed | CheckSubmitted | CheckReviewed | Scheduled => {
                        let tree = if report.decision_tree.is_empty() {
                            FAILURE_WITHOUT_TREE
                        } else {
                            report.decision_tree.as_str()
                        };
                        self.block(now, Rejection::new(&report.code, tree, report.text.clone()))
                    }
                    s => Err(illegal(
                        &s,
                        &format!("failure {} (IFTSTA 21025)", report.code),
                    )),
                }
            }
            other => Err(illegal(&self.status, &format!("{other:?}"))),
        }
    }
}
