//! `[[partners]]`: one entry per partner with its own settings, and its status rules.

use std::collections::BTreeMap;

use toml::{Table, Value};

use crate::ids::MarketPartnerId;

use super::error::Problem;
use super::reader::{join, Reader};
use super::values::parse_market_partner_id;
use super::{PartnerAs4, PartnerEmail};

/// The statuses a partner status rule may lead to: the meter order steps that have no market
/// message (`orders::MeterStatus` `CheckSubmitted`, `CheckReviewed`, `Activated`).
pub const PARTNER_STATUSES: [&str; 3] = ["check_submitted", "check_reviewed", "activated"];

/// One `[[partners]]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartnerConfig {
    /// `id`: the partner's market partner ID.
    pub id: MarketPartnerId,
    /// `transport`: how we exchange interchanges with the partner.
    pub transport: Transport,
    /// `statuses`: the partner's own status messages that move a meter order on.
    pub statuses: Vec<PartnerStatusRule>,
    /// `email`, `signing_cert`, `encryption_cert`: set when `transport = "email"`.
    pub email: Option<PartnerEmail>,
    /// `as4_url`, `signing_cert`, `encryption_cert`: set when `transport = "as4"`.
    pub as4: Option<PartnerAs4>,
}

/// How interchanges travel to and from a partner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Transport {
    /// Files in `data_dir/outbox/` and `data_dir/inbox/` (default).
    File,
    /// E-mail with S/MIME: SMTP out, IMAP in (needs `[email]` and the partner's address and
    /// certificates).
    Email,
    /// AS4 per the BDEW profile (needs `[as4]` and the partner's endpoint and certificates).
    As4,
}

/// A partner-specific status message that moves a meter order to a step without a market
/// message (`check_submitted`, `check_reviewed`, `activated`). Plain data: the inbound path
/// matches the message type, PID and status code of a received message against these rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartnerStatusRule {
    /// The EDIFACT message type (UNH S009 0065), e.g. `IFTSTA`.
    pub message: String,
    /// The Prüfidentifikator (RFF+Z13), when the rule applies to one PID only.
    pub pid: Option<u32>,
    /// The partner's status code, e.g. `Z07`.
    pub code: String,
    /// The meter order status it means: one of [`PARTNER_STATUSES`].
    pub status: String,
}

impl Reader<'_> {
    pub(super) fn partners(&mut self, root: &mut Table) -> Vec<PartnerConfig> {
        let entries = match root.remove("partners") {
            None => return Vec::new(),
            Some(Value::Array(entries)) => entries,
            Some(other) => {
                self.wrong_type(
                    "partners".into(),
                    &other,
                    "an array of tables ([[partners]])",
                );
                return Vec::new();
            }
        };
        let mut partners: Vec<PartnerConfig> = Vec::new();
        let mut first_index: BTreeMap<String, usize> = BTreeMap::new();
        for (i, entry) in entries.into_iter().enumerate() {
            let prefix = format!("partners[{i}]");
            let mut t = match entry {
                Value::Table(t) => t,
                other => {
                    self.wrong_type(prefix, &other, "a table");
                    continue;
                }
            };
            let id_path = join(&prefix, "id");
            let id_written = t.contains_key("id");
            let id = match self.string(&mut t, &prefix, "id") {
                None if !id_written => {
                    self.push(
                        id_path.clone(),
                        None,
                        Problem::Missing {
                            reason: "every [[partners]] entry names its market partner ID",
                        },
                    );
                    None
                }
                None => None,
                Some(s) => match parse_market_partner_id(&s) {
                    Ok(id) => {
                        if let Some(first) = first_index.get(id.as_str()) {
                            self.push(
                                id_path.clone(),
                                Some(format!("{s:?}")),
                                Problem::Invalid {
                                    reason: format!("already configured in partners[{first}]"),
                                },
                            );
                        } else {
                            first_index.insert(id.as_str().to_string(), i);
                        }
                        Some(id)
                    }
                    Err(reason) => {
                        self.push(
                            id_path.clone(),
                            Some(format!("{s:?}")),
                            Problem::Invalid { reason },
                        );
                        None
                    }
                },
            };
            let transport_path = join(&prefix, "transport");
            let transport = match self.string(&mut t, &prefix, "transport").as_deref() {
                None | Some("file") => Some(Transport::File),
                Some("email") => Some(Transport::Email),
                Some("as4") => Some(Transport::As4),
                Some(other) => {
                    self.push(
                        transport_path,
                        Some(format!("{other:?}")),
                        Problem::Invalid {
                            reason: "must be \"file\", \"email\" or \"as4\"".into(),
                        },
                    );
                    None
                }
            };
            let statuses = self.status_rules(&mut t, &prefix);
            let email = self.partner_email(&mut t, &prefix, transport);
            let as4 = self.partner_as4(&mut t, &prefix, transport);
            self.unknown_keys(
                t,
                &prefix,
                &[
                    "id",
                    "transport",
                    "statuses",
                    "email",
                    "signing_cert",
                    "encryption_cert",
                    "as4_url",
                ],
            );
            if let (Some(id), Some(transport)) = (id, transport) {
                partners.push(PartnerConfig {
                    id,
                    transport,
                    statuses,
                    email,
                    as4,
                });
            }
        }
        partners
    }

    fn status_rules(&mut self, partner: &mut Table, prefix: &str) -> Vec<PartnerStatusRule> {
        let rules = match partner.remove("statuses") {
            None => return Vec::new(),
            Some(Value::Array(rules)) => rules,
            Some(other) => {
                self.wrong_type(join(prefix, "statuses"), &other, "an array of tables");
                return Vec::new();
            }
        };
        let mut out: Vec<PartnerStatusRule> = Vec::new();
        for (i, rule) in rules.into_iter().enumerate() {
            let prefix = format!("{prefix}.statuses[{i}]");
            let mut t = match rule {
                Value::Table(t) => t,
                other => {
                    self.wrong_type(prefix, &other, "a table {message, pid, code, status}");
                    continue;
                }
            };
            let mut required = |r: &mut Self, key: &str, check: fn(&str) -> Result<(), String>| {
                let path = join(&prefix, key);
                let had_error = r.errors.len();
                match r.string(&mut t, &prefix, key) {
                    Some(s) => match check(&s) {
                        Ok(()) => Some(s),
                        Err(reason) => {
                            r.push(path, Some(format!("{s:?}")), Problem::Invalid { reason });
                            None
                        }
                    },
                    None => {
                        if r.errors.len() == had_error {
                            r.push(
                                path,
                                None,
                                Problem::Missing {
                                    reason: "a status rule has message, code and status",
                                },
                            );
                        }
                        None
                    }
                }
            };
            let message = required(self, "message", check_message_type);
            let code = required(self, "code", check_status_code);
            let status = required(self, "status", check_partner_status);
            let pid = self.integer::<i64>(&mut t, &prefix, "pid", 10_000, 99_999);
            self.unknown_keys(t, &prefix, &["message", "pid", "code", "status"]);
            let (Some(message), Some(code), Some(status)) = (message, code, status) else {
                continue;
            };
            let pid = pid.map(|p| u32::try_from(p).expect("range checked above"));
            if let Some(j) = out
                .iter()
                .position(|o| o.message == message && o.pid == pid && o.code == code)
            {
                self.push(
                    join(&prefix, "code"),
                    Some(format!("{code:?}")),
                    Problem::Invalid {
                        reason: format!(
                            "the same message, pid and code are already mapped by statuses[{j}]"
                        ),
                    },
                );
                continue;
            }
            out.push(PartnerStatusRule {
                message,
                pid,
                code,
                status,
            });
        }
        out
    }
}

fn check_message_type(s: &str) -> Result<(), String> {
    if s.len() == 6 && s.bytes().all(|b| b.is_ascii_uppercase()) {
        Ok(())
    } else {
        Err("must be an EDIFACT message type: six upper-case letters such as IFTSTA".into())
    }
}

/// A status code (STS DE4405), or DE4405 and DE9013 joined by `:` (`Z43:A02`), as
/// `orders::PartnerStatusRule` reads it.
fn check_status_code(s: &str) -> Result<(), String> {
    let code = |c: &str| {
        !c.is_empty()
            && c.len() <= 35
            && c.bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
    };
    let fits = match s.split_once(':') {
        Some((status, step)) => code(status) && code(step),
        None => code(s),
    };
    if fits {
        Ok(())
    } else {
        Err(
            "must be a code of 1 to 35 upper-case letters and digits, such as Z07, or two \
             joined by `:` (STS DE4405:DE9013, such as Z43:A02)"
                .into(),
        )
    }
}

fn check_partner_status(s: &str) -> Result<(), String> {
    if PARTNER_STATUSES.contains(&s) {
        Ok(())
    } else {
        Err(format!("must be one of {}", PARTNER_STATUSES.join(", ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::{errors, load};

    #[test]
    fn partners_with_transport_and_status_rules() {
        let c = load(
            r#"
[[partners]]
id = "9903829000006"
statuses = [
    { message = "IFTSTA", pid = 21039, code = "Z07", status = "check_submitted" },
    { message = "IFTSTA", code = "Z09", status = "activated" },
]
[[partners]]
id = "9904292000003"
transport = "file"
"#,
        )
        .unwrap();
        assert_eq!(c.partners.len(), 2);
        let msb: MarketPartnerId = "9903829000006".parse().unwrap();
        assert_eq!(c.transport_for(&msb), Transport::File);
        assert_eq!(
            c.partner(&msb).unwrap().statuses,
            [
                PartnerStatusRule {
                    message: "IFTSTA".into(),
                    pid: Some(21039),
                    code: "Z07".into(),
                    status: "check_submitted".into(),
                },
                PartnerStatusRule {
                    message: "IFTSTA".into(),
                    pid: None,
                    code: "Z09".into(),
                    status: "activated".into(),
                },
            ]
        );
        let unknown: MarketPartnerId = "9900269000000".parse().unwrap();
        assert_eq!(c.partner(&unknown), None);
        assert_eq!(c.transport_for(&unknown), Transport::File);
    }

    #[test]
    fn partner_ids_are_checked_required_and_unique() {
        assert_eq!(
            errors(
                "[[partners]]\nid = \"9904292000004\"\n[[partners]]\ntransport = \"file\"\n\
                 [[partners]]\nid = \"9903829000006\"\n[[partners]]\nid = \"9903829000006\"\n"
            ),
            [
                "partners[0].id = \"9904292000004\": check digit matches neither the BDEW/DVGW nor the GS1 procedure",
                "partners[1].id: missing: every [[partners]] entry names its market partner ID",
                "partners[3].id = \"9903829000006\": already configured in partners[2]",
            ]
        );
    }

    #[test]
    fn status_rules_are_checked_field_by_field() {
        assert_eq!(
            errors(
                r#"
[[partners]]
id = "9903829000006"
statuses = [
    { message = "iftsta", pid = 210390, code = "Z 7", status = "installed" },
    { message = "IFTSTA", status = "activated" },
    { message = "IFTSTA", code = "Z07", status = "activated" },
    { message = "IFTSTA", code = "Z07", status = "check_reviewed" },
    "Z07",
]
"#
            ),
            [
                "partners[0].statuses[0].message = \"iftsta\": must be an EDIFACT message type: six upper-case letters such as IFTSTA",
                "partners[0].statuses[0].code = \"Z 7\": must be a code of 1 to 35 upper-case letters and digits, such as Z07, or two joined by `:` (STS DE4405:DE9013, such as Z43:A02)",
                "partners[0].statuses[0].status = \"installed\": must be one of check_submitted, check_reviewed, activated",
                "partners[0].statuses[0].pid = 210390: must be between 10000 and 99999",
                "partners[0].statuses[1].code: missing: a status rule has message, code and status",
                "partners[0].statuses[3].code = \"Z07\": the same message, pid and code are already mapped by statuses[0]",
                "partners[0].statuses[4] = \"Z07\": expected a table {message, pid, code, status}, found string",
            ]
        );
    }
}
