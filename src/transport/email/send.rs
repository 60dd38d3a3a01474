//! The e-mail side of the [`Outbound`] seam ([`EmailSender`]).

use std::sync::Arc;

use super::EmailSetup;
use crate::store::Transport;
use crate::transport::{BoxFuture, Outbound, Outgoing, SendError, Sent};

/// The e-mail side of the [`Outbound`] seam: the interchange signed and
/// encrypted to the partner's certificate, sent with SMTP. A 4xx or a lost connection is
/// transient; a 5xx parks the item with the server's answer.
#[derive(Debug, Clone)]
pub struct EmailSender {
    setup: Arc<EmailSetup>,
}

impl EmailSender {
    /// Sends with `setup`'s SMTP server and keys.
    pub fn new(setup: Arc<EmailSetup>) -> EmailSender {
        EmailSender { setup }
    }
}

impl Outbound for EmailSender {
    fn kind(&self) -> Transport {
        Transport::Email
    }

    fn send<'a>(&'a self, out: Outgoing<'a>) -> BoxFuture<'a, Result<Sent, SendError>> {
        Box::pin(async move {
            let setup = &self.setup;
            let Some(partner) = setup.partner(out.partner) else {
                return Err(SendError::permanent(format!(
                    "partner {} has no e-mail address and certificates in the registry",
                    out.partner
                ))
                .for_this_partner_only());
            };
            let Some(smtp) = &setup.smtp else {
                return Err(SendError::permanent(
                    "partner uses e-mail but [email.smtp] is not configured",
                ));
            };
            // The mail depends on this interchange and this partner's certificate.
            let (name, mail) = setup
                .outbound_mail(partner, out.bytes, out.now)
                .map_err(|e| SendError::permanent(e).for_this_partner_only())?;
            // A mail cannot be taken back: a crash after the SMTP server took it and before
            // the commit sends it once more, with the same bytes and UNB reference, which the
            // partner deduplicates (BDEW receivers must drop a repeated interchange reference).
            super::send(
                smtp,
                &setup.address.email,
                std::slice::from_ref(&partner.address.email),
                &mail,
            )
            .await
            .map_err(|e| {
                // The server's answer goes into the outbox item's error as it came.
                let for_partner = refuses_this_mail_only(&e);
                let error = if e.is_transient() {
                    SendError::transient(e)
                } else {
                    SendError::permanent(e)
                };
                if for_partner {
                    error.for_this_partner_only()
                } else {
                    error
                }
            })?;
            Ok(Sent {
                description: format!("mail {name} to {}", partner.address),
            })
        })
    }
}

/// Whether the SMTP server answered with a refusal of this mail or recipient (RFC 5321
/// §4.2.2-4.2.3: mailbox unavailable or unknown, not local, storage exceeded, name not
/// allowed, transaction failed), not of us: the server works and the health report marks the
/// partner only. Everything else (no connection, TLS or STARTTLS refused, AUTH refused (530,
/// 535), the server closing (421), a local error (451), syntax errors) is the SMTP part's.
fn refuses_this_mail_only(error: &super::SendError) -> bool {
    matches!(
        error,
        super::SendError::Permanent { code, .. } | super::SendError::Transient { code, .. }
            if matches!(code, 450 | 452 | 550 | 551 | 552 | 553 | 554)
    )
}

#[cfg(test)]
mod tests {
    use super::super::SendError as SmtpError;
    use super::refuses_this_mail_only;

    #[test]
    fn only_refusals_of_the_mail_are_the_partners_alone() {
        let answer = |code| SmtpError::Permanent {
            code,
            answer: "x".into(),
        };
        assert!(refuses_this_mail_only(&answer(550)));
        assert!(refuses_this_mail_only(&SmtpError::Transient {
            code: 452,
            answer: "x".into()
        }));
        for ours in [421, 451, 454, 500, 530, 535] {
            assert!(!refuses_this_mail_only(&answer(ours)), "{ours}");
        }
        assert!(!refuses_this_mail_only(&SmtpError::Connection {
            server: "127.0.0.1:25".into(),
            detail: "refused".into()
        }));
        assert!(!refuses_this_mail_only(&SmtpError::Client {
            detail: "STARTTLS is not supported".into()
        }));
    }
}
