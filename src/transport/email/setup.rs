//! The e-mail transport's set-up, made once when `serve` starts: our keys and certificates and
//! every e-mail partner's, read from the PEM files that `[email]` and `[[partners]]` name and
//! checked (key matches certificate, certificate belongs to the market partner), with every
//! error at once ([`EmailSetup::load`]); and the signed and encrypted mail for an outbound
//! interchange ([`EmailSetup::outbound_mail`]).
//!
//! The one part of `transport` that reads [`Config`]: it turns the checked configuration's
//! paths into keys, certificates and the SMTP/IMAP settings.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::SystemTime;

use chrono::{DateTime, Utc};

use super::smime::{
    sign_then_encrypt, sm_pki_partner_id, Certificate, Identity, KeyFamily, SmimeError,
};
use super::{build_mail_with, ImapConfig, MailError, Mailbox, SmtpConfig, TransferFileName};
use crate::config::{Config, ConfigError, ConfigKey, Problem};
use crate::ids::MarketPartnerId;

/// One partner reached by e-mail, with its certificates read from the PEM files.
#[derive(Debug, Clone)]
pub struct EmailPartner {
    /// The market partner ID.
    pub id: MarketPartnerId,
    /// Where its interchanges go.
    pub address: Mailbox,
    /// The certificate it signs with: mail claiming this partner as UNB sender must be signed
    /// with exactly this one.
    pub signing_cert: Certificate,
    /// The certificate we encrypt to.
    pub encryption_cert: Certificate,
}

/// Our side and the e-mail partners, loaded and checked once when `serve` starts.
#[derive(Debug, Clone)]
pub struct EmailSetup {
    /// Our address (From, SMTP envelope sender).
    pub address: Mailbox,
    /// What we sign with.
    pub signing: Identity,
    /// What partners encrypt to.
    pub decryption: Identity,
    /// Where mail goes out (`None`: no partner uses e-mail).
    pub smtp: Option<SmtpConfig>,
    /// The mailbox to read (`None`: nothing is read).
    pub imap: Option<ImapConfig>,
    /// The e-mail partners by market partner ID.
    pub partners: BTreeMap<String, EmailPartner>,
    /// What was accepted but deserves a line in the log (RSA certificates outside the SM-PKI
    /// naming).
    pub warnings: Vec<String>,
}

/// Why the mail for an interchange could not be made (all permanent: the same bytes and
/// certificates give the same error again).
#[derive(Debug, thiserror::Error)]
pub enum OutboundMailError {
    /// The interchange gives no BDEW file name.
    #[error("no transfer file name: {0}")]
    FileName(#[from] crate::transport::email::FileNameError),
    /// Building the mail failed.
    #[error(transparent)]
    Mail(#[from] MailError),
    /// Signing or encrypting failed.
    #[error("S/MIME: {0}")]
    Smime(#[from] SmimeError),
}

/// Whether a certificate may stand for `id`: an SM-PKI certificate (CN with `EMT.MAK`) must
/// carry `id` as its subject OU; an EC certificate must be an SM-PKI one (brainpool is the
/// SM-PKI's curve; outside it we have no rule to tie the key to a market partner); an RSA
/// certificate outside the SM-PKI naming is accepted and `Ok(Some(warning))` says so.
pub fn check_certificate_owner(
    cert: &Certificate,
    id: &MarketPartnerId,
) -> Result<Option<String>, String> {
    match sm_pki_partner_id(cert) {
        Some(ou) if ou == id.as_str() => Ok(None),
        Some(ou) => Err(format!(
            "the SM-PKI certificate {} belongs to market partner {ou}, not {id}",
            cert.subject()
        )),
        None => match KeyFamily::of(cert).map_err(|e| e.to_string())? {
            KeyFamily::Rsa => Ok(Some(format!(
                "RSA certificate {} of {id} is not named as an SM-PKI certificate \
                 (subject OU = market partner ID, CN containing EMT.MAK); accepted",
                cert.subject()
            ))),
            KeyFamily::Ecc => Err(format!(
                "the EC certificate {} is not an SM-PKI certificate for market communication \
                 (subject OU = {id}, CN containing EMT.MAK)",
                cert.subject()
            )),
        },
    }
}

fn invalid(path: &str, value: &Path, reason: String) -> ConfigError {
    ConfigError {
        key: ConfigKey::File(path.to_string()),
        value: Some(format!("{:?}", value.display().to_string())),
        problem: Problem::Invalid { reason },
    }
}

impl EmailSetup {
    /// Reads our keys and certificates and every e-mail partner's certificates, and checks
    /// them (key matches certificate, certificate belongs to the market partner). `Ok(None)`
    /// without `[email]`. Every error at once, keyed like [`Config::load`]'s.
    pub fn load(config: &Config) -> Result<Option<EmailSetup>, Vec<ConfigError>> {
        let Some(email) = &config.email else {
            return Ok(None);
        };
        let mut errors = Vec::new();
        let mut warnings = Vec::new();
        let mut own = |key_key: &str, cert_key: &str, key: &Path, cert: &Path| {
            match Identity::from_pem_files(key, cert) {
                Ok(identity) => {
                    match check_certificate_owner(identity.certificate(), &config.own_id) {
                        Ok(warning) => warnings.extend(warning),
                        Err(reason) => errors.push(invalid(cert_key, cert, reason)),
                    }
                    Some(identity)
                }
                Err(e @ SmimeError::Io { .. }) if matches!(&e, SmimeError::Io { path, .. } if path == key) =>
                {
                    errors.push(invalid(key_key, key, e.to_string()));
                    None
                }
                Err(
                    e @ SmimeError::Pem {
                        what: "private key",
                        ..
                    },
                ) => {
                    errors.push(invalid(key_key, key, e.to_string()));
                    None
                }
                Err(e) => {
                    errors.push(invalid(cert_key, cert, e.to_string()));
                    None
                }
            }
        };
        let signing = own(
            "email.signing_key",
            "email.signing_cert",
            &email.signing_key,
            &email.signing_cert,
        );
        let decryption = if email.decryption_key == email.signing_key
            && email.decryption_cert == email.signing_cert
        {
            signing.clone()
        } else {
            own(
                "email.decryption_key",
                "email.decryption_cert",
                &email.decryption_key,
                &email.decryption_cert,
            )
        };
        let mut partners = BTreeMap::new();
        for (i, partner) in config.partners.iter().enumerate() {
            let Some(pe) = &partner.email else { continue };
            let mut cert = |key: &str, path: &Path| {
                let key = format!("partners[{i}].{key}");
                match Certificate::from_pem_file(path) {
                    Ok(cert) => match check_certificate_owner(&cert, &partner.id) {
                        Ok(warning) => {
                            warnings.extend(warning);
                            Some(cert)
                        }
                        Err(reason) => {
                            errors.push(invalid(&key, path, reason));
                            None
                        }
                    },
                    Err(e) => {
                        errors.push(invalid(&key, path, e.to_string()));
                        None
                    }
                }
            };
            let signing_cert = cert("signing_cert", &pe.signing_cert);
            let encryption_cert = cert("encryption_cert", &pe.encryption_cert);
            if let Some(c) = &encryption_cert {
                if let Err(e) = KeyFamily::of(c) {
                    errors.push(invalid(
                        &format!("partners[{i}].encryption_cert"),
                        &pe.encryption_cert,
                        e.to_string(),
                    ));
                }
            }
            let address = pe.address.parse().map(|a| Mailbox::new(None, a));
            if let (Some(signing_cert), Some(encryption_cert), Ok(address)) =
                (signing_cert, encryption_cert, address)
            {
                partners.insert(
                    partner.id.as_str().to_string(),
                    EmailPartner {
                        id: partner.id.clone(),
                        address,
                        signing_cert,
                        encryption_cert,
                    },
                );
            }
        }
        // A CA file that cannot be read fails here, at start, not at the first connection.
        let servers = [
            ("email.smtp.ca_file", email.smtp.as_ref().map(|s| &s.tls)),
            ("email.imap.ca_file", email.imap.as_ref().map(|s| &s.tls)),
        ];
        for (key, tls) in servers {
            if let Some((tls, path)) = tls.and_then(|t| t.ca_file.as_ref().map(|p| (t, p))) {
                if let Err(e) = tls.check_ca_file() {
                    errors.push(invalid(key, path, e.to_string()));
                }
            }
        }
        let address = email.address.parse().map(|a| Mailbox::new(None, a));
        let (Some(signing), Some(decryption), Ok(address), true) =
            (signing, decryption, address, errors.is_empty())
        else {
            return Err(errors);
        };
        let smtp = email.smtp.as_ref().map(|s| {
            let mut smtp = SmtpConfig::plain(s.host.clone(), s.port);
            smtp.hello_name = s.hello_name.clone();
            smtp.credentials = s.credentials.clone();
            smtp.tls = s.tls.clone();
            smtp.timeout = s.timeout;
            smtp
        });
        let imap = email.imap.as_ref().map(|s| {
            let mut imap =
                ImapConfig::plain(s.host.clone(), s.port, s.user.clone(), s.password.clone());
            imap.mailbox = s.mailbox.clone();
            imap.poll_interval = s.poll_interval;
            imap.tls = s.tls.clone();
            imap.timeout = s.timeout;
            imap
        });
        Ok(Some(EmailSetup {
            address,
            signing,
            decryption,
            smtp,
            imap,
            partners,
            warnings,
        }))
    }

    /// The e-mail partner with this ID, if it has one.
    pub fn partner(&self, id: &str) -> Option<&EmailPartner> {
        self.partners.get(id)
    }

    /// The signed and encrypted mail carrying `interchange` to `partner`, and its file name
    /// (also the subject). `now` gives the file name's date and the Date header.
    pub fn outbound_mail(
        &self,
        partner: &EmailPartner,
        interchange: &[u8],
        now: DateTime<Utc>,
    ) -> Result<(String, Vec<u8>), OutboundMailError> {
        let name = TransferFileName::of_interchange(interchange, now.date_naive())?.to_string();
        let mail = build_mail_with(
            &self.address,
            &partner.address,
            interchange,
            &name,
            SystemTime::from(now),
            |entity| {
                sign_then_encrypt(entity, &self.signing, &partner.encryption_cert)
                    .map_err(OutboundMailError::from)
            },
        )?;
        Ok((name, mail))
    }

    /// The name of the mailbox read, for the mail journal: `user@host:port/mailbox`.
    pub fn mailbox_name(&self) -> String {
        self.imap.as_ref().map_or_else(String::new, |i| {
            format!("{}@{}:{}/{}", i.user, i.host, i.port, i.mailbox)
        })
    }
}
