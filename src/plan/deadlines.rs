//! Deadlines watched, both ways (pure: the times are arguments).
//!
//! - **Theirs:** what we wait for after sending ([`awaited_after_sending`]): the ORDRSP to an
//!   ORDERS, by the end of the 2nd working day for ORDERS 17133 (grid-fee reduction; GPKE Teil 2
//!   §3.1.1 answers "bis zum Ablauf des zweiten Werktages") and of the 10th for the iMSys order
//!   (WiM: the MSB answers within 10 working days), and the APERAK to every business message,
//!   by the APERAK AHB 1.1 §2.5.1 deadline of its type (45 minutes for UTILMD/ORDERS, else the
//!   next working day 12:00). No CONTRL is awaited: in electricity a CONTRL comes only on a
//!   syntax error (APERAK AHB 1.1 §1.2), so its absence is the good case. An answer meets a
//!   deadline when it comes from the partner the message went to and names the message
//!   (`plan::inbound` reads the [`MetKey`]s); nothing else can meet it.
//! - **Ours:** when an answer we queued must have left ([`our_due`]): the APERAK/CONTRL as
//!   the acknowledgement rules say, the UTILMD 55220 within 2 working days of the 55218 (GPKE
//!   Teil 2 §3.1.1.2 Nr. 2).
//!
//! A working day follows `grammars/calendar/holidays.txt`: no Saturday, Sunday, holiday of any
//! Land, 24.12. or 31.12. The Augsburger Friedensfest (8 August) is not counted: it is a holiday
//! of the city of Augsburg only (Bavarian FTG Art. 1 Abs. 2), not one "in einem Bundesland" in
//! the sense of the glossary's "WT" (WiM Teil 1, GPKE), which makes a Land's holidays count
//! nationwide; counting it would also move our own deadlines later than a partner reckons them.

use chrono::{DateTime, Duration, NaiveDateTime, NaiveTime, Utc};
use serde::Serialize;

use super::records::{OrderKind, SentRecord};
use crate::acks::calendar::{berlin_local, berlin_to_utc};
use crate::acks::{Calendar, Deadline, DeadlineRules};
use crate::ids::new_id;

/// What we wait for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum Awaiting {
    /// The ORDRSP to an ORDERS.
    #[serde(rename = "ORDRSP")]
    Ordrsp,
    /// The APERAK to a business message.
    #[serde(rename = "APERAK")]
    Aperak,
}

impl Awaiting {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Awaiting::Ordrsp => "ORDRSP",
            Awaiting::Aperak => "APERAK",
        }
    }
}

/// Working days for the ORDRSP to an ORDERS 17133 (GPKE Teil 2 §3.1.1).
pub const ORDRSP_GRID_FEE_WORKING_DAYS: u32 = 2;
/// Working days for the MSB's ORDRSP to an iMSys ORDERS (WiM Teil 1: 10 WT).
pub const ORDRSP_METER_WORKING_DAYS: u32 = 10;
/// Working days for our UTILMD 55220 to a 55218 (GPKE Teil 2 §3.1.1.2 Nr. 2).
pub const UTILMD_55220_WORKING_DAYS: u32 = 2;

/// An answer we wait for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDeadline {
    /// `ddl_…`.
    pub id: String,
    /// Of which kind.
    pub awaiting: Awaiting,
    /// The order it concerns, if any.
    pub order: Option<(OrderKind, String)>,
    /// Who must answer.
    pub partner: String,
    /// Our BGM document number of the message.
    pub reference: String,
    /// Our UNB reference.
    pub interchange_ref: String,
    /// When (UTC).
    pub due_at: DateTime<Utc>,
}

/// What an inbound answer meets: from `partner`, an answer of kind `awaiting` naming our
/// document `reference` or our interchange `interchange_ref`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MetKey {
    /// The answer's sender (UNB).
    pub partner: String,
    /// Its kind.
    pub awaiting: Awaiting,
    /// Our document number it names, if it names one.
    pub reference: Option<String>,
    /// Our UNB reference it names, if it names one.
    pub interchange_ref: Option<String>,
}

/// The end (24:00 German legal time) of the `n`-th working day after the day of `at`.
pub fn end_of_working_day(at: DateTime<Utc>, n: u32, calendar: &Calendar) -> DateTime<Utc> {
    let local = berlin_local(at.naive_utc()).date();
    let day = calendar.add_working_days(local, n);
    let midnight = (day + Duration::days(1)).and_time(NaiveTime::MIN);
    berlin_to_utc(midnight).and_utc()
}

/// A message as written, as far as deadlines need it (`plan::outbound::WrittenMessage`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Written<'a> {
    /// UNH S009 DE0065.
    pub message_type: &'a str,
    /// BGM DE1004.
    pub document_number: &'a str,
    /// UNH DE0062.
    pub message_ref: &'a str,
}

/// The answers we wait for after sending `messages` (with their `sent` records) to `partner`
/// at `sent_at`.
pub fn awaited_after_sending(
    partner: &str,
    interchange_ref: &str,
    messages: &[Written<'_>],
    sent: &[SentRecord],
    sent_at: DateTime<Utc>,
) -> Vec<NewDeadline> {
    let (rules, calendar) = (DeadlineRules::embedded(), Calendar::embedded());
    let mut out = Vec::new();
    for message in messages {
        if matches!(message.message_type, "CONTRL" | "APERAK") {
            continue;
        }
        let order = sent
            .iter()
            .find(|s| s.message_ref == message.message_ref)
            .and_then(|s| s.order.clone());
        let deadline = |awaiting, due_at| NewDeadline {
            id: new_id("ddl", sent_at),
            awaiting,
            order: order.clone(),
            partner: partner.to_string(),
            reference: message.document_number.to_string(),
            interchange_ref: interchange_ref.to_string(),
            due_at,
        };
        if let Some(due) = rules.due(
            Deadline::Aperak,
            message.message_type,
            sent_at.naive_utc(),
            calendar,
        ) {
            out.push(deadline(Awaiting::Aperak, due.and_utc()));
        }
        if message.message_type == "ORDERS" {
            let days = match order.as_ref().map(|(kind, _)| *kind) {
                Some(OrderKind::GridFeeReduction) => ORDRSP_GRID_FEE_WORKING_DAYS,
                Some(OrderKind::MeterOrder) => ORDRSP_METER_WORKING_DAYS,
                _ => continue,
            };
            out.push(deadline(
                Awaiting::Ordrsp,
                end_of_working_day(sent_at, days, calendar),
            ));
        }
    }
    out
}

/// When an answer we queued at `received` must have left: the acknowledgement rules for a
/// CONTRL/APERAK to a message of `answered_type`, 2 working days for a UTILMD 55220.
pub fn our_due(
    reply_type: &str,
    answered_type: &str,
    received: NaiveDateTime,
) -> Option<DateTime<Utc>> {
    let (rules, calendar) = (DeadlineRules::embedded(), Calendar::embedded());
    match reply_type {
        "CONTRL" => rules.due(Deadline::Contrl, answered_type, received, calendar),
        "APERAK" => rules.due(Deadline::Aperak, answered_type, received, calendar),
        "UTILMD" => {
            return Some(end_of_working_day(
                received.and_utc(),
                UTILMD_55220_WORKING_DAYS,
                calendar,
            ))
        }
        _ => None,
    }
    .map(|d| d.and_utc())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn written<'a>(message_type: &'a str, doc: &'a str, reference: &'a str) -> Written<'a> {
        Written {
            message_ref: reference,
            document_number: doc,
            message_type,
        }
    }

    fn sent_record(reference: &str, order: Option<(OrderKind, &str)>) -> SentRecord {
        SentRecord {
            partner: "9900000000011".into(),
            interchange_ref: "MG1".into(),
            message_ref: reference.into(),
            document_number: "D".into(),
            order: order.map(|(k, id)| (k, id.to_string())),
            pass_through: None,
            journal_id: "jrn_1".into(),
        }
    }

    #[test]
    fn an_orders_17133_awaits_its_aperak_in_45_minutes_and_its_ordrsp_by_the_2nd_working_day() {
        // Thursday 2026-10-01 10:00 German time (08:00 UTC).
        let sent_at = Utc.with_ymd_and_hms(2026, 10, 1, 8, 0, 0).unwrap();
        let deadlines = awaited_after_sending(
            "9900000000011",
            "MG1",
            &[written("ORDERS", "MGDOC1", "M1")],
            &[sent_record(
                "M1",
                Some((OrderKind::GridFeeReduction, "gfr_1")),
            )],
            sent_at,
        );
        assert_eq!(deadlines.len(), 2);
        assert_eq!(deadlines[0].awaiting, Awaiting::Aperak);
        assert_eq!(deadlines[0].due_at, sent_at + Duration::minutes(45));
        assert_eq!(deadlines[1].awaiting, Awaiting::Ordrsp);
        // Friday 2 Oct is the 1st working day, Saturday/Sunday and Monday 5 Oct... the 3rd of
        // October (Tag der Deutschen Einheit) is a Saturday: the 2nd is Monday 5 Oct, ending at
        // 24:00 German summer time (22:00 UTC).
        assert_eq!(
            deadlines[1].due_at,
            Utc.with_ymd_and_hms(2026, 10, 5, 22, 0, 0).unwrap()
        );
        assert_eq!(
            deadlines[1].order,
            Some((OrderKind::GridFeeReduction, "gfr_1".into()))
        );
        assert_eq!(deadlines[1].reference, "MGDOC1");
    }

    #[test]
    fn acknowledgements_await_nothing_and_a_meter_order_waits_ten_working_days() {
        let sent_at = Utc.with_ymd_and_hms(2026, 12, 17, 9, 0, 0).unwrap();
        let deadlines = awaited_after_sending(
            "9900000000029",
            "MG2",
            &[
                written("APERAK", "A1", "M1"),
                written("ORDERS", "MGDOC2", "M2"),
            ],
            &[sent_record("M2", Some((OrderKind::MeterOrder, "mor_1")))],
            sent_at,
        );
        assert_eq!(deadlines.len(), 2, "{deadlines:?}");
        // From Thursday 17 Dec 2026: 18, 21, 22, 23, 28, 29, 30 Dec, 4, 5, 7 Jan (24/25/26/31
        // Dec, 1 Jan and 6 Jan, Heilige Drei Könige in BW/BY/ST, are no working days): the
        // 10th is Thursday 7 Jan, ending at 24:00 CET (23:00 UTC).
        assert_eq!(
            deadlines[1].due_at,
            Utc.with_ymd_and_hms(2027, 1, 7, 23, 0, 0).unwrap()
        );
    }

    #[test]
    fn the_augsburger_friedensfest_is_a_working_day() {
        let calendar = Calendar::embedded();
        let day = chrono::NaiveDate::from_ymd_opt(2028, 8, 8).unwrap(); // a Tuesday
        assert!(calendar.is_working_day(day));
    }

    #[test]
    fn our_55220_is_due_by_the_end_of_the_2nd_working_day() {
        let received = chrono::NaiveDate::from_ymd_opt(2026, 10, 1)
            .unwrap()
            .and_hms_opt(8, 0, 0)
            .unwrap();
        assert_eq!(
            our_due("UTILMD", "UTILMD", received),
            Some(Utc.with_ymd_and_hms(2026, 10, 5, 22, 0, 0).unwrap())
        );
        assert_eq!(
            our_due("APERAK", "UTILMD", received),
            Some(received.and_utc() + Duration::minutes(45))
        );
    }
}
