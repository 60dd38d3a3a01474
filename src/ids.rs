//! Identifiers of the German energy market as newtypes that check their format and check
//! digit when they are made ("parse, don't validate"), the EDIFACT date formats, and the ids of
//! the gateway's own records ([`new_id`]).

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};

/// Why an identifier or date was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} {value:?}: {problem}")]
pub struct IdError {
    /// What was expected (`market location ID`, …).
    pub what: &'static str,
    /// The value.
    pub value: String,
    /// What is wrong.
    pub problem: &'static str,
}

/// The digits of `s` (at most 16), or `None` if it has another character or is longer.
fn digits(s: &str) -> Option<([u32; 16], usize)> {
    let mut out = [0u32; 16];
    if s.len() > out.len() {
        return None;
    }
    for (slot, b) in out.iter_mut().zip(s.bytes()) {
        if !b.is_ascii_digit() {
            return None;
        }
        *slot = u32::from(b - b'0');
    }
    Some((out, s.len()))
}

/// The check digit procedure of BDEW "Identifikatoren in der Marktkommunikation" §8.1
/// ("Lok- und Waggon-Kennzeichnungsverfahren"), used for Marktlokations-IDs and BDEW/DVGW
/// codes: a = sum of the digits at odd positions, b = 2 × sum of the digits at even positions
/// (1-based, from the left), check = (10 − (a + b) mod 10) mod 10.
pub fn lok_check_digit(payload: &[u32]) -> u32 {
    let (mut odd, mut even) = (0, 0);
    for (i, d) in payload.iter().enumerate() {
        if i % 2 == 0 {
            odd += d;
        } else {
            even += d;
        }
    }
    (10 - (odd + 2 * even) % 10) % 10
}

/// GS1 (EAN-13 / GLN) check digit: weights 1, 3, 1, 3, … from the left over 12 digits.
pub fn gs1_check_digit(payload: &[u32]) -> u32 {
    let sum: u32 = payload
        .iter()
        .enumerate()
        .map(|(i, d)| if i % 2 == 0 { *d } else { 3 * d })
        .sum();
    (10 - sum % 10) % 10
}

/// Marktlokations-ID: 11 digits, the first not 0, the last a check digit (§8.1 procedure).
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(try_from = "String", into = "String")]
pub struct MarketLocationId(String);

impl MarketLocationId {
    /// What `s` lacks to be a market location ID, without allocating: `None` when it is one.
    fn problem(s: &str) -> Option<&'static str> {
        let Some((d, len)) = digits(s) else {
            return Some("must be digits only");
        };
        if len != 11 {
            return Some("must have 11 digits");
        }
        if d[0] == 0 {
            return Some("must not start with 0");
        }
        (lok_check_digit(&d[..10]) != d[10]).then_some("check digit does not match")
    }
}

impl FromStr for MarketLocationId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::check(s)?;
        Ok(MarketLocationId(s.to_string()))
    }
}

/// Messlokations-ID (Zählpunktbezeichnung): `DE`, 11 digits (network operator number and
/// postcode) and 20 upper-case letters or digits; 33 characters, no check digit.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(try_from = "String", into = "String")]
pub struct MeteringLocationId(String);

impl MeteringLocationId {
    /// What `s` lacks to be a metering location ID, without allocating: `None` when it is one.
    fn problem(s: &str) -> Option<&'static str> {
        let b = s.as_bytes();
        if b.len() != 33 {
            return Some("must have 33 characters");
        }
        if &b[..2] != b"DE" {
            return Some("must start with DE");
        }
        if !b[2..13].iter().all(u8::is_ascii_digit) {
            return Some("characters 3 to 13 must be digits");
        }
        (!b[13..]
            .iter()
            .all(|c| c.is_ascii_digit() || c.is_ascii_uppercase()))
        .then_some("characters 14 to 33 must be upper-case letters or digits")
    }
}

impl FromStr for MeteringLocationId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::check(s)?;
        Ok(MeteringLocationId(s.to_string()))
    }
}

/// Market partner ID: 13 digits; BDEW and DVGW codes carry a §8.1 check digit, GS1 GLNs a GS1
/// check digit. The prefix does not reliably tell which, so either procedure is accepted.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(try_from = "String", into = "String")]
pub struct MarketPartnerId(String);

impl MarketPartnerId {
    /// What `s` lacks to be a market partner ID, without allocating: `None` when it is one.
    fn problem(s: &str) -> Option<&'static str> {
        let Some((d, len)) = digits(s) else {
            return Some("must be digits only");
        };
        if len != 13 {
            return Some("must have 13 digits");
        }
        (lok_check_digit(&d[..12]) != d[12] && gs1_check_digit(&d[..12]) != d[12])
            .then_some("check digit matches neither the BDEW/DVGW nor the GS1 procedure")
    }
}

impl FromStr for MarketPartnerId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::check(s)?;
        Ok(MarketPartnerId(s.to_string()))
    }
}

macro_rules! id_common {
    ($t:ty, $what:literal) => {
        impl $t {
            /// Checks that `s` is such an ID, as parsing it does, without allocating unless it
            /// is not one (the error holds the value): for validation, which keeps nothing.
            pub fn check(s: &str) -> Result<(), IdError> {
                match Self::problem(s) {
                    None => Ok(()),
                    Some(problem) => Err(IdError {
                        what: $what,
                        value: s.to_string(),
                        problem,
                    }),
                }
            }

            /// The ID as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
        impl TryFrom<String> for $t {
            type Error = IdError;
            fn try_from(s: String) -> Result<Self, IdError> {
                s.parse()
            }
        }
        impl From<$t> for String {
            fn from(id: $t) -> String {
                id.0
            }
        }
        impl PartialEq<str> for $t {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl AsRef<str> for $t {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}
id_common!(MarketLocationId, "market location ID");
id_common!(MeteringLocationId, "metering location ID");
id_common!(MarketPartnerId, "market partner ID");

/// Reads a DTM value in format 303 (`CCYYMMDDHHMMZZZ`, BDEW: zone `+00`, i.e. UTC, condition
/// \[931\]) as UTC.
pub fn parse_date_303(value: &str) -> Result<NaiveDateTime, IdError> {
    let fail = |problem| IdError {
        what: "date in format 303",
        value: value.to_string(),
        problem,
    };
    // Checked as bytes first: a value with characters outside ASCII must not be sliced.
    if value.len() != 15 || !value.is_ascii() {
        return Err(fail("must be CCYYMMDDHHMM and a time zone such as +00"));
    }
    let (stamp, zone) = value.split_at(12);
    if zone != "+00" {
        return Err(fail("time zone must be +00 (UTC)"));
    }
    parse_date_203(stamp).map_err(|_| fail("not a valid date and time"))
}

/// Reads a DTM value in format 203 (`CCYYMMDDHHMM`).
pub fn parse_date_203(value: &str) -> Result<NaiveDateTime, IdError> {
    let fail = |problem| IdError {
        what: "date in format 203",
        value: value.to_string(),
        problem,
    };
    if value.len() != 12 || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(fail("must be CCYYMMDDHHMM"));
    }
    let date = parse_date_102(&value[..8]).map_err(|_| fail("not a valid date and time"))?;
    let hour = number(&value[8..10]);
    let minute = number(&value[10..12]);
    date.and_hms_opt(hour, minute, 0)
        .ok_or_else(|| fail("not a valid date and time"))
}

/// Digits to a number (the caller has checked they are digits).
fn number(digits: &str) -> u32 {
    digits.bytes().fold(0, |n, b| n * 10 + u32::from(b - b'0'))
}

/// Reads a DTM value in format 102 (`CCYYMMDD`).
pub fn parse_date_102(value: &str) -> Result<NaiveDate, IdError> {
    let fail = |problem| IdError {
        what: "date in format 102",
        value: value.to_string(),
        problem,
    };
    if value.len() != 8 || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(fail("must be CCYYMMDD"));
    }
    NaiveDate::from_ymd_opt(
        number(&value[..4]) as i32,
        number(&value[4..6]),
        number(&value[6..8]),
    )
    .ok_or_else(|| fail("not a valid date"))
}

/// A new record id: `<prefix>_<UUIDv7 without dashes>`, its time part taken from `at` (the
/// caller's clock: nothing here reads the wall clock) and the rest random.
///
/// Ids are time ordered, so ordering by id is ordering by creation: within one process exactly
/// (one shared UUIDv7 counter, which never goes backwards even when `at` does), across
/// instances to the millisecond.
pub fn new_id(prefix: &str, at: DateTime<Utc>) -> String {
    use uuid::timestamp::context::ContextV7;
    use uuid::{Timestamp, Uuid};
    static CONTEXT: std::sync::Mutex<ContextV7> = std::sync::Mutex::new(ContextV7::new());
    let seconds = u64::try_from(at.timestamp()).unwrap_or(0);
    let timestamp = Timestamp::from_unix(&CONTEXT, seconds, at.timestamp_subsec_nanos());
    format!("{prefix}_{}", Uuid::new_v7(timestamp).simple())
}

/// True when `text` has the shape of a Prüfidentifikator (PID, `RFF+Z13`): five digits.
pub fn is_pid(text: &str) -> bool {
    text.len() == 5 && text.bytes().all(|b| b.is_ascii_digit())
}

/// True when `text` has the shape of an id [`new_id`] makes with `prefix`: the prefix, `_`
/// and 32 lowercase hex digits. The API checks ids with it before it puts one anywhere (a
/// file name in a header, a query).
pub fn is_record_id(prefix: &str, text: &str) -> bool {
    text.strip_prefix(prefix)
        .and_then(|rest| rest.strip_prefix('_'))
        .is_some_and(|hex| {
            hex.len() == 32 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn market_location_ids_check_their_digit() {
        // Sample IDs named in the domain notes (research.md §2.2).
        for ok in [
            "51238696781",
            "55123678945",
            "20072281644",
            "50375312838",
            "74018657187",
        ] {
            ok.parse::<MarketLocationId>().unwrap();
        }
        assert_eq!(
            "51238696782"
                .parse::<MarketLocationId>()
                .unwrap_err()
                .problem,
            "check digit does not match"
        );
        assert!("01238696781".parse::<MarketLocationId>().is_err());
        assert!("5123869678".parse::<MarketLocationId>().is_err());
    }

    #[test]
    fn market_partner_ids_accept_either_procedure() {
        // Real BDEW codes (§8.1) and a GLN (GS1), from the research notes.
        for ok in [
            "9904292000003",
            "9903829000006",
            "9900269000000",
            "4012345000023",
        ] {
            ok.parse::<MarketPartnerId>().unwrap();
        }
        assert!("9900357000004".parse::<MarketPartnerId>().is_err());
        assert!("99042920000".parse::<MarketPartnerId>().is_err());
    }

    #[test]
    fn metering_location_ids_have_33_characters() {
        "DE0032106765712000000000000000037"
            .parse::<MeteringLocationId>()
            .unwrap();
        assert!("DE003210676571200000000000000003"
            .parse::<MeteringLocationId>()
            .is_err());
        assert!("AT0032106765712000000000000000037"
            .parse::<MeteringLocationId>()
            .is_err());
        assert!("DE00321067657120000000000000000a7"
            .parse::<MeteringLocationId>()
            .is_err());
    }

    #[test]
    fn check_gives_what_parsing_gives_without_keeping_the_value() {
        let values = [
            "",
            "51238696781",
            "51238696782",
            "01238696781",
            "5123869678",
            "9904292000003",
            "4012345000023",
            "9900357000004",
            "99042920000",
            "DE0032106765712000000000000000037",
            "AT0032106765712000000000000000037",
            "DE00321067657120000000000000000a7",
            "DE003210676571200000000000000003",
            "DEx032106765712000000000000000037",
            "5123869678ä",
        ];
        for v in values {
            assert_eq!(
                MarketLocationId::check(v),
                v.parse::<MarketLocationId>().map(|_| ()),
                "{v}"
            );
            assert_eq!(
                MarketPartnerId::check(v),
                v.parse::<MarketPartnerId>().map(|_| ()),
                "{v}"
            );
            assert_eq!(
                MeteringLocationId::check(v),
                v.parse::<MeteringLocationId>().map(|_| ()),
                "{v}"
            );
        }
        // The errors as they were before `check` existed.
        assert_eq!(
            MarketPartnerId::check("9900357000004").unwrap_err().to_string(),
            "market partner ID \"9900357000004\": check digit matches neither the BDEW/DVGW nor the GS1 procedure"
        );
        assert_eq!(
            MeteringLocationId::check("AT0032106765712000000000000000037")
                .unwrap_err()
                .to_string(),
            "metering location ID \"AT0032106765712000000000000000037\": must start with DE"
        );
    }

    #[test]
    fn dates_in_the_three_formats() {
        assert_eq!(
            parse_date_303("202510142200+00").unwrap().to_string(),
            "2025-10-14 22:00:00"
        );
        assert!(parse_date_303("202510142200+01").is_err());
        assert!(parse_date_303("202513142200+00").is_err());
        assert!(parse_date_102("20250229").is_err());
        assert!(parse_date_102("20240229").is_ok());
        assert!(parse_date_203("{{date}}").is_err());
    }

    /// Found by the fuzzer: a 15-byte value with a non-ASCII character was sliced inside it.
    #[test]
    fn regression_date_303_with_non_ascii_characters_is_an_error_not_a_panic() {
        assert!(parse_date_303("20230Ç¯º\u{ad}AK").is_err());
        assert!(parse_date_303("202305010000+\u{e4}").is_err());
        assert!(parse_date_203("2023050100\u{e4}").is_err());
        assert!(parse_date_102("202305\u{e4}").is_err());
    }

    #[test]
    fn record_ids_are_ordered_by_creation_even_when_the_time_goes_back() {
        use chrono::TimeZone;
        let later = Utc.with_ymd_and_hms(2026, 12, 1, 10, 0, 0).unwrap();
        let earlier = later - chrono::Duration::hours(1);
        let a = new_id("evt", later);
        let b = new_id("evt", later);
        let c = new_id("evt", earlier);
        assert!(a.starts_with("evt_") && a.len() == 4 + 32, "{a}");
        assert!(a < b && b < c, "{a} {b} {c}");
    }

    #[test]
    fn record_ids_are_recognised_by_prefix_and_shape() {
        use chrono::TimeZone;
        let id = new_id("jrn", Utc.with_ymd_and_hms(2026, 6, 1, 10, 0, 0).unwrap());
        assert!(is_record_id("jrn", &id), "{id}");
        assert!(!is_record_id("mail", &id), "another prefix");
        assert!(!is_record_id("jrn", &id.to_uppercase()), "upper case");
        assert!(!is_record_id("jrn", &id[..id.len() - 1]), "too short");
        assert!(!is_record_id("jrn", &format!("{id}0")), "too long");
        assert!(!is_record_id("jrn", "jrn_../../etc/passwd0000000000000000"));
        assert!(!is_record_id("jrn", ""));
    }
}
