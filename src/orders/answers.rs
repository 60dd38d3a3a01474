//! Inbound answers read into typed values: what each PID says about an order, with the
//! references that match it to the order (never guesswork).

use chrono::NaiveDateTime;
use serde::{Deserialize, Serialize};

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
    /// UTILMD 55653 "Änderung Daten der MeLo" (MSB an LF): the metering operator's master data
    /// of the Messlokation, sent after a change of its technology (WiM Teil 1 §3.3.2.2 Nr. 3,
    /// "Stammdatenänderung vom MSB (verantwortlich) ausgehend", at the latest on the 3rd
    /// working day after the change). With a smart-meter gateway it is how the installation
    /// of the ordered iMSys shows up (not UTILMD 55620, the grid operator's message that
    /// carries the metering operator's assignment only).
    MeteringLocationData {
        /// LOC+Z17: the Messlokation.
        metering_location: String,
        /// IDE+24: the Vorgangsnummer.
        transaction: String,
        /// The smart-meter gateway and meters of the first period of valid data that has a
        /// gateway, if any.
        installation: Option<Installation>,
    },
    /// IFTSTA 21025 "Statusmeldung (gescheitert) vom MSB an LF" (`STS+Z15+Z13`): the metering
    /// operator could not make the ordered change (WiM Teil 1 §3.3.2.2 Nr. 5, "Scheitern der
    /// Änderung", at the latest on the 3rd working day after the confirmed date). It names the
    /// Messlokation (SG14 LOC+172) and carries no order reference: one per SG14.
    MeteringChangeFailed(FailureReport),
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
    /// IFTSTA 21043/21044 status report (one SG14/SG15) naming an order by `RFF+AGI`. Both
    /// answer configuration orders (GPKE Teil 3), never our iMSys order, so no status of them
    /// has a market meaning for a meter order: one only moves it where configured for the
    /// partner (`PartnerStatusRules`, a bilateral arrangement).
    StatusReport(StatusReport),
}

/// What the metering operator reports installed at the Messlokation (UTILMD 55653 SG8).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Installation {
    /// DTM+Z25 "Verwendung der Daten ab" of the period (UTC): when the data with the gateway
    /// apply, taken as the installation time.
    pub since: NaiveDateTime,
    /// SG8 SEQ+Z13 "Smartmeter-Gateway": `CAV+Z30` Gerätenummer (DIN 43863-5, AHB \[952\]).
    pub gateway: String,
    /// SG8 SEQ+Z03 "Zähleinrichtungsdaten" of the same period.
    pub meters: Vec<InstalledMeter>,
}

/// One meter of the Messlokation (UTILMD 55653 SG8 SEQ+Z03, SG10 CCI+++E13).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstalledMeter {
    /// `CAV+Z30` Gerätenummer.
    pub number: String,
    /// `CAV` Zählertyp after `CCI+++E13` (`MME` moderne Messeinrichtung, `EHZ`, `AHZ` …).
    pub kind: Option<String>,
}

/// One failed change of IFTSTA 21025 (one SG14).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FailureReport {
    /// SG14 LOC+172: the Messlokation (or the Netzlokation or steuerbare Ressource of other
    /// orders, AHB 21025 \[505\]/\[532\]/\[533\]).
    pub metering_location: String,
    /// STS DE9013: the EBD E_0286 code (A01 no access, A02 communication, A03 SR/NeLo-TR
    /// mapping, A99 other), or `Z74` kein Zugang / `Z75` Kommunikationsstörung without EBD.
    pub code: String,
    /// STS DE1131: `E_0286`, empty where the partner names no EBD (AHB \[103\]).
    pub decision_tree: String,
    /// SG25 FTX+ACB, the description (Muss with A99, AHB \[154\]).
    pub text: Option<String>,
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
            let text = sg15
                .groups("SG25")
                .find_map(|g| g.qualified(b"FTX", "ACB").map(|f| ftx_text(&f)));
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

/// The text of an `FTX` segment's C108 (DE4440 × 5), joined with spaces.
fn ftx_text(f: &crate::edifact::Segment<'_>) -> String {
    (1..=5)
        .map(|c| f.value(4, c).into_owned())
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Every failure of an IFTSTA 21025, one per SG14 (`CNI`, `LOC+172`, SG15 `STS+Z15+Z13`).
pub fn read_failure_reports(v: &Validated<'_>) -> Vec<FailureReport> {
    let mut reports = Vec::new();
    for sg14 in v.root().groups("SG14") {
        let Some(loc) = sg14.qualified(b"LOC", "172") else {
            continue;
        };
        let text = sg14
            .groups("SG15")
            .flat_map(|sg15| sg15.groups("SG25").collect::<Vec<_>>())
            .chain(sg14.groups("SG25"))
            .find_map(|g| g.qualified(b"FTX", "ACB").map(|f| ftx_text(&f)))
            .filter(|t| !t.is_empty());
        for sg15 in sg14.groups("SG15") {
            let Some(sts) = sg15.qualified(b"STS", "Z15") else {
                continue;
            };
            let pid = sg15
                .qualified(b"RFF", "Z13")
                .map(|r| r.value(1, 2).into_owned());
            if sts.value(2, 1) != "Z13" || pid.as_deref() != Some("21025") {
                continue;
            }
            reports.push(FailureReport {
                metering_location: loc.value(2, 1).into_owned(),
                code: sts.value(3, 1).into_owned(),
                decision_tree: sts.value(3, 2).into_owned(),
                text: text.clone(),
            });
        }
    }
    reports
}

/// UTILMD 55653 read: the Messlokation, the Vorgangsnummer, and the first period of valid data
/// (`RFF+Z49`, by Zeitraum-ID) whose data hold a smart-meter gateway (SG8 `SEQ+Z13` naming the
/// period in DE1050), with its meters (SG8 `SEQ+Z03` of the same period).
fn read_metering_location_data(v: &Validated<'_>) -> Option<Answer> {
    let metering_location = v
        .groups_at("SG4/SG5")
        .iter()
        .find_map(|g| g.qualified(b"LOC", "Z17"))?
        .value(2, 1)
        .into_owned();
    let transaction = v
        .groups_at("SG4")
        .iter()
        .find_map(|g| g.qualified(b"IDE", "24"))
        .map(|ide| ide.value(2, 1).into_owned())?;
    // The periods with valid data (AHB 55653 SG6 RFF+Z49 "Gültige Daten"; Z53 "Keine Daten"
    // carries none), each with its DTM+Z25, in the order of their Zeitraum-IDs.
    let mut periods: Vec<(u32, NaiveDateTime)> = v
        .groups_at("SG4/SG6")
        .iter()
        .filter_map(|g| {
            let id = g.qualified(b"RFF", "Z49")?.value(1, 3).parse().ok()?;
            let from = g.qualified(b"DTM", "Z25")?;
            Some((id, parse_date_303(&from.value(1, 2)).ok()?))
        })
        .collect();
    periods.sort_by_key(|(id, _)| *id);
    let sg8 = v.groups_at("SG4/SG8");
    // The Gerätenummer (`CAV+Z30:::<number>`) and the first other code of the SG10 whose CCI
    // names `qualifier` in C240 DE7037 (`Z75` gateway, `E13` meter).
    let device = |g: &crate::grammar::GroupView<'_, '_>, qualifier: &str| {
        g.groups("SG10")
            .find(|sg10| {
                sg10.segment(b"CCI")
                    .is_some_and(|cci| cci.value(3, 1) == qualifier)
            })
            .map(|sg10| {
                let number = sg10
                    .qualified(b"CAV", "Z30")
                    .map(|cav| cav.value(1, 4).into_owned())
                    .unwrap_or_default();
                let kind = sg10
                    .segments(b"CAV")
                    .map(|cav| cav.value(1, 1).into_owned())
                    .find(|code| code != "Z30" && !code.is_empty());
                (number, kind)
            })
    };
    let of_period = |code: &str, period: u32| {
        sg8.iter()
            .filter(move |g| {
                g.segment(b"SEQ").is_some_and(|seq| {
                    seq.value(1, 1) == code && seq.value(2, 1).parse() == Ok(period)
                })
            })
            .copied()
            .collect::<Vec<_>>()
    };
    let installation = periods.iter().find_map(|&(period, since)| {
        let gateway = of_period("Z13", period)
            .iter()
            .find_map(|g| device(g, "Z75"))
            .map(|(number, _)| number)
            .filter(|n| !n.is_empty())?;
        let meters = of_period("Z03", period)
            .iter()
            .filter_map(|g| device(g, "E13"))
            .filter(|(number, _)| !number.is_empty())
            .map(|(number, kind)| InstalledMeter { number, kind })
            .collect();
        Some(Installation {
            since,
            gateway,
            meters,
        })
    });
    Some(Answer::MeteringLocationData {
        metering_location,
        transaction,
        installation,
    })
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

/// The PIDs our workflows read, handled by default (the routing table forwards every other
/// PID to the supplier core): ORDRSP 19133 (grid-fee order answer), ORDRSP 19005/19006 (meter
/// order answers), UTILMD 55218 (billing data of the reduction), UTILMD 55653 (the metering
/// operator's Messlokation data: the installation) and IFTSTA 21025 (the change failed).
pub const HANDLED_PIDS: [u32; 6] = [19133, 19005, 19006, 55218, 55653, 21025];

/// IFTSTA PIDs that name an order by `RFF+AGI` and that [`read_answers`] reads as
/// [`StatusReport`]s: 21043 "Bestellungsantwort" and 21044 "Bestellungsbeendigung" of a
/// configuration order (GPKE Teil 3). The gateway sends no configuration orders, so they go to
/// the supplier core unless `[routing]` handles them for a partner's configured statuses
/// (`[[partners]] statuses`). IFTSTA 21047 is not among them: it names a UTILMD's Vorgangsnummer
/// in `RFF+ACW` (AHB IFTSTA \[535\]), not an order.
pub const STATUS_REPORT_PIDS: [u32; 2] = [21043, 21044];

/// Every answer to our orders in a validated message with its PID, in message order: one for
/// most PIDs, one per SG14 for IFTSTA 21025. Empty for messages that are no answer to our
/// orders.
pub fn read_answers(v: &Validated<'_>, pid: u32) -> Vec<Answer> {
    match pid {
        21025 => read_failure_reports(v)
            .into_iter()
            .map(Answer::MeteringChangeFailed)
            .collect(),
        55653 => read_metering_location_data(v).into_iter().collect(),
        _ => read_answer(v, pid).into_iter().collect(),
    }
}

/// Reads the (first) answer from a validated message with its PID. `None` for messages that
/// are no answer to our orders. [`read_answers`] reads every one.
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
        21043 | 21044 => read_status_reports(v)
            .into_iter()
            .find(|r| r.pid == pid)
            .map(Answer::StatusReport),
        _ => None,
    }
}
