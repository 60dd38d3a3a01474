//! A received mail, handled: journaled raw and committed first, then decrypted, verified, the
//! signer checked against the interchange's sender, and either handed to the gateway's
//! [`InboundSink`] or quarantined with the reason ([`handle_mail`]).

use chrono::{DateTime, Utc};

use super::smime::sm_pki_partner_id;
use super::smime::{decrypt_then_verify, Certificate, SmimeError};
use super::{extract_single_attachment, EmailSetup, ReceivedMail};
use crate::store::{Inserted, MailOutcome, NewMail, Store, StoreError, Transport};
use crate::transport::InboundSink;

/// Why [`handle_mail`] quarantined a mail: the reason text kept with it.
fn quarantine_reason(step: &str, error: &dyn std::fmt::Display) -> String {
    format!("{step}: {error}")
}

/// The reason for a mail signed with a certificate no partner is registered with, named by
/// that certificate (the mail carries it): when its market partner ID is an e-mail partner's,
/// the partner most likely renewed its certificate and the registry still pins the old one.
fn untrusted_signer(setup: &EmailSetup, cert: &Certificate) -> String {
    let registered = sm_pki_partner_id(cert).and_then(|id| setup.partner(&id));
    match registered {
        Some(partner) => format!(
            "signer: signed by {} with a certificate other than the one registered for {} \
             (in the mail: issuer {}, serial {}; registered: issuer {}, serial {}): a renewed \
             certificate must be configured as the partner's signing_cert",
            cert.party(),
            partner.id,
            cert.issuer(),
            cert.serial_hex(),
            partner.signing_cert.issuer(),
            partner.signing_cert.serial_hex()
        ),
        None => format!(
            "signer: signed by {}, which is no e-mail partner's signing certificate",
            cert.party()
        ),
    }
}

/// A market partner ID read from an unverified interchange, for a reason text: as it is when
/// it is one (13 digits with a valid check digit), else quoted, escaped and cut (partner data is hostile).
fn shown_id(id: &str) -> String {
    match id.parse::<crate::ids::MarketPartnerId>() {
        Ok(valid) => valid.to_string(),
        Err(_) => format!("{:?}", id.chars().take(40).collect::<String>()),
    }
}

/// What [`handle_mail`] did with one mail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MailHandled {
    /// The interchange was journaled (new, or the same one again).
    Journaled {
        /// The mail journal row.
        mail_id: String,
        /// The interchange's journal item.
        journal_id: String,
    },
    /// The mail went to the quarantine.
    Quarantined {
        /// The mail journal row.
        mail_id: String,
        /// Why.
        reason: String,
        /// The registered partner whose signing certificate verified the mail (it signed,
        /// but the mail was refused for another reason); `None` when no partner's signature
        /// verified.
        signed_by: Option<String>,
    },
    /// Handled before (fetched again after a crash between the commit and the IMAP mark).
    AlreadyHandled {
        /// The mail journal row.
        mail_id: String,
    },
}

/// Handles one received mail: journals it raw and commits (so nothing is lost, whatever
/// follows), then decrypts it with our key, verifies the signature against the registry's
/// signing certificates, extracts the one attachment, checks that the signer is the partner
/// the interchange names as UNB sender, and hands the interchange to the gateway's [`InboundSink`]
/// (transport e-mail). A mail that fails any of these steps is quarantined with the reason and
/// never parsed as EDIFACT (only the UNB sender of a verified attachment is read, to check the
/// signer). Returns `Ok` once the outcome is committed: only then may the mail be marked on
/// the server. Errors are the store's (transient): the mail stays unmarked and comes again.
pub async fn handle_mail(
    store: &Store,
    journal: &dyn InboundSink,
    setup: &EmailSetup,
    mail: ReceivedMail,
    now: DateTime<Utc>,
) -> Result<MailHandled, StoreError> {
    let headers = mail_headers(&mail.raw);
    let (mail_id, outcome) = store
        .conn()
        .await?
        .insert_mail(&NewMail {
            mailbox: setup.mailbox_name(),
            uid_validity: mail.uid_validity,
            uid: mail.uid,
            from_header: headers.0,
            subject: headers.1,
            raw: mail.raw.clone(),
            received_at: now,
        })
        .await?;
    if outcome != MailOutcome::Pending {
        return Ok(MailHandled::AlreadyHandled { mail_id });
    }
    let trusted: Vec<Certificate> = setup
        .partners
        .values()
        .map(|p| p.signing_cert.clone())
        .collect();
    // Quarantined: the reason, and the partner whose signature verified, if one did.
    let checked = decrypt_then_verify(&mail.raw, &setup.decryption, &trusted)
        .map_err(|e| match e {
            SmimeError::SignerNotTrusted {
                certificate: Some(cert),
                ..
            } => (untrusted_signer(setup, &cert), None),
            e => (quarantine_reason("S/MIME", &e), None),
        })
        .and_then(|verified| {
            let signed_by = setup
                .partners
                .values()
                .find(|p| p.signing_cert == verified.signer)
                .map(|p| p.id.to_string());
            let attachment = extract_single_attachment(&verified.content)
                .map_err(|e| (quarantine_reason("attachment", &e), signed_by.clone()))?;
            Ok((verified.signer, attachment.bytes, signed_by))
        })
        .and_then(|(signer, bytes, signed_by)| {
            let claimed = crate::acks::read_envelope(&bytes)
                .map(|env| env.sender.id)
                .ok_or_else(|| {
                    (
                        "attachment: no UNB segment with a sender, so not an interchange"
                            .to_string(),
                        signed_by,
                    )
                })?;
            let owner = setup.partners.values().find(|p| p.signing_cert == signer);
            match owner {
                Some(p) if p.id.as_str() == claimed => Ok((claimed, signer, bytes)),
                Some(p) => Err((
                    format!(
                        "signer: signed by {}, expected {} (the interchange's UNB sender); the \
                         signing certificate is registered for {}",
                        signer.party(),
                        shown_id(&claimed),
                        p.id
                    ),
                    Some(p.id.to_string()),
                )),
                None => Err((
                    format!(
                        "signer: signed by {}, which is no e-mail partner's signing certificate",
                        signer.party()
                    ),
                    None,
                )),
            }
        });
    match checked {
        Ok((claimed, signer, bytes)) => {
            let inserted = journal.receive(bytes, Transport::Email, now).await?;
            let journal_id = inserted.journal_id().to_string();
            if let Inserted::Duplicate(id) = &inserted {
                tracing::info!(mail = %mail_id, journal = %id, "interchange mailed twice: journaled once");
            }
            store
                .conn()
                .await?
                .finish_mail(
                    &mail_id,
                    MailOutcome::Journaled,
                    Some(&journal_id),
                    None,
                    Some(&claimed),
                    Some(&signer.subject()),
                    now,
                )
                .await?;
            Ok(MailHandled::Journaled {
                mail_id,
                journal_id,
            })
        }
        Err((reason, signed_by)) => {
            tracing::warn!(mail = %mail_id, uid = mail.uid, %reason, "mail quarantined");
            store
                .conn()
                .await?
                .finish_mail(
                    &mail_id,
                    MailOutcome::Quarantined,
                    None,
                    Some(&reason),
                    None,
                    None,
                    now,
                )
                .await?;
            Ok(MailHandled::Quarantined {
                mail_id,
                reason,
                signed_by,
            })
        }
    }
}

/// From and Subject of a raw mail, for operators (empty when unreadable).
fn mail_headers(raw: &[u8]) -> (String, String) {
    use mailparse::MailHeaderMap;
    match mailparse::parse_headers(raw) {
        Ok((headers, _)) => (
            headers.get_first_value("From").unwrap_or_default(),
            headers.get_first_value("Subject").unwrap_or_default(),
        ),
        Err(_) => (String::new(), String::new()),
    }
}
