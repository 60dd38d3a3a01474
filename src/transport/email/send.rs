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
                )));
            };
            let Some(smtp) = &setup.smtp else {
                return Err(SendError::permanent(
                    "partner uses e-mail but [email.smtp] is not configured",
                ));
            };
            let (name, mail) = setup
                .outbound_mail(partner, out.bytes, out.now)
                .map_err(SendError::permanent)?;
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
                if e.is_transient() {
                    SendError::transient(e)
                } else {
                    SendError::permanent(e)
                }
            })?;
            Ok(Sent {
                description: format!("mail {name} to {}", partner.address),
            })
        })
    }
}
