//! Envelope values: parties with their code qualifiers, the preparation date and time in the
//! syntax version's format, and unique control references.

use chrono::NaiveDateTime;
use std::fmt;

/// Code qualifier of a market partner ID in UNB S002/S003 (DE0007).
///
/// In BDEW interchanges: `500` for BDEW codes (Strom), `14` for GS1 GLNs and `502` for DVGW codes
/// (Gas). These are UNB values; the NAD segments use the code list agency DE3055 instead
/// (`293` BDEW, `9` GS1, `332` DVGW). Source: EDI@Energy "Allgemeine Festlegungen", UNB; seen in
/// every file of the conuti and hupe1980 corpora (500: BDEW, 502: DVGW, 14: GS1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PartnerQualifier {
    /// `500`: BDEW-Codenummer (electricity market partners).
    Bdew,
    /// `14`: GS1 Global Location Number.
    Gs1,
    /// `502`: DVGW-Codenummer (gas market partners).
    Dvgw,
}

impl PartnerQualifier {
    /// DE0007 as written in UNB.
    pub fn code(self) -> &'static str {
        match self {
            PartnerQualifier::Bdew => "500",
            PartnerQualifier::Gs1 => "14",
            PartnerQualifier::Dvgw => "502",
        }
    }

    /// Reads DE0007.
    pub fn from_code(code: &str) -> Option<PartnerQualifier> {
        match code {
            "500" => Some(PartnerQualifier::Bdew),
            "14" => Some(PartnerQualifier::Gs1),
            "502" => Some(PartnerQualifier::Dvgw),
            _ => None,
        }
    }

    /// The matching NAD code list agency (DE3055): `293`, `9` or `332`.
    pub fn nad_agency(self) -> &'static str {
        match self {
            PartnerQualifier::Bdew => "293",
            PartnerQualifier::Gs1 => "9",
            PartnerQualifier::Dvgw => "332",
        }
    }

    /// The qualifier an ID's prefix implies: BDEW codes start `99`, DVGW codes `98`, anything
    /// else is a GLN.
    pub fn for_id(id: &str) -> PartnerQualifier {
        if id.starts_with("99") {
            PartnerQualifier::Bdew
        } else if id.starts_with("98") {
            PartnerQualifier::Dvgw
        } else {
            PartnerQualifier::Gs1
        }
    }
}

impl fmt::Display for PartnerQualifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// An interchange sender or recipient (UNB S002/S003).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Party {
    /// DE0004, the market partner ID.
    pub id: String,
    /// DE0007.
    pub qualifier: PartnerQualifier,
}

impl Party {
    /// A party with the qualifier its ID implies.
    pub fn new(id: impl Into<String>) -> Party {
        let id = id.into();
        let qualifier = PartnerQualifier::for_id(&id);
        Party { id, qualifier }
    }
}

/// UNB S004 for a syntax version: `YYMMDD` and `HHMM` up to version 3, `CCYYMMDD` and `HHMM`
/// from version 4 (ISO 9735-2:2002, DE0017).
pub fn preparation_date_time(at: NaiveDateTime, syntax_version: u8) -> (String, String) {
    let date = if syntax_version >= 4 {
        at.format("%Y%m%d").to_string()
    } else {
        at.format("%y%m%d").to_string()
    };
    (date, at.format("%H%M").to_string())
}

/// Reads UNB S004 back. Two-digit years are taken as 20YY, as BDEW interchanges are all from
/// this century.
pub fn parse_preparation_date_time(date: &str, time: &str) -> Option<NaiveDateTime> {
    let full = match date.len() {
        6 => format!("20{date}{time}"),
        8 => format!("{date}{time}"),
        _ => return None,
    };
    NaiveDateTime::parse_from_str(&full, "%Y%m%d%H%M").ok()
}

/// Most characters an interchange or message reference may have (UNB DE0020, UNH DE0062: an..14).
pub const MAX_REFERENCE_LEN: usize = 14;

/// Makes unique references: a fixed prefix and a counter in base 36, within 14 characters.
///
/// Uniqueness across restarts is the caller's part: it persists `next` (the store does) and
/// chooses a prefix per gateway instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReferenceSequence {
    prefix: String,
    next: u64,
}

impl ReferenceSequence {
    /// A sequence with `prefix` (upper-case letters and digits, at most 6) starting at `next`.
    pub fn new(prefix: &str, next: u64) -> Result<ReferenceSequence, String> {
        if prefix.len() > 6
            || !prefix
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
        {
            return Err(format!(
                "reference prefix {prefix:?} must be at most 6 upper-case letters or digits"
            ));
        }
        Ok(ReferenceSequence {
            prefix: prefix.to_string(),
            next,
        })
    }

    /// The counter value the next reference will use.
    pub fn peek(&self) -> u64 {
        self.next
    }

    /// The next reference: the prefix and 8 base-36 digits, zero-padded.
    pub fn next_reference(&mut self) -> String {
        // 8 base-36 digits give 2.8 trillion references before the counter wraps.
        let n = self.next % 36u64.pow(8);
        self.next = self.next.wrapping_add(1);
        let mut digits = Vec::new();
        let mut v = n;
        loop {
            let d = (v % 36) as u8;
            digits.push(if d < 10 { b'0' + d } else { b'A' + d - 10 });
            v /= 36;
            if v == 0 {
                break;
            }
        }
        while digits.len() < 8 {
            digits.push(b'0');
        }
        digits.reverse();
        let mut out = self.prefix.clone();
        out.push_str(std::str::from_utf8(&digits).expect("ASCII digits"));
        debug_assert!(out.len() <= MAX_REFERENCE_LEN);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;

    #[test]
    fn date_format_follows_the_syntax_version() {
        let at = NaiveDate::from_ymd_opt(2025, 10, 1)
            .unwrap()
            .and_hms_opt(8, 15, 0)
            .unwrap();
        assert_eq!(
            preparation_date_time(at, 3),
            ("251001".into(), "0815".into())
        );
        assert_eq!(
            preparation_date_time(at, 4),
            ("20251001".into(), "0815".into())
        );
        assert_eq!(parse_preparation_date_time("251001", "0815"), Some(at));
        assert_eq!(parse_preparation_date_time("{{date}}", "{{time}}"), None);
    }

    #[test]
    fn references_are_unique_and_short() {
        let mut seq = ReferenceSequence::new("MG1", 35).unwrap();
        assert_eq!(seq.next_reference(), "MG10000000Z");
        assert_eq!(seq.next_reference(), "MG100000010");
        let mut big = ReferenceSequence::new("ABCDEF", u64::MAX - 1).unwrap();
        assert!(big.next_reference().len() <= MAX_REFERENCE_LEN);
        assert!(ReferenceSequence::new("abc", 0).is_err());
    }

    #[test]
    fn qualifiers_map_to_nad_agencies() {
        assert_eq!(Party::new("9900000000003").qualifier.code(), "500");
        assert_eq!(Party::new("9800000000004").qualifier.nad_agency(), "332");
        assert_eq!(Party::new("4012345000023").qualifier, PartnerQualifier::Gs1);
    }
}
