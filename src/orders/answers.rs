//! Inbound answers read into typed values: what each PID says about an order, with the
//! references that match it to the order (never guesswork).

use chrono::NaiveDateTime;
use serde::Serialize;

use super::billing::{read_billing_data, BillingData};
use crate::grammar::Validated;
use crate::ids::parse_date_303;

/// What a partner's message says about one of our orders.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Answer {
    /// ORDRSP 19133 "Bearbeitungsstand Bestellung Änderung Abrechnungsdaten": `AJT+<code>+E_0595`,
    /// `RFF+ON` = the BGM document number of our ORDERS 17133.
    GridFeeResponse {
        /// RFF+ON.
        order_document: String,
        /// AJT DE4465 (A20 accepted, A21 lead time missed, A99 other …).
        code: String,
        /// FTX+AAP, the grid operator's text.
        text: Option<String>,
    },
    /// UTILMD 55218 "Abrechnungsdaten NNA": the billing data of a market location per
    /// Verwendungszeitraum (`RFF+Z49` with data, `RFF+Z53` without), each with its dates and
    /// Artikel-IDs (see [`super::billing`]).
    BillingData(BillingData),
    /// UTILMD 55620 "Änderung Daten der MeLo" (NB an LF): the Messlokation's master data
    /// changed from `DTM+Z25`. After an iMSys order, this is how the installation shows up
    /// (WiM Teil 1 §3.3.2 Nr. 3: the MSB sends the master-data change after the change; it
    /// reaches the supplier through the grid operator). FV2604's 55620 carries no device data,
    /// so the gateway takes the change of the ordered Messlokation after the appointment as
    /// the installation (an inference, see the README's domain section).
    MeteringLocationChanged {
        /// LOC+Z17: the Messlokation.
        metering_location: String,
        /// DTM+Z25 (UTC).
        valid_from: NaiveDateTime,
    },
    /// ORDRSP 19005 (confirmation) or 19006 (rejection) of an iMSys order.
    MeterOrderResponse {
        /// RFF+ON: the BGM document number of our ORDERS.
        order_document: String,
        /// 19005 or 19006.
        pid: u32,
        /// AJT DE4465.
        code: String,
        /// AJT DE1082: the decision tree (E_0250 plain order, E_0283 offer route).
        decision_tree: String,
        /// DTM+203: the confirmed (possibly shifted) appointment.
        appointment: Option<NaiveDateTime>,
        /// DTM+469 / DTM+472: an alternative window offered with A04.
        window: Option<(NaiveDateTime, NaiveDateTime)>,
        /// FTX+AAP text.
        text: Option<String>,
    },
    /// IFTSTA status report (one SG14/SG15): a partner's status for one of our orders.
    /// Which of these mean a milestone of the meter order is configured per partner
    /// (`PartnerStatusRules`): no BDEW process defines the wMSB's site check or activation.
    StatusReport(StatusReport),
}

/// One status of an IFTSTA (SG15 `STS`, `RFF+Z13`, `RFF+AGI`, `DTM+334`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StatusReport {
    /// SG15 RFF+Z13: the PID of this status (IFTSTA carries it per status).
    pub pid: u32,
    /// SG15 RFF+AGI: the BGM document number of our order (AHB IFTSTA: "Referenz auf die
    /// Bestellung", 1154 aus ORDERS BGM DE1004).
    pub order_document: String,
    /// STS DE9015 (status category, e.g. Z21 Bestellung).
    pub category: String,
    /// STS DE4405 (status, e.g. Z43 bestätigt, Z14 erfolgreich).
    pub status: String,
    /// STS DE9013 (code of the decision tree step, e.g. A01).
    pub code: String,
    /// STS DE1131 (decision tree, e.g. E_0529).
    pub decision_tree: String,
    /// DTM+334 "Statusveränderungszeitpunkt" (UTC).
    pub changed_at: Option<NaiveDateTime>,
    /// SG25 FTX+ACB text, if any.
    pub text: Option<String>,
}

/// Every status report of an IFTSTA message, in message order.
pub fn read_status_reports(v: &Validated<'_>) -> Vec<StatusReport> {
    let mut reports = Vec::new();
    for sg14 in v.root().groups("SG14") {
        for sg15 in sg14.groups("SG15") {
            let Some(sts) = sg15.segment(b"STS") else {
                continue;
            };
            let Some(order_document) = sg15.qualified(b"RFF", "AGI") else {
                continue;
            };
            let pid = sg15
                .qualified(b"RFF", "Z13")
                .and_then(|r| r.value(1, 2).parse().ok())
                .unwrap_or(0);
            let changed_at = sg15
                .qualified(b"DTM", "334")
                .and_then(|d| parse_date_303(&d.value(1, 2)).ok());
            let text = sg15.groups("SG25").find_map(|g| {
                g.qualified(b"FTX", "ACB").map(|f| {
                    (1..=5)
                        .map(|c| f.value(4, c).into_owned())
                        .filter(|s| !s.is_empty())
                        .collect::<Vec<_>>()
                        .join(" ")
                })
            });
            reports.push(StatusReport {
                pid,
                order_document: order_document.value(1, 2).into_owned(),
                category: sts.value(1, 1).into_owned(),
                status: sts.value(2, 1).into_owned(),
                code: sts.value(3, 1).into_owned(),
                decision_tree: sts.value(3, 2).into_owned(),
                changed_at,
                text,
            });
        }
    }
    reports
}

fn date_of(v: &Validated<'_>, qualifier: &str) -> Option<NaiveDateTime> {
    let dtm = v.root().qualified(b"DTM", qualifier)?;
    parse_date_303(&dtm.value(1, 2)).ok()
}

fn text_aap(v: &Validated<'_>) -> Option<String> {
    v.groups_at("SG2")
        .iter()
        .find_map(|g| g.qualified(b"FTX", "AAP"))
        .or_else(|| v.root().qualified(b"FTX", "AAP"))
        .map(|f| {
            let parts: Vec<String> = (1..=5)
                .map(|c| f.value(4, c).into_owned())
                .filter(|s| !s.is_empty())
                .collect();
            parts.join(" ")
        })
}

fn order_reference(v: &Validated<'_>) -> Option<String> {
    v.groups_at("SG1")
        .iter()
        .find_map(|g| g.qualified(b"RFF", "ON"))
        .map(|r| r.value(1, 2).into_owned())
}

/// The PIDs [`read_answer`] reads: the answers to our two order kinds. ORDRSP 19133 (grid-fee
/// order answer), ORDRSP 19005/19006 (meter order answers), UTILMD 55218 (billing data of the
/// reduction) and 55620 (Messlokation of the meter), IFTSTA 21039/21043/21044/21047 (status
/// reports). The routing table handles these and forwards every other PID by default.
pub const HANDLED_PIDS: [u32; 9] = [
    19133, 19005, 19006, 55218, 55620, 21039, 21043, 21044, 21047,
];

/// Reads an answer from a validated message with its PID. `None` for messages that are no
/// answer to our orders.
pub fn read_answer(v: &Validated<'_>, pid: u32) -> Option<Answer> {
    match pid {
        19133 => {
            let ajt = v.groups_at("SG2").iter().find_map(|g| g.segment(b"AJT"))?;
            Some(Answer::GridFeeResponse {
                order_document: order_reference(v)?,
                code: ajt.value(1, 1).into_owned(),
                text: text_aap(v),
            })
        }
        19005 | 19006 => {
            let ajt = v.groups_at("SG2").iter().find_map(|g| g.segment(b"AJT"))?;
            let window = date_of(v, "469").zip(date_of(v, "472"));
            Some(Answer::MeterOrderResponse {
                order_document: order_reference(v)?,
                pid,
                code: ajt.value(1, 1).into_owned(),
                decision_tree: ajt.value(2, 1).into_owned(),
                appointment: date_of(v, "203"),
                window,
                text: text_aap(v),
            })
        }
        // Every Verwendungszeitraum with its own dates and data: the first DTM+Z25 of the
        // message is not the date of the data (a closed "keine Daten" period may come first).
        55218 => read_billing_data(v).map(Answer::BillingData),
        55620 => {
            // UTILMD S2.1: the transaction (SG4) names the location in SG5 (LOC+Z17
            // Messlokation) and, in SG6 under RFF+Z49, the date from which the data apply
            // (DTM+Z25, a German day written as 22:00/23:00 UTC).
            let sg5 = v.groups_at("SG4/SG5");
            let sg6 = v.groups_at("SG4/SG6");
            let valid_from = sg6
                .iter()
                .find_map(|g| g.qualified(b"DTM", "Z25"))
                .and_then(|d| parse_date_303(&d.value(1, 2)).ok())?;
            let loc = sg5.iter().find_map(|g| g.qualified(b"LOC", "Z17"))?;
            Some(Answer::MeteringLocationChanged {
                metering_location: loc.value(2, 1).into_owned(),
                valid_from,
            })
        }
        21039 | 21043 | 21044 | 21047 => read_status_reports(v)
            .into_iter()
            .find(|r| r.pid == pid)
            .map(Answer::StatusReport),
        _ => None,
    }
}
