//! Outbound messages: ORDERS 17133 (§14a module order to the grid operator) and ORDERS
//! 17011 / 17003 (iMSys installation order to the metering operator), built in the message
//! version in force on the day they are written.

use chrono::{NaiveDate, NaiveDateTime, NaiveTime};

use super::billing::{PeriodAnswer, PeriodKind, ViewPeriod};
use super::rules::{CustomerContact, ModuleProduct, PRODUCT_14A};
use crate::acks::calendar::berlin_to_utc;
use crate::edifact::{
    InterchangeHeader, LineBreak, MessageIdentifier, OutboundMessage, OwnedInterchange,
    OwnedSegment, Party, ReferenceSequence, Writer,
};
use crate::grammar::{validate_interchange, Registry, Severity};
use crate::ids::{MarketLocationId, MarketPartnerId, MeteringLocationId};

/// `PIA+5` product "Einbau iMS" (Codeliste der Konfigurationen 1.3c §7.1; still listed in
/// Codeliste der Konfigurationen 1.4, FV2610, as is 9991000002313 "Einbau kME / rLM": code
/// extraction of the BDEW PDFs in sh-prog-edi/EdifactGenerator `_engine/daten/codelisten.js`,
/// commit bca06f9; the 1.4 chapter text was not readable).
pub const PRODUCT_IMS_INSTALLATION: &str = "9991000002305";

/// Why a message could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    /// No ORDERS version is in force on the day (the grammars lack it).
    #[error("no ORDERS version in force on {0}")]
    NoVersion(NaiveDate),
    /// No UTILMD version is in force on the day (the grammars lack it).
    #[error("no UTILMD version in force on {0}")]
    NoUtilmdVersion(NaiveDate),
    /// The message built fails our own grammars (MIG or AHB of its version): it is never
    /// sent. The text names the first findings with their segment and element.
    #[error("the {message} built fails our own validation: {findings}")]
    Invalid {
        /// `ORDERS 17133`, `UTILMD 55220`, ….
        message: String,
        /// The error findings, `; `-separated (at most five).
        findings: String,
    },
}

/// Our side of a message: market partner ID and the contact named in `CTA`/`COM`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sender {
    /// Our market partner ID.
    pub id: MarketPartnerId,
    /// Contact person (CTA+IC).
    pub contact_name: Option<String>,
    /// Contact e-mail (COM …:EM).
    pub contact_email: Option<String>,
}

/// When a change is wanted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeDate {
    /// On this day (`DTM+203`, Ausführungsdatum).
    On(NaiveDate),
    /// At the next possible date, not before this day (`DTM+469`, "Beginn zum nächstmöglichen
    /// Termin").
    NextPossibleFrom(NaiveDate),
}

/// A day as the market writes it: 00:00 German legal time, in UTC with format 303 (summer
/// `2200?+00` of the day before, winter `2300?+00`; ORDERS conditions \[932\]/\[933\]).
pub fn day_start_303(day: NaiveDate) -> String {
    let utc = berlin_to_utc(day.and_time(NaiveTime::MIN));
    format!("{}+00", utc.format("%Y%m%d%H%M"))
}

fn now_303(now: NaiveDateTime) -> String {
    format!("{}+00", now.format("%Y%m%d%H%M"))
}

fn party_nad(qualifier: &str, id: &MarketPartnerId) -> OwnedSegment {
    let agency = crate::edifact::PartnerQualifier::for_id(id.as_str()).nad_agency();
    OwnedSegment::new("NAD")
        .simple(qualifier)
        .composite([id.as_str(), "", agency])
}

/// The optional sender contact (SG5 `CTA`/`COM`). Written up to ORDERS 1.4b only: the
/// independent validator `edi-energy` (whose FV2610 profiles say they were imported from the
/// BDEW XML AHB) has no SG5 in the 17133/17011 templates of FV2610, and the AHB ORDERS 1.1b was
/// not readable here; the segment group is optional in 1.4b, so leaving it out is safe either
/// way (tests/edi_energy.rs).
fn contact(sender: &Sender, identifier: &MessageIdentifier) -> Vec<OwnedSegment> {
    let mut out = Vec::new();
    if !matches!(identifier.association.as_str(), "1.4a" | "1.4b") {
        return out;
    }
    if let Some(name) = &sender.contact_name {
        out.push(
            OwnedSegment::new("CTA")
                .simple("IC")
                .composite(["", name.as_str()]),
        );
        if let Some(mail) = &sender.contact_email {
            out.push(OwnedSegment::new("COM").composite([mail.as_str(), "EM"]));
        }
    }
    out
}

fn interchange(
    sender: &Sender,
    recipient: &MarketPartnerId,
    now: NaiveDateTime,
    references: &mut ReferenceSequence,
    message: OutboundMessage,
) -> OwnedInterchange {
    OwnedInterchange {
        header: InterchangeHeader {
            syntax: crate::acks::OUR_SYNTAX,
            sender: Party::new(sender.id.as_str()),
            recipient: Party::new(recipient.as_str()),
            prepared: now,
            control_reference: references.next_reference(),
            application_reference: None,
            test: false,
        },
        messages: vec![message],
    }
}

fn orders_identifier(registry: &Registry, day: NaiveDate) -> Result<MessageIdentifier, BuildError> {
    let mig = registry
        .mig_in_force("ORDERS", day)
        .ok_or(BuildError::NoVersion(day))?;
    Ok(MessageIdentifier::parse(&format!("ORDERS:{}", mig.identifier)).expect("MIG identifier"))
}

/// What a §14a module order says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GridFeeOrder {
    /// The grid operator of the market location.
    pub grid_operator: MarketPartnerId,
    /// The market location.
    pub market_location: MarketLocationId,
    /// The product (module combination) to order.
    pub product: ModuleProduct,
    /// When.
    pub change: ChangeDate,
}

/// A built order: the interchange and the references an answer will name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuiltOrder {
    /// The interchange to send.
    pub interchange: OwnedInterchange,
    /// BGM DE1004: answers refer to it with `RFF+ON` (ORDRSP) or `RFF+AGO` (APERAK).
    pub document_number: String,
    /// The Prüfidentifikator used.
    pub pid: u32,
}

/// ORDERS 17133 "Bestellung Änderung Abrechnungsdaten" (AHB ORDERS, FV2504-FV2610): the §14a
/// module as product `9991000002496` with `CCI+Z66` / `CAV+ZH9:::<module>`.
pub fn grid_fee_order(
    registry: &Registry,
    sender: &Sender,
    order: &GridFeeOrder,
    now: NaiveDateTime,
    references: &mut ReferenceSequence,
) -> Result<BuiltOrder, BuildError> {
    let GridFeeOrder {
        grid_operator,
        market_location,
        product,
        change,
    } = order;
    let (product, change) = (*product, *change);
    let date = match change {
        ChangeDate::On(day) => ("203", day),
        ChangeDate::NextPossibleFrom(day) => ("469", day),
    };
    orders(
        registry,
        sender,
        OrdersBody {
            document: "Z91",
            date,
            pid: 17133,
            recipient: grid_operator,
            location: market_location.as_str(),
            parties: Vec::new(),
            item: "Z79",
            product: PRODUCT_14A,
            properties: vec![
                OwnedSegment::new("CCI").simple("Z66"),
                OwnedSegment::new("CAV").composite(["ZH9", "", "", product.code()]),
            ],
        },
        now,
        references,
    )
}

/// What an iMSys installation order says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImsysOrder {
    /// The metering operator of the Messlokation (NAD+MR).
    pub metering_operator: MarketPartnerId,
    /// The Messlokation (LOC+172).
    pub metering_location: MeteringLocationId,
    /// The wanted date (DTM+203), at least 20 working days ahead (checked by the caller with
    /// the calendar).
    pub wanted: NaiveDate,
    /// The end customer's contact for the appointment (NAD+Z09 with CTA/COM), when the
    /// supplier gave one.
    pub customer: Option<CustomerContact>,
}

/// The iMSys installation order "Messlokationsänderung vom LF an MSB" (WiM Teil 1 §3.3.2):
/// ORDERS 17003 up to FV2504, ORDERS 17011 with `BGM+Z12` from FV2510 on (17003 is gas only
/// since then: AHB ORDERS 1.1 condition \[60\]); `LOC+172+<MeLo>`, `LIN+1+Z19`,
/// `PIA+5+9991000002305:Z11` ("Einbau iMS"), `DTM+203` = the wanted date, and with a customer
/// contact SG2 `NAD+Z09` with SG5 `CTA+IC` and one `COM` per channel (AHB ORDERS 17011 SG2
/// "Kunde des Lieferanten" Kann \[182\] ∧ \[6\] ∧ \[570\], after the Meldepunkt group).
pub fn meter_order(
    registry: &Registry,
    sender: &Sender,
    order: &ImsysOrder,
    now: NaiveDateTime,
    references: &mut ReferenceSequence,
) -> Result<BuiltOrder, BuildError> {
    // 17011 where the AHB of the day has it, else 17003 (FV2504).
    let pid = match registry.ahb(17011) {
        Some(a) if a.blocks.iter().any(|b| b.in_force(now.date())) => 17011,
        _ => 17003,
    };
    let mut parties = Vec::new();
    if let Some(customer) = &order.customer {
        parties.push(OwnedSegment::new("NAD").simple("Z09"));
        parties.push(
            OwnedSegment::new("CTA")
                .simple("IC")
                .composite(["", customer.name()]),
        );
        for (address, code) in customer.channels() {
            parties.push(OwnedSegment::new("COM").composite([address, code]));
        }
    }
    orders(
        registry,
        sender,
        OrdersBody {
            document: "Z12",
            date: ("203", order.wanted),
            pid,
            recipient: &order.metering_operator,
            location: order.metering_location.as_str(),
            parties,
            item: "Z19",
            product: PRODUCT_IMS_INSTALLATION,
            properties: Vec::new(),
        },
        now,
        references,
    )
}

/// The supplier's answer to a grid operator's UTILMD 55218 (billing data of the market
/// location, here: the §14a module taking effect).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BillingDataAnswer {
    /// The grid operator who sent the 55218.
    pub grid_operator: MarketPartnerId,
    /// The market location of the 55218.
    pub market_location: MarketLocationId,
    /// The Vorgangsnummer of the 55218 (its `IDE+24`), named back in `RFF+TN`.
    pub transaction: String,
    /// The EBD E_0610 code for every Zeitraum-ID of the 55218 (`RFF+Z49` and `RFF+Z53`), in
    /// its order: one `STS+E01` each (AHB UTILMD 55220 \[2011\]).
    pub periods: Vec<PeriodAnswer>,
    /// Our view of the data where a period is answered A02 (E_0610: the recipient "gibt die
    /// aus seiner Sicht korrekten Stammdaten als Qualitätsrückmeldung zurück"); empty when
    /// everything is A01.
    pub view: Vec<ViewPeriod>,
}

/// UTILMD 55220 "Rückmeldung auf Abrechnungsdaten NNA" (LF → NB; AHB UTILMD Strom 2.1,
/// `BGM+E03` \[716\]): one Vorgang per 55218 Vorgang with `STS+E01++<E_0610 code>:E_0610::<id>`
/// per Zeitraum-ID and `RFF+TN` = the 55218's Vorgangsnummer; with an A02, our view: SG6
/// `RFF+Z48` (Erwartete Daten) / `RFF+Z55` (Keine Daten erwartet) numbered 1, 2, … (\[127\])
/// with `DTM+Z25` and, but for the last, `DTM+Z26` (\[472\]), and per expected Artikel-ID an
/// SG8 `SEQ+Z82+<period>` with `PIA+Z02`, its SG9 `QTY` and SG10 `CCI+++ZB3`/`CAV+Z88` (the
/// data groups are "Soll \[8\]": wenn für Datenclearing erforderlich). Due within 2 working days of the 55218 (GPKE Teil 2 §3.1.1.2 Nr. 2;
/// [`BILLING_ANSWER_WORKING_DAYS`]).
pub fn billing_data_answer(
    registry: &Registry,
    sender: &Sender,
    answer: &BillingDataAnswer,
    now: NaiveDateTime,
    references: &mut ReferenceSequence,
) -> Result<BuiltOrder, BuildError> {
    let mig = registry
        .mig_in_force("UTILMD", now.date())
        .ok_or(BuildError::NoUtilmdVersion(now.date()))?;
    let identifier =
        MessageIdentifier::parse(&format!("UTILMD:{}", mig.identifier)).expect("MIG identifier");
    let document_number = references.next_reference();
    let mut segments = vec![
        OwnedSegment::new("BGM")
            .simple("E03")
            .simple(document_number.clone()),
        OwnedSegment::new("DTM").composite(["137".to_string(), now_303(now), "303".into()]),
        party_nad("MS", &sender.id),
        party_nad("MR", &answer.grid_operator),
        OwnedSegment::new("IDE")
            .simple("24")
            .simple(references.next_reference()),
        OwnedSegment::new("STS")
            .simple("7")
            .simple("")
            .simple("ZX4"),
    ];
    // One STS+E01 per Verwendungszeitraum of the 55218 (AHB 55220 [2011]), naming the period
    // in C556 DE9012 (MIG UTILMD S2.1 STS "Status der Antwort": 9012 n..6 = Zeitraum-ID; the
    // independent edi-energy template requires it). SG4 STS comes before SG5 LOC.
    for period in &answer.periods {
        segments.push(
            OwnedSegment::new("STS")
                .simple("E01")
                .simple("")
                .composite([period.code.code(), "E_0610", "", period.period.as_str()]),
        );
    }
    segments.extend([
        OwnedSegment::new("LOC")
            .simple("Z16")
            .simple(answer.market_location.as_str()),
        OwnedSegment::new("RFF").composite(["Z13", "55220"]),
        OwnedSegment::new("RFF").composite(["TN", answer.transaction.as_str()]),
    ]);
    let last = answer.view.len();
    for (n, period) in answer.view.iter().enumerate() {
        let qualifier = match period.kind {
            PeriodKind::Data => "Z48",
            PeriodKind::NoData => "Z55",
        };
        segments.push(OwnedSegment::new("RFF").composite([
            qualifier.to_string(),
            String::new(),
            (n + 1).to_string(),
        ]));
        segments.push(OwnedSegment::new("DTM").composite([
            "Z25".to_string(),
            day_start_303(period.from),
            "303".into(),
        ]));
        if let Some(until) = period.until.filter(|_| n + 1 < last) {
            segments.push(OwnedSegment::new("DTM").composite([
                "Z26".to_string(),
                day_start_303(until),
                "303".into(),
            ]));
        }
    }
    for (n, period) in answer.view.iter().enumerate() {
        for article in &period.articles {
            segments.push(
                OwnedSegment::new("SEQ")
                    .simple("Z82")
                    .simple((n + 1).to_string()),
            );
            segments.push(
                OwnedSegment::new("PIA")
                    .simple("Z02")
                    .composite([article.id.as_str(), article.qualifier.as_str()]),
            );
            for q in &article.quantities {
                segments.push(OwnedSegment::new("QTY").composite([
                    q.qualifier.as_str(),
                    q.value.as_str(),
                    q.unit.as_str(),
                ]));
            }
            // SG10 "Zugeordnete Marktpartner": the grid operator whose prices the Artikel-IDs
            // are (AHB 55220 Soll [8], [714]).
            segments.push(OwnedSegment::new("CCI").simple("").simple("").simple("ZB3"));
            segments
                .push(OwnedSegment::new("CAV").composite(["Z88", answer.grid_operator.as_str()]));
        }
    }
    let message = OutboundMessage {
        reference: references.next_reference(),
        identifier,
        segments,
    };
    checked(
        registry,
        BuiltOrder {
            interchange: interchange(sender, &answer.grid_operator, now, references, message),
            document_number,
            pid: 55220,
        },
    )
}

/// Working days after the day a UTILMD 55218 arrived within which the UTILMD 55220 must be
/// sent: "spätester Übertragungstag ist der 2. Werktag nach dem Übertragungstag" of the
/// 55218 (GPKE Teil 2 §3.1.1.2 Nr. 2, BK6-24-174; the day of receipt does not count, GPKE
/// §7).
pub const BILLING_ANSWER_WORKING_DAYS: u32 = 2;

/// What distinguishes the two ORDERS the gateway writes.
struct OrdersBody<'a> {
    /// BGM DE1001.
    document: &'a str,
    /// DTM qualifier (203 Ausführungsdatum, 469 nächstmöglicher Termin) and day.
    date: (&'a str, NaiveDate),
    /// Prüfidentifikator (RFF+Z13).
    pid: u32,
    /// NAD+MR.
    recipient: &'a MarketPartnerId,
    /// LOC+172: market location or Messlokation.
    location: &'a str,
    /// Further SG2 groups after the Meldepunkt (the customer, NAD+Z09 with its SG5).
    parties: Vec<OwnedSegment>,
    /// LIN DE1229.
    item: &'a str,
    /// PIA+5 product code.
    product: &'a str,
    /// SG30 CCI/CAV after PIA, if the product has properties.
    properties: Vec<OwnedSegment>,
}

/// The ORDERS layout both orders share (AHB ORDERS 17133/17011/17003): BGM, DTM+137, the
/// date, RFF+Z13, NAD+MS (with the contact up to 1.4b), NAD+MR, NAD+DP with LOC+172, further
/// parties (NAD+Z09), SG29 LIN/PIA (and SG30), UNS+S.
fn orders(
    registry: &Registry,
    sender: &Sender,
    body: OrdersBody<'_>,
    now: NaiveDateTime,
    references: &mut ReferenceSequence,
) -> Result<BuiltOrder, BuildError> {
    let identifier = orders_identifier(registry, now.date())?;
    let document_number = references.next_reference();
    let (qualifier, day) = body.date;
    let mut segments = vec![
        OwnedSegment::new("BGM")
            .simple(body.document)
            .simple(document_number.clone()),
        OwnedSegment::new("DTM").composite(["137".to_string(), now_303(now), "303".into()]),
        OwnedSegment::new("DTM").composite([
            qualifier.to_string(),
            day_start_303(day),
            "303".into(),
        ]),
        OwnedSegment::new("RFF").composite(["Z13".to_string(), body.pid.to_string()]),
        party_nad("MS", &sender.id),
    ];
    segments.extend(contact(sender, &identifier));
    segments.extend([
        party_nad("MR", body.recipient),
        OwnedSegment::new("NAD").simple("DP"),
        OwnedSegment::new("LOC").simple("172").simple(body.location),
    ]);
    segments.extend(body.parties);
    segments.extend([
        OwnedSegment::new("LIN").simple("1").simple(body.item),
        OwnedSegment::new("PIA")
            .simple("5")
            .composite([body.product, "Z11"]),
    ]);
    segments.extend(body.properties);
    segments.push(OwnedSegment::new("UNS").simple("S"));
    let message = OutboundMessage {
        reference: references.next_reference(),
        identifier,
        segments,
    };
    checked(
        registry,
        BuiltOrder {
            interchange: interchange(sender, body.recipient, now, references, message),
            document_number,
            pid: body.pid,
        },
    )
}

/// Every message the gateway builds is checked with its own grammars before it can be sent:
/// what our validator would refuse from a partner never leaves (an out-of-range date, an
/// over-long contact name from the configuration, …). Warnings (unverified rules) pass.
fn checked(registry: &Registry, built: BuiltOrder) -> Result<BuiltOrder, BuildError> {
    let message = format!(
        "{} {}",
        built
            .interchange
            .messages
            .first()
            .map_or("message", |m| m.identifier.message_type.as_str()),
        built.pid
    );
    let invalid = |findings: String| BuildError::Invalid {
        message: message.clone(),
        findings,
    };
    let bytes = Writer::new(built.interchange.header.syntax)
        .with_line_break(LineBreak::None)
        .write_interchange(&built.interchange)
        .map_err(|e| invalid(e.to_string()))?;
    let document = crate::edifact::parse(&bytes).map_err(|e| invalid(e.to_string()))?;
    let mut errors = Vec::new();
    for ic in document.interchanges() {
        for report in validate_interchange(&ic, registry) {
            errors.extend(
                report
                    .findings
                    .iter()
                    .filter(|f| f.severity == Severity::Error)
                    .map(ToString::to_string),
            );
        }
    }
    if errors.is_empty() {
        return Ok(built);
    }
    let shown = errors.len().min(5);
    let mut findings = errors[..shown].join("; ");
    if errors.len() > shown {
        findings.push_str(&format!("; and {} more", errors.len() - shown));
    }
    Err(invalid(findings))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_start_at_german_midnight() {
        assert_eq!(
            day_start_303(NaiveDate::from_ymd_opt(2026, 6, 1).unwrap()),
            "202605312200+00"
        );
        assert_eq!(
            day_start_303(NaiveDate::from_ymd_opt(2026, 12, 1).unwrap()),
            "202611302300+00"
        );
    }
}
