//! Everything the daemon builds from its configuration before it touches the store: who we
//! are, the partners' status rules, the e-mail keys and certificates, the AS4 key material,
//! TLS settings and endpoint. Every error of all of them is reported at once
//! ([`Setup::load`]), so that `serve` exits with 64 before it connects or binds anything.
//! Then the workers and the partners' transports are made from it.

use std::sync::Arc;

use serde_json::json;

use crate::clock::Clock;
use crate::config::{Config, ConfigError, ConfigKey, Problem, Transport as PartnerTransport};
use crate::orders::{MeterStatus, PartnerStatusRule, PartnerStatusRules, Sender};
use crate::plan::routing::Route;
use crate::store::Store;
use crate::transport::as4::outbound::As4Sender;
use crate::transport::as4::setup::As4Runtime;
use crate::transport::email::{EmailSender, EmailSetup};
use crate::transport::file_drop::FileDrop;
use crate::worker::inbound::InboundWorker;
use crate::worker::outbound::{OutboundWorker, Transports};
use crate::worker::webhooks::{ClientError, WebhookWorker};
use crate::worker::Leases;

/// What the configuration makes, checked.
#[derive(Debug, Clone)]
pub struct Setup {
    /// Us, as the writer of every interchange.
    pub sender: Sender,
    /// What partners' status reports mean for meter orders.
    pub partner_status: PartnerStatusRules,
    /// How work is leased and retried.
    pub leases: Leases,
    /// Where received messages go.
    pub routing: crate::plan::routing::RoutingTable,
    /// Our e-mail identity and the e-mail partners, with `[email]`.
    pub email: Option<Arc<EmailSetup>>,
    /// The AS4 endpoint, receiver and sender, with `[as4]`.
    pub as4: Option<As4Runtime>,
    /// Lines for the log (e-mail certificates accepted with a warning, e-mail partners whose
    /// mail is not read).
    pub warnings: Vec<String>,
}

/// Turns the configured partner statuses into the domain's rules.
fn partner_status_rules(config: &Config) -> Result<PartnerStatusRules, Vec<ConfigError>> {
    let mut rules = PartnerStatusRules::default();
    let mut errors = Vec::new();
    for (p, partner) in config.partners.iter().enumerate() {
        for (i, s) in partner.statuses.iter().enumerate() {
            let key = format!("partners[{p}].statuses[{i}]");
            let status: MeterStatus = match serde_json::from_value(json!(s.status)) {
                Ok(status) => status,
                Err(_) => {
                    errors.push(ConfigError {
                        key: ConfigKey::File(format!("{key}.status")),
                        value: Some(format!("{:?}", s.status)),
                        problem: Problem::Invalid {
                            reason: "not a meter order status".into(),
                        },
                    });
                    continue;
                }
            };
            let rule = PartnerStatusRule {
                message: s.message.clone(),
                pid: s.pid,
                code: s.code.clone(),
                status,
            };
            // A status report reaches the rules only if the routing table hands its PID to our
            // workflow; IFTSTA 21043/21044 go to the core by default.
            let pids = PartnerStatusRules::pids_of(&rule);
            let routed = pids
                .iter()
                .any(|&pid| config.routing.route("IFTSTA", "", Some(pid)) == Route::Handle);
            if let Err(e) = rules.add(partner.id.clone(), rule) {
                errors.push(ConfigError {
                    key: ConfigKey::File(key),
                    value: None,
                    problem: Problem::Invalid {
                        reason: e.to_string(),
                    },
                });
            } else if !routed {
                let first = pids.first().copied().unwrap_or_default();
                errors.push(ConfigError {
                    key: ConfigKey::File(key),
                    value: None,
                    problem: Problem::Invalid {
                        reason: format!(
                            "IFTSTA {} goes to the supplier core by default (it answers \
                             configuration orders); for this rule to apply, route it to the \
                             gateway with [routing] pids = {{ \"{first}\" = \"handle\" }}",
                            pids.iter()
                                .map(ToString::to_string)
                                .collect::<Vec<_>>()
                                .join("/")
                        ),
                    },
                });
            }
        }
    }
    if errors.is_empty() {
        Ok(rules)
    } else {
        Err(errors)
    }
}

/// The warning for e-mail partners whose mail nobody reads: without `[email.imap]` this
/// instance sends to them but never reads what they send (CONTRL, APERAK, answers). Not an
/// error: another instance may read the shared mailbox (the IMAP keyword makes that safe).
fn unread_email_partners(config: &Config) -> Option<String> {
    if config.email.as_ref().is_some_and(|e| e.imap.is_some()) {
        return None;
    }
    let unread: Vec<&str> = config
        .partners
        .iter()
        .filter(|p| p.transport == PartnerTransport::Email)
        .map(|p| p.id.as_str())
        .collect();
    (!unread.is_empty()).then(|| {
        format!(
            "partner(s) {} use transport = \"email\" but [email.imap] is not configured: \
             their mail (CONTRL, APERAK, answers) is never read by this instance; configure \
             [email.imap] unless another instance reads that mailbox",
            unread.join(", ")
        )
    })
}

impl Setup {
    /// Checks and builds everything `config` names, reading the key and certificate files;
    /// every error at once. Touches neither the store nor the network.
    pub fn load(config: &Config, clock: &Clock) -> Result<Setup, Vec<ConfigError>> {
        let mut errors = Vec::new();
        let partner_status = partner_status_rules(config)
            .map_err(|e| errors.extend(e))
            .ok();
        let email = EmailSetup::load(config)
            .map_err(|e| errors.extend(e))
            .ok()
            .flatten();
        let as4 = As4Runtime::load(config, clock.clone())
            .map_err(|e| errors.extend(e))
            .ok()
            .flatten();
        let (Some(partner_status), true) = (partner_status, errors.is_empty()) else {
            return Err(errors);
        };
        let mut warnings = email
            .as_ref()
            .map(|e| e.warnings.clone())
            .unwrap_or_default();
        warnings.extend(unread_email_partners(config));
        Ok(Setup {
            sender: Sender {
                id: config.own_id.clone(),
                contact_name: None,
                contact_email: None,
            },
            partner_status,
            leases: Leases::of(config),
            routing: config.routing.clone(),
            email: email.map(Arc::new),
            as4,
            warnings,
        })
    }

    /// The transport of every configured partner (`transport` in `[[partners]]`), the file
    /// drop into `config`'s outbox for everyone else.
    pub fn transports(&self, config: &Config, store: &Store) -> Transports {
        let mut transports = Transports::new(Arc::new(FileDrop::new(config.outbox_dir())));
        let email = self
            .email
            .clone()
            .map(|setup| Arc::new(EmailSender::new(setup)));
        let as4 = self.as4.as_ref().map(|runtime| {
            Arc::new(As4Sender::new(
                runtime.endpoint.clone(),
                store.clone(),
                config.own_id.clone(),
            ))
        });
        for partner in &config.partners {
            match config.transport_for(&partner.id) {
                PartnerTransport::Email => {
                    if let Some(email) = &email {
                        transports = transports.with(partner.id.as_str(), email.clone());
                    }
                }
                PartnerTransport::As4 => {
                    if let Some(as4) = &as4 {
                        transports = transports.with(partner.id.as_str(), as4.clone());
                    }
                }
                PartnerTransport::File => {}
            }
        }
        transports
    }

    /// An inbound worker named `name`.
    pub fn inbound_worker(&self, store: &Store, name: &str) -> InboundWorker {
        InboundWorker::new(
            store.clone(),
            name.to_string(),
            self.leases,
            self.sender.clone(),
            self.partner_status.clone(),
        )
        .with_routing(self.routing.clone())
    }

    /// An outbound worker named `name`, sending over the partners' transports.
    pub fn outbound_worker(&self, config: &Config, store: &Store, name: &str) -> OutboundWorker {
        OutboundWorker::new(
            store.clone(),
            name.to_string(),
            self.leases,
            self.sender.clone(),
            self.transports(config, store),
        )
    }

    /// A webhook worker named `name`.
    pub fn webhook_worker(
        &self,
        config: &Config,
        store: &Store,
        name: &str,
    ) -> Result<WebhookWorker, ClientError> {
        WebhookWorker::new(
            store.clone(),
            name.to_string(),
            self.leases,
            config.webhook.clone(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(partner_rules: &str, routing: &str) -> Result<Setup, Vec<ConfigError>> {
        let text = format!(
            "own_id = \"9900000000003\"\n{routing}\n[[partners]]\nid = \"9900000000029\"\nstatuses = [{partner_rules}]\n"
        );
        let config = Config::load(Some(&text), &|_| None).unwrap();
        Setup::load(&config, &Clock::system())
    }

    fn reasons(errors: Vec<ConfigError>) -> Vec<String> {
        errors.iter().map(ToString::to_string).collect()
    }

    /// Issue 14: a partner status rule for a status the AHB never sends a supplier (IFTSTA
    /// 21043 Z13/Z14, \[117\]), for an IFTSTA without order reference (21025, 21047, 21039), or
    /// for a PID the routing table forwards to the core is refused at start, every one at once.
    #[test]
    fn partner_status_rules_need_a_routed_pid_that_names_an_order() {
        let routed = "[routing]\npids = { \"21043\" = \"handle\" }";
        assert!(load(
            r#"{ message = "IFTSTA", pid = 21043, code = "Z43", status = "check_submitted" }"#,
            routed
        )
        .is_ok());
        let errors = reasons(
            load(
                r#"{ message = "IFTSTA", pid = 21043, code = "Z14", status = "activated" },
                   { message = "IFTSTA", pid = 21047, code = "Z47", status = "activated" },
                   { message = "IFTSTA", pid = 21044, code = "105", status = "activated" }"#,
                routed,
            )
            .unwrap_err(),
        );
        assert_eq!(errors.len(), 3, "{errors:#?}");
        assert!(errors[0].contains("[117]"), "{errors:#?}");
        assert!(errors[1].contains("RFF+ACW"), "{errors:#?}");
        assert!(errors[2].contains("\"21044\" = \"handle\""), "{errors:#?}");
        // Without [routing], 21043/21044 go to the core: a rule for any PID is refused too.
        let errors = reasons(
            load(
                r#"{ message = "IFTSTA", code = "Z43", status = "check_submitted" }"#,
                "",
            )
            .unwrap_err(),
        );
        assert!(errors[0].contains("21043/21044"), "{errors:#?}");
    }
}
