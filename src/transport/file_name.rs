//! The BDEW name of a transfer file, read from the interchange (pure).

use std::fmt;

use chrono::NaiveDate;

/// The BDEW name of a transfer file (Übertragungsdatei), used as the attachment's file name
/// and as the mail's subject:
///
/// ```text
/// Nachrichtentyp_Anwendungsreferenz_von_an_yyyymmdd_DAR.txt
/// ORDERS__9900000000003_9900000000010_20261123_MG0000000042.txt
/// ```
///
/// Source: BDEW/EDI@Energy "Kommunikationsrichtlinie" 2.2 (2012-10-01), §3.2
/// "Namenskonvention für Nachrichtendateien", read in its public text: message type from UNH
/// DE0065; application reference from UNB DE0026 (VL, TL, (LG, EM); empty for most message
/// types, which gives two underscores in a row, as in the document's example
/// `UTILMD__9900123400007_4012345393651_20070131_A177.txt`); sender MP-ID UNB DE0004;
/// recipient MP-ID UNB DE0010; the date the file was made; the interchange reference UNB
/// DE0020; `.txt` for every file (plus `.gz` when compressed). "Alle sechs Bestandteile sind
/// MUSS-Angaben. Als Trennzeichen dient der Unterstrich." The same section of that document
/// (§6.5) makes the subject of the mail the file name. The current home of the rule,
/// "Allgemeine Festlegungen" §2.12 "Namenskonvention für Übertragungsdateien" (versions
/// 6.1c/6.1d), is known only from two independent implementations that quote it with the same
/// pattern and say that the date is taken in UTC; we have not read that document itself.
///
/// Stricter than the rule, on purpose: a part that contains anything but ASCII letters,
/// digits, `-` and `.` is refused (an underscore would make the name ambiguous, a slash or a
/// space unsafe as a file name), and so is an interchange whose messages are of more than
/// one type (the BDEW transfer file is "sortenrein").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferFileName {
    /// UNH DE0065 (`ORDERS`, `UTILMD`, …).
    pub message_type: String,
    /// UNB DE0026, empty when absent.
    pub application_reference: String,
    /// UNB DE0004.
    pub sender: String,
    /// UNB DE0010.
    pub recipient: String,
    /// The day the file was made (UTC).
    pub created: NaiveDate,
    /// UNB DE0020.
    pub interchange_reference: String,
}

/// Why no file name could be made for an interchange.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FileNameError {
    /// The bytes are not one readable interchange.
    #[error("the interchange is not readable EDIFACT: {reason}")]
    Unreadable {
        /// The parser's error, with its position.
        reason: String,
    },
    /// More than one interchange: one transfer file carries exactly one.
    #[error("{count} interchanges in one file; a transfer file carries exactly one")]
    SeveralInterchanges {
        /// How many.
        count: usize,
    },
    /// The interchange has no message (no UNH).
    #[error("the interchange has no message, so no message type for the file name")]
    NoMessage,
    /// Messages of different types in one interchange.
    #[error(
        "messages of types {first} and {other} in one interchange; a transfer file is of one type"
    )]
    MixedMessageTypes {
        /// The first message's type.
        first: String,
        /// Another message's type.
        other: String,
    },
    /// A mandatory part is empty.
    #[error("{part} is empty; all parts of the file name are mandatory")]
    Empty {
        /// Which part (`UNB DE0004`, …).
        part: &'static str,
    },
    /// A part has characters that are unsafe in the file name.
    #[error("{part} {value:?} has characters other than A-Z, a-z, 0-9, '-' and '.'")]
    UnsafeCharacter {
        /// Which part.
        part: &'static str,
        /// Its value.
        value: String,
    },
}

impl TransferFileName {
    /// The name of the transfer file for `interchange`, made on `created` (the caller passes
    /// today's UTC date: no clock is read here).
    pub fn of_interchange(
        interchange: &[u8],
        created: NaiveDate,
    ) -> Result<TransferFileName, FileNameError> {
        let document =
            crate::edifact::parse(interchange).map_err(|e| FileNameError::Unreadable {
                reason: e.to_string(),
            })?;
        let count = document.interchanges().len();
        if count > 1 {
            return Err(FileNameError::SeveralInterchanges { count });
        }
        let ic = document
            .interchanges()
            .next()
            .ok_or_else(|| FileNameError::Unreadable {
                reason: "no UNB segment".into(),
            })?;
        let message_type = ic
            .messages()
            .next()
            .map(|m| m.message_type().into_owned())
            .ok_or(FileNameError::NoMessage)?;
        if let Some(other) = ic
            .messages()
            .map(|m| m.message_type().into_owned())
            .find(|t| *t != message_type)
        {
            return Err(FileNameError::MixedMessageTypes {
                first: message_type,
                other,
            });
        }
        let name = TransferFileName {
            message_type,
            application_reference: ic.unb().value(7, 1).into_owned(),
            sender: ic.sender().id.into_owned(),
            recipient: ic.recipient().id.into_owned(),
            created,
            interchange_reference: ic.control_reference().into_owned(),
        };
        name.check()?;
        Ok(name)
    }

    fn check(&self) -> Result<(), FileNameError> {
        let parts: [(&'static str, &str, bool); 5] = [
            ("UNH DE0065", &self.message_type, true),
            ("UNB DE0026", &self.application_reference, false),
            ("UNB DE0004", &self.sender, true),
            ("UNB DE0010", &self.recipient, true),
            ("UNB DE0020", &self.interchange_reference, true),
        ];
        for (part, value, mandatory) in parts {
            if mandatory && value.is_empty() {
                return Err(FileNameError::Empty { part });
            }
            if !value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
            {
                return Err(FileNameError::UnsafeCharacter {
                    part,
                    value: value.to_string(),
                });
            }
        }
        Ok(())
    }
}

impl fmt::Display for TransferFileName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}_{}_{}_{}_{}_{}.txt",
            self.message_type,
            self.application_reference,
            self.sender,
            self.recipient,
            self.created.format("%Y%m%d"),
            self.interchange_reference
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    /// An ORDERS interchange.
    const ORDERS: &[u8] = b"UNA:+.? 'UNB+UNOC:3+9900000000003:500+9900000000010:500+261123:1015+MG42++++++'UNH+1+ORDERS:D:09B:UN:1.4b'BGM+7+D1'UNT+3+1'UNZ+1+MG42'";

    fn day() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 11, 23).unwrap()
    }

    #[test]
    fn names_the_file_as_the_bdew_convention_says() {
        let name = TransferFileName::of_interchange(ORDERS, day()).unwrap();
        assert_eq!(
            name.to_string(),
            "ORDERS__9900000000003_9900000000010_20261123_MG42.txt"
        );
    }

    #[test]
    fn keeps_the_application_reference_of_unb_de0026() {
        let mscons = b"UNB+UNOC:3+9900123400007:500+4012345393651:500+070131:1015+B31++TL'UNH+1+MSCONS:D:04B:UN:2.4c'UNT+2+1'UNZ+1+B31'";
        let name = TransferFileName::of_interchange(mscons, day()).unwrap();
        // The document's own example, with our date.
        assert_eq!(
            name.to_string(),
            "MSCONS_TL_9900123400007_4012345393651_20261123_B31.txt"
        );
    }

    #[test]
    fn refuses_a_reference_with_an_underscore() {
        let bad = b"UNB+UNOC:3+9900000000003:500+9900000000010:500+261123:1015+MG_1'UNH+1+ORDERS:D:09B:UN:1.4b'UNT+2+1'UNZ+1+MG_1'";
        assert_eq!(
            TransferFileName::of_interchange(bad, day()),
            Err(FileNameError::UnsafeCharacter {
                part: "UNB DE0020",
                value: "MG_1".into()
            })
        );
    }

    #[test]
    fn refuses_mixed_message_types() {
        let mixed = b"UNB+UNOC:3+9900000000003:500+9900000000010:500+261123:1015+MG1'UNH+1+ORDERS:D:09B:UN:1.4b'UNT+2+1'UNH+2+UTILMD:D:11A:UN:S2.1'UNT+2+2'UNZ+2+MG1'";
        assert!(matches!(
            TransferFileName::of_interchange(mixed, day()),
            Err(FileNameError::MixedMessageTypes { .. })
        ));
    }
}
