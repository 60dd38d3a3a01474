//! The product rules of §14a grid-fee reductions and smart-meter orders, in one place (the
//! HTTP API and the order logic both call them).
//!
//! Sources: BNetzA BK8-22/010-A (Module 1-3) as summarised in `shared/domain/README.md`;
//! Codeliste der Konfigurationen 1.3c §6.2 (only the combinations Modul 1, Modul 2 and
//! Modul 1+3 can be ordered). Version 1.4 (in force from 2026-10-01) still lists the three
//! module codes; its text and chapter numbers were not readable (see `ModuleProduct`).

use serde::{Deserialize, Serialize};

/// The type of a grid-fee reduction (API: `enwg-14a-module-1|2|3`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum ReductionType {
    /// Modul 1: flat annual reduction.
    #[serde(rename = "enwg-14a-module-1")]
    Module1,
    /// Modul 2: percentage reduction of the energy price; needs a separate metering point.
    #[serde(rename = "enwg-14a-module-2")]
    Module2,
    /// Modul 3: time-variable grid fee; only on top of Modul 1 and only with a smart meter.
    #[serde(rename = "enwg-14a-module-3")]
    Module3,
}

/// The meter at the market location.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MeterType {
    /// An intelligent metering system (iMSys, smart meter gateway).
    Smart,
    /// A conventional or modern meter without gateway.
    Conventional,
}

/// Status of a grid-fee reduction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GridFeeStatus {
    /// Recorded; the subscription is not confirmed yet, nothing sent.
    Intended,
    /// ORDERS 17133 sent to the grid operator.
    Ordered,
    /// The grid operator applies it (`valid_from` set).
    Activated,
    /// The grid operator declined (with its reason).
    Rejected,
    /// No longer applies (`valid_until` set).
    Ended,
}

impl GridFeeStatus {
    /// Intended, ordered and activated reductions are active: a second one of the same type
    /// is refused while one exists; re-ordering after `rejected` or `ended` is allowed.
    pub fn is_active(self) -> bool {
        matches!(
            self,
            GridFeeStatus::Intended | GridFeeStatus::Ordered | GridFeeStatus::Activated
        )
    }
}

/// A product rule a request breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(rename_all = "snake_case")]
pub enum RuleViolation {
    /// Modul 2 cannot be combined with Modul 1 or 3.
    #[error("Modul 2 cannot be combined with Modul 1 or Modul 3")]
    Module2Exclusive,
    /// Modul 3 needs Modul 1 (active, or ordered in the same request).
    #[error("Modul 3 can only be added on top of Modul 1")]
    Module3WithoutModule1,
    /// Modul 3 needs a smart meter.
    #[error("Modul 3 needs a smart meter (iMSys)")]
    Module3WithoutSmartMeter,
    /// The same type is already active for the subscription.
    #[error("a reduction of this type is already active for the subscription")]
    DuplicateActive,
    /// A subscription gets at most one meter order, ever.
    #[error("the subscription already has a meter order")]
    SecondMeterOrder,
}

/// An existing reduction of the subscription, as the rules see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Existing {
    /// Its type.
    pub reduction_type: ReductionType,
    /// Its status.
    pub status: GridFeeStatus,
}

/// Checks a request for new reductions (one or more types at once, e.g. Modul 1 and 3)
/// against the subscription's existing ones and its meter. Returns every rule broken.
pub fn check_new_reductions(
    existing: &[Existing],
    requested: &[ReductionType],
    meter: MeterType,
) -> Result<(), Vec<RuleViolation>> {
    let mut broken = Vec::new();
    let active: Vec<ReductionType> = existing
        .iter()
        .filter(|e| e.status.is_active())
        .map(|e| e.reduction_type)
        .collect();
    let has = |t: ReductionType| active.contains(&t) || requested.contains(&t);
    for t in requested {
        if active.contains(t) || requested.iter().filter(|r| *r == t).count() > 1 {
            broken.push(RuleViolation::DuplicateActive);
        }
    }
    if has(ReductionType::Module2) && (has(ReductionType::Module1) || has(ReductionType::Module3)) {
        broken.push(RuleViolation::Module2Exclusive);
    }
    if requested.contains(&ReductionType::Module3) {
        if !has(ReductionType::Module1) {
            broken.push(RuleViolation::Module3WithoutModule1);
        }
        if meter != MeterType::Smart {
            broken.push(RuleViolation::Module3WithoutSmartMeter);
        }
    }
    broken.dedup();
    if broken.is_empty() {
        Ok(())
    } else {
        Err(broken)
    }
}

/// At most one meter order per subscription, ever (whatever became of the first).
pub fn check_new_meter_order(existing_orders: usize) -> Result<(), RuleViolation> {
    if existing_orders == 0 {
        Ok(())
    } else {
        Err(RuleViolation::SecondMeterOrder)
    }
}

/// The product ordered with ORDERS 17133: `PIA+5+9991000002496:Z11` ("Netzentgelte aufgrund
/// netzorientierter Steuerung") with `CAV+ZH9:::<code>` (Codeliste der Konfigurationen 1.3c
/// §6.2). Only these three combinations exist: Modul 3 alone and 2+3 cannot be ordered.
///
/// Codeliste der Konfigurationen 1.4 (FV2610): the codes 9991000002579, …2587 and …2595 are in
/// it, and no code of that family was added (the 13-digit codes of 1.3c and 1.4 as extracted
/// from the BDEW PDFs in sh-prog-edi/EdifactGenerator `_engine/daten/codelisten.js`,
/// `konfigurationen_202604` / `konfigurationen_202610`, commit bca06f9; 1.4 drops
/// 9991000002454, …2462, …2470, …2488 and adds 21 codes, none of them ours). The product code
/// 9991000002496 and the meaning of each code could not be checked in that extraction (it
/// misses 9991000002496 in 1.3c as well); AHB ORDERS 1.1b keeps `PIA+5` with `[158]` in 17133.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModuleProduct {
    /// `9991000002579` pauschale Netzentgeltreduzierung (Modul 1).
    Module1,
    /// `9991000002587` prozentuale Reduzierung des Arbeitspreises (Modul 2).
    Module2,
    /// `9991000002595` Anreizmodul zeitvariables Netzentgelt (Modul 1 und Modul 3).
    Module1And3,
}

/// `PIA+5` product code of the §14a products.
pub const PRODUCT_14A: &str = "9991000002496";

impl ModuleProduct {
    /// The `CAV+ZH9` property code.
    pub fn code(self) -> &'static str {
        match self {
            ModuleProduct::Module1 => "9991000002579",
            ModuleProduct::Module2 => "9991000002587",
            ModuleProduct::Module1And3 => "9991000002595",
        }
    }

    /// Reads a `CAV+ZH9` property code.
    pub fn from_code(code: &str) -> Option<ModuleProduct> {
        Some(match code {
            "9991000002579" => ModuleProduct::Module1,
            "9991000002587" => ModuleProduct::Module2,
            "9991000002595" => ModuleProduct::Module1And3,
            _ => return None,
        })
    }

    /// The reduction types a product grants.
    pub fn types(self) -> &'static [ReductionType] {
        match self {
            ModuleProduct::Module1 => &[ReductionType::Module1],
            ModuleProduct::Module2 => &[ReductionType::Module2],
            ModuleProduct::Module1And3 => &[ReductionType::Module1, ReductionType::Module3],
        }
    }

    /// The product to order so that `wanted` types apply, given the `active` ones: Modul 3 is
    /// added to an active Modul 1 by ordering "Modul 1 und Modul 3"; ending Modul 3 while
    /// keeping Modul 1 is ordering "Modul 1". `None` for combinations that cannot be ordered.
    pub fn for_types(wanted: &[ReductionType], active: &[ReductionType]) -> Option<ModuleProduct> {
        let all = |t: ReductionType| wanted.contains(&t) || active.contains(&t);
        match (
            all(ReductionType::Module1),
            all(ReductionType::Module2),
            all(ReductionType::Module3),
        ) {
            (true, false, true) => Some(ModuleProduct::Module1And3),
            (true, false, false) => Some(ModuleProduct::Module1),
            (false, true, false) => Some(ModuleProduct::Module2),
            _ => None,
        }
    }
}

/// Most characters of the contact's name: ORDERS MIG 1.4b SG5 `CTA` DE3412 an..256.
pub const CONTACT_NAME_MAX: usize = 256;

/// Most characters of the contact's e-mail address: RFC 5321 §4.5.3.1.3 allows a path of 256
/// octets with its angle brackets, so an address has at most 254 (the MIG's COM DE3148 an..512
/// would allow more than any mail server takes).
pub const CONTACT_EMAIL_MAX: usize = 254;

/// Most digits of a telephone number after the `+`: ITU-T E.164 numbers have at most 15.
pub const CONTACT_PHONE_DIGITS_MAX: usize = 15;

/// The end customer's contact, sent with the iMSys order so that the metering operator can
/// agree the installation appointment with the customer: ORDERS 17011 `NAD+Z09` "Kunde des
/// LF" with SG5 `CTA+IC+:<name>` and one `COM` per channel (AHB ORDERS 1.1a, FV2604, SG2
/// "Kunde des Lieferanten" Kann \[182\] ∧ \[6\] ∧ \[570\]: "zur Angabe von Kontaktdaten des Kunden
/// des Lieferanten um die Änderung an der Technik zu vereinfachen"; the same group in
/// edi-energy's FV2610 profile of 17011).
///
/// Made only by [`CustomerContact::new`] (and read back from the store through it), so that a
/// value of this type always fits the message: a name of at most 256 characters ISO 8859-1 can
/// carry, at least one channel, an e-mail address with `@` and `.` (AHB \[939\]), telephone
/// numbers as `+` and digits only (AHB \[940\]); no control characters anywhere.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "ContactFields", into = "ContactFields")]
pub struct CustomerContact {
    name: String,
    email: Option<String>,
    phone: Option<String>,
    mobile: Option<String>,
}

/// The fields of a [`CustomerContact`] as given, before they are checked (the API's and the
/// store's JSON shape).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContactFields {
    /// The person to ask for (CTA DE3412).
    pub name: String,
    /// E-mail address (COM …:EM).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Telephone (COM …:TE), `+` and digits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    /// Mobile telephone (COM …:AL), `+` and digits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mobile: Option<String>,
}

/// Why a customer contact cannot be sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ContactError {
    /// The name is empty (CTA DE3412 is required in the group).
    #[error("name must not be empty")]
    EmptyName,
    /// A value is longer than allowed.
    #[error("{field} has {found} characters; at most {max} are allowed")]
    TooLong {
        /// `name` or `email`.
        field: &'static str,
        /// The limit.
        max: usize,
        /// The length given.
        found: usize,
    },
    /// A control character (line breaks included) in a value.
    #[error("{field} contains a control character at character {position}")]
    ControlCharacter {
        /// The field.
        field: &'static str,
        /// Its position (from 1).
        position: usize,
    },
    /// A character the interchange's character set (UNOC, ISO 8859-1) cannot carry.
    #[error("{field} contains {character:?}, which ISO 8859-1 (UNOC) cannot carry")]
    NotLatin1 {
        /// The field.
        field: &'static str,
        /// The character.
        character: char,
    },
    /// Not an e-mail address (AHB \[939\]: contains `@` and `.`).
    #[error("email must be an address such as name@example.de, without spaces")]
    BadEmail,
    /// Not a telephone number in the form the AHB asks for.
    #[error("{field} must be + followed by 1 to 15 digits, such as +4930123456 (AHB [940])")]
    BadPhone {
        /// `phone` or `mobile`.
        field: &'static str,
    },
    /// Neither e-mail nor telephone: the group's COM is required.
    #[error("give at least one of email, phone and mobile")]
    NoChannel,
}

impl ContactError {
    /// The field the problem is about (`name`, `email`, `phone`, `mobile`; `email` also when
    /// no channel is given).
    pub fn field(&self) -> &'static str {
        match self {
            ContactError::EmptyName => "name",
            ContactError::TooLong { field, .. }
            | ContactError::ControlCharacter { field, .. }
            | ContactError::NotLatin1 { field, .. }
            | ContactError::BadPhone { field } => field,
            ContactError::BadEmail | ContactError::NoChannel => "email",
        }
    }
}

/// Control characters and characters outside ISO 8859-1 in `value`.
fn text_problems(field: &'static str, value: &str, errors: &mut Vec<ContactError>) {
    if let Some(position) = value.chars().position(char::is_control) {
        errors.push(ContactError::ControlCharacter {
            field,
            position: position + 1,
        });
    }
    if let Some(character) = value.chars().find(|c| {
        !c.is_control()
            && crate::edifact::Charset::Unoc
                .encode(c.encode_utf8(&mut [0; 4]))
                .is_err()
    }) {
        errors.push(ContactError::NotLatin1 { field, character });
    }
}

fn phone_problems(field: &'static str, value: &str, errors: &mut Vec<ContactError>) {
    let digits = value.strip_prefix('+').unwrap_or("");
    if digits.is_empty()
        || digits.len() > CONTACT_PHONE_DIGITS_MAX
        || !digits.bytes().all(|b| b.is_ascii_digit())
    {
        errors.push(ContactError::BadPhone { field });
    }
}

impl CustomerContact {
    /// Checks `fields` and returns every problem at once. The name is trimmed; empty optional
    /// values count as absent.
    pub fn new(fields: ContactFields) -> Result<CustomerContact, Vec<ContactError>> {
        let mut errors = Vec::new();
        let given = |v: Option<String>| v.filter(|s| !s.is_empty());
        let name = fields.name.trim().to_string();
        let (email, phone, mobile) = (
            given(fields.email),
            given(fields.phone),
            given(fields.mobile),
        );
        if name.is_empty() {
            errors.push(ContactError::EmptyName);
        }
        let length = name.chars().count();
        if length > CONTACT_NAME_MAX {
            errors.push(ContactError::TooLong {
                field: "name",
                max: CONTACT_NAME_MAX,
                found: length,
            });
        }
        text_problems("name", &name, &mut errors);
        if let Some(email) = &email {
            let length = email.chars().count();
            if length > CONTACT_EMAIL_MAX {
                errors.push(ContactError::TooLong {
                    field: "email",
                    max: CONTACT_EMAIL_MAX,
                    found: length,
                });
            }
            text_problems("email", email, &mut errors);
            let well_formed = match email.split_once('@') {
                Some((local, domain)) => {
                    !local.is_empty()
                        && !domain.contains('@')
                        && domain.contains('.')
                        && !domain.starts_with('.')
                        && !domain.ends_with('.')
                        && !email.chars().any(char::is_whitespace)
                }
                None => false,
            };
            if !well_formed {
                errors.push(ContactError::BadEmail);
            }
        }
        if let Some(phone) = &phone {
            phone_problems("phone", phone, &mut errors);
        }
        if let Some(mobile) = &mobile {
            phone_problems("mobile", mobile, &mut errors);
        }
        if email.is_none() && phone.is_none() && mobile.is_none() {
            errors.push(ContactError::NoChannel);
        }
        if errors.is_empty() {
            Ok(CustomerContact {
                name,
                email,
                phone,
                mobile,
            })
        } else {
            Err(errors)
        }
    }

    /// The person to ask for.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The channels as `COM` writes them: (address, DE3155 code), e-mail `EM`, telephone `TE`,
    /// mobile `AL`; each code at most once (AHB \[1P0..1\]).
    pub fn channels(&self) -> Vec<(&str, &'static str)> {
        [
            (self.email.as_deref(), "EM"),
            (self.phone.as_deref(), "TE"),
            (self.mobile.as_deref(), "AL"),
        ]
        .into_iter()
        .filter_map(|(value, code)| value.map(|v| (v, code)))
        .collect()
    }
}

impl TryFrom<ContactFields> for CustomerContact {
    type Error = String;

    fn try_from(fields: ContactFields) -> Result<CustomerContact, String> {
        CustomerContact::new(fields).map_err(|errors| {
            errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ")
        })
    }
}

impl From<CustomerContact> for ContactFields {
    fn from(contact: CustomerContact) -> ContactFields {
        ContactFields {
            name: contact.name,
            email: contact.email,
            phone: contact.phone,
            mobile: contact.mobile,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ReductionType::*;

    fn active(t: ReductionType) -> Existing {
        Existing {
            reduction_type: t,
            status: GridFeeStatus::Activated,
        }
    }

    /// name, existing reductions, requested types, meter, expected result
    type Case = (
        &'static str,
        Vec<Existing>,
        Vec<ReductionType>,
        MeterType,
        Result<(), Vec<RuleViolation>>,
    );

    #[test]
    fn the_table_of_wrong_orders() {
        let cases: &[Case] = &[
            (
                "Modul 1 alone",
                vec![],
                vec![Module1],
                MeterType::Conventional,
                Ok(()),
            ),
            (
                "Modul 2 with Modul 1 active",
                vec![active(Module1)],
                vec![Module2],
                MeterType::Smart,
                Err(vec![RuleViolation::Module2Exclusive]),
            ),
            (
                "Modul 1 with Modul 2 active",
                vec![active(Module2)],
                vec![Module1],
                MeterType::Smart,
                Err(vec![RuleViolation::Module2Exclusive]),
            ),
            (
                "Modul 2 and 3 together",
                vec![],
                vec![Module2, Module3],
                MeterType::Smart,
                Err(vec![
                    RuleViolation::Module2Exclusive,
                    RuleViolation::Module3WithoutModule1,
                ]),
            ),
            (
                "Modul 3 without Modul 1",
                vec![],
                vec![Module3],
                MeterType::Smart,
                Err(vec![RuleViolation::Module3WithoutModule1]),
            ),
            (
                "Modul 3 on an analog meter",
                vec![active(Module1)],
                vec![Module3],
                MeterType::Conventional,
                Err(vec![RuleViolation::Module3WithoutSmartMeter]),
            ),
            (
                "Modul 3 on top of Modul 1",
                vec![active(Module1)],
                vec![Module3],
                MeterType::Smart,
                Ok(()),
            ),
            (
                "Modul 1 and 3 in one request",
                vec![],
                vec![Module1, Module3],
                MeterType::Smart,
                Ok(()),
            ),
            (
                "second active Modul 1",
                vec![active(Module1)],
                vec![Module1],
                MeterType::Smart,
                Err(vec![RuleViolation::DuplicateActive]),
            ),
            (
                "re-order after rejection",
                vec![Existing {
                    reduction_type: Module1,
                    status: GridFeeStatus::Rejected,
                }],
                vec![Module1],
                MeterType::Smart,
                Ok(()),
            ),
            (
                "re-order after end",
                vec![Existing {
                    reduction_type: Module2,
                    status: GridFeeStatus::Ended,
                }],
                vec![Module1],
                MeterType::Smart,
                Ok(()),
            ),
        ];
        for (name, existing, requested, meter, expected) in cases {
            assert_eq!(
                &check_new_reductions(existing, requested, *meter),
                expected,
                "{name}"
            );
        }
        assert_eq!(check_new_meter_order(0), Ok(()));
        assert_eq!(
            check_new_meter_order(1),
            Err(RuleViolation::SecondMeterOrder)
        );
    }

    fn fields(name: &str, email: Option<&str>, phone: Option<&str>) -> ContactFields {
        ContactFields {
            name: name.into(),
            email: email.map(Into::into),
            phone: phone.map(Into::into),
            mobile: None,
        }
    }

    #[test]
    fn a_customer_contact_is_checked_whole() {
        let ok = CustomerContact::new(fields(
            "  Jörg Schäfer ",
            Some("joerg@example.de"),
            Some("+4930123456"),
        ))
        .unwrap();
        assert_eq!(ok.name(), "Jörg Schäfer");
        assert_eq!(
            ok.channels(),
            [("joerg@example.de", "EM"), ("+4930123456", "TE")]
        );
        let cases: &[(&str, ContactFields, &[&str])] = &[
            ("no channel", fields("A", None, None), &["email"]),
            ("empty name", fields(" ", Some("a@b.de"), None), &["name"]),
            (
                "control character",
                fields("A\nB", Some("a@b.de"), None),
                &["name"],
            ),
            (
                "not Latin-1",
                fields("Łukasz", Some("a@b.de"), None),
                &["name"],
            ),
            (
                "too long",
                fields(&"x".repeat(257), Some("a@b.de"), None),
                &["name"],
            ),
            ("no @", fields("A", Some("ab.de"), None), &["email"]),
            ("no dot", fields("A", Some("a@b"), None), &["email"]),
            ("space", fields("A", Some("a b@c.de"), None), &["email"]),
            (
                "phone with spaces",
                fields("A", None, Some("+49 30 1")),
                &["phone"],
            ),
            (
                "phone without +",
                fields("A", None, Some("030123")),
                &["phone"],
            ),
            (
                "16 digits",
                fields("A", None, Some("+1234567890123456")),
                &["phone"],
            ),
        ];
        for (what, given, problem_fields) in cases {
            let errors = CustomerContact::new(given.clone()).unwrap_err();
            let got: Vec<&str> = errors.iter().map(ContactError::field).collect();
            assert_eq!(&got, problem_fields, "{what}: {errors:?}");
        }
    }

    #[test]
    fn a_stored_contact_is_checked_again_when_read() {
        let json = r#"{"name":"A","email":"a@b.de"}"#;
        let contact: CustomerContact = serde_json::from_str(json).unwrap();
        assert_eq!(serde_json::to_string(&contact).unwrap(), json);
        assert!(serde_json::from_str::<CustomerContact>(r#"{"name":"A"}"#).is_err());
    }

    #[test]
    fn products_for_the_wanted_modules() {
        assert_eq!(
            ModuleProduct::for_types(&[Module3], &[Module1]),
            Some(ModuleProduct::Module1And3)
        );
        assert_eq!(
            ModuleProduct::for_types(&[Module1, Module3], &[]),
            Some(ModuleProduct::Module1And3)
        );
        assert_eq!(
            ModuleProduct::for_types(&[Module2], &[]),
            Some(ModuleProduct::Module2)
        );
        assert_eq!(ModuleProduct::for_types(&[Module3], &[]), None);
        assert_eq!(
            ModuleProduct::from_code("9991000002595"),
            Some(ModuleProduct::Module1And3)
        );
    }
}
