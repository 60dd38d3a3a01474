//! Partner-specific statuses of a meter order. The wMSB's site check (`check_submitted`,
//! `check_reviewed`) and the meter's activation (`activated`) have no BDEW market message:
//! WiM Teil 1 §3.3.2 ends the iMSys order process with the installation (the metering
//! operator's master data, UTILMD 55653) or its failure (IFTSTA 21025). No IFTSTA a supplier
//! receives refers to an iMSys order either: the ones naming an order (`RFF+AGI`, IFTSTA 21043
//! and 21044) answer configuration orders (GPKE Teil 3). A partner that reports these
//! milestones anyway does so by a bilateral use of such a status — so which status means which
//! milestone is configured per partner, never inferred, and only where the AHB allows the
//! status towards a supplier at all.

use serde::{Deserialize, Serialize};

use super::answers::{StatusReport, STATUS_REPORT_PIDS};
use super::lifecycle::MeterStatus;
use crate::ids::MarketPartnerId;

/// One configured meaning: "status `code` in `message` (PID `pid`) from this partner means
/// milestone `status`".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartnerStatusRule {
    /// The message type carrying the status (`IFTSTA`).
    pub message: String,
    /// The PID of the status (SG15 RFF+Z13); `None` matches any.
    pub pid: Option<u32>,
    /// `STS` DE4405 (e.g. `Z43`), or DE4405 and DE9013 joined by `:` (e.g. `Z32:A02`).
    pub code: String,
    /// The milestone it means.
    pub status: MeterStatus,
}

/// Why a configured rule is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PartnerStatusError {
    /// Only milestones without a market message can be configured.
    #[error(
        "status {0:?} cannot come from a partner status: only check_submitted, check_reviewed and activated can (the others have market messages)"
    )]
    NotConfigurable(String),
    /// Only IFTSTA carries partner statuses.
    #[error("message {0:?} carries no status reports: use IFTSTA")]
    UnknownMessage(String),
    /// The code is empty.
    #[error("empty status code")]
    EmptyCode,
    /// The PID names no order (`RFF+AGI`), or has a market meaning of its own.
    #[error(
        "IFTSTA {0} cannot carry a partner status of a meter order: only 21043 and 21044 name an order (RFF+AGI); 21025 means the change failed, 21047 names a UTILMD's Vorgangsnummer (RFF+ACW)"
    )]
    NoOrderReference(u32),
    /// A status the AHB sends only to a metering operator, never to a supplier.
    #[error(
        "status {0} of IFTSTA 21043 (erfolgreich/gescheitert) is only sent to a metering operator (AHB IFTSTA [117]), never to a supplier"
    )]
    OnlyTowardsMeteringOperator(String),
}

/// The configured rules of every partner.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PartnerStatusRules {
    rules: Vec<(MarketPartnerId, PartnerStatusRule)>,
}

impl PartnerStatusRules {
    /// Adds the rules of `partner`, refusing milestones that have a market message (placed,
    /// scheduled, installed, cancelled come from ORDERS/ORDRSP/UTILMD and are not
    /// overridable).
    pub fn add(
        &mut self,
        partner: MarketPartnerId,
        rule: PartnerStatusRule,
    ) -> Result<(), PartnerStatusError> {
        if !matches!(
            rule.status,
            MeterStatus::CheckSubmitted | MeterStatus::CheckReviewed | MeterStatus::Activated
        ) {
            let name = serde_json::to_value(rule.status)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default();
            return Err(PartnerStatusError::NotConfigurable(name));
        }
        if !rule.message.eq_ignore_ascii_case("IFTSTA") {
            return Err(PartnerStatusError::UnknownMessage(rule.message));
        }
        if rule.code.trim().is_empty() {
            return Err(PartnerStatusError::EmptyCode);
        }
        if let Some(pid) = rule.pid.filter(|p| !STATUS_REPORT_PIDS.contains(p)) {
            return Err(PartnerStatusError::NoOrderReference(pid));
        }
        let status = rule.code.split(':').next().unwrap_or_default();
        if matches!(status, "Z13" | "Z14") {
            return Err(PartnerStatusError::OnlyTowardsMeteringOperator(
                status.to_string(),
            ));
        }
        self.rules.push((partner, rule));
        Ok(())
    }

    /// The milestone a status report from `partner` means, if one is configured. The most
    /// specific rule wins: with PID and DE9013 before PID only before any PID.
    pub fn milestone(&self, partner: &str, report: &StatusReport) -> Option<MeterStatus> {
        self.rules
            .iter()
            .filter(|(p, _)| p.as_str() == partner)
            .filter_map(|(_, rule)| {
                let pid_matches = rule.pid.is_none_or(|pid| pid == report.pid);
                let (status, code) = match rule.code.split_once(':') {
                    Some((s, c)) => (s, Some(c)),
                    None => (rule.code.as_str(), None),
                };
                let code_matches = status == report.status && code.is_none_or(|c| c == report.code);
                (pid_matches && code_matches).then_some((
                    usize::from(rule.pid.is_some()) + 2 * usize::from(code.is_some()),
                    rule.status,
                ))
            })
            .max_by_key(|(specificity, _)| *specificity)
            .map(|(_, status)| status)
    }

    /// Whether any rule is configured for `partner`.
    pub fn knows(&self, partner: &str) -> bool {
        self.rules.iter().any(|(p, _)| p.as_str() == partner)
    }

    /// The IFTSTA PIDs a rule reads: its own, or every PID that names an order.
    pub fn pids_of(rule: &PartnerStatusRule) -> Vec<u32> {
        rule.pid
            .map_or_else(|| STATUS_REPORT_PIDS.to_vec(), |pid| vec![pid])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(pid: u32, status: &str, code: &str) -> StatusReport {
        StatusReport {
            pid,
            order_document: "ORD1".into(),
            category: "Z21".into(),
            status: status.into(),
            code: code.into(),
            decision_tree: "E_0529".into(),
            changed_at: None,
            text: None,
        }
    }

    fn wmsb() -> MarketPartnerId {
        "9900000000003".parse::<MarketPartnerId>().unwrap()
    }

    fn rule(pid: Option<u32>, code: &str, status: MeterStatus) -> PartnerStatusRule {
        PartnerStatusRule {
            message: "IFTSTA".into(),
            pid,
            code: code.into(),
            status,
        }
    }

    #[test]
    fn the_most_specific_rule_of_the_partner_wins() {
        let mut rules = PartnerStatusRules::default();
        rules
            .add(wmsb(), rule(None, "Z43", MeterStatus::CheckSubmitted))
            .unwrap();
        rules
            .add(
                wmsb(),
                rule(Some(21043), "Z43:A02", MeterStatus::CheckReviewed),
            )
            .unwrap();
        rules
            .add(wmsb(), rule(Some(21044), "105", MeterStatus::Activated))
            .unwrap();
        let p = wmsb();
        assert_eq!(
            rules.milestone(p.as_str(), &report(21043, "Z43", "A02")),
            Some(MeterStatus::CheckReviewed)
        );
        assert_eq!(
            rules.milestone(p.as_str(), &report(21043, "Z43", "A01")),
            Some(MeterStatus::CheckSubmitted)
        );
        assert_eq!(
            rules.milestone(p.as_str(), &report(21044, "105", "A01")),
            Some(MeterStatus::Activated)
        );
        assert_eq!(
            rules.milestone(p.as_str(), &report(21043, "105", "A01")),
            None
        );
        assert_eq!(
            rules.milestone("9900000000011", &report(21043, "Z43", "A02")),
            None,
            "another partner's statuses mean nothing"
        );
    }

    #[test]
    fn milestones_with_a_market_message_cannot_be_configured() {
        let mut rules = PartnerStatusRules::default();
        for status in [
            MeterStatus::Created,
            MeterStatus::Placed,
            MeterStatus::Scheduled,
            MeterStatus::Installed,
            MeterStatus::Cancelled,
        ] {
            assert!(matches!(
                rules.add(wmsb(), rule(None, "Z14", status)),
                Err(PartnerStatusError::NotConfigurable(_))
            ));
        }
        let mut utilmd = rule(None, "Z14", MeterStatus::Activated);
        utilmd.message = "UTILMD".into();
        assert_eq!(
            rules.add(wmsb(), utilmd),
            Err(PartnerStatusError::UnknownMessage("UTILMD".into()))
        );
        assert_eq!(
            rules.add(wmsb(), rule(None, " ", MeterStatus::Activated)),
            Err(PartnerStatusError::EmptyCode)
        );
        assert!(!rules.knows(wmsb().as_str()));
    }

    /// IFTSTA 21043 `Z14` ("erfolgreich") was configured as the meter's activation in the
    /// tests' partner set-up; the AHB sends Z13/Z14 of 21043 only to a metering operator
    /// (\[117\]), and 21039/21025/21047 name no order by RFF+AGI.
    #[test]
    fn regression_statuses_the_ahb_never_sends_a_supplier_cannot_be_configured() {
        let mut rules = PartnerStatusRules::default();
        for code in ["Z14", "Z13", "Z14:A02"] {
            assert_eq!(
                rules.add(wmsb(), rule(Some(21043), code, MeterStatus::Activated)),
                Err(PartnerStatusError::OnlyTowardsMeteringOperator(
                    code[..3].to_string()
                ))
            );
        }
        for pid in [21025, 21039, 21047] {
            assert_eq!(
                rules.add(wmsb(), rule(Some(pid), "Z43", MeterStatus::CheckSubmitted)),
                Err(PartnerStatusError::NoOrderReference(pid))
            );
        }
        assert!(!rules.knows(wmsb().as_str()));
    }
}
